/* SPDX-License-Identifier: MIT */
/*
 * Zero pages and write ages.
 *
 * Zero scan: resident pages only (a read of a hole would populate it, or
 * wake the first-touch handler), checked with the HAL's SIMD zero test.
 * Releasing what it finds is only safe while the guest cannot write: a write
 * between the check and the free would be lost. So it needs the caller's
 * word that the guest is paused, or the region's quiesce callback.
 *
 * Write age: an internal dirty view, harvested once per age epoch; each
 * page remembers the epoch of its last write and of its first touch (32-bit
 * epochs: 8 bytes per page, only while age tracking is on). This is a
 * host-side write working set: no guest driver involved.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "pgtrack/offload.h"

/* ------------------------------------------------------------------ */
/* Zero pages                                                          */
/* ------------------------------------------------------------------ */

struct zero_ctx {
	struct pgt_region *r;
	struct pgt_rel *rel;
	struct pgt_release_result res;
	uint64_t run_first, run_n;  /* pending run of zero units */
	int err;
};

static void zero_flush(struct zero_ctx *z)
{
	int64_t got;

	if (!z->run_n || z->err)
		return;
	got = pgt__rel_apply(z->r, z->rel, z->run_first, z->run_n, PGT_RELEASE_REPEAT_OK, &z->res,
			     NULL);
	if (got < 0)
		z->err = (int)got;
	z->run_n = 0;
}

static void zero_unit(struct zero_ctx *z, uint64_t u)
{
	if (z->run_n && z->run_first + z->run_n == u) {
		z->run_n++;
		return;
	}
	zero_flush(z);
	z->run_first = u;
	z->run_n = 1;
}

PGT_EXPORT int64_t pgt_zero_scan(pgt_region *r, uint32_t flags, struct pgt_zero_result *res)
{
	struct zero_ctx z = { .r = r, .res = { .size = sizeof(z.res) } };
	bool release = flags & PGT_ZERO_RELEASE, paused = false;
	uint64_t *resbm, zero = 0, scanned = 0;
	int64_t nres;
	int ret = 0;

	if (!r || (flags & ~(uint32_t)(PGT_ZERO_RELEASE | PGT_ZERO_PAUSED)))
		return -EINVAL;
	if (res && (ret = PGT_ARG_OUT(res, sizeof(*res))))
		return ret;
	if (release && !(flags & PGT_ZERO_PAUSED) && !r->quiesce)
		return -EBUSY;
	z.rel = pgt__rel_get(r);
	resbm = calloc((r->npages + 63) / 64, sizeof(uint64_t));
	if (!z.rel || !resbm) {
		free(resbm);
		return -ENOMEM;
	}
	if (release && !(flags & PGT_ZERO_PAUSED)) {
		ret = r->quiesce(r->quiesce_arg, true);
		if (ret) {
			free(resbm);
			return ret;
		}
		paused = true;
	}
	pthread_mutex_lock(&z.rel->lock);
	if (!z.rel->zero.words && (ret = pgt__bitmap_init(&z.rel->zero, r->npages)))
		goto out;
	pgt__bitmap_zero(&z.rel->zero);
	nres = pgt__resident(r, 0, r->npages, false, resbm);
	if (nres < 0) {
		ret = (int)nres;
		goto out;
	}
	for (uint64_t p = 0; p < r->npages && !z.err; p++) {
		const uint8_t *a = pgt__page_addr(r, p);
		uint64_t u0 = p << z.rel->sub_shift;
		bool pinned;

		if (!(resbm[p / 64] >> (p % 64) & 1))
			continue;
		scanned += r->page_size;
		pinned = pgt__bitmap_test(&z.rel->pinned, p);
		if (pgt_hal_is_zero(a, r->page_size)) {
			pgt__bitmap_set(&z.rel->zero, p);
			zero += r->page_size;
			if (!release)
				continue;
			for (uint64_t i = 0; i < z.rel->upp; i++)
				if (!pinned || !pgt__pin_test(z.rel, u0 + i))
					zero_unit(&z, u0 + i);
			continue;
		}
		if (z.rel->upp == 1)
			continue;
		/* a large page with some data: its zero pieces */
		for (uint64_t i = 0; i < z.rel->upp; i++) {
			if (!pgt_hal_is_zero(a + (i << PGT_UNIT_SHIFT), PGT_RELEASE_UNIT))
				continue;
			zero += PGT_RELEASE_UNIT;
			if (release && !(pinned && pgt__pin_test(z.rel, u0 + i)) &&
			    !pgt__rel_unit_released(r, z.rel, u0 + i))
				zero_unit(&z, u0 + i);
		}
	}
	zero_flush(&z);
	ret = z.err;
out:
	pthread_mutex_unlock(&z.rel->lock);
	if (paused)
		r->quiesce(r->quiesce_arg, false);
	free(resbm);
	if (ret)
		return ret;
	if (res) {
		res->scanned = scanned;
		res->zero = zero;
		res->released = z.res.released << PGT_UNIT_SHIFT;
	}
	return (int64_t)zero;
}

