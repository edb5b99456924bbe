/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench touch: first-touch faults per second through the engine
 * (a region with PGT_TRACK_TOUCH, no provider: zero pages) against a minimal
 * userfaultfd MISSING handler (one thread poll()ing the uffd and resolving
 * with UFFDIO_ZEROPAGE, or UFFDIO_COPY of a zero 2 MiB buffer on hugetlb),
 * on the same mapping, emptied before every run.
 *
 * One pinned thread touches every page in ascending order and times its
 * loop. The handler (the engine's fault thread or the raw one) is pinned to
 * the toucher's CPU ("same-cpu") or to the other one ("cross-cpu"); engine
 * and raw runs alternate (ABBA...) under the same placement and the medians
 * are compared.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/memfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pgtrack.h>

#include "hal/compat_uapi.h"
#include "perf/bench.h"

#define HUGE_2M (2ull << 20)
#define GPA_BASE (1ull << 32)
#define WARM_PAGES 2048

enum { TM_ENGINE = 0, TM_RAW, TM__COUNT };
static const char *const tm_names[TM__COUNT] = { "engine", "raw-uffd" };
enum { PL_SAME = 0, PL_CROSS, PL__COUNT };
static const char *const pl_names[PL__COUNT] = { "same-cpu", "cross-cpu" };

struct tcell {
	int method, backing, access, placement;
	uint64_t size, page_size, npages;
	char placement_str[96];
	int status; /* 0 ok, 1 skipped, 2 error */
	char reason[192];
	unsigned n;
	uint64_t ns[256];      /* per run: toucher loop time */
	uint64_t miscount;     /* runs whose fault count != pages */
	uint64_t med_ns, p90_ns;
};

struct tctx {
	const struct bench_opts *o;
	struct pgt_probe probe;
	pgt_engine *eng[PL__COUNT];
	int eng_err[PL__COUNT];
	int toucher_cpu, handler_cpu[PL__COUNT], main_cpu;
	void *zero2m;          /* raw hugetlb COPY source */
	struct tcell *cells;
	size_t ncells, cap;
};

/* ---------------------------------------------------------------- */

struct toucher {
	uint8_t *addr;
	unsigned shift;
	uint64_t npages;
	bool write;
	int cpu;
	uint64_t ns;
	uint64_t sum;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	uint64_t t0, sum = 0;

	bench_pin_self(t->cpu);
	t0 = bench_now_ns();
	if (t->write) {
		for (uint64_t p = 0; p < t->npages; p++)
			*(volatile uint8_t *)(t->addr + (p << t->shift)) = 1;
	} else {
		for (uint64_t p = 0; p < t->npages; p++)
			sum += *(volatile uint8_t *)(t->addr + (p << t->shift));
	}
	t->ns = bench_now_ns() - t0;
	t->sum = sum;
	return NULL;
}

static int touch_all(struct tctx *x, struct bench_mem *m, uint64_t npages, bool write, uint64_t *ns)
{
	struct toucher t = {
		.addr = m->addr, .shift = m->shift, .npages = npages, .write = write,
		.cpu = x->toucher_cpu,
	};
	pthread_t tid;
	int ret = pthread_create(&tid, NULL, toucher_main, &t);

	if (ret)
		return -ret;
	pthread_join(tid, NULL);
	*ns = t.ns;
	return 0;
}

/* ---------------------------------------------------------------- */

/* Give every page back, so the next run faults on all of them. */
static int tmem_empty(struct bench_mem *m)
{
	if (m->backing == PGT_BACKING_HUGETLB) {
		if (fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->len))
			return -errno;
	} else if (madvise(m->addr, m->len, MADV_DONTNEED)) {
		return -errno;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* The raw MISSING handler                                            */

struct raw {
	int uffd, stopfd;
	uint64_t ps;
	bool hugetlb;
	void *zero;
	int cpu;
	uint64_t faults, errors;
	pthread_t tid;
};

static void *raw_main(void *arg)
{
	struct raw *h = arg;
	struct pollfd pfd[2] = { { h->uffd, POLLIN, 0 }, { h->stopfd, POLLIN, 0 } };
	struct uffd_msg msgs[16];

	bench_pin_self(h->cpu);
	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(h->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			uint64_t a;
			int ret;

			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			a = msgs[i].arg.pagefault.address & ~(h->ps - 1);
			if (h->hugetlb) {
				struct uffdio_copy c = {
					.dst = a, .src = (uintptr_t)h->zero, .len = h->ps,
				};

				ret = ioctl(h->uffd, UFFDIO_COPY, &c);
			} else {
				struct uffdio_zeropage z = { .range = { .start = a, .len = h->ps } };

				ret = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
			}
			if (ret && errno == EEXIST) {
				struct uffdio_range w = { .start = a, .len = h->ps };

				(void)ioctl(h->uffd, UFFDIO_WAKE, &w);
			} else if (ret) {
				h->errors++;
				continue;
			}
			h->faults++;
		}
	}
	return NULL;
}

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

static int raw_start(struct tctx *x, struct raw *h, struct bench_mem *m, int cpu, char *why, size_t wl)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)m->addr, .len = m->len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int ret;

	memset(h, 0, sizeof(*h));
	h->ps = m->ps;
	h->hugetlb = m->backing == PGT_BACKING_HUGETLB;
	h->zero = x->zero2m;
	h->cpu = cpu;
	h->stopfd = -1;
	h->uffd = uffd_new();
	if (h->uffd < 0) {
		snprintf(why, wl, "userfaultfd: %s", strerror(-h->uffd));
		return h->uffd;
	}
	if (ioctl(h->uffd, UFFDIO_API, &api) || ioctl(h->uffd, UFFDIO_REGISTER, &reg)) {
		ret = -errno;
		snprintf(why, wl, "userfaultfd MISSING registration: %s", strerror(-ret));
		close(h->uffd);
		return ret;
	}
	h->stopfd = eventfd(0, EFD_CLOEXEC);
	ret = h->stopfd < 0 ? errno : pthread_create(&h->tid, NULL, raw_main, h);
	if (ret) {
		snprintf(why, wl, "raw handler thread: %s", strerror(ret));
		ioctl(h->uffd, UFFDIO_UNREGISTER, &reg.range);
		close(h->uffd);
		if (h->stopfd >= 0)
			close(h->stopfd);
		return -ret;
	}
	return 0;
}

