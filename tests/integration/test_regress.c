/* SPDX-License-Identifier: MIT */
/*
 * Regression tests of issue 11, each named after the bug it reproduces, on
 * every dirty method × memory type this kernel offers. The oracle is a
 * consumer's copy of guest memory (a migration destination): it starts as a
 * full copy, takes every page each harvest reports, and must equal the
 * source at the end.
 */
#include "tests/common/testutil.h"
#include "tests/common/matrix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/compat_uapi.h"
#include "lib/bits.h"

#define MiB (1ULL << 20)
#define UNIT PGT_RELEASE_UNIT
#define GPA0 (1ULL << 32)
#define LEN (8 * MiB)

static struct pgt_probe probe = { .size = sizeof(probe) };

/* A source region, one view and the consumer's copy of the memory. */
struct mig {
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	struct pgt_region_info info;
	uint8_t *dst;
	unsigned long *bm;
	size_t words;
	uint64_t reported;  /* pages of the last harvest */
};

/* Engine opened by mig_open's caller hook: bug 2 forces the fallback. */
static bool force_continue_fallback;

static int mig_open(struct mig *m, const struct pgt_case *c, uint32_t extra_track)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)c->backing, .length = LEN, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY | extra_track, .dirty_method = c->method,
		.numa_node = -1, .name = "regress",
	};

	memset(m, 0, sizeof(*m));
	assert_int_equal(pgt_engine_open(NULL, &m->eng), 0);
	if (force_continue_fallback) /* as on a kernel before 6.6 */
		((struct pgt_engine *)m->eng)->probe.uffd_continue_wp = false;
	if (pgt_region_create(m->eng, &rc, &m->r)) {
		pgt_engine_close(m->eng);
		return -1;
	}
	m->info.size = sizeof(m->info);
	assert_int_equal(pgt_region_info(m->r, &m->info), 0);
	assert_int_equal(pgt_dirty_view_open(m->r, &m->v), 0);
	m->words = PGT_KVM_WORDS(m->info.npages);
	m->bm = calloc(m->words, sizeof(*m->bm));
	m->dst = malloc(LEN);
	assert_non_null(m->bm);
	assert_non_null(m->dst);
	/* round 0: everything, after the view opened; through the fd when
	 * reads through the region would fault pages in (touch tracking) */
	if (m->info.track & PGT_TRACK_TOUCH)
		assert_int_equal(pread(m->info.fd, m->dst, LEN, 0), (ssize_t)LEN);
	else
		memcpy(m->dst, m->info.addr, LEN);
	return 0;
}

static void mig_close(struct mig *m)
{
	pgt_dirty_view_close(m->v);
	assert_int_equal(pgt_region_destroy(m->r), 0);
	pgt_engine_close(m->eng);
	free(m->bm);
	free(m->dst);
}

/* One round: harvest and copy what it reports. */
static void mig_round(struct mig *m)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = m->bm, .bitmap_words = m->words };
	uint64_t ps = m->info.page_size;
	int64_t n = pgt_dirty_harvest(m->v, &h);

	assert_true(n >= 0);
	m->reported = (uint64_t)n;
	for (uint64_t p = 0; p < m->info.npages; p++)
		if (m->bm[p / PGT_BITS_PER_LONG] >> (p % PGT_BITS_PER_LONG) & 1)
			memcpy(m->dst + p * ps, (uint8_t *)m->info.addr + p * ps, ps);
}

static bool mig_has(const struct mig *m, uint64_t off)
{
	uint64_t p = off / m->info.page_size;

	return m->bm[p / PGT_BITS_PER_LONG] >> (p % PGT_BITS_PER_LONG) & 1;
}

/* The destination equals the source; names the first differing byte. */
static void mig_check(const struct mig *m, const char *name)
{
	const uint8_t *src = m->info.addr;

	for (uint64_t i = 0; i < LEN; i++)
		if (src[i] != m->dst[i])
			fail_msg("%s: destination differs at offset %#llx (page %llu): %#x != %#x",
				 name, (unsigned long long)i,
				 (unsigned long long)(i / m->info.page_size), m->dst[i], src[i]);
}

