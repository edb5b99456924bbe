/* SPDX-License-Identifier: MIT */
/*
 * First-touch tracking on the real kernel, per memory type (anon, THP,
 * hugetlb, memfd): exact counts and order after a thread touches a known
 * sequence, several faulting threads at once, pages present before
 * registration, page providers (snapshot restore), a failing provider that
 * must deliver SIGBUS instead of hanging (with and without UFFDIO_POISON),
 * minor faults on a shared fd populated through another mapping, first touch
 * combined with dirty tracking on the same uffd, and bad input.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pgtrack.h>
/* White box: the no-POISON fallback is forced by masking the negotiated
 * feature, as on a kernel before 6.6. */
#include "engine/engine_pvt.h"

#define HUGE_2M (2ULL << 20)
#define GPA_BASE (1ULL << 32)
#define WORDS(n) (((n) + 63) / 64)

static struct pgt_probe probe = { .size = sizeof(probe) };
static uint64_t seed;

struct memtype {
	const char *name;
	uint32_t backing;
	uint64_t length;
};

static const struct memtype memtypes[] = {
	{ "anon", PGT_BACKING_ANON, 16u << 20 },
	{ "thp", PGT_BACKING_THP, 16u << 20 },
	{ "hugetlb", PGT_BACKING_HUGETLB, 16u << 20 },
	{ "memfd", PGT_BACKING_MEMFD, 16u << 20 },
};
#define NMEM (sizeof(memtypes) / sizeof(memtypes[0]))

/* Why a memory type cannot run here, or NULL. */
static const char *mem_skip(const struct memtype *m, uint64_t huge_bytes)
{
	if (probe.uffd_error || !probe.touch_tracking)
		return "userfaultfd MISSING not available here";
	if (m->backing == PGT_BACKING_HUGETLB &&
	    (uint64_t)pgt_test_free_hugepages() * HUGE_2M < huge_bytes)
		return "not enough free 2 MiB hugepages (echo N > /proc/sys/vm/nr_hugepages)";
	return NULL;
}

static void skip_if(const char *why, const char *what)
{
	if (why)
		pgt_skip("%s: %s", what, why);
}

static void log_note(void *arg, int level, const char *msg)
{
	(void)arg;
	pgt_test_note("pgtrack[%d]: %s", level, msg);
}

static pgt_engine *open_engine(unsigned threads)
{
	static int level = -1;
	struct pgt_engine_config ec = { .size = sizeof(ec), .fault_threads = threads };

	if (level < 0)
		level = getenv("PGT_TEST_LOG") ? atoi(getenv("PGT_TEST_LOG")) : 0;
	if (level) {
		ec.log = log_note;
		ec.log_level = level;
	}
	pgt_engine *e = NULL;

	assert_int_equal(pgt_engine_open(&ec, &e), 0);
	return e;
}

static pgt_region *create(pgt_engine *e, const struct memtype *m, uint32_t track,
			  pgt_page_provider prov, void *arg, struct pgt_region_info *info)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = m->backing, .length = m->length,
		.gpa = GPA_BASE, .track = track, .numa_node = -1, .name = m->name,
		.provider = prov, .provider_arg = arg,
	};
	pgt_region *r = NULL;

	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	info->size = sizeof(*info);
	assert_int_equal(pgt_region_info(r, info), 0);
	return r;
}

static struct pgt_region_stats stats(pgt_region *r)
{
	struct pgt_region_stats st = { .size = sizeof(st) };

	assert_int_equal(pgt_region_stats(r, &st), 0);
	return st;
}

/* ---- a thread that touches pages in a given order ---- */

struct toucher {
	uint8_t *addr;
	uint64_t page_size;
	const uint64_t *pages;
	size_t n;
	unsigned write_every; /* write every k-th page (0: read only) */
	uint64_t sum;         /* of the bytes read, keeps reads alive */
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;

