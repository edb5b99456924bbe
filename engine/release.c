/* SPDX-License-Identifier: MIT */
/*
 * Release: the guest gave memory back (balloon inflate, free page reporting,
 * discard) and the host takes it.
 *
 * The guest speaks in 4 KiB units; the backing may use larger pages. A unit
 * that covers a whole backing page is freed at once. Units inside a larger
 * page (2 MiB hugetlb) are collected in a per-page bitmap, allocated when
 * the page is first partly released and dropped when it completes: only
 * partly released pages cost memory (72 bytes each, plus a pointer per page
 * of the region once any page is partial). When the last unit of a page
 * arrives the page is freed, so the host sees a whole hugepage come back.
 *
 * Why released pieces are zeroed and checked: with free page reporting the
 * guest may reuse a reported piece without telling anyone. A freed 4 KiB
 * page would simply fault back in, but a piece of a hugepage does not fault:
 * freeing the hugepage later would destroy what the guest wrote there. Each
 * released piece is therefore punched (which zeroes it in the page cache,
 * without touching our page tables, so dirty tracking does not see a write),
 * and before a completed page is freed it must still read as zero; pieces
 * that do not were reused and leave the released set. Freeing a page that
 * reads as zero is invisible to the guest: it faults back in zero-filled.
 * Callers with balloon semantics (no reuse before deflate) skip the check
 * with PGT_RELEASE_TRUSTED.
 *
 * Freeing a page also clears its touched bit (a later touch is a new first
 * touch: deflate), reports it to every dirty view (its contents changed: it
 * reads as zero now, and a consumer's copy would be stale), and re-arms the
 * dirty tracker on it: after MADV_DONTNEED an anonymous pte is simply gone, so a
 * synchronous uffd-WP or mprotect tracker must protect the hole again or the
 * next write would go unseen. Order inside one call: clear touched, free,
 * report and re-arm, set released — a fault racing with the free either
 * sets touched after we cleared it (and the page reads as deflated) or
 * happened before the free (a guest bug: it wrote to memory it gave away).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/release_pvt.h"

#include "hal/export.h"
#include "hal/hal.h"


/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

static void rel_free(struct pgt_rel *rel)
{
	if (!rel)
		return;
	if (rel->sub) {
		for (uint64_t p = 0; p < rel->released.nbits; p++)
			free(rel->sub[p]);
		free(rel->sub);
	}
	pgt__pin_fini(rel);
	pgt__bitmap_fini(&rel->released);
	pgt__bitmap_fini(&rel->removed);
	pgt__bitmap_fini(&rel->pinned);
	pgt__bitmap_fini(&rel->zero);
	pgt__bitmap_fini(&rel->no_thp);
	pthread_mutex_destroy(&rel->lock);
	free(rel);
}

struct pgt_rel *pgt__rel_get(struct pgt_region *r)
{
	struct pgt_rel *rel = pgt__rel_peek(r), *expect = NULL;

	if (rel)
		return rel;
	rel = calloc(1, sizeof(*rel));
	if (!rel)
		return NULL;
	pthread_mutex_init(&rel->lock, NULL);
	rel->sub_shift = r->page_shift > PGT_UNIT_SHIFT ? r->page_shift - PGT_UNIT_SHIFT : 0;
	rel->upp = 1ULL << rel->sub_shift;
	rel->nunits = r->length >> PGT_UNIT_SHIFT;
	rel->numa = r->numa;
	/* REMOVE-event hints exist only where the region asked for events */
	if (pgt__bitmap_init(&rel->released, r->npages) ||
	    ((r->track & PGT_TRACK_REMOVE) && pgt__bitmap_init(&rel->removed, r->npages)) ||
	    pgt__bitmap_init(&rel->pinned, r->npages)) {
		rel_free(rel);
		return NULL;
	}
	/* Two threads may race to create it (a REMOVE event and an API call). */
	if (!atomic_compare_exchange_strong(&r->rel, &expect, rel)) {
		rel_free(rel);
		return expect;
	}
	return rel;
}

void pgt__release_fini(struct pgt_region *r)
{
	struct pgt_rel *rel = atomic_exchange(&r->rel, NULL);

	if (!rel)
		return;
	pgt__age_fini(r, rel);
	rel_free(rel);
}

size_t pgt__rel_bytes(const struct pgt_rel *rel)
{
	size_t n = sizeof(*rel) + pgt__bitmap_bytes(&rel->released) +
		   pgt__bitmap_bytes(&rel->removed) + pgt__bitmap_bytes(&rel->pinned) +
		   pgt__bitmap_bytes(&rel->zero) + rel->pins_cap * sizeof(struct pgt_pin);

	if (rel->sub)
		n += rel->released.nbits * sizeof(rel->sub[0]) +
		     rel->npartial * (sizeof(struct pgt_sub) + rel->upp / 8);
	return n + pgt__age_bytes(rel);
}

int pgt__region_node(const struct pgt_region *r)
{
	if (r->numa_node >= 0)
		return r->numa_node;
	return r->eng->probe.numa_nodes <= 1 ? 0 : -1;
}

/* Released and not touched since (a touch after the free is a deflate). */
static bool page_released(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t p)
{
	if (!pgt__bitmap_test(&rel->released, p))
		return false;
	return !(pgt__touch_on(r) && pgt__bitmap_test(&r->touched, p));
}

