/* SPDX-License-Identifier: MIT */
/*
 * The offload backends against the models of their hardware, through the
 * I/O seam (hal/offload/model.h), with no engine: the argument layout and
 * errno rules of each interface (VFIO device DMA logging, IOMMUFD dirty
 * tracking, the CXL CHMU registers, KVM's dirty ring), page-size choices,
 * read-and-clear, and what a backend makes of a device that fails or lies.
 * What a backend hands over is parsed with lib/offload.c into a small world
 * and compared with the DMA the model saw.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hal/compat_uapi.h"
#include "hal/offload/chmu.h"
#include "hal/offload/model.h"
#include "hal/offload/offload.h"
#include "lib/offload.h"
#include "tests/common/offload_world.h"

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

/* ---- a device without the engine ---- */

struct rig {
	struct pgt_ofl_dev d;
	struct world w;
	struct pgt_ofl_stats st;
	int lost;
	void *mem;
	size_t mem_len;
};

static void *rig_alloc(void *svc, size_t bytes, uint64_t *iova, int *err)
{
	struct rig *g = svc;

	(void)err;
	g->mem_len = bytes;
	g->mem = aligned_alloc(4096, (bytes + 4095) & ~4095ULL);
	memset(g->mem, 0, bytes);
	*iova = 0x1000;
	return g->mem;
}

static void rig_free(void *svc, void *p, size_t bytes)
{
	struct rig *g = svc;

	(void)bytes;
	assert_ptr_equal(p, g->mem);
	free(p);
	g->mem = NULL;
}

static void sink_bitmap(void *arg, uint64_t iova, uint64_t ps, const uint64_t *bits, uint64_t n)
{
	struct rig *g = arg;

	pgt__ofl_bitmap(&g->w.m, iova, ps, bits, n, &g->st);
}

static void sink_hot(void *arg, const uint64_t *e, size_t n, unsigned cb, uint64_t unit)
{
	struct rig *g = arg;

	pgt__ofl_hotlist(&g->w.m, e, n, cb, unit, &g->st);
}

static void sink_lost(void *arg, int err)
{
	struct rig *g = arg;

	(void)err;
	g->lost++;
	pgt__ofl_mark_all(&g->w.m, &g->st);
}

static const struct pgt_ofl_sink *sink_of(struct rig *g)
{
	static struct pgt_ofl_sink s;

	s = (struct pgt_ofl_sink){ .arg = g, .bitmap = sink_bitmap, .hot = sink_hot, .lost = sink_lost };
	return &s;
}

static void rig_init(struct rig *g, const struct pgt_ofl_ops *ops, const struct pgt_ofl_io *io)
{
	memset(g, 0, sizeof(*g));
	g->d.ops = ops;
	g->d.io = io;
	g->d.svc = g;
	g->d.alloc = rig_alloc;
	g->d.free = rig_free;
}

/*
 * One 64 MiB region of 4 KiB pages reached through two windows: IOVA
 * [1 GiB, 1 GiB + 32 MiB) -> region [0, 32 MiB) (slot 0) and
 * [2 GiB, 2 GiB + 32 MiB) -> region [32 MiB, 64 MiB) (slot 1).
 */
static void rig_world(struct rig *g, struct pgt_ofl_win *win)
{
	memset(&g->w, 0, sizeof(g->w));
	world_target(&g->w, 16384, 12);
	world_seg(&g->w, GIB, 32 * MIB, 0, 0, 0, 0);
	world_seg(&g->w, 2 * GIB, 32 * MIB, 1, 0, 0, 32 * MIB);
	world_init(&g->w);
	win[0] = (struct pgt_ofl_win){ .iova = GIB, .len = 32 * MIB, .gpa = 0, .slot = 0 };
	win[1] = (struct pgt_ofl_win){ .iova = 2 * GIB, .len = 32 * MIB, .gpa = 32 * MIB, .slot = 1 };
}

/* ---- VFIO ---- */

/* A VFIO_DEVICE_FEATURE call straight at the model. */
static int vfio_call(struct pgt_model *m, uint32_t argsz, uint32_t flags, const void *p, size_t len)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[256];
	} u;

	memset(&u, 0, sizeof(u));
	u.f.argsz = argsz;
	u.f.flags = flags;
	if (len)
		memcpy(u.f.data, p, len);
	return pgt__model_io(m)->ioctl(pgt__model_io(m)->ctx, pgt__model_fd(m), VFIO_DEVICE_FEATURE, &u);
}

