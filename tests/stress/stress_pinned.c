/* SPDX-License-Identifier: MIT */
/*
 * Pinned pages are never released, under concurrent releases and re-touches.
 *
 * Threads on one region: a releaser giving random ranges back (every unit
 * at some point, pinned or not), a toucher writing random pages again
 * (deflate; with first-touch tracking these go through the uffd handler), a
 * pinner that pins a random range, writes a pattern into it, lets the others
 * run, checks that the pattern survived (a released page would read zero),
 * and unpins. A few pages stay pinned for the whole run and are checked the
 * same way. Afterwards the release state must pass its self-check.
 * Run time: PGT_STRESS_SECONDS (default 1) per memory type.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pgtrack.h>

#include "engine/release_pvt.h"

#define MiB (1ULL << 20)
#define UNIT PGT_RELEASE_UNIT
#define GPA0 (1ULL << 30)
#define FIXED 8 /* permanently pinned units, spread over the region */

static struct pgt_probe probe = { .size = sizeof(probe) };

struct ctx {
	pgt_engine *eng;
	pgt_region *r;
	uint8_t *mem;
	uint64_t len, nunits, seed;
	uint64_t fixed[FIXED];
	atomic_bool stop;
	atomic_ulong releases, refused, touches, pins, lost;
};

static double seconds(void)
{
	const char *e = getenv("PGT_STRESS_SECONDS");
	double s = e ? atof(e) : 1.0;

	return s > 0 ? s : 1.0;
}

static uint64_t pattern(uint64_t unit, uint64_t gen)
{
	return (unit * 0x9E3779B97F4A7C15ULL) ^ gen ^ 0x5555;
}

static bool check_unit(struct ctx *c, uint64_t u, uint64_t gen)
{
	const volatile uint64_t *w = (const volatile uint64_t *)(c->mem + u * UNIT);

	return w[0] == pattern(u, gen) && w[UNIT / 8 - 1] == pattern(u, gen);
}

static void write_unit(struct ctx *c, uint64_t u, uint64_t gen)
{
	volatile uint64_t *w = (volatile uint64_t *)(c->mem + u * UNIT);

	w[0] = pattern(u, gen);
	w[UNIT / 8 - 1] = pattern(u, gen);
}

static void *releaser(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = c->seed ^ 1;

	while (!atomic_load(&c->stop)) {
		uint64_t n = 1 + pgt_test_rand(&s) % 64;
		uint64_t u = pgt_test_rand(&s) % (c->nunits - n);
		struct pgt_release_result res = { .size = sizeof(res) };
		int64_t got = pgt_release(c->eng, GPA0 + u * UNIT, n * UNIT,
					  PGT_RELEASE_REPEAT_OK, &res);

		if (got < 0) {
			pgt_test_note("release failed: %lld", (long long)got);
			atomic_fetch_add(&c->lost, 1);
			break;
		}
		atomic_fetch_add(&c->releases, 1);
		atomic_fetch_add(&c->refused, res.pinned);
	}
	return NULL;
}

static void *toucher(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = c->seed ^ 2;

	while (!atomic_load(&c->stop)) {
		uint64_t u = pgt_test_rand(&s) % c->nunits;
		bool fixed = false;

		for (int i = 0; i < FIXED; i++)
			fixed |= c->fixed[i] == u;
		/* the pinner's units hold patterns: touch them by reading only */
		if (fixed || pgt_pinned_test(c->eng, GPA0 + u * UNIT) == 1)
			(void)*(volatile uint8_t *)(c->mem + u * UNIT + 8);
		else
			c->mem[u * UNIT + 8 + pgt_test_rand(&s) % 64] = 1;
		atomic_fetch_add(&c->touches, 1);
		if ((atomic_load(&c->touches) & 255) == 0)
			sched_yield();
	}
	return NULL;
}

