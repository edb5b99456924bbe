/* SPDX-License-Identifier: MIT */
/*
 * The "chmu" backend: a CXL hotness monitoring unit. It counts accesses per
 * unit of device memory over an epoch and, at the end of each, appends the
 * units whose count reached the threshold to a hot list: 64-bit entries,
 * the count in the low (counter width) bits, the unit index above. The host
 * reads entries from head to tail and writes head = tail. This is access
 * hotness, not dirtiness: it feeds the age view, never the dirty views.
 *
 * Register values are untrusted like any device data: head and tail are
 * checked against the list size, entries against the map.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/offload/chmu.h"
#include "hal/offload/offload.h"

struct chmu {
	struct pgt_offload_chmu_config cfg;
	volatile uint8_t *inst;      /* instance registers */
	uint32_t list_size;
	uint64_t list_off;
	unsigned width;              /* counter bits */
	uint64_t units_ok;           /* CAP2 sizes mask */
	uint64_t min_epoch_us, max_epoch_us;
	uint64_t unit_size;
	bool started;
	uint64_t *buf;
	uint64_t overflows, bad_regs;
};

static uint64_t rd(struct pgt_ofl_dev *d, const struct chmu *c, unsigned off)
{
	return d->io->rd64(d->io->ctx, c->inst + off);
}

static void wr(struct pgt_ofl_dev *d, const struct chmu *c, unsigned off, uint64_t v)
{
	d->io->wr64(d->io->ctx, c->inst + off, v);
}

static int chmu_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		      size_t n)
{
	int ret = io->exists(io->ctx, "/sys/bus/cxl/devices");

	if (ret)
		return pgt__ofl_caps(caps, PGT_OFFLOAD_HOTLIST, PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_HOTNESS,
				     ~0ULL << 8, 0, -ENODEV, why, n,
				     "no CXL bus: /sys/bus/cxl/devices absent (%s)", strerror(-ret));
	return pgt__ofl_caps(caps, PGT_OFFLOAD_HOTLIST, PGT_OFFLOAD_CAP_HW | PGT_OFFLOAD_CAP_HOTNESS,
			     ~0ULL << 8, 0, 0, why, n,
			     "CXL bus present; a CHMU register block must be mapped by the caller");
}

static int chmu_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_chmu_config *cfg = cfgp;
	struct chmu *c;
	uint64_t cap1, cap2, common1, common2, stat, ilen, ninst;
	int ret;

	ret = pgt__ofl_cfg_size(cfg, sizeof(*cfg), sizeof(*cfg));
	if (ret)
		return ret;
	if (!cfg->regs || cfg->regs_len < PGT_CHMU_INST0 || ((uintptr_t)cfg->regs & 7))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	d->priv = c;
	c->cfg = *cfg;
	common1 = d->io->rd64(d->io->ctx, (volatile uint8_t *)cfg->regs + PGT_CHMU_COMMON_CAP1);
	common2 = d->io->rd64(d->io->ctx, (volatile uint8_t *)cfg->regs + PGT_CHMU_COMMON_CAP2);
	ninst = pgt_chmu_field(common1, 8, 15);
	ilen = pgt_chmu_field(common2, 0, 15);
	/* registers are 64-bit: an instance length that is not a multiple of
	 * 8 is a broken device (found by fuzz_offload_chmu) */
	if (ilen & 7) {
		pgt__ofl_log(d, PGT_LOG_WARN, "chmu: instance length %llu is not 8-byte aligned",
			     (unsigned long long)ilen);
		return -EIO;
	}
	if (cfg->instance >= ninst || ilen < PGT_CHMU_HEADTAIL + 8 ||
	    PGT_CHMU_INST0 + (cfg->instance + 1) * ilen > cfg->regs_len) {
		pgt__ofl_log(d, PGT_LOG_WARN, "chmu: instance %u of %llu (length %llu) outside the block",
			     cfg->instance, (unsigned long long)ninst, (unsigned long long)ilen);
		return -EINVAL;
	}
	c->inst = (volatile uint8_t *)cfg->regs + PGT_CHMU_INST0 + cfg->instance * ilen;
	cap1 = rd(d, c, PGT_CHMU_CAP1);
	cap2 = rd(d, c, PGT_CHMU_CAP2);
	stat = rd(d, c, PGT_CHMU_STAT);
	c->list_size = (uint32_t)pgt_chmu_field(cap1, 48, 63);
	c->list_off = rd(d, c, PGT_CHMU_CAP4);
	c->width = (unsigned)pgt_chmu_field(stat, 32, 39);
	c->units_ok = pgt_chmu_field(cap2, 0, 31);
	c->max_epoch_us = pgt_chmu_epoch_us(pgt_chmu_field(cap1, 16, 31));
	c->min_epoch_us = pgt_chmu_epoch_us(pgt_chmu_field(cap1, 32, 47));
	/* the hot list must lie inside the instance */
	if (c->list_size < 2 || c->list_off < PGT_CHMU_HEADTAIL + 8 ||
	    c->list_off > ilen || (c->list_off & 7) ||
	    (uint64_t)c->list_size * 8 > ilen - c->list_off || !c->width || c->width > 63 ||
	    !c->units_ok) {
		pgt__ofl_log(d, PGT_LOG_WARN, "chmu: inconsistent capabilities (list %u at %#llx, "
			     "width %u, units %#llx)", c->list_size, (unsigned long long)c->list_off,
			     c->width, (unsigned long long)c->units_ok);
		return -EIO;
	}
	if (cfg->unit_size) {
		unsigned b = (unsigned)__builtin_ctzll(cfg->unit_size);

		if ((cfg->unit_size & (cfg->unit_size - 1)) || b < 8 || b > 39 ||
		    !(c->units_ok >> (b - 8) & 1))
			return -EINVAL;
		c->unit_size = cfg->unit_size;
	} else {
		c->unit_size = 1ULL << (__builtin_ctzll(c->units_ok) + 8);
	}
	if (cfg->epoch_us && ((c->min_epoch_us && cfg->epoch_us < c->min_epoch_us) ||
			      (c->max_epoch_us && cfg->epoch_us > c->max_epoch_us)))
		return -EINVAL;
	c->buf = malloc((size_t)c->list_size * sizeof(uint64_t));
	if (!c->buf)
		return -ENOMEM;
	return 0;
}