typedef void (*case_fn)(const struct pgt_case *c, struct mig *m);

/* Run @fn on every case of the matrix that works here; skip if none did. */
static void matrix(case_fn fn, uint32_t extra_track, bool need_uffd)
{
	struct pgt_case cases[PGT_MATRIX_N];
	int n = pgt_matrix_fill(cases), ran = 0;

	for (int i = 0; i < n; i++) {
		const struct pgt_case *c = &cases[i];
		const char *why = pgt_matrix_skip(c, &probe, LEN, pgt_test_free_hugepages());
		struct mig m;

		if (!why && need_uffd && c->method != PGT_DIRTY_UFFD_ASYNC &&
		    c->method != PGT_DIRTY_UFFD_SYNC)
			why = "needs a userfaultfd tracker (REMOVE events)";
		if (why) {
			pgt_test_note("%s: skipped: %s", c->name, why);
			continue;
		}
		if (mig_open(&m, c, extra_track)) {
			pgt_test_note("%s: skipped: region not available here", c->name);
			continue;
		}
		pgt_test_note("%s", c->name); /* a failure below is in this case */
		fn(c, &m);
		mig_close(&m);
		ran++;
	}
	if (!ran)
		pgt_skip("no dirty method × memory type works here");
}

/*
 * Bug 1: release (and reclaim) changed guest memory without telling the
 * views. A 4 KiB piece released reads back as zero; a consumer that copied
 * the page before kept the old bytes.
 */
static void released_piece(const struct pgt_case *c, struct mig *m)
{
	uint8_t *src = m->info.addr;

	(void)c;
	memset(src + 5 * UNIT, 0xAA, UNIT);
	mig_round(m);
	assert_true(mig_has(m, 5 * UNIT));
	assert_true(pgt_release(m->eng, GPA0 + 5 * UNIT, UNIT, 0, NULL) == 1);
	assert_int_equal(pgt_reclaim(m->eng, GPA0 + 5 * UNIT, UNIT), 1);
	assert_int_equal(src[5 * UNIT], 0);
	mig_round(m);
	assert_true(mig_has(m, 5 * UNIT));
	mig_check(m, "released piece");
	/* reported once: nothing changed since */
	mig_round(m);
	assert_false(mig_has(m, 5 * UNIT));
}

/* Whole pages freed (punch-hole, MADV_REMOVE/DONTNEED) after a copy. */
static void released_page(const struct pgt_case *c, struct mig *m)
{
	uint64_t ps = m->info.page_size;
	uint8_t *src = m->info.addr;

	(void)c;
	memset(src + ps, 0x55, ps);
	memset(src + 3 * ps, 0x66, ps);
	mig_round(m);
	assert_true(pgt_release(m->eng, GPA0 + ps, ps, 0, NULL) > 0);
	mig_round(m);
	assert_true(mig_has(m, ps));
	mig_check(m, "released page");
	/* the guest takes it back and writes it: seen as ever */
	assert_true(pgt_reclaim(m->eng, GPA0 + ps, ps) > 0);
	src[ps + 7] = 9;
	mig_round(m);
	assert_true(mig_has(m, ps));
	mig_check(m, "page reused after reclaim");
}

/* Freed behind pgtrack's back: the REMOVE event and the rescan report it. */
static void removed_behind_back(const struct pgt_case *c, struct mig *m)
{
	uint64_t ps = m->info.page_size;
	uint8_t *src = m->info.addr;
	int advice = c->backing == PGT_BACKING_ANON || c->backing == PGT_BACKING_THP
			     ? MADV_DONTNEED : MADV_REMOVE;

	memset(src + 2 * ps, 0x77, 2 * ps);
	mig_round(m);
	assert_int_equal(madvise(src + 2 * ps, ps, advice), 0);
	assert_true(pgt_release_rescan(m->r) >= 0);
	mig_round(m);
	assert_true(mig_has(m, 2 * ps));
	mig_check(m, "removed behind our back");
}

