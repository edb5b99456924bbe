/* SPDX-License-Identifier: MIT */
/*
 * NUMA internals: topology, the allocation/binding seam, worker pools,
 * region layouts and sharded bitmaps. Not installed.
 *
 * Dependencies: numa/ uses hal/ and the leaf bitmap type of engine/bitmap.h
 * (a data structure with no engine state). It never looks inside struct
 * pgt_region or struct pgt_engine: the engine calls into numa/ and hands it
 * what it needs, and provides the three accessors declared at the end, which
 * the public region/engine queries of numa/ use.
 */
#ifndef PGT_NUMA_PVT_H
#define PGT_NUMA_PVT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtrack/pgtrack.h"
#include "pgtrack/numa.h"
#include "engine/bitmap.h"

struct pgt_region;
struct pgt_engine;

/* ---------------------------------------------------------------- */
/* CPU and node sets (1024 entries; hosts with more are clipped)      */
/* ---------------------------------------------------------------- */

#define PGT_CPUSET_BITS 1024
struct pgt_cpuset {
	uint64_t w[PGT_CPUSET_BITS / 64];
};

static inline void pgt__cpuset_set(struct pgt_cpuset *s, unsigned i)
{
	if (i < PGT_CPUSET_BITS)
		s->w[i / 64] |= 1ULL << (i % 64);
}

static inline bool pgt__cpuset_isset(const struct pgt_cpuset *s, unsigned i)
{
	return i < PGT_CPUSET_BITS && (s->w[i / 64] >> (i % 64)) & 1;
}

unsigned pgt__cpuset_count(const struct pgt_cpuset *s);
/* Lowest member >= @from, or -1. */
int pgt__cpuset_next(const struct pgt_cpuset *s, int from);
/* "0-3,8" into @buf (always NUL-terminated; "..." when cut). Returns @buf. */
char *pgt__cpuset_format(const struct pgt_cpuset *s, char *buf, size_t len);
/* Parse a list ("0-3,8", bounded by @len, trailing newline allowed).
 * Returns 0 or -EINVAL (syntax, a member >= PGT_CPUSET_BITS). */
int pgt__cpuset_parse(const char *buf, size_t len, struct pgt_cpuset *s);

/* ---------------------------------------------------------------- */
/* Topology (topology.c)                                              */
/* ---------------------------------------------------------------- */

struct pgt_topo_node {
	int id;
	uint64_t memory;
	unsigned ncpus;
	unsigned ncores;
	uint64_t cache[3];
	struct pgt_cpuset cpus;
};

struct pgt_topology {
	uint32_t source;               /* enum pgt_topology_source */
	bool this_system;
	unsigned nnodes;
	unsigned ncpus;
	struct pgt_topo_node *nodes;   /* ascending id */
	uint32_t *dist;                /* nnodes x nnodes, by index */
	void *hw;                      /* hwloc_topology_t, when hwloc loaded it */
};

/* Index of node id @node, or -1. */
int pgt__topo_index(const struct pgt_topology *t, int node);
/*
 * The node whose CPUs should work for @node: @node itself when it has CPUs,
 * else the nearest node (distance, then id) that has some. -1 if none.
 */
int pgt__topo_worker_node(const struct pgt_topology *t, int node);

/* ---------------------------------------------------------------- */
/* The seam: every call that allocates on a node, binds a thread or   */
/* asks the kernel about placement goes through these, so tests can   */
/* record what would happen on nodes this host does not have.          */
/* ---------------------------------------------------------------- */

struct pgt_numa_ops {
	/* Zeroed, page-aligned memory of @bytes on @node (-1: anywhere). */
	void *(*alloc)(void *arg, size_t bytes, int node);
	void (*free)(void *arg, void *p, size_t bytes);
	/* Bind the calling thread to @cpus. 0 or -errno. */
	int (*bind_self)(void *arg, const struct pgt_cpuset *cpus);
	/* mbind(2). 0 or -errno. */
	int (*mbind)(void *arg, void *addr, size_t len, int mode, const unsigned long *mask,
		     unsigned long maxnode, unsigned flags);
	/* move_pages(2). 0 or -errno (per-page results in @status). */
	int (*move_pages)(void *arg, int pid, unsigned long count, void **pages, const int *nodes,
			  int *status, int flags);
	void *arg;
};

/*
 * The real system calls. @arg is NULL or the struct pgt_topology used to
 * bind with hwloc. Allocation asks libnuma for the node when the build has
 * it and the node exists here with memory (so libnuma never gets a node it
 * would complain about on stderr); otherwise mmap and the default policy.
 */
extern const struct pgt_numa_ops pgt__numa_sys_ops;
/* Nodes of this host that have memory (bit n: node n). Read once. */
const struct pgt_cpuset *pgt__numa_host_mem_nodes(void);

