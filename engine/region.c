/* SPDX-License-Identifier: MIT */
/*
 * Regions: guest memory pgtrack allocates (anon, THP, hugetlb memfd, shmem
 * memfd) or that the VMM registers, its userfaultfd context, and lookup.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <linux/mempolicy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"

int pgt__uffd_new(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	/* vm.unprivileged_userfaultfd=0 still allows user-mode-only faults. */
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int sys_err = errno;
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		int err = errno;

		/* no usable device: the syscall's answer (EPERM: refused by
		 * vm.unprivileged_userfaultfd or seccomp) says more */
		if (dev < 0)
			return err == ENOENT || err == EACCES ? -sys_err : -err;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		err = errno;
		close(dev);
		if (fd < 0)
			return -err;
	}
	return fd;
}

int pgt__region_mapped(struct pgt_region *r)
{
	if (atomic_load_explicit(&r->unmapped, memory_order_acquire))
		return -ENXIO;
	/* Holes (munmap, mremap away) without a uffd to tell us: msync
	 * MS_ASYNC only walks the VMAs and fails with ENOMEM on a hole. */
	if (msync(r->addr, r->length, MS_ASYNC) && errno == ENOMEM)
		return -ENXIO;
	return 0;
}

int pgt__uffd_open(struct pgt_region *r, uint64_t features, uint64_t mode)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)r->addr, .len = r->length },
		.mode = mode,
	};
	int fd = pgt__uffd_new();
	int ret;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
		goto err;
	}
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
		goto err;
	}
	r->uffd = fd;
	/* The reply lists everything the kernel has, not what this context got. */
	r->uffd_features = features;
	r->uffd_ioctls = reg.ioctls;
	return 0;
err:
	pgt__log(r->eng, PGT_LOG_WARN, "region %s: userfaultfd features %#llx mode %#llx: %s",
		 r->name, (unsigned long long)features, (unsigned long long)mode,
		 strerror(-ret));
	close(fd);
	return ret;
}

int pgt__uffd_wp(struct pgt_region *r, uint64_t first, uint64_t n, bool wp, bool wake)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)pgt__page_addr(r, first), .len = n << r->page_shift },
		/* The kernel rejects WP|DONTWAKE: protecting never wakes anyway. */
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP
			   : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	};

	unsigned again = 0;

	while (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w)) {
		if (errno == EINTR)
			continue;
		/*
		 * EAGAIN: the mm is changing under a non-cooperative event
		 * (REMOVE, remap) that nobody has read yet. The reader may be
		 * this very handler thread: retrying forever would deadlock it.
		 * A few tries, then the caller's fallback: a fault handler wakes
		 * the writer, which faults again; a harvest keeps the pages
		 * pending and protects them next time.
		 */
		if (errno != EAGAIN || ++again > 3)
			return -errno;
		sched_yield();
	}
	return 0;
}

/* ---------------------------------------------------------------- */

