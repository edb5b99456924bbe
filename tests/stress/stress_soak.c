/* SPDX-License-Identifier: MIT */
/*
 * Soak: a bounded, seeded mixed run. Writer threads write guest memory
 * (regions of every backing, each with a dirty tracker this kernel has, at
 * random) while the main thread, step by step, harvests one of several views per
 * region into that view's consumer copy, releases and reclaims 4 KiB units
 * (the guest's balloon), pins and unpins, adds and removes regions and
 * changes the memory target. After every step it checks the page-state
 * invariants of DESIGN §2 on every region:
 *  - a released page is not resident (mincore), and reads zero at the end;
 *  - a pinned unit is never released;
 *  - counters equal their bitmaps (release state self-check, released and
 *    touched counts against the shadow model, target status against it);
 * and the content oracle: each view's copy, updated only from what its
 * harvests report, equals the source when a region is removed and at the
 * end (no lost dirty page, no stale page).
 *
 * PGT_SOAK_SECONDS bounds the run (default 20); PGT_TEST_SEED replays one.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <pgtrack.h>
#include "engine/engine_pvt.h"
#include "engine/release_pvt.h"
#include "lib/bits.h"

#define MiB (1ULL << 20)
#define UNIT PGT_RELEASE_UNIT
#define SLOTS 3
#define VIEWS 2
#define WRITERS 2
#define SLOT_GPA(i) ((1ULL << 32) + (uint64_t)(i) * 64 * MiB)
#define MAX_PINS 8

struct slot {
	pthread_mutex_t lock;     /* writers vs release/reclaim of this slot */
	bool main_holds;          /* the main thread holds @lock (main only) */
	_Atomic bool live;
	pgt_region *r;
	struct pgt_region_info info;
	pgt_dirty_view *v[VIEWS];
	uint8_t *dst[VIEWS];      /* consumer copies */
	uint8_t *released;        /* shadow: one byte per unit */
	uint8_t *pinned;
	uint64_t nunits, nreleased, npinned;
	unsigned long *bm;
	size_t words;
};

struct soak {
	pgt_engine *eng;
	pgt_target *tgt;
	pthread_rwlock_t slots_lock; /* writers read, add/remove write */
	struct slot s[SLOTS];
	_Atomic bool stop;
	_Atomic int64_t balloon;     /* units the guest was asked to give back */
	uint64_t rng;
	uint64_t steps, harvests, releases, reclaims, adds, removes, targets;
	long free_huge;
	int quiesce_depth;           /* main thread only: nested pauses */
};

static struct pgt_probe probe = { .size = sizeof(probe) };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct soak *k, uint64_t n)
{
	return n ? pgt_test_rand(&k->rng) % n : 0;
}

/* ---- writers ---- */

struct writer {
	struct soak *k;
	uint64_t rng;
	pthread_t tid;
};

