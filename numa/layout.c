/* SPDX-License-Identifier: MIT */
/*
 * Region layouts: which pages of a region go to which node (bind,
 * interleave, per-node extents), applying that with mbind, the shards of the
 * region's tracking state, and the per-shard counters.
 */
#include <errno.h>
#include <linux/mempolicy.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numa/numa_pvt.h"

#define MAX_EXTENTS 4096
#define MASK_LONGS 16

/* Node exists in the topology (or this host without a context) with memory. */
static int check_node(const struct pgt_numa *n, const char *name, int node)
{
	char list[128];

	if (node < 0 || node >= PGT_CPUSET_BITS) {
		pgt__numa_log(n, PGT_LOG_ERR, "region %s: NUMA node %d is not a node id", name, node);
		return -EINVAL;
	}
	if (!n) {
		if (!pgt__cpuset_isset(pgt__numa_host_mem_nodes(), (unsigned)node))
			return -EINVAL;
		return 0;
	}
	int i = pgt__topo_index(n->topo, node);

	if (i < 0) {
		struct pgt_cpuset ids = { { 0 } };

		for (unsigned k = 0; k < n->topo->nnodes; k++)
			pgt__cpuset_set(&ids, (unsigned)n->topo->nodes[k].id);
		pgt__numa_log(n, PGT_LOG_ERR, "region %s: NUMA node %d does not exist (nodes: %s)",
			      name, node, pgt__cpuset_format(&ids, list, sizeof(list)));
		return -EINVAL;
	}
	if (!n->topo->nodes[i].memory) {
		pgt__numa_log(n, PGT_LOG_ERR, "region %s: NUMA node %d has no memory", name, node);
		return -EINVAL;
	}
	return 0;
}

static int add_seg(struct pgt_numa_region *nr, uint64_t first, uint64_t npages, int node,
		   uint32_t flags)
{
	struct pgt_numa_seg *last = nr->nsegs ? &nr->segs[nr->nsegs - 1] : NULL;

	if (last && last->node == node && last->flags == flags && !flags &&
	    last->first + last->npages == first) {
		last->npages += npages;
		return 0;
	}
	struct pgt_numa_seg *s = realloc(nr->segs, (nr->nsegs + 1) * sizeof(*s));

	if (!s)
		return -ENOMEM;
	nr->segs = s;
	s[nr->nsegs++] = (struct pgt_numa_seg){ first, npages, node, flags };
	return 0;
}

