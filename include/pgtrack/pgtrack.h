/* SPDX-License-Identifier: MIT */
/*
 * pgtrack: page-state tracking for hugepage-backed guest memory.
 *
 * Conventions (all functions):
 *  - 0 or a count on success, a negative errno on failure; errno is not used.
 *  - Handles are opaque. Argument structs that may grow start with a `size`
 *    field the caller sets to sizeof(the struct) (as the kernel's pm_scan_arg).
 *    The size rule, for every such struct (the kernel's extensible-struct
 *    rule): a size below the struct's first version is -EINVAL; one more
 *    than 4096 bytes above what this library knows is -E2BIG; a newer,
 *    larger struct is accepted when the bytes this
 *    library does not know are zero (-E2BIG otherwise), and structs the
 *    library fills get those bytes zeroed.
 *  - The library never prints and never exits; it logs through the callback
 *    given in struct pgt_engine_config.
 *  - Thread safety: an engine may be used from many threads. Harvests of one
 *    region are serialised internally; guest (vCPU) threads writing to guest
 *    memory never wait for a harvest.
 */
#ifndef PGTRACK_PGTRACK_H
#define PGTRACK_PGTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PGT_VERSION_MAJOR 0
#define PGT_VERSION_MINOR 1
#define PGT_VERSION_PATCH 0

/*
 * API that may still change carries PGT_EXPERIMENTAL and sits in the
 * EXPERIMENTAL node of the version map (as DPDK's __rte_experimental): using
 * it warns unless PGT_ALLOW_EXPERIMENTAL_API is defined before including
 * pgtrack headers.
 */
#if defined(PGT_ALLOW_EXPERIMENTAL_API) || !defined(__GNUC__)
#define PGT_EXPERIMENTAL
#else
#define PGT_EXPERIMENTAL \
	__attribute__((deprecated("pgtrack experimental API: define PGT_ALLOW_EXPERIMENTAL_API")))
#endif

/** Node ids 0 .. PGT_MAX_NODES - 1 are reported per node (per-node arrays). */
#define PGT_MAX_NODES 64

typedef struct pgt_engine pgt_engine;
typedef struct pgt_region pgt_region;
typedef struct pgt_dirty_view pgt_dirty_view;
struct pgt_numa_extent;

/**
 * pgt_version() - Library version as "major.minor.patch".
 *
 * Returns: a static string; never NULL.
 */
const char *pgt_version(void);

/* ------------------------------------------------------------------ */
/* Engine                                                              */
/* ------------------------------------------------------------------ */

enum pgt_log_level {
	PGT_LOG_ERR = 3,
	PGT_LOG_WARN = 4,
	PGT_LOG_INFO = 6,
	PGT_LOG_DEBUG = 7,
};

/**
 * typedef pgt_log_fn - Log sink.
 * @arg:   the log_arg given in the engine config.
 * @level: one of enum pgt_log_level.
 * @msg:   NUL-terminated message without trailing newline; valid only
 *         during the call.
 *
 * May be called from any pgtrack thread (fault handlers, workers).
 */
typedef void (*pgt_log_fn)(void *arg, int level, const char *msg);

/** Dirty-tracking methods, best first. */
enum pgt_dirty_method {
	PGT_DIRTY_AUTO = 0,      /* best the probe proves to work */
	PGT_DIRTY_UFFD_ASYNC,    /* uffd WP-async + PAGEMAP_SCAN get-and-clear */
	/* clear_refs 4 + pagemap bit 55; at most 64 regions at once (clear_refs
	 * is process-wide); exact with a quiesce callback (pgt_quiesce_fn) */
	PGT_DIRTY_SOFT_DIRTY,
	PGT_DIRTY_UFFD_SYNC,     /* sync uffd-WP, faults to handler threads */
	/*
	 * mprotect + SIGSEGV, the portable baseline. Limits: at most 64
	 * regions at once; writes the kernel makes into a protected page for
	 * the process (read(2) into guest memory, O_DIRECT, vhost) fail with
	 * EFAULT instead of faulting; the process's SIGSEGV handler is chained.
	 */
	PGT_DIRTY_MPROTECT,
	PGT_DIRTY_NONE,
	/*
	 * Fingerprints (after NONE, so earlier values keep theirs): each
	 * harvest hashes every resident 4 KiB piece and reports pages whose
	 * content changed. No kernel support, no faults, sees device and
	 * kernel writes; costs a read of all resident memory per harvest and
	 * 4 bytes per 4 KiB. Reports changed content: a change undone before
	 * the next harvest is not reported. AUTO picks it only when no other
	 * method works; select it by name ("fingerprint").
	 */
	PGT_DIRTY_FINGERPRINT,
	PGT_DIRTY__COUNT
};

