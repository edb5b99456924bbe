/* SPDX-License-Identifier: MIT */
/*
 * Offload log parsing; the contract is in lib/offload.h, the ring format
 * and protocols in docs/offload-ring.md.
 *
 * Cost model: a ring harvest must keep up with a 100 GbE line of 64-byte
 * packets (148.8 M records/s, under 7 ns a record on one core), so the
 * record path is a copy of 16 bytes, one flag check, a segment lookup that
 * hits a one-entry cache almost always, and a plain bit set in a private
 * bitmap. Merging into the (shared, atomic) views happens once per harvest,
 * word-wide, over the span of words that were touched.
 *
 * Shared-memory reads of device data go through relaxed atomic loads: the
 * producer may be buggy or hostile and write while we read. Each field is
 * read exactly once and only the copy is checked and used.
 */
#include "lib/offload.h"
#include "hal/hal.h"
#include "hal/offload/offload.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* 64-bit IOVAs in 4 KiB pages. */
#define MAX_PFN (1ULL << (64 - PGT_OFL_PAGE_SHIFT))

static inline uint32_t ld32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t ld64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* The map                                                             */
/* ------------------------------------------------------------------ */

static int cmp_pfn(const void *a, const void *b)
{
	const struct pgt_ofl_seg *x = a, *y = b;

	return x->pfn < y->pfn ? -1 : x->pfn > y->pfn;
}

static bool slot_less(const struct pgt_ofl_seg *s, uint32_t a, uint32_t b)
{
	if (s[a].slot != s[b].slot)
		return s[a].slot < s[b].slot;
	return s[a].slot_pfn < s[b].slot_pfn;
}

static void sift_down(const struct pgt_ofl_seg *s, uint32_t *idx, uint32_t root, uint32_t n)
{
	for (;;) {
		uint32_t c = 2 * root + 1, t;

		if (c >= n)
			return;
		if (c + 1 < n && slot_less(s, idx[c], idx[c + 1]))
			c++;
		if (!slot_less(s, idx[root], idx[c]))
			return;
		t = idx[root];
		idx[root] = idx[c];
		idx[c] = t;
		root = c;
	}
}

static void sort_by_slot(const struct pgt_ofl_seg *s, uint32_t *idx, uint32_t n)
{
	/* heap sort of indices: qsort has no context argument in C11, and n
	 * can be thousands (one range per DPDK page) */
	for (uint32_t i = 0; i < n; i++)
		idx[i] = i;
	for (uint32_t start = n / 2; start-- > 0;)
		sift_down(s, idx, start, n);
	for (uint32_t end = n; end-- > 1;) {
		uint32_t t = idx[0];

		idx[0] = idx[end];
		idx[end] = t;
		sift_down(s, idx, 0, end);
	}
}

int pgt__ofl_map_init(struct pgt_ofl_map *m, const struct pgt_ofl_seg *segs, uint32_t n,
		      struct pgt_ofl_target *targets, uint32_t ntargets)
{
	memset(m, 0, sizeof(*m));
	if (!n || !segs || !targets || !ntargets)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const struct pgt_ofl_seg *s = &segs[i];
		const struct pgt_ofl_target *t;

		if (s->target >= ntargets || !s->npages || s->pfn >= MAX_PFN ||
		    s->npages > MAX_PFN - s->pfn || s->slot_pfn > MAX_PFN - s->npages)
			return -EINVAL;
		t = &targets[s->target];
		if (!t->bits || t->shift < PGT_OFL_PAGE_SHIFT || t->shift > 40 ||
		    t->npages > (UINT64_MAX >> t->shift) ||
		    (s->off & ((1ULL << PGT_OFL_PAGE_SHIFT) - 1)) ||
		    s->off >= t->npages << t->shift ||
		    s->npages > ((t->npages << t->shift) - s->off) >> PGT_OFL_PAGE_SHIFT)
			return -EINVAL;
	}
	m->segs = malloc(n * sizeof(*m->segs));
	m->by_slot = malloc(n * sizeof(*m->by_slot));
	if (!m->segs || !m->by_slot) {
		pgt__ofl_map_fini(m);
		return -ENOMEM;
	}
	memcpy(m->segs, segs, n * sizeof(*segs));
	qsort(m->segs, n, sizeof(*m->segs), cmp_pfn);
	for (uint32_t i = 0; i + 1 < n; i++)
		if (m->segs[i].pfn + m->segs[i].npages > m->segs[i + 1].pfn)
			goto inval;
	sort_by_slot(m->segs, m->by_slot, n);
	for (uint32_t i = 0; i + 1 < n; i++) {
		const struct pgt_ofl_seg *a = &m->segs[m->by_slot[i]], *b = &m->segs[m->by_slot[i + 1]];

		if (a->slot == b->slot && a->slot_pfn + a->npages > b->slot_pfn)
			goto inval;
	}
	m->nsegs = n;
	m->targets = targets;
	m->ntargets = ntargets;
	for (uint32_t i = 0; i < ntargets; i++) {
		targets[i].lo = SIZE_MAX;
		targets[i].hi = 0;
	}
	return 0;
