/* SPDX-License-Identifier: MIT */
/*
 * Sub-page refinement: a harvest of a region backed by 2 MiB pages reports
 * the 4 KiB pieces that changed, not whole 2 MiB pages.
 *
 * The tracker still works at 2 MiB (the kernel reports hugetlb writes per
 * huge page). For each page a harvest takes from its view, the page's
 * pieces are hashed (lib/fpstore.h: CRC32C, or compared with a shadow copy)
 * against the region's stored state, and only changed pieces are reported.
 *
 * Views. Fingerprints are kept once per region, not per view. The view
 * that refines a page updates them and ORs the changed pieces into every
 * other view's `sub` mask (128 bytes of per-view state per 2 MiB page with
 * `unc` below), so each view still reports every piece that changed since
 * its own last harvest: a piece changed since view W's last harvest either
 * changed before another view's refinement of the page (then it is in
 * W's sub) or after the last refinement (then the hash differs now). The
 * scheme can over-report (a piece changed and changed back between two
 * refinements is reported to a view that would have seen it unchanged with
 * its own fingerprints), never under-report. A new view's sub starts full:
 * its first refinement of each page reports the page whole.
 *
 * The consumer's copy window. A consumer copies the reported pieces after
 * the harvest returns, while the guest keeps writing; a piece rewritten in
 * that window and restored before the next harvest (a lock word taken and
 * released) would hash as unchanged though the consumer copied the
 * transient value. Such a write comes after the tracker was re-armed, so the
 * page is in the view's next harvest: the pieces a view's last harvest
 * reported (`unc`) are reported again when their page is in its next
 * harvest, whatever their hash says. A page not in it was not written since
 * the re-arm, before which the consumer (by the harvest contract) finished
 * copying: its copy equals what was hashed, and the uncertainty ends. So a
 * piece is re-sent while its page is written in every round, and the
 * stop-and-copy round (writers paused) makes the copy exact.
 *
 * Releases and bug-1 semantics (pgt_dirty_harvest): pieces released or
 * freed read zero now; the release ledger marks their page dirty, the hash
 * of zeros differs from the stored one, and the piece is reported: memory
 * changed under the consumer is dirty. A released piece that was zero
 * already is not reported (the consumer's copy is zero too). Pages that are
 * not resident are taken as zero without reading them (mincore), so
 * refining never allocates a freed huge page back.
 *
 * Everything runs under r->harvest_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/compat_uapi.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "lib/shardmap.h"

struct pgt_refine {
	int mode;
	struct pgt_fpstore fp;
	uint64_t npieces;
	size_t mw;                  /* mask words per page */
	unsigned long *scratch;     /* pages the view took, KVM layout */
	size_t scratch_words;
	unsigned long *res;         /* of those, the resident ones */
	int pagemap_fd;             /* PAGEMAP_SCAN for residency, or -1 */
	uint8_t *bounce;            /* a page read from the file (absent_page()) */
	uint64_t *out;              /* refined pieces of this harvest */
};

static void refine_free(struct pgt_refine *f)
{
	if (!f)
		return;
	pgt__fpstore_fini(&f->fp);
	if (f->pagemap_fd >= 0)
		close(f->pagemap_fd);
	free(f->scratch);
	free(f->res);
	free(f->bounce);
	free(f->out);
	free(f);
}

