/* SPDX-License-Identifier: MIT */
/*
 * Dirty views and harvest.
 *
 * One kernel tracking pass per region feeds any number of views: a harvest by
 * view V first collects what the tracker has (get-and-clear in the kernel or
 * in the pending bitmap) and ORs it into every open view, then takes V's own
 * bits. A page is therefore reported once to each view, and no view can take
 * pages from another. Everything here runs under r->harvest_lock; writers
 * (vCPUs) never take it.
 */
#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_pvt.h"
#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "lib/offload.h"


static const struct pgt_dirty_ops *const methods[PGT_DIRTY__COUNT] = {
	[PGT_DIRTY_UFFD_ASYNC] = &pgt__dirty_uffd_async,
	[PGT_DIRTY_SOFT_DIRTY] = &pgt__dirty_softdirty,
	[PGT_DIRTY_UFFD_SYNC] = &pgt__dirty_uffd_sync,
	[PGT_DIRTY_MPROTECT] = &pgt__dirty_mprotect,
	[PGT_DIRTY_FINGERPRINT] = &pgt__dirty_fingerprint,
};

void pgt__flight_wait(struct pgt_flight *f)
{
	unsigned old = atomic_fetch_add(&f->epoch, 1) & 1;

	while (atomic_load_explicit(&f->count[old], memory_order_acquire))
		sched_yield();
}

struct reprotect {
	struct pgt_region *r;
	pgt_protect_fn protect;
	pgt_bitmap_run_fn fn;
	void *arg;
	int err;
};

static int reprotect_run(void *arg, uint64_t first, uint64_t n)
{
	struct reprotect *x = arg;
	int ret = x->protect(x->r, first, n);

	if (ret) {
		/*
		 * Still writable: keep the pages pending, so they are reported
		 * again each harvest (over-reporting, never losing a write).
		 */
		pgt__bitmap_set_range(&x->r->pending, first, n);
		if (!x->err)
			x->err = ret;
	}
	if (x->fn)
		x->fn(x->arg, first, n);
	return 0;
}

int64_t pgt__pending_collect(struct pgt_region *r, pgt_protect_fn protect,
			     pgt_bitmap_run_fn fn, void *arg)
{
	struct reprotect x = { r, protect, fn, arg, 0 };
	uint64_t n;

	/* handlers that began before us have set their bits (track_uffd.c) */
	pgt__flight_wait(&r->flight);
	n = pgt__bitmap_take_runs(&r->pending, reprotect_run, &x);
	if (x.err)
		pgt__log(r->eng, PGT_LOG_WARN, "region %s: re-protect failed (%s): pages stay dirty",
			 r->name, strerror(-x.err));
	return (int64_t)n;
}

/*
 * AUTO: the methods that work for this region, then the cheapest for its
 * size by this host's measured costs (calib_engine.c), or the first in
 * feature order when calibration is off or failed.
 */
static int resolve_auto(struct pgt_region *r)
{
	const struct pgt_probe *p = &r->eng->probe;
	uint32_t avail = 0;
	int m;

	for (m = PGT_DIRTY_UFFD_ASYNC; m < PGT_DIRTY_NONE; m++) {
		int ret = methods[m]->supported(r, p);

		if (!ret)
			avail |= 1u << m;
		else
			pgt__log(r->eng, PGT_LOG_INFO, "region %s: %s not usable (%s)",
				 r->name, pgt_dirty_method_name(m), strerror(-ret));
	}
	if (!avail) {
		/* last resort: needs no kernel support, costs a read of the memory */
		if (!methods[PGT_DIRTY_FINGERPRINT]->supported(r, p)) {
			r->dops = methods[PGT_DIRTY_FINGERPRINT];
			return 0;
		}
		return -EOPNOTSUPP;
	}
	m = pgt__calib_pick(pgt__calib_get(r->eng), avail, r->npages);
	if (m < 0)
		return m;
	r->dops = methods[m];
	return 0;
}

int pgt__dirty_resolve(struct pgt_region *r, int method)
{
	const struct pgt_probe *p = &r->eng->probe;

	if (method == PGT_DIRTY_NONE) {
		r->track &= ~(uint32_t)PGT_TRACK_DIRTY;
		return 0;
	}
	if (method != PGT_DIRTY_AUTO) {
		const struct pgt_dirty_ops *ops = methods[method];
		int ret = ops->supported(r, p);

		if (ret) {
			pgt__log(r->eng, PGT_LOG_WARN, "region %s: dirty method %s unavailable: %s",
				 r->name, pgt_dirty_method_name(method), strerror(-ret));
			return ret;
		}
		r->dops = ops;
		return 0;
	}
	return resolve_auto(r);
}

