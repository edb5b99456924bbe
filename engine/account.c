/* SPDX-License-Identifier: MIT */
/*
 * Accounting: guest memory per region and NUMA node, the host's view of
 * this process (/proc/self/status, /proc/meminfo, the memory cgroup), and
 * an explanation reconciling them line by line.
 *
 * Why the numbers disagree, in short: hugetlb pages are counted in neither
 * VmRSS nor the memory cgroup; the VMM's own heap and libraries are in RSS
 * but are not guest memory; the cgroup adds page cache nobody maps, kernel
 * memory (page tables of guest RAM included) and other processes; shmem
 * guest RAM stays charged to the cgroup while it is not mapped; released
 * guest memory is in none of them. The host files are read below a root
 * directory so the unit tests can feed fixtures.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "hal/probe_pvt.h"

/* ------------------------------------------------------------------ */
/* Guest side                                                          */
/* ------------------------------------------------------------------ */

static struct pgt_mem_counts *node_slot(struct pgt_account *a, int node)
{
	if (node < 0 || node >= PGT_MAX_NODES)
		return &a->unknown_node;
	if ((uint32_t)node + 1 > a->nnodes)
		a->nnodes = (uint32_t)node + 1;
	return &a->node[node];
}

static void counts_add(struct pgt_mem_counts *d, const struct pgt_mem_counts *s)
{
	d->configured += s->configured;
	d->touched += s->touched;
	d->resident += s->resident;
	d->dirty += s->dirty;
	d->released += s->released;
	d->pinned += s->pinned;
	d->zero += s->zero;
	d->partial_hugepages += s->partial_hugepages;
	d->released_partial += s->released_partial;
}

static inline bool bit(const uint64_t *w, uint64_t i)
{
	return w[i / 64] >> (i % 64) & 1;
}

static inline uint64_t word_of(const struct pgt_bitmap *b, size_t w)
{
	return b->words && w < b->nwords ? atomic_load_explicit(&b->words[w], memory_order_relaxed)
					 : 0;
}

/* Node of every resident page, from the kernel (move_pages query). */
static int query_nodes(struct pgt_region *r, const uint64_t *res, int *node)
{
	enum { BATCH = 1024 };
	void *addrs[BATCH];
	int status[BATCH];
	uint64_t idx[BATCH];
	size_t n = 0;

	for (uint64_t p = 0; p <= r->npages; p++) {
		if (p < r->npages) {
			node[p] = -1;
			if (!bit(res, p))
				continue;
			addrs[n] = pgt__page_addr(r, p);
			idx[n++] = p;
			if (n < BATCH)
				continue;
		}
		if (!n)
			break;
		if (syscall(SYS_move_pages, 0, (unsigned long)n, addrs, NULL, status, 0))
			return -errno;
		for (size_t i = 0; i < n; i++)
			node[idx[i]] = status[i] >= 0 ? status[i] : -1;
		n = 0;
	}
	return 0;
}

/* What the kernel says of a region's pages, gathered before any lock. */
struct region_scan {
	uint64_t *res;      /* resident pages, one bit each */
	int64_t nres;
	int *nodes;         /* PGT_ACCOUNT_NUMA_EXACT: node of each page */
};

static int scan_region(struct pgt_region *r, uint32_t flags, struct region_scan *sc)
{
	int ret;

	sc->nodes = NULL;
	sc->res = calloc((r->npages + 63) / 64, sizeof(uint64_t));
	if (!sc->res)
		return -ENOMEM;
	sc->nres = pgt__resident(r, 0, r->npages, false, sc->res);
	if (sc->nres < 0)
		return (int)sc->nres;
	if (!(flags & PGT_ACCOUNT_NUMA_EXACT))
		return 0;
	sc->nodes = malloc(r->npages * sizeof(*sc->nodes));
	if (!sc->nodes)
		return -ENOMEM;
	ret = query_nodes(r, sc->res, sc->nodes);
	return ret;
}

