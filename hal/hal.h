/* SPDX-License-Identifier: MIT */
/*
 * Hardware abstraction layer: the only interface engine/ and numa/ use for
 * anything architecture specific. Per-architecture code lives in hal/arch/
 * and hal/simd_*.c; nothing else has an #ifdef __x86_64__.
 */
#ifndef PGT_HAL_H
#define PGT_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Barriers, cpu_relax, prefetch and the raw cycle counter come from the arch
 * header as static inlines: pgt_mb(), pgt_rmb(), pgt_wmb(), pgt_cpu_relax(),
 * pgt_prefetch(p), pgt_prefetchw(p), pgt_cycles(). */
#if defined(__x86_64__)
#include "arch/x86_64.h"
#elif defined(__aarch64__)
#include "arch/aarch64.h"
#else
#include "arch/generic.h"
#endif

/** pgt_hal_page_size() - Base page size (sysconf, cached). */
uint64_t pgt_hal_page_size(void);

/** pgt_hal_cacheline() - L1 data cache line size in bytes (64 fallback). */
unsigned pgt_hal_cacheline(void);

/**
 * pgt_hal_hugepage_sizes() - Hugepage sizes the host offers
 * (/sys/kernel/mm/hugepages), ascending.
 * Returns: the number of sizes (may exceed @cap; only @cap are stored).
 */
int pgt_hal_hugepage_sizes(uint64_t *sizes, int cap);

/**
 * pgt_hal_cycles_per_sec() - Cycle counter frequency, calibrated once against
 * CLOCK_MONOTONIC (x86 TSC) or read from cntfrq_el0 (aarch64).
 */
uint64_t pgt_hal_cycles_per_sec(void);

/** pgt_hal_cycles_to_ns() - Convert a cycle delta to nanoseconds. */
uint64_t pgt_hal_cycles_to_ns(uint64_t cycles);

/** pgt_hal_now_ns() - CLOCK_MONOTONIC in nanoseconds. */
uint64_t pgt_hal_now_ns(void);

/** SIMD implementations selectable for tests (enum pgt_simd bits, 0 = scalar). */
uint32_t pgt_hal_simd_available(void);

/**
 * pgt_hal_is_zero() - Whether @len bytes at @p are all zero. Any alignment,
 * any length; uses the best SIMD level the CPU has (chosen once at run time).
 */
bool pgt_hal_is_zero(const void *p, size_t len);

/**
 * pgt_hal_popcount() - Number of set bits in @nwords 64-bit words.
 */
uint64_t pgt_hal_popcount(const uint64_t *words, size_t nwords);

/**
 * pgt_hal_or() - OR-merge: dst[i] |= src[i] for @nwords 64-bit words. The
 * arrays may have any 8-byte alignment; they must not overlap unless equal.
 * Not atomic: the caller excludes concurrent writers of @dst.
 */
void pgt_hal_or(uint64_t *dst, const uint64_t *src, size_t nwords);

/**
 * pgt_hal_or_new() - pgt_hal_or() that also returns the number of bits it
 * added: the popcount of src & ~dst taken before the merge.
 */
uint64_t pgt_hal_or_new(uint64_t *dst, const uint64_t *src, size_t nwords);

/**
 * pgt_hal_or_count() - pgt_hal_or() that also returns the popcount of @src
 * (the bits it reported, whether new in @dst or not), in the same pass.
 */
uint64_t pgt_hal_or_count(uint64_t *dst, const uint64_t *src, size_t nwords);

/**
 * pgt_hal_or_count_clear() - pgt_hal_or_count() that also zeroes @src: a
 * quiescent log merged, counted and handed back clean in one pass. Plain
 * stores: nothing may write @src meanwhile.
 */
uint64_t pgt_hal_or_count_clear(uint64_t *dst, uint64_t *src, size_t nwords);

/* The words of one summary group of a page bitmap (lib/bitmap.h). */
#define PGT_HAL_OR_GROUP_WORDS 64

/**
 * pgt_hal_or_count_groups() - pgt_hal_or_count() over a bitmap's groups,
 * also marking the groups that received a set bit
 * @dst, @src, @nwords: as for pgt_hal_or_count()
 * @head: words in the first group (a range need not start on a group
 *        boundary), then groups of PGT_HAL_OR_GROUP_WORDS; 0 means a whole
 *        group
 * @sum: a summary bitmap: bit @g0 + i is set (never cleared) when the
 *       i-th group's @src words have a set bit; NULL: none
 * @g0: the first group's index in @sum
 *
 * One call per merged range: no call or reduction per group (a 1 GiB
 * bitmap has 64 groups; a call each cost a tenth of the merge).
 * Return: the popcount of @src.
 */
uint64_t pgt_hal_or_count_groups(uint64_t *dst, const uint64_t *src, size_t nwords, size_t head,
				 uint64_t *sum, size_t g0);

/* pgt_hal_or_count_groups() that also zeroes @src, as pgt_hal_or_count_clear(). */
uint64_t pgt_hal_or_count_clear_groups(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				       uint64_t *sum, size_t g0);

/**
 * pgt_hal_nonzero_words() - Bit i set when words[i] is non-zero, for the
 * first min(@nwords, 64) words: a bitmap group's occupancy in a few
 * compares. Plain loads (callers reading atomic words accept relaxed
 * semantics).
 */
uint64_t pgt_hal_nonzero_words(const uint64_t *words, size_t nwords);

/*
 * Test hooks: force one implementation (an enum pgt_simd bit, or 0 for
 * scalar). Returns 0, or -ENOTSUP when the CPU lacks that level. Not
 * thread-safe against concurrent users; tests only.
 */
