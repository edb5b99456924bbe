/* SPDX-License-Identifier: MIT */
/*
 * The no-lost-dirty-page oracle extended to DMA: a CPU writer (seen by the
 * kernel tracker) and the sim offload device (writing through a second
 * mapping of the backing file, seen only through its ring) write at once.
 * Each round has a generation g; both store g into random pages and log
 * them first. Two views harvest at a random moment while they run (H1),
 * then the writers stop (the device parks after publishing its records)
 * and both views harvest again (H2). For each view, every page either
 * writer logged in the round must be in H1 ∪ H2. The device's ring is
 * drained by the views' own harvests (pgt_dirty_harvest()).
 *
 * PGT_OFFLOAD_ROUNDS sets the rounds per memory type (default 300).
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

#define MIB (1ULL << 20)
#define GPA0 (1ULL << 32)
#define LOG_CAP (1u << 16)

static struct pgt_probe probe = { .size = sizeof(probe) };
static uint64_t seed;
static long rounds = 300;

struct oracle {
	uint8_t *mem;
	uint64_t npages;
	unsigned shift;
	_Atomic uint64_t gen;
	/* CPU writer */
	pthread_t cpu;
	_Atomic int cpu_run, cpu_quit, cpu_busy, cpu_paused;
	uint64_t rng;
	uint64_t *cpu_log;
	_Atomic size_t cpu_n;
	/* device */
	_Atomic int dev_pause, dev_parked;
	uint64_t *dev_log;
	_Atomic size_t dev_n;
};

/*
 * busy is raised before run is read (both seq_cst): once the harvester has
 * cleared run and then seen busy low, this writer's last write is done and
 * no other can start.
 */
static void *cpu_main(void *arg)
{
	struct oracle *o = arg;

	while (!atomic_load(&o->cpu_quit)) {
		atomic_store(&o->cpu_busy, 1);
		if (!atomic_load(&o->cpu_run) || atomic_load(&o->cpu_paused)) {
			atomic_store(&o->cpu_busy, 0);
			sched_yield();
			continue;
		}
		size_t n = atomic_load_explicit(&o->cpu_n, memory_order_relaxed);

		if (n == LOG_CAP)
			continue;
		uint64_t p = pgt_test_rand(&o->rng) % o->npages;

		o->cpu_log[n] = p; /* logged before it is written */
		atomic_store_explicit(&o->cpu_n, n + 1, memory_order_release);
		*(volatile uint64_t *)(o->mem + (p << o->shift) + 8 * (p % 64)) = atomic_load(&o->gen);
	}
	atomic_store(&o->cpu_busy, 0);
	return NULL;
}

/*
 * soft-dirty (6.1 guests) is exact only with the writers paused between its
 * pagemap read and clear_refs: the CPU writer parks here. The device needs
 * no pause: no tracker sees its writes, its ring does.
 */
static int quiesce(void *arg, bool pause)
{
	struct oracle *o = arg;

	atomic_store(&o->cpu_paused, pause);
	while (pause && atomic_load(&o->cpu_busy))
		sched_yield();
	return 0;
}

static uint64_t dev_write(void *arg, uint64_t gpa, uint32_t len)
{
	struct oracle *o = arg;
	size_t n = atomic_load_explicit(&o->dev_n, memory_order_relaxed);
	uint64_t first = (gpa - GPA0) >> o->shift, last = (gpa + len - 1 - GPA0) >> o->shift;

	/* logged before the write, every page it touches */
	for (uint64_t p = first; p <= last && n < LOG_CAP; p++)
		o->dev_log[n++] = p;
	atomic_store_explicit(&o->dev_n, n, memory_order_release);
	return atomic_load(&o->gen);
}

static void dev_tick(void *arg)
{
	struct oracle *o = arg;

	while (atomic_load_explicit(&o->dev_pause, memory_order_acquire)) {
		atomic_store_explicit(&o->dev_parked, 1, memory_order_release);
		sched_yield();
	}
	atomic_store_explicit(&o->dev_parked, 0, memory_order_release);
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(us * 1000) };

	nanosleep(&ts, NULL);
}

static void harvest(pgt_dirty_view *v, uint64_t *bm, size_t words)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)bm, .bitmap_words = words };

	assert_true(pgt_dirty_harvest(v, &h) >= 0);
}

