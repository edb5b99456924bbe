/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench dirty: harvest time and writer cost of every dirty-tracking
 * method on one region per (backing, size), against two kernel baselines
 * with no engine around them (the raw PAGEMAP_SCAN loop and a plain pagemap
 * read) and untracked writes.
 *
 * A round: pinned writer threads store one word into each page of a random
 * slice of the region (a fraction of its pages, split between the writers,
 * each timing its own loop), park at a barrier, and the harvester (main
 * thread) times one harvest. Every method sees the same slices in the same
 * order. For each cell (fraction × writers), methods are measured in blocks
 * (attach, warm-up round, rounds, detach) in an order that reverses every
 * block, so engine and raw alternate (A B .. B A .. A B) and slow drift of
 * the machine cancels in the medians. Details and definitions of the ratios:
 * perf/README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pgtrack.h>

#include "hal/compat_uapi.h"
#include "perf/bench.h"

#define NFRAC 4
#define MAXW 2
#define VEC_LEN 4096            /* as the engine's and PLATFORM-NOTES' loop */
#define PM_CHUNK (64 * 1024)    /* pagemap entries per pread (512 KiB) */
#define HUGE_2M (2ull << 20)
#define GPA_BASE (1ull << 32)
#define BLOCKS_MAX 3

static const double fracs[NFRAC] = { 0.001, 0.01, 0.1, 1.0 };

/* Measurement order inside a block; reversed every other block. Engine
 * uffd-async sits next to its raw baseline so they are measured back to back. */
static const int order[] = {
	BM_RAW_IOCTL, BM_UFFD_ASYNC, BM_UNTRACKED, BM_PAGEMAP_READ,
	BM_SOFT_DIRTY, BM_UFFD_SYNC, BM_MPROTECT,
};
#define NORDER ((int)(sizeof(order) / sizeof(order[0])))

enum cell_status { CS_OK = 0, CS_SKIPPED, CS_ERROR };
static const char *const status_names[] = { "ok", "skipped", "error" };

struct cell {
	int method;
	int backing;            /* PGT_BACKING_ANON or PGT_BACKING_HUGETLB */
	uint64_t size, page_size, npages;
	int fi;                 /* index into fracs */
	unsigned writers;
	uint64_t pages;         /* dirtied per round */
	char placement[128];
	int status;
	char reason[192];
	unsigned n, cap;
	uint64_t *harvest;      /* ns per round */
	double *wpp;            /* writer ns per dirtied page per round */
	uint64_t *reported;
	uint64_t mismatch;      /* rounds whose report != pages written */
	uint64_t last_round_ns;
	double spent_s;
	/* summaries */
	uint64_t h_med, h_p90, rep_med;
	double w_med, w_p90;
	double h_spread, w_spread;      /* IQR / median */
};

/* A cell whose IQR exceeds this share of its median is not trusted. */
#define SPREAD_MAX 0.25

struct tracker {
	int method;
	struct bench_mem *m;
	pgt_region *r;
	pgt_dirty_view *v;
	int uffd;
	int pmfd;
};

struct writer;

struct wgroup {
	unsigned nw;
	pthread_barrier_t go, done;
	uint8_t *addr;
	unsigned shift;
	const uint32_t *pages;
	size_t k;
	uint64_t stamp;
	bool stop;
	struct writer *w;
};

struct writer {
	pthread_t tid;
	struct wgroup *g;
	unsigned idx;
	int cpu;
	uint64_t ns;
	int failed;
	volatile sig_atomic_t armed;
	sigjmp_buf jb;
};

struct ctx {
	const struct bench_opts *o;
	struct pgt_probe probe;
	pgt_engine *eng;
	int eng_err;
	int harvester_cpu, handler_cpu, wcpu[MAXW];
	unsigned blocks, rpb;
	struct cell *cells;
	size_t ncells, cap;
	struct page_region *vec;
	uint64_t *pmbuf;
	unsigned long *bitmap;
	size_t bitmap_words;
	uint8_t *scratch;       /* VMA prediction, one byte per page */
	uint32_t *perm;         /* 2 × npages: a random order of the pages, twice */
	long max_maps;
	struct json_object *prim;       /* bench_dirty_primitives() */
};

/* ---------------------------------------------------------------- */
/* Engine log: kept so a failing cell can say what the engine said.  */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[256];
static bool verbose_log;

static void engine_log(void *arg, int level, const char *msg)
{
	(void)arg;
	pthread_mutex_lock(&log_lock);
	snprintf(last_log, sizeof(last_log), "%s", msg);
	pthread_mutex_unlock(&log_lock);
	if (verbose_log)
		fprintf(stderr, "pgtrack[%d]: %s\n", level, msg);
}

static void take_log(char *buf, size_t len)
{
	pthread_mutex_lock(&log_lock);
	snprintf(buf, len, "%s", last_log);
	last_log[0] = 0;
	pthread_mutex_unlock(&log_lock);
}

/* Writers are parked at a barrier during every harvest. */
static int quiesce_noop(void *arg, bool pause)
{
	(void)arg;
	(void)pause;
	return 0;
}

/* ---------------------------------------------------------------- */
/* SIGSEGV guard                                                      */
/*
 * The engine's mprotect tracker chains to the handler installed before it
 * when it cannot resolve a fault (mprotect failing with ENOMEM past
 * vm.max_map_count). Ours then abandons the writer's round instead of
 * letting the process die, and the cell is reported as an error.
 */

static _Thread_local struct writer *tls_writer;
static struct sigaction old_segv;

static void guard_segv(int sig, siginfo_t *si, void *uctx)
{
	struct writer *w = tls_writer;

	(void)sig;
	(void)si;
	(void)uctx;
	if (w && w->armed) {
		w->armed = 0;
		siglongjmp(w->jb, 1);
	}
	/* Not a benchmark write: let the access fault again and kill us. */
	signal(SIGSEGV, SIG_DFL);
}

/* ---------------------------------------------------------------- */
/* Writers                                                            */

static __attribute__((noinline)) void write_share(struct writer *w)
{
	struct wgroup *g = w->g;
	size_t lo = g->k * w->idx / g->nw, hi = g->k * (w->idx + 1) / g->nw;
	uint64_t t0 = bench_now_ns();

	/* One word per page, spread over cache lines so untracked writes do
	 * not all alias one cache set. */
	for (size_t i = lo; i < hi; i++) {
		uint64_t p = g->pages[i];

		*(volatile uint64_t *)(g->addr + (p << g->shift) + ((p & 63) << 6)) = g->stamp;
	}
	w->ns = bench_now_ns() - t0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct wgroup *g = w->g;

	bench_pin_self(w->cpu);
	tls_writer = w;
	for (;;) {
		pthread_barrier_wait(&g->go);
		if (g->stop)
			break;
		w->failed = 0;
		if (!sigsetjmp(w->jb, 1)) {
			w->armed = 1;
			write_share(w);
			w->armed = 0;
		} else {
			w->failed = 1;
		}
		pthread_barrier_wait(&g->done);
	}
	return NULL;
}