static void test_vfio_uapi_rules(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_VFIO };
	struct pgt_model *m = pgt__model_new(&mp);
	struct vfio_device_feature_dma_logging_range r[2] = { { 0, 8192 }, { 65536, 4096 } };
	struct vfio_device_feature_dma_logging_control c = {
		.page_size = 4096, .num_ranges = 2, .ranges = (uintptr_t)r,
	};
	struct vfio_device_feature_dma_logging_report rep = { .iova = 0, .length = 128 << 10, .page_size = 4096 };
	uint64_t bits[4] = { 0 };
	const uint32_t H = (uint32_t)sizeof(struct vfio_device_feature);
	const uint32_t START = VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
	const uint32_t REPORT = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
	struct pgt_model_stats st;

	(void)state;
	assert_non_null(m);
	/* the generic feature rules */
	assert_int_equal(vfio_call(m, 4, VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EINVAL);
	assert_int_equal(vfio_call(m, H + sizeof(c), (1u << 19) | START, &c, sizeof(c)), -EINVAL);
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | START,
				   &c, sizeof(c)), -EINVAL);
	assert_int_equal(vfio_call(m, H, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | START, NULL, 0), 0);
	/* START is SET only, needs the whole control struct */
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_GET | START, &c, sizeof(c)), -EINVAL);
	assert_int_equal(vfio_call(m, H + 8, VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EINVAL);
	c.num_ranges = 0;
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EINVAL);
	c.num_ranges = 257;
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -E2BIG);
	c.num_ranges = 2;
	r[1].iova = 65536 + 512;
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EINVAL);
	r[1].iova = UINT64_MAX & ~4095ULL;
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EOVERFLOW);
	r[1].iova = 4096; /* overlaps r[0] */
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EINVAL);
	/* REPORT before START */
	rep.bitmap = (uintptr_t)bits;
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), -EINVAL);
	r[1].iova = 65536;
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), 0);
	assert_int_equal(vfio_call(m, H + sizeof(c), VFIO_DEVICE_FEATURE_SET | START, &c, sizeof(c)), -EBUSY);
	/* REPORT: GET only, >= 4K power-of-two page, no overflow */
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_SET | REPORT, &rep, sizeof(rep)), -EINVAL);
	rep.page_size = 2048;
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), -EINVAL);
	rep.page_size = 12288;
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), -EINVAL);
	rep.page_size = 4096;
	rep.iova = UINT64_MAX - 4095;
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), -EOVERFLOW);
	rep.iova = 0;
	/* read and clear; only sets bits; replicated into a smaller report page */
	assert_int_equal(pgt__model_dma(m, 4096 + 100, 8), 0);
	assert_int_equal(pgt__model_dma(m, 65536, 4096), 0);
	assert_int_equal(pgt__model_dma(m, 1 << 20, 8), 0); /* not tracked */
	bits[1] = 1ULL << 63; /* REPORT never clears what is there */
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), 0);
	assert_int_equal(bits[0], (1ULL << 1) | (1ULL << 16));
	assert_int_equal(bits[1], 1ULL << 63);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(vfio_call(m, H + sizeof(rep), VFIO_DEVICE_FEATURE_GET | REPORT, &rep, sizeof(rep)), 0);
	assert_int_equal(bits[0], 0);
	pgt__model_stats(m, &st);
	assert_int_equal(st.cleared, 2);
	assert_true(st.tracking);
	assert_int_equal(vfio_call(m, H, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0), 0);
	pgt__model_stats(m, &st);
	assert_false(st.tracking);
	pgt__model_free(m);
}

