/* SPDX-License-Identifier: MIT */
/*
 * Memory targets with XenAPI semantics, and what a guest costs the host.
 *
 * A target controller watches the VM's guest memory (what its regions hold
 * minus what is released) and asks the hypervisor's balloon callback for the
 * difference to the target. The guest answers asynchronously through
 * pgt_release()/pgt_reclaim(); pgt_target_wait() polls the counters (every
 * millisecond: releases arrive from any thread and a millisecond is far
 * below balloon timescales) and asks again when the guest makes no progress
 * for retry_ns. The balloon callback is always called without our lock, so
 * it may call back into pgtrack.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"

struct pgt_target {
	struct pgt_engine *eng;
	pthread_mutex_t lock;
	struct pgt_memory_limits lim;
	pgt_balloon_fn balloon;
	void *balloon_arg;
	struct pgt_balloon_params safety;
	uint64_t retry_ns;
	bool cooperative;
	uint64_t calls, errors;
	int last_error;
	uint64_t set_ns, reached_ns;
	uint64_t tolerance;
};

static uint64_t absdiff(int64_t v)
{
	return v < 0 ? (uint64_t)-v : (uint64_t)v;
}

/* Within tolerance; by default within one unit below (whole units given back). */
static bool reached(const struct pgt_target *t, int64_t miss)
{
	if (!t->tolerance)
		return miss <= 0 && miss > -(int64_t)PGT_RELEASE_UNIT;
	return absdiff(miss) <= t->tolerance;
}


/* ------------------------------------------------------------------ */
/* Limits                                                              */
/* ------------------------------------------------------------------ */

static void fmt_bytes(char *buf, size_t len, uint64_t v)
{
	if (v && !(v & ((1ULL << 20) - 1)))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(v >> 20));
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)v);
}

PGT_EXPORT int pgt_limits_check(const struct pgt_memory_limits *l, char *why, size_t whylen)
{
	static const char *const names[] = {
		"static_min", "dynamic_min", "target", "dynamic_max", "static_max",
	};
	uint64_t v[5];
	char a[32], b[32];

	int ret = l ? PGT_ARG_IN(l, sizeof(*l)) : -EINVAL;

	if (ret) {
		if (why && whylen)
			snprintf(why, whylen, "limits: NULL or a size this library does not take");
		return ret;
	}
	v[0] = l->static_min;
	v[1] = l->dynamic_min;
	v[2] = l->target;
	v[3] = l->dynamic_max;
	v[4] = l->static_max;
	if (!l->static_max) {
		if (why && whylen)
			snprintf(why, whylen, "static_max is 0");
		return -EINVAL;
	}
	for (int i = 0; i < 4; i++) {
		if (v[i] <= v[i + 1])
			continue;
		if (why && whylen) {
			fmt_bytes(a, sizeof(a), v[i]);
			fmt_bytes(b, sizeof(b), v[i + 1]);
			snprintf(why, whylen, "%s (%s) > %s (%s): need static_min <= dynamic_min "
				 "<= target <= dynamic_max <= static_max",
				 names[i], a, names[i + 1], b);
		}
		return -EINVAL;
	}
	if (why && whylen)
		why[0] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ */
/* Controller                                                          */
/* ------------------------------------------------------------------ */

/* Guest memory now: configured and released bytes over all regions. */
static void guest_now(struct pgt_engine *e, uint64_t *configured, uint64_t *released)
{
	uint64_t c = 0, rl = 0;

	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r; r = r->next) {
		struct pgt_rel *rel = pgt__rel_peek(r);

		c += r->length;
		if (!rel)
			continue;
		pthread_mutex_lock(&rel->lock);
		pgt__rel_sync_touch(r, rel);
		rl += pgt__rel_units(rel) << PGT_UNIT_SHIFT;
		pthread_mutex_unlock(&rel->lock);
	}
	pthread_rwlock_unlock(&e->regions_lock);
	*configured = c;
	*released = rl;
}

/*
 * Bytes still to give back (> 0) or to take back (< 0). A target above what
 * the regions hold is reached when nothing is released.
 */
