/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking with synchronous userfaultfd write-protect: the first write
 * to a clean page blocks the vCPU and wakes a handler thread, which may run
 * the VMM's callback (copy-on-write snapshot, post-copy) before letting the
 * write proceed. For kernels without WP-async (6.1 LTS) and for users that
 * must act before a write.
 *
 * Ordering (the no-lost-write argument). Handler: set the pending bit, then
 * un-protect the page, then test the bit again and set it once more if a
 * harvest took it meanwhile, then wake the writer. Harvester: wait for
 * handlers already in flight, exchange pending words, then write-protect the
 * pages it took. Every interleaving ends with "writable ⇒ bit set"; a write
 * enabled by a handler is reported by the first harvest that starts after
 * the handler exits, and harvests wait for handlers that began before them,
 * so a write that lands before a harvest starts is in that harvest.
 * (stress_atomicity checks exactly this.)
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "engine/engine_pvt.h"

static int sync_supported(const struct pgt_region *r, const struct pgt_probe *p)
{
	uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP;

	if (r->shared || r->hugetlb)
		need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (p->uffd_error || (p->uffd_features & need) != need)
		return -EOPNOTSUPP;
	return 0;
}

static int sync_start(struct pgt_region *r)
{
	/*
	 * Without WP_UNPOPULATED (before 6.4) an anonymous hole is not
	 * protected and its first write would go unseen. Map the zero page
	 * read-only everywhere first (no memory cost) so every pte can carry
	 * the uffd-wp bit. shmem/hugetlbfs use pte markers for holes.
	 */
	if (!(r->uffd_features & UFFD_FEATURE_WP_UNPOPULATED) && !r->shared &&
	    !(r->track & PGT_TRACK_TOUCH) && /* MISSING faults fill pages protected */
	    madvise(r->addr, r->length, MADV_POPULATE_READ))
		return -errno;
	return pgt__uffd_wp(r, 0, r->npages, true, false);
}

static int sync_fault(struct pgt_region *r, uint64_t page)
{
	struct uffdio_range wake = {
		.start = (uintptr_t)pgt__page_addr(r, page),
		.len = r->page_size,
	};
	unsigned fl;
	int ret;

	atomic_fetch_add_explicit(&r->wp_faults, 1, memory_order_relaxed);
	if (r->wp_cb)
		r->wp_cb(r->wp_arg, r->gpa + (page << r->page_shift));
	fl = pgt__flight_enter(&r->flight);
	pgt__bitmap_set(&r->pending, page);
	ret = pgt__uffd_wp(r, page, 1, false, false);
	if (!pgt__bitmap_test(&r->pending, page))
		pgt__bitmap_set(&r->pending, page);
	pgt__flight_exit(&r->flight, fl);
	if (ioctl(r->uffd, UFFDIO_WAKE, &wake) && !ret)
		ret = -errno;
	if (ret)
		pgt__log(r->eng, PGT_LOG_ERR, "region %s: resolving write fault: %s", r->name,
			 strerror(-ret));
	return ret;
}

static int sync_protect(struct pgt_region *r, uint64_t first, uint64_t n)
{
	return pgt__uffd_wp(r, first, n, true, false);
}

static int64_t sync_collect(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	return pgt__pending_collect(r, sync_protect, fn, arg);
}

static void sync_stop(struct pgt_region *r)
{
	pgt__uffd_wp(r, 0, r->npages, false, true);
}

const struct pgt_dirty_ops pgt__dirty_uffd_sync = {
	.method = PGT_DIRTY_UFFD_SYNC,
	.uffd_features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED |
			 UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	.uffd_mode = UFFDIO_REGISTER_MODE_WP,
	.uses_pending = true,
	.supported = sync_supported,
	.start = sync_start,
	.collect = sync_collect,
	.stop = sync_stop,
	.on_wp_fault = sync_fault,
};