static void test_vfio_backend(void **state)
{
	/* a device that logs at 2 MiB only and holds 1 range */
	struct pgt_model_params mp = { .kind = PGT_MODEL_VFIO, .vfio_page_sizes = 1ULL << 21,
				       .vfio_max_ranges = 1 };
	struct pgt_model *m = pgt__model_new(&mp);
	struct pgt_offload_vfio_config cfg = { .size = sizeof(cfg), .device_fd = pgt__model_fd(m) };
	struct pgt_model_stats st;
	struct pgt_ofl_win win[2];
	uint64_t ps = 4096;
	struct rig g;

	(void)state;
	rig_init(&g, &pgt__ofl_vfio, pgt__model_io(m));
	assert_int_equal(g.d.ops->open(&g.d, NULL), -EINVAL);
	cfg.device_fd = -1;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	cfg.device_fd = pgt__model_fd(m);
	cfg.size = 4;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	cfg.size = sizeof(cfg);
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	rig_world(&g, win);
	assert_int_equal(g.d.ops->attach(&g.d, win, 2), 0);
	/* asked 4 KiB; the driver logs at 2 MiB and merged the ranges */
	assert_int_equal(g.d.ops->start(&g.d, &ps), 0);
	assert_int_equal(ps, 2 * MIB);
	pgt__model_stats(m, &st);
	assert_int_equal(st.ranges, 1);
	assert_int_equal(st.page_size, 2 * MIB);
	/* a DMA write of 8 bytes: the whole 2 MiB page it is in is dirty */
	assert_int_equal(pgt__model_dma(m, GIB + 5 * MIB + 4096, 8), 0);
	assert_int_equal(pgt__model_dma(m, 2 * GIB + 31 * MIB, 8), 0);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	for (uint64_t p = 0; p < 512; p++) {
		model_pfn(&g.w, PFN(GIB + 4 * MIB) + p);
		model_pfn(&g.w, PFN(2 * GIB + 30 * MIB) + p);
	}
	check_world(&g.w);
	assert_int_equal(g.st.rejected, 0);
	clear_world(&g.w);
	/* read and clear */
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	check_world(&g.w);
	/* a failing REPORT: the log is corrupt, everything is dirty */
	assert_int_equal(pgt__model_dma(m, GIB, 8), 0);
	pgt__model_fail(m, -EIO, 1);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), -EIO);
	assert_int_equal(g.lost, 1);
	model_all(&g.w);
	check_world(&g.w);
	assert_int_equal(g.d.ops->stop(&g.d), 0);
	pgt__model_stats(m, &st);
	assert_false(st.tracking);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), -ENOENT);
	g.d.ops->close(&g.d);
	world_fini(&g.w);
	pgt__model_free(m);

	/* a device without DMA logging is refused at open */
	mp.vfio_no_logging = true;
	m = pgt__model_new(&mp);
	rig_init(&g, &pgt__ofl_vfio, pgt__model_io(m));
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EOPNOTSUPP);
	pgt__model_free(m);
}

/* ---- IOMMUFD ---- */

static int iommufd_call(struct pgt_model *m, unsigned long req, void *arg)
{
	return pgt__model_io(m)->ioctl(pgt__model_io(m)->ctx, pgt__model_fd(m), req, arg);
}

static void test_iommufd_uapi_rules(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_IOMMUFD, .hwpt_id = 7, .iova_base = GIB,
				       .iova_len = 64 * MIB };
	struct pgt_model *m = pgt__model_new(&mp);
	struct {
		struct iommu_hwpt_set_dirty_tracking a;
		uint64_t tail;
	} t = { { .size = sizeof(t.a), .flags = 1, .hwpt_id = 7 }, 0 };
	uint64_t bits[8];
	struct {
		struct iommu_hwpt_get_dirty_bitmap a;
		uint64_t tail;
	} g = { { .size = sizeof(g.a), .hwpt_id = 7, .iova = GIB, .length = 2 * MIB, .page_size = 4096,
		  .data = (uintptr_t)bits }, 0 };

	(void)state;
	/* GET before tracking is on */
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EINVAL);
	/* the ucmd size rule */
	t.a.size = 8;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), -EINVAL);
	t.a.size = sizeof(t);
	t.tail = 1;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), -E2BIG);
	t.tail = 0;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), 0); /* zero tail is fine */
	t.a.flags = 3;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), -EOPNOTSUPP);
	t.a.flags = 1;
	t.a.hwpt_id = 8;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), -ENOENT);
	t.a.hwpt_id = 7;
	/* DMA before enabling is gone after it: enabling clears */
	assert_int_equal(pgt__model_dma(m, GIB, 8), 0);
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_SET_DIRTY_TRACKING, &t), 0);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), 0);
	assert_int_equal(bits[0], 0);
	/* range rules */
	g.a.iova = UINT64_MAX - 4095;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EOVERFLOW);
	g.a.iova = GIB + 512;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EINVAL);
	g.a.iova = GIB + 4096; /* not aligned to the 2M page size asked */
	g.a.page_size = 2 * MIB;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EINVAL);
	g.a.page_size = 0;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EINVAL);
	g.a.iova = GIB + 64 * MIB; /* not mapped in the IOAS */
	g.a.page_size = 4096;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EINVAL);
	g.a.iova = GIB;
	g.a.flags = 2;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EOPNOTSUPP);
	g.a.flags = 0;
	g.a.__reserved = 1;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), -EOPNOTSUPP);
	g.a.__reserved = 0;
	/* bits relative to the base; a bit per IOMMU page, larger pages OR */
	assert_int_equal(pgt__model_dma(m, GIB + 3 * 4096 + 8, 8), 0);
	assert_int_equal(pgt__model_dma(m, GIB + 64 * MIB, 8), -EFAULT); /* an IOMMU fault */
	g.a.iova = GIB + 4096;
	g.a.length = 8192 * 4;
	g.a.page_size = 8192;
	g.a.iova = GIB;
	memset(bits, 0, sizeof(bits));
	g.a.flags = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), 0);
	assert_int_equal(bits[0], 1ULL << 1);
	memset(bits, 0, sizeof(bits));
	g.a.flags = 0;
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), 0); /* NO_CLEAR left it */
	assert_int_equal(bits[0], 1ULL << 1);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(iommufd_call(m, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), 0);
	assert_int_equal(bits[0], 0);
	pgt__model_free(m);
}