inval:
	pgt__ofl_map_fini(m);
	return -EINVAL;
}

void pgt__ofl_map_fini(struct pgt_ofl_map *m)
{
	free(m->segs);
	free(m->by_slot);
	memset(m, 0, sizeof(*m));
}

/* Segment holding @pfn, or -1; *next: index of the first segment above it. */
static inline long find_pfn(struct pgt_ofl_map *m, uint64_t pfn, uint32_t *next)
{
	const struct pgt_ofl_seg *s = &m->segs[m->last];
	uint32_t lo = 0, hi = m->nsegs;

	if (pfn - s->pfn < s->npages)
		return m->last;
	while (lo < hi) { /* first segment with pfn > @pfn */
		uint32_t mid = (lo + hi) / 2;

		if (m->segs[mid].pfn <= pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	*next = lo;
	if (lo && pfn - m->segs[lo - 1].pfn < m->segs[lo - 1].npages) {
		m->last = lo - 1;
		return lo - 1;
	}
	return -1;
}

/* by_slot index of the segment holding (@slot, @spfn), or -1. */
static inline long find_slot(struct pgt_ofl_map *m, uint32_t slot, uint64_t spfn)
{
	const struct pgt_ofl_seg *s = &m->segs[m->by_slot[m->last_slot]];
	uint32_t lo = 0, hi = m->nsegs;

	if (s->slot == slot && spfn - s->slot_pfn < s->npages)
		return m->last_slot;
	while (lo < hi) { /* first entry greater than (slot, spfn) */
		uint32_t mid = (lo + hi) / 2;
		const struct pgt_ofl_seg *x = &m->segs[m->by_slot[mid]];

		if (x->slot < slot || (x->slot == slot && x->slot_pfn <= spfn))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo) {
		s = &m->segs[m->by_slot[lo - 1]];
		if (s->slot == slot && spfn - s->slot_pfn < s->npages) {
			m->last_slot = lo - 1;
			return lo - 1;
		}
	}
	return -1;
}

static inline void touch_words(struct pgt_ofl_target *t, size_t w0, size_t w1)
{
	if (w0 < t->lo)
		t->lo = w0;
	if (w1 >= t->hi)
		t->hi = w1 + 1;
}

/* Target pages [first, last] (inclusive). */
static void set_pages(struct pgt_ofl_target *t, uint64_t first, uint64_t last)
{
	size_t w0 = (size_t)(first >> 6), w1 = (size_t)(last >> 6);

	touch_words(t, w0, w1);
	if (w0 == w1) {
		t->bits[w0] |= (~0ULL << (first & 63)) & (~0ULL >> (63 - (last & 63)));
		return;
	}
	t->bits[w0] |= ~0ULL << (first & 63);
	for (size_t w = w0 + 1; w < w1; w++)
		t->bits[w] = ~0ULL;
	t->bits[w1] |= ~0ULL >> (63 - (last & 63));
}

static void add_hot(struct pgt_ofl_target *t, uint64_t first, uint64_t last, uint32_t count)
{
	if (!t->hot)
		return;
	for (uint64_t p = first; p <= last; p++) {
		uint32_t v = t->hot[p] + count;

		t->hot[p] = v < count ? UINT32_MAX : v; /* saturate */
	}
}

/* Pages [pfn, pfn + n) of segment @s (inside it) into its target. */
static inline void mark_seg(struct pgt_ofl_map *m, const struct pgt_ofl_seg *s, uint64_t pfn,
			    uint64_t n, uint32_t hot)
{
	struct pgt_ofl_target *t = &m->targets[s->target];
	uint64_t b = s->off + ((pfn - s->pfn) << PGT_OFL_PAGE_SHIFT);
	uint64_t first = b >> t->shift;

	if (n == 1 && !hot && t->shift == PGT_OFL_PAGE_SHIFT) {
		size_t w = (size_t)(first >> 6);

		touch_words(t, w, w);
		t->bits[w] |= 1ULL << (first & 63);
		return;
	}
	uint64_t last = (b + (n << PGT_OFL_PAGE_SHIFT) - 1) >> t->shift;

	set_pages(t, first, last);
	if (hot)
		add_hot(t, first, last, hot);
}

/* IOVA pages; returns false when some of them were outside the map. */
static bool mark_pfn(struct pgt_ofl_map *m, uint64_t pfn, uint64_t n, uint32_t hot)
{
	bool ok = true;

	while (n) {
		uint32_t next = 0;
		long i = find_pfn(m, pfn, &next);

		if (i < 0) {
			uint64_t skip;

			ok = false;
			if (next >= m->nsegs || m->segs[next].pfn - pfn >= n)
				break;
			skip = m->segs[next].pfn - pfn;
			pfn += skip;
			n -= skip;
			continue;
		}
		const struct pgt_ofl_seg *s = &m->segs[i];
		uint64_t k = s->pfn + s->npages - pfn;

		if (k > n)
			k = n;
		mark_seg(m, s, pfn, k, hot);
		pfn += k;
		n -= k;
	}
	return ok;
}

/* Slot pages; a run may continue into the slot's next segment. */
static bool mark_slot(struct pgt_ofl_map *m, uint32_t slot, uint64_t spfn, uint64_t n)
{
	long i = find_slot(m, slot, spfn);

	while (n) {
		const struct pgt_ofl_seg *s;
		uint64_t k;

		if (i < 0 || (uint32_t)i >= m->nsegs)
			return false;
		s = &m->segs[m->by_slot[i]];
		if (s->slot != slot || spfn - s->slot_pfn >= s->npages)
			return false;
		k = s->slot_pfn + s->npages - spfn;
		if (k > n)
			k = n;
		mark_seg(m, s, s->pfn + (spfn - s->slot_pfn), k, 0);
		spfn += k;
		n -= k;
		i++;
	}
	return true;
}

void pgt__ofl_mark(struct pgt_ofl_map *m, uint64_t pfn, uint64_t n, struct pgt_ofl_stats *st)
{
	if (!n || pfn >= MAX_PFN || n > MAX_PFN - pfn || !mark_pfn(m, pfn, n, 0))
		st->rejected++;
}

void pgt__ofl_mark_all(struct pgt_ofl_map *m, struct pgt_ofl_stats *st)
{
	st->all = true;
	for (uint32_t i = 0; i < m->nsegs; i++)
		mark_seg(m, &m->segs[i], m->segs[i].pfn, m->segs[i].npages, 0);
}

void pgt__ofl_targets_clear(struct pgt_ofl_map *m)
{
	for (uint32_t i = 0; i < m->ntargets; i++) {
		struct pgt_ofl_target *t = &m->targets[i];

		if (t->hi > t->lo)
			memset(t->bits + t->lo, 0, (t->hi - t->lo) * sizeof(uint64_t));
		t->lo = SIZE_MAX;
		t->hi = 0;
	}
}

/* One record whose flags passed the protocol check. */
static inline void rec_one(struct pgt_ofl_map *m, uint32_t f, uint32_t slot, uint64_t off,
			   struct pgt_ofl_stats *st)
{
	uint64_t run = ((f & PGT_OFFLOAD_REC_RUN_MASK) >> PGT_OFFLOAD_REC_RUN_SHIFT) + 1;
	bool ok;

	/* a run that would wrap the 64-bit space is malformed as a whole */
	if (off >= MAX_PFN || run > MAX_PFN - off) {
		st->rejected++;
		return;
	}
	if (f & PGT_OFFLOAD_REC_ADDR)
		ok = !slot && mark_pfn(m, off, run, 0);
	else
		ok = mark_slot(m, slot, off, run);
	if (!ok)
		st->rejected++;
}

uint64_t pgt__ofl_ingest(struct pgt_ofl_map *m, const struct pgt_offload_rec *recs, size_t n,
			 struct pgt_ofl_stats *st)
{
	uint64_t ok = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t f = ld32(&recs[i].flags);

		st->records++;
		if (!(f & PGT_OFFLOAD_REC_DIRTY) || (f & PGT_OFFLOAD_REC_RESERVED)) {
			st->rejected++;
			continue;
		}
		rec_one(m, f, ld32(&recs[i].slot), ld64(&recs[i].offset), st);
		ok++;
	}
	return ok;
}

/* ------------------------------------------------------------------ */
/* Rings                                                               */
/* ------------------------------------------------------------------ */

static int ring_geom(uint32_t entries, unsigned *shift)
{
	if (entries < 2 || (entries & (entries - 1)) || entries > PGT_OFFLOAD_RING_MAX)
		return -EINVAL;
	*shift = (unsigned)__builtin_ctz(entries);
	return 0;
}

int pgt__ofl_ring_create(struct pgt_ofl_ring *ring, void *mem, size_t bytes, uint32_t entries)
{
	struct pgt_offload_ring_ctl *ctl = mem;
	unsigned shift;

	memset(ring, 0, sizeof(*ring));
	if (!mem || ((uintptr_t)mem & 63) || entries < PGT_OFFLOAD_RING_MIN ||
	    ring_geom(entries, &shift) || bytes < pgt__ofl_ring_bytes(entries))
		return -EINVAL;
	pgt__ofl_ring_layout(mem, entries);
	ring->ctl = ctl;
	ring->recs = (struct pgt_offload_rec *)((char *)mem + sizeof(*ctl));
	ring->entries = entries;
	ring->shift = shift;
	return 0;
}

int pgt__ofl_ring_index(struct pgt_ofl_ring *ring, struct pgt_offload_ring_ctl *ctl,
			uint32_t entries)
{
	unsigned shift;

	memset(ring, 0, sizeof(*ring));
	if (!ctl || ((uintptr_t)ctl & 63) || entries < PGT_OFFLOAD_RING_MIN ||
	    ring_geom(entries, &shift) || ctl->magic != PGT_OFFLOAD_RING_MAGIC ||
	    ctl->version != PGT_OFFLOAD_RING_VERSION || ctl->entries != entries ||
	    ctl->rec_offset != sizeof(*ctl))
		return -EINVAL;
	ring->ctl = ctl;
	ring->recs = (struct pgt_offload_rec *)((char *)ctl + sizeof(*ctl));
	ring->entries = entries;
	ring->shift = shift;
	/* join where the producer is: what it published before we looked is
	 * taken by the first consume */
	ring->cons = __atomic_load_n(&ctl->cons, __ATOMIC_ACQUIRE);
	ring->lost_seen = __atomic_load_n(&ctl->lost_seq, __ATOMIC_ACQUIRE);
	return 0;
}

int pgt__ofl_ring_kvm(struct pgt_ofl_ring *ring, struct pgt_offload_rec *recs, uint32_t entries)
{
	unsigned shift;

	memset(ring, 0, sizeof(*ring));
	if (!recs || ring_geom(entries, &shift))
		return -EINVAL;
	ring->recs = recs;
	ring->entries = entries;
	ring->shift = shift;
	return 0;
}

static uint64_t consume_flags(struct pgt_ofl_ring *ring, struct pgt_ofl_map *m,
			      struct pgt_ofl_stats *st)
{
	uint32_t mask = ring->entries - 1;
	bool bad = false;
	uint64_t n;

	/* at most one lap: a producer refilling behind us waits for the next call */
	for (n = 0; n < ring->entries; n++) {
		struct pgt_offload_rec *r = &ring->recs[ring->cons & mask];
		/* acquire: slot and offset were written before DIRTY */
		uint32_t f = __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE);

		if ((f & (PGT_OFFLOAD_REC_DIRTY | PGT_OFFLOAD_REC_RESET)) != PGT_OFFLOAD_REC_DIRTY)
			break;
		if (f & PGT_OFFLOAD_REC_RESERVED)
			bad = true; /* published but not understood: lost track */
		else
			rec_one(m, f, ld32(&r->slot), ld64(&r->offset), st);
		/* release: our reads of the record happen before the producer
		 * (KVM_RESET_DIRTY_RINGS) may reuse it */
		__atomic_store_n(&r->flags, PGT_OFFLOAD_REC_RESET, __ATOMIC_RELEASE);
		ring->cons++;
	}
	st->records += n;
	if (bad) {
		st->torn++;
		pgt__ofl_mark_all(m, st);
	}
	return n;
}