static int64_t missing_bytes(uint64_t configured, uint64_t released, uint64_t target)
{
	uint64_t guest = configured - released;

	if (target > configured)
		target = configured;
	return guest >= target ? (int64_t)(guest - target) : -(int64_t)(target - guest);
}

static int64_t units_for(int64_t bytes)
{
	uint64_t m = bytes < 0 ? (uint64_t)-bytes : (uint64_t)bytes;
	int64_t u = (int64_t)((m + PGT_RELEASE_UNIT - 1) >> PGT_UNIT_SHIFT);

	return bytes < 0 ? -u : u;
}

static int call_balloon(struct pgt_target *t, int64_t units)
{
	int ret = t->balloon(t->balloon_arg, units);

	pthread_mutex_lock(&t->lock);
	t->calls++;
	if (ret) {
		t->errors++;
		t->last_error = ret;
	}
	pthread_mutex_unlock(&t->lock);
	if (ret)
		pgt__log(t->eng, PGT_LOG_WARN, "balloon request of %lld unit(s) failed: %s",
			 (long long)units, strerror(ret < 0 ? -ret : ret));
	return ret;
}

/* Validate @nl against what is safely reachable and make it current. */
static int apply(struct pgt_target *t, const struct pgt_memory_limits *nl, int64_t *ask)
{
	struct pgt_balloon_limit bl = { .size = sizeof(bl) };
	uint64_t configured, released;
	char why[160];
	int64_t miss;
	int ret;

	ret = pgt_limits_check(nl, why, sizeof(why));
	if (ret) {
		pgt__log(t->eng, PGT_LOG_WARN, "memory target refused: %s", why);
		return ret;
	}
	guest_now(t->eng, &configured, &released);
	miss = missing_bytes(configured, released, nl->target);
	if (miss > 0) {
		ret = pgt_balloon_limit(t->eng, &t->safety, &bl);
		if (ret)
			return ret;
		if ((uint64_t)miss > bl.limit) {
			pgt__log(t->eng, PGT_LOG_WARN,
				 "memory target %llu bytes needs a balloon of %lld bytes, only %llu "
				 "are safe (pinned %llu, kept %llu)",
				 (unsigned long long)nl->target, (long long)miss,
				 (unsigned long long)bl.limit, (unsigned long long)bl.pinned,
				 (unsigned long long)bl.kept);
			return -ENOSPC;
		}
	}
	pthread_mutex_lock(&t->lock);
	t->lim = *nl;
	t->set_ns = pgt_hal_now_ns();
	t->reached_ns = reached(t, miss) ? t->set_ns : 0;
	pthread_mutex_unlock(&t->lock);
	*ask = units_for(miss);
	return 0;
}

PGT_EXPORT int pgt_target_open(pgt_engine *e, const struct pgt_target_config *cfg,
			       pgt_target **out)
{
	struct pgt_target *t;

	if (!out)
		return -EINVAL;
	*out = NULL;
	int ret;

	if (!e || !cfg)
		return -EINVAL;
	if ((ret = PGT_ARG_IN(cfg, sizeof(*cfg))))
		return ret;
	if (cfg->flags || !cfg->balloon)
		return -EINVAL;
	/* safety is optional: size 0 means "defaults" */
	if (cfg->safety.size && (ret = PGT_ARG_IN(&cfg->safety, sizeof(cfg->safety))))
		return ret;
	if ((ret = pgt_limits_check(&cfg->limits, NULL, 0)))
		return ret;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	t->eng = e;
	t->lim = cfg->limits;
	t->balloon = cfg->balloon;
	t->balloon_arg = cfg->balloon_arg;
	t->safety = cfg->safety;
	t->safety.size = sizeof(t->safety);
	t->retry_ns = cfg->retry_ns ? cfg->retry_ns : 100000000ULL;
	t->tolerance = cfg->tolerance;
	t->cooperative = true;
	t->set_ns = pgt_hal_now_ns();
	*out = t;
	return 0;
}