/* ---------------------------------------------------------------- */
/* Worker pools (workers.c)                                           */
/* ---------------------------------------------------------------- */

struct pgt_workers;

/*
 * Start @n threads; worker i binds itself to @cpus[i] (NULL or an empty set:
 * unbound) through @ops (NULL: pgt__numa_sys_ops). A bind failure is kept
 * (pgt__workers_bind_error) and the worker runs unbound.
 */
int pgt__workers_start(struct pgt_workers **out, unsigned n, const struct pgt_cpuset *cpus,
		       const struct pgt_numa_ops *ops);
void pgt__workers_stop(struct pgt_workers *w);
unsigned pgt__workers_count(const struct pgt_workers *w);
int pgt__workers_bind_error(const struct pgt_workers *w, unsigned i);
const struct pgt_cpuset *pgt__workers_cpus(const struct pgt_workers *w, unsigned i);

/*
 * Run fn(arg, i) on every worker i concurrently and wait for all. Jobs of
 * one pool run one at a time (callers are serialised); fn must not call
 * pgt__workers_run on the same pool.
 */
void pgt__workers_run(struct pgt_workers *w, void (*fn)(void *arg, unsigned i), void *arg);

/*
 * A barrier for the @n participants of one job (the workers), reusable.
 * Waiters spin briefly then yield: jobs are short.
 */
struct pgt_barrier {
	_Atomic unsigned count;
	_Atomic unsigned gen;
	unsigned n;
};
void pgt__barrier_init(struct pgt_barrier *b, unsigned n);
void pgt__barrier_wait(struct pgt_barrier *b);

/* ---------------------------------------------------------------- */
/* Engine-level NUMA context (numa.c)                                  */
/* ---------------------------------------------------------------- */

#define PGT_NUMA_MAX_VCPUS 1024

struct pgt_numa_params {
	const char *topology;         /* spec for pgt_topology_load, NULL: this host */
	unsigned workers_per_node;    /* 0: one per node with CPUs when > 1 node */
	const struct pgt_numa_ops *ops; /* NULL: pgt__numa_sys_ops */
	pgt_log_fn log;
	void *log_arg;
	int log_level;
};

struct pgt_numa {
	struct pgt_topology *topo;
	struct pgt_numa_ops ops;       /* arg filled in */
	struct pgt_workers *workers;   /* NULL: harvests run in the caller */
	unsigned nworkers;
	int *worker_node;              /* node each worker serves */
	pgt_log_fn log;
	void *log_arg;
	int log_level;

	pthread_mutex_t vcpu_lock;
	unsigned nvcpus;
	struct { int tid; int node; } vcpus[PGT_NUMA_MAX_VCPUS];
};

