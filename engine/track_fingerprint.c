/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking by fingerprints: the method of last resort. It needs no
 * kernel support and takes no fault: each collect hashes (CRC32C, hal/crc.c)
 * every resident 4 KiB piece of the region and reports the pages with a
 * piece whose fingerprint changed since the previous collect. Memory written
 * by anything (a device without dirty logging, the kernel on the process's
 * behalf, another process sharing the memory) is seen the same way.
 *
 * Cost: a collect reads all resident memory (the benchmark "refine" gives
 * the hashing rate); 4 bytes per 4 KiB piece (0.1 %), mapped MAP_NORESERVE.
 * Pages that are not resident (mincore) count as zero and are not read, so
 * collecting never populates or faults back a freed page; shared hugetlbfs
 * pages not mapped here are read from the file (pgt__file_unseen(): another
 * process may write them through its own mapping).
 *
 * What it reports is changed content, not writes: a piece changed and
 * changed back between two collects is not reported (its content is what
 * the consumer has). A consumer that copies a reported page while the guest
 * changes it and restores it before the next collect may keep the transient
 * value: each page reported is therefore reported once more by the next
 * collect, which covers a copy made before that collect; a consumer that
 * copies later, with writers running, gets exactness only from a final
 * round with writers paused (stop-and-copy), which this method reports like
 * any other round.
 *
 * AUTO never picks it: it is chosen when asked for (or when no other
 * method works for a region).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "engine/engine_pvt.h"
#include "hal/hal.h"

#define PIECE 4096u

struct fpt {
	uint32_t *fp;           /* per 4 KiB piece */
	size_t fp_bytes;
	uint8_t *vec;           /* mincore, per 4 KiB piece */
	uint64_t *again;        /* pages reported last collect, one bit each */
	uint64_t *now;          /* pages reported by this collect */
	size_t words;
	uint32_t zero_crc;
	uint64_t npieces;
	unsigned per;           /* pieces per page */
	uint8_t *bounce;        /* a page read from the file */
	bool file_unseen;       /* this collect: the file holds unmapped pages */
};

static int fpt_supported(const struct pgt_region *r, const struct pgt_probe *p)
{
	(void)p;
	return r->page_size % PIECE ? -EOPNOTSUPP : 0;
}

static void fpt_free(struct fpt *t)
{
	if (!t)
		return;
	if (t->fp)
		munmap(t->fp, t->fp_bytes);
	free(t->vec);
	free(t->bounce);
	free(t->again);
	free(t->now);
	free(t);
}

/* Hash page @p into the store; true when a piece changed. */
static bool fpt_page(struct pgt_region *r, struct fpt *t, uint64_t p)
{
	uint32_t h[512];
	const uint8_t *a = pgt__page_addr(r, p);
	bool changed = false, whole = false;  /* whole: every piece is read */

	if (!(t->vec[p * t->per] & 1) && t->file_unseen) {
		a = pgt__file_page(r, p, &t->bounce);
		whole = true;
	}
	for (unsigned base = 0; base < t->per; base += 512) {
		unsigned n = t->per - base < 512 ? t->per - base : 512;
		uint64_t i0 = p * t->per + base;

		for (unsigned k = 0; k < n;) {
			unsigned run = 0;

			/* resident stretches hashed in one call */
			while (k + run < n && (whole || (t->vec[i0 + k + run] & 1)))
				run++;
			if (run) {
				pgt_hal_crc32c_4k(a + (size_t)(base + k) * PIECE, run, h + k);
				k += run;
			} else {
				h[k++] = t->zero_crc;
			}
		}
		for (unsigned k = 0; k < n; k++)
			if (t->fp[i0 + k] != h[k]) {
				t->fp[i0 + k] = h[k];
				changed = true;
			}
	}
	return changed;
}

/*
 * Does the file hold pages this mapping does not (pgt__file_unseen())? Not
 * if it holds no more than we map here (the blocks it allocates, from
 * fstat): then no page is read from it, which spares a guest whose memory
 * is mostly untouched a read of every hole at each collect.
 */
static bool file_unseen(struct pgt_region *r, const struct fpt *t)
{
	uint64_t mapped = 0;
	struct stat st;

	if (!pgt__file_unseen(r))
		return false;
	if (fstat(r->fd, &st))
		return true;
	for (uint64_t p = 0; p < r->npages; p++)
		mapped += t->vec[p * t->per] & 1;
	return (uint64_t)st.st_blocks * 512 > mapped * r->page_size;
}

static int fpt_scan(struct pgt_region *r, struct fpt *t)
{
	if (mincore(r->addr, r->length, t->vec))
		return -errno;
	t->file_unseen = file_unseen(r, t);
	memset(t->now, 0, t->words * sizeof(uint64_t));
	for (uint64_t p = 0; p < r->npages; p++)
		if (fpt_page(r, t, p))
			t->now[p / 64] |= 1ull << (p % 64);
	return 0;
}

static int fpt_start(struct pgt_region *r)
{
	struct fpt *t = calloc(1, sizeof(*t));
	static const uint8_t zero[PIECE];
	int ret;

	if (!t)
		return -ENOMEM;
	t->npieces = r->length / PIECE;
	t->per = (unsigned)(r->page_size / PIECE);
	t->words = (size_t)((r->npages + 63) / 64);
	t->fp_bytes = t->npieces * sizeof(uint32_t);
	t->fp = mmap(NULL, t->fp_bytes, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->fp == MAP_FAILED)
		t->fp = NULL;
	t->vec = malloc(t->npieces);
	t->again = calloc(t->words, sizeof(uint64_t));
	t->now = calloc(t->words, sizeof(uint64_t));
	if (!t->fp || !t->vec || !t->again || !t->now) {
		fpt_free(t);
		return -ENOMEM;
	}
	pgt_hal_crc32c_4k(zero, 1, &t->zero_crc);
	/* the fingerprints start as zero pieces: baseline now */
	for (uint64_t i = 0; i < t->npieces; i++)
		t->fp[i] = t->zero_crc;
	ret = fpt_scan(r, t);
	if (ret) {
		fpt_free(t);
		return ret;
	}
	r->dpriv = t;
	return 0;
}

static int64_t fpt_collect(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	struct fpt *t = r->dpriv;
	uint64_t n = 0, start = 0, len = 0;
	int ret = fpt_scan(r, t);

	if (ret)
		return ret;
	for (size_t w = 0; w < t->words; w++) {
		uint64_t bits = t->now[w] | t->again[w];

		t->again[w] = t->now[w];
		for (; bits; bits &= bits - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			n++;
			if (len && start + len == p) {
				len++;
				continue;
			}
			if (len && fn)
				fn(arg, start, len);
			start = p;
			len = 1;
		}
	}
	if (len && fn)
		fn(arg, start, len);
	return (int64_t)n;
}

static void fpt_stop(struct pgt_region *r)
{
	fpt_free(r->dpriv);
	r->dpriv = NULL;
}

const struct pgt_dirty_ops pgt__dirty_fingerprint = {
	.method = PGT_DIRTY_FINGERPRINT,
	.supported = fpt_supported,
	.start = fpt_start,
	.collect = fpt_collect,
	.stop = fpt_stop,
};
