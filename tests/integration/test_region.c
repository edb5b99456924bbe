/* SPDX-License-Identifier: MIT */
/*
 * Regions on the real kernel: several per engine, guest-physical lookup
 * across them, registration of memory the VMM mapped (anonymous and a
 * hugetlb memfd whose page size is detected), and removal of one region
 * while another keeps being written and harvested.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pgtrack.h>
#include <pgtrack/release.h>

#define MB (1ULL << 20)

static pgt_region *mk(pgt_engine *e, int backing, uint64_t len, uint64_t gpa, uint32_t track)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = len, .gpa = gpa,
		.track = track, .numa_node = -1,
	};
	pgt_region *r = NULL;

	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	return r;
}

static void test_lookup(void **state)
{
	pgt_engine *e;
	pgt_region *a, *b, *c, *got;
	struct pgt_region_info ia = { .size = sizeof(ia) };
	void *hva;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	/* created out of gpa order on purpose */
	b = mk(e, PGT_BACKING_MEMFD, 8 * MB, 4096 * MB, PGT_TRACK_DIRTY);
	a = mk(e, PGT_BACKING_ANON, 8 * MB, 0, PGT_TRACK_DIRTY);
	c = mk(e, PGT_BACKING_THP, 8 * MB, 16 * MB, 0);
	assert_int_equal(pgt_region_info(a, &ia), 0);

	assert_int_equal(pgt_gpa_lookup(e, 0, &got, &hva), 0);
	assert_ptr_equal(got, a);
	assert_ptr_equal(hva, ia.addr);
	assert_int_equal(pgt_gpa_lookup(e, 8 * MB - 1, &got, &hva), 0);
	assert_ptr_equal(got, a);
	assert_ptr_equal(hva, (uint8_t *)ia.addr + 8 * MB - 1);
	assert_int_equal(pgt_gpa_lookup(e, 8 * MB, &got, NULL), -ENOENT);
	assert_int_equal(pgt_gpa_lookup(e, 20 * MB, &got, NULL), 0);
	assert_ptr_equal(got, c);
	assert_int_equal(pgt_gpa_lookup(e, 4096 * MB + 12345, &got, NULL), 0);
	assert_ptr_equal(got, b);
	assert_int_equal(pgt_gpa_lookup(e, 8192 * MB, &got, NULL), -ENOENT);

	/* an overlapping guest-physical range is refused, nothing changes */
	struct pgt_region_config over = {
		.size = sizeof(over), .backing = PGT_BACKING_ANON, .length = 8 * MB,
		.gpa = 4 * MB, .numa_node = -1,
	};
	pgt_region *x = (pgt_region *)0x1;

	assert_int_equal(pgt_region_create(e, &over, &x), -EEXIST);
	assert_null(x);
	assert_int_equal(pgt_gpa_lookup(e, 5 * MB, &got, NULL), 0);
	assert_ptr_equal(got, a);

	/* remove the middle one; the others stay */
	assert_int_equal(pgt_region_destroy(c), 0);
	assert_int_equal(pgt_gpa_lookup(e, 20 * MB, &got, NULL), -ENOENT);
	assert_int_equal(pgt_gpa_lookup(e, 1 * MB, &got, NULL), 0);
	assert_ptr_equal(got, a);
	pgt_engine_close(e); /* destroys a and b */
}

static void test_register(void **state)
{
	pgt_engine *e;
	pgt_region *r, *r2;
	pgt_dirty_view *v;
	struct pgt_region_info info = { .size = sizeof(info) };
	uint64_t len = 4 * MB;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long bm[(4 * MB / 4096) / 64];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = bm, .bitmap_words = 16 };

	(void)state;
	assert_true(mem != MAP_FAILED);
	memset(mem, 1, len); /* populated before registration */
	assert_int_equal(pgt_engine_open(NULL, &e), 0);

	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = len,
		.gpa = 1 << 30, .track = PGT_TRACK_DIRTY, .numa_node = -1, .addr = mem, .fd = -1,
		.name = "vmm-ram",
	};

	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_ptr_equal(info.addr, mem);
	assert_int_equal(info.page_size, 4096);
	assert_int_equal(info.backing, PGT_BACKING_EXTERNAL);
	assert_string_equal(info.name, "vmm-ram");

	/* the same host range again (other gpa) is refused */
	rc.gpa = 2ULL << 30;
	assert_int_equal(pgt_region_register(e, &rc, &r2), -EEXIST);

	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	mem[5 * 4096] = 2;
	mem[1023 * 4096 + 17] = 2;
	if (info.dirty_method == PGT_DIRTY_SOFT_DIRTY) {
		/*
		 * Soft-dirty may over-report, never under-report: a THP is
		 * dirty as a whole, and a VMA merged with a new neighbour is
		 * soft-dirty in full.
		 */
		assert_true(pgt_dirty_harvest(v, &h) >= 2);
		assert_true(bm[0] & 1UL << 5);
		assert_true(bm[15] & 1UL << 63);
	} else {
		assert_int_equal(pgt_dirty_harvest(v, &h), 2);
		assert_int_equal(bm[0], 1UL << 5);
		assert_int_equal(bm[15], 1UL << 63);
	}
	pgt_dirty_view_close(v);
	assert_int_equal(pgt_region_destroy(r), 0);
	/* still mapped and intact after pgtrack let go */
	assert_int_equal(mem[5 * 4096], 2);
	mem[0] = 3;
	munmap(mem, len);
	pgt_engine_close(e);
}

