/* SPDX-License-Identifier: MIT */
/*
 * Zero-page check, bitmap popcount and OR-merge with one implementation per
 * SIMD level.
 *
 * The level is picked once, at the first call, from what the CPU (and, for
 * AVX, the kernel's XSAVE state) supports. x86 variants are compiled with
 * per-function target attributes so the library needs no -m flags and still
 * runs on a baseline x86-64 CPU. Callers go through function pointers that
 * start out pointing at a resolver.
 */
#include "hal/hal.h"
#include "pgtrack/probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#include "hal/nonzero_x86.h"
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

typedef bool (*is_zero_fn)(const void *p, size_t len);
typedef uint64_t (*popcount_fn)(const uint64_t *words, size_t nwords);
typedef void (*or_fn)(uint64_t *dst, const uint64_t *src, size_t nwords);
typedef uint64_t (*or_new_fn)(uint64_t *dst, const uint64_t *src, size_t nwords);
typedef uint64_t (*nonzero_fn)(const uint64_t *words, size_t nwords);
/* or_count over groups (pgt_hal_or_count_groups()); the _clear ones write src */
typedef uint64_t (*or_count_fn)(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				uint64_t *sum, size_t g0);

#define ALL_LEVELS (PGT_SIMD_SSE2 | PGT_SIMD_AVX2 | PGT_SIMD_AVX512 | PGT_SIMD_NEON)

/* memcpy keeps unaligned and type-punned loads defined; it compiles to a mov. */
static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t load32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline const uint8_t *align_up(const uint8_t *p, uintptr_t a)
{
	return (const uint8_t *)(((uintptr_t)p + a - 1) & ~(a - 1));
}

/*
 * Up to 32 bytes with overlapping word loads: shorter than any vector, and
 * a byte loop here would dominate the small-tail cases.
 */
static inline bool is_zero_small(const uint8_t *s, size_t len)
{
	uint8_t acc = 0;

	/* No pointer arithmetic on s before len is known non-zero: s may be NULL. */
	if (len >= 16)
		return !(load64(s) | load64(s + 8) | load64(s + len - 16) | load64(s + len - 8));
	if (len >= 8)
		return !(load64(s) | load64(s + len - 8));
	if (len >= 4)
		return !(load32(s) | load32(s + len - 4));
	for (size_t i = 0; i < len; i++)
		acc |= s[i];
	return !acc;
}

/* ---- scalar ---------------------------------------------------------- */

bool pgt__hal_is_zero_scalar(const void *p, size_t len)
{
	const uint8_t *s = p, *end, *q;
	uint64_t acc;

	if (len <= 32)
		return is_zero_small(s, len);
	/* Head and tail as unaligned words; everything between aligned. */
	end = s + len;
	acc = load64(s) | load64(end - 8);
	q = align_up(s + 1, 8);
	while (end - q >= 64) {
		acc |= load64(q) | load64(q + 8) | load64(q + 16) | load64(q + 24) |
		       load64(q + 32) | load64(q + 40) | load64(q + 48) | load64(q + 56);
		if (acc)
			return false;
		q += 64;
	}
	for (; end - q >= 8; q += 8)
		acc |= load64(q);
	return !acc;
}

uint64_t pgt__hal_popcount_scalar(const uint64_t *words, size_t nwords)
{
	uint64_t a = 0, b = 0;
	size_t i = 0;

	for (; i + 2 <= nwords; i += 2) {
		a += (uint64_t)__builtin_popcountll(words[i]);
		b += (uint64_t)__builtin_popcountll(words[i + 1]);
	}
	if (i < nwords)
		a += (uint64_t)__builtin_popcountll(words[i]);
	return a + b;
}

void pgt__hal_or_scalar(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		dst[i] |= src[i];
}

uint64_t pgt__hal_or_new_scalar(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nwords; i++) {
		n += (uint64_t)__builtin_popcountll(src[i] & ~dst[i]);
		dst[i] |= src[i];
	}
	return n;
}

/*
 * or_count: dst |= src and the popcount of src in one pass; the _clear
 * variant also zeroes src (a log handed back to its writer). Every level
 * has one body, instantiated for both with @clear a constant.
 */
#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE uint64_t or_count_scalar_body(uint64_t *dst, uint64_t *src, size_t n,
						     bool clear)
{
	uint64_t a = 0, b = 0;
	size_t i = 0;

	for (; i + 2 <= n; i += 2) {
		uint64_t s0 = src[i], s1 = src[i + 1];

		a += (uint64_t)__builtin_popcountll(s0);
		b += (uint64_t)__builtin_popcountll(s1);
		dst[i] |= s0;
		dst[i + 1] |= s1;
		if (clear)
			src[i] = src[i + 1] = 0;
	}
	if (i < n) {
		a += (uint64_t)__builtin_popcountll(src[i]);
		dst[i] |= src[i];
		if (clear)
			src[i] = 0;
	}
	return a + b;
}

/*
 * The group loop of every level's or_count kernels: @body inlined once per
 * group (no call, one reduction a group), bit @g0 + i of @sum set when
 * group i's source has a set bit. A whole bitmap merge is one call.
 */
#define OR_COUNT_GROUPS(body, clear)                                            \
	uint64_t c_ = 0;                                                         \
	for (size_t k_ = head ? head : PGT_HAL_OR_GROUP_WORDS; n;                \
	     dst += k_, src += k_, n -= k_, g0++, k_ = PGT_HAL_OR_GROUP_WORDS) { \
		uint64_t x_;                                                     \
		if (k_ > n)                                                      \
			k_ = n;                                                  \
		x_ = body(dst, src, k_, clear);                                  \
		if (sum)                                                         \
			sum[g0 / 64] |= (uint64_t)(x_ != 0) << (g0 % 64);        \
		c_ += x_;                                                        \
	}                                                                        \
	return c_