/**
 * pgt_dirty_method_name() - Short stable name ("uffd-async", "soft-dirty",
 * "uffd-sync", "mprotect", "none", "auto", "fingerprint").
 *
 * Returns: a static string, or NULL for an unknown value.
 */
const char *pgt_dirty_method_name(int method);

/**
 * pgt_dirty_method_parse() - Inverse of pgt_dirty_method_name().
 *
 * Returns: the method (>= 0) or -EINVAL.
 */
int pgt_dirty_method_parse(const char *name);

/**
 * struct pgt_engine_config - Engine parameters.
 * @size:          sizeof(struct pgt_engine_config).
 * @flags:         reserved, must be 0.
 * @log:           log callback, or NULL for silence.
 * @log_arg:       passed to @log.
 * @log_level:     highest level passed to @log (0 means PGT_LOG_WARN).
 * @fault_threads: userfaultfd handler threads (0 means 1).
 * @numa_topology: NULL for this machine, else a topology description as
 *                 struct pgt_topology_config.spec (pgtrack/numa.h) takes:
 *                 for tests and planning; nothing is bound or placed on
 *                 nodes this host does not have.
 * @numa_workers:  harvest workers per NUMA node (0: one per node with CPUs
 *                 on a multi-node host, none on a single node).
 * @calibrate:     PGT_CALIBRATE_* flags (0: default). Regions created with
 *                 PGT_DIRTY_AUTO get the tracker a short measurement of this
 *                 host's kernel primitives says is cheapest (pgt_calibration()
 *                 in pgtrack/probe.h), measured once per engine on the first
 *                 such region and cached per boot. A forced method is never
 *                 changed. Added after pgtrack 0.1; it sits in what was the
 *                 struct's tail padding, so PGT_ENGINE_CONFIG_SIZE_VER0 is
 *                 still the smallest size taken.
 */
struct pgt_engine_config {
	uint32_t size;
	uint32_t flags;
	pgt_log_fn log;
	void *log_arg;
	int log_level;
	unsigned fault_threads;
	const char *numa_topology;
	unsigned numa_workers;
	uint32_t calibrate;
};

/** struct pgt_engine_config.calibrate: AUTO follows feature order (no
 * measurement). */
#define PGT_CALIBRATE_OFF (1u << 0)
/** ... measure even when this boot's cache file has costs (and rewrite it). */
#define PGT_CALIBRATE_FRESH (1u << 1)

/** sizeof(struct pgt_engine_config) in pgtrack 0.1: the smallest size
 * pgt_engine_open() takes. */
#define PGT_ENGINE_CONFIG_SIZE_VER0 \
	((offsetof(struct pgt_engine_config, numa_workers) + sizeof(unsigned) + 7) & ~(size_t)7)

/**
 * pgt_engine_open() - Probe the host and create an engine.
 * @cfg: configuration, or NULL for defaults.
 * @out: receives the engine; the caller owns it and frees it with
 *       pgt_engine_close().
 *
 * Returns: 0, -EINVAL (bad config), -ENOMEM, or the error of starting
 * handler threads.
 */
int pgt_engine_open(const struct pgt_engine_config *cfg, pgt_engine **out);

/**
 * pgt_engine_close() - Stop all trackers, destroy all regions, join all
 * threads and free the engine. NULL is a no-op. Memory that pgtrack did not
 * allocate (registered regions) is left mapped. Dirty views still open are
 * detached, not freed: their handles stay valid for pgt_dirty_view_close(),
 * which the caller still calls; pgt_dirty_harvest() on them is -ENODEV.
 * No other call on the engine or its objects may run concurrently.
 */
