/* SPDX-License-Identifier: MIT */
/*
 * Two-level page bitmaps; the contract is in bitmap.h.
 *
 * Why no bit is ever stranded under a clear summary bit
 * ------------------------------------------------------
 * A setter does   W |= bit (RMW);  s = load(S);  if group bit missing: S |= g
 * The taker does  S' = xchg(S, 0); for each group in S': load every W of the
 *                 group (a mask of the non-zero ones), then xchg(W, 0) those
 *
 * With release/acquire alone this is the store-buffering shape: the setter's
 * load of S may see the old (set) summary while the taker's word access does
 * not yet see the setter's word write, and the bit would stay in W under a
 * summary bit the taker just cleared. So the four accesses that form that
 * cycle (setter word RMW and summary load, taker summary exchange and word
 * access) are seq_cst: they then lie in one total order, and either
 *  - the setter's word RMW comes first, so the taker's later word access
 *    sees the bit (it is taken), or
 *  - the taker's word access comes first, so its summary exchange precedes
 *    the setter's summary load, which then sees the group bit clear and sets
 *    it again (the bit waits for the next take).
 * The setter's summary RMW itself is release: when the taker's exchange reads
 * it, everything the setter did before is visible.
 *
 * On x86-64 this costs nothing extra (every locked RMW is a full barrier and
 * seq_cst loads are plain loads); on aarch64 it is ldar/ldsetal instead of
 * ldr/ldset. Setters first load the word and skip the RMW when their bits are
 * already there, which keeps re-dirtied cache lines shared; the summary load
 * happens regardless, because another setter that put the bit there may not
 * have published the summary yet.
 *
 * The taker's occupancy scan
 * --------------------------
 * pgt__bitmap_take (and take_runs) find a group's non-zero words with the HAL's SIMD compare
 * (pgt_hal_nonzero_words: plain vector loads, which behave as relaxed loads
 * of each aligned word) instead of 64 seq_cst loads, then exchanges only
 * those words (seq_cst RMWs, which return the true value). A relaxed word
 * load is not part of the seq_cst order, so the second case above would not
 * hold by itself; a seq_cst fence F after the summary exchange restores it
 * (C11 7.17.4 / [atomics.order]: the setter's word RMW A and F are both in
 * the single total order S):
 *  - A before F in S: a load sequenced after F sees A or a later value of
 *    the word (the fence-after-write rule), so the bit is seen non-zero and
 *    exchanged;
 *  - F before A in S: the exchange is sequenced before F, so it precedes A
 *    and the setter's seq_cst summary load in S; that load reads the
 *    cleared group bit (or a later set) and the setter publishes it again.
 * A non-zero word the scan misses cannot exist, and a zero word it reports
 * as non-zero only costs an exchange that returns 0. The fence is once per
 * non-zero summary word (64 groups), not per group. Cost: x86-64 gcc emits
 * "lock or $0,(%rsp)" (the xchg just before is already a full barrier, so
 * this is belt and braces there); aarch64 a "dmb ish", which is needed: a
 * seq_cst exchange without LSE is ldaxr/stlxr, and a plain load after
 * stlxr may be satisfied before the store is visible (store-buffering).
 *
 * Clearing (clear, clear_range, zero) follows the taker's order: summary bit
 * first, words second, then the summary bit is put back if a word is still
 * non-zero. That keeps summaries tight without breaking the argument above.
 *
 * Readers that exclude takers (iteration, popcount, export, validate) use
 * relaxed loads: a concurrent setter's bit is either seen or left in place.
 * popcount hands whole groups to the HAL's SIMD popcount as plain memory,
 * which on our targets reads them exactly like relaxed loads would.
 *
 * Everything used from setters is a lock-free atomic on memory that is never
 * freed while in use, hence async-signal-safe.
 *
 * Layout: b->nsummary is the number of groups (one summary bit each, as the
 * header says: ceil(nwords / 64)); the summary array has
 * ceil(nsummary / 64) words. Words and summary share one 64-byte aligned
 * allocation, the summary on its own cache lines after the words.
 */
#include "lib/bitmap.h"
#include "hal/hal.h"
#include "lib/bits.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static_assert(sizeof(unsigned long) == sizeof(uint64_t),
	      "KVM layout export assumes 64-bit unsigned long (x86_64, aarch64)");
static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t),
	      "atomic words must have the plain layout");
static_assert(ATOMIC_LONG_LOCK_FREE == 2 || ATOMIC_LLONG_LOCK_FREE == 2,
	      "setters must be lock-free to be async-signal-safe");