static void test_register_hugetlb(void **state)
{
	pgt_engine *e;
	pgt_region *r;
	struct pgt_region_info info = { .size = sizeof(info) };
	uint64_t len = 8 * MB;
	int fd;
	uint8_t *mem;

	(void)state;
	if (pgt_test_free_hugepages() < 4)
		pgt_skip("needs 4 free 2 MiB hugepages (echo N > /proc/sys/vm/nr_hugepages)");
	fd = memfd_create("vmm-huge", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(pgt_engine_open(NULL, &e), 0);

	struct pgt_region_config rc = {
		.size = sizeof(rc), .length = len, .track = PGT_TRACK_DIRTY, .numa_node = -1,
		.addr = mem, .fd = fd,
	};

	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(info.page_size, 2 * MB); /* from fstatfs on hugetlbfs */
	assert_int_equal(info.npages, 4);

	/* a gpa that is not 2 MiB aligned is refused for it */
	pgt_region *r2;

	assert_int_equal(pgt_region_destroy(r), 0);
	rc.gpa = 4096;
	assert_int_equal(pgt_region_register(e, &rc, &r2), -EINVAL);
	rc.gpa = 0;
	rc.fd_offset = 4096;
	assert_int_equal(pgt_region_register(e, &rc, &r2), -EINVAL);
	pgt_engine_close(e);
	munmap(mem, len);
	close(fd);
}

/*
 * A MAP_SHARED memfd mapping registered without its fd, at an offset into
 * the file: pgtrack opens the file itself (map_files), so a release frees
 * the file's pages (MADV_DONTNEED would only unmap them) and the region's
 * info names the file at the right offset.
 */
static void test_register_shared_nofd(void **state)
{
	struct pgt_region_info info = { .size = sizeof(info) };
	uint64_t len = 4 * MB, off = 1 * MB;
	struct stat st0, st1, st2;
	pgt_engine *e;
	pgt_region *r;
	uint8_t *mem;
	int fd;

	(void)state;
	fd = memfd_create("vmm-shared", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(off + len)), 0);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	assert_true(mem != MAP_FAILED);
	memset(mem, 1, len);
	assert_int_equal(pgt_engine_open(NULL, &e), 0);

	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = len,
		.gpa = 1 << 30, .track = PGT_TRACK_DIRTY, .numa_node = -1, .addr = mem, .fd = -1,
		.name = "vmm-shared",
	};

	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	if (info.fd < 0 && geteuid()) {
		pgt_engine_close(e);
		munmap(mem, len);
		close(fd);
		pgt_skip("/proc/self/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE");
	}
	assert_true(info.fd >= 0);
	assert_int_not_equal(info.fd, fd);
	assert_int_equal(fstat(fd, &st0), 0);
	assert_int_equal(fstat(info.fd, &st1), 0);
	assert_int_equal(st0.st_ino, st1.st_ino);  /* the same file */
	/* 64 pages released: the file gives them back, the bytes read zero */
	assert_int_equal(pgt_release(e, (1 << 30) + 8 * 4096, 64 * 4096, 0, NULL), 64);
	assert_int_equal(fstat(fd, &st2), 0);
	/* (at the mapping's offset into the file: the first MiB holds nothing) */
	assert_int_equal(st0.st_blocks - st2.st_blocks, 64 * 4096 / 512);
	for (uint64_t i = 0; i < 64 * 4096; i += 4096)
		assert_int_equal(mem[8 * 4096 + i], 0);
	assert_int_equal(mem[7 * 4096], 1);
	assert_int_equal(mem[72 * 4096], 1);
	assert_int_equal(pgt_region_destroy(r), 0);
	/* its own fd is closed with it; ours stays */
	assert_int_equal(fcntl(info.fd, F_GETFD), -1);
	assert_int_equal(fstat(fd, &st2), 0);
	pgt_engine_close(e);
	munmap(mem, len);
	close(fd);
}