void pgt_engine_close(pgt_engine *eng);

/* ------------------------------------------------------------------ */
/* Regions                                                             */
/* ------------------------------------------------------------------ */

enum pgt_backing {
	PGT_BACKING_ANON = 1,  /* private anonymous, 4 KiB pages */
	PGT_BACKING_THP,       /* private anonymous with MADV_HUGEPAGE */
	PGT_BACKING_HUGETLB,   /* memfd MFD_HUGETLB, 2 MiB pages, shared */
	PGT_BACKING_MEMFD,     /* memfd (shmem), 4 KiB pages, shared */
	PGT_BACKING_EXTERNAL,  /* registered: mapped by the caller */
	PGT_BACKING_DPDK,      /* a DPDK memzone (pgtrack/offload.h), shared */
	PGT_BACKING__COUNT
};

/**
 * pgt_backing_name() - "anon", "thp", "hugetlb", "memfd", "external", "dpdk".
 * Returns: a static string, or NULL for an unknown value.
 */
const char *pgt_backing_name(int backing);

/** Trackers a region is created with (struct pgt_region_config.track). */
enum pgt_track {
	PGT_TRACK_DIRTY = 1u << 0, /* dirty tracking (pgt_dirty_*) */
	PGT_TRACK_TOUCH = 1u << 1, /* first touch via uffd MISSING/MINOR */
	/*
	 * Notice memory freed behind pgtrack's back (madvise(MADV_DONTNEED /
	 * MADV_REMOVE) by another thread) through userfaultfd REMOVE events;
	 * pgt_release_rescan() then accounts those pages as released. Costs a
	 * handler round trip on every such madvise of the region. Needs a
	 * userfaultfd context: PGT_TRACK_TOUCH, or PGT_TRACK_DIRTY with a
	 * uffd tracker (uffd-async, uffd-sync); -EOPNOTSUPP otherwise.
	 */
	PGT_TRACK_REMOVE = 1u << 2,
};

/**
 * typedef pgt_page_provider - Supplies the contents of a page on first
 * touch (snapshot restore, post-copy).
 * @arg: the provider_arg of the region config.
 * @gpa: guest-physical address of the page (aligned to the page size).
 * @dst: buffer of @len bytes to fill.
 * @len: the region's backing page size.
 *
 * Called from a fault-handler thread while the faulting vCPU waits. A
 * provider that cannot answer soon must bound its own wait and return an
 * error (-ETIMEDOUT): pgtrack cannot interrupt it. While it waits, that
 * handler thread serves nothing else (the others, fault_threads, go on).
 * Returns: 0 when @dst was filled, 1 to map a zero page instead, or a
 * negative errno when the page cannot be provided: the fault is then failed
 * (the page is poisoned if the kernel supports UFFDIO_POISON, so the vCPU
 * gets SIGBUS instead of hanging) and counted in touch_errors.
 */
typedef int (*pgt_page_provider)(void *arg, uint64_t gpa, void *dst, size_t len);

/**
 * typedef pgt_wp_fn - Called by the sync uffd-WP tracker before a write to a
 * clean page proceeds (copy-on-write snapshots, post-copy style).
 * The vCPU is blocked until it returns. Must not touch the faulting page.
 */
typedef void (*pgt_wp_fn)(void *arg, uint64_t gpa);

/**
 * typedef pgt_quiesce_fn - Pause (@pause true) or resume the guest's writers.
 * Used by the soft-dirty tracker only: its harvest reads /proc/self/pagemap and
 * then clears soft-dirty bits process-wide (clear_refs), and a write landing
 * between the two would be lost. With this callback the harvest pauses the
 * vCPUs for that window (as a VMM does for a migration round); without it the
 * tracker logs a warning and is exact only when writers are idle.
 * Returns 0 or a negative errno (the harvest then fails with it).
 */
typedef int (*pgt_quiesce_fn)(void *arg, bool pause);

