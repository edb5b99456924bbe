/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of 4 KiB blocks: the
 * fingerprint sub-page refinement keeps per 4 KiB piece of a 2 MiB page.
 *
 * Implementations (picked once at run time, the fastest the CPU has; test
 * hooks force any by name): the scalar table reference; the CRC instruction
 * (SSE4.2 crc32q / ARMv8 CRC) in three interleaved streams; carry-less
 * multiply folding (below) with PCLMULQDQ, VPCLMULQDQ on AVX2 ymm or on
 * AVX-512 zmm, or arm64 PMULL. All give CRC32C bit for bit. On the
 * development EPYC, one core, 4 KiB blocks: scalar 0.5 GB/s, sse4.2 30 GB/s
 * from cache (15-27 streaming), pclmul 15, vpclmul-avx2 29 (27.5
 * streaming), vpclmul-avx512 57 from cache and 44-48 streaming. PMULL is
 * only checked for equality (qemu-user); not timed on arm64 hardware.
 *
 * Why CRC32C and not a 64-bit multiply-accumulate hash (xxh3-like): such a
 * hash accumulates at ~140 GB/s from cache with AVX-512 here, but
 * refinement reads each dirty page once from memory, and the folding CRC
 * already hashes at streaming-read speed (~30 GB/s over the bench's dirty
 * hugepages): the faster hash would save time only on the ~10 % of the data
 * re-hashed from cache when copied. CRC32C keeps 4 B per piece (0.098 % of
 * memory; a 64-bit hash doubles it to 0.195 %, at the 0.2 % bound), its
 * guarantees, and the existing reference vectors. Collision probability: a
 * changed 4 KiB piece keeps its CRC32C with probability 2^-32 (about
 * 2.3e-10) for changes that are not bursts of <= 32 bits, which CRC32C
 * always detects; a consumer that needs certainty uses the full-compare
 * (shadow copy) mode of refinement.
 *
 * Three streams over a 4 KiB block: bytes [0, L), [L, 2L), [2L, 3L) with
 * L = 1360, then the last 16 bytes serially. The raw (not inverted) CRC
 * register is linear, so crc(A|B|C) = shift(crc(A), 2L) ^ shift(crc0(B), L) ^
 * crc0(C), where shift(x, n) is the register after n zero bytes: two
 * 4 x 256 tables per shift, built once from the scalar reference.
 */
#include "hal/hal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#define POLY 0x82F63B78u
#define BLK 4096u
#define LANE 1360u /* 3 * 1360 = 4080: 170 words a lane, 16 bytes left */

typedef uint32_t (*crc_fn)(uint32_t crc, const void *p, size_t len);
typedef void (*crc4k_fn)(const void *p, size_t n, uint32_t *out);
typedef uint32_t (*copy4k_fn)(void *dst, const void *src);

static uint32_t byte_tab[256];
/* shift by LANE bytes ([0]) and by 2 * LANE bytes ([1]), per input byte */
static uint32_t shift_tab[2][4][256];
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

static void make_byte_tab(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		byte_tab[i] = c;
	}
}

/* Raw register update, no pre/post inversion. */
static uint32_t raw_scalar(uint32_t c, const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		c = byte_tab[(c ^ s[i]) & 0xff] ^ (c >> 8);
	return c;
}

static uint32_t raw_zeros(uint32_t c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		c = byte_tab[c & 0xff] ^ (c >> 8);
	return c;
}

static void make_tabs(void)
{
	uint32_t basis[2][32];

	make_byte_tab();
	for (int s = 0; s < 2; s++)
		for (int b = 0; b < 32; b++)
			basis[s][b] = raw_zeros(1u << b, (size_t)LANE * (size_t)(s + 1));
	/* linear in the register: each table entry is the XOR of its bits' images */
	for (int s = 0; s < 2; s++)
		for (int byte = 0; byte < 4; byte++)
			for (uint32_t v = 0; v < 256; v++) {
				uint32_t x = 0;

				for (int b = 0; b < 8; b++)
					if (v & (1u << b))
						x ^= basis[s][byte * 8 + b];
				shift_tab[s][byte][v] = x;
			}
}