/* The whole region counts on its node: word-wide popcounts. Locks held. */
static void count_whole(struct pgt_region *r, struct pgt_rel *rel, const struct region_scan *sc,
			struct pgt_mem_counts *c)
{
	uint64_t ps = r->page_size, touched = 0, dirty = 0, zero = 0;
	bool touch = pgt__touch_on(r);

	for (size_t w = 0; w < (r->npages + 63) / 64; w++) {
		uint64_t d = 0;

		for (struct pgt_dirty_view *v = r->views; v; v = v->next)
			d |= pgt__shardmap_word(&v->bm, w);
		dirty += (uint64_t)__builtin_popcountll(d);
		if (touch)
			touched += (uint64_t)__builtin_popcountll(word_of(&r->touched, w));
		zero += (uint64_t)__builtin_popcountll(word_of(&rel->zero, w) &
						       ~word_of(&rel->released, w));
	}
	c->configured = r->length;
	c->resident = (uint64_t)sc->nres * ps;
	c->touched = touch ? touched * ps : c->resident;
	c->dirty = dirty * ps;
	c->zero = zero * ps;
	c->released = pgt__rel_units(rel) << PGT_UNIT_SHIFT;
	c->pinned = rel->pinned_units << PGT_UNIT_SHIFT;
	c->partial_hugepages = rel->npartial;
	c->released_partial = rel->partial_units << PGT_UNIT_SHIFT;
}

/* Page by page: resident pages where the kernel says, the rest where the
 * region is bound. Locks held. @c gets the totals configured/resident. */
static void count_pages(struct pgt_region *r, struct pgt_rel *rel, const struct region_scan *sc,
			int rnode, struct pgt_account *out, struct pgt_mem_counts *c)
{
	uint64_t ps = r->page_size;
	bool touch = pgt__touch_on(r);

	for (uint64_t p = 0; p < r->npages; p++) {
		struct pgt_mem_counts *s = node_slot(out, sc->nodes[p] >= 0 ? sc->nodes[p] : rnode);
		uint64_t u0 = p << rel->sub_shift, rel_units;
		const struct pgt_sub *sub = rel->sub ? rel->sub[p] : NULL;
		bool d = false, resd = bit(sc->res, p);

		for (struct pgt_dirty_view *v = r->views; v && !d; v = v->next)
			d = pgt__shardmap_test(&v->bm, p);
		rel_units = pgt__bitmap_test(&rel->released, p) ? rel->upp : (sub ? sub->count : 0);
		s->configured += ps;
		s->resident += resd ? ps : 0;
		s->touched += (touch ? pgt__bitmap_test(&r->touched, p) : resd) ? ps : 0;
		s->dirty += d ? ps : 0;
		s->zero += rel->zero.words && pgt__bitmap_test(&rel->zero, p) &&
				   !pgt__bitmap_test(&rel->released, p) ? ps : 0;
		s->released += rel_units << PGT_UNIT_SHIFT;
		s->pinned += pgt__pin_count(rel, u0, rel->upp) << PGT_UNIT_SHIFT;
		s->partial_hugepages += sub ? 1 : 0;
		s->released_partial += sub ? (uint64_t)sub->count << PGT_UNIT_SHIFT : 0;
		c->configured += ps;
		c->resident += resd ? ps : 0;
	}
}

static int account_one(struct pgt_region *r, uint32_t flags, struct pgt_account *out)
{
	struct pgt_rel *rel = pgt__rel_get(r);
	struct region_scan sc = { 0 };
	struct pgt_mem_counts c = { 0 };
	bool collecting;
	int ret = rel ? scan_region(r, flags, &sc) : -ENOMEM;

	/* writers paused (soft-dirty) before any lock: see pgt__collect_begin */
	collecting = r->views != NULL;
	if (!ret && collecting)
		ret = pgt__collect_begin(r);
	if (ret) {
		free(sc.nodes);
		free(sc.res);
		return ret;
	}
	pthread_mutex_lock(&rel->lock);
	pgt__rel_sync_touch(r, rel);
	pthread_mutex_lock(&r->harvest_lock);
	/*
	 * Dirty = written since some view last harvested: collect what the
	 * kernel holds into the views first (nothing is lost: every view gets
	 * it at its next harvest). Without views nobody wants it: leave it.
	 */
	if (collecting && r->views && r->dops && r->dops_started)
		pgt__dirty_collect(r, false);
	if (!sc.nodes) {
		count_whole(r, rel, &sc, &c);
		counts_add(node_slot(out, pgt__region_node(r)), &c);
	} else {
		count_pages(r, rel, &sc, pgt__region_node(r), out, &c);
	}
	out->metadata += pgt__rel_bytes(rel);
	pthread_mutex_unlock(&r->harvest_lock);
	pthread_mutex_unlock(&rel->lock);
	if (collecting)
		pgt__collect_end(r);

	if (r->hugetlb || (!r->shared && r->page_size > pgt_hal_page_size()))
		out->resident_hugetlb += c.resident;
	else if (r->shared)
		out->resident_shmem += c.resident;
	else
		out->resident_anon += c.resident;
	free(sc.nodes);
	free(sc.res);
	return 0;
}

