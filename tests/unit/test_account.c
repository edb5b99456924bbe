/* SPDX-License-Identifier: MIT */
/*
 * Host-side accounting on fixture trees (tests/fixtures/account): the
 * process's RSS split, the hugetlb pool, cgroup v2, v1 and v1 inside a
 * cgroup namespace, no cgroup, malformed files; the line parser and the
 * smaps "locked" parser on tricky input; the explanation's equations
 * closing exactly; rendering into small buffers.
 */
#include "tools/lib/pgtool.h"
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pgtrack.h>

#include "engine/release_pvt.h"

#define MiB (1ULL << 20)
#define FIX PGT_SRCDIR "/tests/fixtures/account/"


static void status_common(const struct pgt_host_usage *u)
{
	assert_int_equal(u->rss, 2621440ULL << 10);
	assert_int_equal(u->rss_anon, 2097152ULL << 10);
	assert_int_equal(u->rss_file, 65536ULL << 10);
	assert_int_equal(u->rss_shmem, 458752ULL << 10);
	assert_int_equal(u->swap, 1024ULL << 10);
	assert_int_equal(u->hugetlb, 1ULL << 30);
	assert_int_equal(u->hp_total, 600);
	assert_int_equal(u->hp_free, 88);
	assert_int_equal(u->hp_rsvd, 12);
	assert_int_equal(u->hp_size, 2 * MiB);
}

static void test_cgroup_v2(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };

	(void)state;
	assert_int_equal(pgt_host_usage_root(FIX "v2", &u), 0);
	assert_int_equal(u.errors, 0);
	status_common(&u);
	assert_int_equal(u.cg_version, 2);
	assert_string_equal(u.cg_path, "/machine.slice/vm1.scope");
	assert_int_equal(u.cg_usage, 3ULL << 30);
	assert_int_equal(u.cg_limit, UINT64_MAX);
	assert_int_equal(u.cg_anon, 2ULL << 30);
	assert_int_equal(u.cg_file, 768 * MiB);
	assert_int_equal(u.cg_shmem, 512 * MiB);
	assert_int_equal(u.cg_file_mapped, 496 * MiB);
	assert_int_equal(u.cg_kernel, 128 * MiB); /* "kernel" wins over the parts */
	assert_int_equal(u.cg_hugetlb, 1ULL << 30);
}

static void test_cgroup_v1(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };

	(void)state;
	assert_int_equal(pgt_host_usage_root(FIX "v1", &u), 0);
	assert_int_equal(u.errors, 0);
	status_common(&u);
	/* cgroup2 is mounted but has no memory controller: v1 it is */
	assert_int_equal(u.cg_version, 1);
	assert_string_equal(u.cg_path, "/process_api/a46f2427");
	assert_int_equal(u.cg_usage, 3000000000ULL);
	assert_int_equal(u.cg_limit, UINT64_MAX); /* PAGE_COUNTER_MAX: unlimited */
	assert_int_equal(u.cg_anon, 2ULL << 30);  /* total_* preferred */
	assert_int_equal(u.cg_file, 768 * MiB);
	assert_int_equal(u.cg_shmem, 512 * MiB);
	assert_int_equal(u.cg_file_mapped, 496 * MiB);
	assert_int_equal(u.cg_kernel, 50000000);
}

static void test_cgroup_v1_namespace(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };

	(void)state;
	assert_int_equal(pgt_host_usage_root(FIX "v1ns", &u), 0);
	assert_int_equal(u.cg_version, 1);
	assert_string_equal(u.cg_path, "/");
	assert_int_equal(u.cg_usage, 123456789);
	assert_int_equal(u.cg_limit, 4ULL << 30);
	assert_int_equal(u.cg_anon, 2000); /* no total_* lines */
	assert_int_equal(u.cg_file, 1000);
}

static void test_no_cgroup_and_broken(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };

	(void)state;
	assert_int_equal(pgt_host_usage_root(FIX "none", &u), 0);
	assert_int_equal(u.rss, 1 * MiB);
	assert_int_equal(u.cg_version, 0);
	assert_int_equal(u.errors, 2 | 4);
	assert_int_equal(pgt_host_usage_root(FIX "broken", &u), 0);
	assert_int_equal(u.errors & 1, 1);  /* no VmRSS */
	assert_int_equal(u.rss_anon, 0);    /* overflowing number */
	assert_int_equal(u.rss_file, 0);    /* no number */
	assert_int_equal(pgt_host_usage_root(FIX "missing", &u), -ENOENT);
	u.size = 4;
	assert_int_equal(pgt_host_usage_root(FIX "v2", &u), -EINVAL);
	assert_int_equal(pgt_host_usage(NULL), -EINVAL);
}

static void test_live(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };

	(void)state;
	assert_int_equal(pgt_host_usage(&u), 0);
	assert_int_equal(u.errors & 1, 0);
	assert_true(u.rss > 0);
	assert_true(u.rss_anon + u.rss_file + u.rss_shmem > 0);
	pgt_test_note("live: rss %llu KiB, cgroup v%d %s usage %llu KiB",
		      (unsigned long long)u.rss >> 10, u.cg_version, u.cg_path,
		      (unsigned long long)u.cg_usage >> 10);
}

