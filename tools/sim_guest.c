/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim guest: guest RAM from pgtrack (hugetlb when the pool has the
 * pages, THP otherwise), its layout (device ring, page cache, one area per
 * workload instance, free tail), the vCPU threads running the workloads,
 * the simulated offload device and the pause used for stop-and-copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tools/sim.h"

#define HUGE_2M (2ULL << 20)
#define UNITS_2M (HUGE_2M / SIM_UNIT)
#define TICK_NS 2000000ULL /* vCPU and device pacing: 2 ms */

static void engine_log(void *arg, int level, const char *msg)
{
	struct sim *s = arg;

	sim_event(s, "pgtrack %s: %s", level <= PGT_LOG_ERR ? "error" : "warning", msg);
}

static uint64_t pool_free_2m(void)
{
	struct pgt_probe p = { .size = sizeof(p) };

	if (pgt_probe(&p))
		return 0;
	for (unsigned i = 0; i < p.n_pools; i++)
		if (p.pools[i].node < 0 && p.pools[i].page_size == HUGE_2M)
			return p.pools[i].free;
	return 0;
}

/*
 * soft-dirty is exact only with the writers paused around each harvest (the
 * quiesce callback), and the simulator's writers (vCPUs, device, balloon)
 * call into pgtrack themselves, so they cannot park under its locks. Where
 * the probe would pick soft-dirty, take the next tracker that needs no
 * pause: sync uffd-WP, else mprotect. An explicit choice is kept.
 */
static int sim_method(const struct sim *s)
{
	struct pgt_probe p = { .size = sizeof(p) };

	if (s->cfg.dirty_method != PGT_DIRTY_AUTO || pgt_probe(&p) ||
	    p.best_dirty_method != PGT_DIRTY_SOFT_DIRTY)
		return s->cfg.dirty_method;
	return (p.uffd_features & 1 /* UFFD_FEATURE_PAGEFAULT_FLAG_WP */) ? PGT_DIRTY_UFFD_SYNC
									   : PGT_DIRTY_MPROTECT;
}

static int create_region(struct sim *s, int backing, uint32_t track, pgt_region **r)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc),
		.backing = (uint32_t)backing,
		.length = s->cfg.memory,
		.gpa = 0,
		.track = track,
		.dirty_method = sim_method(s),
		.numa_node = -1,
		.name = "guest-ram",
	};

	return pgt_region_create(s->eng, &rc, r);
}

/* hugetlb when the pool can hold the guest, else THP; explicit choices are kept. */
static int pick_backing(struct sim *s, uint32_t track, char *err, size_t n)
{
	uint64_t need = s->cfg.memory / HUGE_2M, avail = pool_free_2m();
	int b = s->cfg.backing, ret;

	s->hp_free_at_start = avail;
	if (b) {
		ret = create_region(s, b, track, &s->r);
		if (ret) {
			snprintf(err, n, "cannot create %s guest RAM of %llu MiB: %s", pgt_backing_name(b),
				 (unsigned long long)(s->cfg.memory >> 20), strerror(-ret));
			return ret;
		}
		snprintf(s->backing_why, sizeof(s->backing_why), "%s (asked for)", pgt_backing_name(b));
		return 0;
	}
	if (avail >= need) {
		ret = create_region(s, PGT_BACKING_HUGETLB, track, &s->r);
		if (!ret) {
			snprintf(s->backing_why, sizeof(s->backing_why),
				 "hugetlb 2 MiB pages (%" PRIu64 " free in the pool, %" PRIu64 " needed)",
				 avail, need);
			return 0;
		}
		snprintf(s->backing_why, sizeof(s->backing_why),
			 "THP: hugetlb failed (%s) with %" PRIu64 " of %" PRIu64 " pages free",
			 strerror(-ret), avail, need);
	} else {
		snprintf(s->backing_why, sizeof(s->backing_why),
			 "THP: the hugetlb pool has %" PRIu64 " free 2 MiB pages, %" PRIu64
			 " needed (raise /proc/sys/vm/nr_hugepages)", avail, need);
	}
	ret = create_region(s, PGT_BACKING_THP, track, &s->r);
	if (ret)
		snprintf(err, n, "cannot create THP guest RAM of %llu MiB: %s",
			 (unsigned long long)(s->cfg.memory >> 20), strerror(-ret));
	return ret;
}

