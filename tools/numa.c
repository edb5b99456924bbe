/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-numa: where is this VM's memory? For any process (a QEMU, a
 * pgtrack-sim, anything): its guest RAM per mapping and per NUMA node (size,
 * resident, hugepage backing, node placement from move_pages and numa_maps,
 * misplacement), hugepage pools per node, and how top's RSS, the cgroup's
 * usage and the guest's view fit together. --demo shows the same for a
 * region pgtrack tracks, with touched/dirty/released; so does --pid for a
 * process with libpgtrack-attach in it (a QEMU started with LD_PRELOAD),
 * from the state file the library keeps. --prometheus serves it all on
 * /metrics. Uses the public API only (plus json-c and libpgtool).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <pgtrack.h>

#include "tools/lib/pgtool.h"

#define MAX_RANGES 16
#define MAX_GUEST 64
#define SVG_COLS 1024

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s --pid PID [options]\n"
		"       %s --demo SIZE [options]\n"
		"Where is a VM's memory: per mapping and per NUMA node.\n"
		"\n"
		"  -p, --pid PID          process to inspect (a QEMU, pgtrack-sim, anything)\n"
		"  -r, --range START-END  guest RAM range (hex with 0x, or decimal; repeatable);\n"
		"                         default: found automatically (largest hugetlb or\n"
		"                         shared mappings, else largest private anonymous)\n"
		"  -m, --min-size SIZE    smallest mapping taken automatically (default 64M)\n"
		"  -a, --all              list every mapping of the process too\n"
		"  -j, --json             one JSON document on stdout (sizes in bytes)\n"
		"  -w, --watch SECONDS    refresh every SECONDS (JSON: one document per line)\n"
		"  -n, --count N          with --watch: stop after N reports\n"
		"  -s, --svg FILE         write a per-node map of the guest address space\n"
		"  -d, --demo SIZE        track SIZE of memory with pgtrack in this process\n"
		"                         (bound to node 0, half touched) and report it with\n"
		"                         pgtrack's touched/dirty/released counts\n"
		"  -P, --prometheus PORT  serve /metrics on 127.0.0.1:PORT (0: any free port)\n"
		"                         until interrupted; each scrape measures anew\n"
		"  -h, --help             show this help\n"
		"\n"
		"A process running libpgtrack-attach (LD_PRELOAD=libpgtrack-attach.so qemu-...)\n"
		"gets pgtrack's own lines: touched, dirty rate, written, released.\n"
		"SIZE accepts K, M, G suffixes. Exit status: 0 ok, 1 the process or its\n"
		"memory could not be read, 2 usage error.\n",
		prog, prog);
}

/* ---- options ---- */

struct range {
	uint64_t start, end;
};

struct opts {
	int pid;
	bool json, all;
	unsigned watch;
	long count;
	int prometheus;         /* port, -1 none */
	const char *svg;
	uint64_t demo;
	uint64_t min_size;
	unsigned nranges;
	struct range ranges[MAX_RANGES];
};

static const char *prog = "pgtrack-numa";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	char buf[64], *end;
	unsigned long long v;
	unsigned shift = 0;
	size_t n;

	if (!s || !*s || strlen(s) >= sizeof(buf) || *s == '-' || *s == '+')
		return -EINVAL;
	strcpy(buf, s);
	n = strlen(buf);
	switch (buf[n - 1]) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: break;
	}
	if (shift)
		buf[n - 1] = 0;
	errno = 0;
	v = strtoull(buf, &end, 0);
	if (errno || *end || end == buf || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_range(const char *s, struct range *r)
{
	char buf[64];
	char *dash;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (!dash)
		return -EINVAL;
	*dash = 0;
	if (parse_u64(buf, &r->start) || parse_u64(dash + 1, &r->end))
		return -EINVAL;
	if (r->end <= r->start || (r->start & 4095) || (r->end & 4095))
		return -EINVAL;
	return 0;
}

/* ---- formatting ---- */

static const char *hsize(uint64_t v, char *buf, size_t n)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double d = (double)v;
	unsigned u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%" PRIu64 " B", v);
	else
		snprintf(buf, n, "%.1f %s", d, unit[u]);
	return buf;
}

#define HS(v) hsize((v), (char[24]){ 0 }, 24)

/* ---- the process: status and cgroup ---- */

struct proc_usage {
	char comm[64];
	uint64_t rss, rss_anon, rss_file, rss_shmem, hugetlb, swap, locked;
	bool have_status;
	int cg_version;
	char cg_path[512];
	uint64_t cg_usage, cg_limit, cg_anon, cg_file, cg_shmem, cg_kernel;
	bool cg_have_limit, cg_have_stat;
};

static bool status_kb(const char *line, const char *key, uint64_t *out)
{
	size_t k = strlen(key);
	unsigned long long v;

	if (strncmp(line, key, k) || line[k] != ':')
		return false;
	if (sscanf(line + k + 1, " %llu kB", &v) == 1 && v < (UINT64_MAX >> 10))
		*out = (uint64_t)v << 10;
	return true;
}

static int read_u64_file(const char *path, uint64_t *out, bool *is_max)
{
	char buf[64];
	FILE *f = fopen(path, "re");
	unsigned long long v;
	int ok;

	if (!f)
		return -errno;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return -EBADMSG;
	if (is_max)
		*is_max = !strncmp(buf, "max", 3);
	if (is_max && *is_max)
		return 0;
	if (sscanf(buf, "%llu", &v) != 1)
		return -EBADMSG;
	*out = v;
	return 0;
}

static void read_cgroup(int pid, struct proc_usage *u)
{
	char path[1024], line[1024], base[600];
	FILE *f;
	bool v1 = false;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':'), *q;

		if (!p || !(q = strchr(p + 1, ':')))
			continue;
		q[strcspn(q, "\n")] = 0;
		if (!strncmp(line, "0::", 3)) {
			snprintf(u->cg_path, sizeof(u->cg_path), "%s", q + 1);
			u->cg_version = 2;
		} else if (strstr(p, ":memory:") == p || strstr(p, ",memory") || strstr(p, "memory,")) {
			snprintf(u->cg_path, sizeof(u->cg_path), "%s", q + 1);
			u->cg_version = 1;
			v1 = true;
			break;
		}
	}
	fclose(f);
	if (!u->cg_version)
		return;
	snprintf(base, sizeof(base), "/sys/fs/cgroup%s%s", v1 ? "/memory" : "", u->cg_path);
	snprintf(path, sizeof(path), "%s/%s", base, v1 ? "memory.usage_in_bytes" : "memory.current");
	if (read_u64_file(path, &u->cg_usage, NULL)) {
		u->cg_version = -u->cg_version; /* found, not readable */
		return;
	}
	bool is_max = false;

	snprintf(path, sizeof(path), "%s/%s", base, v1 ? "memory.limit_in_bytes" : "memory.max");
	if (!read_u64_file(path, &u->cg_limit, &is_max) && !is_max &&
	    u->cg_limit < (1ULL << 60))
		u->cg_have_limit = true;
	snprintf(path, sizeof(path), "%s/memory.stat", base);
	f = fopen(path, "re");
	if (!f)
		return;
	uint64_t slab = 0, stack = 0, pt = 0, sock = 0, kernel = 0;

	while (fgets(line, sizeof(line), f)) {
		char key[64];
		unsigned long long v;

		if (sscanf(line, "%63s %llu", key, &v) != 2)
			continue;
		if (!strcmp(key, v1 ? "rss" : "anon"))
			u->cg_anon = v;
		else if (!strcmp(key, v1 ? "cache" : "file"))
			u->cg_file = v;
		else if (!strcmp(key, "shmem"))
			u->cg_shmem = v;
		else if (!strcmp(key, "kernel"))
			kernel = v;
		else if (!strcmp(key, "slab"))
			slab = v;
		else if (!strcmp(key, "kernel_stack"))
			stack = v;
		else if (!strcmp(key, "pagetables"))
			pt = v;
		else if (!strcmp(key, "sock"))
			sock = v;
	}
	fclose(f);
	u->cg_kernel = kernel ? kernel : slab + stack + pt + sock;
	u->cg_have_stat = true;
}

