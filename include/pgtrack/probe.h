/* SPDX-License-Identifier: MIT */
/*
 * pgtrack host capability probe: what this kernel and machine offer for page
 * tracking, tested rather than guessed.
 */
#ifndef PGTRACK_PROBE_H
#define PGTRACK_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PGT_PROBE_MAX_POOLS 32

/** A hugetlb pool: global (@node = -1) or of one NUMA node. */
struct pgt_hugepage_pool {
	uint64_t page_size;
	int node;
	uint64_t total;
	uint64_t free;
	uint64_t reserved;  /* global pools only; 0 per node */
	uint64_t surplus;
};

/** Memory types userfaultfd registration is probed on. */
enum pgt_memtype {
	PGT_MEM_ANON = 0,
	PGT_MEM_SHMEM,
	PGT_MEM_HUGETLB,
	PGT_MEM__COUNT
};

/** Userfaultfd registration modes (struct pgt_probe.uffd_modes bits), the
 * kernel's UFFDIO_REGISTER_MODE_* values. */
enum pgt_uffd_mode {
	PGT_UFFD_MODE_MISSING = 1u << 0,
	PGT_UFFD_MODE_WP = 1u << 1,
	PGT_UFFD_MODE_MINOR = 1u << 2,
};

/** SIMD levels (struct pgt_probe.simd bits). */
enum pgt_simd {
	PGT_SIMD_SSE2 = 1u << 0,
	PGT_SIMD_AVX2 = 1u << 1,
	PGT_SIMD_AVX512 = 1u << 2, /* AVX-512 F+BW */
	PGT_SIMD_NEON = 1u << 3,
};

/**
 * struct pgt_probe - Probe result. Errors are negative errnos explaining why
 * a feature is missing (e.g. -ENOSYS: syscall absent, -EPERM: not allowed,
 * -ENOTTY: ioctl unknown, -EOPNOTSUPP: present but not working).
 */
struct pgt_probe {
	uint32_t size;             /* sizeof(struct pgt_probe), set by caller */

	char kernel_release[65];
	unsigned kernel_major, kernel_minor, kernel_patch;
	char arch[16];             /* "x86_64", "aarch64", ... */

	uint64_t page_size;        /* base page size */
	unsigned cacheline;
	uint32_t simd;             /* enum pgt_simd bits the CPU has */
	uint64_t cycles_per_sec;   /* calibrated cycle counter frequency */

	/* userfaultfd */
	bool uffd_syscall;         /* userfaultfd(2) usable by this process */
	bool uffd_user_only;       /* ... only with UFFD_USER_MODE_ONLY: faults
	                            * taken in the kernel (KVM, O_DIRECT, vhost)
	                            * are not delivered */
	bool uffd_dev;             /* /dev/userfaultfd opened */
	int uffd_error;            /* 0 or why neither worked */
	int unprivileged_uffd;     /* vm.unprivileged_userfaultfd, -1 unknown */
	uint64_t uffd_features;    /* UFFDIO_API features */
	uint64_t uffd_ioctls[PGT_MEM__COUNT]; /* range ioctls after REGISTER:
	                            * bit n is ioctl number n (_UFFDIO_COPY...) */
	uint32_t uffd_modes[PGT_MEM__COUNT]; /* enum pgt_uffd_mode bits that
	                            * registered together */
	int uffd_register_error[PGT_MEM__COUNT];

	/* dirty tracking */
	bool pagemap_scan;         /* PAGEMAP_SCAN with WP-async works */
	int pagemap_scan_error;
	bool soft_dirty;           /* soft-dirty observed on a written page */
	int soft_dirty_error;

	/* THP */
	char thp_enabled[16];      /* "always", "madvise", "never", "" */
	char thp_defrag[16];
	uint64_t thp_pmd_size;     /* hpage_pmd_size */
	uint64_t mthp_sizes;       /* bit n set: anonymous mTHP of 2^n
	                            * bytes offered (6.8+) */
	int thp_error;             /* 0, or why THP settings are unknown */