static uint64_t area_units(const struct sim *s, double frac)
{
	return sim_area_bytes(frac, s->info.length) / SIM_UNIT;
}

static int layout(struct sim *s, char *err, size_t n)
{
	const struct sim_config *c = &s->cfg;
	uint64_t next = 0;
	unsigned k = 0;

	s->nwls = 0;
	for (unsigned v = 0; v < c->vcpus; v++)
		s->nwls += c->nwl[v];
	s->wls = calloc(s->nwls ? s->nwls : 1, sizeof(*s->wls));
	s->vcpus = calloc(c->vcpus, sizeof(*s->vcpus));
	s->ustate = calloc(s->nunits, 1);
	if (!s->wls || !s->vcpus || !s->ustate) {
		snprintf(err, n, "out of memory");
		return -ENOMEM;
	}
	if (c->device) {
		uint64_t ring = (c->device_ring + HUGE_2M - 1) / HUGE_2M * UNITS_2M;

		s->ring = (struct area){ "device ring", next, ring };
		next += ring;
	}
	if (c->cache > 0) {
		s->cache = (struct area){ "page cache", next, area_units(s, c->cache) };
		next += s->cache.n;
		if (c->hostpin) {
			uint64_t hp = (c->hostpin + HUGE_2M - 1) / HUGE_2M * UNITS_2M;
			uint64_t mid = s->cache.first + s->cache.n / 2;

			if (hp > s->cache.n)
				hp = s->cache.n;
			mid = mid >= hp / 2 ? (mid - hp / 2) / UNITS_2M * UNITS_2M : s->cache.first;
			if (mid < s->cache.first)
				mid = s->cache.first;
			s->hostpin = (struct area){ "host-pinned", mid, hp };
		}
	}
	for (unsigned v = 0; v < c->vcpus; v++) {
		struct vcpu *vc = &s->vcpus[v];

		vc->s = s;
		vc->id = v;
		for (unsigned i = 0; i < c->nwl[v]; i++) {
			struct wl *w = &s->wls[k++];

			w->kind = c->wl[v][i];
			w->vcpu = v;
			w->a = (struct area){ sim_wl_name(w->kind), next, area_units(s, c->area[w->kind]) };
			w->rng = c->seed * 0x9E3779B97F4A7C15ULL + k * 7919 + 1;
			next += w->a.n;
			vc->wl[vc->nwl++] = w;
		}
	}
	if (next > s->nunits) {
		snprintf(err, n, "layout needs %" PRIu64 " MiB, the guest has %" PRIu64 " MiB", next >> 8,
			 s->nunits >> 8);
		return -EINVAL;
	}
	/* Everything laid out is in use from boot; the tail and churn areas are free. */
	for (uint64_t u = 0; u < next; u++)
		s->ustate[u] = U_USED;
	for (unsigned i = 0; i < s->nwls; i++)
		if (s->wls[i].kind == WL_CHURN)
			memset(s->ustate + s->wls[i].a.first, U_FREE, s->wls[i].a.n);
	return 0;
}

