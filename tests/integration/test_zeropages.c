/* SPDX-License-Identifier: MIT */
/*
 * pgt_zero_pages(): a known pattern of zero and non-zero 4 KiB pieces on
 * anonymous, THP, memfd (shmem) and hugetlb regions, resident and not,
 * reported exactly and without faulting the holes in; bad input.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pgtrack.h>

#include "hal/compat_uapi.h"

#define MiB (1ULL << 20)
#define PIECE 4096ULL
#define GPA0 (1ULL << 32)
#define LEN (8 * MiB)
#define NPIECES (LEN / PIECE)

static struct pgt_probe probe = { .size = sizeof(probe) };

struct fx {
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	uint8_t *m;
};

static int open_region_m(struct fx *f, int backing, int method)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = LEN, .gpa = GPA0,
		.track = method == PGT_DIRTY_NONE ? 0 : PGT_TRACK_DIRTY,
		.dirty_method = method, .numa_node = -1, .name = "zp",
	};
	int ret;

	memset(f, 0, sizeof(*f));
	ret = pgt_test_region_open(&rc, &f->eng, &f->r, &f->info);
	if (!ret)
		f->m = f->info.addr;
	return ret;
}

static int open_region(struct fx *f, int backing)
{
	return open_region_m(f, backing, PGT_DIRTY_NONE);
}

static void close_region(struct fx *f)
{
	pgt_region_destroy(f->r);
	pgt_engine_close(f->eng);
}

static bool bit(const unsigned long *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

/*
 * Pattern by 2 MiB quarter: [0,2M) written with zeros; [2M,4M) zeros with
 * a byte in pieces 3, 100 and 511; [4M,6M) never touched (a hole); [6M,8M)
 * all data. Returns whether piece @i is expected zero.
 */
static void write_pattern(struct fx *f)
{
	memset(f->m, 0, 4 * MiB);
	f->m[2 * MiB + 3 * PIECE + 17] = 1;
	f->m[2 * MiB + 100 * PIECE] = 2;
	f->m[4 * MiB - 1] = 3;
	memset(f->m + 6 * MiB, 0x42, 2 * MiB);
}

static bool want_zero(uint64_t i, bool resident_only)
{
	if (i >= 1536)
		return false;
	if (i >= 1024)
		return !resident_only;
	return i != 512 + 3 && i != 512 + 100 && i != 1023;
}

/* Pieces of the hole that are mapped in this process (mincore). */
static unsigned hole_mapped(struct fx *f)
{
	unsigned char vec[512];
	unsigned n = 0;

	assert_int_equal(mincore(f->m + 4 * MiB, 2 * MiB, vec), 0);
	for (int i = 0; i < 512; i++)
		n += vec[i] & 1;
	return n;
}

static void pattern_case_m(int backing, int method, const char *name)
{
	static unsigned long bm[NPIECES / 64 + 1];
	uint64_t blocks0 = 0;
	struct stat st;
	struct fx f;
	int64_t got;

	if (open_region_m(&f, backing, method)) {
		pgt_skip("%s: region not available here", name);
		return;
	}
	write_pattern(&f);
	if (f.info.fd >= 0) {
		assert_int_equal(fstat(f.info.fd, &st), 0);
		blocks0 = (uint64_t)st.st_blocks;
	}
	got = pgt_zero_pages(f.r, GPA0, LEN, bm, 0);
	if (got != 512 + 509 + 512)
		fail_msg("%s: %lld zero pieces, want 1533", name, (long long)got);
	for (uint64_t i = 0; i < NPIECES; i++)
		if (bit(bm, i) != want_zero(i, false))
			fail_msg("%s: piece %llu reported %d", name, (unsigned long long)i, bit(bm, i));
	/* nothing faulted in: the hole stays unmapped, the file unallocated */
	assert_int_equal(hole_mapped(&f), 0);
	if (f.info.fd >= 0) {
		assert_int_equal(fstat(f.info.fd, &st), 0);
		assert_int_equal((uint64_t)st.st_blocks, blocks0);
	}
	assert_int_equal(pgt_zero_pages(f.r, GPA0, LEN, bm, PGT_ZERO_PAGES_RESIDENT), 1021);
	for (uint64_t i = 0; i < NPIECES; i++)
		if (bit(bm, i) != want_zero(i, true))
			fail_msg("%s resident: piece %llu reported %d", name, (unsigned long long)i,
				 bit(bm, i));
	/* a sub-range: bit 0 is the piece at its gpa; the tail word is cleared */
	memset(bm, 0xff, sizeof(bm));
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + 2 * MiB + PIECE, 70 * PIECE, bm, 0), 69);
	assert_false(bit(bm, 2));
	assert_true(bit(bm, 0) && bit(bm, 3) && bit(bm, 69));
	assert_int_equal(bm[1] >> 6, 0);
	/* data written into a zero piece is seen at the next call */
	f.m[5 * PIECE + 9] = 7;
	assert_int_equal(pgt_zero_pages(f.r, GPA0, 8 * PIECE, bm, 0), 7);
	assert_false(bit(bm, 5));
	close_region(&f);
}

