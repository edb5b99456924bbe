/* SPDX-License-Identifier: MIT */
/*
 * Offload devices on real regions: what each backend logs reaches every
 * dirty view (through pgt_dirty_harvest(), which drains the devices first),
 * the CPU tracker alone does not see DMA through a second mapping, device
 * failures make everything dirty, hotness reaches the age view, regions in
 * use by a device cannot be destroyed, bad arguments change nothing, and
 * hardware this host lacks is refused with -ENODEV. VFIO, IOMMUFD and the
 * CHMU are driven through their models (hal/offload/model.h).
 */
#include "tests/common/testutil.h"
#include "tests/common/dma_writes.h"
#include "pgt_config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/offload/model.h"
#include "hal/offload/offload.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)
#define LEN (16 * MIB)
#define GPA0 (4 * GIB)

static struct pgt_probe probe = { .size = sizeof(probe) };

struct fx {
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	pgt_dirty_view *v;
	uint64_t *bm;
};

static const char *region_skip(int backing, uint64_t len)
{
	if (!probe.pagemap_scan && probe.best_dirty_method == PGT_DIRTY_NONE)
		return "no dirty tracker works here";
	if (backing == PGT_BACKING_HUGETLB && (uint64_t)pgt_test_free_hugepages() < len / (2 * MIB))
		return "not enough free 2 MiB hugepages";
	return NULL;
}

static void fx_open(struct fx *f, int backing, uint64_t len, uint64_t gpa)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = len, .gpa = gpa,
		.track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "ofl",
	};

	memset(f, 0, sizeof(*f));
	assert_int_equal(pgt_engine_open(NULL, &f->eng), 0);
	assert_int_equal(pgt_region_create(f->eng, &rc, &f->r), 0);
	f->info.size = sizeof(f->info);
	assert_int_equal(pgt_region_info(f->r, &f->info), 0);
	assert_int_equal(pgt_dirty_view_open(f->r, &f->v), 0);
	f->bm = calloc(f->info.npages / 64 + 1, 8);
	assert_non_null(f->bm);
}

/*
 * A region of @backing (LEN at GPA0) and a device model behind it, or a
 * skip where the region cannot be made: checked before anything is
 * allocated, as a skip is a longjmp.
 */
static struct pgt_model *model_fx(struct fx *f, int backing, const struct pgt_model_params *mp)
{
	const char *why = region_skip(backing, LEN);
	struct pgt_model *m;

	if (why)
		pgt_skip("%s", why);
	m = pgt__model_new(mp);
	fx_open(f, backing, LEN, GPA0);
	return m;
}

static void fx_close(struct fx *f)
{
	pgt_dirty_view_close(f->v);
	pgt_engine_close(f->eng);
	free(f->bm);
}

static int64_t harvest(struct fx *f, pgt_dirty_view *v)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)f->bm,
				 .bitmap_words = f->info.npages / 64 + 1 };
	int64_t n = pgt_dirty_harvest(v ? v : f->v, &h);

	assert_true(n >= 0);
	return n;
}

static bool page_set(const struct fx *f, uint64_t gpa)
{
	uint64_t p = (gpa - f->info.gpa) / f->info.page_size;

	return f->bm[p / 64] >> (p % 64) & 1;
}

static struct pgt_offload_range whole(const struct fx *f, uint64_t iova)
{
	return (struct pgt_offload_range){ .iova = iova, .length = f->info.length, .gpa = f->info.gpa };
}

/*
 * A vhost-user log device (@oc) on the whole region but its last @cut bytes,
 * started: the log as the back-end maps it (its fd and size in @info).
 */
static uint8_t *vhost_on(struct fx *f, const struct pgt_offload_config *oc, uint64_t cut,
			 pgt_offload **o, struct pgt_offload_info *info)
{
	struct pgt_offload_range rg = whole(f, GPA0);
	uint8_t *log;

	assert_int_equal(pgt_offload_open(f->eng, oc, o), 0);
	rg.length -= cut;
	assert_int_equal(pgt_offload_attach(*o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(*o, 0), 0);
	assert_int_equal(pgt_offload_info(*o, info), 0);
	log = mmap(NULL, info->log_size, PROT_READ | PROT_WRITE, MAP_SHARED, info->log_fd, 0);
	assert_true(log != MAP_FAILED);
	return log;
}

static pgt_offload *open_model(struct fx *f, const char *backend, const void *bcfg,
			       struct pgt_model *m)
{
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = backend,
					 .backend_config = bcfg };
	pgt_offload *o;

	assert_int_equal(pgt__offload_open_io(f->eng, &oc, pgt__model_io(m), &o), 0);
	return o;
}

/* The VFIO model's device over the whole region at IOVA 64 GiB, started. */
static pgt_offload *vfio_on(struct fx *f, struct pgt_model *m,
			    const struct pgt_offload_vfio_config *vc)
{
	pgt_offload *o = open_model(f, "vfio", vc, m);
	struct pgt_offload_range rg = whole(f, 64 * GIB);

	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 4096), 0);
	return o;
}

/* ---------------------------------------------------------------- */

