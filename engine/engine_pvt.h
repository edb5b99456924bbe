/* SPDX-License-Identifier: MIT */
/* Engine internals shared by the engine sources. Not installed. */
#ifndef PGT_ENGINE_PVT_H
#define PGT_ENGINE_PVT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pgtrack/pgtrack.h"
#include "pgtrack/probe.h"
#include "lib/bitmap.h"
#include "lib/fpstore.h"
#include "hal/compat_uapi.h"
#include "lib/bits.h"
#include "numa/numa_pvt.h"
#include "engine/calibrate_pvt.h"

struct pgt_region;

/*
 * In-flight tracking for fault handlers (uffd handler threads, SIGSEGV
 * handlers on vCPU threads), so a harvest can wait for handlers that began
 * before it: an epoch flip and two counters, async-signal-safe on the
 * handler side. A handler enters, does its work, exits; the harvester's
 * wait returns once every handler that entered before the flip has exited.
 * New handlers are never blocked.
 */
struct pgt_flight {
	_Atomic unsigned epoch;
	_Atomic unsigned count[2];
};

static inline unsigned pgt__flight_enter(struct pgt_flight *f)
{
	for (;;) {
		unsigned e = atomic_load(&f->epoch);

		atomic_fetch_add(&f->count[e & 1], 1);
		/* raced with a flip: count under the new epoch instead */
		if (atomic_load(&f->epoch) == e)
			return e & 1;
		atomic_fetch_sub(&f->count[e & 1], 1);
	}
}

static inline void pgt__flight_exit(struct pgt_flight *f, unsigned idx)
{
	atomic_fetch_sub_explicit(&f->count[idx], 1, memory_order_release);
}

void pgt__flight_wait(struct pgt_flight *f);

/*
 * A dirty tracker. One instance per region (state in r->dpriv). All methods
 * but on_wp_fault, pause and resume run with r->harvest_lock held.
 */
struct pgt_dirty_ops {
	int method;
	/* uffd features the method needs (0: no uffd) and register mode bits */
	uint64_t uffd_features;
	uint64_t uffd_mode;
	/* faults record into r->pending (allocated by dirty.c) */
	bool uses_pending;
	/* Check that the method works for this region; -EOPNOTSUPP if not. */
	int (*supported)(const struct pgt_region *r, const struct pgt_probe *p);
	/* Arm tracking: from now on every write is recorded. */
	int (*start)(struct pgt_region *r);
	/*
	 * Get-and-clear: report every page written since the previous collect
	 * (or start) as runs of region page indices through @fn, and re-arm
	 * those pages so the next write is seen again. Returns pages reported
	 * or -errno. @fn may be NULL: collect and drop.
	 */
	int64_t (*collect)(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg);
	void (*stop)(struct pgt_region *r);
	/*
	 * Optional, soft-dirty only: pause the guest's writers before a collect
	 * and resume them after, both called with no pgtrack lock held
	 * (pgt__collect_begin/end), so writers that call pgtrack can park.
	 */
	int (*pause)(struct pgt_region *r);
	void (*resume)(struct pgt_region *r);
	/* uffd-sync only: a write fault at page index @page from a handler thread. */
	int (*on_wp_fault)(struct pgt_region *r, uint64_t page);
};

extern const struct pgt_dirty_ops pgt__dirty_uffd_async;
extern const struct pgt_dirty_ops pgt__dirty_softdirty;
extern const struct pgt_dirty_ops pgt__dirty_uffd_sync;
extern const struct pgt_dirty_ops pgt__dirty_mprotect;
extern const struct pgt_dirty_ops pgt__dirty_fingerprint;

struct pgt_dirty_view {
	struct pgt_region *r;       /* NULL: detached by pgt_engine_close() */
	bool internal;              /* the engine's own (write-age sampling) */
	struct pgt_dirty_view *next;
	struct pgt_shardmap bm; /* pages written since this view's last harvest,
	                         * one shard per node (numa/shard.c) */
	uint64_t epoch;
	/* refine.c: pieces changed that this view has not reported, and the
	 * pieces its last harvest reported */
	uint64_t *sub;
	uint64_t *unc;
	bool norefine;              /* pgt_dirty_view_refine(v, false) */
};

struct pgt_region {
	struct pgt_engine *eng;
	struct pgt_region *next;    /* engine list, sorted by gpa */
	char *name;