#define BM_ALIGN 64
/*
 * A 52-bit guest-physical space in 4 KiB pages. Larger requests are refused
 * before reaching the allocator (which may abort rather than fail on absurd
 * sizes, e.g. under ASan).
 */
#define BM_MAX_BITS (1ULL << 40)
#define GROUP_SHIFT 6   /* words per group: 64 */
#define SUMW_GROUPS 64  /* groups per summary word */

static inline size_t sum_words(const struct pgt_bitmap *b)
{
	return (b->nsummary + SUMW_GROUPS - 1) / SUMW_GROUPS;
}

static inline unsigned popc(uint64_t v)
{
	return (unsigned)__builtin_popcountll(v);
}

static inline unsigned ctz(uint64_t v)
{
	return (unsigned)__builtin_ctzll(v);
}

/* Bits [lo, hi) of a word, 0 <= lo < hi <= 64. */
static inline uint64_t span_mask(unsigned lo, unsigned hi)
{
	return (~0ULL << lo) & (~0ULL >> (64 - hi));
}

/* Bits of the last word that lie beyond nbits. */
static inline uint64_t tail_garbage(const struct pgt_bitmap *b)
{
	unsigned r = (unsigned)(b->nbits % 64);

	return r ? ~0ULL << r : 0;
}

/* ---- lifetime ---- */

int pgt__bitmap_init(struct pgt_bitmap *b, uint64_t nbits)
{
	uint64_t nwords64;
	size_t wbytes, sbytes, ngroups;
	void *mem;

	memset(b, 0, sizeof(*b));
	if (!nbits)
		return -EINVAL;
	if (nbits > BM_MAX_BITS)
		return -ENOMEM;
	nwords64 = nbits / 64 + (nbits % 64 != 0);
	if (nwords64 > (SIZE_MAX - 2 * BM_ALIGN) / 16)
		return -ENOMEM;
	ngroups = (size_t)((nwords64 + PGT_BM_GROUP_WORDS - 1) / PGT_BM_GROUP_WORDS);
	wbytes = (size_t)pgt__round_up((size_t)nwords64 * sizeof(uint64_t), BM_ALIGN);
	sbytes = (size_t)pgt__round_up((ngroups + SUMW_GROUPS - 1) / SUMW_GROUPS * sizeof(uint64_t), BM_ALIGN);
	if (posix_memalign(&mem, BM_ALIGN, wbytes + sbytes))
		return -ENOMEM;
	memset(mem, 0, wbytes + sbytes);
	b->nbits = nbits;
	b->nwords = (size_t)nwords64;
	b->nsummary = ngroups;
	b->words = mem;
	b->summary = (_Atomic uint64_t *)((char *)mem + wbytes);
	return 0;
}

void pgt__bitmap_fini(struct pgt_bitmap *b)
{
	free((void *)b->words);
	memset(b, 0, sizeof(*b));
}

size_t pgt__bitmap_bytes(const struct pgt_bitmap *b)
{
	if (!b->words)
		return 0;
	return (size_t)pgt__round_up(b->nwords * sizeof(uint64_t), BM_ALIGN) +
	       (size_t)pgt__round_up(sum_words(b) * sizeof(uint64_t), BM_ALIGN);
}

/* ---- setter side ---- */

/* Publish group bits @gbits of summary word @sw after the words were set. */
static inline void summary_mark(struct pgt_bitmap *b, size_t sw, uint64_t gbits)
{
	_Atomic uint64_t *s = &b->summary[sw];

	if ((atomic_load_explicit(s, memory_order_seq_cst) & gbits) != gbits)
		atomic_fetch_or_explicit(s, gbits, memory_order_release);
}

/* Set @m in word @w; returns the bits of @m that were already set. */
static inline uint64_t word_set(struct pgt_bitmap *b, size_t w, uint64_t m)
{
	_Atomic uint64_t *p = &b->words[w];
	uint64_t old = atomic_load_explicit(p, memory_order_seq_cst);

	if ((old & m) != m)
		old = atomic_fetch_or_explicit(p, m, memory_order_seq_cst);
	return old & m;
}

/*
 * Out-of-range indices are ignored (test_and_set reports them as already
 * set, so callers counting new bits do not count them): setters run in
 * fault handlers where a stray index must not become a stray write.
 */
void pgt__bitmap_set(struct pgt_bitmap *b, uint64_t i)
{
	size_t w;

	if (i >= b->nbits)
		return;
	w = (size_t)(i / 64);
	word_set(b, w, 1ULL << (i % 64));
	summary_mark(b, w / (PGT_BM_GROUP_WORDS * SUMW_GROUPS),
		     1ULL << ((w >> GROUP_SHIFT) % SUMW_GROUPS));
}

