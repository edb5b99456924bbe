/* SPDX-License-Identifier: MIT */
/*
 * Offload devices (include/pgtrack/offload.h): a backend from hal/offload/
 * attached to regions through an IOVA -> guest-physical map, its log parsed
 * with lib/offload.c into one private bitmap per region, merged into the
 * region's views (pgt__dirty_mark_words) or age view (pgt__age_hot) once
 * per harvest.
 *
 * Locks, in order: eng->offload_lock (the device list) -> dev->lock (one
 * harvest at a time, map changes) -> r->harvest_lock (taken inside the
 * merge). pgt_dirty_harvest() drains the dirty-logging devices of its region
 * before it takes harvest_lock; hot-list devices are never drained from
 * there, because their merge takes the release lock that pgt_age_sample()
 * holds around its harvest.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "hal/offload/offload.h"
#include "lib/offload.h"

#define MAX_RINGS 4096
#define PGT_OFL_PAGE_SIZE_4K (1ULL << PGT_OFL_PAGE_SHIFT)
#define MAX_RANGES (1u << 20)

struct ofl_alias {
	void *map;
	size_t len;
};

struct ofl_target {
	struct pgt_region *r;
};

struct pgt_offload {
	struct pgt_ofl_dev d;
	struct pgt_engine *eng;
	struct pgt_offload *next;
	char *name;
	pthread_mutex_t lock;
	struct pgt_offload_caps caps;
	bool attached, started;
	uint64_t page_size;
	uint32_t nranges;
	/* the map */
	struct pgt_ofl_win *win;
	unsigned nwin;
	struct ofl_alias *alias;
	unsigned nalias;
	struct ofl_target *tg;
	struct pgt_ofl_target *ltg;
	uint32_t ntg;
	struct pgt_ofl_map map;
	/* rings */
	struct pgt_ofl_ring *rings;
	unsigned nrings;
	/* DMA memory handed to the backend (one ring) */
	void *mem;
	size_t mem_len;
	const void *mem_mz;
	bool mem_huge;
	/* counters */
	_Atomic uint64_t records, pages, rejected, lost, torn, bad_index, device_errors, harvests;
};

/* ------------------------------------------------------------------ */
/* Services passed down to the backend                                 */
/* ------------------------------------------------------------------ */

static void svc_log(void *svc, int level, const char *fmt, va_list ap)
{
	struct pgt_offload *o = svc;
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	pgt__log(o->eng, level, "offload %s: %s", o->name, buf);
}

/*
 * Zeroed words on a cache line of their own, like the views' (a bitmap
 * merged 16 bytes off the line splits every vector load: calloc's 16-byte
 * alignment made the merge 1.5 x slower).
 */
static uint64_t *alloc_words(size_t n)
{
	size_t bytes = (n * sizeof(uint64_t) + 63) & ~(size_t)63;
	uint64_t *w = aligned_alloc(64, bytes ? bytes : 64);

	if (w)
		memset(w, 0, bytes);
	return w;
}

/*
 * Memory a device can DMA into: DPDK memory when an EAL is up (it has an
 * IOVA the device can be given), else a 2 MiB hugepage mapping (few TLB
 * entries for a ring written at line rate), else plain pages.
 */
static void *svc_alloc(void *svc, size_t bytes, uint64_t *iova, int *err)
{
	struct pgt_offload *o = svc;
	size_t len;
	void *p;

	if (o->mem)
		return *err = -EBUSY, NULL;
	*iova = 0;
	p = pgt__dpdk_dma_alloc(bytes, iova, &o->mem_mz);
	if (p) {
		o->mem = p;
		o->mem_len = bytes;
		return p;
	}
	len = (size_t)pgt__round_up(bytes, PGT_SZ_2M);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p != MAP_FAILED) {
		o->mem_huge = true;
	} else {
		len = (size_t)pgt__round_up(bytes, pgt_hal_page_size());
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			*err = -errno;
			return NULL;
		}
	}
	o->mem = p;
	o->mem_len = len;
	return p;
}

static void svc_free(void *svc, void *p, size_t bytes)
{
	struct pgt_offload *o = svc;

	(void)bytes;
	if (!p || p != o->mem)
		return;
	if (o->mem_mz)
		pgt__dpdk_dma_free(o->mem_mz);
	else
		munmap(p, o->mem_len);
	o->mem = NULL;
	o->mem_mz = NULL;
	o->mem_len = 0;
}

/* ------------------------------------------------------------------ */
/* Listing and opening                                                 */
/* ------------------------------------------------------------------ */