static void test_kv_parser(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(pgt__kv_get("a 1\nab 2\nabc: 3 kB\n", "ab", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(pgt__kv_get("a 1\nab 2\nabc: 3 kB\n", "abc", &v), 0);
	assert_int_equal(v, 3072);
	assert_int_equal(pgt__kv_get("abcd 5\n", "abc", &v), -ENOENT);
	assert_int_equal(pgt__kv_get("x: \n", "x", &v), -EBADMSG);
	assert_int_equal(pgt__kv_get("x 18446744073709551616\n", "x", &v), -EBADMSG);
	assert_int_equal(pgt__kv_get("x 18446744073709551609\n", "x", &v), 0);
	assert_int_equal(pgt__kv_get("", "x", &v), -ENOENT);
	assert_int_equal(pgt__kv_get("y 1", "y", &v), 0); /* no trailing newline */
}

struct vmas {
	uint64_t v[8][2];
	int n;
};

static void add_vma(void *arg, uint64_t a, uint64_t b)
{
	struct vmas *x = arg;

	if (x->n < 8) {
		x->v[x->n][0] = a;
		x->v[x->n][1] = b;
	}
	x->n++;
}

/* A fixture file's bytes (up to @cap) into @buf. */
static size_t read_fixture(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t len;

	assert_non_null(f);
	len = fread(buf, 1, cap, f);
	fclose(f);
	return len;
}

static void test_smaps_locked(void **state)
{
	struct vmas x = { .n = 0 };
	char buf[8192];
	size_t len = read_fixture(FIX "smaps", buf, sizeof(buf));

	(void)state;
	assert_int_equal(pgt__parse_smaps_locked(buf, len, add_vma, &x), 3);
	assert_int_equal(x.n, 3);
	assert_int_equal(x.v[0][0], 0x7f0000000000ULL);
	assert_int_equal(x.v[0][1], 0x7f0000400000ULL);
	assert_int_equal(x.v[1][0], 0x7f0000400000ULL); /* "lo" last on the line */
	assert_int_equal(x.v[2][0], 0x7f0002000000ULL); /* not "loo", not the bad VMAs */
	/* every prefix of the text is parsed without reading past it */
	for (size_t cut = 0; cut < len; cut += 7) {
		char *p = malloc(cut ? cut : 1);

		memcpy(p, buf, cut);
		x.n = 0;
		assert_true(pgt__parse_smaps_locked(p, cut, add_vma, &x) <= 3);
		free(p);
	}
}

struct vma_list {
	struct pgt_vma v[8];
	int n;
};

static int keep_vma(void *arg, const struct pgt_vma *v)
{
	struct vma_list *x = arg;

	if (x->n < 8)
		x->v[x->n] = *v;
	x->n++;
	return 0;
}

/* What register and release read of a VMA: range, file offset, kernel page
 * size, and the flags sh/ht/lo/hg/nh, each only as a whole token. */
static void test_smaps_fields(void **state)
{
	struct vma_list x = { .n = 0 };
	char buf[8192];
	size_t len = read_fixture(FIX "smaps-vma", buf, sizeof(buf));

	(void)state;
	assert_int_equal(pgt__smaps_walk(buf, len, keep_vma, &x), 5);
	assert_int_equal(x.n, 5);
	/* a memfd mapped from 1 MiB into the file, advised huge */
	assert_int_equal(x.v[0].start, 0x7f1000000000ULL);
	assert_int_equal(x.v[0].end, 0x7f1000400000ULL);
	assert_int_equal(x.v[0].offset, 0x100000);
	assert_int_equal(x.v[0].kernel_page_size, 4096);
	assert_true(x.v[0].shared && x.v[0].thp_on);
	assert_false(x.v[0].thp_off || x.v[0].hugetlb || x.v[0].locked);
	/* private, MADV_NOHUGEPAGE last on the line */
	assert_true(x.v[1].thp_off);
	assert_false(x.v[1].shared || x.v[1].thp_on);
	/* shared hugetlb, a large offset */
	assert_int_equal(x.v[2].offset, 0x7fffffe00000ULL);
	assert_int_equal(x.v[2].kernel_page_size, 2u << 20);
	assert_true(x.v[2].hugetlb && x.v[2].shared);
	/* a bad offset reads as 0; "nhx" is not "nh" */
	assert_int_equal(x.v[3].offset, 0);
	assert_false(x.v[3].thp_off || x.v[3].thp_on || x.v[3].shared);
	/* no VmFlags line: not reported; a header cut after the perms still
	 * gives its range, offset 0 */
	assert_int_equal(x.v[4].start, 0x7f1001200000ULL);
	assert_int_equal(x.v[4].offset, 0);
	assert_true(x.v[4].thp_on);
	for (size_t cut = 0; cut < len; cut += 5) {
		char *p = malloc(cut ? cut : 1);

		memcpy(p, buf, cut);
		x.n = 0;
		assert_true(pgt__smaps_walk(p, cut, keep_vma, &x) <= 5);
		free(p);
	}
}

static void fake_account(struct pgt_account *a)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->total.configured = 4ULL << 30;
	a->total.released = 256 * MiB;
	a->total.resident = 2560 * MiB;
	a->resident_anon = 1536 * MiB;
	a->resident_shmem = 0;
	a->resident_hugetlb = 1024 * MiB;
	a->metadata = 300000;
}

static const struct pgt_explain_line *find(const struct pgt_explain_line *l, int n, const char *k)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(l[i].key, k))
			return &l[i];
	fail_msg("no line %s", k);
	return NULL;
}