/**
 * struct pgt_region_config - Region parameters.
 * @size:        sizeof(struct pgt_region_config).
 * @backing:     enum pgt_backing (create) or PGT_BACKING_EXTERNAL (register).
 * @length:      bytes; a multiple of the backing page size.
 * @gpa:         guest-physical base; aligned to the backing page size.
 * @track:       enum pgt_track bits.
 * @dirty_method: enum pgt_dirty_method (AUTO picks the best available).
 * @numa_node:   node to bind the memory to, or -1.
 * @name:        optional label (copied).
 * @addr:        register only: the caller's mapping (page aligned).
 * @fd:          register only: backing fd or -1 (used for punch-hole, and
 *               to read pages the file holds that the mapping does not map).
 *               A MAP_SHARED mapping given without its fd: pgtrack opens the
 *               file via /proc/self/map_files (CAP_SYS_ADMIN or
 *               CAP_CHECKPOINT_RESTORE; else a warning, releases by
 *               MADV_REMOVE and such pages read as zeros).
 * @fd_offset:   register only: offset of @addr in @fd.
 * @page_size:   register only: backing page size (0: detect from the VMA).
 * @provider:    first touch: page provider, or NULL for zero pages.
 * @provider_arg: passed to @provider.
 * @wp_cb:       sync uffd-WP: callback before a write, or NULL.
 * @wp_arg:      passed to @wp_cb.
 * @quiesce:     soft-dirty: pause/resume writers around a harvest, or NULL.
 * @quiesce_arg: passed to @quiesce.
 * @numa_policy: enum pgt_numa_policy (pgtrack/numa.h); 0 (DEFAULT) binds to
 *               @numa_node when it is >= 0, as before.
 * @numa_nextents: PGT_NUMA_EXTENTS: entries at @numa_extents.
 * @numa_nodemask: PGT_NUMA_INTERLEAVE: bit n set = node n takes part.
 * @numa_extents: PGT_NUMA_EXTENTS: per-node ranges covering the region
 *               (struct pgt_numa_extent); read during the call only.
 */
struct pgt_region_config {
	uint32_t size;
	uint32_t backing;
	uint64_t length;
	uint64_t gpa;
	uint32_t track;
	int32_t dirty_method;
	int32_t numa_node;
	const char *name;
	void *addr;
	int fd;
	uint64_t fd_offset;
	uint64_t page_size;
	pgt_page_provider provider;
	void *provider_arg;
	pgt_wp_fn wp_cb;
	void *wp_arg;
	pgt_quiesce_fn quiesce;
	void *quiesce_arg;
	uint32_t numa_policy;
	uint32_t numa_nextents;
	uint64_t numa_nodemask;
	const struct pgt_numa_extent *numa_extents;
};

/**
 * pgt_region_create() - Allocate guest memory and track it.
 * @eng: the engine.
 * @cfg: configuration; @cfg->addr/fd/fd_offset are ignored.
 * @out: receives the region, owned by the engine; destroy it with
 *       pgt_region_destroy() or let pgt_engine_close() do it.
 *
 * Returns: 0; -EINVAL (bad size, alignment, backing or tracker);
 * -EEXIST (guest-physical range overlaps another region); -ENOMEM (no
 * memory or no hugepages in the pool); -EOPNOTSUPP (tracker not available on
 * this kernel for this backing); -EPERM (userfaultfd refused since the probe
 * ran: vm.unprivileged_userfaultfd, seccomp; after pgt_probe_refresh() AUTO
 * picks a tracker without it).
 */
int pgt_region_create(pgt_engine *eng, const struct pgt_region_config *cfg,
		      pgt_region **out);

/**
 * pgt_region_register() - Track memory the caller already mapped.
 * Same as pgt_region_create() but uses @cfg->addr, @cfg->fd and
 * @cfg->fd_offset; the mapping must stay valid until the region is
 * destroyed, and is not unmapped by pgtrack. Also -EEXIST when the host
 * range overlaps another region.
 */
int pgt_region_register(pgt_engine *eng, const struct pgt_region_config *cfg,
			pgt_region **out);

