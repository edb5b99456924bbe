/* SPDX-License-Identifier: MIT */
/*
 * The "vfio" backend: VFIO device DMA logging (Linux 6.2 uAPI,
 * include/uapi/linux/vfio.h), on a device fd the VMM opened.
 *
 * START takes the IOVA ranges and a page size that is only a hint: the
 * driver picks what the device can do and writes it back. REPORT reads and
 * clears the device's log for a range into a bitmap at any power-of-two page
 * size >= 4 KiB, relative to the range's start, and only ever sets bits
 * (we zero the buffer). If any call fails the log must be assumed corrupt:
 * the uAPI says to treat all memory as dirty, and so we do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/compat_uapi.h"
#include "hal/offload/offload.h"

/* A feature call: header + payload in one buffer, as the ioctl wants. */
static int feature(struct pgt_ofl_dev *d, int fd, uint32_t flags, void *payload, size_t len)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[sizeof(struct vfio_device_feature) + 64];
	} u;
	int ret;

	if (len > 64)
		return -EINVAL;
	memset(&u, 0, sizeof(u));
	u.f.argsz = (uint32_t)(sizeof(u.f) + len);
	u.f.flags = flags;
	if (len)
		memcpy(u.f.data, payload, len);
	ret = d->io->ioctl(d->io->ctx, fd, VFIO_DEVICE_FEATURE, &u);
	if (ret >= 0 && len)
		memcpy(payload, u.f.data, len);
	return ret < 0 ? ret : 0;
}

static int vfio_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		      size_t n)
{
	bool legacy = !io->exists(io->ctx, "/dev/vfio/vfio");
	bool cdev = !io->exists(io->ctx, "/dev/vfio/devices");

	if (!legacy && !cdev)
		return pgt__ofl_caps(caps, PGT_OFFLOAD_BITMAP,
				     PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_PAGE_SIZE_SET, ~0ULL << 12,
				     (uint32_t)PGT_VFIO_LOG_MAX_RANGES, -ENODEV, why, n,
				     "no VFIO: /dev/vfio/vfio and /dev/vfio/devices absent");
	return pgt__ofl_caps(caps, PGT_OFFLOAD_BITMAP,
			     PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_PAGE_SIZE_SET, ~0ULL << 12,
			     (uint32_t)PGT_VFIO_LOG_MAX_RANGES, 0, why, n,
			     "VFIO present; DMA logging is probed on the device fd at open");
}

static int vfio_read(struct pgt_ofl_dev *d, uint64_t lo, uint64_t nbits, uint32_t flags)
{
	struct pgt_ofl_bmdev *v = d->priv;
	struct vfio_device_feature_dma_logging_report rep = {
		.iova = lo, .length = nbits * v->page_size, .page_size = v->page_size,
		.bitmap = (uintptr_t)v->bits,
	};

	(void)flags; /* REPORT always clears */
	return feature(d, v->fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
		       &rep, sizeof(rep));
}

static int vfio_off(struct pgt_ofl_dev *d)
{
	struct pgt_ofl_bmdev *v = d->priv;

	return feature(d, v->fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
		       NULL, 0);
}

static int vfio_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_vfio_config *c = cfgp;
	struct pgt_ofl_bmdev *v;
	int ret;

	ret = pgt__ofl_cfg_size(c, sizeof(*c), sizeof(*c));
	if (ret)
		return ret;
	if (c->device_fd < 0)
		return -EINVAL;
	/* PROBE|SET: does this device do DMA logging at all? */
	ret = feature(d, c->device_fd,
		      VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
			      VFIO_DEVICE_FEATURE_DMA_LOGGING_START, NULL, 0);
	if (ret) {
		pgt__ofl_log(d, PGT_LOG_WARN, "vfio: device fd %d has no DMA logging: %s",
			     c->device_fd, strerror(-ret));
		return ret == -ENOTTY || ret == -EINVAL || ret == -EOPNOTSUPP ? -EOPNOTSUPP : ret;
	}
	ret = pgt__ofl_bm_new(d, c->device_fd, 0, "vfio");
	if (ret)
		return ret;
	v = d->priv;
	v->read = vfio_read;
	v->off = vfio_off;
	return 0;
}

static int vfio_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	if (n > PGT_VFIO_LOG_MAX_RANGES)
		return -E2BIG;
	return pgt__ofl_bm_attach(d, w, n);
}

static int vfio_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct pgt_ofl_bmdev *v = d->priv;
	struct vfio_device_feature_dma_logging_range *r;
	struct vfio_device_feature_dma_logging_control ctl = {
		.page_size = *page_size ? *page_size : 4096,
	};
	uint32_t k = 0;
	int ret;

	r = calloc(v->nwin ? v->nwin : 1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (unsigned i = 0; i < v->nwin; i++) {
		/* START wants ranges aligned to the page size asked for, and
		 * refuses overlapping ones: rounding may make windows touch */
		uint64_t lo, hi;

		if (!pgt__ofl_span(v->win[i].iova, v->win[i].len, ctl.page_size, &lo, &hi)) {
			free(r);
			return -EINVAL;
		}
		if (k && lo <= r[k - 1].iova + r[k - 1].length) {
			if (hi > r[k - 1].iova + r[k - 1].length)
				r[k - 1].length = hi - r[k - 1].iova;
			continue;
		}
		r[k].iova = lo;
		r[k].length = hi - lo;
		k++;
	}
	ctl.num_ranges = k;
	ctl.ranges = (uintptr_t)r;
	ret = feature(d, v->fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
		      &ctl, sizeof(ctl));
	free(r);
	if (ret)
		return ret;
	/* the driver's choice; the uAPI promises a power of two */
	if (ctl.page_size < 4096 || (ctl.page_size & (ctl.page_size - 1))) {
		feature(d, v->fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
			NULL, 0);
		return -EIO;
	}
	if (ctl.page_size != (*page_size ? *page_size : 4096))
		pgt__ofl_log(d, PGT_LOG_INFO, "vfio: the driver logs at %llu KiB, not %llu KiB",
			     (unsigned long long)(ctl.page_size >> 10),
			     (unsigned long long)((*page_size ? *page_size : 4096) >> 10));
	v->page_size = ctl.page_size;
	v->started = true;
	*page_size = ctl.page_size;
	return 0;
}

const struct pgt_ofl_ops pgt__ofl_vfio = {
	.name = "vfio", .shape = PGT_OFFLOAD_BITMAP,
	.probe = vfio_probe, .open = vfio_open, .attach = vfio_attach, .start = vfio_start,
	.harvest = pgt__ofl_bm_harvest, .stop = pgt__ofl_bm_stop, .detach = pgt__ofl_bm_detach,
	.close = pgt__ofl_bm_close,
};