static int wgroup_start(struct ctx *x, struct wgroup *g, struct bench_mem *m, unsigned nw)
{
	memset(g, 0, sizeof(*g));
	g->nw = nw;
	g->addr = m->addr;
	g->shift = m->shift;
	g->w = calloc(nw, sizeof(*g->w));
	if (!g->w)
		return -ENOMEM;
	pthread_barrier_init(&g->go, NULL, nw + 1);
	pthread_barrier_init(&g->done, NULL, nw + 1);
	for (unsigned i = 0; i < nw; i++) {
		int ret;

		g->w[i].g = g;
		g->w[i].idx = i;
		g->w[i].cpu = x->wcpu[i];
		ret = pthread_create(&g->w[i].tid, NULL, writer_main, &g->w[i]);
		if (ret) {
			/* Threads already started wait at the barrier forever: fatal. */
			fprintf(stderr, "pgtrack-bench: pthread_create: %s\n", strerror(ret));
			exit(1);
		}
	}
	return 0;
}

static void wgroup_stop(struct wgroup *g)
{
	g->stop = true;
	pthread_barrier_wait(&g->go);
	for (unsigned i = 0; i < g->nw; i++)
		pthread_join(g->w[i].tid, NULL);
	pthread_barrier_destroy(&g->go);
	pthread_barrier_destroy(&g->done);
	free(g->w);
}

/* ---------------------------------------------------------------- */
/* Memory                                                             */

int bench_mem_map_empty(struct bench_mem *m, int backing, uint64_t len, char *why, size_t wl)
{
	memset(m, 0, sizeof(*m));
	m->backing = backing;
	m->len = len;
	m->fd = -1;
	if (backing == PGT_BACKING_HUGETLB) {
		long fr = bench_free_hugepages();

		m->ps = HUGE_2M;
		if (fr >= 0 && (uint64_t)fr < len / HUGE_2M) {
			snprintf(why, wl, "not enough free 2 MiB hugepages: %ld free, %llu needed "
				 "(echo N > /proc/sys/vm/nr_hugepages)", fr,
				 (unsigned long long)(len / HUGE_2M));
			return -ENOMEM;
		}
		m->fd = memfd_create("pgtrack-bench", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
		if (m->fd < 0 || ftruncate(m->fd, (off_t)len)) {
			snprintf(why, wl, "hugetlb memfd: %s", strerror(errno));
			goto err;
		}
		m->addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	} else {
		m->ps = (uint64_t)sysconf(_SC_PAGESIZE);
		m->addr = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	}
	if (m->addr == MAP_FAILED) {
		m->addr = NULL;
		snprintf(why, wl, "mmap %s: %s", pgt_backing_name(backing), strerror(errno));
		goto err;
	}
	/* 4 KiB means 4 KiB: no THP whatever the system setting. */
	if (backing == PGT_BACKING_ANON)
		(void)madvise(m->addr, len, MADV_NOHUGEPAGE);
	m->shift = (unsigned)__builtin_ctzll(m->ps);
	m->npages = len >> m->shift;
	return 0;
err:
	if (m->addr)
		munmap(m->addr, len);
	if (m->fd >= 0)
		close(m->fd);
	m->addr = NULL;
	m->fd = -1;
	return -ENOMEM;
}

int bench_mem_map(struct bench_mem *m, int backing, uint64_t len, char *why, size_t wl)
{
	int ret = bench_mem_map_empty(m, backing, len, why, wl);

	if (ret)
		return ret;
	/* Populate: the benchmark measures write tracking, not first touch. */
	if (madvise(m->addr, len, MADV_POPULATE_WRITE)) {
		if (backing == PGT_BACKING_HUGETLB) {
			snprintf(why, wl, "populating hugetlb: %s", strerror(errno));
			bench_mem_unmap(m);
			return -ENOMEM;
		}
		for (uint64_t p = 0; p < m->npages; p++)
			m->addr[p << m->shift] = 1;
	}
	return 0;
}

void bench_mem_unmap(struct bench_mem *m)
{
	if (m->addr)
		munmap(m->addr, m->len);
	if (m->fd >= 0)
		close(m->fd);
	m->addr = NULL;
	m->fd = -1;
}

/* ---------------------------------------------------------------- */
/* Raw kernel baselines                                               */

static int uffd_new(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), err;

		if (dev < 0)
			return -errno;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		err = errno;
		close(dev);
		if (fd < 0)
			return -err;
	}
	return fd;
}

/*
 * The kernel's own cost: get-and-clear of PAGE_IS_WRITTEN with a 4096-entry
 * vector, resumed from walk_end, results only summed.
 */
static int64_t raw_scan(int pmfd, const struct bench_mem *m, struct page_region *vec)
{
	uint64_t end = (uintptr_t)m->addr + m->len, cur = (uintptr_t)m->addr;
	int64_t total = 0;

	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = cur,
			.end = end,
			.vec = (uintptr_t)vec,
			.vec_len = VEC_LEN,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(pmfd, PAGEMAP_SCAN, &a);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++)
			total += (int64_t)((vec[i].end - vec[i].start) >> m->shift);
		if (a.walk_end <= cur)
			return -EIO;
		cur = a.walk_end;
	}
	return total;
}

/*
 * What a tracker without PAGEMAP_SCAN reads: 8 bytes of /proc/self/pagemap
 * per 4 KiB, a page counting as written when present without its uffd-wp
 * bit (any of its entries, for a 2 MiB page).
 */
static int64_t pagemap_read(int pmfd, const struct bench_mem *m, uint64_t *buf)
{
	uint64_t nent = m->len >> 12, per = m->ps >> 12, written = 0;
	off_t base = (off_t)(((uintptr_t)m->addr >> 12) * 8);

	for (uint64_t e = 0; e < nent;) {
		size_t want = nent - e < PM_CHUNK ? (size_t)(nent - e) : PM_CHUNK;
		ssize_t got = pread(pmfd, buf, want * 8, base + (off_t)(e * 8));
		size_t n;

		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		n = (size_t)got / 8;
		if (per == 1) {
			for (size_t i = 0; i < n; i++)
				written += (buf[i] & (PGT_PM_PRESENT | PGT_PM_UFFD_WP)) == PGT_PM_PRESENT;
		} else {
			/* chunks are whole hugepages: PM_CHUNK and len are multiples */
			for (size_t i = 0; i < n; i += per) {
				uint64_t any = 0;

				for (size_t j = 0; j < per; j++)
					any |= (buf[i + j] & (PGT_PM_PRESENT | PGT_PM_UFFD_WP)) ==
					       PGT_PM_PRESENT;
				written += any;
			}
		}
		e += n;
	}
	return (int64_t)written;
}

