/* SPDX-License-Identifier: MIT */
/*
 * Fault injection (issue 11, hardening): each case breaks something under a
 * tracked region and checks that pgtrack answers with a clear error (a
 * negative errno or a documented signal), keeps its state consistent
 * (counters equal their bitmaps), loses and leaks no page and leaves no
 * thread behind (/proc/self/task before and after).
 *
 * Cases that end in a signal or change credentials run in a child process;
 * the parent waits with a deadline, so a hang fails the test instead of
 * hanging it.
 */
#include "tests/common/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pgtrack.h>
#include "engine/engine_pvt.h"
#include "engine/release_pvt.h"
#include "lib/bits.h"

#define MiB (1ULL << 20)
#define HUGE_2M (2 * MiB)
#define GPA0 (1ULL << 32)
#define CHILD_DEADLINE_MS 20000

static struct pgt_probe probe = { .size = sizeof(probe) };
static long base_page;

static int setup(void **state)
{
	(void)state;
	base_page = sysconf(_SC_PAGESIZE);
	return pgt_probe(&probe);
}

/* Threads of this process now. */
static int ntasks(void)
{
	return pgt_test_count_dir("/proc/self/task");
}

static void *noop_thread(void *arg)
{
	return arg;
}

/*
 * Threads now, after one thread was created and joined: sanitizer runtimes
 * (TSan) start a helper thread at the first pthread_create of a process,
 * which must not count as one pgtrack left behind.
 */
static int ntasks_base(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, noop_thread, NULL) == 0)
		pthread_join(t, NULL);
	return ntasks();
}

/* The engine's own threads may take a moment to be reaped by the kernel
 * after pthread_join; wait (bounded) for the count to come back to the
 * baseline. "No thread left" is "not more than before": under TCG a thread
 * joined just before the baseline was read can still be listed in it. */
static int ntasks_settled(int want)
{
	int n = ntasks();

	for (int i = 0; i < 100 && n > want; i++) {
		usleep(10000);
		n = ntasks();
	}
	return n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Self-check of a region: the touched counter equals its bitmap and the
 * stats, the release state validates. Returns NULL or what is wrong.
 */
static const char *region_consistent(pgt_region *r)
{
	struct pgt_region_stats st = { .size = sizeof(st) };
	const char *why = NULL;

	if (pgt_region_stats(r, &st))
		return "pgt_region_stats failed";
	if (r->track & PGT_TRACK_TOUCH) {
		size_t words = PGT_KVM_WORDS(r->npages);
		unsigned long *bm = calloc(words, sizeof(*bm));
		int64_t pop = bm ? pgt_touched_bitmap(r, bm, words) : -1;
		uint64_t bits = 0;

		for (size_t i = 0; bm && i < words; i++)
			bits += (uint64_t)__builtin_popcountl(bm[i]);
		free(bm);
		if (pop < 0 || (uint64_t)pop != bits)
			return "pgt_touched_bitmap count differs from its bitmap";
		if (pgt_touched_count(r) != pop || st.touched != (uint64_t)pop)
			return "touched counter differs from the touched bitmap";
	}
	if (atomic_load(&r->rel) && !pgt__rel_validate(r, &why))
		return why;
	return NULL;
}

/* Run @fn(@arg) in a child; its exit status, or fail on a hang. */
static int run_child(int (*fn)(void *), void *arg, const char *what)
{
	int status = 0;
	uint64_t t0 = now_ms();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(fn(arg));
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		assert_true(w >= 0);
		if (w == pid)
			break;
		if (now_ms() - t0 > CHILD_DEADLINE_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s: child hung (killed after %d ms)", what, CHILD_DEADLINE_MS);
		}
		usleep(5000);
	}
	if (!WIFEXITED(status))
		fail_msg("%s: child died with signal %d", what, WTERMSIG(status));
	return WEXITSTATUS(status);
}

/* A child's verdict: 0 ok, 77 skip, else a failure code named in @codes. */
static void child_verdict(int code, const char *what, const char *codes)
{
	if (code == 77)
		pgt_skip("%s: not available here (see the child's note)", what);
	if (code)
		fail_msg("%s: child exit %d (%s)", what, code, codes);
}

