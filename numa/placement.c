/* SPDX-License-Identifier: MIT */
/*
 * Where memory really is (move_pages with no target nodes: a query, nothing
 * moves), the layout and shards of tracked regions, and per-node accounting.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/export.h"
#include "numa/numa_pvt.h"

#define BATCH 1024

static_assert(sizeof(struct pgt_numa_node_stats) % sizeof(uint64_t) == 0,
	      "node stats are summed as an array of counters");

int pgt__numa_region_extents(const struct pgt_numa_region *nr, struct pgt_numa_extent *out,
			     size_t cap)
{
	size_t n = 0;

	for (unsigned i = 0; i < nr->nsegs; i++) {
		const struct pgt_numa_seg *s = &nr->segs[i];

		if (!(s->flags & PGT_EXTENT_INTERLEAVED)) {
			if (n < cap)
				out[n] = (struct pgt_numa_extent){
					nr->gpa + (s->first << nr->page_shift),
					s->npages << nr->page_shift, s->node, 0 };
			n++;
			continue;
		}
		for (unsigned k = 0; k < nr->nshards; k++) {
			const struct pgt_shard_geom *g = &nr->shards[k];

			if (g->first < s->first || g->first >= s->first + s->npages)
				continue;
			if (n < cap)
				out[n] = (struct pgt_numa_extent){
					nr->gpa + (g->first << nr->page_shift),
					g->npages << nr->page_shift, g->node,
					PGT_EXTENT_INTERLEAVED };
			n++;
		}
	}
	return (int)n;
}

int pgt__numa_region_shards(const struct pgt_numa_region *nr, struct pgt_numa_shard_info *out,
			    size_t cap)
{
	for (unsigned k = 0; k < nr->nshards && k < cap; k++) {
		const struct pgt_shard_geom *g = &nr->shards[k];
		const struct pgt_cpuset *cpus = NULL;

		out[k] = (struct pgt_numa_shard_info){
			.gpa = nr->gpa + (g->first << nr->page_shift),
			.len = g->npages << nr->page_shift,
			.node = g->node,
			.worker = g->worker,
		};
		if (nr->numa && g->worker >= 0)
			cpus = pgt__workers_cpus(nr->numa->workers, (unsigned)g->worker);
		if (cpus)
			pgt__cpuset_format(cpus, out[k].cpulist, sizeof(out[k].cpulist));
	}
	return (int)nr->nshards;
}

/* ---- move_pages queries ---- */

static bool in_mask(uint64_t mask, int node)
{
	return node >= 0 && node < 64 && (mask >> node & 1);
}

/*
 * The mappings of a process, read from /proc/PID/maps the first time a page
 * comes back -EFAULT. Kernels up to 6.1 at least look pages up for
 * move_pages with FOLL_DUMP, which gives -EFAULT for a page never touched in
 * an anonymous mapping, the same as for an address where nothing is mapped;
 * newer kernels say -ENOENT. A hole inside a mapping is an absent page.
 */
struct vmas {
	int pid;
	bool loaded;
	size_t n, cap;
	uint64_t (*r)[2];
};

static void vmas_load(struct vmas *v)
{
	char path[32], line[256];
	FILE *f;

	v->loaded = true;
	if (v->pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", v->pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		int c;

		/* the rest of a long line (a long path) */
		if (!strchr(line, '\n'))
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		if (sscanf(line, "%llx-%llx", &s, &e) != 2 || s >= e)
			continue;
		if (v->n == v->cap) {
			size_t cap = v->cap ? v->cap * 2 : 256;
			void *r = realloc(v->r, cap * sizeof(*v->r));

			if (!r)
				break;
			v->r = r;
			v->cap = cap;
		}
		v->r[v->n][0] = s;
		v->r[v->n][1] = e;
		v->n++;
	}
	fclose(f);
}

/* Whether @addr is inside a mapping (maps lists them in address order). */
static bool vmas_has(struct vmas *v, uint64_t addr)
{
	size_t lo = 0, hi;

	if (!v->loaded)
		vmas_load(v);
	hi = v->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < v->r[mid][0])
			hi = mid;
		else if (addr >= v->r[mid][1])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* Query pages [first, first + n) of @page_size at @addr into @status. */
static int query(struct vmas *v, uint64_t addr, uint64_t page_size, size_t n, int *status)
{
	void *pages[BATCH];
	int ret;

	for (size_t i = 0; i < n; i++) {
		pages[i] = (void *)(uintptr_t)(addr + i * page_size);
		status[i] = -EFAULT;
	}
	ret = pgt__numa_sys_ops.move_pages(NULL, v->pid, n, pages, NULL, status, 0);
	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (status[i] == -EFAULT && vmas_has(v, (uintptr_t)pages[i]))
			status[i] = -ENOENT;
	return 0;
}

