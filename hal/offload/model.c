/* SPDX-License-Identifier: MIT */
/*
 * Models of the offload hardware (model.h). Sources for the behaviour:
 *  - VFIO DMA logging: drivers/vfio/vfio_main.c (vfio_ioctl_device_feature,
 *    vfio_check_feature, _logging_start/_stop/_report: argsz and flag
 *    rules, LOG_MAX_RANGES = a page of ranges -> -E2BIG, alignment ->
 *    -EINVAL, overflow -> -EOVERFLOW, report page size >= 4K power of two),
 *    include/uapi/linux/vfio.h (page size is a hint the driver rewrites,
 *    REPORT reads and clears and only sets bits, bit = (addr - iova) /
 *    page_size), vfio_combine_iova_ranges() (a tracker with fewer ranges
 *    than asked merges the closest ones).
 *  - IOMMUFD: include/uapi/linux/iommufd.h and drivers/iommu/iommufd/
 *    (ucmd size rule: short -> -EINVAL, unknown non-zero tail -> -E2BIG;
 *    unknown flags or __reserved -> -EOPNOTSUPP; unknown id -> -ENOENT;
 *    iommufd_check_iova_range(): overflow -> -EOVERFLOW, misaligned to the
 *    IOMMU granule or page_size, page_size 0 -> -EINVAL; a range not fully
 *    mapped -> -EINVAL; tracking off -> -EINVAL (VT-d); enabling clears the
 *    dirty bits; NO_CLEAR leaves them).
 *  - CHMU: the CXL 3.2 register layout of chmu.h; one entry per hot unit
 *    per epoch, overflow status when the list is full, head written by the
 *    host.
 *  - KVM dirty ring: Documentation/virt/kvm/api.rst (KVM_CAP_DIRTY_LOG_RING)
 *    and virt/kvm/dirty_ring.c: the producer writes slot and offset, then
 *    flags = DIRTY with release; KVM_RESET_DIRTY_RINGS resets entries in
 *    order while they carry RESET and returns how many it reset; a ring
 *    whose next entry is not free is full.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal/compat_uapi.h"
#include "hal/offload/chmu.h"
#include "hal/offload/model.h"

#define MODEL_FD (1 << 20) /* above any real fd of a test process */

struct vrange {
	uint64_t iova, len;
	uint64_t *bits;          /* at the logging page size */
};

struct chinst {
	uint32_t *count;         /* per unit, this epoch */
	uint64_t nunits;
	uint64_t unit;           /* configured unit size */
	uint32_t threshold;
	bool on;
};

struct pgt_model {
	struct pgt_model_params p;
	struct pgt_ofl_io io;
	pthread_mutex_t lock;
	struct pgt_model_stats st;
	int fail_err;
	unsigned fail_n;
	/* vfio */
	bool logging;
	uint64_t log_ps;
	struct vrange *vr;
	uint32_t nvr;
	/* iommufd */
	bool tracking;
	uint64_t *dirty;         /* per IOMMU page of the IOAS */
	/* chmu */
	uint8_t *regs;
	uint64_t regs_len, ilen, list_off;
	struct chinst *ci;
	/* kvm */
	struct pgt_offload_rec **rings;
	uint32_t *prod, *reset;
};

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static bool take_failure(struct pgt_model *m, int *err)
{
	if (!m->fail_n)
		return false;
	m->fail_n--;
	*err = m->fail_err;
	return true;
}

/* ------------------------------------------------------------------ */
/* VFIO                                                                */
/* ------------------------------------------------------------------ */

/* vfio_check_feature(): 1 to go on, 0 for a probe that succeeded, -errno. */
static int check_feature(uint32_t flags, size_t argsz, uint32_t ops, size_t minsz)
{
	if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) & ~ops)
		return -EINVAL;
	if (flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
		return -EINVAL;
	if (argsz < minsz)
		return -EINVAL;
	return 1;
}