static int check_common(const pgt_engine *e, const struct pgt_region_config *c)
{
	int ret;

	if (!e || !c)
		return -EINVAL;
	if ((ret = PGT_ARG_IN(c, sizeof(*c))))
		return ret;
	/* [gpa, gpa + length) must not wrap past 2^64: lookups and the
	 * overlap check compare ends */
	if (!c->length || c->length > UINT64_MAX - c->gpa)
		return -EINVAL;
	if (c->addr && c->length > UINTPTR_MAX - (uintptr_t)c->addr)
		return -EINVAL;
	if (c->track & ~(uint32_t)(PGT_TRACK_DIRTY | PGT_TRACK_TOUCH | PGT_TRACK_REMOVE))
		return -EINVAL;
	if ((c->track & PGT_TRACK_REMOVE) && !(c->track & (PGT_TRACK_DIRTY | PGT_TRACK_TOUCH)))
		return -EINVAL;
	if (c->dirty_method < 0 || c->dirty_method >= PGT_DIRTY__COUNT)
		return -EINVAL;
	if (c->numa_node < -1 || (c->numa_node >= 0 && c->numa_node >= e->probe.numa_nodes))
		return -EINVAL;
	return 0;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* -EEXIST on guest-physical or host-virtual overlap. Caller holds regions_lock. */
static int check_overlap(const struct pgt_engine *e, const struct pgt_region *r)
{
	for (const struct pgt_region *o = e->regions; o; o = o->next)
		if (overlaps(o->gpa, o->length, r->gpa, r->length) ||
		    overlaps((uintptr_t)o->addr, o->length, (uintptr_t)r->addr, r->length))
			return -EEXIST;
	return 0;
}

static int precheck(struct pgt_engine *e, const struct pgt_region *r)
{
	int ret;

	pthread_rwlock_rdlock(&e->regions_lock);
	ret = check_overlap(e, r);
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
}

/* Insert sorted by gpa; -EEXIST on overlap (checked again: creation races). */
static int link_region(struct pgt_engine *e, struct pgt_region *r)
{
	struct pgt_region **pp;
	int ret;

	pthread_rwlock_wrlock(&e->regions_lock);
	ret = check_overlap(e, r);
	if (ret)
		goto out;
	for (pp = &e->regions; *pp && (*pp)->gpa < r->gpa; pp = &(*pp)->next)
		;
	r->next = *pp;
	*pp = r;
out:
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
}

static void unlink_region(struct pgt_region *r)
{
	struct pgt_engine *e = r->eng;

	pthread_rwlock_wrlock(&e->regions_lock);
	for (struct pgt_region **pp = &e->regions; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);
}

static struct pgt_region *region_alloc(pgt_engine *e, const struct pgt_region_config *c)
{
	struct pgt_region *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->eng = e;
	r->name = strdup(c->name ? c->name : "guest-ram");
	if (!r->name) {
		free(r);
		return NULL;
	}
	r->track = c->track;
	r->gpa = c->gpa;
	r->length = c->length;
	r->numa_node = c->numa_node;
	r->fd = -1;
	r->uffd = -1;
	r->provider = c->provider;
	r->provider_arg = c->provider_arg;
	r->wp_cb = c->wp_cb;
	r->wp_arg = c->wp_arg;
	r->quiesce = c->quiesce;
	r->quiesce_arg = c->quiesce_arg;
	pthread_mutex_init(&r->harvest_lock, NULL);
	return r;
}

static int set_page_size(struct pgt_region *r, uint64_t ps)
{
	if (!ps || (ps & (ps - 1)))
		return -EINVAL;
	r->page_size = ps;
	r->page_shift = (unsigned)__builtin_ctzll(ps);
	if ((r->length & (ps - 1)) || (r->gpa & (ps - 1)) || ((uintptr_t)r->addr & (ps - 1)))
		return -EINVAL;
	r->npages = r->length >> r->page_shift;
	return 0;
}

/* Layout, shards and mbind of the region's memory (numa/layout.c). */
static int place(struct pgt_region *r, const struct pgt_region_config *c)
{
	struct pgt_numa_region_params p = {
		.addr = r->addr, .length = r->length, .gpa = r->gpa,
		.page_size = r->page_size, .name = r->name, .numa_node = r->numa_node,
		.policy = c->numa_policy, .nodemask = c->numa_nodemask,
		.extents = c->numa_extents, .nextents = c->numa_nextents,
	};
	int ret = pgt__numa_region_init(r->eng->numa, &p, &r->numa);

	return ret ? ret : pgt__numa_region_place(r->numa);
}

/*
 * Map @len bytes at an @align-aligned address (THP and hugetlb want 2 MiB
 * PMDs) with a PROT_NONE guard page on each side. The guards keep the
 * region's VMA from ever merging with a neighbour: a merge with a new
 * mapping sets VM_SOFTDIRTY on the whole VMA, and soft-dirty then reports
 * every page of the region dirty.
 */
static void *map_guarded(uint64_t len, uint64_t align, int flags, int fd)
{
	uint64_t g = pgt_hal_page_size();
	uint64_t span = len + 2 * (align > g ? align : g);
	uint8_t *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			    -1, 0);
	uint8_t *a, *p;

	if (res == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)res + g + align - 1) & ~(uintptr_t)(align - 1));
	p = mmap(a, len, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		int err = errno;

		munmap(res, span);
		errno = err;
		return NULL;
	}
	if (a - g > res)
		munmap(res, (size_t)(a - g - res));
	if (a + len + g < res + span)
		munmap(a + len + g, (size_t)(res + span - (a + len + g)));
	return p;
}