static int read_usage(int pid, struct proc_usage *u)
{
	char path[64], line[256];
	FILE *f;

	memset(u, 0, sizeof(*u));
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Name:", 5)) {
			char *p = line + 5;

			p += strspn(p, " \t");
			p[strcspn(p, "\n")] = 0;
			snprintf(u->comm, sizeof(u->comm), "%s", p);
			continue;
		}
		if (status_kb(line, "VmRSS", &u->rss) || status_kb(line, "RssAnon", &u->rss_anon) ||
		    status_kb(line, "RssFile", &u->rss_file) ||
		    status_kb(line, "RssShmem", &u->rss_shmem) ||
		    status_kb(line, "HugetlbPages", &u->hugetlb) ||
		    status_kb(line, "VmSwap", &u->swap))
			continue;
		status_kb(line, "VmLck", &u->locked);
	}
	fclose(f);
	u->have_status = true;
	read_cgroup(pid, u);
	return 0;
}

/* ---- guest memory ---- */

/* pgtrack's own view of a guest range: a region of --demo, or one that
 * libpgtrack-attach tracks in the process (source "attach"). Bytes. */
struct tracked {
	bool on;
	const char *source;     /* "demo" or "attach" */
	int64_t touched;        /* -1 unknown */
	int64_t released;       /* -1 unknown */
	uint64_t dirty_last;    /* in the last harvest (demo) */
	double rate[3];         /* attach: dirty bytes/s over 1, 10, 60 s; -1 unknown */
	uint64_t dirty_total;   /* attach: cumulative */
	double window_s;        /* attach: memory written within the last window_s */
	uint64_t written;
	const char *method;
	struct pgt_numa_stats ns;
};

struct guest {
	uint64_t start, end, page_size;
	const struct pgtool_mapping *m;
	struct pgtool_mapping joined; /* m, when the range spans several mappings */
	const char *source;
	int intended;           /* bound node, -1 */
	uint64_t mask;          /* interleave/bind mask, 0: none */
	struct pgt_placement pl;
	int64_t queried;        /* pages, or -errno */
	uint64_t misplaced;
	int32_t *status;
	struct tracked *tr;
};

/* "bind:0", "bind=static:0-1", "interleave:0-3", "prefer:1", "default". */
static void parse_policy(const char *pol, int *intended, uint64_t *mask)
{
	const char *c = strchr(pol, ':');
	uint64_t m = 0;

	*intended = -1;
	*mask = 0;
	if (!c)
		return;
	for (const char *p = c + 1; *p;) {
		char *end;
		unsigned long a = strtoul(p, &end, 10), b;

		if (end == p)
			return;
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtoul(p, &end, 10);
			if (end == p)
				return;
		}
		for (unsigned long i = a; i <= b && i < 64; i++)
			m |= 1ULL << i;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end)
			return;
	}
	if (!strncmp(pol, "bind", 4) || !strncmp(pol, "prefer", 6) ||
	    !strncmp(pol, "interleave", 10) || !strncmp(pol, "weighted", 8)) {
		*mask = m;
		if (m && !(m & (m - 1)) && strncmp(pol, "interleave", 10) &&
		    strncmp(pol, "weighted", 8))
			*intended = __builtin_ctzll(m);
	}
}

static int query_guest(int pid, struct guest *g, bool want_status)
{
	uint64_t npages = (g->end - g->start) / g->page_size;

	g->pl = (struct pgt_placement){ .size = sizeof(g->pl) };
	if (want_status) {
		free(g->status);
		g->status = calloc(npages, sizeof(int32_t));
		g->pl.status = g->status;
		g->pl.status_cap = g->status ? npages : 0;
	}
	g->queried = pgt_placement_query(pid, g->start, g->end - g->start, g->page_size,
					 g->intended, &g->pl);
	if (g->queried < 0)
		return (int)g->queried;
	g->misplaced = g->pl.misplaced;
	if (g->intended < 0 && g->mask) {
		g->misplaced = 0;
		for (unsigned n = 0; n < g->pl.nnodes; n++)
			if (!(g->mask >> n & 1))
				g->misplaced += g->pl.node_pages[n];
	}
	return 0;
}

/*
 * Whether mapping @b continues @a's memory: the same page size, policy and
 * kind. mprotect dirty tracking splits a region into a VMA per protected
 * run; a range is one guest however many VMAs the kernel keeps for it.
 */
static bool same_memory(const struct pgtool_mapping *a, const struct pgtool_mapping *b)
{
	const uint32_t kind = PGTOOL_MAP_HUGETLB | PGTOOL_MAP_SHARED;

	return a->end == b->start && a->page_size == b->page_size &&
	       (a->flags & kind) == (b->flags & kind) && !strcmp(a->policy, b->policy) &&
	       !strcmp(a->name, b->name);
}

/* Extend guest @g over mapping @m (up to @end), summing the smaps counters. */
static void join(struct guest *g, const struct pgtool_mapping *m, uint64_t end)
{
	struct pgtool_mapping *j = &g->joined;

	if (g->m != j) {
		*j = *g->m;
		g->m = j;
	}
	j->end = m->end;
	j->rss += m->rss;
	j->pss += m->pss;
	j->anon += m->anon;
	j->anon_huge += m->anon_huge;
	j->pmd_mapped += m->pmd_mapped;
	j->hugetlb += m->hugetlb;
	j->swap += m->swap;
	j->locked += m->locked;
	j->referenced += m->referenced;
	for (unsigned n = 0; n < m->nnodes && n < PGT_MAX_NODES; n++)
		j->node_bytes[n] += m->node_bytes[n];
	if (m->nnodes > j->nnodes)
		j->nnodes = m->nnodes;
	g->end = m->end < end ? m->end : end;
}

