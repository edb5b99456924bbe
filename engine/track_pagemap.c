/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking with userfaultfd write-protect in async mode and the
 * PAGEMAP_SCAN ioctl (Linux 6.7+).
 *
 * Writes to a write-protected page are resolved by the kernel itself (no fault
 * reaches user space, ~1 µs); the pte loses its uffd-wp bit and reads back as
 * PAGE_IS_WRITTEN. One PAGEMAP_SCAN with PM_SCAN_WP_MATCHING returns the
 * written ranges and write-protects them again in the same page-table walk,
 * under the page-table lock, so a concurrent write lands either before the
 * walk reaches its pte (reported now) or after (reported next time): there is
 * no window in which a write is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine/engine_pvt.h"

#define VEC_LEN 4096

struct async_state {
	int pagemap_fd;
	struct page_region vec[VEC_LEN];
};

static int async_supported(const struct pgt_region *r, const struct pgt_probe *p)
{
	uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;

	if (!p->pagemap_scan)
		return -EOPNOTSUPP;
	if (r->shared || r->hugetlb)
		need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if ((p->uffd_features & need) != need)
		return -EOPNOTSUPP;
	return 0;
}

/*
 * One get-and-clear pass over [start, end). The kernel stops early when the
 * vector fills; walk_end says where to resume.
 */
static int64_t scan(struct pgt_region *r, struct async_state *s, pgt_bitmap_run_fn fn, void *arg)
{
	uint64_t base = (uintptr_t)r->addr, end = base + r->length, cur = base;
	int64_t total = 0;

	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = cur,
			.end = end,
			.vec = (uintptr_t)s->vec,
			.vec_len = VEC_LEN,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(s->pagemap_fd, PAGEMAP_SCAN, &a);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* CHECK_WPASYNC: a VMA here is not ours (mapped over
			 * with MAP_FIXED): pgt__region_mapped()'s answer */
			return errno == EPERM ? -ENXIO : -errno;
		}
		for (long i = 0; i < n; i++) {
			uint64_t first = (s->vec[i].start - base) >> r->page_shift;
			uint64_t cnt = (s->vec[i].end - s->vec[i].start) >> r->page_shift;

			total += (int64_t)cnt;
			if (fn)
				fn(arg, first, cnt);
		}
		/* A scan that neither filled the vector nor moved would spin. */
		if (a.walk_end <= cur)
			return -EIO;
		cur = a.walk_end;
	}
	return total;
}

static int async_start(struct pgt_region *r)
{
	struct async_state *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (s->pagemap_fd < 0) {
		ret = -errno;
		free(s);
		return ret;
	}
	r->dpriv = s;
	/*
	 * Protect everything, populated or not (WP_UNPOPULATED makes holes
	 * write-protected too), so the first write anywhere is recorded.
	 */
	ret = pgt__uffd_wp(r, 0, r->npages, true, false);
	if (!ret) {
		/* Pages written before start are not reported. */
		int64_t n = scan(r, s, NULL, NULL);

		ret = n < 0 ? (int)n : 0;
	}
	return ret;
}

static int64_t async_collect(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	return scan(r, r->dpriv, fn, arg);
}

static void async_stop(struct pgt_region *r)
{
	struct async_state *s = r->dpriv;

	if (!s)
		return;
	/* Leave the memory writable without faults once we stop listening. */
	pgt__uffd_wp(r, 0, r->npages, false, true);
	close(s->pagemap_fd);
	free(s);
	r->dpriv = NULL;
}

const struct pgt_dirty_ops pgt__dirty_uffd_async = {
	.method = PGT_DIRTY_UFFD_ASYNC,
	.uffd_features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			 UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	.uffd_mode = UFFDIO_REGISTER_MODE_WP,
	.supported = async_supported,
	.start = async_start,
	.collect = async_collect,
	.stop = async_stop,
};
