/* SPDX-License-Identifier: MIT */
/*
 * Host capability probe. Every userfaultfd, PAGEMAP_SCAN and soft-dirty claim
 * is tested on real memory rather than inferred from the kernel version:
 * distribution kernels differ in config (soft-dirty is off on arm64 and on
 * some x86 builds), seccomp and sysctls forbid things, and qemu-user answers
 * ENOSYS. File parsing lives in probe_parse.c.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hal/compat_uapi.h"
#include "hal/export.h"
#include "hal/hal.h"
#include "hal/probe_pvt.h"
#include "pgtrack/pgtrack.h"

/* ------------------------------------------------------------------ */
/* userfaultfd                                                         */
/* ------------------------------------------------------------------ */

static int uffd_syscall(int flags)
{
#ifdef SYS_userfaultfd
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);

	return fd < 0 ? -errno : (int)fd;
#else
	(void)flags;
	return -ENOSYS;
#endif
}

/* /dev/userfaultfd (6.1+) hands out uffds to whoever may open it. */
static int uffd_dev_new(void)
{
	int dev, fd;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = -errno;
	close(dev);
	return fd;
}

/* A fresh uffd the way the probe found works; -errno if none. */
static int uffd_new(const struct pgt_probe *p)
{
	if (p->uffd_syscall)
		return uffd_syscall(p->uffd_user_only ? UFFD_USER_MODE_ONLY : 0);
	if (p->uffd_dev)
		return uffd_dev_new();
	return p->uffd_error ? p->uffd_error : -ENOSYS;
}

/* UFFDIO_API may be issued once per uffd: every caller passes a fresh fd. */
static int uffd_api(int fd, uint64_t features, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(fd, UFFDIO_API, &api))
		return -errno;
	if (got)
		*got = api.features;
	return 0;
}

static void probe_uffd(struct pgt_probe *p)
{
	int fd, err;

	fd = uffd_syscall(0);
	/* vm.unprivileged_userfaultfd=0 refuses plain uffds to non-root
	 * users, but still allows user-mode-only ones (5.11+). */
	if (fd == -EPERM) {
		fd = uffd_syscall(UFFD_USER_MODE_ONLY);
		if (fd >= 0)
			p->uffd_user_only = true;
		else
			fd = -EPERM; /* keep the first, more telling error */
	}
	err = fd < 0 ? fd : 0;
	if (fd >= 0) {
		p->uffd_syscall = true;
		close(fd);
	}
	fd = uffd_dev_new();
	if (fd >= 0) {
		p->uffd_dev = true;
		close(fd);
	}
	if (!p->uffd_syscall && !p->uffd_dev) {
		p->uffd_error = err;
		return;
	}
	/* Asking for no feature reports every feature this kernel has. */
	fd = uffd_new(p);
	if (fd < 0) {
		p->uffd_error = fd;
		return;
	}
	err = uffd_api(fd, 0, &p->uffd_features);
	close(fd);
	if (err) {
		p->uffd_features = 0;
		p->uffd_error = err;
	}
}

/*
 * Map one page of @type (hugetlb: one huge page). Returns the mapping length
 * or -errno; @addr receives the mapping.
 */
static long map_memtype(int type, uint64_t ps, void **addr)
{
	struct stat st;
	size_t len = ps;
	void *a;
	int fd = -1, flags = MAP_SHARED;

	switch (type) {
	case PGT_MEM_ANON:
		flags = MAP_PRIVATE | MAP_ANONYMOUS;
		break;
	case PGT_MEM_SHMEM:
		fd = memfd_create("pgtrack-probe", MFD_CLOEXEC);
		break;
	case PGT_MEM_HUGETLB:
		fd = memfd_create("pgtrack-probe-huge", MFD_CLOEXEC | MFD_HUGETLB);
		break;
	default:
		return -EINVAL;
	}
	if (type != PGT_MEM_ANON) {
		if (fd < 0)
			return -errno;
		/* hugetlbfs reports its page size (the default pool's) as st_blksize */
		if (fstat(fd, &st)) {
			int e = -errno;

			close(fd);
			return e;
		}
		if (type == PGT_MEM_HUGETLB && st.st_blksize > 0)
			len = (size_t)st.st_blksize;
		if (ftruncate(fd, (off_t)len)) {
			int e = -errno;

			close(fd);
			return e;
		}
	}
	/* hugetlb reserves its page here: ENOMEM when the pool is empty. */
	a = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (a == MAP_FAILED) {
		int e = -errno;

		if (fd >= 0)
			close(fd);
		return e;
	}
	if (fd >= 0)
		close(fd); /* the mapping holds the file */
	*addr = a;
	return (long)len;
}