static int raw_attach(struct ctx *x, struct tracker *t, char *why, size_t wl)
{
	struct bench_mem *m = t->m;
	bool shared = m->backing == PGT_BACKING_HUGETLB;
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    (shared ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0),
	};
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)m->addr, .len = m->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)m->addr, .len = m->len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	const char *step;
	int64_t n;

	t->uffd = uffd_new();
	if (t->uffd < 0) {
		snprintf(why, wl, "userfaultfd: %s", strerror(-t->uffd));
		return t->uffd;
	}
	step = "UFFDIO_API with WP_ASYNC";
	if (ioctl(t->uffd, UFFDIO_API, &api))
		goto err;
	step = "UFFDIO_REGISTER (WP)";
	if (ioctl(t->uffd, UFFDIO_REGISTER, &reg))
		goto err;
	step = "UFFDIO_WRITEPROTECT";
	if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp))
		goto err;
	step = "open /proc/self/pagemap";
	t->pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (t->pmfd < 0)
		goto err;
	n = raw_scan(t->pmfd, m, x->vec);
	if (n < 0) {
		snprintf(why, wl, "PAGEMAP_SCAN: %s", strerror((int)-n));
		close(t->pmfd);
		close(t->uffd);
		t->pmfd = t->uffd = -1;
		return (int)n;
	}
	return 0;
err:
	snprintf(why, wl, "%s: %s", step, strerror(errno));
	close(t->uffd);
	t->uffd = -1;
	return -EOPNOTSUPP;
}

static void raw_detach(struct tracker *t)
{
	struct uffdio_range range = { .start = (uintptr_t)t->m->addr, .len = t->m->len };
	struct uffdio_writeprotect wp = { .range = range, .mode = 0 };

	(void)ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp);
	(void)ioctl(t->uffd, UFFDIO_UNREGISTER, &range);
	close(t->uffd);
	close(t->pmfd);
	t->uffd = t->pmfd = -1;
}

/* ---------------------------------------------------------------- */
/* Trackers                                                           */

static int engine_method(int m)
{
	switch (m) {
	case BM_UFFD_ASYNC: return PGT_DIRTY_UFFD_ASYNC;
	case BM_UFFD_SYNC: return PGT_DIRTY_UFFD_SYNC;
	case BM_MPROTECT: return PGT_DIRTY_MPROTECT;
	case BM_SOFT_DIRTY: return PGT_DIRTY_SOFT_DIRTY;
	default: return -1;
	}
}

static int attach(struct ctx *x, struct tracker *t, struct bench_mem *m, int method, char *why,
		  size_t wl)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = m->len,
		.gpa = GPA_BASE, .track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "bench",
		.addr = m->addr, .fd = m->fd, .page_size = m->ps, .quiesce = quiesce_noop,
	};
	int ret;

	memset(t, 0, sizeof(*t));
	t->method = method;
	t->m = m;
	t->uffd = t->pmfd = -1;
	if (method == BM_UNTRACKED)
		return 0;
	if (method == BM_RAW_IOCTL || method == BM_PAGEMAP_READ)
		return raw_attach(x, t, why, wl);
	if (!x->eng) {
		snprintf(why, wl, "pgt_engine_open: %s", strerror(-x->eng_err));
		return x->eng_err;
	}
	rc.dirty_method = engine_method(method);
	ret = pgt_region_register(x->eng, &rc, &t->r);
	if (ret) {
		char msg[256];

		take_log(msg, sizeof(msg));
		snprintf(why, wl, "pgt_region_register: %s%s%.100s", strerror(-ret),
			 msg[0] ? ": " : "", msg);
		return ret;
	}
	ret = pgt_dirty_view_open(t->r, &t->v);
	if (ret) {
		snprintf(why, wl, "pgt_dirty_view_open: %s", strerror(-ret));
		pgt_region_destroy(t->r);
		t->r = NULL;
	}
	return ret;
}

static void detach(struct tracker *t)
{
	if (t->method == BM_RAW_IOCTL || t->method == BM_PAGEMAP_READ) {
		raw_detach(t);
	} else if (t->r) {
		pgt_dirty_view_close(t->v);
		pgt_region_destroy(t->r);
		t->r = NULL;
	}
}

/* The timed operation of a round. */
static int64_t harvest(struct ctx *x, struct tracker *t)
{
	struct pgt_harvest h = {
		.size = sizeof(h), .bitmap = x->bitmap, .bitmap_words = x->bitmap_words,
	};

	switch (t->method) {
	case BM_UNTRACKED:
		return 0;
	case BM_RAW_IOCTL:
		return raw_scan(t->pmfd, t->m, x->vec);
	case BM_PAGEMAP_READ:
		return pagemap_read(t->pmfd, t->m, x->pmbuf);
	default:
		return pgt_dirty_harvest(t->v, &h);
	}
}

/* ---------------------------------------------------------------- */
/* Cells                                                              */

static struct cell *cell_new(struct ctx *x)
{
	if (x->ncells == x->cap) {
		size_t ncap = x->cap ? 2 * x->cap : 64;
		struct cell *c = realloc(x->cells, ncap * sizeof(*c));

		if (!c)
			return NULL;
		x->cells = c;
		x->cap = ncap;
	}
	memset(&x->cells[x->ncells], 0, sizeof(x->cells[0]));
	return &x->cells[x->ncells++];
}

static struct cell *find(struct ctx *x, int method, int backing, uint64_t size, int fi,
			 unsigned nw)
{
	for (size_t i = 0; i < x->ncells; i++) {
		struct cell *c = &x->cells[i];

		if (c->method == method && c->backing == backing && c->size == size &&
		    c->fi == fi && c->writers == nw)
			return c;
	}
	return NULL;
}

static bool ok(const struct cell *c)
{
	return c && c->status == CS_OK && c->n > 0;
}

