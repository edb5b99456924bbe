/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of 4 KiB blocks: the
 * fingerprint sub-page refinement keeps per 4 KiB piece of a 2 MiB page.
 *
 * Why CRC32C and not a 64-bit hash: both x86 (SSE4.2 crc32) and ARMv8 (the
 * CRC extension, mandatory from v8.1) compute it at about one 8-byte word per
 * cycle and stream; with three interleaved streams the instruction latency
 * (3 cycles) is hidden and one core hashes faster than it streams memory, so
 * a 64-bit hash cannot be faster where memory is the limit (bench refine
 * prints the ratio). Collision probability: a changed 4 KiB piece keeps its
 * CRC32C with probability 2^-32 (about 2.3e-10) for changes that are not
 * bursts of <= 32 bits, which CRC32C always detects; a consumer that needs
 * certainty uses the full-compare (shadow copy) mode of refinement.
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

/* ---- hardware -------------------------------------------------------- */
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
#else
static bool hw_detect(void)
{
	return false;
}
#endif

/* ---- dispatch -------------------------------------------------------- */

static crc_fn crc_impl;
static crc4k_fn crc4k_impl;
static const char *crc_name = "scalar";
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

static void pick(void)
{
	tabs();
	crc_impl = pgt__hal_crc32c_scalar;
	crc4k_impl = crc4k_scalar;
#ifdef HAVE_HW
	if (hw_detect()) {
		crc_impl = crc_hw;
		crc4k_impl = crc4k_hw;
		crc_name = HW_NAME;
	}
#else
	(void)hw_detect;
#endif
}

uint32_t pgt_hal_crc32c(uint32_t crc, const void *p, size_t len)
{
	pthread_once(&pick_once, pick);
	return crc_impl(crc, p, len);
}

void pgt_hal_crc32c_4k(const void *p, size_t nblocks, uint32_t *out)
{
	pthread_once(&pick_once, pick);
	crc4k_impl(p, nblocks, out);
}

void pgt__hal_crc32c_4k_scalar(const void *p, size_t nblocks, uint32_t *out)
{
	tabs();
	crc4k_scalar(p, nblocks, out);
}

const char *pgt__hal_crc_impl(void)
{
	pthread_once(&pick_once, pick);
	return crc_name;
}

int pgt__hal_crc_force(bool hw)
{
	pthread_once(&pick_once, pick);
	if (!hw) {
		crc_impl = pgt__hal_crc32c_scalar;
		crc4k_impl = crc4k_scalar;
		crc_name = "scalar";
		return 0;
	}
#ifdef HAVE_HW
	if (hw_detect()) {
		crc_impl = crc_hw;
		crc4k_impl = crc4k_hw;
		crc_name = HW_NAME;
		return 0;
	}
#endif
	return -ENOTSUP;
}