/* A level's pair of grouped kernels, plain and clearing, from its body. */
#define OR_COUNT_KERNELS(attr, level, body)                                      \
	attr static uint64_t or_count_##level(uint64_t *dst, uint64_t *src, size_t n, \
					      size_t head, uint64_t *sum, size_t g0) \
	{                                                                        \
		OR_COUNT_GROUPS(body, false);                                    \
	}                                                                        \
	attr static uint64_t or_count_clear_##level(uint64_t *dst, uint64_t *src,  \
						    size_t n, size_t head,         \
						    uint64_t *sum, size_t g0)      \
	{                                                                        \
		OR_COUNT_GROUPS(body, true);                                     \
	}

OR_COUNT_KERNELS(, scalar, or_count_scalar_body)

uint64_t pgt__hal_nonzero_words_scalar(const uint64_t *words, size_t nwords)
{
	uint64_t m = 0;

	for (size_t i = 0; i < nwords && i < 64; i++)
		m |= (uint64_t)(words[i] != 0) << i;
	return m;
}

/*
 * Non-zero words as a mask, @step words per compare: @mask(p) gives the
 * non-zero bits of words p[0, step); the tail (fewer than @step) is scalar.
 */
#define NONZERO_BODY(step, mask)                                                \
	uint64_t m = 0;                                                         \
	size_t i = 0;                                                           \
	n = n < 64 ? n : 64;                                                    \
	for (; i + (step) <= n; i += (step))                                     \
		m |= (uint64_t)mask(w + i) << i;                                 \
	return i < n ? m | (pgt__hal_nonzero_words_scalar(w + i, n - i) << i) : m

/* ---- x86_64 ---------------------------------------------------------- */
#if defined(__x86_64__)

#define TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,popcnt")))
#define TARGET_VPOPCNT __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt")))

/* SSE2 is part of x86-64 itself: no target attribute needed. */

static inline bool zero128(__m128i v)
{
	return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) == 0xffff;
}

static bool is_zero_sse2(const void *p, size_t len)
{
	const uint8_t *s = p, *end, *q;
	__m128i acc;

	if (len <= 32)
		return is_zero_small(s, len);
	end = s + len;
	acc = _mm_or_si128(_mm_loadu_si128((const __m128i *)s),
			   _mm_loadu_si128((const __m128i *)(end - 16)));
	q = align_up(s + 1, 16);
	while (end - q >= 64) {
		const __m128i *v = (const __m128i *)q;

		acc = _mm_or_si128(acc, _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)),
						     _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3))));
		if (!zero128(acc))
			return false;
		q += 64;
	}
	for (; end - q >= 16; q += 16)
		acc = _mm_or_si128(acc, _mm_load_si128((const __m128i *)q));
	return zero128(acc);
}

/* Bits per byte by the SWAR halving steps (SSE2 has no byte shuffle). */
static inline __m128i popcnt8_sse2(__m128i v)
{
	const __m128i m1 = _mm_set1_epi8(0x55), m2 = _mm_set1_epi8(0x33);
	const __m128i m4 = _mm_set1_epi8(0x0f);

	v = _mm_sub_epi8(v, _mm_and_si128(_mm_srli_epi64(v, 1), m1));
	v = _mm_add_epi8(_mm_and_si128(v, m2), _mm_and_si128(_mm_srli_epi64(v, 2), m2));
	return _mm_and_si128(_mm_add_epi8(v, _mm_srli_epi64(v, 4)), m4);
}

static uint64_t popcount_sse2(const uint64_t *w, size_t n)
{
	const __m128i zero = _mm_setzero_si128();
	__m128i acc = zero, c;
	const __m128i *v;
	uint64_t total;

	/* Four vectors add at most 32 per byte before psadbw widens them. */
	for (; n >= 8; w += 8, n -= 8) {
		v = (const __m128i *)w;
		c = _mm_add_epi8(_mm_add_epi8(popcnt8_sse2(_mm_loadu_si128(v)),
					      popcnt8_sse2(_mm_loadu_si128(v + 1))),
				 _mm_add_epi8(popcnt8_sse2(_mm_loadu_si128(v + 2)),
					      popcnt8_sse2(_mm_loadu_si128(v + 3))));
		acc = _mm_add_epi64(acc, _mm_sad_epu8(c, zero));
	}
	for (; n >= 2; w += 2, n -= 2)
		acc = _mm_add_epi64(acc, _mm_sad_epu8(popcnt8_sse2(_mm_loadu_si128((const __m128i *)w)), zero));
	total = (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc));
	if (n)
		total += (uint64_t)__builtin_popcountll(*w);
	return total;
}

TARGET_AVX2 static bool is_zero_avx2(const void *p, size_t len)
{
	const uint8_t *s = p, *end, *q;
	__m256i acc;

	if (len <= 32)
		return is_zero_small(s, len);
	end = s + len;
	acc = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)s),
			      _mm256_loadu_si256((const __m256i *)(end - 32)));
	q = align_up(s + 1, 32);
	while (end - q >= 128) {
		const __m256i *v = (const __m256i *)q;

		acc = _mm256_or_si256(acc, _mm256_or_si256(
			_mm256_or_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1)),
			_mm256_or_si256(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3))));
		if (!_mm256_testz_si256(acc, acc))
			return false;
		q += 128;
	}
	for (; end - q >= 32; q += 32)
		acc = _mm256_or_si256(acc, _mm256_load_si256((const __m256i *)q));
	return _mm256_testz_si256(acc, acc);
}

/* Bits per byte from a 16-entry nibble table (pshufb), per 128-bit lane. */
TARGET_AVX2 static inline __m256i popcnt8_avx2(__m256i v)
{
	const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
					     0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256i lo = _mm256_and_si256(v, m4);
	__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);

	return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

