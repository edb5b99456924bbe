/* SPDX-License-Identifier: MIT */
/*
 * Memory freed behind pgtrack's back: another thread madvise()s part of a
 * region. With PGT_TRACK_REMOVE the userfaultfd REMOVE events name the range
 * and pgt_release_rescan() accounts exactly those pages as released; without
 * it (and without touch tracking) pgtrack has no candidates to look at.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <pgtrack.h>

#define MB (1ULL << 20)
#define PG 4096

struct zap {
	uint8_t *addr;
	size_t len;
	int ret;
};

static void *zap_thread(void *arg)
{
	struct zap *z = arg;

	z->ret = madvise(z->addr, z->len, MADV_DONTNEED);
	return NULL;
}

static pgt_region *mk(pgt_engine *e, uint32_t track, int method, struct pgt_region_info *info)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 8 * MB,
		.gpa = 0, .track = track, .dirty_method = method, .numa_node = -1,
	};
	pgt_region *r;

	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	info->size = sizeof(*info);
	assert_int_equal(pgt_region_info(r, info), 0);
	memset(info->addr, 0x5a, 100 * PG);
	return r;
}

static void zap_pages(uint8_t *base, uint64_t first, uint64_t n)
{
	struct zap z = { base + first * PG, n * PG, -1 };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, zap_thread, &z), 0);
	pthread_join(t, NULL);
	assert_int_equal(z.ret, 0);
}

static void remove_events(uint32_t track, int method)
{
	struct pgt_region_info info;
	pgt_engine *e;
	pgt_region *r;

	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	r = mk(e, track | PGT_TRACK_REMOVE, method, &info);
	zap_pages(info.addr, 10, 20);
	assert_int_equal(pgt_release_rescan(r), 20);
	assert_int_equal(pgt_released_count(r), 20);
	for (uint64_t p = 0; p < 100; p++)
		assert_int_equal(pgt_released_test(e, p * PG), p >= 10 && p < 30);
	/* nothing new: a second rescan finds nothing */
	assert_int_equal(pgt_release_rescan(r), 0);
	assert_int_equal(pgt_region_destroy(r), 0);
	pgt_engine_close(e);
}

/* Only the REMOVE events name the pages: no touch tracking here. */
static void test_remove_events_dirty(void **state)
{
	struct pgt_probe p = { .size = sizeof(p) };

	(void)state;
	pgt_probe(&p);
	if (p.pagemap_scan)
		remove_events(PGT_TRACK_DIRTY, PGT_DIRTY_UFFD_ASYNC);
	else if (p.uffd_features & 1 /* PAGEFAULT_FLAG_WP */)
		remove_events(PGT_TRACK_DIRTY, PGT_DIRTY_UFFD_SYNC);
	else
		pgt_skip("no userfaultfd write-protect on this kernel: no uffd dirty tracker to carry REMOVE events");
}

static void test_remove_events_touch(void **state)
{
	(void)state;
	remove_events(PGT_TRACK_TOUCH, PGT_DIRTY_AUTO);
}

static void test_without_remove_events(void **state)
{
	struct pgt_region_info info;
	pgt_engine *e;
	pgt_region *r;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	r = mk(e, PGT_TRACK_DIRTY, PGT_DIRTY_MPROTECT, &info);
	zap_pages(info.addr, 10, 20);
	/* no REMOVE events, no touch tracking: no candidates, nothing found */
	assert_int_equal(pgt_release_rescan(r), 0);
	assert_int_equal(pgt_region_destroy(r), 0);
	pgt_engine_close(e);
}

static void test_remove_needs_uffd(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 8 * MB,
		.track = PGT_TRACK_REMOVE, .numa_node = -1,
	};
	pgt_engine *e;
	pgt_region *r;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_region_create(e, &rc, &r), -EINVAL);
	/* mprotect tracking has no userfaultfd context to get events on */
	rc.track = PGT_TRACK_DIRTY | PGT_TRACK_REMOVE;
	rc.dirty_method = PGT_DIRTY_MPROTECT;
	assert_int_equal(pgt_region_create(e, &rc, &r), -EOPNOTSUPP);
	pgt_engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remove_events_dirty),
		cmocka_unit_test(test_remove_events_touch),
		cmocka_unit_test(test_without_remove_events),
		cmocka_unit_test(test_remove_needs_uffd),
	};

	if (!pgt_test_have_uffd()) {
		printf("1..0 # SKIP userfaultfd not available\n");
		return 0;
	}
	return cmocka_run_group_tests_name("remove", tests, NULL, NULL);
}