bool pgt__rel_unit_released(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t u)
{
	uint64_t p = u >> rel->sub_shift;
	const struct pgt_sub *s;

	if (page_released(r, rel, p))
		return true;
	s = rel->sub ? rel->sub[p] : NULL;
	return s && (s->bits[(u & (rel->upp - 1)) / 64] >> (u % 64) & 1);
}

static void thp_back(struct pgt_region *r, struct pgt_rel *rel, uint64_t p);

static void unrelease_page(struct pgt_rel *rel, uint64_t p)
{
	pgt__bitmap_clear(&rel->released, p);
	rel->released_pages--;
	pgt__numa_note_released(rel->numa, p, 1, false);
}

void pgt__rel_sync_touch(struct pgt_region *r, struct pgt_rel *rel)
{
	const struct pgt_bitmap *t = &r->touched;

	if (!pgt__touch_on(r) || !rel->released_pages)
		return;
	for (size_t w = 0; w < rel->released.nwords; w++) {
		uint64_t both = atomic_load_explicit(&rel->released.words[w], memory_order_relaxed) &
				atomic_load_explicit(&t->words[w], memory_order_relaxed);

		while (both) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(both);

			both &= both - 1;
			unrelease_page(rel, p);
			rel->stat_deflated_pages++;
			thp_back(r, rel, p);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Kernel side                                                         */
/* ------------------------------------------------------------------ */

/*
 * May khugepaged collapse this region's 4 KiB pages into huge pages?
 * Private memory: a MADV_HUGEPAGE mapping (ours, PGT_BACKING_THP, or a
 * caller's: QEMU advises its RAM), or any when THP is "always". Shared
 * memory (memfd, shmem) has its own switch, shmem_enabled: "advise" takes
 * a MADV_HUGEPAGE mapping.
 * Never a mapping that is MADV_NOHUGEPAGE (ours, PGT_BACKING_ANON, or a
 * caller's when registered): nothing to stop, and nothing to undo after.
 * Per-size mTHP switches (hugepages-2048kB/shmem_enabled) are not read.
 */
static bool may_collapse(const struct pgt_region *r)
{
	const char *thp = r->eng->probe.thp_enabled, *sh = r->eng->probe.shmem_thp_enabled;

	if (r->hugetlb || r->thp_off || r->page_size >= PGT_SZ_2M)
		return false;
	if (r->shared)
		return !strcmp(sh, "always") || !strcmp(sh, "within_size") ||
		       !strcmp(sh, "force") || (!strcmp(sh, "advise") && r->thp_on);
	if (!*thp || !strcmp(thp, "never"))
		return false;
	return r->thp_on || !strcmp(thp, "always");
}

/*
 * Keep khugepaged off the 2 MiB ranges that [@a, @e) frees only in part.
 * It collapses a range with up to max_ptes_none (default 511) empty ptes:
 * it would allocate a huge page there again and fill the units released
 * here with zeros, taking back memory the guest gave (with khugepaged
 * scanning eagerly, all 4,097 units test_rss_thp releases came back).
 * MADV_NOHUGEPAGE stops that (and a later fault there takes 4 KiB, not
 * 2 MiB); a range freed whole has nothing to collapse. It costs a VMA split
 * per range (neighbours with the same flags merge); if the kernel refuses
 * (vm.max_map_count), the release stands and a warning says why memory may
 * come back. rel->no_thp remembers the range: when its last released unit
 * comes back (reclaim, or deflate by touch), thp_back() advises it
 * MADV_HUGEPAGE again, so a guest that inflates and deflates its balloon
 * does not end up on 4 KiB pages for good, and the VMA merges back.
 */
static uintptr_t thp_base(const struct pgt_region *r)
{
	return (uintptr_t)r->addr & ~(uintptr_t)(PGT_SZ_2M - 1);
}

/* The 2 MiB range holding address @a, as rel->no_thp's index, and its part
 * inside the region, [*s, *t). */
static uint64_t thp_range(const struct pgt_region *r, uintptr_t a, uintptr_t *s, uintptr_t *t)
{
	uintptr_t base = (uintptr_t)r->addr, end = base + r->length;
	uint64_t i = (a - thp_base(r)) / PGT_SZ_2M;

	*s = thp_base(r) + i * PGT_SZ_2M;
	*t = *s + PGT_SZ_2M < end ? *s + PGT_SZ_2M : end;
	*s = *s > base ? *s : base;
	return i;
}

static void no_collapse(struct pgt_region *r, struct pgt_rel *rel, uintptr_t a)
{
	uintptr_t s, t;
	uint64_t i = thp_range(r, a, &s, &t);

	if (madvise((void *)s, t - s, MADV_NOHUGEPAGE)) {
		if (!r->collapse_warned)
			pgt__log(r->eng, PGT_LOG_WARN, "region %s: MADV_NOHUGEPAGE: %s: "
				 "khugepaged may refill released memory", r->name, strerror(errno));
		r->collapse_warned = true;
		return;
	}
	if (!rel->no_thp.words &&
	    pgt__bitmap_init(&rel->no_thp, (pgt__round_up((uintptr_t)r->addr + r->length,
							  PGT_SZ_2M) - thp_base(r)) / PGT_SZ_2M))
		return;  /* no memory to remember it: the range stays 4 KiB */
	pgt__bitmap_set(&rel->no_thp, i);
}

static void keep_collapse_off(struct pgt_region *r, struct pgt_rel *rel, uintptr_t a, uintptr_t e)
{
	uintptr_t lo = a & ~(uintptr_t)(PGT_SZ_2M - 1), hi = pgt__round_up(e, PGT_SZ_2M);

	if (a != lo)
		no_collapse(r, rel, lo);
	if (e != hi && (hi - PGT_SZ_2M != lo || a == lo))  /* not the same range again */
		no_collapse(r, rel, hi - PGT_SZ_2M);
}

/* Page @p is no longer released: if that was the last of a range
 * no_collapse() took huge pages from, give them back. rel->lock held. */
static void thp_back(struct pgt_region *r, struct pgt_rel *rel, uint64_t p)
{
	uintptr_t base = (uintptr_t)r->addr, s, t;
	uint64_t i = thp_range(r, (uintptr_t)pgt__page_addr(r, p), &s, &t);

	if (!rel->no_thp.words || !pgt__bitmap_test(&rel->no_thp, i))
		return;
	if (pgt__bitmap_count_range(&rel->released, (s - base) >> r->page_shift,
				    (t - s) >> r->page_shift))
		return;
	if (madvise((void *)s, t - s, MADV_HUGEPAGE))
		return;  /* stays 4 KiB; tried again when another unit comes back */
	pgt__bitmap_clear(&rel->no_thp, i);
}

/* Free pages [p, p + n) on the host. */
static int free_pages(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint64_t n)
{
	void *a = pgt__page_addr(r, p);
	uint64_t len = n << r->page_shift;
	bool thp = may_collapse(r);
	int err = 0;

	/* first: khugepaged must not collapse between the two calls */
	if (thp)
		keep_collapse_off(r, rel, (uintptr_t)a, (uintptr_t)a + len);
	if (r->shared && r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(r->fd_offset + (p << r->page_shift)), (off_t)len))
			err = -errno;
	} else if (madvise(a, len, r->shared ? MADV_REMOVE : MADV_DONTNEED)) {
		/* MADV_DONTNEED on shared memory only unmaps: the file keeps it */
		err = -errno;
	}
	if (err) {
		if (thp) {  /* nothing freed: nothing to keep khugepaged off */
			thp_back(r, rel, p);
			thp_back(r, rel, p + n - 1);
		}
		return err;
	}
	return 0;
}