static int find_guests(const struct opts *o, const pgtool_procmap *pm, struct guest *gs,
		       unsigned *ng, const struct range *demo, const struct pgtool_attach_state *att)
{
	size_t idx[MAX_GUEST];
	unsigned n = 0;

	if (!demo && !o->nranges && att && att->nregions) {
		/* the attach library knows which mappings are guest RAM */
		for (unsigned k = 0; k < att->nregions && n < MAX_GUEST; k++) {
			const struct pgtool_attach_region *a = &att->region[k];

			for (size_t i = 0; i < pgtool_procmap_count(pm); i++) {
				const struct pgtool_mapping *m = pgtool_procmap_get(pm, i);

				if (!(m->flags & PGTOOL_MAP_SMAPS) || m->start > a->start ||
				    m->end <= a->start)
					continue;
				gs[n] = (struct guest){ .start = a->start,
							.end = m->end < a->end ? m->end : a->end,
							.m = m, .source = "attach" };
				/* one mapping the kernel keeps as several VMAs */
				for (size_t j = i + 1; j < pgtool_procmap_count(pm) && gs[n].end < a->end &&
				     same_memory(gs[n].m, pgtool_procmap_get(pm, j)); j++)
					join(&gs[n], pgtool_procmap_get(pm, j), a->end);
				n++;
				break;
			}
		}
	} else if (demo || o->nranges) {
		const struct range *rs = demo ? demo : o->ranges;
		unsigned nr = demo ? 1 : o->nranges;

		for (unsigned r = 0; r < nr; r++) {
			uint64_t at = rs[r].start;

			for (size_t i = 0; i < pgtool_procmap_count(pm) && at < rs[r].end; i++) {
				const struct pgtool_mapping *m = pgtool_procmap_get(pm, i);

				if (!(m->flags & PGTOOL_MAP_SMAPS) || m->end <= at || m->start > at)
					continue;
				if (n && gs[n - 1].end == at && same_memory(gs[n - 1].m, m)) {
					join(&gs[n - 1], m, rs[r].end);
					at = gs[n - 1].end;
					continue;
				}
				if (n == MAX_GUEST)
					break;
				gs[n] = (struct guest){ .start = at,
							.end = m->end < rs[r].end ? m->end : rs[r].end,
							.m = m, .source = demo ? "pgtrack" : "range" };
				at = gs[n].end;
				n++;
			}
			if (at < rs[r].end) {
				fail("range %#" PRIx64 "-%#" PRIx64 " is not mapped in process %d (from %#" PRIx64 ")",
				     rs[r].start, rs[r].end, o->pid, at);
				return -ERANGE;
			}
		}
	} else {
		int k = pgtool_procmap_guess_guest(pm, o->min_size, idx, MAX_GUEST);

		for (int i = 0; i < k && i < MAX_GUEST; i++) {
			const struct pgtool_mapping *m = pgtool_procmap_get(pm, idx[i]);

			gs[n++] = (struct guest){ .start = m->start, .end = m->end, .m = m,
						  .source = "auto" };
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct guest *g = &gs[i];

		g->page_size = g->m->page_size ? g->m->page_size : 4096;
		/* a range cut inside a huge page: widen to whole pages */
		g->start &= ~(g->page_size - 1);
		g->end = (g->end + g->page_size - 1) & ~(g->page_size - 1);
		parse_policy(g->m->policy, &g->intended, &g->mask);
	}
	*ng = n;
	return 0;
}

/* ---- the demo: a region pgtrack tracks, in this process ---- */

struct demo {
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	struct range range;
	struct tracked tr;
};

static int demo_start(struct demo *d, uint64_t size)
{
	struct pgt_region_config c = {
		.size = sizeof(c), .backing = PGT_BACKING_ANON, .length = size, .gpa = 0,
		.track = PGT_TRACK_DIRTY | PGT_TRACK_TOUCH, .numa_node = 0, .fd = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_harvest h = { .size = sizeof(h) };
	int ret;

	memset(d, 0, sizeof(*d));
	if (!size || size % (2ULL << 20)) {
		fail("--demo SIZE must be a non-zero multiple of 2 MiB");
		return -EINVAL;
	}
	ret = pgt_engine_open(NULL, &d->eng);
	if (!ret) {
		ret = pgt_region_create(d->eng, &c, &d->r);
		if (ret == -EOPNOTSUPP) { /* no userfaultfd: dirty tracking only */
			c.track = PGT_TRACK_DIRTY;
			ret = pgt_region_create(d->eng, &c, &d->r);
		}
	}
	if (!ret)
		ret = pgt_dirty_view_open(d->r, &d->v);
	if (ret) {
		fail("--demo: pgtrack could not track %" PRIu64 " bytes: %s", size, strerror(-ret));
		return ret;
	}
	pgt_region_info(d->r, &info);
	/*
	 * The demo's counters are in 4 KiB pages: where THP is enabled=always,
	 * a first touch would make 2 MiB resident and soft-dirty would report
	 * whole 2 MiB pages.
	 */
	(void)madvise(info.addr, size, MADV_NOHUGEPAGE);
	/* touch the first half, write a quarter again, give 2 MiB back */
	memset(info.addr, 1, size / 2);
	pgt_dirty_harvest(d->v, &h);
	memset(info.addr, 2, size / 4);
	pgt_release(d->eng, info.gpa, 2ULL << 20, 0, NULL);
	d->range = (struct range){ (uintptr_t)info.addr, (uintptr_t)info.addr + size };
	return 0;
}

static void demo_sample(struct demo *d)
{
	struct pgt_harvest h = { .size = sizeof(h) };
	int64_t n;

	d->tr.on = true;
	d->tr.source = "demo";
	d->tr.touched = pgt_touched_count(d->r);
	/* the demo region has 4 KiB pages; released counts 4 KiB units */
	d->tr.touched = d->tr.touched >= 0 ? d->tr.touched * 4096 : -1;
	d->tr.released = pgt_released_count(d->r);
	d->tr.released = d->tr.released >= 0 ? d->tr.released * 4096 : -1;
	n = pgt_dirty_harvest(d->v, &h);
	d->tr.dirty_last = n > 0 ? (uint64_t)n * 4096 : 0;
	d->tr.ns.size = sizeof(d->tr.ns);
	if (pgt_region_numa_stats(d->r, 0, &d->tr.ns))
		memset(&d->tr.ns, 0, sizeof(d->tr.ns));
}

static void demo_stop(struct demo *d)
{
	pgt_dirty_view_close(d->v);
	pgt_engine_close(d->eng);
}

/* ---- one report ---- */

struct report {
	int pid;
	struct pgtool_attach_state *att; /* libpgtrack-attach in the process */
	int att_err;
	struct tracked att_tr[PGTOOL_ATTACH_MAX_REGIONS];
	pgt_topology *topo;
	struct pgt_probe probe;
	pgtool_procmap *pm;
	struct proc_usage u;
	unsigned ng;
	struct guest g[MAX_GUEST];
	/* sums */
	uint64_t guest_size, guest_res, guest_hugetlb_res, guest_misplaced;
	uint64_t node_guest[PGT_MAX_NODES];
	uint64_t node_proc[PGT_MAX_NODES];
	unsigned nnodes;
};

struct line {
	const char *key;
	int64_t bytes;
	char text[160];
};

static unsigned reconcile(const struct report *r, struct line *l)
{
	const struct proc_usage *u = &r->u;
	uint64_t rss_guest = r->guest_res - r->guest_hugetlb_res;
	unsigned n = 0;

#define L(k, b, ...)                                                           \
	do {                                                                   \
		l[n].key = (k);                                                \
		l[n].bytes = (int64_t)(b);                                     \
		snprintf(l[n].text, sizeof(l[n].text), __VA_ARGS__);           \
		n++;                                                           \
	} while (0)

	L("guest_configured", r->guest_size, "guest RAM mapped (the guest's view of its memory)");
	L("guest_resident", r->guest_res, "of which resident on some node (move_pages)");
	L("guest_absent", r->guest_size - r->guest_res,
	  "of which not populated: never touched, or released");
	L("guest_hugetlb", r->guest_hugetlb_res, "resident guest RAM in hugetlb pages: in neither RSS nor the memory cgroup");
	if (!u->have_status)
		return n;
	L("rss", u->rss, "VmRSS, what top shows (anon %s, file %s, shmem %s)",
	  HS(u->rss_anon), HS(u->rss_file), HS(u->rss_shmem));
	L("rss_guest", rss_guest, "resident guest RAM outside hugetlb: part of RSS");
	L("rss_vmm", (int64_t)u->rss - (int64_t)rss_guest,
	  "RSS minus guest RAM: the VMM's own heap, libraries, stacks (page cache of mapped files too)");
	L("hugetlb", u->hugetlb, "HugetlbPages of the process (not in RSS)");
	L("hugetlb_other", (int64_t)u->hugetlb - (int64_t)r->guest_hugetlb_res,
	  "hugetlb pages outside the guest RAM found");
	if (u->cg_version > 0) {
		L("cgroup_usage", u->cg_usage, "cgroup v%d %.100s memory usage (every process in it)",
		  u->cg_version, u->cg_path);
		L("cgroup_minus_rss", (int64_t)u->cg_usage - (int64_t)u->rss,
		  "usage minus RSS: page cache (%s), kernel memory (%s), other processes",
		  HS(u->cg_file), HS(u->cg_kernel));
	}
	if (r->guest_misplaced)
		L("guest_misplaced", r->guest_misplaced,
		  "resident guest RAM on a node its policy does not name");
#undef L
	return n;
}

static void free_report(struct report *r)
{
	free(r->att);
	for (unsigned i = 0; i < r->ng; i++)
		free(r->g[i].status);
	pgtool_procmap_free(r->pm);
	pgt_topology_free(r->topo);
	memset(r, 0, sizeof(*r));
}

/* pgtrack's lines for guest @g from the attach state: the region that
 * starts where @g does. */
static struct tracked *attach_tracked(struct report *r, const struct guest *g)
{
	for (unsigned k = 0; k < r->att->nregions; k++) {
		const struct pgtool_attach_region *a = &r->att->region[k];
		struct tracked *t = &r->att_tr[k];

		if (a->start != g->start)
			continue;
		memset(t, 0, sizeof(*t));
		t->on = true;
		t->source = "attach";
		t->method = a->dirty_method;
		t->touched = a->touched_bytes;
		t->released = a->released_bytes;
		t->dirty_total = a->dirty_bytes_total;
		memcpy(t->rate, a->dirty_rate, sizeof(t->rate));
		/* the shortest window of at least 8 s: a working set, not a blip */
		for (unsigned i = 0; i < a->nwindows; i++) {
			t->window_s = a->window_s[i];
			t->written = a->written_bytes[i];
			if (a->window_s[i] >= 8)
				break;
		}
		return t;
	}
	return NULL;
}

static int collect(const struct opts *o, struct report *r, struct demo *d)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->pid = o->pid;
	ret = pgt_topology_load(NULL, &r->topo);
	if (ret) {
		fail("cannot load the NUMA topology: %s", strerror(-ret));
		return 1;
	}
	r->probe.size = sizeof(r->probe);
	pgt_probe(&r->probe);
	ret = pgtool_procmap_read(o->pid, 0, &r->pm);
	if (ret == -ESRCH) {
		fail("no such process: %d", o->pid);
		return 1;
	}
	if (ret == -EACCES || ret == -EPERM) {
		fail("not allowed to read the memory maps of process %d (%s): run as its user or root",
		     o->pid, strerror(-ret));
		return 1;
	}
	if (ret) {
		fail("cannot read /proc/%d/smaps and numa_maps: %s", o->pid, strerror(-ret));
		return 1;
	}
	if (read_usage(o->pid, &r->u))
		r->u.have_status = false;
	if (d)
		demo_sample(d);
	if (!d) {
		r->att = calloc(1, sizeof(*r->att));
		r->att_err = r->att ? pgtool_attach_state_read(o->pid, r->att) : -ENOMEM;
		if (r->att_err) {
			free(r->att);
			r->att = NULL;
		}
	}
	ret = find_guests(o, r->pm, r->g, &r->ng, d ? &d->range : NULL, r->att);
	if (ret)
		return 1;
	for (unsigned i = 0; i < r->ng; i++) {
		struct guest *g = &r->g[i];

		ret = query_guest(o->pid, g, o->svg != NULL);
		if (ret == -ESRCH) {
			fail("process %d exited", o->pid);
			return 1;
		}
		if (ret) {
			fail("move_pages on process %d: %s (placement from numa_maps only)", o->pid,
			     strerror(-ret));
			g->queried = ret;
		}
		if (d)
			g->tr = &d->tr;
		else if (r->att)
			g->tr = attach_tracked(r, g);
		r->guest_size += g->end - g->start;
		if (g->queried >= 0) {
			r->guest_res += g->pl.resident * g->page_size;
			if (g->m->flags & PGTOOL_MAP_HUGETLB)
				r->guest_hugetlb_res += g->pl.resident * g->page_size;
			r->guest_misplaced += g->misplaced * g->page_size;
			for (unsigned n = 0; n < g->pl.nnodes; n++) {
				r->node_guest[n] += g->pl.node_pages[n] * g->page_size;
				if (n + 1 > r->nnodes)
					r->nnodes = n + 1;
			}
		}
	}
	for (size_t i = 0; i < pgtool_procmap_count(r->pm); i++) {
		const struct pgtool_mapping *m = pgtool_procmap_get(r->pm, i);

		for (unsigned n = 0; n < m->nnodes; n++) {
			r->node_proc[n] += m->node_bytes[n];
			if (m->node_bytes[n] && n + 1 > r->nnodes)
				r->nnodes = n + 1;
		}
	}
	return 0;
}

/* ---- JSON ---- */

/* Seconds since the attach library wrote its state. */
static double attach_age(const struct pgtool_attach_state *a)
{
	struct timespec ts;
	double now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	return now > a->time ? now - a->time : 0;
}

static void add(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static json_object *ju(uint64_t v)
{
	return json_object_new_uint64(v);
}

static json_object *mapping_json(const struct pgtool_mapping *m)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	add(o, "start", ju(m->start));
	add(o, "end", ju(m->end));
	add(o, "size", ju(m->end - m->start));
	add(o, "name", json_object_new_string(m->name));
	add(o, "page_size", ju(m->page_size));
	add(o, "rss", ju(m->rss));
	add(o, "anon", ju(m->anon));
	add(o, "thp", ju(m->anon_huge + m->pmd_mapped));
	add(o, "hugetlb", json_object_new_boolean(m->flags & PGTOOL_MAP_HUGETLB));
	add(o, "shared", json_object_new_boolean(m->flags & PGTOOL_MAP_SHARED));
	add(o, "locked", ju(m->locked));
	add(o, "swap", ju(m->swap));
	add(o, "policy", m->policy[0] ? json_object_new_string(m->policy) : NULL);
	for (unsigned n = 0; n < m->nnodes; n++) {
		json_object *x;

		if (!m->node_bytes[n])
			continue;
		x = json_object_new_object();
		add(x, "node", json_object_new_int((int)n));
		add(x, "bytes", ju(m->node_bytes[n]));
		json_object_array_add(a, x);
	}
	add(o, "numa_maps_nodes", a);
	return o;
}

static json_object *guest_json(const struct guest *g)
{
	json_object *o = mapping_json(g->m), *a = json_object_new_array();

	/* the guest range may be part of the mapping */
	add(o, "start", ju(g->start));
	add(o, "end", ju(g->end));
	add(o, "size", ju(g->end - g->start));
	add(o, "page_size", ju(g->page_size));
	add(o, "source", json_object_new_string(g->source));
	add(o, "intended_node", g->intended >= 0 ? json_object_new_int(g->intended) : NULL);
	if (g->queried >= 0) {
		add(o, "resident", ju(g->pl.resident * g->page_size));
		add(o, "absent", ju(g->pl.absent * g->page_size));
		add(o, "misplaced", ju(g->misplaced * g->page_size));
		for (unsigned n = 0; n < g->pl.nnodes; n++) {
			json_object *x;

			if (!g->pl.node_pages[n])
				continue;
			x = json_object_new_object();
			add(x, "node", json_object_new_int((int)n));
			add(x, "resident", ju(g->pl.node_pages[n] * g->page_size));
			json_object_array_add(a, x);
		}
	} else {
		add(o, "placement_error", json_object_new_string(strerror((int)-g->queried)));
	}
	add(o, "nodes", a);
	if (g->tr && g->tr->on) {
		json_object *t = json_object_new_object(), *tn = json_object_new_array();

		add(t, "source", json_object_new_string(g->tr->source));
		add(t, "touched", g->tr->touched >= 0 ? ju((uint64_t)g->tr->touched) : NULL);
		add(t, "released", g->tr->released >= 0 ? ju((uint64_t)g->tr->released) : NULL);
		if (!strcmp(g->tr->source, "attach")) {
			json_object *rate = json_object_new_object();
			static const char *const win[3] = { "1s", "10s", "60s" };

			add(t, "dirty_method", json_object_new_string(g->tr->method));
			add(t, "dirty_bytes_total", ju(g->tr->dirty_total));
			for (int k = 0; k < 3; k++)
				add(rate, win[k], g->tr->rate[k] >= 0 ?
					json_object_new_double(g->tr->rate[k]) : NULL);
			add(t, "dirty_rate_bytes_per_second", rate);
			if (g->tr->window_s > 0) {
				add(t, "written_within_seconds", json_object_new_double(g->tr->window_s));
				add(t, "written", ju(g->tr->written));
			}
		} else {
			add(t, "dirty_last_harvest", ju(g->tr->dirty_last));
		}
		for (unsigned n = 0; n < g->tr->ns.nnodes; n++) {
			const struct pgt_numa_node_stats *s = &g->tr->ns.node[n];
			json_object *x;

			if (!s->pages)
				continue;
			x = json_object_new_object();
			add(x, "node", json_object_new_int((int)n));
			add(x, "pages", ju(s->pages * 4096));
			add(x, "touched", ju(s->touched * 4096));
			add(x, "dirty_reported", ju(s->dirty_reported * 4096));
			add(x, "released", ju(s->released * 4096));
			add(x, "metadata", ju(s->metadata_bytes));
			json_object_array_add(tn, x);
		}
		add(t, "nodes", tn);
		add(o, "tracked", t);
	}
	return o;
}

static json_object *node_json(const struct report *r, unsigned i, unsigned nnodes)
{
	struct pgt_numa_node nd = { .size = sizeof(nd) };
	json_object *n = json_object_new_object(), *d = json_object_new_array();

	pgt_topology_node(r->topo, i, &nd);
	add(n, "node", json_object_new_int(nd.id));
	add(n, "memory", ju(nd.memory));
	add(n, "cpus", json_object_new_string(nd.cpulist));
	add(n, "cores", json_object_new_int((int)nd.ncores));
	for (unsigned j = 0; j < nnodes; j++) {
		struct pgt_numa_node other = { .size = sizeof(other) };

		pgt_topology_node(r->topo, j, &other);
		json_object_array_add(d, json_object_new_int(
			pgt_topology_distance(r->topo, nd.id, other.id)));
	}
	add(n, "distances", d);
	add(n, "guest_resident", ju(nd.id < PGT_MAX_NODES ? r->node_guest[nd.id] : 0));
	add(n, "process_resident", ju(nd.id < PGT_MAX_NODES ? r->node_proc[nd.id] : 0));
	return n;
}

static json_object *topology_json(const struct report *r)
{
	struct pgt_topology_info ti = { .size = sizeof(ti) };
	json_object *x = json_object_new_object(), *a = json_object_new_array();

	pgt_topology_info(r->topo, &ti);
	add(x, "source", json_object_new_string(ti.source == PGT_TOPO_HWLOC ? "hwloc" :
						ti.source == PGT_TOPO_FALLBACK ? "fallback" : "synthetic"));
	for (unsigned i = 0; i < ti.nnodes; i++)
		json_object_array_add(a, node_json(r, i, ti.nnodes));
	add(x, "nodes", a);
	return x;
}

static json_object *hugepages_json(const struct report *r)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < r->probe.n_pools; i++) {
		const struct pgt_hugepage_pool *p = &r->probe.pools[i];
		json_object *h = json_object_new_object();

		add(h, "node", p->node >= 0 ? json_object_new_int(p->node) : NULL);
		add(h, "page_size", ju(p->page_size));
		add(h, "total", ju(p->total));
		add(h, "free", ju(p->free));
		add(h, "surplus", ju(p->surplus));
		json_object_array_add(a, h);
	}
	return a;
}