struct writer {
	uint8_t *mem;
	uint64_t pages;
	_Atomic int stop;
	_Atomic uint64_t writes;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	uint64_t i = 0;

	while (!atomic_load(&w->stop)) {
		w->mem[(i % w->pages) * 4096] = (uint8_t)i;
		i++;
		atomic_fetch_add(&w->writes, 1);
	}
	return NULL;
}

/* Removing one region does not disturb tracking of another in use. */
static void test_remove_while_tracking(void **state)
{
	pgt_engine *e;
	pgt_region *keep, *gone;
	pgt_dirty_view *v;
	struct pgt_region_info info = { .size = sizeof(info) };
	struct writer w = { 0 };
	pthread_t t;
	unsigned long bm[(8 * MB / 4096) / 64];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = bm, .bitmap_words = 32 };

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	keep = mk(e, PGT_BACKING_ANON, 8 * MB, 0, PGT_TRACK_DIRTY);
	assert_int_equal(pgt_region_info(keep, &info), 0);
	assert_int_equal(pgt_dirty_view_open(keep, &v), 0);
	w.mem = info.addr;
	w.pages = 100;
	assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
	while (atomic_load(&w.writes) < 1000)
		sched_yield();
	for (int i = 0; i < 20; i++) {
		gone = mk(e, i % 2 ? PGT_BACKING_MEMFD : PGT_BACKING_ANON, 4 * MB, 64 * MB,
			  PGT_TRACK_DIRTY | (i % 3 == 0 ? PGT_TRACK_TOUCH : 0));
		assert_true(pgt_dirty_harvest(v, &h) >= 0);
		assert_int_equal(pgt_region_destroy(gone), 0);
	}
	atomic_store(&w.stop, 1);
	pthread_join(t, NULL);
	/* after the writer stopped: every page it cycled through is reported */
	assert_true(pgt_dirty_harvest(v, &h) >= 0);
	memset(bm, 0, sizeof(bm));
	for (uint64_t p = 0; p < 100; p++)
		w.mem[p * 4096] = 0;
	/* soft-dirty may over-report (never under-report); the others are exact */
	if (info.dirty_method == PGT_DIRTY_SOFT_DIRTY)
		assert_true(pgt_dirty_harvest(v, &h) >= 100);
	else
		assert_int_equal(pgt_dirty_harvest(v, &h), 100);
	for (uint64_t p = 0; p < 100; p++)
		assert_true(bm[p / 64] >> (p % 64) & 1);
	assert_true(atomic_load(&w.writes) > 0);
	pgt_dirty_view_close(v);
	pgt_engine_close(e);
}

/*
 * Metadata for all page states together stays within 0.02 % of guest memory
 * at 4 KiB granularity: 1 GiB with dirty, first-touch and remove tracking,
 * one dirty consumer, some pages touched, released and pinned. Every further
 * dirty view adds one bit per page (0.003 %): it is a consumer's own state.
 */
static void test_metadata_budget(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 1ULL << 30,
		.track = PGT_TRACK_DIRTY | PGT_TRACK_TOUCH | PGT_TRACK_REMOVE, .numa_node = -1,
	};
	struct pgt_region_stats st = { .size = sizeof(st) };
	struct pgt_region_info info = { .size = sizeof(info) };
	pgt_dirty_view *v1;
	pgt_engine *e;
	pgt_region *r;
	uint64_t budget = (1ULL << 30) / 5000; /* 0.02 % */

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_region_create(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v1), 0);
	for (uint64_t p = 0; p < info.npages; p += 97) /* random-ish first touches */
		((volatile uint8_t *)info.addr)[p * 4096] = 1;
	assert_true(pgt_release(e, 4096 * 1000, 64 * 4096, 0, NULL) >= 0);
	assert_int_equal(pgt_pin(e, 4096 * 5000, 16 * 4096), 0);
	assert_int_equal(pgt_region_stats(r, &st), 0);
	pgt_test_note("metadata %llu bytes for 1 GiB (%.4f %%), budget %llu",
		      (unsigned long long)st.metadata_bytes,
		      100.0 * (double)st.metadata_bytes / (double)(1ULL << 30),
		      (unsigned long long)budget);
	assert_true(st.metadata_bytes > (1ULL << 30) / 4096 / 8); /* counts at least a bitmap */
	assert_true(st.metadata_bytes <= budget);
	pgt_dirty_view_close(v1);
	pgt_engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_register_hugetlb),
		cmocka_unit_test(test_register_shared_nofd),
		cmocka_unit_test(test_remove_while_tracking),
		cmocka_unit_test(test_metadata_budget),
	};

	return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