/* ------------------------------------------------------------------ */
/* Signals in a child: SIGBUS caught on the touching thread             */
/* ------------------------------------------------------------------ */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;
static volatile uintptr_t bus_addr;
static volatile int bus_code;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (!bus_armed)
		_exit(60);
	bus_addr = (uintptr_t)si->si_addr;
	bus_code = si->si_code;
	bus_armed = 0;
	siglongjmp(bus_jmp, 1);
}

/* Read one byte at @p; 0 if it succeeded, 1 on SIGBUS (bus_* say where). */
static int touch_or_bus(volatile const uint8_t *p)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1))
		return 1;
	bus_armed = 1;
	(void)*p;
	bus_armed = 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Hugepage pool exhausted while a first touch is served                */
/* ------------------------------------------------------------------ */

#define POOL_LEFT 2   /* hugepages left free for the region */
#define POOL_REGION 6 /* pages of the region: more than are left */

/*
 * Child: take all but POOL_LEFT free hugepages, register a hugetlb memfd
 * region of POOL_REGION pages (MAP_NORESERVE, so the mapping is accepted),
 * touch it in order. The first touches are served, then the fill finds no
 * hugepage: the touching thread must get SIGBUS at that page, not hang.
 * Exit codes: 0 ok, 77 skip, 1x setup, 2x wrong answer, 3x state.
 */
static int child_pool(void *arg)
{
	long free0 = pgt_test_free_hugepages();
	uint64_t filler_len = (uint64_t)(free0 - POOL_LEFT) * HUGE_2M, len = POOL_REGION * HUGE_2M;
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = len, .gpa = GPA0,
		.track = PGT_TRACK_TOUCH, .numa_node = -1, .name = "pool",
	};
	struct pgt_region_stats st = { .size = sizeof(st) };
	int tasks0 = ntasks_base(), fd, served = 0;
	pgt_engine *e = NULL;
	pgt_region *r = NULL;
	uint8_t *filler, *mem;
	struct stat sb;

	(void)arg;
	if (free0 < POOL_LEFT + 1)
		return 77;
	filler = mmap(NULL, filler_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
	if (filler == MAP_FAILED)
		return 77; /* the pool changed under us: another user */
	fd = memfd_create("pgt-pool", MFD_HUGETLB | MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		return 10;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (mem == MAP_FAILED)
		return 11;
	rc.addr = mem;
	rc.fd = fd;
	if (pgt_engine_open(NULL, &e) || pgt_region_register(e, &rc, &r))
		return 12;
	for (int p = 0; p < POOL_REGION; p++) {
		if (!touch_or_bus(mem + (uint64_t)p * HUGE_2M)) {
			served++;
			continue;
		}
		/* UFFDIO_POISON (6.6+): at the page; before it the handler
		 * sends SIGBUS to the thread (SI_TKILL, no address) */
		if (bus_code != SI_TKILL &&
		    (bus_addr < (uintptr_t)mem + (uint64_t)p * HUGE_2M ||
		     bus_addr >= (uintptr_t)mem + (uint64_t)(p + 1) * HUGE_2M))
			return 20; /* SIGBUS, but not at the page that failed */
		break;
	}
	if (served == POOL_REGION)
		return 21; /* every page served: the pool was not exhausted */
	if (served > POOL_LEFT)
		return 22;
	if (pgt_region_stats(r, &st) || st.touch_errors < 1)
		return 30; /* the failure was not counted */
	if (st.touch_faults != (uint64_t)served)
		return 31; /* a failed fault counted as resolved */
	if (region_consistent(r))
		return 32;
	/* nothing leaked into the file: only the served pages hold memory */
	if (fstat(fd, &sb) || (uint64_t)sb.st_blocks * 512 != (uint64_t)served * HUGE_2M)
		return 33;
	if (pgt_region_destroy(r))
		return 34;
	pgt_engine_close(e);
	if (ntasks_settled(tasks0) > tasks0)
		return 35;
	munmap(filler, filler_len);
	munmap(mem, len);
	close(fd);
	return 0;
}

static void test_pool_exhausted(void **state)
{
	(void)state;
	if (!pgt_test_have_uffd())
		pgt_skip("userfaultfd not available");
	if (pgt_test_free_hugepages() < POOL_LEFT + 1)
		pgt_skip("no free 2 MiB hugepages");
	child_verdict(run_child(child_pool, NULL, "pool exhausted"), "pool exhausted",
		      "1x setup, 20 SIGBUS elsewhere, 21 not exhausted, 22 too many served, "
		      "3x state after the failure");
}

/* ------------------------------------------------------------------ */
/* userfaultfd refused                                                 */
/* ------------------------------------------------------------------ */

/* Make userfaultfd(2) fail with EPERM for this process (seccomp). */
static int deny_userfaultfd(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return -errno;
	return 0;
}

/* Writes to page 3 of an anonymous region show in a harvest. */
static int dirty_works(pgt_engine *e, int method, int *resolved)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 2 * MiB, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = method, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_run runs[4];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 4 };
	pgt_dirty_view *v;
	pgt_region *r;
	int ret = pgt_region_create(e, &rc, &r);

	if (ret)
		return ret;
	if (pgt_region_info(r, &info) || pgt_dirty_view_open(r, &v))
		return -EIO;
	*resolved = info.dirty_method;
	((volatile uint8_t *)info.addr)[3 * info.page_size] = 1;
	ret = pgt_dirty_harvest(v, &h) == 1 && h.nruns == 1 &&
	      runs[0].gpa == GPA0 + 3 * info.page_size ? 0 : -EIO;
	pgt_dirty_view_close(v);
	if (pgt_region_destroy(r))
		return -EIO;
	return ret;
}