TARGET_AVX2 static uint64_t popcount_avx2(const uint64_t *w, size_t n)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i acc = zero, c;
	const __m256i *v;
	uint64_t total;

	for (; n >= 16; w += 16, n -= 16) {
		v = (const __m256i *)w;
		c = _mm256_add_epi8(_mm256_add_epi8(popcnt8_avx2(_mm256_loadu_si256(v)),
						    popcnt8_avx2(_mm256_loadu_si256(v + 1))),
				    _mm256_add_epi8(popcnt8_avx2(_mm256_loadu_si256(v + 2)),
						    popcnt8_avx2(_mm256_loadu_si256(v + 3))));
		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(c, zero));
	}
	for (; n >= 4; w += 4, n -= 4)
		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(popcnt8_avx2(_mm256_loadu_si256((const __m256i *)w)), zero));
	total = (uint64_t)_mm256_extract_epi64(acc, 0) + (uint64_t)_mm256_extract_epi64(acc, 1) +
		(uint64_t)_mm256_extract_epi64(acc, 2) + (uint64_t)_mm256_extract_epi64(acc, 3);
	for (; n; w++, n--)
		total += (uint64_t)__builtin_popcountll(*w);
	return total;
}

TARGET_AVX512 static bool is_zero_avx512(const void *p, size_t len)
{
	const uint8_t *s = p, *end, *q;
	__m512i acc;

	if (!len)
		return true;
	if (len <= 64) {
		/* Masked-off bytes are not accessed, so this cannot fault. */
		__mmask64 m = len == 64 ? ~0ull : (1ull << len) - 1;

		acc = _mm512_maskz_loadu_epi8(m, s);
		return !_mm512_test_epi64_mask(acc, acc);
	}
	end = s + len;
	acc = _mm512_or_si512(_mm512_loadu_si512(s), _mm512_loadu_si512(end - 64));
	q = align_up(s + 1, 64);
	/* 1 KiB per test, in four chains: the test and its branch once per
	 * 16 loads keep pace with memory (a test per 256 B was ~8 % behind a
	 * plain read of the same buffer) */
	while (end - q >= 1024) {
		__m512i a0 = _mm512_load_si512(q), a1 = _mm512_load_si512(q + 64);
		__m512i a2 = _mm512_load_si512(q + 128), a3 = _mm512_load_si512(q + 192);

		for (unsigned k = 256; k < 1024; k += 256) {
			a0 = _mm512_or_si512(a0, _mm512_load_si512(q + k));
			a1 = _mm512_or_si512(a1, _mm512_load_si512(q + k + 64));
			a2 = _mm512_or_si512(a2, _mm512_load_si512(q + k + 128));
			a3 = _mm512_or_si512(a3, _mm512_load_si512(q + k + 192));
		}
		acc = _mm512_or_si512(acc, _mm512_or_si512(_mm512_or_si512(a0, a1),
							   _mm512_or_si512(a2, a3)));
		if (_mm512_test_epi64_mask(acc, acc))
			return false;
		q += 1024;
	}
	while (end - q >= 256) {
		acc = _mm512_or_si512(acc, _mm512_or_si512(
			_mm512_or_si512(_mm512_load_si512(q), _mm512_load_si512(q + 64)),
			_mm512_or_si512(_mm512_load_si512(q + 128), _mm512_load_si512(q + 192))));
		if (_mm512_test_epi64_mask(acc, acc))
			return false;
		q += 256;
	}
	for (; end - q >= 64; q += 64)
		acc = _mm512_or_si512(acc, _mm512_load_si512(q));
	return !_mm512_test_epi64_mask(acc, acc);
}

TARGET_AVX512 static inline __m512i popcnt8_avx512(__m512i v)
{
	const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3,
								 1, 2, 2, 3, 2, 3, 3, 4));
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	__m512i lo = _mm512_and_si512(v, m4);
	__m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);

	return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo), _mm512_shuffle_epi8(lut, hi));
}

TARGET_AVX512 static uint64_t popcount_avx512bw(const uint64_t *w, size_t n)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i acc = zero, c;

	for (; n >= 32; w += 32, n -= 32) {
		c = _mm512_add_epi8(_mm512_add_epi8(popcnt8_avx512(_mm512_loadu_si512(w)),
						    popcnt8_avx512(_mm512_loadu_si512(w + 8))),
				    _mm512_add_epi8(popcnt8_avx512(_mm512_loadu_si512(w + 16)),
						    popcnt8_avx512(_mm512_loadu_si512(w + 24))));
		acc = _mm512_add_epi64(acc, _mm512_sad_epu8(c, zero));
	}
	for (; n >= 8; w += 8, n -= 8)
		acc = _mm512_add_epi64(acc, _mm512_sad_epu8(popcnt8_avx512(_mm512_loadu_si512(w)), zero));
	if (n) {
		c = _mm512_maskz_loadu_epi64((__mmask8)((1u << n) - 1), w);
		acc = _mm512_add_epi64(acc, _mm512_sad_epu8(popcnt8_avx512(c), zero));
	}
	return (uint64_t)_mm512_reduce_add_epi64(acc);
}

TARGET_VPOPCNT static uint64_t popcount_vpopcntdq(const uint64_t *w, size_t n)
{
	__m512i a0 = _mm512_setzero_si512(), a1 = a0;

	for (; n >= 32; w += 32, n -= 32) {
		a0 = _mm512_add_epi64(a0, _mm512_popcnt_epi64(_mm512_loadu_si512(w)));
		a1 = _mm512_add_epi64(a1, _mm512_popcnt_epi64(_mm512_loadu_si512(w + 8)));
		a0 = _mm512_add_epi64(a0, _mm512_popcnt_epi64(_mm512_loadu_si512(w + 16)));
		a1 = _mm512_add_epi64(a1, _mm512_popcnt_epi64(_mm512_loadu_si512(w + 24)));
	}
	for (; n >= 8; w += 8, n -= 8)
		a0 = _mm512_add_epi64(a0, _mm512_popcnt_epi64(_mm512_loadu_si512(w)));
	if (n)
		a1 = _mm512_add_epi64(a1, _mm512_popcnt_epi64(
			_mm512_maskz_loadu_epi64((__mmask8)((1u << n) - 1), w)));
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a0, a1));
}

