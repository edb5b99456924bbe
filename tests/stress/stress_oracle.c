/* SPDX-License-Identifier: MIT */
/*
 * The no-lost-dirty-page oracle, for every dirty method × memory type.
 *
 * A region of 256 MiB + 3 pages (the odd tail exercises bitmap edges). Each
 * round has a generation number g. Writer threads store g into random pages
 * and log which; the harvester harvests at a random moment while they run
 * (H1), then stops them and harvests again (H2). For every page:
 *   value == g  ⇒  reported in H1 ∪ H2      (a violation otherwise: a lost write)
 *   reported    ⇒  value == g               (otherwise over-reporting, counted)
 * Each round checks the logged pages and the reported ones; every 64th round
 * (and the last) also scans every page of the region.
 *
 * PGT_STRESS_ROUNDS sets rounds per case (default 1000), PGT_STRESS_MB the
 * region size in MiB (default 256).
 */
#include "tests/common/testutil.h"
#include "tests/common/matrix.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 2
#define LOG_CAP (1u << 15)

static struct pgt_probe probe = { .size = sizeof(probe) };
static uint64_t seed;
static long rounds = 1000;
static uint64_t region_mb = 256;

struct writer {
	pthread_t tid;
	struct oracle *o;
	uint64_t rng;
	uint64_t *log;
	size_t nlog;
};

struct oracle {
	uint8_t *mem;
	uint64_t npages, page_size;
	_Atomic uint64_t gen;
	_Atomic int stop;
	_Atomic int quit;
	_Atomic int paused;      /* soft-dirty quiesce */
	_Atomic int parked;
	pthread_barrier_t start, stopped;
	struct writer w[WRITERS];
};

static inline _Atomic uint64_t *slot(struct oracle *o, uint64_t p)
{
	return (_Atomic uint64_t *)(o->mem + p * o->page_size);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct oracle *o = w->o;

	for (;;) {
		pthread_barrier_wait(&o->start);
		if (atomic_load(&o->quit))
			return NULL;
		uint64_t g = atomic_load(&o->gen);

		w->nlog = 0;
		while (!atomic_load_explicit(&o->stop, memory_order_acquire)) {
			if (atomic_load_explicit(&o->paused, memory_order_acquire)) {
				atomic_fetch_add(&o->parked, 1);
				while (atomic_load_explicit(&o->paused, memory_order_acquire))
					;
				atomic_fetch_sub(&o->parked, 1);
				continue;
			}
			if (w->nlog == LOG_CAP)
				continue; /* enough for this round: spin until stopped */
			uint64_t p = pgt_test_rand(&w->rng) % o->npages;

			/* log first: a page may be written but never unlogged */
			w->log[w->nlog++] = p;
			atomic_store_explicit(slot(o, p), g, memory_order_relaxed);
		}
		pthread_barrier_wait(&o->stopped);
	}
}

/* soft-dirty: pause the writers between pagemap read and clear_refs */
static int quiesce(void *arg, bool pause)
{
	struct oracle *o = arg;

	if (pause) {
		/*
		 * parked is not reset here: a writer released by the last
		 * resume may not have counted itself out yet, and resetting
		 * would let the count end below WRITERS and spin forever.
		 * Writers not inside a round (stop set, also at region
		 * creation) are not writing either.
		 */
		atomic_store(&o->paused, 1);
		while (!atomic_load(&o->stop) && atomic_load(&o->parked) < WRITERS)
			;
	} else {
		atomic_store(&o->paused, 0);
	}
	return 0;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(us * 1000) };

	nanosleep(&ts, NULL);
}

static int64_t harvest_into(pgt_dirty_view *v, uint64_t *bm, size_t words)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)bm,
				 .bitmap_words = words };

	return pgt_dirty_harvest(v, &h);
}

struct tally {
	uint64_t violations, over, reported, written, full_scans;
};

static void lost(struct tally *t, const char *name, long k, const char *how, uint64_t p)
{
	if (t->violations < 10)
		pgt_test_note("%s round %ld: %spage %llu %s", name, k, how, (unsigned long long)p,
			      *how ? "lost" : "written, not reported");
	t->violations++;
}

/* Round @k's harvests (@h1): every logged write reported, and every
 * reported page holding this generation (else it is over-reported). */
static void check_round(struct oracle *o, const uint64_t *h1, size_t words, long k,
			const char *name, struct tally *t)
{
	for (int i = 0; i < WRITERS; i++) {
		for (size_t j = 0; j < o->w[i].nlog; j++) {
			uint64_t p = o->w[i].log[j];

			if (!(h1[p / 64] >> (p % 64) & 1))
				lost(t, name, k, "", p);
		}
		t->written += o->w[i].nlog;
	}
	for (size_t i = 0; i < words; i++) {
		for (uint64_t m = h1[i]; m; m &= m - 1) {
			uint64_t p = i * 64 + (uint64_t)__builtin_ctzll(m);

			t->reported++;
			if (atomic_load_explicit(slot(o, p), memory_order_relaxed) != (uint64_t)k)
				t->over++;
		}
	}
}

/* Every page of the region: one holding generation @k must be reported. */
static void full_scan(struct oracle *o, const uint64_t *h1, long k, const char *name,
		      struct tally *t)
{
	t->full_scans++;
	for (uint64_t p = 0; p < o->npages; p++) {
		uint64_t val = atomic_load_explicit(slot(o, p), memory_order_relaxed);

		if (val == (uint64_t)k && !(h1[p / 64] >> (p % 64) & 1))
			lost(t, name, k, "full scan: ", p);
		assert_true(val <= (uint64_t)k);
	}
}