	for (size_t i = 0; i < t->n; i++) {
		volatile uint8_t *p = t->addr + t->pages[i] * t->page_size + (i % 13) * 64;

		/* guest memory: several vCPUs may hit one page (atomic for TSan) */
		if (t->write_every && i % t->write_every == 0)
			__atomic_store_n(p, (uint8_t)(t->pages[i] | 1), __ATOMIC_RELAXED);
		else
			t->sum += __atomic_load_n(p, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void run_touchers(struct toucher *t, unsigned n)
{
	pthread_t th[8];

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, touch_thread, &t[i]), 0);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

/* A sequence with sequential runs, strided runs and random distinct pages. */
static size_t make_sequence(uint64_t *out, uint64_t npages, size_t want, uint64_t *s)
{
	uint8_t *used = calloc(npages, 1);
	size_t n = 0;

	assert_non_null(used);
	/* a forward run, a backward run and a stride-3 run */
	for (uint64_t p = npages / 4; p < npages / 4 + npages / 16 && n < want / 3; p++)
		if (!used[p]) {
			used[p] = 1;
			out[n++] = p;
		}
	for (uint64_t p = npages - 1; p > npages - 1 - npages / 32 && n < want / 2; p--)
		if (!used[p]) {
			used[p] = 1;
			out[n++] = p;
		}
	for (uint64_t p = 1; p < npages && n < (2 * want) / 3; p += 3)
		if (!used[p]) {
			used[p] = 1;
			out[n++] = p;
		}
	while (n < want) {
		uint64_t p = pgt_test_rand(s) % npages;

		if (!used[p]) {
			used[p] = 1;
			out[n++] = p;
		}
	}
	free(used);
	return n;
}

/* Read the whole first-touch order in pieces of @step starting at @from. */
static void check_order(pgt_region *r, const uint64_t *want, size_t n)
{
	uint64_t *got = calloc(n + 8, sizeof(*got));
	const size_t steps[] = { 1, 7, 100, 4096, n + 8 };

	assert_non_null(got);
	for (size_t si = 0; si < sizeof(steps) / sizeof(steps[0]); si++) {
		size_t pos = 0;

		memset(got, 0xff, (n + 8) * sizeof(*got));
		for (;;) {
			int64_t k = pgt_touch_order(r, pos, got + pos, steps[si]);

			assert_true(k >= 0);
			if (!k)
				break;
			pos += (size_t)k;
			assert_true(pos <= n);
		}
		if (pos != n)
			pgt_test_note("order read with step %zu: %zu of %zu entries", steps[si], pos, n);
		assert_int_equal(pos, n);
		for (size_t i = 0; i < n; i++) {
			if (got[i] != want[i])
				pgt_test_note("order entry %zu: got %llu want %llu (step %zu)", i,
					      (unsigned long long)got[i], (unsigned long long)want[i],
					      steps[si]);
			assert_int_equal(got[i], want[i]);
		}
	}
	/* random access: checkpoints must land mid-sequence correctly */
	for (size_t i = 0; i < n; i += 1 + n / 37) {
		uint64_t one;

		assert_int_equal(pgt_touch_order(r, i, &one, 1), 1);
		assert_int_equal(one, want[i]);
	}
	assert_int_equal(pgt_touch_order(r, n, got, 4), 0);
	assert_int_equal(pgt_touch_order(r, n + 1000, got, 4), 0);
	free(got);
}

static void check_bitmap(pgt_region *r, uint64_t npages, const uint64_t *pages, size_t n)
{
	size_t words = WORDS(npages);
	unsigned long *bm = calloc(words, sizeof(*bm));
	uint64_t *want = calloc(words, sizeof(*want));

	assert_non_null(bm);
	assert_non_null(want);
	for (size_t i = 0; i < n; i++)
		want[pages[i] / 64] |= 1ULL << (pages[i] % 64);
	assert_int_equal(pgt_touched_bitmap(r, bm, words), (int64_t)n);
	assert_memory_equal(bm, want, words * sizeof(*bm));
	free(bm);
	free(want);
}

/* ---- cases ---- */

/* One thread touches a known sequence: count, bits, bitmap, order exact. */
static void test_order(void **state)
{
	const struct memtype *m = *state;
	struct pgt_region_info info;
	pgt_engine *e;
	pgt_region *r;
	uint64_t s = seed, *seq;
	size_t n;
	struct pgt_region_stats st;

	skip_if(mem_skip(m, m->length), m->name);
	e = open_engine(1);
	r = create(e, m, PGT_TRACK_TOUCH, NULL, NULL, &info);
	assert_int_equal(pgt_touched_count(r), 0);

	seq = calloc(info.npages, sizeof(*seq));
	assert_non_null(seq);
	n = make_sequence(seq, info.npages, info.npages > 64 ? info.npages * 3 / 4 : info.npages / 2, &s);
	{
		struct toucher t = { info.addr, info.page_size, seq, n, 3, 0 };

		run_touchers(&t, 1);
	}
	assert_int_equal(pgt_touched_count(r), (int64_t)n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(pgt_touched_test(r, info.gpa + seq[i] * info.page_size + 5), 1);
	check_bitmap(r, info.npages, seq, n);
	check_order(r, seq, n);
	st = stats(r);
	assert_int_equal(st.touched, n);
	assert_int_equal(st.touch_errors, 0);
	/* one MISSING fault per page: a write after a read-resolved zero page
	 * is a kernel COW fault, not a uffd one */
	assert_int_equal(st.touch_faults, n);

	/* untouched pages read as zero and count as touched afterwards; the
	 * written ones kept their data */
	for (size_t i = 0; i < n; i += 3) {
		uint8_t v = ((uint8_t *)info.addr)[seq[i] * info.page_size + (i % 13) * 64];

		assert_int_equal(v, (uint8_t)(seq[i] | 1));
	}
	free(seq);
	pgt_region_destroy(r);
	pgt_engine_close(e);
}

/* Several threads fault at once (overlapping sets, two handler threads):
 * every page counted once, order is a permutation of the union. */
static void test_concurrent(void **state)
{
	const struct memtype *m = *state;
	struct pgt_region_info info;
	struct toucher t[3];
	uint64_t s = seed, *seqs[3], *order;
	uint8_t *want;
	uint64_t nwant = 0;
	pgt_engine *e;
	pgt_region *r;

	skip_if(mem_skip(m, m->length), m->name);
	e = open_engine(2);
	r = create(e, m, PGT_TRACK_TOUCH, NULL, NULL, &info);
	want = calloc(info.npages, 1);
	assert_non_null(want);
	for (unsigned k = 0; k < 3; k++) {
		size_t n = (size_t)info.npages / 2;

		seqs[k] = calloc(info.npages, sizeof(uint64_t));
		assert_non_null(seqs[k]);
		n = make_sequence(seqs[k], info.npages, n, &s);
		for (size_t i = 0; i < n; i++) {
			nwant += !want[seqs[k][i]];
			want[seqs[k][i]] = 1;
		}
		t[k] = (struct toucher){ info.addr, info.page_size, seqs[k], n, k + 1, 0 };
	}
	run_touchers(t, 3);
	assert_int_equal(pgt_touched_count(r), (int64_t)nwant);
	order = calloc(info.npages + 1, sizeof(*order));
	assert_non_null(order);
	assert_int_equal(pgt_touch_order(r, 0, order, info.npages + 1), (int64_t)nwant);
	for (uint64_t i = 0; i < nwant; i++) {
		assert_true(order[i] < info.npages);
		assert_int_equal(want[order[i]], 1); /* touched, and not seen before */
		want[order[i]] = 2;
	}
	assert_int_equal(stats(r).touch_errors, 0);
	for (unsigned k = 0; k < 3; k++)
		free(seqs[k]);
	free(order);
	free(want);
	pgt_region_destroy(r);
	pgt_engine_close(e);
}

/* ---- providers ---- */

struct prov {
	uint64_t gpa_base;
	uint64_t page_size;
	uint64_t zero_every;      /* pages with index % zero_every == 1 return 1 */
	uint64_t fail_page;       /* this page fails (UINT64_MAX: none) */
	_Atomic uint64_t calls;
};

static uint64_t pattern(uint64_t gpa, uint64_t off)
{
	return (gpa + off) * 0x9E3779B97F4A7C15ULL ^ 0x5eed;
}

static int provide(void *arg, uint64_t gpa, void *dst, size_t len)
{
	struct prov *p = arg;
	uint64_t page = (gpa - p->gpa_base) / p->page_size;

	atomic_fetch_add(&p->calls, 1);
	if (len != p->page_size || gpa % p->page_size)
		return -EINVAL;
	if (page == p->fail_page)
		return -EIO;
	if (p->zero_every && page % p->zero_every == 1)
		return 1;
	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)((uint8_t *)dst + off) = pattern(gpa, off);
	return 0;
}

/* Snapshot-restore style: every first touch pulls the page from the
 * provider; contents must be exactly what it supplied. */
static void test_provider(void **state)
{
	const struct memtype *m = *state;
	struct pgt_region_info info;
	struct prov pv = { GPA_BASE, 0, 5, UINT64_MAX, 0 };
	uint64_t s = seed, *seq;
	size_t n;
	pgt_engine *e;
	pgt_region *r;

	skip_if(mem_skip(m, m->length), m->name);
	pv.page_size = m->backing == PGT_BACKING_HUGETLB ? HUGE_2M : (uint64_t)sysconf(_SC_PAGESIZE);
	e = open_engine(1);
	r = create(e, m, PGT_TRACK_TOUCH, provide, &pv, &info);
	assert_int_equal(info.page_size, pv.page_size);
	seq = calloc(info.npages, sizeof(*seq));
	assert_non_null(seq);
	n = make_sequence(seq, info.npages, info.npages / 2, &s);
	{
		struct toucher t = { info.addr, info.page_size, seq, n, 0, 0 };

		run_touchers(&t, 1);
	}
	{
		struct pgt_region_stats st = stats(r);

		pgt_test_note("calls %llu n %zu touched %lld faults %llu errors %llu",
			      (unsigned long long)atomic_load(&pv.calls), n,
			      (long long)pgt_touched_count(r), (unsigned long long)st.touch_faults,
			      (unsigned long long)st.touch_errors);
	}
	assert_int_equal(atomic_load(&pv.calls), n);
	assert_int_equal(pgt_touched_count(r), (int64_t)n);
	check_order(r, seq, n);
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = info.gpa + seq[i] * info.page_size;
		const uint8_t *pg = info.addr + seq[i] * info.page_size;

		for (uint64_t off = 0; off < info.page_size; off += info.page_size / 8) {
			uint64_t v = *(const uint64_t *)(pg + off);
			uint64_t want = seq[i] % 5 == 1 ? 0 : pattern(gpa, off);

			if (v != want)
				pgt_test_note("page %llu offset %llu: %#llx want %#llx",
					      (unsigned long long)seq[i], (unsigned long long)off,
					      (unsigned long long)v, (unsigned long long)want);
			assert_true(v == want);
		}
	}
	assert_int_equal(stats(r).touch_errors, 0);
	assert_int_equal(stats(r).touch_faults, n);
	free(seq);
	pgt_region_destroy(r);
	pgt_engine_close(e);
}

/*
 * A failing provider must not hang the vCPU: it gets SIGBUS. Run in a child
 * process (the signal is fatal by design); the parent waits with a timeout.
 * @no_poison forces the fallback used on kernels without UFFDIO_POISON.
 */
static uintptr_t bus_lo, bus_hi; /* the failing page, set before touching */

/*
 * Exit codes: 41 the access itself faulted with SIGBUS at the failing page
 * (UFFDIO_POISON: BUS_ADRERR since 6.11, BUS_MCEERR_AR before), 42 SIGBUS
 * sent to the thread (SI_TKILL), 44 SIGBUS elsewhere, 50+ other si_code.
 */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	(void)sig;
	(void)uc;
	if (si->si_code == BUS_ADRERR || si->si_code == BUS_MCEERR_AR)
		_exit(a >= bus_lo && a < bus_hi ? 41 : 44);
	_exit(si->si_code == SI_TKILL ? 42 : 50 + (si->si_code & 15));
}