/*
 * OR-merge. Loads and stores are unaligned: the two arrays need not share
 * an alignment, and on these cores an unaligned access within a line costs
 * the same as an aligned one. The "new" variants count src & ~dst before
 * the store, the bits the merge adds.
 */
static void or_sse2(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (; n >= 4; dst += 4, src += 4, n -= 4) {
		__m128i *d = (__m128i *)dst;
		const __m128i *s = (const __m128i *)src;

		_mm_storeu_si128(d, _mm_or_si128(_mm_loadu_si128(d), _mm_loadu_si128(s)));
		_mm_storeu_si128(d + 1, _mm_or_si128(_mm_loadu_si128(d + 1), _mm_loadu_si128(s + 1)));
	}
	pgt__hal_or_scalar(dst, src, n);
}

static uint64_t or_new_sse2(uint64_t *dst, const uint64_t *src, size_t n)
{
	const __m128i zero = _mm_setzero_si128();
	__m128i acc = zero;

	for (; n >= 2; dst += 2, src += 2, n -= 2) {
		__m128i d = _mm_loadu_si128((const __m128i *)dst);
		__m128i s = _mm_loadu_si128((const __m128i *)src);

		acc = _mm_add_epi64(acc, _mm_sad_epu8(popcnt8_sse2(_mm_andnot_si128(d, s)), zero));
		_mm_storeu_si128((__m128i *)dst, _mm_or_si128(d, s));
	}
	return (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)) +
	       pgt__hal_or_new_scalar(dst, src, n);
}

TARGET_AVX2 static void or_avx2(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (; n >= 8; dst += 8, src += 8, n -= 8) {
		__m256i *d = (__m256i *)dst;
		const __m256i *s = (const __m256i *)src;

		_mm256_storeu_si256(d, _mm256_or_si256(_mm256_loadu_si256(d), _mm256_loadu_si256(s)));
		_mm256_storeu_si256(d + 1, _mm256_or_si256(_mm256_loadu_si256(d + 1),
							   _mm256_loadu_si256(s + 1)));
	}
	for (; n; dst++, src++, n--)
		*dst |= *src;
}

TARGET_AVX2 static uint64_t or_new_avx2(uint64_t *dst, const uint64_t *src, size_t n)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i acc = zero;
	uint64_t total;

	for (; n >= 4; dst += 4, src += 4, n -= 4) {
		__m256i d = _mm256_loadu_si256((const __m256i *)dst);
		__m256i s = _mm256_loadu_si256((const __m256i *)src);

		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(popcnt8_avx2(_mm256_andnot_si256(d, s)), zero));
		_mm256_storeu_si256((__m256i *)dst, _mm256_or_si256(d, s));
	}
	total = (uint64_t)_mm256_extract_epi64(acc, 0) + (uint64_t)_mm256_extract_epi64(acc, 1) +
		(uint64_t)_mm256_extract_epi64(acc, 2) + (uint64_t)_mm256_extract_epi64(acc, 3);
	for (; n; dst++, src++, n--) {
		total += (uint64_t)__builtin_popcountll(*src & ~*dst);
		*dst |= *src;
	}
	return total;
}

TARGET_AVX512 static void or_avx512(uint64_t *dst, const uint64_t *src, size_t n)
{
	__mmask8 m;

	for (; n >= 16; dst += 16, src += 16, n -= 16) {
		_mm512_storeu_si512(dst, _mm512_or_si512(_mm512_loadu_si512(dst), _mm512_loadu_si512(src)));
		_mm512_storeu_si512(dst + 8, _mm512_or_si512(_mm512_loadu_si512(dst + 8),
							     _mm512_loadu_si512(src + 8)));
	}
	for (; n >= 8; dst += 8, src += 8, n -= 8)
		_mm512_storeu_si512(dst, _mm512_or_si512(_mm512_loadu_si512(dst), _mm512_loadu_si512(src)));
	if (!n)
		return;
	/* Masked-off lanes are neither read nor written. */
	m = (__mmask8)((1u << n) - 1);
	_mm512_mask_storeu_epi64(dst, m, _mm512_or_si512(_mm512_maskz_loadu_epi64(m, dst),
							 _mm512_maskz_loadu_epi64(m, src)));
}

/* One step of or_new for the lanes in @m; @cnt counts bits per 64-bit lane. */
#define OR_NEW_512(dst, src, m, acc, cnt)                                       \
	do {                                                                     \
		__m512i d_ = _mm512_maskz_loadu_epi64((m), (dst));               \
		__m512i s_ = _mm512_maskz_loadu_epi64((m), (src));               \
		(acc) = _mm512_add_epi64((acc), cnt(_mm512_andnot_si512(d_, s_))); \
		_mm512_mask_storeu_epi64((dst), (m), _mm512_or_si512(d_, s_));   \
	} while (0)

TARGET_AVX512 static inline __m512i cnt64_avx512bw(__m512i v)
{
	return _mm512_sad_epu8(popcnt8_avx512(v), _mm512_setzero_si512());
}

TARGET_AVX512 static uint64_t or_new_avx512bw(uint64_t *dst, const uint64_t *src, size_t n)
{
	__m512i acc = _mm512_setzero_si512();

	for (; n >= 8; dst += 8, src += 8, n -= 8)
		OR_NEW_512(dst, src, (__mmask8)0xff, acc, cnt64_avx512bw);
	if (n)
		OR_NEW_512(dst, src, (__mmask8)((1u << n) - 1), acc, cnt64_avx512bw);
	return (uint64_t)_mm512_reduce_add_epi64(acc);
}

TARGET_VPOPCNT static uint64_t or_new_vpopcntdq(uint64_t *dst, const uint64_t *src, size_t n)
{
	__m512i acc = _mm512_setzero_si512();

	for (; n >= 8; dst += 8, src += 8, n -= 8)
		OR_NEW_512(dst, src, (__mmask8)0xff, acc, _mm512_popcnt_epi64);
	if (n)
		OR_NEW_512(dst, src, (__mmask8)((1u << n) - 1), acc, _mm512_popcnt_epi64);
	return (uint64_t)_mm512_reduce_add_epi64(acc);
}