/*
 * Bug 2: on kernels before 6.6 UFFDIO_CONTINUE refuses MODE_WP, and the
 * fallback switched write protection off for every later fill of the
 * region: later writes were never reported. Pages first written through a
 * second mapping of the fd (MINOR faults in the region), then through the
 * region, and pages filled afterwards must all be seen.
 */
static void minor_then_writes(const struct pgt_case *c, struct mig *m)
{
	uint64_t ps = m->info.page_size;
	volatile uint8_t *src = m->info.addr;
	uint8_t *other;

	(void)c;
	other = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->info.fd, 0);
	assert_true(other != MAP_FAILED);
	other[0] = 0x11;                 /* page 0 in the page cache, not mapped here */
	src[1] = 0x22;                   /* MINOR fault, then the write */
	src[ps + 1] = 0x33;              /* MISSING fault */
	mig_round(m);
	assert_true(mig_has(m, 0));
	assert_true(mig_has(m, ps));
	(void)src[2 * ps];               /* a later fill, by a read */
	mig_round(m);
	src[2 * ps + 9] = 0x44;          /* then written: must be seen */
	src[2] = 0x55;                   /* and page 0 again */
	mig_round(m);
	assert_true(mig_has(m, 2 * ps));
	assert_true(mig_has(m, 0));
	other[3 * ps] = 0x66;            /* another MINOR page, read first */
	(void)src[3 * ps + 1];
	mig_round(m);
	src[3 * ps + 2] = 0x77;
	mig_round(m);
	assert_true(mig_has(m, 3 * ps));
	mig_check(m, "minor faults");
	munmap(other, LEN);
}

static void minor_matrix(bool fallback)
{
	struct pgt_case cases[PGT_MATRIX_N];
	int n = pgt_matrix_fill(cases), ran = 0;

	force_continue_fallback = fallback;
	for (int i = 0; i < n; i++) {
		const struct pgt_case *c = &cases[i];
		const char *why = pgt_matrix_skip(c, &probe, LEN, pgt_test_free_hugepages());
		int mode = c->backing == PGT_BACKING_HUGETLB ? PGT_MEM_HUGETLB : PGT_MEM_SHMEM;
		struct mig m;

		if (c->backing != PGT_BACKING_HUGETLB && c->backing != PGT_BACKING_MEMFD)
			continue; /* MINOR faults need a shared fd */
		if (!why && c->method != PGT_DIRTY_UFFD_ASYNC && c->method != PGT_DIRTY_UFFD_SYNC)
			continue; /* the bug is in uffd-WP fills */
		if (!why && !(probe.uffd_modes[mode] & PGT_UFFD_MODE_MINOR))
			why = "userfaultfd MINOR faults not available for this memory";
		if (!why && !probe.touch_tracking)
			why = "first-touch tracking not available";
		if (why) {
			pgt_test_note("%s: skipped: %s", c->name, why);
			continue;
		}
		if (mig_open(&m, c, PGT_TRACK_TOUCH)) {
			pgt_test_note("%s: skipped: region not available here", c->name);
			continue;
		}
		pgt_test_note("%s%s", c->name, fallback ? " (protect after CONTINUE)" : "");
		minor_then_writes(c, &m);
		mig_close(&m);
		ran++;
	}
	force_continue_fallback = false;
	if (!ran)
		pgt_skip("no uffd-WP tracker with MINOR faults here");
}

static void test_minor_fault_disables_wp(void **state)
{
	(void)state;
	pgt_test_note("this kernel: UFFDIO_CONTINUE_MODE_WP %s",
		      probe.uffd_continue_wp ? "works" : "refused: the fallback runs");
	minor_matrix(false);
}

/* The pre-6.6 path on any kernel: the probe's answer forced to "no". */
static void test_minor_fault_disables_wp_fallback(void **state)
{
	(void)state;
	minor_matrix(true);
}

/*
 * Bug 4: argument structs with any size >= sizeof were accepted, so a
 * garbage size (0xFFFFFFFF) passed; a harvest then consumed pages. One rule
 * now (hal/export.h): smaller than the first version -EINVAL, > 4096
 * -E2BIG, a larger struct only with a zero tail (else -E2BIG), nothing
 * changed by a refused call.
 */
