/* SPDX-License-Identifier: MIT */
/*
 * Set-bit extraction (hal/iter.c): every implementation against a bit-by-bit
 * reference on random words at every word alignment, lengths 0..200 (tails
 * of the 8-word SIMD blocks and the 64-word non-zero masks), densities from
 * empty to full and every kind of short buffer; then the bitmap's next_bits
 * on top of each, against find_next, with buffers of every awkward size.
 *
 * Each level is its own test: one the CPU lacks is a skip, never a pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/testutil.h"
#include "hal/hal.h"
#include "lib/bitmap.h"

#define MAXW 200
#define OFFS 8                          /* word offsets 0..7: every 64-byte phase */
#define CANARY 0xdeadbeefcafef00dull

static uint64_t seed;

/* Random word whose bits are set with probability @num / 64. */
static uint64_t rand_word(uint64_t *rs, unsigned num)
{
	uint64_t v = 0;

	if (num >= 64)
		return ~0ULL;
	for (unsigned j = 0; j < 64; j++)
		if (pgt_test_rand(rs) % 64 < num)
			v |= 1ULL << j;
	return v;
}

/* The reference: whole words while they fit, bit by bit. */
static size_t ref_extract(const uint64_t *w, size_t nw, uint64_t base, uint64_t *out, size_t cap,
			  size_t *done)
{
	size_t n = 0, i;

	for (i = 0; i < nw; i++) {
		size_t pc = (size_t)__builtin_popcountll(w[i]);

		if (pc > cap - n)
			break;
		for (unsigned j = 0; j < 64; j++)
			if ((w[i] >> j) & 1)
				out[n++] = base + 64 * i + j;
	}
	*done = i;
	return n;
}

static int use_level(int level)
{
	int rc = pgt__hal_iter_force(level);

	if (rc == -ENOTSUP) {
		char why[80];

		snprintf(why, sizeof(why), "CPU lacks iteration level %d", level);
		pgt_test_note("%s", why);
		skip();
	}
	return rc;
}

static int restore_default(void **state)
{
	int best = 31 - __builtin_clz(pgt__hal_iter_available());

	(void)state;
	return pgt__hal_iter_force(best);
}

/* One case: compare against the reference; nothing written past @cap. */
static void check_case(const uint64_t *w, size_t nw, uint64_t base, size_t cap, uint64_t *out,
		       uint64_t *ref, bool exact)
{
	size_t done, rdone, n, rn;

	for (size_t i = 0; i < 64 * MAXW + 16; i++)
		out[i] = CANARY;
	n = pgt_hal_bits_extract(w, nw, base, out, cap, &done);
	rn = ref_extract(w, nw, base, ref, cap, &rdone);
	if (n != rn || done != rdone)
		fail_msg("%s nw %zu cap %zu: n %zu done %zu, want %zu %zu", pgt__hal_iter_impl(),
			 nw, cap, n, done, rn, rdone);
	if (memcmp(out, ref, n * sizeof(*out)))
		fail_msg("%s nw %zu cap %zu: indices differ", pgt__hal_iter_impl(), nw, cap);
	for (size_t i = exact ? n : cap; i < 64 * MAXW + 16; i++)
		if (out[i] != CANARY)
			fail_msg("%s nw %zu cap %zu: wrote out[%zu] (n %zu)", pgt__hal_iter_impl(),
				 nw, cap, i, n);
}

static void extract_level(int level, bool exact)
{
	static const unsigned dens[] = { 0, 1, 4, 8, 16, 32, 48, 60, 64 };
	uint64_t rs = seed ^ (uint64_t)level, *buf, *out, *ref;

	if (use_level(level))
		fail_msg("force level %d", level);
	buf = malloc((MAXW + OFFS) * sizeof(*buf));
	out = malloc((64 * MAXW + 16) * sizeof(*out));
	ref = malloc((64 * MAXW + 16) * sizeof(*ref));
	assert_non_null(buf);
	assert_non_null(out);
	assert_non_null(ref);
	for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
		for (size_t nw = 0; nw <= MAXW; nw += nw < 80 ? 1 : 7) {
			size_t off = (size_t)(pgt_test_rand(&rs) % OFFS), total = 0;
			uint64_t base = pgt_test_rand(&rs) >> 20 << 6, *w = buf + off;

			for (size_t i = 0; i < nw; i++) {
				/* mix densities within an array too */
				w[i] = rand_word(&rs, i % 5 ? dens[d] : (unsigned)(pgt_test_rand(&rs) % 65));
				total += (size_t)__builtin_popcountll(w[i]);
			}
			check_case(w, nw, base, 64 * MAXW, out, ref, exact);
			/* short buffers: empty, tiny, at and around the total */
			check_case(w, nw, base, 0, out, ref, exact);
			check_case(w, nw, base, (size_t)(pgt_test_rand(&rs) % 70), out, ref, exact);
			check_case(w, nw, base, total, out, ref, exact);
			if (total)
				check_case(w, nw, base, total - 1, out, ref, exact);
			check_case(w, nw, base, (size_t)(pgt_test_rand(&rs) % (total + 1)), out, ref,
				   exact);
		}
	}
	free(buf);
	free(out);
	free(ref);
}