/**
 * pgt_region_destroy() - Stop tracking and free the region (and the memory
 * if pgtrack allocated it). Open dirty views of the region must be closed
 * first. Other regions keep being tracked.
 *
 * Returns: 0, -EINVAL for NULL, -EBUSY while dirty views are open (close
 * them first: a view's owner may be harvesting it; pgt_engine_close() is the
 * one place that detaches them instead) or an offload device is attached to
 * it (pgtrack/offload.h).
 */
int pgt_region_destroy(pgt_region *r);

/**
 * struct pgt_region_info - What pgt_region_info() reports.
 * @name points into the region and lives as long as it does.
 */
struct pgt_region_info {
	uint32_t size;
	uint32_t backing;
	void *addr;
	uint64_t length;
	uint64_t gpa;
	uint64_t page_size;  /* tracking granularity (= backing page size) */
	uint64_t npages;
	int fd;              /* the backing file's fd (owned by the region), or -1 */
	int dirty_method;    /* the resolved method, never AUTO */
	uint32_t track;
	int numa_node;
	const char *name;
};

/**
 * pgt_region_info() - Describe a region. @info->size must be set.
 * Returns: 0 or -EINVAL.
 */
int pgt_region_info(const pgt_region *r, struct pgt_region_info *info);

/**
 * pgt_gpa_lookup() - Find the region holding a guest-physical address.
 * @eng: engine.
 * @gpa: guest-physical address.
 * @r:   receives the region (may be NULL).
 * @hva: receives the host virtual address of @gpa (may be NULL).
 *
 * Returns: 0, or -ENOENT when no region holds @gpa.
 */
int pgt_gpa_lookup(pgt_engine *eng, uint64_t gpa, pgt_region **r, void **hva);

/* ------------------------------------------------------------------ */
/* Dirty tracking                                                      */
/* ------------------------------------------------------------------ */

/**
 * pgt_dirty_view_open() - Open an independent consumer of a region's dirty
 * pages (a migration, a snapshot chain, a sampler). Each view sees every page
 * written after it was opened, exactly once per harvest; a harvest by one view
 * never takes pages from another. All views share one kernel tracking pass.
 * @r:   a region created with PGT_TRACK_DIRTY.
 * @out: receives the view; close it with pgt_dirty_view_close().
 *
 * Returns: 0, -EINVAL (region without dirty tracking), -ENOMEM.
 */
int pgt_dirty_view_open(pgt_region *r, pgt_dirty_view **out);

/** pgt_dirty_view_close() - Close a view, also one pgt_engine_close()
 * detached. NULL is a no-op. */
void pgt_dirty_view_close(pgt_dirty_view *v);

/** One run of consecutive pages, guest-physical. */
struct pgt_run {
	uint64_t gpa;
	uint64_t npages;
};

/**
 * struct pgt_harvest - Output buffers and results of pgt_dirty_harvest().
 * @size:         sizeof(struct pgt_harvest).
 * @flags:        reserved, 0.
 * @bitmap:       optional; KVM dirty-log layout: bit i of the array (bit
 *                i%BITS of word i/BITS) is the region's page i, guest-physical
 *                order. Overwritten (not OR-ed). NULL to skip.
 * @bitmap_words: number of words at @bitmap; at least
 *                ceil(npages / (8 * sizeof(unsigned long))).
 * @runs:         optional run output, NULL to skip.
 * @runs_cap:     capacity of @runs.
 * @nruns:        out: runs written (or needed, with -ENOBUFS).
 * @dirty_pages:  out: pages reported.
 * @epoch:        out: this view's harvest number, 1 for the first.
 * @page_size:    out: the granularity of @bitmap, @runs and @dirty_pages
 *                in bytes: the region's page size, or 4096 when the region
 *                refines (pgt_region_refine()): then bit i of @bitmap is the
 *                region's 4 KiB piece i, runs count 4 KiB pieces and
 *                @bitmap_words must cover length / 4096 bits. Written only
 *                when @size covers it (a caller built before this field
 *                knows the granularity from its own pgt_region_refine() call).
 * @data:         optional, refining views only: receives a copy of every
 *                reported 4 KiB piece, in bitmap/run order, 4 KiB each. The
 *                fingerprints then describe exactly these bytes, so a
 *                consumer that sends them (instead of reading guest memory
 *                after the harvest) gets no piece re-sent for safety; see
 *                pgt_region_refine(). NULL to skip.
 * @data_cap:     bytes at @data; -ENOBUFS (nothing consumed, @data_len says
 *                how many are needed) when too small.
 * @data_len:     out: bytes written to @data.
 */