static void test_backends(void **state)
{
	struct pgt_offload_backend_info bi[8];
	int n;

	(void)state;
	n = pgt_offload_backends(NULL, 0);
	assert_int_equal(n, 7);
	for (int i = 0; i < 8; i++)
		bi[i].size = sizeof(bi[i]);
	assert_int_equal(pgt_offload_backends(bi, 8), 7);
	for (int i = 0; i < n; i++) {
		pgt_test_note("%-10s %4d %s", bi[i].name, bi[i].status, bi[i].reason);
		assert_int_equal(bi[i].caps.size, sizeof(bi[i].caps));
		if (!strcmp(bi[i].name, "vfio"))
			assert_int_equal(bi[i].status, access("/dev/vfio/vfio", F_OK) &&
						       access("/dev/vfio/devices", F_OK) ? -ENODEV : 0);
		if (!strcmp(bi[i].name, "sim") || !strcmp(bi[i].name, "vhost-log"))
			assert_int_equal(bi[i].status, 0);
	}
	bi[0].size = 8;
	assert_int_equal(pgt_offload_backends(bi, 1), -EINVAL);
	assert_int_equal(pgt_offload_backends(NULL, 1), -EINVAL);
}

/* Hardware this host does not have is refused; the test cannot show it
 * where the hardware exists. */
static void test_refused_without_hardware(void **state)
{
	struct pgt_offload_vfio_config vc = { .size = sizeof(vc), .device_fd = 0 };
	struct pgt_offload_iommufd_config ic = { .size = sizeof(ic), .iommufd = 0 };
	struct pgt_offload_chmu_config cc = { .size = sizeof(cc) };
	int vcpu = 0;
	struct pgt_offload_kvm_config kc = { .size = sizeof(kc), .vm_fd = 0, .vcpu_fds = &vcpu,
					     .nvcpus = 1, .ring_bytes = 4096 };
	struct {
		const char *name, *node;
		const void *cfg;
	} cases[] = {
		{ "vfio", "/dev/vfio/vfio", &vc },
		{ "iommufd", "/dev/iommu", &ic },
		{ "chmu", "/sys/bus/cxl/devices", &cc },
		{ "kvm-ring", "/dev/kvm", &kc },
	};
	unsigned tried = 0;
	pgt_engine *e;

	(void)state;
	cc.regs = &vcpu;
	cc.regs_len = 4096;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pgt_offload_config oc = { .size = sizeof(oc), .backend = cases[i].name,
						 .backend_config = cases[i].cfg };
		pgt_offload *o = (pgt_offload *)&oc;

		if (!access(cases[i].node, F_OK)) {
			pgt_test_note("%s: %s exists here, refusal not testable", cases[i].name, cases[i].node);
			continue;
		}
		assert_int_equal(pgt_offload_open(e, &oc, &o), -ENODEV);
		assert_null(o);
		tried++;
	}
	pgt_engine_close(e);
	if (!tried)
		pgt_skip("every offload device node exists on this host");
}

static void test_bad_arguments(void **state)
{
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "sim" };
	struct pgt_offload_range rg[3];
	struct pgt_offload_harvest h = { .size = sizeof(h) };
	struct pgt_offload_info info = { .size = sizeof(info) };
	pgt_offload *o;
	struct fx f;
	const char *why = region_skip(PGT_BACKING_MEMFD, LEN);

	(void)state;
	if (why)
		pgt_skip("%s", why);
	fx_open(&f, PGT_BACKING_MEMFD, LEN, GPA0);
	/* open */
	assert_int_equal(pgt_offload_open(NULL, &oc, &o), -EINVAL);
	assert_int_equal(pgt_offload_open(f.eng, &oc, NULL), -EINVAL);
	oc.backend = "nope";
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -ENOENT);
	oc.backend = NULL;
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -EINVAL);
	oc.backend = "sim";
	oc.flags = 1;
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -EINVAL);
	oc.flags = 0;
	oc.size = 8;
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -EINVAL);
	oc.size = sizeof(oc);
	oc.backend = "kvm-ring"; /* needs a config */
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -EINVAL);
	oc.backend = "sim";
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
	/* start and harvest before attach */
	assert_int_equal(pgt_offload_start(o, 0), -ENOENT);
	assert_int_equal(pgt_offload_harvest(o, NULL), -ENOENT);
	assert_int_equal(pgt_offload_ingest(o, NULL, 0, NULL), -ENOENT);
	/* attach: alignment, emptiness, overlap, slots, gaps */
	rg[0] = whole(&f, 0);
	rg[0].iova = 100;
	assert_int_equal(pgt_offload_attach(o, rg, 1), -EINVAL);
	rg[0] = whole(&f, 0);
	rg[0].length = 0;
	assert_int_equal(pgt_offload_attach(o, rg, 1), -EINVAL);
	rg[0] = whole(&f, 0);
	rg[0].flags = 1;
	assert_int_equal(pgt_offload_attach(o, rg, 1), -EINVAL);
	rg[0] = (struct pgt_offload_range){ .iova = 0, .length = 8 * MIB, .gpa = GPA0, .slot = 1 };
	rg[1] = (struct pgt_offload_range){ .iova = 4 * MIB, .length = 4 * MIB, .gpa = GPA0 + 8 * MIB, .slot = 2 };
	assert_int_equal(pgt_offload_attach(o, rg, 2), -EINVAL); /* IOVA overlap */
	rg[1].iova = 8 * MIB;
	rg[1].slot = 1;
	assert_int_equal(pgt_offload_attach(o, rg, 2), -EINVAL); /* slot twice */
	rg[1].slot = 2;
	rg[1].gpa = GPA0 + LEN - 2 * MIB; /* runs past the region: not guest memory */
	assert_int_equal(pgt_offload_attach(o, rg, 2), -EINVAL);
	rg[0].iova = UINT64_MAX & ~4095ULL;
	rg[1].gpa = GPA0 + 8 * MIB;
	assert_int_equal(pgt_offload_attach(o, rg, 2), -EINVAL); /* wraps */
	rg[0].iova = 0;
	assert_int_equal(atomic_load(&((struct pgt_region *)f.r)->offload_refs), 0);
	assert_int_equal(pgt_offload_attach(o, rg, 2), 0);
	assert_int_equal(pgt_region_destroy(f.r), -EBUSY);
	assert_int_equal(pgt_offload_start(o, 8192), -EINVAL); /* the sim logs 4 KiB */
	assert_int_equal(pgt_offload_start(o, 3000), -EINVAL);
	h.flags = 2;
	assert_int_equal(pgt_offload_harvest(o, &h), -EINVAL);
	h.flags = 0;
	h.size = 4;
	assert_int_equal(pgt_offload_harvest(o, &h), -EINVAL);
	info.size = 4;
	assert_int_equal(pgt_offload_info(o, &info), -EINVAL);
	info.size = sizeof(info);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_string_equal(info.backend, "sim");
	assert_int_equal(info.nranges, 2);
	assert_int_equal(info.started, 0);
	assert_int_equal(pgt_offload_stop(o), -ENOENT);
	assert_int_equal(pgt_offload_detach(o), 0);
	assert_int_equal(atomic_load(&((struct pgt_region *)f.r)->offload_refs), 0);
	/* a region without dirty tracking cannot take a dirty-logging device */
	{
		struct pgt_region_config rc = {
			.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MIB,
			.gpa = 8 * GIB, .dirty_method = PGT_DIRTY_NONE, .track = 0, .numa_node = -1,
		};
		pgt_region *r2;

		assert_int_equal(pgt_region_create(f.eng, &rc, &r2), 0);
		rg[0] = (struct pgt_offload_range){ .iova = 0, .length = 4 * MIB, .gpa = 8 * GIB };
		assert_int_equal(pgt_offload_attach(o, rg, 1), -EINVAL);
		assert_int_equal(pgt_region_destroy(r2), 0);
	}
	/* left open: the engine closes it */
	fx_close(&f);
}