/* next_bits over a random bitmap with buffers of many sizes vs find_next. */
static void next_bits_level(int level)
{
	static const size_t caps[] = { 1, 2, 7, 63, 64, 65, 100, 1000, 5000 };
	static const unsigned dens[] = { 0, 1, 32, 64 };
	const uint64_t nbits = 3 * PGT_BM_GROUP_BITS + 777;
	uint64_t rs = seed ^ 0x1234 ^ (uint64_t)level, *out;
	struct pgt_bitmap b;

	if (use_level(level))   /* first: a skip leaves nothing allocated */
		fail_msg("force level %d", level);
	out = malloc(5000 * sizeof(*out));
	assert_non_null(out);
	assert_int_equal(pgt__bitmap_init(&b, nbits), 0);
	for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
		/* groups of different density side by side, and a word-split run */
		for (uint64_t i = 0; i < nbits; i++)
			if (pgt_test_rand(&rs) % 64 < (dens[(d + i / 4096) % 4]))
				pgt__bitmap_set(&b, i);
		for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
			uint64_t pos = pgt_test_rand(&rs) % 3 ? 0 : pgt_test_rand(&rs) % nbits;
			uint64_t want = pgt__bitmap_find_next(&b, pos), got = 0;
			size_t n;

			while ((n = pgt__bitmap_next_bits(&b, &pos, out, caps[c]))) {
				assert_true(n <= caps[c]);
				for (size_t k = 0; k < n; k++, got++) {
					if (out[k] != want)
						fail_msg("%s cap %zu: bit %llu, want %llu",
							 pgt__hal_iter_impl(), caps[c],
							 (unsigned long long)out[k],
							 (unsigned long long)want);
					want = pgt__bitmap_find_next(&b, want + 1);
				}
			}
			assert_true(want == nbits);
			assert_true(pos == nbits);
		}
		pgt__bitmap_zero(&b);
	}
	pgt__bitmap_fini(&b);
	free(out);
}

#define LEVEL_TESTS(lv, exact)                                                                 \
	static void test_extract_##lv(void **state)                                            \
	{                                                                                      \
		(void)state;                                                                   \
		extract_level(lv, exact);                                                      \
	}                                                                                      \
	static void test_next_bits_##lv(void **state)                                          \
	{                                                                                      \
		(void)state;                                                                   \
		next_bits_level(lv);                                                           \
	}

LEVEL_TESTS(PGT_ITER_SCALAR, true)
LEVEL_TESTS(PGT_ITER_TZCNT, true)
LEVEL_TESTS(PGT_ITER_AVX2, false)        /* may use out[n..cap) as scratch */
LEVEL_TESTS(PGT_ITER_AVX512_VBMI2, true)
LEVEL_TESTS(PGT_ITER_NEON, false)        /* as avx2 */

static void test_force(void **state)
{
	uint32_t av = pgt__hal_iter_available();

	(void)state;
	assert_true(av & (1u << PGT_ITER_SCALAR));
	assert_true(av & (1u << PGT_ITER_TZCNT));
	assert_int_equal(pgt__hal_iter_force(-1), -EINVAL);
	assert_int_equal(pgt__hal_iter_force(PGT_ITER_NLEVELS), -EINVAL);
	for (int l = 0; l < PGT_ITER_NLEVELS; l++)
		assert_int_equal(pgt__hal_iter_force(l), av & (1u << l) ? 0 : -ENOTSUP);
	assert_int_equal(pgt__hal_iter_force(PGT_ITER_SCALAR), 0);
	assert_string_equal(pgt__hal_iter_impl(), "scalar");
}

#define T(fn) cmocka_unit_test_teardown(fn, restore_default)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_force),
		T(test_extract_PGT_ITER_SCALAR),
		T(test_extract_PGT_ITER_TZCNT),
		T(test_extract_PGT_ITER_AVX2),
		T(test_extract_PGT_ITER_AVX512_VBMI2),
		T(test_extract_PGT_ITER_NEON),
		T(test_next_bits_PGT_ITER_SCALAR),
		T(test_next_bits_PGT_ITER_TZCNT),
		T(test_next_bits_PGT_ITER_AVX2),
		T(test_next_bits_PGT_ITER_AVX512_VBMI2),
		T(test_next_bits_PGT_ITER_NEON),
	};

	seed = pgt_test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