/* Zero units [u, u + k) inside a page that stays (see the top comment). */
static int zero_units(struct pgt_region *r, uint64_t u, uint64_t k)
{
	uint64_t off = u << PGT_UNIT_SHIFT, len = k << PGT_UNIT_SHIFT;

	if (r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(r->fd_offset + off), (off_t)len))
			return -errno;
		return 0;
	}
	memset(r->addr + off, 0, len);
	return 0;
}

static bool page_present(struct pgt_region *r, uint64_t p)
{
	uint64_t bit = 0;

	/* On error assume present: the zero check then reads the memory. */
	if (pgt__resident(r, p, 1, true, &bit) < 0)
		return true;
	return bit & 1;
}

/*
 * Pages [p, p + n) were freed: their contents are now zero. Every view must
 * learn it (a consumer that copied the page before holds stale data: the
 * "stale page at a migration destination" of issue 11), so they are reported
 * dirty at the next harvest; and the next write must be seen, so tracking is
 * re-armed. harvest_lock keeps harvests out while the tracker state changes.
 */
static void freed_pages_dirty(struct pgt_region *r, uint64_t p, uint64_t n)
{
	int method;

	if (!r->dops || !r->dops_started)
		return;
	method = r->dops->method;
	if (r->dops->uses_pending) {
		/*
		 * A handler that set pending and is about to make the page
		 * writable must finish before we protect it again, as in a
		 * harvest (track_uffd.c): clear, wait for handlers, protect.
		 */
		pgt__bitmap_take_range(&r->pending, p, n);
		pgt__flight_wait(&r->flight);
	}
	if (method == PGT_DIRTY_UFFD_SYNC || method == PGT_DIRTY_UFFD_ASYNC) {
		/*
		 * Without WP_UNPOPULATED (before 6.4) protecting an empty
		 * anonymous pte does nothing, and the next write to the hole
		 * was never reported (test_dirty_after_release, 6.1). Map the
		 * shared zero page there first (no memory: resident_pagemap()
		 * does not count it for released pages): a present pte can
		 * be protected and its write faults. Not with touch tracking,
		 * whose MISSING fault sees the next access itself.
		 */
		if (!r->shared && !pgt__touch_on(r) &&
		    !(r->eng->probe.uffd_features & UFFD_FEATURE_WP_UNPOPULATED) &&
		    madvise(pgt__page_addr(r, p), n << r->page_shift, MADV_POPULATE_READ))
			pgt__log(r->eng, PGT_LOG_WARN,
				 "region %s: mapping the zero page into released pages: %s",
				 r->name, strerror(errno));
		/*
		 * Zapping an anonymous pte drops its uffd-wp state with it.
		 * Measured on 6.18 without this step: under WP-async the hole
		 * reads as written at the next PAGEMAP_SCAN (a released page
		 * reported dirty), and under sync WP the next write to it is
		 * never reported at all. Protecting the hole again (a marker,
		 * WP_UNPOPULATED) fixes both; test_release checks it.
		 */
		int ret = pgt__uffd_wp(r, p, n, true, false);

		if (ret)
			pgt__log(r->eng, PGT_LOG_WARN,
				 "region %s: re-protecting released pages: %s", r->name,
				 strerror(-ret));
	} else if (method == PGT_DIRTY_MPROTECT) {
		if (mprotect(pgt__page_addr(r, p), n << r->page_shift, PROT_READ))
			pgt__log(r->eng, PGT_LOG_WARN,
				 "region %s: re-protecting released pages: %s", r->name,
				 strerror(errno));
	}
	/* after the pending bits were cleared above: marks may live there */
	pgt__dirty_mark(r, p, n);
}