/*
 * The fast path of the ring consumer: the segment the last slot record
 * landed in, when its target has 4 KiB pages, with the touched span kept in
 * locals until the end.
 */
struct fast {
	uint32_t slot;
	uint64_t spfn, npages;  /* slot pages [spfn, spfn + npages) */
	uint64_t base;          /* target page of slot page 0 (may wrap: only
	                         * base + off with off in range is used) */
	uint64_t *bits;
	struct pgt_ofl_target *t;
	size_t lo, hi;
};

static void fast_done(struct fast *fs, struct pgt_ofl_map *m)
{
	(void)m;
	if (fs->t && fs->hi) {
		if (fs->lo < fs->t->lo)
			fs->t->lo = fs->lo;
		if (fs->hi > fs->t->hi)
			fs->t->hi = fs->hi;
	}
	fs->lo = SIZE_MAX;
	fs->hi = 0;
}

/* After a slow-path slot record: cache its segment when it can be. */
static void fast_from(struct fast *fs, struct pgt_ofl_map *m, uint32_t slot)
{
	const struct pgt_ofl_seg *s = &m->segs[m->by_slot[m->last_slot]];
	struct pgt_ofl_target *t = &m->targets[s->target];

	if (s->slot != slot || t->shift != PGT_OFL_PAGE_SHIFT ||
	    (fs->t == t && fs->slot == slot && fs->spfn == s->slot_pfn))
		return;
	fast_done(fs, m);
	fs->slot = s->slot;
	fs->spfn = s->slot_pfn;
	fs->npages = s->npages;
	fs->base = (s->off >> PGT_OFL_PAGE_SHIFT) - s->slot_pfn;
	fs->bits = t->bits;
	fs->t = t;
}