static void test_iommufd_backend(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_IOMMUFD, .hwpt_id = 3, .iova_base = GIB,
				       .iova_len = 2 * GIB };
	struct pgt_model *m = pgt__model_new(&mp);
	struct pgt_offload_iommufd_config cfg = { .size = sizeof(cfg), .iommufd = pgt__model_fd(m),
						  .hwpt_id = 3 };
	struct pgt_model_stats st;
	struct pgt_ofl_win win[2];
	uint64_t ps = 0;
	struct rig g;

	(void)state;
	rig_init(&g, &pgt__ofl_iommufd, pgt__model_io(m));
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	rig_world(&g, win);
	assert_int_equal(g.d.ops->attach(&g.d, win, 2), 0);
	assert_int_equal(g.d.ops->start(&g.d, &ps), 0);
	assert_int_equal(ps, 4096);
	assert_int_equal(pgt__model_dma(m, GIB + 100 * 4096, 4096 * 3), 0);
	assert_int_equal(pgt__model_dma(m, 2 * GIB + 8, 8), 0);
	/* before an unmap: read, do not clear */
	assert_int_equal(g.d.ops->harvest(&g.d, GIB, 32 * MIB, PGT_OFFLOAD_HARVEST_UNMAP, sink_of(&g)), 0);
	for (uint64_t p = 100; p < 103; p++)
		model_pfn(&g.w, PFN(GIB) + p);
	check_world(&g.w);
	pgt__model_stats(m, &st);
	assert_int_equal(st.no_clear_reads, 1);
	clear_world(&g.w);
	/* an ordinary harvest sees those again, and the other window */
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	for (uint64_t p = 100; p < 103; p++)
		model_pfn(&g.w, PFN(GIB) + p);
	model_pfn(&g.w, PFN(2 * GIB));
	check_world(&g.w);
	clear_world(&g.w);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	check_world(&g.w);
	/* a failing read: all dirty */
	pgt__model_fail(m, -ENOMEM, 1);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), -ENOMEM);
	model_all(&g.w);
	check_world(&g.w);
	g.d.ops->close(&g.d);
	pgt__model_stats(m, &st);
	assert_false(st.tracking);
	world_fini(&g.w);
	pgt__model_free(m);

	/* a HW page table allocated without dirty tracking */
	mp.hwpt_no_dirty = true;
	m = pgt__model_new(&mp);
	rig_init(&g, &pgt__ofl_iommufd, pgt__model_io(m));
	cfg.iommufd = pgt__model_fd(m);
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	rig_world(&g, win);
	assert_int_equal(g.d.ops->attach(&g.d, win, 2), 0);
	assert_int_equal(g.d.ops->start(&g.d, &ps), -EOPNOTSUPP);
	g.d.ops->close(&g.d);
	world_fini(&g.w);
	pgt__model_free(m);
}

/* ---- CHMU ---- */