static struct pgt_sub *sub_get(struct pgt_rel *rel, uint64_t p)
{
	struct pgt_sub *s;

	if (!rel->sub) {
		rel->sub = calloc(rel->released.nbits, sizeof(*rel->sub));
		if (!rel->sub)
			return NULL;
	}
	s = rel->sub[p];
	if (!s) {
		s = calloc(1, sizeof(*s) + rel->upp / 8);
		if (!s)
			return NULL;
		rel->sub[p] = s;
		rel->npartial++;
	}
	return s;
}

static void sub_drop(struct pgt_rel *rel, uint64_t p)
{
	struct pgt_sub *s = rel->sub[p];

	rel->partial_units -= s->count;
	rel->npartial--;
	free(s);
	rel->sub[p] = NULL;
}

static inline bool sub_test(const struct pgt_sub *s, uint64_t i)
{
	return s->bits[i / 64] >> (i % 64) & 1;
}

/* Take [p, p + n) out of the touched set; returns how many were touched. */
static uint64_t untouch(struct pgt_region *r, uint64_t p, uint64_t n)
{
	uint64_t k = 0;

	if (pgt__touch_on(r)) {
		k = pgt__bitmap_take_range(&r->touched, p, n);
		atomic_fetch_sub(&r->ntouched, k);
	}
	return k;
}

/* [p, p + n) are gone from the host: in the released set, once each (a
 * REPEAT_OK release frees released pages again). rel->lock held. */
static void account_freed(struct pgt_rel *rel, uint64_t p, uint64_t n)
{
	if (rel->zero.words)
		pgt__bitmap_take_range(&rel->zero, p, n);
	for (uint64_t i = p; i < p + n; i++) {
		if (rel->sub && rel->sub[i])
			sub_drop(rel, i);
		if (!pgt__bitmap_test(&rel->released, i)) {
			pgt__bitmap_set(&rel->released, i);
			rel->released_pages++;
			pgt__numa_note_released(rel->numa, i, 1, true);
		}
	}
}

void pgt__rel_gone(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint64_t n)
{
	untouch(r, p, n);
	if (r->dops || r->views) {
		pthread_mutex_lock(&r->harvest_lock);
		freed_pages_dirty(r, p, n);
		pthread_mutex_unlock(&r->harvest_lock);
	}
	account_freed(rel, p, n);
}

/* Free a run of whole pages and mark them released. */
static int release_run(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint64_t n)
{
	uint64_t untouched = untouch(r, p, n);
	bool lock = r->dops || r->views;
	int ret;

	if (lock)
		pthread_mutex_lock(&r->harvest_lock);
	ret = free_pages(r, rel, p, n);
	if (!ret)
		freed_pages_dirty(r, p, n);
	if (lock)
		pthread_mutex_unlock(&r->harvest_lock);
	if (ret) {
		/* Nothing was freed: the pages are still populated. */
		if (untouched) {
			pgt__bitmap_set_range(&r->touched, p, n);
			atomic_fetch_add(&r->ntouched, untouched);
		}
		pgt__log(r->eng, PGT_LOG_ERR, "region %s: freeing %llu page(s) at %llu: %s",
			 r->name, (unsigned long long)n, (unsigned long long)p, strerror(-ret));
		return ret;
	}
	account_freed(rel, p, n);
	rel->stat_freed_bytes += n << r->page_shift;
	return 0;
}

/* Coalesces whole pages into one syscall per run. */
struct run {
	uint64_t first, n;
};

static int run_flush(struct pgt_region *r, struct pgt_rel *rel, struct run *run,
		     struct pgt_release_result *res)
{
	int ret = 0;

	if (run->n) {
		ret = release_run(r, rel, run->first, run->n);
		if (!ret)
			res->freed_bytes += run->n << r->page_shift;
		run->n = 0;
	}
	return ret;
}

static int run_add(struct pgt_region *r, struct pgt_rel *rel, struct run *run, uint64_t p,
		   struct pgt_release_result *res)
{
	if (run->n && run->first + run->n == p) {
		run->n++;
		return 0;
	}
	int ret = run_flush(r, rel, run, res);

	run->first = p;
	run->n = 1;
	return ret;
}

/*
 * All units of page @p are released: check and free it. Returns 0 (freed or
 * kept because pieces were reused) or the freeing error.
 */
static int complete_page(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint32_t flags,
			 struct run *run, struct pgt_release_result *res)
{
	struct pgt_sub *s = rel->sub[p];