/*
 * Child: userfaultfd refused (seccomp EPERM, and no /dev/userfaultfd for
 * nobody). A fresh probe sees it; AUTO dirty tracking falls back to a
 * method without uffd and works; asking for uffd explicitly, or for first
 * touch, is a clear -EPERM/-EOPNOTSUPP and no half-made region.
 * Exit codes: 0 ok, 77 skip, 1x setup, 2x wrong answer, 3x state.
 */
static int child_uffd_refused(void *arg)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 2 * MiB, .gpa = GPA0,
		.track = PGT_TRACK_TOUCH, .numa_node = -1,
	};
	struct pgt_probe p = { .size = sizeof(p) };
	bool stale = arg != NULL;
	int tasks0, method = -1, ret;
	pgt_engine *e;
	pgt_region *r = NULL;

	if (deny_userfaultfd())
		return 77;
	if (setgid(65534) || setuid(65534))
		return 77;
	/* setuid makes the process non-dumpable: /proc/self/clear_refs and
	 * pagemap become root's and soft-dirty (AUTO on 6.1) would fail for
	 * that reason alone */
	prctl(PR_SET_DUMPABLE, 1);
	if (syscall(SYS_userfaultfd, O_CLOEXEC) >= 0 || errno != EPERM)
		return 10; /* the injection did not work */
	/* stale: the probe cached before the sysctl/seccomp change is kept */
	if (!stale && pgt_probe_refresh(&p))
		return 11;
	tasks0 = ntasks_base();
	if (pgt_engine_open(NULL, &e))
		return 12;
	ret = pgt_region_create(e, &rc, &r);
	if (ret != -EPERM && ret != -EOPNOTSUPP) {
		fprintf(stderr, "first touch with uffd refused: %d\n", ret);
		return 20;
	}
	if (r)
		return 21;
	/* AUTO falls back where the probe knows; with an answer cached before
	 * the refusal (no pgt_probe_refresh()) a clear -EPERM is fine too */
	ret = dirty_works(e, PGT_DIRTY_AUTO, &method);
	if (ret && !(stale && ret == -EPERM))
		return 22;
	if (!ret && (method == PGT_DIRTY_UFFD_ASYNC || method == PGT_DIRTY_UFFD_SYNC))
		return 23;
	ret = dirty_works(e, PGT_DIRTY_UFFD_ASYNC, &method);
	if (ret != -EPERM && ret != -EOPNOTSUPP)
		return 24;
	/* the failed creates left nothing registered: a region at the same
	 * guest-physical range still works */
	if (dirty_works(e, PGT_DIRTY_MPROTECT, &method))
		return 30;
	pgt_engine_close(e);
	if (ntasks_settled(tasks0) > tasks0)
		return 31;
	return 0;
}

