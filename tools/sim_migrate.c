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
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/sim.h"

extern char **environ;

#define BATCH_UNITS 64 /* 256 KiB per copy step: the pacing granularity */
/*
 * Zero markers: pgt_zero_pages() is asked about a 64-piece block (one
 * bitmap word, 256 KiB) only when the round sends at least ZERO_MIN_PIECES
 * of its pieces: a call costs a few syscalls and reads the block's resident
 * pieces, which pays when it can spare whole 4 KiB sends (round 1, whole
 * 2 MiB pages), not for the scattered single pieces refined rounds send.
 * Consecutive such blocks go in one call of at most ZERO_SPAN_WORDS words.
 */
#define ZERO_MIN_PIECES 16
#define ZERO_SPAN_WORDS 128

static const uint8_t zero_piece[SIM_UNIT];

/*
 * The destination host: another process (this binary, re-executed) holding
 * the destination memory, written with process_vm_writev() as a socket
 * would; so the source's RSS shows the guest, not the copy. When it cannot
 * be started, a buffer in this process stands in (and RSS includes it).
 */
struct dest {
	pid_t pid;          /* 0: in-process buffer */
	uint64_t addr;      /* in the destination process */
	int to_child;       /* closing it ends the destination */
	uint8_t *local;
	uint64_t len;
};

struct mctx {
	struct sim *s;
	struct migration *m;
	struct dest dst;
	uint8_t *vbuf;            /* verify: units read back */
	double rate;              /* bytes/s */
	unsigned long *bm;        /* granules to send this round */
	unsigned long *resent;    /* pages sent after round 1 started */
	unsigned long *tmp;
	unsigned long *seen;      /* pages with a granule sent this round */
	/* what a harvest reports: pages, or 4 KiB pieces when refining */
	unsigned gshift;
	uint64_t gupp;            /* units per granule */
	uint64_t ngran;
	size_t gwords;
	/*
	 * Refining: each harvest hands over a copy of the pieces it reports
	 * (pgt_harvest.data), scattered here by position; rounds after the
	 * first send from it, so the fingerprints describe what was sent.
	 */
	uint8_t *staging;
	uint8_t *hdata;
	unsigned long *staged;    /* 4 KiB pieces whose latest copy is in staging
				   * (the rest is sent from guest memory) */
	uint64_t link_t0;         /* link schedule: when the link is free again */
	uint64_t link_bytes;
	/* zero markers, by 4 KiB unit */
	size_t uwords;
	unsigned long *zero;      /* send a marker this round */
	unsigned long *dsent;     /* the destination holds data we sent */
	unsigned long *ztmp;      /* pgt_zero_pages() answer, ZERO_SPAN_WORDS */
	uint64_t round_zero;      /* markers sent this round */
};

static bool test_bit(const unsigned long *bm, uint64_t i)
{
	return bm[i / SIM_BITS] & (1UL << (i % SIM_BITS));
}

static void set_bit(unsigned long *bm, uint64_t i)
{
	bm[i / SIM_BITS] |= 1UL << (i % SIM_BITS);
}

static void clear_bit(unsigned long *bm, uint64_t i)
{
	bm[i / SIM_BITS] &= ~(1UL << (i % SIM_BITS));
}