static void test_oversized_arg_accepted(void **state)
{
	struct pgt_engine_config ec = { .size = 0xFFFFFFFFu };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = 0xFFFFFFFFu };
	struct pgt_region_stats st = { .size = 0xFFFFFFFFu };
	struct pgt_release_result res = { .size = 0xFFFFFFFFu };
	struct pgt_harvest h = { .size = 0xFFFFFFFFu };
	struct {
		struct pgt_harvest h;
		uint8_t tail[24];
	} big = { .h = { .size = sizeof(big) } };
	struct {
		struct pgt_region_info info;
		uint8_t tail[8];
	} bigi;
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	volatile uint8_t *mem;

	(void)state;
	assert_int_equal(pgt_engine_open(&ec, &eng), -E2BIG);
	ec.size = sizeof(ec) - 1;
	assert_int_equal(pgt_engine_open(&ec, &eng), -EINVAL);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	rc.size = 0xFFFFFFFFu;
	assert_int_equal(pgt_region_create(eng, &rc, &r), -E2BIG);
	rc.size = sizeof(rc);
	if (pgt_region_create(eng, &rc, &r)) {
		pgt_engine_close(eng);
		pgt_skip("no dirty tracking for anonymous memory here");
	}
	assert_int_equal(pgt_region_info(r, &info), -E2BIG);
	assert_int_equal(pgt_region_stats(r, &st), -E2BIG);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	info.size = sizeof(info);
	assert_int_equal(pgt_region_info(r, &info), 0);
	mem = info.addr;
	mem[0] = 1;
	mem[3 * UNIT] = 1;
	assert_int_equal(pgt_dirty_harvest(v, &h), -E2BIG);
	assert_int_equal(pgt_release(eng, 8 * UNIT, UNIT, 0, &res), -E2BIG);
	/* a newer caller's larger struct: a non-zero unknown byte is refused */
	big.tail[5] = 1;
	assert_int_equal(pgt_dirty_harvest(v, &big.h), -E2BIG);
	big.tail[5] = 0;
	/* nothing was consumed by the refused calls */
	assert_int_equal(pgt_dirty_harvest(v, &big.h), 2);
	/* an output struct's unknown tail is zeroed */
	memset(&bigi, 0xAB, sizeof(bigi));
	bigi.info.size = sizeof(bigi);
	assert_int_equal(pgt_region_info(r, &bigi.info), 0);
	for (size_t i = 0; i < sizeof(bigi.tail); i++)
		assert_int_equal(bigi.tail[i], 0);
	assert_int_equal(pgt_released_count(r), 0);
	pgt_dirty_view_close(v);
	pgt_engine_close(eng);
}

/*
 * Bug 4: a region whose [gpa, gpa + length) wrapped past 2^64 was accepted;
 * lookups then failed and a second region at gpa 0 was accepted too.
 */
static void test_gpa_wrap_accepted(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB,
		.gpa = UINT64_MAX - 2 * MiB + 1, .numa_node = -1,
	};
	pgt_engine *eng;
	pgt_region *r, *r2;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	rc.gpa &= ~(uint64_t)(UNIT - 1);
	assert_int_equal(pgt_region_create(eng, &rc, &r), -EINVAL);
	/* ending exactly at 2^64 is a wrap too: the end is not representable */
	rc.gpa = 0ULL - 4 * MiB;
	assert_int_equal(pgt_region_create(eng, &rc, &r), -EINVAL);
	rc.gpa = 0ULL - 8 * MiB;
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_gpa_lookup(eng, rc.gpa + 4 * MiB - 1, NULL, NULL), 0);
	rc.gpa = 0;
	assert_int_equal(pgt_region_create(eng, &rc, &r2), 0);
	/* overlapping guest-physical ranges are refused */
	rc.gpa = 2 * MiB;
	assert_int_equal(pgt_region_create(eng, &rc, &r), -EEXIST);
	pgt_engine_close(eng);
}

