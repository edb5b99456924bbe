/* SPDX-License-Identifier: MIT */
/*
 * Bad input gets a negative errno and changes nothing: after every refused
 * call the engine still tracks the existing region exactly.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <pgtrack.h>

#define MB (1ULL << 20)

static pgt_engine *eng;
static pgt_region *reg;
static pgt_dirty_view *view;
static struct pgt_region_info info = { .size = sizeof(info) };

/*
 * Each test opens its own engine and region in its body, not in a cmocka
 * setup: cmocka installs its own SIGSEGV handler around every test and
 * fixture function, which would replace the one the mprotect tracker
 * installs when the first region is created, and the first write to the
 * region would then be reported as a crash.
 */
static void open_fixture(void)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MB, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};

	info.size = sizeof(info);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_create(eng, &rc, &reg), 0);
	assert_int_equal(pgt_region_info(reg, &info), 0);
	assert_int_equal(pgt_dirty_view_open(reg, &view), 0);
}

/* Closing the engine destroys its regions: the tracker's handler goes too. */
static int close_fixture(void **state)
{
	(void)state;
	pgt_dirty_view_close(view);
	pgt_engine_close(eng);
	view = NULL;
	reg = NULL;
	eng = NULL;
	return 0;
}

/* The existing region still reports exactly what is written. */
static void still_tracking(void)
{
	unsigned long bm[16];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = bm, .bitmap_words = 16 };
	pgt_region *r;

	assert_true(pgt_dirty_harvest(view, &h) >= 0);
	((volatile uint8_t *)info.addr)[7 * 4096] = 1;
	assert_int_equal(pgt_dirty_harvest(view, &h), 1);
	assert_int_equal(bm[0], 1UL << 7);
	assert_int_equal(pgt_gpa_lookup(eng, 0, &r, NULL), 0);
	assert_ptr_equal(r, reg);
}

static void test_engine_config(void **state)
{
	struct pgt_engine_config c = { .size = sizeof(c) };
	pgt_engine *e = (pgt_engine *)0x1;

	(void)state;
	open_fixture();
	assert_int_equal(pgt_engine_open(&c, NULL), -EINVAL);
	c.size = 4;
	assert_int_equal(pgt_engine_open(&c, &e), -EINVAL);
	assert_null(e);
	c.size = sizeof(c);
	c.flags = 1;
	assert_int_equal(pgt_engine_open(&c, &e), -EINVAL);
	c.flags = 0;
	c.fault_threads = 1000;
	assert_int_equal(pgt_engine_open(&c, &e), -EINVAL);
	pgt_engine_close(NULL);
	still_tracking();
}

static void expect_create(int err, struct pgt_region_config rc)
{
	pgt_region *r = (pgt_region *)0x1;

	assert_int_equal(pgt_region_create(eng, &rc, &r), err);
	assert_null(r);
}

static void test_region_config(void **state)
{
	const struct pgt_region_config ok = {
		.size = sizeof(ok), .backing = PGT_BACKING_ANON, .length = 4 * MB, .gpa = 64 * MB,
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};
	struct pgt_region_config c;
	pgt_region *r;

	(void)state;
	open_fixture();
	assert_int_equal(pgt_region_create(eng, &ok, NULL), -EINVAL);
	assert_int_equal(pgt_region_create(NULL, &ok, &r), -EINVAL);
	assert_int_equal(pgt_region_create(eng, NULL, &r), -EINVAL);
	c = ok; c.size = 8; expect_create(-EINVAL, c);
	c = ok; c.length = 0; expect_create(-EINVAL, c);
	c = ok; c.length = 4 * MB + 100; expect_create(-EINVAL, c);          /* unaligned length */
	c = ok; c.gpa = 64 * MB + 512; expect_create(-EINVAL, c);            /* unaligned gpa */
	c = ok; c.backing = 0; expect_create(-EINVAL, c);
	c = ok; c.backing = 99; expect_create(-EINVAL, c);
	c = ok; c.backing = PGT_BACKING_EXTERNAL; expect_create(-EINVAL, c); /* that's register */
	c = ok; c.track = 1u << 7; expect_create(-EINVAL, c);
	c = ok; c.dirty_method = 99; expect_create(-EINVAL, c);
	c = ok; c.dirty_method = -2; expect_create(-EINVAL, c);
	c = ok; c.numa_node = 4096; expect_create(-EINVAL, c);               /* no such node */
	c = ok; c.numa_node = -7; expect_create(-EINVAL, c);
	c = ok; c.gpa = 2 * MB; expect_create(-EEXIST, c);                   /* overlaps gpa 0..4M */
	/* a partial hugepage: 3 MiB of 2 MiB pages */
	c = ok; c.backing = PGT_BACKING_HUGETLB; c.length = 3 * MB; expect_create(-EINVAL, c);
	c = ok; c.backing = PGT_BACKING_HUGETLB; c.gpa = 65 * MB; expect_create(-EINVAL, c);
	/* far more hugepages than any pool here has */
	c = ok; c.backing = PGT_BACKING_HUGETLB; c.length = 512ULL << 30; expect_create(-ENOMEM, c);
	/* registering: no address, unaligned address, bad offset */
	c = ok; c.backing = PGT_BACKING_EXTERNAL; c.fd = -1;
	assert_int_equal(pgt_region_register(eng, &c, &r), -EINVAL);
	c.addr = (uint8_t *)info.addr + 100;
	assert_int_equal(pgt_region_register(eng, &c, &r), -EINVAL);
	c.addr = info.addr; /* already tracked */
	assert_int_equal(pgt_region_register(eng, &c, &r), -EEXIST);
	still_tracking();
}