/*
 * or_count bodies. Byte counts of two vectors add up to at most 16 per
 * byte before psadbw widens them to 64-bit lanes.
 */
static ALWAYS_INLINE uint64_t or_count_sse2_body(uint64_t *dst, uint64_t *src, size_t n, bool clear)
{
	const __m128i zero = _mm_setzero_si128();
	__m128i acc = zero;

	for (; n >= 4; dst += 4, src += 4, n -= 4) {
		__m128i *d = (__m128i *)dst, *s = (__m128i *)src;
		__m128i s0 = _mm_loadu_si128(s), s1 = _mm_loadu_si128(s + 1);

		_mm_storeu_si128(d, _mm_or_si128(_mm_loadu_si128(d), s0));
		_mm_storeu_si128(d + 1, _mm_or_si128(_mm_loadu_si128(d + 1), s1));
		if (clear) {
			_mm_storeu_si128(s, zero);
			_mm_storeu_si128(s + 1, zero);
		}
		acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_add_epi8(popcnt8_sse2(s0), popcnt8_sse2(s1)), zero));
	}
	return (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)) +
	       or_count_scalar_body(dst, src, n, clear);
}

OR_COUNT_KERNELS(, sse2, or_count_sse2_body)

TARGET_AVX2 static ALWAYS_INLINE uint64_t or_count_avx2_body(uint64_t *dst, uint64_t *src, size_t n,
							   bool clear)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i acc = zero;

	for (; n >= 8; dst += 8, src += 8, n -= 8) {
		__m256i *d = (__m256i *)dst, *s = (__m256i *)src;
		__m256i s0 = _mm256_loadu_si256(s), s1 = _mm256_loadu_si256(s + 1);

		_mm256_storeu_si256(d, _mm256_or_si256(_mm256_loadu_si256(d), s0));
		_mm256_storeu_si256(d + 1, _mm256_or_si256(_mm256_loadu_si256(d + 1), s1));
		if (clear) {
			_mm256_storeu_si256(s, zero);
			_mm256_storeu_si256(s + 1, zero);
		}
		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_add_epi8(popcnt8_avx2(s0),
									      popcnt8_avx2(s1)), zero));
	}
	return (uint64_t)_mm256_extract_epi64(acc, 0) + (uint64_t)_mm256_extract_epi64(acc, 1) +
	       (uint64_t)_mm256_extract_epi64(acc, 2) + (uint64_t)_mm256_extract_epi64(acc, 3) +
	       or_count_scalar_body(dst, src, n, clear);
}

OR_COUNT_KERNELS(TARGET_AVX2, avx2, or_count_avx2_body)

/* One 8-word step of or_count for the lanes in @m; @cnt: bits per 64-bit lane. */
#define OR_COUNT_512(dst, src, m, acc, cnt, clear)                            \
	do {                                                                   \
		__m512i s_ = _mm512_maskz_loadu_epi64((m), (src));             \
		_mm512_mask_storeu_epi64((dst), (m),                           \
			_mm512_or_si512(_mm512_maskz_loadu_epi64((m), (dst)), s_)); \
		if (clear)                                                     \
			_mm512_mask_storeu_epi64((src), (m), _mm512_setzero_si512()); \
		(acc) = _mm512_add_epi64((acc), cnt(s_));                      \
	} while (0)

/* The same for all 8 lanes, unmasked: masked stores cost more (Zen 4). */
#define OR_COUNT_512_FULL(dst, src, acc, cnt, clear)                          \
	do {                                                                   \
		__m512i s_ = _mm512_loadu_si512(src);                          \
		_mm512_storeu_si512((dst), _mm512_or_si512(_mm512_loadu_si512(dst), s_)); \
		if (clear)                                                     \
			_mm512_storeu_si512((src), _mm512_setzero_si512());    \
		(acc) = _mm512_add_epi64((acc), cnt(s_));                      \
	} while (0)

/* Masked tail lanes are neither read nor written. */
#define OR_COUNT_512_BODY(cnt)                                                  \
	__m512i a0 = _mm512_setzero_si512(), a1 = a0;                          \
	for (; n >= 16; dst += 16, src += 16, n -= 16) {                        \
		OR_COUNT_512_FULL(dst, src, a0, cnt, clear);                     \
		OR_COUNT_512_FULL(dst + 8, src + 8, a1, cnt, clear);             \
	}                                                                       \
	if (n >= 8) {                                                           \
		OR_COUNT_512_FULL(dst, src, a0, cnt, clear);                     \
		dst += 8, src += 8, n -= 8;                                     \
	}                                                                       \
	if (n)                                                                  \
		OR_COUNT_512(dst, src, (__mmask8)((1u << n) - 1), a1, cnt, clear); \
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a0, a1))

TARGET_AVX512 static ALWAYS_INLINE uint64_t or_count_avx512bw_body(uint64_t *dst, uint64_t *src,
								 size_t n, bool clear)
{
	OR_COUNT_512_BODY(cnt64_avx512bw);
}

TARGET_VPOPCNT static ALWAYS_INLINE uint64_t or_count_vpopcntdq_body(uint64_t *dst, uint64_t *src,
								   size_t n, bool clear)
{
	OR_COUNT_512_BODY(_mm512_popcnt_epi64);
}

OR_COUNT_KERNELS(TARGET_AVX512, avx512bw, or_count_avx512bw_body)
OR_COUNT_KERNELS(TARGET_VPOPCNT, vpopcntdq, or_count_vpopcntdq_body)

/* SSE2 has no 64-bit compare: a word is zero when both halves are. */
static inline unsigned nz2_sse2(const uint64_t *p)
{
	__m128i z = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)p), _mm_setzero_si128());

	z = _mm_and_si128(z, _mm_shuffle_epi32(z, _MM_SHUFFLE(2, 3, 0, 1)));
	return ~(unsigned)_mm_movemask_pd(_mm_castsi128_pd(z)) & 3;
}