static json_object *process_json(const struct report *r)
{
	json_object *x = json_object_new_object();

	add(x, "rss", ju(r->u.rss));
	add(x, "rss_anon", ju(r->u.rss_anon));
	add(x, "rss_file", ju(r->u.rss_file));
	add(x, "rss_shmem", ju(r->u.rss_shmem));
	add(x, "hugetlb", ju(r->u.hugetlb));
	add(x, "swap", ju(r->u.swap));
	add(x, "locked", ju(r->u.locked));
	return x;
}

static json_object *cgroup_json(const struct report *r)
{
	json_object *x = json_object_new_object();

	add(x, "version", json_object_new_int(r->u.cg_version));
	add(x, "path", json_object_new_string(r->u.cg_path));
	add(x, "usage", ju(r->u.cg_usage));
	add(x, "limit", r->u.cg_have_limit ? ju(r->u.cg_limit) : NULL);
	if (r->u.cg_have_stat) {
		add(x, "anon", ju(r->u.cg_anon));
		add(x, "file", ju(r->u.cg_file));
		add(x, "shmem", ju(r->u.cg_shmem));
		add(x, "kernel", ju(r->u.cg_kernel));
	}
	return x;
}

static json_object *reconciliation_json(const struct report *r)
{
	json_object *a = json_object_new_array();
	struct line lines[16];
	unsigned nl = reconcile(r, lines);

	for (unsigned i = 0; i < nl; i++) {
		json_object *x = json_object_new_object();

		add(x, "key", json_object_new_string(lines[i].key));
		add(x, "bytes", json_object_new_int64(lines[i].bytes));
		add(x, "text", json_object_new_string(lines[i].text));
		json_object_array_add(a, x);
	}
	return a;
}