int pgt__hal_force_simd(uint32_t level);
bool pgt__hal_is_zero_scalar(const void *p, size_t len);
uint64_t pgt__hal_popcount_scalar(const uint64_t *words, size_t nwords);
void pgt__hal_or_scalar(uint64_t *dst, const uint64_t *src, size_t nwords);
uint64_t pgt__hal_or_new_scalar(uint64_t *dst, const uint64_t *src, size_t nwords);
uint64_t pgt__hal_nonzero_words_scalar(const uint64_t *words, size_t nwords);

/*
 * Flag for pgt__hal_force_simd() together with PGT_SIMD_AVX512: count bits
 * with the AVX-512BW byte-table code even where AVX512-VPOPCNTDQ exists, so
 * tests reach both paths. pgt__hal_force_simd() returns -EINVAL for unknown
 * bits, more than one level, or this flag without PGT_SIMD_AVX512.
 */
#define PGT__SIMD_NO_VPOPCNTDQ (1u << 31)

/* Names of the implementations in use ("scalar", "avx2", "avx512-vpopcntdq"...). */
const char *pgt__hal_is_zero_impl(void);
const char *pgt__hal_popcount_impl(void);
const char *pgt__hal_or_impl(void);         /* pgt_hal_or_new()'s; pgt_hal_or() same level */

/* pgt_hal_hugepage_sizes() reading @dir instead of /sys/kernel/mm/hugepages. */
int pgt__hal_hugepage_sizes_at(const char *dir, uint64_t *sizes, int cap);

/*
 * CRC32C (Castagnoli) fingerprints, hal/crc.c: carry-less-multiply folding
 * (VPCLMULQDQ on AVX-512 or AVX2, PCLMULQDQ, arm64 PMULL) or the CRC instructions
 * (SSE4.2, ARMv8 CRC) when the CPU has them (chosen once at run time), else
 * a table; all equal bit for bit. Collision probability of a changed 4 KiB
 * block: 2^-32 (see hal/crc.c).
 */
/** pgt_hal_crc32c() - CRC32C of @len bytes continuing @crc (0 to start);
 * the standard check value of "123456789" is 0xE3069283. */
uint32_t pgt_hal_crc32c(uint32_t crc, const void *p, size_t len);
/** pgt_hal_crc32c_4k() - CRC32C of each of @nblocks 4 KiB blocks at @p. */
void pgt_hal_crc32c_4k(const void *p, size_t nblocks, uint32_t *out);
/** pgt_hal_crc32c_4k_copy() - copy the 4 KiB block @src to @dst and return
 * the CRC32C of the bytes written to @dst (equal to pgt_hal_crc32c_4k() of
 * @dst afterwards, even if @src changes meanwhile); the buffers must not
 * overlap. */
uint32_t pgt_hal_crc32c_4k_copy(void *dst, const void *src);
/* Scalar references and a test hook (hw false: scalar; -ENOTSUP without hw). */
uint32_t pgt__hal_crc32c_scalar(uint32_t crc, const void *p, size_t len);
void pgt__hal_crc32c_4k_scalar(const void *p, size_t nblocks, uint32_t *out);
int pgt__hal_crc_force(bool hw);
/* Test hooks: the i-th implementation's name (NULL past the last; 0 is
 * "scalar"), and forcing one by name: -ENOTSUP if the CPU lacks it, -EINVAL
 * for a name this build does not have. */
const char *pgt__hal_crc_impl_name(unsigned i);
int pgt__hal_crc_force_name(const char *name);
const char *pgt__hal_crc_impl(void);

/*
 * Set-bit extraction, hal/iter.c: scalar reference, a tzcnt loop over the
 * SIMD non-zero mask, AVX2 (byte table) and AVX-512 VBMI2 (vpcompressb),
 * chosen once at run time.
 */
/**
 * pgt_hal_bits_extract() - Indices of the set bits of @nwords words, in
 * ascending order: @base + 64 * i + j for every set bit j of words[i].
 * Whole words only: stops before the first word whose bits do not fit in
 * the @cap entries left, and sets *@done to the number of words consumed
 * (@nwords when all were). Returns the number of indices written to @out.
 * out[return..cap) may be overwritten (scratch). Plain loads of @words
 * (callers reading atomic words accept relaxed semantics).
 */
size_t pgt_hal_bits_extract(const uint64_t *words, size_t nwords, uint64_t base, uint64_t *out,
			    size_t cap, size_t *done);

/* Implementations of pgt_hal_bits_extract(), for the test hooks. */
enum pgt__iter_level {
	PGT_ITER_SCALAR = 0,
	PGT_ITER_TZCNT,
	PGT_ITER_AVX2,
	PGT_ITER_AVX512_VBMI2,
	PGT_ITER_NEON,
	PGT_ITER_NLEVELS
};
/* Reference: exact writes, no SIMD. */
size_t pgt__hal_bits_extract_scalar(const uint64_t *words, size_t nwords, uint64_t base,
				    uint64_t *out, size_t cap, size_t *done);
/* Bit (1u << level) per level this CPU runs. */
uint32_t pgt__hal_iter_available(void);
/* Force one level: 0, -EINVAL (unknown), -ENOTSUP (CPU lacks it). Tests only. */
int pgt__hal_iter_force(int level);
/* Name of the level in use ("scalar", "tzcnt", "avx2", "avx512-vbmi2"). */
const char *pgt__hal_iter_impl(void);

#endif /* PGT_HAL_H */
