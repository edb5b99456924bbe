/* SPDX-License-Identifier: MIT */
/* x86_64 only, private to hal/simd.c and hal/iter.c. */
#ifndef PGT_HAL_NONZERO_X86_H
#define PGT_HAL_NONZERO_X86_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Bit i set when @w[i] is non-zero, for i < min(@n, 64): one test per 8
 * words, the tail by a masked load (nothing read past @n). AVX-512F only,
 * so it inlines into every AVX-512 caller (pgt_hal_nonzero_words() and the
 * VBMI2 set-bit walk of hal/iter.c).
 */
__attribute__((target("avx512f"))) static inline uint64_t pgt__nonzero_avx512(const uint64_t *w,
									       size_t n)
{
	uint64_t m = 0;
	size_t i = 0;

	n = n < 64 ? n : 64;
	for (; i + 8 <= n; i += 8) {
		__m512i v = _mm512_loadu_si512(w + i);

		m |= (uint64_t)_mm512_test_epi64_mask(v, v) << i;
	}
	if (i < n) {
		__m512i v = _mm512_maskz_loadu_epi64((__mmask8)((1u << (n - i)) - 1), w + i);

		m |= (uint64_t)_mm512_test_epi64_mask(v, v) << i;
	}
	return m;
}

#endif /* PGT_HAL_NONZERO_X86_H */
