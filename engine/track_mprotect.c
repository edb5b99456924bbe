/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking with mprotect and SIGSEGV: the portable baseline (any
 * kernel, any architecture) and the benchmark reference.
 *
 * A signal handler is process-wide, so this file keeps the one piece of
 * global state pgtrack has besides the probe cache: a fixed table of tracked
 * ranges the handler searches lock-free. Removal clears a slot, then waits
 * for handlers that might still be inside it (a per-slot in-flight count).
 *
 * Ordering is as in track_uffd.c: the handler sets the pending bit, makes the
 * page writable, and sets the bit again if a harvest took it meanwhile; the
 * harvester waits for handlers in flight, exchanges pending words, then
 * protects the pages it took.
 *
 * Cost: every protected page is its own VMA once split; beyond roughly
 * vm.max_map_count (65530) dirty runs mprotect fails with ENOMEM, which is
 * reported by the harvest.
 *
 * Limits (also in pgtrack.h): at most SLOTS (64) regions use this tracker at
 * once (start fails with -ENOSPC beyond). Writes the kernel makes on the
 * process's behalf into a protected page (read(2) or recv(2) into guest
 * memory, io_uring, O_DIRECT, vhost) take no signal: they fail with EFAULT.
 * A VMM whose devices write guest memory through syscalls must use another
 * tracker, or write through a user-space copy.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/engine_pvt.h"

#define SLOTS 64

struct slot {
	_Atomic(struct pgt_region *) r;
	_Atomic unsigned inflight;
};

static struct slot slots[SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction old_segv;
static unsigned nusers;

static bool handle(void *addr)
{
	for (unsigned i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];
		struct pgt_region *r;
		bool ours = false;

		if (!atomic_load_explicit(&s->r, memory_order_acquire))
			continue;
		atomic_fetch_add_explicit(&s->inflight, 1, memory_order_acq_rel);
		r = atomic_load_explicit(&s->r, memory_order_acquire);
		if (r && (uint8_t *)addr >= r->addr && (uint8_t *)addr < r->addr + r->length) {
			uint64_t page = pgt__page_of(r, addr);
			unsigned fl = pgt__flight_enter(&r->flight);

			ours = true;
			pgt__bitmap_set(&r->pending, page);
			if (mprotect(pgt__page_addr(r, page), r->page_size, PROT_READ | PROT_WRITE) == 0) {
				if (!pgt__bitmap_test(&r->pending, page))
					pgt__bitmap_set(&r->pending, page);
				atomic_fetch_add_explicit(&r->wp_faults, 1, memory_order_relaxed);
			} else {
				ours = false; /* let the default action report it */
			}
			pgt__flight_exit(&r->flight, fl);
		}
		atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_release);
		if (ours)
			return true;
	}
	return false;
}

static void segv_handler(int sig, siginfo_t *si, void *uctx)
{
	int saved = errno;

	/* Only protection faults (SEGV_ACCERR) can be ours. */
	if (si->si_code == SEGV_ACCERR && handle(si->si_addr)) {
		errno = saved;
		return;
	}
	errno = saved;
	if (old_segv.sa_flags & SA_SIGINFO) {
		old_segv.sa_sigaction(sig, si, uctx);
	} else if (old_segv.sa_handler != SIG_IGN && old_segv.sa_handler != SIG_DFL) {
		old_segv.sa_handler(sig);
	} else {
		/* Default action: restore it and let the fault repeat. */
		signal(SIGSEGV, SIG_DFL);
	}
}

static int mp_supported(const struct pgt_region *r, const struct pgt_probe *p)
{
	(void)r;
	(void)p;
	return 0;
}

static int slot_add(struct pgt_region *r)
{
	int ret = -ENOSPC;

	pthread_mutex_lock(&slots_lock);
	for (unsigned i = 0; i < SLOTS; i++) {
		if (!atomic_load(&slots[i].r)) {
			atomic_store_explicit(&slots[i].r, r, memory_order_release);
			ret = 0;
			break;
		}
	}
	if (!ret && nusers++ == 0) {
		struct sigaction sa = { .sa_sigaction = segv_handler,
					.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER };

		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, &old_segv))
			ret = -errno;
	}
	pthread_mutex_unlock(&slots_lock);
	return ret;
}

static void slot_del(struct pgt_region *r)
{
	pthread_mutex_lock(&slots_lock);
	for (unsigned i = 0; i < SLOTS; i++) {
		if (atomic_load(&slots[i].r) == r) {
			atomic_store_explicit(&slots[i].r, NULL, memory_order_release);
			while (atomic_load_explicit(&slots[i].inflight, memory_order_acquire))
				sched_yield();
			if (--nusers == 0)
				sigaction(SIGSEGV, &old_segv, NULL);
			break;
		}
	}
	pthread_mutex_unlock(&slots_lock);
}

static int mp_start(struct pgt_region *r)
{
	int ret = slot_add(r);

	if (ret)
		return ret;
	if (mprotect(r->addr, r->length, PROT_READ)) {
		ret = -errno;
		slot_del(r);
	}
	return ret;
}

static int mp_protect(struct pgt_region *r, uint64_t first, uint64_t n)
{
	/* ENOMEM past vm.max_map_count: the pages stay writable and pending */
	return mprotect(pgt__page_addr(r, first), n << r->page_shift, PROT_READ) ? -errno : 0;
}

static int64_t mp_collect(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	return pgt__pending_collect(r, mp_protect, fn, arg);
}

static void mp_stop(struct pgt_region *r)
{
	mprotect(r->addr, r->length, PROT_READ | PROT_WRITE);
	slot_del(r);
}

const struct pgt_dirty_ops pgt__dirty_mprotect = {
	.method = PGT_DIRTY_MPROTECT,
	.uses_pending = true,
	.supported = mp_supported,
	.start = mp_start,
	.collect = mp_collect,
	.stop = mp_stop,
};
