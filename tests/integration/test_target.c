/* SPDX-License-Identifier: MIT */
/*
 * Memory targets: limit validation, a simulated balloon driver (a guest
 * thread giving pages back through pgt_release() when asked, or taking them
 * back) reaching targets, a guest that does not cooperate (wait times out
 * cleanly, the balloon is asked again, the cooperative flag drops), targets
 * refused because pinned memory makes them unsafe, live limit changes, and
 * the overhead and maximise_memory arithmetic.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pgtrack.h>

#include "engine/release_pvt.h"
#include "hal/hal.h"

#define MiB (1ULL << 20)
#define UNIT PGT_RELEASE_UNIT
#define GPA0 (1ULL << 32)
#define LEN (32 * MiB)
#define NUNITS (LEN / UNIT)

/* A guest with a balloon driver: a thread doing what it is asked. */
struct guest {
	pgt_engine *eng;
	pgt_region *r;
	uint8_t *mem;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int64_t pending;      /* > 0 to give back, < 0 to take back */
	bool cooperative;
	bool stop;
	atomic_int calls;
	atomic_int errors;   /* checked by the main thread: no cmocka asserts here */
	int64_t last_ask;
	uint8_t ballooned[NUNITS]; /* which units the guest gave away */
	uint64_t seed;
};

static int balloon(void *arg, int64_t pages)
{
	struct guest *g = arg;

	atomic_fetch_add(&g->calls, 1);
	pthread_mutex_lock(&g->lock);
	g->last_ask = pages;
	if (g->cooperative) {
		/* a new request replaces the old one, as a balloon target does */
		g->pending = pages;
		pthread_cond_signal(&g->cv);
	}
	pthread_mutex_unlock(&g->lock);
	return 0;
}

/* Give back or take back in small batches, like a real driver. */
static void *guest_thread(void *arg)
{
	struct guest *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		if (!g->pending) {
			pthread_cond_wait(&g->cv, &g->lock);
			continue;
		}
		int64_t want = g->pending;
		int64_t step = want > 0 ? (want < 64 ? want : 64) : (want > -64 ? want : -64);
		struct pgt_range batch[64];
		size_t n = 0;

		pthread_mutex_unlock(&g->lock);
		if (step > 0) {
			while ((int64_t)n < step) {
				uint64_t u = pgt_test_rand(&g->seed) % NUNITS;
				bool dup = false;

				/* a balloon driver takes free guest pages: never
				 * ones a device has mapped */
				if (g->ballooned[u] || pgt_pinned_test(g->eng, GPA0 + u * UNIT))
					continue;
				for (size_t i = 0; i < n; i++)
					dup |= batch[i].gpa == GPA0 + u * UNIT;
				if (dup)
					continue;
				batch[n++] = (struct pgt_range){ GPA0 + u * UNIT, UNIT };
			}
			if (pgt_release_batch(g->eng, batch, n, 0, NULL) != step)
				atomic_fetch_add(&g->errors, 1);
			for (size_t i = 0; i < n; i++)
				g->ballooned[(batch[i].gpa - GPA0) / UNIT] = 1;
		} else {
			int64_t left = -step;

			for (uint64_t u = 0; u < NUNITS && left; u++) {
				if (!g->ballooned[u])
					continue;
				if (pgt_reclaim(g->eng, GPA0 + u * UNIT, UNIT) != 1)
					atomic_fetch_add(&g->errors, 1);
				g->ballooned[u] = 0;
				left--;
			}
		}
		pthread_mutex_lock(&g->lock);
		/* only count it down if no new request replaced it */
		if (g->pending == want)
			g->pending -= step;
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

static void guest_start(struct guest *g)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = LEN, .gpa = GPA0,
		.numa_node = -1, .name = "guest",
	};
	struct pgt_region_info info = { .size = sizeof(info) };

	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->cooperative = true;
	g->seed = pgt_test_seed();
	assert_int_equal(pgt_engine_open(NULL, &g->eng), 0);
	assert_int_equal(pgt_region_create(g->eng, &rc, &g->r), 0);
	assert_int_equal(pgt_region_info(g->r, &info), 0);
	g->mem = info.addr;
	memset(g->mem, 1, LEN);
	assert_int_equal(pthread_create(&g->th, NULL, guest_thread, g), 0);
}

static void guest_stop(struct guest *g)
{
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->th, NULL);
	assert_int_equal(atomic_load(&g->errors), 0);
	pgt_region_destroy(g->r);
	pgt_engine_close(g->eng);
}