static int child_provider_error(const struct memtype *m, bool no_poison)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = m->backing, .length = m->length,
		.gpa = GPA_BASE, .track = PGT_TRACK_TOUCH, .numa_node = -1, .name = m->name,
		.provider = provide,
	};
	struct prov pv = { GPA_BASE, 0, 0, 3, 0 };
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_engine *e = NULL;
	pgt_region *r = NULL;
	uint64_t seq[2] = { 2, 3 };
	struct toucher t;

	rc.provider_arg = &pv;
	pv.page_size = m->backing == PGT_BACKING_HUGETLB ? HUGE_2M : (uint64_t)sysconf(_SC_PAGESIZE);
	if (sigaction(SIGBUS, &sa, NULL))
		return 10;
	if (pgt_engine_open(NULL, &e))
		return 11;
	if (pgt_region_create(e, &rc, &r) || pgt_region_info(r, &info))
		return 12;
	if (no_poison) {
		if (!(r->uffd_features & UFFD_FEATURE_THREAD_ID))
			return 77;
		/* handlers read it under fault_lock (read side): taking the
		 * write side orders this store before them (TSan sees it) */
		pthread_rwlock_wrlock(&r->eng->fault_lock);
		r->uffd_features &= ~(uint64_t)UFFD_FEATURE_POISON;
		pthread_rwlock_unlock(&r->eng->fault_lock);
	} else if (!(r->uffd_features & UFFD_FEATURE_POISON)) {
		return 77;
	}
	bus_lo = (uintptr_t)info.addr + 3 * info.page_size;
	bus_hi = bus_lo + info.page_size;
	t = (struct toucher){ info.addr, info.page_size, seq, 2, 0, 0 };
	run_touchers(&t, 1); /* page 2 is fine, page 3 fails */
	return 20;           /* no signal: the access "succeeded" */
}

