/* SPDX-License-Identifier: MIT */
/*
 * HAL: host facts, the cycle counter, and every SIMD implementation of the
 * zero check, popcount and OR-merge against plain reference loops.
 *
 * Each SIMD level is its own test so a level the CPU lacks shows up as a
 * skip with the reason, never as a silent pass.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/testutil.h"
#include "hal/hal.h"
#include "pgtrack/probe.h"

#define SMALL_MAX 300                   /* lengths 0..SMALL_MAX at every alignment */
#define POP_MAX 300                     /* words */
#define BIG (2u << 20)
#define GUARD 0xa5

struct level {
	const char *name;
	uint32_t force;                 /* argument for pgt__hal_force_simd() */
	const char *popcount_impl;      /* expected popcount implementation, or NULL */
};

enum { L_SCALAR, L_SSE2, L_AVX2, L_AVX512BW, L_AVX512_VPOPCNTDQ, L_NEON };

static const struct level levels[] = {
	[L_SCALAR] = { "scalar", 0, "scalar" },
	[L_SSE2] = { "sse2", PGT_SIMD_SSE2, "sse2" },
	[L_AVX2] = { "avx2", PGT_SIMD_AVX2, "avx2" },
	[L_AVX512BW] = { "avx512bw", PGT_SIMD_AVX512 | PGT__SIMD_NO_VPOPCNTDQ, "avx512bw" },
	[L_AVX512_VPOPCNTDQ] = { "avx512-vpopcntdq", PGT_SIMD_AVX512, "avx512-vpopcntdq" },
	[L_NEON] = { "neon", PGT_SIMD_NEON, "neon" },
};

static uint64_t seed;

static bool ref_is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static uint64_t ref_popcount(const uint64_t *w, size_t n)
{
	uint64_t c = 0;

	for (size_t i = 0; i < n; i++)
		for (uint64_t x = w[i]; x; x &= x - 1)
			c++;
	return c;
}

static uint32_t best_level(void)
{
	uint32_t a = pgt_hal_simd_available();

	if (a & PGT_SIMD_AVX512)
		return PGT_SIMD_AVX512;
	if (a & PGT_SIMD_AVX2)
		return PGT_SIMD_AVX2;
	if (a & PGT_SIMD_SSE2)
		return PGT_SIMD_SSE2;
	return a & PGT_SIMD_NEON;
}

static void *xalloc(size_t align, size_t size)
{
	void *p = aligned_alloc(align, size);

	assert_non_null(p);
	return p;
}

/*
 * Select @l's implementation or skip with the reason. The forced level
 * stays until the teardown puts the default back.
 */
static void use_level(const struct level *l, bool for_popcount)
{
	int rc = pgt__hal_force_simd(l->force);

	if (rc == -ENOTSUP)
		pgt_skip("%s: CPU lacks it (available mask 0x%x)", l->name, pgt_hal_simd_available());
	assert_int_equal(rc, 0);
	if (for_popcount && strcmp(pgt__hal_popcount_impl(), l->popcount_impl))
		pgt_skip("%s: CPU lacks AVX512-VPOPCNTDQ (using %s)", l->name, pgt__hal_popcount_impl());
	pgt_test_note("%s: is_zero=%s popcount=%s", l->name, pgt__hal_is_zero_impl(),
		      pgt__hal_popcount_impl());
}

static int restore_default(void **state)
{
	(void)state;
	return pgt__hal_force_simd(best_level());
}

/* ---- first: concurrent first use -------------------------------------- */

struct first_use {
	uint64_t hz;
	bool zero;
	uint64_t bits;
	const char *impl;
};

static uint64_t ones[64];
static uint8_t zeros[4096];

static void *first_use_thread(void *arg)
{
	struct first_use *r = arg;

	r->zero = pgt_hal_is_zero(zeros, sizeof(zeros));
	r->bits = pgt_hal_popcount(ones, 64);
	r->hz = pgt_hal_cycles_per_sec();
	r->impl = pgt__hal_is_zero_impl();
	return NULL;
}

