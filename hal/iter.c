/* SPDX-License-Identifier: MIT */
/*
 * Set-bit extraction: the indices of the set bits of an array of words, the
 * inner loop of bitmap iteration (lib/bitmap.c pgt__bitmap_next_bits).
 *
 * Implementations, picked once at the first call (own dispatch, in the
 * style of hal/simd.c):
 *  - "scalar": the reference the tests hold the others against; one word at
 *    a time, tzcnt + blsr per bit.
 *  - "tzcnt": the same per-bit loop, but zero words are skipped through the
 *    SIMD non-zero mask of 64 words (pgt_hal_nonzero_words), so a sparse
 *    group costs a few compares plus one ctz per non-zero word. aarch64 and
 *    x86 without AVX2 use it.
 *  - "avx2": a 256-entry table of the bit positions of each byte value,
 *    widened to 64-bit indices and stored 8 at a time (words with fewer
 *    than 8 bits take the tzcnt loop).
 *  - "neon": the same table, widened by three vmovl steps and stored two
 *    indices a vector (aarch64; NEON is part of the ABI).
 *  - "avx512-vbmi2": one vpcompressb of the byte iota 0..63 under the word
 *    itself gives all its bit positions at once; they are widened 8 at a
 *    time (vpmovzxbq) and stored with exact masks (the approach of
 *    CRoaring's bitset_extract_setbits_avx512, bytes instead of dwords).
 *
 * All stop before a word whose bits would not fit and report how many
 * words they consumed, so the caller can split that word itself.
 */
#include "hal/hal.h"

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

typedef size_t (*extract_fn)(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
			     size_t cap, size_t *done);

static inline unsigned popc64(uint64_t v)
{
	return (unsigned)__builtin_popcountll(v);
}

/* Bits of @v as base + position into out[n..]; the caller checked room. */
static inline size_t emit_tz(uint64_t v, uint64_t base, uint64_t *out, size_t n)
{
	for (; v; v &= v - 1)
		out[n++] = base + (uint64_t)__builtin_ctzll(v);
	return n;
}

size_t pgt__hal_bits_extract_scalar(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
				    size_t cap, size_t *done)
{
	size_t n = 0, i;

	for (i = 0; i < nw; i++) {
		uint64_t v = w[i];

		if (popc64(v) > cap - n)
			break;
		n = emit_tz(v, base + 64 * (uint64_t)i, out, n);
	}
	*done = i;
	return n;
}

/*
 * Shared walk: 64 words at a time through a mask of the non-zero ones
 * (@nzf), each non-zero word handed to @word (inlined per variant).
 * Returns through *done the index of the first word not consumed.
 */
#define WALK_NONZERO(nzf, word)                                                            \
	do {                                                                               \
		size_t n = 0;                                                              \
		for (size_t c = 0; c < nw; c += 64) {                                      \
			size_t cn = nw - c < 64 ? nw - c : 64;                             \
			for (uint64_t nz = nzf(w + c, cn); nz; nz &= nz - 1) {             \
				size_t i = c + (size_t)__builtin_ctzll(nz);                \
				uint64_t v = w[i];                                         \
				if (popc64(v) > cap - n) {                                 \
					*done = i;                                         \
					return n;                                          \
				}                                                          \
				n = word(v, base + 64 * (uint64_t)i, out, n, cap);         \
			}                                                                  \
		}                                                                          \
		*done = nw;                                                                \
		return n;                                                                  \
	} while (0)

static inline size_t word_tz(uint64_t v, uint64_t base, uint64_t *out, size_t n, size_t cap)
{
	(void)cap;
	return emit_tz(v, base, out, n);
}

static size_t extract_tzcnt(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
			    size_t cap, size_t *done)
{
	WALK_NONZERO(pgt_hal_nonzero_words, word_tz);
}

/* Byte value -> its set bit positions packed low to high (8 x u8). */
static uint64_t pos_table[256];

static void pos_table_init(void)
{
	for (unsigned b = 0; b < 256; b++) {
		uint64_t e = 0;
		unsigned k = 0;

		for (unsigned j = 0; j < 8; j++)
			if (b & (1u << j))
				e |= (uint64_t)j << (8 * k++);
		pos_table[b] = e;
	}
}

#if defined(__x86_64__)

#define TARGET_AVX2 __attribute__((target("avx2,bmi,bmi2,popcnt")))
#define TARGET_VBMI2 __attribute__((target("avx512f,avx512bw,avx512vbmi2,bmi,bmi2,popcnt")))

TARGET_AVX2 static inline uint64_t nonzero_avx2(const uint64_t *w, size_t n)
{
	uint64_t m = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		__m256i z = _mm256_cmpeq_epi64(_mm256_loadu_si256((const __m256i *)(w + i)),
					       _mm256_setzero_si256());
		m |= (uint64_t)(~_mm256_movemask_pd(_mm256_castsi256_pd(z)) & 15) << i;
	}
	for (; i < n; i++)
		m |= (uint64_t)(w[i] != 0) << i;
	return m;
}