#define B(k) (find(lines, n, k)->bytes)

static void test_explain_closes(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };
	struct pgt_explain_line lines[64];
	struct pgt_account a;
	int n;

	(void)state;
	fake_account(&a);
	assert_int_equal(pgt_host_usage_root(FIX "v2", &u), 0);
	n = pgt_explain(&a, &u, lines, 64);
	assert_true(n > 20 && n <= 64);
	assert_int_equal(B("guest"), B("guest.resident") + B("guest.released") + B("guest.absent"));
	assert_int_equal(B("rss"), B("rss.anon") + B("rss.file") + B("rss.shmem") + B("rss.lag"));
	assert_int_equal(B("rss.anon"), B("rss.anon.guest") + B("rss.anon.vmm"));
	assert_int_equal(B("rss.anon.vmm"), 512 * MiB);
	assert_int_equal(B("rss.shmem"), B("rss.shmem.guest") + B("rss.shmem.other"));
	assert_int_equal(B("hugetlb"), B("hugetlb.guest") + B("hugetlb.other"));
	assert_int_equal(B("hugetlb.other"), 0);
	assert_int_equal(B("cg.usage"), B("cg.anon") + B("cg.file") + B("cg.kernel") + B("cg.other"));
	assert_int_equal(B("cg.anon.others"), 0);
	assert_int_equal(B("cg.hugetlb"), 1ULL << 30);
	assert_int_equal(B("guest.absent"), 4096 * MiB - 2560 * MiB - 256 * MiB);
	assert_non_null(strstr(find(lines, n, "hugetlb")->text, "neither VmRSS nor cgroup"));
	/* 4 KiB pieces released inside still-resident hugepages are resident,
	 * not absent: the equation still closes and nothing goes negative */
	a.total.released_partial = 6 * MiB;
	n = pgt_explain(&a, &u, lines, 64);
	assert_int_equal(B("guest"), B("guest.resident") + B("guest.released") + B("guest.absent"));
	assert_int_equal(B("guest.released.partial"), 6 * MiB);
	assert_int_equal(B("guest.released"), 256 * MiB - 6 * MiB);
	assert_int_equal(B("guest.absent"), 4096 * MiB - 2560 * MiB - 250 * MiB);
	a.total.released_partial = 0;
	n = pgt_explain(&a, &u, lines, 64);
	/* a count bigger than the buffer: only cap lines written */
	assert_int_equal(pgt_explain(&a, &u, lines, 3), n);
	assert_int_equal(pgt_explain(&a, &u, NULL, 0), n);
	assert_int_equal(pgt_explain(&a, &u, NULL, 1), -EINVAL);
	assert_int_equal(pgt_explain(NULL, &u, lines, 64), -EINVAL);

	/* without a cgroup the cgroup lines say so */
	assert_int_equal(pgt_host_usage_root(FIX "none", &u), 0);
	n = pgt_explain(&a, &u, lines, 64);
	assert_non_null(find(lines, n, "cg.none"));
}

static void test_render(void **state)
{
	struct pgt_host_usage u = { .size = sizeof(u) };
	struct pgt_account a;
	char small[64], *big;
	int need;

	(void)state;
	fake_account(&a);
	assert_int_equal(pgt_host_usage_root(FIX "v1", &u), 0);
	need = pgtool_explain_render(&a, &u, NULL, 0);
	assert_true(need > 1000);
	big = malloc((size_t)need + 1);
	assert_int_equal(pgtool_explain_render(&a, &u, big, (size_t)need + 1), need);
	assert_int_equal(strlen(big), (size_t)need);
	assert_non_null(strstr(big, "cgroup v1 /process_api/a46f2427"));
	assert_non_null(strstr(big, "rss.anon.guest"));
	assert_int_equal(pgtool_explain_render(&a, &u, small, sizeof(small)), need);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(strncmp(small, big, sizeof(small) - 1), 0);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_v2),
		cmocka_unit_test(test_cgroup_v1),
		cmocka_unit_test(test_cgroup_v1_namespace),
		cmocka_unit_test(test_no_cgroup_and_broken),
		cmocka_unit_test(test_live),
		cmocka_unit_test(test_kv_parser),
		cmocka_unit_test(test_smaps_locked),
		cmocka_unit_test(test_smaps_fields),
		cmocka_unit_test(test_explain_closes),
		cmocka_unit_test(test_render),
	};

	return cmocka_run_group_tests_name("account", tests, NULL, NULL);
}