static void test_provider_error(void **state, bool no_poison)
{
	const struct memtype *m = *state;
	int status = 0;
	pid_t pid;
	int waited_ms = 0;

	skip_if(mem_skip(m, m->length), m->name);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(child_provider_error(m, no_poison));
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		assert_true(w >= 0);
		if (w == pid)
			break;
		if (waited_ms >= 10000) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s: the faulting thread hung after a provider error", m->name);
		}
		usleep(10000);
		waited_ms += 10;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		pgt_skip("%s: %s not available on this kernel", m->name,
			 no_poison ? "UFFD_FEATURE_THREAD_ID" : "UFFDIO_POISON");
	if (!WIFEXITED(status))
		fail_msg("%s: child died with signal %d", m->name, WTERMSIG(status));
	/* 41: SIGBUS from the poisoned page; 42: SIGBUS sent to the thread */
	if (WEXITSTATUS(status) != (no_poison ? 42 : 41))
		fail_msg("%s: child exit %d (41 SIGBUS at the page, 42 tgkill SIGBUS, 44 SIGBUS "
			 "elsewhere, 5x other SIGBUS, 20 no signal, 1x setup)", m->name,
			 WEXITSTATUS(status));
}

static void test_provider_poison(void **state)
{
	test_provider_error(state, false);
}