/* The sim device on one backing: every DMA page in every view's harvest;
 * without the device's log the CPU tracker misses them (second mapping). */
static void sim_on(int backing)
{
	struct dma_writes w;
	struct pgt_offload_sim_config sc = {
		.size = sizeof(sc), .rate = 0, .write_bytes = 64, .batch = 32, .cpu = -1,
		.on_write = dma_write, .on_tick = dma_tick, .arg = &w,
	};
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "sim", .backend_config = &sc };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_range rg;
	pgt_dirty_view *v2;
	pgt_offload *o;
	struct fx f;
	int64_t n;
	const char *why = region_skip(backing, LEN);

	if (why)
		pgt_skip("%s", why);
	dma_writes_init(&w, 1 << 18, 3000, 1);
	fx_open(&f, backing, LEN, GPA0);
	assert_int_equal(pgt_dirty_view_open(f.r, &v2), 0);
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
	rg = whole(&f, 16 * GIB);
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	dma_wait(&w);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_int_equal(info.page_size, 4096);
	assert_non_null(info.ring);
	assert_int_equal(info.ring_entries, 65536);
	assert_true(info.dma_writes >= 3000);
	/* the memory holds what the device wrote: at each write's start the
	 * value of that write or of a later one of 64 bytes covering it */
	for (size_t i = 0; i < w.n; i++) {
		uint64_t v = *(volatile uint64_t *)((uint8_t *)f.info.addr + (w.gpa[i] - GPA0));

		assert_true(v & 1);
		assert_true((v & ~1ULL) <= w.gpa[i] && w.gpa[i] < (v & ~1ULL) + 64);
	}
	/* both views, each once */
	for (int k = 0; k < 2; k++) {
		n = harvest(&f, k ? v2 : f.v);
		assert_true(n > 0);
		for (size_t i = 0; i < w.n; i++)
			if (!page_set(&f, w.gpa[i]))
				fail_msg("view %d: DMA page gpa %#llx not reported", k,
					 (unsigned long long)w.gpa[i]);
	}
	assert_int_equal(harvest(&f, NULL), 0);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_true(info.records > 0);
	assert_int_equal(info.rejected + info.lost, 0);
	assert_true(info.harvests >= 1);

	/* more writes, then a detach: it harvests the log before dropping
	 * the map, so every page still reaches the view */
	{
		size_t i0 = w.n, seen = 0;

		dma_go(&w, 3000, false);
		dma_wait(&w);
		dma_go(&w, 0, true);                   /* let it go ... */
		assert_int_equal(pgt_offload_detach(o), 0); /* ... stop it, take its log */
		n = harvest(&f, NULL);
		for (size_t i = i0; i < w.n; i++)
			seen += page_set(&f, w.gpa[i]);
		pgt_test_note("%s: %zu more DMA writes, then detached: %zu of their pages "
			      "reported (%lld pages in all)", pgt_backing_name(backing), w.n - i0,
			      seen, (long long)n);
		assert_int_equal(seen, w.n - i0);
	}
	/* without a device's log, writes through a second mapping (as a
	 * device's DMA is) are invisible to the CPU tracker */
	if (f.info.fd >= 0) {
		uint8_t *m2 = mmap(NULL, f.info.length, PROT_READ | PROT_WRITE, MAP_SHARED,
				   f.info.fd, 0);

		assert_true(m2 != MAP_FAILED);
		m2[1 * f.info.page_size + 8] ^= 0x5a;
		m2[5 * f.info.page_size + 8] ^= 0x5a;
		munmap(m2, f.info.length);
		n = harvest(&f, NULL);
		assert_false(page_set(&f, GPA0 + 1 * f.info.page_size));
		assert_false(page_set(&f, GPA0 + 5 * f.info.page_size));
		pgt_test_note("%s: two writes through a second mapping: %lld pages reported",
			      pgt_backing_name(backing), (long long)n);
	}
	pgt_dirty_view_close(v2);
	pgt_offload_close(o);
	assert_int_equal(pgt_region_destroy(f.r), -EBUSY); /* the view is still open */
	fx_close(&f);
	dma_writes_fini(&w);
}