	if (!(flags & PGT_RELEASE_TRUSTED) && page_present(r, p)) {
		const uint8_t *base = pgt__page_addr(r, p);
		uint64_t reused = 0;

		if (!pgt_hal_is_zero(base, r->page_size)) {
			for (uint64_t i = 0; i < rel->upp; i++) {
				if (pgt_hal_is_zero(base + (i << PGT_UNIT_SHIFT), PGT_RELEASE_UNIT))
					continue;
				s->bits[i / 64] &= ~(1ULL << (i % 64));
				s->count--;
				rel->partial_units--;
				reused++;
			}
			rel->stat_reused += reused;
			res->reused += reused;
			pgt__log(r->eng, PGT_LOG_DEBUG,
				 "region %s: page %llu: %llu released piece(s) written again, "
				 "page kept", r->name, (unsigned long long)p,
				 (unsigned long long)reused);
			return 0;
		}
	}
	sub_drop(rel, p);
	return run_add(r, rel, run, p, res);
}

/* One call's progress through pgt__rel_apply. */
struct apply {
	struct pgt_region *r;
	struct pgt_rel *rel;
	uint32_t flags;
	struct pgt_release_result *res;
	int32_t *status;
	struct run run;
	uint64_t done;
};

/* Pinned units among [a, b) of page @p: counted, the first one noted. */
static uint64_t apply_pins(struct apply *x, uint64_t pstart, uint64_t a, uint64_t b)
{
	struct pgt_rel *rel = x->rel;
	uint64_t pinned = pgt__pin_count(rel, pstart + a, b - a);

	if (!pinned)
		return 0;
	if (!x->res->pinned) {
		for (uint64_t i = pstart + a; i < pstart + b; i++)
			if (pgt__pin_test(rel, i)) {
				x->res->first_pinned = x->r->gpa + (i << PGT_UNIT_SHIFT);
				break;
			}
	}
	x->res->pinned += pinned;
	if (x->status)
		*x->status = -EBUSY;
	return pinned;
}

/* Units [a, b) of large page @p, as pieces: zeroed, recorded, and the page
 * freed once all its pieces are in. */
static int apply_pieces(struct apply *x, uint64_t p, uint64_t a, uint64_t b, bool has_pin)
{
	struct pgt_region *r = x->r;
	struct pgt_rel *rel = x->rel;
	uint64_t pstart = p << rel->sub_shift;
	struct pgt_sub *s = sub_get(rel, p);
	int ret = 0;

	if (!s)
		return -ENOMEM;
	for (uint64_t i = a; i < b;) {
		uint64_t j = i;

		/* a maximal run of new, unpinned pieces */
		while (j < b && !sub_test(s, j) && !(has_pin && pgt__pin_test(rel, pstart + j)))
			j++;
		if (j == i) {
			if (sub_test(s, i))
				x->res->already++;
			i++;
			continue;
		}
		ret = zero_units(r, pstart + i, j - i);
		if (ret)
			return ret;
		/* the page stays, with zeroed pieces: consumers must see it */
		pgt__dirty_mark(r, p, 1);
		for (uint64_t k = i; k < j; k++)
			s->bits[k / 64] |= 1ULL << (k % 64);
		s->count += (uint32_t)(j - i);
		rel->partial_units += j - i;
		x->done += j - i;
		i = j;
	}
	if (s->count == rel->upp)
		return complete_page(r, rel, p, x->flags, &x->run, x->res);
	if (!s->count)
		sub_drop(rel, p);
	return 0;
}

/* Units [a, b) of page @p (b - a <= units per page). */
static int apply_page(struct apply *x, uint64_t p, uint64_t a, uint64_t b)
{
	struct pgt_region *r = x->r;
	struct pgt_rel *rel = x->rel;
	uint64_t upp = rel->upp, cover = b - a, pinned = 0;
	bool has_pin = pgt__bitmap_test(&rel->pinned, p);

	if (pgt__bitmap_test(&rel->released, p) && pgt__touch_on(r) &&
	    pgt__bitmap_test(&r->touched, p)) {
		/* touched since it was freed: deflated, not released */
		unrelease_page(rel, p);
		rel->stat_deflated_pages++;
	}
	if (has_pin)
		pinned = apply_pins(x, p << rel->sub_shift, a, b);
	if (pgt__bitmap_test(&rel->released, p)) {
		x->res->already += cover - pinned;
		/* the guest says it is free again: cheap to free again */
		if (upp == 1 && !pinned)
			return run_add(r, rel, &x->run, p, x->res);
		return 0;
	}
	if (upp == 1 || (cover == upp && !pinned && !(rel->sub && rel->sub[p]))) {
		int ret;

		if (pinned)
			return 0;
		ret = run_add(r, rel, &x->run, p, x->res);
		if (!ret)
			x->done += cover;
		return ret;
	}
	return apply_pieces(x, p, a, b, has_pin);
}