static struct pgt_memory_limits limits(uint64_t smin, uint64_t dmin, uint64_t target,
				       uint64_t dmax, uint64_t smax)
{
	return (struct pgt_memory_limits){
		.size = sizeof(struct pgt_memory_limits), .static_min = smin, .dynamic_min = dmin,
		.target = target, .dynamic_max = dmax, .static_max = smax,
	};
}

static pgt_target *open_target(struct guest *g, struct pgt_memory_limits l, uint64_t retry_ns)
{
	struct pgt_target_config cfg = {
		.size = sizeof(cfg), .limits = l, .balloon = balloon, .balloon_arg = g,
		.retry_ns = retry_ns,
	};
	pgt_target *t;

	assert_int_equal(pgt_target_open(g->eng, &cfg, &t), 0);
	return t;
}

/* ------------------------------------------------------------------ */

static void test_limits_check(void **state)
{
	struct pgt_memory_limits l = limits(64 * MiB, 128 * MiB, 256 * MiB, 512 * MiB, 512 * MiB);
	char why[200];

	(void)state;
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	l.dynamic_min = 300 * MiB;
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "dynamic_min (300 MiB) > target (256 MiB)"));
	l = limits(64 * MiB, 32 * MiB, 256 * MiB, 512 * MiB, 512 * MiB);
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "static_min"));
	l = limits(0, 0, 600 * MiB, 512 * MiB, 512 * MiB);
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "target (600 MiB) > dynamic_max (512 MiB)"));
	l = limits(0, 0, 0, 1024 * MiB, 512 * MiB);
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "dynamic_max"));
	l = limits(0, 0, 0, 0, 0);
	assert_int_equal(pgt_limits_check(&l, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "static_max is 0"));
	l = limits(0, 0, 0, 0, 1);
	assert_int_equal(pgt_limits_check(&l, NULL, 0), 0);
	assert_int_equal(pgt_limits_check(NULL, why, sizeof(why)), -EINVAL);
	l.size = 8;
	assert_int_equal(pgt_limits_check(&l, why, 4), -EINVAL); /* truncated reason */
	assert_int_equal(strlen(why), 3);
}

static void test_balloon_reaches_target(void **state)
{
	struct pgt_target_status st = { .size = sizeof(st) };
	struct guest g;
	pgt_target *t;

	(void)state;
	guest_start(&g);
	t = open_target(&g, limits(8 * MiB, 8 * MiB, LEN, LEN, LEN), 0);
	assert_int_equal(pgt_target_wait(t, 0), 0); /* at target already */

	assert_int_equal(pgt_target_set(t, 20 * MiB), 0);
	assert_int_equal(g.last_ask, (int64_t)(12 * MiB / UNIT));
	assert_int_equal(pgt_target_wait(t, 5000000000ULL), 0);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_true(st.reached);
	assert_true(st.cooperative);
	assert_int_equal(st.guest, 20 * MiB);
	assert_int_equal(st.missing, 0);
	assert_true(st.reached_ns >= st.set_ns);
	assert_int_equal(pgt_released_count(g.r), (int64_t)(12 * MiB / UNIT));

	/* deflate half way back */
	assert_int_equal(pgt_target_set(t, 26 * MiB), 0);
	assert_int_equal(g.last_ask, -(int64_t)(6 * MiB / UNIT));
	assert_int_equal(pgt_target_wait(t, 5000000000ULL), 0);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_int_equal(st.guest, 26 * MiB);
	pgt_target_close(t);
	guest_stop(&g);
}

/*
 * A guest that stops 1 MiB short of its target and then jitters around
 * (free page reporting moving released memory back and forth): without a
 * tolerance the target is not reached and the jitter is not progress, so
 * the balloon is asked again; with a 2 MiB tolerance it is reached.
 */