int pgt__numa_open(const struct pgt_numa_params *p, struct pgt_numa **out);
void pgt__numa_close(struct pgt_numa *n);
void pgt__numa_log(const struct pgt_numa *n, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Worker index serving @node (first of its workers), or -1 (inline). */
int pgt__numa_worker_for(const struct pgt_numa *n, int node, unsigned nth);
/* Node of vCPU thread @tid, or -1. */
int pgt__numa_vcpu_node(struct pgt_numa *n, int tid);
int pgt__numa_vcpu_set(struct pgt_numa *n, int tid, int node);

/* ---------------------------------------------------------------- */
/* Region layout and shard geometry (region.c of numa/: layout.c)     */
/* ---------------------------------------------------------------- */

/* A run of region pages placed on one node. */
struct pgt_numa_seg {
	uint64_t first;
	uint64_t npages;
	int node;                      /* -1: kernel default */
	uint32_t flags;                /* PGT_EXTENT_INTERLEAVED */
};

/* Counters of one shard (per-node stats sum them by node). */
struct pgt_shard_ctr {
	_Atomic uint64_t dirty;
	_Atomic uint64_t released;
	_Atomic uint64_t remote_touch;
	_Atomic uint64_t harvest_ns;
	_Atomic uint64_t meta_bytes;
};

struct pgt_shard_geom {
	uint64_t first;                /* region page index, multiple of 64 */
	uint64_t npages;
	int node;                      /* allocation node, -1: default */
	int worker;                    /* worker index, -1: the caller */
};

struct pgt_numa_region_params {
	void *addr;
	uint64_t length;
	uint64_t gpa;
	uint64_t page_size;
	const char *name;
	int numa_node;
	uint32_t policy;               /* enum pgt_numa_policy */
	uint64_t nodemask;
	const struct pgt_numa_extent *extents;
	uint32_t nextents;
};

struct pgt_numa_region {
	struct pgt_numa *numa;         /* may be NULL: one shard, no workers */
	char name[64];
	void *addr;
	uint64_t length;
	uint64_t gpa;
	uint64_t page_size;
	unsigned page_shift;
	uint64_t npages;
	uint32_t policy;
	uint64_t nodemask;
	unsigned nsegs;
	struct pgt_numa_seg *segs;
	unsigned nshards;
	struct pgt_shard_geom *shards;
	struct pgt_shard_ctr *ctr;     /* one per shard */
};

/*
 * Validate the placement config against the topology and compute segments
 * and shards. Logs the reason of every -EINVAL. @n may be NULL (no NUMA
 * context: only DEFAULT/BIND, one shard).
 */
int pgt__numa_region_init(struct pgt_numa *n, const struct pgt_numa_region_params *p,
			  struct pgt_numa_region **out);
/* Apply the placement with mbind (before the memory is touched). */
int pgt__numa_region_place(struct pgt_numa_region *nr);
void pgt__numa_region_fini(struct pgt_numa_region *nr);
/* Shard index holding region page @page. */
unsigned pgt__numa_shard_of(const struct pgt_numa_region *nr, uint64_t page);
/* Intended node of page @page (-1: any; for interleaved pages -2). */
int pgt__numa_intended(const struct pgt_numa_region *nr, uint64_t page);

/* Accounting hooks the engine calls (all lock-free, any thread). */
void pgt__numa_note_dirty(struct pgt_numa_region *nr, uint64_t first, uint64_t n);
void pgt__numa_note_released(struct pgt_numa_region *nr, uint64_t first, uint64_t n, bool released);
/* A first touch of @page by thread @tid (0 when unknown). */
void pgt__numa_note_touch(struct pgt_numa_region *nr, uint64_t page, int tid);

/*
 * Split @npages into shards at the segment boundaries, each rounded down to
 * a multiple of 64 pages (dropping empty shards), and interleaved segments
 * into one shard per node of the mask. Worker of each shard from @n.
 * Returns the number of shards written to @out (at most @cap), or -errno.
 */
int pgt__numa_shard_geometry(const struct pgt_numa *n, const struct pgt_numa_seg *segs,
			     unsigned nsegs, uint64_t npages, uint64_t nodemask,
			     struct pgt_shard_geom *out, unsigned cap);

/* ---------------------------------------------------------------- */
/* Sharded bitmaps (shard.c)                                           */
/* ---------------------------------------------------------------- */

struct pgt_shard {
	uint64_t first;
	uint64_t npages;
	int node;
	int worker;
	struct pgt_bitmap bm;
	void *mem;
	size_t bytes;
	struct pgt_shard_ctr *ctr;     /* may be NULL */
};

/*
 * A region-wide page bitmap whose bits live in one struct pgt_bitmap per
 * shard, each allocated on its node. Indices are region page numbers.
 * set/test/set_range are atomic as in bitmap.h; the rest needs the caller
 * to exclude takers (as bitmap.h), and pgt__shardmap_take needs exclusive
 * use (no setters either: its run offsets are counted first).
 */
struct pgt_shardmap {
	uint64_t nbits;
	unsigned n;
	struct pgt_shard *s;
	const struct pgt_numa_ops *ops;
	struct pgt_workers *workers;   /* NULL: everything in the caller */
	/* Smaller maps are taken in the caller even with workers: waking a
	 * worker costs 15-50 us on a busy host (PLATFORM-NOTES), a whole 1 GiB
	 * map at 10 % dirty takes ~15 us. Default PGT_SHARD_PARALLEL_BITS. */
	uint64_t parallel_min_bits;
};

/* 16 GiB of 4 KiB pages: from there two workers gain more than a wake-up. */
#define PGT_SHARD_PARALLEL_BITS (1ULL << 22)

/* From a region layout (NULL: one shard, default allocation). */
int pgt__shardmap_init(struct pgt_shardmap *m, uint64_t nbits, const struct pgt_numa_region *nr);
/* From explicit geometry (tests, benchmarks); @ops NULL: system. */
int pgt__shardmap_init_geom(struct pgt_shardmap *m, uint64_t nbits,
			    const struct pgt_shard_geom *g, unsigned n,
			    const struct pgt_numa_ops *ops, struct pgt_workers *workers);
void pgt__shardmap_fini(struct pgt_shardmap *m);
size_t pgt__shardmap_bytes(const struct pgt_shardmap *m);

static inline struct pgt_shard *pgt__shardmap_find(const struct pgt_shardmap *m, uint64_t i)
{
	unsigned lo = 0, hi = m->n;

	/* most regions have one or two shards */
	if (m->n == 1 || i < m->s[1].first)
		return &m->s[0];
	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (m->s[mid].first <= i)
			lo = mid;
		else
			hi = mid;
	}
	return &m->s[lo];
}

