/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the smaps / numa_maps parsers (numa/procmap.c), the
 * engine's smaps walk (engine/vma.c) and the CPU list parser. Input: smaps
 * text, a NUL byte, numa_maps text (without a NUL the whole input is tried
 * as each of the two). Any bytes must give a map or an error; a parsed map
 * must satisfy the invariants below, else abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <pgtrack.h>

#include "engine/engine_pvt.h"
#include "lib/cpuset.h"
#include "tools/lib/pgtool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_map(const pgtool_procmap *m)
{
	size_t n = pgtool_procmap_count(m), idx[8];
	uint64_t prev = 0;
	int g;

	for (size_t i = 0; i < n; i++) {
		const struct pgtool_mapping *mp = pgtool_procmap_get(m, i);

		if (!mp || mp->start < prev || mp->end < mp->start)
			abort();
		if (!memchr(mp->name, 0, sizeof(mp->name)) ||
		    !memchr(mp->policy, 0, sizeof(mp->policy)))
			abort();
		for (size_t k = 0; mp->name[k]; k++)
			if ((unsigned char)mp->name[k] < 0x20)
				abort();
		if (mp->nnodes > PGT_MAX_NODES)
			abort();
		if ((mp->flags & PGTOOL_MAP_NUMA) && !mp->page_size)
			abort();
		prev = mp->start;
	}
	if (pgtool_procmap_get(m, n))
		abort();
	g = pgtool_procmap_guess_guest(m, 1, idx, 8);
	if (g < 0 || (size_t)g > n)
		abort();
	for (int i = 0; i < g && i < 8; i++)
		if (idx[i] >= n)
			abort();
}

static void parse(const char *s, size_t sl, const char *nm, size_t nl)
{
	pgtool_procmap *m = NULL;
	int ret = pgtool_procmap_parse(s, sl, nm, nl, &m);

	if (ret == 0) {
		if (!m)
			abort();
		check_map(m);
		pgtool_procmap_free(m);
	} else if (m || (ret != -EBADMSG && ret != -ENOMEM && ret != -E2BIG)) {
		abort();
	}
}

/* The engine's own smaps walk (engine/vma.c): every VMA it reports has a
 * range and a whole-KiB page size, and it reports each one it counts. */
static int vma_check(void *arg, const struct pgt_vma *v)
{
	if (v->end <= v->start || (v->kernel_page_size & 1023))
		abort();
	(*(int *)arg)++;
	return 0;
}

static void walk(const char *s, size_t sl)
{
	int seen = 0, n = pgt__smaps_walk(s, sl, vma_check, &seen);

	if (n != seen)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const char *nul = memchr(p, 0, size);
	struct pgt_cpuset cs;
	struct pgtool_mapping one;

	walk(p, nul ? (size_t)(nul - p) : size);
	if (nul) {
		parse(p, (size_t)(nul - p), nul + 1, size - (size_t)(nul - p) - 1);
	} else {
		parse(p, size, NULL, 0);
		parse(NULL, 0, p, size);
	}
	memset(&one, 0, sizeof(one));
	if (pgtool_numa_maps_line(p, size, &one) == 0 && one.nnodes > PGT_MAX_NODES)
		abort();
	if (pgt__cpuset_parse(p, size < 64 ? size : 64, &cs) == 0 &&
	    pgt__cpuset_count(&cs) > PGT_CPUSET_BITS)
		abort();
	return 0;
}