/*
 * UFFDIO_CONTINUE_MODE_WP on a shmem page: put the page in the page cache,
 * register MINOR|WP, drop the pte, continue it protected. Kernels before 6.6
 * reject the mode bit with EINVAL. 0 or why not.
 */
static int probe_continue_wp(const struct pgt_probe *p)
{
	void *addr = NULL;
	long len;
	int fd, err;

	if ((p->uffd_modes[PGT_MEM_SHMEM] & (PGT_UFFD_MODE_WP | PGT_UFFD_MODE_MINOR)) !=
	    (PGT_UFFD_MODE_WP | PGT_UFFD_MODE_MINOR))
		return -EOPNOTSUPP;
	fd = uffd_new(p);
	if (fd < 0)
		return fd;
	err = uffd_api(fd, 0, NULL);
	len = err ? err : map_memtype(PGT_MEM_SHMEM, p->page_size, &addr);
	if (len < 0) {
		close(fd);
		return (int)len;
	}
	memset(addr, 1, (size_t)len); /* before registering: no fault to serve */
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = (uint64_t)len },
		.mode = PGT_UFFD_MODE_WP | PGT_UFFD_MODE_MINOR,
	};
	struct uffdio_continue c = {
		.range = { .start = (uintptr_t)addr, .len = (uint64_t)len },
		.mode = UFFDIO_CONTINUE_MODE_WP,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		err = -errno;
	else if (madvise(addr, (size_t)len, MADV_DONTNEED))
		err = -errno;
	else if (ioctl(fd, UFFDIO_CONTINUE, &c))
		err = -errno;
	munmap(addr, (size_t)len);
	close(fd);
	return err;
}

static void probe_register(struct pgt_probe *p, int type)
{
	/* Most modes first; the first that registers is what the type offers. */
	static const uint32_t tries[] = {
		PGT_UFFD_MODE_MISSING | PGT_UFFD_MODE_WP | PGT_UFFD_MODE_MINOR,
		PGT_UFFD_MODE_MISSING | PGT_UFFD_MODE_WP,
		PGT_UFFD_MODE_MISSING | PGT_UFFD_MODE_MINOR,
		PGT_UFFD_MODE_WP | PGT_UFFD_MODE_MINOR,
		PGT_UFFD_MODE_MISSING,
		PGT_UFFD_MODE_WP,
		PGT_UFFD_MODE_MINOR,
	};
	int fd, err, missing_err = 0;
	void *addr = NULL;
	long len;

	fd = uffd_new(p);
	if (fd < 0) {
		p->uffd_register_error[type] = fd;
		return;
	}
	err = uffd_api(fd, 0, NULL);
	if (err)
		goto out_fd;
	len = map_memtype(type, p->page_size, &addr);
	if (len < 0) {
		err = (int)len;
		goto out_fd;
	}
	err = -EINVAL;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)addr, .len = (uint64_t)len },
			.mode = tries[i],
		};

		if (!ioctl(fd, UFFDIO_REGISTER, &reg)) {
			p->uffd_modes[type] = tries[i];
			p->uffd_ioctls[type] = reg.ioctls;
			err = 0;
			break;
		}
		err = -errno;
		/* MISSING alone says best why the type cannot be used at all. */
		if (tries[i] == PGT_UFFD_MODE_MISSING)
			missing_err = err;
	}
	if (err && missing_err)
		err = missing_err;
	munmap(addr, (size_t)len); /* also unregisters */
out_fd:
	close(fd);
	p->uffd_register_error[type] = err;
}

/* ------------------------------------------------------------------ */
/* PAGEMAP_SCAN and soft-dirty                                         */
/* ------------------------------------------------------------------ */

