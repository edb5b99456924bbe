/* SPDX-License-Identifier: MIT */
/*
 * The "sim" backend: a device thread that does what an FPGA or SmartNIC
 * does — writes guest memory behind the CPU's page tables and logs each
 * write in a pgtrack-native ring (index protocol) in memory it can DMA into
 * (hugepages, or DPDK memory when an EAL is up). It is written from
 * docs/offload-ring.md alone, as a hardware team would, and shares nothing
 * with the consumer but the record layout.
 *
 * Ordering per write: data first, then the record, then (per batch) the
 * producer index with release. A harvest that sees the index therefore
 * finds the data written; a write whose record did not fit bumps lost_seq.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hal/hal.h"
#include "hal/offload/offload.h"

#define SIM_TICK_NS 1000000ULL /* pacing: 1 ms */
#define SIM_DEFAULT_ENTRIES 65536u
#define SIM_DEFAULT_BATCH 64u
#define SIM_MAX_WRITE (1u << 20)

struct sim {
	struct pgt_offload_sim_config cfg;
	bool external;          /* "ring": the producer is outside pgtrack */
	struct pgt_ofl_win *win;
	unsigned nwin;
	uint64_t *cum;          /* 4 KiB pages before window i */
	uint64_t pages;         /* 4 KiB pages in all windows */
	void *mem;
	size_t bytes;
	uint64_t mem_iova;
	struct pgt_ofl_prod prod;
	pthread_t th;
	bool running;
	_Atomic bool stop;
	uint64_t rng;
	uint64_t cursor;        /* SEQ: next page */
	struct pgt_offload_rec *batch;
	uint32_t nbatch;
	_Atomic uint64_t dropped;
};

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static int ring_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		      size_t n)
{
	(void)io;
	return pgt__ofl_caps(caps, PGT_OFFLOAD_RING, PGT_OFFLOAD_CAP_LOST, 1ULL << 12, 0, 0, why, n,
			     "native ring (index protocol) for an external producer: FPGA, SmartNIC");
}

static int sim_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		     size_t n)
{
	(void)io;
	return pgt__ofl_caps(caps, PGT_OFFLOAD_RING, PGT_OFFLOAD_CAP_LOST, 1ULL << 12, 0, 0, why, n,
			     "software device thread, native ring (index protocol)");
}

static int sim_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_sim_config *in = cfgp;
	struct sim *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	if (in) {
		ret = pgt__ofl_cfg_size(in, sizeof(*in), sizeof(*in));
		if (ret) {
			free(s);
			return ret;
		}
		s->cfg = *in;
	}
	s->cfg.size = sizeof(s->cfg);
	if (!in)
		s->cfg.cpu = -1;
	if (!s->cfg.write_bytes)
		s->cfg.write_bytes = 64;
	if (!s->cfg.ring_entries)
		s->cfg.ring_entries = SIM_DEFAULT_ENTRIES;
	if (!s->cfg.batch)
		s->cfg.batch = SIM_DEFAULT_BATCH;
	if (s->cfg.pattern > PGT_OFFLOAD_SIM_HOT || s->cfg.write_bytes < 8 ||
	    s->cfg.write_bytes % 8 || s->cfg.write_bytes > SIM_MAX_WRITE ||
	    s->cfg.ring_entries < PGT_OFFLOAD_RING_MIN ||
	    s->cfg.ring_entries > PGT_OFFLOAD_RING_MAX ||
	    (s->cfg.ring_entries & (s->cfg.ring_entries - 1)) ||
	    s->cfg.batch > s->cfg.ring_entries || s->cfg.cpu < -1 || s->cfg.cpu >= CPU_SETSIZE) {
		free(s);
		return -EINVAL;
	}
	s->rng = s->cfg.seed * 0x9E3779B97F4A7C15ULL + 0xD1B54A32D192ED03ULL;
	s->batch = calloc(s->cfg.batch, sizeof(*s->batch));
	if (!s->batch) {
		free(s);
		return -ENOMEM;
	}
	d->priv = s;
	return 0;
}

static int ring_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_ring_config *in = cfgp;
	struct pgt_offload_sim_config sc = { .size = sizeof(sc), .cpu = -1 };
	struct sim *s;
	int ret;

	if (in) {
		ret = pgt__ofl_cfg_size(in, sizeof(*in), sizeof(*in));
		if (ret)
			return ret;
		if (in->reserved)
			return -EINVAL;
		sc.ring_entries = in->entries;
	}
	ret = sim_open(d, &sc);
	if (ret)
		return ret;
	s = d->priv;
	s->external = true;
	return 0;
}

