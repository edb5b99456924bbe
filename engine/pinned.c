/* SPDX-License-Identifier: MIT */
/*
 * Pinned pages and the safe balloon size.
 *
 * Pins are kept as a sorted list of unit ranges with a reference count, the
 * shape DMA mappings have (map and unmap the same range, possibly nested);
 * a page-granular bitmap says which backing pages hold any pinned unit, so
 * the release path only searches the list for pages that need it. Pins are
 * rare and few; everything here is O(pins).
 *
 * Discovered pins come from /proc/self/smaps: a VMA with the "lo" flag
 * (mlock, MAP_LOCKED) is pinned in memory; MADV_DONTNEED on it fails with
 * EINVAL anyway. Discovery replaces the previous discovery's pins.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/release_pvt.h"
#include "hal/export.h"

void pgt__pin_fini(struct pgt_rel *rel)
{
	free(rel->pins);
	rel->pins = NULL;
	rel->npins = rel->pins_cap = 0;
}

bool pgt__pin_test(const struct pgt_rel *rel, uint64_t u)
{
	for (size_t i = 0; i < rel->npins && rel->pins[i].first <= u; i++)
		if (u - rel->pins[i].first < rel->pins[i].n)
			return true;
	return false;
}

/* Size of (union of pins) ∩ [u0, u0 + n). Pins are sorted by first. */
uint64_t pgt__pin_count(const struct pgt_rel *rel, uint64_t u0, uint64_t n)
{
	uint64_t end = u0 + n, cur = u0, cnt = 0;

	for (size_t i = 0; i < rel->npins && rel->pins[i].first < end; i++) {
		uint64_t a = rel->pins[i].first, b = a + rel->pins[i].n;

		if (a < cur)
			a = cur;
		if (b > end)
			b = end;
		if (b > a) {
			cnt += b - a;
			cur = b;
		}
	}
	return cnt;
}

/* Rebuild the page bitmap and the union size after a change. */
static void pins_rebuild(struct pgt_rel *rel)
{
	pgt__bitmap_zero(&rel->pinned);
	for (size_t i = 0; i < rel->npins; i++) {
		uint64_t f = rel->pins[i].first >> rel->sub_shift;
		uint64_t l = (rel->pins[i].first + rel->pins[i].n - 1) >> rel->sub_shift;

		pgt__bitmap_set_range(&rel->pinned, f, l - f + 1);
	}
	rel->pinned_units = pgt__pin_count(rel, 0, rel->nunits);
}