static void test_sim_memfd(void **state)
{
	(void)state;
	sim_on(PGT_BACKING_MEMFD);
}

static void test_sim_hugetlb(void **state)
{
	(void)state;
	sim_on(PGT_BACKING_HUGETLB);
}

static void test_sim_anon(void **state)
{
	(void)state;
	sim_on(PGT_BACKING_ANON);
}

/* KVM-layout rings in our memory; two regions, KVM slot numbering. */
static void test_kvm_ring_memory(void **state)
{
	struct pgt_offload_rec *ring, *rings[1];
	struct pgt_offload_kvm_config kc = { .size = sizeof(kc), .nrings = 1, .rings = rings,
					     .entries = 256, .vm_fd = -1 };
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "kvm-ring",
					 .backend_config = &kc };
	struct pgt_region_config rc = { .size = sizeof(rc), .backing = PGT_BACKING_ANON,
					.length = 8 * MIB, .gpa = 0, .track = PGT_TRACK_DIRTY,
					.numa_node = -1 };
	struct pgt_offload_range rg[2];
	struct pgt_offload_harvest h = { .size = sizeof(h) };
	uint64_t pml[4] = { GPA0 + 0x5000, GPA0 + 0x6000, GPA0 + 0x7123, 12 * GIB };
	struct pgt_offload_rec recs[4];
	pgt_region *low;
	pgt_offload *o;
	struct fx f;
	const char *why = region_skip(PGT_BACKING_ANON, LEN);

	(void)state;
	if (why)   /* before any allocation: a skip is a longjmp */
		pgt_skip("%s", why);
	rings[0] = ring = aligned_alloc(4096, 256 * 16);
	assert_non_null(ring);
	memset(ring, 0, 256 * 16);
	fx_open(&f, PGT_BACKING_ANON, LEN, GPA0);
	assert_int_equal(pgt_region_create(f.eng, &rc, &low), 0);
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
	/* memslot 1 of address space 0 is the low region, memslot 2 of
	 * address space 1 the other one; KVM's IOVA is the GPA */
	rg[0] = (struct pgt_offload_range){ .iova = 0, .length = 8 * MIB, .gpa = 0, .slot = 1 };
	rg[1] = (struct pgt_offload_range){ .iova = GPA0, .length = LEN, .gpa = GPA0,
					    .slot = (1u << 16) | 2 };
	assert_int_equal(pgt_offload_attach(o, rg, 2), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	/* as KVM writes them: slot, gfn offset, then flags with release */
	for (int i = 0; i < 3; i++) {
		ring[i].slot = (1u << 16) | 2;
		ring[i].offset = 10 + (uint64_t)i * 100;
		__atomic_store_n(&ring[i].flags, 1, __ATOMIC_RELEASE);
	}
	ring[3].slot = 9; /* a slot nobody attached */
	ring[3].offset = 0;
	__atomic_store_n(&ring[3].flags, 1, __ATOMIC_RELEASE);
	assert_int_equal(harvest(&f, NULL), 3);
	for (int i = 0; i < 3; i++) {
		assert_true(page_set(&f, GPA0 + (10 + (uint64_t)i * 100) * 4096));
		assert_int_equal(ring[i].flags, PGT_OFFLOAD_REC_RESET);
	}
	assert_int_equal(ring[3].flags, PGT_OFFLOAD_REC_RESET);
	/* a PML message through the same path, one address outside the map */
	assert_int_equal(pgt_offload_pml_pack(pml, 4, 7, recs, 4), 2);
	assert_int_equal(pgt_offload_ingest(o, recs, 2, &h), 3);
	assert_int_equal(h.rejected, 1);
	assert_int_equal(harvest(&f, NULL), 3);
	assert_true(page_set(&f, GPA0 + 0x5000) && page_set(&f, GPA0 + 0x7000));
	{
		struct pgt_offload_info info = { .size = sizeof(info) };

		assert_int_equal(pgt_offload_info(o, &info), 0);
		assert_int_equal(info.rejected, 2);
		assert_int_equal(info.records, 6);
	}
	assert_int_equal(pgt_region_destroy(low), -EBUSY);
	pgt_offload_close(o);
	assert_int_equal(pgt_region_destroy(low), 0);
	fx_close(&f);
	free(ring);
}