static void write_one(struct slot *s, uint64_t *rng)
{
	uint64_t u, off;

	pthread_mutex_lock(&s->lock);
	u = pgt_test_rand(rng) % s->nunits;
	/* the guest does not write what it gave back (balloon semantics) */
	if (!s->released[u]) {
		off = u * UNIT + (pgt_test_rand(rng) % (UNIT / 8)) * 8;
		/* guest memory, read by a harvest's copy at the same time:
		 * word-sized relaxed atomics as a vCPU's stores are */
		__atomic_store_n((uint64_t *)((uint8_t *)s->info.addr + off),
				 pgt_test_rand(rng) | 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&s->lock);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct soak *k = w->k;

	while (!atomic_load(&k->stop)) {
		struct slot *s = &k->s[pgt_test_rand(&w->rng) % SLOTS];

		pthread_rwlock_rdlock(&k->slots_lock);
		if (atomic_load(&s->live))
			for (int i = 0; i < 16; i++)
				write_one(s, &w->rng);
		pthread_rwlock_unlock(&k->slots_lock);
	}
	return NULL;
}

/* ---- consumer copies ---- */

static bool bit(const unsigned long *bm, uint64_t p)
{
	return bm[p / PGT_BITS_PER_LONG] >> (p % PGT_BITS_PER_LONG) & 1;
}

/* Copy one unit of guest memory that writers may be storing into. */
static void copy_unit(uint8_t *dst, const uint8_t *src)
{
	for (size_t i = 0; i < UNIT; i += 8)
		*(uint64_t *)(dst + i) = __atomic_load_n((const uint64_t *)(src + i),
							 __ATOMIC_RELAXED);
}

/* Harvest view @vi and copy what it reports. Released units are zero in
 * the source; they are not read (that would make them resident again). */
static void harvest_view(struct slot *s, int vi)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = s->bm, .bitmap_words = s->words };
	uint64_t ps = s->info.page_size, upp = ps / UNIT;
	int64_t n = pgt_dirty_harvest(s->v[vi], &h);
	const uint8_t *src = s->info.addr;

	if (n < 0)
		fail_msg("harvest of %s view %d: %lld", s->info.name, vi, (long long)n);
	for (uint64_t p = 0; p < s->info.npages; p++) {
		if (!bit(s->bm, p))
			continue;
		for (uint64_t u = p * upp; u < (p + 1) * upp; u++) {
			if (s->released[u])
				memset(s->dst[vi] + u * UNIT, 0, UNIT);
			else
				copy_unit(s->dst[vi] + u * UNIT, src + u * UNIT);
		}
	}
}

/* The copy equals the source (writers stopped or locked out). */
static void oracle_check(struct slot *s, int vi)
{
	const uint8_t *src = s->info.addr;
	static const uint8_t zero[UNIT];

	for (uint64_t u = 0; u < s->nunits; u++) {
		const uint8_t *want = s->released[u] ? zero : src + u * UNIT;

		if (memcmp(s->dst[vi] + u * UNIT, want, UNIT))
			fail_msg("%s view %d: consumer copy differs at unit %llu (page %llu)%s",
				 s->info.name, vi, (unsigned long long)u,
				 (unsigned long long)(u * UNIT / s->info.page_size),
				 s->released[u] ? " (released)" : "");
	}
}

/* The main thread's hold of a slot lock: quiesce() must not take it again
 * (a soft-dirty harvest or a release under it calls the callback). */
static void main_lock(struct slot *s)
{
	pthread_mutex_lock(&s->lock);
	s->main_holds = true;
}

static void main_unlock(struct slot *s)
{
	s->main_holds = false;
	pthread_mutex_unlock(&s->lock);
}

/* ---- invariants (DESIGN §2) ---- */

/* PFN of the page mapped at @addr (root only; 0 when not present or hidden). */
static uint64_t pfn_of(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0, page = (uint64_t)(uintptr_t)addr / (uint64_t)sysconf(_SC_PAGESIZE);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (off_t)(page * sizeof(e))) != sizeof(e))
		e = 0;
	close(fd);
	return e >> 63 ? e & ((1ULL << 55) - 1) : 0;
}

/*
 * Whether @addr maps the shared zero page. Before 6.4, uffd-WP of an empty
 * anonymous page does nothing, so the engine maps the zero page there to
 * keep write protection (and so dirty tracking) on a released page: present
 * for mincore, but no memory. 0 PFNs (not root) never match.
 */
static bool is_zero_page(const void *addr)
{
	static uint64_t zero_pfn = ~0ULL;

	if (zero_pfn == ~0ULL) {
		volatile const uint8_t *z = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ,
						 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		zero_pfn = 0;
		if ((void *)z != MAP_FAILED) {
			(void)z[0];
			zero_pfn = pfn_of((const void *)z);
			munmap((void *)z, (size_t)sysconf(_SC_PAGESIZE));
		}
	}
	return zero_pfn && pfn_of(addr) == zero_pfn;
}