static uint64_t nonzero_sse2(const uint64_t *w, size_t n)
{
	NONZERO_BODY(2, nz2_sse2);
}

TARGET_AVX2 static inline unsigned nz4_avx2(const uint64_t *p)
{
	__m256i z = _mm256_cmpeq_epi64(_mm256_loadu_si256((const __m256i *)p), _mm256_setzero_si256());

	return ~(unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(z)) & 15;
}

TARGET_AVX2 static uint64_t nonzero_avx2(const uint64_t *w, size_t n)
{
	NONZERO_BODY(4, nz4_avx2);
}

TARGET_AVX512 static uint64_t nonzero_avx512(const uint64_t *w, size_t n)
{
	return pgt__nonzero_avx512(w, n);
}

/*
 * CPUID says what the core implements; XCR0 says whether the kernel saves
 * the wider registers across context switches. Both are needed.
 */
static uint32_t cpu_detect(bool *vpopcntdq)
{
	unsigned a, b, c, d;
	uint32_t lv = PGT_SIMD_SSE2;
	bool popcnt;
	uint64_t xcr0;

	*vpopcntdq = false;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return lv;
	popcnt = c & (1u << 23);
	if (!(c & (1u << 27)) || !(c & (1u << 28)))     /* OSXSAVE, AVX */
		return lv;
	xcr0 = pgt__arch_xcr0();
	if ((xcr0 & 0x6) != 0x6)                         /* XMM, YMM state */
		return lv;
	if (__get_cpuid_max(0, NULL) < 7)
		return lv;
	__cpuid_count(7, 0, a, b, c, d);
	if ((b & (1u << 5)) && popcnt)                   /* AVX2 */
		lv |= PGT_SIMD_AVX2;
	if ((b & (1u << 16)) && (b & (1u << 30)) && popcnt &&  /* AVX512F, BW */
	    (xcr0 & 0xe6) == 0xe6) {                     /* + opmask, ZMM state */
		lv |= PGT_SIMD_AVX512;
		*vpopcntdq = c & (1u << 14);
	}
	return lv;
}

/* ---- aarch64 --------------------------------------------------------- */
#elif defined(__aarch64__)

static inline bool zero_neon(uint8x16_t v)
{
	return !vmaxvq_u32(vreinterpretq_u32_u8(v));
}

static bool is_zero_neon(const void *p, size_t len)
{
	const uint8_t *s = p, *end, *q;
	uint8x16_t acc;

	if (len <= 32)
		return is_zero_small(s, len);
	end = s + len;
	acc = vorrq_u8(vld1q_u8(s), vld1q_u8(end - 16));
	q = align_up(s + 1, 16);
	while (end - q >= 64) {
		acc = vorrq_u8(acc, vorrq_u8(vorrq_u8(vld1q_u8(q), vld1q_u8(q + 16)),
					     vorrq_u8(vld1q_u8(q + 32), vld1q_u8(q + 48))));
		if (!zero_neon(acc))
			return false;
		q += 64;
	}
	for (; end - q >= 16; q += 16)
		acc = vorrq_u8(acc, vld1q_u8(q));
	return zero_neon(acc);
}

static inline uint8x16_t cnt_words(const uint64_t *w)
{
	return vcntq_u8(vreinterpretq_u8_u64(vld1q_u64(w)));
}

static uint64_t popcount_neon(const uint64_t *w, size_t n)
{
	uint64x2_t acc64 = vdupq_n_u64(0);
	uint16x8_t acc16 = vdupq_n_u16(0);
	unsigned blocks = 0;
	uint64_t total;

	/*
	 * Each block adds at most 64 to a 16-bit lane (four vectors of at most
	 * 8 per byte, pairwise); widen before 1024 blocks could overflow it.
	 */
	for (; n >= 8; w += 8, n -= 8) {
		uint8x16_t c = vaddq_u8(vaddq_u8(cnt_words(w), cnt_words(w + 2)),
					vaddq_u8(cnt_words(w + 4), cnt_words(w + 6)));

		acc16 = vpadalq_u8(acc16, c);
		if (++blocks == 1000) {
			acc64 = vpadalq_u32(acc64, vpaddlq_u16(acc16));
			acc16 = vdupq_n_u16(0);
			blocks = 0;
		}
	}
	for (; n >= 2; w += 2, n -= 2)
		acc16 = vpadalq_u8(acc16, cnt_words(w));
	acc64 = vpadalq_u32(acc64, vpaddlq_u16(acc16));
	total = vgetq_lane_u64(acc64, 0) + vgetq_lane_u64(acc64, 1);
	if (n)
		total += (uint64_t)__builtin_popcountll(*w);
	return total;
}

static void or_neon(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (; n >= 4; dst += 4, src += 4, n -= 4) {
		vst1q_u64(dst, vorrq_u64(vld1q_u64(dst), vld1q_u64(src)));
		vst1q_u64(dst + 2, vorrq_u64(vld1q_u64(dst + 2), vld1q_u64(src + 2)));
	}
	pgt__hal_or_scalar(dst, src, n);
}

static uint64_t or_new_neon(uint64_t *dst, const uint64_t *src, size_t n)
{
	uint64x2_t acc64 = vdupq_n_u64(0);

	/* Per 16 bytes at most 128 new bits: widen every vector, no overflow. */
	for (; n >= 2; dst += 2, src += 2, n -= 2) {
		uint64x2_t d = vld1q_u64(dst), s = vld1q_u64(src);
		uint8x16_t c = vcntq_u8(vreinterpretq_u8_u64(vbicq_u64(s, d)));

		acc64 = vpadalq_u32(acc64, vpaddlq_u16(vpaddlq_u8(c)));
		vst1q_u64(dst, vorrq_u64(d, s));
	}
	return vgetq_lane_u64(acc64, 0) + vgetq_lane_u64(acc64, 1) + pgt__hal_or_new_scalar(dst, src, n);
}