/* The vhost-user log: set bits as rte_vhost_log_write() does. */
static void test_vhost_log(void **state)
{
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "vhost-log" };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_harvest h = { .size = sizeof(h) };
	struct pgt_offload_range rg;
	uint8_t *log;
	pgt_offload *o;
	struct fx f;
	uint64_t pages[] = { 0, 1, 63, 64, 1000, LEN / 4096 - 2 };
	const char *why = region_skip(PGT_BACKING_MEMFD, LEN);

	(void)state;
	if (why)
		pgt_skip("%s", why);
	fx_open(&f, PGT_BACKING_MEMFD, LEN, GPA0);
	/* the log is in guest-physical addresses; the last page is left out;
	 * the back-end maps the log it was sent and sets bits in it */
	log = vhost_on(&f, &oc, 4096, &o, &info);
	assert_true(info.log_fd >= 0);
	assert_true(info.log_size >= (GPA0 + LEN) / 4096 / 8);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
		uint64_t page = GPA0 / 4096 + pages[i];

		__atomic_fetch_or(&log[page / 8], (uint8_t)(1u << (page % 8)), __ATOMIC_RELAXED);
	}
	/* the page left out: the back-end had no business there */
	__atomic_fetch_or(&log[(GPA0 + LEN) / 4096 / 8 - 1], 0x80, __ATOMIC_RELAXED);
	assert_int_equal(pgt_offload_harvest(o, &h), 6);
	assert_int_equal(h.records, 7);
	assert_int_equal(h.rejected, 1);
	assert_int_equal(harvest(&f, NULL), 6);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		assert_true(page_set(&f, GPA0 + pages[i] * 4096));
	for (uint64_t w = 0; w < info.log_size / 8; w++)
		assert_int_equal(((uint64_t *)log)[w], 0); /* read and cleared */
	assert_int_equal(pgt_offload_harvest(o, NULL), 0);
	munmap(log, info.log_size);
	pgt_offload_close(o);

	/* the whole region: the log's words are the region's bitmap words, so
	 * they go to the view without the private bitmap (the direct path) */
	{
		struct pgt_offload_harvest h2 = { .size = sizeof(h2) };
		uint64_t *w64;

		log = vhost_on(&f, &oc, 0, &o, &info);
		w64 = (uint64_t *)log + GPA0 / 4096 / 64;
		w64[0] = 0x8000000000000001ULL;
		w64[LEN / 4096 / 64 - 1] = 1ULL << 40;
		w64[10] = ~0ULL;
		assert_int_equal(pgt_offload_harvest(o, &h2), 67);
		assert_int_equal(h2.records, 67);
		assert_int_equal(h2.rejected, 0);
		assert_int_equal(harvest(&f, NULL), 67);
		assert_true(page_set(&f, GPA0) && page_set(&f, GPA0 + 63 * 4096));
		assert_true(page_set(&f, GPA0 + (LEN / 4096 - 24) * 4096));
		for (uint64_t p = 640; p < 704; p++)
			assert_true(page_set(&f, GPA0 + p * 4096));
		assert_int_equal(w64[10], 0);
		munmap(log, info.log_size);
		pgt_offload_close(o);
	}

	/* a log the caller made too small for the map */
	{
		struct pgt_offload_vhost_config vc = { .size = sizeof(vc), .fd = f.info.fd,
						       .log_size = 4096 };

		oc.backend_config = &vc;
		rg = whole(&f, GPA0);
		assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
		assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
		assert_int_equal(pgt_offload_start(o, 0), -EINVAL);
		pgt_offload_close(o);
	}
	fx_close(&f);
}

/*
 * The log-swap protocol: a back-end thread sets every page's bit once while
 * harvests swap logs under it (some swaps failing before or after the
 * back-end moved). Every bit must be reported by exactly one harvest: the
 * harvests' page counts add up to the pages written, and the view has them all.
 */
struct swap_be {
	int fd[2];
	uint8_t *map[2];
	uint64_t size;
	_Atomic(uint8_t *) req;
	atomic_uint req_seq, ack_seq;
	atomic_bool written, stop;
	unsigned calls, swaps;
	uint64_t page0, npages;
};

static uint8_t *swap_map(struct swap_be *b, int fd)
{
	for (int i = 0; i < 2; i++) {
		if (b->map[i] && b->fd[i] == fd)
			return b->map[i];
		if (!b->map[i]) {
			b->map[i] = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			assert_true(b->map[i] != MAP_FAILED);
			b->fd[i] = fd;
			return b->map[i];
		}
	}
	fail_msg("a third log fd %d", fd);
	return NULL;
}

/* The front-end's side: SET_LOG_BASE and wait for the ack. Every third
 * call fails, alternately before and after the back-end moved. */
static int swap_cb(void *arg, int fd, uint64_t size)
{
	struct swap_be *b = arg;
	unsigned call = ++b->calls, seq;
	bool fail = !atomic_load(&b->written) && call % 3 == 0;

	assert_int_equal(size, b->size);
	if (fail && call % 2)
		return -EIO;
	atomic_store_explicit(&b->req, swap_map(b, fd), memory_order_relaxed);
	seq = atomic_fetch_add_explicit(&b->req_seq, 1, memory_order_release) + 1;
	while (atomic_load_explicit(&b->ack_seq, memory_order_acquire) != seq)
		sched_yield();
	b->swaps++;
	return fail ? -EIO : 0;
}

/* The back-end: moves when asked (its writes to the old log before the
 * release of its ack), sets each page's bit once, in batches that each
 * wait for a swap so harvests and writes interleave. */