PGT_EXPORT int pgt_region_refine(pgt_region *r, int mode)
{
	struct pgt_refine *f;
	int ret;

	if (!r || mode < PGT_REFINE_OFF || mode > PGT_REFINE_COMPARE)
		return -EINVAL;
	if (!r->dops || r->page_size % (64u * PGT_FP_PIECE))
		return -EINVAL;  /* no dirty tracking, or pages too small to refine */
	pthread_mutex_lock(&r->harvest_lock);
	ret = r->nviews ? -EBUSY : 0;
	if (ret || mode == PGT_REFINE_OFF) {
		if (!ret) {
			refine_free(r->refine);
			r->refine = NULL;
		}
		pthread_mutex_unlock(&r->harvest_lock);
		return ret;
	}
	f = calloc(1, sizeof(*f));
	if (f)
		f->pagemap_fd = -1;
	ret = f ? pgt__fpstore_init(&f->fp, mode == PGT_REFINE_COMPARE ? PGT_FP_SHADOW : PGT_FP_CRC,
				    r->npages, r->page_size) : -ENOMEM;
	if (!ret) {
		f->mode = mode;
		f->mw = f->fp.mask_words;
		f->npieces = r->npages * f->fp.pieces;
		f->scratch_words = PGT_KVM_WORDS(r->npages);
		f->scratch = calloc(f->scratch_words, sizeof(unsigned long));
		f->res = calloc(f->scratch_words, sizeof(unsigned long));
		f->out = calloc(r->npages * f->mw, sizeof(uint64_t));
		if (!f->scratch || !f->res || !f->out)
			ret = -ENOMEM;
		/* without it (pre-6.7 kernel), a mincore a page */
		if (!ret && r->eng->probe.pagemap_scan)
			f->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	}
	if (ret) {
		if (f && f->fp.known)
			pgt__fpstore_fini(&f->fp);
		if (f)
			f->fp = (struct pgt_fpstore){ 0 };
		refine_free(f);
	} else {
		refine_free(r->refine);
		r->refine = f;
	}
	pthread_mutex_unlock(&r->harvest_lock);
	return ret;
}

PGT_EXPORT int pgt_region_refine_mode(const pgt_region *r)
{
	if (!r)
		return -EINVAL;
	return r->refine ? r->refine->mode : PGT_REFINE_OFF;
}

void pgt__refine_fini(struct pgt_region *r)
{
	refine_free(r->refine);
	r->refine = NULL;
}

size_t pgt__refine_bytes(const struct pgt_region *r)
{
	const struct pgt_refine *f = r->refine;

	if (!f)
		return 0;
	return sizeof(*f) + pgt__fpstore_bytes(&f->fp) +
	       2 * f->scratch_words * sizeof(unsigned long) + r->npages * f->mw * sizeof(uint64_t) +
	       (f->bounce ? r->page_size : 0);
}

int pgt__refine_view_init(struct pgt_region *r, struct pgt_dirty_view *v)
{
	size_t n;

	if (!r->refine)
		return 0;
	n = r->npages * r->refine->mw;
	v->sub = malloc(n * sizeof(uint64_t));
	v->unc = calloc(n, sizeof(uint64_t));
	if (!v->sub || !v->unc) {
		pgt__refine_view_fini(v);
		return -ENOMEM;
	}
	memset(v->sub, 0xff, n * sizeof(uint64_t));  /* first look: whole pages */
	return 0;
}

PGT_EXPORT int pgt_dirty_view_refine(pgt_dirty_view *v, bool on)
{
	struct pgt_region *r = v ? v->r : NULL;
	size_t n;

	if (!r || v->internal)
		return -EINVAL;
	pthread_mutex_lock(&r->harvest_lock);
	if (!r->refine || !v->sub) {
		pthread_mutex_unlock(&r->harvest_lock);
		return -EINVAL;
	}
	n = r->npages * r->refine->mw;
	if (on && v->norefine) {
		/* changes went unrecorded while off: the next look is whole */
		memset(v->sub, 0xff, n * sizeof(uint64_t));
		memset(v->unc, 0, n * sizeof(uint64_t));
	}
	v->norefine = !on;
	pthread_mutex_unlock(&r->harvest_lock);
	return 0;
}

void pgt__refine_view_fini(struct pgt_dirty_view *v)
{
	free(v->sub);
	free(v->unc);
	v->sub = v->unc = NULL;
}

size_t pgt__refine_view_bytes(const struct pgt_region *r)
{
	return r->refine ? 2 * r->npages * r->refine->mw * sizeof(uint64_t) : 0;
}