PGT_EXPORT int pgt_offload_backends(struct pgt_offload_backend_info *out, size_t cap)
{
	int n = 0;

	if (cap && !out)
		return -EINVAL;
	for (unsigned i = 0; pgt__ofl_backends[i]; i++, n++) {
		const struct pgt_ofl_ops *ops = pgt__ofl_backends[i];
		struct pgt_offload_backend_info bi = { .size = sizeof(bi) };
		size_t fill;

		if (i >= cap)
			continue;
		if (pgt__arg_out(&out[i], out[i].size, sizeof(out[i]), sizeof(out[i]), &fill))
			return -EINVAL;
		snprintf(bi.name, sizeof(bi.name), "%s", ops->name);
		bi.caps.size = sizeof(bi.caps);
		bi.status = ops->probe(&pgt__ofl_io_real, &bi.caps, bi.reason, sizeof(bi.reason));
		memcpy(&out[i], &bi, fill);
	}
	return n;
}

static void list_add(struct pgt_engine *e, struct pgt_offload *o)
{
	pthread_mutex_lock(&e->offload_lock);
	o->next = e->offload;
	e->offload = o;
	pthread_mutex_unlock(&e->offload_lock);
}

static void list_del(struct pgt_engine *e, struct pgt_offload *o)
{
	pthread_mutex_lock(&e->offload_lock);
	for (struct pgt_offload **pp = &e->offload; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	pthread_mutex_unlock(&e->offload_lock);
}

/* Open on @io: the real seam, or a model (tests, benchmarks). */
int pgt__offload_open_io(pgt_engine *e, const struct pgt_offload_config *cfg,
			 const struct pgt_ofl_io *io, pgt_offload **out)
{
	const struct pgt_ofl_ops *ops;
	struct pgt_offload *o;
	char why[128];
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || !cfg || !io)
		return -EINVAL;
	ret = pgt__arg_in(cfg, cfg->size, sizeof(*cfg), sizeof(*cfg));
	if (ret)
		return ret;
	if (cfg->flags || !cfg->backend)
		return -EINVAL;
	ops = pgt__ofl_backend(cfg->backend);
	if (!ops)
		return -ENOENT;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->eng = e;
	o->name = strdup(cfg->name ? cfg->name : ops->name);
	pthread_mutex_init(&o->lock, NULL);
	o->d.ops = ops;
	o->d.io = io;
	o->d.svc = o;
	o->d.alloc = svc_alloc;
	o->d.free = svc_free;
	o->d.log = svc_log;
	o->caps.size = sizeof(o->caps);
	if (!o->name) {
		ret = -ENOMEM;
		goto err;
	}
	ret = ops->probe(io, &o->caps, why, sizeof(why));
	if (ret) {
		pgt__log(e, PGT_LOG_WARN, "offload %s: %s", o->name, why);
		goto err;
	}
	ret = ops->open(&o->d, cfg->backend_config);
	if (ret)
		goto err;
	list_add(e, o);
	*out = o;
	return 0;
err:
	if (o->d.priv)
		ops->close(&o->d);
	pthread_mutex_destroy(&o->lock);
	free(o->name);
	free(o);
	return ret;
}

PGT_EXPORT int pgt_offload_open(pgt_engine *e, const struct pgt_offload_config *cfg,
				pgt_offload **out)
{
	return pgt__offload_open_io(e, cfg, &pgt__ofl_io_real, out);
}

/* ------------------------------------------------------------------ */
/* The map                                                             */
/* ------------------------------------------------------------------ */