int sim_guest_create(struct sim *s, char *err, size_t n)
{
	struct pgt_engine_config ec = {
		.size = sizeof(ec), .log = engine_log, .log_arg = s, .log_level = PGT_LOG_WARN,
	};
	uint32_t track = PGT_TRACK_DIRTY | (s->cfg.touch ? PGT_TRACK_TOUCH : 0);
	int ret;

	pthread_mutex_init(&s->glock, NULL);
	pthread_rwlock_init(&s->rel_lock, NULL);
	pthread_mutex_init(&s->plock, NULL);
	pthread_cond_init(&s->pcond, NULL);
	ret = pgt_engine_open(&ec, &s->eng);
	if (ret) {
		snprintf(err, n, "cannot open the pgtrack engine: %s", strerror(-ret));
		return ret;
	}
	ret = pick_backing(s, track, err, n);
	if (ret == -EOPNOTSUPP && (track & PGT_TRACK_TOUCH)) {
		/* No uffd MISSING here: run without the touched set, say so. */
		sim_event(s, "first-touch tracking unavailable (%s): touched = pages ever written",
			  strerror(-ret));
		s->cfg.touch = false;
		ret = pick_backing(s, PGT_TRACK_DIRTY, err, n);
	}
	if (ret)
		return ret;
	s->info.size = sizeof(s->info);
	pgt_region_info(s->r, &s->info);
	s->mem = s->info.addr;
	s->npages = s->info.npages;
	s->page_shift = (unsigned)__builtin_ctzll(s->info.page_size);
	s->nunits = s->info.length / SIM_UNIT;
	s->units_per_page = (unsigned)(s->info.page_size / SIM_UNIT);
	if (s->cfg.refine && s->info.page_size > SIM_UNIT) {
		/* before any view opens; views that count pages opt out */
		ret = pgt_region_refine(s->r, PGT_REFINE_FINGERPRINT);
		s->refining = !ret;
		if (ret)
			sim_event(s, "4 KiB refinement unavailable: %s", strerror(-ret));
	}
	s->words = (s->npages + SIM_BITS - 1) / SIM_BITS;
	s->sbm = calloc(s->words, sizeof(unsigned long));
	s->shadow = calloc(s->words, sizeof(unsigned long));
	s->touched_union = calloc(s->words, sizeof(unsigned long));
	if (!s->sbm || !s->shadow || !s->touched_union) {
		snprintf(err, n, "out of memory");
		return -ENOMEM;
	}
	ret = layout(s, err, n);
	if (ret)
		return ret;
	/* The device ring is DMA-mapped: pinned for as long as the device lives. */
	if (s->ring.n) {
		ret = pgt_pin(s->eng, sim_unit_gpa(s, s->ring.first), s->ring.n * SIM_UNIT);
		if (ret) {
			snprintf(err, n, "pinning the device ring: %s", strerror(-ret));
			return ret;
		}
	}
	/* Pinned by the host for a passthrough mapping the guest knows nothing of. */
	if (s->hostpin.n) {
		ret = pgt_pin(s->eng, sim_unit_gpa(s, s->hostpin.first), s->hostpin.n * SIM_UNIT);
		if (ret) {
			snprintf(err, n, "pinning the host-pinned range: %s", strerror(-ret));
			return ret;
		}
	}
	ret = pgt_dirty_view_open(s->r, &s->sampler);
	if (!ret && s->refining)
		ret = pgt_dirty_view_refine(s->sampler, false);
	if (ret) {
		snprintf(err, n, "opening the sampler view: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

void sim_guest_destroy(struct sim *s)
{
	pgt_dirty_view_close(s->sampler);
	pgt_dirty_view_close(s->snapview);
	s->sampler = s->snapview = NULL;
	pgt_engine_close(s->eng);
	s->eng = NULL;
	for (unsigned i = 0; i < s->nwls; i++) {
		free(s->wls[i].chunks);
		free(s->wls[i].to_report);
	}
	free(s->wls);
	free(s->vcpus);
	free(s->ustate);
	free(s->sbm);
	free((void *)s->shadow);
	free(s->touched_union);
}

bool sim_unit_released(struct sim *s, uint64_t unit)
{
	uint8_t st = s->ustate[unit];

	return st == U_REPORTED || st == U_BALLOON;
}

/* ---------------------------------------------------------------- */
/* Pause                                                             */
/* ---------------------------------------------------------------- */

void sim_pause_point(struct sim *s)
{
	if (!atomic_load_explicit(&s->pause_req, memory_order_acquire))
		return;
	pthread_mutex_lock(&s->plock);
	s->paused++;
	pthread_cond_broadcast(&s->pcond);
	while (atomic_load(&s->pause_req))
		pthread_cond_wait(&s->pcond, &s->plock);
	s->paused--;
	pthread_mutex_unlock(&s->plock);
}

void sim_pause(struct sim *s)
{
	pthread_mutex_lock(&s->plock);
	atomic_store(&s->pause_req, 1);
	while (s->paused < s->participants)
		pthread_cond_wait(&s->pcond, &s->plock);
	pthread_mutex_unlock(&s->plock);
}

void sim_resume(struct sim *s)
{
	pthread_mutex_lock(&s->plock);
	atomic_store(&s->pause_req, 0);
	pthread_cond_broadcast(&s->pcond);
	pthread_mutex_unlock(&s->plock);
}

void sim_participant_join(struct sim *s)
{
	pthread_mutex_lock(&s->plock);
	s->participants++;
	pthread_mutex_unlock(&s->plock);
}

/* A participant that leaves must not be waited for by a pause. */
void sim_participant_leave(struct sim *s)
{
	pthread_mutex_lock(&s->plock);
	s->participants--;
	pthread_cond_broadcast(&s->pcond);
	pthread_mutex_unlock(&s->plock);
}

/* ---------------------------------------------------------------- */
/* Workloads                                                         */
/* ---------------------------------------------------------------- */

/* Write one word of a guest page. Shadow first: see sim_shadow_mark(). */
static inline void write_unit(struct sim *s, uint64_t unit, uint64_t val)
{
	volatile uint64_t *p =
		(volatile uint64_t *)(s->mem + (unit << SIM_UNIT_SHIFT) + ((val & 511) << 3));

	sim_shadow_mark(s, unit);
	*p = val;
}

/*
 * Zipf-like rank in [0, n): inverse transform of the continuous power law
 * (exact Zipf needs a table or rejection; the heat map cannot tell).
 * Rank 0 is the hottest page, at the start of the area.
 */
static uint64_t zipf_rank(uint64_t n, double theta, uint64_t *rng)
{
	double u = sim_rand01(rng), x;
	uint64_t k;

	if (fabs(theta - 1.0) < 1e-9) {
		x = exp(u * log((double)n + 1.0));
	} else {
		double a = 1.0 - theta;

		x = pow(u * (pow((double)n + 1.0, a) - 1.0) + 1.0, 1.0 / a);
	}
	k = x >= 1.0 ? (uint64_t)x - 1 : 0;
	return k < n ? k : n - 1;
}

static uint64_t owed(struct wl *w, double per_tick)
{
	double t = w->carry + per_tick;
	uint64_t n = (uint64_t)t;

	w->carry = t - (double)n;
	return n;
}

static void churn_step(struct sim *s, struct wl *w, double dt)
{
	uint64_t max_units = s->cfg.churn_chunk / SIM_UNIT;
	unsigned max_order = 0;
	uint64_t n = owed(w, s->cfg.rate[WL_CHURN] * dt);

	while ((2ULL << max_order) <= max_units)
		max_order++;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t size = 1u << (sim_rand(&w->rng) % (max_order + 1));
		struct chunk c;

		/* Keep the area about half full: free before allocating. */
		while (w->nchunks && (w->live + size) * 2 > w->a.n) {
			size_t j = sim_rand(&w->rng) % w->nchunks;

			w->live -= w->chunks[j].n;
			sim_churn_free(s, w, &w->chunks[j]);
			w->chunks[j] = w->chunks[--w->nchunks];
			atomic_fetch_add_explicit(&w->frees, 1, memory_order_relaxed);
		}
		if (w->nchunks == w->chunks_cap) {
			size_t cap = w->chunks_cap ? w->chunks_cap * 2 : 256;
			struct chunk *nc = realloc(w->chunks, cap * sizeof(*nc));

			if (!nc)
				return;
			w->chunks = nc;
			w->chunks_cap = cap;
		}
		if (!sim_churn_alloc(s, w, size, &c))
			continue;
		for (uint32_t u = 0; u < c.n; u++)
			write_unit(s, c.first + u, sim_rand(&w->rng));
		atomic_fetch_add_explicit(&w->writes, c.n, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->allocs, 1, memory_order_relaxed);
		w->chunks[w->nchunks++] = c;
		w->live += c.n;
	}
	sim_report_free(s, w, false);
}

static void wl_step(struct sim *s, struct wl *w, double dt)
{
	const struct sim_config *c = &s->cfg;
	uint64_t n;

	switch (w->kind) {
	case WL_RANDOM:
		n = owed(w, c->rate[WL_RANDOM] * dt);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t r = sim_rand(&w->rng);

			write_unit(s, w->a.first + r % w->a.n, r);
		}
		break;
	case WL_ZIPF:
		n = owed(w, c->rate[WL_ZIPF] * dt);
		for (uint64_t i = 0; i < n; i++)
			write_unit(s, w->a.first + zipf_rank(w->a.n, c->zipf_theta, &w->rng),
				   sim_rand(&w->rng));
		break;
	case WL_STREAM:
		n = owed(w, c->rate[WL_STREAM] / (double)SIM_UNIT * dt);
		for (uint64_t i = 0; i < n; i++) {
			write_unit(s, w->a.first + w->cursor, sim_rand(&w->rng));
			if (++w->cursor == w->a.n)
				w->cursor = 0;
		}
		break;
	case WL_CHURN:
		churn_step(s, w, dt);
		return;
	}
	atomic_fetch_add_explicit(&w->writes, n, memory_order_relaxed);
}

/* First touch of the guest's memory, the way a booting kernel and its
 * services would: ring and page cache by vCPU 0, each workload its area
 * (churn only what it allocates). */
static void boot(struct vcpu *vc)
{
	struct sim *s = vc->s;
	uint64_t rng = s->cfg.seed + vc->id;

	/* stop is checked every 64 units: where each first write faults
	 * (mprotect tracking under TCG) 1024 units took seconds */
	if (vc->id == 0) {
		for (uint64_t u = 0; u < s->ring.n; u++)
			write_unit(s, s->ring.first + u, sim_rand(&rng));
		for (uint64_t u = 0; u < s->cache.n; u++) {
			write_unit(s, s->cache.first + u, sim_rand(&rng));
			if (!(u & 63) && atomic_load(&s->stop))
				return;
		}
	}
	for (unsigned i = 0; i < vc->nwl; i++) {
		struct wl *w = vc->wl[i];

		if (w->kind == WL_CHURN)
			continue;
		for (uint64_t u = 0; u < w->a.n; u++) {
			write_unit(s, w->a.first + u, sim_rand(&w->rng));
			if (!(u & 63) && atomic_load(&s->stop))
				return;
		}
	}
}

static void *vcpu_main(void *arg)
{
	struct vcpu *vc = arg;
	struct sim *s = vc->s;
	uint64_t next;
	double dt = (double)TICK_NS / 1e9;

	boot(vc);
	vc->booted = true;
	atomic_fetch_add(&s->booted, 1);
	next = sim_now_ns();
	while (!atomic_load(&s->stop)) {
		uint64_t now;

		sim_pause_point(s);
		for (unsigned i = 0; i < vc->nwl; i++)
			wl_step(s, vc->wl[i], dt);
		next += TICK_NS;
		now = sim_now_ns();
		/* Fell far behind (paused, descheduled): do not burst to catch up. */
		if (now > next + 50 * TICK_NS)
			next = now;
		sim_sleep_until(next);
	}
	/* Whatever churn freed last is still reported. */
	for (unsigned i = 0; i < vc->nwl; i++)
		if (vc->wl[i]->kind == WL_CHURN)
			sim_report_free(s, vc->wl[i], true);
	sim_participant_leave(s);
	return NULL;
}

int sim_vcpus_start(struct sim *s)
{
	for (unsigned v = 0; v < s->cfg.vcpus; v++) {
		int ret;

		sim_participant_join(s);
		ret = pthread_create(&s->vcpus[v].th, NULL, vcpu_main, &s->vcpus[v]);
		if (ret) {
			sim_participant_leave(s);
			atomic_store(&s->stop, true);
			for (unsigned j = 0; j < v; j++)
				pthread_join(s->vcpus[j].th, NULL);
			return -ret;
		}
	}
	return 0;
}

void sim_vcpus_stop(struct sim *s)
{
	atomic_store(&s->stop, true);
	sim_resume(s);
	for (unsigned v = 0; v < s->cfg.vcpus; v++)
		pthread_join(s->vcpus[v].th, NULL);
}

/* ---------------------------------------------------------------- */
/* The simulated offload device                                      */
/* ---------------------------------------------------------------- */

/*
 * Like an FPGA or SmartNIC doing DMA: pgtrack's sim offload backend writes
 * guest memory without going through the CPU's page tables (through its own
 * mapping of the backing file, so the CPU dirty tracker cannot see it) and
 * logs what it wrote in a ring in hugepage memory; pgtrack merges the ring
 * into every dirty view at each harvest, checking every record against the
 * mapped window (device data is untrusted).
 */
static uint64_t dev_write(void *arg, uint64_t gpa, uint32_t len)
{
	struct device *d = arg;
	struct sim *s = d->s;
	uint64_t u = (gpa - s->info.gpa) >> SIM_UNIT_SHIFT;

	(void)len;
	/* before the write, as for the vCPUs: a shadowed page is never missed */
	sim_shadow_mark(s, u);
	return sim_rand(&d->rng);
}

/* A pause parks the device after its records are published: the harvest
 * of a stop-and-copy that follows has them. */
static void dev_tick(void *arg)
{
	struct device *d = arg;

	sim_pause_point(d->s);
}

int sim_device_start(struct sim *s)
{
	struct device *d = &s->dev;
	struct pgt_offload_sim_config sc = {
		.size = sizeof(sc), .pattern = PGT_OFFLOAD_SIM_RANDOM, .write_bytes = 8,
		.rate = (uint64_t)(s->cfg.device_rate / (double)SIM_UNIT), .cpu = -1,
		.seed = s->cfg.seed ^ 0xD15EA5E, .on_write = dev_write, .on_tick = dev_tick, .arg = d,
	};
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "sim",
					 .backend_config = &sc, .name = "dma-device" };
	struct pgt_offload_range rg;
	int ret;

	if (!s->ring.n)
		return 0;
	d->s = s;
	d->ring = s->ring;
	d->rng = s->cfg.seed ^ 0xD15EA5E;
	if (!sc.rate)
		return 0; /* a device that never writes */
	/* the device's IOVAs are the guest-physical addresses (no vIOMMU) */
	rg = (struct pgt_offload_range){
		.iova = sim_unit_gpa(s, d->ring.first), .length = d->ring.n * SIM_UNIT,
		.gpa = sim_unit_gpa(s, d->ring.first),
	};
	ret = pgt_offload_open(s->eng, &oc, &d->dev);
	if (!ret)
		ret = pgt_offload_attach(d->dev, &rg, 1);
	if (ret)
		goto err;
	d->alias = s->info.fd >= 0;
	sim_participant_join(s);
	ret = pgt_offload_start(d->dev, 0);
	if (ret) {
		sim_participant_leave(s);
		goto err;
	}
	d->running = true;
	return 0;
err:
	pgt_offload_close(d->dev);
	d->dev = NULL;
	return ret;
}

void sim_device_info(struct sim *s, struct pgt_offload_info *info)
{
	struct device *d = &s->dev;

	if (d->dev) {
		info->size = sizeof(*info);
		pgt_offload_info(d->dev, info);
	} else {
		*info = d->info;
	}
}

void sim_device_stop(struct sim *s)
{
	struct device *d = &s->dev;

	if (!d->dev)
		return;
	if (d->running) {
		pgt_offload_stop(d->dev);
		sim_participant_leave(s);
	}
	d->running = false;
	/* what it wrote last goes to the views before the device goes */
	pgt_offload_harvest(d->dev, NULL);
	d->info.size = sizeof(d->info);
	pgt_offload_info(d->dev, &d->info);
	pgt_offload_close(d->dev);
	d->dev = NULL;
}