/*
 * Each byte stores 8 indices (4 + 4 lanes) whatever its popcount: at most
 * 64 entries past n for the word, hence the cap - n >= 64 test; otherwise
 * (or for words with few bits) the per-bit loop, which writes exactly.
 */
TARGET_AVX2 static inline size_t word_avx2(uint64_t v, uint64_t base, uint64_t *out, size_t n,
					   size_t cap)
{
	if (popc64(v) < 8 || cap - n < 64)
		return emit_tz(v, base, out, n);
	for (unsigned k = 0; k < 8; k++, v >>= 8) {
		unsigned byte = (unsigned)(v & 0xff);
		__m128i p = _mm_cvtsi64_si128((long long)pos_table[byte]);
		__m256i b = _mm256_set1_epi64x((long long)(base + 8 * k));
		__m256i lo = _mm256_add_epi64(_mm256_cvtepu8_epi64(p), b);
		__m256i hi = _mm256_add_epi64(_mm256_cvtepu8_epi64(_mm_srli_si128(p, 4)), b);

		_mm256_storeu_si256((__m256i *)(out + n), lo);
		_mm256_storeu_si256((__m256i *)(out + n + 4), hi);
		n += popc64(byte);
	}
	return n;
}

TARGET_AVX2 static size_t extract_avx2(const uint64_t *w, size_t nw, uint64_t base,
				       uint64_t *out, size_t cap, size_t *done)
{
	WALK_NONZERO(nonzero_avx2, word_avx2);
}

/* Chunk @k (bytes 8k..8k+7) of the compressed positions, as 8 indices. */
TARGET_VBMI2 static inline void store_chunk(__m512i pos, unsigned k, __m512i b, uint64_t *o,
					    __mmask8 m)
{
	__m512i q = _mm512_permutexvar_epi64(_mm512_set1_epi64(k), pos);

	q = _mm512_add_epi64(_mm512_cvtepu8_epi64(_mm512_castsi512_si128(q)), b);
	_mm512_mask_storeu_epi64(o, m, q);
}

/*
 * Exact masked stores: nothing past the word's own indices is written.
 * Chunks 1..4 and 5..7 are taken in two steps so a density-0.5 word (about
 * 32 bits) takes one well-predicted branch, and a sparse word only chunk 0.
 */