static void test_chmu(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_CHMU, .chmu_instances = 2, .chmu_list = 8,
				       .chmu_width = 16, .chmu_capacity = 64 * MIB };
	struct pgt_model *m = pgt__model_new(&mp);
	uint64_t rlen;
	volatile uint8_t *regs = pgt__model_regs(m, &rlen);
	struct pgt_offload_chmu_config cfg = {
		.size = sizeof(cfg), .instance = 1, .regs = regs, .regs_len = rlen,
		.unit_size = 64 << 10, .threshold = 3,
	};
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_model_stats st;
	uint32_t hot[16384];
	struct pgt_ofl_win win[1];
	uint64_t ps = 0;
	struct rig g;

	(void)state;
	rig_init(&g, &pgt__ofl_chmu, pgt__model_io(m));
	cfg.instance = 2;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	g.d.ops->close(&g.d);
	cfg.instance = 1;
	cfg.unit_size = 3 << 10;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	g.d.ops->close(&g.d);
	cfg.unit_size = 64 << 10;
	cfg.regs_len = 64;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	g.d.ops->close(&g.d);
	cfg.regs_len = rlen;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	/* device addresses [0, 64 MiB) are the region's 16384 pages */
	memset(&g.w, 0, sizeof(g.w));
	memset(hot, 0, sizeof(hot));
	world_target(&g.w, 16384, 12);
	g.w.t[0].hot = hot;
	world_seg(&g.w, 0, 64 * MIB, 0, 0, 0, 0);
	world_init(&g.w);
	win[0] = (struct pgt_ofl_win){ .iova = 0, .len = 64 * MIB };
	assert_int_equal(g.d.ops->attach(&g.d, win, 1), 0);
	assert_int_equal(g.d.ops->start(&g.d, &ps), 0);
	assert_int_equal(ps, 64 << 10);
	pgt__model_stats(m, &st);
	assert_int_equal(st.chmu_enabled, 1);
	/* unit 5 hot (4 accesses), unit 9 lukewarm (2: below the threshold) */
	for (int i = 0; i < 4; i++)
		assert_int_equal(pgt__model_dma(m, 5 * (64 << 10) + 64 * (uint64_t)i, 64), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pgt__model_dma(m, 9 * (64 << 10), 64), 0);
	assert_int_equal(pgt__model_chmu_epoch(m), 1);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	assert_int_equal(g.st.hot_units, 1);
	assert_int_equal(g.st.hot_count, 4);
	for (uint64_t p = 0; p < 16; p++) {
		model_pfn(&g.w, 5 * 16 + p);
		assert_int_equal(hot[5 * 16 + p], 4);
	}
	check_world(&g.w);
	clear_world(&g.w);
	/* consumed: nothing the second time */
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	assert_int_equal(g.st.hot_units, 1);
	/* more hot units than the list holds (7 of 8 slots usable) */
	for (uint64_t u = 0; u < 10; u++)
		for (int i = 0; i < 3; i++)
			pgt__model_dma(m, (100 + u) * (64 << 10), 8);
	assert_int_equal(pgt__model_chmu_epoch(m), 7);
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	assert_int_equal(g.st.hot_units, 8);
	g.d.ops->info(&g.d, &info);
	assert_int_equal(info.lost, 1);
	/* a device that reports a tail past its list: refused, nothing read past it */
	{
		uint64_t ilen = pgt_chmu_field(*(volatile uint64_t *)(regs + PGT_CHMU_COMMON_CAP2), 0, 15);
		volatile uint64_t *ht = (volatile uint64_t *)(regs + PGT_CHMU_INST0 + ilen + PGT_CHMU_HEADTAIL);

		*ht = (uint64_t)40000 << 16;
		assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), -EIO);
		assert_int_equal(g.st.hot_units, 8);
	}
	g.d.ops->close(&g.d);
	pgt__model_stats(m, &st);
	assert_false(st.tracking);
	world_fini(&g.w);
	pgt__model_free(m);
}

/* ---- KVM ---- */

