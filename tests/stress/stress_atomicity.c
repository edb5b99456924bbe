/* SPDX-License-Identifier: MIT */
/*
 * Get-and-clear atomicity: threads increment counters in a few pages as fast
 * as they can while the harvester harvests in a loop. Snapshot the counters
 * right after harvest k returns (S_k) and right before harvest k+1 starts
 * (T_k+1): a page whose counter moved between S_k and T_k+1 was written after
 * harvest k finished, so harvest k+1 must report it. Every method × memory
 * type; 10 × PGT_STRESS_ROUNDS harvests per case (default 10000).
 */
#include "tests/common/testutil.h"
#include "tests/common/matrix.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define THREADS 2
#define HOT 8 /* pages with counters */

static struct pgt_probe probe = { .size = sizeof(probe) };
static long rounds = 10000;

struct ctx {
	uint8_t *mem;
	uint64_t page_size;
	uint64_t hot[HOT];
	_Atomic int quit;
	_Atomic int paused;
	_Atomic int parked;
	_Atomic int running;
};

static void *incrementer(void *arg)
{
	struct ctx *x = arg;
	unsigned i = 0;

	atomic_fetch_add(&x->running, 1);
	while (!atomic_load_explicit(&x->quit, memory_order_relaxed)) {
		if (atomic_load_explicit(&x->paused, memory_order_acquire)) {
			atomic_fetch_add(&x->parked, 1);
			while (atomic_load_explicit(&x->paused, memory_order_acquire))
				;
			atomic_fetch_sub(&x->parked, 1);
			continue;
		}
		atomic_fetch_add_explicit((_Atomic uint64_t *)(x->mem + x->hot[i++ % HOT] * x->page_size),
					  1, memory_order_relaxed);
	}
	return NULL;
}

static int quiesce(void *arg, bool pause)
{
	struct ctx *x = arg;

	if (pause) {
		/*
		 * Wait only for the incrementers that have started: one that
		 * counts itself in running after we read it checks paused
		 * (already set) before its first write. At region creation
		 * (soft-dirty syncs then) none exist yet.
		 */
		atomic_store(&x->paused, 1);
		while (atomic_load(&x->parked) < atomic_load(&x->running) &&
		       !atomic_load(&x->quit))
			;
	} else {
		atomic_store(&x->paused, 0);
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void snapshot(struct ctx *x, uint64_t *out)
{
	for (int i = 0; i < HOT; i++)
		out[i] = atomic_load((_Atomic uint64_t *)(x->mem + x->hot[i] * x->page_size));
}

static void run_case(void **state)
{
	const struct pgt_case *c = *state;
	uint64_t len = 64u << 20;
	const char *why = pgt_matrix_skip(c, &probe, len, pgt_test_free_hugepages());
	struct ctx x = { 0 };
	pthread_t t[THREADS];
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	uint64_t s[HOT], tt[HOT], *bm, missed = 0, moved = 0;
	struct pgt_region_info info = { .size = sizeof(info) };
	size_t words;

	if (why)
		pgt_skip("%s: %s", c->name, why);

	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)c->backing, .length = len,
		.track = PGT_TRACK_DIRTY, .dirty_method = c->method, .numa_node = -1,
		.name = c->name, .quiesce = quiesce, .quiesce_arg = &x,
	};

	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	x.mem = info.addr;
	x.page_size = info.page_size;
	for (int i = 0; i < HOT; i++) /* spread: first, last, and between */
		x.hot[i] = i == HOT - 1 ? info.npages - 1 : (info.npages / HOT) * (uint64_t)i + (uint64_t)i;
	words = (info.npages + 63) / 64;
	bm = calloc(words, 8);
	assert_non_null(bm);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, incrementer, &x), 0);

	while (atomic_load(&x.running) < THREADS)
		sched_yield();
	uint64_t rng = 0x1234567 ^ (uint64_t)c->method ^ (uint64_t)c->backing << 8;

	snapshot(&x, s);
	for (long k = 0; k < rounds; k++) {
		/* let the incrementers run for a random moment (0–100 µs; a
		 * fault-driven write takes 5–60 µs here) */
		uint64_t until = now_ns() + pgt_test_rand(&rng) % 100000;

		while (now_ns() < until)
			;
		/*
		 * On a slow guest (TCG, 2 vCPUs shared with the fault
		 * handler) the writers may not have completed one write in
		 * any short window: give the last one up to 2 s, until some
		 * hot page moves, so the check below has something to check.
		 */
		if (k == rounds - 1 && !moved) {
			until = now_ns() + 2000000000u;
			snapshot(&x, tt);
			while (now_ns() < until && !memcmp(tt, s, sizeof(tt))) {
				sched_yield();
				snapshot(&x, tt);
			}
		}
		struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)bm,
					 .bitmap_words = words };

		snapshot(&x, tt);
		assert_true(pgt_dirty_harvest(v, &h) >= 0);
		for (int i = 0; i < HOT; i++) {
			if (tt[i] == s[i])
				continue;
			moved++;
			if (!(bm[x.hot[i] / 64] >> (x.hot[i] % 64) & 1)) {
				if (missed < 10)
					pgt_test_note("%s harvest %ld: page %llu incremented %llu times, not reported",
						      c->name, k, (unsigned long long)x.hot[i],
						      (unsigned long long)(tt[i] - s[i]));
				missed++;
			}
		}
		snapshot(&x, s);
	}
	atomic_store(&x.quit, 1);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pgt_test_note("%s: %ld harvests, %llu page-rounds with increments, %llu missed",
		      c->name, rounds, (unsigned long long)moved, (unsigned long long)missed);
	pgt_dirty_view_close(v);
	assert_int_equal(pgt_region_destroy(r), 0);
	pgt_engine_close(eng);
	free(bm);
	assert_int_equal(missed, 0);
	assert_true(moved > 0);
}

int main(void)
{
	static struct pgt_case cases[PGT_MATRIX_N];
	struct CMUnitTest tests[PGT_MATRIX_N];
	int n = pgt_matrix_fill(cases);
	const char *env = getenv("PGT_STRESS_ROUNDS");

	if (env && atol(env) > 0)
		rounds = atol(env) * 10;
	pgt_probe(&probe);
	for (int i = 0; i < n; i++)
		tests[i] = (struct CMUnitTest){ cases[i].name, run_case, NULL, NULL, &cases[i] };
	return _cmocka_run_group_tests("atomicity", tests, (size_t)n, NULL, NULL);
}