static json_object *report_json(const struct opts *o, const struct report *r)
{
	json_object *root = json_object_new_object(), *a, *x;

	add(root, "schema", json_object_new_string("pgtrack-numa/1"));
	add(root, "pid", json_object_new_int(r->pid));
	add(root, "comm", json_object_new_string(r->u.comm));
	add(root, "time", json_object_new_int64((int64_t)time(NULL)));
	add(root, "topology", topology_json(r));
	add(root, "hugepages", hugepages_json(r));
	if (r->att) {
		x = json_object_new_object();
		add(x, "state", json_object_new_string(r->att->state));
		add(x, "message", json_object_new_string(r->att->message));
		add(x, "http_port", r->att->http_port ? json_object_new_int(r->att->http_port) : NULL);
		add(x, "age_seconds", json_object_new_double(attach_age(r->att)));
		add(root, "attach", x);
	}
	a = json_object_new_array();
	for (unsigned i = 0; i < r->ng; i++)
		json_object_array_add(a, guest_json(&r->g[i]));
	add(root, "guest", a);
	if (o->all) {
		a = json_object_new_array();
		for (size_t i = 0; i < pgtool_procmap_count(r->pm); i++)
			json_object_array_add(a, mapping_json(pgtool_procmap_get(r->pm, i)));
		add(root, "mappings", a);
	}
	if (r->u.have_status)
		add(root, "process", process_json(r));
	if (r->u.cg_version > 0)
		add(root, "cgroup", cgroup_json(r));
	add(root, "reconciliation", reconciliation_json(r));
	return root;
}

/* ---- table ---- */