/* ------------------------------------------------------------------ */
/* Write age                                                           */
/* ------------------------------------------------------------------ */

struct pgt_age {
	pgt_dirty_view *view;
	uint32_t *last_write;   /* epoch of the last write, 0: none seen */
	uint32_t *first_touch;  /* epoch of the first touch, 0: none seen */
	unsigned long *bm;      /* harvest buffer */
	size_t words;
	uint64_t epoch;
	/* hotness from an offload device (CXL CHMU), lazily: the epoch a page
	 * was last reported hot (the epoch being filled: epoch + 1), 0: never */
	uint32_t *last_hot;
	uint64_t hot_units, hot_accesses;
};


static void age_free(struct pgt_age *a)
{
	if (!a)
		return;
	free(a->last_write);
	free(a->first_touch);
	free(a->bm);
	free(a->last_hot);
	free(a);
}

/* Region destroy: the view is freed with the region's other views. */
void pgt__age_fini(struct pgt_region *r, struct pgt_rel *rel)
{
	(void)r;
	age_free(rel->age);
	rel->age = NULL;
}

/* The age state of @rel with rel->lock held, or NULL (nothing held). */
static struct pgt_age *age_lock(struct pgt_rel *rel)
{
	struct pgt_age *a;

	if (!rel)
		return NULL;
	pthread_mutex_lock(&rel->lock);
	a = rel->age;
	if (!a)
		pthread_mutex_unlock(&rel->lock);
	return a;
}

size_t pgt__age_bytes(const struct pgt_rel *rel)
{
	const struct pgt_age *a = rel->age;

	if (!a)
		return 0;
	return sizeof(*a) + a->words * sizeof(unsigned long) +
	       (a->last_hot ? rel->released.nbits * sizeof(uint32_t) : 0) +
	       rel->released.nbits * 2 * sizeof(uint32_t) + sizeof(struct pgt_dirty_view) +
	       a->words * sizeof(unsigned long); /* the view's bitmap */
}

PGT_EXPORT int pgt_age_start(pgt_region *r)
{
	struct pgt_rel *rel;
	struct pgt_age *a;
	int ret;

	if (!r || !r->dops)
		return -EINVAL;
	rel = pgt__rel_get(r);
	if (!rel)
		return -ENOMEM;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->words = (r->npages + PGT_BITS_PER_LONG - 1) / PGT_BITS_PER_LONG;
	a->last_write = calloc(r->npages, sizeof(uint32_t));
	a->first_touch = calloc(r->npages, sizeof(uint32_t));
	a->bm = calloc(a->words, sizeof(unsigned long));
	if (!a->last_write || !a->first_touch || !a->bm) {
		age_free(a);
		return -ENOMEM;
	}
	pthread_mutex_lock(&rel->lock);
	if (rel->age) {
		ret = -EALREADY;
	} else {
		ret = pgt_dirty_view_open(r, &a->view);
		if (!ret)
			a->view->internal = true;
		if (!ret) {
			rel->age = a;
			a = NULL;
		}
	}
	pthread_mutex_unlock(&rel->lock);
	age_free(a);
	return ret;
}

PGT_EXPORT int pgt_age_stop(pgt_region *r)
{
	struct pgt_rel *rel = r ? pgt__rel_peek(r) : NULL;
	struct pgt_age *a;

	if (!rel)
		return -EINVAL;
	pthread_mutex_lock(&rel->lock);
	a = rel->age;
	rel->age = NULL;
	pthread_mutex_unlock(&rel->lock);
	if (!a)
		return -EINVAL;
	pgt_dirty_view_close(a->view);
	age_free(a);
	return 0;
}

PGT_EXPORT int64_t pgt_age_sample(pgt_region *r)
{
	struct pgt_rel *rel = r ? pgt__rel_peek(r) : NULL;
	struct pgt_harvest h = { .size = sizeof(h) };
	struct pgt_age *a;
	int64_t n;

	a = age_lock(rel);
	if (!a)
		return -EINVAL;
	h.bitmap = a->bm;
	h.bitmap_words = a->words;
	n = pgt_dirty_harvest(a->view, &h);
	if (n >= 0) {
		uint32_t e = (uint32_t)++a->epoch;
		bool touch = (r->track & PGT_TRACK_TOUCH) && r->tpriv && r->touched.words;

		for (size_t w = 0; w < a->words; w++) {
			unsigned long bits = a->bm[w];

			while (bits) {
				uint64_t p = w * PGT_BITS_PER_LONG + (uint64_t)__builtin_ctzl(bits);

				bits &= bits - 1;
				a->last_write[p] = e;
				if (!touch && !a->first_touch[p])
					a->first_touch[p] = e;
			}
		}
		if (touch) {
			for (size_t w = 0; w < r->touched.nwords; w++) {
				uint64_t bits = atomic_load_explicit(&r->touched.words[w],
								     memory_order_relaxed);

				while (bits) {
					uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

					bits &= bits - 1;
					if (!a->first_touch[p])
						a->first_touch[p] = e;
				}
			}
		}
	}
	pthread_mutex_unlock(&rel->lock);
	return n;
}

