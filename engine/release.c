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
 * touch: deflate), its bit in every dirty view, and re-arms the dirty
 * tracker on it: after MADV_DONTNEED an anonymous pte is simply gone, so a
 * synchronous uffd-WP or mprotect tracker must protect the hole again or the
 * next write would go unseen. Order inside one call: clear touched, free,
 * fix the dirty state, set released — a fault racing with the free either
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
		}
	}
}

/* ------------------------------------------------------------------ */
/* Kernel side                                                         */
/* ------------------------------------------------------------------ */

/* Free pages [p, p + n) on the host. */
static int free_pages(struct pgt_region *r, uint64_t p, uint64_t n)
{
	void *a = pgt__page_addr(r, p);
	uint64_t len = n << r->page_shift;

	if (r->shared && r->fd >= 0) {
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(r->fd_offset + (p << r->page_shift)), (off_t)len))
			return -errno;
		return 0;
	}
	/* MADV_DONTNEED on shared memory only unmaps: the page cache keeps it. */
	if (madvise(a, len, r->shared ? MADV_REMOVE : MADV_DONTNEED))
		return -errno;
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
	pgt__dirty_mark(r, p, n);
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
}

/* Free a run of whole pages and mark them released. */
static int release_run(struct pgt_region *r, struct pgt_rel *rel, uint64_t p, uint64_t n)
{
	uint64_t untouched = 0;
	bool lock = r->dops || r->views;
	int ret;

	if (pgt__touch_on(r)) {
		untouched = pgt__bitmap_take_range(&r->touched, p, n);
		atomic_fetch_sub(&r->ntouched, untouched);
	}
	if (lock)
		pthread_mutex_lock(&r->harvest_lock);
	ret = free_pages(r, p, n);
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
	if (rel->zero.words)
		pgt__bitmap_take_range(&rel->zero, p, n);
	for (uint64_t i = p; i < p + n; i++) {
		/* REPEAT_OK frees released pages again: count each once. */
		if (!pgt__bitmap_test(&rel->released, i)) {
			pgt__bitmap_set(&rel->released, i);
			rel->released_pages++;
			pgt__numa_note_released(rel->numa, i, 1, true);
		}
	}
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

int64_t pgt__rel_apply(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
		       uint32_t flags, struct pgt_release_result *res, int32_t *status)
{
	uint64_t upp = rel->upp, end = u0 + n, done = 0;
	struct run run = { 0, 0 };
	int ret = 0;

	if (status)
		*status = 0;
	for (uint64_t u = u0; u < end;) {
		uint64_t p = u >> rel->sub_shift, pstart = p << rel->sub_shift;
		uint64_t a = u - pstart, b = (end - pstart < upp) ? end - pstart : upp;
		uint64_t cover = b - a, pinned = 0;
		bool has_pin = pgt__bitmap_test(&rel->pinned, p);

		u = pstart + b;
		if (pgt__bitmap_test(&rel->released, p) && pgt__touch_on(r) &&
		    pgt__bitmap_test(&r->touched, p)) {
			/* touched since it was freed: deflated, not released */
			unrelease_page(rel, p);
			rel->stat_deflated_pages++;
		}
		if (has_pin)
			pinned = pgt__pin_count(rel, pstart + a, cover);
		if (pinned) {
			if (!res->pinned) {
				for (uint64_t i = pstart + a; i < pstart + b; i++)
					if (pgt__pin_test(rel, i)) {
						res->first_pinned = r->gpa + (i << PGT_UNIT_SHIFT);
						break;
					}
			}
			res->pinned += pinned;
			if (status)
				*status = -EBUSY;
		}
		if (pgt__bitmap_test(&rel->released, p)) {
			res->already += cover - pinned;
			/* the guest says it is free again: cheap to free again */
			if (upp == 1 && !pinned)
				ret = run_add(r, rel, &run, p, res);
			if (ret)
				break;
			continue;
		}
		if (upp == 1 || (cover == upp && !pinned && !(rel->sub && rel->sub[p]))) {
			if (pinned)
				continue;
			ret = run_add(r, rel, &run, p, res);
			if (ret)
				break;
			done += cover;
			continue;
		}
		/* Pieces of a larger page. */
		struct pgt_sub *s = sub_get(rel, p);

		if (!s) {
			ret = -ENOMEM;
			break;
		}
		for (uint64_t i = a; i < b;) {
			uint64_t j = i, k;

			/* a maximal run of new, unpinned pieces */
			while (j < b && !sub_test(s, j) && !(has_pin && pgt__pin_test(rel, pstart + j)))
				j++;
			if (j == i) {
				if (sub_test(s, i))
					res->already++;
				i++;
				continue;
			}
			ret = zero_units(r, pstart + i, j - i);
			if (ret)
				break;
			/* the page stays, with zeroed pieces: consumers must see it */
			pgt__dirty_mark(r, p, 1);
			for (k = i; k < j; k++)
				s->bits[k / 64] |= 1ULL << (k % 64);
			s->count += (uint32_t)(j - i);
			rel->partial_units += j - i;
			done += j - i;
			i = j;
		}
		if (ret)
			break;
		if (s->count == upp)
			ret = complete_page(r, rel, p, flags, &run, res);
		else if (!s->count)
			sub_drop(rel, p);
		if (ret)
			break;
	}
	if (!ret)
		ret = run_flush(r, rel, &run, res);
	if (ret) {
		/* Pieces counted for a page whose run failed to free are lost
		 * from the count; report the error, the state stays consistent. */
		res->released += done;
		rel->stat_released += done;
		return ret;
	}
	res->released += done;
	rel->stat_released += done;
	return (int64_t)done;
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
/* Residency                                                           */
/* ------------------------------------------------------------------ */

static void set_bit_range(uint64_t *out, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		out[i / 64] |= 1ULL << (i % 64);
}

static int64_t resident_mincore(struct pgt_region *r, uint64_t first, uint64_t n, uint64_t *out)
{
	uint64_t bp = pgt_hal_page_size(), per = r->page_size / bp, cnt = 0;
	unsigned char vec[4096];
	uint64_t step = sizeof(vec) / per ? sizeof(vec) / per : 1;

	for (uint64_t i = 0; i < n; i += step) {
		uint64_t k = n - i < step ? n - i : step;

		if (mincore(pgt__page_addr(r, first + i), k << r->page_shift, vec))
			return -errno;
		for (uint64_t j = 0; j < k; j++) {
			for (uint64_t q = 0; q < per; q++)
				if (vec[j * per + q] & 1) {
					out[(i + j) / 64] |= 1ULL << ((i + j) % 64);
					cnt++;
					break;
				}
		}
	}
	return (int64_t)cnt;
}

/*
 * A released private page that reads present but is neither exclusive nor
 * file-backed holds the zero page fix_dirty() mapped there: no memory.
 */
static bool zero_mapped(const struct pgt_region *r, const struct pgt_rel *rel, uint64_t pm,
			uint64_t p)
{
	if (!rel || r->shared || (pm & (PGT_PM_EXCLUSIVE | PGT_PM_FILE | PGT_PM_SWAP)))
		return false;
	return pgt__bitmap_test(&rel->released, p);
}

static int64_t resident_pagemap(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
				uint64_t *out)
{
	const struct pgt_rel *rel = atomic_load(&r->rel);
	uint64_t start = (uintptr_t)pgt__page_addr(r, first), end = start + (n << r->page_shift);
	uint64_t want = PAGE_IS_PRESENT | (swapped ? PAGE_IS_SWAPPED : 0), cnt = 0;
	struct page_region small[16], *vec = small;
	size_t vlen = 16;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int64_t ret = 0;

	if (fd < 0)
		return -errno;
	/* a big region in pieces: few ioctls with a big vector */
	if (n > 64 && (vec = malloc(1024 * sizeof(*vec))))
		vlen = 1024;
	else
		vec = small;
	if (r->eng->probe.pagemap_scan) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = start,
			.end = end,
			.vec = (uintptr_t)vec,
			.vec_len = vlen,
			.category_anyof_mask = want,
			.return_mask = want,
		};

		for (;;) {
			long k = ioctl(fd, PAGEMAP_SCAN, &a);

			if (k < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				break;
			}
			for (long i = 0; i < k; i++) {
				/* any present 4 KiB piece makes the page resident */
				uint64_t f = (vec[i].start - start) >> r->page_shift;
				uint64_t l = (vec[i].end - 1 - start) >> r->page_shift;

				set_bit_range(out, f, l - f + 1);
			}
			if (a.walk_end >= end || a.walk_end <= a.start)
				break;
			a.start = a.walk_end;
		}
		if (!ret)
			goto count;
		if (ret != -ENOTTY && ret != -EINVAL)
			goto out;
		ret = 0;
	}
	{
		uint64_t bp = pgt_hal_page_size(), buf[512];
		uint64_t mask = PGT_PM_PRESENT | (swapped ? PGT_PM_SWAP : 0);

		for (uint64_t a = start; a < end;) {
			size_t k = (size_t)((end - a) / bp);
			ssize_t got;

			if (k > sizeof(buf) / sizeof(buf[0]))
				k = sizeof(buf) / sizeof(buf[0]);
			got = pread(fd, buf, k * sizeof(buf[0]), (off_t)(a / bp * 8));
			if (got <= 0) {
				ret = got < 0 ? -errno : -EIO;
				goto out;
			}
			for (size_t i = 0; i < (size_t)got / 8; i++)
				if (buf[i] & mask) {
					uint64_t pg = (a + i * bp - start) >> r->page_shift;

					if (zero_mapped(r, rel, buf[i], first + pg))
						continue;
					out[pg / 64] |= 1ULL << (pg % 64);
				}
			a += (uint64_t)got / 8 * bp;
		}
	}
count:
	for (uint64_t w = 0; w < (n + 63) / 64; w++)
		cnt += (uint64_t)__builtin_popcountll(out[w]);
	ret = (int64_t)cnt;
out:
	if (vec != small)
		free(vec);
	close(fd);
	return ret;
}

