/* SPDX-License-Identifier: MIT */
/*
 * Two-level page bitmaps.
 *
 * Level 0: one bit per page in 64-bit words. Level 1 (summary): one bit per
 * group of 64 words (4096 pages); a summary bit is an over-approximation:
 * clear ⇒ the 64 words are zero; set ⇒ they may hold bits. Iteration and
 * get-and-clear visit only groups whose summary bit is set, so their cost
 * is proportional to the set bits, not to the region.
 *
 * Concurrency: set/test_and_set/set_range are atomic and may run from any
 * thread (including signal handlers: they are async-signal-safe) concurrently
 * with one get-and-clear (pgt__bitmap_take*) at a time. Setters write the word
 * first and the summary second; the taker exchanges the summary first and the
 * words second, so a bit is never stranded under a clear summary bit.
 * Everything else (or, clear_range, export, iteration, popcount) needs the
 * caller to exclude concurrent takers; concurrent setters are tolerated
 * (their bits are either seen or kept).
 */
#ifndef PGT_BITMAP_H
#define PGT_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGT_BM_GROUP_WORDS 64
#define PGT_BM_GROUP_BITS (64 * PGT_BM_GROUP_WORDS)

struct pgt_bitmap {
	uint64_t nbits;
	size_t nwords;             /* ceil(nbits / 64) */
	size_t nsummary;           /* ceil(nwords / 64) */
	_Atomic uint64_t *words;
	_Atomic uint64_t *summary;
};

/* Allocation (zeroed, cache-line aligned). 0 or -ENOMEM; nbits 0 → -EINVAL. */
int pgt__bitmap_init(struct pgt_bitmap *b, uint64_t nbits);
void pgt__bitmap_fini(struct pgt_bitmap *b);
/* Bytes of memory held (words + summary). */
size_t pgt__bitmap_bytes(const struct pgt_bitmap *b);

void pgt__bitmap_set(struct pgt_bitmap *b, uint64_t i);
/* Returns the previous value of the bit. */
bool pgt__bitmap_test_and_set(struct pgt_bitmap *b, uint64_t i);
bool pgt__bitmap_test(const struct pgt_bitmap *b, uint64_t i);
void pgt__bitmap_clear(struct pgt_bitmap *b, uint64_t i);
/* [first, first + n) must lie inside the bitmap. */
void pgt__bitmap_set_range(struct pgt_bitmap *b, uint64_t first, uint64_t n);
void pgt__bitmap_clear_range(struct pgt_bitmap *b, uint64_t first, uint64_t n);
void pgt__bitmap_zero(struct pgt_bitmap *b);

uint64_t pgt__bitmap_popcount(const struct pgt_bitmap *b);
/* Popcount of [first, first + n), clipped to the bitmap (relaxed loads). */
uint64_t pgt__bitmap_count_range(const struct pgt_bitmap *b, uint64_t first, uint64_t n);
/* Atomically clear [first, first + n) (clipped); returns how many bits were
 * set. Safe against setters; the summary stays set (an over-approximation). */
uint64_t pgt__bitmap_take_range(struct pgt_bitmap *b, uint64_t first, uint64_t n);
bool pgt__bitmap_empty(const struct pgt_bitmap *b);

/*
 * Run callback: pages [first, first + n). Returning non-zero stops the
 * iteration and is passed back to the caller.
 */
typedef int (*pgt_bitmap_run_fn)(void *arg, uint64_t first, uint64_t n);

/* Visit maximal runs of set bits in ascending order. */
int pgt__bitmap_for_each_run(const struct pgt_bitmap *b, pgt_bitmap_run_fn fn, void *arg);
/* Number of maximal runs. */
uint64_t pgt__bitmap_count_runs(const struct pgt_bitmap *b);

/*
 * Get-and-clear: atomically exchange every non-zero word with 0 and report
 * its bits. @fn is called once per non-zero word with the word index and
 * the bits taken (NULL @fn just clears). Returns the number of bits taken.
 */
typedef void (*pgt_bitmap_word_fn)(void *arg, size_t word, uint64_t bits);
uint64_t pgt__bitmap_take(struct pgt_bitmap *b, pgt_bitmap_word_fn fn, void *arg);

/*
 * Get-and-clear into runs: like pgt__bitmap_take but reports maximal runs
 * (runs spanning word boundaries are joined). Returns bits taken. If @fn
 * returns non-zero, the runs reported so far (that one included) stay taken
 * and every other bit stays in the bitmap.
 */
uint64_t pgt__bitmap_take_runs(struct pgt_bitmap *b, pgt_bitmap_run_fn fn, void *arg);

/*
 * Set bits at or after *pos in ascending order into @out (at most @cap);
 * returns how many were written, 0 when there are no more. *pos moves to
 * the next bit to look at, so repeated calls walk the whole bitmap. The
 * cost is proportional to the set bits plus the summary words (the groups
 * with no bits are skipped), not to nbits. Each call re-reads the group
 * it resumes in (64 words): give it room for a few thousand bits on dense
 * bitmaps. Relaxed loads: a concurrent setter's bit is seen or not.
 * Whole words go through the HAL's SIMD extraction (pgt_hal_bits_extract),
 * which may use out[return..cap) as scratch.
 */
size_t pgt__bitmap_next_bits(const struct pgt_bitmap *b, uint64_t *pos, uint64_t *out,
			     size_t cap);

/* Visit every set bit in ascending order (through next_bits). Non-zero
 * from @fn stops the walk and is returned. */
typedef int (*pgt_bitmap_bit_fn)(void *arg, uint64_t bit);
int pgt__bitmap_for_each_bit(const struct pgt_bitmap *b, pgt_bitmap_bit_fn fn, void *arg);

/*
 * The first set bit at or after @from, scanning word by word without the
 * summary (Linux's find_next_bit); nbits when there is none. The reference
 * the tests and the benchmark hold next_bits against.
 */
uint64_t pgt__bitmap_find_next(const struct pgt_bitmap *b, uint64_t from);

/* dst |= src (same nbits, else -EINVAL). Cost proportional to src's set groups. */
int pgt__bitmap_or(struct pgt_bitmap *dst, const struct pgt_bitmap *src);

/*
 * dst |= bits from an external KVM-layout bitmap of @nbits bits (unsigned
 * long words; bits beyond b->nbits are ignored). Returns bits merged: the
 * set bits read from @src, whether or not they were already set in @dst.
 */
uint64_t pgt__bitmap_or_kvm(struct pgt_bitmap *dst, const unsigned long *src, uint64_t nbits);

/*
 * Export in KVM dirty-log layout (unsigned long words, guest-physical
 * order). @out must hold ceil(nbits / BITS_PER_LONG) words, else -ENOBUFS.
 * Words are overwritten. Returns the number of set bits.
 */
int64_t pgt__bitmap_export_kvm(const struct pgt_bitmap *b, unsigned long *out, size_t out_words);

/*
 * Self-check: summary covers every non-zero word, no bit beyond nbits.
 * Returns true when valid; otherwise false and *reason (if non-NULL) says
 * what is wrong (a static string).
 */
bool pgt__bitmap_validate(const struct pgt_bitmap *b, const char **reason);

#endif /* PGT_BITMAP_H */
