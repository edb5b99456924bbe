/* SPDX-License-Identifier: MIT */
/*
 * pgt_zero_pages(): which 4 KiB pieces of a guest range read as zero, for a
 * migration stream that sends a marker instead of the piece. Nothing is
 * faulted in: only what the kernel says is mapped is read.
 *
 * Per 4 KiB piece, in order:
 *  - private memory (anonymous, THP, MAP_PRIVATE|MAP_HUGETLB without a
 *    file): a piece neither present nor swapped is a hole and reads as
 *    zero, and so does a uffd-wp marker (PAGEMAP_SCAN reports it as
 *    swapped; marker_holes() tells it from swap where it can); a
 *    present piece mapping the shared zero page (PAGE_IS_PFNZERO) is zero
 *    without a read; a swapped piece is unknown (reading it would swap it
 *    in) and not reported. A private mapping of a file reads the file in
 *    its holes: no hole is reported there (a registered mapping pgtrack
 *    did not make counts as anonymous only by /proc/self/maps).
 *  - shared memory (memfd/shmem, hugetlbfs): residency is the page cache
 *    (mincore); a piece not resident is zero only where the file has a hole
 *    (SEEK_DATA, which counts swapped shmem as data). hugetlbfs has no
 *    SEEK_DATA but reads holes as zeros without allocating and never
 *    swaps: its pieces not mapped here are read through the fd. Shared
 *    anonymous memory has no fd: its non-resident pieces are not reported
 *    (never a false zero).
 *  - resident pieces: the HAL zero check on the 4 KiB.
 * A 2 MiB page is reported as its 512 pieces: a partly written hugepage
 * still sends markers for its zero pieces.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/compat_uapi.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "pgtrack/account.h"

#define PIECE 4096ULL

struct zp_ctx {
	uint64_t start;             /* address of piece 0 */
	uint64_t *mark;             /* pieces to mark */
};

static void mark_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		bm[i / 64] |= 1ULL << (i % 64);
}

static int mark_run(void *arg, uint64_t start, uint64_t end, const uint64_t *pm)
{
	struct zp_ctx *c = arg;

	(void)pm;
	mark_range(c->mark, (start - c->start) / PIECE, (end - start + PIECE - 1) / PIECE);
	return 0;
}

/* Pieces mapping the shared zero page, by PAGEMAP_SCAN (6.7+); 0 without. */
static void pfnzero_pieces(uint64_t start, uint64_t n, uint64_t *out)
{
	struct page_region vec[256];
	struct pm_scan_arg a = {
		.size = sizeof(a), .start = start, .end = start + n * PIECE,
		.vec = (uintptr_t)vec, .vec_len = 256,
		.category_mask = PAGE_IS_PFNZERO, .return_mask = PAGE_IS_PFNZERO,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	while (a.start < a.end) {
		long got = ioctl(fd, PAGEMAP_SCAN, &a);

		if (got < 0)
			break;
		for (long i = 0; i < got; i++)
			mark_range(out, (vec[i].start - start) / PIECE,
				   (vec[i].end - vec[i].start) / PIECE);
		if (a.walk_end <= a.start)
			break;
		a.start = a.walk_end;
	}
	close(fd);
}

/*
 * Whether the mapping at @addr is anonymous (inode 0 in /proc/self/maps):
 * only then does a hole of a private mapping read as zero. A registered
 * (external) private mapping may map a file without pgtrack holding its fd.
 */
static bool anon_mapping(uint64_t addr)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long long lo, hi, off, ino;
	char line[512], dev[32];
	bool anon = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx %*s %llx %31s %llu", &lo, &hi, &off, dev, &ino) != 5)
			continue;
		if (addr >= lo && addr < hi) {
			anon = ino == 0;
			break;
		}
	}
	fclose(f);
	return anon;
}

/*
 * uffd-wp pte markers are holes that PAGEMAP_SCAN reports as swapped: the
 * uffd trackers install them on every unpopulated piece
 * (UFFD_FEATURE_WP_UNPOPULATED) and a zap under uffd-WP leaves one. Only
 * /proc/self/pagemap tells them from swap, and only to CAP_SYS_ADMIN, which
 * sees the swap type and offset: a marker is the last of the 5-bit swap
 * types (SWP_PTE_MARKER, 31) with PTE_MARKER_UFFD_WP (1) alone in the
 * offset. Poison and guard markers fault when read: never zero. Without the
 * capability type and offset read 0 (offset 0 is the swap header, never a
 * page) and the pieces stay unknown. @swapped: swapped, not present.
 */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_SWP_TYPE(e) ((e) & 0x1f)
