/* SPDX-License-Identifier: MIT */
/*
 * What every offload backend shares: the real side of the I/O seam, the
 * backend table, and the producer side of the native ring
 * (docs/offload-ring.md), which the sim device and the tests use.
 */
#include <errno.h>
#include <stdarg.h>
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
