/* SPDX-License-Identifier: MIT */
/*
 * DPDK memory as region backing, shared by the three DPDK tests. DPDK
 * allows one EAL per process (PLATFORM-NOTES), so each way of getting one
 * is its own executable: the application's (test_dpdk_app), pgtrack's with
 * hugepages (test_dpdk_own), pgtrack's without (test_dpdk_nohuge). Each
 * runs these checks on a region backed by a memzone:
 *  - tracking: writes through the region are in the next harvest;
 *  - release: a released page reads zero and is freed on the host;
 *  - offload: the region's IOVAs as DPDK has them, the sim device writing
 *    through a mapping of DPDK's own files, its ring in DPDK memory.
 */
#ifndef PGT_TEST_DPDK_COMMON_H
#define PGT_TEST_DPDK_COMMON_H

#include "tests/common/testutil.h"
#include "tests/common/dma_writes.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pgtrack.h>

#define MIB (1ULL << 20)
#define DLEN (32 * MIB)
#define DGPA (1ULL << 32)

static struct pgt_probe dprobe = { .size = sizeof(dprobe) };

struct dfx {
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	pgt_dirty_view *v;
	uint64_t *bm;
};

static inline void dfx_open(struct dfx *f)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_DPDK, .length = DLEN, .gpa = DGPA,
		.track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "dpdk-guest",
	};

	memset(f, 0, sizeof(*f));
	assert_int_equal(pgt_engine_open(NULL, &f->eng), 0);
	assert_int_equal(pgt_region_create(f->eng, &rc, &f->r), 0);
	f->info.size = sizeof(f->info);
	assert_int_equal(pgt_region_info(f->r, &f->info), 0);
	assert_int_equal(f->info.backing, PGT_BACKING_DPDK);
	assert_string_equal(pgt_backing_name(PGT_BACKING_DPDK), "dpdk");
	assert_int_equal(pgt_dirty_view_open(f->r, &f->v), 0);
	f->bm = calloc(f->info.npages / 64 + 1, 8);
	pgt_test_note("DPDK region: %llu KiB pages, fd %d, dirty tracker %s",
		      (unsigned long long)(f->info.page_size >> 10), f->info.fd,
		      pgt_dirty_method_name(f->info.dirty_method));
}

static inline void dfx_close(struct dfx *f)
{
	pgt_dirty_view_close(f->v);
	assert_int_equal(pgt_region_destroy(f->r), 0);
	pgt_engine_close(f->eng);
	free(f->bm);
}

static inline int64_t dharvest(struct dfx *f)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)f->bm,
				 .bitmap_words = f->info.npages / 64 + 1 };
	int64_t n = pgt_dirty_harvest(f->v, &h);

	assert_true(n >= 0);
	return n;
}

static inline bool dset(const struct dfx *f, uint64_t off)
{
	uint64_t p = off / f->info.page_size;

	return f->bm[p / 64] >> (p % 64) & 1;
}

/* Tracking and release on the memzone. */
static inline void dpdk_track_release(struct dfx *f)
{
	volatile uint8_t *m = f->info.addr;
	uint64_t ps = f->info.page_size;
	struct pgt_release_result res = { .size = sizeof(res) };
	long hp0, hp1;

	dharvest(f);
	m[0] = 1;
	m[5 * ps + 17] = 2;
	m[DLEN - 1] = 3;
	assert_int_equal(dharvest(f), 3);
	assert_true(dset(f, 0) && dset(f, 5 * ps) && dset(f, DLEN - 1));
	assert_int_equal(dharvest(f), 0);

	/* give the last page back: it reads zero, and a hugepage returns to
	 * the pool */
	m[DLEN - ps] = 9;
	dharvest(f);
	hp0 = pgt_test_free_hugepages();
	assert_true(pgt_release(f->eng, DGPA + DLEN - ps, ps, PGT_RELEASE_TRUSTED, &res) >= 0);
	hp1 = pgt_test_free_hugepages();
	assert_int_equal(pgt_released_test(f->eng, DGPA + DLEN - ps), 1);
	assert_int_equal(m[DLEN - ps], 0);
	if (ps == 2 * MIB)
		assert_int_equal(hp1, hp0 + 1);
	pgt_test_note("released a %llu KiB page: %llu bytes freed, HugePages_Free %ld -> %ld",
		      (unsigned long long)(ps >> 10), (unsigned long long)res.freed_bytes, hp0, hp1);
	/* and the next write there is seen */
	m[DLEN - ps] = 4;
	dharvest(f);
	assert_true(dset(f, DLEN - ps));
}

/*
 * The sim device on the memzone, through the IOVA map DPDK gives: every page
 * it writes is in the view, also the ones it wrote just before a detach.
 */
static inline void dpdk_offload(struct dfx *f)
{
	struct dma_writes w;
	struct pgt_offload_sim_config sc = {
		.size = sizeof(sc), .rate = 0, .write_bytes = 64, .batch = 16, .cpu = -1,
		.on_write = dma_write, .on_tick = dma_tick, .arg = &w,
	};
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "sim", .backend_config = &sc };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_range *rg;
	uint64_t sum = 0;
	size_t i0, seen = 0;
	pgt_offload *o;
	int n;

	dma_writes_init(&w, 8192, 2000, ~0ULL); /* stores ~gpa: odd */
	n = pgt_offload_region_ranges(f->r, 10, NULL, 0);
	assert_true(n >= 1);
	rg = calloc((size_t)n, sizeof(*rg));
	assert_int_equal(pgt_offload_region_ranges(f->r, 10, rg, (size_t)n), n);
	pgt_test_note("DPDK gives the region %d IOVA range(s), the first at %#llx", n,
		      (unsigned long long)rg[0].iova);
	for (int i = 0; i < n; i++) {
		assert_int_equal(rg[i].slot, 10 + (unsigned)i);
		assert_int_equal(rg[i].gpa, DGPA + sum);
		sum += rg[i].length;
	}
	assert_int_equal(sum, DLEN);
	dharvest(f);
	assert_int_equal(pgt_offload_open(f->eng, &oc, &o), 0);
	assert_int_equal(pgt_offload_attach(o, rg, (size_t)n), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	pgt_test_note("device ring at IOVA %#llx", (unsigned long long)info.ring_iova);
	assert_true(info.ring_iova != 0); /* the ring is DPDK memory */
	dma_wait(&w);
	dharvest(f);
	for (size_t i = 0; i < w.n; i++) {
		assert_true(dset(f, w.gpa[i] - DGPA));
		assert_true(*(volatile uint64_t *)((uint8_t *)f->info.addr + (w.gpa[i] - DGPA)) & 1);
	}
	/* more writes, then a detach, which harvests the log before dropping
	 * the map: every page still reaches the view */
	i0 = w.n;
	dma_go(&w, 2000, false);
	dma_wait(&w);
	dma_go(&w, 0, true);
	assert_int_equal(pgt_offload_detach(o), 0);
	dharvest(f);
	for (size_t i = i0; i < w.n; i++)
		seen += dset(f, w.gpa[i] - DGPA);
	pgt_test_note("detached after %zu more DMA writes: %zu of their pages reported",
		      w.n - i0, seen);
	assert_int_equal(seen, w.n - i0);
	pgt_offload_close(o);
	free(rg);
	dma_writes_fini(&w);
}

#endif
