/* SPDX-License-Identifier: MIT */
/*
 * The public NUMA queries that take a region or an engine. The engine owns
 * regions; numa/ answers on their layouts (numa/placement.c), so nothing in
 * numa/ ever looks up into the engine.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_pvt.h"
#include "hal/export.h"
#include "lib/bits.h"

/*
 * The region's layout, or a temporary one from its bound node when it has
 * none (*temp: free it with pgt__numa_region_fini).
 */
static int region_layout(const struct pgt_region *r, struct pgt_numa_region **nr, bool *temp)
{
	struct pgt_numa_region_params p = {
		.addr = r->addr, .length = r->length, .gpa = r->gpa,
		.page_size = r->page_size, .name = r->name, .numa_node = r->numa_node,
	};
	int ret;

	*temp = false;
	*nr = r->numa;
	if (*nr)
		return 0;
	ret = pgt__numa_region_init(NULL, &p, nr);
	if (ret) { /* a node this host does not have: report it as unknown */
		p.numa_node = -1;
		ret = pgt__numa_region_init(NULL, &p, nr);
	}
	*temp = !ret;
	return ret;
}

static void layout_done(struct pgt_numa_region *nr, bool temp)
{
	if (temp)
		pgt__numa_region_fini(nr);
}

/* @fn on the region's layout (a temporary one if it has none). */
static int64_t on_layout(const struct pgt_region *r,
			 int64_t (*fn)(const struct pgt_numa_region *nr, void *arg), void *arg)
{
	struct pgt_numa_region *nr;
	bool temp;
	int64_t ret = region_layout(r, &nr, &temp);

	if (ret)
		return ret;
	ret = fn(nr, arg);
	layout_done(nr, temp);
	return ret;
}

struct out_cap {
	void *out;
	size_t cap;
};

static int64_t extents_of(const struct pgt_numa_region *nr, void *arg)
{
	struct out_cap *o = arg;

	return pgt__numa_region_extents(nr, o->out, o->cap);
}

static int64_t shards_of(const struct pgt_numa_region *nr, void *arg)
{
	struct out_cap *o = arg;

	return pgt__numa_region_shards(nr, o->out, o->cap);
}

static int64_t placement_of(const struct pgt_numa_region *nr, void *arg)
{
	return pgt__numa_region_placement(nr, arg);
}

PGT_EXPORT int pgt_region_numa_layout(const pgt_region *r, struct pgt_numa_extent *out,
				      size_t cap)
{
	struct out_cap o = { out, cap };

	if (!r || (!out && cap))
		return -EINVAL;
	return (int)on_layout(r, extents_of, &o);
}

PGT_EXPORT int pgt_region_numa_shards(const pgt_region *r, struct pgt_numa_shard_info *out,
				      size_t cap)
{
	struct out_cap o = { out, cap };

	if (!r || (!out && cap))
		return -EINVAL;
	return (int)on_layout(r, shards_of, &o);
}

PGT_EXPORT int64_t pgt_region_placement(pgt_region *r, struct pgt_placement *out)
{
	if (!r)
		return -EINVAL;
	return on_layout(r, placement_of, out);
}

static int region_stats(pgt_region *r, uint32_t flags, struct pgt_numa_stats *out)
{
	struct pgt_numa_region *nr;
	unsigned long *touched = NULL;
	bool temp;
	int ret;

	ret = region_layout(r, &nr, &temp);
	if (ret)
		return ret;
	if (r->track & PGT_TRACK_TOUCH) {
		size_t words = PGT_KVM_WORDS(r->npages);

		touched = calloc(words, sizeof(unsigned long));
		if (!touched)
			ret = -ENOMEM;
		else if (pgt_touched_bitmap(r, touched, words) < 0)
			memset(touched, 0, words * sizeof(unsigned long));
	}
	if (!ret)
		ret = pgt__numa_region_stats(nr, touched, flags, out);
	free(touched);
	layout_done(nr, temp);
	return ret;
}

PGT_EXPORT int pgt_region_numa_stats(pgt_region *r, uint32_t flags, struct pgt_numa_stats *out)
{
	int ret;

	if (!r || !out || (flags & ~(uint32_t)PGT_NUMA_STATS_MEASURE))
		return -EINVAL;
	ret = PGT_ARG_OUT(out, sizeof(*out));
	return ret ? ret : region_stats(r, flags, out);
}

PGT_EXPORT int pgt_engine_numa_stats(pgt_engine *e, uint32_t flags, struct pgt_numa_stats *out)
{
	struct pgt_numa_stats *one;
	int ret = 0, regions = 0;

	if (!e || !out || (flags & ~(uint32_t)PGT_NUMA_STATS_MEASURE))
		return -EINVAL;
	ret = PGT_ARG_OUT(out, sizeof(*out));
	if (ret)
		return ret;
	one = calloc(1, sizeof(*one));
	if (!one)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r && !ret; r = r->next) {
		one->size = sizeof(*one);
		ret = region_stats(r, flags, one);
		if (!ret) {
			pgt__numa_stats_add(out, one);
			regions++;
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);
	pgt__numa_stats_finish(out);
	free(one);
	return ret ? ret : regions;
}

PGT_EXPORT int pgt_numa_vcpu_set(pgt_engine *e, int tid, int node)
{
	int ret;

	if (!e)
		return -EINVAL;
	if (!e->numa)
		return -EOPNOTSUPP;
	ret = pgt__numa_vcpu_set(e->numa, tid, node);
	if (ret == -EINVAL)
		pgt__numa_log(e->numa, PGT_LOG_WARN, "vCPU %d: node %d does not exist", tid, node);
	return ret;
}