static void test_uffd_refused(void **state)
{
	(void)state;
	if (geteuid())
		pgt_skip("needs root to become nobody");
	child_verdict(run_child(child_uffd_refused, NULL, "uffd refused, fresh probe"),
		      "uffd refused, fresh probe",
		      "10 injection, 1x setup, 20/21 touch not refused, 22/23 AUTO did not fall "
		      "back, 24 uffd-async not refused, 3x state");
	child_verdict(run_child(child_uffd_refused, (void *)1, "uffd refused, stale probe"),
		      "uffd refused, stale probe",
		      "10 injection, 1x setup, 20/21 touch not refused, 22/23 AUTO did not fall "
		      "back, 24 uffd-async not refused, 3x state");
}

/*
 * Child: vm.unprivileged_userfaultfd=0 and not root: plain userfaultfd(2)
 * is EPERM, user-mode-only ones work; first touch and uffd dirty tracking
 * must work through them.
 */
static int child_sysctl_off(void *arg)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 2 * MiB, .gpa = GPA0 + 4 * MiB,
		.track = PGT_TRACK_TOUCH, .numa_node = -1,
	};
	struct pgt_probe p = { .size = sizeof(p) };
	int method = -1, tasks0;
	pgt_engine *e;
	pgt_region *r;

	(void)arg;
	if (setgid(65534) || setuid(65534))
		return 77;
	/* setuid makes the process non-dumpable: /proc/self/clear_refs and
	 * pagemap become root's and soft-dirty (AUTO on 6.1) would fail for
	 * that reason alone */
	prctl(PR_SET_DUMPABLE, 1);
	if (syscall(SYS_userfaultfd, O_CLOEXEC) >= 0 || errno != EPERM)
		return 10;
	if (pgt_probe_refresh(&p))
		return 11;
	tasks0 = ntasks_base();
	if (pgt_engine_open(NULL, &e))
		return 12;
	if (pgt_region_create(e, &rc, &r))
		return 20;
	if (pgt_touched_count(r) != 0)
		return 21;
	if (touch_or_bus((uint8_t *)r->addr + 5 * (uint64_t)base_page) || pgt_touched_count(r) != 1)
		return 22;
	if (region_consistent(r) || pgt_region_destroy(r))
		return 30;
	if (dirty_works(e, PGT_DIRTY_AUTO, &method))
		return 23;
	if (p.pagemap_scan && method != PGT_DIRTY_UFFD_ASYNC)
		return 24;
	pgt_engine_close(e);
	if (ntasks_settled(tasks0) > tasks0)
		return 31;
	return 0;
}

static void test_uffd_sysctl_off(void **state)
{
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	int on = -1;

	(void)state;
	if (f) {
		if (fscanf(f, "%d", &on) != 1)
			on = -1;
		fclose(f);
	}
	if (geteuid())
		pgt_skip("needs root to become nobody");
	if (on != 0)
		pgt_skip("vm.unprivileged_userfaultfd is %d, not 0 (not changed by tests)", on);
	if (!pgt_test_have_uffd())
		pgt_skip("userfaultfd not available");
	child_verdict(run_child(child_sysctl_off, NULL, "sysctl off"), "sysctl off",
		      "10 injection, 1x setup, 2x touch/dirty failed, 3x state");
}

/* ------------------------------------------------------------------ */
/* The hypervisor unmaps or remaps a tracked region                     */
/* ------------------------------------------------------------------ */

static const int uffd_and_mprotect[] = {
	PGT_DIRTY_UFFD_ASYNC, PGT_DIRTY_UFFD_SYNC, PGT_DIRTY_MPROTECT,
};

static const char *method_skip(int method)
{
	if (method == PGT_DIRTY_UFFD_ASYNC && !probe.pagemap_scan)
		return "PAGEMAP_SCAN / uffd WP-async not available on this kernel";
	if (method == PGT_DIRTY_UFFD_SYNC &&
	    (probe.uffd_error || !(probe.uffd_features & (1u << 0))))
		return "userfaultfd write-protect not available on this kernel";
	return NULL;
}