static inline void tabs(void)
{
	pthread_once(&tab_once, make_tabs);
}

static inline uint32_t shift(int s, uint32_t x)
{
	return shift_tab[s][0][x & 0xff] ^ shift_tab[s][1][(x >> 8) & 0xff] ^
	       shift_tab[s][2][(x >> 16) & 0xff] ^ shift_tab[s][3][x >> 24];
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* ---- scalar reference ------------------------------------------------ */

uint32_t pgt__hal_crc32c_scalar(uint32_t crc, const void *p, size_t len)
{
	tabs();
	return ~raw_scalar(~crc, p, len);
}

static void crc4k_scalar(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = ~raw_scalar(~0u, s, BLK);
}

/* ---- hardware: the CRC instruction ---------------------------------- */
#if defined(__x86_64__)
#define TARGET_HW __attribute__((target("sse4.2")))
#define HW_U64(c, v) ((uint32_t)_mm_crc32_u64((c), (v)))
#define HW_U8(c, v) _mm_crc32_u8((c), (v))
#define HAVE_HW 1
#define HW_NAME "sse4.2"
static bool hw_detect(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 20));
}
#elif defined(__aarch64__)
#define TARGET_HW __attribute__((target("+crc")))
#define HW_U64(c, v) __crc32cd((c), (v))
#define HW_U8(c, v) __crc32cb((c), (v))
#define HAVE_HW 1
#define HW_NAME "armv8-crc"
static bool hw_detect(void)
{
	return getauxval(AT_HWCAP) & HWCAP_CRC32;
}
#endif

#ifdef HAVE_HW
TARGET_HW static uint32_t raw_hw(uint32_t c, const uint8_t *s, size_t len)
{
	for (; len >= 8; s += 8, len -= 8)
		c = HW_U64(c, load64(s));
	for (; len; s++, len--)
		c = HW_U8(c, *s);
	return c;
}

static uint32_t crc_hw(uint32_t crc, const void *p, size_t len)
{
	return ~raw_hw(~crc, p, len);
}

/* One 4 KiB block, three independent dependency chains. */
TARGET_HW static uint32_t block_hw(const uint8_t *s)
{
	uint32_t a = ~0u, b = 0, c = 0;

	for (unsigned i = 0; i < LANE; i += 8) {
		/*
		 * Three short streams per block defeat the hardware prefetcher
		 * at every 4 KiB boundary: fetch the next block's lines while
		 * this one is hashed (harmless past the end of the data: a
		 * prefetch never faults).
		 */
		if (!(i & 63)) {
			__builtin_prefetch(s + BLK + i);
			__builtin_prefetch(s + BLK + LANE + i);
			__builtin_prefetch(s + BLK + 2 * LANE + i);
		}
		a = HW_U64(a, load64(s + i));
		b = HW_U64(b, load64(s + LANE + i));
		c = HW_U64(c, load64(s + 2 * LANE + i));
	}
	a = shift(1, a) ^ shift(0, b) ^ c;
	a = HW_U64(a, load64(s + 3 * LANE));
	a = HW_U64(a, load64(s + 3 * LANE + 8));
	return ~a;
}

static void crc4k_hw(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = block_hw(s);
}
#endif

/*
 * ---- hardware: carry-less multiply folding ------------------------------
 *
 * Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 * Instruction" (Gopal et al., 2009), bit-reflected form. A 16-byte chunk
 * L = L_lo * x^64 + L_hi (L_lo its first 8 bytes) that lies D bits before
 * another 16-byte chunk contributes L * x^D to the message; modulo P that is
 *   clmul(L_lo, K(D + 32)) ^ clmul(L_hi, K(D - 32)),
 * where K(n) = reflect32(x^n mod P) << 1: the extra x^32 of a reflected
 * 64 x 33-bit product is what the -32 / +32 take back, and the result (at
 * most 127 bits) is a 16-byte chunk at the other one's place. XORing it in
 * leaves the CRC unchanged, so a block is folded down to 16 bytes with the
 * same CRC, and the CRC instruction finishes those 16 bytes (no Barrett
 * step: every CPU with PCLMULQDQ or PMULL here also has the CRC
 * instructions). The initial ~0 register is XORed into the block's first
 * 4 bytes. The constants are computed in make_fold() from the polynomial;
 * none is copied from elsewhere.
 */