int64_t pgt__rel_apply(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
		       uint32_t flags, struct pgt_release_result *res, int32_t *status)
{
	struct apply x = { .r = r, .rel = rel, .flags = flags, .res = res, .status = status };
	uint64_t end = u0 + n;
	int ret = 0;

	if (status)
		*status = 0;
	for (uint64_t u = u0; u < end && !ret;) {
		uint64_t p = u >> rel->sub_shift, pstart = p << rel->sub_shift;
		uint64_t b = end - pstart < rel->upp ? end - pstart : rel->upp;

		ret = apply_page(&x, p, u - pstart, b);
		u = pstart + b;
	}
	if (!ret)
		ret = run_flush(r, rel, &x.run, res);
	/* On an error, pieces counted for a page whose run failed to free are
	 * lost from the count; the error is reported, the state consistent. */
	res->released += x.done;
	rel->stat_released += x.done;
	return ret ? ret : (int64_t)x.done;
}

uint64_t pgt__rel_reclaim(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n)
{
	uint64_t upp = rel->upp, end = u0 + n, done = 0;

	for (uint64_t u = u0; u < end;) {
		uint64_t p = u >> rel->sub_shift, pstart = p << rel->sub_shift;
		uint64_t a = u - pstart, b = (end - pstart < upp) ? end - pstart : upp;
		struct pgt_sub *s;

		u = pstart + b;
		if (page_released(r, rel, p)) {
			unrelease_page(rel, p);
			if (b - a == upp) {
				done += upp;
				thp_back(r, rel, p);
				continue;
			}
			/* Part of a freed large page comes back: the rest stays
			 * released as pieces of a (now empty) page. */
			s = sub_get(rel, p);
			if (!s) {
				/* No memory to remember the rest: all of it returns. */
				done += upp;
				continue;
			}
			memset(s->bits, 0xff, upp / 8);
			s->count = (uint32_t)upp;
			rel->partial_units += upp;
		} else if (pgt__bitmap_test(&rel->released, p)) {
			/* touched again already; just drop the stale bit */
			unrelease_page(rel, p);
			rel->stat_deflated_pages++;
			thp_back(r, rel, p);
			continue;
		}
		s = rel->sub ? rel->sub[p] : NULL;
		if (!s)
			continue;
		for (uint64_t i = a; i < b; i++) {
			if (!sub_test(s, i))
				continue;
			s->bits[i / 64] &= ~(1ULL << (i % 64));
			s->count--;
			rel->partial_units--;
			done++;
		}
		if (!s->count)
			sub_drop(rel, p);
	}
	rel->stat_reclaimed += done;
	return done;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

int pgt__rel_resolve(struct pgt_engine *e, uint64_t gpa, uint64_t len, struct pgt_region **rp,
		     uint64_t *u0, uint64_t *n)
{
	if (!len || ((gpa | len) & (PGT_RELEASE_UNIT - 1)) || gpa + len < gpa)
		return -EINVAL;
	for (struct pgt_region *r = e->regions; r && r->gpa <= gpa; r = r->next) {
		if (gpa - r->gpa < r->length) {
			if (len > r->length - (gpa - r->gpa))
				return -ERANGE;
			*rp = r;
			*u0 = (gpa - r->gpa) >> PGT_UNIT_SHIFT;
			*n = len >> PGT_UNIT_SHIFT;
			return 0;
		}
	}
	return -ERANGE;
}

struct item {
	uint64_t gpa, len;
	size_t idx;
	struct pgt_region *r;
	uint64_t u0, n;
};

static int item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int region_cmp(const void *a, const void *b)
{
	const struct item *x = *(struct item *const *)a, *y = *(struct item *const *)b;

	return x->r->gpa < y->r->gpa ? -1 : x->r->gpa > y->r->gpa;
}

/* Does [u0, u0 + n) hold an already released unit? */
static bool any_released(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t u0,
			 uint64_t n)
{
	for (uint64_t u = u0; u < u0 + n;) {
		uint64_t p = u >> rel->sub_shift, pend = (p + 1) << rel->sub_shift;
		const struct pgt_sub *s;

		if (page_released(r, rel, p))
			return true;
		s = rel->sub ? rel->sub[p] : NULL;
		if (s) {
			for (uint64_t i = u; i < pend && i < u0 + n; i++)
				if (sub_test(s, i & (rel->upp - 1)))
					return true;
		}
		u = pend;
	}
	return false;
}

/* The ranges of one pgt_release_batch(), sorted, and their regions. */
struct batch {
	struct item one, *items;
	struct item **order;      /* one item per region, in lock order; NULL: one item */
	size_t n, nreg;
};

static int batch_alloc(struct batch *b, const struct pgt_range *ranges, size_t n)
{
	b->n = n;
	b->nreg = 0;
	if (n > SIZE_MAX / (sizeof(struct item) + sizeof(struct item *)))
		return -EINVAL;
	b->items = n == 1 ? &b->one : malloc(n * sizeof(*b->items));
	b->order = n == 1 ? NULL : malloc(n * sizeof(*b->order));
	if (!b->items || (n > 1 && !b->order))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		b->items[i] = (struct item){ ranges[i].gpa, ranges[i].len, i, NULL, 0, 0 };
	return 0;
}

static void batch_free(struct batch *b)
{
	if (b->items != &b->one)
		free(b->items);
	free(b->order);
}

static struct pgt_region *batch_region(const struct batch *b, size_t k)
{
	return b->order ? b->order[k]->r : b->items[0].r;
}

/*
 * Resolve every range to its region and units, refuse overlaps, and list
 * the regions in gpa (= list) order, which is the order their release
 * locks are taken in. regions_lock held.
 */
static int batch_resolve(struct pgt_engine *e, struct batch *b)
{
	int ret = 0;

	for (size_t i = 0; i < b->n && !ret; i++)
		ret = pgt__rel_resolve(e, b->items[i].gpa, b->items[i].len, &b->items[i].r,
				       &b->items[i].u0, &b->items[i].n);
	if (ret)
		return ret;
	if (b->n > 1) {
		qsort(b->items, b->n, sizeof(*b->items), item_cmp);
		for (size_t i = 1; i < b->n; i++)
			if (b->items[i].gpa < b->items[i - 1].gpa + b->items[i - 1].len)
				return -EINVAL; /* overlapping or repeated */
		for (size_t i = 0; i < b->n; i++)
			if (!i || b->items[i].r != b->items[i - 1].r)
				b->order[b->nreg++] = &b->items[i];
		qsort(b->order, b->nreg, sizeof(*b->order), region_cmp);
	} else {
		b->nreg = 1;
	}
	for (size_t k = 0; k < b->nreg; k++)
		if (!pgt__rel_get(batch_region(b, k)))
			return -ENOMEM;
	return 0;
}

static void batch_lock(struct batch *b, bool lock)
{
	for (size_t k = 0; k < b->nreg; k++) {
		pthread_mutex_t *m = &pgt__rel_peek(batch_region(b, k))->lock;

		if (lock)
			pthread_mutex_lock(m);
		else
			pthread_mutex_unlock(m);
	}
}

/* Release locks held: the ranges are independent (no overlap), applied in
 * gpa order. */
static int64_t batch_apply(struct batch *b, uint32_t flags, struct pgt_release_result *res)
{
	int64_t total = 0;

	if (!(flags & PGT_RELEASE_REPEAT_OK)) {
		for (size_t i = 0; i < b->n; i++) {
			struct pgt_region *r = b->items[i].r;

			if (any_released(r, pgt__rel_peek(r), b->items[i].u0, b->items[i].n))
				return -EALREADY;
		}
	}
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		int64_t got = pgt__rel_apply(it->r, pgt__rel_peek(it->r), it->u0, it->n, flags, res,
					     res->status ? &res->status[it->idx] : NULL);

		if (got < 0)
			return got;
		total += got;
	}
	return total;
}