#define PM_SWP_OFFSET(e) (((e) >> 5) & ((1ULL << 50) - 1))
#define SWP_PTE_MARKER_TYPE 31
#define PTE_MARKER_UFFD_WP 1

static void marker_holes(uint64_t start, uint64_t n, const uint64_t *swapped, uint64_t *zero)
{
	int fd = -1;
	uint64_t e[512];

	for (uint64_t i = 0; i < n;) {
		uint64_t j = i, got;

		if (!swapped[i / 64]) {
			i = (i / 64 + 1) * 64;
			continue;
		}
		if (!(swapped[i / 64] >> (i % 64) & 1)) {
			i++;
			continue;
		}
		while (j < n && j - i < 512 && (swapped[j / 64] >> (j % 64) & 1))
			j++;
		if (fd < 0 && (fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
			return;
		got = (uint64_t)pread(fd, e, (j - i) * 8, (off_t)((start / PIECE + i) * 8));
		if (got != (j - i) * 8)
			break;
		for (uint64_t k = 0; k < j - i; k++)
			if ((e[k] & (PM_PRESENT | PM_SWAP)) == PM_SWAP &&
			    PM_SWP_TYPE(e[k]) == SWP_PTE_MARKER_TYPE &&
			    PM_SWP_OFFSET(e[k]) == PTE_MARKER_UFFD_WP)
				zero[(i + k) / 64] |= 1ULL << ((i + k) % 64);
		i = j;
	}
	if (fd >= 0)
		close(fd);
}

/* Private memory: present pieces into @present, holes into @zero. */
static int private_classify(struct pgt_region *r, uint64_t start, uint64_t n, uint64_t *present,
			    uint64_t *zero, uint64_t *tmp)
{
	struct zp_ctx c = { .start = start, .mark = tmp };
	bool scan = r->eng->probe.pagemap_scan;
	size_t nw = (size_t)((n + 63) / 64);
	bool anon;
	int ret;

	/* present or swapped: everything else is a hole */
	ret = pgt__present_walk(start, start + n * PIECE, true, scan, mark_run, &c);
	if (ret)
		return ret;
	/* with a page provider a hole is content not yet supplied, not zero */
	anon = r->fd < 0 && !r->provider && (r->owned || anon_mapping(start));
	if (anon)
		for (size_t w = 0; w < nw; w++)
			zero[w] = ~tmp[w];
	c.mark = present;
	ret = pgt__present_walk(start, start + n * PIECE, false, scan, mark_run, &c);
	if (ret)
		return ret;
	if (anon && r->uffd >= 0) {
		for (size_t w = 0; w < nw; w++)
			tmp[w] &= ~present[w];
		marker_holes(start, n, tmp, zero);
	}
	if (scan) {
		memset(tmp, 0, nw * 8);
		pfnzero_pieces(start, n, tmp);
		for (size_t w = 0; w < nw; w++) {
			zero[w] |= tmp[w] & present[w];
			present[w] &= ~tmp[w];
		}
	}
	return 0;
}

/*
 * hugetlbfs has no SEEK_DATA, and mincore there sees only our own page
 * tables. But its read() of a hole copies zeros without allocating, and it
 * has no swap: so read the pieces not mapped here through the fd.
 */
static int hugetlbfs_holes(struct pgt_region *r, uint64_t off0, uint64_t n,
			   const uint64_t *present, uint64_t *zero)
{
	const uint64_t chunk = 512;     /* pieces per read: one 2 MiB page */
	uint8_t *buf = malloc(chunk * PIECE);

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i += chunk) {
		uint64_t k = n - i < chunk ? n - i : chunk;
		ssize_t got;

		if (pgt_hal_popcount(present + i / 64, (size_t)((k + 63) / 64)) == k)
			continue;       /* all mapped here: read in place */
		got = pread(r->fd, buf, k * PIECE, (off_t)(off0 + i * PIECE));
		for (uint64_t j = 0; got > 0 && j < k && (j + 1) * PIECE <= (uint64_t)got; j++)
			if (!(present[(i + j) / 64] >> ((i + j) % 64) & 1) &&
			    pgt_hal_is_zero(buf + j * PIECE, PIECE))
				zero[(i + j) / 64] |= 1ULL << ((i + j) % 64);
	}
	free(buf);
	return 0;
}

/* Shared memory: page-cache residency, and file holes as zero. */
static int shared_classify(struct pgt_region *r, uint64_t start, uint64_t n, uint64_t *present,
			   uint64_t *zero)
{
	unsigned char vec[4096];
	uint64_t off0 = r->fd_offset + (start - (uintptr_t)r->addr);

	for (uint64_t i = 0; i < n; i += sizeof(vec)) {
		uint64_t k = n - i < sizeof(vec) ? n - i : sizeof(vec);

		if (mincore((void *)(uintptr_t)(start + i * PIECE), k * PIECE, vec))
			return -errno;
		for (uint64_t j = 0; j < k; j++)
			if (vec[j] & 1)
				present[(i + j) / 64] |= 1ULL << ((i + j) % 64);
	}
	if (r->fd < 0)
		return 0;
	if (r->hugetlb)
		return hugetlbfs_holes(r, off0, n, present, zero);
	/* holes of the file: [off, data) between data extents */
	for (uint64_t off = off0; off < off0 + n * PIECE;) {
		off_t d = lseek(r->fd, (off_t)off, SEEK_DATA);
		uint64_t data = d < 0 ? off0 + n * PIECE : (uint64_t)d, h;

		if (d < 0 && errno != ENXIO)
			return 0;       /* no SEEK_DATA: report no holes */
		if (data > off0 + n * PIECE)
			data = off0 + n * PIECE;
		/* only whole pieces that are not resident */
		for (h = (off - off0) / PIECE; h < (data - off0) / PIECE; h++)
			if (!(present[h / 64] >> (h % 64) & 1))
				zero[h / 64] |= 1ULL << (h % 64);
		if (d < 0)
			break;
		d = lseek(r->fd, d, SEEK_HOLE);
		if (d < 0)
			return 0;
		off = (uint64_t)d;
	}
	return 0;
}

/* Argument rules; 0 and the region's address of @gpa, or -errno. */
static int zp_check(struct pgt_region *r, uint64_t gpa, uint64_t len, unsigned long *bitmap,
		    uint32_t flags)
{
	if (!r || (flags & ~(uint32_t)PGT_ZERO_PAGES_RESIDENT))
		return -EINVAL;
	if ((gpa | len) % PIECE || (len && !bitmap))
		return -EINVAL;
	if (gpa < r->gpa || len > r->length || gpa - r->gpa > r->length - len)
		return -ERANGE;
	return 0;
}

PGT_EXPORT int64_t pgt_zero_pages(pgt_region *r, uint64_t gpa, uint64_t len,
				  unsigned long *bitmap, uint32_t flags)
{
	uint64_t n = len / PIECE, start, *present, *tmp, *zero = (uint64_t *)bitmap;
	size_t nw = (size_t)((n + 63) / 64);
	int64_t cnt = 0;
	int ret = zp_check(r, gpa, len, bitmap, flags);

	if (ret || !n)
		return ret;
	start = (uintptr_t)r->addr + (gpa - r->gpa);
	present = calloc(nw, 8);
	tmp = calloc(nw, 8);
	if (!present || !tmp) {
		ret = -ENOMEM;
		goto out;
	}
	memset(zero, 0, nw * 8);
	ret = r->shared ? shared_classify(r, start, n, present, zero)
			: private_classify(r, start, n, present, zero, tmp);
	if (ret)
		goto out;
	if (flags & PGT_ZERO_PAGES_RESIDENT)
		memset(zero, 0, nw * 8);
	for (uint64_t i = 0; i < n; i++)
		if ((present[i / 64] >> (i % 64) & 1) &&
		    pgt_hal_is_zero((const void *)(uintptr_t)(start + i * PIECE), PIECE))
			zero[i / 64] |= 1ULL << (i % 64);
	if (n % 64)
		zero[nw - 1] &= ~0ULL >> (64 - n % 64);
	cnt = (int64_t)pgt_hal_popcount(zero, nw);
out:
	free(present);
	free(tmp);
	if (ret && n)
		memset(zero, 0, nw * 8);
	return ret ? ret : cnt;
}