bool pgt__bitmap_test_and_set(struct pgt_bitmap *b, uint64_t i)
{
	size_t w;
	uint64_t old;

	if (i >= b->nbits)
		return true;
	w = (size_t)(i / 64);
	old = word_set(b, w, 1ULL << (i % 64));
	summary_mark(b, w / (PGT_BM_GROUP_WORDS * SUMW_GROUPS),
		     1ULL << ((w >> GROUP_SHIFT) % SUMW_GROUPS));
	return old != 0;
}

bool pgt__bitmap_test(const struct pgt_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	return (atomic_load_explicit(&b->words[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

/* Clamp [first, first + n) to the bitmap; false when nothing is left. */
static inline bool clamp_range(const struct pgt_bitmap *b, uint64_t first, uint64_t *n)
{
	if (first >= b->nbits || !*n)
		return false;
	if (*n > b->nbits - first)
		*n = b->nbits - first;
	return true;
}

void pgt__bitmap_set_range(struct pgt_bitmap *b, uint64_t first, uint64_t n)
{
	size_t w, wl, sw, cur_sw;
	uint64_t last, gbits = 0;

	if (!clamp_range(b, first, &n))
		return;
	last = first + n - 1;
	w = (size_t)(first / 64);
	wl = (size_t)(last / 64);
	cur_sw = w / (PGT_BM_GROUP_WORDS * SUMW_GROUPS);
	for (; w <= wl; w++) {
		unsigned lo = w == first / 64 ? (unsigned)(first % 64) : 0;
		unsigned hi = w == wl ? (unsigned)(last % 64) + 1 : 64;

		word_set(b, w, span_mask(lo, hi));
		/* Publish each summary word once, after all its words. */
		sw = w / (PGT_BM_GROUP_WORDS * SUMW_GROUPS);
		if (sw != cur_sw) {
			summary_mark(b, cur_sw, gbits);
			cur_sw = sw;
			gbits = 0;
		}
		gbits |= 1ULL << ((w >> GROUP_SHIFT) % SUMW_GROUPS);
	}
	summary_mark(b, cur_sw, gbits);
}

/*
 * Count (take false) or atomically clear and count (take true) the bits of
 * [first, first + n), clipped to the bitmap. Clearing leaves the summary
 * set: it only has to over-approximate.
 */
static uint64_t range_walk(struct pgt_bitmap *b, uint64_t first, uint64_t n, bool take)
{
	uint64_t cnt = 0;

	if (!b->words || !clamp_range(b, first, &n))
		return 0;
	while (n) {
		size_t w = (size_t)(first / 64);
		unsigned lo = (unsigned)(first % 64);
		unsigned hi = n >= 64 - lo ? 64 : lo + (unsigned)n;
		uint64_t m = span_mask(lo, hi);
		uint64_t v = atomic_load_explicit(&b->words[w], memory_order_relaxed) & m;

		if (take && v)
			v = atomic_fetch_and(&b->words[w], ~m) & m;
		cnt += popc(v);
		first += hi - lo;
		n -= hi - lo;
	}
	return cnt;
}

uint64_t pgt__bitmap_count_range(const struct pgt_bitmap *b, uint64_t first, uint64_t n)
{
	return range_walk((struct pgt_bitmap *)b, first, n, false);
}

uint64_t pgt__bitmap_take_range(struct pgt_bitmap *b, uint64_t first, uint64_t n)
{
	return range_walk(b, first, n, true);
}

/* ---- clearing (callers exclude takers; setters may run) ---- */

static inline _Atomic uint64_t *sum_of_group(struct pgt_bitmap *b, size_t g, uint64_t *bit)
{
	*bit = 1ULL << (g % SUMW_GROUPS);
	return &b->summary[g / SUMW_GROUPS];
}

static inline size_t group_end(const struct pgt_bitmap *b, size_t g)
{
	size_t e = (g + 1) * PGT_BM_GROUP_WORDS;

	return e < b->nwords ? e : b->nwords;
}

/*
 * Bit i set when word g * 64 + i is non-zero. Building the mask without
 * branches and then walking it with ctz costs one mispredicted branch per
 * group instead of one per word: at 1 % density about half the words are
 * zero at random, and a per-word test mispredicted on most of them.
 */
static inline uint64_t group_nonzero(const struct pgt_bitmap *b, size_t g, memory_order mo)
{
	const _Atomic uint64_t *w = &b->words[g * PGT_BM_GROUP_WORDS];
	size_t n = group_end(b, g) - g * PGT_BM_GROUP_WORDS;
	uint64_t m = 0;

	for (size_t i = 0; i < n; i++)
		m |= (uint64_t)(atomic_load_explicit(&w[i], mo) != 0) << i;
	return m;
}

/*
 * Drop group @g's summary bit if all its words are zero. Summary first, words
 * second (the taker's order), so a concurrent setter either is seen in the
 * words or sets the summary bit again itself.
 */
static void group_tidy(struct pgt_bitmap *b, size_t g)
{
	uint64_t bit;
	_Atomic uint64_t *s = sum_of_group(b, g, &bit);

	if (!(atomic_load_explicit(s, memory_order_relaxed) & bit))
		return;
	atomic_fetch_and_explicit(s, ~bit, memory_order_seq_cst);
	for (size_t w = g * PGT_BM_GROUP_WORDS, e = group_end(b, g); w < e; w++) {
		if (atomic_load_explicit(&b->words[w], memory_order_seq_cst)) {
			atomic_fetch_or_explicit(s, bit, memory_order_release);
			return;
		}
	}
}

void pgt__bitmap_clear(struct pgt_bitmap *b, uint64_t i)
{
	uint64_t bit, old;
	size_t w;

	if (i >= b->nbits)
		return;
	w = (size_t)(i / 64);
	bit = 1ULL << (i % 64);
	if (!(atomic_load_explicit(&b->words[w], memory_order_relaxed) & bit))
		return;
	old = atomic_fetch_and_explicit(&b->words[w], ~bit, memory_order_seq_cst);
	if (old == bit)
		group_tidy(b, w >> GROUP_SHIFT);
}

void pgt__bitmap_clear_range(struct pgt_bitmap *b, uint64_t first, uint64_t n)
{
	uint64_t last;
	size_t wf, wl, gf, gl;

	if (!clamp_range(b, first, &n))
		return;
	last = first + n - 1;
	wf = (size_t)(first / 64);
	wl = (size_t)(last / 64);
	gf = wf >> GROUP_SHIFT;
	gl = wl >> GROUP_SHIFT;
	for (size_t g = gf; g <= gl; g++) {
		size_t w0 = g * PGT_BM_GROUP_WORDS, we = group_end(b, g);
		uint64_t bit;
		_Atomic uint64_t *s = sum_of_group(b, g, &bit);
		bool whole = (uint64_t)w0 * 64 >= first &&
			     (we == b->nwords ? last == b->nbits - 1 : (uint64_t)we * 64 <= last + 1);

		/* A clear summary bit means nothing to clear in this group. */
		if (!(atomic_load_explicit(s, memory_order_relaxed) & bit))
			continue;
		if (whole) {
			/* Summary first: see group_tidy(). */
			atomic_fetch_and_explicit(s, ~bit, memory_order_seq_cst);
			for (size_t w = w0; w < we; w++)
				if (atomic_load_explicit(&b->words[w], memory_order_seq_cst))
					atomic_exchange_explicit(&b->words[w], 0, memory_order_seq_cst);
			continue;
		}
		if (w0 < wf)
			w0 = wf;
		if (we > wl + 1)
			we = wl + 1;
		for (size_t w = w0; w < we; w++) {
			unsigned lo = w == wf ? (unsigned)(first % 64) : 0;
			unsigned hi = w == wl ? (unsigned)(last % 64) + 1 : 64;
			uint64_t m = span_mask(lo, hi);

			if (atomic_load_explicit(&b->words[w], memory_order_relaxed) & m)
				atomic_fetch_and_explicit(&b->words[w], ~m, memory_order_seq_cst);
		}
		group_tidy(b, g);
	}
}

/* ---- taker side ---- */


uint64_t pgt__bitmap_take(struct pgt_bitmap *b, pgt_bitmap_word_fn fn, void *arg)
{
	size_t nsw = sum_words(b);
	uint64_t taken = 0;

	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm;

		/* A clear summary word can be skipped: a setter racing with
		 * this load publishes its group bit after it (see top). */
		if (!atomic_load_explicit(&b->summary[sw], memory_order_seq_cst))
			continue;
		gm = atomic_exchange_explicit(&b->summary[sw], 0, memory_order_seq_cst);
		/* Orders the plain word reads below after the exchange: see
		 * "The taker's occupancy scan" at the top of this file. */
		atomic_thread_fence(memory_order_seq_cst);
		while (gm) {
			size_t g = sw * SUMW_GROUPS + ctz(gm);
			size_t w0 = g * PGT_BM_GROUP_WORDS;
			/* SIMD, plain reads of the atomic words (relaxed-like) */
			uint64_t nz = pgt_hal_nonzero_words((const uint64_t *)&b->words[w0],
							    group_end(b, g) - w0);

			gm &= gm - 1;
			while (nz) {
				size_t w = g * PGT_BM_GROUP_WORDS + ctz(nz);
				uint64_t v = atomic_exchange_explicit(&b->words[w], 0,
								      memory_order_seq_cst);

				nz &= nz - 1;
				taken += popc(v);
				if (fn && v)
					fn(arg, w, v);
			}
		}
	}
	return taken;
}

void pgt__bitmap_zero(struct pgt_bitmap *b)
{
	/* Under the summary invariant, taking everything zeroes everything,
	 * at a cost proportional to the set groups. */
	(void)pgt__bitmap_take(b, NULL, NULL);
}

/*
 * Walk maximal runs, optionally taking them. A run's pieces come word by word
 * and are joined while they touch; a group skipped by the summary is all
 * zero, so a run never wrongly spans it.
 *
 * When @fn stops a take, the runs reported so far stay taken and everything
 * else is put back (words first, then the summary bits, the setters' order),
 * so the bitmap holds exactly the unreported bits.
 */
static inline int walk_runs(struct pgt_bitmap *b, bool take, pgt_bitmap_run_fn fn,
			    void *arg, uint64_t *reported)
{
	const memory_order mo = take ? memory_order_seq_cst : memory_order_relaxed;
	size_t nsw = sum_words(b);
	uint64_t rs = 0, re = 0; /* pending run [rs, re); empty when equal */
	uint64_t total = 0;
	int rc;

	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], mo);

		if (!gm)
			continue;
		if (take) {
			gm = atomic_exchange_explicit(&b->summary[sw], 0, memory_order_seq_cst);
			/* as in pgt__bitmap_take (see the top of this file) */
			atomic_thread_fence(memory_order_seq_cst);
		}
		while (gm) {
			unsigned gb = ctz(gm);
			size_t g = sw * SUMW_GROUPS + gb;
			size_t w0 = g * PGT_BM_GROUP_WORDS;
			/* SIMD, plain reads of the atomic words (relaxed-like) */
			uint64_t nz = pgt_hal_nonzero_words((const uint64_t *)&b->words[w0],
							    group_end(b, g) - w0);

			gm &= gm - 1;
			while (nz) {
				size_t w = g * PGT_BM_GROUP_WORDS + ctz(nz);
				uint64_t base = (uint64_t)w * 64, v;

				nz &= nz - 1;
				if (take)
					v = atomic_exchange_explicit(&b->words[w], 0, memory_order_seq_cst);
				else
					v = atomic_load_explicit(&b->words[w], memory_order_relaxed);
				while (v) {
					unsigned s = ctz(v);
					/* Adding the lowest set bit carries through
					 * the lowest run: its end is the next set
					 * bit of the sum (none when it reached bit 63). */
					uint64_t nx = v + (1ULL << s);
					unsigned e = nx ? ctz(nx) : 64;

					v &= nx;
					if (base + s == re) {
						re = base + e;
						continue;
					}
					if (re != rs) {
						total += re - rs;
						rc = fn(arg, rs, re - rs);
						if (rc) {
							if (take) {
								atomic_fetch_or_explicit(&b->words[w],
									v | span_mask(s, e),
									memory_order_seq_cst);
								atomic_fetch_or_explicit(&b->summary[sw],
									gm | (1ULL << gb),
									memory_order_release);
							}
							*reported = total;
							return rc;
						}
					}
					rs = base + s;
					re = base + e;
				}
			}
		}
	}
	rc = 0;
	if (re != rs) {
		total += re - rs;
		rc = fn(arg, rs, re - rs);
	}
	*reported = total;
	return rc;
}

