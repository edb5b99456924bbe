/* SPDX-License-Identifier: MIT */
/*
 * The "iommufd" backend: dirty tracking by the IOMMU itself (Linux 6.7
 * uAPI, include/uapi/linux/iommufd.h) on a HW page table the VMM allocated
 * with IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the IOMMU sets a dirty bit in the
 * IOPTE of every page a device writes, whatever the device.
 *
 * IOMMU_HWPT_GET_DIRTY_BITMAP walks the IOPTEs of a range and sets bit
 * (iova - base) / page_size of the user bitmap for each dirty one, clearing
 * the IOPTE bit (and flushing the IOTLB) unless NO_CLEAR is given — the
 * cheap read before an unmap, which tears the IOPTEs down anyway. The range
 * must be aligned to the page size and to the IOMMU's own granule.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/compat_uapi.h"
#include "hal/offload/offload.h"

#define REPORT_BITS (1ULL << 20)

struct iommufd {
	int fd;
	uint32_t hwpt;
	struct pgt_ofl_win *win;
	unsigned nwin;
	uint64_t page_size;
	bool started;
	uint64_t *bits;
};

static int set_tracking(struct pgt_ofl_dev *d, struct iommufd *m, bool on)
{
	struct iommu_hwpt_set_dirty_tracking a = {
		.size = sizeof(a), .flags = on ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
		.hwpt_id = m->hwpt,
	};

	return d->io->ioctl(d->io->ctx, m->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &a);
}

static int iommufd_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
			 size_t n)
{
	int ret = io->exists(io->ctx, "/dev/iommu");

	caps->shape = PGT_OFFLOAD_BITMAP;
	caps->flags = PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_NO_CLEAR;
	caps->page_sizes = ~0ULL << 12;
	caps->granularity = 4096;
	caps->max_ranges = 0;
	if (ret) {
		snprintf(why, n, "no IOMMUFD: /dev/iommu absent (%s)", strerror(-ret));
		return -ENODEV;
	}
	snprintf(why, n, "/dev/iommu present; dirty tracking is probed on the HW page table");
	return 0;
}

static int iommufd_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_iommufd_config *c = cfgp;
	struct iommufd *m;
	int ret;

	if (!c)
		return -EINVAL;
	ret = pgt__ofl_cfg_size(c, sizeof(*c), sizeof(*c));
	if (ret)
		return ret;
	if (c->iommufd < 0 || c->reserved)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->bits = malloc(REPORT_BITS / 8);
	if (!m->bits) {
		free(m);
		return -ENOMEM;
	}
	m->fd = c->iommufd;
	m->hwpt = c->hwpt_id;
	d->priv = m;
	return 0;
}

static int iommufd_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	struct iommufd *m = d->priv;
	struct pgt_ofl_win *win = malloc(n * sizeof(*win));

	if (!win)
		return -ENOMEM;
	memcpy(win, w, n * sizeof(*w));
	free(m->win);
	m->win = win;
	m->nwin = n;
	return 0;
}

static int iommufd_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct iommufd *m = d->priv;
	int ret;

	if (!*page_size)
		*page_size = 4096;
	ret = set_tracking(d, m, true);
	if (ret) {
		pgt__ofl_log(d, PGT_LOG_WARN, "iommufd: enabling dirty tracking on HWPT %u: %s",
			     m->hwpt, strerror(-ret));
		/* a HWPT without IOMMU_HWPT_ALLOC_DIRTY_TRACKING, or an IOMMU without it */
		return ret == -EINVAL || ret == -ENOTTY ? -EOPNOTSUPP : ret;
	}
	/* iommufd clears the IOPTE dirty bits when it switches tracking on
	 * (iopt_set_dirty_tracking): the first harvest holds writes from now */
	m->page_size = *page_size;
	m->started = true;
	return 0;
}

static int get_bitmap(struct pgt_ofl_dev *d, struct iommufd *m, uint64_t lo, uint64_t hi,
		      uint32_t flags, const struct pgt_ofl_sink *sink)
{
	while (lo < hi) {
		uint64_t nbits = (hi - lo) / m->page_size;
		struct iommu_hwpt_get_dirty_bitmap a;
		int ret;

		if (nbits > REPORT_BITS)
			nbits = REPORT_BITS;
		memset(m->bits, 0, (size_t)((nbits + 63) / 64 * 8));
		a = (struct iommu_hwpt_get_dirty_bitmap){
			.size = sizeof(a), .hwpt_id = m->hwpt,
			.flags = (flags & PGT_OFFLOAD_HARVEST_UNMAP) ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0,
			.iova = lo, .length = nbits * m->page_size, .page_size = m->page_size,
			.data = (uintptr_t)m->bits,
		};
		ret = d->io->ioctl(d->io->ctx, m->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &a);
		if (ret < 0)
			return ret;
		if (sink)
			sink->bitmap(sink->arg, lo, m->page_size, m->bits, nbits);
		lo += nbits * m->page_size;
	}
	return 0;
}

static int iommufd_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			   const struct pgt_ofl_sink *sink)
{
	struct iommufd *m = d->priv;
	uint64_t done = 0;

	if (!m->started)
		return -ENOENT;
	for (unsigned i = 0; i < m->nwin; i++) {
		uint64_t a = m->win[i].iova, b = a + m->win[i].len, lo, hi;
		int ret;

		if (len) {
			a = a > iova ? a : iova;
			b = b < iova + len ? b : iova + len;
			if (b <= a)
				continue;
		}
		if (!pgt__ofl_span(a, b - a, m->page_size, &lo, &hi))
			continue;
		if (lo < done)
			lo = done;
		if (lo >= hi)
			continue;
		ret = get_bitmap(d, m, lo, hi, flags, sink);
		if (ret) {
			pgt__ofl_log(d, PGT_LOG_ERR, "iommufd: GET_DIRTY_BITMAP [%#llx, %#llx): %s",
				     (unsigned long long)lo, (unsigned long long)hi, strerror(-ret));
			sink->lost(sink->arg, ret);
			return ret;
		}
		done = hi;
	}
	return 0;
}

static int iommufd_stop(struct pgt_ofl_dev *d)
{
	struct iommufd *m = d->priv;

	if (!m->started)
		return 0;
	m->started = false;
	return set_tracking(d, m, false);
}

static void iommufd_detach(struct pgt_ofl_dev *d)
{
	struct iommufd *m = d->priv;

	iommufd_stop(d);
	free(m->win);
	m->win = NULL;
	m->nwin = 0;
}

static void iommufd_close(struct pgt_ofl_dev *d)
{
	struct iommufd *m = d->priv;

	if (!m)
		return;
	iommufd_detach(d);
	free(m->bits);
	free(m);
	d->priv = NULL;
}

const struct pgt_ofl_ops pgt__ofl_iommufd = {
	.name = "iommufd", .shape = PGT_OFFLOAD_BITMAP,
	.probe = iommufd_probe, .open = iommufd_open, .attach = iommufd_attach,
	.start = iommufd_start, .harvest = iommufd_harvest, .stop = iommufd_stop,
	.detach = iommufd_detach, .close = iommufd_close,
};
