/* SPDX-License-Identifier: MIT */
/*
 * Release, pinned, zero and age state of a region (r->rel), shared by
 * release.c, pinned.c, target.c and account.c. Not installed.
 *
 * Everything below is guarded by rel->lock except the REMOVE-event hint
 * bitmap, which the fault handler threads set lock-free. Lock order:
 * regions_lock (read) → rel->lock (regions in list order) → harvest_lock.
 */
#ifndef PGT_RELEASE_PVT_H
#define PGT_RELEASE_PVT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine_pvt.h"
#include "pgtrack/account.h"
#include "pgtrack/release.h"
#include "pgtrack/target.h"

#define PGT_UNIT_SHIFT 12

/* A partly released large page: which of its units are released. */
struct pgt_sub {
	uint32_t count;
	uint64_t bits[]; /* upp bits */
};

/* One pin: units [first, first + n) of the region. */
struct pgt_pin {
	uint64_t first;
	uint64_t n;
	uint32_t refs;
	bool discovered;
};

struct pgt_age;

struct pgt_rel {
	pthread_mutex_t lock;
	unsigned sub_shift;            /* log2(units per page) */
	uint64_t upp;                  /* units per page */
	uint64_t nunits;

	struct pgt_bitmap released;    /* whole pages released */
	uint64_t released_pages;       /* its popcount */
	struct pgt_numa_region *numa;  /* per-node released counts */
	struct pgt_bitmap removed;     /* REMOVE-event hints, set lock-free */
	_Atomic bool removed_any;
	struct pgt_sub **sub;          /* per page, lazily; only when upp > 1 */
	uint64_t npartial;
	uint64_t partial_units;

	/* counters (units unless said) */
	uint64_t stat_released;
	uint64_t stat_reclaimed;
	uint64_t stat_reused;
	uint64_t stat_external_pages;
	uint64_t stat_deflated_pages;
	uint64_t stat_freed_bytes;

	/* pinned.c */
	struct pgt_pin *pins;          /* sorted by first */
	size_t npins, pins_cap;
	struct pgt_bitmap pinned;      /* pages holding any pinned unit */
	uint64_t pinned_units;         /* size of the union of pins */

	/* account.c: zero scan */
	struct pgt_bitmap zero;        /* pages found all-zero; lazily */
	/* release.c: 2 MiB ranges (from the region's start rounded down to
	 * 2 MiB) a partial release made MADV_NOHUGEPAGE; lazily */
	struct pgt_bitmap no_thp;
	/* account.c: age */
	struct pgt_age *age;
};

/* The region's state, created on first use (NULL only on -ENOMEM). */
struct pgt_rel *pgt__rel_get(struct pgt_region *r);
static inline struct pgt_rel *pgt__rel_peek(const struct pgt_region *r)
{
	return atomic_load_explicit(&((struct pgt_region *)r)->rel, memory_order_acquire);
}

/* Units released in @r (whole pages and pieces), under rel->lock. */
static inline uint64_t pgt__rel_units(const struct pgt_rel *rel)
{
	return (rel->released_pages << rel->sub_shift) + rel->partial_units;
}

/* Take pages the guest touched again (touched ∧ released) out of the
 * released set. rel->lock held. */
void pgt__rel_sync_touch(struct pgt_region *r, struct pgt_rel *rel);

/*
 * Release units [u0, u0 + n) of @r: rel->lock held, range already checked.
 * Accumulates into @res (size not checked). Returns units released or the
 * freeing syscall's error.
 */
int64_t pgt__rel_apply(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
		       uint32_t flags, struct pgt_release_result *res, int32_t *status);
/*
 * Pages [p, p + n) were freed by someone else (rescan.c): out of the
 * touched set, reported to the dirty views and re-armed, accounted
 * released. rel->lock held.
 */
void pgt__rel_gone(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint64_t n);
/* Un-release units [u0, u0 + n); rel->lock held. Returns units un-released. */
uint64_t pgt__rel_reclaim(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n);
/* Whether unit @u is released (deflate by touch taken into account). */
bool pgt__rel_unit_released(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t u);