/* Bitmaps of more 4 KiB pages than this (256 KiB) are out of L1/L2: the
 * fast path prefetches the word of a record a few ahead. */
#define PF_MIN_PAGES (1ULL << 21)

/*
 * One run of fast records from @r on, at most up to @end (same lap, so
 * the slots are contiguous); @pf: prefetch the word of a record a few
 * ahead (a bitmap out of L1/L2). lo/hi: the touched words, hi inclusive.
 */
static inline __attribute__((always_inline)) const struct pgt_offload_rec *
fast_loop(const struct pgt_offload_rec *r, const struct pgt_offload_rec *end,
	  const struct pgt_offload_rec *recs, uint32_t mask, uint32_t want, const struct fast *fs,
	  size_t *plo, size_t *phi, bool pf)
{
	const uint32_t fslot = fs->slot;
	const uint64_t spfn = fs->spfn, npages = fs->npages, base = fs->base;
	uint64_t *const bits = fs->bits;
	size_t lo = *plo, hi = *phi;

	for (; r != end; r++) {
		uint32_t f = ld32(&r->flags), slot = ld32(&r->slot);
		uint64_t off = ld64(&r->offset), p;
		size_t w;

		if ((f & ~PGT_OFFLOAD_REC_SRC_MASK) != want || slot != fslot || off - spfn >= npages)
			break;
		p = base + off;
		w = (size_t)(p >> 6);
		if (pf) {
			/* a hint only: never read (the ring wraps at its end) */
			uint64_t ahead = ld64(&recs[((uint32_t)(r - recs) + 16) & mask].offset);

			if (ahead - spfn < npages)
				__builtin_prefetch(&bits[(base + ahead) >> 6], 1, 3);
		}
		bits[w] |= 1ULL << (p & 63);
		lo = w < lo ? w : lo;
		hi = w > hi ? w : hi;
	}
	*plo = lo;
	*phi = hi;
	return r;
}