static void test_kvm(void **state)
{
	/* KVM's smallest ring: a page of entries */
	struct pgt_model_params mp = { .kind = PGT_MODEL_KVM, .kvm_vcpus = 2, .kvm_entries = 256 };
	struct pgt_model *m = pgt__model_new(&mp);
	int vcpus[2] = { pgt__model_fd(m) + 1, pgt__model_fd(m) + 2 };
	struct pgt_offload_kvm_config cfg = {
		.size = sizeof(cfg), .vm_fd = pgt__model_fd(m), .vcpu_fds = vcpus, .nvcpus = 2,
		.ring_bytes = 256 * 16,
	};
	struct pgt_ofl_ring_desc desc[2];
	struct pgt_ofl_ring ring[2];
	struct pgt_model_stats st;
	struct pgt_ofl_win win[2];
	uint64_t ps = 0;
	struct rig g;
	int k = 0;

	(void)state;
	rig_init(&g, &pgt__ofl_kvm, pgt__model_io(m));
	cfg.ring_bytes = 1000;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	g.d.ops->close(&g.d);
	cfg.ring_bytes = 256 * 16;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	rig_world(&g, win);
	assert_int_equal(g.d.ops->attach(&g.d, win, 2), 0);
	assert_int_equal(g.d.ops->start(&g.d, &ps), 0);
	assert_int_equal(g.d.ops->rings(&g.d, desc, 2), 2);
	for (int i = 0; i < 2; i++) {
		assert_null(desc[i].ctl);
		assert_int_equal(pgt__ofl_ring_kvm(&ring[i], desc[i].recs, desc[i].entries), 0);
	}
	/* vCPU 0 fills its ring: the 257th write finds it full */
	for (uint64_t i = 0; i < 256; i++)
		assert_int_equal(pgt__model_kvm_push(m, 0, 0, i), 0);
	assert_int_equal(pgt__model_kvm_push(m, 0, 0, 256), -ENOSPC);
	assert_int_equal(pgt__model_kvm_push(m, 1, 1, 7), 0);
	for (int i = 0; i < 2; i++)
		k += (int)pgt__ofl_ring_consume(&ring[i], &g.w.m, &g.st);
	assert_int_equal(k, 257);
	for (uint64_t i = 0; i < 256; i++)
		model_slot(&g.w, 0, i);
	model_slot(&g.w, 1, 7);
	check_world(&g.w);
	/* harvested but not reset: still full */
	assert_int_equal(pgt__model_kvm_push(m, 0, 0, 256), -ENOSPC);
	/* the backend's harvest resets them (KVM_RESET_DIRTY_RINGS) */
	assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0);
	pgt__model_stats(m, &st);
	assert_int_equal(st.resets, 257);
	assert_int_equal(pgt__model_kvm_push(m, 0, 0, 256), 0);
	assert_int_equal(pgt__ofl_ring_consume(&ring[0], &g.w.m, &g.st), 1);
	g.d.ops->close(&g.d);
	world_fini(&g.w);

	/* no /dev/kvm: KVM's rings are refused, caller memory is fine */
	mp.absent = true;
	pgt__model_free(m);
	m = pgt__model_new(&mp);
	rig_init(&g, &pgt__ofl_kvm, pgt__model_io(m));
	cfg.vm_fd = pgt__model_fd(m);
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -ENODEV);
	g.d.ops->close(&g.d);
	{
		struct pgt_offload_rec *mem = aligned_alloc(64, 16 * 16);
		struct pgt_offload_rec *const rings[1] = { mem };
		struct pgt_offload_kvm_config cm = { .size = sizeof(cm), .nrings = 1, .rings = rings,
						     .entries = 16, .vm_fd = -1 };

		assert_int_equal(g.d.ops->open(&g.d, &cm), 0);
		assert_int_equal(g.d.ops->rings(&g.d, desc, 2), 1);
		assert_ptr_equal(desc[0].recs, mem);
		assert_int_equal(g.d.ops->harvest(&g.d, 0, 0, 0, sink_of(&g)), 0); /* no reset to do */
		g.d.ops->close(&g.d);
		cm.entries = 12;
		assert_int_equal(g.d.ops->open(&g.d, &cm), -EINVAL);
		g.d.ops->close(&g.d);
		free(mem);
	}
	pgt__model_free(m);
}

/* ---- probes: each refuses cleanly where its hardware is not ---- */

static void test_probe_absent(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_VFIO, .absent = true };
	struct pgt_model *m = pgt__model_new(&mp);
	char why[128];

	(void)state;
	for (unsigned i = 0; pgt__ofl_backends[i]; i++) {
		const struct pgt_ofl_ops *ops = pgt__ofl_backends[i];
		struct pgt_offload_caps caps = { .size = sizeof(caps) };
		int ret = ops->probe(pgt__model_io(m), &caps, why, sizeof(why));
		bool hw = caps.flags & PGT_OFFLOAD_CAP_HW;

		pgt_test_note("%-10s %3d %s", ops->name, ret, why);
		assert_true(caps.shape >= PGT_OFFLOAD_RING && caps.shape <= PGT_OFFLOAD_HOTLIST);
		assert_true(caps.granularity && (caps.page_sizes & caps.granularity));
		assert_int_equal(ret, hw ? -ENODEV : 0);
		assert_true(strlen(why) > 10);
		assert_ptr_equal(pgt__ofl_backend(ops->name), ops);
	}
	assert_null(pgt__ofl_backend("nope"));
	pgt__model_free(m);
}