static void check_slot(struct soak *k, struct slot *s)
{
	uint64_t ps = s->info.page_size, upp = ps / UNIT;
	size_t vlen = (size_t)(s->info.length / (uint64_t)sysconf(_SC_PAGESIZE));
	unsigned char *vec = malloc(vlen);
	const char *why = NULL;

	assert_non_null(vec);
	if (!pgt__rel_validate(s->r, &why))
		fail_msg("%s: release state: %s", s->info.name, why);
	if (pgt_released_count(s->r) != (int64_t)s->nreleased)
		fail_msg("%s: released count %lld, model %llu", s->info.name,
			 (long long)pgt_released_count(s->r), (unsigned long long)s->nreleased);
	if (pgt_pinned_count(s->r) != (int64_t)s->npinned)
		fail_msg("%s: pinned count %lld, model %llu", s->info.name,
			 (long long)pgt_pinned_count(s->r), (unsigned long long)s->npinned);
	assert_int_equal(mincore(s->info.addr, s->info.length, vec), 0);
	for (uint64_t p = 0; p < s->info.npages; p++) {
		uint64_t rel = 0;

		for (uint64_t u = p * upp; u < (p + 1) * upp; u++) {
			rel += s->released[u];
			if (s->pinned[u] && s->released[u])
				fail_msg("%s: pinned unit %llu released", s->info.name,
					 (unsigned long long)u);
			if (s->released[u] != (pgt_released_test(k->eng, s->info.gpa + u * UNIT) == 1))
				fail_msg("%s: unit %llu released state differs from the model",
					 s->info.name, (unsigned long long)u);
		}
		/* whole pages released are freed: not resident */
		if (rel == upp && vec[p * ps / (uint64_t)sysconf(_SC_PAGESIZE)] & 1 &&
		    !is_zero_page((const uint8_t *)s->info.addr + p * ps))
			fail_msg("%s: released page %llu is resident", s->info.name,
				 (unsigned long long)p);
	}
	free(vec);
	if (s->info.track & PGT_TRACK_TOUCH) {
		int64_t c = pgt_touched_bitmap(s->r, s->bm, s->words);
		uint64_t bits = 0;

		for (size_t i = 0; i < s->words; i++)
			bits += (uint64_t)__builtin_popcountl(s->bm[i]);
		if (c < 0 || (uint64_t)c != bits || pgt_touched_count(s->r) != c)
			fail_msg("%s: touched count %lld, bitmap %llu", s->info.name,
				 (long long)pgt_touched_count(s->r), (unsigned long long)bits);
	}
}

static void check_all(struct soak *k)
{
	uint64_t configured = 0, released = 0;

	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &k->s[i];

		if (!atomic_load(&s->live))
			continue;
		/* writers of the slot are out (they write under the lock, and
		 * a first touch has been counted once the access completed) */
		main_lock(s);
		check_slot(k, s);
		main_unlock(s);
		configured += s->info.length;
		released += s->nreleased * UNIT;
	}
	if (k->tgt) {
		struct pgt_target_status st = { .size = sizeof(st) };

		assert_int_equal(pgt_target_status(k->tgt, &st), 0);
		if (st.guest != configured - released)
			fail_msg("target status: guest %llu bytes, model %llu",
				 (unsigned long long)st.guest,
				 (unsigned long long)(configured - released));
	}
}

/* ---- steps ---- */

/* Release @n units from @u (the guest gives them back). */
static void do_release(struct soak *k, struct slot *s, uint64_t u, uint64_t n)
{
	int64_t ret;

	main_lock(s);
	ret = pgt_release(k->eng, s->info.gpa + u * UNIT, n * UNIT,
			  PGT_RELEASE_REPEAT_OK | PGT_RELEASE_TRUSTED, NULL);
	if (ret < 0)
		fail_msg("%s: release of units %llu+%llu: %lld", s->info.name,
			 (unsigned long long)u, (unsigned long long)n, (long long)ret);
	for (uint64_t i = u; i < u + n; i++)
		if (!s->pinned[i] && !s->released[i]) {
			s->released[i] = 1;
			s->nreleased++;
		}
	main_unlock(s);
	k->releases++;
}