uint64_t pgt__bitmap_take_runs(struct pgt_bitmap *b, pgt_bitmap_run_fn fn, void *arg)
{
	uint64_t n;

	walk_runs(b, true, fn, arg, &n);
	return n;
}

int pgt__bitmap_for_each_run(const struct pgt_bitmap *b, pgt_bitmap_run_fn fn, void *arg)
{
	uint64_t n;

	/* The non-taking walk only loads; the cast does not lead to a write. */
	return walk_runs((struct pgt_bitmap *)b, false, fn, arg, &n);
}

/* ---- readers (callers exclude takers) ---- */

uint64_t pgt__bitmap_popcount(const struct pgt_bitmap *b)
{
	size_t nsw = sum_words(b);
	uint64_t n = 0;

	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], memory_order_relaxed);

		while (gm) {
			size_t g = sw * SUMW_GROUPS + ctz(gm);
			size_t w0 = g * PGT_BM_GROUP_WORDS;

			gm &= gm - 1;
			/*
			 * SIMD over the group. Plain reads of atomic words: a
			 * concurrent setter's bit is counted or not, as with
			 * relaxed loads; the layout is asserted identical.
			 */
			n += pgt_hal_popcount((const uint64_t *)&b->words[w0], group_end(b, g) - w0);
		}
	}
	return n;
}