static void pattern_case(int backing, const char *name)
{
	pattern_case_m(backing, PGT_DIRTY_NONE, name);
}

/* Whether the kernel says @p maps the zero page: 1, 0, or -1 (no PAGEMAP_SCAN). */
static int kernel_pfnzero(const void *p)
{
	struct page_region v;
	struct pm_scan_arg a = {
		.size = sizeof(a), .start = (uintptr_t)p, .end = (uintptr_t)p + PIECE,
		.vec = (uintptr_t)&v, .vec_len = 1,
		.category_mask = PAGE_IS_PFNZERO, .return_mask = PAGE_IS_PFNZERO,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	long got;

	assert_true(fd >= 0);
	got = ioctl(fd, PAGEMAP_SCAN, &a);
	close(fd);
	return got < 0 ? -1 : got > 0;
}

static void test_anon(void **state)
{
	int pfz;

	struct fx f;
	static unsigned long bm[2];

	(void)state;
	pattern_case(PGT_BACKING_ANON, "anon");
	/* a read fault maps the zero page: reported zero without a read */
	assert_int_equal(open_region(&f, PGT_BACKING_ANON), 0);
	assert_int_equal(*(volatile uint8_t *)(f.m + 9 * PIECE), 0);
	f.m[10 * PIECE] = 1;
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + 8 * PIECE, 4 * PIECE, bm, 0), 3);
	assert_int_equal(bm[0], 0xb);
	/*
	 * The read piece holds memory of its own unless the kernel mapped the
	 * zero page there (some kernels allocate on read faults).
	 */
	pfz = kernel_pfnzero(f.m + 9 * PIECE);
	if (pfz != 1)
		pgt_test_note("anon: kernel maps no zero page on a read fault (%d): "
			      "the PAGE_IS_PFNZERO path is not exercised", pfz);
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + 8 * PIECE, 4 * PIECE, bm,
					PGT_ZERO_PAGES_RESIDENT), pfz == 1 ? 0 : 1);
	close_region(&f);
}

/*
 * Under uffd WP-async the tracker puts a uffd-wp marker on every piece
 * never populated: PAGEMAP_SCAN reports those as swapped, and only
 * /proc/self/pagemap's swap type (shown to CAP_SYS_ADMIN) says they are
 * holes. The same pattern, the same answer.
 */
static void test_anon_uffd_async(void **state)
{
	(void)state;
	if (!probe.pagemap_scan) {
		pgt_skip("PAGEMAP_SCAN / uffd WP-async not available on this kernel");
		return;
	}
	if (geteuid() != 0) {
		pgt_skip("needs CAP_SYS_ADMIN to tell uffd-wp markers from swap");
		return;
	}
	pattern_case_m(PGT_BACKING_ANON, PGT_DIRTY_UFFD_ASYNC, "anon, uffd-async");
}

static int fill_ones(void *arg, uint64_t gpa, void *dst, size_t len)
{
	(void)arg;
	(void)gpa;
	memset(dst, 0xff, len);
	return 0;
}

/* With a page provider a hole is content not yet supplied: never zero. */
static void test_anon_provider(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = LEN, .gpa = GPA0,
		.track = PGT_TRACK_TOUCH, .numa_node = -1, .name = "zp-provider",
		.provider = fill_ones,
	};
	static unsigned long bm[NPIECES / 64];
	struct fx f;

	(void)state;
	memset(&f, 0, sizeof(f));
	if (pgt_test_region_open(&rc, &f.eng, &f.r, &f.info)) {
		pgt_skip("first-touch tracking not available here");
		return;
	}
	f.m = f.info.addr;
	assert_int_equal(pgt_zero_pages(f.r, GPA0, LEN, bm, 0), 0);
	/* what the provider supplied is read: 0xff, not zero */
	assert_int_equal(f.m[3 * PIECE], 0xff);
	memset(f.m + 5 * PIECE, 0, PIECE);
	assert_int_equal(pgt_zero_pages(f.r, GPA0, LEN, bm, 0), 1);
	assert_true(bit(bm, 5));
	close_region(&f);
}