	uint32_t backing;
	uint32_t track;
	uint8_t *addr;
	uint64_t length;
	uint64_t gpa;
	uint64_t page_size;
	unsigned page_shift;
	uint64_t npages;
	int fd;                     /* backing fd or -1 */
	uint64_t fd_offset;
	bool owned;                 /* pgtrack mapped (and will unmap/close) it */
	bool fd_owned;              /* fd opened by pgtrack for a caller's mapping */
	bool thp_off;               /* the caller's mapping was MADV_NOHUGEPAGE */
	bool thp_on;                /* ... MADV_HUGEPAGE (or ours, PGT_BACKING_THP) */
	int numa_node;
	struct pgt_numa_region *numa; /* layout and shards (numa/layout.c) */
	bool shared;                /* MAP_SHARED backing (shmem/hugetlbfs) */
	bool hugetlb;               /* hugetlb memory: hugetlbfs fd or private
	                             * MAP_HUGETLB (from the VMA's flags) */
	bool collapse_warned;       /* release.c: MADV_NOHUGEPAGE refused once */

	/* userfaultfd context of this region (-1 if none) */
	int uffd;
	uint64_t uffd_features;     /* negotiated */
	uint64_t uffd_ioctls;       /* range ioctls after register */
	_Atomic bool dying;
	/* the caller unmapped or moved (part of) the mapping while tracked:
	 * a uffd UNMAP/REMAP event saw it; harvests fail with -ENXIO */
	_Atomic bool unmapped;

	/* dirty tracking */
	const struct pgt_dirty_ops *dops;
	void *dpriv;
	bool dops_started;
	pthread_mutex_t harvest_lock;   /* collect + views */
	struct pgt_dirty_view *views;
	unsigned nviews;
	struct pgt_bitmap pending;      /* fault-driven methods record here */
	struct pgt_bitmap external;     /* pgt__dirty_mark: changes no tracker
	                                 * sees (DMA, releases), set lock-free */
	struct pgt_bitmap *marks;       /* where marks go: &external, or &pending
	                                 * for trackers that collect from it */
	struct pgt_flight flight;       /* their handlers in flight */
	struct pgt_flight evflight;     /* uffd message batches being handled */
	pgt_wp_fn wp_cb;
	void *wp_arg;
	pgt_quiesce_fn quiesce;
	void *quiesce_arg;

	/* first touch (touch.c) */
	struct pgt_bitmap touched;
	_Atomic uint64_t ntouched;
	void *tpriv;                    /* touch-order log etc. */
	pgt_page_provider provider;
	void *provider_arg;

	/* counters */
	_Atomic uint64_t touch_faults;
	_Atomic uint64_t touch_errors;
	_Atomic uint64_t wp_faults;
	_Atomic uint64_t harvests;
	_Atomic uint64_t dirty_reported;

	/* release.c */
	_Atomic(struct pgt_rel *) rel;  /* release/pin/zero/age state, lazily */

	/* offload.c: devices attached here (changed under harvest_lock);
	 * region_dpdk.c: the memzone of a PGT_BACKING_DPDK region */
	_Atomic unsigned offload_refs;
	/* refine.c: sub-page refinement state, NULL when off (harvest_lock) */
	struct pgt_refine *refine;
	const void *bpriv;
};

struct pgt_engine {
	pgt_log_fn log;
	void *log_arg;
	int log_level;
	struct pgt_probe probe;

	pthread_rwlock_t regions_lock;  /* list; write-held to remove a region */
	struct pgt_region *regions;

	/* userfaultfd handler threads: epoll over region uffds */
	int epfd;
	int stopfd;                     /* eventfd that wakes handlers to exit */
	unsigned nthreads;
	pthread_t *threads;
	/* handlers hold it for reading while they work on a region */
	pthread_rwlock_t fault_lock;
	struct pgt_numa *numa;          /* topology and per-node workers */
	/* offload.c: open offload devices */
	pthread_mutex_t offload_lock;
	struct pgt_offload *offload;
	/* calib_engine.c: AUTO's costs, filled once under calib_lock */
	pthread_mutex_t calib_lock;
	uint32_t calib_flags;
	bool calib_done;
	struct pgt__calib_result calib;
};