static void test_provider_signal(void **state)
{
	test_provider_error(state, true);
}

/* ---- registered memory ---- */

/*
 * Pages populated before registration never fault: they are counted at
 * registration (ascending in the order) and later first touches follow.
 */
static void test_prepopulated(void **state)
{
	const struct memtype *m = *state;
	uint64_t ps = m->backing == PGT_BACKING_HUGETLB ? HUGE_2M : (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t npages = m->length / ps, pre[5], later[3] = { 1, npages - 2, 4 };
	uint64_t want[8];
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = m->length,
		.gpa = GPA_BASE, .track = PGT_TRACK_TOUCH, .numa_node = -1, .name = m->name,
		.fd = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_engine *e;
	pgt_region *r;
	uint8_t *p;
	int fd = -1;

	skip_if(mem_skip(m, m->length), m->name);
	if (m->backing == PGT_BACKING_HUGETLB || m->backing == PGT_BACKING_MEMFD) {
		fd = memfd_create("pre", MFD_CLOEXEC |
				  (m->backing == PGT_BACKING_HUGETLB ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)m->length), 0);
		p = mmap(NULL, m->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else {
		p = mmap(NULL, m->length, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		/* keep pages 4 KiB-exact: with THP "always" (Debian's
		 * default) a plain anonymous write faults in 2 MiB */
		if (p != MAP_FAILED)
			madvise(p, m->length, MADV_NOHUGEPAGE);
	}
	assert_true(p != MAP_FAILED);
	/* unsorted on purpose: the registration scan reports ascending */
	pre[0] = 5; pre[1] = 0; pre[2] = npages - 1; pre[3] = 3; pre[4] = 2;
	for (int i = 0; i < 5; i++)
		p[pre[i] * ps] = 1;
	rc.addr = p;
	rc.fd = fd;
	e = open_engine(1);
	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(info.page_size, ps);
	assert_int_equal(pgt_touched_count(r), 5);
	{
		struct toucher t = { p, ps, later, 3, 2, 0 };

		run_touchers(&t, 1);
	}
	want[0] = 0; want[1] = 2; want[2] = 3; want[3] = 5; want[4] = npages - 1;
	memcpy(want + 5, later, sizeof(later));
	assert_int_equal(pgt_touched_count(r), 8);
	check_order(r, want, 8);
	check_bitmap(r, npages, want, 8);
	assert_int_equal(stats(r).touch_faults, 3);
	pgt_region_destroy(r);
	pgt_engine_close(e);
	for (int i = 0; i < 5; i++)
		assert_int_equal(p[pre[i] * ps], 1);
	munmap(p, m->length);
	if (fd >= 0)
		close(fd);
}

/*
 * Minor faults: pages written through one mapping of a memfd are in the page
 * cache; the region registered on a second mapping has not touched them.
 * Touching them through the region takes a MINOR fault, resolved with
 * UFFDIO_CONTINUE: the contents written elsewhere are visible and the page
 * counts as touched. Pages not in the cache take the MISSING path (zero).
 */
static void test_minor(void **state)
{
	const struct memtype *m = *state;
	bool huge = m->backing == PGT_BACKING_HUGETLB;
	uint64_t ps = huge ? HUGE_2M : (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t npages = m->length / ps;
	uint64_t seq[6] = { 3, 1, npages - 1, 2, 0, npages / 2 };
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = m->length,
		.gpa = GPA_BASE, .track = PGT_TRACK_TOUCH, .numa_node = -1, .name = m->name,
	};
	uint8_t *a, *b;
	pgt_engine *e;
	pgt_region *r;
	int fd;

	skip_if(mem_skip(m, 2 * m->length), m->name);
	if (!(probe.uffd_features & (huge ? UFFD_FEATURE_MINOR_HUGETLBFS : UFFD_FEATURE_MINOR_SHMEM)))
		pgt_skip("%s: userfaultfd minor faults not available on this kernel", m->name);
	fd = memfd_create("minor", MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)m->length), 0);
	a = mmap(NULL, m->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b = mmap(NULL, m->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(a != MAP_FAILED && b != MAP_FAILED);
	/* "restore": pages 1, 2, 3 and the last arrive through the other mapping */
	for (uint64_t pg = 1; pg <= 3; pg++)
		memset(a + pg * ps, (int)(0x40 + pg), ps);
	memset(a + (npages - 1) * ps, 0x7e, ps);

	rc.addr = b;
	rc.fd = fd;
	e = open_engine(1);
	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_touched_count(r), 0);
	{
		struct toucher t = { b, ps, seq, 6, 0, 0 };

		run_touchers(&t, 1);
	}
	assert_int_equal(pgt_touched_count(r), 6);
	check_order(r, seq, 6);
	for (uint64_t pg = 1; pg <= 3; pg++)
		assert_int_equal(b[pg * ps + ps - 1], 0x40 + pg);
	assert_int_equal(b[(npages - 1) * ps + 17], 0x7e);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[(npages / 2) * ps], 0);
	/* the page cache is shared: a write through the region shows in @a */
	b[2 * ps] = 0x11;
	assert_int_equal(a[2 * ps], 0x11);
	assert_int_equal(stats(r).touch_faults, 6);
	assert_int_equal(stats(r).touch_errors, 0);
	pgt_region_destroy(r);
	pgt_engine_close(e);
	munmap(a, m->length);
	munmap(b, m->length);
	close(fd);
}

/*
 * First touch and dirty tracking on one uffd: pages only read must not be
 * reported dirty, pages written must be (WP-async and sync WP).
 */
static void touch_dirty(const struct memtype *m, int method)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = m->backing, .length = m->length,
		.gpa = GPA_BASE, .track = PGT_TRACK_TOUCH | PGT_TRACK_DIRTY,
		.dirty_method = method, .numa_node = -1, .name = m->name,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	uint64_t s = seed, *seq, *want, *got;
	struct pgt_harvest h = { .size = sizeof(h) };
	pgt_dirty_view *v;
	pgt_engine *e;
	pgt_region *r;
	size_t n, words;
	int ret;

	skip_if(mem_skip(m, m->length), m->name);
	e = open_engine(1);
	ret = pgt_region_create(e, &rc, &r);
	if (ret == -EOPNOTSUPP) {
		pgt_engine_close(e);
		pgt_skip("%s: %s with first touch not available", m->name,
			 pgt_dirty_method_name(method));
	}
	assert_int_equal(ret, 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	words = WORDS(info.npages);
	seq = calloc(info.npages, sizeof(*seq));
	want = calloc(words, 8);
	got = calloc(words, 8);
	assert_true(seq && want && got);
	n = make_sequence(seq, info.npages, info.npages / 2, &s);
	{
		struct toucher t = { info.addr, info.page_size, seq, n, 2, 0 };

		run_touchers(&t, 1);
	}
	for (size_t i = 0; i < n; i += 2)
		want[seq[i] / 64] |= 1ULL << (seq[i] % 64);
	h.bitmap = (unsigned long *)got;
	h.bitmap_words = words;
	assert_true(pgt_dirty_harvest(v, &h) >= 0);
	{
		struct pgt_region_stats st = stats(r);

		pgt_test_note("%s/%s: %zu pages touched, %llu wp faults, %llu reported",
			      m->name, pgt_dirty_method_name(method), n,
			      (unsigned long long)st.wp_faults, (unsigned long long)h.dirty_pages);
	}
	for (size_t w = 0; w < words; w++)
		if (want[w] != got[w])
			pgt_test_note("%s/%s word %zu: dirty %#llx want %#llx", m->name,
				      pgt_dirty_method_name(method), w, (unsigned long long)got[w],
				      (unsigned long long)want[w]);
	assert_memory_equal(got, want, words * 8);
	assert_int_equal(pgt_touched_count(r), (int64_t)n);
	/* a later write to a read-faulted page is caught */
	memset(want, 0, words * 8);
	((uint8_t *)info.addr)[seq[1] * info.page_size] = 9;
	want[seq[1] / 64] |= 1ULL << (seq[1] % 64);
	assert_int_equal(pgt_dirty_harvest(v, &h), 1);
	assert_memory_equal(got, want, words * 8);
	pgt_dirty_view_close(v);
	free(seq);
	free(want);
	free(got);
	pgt_region_destroy(r);
	pgt_engine_close(e);
}

static void test_dirty_async(void **state)
{
	if (!probe.pagemap_scan)
		pgt_skip("PAGEMAP_SCAN / WP-async not available");
	touch_dirty(*state, PGT_DIRTY_UFFD_ASYNC);
}

static void test_dirty_sync(void **state)
{
	touch_dirty(*state, PGT_DIRTY_UFFD_SYNC);
}

/* Bad input and regions without touch tracking. */
static void test_badinput(void **state)
{
	const struct memtype *m = *state;
	struct pgt_region_info info;
	unsigned long small[1], *bm;
	uint64_t pages[4];
	pgt_engine *e;
	pgt_region *r, *plain;
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = m->backing, .length = m->length,
		.gpa = GPA_BASE + 2 * m->length, .track = 0, .numa_node = -1,
	};

	skip_if(mem_skip(m, 2 * m->length), m->name);
	e = open_engine(1);
	r = create(e, m, PGT_TRACK_TOUCH, NULL, NULL, &info);
	assert_int_equal(pgt_touched_test(r, info.gpa - 1), -ERANGE);
	assert_int_equal(pgt_touched_test(r, info.gpa + info.length), -ERANGE);
	assert_int_equal(pgt_touched_test(r, UINT64_MAX), -ERANGE);
	assert_int_equal(pgt_touched_test(r, info.gpa + info.length - 1), 0);
	((uint8_t *)info.addr)[info.length - 1] = 1;
	assert_int_equal(pgt_touched_test(r, info.gpa + info.length - 1), 1);
	if (info.npages > 64)
		assert_int_equal(pgt_touched_bitmap(r, small, 1), -ENOBUFS);
	bm = calloc(WORDS(info.npages), sizeof(*bm));
	assert_non_null(bm);
	assert_int_equal(pgt_touched_bitmap(r, bm, WORDS(info.npages) - 1), -ENOBUFS);
	assert_int_equal(pgt_touched_bitmap(r, NULL, WORDS(info.npages)), -EINVAL);
	assert_int_equal(pgt_touched_bitmap(r, bm, WORDS(info.npages)), 1);
	assert_int_equal(pgt_touch_order(r, 0, NULL, 4), -EINVAL);
	assert_int_equal(pgt_touch_order(r, 0, pages, 0), 0);
	assert_int_equal(pgt_touch_order(r, 1, pages, 4), 0);
	assert_int_equal(pgt_touch_order(r, 0, pages, 4), 1);
	assert_int_equal(pages[0], info.npages - 1);

	assert_int_equal(pgt_region_create(e, &rc, &plain), 0);
	assert_int_equal(pgt_touched_count(plain), -EINVAL);
	assert_int_equal(pgt_touched_test(plain, rc.gpa), -EINVAL);
	assert_int_equal(pgt_touched_bitmap(plain, bm, WORDS(info.npages)), -EINVAL);
	assert_int_equal(pgt_touch_order(plain, 0, pages, 4), -EINVAL);
	assert_int_equal(pgt_touched_count(NULL), -EINVAL);
	assert_int_equal(pgt_touched_test(NULL, 0), -EINVAL);
	assert_int_equal(pgt_touched_bitmap(NULL, bm, 1), -EINVAL);
	assert_int_equal(pgt_touch_order(NULL, 0, pages, 4), -EINVAL);
	free(bm);
	pgt_region_destroy(plain);
	pgt_region_destroy(r);
	pgt_engine_close(e);
}