enum remap { REMAP_MUNMAP, REMAP_MOVE, REMAP_FIXED };
static const char *const remap_name[] = { "munmap", "mremap", "mmap MAP_FIXED" };

#define RM_PAGES 1024

/* Register @len of fresh anonymous memory for @method with one view. */
static void open_registered(pgt_engine **e, pgt_region **r, pgt_dirty_view **v, uint8_t **mem,
			    uint64_t len, int method, const char *name)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = len, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = method, .numa_node = -1, .name = name,
		.fd = -1,
	};

	*mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(*mem != MAP_FAILED);
	rc.addr = *mem;
	assert_int_equal(pgt_engine_open(NULL, e), 0);
	assert_int_equal(pgt_region_register(*e, &rc, r), 0);
	assert_int_equal(pgt_dirty_view_open(*r, v), 0);
}

static int64_t harvest_runs(pgt_dirty_view *v, struct pgt_run *runs, size_t cap, size_t *nruns)
{
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = cap };
	int64_t n = pgt_dirty_harvest(v, &h);

	*nruns = h.nruns;
	return n;
}

/*
 * Part of the region is unmapped, the region moved away, or new memory
 * mapped over part of it: the pages written there are not tracked any more,
 * so a harvest must not answer "nothing written". It fails with -ENXIO
 * (every time, until the region is destroyed); destroy still works.
 */
