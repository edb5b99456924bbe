/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim migration: iterative pre-copy over a simulated link. Pages are
 * really copied into a destination buffer, paced to the link speed; each
 * round sends what pgt_dirty_harvest() reports since the previous one, until
 * the rest fits the downtime budget (or max rounds / time is up); then the
 * guest is paused for the stop-and-copy and the destination is compared
 * with the source, which proves no dirty page was lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tools/sim.h"

#define BATCH_UNITS 64 /* 256 KiB per copy step: the pacing granularity */

struct mctx {
	struct sim *s;
	struct migration *m;
	uint8_t *dst;
	double rate;              /* bytes/s */
	unsigned long *bm;        /* pages to send this round */
	unsigned long *resent;    /* pages sent after round 1 started */
	unsigned long *tmp;
	uint64_t link_t0;         /* link schedule: when the link is free again */
	uint64_t link_bytes;
};

static bool test_bit(const unsigned long *bm, uint64_t i)
{
	return bm[i / SIM_BITS] & (1UL << (i % SIM_BITS));
}

static void set_bit(unsigned long *bm, uint64_t i)
{
	bm[i / SIM_BITS] |= 1UL << (i % SIM_BITS);
}

/* Copy the units [u, u + n) that are not released; returns bytes copied. */
static uint64_t copy_units(struct mctx *x, uint64_t u, uint64_t n)
{
	struct sim *s = x->s;
	uint64_t bytes = 0;

	/* rel_lock: a unit is not given away while we read it (a read of a
	 * freed page would fault it back in). */
	pthread_rwlock_rdlock(&s->rel_lock);
	for (uint64_t i = u; i < u + n; i++) {
		if (sim_unit_released(s, i))
			continue;
		memcpy(x->dst + (i << SIM_UNIT_SHIFT), s->mem + (i << SIM_UNIT_SHIFT), SIM_UNIT);
		bytes += SIM_UNIT;
	}
	pthread_rwlock_unlock(&s->rel_lock);
	return bytes;
}

/* Wait until the link has carried everything queued so far. */
static void pace(struct mctx *x, uint64_t bytes)
{
	x->link_bytes += bytes;
	sim_sleep_until(x->link_t0 + (uint64_t)((double)x->link_bytes / x->rate * 1e9));
}

static void link_reset(struct mctx *x)
{
	x->link_t0 = sim_now_ns();
	x->link_bytes = 0;
}

/* Send every page set in x->bm; returns pages sent, adds bytes to *bytes. */
static uint64_t send_bitmap(struct mctx *x, bool resend, uint64_t *bytes)
{
	struct sim *s = x->s;
	uint64_t pages = 0, pending = 0, upp = s->units_per_page;

	for (uint64_t w = 0; w < s->words; w++) {
		unsigned long word = x->bm[w];

		while (word) {
			uint64_t p = w * SIM_BITS + (uint64_t)__builtin_ctzl(word);

			word &= word - 1;
			for (uint64_t u = p * upp; u < (p + 1) * upp; u += BATCH_UNITS) {
				uint64_t n = upp - (u - p * upp) < BATCH_UNITS ? upp - (u - p * upp)
									       : BATCH_UNITS;
				uint64_t b = copy_units(x, u, n);

				*bytes += b;
				pending += b;
				if (pending >= BATCH_UNITS * SIM_UNIT) {
					pace(x, pending);
					pending = 0;
				}
			}
			if (resend)
				set_bit(x->resent, p);
			pages++;
		}
	}
	if (pending)
		pace(x, pending);
	return pages;
}

static int64_t harvest_into(struct mctx *x, pgt_dirty_view *v, unsigned long *bm)
{
	struct pgt_harvest h = {
		.size = sizeof(h), .bitmap = bm, .bitmap_words = x->s->words,
	};

	return pgt_dirty_harvest(v, &h);
}

static int64_t harvest(struct mctx *x, pgt_dirty_view *v)
{
	return harvest_into(x, v, x->bm);
}