/*
 * The fast path over records [i, end) of one lap: one page, by slot, any
 * source, in the 4 KiB-page segment the last one hit. Returns where it
 * stopped (a record it does not take, or @end). A function of its own so
 * its dozen values stay in registers: inlined into the loop with the slow
 * path's calls, lo/hi went through the stack, a store-to-load chain of
 * several cycles per record. A pointer walk, the prefetch test hoisted and
 * the span kept inclusive: 22 instructions a record instead of 28.
 */
__attribute__((noinline)) static uint32_t fast_run(const struct pgt_offload_rec *recs,
						     uint32_t mask, uint32_t i, uint32_t end,
						     uint32_t want, struct fast *fs)
{
	const struct pgt_offload_rec *r = &recs[i & mask], *e = r + (end - i), *stop;
	size_t lo = fs->lo, hi = fs->hi ? fs->hi - 1 : 0;

	if (i == end)
		return i;
	if (fs->npages > PF_MIN_PAGES)
		stop = fast_loop(r, e, recs, mask, want, fs, &lo, &hi, true);
	else
		stop = fast_loop(r, e, recs, mask, want, fs, &lo, &hi, false);
	if (stop != r) {
		fs->lo = lo;
		fs->hi = hi + 1;
	}
	return i + (uint32_t)(stop - r);
}

/* The records [c, prod), one lap at a time (one expected PHASE per lap). */
static void ring_loop(struct pgt_ofl_ring *ring, struct pgt_ofl_map *m, struct pgt_ofl_stats *st,
		      struct fast *fs, uint32_t c, uint32_t prod, uint64_t *torn)
{
	const struct pgt_offload_rec *recs = ring->recs;
	const uint32_t mask = ring->entries - 1;

	for (uint32_t i = c; i != prod;) {
		/* lap 0 carries PHASE, lap 1 not, ...: a slot not rewritten in
		 * this lap still shows the previous lap's parity */
		const uint32_t want = PGT_OFFLOAD_REC_DIRTY |
				      (((i >> ring->shift) & 1) ? 0 : PGT_OFFLOAD_REC_PHASE);
		uint32_t end = (i | mask) + 1; /* the lap's end, modulo 2^32 */

		if (end - i > prod - i)
			end = prod;
		while ((i = fast_run(recs, mask, i, end, want, fs)) != end) {
			const struct pgt_offload_rec *r = &recs[i++ & mask];
			uint32_t f = ld32(&r->flags), slot = ld32(&r->slot);
			uint64_t off = ld64(&r->offset);

			if ((f & (PGT_OFFLOAD_REC_DIRTY | PGT_OFFLOAD_REC_RESET | PGT_OFFLOAD_REC_PHASE |
				  PGT_OFFLOAD_REC_RESERVED)) != want) {
				(*torn)++;
				continue;
			}
			rec_one(m, f, slot, off, st);
			if (!(f & (PGT_OFFLOAD_REC_ADDR | PGT_OFFLOAD_REC_RUN_MASK)))
				fast_from(fs, m, slot);
		}
	}
}

uint64_t pgt__ofl_ring_consume(struct pgt_ofl_ring *ring, struct pgt_ofl_map *m,
			       struct pgt_ofl_stats *st)
{
	struct pgt_offload_ring_ctl *ctl = ring->ctl;
	uint32_t prod, lost, c = ring->cons;
	uint64_t n, torn = 0;
	/* no segment yet: slot ~0 with no pages never matches */
	struct fast fs = { .slot = UINT32_MAX, .npages = 0, .lo = SIZE_MAX };