enum { F128, F256, F384, F512, F1024, F1536, F2048, NFOLD };
static const unsigned fold_bits[NFOLD] = { 128, 256, 384, 512, 1024, 1536, 2048 };
/* [d][0] for the first (low) 8 bytes of a chunk, [d][1] for the last 8 */
static uint64_t fold_k[NFOLD][2];

/* reflect32(x^n mod P) << 1 */
static uint64_t xpow_k(unsigned n)
{
	uint32_t v = 0x80000000u;       /* x^0 in reflected order */

	while (n--)
		v = v & 1 ? (v >> 1) ^ POLY : v >> 1;
	return (uint64_t)v << 1;
}

static void make_fold(void)
{
	for (int d = 0; d < NFOLD; d++) {
		fold_k[d][0] = xpow_k(fold_bits[d] + 32);
		fold_k[d][1] = xpow_k(fold_bits[d] - 32);
	}
}

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_CLMUL __attribute__((target("sse4.2,pclmul")))
#define TARGET_VCLMUL __attribute__((target("sse4.2,pclmul,avx512f,avx512bw,vpclmulqdq")))

static bool clmul_detect(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 20)) && (c & (1u << 1));
}

/*
 * VPCLMULQDQ (CPUID.7.0:ECX bit 10) with the leaf-7 EBX features @ebx7 and
 * the register state @xcr0 the kernel must save (OSXSAVE first).
 */
static bool vclmul_with(unsigned ebx7, uint64_t xcr0)
{
	unsigned a, b, c, d;

	if (!clmul_detect() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
		return false;
	if ((pgt__arch_xcr0() & xcr0) != xcr0)
		return false;
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & ebx7) == ebx7 && (c & (1u << 10));
}

/* AVX-512F and BW; the kernel saves the SSE, AVX, opmask and ZMM states. */
static bool vclmul_detect(void)
{
	return vclmul_with(1u << 16 | 1u << 30, 0xe6);
}

TARGET_CLMUL static inline __m128i kv(int d)
{
	return _mm_set_epi64x((long long)fold_k[d][1], (long long)fold_k[d][0]);
}

TARGET_CLMUL static inline __m128i fold16(__m128i a, int d, __m128i into)
{
	__m128i k = kv(d);

	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00),
					   _mm_clmulepi64_si128(a, k, 0x11)), into);
}

/* Four 16-byte chunks in a row (x0 first) to the CRC of the block. */
TARGET_CLMUL static inline uint32_t finish4(__m128i x0, __m128i x1, __m128i x2, __m128i x3)
{
	uint64_t c;

	x3 = fold16(x0, F384, fold16(x1, F256, fold16(x2, F128, x3)));
	c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x3));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x3, 1));
	return ~(uint32_t)c;
}

/* PCLMULQDQ: four 16-byte accumulators, 64 bytes a step. */
TARGET_CLMUL static uint32_t block_clmul(const uint8_t *s)
{
	const __m128i *p = (const __m128i *)(const void *)s;
	__m128i x0 = _mm_xor_si128(_mm_loadu_si128(p), _mm_cvtsi32_si128(-1));
	__m128i x1 = _mm_loadu_si128(p + 1), x2 = _mm_loadu_si128(p + 2);
	__m128i x3 = _mm_loadu_si128(p + 3);

	for (unsigned i = 4; i < BLK / 16; i += 4) {
		x0 = fold16(x0, F512, _mm_loadu_si128(p + i));
		x1 = fold16(x1, F512, _mm_loadu_si128(p + i + 1));
		x2 = fold16(x2, F512, _mm_loadu_si128(p + i + 2));
		x3 = fold16(x3, F512, _mm_loadu_si128(p + i + 3));
	}
	return finish4(x0, x1, x2, x3);
}

static void crc4k_clmul(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = block_clmul(s);
}

/* AVX2 + VPCLMULQDQ (CPUs with VPCLMULQDQ on ymm but no AVX-512). */
#define TARGET_YCLMUL __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))