static void vfio_drop_log(struct pgt_model *m)
{
	for (uint32_t i = 0; i < m->nvr; i++)
		free(m->vr[i].bits);
	free(m->vr);
	m->vr = NULL;
	m->nvr = 0;
	m->logging = false;
	m->st.tracking = false;
}

static int cmp_range(const void *a, const void *b)
{
	const struct vrange *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int vfio_log_start(struct pgt_model *m, struct vfio_device_feature_dma_logging_control *c)
{
	const struct vfio_device_feature_dma_logging_range *ur =
		(const void *)(uintptr_t)c->ranges;
	uint64_t sizes = m->p.vfio_page_sizes ? m->p.vfio_page_sizes : (1ULL << 12) | (1ULL << 21);
	uint32_t n = c->num_ranges, max = m->p.vfio_max_ranges;
	struct vrange *r;
	uint64_t ps = 0;

	if (!n)
		return -EINVAL;
	if (n > PGT_VFIO_LOG_MAX_RANGES)
		return -E2BIG;
	if (!ur)
		return -EFAULT;
	r = calloc(n, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t end;

		/* IS_ALIGNED(x, 0) holds only for x == 0, as in the kernel */
		if ((ur[i].iova & (c->page_size - 1)) || (ur[i].length & (c->page_size - 1))) {
			free(r);
			return -EINVAL;
		}
		if (__builtin_add_overflow(ur[i].iova, ur[i].length, &end)) {
			free(r);
			return -EOVERFLOW;
		}
		r[i].iova = ur[i].iova;
		r[i].len = ur[i].length;
		for (uint32_t j = 0; j < i; j++)
			if (r[j].iova < end && r[i].iova < r[j].iova + r[j].len) {
				free(r);
				return -EINVAL; /* overlapping ranges */
			}
	}
	if (m->logging) {
		free(r);
		return -EBUSY; /* one START until STOP */
	}
	/* the driver's page size: the smallest it has >= the hint, else its
	 * largest */
	for (unsigned b = 12; b < 64; b++)
		if ((sizes >> b & 1) && (1ULL << b) >= c->page_size) {
			ps = 1ULL << b;
			break;
		}
	if (!ps)
		ps = 1ULL << (63 - __builtin_clzll(sizes));
	qsort(r, n, sizeof(*r), cmp_range);
	/* a tracker with fewer ranges merges the closest neighbours */
	while (max && n > max) {
		uint32_t best = 0;
		uint64_t gap = UINT64_MAX;

		for (uint32_t i = 0; i + 1 < n; i++) {
			uint64_t g = r[i + 1].iova - (r[i].iova + r[i].len);

			if (g < gap) {
				gap = g;
				best = i;
			}
		}
		r[best].len = r[best + 1].iova + r[best + 1].len - r[best].iova;
		memmove(&r[best + 1], &r[best + 2], (n - best - 2) * sizeof(*r));
		n--;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t lo = r[i].iova & ~(ps - 1);
		uint64_t hi = (r[i].iova + r[i].len + ps - 1) & ~(ps - 1);

		r[i].iova = lo;
		r[i].len = hi - lo;
		r[i].bits = calloc((r[i].len / ps + 63) / 64, 8);
		if (!r[i].bits) {
			for (uint32_t j = 0; j < i; j++)
				free(r[j].bits);
			free(r);
			return -ENOMEM;
		}
	}
	m->vr = r;
	m->nvr = n;
	m->log_ps = ps;
	m->logging = true;
	c->page_size = ps;
	m->st.page_size = ps;
	m->st.ranges = n;
	m->st.tracking = true;
	return 0;
}

static int vfio_log_report(struct pgt_model *m, const struct vfio_device_feature_dma_logging_report *rep)
{
	uint64_t *ub = (uint64_t *)(uintptr_t)rep->bitmap, end;
	int err;

	if (rep->page_size < 4096 || !pow2(rep->page_size))
		return -EINVAL;
	if (__builtin_add_overflow(rep->iova, rep->length, &end))
		return -EOVERFLOW;
	if (!rep->length)
		return -EINVAL; /* iova_bitmap_alloc() of nothing */
	if (!ub)
		return -EFAULT;
	if (!m->logging)
		return -EINVAL;
	if (take_failure(m, &err))
		return err;
	for (uint32_t i = 0; i < m->nvr; i++) {
		struct vrange *r = &m->vr[i];

		for (uint64_t p = 0; p < r->len / m->log_ps; p++) {
			uint64_t a = r->iova + p * m->log_ps, b = a + m->log_ps;

			if (!(r->bits[p / 64] >> (p % 64) & 1) || b <= rep->iova || a >= end)
				continue;
			r->bits[p / 64] &= ~(1ULL << (p % 64));
			m->st.cleared++;
			if (a < rep->iova)
				a = rep->iova;
			if (b > end)
				b = end;
			/* internal page -> every report bit it overlaps (replicated
			 * when the report page is smaller, OR-ed when larger) */
			for (uint64_t x = (a - rep->iova) / rep->page_size;
			     x <= (b - 1 - rep->iova) / rep->page_size; x++)
				ub[x / 64] |= 1ULL << (x % 64);
		}
	}
	return 0;
}

static int vfio_ioctl(struct pgt_model *m, unsigned long req, void *arg)
{
	struct vfio_device_feature *f = arg;
	const size_t minsz = offsetof(struct vfio_device_feature, data);
	size_t argsz;
	int ret;

	if (req != VFIO_DEVICE_FEATURE)
		return -ENOTTY;
	if (f->argsz < minsz)
		return -EINVAL;
	if (f->flags & ~(VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET |
			 VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE))
		return -EINVAL;
	if (!(f->flags & VFIO_DEVICE_FEATURE_PROBE) && (f->flags & VFIO_DEVICE_FEATURE_SET) &&
	    (f->flags & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;
	argsz = f->argsz - minsz;
	switch (f->flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: {
		struct vfio_device_feature_dma_logging_control c;

		if (m->p.vfio_no_logging)
			return -ENOTTY;
		ret = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_SET, sizeof(c));
		if (ret != 1)
			return ret;
		memcpy(&c, f->data, sizeof(c));
		ret = vfio_log_start(m, &c);
		if (!ret)
			memcpy(f->data, &c, sizeof(c));
		return ret;
	}
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		if (m->p.vfio_no_logging)
			return -ENOTTY;
		ret = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_SET, 0);
		if (ret != 1)
			return ret;
		vfio_drop_log(m);
		return 0;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: {
		struct vfio_device_feature_dma_logging_report rep;

		if (m->p.vfio_no_logging)
			return -ENOTTY;
		ret = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_GET, sizeof(rep));
		if (ret != 1)
			return ret;
		memcpy(&rep, f->data, sizeof(rep));
		return vfio_log_report(m, &rep);
	}
	default:
		return -EINVAL; /* no device_feature op for anything else */
	}
}