	/* hugetlb */
	unsigned n_pools;
	struct pgt_hugepage_pool pools[PGT_PROBE_MAX_POOLS]; /* global pools
	                            * by size, then per node by node and size */
	int pools_error;           /* 0, -ENOENT (no hugetlbfs), -EBADMSG, or
	                            * -ENOSPC when more than MAX_POOLS exist */

	/* NUMA, IOMMU, limits */
	int numa_nodes;            /* online nodes (1 for a kernel without NUMA) */
	int numa_max_node;         /* highest online node id */
	int numa_error;
	bool iommufd;              /* /dev/iommu */
	bool vfio_container;       /* /dev/vfio/vfio */
	unsigned vfio_groups;
	unsigned vfio_devices;     /* /dev/vfio/devices/ (cdev) */
	uint64_t memlock_cur;      /* RLIMIT_MEMLOCK, UINT64_MAX = unlimited */
	uint64_t memlock_max;
	int memlock_error;

	int best_dirty_method;     /* enum pgt_dirty_method */
	bool touch_tracking;       /* uffd MISSING on anonymous memory */

	/* UFFDIO_CONTINUE_MODE_WP (6.6+) maps a page-cache page write-protected
	 * in one step; without it pgtrack continues, protects, then wakes. */
	bool uffd_continue_wp;
	int uffd_continue_wp_error; /* 0 or why not (-EINVAL: mode unknown) */

	/* transparent_hugepage/shmem_enabled: "always", "within_size",
	 * "advise", "never", "deny", "force", or "" (no such file) */
	char shmem_thp_enabled[16];
};

/** sizeof(struct pgt_probe) in pgtrack 0.1 (it ended with touch_tracking):
 * the smallest size pgt_probe() takes. */
#define PGT_PROBE_SIZE_VER0 ((offsetof(struct pgt_probe, uffd_continue_wp) + 7) & ~(size_t)7)

/**
 * pgt_probe() - Probe the running host. The first call does the work
 * (about 0.6 ms of tests on a few pages, plus the HAL's one-time cycle
 * counter calibration) and caches it; later calls copy the cache. Safe to
 * call from several threads. Every fd and mapping it makes is released
 * before it returns; it writes /proc/self/clear_refs only on kernels whose
 * fresh mappings show soft-dirty, i.e. where soft-dirty exists.
 * @out: result; @out->size must be set to sizeof(*out) (at least
 *       PGT_PROBE_SIZE_VER0, which receives the fields of that version; a
 *       larger one zeros after ours; @out->size is set to the bytes filled).
 *
 * Returns: 0 or -EINVAL. Missing features are not errors: they are reported
 * in the struct.
 */
int pgt_probe(struct pgt_probe *out);

/**
 * pgt_probe_refresh() - Probe the host again and replace the cached answer
 * (a hugetlb pool raised, a sysctl changed since the first probe). Engines
 * opened after it see the new answer; open engines keep theirs.
 * @out: as for pgt_probe(); may not be NULL.
 *
 * Returns: 0 or -EINVAL.
 */
PGT_EXPERIMENTAL
int pgt_probe_refresh(struct pgt_probe *out);

/**
 * pgt_probe_root() - Probe with /proc, /sys and /dev read below @root (a
 * directory holding proc/, sys/ and dev/ trees, as a fixture or a chroot).
 * The live kernel tests (userfaultfd, PAGEMAP_SCAN, soft-dirty) are skipped
 * and reported as -ENOENT, so best_dirty_method is mprotect. What the live
 * probe asks the CPU or the process comes from files instead: arch from
 * proc/sys/kernel/arch, cacheline from cpu0's index0 cache, simd from
 * proc/cpuinfo, memlock from proc/self/limits, page_size derived from
 * hpage_pmd_size (0 when unknown); cycles_per_sec is 0. Not cached.
 *
 * Returns: 0, -EINVAL, or -ENOENT/-EBADMSG when a required file (kernel
 * release) is missing or malformed.
 */
int pgt_probe_root(const char *root, struct pgt_probe *out);