static void do_reclaim(struct soak *k, struct slot *s, uint64_t u, uint64_t n)
{
	int64_t ret;

	main_lock(s);
	ret = pgt_reclaim(k->eng, s->info.gpa + u * UNIT, n * UNIT);
	if (ret < 0)
		fail_msg("%s: reclaim: %lld", s->info.name, (long long)ret);
	for (uint64_t i = u; i < u + n; i++)
		if (s->released[i]) {
			s->released[i] = 0;
			s->nreleased--;
		}
	main_unlock(s);
	k->reclaims++;
}

static void do_pin(struct soak *k, struct slot *s, uint64_t u)
{
	bool pin = !s->pinned[u];

	if (pin && (s->released[u] || s->npinned >= MAX_PINS))
		return;
	if ((pin ? pgt_pin : pgt_unpin)(k->eng, s->info.gpa + u * UNIT, UNIT))
		fail_msg("%s: %s unit %llu failed", s->info.name, pin ? "pin" : "unpin",
			 (unsigned long long)u);
	s->pinned[u] = pin;
	s->npinned += pin ? 1 : (uint64_t)-1;
}

static int balloon(void *arg, int64_t pages)
{
	struct soak *k = arg;

	atomic_fetch_add(&k->balloon, pages);
	return 0;
}

/* A new target; the balloon requests are served by later release steps. */
static void do_target(struct soak *k)
{
	struct pgt_target_status st = { .size = sizeof(st) };
	int ret;

	assert_int_equal(pgt_target_status(k->tgt, &st), 0);
	/* mostly inflate a little, sometimes deflate */
	ret = pgt_target_set(k->tgt, rnd(k, 3) && st.guest > 64 * UNIT ?
				     st.guest - rnd(k, 64) * UNIT : st.guest + rnd(k, 64) * UNIT);
	if (ret && ret != -ENOSPC && ret != -EINVAL)
		fail_msg("target set: %d", ret);
	ret = pgt_target_wait(k->tgt, 0);
	if (ret && ret != -ETIMEDOUT)
		fail_msg("target wait: %d", ret);
	k->targets++;
}

/* ---- regions ---- */

static const int backings[] = { PGT_BACKING_ANON, PGT_BACKING_MEMFD, PGT_BACKING_HUGETLB };

/*
 * soft-dirty: a harvest reads pagemap and then clears process-wide; the
 * writers are paused in between by taking every slot's lock (they write
 * under it; the main thread, which harvests, holds none then). clear_refs
 * is process-wide, so a harvest pauses the writers of every soft-dirty
 * region: with two of them the callback is called twice before any resume
 * (it hung in the x86 6.1 guests taking its own locks again). Only the
 * outermost pause and resume lock and unlock.
 */
static int quiesce(void *arg, bool pause)
{
	struct soak *k = arg;

	if (pause ? k->quiesce_depth++ > 0 : --k->quiesce_depth > 0)
		return 0;
	/* slots the main thread holds are paused already; their hold does
	 * not change between pause and resume (both run inside one call of
	 * pgtrack made under it) */
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &k->s[pause ? i : SLOTS - 1 - i];

		if (s->main_holds)
			continue;
		if (pause)
			pthread_mutex_lock(&s->lock);
		else
			pthread_mutex_unlock(&s->lock);
	}
	return 0;
}

/* A dirty tracker this kernel has for @backing, at random. */
static int pick_method(struct soak *k, int backing)
{
	int m[4], n = 0;

	m[n++] = PGT_DIRTY_MPROTECT;
	if (probe.pagemap_scan)
		m[n++] = PGT_DIRTY_UFFD_ASYNC;
	if (!probe.uffd_error && (probe.uffd_features & (1u << 0)) &&
	    (backing == PGT_BACKING_ANON || (probe.uffd_features & (1u << 12))))
		m[n++] = PGT_DIRTY_UFFD_SYNC;
	if (probe.soft_dirty && backing != PGT_BACKING_HUGETLB)
		m[n++] = PGT_DIRTY_SOFT_DIRTY;
	return m[rnd(k, (uint64_t)n)];
}