struct pgt_harvest {
	uint32_t size;
	uint32_t flags;
	unsigned long *bitmap;
	size_t bitmap_words;
	struct pgt_run *runs;
	size_t runs_cap;
	size_t nruns;
	uint64_t dirty_pages;
	uint64_t epoch;
	uint64_t page_size;
	void *data;
	uint64_t data_cap;
	uint64_t data_len;
};

/**
 * pgt_dirty_harvest() - Get and clear the pages written since this view's
 * previous harvest (or its opening). Tracking is re-armed atomically: a write
 * that lands after a page was reported is reported by the next harvest.
 * vCPU threads are never blocked by it.
 *
 * "Written" means "changed": pages whose memory changed without a CPU write
 * are reported the same way, once, so a consumer's copy never goes stale:
 * pages pgt_release() freed or whose 4 KiB pieces it zeroed (they read as
 * zero now), pages freed behind pgtrack's back (MADV_DONTNEED/REMOVE) that a
 * UFFD_EVENT_REMOVE or pgt_release_rescan() saw (call the rescan after such
 * frees: it reports them again once their madvise returned), pages an
 * offload device or pgt_dirty_merge() reports.
 *
 * Returns: the number of dirty pages (>= 0); -EINVAL (bad arguments);
 * -ENODEV (the view was detached by pgt_engine_close());
 * -ENOBUFS when @runs is too small (h->nruns says how many are needed) or
 * @bitmap_words is too small: then nothing is consumed, the pages stay
 * pending for the next harvest; -ENXIO when the region's mapping was
 * unmapped, moved (mremap) or mapped over (MAP_FIXED) while tracked: writes
 * there are no longer seen, so every later harvest fails until the region
 * is destroyed (pgt_region_destroy() still works). Holes are always seen;
 * memory mapped over a region is seen by the userfaultfd trackers only.
 *
 * After fork() the parent's tracking goes on unchanged; the child's writes
 * to its copy of private memory are not tracked (nor, for shared memory,
 * its writes through its own mapping). The child must not call pgtrack.
 */
int64_t pgt_dirty_harvest(pgt_dirty_view *v, struct pgt_harvest *h);

/**
 * pgt_dirty_merge() - Merge an external dirty bitmap (KVM dirty log,
 * vhost-user log, offload device) into every view of the region.
 * @bitmap: KVM layout, @nbits bits starting at the region's first page.
 * Returns: 0 or -EINVAL.
 */
int pgt_dirty_merge(pgt_region *r, const unsigned long *bitmap, uint64_t nbits);

/** Sub-page refinement modes (pgt_region_refine()). */
enum pgt_refine_mode {
	PGT_REFINE_OFF = 0,
	/*
	 * One CRC32C per 4 KiB piece (2 KiB per 2 MiB page: 0.1 % of the
	 * region, populated as pages are first refined, plus 128 bytes per
	 * 2 MiB page per view). A changed piece is missed only when its CRC
	 * collides: probability 2^-32 per changed piece.
	 */
	PGT_REFINE_FINGERPRINT = 1,
	/* Byte compare against a shadow copy of the region (100 % more memory,
	 * populated as pages are first refined): exact. */
	PGT_REFINE_COMPARE = 2,
};