static void test_tolerance_and_progress(void **state)
{
	struct pgt_target_status st = { .size = sizeof(st) };
	struct guest g;
	struct pgt_target_config cfg;
	pgt_target *t;

	(void)state;
	guest_start(&g);
	g.cooperative = false; /* the test plays the guest */
	cfg = (struct pgt_target_config){
		.size = sizeof(cfg), .limits = limits(0, 0, LEN, LEN, LEN), .balloon = balloon,
		.balloon_arg = &g, .retry_ns = 5000000ULL,
	};
	assert_int_equal(pgt_target_open(g.eng, &cfg, &t), 0);
	assert_int_equal(pgt_target_set(t, 16 * MiB), 0);
	/* give back 15 MiB of the 16 asked */
	assert_int_equal(pgt_release(g.eng, GPA0, 15 * MiB, 0, NULL), (int64_t)(15 * MiB / UNIT));
	for (int i = 0; i < 20; i++) { /* jitter: one unit back and forth */
		assert_int_equal(pgt_reclaim(g.eng, GPA0, UNIT), 1);
		assert_int_equal(pgt_release(g.eng, GPA0, UNIT, 0, NULL), 1);
	}
	int calls = atomic_load(&g.calls);

	assert_int_equal(pgt_target_wait(t, 30000000ULL), -ETIMEDOUT);
	assert_true(atomic_load(&g.calls) > calls); /* jitter was not progress */
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_false(st.reached);
	assert_int_equal(st.missing, (int64_t)MiB);
	pgt_target_close(t);

	cfg.tolerance = 2 * MiB;
	assert_int_equal(pgt_target_open(g.eng, &cfg, &t), 0);
	assert_int_equal(pgt_target_set(t, 16 * MiB), 0);
	assert_int_equal(pgt_target_wait(t, 30000000ULL), 0);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_true(st.reached);
	pgt_target_close(t);
	guest_stop(&g);
}

static void test_uncooperative_guest(void **state)
{
	struct pgt_target_status st = { .size = sizeof(st) };
	struct guest g;
	pgt_target *t;
	uint64_t t0, waited;

	(void)state;
	guest_start(&g);
	g.cooperative = false;
	t = open_target(&g, limits(0, 0, LEN, LEN, LEN), 10000000ULL /* 10 ms */);
	assert_int_equal(pgt_target_set(t, 16 * MiB), 0);
	t0 = pgt_hal_now_ns();
	assert_int_equal(pgt_target_wait(t, 100000000ULL), -ETIMEDOUT);
	waited = pgt_hal_now_ns() - t0;
	assert_true(waited >= 100000000ULL && waited < 1000000000ULL);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_false(st.reached);
	assert_false(st.cooperative);
	assert_int_equal(st.missing, (int64_t)(16 * MiB));
	assert_true(st.balloon_calls >= 3); /* asked again without progress */
	assert_int_equal(st.balloon_errors, 0);
	assert_int_equal(pgt_released_count(g.r), 0);

	/* the guest wakes up: next request is answered, the flag recovers */
	pthread_mutex_lock(&g.lock);
	g.cooperative = true;
	pthread_mutex_unlock(&g.lock);
	assert_int_equal(pgt_target_wait(t, 5000000000ULL), 0);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_true(st.cooperative);
	assert_int_equal(st.guest, 16 * MiB);
	pgt_target_close(t);
	guest_stop(&g);
}

static int failing_balloon(void *arg, int64_t pages)
{
	(void)arg;
	(void)pages;
	return -EIO;
}