/* A page's first 4 KiB says for it; on an error it counts as resident. */
static bool resident(const uint8_t *addr)
{
	unsigned char vec[1];

	if (mincore((void *)addr, 4096, vec))
		return true;
	return vec[0] & 1;
}

/*
 * Pages the harvest took that are not mapped, from one PAGEMAP_SCAN over
 * [@lo, @hi]; clears their bits in f->res unless mincore says the page is
 * there (shmem: mincore asks the page cache, so a page whose mapping was
 * zapped but which the file keeps is read, not taken for zeros; hugetlbfs
 * answers from the mapping: absent_page() reads such pages). 0 or -errno.
 */
static int find_absent(struct pgt_region *r, uint64_t lo, uint64_t hi)
{
	struct pgt_refine *f = r->refine;
	uint64_t base = (uintptr_t)r->addr;
	struct page_region vec[32];
	struct pm_scan_arg a = {
		.size = sizeof(a), .start = base + (lo << r->page_shift),
		.end = base + ((hi + 1) << r->page_shift),
		.vec = (uintptr_t)vec, .vec_len = sizeof(vec) / sizeof(vec[0]),
		.category_inverted = PAGE_IS_PRESENT, .category_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};

	for (;;) {
		long k = ioctl(f->pagemap_fd, PAGEMAP_SCAN, &a);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < k; i++) {
			/* the pages whose first 4 KiB lies in the hole */
			uint64_t p = (vec[i].start - base + r->page_size - 1) >> r->page_shift;
			uint64_t e = (vec[i].end - 1 - base) >> r->page_shift;

			for (; p <= e; p++)
				if (pgt__test_bit_long(f->res, p) &&
				    (!r->shared || pgt__file_unseen(r) ||
				     !resident(pgt__page_addr(r, p))))
					pgt__clear_bit_long(f->res, p);
		}
		if (a.walk_end >= a.end)
			return 0;
		if (a.walk_end <= a.start)
			return -EIO;
		a.start = a.walk_end;
	}
}

/*
 * Which of the pages this harvest took are resident, into f->res: refining
 * reads them, and reading a freed huge page would allocate it again. One
 * PAGEMAP_SCAN for the whole harvest (a syscall costs microseconds in a guest
 * with page-table isolation: a mincore a page took 0.12 ms of a 4.4 ms
 * harvest of 51 pages here, the scan 0.02 ms), else a mincore a page. Pages
 * freed by pgt_release() cannot change meanwhile (it takes harvest_lock);
 * memory someone else punches out while we read it may come back, as it
 * could between a mincore and the read.
 */
static void find_resident(struct pgt_region *r)
{
	struct pgt_refine *f = r->refine;
	uint64_t lo = UINT64_MAX, hi = 0;

	memcpy(f->res, f->scratch, f->scratch_words * sizeof(unsigned long));
	for (size_t w = 0; w < f->scratch_words; w++)
		if (f->scratch[w]) {
			if (lo == UINT64_MAX)
				lo = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(f->scratch[w]);
			hi = w * PGT_BITS_PER_LONG + PGT_BITS_PER_LONG - 1 -
			     (uint64_t)__builtin_clzl(f->scratch[w]);
		}
	if (lo == UINT64_MAX || (f->pagemap_fd >= 0 && !find_absent(r, lo, hi)))
		return;
	memcpy(f->res, f->scratch, f->scratch_words * sizeof(unsigned long));
	for (size_t w = 0; w < f->scratch_words; w++)
		for (unsigned long b = f->scratch[w]; b; b &= b - 1) {
			uint64_t p = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(b);

			if (!resident(pgt__page_addr(r, p)))
				pgt__clear_bit_long(f->res, p);
		}
}

/* A page not mapped here: NULL where that means zero for sure (private
 * memory; shmem, whose page cache mincore asked), else read from the file. */