int sim_destination_main(uint64_t len)
{
	void *p;
	char c;

	/* the source going away, however it goes, ends us too */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return 1;
	printf("%" PRIxPTR "\n", (uintptr_t)p);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

static int dest_open(struct dest *d, uint64_t len)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	char lenstr[32], line[64];
	char *argv[] = { "pgtrack-sim", "--destination-host", lenstr, NULL };
	struct pollfd pfd;
	ssize_t n = 0;
	pid_t pid;
	int ret;

	memset(d, 0, sizeof(*d));
	d->len = len;
	d->to_child = -1;
	snprintf(lenstr, sizeof(lenstr), "%" PRIu64, len);
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		goto local;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* posix_spawn does not copy our address space (vfork-like): no
	 * copy-on-write of guest memory, no inherited userfaultfd trouble */
	ret = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (ret)
		goto local;
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	pfd = (struct pollfd){ .fd = out[0], .events = POLLIN };
	if (poll(&pfd, 1, 5000) == 1)
		n = read(out[0], line, sizeof(line) - 1);
	close(out[0]);
	out[0] = -1;
	if (n <= 0) {
		close(in[1]);
		waitpid(pid, NULL, 0);
		in[1] = -1;
		goto local;
	}
	line[n] = '\0';
	d->addr = strtoull(line, NULL, 16);
	d->pid = pid;
	d->to_child = in[1];
	return 0;
local:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	d->pid = 0;
	d->local = mmap(NULL, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (d->local == MAP_FAILED) {
		d->local = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void dest_close(struct dest *d)
{
	if (d->pid) {
		close(d->to_child);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->local)
		munmap(d->local, d->len);
	d->local = NULL;
}

/* Move @n iovecs between us and the destination (@write: to it). */
static int dest_xfer(struct dest *d, struct iovec *loc, struct iovec *rem, size_t n, bool write)
{
	size_t want = 0;
	ssize_t got;

	if (!d->pid) {
		for (size_t i = 0; i < n; i++) {
			uint8_t *r = d->local + ((uintptr_t)rem[i].iov_base - d->addr);

			if (write)
				memcpy(r, loc[i].iov_base, loc[i].iov_len);
			else
				memcpy(loc[i].iov_base, r, loc[i].iov_len);
		}
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		want += loc[i].iov_len;
	got = write ? process_vm_writev(d->pid, loc, n, rem, n, 0)
		    : process_vm_readv(d->pid, loc, n, rem, n, 0);
	return got == (ssize_t)want ? 0 : got < 0 ? -errno : -EIO;
}

/* Copy the units [u, u + n) that are not released; returns bytes copied. */
static uint64_t copy_units(struct mctx *x, uint64_t u, uint64_t n)
{
	struct sim *s = x->s;
	struct iovec loc[BATCH_UNITS], rem[BATCH_UNITS];
	uint64_t bytes = 0;
	size_t k = 0;
	int ret;

	/* rel_lock: a unit is not given away while we read it (a read of a
	 * freed page would fault it back in). */
	pthread_rwlock_rdlock(&s->rel_lock);
	for (uint64_t i = u; i < u + n; i++) {
		const uint8_t *src;

		if (sim_unit_released(s, i))
			continue;
		if (test_bit(x->zero, i)) {
			/* a marker: the receiver zeroes the piece, which is
			 * a no-op where it never received data */
			bytes += SIM_ZERO_MARKER;
			x->round_zero++;
			if (!test_bit(x->dsent, i))
				continue;
			clear_bit(x->dsent, i);
			src = zero_piece;
		} else {
			bytes += SIM_UNIT;
			set_bit(x->dsent, i);
			src = (x->staged && test_bit(x->staged, i) ? x->staging : s->mem) +
			      (i << SIM_UNIT_SHIFT);
		}
		loc[k] = (struct iovec){ (void *)(uintptr_t)src, SIM_UNIT };
		rem[k] = (struct iovec){ (void *)(uintptr_t)(x->dst.addr + (i << SIM_UNIT_SHIFT)),
					 SIM_UNIT };
		k++;
	}
	ret = k ? dest_xfer(&x->dst, loc, rem, k, true) : 0;
	pthread_rwlock_unlock(&s->rel_lock);
	if (ret && !x->m->error)
		x->m->error = ret;
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

/* Non-released bytes of page @p: what sending it whole would cost. */
static uint64_t page_bytes(struct sim *s, uint64_t p)
{
	uint64_t b = 0;

	for (uint64_t u = p * s->units_per_page; u < (p + 1) * s->units_per_page; u++)
		b += sim_unit_released(s, u) ? 0 : SIM_UNIT;
	return b;
}

/* Copy granule @g's units, pacing the link; returns bytes copied. */
static uint64_t send_granule(struct mctx *x, uint64_t g, uint64_t *pending)
{
	uint64_t bytes = 0, u0 = g * x->gupp;

	for (uint64_t u = u0; u < u0 + x->gupp; u += BATCH_UNITS) {
		uint64_t n = u0 + x->gupp - u < BATCH_UNITS ? u0 + x->gupp - u : BATCH_UNITS;
		uint64_t b = copy_units(x, u, n);

		bytes += b;
		*pending += b;
		if (*pending >= BATCH_UNITS * SIM_UNIT) {
			pace(x, *pending);
			*pending = 0;
		}
	}
	return bytes;
}

/* The units of block @w (a bitmap word of 4 KiB units) this round sends:
 * x->bm is by granule, a unit or a page of 512 units. */
static unsigned long want_word(const struct mctx *x, uint64_t w)
{
	if (x->gupp == 1)
		return x->bm[w];
	return test_bit(x->bm, w * SIM_BITS / x->gupp) ? ~0UL : 0;
}

static bool zero_worth(const struct mctx *x, uint64_t w)
{
	return __builtin_popcountl(want_word(x, w)) >= ZERO_MIN_PIECES;
}

/* Ask pgt_zero_pages() about blocks [w0, w0 + nw); mark what it reports
 * zero among the units sent from guest memory (a staged piece is sent
 * from its harvest-time copy, which the fingerprints describe). */
static int zero_span(struct mctx *x, uint64_t w0, uint64_t nw)
{
	struct sim *s = x->s;
	uint64_t u0 = w0 * SIM_BITS, nu = nw * SIM_BITS;
	int64_t n;

	if (u0 + nu > s->nunits)
		nu = s->nunits - u0;
	/* it reads resident pieces: none is given away meanwhile */
	pthread_rwlock_rdlock(&s->rel_lock);
	n = pgt_zero_pages(s->r, sim_unit_gpa(s, u0), nu << SIM_UNIT_SHIFT, x->ztmp, 0);
	pthread_rwlock_unlock(&s->rel_lock);
	if (n < 0)
		return (int)n;
	for (uint64_t i = 0; n > 0 && i < nw; i++)
		x->zero[w0 + i] = x->ztmp[i] & want_word(x, w0 + i) &
				  ~(x->staged ? x->staged[w0 + i] : 0);
	return 0;
}

/* Before a round: which of its pieces go as zero markers (x->zero). An
 * error only means fewer markers: those pieces are sent whole. */
static void zero_scan(struct mctx *x)
{
	uint64_t t = sim_now_ns(), w = 0;
	int ret = 0;

	memset(x->zero, 0, x->uwords * sizeof(unsigned long));
	if (!x->m->zero_markers)
		return;
	while (w < x->uwords && !ret) {
		uint64_t nw = 0;

		while (w + nw < x->uwords && nw < ZERO_SPAN_WORDS && zero_worth(x, w + nw))
			nw++;
		if (nw)
			ret = zero_span(x, w, nw);
		w += nw ? nw : 1;
	}
	x->m->zero_check_ms += (double)(sim_now_ns() - t) / 1e6;
}

/* Send every granule set in x->bm; returns granules sent, adds bytes to
 * *bytes and what whole pages would have cost to m->bytes_2m. */
static uint64_t send_bitmap(struct mctx *x, bool resend, uint64_t *bytes)
{
	struct sim *s = x->s;
	uint64_t n = 0, pending = 0;

	memset(x->seen, 0, s->words * sizeof(unsigned long));
	zero_scan(x);
	x->round_zero = 0;
	for (uint64_t w = 0; w < x->gwords; w++) {
		unsigned long word = x->bm[w];

		while (word) {
			uint64_t g = w * SIM_BITS + (uint64_t)__builtin_ctzl(word);
			uint64_t p = (g << x->gshift) >> s->page_shift;

			word &= word - 1;
			*bytes += send_granule(x, g, &pending);
			if (resend)
				set_bit(x->resent, p);
			if (!test_bit(x->seen, p)) {
				set_bit(x->seen, p);
				x->m->bytes_2m += page_bytes(s, p);
			}
			n++;
		}
	}
	if (pending)
		pace(x, pending);
	return n;
}

static int64_t harvest_into(struct mctx *x, pgt_dirty_view *v, unsigned long *bm)
{
	struct pgt_harvest h = {
		.size = sizeof(h), .bitmap = bm, .bitmap_words = x->gwords,
		.data = x->hdata, .data_cap = x->hdata ? x->s->info.length : 0,
	};
	const uint8_t *d = x->hdata;
	int64_t n;

	if (!x->hdata)
		return pgt_dirty_harvest(v, &h);
	/* hashing reads guest memory: no page is given away meanwhile */
	pthread_rwlock_rdlock(&x->s->rel_lock);
	n = pgt_dirty_harvest(v, &h);
	pthread_rwlock_unlock(&x->s->rel_lock);
	for (size_t w = 0; n > 0 && w < x->gwords; w++) {
		x->staged[w] |= bm[w];
		for (unsigned long b = bm[w]; b; b &= b - 1, d += SIM_UNIT)
			memcpy(x->staging + ((w * SIM_BITS + (uint64_t)__builtin_ctzl(b)) << SIM_UNIT_SHIFT),
			       d, SIM_UNIT);
	}
	return n;
}

static int64_t harvest(struct mctx *x, pgt_dirty_view *v)
{
	return harvest_into(x, v, x->bm);
}

static void add_round(struct mctx *x, unsigned round, uint64_t pages, uint64_t bytes,
		      double secs, double est)
{
	struct migration *m = x->m;

	m->zero_pieces += x->round_zero;
	if (m->nrounds == m->rounds_cap) {
		unsigned cap = m->rounds_cap ? m->rounds_cap * 2 : 16;
		struct mig_round *r = realloc(m->rounds, cap * sizeof(*r));

		if (!r)
			return;
		m->rounds = r;
		m->rounds_cap = cap;
	}
	m->rounds[m->nrounds++] = (struct mig_round){ round, pages, bytes, secs, est,
						      x->round_zero };
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
		for (uint64_t u0 = p * s->units_per_page; u0 < (p + 1) * s->units_per_page;
		     u0 += BATCH_UNITS) {
			uint64_t end = (p + 1) * s->units_per_page, u;
			struct iovec loc[BATCH_UNITS], rem[BATCH_UNITS];
			uint64_t idx[BATCH_UNITS];
			size_t k = 0;

			if (end > u0 + BATCH_UNITS)
				end = u0 + BATCH_UNITS;
			for (u = u0; u < end; u++) {
				if (sim_unit_released(s, u)) {
					m->released_skipped++;
					page_released = true;
					continue;
				}
				loc[k] = (struct iovec){ x->vbuf + k * SIM_UNIT, SIM_UNIT };
				rem[k] = (struct iovec){
					(void *)(uintptr_t)(x->dst.addr + (u << SIM_UNIT_SHIFT)), SIM_UNIT };
				idx[k++] = u;
			}
			if (k && dest_xfer(&x->dst, loc, rem, k, false)) {
				m->verify_mismatch += k;
				continue;
			}
			for (size_t i = 0; i < k; i++) {
				m->verify_units++;
				if (memcmp(x->vbuf + i * SIM_UNIT, s->mem + (idx[i] << SIM_UNIT_SHIFT),
					   SIM_UNIT))
					m->verify_mismatch++;
			}
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

/*
 * Open the migration's view, drop what it inherited and start the shadow;
 * set x->bm to round 1's set: everything the guest ever touched (untouched
 * pages are zero at the destination already). *touched is kept for verify.
 */
static int mig_begin(struct mctx *x, pgt_dirty_view **v, unsigned long **touched)
{
	struct sim *s = x->s;
	uint64_t per = s->info.page_size >> x->gshift;
	int64_t n;
	int ret;

	ret = pgt_dirty_view_open(s->r, v);
	if (ret)
		return ret;
	/*
	 * A new view also gets what older views have not had collected yet
	 * (writes from before it opened): drop that now. Nothing is lost: a
	 * page written before this point is touched, so round 1, which reads
	 * it after this point, sends its current content.
	 */
	n = harvest(x, *v);
	if (n < 0)
		return (int)n;
	/* Every write that sets a shadow bit from here on is in the view. */
	for (size_t w = 0; w < s->words; w++)
		atomic_store_explicit(&s->shadow[w], 0, memory_order_relaxed);
	atomic_store(&s->shadow_on, true);
	if (s->cfg.touch) {
		*touched = calloc(s->words, sizeof(**touched));
		if (!*touched || pgt_touched_bitmap(s->r, *touched, s->words) < 0)
			return -ENOMEM;
	}
	memset(x->bm, 0, x->gwords * sizeof(unsigned long));
	for (uint64_t p = 0; p < s->npages; p++) {
		if (*touched && !test_bit(*touched, p))
			continue;
		for (uint64_t g = p * per; g < (p + 1) * per; g++)
			set_bit(x->bm, g);
	}
	return 0;
}

/* Pre-copy rounds until the rest fits the budget; returns the last round
 * or a negative errno. x->bm holds the last harvest's set. */
static int precopy(struct mctx *x, pgt_dirty_view *v)
{
	struct sim *s = x->s;
	struct migration *m = x->m;
	unsigned round = 1;

	for (;; round++) {
		uint64_t t = sim_now_ns(), bytes = 0, pages;
		double secs, est;
		int64_t n;

		link_reset(x);
		pages = send_bitmap(x, round > 1, &bytes);
		secs = (double)(sim_now_ns() - t) / 1e9;
		if (round == 1)
			m->first_round_pages = pages;
		m->pages_sent += pages;
		m->bytes_sent += bytes;

		n = harvest(x, v);
		if (n < 0)
			return (int)n;
		m->view_pages += (uint64_t)n;
		est = (double)((uint64_t)n << x->gshift) / x->rate * 1000;
		add_round(x, round, pages, bytes, secs, est);
		if (round > 1 || !s->quiet)
			sim_event(s, "migrate @ %g Gbit/s: round %u sent %" PRIu64 " pages in %.2f s; "
				  "%" PRIu64 " dirty now (downtime would be %.1f ms)",
				  m->link_gbit, round, pages, secs, (uint64_t)n, est);
		if (est <= m->budget_ms) {
			m->converged = true;
			m->end_reason = "converged";
			return (int)round;
		}
		if (round >= m->max_rounds) {
			m->end_reason = "max rounds";
			return (int)round;
		}
		if (atomic_load(&m->force_stop)) {
			m->end_reason = "out of time";
			return (int)round;
		}
	}
}

/* Stop-and-copy with the guest (vCPUs, device, balloon) paused, then
 * verify the destination against the source. */
static int stop_and_copy(struct mctx *x, pgt_dirty_view *v, unsigned round,
			 unsigned long *touched)
{
	struct sim *s = x->s;
	struct migration *m = x->m;
	uint64_t t = sim_now_ns(), bytes = 0;
	int64_t n;

	sim_pause(s);
	m->stop_ms = (double)(sim_now_ns() - t) / 1e6;
	/* What the loop's last harvest left is still in bm: add the rest. */
	n = harvest_into(x, v, x->tmp);
	if (n >= 0)
		for (size_t w = 0; w < x->gwords; w++)
			x->bm[w] |= x->tmp[w];
	atomic_store(&s->shadow_on, false);
	if (n < 0) {
		sim_resume(s);
		return (int)n;
	}
	m->view_pages += (uint64_t)n;
	link_reset(x);
	m->final_pages = send_bitmap(x, true, &bytes);
	m->pages_sent += m->final_pages;
	m->bytes_sent += bytes;
	m->est_downtime_ms = (double)(m->final_pages << x->gshift) / x->rate * 1000;
	m->downtime_ms = (double)(sim_now_ns() - t) / 1e6;
	add_round(x, round + 1, m->final_pages, bytes, m->downtime_ms / 1000, m->est_downtime_ms);
	/* no touch tracking: verify reads every unit */
	verify(x, touched && pgt_touched_bitmap(s->r, touched, s->words) >= 0 ? touched : NULL);
	sim_resume(s);
	return 0;
}

static void *mig_main(void *arg)
{
	struct mctx *x = arg;
	struct sim *s = x->s;
	struct migration *m = x->m;
	pgt_dirty_view *v = NULL;
	unsigned long *touched = NULL;
	uint64_t t0 = sim_now_ns();
	unsigned round;
	int ret;

	m->t_start = sim_elapsed(s);
	ret = mig_begin(x, &v, &touched);
	if (ret)
		goto out;
	sim_event(s, "migrate @ %g Gbit/s: round 1 (all touched memory), budget %g ms",
		  m->link_gbit, m->budget_ms);
	ret = precopy(x, v);
	if (ret < 0)
		goto out;
	round = (unsigned)ret;
	ret = stop_and_copy(x, v, round, touched);
	if (ret)
		goto out;
	sim_event(s, "migrate @ %g Gbit/s: %s after %u round%s; stop-and-copy %" PRIu64
		  " pages, downtime %.1f ms (estimated %.1f); destination %s",
		  m->link_gbit, m->converged ? "converged" : "NOT converged", round,
		  round == 1 ? "" : "s", m->final_pages,
		  m->downtime_ms, m->est_downtime_ms,
		  m->verified ? "verified identical" : "DIFFERS");
out:
	if (ret < 0)
		m->error = ret;
	m->t_end = sim_elapsed(s);
	m->throughput = m->bytes_sent / ((double)(sim_now_ns() - t0) / 1e9);
	pgt_dirty_view_close(v);
	free(touched);
	atomic_store(&m->done, true);
	return NULL;
}

static void mctx_free(struct mctx *x)
{
	dest_close(&x->dst);
	free(x->vbuf);
	free(x->bm);
	free(x->resent);
	free(x->tmp);
	free(x->seen);
	free(x->zero);
	free(x->dsent);
	free(x->ztmp);
	if (x->staging)
		munmap(x->staging, 2 * x->s->info.length);
	free(x->staged);
	free(x);
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
	x->gshift = s->refining ? SIM_UNIT_SHIFT : s->page_shift;
	x->gupp = (uint64_t)1 << (x->gshift - SIM_UNIT_SHIFT);
	x->ngran = s->info.length >> x->gshift;
	x->gwords = (x->ngran + SIM_BITS - 1) / SIM_BITS;
	m->refine = s->refining;
	m->granule = (uint64_t)1 << x->gshift;
	if (s->refining) {
		x->staged = calloc(x->gwords, sizeof(unsigned long));
		if (!x->staged) {
			ret = -ENOMEM;
			goto err;
		}
		x->staging = mmap(NULL, 2 * s->info.length, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (x->staging == MAP_FAILED) {
			x->staging = NULL;
			ret = -ENOMEM;
			goto err;
		}
		/* populated as harvests fill it: in 2 MiB faults, not 4 KiB ones
		 * (40,000 faults in a stop-and-copy were most of its downtime) */
		madvise(x->staging, 2 * s->info.length, MADV_HUGEPAGE);
		x->hdata = x->staging + s->info.length;
	}
	x->bm = calloc(x->gwords, sizeof(unsigned long));
	x->resent = calloc(s->words, sizeof(unsigned long));
	x->tmp = calloc(x->gwords, sizeof(unsigned long));
	x->seen = calloc(s->words, sizeof(unsigned long));
	x->vbuf = malloc(BATCH_UNITS * SIM_UNIT);
	x->uwords = (s->nunits + SIM_BITS - 1) / SIM_BITS;
	x->zero = calloc(x->uwords, sizeof(unsigned long));
	x->dsent = calloc(x->uwords, sizeof(unsigned long));
	x->ztmp = calloc(ZERO_SPAN_WORDS, sizeof(unsigned long));
	m->zero_markers = s->cfg.zero_markers;
	if (!x->bm || !x->resent || !x->tmp || !x->seen || !x->vbuf || !x->zero || !x->dsent ||
	    !x->ztmp) {
		ret = -ENOMEM;
		goto err;
	}
	/* The destination host's memory, populated as pages arrive. */
	ret = dest_open(&x->dst, s->info.length);
	if (ret)
		goto err;
	m->destination = x->dst.pid ? "process" : "in-process buffer";
	m->end_reason = "running";
	ret = -pthread_create(&m->th, NULL, mig_main, x);
	if (ret)
		goto err;
	m->priv = x;
	return 0;
err:
	mctx_free(x);
	return ret;
}

void sim_migration_join(struct sim *s, struct migration *m)
{
	struct mctx *x = m->priv;

	if (!x)
		return;
	(void)s;
	pthread_join(m->th, NULL);
	mctx_free(x);
	m->priv = NULL;
}
