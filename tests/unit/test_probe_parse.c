/* SPDX-License-Identifier: MIT */
/*
 * The probe's file parsers on fixture trees (a real x86_64 host, an arm64 6.1
 * host, broken trees) and each buffer parser on edge cases. Buffers are placed
 * right before a PROT_NONE page so any read past the given length faults.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/common/testutil.h"
#include "hal/compat_uapi.h"
#include "hal/probe_pvt.h"
#include "pgtrack/pgtrack.h"

#define FIX PGT_SRCDIR "/tests/fixtures/probe/"

/* A literal copied to end exactly at a guard page, and its length. */
#define GS(lit) pgt_test_guarded(lit, sizeof(lit) - 1), sizeof(lit) - 1

/* ---- buffer parsers ---- */

static void test_u64(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(pgt__parse_u64(GS("0\n"), &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(pgt__parse_u64(GS("  42 \n"), &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(pgt__parse_u64(GS("512"), &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(pgt__parse_u64(GS("18446744073709551615\n"), &v), 0);
	assert_true(v == UINT64_MAX);
	v = 7;
	assert_int_equal(pgt__parse_u64(GS("18446744073709551616\n"), &v), -ERANGE);
	assert_int_equal(pgt__parse_u64(GS("99999999999999999999999999999999"), &v), -ERANGE);
	assert_int_equal(v, 7); /* untouched on error */
	assert_int_equal(pgt__parse_u64(GS("99999999999999999999999x"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS(""), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("\n"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("-1\n"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("+1\n"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("12 34\n"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("1e3"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("0x10"), &v), -EBADMSG);
	assert_int_equal(pgt__parse_u64(GS("1\0"), &v), -EBADMSG);
	/* Only @len counts, whatever follows. */
	assert_int_equal(pgt__parse_u64("123456", 3, &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(pgt__parse_u64(NULL, 0, &v), -EINVAL);
}

static void test_release(void **state)
{
	char rel[65];
	unsigned a = 1, b = 1, c = 1;

	(void)state;
	assert_int_equal(pgt__parse_release(GS("6.18.44-fc-v669\n"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_string_equal(rel, "6.18.44-fc-v669");
	assert_int_equal(a, 6);
	assert_int_equal(b, 18);
	assert_int_equal(c, 44);
	assert_int_equal(pgt__parse_release(GS("6.1.0-28-arm64\n"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_string_equal(rel, "6.1.0-28-arm64");
	assert_int_equal(a * 10000 + b * 100 + c, 60100);
	assert_int_equal(pgt__parse_release(GS("5.4"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_int_equal(a * 10000 + b * 100 + c, 50400);
	assert_int_equal(pgt__parse_release(GS("6.8-rc1\n"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_int_equal(a * 10000 + b * 100 + c, 60800);
	assert_int_equal(pgt__parse_release(GS("6.8.x"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_int_equal(c, 0);

	assert_int_equal(pgt__parse_release(GS(""), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("\n"), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("6."), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("6"), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("v6.1"), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("6.1 extra"), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("6.\x01"), rel, sizeof(rel), &a, &b, &c), -EBADMSG);
	assert_int_equal(pgt__parse_release(GS("4294967296.1.0"), rel, sizeof(rel), &a, &b, &c),
			 -ERANGE);
	assert_int_equal(pgt__parse_release(GS("6.1.99999999999999999999999"), rel, sizeof(rel),
					    &a, &b, &c), -ERANGE);
	/* 64 characters fit the struct's 65 bytes, 65 do not. */
	assert_int_equal(pgt__parse_release(GS("6.1.0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
					    rel, sizeof(rel), &a, &b, &c), 0);
	assert_int_equal(strlen(rel), 64);
	assert_int_equal(pgt__parse_release(GS("6.1.0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
					    rel, sizeof(rel), &a, &b, &c), -ERANGE);
	/* Only the first line counts. */
	assert_int_equal(pgt__parse_release(GS("6.2.1\ngarbage \x01\n"), rel, sizeof(rel), &a, &b, &c), 0);
	assert_string_equal(rel, "6.2.1");
}

static void test_word(void **state)
{
	char w[16];

	(void)state;
	assert_int_equal(pgt__parse_word(GS("x86_64\n"), w, sizeof(w)), 0);
	assert_string_equal(w, "x86_64");
	assert_int_equal(pgt__parse_word(GS("aarch64"), w, sizeof(w)), 0);
	assert_string_equal(w, "aarch64");
	assert_int_equal(pgt__parse_word(GS("123456789012345"), w, sizeof(w)), 0);
	assert_int_equal(pgt__parse_word(GS("1234567890123456"), w, sizeof(w)), -ERANGE);
	assert_int_equal(pgt__parse_word(GS(""), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_word(GS("  \n"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_word(GS("two words"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_word(GS("\x80\x81"), w, sizeof(w)), -EBADMSG);
}

static void test_bracketed(void **state)
{
	char w[16];

	(void)state;
	assert_int_equal(pgt__parse_bracketed(GS("always [madvise] never\n"), w, sizeof(w)), 0);
	assert_string_equal(w, "madvise");
	assert_int_equal(pgt__parse_bracketed(GS("[always] madvise never"), w, sizeof(w)), 0);
	assert_string_equal(w, "always");
	assert_int_equal(pgt__parse_bracketed(GS("always defer defer+madvise [madvise] never\n"),
					      w, sizeof(w)), 0);
	assert_string_equal(w, "madvise");
	assert_int_equal(pgt__parse_bracketed(GS("always inherit madvise [never]"), w, sizeof(w)), 0);
	assert_string_equal(w, "never");
	assert_int_equal(pgt__parse_bracketed(GS("always [defer+madvise] never"), w, sizeof(w)), 0);
	assert_string_equal(w, "defer+madvise");

	assert_int_equal(pgt__parse_bracketed(GS("always madvise never\n"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("[always] [madvise]"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("[]"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("always [madv"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("]madvise["), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("[mad vise]"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("[a\x01]"), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS(""), w, sizeof(w)), -EBADMSG);
	assert_int_equal(pgt__parse_bracketed(GS("[0123456789abcdef]"), w, sizeof(w)), -ERANGE);
	assert_int_equal(pgt__parse_bracketed(GS("[0123456789abcde]"), w, sizeof(w)), 0);
}

static void test_node_list(void **state)
{
	int n = 9, max = 9;

	(void)state;
	assert_int_equal(pgt__parse_node_list(GS("0\n"), &n, &max), 0);
	assert_int_equal(n, 1);
	assert_int_equal(max, 0);
	assert_int_equal(pgt__parse_node_list(GS("0-3,5\n"), &n, &max), 0);
	assert_int_equal(n, 5);
	assert_int_equal(max, 5);
	assert_int_equal(pgt__parse_node_list(GS("0-1"), &n, &max), 0);
	assert_int_equal(n, 2);
	assert_int_equal(max, 1);
	assert_int_equal(pgt__parse_node_list(GS("1,1,0-1\n"), &n, &max), 0);
	assert_int_equal(n, 2); /* ids are counted once */
	assert_int_equal(pgt__parse_node_list(GS("2,7-8\n"), &n, &max), 0);
	assert_int_equal(n, 3);
	assert_int_equal(max, 8);
	assert_int_equal(pgt__parse_node_list(GS("0-4095\n"), &n, &max), 0);
	assert_int_equal(n, 4096);
	assert_int_equal(max, 4095);
	assert_int_equal(pgt__parse_node_list(GS("\n"), &n, &max), 0);
	assert_int_equal(n, 0);
	assert_int_equal(max, -1);

	assert_int_equal(pgt__parse_node_list(GS(""), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0-"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("-1"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("3-1"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0,,1"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0,"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0 1"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("a"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0\n1\n"), &n, &max), -EBADMSG);
	assert_int_equal(pgt__parse_node_list(GS("0-4096"), &n, &max), -ERANGE);
	assert_int_equal(pgt__parse_node_list(GS("0-99999\n"), &n, &max), -ERANGE);
	assert_int_equal(pgt__parse_node_list(GS("18446744073709551616"), &n, &max), -ERANGE);
}

static void test_hugepages_name(void **state)
{
	uint64_t b = 0;

	(void)state;
	assert_int_equal(pgt__parse_hugepages_name("hugepages-2048kB", &b), 0);
	assert_int_equal(b, 2u << 20);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-1048576kB", &b), 0);
	assert_int_equal(b, 1u << 30);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-64kB", &b), 0);
	assert_int_equal(b, 64u << 10);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-kB", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-0kB", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-2048", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-2048kBx", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-2048KB", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepagesX2048kB", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("nr_hugepages", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("", &b), -EBADMSG);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-18014398509481983kB", &b), 0);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-18014398509481984kB", &b), -ERANGE);
	assert_int_equal(pgt__parse_hugepages_name("hugepages-99999999999999999999kB", &b), -ERANGE);
}

static void test_limits(void **state)
{
	static const char host[] =
		"Limit                     Soft Limit           Hard Limit           Units     \n"
		"Max stack size            8388608              unlimited            bytes     \n"
		"Max locked memory         8388608              16777216             bytes     \n"
		"Max address space         unlimited            unlimited            bytes     \n";
	uint64_t c = 1, m = 1;

	(void)state;
	assert_int_equal(pgt__parse_limits_memlock(pgt_test_guarded(host, sizeof(host) - 1),
						   sizeof(host) - 1, &c, &m), 0);
	assert_int_equal(c, 8388608);
	assert_int_equal(m, 16777216);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory unlimited unlimited bytes"),
						   &c, &m), 0);
	assert_true(c == UINT64_MAX && m == UINT64_MAX);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory 65536 unlimited"), &c, &m), 0);
	assert_true(c == 65536 && m == UINT64_MAX);

	assert_int_equal(pgt__parse_limits_memlock(GS(""), &c, &m), -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max stack size 1 1 bytes\n"), &c, &m), -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory         8388"), &c, &m),
			 -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory 12abc 5"), &c, &m), -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory unlimitedx 5"), &c, &m),
			 -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory unlim"), &c, &m), -EBADMSG);
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory 18446744073709551616 1"),
						   &c, &m), -ERANGE);
	/* The next line does not complete a cut one. */
	assert_int_equal(pgt__parse_limits_memlock(GS("Max locked memory 1\n2 bytes\n"), &c, &m),
			 -EBADMSG);
}

static void test_cpuinfo(void **state)
{
	uint32_t s = 99;

	(void)state;
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("processor\t: 0\nflags\t\t: fpu sse sse2 avx2 "
						    "avx512f avx512dq avx512bw\n"), &s), 0);
	assert_int_equal(s, PGT_SIMD_SSE2 | PGT_SIMD_AVX2 | PGT_SIMD_AVX512);
	/* AVX-512 needs F and BW. */
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("flags : sse2 avx2 avx512f\n"), &s), 0);
	assert_int_equal(s, PGT_SIMD_SSE2 | PGT_SIMD_AVX2);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("flags : sse2x avx20\n"), &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("flags:"), &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("Features\t: fp asimd evtstrm aes\n"), &s), 0);
	assert_int_equal(s, PGT_SIMD_NEON);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("Features\t: fp evtstrm\n"), &s), 0);
	assert_int_equal(s, 0);

	assert_int_equal(pgt__parse_cpuinfo_simd(GS(""), &s), -EBADMSG);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("processor : 0\nvendor_id : Authen"), &s),
			 -EBADMSG);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("flagsx : sse2\n"), &s), -EBADMSG);
	assert_int_equal(pgt__parse_cpuinfo_simd(GS("flags sse2\n"), &s), -EBADMSG);
}

/* ---- fixture trees ---- */

static void root_probe(const char *name, struct pgt_probe *p, int want)
{
	memset(p, 0x5a, sizeof(*p));
	p->size = sizeof(*p);
	assert_int_equal(pgt_probe_root(name, p), want);
}

static const struct pgt_hugepage_pool *pool(const struct pgt_probe *p, int node, uint64_t size)
{
	for (unsigned i = 0; i < p->n_pools; i++)
		if (p->pools[i].node == node && p->pools[i].page_size == size)
			return &p->pools[i];
	return NULL;
}

static void test_fixture_x86(void **state)
{
	struct pgt_probe p;
	const struct pgt_hugepage_pool *hp;

	(void)state;
	root_probe(FIX "x86_64-6.18", &p, 0);
	assert_int_equal(p.size, sizeof(p));
	assert_string_equal(p.kernel_release, "6.18.44-fc-v669");
	assert_int_equal(p.kernel_major, 6);
	assert_int_equal(p.kernel_minor, 18);
	assert_int_equal(p.kernel_patch, 44);
	assert_string_equal(p.arch, "x86_64");
	assert_int_equal(p.unprivileged_uffd, 0);
	assert_int_equal(p.page_size, 4096);
	assert_int_equal(p.cacheline, 64);
	assert_int_equal(p.simd, PGT_SIMD_SSE2 | PGT_SIMD_AVX2 | PGT_SIMD_AVX512);
	assert_int_equal(p.cycles_per_sec, 0);

	assert_int_equal(p.thp_error, 0);
	assert_string_equal(p.thp_enabled, "madvise");
	assert_string_equal(p.thp_defrag, "madvise");
	assert_string_equal(p.shmem_thp_enabled, "never");
	assert_int_equal(p.thp_pmd_size, 2u << 20);
	/* 16 KiB .. 2 MiB anonymous; 8 KiB has only shmem_enabled. */
	assert_int_equal(p.mthp_sizes, (4u << 20) - (16u << 10));

	assert_int_equal(p.pools_error, 0);
	assert_int_equal(p.n_pools, 4);
	assert_int_equal(p.pools[0].node, -1);
	assert_int_equal(p.pools[0].page_size, 2u << 20);
	assert_int_equal(p.pools[1].node, -1);
	assert_int_equal(p.pools[1].page_size, 1u << 30);
	assert_int_equal(p.pools[2].node, 0);
	assert_int_equal(p.pools[2].page_size, 2u << 20);
	assert_int_equal(p.pools[3].node, 0);
	assert_int_equal(p.pools[3].page_size, 1u << 30);
	hp = pool(&p, -1, 2u << 20);
	assert_non_null(hp);
	assert_int_equal(hp->total, 0);

	assert_int_equal(p.numa_error, 0);
	assert_int_equal(p.numa_nodes, 1);
	assert_int_equal(p.numa_max_node, 0);
	assert_false(p.iommufd);
	assert_false(p.vfio_container);
	assert_int_equal(p.vfio_groups, 0);
	assert_int_equal(p.vfio_devices, 0);
	assert_int_equal(p.memlock_error, 0);
	assert_int_equal(p.memlock_cur, 8388608);
	assert_int_equal(p.memlock_max, 8388608);

	/* Nothing live was tested: nothing is claimed. */
	assert_false(p.uffd_syscall);
	assert_false(p.uffd_dev);
	assert_int_equal(p.uffd_error, -ENOENT);
	assert_int_equal(p.uffd_features, 0);
	for (int t = 0; t < PGT_MEM__COUNT; t++) {
		assert_int_equal(p.uffd_register_error[t], -ENOENT);
		assert_int_equal(p.uffd_modes[t], 0);
	}
	assert_false(p.pagemap_scan);
	assert_int_equal(p.pagemap_scan_error, -ENOENT);
	assert_false(p.soft_dirty);
	assert_int_equal(p.soft_dirty_error, -ENOENT);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_MPROTECT);
	assert_false(p.touch_tracking);
}

static void test_fixture_arm64(void **state)
{
	static const uint64_t sizes[] = { 64u << 10, 2u << 20, 32u << 20, 1u << 30 };
	const struct pgt_hugepage_pool *hp;
	struct pgt_probe p;
	unsigned k = 0;

	(void)state;
	root_probe(FIX "arm64-6.1", &p, 0);
	assert_string_equal(p.kernel_release, "6.1.0-28-arm64");
	assert_int_equal(p.kernel_major * 10000 + p.kernel_minor * 100 + p.kernel_patch, 60100);
	assert_string_equal(p.arch, "aarch64");
	assert_int_equal(p.page_size, 4096);
	assert_int_equal(p.cacheline, 64);
	assert_int_equal(p.simd, PGT_SIMD_NEON);
	assert_string_equal(p.thp_enabled, "madvise");
	assert_string_equal(p.thp_defrag, "madvise");
	assert_string_equal(p.shmem_thp_enabled, "never");
	assert_int_equal(p.thp_pmd_size, 2u << 20);
	assert_int_equal(p.mthp_sizes, 0);
	assert_int_equal(p.thp_error, 0);

	/* Global pools by size, then node 0 and node 1 by size. */
	assert_int_equal(p.pools_error, 0);
	assert_int_equal(p.n_pools, 12);
	for (int node = -1; node <= 1; node++) {
		for (unsigned i = 0; i < 4; i++, k++) {
			assert_int_equal(p.pools[k].node, node);
			assert_int_equal(p.pools[k].page_size, sizes[i]);
		}
	}
	hp = pool(&p, -1, 2u << 20);
	assert_non_null(hp);
	assert_int_equal(hp->total, 512);
	assert_int_equal(hp->free, 500);
	assert_int_equal(hp->reserved, 12);
	assert_int_equal(hp->surplus, 0);
	hp = pool(&p, 1, 1u << 30);
	assert_non_null(hp);
	assert_int_equal(hp->total, 1);
	assert_int_equal(hp->free, 1);
	assert_int_equal(hp->reserved, 0);

	assert_int_equal(p.numa_nodes, 2);
	assert_int_equal(p.numa_max_node, 1);
	assert_true(p.iommufd);
	assert_true(p.vfio_container);
	assert_int_equal(p.vfio_groups, 3); /* 12, 13, noiommu-0 */
	assert_int_equal(p.vfio_devices, 0);
	assert_int_equal(p.memlock_cur, 8388608);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_MPROTECT);
}

/* Run every file part of the probe on a tree, as pgt_probe_root() does
 * after the release. */
static void parts(const char *root, struct pgt_probe *p)
{
	memset(p, 0x5a, sizeof(*p));
	pgt__probe_sysctl(root, p);
	pgt__probe_thp(root, p);
	pgt__probe_pools(root, p);
	pgt__probe_numa(root, p);
	pgt__probe_devices(root, p);
	pgt__probe_cpu_files(root, p);
	pgt__probe_memlock_file(root, p);
}

static void test_fixture_truncated(void **state)
{
	struct pgt_probe p;

	(void)state;
	root_probe(FIX "broken-truncated", &p, -EBADMSG);
	parts(FIX "broken-truncated", &p);
	assert_int_equal(p.unprivileged_uffd, -1);
	assert_string_equal(p.arch, "");
	assert_int_equal(p.thp_error, -EBADMSG);
	assert_string_equal(p.thp_enabled, "");
	assert_string_equal(p.shmem_thp_enabled, "");  /* reset, not left over */
	assert_int_equal(p.pools_error, -EBADMSG);
	assert_int_equal(p.numa_error, -EBADMSG);
	assert_int_equal(p.numa_nodes, 0);
	assert_int_equal(p.memlock_error, -EBADMSG);
	assert_int_equal(p.simd, 0);
	assert_int_equal(p.page_size, 0);
	assert_int_equal(p.cacheline, 0);
}

static void test_fixture_empty(void **state)
{
	struct pgt_probe p;

	(void)state;
	root_probe(FIX "broken-empty", &p, -EBADMSG);
	parts(FIX "broken-empty", &p);
	assert_int_equal(p.unprivileged_uffd, -1);
	assert_int_equal(p.thp_error, -EBADMSG);
	assert_int_equal(p.pools_error, -EBADMSG);
	assert_int_equal(p.n_pools, 1);
	assert_int_equal(p.numa_error, -EBADMSG);
	assert_int_equal(p.memlock_error, -EBADMSG);
	assert_int_equal(p.simd, 0);
}

static void test_fixture_garbage(void **state)
{
	struct pgt_probe p;

	(void)state;
	root_probe(FIX "broken-garbage", &p, -EBADMSG);
	parts(FIX "broken-garbage", &p);
	assert_int_equal(p.unprivileged_uffd, -1);
	assert_string_equal(p.arch, "");
	assert_int_equal(p.thp_error, -EBADMSG);
	/* hugepagesX2048kB and nodeX are not pools. */
	assert_int_equal(p.n_pools, 1);
	assert_int_equal(p.pools_error, -EBADMSG);
	assert_int_equal(p.numa_error, -EBADMSG);
	assert_int_equal(p.memlock_error, -EBADMSG);
}

static void test_fixture_huge(void **state)
{
	struct pgt_probe p;

	(void)state;
	root_probe(FIX "broken-huge", &p, -ERANGE);
	parts(FIX "broken-huge", &p);
	assert_int_equal(p.unprivileged_uffd, -1);
	assert_string_equal(p.arch, "");
	assert_int_equal(p.thp_error, -ERANGE);
	assert_int_equal(p.numa_error, -ERANGE);
	assert_int_equal(p.memlock_error, -ERANGE);
	/* 1 global + 40 node pools: the struct keeps 32. */
	assert_int_equal(p.n_pools, PGT_PROBE_MAX_POOLS);
	assert_int_equal(p.pools_error, -ERANGE);
	assert_true(pool(&p, -1, 2u << 20)->total == UINT64_MAX);

	/* A broken "enabled" leaves the other THP values unknown too. */
	memset(&p, 0, sizeof(p));
	pgt__probe_thp(FIX "broken-huge", &p);
	assert_int_equal(p.thp_pmd_size, 0);
	assert_int_equal(p.mthp_sizes, 0);
}

static void test_fixture_missing(void **state)
{
	struct pgt_probe p;

	(void)state;
	root_probe(FIX "missing", &p, -ENOENT);
	root_probe(FIX "does-not-exist", &p, -ENOENT);
	root_probe(FIX "README", &p, -ENOTDIR);
	parts(FIX "missing", &p);
	assert_int_equal(p.unprivileged_uffd, -1);
	assert_int_equal(p.thp_error, -ENOENT);
	assert_int_equal(p.pools_error, -ENOENT);
	assert_int_equal(p.n_pools, 0);
	/* No node directory: a kernel without NUMA, one node. */
	assert_int_equal(p.numa_error, 0);
	assert_int_equal(p.numa_nodes, 1);
	assert_int_equal(p.memlock_error, -ENOENT);
	assert_false(p.iommufd);
	assert_int_equal(p.vfio_groups, 0);
}

static void test_root_args(void **state)
{
	struct pgt_probe p = { .size = sizeof(p) };
	struct {
		struct pgt_probe p;
		unsigned char tail[64];
	} big;
	unsigned char *raw = (unsigned char *)&p;
	size_t pre = PGT_PROBE_SIZE_VER0;

	(void)state;
	assert_int_equal(pgt_probe_root(NULL, &p), -EINVAL);
	assert_int_equal(pgt_probe_root("", &p), -EINVAL);
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", NULL), -EINVAL);
	p.size = 0;
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &p), -EINVAL);

	/* Smaller than the first version: refused, nothing written. */
	memset(&p, 0xa5, sizeof(p));
	p.size = (uint32_t)offsetof(struct pgt_probe, arch);
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &p), -EINVAL);
	assert_int_equal(raw[offsetof(struct pgt_probe, arch)], 0xa5);
	p.size = (uint32_t)pre - 1;
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &p), -EINVAL);
	/* Garbage: refused, nothing read past the struct. */
	p.size = 0xFFFFFFFFu;
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &p), -E2BIG);

	/* An older caller (0.1's struct): only its prefix is written. */
	memset(&p, 0xa5, sizeof(p));
	p.size = (uint32_t)pre;
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &p), 0);
	assert_int_equal(p.size, pre);
	assert_string_equal(p.kernel_release, "6.1.0-28-arm64");
	for (size_t i = pre; i < sizeof(p); i++)
		assert_int_equal(raw[i], 0xa5);

	/* A newer caller: ours, then zeros. */
	memset(&big, 0xa5, sizeof(big));
	big.p.size = sizeof(big);
	assert_int_equal(pgt_probe_root(FIX "arm64-6.1", &big.p), 0);
	assert_int_equal(big.p.size, sizeof(struct pgt_probe));
	assert_int_equal(big.p.numa_nodes, 2);
	for (size_t i = 0; i < sizeof(big.tail); i++)
		assert_int_equal(big.tail[i], 0);
}

static void test_read_file(void **state)
{
	char buf[16], longroot[PATH_MAX + 8];

	(void)state;
	assert_int_equal(pgt__read_file(FIX "arm64-6.1", "/proc/sys/kernel/arch", buf, sizeof(buf)), 8);
	assert_string_equal(buf, "aarch64\n");
	/* A cut read is still NUL-terminated. */
	assert_int_equal(pgt__read_file(FIX "arm64-6.1", "/proc/sys/kernel/osrelease", buf, 4), 3);
	assert_string_equal(buf, "6.1");
	assert_int_equal(pgt__read_file(FIX "arm64-6.1", "/proc/sys/kernel/arch", buf, 1), 0);
	assert_string_equal(buf, "");
	assert_int_equal(pgt__read_file(FIX "arm64-6.1", "/nope", buf, sizeof(buf)), -ENOENT);
	memset(longroot, 'a', sizeof(longroot) - 1);
	longroot[sizeof(longroot) - 1] = '\0';
	assert_int_equal(pgt__read_file(longroot, "/x", buf, sizeof(buf)), -ENAMETOOLONG);
	assert_int_equal(pgt__read_u64(FIX "arm64-6.1", "/proc/cpuinfo", &(uint64_t){ 0 }),
			 -EBADMSG);
}

static void test_decide(void **state)
{
	struct pgt_probe p;

	(void)state;
	memset(&p, 0, sizeof(p));
	pgt__probe_decide(&p);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_MPROTECT);
	assert_false(p.touch_tracking);

	/* The WP feature without a working WP registration is not enough. */
	p.uffd_features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	p.uffd_modes[PGT_MEM_ANON] = PGT_UFFD_MODE_MISSING;
	pgt__probe_decide(&p);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_MPROTECT);
	assert_true(p.touch_tracking);

	p.uffd_modes[PGT_MEM_ANON] |= PGT_UFFD_MODE_WP;
	pgt__probe_decide(&p);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_UFFD_SYNC);

	p.soft_dirty = true;
	pgt__probe_decide(&p);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_SOFT_DIRTY);

	p.pagemap_scan = true;
	pgt__probe_decide(&p);
	assert_int_equal(p.best_dirty_method, PGT_DIRTY_UFFD_ASYNC);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(pgt_uffd_feature_name(0), "pagefault_flag_wp");
	assert_string_equal(pgt_uffd_feature_name(10), "minor_shmem");
	assert_string_equal(pgt_uffd_feature_name(13), "wp_unpopulated");
	assert_string_equal(pgt_uffd_feature_name(15), "wp_async");
	assert_string_equal(pgt_uffd_feature_name(16), "move");
	for (unsigned b = 0; b < 17; b++)
		assert_non_null(pgt_uffd_feature_name(b));
	assert_null(pgt_uffd_feature_name(17));
	assert_null(pgt_uffd_feature_name(~0u));

	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_COPY), "copy");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_ZEROPAGE), "zeropage");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_CONTINUE), "continue");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_WRITEPROTECT), "writeprotect");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_MOVE), "move");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_POISON), "poison");
	assert_string_equal(pgt_uffd_ioctl_name(_UFFDIO_API), "api");
	assert_null(pgt_uffd_ioctl_name(9));
	assert_null(pgt_uffd_ioctl_name(64));

	assert_string_equal(pgt_memtype_name(PGT_MEM_ANON), "anon");
	assert_string_equal(pgt_memtype_name(PGT_MEM_SHMEM), "shmem");
	assert_string_equal(pgt_memtype_name(PGT_MEM_HUGETLB), "hugetlb");
	assert_null(pgt_memtype_name(PGT_MEM__COUNT));
	assert_null(pgt_memtype_name(-1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_word),
		cmocka_unit_test(test_bracketed),
		cmocka_unit_test(test_node_list),
		cmocka_unit_test(test_hugepages_name),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_cpuinfo),
		cmocka_unit_test(test_fixture_x86),
		cmocka_unit_test(test_fixture_arm64),
		cmocka_unit_test(test_fixture_truncated),
		cmocka_unit_test(test_fixture_empty),
		cmocka_unit_test(test_fixture_garbage),
		cmocka_unit_test(test_fixture_huge),
		cmocka_unit_test(test_fixture_missing),
		cmocka_unit_test(test_root_args),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("probe_parse", tests, pgt_test_guard_setup,
					   pgt_test_guard_teardown);
}
