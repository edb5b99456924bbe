/* SPDX-License-Identifier: MIT */
/*
 * Engine: lifecycle, logging, and the userfaultfd handler threads shared by
 * every region (first touch, sync write-protect faults).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/export.h"
#include "pgt_config.h"

PGT_EXPORT const char *pgt_version(void)
{
	return PGT_VERSION;
}

static const char *const method_names[PGT_DIRTY__COUNT] = {
	[PGT_DIRTY_AUTO] = "auto",
	[PGT_DIRTY_UFFD_ASYNC] = "uffd-async",
	[PGT_DIRTY_SOFT_DIRTY] = "soft-dirty",
	[PGT_DIRTY_UFFD_SYNC] = "uffd-sync",
	[PGT_DIRTY_MPROTECT] = "mprotect",
	[PGT_DIRTY_NONE] = "none",
	[PGT_DIRTY_FINGERPRINT] = "fingerprint",
};

PGT_EXPORT const char *pgt_dirty_method_name(int method)
{
	if (method < 0 || method >= PGT_DIRTY__COUNT)
		return NULL;
	return method_names[method];
}

PGT_EXPORT int pgt_dirty_method_parse(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int i = 0; i < PGT_DIRTY__COUNT; i++)
		if (!strcmp(name, method_names[i]))
			return i;
	return -EINVAL;
}

static const char *const backing_names[PGT_BACKING__COUNT] = {
	[PGT_BACKING_ANON] = "anon",
	[PGT_BACKING_THP] = "thp",
	[PGT_BACKING_HUGETLB] = "hugetlb",
	[PGT_BACKING_MEMFD] = "memfd",
	[PGT_BACKING_EXTERNAL] = "external",
	[PGT_BACKING_DPDK] = "dpdk",
};

PGT_EXPORT const char *pgt_backing_name(int backing)
{
	if (backing <= 0 || backing >= PGT_BACKING__COUNT)
		return NULL;
	return backing_names[backing];
}

void pgt__log(const struct pgt_engine *e, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!e || !e->log || level > e->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	e->log(e->log_arg, level, buf);
}

/* ---------------------------------------------------------------- */
/* Fault handler threads                                             */
/* ---------------------------------------------------------------- */

static void handle_msg(struct pgt_region *r, const struct uffd_msg *msg)
{
	if (msg->event == UFFD_EVENT_REMOVE) {
		/* madvise() on the region waits for this read: keep it short */
		pgt__release_on_remove(r, msg->arg.remove.start, msg->arg.remove.end);
		return;
	}
	if (msg->event == UFFD_EVENT_UNMAP) {
		/* munmap or MAP_FIXED over the region (the unmapping thread
		 * waits for this read): writes there are not seen any more */
		atomic_store_explicit(&r->unmapped, true, memory_order_release);
		pgt__log(r->eng, PGT_LOG_ERR, "region %s: unmapped while tracked; harvests "
			 "fail with ENXIO until it is destroyed", r->name);
		return;
	}
	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		pgt__log(r->eng, PGT_LOG_DEBUG, "region %s: uffd event %u ignored",
			 r->name, msg->event);
		return;
	}
	if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		uint64_t addr = msg->arg.pagefault.address;
		uint64_t page = (addr - (uint64_t)(uintptr_t)r->addr) >> r->page_shift;

		if (r->dops && r->dops->on_wp_fault && page < r->npages) {
			r->dops->on_wp_fault(r, page);
			return;
		}
		/* No handler: un-protect so the writer is not stuck forever;
		 * if even that fails, wake it: it faults again. */
		if (page < r->npages && pgt__uffd_wp(r, page, 1, false, true)) {
			struct uffdio_range w = { .start = addr & ~(r->page_size - 1),
						  .len = r->page_size };

			(void)ioctl(r->uffd, UFFDIO_WAKE, &w);
		}
		return;
	}
	if (r->track & PGT_TRACK_TOUCH)
		pgt__touch_fault(r, msg);
}

/*
 * Drain one region's uffd. Called with fault_lock held for reading, which
 * keeps the region alive (removal takes it for writing after unwatching).
 */
static void drain(struct pgt_region *r)
{
	struct uffd_msg msgs[16];

	for (;;) {
		/*
		 * In flight from before the read: a madvise() waiting on a REMOVE
		 * event returns once the event is read, so whoever it tells (a
		 * rescan) waits for this batch to be handled (pgt__flight_wait).
		 */
		unsigned fl = pgt__flight_enter(&r->evflight);
		ssize_t n = read(r->uffd, msgs, sizeof(msgs));

		if (n < 0 && errno == EINTR) {
			pgt__flight_exit(&r->evflight, fl);
			continue;
		}
		/* EAGAIN: another handler got them first */
		if (n > 0 && n % sizeof(msgs[0]) == 0)
			for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
				handle_msg(r, &msgs[i]);
		pgt__flight_exit(&r->evflight, fl);
		if (n <= 0 || n % sizeof(msgs[0]))
			return;
	}
}