/* Must run before anything else in this process touches the HAL. */
static void test_concurrent_first_use(void **state)
{
	struct first_use r[4];
	pthread_t t[4];

	(void)state;
	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, first_use_thread, &r[i]), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < 4; i++) {
		assert_true(r[i].zero);
		assert_int_equal(r[i].bits, 64 * 64);
		assert_int_equal(r[i].hz, r[0].hz);
		assert_string_equal(r[i].impl, r[0].impl);
	}
	pgt_test_note("default: is_zero=%s popcount=%s", pgt__hal_is_zero_impl(),
		      pgt__hal_popcount_impl());
}

/* ---- host facts -------------------------------------------------------- */

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void test_page_size(void **state)
{
	uint64_t ps = pgt_hal_page_size();

	(void)state;
	assert_int_equal(ps, (uint64_t)sysconf(_SC_PAGESIZE));
	assert_true(pow2(ps));
	assert_true(ps >= 4096);
	assert_int_equal(pgt_hal_page_size(), ps);
}

static void test_cacheline(void **state)
{
	unsigned cl = pgt_hal_cacheline();

	(void)state;
	pgt_test_note("cache line %u bytes", cl);
	assert_true(pow2(cl));
	assert_in_range(cl, 16, 1024);
	assert_int_equal(pgt_hal_cacheline(), cl);
}

static void test_hugepage_sizes(void **state)
{
	uint64_t sizes[16], one;
	int n, i;

	(void)state;
	n = pgt_hal_hugepage_sizes(sizes, 16);
	assert_true(n >= 0 && n <= 16);
	for (i = 0; i < n; i++) {
		pgt_test_note("hugepage size %llu KiB", (unsigned long long)(sizes[i] >> 10));
		assert_true(pow2(sizes[i]));
		assert_true(sizes[i] > pgt_hal_page_size());
		if (i)
			assert_true(sizes[i] > sizes[i - 1]);
	}
	if (access("/sys/kernel/mm/hugepages/hugepages-2048kB", F_OK) == 0) {
		bool found = false;

		for (i = 0; i < n; i++)
			found |= sizes[i] == 2u << 20;
		assert_true(found);
	}
	assert_int_equal(pgt_hal_hugepage_sizes(NULL, 0), n);
	if (n) {
		assert_int_equal(pgt_hal_hugepage_sizes(&one, 1), n);
		assert_int_equal(one, sizes[0]);
	}
	assert_int_equal(pgt_hal_hugepage_sizes(sizes, -1), -EINVAL);
}

/* The parser on a made-up sysfs directory, with names it must ignore. */
static void test_hugepage_parse(void **state)
{
	static const char *const names[] = {
		"hugepages-1048576kB", "hugepages-64kB", "hugepages-2048kB",
		"hugepages-32768kB", "hugepages-", "hugepages-12", "hugepages-12kBx",
		"hugepages-x2kB", "hugepages--4kB", "hugepages-0kB", "foo",
		"hugepages-99999999999999999999kB", "hugepages-18014398509481984kB",
	};
	const uint64_t want[] = { 64u << 10, 2u << 20, 32u << 20, 1u << 30 };
	char dir[] = "/tmp/pgt-test-hal-XXXXXX", path[256];
	uint64_t sizes[8];
	size_t i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(mkdir(path, 0700), 0);
	}

	memset(sizes, 0, sizeof(sizes));
	assert_int_equal(pgt__hal_hugepage_sizes_at(dir, sizes, 8), 4);
	for (i = 0; i < 4; i++)
		assert_int_equal(sizes[i], want[i]);
	assert_int_equal(sizes[4], 0);

	memset(sizes, 0, sizeof(sizes));
	assert_int_equal(pgt__hal_hugepage_sizes_at(dir, sizes, 2), 4);
	assert_int_equal(sizes[0], want[0]);
	assert_int_equal(sizes[1], want[1]);
	assert_int_equal(sizes[2], 0);
	assert_int_equal(pgt__hal_hugepage_sizes_at(dir, NULL, 0), 4);
	assert_int_equal(pgt__hal_hugepage_sizes_at(dir, NULL, 1), -EINVAL);

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(rmdir(path), 0);
	}
	assert_int_equal(rmdir(dir), 0);
	/* Kernels without hugetlb have no directory: no sizes, not an error. */
	assert_int_equal(pgt__hal_hugepage_sizes_at(dir, sizes, 8), 0);
}

/* ---- time ------------------------------------------------------------- */

static void bracket(uint64_t *lo, uint64_t *cyc, uint64_t *hi)
{
	*lo = pgt_hal_now_ns();
	*cyc = pgt_cycles();
	*hi = pgt_hal_now_ns();
}