static int build_extents(struct pgt_numa_region *nr, const struct pgt_numa_region_params *p)
{
	uint64_t next = p->gpa;
	int ret;

	if (!p->extents || !p->nextents || p->nextents > MAX_EXTENTS) {
		pgt__numa_log(nr->numa, PGT_LOG_ERR, "region %s: %u NUMA extents (1..%u needed)",
			      nr->name, p->nextents, MAX_EXTENTS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < p->nextents; i++) {
		const struct pgt_numa_extent *e = &p->extents[i];

		if (e->gpa != next || !e->len || (e->len & (p->page_size - 1)) || e->flags ||
		    e->len > p->gpa + p->length - e->gpa) {
			pgt__numa_log(nr->numa, PGT_LOG_ERR,
				      "region %s: NUMA extent %u [%#llx, +%#llx) must start at %#llx, be a non-zero multiple of the page size and stay inside the region",
				      nr->name, i, (unsigned long long)e->gpa,
				      (unsigned long long)e->len, (unsigned long long)next);
			return -EINVAL;
		}
		ret = check_node(nr->numa, nr->name, e->node);
		if (ret)
			return ret;
		ret = add_seg(nr, (e->gpa - p->gpa) >> nr->page_shift, e->len >> nr->page_shift,
			      e->node, 0);
		if (ret)
			return ret;
		next += e->len;
	}
	if (next != p->gpa + p->length) {
		pgt__numa_log(nr->numa, PGT_LOG_ERR,
			      "region %s: NUMA extents end at %#llx, the region at %#llx", nr->name,
			      (unsigned long long)next, (unsigned long long)(p->gpa + p->length));
		return -EINVAL;
	}
	return 0;
}

static int build_segs(struct pgt_numa_region *nr, const struct pgt_numa_region_params *p)
{
	uint32_t policy = p->policy;
	int ret;

	if (policy == PGT_NUMA_DEFAULT && p->numa_node >= 0)
		policy = PGT_NUMA_BIND;
	nr->policy = policy;
	switch (policy) {
	case PGT_NUMA_DEFAULT:
		return add_seg(nr, 0, nr->npages, -1, 0);
	case PGT_NUMA_BIND:
		ret = check_node(nr->numa, nr->name, p->numa_node);
		return ret ? ret : add_seg(nr, 0, nr->npages, p->numa_node, 0);
	case PGT_NUMA_INTERLEAVE:
		if (!p->nodemask) {
			pgt__numa_log(nr->numa, PGT_LOG_ERR, "region %s: empty interleave mask",
				      nr->name);
			return -EINVAL;
		}
		for (int b = 0; b < 64; b++) {
			if (!(p->nodemask >> b & 1))
				continue;
			ret = check_node(nr->numa, nr->name, b);
			if (ret)
				return ret;
		}
		nr->nodemask = p->nodemask;
		return add_seg(nr, 0, nr->npages, -1, PGT_EXTENT_INTERLEAVED);
	case PGT_NUMA_EXTENTS:
		return build_extents(nr, p);
	default:
		pgt__numa_log(nr->numa, PGT_LOG_ERR, "region %s: unknown NUMA policy %u", nr->name,
			      policy);
		return -EINVAL;
	}
}

int pgt__numa_shard_geometry(const struct pgt_numa *n, const struct pgt_numa_seg *segs,
			     unsigned nsegs, uint64_t npages, uint64_t nodemask,
			     struct pgt_shard_geom *out, unsigned cap)
{
	unsigned ns = 0, per_node[PGT_MAX_NODES + 1] = { 0 };

	for (unsigned i = 0; i < nsegs; i++) {
		const struct pgt_numa_seg *s = &segs[i];
		unsigned parts = 1;
		int nodes[64];

		if (s->flags & PGT_EXTENT_INTERLEAVED) {
			parts = 0;
			for (int b = 0; b < 64; b++)
				if (nodemask >> b & 1)
					nodes[parts++] = b;
			if (!parts)
				return -EINVAL;
		} else {
			nodes[0] = s->node;
		}
		for (unsigned k = 0; k < parts; k++) {
			/* boundaries rounded down to whole 64-page words */
			uint64_t start = (s->first + s->npages * k / parts) & ~63ULL;
			int node = nodes[k];

			if (ns && start <= out[ns - 1].first) {
				/*
				 * The previous part covers under 64 pages once
				 * rounded: a sliver. Its pages go to this part's
				 * node (at most 63 pages tracked off-node).
				 */
				out[ns - 1].node = node;
				if (ns > 1 && out[ns - 2].node == node &&
				    !(s->flags & PGT_EXTENT_INTERLEAVED))
					ns--;
				continue;
			}
			if (ns && out[ns - 1].node == node && !(s->flags & PGT_EXTENT_INTERLEAVED))
				continue; /* same node again after a dropped sliver */
			if (ns == cap)
				return -ENOSPC;
			out[ns] = (struct pgt_shard_geom){ ns ? start : 0, 0, node, -1 };
			ns++;
		}
	}
	if (!ns)
		return -EINVAL;
	for (unsigned i = 0; i < ns; i++) {
		unsigned slot = out[i].node >= 0 && out[i].node < PGT_MAX_NODES
				? (unsigned)out[i].node : PGT_MAX_NODES;

		out[i].npages = (i + 1 < ns ? out[i + 1].first : npages) - out[i].first;
		out[i].worker = ns > 1 ? pgt__numa_worker_for(n, out[i].node, per_node[slot]++) : -1;
	}
	return (int)ns;
}

int pgt__numa_region_init(struct pgt_numa *n, const struct pgt_numa_region_params *p,
			  struct pgt_numa_region **out)
{
	struct pgt_numa_region *nr;
	unsigned cap;
	int ret;

	*out = NULL;
	if (!p->page_size || (p->page_size & (p->page_size - 1)) || !p->length ||
	    (p->length & (p->page_size - 1)))
		return -EINVAL;
	nr = calloc(1, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	nr->numa = n;
	snprintf(nr->name, sizeof(nr->name), "%s", p->name ? p->name : "guest-ram");
	nr->addr = p->addr;
	nr->length = p->length;
	nr->gpa = p->gpa;
	nr->page_size = p->page_size;
	nr->page_shift = (unsigned)__builtin_ctzll(p->page_size);
	nr->npages = p->length >> nr->page_shift;
	ret = build_segs(nr, p);
	if (ret)
		goto err;
	cap = nr->nsegs * (nr->nodemask ? (unsigned)__builtin_popcountll(nr->nodemask) : 1);
	nr->shards = calloc(cap, sizeof(*nr->shards));
	if (!nr->shards) {
		ret = -ENOMEM;
		goto err;
	}
	ret = pgt__numa_shard_geometry(n, nr->segs, nr->nsegs, nr->npages, nr->nodemask,
				       nr->shards, cap);
	if (ret < 0)
		goto err;
	nr->nshards = (unsigned)ret;
	nr->ctr = calloc(nr->nshards, sizeof(*nr->ctr));
	if (!nr->ctr) {
		ret = -ENOMEM;
		goto err;
	}
	*out = nr;
	return 0;
err:
	pgt__numa_region_fini(nr);
	return ret;
}

void pgt__numa_region_fini(struct pgt_numa_region *nr)
{
	if (!nr)
		return;
	free(nr->segs);
	free(nr->shards);
	free(nr->ctr);
	free(nr);
}

/*
 * mbind each segment. Skipped for a topology that is not this machine's (its
 * nodes do not exist here) unless a test seam stands in for the syscalls.
 */
int pgt__numa_region_place(struct pgt_numa_region *nr)
{
	const struct pgt_numa *n = nr->numa;
	const struct pgt_numa_ops *ops = n ? &n->ops : &pgt__numa_sys_ops;
	bool sys = ops->mbind == pgt__numa_sys_ops.mbind;

	if (n && !n->topo->this_system && sys) {
		if (nr->policy != PGT_NUMA_DEFAULT)
			pgt__numa_log(n, PGT_LOG_INFO,
				      "region %s: NUMA %s not applied: the topology is not this machine's",
				      nr->name, pgt_numa_policy_name((int)nr->policy));
		return 0;
	}
	for (unsigned i = 0; i < nr->nsegs; i++) {
		const struct pgt_numa_seg *s = &nr->segs[i];
		unsigned long mask[MASK_LONGS] = { 0 };
		int mode, ret;

		if (s->flags & PGT_EXTENT_INTERLEAVED) {
			mask[0] = (unsigned long)nr->nodemask;
			mode = MPOL_INTERLEAVE;
		} else if (s->node >= 0) {
			mask[s->node / 64] = 1UL << (s->node % 64);
			mode = MPOL_BIND;
		} else {
			continue;
		}
		ret = ops->mbind(ops->arg, (char *)nr->addr + (s->first << nr->page_shift),
				 s->npages << nr->page_shift, mode, mask, MASK_LONGS * 64, 0);
		if (ret) {
			pgt__numa_log(n, PGT_LOG_ERR,
				      "region %s: mbind of pages %llu..%llu to %s %d: %s", nr->name,
				      (unsigned long long)s->first,
				      (unsigned long long)(s->first + s->npages - 1),
				      mode == MPOL_BIND ? "node" : "interleave mask",
				      mode == MPOL_BIND ? s->node : (int)nr->nodemask, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

unsigned pgt__numa_shard_of(const struct pgt_numa_region *nr, uint64_t page)
{
	unsigned lo = 0, hi = nr->nshards;

	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (nr->shards[mid].first <= page)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int pgt__numa_intended(const struct pgt_numa_region *nr, uint64_t page)
{
	unsigned lo = 0, hi = nr->nsegs;

	if (!hi)
		return -1;
	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (nr->segs[mid].first <= page)
			lo = mid;
		else
			hi = mid;
	}
	if (nr->segs[lo].flags & PGT_EXTENT_INTERLEAVED)
		return -2;
	return nr->segs[lo].node;
}

static void add_split(struct pgt_numa_region *nr, uint64_t first, uint64_t n, int64_t sign,
		      size_t field)
{
	if (!nr || first >= nr->npages)
		return;
	if (n > nr->npages - first)
		n = nr->npages - first;
	while (n) {
		unsigned k = pgt__numa_shard_of(nr, first);
		const struct pgt_shard_geom *g = &nr->shards[k];
		uint64_t c = g->first + g->npages - first < n ? g->first + g->npages - first : n;
		_Atomic uint64_t *ctr = (_Atomic uint64_t *)((char *)&nr->ctr[k] + field);

		atomic_fetch_add_explicit(ctr, (uint64_t)(sign * (int64_t)c), memory_order_relaxed);
		first += c;
		n -= c;
	}
}

void pgt__numa_note_dirty(struct pgt_numa_region *nr, uint64_t first, uint64_t n)
{
	add_split(nr, first, n, 1, offsetof(struct pgt_shard_ctr, dirty));
}

void pgt__numa_note_released(struct pgt_numa_region *nr, uint64_t first, uint64_t n,
			     bool released)
{
	add_split(nr, first, n, released ? 1 : -1, offsetof(struct pgt_shard_ctr, released));
}

void pgt__numa_note_touch(struct pgt_numa_region *nr, uint64_t page, int tid)
{
	int vnode, pnode;

	if (!nr || !nr->numa || tid <= 0 || page >= nr->npages || !nr->numa->nvcpus)
		return;
	vnode = pgt__numa_vcpu_node(nr->numa, tid);
	pnode = pgt__numa_intended(nr, page);
	if (pnode == -2) /* interleaved: the shard's node stands for it */
		pnode = nr->shards[pgt__numa_shard_of(nr, page)].node;
	if (vnode >= 0 && pnode >= 0 && vnode != pnode)
		atomic_fetch_add_explicit(&nr->ctr[pgt__numa_shard_of(nr, page)].remote_touch, 1,
					  memory_order_relaxed);
}

int pgt__numa_shardmap_init(struct pgt_shardmap *m, uint64_t nbits, const struct pgt_numa_region *nr)
{
	struct pgt_shard_geom one = { 0, nbits, -1, -1 };
	int ret;

	if (!nr || nr->npages != nbits || !nr->nshards)
		return pgt__shardmap_init_geom(m, nbits, &one, 1, NULL, NULL);
	ret = pgt__shardmap_init_geom(m, nbits, nr->shards, nr->nshards,
				      nr->numa ? &nr->numa->ops : NULL,
				      nr->numa ? nr->numa->workers : NULL);
	if (ret)
		return ret;
	for (unsigned i = 0; i < m->n; i++) {
		m->s[i].ctr = &nr->ctr[i];
		atomic_fetch_add_explicit(&nr->ctr[i].meta_bytes, pgt__bitmap_bytes(&m->s[i].bm),
					  memory_order_relaxed);
	}
	return 0;
}