int pgt__dirty_init(struct pgt_region *r)
{
	int ret = 0;

	if (r->dops->uses_pending)
		ret = pgt__bitmap_init(&r->pending, r->npages);
	/*
	 * Marks go where the tracker collects from when it has a pending
	 * bitmap (re-protecting a marked page there is harmless): no second
	 * bitmap for them, which the metadata budget would feel.
	 */
	if (!ret && r->dops->uses_pending)
		r->marks = &r->pending;
	else if (!ret && !(ret = pgt__bitmap_init(&r->external, r->npages)))
		r->marks = &r->external;
	if (!ret)
		ret = r->dops->start(r);
	if (!ret)
		r->dops_started = true;
	else
		pgt__log(r->eng, PGT_LOG_ERR, "region %s: starting %s: %s", r->name,
			 pgt_dirty_method_name(r->dops->method), strerror(-ret));
	return ret;
}

void pgt__dirty_fini(struct pgt_region *r)
{
	if (r->dops && r->dops_started) {
		pthread_mutex_lock(&r->harvest_lock);
		r->dops->stop(r);
		pthread_mutex_unlock(&r->harvest_lock);
	}
}

/* Everything since the last collect: the tracker's pages and the marks. */
static int64_t collect_all(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	int64_t n = r->dops->collect(r, fn, arg);

	/*
	 * A page both written and marked is reported twice to the views'
	 * bitmaps (an OR: once to the consumer) and counted twice here.
	 */
	if (n >= 0 && r->marks == &r->external)
		n += (int64_t)pgt__bitmap_take_runs(&r->external, fn, arg);
	return n;
}

PGT_EXPORT int pgt_dirty_view_open(pgt_region *r, pgt_dirty_view **out)
{
	struct pgt_dirty_view *v;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!r || !r->dops)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	ret = pgt__numa_shardmap_init(&v->bm, r->npages, r->numa);
	if (ret) {
		free(v);
		return ret;
	}
	v->r = r;
	pthread_mutex_lock(&r->harvest_lock);
	ret = pgt__refine_view_init(r, v);
	pthread_mutex_unlock(&r->harvest_lock);
	if (!ret)
		ret = pgt__collect_begin(r);
	if (ret) {
		pgt__refine_view_fini(v);
		pgt__shardmap_fini(&v->bm);
		free(v);
		return ret;
	}
	pthread_mutex_lock(&r->harvest_lock);
	/*
	 * The first view starts clean from now: drop whatever the tracker saw
	 * before anyone was listening (so its first harvest is "since open").
	 * Later views start empty too; pages pending for older views stay theirs.
	 */
	if (!r->views)
		collect_all(r, NULL, NULL);
	v->next = r->views;
	r->views = v;
	r->nviews++;
	pthread_mutex_unlock(&r->harvest_lock);
	pgt__collect_end(r);
	*out = v;
	return 0;
}

PGT_EXPORT void pgt_dirty_view_close(pgt_dirty_view *v)
{
	struct pgt_region *r;

	if (!v)
		return;
	r = v->r;
	if (!r) { /* detached: the region is gone, its bitmap freed with it */
		free(v);
		return;
	}
	pthread_mutex_lock(&r->harvest_lock);
	for (struct pgt_dirty_view **pp = &r->views; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			r->nviews--;
			break;
		}
	}
	pthread_mutex_unlock(&r->harvest_lock);
	pgt__refine_view_fini(v);
	pgt__shardmap_fini(&v->bm);
	free(v);
}

int pgt__collect_begin(struct pgt_region *r)
{
	if (!r->dops || !r->dops_started || !r->dops->pause)
		return 0;
	return r->dops->pause(r);
}

void pgt__collect_end(struct pgt_region *r)
{
	if (r->dops && r->dops_started && r->dops->resume)
		r->dops->resume(r);
}

/* Shards whose counts pgt__dirty_mark_words() keeps from its OR pass. */
#define PGT_MARK_SHARDS 64

/* Collected run → every view. */
static int fan_out(void *arg, uint64_t first, uint64_t n)
{
	struct pgt_region *r = arg;

	for (struct pgt_dirty_view *v = r->views; v; v = v->next)
		pgt__shardmap_set_range(&v->bm, first, n);
	pgt__numa_note_dirty(r->numa, first, n);
	return 0;
}

void pgt__dirty_mark(struct pgt_region *r, uint64_t first, uint64_t n)
{
	if (!r->marks || first >= r->npages)
		return;
	pgt__bitmap_set_range(r->marks, first, n);
}

/*
 * The first view's OR pass counts the bits per shard; views are sharded by
 * the region's NUMA geometry, so those counts are the per-node counts
 * fan_out() keeps. Whether that holds for @m, the first view's map (then
 * the words may also be zeroed in that pass); if not, note_words()
 * popcounts every shard.
 */