static void start_writers(struct oracle *o, uint64_t rng)
{
	pthread_barrier_init(&o->start, NULL, WRITERS + 1);
	pthread_barrier_init(&o->stopped, NULL, WRITERS + 1);
	for (int i = 0; i < WRITERS; i++) {
		o->w[i].o = o;
		o->w[i].rng = rng + (uint64_t)i * 0x9e3779b97f4a7c15ULL + 1;
		o->w[i].log = malloc(LOG_CAP * sizeof(uint64_t));
		assert_non_null(o->w[i].log);
		assert_int_equal(pthread_create(&o->w[i].tid, NULL, writer_main, &o->w[i]), 0);
	}
}

static void stop_writers(struct oracle *o)
{
	atomic_store(&o->quit, 1);
	pthread_barrier_wait(&o->start);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(o->w[i].tid, NULL);
		free(o->w[i].log);
	}
	pthread_barrier_destroy(&o->start);
	pthread_barrier_destroy(&o->stopped);
}

/* One round: writers run while the view is harvested, then once more
 * after they stopped; @h1 gets both harvests. */
static void one_round(struct oracle *o, pgt_dirty_view *v, uint64_t *h1, uint64_t *h2,
		      size_t words, long k, uint64_t *rng)
{
	atomic_store(&o->gen, (uint64_t)k);
	atomic_store(&o->stop, 0);
	pthread_barrier_wait(&o->start);
	sleep_us(pgt_test_rand(rng) % 400);
	assert_true(harvest_into(v, h1, words) >= 0);
	sleep_us(pgt_test_rand(rng) % 400);
	atomic_store_explicit(&o->stop, 1, memory_order_release);
	pthread_barrier_wait(&o->stopped);
	assert_true(harvest_into(v, h2, words) >= 0);
	for (size_t i = 0; i < words; i++)
		h1[i] |= h2[i];
}

static void run_case(void **state)
{
	const struct pgt_case *c = *state;
	uint64_t extra_pages = 3;
	uint64_t ps = c->backing == PGT_BACKING_HUGETLB ? 2u << 20 : (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t len = (region_mb << 20) + extra_pages * ps;
	const char *why = pgt_matrix_skip(c, &probe, len, pgt_test_free_hugepages());
	uint64_t rng = seed ^ (uint64_t)c->method * 7919 ^ (uint64_t)c->backing;
	struct pgt_region_info info = { .size = sizeof(info) };
	struct tally t = { 0 };
	struct oracle *o;
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	uint64_t *h1, *h2;
	size_t words;

	if (why)
		pgt_skip("%s: %s", c->name, why);
	o = calloc(1, sizeof(*o));
	assert_non_null(o);
	atomic_store(&o->stop, 1); /* no writer runs outside a round */

	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)c->backing, .length = len,
		.track = PGT_TRACK_DIRTY, .dirty_method = c->method, .numa_node = -1,
		.name = c->name, .quiesce = quiesce, .quiesce_arg = o,
	};

	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	o->mem = info.addr;
	o->npages = info.npages;
	o->page_size = info.page_size;
	words = (o->npages + 63) / 64;
	h1 = calloc(words, 8);
	h2 = calloc(words, 8);
	assert_non_null(h1);
	assert_non_null(h2);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);

	start_writers(o, rng);
	for (long k = 1; k <= rounds; k++) {
		one_round(o, v, h1, h2, words, k, &rng);
		check_round(o, h1, words, k, c->name, &t);
		if (k % 64 == 0 || k == rounds)
			full_scan(o, h1, k, c->name, &t);
	}
	stop_writers(o);
	pgt_test_note("%s: %ld rounds, %llu pages, %llu writes, %llu reported, %llu violations, "
		      "over-reported %llu (%.3f%%), %llu full scans",
		      c->name, rounds, (unsigned long long)o->npages, (unsigned long long)t.written,
		      (unsigned long long)t.reported, (unsigned long long)t.violations,
		      (unsigned long long)t.over,
		      t.reported ? 100.0 * (double)t.over / (double)t.reported : 0.0,
		      (unsigned long long)t.full_scans);
	pgt_dirty_view_close(v);
	assert_int_equal(pgt_region_destroy(r), 0);
	pgt_engine_close(eng);
	free(h1);
	free(h2);
	free(o);
	assert_int_equal(t.violations, 0);
}

int main(void)
{
	static struct pgt_case cases[PGT_MATRIX_N];
	struct CMUnitTest tests[PGT_MATRIX_N];
	int n = pgt_matrix_fill(cases);
	const char *env;

	if ((env = getenv("PGT_STRESS_ROUNDS")))
		rounds = atol(env) > 0 ? atol(env) : rounds;
	if ((env = getenv("PGT_STRESS_MB")))
		region_mb = strtoull(env, NULL, 0) ? strtoull(env, NULL, 0) : region_mb;
	pgt_probe(&probe);
	seed = pgt_test_seed();
	for (int i = 0; i < n; i++)
		tests[i] = (struct CMUnitTest){ cases[i].name, run_case, NULL, NULL, &cases[i] };
	return _cmocka_run_group_tests("oracle", tests, (size_t)n, NULL, NULL);
}
