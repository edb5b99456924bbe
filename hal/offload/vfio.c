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

#define REPORT_BITS (1ULL << 20) /* 128 KiB of bitmap per REPORT */

struct vfio {
	int fd;
	struct pgt_ofl_win *win;
	unsigned nwin;
	uint64_t page_size;
	bool started;
	uint64_t *bits;
};

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

	caps->shape = PGT_OFFLOAD_BITMAP;
	caps->flags = PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_PAGE_SIZE_SET;
	caps->page_sizes = ~0ULL << 12;
	caps->granularity = 4096;
	caps->max_ranges = (uint32_t)PGT_VFIO_LOG_MAX_RANGES;
	if (!legacy && !cdev) {
		snprintf(why, n, "no VFIO: /dev/vfio/vfio and /dev/vfio/devices absent");
		return -ENODEV;
	}
	snprintf(why, n, "VFIO present; DMA logging is probed on the device fd at open");
	return 0;
}

static int vfio_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_vfio_config *c = cfgp;
	struct vfio *v;
	int ret;

	if (!c)
		return -EINVAL;
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
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->bits = malloc(REPORT_BITS / 8);
	if (!v->bits) {
		free(v);
		return -ENOMEM;
	}
	v->fd = c->device_fd;
	d->priv = v;
	return 0;
}

static int vfio_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	struct vfio *v = d->priv;
	struct pgt_ofl_win *win;

	if (n > PGT_VFIO_LOG_MAX_RANGES)
		return -E2BIG;
	win = malloc(n * sizeof(*win));
	if (!win)
		return -ENOMEM;
	memcpy(win, w, n * sizeof(*w));
	free(v->win);
	v->win = win;
	v->nwin = n;
	return 0;
}

static int vfio_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct vfio *v = d->priv;
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

static int report(struct pgt_ofl_dev *d, struct vfio *v, uint64_t lo, uint64_t hi,
		  const struct pgt_ofl_sink *sink)
{
	while (lo < hi) {
		uint64_t nbits = (hi - lo) / v->page_size;
		struct vfio_device_feature_dma_logging_report rep;
		int ret;

		if (nbits > REPORT_BITS)
			nbits = REPORT_BITS;
		memset(v->bits, 0, (size_t)((nbits + 63) / 64 * 8));
		rep = (struct vfio_device_feature_dma_logging_report){
			.iova = lo, .length = nbits * v->page_size, .page_size = v->page_size,
			.bitmap = (uintptr_t)v->bits,
		};
		ret = feature(d, v->fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			      &rep, sizeof(rep));
		if (ret)
			return ret;
		sink->bitmap(sink->arg, lo, v->page_size, v->bits, nbits);
		lo += nbits * v->page_size;
	}
	return 0;
}

static int vfio_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			const struct pgt_ofl_sink *sink)
{
	struct vfio *v = d->priv;
	uint64_t done = 0;

	(void)flags;
	if (!v->started)
		return -ENOENT;
	for (unsigned i = 0; i < v->nwin; i++) {
		uint64_t a = v->win[i].iova, b = a + v->win[i].len, lo, hi;
		int ret;

		if (len) {
			a = a > iova ? a : iova;
			b = b < iova + len ? b : iova + len;
			if (b <= a)
				continue;
		}
		if (!pgt__ofl_span(a, b - a, v->page_size, &lo, &hi))
			continue;
		if (lo < done)
			lo = done; /* a page shared with the previous window */
		if (lo >= hi)
			continue;
		ret = report(d, v, lo, hi, sink);
		if (ret) {
			pgt__ofl_log(d, PGT_LOG_ERR, "vfio: DMA logging report failed: %s",
				     strerror(-ret));
			/* the uAPI's rule: the log is corrupt, everything is dirty */
			sink->lost(sink->arg, ret);
			return ret;
		}
		done = hi;
	}
	return 0;
}

static int vfio_stop(struct pgt_ofl_dev *d)
{
	struct vfio *v = d->priv;

	if (!v->started)
		return 0;
	v->started = false;
	return feature(d, v->fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
		       NULL, 0);
}

static void vfio_detach(struct pgt_ofl_dev *d)
{
	struct vfio *v = d->priv;

	vfio_stop(d);
	free(v->win);
	v->win = NULL;
	v->nwin = 0;
}

static void vfio_close(struct pgt_ofl_dev *d)
{
	struct vfio *v = d->priv;

	if (!v)
		return;
	vfio_detach(d);
	free(v->bits);
	free(v);
	d->priv = NULL;
}

const struct pgt_ofl_ops pgt__ofl_vfio = {
	.name = "vfio", .shape = PGT_OFFLOAD_BITMAP,
	.probe = vfio_probe, .open = vfio_open, .attach = vfio_attach, .start = vfio_start,
	.harvest = vfio_harvest, .stop = vfio_stop, .detach = vfio_detach, .close = vfio_close,
};