/* AVX2; SSE and AVX state saved. */
static bool yclmul_detect(void)
{
	return vclmul_with(1u << 5, 0x6);
}

TARGET_YCLMUL static inline __m256i fold32(__m256i a, int d, __m256i into)
{
	__m256i k = _mm256_broadcastsi128_si256(kv(d));

	return _mm256_xor_si256(_mm256_xor_si256(_mm256_clmulepi64_epi128(a, k, 0x00),
						 _mm256_clmulepi64_epi128(a, k, 0x11)), into);
}

/* Four 32-byte accumulators, 128 bytes a step (fold by 1024 bits). */
TARGET_YCLMUL static uint32_t block_yclmul(const uint8_t *s)
{
	__m256i y[4];
	__m128i x;
	uint64_t c;

	for (unsigned l = 0; l < 4; l++)
		y[l] = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32 * l));
	y[0] = _mm256_xor_si256(y[0], _mm256_castsi128_si256(_mm_cvtsi32_si128(-1)));
	for (unsigned i = 128; i < BLK; i += 128) {
		_mm_prefetch((const char *)s + BLK + i - 128, _MM_HINT_T0);
		_mm_prefetch((const char *)s + BLK + i - 64, _MM_HINT_T0);
		for (unsigned l = 0; l < 4; l++)
			y[l] = fold32(y[l], F1024,
				      _mm256_loadu_si256((const __m256i *)(const void *)(s + i + 32 * l)));
	}
	y[3] = fold32(y[1], F512, y[3]);
	y[3] = fold32(fold32(y[0], F512, y[2]), F256, y[3]);
	x = fold16(_mm256_castsi256_si128(y[3]), F128, _mm256_extracti128_si256(y[3], 1));
	c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
	return ~(uint32_t)c;
}

static void crc4k_yclmul(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = block_yclmul(s);
}

TARGET_VCLMUL static inline __m512i fold64(__m512i a, int d, __m512i into)
{
	__m512i k = _mm512_broadcast_i32x4(kv(d));

	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00),
					 _mm512_clmulepi64_epi128(a, k, 0x11), into, 0x96);
}

/* VPCLMULQDQ on zmm: four 64-byte accumulators (16 chunks), 256 bytes a step. */
TARGET_VCLMUL static uint32_t block_vclmul(const uint8_t *s)
{
	__m512i z0 = _mm512_loadu_si512(s), z1 = _mm512_loadu_si512(s + 64);
	__m512i z2 = _mm512_loadu_si512(s + 128), z3 = _mm512_loadu_si512(s + 192);

	z0 = _mm512_xor_si512(z0, _mm512_castsi128_si512(_mm_cvtsi32_si128(-1)));
	for (unsigned i = 256; i < BLK; i += 256) {
		/* the next block, a step ahead (a prefetch never faults) */
		for (unsigned l = 0; l < 256; l += 64)
			_mm_prefetch((const char *)s + BLK + i - 256 + l, _MM_HINT_T0);
		z0 = fold64(z0, F2048, _mm512_loadu_si512(s + i));
		z1 = fold64(z1, F2048, _mm512_loadu_si512(s + i + 64));
		z2 = fold64(z2, F2048, _mm512_loadu_si512(s + i + 128));
		z3 = fold64(z3, F2048, _mm512_loadu_si512(s + i + 192));
	}
	z3 = fold64(z0, F1536, fold64(z1, F1024, fold64(z2, F512, z3)));
	return finish4(_mm512_extracti32x4_epi32(z3, 0), _mm512_extracti32x4_epi32(z3, 1),
		       _mm512_extracti32x4_epi32(z3, 2), _mm512_extracti32x4_epi32(z3, 3));
}

/*
 * One pass: each 64 bytes is loaded once, stored to @dst and folded from the
 * same register, so the CRC describes exactly the bytes the copy holds even
 * if @src changes meanwhile (a guest writing).
 */
