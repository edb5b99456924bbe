/* SPDX-License-Identifier: MIT */
/*
 * Calibration measurement and per-boot cache (calibrate_pvt.h). A bounded
 * measurement on a private 256-page scratch mapping: iteration counts are
 * fixed (PGT_CALIB_MAX_ITER) and a deadline (PGT_CALIB_DEADLINE_NS) cuts the
 * repetitions short on a loaded host.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pgtrack/probe.h>

#include "engine/calibrate_pvt.h"
#include "hal/compat_uapi.h"

#define PS 4096u
#define NP PGT_CALIB_PAGES
#define VEC 64

struct scratch {
	uint8_t *addr;
	int uffd, pmfd;
	uint64_t t_end;               /* deadline, CLOCK_MONOTONIC ns */
	struct pgt__calib_stats *st;
	struct page_region vec[VEC];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool late(const struct scratch *s)
{
	return now_ns() > s->t_end;
}

/* Stores into every page; ns. */
static __attribute__((noinline)) uint64_t write_all(struct scratch *s)
{
	uint64_t t0 = now_ns();

	for (unsigned p = 0; p < NP; p++)
		*(volatile uint64_t *)(s->addr + (size_t)p * PS + ((p & 63) << 6)) = t0;
	s->st->iterations += NP;
	return now_ns() - t0;
}

static double min_d(double a, double b)
{
	return a < b ? a : b;
}

/* pread of the scratch pages' pagemap entries; ns per entry, or < 0. */
static double time_pagemap(struct scratch *s)
{
	uint64_t buf[NP], t0 = now_ns();
	off_t off = (off_t)(((uintptr_t)s->addr / PS) * 8);

	s->st->iterations += NP;
	if (pread(s->pmfd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
		return -1;
	return (double)(now_ns() - t0) / NP;
}

/* PAGEMAP_SCAN get-and-clear of the scratch mapping; ns, or 0 on error. */
static uint64_t scan(struct scratch *s)
{
	uint64_t cur = (uintptr_t)s->addr, end = cur + (uint64_t)NP * PS, t0 = now_ns();

	s->st->iterations += NP;
	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = cur, .end = end, .vec = (uintptr_t)s->vec, .vec_len = VEC,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
		};

		if (ioctl(s->pmfd, PAGEMAP_SCAN, &a) < 0 || a.walk_end <= cur)
			return 0;
		cur = a.walk_end;
	}
	return now_ns() - t0 ? now_ns() - t0 : 1;
}

static int uffd_async_open(struct scratch *s)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)s->addr, .len = (uint64_t)NP * PS },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = { .range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };

	s->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (s->uffd < 0 && errno == EPERM)
		s->uffd = (int)syscall(SYS_userfaultfd,
				       O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (s->uffd < 0)
		return -errno;
	if (ioctl(s->uffd, UFFDIO_API, &api) || ioctl(s->uffd, UFFDIO_REGISTER, &reg) ||
	    ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp))
		return -errno;
	return 0;
}

/*
 * WP-async: clean walk, the writers' faults, the walk that re-protects what
 * was written. Minimum over the repetitions (noise only adds).
 */
static int measure_async(struct scratch *s, double plain, struct pgt__calib_costs *c)
{
	double fault = 1e18, clean = 1e18, written = 1e18;
	int ret = uffd_async_open(s), reps = 0;

	if (ret)
		return ret;
	if (!scan(s))
		return -EIO;
	for (; reps < PGT_CALIB_REPS && (!reps || !late(s)); reps++) {
		uint64_t cl = scan(s), w = write_all(s), wr = scan(s);

		if (!cl || !wr)
			return -EIO;
		clean = min_d(clean, (double)cl / NP);
		fault = min_d(fault, ((double)w - plain) / NP);
		written = min_d(written, (double)wr / NP);
	}
	c->wp_async_fault = fault > 0 ? fault : 0;
	c->scan_clean = clean;
	c->reprotect = written > clean ? written - clean : 0;
	s->st->measured |= PGT_CALIB_M_ASYNC;
	return 0;
}

/*
 * The mprotect tracker's handler is bound to a region, so no SIGSEGV round
 * trip is measured here (installing a second process-wide handler would
 * race with it). Measured: mprotect(RW) of one page of a protected range,
 * the handler's syscall. The fault and signal delivery are estimated by the
 * WP-async fault (a kernel write fault with a TLB flush) when that was
 * measured, else 0 (then only mprotect vs uffd-sync is compared, and both
 * carry the same estimate).
 */
static int measure_mprotect(struct scratch *s, struct pgt__calib_costs *c)
{
	double best = 1e18;

	for (int r = 0; r < PGT_CALIB_REPS && (!r || !late(s)); r++) {
		uint64_t t0;

		if (mprotect(s->addr, (size_t)NP * PS, PROT_READ))
			return -errno;
		t0 = now_ns();
		for (unsigned p = 0; p < NP; p++)
			if (mprotect(s->addr + (size_t)p * PS, PS, PROT_READ | PROT_WRITE))
				return -errno;
		s->st->iterations += NP;
		best = min_d(best, (double)(now_ns() - t0) / NP);
	}
	c->mprotect_fault = best + c->wp_async_fault;
	/* Not measured: a sync fault is a round trip to a handler thread, as
	 * costly as a signal round trip or more (perf/README.md: 19652 vs
	 * 17787 ns on v1272); 1.1x keeps the estimates from tying. */
	c->sync_fault = 1.1 * c->mprotect_fault;
	s->st->measured |= PGT_CALIB_M_MPROTECT;
	return 0;
}

static int scratch_map(struct scratch *s)
{
	s->addr = mmap(NULL, (size_t)NP * PS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->addr == MAP_FAILED) {
		s->addr = NULL;
		return -errno;
	}
	(void)madvise(s->addr, (size_t)NP * PS, MADV_NOHUGEPAGE);
	s->pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return s->pmfd < 0 ? -errno : 0;
}

static void scratch_unmap(struct scratch *s)
{
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->pmfd >= 0)
		close(s->pmfd);
	if (s->addr)
		munmap(s->addr, (size_t)NP * PS);
}

static bool async_usable(const struct pgt_probe *p)
{
	uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;

	return p->pagemap_scan && !p->uffd_error && (p->uffd_features & need) == need;
}

int pgt__calib_measure(const struct pgt_probe *p, struct pgt__calib_costs *out,
		       struct pgt__calib_stats *st)
{
	struct scratch s = { .uffd = -1, .pmfd = -1, .st = st };
	struct pgt__calib_costs c = { 0 };
	uint64_t t0 = now_ns();
	double plain = 1e18, pm = 1e18;
	int ret;

	memset(st, 0, sizeof(*st));
	s.t_end = t0 + PGT_CALIB_DEADLINE_NS;
	ret = scratch_map(&s);
	for (int r = 0; !ret && r < PGT_CALIB_REPS && (!r || !late(&s)); r++) {
		double v;

		plain = min_d(plain, (double)write_all(&s));   /* first: populates */
		v = time_pagemap(&s);
		if (v < 0)
			ret = -EIO;
		pm = min_d(pm, v);
	}
	c.pagemap_read = pm;
	if (!ret && async_usable(p) && !late(&s))
		ret = measure_async(&s, plain, &c);
	if (!ret && !late(&s))
		ret = measure_mprotect(&s, &c);
	if (!ret && !(st->measured & PGT_CALIB_M_MPROTECT))
		ret = -ETIME;   /* past the deadline before the essentials */
	scratch_unmap(&s);
	st->ns = now_ns() - t0;
	if (!ret)
		*out = c;
	return ret;
}
