/* SPDX-License-Identifier: MIT */
/*
 * The live probe against the running kernel. Claims the probe makes are
 * re-checked here by independent means where one exists (uname, sysconf, the
 * pagemap of a fresh mapping); where the kernel lacks a feature (qemu-user:
 * no userfaultfd) the dependent checks skip with the reason.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/testutil.h"
#include "hal/compat_uapi.h"
#include "hal/probe_pvt.h"
#include "pgtrack/pgtrack.h"
#include "pgtrack/probe.h"

static struct pgt_probe P;

static int count_fds(void)
{
	return pgt_test_count_dir("/proc/self/fd");
}

static bool maps_contain(const char *what)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, what))
			found = true;
	fclose(f);
	return found;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool kernel_at_least(unsigned maj, unsigned min)
{
	return P.kernel_major > maj || (P.kernel_major == maj && P.kernel_minor >= min);
}

static void *probe_thread(void *arg)
{
	struct pgt_probe *p = arg;

	p->size = sizeof(*p);
	return (void *)(intptr_t)pgt_probe(p);
}

/*
 * Must run first: the probe's one-time work happens here, started by four
 * threads at once (pthread_once: all see one result).
 */
static void test_first_probe(void **state)
{
	static struct pgt_probe r[4];
	struct pgt_probe again = { .size = sizeof(again) };
	pthread_t th[4];
	uint64_t t0, t1, t2;
	int fds;

	(void)state;
	fds = count_fds();
	assert_true(fds > 0);
	t0 = now_ns();
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, probe_thread, &r[i]), 0);
	for (int i = 0; i < 4; i++) {
		void *ret;

		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	t1 = now_ns();
	for (int i = 1; i < 4; i++)
		assert_memory_equal(&r[0], &r[i], sizeof(r[0]));
	P = r[0];
	assert_int_equal(pgt_probe(&again), 0);
	t2 = now_ns();
	pgt_test_note("first probe %.3f ms (4 threads), cached %.1f us", (t1 - t0) / 1e6,
		      (t2 - t1) / 1e3);
	assert_memory_equal(&P, &again, sizeof(P));
	/* Every fd and mapping the probe made is gone. */
	assert_int_equal(count_fds(), fds);
	assert_false(maps_contain("pgtrack-probe"));
	/* The cache is a copy, not a re-run (which also maps, registers and
	 * scans memory): one live probe for five calls. */
	assert_int_equal(pgt__probe_runs(), 1);
}

static const struct pgt_hugepage_pool *pool_2m(const struct pgt_probe *p)
{
	for (unsigned i = 0; i < p->n_pools; i++)
		if (p->pools[i].node < 0 && p->pools[i].page_size == 2u << 20)
			return &p->pools[i];
	return NULL;
}

static int write_nr_hugepages(uint64_t n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");
	int ok;

	if (!f)
		return -errno;
	ok = fprintf(f, "%llu\n", (unsigned long long)n) > 0;
	return fclose(f) || !ok ? -EIO : 0;
}

/* Regression (issue 11): a pool raised after the first probe was never seen. */
static void test_probe_refresh_sees_new_pool(void **state)
{
	struct pgt_probe a = { .size = sizeof(a) }, b = { .size = sizeof(b) };
	const struct pgt_hugepage_pool *pa, *pb;
	unsigned runs;

	(void)state;
	assert_int_equal(pgt_probe_refresh(NULL), -EINVAL);
	assert_int_equal(pgt_probe(&a), 0);
	pa = pool_2m(&a);
	if (!pa)
		pgt_skip("no 2 MiB hugetlb pool on this kernel");
	if (write_nr_hugepages(pa->total + 2))
		pgt_skip("cannot write /proc/sys/vm/nr_hugepages (not root?)");
	runs = pgt__probe_runs();
	assert_int_equal(pgt_probe(&b), 0);
	assert_int_equal(pgt__probe_runs(), runs);
	assert_int_equal(pool_2m(&b)->total, pa->total); /* cached */
	assert_int_equal(pgt_probe_refresh(&b), 0);
	assert_int_equal(pgt__probe_runs(), runs + 1);
	pb = pool_2m(&b);
	assert_non_null(pb);
	assert_int_equal(write_nr_hugepages(pa->total), 0);
	if (pb->total != pa->total + 2)
		pgt_test_note("pool %llu -> %llu: the kernel gave fewer pages",
			      (unsigned long long)pa->total, (unsigned long long)pb->total);
	assert_true(pb->total > pa->total);
	/* later plain probes answer from the refreshed cache */
	assert_int_equal(pgt_probe(&a), 0);
	assert_int_equal(pool_2m(&a)->total, pb->total);
	assert_int_equal(pgt_probe_refresh(&a), 0);
}

static void test_args(void **state)
{
	struct pgt_probe p = { .size = 0 };

	(void)state;
	assert_int_equal(pgt_probe(NULL), -EINVAL);
	assert_int_equal(pgt_probe(&p), -EINVAL);
}

