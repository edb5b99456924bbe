/* SPDX-License-Identifier: MIT */
/*
 * Kernel uapi that is newer than the system headers (Debian 12 ships
 * linux-libc-dev 6.1). Values are copied from the kernel's
 * include/uapi/linux/{fs,userfaultfd}.h; every definition is guarded so a
 * newer libc header wins. This is the only place that knows about it.
 */
#ifndef PGT_COMPAT_UAPI_H
#define PGT_COMPAT_UAPI_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>

/* ---- userfaultfd (features up to 6.8) ---- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#define PGT_UFFD_FEATURE_BITS 17

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* ---- PAGEMAP_SCAN (6.7) ---- */
/* madvise advice newer than some libc headers */
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* 6.14 (still so in the 6.18 uapi): a guard region (MADV_GUARD_INSTALL). Only
 * for reading categories: an older kernel rejects a mask naming it. */
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

/* ---- /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) ---- */
#define PGT_PM_PFN_MASK ((1ULL << 55) - 1)
#define PGT_PM_SOFT_DIRTY (1ULL << 55)
#define PGT_PM_EXCLUSIVE (1ULL << 56)
#define PGT_PM_UFFD_WP (1ULL << 57)
#define PGT_PM_FILE (1ULL << 61)
#define PGT_PM_SWAP (1ULL << 62)
#define PGT_PM_PRESENT (1ULL << 63)

/* ---- VFIO device DMA logging (6.2; include/uapi/linux/vfio.h) ---- */
#include <linux/vfio.h>
#ifndef VFIO_DEVICE_FEATURE_DMA_LOGGING_START
struct vfio_device_feature_dma_logging_control {
	__aligned_u64 page_size;
	__u32 num_ranges;
	__u32 __reserved;
	__aligned_u64 ranges;
};

struct vfio_device_feature_dma_logging_range {
	__aligned_u64 iova;
	__aligned_u64 length;
};

#define VFIO_DEVICE_FEATURE_DMA_LOGGING_START 6
#define VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP 7

struct vfio_device_feature_dma_logging_report {
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 page_size;
	__aligned_u64 bitmap;
};

#define VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT 8
#endif
/* Ranges the VFIO core takes in one START: a kernel page of ranges. */
#define PGT_VFIO_LOG_MAX_RANGES (4096 / sizeof(struct vfio_device_feature_dma_logging_range))

/* ---- IOMMUFD dirty tracking (6.7; include/uapi/linux/iommufd.h) ---- */
#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#endif
#define PGT_IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING 0x8b
#define PGT_IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP 0x8c
#ifndef IOMMU_HWPT_SET_DIRTY_TRACKING
#define IOMMU_HWPT_DIRTY_TRACKING_ENABLE 1
struct iommu_hwpt_set_dirty_tracking {
	__u32 size;
	__u32 flags;
	__u32 hwpt_id;
	__u32 __reserved;
};
#define IOMMU_HWPT_SET_DIRTY_TRACKING _IO(IOMMUFD_TYPE, PGT_IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING)

#define IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR 1
struct iommu_hwpt_get_dirty_bitmap {
	__u32 size;
	__u32 hwpt_id;
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 page_size;
	__aligned_u64 data;
};
#define IOMMU_HWPT_GET_DIRTY_BITMAP _IO(IOMMUFD_TYPE, PGT_IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP)
#endif

/* ---- KVM dirty ring (5.11; linux/kvm.h) ---- */
#include <linux/kvm.h>
/*
 * Page offset of a vCPU's dirty ring in its mmap: 64 on x86 and arm64
 * (arch/<arch>/include/uapi/asm/kvm.h). linux/kvm.h falls back to 0 where the
 * arch header lacks it (older arm64 headers), so pgtrack carries its own.
 */
#define PGT_KVM_DIRTY_LOG_PAGE_OFFSET 64
#ifndef KVM_RESET_DIRTY_RINGS
#define KVM_RESET_DIRTY_RINGS _IO(KVMIO, 0xc7)
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING
#define KVM_CAP_DIRTY_LOG_RING 192
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif
#define PGT_KVM_DIRTY_GFN_F_DIRTY 0x1u
#define PGT_KVM_DIRTY_GFN_F_RESET 0x2u
/* Entries a KVM dirty ring may have (KVM_DIRTY_RING_MAX_ENTRIES). */
#define PGT_KVM_DIRTY_RING_MAX_ENTRIES 65536u

#endif /* PGT_COMPAT_UAPI_H */