static int map_backing(struct pgt_region *r, uint32_t backing)
{
	uint64_t base = pgt_hal_page_size();
	void *p = NULL;
	int ret;

	r->backing = backing;
	switch (backing) {
	case PGT_BACKING_ANON:
		if ((ret = set_page_size(r, base)))
			return ret;
		p = map_guarded(r->length, base, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
		/* 4 KiB pages as documented: with THP "always" a write would
		 * fault a 2 MiB page and make residency and soft-dirty coarse */
		if (p && madvise(p, r->length, MADV_NOHUGEPAGE))
			pgt__log(r->eng, PGT_LOG_WARN, "region %s: MADV_NOHUGEPAGE: %s", r->name,
				 strerror(errno));
		r->thp_off = true;  /* and a release must not advise it otherwise */
		break;
	case PGT_BACKING_THP:
		/* Tracked at 4 KiB: a write splits the PMD under WP (PLATFORM-NOTES). */
		if ((ret = set_page_size(r, base)))
			return ret;
		p = map_guarded(r->length, PGT_SZ_2M, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
		if (p && madvise(p, r->length, MADV_HUGEPAGE))
			pgt__log(r->eng, PGT_LOG_WARN, "region %s: MADV_HUGEPAGE: %s", r->name,
				 strerror(errno));
		r->thp_on = true;
		break;
	case PGT_BACKING_HUGETLB:
	case PGT_BACKING_MEMFD: {
		bool huge = backing == PGT_BACKING_HUGETLB;

		if ((ret = set_page_size(r, huge ? PGT_SZ_2M : base)))
			return ret;
		r->fd = memfd_create(r->name, MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
		if (r->fd < 0)
			return -errno;
		if (ftruncate(r->fd, (off_t)r->length))
			return -errno;
		/* hugetlb reserves the pages here: ENOMEM when the pool is short. */
		p = map_guarded(r->length, huge ? PGT_SZ_2M : base, MAP_SHARED, r->fd);
		r->shared = true;
		r->hugetlb = huge;
		break;
	}
	case PGT_BACKING_DPDK: {
		/* not owned: DPDK's memory goes back to DPDK (region_release) */
		struct pgt_dpdk_zone z;

		if ((ret = pgt__dpdk_zone_alloc(r, &z)))
			return ret;
		r->bpriv = z.mz;
		r->addr = z.addr;
		r->fd = z.fd;
		r->fd_offset = z.fd_offset;
		r->shared = true;
		r->hugetlb = z.page_size > base;
		return set_page_size(r, z.page_size);
	}
	default:
		return -EINVAL;
	}
	if (!p)
		return -errno;
	r->addr = p;
	r->owned = true;
	return 0;
}

/* Tracker setup shared by create and register. */
static int setup_tracking(struct pgt_region *r, int method)
{
	uint64_t features = 0, mode = 0;
	int ret;

	if (r->track & PGT_TRACK_DIRTY) {
		ret = pgt__dirty_resolve(r, method);
		if (ret)
			return ret;
		features |= r->dops->uffd_features;
		mode |= r->dops->uffd_mode;
	}
	if (r->track & PGT_TRACK_TOUCH) {
		if (!r->eng->probe.touch_tracking)
			return -EOPNOTSUPP;
		features |= pgt__touch_features(r);
		mode |= pgt__touch_mode(r);
	}
	if (r->track & PGT_TRACK_REMOVE) {
		/* events need a userfaultfd context: soft-dirty and mprotect
		 * tracking have none, only touch tracking or uffd-WP do */
		if (!mode || !(r->eng->probe.uffd_features & UFFD_FEATURE_EVENT_REMOVE)) {
			pgt__log(r->eng, PGT_LOG_WARN,
				 "region %s: REMOVE events need touch tracking or a uffd dirty tracker",
				 r->name);
			return -EOPNOTSUPP;
		}
		features |= UFFD_FEATURE_EVENT_REMOVE;
	}
	/* A uffd context also hears of the mapping going away (munmap,
	 * MAP_FIXED over it): harvests then fail instead of reporting
	 * nothing for memory they no longer see. Not EVENT_REMAP: with it
	 * the registration follows an mremap and faults arrive from outside
	 * the region; without it the moved range is unregistered and the
	 * hole left behind is seen (pgt__region_mapped). */
	if (mode)
		features |= UFFD_FEATURE_EVENT_UNMAP;
	/* Ask only for what this kernel has; trackers check what they need. */
	features &= r->eng->probe.uffd_features;
	if (mode) {
		ret = pgt__uffd_open(r, features, mode);
		if (ret)
			return ret;
	}
	if (r->track & PGT_TRACK_TOUCH) {
		ret = pgt__touch_init(r);
		if (ret)
			return ret;
	}
	if (r->track & PGT_TRACK_DIRTY) {
		ret = pgt__dirty_init(r);
		if (ret)
			return ret;
	}
	if (r->uffd >= 0)
		return pgt__fault_watch(r);
	return 0;
}

static void region_release(struct pgt_region *r)
{
	if (r->uffd >= 0) {
		struct uffdio_range range = { .start = (uintptr_t)r->addr, .len = r->length };

		pgt__fault_unwatch(r);
		pgt__dirty_fini(r);
		ioctl(r->uffd, UFFDIO_UNREGISTER, &range);
		/* Closing wakes any vCPU still blocked in a fault on this range. */
		close(r->uffd);
		r->uffd = -1;
	} else {
		pgt__dirty_fini(r);
	}
	/* after the handlers are gone: a late REMOVE event would re-create it */
	pgt__release_fini(r);
	if (r->track & PGT_TRACK_TOUCH)
		pgt__touch_fini(r);
	while (r->views) {
		struct pgt_dirty_view *v = r->views;

		r->views = v->next;
		pgt__refine_view_fini(v);
		pgt__shardmap_fini(&v->bm);
		/* a caller's view outlives the region (pgt_engine_close): its
		 * handle stays valid until pgt_dirty_view_close() frees it */
		if (v->internal) {
			free(v);
		} else {
			v->r = NULL;
			v->next = NULL;
		}
	}
	pgt__refine_fini(r);
	pgt__bitmap_fini(&r->touched);
	pgt__bitmap_fini(&r->pending);
	pgt__bitmap_fini(&r->external);
	if (r->owned && r->addr) /* with its guard pages (map_guarded) */
		munmap((uint8_t *)r->addr - pgt_hal_page_size(),
		       r->length + 2 * pgt_hal_page_size());
	if ((r->owned || r->fd_owned) && r->fd >= 0)
		close(r->fd);
	if (r->backing == PGT_BACKING_DPDK)
		pgt__dpdk_zone_free(r);
	pgt__numa_region_fini(r->numa);
	pthread_mutex_destroy(&r->harvest_lock);
	free(r->name);
	free(r);
}

void pgt__region_free(struct pgt_region *r)
{
	unlink_region(r);
	region_release(r);
}

static int finish(pgt_engine *e, struct pgt_region *r, const struct pgt_region_config *c,
		  pgt_region **out)
{
	/* before touching the memory or registering it with userfaultfd */
	int ret = precheck(e, r);

	if (!ret)
		ret = place(r, c);

	if (!ret)
		ret = setup_tracking(r, c->dirty_method);
	if (!ret)
		ret = link_region(e, r);
	if (ret) {
		region_release(r);
		return ret;
	}
	pgt__log(e, PGT_LOG_INFO, "region %s: %s %llu MiB at gpa %#llx, page %llu KiB, dirty %s%s",
		 r->name, pgt_backing_name((int)r->backing),
		 (unsigned long long)(r->length >> 20), (unsigned long long)r->gpa,
		 (unsigned long long)(r->page_size >> 10),
		 r->dops ? pgt_dirty_method_name(r->dops->method) : "off",
		 (r->track & PGT_TRACK_TOUCH) ? ", touch" : "");
	*out = r;
	return 0;
}

/* Argument checks shared by create and register; *out is NULL on failure. */
static int begin(const pgt_engine *e, const struct pgt_region_config *c, pgt_region **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return check_common(e, c);
}

PGT_EXPORT int pgt_region_create(pgt_engine *e, const struct pgt_region_config *c,
				 pgt_region **out)
{
	struct pgt_region *r;
	int ret = begin(e, c, out);

	if (ret)
		return ret;
	if (c->backing == PGT_BACKING_EXTERNAL || c->backing >= PGT_BACKING__COUNT || !c->backing)
		return -EINVAL;
	r = region_alloc(e, c);
	if (!r)
		return -ENOMEM;
	ret = map_backing(r, c->backing);
	if (ret) {
		region_release(r);
		return ret;
	}
	return finish(e, r, c, out);
}

/*
 * Backing page size of a registered mapping and whether it is hugetlb, from
 * the kernel's view of the VMA: a private MAP_HUGETLB mapping has no fd to
 * ask. A page size given by the caller must match it (tracking a hugetlb
 * VMA at 4 KiB would scan partial huge pages).
 */
static int detect_page_size(const struct pgt_region_config *c, uint64_t *ps, bool *hugetlb,
			    struct pgt_vma *vma)
{
	struct pgt_vma v = { 0 };
	struct statfs sfs;
	bool fd_huge = c->fd >= 0 && !fstatfs(c->fd, &sfs) && sfs.f_type == HUGETLBFS_MAGIC;
	uint64_t kps = fd_huge ? (uint64_t)sfs.f_bsize : pgt_hal_page_size();

	*hugetlb = fd_huge;
	if (!pgt__vma_of(c->addr, &v)) {
		*hugetlb = v.hugetlb || fd_huge;
		if (v.kernel_page_size)
			kps = v.kernel_page_size;
	}
	if (c->page_size && c->page_size != kps)
		return -EINVAL;
	*ps = kps;
	*vma = v;
	return 0;
}

/*
 * A caller's MAP_SHARED mapping registered without its fd: the memory is a
 * file's (shmem, hugetlbfs), and the file can hold pages this mapping does
 * not map (another process wrote them through its own mapping). Open the
 * file through /proc/self/map_files, so that a release punches the file,
 * and refinement and the fingerprint tracker read such pages from it
 * instead of taking them for zeros. Opening map_files takes
 * CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE; without it the region stays
 * shared without a file (releases by MADV_REMOVE) and says what it lacks.
 */
static void adopt_file(struct pgt_region *r, const struct pgt_vma *v)
{
	uintptr_t a = (uintptr_t)r->addr;
	char path[64];
	int fd;

	if (a < v->start || a + r->length > v->end) {
		errno = EXDEV;  /* more than one mapping */
		fd = -1;
	} else {
		snprintf(path, sizeof(path), "/proc/self/map_files/%" PRIx64 "-%" PRIx64,
			 v->start, v->end);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EACCES)
			fd = open(path, O_RDONLY | O_CLOEXEC);  /* reads, not punches */
	}
	if (fd < 0) {
		pgt__log(r->eng, PGT_LOG_WARN,
			 "region %s: shared mapping registered without its fd, file not "
			 "opened (%s): pages only the file holds read as zeros; pass the fd",
			 r->name ? r->name : "?", strerror(errno));
		return;
	}
	r->fd = fd;
	r->fd_offset = v->offset + (a - v->start);
	r->fd_owned = true;
}

PGT_EXPORT int pgt_region_register(pgt_engine *e, const struct pgt_region_config *c,
				   pgt_region **out)
{
	struct pgt_region *r;
	struct pgt_vma vma = { 0 };
	uint64_t ps;
	int ret = begin(e, c, out);

	if (ret)
		return ret;
	if (!c->addr || (c->backing && c->backing != PGT_BACKING_EXTERNAL))
		return -EINVAL;
	r = region_alloc(e, c);
	if (!r)
		return -ENOMEM;
	r->backing = PGT_BACKING_EXTERNAL;
	r->addr = c->addr;
	r->fd = c->fd;
	r->fd_offset = c->fd_offset;
	ret = detect_page_size(c, &ps, &r->hugetlb, &vma);
	if (!ret)
		ret = set_page_size(r, ps);
	if (!ret && (c->fd_offset & (r->page_size - 1)))
		ret = -EINVAL;
	r->shared = c->fd >= 0 || vma.shared;
	r->thp_off = vma.thp_off;
	r->thp_on = vma.thp_on;
	if (!ret && c->fd < 0 && vma.shared)
		adopt_file(r, &vma);
	if (ret) {
		region_release(r);
		return ret;
	}
	return finish(e, r, c, out);
}

PGT_EXPORT int pgt_region_destroy(pgt_region *r)
{
	if (!r)
		return -EINVAL;
	pthread_mutex_lock(&r->harvest_lock);
	if (r->views || atomic_load(&r->offload_refs)) {
		pthread_mutex_unlock(&r->harvest_lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&r->harvest_lock);
	pgt__region_free(r);
	return 0;
}

PGT_EXPORT int pgt_region_info(const pgt_region *r, struct pgt_region_info *info)
{
	int ret;

	if (!r || !info)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(info, sizeof(*info))))
		return ret;
	*info = (struct pgt_region_info){
		.size = sizeof(*info),
		.backing = r->backing,
		.addr = r->addr,
		.length = r->length,
		.gpa = r->gpa,
		.page_size = r->page_size,
		.npages = r->npages,
		.fd = r->fd,
		.dirty_method = r->dops ? r->dops->method : PGT_DIRTY_NONE,
		.track = r->track,
		.numa_node = r->numa_node,
		.name = r->name,
	};
	return 0;
}

PGT_EXPORT int pgt_gpa_lookup(pgt_engine *e, uint64_t gpa, pgt_region **rp, void **hva)
{
	int ret = -ENOENT;

	if (!e)
		return -EINVAL;
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r && r->gpa <= gpa; r = r->next) {
		if (gpa - r->gpa < r->length) {
			if (rp)
				*rp = r;
			if (hva)
				*hva = r->addr + (gpa - r->gpa);
			ret = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&e->regions_lock);
	return ret;
}
