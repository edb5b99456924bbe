/* SPDX-License-Identifier: MIT */
/*
 * Calibration on the real kernel (issue 16): the measurement is bounded in
 * page operations and gives finite, positive costs; the per-boot cache is
 * read, and a garbage or another boot's file is ignored and rewritten;
 * FRESH measures anyway; PGT_DIRTY_AUTO regions get the calibrated choice,
 * PGT_CALIBRATE_OFF the feature order. Every engine here runs with
 * XDG_RUNTIME_DIR set to a fresh temporary directory.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/calibrate_pvt.h"
#include "pgtrack/probe.h"

#define OTHER_BOOT "0c9a4f6e-2222-4b2b-9a61-6f0e0d7c2a11"

static struct pgt_probe probe = { .size = sizeof(probe) };
static char dir[64], file[128], boot[PGT_CALIB_BOOT_ID_LEN + 1];

static void calib(uint32_t flags, struct pgt_calibration *out)
{
	struct pgt_engine_config cfg = { .size = sizeof(cfg), .calibrate = flags };
	pgt_engine *e;

	assert_int_equal(pgt_engine_open(&cfg, &e), 0);
	out->size = sizeof(*out);
	assert_int_equal(pgt_calibration(e, out), 0);
	pgt_engine_close(e);
}

static void write_file(const char *s, size_t len)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, len), (ssize_t)len);
	close(fd);
}

/* The file holds this boot's costs, equal to @c's. */
static void assert_cached(const struct pgt_calibration *c)
{
	struct pgt__calib_costs k;

	assert_int_equal(pgt__calib_cache_load(file, boot, &k), 0);
	assert_true(k.wp_async_fault == c->wp_async_fault_ns);
	assert_true(k.mprotect_fault == c->mprotect_fault_ns);
	assert_true(k.pagemap_read == c->pagemap_read_ns);
}

static void test_measure(void **state)
{
	struct pgt__calib_costs c;
	struct pgt__calib_stats st;
	int ret;

	(void)state;
	ret = pgt__calib_measure(&probe, &c, &st);
	if (ret == -ETIME)
		skip();   /* a host too loaded to get through it: not a failure here */
	assert_int_equal(ret, 0);
	assert_true(st.iterations > 0 && st.iterations <= PGT_CALIB_MAX_ITER);
	assert_true(st.measured & PGT_CALIB_M_MPROTECT);
	assert_true(isfinite(c.mprotect_fault) && c.mprotect_fault > 0);
	assert_true(isfinite(c.pagemap_read) && c.pagemap_read > 0);
	assert_true(isfinite(c.sync_fault) && c.sync_fault > c.mprotect_fault);
	if (st.measured & PGT_CALIB_M_ASYNC) {
		assert_true(isfinite(c.wp_async_fault) && c.wp_async_fault > 0);
		assert_true(isfinite(c.scan_clean) && c.scan_clean > 0);
		assert_true(isfinite(c.reprotect) && c.reprotect >= 0);
	}
	pgt_test_note("measured in %.2f ms, %llu page ops: async %.0f mprotect %.0f scan %.2f "
		      "reprotect %.1f pagemap %.2f ns", (double)st.ns / 1e6,
		      (unsigned long long)st.iterations, c.wp_async_fault, c.mprotect_fault,
		      c.scan_clean, c.reprotect, c.pagemap_read);
}