static void add_round(struct migration *m, unsigned round, uint64_t pages, uint64_t bytes,
		      double secs, double est)
{
	if (m->nrounds == m->rounds_cap) {
		unsigned cap = m->rounds_cap ? m->rounds_cap * 2 : 16;
		struct mig_round *r = realloc(m->rounds, cap * sizeof(*r));

		if (!r)
			return;
		m->rounds = r;
		m->rounds_cap = cap;
	}
	m->rounds[m->nrounds++] = (struct mig_round){ round, pages, bytes, secs, est };
}

/* With the guest paused: compare every unit that is neither released nor
 * untouched (an untouched page is zero on both sides and reading it would
 * populate it). */
static void verify(struct mctx *x, const unsigned long *touched)
{
	struct sim *s = x->s;
	struct migration *m = x->m;

	for (uint64_t p = 0; p < s->npages; p++) {
		bool page_released = false;

		if (touched && !test_bit(touched, p))
			continue;
		for (uint64_t u = p * s->units_per_page; u < (p + 1) * s->units_per_page; u++) {
			if (sim_unit_released(s, u)) {
				m->released_skipped++;
				page_released = true;
				continue;
			}
			m->verify_units++;
			if (memcmp(x->dst + (u << SIM_UNIT_SHIFT), s->mem + (u << SIM_UNIT_SHIFT),
				   SIM_UNIT))
				m->verify_mismatch++;
		}
		/* Written during the migration, so it must have gone again —
		 * unless the guest gave (part of) it away meanwhile. */
		if (test_bit((const unsigned long *)s->shadow, p)) {
			m->dirtied_pages++;
			if (!test_bit(x->resent, p) && !page_released)
				m->dirtied_not_sent++;
		}
	}
	m->verified = m->verify_mismatch == 0 && m->dirtied_not_sent == 0;
}

