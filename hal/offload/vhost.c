/* SPDX-License-Identifier: MIT */
/*
 * The "vhost-log" backend: the vhost-user dirty log. The back-end (DPDK's
 * vhost library, rte_vhost_log_write()) sets one bit per 4 KiB of
 * guest-physical memory, log[page / 8] |= 1 << page % 8, with a byte-wide
 * atomic OR, in a memory the front-end shared with VHOST_USER_SET_LOG_BASE.
 * We read and clear it 64 bits at a time with an atomic exchange, as QEMU
 * does: a bit the back-end sets after the exchange stays for the next
 * harvest, none is lost. Reading a byte-wise log as 64-bit words needs a
 * little-endian host (x86_64, aarch64).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal/offload/offload.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the vhost log is read as little-endian 64-bit words");

#define LOG_PAGE 4096ULL
#define CHUNK_WORDS 8192 /* 32 MiB of guest memory per sink call */

struct vhost {
	struct pgt_offload_vhost_config cfg;
	struct pgt_ofl_win *win;
	unsigned nwin;
	int fd;
	bool own_fd;
	uint64_t *log;
	uint64_t log_size;   /* bytes */
	uint64_t *buf;
};

static int vhost_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		       size_t n)
{
	(void)io;
	return pgt__ofl_caps(caps, PGT_OFFLOAD_BITMAP, 0, LOG_PAGE, 0, 0, why, n,
			     "memfd log, 1 bit per 4 KiB of guest-physical memory");
}

static int vhost_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_vhost_config *c = cfgp;
	struct vhost *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->fd = -1;
	v->cfg.fd = -1;
	if (c) {
		ret = pgt__ofl_cfg_size(c, sizeof(*c), sizeof(*c));
		if (!ret && c->fd >= 0 && (!c->log_size || (c->fd_offset & 4095) || (c->log_size & 7)))
			ret = -EINVAL;
		if (ret) {
			free(v);
			return ret;
		}
		v->cfg = *c;
	}
	v->buf = malloc(CHUNK_WORDS * sizeof(uint64_t));
	if (!v->buf) {
		free(v);
		return -ENOMEM;
	}
	d->priv = v;
	return 0;
}

static int vhost_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	struct vhost *v = d->priv;

	return pgt__ofl_keep_windows(&v->win, &v->nwin, w, n);
}

static int vhost_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct vhost *v = d->priv;
	uint64_t end = 0, need;
	int err = 0;

	if (*page_size && *page_size != LOG_PAGE)
		return -EINVAL;
	*page_size = LOG_PAGE;
	if (v->log)
		return 0;
	for (unsigned i = 0; i < v->nwin; i++)
		if (v->win[i].iova + v->win[i].len > end)
			end = v->win[i].iova + v->win[i].len;
	/* bytes of log covering [0, end), whole 64-bit words, whole pages */
	need = ((end / LOG_PAGE + 63) / 64) * 8;
	need = (need + 4095) & ~4095ULL;
	if (v->cfg.fd >= 0) {
		if (v->cfg.log_size < (end / LOG_PAGE + 7) / 8)
			return -EINVAL; /* the back-end could not log the whole map */
		v->fd = v->cfg.fd;
		v->log_size = v->cfg.log_size;
	} else {
		v->fd = memfd_create("pgtrack-vhost-log", MFD_CLOEXEC);
		if (v->fd < 0)
			return -errno;
		v->own_fd = true;
		if (ftruncate(v->fd, (off_t)need)) {
			err = -errno;
			close(v->fd);
			v->fd = -1;
			return err;
		}
		v->log_size = need;
	}
	v->log = d->io->mmap(d->io->ctx, (size_t)((v->log_size + 4095) & ~4095ULL),
			     PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
			     (off_t)(v->own_fd ? 0 : v->cfg.fd_offset), &err);
	if (!v->log) {
		if (v->own_fd)
			close(v->fd);
		v->fd = -1;
		return err;
	}
	return 0;
}

/* Read and clear log words [w0, w1) into the sink, in chunks. */
static void take_words(struct vhost *v, uint64_t w0, uint64_t w1, const struct pgt_ofl_sink *sink)
{
	while (w0 < w1) {
		uint64_t n = w1 - w0 < CHUNK_WORDS ? w1 - w0 : CHUNK_WORDS;
		bool any = false;

		for (uint64_t i = 0; i < n; i++) {
			uint64_t *p = &v->log[w0 + i];
			uint64_t x = __atomic_load_n(p, __ATOMIC_RELAXED);

			/* the exchange only where there is something to take:
			 * most of a log is zero, and a locked RMW costs 20x a load */
			if (x)
				x = __atomic_exchange_n(p, 0, __ATOMIC_ACQ_REL);
			v->buf[i] = x;
			any |= x != 0;
		}
		if (any)
			sink->bitmap(sink->arg, w0 * 64 * LOG_PAGE, LOG_PAGE, v->buf, n * 64);
		w0 += n;
	}
}

static int vhost_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			 const struct pgt_ofl_sink *sink)
{
	struct vhost *v = d->priv;
	uint64_t words = v->log_size / 8, done = 0;

	(void)flags;
	if (!v->log)
		return -ENOENT;
	/* windows are sorted by IOVA: a word shared by two is taken once */
	for (unsigned i = 0; i < v->nwin; i++) {
		uint64_t lo = v->win[i].iova, hi = lo + v->win[i].len, w0, w1;

		if (len) {
			if (lo < iova)
				lo = iova;
			if (hi > iova + len)
				hi = iova + len;
			if (hi <= lo)
				continue;
		}
		w0 = lo / LOG_PAGE / 64;
		w1 = (hi / LOG_PAGE + 63) / 64;
		if (w1 > words)
			w1 = words;
		if (w0 < done)
			w0 = done;
		if (w0 < w1)
			take_words(v, w0, w1, sink);
		if (w1 > done)
			done = w1;
	}
	return 0;
}

static int vhost_stop(struct pgt_ofl_dev *d)
{
	(void)d; /* the back-end logs while the front-end says so */
	return 0;
}

static void vhost_detach(struct pgt_ofl_dev *d)
{
	struct vhost *v = d->priv;

	free(v->win);
	v->win = NULL;
	v->nwin = 0;
}

static void vhost_close(struct pgt_ofl_dev *d)
{
	struct vhost *v = d->priv;

	if (!v)
		return;
	vhost_detach(d);
	if (v->log)
		d->io->munmap(d->io->ctx, v->log, (size_t)((v->log_size + 4095) & ~4095ULL));
	if (v->own_fd && v->fd >= 0)
		close(v->fd);
	free(v->buf);
	free(v);
	d->priv = NULL;
}

static void vhost_info(const struct pgt_ofl_dev *d, struct pgt_offload_info *info)
{
	const struct vhost *v = d->priv;

	info->log_fd = v->fd;
	info->log_size = v->log ? v->log_size : 0;
}

const struct pgt_ofl_ops pgt__ofl_vhost = {
	.name = "vhost-log", .shape = PGT_OFFLOAD_BITMAP,
	.probe = vhost_probe, .open = vhost_open, .attach = vhost_attach, .start = vhost_start,
	.harvest = vhost_harvest, .stop = vhost_stop, .detach = vhost_detach,
	.close = vhost_close, .info = vhost_info,
};
