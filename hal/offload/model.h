/* SPDX-License-Identifier: MIT */
/*
 * Faithful models of the hardware the offload backends drive, behind the
 * I/O seam (struct pgt_ofl_io): what this host lacks (a VFIO device with DMA
 * logging, an IOMMU with dirty tracking, a CXL CHMU, KVM) is reached through
 * them in tests, benchmarks and demos. Each keeps the device's state and
 * checks every argument the way the kernel or the device does (argument
 * sizes, flags, page-size rules, read-and-clear, only-set-bits), with the
 * errno it would return; the sources are cited in model.c. Not installed.
 *
 * The device side (a DMA write, an access, a vCPU write) is driven by the
 * caller through pgt__model_*().
 */
#ifndef PGT_HAL_OFFLOAD_MODEL_H
#define PGT_HAL_OFFLOAD_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "hal/offload/offload.h"

enum pgt_model_kind {
	PGT_MODEL_VFIO = 1,  /* a VFIO device with DMA logging (mlx5-like) */
	PGT_MODEL_IOMMUFD,   /* /dev/iommu with one dirty-tracking HW page table */
	PGT_MODEL_CHMU,      /* a CXL CHMU register block */
	PGT_MODEL_KVM,       /* a VM with per-vCPU dirty rings */
};

struct pgt_model_params {
	int kind;
	bool absent;                 /* device nodes missing: probes fail */
	/* vfio: page sizes the device can log at (bit n = 2^n; 0: 4K and 2M)
	 * and ranges its tracker holds before the driver combines them
	 * (0: any number) */
	uint64_t vfio_page_sizes;
	uint32_t vfio_max_ranges;
	bool vfio_no_logging;        /* a device without log_ops: -ENOTTY */
	/* iommufd: the HWPT, whether its domain can track dirty pages, the
	 * IOMMU granule (0: 4K), and the IOVA space mapped in the IOAS */
	uint32_t hwpt_id;
	bool hwpt_no_dirty;
	uint64_t iommu_pgsize;
	uint64_t iova_base, iova_len;
	/* chmu: instances, hot-list entries, counter width, unit sizes
	 * (CAP2 mask; 0: 4 KiB .. 2 MiB), device capacity in bytes */
	uint32_t chmu_instances;
	uint32_t chmu_list;
	unsigned chmu_width;
	uint64_t chmu_units;
	uint64_t chmu_capacity;
	/* kvm: vCPUs and entries per ring */
	uint32_t kvm_vcpus;
	uint32_t kvm_entries;
};

struct pgt_model;

/* NULL on bad parameters or no memory. */
struct pgt_model *pgt__model_new(const struct pgt_model_params *p);
void pgt__model_free(struct pgt_model *m);
/* The seam with this model behind it (ctx is the model). */
const struct pgt_ofl_io *pgt__model_io(struct pgt_model *m);
/* The fd the model answers on: the VFIO device, the iommufd, the VM (KVM);
 * vCPU i of a KVM model is fd(m) + 1 + i. */
int pgt__model_fd(const struct pgt_model *m);
/* CHMU: the register block to give the backend. */
volatile void *pgt__model_regs(struct pgt_model *m, uint64_t *len);

/* Device side. VFIO/IOMMUFD: a DMA write of [iova, iova + len) (logged if
 * tracking is on and the range is tracked). CHMU: an access at device
 * address @iova. Returns 0, or -EFAULT outside the device's memory. */
int pgt__model_dma(struct pgt_model *m, uint64_t iova, uint64_t len);
/* CHMU: end the epoch, append the hot units to the list. Returns entries
 * appended (those that did not fit set the overflow status). */
int pgt__model_chmu_epoch(struct pgt_model *m);
/* KVM: vCPU @vcpu dirtied gfn @offset of memslot @slot. -ENOSPC when the
 * ring is full (KVM would exit to user space with DIRTY_RING_FULL). */
int pgt__model_kvm_push(struct pgt_model *m, unsigned vcpu, uint32_t slot, uint64_t offset);
/* The next @n device operations (VFIO REPORT, IOMMUFD GET_DIRTY_BITMAP)
 * fail with @err. */
void pgt__model_fail(struct pgt_model *m, int err, unsigned n);

/* What the model saw, for tests. */
struct pgt_model_stats {
	uint64_t ioctls;
	int last_err;               /* errno of the last failed call, negative */
	uint64_t page_size;         /* VFIO: the logging page size chosen */
	uint32_t ranges;            /* VFIO: tracker ranges after combining */
	bool tracking;              /* logging / dirty tracking on */
	uint64_t cleared;           /* bits read and cleared */
	uint64_t no_clear_reads;    /* IOMMUFD: reads with NO_CLEAR */
	uint64_t resets;            /* KVM: entries reset */
	uint64_t chmu_enabled;      /* CHMU: times enabled */
};
void pgt__model_stats(const struct pgt_model *m, struct pgt_model_stats *st);

#endif /* PGT_HAL_OFFLOAD_MODEL_H */