static bool counts_exact(const struct pgt_region *r, const struct pgt_shardmap *m, size_t hi)
{
	const struct pgt_numa_region *nr = r->numa;

	if (!m)
		return false;
	if (!nr || !nr->nshards)
		return m->n == 1 && !m->s[0].first && m->s[0].bm.nwords >= hi;
	if (m->n != nr->nshards || m->n > PGT_MARK_SHARDS)
		return false;
	for (unsigned i = 0; i < m->n; i++)
		if (m->s[i].first != nr->shards[i].first || m->s[i].npages != nr->shards[i].npages)
			return false;
	return true;
}

/* Per-node counts of words [lo, hi): from @cnt when counts_exact() held,
 * else popcounted. */
static uint64_t note_words(struct pgt_region *r, const uint64_t *words, size_t w0, size_t lo,
			   size_t hi, const uint64_t *cnt)
{
	const struct pgt_numa_region *nr = r->numa;
	uint64_t c = 0;

	if (!nr || !nr->nshards)
		return cnt ? cnt[0] : pgt_hal_popcount(words + (lo - w0), hi - lo);
	for (unsigned i = 0; i < nr->nshards; i++) {
		const struct pgt_shard_geom *g = &nr->shards[i];
		size_t a = (size_t)(g->first / 64), b = (size_t)((g->first + g->npages + 63) / 64);
		uint64_t k;

		a = a > lo ? a : lo;
		b = b < hi ? b : hi;
		if (a >= b)
			continue;
		k = cnt ? cnt[i] : pgt_hal_popcount(words + (a - w0), b - a);
		if (k)
			pgt__numa_note_dirty(r->numa, g->first, k);
		c += k;
	}
	return c;
}

/* @take: the last view's pass also zeroes the words; words it does not
 * cover (past the region, no view) are zeroed after. */
static uint64_t mark_words(struct pgt_region *r, uint64_t *words, size_t w0, size_t n, bool take)
{
	size_t nw = (size_t)((r->npages + 63) / 64), lo = w0, hi;
	uint64_t cnt[PGT_MARK_SHARDS] = { 0 }, c;
	bool exact, fused;

	if (!r->dops || w0 >= nw || !n) {
		if (take && n)
			memset(words, 0, n * sizeof(*words));
		return 0;
	}
	hi = n > nw - w0 ? nw : w0 + n;
	pthread_mutex_lock(&r->harvest_lock);
	/* the first view's pass gives every count, or none; the words are
	 * zeroed in that pass only when it is the only one */
	exact = r->views && counts_exact(r, &r->views->bm, hi);
	fused = take && exact && !r->views->next;
	/* views are written only under harvest_lock: plain word ORs will do */
	for (struct pgt_dirty_view *v = r->views; v; v = v->next) {
		for (unsigned i = 0; i < v->bm.n; i++) {
			struct pgt_shard *s = &v->bm.s[i];
			size_t s0 = (size_t)(s->first / 64), s1 = s0 + s->bm.nwords;
			size_t a = lo > s0 ? lo : s0, b = hi < s1 ? hi : s1;
			uint64_t k = 0;

			if (a < b && fused)
				k = pgt__ofl_take_words(&s->bm, a - s0, words + (a - w0), b - a);
			else if (a < b)
				k = pgt__ofl_or_words(&s->bm, a - s0, words + (a - w0), b - a);
			if (v == r->views && i < PGT_MARK_SHARDS)
				cnt[i] = k;
		}
	}
	c = note_words(r, words, w0, lo, hi, exact ? cnt : NULL);
	pthread_mutex_unlock(&r->harvest_lock);
	if (take && !fused)
		memset(words, 0, (hi - lo) * sizeof(*words));
	if (take && w0 + n > hi)
		memset(words + (hi - w0), 0, (w0 + n - hi) * sizeof(*words));
	return c;
}

uint64_t pgt__dirty_mark_words(struct pgt_region *r, const uint64_t *words, size_t w0, size_t n)
{
	/* not written: take is false */
	return mark_words(r, (uint64_t *)words, w0, n, false);
}

uint64_t pgt__dirty_take_words(struct pgt_region *r, uint64_t *words, size_t w0, size_t n)
{
	return mark_words(r, words, w0, n, true);
}

int64_t pgt__dirty_collect(struct pgt_region *r, bool count)
{
	int64_t n = collect_all(r, fan_out, r);

	if (n >= 0 && count) {
		atomic_fetch_add_explicit(&r->harvests, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&r->dirty_reported, (uint64_t)n, memory_order_relaxed);
	}
	return n;
}