int64_t pgt__resident(struct pgt_region *r, uint64_t first, uint64_t n, bool swapped,
		      uint64_t *out)
{
	if (!n)
		return 0;
	/* Shared memory lives in the page cache whether or not we map it. */
	if (r->shared)
		return resident_mincore(r, first, n, out);
	return resident_pagemap(r, first, n, swapped, out);
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

PGT_EXPORT int64_t pgt_release_batch(pgt_engine *e, const struct pgt_range *ranges, size_t n,
				     uint32_t flags, struct pgt_release_result *res)
{
	struct pgt_release_result local = { .size = sizeof(local) };
	struct item one, *items, **order = NULL;
	size_t nreg = 0;
	int64_t total = 0;
	int ret = 0;

	if (!e || !ranges || !n || (flags & ~(uint32_t)(PGT_RELEASE_REPEAT_OK | PGT_RELEASE_TRUSTED)))
		return -EINVAL;
	if (res && (ret = PGT_ARG_OUT(res, sizeof(*res))))
		return ret;
	if (n > SIZE_MAX / (sizeof(struct item) + sizeof(struct item *)))
		return -EINVAL;
	items = n == 1 ? &one : malloc(n * sizeof(*items));
	order = n == 1 ? NULL : malloc(n * sizeof(*order));
	if (!items || (n > 1 && !order)) {
		if (items != &one)
			free(items);
		free(order);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		items[i] = (struct item){ ranges[i].gpa, ranges[i].len, i, NULL, 0, 0 };

	pthread_rwlock_rdlock(&e->regions_lock);
	for (size_t i = 0; i < n && !ret; i++)
		ret = pgt__rel_resolve(e, items[i].gpa, items[i].len, &items[i].r, &items[i].u0,
				       &items[i].n);
	if (ret)
		goto out_unlock;
	if (n > 1) {
		qsort(items, n, sizeof(*items), item_cmp);
		for (size_t i = 1; i < n; i++)
			if (items[i].gpa < items[i - 1].gpa + items[i - 1].len) {
				ret = -EINVAL; /* overlapping or repeated */
				goto out_unlock;
			}
		/* one entry per region, in gpa (= list) order: the lock order */
		for (size_t i = 0; i < n; i++)
			if (!i || items[i].r != items[i - 1].r)
				order[nreg++] = &items[i];
		qsort(order, nreg, sizeof(*order), region_cmp);
	} else {
		order = NULL;
		nreg = 1;
	}
	for (size_t k = 0; k < nreg; k++) {
		struct pgt_region *r = order ? order[k]->r : items[0].r;

		if (!pgt__rel_get(r)) {
			ret = -ENOMEM;
			goto out_unlock;
		}
	}
	for (size_t k = 0; k < nreg; k++)
		pthread_mutex_lock(&pgt__rel_peek(order ? order[k]->r : items[0].r)->lock);

	if (!(flags & PGT_RELEASE_REPEAT_OK)) {
		for (size_t i = 0; i < n; i++) {
			struct pgt_region *r = items[i].r;

			if (any_released(r, pgt__rel_peek(r), items[i].u0, items[i].n)) {
				ret = -EALREADY;
				goto out_locked;
			}
		}
	}
	/* Ranges are independent (no overlap): apply them in gpa order. */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		struct pgt_region *r = it->r;
		int64_t got;

		got = pgt__rel_apply(r, pgt__rel_peek(r), it->u0, it->n, flags, res ? res : &local,
				     res && res->status ? &res->status[it->idx] : NULL);
		if (got < 0) {
			ret = (int)got;
			break;
		}
		total += got;
	}
out_locked:
	for (size_t k = 0; k < nreg; k++)
		pthread_mutex_unlock(&pgt__rel_peek(order ? order[k]->r : items[0].r)->lock);
out_unlock:
	pthread_rwlock_unlock(&e->regions_lock);
	if (items != &one)
		free(items);
	free(order);
	return ret ? ret : total;
}

PGT_EXPORT int64_t pgt_release(pgt_engine *e, uint64_t gpa, uint64_t len, uint32_t flags,
			       struct pgt_release_result *res)
{
	struct pgt_range one = { gpa, len };

	return pgt_release_batch(e, &one, 1, flags, res);
}

PGT_EXPORT int64_t pgt_reclaim(pgt_engine *e, uint64_t gpa, uint64_t len)
{
	struct pgt_region *r;
	struct pgt_rel *rel;
	uint64_t u0, n, done = 0;
	int ret;

	if (!e)
		return -EINVAL;
	pthread_rwlock_rdlock(&e->regions_lock);
	ret = pgt__rel_resolve(e, gpa, len, &r, &u0, &n);
	rel = ret ? NULL : pgt__rel_peek(r);
	if (rel) {
		pthread_mutex_lock(&rel->lock);
		done = pgt__rel_reclaim(r, rel, u0, n);
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return ret ? ret : (int64_t)done;
}

PGT_EXPORT int pgt_released_test(pgt_engine *e, uint64_t gpa)
{
	struct pgt_region *r;
	struct pgt_rel *rel;
	uint64_t u0, n;
	int ret;

	if (!e)
		return -EINVAL;
	gpa &= ~(PGT_RELEASE_UNIT - 1);
	pthread_rwlock_rdlock(&e->regions_lock);
	ret = pgt__rel_resolve(e, gpa, PGT_RELEASE_UNIT, &r, &u0, &n);
	if (!ret) {
		rel = pgt__rel_peek(r);
		if (rel) {
			pthread_mutex_lock(&rel->lock);
			ret = pgt__rel_unit_released(r, rel, u0);
			pthread_mutex_unlock(&rel->lock);
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
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
/* Releases behind our back                                            */
/* ------------------------------------------------------------------ */

/*
 * UFFD_EVENT_REMOVE from a handler thread (madvise DONTNEED/REMOVE on the
 * range, by anyone). The madvise caller waits until the event is read, and
 * that may be a release of ours holding rel->lock: so only note the pages
 * here, lock-free; pgt_release_rescan() checks and accounts them.
 */
void pgt__release_on_remove(struct pgt_region *r, uint64_t start, uint64_t end)
{
	uint64_t base = (uintptr_t)r->addr, first, last;
	struct pgt_rel *rel;

	if (end <= base || start >= base + r->length)
		return;
	if (start < base)
		start = base;
	if (end > base + r->length)
		end = base + r->length;
	/*
	 * The whole pages holding the range: a piece of a large page removed
	 * is zeroed, its page changed too. The kernel zaps the range once
	 * this event is read, so this report may reach a view before the
	 * memory changed: pgt_release_rescan() reports the hinted pages again
	 * (after their madvise returned), and accounts those that are gone.
	 */
	first = (start - base) >> r->page_shift;
	last = (end - base + r->page_size - 1) >> r->page_shift;
	pgt__dirty_mark(r, first, last - first);
	rel = pgt__rel_get(r);
	if (!rel)
		return;
	if (!rel->removed.words)
		return;
	pgt__bitmap_set_range(&rel->removed, first, last - first);
	atomic_store_explicit(&rel->removed_any, true, memory_order_release);
}

struct rescan_ctx {
	struct pgt_region *r;
	struct pgt_rel *rel;
	uint64_t found;
	int err;
};

/* Candidates [first, first + n): those not resident were released. */
static int rescan_run(void *arg, uint64_t first, uint64_t n)
{
	struct rescan_ctx *x = arg;
	struct pgt_region *r = x->r;
	struct pgt_rel *rel = x->rel;
	uint64_t chunk = 4096;

	for (uint64_t off = 0; off < n; off += chunk) {
		uint64_t k = n - off < chunk ? n - off : chunk, res[4096 / 64];
		int64_t got;

		memset(res, 0, sizeof(res));
		got = pgt__resident(r, first + off, k, true, res);
		if (got < 0) {
			x->err = (int)got;
			return 1;
		}
		for (uint64_t i = 0; i < k; i++) {
			uint64_t p = first + off + i;
			bool was_touched;

			if (res[i / 64] >> (i % 64) & 1 || pgt__bitmap_test(&rel->released, p))
				continue;
			if (pgt__bitmap_test(&rel->pinned, p))
				continue; /* cannot be gone; never mark it */
			/* Gone behind our back: account it as released. */
			was_touched = pgt__touch_on(r) && pgt__bitmap_take_range(&r->touched, p, 1);
			if (was_touched)
				atomic_fetch_sub(&r->ntouched, 1);
			if (r->dops || r->views) {
				pthread_mutex_lock(&r->harvest_lock);
				freed_pages_dirty(r, p, 1);
				pthread_mutex_unlock(&r->harvest_lock);
			}
			if (rel->sub && rel->sub[p])
				sub_drop(rel, p);
			if (rel->zero.words)
				pgt__bitmap_clear(&rel->zero, p);
			pgt__bitmap_set(&rel->released, p);
			rel->released_pages++;
			pgt__numa_note_released(rel->numa, p, 1, true);
			rel->stat_external_pages++;
			x->found++;
		}
	}
	return 0;
}

static int mark_run(void *arg, uint64_t first, uint64_t n)
{
	pgt__dirty_mark(arg, first, n);
	return 0;
}

PGT_EXPORT int64_t pgt_release_rescan(pgt_region *r)
{
	struct rescan_ctx x = { r, NULL, 0, 0 };
	struct pgt_bitmap cand;
	int ret;

	if (!r)
		return -EINVAL;
	x.rel = pgt__rel_get(r);
	if (!x.rel)
		return -ENOMEM;
	ret = pgt__bitmap_init(&cand, r->npages);
	if (ret)
		return ret;
	/* REMOVE events already read (their madvise returned) are recorded */
	pgt__flight_wait(&r->evflight);
	pthread_mutex_lock(&x.rel->lock);
	pgt__rel_sync_touch(r, x.rel);
	/* Candidates: pages we know were populated, and REMOVE hints. */
	if (pgt__touch_on(r))
		pgt__bitmap_or(&cand, &r->touched);
	if (atomic_exchange(&x.rel->removed_any, false)) {
		/* their madvise returned: the memory is zero now, say it again */
		pgt__bitmap_for_each_run(&x.rel->removed, mark_run, r);
		pgt__bitmap_or(&cand, &x.rel->removed);
		pgt__bitmap_take(&x.rel->removed, NULL, NULL);
	}
	pgt__bitmap_for_each_run(&cand, rescan_run, &x);
	pthread_mutex_unlock(&x.rel->lock);
	pgt__bitmap_fini(&cand);
	if (x.err)
		return x.err;
	if (x.found)
		pgt__log(r->eng, PGT_LOG_INFO, "region %s: %llu page(s) released behind our back",
			 r->name, (unsigned long long)x.found);
	return (int64_t)x.found;
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
