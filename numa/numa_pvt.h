/* SPDX-License-Identifier: MIT */
/*
 * NUMA internals: topology, the system side of the node seam, the
 * engine-level NUMA context, region layouts and placement queries.
 * Not installed.
 *
 * Dependencies: numa/ uses hal/ and lib/ (bitmaps, shard maps, worker
 * pools, the node seam) and nothing above: it never sees a struct
 * pgt_region or struct pgt_engine. The engine calls into numa/ and hands it
 * what it needs (layouts, bitmaps); the public queries that take a region
 * or an engine are the engine's (engine/numa_api.c).
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
#include "lib/bitmap.h"
#include "lib/cpuset.h"
#include "lib/nodeops.h"
#include "lib/shardmap.h"
#include "lib/workers.h"

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
/* A sharded bitmap of the region's pages laid out as @nr says (NULL: one
 * shard, default allocation), on its nodes and workers. */
int pgt__numa_shardmap_init(struct pgt_shardmap *m, uint64_t nbits,
			    const struct pgt_numa_region *nr);
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
/* Queries on a region layout (placement.c). The public region and    */
/* engine entry points are the engine's (engine/numa_api.c): it owns   */
/* the regions and hands numa/ their layouts.                          */
/* ---------------------------------------------------------------- */

/* Extents of @nr as pgt_region_numa_layout() reports them (count; at most
 * @cap written). */
int pgt__numa_region_extents(const struct pgt_numa_region *nr, struct pgt_numa_extent *out,
			     size_t cap);
/* Shards of @nr as pgt_region_numa_shards() reports them. */
int pgt__numa_region_shards(const struct pgt_numa_region *nr, struct pgt_numa_shard_info *out,
			    size_t cap);
/* Where @nr's pages are (move_pages query). Pages walked or -errno. */
int64_t pgt__numa_region_placement(const struct pgt_numa_region *nr, struct pgt_placement *out);
/* Per-node counters of @nr into @out (zeroed first); @touched: the region's
 * touched pages in KVM layout, or NULL. */
int pgt__numa_region_stats(const struct pgt_numa_region *nr, const unsigned long *touched,
			   uint32_t flags, struct pgt_numa_stats *out);
/* @sum += @one, node by node; then nnodes from the non-empty nodes. */
void pgt__numa_stats_add(struct pgt_numa_stats *sum, const struct pgt_numa_stats *one);
void pgt__numa_stats_finish(struct pgt_numa_stats *s);

#endif /* PGT_NUMA_PVT_H */