static void test_cache(void **state)
{
	struct pgt_calibration a, b;
	char buf[512];
	int n;

	(void)state;
	unlink(file);
	calib(0, &a);
	if (a.error == -ETIME)
		skip();
	assert_int_equal(a.error, 0);
	assert_int_equal(a.source, PGT_CALIB_MEASURED);
	assert_int_equal(a.cache_error, 0);
	assert_true(a.measure_ns > 0 && a.iterations <= PGT_CALIB_MAX_ITER);
	assert_cached(&a);
	/* a second engine reads it */
	calib(0, &b);
	assert_int_equal(b.source, PGT_CALIB_CACHED);
	assert_true(b.mprotect_fault_ns == a.mprotect_fault_ns);
	assert_int_equal(b.method_1g_4k, a.method_1g_4k);
	/* garbage: ignored, measured, rewritten */
	write_file("pgtrack-calibration 1\nboot_id x\n\xff\xfe", 35);
	calib(0, &b);
	assert_int_equal(b.source, PGT_CALIB_MEASURED);
	assert_cached(&b);
	/* another boot's costs: ignored, rewritten with this boot's */
	n = pgt__calib_format(&(struct pgt__calib_costs){ .wp_async_fault = 1 }, OTHER_BOOT,
			      buf, sizeof(buf));
	assert_true(n > 0);
	write_file(buf, (size_t)n);
	calib(0, &b);
	assert_int_equal(b.source, PGT_CALIB_MEASURED);
	assert_cached(&b);
	/* FRESH measures even over a good file */
	calib(PGT_CALIBRATE_FRESH, &b);
	assert_int_equal(b.source, PGT_CALIB_MEASURED);
	/* OFF: nothing */
	calib(PGT_CALIBRATE_OFF, &b);
	assert_int_equal(b.source, PGT_CALIB_NONE);
	assert_int_equal(b.error, -ECANCELED);
}

static int auto_method(uint32_t flags)
{
	struct pgt_engine_config cfg = { .size = sizeof(cfg), .calibrate = flags };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4u << 20,
		.gpa = 1ull << 32, .track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_AUTO,
		.numa_node = -1, .name = "calib",
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_engine *e;
	pgt_region *r;

	assert_int_equal(pgt_engine_open(&cfg, &e), 0);
	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	pgt_engine_close(e);
	return info.dirty_method;
}

/*
 * Costs injected through the cache file: an async fault dearer than a whole
 * mprotect round trip makes AUTO take mprotect; with OFF it takes the
 * probe's feature order, as before calibration existed.
 */
static void test_auto(void **state)
{
	struct pgt__calib_costs dear = {
		.wp_async_fault = 500000, .mprotect_fault = 5000, .sync_fault = 6000,
		.scan_clean = 50, .reprotect = 100, .pagemap_read = 10,
	};
	struct pgt_calibration c;
	char buf[512];
	int n = pgt__calib_format(&dear, boot, buf, sizeof(buf));

	(void)state;
	if (!pgt_test_have_uffd() || !probe.pagemap_scan)
		skip();   /* feature order would give mprotect too: nothing to tell apart */
	assert_true(n > 0);
	write_file(buf, (size_t)n);
	calib(0, &c);
	assert_int_equal(c.source, PGT_CALIB_CACHED);
	assert_int_equal(c.method_1g_4k, PGT_DIRTY_MPROTECT);
	assert_int_equal(auto_method(0), PGT_DIRTY_MPROTECT);
	assert_int_equal(auto_method(PGT_CALIBRATE_OFF), probe.best_dirty_method);
	assert_int_not_equal(probe.best_dirty_method, PGT_DIRTY_MPROTECT);
	/* measured costs: the region gets what pgt_calibration reports */
	unlink(file);
	calib(0, &c);
	if (c.error)
		skip();
	assert_int_equal(auto_method(0), c.method_1g_4k);
	pgt_test_note("this host: 1 GiB 4 KiB -> %s, 1 GiB 2 MiB -> %s",
		      pgt_dirty_method_name(c.method_1g_4k), pgt_dirty_method_name(c.method_1g_2m));
}

static int setup(void **state)
{
	(void)state;
	if (pgt_probe(&probe) || pgt__calib_boot_id(boot))
		return -1;
	snprintf(dir, sizeof(dir), "/tmp/pgt-calib-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	setenv("XDG_RUNTIME_DIR", dir, 1);
	snprintf(file, sizeof(file), "%s/pgtrack/calibration", dir);
	return 0;
}

static int teardown(void **state)
{
	char sub[96];

	(void)state;
	unlink(file);
	snprintf(sub, sizeof(sub), "%s/pgtrack", dir);
	rmdir(sub);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_measure),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_auto),
	};

	return cmocka_run_group_tests_name("calibration", tests, setup, teardown);
}
