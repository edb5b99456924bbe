/* SPDX-License-Identifier: MIT */
/*
 * pgtrack NUMA: the host's topology, where guest memory is placed and where
 * it really is, per-node accounting, and the same questions about the
 * mappings of any process (/proc/PID/smaps and numa_maps).
 *
 * Conventions as in pgtrack.h: 0 or a count, or a negative errno; structs
 * that may grow start with a size field the caller sets; the library never
 * prints (messages go to the log callback given).
 *
 * Node ids are the kernel's (OS) numbers. Arrays indexed by node id hold
 * PGT_MAX_NODES entries; hosts with higher node ids are reported in the
 * "unknown" counters.
 */
#ifndef PGTRACK_NUMA_H
#define PGTRACK_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif


/* ------------------------------------------------------------------ */
/* Topology                                                            */
/* ------------------------------------------------------------------ */

typedef struct pgt_topology pgt_topology;

/**
 * struct pgt_topology_config - What pgt_topology_load() loads.
 * @size:      sizeof(struct pgt_topology_config).
 * @flags:     reserved, 0.
 * @spec:      NULL or "" for this machine (hwloc; without hwloc one node
 *             holding every online CPU, with a log line saying so). Else an
 *             hwloc synthetic description ("pack:2 numa:1 core:2 pu:1") or
 *             "xml:PATH" (an hwloc XML export). Either may end in
 *             ";cpus=LIST" ("0-2,5") to keep only those CPUs, which gives
 *             uneven nodes and nodes without CPUs. Loaded topologies other
 *             than this machine's are for tests and planning: nothing is
 *             bound or allocated on their nodes.
 * @log:       log callback for the reason of a failure, or NULL.
 * @log_arg:   passed to @log.
 * @log_level: highest level passed to @log (0 means PGT_LOG_WARN).
 */
struct pgt_topology_config {
	uint32_t size;
	uint32_t flags;
	const char *spec;
	pgt_log_fn log;
	void *log_arg;
	int log_level;
};

/**
 * pgt_topology_load() - Load a NUMA topology.
 * @cfg: configuration, or NULL for this machine.
 * @out: receives the topology; the caller frees it with pgt_topology_free().
 *
 * Returns: 0; -EINVAL (bad config, a spec hwloc rejects, a bad CPU list or
 * one that leaves no CPU); -EOPNOTSUPP (a spec given to a build without
 * hwloc); -ENOMEM.
 */
int pgt_topology_load(const struct pgt_topology_config *cfg, pgt_topology **out);

/** pgt_topology_free() - Free a topology. NULL is a no-op. */
void pgt_topology_free(pgt_topology *t);

/** Where a topology came from (struct pgt_topology_info.source). */
enum pgt_topology_source {
	PGT_TOPO_HWLOC = 1,     /* this machine, from hwloc */
	PGT_TOPO_SYNTHETIC,     /* an hwloc synthetic or XML description */
	PGT_TOPO_FALLBACK,      /* no hwloc: one node with every online CPU */
};

/**
 * struct pgt_topology_info - Summary of a topology.
 * @this_system: the topology describes the running machine, so threads can
 *               be bound to its CPUs and memory to its nodes.
 * @max_node:    highest node id.
 */
struct pgt_topology_info {
	uint32_t size;
	uint32_t source;        /* enum pgt_topology_source */
	bool this_system;
	uint32_t nnodes;
	uint32_t ncpus;         /* logical CPUs (PUs) in all nodes */
	int32_t max_node;
};

/** pgt_topology_info() - Fill @out (@out->size set). Returns 0 or -EINVAL. */
int pgt_topology_info(const pgt_topology *t, struct pgt_topology_info *out);

#define PGT_NUMA_CPULIST_LEN 256

/**
 * struct pgt_numa_node - One NUMA node.
 * @id:      the OS node number.
 * @memory:  bytes of memory local to the node (0: a CPU-only node).
 * @ncpus:   logical CPUs (0: a memory-only node).
 * @ncores:  cores.
 * @cache:   bytes of L1d, L2 and L3 cache inside the node, summed over its
 *           caches (0 where unknown).
 * @cpulist: the CPUs as a list ("0-3,8-11"), NUL-terminated; truncated with
 *           "..." when longer than the buffer.
 */
struct pgt_numa_node {
	uint32_t size;
	int32_t id;
	uint64_t memory;
	uint32_t ncpus;
	uint32_t ncores;
	uint64_t cache[3];
	char cpulist[PGT_NUMA_CPULIST_LEN];
};

/**
 * pgt_topology_node() - Describe the @idx-th node (0 .. nnodes - 1, in
 * ascending id order). @out->size must be set.
 * Returns: 0, -EINVAL, or -ENOENT when @idx is out of range.
 */
int pgt_topology_node(const pgt_topology *t, unsigned idx, struct pgt_numa_node *out);

/**
 * pgt_topology_find() - Index of node id @node.
 * Returns: the index (>= 0), -EINVAL, or -ENOENT when there is no such node.
 */