static void count_page(struct pgt_placement *out, uint64_t idx, int st, bool misplaced)
{
	if (out->status && idx < out->status_cap)
		out->status[idx] = st;
	if (st >= 0) {
		out->resident++;
		if (st < PGT_MAX_NODES) {
			out->node_pages[st]++;
			if ((uint32_t)st + 1 > out->nnodes)
				out->nnodes = (uint32_t)st + 1;
		} else {
			out->unknown_node++;
		}
		out->misplaced += misplaced;
	} else if (st == -ENOENT) {
		out->absent++;
	} else {
		out->errors++;
	}
}

static int start_out(struct pgt_placement *out, uint64_t page_size)
{
	int32_t *status;
	size_t cap;
	int ret;

	if (!out)
		return -EINVAL;
	/* in and out: status/status_cap in, counts out */
	if ((ret = PGT_ARG_IN(out, sizeof(*out))))
		return ret;
	status = out->status;
	cap = out->status_cap;
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	out->status = status;
	out->status_cap = cap;
	out->page_size = page_size;
	return 0;
}

PGT_EXPORT int64_t pgt_placement_query(int pid, uint64_t addr, uint64_t len, uint64_t page_size,
				       int intended, struct pgt_placement *out)
{
	int status[BATCH];
	struct vmas v = { .pid = pid };
	uint64_t npages, done = 0;
	int ret;

	if (pid < 0 || page_size < 4096 || (page_size & (page_size - 1)) || !len ||
	    (addr & (page_size - 1)) || (len & (page_size - 1)) || addr + len < addr ||
	    intended < -1)
		return -EINVAL;
	ret = start_out(out, page_size);
	if (ret)
		return ret;
	npages = len / page_size;
	while (done < npages) {
		size_t n = npages - done < BATCH ? (size_t)(npages - done) : BATCH;

		ret = query(&v, addr + done * page_size, page_size, n, status);
		if (ret)
			break;
		for (size_t i = 0; i < n; i++)
			count_page(out, done + i, status[i], intended >= 0 && status[i] != intended);
		done += n;
	}
	free(v.r);
	if (ret)
		return ret;
	out->pages = npages;
	return (int64_t)npages;
}

/*
 * Walk a region's pages through move_pages: @fn gets each page's index, its
 * node or error, and the node it should be on (-1 any, -2 interleaved).
 */
typedef void (*page_fn)(void *arg, uint64_t page, int st, int intended);

static int walk_region(const struct pgt_numa_region *nr, page_fn fn, void *arg)
{
	int status[BATCH], ret = 0;
	struct vmas v = { .pid = 0 };

	for (uint64_t done = 0; done < nr->npages;) {
		size_t n = nr->npages - done < BATCH ? (size_t)(nr->npages - done) : BATCH;

		ret = query(&v, (uintptr_t)nr->addr + (done << nr->page_shift), nr->page_size, n,
			    status);
		if (ret)
			break;
		for (size_t i = 0; i < n; i++)
			fn(arg, done + i, status[i], pgt__numa_intended(nr, done + i));
		done += n;
	}
	free(v.r);
	return ret;
}

struct place_ctx {
	const struct pgt_numa_region *nr;
	struct pgt_placement *out;
};

static bool is_misplaced(const struct pgt_numa_region *nr, int st, int intended)
{
	if (st < 0)
		return false;
	if (intended == -2)
		return !in_mask(nr->nodemask, st);
	return intended >= 0 && st != intended;
}

static void place_page(void *arg, uint64_t page, int st, int intended)
{
	struct place_ctx *c = arg;

	count_page(c->out, page, st, is_misplaced(c->nr, st, intended));
}

int64_t pgt__numa_region_placement(const struct pgt_numa_region *nr, struct pgt_placement *out)
{
	struct place_ctx c;
	int ret = start_out(out, nr->page_size);

	if (!ret) {
		c = (struct place_ctx){ nr, out };
		ret = walk_region(nr, place_page, &c);
	}
	if (!ret)
		out->pages = nr->npages;
	return ret ? ret : (int64_t)nr->npages;
}

/* ---- per-node accounting ---- */

static struct pgt_numa_node_stats *slot(struct pgt_numa_stats *s, int node)
{
	if (node < 0 || node >= PGT_MAX_NODES)
		return &s->unknown;
	return &s->node[node];
}