static void test_cycles(void **state)
{
	uint64_t hz = pgt_hal_cycles_per_sec();
	uint64_t prev, cur, t0a, t0b, t1a, t1b, c0, c1, ns;
	struct timespec nap = { 0, 50 * 1000 * 1000 };

	(void)state;
	pgt_test_note("cycle counter %llu Hz", (unsigned long long)hz);
	assert_in_range(hz, 1000000ull, 100000000000ull);
	assert_int_equal(pgt_hal_cycles_per_sec(), hz);
	assert_int_equal(pgt_hal_cycles_to_ns(0), 0);
	assert_in_range(pgt_hal_cycles_to_ns(hz), 999999999ull, 1000000000ull);
	assert_in_range(pgt_hal_cycles_to_ns(hz / 1000), 999000ull, 1000000ull);

	prev = pgt_cycles();
	for (int i = 0; i < 100000; i++) {
		cur = pgt_cycles();
		assert_true(cur >= prev);
		prev = cur;
	}
	prev = pgt_hal_now_ns();
	for (int i = 0; i < 10000; i++) {
		cur = pgt_hal_now_ns();
		assert_true(cur >= prev);
		prev = cur;
	}

	/*
	 * The counter and CLOCK_MONOTONIC agree about a 50 ms nap to within a
	 * factor of two: a sanity check of the rate, not a timing test.
	 */
	bracket(&t0a, &c0, &t0b);
	while (nanosleep(&nap, &nap) && errno == EINTR)
		;
	bracket(&t1a, &c1, &t1b);
	assert_true(c1 > c0);
	ns = pgt_hal_cycles_to_ns(c1 - c0);
	pgt_test_note("50 ms nap: %llu ns by cycles, %llu..%llu ns by the clock",
		      (unsigned long long)ns, (unsigned long long)(t1a - t0b),
		      (unsigned long long)(t1b - t0a));
	assert_true(ns >= (t1a - t0b) / 2);
	assert_true(ns <= (t1b - t0a) * 2);
}

/* ---- SIMD selection ----------------------------------------------------- */