static int cmp_range_iova(const void *a, const void *b)
{
	const struct pgt_offload_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int cmp_slot(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Region holding @gpa; engine regions_lock held. */
static struct pgt_region *region_at(struct pgt_engine *e, uint64_t gpa)
{
	for (struct pgt_region *r = e->regions; r && r->gpa <= gpa; r = r->next)
		if (gpa - r->gpa < r->length)
			return r;
	return NULL;
}

static void unmap_aliases(struct pgt_offload *o)
{
	for (unsigned i = 0; i < o->nalias; i++)
		if (o->alias[i].map)
			munmap(o->alias[i].map, o->alias[i].len);
	free(o->alias);
	o->alias = NULL;
	o->nalias = 0;
}

static void drop_map(struct pgt_offload *o)
{
	pgt__ofl_map_fini(&o->map);
	for (uint32_t i = 0; i < o->ntg; i++) {
		struct pgt_region *r = o->tg[i].r;

		pthread_mutex_lock(&r->harvest_lock);
		atomic_fetch_sub(&r->offload_refs, 1);
		pthread_mutex_unlock(&r->harvest_lock);
		if (o->ltg) {
			free(o->ltg[i].bits);
			free(o->ltg[i].hot);
		}
	}
	free(o->tg);
	free(o->ltg);
	o->tg = NULL;
	o->ltg = NULL;
	o->ntg = 0;
	unmap_aliases(o);
	free(o->win);
	o->win = NULL;
	o->nwin = 0;
	o->nranges = 0;
	o->attached = false;
}

/*
 * Where a simulated device writes [off, off + len) of @r: through a second
 * mapping of the backing file when there is one, so the CPU's tracker does
 * not see the writes (DMA does not go through the CPU's page tables);
 * through the region itself otherwise.
 */
static uint8_t *dma_addr(struct pgt_offload *o, struct pgt_region *r, uint64_t off, uint64_t len,
			 struct ofl_alias *al)
{
	uint64_t ps = r->page_size, lo, hi;
	uint8_t *dma = NULL;
	void *p;

	if (r->fd >= 0) {
		lo = (r->fd_offset + off) & ~(ps - 1);
		hi = pgt__round_up(r->fd_offset + off + len, ps);
		p = mmap(NULL, hi - lo, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, (off_t)lo);
		if (p != MAP_FAILED) {
			al->map = p;
			al->len = hi - lo;
			return (uint8_t *)p + (r->fd_offset + off - lo);
		}
		pgt__log(o->eng, PGT_LOG_INFO, "offload %s: no second mapping of region %s (%s): "
			 "the device writes through the region", o->name, r->name, strerror(errno));
	} else if (r->backing == PGT_BACKING_DPDK &&
		   !pgt__dpdk_alias(r, off, len, &al->map, &al->len, &dma)) {
		return dma;
	}
	return r->addr + off;
}

/* One segment per (range, region) piece of @rg; targets are the regions. */
struct seg_list {
	struct pgt_ofl_seg *v;
	size_t n, cap;
};

static uint32_t target_of(struct pgt_offload *o, struct pgt_region *r)
{
	uint32_t t;

	for (t = 0; t < o->ntg && o->tg[t].r != r; t++)
		;
	if (t == o->ntg) {
		o->tg[t].r = r;
		o->ntg++;
		pthread_mutex_lock(&r->harvest_lock);
		atomic_fetch_add(&r->offload_refs, 1);
		pthread_mutex_unlock(&r->harvest_lock);
	}
	return t;
}

/* Room for one more segment and target (a target comes with a segment). */
static int seg_reserve(struct pgt_offload *o, struct seg_list *sl)
{
	struct pgt_ofl_seg *ns;
	struct ofl_target *nt;

	if (sl->n < sl->cap)
		return 0;
	ns = realloc(sl->v, 2 * sl->cap * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	sl->v = ns;
	nt = realloc(o->tg, 2 * sl->cap * sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	o->tg = nt;
	sl->cap *= 2;
	return 0;
}

/* Split @rg at region boundaries; every byte must be tracked guest memory. */
static int collect_segs(struct pgt_offload *o, const struct pgt_offload_range *rg, size_t n,
			struct seg_list *sl)
{
	struct pgt_engine *e = o->eng;
	bool dirty = o->caps.shape != PGT_OFFLOAD_HOTLIST;
	int ret = 0;

	pthread_rwlock_rdlock(&e->regions_lock);
	for (size_t i = 0; i < n && !ret; i++) {
		for (uint64_t done = 0, k; done < rg[i].length && !ret; done += k) {
			uint64_t gpa = rg[i].gpa + done;
			struct pgt_region *r = region_at(e, gpa);

			if (!r || (dirty && !r->dops)) {
				pgt__log(e, PGT_LOG_WARN, "offload %s: gpa %#llx is %s", o->name,
					 (unsigned long long)gpa,
					 r ? "in a region without dirty tracking" : "not guest memory");
				ret = -EINVAL;
				break;
			}
			k = r->gpa + r->length - gpa;
			if (k > rg[i].length - done)
				k = rg[i].length - done;
			ret = seg_reserve(o, sl);
			if (ret)
				break;
			sl->v[sl->n++] = (struct pgt_ofl_seg){
				.pfn = (rg[i].iova + done) >> PGT_OFL_PAGE_SHIFT,
				.npages = k >> PGT_OFL_PAGE_SHIFT,
				.slot_pfn = done >> PGT_OFL_PAGE_SHIFT,
				.off = gpa - r->gpa,
				.slot = rg[i].slot,
				.target = target_of(o, r),
			};
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
}

/* The per-target log bitmaps (and hotness counters for a hot list). */
static int alloc_targets(struct pgt_offload *o)
{
	bool dirty = o->caps.shape != PGT_OFFLOAD_HOTLIST;

	o->ltg = calloc(o->ntg, sizeof(*o->ltg));
	if (!o->ltg)
		return -ENOMEM;
	for (uint32_t t = 0; t < o->ntg; t++) {
		struct pgt_region *r = o->tg[t].r;

		o->ltg[t].npages = r->npages;
		o->ltg[t].shift = r->page_shift;
		o->ltg[t].bits = alloc_words((r->npages + 63) / 64);
		if (!dirty)
			o->ltg[t].hot = calloc(r->npages, sizeof(uint32_t));
		if (!o->ltg[t].bits || (!dirty && !o->ltg[t].hot))
			return -ENOMEM;
	}
	return 0;
}

/* The windows handed to the backend, in IOVA order as the map has its segments. */
static int fill_windows(struct pgt_offload *o, uint32_t nseg)
{
	o->win = calloc(nseg, sizeof(*o->win));
	o->alias = calloc(nseg, sizeof(*o->alias));
	if (!o->win || !o->alias)
		return -ENOMEM;
	o->nalias = nseg;
	for (uint32_t i = 0; i < nseg; i++) {
		const struct pgt_ofl_seg *s = &o->map.segs[i];
		struct pgt_region *r = o->tg[s->target].r;
		uint64_t len = s->npages << PGT_OFL_PAGE_SHIFT;

		o->win[i] = (struct pgt_ofl_win){
			.iova = s->pfn << PGT_OFL_PAGE_SHIFT, .len = len, .gpa = r->gpa + s->off,
			.slot = s->slot, .slot_off = s->slot_pfn << PGT_OFL_PAGE_SHIFT,
		};
		if (o->d.ops->dma)
			o->win[i].dma = dma_addr(o, r, s->off, len, &o->alias[i]);
	}
	o->nwin = nseg;
	return 0;
}

static int build_map(struct pgt_offload *o, struct pgt_offload_range *rg, size_t n)
{
	struct seg_list sl = { .cap = n + 8 };
	int ret;

	sl.v = malloc(sl.cap * sizeof(*sl.v));
	o->tg = calloc(sl.cap, sizeof(*o->tg));
	if (!sl.v || !o->tg) {
		free(sl.v);
		return -ENOMEM;
	}
	ret = collect_segs(o, rg, n, &sl);
	if (!ret)
		ret = alloc_targets(o);
	if (!ret)
		ret = pgt__ofl_map_init(&o->map, sl.v, (uint32_t)sl.n, o->ltg, o->ntg);
	if (!ret)
		ret = fill_windows(o, (uint32_t)sl.n);
	free(sl.v);
	return ret;
}

PGT_EXPORT int pgt_offload_attach(pgt_offload *o, const struct pgt_offload_range *ranges, size_t n)
{
	struct pgt_offload_range *rg;
	uint32_t *slots;
	int ret = 0;

	if (!o || !ranges || !n || n > MAX_RANGES)
		return -EINVAL;
	if (o->caps.max_ranges && n > o->caps.max_ranges)
		return -E2BIG;
	rg = malloc(n * sizeof(*rg));
	slots = malloc(n * sizeof(*slots));
	if (!rg || !slots) {
		free(rg);
		free(slots);
		return -ENOMEM;
	}
	memcpy(rg, ranges, n * sizeof(*rg));
	for (size_t i = 0; i < n && !ret; i++) {
		uint64_t end;

		if (!rg[i].length || rg[i].flags || ((rg[i].iova | rg[i].length | rg[i].gpa) & 4095) ||
		    __builtin_add_overflow(rg[i].iova, rg[i].length, &end) ||
		    __builtin_add_overflow(rg[i].gpa, rg[i].length, &end))
			ret = -EINVAL;
		slots[i] = rg[i].slot;
	}
	qsort(rg, n, sizeof(*rg), cmp_range_iova);
	qsort(slots, n, sizeof(*slots), cmp_slot);
	for (size_t i = 0; i + 1 < n && !ret; i++)
		if (rg[i].iova + rg[i].length > rg[i + 1].iova || slots[i] == slots[i + 1])
			ret = -EINVAL;
	free(slots);
	if (ret) {
		free(rg);
		return ret;
	}
	pthread_mutex_lock(&o->lock);
	if (o->started) {
		ret = -EBUSY;
		goto out;
	}
	if (o->attached) {
		o->d.ops->detach(&o->d);
		drop_map(o);
	}
	ret = build_map(o, rg, n);
	if (!ret)
		ret = o->d.ops->attach(&o->d, o->win, o->nwin);
	if (ret) {
		drop_map(o);
		goto out;
	}
	o->nranges = (uint32_t)n;
	o->attached = true;
out:
	pthread_mutex_unlock(&o->lock);
	free(rg);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Harvest                                                             */
/* ------------------------------------------------------------------ */

struct sinkctx {
	struct pgt_offload *o;
	struct pgt_ofl_stats *st;
	int err;
	uint64_t direct;        /* pages merged straight from device bitmaps */
};

/*
 * A bitmap at the region's own 4 KiB granularity, inside one segment and
 * word-aligned with the region's bitmap: the bits already are the region's
 * words, so they go to the views as they are, without the private bitmap
 * (one pass instead of three). Returns false when that does not hold.
 */
static bool bitmap_direct(struct sinkctx *c, uint64_t iova, uint64_t ps, const uint64_t *bits,
			  uint64_t nbits, bool take)
{
	struct pgt_ofl_map *m = &c->o->map;
	uint64_t pfn = iova >> PGT_OFL_PAGE_SHIFT, tp, n;
	const struct pgt_ofl_seg *s = NULL;

	if (ps != PGT_OFL_PAGE_SIZE_4K || nbits % 64 || c->o->caps.shape == PGT_OFFLOAD_HOTLIST)
		return false;
	for (uint32_t i = 0; i < m->nsegs; i++) /* few segments: a linear scan */
		if (pfn >= m->segs[i].pfn && pfn - m->segs[i].pfn < m->segs[i].npages) {
			s = &m->segs[i];
			break;
		}
	if (!s || s->pfn + s->npages - pfn < nbits || m->targets[s->target].shift != PGT_OFL_PAGE_SHIFT)
		return false;
	tp = (s->off >> PGT_OFL_PAGE_SHIFT) + (pfn - s->pfn);
	if (tp % 64)
		return false;
	/* the set bits: pages and records at once */
	if (take) /* the caller's bits are writable: see sink_bitmap_take() */
		n = pgt__dirty_take_words(c->o->tg[s->target].r, (uint64_t *)bits, (size_t)(tp / 64),
					  (size_t)(nbits / 64));
	else
		n = pgt__dirty_mark_words(c->o->tg[s->target].r, bits, (size_t)(tp / 64),
					  (size_t)(nbits / 64));
	c->st->records += n;
	c->direct += n;
	return true;
}

static void sink_bitmap(void *arg, uint64_t iova, uint64_t ps, const uint64_t *bits, uint64_t nbits)
{
	struct sinkctx *c = arg;

	if (!bitmap_direct(c, iova, ps, bits, nbits, false))
		pgt__ofl_bitmap(&c->o->map, iova, ps, bits, nbits, c->st);
}

/* A quiescent log: merged and zeroed, in one pass on the direct path. */
static void sink_bitmap_take(void *arg, uint64_t iova, uint64_t ps, uint64_t *bits, uint64_t nbits)
{
	struct sinkctx *c = arg;

	if (!bitmap_direct(c, iova, ps, bits, nbits, true)) {
		if (!pgt_hal_is_zero(bits, (size_t)((nbits + 7) / 8)))
			pgt__ofl_bitmap(&c->o->map, iova, ps, bits, nbits, c->st);
		memset(bits, 0, (size_t)((nbits + 7) / 8));
	}
}

static void sink_hot(void *arg, const uint64_t *e, size_t n, unsigned cbits, uint64_t unit)
{
	struct sinkctx *c = arg;

	pgt__ofl_hotlist(&c->o->map, e, n, cbits, unit, c->st);
}

static void sink_lost(void *arg, int err)
{
	struct sinkctx *c = arg;

	c->err = err;
	if (c->o->caps.shape != PGT_OFFLOAD_HOTLIST)
		pgt__ofl_mark_all(&c->o->map, c->st);
}

/* Merge the targets into the regions and clear them. Returns pages. */
static uint64_t merge(struct pgt_offload *o, const struct pgt_ofl_stats *st)
{
	uint64_t pages = 0;

	for (uint32_t i = 0; i < o->ntg; i++) {
		struct pgt_ofl_target *t = &o->ltg[i];

		if (t->hi <= t->lo)
			continue;
		if (o->caps.shape == PGT_OFFLOAD_HOTLIST) {
			int64_t n = pgt__age_hot(o->tg[i].r, t->bits, t->hot, t->lo, t->hi,
						 st->hot_units, st->hot_count);

			if (n > 0)
				pages += (uint64_t)n;
			memset(t->hot + t->lo * 64, 0,
			       ((t->hi * 64 < t->npages ? t->hi * 64 : t->npages) - t->lo * 64) *
				       sizeof(*t->hot));
		} else {
			pages += pgt__dirty_mark_words(o->tg[i].r, t->bits + t->lo, t->lo, t->hi - t->lo);
		}
	}
	pgt__ofl_targets_clear(&o->map);
	return pages;
}

/*
 * The device's counters are written only under o->lock and read anywhere:
 * a relaxed load and store will do, no locked add (tens of ns each on a
 * busy VM, a sixth of a 1 GiB bitmap merge).
 */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* o->lock held. */
static void account(struct pgt_offload *o, const struct pgt_ofl_stats *st, uint64_t pages,
		    int err, struct pgt_offload_harvest *h)
{
	stat_add(&o->records, st->records);
	stat_add(&o->pages, pages);
	if (st->rejected || st->torn || st->bad_index || st->lost || err) {
		stat_add(&o->rejected, st->rejected);
		stat_add(&o->torn, st->torn);
		stat_add(&o->bad_index, st->bad_index);
		stat_add(&o->lost, st->lost + st->torn + st->bad_index + (err != 0));
		stat_add(&o->device_errors, err != 0);
	}
	if (st->rejected || st->torn || st->bad_index || st->lost)
		pgt__log(o->eng, PGT_LOG_DEBUG, "offload %s: %llu rejected, %llu torn, %llu bad "
			 "index, %llu overflow%s", o->name, (unsigned long long)st->rejected,
			 (unsigned long long)st->torn, (unsigned long long)st->bad_index,
			 (unsigned long long)st->lost, st->all ? ": all pages dirty" : "");
	if (h) {
		h->records = st->records;
		h->pages = pages;
		h->rejected = st->rejected;
		h->all_dirty = st->all;
	}
}

/* dev->lock held. */
static int64_t harvest_locked(struct pgt_offload *o, uint32_t flags, uint64_t iova, uint64_t len,
			      struct pgt_offload_harvest *h)
{
	struct pgt_ofl_stats st = { 0 };
	struct sinkctx c = { o, &st, 0, 0 };
	const struct pgt_ofl_sink sink = {
		.arg = &c, .bitmap = sink_bitmap, .bitmap_take = sink_bitmap_take, .hot = sink_hot,
		.lost = sink_lost,
	};
	uint64_t pages;
	int ret = 0;

	if (!o->attached)
		return -ENOENT;
	stat_add(&o->harvests, 1);
	if (o->caps.shape == PGT_OFFLOAD_RING) {
		if (!o->nrings)
			return -ENOENT;
		for (unsigned i = 0; i < o->nrings; i++)
			pgt__ofl_ring_consume(&o->rings[i], &o->map, &st);
		/* KVM: reset what we took; until then the pages stay writable
		 * without being logged, so a failed reset loses track */
		ret = o->d.ops->harvest(&o->d, 0, 0, flags, &sink);
		if (ret)
			sink_lost(&c, ret);
	} else {
		if (!o->started)
			return -ENOENT;
		ret = o->d.ops->harvest(&o->d, iova, len, flags, &sink);
		if (ret && !c.err) /* an error the backend did not report as lost */
			sink_lost(&c, ret);
	}
	pages = merge(o, &st) + c.direct;
	account(o, &st, pages, ret, h);
	return ret ? ret : (int64_t)pages;
}

PGT_EXPORT int64_t pgt_offload_harvest(pgt_offload *o, struct pgt_offload_harvest *h)
{
	uint32_t flags = 0;
	uint64_t iova = 0, len = 0;
	int64_t ret;

	if (!o)
		return -EINVAL;
	if (h) {
		int r = pgt__arg_in(h, h->size, sizeof(*h), sizeof(*h));

		if (r)
			return r;
		if (h->flags & ~(uint32_t)PGT_OFFLOAD_HARVEST_UNMAP)
			return -EINVAL;
		flags = h->flags;
		iova = h->iova;
		len = h->length;
		if (len && iova + len < iova)
			return -EINVAL;
	}
	pthread_mutex_lock(&o->lock);
	ret = harvest_locked(o, flags, iova, len, h);
	pthread_mutex_unlock(&o->lock);
	return ret;
}

PGT_EXPORT int64_t pgt_offload_ingest(pgt_offload *o, const struct pgt_offload_rec *recs, size_t n,
				      struct pgt_offload_harvest *h)
{
	struct pgt_ofl_stats st = { 0 };
	uint64_t pages;

	if (!o || (!recs && n))
		return -EINVAL;
	if (h) {
		int r = pgt__arg_in(h, h->size, sizeof(*h), sizeof(*h));

		if (r)
			return r;
	}
	pthread_mutex_lock(&o->lock);
	if (!o->attached) {
		pthread_mutex_unlock(&o->lock);
		return -ENOENT;
	}
	pgt__ofl_ingest(&o->map, recs, n, &st);
	pages = merge(o, &st);
	account(o, &st, pages, 0, h);
	pthread_mutex_unlock(&o->lock);
	return (int64_t)pages;
}

int64_t pgt__offload_merge_bitmap(struct pgt_offload *o, uint64_t iova, uint64_t page_size,
				  const uint64_t *bits, uint64_t nbits)
{
	struct pgt_ofl_stats st = { 0 };
	struct sinkctx c = { o, &st, 0, 0 };
	uint64_t pages;

	pthread_mutex_lock(&o->lock);
	if (!o->attached) {
		pthread_mutex_unlock(&o->lock);
		return -ENOENT;
	}
	sink_bitmap(&c, iova, page_size, bits, nbits);
	pages = merge(o, &st) + c.direct;
	account(o, &st, pages, 0, NULL);
	pthread_mutex_unlock(&o->lock);
	return (int64_t)pages;
}

void pgt__offload_drain(struct pgt_region *r)
{
	struct pgt_engine *e = r->eng;

	pthread_mutex_lock(&e->offload_lock);
	for (struct pgt_offload *o = e->offload; o; o = o->next) {
		if (o->caps.shape == PGT_OFFLOAD_HOTLIST)
			continue;
		pthread_mutex_lock(&o->lock);
		for (uint32_t i = 0; i < o->ntg; i++) {
			if (o->tg[i].r != r)
				continue;
			if ((o->caps.shape == PGT_OFFLOAD_RING && o->nrings) || o->started)
				harvest_locked(o, 0, 0, 0, NULL);
			break;
		}
		pthread_mutex_unlock(&o->lock);
	}
	pthread_mutex_unlock(&e->offload_lock);
}

PGT_EXPORT int pgt_offload_pml_pack(const uint64_t *gpas, size_t n, unsigned src,
				    struct pgt_offload_rec *out, size_t cap)
{
	return pgt__ofl_pml_pack(gpas, n, src, out, cap);
}

/* ------------------------------------------------------------------ */
/* Start, stop, detach, close                                          */
/* ------------------------------------------------------------------ */

static int take_rings(struct pgt_offload *o)
{
	struct pgt_ofl_ring_desc *desc;
	int n = o->d.ops->rings(&o->d, NULL, 0), ret = 0;

	if (n <= 0 || n > MAX_RINGS)
		return n < 0 ? n : -EIO;
	if (o->nrings == (unsigned)n)
		return 0; /* a restart: the consumers keep their indices */
	desc = calloc((size_t)n, sizeof(*desc));
	free(o->rings);
	o->rings = calloc((size_t)n, sizeof(*o->rings));
	o->nrings = 0;
	if (!desc || !o->rings) {
		free(desc);
		return -ENOMEM;
	}
	n = o->d.ops->rings(&o->d, desc, (unsigned)n);
	for (int i = 0; i < n && !ret; i++)
		ret = desc[i].ctl ? pgt__ofl_ring_index(&o->rings[i], desc[i].ctl, desc[i].entries)
				  : pgt__ofl_ring_kvm(&o->rings[i], desc[i].recs, desc[i].entries);
	free(desc);
	if (!ret)
		o->nrings = (unsigned)n;
	return ret;
}

PGT_EXPORT int pgt_offload_start(pgt_offload *o, uint64_t page_size)
{
	uint64_t ps = page_size;
	int ret;

	if (!o || (ps && (ps < 256 || (ps & (ps - 1)))))
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	if (o->started) {
		ret = -EBUSY;
	} else if (!o->attached) {
		ret = -ENOENT;
	} else {
		ret = o->d.ops->start(&o->d, &ps);
		if (!ret && o->caps.shape == PGT_OFFLOAD_RING) {
			ret = take_rings(o);
			if (ret)
				o->d.ops->stop(&o->d);
		}
		if (!ret) {
			o->page_size = ps;
			o->started = true;
		}
	}
	pthread_mutex_unlock(&o->lock);
	return ret;
}

/*
 * What the device logged until now, into the views: a log that stopping or
 * detaching would drop (a VFIO/IOMMUFD REPORT is refused once logging
 * stops; a detached ring has no map) would leave pages the device wrote
 * unreported, stale at a migration's destination. A failed read makes
 * every attached page dirty, as any harvest does.
 */
static void final_harvest(struct pgt_offload *o)
{
	if (o->attached && (o->started || (o->caps.shape == PGT_OFFLOAD_RING && o->nrings)))
		harvest_locked(o, 0, 0, 0, NULL);
}

static int stop_locked(struct pgt_offload *o)
{
	int ret;

	if (!o->started)
		return -ENOENT;
	/* rings keep their records past the stop; logs must be read now */
	if (o->caps.shape != PGT_OFFLOAD_RING)
		final_harvest(o);
	ret = o->d.ops->stop(&o->d);
	o->started = false;
	return ret;
}

PGT_EXPORT int pgt_offload_stop(pgt_offload *o)
{
	int ret;

	if (!o)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	ret = stop_locked(o);
	pthread_mutex_unlock(&o->lock);
	return ret;
}

static void detach_locked(struct pgt_offload *o)
{
	/* stopped first: a ring's producer may write until then; a bitmap
	 * log is read inside stop_locked(), the records left here */
	if (o->started)
		stop_locked(o);
	final_harvest(o);
	if (o->attached) {
		o->d.ops->detach(&o->d);
		drop_map(o);
	}
}

PGT_EXPORT int pgt_offload_detach(pgt_offload *o)
{
	if (!o)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	detach_locked(o);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static void close_dev(struct pgt_offload *o)
{
	pthread_mutex_lock(&o->lock);
	detach_locked(o);
	o->d.ops->close(&o->d);
	pthread_mutex_unlock(&o->lock);
	if (o->mem)
		svc_free(o, o->mem, o->mem_len);
	free(o->rings);
	pthread_mutex_destroy(&o->lock);
	free(o->name);
	free(o);
}

PGT_EXPORT void pgt_offload_close(pgt_offload *o)
{
	if (!o)
		return;
	list_del(o->eng, o);
	close_dev(o);
}

void pgt__offload_close_all(struct pgt_engine *e)
{
	for (;;) {
		struct pgt_offload *o;

		pthread_mutex_lock(&e->offload_lock);
		o = e->offload;
		if (o)
			e->offload = o->next;
		pthread_mutex_unlock(&e->offload_lock);
		if (!o)
			break;
		pgt__log(e, PGT_LOG_WARN, "offload %s: still open at engine close: closed", o->name);
		close_dev(o);
	}
}

/* ------------------------------------------------------------------ */
/* Info                                                                */
/* ------------------------------------------------------------------ */

PGT_EXPORT int pgt_offload_info(const pgt_offload *co, struct pgt_offload_info *info)
{
	struct pgt_offload *o = (struct pgt_offload *)co;
	struct pgt_offload_info in;
	size_t fill;

	if (!o || !info || pgt__arg_out(info, info->size, sizeof(*info), sizeof(*info), &fill))
		return -EINVAL;
	memset(&in, 0, sizeof(in));
	in.size = sizeof(in);
	in.log_fd = -1;
	pthread_mutex_lock(&o->lock);
	in.started = o->started;
	in.backend = o->d.ops->name;
	in.shape = o->caps.shape;
	in.nranges = o->nranges;
	in.page_size = o->started ? o->page_size : 0;
	in.records = atomic_load(&o->records);
	in.pages = atomic_load(&o->pages);
	in.rejected = atomic_load(&o->rejected);
	in.lost = atomic_load(&o->lost);
	in.torn = atomic_load(&o->torn);
	in.bad_index = atomic_load(&o->bad_index);
	in.device_errors = atomic_load(&o->device_errors);
	in.harvests = atomic_load(&o->harvests);
	in.dma_writes = atomic_load(&o->d.dma_writes);
	if (o->d.ops->info && o->d.priv)
		o->d.ops->info(&o->d, &in);
	pthread_mutex_unlock(&o->lock);
	memcpy(info, &in, fill);
	return 0;
}

PGT_EXPORT int pgt_offload_region_ranges(const pgt_region *r, uint32_t slot0,
					 struct pgt_offload_range *out, size_t cap)
{
	int n;

	if (!r || (cap && !out))
		return -EINVAL;
	n = pgt__dpdk_iova_ranges(r, slot0, out, cap);
	if (n != -ENOENT)
		return n;
	if (cap)
		out[0] = (struct pgt_offload_range){
			.iova = r->gpa, .length = r->length, .gpa = r->gpa, .slot = slot0,
		};
	return 1;
}

PGT_EXPORT int pgt_offload_hot_histogram(const pgt_region *r, struct pgt_hot_histogram *h)
{
	if (!r || !h)
		return -EINVAL;
	return pgt__age_hot_histogram((struct pgt_region *)r, h);
}