static void print_table(const struct opts *o, const struct report *r)
{
	struct pgt_topology_info ti = { .size = sizeof(ti) };
	struct line lines[16];
	unsigned nl;

	pgt_topology_info(r->topo, &ti);
	printf("pgtrack-numa: process %d (%s), %u NUMA node%s (%s)\n\n", r->pid, r->u.comm,
	       ti.nnodes, ti.nnodes == 1 ? "" : "s",
	       ti.source == PGT_TOPO_HWLOC ? "hwloc" : ti.source == PGT_TOPO_FALLBACK ?
	       "no hwloc: one node" : "synthetic");
	printf("NUMA nodes\n  %-5s %-11s %-12s %-12s %-12s %s\n", "node", "memory", "cpus",
	       "guest", "process", "hugepages free/total");
	for (unsigned i = 0; i < ti.nnodes; i++) {
		struct pgt_numa_node nd = { .size = sizeof(nd) };
		char pools[256] = "";
		size_t pos = 0;

		pgt_topology_node(r->topo, i, &nd);
		for (unsigned k = 0; k < r->probe.n_pools; k++) {
			const struct pgt_hugepage_pool *p = &r->probe.pools[k];

			if (p->node != nd.id || pos >= sizeof(pools) - 48)
				continue;
			pos += (size_t)snprintf(pools + pos, sizeof(pools) - pos, "%s%s %" PRIu64 "/%" PRIu64,
						pos ? ", " : "", HS(p->page_size), p->free, p->total);
		}
		printf("  %-5d %-11s %-12s %-12s %-12s %s\n", nd.id, HS(nd.memory), nd.cpulist,
		       HS(nd.id < PGT_MAX_NODES ? r->node_guest[nd.id] : 0),
		       HS(nd.id < PGT_MAX_NODES ? r->node_proc[nd.id] : 0),
		       pools[0] ? pools : "-");
	}
	printf("\nGuest memory (%s)\n", o->nranges ? "--range" : o->demo ? "tracked by pgtrack" :
	       r->att && r->att->nregions ? "tracked by libpgtrack-attach in the process" :
	       "automatic: hugetlb or shared mappings, else largest anonymous");
	if (r->att) {
		printf("  pgtrack-attach: %s, %s", r->att->state, r->att->message);
		if (r->att->http_port)
			printf("; /metrics on 127.0.0.1:%d", r->att->http_port);
		printf(" (%.0f s ago)\n", attach_age(r->att));
	}
	if (!r->ng)
		printf("  none found (use --range START-END or --min-size)\n");
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];
		const struct pgtool_mapping *m = g->m;

		printf("  %012" PRIx64 "-%012" PRIx64 " %s, page %s%s%s, policy %s, %s\n", g->start,
		       g->end, HS(g->end - g->start), HS(g->page_size),
		       m->flags & PGTOOL_MAP_HUGETLB ? " (hugetlb)" : "",
		       m->anon_huge + m->pmd_mapped ? " (THP in use)" : "",
		       m->policy[0] ? m->policy : "?", m->name[0] ? m->name : "[anon]");
		if (g->queried < 0) {
			printf("      placement unknown: %s\n", strerror((int)-g->queried));
			continue;
		}
		printf("      resident %s, absent %s, locked %s, misplaced %s;",
		       HS(g->pl.resident * g->page_size), HS(g->pl.absent * g->page_size),
		       HS(m->locked), HS(g->misplaced * g->page_size));
		for (unsigned n = 0; n < g->pl.nnodes; n++)
			if (g->pl.node_pages[n])
				printf(" node %u %s", n, HS(g->pl.node_pages[n] * g->page_size));
		printf("\n");
		if (g->tr && g->tr->on && !strcmp(g->tr->source, "attach"))
			printf("      pgtrack (%s): touched %s, dirty %s/s (10 s: %s/s), written in the "
			       "last %g s %s, released %s\n", g->tr->method,
			       g->tr->touched >= 0 ? HS((uint64_t)g->tr->touched) : "?",
			       g->tr->rate[0] >= 0 ? HS((uint64_t)g->tr->rate[0]) : "?",
			       g->tr->rate[1] >= 0 ? HS((uint64_t)g->tr->rate[1]) : "?",
			       g->tr->window_s, HS(g->tr->written),
			       g->tr->released >= 0 ? HS((uint64_t)g->tr->released) : "?");
		else if (g->tr && g->tr->on)
			printf("      pgtrack: touched %s, dirty in last harvest %s, released %s\n",
			       g->tr->touched >= 0 ? HS((uint64_t)g->tr->touched) : "?",
			       HS(g->tr->dirty_last),
			       g->tr->released >= 0 ? HS((uint64_t)g->tr->released) : "?");
	}
	if (o->all) {
		printf("\nMappings\n  %-25s %10s %10s %7s %10s  %-14s %s\n", "range", "size", "rss",
		       "page", "locked", "policy", "name");
		for (size_t i = 0; i < pgtool_procmap_count(r->pm); i++) {
			const struct pgtool_mapping *m = pgtool_procmap_get(r->pm, i);

			printf("  %012" PRIx64 "-%012" PRIx64 " %10s %10s %7s %10s  %-14s %s\n",
			       m->start, m->end, HS(m->end - m->start), HS(m->rss),
			       HS(m->page_size), HS(m->locked), m->policy, m->name);
		}
	}
	if (r->u.have_status)
		printf("\nProcess: RSS %s (anon %s, file %s, shmem %s), hugetlb %s, swap %s, locked %s\n",
		       HS(r->u.rss), HS(r->u.rss_anon), HS(r->u.rss_file), HS(r->u.rss_shmem),
		       HS(r->u.hugetlb), HS(r->u.swap), HS(r->u.locked));
	if (r->u.cg_version > 0)
		printf("cgroup v%d %s: usage %s, limit %s\n", r->u.cg_version, r->u.cg_path,
		       HS(r->u.cg_usage), r->u.cg_have_limit ? HS(r->u.cg_limit) : "none");
	nl = reconcile(r, lines);
	printf("\nReconciliation\n");
	for (unsigned i = 0; i < nl; i++)
		printf("  %-18s %12s%s  %s\n", lines[i].key,
		       HS(lines[i].bytes < 0 ? (uint64_t)-lines[i].bytes : (uint64_t)lines[i].bytes),
		       lines[i].bytes < 0 ? " (-)" : "    ", lines[i].text);
}

/* ---- SVG ---- */

static const char *const node_colors[] = {
	"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
};

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