TARGET_VCLMUL static uint32_t copy4k_vclmul(void *dst, const void *src)
{
	const uint8_t *s = src;
	uint8_t *d = dst;
	__m512i z[4];

	for (unsigned l = 0; l < 4; l++) {
		z[l] = _mm512_loadu_si512(s + 64 * l);
		_mm512_storeu_si512(d + 64 * l, z[l]);
	}
	z[0] = _mm512_xor_si512(z[0], _mm512_castsi128_si512(_mm_cvtsi32_si128(-1)));
	for (unsigned i = 256; i < BLK; i += 256)
		for (unsigned l = 0; l < 4; l++) {
			__m512i x = _mm512_loadu_si512(s + i + 64 * l);

			_mm512_storeu_si512(d + i + 64 * l, x);
			z[l] = fold64(z[l], F2048, x);
		}
	z[3] = fold64(z[0], F1536, fold64(z[1], F1024, fold64(z[2], F512, z[3])));
	return finish4(_mm512_extracti32x4_epi32(z[3], 0), _mm512_extracti32x4_epi32(z[3], 1),
		       _mm512_extracti32x4_epi32(z[3], 2), _mm512_extracti32x4_epi32(z[3], 3));
}

static void crc4k_vclmul(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = block_vclmul(s);
}

#elif defined(__aarch64__)
#include <arm_neon.h>

#ifndef HWCAP_PMULL
#define HWCAP_PMULL (1 << 4)
#endif
#define TARGET_PMULL __attribute__((target("+crc+crypto")))

static bool pmull_detect(void)
{
	unsigned long hw = getauxval(AT_HWCAP);

	return (hw & HWCAP_PMULL) && (hw & HWCAP_CRC32);
}

TARGET_PMULL static inline uint64x2_t fold16(uint64x2_t a, int d, uint64x2_t into)
{
	poly64x2_t k = vreinterpretq_p64_u64(vld1q_u64(fold_k[d]));
	poly128_t lo = vmull_p64((poly64_t)vgetq_lane_u64(a, 0), (poly64_t)fold_k[d][0]);
	poly128_t hi = vmull_high_p64(vreinterpretq_p64_u64(a), k);

	return veorq_u64(veorq_u64(vreinterpretq_u64_p128(lo), vreinterpretq_u64_p128(hi)), into);
}

/* PMULL: four 16-byte accumulators, 64 bytes a step. */
TARGET_PMULL static uint32_t block_pmull(const uint8_t *s)
{
	uint64x2_t x0 = vld1q_u64((const uint64_t *)(const void *)s);
	uint64x2_t x1 = vld1q_u64((const uint64_t *)(const void *)(s + 16));
	uint64x2_t x2 = vld1q_u64((const uint64_t *)(const void *)(s + 32));
	uint64x2_t x3 = vld1q_u64((const uint64_t *)(const void *)(s + 48));
	uint32_t c;

	x0 = veorq_u64(x0, vsetq_lane_u64(0xffffffffu, vdupq_n_u64(0), 0));
	for (unsigned i = 64; i < BLK; i += 64) {
		x0 = fold16(x0, F512, vld1q_u64((const uint64_t *)(const void *)(s + i)));
		x1 = fold16(x1, F512, vld1q_u64((const uint64_t *)(const void *)(s + i + 16)));
		x2 = fold16(x2, F512, vld1q_u64((const uint64_t *)(const void *)(s + i + 32)));
		x3 = fold16(x3, F512, vld1q_u64((const uint64_t *)(const void *)(s + i + 48)));
	}
	x3 = fold16(x0, F384, fold16(x1, F256, fold16(x2, F128, x3)));
	c = __crc32cd(0, vgetq_lane_u64(x3, 0));
	c = __crc32cd(c, vgetq_lane_u64(x3, 1));
	return ~c;
}

static void crc4k_pmull(const void *p, size_t n, uint32_t *out)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++, s += BLK)
		out[i] = block_pmull(s);
}
#endif

/* ---- dispatch -------------------------------------------------------- */

static bool always(void)
{
	return true;
}

/* Copy, then hash the copy (hot in L1) with the same implementation. */
#define COPY_THEN(fn4k)                                                 \
	static uint32_t copy_##fn4k(void *dst, const void *src)         \
	{                                                               \
		uint32_t c;                                             \
									\
		memcpy(dst, src, BLK);                                  \
		fn4k(dst, 1, &c);                                       \
		return c;                                               \
	}
