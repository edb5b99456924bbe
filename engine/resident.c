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

static int64_t resident_pagemap(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
				uint64_t *out)
{
	const struct pgt_rel *rel = atomic_load(&r->rel);
	uint64_t start = (uintptr_t)pgt__page_addr(r, first), end = start + (n << r->page_shift);
	uint64_t want = PAGE_IS_PRESENT | (swapped ? PAGE_IS_SWAPPED : 0), cnt = 0;
	struct page_region small[16], *vec = small;
	size_t vlen = 16;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int64_t ret = 0;

	if (fd < 0)
		return -errno;
	/* a big region in pieces: few ioctls with a big vector */
	if (n > 64 && (vec = malloc(1024 * sizeof(*vec))))
		vlen = 1024;
	else
		vec = small;
	if (r->eng->probe.pagemap_scan) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = start,
			.end = end,
			.vec = (uintptr_t)vec,
			.vec_len = vlen,
			.category_anyof_mask = want,
			.return_mask = want,
		};

		for (;;) {
			long k = ioctl(fd, PAGEMAP_SCAN, &a);

			if (k < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				break;
			}
			for (long i = 0; i < k; i++) {
				/* any present 4 KiB piece makes the page resident */
				uint64_t f = (vec[i].start - start) >> r->page_shift;
				uint64_t l = (vec[i].end - 1 - start) >> r->page_shift;

				set_bit_range(out, f, l - f + 1);
			}
			if (a.walk_end >= end || a.walk_end <= a.start)
				break;
			a.start = a.walk_end;
		}
		if (!ret)
			goto count;
		if (ret != -ENOTTY && ret != -EINVAL)
			goto out;
		ret = 0;
	}
	{
		uint64_t bp = pgt_hal_page_size(), buf[512];
		uint64_t mask = PGT_PM_PRESENT | (swapped ? PGT_PM_SWAP : 0);

		for (uint64_t a = start; a < end;) {
			size_t k = (size_t)((end - a) / bp);
			ssize_t got;

			if (k > sizeof(buf) / sizeof(buf[0]))
				k = sizeof(buf) / sizeof(buf[0]);
			got = pread(fd, buf, k * sizeof(buf[0]), (off_t)(a / bp * 8));
			if (got <= 0) {
				ret = got < 0 ? -errno : -EIO;
				goto out;
			}
			for (size_t i = 0; i < (size_t)got / 8; i++)
				if (buf[i] & mask) {
					uint64_t pg = (a + i * bp - start) >> r->page_shift;

					if (zero_mapped(r, rel, buf[i], first + pg))
						continue;
					out[pg / 64] |= 1ULL << (pg % 64);
				}
			a += (uint64_t)got / 8 * bp;
		}
	}
count:
	for (uint64_t w = 0; w < (n + 63) / 64; w++)
		cnt += (uint64_t)__builtin_popcountll(out[w]);
	ret = (int64_t)cnt;
out:
	if (vec != small)
		free(vec);
	close(fd);
	return ret;
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