static int write_svg(const char *path, const struct report *r)
{
	FILE *f = fopen(path, "we");
	unsigned row_h = 28, h = 70 + r->ng * (row_h + 22);

	if (!f) {
		fail("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
		   "font-family=\"monospace\" font-size=\"12\">\n", SVG_COLS + 20, h);
	fprintf(f, "<text x=\"10\" y=\"18\">pgtrack-numa: process %d (", r->pid);
	svg_text(f, r->u.comm);
	fprintf(f, "), guest memory by NUMA node; grey: not populated</text>\n");
	struct pgt_topology_info ti = { .size = sizeof(ti) };

	pgt_topology_info(r->topo, &ti);
	for (unsigned n = 0; n < 8 && n < (r->nnodes > ti.nnodes ? r->nnodes : ti.nnodes); n++)
		fprintf(f, "<rect x=\"%u\" y=\"28\" width=\"12\" height=\"12\" fill=\"%s\"/>"
			   "<text x=\"%u\" y=\"38\">node %u</text>\n", 10 + n * 90, node_colors[n],
			26 + n * 90, n);
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];
		uint64_t npages = (g->end - g->start) / g->page_size;
		unsigned y = 60 + i * (row_h + 22);

		fprintf(f, "<text x=\"10\" y=\"%u\">%#" PRIx64 "-%#" PRIx64 " ", y + 12, g->start,
			g->end);
		svg_text(f, g->m->name[0] ? g->m->name : "[anon]");
		fprintf(f, "</text>\n");
		unsigned run_from = 0, run_color = 9;

		for (unsigned c = 0; c <= SVG_COLS; c++) {
			uint64_t a = npages * c / SVG_COLS, b = npages * (c + 1) / SVG_COLS;
			unsigned cnt[9] = { 0 }, best = 8;

			if (c == SVG_COLS) { /* flush the last run */
				best = 10;
				goto emit;
			}

			if (b == a)
				b = a + 1;
			for (uint64_t p = a; p < b && p < npages; p++) {
				int st = g->status && p < g->pl.status_cap ? g->status[p] : -1;

				cnt[st >= 0 && st < 8 ? (unsigned)st : 8]++;
			}
			for (unsigned k = 0; k < 8; k++)
				if (cnt[k] > cnt[best])
					best = k;
emit:
			/* one rectangle per run of columns of one colour */
			if (best == run_color)
				continue;
			if (run_color < 9 && c > run_from)
				fprintf(f, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"%s\"/>\n",
					10 + run_from, y + 16, c - run_from, row_h,
					run_color < 8 ? node_colors[run_color] : "#dddddd");
			run_from = c;
			run_color = best;
		}
	}
	fprintf(f, "</svg>\n");
	if (fclose(f)) {
		fail("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- Prometheus ---- */

static void glabels(FILE *f, const struct guest *g)
{
	fprintf(f, "range=\"%#" PRIx64 "-%#" PRIx64 "\",name=\"", g->start, g->end);
	pgtool_prom_label(f, g->m->name[0] ? g->m->name : "[anon]");
	fputc('"', f);
}

/* Per node: memory, guest and process residency, hugepage pools. */
static void prom_nodes(FILE *f, const struct report *r)
{
	struct pgt_topology_info ti = { .size = sizeof(ti) };

	pgt_topology_info(r->topo, &ti);
	pgtool_prom_family(f, "pgtrack_numa_node_memory_bytes", "gauge", "Memory of the NUMA node.");
	for (unsigned i = 0; i < ti.nnodes; i++) {
		struct pgt_numa_node nd = { .size = sizeof(nd) };

		pgt_topology_node(r->topo, i, &nd);
		fprintf(f, "pgtrack_numa_node_memory_bytes{node=\"%d\"} %" PRIu64 "\n", nd.id, nd.memory);
	}
	/* each family's samples together, after its HELP and TYPE */
	pgtool_prom_family(f, "pgtrack_numa_node_guest_resident_bytes", "gauge",
			   "Guest RAM of the process resident on the node (move_pages).");
	for (unsigned n = 0; n < r->nnodes && n < PGT_MAX_NODES; n++)
		fprintf(f, "pgtrack_numa_node_guest_resident_bytes{node=\"%u\"} %" PRIu64 "\n", n,
			r->node_guest[n]);
	pgtool_prom_family(f, "pgtrack_numa_node_process_resident_bytes", "gauge",
			   "Memory of the process resident on the node (numa_maps).");
	for (unsigned n = 0; n < r->nnodes && n < PGT_MAX_NODES; n++)
		fprintf(f, "pgtrack_numa_node_process_resident_bytes{node=\"%u\"} %" PRIu64 "\n", n,
			r->node_proc[n]);
	pgtool_prom_family(f, "pgtrack_numa_hugepages", "gauge",
			   "Hugepages of a pool (node -1: the global pool), total and free.");
	for (unsigned i = 0; i < r->probe.n_pools; i++) {
		const struct pgt_hugepage_pool *p = &r->probe.pools[i];

		fprintf(f, "pgtrack_numa_hugepages{node=\"%d\",page_size=\"%" PRIu64 "\",kind=\"total\"} "
			"%" PRIu64 "\n", p->node, p->page_size, p->total);
		fprintf(f, "pgtrack_numa_hugepages{node=\"%d\",page_size=\"%" PRIu64 "\",kind=\"free\"} "
			"%" PRIu64 "\n", p->node, p->page_size, p->free);
	}
}

/* Per guest RAM range: sizes, residency by node, pgtrack's own figures. */
static void prom_guests(FILE *f, const struct report *r)
{
	pgtool_prom_family(f, "pgtrack_numa_guest_bytes", "gauge",
			   "Guest RAM range: size, resident, absent, misplaced (kind).");
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];
		static const char *const kinds[] = { "size", "resident", "absent", "misplaced" };
		uint64_t v[4] = { g->end - g->start, 0, 0, 0 };

		if (g->queried >= 0) {
			v[1] = g->pl.resident * g->page_size;
			v[2] = g->pl.absent * g->page_size;
			v[3] = g->misplaced * g->page_size;
		}
		for (int k = 0; k < (g->queried >= 0 ? 4 : 1); k++) {
			fputs("pgtrack_numa_guest_bytes{", f);
			glabels(f, g);
			fprintf(f, ",kind=\"%s\"} %" PRIu64 "\n", kinds[k], v[k]);
		}
	}
	pgtool_prom_family(f, "pgtrack_numa_guest_node_resident_bytes", "gauge",
			   "Guest RAM range resident on a node.");
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];

		for (unsigned n = 0; g->queried >= 0 && n < g->pl.nnodes; n++) {
			fputs("pgtrack_numa_guest_node_resident_bytes{", f);
			glabels(f, g);
			fprintf(f, ",node=\"%u\"} %" PRIu64 "\n", n, g->pl.node_pages[n] * g->page_size);
		}
	}
	pgtool_prom_family(f, "pgtrack_numa_tracked_bytes", "gauge",
			   "What pgtrack tracks in the range: touched, released (kind).");
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];

		if (!g->tr || !g->tr->on)
			continue;
		if (g->tr->touched >= 0) {
			fputs("pgtrack_numa_tracked_bytes{", f);
			glabels(f, g);
			fprintf(f, ",kind=\"touched\"} %" PRId64 "\n", g->tr->touched);
		}
		if (g->tr->released >= 0) {
			fputs("pgtrack_numa_tracked_bytes{", f);
			glabels(f, g);
			fprintf(f, ",kind=\"released\"} %" PRId64 "\n", g->tr->released);
		}
	}
	pgtool_prom_family(f, "pgtrack_numa_tracked_dirty_bytes_per_second", "gauge",
			   "pgtrack's dirty rate of the range (libpgtrack-attach) over the window.");
	for (unsigned i = 0; i < r->ng; i++) {
		const struct guest *g = &r->g[i];
		static const char *const win[3] = { "1s", "10s", "60s" };

		for (int k = 0; g->tr && g->tr->on && !strcmp(g->tr->source, "attach") && k < 3; k++) {
			if (g->tr->rate[k] < 0)
				continue;
			fputs("pgtrack_numa_tracked_dirty_bytes_per_second{", f);
			glabels(f, g);
			fprintf(f, ",window=\"%s\"} %.17g\n", win[k], g->tr->rate[k]);
		}
	}
}

/* The process, its cgroup, and the reconciliation lines. */
static void prom_process(FILE *f, const struct report *r)
{
	const struct proc_usage *u = &r->u;
	struct line lines[16];
	unsigned nl;

	if (u->have_status) {
		static const char *const kinds[] = { "rss", "rss_anon", "rss_file", "rss_shmem",
						     "hugetlb", "swap", "locked" };
		const uint64_t v[] = { u->rss, u->rss_anon, u->rss_file, u->rss_shmem, u->hugetlb,
				       u->swap, u->locked };

		pgtool_prom_family(f, "pgtrack_numa_process_bytes", "gauge",
				   "The process from /proc/PID/status (kind).");
		for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
			fprintf(f, "pgtrack_numa_process_bytes{kind=\"%s\"} %" PRIu64 "\n", kinds[k],
				v[k]);
	}
	if (u->cg_version > 0) {
		pgtool_prom_family(f, "pgtrack_numa_cgroup_usage_bytes", "gauge",
				   "Memory usage of the process's cgroup.");
		fprintf(f, "pgtrack_numa_cgroup_usage_bytes %" PRIu64 "\n", u->cg_usage);
	}
	nl = reconcile(r, lines);
	pgtool_prom_family(f, "pgtrack_numa_reconcile_bytes", "gauge",
			   "The reconciliation lines of guest RAM, RSS and cgroup (key).");
	for (unsigned i = 0; i < nl; i++)
		fprintf(f, "pgtrack_numa_reconcile_bytes{key=\"%s\"} %" PRId64 "\n", lines[i].key,
			lines[i].bytes);
}

