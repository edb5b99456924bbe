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

static int set_tracking(struct pgt_ofl_dev *d, bool on)
{
	struct pgt_ofl_bmdev *m = d->priv;
	struct iommu_hwpt_set_dirty_tracking a = {
		.size = sizeof(a), .flags = on ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
		.hwpt_id = m->id,
	};

	return d->io->ioctl(d->io->ctx, m->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &a);
}

static int iommufd_off(struct pgt_ofl_dev *d)
{
	return set_tracking(d, false);
}

static int iommufd_read(struct pgt_ofl_dev *d, uint64_t lo, uint64_t nbits, uint32_t flags)
{
	struct pgt_ofl_bmdev *m = d->priv;
	struct iommu_hwpt_get_dirty_bitmap a = {
		.size = sizeof(a), .hwpt_id = m->id,
		.flags = (flags & PGT_OFFLOAD_HARVEST_UNMAP) ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0,
		.iova = lo, .length = nbits * m->page_size, .page_size = m->page_size,
		.data = (uintptr_t)m->bits,
	};
	int ret = d->io->ioctl(d->io->ctx, m->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &a);

	return ret < 0 ? ret : 0;
}

static int iommufd_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
			 size_t n)
{
	int ret = io->exists(io->ctx, "/dev/iommu");

	if (ret)
		return pgt__ofl_caps(caps, PGT_OFFLOAD_BITMAP, PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_NO_CLEAR,
				     ~0ULL << 12, 0, -ENODEV, why, n, "no IOMMUFD: /dev/iommu absent (%s)",
				     strerror(-ret));
	return pgt__ofl_caps(caps, PGT_OFFLOAD_BITMAP, PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_NO_CLEAR,
			     ~0ULL << 12, 0, 0, why, n,
			     "/dev/iommu present; dirty tracking is probed on the HW page table");
}

static int iommufd_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_iommufd_config *c = cfgp;
	struct pgt_ofl_bmdev *m;
	int ret;

	ret = pgt__ofl_cfg_size(c, sizeof(*c), sizeof(*c));
	if (ret)
		return ret;
	if (c->iommufd < 0 || c->reserved)
		return -EINVAL;
	ret = pgt__ofl_bm_new(d, c->iommufd, c->hwpt_id, "iommufd");
	if (ret)
		return ret;
	m = d->priv;
	m->read = iommufd_read;
	m->off = iommufd_off;
	return 0;
}

static int iommufd_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct pgt_ofl_bmdev *m = d->priv;
	int ret;

	if (!*page_size)
		*page_size = 4096;
	ret = set_tracking(d, true);
	if (ret) {
		pgt__ofl_log(d, PGT_LOG_WARN, "iommufd: enabling dirty tracking on HWPT %u: %s",
			     m->id, strerror(-ret));
		/* a HWPT without IOMMU_HWPT_ALLOC_DIRTY_TRACKING, or an IOMMU without it */
		return ret == -EINVAL || ret == -ENOTTY ? -EOPNOTSUPP : ret;
	}
	/* iommufd clears the IOPTE dirty bits when it switches tracking on
	 * (iopt_set_dirty_tracking): the first harvest holds writes from now */
	m->page_size = *page_size;
	m->started = true;
	return 0;
}

const struct pgt_ofl_ops pgt__ofl_iommufd = {
	.name = "iommufd", .shape = PGT_OFFLOAD_BITMAP,
	.probe = iommufd_probe, .open = iommufd_open, .attach = pgt__ofl_bm_attach,
	.start = iommufd_start, .harvest = pgt__ofl_bm_harvest, .stop = pgt__ofl_bm_stop,
	.detach = pgt__ofl_bm_detach, .close = pgt__ofl_bm_close,
};