static int sim_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	struct sim *s = d->priv;
	uint64_t *cum = malloc((n + 1) * sizeof(*cum));
	int ret;

	if (!cum)
		return -ENOMEM;
	ret = pgt__ofl_keep_windows(&s->win, &s->nwin, w, n);
	if (ret) {
		free(cum);
		return ret;
	}
	cum[0] = 0;
	for (unsigned i = 0; i < n; i++)
		cum[i + 1] = cum[i] + (w[i].len >> 12);
	free(s->cum);
	s->cum = cum;
	s->pages = cum[n];
	s->cursor = 0;
	return 0;
}

static void publish(struct pgt_ofl_dev *d, struct sim *s)
{
	uint32_t k;

	if (!s->nbatch)
		return;
	k = pgt__ofl_produce(&s->prod, s->batch, s->nbatch);
	if (k < s->nbatch)
		atomic_fetch_add_explicit(&s->dropped, s->nbatch - k, memory_order_relaxed);
	s->nbatch = 0;
	(void)d;
}

/* Log pages [page, page + n) of window @w (one record, joined to the last
 * one when it continues it). */
static void log_write(struct pgt_ofl_dev *d, struct sim *s, unsigned w, uint64_t page, uint64_t n)
{
	struct pgt_offload_rec *last = s->nbatch ? &s->batch[s->nbatch - 1] : NULL;

	if (last && last->slot == s->win[w].slot) {
		uint64_t run = ((last->flags & PGT_OFFLOAD_REC_RUN_MASK) >> PGT_OFFLOAD_REC_RUN_SHIFT) + 1;

		if (page >= last->offset && page + n <= last->offset + run)
			return; /* already logged in this batch */
		if (page == last->offset + run && run + n <= PGT_OFFLOAD_REC_RUN_MAX) {
			last->flags = PGT_OFFLOAD_REC_FLAGS(0, run + n, false);
			return;
		}
	}
	if (s->nbatch == s->cfg.batch)
		publish(d, s);
	s->batch[s->nbatch++] = (struct pgt_offload_rec){
		.flags = PGT_OFFLOAD_REC_FLAGS(0, n, false), .slot = s->win[w].slot, .offset = page,
	};
}

/* One DMA write at 4 KiB page @p of the attached space. */
static void dma_write(struct pgt_ofl_dev *d, struct sim *s, uint64_t p)
{
	unsigned lo = 0, hi = s->nwin;
	uint64_t off, end, val, len;
	struct pgt_ofl_win *w;
	unsigned wi;

	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (s->cum[mid] <= p)
			lo = mid;
		else
			hi = mid;
	}
	wi = lo;
	w = &s->win[wi];
	off = ((p - s->cum[wi]) << 12) + ((rnd(&s->rng) % 512) << 3);
	len = s->cfg.write_bytes;
	if (len > w->len - off)
		len = w->len - off;
	end = off + len;
	val = s->cfg.on_write ? s->cfg.on_write(s->cfg.arg, w->gpa + off, (uint32_t)len) : rnd(&s->rng);
	for (uint64_t o = off; o < end; o += 8)
		__atomic_store_n((uint64_t *)(w->dma + o), val, __ATOMIC_RELAXED);
	log_write(d, s, wi, (w->slot_off + off) >> 12, ((end - 1) >> 12) - (off >> 12) + 1);
	atomic_fetch_add_explicit(&d->dma_writes, 1, memory_order_relaxed);
}