int pgt_topology_find(const pgt_topology *t, int node);

/**
 * pgt_topology_distance() - Relative access cost from node @from to node @to
 * as ACPI SLIT reports it (10 local). Where the firmware gives none, 10 for
 * a node to itself and 20 otherwise.
 * Returns: the distance (> 0), -EINVAL, or -ENOENT for an unknown node.
 */
int pgt_topology_distance(const pgt_topology *t, int from, int to);

/**
 * pgt_topology_node_cpus() - The logical CPUs of node @node, ascending.
 * @cpus: receives up to @cap CPU numbers (may be NULL with @cap 0).
 * Returns: the number of CPUs (may exceed @cap), -EINVAL or -ENOENT.
 */
int pgt_topology_node_cpus(const pgt_topology *t, int node, int *cpus, size_t cap);

/**
 * pgt_topology_cpu_node() - The node holding logical CPU @cpu.
 * Returns: the node id, -EINVAL, or -ENOENT.
 */
int pgt_topology_cpu_node(const pgt_topology *t, int cpu);

/* ------------------------------------------------------------------ */
/* Placement of guest memory                                           */
/* ------------------------------------------------------------------ */

/** struct pgt_region_config.numa_policy. */
enum pgt_numa_policy {
	PGT_NUMA_DEFAULT = 0,   /* numa_node >= 0: bind there; else the kernel's
	                         * default policy (first touch) */
	PGT_NUMA_BIND,          /* the whole region on numa_node */
	PGT_NUMA_INTERLEAVE,    /* pages spread over numa_nodemask */
	PGT_NUMA_EXTENTS,       /* each extent of numa_extents on its node */
	PGT_NUMA__COUNT
};

/** struct pgt_numa_extent.flags */
enum pgt_numa_extent_flags {
	/* Pages of the extent alternate over the nodes of an interleave mask;
	 * @node is the node the extent's tracking state lives on. */
	PGT_EXTENT_INTERLEAVED = 1u << 0,
};

/**
 * struct pgt_numa_extent - A guest-physical range and its node.
 * @gpa:   start; a multiple of the region's page size.
 * @len:   bytes; a non-zero multiple of the region's page size.
 * @node:  node id; -1 in query results when the kernel decides (default
 *         policy).
 * @flags: enum pgt_numa_extent_flags (query results only; 0 in configs).
 *
 * In a region config (PGT_NUMA_EXTENTS) the extents must cover the region
 * exactly, in ascending order, without overlap; each node must exist and
 * have memory.
 */
struct pgt_numa_extent {
	uint64_t gpa;
	uint64_t len;
	int32_t node;
	uint32_t flags;
};

/**
 * pgt_numa_policy_name() - "default", "bind", "interleave", "extents".
 * Returns: a static string, or NULL for an unknown value.
 */
const char *pgt_numa_policy_name(int policy);

/**
 * pgt_region_numa_layout() - Which guest-physical range of @r lives on which
 * node, as placed (not as measured: see pgt_region_placement()). Adjacent
 * pages on one node form one extent; an interleaved region reports one
 * extent per shard of its tracking state, flagged PGT_EXTENT_INTERLEAVED.
 * @out: receives up to @cap extents in guest-physical order (may be NULL
 *       with @cap 0).
 * Returns: the number of extents (may exceed @cap), or -EINVAL.
 */
int pgt_region_numa_layout(const pgt_region *r, struct pgt_numa_extent *out, size_t cap);

/**
 * struct pgt_numa_shard_info - One shard of a region's tracking state.
 * @gpa, @len:  the guest-physical range its bits cover. Shard boundaries are
 *              node boundaries rounded down to 64 pages, so every shard owns
 *              whole words of a KVM-layout bitmap.
 * @node:       node the shard's bitmaps are allocated on (-1: default).
 * @worker:     index of the worker thread that harvests it (-1: the caller).
 * @cpulist:    CPUs that worker is bound to ("" when unbound).
 */
struct pgt_numa_shard_info {
	uint64_t gpa;
	uint64_t len;
	int32_t node;
	int32_t worker;
	char cpulist[PGT_NUMA_CPULIST_LEN];
};

/**
 * pgt_region_numa_shards() - The shards of @r.
 * Returns: the number of shards (may exceed @cap), or -EINVAL.
 */