static unsigned age_bucket(uint64_t epoch, uint32_t stamp)
{
	uint64_t age;
	unsigned k;

	if (!stamp)
		return PGT_AGE_BUCKETS - 1;
	age = epoch - stamp;
	if (!age)
		return 0;
	k = 64 - (unsigned)__builtin_clzll(age); /* age in [2^(k-1), 2^k) */
	return k < PGT_AGE_BUCKETS - 1 ? k : PGT_AGE_BUCKETS - 2;
}

/* Add @r's histogram to @h; rel->lock held. Returns false without age. */
static bool age_add(struct pgt_region *r, struct pgt_rel *rel, struct pgt_age_histogram *h)
{
	struct pgt_age *a = rel->age;

	if (!a)
		return false;
	pgt__rel_sync_touch(r, rel);
	if (a->epoch > h->epoch)
		h->epoch = a->epoch;
	for (uint64_t p = 0; p < r->npages; p++) {
		if (pgt__bitmap_test(&rel->released, p))
			continue; /* given back: no age */
		h->pages++;
		h->write[age_bucket(a->epoch, a->last_write[p])]++;
		h->touch[age_bucket(a->epoch, a->first_touch[p])]++;
	}
	return true;
}

static int hist_begin(struct pgt_age_histogram *h)
{
	int ret;

	if (!h)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(h, sizeof(*h))))
		return ret;
	memset(h, 0, sizeof(*h));
	h->size = sizeof(*h);
	return 0;
}

PGT_EXPORT int pgt_age_histogram(const pgt_region *cr, struct pgt_age_histogram *h)
{
	struct pgt_region *r = (struct pgt_region *)cr;
	struct pgt_rel *rel = r ? pgt__rel_peek(r) : NULL;
	bool ok;

	if (!rel || hist_begin(h))
		return -EINVAL;
	h->node = pgt__region_node(r);
	pthread_mutex_lock(&rel->lock);
	ok = age_add(r, rel, h);
	pthread_mutex_unlock(&rel->lock);
	return ok ? 0 : -EINVAL;
}

PGT_EXPORT int pgt_age_histogram_node(pgt_engine *e, int node, struct pgt_age_histogram *h)
{
	int n = 0;

	if (!e || node < -1 || hist_begin(h))
		return -EINVAL;
	h->node = node;
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r; r = r->next) {
		struct pgt_rel *rel = pgt__rel_peek(r);

		if (!rel || (node >= 0 && pgt__region_node(r) != node))
			continue;
		pthread_mutex_lock(&rel->lock);
		n += age_add(r, rel, h);
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return n;
}

/* ------------------------------------------------------------------ */
/* Hotness (offload devices: include/pgtrack/offload.h)                */
/* ------------------------------------------------------------------ */

int64_t pgt__age_hot(struct pgt_region *r, const uint64_t *bits, const uint32_t *hot, size_t lo,
		     size_t hi, uint64_t units, uint64_t accesses)
{
	struct pgt_rel *rel = pgt__rel_peek(r);
	struct pgt_age *a;
	int64_t n = 0;

	(void)hot; /* the counts decided what is hot; the age view keeps when */
	if (!rel)
		return -EINVAL;
	pthread_mutex_lock(&rel->lock);
	a = rel->age;
	if (a && !a->last_hot)
		a->last_hot = calloc(r->npages, sizeof(uint32_t));
	if (!a || !a->last_hot) {
		pthread_mutex_unlock(&rel->lock);
		return a ? -ENOMEM : -EINVAL;
	}
	for (size_t w = lo; w < hi; w++) {
		for (uint64_t b = bits[w]; b; b &= b - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(b);

			if (p < r->npages) {
				a->last_hot[p] = (uint32_t)(a->epoch + 1);
				n++;
			}
		}
	}
	a->hot_units += units;
	a->hot_accesses += accesses;
	pthread_mutex_unlock(&rel->lock);
	return n;
}

int pgt__age_hot_histogram(struct pgt_region *r, struct pgt_hot_histogram *h)
{
	struct pgt_rel *rel = pgt__rel_peek(r);
	struct pgt_age *a;
	size_t fill;

	if (pgt__arg_out(h, h->size, sizeof(*h), sizeof(*h), &fill))
		return -EINVAL;
	a = age_lock(rel);
	if (!a)
		return -EINVAL;
	struct pgt_hot_histogram out = { .size = sizeof(out), .epoch = a->epoch,
					 .units = a->hot_units, .accesses = a->hot_accesses };

	for (uint64_t p = 0; p < r->npages; p++) {
		uint32_t st = a->last_hot ? a->last_hot[p] : 0;

		if (pgt__bitmap_test(&rel->released, p))
			continue;
		out.pages++;
		/* a stamp ahead of the epoch is this epoch's: age 0 */
		out.hot[!st ? PGT_AGE_BUCKETS - 1 : st > a->epoch ? 0 : age_bucket(a->epoch, st)]++;
	}
	pthread_mutex_unlock(&rel->lock);
	memcpy(h, &out, fill);
	return 0;
}