static void slot_add(struct soak *k, int i)
{
	struct slot *s = &k->s[i];
	int backing = backings[rnd(k, 3)];
	struct pgt_region_config rc = {
		.size = sizeof(rc), .length = 8 * MiB, .gpa = SLOT_GPA(i),
		.track = PGT_TRACK_DIRTY, .numa_node = -1,
	};
	char name[48];

	if (backing == PGT_BACKING_HUGETLB && k->free_huge < 16)
		backing = PGT_BACKING_ANON;
	/* first touch too on some anonymous regions: re-touches fault */
	if (backing == PGT_BACKING_ANON && probe.touch_tracking && rnd(k, 2))
		rc.track |= PGT_TRACK_TOUCH;
	rc.backing = (uint32_t)backing;
	rc.dirty_method = pick_method(k, backing);
	rc.quiesce = quiesce;
	rc.quiesce_arg = k;
	snprintf(name, sizeof(name), "soak%d-%s-%s", i, pgt_backing_name(backing),
		 pgt_dirty_method_name(rc.dirty_method));
	rc.name = name;
	if (pgt_region_create(k->eng, &rc, &s->r))
		fail_msg("create %s failed", name);
	s->info.size = sizeof(s->info);
	assert_int_equal(pgt_region_info(s->r, &s->info), 0);
	s->nunits = s->info.length / UNIT;
	s->released = calloc(s->nunits, 1);
	s->pinned = calloc(s->nunits, 1);
	s->words = PGT_KVM_WORDS(s->info.npages);
	s->bm = calloc(s->words, sizeof(*s->bm));
	assert_true(s->released && s->pinned && s->bm);
	s->nreleased = s->npinned = 0;
	for (int v = 0; v < VIEWS; v++) {
		assert_int_equal(pgt_dirty_view_open(s->r, &s->v[v]), 0);
		/* a new region is all zero: the consumer starts from that */
		s->dst[v] = calloc(1, s->info.length);
		assert_non_null(s->dst[v]);
	}
	pthread_rwlock_wrlock(&k->slots_lock);
	atomic_store(&s->live, true);
	pthread_rwlock_unlock(&k->slots_lock);
	k->adds++;
}

/* Final round for every view (writers of this slot locked out), compare,
 * and destroy. */
static void slot_remove(struct soak *k, int i)
{
	struct slot *s = &k->s[i];

	main_lock(s);
	for (int v = 0; v < VIEWS; v++) {
		harvest_view(s, v);
		oracle_check(s, v);
	}
	main_unlock(s);
	pthread_rwlock_wrlock(&k->slots_lock);
	atomic_store(&s->live, false);
	pthread_rwlock_unlock(&k->slots_lock);
	for (int v = 0; v < VIEWS; v++) {
		pgt_dirty_view_close(s->v[v]);
		free(s->dst[v]);
	}
	assert_int_equal(pgt_region_destroy(s->r), 0);
	free(s->released);
	free(s->pinned);
	free(s->bm);
	k->removes++;
}

/* Serve the balloon: give back or take back a few units somewhere. */
static void do_balloon(struct soak *k, struct slot *s)
{
	int64_t want = atomic_load(&k->balloon);
	uint64_t n = 1 + rnd(k, 8), u = rnd(k, s->nunits - n);

	bool give = want > 0 ? rnd(k, 4) != 0 : want < 0 ? rnd(k, 4) == 0 : rnd(k, 2);

	if (give) {
		do_release(k, s, u, n);
		atomic_fetch_sub(&k->balloon, want > 0 ? (int64_t)n : 0);
	} else {
		do_reclaim(k, s, u, n);
		atomic_fetch_add(&k->balloon, want < 0 ? (int64_t)n : 0);
	}
}