static void remapped(enum remap how)
{
	uint64_t ps = (uint64_t)base_page, len = RM_PAGES * ps, hole = 256 * ps;
	int ran = 0;

	for (size_t i = 0; i < sizeof(uffd_and_mprotect) / sizeof(int); i++) {
		int method = uffd_and_mprotect[i], tasks0 = ntasks_base();
		const char *why = method_skip(method);
		struct pgt_run runs[8];
		pgt_dirty_view *v;
		pgt_engine *e;
		pgt_region *r;
		uint8_t *mem, *moved = NULL;
		size_t nruns;
		int64_t n;

		if (how == REMAP_FIXED && method == PGT_DIRTY_MPROTECT)
			why = "memory mapped over a region is seen by uffd trackers only "
			      "(documented at pgt_dirty_harvest)";
		/* the mprotect tracker splits the mapping into VMAs of different
		 * protection, and mremap cannot move a range spanning several
		 * (EFAULT; the 6.1 guests merge them back less often) */
		if (how == REMAP_MOVE && method == PGT_DIRTY_MPROTECT)
			why = "mremap cannot move a range the tracker split into several VMAs";
		if (why) {
			pgt_test_note("%s, %s: skipped: %s", pgt_dirty_method_name(method),
				      remap_name[how], why);
			continue;
		}
		pgt_test_note("%s, %s", pgt_dirty_method_name(method), remap_name[how]);
		open_registered(&e, &r, &v, &mem, len, method, "remap");
		mem[1 * ps] = 1;
		assert_int_equal(harvest_runs(v, runs, 8, &nruns), 1);
		switch (how) {
		case REMAP_MUNMAP:
			assert_int_equal(munmap(mem + hole, hole), 0);
			break;
		case REMAP_MOVE:
			moved = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			assert_true(moved != MAP_FAILED);
			assert_true(mremap(mem, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, moved) ==
				    moved);
			/* mprotect tracking: the moved pages keep their
			 * protection (no region there to catch the fault) */
			if (method == PGT_DIRTY_MPROTECT)
				assert_int_equal(mprotect(moved, len, PROT_READ | PROT_WRITE), 0);
			moved[5 * ps] = 2; /* the guest keeps writing, at the new place */
			break;
		case REMAP_FIXED:
			assert_true(mmap(mem + hole, hole, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == mem + hole);
			mem[hole + 5 * ps] = 2; /* written in the new memory */
			break;
		}
		if (how != REMAP_MOVE)
			mem[3 * ps] = 3; /* and in what is still tracked */
		n = harvest_runs(v, runs, 8, &nruns);
		if (n != -ENXIO)
			fail_msg("%s, %s: harvest returned %lld, want -ENXIO",
				 pgt_dirty_method_name(method), remap_name[how], (long long)n);
		assert_int_equal(harvest_runs(v, runs, 8, &nruns), -ENXIO);
		assert_null(region_consistent(r));
		pgt_dirty_view_close(v);
		assert_int_equal(pgt_region_destroy(r), 0);
		pgt_engine_close(e);
		assert_in_range(ntasks_settled(tasks0), 1, tasks0);
		munmap(moved ? moved : mem, len);
		ran++;
	}
	if (!ran)
		pgt_skip("no dirty method to test here");
}

static void test_munmap(void **state)
{
	(void)state;
	remapped(REMAP_MUNMAP);
}

static void test_mremap(void **state)
{
	(void)state;
	remapped(REMAP_MOVE);
}

static void test_map_fixed(void **state)
{
	(void)state;
	remapped(REMAP_FIXED);
}

/* ------------------------------------------------------------------ */
/* fork()                                                              */
/* ------------------------------------------------------------------ */

/*
 * The process forks while a region is tracked. The child writes its copy of
 * (private) guest memory and exits without hanging; the parent keeps
 * tracking exactly: the pages it writes after the fork are reported, no
 * other. (A child's writes to shared memory are its own process's: a
 * tracker of the parent does not see them.)
 */
static void test_fork(void **state)
{
	uint64_t ps = (uint64_t)base_page, len = 64 * ps;
	int ran = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(uffd_and_mprotect) / sizeof(int); i++) {
		int method = uffd_and_mprotect[i], tasks0 = ntasks_base(), status = 0;
		const char *why = method_skip(method);
		uint64_t t0;
		struct pgt_run runs[8];
		pgt_dirty_view *v;
		pgt_engine *e;
		pgt_region *r;
		uint8_t *mem;
		size_t nruns;
		pid_t pid;

		if (why) {
			pgt_test_note("%s: skipped: %s", pgt_dirty_method_name(method), why);
			continue;
		}
		pgt_test_note("%s", pgt_dirty_method_name(method));
		open_registered(&e, &r, &v, &mem, len, method, "fork");
		mem[2 * ps] = 1;
		assert_int_equal(harvest_runs(v, runs, 8, &nruns), 1);
		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (!pid) {
			int bad = 0;

			for (uint64_t p = 0; p < 64; p++)
				mem[p * ps] = (uint8_t)(0x80 | p);
			for (uint64_t p = 0; p < 64; p++)
				bad |= mem[p * ps] != (uint8_t)(0x80 | p);
			_exit(bad);
		}
		mem[5 * ps] = 5;
		mem[9 * ps] = 9;
		t0 = now_ms();
		while (waitpid(pid, &status, WNOHANG) == 0) {
			if (now_ms() - t0 > CHILD_DEADLINE_MS) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				fail_msg("%s: the forked child hung writing its copy",
					 pgt_dirty_method_name(method));
			}
			usleep(2000);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail_msg("%s: child status %#x", pgt_dirty_method_name(method), status);
		mem[9 * ps + 1] = 9;
		assert_int_equal(harvest_runs(v, runs, 8, &nruns), 2);
		assert_int_equal(nruns, 2);
		assert_true(runs[0].gpa == GPA0 + 5 * ps && runs[0].npages == 1);
		assert_true(runs[1].gpa == GPA0 + 9 * ps && runs[1].npages == 1);
		/* the parent's memory is its own: the child's writes did not land */
		assert_int_equal(mem[3 * ps], 0);
		mem[3 * ps] = 3;
		assert_int_equal(harvest_runs(v, runs, 8, &nruns), 1);
		assert_true(runs[0].gpa == GPA0 + 3 * ps);
		assert_null(region_consistent(r));
		pgt_dirty_view_close(v);
		assert_int_equal(pgt_region_destroy(r), 0);
		pgt_engine_close(e);
		assert_in_range(ntasks_settled(tasks0), 1, tasks0);
		munmap(mem, len);
		ran++;
	}
	if (!ran)
		pgt_skip("no dirty method to test here");
}

/* ------------------------------------------------------------------ */
/* A page provider that fails or stalls                                 */
/* ------------------------------------------------------------------ */