/* Bug 4: runs_cap == 0 answered -EINVAL instead of saying how many runs. */
static void test_runs_cap_zero_einval(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_run runs[4];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 0 };
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	volatile uint8_t *mem;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	if (pgt_region_create(eng, &rc, &r)) {
		pgt_engine_close(eng);
		pgt_skip("no dirty tracking for anonymous memory here");
	}
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	mem = info.addr;
	mem[0] = mem[2 * UNIT] = mem[7 * UNIT] = 1;
	assert_int_equal(pgt_dirty_harvest(v, &h), -ENOBUFS);
	assert_int_equal(h.nruns, 3);
	h.runs_cap = h.nruns;
	assert_int_equal(pgt_dirty_harvest(v, &h), 3);
	assert_int_equal(h.nruns, 3);
	assert_int_equal(runs[2].gpa, 7 * UNIT);
	pgt_dirty_view_close(v);
	pgt_engine_close(eng);
}

/*
 * Bug 5: a registered private MAP_HUGETLB mapping was taken for 4 KiB
 * memory (hugetlb was detected from the fd only): tracked at the wrong
 * granularity, and soft-dirty accepted on it although clear_refs skips
 * hugetlb. The VMA's kernel page size and flags decide now.
 */
static void test_private_hugetlb_taken_for_4k(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = 4 * MiB,
		.gpa = 0, .fd = -1, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_engine *eng;
	pgt_region *r;
	void *p;

	(void)state;
	if (pgt_test_free_hugepages() < 2)
		pgt_skip("needs 2 free 2 MiB hugepages");
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED)
		pgt_skip("private MAP_HUGETLB mapping refused: %s", strerror(errno));
	rc.addr = p;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_register(eng, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(info.page_size, 2 * MiB);
	assert_int_equal(info.npages, 2);
	assert_int_equal(pgt_region_destroy(r), 0);
	/* a page size that contradicts the VMA is refused */
	rc.page_size = UNIT;
	assert_int_equal(pgt_region_register(eng, &rc, &r), -EINVAL);
	rc.page_size = 0;
	/* soft-dirty cannot track hugetlb, whatever the kernel has */
	rc.track = PGT_TRACK_DIRTY;
	rc.dirty_method = PGT_DIRTY_SOFT_DIRTY;
	assert_int_equal(pgt_region_register(eng, &rc, &r), -EOPNOTSUPP);
	pgt_engine_close(eng);
	munmap(p, 4 * MiB);
}

/*
 * Bug 5: pgt__uffd_wp retried EAGAIN forever. UFFDIO_WRITEPROTECT answers
 * EAGAIN while a REMOVE event is unread, and with one handler thread the
 * reader is the thread retrying: a deadlock, vCPU and madvise() both stuck.
 * The wp callback holds the only handler until another thread's madvise is
 * queued (our own WRITEPROTECT sees EAGAIN), then the write must complete.
 * Runs in a child so a deadlock is a failure, not a hung test.
 */
struct eagain_ctx {
	pgt_region *r;
	uint8_t *mem;
	uint64_t ps;
	pthread_t th;
	_Atomic int stage;
	bool queued;
};

static void *madvise_thread(void *arg)
{
	struct eagain_ctx *x = arg;

	madvise(x->mem + 3 * x->ps, x->ps, MADV_DONTNEED);
	return NULL;
}

static void eagain_wp_cb(void *arg, uint64_t gpa)
{
	struct eagain_ctx *x = arg;
	struct pgt_region *r = (struct pgt_region *)x->r;
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)x->mem + 2 * x->ps, .len = x->ps },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	(void)gpa;
	if (atomic_exchange(&x->stage, 1))
		return; /* once */
	pthread_create(&x->th, NULL, madvise_thread, x);
	for (int i = 0; i < 2000; i++) { /* until the REMOVE event is queued */
		if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w) && errno == EAGAIN) {
			x->queued = true;
			return;
		}
		usleep(1000);
	}
}

