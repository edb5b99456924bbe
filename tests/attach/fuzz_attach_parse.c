/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: what libpgtrack-attach and pgtrack-numa read from elsewhere.
 * The first byte picks the parser, the rest is its input:
 *   0  a QEMU command line (NUL-separated, as /proc/self/cmdline)
 *   1  PGT_ATTACH_RAM rules
 *   2  an attach state file (another process wrote it: the untrusted one)
 *   3  a QEMU size ("1.5G")
 *   4  rules, then the mappings of an smaps text they select from
 * Any bytes give a result or an error; results must hold the invariants
 * below, else abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/attach/attach_pvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void state(const char *p, size_t n)
{
	struct pgtool_attach_state *st = malloc(sizeof(*st));

	if (!st)
		return;
	if (!pgtool_attach_state_parse(p, n, st)) {
		if (st->pid <= 0 || st->nregions > PGTOOL_ATTACH_MAX_REGIONS ||
		    st->http_port < 0 || st->http_port > 65535 ||
		    memchr(st->state, 0, sizeof(st->state)) == NULL ||
		    memchr(st->message, 0, sizeof(st->message)) == NULL)
			abort();
		for (unsigned i = 0; i < st->nregions; i++) {
			const struct pgtool_attach_region *r = &st->region[i];

			if (r->end < r->start || r->nwindows > PGTOOL_ATTACH_WINDOWS ||
			    r->nnodes > PGT_MAX_NODES || memchr(r->mapping, 0, sizeof(r->mapping)) == NULL)
				abort();
			for (size_t k = 0; k < strlen(r->mapping); k++)
				if ((unsigned char)r->mapping[k] < 0x20)
					abort();
		}
	}
	free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t sizes[ATT_MAX_SIZES], v;
	char *copy;
	int n;

	if (!size)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = 0;
	switch (data[0] % 5) {
	case 0:
		n = pgt_attach__cmdline_sizes(copy, size - 1, sizes, ATT_MAX_SIZES);
		if (n < 0 ? n != -EBADMSG : n > 2 * ATT_MAX_SIZES + 1)
			abort();
		break;
	case 1: {
		char *globs[PGT_ATTACH_MAX_REGIONS];
		uint64_t rs[PGT_ATTACH_MAX_REGIONS];

		n = pgt_attach__rules(copy, globs, rs, PGT_ATTACH_MAX_REGIONS);
		if (n == 0 || n > PGT_ATTACH_MAX_REGIONS)
			abort();
		for (int i = 0; i < n; i++)
			if (!globs[i] || !*globs[i] || strchr(globs[i], ','))
				abort();
		break;
	}
	case 2:
		state(copy, size - 1);
		break;
	case 3:
		if (!pgt_attach__parse_size(copy, size - 1, 1, &v) && size - 1 == 0)
			abort();
		break;
	default: {
		/* "rules\0smaps text" */
		size_t rl = strnlen(copy, size - 1);
		struct att_candidate c[PGT_ATTACH_MAX_REGIONS];
		pgtool_procmap *pm = NULL;

		if (rl + 1 >= size - 1)
			break;
		if (!pgtool_procmap_parse(copy + rl + 1, size - 2 - rl, NULL, 0, &pm)) {
			n = pgt_attach__select(pm, copy, NULL, 0, c, PGT_ATTACH_MAX_REGIONS);
			for (int i = 0; i < n && i < PGT_ATTACH_MAX_REGIONS; i++)
				if (c[i].end <= c[i].start || !(c[i].flags & PGTOOL_MAP_WRITE))
					abort();
			pgtool_procmap_free(pm);
		}
		break;
	}
	}
	free(copy);
	return 0;
}