/* Informal first-touch rate (reported, not asserted): reads of the first
 * half (ZEROPAGE, or COPY on hugetlb), writes of the second (COPY). */
static double touch_pages(uint8_t *addr, uint64_t ps, uint64_t first, uint64_t n, bool write)
{
	struct timespec t0, t1;
	uint64_t sum = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t p = first; p < first + n; p++) {
		if (write)
			((volatile uint8_t *)addr)[p * ps] = 1;
		else
			sum += ((volatile uint8_t *)addr)[p * ps];
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(sum, 0);
	return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

static void test_rate(void **state)
{
	const struct memtype *m = *state;
	struct pgt_region_info info;
	pgt_engine *e;
	pgt_region *r;
	double rd, wr;
	uint64_t half;

	cpu_set_t old, one;

	skip_if(mem_skip(m, m->length), m->name);
	/* Handler threads inherit the opener's affinity: pinning here puts the
	 * vCPU stand-in and the handler on one CPU (PLATFORM-NOTES: placement
	 * dominates a synchronous fault). */
	assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
	CPU_ZERO(&one);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &old)) {
			CPU_SET(c, &one);
			break;
		}
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	e = open_engine(1);
	r = create(e, m, PGT_TRACK_TOUCH, NULL, NULL, &info);
	half = info.npages / 2;
	rd = touch_pages(info.addr, info.page_size, 0, half, false);
	wr = touch_pages(info.addr, info.page_size, half, info.npages - half, true);
	assert_int_equal(pgt_touched_count(r), (int64_t)info.npages);
	pgt_test_note("%s, %llu KiB pages: first-touch read %.0f faults/s (%.2f us), "
		      "write %.0f faults/s (%.2f us), toucher and handler on one CPU", m->name,
		      (unsigned long long)(info.page_size >> 10),
		      (double)half / rd, rd * 1e6 / (double)half,
		      (double)(info.npages - half) / wr, wr * 1e6 / (double)(info.npages - half));
	pgt_region_destroy(r);
	pgt_engine_close(e);
	sched_setaffinity(0, sizeof(old), &old);
}