static const uint8_t *absent_page(struct pgt_region *r, uint64_t p)
{
	return pgt__file_unseen(r) ? pgt__file_page(r, p, &r->refine->bounce) : NULL;
}

/*
 * The consumer's data buffer while a harvest fills it; @full once a part did
 * not fit (nothing more is copied: the caller fails with -ENOBUFS).
 */
struct copy_state {
	uint8_t *data;
	size_t cap, len;
	bool full;
};

/*
 * Copy the pieces of mask word @i of page @p (at @addr, NULL: not resident)
 * to the data buffer, right after they were hashed (their lines are still
 * in cache: the copy does not read memory a second time), and store each
 * piece's state from the copy: a piece the guest wrote since it was hashed
 * now has the copy's fingerprint, and the other views, whose consumers did
 * not get this copy, must look at it again.
 */
static void copy_word(struct pgt_region *r, struct pgt_dirty_view *v, uint64_t p, size_t i,
		      const uint8_t *addr, struct copy_state *cs)
{
	struct pgt_refine *f = r->refine;
	uint64_t m = f->out[p * f->mw + i];

	if (cs->full || cs->cap - cs->len < (size_t)__builtin_popcountll(m) * PGT_FP_PIECE) {
		cs->full = true;
		return;
	}
	for (; m; m &= m - 1) {
		unsigned k = (unsigned)(i * 64) + (unsigned)__builtin_ctzll(m);
		uint64_t bit = p * f->fp.pieces + k;

		if (pgt__fpstore_copy(&f->fp, p, k, cs->data + cs->len,
				      addr ? addr + (size_t)k * PGT_FP_PIECE : NULL))
			for (struct pgt_dirty_view *o = r->views; o; o = o->next)
				if (o != v && pgt__refine_on(o))
					o->sub[bit / 64] |= 1ull << (bit % 64);
		cs->len += PGT_FP_PIECE;
	}
}

/*
 * Refine page @p for view @v into f->out, 64 pieces (256 KiB) at a time;
 * update the other views' subs; copy the reported pieces if @cs.
 */
static uint64_t refine_page(struct pgt_region *r, struct pgt_dirty_view *v, uint64_t p,
			    struct copy_state *cs)
{
	struct pgt_refine *f = r->refine;
	uint64_t *m = f->out + p * f->mw, *own = v->sub + p * f->mw, c = 0;
	const uint8_t *addr = pgt__test_bit_long(f->res, p) ? pgt__page_addr(r, p) : absent_page(r, p);
	bool known = pgt__fpstore_begin(&f->fp, p);

	for (size_t i = 0; i < f->mw; i++) {
		m[i] = 0;
		pgt__fpstore_update_range(&f->fp, p, (unsigned)i * 64, 64, addr, known, m);
		for (struct pgt_dirty_view *w = r->views; w; w = w->next)
			if (w != v && pgt__refine_on(w))
				w->sub[p * f->mw + i] |= m[i];
		m[i] |= own[i] | v->unc[p * f->mw + i];
		own[i] = 0;
		c += (uint64_t)__builtin_popcountll(m[i]);
		if (cs)
			copy_word(r, v, p, i, addr, cs);
	}
	return c;
}

/* Runs of set pieces in f->out, over the pages in f->scratch, a word at a time. */
static size_t emit_runs(struct pgt_region *r, struct pgt_run *runs, size_t cap)
{
	struct pgt_refine *f = r->refine;
	uint64_t start = 0, len = 0;
	size_t n = 0;

	for (size_t w = 0; w < f->scratch_words; w++)
		for (unsigned long b = f->scratch[w]; b; b &= b - 1) {
			uint64_t p = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(b);

			for (uint64_t i = p * f->mw; i < (p + 1) * f->mw; i++)
				for (uint64_t x = f->out[i]; x;) {
					unsigned s = (unsigned)__builtin_ctzll(x);
					uint64_t y = ~(x >> s);  /* zero: ones up to bit 63 */
					unsigned l = y ? (unsigned)__builtin_ctzll(y) : 64 - s;

					if (len && start + len == i * 64 + s) {
						len += l;
					} else {
						if (len && n < cap)
							runs[n] = (struct pgt_run){
								r->gpa + start * PGT_FP_PIECE, len };
						n += len ? 1 : 0;
						start = i * 64 + s;
						len = l;
					}
					x = s + l < 64 ? x & (~0ull << (s + l)) : 0;
				}
		}
	if (len && n < cap)
		runs[n] = (struct pgt_run){ r->gpa + start * PGT_FP_PIECE, len };
	return n + (len ? 1 : 0);
}