/**
 * pgt_region_refine() - Report dirty 4 KiB pieces of a region backed by
 * large pages (2 MiB hugetlb) instead of whole large pages.
 * @r:    a region with dirty tracking and a page size of at least 256 KiB.
 * @mode: enum pgt_refine_mode.
 *
 * From then on pgt_dirty_harvest() on @r's views hashes (or compares) each
 * large page the tracker reports dirty and returns only the 4 KiB pieces
 * whose content changed since that view's previous harvest, in the same
 * outputs at 4 KiB granularity (struct pgt_harvest.page_size says so). A
 * view's first harvest of a page reports it whole. Pieces whose memory
 * changed without a CPU write (released, zeroed, freed, written by a
 * device) are reported when their content differs from what the view saw,
 * as pgt_dirty_harvest() promises; a released piece that already read zero
 * is not. The refinement runs in the harvesting thread; pages that are not
 * resident are not read (they count as zero). pgt_release() frees whole
 * pages under the harvest's lock; memory freed behind pgtrack's back
 * (MADV_REMOVE, punching the fd) while a harvest hashes it may be read back
 * in: do not run such frees concurrently with a harvest.
 *
 * A consumer that copies reported pieces from guest memory after the
 * harvest may copy a value the guest changes and restores before the next
 * harvest (a lock word): so pieces a view reported are reported again while
 * their page keeps being written, and a hot page converges to being sent
 * whole. A consumer that takes the pieces from struct pgt_harvest.data gets
 * bytes the fingerprints describe exactly, and only changed pieces.
 *
 * Returns: 0; -EINVAL (bad mode, no dirty tracking, small pages); -EBUSY
 * while dirty views are open (set it before opening them); -ENOMEM.
 */
PGT_EXPERIMENTAL int pgt_region_refine(pgt_region *r, int mode);

/**
 * pgt_region_refine_mode() - The region's enum pgt_refine_mode, or -EINVAL.
 */
PGT_EXPERIMENTAL int pgt_region_refine_mode(const pgt_region *r);

/**
 * pgt_dirty_view_refine() - Turn refinement off (@on false) for one view of
 * a refining region, so its harvests report whole large pages (a sampler
 * counting pages), or back on: its next harvest of each page then reports
 * the page whole (changes while off were not recorded for it).
 * Returns: 0, or -EINVAL (NULL, a region that does not refine).
 */
PGT_EXPERIMENTAL int pgt_dirty_view_refine(pgt_dirty_view *v, bool on);

/* ------------------------------------------------------------------ */
/* First touch                                                         */
/* ------------------------------------------------------------------ */

/**
 * pgt_touched_count() - Pages populated since tracking began.
 * Returns: the count (>= 0), or -EINVAL when touch tracking is off.
 */
int64_t pgt_touched_count(const pgt_region *r);

/**
 * pgt_touched_test() - Whether the page holding @gpa was touched.
 * Returns: 1, 0, -EINVAL (no touch tracking), -ERANGE (outside the region).
 */
int pgt_touched_test(const pgt_region *r, uint64_t gpa);

/**
 * pgt_touched_bitmap() - Copy the touched bitmap (KVM layout).
 * Returns: the number of touched pages, -EINVAL, or -ENOBUFS if @words is
 * too small.
 */
int64_t pgt_touched_bitmap(const pgt_region *r, unsigned long *bitmap, size_t words);

/**
 * pgt_touch_order() - The first-touch order: page indices in the order the
 * guest first touched them, for restore-time prefetch.
 * @start: index into the sequence to copy from.
 * @pages: receives up to @cap page indices.
 * Returns: the number copied (0 at the end), or -EINVAL.
 */
int64_t pgt_touch_order(const pgt_region *r, uint64_t start, uint64_t *pages, size_t cap);

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_region_stats - Counters of one region (pages at the region's
 * granularity unless said otherwise).
 */
struct pgt_region_stats {
	uint32_t size;
	uint32_t reserved;
	uint64_t npages;
	uint64_t touched;        /* touch tracking: pages populated */
	uint64_t touch_faults;   /* faults resolved by handlers */
	uint64_t touch_errors;   /* faults failed (provider error) */
	uint64_t wp_faults;      /* uffd-sync / mprotect write faults */
	uint64_t harvests;       /* kernel tracking passes run by harvests */
	uint64_t dirty_reported; /* pages those passes reported, total (passes
				  * that accounting snapshots run to see pending
				  * pages are not counted) */
	uint64_t views;          /* open dirty views */
	uint64_t metadata_bytes; /* memory pgtrack uses for this region */
};

/**
 * pgt_region_stats() - Snapshot a region's counters. @st->size must be set.
 * Returns: 0 or -EINVAL.
 */
int pgt_region_stats(const pgt_region *r, struct pgt_region_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_PGTRACK_H */