static void total_from_nodes(struct pgt_account *a)
{
	memset(&a->total, 0, sizeof(a->total));
	for (uint32_t i = 0; i < a->nnodes; i++)
		counts_add(&a->total, &a->node[i]);
	counts_add(&a->total, &a->unknown_node);
}

static int account_begin(struct pgt_account *out, uint32_t flags)
{
	int ret;

	if (!out || (flags & ~(uint32_t)PGT_ACCOUNT_NUMA_EXACT))
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(out, sizeof(*out))))
		return ret;
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	return 0;
}

PGT_EXPORT int pgt_account_region(pgt_region *r, uint32_t flags, struct pgt_account *out)
{
	int ret = r ? account_begin(out, flags) : -EINVAL;

	if (!ret)
		ret = account_one(r, flags, out);
	if (!ret)
		total_from_nodes(out);
	return ret;
}

PGT_EXPORT int pgt_account_engine(pgt_engine *e, uint32_t flags, struct pgt_account *out)
{
	int ret = e ? account_begin(out, flags) : -EINVAL;

	if (ret)
		return ret;
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r && !ret; r = r->next)
		ret = account_one(r, flags, out);
	pthread_rwlock_unlock(&e->regions_lock);
	if (!ret)
		total_from_nodes(out);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Host side                                                           */
/* ------------------------------------------------------------------ */

/*
 * Value of the line "<key><sep>number[ kB]" in @buf, bytes when the unit is
 * kB. Returns 0 or -ENOENT/-EBADMSG. Bounded by the NUL @buf ends with.
 */