static long pm_scan(int pm, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
		    struct page_region *vec, size_t n)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = flags,
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = n,
		.category_mask = mask,
		.return_mask = mask ? mask : PAGE_IS_PRESENT,
	};
	long ret = ioctl(pm, PAGEMAP_SCAN, &arg);

	return ret < 0 ? -errno : ret;
}

/*
 * The uffd-async dirty tracker, end to end on four anonymous pages: arm
 * WP-async, write page 1, and require that the get-and-clear scan reports
 * exactly page 1 and that a second scan reports nothing (the first one
 * re-protected it).
 */
static int probe_pagemap_scan(struct pgt_probe *p, int pm)
{
	const uint64_t ps = p->page_size;
	struct page_region vec[8];
	uint64_t base;
	int fd = -1, err;
	char *a;
	long n;

	a = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return -errno;
	base = (uintptr_t)a;
	/* Without WP_MATCHING the ioctl only reads: tells ENOTTY (< 6.7) apart. */
	n = pm_scan(pm, base, base + 4 * ps, 0, 0, vec, 8);
	if (n < 0) {
		err = (int)n;
		goto out;
	}
	if (!p->uffd_syscall && !p->uffd_dev) {
		err = p->uffd_error ? p->uffd_error : -ENOSYS;
		goto out;
	}
	if ((p->uffd_features & (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)) !=
	    (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)) {
		err = -EOPNOTSUPP;
		goto out;
	}
	fd = uffd_new(p);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	err = uffd_api(fd, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, NULL);
	if (err)
		goto out;
	{
		struct uffdio_register reg = {
			.range = { .start = base, .len = 4 * ps },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = { .start = base, .len = 4 * ps },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		if (ioctl(fd, UFFDIO_REGISTER, &reg) || ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
			err = -errno;
			goto out;
		}
	}
	*(volatile char *)(a + ps) = 1;
	n = pm_scan(pm, base, base + 4 * ps, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		    PAGE_IS_WRITTEN, vec, 8);
	if (n < 0) {
		err = (int)n;
		goto out;
	}
	if (n != 1 || vec[0].start != base + ps || vec[0].end != base + 2 * ps ||
	    !(vec[0].categories & PAGE_IS_WRITTEN)) {
		err = -EOPNOTSUPP;
		goto out;
	}
	n = pm_scan(pm, base, base + 4 * ps, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		    PAGE_IS_WRITTEN, vec, 8);
	err = n < 0 ? (int)n : n ? -EOPNOTSUPP : 0;
out:
	if (fd >= 0)
		close(fd);
	munmap(a, 4 * ps);
	return err;
}

static int pagemap_entry(int pm, const void *addr, uint64_t ps, uint64_t *e)
{
	ssize_t n = pread(pm, e, sizeof(*e), (off_t)((uintptr_t)addr / ps * sizeof(*e)));

	if (n < 0)
		return -errno;
	return n == sizeof(*e) ? 0 : -EIO;
}

static int write_clear_refs(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, "4", 1) != 1)
		err = -errno;
	close(fd);
	return err;
}

/*
 * Soft-dirty on three pages: 0 written before clear_refs (must read clean
 * after it), 1 written after it (must read dirty), 2 never written.
 *
 * A new VMA is always soft-dirty when CONFIG_MEM_SOFT_DIRTY is set (so a
 * tracker can see a remapped area as new), so a written page of a fresh
 * mapping that does not show bit 55 proves the feature absent without writing
 * clear_refs, which would write-protect every page of the process.
 */
static int probe_soft_dirty(struct pgt_probe *p, int pm)
{
	const uint64_t ps = p->page_size;
	uint64_t e[3];
	int err;
	char *a;

	a = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return -errno;
	*(volatile char *)a = 1;
	err = pagemap_entry(pm, a, ps, &e[0]);
	if (err)
		goto out;
	if (!(e[0] & PGT_PM_PRESENT)) {
		err = -EIO; /* pagemap does not describe this process (qemu-user) */
		goto out;
	}
	if (!(e[0] & PGT_PM_SOFT_DIRTY)) {
		err = -EOPNOTSUPP;
		goto out;
	}
	err = write_clear_refs();
	if (err)
		goto out;
	*(volatile char *)(a + ps) = 1;
	for (int i = 0; i < 3 && !err; i++)
		err = pagemap_entry(pm, a + i * ps, ps, &e[i]);
	if (err)
		goto out;
	if ((e[0] & PGT_PM_SOFT_DIRTY) || !(e[1] & PGT_PM_SOFT_DIRTY) ||
	    (e[2] & PGT_PM_SOFT_DIRTY))
		err = -EOPNOTSUPP;
out:
	munmap(a, 3 * ps);
	return err;
}