static int chmu_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	(void)d, (void)w, (void)n;
	return 0;
}

static int chmu_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct chmu *c = d->priv;
	uint64_t epoch = c->cfg.epoch_us ? c->cfg.epoch_us : c->min_epoch_us ? c->min_epoch_us : 1000;
	uint32_t thr = c->cfg.threshold ? c->cfg.threshold : 1;

	if (*page_size && *page_size != c->unit_size)
		return -EINVAL;
	*page_size = c->unit_size;
	/* reset, then configure, then enable */
	wr(d, c, PGT_CHMU_CFG1, (uint64_t)PGT_CHMU_CTL_RESET << 16);
	wr(d, c, PGT_CHMU_CFG2, (c->unit_size & 0xffffffffULL) | (pgt_chmu_epoch_enc(epoch) << 48));
	wr(d, c, PGT_CHMU_CFG1, PGT_CHMU_M2S_ALL | ((uint64_t)PGT_CHMU_CTL_ENABLE << 16) |
				((uint64_t)thr << 32));
	c->started = true;
	return 0;
}

static int chmu_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			const struct pgt_ofl_sink *sink)
{
	struct chmu *c = d->priv;
	uint64_t ht, stat;
	uint32_t head, tail, n = 0;

	(void)iova, (void)len, (void)flags;
	if (!c->started)
		return -ENOENT;
	stat = rd(d, c, PGT_CHMU_STAT);
	if (pgt_chmu_field(stat, 40, 47) & PGT_CHMU_STAT_OVERFLOW) {
		/* hot units were dropped: hotness is a hint, count it and go on */
		c->overflows++;
		wr(d, c, PGT_CHMU_STAT, (uint64_t)PGT_CHMU_STAT_OVERFLOW << 40);
	}
	ht = rd(d, c, PGT_CHMU_HEADTAIL);
	head = (uint32_t)pgt_chmu_field(ht, 0, 15);
	tail = (uint32_t)pgt_chmu_field(ht, 16, 31);
	if (head >= c->list_size || tail >= c->list_size) {
		c->bad_regs++;
		pgt__ofl_log(d, PGT_LOG_WARN, "chmu: hot list head %u tail %u past its %u entries",
			     head, tail, c->list_size);
		if (tail < c->list_size)
			wr(d, c, PGT_CHMU_HEADTAIL, tail);
		return -EIO;
	}
	for (uint32_t i = head; i != tail; i = (i + 1) % c->list_size)
		c->buf[n++] = d->io->rd64(d->io->ctx, c->inst + c->list_off + (uint64_t)i * 8);
	if (n)
		sink->hot(sink->arg, c->buf, n, c->width, c->unit_size);
	/* the entries are read before the unit may reuse them */
	wr(d, c, PGT_CHMU_HEADTAIL, tail);
	return 0;
}

static int chmu_stop(struct pgt_ofl_dev *d)
{
	struct chmu *c = d->priv;

	if (c->started)
		wr(d, c, PGT_CHMU_CFG1, 0);
	c->started = false;
	return 0;
}

static void chmu_detach(struct pgt_ofl_dev *d)
{
	(void)d;
}

static void chmu_close(struct pgt_ofl_dev *d)
{
	struct chmu *c = d->priv;

	if (!c)
		return;
	if (c->inst)
		chmu_stop(d);
	free(c->buf);
	free(c);
	d->priv = NULL;
}

static void chmu_info(const struct pgt_ofl_dev *d, struct pgt_offload_info *info)
{
	const struct chmu *c = d->priv;

	info->lost += c->overflows;
	info->device_errors += c->bad_regs;
}

const struct pgt_ofl_ops pgt__ofl_chmu = {
	.name = "chmu", .shape = PGT_OFFLOAD_HOTLIST,
	.probe = chmu_probe, .open = chmu_open, .attach = chmu_attach, .start = chmu_start,
	.harvest = chmu_harvest, .stop = chmu_stop, .detach = chmu_detach, .close = chmu_close,
	.info = chmu_info,
};