/* ---- table ---- */

struct tcase {
	const char *name;
	CMUnitTestFunction fn;
	bool shared_only; /* minor faults need a shared fd */
};

static const struct tcase tcases[] = {
	{ "first-touch order", test_order, false },
	{ "concurrent first touch", test_concurrent, false },
	{ "provider restore", test_provider, false },
	{ "provider error -> SIGBUS (poison)", test_provider_poison, false },
	{ "provider error -> SIGBUS (no poison)", test_provider_signal, false },
	{ "pages present before registration", test_prepopulated, false },
	{ "minor fault via second mapping", test_minor, true },
	{ "touch + uffd-async dirty", test_dirty_async, false },
	{ "touch + uffd-sync dirty", test_dirty_sync, false },
	{ "bad input", test_badinput, false },
	{ "first-touch rate", test_rate, false },
};
#define NCASES (sizeof(tcases) / sizeof(tcases[0]))

int main(int argc, char **argv)
{
	static struct CMUnitTest tests[NCASES * NMEM];
	static char names[NCASES * NMEM][96];
	const char *filter = NULL;
	size_t n = 0;
	int opt;

	while ((opt = getopt(argc, argv, "lf:")) != -1) {
		if (opt == 'f')
			filter = optarg;
	}
	pgt_probe(&probe);
	seed = pgt_test_seed();
	for (size_t c = 0; c < NCASES; c++)
		for (size_t k = 0; k < NMEM; k++) {
			const struct memtype *m = &memtypes[k];

			if (tcases[c].shared_only && m->backing != PGT_BACKING_HUGETLB &&
			    m->backing != PGT_BACKING_MEMFD)
				continue;
			snprintf(names[n], sizeof(names[n]), "%s on %s", tcases[c].name, m->name);
			if (filter && !strstr(names[n], filter))
				continue;
			tests[n] = (struct CMUnitTest){
				.name = names[n], .test_func = tcases[c].fn,
				.initial_state = (void *)m,
			};
			n++;
		}
	optind = 1;
	if (argc > 1 && !strcmp(argv[1], "-l")) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	return _cmocka_run_group_tests("touch", tests, n, NULL, NULL);
}