bool pgt__bitmap_empty(const struct pgt_bitmap *b)
{
	size_t nsw = sum_words(b);

	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], memory_order_relaxed);

		while (gm) {
			size_t g = sw * SUMW_GROUPS + ctz(gm);

			gm &= gm - 1;
			if (group_nonzero(b, g, memory_order_relaxed))
				return false;
		}
	}
	return true;
}

/*
 * A run starts at every set bit whose lower neighbour is clear. Bit 0's
 * neighbour is bit 63 of the previous word; at a group start that word
 * belongs to a group that was either walked just before or is all zero.
 */
uint64_t pgt__bitmap_count_runs(const struct pgt_bitmap *b)
{
	size_t nsw = sum_words(b), prev_g = SIZE_MAX;
	uint64_t runs = 0, carry = 0;
	uint64_t starts[PGT_BM_GROUP_WORDS];

	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], memory_order_relaxed);

		while (gm) {
			size_t g = sw * SUMW_GROUPS + ctz(gm);
			size_t w0 = g * PGT_BM_GROUP_WORDS, n = group_end(b, g) - w0;

			gm &= gm - 1;
			if (prev_g + 1 != g)
				carry = 0;
			for (size_t i = 0; i < n; i++) {
				uint64_t v = atomic_load_explicit(&b->words[w0 + i], memory_order_relaxed);

				starts[i] = v & ~((v << 1) | carry);
				carry = v >> 63;
			}
			runs += pgt_hal_popcount(starts, n);
			prev_g = g;
		}
	}
	return runs;
}