static void *mig_main(void *arg)
{
	struct mctx *x = arg;
	struct sim *s = x->s;
	struct migration *m = x->m;
	pgt_dirty_view *v = NULL;
	unsigned long *touched = NULL;
	uint64_t t0 = sim_now_ns(), t, bytes;
	unsigned round = 1;
	int64_t n;
	int ret;

	m->t_start = sim_elapsed(s);
	ret = pgt_dirty_view_open(s->r, &v);
	if (ret) {
		m->error = ret;
		goto out;
	}
	/* After the view is open: every write that sets a shadow bit from here
	 * on lands after the view started listening. */
	for (size_t w = 0; w < s->words; w++)
		atomic_store_explicit(&s->shadow[w], 0, memory_order_relaxed);
	atomic_store(&s->shadow_on, true);

	/* Round 1: everything the guest ever touched (untouched pages are
	 * zero at the destination already). */
	if (s->cfg.touch) {
		touched = calloc(s->words, sizeof(*touched));
		if (!touched || pgt_touched_bitmap(s->r, x->bm, s->words) < 0) {
			m->error = -ENOMEM;
			goto out;
		}
	} else {
		for (uint64_t p = 0; p < s->npages; p++)
			set_bit(x->bm, p);
	}
	sim_event(s, "migrate @ %g Gbit/s: round 1 (all touched memory), budget %g ms",
		  m->link_gbit, m->budget_ms);
	for (;;) {
		uint64_t pages;
		double secs, est;

		t = sim_now_ns();
		bytes = 0;
		link_reset(x);
		pages = send_bitmap(x, round > 1, &bytes);
		secs = (double)(sim_now_ns() - t) / 1e9;
		if (round == 1)
			m->first_round_pages = pages;
		m->pages_sent += pages;
		m->bytes_sent += bytes;

		n = harvest(x, v);
		if (n < 0) {
			m->error = (int)n;
			goto out;
		}
		m->view_pages += (uint64_t)n;
		est = (double)((uint64_t)n << s->page_shift) / x->rate * 1000;
		add_round(m, round, pages, bytes, secs, est);
		if (round > 1 || !s->quiet)
			sim_event(s, "migrate @ %g Gbit/s: round %u sent %" PRIu64 " pages in %.2f s; "
				  "%" PRIu64 " dirty now (downtime would be %.1f ms)",
				  m->link_gbit, round, pages, secs, (uint64_t)n, est);
		if (est <= m->budget_ms) {
			m->converged = true;
			m->end_reason = "converged";
			break;
		}
		if (round >= m->max_rounds) {
			m->end_reason = "max rounds";
			break;
		}
		if (atomic_load(&m->force_stop)) {
			m->end_reason = "out of time";
			break;
		}
		round++;
	}

	/* Stop-and-copy: the guest (vCPUs, device, balloon) is paused. */
	t = sim_now_ns();
	sim_pause(s);
	m->stop_ms = (double)(sim_now_ns() - t) / 1e6;
	/* What the loop's last harvest left is still in bm: add the rest. */
	n = harvest_into(x, v, x->tmp);
	if (n >= 0)
		for (size_t w = 0; w < s->words; w++)
			x->bm[w] |= x->tmp[w];
	atomic_store(&s->shadow_on, false);
	if (n < 0) {
		m->error = (int)n;
		sim_resume(s);
		goto out;
	}
	m->view_pages += (uint64_t)n;
	bytes = 0;
	link_reset(x);
	m->final_pages = send_bitmap(x, true, &bytes);
	m->pages_sent += m->final_pages;
	m->bytes_sent += bytes;
	m->est_downtime_ms = (double)(m->final_pages << s->page_shift) / x->rate * 1000;
	m->downtime_ms = (double)(sim_now_ns() - t) / 1e6;
	add_round(m, round + 1, m->final_pages, bytes, m->downtime_ms / 1000, m->est_downtime_ms);
	if (touched && pgt_touched_bitmap(s->r, touched, s->words) < 0) {
		free(touched);
		touched = NULL;
	}
	verify(x, touched);
	sim_resume(s);
	sim_event(s, "migrate @ %g Gbit/s: %s after %u round%s; stop-and-copy %" PRIu64
		  " pages, downtime %.1f ms (estimated %.1f); destination %s",
		  m->link_gbit, m->converged ? "converged" : "NOT converged", round,
		  round == 1 ? "" : "s", m->final_pages,
		  m->downtime_ms, m->est_downtime_ms,
		  m->verified ? "verified identical" : "DIFFERS");
out:
	m->t_end = sim_elapsed(s);
	m->throughput = m->bytes_sent / ((double)(sim_now_ns() - t0) / 1e9);
	pgt_dirty_view_close(v);
	free(touched);
	atomic_store(&m->done, true);
	return NULL;
}

int sim_migration_start(struct sim *s, struct migration *m)
{
	struct mctx *x = calloc(1, sizeof(*x));
	int ret;

	if (!x)
		return -ENOMEM;
	m->s = s;
	x->s = s;
	x->m = m;
	x->rate = m->link_gbit * 1e9 / 8;
	x->bm = calloc(s->words, sizeof(unsigned long));
	x->resent = calloc(s->words, sizeof(unsigned long));
	x->tmp = calloc(s->words, sizeof(unsigned long));
	/* The destination host's memory; populated as pages arrive. */
	x->dst = mmap(NULL, s->info.length, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!x->bm || !x->resent || !x->tmp || x->dst == MAP_FAILED) {
		ret = -ENOMEM;
		goto err;
	}
	m->end_reason = "running";
	ret = -pthread_create(&m->th, NULL, mig_main, x);
	if (ret)
		goto err;
	m->priv = x;
	return 0;
err:
	if (x->dst != MAP_FAILED && x->dst)
		munmap(x->dst, s->info.length);
	free(x->bm);
	free(x->resent);
	free(x->tmp);
	free(x);
	return ret;
}

void sim_migration_join(struct sim *s, struct migration *m)
{
	struct mctx *x = m->priv;

	if (!x)
		return;
	pthread_join(m->th, NULL);
	munmap(x->dst, s->info.length);
	free(x->bm);
	free(x->resent);
	free(x->tmp);
	free(x);
	m->priv = NULL;
}