TARGET_VBMI2 static inline size_t word_vbmi2(uint64_t v, uint64_t base, uint64_t *out, size_t n,
					     size_t cap)
{
	const __m512i iota = _mm512_set_epi8(
		63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,
		47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
		31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
		15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
	unsigned pc = popc64(v);
	uint64_t all = _bzhi_u64(~0ULL, pc);
	__m512i pos = _mm512_maskz_compress_epi8(v, iota);
	__m512i b = _mm512_set1_epi64((long long)base);

	(void)cap;
	store_chunk(pos, 0, b, out + n, (__mmask8)all);
	if (pc > 8) {
		for (unsigned k = 1; k < 5; k++)
			store_chunk(pos, k, b, out + n + 8 * k, (__mmask8)(all >> (8 * k)));
		if (pc > 40)
			for (unsigned k = 5; k < 8; k++)
				store_chunk(pos, k, b, out + n + 8 * k, (__mmask8)(all >> (8 * k)));
	}
	return n + pc;
}

TARGET_VBMI2 static size_t extract_vbmi2(const uint64_t *w, size_t nw, uint64_t base,
					 uint64_t *out, size_t cap, size_t *done)
{
	WALK_NONZERO(pgt__nonzero_avx512, word_vbmi2);
}

/* CPUID for the instructions, XCR0 for the kernel saving the registers. */
static uint32_t iter_detect(void)
{
	unsigned a, b, c, d;
	uint32_t lv = 1u << PGT_ITER_SCALAR | 1u << PGT_ITER_TZCNT;
	uint64_t xcr0;
	bool popcnt;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return lv;
	popcnt = c & (1u << 23);
	if (!(c & (1u << 27)) || !(c & (1u << 28)) || !popcnt)   /* OSXSAVE, AVX */
		return lv;
	xcr0 = pgt__arch_xcr0();
	if ((xcr0 & 0x6) != 0x6 || __get_cpuid_max(0, NULL) < 7)
		return lv;
	__cpuid_count(7, 0, a, b, c, d);
	if (!(b & (1u << 3)) || !(b & (1u << 8)))                /* BMI1, BMI2 */
		return lv;
	if (b & (1u << 5))                                       /* AVX2 */
		lv |= 1u << PGT_ITER_AVX2;
	if ((b & (1u << 16)) && (b & (1u << 30)) && (c & (1u << 6)) &&  /* F, BW, VBMI2 */
	    (xcr0 & 0xe6) == 0xe6)
		lv |= 1u << PGT_ITER_AVX512_VBMI2;
	return lv;
}

#elif defined(__aarch64__)

/*
 * As word_avx2: each byte stores 8 indices whatever its popcount, so at
 * most 64 entries past n for the word (the cap - n >= 64 test); words with
 * few bits, or too little room, take the per-bit loop.
 */
static inline size_t word_neon(uint64_t v, uint64_t base, uint64_t *out, size_t n, size_t cap)
{
	if (popc64(v) < 8 || cap - n < 64)
		return emit_tz(v, base, out, n);
	for (unsigned k = 0; k < 8; k++, v >>= 8) {
		unsigned byte = (unsigned)(v & 0xff);
		uint16x8_t p16 = vmovl_u8(vcreate_u8(pos_table[byte]));
		uint32x4_t lo = vmovl_u16(vget_low_u16(p16)), hi = vmovl_u16(vget_high_u16(p16));
		uint64x2_t b = vdupq_n_u64(base + 8 * k);

		vst1q_u64(out + n, vaddq_u64(vmovl_u32(vget_low_u32(lo)), b));
		vst1q_u64(out + n + 2, vaddq_u64(vmovl_u32(vget_high_u32(lo)), b));
		vst1q_u64(out + n + 4, vaddq_u64(vmovl_u32(vget_low_u32(hi)), b));
		vst1q_u64(out + n + 6, vaddq_u64(vmovl_u32(vget_high_u32(hi)), b));
		n += popc64(byte);
	}
	return n;
}

static size_t extract_neon(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
			   size_t cap, size_t *done)
{
	WALK_NONZERO(pgt_hal_nonzero_words, word_neon);
}

/* Advanced SIMD is mandatory in the AArch64 Linux ABI. */
static uint32_t iter_detect(void)
{
	return 1u << PGT_ITER_SCALAR | 1u << PGT_ITER_TZCNT | 1u << PGT_ITER_NEON;
}

#else

static uint32_t iter_detect(void)
{
	return 1u << PGT_ITER_SCALAR | 1u << PGT_ITER_TZCNT;
}

#endif

/* ---- dispatch -------------------------------------------------------- */

static const char *const iter_names[] = {
	[PGT_ITER_SCALAR] = "scalar",
	[PGT_ITER_TZCNT] = "tzcnt",
	[PGT_ITER_AVX2] = "avx2",
	[PGT_ITER_AVX512_VBMI2] = "avx512-vbmi2",
	[PGT_ITER_NEON] = "neon",
};

static size_t extract_resolve(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
			      size_t cap, size_t *done);

/* As in hal/simd.c: the code a pointer names never changes, so relaxed
 * loads suffice; a thread still seeing the resolver goes through
 * pthread_once, which orders it after the installation. */
static _Atomic(extract_fn) extract_ptr = extract_resolve;
static _Atomic(int) extract_level = -1;
static pthread_once_t iter_once = PTHREAD_ONCE_INIT;
static uint32_t iter_levels;

static extract_fn level_fn(int level)
{
	switch (level) {
#if defined(__x86_64__)
	case PGT_ITER_AVX2:
		return extract_avx2;
	case PGT_ITER_AVX512_VBMI2:
		return extract_vbmi2;
#elif defined(__aarch64__)
	case PGT_ITER_NEON:
		return extract_neon;
#endif
	case PGT_ITER_TZCNT:
		return extract_tzcnt;
	default:
		return pgt__hal_bits_extract_scalar;
	}
}

static void iter_install(int level)
{
	atomic_store_explicit(&extract_level, level, memory_order_relaxed);
	atomic_store_explicit(&extract_ptr, level_fn(level), memory_order_relaxed);
}

static void iter_init(void)
{
	pos_table_init();
	iter_levels = iter_detect();
	iter_install(31 - __builtin_clz(iter_levels));
}

static size_t extract_resolve(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out,
			      size_t cap, size_t *done)
{
	pthread_once(&iter_once, iter_init);
	return atomic_load_explicit(&extract_ptr, memory_order_relaxed)(w, nw, base, out, cap, done);
}

size_t pgt_hal_bits_extract(const uint64_t *words, size_t nwords, uint64_t base, uint64_t *out,
			    size_t cap, size_t *done)
{
	if (!nwords) {
		*done = 0;
		return 0;
	}
	return atomic_load_explicit(&extract_ptr, memory_order_relaxed)(words, nwords, base, out,
									cap, done);
}

uint32_t pgt__hal_iter_available(void)
{
	pthread_once(&iter_once, iter_init);
	return iter_levels;
}

int pgt__hal_iter_force(int level)
{
	pthread_once(&iter_once, iter_init);
	if (level < 0 || level >= PGT_ITER_NLEVELS)
		return -EINVAL;
	if (!(iter_levels & (1u << level)))
		return -ENOTSUP;
	iter_install(level);
	return 0;
}

const char *pgt__hal_iter_impl(void)
{
	pthread_once(&iter_once, iter_init);
	return iter_names[atomic_load_explicit(&extract_level, memory_order_relaxed)];
}