static void test_simd_available(void **state)
{
	uint32_t a = pgt_hal_simd_available();

	(void)state;
	pgt_test_note("SIMD levels 0x%x", a);
#if defined(__x86_64__)
	assert_true(a & PGT_SIMD_SSE2);
	assert_int_equal(!!(a & PGT_SIMD_AVX2), !!__builtin_cpu_supports("avx2"));
	assert_int_equal(!!(a & PGT_SIMD_AVX512),
			 __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"));
	assert_false(a & PGT_SIMD_NEON);
	assert_int_equal(pgt__hal_force_simd(PGT_SIMD_NEON), -ENOTSUP);
#elif defined(__aarch64__)
	assert_int_equal(a, PGT_SIMD_NEON);
	assert_int_equal(pgt__hal_force_simd(PGT_SIMD_AVX2), -ENOTSUP);
#endif
	assert_int_equal(pgt__hal_force_simd(1u << 20), -EINVAL);
	assert_int_equal(pgt__hal_force_simd(PGT_SIMD_AVX2 | PGT_SIMD_SSE2), -EINVAL);
	assert_int_equal(pgt__hal_force_simd(PGT__SIMD_NO_VPOPCNTDQ), -EINVAL);
	assert_int_equal(pgt__hal_force_simd(0), 0);
	assert_string_equal(pgt__hal_is_zero_impl(), "scalar");
	assert_string_equal(pgt__hal_popcount_impl(), "scalar");
}

/* ---- zero check ------------------------------------------------------- */

static uint8_t nonzero_byte(uint64_t *rs, size_t i)
{
	/* 0x80 and 0x01 catch sign and lane-edge mistakes; the rest random. */
	switch (i % 4) {
	case 0:
		return 0x80;
	case 1:
		return 0x01;
	default:
		return (uint8_t)(pgt_test_rand(rs) % 255 + 1);
	}
}

/* [p, p + n) zero, surrounded by GUARD: true, then false with each byte set. */
static void zero_every_position(uint8_t *p, size_t n, uint64_t *rs)
{
	memset(p, 0, n);
	assert_true(pgt_hal_is_zero(p, n));
	for (size_t i = 0; i < n; i++) {
		p[i] = nonzero_byte(rs, i);
		if (pgt_hal_is_zero(p, n))
			fail_msg("is_zero(%p+%zu len %zu) missed byte 0x%02x at %zu",
				 (void *)p, (size_t)((uintptr_t)p & 63), n, p[i], i);
		p[i] = 0;
	}
	memset(p, GUARD, n);
}

static void zero_positions(uint8_t *p, size_t n, const size_t *pos, size_t npos, uint64_t *rs)
{
	memset(p, 0, n);
	assert_true(pgt_hal_is_zero(p, n));
	for (size_t i = 0; i < npos; i++) {
		p[pos[i]] = nonzero_byte(rs, i);
		if (pgt_hal_is_zero(p, n))
			fail_msg("is_zero(len %zu, align %zu) missed byte at %zu",
				 n, (size_t)((uintptr_t)p & 63), pos[i]);
		p[pos[i]] = 0;
	}
	memset(p, GUARD, n);
}

static void test_is_zero(void **state)
{
	const struct level *l = *state;
	uint64_t rs = seed;
	size_t cap = 64 + BIG + 128;
	uint8_t *buf, *base;
	size_t pos[256], npos;

	use_level(l, false);
	assert_true(pgt_hal_is_zero(NULL, 0));
	buf = xalloc(64, cap);
	memset(buf, GUARD, cap);
	base = buf + 64;

	for (size_t a = 0; a < 64; a++)
		for (size_t n = 0; n <= SMALL_MAX; n++)
			zero_every_position(base + a, n, &rs);

	/* Sparse random contents against the byte loop. */
	for (int k = 0; k < 20000; k++) {
		size_t a = pgt_test_rand(&rs) % 64, n = pgt_test_rand(&rs) % (SMALL_MAX * 4);
		uint8_t *p = base + a;

		memset(p, 0, n);
		if (n && pgt_test_rand(&rs) % 2)
			p[pgt_test_rand(&rs) % n] = (uint8_t)pgt_test_rand(&rs);
		assert_int_equal(pgt_hal_is_zero(p, n), ref_is_zero(p, n));
		assert_int_equal(pgt__hal_is_zero_scalar(p, n), ref_is_zero(p, n));
		memset(p, GUARD, n);
	}

	/* One page at every alignment, every position. */
	for (size_t a = 0; a < 64; a++)
		zero_every_position(base + a, 4096, &rs);

	/*
	 * 2 MiB: every position would be 10^12 byte reads, so the edges, one
	 * spot per 64 KiB and a few random ones.
	 */
	for (size_t ai = 0; ai < 4; ai++) {
		static const size_t aligns[] = { 0, 1, 32, 63 };

		npos = 0;
		for (size_t i = 0; i < 64; i++)
			pos[npos++] = i;
		for (size_t i = 1; i <= 16; i++)
			pos[npos++] = BIG - i;
		for (size_t i = 0; i < BIG / 65536; i++)
			pos[npos++] = i * 65536 + pgt_test_rand(&rs) % 65536;
		for (size_t i = 0; i < 8; i++)
			pos[npos++] = pgt_test_rand(&rs) % BIG;
		zero_positions(base + aligns[ai], BIG, pos, npos, &rs);
	}
	free(buf);
}

/* ---- popcount ---------------------------------------------------------- */

static uint64_t fill_word(uint64_t *rs, int mode)
{
	uint64_t r = pgt_test_rand(rs);

	switch (mode) {
	case 0:
		return r;
	case 1:
		return ~0ull;
	case 2:         /* sparse */
		return r & pgt_test_rand(rs) & pgt_test_rand(rs) & pgt_test_rand(rs);
	case 3:         /* dense */
		return r | pgt_test_rand(rs) | pgt_test_rand(rs);
	case 5:         /* rare words: half the 64-word groups are empty */
		return r % 97 ? 0 : pgt_test_rand(rs) | 1;
	default:
		return 0;
	}
}

static void test_popcount(void **state)
{
	const struct level *l = *state;
	const size_t bign = BIG / 8;
	uint64_t rs = seed ^ 0x9e3779b97f4a7c15ull;
	uint64_t *buf, *w, prefix[POP_MAX + 1];

	use_level(l, true);
	assert_int_equal(pgt_hal_popcount(NULL, 0), 0);
	buf = xalloc(64, (bign + 32) * 8);

	/*
	 * A uint64_t pointer is 8-byte aligned in C, so the alignments are the
	 * eight word offsets within a 64-byte line. Words around the range are
	 * all ones so an over-read changes the count.
	 */
	for (size_t off = 0; off < 8; off++) {
		for (int mode = 0; mode < 5; mode++) {
			for (int rep = 0; rep < 2; rep++) {
				for (size_t i = 0; i < POP_MAX + 32; i++)
					buf[i] = ~0ull;
				w = buf + 8 + off;
				prefix[0] = 0;
				for (size_t i = 0; i < POP_MAX; i++) {
					w[i] = fill_word(&rs, mode);
					prefix[i + 1] = prefix[i] + ref_popcount(&w[i], 1);
				}
				for (size_t n = 0; n <= POP_MAX; n++) {
					uint64_t got = pgt_hal_popcount(w, n);

					if (got != prefix[n])
						fail_msg("popcount(off %zu, n %zu, mode %d) = %llu, want %llu",
							 off, n, mode, (unsigned long long)got,
							 (unsigned long long)prefix[n]);
				}
				assert_int_equal(pgt__hal_popcount_scalar(w, POP_MAX), prefix[POP_MAX]);
			}
		}
	}

	/* 4 KiB and 2 MiB, including all ones (accumulator overflow). */
	for (size_t off = 0; off < 8; off += 3) {
		w = buf + 8 + off;
		for (int mode = 0; mode < 3; mode++) {
			for (size_t i = 0; i < bign; i++)
				w[i] = fill_word(&rs, mode);
			w[bign] = ~0ull;
			assert_int_equal(pgt_hal_popcount(w, 512), ref_popcount(w, 512));
			assert_int_equal(pgt_hal_popcount(w, bign), ref_popcount(w, bign));
			assert_int_equal(pgt_hal_popcount(w, bign - 1), ref_popcount(w, bign - 1));
		}
	}
	free(buf);
}

/* ---- OR-merge ---------------------------------------------------------- */

#define OR_MAX 300                      /* words */
#define OR_GUARD 0x5a5a5a5a5a5a5a5aull

static uint64_t *or_want;               /* the expected words, BIG / 8 + 32 */
static uint64_t *or_src;                /* a copy of src, for the clearing kernel */

/*
 * The grouped kernels on @n words at @d/@s (set up as or_count_check()
 * leaves them), for a few first-group lengths and summary offsets: the
 * words and count as the plain merge, and @sum holds exactly its old bits
 * plus one per group whose source words are non-zero.
 */
static void or_groups_check(uint64_t *d, uint64_t *s, const uint64_t *d0, size_t n)
{
	static const size_t heads[] = { 0, 1, 7, 63, 64 };
	const size_t nsum = (130 + n / 64 + 2) / 64 + 1;        /* g0 < 130 */
	uint64_t *sum = xalloc(8, nsum * 8), *want_sum = xalloc(8, nsum * 8);
	uint64_t want_n = ref_popcount(s, n);

	/* the 2 MiB cases: two heads are enough */
	for (size_t h = 0; h < (n > OR_MAX ? 2 : sizeof(heads) / sizeof(heads[0])); h++) {
		size_t g0 = (n * 37 + h * 11) % 130, head = heads[h] ? heads[h] : 64;

		for (size_t i = 0; i < nsum; i++)   /* old bits stay */
			sum[i] = want_sum[i] = 0x8000000000000001ull << (i & 1);
		for (size_t i = 0, g = g0, k = head; i < n; i += k, g++, k = 64) {
			k = k > n - i ? n - i : k;
			if (ref_popcount(s + i, k))
				want_sum[g / 64] |= 1ull << (g % 64);
		}
		for (int clear = 0; clear < 2; clear++) {
			uint64_t got;

			memcpy(or_src, s, n * 8);
			memcpy(d, d0, n * 8);
			got = clear ? pgt_hal_or_count_clear_groups(d, s, n, heads[h], sum, g0)
				    : pgt_hal_or_count_groups(d, s, n, heads[h], sum, g0);
			if (got != want_n || memcmp(d, or_want, n * 8))
				fail_msg("or_count%s_groups(n %zu head %zu) words or count",
					 clear ? "_clear" : "", n, heads[h]);
			if (memcmp(sum, want_sum, nsum * 8))
				fail_msg("or_count%s_groups(n %zu head %zu g0 %zu) summary",
					 clear ? "_clear" : "", n, heads[h], g0);
			for (size_t i = 0; clear && i < n; i++)
				if (s[i])
					fail_msg("or_count_clear_groups(n %zu) left src[%zu]", n, i);
			memcpy(s, or_src, n * 8);
		}
	}
	free(sum);
	free(want_sum);
}

/*
 * pgt_hal_or_count() and pgt_hal_or_count_clear() on the same words: the
 * merge as the plain loop, the count popcount(src) (the all-ones words
 * around src catch an over-read), and the clearing one zeroes exactly
 * src[0, n) (src is put back after).
 */
static void or_count_check(uint64_t *dbuf, uint64_t *sbuf, const uint64_t *d0, size_t doff,
			   size_t soff, size_t n)
{
	uint64_t *d = dbuf + 8 + doff, *s = sbuf + 8 + soff, *want = or_want;
	uint64_t want_n = ref_popcount(s, n), before = s[-1], after = s[n];

	memcpy(d, d0, n * 8);
	if (pgt_hal_or_count(d, s, n) != want_n)
		fail_msg("or_count(doff %zu soff %zu n %zu) count", doff, soff, n);
	if (memcmp(d, want, n * 8) || dbuf[7 + doff] != OR_GUARD || d[n] != OR_GUARD)
		fail_msg("or_count(doff %zu soff %zu n %zu) wrong words", doff, soff, n);
	memcpy(or_src, s, n * 8);
	memcpy(d, d0, n * 8);
	if (pgt_hal_or_count_clear(d, s, n) != want_n)
		fail_msg("or_count_clear(doff %zu soff %zu n %zu) count", doff, soff, n);
	if (memcmp(d, want, n * 8) || dbuf[7 + doff] != OR_GUARD || d[n] != OR_GUARD)
		fail_msg("or_count_clear(doff %zu soff %zu n %zu) wrong words", doff, soff, n);
	for (size_t i = 0; i < n; i++)
		if (s[i])
			fail_msg("or_count_clear(doff %zu soff %zu n %zu) left src[%zu]", doff, soff, n, i);
	if (s[-1] != before || s[n] != after)
		fail_msg("or_count_clear(doff %zu soff %zu n %zu) wrote outside src", doff, soff, n);
	memcpy(s, or_src, n * 8);
	if (n % 8 == 1 || n > 290)       /* every head and tail case, in a quarter of the time */
		or_groups_check(d, s, d0, n);
}

/*
 * Merge @n words at word offsets @doff/@soff within a line with both
 * pgt_hal_or() and pgt_hal_or_new(), against the plain loop. Guard words
 * around dst catch an over-write, all-ones words around src an over-read
 * that would leak into the count.
 */
static void or_check(uint64_t *dbuf, uint64_t *sbuf, const uint64_t *d0, size_t doff,
		     size_t soff, size_t n)
{
	uint64_t *d = dbuf + 8 + doff, *s = sbuf + 8 + soff, want_new = 0, *want = or_want;

	for (size_t i = 0; i < n + 16; i++)
		dbuf[i] = OR_GUARD;
	memcpy(d, d0, n * 8);
	for (size_t i = 0; i < n; i++) {
		uint64_t added = s[i] & ~d0[i];

		want_new += ref_popcount(&added, 1);
		want[i] = d0[i] | s[i];
	}
	if (pgt_hal_or_new(d, s, n) != want_new)
		fail_msg("or_new(doff %zu soff %zu n %zu) count %llu", doff, soff, n,
			 (unsigned long long)want_new);
	if (memcmp(d, want, n * 8) || dbuf[7 + doff] != OR_GUARD || d[n] != OR_GUARD)
		fail_msg("or_new(doff %zu soff %zu n %zu) wrong words", doff, soff, n);
	memcpy(d, d0, n * 8);
	pgt_hal_or(d, s, n);
	if (memcmp(d, want, n * 8) || dbuf[7 + doff] != OR_GUARD || d[n] != OR_GUARD)
		fail_msg("or(doff %zu soff %zu n %zu) wrong words", doff, soff, n);
	or_count_check(dbuf, sbuf, d0, doff, soff, n);
}

static void test_or(void **state)
{
	const struct level *l = *state;
	const size_t bign = BIG / 8;
	uint64_t rs = seed ^ 0x2545f4914f6cdd1dull;
	uint64_t *dbuf, *sbuf, *d0;

	use_level(l, true);
	if (strcmp(pgt__hal_or_impl(), l->popcount_impl))
		fail_msg("%s: or-merge is %s", l->name, pgt__hal_or_impl());
	pgt_hal_or(NULL, NULL, 0);
	assert_int_equal(pgt_hal_or_new(NULL, NULL, 0), 0);
	assert_int_equal(pgt_hal_or_count(NULL, NULL, 0), 0);
	assert_int_equal(pgt_hal_or_count_clear(NULL, NULL, 0), 0);
	dbuf = xalloc(64, (bign + 32) * 8);
	sbuf = xalloc(64, (bign + 32) * 8);
	d0 = xalloc(64, (bign + 32) * 8);
	or_want = xalloc(64, (bign + 32) * 8);
	or_src = xalloc(64, (bign + 32) * 8);
	for (size_t i = 0; i < bign + 32; i++)
		sbuf[i] = ~0ull;

	/* Every pair of word offsets in a line (the 8-byte alignments 0..63). */
	for (size_t doff = 0; doff < 8; doff++) {
		for (size_t soff = 0; soff < 8; soff++) {
			int mode = (int)((doff * 8 + soff) % 6);

			for (size_t i = 0; i < OR_MAX; i++) {
				d0[i] = fill_word(&rs, (mode + 2) % 5);
				sbuf[8 + soff + i] = fill_word(&rs, mode);
			}
			for (size_t n = 0; n <= OR_MAX; n++)
				or_check(dbuf, sbuf, d0, doff, soff, n);
			for (size_t i = 0; i < OR_MAX; i++)
				sbuf[8 + soff + i] = ~0ull;
		}
	}

	/* 2 MiB of words, and one less (a tail after the big loop). */
	for (int k = 0; k < 4; k++) {
		int mode = k < 3 ? k : 5;

		for (size_t i = 0; i < bign; i++) {
			d0[i] = fill_word(&rs, (mode + 2) % 5);
			sbuf[8 + 3 + i] = fill_word(&rs, mode);
		}
		or_check(dbuf, sbuf, d0, 5, 3, bign);
		or_check(dbuf, sbuf, d0, 5, 3, bign - 1);
	}
	free(dbuf);
	free(sbuf);
	free(d0);
	free(or_want);
	free(or_src);
}

/* ---- non-zero word mask ------------------------------------------------ */

static void test_nonzero(void **state)
{
	const struct level *l = *state;
	uint64_t rs = seed ^ 0x6a09e667f3bcc909ull, buf[64 + 8 + 72];

	use_level(l, false);
	assert_int_equal(pgt_hal_nonzero_words(NULL, 0), 0);
	/* every word offset, every length 0..70 (capped at 64), sparse and dense,
	 * non-zero words around the range so an over-read shows */
	for (size_t off = 0; off < 8; off++) {
		for (int rep = 0; rep < 40; rep++) {
			uint64_t *w = buf + 8 + off;

			for (size_t i = 0; i < sizeof(buf) / 8; i++)
				buf[i] = 1;
			for (size_t i = 0; i < 70; i++) {
				int r = (int)(pgt_test_rand(&rs) % 4);

				w[i] = r == 0 ? 0 : r == 1 ? 1ull << (pgt_test_rand(&rs) % 64) :
				       r == 2 ? 0 : pgt_test_rand(&rs);
				if (rep % 5 == 0)
					w[i] = rep % 10 ? 0 : w[i] | 1;
			}
			for (size_t n = 0; n <= 70; n++) {
				uint64_t got = pgt_hal_nonzero_words(w, n), want = 0;

				for (size_t i = 0; i < n && i < 64; i++)
					want |= (uint64_t)(w[i] != 0) << i;
				if (got != want)
					fail_msg("nonzero(off %zu, n %zu) = %#llx, want %#llx", off, n,
						 (unsigned long long)got, (unsigned long long)want);
				assert_int_equal(pgt__hal_nonzero_words_scalar(w, n), want);
			}
		}
	}
}

/* ---- informative throughput -------------------------------------------- */

static void test_throughput(void **state)
{
	uint8_t *buf = xalloc(64, BIG);
	char line[512];
	int len = 0;

	(void)state;
	memset(buf, 0, BIG);
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		const struct level *l = &levels[i];
		uint64_t t0, bits = 0;
		double zgbs, pgbs;
		bool z = true;
		const int reps = 20;

		if (pgt__hal_force_simd(l->force))
			continue;
		if (strcmp(pgt__hal_popcount_impl(), l->popcount_impl))
			continue;
		t0 = pgt_hal_now_ns();
		for (int r = 0; r < reps; r++)
			z &= pgt_hal_is_zero(buf, BIG);
		zgbs = (double)BIG * reps / (double)(pgt_hal_now_ns() - t0);
		buf[BIG - 1] = (uint8_t)i;
		t0 = pgt_hal_now_ns();
		for (int r = 0; r < reps; r++)
			bits += pgt_hal_popcount((const uint64_t *)(void *)buf, BIG / 8);
		pgbs = (double)BIG * reps / (double)(pgt_hal_now_ns() - t0);
		buf[BIG - 1] = 0;
		assert_true(z);
		assert_int_equal(bits, (uint64_t)reps * (uint64_t)__builtin_popcount((unsigned)i));
		len += snprintf(line + len, sizeof(line) - (size_t)len, " %s %.1f/%.1f",
				l->name, zgbs, pgbs);
	}
	pgt_test_note("2 MiB, GB/s is_zero/popcount (informative, one run):%s", line);
	free(buf);
}