static int eagain_child(void)
{
	struct pgt_engine_config ec = { .size = sizeof(ec), .fault_threads = 1 };
	struct eagain_ctx x = { 0 };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = 0,
		.track = PGT_TRACK_DIRTY | PGT_TRACK_REMOVE, .dirty_method = PGT_DIRTY_UFFD_SYNC,
		.numa_node = -1, .wp_cb = eagain_wp_cb, .wp_arg = &x,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_engine *eng;

	if (pgt_engine_open(&ec, &eng) || pgt_region_create(eng, &rc, &x.r) ||
	    pgt_region_info(x.r, &info))
		return 77;
	x.mem = info.addr;
	x.ps = info.page_size;
	x.mem[0] = 1; /* WP fault: the callback queues the REMOVE, then unprotect */
	pthread_join(x.th, NULL);
	pgt_engine_close(eng);
	return x.queued ? 0 : 78;
}

static void test_uffd_wp_eagain_deadlock(void **state)
{
	int status = 0;
	pid_t pid;

	(void)state;
	if (!(probe.uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) ||
	    !(probe.uffd_features & UFFD_FEATURE_EVENT_REMOVE))
		pgt_skip("sync userfaultfd write-protect with REMOVE events not available");
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(eagain_child());
	bool done = false;

	for (int i = 0; i < 300 && !(done = waitpid(pid, &status, WNOHANG) == pid); i++)
		usleep(100 * 1000);
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("a write fault and a madvise() deadlocked (30 s)");
	}
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		pgt_skip("uffd-sync region not available here");
	if (WEXITSTATUS(status) == 78)
		pgt_skip("the REMOVE event could not be queued during the fault");
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * Bug 5: pgt_engine_close() freed open views under their owners while
 * pgt_region_destroy() refused with -EBUSY. Destroy still refuses; engine
 * close, which cannot, detaches the caller's views: the handle stays valid
 * for close (ASan checks the use-after-free that was) and frees its own
 * (write-age sampling) view.
 */
static void test_view_freed_by_engine_close(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};
	struct pgt_harvest h = { .size = sizeof(h) };
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v, *v2;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	if (pgt_region_create(eng, &rc, &r)) {
		pgt_engine_close(eng);
		pgt_skip("no dirty tracking for anonymous memory here");
	}
	assert_int_equal(pgt_age_start(r), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v2), 0);
	assert_int_equal(pgt_region_destroy(r), -EBUSY);
	pgt_dirty_view_close(v2);
	pgt_engine_close(eng);
	assert_int_equal(pgt_dirty_harvest(v, &h), -ENODEV);
	pgt_dirty_view_close(v);
}

/*
 * Bug 5, soft-dirty: the quiesce callback ran with the harvest lock held
 * (a writer that calls pgtrack before parking deadlocked), and when one
 * region's pause failed, sync_all resumed regions it had never paused.
 * The kernel here may lack soft-dirty: the tracker's logic runs anyway with
 * the probe's answer forced (its bits then never show, which these
 * checks do not need).
 */
struct quiesce_log {
	pgt_region *r;
	int fail_pause;     /* return this from a pause */
	int paused, resumed;
	int locked_in_cb;   /* harvest_lock was held during a callback */
};

static int quiesce_cb(void *arg, bool pause)
{
	struct quiesce_log *q = arg;
	struct pgt_region *r = (struct pgt_region *)q->r;

	if (r && pthread_mutex_trylock(&r->harvest_lock))
		q->locked_in_cb++;
	else if (r)
		pthread_mutex_unlock(&r->harvest_lock);
	if (pause) {
		if (q->fail_pause)
			return q->fail_pause;
		q->paused++;
	} else {
		q->resumed++;
	}
	return 0;
}