static uint64_t pick(struct sim *s)
{
	switch (s->cfg.pattern) {
	case PGT_OFFLOAD_SIM_SEQ: {
		uint64_t p = s->cursor;

		s->cursor = (s->cursor + (s->cfg.write_bytes + 4095) / 4096) % s->pages;
		return p;
	}
	case PGT_OFFLOAD_SIM_HOT: {
		uint64_t hot = s->pages / 16 ? s->pages / 16 : 1, r = rnd(&s->rng);

		return r % 10 ? rnd(&s->rng) % hot : rnd(&s->rng) % s->pages;
	}
	default:
		return rnd(&s->rng) % s->pages;
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *sim_main(void *arg)
{
	struct pgt_ofl_dev *d = arg;
	struct sim *s = d->priv;
	double per_tick = (double)s->cfg.rate * (double)SIM_TICK_NS / 1e9, carry = 0;
	uint64_t next = now_ns();

	if (s->cfg.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(s->cfg.cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		uint64_t n;

		if (s->cfg.rate) {
			double t = carry + per_tick;

			n = (uint64_t)t;
			carry = t - (double)n;
		} else {
			n = s->cfg.batch;
		}
		for (uint64_t i = 0; i < n && s->pages; i++)
			dma_write(d, s, pick(s));
		publish(d, s);
		if (s->cfg.on_tick)
			s->cfg.on_tick(s->cfg.arg);
		if (s->cfg.rate) {
			uint64_t t;

			next += SIM_TICK_NS;
			t = now_ns();
			if (t > next + 50 * SIM_TICK_NS)
				next = t; /* no burst of catch-up writes after a stall */
			if (next > t) {
				struct timespec ts = {
					.tv_sec = (time_t)(next / 1000000000ULL),
					.tv_nsec = (long)(next % 1000000000ULL),
				};

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			}
		}
	}
	publish(d, s);
	return NULL;
}

static int sim_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	struct sim *s = d->priv;
	int err = 0, ret;

	if (*page_size && *page_size != 4096)
		return -EINVAL;
	*page_size = 4096;
	if (!s->mem) {
		s->bytes = sizeof(struct pgt_offload_ring_ctl) +
			   (size_t)s->cfg.ring_entries * sizeof(struct pgt_offload_rec);
		s->mem = d->alloc(d->svc, s->bytes, &s->mem_iova, &err);
		if (!s->mem)
			return err ? err : -ENOMEM;
		pgt__ofl_ring_layout(s->mem, s->cfg.ring_entries);
		pgt__ofl_prod_init(&s->prod, s->mem, s->cfg.ring_entries);
	}
	if (s->external)
		return 0; /* the device produces, we only consume */
	atomic_store(&s->stop, false);
	ret = -pthread_create(&s->th, NULL, sim_main, d);
	if (ret)
		return ret;
	s->running = true;
	return 0;
}

static int sim_rings(struct pgt_ofl_dev *d, struct pgt_ofl_ring_desc *out, unsigned cap)
{
	struct sim *s = d->priv;

	if (!s->mem)
		return 0;
	if (cap)
		*out = (struct pgt_ofl_ring_desc){
			.ctl = s->mem,
			.recs = (struct pgt_offload_rec *)((char *)s->mem +
							   sizeof(struct pgt_offload_ring_ctl)),
			.entries = s->cfg.ring_entries, .iova = s->mem_iova,
		};
	return 1;
}

static int sim_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
		       const struct pgt_ofl_sink *sink)
{
	(void)d, (void)iova, (void)len, (void)flags, (void)sink;
	return 0;
}

static int sim_stop(struct pgt_ofl_dev *d)
{
	struct sim *s = d->priv;

	if (!s->running)
		return 0;
	atomic_store_explicit(&s->stop, true, memory_order_release);
	pthread_join(s->th, NULL);
	s->running = false;
	return 0;
}

static void sim_detach(struct pgt_ofl_dev *d)
{
	struct sim *s = d->priv;

	sim_stop(d);
	free(s->win);
	free(s->cum);
	s->win = NULL;
	s->cum = NULL;
	s->nwin = 0;
	s->pages = 0;
}

static void sim_close(struct pgt_ofl_dev *d)
{
	struct sim *s = d->priv;

	if (!s)
		return;
	sim_detach(d);
	if (s->mem)
		d->free(d->svc, s->mem, s->bytes);
	free(s->batch);
	free(s);
	d->priv = NULL;
}

static void sim_info(const struct pgt_ofl_dev *d, struct pgt_offload_info *info)
{
	const struct sim *s = d->priv;

	info->ring = s->mem;
	info->ring_bytes = s->mem ? s->bytes : 0;
	info->ring_iova = s->mem_iova;
	info->ring_entries = s->cfg.ring_entries;
}

const struct pgt_ofl_ops pgt__ofl_sim = {
	.name = "sim", .shape = PGT_OFFLOAD_RING, .dma = true,
	.probe = sim_probe, .open = sim_open, .attach = sim_attach, .start = sim_start,
	.rings = sim_rings, .harvest = sim_harvest, .stop = sim_stop, .detach = sim_detach,
	.close = sim_close, .info = sim_info,
};

const struct pgt_ofl_ops pgt__ofl_ring = {
	.name = "ring", .shape = PGT_OFFLOAD_RING,
	.probe = ring_probe, .open = ring_open, .attach = sim_attach, .start = sim_start,
	.rings = sim_rings, .harvest = sim_harvest, .stop = sim_stop, .detach = sim_detach,
	.close = sim_close, .info = sim_info,
};