static void test_harvest_args(void **state)
{
	unsigned long bm[16];
	struct pgt_run runs[4];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = bm, .bitmap_words = 16 };
	struct pgt_harvest small = { .size = sizeof(h), .bitmap = bm, .bitmap_words = 15 };
	struct pgt_harvest bad;

	(void)state;
	open_fixture();
	assert_int_equal(pgt_dirty_harvest(NULL, &h), -EINVAL);
	assert_int_equal(pgt_dirty_harvest(view, NULL), -EINVAL);
	bad = h; bad.size = 4;
	assert_int_equal(pgt_dirty_harvest(view, &bad), -EINVAL);
	bad = h; bad.flags = 2;
	assert_int_equal(pgt_dirty_harvest(view, &bad), -EINVAL);
	/* runs_cap 0 asks how many runs are needed (nothing dirty: none) */
	bad = h; bad.runs = runs; bad.runs_cap = 0;
	assert_int_equal(pgt_dirty_harvest(view, &bad), 0);
	assert_int_equal(bad.nruns, 0);

	/* too small a bitmap: refused before anything is consumed */
	((volatile uint8_t *)info.addr)[3 * 4096] = 1;
	assert_int_equal(pgt_dirty_harvest(view, &small), -ENOBUFS);
	assert_int_equal(pgt_dirty_harvest(view, &h), 1);
	assert_int_equal(bm[0], 1UL << 3);

	/* merge: too many bits, NULL */
	assert_int_equal(pgt_dirty_merge(reg, bm, info.npages + 1), -EINVAL);
	assert_int_equal(pgt_dirty_merge(reg, NULL, 10), -EINVAL);
	assert_int_equal(pgt_dirty_merge(NULL, bm, 10), -EINVAL);
	still_tracking();
}

static void test_untracked_region(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MB, .gpa = 128 * MB,
		.numa_node = -1, /* no trackers */
	};
	pgt_region *r;
	pgt_dirty_view *v = (pgt_dirty_view *)0x1;
	unsigned long bm[16];

	(void)state;
	open_fixture();
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), -EINVAL);
	assert_null(v);
	assert_int_equal(pgt_dirty_view_open(NULL, &v), -EINVAL);
	assert_int_equal(pgt_dirty_merge(r, bm, 10), -EINVAL);
	assert_int_equal(pgt_touched_count(r), -EINVAL);
	assert_int_equal(pgt_touched_test(r, 128 * MB), -EINVAL);
	assert_int_equal(pgt_region_destroy(r), 0);
	assert_int_equal(pgt_region_destroy(NULL), -EINVAL);
	/* open views keep a region alive */
	assert_int_equal(pgt_region_destroy(reg), -EBUSY);
	still_tracking();
}

static void test_names(void **state)
{
	(void)state;
	open_fixture();
	assert_null(pgt_dirty_method_name(-1));
	assert_null(pgt_dirty_method_name(PGT_DIRTY__COUNT));
	assert_null(pgt_backing_name(0));
	assert_int_equal(pgt_dirty_method_parse("uffd-async"), PGT_DIRTY_UFFD_ASYNC);
	assert_int_equal(pgt_dirty_method_parse("nonsense"), -EINVAL);
	assert_int_equal(pgt_dirty_method_parse(NULL), -EINVAL);
	for (int m = 0; m < PGT_DIRTY__COUNT; m++)
		assert_int_equal(pgt_dirty_method_parse(pgt_dirty_method_name(m)), m);
	struct pgt_region_info small = { .size = 4 };

	assert_int_equal(pgt_region_info(reg, &small), -EINVAL);
	struct pgt_region_stats st = { .size = 4 };

	assert_int_equal(pgt_region_stats(reg, &st), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_engine_config, close_fixture),
		cmocka_unit_test_teardown(test_region_config, close_fixture),
		cmocka_unit_test_teardown(test_harvest_args, close_fixture),
		cmocka_unit_test_teardown(test_untracked_region, close_fixture),
		cmocka_unit_test_teardown(test_names, close_fixture),
	};

	return cmocka_run_group_tests_name("badinput", tests, NULL, NULL);
}