static int vfio_dma(struct pgt_model *m, uint64_t iova, uint64_t len)
{
	if (!m->logging)
		return 0;
	for (uint32_t i = 0; i < m->nvr; i++) {
		struct vrange *r = &m->vr[i];
		uint64_t a = iova > r->iova ? iova : r->iova;
		uint64_t b = iova + len < r->iova + r->len ? iova + len : r->iova + r->len;

		for (uint64_t p = (a - r->iova) / m->log_ps; a < b && p <= (b - 1 - r->iova) / m->log_ps;
		     p++)
			r->bits[p / 64] |= 1ULL << (p % 64);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* IOMMUFD                                                             */
/* ------------------------------------------------------------------ */

/* The iommufd ucmd size rule, then the struct copied in. */
static int ucmd_in(const void *arg, size_t min, size_t known, void *out)
{
	uint32_t size;

	memcpy(&size, arg, sizeof(size));
	if (size < min)
		return -EINVAL;
	for (size_t i = known; i < size && i < 4096; i++)
		if (((const uint8_t *)arg)[i])
			return -E2BIG;
	memset(out, 0, known);
	memcpy(out, arg, size < known ? size : known);
	return 0;
}

static int iommufd_ioctl(struct pgt_model *m, unsigned long req, void *arg)
{
	uint64_t g = m->p.iommu_pgsize ? m->p.iommu_pgsize : 4096;
	int ret, err;

	if (req == IOMMU_HWPT_SET_DIRTY_TRACKING) {
		struct iommu_hwpt_set_dirty_tracking a;

		ret = ucmd_in(arg, sizeof(a), sizeof(a), &a);
		if (ret)
			return ret;
		if ((a.flags & ~(uint32_t)IOMMU_HWPT_DIRTY_TRACKING_ENABLE) || a.__reserved)
			return -EOPNOTSUPP;
		if (a.hwpt_id != m->p.hwpt_id)
			return -ENOENT;
		if (m->p.hwpt_no_dirty)
			return -EOPNOTSUPP; /* no dirty_ops on the domain */
		if (a.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
			memset(m->dirty, 0, (m->p.iova_len / g + 63) / 64 * 8);
		m->tracking = a.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE;
		m->st.tracking = m->tracking;
		return 0;
	}
	if (req == IOMMU_HWPT_GET_DIRTY_BITMAP) {
		struct iommu_hwpt_get_dirty_bitmap a;
		uint64_t last, *ub;

		ret = ucmd_in(arg, sizeof(a), sizeof(a), &a);
		if (ret)
			return ret;
		if ((a.flags & ~(uint32_t)IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || a.__reserved)
			return -EOPNOTSUPP;
		if (a.hwpt_id != m->p.hwpt_id)
			return -ENOENT;
		if (__builtin_add_overflow(a.iova, a.length - 1, &last))
			return -EOVERFLOW;
		if ((a.iova & (g - 1)) || ((last + 1) & (g - 1)) || !a.page_size ||
		    (a.iova & (a.page_size - 1)) || ((last + 1) & (a.page_size - 1)) ||
		    !pow2(a.page_size) || !a.length)
			return -EINVAL;
		if (m->p.hwpt_no_dirty)
			return -EOPNOTSUPP;
		/* the range must be mapped in the IOAS, all of it */
		if (a.iova < m->p.iova_base || last >= m->p.iova_base + m->p.iova_len)
			return -EINVAL;
		if (!m->tracking)
			return -EINVAL;
		ub = (uint64_t *)(uintptr_t)a.data;
		if (!ub)
			return -EFAULT;
		if (take_failure(m, &err))
			return err;
		if (a.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
			m->st.no_clear_reads++;
		for (uint64_t p = (a.iova - m->p.iova_base) / g; p <= (last - m->p.iova_base) / g; p++) {
			uint64_t x;

			if (!(m->dirty[p / 64] >> (p % 64) & 1))
				continue;
			if (!(a.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)) {
				m->dirty[p / 64] &= ~(1ULL << (p % 64));
				m->st.cleared++;
			}
			/* bits relative to the base iova (iova_bitmap_set) */
			for (x = (m->p.iova_base + p * g - a.iova) / a.page_size;
			     x <= (m->p.iova_base + p * g + g - 1 - a.iova) / a.page_size; x++)
				ub[x / 64] |= 1ULL << (x % 64);
		}
		return 0;
	}
	return -ENOTTY;
}

static int iommufd_dma(struct pgt_model *m, uint64_t iova, uint64_t len)
{
	uint64_t g = m->p.iommu_pgsize ? m->p.iommu_pgsize : 4096;

	if (!len || iova < m->p.iova_base || iova + len > m->p.iova_base + m->p.iova_len ||
	    iova + len < iova)
		return -EFAULT; /* an IOMMU fault: the device wrote nothing */
	if (!m->tracking)
		return 0;
	for (uint64_t p = (iova - m->p.iova_base) / g; p <= (iova + len - 1 - m->p.iova_base) / g; p++)
		m->dirty[p / 64] |= 1ULL << (p % 64);
	return 0;
}

/* ------------------------------------------------------------------ */
/* CHMU                                                                */
/* ------------------------------------------------------------------ */

static uint64_t reg(const struct pgt_model *m, uint64_t off)
{
	uint64_t v;

	memcpy(&v, m->regs + off, 8);
	return v;
}

static void set_reg(struct pgt_model *m, uint64_t off, uint64_t v)
{
	memcpy(m->regs + off, &v, 8);
}

static int chmu_layout(struct pgt_model *m)
{
	uint32_t ninst = m->p.chmu_instances ? m->p.chmu_instances : 1;
	uint32_t list = m->p.chmu_list ? m->p.chmu_list : 64;
	unsigned width = m->p.chmu_width ? m->p.chmu_width : 16;
	uint64_t units = m->p.chmu_units ? m->p.chmu_units : 0x3ffULL << 4; /* 4K .. 2M */

	if (list > 0xffff || width > 63 || !m->p.chmu_capacity)
		return -EINVAL;
	m->list_off = PGT_CHMU_HEADTAIL + 8;
	m->ilen = m->list_off + (uint64_t)list * 8;
	m->regs_len = PGT_CHMU_INST0 + ninst * m->ilen;
	m->regs = aligned_alloc(64, (m->regs_len + 63) & ~63ULL);
	m->ci = calloc(ninst, sizeof(*m->ci));
	if (!m->regs || !m->ci)
		return -ENOMEM;
	memset(m->regs, 0, m->regs_len);
	set_reg(m, PGT_CHMU_COMMON_CAP1, 1 | ((uint64_t)ninst << 8));
	set_reg(m, PGT_CHMU_COMMON_CAP2, m->ilen);
	for (uint32_t i = 0; i < ninst; i++) {
		uint64_t b = PGT_CHMU_INST0 + i * m->ilen;

		set_reg(m, b + PGT_CHMU_CAP1, ((uint64_t)PGT_CHMU_M2S_ALL << 8) |
			(pgt_chmu_epoch_enc(1000000) << 16) | (pgt_chmu_epoch_enc(100) << 32) |
			((uint64_t)list << 48) | (1u << 4));
		set_reg(m, b + PGT_CHMU_CAP2, units | (1ULL << 48));
		set_reg(m, b + PGT_CHMU_CAP4, m->list_off);
		set_reg(m, b + PGT_CHMU_STAT, (uint64_t)width << 32);
	}
	return 0;
}

static void chmu_write(struct pgt_model *m, uint64_t off, uint64_t v)
{
	uint64_t i, r, b;
	struct chinst *c;

	if (off < PGT_CHMU_INST0 || off + 8 > m->regs_len)
		return;
	i = (off - PGT_CHMU_INST0) / m->ilen;
	r = (off - PGT_CHMU_INST0) % m->ilen;
	b = PGT_CHMU_INST0 + i * m->ilen;
	c = &m->ci[i];
	switch (r) {
	case PGT_CHMU_CFG1: {
		uint64_t ctl = pgt_chmu_field(v, 16, 31);

		if (ctl & PGT_CHMU_CTL_RESET) {
			free(c->count);
			c->count = NULL;
			c->on = false;
			set_reg(m, b + PGT_CHMU_HEADTAIL, 0);
			set_reg(m, b + PGT_CHMU_STAT, reg(m, b + PGT_CHMU_STAT) & ~(0xffULL << 40));
			v &= ~((uint64_t)PGT_CHMU_CTL_RESET << 16);
		}
		set_reg(m, b + PGT_CHMU_CFG1, v);
		if ((ctl & PGT_CHMU_CTL_ENABLE) && !c->on) {
			uint64_t us = pgt_chmu_field(reg(m, b + PGT_CHMU_CFG2), 0, 31);
			uint64_t ok = pgt_chmu_field(reg(m, b + PGT_CHMU_CAP2), 0, 31);

			/* a unit size the unit does not have: it stays off */
			if (!pow2(us) || us < 256 || !(ok >> (__builtin_ctzll(us) - 8) & 1))
				break;
			c->unit = us;
			c->nunits = (m->p.chmu_capacity + us - 1) / us;
			c->count = calloc(c->nunits, sizeof(*c->count));
			c->threshold = (uint32_t)pgt_chmu_field(v, 32, 63);
			c->on = c->count != NULL;
			m->st.chmu_enabled += c->on;
			m->st.tracking = c->on;
		} else if (!(ctl & PGT_CHMU_CTL_ENABLE)) {
			c->on = false;
			m->st.tracking = false;
		}
		break;
	}
	case PGT_CHMU_CFG2:
	case PGT_CHMU_CFG3:
		set_reg(m, off, v);
		break;
	case PGT_CHMU_STAT: /* overflow status is write-1-to-clear */
		set_reg(m, off, reg(m, off) & ~(pgt_chmu_field(v, 40, 47) << 40));
		break;
	case PGT_CHMU_HEADTAIL: {
		uint64_t head = v & 0xffff, cur = reg(m, off);
		uint64_t list = pgt_chmu_field(reg(m, b + PGT_CHMU_CAP1), 48, 63);

		if (head < list)
			set_reg(m, off, (cur & ~0xffffULL) | head);
		break;
	}
	default:
		break; /* capabilities are read-only */
	}
}

static int chmu_epoch(struct pgt_model *m)
{
	int added = 0;

	for (uint32_t i = 0; i < (m->p.chmu_instances ? m->p.chmu_instances : 1); i++) {
		struct chinst *c = &m->ci[i];
		uint64_t b = PGT_CHMU_INST0 + i * m->ilen;
		uint64_t list = pgt_chmu_field(reg(m, b + PGT_CHMU_CAP1), 48, 63);
		unsigned width = (unsigned)pgt_chmu_field(reg(m, b + PGT_CHMU_STAT), 32, 39);
		uint64_t cmax = (1ULL << width) - 1;

		if (!c->on)
			continue;
		for (uint64_t u = 0; u < c->nunits; u++) {
			uint64_t ht = reg(m, b + PGT_CHMU_HEADTAIL);
			uint64_t head = ht & 0xffff, tail = (ht >> 16) & 0xffff;

			if (!c->count[u] || c->count[u] < (c->threshold ? c->threshold : 1))
				continue;
			if ((tail + 1) % list == head) {
				set_reg(m, b + PGT_CHMU_STAT, reg(m, b + PGT_CHMU_STAT) |
					((uint64_t)PGT_CHMU_STAT_OVERFLOW << 40));
				continue;
			}
			set_reg(m, b + m->list_off + tail * 8,
				(u << width) | (c->count[u] < cmax ? c->count[u] : cmax));
			set_reg(m, b + PGT_CHMU_HEADTAIL, head | (((tail + 1) % list) << 16));
			added++;
		}
		memset(c->count, 0, c->nunits * sizeof(*c->count));
	}
	return added;
}

/* ------------------------------------------------------------------ */
/* The seam                                                            */
/* ------------------------------------------------------------------ */

static int m_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct pgt_model *m = ctx;
	int ret;

	pthread_mutex_lock(&m->lock);
	m->st.ioctls++;
	if (fd != MODEL_FD) {
		ret = -EBADF;
	} else if (!arg && req != KVM_RESET_DIRTY_RINGS) {
		ret = -EFAULT;
	} else {
		switch (m->p.kind) {
		case PGT_MODEL_VFIO:
			ret = vfio_ioctl(m, req, arg);
			break;
		case PGT_MODEL_IOMMUFD:
			ret = iommufd_ioctl(m, req, arg);
			break;
		case PGT_MODEL_KVM:
			ret = -ENOTTY;
			if (req == KVM_RESET_DIRTY_RINGS) {
				uint32_t mask = m->p.kvm_entries - 1;

				ret = 0;
				for (uint32_t v = 0; v < m->p.kvm_vcpus; v++) {
					for (;;) {
						struct pgt_offload_rec *r = &m->rings[v][m->reset[v] & mask];
						uint32_t f = __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE);

						if (m->reset[v] == m->prod[v] || !(f & PGT_KVM_DIRTY_GFN_F_RESET))
							break;
						__atomic_store_n(&r->flags, 0, __ATOMIC_RELEASE);
						m->reset[v]++;
						ret++;
					}
				}
				m->st.resets += (uint64_t)ret;
			}
			break;
		default:
			ret = -ENOTTY;
		}
	}
	if (ret < 0)
		m->st.last_err = ret;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

static void *m_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, int *err)
{
	struct pgt_model *m = ctx;
	long v = (long)fd - MODEL_FD - 1;

	(void)prot;
	if (m->p.kind != PGT_MODEL_KVM || v < 0 || v >= (long)m->p.kvm_vcpus ||
	    !(flags & MAP_SHARED)) {
		*err = -ENODEV;
		return NULL;
	}
	if (off != (off_t)PGT_KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize() ||
	    len != (size_t)m->p.kvm_entries * sizeof(struct pgt_offload_rec)) {
		*err = -EINVAL;
		return NULL;
	}
	return m->rings[v];
}

static int m_munmap(void *ctx, void *p, size_t len)
{
	(void)ctx, (void)p, (void)len; /* the rings live as long as the model */
	return 0;
}

static uint64_t m_rd64(void *ctx, const volatile void *r)
{
	struct pgt_model *m = ctx;
	uint64_t v = 0, off = (uint64_t)((const volatile uint8_t *)r - m->regs);

	pthread_mutex_lock(&m->lock);
	if (m->regs && off + 8 <= m->regs_len && !(off & 7))
		v = reg(m, off);
	else
		v = ~0ULL; /* a read outside the block: all ones, as on PCIe */
	pthread_mutex_unlock(&m->lock);
	return v;
}

static void m_wr64(void *ctx, volatile void *r, uint64_t v)
{
	struct pgt_model *m = ctx;
	uint64_t off = (uint64_t)((volatile uint8_t *)r - m->regs);

	pthread_mutex_lock(&m->lock);
	if (m->regs && off + 8 <= m->regs_len && !(off & 7))
		chmu_write(m, off, v);
	pthread_mutex_unlock(&m->lock);
}

static int m_exists(void *ctx, const char *path)
{
	struct pgt_model *m = ctx;

	(void)path;
	return m->p.absent ? -ENOENT : 0;
}

/* ------------------------------------------------------------------ */

struct pgt_model *pgt__model_new(const struct pgt_model_params *p)
{
	struct pgt_model *m;

	if (!p || p->kind < PGT_MODEL_VFIO || p->kind > PGT_MODEL_KVM)
		return NULL;
	if (p->kind == PGT_MODEL_IOMMUFD && (!p->iova_len || (p->iommu_pgsize && !pow2(p->iommu_pgsize))))
		return NULL;
	if (p->kind == PGT_MODEL_KVM && (!p->kvm_vcpus || !pow2(p->kvm_entries) || p->kvm_entries < 2))
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->p = *p;
	pthread_mutex_init(&m->lock, NULL);
	m->io = (struct pgt_ofl_io){
		.ctx = m, .ioctl = m_ioctl, .mmap = m_mmap, .munmap = m_munmap,
		.rd64 = m_rd64, .wr64 = m_wr64, .exists = m_exists,
	};
	switch (p->kind) {
	case PGT_MODEL_IOMMUFD: {
		uint64_t g = p->iommu_pgsize ? p->iommu_pgsize : 4096;

		m->dirty = calloc((p->iova_len / g + 63) / 64, 8);
		if (!m->dirty)
			goto fail;
		break;
	}
	case PGT_MODEL_CHMU:
		if (chmu_layout(m))
			goto fail;
		break;
	case PGT_MODEL_KVM:
		m->rings = calloc(p->kvm_vcpus, sizeof(*m->rings));
		m->prod = calloc(p->kvm_vcpus, sizeof(*m->prod));
		m->reset = calloc(p->kvm_vcpus, sizeof(*m->reset));
		if (!m->rings || !m->prod || !m->reset)
			goto fail;
		for (uint32_t v = 0; v < p->kvm_vcpus; v++) {
			m->rings[v] = aligned_alloc(4096, (size_t)p->kvm_entries * 16 < 4096
							   ? 4096 : (size_t)p->kvm_entries * 16);
			if (!m->rings[v])
				goto fail;
			memset(m->rings[v], 0, (size_t)p->kvm_entries * 16);
		}
		break;
	default:
		break;
	}
	return m;
fail:
	pgt__model_free(m);
	return NULL;
}

void pgt__model_free(struct pgt_model *m)
{
	if (!m)
		return;
	vfio_drop_log(m);
	free(m->dirty);
	if (m->ci)
		for (uint32_t i = 0; i < (m->p.chmu_instances ? m->p.chmu_instances : 1); i++)
			free(m->ci[i].count);
	free(m->ci);
	free(m->regs);
	if (m->rings)
		for (uint32_t v = 0; v < m->p.kvm_vcpus; v++)
			free(m->rings[v]);
	free(m->rings);
	free(m->prod);
	free(m->reset);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

const struct pgt_ofl_io *pgt__model_io(struct pgt_model *m)
{
	return &m->io;
}

int pgt__model_fd(const struct pgt_model *m)
{
	(void)m;
	return MODEL_FD;
}

volatile void *pgt__model_regs(struct pgt_model *m, uint64_t *len)
{
	if (len)
		*len = m->regs_len;
	return m->regs;
}

int pgt__model_dma(struct pgt_model *m, uint64_t iova, uint64_t len)
{
	int ret = 0;

	if (!len || iova + len < iova)
		return -EFAULT;
	pthread_mutex_lock(&m->lock);
	switch (m->p.kind) {
	case PGT_MODEL_VFIO:
		ret = vfio_dma(m, iova, len);
		break;
	case PGT_MODEL_IOMMUFD:
		ret = iommufd_dma(m, iova, len);
		break;
	case PGT_MODEL_CHMU:
		if (iova + len > m->p.chmu_capacity) {
			ret = -EFAULT;
			break;
		}
		for (uint32_t i = 0; i < (m->p.chmu_instances ? m->p.chmu_instances : 1); i++) {
			struct chinst *c = &m->ci[i];

			if (!c->on)
				continue;
			for (uint64_t u = iova / c->unit; u <= (iova + len - 1) / c->unit; u++)
				if (c->count[u] != UINT32_MAX)
					c->count[u]++;
		}
		break;
	default:
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int pgt__model_chmu_epoch(struct pgt_model *m)
{
	int n;

	if (m->p.kind != PGT_MODEL_CHMU)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	n = chmu_epoch(m);
	pthread_mutex_unlock(&m->lock);
	return n;
}

int pgt__model_kvm_push(struct pgt_model *m, unsigned vcpu, uint32_t slot, uint64_t offset)
{
	struct pgt_offload_rec *r;
	int ret = 0;

	if (m->p.kind != PGT_MODEL_KVM || vcpu >= m->p.kvm_vcpus)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	r = &m->rings[vcpu][m->prod[vcpu] & (m->p.kvm_entries - 1)];
	/* an entry is free again only once KVM_RESET_DIRTY_RINGS reset it */
	if (m->prod[vcpu] - m->reset[vcpu] >= m->p.kvm_entries ||
	    __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE)) {
		ret = -ENOSPC;
	} else {
		r->slot = slot;
		r->offset = offset;
		__atomic_store_n(&r->flags, PGT_KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
		m->prod[vcpu]++;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void pgt__model_fail(struct pgt_model *m, int err, unsigned n)
{
	pthread_mutex_lock(&m->lock);
	m->fail_err = err;
	m->fail_n = n;
	pthread_mutex_unlock(&m->lock);
}

void pgt__model_stats(const struct pgt_model *m, struct pgt_model_stats *st)
{
	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
	*st = m->st;
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
}