static void emit_bitmap(struct pgt_region *r, unsigned long *bm, size_t words)
{
	struct pgt_refine *f = r->refine;
	size_t need = PGT_KVM_WORDS(f->npieces);

	memset(bm, 0, words * sizeof(unsigned long));
	for (size_t i = 0; i < need; i++) {
		uint64_t x = f->out[i * PGT_BITS_PER_LONG / 64];

		if (PGT_BITS_PER_LONG == 32)
			x >>= 32 * (i & 1);
		bm[i] = (unsigned long)x;
	}
}

/* Undo a take that cannot be returned (-ENOBUFS): everything stays pending. */
static void untake(struct pgt_region *r, struct pgt_dirty_view *v)
{
	struct pgt_refine *f = r->refine;

	for (size_t w = 0; w < f->scratch_words; w++)
		for (unsigned long b = f->scratch[w]; b; b &= b - 1) {
			uint64_t p = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(b);

			for (size_t i = 0; i < f->mw; i++)
				v->sub[p * f->mw + i] |= f->out[p * f->mw + i];
			pgt__shardmap_set_range(&v->bm, p, 1);
		}
}

int64_t pgt__refine_harvest(struct pgt_dirty_view *v, struct pgt_harvest *h, bool has_psize,
			    bool has_data)
{
	struct pgt_region *r = v->r;
	struct pgt_refine *f = r->refine;
	struct pgt_shard_out o = {
		.bitmap = f->scratch, .bitmap_words = f->scratch_words,
		.gpa = r->gpa, .page_shift = r->page_shift,
	};
	struct copy_state cs = {
		.data = has_data ? h->data : NULL, .cap = has_data ? h->data_cap : 0,
	};
	int64_t n;
	uint64_t c = 0;

	if (h->bitmap && h->bitmap_words < PGT_KVM_WORDS(f->npieces))
		return -ENOBUFS;
	n = pgt__shardmap_take(&v->bm, &o);
	if (n < 0)
		return n;
	memset(f->out, 0, r->npages * f->mw * sizeof(uint64_t));
	find_resident(r);
	for (size_t w = 0; w < f->scratch_words; w++)
		for (unsigned long b = f->scratch[w]; b; b &= b - 1) {
			uint64_t p = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(b);

			c += refine_page(r, v, p, cs.data ? &cs : NULL);
		}
	h->nruns = 0;
	if (h->runs) {
		h->nruns = emit_runs(r, h->runs, h->runs_cap);
		if (h->nruns > h->runs_cap) {
			untake(r, v);
			return -ENOBUFS;
		}
	}
	if (cs.data) {
		h->data_len = c * PGT_FP_PIECE;
		if (cs.full) {
			untake(r, v);
			return -ENOBUFS;
		}
	}
	if (h->bitmap)
		emit_bitmap(r, h->bitmap, h->bitmap_words);
	/* what this harvest reports is uncertain until the view's next harvest,
	 * unless the consumer got the very bytes the fingerprints describe */
	if (has_data && h->data)
		memset(v->unc, 0, r->npages * f->mw * sizeof(uint64_t));
	else
		memcpy(v->unc, f->out, r->npages * f->mw * sizeof(uint64_t));
	h->dirty_pages = c;
	if (has_psize)
		h->page_size = PGT_FP_PIECE;
	return (int64_t)c;
}