/* ------------------------------------------------------------------ */
/* Probe                                                               */
/* ------------------------------------------------------------------ */

void pgt__probe_decide(struct pgt_probe *p)
{
	if (p->pagemap_scan)
		p->best_dirty_method = PGT_DIRTY_UFFD_ASYNC;
	else if (p->soft_dirty)
		p->best_dirty_method = PGT_DIRTY_SOFT_DIRTY;
	else if ((p->uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
		 (p->uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_WP))
		p->best_dirty_method = PGT_DIRTY_UFFD_SYNC;
	else
		p->best_dirty_method = PGT_DIRTY_MPROTECT;
	p->touch_tracking = p->uffd_modes[PGT_MEM_ANON] & PGT_UFFD_MODE_MISSING;
}

static void probe_live(struct pgt_probe *p)
{
	struct utsname u;
	struct rlimit rl;
	int pm;

	memset(p, 0, sizeof(*p));
	p->size = sizeof(*p);
	pgt__probe_sysctl(NULL, p);
	if (!uname(&u)) {
		/* An unparsable release still names the kernel; numbers stay 0. */
		if (pgt__parse_release(u.release, strnlen(u.release, sizeof(u.release)),
				       p->kernel_release, sizeof(p->kernel_release),
				       &p->kernel_major, &p->kernel_minor, &p->kernel_patch)) {
			p->kernel_major = p->kernel_minor = p->kernel_patch = 0;
			snprintf(p->kernel_release, sizeof(p->kernel_release), "%s", u.release);
		}
		/* uname is right where kernel.arch is not: under qemu-user */
		snprintf(p->arch, sizeof(p->arch), "%.*s", (int)sizeof(p->arch) - 1, u.machine);
	} else {
		pgt__probe_release(NULL, p);
	}
	p->page_size = pgt_hal_page_size();
	p->cacheline = pgt_hal_cacheline();
	p->simd = pgt_hal_simd_available();
	p->cycles_per_sec = pgt_hal_cycles_per_sec();

	pgt__probe_thp(NULL, p);
	pgt__probe_pools(NULL, p);
	pgt__probe_numa(NULL, p);
	pgt__probe_devices(NULL, p);
	if (!getrlimit(RLIMIT_MEMLOCK, &rl)) {
		p->memlock_cur = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
		p->memlock_max = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : rl.rlim_max;
	} else {
		p->memlock_error = -errno;
	}

	probe_uffd(p);
	for (int t = 0; t < PGT_MEM__COUNT; t++)
		probe_register(p, t);
	p->uffd_continue_wp_error = probe_continue_wp(p);
	p->uffd_continue_wp = !p->uffd_continue_wp_error;

	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		p->pagemap_scan_error = p->soft_dirty_error = -errno;
	} else {
		p->pagemap_scan_error = probe_pagemap_scan(p, pm);
		p->soft_dirty_error = probe_soft_dirty(p, pm);
		close(pm);
	}
	p->pagemap_scan = !p->pagemap_scan_error;
	p->soft_dirty = !p->soft_dirty_error;
	pgt__probe_decide(p);
}

/* The one piece of global state (DESIGN §8): the host as last probed. */
static struct pgt_probe probe_cache;
static bool probe_cached;
static unsigned probe_runs;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned pgt__probe_runs(void)
{
	unsigned n;

	pthread_mutex_lock(&probe_lock);
	n = probe_runs;
	pthread_mutex_unlock(&probe_lock);
	return n;
}

/*
 * Callers built against an older, shorter struct get its prefix; a newer,
 * longer one gets ours and zeros after it.
 */
#define PROBE_SIZE_V1 PGT_PROBE_SIZE_VER0
static_assert(PROBE_SIZE_V1 == ((offsetof(struct pgt_probe, touch_tracking) + 8) & ~(size_t)7),
	      "0.1's struct ended with touch_tracking");