PGT_EXPORT int64_t pgt_release_batch(pgt_engine *e, const struct pgt_range *ranges, size_t n,
				     uint32_t flags, struct pgt_release_result *res)
{
	struct pgt_release_result local = { .size = sizeof(local) };
	struct batch b = { 0 };
	int64_t ret;

	if (!e || !ranges || !n || (flags & ~(uint32_t)(PGT_RELEASE_REPEAT_OK | PGT_RELEASE_TRUSTED)))
		return -EINVAL;
	if (res && (ret = PGT_ARG_OUT(res, sizeof(*res))))
		return ret;
	ret = batch_alloc(&b, ranges, n);
	if (!ret) {
		pthread_rwlock_rdlock(&e->regions_lock);
		ret = batch_resolve(e, &b);
		if (!ret) {
			batch_lock(&b, true);
			ret = batch_apply(&b, flags, res ? res : &local);
			batch_lock(&b, false);
		}
		pthread_rwlock_unlock(&e->regions_lock);
	}
	batch_free(&b);
	return ret;
}

PGT_EXPORT int64_t pgt_release(pgt_engine *e, uint64_t gpa, uint64_t len, uint32_t flags,
			       struct pgt_release_result *res)
{
	struct pgt_range one = { gpa, len };

	return pgt_release_batch(e, &one, 1, flags, res);
}

