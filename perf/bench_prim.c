/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench dirty: the kernel primitives behind the dirty ratios, per
 * page, each on a small mapping of its own with no engine around it:
 *
 *   write_plain          store into a populated, untracked page
 *   wp_async_fault       first store into a page write-protected by uffd
 *                        WP-async (the fault the engine's writers pay)
 *   scan_clean           PAGEMAP_SCAN get-and-clear walk over unwritten pages
 *   scan_written         the same walk over pages that were all written
 *   scan_sparse_flush    the same walk with one written page per 2 MiB (4 KiB
 *                        pages): one TLB flush per page table, reported per
 *                        written page; variants with a thread of this process
 *                        parked (as the benchmark's writers during a harvest)
 *                        or spinning on the other CPU (the flush IPIs)
 *   pagemap_read         pread of /proc/self/pagemap, per 4 KiB entry
 *   mprotect_fault       PROT_READ page, store, SIGSEGV, mprotect(RW) in the
 *                        handler, sigreturn: the mprotect tracker's round trip
 *   uffd_sync_fault      sync uffd-WP fault resolved by a handler thread on
 *                        the other CPU (cross-CPU wakeup both ways)
 *
 * Figures are medians over PRIM_REPS repetitions. See perf/README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

#define PRIM_REPS 5
#define PRIM_4K_LEN (32ull << 20)      /* 8192 pages of 4 KiB */
#define PRIM_2M_LEN (64ull << 20)      /* 32 pages of 2 MiB */
#define PRIM_SYNC_PAGES 512            /* sync faults: ~10-50 µs each */
#define PRIM_VEC 4096

struct pmem {
	struct bench_mem b;     /* addr, len, ps, npages */
	int uffd, pmfd;
};

struct prims {
	struct json_object *o;
	struct page_region *vec;
	int cpu_here, cpu_other;
};

static int pm_map(struct pmem *m, bool huge, uint64_t len)
{
	char why[192];
	int ret;

	m->uffd = m->pmfd = -1;
	ret = bench_mem_map(&m->b, huge ? PGT_BACKING_HUGETLB : PGT_BACKING_ANON, len, why,
			    sizeof(why));
	if (ret)
		return ret;
	m->pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return m->pmfd < 0 ? -errno : 0;
}

static void pm_unmap(struct pmem *m)
{
	if (m->uffd >= 0)
		close(m->uffd);
	if (m->pmfd >= 0)
		close(m->pmfd);
	bench_mem_unmap(&m->b);
	m->uffd = m->pmfd = -1;
}

static int prim_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd < 0 ? -errno : fd;
}

/* Register @m for uffd WP (async or sync) and write-protect all of it. */
static int pm_register(struct pmem *m, bool async)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)m->b.addr, .len = m->b.len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)m->b.addr, .len = m->b.len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	if (async)
		api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			       (m->b.fd >= 0 ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0);
	else if (m->b.fd >= 0)
		api.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	m->uffd = prim_uffd();
	if (m->uffd < 0)
		return m->uffd;
	if (ioctl(m->uffd, UFFDIO_API, &api) || ioctl(m->uffd, UFFDIO_REGISTER, &reg) ||
	    ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		int err = -errno;

		close(m->uffd);
		m->uffd = -1;
		return err;
	}
	return 0;
}

static int pm_protect(struct pmem *m)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)m->b.addr, .len = m->b.len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	return ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/* Stores into every @stride-th page; returns ns. */
static __attribute__((noinline)) uint64_t pm_write(struct pmem *m, uint64_t stride)
{
	uint64_t t0 = bench_now_ns();

	for (uint64_t p = 0; p < m->b.npages; p += stride)
		*(volatile uint64_t *)(m->b.addr + p * m->b.ps + ((p & 63) << 6)) = t0;
	return bench_now_ns() - t0;
}