/* ---- the sim device at the hal level ---- */

struct written {
	pthread_mutex_t lock;
	uint64_t gpa[4096];
	unsigned n;
	unsigned ticks;
};

static uint64_t on_write(void *arg, uint64_t gpa, uint32_t len)
{
	struct written *w = arg;

	(void)len;
	pthread_mutex_lock(&w->lock);
	if (w->n < 4096)
		w->gpa[w->n++] = gpa;
	pthread_mutex_unlock(&w->lock);
	return 0x5a5a5a5a5a5a5a5aULL;
}

static void on_tick(void *arg)
{
	struct written *w = arg;

	__atomic_fetch_add(&w->ticks, 1, __ATOMIC_RELAXED);
}

static void test_sim_device(void **state)
{
	struct written wr = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct pgt_offload_sim_config cfg = {
		.size = sizeof(cfg), .rate = 0, .write_bytes = 64, .ring_entries = 4096, .batch = 16,
		.cpu = -1, .on_write = on_write, .on_tick = on_tick, .arg = &wr,
	};
	uint8_t *mem = aligned_alloc(4096, 64 * MIB);
	struct pgt_ofl_ring_desc desc;
	struct pgt_ofl_ring ring;
	struct pgt_ofl_win win[2];
	uint64_t ps = 0, got = 0;
	struct rig g;

	(void)state;
	memset(mem, 0, 64 * MIB);
	rig_init(&g, &pgt__ofl_sim, &pgt__ofl_io_real);
	cfg.write_bytes = 12;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	cfg.write_bytes = 64;
	cfg.ring_entries = 1000;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), -EINVAL);
	cfg.ring_entries = 4096;
	assert_int_equal(g.d.ops->open(&g.d, &cfg), 0);
	rig_world(&g, win);
	win[0].dma = mem;
	win[1].dma = mem + 32 * MIB;
	assert_int_equal(g.d.ops->attach(&g.d, win, 2), 0);
	assert_int_equal(g.d.ops->start(&g.d, &ps), 0);
	assert_int_equal(g.d.ops->rings(&g.d, &desc, 1), 1);
	assert_non_null(desc.ctl);
	assert_int_equal(desc.iova, 0x1000);
	assert_int_equal(pgt__ofl_ring_index(&ring, desc.ctl, desc.entries), 0);
	/* let it run until it wrote a few hundred times, consuming as we go */
	while (__atomic_load_n(&wr.n, __ATOMIC_RELAXED) < 2000)
		got += pgt__ofl_ring_consume(&ring, &g.w.m, &g.st);
	assert_int_equal(g.d.ops->stop(&g.d), 0);
	got += pgt__ofl_ring_consume(&ring, &g.w.m, &g.st);
	assert_true(got > 0);
	assert_true(wr.ticks > 0);
	assert_int_equal(g.st.torn + g.st.bad_index + g.st.rejected, 0);
	/* every write the device announced is in the log, and is in memory */
	for (unsigned i = 0; i < wr.n && i < 4096; i++) {
		uint64_t gpa = wr.gpa[i], p = gpa >> 12;

		assert_true(g.w.t[0].bits[p / 64] >> (p % 64) & 1 || g.st.all);
		assert_int_equal(*(uint64_t *)(mem + gpa), 0x5a5a5a5a5a5a5a5aULL);
	}
	assert_int_equal(atomic_load(&g.d.dma_writes) >= wr.n, 1);
	g.d.ops->close(&g.d);
	assert_null(g.mem); /* the ring went back */
	world_fini(&g.w);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vfio_uapi_rules),
		cmocka_unit_test(test_vfio_backend),
		cmocka_unit_test(test_iommufd_uapi_rules),
		cmocka_unit_test(test_iommufd_backend),
		cmocka_unit_test(test_chmu),
		cmocka_unit_test(test_kvm),
		cmocka_unit_test(test_probe_absent),
		cmocka_unit_test(test_sim_device),
	};

	return cmocka_run_group_tests_name("offload_models", tests, NULL, NULL);
}
