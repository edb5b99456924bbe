/* SPDX-License-Identifier: MIT */
/*
 * Residency of a region's pages: which are in host memory now (and which
 * swapped), for shared memory from mincore (the page cache), for private
 * memory from PAGEMAP_SCAN or /proc/self/pagemap.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"


static void set_bit_range(uint64_t *out, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		out[i / 64] |= 1ULL << (i % 64);
}

static int64_t resident_mincore(struct pgt_region *r, uint64_t first, uint64_t n, uint64_t *out)
{
	uint64_t bp = pgt_hal_page_size(), per = r->page_size / bp, cnt = 0;
	unsigned char vec[4096];
	uint64_t step = sizeof(vec) / per ? sizeof(vec) / per : 1;

	for (uint64_t i = 0; i < n; i += step) {
		uint64_t k = n - i < step ? n - i : step;

		if (mincore(pgt__page_addr(r, first + i), k << r->page_shift, vec))
			return -errno;
		for (uint64_t j = 0; j < k; j++) {
			for (uint64_t q = 0; q < per; q++)
				if (vec[j * per + q] & 1) {
					out[(i + j) / 64] |= 1ULL << ((i + j) % 64);
					cnt++;
					break;
				}
		}
	}
	return (int64_t)cnt;
}

/*
 * A released private page that reads present but is neither exclusive nor
 * file-backed holds the zero page fix_dirty() mapped there: no memory.
 */
static bool zero_mapped(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t pm,
			uint64_t p)
{
	if (!rel || r->shared || (pm & (PGT_PM_EXCLUSIVE | PGT_PM_FILE | PGT_PM_SWAP)))
		return false;
	return pgt__bitmap_test(&rel->released, p);
}

struct present_ctx {
	struct pgt_region *r;
	const struct pgt_rel *rel;
	uint64_t first, start;
	uint64_t *out;
};

static int present_run(void *arg, uint64_t start, uint64_t end, const uint64_t *pm)
{
	struct present_ctx *c = arg;
	/* any present 4 KiB piece makes the page resident */
	uint64_t f = (start - c->start) >> c->r->page_shift;
	uint64_t l = (end - 1 - c->start) >> c->r->page_shift;

	if (pm && f == l && zero_mapped(c->r, c->rel, *pm, c->first + f))
		return 0;
	set_bit_range(c->out, f, l - f + 1);
	return 0;
}

static int64_t resident_pagemap(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
				uint64_t *out)
{
	struct present_ctx c = {
		.r = r, .rel = atomic_load(&r->rel), .first = first,
		.start = (uintptr_t)pgt__page_addr(r, first), .out = out,
	};
	uint64_t cnt = 0;
	int ret = pgt__present_walk(c.start, c.start + (n << r->page_shift), swapped,
				    r->eng->probe.pagemap_scan, present_run, &c);

	if (ret)
		return ret;
	for (uint64_t w = 0; w < (n + 63) / 64; w++)
		cnt += (uint64_t)__builtin_popcountll(out[w]);
	return (int64_t)cnt;
}

const uint8_t *pgt__file_page(const struct pgt_region *r, uint64_t p, uint8_t **bounce)
{
	off_t off = (off_t)(r->fd_offset + (p << r->page_shift));
	ssize_t got;

	if (!*bounce)
		*bounce = aligned_alloc(4096, r->page_size);
	if (!*bounce)
		return pgt__page_addr(r, p);
	do
		got = pread(r->fd, *bounce, r->page_size, off);
	while (got < 0 && errno == EINTR);
	return (uint64_t)got == r->page_size ? *bounce : pgt__page_addr(r, p);
}

int64_t pgt__resident(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
		      uint64_t *out)
{
	if (!n)
		return 0;
	/* Shared memory lives in the page cache whether or not we map it. */
	if (r->shared)
		return resident_mincore(r, first, n, out);
	return resident_pagemap(r, first, n, swapped, out);
}
