/* SPDX-License-Identifier: MIT */
/*
 * What every offload backend shares: the real side of the I/O seam, the
 * backend table, and the producer side of the native ring
 * (docs/offload-ring.md), which the sim device and the tests use.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal/export.h"
#include "hal/offload/offload.h"

/* ---- the real seam ---- */

static int real_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	int ret;

	(void)ctx;
	do
		ret = ioctl(fd, req, arg);
	while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : ret;
}

static void *real_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, int *err)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);

	(void)ctx;
	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	return p;
}

static int real_munmap(void *ctx, void *p, size_t len)
{
	(void)ctx;
	return munmap(p, len) ? -errno : 0;
}

/* Device registers: one 64-bit access each, never merged or split. */
static uint64_t real_rd64(void *ctx, const volatile void *reg)
{
	(void)ctx;
	return *(const volatile uint64_t *)reg;
}

static void real_wr64(void *ctx, volatile void *reg, uint64_t v)
{
	(void)ctx;
	*(volatile uint64_t *)reg = v;
}

static int real_exists(void *ctx, const char *path)
{
	(void)ctx;
	return access(path, F_OK) ? -errno : 0;
}

const struct pgt_ofl_io pgt__ofl_io_real = {
	.ioctl = real_ioctl, .mmap = real_mmap, .munmap = real_munmap,
	.rd64 = real_rd64, .wr64 = real_wr64, .exists = real_exists,
};

/* ---- backends ---- */

const struct pgt_ofl_ops *const pgt__ofl_backends[] = {
	&pgt__ofl_sim, &pgt__ofl_ring, &pgt__ofl_kvm, &pgt__ofl_vhost, &pgt__ofl_vfio, &pgt__ofl_iommufd,
	&pgt__ofl_chmu, NULL,
};

const struct pgt_ofl_ops *pgt__ofl_backend(const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 0; pgt__ofl_backends[i]; i++)
		if (!strcmp(pgt__ofl_backends[i]->name, name))
			return pgt__ofl_backends[i];
	return NULL;
}

void pgt__ofl_log(struct pgt_ofl_dev *d, int level, const char *fmt, ...)
{
	va_list ap;

	if (!d->log)
		return;
	va_start(ap, fmt);
	d->log(d->svc, level, fmt, ap);
	va_end(ap);
}

int pgt__ofl_cfg_size(const void *cfg, size_t v1, size_t known)
{
	if (!cfg)
		return -EINVAL;
	return pgt__arg_in(cfg, *(const uint32_t *)cfg, v1, known);
}

bool pgt__ofl_span(uint64_t iova, uint64_t len, uint64_t ps, uint64_t *lo, uint64_t *hi)
{
	uint64_t end = iova + len < iova ? UINT64_MAX : iova + len;

	if (!len)
		return false;
	*lo = iova & ~(ps - 1);
	*hi = end > UINT64_MAX - (ps - 1) ? UINT64_MAX & ~(ps - 1) : (end + ps - 1) & ~(ps - 1);
	return *hi > *lo;
}

int pgt__ofl_keep_windows(struct pgt_ofl_win **keep, unsigned *nkeep, const struct pgt_ofl_win *w,
			  unsigned n)
{
	struct pgt_ofl_win *c = malloc((n ? n : 1) * sizeof(*c));

	if (!c)
		return -ENOMEM;
	memcpy(c, w, n * sizeof(*w));
	free(*keep);
	*keep = c;
	*nkeep = n;
	return 0;
}

int pgt__ofl_caps(struct pgt_offload_caps *caps, uint32_t shape, uint32_t flags, uint64_t sizes,
		  uint32_t max_ranges, int status, char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	caps->shape = shape;
	caps->flags = flags;
	caps->page_sizes = sizes;
	caps->granularity = sizes & -sizes;
	caps->max_ranges = max_ranges;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return status;
}

/* ---- bitmap devices (VFIO, IOMMUFD) ---- */

int pgt__ofl_bm_new(struct pgt_ofl_dev *d, int fd, uint32_t id, const char *what)
{
	struct pgt_ofl_bmdev *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	/* page-aligned: merged with vector loads that must not split lines */
	b->bits = aligned_alloc(4096, PGT_OFL_REPORT_BITS / 8);
	if (!b->bits) {
		free(b);
		return -ENOMEM;
	}
	b->fd = fd;
	b->id = id;
	b->what = what;
	d->priv = b;
	return 0;
}

int pgt__ofl_bm_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	struct pgt_ofl_bmdev *b = d->priv;

	return pgt__ofl_keep_windows(&b->win, &b->nwin, w, n);
}