static void run(int backing, uint64_t len)
{
	struct oracle o = { .rng = seed };
	struct pgt_offload_sim_config sc = {
		.size = sizeof(sc), .rate = 0, .write_bytes = 64, .batch = 32, .cpu = -1,
		.ring_entries = 1u << 18, .seed = seed, .on_write = dev_write, .on_tick = dev_tick, .arg = &o,
	};
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "sim", .backend_config = &sc };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = len, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "oracle",
		.quiesce = quiesce, .quiesce_arg = &o,
	};
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_region_info ri = { .size = sizeof(ri) };
	struct pgt_offload_range rg;
	pgt_dirty_view *v[2];
	uint64_t *h1[2], *h2[2], lost = 0, cpu_pages = 0, dev_pages = 0, over = 0;
	pgt_engine *e;
	pgt_region *r;
	pgt_offload *dev;
	size_t words;

	if (probe.best_dirty_method == PGT_DIRTY_NONE)
		pgt_skip("no dirty tracker works here");
	if (backing == PGT_BACKING_HUGETLB && (uint64_t)pgt_test_free_hugepages() < len / (2 * MIB))
		pgt_skip("needs %llu free 2 MiB hugepages", (unsigned long long)(len / (2 * MIB)));
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &ri), 0);
	o.mem = ri.addr;
	o.npages = ri.npages;
	o.shift = (unsigned)__builtin_ctzll(ri.page_size);
	o.cpu_log = calloc(LOG_CAP, 8);
	o.dev_log = calloc(LOG_CAP, 8);
	words = ri.npages / 64 + 1;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(pgt_dirty_view_open(r, &v[k]), 0);
		h1[k] = calloc(words, 8);
		h2[k] = calloc(words, 8);
	}
	/* the device starts parked */
	atomic_store(&o.dev_pause, 1);
	assert_int_equal(pgt_offload_open(e, &oc, &dev), 0);
	rg = (struct pgt_offload_range){ .iova = 1ULL << 40, .length = len, .gpa = GPA0 };
	assert_int_equal(pgt_offload_attach(dev, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(dev, 0), 0);
	assert_int_equal(pthread_create(&o.cpu, NULL, cpu_main, &o), 0);
	while (!atomic_load(&o.dev_parked))
		sched_yield();
	for (long round = 0; round < rounds; round++) {
		uint64_t g = (uint64_t)round + 1;

		atomic_store(&o.gen, g);
		atomic_store(&o.cpu_n, 0);
		atomic_store(&o.dev_n, 0);
		atomic_store(&o.cpu_run, 1);
		atomic_store_explicit(&o.dev_pause, 0, memory_order_release);
		sleep_us(pgt_test_rand(&o.rng) % 2000);
		for (int k = 0; k < 2; k++)
			harvest(v[k], h1[k], words);
		/* stop both: the CPU writer idles, the device parks after
		 * publishing what it wrote */
		atomic_store(&o.cpu_run, 0);
		atomic_store_explicit(&o.dev_pause, 1, memory_order_release);
		atomic_store(&o.dev_parked, 0);
		while (atomic_load(&o.cpu_busy) || !atomic_load(&o.dev_parked))
			sched_yield();
		for (int k = 0; k < 2; k++)
			harvest(v[k], h2[k], words);
		for (int k = 0; k < 2; k++) {
			size_t nc = atomic_load(&o.cpu_n), nd = atomic_load(&o.dev_n);

			for (size_t i = 0; i < nc + nd; i++) {
				uint64_t p = i < nc ? o.cpu_log[i] : o.dev_log[i - nc];

				if (!((h1[k][p / 64] | h2[k][p / 64]) >> (p % 64) & 1)) {
					if (!lost++)
						pgt_test_note("round %ld view %d: page %llu written by the %s "
							      "not reported", round, k, (unsigned long long)p,
							      i < nc ? "CPU" : "device");
				}
			}
			if (!k) {
				cpu_pages += nc;
				dev_pages += nd;
				for (size_t w = 0; w < words; w++)
					over += (uint64_t)__builtin_popcountll(h1[k][w] | h2[k][w]);
			}
		}
	}
	atomic_store(&o.cpu_quit, 1);
	pthread_join(o.cpu, NULL);
	atomic_store(&o.dev_pause, 0);
	assert_int_equal(pgt_offload_info(dev, &info), 0);
	pgt_test_note("%s: %ld rounds, %llu CPU and %llu device page writes logged, %llu pages "
		      "reported to view 0, %llu records, %llu lost-track events, %llu lost pages",
		      pgt_backing_name(backing), rounds, (unsigned long long)cpu_pages,
		      (unsigned long long)dev_pages, (unsigned long long)over,
		      (unsigned long long)info.records, (unsigned long long)info.lost,
		      (unsigned long long)lost);
	assert_true(dev_pages > 0 && cpu_pages > 0);
	pgt_offload_close(dev);
	for (int k = 0; k < 2; k++) {
		pgt_dirty_view_close(v[k]);
		free(h1[k]);
		free(h2[k]);
	}
	pgt_engine_close(e);
	free(o.cpu_log);
	free(o.dev_log);
	assert_int_equal(lost, 0);
}

static void test_memfd(void **state)
{
	(void)state;
	run(PGT_BACKING_MEMFD, 64 * MIB + 3 * 4096);
}

static void test_hugetlb(void **state)
{
	(void)state;
	run(PGT_BACKING_HUGETLB, 64 * MIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfd),
		cmocka_unit_test(test_hugetlb),
	};
	const char *env = getenv("PGT_OFFLOAD_ROUNDS");

	if (env && atol(env) > 0)
		rounds = atol(env);
	seed = pgt_test_seed();
	pgt_probe(&probe);
	return cmocka_run_group_tests_name("stress_offload_oracle", tests, NULL, NULL);
}