/* ---- iteration per set bit ------------------------------------------- */

/*
 * Emit the bits of @v (word @w) into out[*n..cap). Returns false when @out
 * filled before the word was done; *pos then names the next bit to visit.
 */
static inline bool emit_word(uint64_t v, size_t w, uint64_t *out, size_t *n, size_t cap,
			     uint64_t *pos)
{
	uint64_t base = (uint64_t)w * 64;
	size_t k = *n;

	if (cap - k >= 64) {
		/* Room for the whole word: no bound check per bit. */
		for (; v; v &= v - 1)
			out[k++] = base + ctz(v);
		*n = k;
		return true;
	}
	for (; v && k < cap; v &= v - 1)
		out[k++] = base + ctz(v);
	*n = k;
	if (!v)
		return true;
	*pos = base + ctz(v);
	return false;
}

/*
 * Bits of words [ws, we) (one group) into out[*n..cap). The whole words go
 * to the HAL's SIMD extraction; a word that does not fit in what is left is
 * split by emit_word. Returns false when @out is full (*pos set).
 */
static bool group_bits(const struct pgt_bitmap *b, size_t ws, size_t we, uint64_t *out,
		       size_t *n, size_t cap, uint64_t *pos)
{
	while (ws < we) {
		size_t done;

		/* Plain reads of atomic words as relaxed loads (the layout is
		 * asserted identical). */
		*n += pgt_hal_bits_extract((const uint64_t *)&b->words[ws], we - ws,
					   (uint64_t)ws * 64, out + *n, cap - *n, &done);
		ws += done;
		if (ws == we)
			break;
		/* Re-read: a concurrent setter may have added bits since. */
		if (!emit_word(atomic_load_explicit(&b->words[ws], memory_order_relaxed), ws, out,
			       n, cap, pos))
			return false;
		ws++;
	}
	return true;
}

/*
 * A group with a few non-zero words is cheaper word by word through its
 * non-zero mask (ctz per word, no call per group); the others go to
 * group_bits. Same return as group_bits.
 */
