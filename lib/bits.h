/* SPDX-License-Identifier: MIT */
/*
 * Sizes and bit constants used across pgtrack, defined once. Not installed.
 * The kernel's uapi constants (MADV_*, ioctls) live in hal/compat_uapi.h.
 */
#ifndef PGT_BITS_H
#define PGT_BITS_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

/* LP64 only (x86_64, aarch64): a KVM-layout word is a 64-bit bitmap word. */
static_assert(sizeof(unsigned long) == 8, "pgtrack needs 64-bit unsigned long");

/* Bits in the words of a KVM-layout bitmap (unsigned long). */
#define PGT_BITS_PER_LONG (8 * sizeof(unsigned long))
/* Words of a KVM-layout bitmap of @nbits bits. */
#define PGT_KVM_WORDS(nbits) (((nbits) + PGT_BITS_PER_LONG - 1) / PGT_BITS_PER_LONG)

#define PGT_SZ_4K (4096ULL)
#define PGT_SZ_2M (2ULL << 20)
#define PGT_SZ_1G (1ULL << 30)

/* Bit @i of a KVM-layout bitmap. */
static inline bool pgt__test_bit_long(const unsigned long *bm, uint64_t i)
{
	return bm[i / PGT_BITS_PER_LONG] >> (i % PGT_BITS_PER_LONG) & 1;
}

static inline void pgt__clear_bit_long(unsigned long *bm, uint64_t i)
{
	bm[i / PGT_BITS_PER_LONG] &= ~(1ul << (i % PGT_BITS_PER_LONG));
}

static inline uint64_t pgt__round_up(uint64_t n, uint64_t a)
{
	return (n + a - 1) / a * a;
}

#endif /* PGT_BITS_H */