/* PAGEMAP_SCAN get-and-clear of the whole mapping; ns, or 0 on error. */
static uint64_t pm_scan(struct pmem *m, struct page_region *vec)
{
	uint64_t end = (uintptr_t)m->b.addr + m->b.len, cur = (uintptr_t)m->b.addr;
	uint64_t t0 = bench_now_ns();

	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = cur, .end = end,
			.vec = (uintptr_t)vec, .vec_len = PRIM_VEC,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
		};

		if (ioctl(m->pmfd, PAGEMAP_SCAN, &a) < 0 && errno != EINTR)
			return 0;
		if (a.walk_end <= cur)
			return 0;
		cur = a.walk_end;
	}
	return bench_now_ns() - t0;
}

static double med(double *v, size_t n)
{
	return bench_quantile_dbl(v, n, 0.5);
}

static void put(struct prims *p, const char *key, double v, bool ok)
{
	bench_json_dbl(p->o, key, v, ok && v > 0);
}

/* ---------------------------------------------------------------- */
/* Another thread of this process on the other CPU: parked or spinning */

enum peer_mode { PEER_NONE, PEER_PARKED, PEER_SPINNING };

struct peer {
	pthread_t tid;
	int cpu, mode;
	atomic_int stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *peer_main(void *arg)
{
	struct peer *q = arg;

	bench_pin_self(q->cpu);
	if (q->mode == PEER_SPINNING) {
		while (!atomic_load_explicit(&q->stop, memory_order_relaxed))
			__asm__ __volatile__("" ::: "memory");
		return NULL;
	}
	pthread_mutex_lock(&q->lock);
	while (!atomic_load(&q->stop))
		pthread_cond_wait(&q->cond, &q->lock);
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static bool peer_start(struct peer *q, int cpu, int mode)
{
	memset(q, 0, sizeof(*q));
	q->cpu = cpu;
	q->mode = mode;
	if (mode == PEER_NONE)
		return true;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	if (pthread_create(&q->tid, NULL, peer_main, q)) {
		q->mode = PEER_NONE;
		return false;
	}
	usleep(2000);   /* let it get to its CPU and park or spin */
	return true;
}

static void peer_stop(struct peer *q)
{
	if (q->mode == PEER_NONE)
		return;
	pthread_mutex_lock(&q->lock);
	atomic_store(&q->stop, 1);
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->tid, NULL);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
}

/* ---------------------------------------------------------------- */
/* WP-async fault and PAGEMAP_SCAN walk                               */

struct async_times {
	double plain[PRIM_REPS], fault[PRIM_REPS], clean[PRIM_REPS], written[PRIM_REPS];
};

static bool async_rounds(struct prims *p, struct pmem *m, struct async_times *t)
{
	double n = (double)m->b.npages;

	for (int r = 0; r < PRIM_REPS; r++)
		t->plain[r] = (double)pm_write(m, 1) / n;
	if (pm_register(m, true))
		return false;
	for (int r = 0; r < PRIM_REPS; r++) {
		uint64_t c, w;

		if (pm_protect(m) || !pm_scan(m, p->vec))
			return false;
		c = pm_scan(m, p->vec);
		t->fault[r] = (double)pm_write(m, 1) / n;
		w = pm_scan(m, p->vec);
		if (!c || !w)
			return false;
		t->clean[r] = (double)c / n;
		t->written[r] = (double)w / n;
	}
	return true;
}

static void prim_async(struct prims *p, bool huge)
{
	const char *sfx = huge ? "2m" : "4k";
	struct async_times t;
	struct pmem m;
	char k[64];
	bool ok;

	ok = !pm_map(&m, huge, huge ? PRIM_2M_LEN : PRIM_4K_LEN) && async_rounds(p, &m, &t);
	pm_unmap(&m);
	snprintf(k, sizeof(k), "write_plain_%s", sfx);
	put(p, k, med(t.plain, PRIM_REPS), ok);
	snprintf(k, sizeof(k), "wp_async_fault_%s", sfx);
	put(p, k, med(t.fault, PRIM_REPS) - med(t.plain, PRIM_REPS), ok);
	snprintf(k, sizeof(k), "scan_clean_%s", sfx);
	put(p, k, med(t.clean, PRIM_REPS), ok);
	snprintf(k, sizeof(k), "scan_written_%s", sfx);
	put(p, k, med(t.written, PRIM_REPS), ok);
}

/*
 * One written 4 KiB page per page table (2 MiB): the walk then flushes the
 * TLB once per written page. Reported per written page, minus the clean walk
 * of the 512 entries around it.
 */
static void prim_sparse(struct prims *p, int mode, const char *key)
{
	double v[PRIM_REPS], clean[PRIM_REPS];
	struct pmem m;
	struct peer q = { .mode = PEER_NONE };
	bool ok = !pm_map(&m, false, PRIM_4K_LEN) && !pm_register(&m, true);
	double nw = (double)(m.b.npages / 512);

	ok = ok && peer_start(&q, p->cpu_other, mode);
	for (int r = 0; ok && r < PRIM_REPS; r++) {
		uint64_t c, w;

		if (pm_protect(&m) || !pm_scan(&m, p->vec))
			ok = false;
		c = pm_scan(&m, p->vec);
		pm_write(&m, 512);
		w = pm_scan(&m, p->vec);
		ok = ok && c && w;
		clean[r] = (double)c;
		v[r] = (double)w;
	}
	peer_stop(&q);
	pm_unmap(&m);
	put(p, key, (med(v, PRIM_REPS) - med(clean, PRIM_REPS)) / nw, ok);
}

static void prim_pagemap(struct prims *p, bool huge)
{
	uint64_t len = huge ? PRIM_2M_LEN : PRIM_4K_LEN, nent = len >> 12;
	uint64_t *buf = malloc(nent * 8);
	double v[PRIM_REPS];
	struct pmem m = { .b.fd = -1, .uffd = -1, .pmfd = -1 };
	bool ok = buf && !pm_map(&m, huge, len);

	for (int r = 0; ok && r < PRIM_REPS; r++) {
		uint64_t t0 = bench_now_ns();
		off_t off = (off_t)(((uintptr_t)m.b.addr >> 12) * 8);

		ok = pread(m.pmfd, buf, nent * 8, off) == (ssize_t)(nent * 8);
		v[r] = (double)(bench_now_ns() - t0) / (double)nent;
	}
	pm_unmap(&m);
	free(buf);
	put(p, huge ? "pagemap_read_2m_per_4k_entry" : "pagemap_read_4k", med(v, PRIM_REPS), ok);
}

/* ---------------------------------------------------------------- */
/* mprotect + SIGSEGV round trip                                      */

static uint8_t *mp_lo, *mp_hi;
static struct sigaction mp_old;

static void mp_segv(int sig, siginfo_t *si, void *uctx)
{
	uint8_t *a = si->si_addr;

	(void)sig;
	(void)uctx;
	if (a >= mp_lo && a < mp_hi) {
		uintptr_t pg = (uintptr_t)a & ~(uintptr_t)4095;

		if (!mprotect((void *)pg, 4096, PROT_READ | PROT_WRITE))
			return;
	}
	sigaction(SIGSEGV, &mp_old, NULL);   /* not ours: fault again there */
}

static void prim_mprotect(struct prims *p)
{
	struct sigaction sa = { .sa_sigaction = mp_segv, .sa_flags = SA_SIGINFO };
	double v[PRIM_REPS], plain[PRIM_REPS];
	struct pmem m;
	bool ok = !pm_map(&m, false, PRIM_4K_LEN);

	sigemptyset(&sa.sa_mask);
	mp_lo = m.b.addr;
	mp_hi = m.b.addr + m.b.len;
	ok = ok && !sigaction(SIGSEGV, &sa, &mp_old);
	for (int r = 0; ok && r < PRIM_REPS; r++) {
		plain[r] = (double)pm_write(&m, 1) / (double)m.b.npages;
		ok = !mprotect(m.b.addr, m.b.len, PROT_READ);
		v[r] = (double)pm_write(&m, 1) / (double)m.b.npages;
	}
	if (mp_lo)
		sigaction(SIGSEGV, &mp_old, NULL);
	pm_unmap(&m);
	put(p, "mprotect_fault_4k", med(v, PRIM_REPS) - med(plain, PRIM_REPS), ok);
}

/* ---------------------------------------------------------------- */
/* Synchronous uffd-WP fault resolved by a handler thread              */

struct sync_handler {
	pthread_t tid;
	int uffd, cpu, stop_fd;
	uint64_t resolved;
};

static void *sync_main(void *arg)
{
	struct sync_handler *h = arg;
	struct pollfd pf[2] = { { .fd = h->uffd, .events = POLLIN },
				{ .fd = h->stop_fd, .events = POLLIN } };

	bench_pin_self(h->cpu);
	for (;;) {
		struct uffd_msg msg;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		while (read(h->uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
			struct uffdio_writeprotect wp = {
				.range = { .start = msg.arg.pagefault.address & ~4095ull,
					   .len = 4096 },
				.mode = 0,
			};

			if (msg.event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (!ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp))
				h->resolved++;
		}
	}
	return NULL;
}

static double sync_once(struct prims *p, int handler_cpu, bool *ok)
{
	struct sync_handler h = { .cpu = handler_cpu };
	int pipefd[2] = { -1, -1 };
	double v[PRIM_REPS] = { 0 };
	struct pmem m;

	*ok = !pm_map(&m, false, PRIM_SYNC_PAGES * 4096ull) && !pm_register(&m, false) &&
	      !pipe2(pipefd, O_CLOEXEC);
	h.uffd = m.uffd;
	h.stop_fd = pipefd[0];
	*ok = *ok && !pthread_create(&h.tid, NULL, sync_main, &h);
	for (int r = 0; *ok && r < PRIM_REPS; r++) {
		*ok = !pm_protect(&m);
		v[r] = (double)pm_write(&m, 1) / (double)m.b.npages;
	}
	if (h.tid) {
		(void)!write(pipefd[1], "x", 1);
		pthread_join(h.tid, NULL);
	}
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	pm_unmap(&m);
	*ok = *ok && h.resolved >= PRIM_REPS * (uint64_t)PRIM_SYNC_PAGES;
	(void)p;
	return med(v, PRIM_REPS);
}

static void prim_sync(struct prims *p)
{
	bool ok;
	double v;

	v = sync_once(p, p->cpu_other, &ok);
	put(p, "uffd_sync_fault_cross_cpu", v, ok && p->cpu_other != p->cpu_here);
	v = sync_once(p, p->cpu_here, &ok);
	put(p, "uffd_sync_fault_same_cpu", v, ok);
}

/*
 * Measure every primitive, pinned on @cpu_here (the harvester's CPU), the
 * peer threads and the cross-CPU handler on @cpu_other. Returns a JSON object
 * of ns figures (null where a primitive could not run) and
 * "units": "ns per page (per written page for scan_sparse_flush_*)".
 */
struct json_object *bench_dirty_primitives(int cpu_here, int cpu_other, bool hugetlb)
{
	struct prims p = { .o = json_object_new_object(), .cpu_here = cpu_here,
			   .cpu_other = cpu_other };

	p.vec = calloc(PRIM_VEC, sizeof(*p.vec));
	if (!p.vec)
		return p.o;
	bench_pin_self(cpu_here);
	prim_async(&p, false);
	if (hugetlb)
		prim_async(&p, true);
	prim_sparse(&p, PEER_NONE, "scan_sparse_flush_4k_alone");
	prim_sparse(&p, PEER_PARKED, "scan_sparse_flush_4k_peer_parked");
	prim_sparse(&p, PEER_SPINNING, "scan_sparse_flush_4k_peer_spinning");
	prim_pagemap(&p, false);
	if (hugetlb)
		prim_pagemap(&p, true);
	prim_mprotect(&p);
	prim_sync(&p);
	bench_json_str(p.o, "units", "ns per 4 KiB or 2 MiB page (scan_sparse_flush_*: per "
		       "written page, one per 2 MiB; pagemap_read_2m_per_4k_entry: per 8-byte "
		       "entry of a hugetlb range); medians of 5");
	free(p.vec);
	return p.o;
}