	if (!ctl)
		return consume_flags(ring, m, st);
	/*
	 * lost_seq first: an overflow the producer reported before the records
	 * we are about to read is caught now, a later one by the next harvest.
	 */
	lost = __atomic_load_n(&ctl->lost_seq, __ATOMIC_ACQUIRE);
	if (lost != ring->lost_seen) {
		ring->lost_seen = lost;
		st->lost++;
		pgt__ofl_mark_all(m, st);
	}
	prod = __atomic_load_n(&ctl->prod, __ATOMIC_ACQUIRE);
	n = (uint32_t)(prod - c);
	if (n > ring->entries) {
		/* Not a state a correct producer can reach: resynchronise on its
		 * index and assume everything was written. */
		st->bad_index++;
		pgt__ofl_mark_all(m, st);
		ring->cons = prod;
		__atomic_store_n(&ctl->cons, prod, __ATOMIC_RELEASE);
		return 0;
	}
	ring_loop(ring, m, st, &fs, c, prod, &torn);
	fast_done(&fs, m);
	st->records += n;
	if (torn) {
		st->torn += torn;
		pgt__ofl_mark_all(m, st);
	}
	ring->cons = prod;
	/* release: the slots are read before the producer may refill them */
	__atomic_store_n(&ctl->cons, prod, __ATOMIC_RELEASE);
	return n;
}

/* ------------------------------------------------------------------ */
/* Bitmaps                                                             */
/* ------------------------------------------------------------------ */

static inline uint64_t word_at(const uint64_t *bits, uint64_t nbits, uint64_t w)
{
	uint64_t v = ld64(&bits[w]);

	if ((w + 1) * 64 > nbits)
		v &= ~0ULL >> (64 - (nbits - w * 64));
	return v;
}

/* Set bits of @bits in [from, to). */
static uint64_t count_bits(const uint64_t *bits, uint64_t nbits, uint64_t from, uint64_t to)
{
	uint64_t c = 0;

	/* a partial first word, whole words with the SIMD popcount, a partial
	 * last one */
	while (from < to && (from % 64 || to - from < 64)) {
		uint64_t w = from / 64, v = word_at(bits, nbits, w) >> (from % 64);
		uint64_t k = 64 - from % 64;

		if (k > to - from) {
			v &= (1ULL << (to - from)) - 1;
			k = to - from;
		}
		c += (uint64_t)__builtin_popcountll(v);
		from += k;
	}
	if (to - from >= 64) {
		uint64_t nw = (to - from) / 64;

		/* the last word of the bitmap may carry bits past nbits */
		if ((from / 64 + nw) * 64 > nbits)
			nw--;
		c += pgt_hal_popcount(bits + from / 64, (size_t)nw);
		from += nw * 64;
		if (from < to)
			c += count_bits(bits, nbits, from, to);
	}
	return c;
}

/*
 * The common case word by word: device bits at the target's own 4 KiB
 * granularity, so bit i of the source is bit i + @delta of the target, for
 * source bits [b0, b1). A funnel shift per word.
 */
static void or_shifted(struct pgt_ofl_target *t, int64_t delta, const uint64_t *bits,
		       uint64_t nbits, uint64_t b0, uint64_t b1)
{
	uint64_t d0 = (uint64_t)((int64_t)b0 + delta), d1 = (uint64_t)((int64_t)b1 + delta);
	size_t w0 = (size_t)(d0 / 64), w1 = (size_t)((d1 - 1) / 64);
	bool any = false;
	size_t w = w0;

	/* source and destination words aligned: a plain OR (the bitmap is the
	 * caller's private copy, read once) */
	if (!(delta % 64) && !(d0 % 64)) {
		const uint64_t *restrict src = bits + b0 / 64;
		uint64_t *restrict dst = t->bits + w0, acc = 0;
		size_t nw = (size_t)((d1 - d0) / 64);

		if ((b0 / 64 + nw) * 64 > nbits && nw)
			nw--; /* the last word of the bitmap: masked below */
		for (size_t i = 0; i < nw; i++) {
			acc |= src[i];
			dst[i] |= src[i];
		}
		any = acc != 0;
		w = w0 + nw;
	}
	/* destination word by destination word: gather 64 source bits */
	for (; w <= w1; w++) {
		uint64_t lo = w == w0 ? d0 : (uint64_t)w * 64;
		uint64_t hi = w == w1 ? d1 : (uint64_t)w * 64 + 64;
		uint64_t s = (uint64_t)((int64_t)lo - delta); /* source bit of lo */
		unsigned sh = (unsigned)(s % 64), n = (unsigned)(hi - lo);
		uint64_t v = word_at(bits, nbits, s / 64) >> sh;

		if (sh && 64 - sh < n)
			v |= word_at(bits, nbits, s / 64 + 1) << (64 - sh);
		if (n < 64)
			v &= (1ULL << n) - 1;
		if (v) {
			t->bits[w] |= v << (lo % 64);
			any = true;
		}
	}
	if (any)
		touch_words(t, w0, w1);
}