/**
 * pgt_uffd_feature_name() - Name of userfaultfd feature bit @bit
 * ("wp_async", "minor_shmem", ...). Returns: a static string or NULL.
 */
const char *pgt_uffd_feature_name(unsigned bit);

/**
 * pgt_uffd_ioctl_name() - Name of userfaultfd ioctl number @nr ("copy",
 * "zeropage", "continue", ...). Returns: a static string or NULL.
 */
const char *pgt_uffd_ioctl_name(unsigned nr);

/** Where struct pgt_calibration's costs come from. */
enum pgt_calib_source {
	PGT_CALIB_NONE = 0,     /* no costs: AUTO follows feature order */
	PGT_CALIB_MEASURED,     /* measured by this engine */
	PGT_CALIB_CACHED,       /* read from this boot's cache file */
};

/** struct pgt_calibration.measured bits: costs measured (not estimated). */
#define PGT_CALIB_M_ASYNC (1u << 0)     /* wp_async_fault, scan_clean, reprotect */
#define PGT_CALIB_M_MPROTECT (1u << 1)  /* the mprotect syscall in mprotect_fault */

/**
 * struct pgt_calibration - Per-page costs (ns, 4 KiB pages) the engine's
 * PGT_DIRTY_AUTO choice uses.
 * @size:            sizeof(*out), set by the caller.
 * @source:          enum pgt_calib_source.
 * @error:           0, or why there are no costs (-ETIME: the measuring
 *                   deadline passed; -ECANCELED: PGT_CALIBRATE_OFF).
 * @cache_error:     0 when the cache file was read or written, else why not
 *                   (the costs then live in this engine only).
 * @measured:        PGT_CALIB_M_* bits (0 when cached). Never measured, and
 *                   estimated: the signal round trip in @mprotect_fault_ns
 *                   (the WP-async fault stands for it) and @sync_fault_ns
 *                   (1.1 x @mprotect_fault_ns).
 * @measure_ns:      wall time of the measurement (0 when cached).
 * @iterations:      page operations it did.
 * @wp_async_fault_ns: a writer's first store under uffd WP-async.
 * @mprotect_fault_ns: SIGSEGV + mprotect(RW) round trip (see @measured).
 * @sync_fault_ns:   sync uffd-WP fault (estimated).
 * @scan_clean_ns:   PAGEMAP_SCAN walk per unwritten entry.
 * @reprotect_ns:    re-protect of one written page by the walk.
 * @pagemap_read_ns: pread of one /proc/self/pagemap entry.
 * @method_1g_4k:    enum pgt_dirty_method AUTO picks for 1 GiB of 4 KiB
 *                   anonymous memory, @method_1g_2m for 1 GiB of 2 MiB
 *                   hugetlb (methods the probe says work; 1 % written).
 */
struct pgt_calibration {
	uint32_t size;
	uint32_t source;
	int error;
	int cache_error;
	uint32_t measured;
	uint32_t reserved;
	uint64_t measure_ns;
	uint64_t iterations;
	double wp_async_fault_ns;
	double mprotect_fault_ns;
	double sync_fault_ns;
	double scan_clean_ns;
	double reprotect_ns;
	double pagemap_read_ns;
	int method_1g_4k;
	int method_1g_2m;
};

/**
 * pgt_calibration() - The engine's calibration, measured now (bounded: at
 * most ~50 ms, a few thousand page operations on a private scratch
 * mapping) if no AUTO region has needed it yet, unless the engine was
 * opened with PGT_CALIBRATE_OFF. Thread safe.
 * @e:   engine.
 * @out: result; @out->size as for pgt_probe().
 *
 * Returns: 0 (also when the costs could not be had: see @out->error),
 * -EINVAL, -E2BIG.
 */
PGT_EXPERIMENTAL
int pgt_calibration(pgt_engine *e, struct pgt_calibration *out);

/** pgt_memtype_name() - "anon", "shmem", "hugetlb", or NULL. */
const char *pgt_memtype_name(int memtype);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_PROBE_H */