int pgt__kv_get(const char *buf, const char *key, uint64_t *val)
{
	size_t kl = strlen(key);

	for (const char *line = buf; line && *line;) {
		const char *nl = strchr(line, '\n');

		if (!strncmp(line, key, kl) && (line[kl] == ':' || line[kl] == ' ')) {
			const char *p = line + kl + 1;
			uint64_t v = 0;
			int digits = 0;

			while (*p == ' ' || *p == '\t')
				p++;
			while (*p >= '0' && *p <= '9') {
				if (v > (UINT64_MAX - 9) / 10)
					return -EBADMSG;
				v = v * 10 + (uint64_t)(*p++ - '0');
				digits++;
			}
			if (!digits)
				return -EBADMSG;
			while (*p == ' ')
				p++;
			if (!strncmp(p, "kB", 2))
				v <<= 10;
			*val = v;
			return 0;
		}
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

#define HOSTBUF (64 * 1024)

struct cg_mount {
	char root[256];
	char point[256];
	bool found;
};

/* Field @n (0-based, space separated) of a mountinfo line into @out. */
static bool field(const char *line, const char *end, int n, char *out, size_t outsz)
{
	const char *p = line;

	for (int i = 0; i < n; i++) {
		p = memchr(p, ' ', (size_t)(end - p));
		if (!p)
			return false;
		p++;
	}
	const char *q = memchr(p, ' ', (size_t)(end - p));
	size_t len = (size_t)((q ? q : end) - p);

	if (len >= outsz)
		return false;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

/*
 * mountinfo: "id parent maj:min root point opts [optional...] - fstype src
 * superopts". Finds the cgroup2 mount and the v1 mount with the memory
 * controller.
 */
static void parse_mountinfo(const char *buf, struct cg_mount *v2, struct cg_mount *v1)
{
	for (const char *line = buf; line && *line;) {
		const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
		const char *dash = NULL;
		char fstype[32], super[256];

		for (const char *p = line; p + 3 <= end; p++)
			if (p[0] == ' ' && p[1] == '-' && p[2] == ' ') {
				dash = p + 3;
				break;
			}
		if (dash && field(dash, end, 0, fstype, sizeof(fstype))) {
			struct cg_mount *m = NULL;

			if (!strcmp(fstype, "cgroup2"))
				m = v2;
			else if (!strcmp(fstype, "cgroup") && field(dash, end, 2, super, sizeof(super)) &&
				 (strstr(super, ",memory") || !strncmp(super, "memory", 6)))
				m = v1;
			if (m && !m->found && field(line, end, 3, m->root, sizeof(m->root)) &&
			    field(line, end, 4, m->point, sizeof(m->point)))
				m->found = true;
		}
		line = nl ? nl + 1 : NULL;
	}
}

/* /proc/self/cgroup: the v2 path ("0::/x") and the v1 memory path. */
static void parse_proc_cgroup(const char *buf, char *p2, char *p1, size_t sz)
{
	p2[0] = p1[0] = '\0';
	for (const char *line = buf; line && *line;) {
		const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
		const char *c1 = memchr(line, ':', (size_t)(end - line));
		const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;

		if (c2) {
			size_t len = (size_t)(end - c2 - 1);
			char ctl[128];
			size_t cl = (size_t)(c2 - c1 - 1);

			if (cl < sizeof(ctl) && len < sz) {
				memcpy(ctl, c1 + 1, cl);
				ctl[cl] = '\0';
				if (!cl && !strncmp(line, "0:", 2)) {
					memcpy(p2, c2 + 1, len);
					p2[len] = '\0';
				} else {
					for (char *t = strtok(ctl, ","); t; t = strtok(NULL, ","))
						if (!strcmp(t, "memory")) {
							memcpy(p1, c2 + 1, len);
							p1[len] = '\0';
						}
				}
			}
		}
		line = nl ? nl + 1 : NULL;
	}
}

/* Directory of the cgroup: mount point + path relative to the mount root. */
static int cg_dir(char *out, size_t sz, const struct cg_mount *m, const char *path)
{
	size_t rl = strlen(m->root);
	int n;

	if (strcmp(m->root, "/") && !strncmp(path, m->root, rl) &&
	    (path[rl] == '/' || !path[rl]))
		path += rl;
	if (!strcmp(path, "/"))
		path = "";
	n = snprintf(out, sz, "%s%s", m->point, path);
	return n < 0 || (size_t)n >= sz ? -ENAMETOOLONG : 0;
}

static bool file_exists(const char *root, const char *rel)
{
	char path[1024];
	struct stat st;

	return !pgt__path(path, sizeof(path), root, rel) && !stat(path, &st);
}

static int read_in(const char *root, const char *dir, const char *name, char *buf, size_t cap)
{
	char rel[768];
	long n;

	if (snprintf(rel, sizeof(rel), "%s/%s", dir, name) >= (int)sizeof(rel))
		return -ENAMETOOLONG;
	n = pgt__read_file(root, rel, buf, cap);
	return n < 0 ? (int)n : 0;
}

static uint64_t kv_or0(const char *buf, const char *key)
{
	uint64_t v = 0;

	return pgt__kv_get(buf, key, &v) ? 0 : v;
}

static void read_cgroup(const char *root, char *buf, struct pgt_host_usage *u)
{
	struct cg_mount v2 = { .found = false }, v1 = { .found = false };
	char p2[256], p1[256], dir[600];
	uint64_t v;

	if (pgt__read_file(root, "/proc/self/cgroup", buf, HOSTBUF) < 0)
		goto fail;
	parse_proc_cgroup(buf, p2, p1, sizeof(p2));
	if (pgt__read_file(root, "/proc/self/mountinfo", buf, HOSTBUF) < 0)
		goto fail;
	parse_mountinfo(buf, &v2, &v1);

	/* v2, when its hierarchy has the memory controller */
	if (v2.found && p2[0] && !cg_dir(dir, sizeof(dir), &v2, p2)) {
		char f[700];

		snprintf(f, sizeof(f), "%s/memory.current", dir);
		if (!file_exists(root, f)) /* a cgroup namespace: the mount is the cgroup */
			snprintf(dir, sizeof(dir), "%s", v2.point);
		snprintf(f, sizeof(f), "%s/memory.current", dir);
		if (file_exists(root, f)) {
			u->cg_version = 2;
			snprintf(u->cg_path, sizeof(u->cg_path), "%s", p2);
			if (!read_in(root, dir, "memory.current", buf, HOSTBUF))
				pgt__parse_u64(buf, strlen(buf), &u->cg_usage);
			u->cg_limit = UINT64_MAX;
			if (!read_in(root, dir, "memory.max", buf, HOSTBUF) && strncmp(buf, "max", 3))
				pgt__parse_u64(buf, strlen(buf), &u->cg_limit);
			if (!read_in(root, dir, "memory.stat", buf, HOSTBUF)) {
				u->cg_anon = kv_or0(buf, "anon");
				u->cg_file = kv_or0(buf, "file");
				u->cg_shmem = kv_or0(buf, "shmem");
				u->cg_file_mapped = kv_or0(buf, "file_mapped");
				if (pgt__kv_get(buf, "kernel", &u->cg_kernel))
					u->cg_kernel = kv_or0(buf, "kernel_stack") + kv_or0(buf, "pagetables") +
						       kv_or0(buf, "sec_pagetables") + kv_or0(buf, "percpu") +
						       kv_or0(buf, "sock") + kv_or0(buf, "slab");
			}
			if (!read_in(root, dir, "hugetlb.2MB.current", buf, HOSTBUF))
				pgt__parse_u64(buf, strlen(buf), &u->cg_hugetlb);
			return;
		}
	}
	if (v1.found && p1[0] && !cg_dir(dir, sizeof(dir), &v1, p1)) {
		char f[700];

		snprintf(f, sizeof(f), "%s/memory.usage_in_bytes", dir);
		if (!file_exists(root, f))
			snprintf(dir, sizeof(dir), "%s", v1.point);
		snprintf(f, sizeof(f), "%s/memory.usage_in_bytes", dir);
		if (file_exists(root, f)) {
			u->cg_version = 1;
			snprintf(u->cg_path, sizeof(u->cg_path), "%s", p1);
			if (!read_in(root, dir, "memory.usage_in_bytes", buf, HOSTBUF))
				pgt__parse_u64(buf, strlen(buf), &u->cg_usage);
			u->cg_limit = UINT64_MAX;
			/* "unlimited" is PAGE_COUNTER_MAX pages: anything near 2^63 */
			if (!read_in(root, dir, "memory.limit_in_bytes", buf, HOSTBUF) &&
			    !pgt__parse_u64(buf, strlen(buf), &v) && v < (1ULL << 62))
				u->cg_limit = v;
			if (!read_in(root, dir, "memory.stat", buf, HOSTBUF)) {
				/* hierarchical totals match usage_in_bytes */
				bool tot = !pgt__kv_get(buf, "total_rss", &v);

				u->cg_anon = kv_or0(buf, tot ? "total_rss" : "rss");
				u->cg_file = kv_or0(buf, tot ? "total_cache" : "cache");
				u->cg_shmem = kv_or0(buf, tot ? "total_shmem" : "shmem");
				u->cg_file_mapped = kv_or0(buf, tot ? "total_mapped_file" : "mapped_file");
			}
			if (!read_in(root, dir, "memory.kmem.usage_in_bytes", buf, HOSTBUF))
				pgt__parse_u64(buf, strlen(buf), &u->cg_kernel);
			return;
		}
	}
fail:
	u->errors |= 4;
}

PGT_EXPORT int pgt_host_usage_root(const char *root, struct pgt_host_usage *u)
{
	char *buf;
	int ret;

	if (!u)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(u, sizeof(*u))))
		return ret;
	memset(u, 0, sizeof(*u));
	u->size = sizeof(*u);
	buf = malloc(HOSTBUF);
	if (!buf)
		return -ENOMEM;
	if (pgt__read_file(root, "/proc/self/status", buf, HOSTBUF) < 0) {
		free(buf);
		return -ENOENT;
	}
	if (pgt__kv_get(buf, "VmRSS", &u->rss))
		u->errors |= 1;
	u->rss_anon = kv_or0(buf, "RssAnon");
	u->rss_file = kv_or0(buf, "RssFile");
	u->rss_shmem = kv_or0(buf, "RssShmem");
	u->swap = kv_or0(buf, "VmSwap");
	u->hugetlb = kv_or0(buf, "HugetlbPages");
	if (pgt__read_file(root, "/proc/meminfo", buf, HOSTBUF) >= 0 &&
	    !pgt__kv_get(buf, "HugePages_Total", &u->hp_total)) {
		u->hp_free = kv_or0(buf, "HugePages_Free");
		u->hp_rsvd = kv_or0(buf, "HugePages_Rsvd");
		u->hp_size = kv_or0(buf, "Hugepagesize");
	} else {
		u->errors |= 2;
	}
	read_cgroup(root, buf, u);
	free(buf);
	return 0;
}

PGT_EXPORT int pgt_host_usage(struct pgt_host_usage *u)
{
	return pgt_host_usage_root(NULL, u);
}

/* ------------------------------------------------------------------ */
/* Explanation                                                         */
/* ------------------------------------------------------------------ */

struct lines {
	struct pgt_explain_line *v;
	size_t cap;
	int n;
};

static void __attribute__((format(printf, 4, 5)))
line(struct lines *l, const char *key, int64_t bytes, const char *fmt, ...)
{
	if ((size_t)l->n < l->cap) {
		struct pgt_explain_line *x = &l->v[l->n];
		va_list ap;

		snprintf(x->key, sizeof(x->key), "%s", key);
		x->bytes = bytes;
		va_start(ap, fmt);
		vsnprintf(x->text, sizeof(x->text), fmt, ap);
		va_end(ap);
	}
	l->n++;
}

static int64_t sub(uint64_t a, uint64_t b)
{
	return (int64_t)a - (int64_t)b;
}

PGT_EXPORT int pgt_explain(const struct pgt_account *g, const struct pgt_host_usage *h,
			   struct pgt_explain_line *lines, size_t cap)
{
	struct lines l = { lines, cap, 0 };
	uint64_t gres;

	int ret;

	if (!g || !h || (cap && !lines))
		return -EINVAL;
	if ((ret = PGT_ARG_IN(g, sizeof(*g))) || (ret = PGT_ARG_IN(h, sizeof(*h))))
		return ret;
	gres = g->resident_anon + g->resident_shmem + g->resident_hugetlb;

	/* the guest: configured = resident + released + the rest */
	line(&l, "guest", (int64_t)g->total.configured,
	     "guest memory configured = guest.resident + guest.released + guest.absent");
	line(&l, "guest.resident", (int64_t)gres, "guest pages in host RAM now");
	line(&l, "guest.released", (int64_t)(g->total.released - g->total.released_partial),
	     "given back by the guest and freed: in none of RSS, HugetlbPages, cgroup");
	line(&l, "guest.released.partial", (int64_t)g->total.released_partial,
	     "given back in 4 KiB pieces of large pages still in use: part of guest.resident "
	     "until the whole large page is free");
	line(&l, "guest.absent",
	     sub(g->total.configured, gres + g->total.released - g->total.released_partial),
	     "never touched (or swapped out): costs nothing yet but hugetlb reservations");

	/* the process: VmRSS = anon + file + shmem; hugetlb is outside it */
	line(&l, "rss", (int64_t)h->rss, "VmRSS of this process = rss.anon + rss.file + rss.shmem");
	line(&l, "rss.anon", (int64_t)h->rss_anon, "RssAnon = rss.anon.guest + rss.anon.vmm");
	line(&l, "rss.anon.guest", (int64_t)g->resident_anon,
	     "guest RAM in private anonymous memory (anon, THP regions)");
	line(&l, "rss.anon.vmm", sub(h->rss_anon, g->resident_anon),
	     "the VMM's own heap, stacks and pgtrack metadata (%llu bytes of it)",
	     (unsigned long long)g->metadata);
	line(&l, "rss.file", (int64_t)h->rss_file,
	     "RssFile: shared libraries and mapped files; no guest memory");
	line(&l, "rss.shmem", (int64_t)h->rss_shmem, "RssShmem = rss.shmem.guest + rss.shmem.other");
	line(&l, "rss.shmem.guest", (int64_t)g->resident_shmem,
	     "guest RAM in memfd/shmem regions (in the page cache)");
	line(&l, "rss.shmem.other", sub(h->rss_shmem, g->resident_shmem),
	     "other shared memory mapped here; negative: guest pages cached but not mapped");
	line(&l, "rss.lag", sub(h->rss, h->rss_anon + h->rss_file + h->rss_shmem),
	     "difference of VmRSS and its parts (per-CPU counter lag)");

	/* hugetlb */
	line(&l, "hugetlb", (int64_t)h->hugetlb,
	     "HugetlbPages of this process: in neither VmRSS nor cgroup memory usage");
	line(&l, "hugetlb.guest", (int64_t)g->resident_hugetlb, "guest RAM in hugetlb regions");
	line(&l, "hugetlb.other", sub(h->hugetlb, g->resident_hugetlb),
	     "other hugetlb mappings; negative: guest hugepages in the pool not mapped here");
	line(&l, "hugetlb.pool.free", (int64_t)(h->hp_free * h->hp_size),
	     "default pool: %llu of %llu pages free, %llu reserved (reserved pages are "
	     "promised to mappings, not yet used)",
	     (unsigned long long)h->hp_free, (unsigned long long)h->hp_total,
	     (unsigned long long)h->hp_rsvd);

	/* the cgroup: usage = anon + file + kernel + the rest */
	if (h->cg_version) {
		line(&l, "cg.usage", (int64_t)h->cg_usage,
		     "cgroup v%d %s usage (every process in it) = cg.anon + cg.file + cg.kernel + "
		     "cg.other", h->cg_version, h->cg_path);
		line(&l, "cg.anon", (int64_t)h->cg_anon, "anonymous memory charged to the cgroup");
		line(&l, "cg.anon.others", sub(h->cg_anon, h->rss_anon),
		     "cg.anon - rss.anon: other processes in the cgroup (negative: ours charged "
		     "elsewhere)");
		line(&l, "cg.file", (int64_t)h->cg_file,
		     "page cache charged, shmem/memfd guest RAM included even when unmapped");
		line(&l, "cg.file.unmapped", sub(h->cg_file, h->rss_file + h->rss_shmem),
		     "cg.file - rss.file - rss.shmem: cache nobody here maps (file I/O, other "
		     "processes, unmapped shmem)");
		line(&l, "cg.kernel", (int64_t)h->cg_kernel,
		     "kernel memory: slab, page tables (also those mapping guest RAM), sockets, "
		     "stacks; not in RSS");
		line(&l, "cg.other", sub(h->cg_usage, h->cg_anon + h->cg_file + h->cg_kernel),
		     "the rest of cg.usage (per-CPU caches, counters not in memory.stat)");
		if (h->cg_hugetlb)
			line(&l, "cg.hugetlb", (int64_t)h->cg_hugetlb,
			     "hugetlb controller: charged apart from memory usage");
		line(&l, "cg.usage-rss", sub(h->cg_usage, h->rss),
		     "why cgroup usage differs from RSS: unmapped cache, kernel memory, other "
		     "processes, minus what RSS counts outside the cgroup");
	} else {
		line(&l, "cg.none", 0, "no memory cgroup found for this process");
	}
	line(&l, "rss-guest", sub(h->rss, g->resident_anon + g->resident_shmem),
	     "VmRSS beyond guest RAM it holds: the VMM itself (hugetlb guest RAM is not in RSS)");
	return l.n;
}