static ALWAYS_INLINE uint64_t or_count_neon_body(uint64_t *dst, uint64_t *src, size_t n, bool clear)
{
	uint64x2_t acc64 = vdupq_n_u64(0);

	/* two vectors: at most 16 per byte, widened every step */
	for (; n >= 4; dst += 4, src += 4, n -= 4) {
		uint64x2_t s0 = vld1q_u64(src), s1 = vld1q_u64(src + 2);
		uint8x16_t c = vaddq_u8(vcntq_u8(vreinterpretq_u8_u64(s0)),
					vcntq_u8(vreinterpretq_u8_u64(s1)));

		vst1q_u64(dst, vorrq_u64(vld1q_u64(dst), s0));
		vst1q_u64(dst + 2, vorrq_u64(vld1q_u64(dst + 2), s1));
		if (clear) {
			vst1q_u64(src, vdupq_n_u64(0));
			vst1q_u64(src + 2, vdupq_n_u64(0));
		}
		acc64 = vpadalq_u32(acc64, vpaddlq_u16(vpaddlq_u8(c)));
	}
	return vgetq_lane_u64(acc64, 0) + vgetq_lane_u64(acc64, 1) +
	       or_count_scalar_body(dst, src, n, clear);
}

OR_COUNT_KERNELS(, neon, or_count_neon_body)

static inline uint64_t nz2_neon(const uint64_t *p)
{
	uint64x2_t nz = vtstq_u64(vld1q_u64(p), vld1q_u64(p));

	return (vgetq_lane_u64(nz, 0) & 1) | (vgetq_lane_u64(nz, 1) & 2);
}

static uint64_t nonzero_neon(const uint64_t *w, size_t n)
{
	NONZERO_BODY(2, nz2_neon);
}

/* Advanced SIMD is mandatory in the AArch64 Linux ABI. */
static uint32_t cpu_detect(bool *vpopcntdq)
{
	*vpopcntdq = false;
	return PGT_SIMD_NEON;
}

#else

static uint32_t cpu_detect(bool *vpopcntdq)
{
	*vpopcntdq = false;
	return 0;
}

#endif

/* ---- dispatch -------------------------------------------------------- */

static bool is_zero_resolve(const void *p, size_t len);
static uint64_t popcount_resolve(const uint64_t *words, size_t nwords);
static void or_resolve(uint64_t *dst, const uint64_t *src, size_t nwords);
static uint64_t or_new_resolve(uint64_t *dst, const uint64_t *src, size_t nwords);
static uint64_t nonzero_resolve(const uint64_t *words, size_t nwords);
static uint64_t or_count_resolve(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				 uint64_t *sum, size_t g0);
static uint64_t or_count_clear_resolve(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				       uint64_t *sum, size_t g0);

/*
 * The code a pointer names never changes, so relaxed loads are enough: a
 * thread that still sees the resolver goes through pthread_once, which
 * orders it after the installation.
 */
static _Atomic(is_zero_fn) is_zero_ptr = is_zero_resolve;
static _Atomic(popcount_fn) popcount_ptr = popcount_resolve;
static _Atomic(or_fn) or_ptr = or_resolve;
static _Atomic(or_new_fn) or_new_ptr = or_new_resolve;
static _Atomic(nonzero_fn) nonzero_ptr = nonzero_resolve;
static _Atomic(or_count_fn) or_count_ptr = or_count_resolve;
static _Atomic(or_count_fn) or_count_clear_ptr = or_count_clear_resolve;
static _Atomic(const char *) is_zero_name = "unresolved";
static _Atomic(const char *) popcount_name = "unresolved";
static _Atomic(const char *) or_name = "unresolved";

static pthread_once_t simd_once = PTHREAD_ONCE_INIT;
static uint32_t cpu_levels;
static bool cpu_vpopcntdq;

/* One SIMD level's kernels; every kernel of the library is picked here. */
struct kernels {
	is_zero_fn is_zero;
	popcount_fn popcount;
	or_fn or_merge;
	or_new_fn or_new;
	const char *zn, *pn, *on;
	nonzero_fn nonzero;             /* named as is_zero (same level) */
	or_count_fn or_count;           /* named as or_new (same level) */
	or_count_fn or_count_clear;
};

static struct kernels level_kernels(uint32_t level, bool no_vpopcntdq)
{
	struct kernels k = {
		pgt__hal_is_zero_scalar, pgt__hal_popcount_scalar, pgt__hal_or_scalar,
		pgt__hal_or_new_scalar, "scalar", "scalar", "scalar",
		pgt__hal_nonzero_words_scalar, or_count_scalar, or_count_clear_scalar,
	};

#if defined(__x86_64__)
	switch (level) {
	case PGT_SIMD_SSE2:
		k = (struct kernels){ is_zero_sse2, popcount_sse2, or_sse2, or_new_sse2,
				      "sse2", "sse2", "sse2", nonzero_sse2,
				      or_count_sse2, or_count_clear_sse2 };
		break;
	case PGT_SIMD_AVX2:
		k = (struct kernels){ is_zero_avx2, popcount_avx2, or_avx2, or_new_avx2,
				      "avx2", "avx2", "avx2", nonzero_avx2,
				      or_count_avx2, or_count_clear_avx2 };
		break;
	case PGT_SIMD_AVX512:
		k = (struct kernels){ is_zero_avx512, popcount_avx512bw, or_avx512, or_new_avx512bw,
				      "avx512bw", "avx512bw", "avx512bw", nonzero_avx512,
				      or_count_avx512bw, or_count_clear_avx512bw };
		if (cpu_vpopcntdq && !no_vpopcntdq) {
			k.popcount = popcount_vpopcntdq;
			k.or_new = or_new_vpopcntdq;
			k.or_count = or_count_vpopcntdq;
			k.or_count_clear = or_count_clear_vpopcntdq;
			k.pn = k.on = "avx512-vpopcntdq";
		}
		break;
	}
#elif defined(__aarch64__)
	if (level == PGT_SIMD_NEON)
		k = (struct kernels){ is_zero_neon, popcount_neon, or_neon, or_new_neon,
				      "neon", "neon", "neon", nonzero_neon,
				      or_count_neon, or_count_clear_neon };
#endif
	(void)level;
	(void)no_vpopcntdq;
	return k;
}