static inline void pgt__shardmap_set(struct pgt_shardmap *m, uint64_t i)
{
	struct pgt_shard *s = pgt__shardmap_find(m, i);

	pgt__bitmap_set(&s->bm, i - s->first);
}

static inline bool pgt__shardmap_test(const struct pgt_shardmap *m, uint64_t i)
{
	const struct pgt_shard *s = pgt__shardmap_find(m, i);

	return pgt__bitmap_test(&s->bm, i - s->first);
}

/* 64-bit word @w of the map (bits 64w .. 64w+63), relaxed; 0 past the end.
 * Shards own whole words, so a word is never split between two. */
static inline uint64_t pgt__shardmap_word(const struct pgt_shardmap *m, size_t w)
{
	const struct pgt_shard *s;

	if (!m->n || (uint64_t)w * 64 >= m->nbits)
		return 0;
	s = pgt__shardmap_find(m, (uint64_t)w * 64);
	return atomic_load_explicit(&s->bm.words[w - s->first / 64], memory_order_relaxed);
}

void pgt__shardmap_set_range(struct pgt_shardmap *m, uint64_t first, uint64_t n);
void pgt__shardmap_clear_range(struct pgt_shardmap *m, uint64_t first, uint64_t n);
void pgt__shardmap_zero(struct pgt_shardmap *m);
uint64_t pgt__shardmap_popcount(const struct pgt_shardmap *m);
/* Popcount of [first, first + n). */
uint64_t pgt__shardmap_count_range(const struct pgt_shardmap *m, uint64_t first, uint64_t n);
/* Maximal runs, joined across shard boundaries. */
uint64_t pgt__shardmap_count_runs(const struct pgt_shardmap *m);
int pgt__shardmap_for_each_run(const struct pgt_shardmap *m, pgt_bitmap_run_fn fn, void *arg);
uint64_t pgt__shardmap_or_kvm(struct pgt_shardmap *m, const unsigned long *src, uint64_t nbits);
int64_t pgt__shardmap_export_kvm(const struct pgt_shardmap *m, unsigned long *out, size_t words);
bool pgt__shardmap_validate(const struct pgt_shardmap *m, const char **reason);

/*
 * Output of a sharded get-and-clear: a KVM-layout bitmap (overwritten) and/or
 * runs of guest-physical pages, as struct pgt_harvest.
 */
struct pgt_shard_out {
	unsigned long *bitmap;
	size_t bitmap_words;
	struct pgt_run *runs;
	size_t runs_cap;
	uint64_t gpa;                  /* of region page 0 */
	unsigned page_shift;
	size_t nruns;                  /* out: written, or needed on -ENOBUFS */
};

/*
 * Get-and-clear every shard, in parallel on the shards' workers when the map
 * has a pool, and merge into @o without a lock: each shard owns whole words
 * of the bitmap and a slice of the runs array counted beforehand; runs
 * meeting at a shard boundary are joined afterwards. Needs exclusive use of
 * the map. Returns bits taken; -ENOBUFS when @o->runs_cap is too small
 * (@o->nruns says how many are needed; nothing is taken); -EINVAL when
 * @o->bitmap_words is too small; -EBUSY when a concurrent setter broke the
 * exclusive-use rule and runs did not fit their slices (never a write
 * outside @o->runs).
 */
int64_t pgt__shardmap_take(struct pgt_shardmap *m, struct pgt_shard_out *o);

/* ---------------------------------------------------------------- */
/* /proc parsers (procmap.c), exposed for tests and the fuzz target   */
/* ---------------------------------------------------------------- */

/* Parse one numa_maps line (without newline) into @m: start address,
 * policy, N<node>= counts (pages of kernelpagesize_kB). 0 or -EBADMSG. */
int pgt__numa_maps_line(const char *line, size_t len, struct pgt_mapping *m);
/* Read a whole /proc file into a malloc'd buffer (NUL-terminated), at most
 * @max bytes. 0 or -errno (-EFBIG beyond @max). */
int pgt__read_proc_file(const char *path, size_t max, char **buf, size_t *len);

/* ---------------------------------------------------------------- */
/* Provided by the engine (engine/region.c, engine/engine.c). numa/   */
/* carries weak defaults (NULL, no regions) so it links on its own.   */
/* ---------------------------------------------------------------- */

struct pgt_numa_region *pgt__region_numa(const struct pgt_region *r);
struct pgt_numa *pgt__engine_numa(const struct pgt_engine *e);
/* Call @fn for every region of @e under the region list lock (read);
 * stops at and returns the first non-zero return of @fn. */
int pgt__engine_for_each_region(struct pgt_engine *e,
				int (*fn)(void *arg, struct pgt_region *r), void *arg);

#endif /* PGT_NUMA_PVT_H */
