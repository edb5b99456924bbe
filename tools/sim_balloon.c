/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim balloon: the guest side (a virtio-balloon-like driver thread
 * and free page reporting of the churn workload's frees, both at 4 KiB) and
 * the host side (pgt_release_batch(), pgt_reclaim(), a pgt_target memory
 * target controller whose balloon callback asks the driver for pages, pins
 * the guest does not know about, the safe balloon limit).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/sim.h"

#define REPORT_EVERY_NS 50000000ULL  /* free page reporting batches: 50 ms */
#define DRIVER_TICK_NS 5000000ULL    /* balloon driver: 5 ms steps */
#define MAX_RANGES 4096

struct balloon {
	struct sim *s;
	pgt_target *t;
	struct pgt_balloon_params safety;
	pthread_t th;
	bool running;
	pthread_mutex_t lock;
	int64_t want;           /* units asked for: > 0 inflate, < 0 deflate */
	uint64_t held;          /* units in the balloon */
	bool starved;           /* nothing left to give: said once */
	bool inflating, deflating;
	uint64_t set_ns;
	uint64_t last_change;
	struct balloon_report rep;
	uint64_t *units;        /* scratch: picked units */
	struct pgt_range *ranges;
	int32_t *status;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted units -> guest-physical ranges; returns the number of ranges. */
static size_t to_ranges(struct sim *s, const uint64_t *u, size_t n, struct pgt_range *r,
			size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < cap; k++) {
		size_t j = i + 1;

		while (j < n && u[j] == u[j - 1] + 1)
			j++;
		r[k] = (struct pgt_range){ sim_unit_gpa(s, u[i]), (u[j - 1] - u[i] + 1) * SIM_UNIT };
		i = j;
	}
	return k;
}

/* ---------------------------------------------------------------- */
/* Churn: guest allocator and free page reporting                    */
/* ---------------------------------------------------------------- */

static bool usable(uint8_t st)
{
	return st == U_FREE || st == U_REPORTED;
}

bool sim_churn_alloc(struct sim *s, struct wl *w, uint32_t n, struct chunk *out)
{
	uint64_t start = w->cursor, found = UINT64_MAX, run = 0;
	bool reclaim = false;

	if (n > w->a.n)
		return false;
	pthread_rwlock_wrlock(&s->rel_lock);
	pthread_mutex_lock(&s->glock);
	/* first fit from the cursor, wrapping once */
	for (uint64_t i = 0; i < w->a.n + n && found == UINT64_MAX; i++) {
		uint64_t off = (start + i) % w->a.n;

		if (off == 0)
			run = 0;
		if (usable(s->ustate[w->a.first + off])) {
			if (++run == n)
				found = off + 1 - n;
		} else {
			run = 0;
		}
	}
	if (found != UINT64_MAX) {
		for (uint64_t u = w->a.first + found; u < w->a.first + found + n; u++) {
			reclaim |= s->ustate[u] == U_REPORTED;
			s->ustate[u] = U_USED;
		}
		w->cursor = (found + n) % w->a.n;
	}
	pthread_mutex_unlock(&s->glock);
	/* A reported page reused: the host learns it is the guest's again. */
	if (reclaim) {
		int64_t r = pgt_reclaim(s->eng, sim_unit_gpa(s, w->a.first + found),
					(uint64_t)n * SIM_UNIT);

		if (r > 0)
			atomic_fetch_add_explicit(&w->reclaimed, (uint64_t)r, memory_order_relaxed);
	}
	pthread_rwlock_unlock(&s->rel_lock);
	if (found == UINT64_MAX)
		return false;
	*out = (struct chunk){ w->a.first + found, n };
	return true;
}

void sim_churn_free(struct sim *s, struct wl *w, const struct chunk *c)
{
	pthread_mutex_lock(&s->glock);
	for (uint64_t u = c->first; u < c->first + c->n; u++)
		s->ustate[u] = U_FREE;
	pthread_mutex_unlock(&s->glock);
	if (w->nreport + c->n > w->report_cap) {
		size_t cap = (w->nreport + c->n) * 2;
		uint64_t *nr = realloc(w->to_report, cap * sizeof(*nr));

		if (!nr)
			return; /* not reported: stays backed, no harm */
		w->to_report = nr;
		w->report_cap = cap;
	}
	for (uint64_t u = c->first; u < c->first + c->n; u++)
		w->to_report[w->nreport++] = u;
}

/*
 * Free page reporting: every 50 ms the freed 4 KiB pages that are still
 * free go to the host in one batch (most land inside 2 MiB pages that stay
 * in use: the host frees a large page only when all its pieces are in).
 */
void sim_report_free(struct sim *s, struct wl *w, bool force)
{
	uint64_t now = sim_now_ns();
	struct pgt_release_result res = { .size = sizeof(res) };
	struct pgt_range *ranges;
	size_t k = 0, nr;
	int64_t ret;

	if (!w->nreport || (!force && now < w->next_report_ns))
		return;
	w->next_report_ns = now + REPORT_EVERY_NS;
	qsort(w->to_report, w->nreport, sizeof(uint64_t), cmp_u64);
	pthread_rwlock_wrlock(&s->rel_lock);
	pthread_mutex_lock(&s->glock);
	for (size_t i = 0; i < w->nreport; i++) {
		uint64_t u = w->to_report[i];

		/* reused since, taken by the balloon, or listed twice */
		if (s->ustate[u] != U_FREE || (k && w->to_report[k - 1] == u))
			continue;
		s->ustate[u] = U_REPORTED;
		w->to_report[k++] = u;
	}
	pthread_mutex_unlock(&s->glock);
	ranges = malloc(MAX_RANGES * sizeof(*ranges));
	for (size_t i = 0; ranges && i < k;) {
		size_t j = i, m;

		/* at most MAX_RANGES ranges per batch */
		m = to_ranges(s, w->to_report + i, k - i, ranges, MAX_RANGES);
		for (size_t r = 0; r < m; r++)
			j += ranges[r].len / SIM_UNIT;
		nr = m;
		ret = pgt_release_batch(s->eng, ranges, nr, PGT_RELEASE_REPEAT_OK, &res);
		if (ret < 0) {
			sim_event(s, "free page reporting: %s", strerror((int)-ret));
			/* not released after all: plain free memory again */
			pthread_mutex_lock(&s->glock);
			for (size_t q = i; q < j; q++)
				if (s->ustate[w->to_report[q]] == U_REPORTED)
					s->ustate[w->to_report[q]] = U_FREE;
			pthread_mutex_unlock(&s->glock);
		} else {
			atomic_fetch_add_explicit(&w->reported, (uint64_t)ret, memory_order_relaxed);
			if (s->bal) {
				pthread_mutex_lock(&s->bal->lock);
				s->bal->rep.reported_bytes += (uint64_t)ret * SIM_UNIT;
				s->bal->rep.freed_bytes += res.freed_bytes;
				pthread_mutex_unlock(&s->bal->lock);
			}
		}
		i = j;
	}
	pthread_rwlock_unlock(&s->rel_lock);
	free(ranges);
	w->nreport = 0;
}

/* ---------------------------------------------------------------- */
/* The balloon driver (guest side)                                   */
/* ---------------------------------------------------------------- */

static bool in_area(const struct area *a, uint64_t u)
{
	return a->n && u >= a->first && u < a->first + a->n;
}

/*
 * Inflate by up to @n units: free memory first (what free page reporting
 * already gave back costs nothing), then the page cache, which the guest
 * drops. The guest does not know which of its pages the host pinned.
 */
static uint64_t inflate(struct balloon *b, uint64_t n)
{
	struct sim *s = b->s;
	struct pgt_release_result res = { .size = sizeof(res), .status = b->status };
	uint64_t k = 0;
	size_t nr;
	int64_t ret;

	pthread_rwlock_wrlock(&s->rel_lock);
	pthread_mutex_lock(&s->glock);
	/* Reported pages are released already: taking them gains the host nothing. */
	for (uint64_t u = 0; u < s->nunits && k < n; u++) {
		if (s->ustate[u] == U_FREE && !in_area(&s->ring, u)) {
			s->ustate[u] = U_BALLOON;
			b->units[k++] = u;
		}
	}
	for (uint64_t u = s->cache.first; u < s->cache.first + s->cache.n && k < n; u++) {
		if (s->ustate[u] == U_USED) {
			s->ustate[u] = U_BALLOON;
			b->units[k++] = u;
		}
	}
	pthread_mutex_unlock(&s->glock);
	if (!k) {
		pthread_rwlock_unlock(&s->rel_lock);
		return 0;
	}
	qsort(b->units, k, sizeof(uint64_t), cmp_u64);
	nr = to_ranges(s, b->units, k, b->ranges, MAX_RANGES);
	ret = pgt_release_batch(s->eng, b->ranges, nr, PGT_RELEASE_TRUSTED | PGT_RELEASE_REPEAT_OK,
				&res);
	pthread_mutex_lock(&s->glock);
	if (ret < 0) {
		for (uint64_t i = 0; i < k; i++)
			s->ustate[b->units[i]] = U_FREE;
	} else if (res.pinned) {
		/* Refused by the host: they stay in the balloon, unreleased. */
		for (size_t r = 0; r < nr; r++) {
			if (!b->status[r])
				continue;
			for (uint64_t g = b->ranges[r].gpa; g < b->ranges[r].gpa + b->ranges[r].len;
			     g += SIM_UNIT)
				if (pgt_pinned_test(s->eng, g) == 1)
					s->ustate[(g - s->info.gpa) >> SIM_UNIT_SHIFT] = U_BALLOON_PIN;
		}
	}
	pthread_mutex_unlock(&s->glock);
	pthread_rwlock_unlock(&s->rel_lock);
	if (ret < 0) {
		sim_event(s, "balloon: release of %" PRIu64 " pages failed: %s", k,
			  strerror((int)-ret));
		return 0;
	}
	pthread_mutex_lock(&b->lock);
	b->held += k;
	b->rep.released_bytes += (res.released + res.already) * SIM_UNIT;
	b->rep.freed_bytes += res.freed_bytes;
	b->rep.refused_pinned += res.pinned * SIM_UNIT;
	pthread_mutex_unlock(&b->lock);
	return k;
}

/* Deflate by up to @n units: refused ones first (nothing to undo), then the
 * most recently ballooned (highest addresses). */
static uint64_t deflate(struct balloon *b, uint64_t n)
{
	struct sim *s = b->s;
	uint64_t k = 0, got = 0;
	size_t nr;

	pthread_rwlock_wrlock(&s->rel_lock);
	pthread_mutex_lock(&s->glock);
	for (uint64_t u = 0; u < s->nunits && got < n; u++) {
		if (s->ustate[u] == U_BALLOON_PIN) {
			s->ustate[u] = U_FREE;
			got++;
		}
	}
	for (uint64_t u = s->nunits; u-- > 0 && got < n;) {
		if (s->ustate[u] == U_BALLOON) {
			s->ustate[u] = U_FREE;
			b->units[k++] = u;
			got++;
		}
	}
	pthread_mutex_unlock(&s->glock);
	qsort(b->units, k, sizeof(uint64_t), cmp_u64);
	nr = to_ranges(s, b->units, k, b->ranges, MAX_RANGES);
	for (size_t r = 0; r < nr; r++) {
		int64_t ret = pgt_reclaim(s->eng, b->ranges[r].gpa, b->ranges[r].len);

		if (ret > 0) {
			pthread_mutex_lock(&b->lock);
			b->rep.reclaimed_bytes += (uint64_t)ret * SIM_UNIT;
			pthread_mutex_unlock(&b->lock);
		}
	}
	pthread_rwlock_unlock(&s->rel_lock);
	pthread_mutex_lock(&b->lock);
	b->held -= got;
	pthread_mutex_unlock(&b->lock);
	return got;
}

static void *driver_main(void *arg)
{
	struct balloon *b = arg;
	struct sim *s = b->s;
	uint64_t batch = (uint64_t)(s->cfg.balloon_rate * (double)DRIVER_TICK_NS / 1e9) / SIM_UNIT;
	uint64_t next = sim_now_ns();

	if (batch < 16)
		batch = 16;
	if (batch > MAX_RANGES)
		batch = MAX_RANGES;
	while (!atomic_load(&s->stop)) {
		int64_t want;
		uint64_t got;

		sim_pause_point(s);
		pthread_mutex_lock(&b->lock);
		want = b->want;
		pthread_mutex_unlock(&b->lock);
		if (want > 0) {
			got = inflate(b, (uint64_t)want < batch ? (uint64_t)want : batch);
			pthread_mutex_lock(&b->lock);
			if (!got) {
				if (!b->starved)
					sim_event(s, "balloon: the guest has no more memory to give "
						  "(%" PRId64 " pages short)", b->want);
				b->starved = true;
				b->want = 0;
			} else {
				b->want -= (int64_t)got;
			}
			pthread_mutex_unlock(&b->lock);
		} else if (want < 0) {
			got = deflate(b, (uint64_t)-want < batch ? (uint64_t)-want : batch);
			pthread_mutex_lock(&b->lock);
			b->want = got ? b->want + (int64_t)got : 0;
			pthread_mutex_unlock(&b->lock);
		}
		next += DRIVER_TICK_NS;
		if (sim_now_ns() > next + 20 * DRIVER_TICK_NS)
			next = sim_now_ns();
		sim_sleep_until(next);
	}
	sim_participant_leave(s);
	return NULL;
}

/* The target controller's callback: runs in the caller of pgt_target_*. */
static int balloon_cb(void *arg, int64_t pages)
{
	struct balloon *b = arg;

	pthread_mutex_lock(&b->lock);
	b->want += pages;
	b->starved = false;
	b->rep.balloon_calls++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Host side                                                         */
/* ---------------------------------------------------------------- */

/* As toolstacks do (Xen's squeezed): within 2 MiB, or 1/256 of the guest. */
static uint64_t tolerance(const struct sim *s)
{
	uint64_t t = s->cfg.memory / 256;

	return t > (2ULL << 20) ? t : 2ULL << 20;
}

int sim_balloon_init(struct sim *s, char *err, size_t n)
{
	struct balloon *b = calloc(1, sizeof(*b));
	struct pgt_target_config tc = { .size = sizeof(tc) };
	char why[256];
	int ret;

	if (!b)
		return -ENOMEM;
	b->s = s;
	pthread_mutex_init(&b->lock, NULL);
	b->units = malloc(MAX_RANGES * sizeof(*b->units));
	b->ranges = malloc(MAX_RANGES * sizeof(*b->ranges));
	b->status = malloc(MAX_RANGES * sizeof(*b->status));
	if (!b->units || !b->ranges || !b->status) {
		ret = -ENOMEM;
		goto err;
	}
	b->safety = (struct pgt_balloon_params){
		.size = sizeof(b->safety),
		.reserve_bytes = s->cfg.balloon_reserve,
		.headroom_permille = 20,
	};
	tc.limits = (struct pgt_memory_limits){
		.size = sizeof(tc.limits),
		.static_min = s->cfg.balloon_reserve,
		.dynamic_min = s->cfg.balloon_reserve,
		.target = s->cfg.memory,
		.dynamic_max = s->cfg.memory,
		.static_max = s->cfg.memory,
	};
	{
		struct pgt_overhead_params op = {
			.size = sizeof(op), .track = s->info.track, .page_size = s->info.page_size,
			.dirty_views = 3, .dirty_method = s->info.dirty_method,
		};

		pgt_compute_overhead(&op, s->cfg.memory, &tc.limits.overhead);
	}
	if (pgt_limits_check(&tc.limits, why, sizeof(why))) {
		snprintf(err, n, "balloon limits: %s", why);
		ret = -EINVAL;
		goto err;
	}
	tc.balloon = balloon_cb;
	tc.balloon_arg = b;
	tc.safety = b->safety;
	tc.retry_ns = 300000000ULL;
	ret = pgt_target_open(s->eng, &tc, &b->t);
	if (ret) {
		snprintf(err, n, "memory target controller: %s", strerror(-ret));
		goto err;
	}
	b->rep.configured = s->cfg.memory;
	sim_participant_join(s); /* before the thread: a pause must wait for it */
	ret = -pthread_create(&b->th, NULL, driver_main, b);
	if (ret) {
		sim_participant_leave(s);
		snprintf(err, n, "balloon driver thread: %s", strerror(-ret));
		pgt_target_close(b->t);
		goto err;
	}
	b->running = true;
	s->bal = b;
	return 0;
err:
	free(b->units);
	free(b->ranges);
	free(b->status);
	free(b);
	return ret;
}

void sim_balloon_fini(struct sim *s)
{
	struct balloon *b = s->bal;

	if (!b)
		return;
	if (b->running)
		pthread_join(b->th, NULL);
	b->running = false;
	pgt_target_close(b->t);
	b->t = NULL;
}

static void note_before(struct balloon *b, const struct sample *now)
{
	struct balloon_report *r = &b->rep;

	r->hp_free_before = r->hp_free_peak = now->hp_free;
	r->rss_before = r->rss_min = now->host_rss;
	r->hugetlb_before = r->hugetlb_min = now->host_hugetlb;
	r->cg_before = r->cg_min = now->cg_usage;
	r->resident_before = r->resident_min = now->resident;
}

int sim_balloon_inflate(struct sim *s, uint64_t target)
{
	struct balloon *b = s->bal;
	struct pgt_balloon_limit lim = { .size = sizeof(lim) };
	char b1[32], b2[32], b3[32], b4[32];
	int ret;

	if (!b)
		return -EINVAL;
	b->rep.ran = true;
	note_before(b, &s->last);
	ret = pgt_balloon_limit(s->eng, &b->safety, &lim);
	if (!ret) {
		uint64_t guest = lim.configured - lim.released;
		uint64_t floor = guest > lim.limit ? guest - lim.limit : 0;

		b->rep.limit = lim.limit;
		b->rep.pinned = lim.pinned;
		b->rep.kept = lim.kept;
		sim_event(s, "balloon: safe limit %s (pinned %s, kept %s): targets below %s are "
			  "refused", sim_bytes(lim.limit, b1, sizeof(b1)),
			  sim_bytes(lim.pinned, b2, sizeof(b2)), sim_bytes(lim.kept, b3, sizeof(b3)),
			  sim_bytes(floor, b4, sizeof(b4)));
		/* Show the refusal: a target the pins make unsafe. */
		if (floor > s->cfg.balloon_reserve + (8ULL << 20)) {
			uint64_t bad = (floor - (4ULL << 20)) & ~(SIM_UNIT - 1);

			if (bad < s->cfg.balloon_reserve)
				bad = s->cfg.balloon_reserve;
			b->rep.refused_target = bad;
			b->rep.refused_error = pgt_target_set(b->t, bad);
			sim_event(s, "balloon: target %s %s%s", sim_bytes(bad, b1, sizeof(b1)),
				  b->rep.refused_error ? "refused: " : "accepted, but it is unsafe",
				  b->rep.refused_error ? strerror(-b->rep.refused_error) : "");
			if (!b->rep.refused_error)
				return -EPROTO;
		}
	}
	b->rep.target = target;
	b->rep.tolerance = tolerance(s);
	b->set_ns = b->last_change = sim_now_ns();
	b->inflating = true;
	ret = pgt_target_set(b->t, target);
	sim_event(s, "balloon: target %s -> %s", sim_bytes(target, b1, sizeof(b1)),
		  ret ? strerror(-ret) : "inflating");
	return ret;
}

int sim_balloon_deflate(struct sim *s, uint64_t target)
{
	struct balloon *b = s->bal;
	char b1[32];
	int ret;

	if (!b)
		return -EINVAL;
	b->rep.deflate_target = target;
	b->inflating = false;
	b->deflating = true;
	b->set_ns = b->last_change = sim_now_ns();
	ret = pgt_target_set(b->t, target);
	sim_event(s, "balloon: target %s -> %s", sim_bytes(target, b1, sizeof(b1)),
		  ret ? strerror(-ret) : "deflating");
	return ret;
}

void sim_balloon_sample(struct sim *s, const struct sample *now)
{
	struct balloon *b = s->bal;
	struct balloon_report *r;

	if (!b || !b->rep.ran)
		return;
	r = &b->rep;
	if (now->hp_free > r->hp_free_peak)
		r->hp_free_peak = now->hp_free;
	if (now->host_rss < r->rss_min)
		r->rss_min = now->host_rss;
	if (now->host_hugetlb < r->hugetlb_min)
		r->hugetlb_min = now->host_hugetlb;
	if (now->cg_usage < r->cg_min)
		r->cg_min = now->cg_usage;
	if (now->resident < r->resident_min)
		r->resident_min = now->resident;
}

/*
 * The toolstack's side of the target, a few times a second. Reached means
 * the guest holds no more than the target plus a tolerance (inflate), or
 * no less than the target minus it, or the balloon is empty (deflate): with
 * free page reporting running, the guest's size moves by whole reported
 * batches and rarely sits exactly on the target, so the library's exact
 * "reached" is noted (exact) but not waited for.
 * When the driver has done all it was asked and the target is still not
 * met for RETRY_NS (the host refused pinned pages, reported pages were
 * reused), the guest is asked again through pgt_target_set() of the same
 * target (the library recomputes the ask). pgt_target_wait()'s own re-ask
 * needs a blocking wait, and progress there means any change in released
 * memory, which free page reporting provides all the time.
 */
#define RETRY_NS 150000000ULL

void sim_balloon_tick(struct sim *s)
{
	struct balloon *b = s->bal;
	struct pgt_target_status st = { .size = sizeof(st) };
	struct balloon_report *r;
	uint64_t now = sim_now_ns(), held;
	int64_t want;
	bool starved;
	char b1[32], b2[32];

	if (!b || !(b->inflating || b->deflating))
		return;
	r = &b->rep;
	(void)pgt_target_wait(b->t, 0);
	if (pgt_target_status(b->t, &st))
		return;
	pthread_mutex_lock(&b->lock);
	held = b->held;
	starved = b->starved;
	want = b->want;
	pthread_mutex_unlock(&b->lock);
	/* the driver is busy with what it was asked: not stalled */
	if (want)
		b->last_change = now;
	if (b->inflating && st.missing <= (int64_t)tolerance(s)) {
		r->reached = true;
		r->reach_seconds = (double)(now - b->set_ns) / 1e9;
		r->exact = st.reached;
		b->inflating = false;
		sim_event(s, "balloon: target %s reached in %.1f s (guest holds %s)",
			  sim_bytes(r->target, b1, sizeof(b1)), r->reach_seconds,
			  sim_bytes(st.guest, b2, sizeof(b2)));
		return;
	}
	if (b->deflating && (st.missing >= -(int64_t)tolerance(s) || !held)) {
		r->deflate_reached = true;
		b->deflating = false;
		sim_event(s, "balloon: deflated to %s in %.1f s (guest holds %s%s)",
			  sim_bytes(r->deflate_target, b1, sizeof(b1)),
			  (double)(now - b->set_ns) / 1e9, sim_bytes(st.guest, b2, sizeof(b2)),
			  st.missing < 0 ? "; the rest is out through free page reporting" : "");
		return;
	}
	if (starved && b->inflating)
		return;
	if (now - b->last_change >= RETRY_NS) {
		b->last_change = now;
		r->reasks++;
		pgt_target_set(b->t, b->inflating ? r->target : r->deflate_target);
	}
}

const struct balloon_report *sim_balloon_report(struct sim *s)
{
	struct balloon *b = s->bal;
	struct pgt_partial_report pr = { .size = sizeof(pr) };

	if (!b)
		return NULL;
	if (!pgt_release_partial(s->r, &pr)) {
		b->rep.partial_pages = pr.partial;
		b->rep.partial_units = pr.units;
	}
	return &b->rep;
}

/* Whether the inflate target was reached (the deflate waits for it). */
bool sim_balloon_reached(struct sim *s)
{
	bool r;

	if (!s->bal)
		return false;
	pthread_mutex_lock(&s->bal->lock);
	r = s->bal->rep.reached;
	pthread_mutex_unlock(&s->bal->lock);
	return r;
}

uint64_t sim_balloon_target(struct sim *s)
{
	struct balloon *b = s->bal;

	if (!b || !b->rep.ran)
		return 0;
	return b->deflating || b->rep.deflate_target ? b->rep.deflate_target : b->rep.target;
}

void sim_balloon_free(struct sim *s)
{
	struct balloon *b = s->bal;

	if (!b)
		return;
	sim_balloon_fini(s);
	pthread_mutex_destroy(&b->lock);
	free(b->units);
	free(b->ranges);
	free(b->status);
	free(b);
	s->bal = NULL;
}