static void test_softdirty_quiesce_under_lock(void **state)
{
	struct quiesce_log qa = { 0 }, qb = { 0 };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_SOFT_DIRTY,
		.numa_node = -1, .quiesce = quiesce_cb,
	};
	struct pgt_harvest h = { .size = sizeof(h) };
	pgt_engine *eng;
	pgt_dirty_view *va, *vb;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	((struct pgt_engine *)eng)->probe.soft_dirty = true;
	rc.quiesce_arg = &qa;
	if (pgt_region_create(eng, &rc, &qa.r)) {
		pgt_engine_close(eng);
		pgt_skip("/proc/self/clear_refs not writable here");
	}
	rc.gpa = 4 * MiB;
	rc.quiesce_arg = &qb;
	assert_int_equal(pgt_region_create(eng, &rc, &qb.r), 0);
	assert_int_equal(pgt_dirty_view_open(qa.r, &va), 0);
	assert_int_equal(pgt_dirty_view_open(qb.r, &vb), 0);
	assert_true(pgt_dirty_harvest(va, &h) >= 0);
	assert_int_equal(qa.locked_in_cb + qb.locked_in_cb, 0);
	assert_int_equal(qa.paused, qa.resumed);
	assert_int_equal(qb.paused, qb.resumed);
	assert_true(qa.paused >= 1 && qb.paused >= 1);
	/* one region's writers cannot be paused: the harvest fails, and only
	 * the writers that were paused are resumed */
	qb.fail_pause = -EAGAIN;
	assert_int_equal(pgt_dirty_harvest(va, &h), -EAGAIN);
	assert_int_equal(qa.paused, qa.resumed);
	assert_int_equal(qb.paused, qb.resumed);
	qb.fail_pause = 0;
	assert_true(pgt_dirty_harvest(vb, &h) >= 0);
	assert_int_equal(qa.locked_in_cb + qb.locked_in_cb, 0);
	pgt_dirty_view_close(va);
	pgt_dirty_view_close(vb);
	pgt_engine_close(eng);
	assert_int_equal(qa.paused, qa.resumed);
	assert_int_equal(qb.paused, qb.resumed);
}

/*
 * Bug 5, documented limits of the mprotect tracker, checked: 64 regions at
 * most, and a kernel write (read(2)) into a protected page fails with
 * EFAULT instead of being tracked.
 */
static void test_mprotect_limits_undocumented(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 64 * 1024,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_MPROTECT, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_region *r[65];
	pgt_engine *eng;
	int fds[2], n = 0;
	char msg[8] = "pgtrack";

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	for (; n < 65; n++) {
		rc.gpa = (uint64_t)n << 20;
		if (pgt_region_create(eng, &rc, &r[n]))
			break;
	}
	assert_int_equal(n, 64);
	assert_int_equal(pgt_region_create(eng, &rc, &r[64]), -ENOSPC);
	assert_int_equal(pgt_region_info(r[0], &info), 0);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], msg, sizeof(msg)), (ssize_t)sizeof(msg));
	errno = 0;
	assert_int_equal(read(fds[0], info.addr, sizeof(msg)), -1);
	assert_int_equal(errno, EFAULT);
	close(fds[0]);
	close(fds[1]);
	pgt_engine_close(eng);
}

static void test_released_piece_not_reported(void **state)
{
	(void)state;
	matrix(released_piece, 0, false);
}

static void test_released_page_not_reported(void **state)
{
	(void)state;
	matrix(released_page, 0, false);
}

static void test_removed_page_not_reported(void **state)
{
	(void)state;
	if (!(probe.uffd_features & UFFD_FEATURE_EVENT_REMOVE))
		pgt_skip("userfaultfd REMOVE events not available");
	matrix(removed_behind_back, PGT_TRACK_REMOVE, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_released_piece_not_reported),
		cmocka_unit_test(test_released_page_not_reported),
		cmocka_unit_test(test_removed_page_not_reported),
		cmocka_unit_test(test_minor_fault_disables_wp),
		cmocka_unit_test(test_minor_fault_disables_wp_fallback),
		cmocka_unit_test(test_oversized_arg_accepted),
		cmocka_unit_test(test_gpa_wrap_accepted),
		cmocka_unit_test(test_runs_cap_zero_einval),
		cmocka_unit_test(test_private_hugetlb_taken_for_4k),
		cmocka_unit_test(test_uffd_wp_eagain_deadlock),
		cmocka_unit_test(test_view_freed_by_engine_close),
		cmocka_unit_test(test_softdirty_quiesce_under_lock),
		cmocka_unit_test(test_mprotect_limits_undocumented),
	};

	pgt_probe(&probe);
	return cmocka_run_group_tests_name("regress", tests, NULL, NULL);
}