/* Index of the first segment ending after @pfn. */
static uint32_t first_seg_after(const struct pgt_ofl_map *m, uint64_t pfn)
{
	uint32_t lo = 0, hi = m->nsegs;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (m->segs[mid].pfn + m->segs[mid].npages <= pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* First bit >= @b that is set (@want) or clear (!@want), or @end. */
static uint64_t next_bit(const uint64_t *bits, uint64_t nbits, uint64_t b, uint64_t end, bool want)
{
	while (b < end) {
		uint64_t w = b / 64, v = word_at(bits, nbits, w);

		v = (want ? v : ~v) & (~0ULL << (b % 64));
		if (v)
			return w * 64 + (uint64_t)__builtin_ctzll(v);
		b = (w + 1) * 64;
	}
	return end;
}

/*
 * Mark the runs of set bits in [@b0, @b1) of a bitmap whose bit 0 is pfn
 * @base and each bit 2^@ps pages, clipped to segment @s's pages [@p0, @p1).
 * word_at() reads bits past nbits as 0.
 */
static void mark_bit_runs(struct pgt_ofl_map *m, const struct pgt_ofl_seg *s, const uint64_t *bits,
			  uint64_t nbits, unsigned ps, uint64_t base, uint64_t b0, uint64_t b1,
			  uint64_t p0, uint64_t p1)
{
	for (uint64_t b = b0; b < b1;) {
		uint64_t r0 = next_bit(bits, nbits, b, b1, true);
		uint64_t r1 = r0 < b1 ? next_bit(bits, nbits, r0 + 1, b1, false) : b1;
		uint64_t q0 = base + (r0 << ps), q1 = base + (r1 << ps);

		if (r0 >= b1)
			break;
		if (q0 < p0)
			q0 = p0;
		if (q1 > p1)
			q1 = p1;
		if (q1 > q0)
			mark_seg(m, s, q0, q1 - q0, 0);
		b = r1;
	}
}

uint64_t pgt__ofl_bitmap(struct pgt_ofl_map *m, uint64_t iova, uint64_t page_size,
			 const uint64_t *bits, uint64_t nbits, struct pgt_ofl_stats *st)
{
	unsigned ps;            /* log2 of 4 KiB pages per bit */
	uint64_t base, span, total = 0, covered_to = 0;

	if (!nbits || !bits || page_size < (1ULL << PGT_OFL_PAGE_SHIFT) ||
	    (page_size & (page_size - 1)) || (iova & (page_size - 1)))
		return 0;
	ps = (unsigned)__builtin_ctzll(page_size) - PGT_OFL_PAGE_SHIFT;
	base = iova >> PGT_OFL_PAGE_SHIFT;
	if (ps >= 52 || nbits > (MAX_PFN - base) >> ps) {
		st->rejected++;
		return 0;
	}
	span = nbits << ps;
	for (uint32_t i = first_seg_after(m, base); i < m->nsegs && m->segs[i].pfn < base + span;
	     i++) {
		const struct pgt_ofl_seg *s = &m->segs[i];
		struct pgt_ofl_target *t = &m->targets[s->target];
		uint64_t p0 = s->pfn > base ? s->pfn : base;
		uint64_t p1 = s->pfn + s->npages < base + span ? s->pfn + s->npages : base + span;
		/* bits overlapping [p0, p1) */
		uint64_t b0 = (p0 - base) >> ps, b1 = ((p1 - base) + (1ULL << ps) - 1) >> ps;

		/* set bits wholly before this segment and after the previous one */
		if (b0 > covered_to) {
			uint64_t c = count_bits(bits, nbits, covered_to, b0);

			st->rejected += c;
			total += c;
		}
		/* a bit straddling two segments marks both, is counted once */
		total += count_bits(bits, nbits, b0 > covered_to ? b0 : covered_to, b1);
		if (!ps && t->shift == PGT_OFL_PAGE_SHIFT && b1 > b0)
			or_shifted(t, (int64_t)(s->off >> PGT_OFL_PAGE_SHIFT) + (int64_t)(base - s->pfn),
				   bits, nbits, b0, b1);
		else
			mark_bit_runs(m, s, bits, nbits, ps, base, b0, b1, p0, p1);
		if (b1 > covered_to)
			covered_to = b1;
	}
	if (covered_to < nbits) {
		uint64_t c = count_bits(bits, nbits, covered_to, nbits);

		st->rejected += c;
		total += c;
	}
	st->records += total;
	return total;
}

/* ------------------------------------------------------------------ */
/* Hot lists                                                           */
/* ------------------------------------------------------------------ */

uint64_t pgt__ofl_hotlist(struct pgt_ofl_map *m, const uint64_t *entries, size_t n,
			  unsigned count_bits, uint64_t unit_size, struct pgt_ofl_stats *st)
{
	unsigned us;
	uint64_t cmask;

	if (!count_bits || count_bits > 63 || unit_size < 256 || (unit_size & (unit_size - 1)))
		return 0;
	us = (unsigned)__builtin_ctzll(unit_size);
	cmask = (1ULL << count_bits) - 1;
	for (size_t i = 0; i < n; i++) {
		uint64_t e = ld64(&entries[i]);
		uint64_t count = e & cmask, unit = e >> count_bits;
		uint64_t pfn, np;
		uint32_t c;

		st->records++;
		/* the unit's address must fit in 64 bits */
		if (unit >> (64 - us)) {
			st->rejected++;
			continue;
		}
		pfn = (unit << us) >> PGT_OFL_PAGE_SHIFT;
		np = us > PGT_OFL_PAGE_SHIFT ? 1ULL << (us - PGT_OFL_PAGE_SHIFT) : 1;
		/* hot[] counts accesses; a listed unit counts at least once */
		c = count > UINT32_MAX ? UINT32_MAX : count ? (uint32_t)count : 1;
		if (pfn >= MAX_PFN || np > MAX_PFN - pfn || !mark_pfn(m, pfn, np, c)) {
			st->rejected++;
			continue;
		}
		st->hot_units++;
		st->hot_count += count;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* PML                                                                 */
/* ------------------------------------------------------------------ */

int pgt__ofl_pml_pack(const uint64_t *gpas, size_t n, unsigned src,
		      struct pgt_offload_rec *out, size_t cap)
{
	size_t k = 0;
	uint64_t first = 0, len = 0;

	if ((!gpas && n) || (!out && cap) || src > 255)
		return -EINVAL;
	/* pass 0 counts, pass 1 writes: -ENOBUFS leaves @out untouched */
	for (int pass = cap >= n; pass < 2; pass++) {
		k = 0;
		len = 0;
		for (size_t i = 0; i <= n; i++) {
			uint64_t p = i < n ? gpas[i] >> PGT_OFL_PAGE_SHIFT : 0;

			if (i < n && len && p >= first && p <= first + len - 1)
				continue; /* a repeat inside the run */
			if (i < n && len && p == first + len && len < PGT_OFFLOAD_REC_RUN_MAX) {
				len++;
				continue;
			}
			if (len) {
				if (pass) {
					out[k].flags = PGT_OFFLOAD_REC_FLAGS(src, len, true);
					out[k].slot = 0;
					out[k].offset = first;
				}
				k++;
			}
			first = p;
			len = 1;
		}
		if (!pass && k > cap)
			return -ENOBUFS;
	}
	return (int)k;
}

/* ------------------------------------------------------------------ */
/* Merging into page bitmaps                                           */
/* ------------------------------------------------------------------ */

_Static_assert(PGT_BM_GROUP_WORDS == PGT_HAL_OR_GROUP_WORDS, "the kernel's groups are the bitmap's");

static inline uint64_t or_words(struct pgt_bitmap *dst, size_t w0, uint64_t *src, size_t nw,
				bool take)
{
	/*
	 * The caller holds every other writer out, so plain loads and stores
	 * do: _Atomic uint64_t has the plain layout (bitmap.c checks it) and
	 * nothing else touches these words now. One fused pass: OR and
	 * count, each group's count gives its summary bit too.
	 */
	uint64_t *d = (uint64_t *)dst->words;
	uint64_t *sum = (uint64_t *)dst->summary;
	uint64_t tail = 0, c = 0;

	if (w0 >= dst->nwords || !nw)
		return 0;
	if (nw > dst->nwords - w0)
		nw = dst->nwords - w0;
	/* the bitmap's last word: only its first nbits % 64 bits exist */
	if (w0 + nw == dst->nwords && dst->nbits % 64) {
		tail = src[nw - 1] & (~0ULL >> (64 - dst->nbits % 64));
		if (take)
			src[nw - 1] = 0;
		nw--;
	}
	if (nw) {
		size_t g = w0 / PGT_BM_GROUP_WORDS, head = (g + 1) * PGT_BM_GROUP_WORDS - w0;

		c = take ? pgt_hal_or_count_clear_groups(d + w0, src, nw, head, sum, g)
			 : pgt_hal_or_count_groups(d + w0, src, nw, head, sum, g);
	}
	if (tail) {
		size_t w = w0 + nw, g = w / PGT_BM_GROUP_WORDS;

		d[w] |= tail;
		sum[g / 64] |= 1ULL << (g % 64);
		c += (uint64_t)__builtin_popcountll(tail);
	}
	return c;
}

uint64_t pgt__ofl_or_words(struct pgt_bitmap *dst, size_t w0, const uint64_t *src, size_t nw)
{
	/* not written: take is false */
	return or_words(dst, w0, (uint64_t *)src, nw, false);
}

uint64_t pgt__ofl_take_words(struct pgt_bitmap *dst, size_t w0, uint64_t *src, size_t nw)
{
	return or_words(dst, w0, src, nw, true);
}