/* ---- engine.c ---- */
void pgt__log(const struct pgt_engine *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Add/remove a region's uffd to the handler threads' epoll set. Removal
 * returns only when no handler thread is still working on the region. */
int pgt__fault_watch(struct pgt_region *r);
void pgt__fault_unwatch(struct pgt_region *r);

/* ---- region.c ---- */
/* Unlink and free a region, its views and its memory (if owned). */
void pgt__region_free(struct pgt_region *r);
static inline uint64_t pgt__page_of(const struct pgt_region *r, const void *hva)
{
	return (uint64_t)((const uint8_t *)hva - r->addr) >> r->page_shift;
}
/*
 * The pages of @r holding host range [start, end): [*first, *end_page).
 * false when the range misses the region.
 */
static inline bool pgt__host_pages(const struct pgt_region *r, uint64_t start, uint64_t end,
				   uint64_t *first, uint64_t *end_page)
{
	uint64_t base = (uintptr_t)r->addr;

	if (end <= base || start >= base + r->length)
		return false;
	if (start < base)
		start = base;
	if (end > base + r->length)
		end = base + r->length;
	*first = (start - base) >> r->page_shift;
	*end_page = (end - base + r->page_size - 1) >> r->page_shift;
	return true;
}
static inline void *pgt__page_addr(const struct pgt_region *r, uint64_t page)
{
	return r->addr + (page << r->page_shift);
}
/*
 * Shared hugetlbfs memory: mincore and PAGEMAP_SCAN see only this process's
 * mapping, and hugetlbfs has no page-cache query, yet the file may hold
 * pages we do not map (a vhost-user back-end wrote one through its own
 * mapping after we freed it; a mapping zapped by MADV_DONTNEED). Such a page
 * is read from the file (pgt__file_page()), not taken for zeros.
 */
static inline bool pgt__file_unseen(const struct pgt_region *r)
{
	return r->shared && r->hugetlb && r->fd >= 0;
}
/* The bytes of page @p read from the region's file into *@bounce (a page,
 * allocated on first use; the caller frees it): a hole reads as zeros and
 * stays a hole. If that fails, the mapping: read there, whatever it costs
 * (zeros taken for content would be wrong data at the destination). */
const uint8_t *pgt__file_page(const struct pgt_region *r, uint64_t p, uint8_t **bounce);
/* Open r->uffd with @features, register [addr, addr+length) with @mode. */
int pgt__uffd_open(struct pgt_region *r, uint64_t features, uint64_t mode);
/* Write-protect (wp=true) or un-protect a range of pages via UFFDIO_WRITEPROTECT. */
int pgt__uffd_wp(struct pgt_region *r, uint64_t first, uint64_t n, bool wp, bool wake);
/* Open a userfaultfd (syscall, else /dev/userfaultfd); -errno. */
int pgt__uffd_new(void);
/*
 * 0 while the region's mapping is still the one it was tracked in, else
 * -ENXIO: (part of) it was unmapped, moved (mremap) or mapped over
 * (MAP_FIXED) behind pgtrack's back, so writes there are not tracked.
 */
int pgt__region_mapped(struct pgt_region *r);

/* ---- dirty.c ---- */
/* Pick the tracker for @method (AUTO: best that works for this region). */
int pgt__dirty_resolve(struct pgt_region *r, int method);
/* After the uffd is open: allocate tracking state and arm it. */
int pgt__dirty_init(struct pgt_region *r);
void pgt__dirty_fini(struct pgt_region *r);
/*
 * Collect for fault-driven trackers: wait for handlers in flight, take the
 * pending bits, write-protect what was taken with @protect (pages it fails
 * on stay pending) and report it through @fn.
 */
typedef int (*pgt_protect_fn)(struct pgt_region *r, uint64_t first, uint64_t n);
int64_t pgt__pending_collect(struct pgt_region *r, pgt_protect_fn protect,
			     pgt_bitmap_run_fn fn, void *arg);
/* Collect from the tracker into every view (harvest_lock held); @count:
 * add it to the harvests / dirty_reported counters (harvests do, accounting
 * snapshots do not). */
int64_t pgt__dirty_collect(struct pgt_region *r, bool count);
/*
 * Bracket a collect: call before taking rel->lock or harvest_lock, and
 * end after releasing them (pauses writers for trackers that need it).
 * begin returns 0 or the pause's error (then do not call end).
 */
int pgt__collect_begin(struct pgt_region *r);
void pgt__collect_end(struct pgt_region *r);
/*
 * Report region pages [first, first + n) dirty to every open view at the
 * next collect, as if the tracker had seen writes there: for changes no
 * tracker sees (DMA by an offload device, memory freed or zeroed by a
 * release or a madvise). Call it after the memory changed. Lock-free and
 * async-signal-safe (an atomic bitmap set); no-op without dirty tracking;
 * clipped to the region.
 */
void pgt__dirty_mark(struct pgt_region *r, uint64_t first, uint64_t n);

/*
 * Batched pgt__dirty_mark(): the set bits of @words, which are the region's
 * 64-bit bitmap words [w0, w0 + n) (bit i of word k is page 64 k + i), to
 * every open view, word by word under one harvest_lock. For offload devices
 * (offload.c). Returns the set bits of @words.
 */
uint64_t pgt__dirty_mark_words(struct pgt_region *r, const uint64_t *words, size_t w0, size_t n);
/* pgt__dirty_mark_words() that also zeroes words[0, n): a quiescent log. */
uint64_t pgt__dirty_take_words(struct pgt_region *r, uint64_t *words, size_t w0, size_t n);

/* ---- refine.c (harvest_lock held unless said) ---- */
struct pgt_refine;
void pgt__refine_fini(struct pgt_region *r);
size_t pgt__refine_bytes(const struct pgt_region *r);
size_t pgt__refine_view_bytes(const struct pgt_region *r);
int pgt__refine_view_init(struct pgt_region *r, struct pgt_dirty_view *v);
void pgt__refine_view_fini(struct pgt_dirty_view *v);
/* Whether @v's harvests are refined (region refines, caller's view). */
static inline bool pgt__refine_on(const struct pgt_dirty_view *v)
{
	return v->r && v->r->refine && !v->internal && v->sub && !v->norefine;
}
int64_t pgt__refine_harvest(struct pgt_dirty_view *v, struct pgt_harvest *h, bool has_psize,
			    bool has_data);

/* ---- offload.c ---- */
struct pgt_ofl_io;
struct pgt_offload_config;
/* pgt_offload_open() on another I/O seam (a model, hal/offload/model.h). */
int pgt__offload_open_io(pgt_engine *e, const struct pgt_offload_config *cfg,
			 const struct pgt_ofl_io *io, struct pgt_offload **out);
/* What a bitmap backend's harvest does with a bitmap its device reported
 * (VFIO REPORT, IOMMUFD GET_DIRTY_BITMAP): parse it through the map and
 * merge it into the views. For benchmarks. Returns pages or -ENOENT. */
int64_t pgt__offload_merge_bitmap(struct pgt_offload *o, uint64_t iova, uint64_t page_size,
				  const uint64_t *bits, uint64_t nbits);
/* Harvest the dirty-logging devices attached to @r into its views (from
 * pgt_dirty_harvest(), before it takes harvest_lock). */
void pgt__offload_drain(struct pgt_region *r);
/* Engine close: close the devices still open. */
void pgt__offload_close_all(struct pgt_engine *e);

/* ---- age.c: hotness from offload devices ---- */
struct pgt_hot_histogram;
/* Pages with bits set in @bits (words [lo, hi)) were reported hot now, with
 * @hot[page] accesses. Returns the pages, or -EINVAL without age tracking. */
int64_t pgt__age_hot(struct pgt_region *r, const uint64_t *bits, const uint32_t *hot, size_t lo,
		     size_t hi, uint64_t units, uint64_t accesses);
int pgt__age_hot_histogram(struct pgt_region *r, struct pgt_hot_histogram *h);

/* ---- region_dpdk.c (stubs without DPDK) ---- */
struct pgt_offload_range;
struct pgt_dpdk_zone {
	void *addr;
	uint64_t page_size;
	int fd;             /* one fd behind the whole zone (dup), or -1 */
	uint64_t fd_offset;
	const void *mz;
};
/* A memzone of r->length on r->numa_node's socket for a PGT_BACKING_DPDK
 * region, starting an EAL if none is up. */
int pgt__dpdk_zone_alloc(struct pgt_region *r, struct pgt_dpdk_zone *z);
void pgt__dpdk_zone_free(struct pgt_region *r);
/* IOVA ranges of DPDK memory (-ENOENT when @r is not DPDK memory). */
int pgt__dpdk_iova_ranges(const struct pgt_region *r, uint32_t slot0,
			  struct pgt_offload_range *out, size_t cap);
/* A second mapping of [off, off + len) of a DPDK region (for a simulated
 * device's DMA). */
int pgt__dpdk_alias(const struct pgt_region *r, uint64_t off, uint64_t len, void **map,
		    size_t *maplen, uint8_t **dma);
/* DMA-able memory from DPDK when an EAL is up, else NULL. */
void *pgt__dpdk_dma_alloc(size_t bytes, uint64_t *iova, const void **mz);
void pgt__dpdk_dma_free(const void *mz);

/* ---- touch.c ---- */
/* Features/mode the touch tracker needs for this region's backing. */
uint64_t pgt__touch_features(const struct pgt_region *r);
uint64_t pgt__touch_mode(const struct pgt_region *r);
/* Allocate touch state (after uffd registration). */
int pgt__touch_init(struct pgt_region *r);
void pgt__touch_fini(struct pgt_region *r);
/* Touch tracking is on and its state is allocated. */
static inline bool pgt__touch_on(const struct pgt_region *r)
{
	return (r->track & PGT_TRACK_TOUCH) && r->tpriv && r->touched.words;
}
/* Memory the touch state holds (order log, bounce buffers). */
size_t pgt__touch_bytes(const struct pgt_region *r);
/* A MISSING or MINOR fault at @addr from a handler thread. */
int pgt__touch_fault(struct pgt_region *r, const struct uffd_msg *msg);

/* ---- release.c ---- */
void pgt__release_fini(struct pgt_region *r);
/* A UFFD_EVENT_REMOVE for [start, end) host addresses (handler thread). */
void pgt__release_on_remove(struct pgt_region *r, uint64_t start, uint64_t end);

/* ---- vma.c: this process's mappings, from /proc/self/smaps ---- */
struct pgt_vma {
	uint64_t start, end;
	uint64_t kernel_page_size;  /* 0 when smaps does not say */
	uint64_t offset;            /* file offset of start (bytes) */
	bool locked;                /* VmFlags "lo" */
	bool hugetlb;               /* VmFlags "ht" */
	bool shared;                /* VmFlags "sh": MAP_SHARED */
	bool thp_off;               /* VmFlags "nh": MADV_NOHUGEPAGE */
	bool thp_on;                /* VmFlags "hg": MADV_HUGEPAGE */
};
/* Called per VMA; a non-zero return stops the walk and is returned. */
typedef int (*pgt_vma_fn)(void *arg, const struct pgt_vma *v);
/* Walk smaps text (bounded by @len). Returns VMAs seen or @fn's return. */
int pgt__smaps_walk(const char *buf, size_t len, pgt_vma_fn fn, void *arg);
/* /proc/self/smaps into a malloc'd buffer (the caller frees it). 0/-errno. */
int pgt__read_smaps(char **buf, size_t *len);
/* The VMA holding @addr. 0, -ENOENT, or the read's error. */
int pgt__vma_of(const void *addr, struct pgt_vma *out);
/*
 * The present (with @swapped also swapped-out) memory of [start, end) of
 * this process, as address ranges through @fn: PAGEMAP_SCAN runs when
 * @scan and the kernel has it, else one base page at a time from
 * /proc/self/pagemap with its entry (@pm NULL for scan runs). A non-zero
 * return of @fn stops the walk and is returned; else 0 or -errno.
 */
typedef int (*pgt_present_fn)(void *arg, uint64_t start, uint64_t end, const uint64_t *pm);
int pgt__present_walk(uint64_t start, uint64_t end, bool swapped, bool scan,
		      pgt_present_fn fn, void *arg);

/* ---- track_softdirty.c (parsing, testable on injected data) ---- */
/* Report runs of pagemap entries with the soft-dirty bit: entries[i] is page
 * first+i. Returns pages reported. */
/* @per_page_shift: log2 of pagemap entries per tracked page (0 for 4 KiB
 * pages, 9 for 2 MiB); a page is dirty when any of its entries is. @n must be
 * a multiple of 1 << per_page_shift. */
int64_t pgt__softdirty_parse(const uint64_t *entries, size_t n, unsigned per_page_shift,
			     uint64_t first_page, pgt_bitmap_run_fn fn, void *arg);

#endif /* PGT_ENGINE_PVT_H */