static bool group_sparse(const struct pgt_bitmap *b, size_t ws, size_t we, uint64_t *out,
			 size_t *n, size_t cap, uint64_t *pos)
{
	/* SIMD compares; plain reads of atomic words as relaxed loads */
	uint64_t nz = ws < we ? pgt_hal_nonzero_words((const uint64_t *)&b->words[ws], we - ws) : 0;

	if (popc(nz) >= 8)
		return group_bits(b, ws, we, out, n, cap, pos);
	for (; nz; nz &= nz - 1) {
		size_t w = ws + ctz(nz);

		if (!emit_word(atomic_load_explicit(&b->words[w], memory_order_relaxed), w, out, n,
			       cap, pos))
			return false;
	}
	return true;
}

size_t pgt__bitmap_next_bits(const struct pgt_bitmap *b, uint64_t *pos, uint64_t *out, size_t cap)
{
	size_t nsw = sum_words(b), n = 0, w0;
	uint64_t p = *pos;

	if (p >= b->nbits || !cap)
		return 0;
	w0 = (size_t)(p / 64);
	for (size_t sw = w0 / PGT_BM_GROUP_WORDS / SUMW_GROUPS; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], memory_order_relaxed);
		size_t g0 = w0 / PGT_BM_GROUP_WORDS;

		if (g0 >= sw * SUMW_GROUPS)
			gm &= ~0ULL << (g0 - sw * SUMW_GROUPS);
		for (; gm; gm &= gm - 1) {
			size_t g = sw * SUMW_GROUPS + ctz(gm);
			size_t ws = g * PGT_BM_GROUP_WORDS > w0 ? g * PGT_BM_GROUP_WORDS : w0;

			if (ws == w0 && p % 64) {
				/* The word *pos resumes in: its lower bits were visited. */
				uint64_t v = atomic_load_explicit(&b->words[ws], memory_order_relaxed);

				if (!emit_word(v & (~0ULL << (p % 64)), ws, out, &n, cap, pos))
					return n;
				ws++;
			}
			if (!group_sparse(b, ws, group_end(b, g), out, &n, cap, pos))
				return n;
		}
	}
	*pos = b->nbits;
	return n;
}

int pgt__bitmap_for_each_bit(const struct pgt_bitmap *b, pgt_bitmap_bit_fn fn, void *arg)
{
	uint64_t pos = 0, buf[1024];
	size_t n;
	int rc;

	while ((n = pgt__bitmap_next_bits(b, &pos, buf, 1024)))
		for (size_t i = 0; i < n; i++)
			if ((rc = fn(arg, buf[i])))
				return rc;
	return 0;
}

uint64_t pgt__bitmap_find_next(const struct pgt_bitmap *b, uint64_t from)
{
	size_t w;
	uint64_t v;

	if (from >= b->nbits)
		return b->nbits;
	w = (size_t)(from / 64);
	v = atomic_load_explicit(&b->words[w], memory_order_relaxed) & (~0ULL << (from % 64));
	while (!v) {
		if (++w >= b->nwords)
			return b->nbits;
		v = atomic_load_explicit(&b->words[w], memory_order_relaxed);
	}
	return (uint64_t)w * 64 + ctz(v);
}

int pgt__bitmap_or(struct pgt_bitmap *dst, const struct pgt_bitmap *src)
{
	size_t nsw = sum_words(src);

	if (dst->nbits != src->nbits)
		return -EINVAL;
	if (dst == src)
		return 0;
	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&src->summary[sw], memory_order_relaxed);
		uint64_t out = 0;

		while (gm) {
			unsigned gb = ctz(gm);
			size_t g = sw * SUMW_GROUPS + gb;
			uint64_t nz = group_nonzero(src, g, memory_order_relaxed);

			gm &= gm - 1;
			if (nz)
				out |= 1ULL << gb;
			while (nz) {
				size_t w = g * PGT_BM_GROUP_WORDS + ctz(nz);

				nz &= nz - 1;
				word_set(dst, w, atomic_load_explicit(&src->words[w],
								      memory_order_relaxed));
			}
		}
		if (out)
			summary_mark(dst, sw, out);
	}
	return 0;
}

/*
 * Returns the number of set bits read from @src inside the bitmap (bits that
 * were already set in @dst count too: they were merged, just not new).
 * @src is walked a group (64 words) at a time through a branch-free mask of
 * its non-zero words, like the takers, and counted in one SIMD pass.
 */