static void cell_fail(struct cell *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cell_fail(struct cell *c, int status, const char *fmt, ...)
{
	va_list ap;

	c->status = status;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

static void placement(const struct ctx *x, int method, unsigned nw, char *buf, size_t len)
{
	char w[32];

	if (nw == 1)
		snprintf(w, sizeof(w), "cpu%d", x->wcpu[0]);
	else
		snprintf(w, sizeof(w), "cpu%d,cpu%d", x->wcpu[0], x->wcpu[1]);
	switch (method) {
	case BM_UNTRACKED:
		snprintf(buf, len, "writers=%s", w);
		break;
	case BM_UFFD_SYNC:
		snprintf(buf, len, "harvester=cpu%d writers=%s uffd-handler=cpu%d",
			 x->harvester_cpu, w, x->handler_cpu);
		break;
	case BM_MPROTECT:
		snprintf(buf, len, "harvester=cpu%d writers=%s sigsegv-on-writer",
			 x->harvester_cpu, w);
		break;
	default:
		snprintf(buf, len, "harvester=cpu%d writers=%s", x->harvester_cpu, w);
	}
}

/*
 * mprotect splits the VMA around every dirty run until the next harvest
 * merges them back: about 2 VMAs per run. Simulate the round's writes (the
 * writers' shares interleaved) and return the largest number of runs.
 */
static uint64_t predict_runs(struct ctx *x, const uint32_t *pages, size_t k, unsigned nw,
			     uint64_t npages)
{
	uint8_t *s = x->scratch;
	uint64_t runs = 0, max = 0;
	size_t per = (k + nw - 1) / nw;

	for (size_t i = 0; i < per; i++) {
		for (unsigned w = 0; w < nw; w++) {
			size_t lo = k * w / nw, hi = k * (w + 1) / nw;
			uint64_t p;
			bool l, r;

			if (lo + i >= hi)
				continue;
			p = pages[lo + i];
			l = p > 0 && s[p - 1];
			r = p + 1 < npages && s[p + 1];
			s[p] = 1;
			if (!l && !r)
				runs++;
			else if (l && r)
				runs--;
			if (runs > max)
				max = runs;
		}
	}
	for (size_t i = 0; i < k; i++)
		s[pages[i]] = 0;
	return max;
}

/* One round: write, then time the harvest. Returns 0 or -errno. */
static int round_once(struct ctx *x, struct wgroup *g, struct tracker *t, const uint32_t *pages,
		      size_t k, struct cell *c)
{
	uint64_t wsum = 0, t0, t1;
	int64_t n;
	bool failed = false;

	g->pages = pages;
	g->k = k;
	g->stamp++;
	t0 = bench_now_ns();
	pthread_barrier_wait(&g->go);
	pthread_barrier_wait(&g->done);
	for (unsigned i = 0; i < g->nw; i++) {
		wsum += g->w[i].ns;
		failed |= g->w[i].failed;
	}
	if (failed)
		return -EFAULT;
	t1 = bench_now_ns();
	n = harvest(x, t);
	t1 = bench_now_ns() - t1;
	if (c)
		c->last_round_ns = bench_now_ns() - t0;
	if (n < 0)
		return (int)n;
	if (t->method == BM_PAGEMAP_READ) {
		/* untimed: clear for the next round */
		int64_t m = raw_scan(t->pmfd, t->m, x->vec);

		if (m < 0)
			return (int)m;
	}
	if (!c)
		return 0;
	if (c->n == c->cap) {
		unsigned ncap = c->cap ? 2 * c->cap : 16;
		uint64_t *h = realloc(c->harvest, ncap * sizeof(*h));
		uint64_t *rp = h ? realloc(c->reported, ncap * sizeof(*rp)) : NULL;
		double *w = rp ? realloc(c->wpp, ncap * sizeof(*w)) : NULL;

		if (h)
			c->harvest = h;
		if (rp)
			c->reported = rp;
		if (!w)
			return -ENOMEM;
		c->wpp = w;
		c->cap = ncap;
	}
	c->harvest[c->n] = t1;
	c->wpp[c->n] = (double)wsum / (double)k;
	c->reported[c->n] = (uint64_t)n;
	if (t->method != BM_UNTRACKED && (uint64_t)n != k)
		c->mismatch++;
	c->n++;
	return 0;
}

static const char *round_error(int ret, int method, char *buf, size_t len)
{
	char msg[256];

	take_log(msg, sizeof(msg));
	if (ret == -EFAULT && method == BM_MPROTECT)
		snprintf(buf, len, "a write fault could not be resolved (mprotect failing, "
			 "likely ENOMEM past vm.max_map_count=%ld)%s%.60s", bench_max_map_count(),
			 msg[0] ? ": " : "", msg);
	else if (ret == -EFAULT)
		snprintf(buf, len, "a writer took an unexpected SIGSEGV");
	else
		snprintf(buf, len, "harvest: %s%s%.100s", strerror(-ret), msg[0] ? ": " : "", msg);
	return buf;
}

/* One block of one method in one cell: attach, warm up, measure, detach. */
static void run_block(struct ctx *x, struct bench_mem *m, struct wgroup *g, struct cell *c,
		      unsigned block, uint64_t start)
{
	const struct bench_opts *o = x->o;
	uint64_t k = c->pages, block_ns = 0;
	double budget_ns = o->cell_budget_s * 1e9 / x->blocks;
	struct tracker t;
	char why[192];
	int ret;

	if (c->method == BM_MPROTECT) {
		uint64_t runs = predict_runs(x, x->perm + start, k, g->nw, m->npages);
		long need = bench_map_count() + 2 * (long)runs + 16;

		if (need > x->max_maps - 256) {
			cell_fail(c, CS_SKIPPED, "mprotect would need about %ld VMAs (%llu dirty "
				  "runs split the mapping) > vm.max_map_count %ld", need,
				  (unsigned long long)runs, x->max_maps);
			return;
		}
	}
	ret = attach(x, &t, m, c->method, why, sizeof(why));
	if (ret) {
		cell_fail(c, CS_SKIPPED, "%s", why);
		return;
	}
	/* Warm-up round (caches, TLB, page tables, the handler thread), unless
	 * a round is so long that warming up is noise. */
	if (c->last_round_ns < 1000000000ull) {
		ret = round_once(x, g, &t, x->perm + (start + m->npages - k) % m->npages, k, NULL);
		if (ret) {
			cell_fail(c, CS_ERROR, "%s", round_error(ret, c->method, why, sizeof(why)));
			detach(&t);
			return;
		}
	}
	for (unsigned r = 0; r < x->rpb; r++) {
		uint64_t t0;

		if (r && block_ns > budget_ns)
			break;
		t0 = bench_now_ns();
		ret = round_once(x, g, &t, x->perm + (start + r * k) % m->npages, k, c);
		block_ns += bench_now_ns() - t0;
		if (ret) {
			cell_fail(c, CS_ERROR, "%s", round_error(ret, c->method, why, sizeof(why)));
			break;
		}
	}
	c->spent_s += (double)block_ns / 1e9;
	(void)block;
	detach(&t);
}

static bool method_on(const struct ctx *x, int m)
{
	return x->o->methods & (1u << m);
}

/* Cells of one (backing, size); runs them all. */
static void run_region(struct ctx *x, int backing, uint64_t size)
{
	char label[16], why[192];
	struct bench_mem m;
	uint64_t rng = x->o->seed ^ size ^ (uint64_t)backing << 56;
	int ret = 0;

	bench_size_label(size, label, sizeof(label));
	why[0] = 0;
	if (backing == PGT_BACKING_HUGETLB && x->o->no_hugetlb) {
		snprintf(why, sizeof(why), "--no-hugetlb");
		ret = -ECANCELED;
	} else if (backing == PGT_BACKING_ANON && x->o->no_anon) {
		snprintf(why, sizeof(why), "--no-anon");
		ret = -ECANCELED;
	} else {
		ret = bench_mem_map(&m, backing, size, why, sizeof(why));
	}
	/* Create every cell first, so skipped ones are reported too. */
	size_t first = x->ncells;

	for (int fi = 0; fi < NFRAC; fi++) {
		for (unsigned nw = 1; nw <= MAXW; nw++) {
			for (int oi = 0; oi < NORDER; oi++) {
				int meth = order[oi];
				struct cell *c;
				uint64_t ps = backing == PGT_BACKING_HUGETLB ? HUGE_2M
						: (uint64_t)sysconf(_SC_PAGESIZE);
				uint64_t np = size / ps;

				if (!method_on(x, meth))
					continue;
				c = cell_new(x);
				if (!c)
					return;
				c->method = meth;
				c->backing = backing;
				c->size = size;
				c->page_size = ps;
				c->npages = np;
				c->fi = fi;
				c->writers = nw;
				c->pages = (uint64_t)llround(fracs[fi] * (double)np);
				if (!c->pages)
					c->pages = 1;
				placement(x, meth, nw, c->placement, sizeof(c->placement));
				if (ret)
					cell_fail(c, CS_SKIPPED, "%s", why);
				else if (meth == BM_SOFT_DIRTY && !x->probe.soft_dirty)
					cell_fail(c, CS_SKIPPED, "probe: soft-dirty not available on "
						  "this kernel (%s; CONFIG_MEM_SOFT_DIRTY off)",
						  strerror(-x->probe.soft_dirty_error));
			}
		}
	}
	if (ret)
		return;

	/* A random order of the pages, twice, so any slice is contiguous. */
	x->perm = malloc(2 * m.npages * sizeof(*x->perm));
	x->scratch = calloc(m.npages, 1);
	x->bitmap_words = (m.npages + 63) / 64;
	x->bitmap = calloc(x->bitmap_words, sizeof(*x->bitmap));
	if (!x->perm || !x->scratch || !x->bitmap) {
		for (size_t i = first; i < x->ncells; i++)
			cell_fail(&x->cells[i], CS_ERROR, "out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < m.npages; i++)
		x->perm[i] = (uint32_t)i;
	for (uint64_t i = m.npages - 1; i > 0; i--) {
		uint64_t j = bench_rand(&rng) % (i + 1);
		uint32_t tmp = x->perm[i];

		x->perm[i] = x->perm[j];
		x->perm[j] = tmp;
	}
	memcpy(x->perm + m.npages, x->perm, m.npages * sizeof(*x->perm));

	bench_note("dirty: %s %s: %llu pages of %llu KiB", pgt_backing_name(backing), label,
		   (unsigned long long)m.npages, (unsigned long long)(m.ps >> 10));
	for (int fi = 0; fi < NFRAC; fi++) {
		for (unsigned nw = 1; nw <= MAXW; nw++) {
			struct wgroup g;
			uint64_t t0 = bench_now_ns();

			if (wgroup_start(x, &g, &m, nw))
				continue;
			for (unsigned b = 0; b < x->blocks; b++) {
				/* Same slices for every method of this block. */
				uint64_t start = bench_rand(&rng) % m.npages;

				for (int oi = 0; oi < NORDER; oi++) {
					int meth = order[b & 1 ? NORDER - 1 - oi : oi];
					struct cell *c = find(x, meth, backing, size, fi, nw);

					if (!c || c->status != CS_OK)
						continue;
					run_block(x, &m, &g, c, b, start);
				}
			}
			wgroup_stop(&g);
			bench_note("dirty: %s %s %g%% w%u done in %.1f s", pgt_backing_name(backing),
				   label, fracs[fi] * 100, nw, (double)(bench_now_ns() - t0) / 1e9);
		}
	}
out:
	free(x->perm);
	free(x->scratch);
	free(x->bitmap);
	x->perm = NULL;
	x->scratch = NULL;
	x->bitmap = NULL;
	bench_mem_unmap(&m);
}

/* ---------------------------------------------------------------- */
/* Output                                                             */

static void summarize(struct cell *c)
{
	uint64_t *tmp;
	double *dt;

	if (!c->n)
		return;
	tmp = malloc(c->n * sizeof(*tmp));
	dt = malloc(c->n * sizeof(*dt));
	if (!tmp || !dt) {
		free(tmp);
		free(dt);
		return;
	}
	memcpy(tmp, c->harvest, c->n * sizeof(*tmp));
	c->h_med = bench_quantile_u64(tmp, c->n, 0.5);
	c->h_p90 = bench_quantile_u64(tmp, c->n, 0.9);
	c->h_spread = c->h_med ? (double)(bench_quantile_u64(tmp, c->n, 0.75) -
					  bench_quantile_u64(tmp, c->n, 0.25)) / (double)c->h_med : 0;
	memcpy(tmp, c->reported, c->n * sizeof(*tmp));
	c->rep_med = bench_quantile_u64(tmp, c->n, 0.5);
	memcpy(dt, c->wpp, c->n * sizeof(*dt));
	c->w_med = bench_quantile_dbl(dt, c->n, 0.5);
	c->w_p90 = bench_quantile_dbl(dt, c->n, 0.9);
	c->w_spread = c->w_med > 0 ? (bench_quantile_dbl(dt, c->n, 0.75) -
				      bench_quantile_dbl(dt, c->n, 0.25)) / c->w_med : 0;
	free(tmp);
	free(dt);
}

static struct json_object *cell_json(const struct cell *c)
{
	struct json_object *e = json_object_new_object();
	char label[16];
	bool has = c->n > 0, harv = has && c->method != BM_UNTRACKED;

	bench_size_label(c->size, label, sizeof(label));
	bench_json_str(e, "bench", "dirty");
	bench_json_str(e, "method", bench_method_name(c->method));
	bench_json_str(e, "backing", pgt_backing_name(c->backing));
	bench_json_u64(e, "page_size", c->page_size, true);
	bench_json_u64(e, "size", c->size, true);
	bench_json_str(e, "size_label", label);
	bench_json_dbl(e, "dirty_fraction", fracs[c->fi], true);
	bench_json_dbl(e, "dirty_percent", fracs[c->fi] * 100, true);
	bench_json_u64(e, "writers", c->writers, true);
	bench_json_str(e, "placement", c->placement);
	bench_json_str(e, "status", status_names[c->status]);
	if (c->status != CS_OK)
		bench_json_str(e, "reason", c->reason);
	bench_json_u64(e, "rounds", c->n, true);
	bench_json_u64(e, "pages", c->pages, true);
	bench_json_u64(e, "region_pages", c->npages, true);
	bench_json_u64(e, "harvest_median_ns", c->h_med, harv);
	bench_json_u64(e, "harvest_p90_ns", c->h_p90, harv);
	bench_json_dbl(e, "harvest_spread", c->h_spread, harv);
	bench_json_dbl(e, "writer_ns_per_page", c->w_med, has);
	bench_json_dbl(e, "writer_spread", c->w_spread, has);
	bench_json_dbl(e, "writer_ns_per_page_p90", c->w_p90, has);
	bench_json_u64(e, "reported_pages_median", c->rep_med, harv);
	bench_json_u64(e, "rounds_reporting_other_than_written", c->mismatch, harv);
	return e;
}

/* Total tracking cost of one round: writer slowdown over untracked plus harvest. */
static bool round_cost(struct ctx *x, const struct cell *c, double *cost)
{
	const struct cell *u;

	if (!ok(c))
		return false;
	u = find(x, BM_UNTRACKED, c->backing, c->size, c->fi, c->writers);
	if (!ok(u))
		return false;
	*cost = (c->w_med - u->w_med) * (double)c->pages + (double)c->h_med;
	return *cost > 0;
}

static struct json_object *cell_ref(const struct cell *c)
{
	struct json_object *e = json_object_new_object();
	char label[16];

	bench_size_label(c->size, label, sizeof(label));
	bench_json_str(e, "backing", pgt_backing_name(c->backing));
	bench_json_str(e, "size_label", label);
	bench_json_dbl(e, "dirty_fraction", fracs[c->fi], true);
	bench_json_u64(e, "writers", c->writers, true);
	return e;
}

/* Sizes the user asked for, largest first. */
static void sizes_desc(const struct bench_opts *o, uint64_t *s)
{
	memcpy(s, o->sizes, o->nsizes * sizeof(*s));
	for (unsigned i = 0; i < o->nsizes; i++)
		for (unsigned j = i + 1; j < o->nsizes; j++)
			if (s[j] > s[i]) {
				uint64_t t = s[i];

				s[i] = s[j];
				s[j] = t;
			}
}

/*
 * A ratio is trusted when the cells it divides have a spread (IQR / median
 * over their interleaved rounds) under SPREAD_MAX: the harvest, and with
 * @writer the writer cost too. At least 3 rounds are needed for a spread.
 */
static bool cell_trusted(const struct cell *c, bool writer)
{
	if (!ok(c) || c->n < 3)
		return false;
	if (c->method != BM_UNTRACKED && c->h_spread > SPREAD_MAX)
		return false;
	return !writer || c->w_spread <= SPREAD_MAX;
}

static void put_trusted(struct json_object *r, bool has, bool trusted)
{
	json_object_object_add(r, "trusted", has ? json_object_new_boolean(trusted) : NULL);
	bench_json_dbl(r, "spread_max", SPREAD_MAX, true);
}

/* Copy the named primitive costs (NULL-terminated) into ratio @r. */
static void prim_attach(struct ctx *x, struct json_object *r, const char *const *keys)
{
	struct json_object *o = json_object_new_object(), *v;

	for (; *keys; keys++)
		if (json_object_object_get_ex(x->prim, *keys, &v))
			json_object_object_add(o, *keys, json_object_get(v));
	json_object_object_add(r, "primitives", o);
}

static double prim_get(struct ctx *x, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(x->prim, key, &v) || !v)
		return 0;
	return json_object_get_double(v);
}

static void ratio_engine_vs_raw(struct ctx *x, struct json_object *ratios)
{
	static const char *const pk[] = { "scan_clean_4k", "scan_written_4k", "scan_clean_2m",
					  "scan_written_2m", NULL };
	struct json_object *cells = json_object_new_array(), *r;
	double *v = calloc(x->ncells, sizeof(*v)), worst = 0;
	const struct cell *worst_c = NULL;
	size_t n = 0, untrusted = 0;

	for (size_t i = 0; v && i < x->ncells; i++) {
		const struct cell *e = &x->cells[i], *raw;
		struct json_object *j;

		if (e->method != BM_UFFD_ASYNC || !ok(e))
			continue;
		raw = find(x, BM_RAW_IOCTL, e->backing, e->size, e->fi, e->writers);
		if (!ok(raw) || !raw->h_med)
			continue;
		v[n] = (double)e->h_med / (double)raw->h_med;
		j = cell_ref(e);
		bench_json_u64(j, "engine_ns", e->h_med, true);
		bench_json_u64(j, "raw_ns", raw->h_med, true);
		bench_json_dbl(j, "ratio", v[n], true);
		json_object_object_add(j, "trusted", json_object_new_boolean(
			cell_trusted(e, false) && cell_trusted(raw, false)));
		untrusted += !(cell_trusted(e, false) && cell_trusted(raw, false));
		json_object_array_add(cells, j);
		if (v[n] > worst) {
			worst = v[n];
			worst_c = e;
		}
		n++;
	}
	r = bench_ratio(n ? bench_quantile_dbl(v, n, 0.5) : 0, n > 0, "<=", 1.10,
			"uffd-async engine harvest median / raw PAGEMAP_SCAN loop median, same "
			"region, backing, size, dirty fraction and writers; value = median over "
			"all such cells");
	bench_json_dbl(r, "worst", worst, worst_c != NULL);
	json_object_object_add(r, "worst_cell", worst_c ? cell_ref(worst_c) : NULL);
	if (worst_c)
		json_object_object_add(r, "met_all_cells", json_object_new_boolean(worst <= 1.10));
	json_object_object_add(r, "cells", cells);
	/* the median over cells holds when most cells are tight */
	put_trusted(r, n > 0, untrusted * 2 < n);
	bench_json_u64(r, "untrusted_cells", untrusted, true);
	prim_attach(x, r, pk);
	json_object_object_add(ratios, "engine_vs_raw_ioctl", r);
	free(v);
}

/*
 * What the primitives predict for a pagemap ratio at 1 % dirty: pagemap read
 * per page over the walk per page. 4 KiB: every page table holds a written
 * page at 1 % (1 - 0.99^512 ~ 1), so one sparse-flush cost per 512 pages,
 * plus the written-page surcharge for the rest.
 */
static void pagemap_model(struct ctx *x, struct json_object *r, int backing)
{
	static const char *const k4[] = { "pagemap_read_4k", "scan_clean_4k", "scan_written_4k",
					  "scan_sparse_flush_4k_peer_parked", NULL };
	static const char *const k2[] = { "pagemap_read_2m_per_4k_entry", "scan_clean_2m",
					  "scan_written_2m", NULL };
	const double f = fracs[1];
	double num, den;

	if (backing == PGT_BACKING_HUGETLB) {
		prim_attach(x, r, k2);
		num = 512 * prim_get(x, "pagemap_read_2m_per_4k_entry");
		den = prim_get(x, "scan_clean_2m") +
		      f * (prim_get(x, "scan_written_2m") - prim_get(x, "scan_clean_2m"));
		bench_json_str(r, "model", "512 x pagemap_read_2m_per_4k_entry / (scan_clean_2m "
			       "+ 0.01 x (scan_written_2m - scan_clean_2m))");
	} else {
		double extra = prim_get(x, "scan_written_4k") - prim_get(x, "scan_clean_4k");

		prim_attach(x, r, k4);
		num = prim_get(x, "pagemap_read_4k");
		den = prim_get(x, "scan_clean_4k") +
		      prim_get(x, "scan_sparse_flush_4k_peer_parked") / 512 +
		      (f - 1.0 / 512) * (extra > 0 ? extra : 0);
		bench_json_str(r, "model", "pagemap_read_4k / (scan_clean_4k + "
			       "scan_sparse_flush_4k_peer_parked / 512 + (0.01 - 1/512) x "
			       "(scan_written_4k - scan_clean_4k))");
	}
	bench_json_dbl(r, "predicted_from_primitives", num / den, num > 0 && den > 0);
}

/*
 * Tracking-cost ratios are fault-bound: (method fault) / (WP-async fault),
 * harvests left out. uffd-sync's cell has one writer on the handler's CPU
 * and one across: the mean of both fault costs.
 */
static void cost_model(struct ctx *x, struct json_object *r, int method)
{
	static const char *const km[] = { "mprotect_fault_4k", "wp_async_fault_4k",
					  "write_plain_4k", "scan_written_4k", NULL };
	static const char *const ks[] = { "uffd_sync_fault_cross_cpu",
					  "uffd_sync_fault_same_cpu", "wp_async_fault_4k",
					  "write_plain_4k", "scan_written_4k", NULL };
	double a = prim_get(x, "wp_async_fault_4k"), m;

	if (method == BM_MPROTECT) {
		prim_attach(x, r, km);
		m = prim_get(x, "mprotect_fault_4k");
		bench_json_str(r, "model", "mprotect_fault_4k / wp_async_fault_4k");
	} else {
		prim_attach(x, r, ks);
		m = (prim_get(x, "uffd_sync_fault_cross_cpu") +
		     prim_get(x, "uffd_sync_fault_same_cpu")) / 2 - prim_get(x, "write_plain_4k");
		bench_json_str(r, "model", "(mean of uffd_sync_fault_cross_cpu and _same_cpu - "
			       "write_plain_4k) / wp_async_fault_4k");
	}
	bench_json_dbl(r, "predicted_from_primitives", m / a, m > 0 && a > 0);
}

static void ratio_pagemap(struct ctx *x, struct json_object *ratios, int backing,
			  const char *key, bool goal)
{
	uint64_t sz[BENCH_MAX_SIZES];
	struct json_object *per = json_object_new_array(), *r;
	double head = 0;
	const struct cell *hc = NULL;
	bool trusted = false;
	char what[256];

	sizes_desc(x->o, sz);
	for (unsigned i = 0; i < x->o->nsizes; i++) {
		const struct cell *e = find(x, BM_UFFD_ASYNC, backing, sz[i], 1, 1);
		const struct cell *p = find(x, BM_PAGEMAP_READ, backing, sz[i], 1, 1);
		struct json_object *j;
		double v;

		if (!ok(e) || !ok(p) || !e->h_med)
			continue;
		v = (double)p->h_med / (double)e->h_med;
		j = cell_ref(e);
		bench_json_u64(j, "pagemap_read_ns", p->h_med, true);
		bench_json_u64(j, "engine_ns", e->h_med, true);
		bench_json_dbl(j, "ratio", v, true);
		json_object_array_add(per, j);
		if (!hc) {
			hc = e;
			head = v;
			trusted = cell_trusted(e, false) && cell_trusted(p, false);
		}
	}
	snprintf(what, sizeof(what), "pagemap pread+parse median / uffd-async engine harvest "
		 "median on %s at 1%% dirty, 1 writer, largest size measured",
		 backing == PGT_BACKING_HUGETLB ? "2 MiB hugetlb" : "4 KiB anon");
	r = bench_ratio(head, hc != NULL, goal ? ">=" : NULL, 20, what);
	json_object_object_add(r, "cell", hc ? cell_ref(hc) : NULL);
	json_object_object_add(r, "sizes", per);
	put_trusted(r, hc != NULL, trusted);
	pagemap_model(x, r, backing);
	json_object_object_add(ratios, key, r);
}

static void ratio_cost(struct ctx *x, struct json_object *ratios, int method, const char *key)
{
	uint64_t sz[BENCH_MAX_SIZES];
	struct json_object *per = json_object_new_array(), *r;
	static const int backings[] = { PGT_BACKING_ANON, PGT_BACKING_HUGETLB };
	double head = 0;
	const struct cell *hc = NULL;
	bool trusted = false;
	char what[320];

	sizes_desc(x->o, sz);
	for (int b = 0; b < 2; b++) {
		for (unsigned i = 0; i < x->o->nsizes; i++) {
			const struct cell *m = find(x, method, backings[b], sz[i], 2, 2);
			const struct cell *e = find(x, BM_UFFD_ASYNC, backings[b], sz[i], 2, 2);
			struct json_object *j;
			double cm, ce;

			if (!round_cost(x, m, &cm) || !round_cost(x, e, &ce))
				continue;
			j = cell_ref(e);
			bench_json_dbl(j, "method_cost_ns", cm, true);
			bench_json_dbl(j, "engine_cost_ns", ce, true);
			bench_json_dbl(j, "ratio", cm / ce, true);
			json_object_array_add(per, j);
			if (!hc && backings[b] == PGT_BACKING_ANON) {
				hc = e;
				head = cm / ce;
				trusted = cell_trusted(m, true) && cell_trusted(e, true) &&
					  cell_trusted(find(x, BM_UNTRACKED, e->backing, e->size,
							    e->fi, e->writers), true);
			}
		}
	}
	snprintf(what, sizeof(what), "total tracking cost per round, %s / uffd-async engine: "
		 "(writer ns per page - untracked writer ns per page) x pages + harvest "
		 "median; 2 writers, 10%% dirty; value on 4 KiB anon at the largest size",
		 bench_method_name(method));
	r = bench_ratio(head, hc != NULL, ">=", 5, what);
	json_object_object_add(r, "cell", hc ? cell_ref(hc) : NULL);
	json_object_object_add(r, "cells", per);
	put_trusted(r, hc != NULL, trusted);
	cost_model(x, r, method);
	json_object_object_add(ratios, key, r);
}

static void ratio_ns_per_page(struct ctx *x, struct json_object *ratios)
{
	uint64_t sz[BENCH_MAX_SIZES];
	struct json_object *per = json_object_new_array(), *fits = json_object_new_array(), *r;
	static const int backings[] = { PGT_BACKING_ANON, PGT_BACKING_HUGETLB };
	double head = 0;
	const struct cell *hc = NULL;

	sizes_desc(x->o, sz);
	for (int b = 0; b < 2; b++) {
		for (unsigned i = 0; i < x->o->nsizes; i++) {
			for (unsigned nw = 1; nw <= MAXW; nw++) {
				double sx = 0, sy = 0, sxx = 0, sxy = 0;
				int np = 0;

				for (int fi = 0; fi < NFRAC; fi++) {
					const struct cell *e = find(x, BM_UFFD_ASYNC, backings[b],
								    sz[i], fi, nw);
					const struct cell *raw = find(x, BM_RAW_IOCTL, backings[b],
								      sz[i], fi, nw);
					struct json_object *j;
					double d, pp;

					if (!ok(e) || !ok(raw))
						continue;
					d = (double)e->h_med - (double)raw->h_med;
					pp = d / (double)e->pages;
					j = cell_ref(e);
					bench_json_dbl(j, "engine_minus_raw_ns", d, true);
					bench_json_u64(j, "pages", e->pages, true);
					bench_json_dbl(j, "ns_per_dirty_page", pp, true);
					json_object_array_add(per, j);
					sx += (double)e->pages;
					sy += d;
					sxx += (double)e->pages * (double)e->pages;
					sxy += (double)e->pages * d;
					np++;
					if (!hc && backings[b] == PGT_BACKING_ANON && fi == NFRAC - 1 &&
					    nw == 1) {
						hc = e;
						head = pp;
					}
				}
				if (np >= 2 && np * sxx - sx * sx > 0) {
					double slope = (np * sxy - sx * sy) / (np * sxx - sx * sx);
					struct json_object *j = json_object_new_object();
					char label[16];

					bench_size_label(sz[i], label, sizeof(label));
					bench_json_str(j, "backing", pgt_backing_name(backings[b]));
					bench_json_str(j, "size_label", label);
					bench_json_u64(j, "writers", nw, true);
					bench_json_dbl(j, "slope_ns_per_page", slope, true);
					bench_json_dbl(j, "fixed_ns_per_harvest", (sy - slope * sx) / np,
						       true);
					json_object_array_add(fits, j);
				}
			}
		}
	}
	r = bench_ratio(head, hc != NULL, "<=", 33,
			"(uffd-async engine harvest median - raw PAGEMAP_SCAN median) / dirty "
			"pages, on 4 KiB anon, largest size, 100% dirty, 1 writer (most pages, so "
			"fixed costs are amortised); per-cell values and a least-squares fit over "
			"the dirty fractions (slope = marginal ns per page, fixed = per harvest) "
			"are listed");
	json_object_object_add(r, "cell", hc ? cell_ref(hc) : NULL);
	json_object_object_add(r, "cells", per);
	json_object_object_add(r, "fits", fits);
	json_object_object_add(ratios, "ns_per_dirty_page", r);
}

static void methodology(struct ctx *x, struct json_object *info)
{
	struct json_object *d = json_object_new_object();
	char buf[512];

	snprintf(buf, sizeof(buf), "harvester (main) on cpu%d; writer 0 on cpu%d, writer 1 on "
		 "cpu%d; the engine's uffd handler thread on cpu%d (same CPU as writer 0); "
		 "writers are parked at a barrier while the harvest is timed",
		 x->harvester_cpu, x->wcpu[0], x->wcpu[1], x->handler_cpu);
	bench_json_str(d, "placement", buf);
	bench_json_str(d, "round", "writers store one word into each page of a random slice "
		       "(fraction x pages) split between them, each timing its own loop; then "
		       "one harvest is timed on the harvester. writer_ns_per_page = sum of the "
		       "writers' loop times / pages");
	snprintf(buf, sizeof(buf), "per cell, %u blocks; in each block every method is "
		 "attached, warmed up with one untimed round, measured for up to %u rounds "
		 "(fewer past a %.0f s budget per cell) and detached; the method order reverses "
		 "every block (ABBA...); all methods of a block see the same page slices; "
		 "figures are medians over all rounds", x->blocks, x->rpb, x->o->cell_budget_s);
	bench_json_str(d, "interleaving", buf);
	bench_json_str(d, "engine_output", "pgt_dirty_harvest into a KVM-layout bitmap, one view");
	bench_json_str(d, "raw_ioctl", "uffd WP-async registered by hand; PAGEMAP_SCAN "
		       "get-and-clear (PM_SCAN_WP_MATCHING|PM_SCAN_CHECK_WPASYNC on "
		       "PAGE_IS_WRITTEN), 4096-entry vector resumed from walk_end; page counts summed");
	bench_json_str(d, "pagemap_read", "pread of /proc/self/pagemap for the range in 512 KiB "
		       "chunks, parsed (present and not uffd-wp), under the raw registration; "
		       "cleared untimed afterwards");
	json_object_object_add(info, "dirty", d);
}

int bench_dirty(const struct bench_opts *o, struct json_object *results,
		struct json_object *ratios, struct json_object *info)
{
	struct ctx x = { .o = o };
	struct pgt_engine_config ec = {
		.size = sizeof(ec), .log = engine_log, .log_level = PGT_LOG_WARN,
		.fault_threads = 1,
	};
	struct sigaction sa = { .sa_sigaction = guard_segv, .sa_flags = SA_SIGINFO | SA_NODEFER };
	static const int backings[] = { PGT_BACKING_ANON, PGT_BACKING_HUGETLB };
	int cpus[2], ncpu = bench_cpus(cpus, 2);

	verbose_log = o->verbose;
	x.probe.size = sizeof(x.probe);
	pgt_probe(&x.probe);
	x.harvester_cpu = cpus[0];
	x.wcpu[0] = cpus[ncpu > 1 ? 1 : 0];
	x.wcpu[1] = cpus[0];
	x.handler_cpu = x.wcpu[0];
	x.blocks = o->reps < BLOCKS_MAX ? o->reps : BLOCKS_MAX;
	x.rpb = (o->reps + x.blocks - 1) / x.blocks;
	x.max_maps = bench_max_map_count();
	x.vec = calloc(VEC_LEN, sizeof(*x.vec));
	x.pmbuf = malloc(PM_CHUNK * sizeof(*x.pmbuf));
	if (!x.vec || !x.pmbuf) {
		free(x.vec);
		free(x.pmbuf);
		return -ENOMEM;
	}

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	/* Handler threads inherit the creator's affinity: open pinned. */
	bench_pin_self(x.handler_cpu);
	x.eng_err = pgt_engine_open(&ec, &x.eng);
	bench_pin_self(x.harvester_cpu);
	bench_note("dirty: primitive costs\n");
	x.prim = bench_dirty_primitives(x.harvester_cpu, x.wcpu[0], !o->no_hugetlb);
	bench_pin_self(x.harvester_cpu);

	for (int b = 0; b < 2; b++)
		for (unsigned i = 0; i < o->nsizes; i++)
			run_region(&x, backings[b], o->sizes[i]);

	pgt_engine_close(x.eng);
	sigaction(SIGSEGV, &old_segv, NULL);
	bench_unpin_self();

	for (size_t i = 0; i < x.ncells; i++) {
		summarize(&x.cells[i]);
		json_object_array_add(results, cell_json(&x.cells[i]));
	}
	ratio_engine_vs_raw(&x, ratios);
	ratio_pagemap(&x, ratios, PGT_BACKING_HUGETLB, "pagemap_read_vs_engine_2m", true);
	ratio_pagemap(&x, ratios, PGT_BACKING_ANON, "pagemap_read_vs_engine_4k", false);
	ratio_cost(&x, ratios, BM_MPROTECT, "mprotect_vs_engine");
	ratio_cost(&x, ratios, BM_UFFD_SYNC, "uffd_sync_vs_engine");
	ratio_ns_per_page(&x, ratios);
	methodology(&x, info);
	json_object_object_add(info, "primitives", x.prim);

	for (size_t i = 0; i < x.ncells; i++) {
		free(x.cells[i].harvest);
		free(x.cells[i].wpp);
		free(x.cells[i].reported);
	}
	free(x.cells);
	free(x.vec);
	free(x.pmbuf);
	return 0;
}