int pgt__ofl_bm_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			const struct pgt_ofl_sink *sink)
{
	struct pgt_ofl_bmdev *b = d->priv;
	uint64_t done = 0;

	if (!b->started)
		return -ENOENT;
	for (unsigned i = 0; i < b->nwin; i++) {
		uint64_t a = b->win[i].iova, e = a + b->win[i].len, lo, hi;

		if (len) {
			a = a > iova ? a : iova;
			e = e < iova + len ? e : iova + len;
			if (e <= a)
				continue;
		}
		/* whole device pages; one shared with the previous window is read once */
		if (!pgt__ofl_span(a, e - a, b->page_size, &lo, &hi))
			continue;
		if (lo < done)
			lo = done;
		while (lo < hi) {
			uint64_t nbits = (hi - lo) / b->page_size;
			int ret;

			if (nbits > PGT_OFL_REPORT_BITS)
				nbits = PGT_OFL_REPORT_BITS;
			memset(b->bits, 0, (size_t)((nbits + 63) / 64 * 8));
			ret = b->read(d, lo, nbits, flags);
			if (ret) {
				pgt__ofl_log(d, PGT_LOG_ERR, "%s: reading the dirty log of [%#llx, %#llx): %s",
					     b->what, (unsigned long long)lo, (unsigned long long)hi,
					     strerror(-ret));
				/* the log is corrupt now: everything is dirty */
				sink->lost(sink->arg, ret);
				return ret;
			}
			sink->bitmap(sink->arg, lo, b->page_size, b->bits, nbits);
			lo += nbits * b->page_size;
		}
		done = hi;
	}
	return 0;
}

int pgt__ofl_bm_stop(struct pgt_ofl_dev *d)
{
	struct pgt_ofl_bmdev *b = d->priv;

	if (!b->started)
		return 0;
	b->started = false;
	return b->off(d);
}

void pgt__ofl_bm_detach(struct pgt_ofl_dev *d)
{
	struct pgt_ofl_bmdev *b = d->priv;

	pgt__ofl_bm_stop(d);
	free(b->win);
	b->win = NULL;
	b->nwin = 0;
}

void pgt__ofl_bm_close(struct pgt_ofl_dev *d)
{
	struct pgt_ofl_bmdev *b = d->priv;

	if (!b)
		return;
	pgt__ofl_bm_detach(d);
	free(b->bits);
	free(b);
	d->priv = NULL;
}

/* ---- the native ring, producer side ---- */

void pgt__ofl_ring_layout(void *mem, uint32_t entries)
{
	struct pgt_offload_ring_ctl *ctl = mem;

	memset(mem, 0, sizeof(*ctl) + (size_t)entries * sizeof(struct pgt_offload_rec));
	ctl->magic = PGT_OFFLOAD_RING_MAGIC;
	ctl->version = PGT_OFFLOAD_RING_VERSION;
	ctl->entries = entries;
	ctl->rec_offset = sizeof(*ctl);
	/* the header is complete before the ring's address is handed out */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

void pgt__ofl_prod_init(struct pgt_ofl_prod *p, struct pgt_offload_ring_ctl *ctl, uint32_t entries)
{
	memset(p, 0, sizeof(*p));
	p->ctl = ctl;
	p->recs = (struct pgt_offload_rec *)((char *)ctl + sizeof(*ctl));
	p->entries = entries;
	p->shift = (unsigned)__builtin_ctz(entries);
	p->prod = __atomic_load_n(&ctl->prod, __ATOMIC_RELAXED);
	p->lost_seq = __atomic_load_n(&ctl->lost_seq, __ATOMIC_RELAXED);
}

uint32_t pgt__ofl_produce(struct pgt_ofl_prod *p, const struct pgt_offload_rec *in, uint32_t n)
{
	/* acquire: the consumer's reads of the slots we reuse are done */
	uint32_t cons = __atomic_load_n(&p->ctl->cons, __ATOMIC_ACQUIRE);
	uint32_t used = p->prod - cons, room, k;

	/* a consumer index ahead of ours or a lap behind: trust neither */
	room = used > p->entries ? 0 : p->entries - used;
	k = n < room ? n : room;
	for (uint32_t i = 0; i < k; i++) {
		uint32_t idx = p->prod + i;
		struct pgt_offload_rec *r = &p->recs[idx & (p->entries - 1)];
		uint32_t f = (in[i].flags & ~PGT_OFFLOAD_REC_PHASE) |
			     (((idx >> p->shift) & 1) ? 0 : PGT_OFFLOAD_REC_PHASE);

		__atomic_store_n(&r->slot, in[i].slot, __ATOMIC_RELAXED);
		__atomic_store_n(&r->offset, in[i].offset, __ATOMIC_RELAXED);
		__atomic_store_n(&r->flags, f, __ATOMIC_RELAXED);
	}
	if (k < n) {
		/* overflow: never silent. Bumped before prod, so a consumer that
		 * sees the new records has every chance to see this too. */
		p->lost_seq++;
		__atomic_store_n(&p->ctl->lost_seq, p->lost_seq, __ATOMIC_RELEASE);
	}
	if (k) {
		p->prod += k;
		/* release: the records are written before the index says so */
		__atomic_store_n(&p->ctl->prod, p->prod, __ATOMIC_RELEASE);
	}
	return k;
}