uint64_t pgt__bitmap_or_kvm(struct pgt_bitmap *dst, const unsigned long *src, uint64_t nbits)
{
	uint64_t lim = nbits < dst->nbits ? nbits : dst->nbits;
	size_t nw = (size_t)(lim / 64), sw_done = 0;
	uint64_t tail = lim % 64 ? src[nw] & (~0ULL >> (64 - lim % 64)) : 0;
	uint64_t gbits = 0, merged;

	merged = pgt_hal_popcount((const uint64_t *)src, nw) + popc(tail);
	for (size_t w0 = 0; w0 < nw; w0 += PGT_BM_GROUP_WORDS) {
		size_t n = nw - w0 < PGT_BM_GROUP_WORDS ? nw - w0 : PGT_BM_GROUP_WORDS;
		size_t g = w0 >> GROUP_SHIFT;
		uint64_t nz = 0;

		for (size_t i = 0; i < n; i++)
			nz |= (uint64_t)(src[w0 + i] != 0) << i;
		if (g / SUMW_GROUPS != sw_done) {
			if (gbits)
				summary_mark(dst, sw_done, gbits);
			sw_done = g / SUMW_GROUPS;
			gbits = 0;
		}
		if (!nz)
			continue;
		gbits |= 1ULL << (g % SUMW_GROUPS);
		while (nz) {
			size_t w = w0 + ctz(nz);

			nz &= nz - 1;
			word_set(dst, w, src[w]);
		}
	}
	if (tail) {
		size_t g = nw >> GROUP_SHIFT;

		word_set(dst, nw, tail);
		if (g / SUMW_GROUPS != sw_done) {
			if (gbits)
				summary_mark(dst, sw_done, gbits);
			sw_done = g / SUMW_GROUPS;
			gbits = 0;
		}
		gbits |= 1ULL << (g % SUMW_GROUPS);
	}
	if (gbits)
		summary_mark(dst, sw_done, gbits);
	return merged;
}

int64_t pgt__bitmap_export_kvm(const struct pgt_bitmap *b, unsigned long *out, size_t out_words)
{
	size_t nsw = sum_words(b);
	int64_t n = 0;

	if (out_words < b->nwords)
		return -ENOBUFS;
	/* One pass, group by group: copy set groups, zero the others. */
	for (size_t sw = 0; sw < nsw; sw++) {
		uint64_t gm = atomic_load_explicit(&b->summary[sw], memory_order_relaxed);
		size_t g0 = sw * SUMW_GROUPS;
		size_t ge = g0 + SUMW_GROUPS < b->nsummary ? g0 + SUMW_GROUPS : b->nsummary;

		for (size_t g = g0; g < ge; g++) {
			size_t w0 = g * PGT_BM_GROUP_WORDS, we = group_end(b, g);

			if (!((gm >> (g - g0)) & 1)) {
				memset(out + w0, 0, (we - w0) * sizeof(*out));
				continue;
			}
			for (size_t w = w0; w < we; w++)
				out[w] = atomic_load_explicit(&b->words[w], memory_order_relaxed);
			n += (int64_t)pgt_hal_popcount((const uint64_t *)out + w0, we - w0);
		}
	}
	return n;
}

bool pgt__bitmap_validate(const struct pgt_bitmap *b, const char **reason)
{
	const char *why = NULL;
	size_t nsw;

	if (!b || !b->words || !b->summary || !b->nbits) {
		why = "bitmap not initialised";
		goto out;
	}
	if (b->nwords != b->nbits / 64 + (b->nbits % 64 != 0) ||
	    b->nsummary != (b->nwords + PGT_BM_GROUP_WORDS - 1) / PGT_BM_GROUP_WORDS) {
		why = "geometry does not match nbits";
		goto out;
	}
	if (atomic_load_explicit(&b->words[b->nwords - 1], memory_order_relaxed) & tail_garbage(b)) {
		why = "bit set beyond nbits";
		goto out;
	}
	nsw = sum_words(b);
	if (b->nsummary % SUMW_GROUPS &&
	    atomic_load_explicit(&b->summary[nsw - 1], memory_order_relaxed) &
		    (~0ULL << (b->nsummary % SUMW_GROUPS))) {
		why = "summary bit set beyond the last group";
		goto out;
	}
	for (size_t g = 0; g < b->nsummary; g++) {
		uint64_t gm = atomic_load_explicit(&b->summary[g / SUMW_GROUPS], memory_order_relaxed);

		if ((gm >> (g % SUMW_GROUPS)) & 1)
			continue;
		for (size_t w = g * PGT_BM_GROUP_WORDS, we = group_end(b, g); w < we; w++) {
			if (atomic_load_explicit(&b->words[w], memory_order_relaxed)) {
				why = "non-zero word under a clear summary bit";
				goto out;
			}
		}
	}
out:
	if (why && reason)
		*reason = why;
	return !why;
}
