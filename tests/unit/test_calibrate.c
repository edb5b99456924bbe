/* SPDX-License-Identifier: MIT */
/*
 * Calibration core (engine/calibrate.c): the tracker choice on injected
 * costs, and the per-boot cache parser on good, stale, malformed and fuzzed
 * input. Parsed buffers end right before a PROT_NONE page, so a read past
 * the given length faults.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/common/testutil.h"
#include "engine/calibrate_pvt.h"
#include "pgtrack/pgtrack.h"

#define BOOT "0c9a4f6e-1111-4b2b-9a61-6f0e0d7c2a11"
#define OTHER "0c9a4f6e-2222-4b2b-9a61-6f0e0d7c2a11"
#define ALL ((1u << PGT_DIRTY_UFFD_ASYNC) | (1u << PGT_DIRTY_UFFD_SYNC) | \
	     (1u << PGT_DIRTY_MPROTECT))

/* This host's figures on kernel v1272 (perf/results/dirty.json). */
static const struct pgt__calib_costs v1272 = {
	.wp_async_fault = 12666, .mprotect_fault = 17787, .sync_fault = 19652,
	.scan_clean = 1.2, .reprotect = 69, .pagemap_read = 9.4,
};

/* Parse @len bytes of @s ending at a guard page (tests/common/testutil.h). */
static int parse(const char *s, size_t len, struct pgt__calib_costs *out)
{
	return pgt__calib_parse(pgt_test_guarded(s, len), len, BOOT, out);
}

static void test_choose(void **state)
{
	struct pgt__calib_costs c = v1272;

	(void)state;
	/* both hosts: the async fault is still the cheapest */
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0.01), PGT_DIRTY_UFFD_ASYNC);
	/* a host whose async fault costs more than an mprotect round trip */
	c.wp_async_fault = 40000;
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0.01), PGT_DIRTY_MPROTECT);
	/* a cheap sync handler wins over mprotect */
	c.sync_fault = 1000;
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0.01), PGT_DIRTY_UFFD_SYNC);
	/* only what is available */
	assert_int_equal(pgt__calib_choose(&c, 1u << PGT_DIRTY_MPROTECT, 262144, 0.01),
			 PGT_DIRTY_MPROTECT);
	assert_int_equal(pgt__calib_choose(&c, 0, 262144, 0.01), -EOPNOTSUPP);
	/* at 0 % dirty the walk is all async pays: the others cost nothing */
	c = v1272;
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0), PGT_DIRTY_UFFD_SYNC);
	c.scan_clean = NAN;
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0.01), -EINVAL);
	c = v1272;
	c.mprotect_fault = -1;
	assert_int_equal(pgt__calib_choose(&c, ALL, 262144, 0.01), -EINVAL);
	assert_true(pgt__calib_round_cost(&v1272, PGT_DIRTY_UFFD_ASYNC, 100, 2) < 0);
	assert_true(pgt__calib_round_cost(&v1272, PGT_DIRTY_NONE, 100, 0.5) < 0);
}

static void test_round_trip(void **state)
{
	struct pgt__calib_costs out = { 0 };
	char buf[512];
	int n;

	(void)state;
	n = pgt__calib_format(&v1272, BOOT, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(parse(buf, (size_t)n, &out), 0);
	assert_memory_equal(&out, &v1272, sizeof(out));
	assert_int_equal(pgt__calib_format(&v1272, BOOT, buf, 40), -ENOSPC);
	assert_int_equal(pgt__calib_format(&v1272, "short", buf, sizeof(buf)), -EINVAL);
	/* another boot: stale, not used */
	n = pgt__calib_format(&v1272, OTHER, buf, sizeof(buf));
	memset(&out, 0, sizeof(out));
	assert_int_equal(parse(buf, (size_t)n, &out), -ESTALE);
	assert_true(out.wp_async_fault == 0);
}

static void test_bad_files(void **state)
{
	static const char *const bad[] = {
		"",
		"pgtrack-calibration 2\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\n",                 /* no values */
		"pgtrack-calibration 1\nboot_id short\nwp_async_fault 1\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault 1\nwp_async_fault 2\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault nan\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault -3\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault 1e300\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault 1x\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nunknown 1\n",
		"pgtrack-calibration 1\nboot_id " BOOT "\nwp_async_fault 1", /* no newline */
	};
	struct pgt__calib_costs out = { .wp_async_fault = 7 };
	char good[512], tmp[600];
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), &out), -EINVAL);
	assert_true(out.wp_async_fault == 7);   /* untouched */
	n = pgt__calib_format(&v1272, BOOT, good, sizeof(good));
	/* every truncation of a good file is rejected */
	for (int len = 0; len < n; len++)
		assert_int_equal(parse(good, (size_t)len, &out), -EINVAL);
	/* trailing junk, an embedded NUL */
	snprintf(tmp, sizeof(tmp), "%sx\n", good);
	assert_int_equal(parse(tmp, strlen(tmp), &out), -EINVAL);
	memcpy(tmp, good, (size_t)n);
	tmp[30] = 0;
	assert_int_equal(parse(tmp, (size_t)n, &out), -EINVAL);
	assert_int_equal(pgt__calib_parse(NULL, 0, BOOT, &out), -EINVAL);
}

/* Random byte flips of a good file: 0 with sane values, or an error. */
static void test_fuzz(void **state)
{
	uint64_t seed = pgt_test_seed();
	struct pgt__calib_costs out;
	char good[512], tmp[512];
	int n, accepted = 0;

	(void)state;
	n = pgt__calib_format(&v1272, BOOT, good, sizeof(good));
	for (int it = 0; it < 20000; it++) {
		int flips = 1 + (int)(pgt_test_rand(&seed) % 4), ret;
		size_t len = (size_t)n - (pgt_test_rand(&seed) % 3 == 0 ?
					 pgt_test_rand(&seed) % (uint64_t)n : 0);

		memcpy(tmp, good, (size_t)n);
		for (int f = 0; f < flips; f++)
			tmp[pgt_test_rand(&seed) % (uint64_t)n] = (char)pgt_test_rand(&seed);
		ret = parse(tmp, len, &out);
		assert_true(ret == 0 || ret == -EINVAL || ret == -ESTALE);
		if (!ret) {
			accepted++;
			assert_true(isfinite(out.wp_async_fault) && out.wp_async_fault >= 0);
			assert_true(isfinite(out.reprotect) && out.reprotect <= 1e9);
		}
	}
	pgt_test_note("fuzz: %d of 20000 mutations accepted", accepted);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_choose),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests_name("calibrate", tests, pgt_test_guard_setup,
					   pgt_test_guard_teardown);
}