static void install(uint32_t level, bool no_vpopcntdq)
{
	struct kernels k = level_kernels(level, no_vpopcntdq);

	atomic_store_explicit(&is_zero_name, k.zn, memory_order_relaxed);
	atomic_store_explicit(&popcount_name, k.pn, memory_order_relaxed);
	atomic_store_explicit(&or_name, k.on, memory_order_relaxed);
	atomic_store_explicit(&is_zero_ptr, k.is_zero, memory_order_relaxed);
	atomic_store_explicit(&popcount_ptr, k.popcount, memory_order_relaxed);
	atomic_store_explicit(&or_ptr, k.or_merge, memory_order_relaxed);
	atomic_store_explicit(&or_new_ptr, k.or_new, memory_order_relaxed);
	atomic_store_explicit(&nonzero_ptr, k.nonzero, memory_order_relaxed);
	atomic_store_explicit(&or_count_ptr, k.or_count, memory_order_relaxed);
	atomic_store_explicit(&or_count_clear_ptr, k.or_count_clear, memory_order_relaxed);
}

static uint32_t best_level(uint32_t levels)
{
	static const uint32_t order[] = {
		PGT_SIMD_AVX512, PGT_SIMD_AVX2, PGT_SIMD_SSE2, PGT_SIMD_NEON,
	};

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (levels & order[i])
			return order[i];
	return 0;
}

static void simd_init(void)
{
	cpu_levels = cpu_detect(&cpu_vpopcntdq);
	install(best_level(cpu_levels), false);
}

static bool is_zero_resolve(const void *p, size_t len)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&is_zero_ptr, memory_order_relaxed)(p, len);
}

static uint64_t popcount_resolve(const uint64_t *words, size_t nwords)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&popcount_ptr, memory_order_relaxed)(words, nwords);
}

static void or_resolve(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	pthread_once(&simd_once, simd_init);
	atomic_load_explicit(&or_ptr, memory_order_relaxed)(dst, src, nwords);
}

static uint64_t or_new_resolve(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&or_new_ptr, memory_order_relaxed)(dst, src, nwords);
}

static uint64_t nonzero_resolve(const uint64_t *words, size_t nwords)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&nonzero_ptr, memory_order_relaxed)(words, nwords);
}

static uint64_t or_count_resolve(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				 uint64_t *sum, size_t g0)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&or_count_ptr, memory_order_relaxed)(dst, src, nwords, head,
									  sum, g0);
}

static uint64_t or_count_clear_resolve(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				       uint64_t *sum, size_t g0)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&or_count_clear_ptr, memory_order_relaxed)(dst, src, nwords,
										head, sum, g0);
}

/* not written: the plain kernels only read src */
uint64_t pgt_hal_or_count(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	return atomic_load_explicit(&or_count_ptr, memory_order_relaxed)(dst, (uint64_t *)src,
									  nwords, nwords, NULL, 0);
}

uint64_t pgt_hal_or_count_clear(uint64_t *dst, uint64_t *src, size_t nwords)
{
	return atomic_load_explicit(&or_count_clear_ptr, memory_order_relaxed)(dst, src, nwords,
										nwords, NULL, 0);
}

uint64_t pgt_hal_or_count_groups(uint64_t *dst, const uint64_t *src, size_t nwords, size_t head,
				 uint64_t *sum, size_t g0)
{
	return atomic_load_explicit(&or_count_ptr, memory_order_relaxed)(dst, (uint64_t *)src,
									  nwords, head, sum, g0);
}

uint64_t pgt_hal_or_count_clear_groups(uint64_t *dst, uint64_t *src, size_t nwords, size_t head,
				       uint64_t *sum, size_t g0)
{
	return atomic_load_explicit(&or_count_clear_ptr, memory_order_relaxed)(dst, src, nwords,
										head, sum, g0);
}

uint64_t pgt_hal_nonzero_words(const uint64_t *words, size_t nwords)
{
	/* (NULL, 0) is valid; the kernels' tail would offset NULL (UBSan) */
	if (!nwords)
		return 0;
	return atomic_load_explicit(&nonzero_ptr, memory_order_relaxed)(words, nwords);
}

uint32_t pgt_hal_simd_available(void)
{
	pthread_once(&simd_once, simd_init);
	return cpu_levels;
}

bool pgt_hal_is_zero(const void *p, size_t len)
{
	return atomic_load_explicit(&is_zero_ptr, memory_order_relaxed)(p, len);
}

uint64_t pgt_hal_popcount(const uint64_t *words, size_t nwords)
{
	return atomic_load_explicit(&popcount_ptr, memory_order_relaxed)(words, nwords);
}

void pgt_hal_or(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	atomic_load_explicit(&or_ptr, memory_order_relaxed)(dst, src, nwords);
}

uint64_t pgt_hal_or_new(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	return atomic_load_explicit(&or_new_ptr, memory_order_relaxed)(dst, src, nwords);
}

int pgt__hal_force_simd(uint32_t level)
{
	bool no_vpop = level & PGT__SIMD_NO_VPOPCNTDQ;

	pthread_once(&simd_once, simd_init);
	level &= ~PGT__SIMD_NO_VPOPCNTDQ;
	if ((level & ~ALL_LEVELS) || (level & (level - 1)))
		return -EINVAL;
	if (no_vpop && level != PGT_SIMD_AVX512)
		return -EINVAL;
	if (level && !(cpu_levels & level))
		return -ENOTSUP;
	install(level, no_vpop);
	return 0;
}

const char *pgt__hal_is_zero_impl(void)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&is_zero_name, memory_order_relaxed);
}

const char *pgt__hal_popcount_impl(void)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&popcount_name, memory_order_relaxed);
}

const char *pgt__hal_or_impl(void)
{
	pthread_once(&simd_once, simd_init);
	return atomic_load_explicit(&or_name, memory_order_relaxed);
}