int64_t pgt__rel_with(struct pgt_engine *e, uint64_t gpa, uint64_t len, bool create,
		      pgt_rel_fn fn, void *arg)
{
	struct pgt_region *r;
	struct pgt_rel *rel;
	uint64_t u0, n;
	int64_t ret;

	if (!e)
		return -EINVAL;
	pthread_rwlock_rdlock(&e->regions_lock);
	ret = pgt__rel_resolve(e, gpa, len, &r, &u0, &n);
	rel = ret ? NULL : create ? pgt__rel_get(r) : pgt__rel_peek(r);
	if (!ret && !rel && create)
		ret = -ENOMEM;
	if (rel) {
		pthread_mutex_lock(&rel->lock);
		ret = fn(r, rel, u0, n, arg);
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
}

static int64_t reclaim_fn(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
			  void *arg)
{
	(void)arg;
	return (int64_t)pgt__rel_reclaim(r, rel, u0, n);
}

PGT_EXPORT int64_t pgt_reclaim(pgt_engine *e, uint64_t gpa, uint64_t len)
{
	return pgt__rel_with(e, gpa, len, false, reclaim_fn, NULL);
}

static int64_t released_fn(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
			   void *arg)
{
	(void)n;
	(void)arg;
	return pgt__rel_unit_released(r, rel, u0);
}

PGT_EXPORT int pgt_released_test(pgt_engine *e, uint64_t gpa)
{
	return (int)pgt__rel_with(e, gpa & ~(PGT_RELEASE_UNIT - 1), PGT_RELEASE_UNIT, false,
				  released_fn, NULL);
}

PGT_EXPORT int64_t pgt_released_count(const pgt_region *cr)
{
	struct pgt_region *r = (struct pgt_region *)cr;
	struct pgt_rel *rel;
	uint64_t n;

	if (!r)
		return -EINVAL;
	rel = pgt__rel_peek(r);
	if (!rel)
		return 0;
	pthread_mutex_lock(&rel->lock);
	pgt__rel_sync_touch(r, rel);
	n = pgt__rel_units(rel);
	pthread_mutex_unlock(&rel->lock);
	return (int64_t)n;
}

static int partial_cmp(const void *a, const void *b)
{
	const struct pgt_partial_page *x = a, *y = b;

	if (x->released != y->released)
		return x->released > y->released ? -1 : 1;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

PGT_EXPORT int pgt_release_partial(const pgt_region *cr, struct pgt_partial_report *rep)
{
	struct pgt_region *r = (struct pgt_region *)cr;
	struct pgt_rel *rel;

	int ret;

	if (!r || !rep || (rep->pages_cap && !rep->pages))
		return -EINVAL;
	if ((ret = PGT_ARG_IN(rep, sizeof(*rep))))
		return ret;
	rep->partial = rep->units = 0;
	rep->npages = 0;
	memset(rep->hist, 0, sizeof(rep->hist));
	rep->units_per_page = r->page_shift > PGT_UNIT_SHIFT ? 1u << (r->page_shift - PGT_UNIT_SHIFT)
							     : 1;
	rel = pgt__rel_peek(r);
	if (!rel)
		return 0;
	pthread_mutex_lock(&rel->lock);
	if (rel->sub) {
		/* Fill the caller's array with the best candidates: keep it
		 * sorted, replacing its worst entry when a better page shows. */
		for (uint64_t p = 0; p < rel->released.nbits; p++) {
			const struct pgt_sub *s = rel->sub[p];
			struct pgt_partial_page pg;
			unsigned b;

			if (!s)
				continue;
			rep->partial++;
			rep->units += s->count;
			b = (unsigned)((uint64_t)s->count * PGT_PARTIAL_BUCKETS / rel->upp);
			rep->hist[b < PGT_PARTIAL_BUCKETS ? b : PGT_PARTIAL_BUCKETS - 1]++;
			if (!rep->pages_cap)
				continue;
			pg = (struct pgt_partial_page){
				.gpa = r->gpa + (p << r->page_shift),
				.released = s->count,
				.pinned = (uint32_t)pgt__pin_count(rel, p << rel->sub_shift, rel->upp),
			};
			if (rep->npages < rep->pages_cap) {
				rep->pages[rep->npages++] = pg;
				if (rep->npages == rep->pages_cap)
					qsort(rep->pages, rep->npages, sizeof(pg), partial_cmp);
			} else if (partial_cmp(&pg, &rep->pages[rep->npages - 1]) < 0) {
				size_t i = rep->npages - 1;

				while (i && partial_cmp(&pg, &rep->pages[i - 1]) < 0) {
					rep->pages[i] = rep->pages[i - 1];
					i--;
				}
				rep->pages[i] = pg;
			}
		}
	}
	pthread_mutex_unlock(&rel->lock);
	if (rep->npages && rep->npages < rep->pages_cap)
		qsort(rep->pages, rep->npages, sizeof(rep->pages[0]), partial_cmp);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Self-check                                                          */
/* ------------------------------------------------------------------ */

bool pgt__rel_validate(struct pgt_region *r, const char **reason)
{
	struct pgt_rel *rel = pgt__rel_peek(r);
	const char *why = NULL;
	uint64_t partial = 0, units = 0;

	if (!rel)
		return true;
	pthread_mutex_lock(&rel->lock);
	if (pgt__bitmap_popcount(&rel->released) != rel->released_pages)
		why = "released page count differs from its bitmap";
	else if (!pgt__bitmap_validate(&rel->released, &why) ||
		 !pgt__bitmap_validate(&rel->pinned, &why))
		;
	else if (pgt__pin_count(rel, 0, rel->nunits) != rel->pinned_units)
		why = "pinned unit count differs from the pins";
	for (uint64_t p = 0; !why && p < rel->released.nbits; p++) {
		const struct pgt_sub *s = rel->sub ? rel->sub[p] : NULL;
		bool released = pgt__bitmap_test(&rel->released, p);
		bool pinpage = pgt__bitmap_test(&rel->pinned, p);
		uint64_t u0 = p << rel->sub_shift;

		if (pinpage != (pgt__pin_count(rel, u0, rel->upp) != 0))
			why = "pinned page bitmap differs from the pins";
		else if (released && s)
			why = "a released page also has partial state";
		else if (released && pinpage && page_released(r, rel, p))
			why = "a pinned page is released";
		if (why || !s)
			continue;
		uint64_t c = 0;

		for (uint64_t i = 0; i < rel->upp; i++) {
			if (!sub_test(s, i))
				continue;
			c++;
			if (pgt__pin_test(rel, u0 + i))
				why = "a pinned piece is released";
		}
		if (c != s->count || !c || c >= rel->upp)
			why = "partial page count wrong (or empty, or complete)";
		partial++;
		units += c;
	}
	if (!why && (partial != rel->npartial || units != rel->partial_units))
		why = "partial page totals differ from the pages";
	pthread_mutex_unlock(&rel->lock);
	if (why && reason)
		*reason = why;
	return !why;
}