/*
 * Residency of pages [first, first + n) into @out (bit i: page first + i),
 * which the caller zeroed, sized ceil(n / 64) words. @swapped also counts
 * swapped-out pages. Shared memory asks mincore (page cache), private
 * memory PAGEMAP_SCAN or /proc/self/pagemap. Returns pages set or -errno.
 */
int64_t pgt__resident(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
		      uint64_t *out);

/* Bitmap helpers on lib/bitmap.h bitmaps. */
uint64_t pgt__bitmap_count_range(const struct pgt_bitmap *b, uint64_t first, uint64_t n);
/* Atomically clear [first, first + n); returns how many bits were set. */
uint64_t pgt__bitmap_take_range(struct pgt_bitmap *b, uint64_t first, uint64_t n);

/* pinned.c: units of [u0, u0 + n) covered by a pin (rel->lock held). */
uint64_t pgt__pin_count(const struct pgt_rel *rel, uint64_t u0, uint64_t n);
bool pgt__pin_test(const struct pgt_rel *rel, uint64_t u);
void pgt__pin_fini(struct pgt_rel *rel);

/* vma.c: for each VMA of smaps text whose VmFlags hold "lo", report
 * [start, end). Bounded by @len. Returns locked VMAs found. */
int pgt__parse_smaps_locked(const char *buf, size_t len,
			    void (*fn)(void *arg, uint64_t start, uint64_t end), void *arg);

/* account.c: the value of line "<key>[: ]number[ kB]" of NUL-terminated
 * @buf, in bytes when the unit is kB. 0, -ENOENT or -EBADMSG. */
int pgt__kv_get(const char *buf, const char *key, uint64_t *val);

/* age.c */
void pgt__age_fini(struct pgt_region *r, struct pgt_rel *rel);
size_t pgt__age_bytes(const struct pgt_rel *rel);

/*
 * Self-check of a region's release state (counters equal their bitmaps, no
 * pinned unit released, partial pages consistent). Takes rel->lock.
 * Returns true when valid, else false with *reason set (static string).
 */
bool pgt__rel_validate(struct pgt_region *r, const char **reason);

/* Bytes of release state held. rel->lock held. */
size_t pgt__rel_bytes(const struct pgt_rel *rel);


/*
 * Resolve a guest-physical range to a region and its units. regions_lock
 * held for reading. Returns 0, -EINVAL (unaligned/empty) or -ERANGE.
 */
int pgt__rel_resolve(struct pgt_engine *e, uint64_t gpa, uint64_t len, struct pgt_region **rp,
		     uint64_t *u0, uint64_t *n);

/*
 * @fn on the release state of the region holding [gpa, gpa + len) (units
 * [u0, u0 + n) of it), with regions_lock (read) and rel->lock held.
 * @create: make the state if the region has none (-ENOMEM if it cannot);
 * else a region without state answers 0 without @fn. Returns @fn's value,
 * or the range's error (-EINVAL, -ERANGE).
 */
typedef int64_t (*pgt_rel_fn)(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0,
			      uint64_t n, void *arg);
int64_t pgt__rel_with(struct pgt_engine *e, uint64_t gpa, uint64_t len, bool create,
		      pgt_rel_fn fn, void *arg);

/* Node a region's memory is accounted to: its binding, 0 on a one-node
 * host, else -1. */
int pgt__region_node(const struct pgt_region *r);

/*
 * Hooks for files owned elsewhere:
 *  - region.c region_release(), first thing: pgt__release_fini(r);
 *  - engine.c handle_msg(), for UFFD_EVENT_REMOVE:
 *    pgt__release_on_remove(r, msg->arg.remove.start, msg->arg.remove.end).
 */
void pgt__release_fini(struct pgt_region *r);
void pgt__release_on_remove(struct pgt_region *r, uint64_t start, uint64_t end);

#endif /* PGT_RELEASE_PVT_H */