static void test_identity(void **state)
{
	struct utsname u;

	(void)state;
	assert_int_equal(uname(&u), 0);
	assert_int_equal(P.size, sizeof(P));
	assert_string_equal(P.kernel_release, u.release);
	assert_string_equal(P.arch, u.machine);
	assert_true(P.kernel_major >= 3);
	assert_int_equal(P.page_size, (uint64_t)sysconf(_SC_PAGESIZE));
	assert_true(P.cacheline >= 16 && P.cacheline <= 512);
	assert_true(P.numa_nodes >= 1);
	assert_int_equal(P.numa_error, 0);
	assert_true(P.memlock_max >= P.memlock_cur);
	assert_true(P.best_dirty_method > PGT_DIRTY_AUTO && P.best_dirty_method < PGT_DIRTY_NONE);
	pgt_test_note("%s %s: best dirty method %d, %d node(s), thp %s, %u pool(s)",
		      P.kernel_release, P.arch, P.best_dirty_method, P.numa_nodes,
		      P.thp_enabled[0] ? P.thp_enabled : "-", P.n_pools);
}

static void test_uffd(void **state)
{
	(void)state;
	if (!P.uffd_syscall && !P.uffd_dev) {
		assert_true(P.uffd_error < 0);
		assert_int_equal(P.uffd_features, 0);
		for (int t = 0; t < PGT_MEM__COUNT; t++)
			assert_true(P.uffd_register_error[t] < 0);
		assert_false(P.touch_tracking);
		pgt_skip("userfaultfd unusable here: %s", strerror(-P.uffd_error));
	}
	assert_int_equal(P.uffd_error, 0);
	assert_true(P.uffd_features != 0);
	assert_int_equal(P.uffd_syscall, pgt_test_have_uffd() != 0);
	if (geteuid() == 0)
		assert_true(P.uffd_syscall && !P.uffd_user_only);
	/* WP-async arrived in 6.7 and x86 has had uffd-WP since 5.7. */
	if (!strcmp(P.arch, "x86_64") && kernel_at_least(6, 7)) {
		assert_true(P.uffd_features & UFFD_FEATURE_WP_ASYNC);
		assert_true(P.uffd_features & UFFD_FEATURE_WP_UNPOPULATED);
	}
	for (unsigned b = 0; b < 64; b++)
		if (P.uffd_features & (1ULL << b))
			assert_non_null(pgt_uffd_feature_name(b));
}

static void test_register_anon_shmem(void **state)
{
	const uint64_t need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE | 1ULL << _UFFDIO_WAKE;

	(void)state;
	if (!P.uffd_syscall && !P.uffd_dev)
		pgt_skip("userfaultfd unusable here: %s", strerror(-P.uffd_error));
	assert_int_equal(P.uffd_register_error[PGT_MEM_ANON], 0);
	assert_true(P.uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_MISSING);
	/* MINOR is for page-cache backed memory only. */
	assert_false(P.uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_MINOR);
	assert_true((P.uffd_ioctls[PGT_MEM_ANON] & need) == need);
	assert_true(P.touch_tracking);
	if (P.uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_WP)
		assert_true(P.uffd_ioctls[PGT_MEM_ANON] & 1ULL << _UFFDIO_WRITEPROTECT);

	assert_int_equal(P.uffd_register_error[PGT_MEM_SHMEM], 0);
	assert_true(P.uffd_modes[PGT_MEM_SHMEM] & PGT_UFFD_MODE_MISSING);
	assert_true(P.uffd_ioctls[PGT_MEM_SHMEM] & 1ULL << _UFFDIO_COPY);
	if (P.uffd_features & UFFD_FEATURE_MINOR_SHMEM) {
		assert_true(P.uffd_modes[PGT_MEM_SHMEM] & PGT_UFFD_MODE_MINOR);
		assert_true(P.uffd_ioctls[PGT_MEM_SHMEM] & 1ULL << _UFFDIO_CONTINUE);
	}
	for (int t = 0; t < PGT_MEM__COUNT; t++)
		for (unsigned b = 0; b < 64; b++)
			if (P.uffd_ioctls[t] & (1ULL << b))
				assert_non_null(pgt_uffd_ioctl_name(b));
}

static void test_register_hugetlb(void **state)
{
	int err = P.uffd_register_error[PGT_MEM_HUGETLB];

	(void)state;
	if (!P.uffd_syscall && !P.uffd_dev)
		pgt_skip("userfaultfd unusable here: %s", strerror(-P.uffd_error));
	if (err) {
		/* An empty pool fails the mmap; nothing else is expected here. */
		assert_true(err == -ENOMEM || err == -EINVAL || err == -ENOSYS || err == -EPERM);
		assert_int_equal(P.uffd_modes[PGT_MEM_HUGETLB], 0);
		pgt_skip("hugetlb not registrable here: %s", strerror(-err));
	}
	assert_true(P.uffd_modes[PGT_MEM_HUGETLB] & PGT_UFFD_MODE_MISSING);
	assert_true(P.uffd_ioctls[PGT_MEM_HUGETLB] & 1ULL << _UFFDIO_COPY);
	if (P.uffd_features & UFFD_FEATURE_MINOR_HUGETLBFS)
		assert_true(P.uffd_modes[PGT_MEM_HUGETLB] & PGT_UFFD_MODE_MINOR);
}

