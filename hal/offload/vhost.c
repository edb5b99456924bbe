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
 *
 * With a swap callback (include/pgtrack/offload.h has the protocol) there
 * are two logs: each harvest moves the back-end to the spare one and, once
 * it acknowledged, reads the old one with plain loads straight into the
 * views and clears it; it is the spare of the next harvest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal/hal.h"
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
	uint64_t *log;       /* the one the back-end logs into */
	uint64_t log_size;   /* bytes */
	uint64_t *buf;
	/* swap mode: the other log, quiescent between harvests */
	int spare_fd;
	uint64_t *spare;
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
	v->spare_fd = -1;
	if (c) {
		ret = pgt__ofl_cfg_size(c, offsetof(struct pgt_offload_vhost_config, swap), sizeof(*c));
		if (!ret)
			memcpy(&v->cfg, c, c->size < sizeof(*c) ? c->size : sizeof(*c));
		if (!ret && v->cfg.fd >= 0 &&
		    (!v->cfg.log_size || (v->cfg.fd_offset & 4095) || (v->cfg.log_size & 7)))
			ret = -EINVAL;
		if (!ret && v->cfg.swap && v->cfg.fd >= 0)
			ret = -EINVAL; /* swapping needs both logs pgtrack's */
		if (ret) {
			free(v);
			return ret;
		}
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

/* A zeroed memfd log of @size bytes, mapped. */
static int new_log(struct pgt_ofl_dev *d, uint64_t size, int *fd, uint64_t **log)
{
	int err = 0;

	*fd = memfd_create("pgtrack-vhost-log", MFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)size)) {
		err = -errno;
	} else {
		*log = d->io->mmap(d->io->ctx, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
				   *fd, 0, &err);
		if (*log)
			return 0;
	}
	close(*fd);
	*fd = -1;
	return err;
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
	if (v->cfg.fd < 0) {
		err = new_log(d, need, &v->fd, &v->log);
		if (err)
			return err;
		v->own_fd = true;
		v->log_size = need;
		if (v->cfg.swap && (err = new_log(d, need, &v->spare_fd, &v->spare))) {
			d->io->munmap(d->io->ctx, v->log, (size_t)need);
			close(v->fd);
			v->log = NULL;
			v->fd = -1;
		}
		return err;
	}
	if (v->cfg.log_size < (end / LOG_PAGE + 7) / 8)
		return -EINVAL; /* the back-end could not log the whole map */
	v->fd = v->cfg.fd;
	v->log_size = v->cfg.log_size;
	v->log = d->io->mmap(d->io->ctx, (size_t)((v->log_size + 4095) & ~4095ULL),
			     PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, (off_t)v->cfg.fd_offset, &err);
	if (!v->log) {
		v->fd = -1;
		return err;
	}
	return 0;
}

/* Read and clear log words [w0, w1) of @log into the sink, in chunks, by
 * atomic exchange: the back-end may be writing. */
static void take_words(struct vhost *v, uint64_t *log, uint64_t w0, uint64_t w1,
		       const struct pgt_ofl_sink *sink)
{
	while (w0 < w1) {
		uint64_t n = w1 - w0 < CHUNK_WORDS ? w1 - w0 : CHUNK_WORDS;
		bool any = false;

		for (uint64_t i = 0; i < n; i++) {
			uint64_t *p = &log[w0 + i];
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

/* The same from a quiescent log: no writer, so the words go to the sink as
 * they are (plain SIMD loads, no copy) and are zeroed after. */
static void take_quiet(uint64_t *log, uint64_t w0, uint64_t w1, const struct pgt_ofl_sink *sink)
{
	while (w0 < w1) {
		uint64_t n = w1 - w0 < CHUNK_WORDS ? w1 - w0 : CHUNK_WORDS;

		if (sink->bitmap_take)
			sink->bitmap_take(sink->arg, w0 * 64 * LOG_PAGE, LOG_PAGE, log + w0, n * 64);
		else if (!pgt_hal_is_zero(log + w0, n * 8)) {
			sink->bitmap(sink->arg, w0 * 64 * LOG_PAGE, LOG_PAGE, log + w0, n * 64);
			memset(log + w0, 0, n * 8);
		}
		w0 += n;
	}
}

/* Every window's words of @log, once each, exchanged or plain. */
static void take_log(struct vhost *v, uint64_t *log, bool quiet, uint64_t iova, uint64_t len,
		     const struct pgt_ofl_sink *sink)
{
	uint64_t words = v->log_size / 8, done = 0;

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
		if (w0 < w1) {
			if (quiet)
				take_quiet(log, w0, w1, sink);
			else
				take_words(v, log, w0, w1, sink);
		}
		if (w1 > done)
			done = w1;
	}
}

/*
 * Swap mode: move the back-end to the spare log, then take the old one
 * quietly. A failed swap leaves it unknown which log the back-end writes:
 * both are taken by exchange, which is right either way.
 */
static int vhost_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			 const struct pgt_ofl_sink *sink)
{
	struct vhost *v = d->priv;
	uint64_t *old;
	int fd;

	(void)flags;
	if (!v->log)
		return -ENOENT;
	if (!v->cfg.swap) {
		take_log(v, v->log, false, iova, len, sink);
		return 0;
	}
	/* the spare's clearing stores before the back-end may write it */
	atomic_thread_fence(memory_order_release);
	if (v->cfg.swap(v->cfg.swap_arg, v->spare_fd, v->log_size)) {
		take_log(v, v->log, false, 0, 0, sink);
		take_log(v, v->spare, false, 0, 0, sink);
		return 0;
	}
	/* the back-end's last writes to the old log before its ack */
	atomic_thread_fence(memory_order_acquire);
	old = v->log;
	fd = v->fd;
	v->log = v->spare;
	v->fd = v->spare_fd;
	v->spare = old;
	v->spare_fd = fd;
	/* the whole log: a bit outside [iova, len) must not stay behind in a
	 * log the back-end will be handed again */
	take_log(v, old, true, 0, 0, sink);
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
	if (v->spare)
		d->io->munmap(d->io->ctx, v->spare, (size_t)v->log_size);
	if (v->own_fd && v->fd >= 0)
		close(v->fd);
	if (v->spare_fd >= 0)
		close(v->spare_fd);
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