#define PV_FAIL 3  /* -EIO at once */
#define PV_STALL 5 /* blocks until released, then -ETIMEDOUT */
#define PV_SLOW 7  /* sleeps, then provides */

struct stall {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, released;
	_Atomic unsigned calls;
};

static struct stall stall = {
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0,
};

static uint8_t pv_byte(uint64_t page)
{
	return (uint8_t)(0x40 + page);
}

static int stall_provider(void *arg, uint64_t gpa, void *dst, size_t len)
{
	uint64_t page = (gpa - GPA0) / len;

	(void)arg;
	atomic_fetch_add(&stall.calls, 1);
	if (page == PV_FAIL)
		return -EIO;
	if (page == PV_STALL) {
		pthread_mutex_lock(&stall.lock);
		stall.entered = true;
		pthread_cond_broadcast(&stall.cond);
		while (!stall.released)
			pthread_cond_wait(&stall.cond, &stall.lock);
		pthread_mutex_unlock(&stall.lock);
		return -ETIMEDOUT; /* a bounded provider gives up */
	}
	if (page == PV_SLOW)
		usleep(100000);
	memset(dst, pv_byte(page), len);
	return 0;
}

static _Thread_local sigjmp_buf tl_jmp;
static _Thread_local volatile int tl_armed;

static void on_sigbus_tl(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	if (!tl_armed)
		_exit(61);
	tl_armed = 0;
	siglongjmp(tl_jmp, 1);
}

/* 0: read @p as @want; 1: SIGBUS; 2: read something else. */
static int read_page(volatile const uint8_t *p, uint8_t want)
{
	uint8_t got;

	if (sigsetjmp(tl_jmp, 1))
		return 1;
	tl_armed = 1;
	got = *p;
	tl_armed = 0;
	return got == want ? 0 : 2;
}

static void *stalled_reader(void *arg)
{
	return (void *)(intptr_t)read_page(arg, 0);
}

/*
 * Child: one provider error, one provider that stalls (while it does, the
 * other handler thread keeps serving first touches) and then gives up, one
 * slow provider. Failures end in SIGBUS for the accessing thread only;
 * counters and bitmaps agree; every thread is gone after close.
 * Exit codes: 0 ok, 1x setup, 2x wrong answer, 3x state.
 */
static int child_provider(void *arg)
{
	struct pgt_engine_config ec = { .size = sizeof(ec), .fault_threads = 2 };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 16 * (uint64_t)base_page,
		.gpa = GPA0, .track = PGT_TRACK_TOUCH, .numa_node = -1, .name = "provider",
		.provider = stall_provider,
	};
	struct sigaction sa = { .sa_sigaction = on_sigbus_tl, .sa_flags = SA_SIGINFO | SA_NODEFER };
	struct pgt_region_stats st = { .size = sizeof(st) };
	uint64_t ps = (uint64_t)base_page;
	int tasks0 = ntasks_base();
	pgt_engine *e;
	pgt_region *r;
	pthread_t t;
	uint8_t *mem;
	void *res;

	(void)arg;
	if (sigaction(SIGBUS, &sa, NULL))
		return 10;
	if (pgt_engine_open(&ec, &e) || pgt_region_create(e, &rc, &r))
		return 11;
	mem = r->addr;
	if (read_page(mem + 1 * ps, pv_byte(1)))
		return 20;
	if (read_page(mem + PV_FAIL * ps, 0) != 1)
		return 21; /* a provider error must end in SIGBUS */
	if (pthread_create(&t, NULL, stalled_reader, mem + PV_STALL * ps))
		return 12;
	pthread_mutex_lock(&stall.lock);
	while (!stall.entered)
		pthread_cond_wait(&stall.cond, &stall.lock);
	pthread_mutex_unlock(&stall.lock);
	/* one handler is stuck in the provider: the other serves these */
	if (read_page(mem + 9 * ps, pv_byte(9)) || read_page(mem + PV_SLOW * ps, pv_byte(PV_SLOW)))
		return 22;
	pthread_mutex_lock(&stall.lock);
	stall.released = true;
	pthread_cond_broadcast(&stall.cond);
	pthread_mutex_unlock(&stall.lock);
	if (pthread_join(t, &res) || (intptr_t)res != 1)
		return 23; /* the stalled access must end in SIGBUS once it gives up */
	if (pgt_region_stats(r, &st) || st.touch_errors != 2 || st.touch_faults != 3)
		return 30;
	if (pgt_touched_count(r) != 3 || pgt_touched_test(r, GPA0 + PV_FAIL * ps) != 0 ||
	    pgt_touched_test(r, GPA0 + PV_STALL * ps) != 0 || region_consistent(r))
		return 31;
	if (atomic_load(&stall.calls) != 5)
		return 32; /* each first touch asked the provider once */
	if (pgt_region_destroy(r))
		return 33;
	pgt_engine_close(e);
	if (ntasks_settled(tasks0) > tasks0)
		return 34;
	return 0;
}