static uint64_t popcount_kvm(const unsigned long *bm, uint64_t first, uint64_t n)
{
	uint64_t c = 0;

	while (n) {
		uint64_t w = first / 64, b = first % 64;
		uint64_t k = 64 - b < n ? 64 - b : n;
		uint64_t mask = k == 64 ? ~0ULL : ((1ULL << k) - 1) << b;

		c += (uint64_t)__builtin_popcountll((uint64_t)bm[w] & mask);
		first += k;
		n -= k;
	}
	return c;
}

struct acct_range {
	uint64_t first, npages;
	int node;
};

/* Accounting ranges: segments, and shards inside interleaved segments. */
static size_t acct_ranges(const struct pgt_numa_region *nr, struct acct_range *out)
{
	size_t n = 0;

	for (unsigned i = 0; i < nr->nsegs; i++) {
		const struct pgt_numa_seg *s = &nr->segs[i];

		if (!(s->flags & PGT_EXTENT_INTERLEAVED)) {
			out[n++] = (struct acct_range){ s->first, s->npages, s->node };
			continue;
		}
		for (unsigned k = 0; k < nr->nshards; k++) {
			const struct pgt_shard_geom *g = &nr->shards[k];
			uint64_t a = g->first > s->first ? g->first : s->first;
			uint64_t e1 = g->first + g->npages, e2 = s->first + s->npages;
			uint64_t b = e1 < e2 ? e1 : e2;

			if (a < b)
				out[n++] = (struct acct_range){ a, b - a, g->node };
		}
	}
	return n;
}

struct measure_ctx {
	const struct pgt_numa_region *nr;
	struct pgt_numa_stats *s;
};

static void measure_page(void *arg, uint64_t page, int st, int intended)
{
	struct measure_ctx *c = arg;

	if (st < 0)
		return;
	slot(c->s, st)->resident++;
	if (!is_misplaced(c->nr, st, intended))
		return;
	if (intended == -2)
		intended = c->nr->shards[pgt__numa_shard_of(c->nr, page)].node;
	slot(c->s, intended)->misplaced++;
}

static void add_node(struct pgt_numa_node_stats *d, const struct pgt_numa_node_stats *s)
{
	uint64_t *dv = (uint64_t *)d;
	const uint64_t *sv = (const uint64_t *)s;

	for (size_t k = 0; k < sizeof(*d) / sizeof(uint64_t); k++)
		dv[k] += sv[k];
}

void pgt__numa_stats_finish(struct pgt_numa_stats *s)
{
	s->nnodes = 0;
	for (unsigned i = 0; i < PGT_MAX_NODES; i++) {
		const uint64_t *v = (const uint64_t *)&s->node[i];

		for (size_t k = 0; k < sizeof(s->node[i]) / sizeof(uint64_t); k++)
			if (v[k])
				s->nnodes = i + 1;
	}
}

int pgt__numa_region_stats(const struct pgt_numa_region *nr, const unsigned long *touched,
			   uint32_t flags, struct pgt_numa_stats *out)
{
	struct acct_range *ranges;
	size_t nranges;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	ranges = calloc((size_t)nr->nsegs + nr->nshards, sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	nranges = acct_ranges(nr, ranges);
	for (size_t i = 0; i < nranges; i++) {
		struct pgt_numa_node_stats *ns = slot(out, ranges[i].node);

		ns->pages += ranges[i].npages;
		if (touched)
			ns->touched += popcount_kvm(touched, ranges[i].first, ranges[i].npages);
	}
	for (unsigned k = 0; k < nr->nshards; k++) {
		struct pgt_numa_node_stats *ns = slot(out, nr->shards[k].node);
		struct pgt_shard_ctr *c = &nr->ctr[k];

		ns->shards++;
		ns->dirty_reported += atomic_load_explicit(&c->dirty, memory_order_relaxed);
		ns->released += atomic_load_explicit(&c->released, memory_order_relaxed);
		ns->remote_touch += atomic_load_explicit(&c->remote_touch, memory_order_relaxed);
		ns->harvest_ns += atomic_load_explicit(&c->harvest_ns, memory_order_relaxed);
		ns->metadata_bytes += atomic_load_explicit(&c->meta_bytes, memory_order_relaxed);
	}
	if (flags & PGT_NUMA_STATS_MEASURE) {
		struct measure_ctx mc = { nr, out };

		ret = walk_region(nr, measure_page, &mc);
	}
	pgt__numa_stats_finish(out);
	free(ranges);
	return ret;
}

void pgt__numa_stats_add(struct pgt_numa_stats *sum, const struct pgt_numa_stats *one)
{
	add_node(&sum->unknown, &one->unknown);
	for (unsigned i = 0; i < PGT_MAX_NODES; i++)
		add_node(&sum->node[i], &one->node[i]);
}