/* The size rule (hal/export.h); callers of 0.1 get the fields they know. */
static int check_out(struct pgt_probe *out)
{
	return out ? pgt__arg_out(out, out->size, PROBE_SIZE_V1, sizeof(*out), NULL) : -EINVAL;
}

static int copy_out(struct pgt_probe *out, const struct pgt_probe *p)
{
	size_t fill;
	int ret = out ? pgt__arg_out(out, out->size, PROBE_SIZE_V1, sizeof(*p), &fill) : -EINVAL;

	if (ret)
		return ret;
	memcpy(out, p, fill);
	out->size = (uint32_t)fill;
	return 0;
}

static int probe_cached_copy(struct pgt_probe *out, bool refresh)
{
	int ret;

	if ((ret = check_out(out)))
		return ret;
	pthread_mutex_lock(&probe_lock);
	if (refresh || !probe_cached) {
		struct pgt_probe fresh;

		probe_live(&fresh);
		probe_cache = fresh;
		probe_cached = true;
		probe_runs++;
	}
	ret = copy_out(out, &probe_cache);
	pthread_mutex_unlock(&probe_lock);
	return ret;
}

PGT_EXPORT int pgt_probe(struct pgt_probe *out)
{
	return probe_cached_copy(out, false);
}

PGT_EXPORT int pgt_probe_refresh(struct pgt_probe *out)
{
	return probe_cached_copy(out, true);
}

PGT_EXPORT int pgt_probe_root(const char *root, struct pgt_probe *out)
{
	struct pgt_probe p;
	struct stat st;
	int ret;

	if (!root || !*root)
		return -EINVAL;
	if ((ret = check_out(out)))
		return ret;
	if (stat(root, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	memset(&p, 0, sizeof(p));
	p.size = sizeof(p);
	ret = pgt__probe_release(root, &p);
	if (ret)
		return ret;
	pgt__probe_sysctl(root, &p);
	pgt__probe_thp(root, &p);
	pgt__probe_pools(root, &p);
	pgt__probe_numa(root, &p);
	pgt__probe_devices(root, &p);
	pgt__probe_cpu_files(root, &p);
	pgt__probe_memlock_file(root, &p);
	/* A tree of files cannot run a test on memory. */
	p.uffd_error = p.pagemap_scan_error = p.soft_dirty_error = -ENOENT;
	p.uffd_continue_wp_error = -ENOENT;
	for (int t = 0; t < PGT_MEM__COUNT; t++)
		p.uffd_register_error[t] = -ENOENT;
	pgt__probe_decide(&p);
	return copy_out(out, &p);
}

PGT_EXPORT const char *pgt_uffd_feature_name(unsigned bit)
{
	static const char *const names[PGT_UFFD_FEATURE_BITS] = {
		"pagefault_flag_wp", "event_fork", "event_remap", "event_remove",
		"missing_hugetlbfs", "missing_shmem", "event_unmap", "sigbus",
		"thread_id", "minor_hugetlbfs", "minor_shmem", "exact_address",
		"wp_hugetlbfs_shmem", "wp_unpopulated", "poison", "wp_async",
		"move",
	};

	return bit < PGT_UFFD_FEATURE_BITS ? names[bit] : NULL;
}

PGT_EXPORT const char *pgt_uffd_ioctl_name(unsigned nr)
{
	switch (nr) {
	case _UFFDIO_REGISTER: return "register";
	case _UFFDIO_UNREGISTER: return "unregister";
	case _UFFDIO_WAKE: return "wake";
	case _UFFDIO_COPY: return "copy";
	case _UFFDIO_ZEROPAGE: return "zeropage";
	case _UFFDIO_MOVE: return "move";
	case _UFFDIO_WRITEPROTECT: return "writeprotect";
	case _UFFDIO_CONTINUE: return "continue";
	case _UFFDIO_POISON: return "poison";
	case _UFFDIO_API: return "api";
	default: return NULL;
	}
}

PGT_EXPORT const char *pgt_memtype_name(int memtype)
{
	switch (memtype) {
	case PGT_MEM_ANON: return "anon";
	case PGT_MEM_SHMEM: return "shmem";
	case PGT_MEM_HUGETLB: return "hugetlb";
	default: return NULL;
	}
}