static void test_provider_fails_stalls(void **state)
{
	(void)state;
	if (!pgt_test_have_uffd())
		pgt_skip("userfaultfd not available");
	child_verdict(run_child(child_provider, NULL, "provider"), "provider",
		      "1x setup, 20 good page, 21 error not SIGBUS, 22 a stall blocked other "
		      "faults, 23 stalled access not failed, 3x state");
}

/* ------------------------------------------------------------------ */
/* A harvest buffer too small                                          */
/* ------------------------------------------------------------------ */

/*
 * Runs or bitmap too small: -ENOBUFS with nruns saying how many runs are
 * needed, and nothing consumed: the next harvest with room reports every
 * page, with the pages written since. Another view is not affected.
 */
static void test_harvest_enobufs(void **state)
{
	uint64_t ps = (uint64_t)base_page, len = 256 * ps;
	int method = probe.pagemap_scan ? PGT_DIRTY_UFFD_ASYNC : PGT_DIRTY_MPROTECT;
	struct pgt_run runs[8];
	pgt_dirty_view *v, *v2;
	pgt_engine *e;
	pgt_region *r;
	uint8_t *mem;
	size_t nruns = 0;
	unsigned long small[1];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = small, .bitmap_words = 1 };
	int tasks0 = ntasks_base();

	(void)state;
	open_registered(&e, &r, &v, &mem, len, method, "enobufs");
	assert_int_equal(pgt_dirty_view_open(r, &v2), 0);
	mem[1 * ps] = mem[3 * ps] = mem[200 * ps] = 1;
	assert_int_equal(harvest_runs(v, runs, 1, &nruns), -ENOBUFS);
	assert_int_equal(nruns, 3);
	assert_int_equal(harvest_runs(v, runs, 0, &nruns), -ENOBUFS);
	assert_int_equal(nruns, 3);
	assert_int_equal(pgt_dirty_harvest(v, &h), -ENOBUFS); /* 256 pages > 64 bits */
	mem[4 * ps] = 1;
	assert_int_equal(harvest_runs(v, runs, 8, &nruns), 4);
	assert_int_equal(nruns, 3);
	assert_true(runs[0].gpa == GPA0 + ps && runs[0].npages == 1);
	assert_true(runs[1].gpa == GPA0 + 3 * ps && runs[1].npages == 2);
	assert_true(runs[2].gpa == GPA0 + 200 * ps && runs[2].npages == 1);
	assert_int_equal(harvest_runs(v, runs, 8, &nruns), 0);
	assert_int_equal(harvest_runs(v2, runs, 8, &nruns), 4);
	assert_null(region_consistent(r));
	pgt_dirty_view_close(v2);
	pgt_dirty_view_close(v);
	assert_int_equal(pgt_region_destroy(r), 0);
	pgt_engine_close(e);
	assert_in_range(ntasks_settled(tasks0), 1, tasks0);
	munmap(mem, len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_exhausted),
		cmocka_unit_test(test_uffd_refused),
		cmocka_unit_test(test_uffd_sysctl_off),
		cmocka_unit_test(test_munmap),
		cmocka_unit_test(test_mremap),
		cmocka_unit_test(test_map_fixed),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_provider_fails_stalls),
		cmocka_unit_test(test_harvest_enobufs),
	};

	return cmocka_run_group_tests_name("faults", tests, setup, NULL);
}