int pgt_region_numa_shards(const pgt_region *r, struct pgt_numa_shard_info *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Where memory really is                                              */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_placement - Result of a placement query.
 * @size:       sizeof(struct pgt_placement), set by the caller.
 * @nnodes:     entries used in @node_pages (highest node seen + 1).
 * @page_size:  bytes per queried page.
 * @pages:      pages queried.
 * @resident:   pages present in memory (on some node).
 * @absent:     pages not populated (-ENOENT from the kernel).
 * @errors:     pages the kernel could not report (-EFAULT, -EACCES...).
 * @misplaced:  resident pages on a node other than intended (for an
 *              interleaved range: on a node outside its mask).
 * @unknown_node: resident pages on nodes >= PGT_MAX_NODES.
 * @node_pages: resident pages per node id.
 * @status:     optional, caller-owned: receives for each page (up to
 *              @status_cap) its node (>= 0) or a negative errno.
 * @status_cap: entries at @status.
 */
struct pgt_placement {
	uint32_t size;
	uint32_t nnodes;
	uint64_t page_size;
	uint64_t pages;
	uint64_t resident;
	uint64_t absent;
	uint64_t errors;
	uint64_t misplaced;
	uint64_t unknown_node;
	uint64_t node_pages[PGT_MAX_NODES];
	int32_t *status;
	size_t status_cap;
};

/**
 * pgt_placement_query() - Which node each page of [@addr, @addr + @len) of
 * process @pid is on (move_pages(2) without moving anything). Nothing is
 * faulted in.
 * @pid:       process id, 0 for the caller.
 * @addr:      start, a multiple of @page_size.
 * @len:       bytes, a non-zero multiple of @page_size.
 * @page_size: the mapping's page size (one query per page: 2 MiB pages of
 *             hugetlb memory need one entry each), a power of two >= 4 KiB.
 * @intended:  node the range should be on, or -1 (nothing is misplaced).
 * @out:       result; @out->size set; @out->status may be given.
 *
 * Returns: pages queried; -EINVAL (bad arguments), -ESRCH (no such
 * process), -EPERM (not allowed to inspect it), -ENOSYS (no NUMA support in
 * this kernel), or the error of move_pages.
 */
int64_t pgt_placement_query(int pid, uint64_t addr, uint64_t len, uint64_t page_size,
			    int intended, struct pgt_placement *out);

/**
 * pgt_region_placement() - pgt_placement_query() over a region of this
 * process, with each page's intended node taken from the region's layout.
 * Returns: pages queried or a negative errno.
 */
int64_t pgt_region_placement(pgt_region *r, struct pgt_placement *out);

/* ------------------------------------------------------------------ */
/* Per-node accounting                                                 */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_numa_node_stats - One node's share of a region (pages at the
 * region's page size).
 * @pages:          pages the layout places on the node.
 * @resident:       pages measured on the node (PGT_NUMA_STATS_MEASURE).
 * @misplaced:      pages the layout places here that are resident on
 *                  another node (PGT_NUMA_STATS_MEASURE).
 * @touched:        touched pages in the node's part (touch tracking).
 * @dirty_reported: pages of the node's part reported dirty by tracking
 *                  passes, cumulative: its rate is the dirty rate.
 * @released:       pages of the node's part released to the host.
 * @remote_touch:   pages first touched by a vCPU that runs on another node
 *                  (vCPUs declared with pgt_numa_vcpu_set()).
 * @shards:         tracking shards allocated on the node.
 * @metadata_bytes: tracking state allocated on the node.
 * @harvest_ns:     time workers spent harvesting the node's shards.
 */
struct pgt_numa_node_stats {
	uint64_t pages;
	uint64_t resident;
	uint64_t misplaced;
	uint64_t touched;
	uint64_t dirty_reported;
	uint64_t released;
	uint64_t remote_touch;
	uint64_t shards;
	uint64_t metadata_bytes;
	uint64_t harvest_ns;
};

/** pgt_region_numa_stats() flags. */
enum pgt_numa_stats_flags {
	/* Ask the kernel where every page is (move_pages): fills resident and
	 * misplaced; slow on large regions. */
	PGT_NUMA_STATS_MEASURE = 1u << 0,
};

/**
 * struct pgt_numa_stats - Per-node accounting.
 * @nnodes:  entries used in @node (highest node id with anything + 1).
 * @unknown: pages with no known node (default policy, node ids beyond
 *           PGT_MAX_NODES), same fields.
 */
struct pgt_numa_stats {
	uint32_t size;
	uint32_t nnodes;
	struct pgt_numa_node_stats unknown;
	struct pgt_numa_node_stats node[PGT_MAX_NODES];
};

/**
 * pgt_region_numa_stats() - Per-node counters of one region.
 * @flags: enum pgt_numa_stats_flags.
 * Returns: 0 or a negative errno (-EINVAL; with PGT_NUMA_STATS_MEASURE the
 * error of the placement query).
 */
int pgt_region_numa_stats(pgt_region *r, uint32_t flags, struct pgt_numa_stats *out);

/**
 * pgt_engine_numa_stats() - pgt_region_numa_stats() summed over every region
 * of @eng.
 * Returns: the number of regions summed, or a negative errno.
 */
int pgt_engine_numa_stats(pgt_engine *eng, uint32_t flags, struct pgt_numa_stats *out);

/**
 * pgt_numa_vcpu_set() - Declare that thread @tid (a vCPU) runs on node
 * @node, or forget it (@node -1). First touches by that thread of pages on
 * another node count as remote_touch.
 * Returns: 0, -EINVAL (@tid <= 0, unknown node), -ENOSPC (too many vCPUs).
 */
int pgt_numa_vcpu_set(pgt_engine *eng, int tid, int node);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_NUMA_H */