static void raw_stop(struct raw *h, struct bench_mem *m)
{
	struct uffdio_range range = { .start = (uintptr_t)m->addr, .len = m->len };
	uint64_t one = 1;

	if (write(h->stopfd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "pgtrack-bench: eventfd write: %s\n", strerror(errno));
	pthread_join(h->tid, NULL);
	ioctl(h->uffd, UFFDIO_UNREGISTER, &range);
	close(h->uffd);
	close(h->stopfd);
}

/* ---------------------------------------------------------------- */

/*
 * One run of @method: empty the mapping, attach, touch @npages pages, check
 * the handler saw each of them, detach. *ns is the toucher's loop time.
 */
static int run_once(struct tctx *x, struct bench_mem *m, int method, int pl, bool write,
		    uint64_t npages, uint64_t *ns, bool *miscount, char *why, size_t wl)
{
	int ret = tmem_empty(m);

	if (ret) {
		snprintf(why, wl, "emptying the mapping: %s", strerror(-ret));
		return ret;
	}
	if (m->backing == PGT_BACKING_HUGETLB) {
		long fr = bench_free_hugepages();

		if (fr >= 0 && (uint64_t)fr < npages) {
			snprintf(why, wl, "not enough free 2 MiB hugepages: %ld free, %llu needed",
				 fr, (unsigned long long)npages);
			return -ENOMEM;
		}
	}
	if (method == TM_ENGINE) {
		struct pgt_region_config rc = {
			.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = m->len,
			.gpa = GPA_BASE, .track = PGT_TRACK_TOUCH, .numa_node = -1,
			.name = "bench-touch", .addr = m->addr, .fd = m->fd, .page_size = m->ps,
		};
		pgt_region *r;
		int64_t cnt;

		if (!x->eng[pl]) {
			snprintf(why, wl, "pgt_engine_open: %s", strerror(-x->eng_err[pl]));
			return x->eng_err[pl];
		}
		ret = pgt_region_register(x->eng[pl], &rc, &r);
		if (ret) {
			snprintf(why, wl, "pgt_region_register (touch): %s", strerror(-ret));
			return ret;
		}
		ret = touch_all(x, m, npages, write, ns);
		cnt = pgt_touched_count(r);
		*miscount = cnt != (int64_t)npages;
		pgt_region_destroy(r);
	} else {
		struct raw h;

		ret = raw_start(x, &h, m, x->handler_cpu[pl], why, wl);
		if (ret)
			return ret;
		ret = touch_all(x, m, npages, write, ns);
		raw_stop(&h, m);
		*miscount = h.faults != npages || h.errors;
	}
	if (ret)
		snprintf(why, wl, "toucher thread: %s", strerror(-ret));
	return ret;
}

static struct tcell *tcell_new(struct tctx *x)
{
	if (x->ncells == x->cap) {
		size_t ncap = x->cap ? 2 * x->cap : 32;
		struct tcell *c = realloc(x->cells, ncap * sizeof(*c));

		if (!c)
			return NULL;
		x->cells = c;
		x->cap = ncap;
	}
	memset(&x->cells[x->ncells], 0, sizeof(x->cells[0]));
	return &x->cells[x->ncells++];
}

static void run_region(struct tctx *x, int backing, uint64_t size)
{
	const struct bench_opts *o = x->o;
	struct bench_mem m;
	char why[192] = "", label[16];
	int ret = 0;
	size_t first = x->ncells;

	bench_size_label(size, label, sizeof(label));
	if (backing == PGT_BACKING_HUGETLB && o->no_hugetlb) {
		snprintf(why, sizeof(why), "--no-hugetlb");
		ret = -ECANCELED;
	} else if (backing == PGT_BACKING_ANON && o->no_anon) {
		snprintf(why, sizeof(why), "--no-anon");
		ret = -ECANCELED;
	} else if (x->probe.uffd_error || !x->probe.touch_tracking) {
		snprintf(why, sizeof(why), "probe: userfaultfd MISSING not available (%s)",
			 strerror(-x->probe.uffd_error));
		ret = -EOPNOTSUPP;
	} else {
		ret = bench_mem_map_empty(&m, backing, size, why, sizeof(why));
	}
	for (int acc = 0; acc < 2; acc++) {
		if (!(o->touch_access & (1u << acc)))
			continue;
		for (int pl = 0; pl < PL__COUNT; pl++) {
			for (int meth = 0; meth < TM__COUNT; meth++) {
				struct tcell *c = tcell_new(x);

				if (!c)
					return;
				c->method = meth;
				c->backing = backing;
				c->access = acc;
				c->placement = pl;
				c->size = size;
				c->page_size = backing == PGT_BACKING_HUGETLB ? HUGE_2M
						: (uint64_t)sysconf(_SC_PAGESIZE);
				c->npages = size / c->page_size;
				snprintf(c->placement_str, sizeof(c->placement_str),
					 "toucher=cpu%d handler=cpu%d (%s)", x->toucher_cpu,
					 x->handler_cpu[pl], pl_names[pl]);
				if (ret) {
					c->status = 1;
					snprintf(c->reason, sizeof(c->reason), "%s", why);
				}
			}
		}
	}
	if (ret)
		return;

	bench_note("touch: %s %s: %llu pages", pgt_backing_name(backing), label,
		   (unsigned long long)m.npages);
	for (size_t ci = first; ci < x->ncells; ci += TM__COUNT) {
		struct tcell *pair[TM__COUNT] = { &x->cells[ci], &x->cells[ci + 1] };
		bool write = pair[0]->access == 0;
		int pl = pair[0]->placement;
		uint64_t spent = 0, t0 = bench_now_ns(), warm = m.npages < WARM_PAGES ?
							   m.npages : WARM_PAGES;
		unsigned minreps = o->reps < 3 ? o->reps : 3;

		/* Warm-up: a partial run of each, untimed. */
		for (int k = 0; k < TM__COUNT; k++) {
			uint64_t ns;
			bool mis;

			if (run_once(x, &m, k, pl, write, warm, &ns, &mis, why, sizeof(why))) {
				pair[k]->status = 1;
				snprintf(pair[k]->reason, sizeof(pair[k]->reason), "%s", why);
			}
		}
		for (unsigned rep = 0; rep < o->reps && rep < 256; rep++) {
			if (rep >= minreps && spent > (uint64_t)(o->cell_budget_s * 1e9))
				break;
			for (int k = 0; k < TM__COUNT; k++) {
				struct tcell *c = pair[rep & 1 ? TM__COUNT - 1 - k : k];
				uint64_t ns, s0 = bench_now_ns();
				bool mis = false;

				if (c->status)
					continue;
				ret = run_once(x, &m, c->method, pl, write, m.npages, &ns, &mis,
					       why, sizeof(why));
				spent += bench_now_ns() - s0;
				if (ret) {
					c->status = ret == -ENOMEM ? 1 : 2;
					snprintf(c->reason, sizeof(c->reason), "%s", why);
					continue;
				}
				c->ns[c->n++] = ns;
				c->miscount += mis;
			}
		}
		bench_note("touch: %s %s %s %s done in %.1f s", pgt_backing_name(backing), label,
			   write ? "write" : "read", pl_names[pl],
			   (double)(bench_now_ns() - t0) / 1e9);
	}
	tmem_empty(&m);
	bench_mem_unmap(&m);
}

static struct json_object *tcell_json(struct tcell *c)
{
	struct json_object *e = json_object_new_object();
	char label[16];
	bool has = c->n > 0;
	uint64_t tmp[256];
	const char *how;

	if (has) {
		memcpy(tmp, c->ns, c->n * sizeof(tmp[0]));
		c->med_ns = bench_quantile_u64(tmp, c->n, 0.5);
		c->p90_ns = bench_quantile_u64(tmp, c->n, 0.9);
	}
	if (c->method == TM_RAW)
		how = c->backing == PGT_BACKING_HUGETLB ? "UFFDIO_COPY of a zero 2 MiB buffer"
							: "UFFDIO_ZEROPAGE";
	else
		how = "pgt engine, PGT_TRACK_TOUCH, no page provider";
	bench_size_label(c->size, label, sizeof(label));
	bench_json_str(e, "bench", "touch");
	bench_json_str(e, "method", tm_names[c->method]);
	bench_json_str(e, "resolution", how);
	bench_json_str(e, "backing", pgt_backing_name(c->backing));
	bench_json_u64(e, "page_size", c->page_size, true);
	bench_json_u64(e, "size", c->size, true);
	bench_json_str(e, "size_label", label);
	bench_json_str(e, "access", c->access ? "read" : "write");
	bench_json_str(e, "placement", c->placement_str);
	bench_json_str(e, "placement_kind", pl_names[c->placement]);
	bench_json_str(e, "status", c->status == 0 ? "ok" : c->status == 1 ? "skipped" : "error");
	if (c->status)
		bench_json_str(e, "reason", c->reason);
	bench_json_u64(e, "runs", c->n, true);
	bench_json_u64(e, "pages", c->npages, true);
	bench_json_dbl(e, "faults_per_sec_median",
		       has ? (double)c->npages * 1e9 / (double)c->med_ns : 0, has);
	bench_json_dbl(e, "ns_per_fault_median", has ? (double)c->med_ns / (double)c->npages : 0,
		       has);
	bench_json_dbl(e, "ns_per_fault_p90", has ? (double)c->p90_ns / (double)c->npages : 0,
		       has);
	bench_json_u64(e, "runs_with_fault_count_mismatch", c->miscount, has);
	return e;
}

int bench_touch(const struct bench_opts *o, struct json_object *results,
		struct json_object *ratios, struct json_object *info)
{
	struct tctx x = { .o = o };
	struct pgt_engine_config ec = { .size = sizeof(ec), .fault_threads = 1 };
	static const int backings[] = { PGT_BACKING_ANON, PGT_BACKING_HUGETLB };
	int cpus[2], ncpu = bench_cpus(cpus, 2);
	struct json_object *cells = json_object_new_array(), *r, *d;
	const struct tcell *worst = NULL;
	double minv = 0;
	char buf[512];

	x.probe.size = sizeof(x.probe);
	pgt_probe(&x.probe);
	x.main_cpu = cpus[0];
	x.toucher_cpu = cpus[ncpu > 1 ? 1 : 0];
	x.handler_cpu[PL_SAME] = x.toucher_cpu;
	x.handler_cpu[PL_CROSS] = cpus[0];
	x.zero2m = mmap(NULL, HUGE_2M, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (x.zero2m == MAP_FAILED)
		return -ENOMEM;
	memset(x.zero2m, 0, HUGE_2M);
	for (int pl = 0; pl < PL__COUNT; pl++) {
		/* The fault thread inherits the affinity of its creator. */
		bench_pin_self(x.handler_cpu[pl]);
		x.eng_err[pl] = pgt_engine_open(&ec, &x.eng[pl]);
	}
	bench_pin_self(x.main_cpu);

	for (int b = 0; b < 2; b++)
		for (unsigned i = 0; i < o->nsizes; i++)
			run_region(&x, backings[b], o->sizes[i]);

	for (int pl = 0; pl < PL__COUNT; pl++)
		pgt_engine_close(x.eng[pl]);
	bench_unpin_self();
	munmap(x.zero2m, HUGE_2M);

	for (size_t i = 0; i < x.ncells; i++)
		json_object_array_add(results, tcell_json(&x.cells[i]));
	/* Ratio per (backing, size, access, placement): engine / raw faults/s. */
	for (size_t i = 0; i + 1 < x.ncells; i += TM__COUNT) {
		const struct tcell *e = &x.cells[i], *raw = &x.cells[i + 1];
		struct json_object *j;
		char label[16];
		double v;

		if (e->status || raw->status || !e->n || !raw->n || !e->med_ns)
			continue;
		v = (double)raw->med_ns / (double)e->med_ns;
		j = json_object_new_object();
		bench_size_label(e->size, label, sizeof(label));
		bench_json_str(j, "backing", pgt_backing_name(e->backing));
		bench_json_str(j, "size_label", label);
		bench_json_str(j, "access", e->access ? "read" : "write");
		bench_json_str(j, "placement_kind", pl_names[e->placement]);
		bench_json_dbl(j, "engine_faults_per_sec", (double)e->npages * 1e9 / (double)e->med_ns,
			       true);
		bench_json_dbl(j, "raw_faults_per_sec",
			       (double)raw->npages * 1e9 / (double)raw->med_ns, true);
		bench_json_dbl(j, "ratio", v, true);
		json_object_array_add(cells, j);
		if (!worst || v < minv) {
			worst = e;
			minv = v;
		}
	}
	r = bench_ratio(minv, worst != NULL, ">=", 0.90,
			"engine first-touch faults/s / raw uffd MISSING handler faults/s, same "
			"mapping, access and placement; value = the lowest over all cells (4 KiB "
			"anon and 2 MiB hugetlb, every size and placement)");
	json_object_object_add(r, "cells", cells);
	json_object_object_add(ratios, "touch_engine_vs_raw", r);

	d = json_object_new_object();
	snprintf(buf, sizeof(buf), "toucher on cpu%d; handler (engine fault thread or raw "
		 "poll() thread) on cpu%d for same-cpu, cpu%d for cross-cpu", x.toucher_cpu,
		 x.handler_cpu[PL_SAME], x.handler_cpu[PL_CROSS]);
	bench_json_str(d, "placement", buf);
	snprintf(buf, sizeof(buf), "per cell, one untimed partial run (%d pages) of each, then up "
		 "to %u runs of each alternating engine/raw (ABBA), at least %u, fewer past a "
		 "%.0f s budget; the mapping is emptied (MADV_DONTNEED / punch-hole) before each "
		 "run; one thread touches every page ascending and times its loop; medians",
		 WARM_PAGES, o->reps, o->reps < 3 ? o->reps : 3, o->cell_budget_s);
	bench_json_str(d, "runs", buf);
	json_object_object_add(info, "touch", d);
	free(x.cells);
	return 0;
}