static void step(struct soak *k)
{
	int i = (int)rnd(k, SLOTS);
	struct slot *s = &k->s[i];
	uint64_t op = rnd(k, 100);

	if (!atomic_load(&s->live)) {
		slot_add(k, i);
		return;
	}
	if (op < 50) {
		harvest_view(s, (int)rnd(k, VIEWS));
		k->harvests++;
	} else if (op < 80) {
		do_balloon(k, s);
	} else if (op < 88) {
		do_pin(k, s, rnd(k, s->nunits));
	} else if (op < 96) {
		do_target(k);
	} else {
		slot_remove(k, i);
	}
}

static void *start_writers(struct soak *k, struct writer *w)
{
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .k = k, .rng = k->rng ^ (0x9E3779B97F4A7C15ULL * (i + 1)) };
		assert_int_equal(pthread_create(&w[i].tid, NULL, writer_main, &w[i]), 0);
	}
	return w;
}

/* Writers stopped: every view's last round, the oracle, released units
 * read zero in the source. */
static void final_check(struct soak *k)
{
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &k->s[i];

		if (!atomic_load(&s->live))
			continue;
		for (uint64_t u = 0; u < s->nunits; u++) {
			const uint64_t *p = (const uint64_t *)((uint8_t *)s->info.addr + u * UNIT);

			for (size_t j = 0; s->released[u] && j < UNIT / 8; j++)
				if (p[j])
					fail_msg("%s: released unit %llu does not read zero",
						 s->info.name, (unsigned long long)u);
		}
		slot_remove(k, i);
	}
}

static void soak(void **state)
{
	struct pgt_target_config tc = {
		.size = sizeof(tc), .balloon = balloon,
		.limits = { .size = sizeof(tc.limits), .target = 1ULL << 40,
			    .dynamic_max = 1ULL << 40, .static_max = 1ULL << 40 },
	};
	const char *env = getenv("PGT_SOAK_SECONDS");
	double secs = env ? atof(env) : 20;
	pthread_rwlockattr_t ra;
	struct writer w[WRITERS];
	struct soak *k = calloc(1, sizeof(*k));
	uint64_t end;

	(void)state;
	assert_non_null(k);
	if (!probe.touch_tracking && !probe.pagemap_scan)
		pgt_test_note("no userfaultfd here: the soak runs on mprotect tracking only");
	k->rng = pgt_test_seed(); /* printed: PGT_TEST_SEED=... replays it */
	k->free_huge = pgt_test_free_hugepages();
	pthread_rwlockattr_init(&ra);
	/* writers re-take the read side all the time: let add/remove in */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&k->slots_lock, &ra);
	for (int i = 0; i < SLOTS; i++)
		pthread_mutex_init(&k->s[i].lock, NULL);
	assert_int_equal(pgt_engine_open(NULL, &k->eng), 0);
	tc.balloon_arg = k;
	assert_int_equal(pgt_target_open(k->eng, &tc, &k->tgt), 0);
	start_writers(k, w);
	end = now_ns() + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		step(k);
		check_all(k);
		k->steps++;
	}
	atomic_store(&k->stop, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i].tid, NULL);
	final_check(k);
	pgt_target_close(k->tgt);
	pgt_engine_close(k->eng);
	pgt_test_note("%.1f s: %llu steps, %llu harvests, %llu releases, %llu reclaims, "
		      "%llu regions added, %llu removed, %llu target changes", secs,
		      (unsigned long long)k->steps, (unsigned long long)k->harvests,
		      (unsigned long long)k->releases, (unsigned long long)k->reclaims,
		      (unsigned long long)k->adds, (unsigned long long)k->removes,
		      (unsigned long long)k->targets);
	assert_true(k->harvests > 0 && k->releases > 0 && k->removes > 0);
	free(k);
}

static int setup(void **state)
{
	(void)state;
	return pgt_probe(&probe);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(soak),
	};

	return cmocka_run_group_tests_name("soak", tests, setup, NULL);
}