static void *fault_thread(void *arg)
{
	struct pgt_engine *e = arg;

	for (;;) {
		struct epoll_event ev[8];
		int n = epoll_wait(e->epfd, ev, 8, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			pgt__log(e, PGT_LOG_ERR, "epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (!ev[i].data.ptr) /* stopfd */
				return NULL;
			pthread_rwlock_rdlock(&e->fault_lock);
			struct pgt_region *r = ev[i].data.ptr;

			if (!atomic_load_explicit(&r->dying, memory_order_acquire))
				drain(r);
			pthread_rwlock_unlock(&e->fault_lock);
		}
	}
}

int pgt__fault_watch(struct pgt_region *r)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = r };

	if (epoll_ctl(r->eng->epfd, EPOLL_CTL_ADD, r->uffd, &ev))
		return -errno;
	return 0;
}

void pgt__fault_unwatch(struct pgt_region *r)
{
	struct pgt_engine *e = r->eng;

	atomic_store_explicit(&r->dying, true, memory_order_release);
	epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->uffd, NULL);
	/* Wait out any handler still inside drain(r). */
	pthread_rwlock_wrlock(&e->fault_lock);
	pthread_rwlock_unlock(&e->fault_lock);
}

static void stop_threads(struct pgt_engine *e)
{
	uint64_t one = 1;

	if (e->stopfd >= 0 && write(e->stopfd, &one, sizeof(one)) < 0)
		pgt__log(e, PGT_LOG_ERR, "eventfd write: %s", strerror(errno));
	for (unsigned i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	e->nthreads = 0;
}

/* ---------------------------------------------------------------- */
/* Engine lifecycle                                                  */
/* ---------------------------------------------------------------- */

PGT_EXPORT int pgt_engine_open(const struct pgt_engine_config *cfg, pgt_engine **out)
{
	struct pgt_engine_config def = { .size = sizeof(def) };
	pthread_rwlockattr_t ra;
	struct pgt_engine *e;
	unsigned nthreads;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg)
		cfg = &def;
	if ((ret = pgt__arg_in(cfg, cfg->size, PGT_ENGINE_CONFIG_SIZE_VER0, sizeof(*cfg))))
		return ret;
	if (cfg->flags || (cfg->calibrate & ~(PGT_CALIBRATE_OFF | PGT_CALIBRATE_FRESH)))
		return -EINVAL;
	nthreads = cfg->fault_threads ? cfg->fault_threads : 1;
	if (nthreads > 64)
		return -EINVAL;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->log = cfg->log;
	e->log_arg = cfg->log_arg;
	e->log_level = cfg->log_level ? cfg->log_level : PGT_LOG_WARN;
	e->epfd = e->stopfd = -1;
	pthread_rwlockattr_init(&ra);
	/* Handlers re-take the lock in a loop: let region removal get in. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->fault_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_rwlock_init(&e->regions_lock, NULL);
	pthread_mutex_init(&e->offload_lock, NULL);
	pthread_mutex_init(&e->calib_lock, NULL);
	e->calib_flags = cfg->calibrate;

	e->probe.size = sizeof(e->probe);
	ret = pgt_probe(&e->probe);
	if (ret)
		goto err;
	struct pgt_numa_params np = {
		.topology = cfg->numa_topology, .workers_per_node = cfg->numa_workers,
		.log = e->log, .log_arg = e->log_arg, .log_level = e->log_level,
	};
	ret = pgt__numa_open(&np, &e->numa);
	if (ret)
		goto err;

	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	e->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->epfd < 0 || e->stopfd < 0) {
		ret = -errno;
		goto err;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->stopfd, &ev)) {
		ret = -errno;
		goto err;
	}
	e->threads = calloc(nthreads, sizeof(*e->threads));
	if (!e->threads) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		ret = -pthread_create(&e->threads[i], NULL, fault_thread, e);
		if (ret)
			goto err;
		e->nthreads++;
	}
	pgt__log(e, PGT_LOG_INFO, "engine open: kernel %s, dirty method %s, %u handler thread(s)",
		 e->probe.kernel_release, pgt_dirty_method_name(e->probe.best_dirty_method),
		 nthreads);
	*out = e;
	return 0;
err:
	pgt_engine_close(e);
	return ret;
}

PGT_EXPORT void pgt_engine_close(pgt_engine *e)
{
	if (!e)
		return;
	/* devices write into regions: they go first */
	pgt__offload_close_all(e);
	while (e->regions)
		pgt__region_free(e->regions);
	stop_threads(e);
	pgt__numa_close(e->numa);
	if (e->epfd >= 0)
		close(e->epfd);
	if (e->stopfd >= 0)
		close(e->stopfd);
	free(e->threads);
	pthread_rwlock_destroy(&e->fault_lock);
	pthread_rwlock_destroy(&e->regions_lock);
	pthread_mutex_destroy(&e->offload_lock);
	pthread_mutex_destroy(&e->calib_lock);
	free(e);
}