static void test_pagemap_scan(void **state)
{
	(void)state;
	assert_int_equal(P.pagemap_scan, P.pagemap_scan_error == 0);
	if (P.pagemap_scan) {
		assert_true(P.uffd_features & UFFD_FEATURE_WP_ASYNC);
		assert_int_equal(P.best_dirty_method, PGT_DIRTY_UFFD_ASYNC);
		return;
	}
	assert_true(P.pagemap_scan_error < 0);
	assert_true(P.best_dirty_method != PGT_DIRTY_UFFD_ASYNC);
	/* The ioctl exists from 6.7: there a feature must be missing. */
	if (kernel_at_least(6, 7) && P.pagemap_scan_error == -ENOTTY)
		fail_msg("PAGEMAP_SCAN -ENOTTY on %s", P.kernel_release);
	if ((P.uffd_syscall || P.uffd_dev) && (P.uffd_features & UFFD_FEATURE_WP_ASYNC))
		fail_msg("WP_ASYNC offered but PAGEMAP_SCAN failed: %s",
			 strerror(-P.pagemap_scan_error));
	pgt_skip("PAGEMAP_SCAN WP-async not here: %s", strerror(-P.pagemap_scan_error));
}

/*
 * Independent check of the soft-dirty answer: a written page of a fresh
 * mapping reads soft-dirty exactly when the kernel has soft-dirty.
 */
static void test_soft_dirty(void **state)
{
	uint64_t ps = P.page_size, e = 0;
	char *a;
	int pm;

	(void)state;
	assert_int_equal(P.soft_dirty, P.soft_dirty_error == 0);
	if (P.soft_dirty_error == -EIO)
		pgt_skip("pagemap does not describe this process (emulator?)");
	pm = open("/proc/self/pagemap", O_RDONLY);
	if (pm < 0)
		pgt_skip("no /proc/self/pagemap: %s", strerror(errno));
	a = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED);
	a[0] = 1;
	assert_int_equal(pread(pm, &e, sizeof(e), (off_t)((uintptr_t)a / ps * 8)), 8);
	munmap(a, ps);
	close(pm);
	assert_true(e & PGT_PM_PRESENT);
	if (P.soft_dirty) {
		assert_true(e & PGT_PM_SOFT_DIRTY);
		if (!P.pagemap_scan)
			assert_int_equal(P.best_dirty_method, PGT_DIRTY_SOFT_DIRTY);
	} else {
		assert_int_equal(P.soft_dirty_error, -EOPNOTSUPP);
		assert_false(e & PGT_PM_SOFT_DIRTY);
		pgt_test_note("soft-dirty not compiled in (as the probe says)");
	}
}

static void test_consistency(void **state)
{
	uint64_t seen = 0;

	(void)state;
	assert_true(P.n_pools <= PGT_PROBE_MAX_POOLS);
	for (unsigned i = 0; i < P.n_pools; i++) {
		const struct pgt_hugepage_pool *hp = &P.pools[i];

		assert_true(hp->page_size > P.page_size);
		assert_true((hp->page_size & (hp->page_size - 1)) == 0);
		assert_true(hp->node >= -1 && hp->node <= P.numa_max_node);
		assert_true(hp->free <= hp->total + hp->surplus);
		if (hp->node == -1)
			seen |= hp->page_size;
	}
	/* Every per-node size also has a global pool. */
	for (unsigned i = 0; i < P.n_pools; i++)
		if (P.pools[i].node >= 0)
			assert_true(seen & P.pools[i].page_size);
	if (!P.thp_error) {
		assert_true(P.thp_enabled[0]);
		assert_true(P.thp_pmd_size > P.page_size);
	}
	assert_int_equal(P.mthp_sizes & (P.page_size - 1), 0);
	if (P.best_dirty_method == PGT_DIRTY_UFFD_SYNC)
		assert_true(P.uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_WP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_probe),
		cmocka_unit_test(test_args),
		cmocka_unit_test(test_probe_refresh_sees_new_pool),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_uffd),
		cmocka_unit_test(test_register_anon_shmem),
		cmocka_unit_test(test_register_hugetlb),
		cmocka_unit_test(test_pagemap_scan),
		cmocka_unit_test(test_soft_dirty),
		cmocka_unit_test(test_consistency),
	};

	return cmocka_run_group_tests_name("probe", tests, NULL, NULL);
}