static void *pinner(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = c->seed ^ 3, gen = 1;

	while (!atomic_load(&c->stop)) {
		uint64_t n = 1 + pgt_test_rand(&s) % 8;
		uint64_t u = pgt_test_rand(&s) % (c->nunits - n);
		bool clash = false;

		for (int i = 0; i < FIXED; i++)
			clash |= c->fixed[i] >= u && c->fixed[i] < u + n;
		if (clash)
			continue;
		if (pgt_pin(c->eng, GPA0 + u * UNIT, n * UNIT)) {
			atomic_fetch_add(&c->lost, 1);
			break;
		}
		gen++;
		for (uint64_t i = u; i < u + n; i++)
			write_unit(c, i, gen);
		for (int k = 0; k < 20; k++)
			sched_yield();
		for (uint64_t i = u; i < u + n; i++)
			if (!check_unit(c, i, gen) || pgt_released_test(c->eng, GPA0 + i * UNIT) != 0) {
				pgt_test_note("pinned unit %llu lost its data or was released",
					      (unsigned long long)i);
				atomic_fetch_add(&c->lost, 1);
			}
		if (pgt_unpin(c->eng, GPA0 + u * UNIT, n * UNIT))
			atomic_fetch_add(&c->lost, 1);
		atomic_fetch_add(&c->pins, 1);
	}
	return NULL;
}

static void run(int backing, uint64_t len, uint32_t track)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = len, .gpa = GPA0,
		.track = track, .numa_node = -1, .name = "stress-pinned",
	};
	struct ctx c = { .len = len, .nunits = len / UNIT };
	struct pgt_region_info info = { .size = sizeof(info) };
	pthread_t th[3];
	struct timespec ts;
	const char *why = NULL;
	double secs = seconds();

	c.seed = pgt_test_seed();
	assert_int_equal(pgt_engine_open(NULL, &c.eng), 0);
	assert_int_equal(pgt_region_create(c.eng, &rc, &c.r), 0);
	assert_int_equal(pgt_region_info(c.r, &info), 0);
	c.mem = info.addr;
	memset(c.mem, 0x33, len);
	for (int i = 0; i < FIXED; i++) {
		c.fixed[i] = (uint64_t)i * (c.nunits / FIXED) + 17;
		assert_int_equal(pgt_pin(c.eng, GPA0 + c.fixed[i] * UNIT, UNIT), 0);
		write_unit(&c, c.fixed[i], 0);
	}
	assert_int_equal(pthread_create(&th[0], NULL, releaser, &c), 0);
	assert_int_equal(pthread_create(&th[1], NULL, toucher, &c), 0);
	assert_int_equal(pthread_create(&th[2], NULL, pinner, &c), 0);
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
	atomic_store(&c.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);

	for (int i = 0; i < FIXED; i++) {
		assert_true(check_unit(&c, c.fixed[i], 0));
		assert_int_equal(pgt_pinned_test(c.eng, GPA0 + c.fixed[i] * UNIT), 1);
		assert_int_equal(pgt_released_test(c.eng, GPA0 + c.fixed[i] * UNIT), 0);
	}
	pgt_test_note("%s: %lu releases (%lu pinned units refused), %lu touches, %lu pin cycles",
		      pgt_backing_name(backing), atomic_load(&c.releases), atomic_load(&c.refused),
		      atomic_load(&c.touches), atomic_load(&c.pins));
	assert_int_equal(atomic_load(&c.lost), 0);
	assert_true(atomic_load(&c.refused) > 0); /* the race was actually run */
	assert_int_equal(pgt_pinned_count(c.r), FIXED);
	if (!pgt__rel_validate((struct pgt_region *)c.r, &why))
		fail_msg("release state invalid: %s", why);
	pgt_region_destroy(c.r);
	pgt_engine_close(c.eng);
}

static void test_anon(void **state)
{
	(void)state;
	run(PGT_BACKING_ANON, 16 * MiB, 0);
}

static void test_anon_touch(void **state)
{
	(void)state;
	if (!probe.touch_tracking) {
		pgt_skip("userfaultfd first-touch tracking not available");
		return;
	}
	run(PGT_BACKING_ANON, 16 * MiB, PGT_TRACK_TOUCH);
}

static void test_hugetlb(void **state)
{
	long free_hp = pgt_test_free_hugepages();

	(void)state;
	if (free_hp < 16) {
		pgt_skip("needs 16 free 2 MiB hugepages, %ld free", free_hp);
		return;
	}
	run(PGT_BACKING_HUGETLB, 16 * MiB, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anon),
		cmocka_unit_test(test_anon_touch),
		cmocka_unit_test(test_hugetlb),
	};

	pgt_probe(&probe);
	return cmocka_run_group_tests_name("stress_pinned", tests, NULL, NULL);
}