static void *swap_backend(void *arg)
{
	struct swap_be *b = arg;
	uint8_t *log = atomic_load(&b->req);
	unsigned seen = 0, batch_seq = 0;

	for (uint64_t i = 0; !atomic_load(&b->stop);) {
		unsigned seq = atomic_load_explicit(&b->req_seq, memory_order_acquire);

		if (seq != seen) {
			log = atomic_load_explicit(&b->req, memory_order_relaxed);
			seen = seq;
			atomic_store_explicit(&b->ack_seq, seq, memory_order_release);
		}
		if (i == b->npages) {
			atomic_store(&b->written, true);
			sched_yield();
			continue;
		}
		if (i % 512 == 0 && seen == batch_seq && i) {
			sched_yield(); /* wait for a swap before the next batch */
			continue;
		}
		if (i % 512 == 0)
			batch_seq = seen;
		{
			uint64_t page = b->page0 + i++;

			__atomic_fetch_or(&log[page / 8], (uint8_t)(1u << (page % 8)), __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

/* One view: the log is taken in the view's pass; two: ORed into the
 * first, then taken into the second (OR, then zeroed). */
static void swap_run(bool two_views)
{
	struct swap_be b = { .fd = { -1, -1 } };
	struct pgt_offload_vhost_config vc = { .size = sizeof(vc), .fd = -1, .swap = swap_cb,
					       .swap_arg = &b };
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "vhost-log",
					 .backend_config = &vc };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_range rg;
	uint64_t total = 0;
	pgt_dirty_view *v2 = NULL;
	pthread_t th;
	pgt_offload *o;
	struct fx f;
	const char *why = region_skip(PGT_BACKING_MEMFD, LEN);

	if (why)
		pgt_skip("%s", why);
	fx_open(&f, PGT_BACKING_MEMFD, LEN, GPA0);
	if (two_views)
		assert_int_equal(pgt_dirty_view_open(f.r, &v2), 0);
	/* swapping needs both logs pgtrack's */
	vc.fd = f.info.fd;
	vc.log_size = 1 * MIB;
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), -EINVAL);
	vc.fd = -1;
	vc.log_size = 0;
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
	rg = whole(&f, GPA0);
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	b.size = info.log_size;
	b.page0 = GPA0 / 4096;
	b.npages = LEN / 4096;
	atomic_store(&b.req, swap_map(&b, info.log_fd));
	assert_int_equal(pthread_create(&th, NULL, swap_backend, &b), 0);
	while (!atomic_load(&b.written)) {
		int64_t n = pgt_offload_harvest(o, NULL);

		assert_true(n >= 0);
		total += (uint64_t)n;
	}
	/* the last bits: one more swap takes them */
	for (int i = 0; i < 2; i++) {
		int64_t n = pgt_offload_harvest(o, NULL);

		assert_true(n >= 0);
		total += (uint64_t)n;
	}
	pgt_test_note("%u swap calls, %u acknowledged", b.calls, b.swaps);
	assert_true(b.swaps >= LEN / 4096 / 512);
	assert_int_equal(total, LEN / 4096);
	for (int k = 0; k < 1 + two_views; k++) {
		assert_int_equal(harvest(&f, k ? v2 : NULL), LEN / 4096);
		for (uint64_t p = 0; p < LEN / 4096; p++)
			if (!page_set(&f, GPA0 + p * 4096))
				fail_msg("view %d: page %llu written, not reported", k,
					 (unsigned long long)p);
	}
	/* the log in use is the one the back-end was last moved to */
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_ptr_equal(swap_map(&b, info.log_fd), atomic_load(&b.req));
	/* the back-end answers until the device is closed: the view's
	 * harvest above drained the device through the callback too */
	pgt_offload_close(o);
	atomic_store(&b.stop, true);
	pthread_join(th, NULL);
	for (int i = 0; i < 2; i++)
		if (b.map[i])
			munmap(b.map[i], b.size);
	if (v2)
		pgt_dirty_view_close(v2);
	fx_close(&f);
}

static void test_vhost_swap(void **state)
{
	/* a caller built before the swap fields: the exchange path */
	struct pgt_offload_vhost_config old = { .size = offsetof(struct pgt_offload_vhost_config, swap),
						.fd = -1, .swap = swap_cb };
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "vhost-log",
					 .backend_config = &old };
	pgt_engine *e;
	pgt_offload *o;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_offload_open(e, &oc, &o), 0);
	pgt_offload_close(o);
	old.size = offsetof(struct pgt_offload_vhost_config, swap) - 1;
	assert_int_equal(pgt_offload_open(e, &oc, &o), -EINVAL);
	pgt_engine_close(e);
	swap_run(false);
	swap_run(true);
}

/* VFIO through the model: the driver's page size, its errors. */
static void test_vfio_model(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_VFIO, .vfio_page_sizes = 1ULL << 21 };
	struct pgt_offload_vfio_config vc = { .size = sizeof(vc) };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_harvest h = { .size = sizeof(h) };
	struct pgt_model *m;
	pgt_offload *o;
	struct fx f;

	(void)state;
	m = model_fx(&f, PGT_BACKING_MEMFD, &mp);
	vc.device_fd = pgt__model_fd(m);
	o = vfio_on(&f, m, &vc);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_int_equal(info.page_size, 2 * MIB); /* what the driver chose */
	assert_int_equal(pgt__model_dma(m, 64 * GIB + 3 * MIB + 100, 8), 0);
	assert_int_equal(harvest(&f, NULL), 512); /* the whole 2 MiB page */
	for (uint64_t p = 0; p < 512; p++)
		assert_true(page_set(&f, GPA0 + 2 * MIB + p * 4096));
	assert_int_equal(harvest(&f, NULL), 0);
	/* a failed REPORT: every attached page is dirty */
	pgt__model_fail(m, -EIO, 1);
	assert_int_equal(pgt_offload_harvest(o, &h), -EIO);
	assert_int_equal(h.all_dirty, 1);
	assert_int_equal(harvest(&f, NULL), (int64_t)f.info.npages);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_int_equal(info.device_errors, 1);
	assert_int_equal(info.lost, 1);
	/* an error during pgt_dirty_harvest()'s drain does the same */
	pgt__model_fail(m, -EIO, 1);
	assert_int_equal(harvest(&f, NULL), (int64_t)f.info.npages);
	pgt_offload_close(o);
	fx_close(&f);
	pgt__model_free(m);
}

/*
 * Stop, detach and close lose nothing: a VFIO log (unreadable once logging
 * stops), ring records and a vhost log written but not yet harvested reach
 * the view's next harvest.
 */
