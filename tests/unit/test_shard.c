/* SPDX-License-Identifier: MIT */
/*
 * Shards on synthetic 2/4/8-node topologies: where shard boundaries fall,
 * which node each shard is allocated on and which CPUs each worker binds to
 * (through a recording seam: this host has one node), placement calls, and
 * the parallel lock-free merge against a single flat bitmap on random data.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <linux/mempolicy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numa/numa_pvt.h"
#include "pgt_config.h"

/* ---- the recording seam ---- */

#define MAXREC 256

static struct {
	pthread_mutex_t lock;
	unsigned nallocs;
	struct {
		void *p;
		size_t bytes;
		int node;
	} alloc[MAXREC];
	unsigned nlive;
	unsigned nbinds;
	struct pgt_cpuset bind[MAXREC];
	unsigned nmbind;
	struct {
		uintptr_t addr;
		size_t len;
		int mode;
		unsigned long mask0;
	} mb[MAXREC];
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void rec_reset(void)
{
	pthread_mutex_lock(&rec.lock);
	rec.nallocs = rec.nbinds = rec.nmbind = 0;
	pthread_mutex_unlock(&rec.lock);
}

static void *f_alloc(void *arg, size_t bytes, int node)
{
	void *p = aligned_alloc(4096, bytes);

	(void)arg;
	if (!p)
		return NULL;
	memset(p, 0, bytes);
	pthread_mutex_lock(&rec.lock);
	if (rec.nallocs < MAXREC) {
		rec.alloc[rec.nallocs].p = p;
		rec.alloc[rec.nallocs].bytes = bytes;
		rec.alloc[rec.nallocs].node = node;
		rec.nallocs++;
	}
	rec.nlive++;
	pthread_mutex_unlock(&rec.lock);
	return p;
}

static void f_free(void *arg, void *p, size_t bytes)
{
	(void)arg;
	(void)bytes;
	pthread_mutex_lock(&rec.lock);
	rec.nlive--;
	pthread_mutex_unlock(&rec.lock);
	free(p);
}

static int f_bind(void *arg, const struct pgt_cpuset *cpus)
{
	(void)arg;
	pthread_mutex_lock(&rec.lock);
	if (rec.nbinds < MAXREC)
		rec.bind[rec.nbinds++] = *cpus;
	pthread_mutex_unlock(&rec.lock);
	return 0;
}

static int f_mbind(void *arg, void *addr, size_t len, int mode, const unsigned long *mask,
		   unsigned long maxnode, unsigned flags)
{
	(void)arg;
	(void)maxnode;
	(void)flags;
	pthread_mutex_lock(&rec.lock);
	if (rec.nmbind < MAXREC) {
		rec.mb[rec.nmbind].addr = (uintptr_t)addr;
		rec.mb[rec.nmbind].len = len;
		rec.mb[rec.nmbind].mode = mode;
		rec.mb[rec.nmbind].mask0 = mask[0];
		rec.nmbind++;
	}
	pthread_mutex_unlock(&rec.lock);
	return 0;
}

static int f_move_pages(void *arg, int pid, unsigned long count, void **pages, const int *nodes,
			int *status, int flags)
{
	(void)arg;
	(void)pid;
	(void)pages;
	(void)nodes;
	(void)flags;
	for (unsigned long i = 0; i < count; i++)
		status[i] = 0;
	return 0;
}

static const struct pgt_numa_ops fake_ops = {
	f_alloc, f_free, f_bind, f_mbind, f_move_pages, NULL,
};

static char last_log[512];

static void logger(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= PGT_LOG_WARN)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

static struct pgt_numa *open_numa(const char *spec, const struct pgt_numa_ops *ops,
				  unsigned per_node)
{
	struct pgt_numa_params p = {
		.topology = spec, .workers_per_node = per_node, .ops = ops,
		.log = logger, .log_level = PGT_LOG_DEBUG,
	};
	struct pgt_numa *n = NULL;

	assert_int_equal(pgt__numa_open(&p, &n), 0);
	return n;
}

static void need_hwloc(void)
{
	if (!PGT_HAVE_HWLOC)
		pgt_skip("built without hwloc: no synthetic multi-node topologies");
}

static const char *const specs[] = {
	"pack:2 numa:1 core:2 pu:1",
	"pack:4 numa:1 core:2 pu:1",
	"pack:2 numa:4 core:1 pu:2",
};
static const unsigned spec_nodes[] = { 2, 4, 8 };

/* Each worker binds to exactly its node's CPUs. */
static void test_worker_binding(void **state)
{
	(void)state;
	need_hwloc();
	for (size_t k = 0; k < 3; k++) {
		struct pgt_numa *n;

		rec_reset();
		n = open_numa(specs[k], &fake_ops, 0);
		assert_int_equal(n->nworkers, spec_nodes[k]);
		assert_int_equal(rec.nbinds, spec_nodes[k]);
		for (unsigned w = 0; w < n->nworkers; w++) {
			int node = n->worker_node[w];
			int idx = pgt__topo_index(n->topo, node);
			const struct pgt_cpuset *cs = pgt__workers_cpus(n->workers, w);
			bool seen = false;

			assert_true(idx >= 0);
			assert_memory_equal(cs, &n->topo->nodes[idx].cpus, sizeof(*cs));
			for (unsigned b = 0; b < rec.nbinds; b++)
				seen |= !memcmp(&rec.bind[b], cs, sizeof(*cs));
			assert_true(seen);
			assert_int_equal(pgt__workers_bind_error(n->workers, w), 0);
			assert_int_equal(pgt__numa_worker_for(n, node, 0), (int)w);
		}
		pgt__numa_close(n);

		/* two per node: shards of one node alternate between them */
		rec_reset();
		n = open_numa(specs[k], &fake_ops, 2);
		assert_int_equal(n->nworkers, 2 * spec_nodes[k]);
		assert_int_equal(rec.nbinds, 2 * spec_nodes[k]);
		assert_int_not_equal(pgt__numa_worker_for(n, 1, 0), pgt__numa_worker_for(n, 1, 1));
		assert_int_equal(n->worker_node[pgt__numa_worker_for(n, 1, 1)], 1);
		pgt__numa_close(n);
	}

	/* a CPU-less node gets no worker; its shards go to the nearest node's */
	rec_reset();
	struct pgt_numa *n = open_numa("pack:2 numa:2 core:2 pu:1;cpus=0-4", &fake_ops, 0);

	assert_int_equal(n->nworkers, 3);
	assert_int_equal(n->worker_node[pgt__numa_worker_for(n, 3, 0)], 0);
	pgt__numa_close(n);

	/* the real seam does not pin threads to a synthetic topology's CPUs */
	n = open_numa(specs[0], NULL, 0);
	assert_int_equal(n->nworkers, 2);
	for (unsigned w = 0; w < 2; w++)
		assert_int_equal(pgt__cpuset_count(pgt__workers_cpus(n->workers, w)), 0);
	pgt__numa_close(n);

	/* one node: no workers, harvests run in the caller */
	n = open_numa(NULL, NULL, 0);
	if (n->topo->nnodes == 1)
		assert_int_equal(n->nworkers, 0);
	pgt__numa_close(n);
}

static struct pgt_numa_region *region(struct pgt_numa *n, uint64_t pages, uint32_t policy,
				      int node, uint64_t mask, const struct pgt_numa_extent *ext,
				      uint32_t next, int *err)
{
	struct pgt_numa_region_params p = {
		.addr = (void *)(uintptr_t)0x7f0000000000ULL, .length = pages << 12,
		.gpa = 1ULL << 32, .page_size = 4096, .name = "test", .numa_node = node,
		.policy = policy, .nodemask = mask, .extents = ext, .nextents = next,
	};
	struct pgt_numa_region *nr = NULL;

	*err = pgt__numa_region_init(n, &p, &nr);
	return nr;
}

/* Shard boundaries follow the extents, rounded down to 64 pages; each
 * shard is allocated on its node and served by a worker of its node. */
static void test_shard_boundaries(void **state)
{
	const uint64_t G = 1ULL << 32, P = 4096;
	(void)state;
	need_hwloc();
	for (size_t k = 0; k < 3; k++) {
		unsigned nn = spec_nodes[k];
		struct pgt_numa *n = open_numa(specs[k], &fake_ops, 0);
		struct pgt_numa_extent ext[8];
		uint64_t pages = 262144, start = 0; /* 1 GiB of 4 KiB pages */
		struct pgt_numa_region *nr;
		struct pgt_shardmap m;
		int err;

		/* uneven extents, boundaries off the 64-page grid */
		for (unsigned i = 0; i < nn; i++) {
			uint64_t len = i + 1 < nn ? pages / nn + 37 * i + 5 : pages - start;

			ext[i] = (struct pgt_numa_extent){ G + start * P, len * P, (int)(nn - 1 - i), 0 };
			start += len;
		}
		nr = region(n, pages, PGT_NUMA_EXTENTS, -1, 0, ext, nn, &err);
		assert_int_equal(err, 0);
		assert_int_equal(nr->nsegs, nn);
		assert_int_equal(nr->nshards, nn);
		for (unsigned i = 0; i < nn; i++) {
			const struct pgt_shard_geom *g = &nr->shards[i];
			uint64_t want = ((ext[i].gpa - G) / P) & ~63ULL;

			assert_int_equal(g->first, want);
			assert_int_equal(g->node, ext[i].node);
			assert_true(g->worker >= 0);
			assert_int_equal(n->worker_node[g->worker], g->node);
			assert_int_equal(pgt__numa_intended(nr, (ext[i].gpa - G) / P), ext[i].node);
		}
		rec_reset();
		assert_int_equal(pgt__numa_shardmap_init(&m, pages, nr), 0);
		assert_int_equal(rec.nallocs, nn);
		for (unsigned i = 0; i < nn; i++) {
			assert_int_equal(rec.alloc[i].node, nr->shards[i].node);
			assert_true(rec.alloc[i].bytes >= nr->shards[i].npages / 8);
			assert_ptr_equal(rec.alloc[i].p, (void *)m.s[i].bm.words);
			assert_int_equal(m.s[i].worker, nr->shards[i].worker);
		}
		assert_true(pgt__shardmap_validate(&m, NULL));
		assert_int_equal(nr->ctr[0].meta_bytes, pgt__bitmap_bytes(&m.s[0].bm));
		pgt__shardmap_fini(&m);
		assert_int_equal(rec.nlive, 0);
		assert_int_equal(nr->ctr[0].meta_bytes, 0);

		/* a sliver (< 64 pages) goes to the next node's shard */
		if (nn >= 4) {
			struct pgt_numa_extent sl[3] = {
				{ G, 1000 * P, 0, 0 },
				{ G + 1000 * P, 20 * P, 1, 0 },
				{ G + 1020 * P, (pages - 1020) * P, 2, 0 },
			};
			pgt__numa_region_fini(nr);
			nr = region(n, pages, PGT_NUMA_EXTENTS, -1, 0, sl, 3, &err);
			assert_int_equal(err, 0);
			assert_int_equal(nr->nshards, 2);
			assert_int_equal(nr->shards[0].node, 0);
			assert_int_equal(nr->shards[1].first, 960);
			assert_int_equal(nr->shards[1].node, 2);
		}

		/* interleave over the first and the last node: a shard per node */
		pgt__numa_region_fini(nr);
		nr = region(n, pages, PGT_NUMA_INTERLEAVE, -1, 1 | 1ULL << (nn - 1), NULL, 0, &err);
		assert_int_equal(err, 0);
		assert_int_equal(nr->nshards, 2);
		assert_int_equal(nr->shards[0].node, 0);
		assert_int_equal(nr->shards[1].node, (int)nn - 1);
		assert_int_equal(nr->shards[1].first, pages / 2);
		assert_int_equal(pgt__numa_intended(nr, 5), -2);

		/* bind: one shard on the node */
		pgt__numa_region_fini(nr);
		nr = region(n, pages, PGT_NUMA_DEFAULT, 1, 0, NULL, 0, &err);
		assert_int_equal(err, 0);
		assert_int_equal(nr->policy, PGT_NUMA_BIND);
		assert_int_equal(nr->nshards, 1);
		assert_int_equal(nr->shards[0].node, 1);
		assert_int_equal(nr->shards[0].worker, -1);
		pgt__numa_region_fini(nr);
		pgt__numa_close(n);
	}
}

/* mbind calls a placement makes, through the seam. */
static void test_placement_calls(void **state)
{
	const uint64_t G = 1ULL << 32, P = 4096;
	struct pgt_numa_extent ext[2] = { { G, 100 * P, 1, 0 }, { G + 100 * P, 28 * P, 0, 0 } };
	struct pgt_numa_region *nr;
	struct pgt_numa *n;
	int err;

	(void)state;
	need_hwloc();
	n = open_numa(specs[0], &fake_ops, 0);
	rec_reset();
	nr = region(n, 128, PGT_NUMA_EXTENTS, -1, 0, ext, 2, &err);
	assert_int_equal(err, 0);
	assert_int_equal(pgt__numa_region_place(nr), 0);
	assert_int_equal(rec.nmbind, 2);
	assert_int_equal(rec.mb[0].addr, (uintptr_t)nr->addr);
	assert_int_equal(rec.mb[0].len, 100 * P);
	assert_int_equal(rec.mb[0].mode, MPOL_BIND);
	assert_int_equal(rec.mb[0].mask0, 1UL << 1);
	assert_int_equal(rec.mb[1].addr, (uintptr_t)nr->addr + 100 * P);
	assert_int_equal(rec.mb[1].len, 28 * P);
	assert_int_equal(rec.mb[1].mask0, 1UL << 0);
	pgt__numa_region_fini(nr);

	rec_reset();
	nr = region(n, 128, PGT_NUMA_INTERLEAVE, -1, 3, NULL, 0, &err);
	assert_int_equal(pgt__numa_region_place(nr), 0);
	assert_int_equal(rec.nmbind, 1);
	assert_int_equal(rec.mb[0].mode, MPOL_INTERLEAVE);
	assert_int_equal(rec.mb[0].mask0, 3);
	assert_int_equal(rec.mb[0].len, 128 * P);
	pgt__numa_region_fini(nr);

	rec_reset();
	nr = region(n, 128, PGT_NUMA_DEFAULT, -1, 0, NULL, 0, &err);
	assert_int_equal(pgt__numa_region_place(nr), 0);
	assert_int_equal(rec.nmbind, 0);
	pgt__numa_region_fini(nr);
	pgt__numa_close(n);

	/* with the real seam, a synthetic layout is not applied to this host */
	n = open_numa(specs[0], NULL, 0);
	nr = region(n, 128, PGT_NUMA_BIND, 1, 0, NULL, 0, &err);
	assert_int_equal(err, 0);
	assert_int_equal(pgt__numa_region_place(nr), 0);
	pgt__numa_region_fini(nr);
	pgt__numa_close(n);
}

static void test_bad_layouts(void **state)
{
	const uint64_t G = 1ULL << 32, P = 4096;
	struct pgt_numa_region *nr;
	struct pgt_numa *n;
	int err;

	(void)state;
	need_hwloc();
	n = open_numa(specs[0], &fake_ops, 0);
	nr = region(n, 128, PGT_NUMA_BIND, 9, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	assert_null(nr);
	assert_non_null(strstr(last_log, "node 9 does not exist"));
	assert_non_null(strstr(last_log, "nodes: 0-1"));
	nr = region(n, 128, PGT_NUMA_BIND, -1, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	nr = region(n, 128, PGT_NUMA_INTERLEAVE, -1, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	assert_non_null(strstr(last_log, "empty interleave mask"));
	nr = region(n, 128, PGT_NUMA_INTERLEAVE, -1, 1 | 1 << 5, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	assert_non_null(strstr(last_log, "node 5"));
	nr = region(n, 128, 77, -1, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	assert_non_null(strstr(last_log, "unknown NUMA policy"));
	nr = region(n, 128, PGT_NUMA_EXTENTS, -1, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	{
		/* gap, overlap, misaligned, short, past the end, unknown node */
		const struct pgt_numa_extent bad[][2] = {
			{ { G, 64 * P, 0, 0 }, { G + 65 * P, 63 * P, 1, 0 } },
			{ { G, 64 * P, 0, 0 }, { G + 63 * P, 65 * P, 1, 0 } },
			{ { G, 64 * P + 1, 0, 0 }, { G + 64 * P + 1, 64 * P - 1, 1, 0 } },
			{ { G, 64 * P, 0, 0 }, { G + 64 * P, 32 * P, 1, 0 } },
			{ { G, 64 * P, 0, 0 }, { G + 64 * P, 128 * P, 1, 0 } },
			{ { G, 64 * P, 0, 0 }, { G + 64 * P, 64 * P, 2, 0 } },
			{ { G, 0, 0, 0 }, { G, 128 * P, 1, 0 } },
			{ { G, 64 * P, 0, 1 }, { G + 64 * P, 64 * P, 1, 0 } },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			last_log[0] = 0;
			nr = region(n, 128, PGT_NUMA_EXTENTS, -1, 0, bad[i], 2, &err);
			assert_int_equal(err, -EINVAL);
			assert_null(nr);
			assert_true(strlen(last_log) > 10);
		}
	}
	pgt__numa_close(n);

	/* nodes without memory */
	n = open_numa("pack:2 [numa(memory=0)] core:2 pu:1", &fake_ops, 0);
	nr = region(n, 128, PGT_NUMA_BIND, 1, 0, NULL, 0, &err);
	assert_int_equal(err, -EINVAL);
	assert_non_null(strstr(last_log, "node 1 has no memory"));
	pgt__numa_close(n);
}

/* ---- merge correctness against a flat bitmap ---- */

struct flat_out {
	unsigned long *bm;
	struct pgt_run *runs;
	size_t n;
	uint64_t gpa;
	unsigned shift;
};

static int flat_run(void *arg, uint64_t first, uint64_t n)
{
	struct flat_out *o = arg;

	o->runs[o->n++] = (struct pgt_run){ o->gpa + (first << o->shift), n };
	for (uint64_t i = first; i < first + n; i++)
		o->bm[i / 64] |= 1UL << (i % 64);
	return 0;
}

static void random_fill(uint64_t *seed, uint64_t nbits, struct pgt_bitmap *flat,
			struct pgt_shardmap *m)
{
	unsigned density = (unsigned)(pgt_test_rand(seed) % 4);
	uint64_t nruns = nbits / (density == 0 ? 400 : density == 1 ? 40 : 8);

	for (uint64_t r = 0; r < nruns; r++) {
		uint64_t first = pgt_test_rand(seed) % nbits;
		uint64_t len = 1 + pgt_test_rand(seed) % (density == 3 ? 300 : 20);

		if (len > nbits - first)
			len = nbits - first;
		pgt__bitmap_set_range(flat, first, len);
		pgt__shardmap_set_range(m, first, len);
	}
	/* runs across every shard boundary, and boundary pages alone */
	for (unsigned k = 1; k < m->n; k++) {
		uint64_t b = m->s[k].first;

		switch (pgt_test_rand(seed) % 4) {
		case 0:
			pgt__bitmap_set_range(flat, b - 3, 7);
			pgt__shardmap_set_range(m, b - 3, 7);
			break;
		case 1:
			pgt__bitmap_set(flat, b);
			pgt__shardmap_set(m, b);
			break;
		case 2:
			pgt__bitmap_set(flat, b - 1);
			pgt__shardmap_set(m, b - 1);
			break;
		default:
			break;
		}
	}
}

static unsigned random_geom(uint64_t *seed, uint64_t nbits, unsigned want,
			    struct pgt_shard_geom *g, unsigned nworkers)
{
	unsigned n = 0;
	uint64_t words = (nbits + 63) / 64;

	g[n++] = (struct pgt_shard_geom){ 0, 0, (int)(pgt_test_rand(seed) % 4), -1 };
	for (unsigned k = 1; k < want; k++) {
		uint64_t first = (words * k / want + pgt_test_rand(seed) % 3) * 64;

		if (first <= g[n - 1].first || first >= nbits)
			continue;
		g[n++] = (struct pgt_shard_geom){ first, 0, (int)(pgt_test_rand(seed) % 4),
						  nworkers ? (int)(k % nworkers) : -1 };
	}
	for (unsigned k = 0; k < n; k++)
		g[k].npages = (k + 1 < n ? g[k + 1].first : nbits) - g[k].first;
	return n;
}

static void check_merge(uint64_t *seed, uint64_t nbits, unsigned want, struct pgt_workers *w)
{
	struct pgt_shard_geom g[16];
	unsigned ns = random_geom(seed, nbits, want, g, pgt__workers_count(w));
	size_t words = (size_t)((nbits + 63) / 64) + 2;
	struct pgt_bitmap flat;
	struct pgt_shardmap m;
	uint64_t flat_pop, sh_pop;
	struct flat_out fo;
	struct pgt_shard_out so;
	unsigned long *bm1 = calloc(words, sizeof(long)), *bm2 = malloc(words * sizeof(long));
	unsigned long *src = calloc(words, sizeof(long)), *exp1 = calloc(words, sizeof(long));
	struct pgt_run *r1, *r2;
	uint64_t need;
	int64_t got;

	assert_int_equal(pgt__bitmap_init(&flat, nbits), 0);
	assert_int_equal(pgt__shardmap_init_geom(&m, nbits, g, ns, &fake_ops, w), 0);
	m.parallel_min_bits = 0; /* small maps too: the parallel path is under test */
	random_fill(seed, nbits, &flat, &m);
	assert_true(pgt__shardmap_validate(&m, NULL));
	flat_pop = pgt__bitmap_popcount(&flat);
	sh_pop = pgt__shardmap_popcount(&m);
	assert_int_equal(sh_pop, flat_pop);
	need = pgt__bitmap_count_runs(&flat);
	assert_int_equal(pgt__shardmap_count_runs(&m), need);
	{
		uint64_t a = pgt_test_rand(seed) % nbits, len = pgt_test_rand(seed) % nbits;
		uint64_t want_c = 0;

		for (uint64_t i = a; i < nbits && i < a + len; i++)
			want_c += pgt__bitmap_test(&flat, i);
		assert_int_equal(pgt__shardmap_count_range(&m, a, len), want_c);
	}
	assert_int_equal(pgt__shardmap_export_kvm(&m, exp1, words), (int64_t)flat_pop);

	/* too few run slots: nothing is taken, the need is reported */
	r1 = calloc(need + 1, sizeof(*r1));
	r2 = calloc(need + 1, sizeof(*r2));
	if (need) {
		so = (struct pgt_shard_out){ .runs = r2, .runs_cap = need - 1 ? need - 1 : 1,
					     .gpa = 1 << 20, .page_shift = 12 };
		if (need > 1) {
			assert_int_equal(pgt__shardmap_take(&m, &so), -ENOBUFS);
			assert_int_equal(so.nruns, need);
			assert_int_equal(pgt__shardmap_popcount(&m), flat_pop);
		}
	}

	fo = (struct flat_out){ bm1, r1, 0, 1 << 20, 12 };
	assert_int_equal(pgt__bitmap_take_runs(&flat, flat_run, &fo), flat_pop);
	memset(bm2, 0xa5, words * sizeof(long)); /* overwritten, not OR-ed */
	so = (struct pgt_shard_out){ .bitmap = bm2, .bitmap_words = words, .runs = r2,
				     .runs_cap = need + 1, .gpa = 1 << 20, .page_shift = 12 };
	got = pgt__shardmap_take(&m, &so);
	assert_int_equal(got, (int64_t)flat_pop);
	assert_int_equal(so.nruns, fo.n);
	assert_memory_equal(bm1, bm2, words * sizeof(long));
	assert_memory_equal(exp1, bm1, words * sizeof(long));
	if (fo.n)
		assert_memory_equal(r1, r2, fo.n * sizeof(*r1));
	assert_int_equal(pgt__shardmap_popcount(&m), 0);
	assert_true(pgt__shardmap_validate(&m, NULL));

	/* bitmap only: the run count still joins across boundaries */
	memcpy(src, bm1, words * sizeof(long));
	assert_int_equal(pgt__shardmap_or_kvm(&m, src, nbits), flat_pop);
	memset(bm2, 0, words * sizeof(long));
	so = (struct pgt_shard_out){ .bitmap = bm2, .bitmap_words = words };
	assert_int_equal(pgt__shardmap_take(&m, &so), (int64_t)flat_pop);
	assert_int_equal(so.nruns, need);
	assert_memory_equal(bm1, bm2, words * sizeof(long));

	/* runs only, after set_range from the runs */
	for (size_t i = 0; i < fo.n; i++)
		pgt__shardmap_set_range(&m, (r1[i].gpa - (1 << 20)) >> 12, r1[i].npages);
	memset(r2, 0, (need + 1) * sizeof(*r2));
	so = (struct pgt_shard_out){ .runs = r2, .runs_cap = need ? need : 1,
				     .gpa = 1 << 20, .page_shift = 12 };
	assert_int_equal(pgt__shardmap_take(&m, &so), (int64_t)flat_pop);
	assert_int_equal(so.nruns, need);
	if (need)
		assert_memory_equal(r1, r2, need * sizeof(*r1));

	pgt__bitmap_fini(&flat);
	pgt__shardmap_fini(&m);
	free(bm1);
	free(bm2);
	free(src);
	free(exp1);
	free(r1);
	free(r2);
}

static void test_merge_random(void **state)
{
	uint64_t seed = pgt_test_seed();
	const uint64_t sizes[] = { 64, 1000, 4096 * 3 + 17, 262144 };
	const unsigned shards[] = { 1, 2, 4, 8 };

	(void)state;
	for (unsigned nw = 0; nw <= 3; nw++) {
		struct pgt_workers *w = NULL;

		if (nw)
			assert_int_equal(pgt__workers_start(&w, nw, NULL, &fake_ops), 0);
		for (size_t s = 0; s < 4; s++)
			for (size_t k = 0; k < 4; k++)
				for (int rep = 0; rep < (sizes[s] > 100000 ? 2 : 6); rep++)
					check_merge(&seed, sizes[s], shards[k], w);
		pgt__workers_stop(w);
	}
}

/*
 * Regression (issue 11, bug 5): a setter between counting and taking (the
 * exclusive-use rule broken) made the take return -EBUSY after the bits
 * were taken: pages lost. Now everything goes back and the next take has it.
 */
struct racer {
	struct pgt_shardmap *m;
	uint64_t nbits;
	int mode;           /* 0: new runs (overflow), 1: merge runs (holes) */
};

static void race_setter(void *arg)
{
	struct racer *x = arg;

	if (x->mode == 0) {
		for (uint64_t i = 1; i < x->nbits; i += 4)
			pgt__shardmap_set(x->m, i);
	} else {
		pgt__shardmap_set_range(x->m, 0, x->nbits / 2);
	}
}

static void test_busy_take_loses_pages(void **state)
{
	const uint64_t nbits = 4096;
	struct pgt_shard_geom g[2] = { { 0, 2048, 0, 0 }, { 2048, 2048, 1, 1 } };
	struct pgt_run runs[4096];
	unsigned long bm[4096 / 64];

	(void)state;
	for (unsigned nw = 0; nw <= 2; nw += 2)
		for (int mode = 0; mode < 2; mode++) {
			struct pgt_workers *w = NULL;
			struct pgt_shardmap m;
			struct racer x = { &m, nbits, mode };
			struct pgt_shard_out o = { .bitmap = bm, .bitmap_words = 64, .runs = runs,
						   .runs_cap = 4096, .gpa = 0, .page_shift = 12 };
			uint64_t before;

			if (nw)
				assert_int_equal(pgt__workers_start(&w, nw, NULL, &fake_ops), 0);
			assert_int_equal(pgt__shardmap_init_geom(&m, nbits, g, 2, &fake_ops, w), 0);
			m.parallel_min_bits = 0;
			for (uint64_t i = 0; i < nbits; i += 8)
				pgt__shardmap_set(&m, i);
			m.take_hook = race_setter;
			m.take_hook_arg = &x;
			assert_int_equal(pgt__shardmap_take(&m, &o), -EBUSY);
			/* nothing lost: the old bits and the racer's are all there */
			before = pgt__shardmap_popcount(&m);
			assert_true(before > nbits / 8);
			for (uint64_t i = 0; i < nbits; i += 8)
				assert_true(pgt__shardmap_test(&m, i));
			assert_true(pgt__shardmap_validate(&m, NULL));
			m.take_hook = NULL;
			assert_int_equal(pgt__shardmap_take(&m, &o), (int64_t)before);
			assert_int_equal(pgt__shardmap_popcount(&m), 0);
			pgt__shardmap_fini(&m);
			pgt__workers_stop(w);
		}
}

static void test_counters(void **state)
{
	const uint64_t G = 1ULL << 32, P = 4096;
	struct pgt_numa_extent ext[2] = { { G, 128 * P, 0, 0 }, { G + 128 * P, 128 * P, 1, 0 } };
	struct pgt_numa_region *nr;
	struct pgt_numa *n;
	int err;

	(void)state;
	need_hwloc();
	n = open_numa(specs[0], &fake_ops, 0);
	nr = region(n, 256, PGT_NUMA_EXTENTS, -1, 0, ext, 2, &err);
	assert_int_equal(err, 0);
	pgt__numa_note_dirty(nr, 100, 50);
	assert_int_equal(nr->ctr[0].dirty, 28);
	assert_int_equal(nr->ctr[1].dirty, 22);
	pgt__numa_note_dirty(nr, 250, 100); /* clipped at the end */
	assert_int_equal(nr->ctr[1].dirty, 28);
	pgt__numa_note_released(nr, 0, 200, true);
	pgt__numa_note_released(nr, 150, 10, false);
	assert_int_equal(nr->ctr[0].released, 128);
	assert_int_equal(nr->ctr[1].released, 62);
	assert_int_equal(pgt__numa_vcpu_set(n, 1234, 0), 0);
	assert_int_equal(pgt__numa_vcpu_set(n, 1235, 1), 0);
	assert_int_equal(pgt__numa_vcpu_set(n, 1236, 7), -EINVAL);
	assert_int_equal(pgt__numa_vcpu_set(n, 0, 1), -EINVAL);
	pgt__numa_note_touch(nr, 10, 1234);  /* local */
	pgt__numa_note_touch(nr, 200, 1234); /* remote */
	pgt__numa_note_touch(nr, 200, 1235); /* local */
	pgt__numa_note_touch(nr, 10, 999);   /* unknown thread */
	assert_int_equal(nr->ctr[0].remote_touch, 0);
	assert_int_equal(nr->ctr[1].remote_touch, 1);
	assert_int_equal(pgt__numa_vcpu_set(n, 1234, -1), 0);
	assert_int_equal(pgt__numa_vcpu_node(n, 1234), -1);
	assert_int_equal(pgt__numa_vcpu_node(n, 1235), 1);
	pgt__numa_region_fini(nr);
	pgt__numa_close(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worker_binding),
		cmocka_unit_test(test_shard_boundaries),
		cmocka_unit_test(test_placement_calls),
		cmocka_unit_test(test_bad_layouts),
		cmocka_unit_test(test_merge_random),
		cmocka_unit_test(test_busy_take_loses_pages),
		cmocka_unit_test(test_counters),
	};

	return cmocka_run_group_tests_name("shard", tests, NULL, NULL);
}