static char *prom_render(const struct report *r, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	if (!f)
		return NULL;
	pgtool_prom_family(f, "pgtrack_numa_info", "gauge", "The process reported (always 1).");
	fprintf(f, "pgtrack_numa_info{pid=\"%d\",comm=\"", r->pid);
	pgtool_prom_label(f, r->u.comm);
	fprintf(f, "\",attach=\"%s\"} 1\n", r->att ? r->att->state : "none");
	prom_nodes(f, r);
	prom_guests(f, r);
	prom_process(f, r);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

struct prom_ctx {
	const struct opts *o;
	struct demo *d;
	pthread_mutex_t lock; /* one measurement at a time (the demo's view) */
};

static int prom_handler(void *arg, const char *path, struct pgtool_http_reply *rep)
{
	struct prom_ctx *c = arg;
	struct report *r;
	int ret;

	rep->type = "text/plain; charset=utf-8";
	if (strcmp(path, "/metrics")) {
		rep->status = 404;
		rep->body = strdup("pgtrack-numa: try /metrics\n");
		rep->len = rep->body ? strlen(rep->body) : 0;
		return rep->body ? 0 : -ENOMEM;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	ret = collect(c->o, r, c->d);
	if (!ret) {
		rep->body = prom_render(r, &rep->len);
		rep->status = 200;
		rep->type = "text/plain; version=0.0.4; charset=utf-8";
	} else {
		/* the process exited or cannot be read: say so, do not serve stale figures */
		char msg[96];

		snprintf(msg, sizeof(msg), "pgtrack-numa: cannot read process %d\n", c->o->pid);
		rep->status = 503;
		rep->body = strdup(msg);
		rep->len = rep->body ? strlen(rep->body) : 0;
	}
	free_report(r);
	pthread_mutex_unlock(&c->lock);
	free(r);
	return rep->body ? 0 : -ENOMEM;
}

/* ---- main ---- */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int run_once(const struct opts *o, struct demo *d)
{
	struct report *r = calloc(1, sizeof(*r));
	int ret;

	if (!r) {
		fail("out of memory");
		return 1;
	}
	ret = collect(o, r, d);
	if (!ret) {
		if (o->json) {
			json_object *j = report_json(o, r);

			puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_NOSLASHESCAPE |
							    (o->watch ? JSON_C_TO_STRING_PLAIN
								      : JSON_C_TO_STRING_PRETTY)));
			json_object_put(j);
		} else {
			if (o->watch)
				fputs("\033[H\033[J", stdout);
			print_table(o, r);
		}
		fflush(stdout);
		if (o->svg && write_svg(o->svg, r))
			ret = 1;
	}
	free_report(r);
	free(r);
	return ret;
}

/* Options into @o. Returns -1 to go on, else the exit status. */
/* One option into @o. Returns -1 to go on, else the exit status. */
static int apply_opt(struct opts *o, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 'p':
		if (parse_u64(arg, &v) || v == 0 || v > 0x7fffffff) {
			fail("bad process id \"%s\"", arg);
			return 2;
		}
		o->pid = (int)v;
		break;
	case 'r':
		if (o->nranges == MAX_RANGES) {
			fail("at most %d ranges", MAX_RANGES);
			return 2;
		}
		if (parse_range(arg, &o->ranges[o->nranges])) {
			fail("bad range \"%s\": want START-END, 4 KiB aligned, START < END",
			     arg);
			return 2;
		}
		o->nranges++;
		break;
	case 'm':
		if (parse_size(arg, &o->min_size) || !o->min_size) {
			fail("bad size \"%s\"", arg);
			return 2;
		}
		break;
	case 'a':
		o->all = true;
		break;
	case 'j':
		o->json = true;
		break;
	case 'w':
		if (parse_u64(arg, &v) || !v || v > 86400) {
			fail("bad --watch interval \"%s\" (1..86400 seconds)", arg);
			return 2;
		}
		o->watch = (unsigned)v;
		break;
	case 'n':
		if (parse_u64(arg, &v) || !v || v > 1000000000) {
			fail("bad --count \"%s\"", arg);
			return 2;
		}
		o->count = (long)v;
		break;
	case 's':
		o->svg = arg;
		break;
	case 'd':
		if (parse_size(arg, &o->demo) || !o->demo) {
			fail("bad size \"%s\"", arg);
			return 2;
		}
		break;
	case 'P':
		if (parse_u64(arg, &v) || v > 65535) {
			fail("bad --prometheus port \"%s\" (0..65535, 0: any free port)", arg);
			return 2;
		}
		o->prometheus = (int)v;
		break;
	case 'h':
		usage(stdout, prog);
		return 0;
	default:
		usage(stderr, prog);
		return 2;
	}
	return -1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "range", required_argument, NULL, 'r' },
		{ "min-size", required_argument, NULL, 'm' },
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "svg", required_argument, NULL, 's' },
		{ "demo", required_argument, NULL, 'd' },
		{ "prometheus", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	if (argv[0] && strrchr(argv[0], '/'))
		prog = strrchr(argv[0], '/') + 1;
	else if (argv[0])
		prog = argv[0];
	while ((c = getopt_long(argc, argv, "p:r:m:ajw:n:s:d:P:h", lo, NULL)) != -1) {
		int ret = apply_opt(o, c, optarg);

		if (ret >= 0)
			return ret;
	}
	if (optind < argc) {
		fail("unexpected argument \"%s\"", argv[optind]);
		return 2;
	}
	if ((o->pid < 0) == !o->demo) {
		fail(o->demo ? "--demo and --pid exclude each other" : "--pid PID or --demo SIZE is required");
		usage(stderr, prog);
		return 2;
	}
	if (o->demo && o->nranges) {
		fail("--demo reports its own region: no --range");
		return 2;
	}
	if (o->count > 0 && !o->watch) {
		fail("--count needs --watch");
		return 2;
	}
	return -1;
}

/* --prometheus without --watch: serve until interrupted. */
static int serve_only(const struct opts *o, struct prom_ctx *pc)
{
	/* one measurement first tells a bad --pid at once */
	struct report *r = calloc(1, sizeof(*r));
	int ret;

	pthread_mutex_lock(&pc->lock);
	ret = r ? collect(o, r, pc->d) : 1;
	if (r)
		free_report(r);
	pthread_mutex_unlock(&pc->lock);
	free(r);
	while (!ret && !stop)
		nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	return ret;
}

int main(int argc, char **argv)
{
	struct opts o = { .pid = -1, .count = -1, .prometheus = -1 };
	struct prom_ctx pc = { .lock = PTHREAD_MUTEX_INITIALIZER };
	pgtool_http *http = NULL;
	struct demo d;
	int ret = parse_opts(argc, argv, &o);

	if (ret >= 0)
		return ret;
	ret = 0;
	if (o.demo) {
		if (demo_start(&d, o.demo))
			return 1;
		o.pid = getpid();
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (o.prometheus >= 0) {
		char err[160];
		int port = 0;

		pc.o = &o;
		pc.d = o.demo ? &d : NULL;
		if (pgtool_http_start(o.prometheus, prom_handler, &pc, &http, &port, err,
				      sizeof(err))) {
			fail("--prometheus: %s", err);
			if (o.demo)
				demo_stop(&d);
			return 1;
		}
		fprintf(stderr, "%s: /metrics on http://127.0.0.1:%d (process %d) until interrupted\n",
			prog, port, o.pid);
		if (!o.watch) {
			ret = serve_only(&o, &pc);
			pgtool_http_stop(http);
			if (o.demo)
				demo_stop(&d);
			return ret;
		}
	}
	for (long n = 0; !stop; n++) {
		ret = run_once(&o, o.demo ? &d : NULL);
		if (ret || !o.watch || (o.count > 0 && n + 1 >= o.count))
			break;
		for (unsigned s = 0; s < o.watch * 10 && !stop; s++)
			nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	}
	pgtool_http_stop(http);
	if (o.demo)
		demo_stop(&d);
	return ret;
}