PGT_EXPORT void pgt_target_close(pgt_target *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

PGT_EXPORT int pgt_target_set(pgt_target *t, uint64_t target)
{
	struct pgt_memory_limits nl;
	int64_t ask = 0;
	int ret;

	if (!t)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	nl = t->lim;
	pthread_mutex_unlock(&t->lock);
	nl.target = target;
	ret = apply(t, &nl, &ask);
	if (ret || !ask)
		return ret;
	return call_balloon(t, ask);
}

PGT_EXPORT int pgt_target_set_limits(pgt_target *t, const struct pgt_memory_limits *l)
{
	struct pgt_memory_limits cur;
	int64_t ask = 0;
	int ret;

	if (!t || !l)
		return -EINVAL;
	if ((ret = PGT_ARG_IN(l, sizeof(*l))))
		return ret;
	pthread_mutex_lock(&t->lock);
	cur = t->lim;
	pthread_mutex_unlock(&t->lock);
	/* XenAPI: static limits and overhead change only while halted */
	if (l->static_min != cur.static_min || l->static_max != cur.static_max ||
	    l->overhead != cur.overhead) {
		if (pgt_limits_check(l, NULL, 0))
			return -EINVAL;
		return -EBUSY;
	}
	ret = apply(t, l, &ask);
	if (ret || !ask)
		return ret;
	return call_balloon(t, ask);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

PGT_EXPORT int pgt_target_wait(pgt_target *t, uint64_t timeout_ns)
{
	uint64_t now = pgt_hal_now_ns(), deadline, last_change = now;
	uint64_t best = UINT64_MAX; /* closest |missing| seen */

	if (!t)
		return -EINVAL;
	deadline = now + timeout_ns < now ? ~0ULL : now + timeout_ns;
	for (;;) {
		uint64_t configured, released, target;
		int64_t miss;

		pthread_mutex_lock(&t->lock);
		target = t->lim.target;
		pthread_mutex_unlock(&t->lock);
		guest_now(t->eng, &configured, &released);
		miss = missing_bytes(configured, released, target);
		now = pgt_hal_now_ns();
		if (reached(t, miss)) {
			pthread_mutex_lock(&t->lock);
			if (!t->reached_ns)
				t->reached_ns = now;
			if (timeout_ns)
				t->cooperative = true;
			pthread_mutex_unlock(&t->lock);
			return 0;
		}
		if (now >= deadline) {
			if (timeout_ns) {
				pthread_mutex_lock(&t->lock);
				t->cooperative = false;
				pthread_mutex_unlock(&t->lock);
				pgt__log(t->eng, PGT_LOG_INFO,
					 "memory target %llu not reached in time: %lld bytes missing",
					 (unsigned long long)target, (long long)miss);
			}
			return -ETIMEDOUT;
		}
		if (absdiff(miss) < best) {
			best = absdiff(miss);
			last_change = now;
		} else if (now - last_change >= t->retry_ns) {
			call_balloon(t, units_for(miss));
			last_change = pgt_hal_now_ns();
		}
		sleep_ns(deadline - now < 1000000 ? deadline - now : 1000000);
	}
}

PGT_EXPORT int pgt_target_status(pgt_target *t, struct pgt_target_status *st)
{
	uint64_t configured, released;
	int64_t miss;

	int ret;

	if (!t || !st)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(st, sizeof(*st))))
		return ret;
	guest_now(t->eng, &configured, &released);
	pthread_mutex_lock(&t->lock);
	miss = missing_bytes(configured, released, t->lim.target);
	*st = (struct pgt_target_status){
		.size = sizeof(*st),
		.last_error = t->last_error,
		.guest = configured - released,
		.target = t->lim.target,
		.missing = miss,
		.reached = reached(t, miss),
		.cooperative = t->cooperative,
		.balloon_calls = t->calls,
		.balloon_errors = t->errors,
		.set_ns = t->set_ns,
		.reached_ns = t->reached_ns,
		.limits = t->lim,
	};
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Overhead                                                            */
/* ------------------------------------------------------------------ */

static uint64_t bm_estimate(uint64_t nbits)
{
	uint64_t words = (nbits + 63) / 64, groups = (words + 63) / 64;

	/* words and summary, each rounded up to a cache line, plus slack */
	return (words * 8 + 63) / 64 * 64 + ((groups + 63) / 64 * 8 + 63) / 64 * 64 + 64;
}

/*
 * Worst-case metadata of one region: every bitmap allocated, every large
 * page partly released at once. Kept next to the structures it sizes.
 */
static uint64_t metadata_estimate(const struct pgt_overhead_params *p, uint64_t guest_bytes)
{
	uint64_t ps = p->page_size, npages = (guest_bytes + ps - 1) / ps;
	uint64_t upp = ps > PGT_RELEASE_UNIT ? ps / PGT_RELEASE_UNIT : 1;
	uint64_t bm = bm_estimate(npages), total;

	total = sizeof(struct pgt_region) + 256; /* name, allocator slack */
	if (p->track & PGT_TRACK_TOUCH)
		/* touched bitmap and the first-touch order: a few bytes of
		 * varint delta per page at worst, plus chunk headers */
		total += bm + npages * 4 + 4096;
	if (p->track & PGT_TRACK_DIRTY) {
		int m = p->dirty_method;

		total += p->dirty_views * (sizeof(struct pgt_dirty_view) + bm);
		if (m == PGT_DIRTY_UFFD_SYNC || m == PGT_DIRTY_MPROTECT)
			total += bm;
		else /* the uffd-async scan vector */
			total += 4096 * sizeof(struct page_region) + 64;
	}
	/* release state: released, removed, pinned and zero bitmaps, pins */
	total += sizeof(struct pgt_rel) + 4 * bm + 16 * sizeof(struct pgt_pin);
	if (upp > 1)
		total += npages * (sizeof(struct pgt_sub *) + sizeof(struct pgt_sub) + upp / 8);
	if (p->age)
		total += npages * 8 + sizeof(struct pgt_dirty_view) + 2 * bm + 256;
	return total;
}

static int overhead_check(const struct pgt_overhead_params *p)
{
	int ret;

	if (!p)
		return -EINVAL;
	if ((ret = PGT_ARG_IN(p, sizeof(*p))))
		return ret;
	if (p->page_size < PGT_RELEASE_UNIT || (p->page_size & (p->page_size - 1)))
		return -EINVAL;
	if (p->dirty_method < 0 || p->dirty_method >= PGT_DIRTY__COUNT)
		return -EINVAL;
	if (p->track & ~(uint32_t)(PGT_TRACK_DIRTY | PGT_TRACK_TOUCH))
		return -EINVAL;
	return 0;
}

static uint64_t overhead_of(const struct pgt_overhead_params *p, uint64_t guest)
{
	uint64_t gib = 1ULL << 30;
	uint64_t hv = p->hv_fixed + (uint64_t)(((unsigned __int128)p->hv_per_gib * guest + gib - 1) / gib);

	return metadata_estimate(p, guest) + hv;
}

PGT_EXPORT int pgt_compute_overhead(const struct pgt_overhead_params *p, uint64_t guest_bytes,
				    uint64_t *overhead)
{
	int ret = overhead_check(p);

	if (ret || !overhead)
		return ret ? ret : -EINVAL;
	*overhead = overhead_of(p, guest_bytes);
	return 0;
}

PGT_EXPORT int pgt_maximise_memory(const struct pgt_overhead_params *p, uint64_t host_bytes,
				   uint64_t *guest_bytes)
{
	uint64_t lo = 0, hi;
	int ret = overhead_check(p);

	if (ret || !guest_bytes)
		return ret ? ret : -EINVAL;
	/* pages n with n * ps + overhead(n * ps) <= host: monotonic in n */
	hi = host_bytes / p->page_size;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2, g = mid * p->page_size;

		if (g + overhead_of(p, g) <= host_bytes)
			lo = mid;
		else
			hi = mid - 1;
	}
	if (!lo)
		return -ENOSPC;
	*guest_bytes = lo * p->page_size;
	return 0;
}