static void test_thp(void **state)
{
	(void)state;
	if (!strcmp(probe.thp_enabled, "never")) {
		pgt_skip("THP disabled on this host");
		return;
	}
	pattern_case(PGT_BACKING_THP, "thp");
}

static void test_memfd(void **state)
{
	(void)state;
	pattern_case(PGT_BACKING_MEMFD, "memfd");
}

static void test_hugetlb(void **state)
{
	(void)state;
	if (pgt_test_free_hugepages() < 4) {
		pgt_skip("needs 4 free 2 MiB hugepages, %ld free", pgt_test_free_hugepages());
		return;
	}
	pattern_case(PGT_BACKING_HUGETLB, "hugetlb");
}

/*
 * A registered MAP_PRIVATE mapping of a file, fd not given: its holes read
 * the file, so only what is mapped and zero may be reported. A registered
 * private anonymous mapping: holes are zero.
 */
static void test_external(void **state)
{
	static unsigned long bm[1];
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = 16 * PIECE,
		.gpa = GPA0, .dirty_method = PGT_DIRTY_NONE, .numa_node = -1, .fd = -1,
	};
	char path[] = "/tmp/pgt-zp-XXXXXX";
	int fd = mkstemp(path);
	uint8_t data[16 * PIECE];
	pgt_engine *eng;
	pgt_region *r;

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	memset(data, 0x11, sizeof(data));
	assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	rc.addr = mmap(NULL, 16 * PIECE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(rc.addr != MAP_FAILED);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_register(eng, &rc, &r), 0);
	memset((uint8_t *)rc.addr + 2 * PIECE, 0, PIECE);     /* one zero piece, CoW */
	assert_int_equal(pgt_zero_pages(r, GPA0, 16 * PIECE, bm, 0), 1);
	assert_int_equal(bm[0], 1ul << 2);
	pgt_region_destroy(r);
	munmap(rc.addr, 16 * PIECE);
	close(fd);

	rc.addr = mmap(NULL, 16 * PIECE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(rc.addr != MAP_FAILED);
	assert_int_equal(pgt_region_register(eng, &rc, &r), 0);
	memset(rc.addr, 0x11, PIECE);
	assert_int_equal(pgt_zero_pages(r, GPA0, 16 * PIECE, bm, 0), 15);
	assert_int_equal(bm[0], 0xfffe);
	pgt_region_destroy(r);
	munmap(rc.addr, 16 * PIECE);
	pgt_engine_close(eng);
}

static void test_bad_input(void **state)
{
	unsigned long bm[4];
	struct fx f;

	(void)state;
	assert_int_equal(open_region(&f, PGT_BACKING_ANON), 0);
	memset(bm, 0x5a, sizeof(bm));
	assert_int_equal(pgt_zero_pages(NULL, GPA0, PIECE, bm, 0), -EINVAL);
	assert_int_equal(pgt_zero_pages(f.r, GPA0, PIECE, bm, 1u << 7), -EINVAL);
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + 1, PIECE, bm, 0), -EINVAL);
	assert_int_equal(pgt_zero_pages(f.r, GPA0, PIECE + 512, bm, 0), -EINVAL);
	assert_int_equal(pgt_zero_pages(f.r, GPA0, PIECE, NULL, 0), -EINVAL);
	assert_int_equal(pgt_zero_pages(f.r, GPA0 - PIECE, 2 * PIECE, bm, 0), -ERANGE);
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + LEN - PIECE, 2 * PIECE, bm, 0), -ERANGE);
	assert_int_equal(pgt_zero_pages(f.r, GPA0 + LEN, PIECE, bm, 0), -ERANGE);
	assert_int_equal(pgt_zero_pages(f.r, GPA0, UINT64_MAX - 4095, bm, 0), -ERANGE);
	for (int i = 0; i < 4; i++)
		assert_int_equal(bm[i], 0x5a5a5a5a5a5a5a5aul);      /* untouched */
	assert_int_equal(pgt_zero_pages(f.r, GPA0, 0, NULL, 0), 0);
	close_region(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_anon),
		cmocka_unit_test(test_anon_uffd_async),
		cmocka_unit_test(test_anon_provider),
		cmocka_unit_test(test_thp),
		cmocka_unit_test(test_memfd),
		cmocka_unit_test(test_hugetlb),
		cmocka_unit_test(test_external),
	};

	assert_int_equal(pgt_probe(&probe), 0);
	return cmocka_run_group_tests_name("zeropages", tests, NULL, NULL);
}