static void test_final_harvest(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_VFIO, .vfio_page_sizes = 4096 };
	struct pgt_offload_vfio_config vc = { .size = sizeof(vc) };
	struct pgt_offload_rec *ring, *rings[1];
	struct pgt_offload_kvm_config kc = { .size = sizeof(kc), .nrings = 1, .rings = rings,
					     .entries = 64, .vm_fd = -1 };
	struct pgt_offload_config kcfg = { .size = sizeof(kcfg), .backend = "kvm-ring",
					   .backend_config = &kc };
	struct pgt_offload_config hcfg = { .size = sizeof(hcfg), .backend = "vhost-log" };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_offload_range rg;
	struct pgt_model *m;
	pgt_offload *o;
	uint8_t *log;
	struct fx f;

	(void)state;
	m = model_fx(&f, PGT_BACKING_MEMFD, &mp);
	vc.device_fd = pgt__model_fd(m);
	rings[0] = ring = aligned_alloc(4096, 4096);  /* 64 records */
	assert_non_null(ring);
	/* VFIO: a DMA write, then STOP (after which REPORT is refused) */
	o = vfio_on(&f, m, &vc);
	assert_int_equal(pgt__model_dma(m, 64 * GIB + 5 * 4096, 8), 0);
	assert_int_equal(pgt_offload_stop(o), 0);
	assert_int_equal(harvest(&f, NULL), 1);
	assert_true(page_set(&f, GPA0 + 5 * 4096));
	pgt_offload_close(o);
	/* a KVM-layout ring with records published, then detached */
	memset(ring, 0, 64 * 16);
	assert_int_equal(pgt_offload_open(f.eng, &kcfg, &o), 0);
	rg = whole(&f, GPA0);
	rg.slot = 3;
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	for (int i = 0; i < 2; i++) {
		ring[i].slot = 3;
		ring[i].offset = 7 + (uint64_t)i;
		__atomic_store_n(&ring[i].flags, 1, __ATOMIC_RELEASE);
	}
	assert_int_equal(pgt_offload_detach(o), 0);
	assert_int_equal(harvest(&f, NULL), 2);
	assert_true(page_set(&f, GPA0 + 7 * 4096) && page_set(&f, GPA0 + 8 * 4096));
	pgt_offload_close(o);
	/* a vhost-user log with a bit set, then closed */
	log = vhost_on(&f, &hcfg, 0, &o, &info);
	log[(GPA0 / 4096 + 100) / 8] |= (uint8_t)(1u << ((GPA0 / 4096 + 100) % 8));
	munmap(log, info.log_size);
	pgt_offload_close(o);
	assert_int_equal(harvest(&f, NULL), 1);
	assert_true(page_set(&f, GPA0 + 100 * 4096));
	fx_close(&f);
	pgt__model_free(m);
	free(ring);
}

/* IOMMUFD through the model: NO_CLEAR before an unmap. */
static void test_iommufd_model(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_IOMMUFD, .hwpt_id = 5, .iova_base = 0,
				       .iova_len = 1 * GIB };
	struct pgt_offload_iommufd_config ic = { .size = sizeof(ic), .hwpt_id = 5 };
	struct pgt_offload_harvest h = { .size = sizeof(h), .flags = PGT_OFFLOAD_HARVEST_UNMAP,
					 .iova = 0, .length = 2 * MIB };
	struct pgt_offload_range rg;
	struct pgt_model_stats st;
	struct pgt_model *m;
	pgt_offload *o;
	struct fx f;

	(void)state;
	m = model_fx(&f, PGT_BACKING_HUGETLB, &mp);
	ic.iommufd = pgt__model_fd(m);
	o = open_model(&f, "iommufd", &ic, m);
	rg = whole(&f, 0);
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	assert_int_equal(pgt__model_dma(m, 4096, 8), 0);
	assert_int_equal(pgt__model_dma(m, 5 * MIB, 8), 0);
	/* read [0, 2 MiB) before unmapping it: the IOPTE bits stay */
	assert_int_equal(pgt_offload_harvest(o, &h), 1);
	pgt__model_stats(m, &st);
	assert_int_equal(st.no_clear_reads, 1);
	/* the view's harvest reads (and clears) everything, that page again */
	assert_int_equal(harvest(&f, NULL), 2);
	assert_true(page_set(&f, GPA0) && page_set(&f, GPA0 + 4 * MIB));
	assert_int_equal(harvest(&f, NULL), 0);
	pgt_offload_close(o);
	fx_close(&f);
	pgt__model_free(m);
}