static void test_refused_targets(void **state)
{
	struct pgt_target_status st = { .size = sizeof(st) };
	struct pgt_memory_limits l;
	struct guest g;
	pgt_target *t;

	(void)state;
	guest_start(&g);
	t = open_target(&g, limits(4 * MiB, 8 * MiB, LEN, LEN, LEN), 0);
	/* outside the dynamic range */
	assert_int_equal(pgt_target_set(t, 4 * MiB), -EINVAL);
	assert_int_equal(pgt_target_set(t, LEN + UNIT), -EINVAL);
	/* pinned memory makes a small target unsafe */
	assert_int_equal(pgt_pin(g.eng, GPA0, 20 * MiB), 0);
	assert_int_equal(pgt_target_set(t, 10 * MiB), -ENOSPC);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_int_equal(st.target, LEN); /* unchanged */
	assert_int_equal(st.balloon_calls, 0);
	assert_int_equal(pgt_target_set(t, 20 * MiB), 0); /* just fits */
	assert_int_equal(pgt_target_wait(t, 5000000000ULL), 0);
	assert_int_equal(pgt_unpin(g.eng, GPA0, 20 * MiB), 0);

	/* live limits: static ones are fixed, dynamic ones move the target */
	l = limits(4 * MiB, 8 * MiB, 20 * MiB, LEN, 2 * LEN);
	assert_int_equal(pgt_target_set_limits(t, &l), -EBUSY);
	l = limits(4 * MiB, 2 * MiB, 20 * MiB, LEN, LEN);
	assert_int_equal(pgt_target_set_limits(t, &l), -EINVAL);
	l = limits(4 * MiB, 12 * MiB, 16 * MiB, 24 * MiB, LEN);
	assert_int_equal(pgt_target_set_limits(t, &l), 0);
	assert_int_equal(pgt_target_wait(t, 5000000000ULL), 0);
	assert_int_equal(pgt_target_status(t, &st), 0);
	assert_int_equal(st.guest, 16 * MiB);
	assert_int_equal(st.limits.dynamic_max, 24 * MiB);
	assert_int_equal(pgt_target_set(t, 26 * MiB), -EINVAL); /* above the new max */
	pgt_target_close(t);

	/* a failing balloon is reported */
	{
		struct pgt_target_config cfg = {
			.size = sizeof(cfg), .limits = limits(0, 0, LEN, LEN, LEN),
			.balloon = failing_balloon,
		};

		assert_int_equal(pgt_target_open(g.eng, &cfg, &t), 0);
		assert_int_equal(pgt_target_set(t, 8 * MiB), -EIO);
		assert_int_equal(pgt_target_status(t, &st), 0);
		assert_int_equal(st.last_error, -EIO);
		assert_int_equal(st.balloon_errors, 1);
		pgt_target_close(t);
		cfg.balloon = NULL;
		assert_int_equal(pgt_target_open(g.eng, &cfg, &t), -EINVAL);
		cfg.balloon = failing_balloon;
		cfg.limits.target = 2 * LEN;
		assert_int_equal(pgt_target_open(g.eng, &cfg, &t), -EINVAL);
	}
	guest_stop(&g);
}

static void test_overhead_and_maximise(void **state)
{
	struct pgt_overhead_params p = {
		.size = sizeof(p), .page_size = 2 * MiB, .track = PGT_TRACK_DIRTY | PGT_TRACK_TOUCH,
		.dirty_views = 2, .dirty_method = PGT_DIRTY_UFFD_ASYNC,
		.hv_fixed = 32 * MiB, .hv_per_gib = 8 * MiB,
	};
	uint64_t ov1, ov2, ov4k, g, ovg, ovn;

	(void)state;
	assert_int_equal(pgt_compute_overhead(&p, 1ULL << 30, &ov1), 0);
	assert_int_equal(pgt_compute_overhead(&p, 2ULL << 30, &ov2), 0);
	assert_true(ov1 > 40 * MiB && ov1 < 41 * MiB); /* 32 + 8 MiB + metadata */
	assert_true(ov2 > ov1 + 8 * MiB - 1);
	p.page_size = UNIT;
	assert_int_equal(pgt_compute_overhead(&p, 1ULL << 30, &ov4k), 0);
	assert_true(ov4k > ov1); /* 512 times the bits */
	/* 4 KiB tracking of 1 GiB: bitmaps of 32 KiB each, a 1 MiB order log */
	assert_true(ov4k - 40 * MiB < 4 * MiB);

	assert_int_equal(pgt_maximise_memory(&p, 4ULL << 30, &g), 0);
	assert_int_equal(g % UNIT, 0);
	assert_int_equal(pgt_compute_overhead(&p, g, &ovg), 0);
	assert_int_equal(pgt_compute_overhead(&p, g + UNIT, &ovn), 0);
	assert_true(g + ovg <= 4ULL << 30);
	assert_true(g + UNIT + ovn > 4ULL << 30);
	pgt_test_note("4 GiB host, 4 KiB pages: guest %llu MiB + overhead %llu KiB",
		      (unsigned long long)g >> 20, (unsigned long long)ovg >> 10);
	assert_int_equal(pgt_maximise_memory(&p, 32 * MiB, &g), -ENOSPC);

	p.page_size = 3000;
	assert_int_equal(pgt_compute_overhead(&p, 1ULL << 30, &ov1), -EINVAL);
	p.page_size = UNIT;
	p.dirty_method = 99;
	assert_int_equal(pgt_maximise_memory(&p, 1ULL << 30, &g), -EINVAL);
	assert_int_equal(pgt_compute_overhead(NULL, 1, &ov1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits_check),
		cmocka_unit_test(test_balloon_reaches_target),
		cmocka_unit_test(test_uncooperative_guest),
		cmocka_unit_test(test_tolerance_and_progress),
		cmocka_unit_test(test_refused_targets),
		cmocka_unit_test(test_overhead_and_maximise),
	};

	return cmocka_run_group_tests_name("target", tests, NULL, NULL);
}