#define LEVEL_TEST(name, fn, idx) { name, fn, NULL, restore_default, (void *)&levels[idx] }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_concurrent_first_use),
		cmocka_unit_test(test_page_size),
		cmocka_unit_test(test_cacheline),
		cmocka_unit_test(test_hugepage_sizes),
		cmocka_unit_test(test_hugepage_parse),
		cmocka_unit_test(test_cycles),
		cmocka_unit_test_teardown(test_simd_available, restore_default),
		/*
		 * Only this architecture's levels: cmocka 1.1.5 prints a skip
		 * as "not ok # SKIP", which meson counts as a failure.
		 */
		LEVEL_TEST("is_zero/scalar", test_is_zero, L_SCALAR),
		LEVEL_TEST("popcount/scalar", test_popcount, L_SCALAR),
		LEVEL_TEST("or/scalar", test_or, L_SCALAR),
		LEVEL_TEST("nonzero/scalar", test_nonzero, L_SCALAR),
#if defined(__x86_64__)
		LEVEL_TEST("is_zero/sse2", test_is_zero, L_SSE2),
		LEVEL_TEST("is_zero/avx2", test_is_zero, L_AVX2),
		LEVEL_TEST("is_zero/avx512bw", test_is_zero, L_AVX512BW),
		LEVEL_TEST("popcount/sse2", test_popcount, L_SSE2),
		LEVEL_TEST("popcount/avx2", test_popcount, L_AVX2),
		LEVEL_TEST("popcount/avx512bw", test_popcount, L_AVX512BW),
		LEVEL_TEST("popcount/avx512-vpopcntdq", test_popcount, L_AVX512_VPOPCNTDQ),
		LEVEL_TEST("or/sse2", test_or, L_SSE2),
		LEVEL_TEST("or/avx2", test_or, L_AVX2),
		LEVEL_TEST("or/avx512bw", test_or, L_AVX512BW),
		LEVEL_TEST("or/avx512-vpopcntdq", test_or, L_AVX512_VPOPCNTDQ),
		LEVEL_TEST("nonzero/sse2", test_nonzero, L_SSE2),
		LEVEL_TEST("nonzero/avx2", test_nonzero, L_AVX2),
		LEVEL_TEST("nonzero/avx512bw", test_nonzero, L_AVX512BW),
#elif defined(__aarch64__)
		LEVEL_TEST("is_zero/neon", test_is_zero, L_NEON),
		LEVEL_TEST("popcount/neon", test_popcount, L_NEON),
		LEVEL_TEST("or/neon", test_or, L_NEON),
		LEVEL_TEST("nonzero/neon", test_nonzero, L_NEON),
#endif
		cmocka_unit_test_teardown(test_throughput, restore_default),
	};

	seed = pgt_test_seed();
	return cmocka_run_group_tests_name("hal", tests, NULL, NULL);
}