static int pin_add(struct pgt_rel *rel, uint64_t first, uint64_t n, bool discovered)
{
	size_t i;

	for (i = 0; i < rel->npins; i++) {
		struct pgt_pin *p = &rel->pins[i];

		if (p->first == first && p->n == n && p->discovered == discovered) {
			p->refs++;
			return 0;
		}
		if (p->first > first)
			break;
	}
	if (rel->npins == rel->pins_cap) {
		size_t cap = rel->pins_cap ? rel->pins_cap * 2 : 16;
		struct pgt_pin *np = realloc(rel->pins, cap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		rel->pins = np;
		rel->pins_cap = cap;
	}
	memmove(&rel->pins[i + 1], &rel->pins[i], (rel->npins - i) * sizeof(*rel->pins));
	rel->pins[i] = (struct pgt_pin){ first, n, 1, discovered };
	rel->npins++;
	return 0;
}

static int64_t pin_fn(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
		      void *arg)
{
	bool pin = *(bool *)arg;
	int ret;

	if (pin) {
		ret = pin_add(rel, u0, n, false);
		if (!ret) {
			/* A device mapping populates what it maps. */
			uint64_t back = pgt__rel_reclaim(r, rel, u0, n);

			if (back)
				pgt__log(r->eng, PGT_LOG_INFO,
					 "region %s: pinning %llu released unit(s) takes them back",
					 r->name, (unsigned long long)back);
		}
	} else {
		ret = -ENOENT;
		for (size_t i = 0; i < rel->npins; i++) {
			struct pgt_pin *p = &rel->pins[i];

			if (p->first != u0 || p->n != n || p->discovered)
				continue;
			if (--p->refs == 0) {
				memmove(p, p + 1, (rel->npins - i - 1) * sizeof(*p));
				rel->npins--;
			}
			ret = 0;
			break;
		}
	}
	if (!ret)
		pins_rebuild(rel);
	return ret;
}

static int pin_op(pgt_engine *e, uint64_t gpa, uint64_t len, bool pin)
{
	return (int)pgt__rel_with(e, gpa, len, true, pin_fn, &pin);
}

PGT_EXPORT int pgt_pin(pgt_engine *e, uint64_t gpa, uint64_t len)
{
	return pin_op(e, gpa, len, true);
}

PGT_EXPORT int pgt_unpin(pgt_engine *e, uint64_t gpa, uint64_t len)
{
	return pin_op(e, gpa, len, false);
}

static int64_t pinned_fn(struct pgt_region *r, struct pgt_rel *rel, uint64_t u0, uint64_t n,
			 void *arg)
{
	(void)r;
	(void)n;
	(void)arg;
	return pgt__pin_test(rel, u0);
}

PGT_EXPORT int pgt_pinned_test(pgt_engine *e, uint64_t gpa)
{
	return (int)pgt__rel_with(e, gpa & ~(PGT_RELEASE_UNIT - 1), PGT_RELEASE_UNIT, false,
				  pinned_fn, NULL);
}

PGT_EXPORT int64_t pgt_pinned_count(const pgt_region *cr)
{
	struct pgt_rel *rel;
	uint64_t n;

	if (!cr)
		return -EINVAL;
	rel = pgt__rel_peek(cr);
	if (!rel)
		return 0;
	pthread_mutex_lock(&rel->lock);
	n = rel->pinned_units;
	pthread_mutex_unlock(&rel->lock);
	return (int64_t)n;
}

/* ------------------------------------------------------------------ */
/* Discovery from /proc/self/smaps                                     */
/* ------------------------------------------------------------------ */

struct locked_vmas {
	uint64_t (*v)[2];
	size_t n, cap;
	bool oom;
};

static void add_locked(void *arg, uint64_t start, uint64_t end)
{
	struct locked_vmas *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *nv = realloc(l->v, cap * sizeof(*l->v));

		if (!nv) {
			l->oom = true;
			return;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n][0] = start;
	l->v[l->n][1] = end;
	l->n++;
}

PGT_EXPORT int64_t pgt_pinned_discover(pgt_engine *e)
{
	struct locked_vmas l = { 0 };
	uint64_t total = 0;
	char *buf = NULL;
	size_t len = 0;
	int ret;

	if (!e)
		return -EINVAL;
	ret = pgt__read_smaps(&buf, &len);
	if (ret)
		return ret;
	pgt__parse_smaps_locked(buf, len, add_locked, &l);
	free(buf);
	if (l.oom) {
		free(l.v);
		return -ENOMEM;
	}
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r && !ret; r = r->next) {
		uint64_t base = (uintptr_t)r->addr, rend = base + r->length;
		struct pgt_rel *rel = pgt__rel_get(r);
		size_t keep = 0;

		if (!rel) {
			ret = -ENOMEM;
			break;
		}
		pthread_mutex_lock(&rel->lock);
		for (size_t i = 0; i < rel->npins; i++)
			if (!rel->pins[i].discovered)
				rel->pins[keep++] = rel->pins[i];
		rel->npins = keep;
		for (size_t i = 0; i < l.n && !ret; i++) {
			uint64_t a = l.v[i][0] > base ? l.v[i][0] : base;
			uint64_t b = l.v[i][1] < rend ? l.v[i][1] : rend;

			if (b <= a)
				continue;
			ret = pin_add(rel, (a - base) >> PGT_UNIT_SHIFT,
				      (b - a + PGT_RELEASE_UNIT - 1) >> PGT_UNIT_SHIFT, true);
		}
		pins_rebuild(rel);
		for (size_t i = 0; i < rel->npins; i++)
			if (rel->pins[i].discovered)
				total += pgt__pin_count(rel, rel->pins[i].first, rel->pins[i].n);
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_rwlock_unlock(&e->regions_lock);
	free(l.v);
	return ret ? ret : (int64_t)total;
}

/* ------------------------------------------------------------------ */
/* Balloon limit                                                       */
/* ------------------------------------------------------------------ */

/*
 * Units of @r that can be ballooned and would free host memory: not
 * released, not pinned, and for large pages not in a page holding a pin
 * (its other pieces would never free anything). rel->lock held.
 */
static void region_reclaimable(struct pgt_region *r, struct pgt_rel *rel, uint64_t *reclaim,
			       uint64_t *pinned)
{
	uint64_t unreleased, stuck = 0;

	pgt__rel_sync_touch(r, rel);
	unreleased = rel->nunits - pgt__rel_units(rel);
	if (rel->upp == 1) {
		stuck = rel->pinned_units;
	} else {
		for (size_t w = 0; w < rel->pinned.nwords; w++) {
			uint64_t bits = atomic_load_explicit(&rel->pinned.words[w],
							     memory_order_relaxed);

			while (bits) {
				uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
				const struct pgt_sub *s = rel->sub ? rel->sub[p] : NULL;

				bits &= bits - 1;
				stuck += rel->upp - (s ? s->count : 0);
			}
		}
	}
	*pinned = stuck;
	*reclaim = unreleased > stuck ? unreleased - stuck : 0;
}

PGT_EXPORT int pgt_balloon_limit(pgt_engine *e, const struct pgt_balloon_params *p,
				 struct pgt_balloon_limit *out)
{
	uint64_t node_units[PGT_MAX_NODES] = { 0 }, unknown = 0, reclaim = 0;
	uint64_t configured = 0, released = 0, pinned = 0, kept;
	uint32_t nnodes = 0;

	int ret;

	if (!e || !out)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(out, sizeof(*out))) || (p && (ret = PGT_ARG_IN(p, sizeof(*p)))))
		return ret;
	if (p && p->headroom_permille > 1000)
		return -EINVAL;
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r; r = r->next) {
		struct pgt_rel *rel = pgt__rel_peek(r);
		uint64_t rc, pn;
		int node = pgt__region_node(r);

		configured += r->length >> PGT_UNIT_SHIFT;
		if (rel) {
			pthread_mutex_lock(&rel->lock);
			region_reclaimable(r, rel, &rc, &pn);
			released += pgt__rel_units(rel);
			pthread_mutex_unlock(&rel->lock);
		} else {
			rc = r->length >> PGT_UNIT_SHIFT;
			pn = 0;
		}
		pinned += pn;
		reclaim += rc;
		if (node >= 0 && node < PGT_MAX_NODES) {
			node_units[node] += rc;
			if ((uint32_t)node + 1 > nnodes)
				nnodes = (uint32_t)node + 1;
		} else {
			unknown += rc;
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);

	kept = 0;
	if (p) {
		kept = (p->reserve_bytes + p->headroom_bytes + PGT_RELEASE_UNIT - 1) >> PGT_UNIT_SHIFT;
		kept += (configured * p->headroom_permille + 999) / 1000;
	}
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	out->nnodes = nnodes;
	out->configured = configured << PGT_UNIT_SHIFT;
	out->released = released << PGT_UNIT_SHIFT;
	out->pinned = pinned << PGT_UNIT_SHIFT;
	out->kept = kept << PGT_UNIT_SHIFT;
	if (reclaim <= kept)
		return 0;
	out->limit = (reclaim - kept) << PGT_UNIT_SHIFT;
	/* Take what is kept from every node in proportion to what it has,
	 * rounding each node down, so the parts never exceed the total. */
	for (uint32_t i = 0; i < nnodes; i++) {
		uint64_t take = (uint64_t)((unsigned __int128)kept * node_units[i] / reclaim);

		out->node_limit[i] = (node_units[i] - (take < node_units[i] ? take : node_units[i]))
				     << PGT_UNIT_SHIFT;
		if (take < node_units[i] && (unsigned __int128)kept * node_units[i] % reclaim)
			out->node_limit[i] -= PGT_RELEASE_UNIT;
	}
	{
		uint64_t take = (uint64_t)((unsigned __int128)kept * unknown / reclaim);

		out->unknown_node = take < unknown ? (unknown - take) << PGT_UNIT_SHIFT : 0;
		if (take < unknown && (unsigned __int128)kept * unknown % reclaim)
			out->unknown_node -= PGT_RELEASE_UNIT;
	}
	return 0;
}