PGT_EXPORT int64_t pgt_dirty_harvest(pgt_dirty_view *v, struct pgt_harvest *h)
{
	const size_t v1 = offsetof(struct pgt_harvest, page_size);
	struct pgt_shard_out o;
	struct pgt_region *r;
	bool has_psize;
	int64_t n;

	if (!v || !h)
		return -EINVAL;
	if ((n = PGT_ARG_IN(h, v1)))
		return n;
	has_psize = h->size >= v1 + sizeof(h->page_size);
	if (h->size >= offsetof(struct pgt_harvest, data_len) + sizeof(h->data_len)) {
		h->data_len = 0;
		if (h->data && !pgt__refine_on(v))
			return -EINVAL;
	}
	if (h->flags)
		return -EINVAL;
	r = v->r;
	if (!r)
		return -ENODEV;
	if (h->bitmap && h->bitmap_words < (r->npages + PGT_BITS_PER_LONG - 1) / PGT_BITS_PER_LONG)
		return -ENOBUFS;

	/* what offload devices logged until now joins this harvest (before
	 * any pause: the drain takes and drops harvest_lock itself) */
	if ((n = pgt__region_mapped(r)))
		return n;
	if (atomic_load_explicit(&r->offload_refs, memory_order_acquire))
		pgt__offload_drain(r);
	if ((n = pgt__collect_begin(r)))
		return n;
	pthread_mutex_lock(&r->harvest_lock);
	n = pgt__dirty_collect(r, true);
	if (n < 0)
		goto out;
	if (pgt__refine_on(v)) {
		n = pgt__refine_harvest(v, h, has_psize,
					h->size >= offsetof(struct pgt_harvest, data_len) + 8);
		if (n >= 0)
			h->epoch = ++v->epoch;
		goto out;
	}
	/*
	 * Shards are taken on their nodes' workers (large regions) and merged
	 * without a lock; with -ENOBUFS nothing is consumed, the pages wait in
	 * the view and h->nruns says how many runs are needed.
	 */
	o = (struct pgt_shard_out){
		.bitmap = h->bitmap, .bitmap_words = h->bitmap_words,
		.runs = h->runs, .runs_cap = h->runs_cap,
		.gpa = r->gpa, .page_shift = r->page_shift,
	};
	n = pgt__shardmap_take(&v->bm, &o);
	h->nruns = o.nruns;
	if (n < 0)
		goto out;
	h->dirty_pages = (uint64_t)n;
	if (has_psize)
		h->page_size = r->page_size;
	h->epoch = ++v->epoch;
out:
	pthread_mutex_unlock(&r->harvest_lock);
	pgt__collect_end(r);
	return n;
}

PGT_EXPORT int pgt_dirty_merge(pgt_region *r, const unsigned long *bitmap, uint64_t nbits)
{
	if (!r || !bitmap || !r->dops || nbits > r->npages)
		return -EINVAL;
	pthread_mutex_lock(&r->harvest_lock);
	for (struct pgt_dirty_view *v = r->views; v; v = v->next)
		pgt__shardmap_or_kvm(&v->bm, bitmap, nbits);

	pthread_mutex_unlock(&r->harvest_lock);
	return 0;
}

PGT_EXPORT int pgt_region_stats(const pgt_region *r, struct pgt_region_stats *st)
{
	struct pgt_region *rw = (struct pgt_region *)r;
	uint64_t meta = sizeof(*r);

	struct pgt_rel *rel;

	int ret;

	if (!r || !st)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(st, sizeof(*st))))
		return ret;
	/* lock order: rel->lock before harvest_lock (release_pvt.h) */
	rel = atomic_load(&rw->rel);
	if (rel) {
		pthread_mutex_lock(&rel->lock);
		meta += pgt__rel_bytes(rel);
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_mutex_lock(&rw->harvest_lock);
	meta += pgt__bitmap_bytes(&r->pending) + pgt__bitmap_bytes(&r->external) +
		pgt__bitmap_bytes(&r->touched) +
		pgt__touch_bytes(r) + pgt__refine_bytes(r);
	for (const struct pgt_dirty_view *v = r->views; v; v = v->next)
		meta += sizeof(*v) + pgt__shardmap_bytes(&v->bm) +
			(v->sub ? pgt__refine_view_bytes(r) : 0);
	*st = (struct pgt_region_stats){
		.size = sizeof(*st),
		.npages = r->npages,
		.touched = atomic_load(&rw->ntouched),
		.touch_faults = atomic_load(&rw->touch_faults),
		.touch_errors = atomic_load(&rw->touch_errors),
		.wp_faults = atomic_load(&rw->wp_faults),
		.harvests = atomic_load(&rw->harvests),
		.dirty_reported = atomic_load(&rw->dirty_reported),
		.views = r->nviews,
		.metadata_bytes = meta,
	};
	pthread_mutex_unlock(&rw->harvest_lock);
	return 0;
}