COPY_THEN(crc4k_scalar)
#ifdef HAVE_HW
COPY_THEN(crc4k_hw)
#endif
#if defined(__x86_64__)
COPY_THEN(crc4k_clmul)
COPY_THEN(crc4k_yclmul)
#elif defined(__aarch64__)
COPY_THEN(crc4k_pmull)
#endif

/*
 * Every implementation, least preferred first; the last one the CPU has is
 * picked. PCLMULQDQ folding on 16-byte lanes needs two multiplies per 16
 * bytes and ran at half the speed of the 3-way crc32q on the development
 * EPYC (15 vs 30 GB/s from cache, eight accumulators no better than four),
 * so it ranks below the CRC instruction (which it needs anyway to finish):
 * kept, tested, and there to force; VPCLMULQDQ does four lanes a multiply.
 */
static const struct crc_impl {
	const char *name;
	bool (*detect)(void);
	crc_fn fn;                  /* byte API */
	crc4k_fn fn4k;              /* 4 KiB blocks */
	copy4k_fn copy4k;           /* copy a 4 KiB block, CRC of the copy */
} impls[] = {
	{ "scalar", always, pgt__hal_crc32c_scalar, crc4k_scalar, copy_crc4k_scalar },
#if defined(__x86_64__)
	{ "pclmul", clmul_detect, crc_hw, crc4k_clmul, copy_crc4k_clmul },
#endif
#ifdef HAVE_HW
	{ HW_NAME, hw_detect, crc_hw, crc4k_hw, copy_crc4k_hw },
#endif
#if defined(__x86_64__)
	{ "vpclmul-avx2", yclmul_detect, crc_hw, crc4k_yclmul, copy_crc4k_yclmul },
	{ "vpclmul-avx512", vclmul_detect, crc_hw, crc4k_vclmul, copy4k_vclmul },
#elif defined(__aarch64__)
	{ "pmull", pmull_detect, crc_hw, crc4k_pmull, copy_crc4k_pmull },
#endif
};
#define NIMPL (sizeof(impls) / sizeof(impls[0]))

static const struct crc_impl *cur;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

static const struct crc_impl *best(void)
{
	for (size_t i = NIMPL; i-- > 1;)
		if (impls[i].detect())
			return &impls[i];
	return &impls[0];
}

static void pick(void)
{
	tabs();
	make_fold();
	cur = best();
}

uint32_t pgt_hal_crc32c(uint32_t crc, const void *p, size_t len)
{
	pthread_once(&pick_once, pick);
	return cur->fn(crc, p, len);
}

void pgt_hal_crc32c_4k(const void *p, size_t nblocks, uint32_t *out)
{
	pthread_once(&pick_once, pick);
	cur->fn4k(p, nblocks, out);
}

uint32_t pgt_hal_crc32c_4k_copy(void *dst, const void *src)
{
	pthread_once(&pick_once, pick);
	return cur->copy4k(dst, src);
}

void pgt__hal_crc32c_4k_scalar(const void *p, size_t nblocks, uint32_t *out)
{
	tabs();
	crc4k_scalar(p, nblocks, out);
}

const char *pgt__hal_crc_impl(void)
{
	pthread_once(&pick_once, pick);
	return cur->name;
}

const char *pgt__hal_crc_impl_name(unsigned i)
{
	return i < NIMPL ? impls[i].name : NULL;
}

int pgt__hal_crc_force_name(const char *name)
{
	pthread_once(&pick_once, pick);
	for (size_t i = 0; name && i < NIMPL; i++)
		if (!strcmp(impls[i].name, name)) {
			if (!impls[i].detect())
				return -ENOTSUP;
			cur = &impls[i];
			return 0;
		}
	return -EINVAL;
}

int pgt__hal_crc_force(bool hw)
{
	const struct crc_impl *b;

	pthread_once(&pick_once, pick);
	if (!hw) {
		cur = &impls[0];
		return 0;
	}
	b = best();
	if (b == &impls[0])
		return -ENOTSUP;
	cur = b;
	return 0;
}