/* A CHMU through the model: hotness in the age view, not in the dirty set. */
static void test_chmu_model(void **state)
{
	struct pgt_model_params mp = { .kind = PGT_MODEL_CHMU, .chmu_list = 64, .chmu_width = 16,
				       .chmu_capacity = LEN };
	struct pgt_offload_chmu_config cc = { .size = sizeof(cc), .unit_size = 4096, .threshold = 2 };
	struct pgt_hot_histogram hh = { .size = sizeof(hh) };
	struct pgt_offload_range rg;
	struct pgt_model *m;
	pgt_offload *o;
	struct fx f;

	(void)state;
	m = model_fx(&f, PGT_BACKING_ANON, &mp);
	cc.regs = pgt__model_regs(m, &cc.regs_len);
	o = open_model(&f, "chmu", &cc, m);
	rg = whole(&f, 0); /* device physical address 0 is the region's start */
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	for (int i = 0; i < 3; i++) {
		pgt__model_dma(m, 7 * 4096, 64);
		pgt__model_dma(m, 9 * 4096, 64);
	}
	assert_int_equal(pgt__model_chmu_epoch(m), 2);
	/* no age view yet: hotness has nowhere to go */
	assert_int_equal(pgt_offload_hot_histogram(f.r, &hh), -EINVAL);
	assert_int_equal(pgt_offload_harvest(o, NULL), 0);
	assert_int_equal(pgt_age_start(f.r), 0);
	for (int i = 0; i < 3; i++)
		pgt__model_dma(m, 7 * 4096, 64);
	assert_int_equal(pgt__model_chmu_epoch(m), 1);
	assert_int_equal(pgt_offload_harvest(o, NULL), 1);
	assert_int_equal(pgt_offload_hot_histogram(f.r, &hh), 0);
	assert_int_equal(hh.pages, f.info.npages);
	assert_int_equal(hh.hot[0], 1);
	assert_int_equal(hh.hot[PGT_AGE_BUCKETS - 1], f.info.npages - 1);
	assert_int_equal(hh.units, 1);
	assert_int_equal(hh.accesses, 3);
	/* the epoch closes, and one more: it is then one epoch old */
	assert_true(pgt_age_sample(f.r) >= 0);
	assert_int_equal(pgt_offload_hot_histogram(f.r, &hh), 0);
	assert_int_equal(hh.hot[0], 1);
	assert_true(pgt_age_sample(f.r) >= 0);
	assert_int_equal(pgt_offload_hot_histogram(f.r, &hh), 0);
	assert_int_equal(hh.hot[1], 1);
	/* hotness is not dirtiness */
	assert_int_equal(harvest(&f, NULL), 0);
	assert_int_equal(pgt_age_stop(f.r), 0);
	pgt_offload_close(o);
	fx_close(&f);
	pgt__model_free(m);
}

/* One device range across two regions that touch in guest-physical space. */
static void test_range_across_regions(void **state)
{
	struct pgt_region_config rc = { .size = sizeof(rc), .backing = PGT_BACKING_MEMFD,
					.length = LEN, .gpa = GPA0 + LEN, .track = PGT_TRACK_DIRTY,
					.numa_node = -1 };
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "ring" };
	struct pgt_offload_range rg = { .iova = 0, .length = 2 * LEN, .gpa = GPA0, .slot = 4 };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct pgt_ofl_prod prod;
	struct pgt_offload_rec r;
	pgt_dirty_view *v2;
	pgt_region *hi;
	pgt_offload *o;
	uint64_t bm2[LEN / 4096 / 64 + 1];
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = (unsigned long *)bm2,
				 .bitmap_words = LEN / 4096 / 64 + 1 };
	struct fx f;
	const char *why = region_skip(PGT_BACKING_MEMFD, 2 * LEN);

	(void)state;
	if (why)
		pgt_skip("%s", why);
	fx_open(&f, PGT_BACKING_MEMFD, LEN, GPA0);
	assert_int_equal(pgt_region_create(f.eng, &rc, &hi), 0);
	assert_int_equal(pgt_dirty_view_open(hi, &v2), 0);
	assert_int_equal(pgt_offload_open(f.eng, &oc, &o), 0);
	assert_int_equal(pgt_offload_attach(o, &rg, 1), 0);
	assert_int_equal(pgt_offload_start(o, 0), 0);
	assert_int_equal(pgt_offload_info(o, &info), 0);
	assert_non_null(info.ring);
	/* an external producer (an FPGA) writes one run across the boundary */
	pgt__ofl_prod_init(&prod, info.ring, info.ring_entries);
	r = (struct pgt_offload_rec){ PGT_OFFLOAD_REC_FLAGS(3, 8, false), 4, LEN / 4096 - 4 };
	assert_int_equal(pgt__ofl_produce(&prod, &r, 1), 1);
	assert_int_equal(harvest(&f, NULL), 4);
	for (int i = 1; i <= 4; i++)
		assert_true(page_set(&f, GPA0 + LEN - (uint64_t)i * 4096));
	/* the other region's harvest drains the device too: its half is there */
	assert_int_equal(pgt_dirty_harvest(v2, &h), 4);
	assert_int_equal(bm2[0], 0xf);
	pgt_dirty_view_close(v2);
	pgt_offload_close(o);
	fx_close(&f);
}

/* Without DPDK built in, DPDK memory is refused cleanly. */
static void test_dpdk_not_built(void **state)
{
	struct pgt_region_config rc = { .size = sizeof(rc), .backing = PGT_BACKING_DPDK,
					.length = 4 * MIB, .gpa = 0, .track = PGT_TRACK_DIRTY,
					.numa_node = -1 };
	pgt_engine *e;
	pgt_region *r = (pgt_region *)&rc;

	(void)state;
	if (PGT_HAVE_DPDK)
		pgt_skip("built with DPDK: tests/dpdk covers DPDK memory (one EAL per process)");
	assert_int_equal(pgt_dpdk_init(NULL), -EOPNOTSUPP);
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_region_create(e, &rc, &r), -EOPNOTSUPP);
	assert_null(r);
	pgt_engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backends),
		cmocka_unit_test(test_refused_without_hardware),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_sim_memfd),
		cmocka_unit_test(test_sim_hugetlb),
		cmocka_unit_test(test_sim_anon),
		cmocka_unit_test(test_kvm_ring_memory),
		cmocka_unit_test(test_vhost_log),
		cmocka_unit_test(test_vhost_swap),
		cmocka_unit_test(test_vfio_model),
		cmocka_unit_test(test_final_harvest),
		cmocka_unit_test(test_iommufd_model),
		cmocka_unit_test(test_chmu_model),
		cmocka_unit_test(test_range_across_regions),
		cmocka_unit_test(test_dpdk_not_built),
	};

	pgt_probe(&probe);
	return cmocka_run_group_tests_name("offload", tests, NULL, NULL);
}
