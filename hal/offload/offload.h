/* SPDX-License-Identifier: MIT */
/*
 * Offload backends (hal/offload/): one ops table per backend, the I/O seam
 * every hardware access goes through, and the faithful models that stand in
 * for hardware this host does not have. Not installed.
 *
 * A backend only talks to its device: it never parses what the device
 * logged. Rings are handed to the engine (ops->rings), which consumes them
 * with lib/offload.c; bitmaps and hot lists are handed over through the
 * sink the engine passes down with each harvest. So hal stays below lib and
 * nothing calls upward.
 */
#ifndef PGT_HAL_OFFLOAD_H
#define PGT_HAL_OFFLOAD_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pgtrack/offload.h"

/*
 * The seam: every ioctl, mmap and register access of a backend. The real
 * table calls the kernel (and loads/stores for registers); a model replaces
 * it with one that keeps the device's state and checks arguments as the
 * kernel or the hardware would (hal/offload/model.c).
 */
struct pgt_ofl_io {
	void *ctx;
	/* 0 (or the ioctl's non-negative result) or -errno */
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	/* the mapping, or NULL with *err = -errno */
	void *(*mmap)(void *ctx, size_t len, int prot, int flags, int fd, off_t off, int *err);
	int (*munmap)(void *ctx, void *p, size_t len);
	/* 64-bit register access at @reg (inside the device's register block) */
	uint64_t (*rd64)(void *ctx, const volatile void *reg);
	void (*wr64)(void *ctx, volatile void *reg, uint64_t v);
	/* 0 when @path exists, else -errno (device nodes, sysfs) */
	int (*exists)(void *ctx, const char *path);
};

extern const struct pgt_ofl_io pgt__ofl_io_real;

/* A window of the attach map as the backend sees it, sorted by IOVA. */
struct pgt_ofl_win {
	uint64_t iova;
	uint64_t len;
	uint64_t gpa;
	uint32_t slot;
	uint64_t slot_off; /* byte offset of @iova inside its slot's range */
	uint8_t *dma;   /* host address of @iova for a simulated device: a
	                 * mapping of the backing file where the region has one
	                 * (DMA bypasses the CPU's page tables), else the region */
};

/* A ring the engine consumes (lib/offload.h struct pgt_ofl_ring). */
struct pgt_ofl_ring_desc {
	struct pgt_offload_ring_ctl *ctl; /* index protocol; NULL: flag protocol */
	struct pgt_offload_rec *recs;
	uint32_t entries;
	uint64_t iova;                    /* where the device writes it, 0: unknown */
};

/* What a bitmap or hot-list harvest hands to the engine (downward ops). */
struct pgt_ofl_sink {
	void *arg;
	void (*bitmap)(void *arg, uint64_t iova, uint64_t page_size, const uint64_t *bits,
		       uint64_t nbits);
	/* a quiescent log nobody writes: merge @bits and zero them (NULL: the
	 * backend calls bitmap() and zeroes them itself) */
	void (*bitmap_take)(void *arg, uint64_t iova, uint64_t page_size, uint64_t *bits,
			    uint64_t nbits);
	void (*hot)(void *arg, const uint64_t *entries, size_t n, unsigned count_bits,
		    uint64_t unit_size);
	/* the device lost track or failed: every attached page is dirty */
	void (*lost)(void *arg, int err);
};

struct pgt_ofl_ops;

/* The backend's view of one device; embedded in the engine's pgt_offload. */
struct pgt_ofl_dev {
	const struct pgt_ofl_ops *ops;
	const struct pgt_ofl_io *io;
	void *priv;                     /* backend state */
	/* services the engine passes down */
	void *svc;
	/* memory a device can DMA into (hugepages, DPDK when an EAL is up):
	 * zeroed, 64-byte aligned; *iova its IOVA or 0 */
	void *(*alloc)(void *svc, size_t bytes, uint64_t *iova, int *err);
	void (*free)(void *svc, void *p, size_t bytes);
	void (*log)(void *svc, int level, const char *fmt, va_list ap);
	_Atomic uint64_t dma_writes;    /* sim: writes made */
};

void pgt__ofl_log(struct pgt_ofl_dev *d, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct pgt_ofl_ops {
	const char *name;
	uint32_t shape;                 /* enum pgt_offload_shape */
	bool dma;                       /* writes memory itself: wants pgt_ofl_win.dma */
	/* Without a device: capabilities, and 0 or why not (-ENODEV, ...) with
	 * a sentence in @why. */
	int (*probe)(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		     size_t n);
	/* @cfg: the backend's config struct (size checked here), or NULL. */
	int (*open)(struct pgt_ofl_dev *d, const void *cfg);
	/* New map (sorted windows, copied by the backend if it keeps them). */
	int (*attach)(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n);
	/* *page_size in: wanted (0: default); out: in use. */
	int (*start)(struct pgt_ofl_dev *d, uint64_t *page_size);
	/* Ring shape: the rings, valid from start until close. Count or -errno. */
	int (*rings)(struct pgt_ofl_dev *d, struct pgt_ofl_ring_desc *out, unsigned cap);
	/*
	 * Bitmap and hot-list shapes: read (and clear) the log for IOVAs
	 * [iova, iova + len) (len 0: everything attached) into @sink. Ring
	 * shape: called after the engine consumed the rings (KVM: reset).
	 */
	int (*harvest)(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
		       const struct pgt_ofl_sink *sink);
	int (*stop)(struct pgt_ofl_dev *d);
	void (*detach)(struct pgt_ofl_dev *d);
	void (*close)(struct pgt_ofl_dev *d);
	/* backend fields of pgt_offload_info() (may be NULL) */
	void (*info)(const struct pgt_ofl_dev *d, struct pgt_offload_info *info);
};

extern const struct pgt_ofl_ops pgt__ofl_sim, pgt__ofl_ring, pgt__ofl_kvm, pgt__ofl_vhost, pgt__ofl_vfio,
	pgt__ofl_iommufd, pgt__ofl_chmu;

/* The backends in listing order, NULL-terminated. */
extern const struct pgt_ofl_ops *const pgt__ofl_backends[];
/* By name, or NULL. */
const struct pgt_ofl_ops *pgt__ofl_backend(const char *name);

/* ---- the device side of the native ring (docs/offload-ring.md) ---- */

/* Zero @mem and write the control block of a ring of @entries records. */
void pgt__ofl_ring_layout(void *mem, uint32_t entries);

/* A producer's private state. */
struct pgt_ofl_prod {
	struct pgt_offload_ring_ctl *ctl;
	struct pgt_offload_rec *recs;
	uint32_t entries;
	unsigned shift;
	uint32_t prod;       /* our index; ctl->prod is only ever written */
	uint32_t lost_seq;
};

void pgt__ofl_prod_init(struct pgt_ofl_prod *p, struct pgt_offload_ring_ctl *ctl, uint32_t entries);
/*
 * Publish @n records (flags without PHASE: it is added per lap). What does
 * not fit is dropped and lost_seq is bumped. Returns the records published.
 */
uint32_t pgt__ofl_produce(struct pgt_ofl_prod *p, const struct pgt_offload_rec *in, uint32_t n);

/* ---- size-rule check for backend config structs (NULL: -EINVAL) ---- */
int pgt__ofl_cfg_size(const void *cfg, size_t v1, size_t known);

/* ---- what the backends share ---- */

/* Round [iova, iova + len) out to @ps and clip to 64 bits; false if empty. */
bool pgt__ofl_span(uint64_t iova, uint64_t len, uint64_t ps, uint64_t *lo, uint64_t *hi);
/* Replace *@keep (*@nkeep windows) with a copy of @w. 0 or -ENOMEM. */
int pgt__ofl_keep_windows(struct pgt_ofl_win **keep, unsigned *nkeep, const struct pgt_ofl_win *w,
			  unsigned n);
/* Fill @caps (size untouched) and the sentence @why; returns @status. */
int pgt__ofl_caps(struct pgt_offload_caps *caps, uint32_t shape, uint32_t flags, uint64_t sizes,
		  uint32_t max_ranges, int status, char *why, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 9, 10)));

/*
 * A device whose log is a bitmap read per IOVA range (VFIO DMA logging,
 * IOMMUFD): the state both keep, first in their priv, and the harvest they
 * share. @read fills @bits (zeroed) for [lo, lo + nbits * page_size).
 */
#define PGT_OFL_REPORT_BITS (1ULL << 20) /* 128 KiB of bitmap per call */
struct pgt_ofl_bmdev {
	int fd;
	uint32_t id;
	struct pgt_ofl_win *win;
	unsigned nwin;
	uint64_t page_size;
	bool started;
	uint64_t *bits;
	const char *what;
	int (*read)(struct pgt_ofl_dev *d, uint64_t lo, uint64_t nbits, uint32_t flags);
	int (*off)(struct pgt_ofl_dev *d);
};
int pgt__ofl_bm_new(struct pgt_ofl_dev *d, int fd, uint32_t id, const char *what);
int pgt__ofl_bm_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n);
/* Read the windows (clipped to [iova, iova + len) when len) into @sink; on
 * an error the sink hears the device lost track. */
int pgt__ofl_bm_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
			const struct pgt_ofl_sink *sink);
int pgt__ofl_bm_stop(struct pgt_ofl_dev *d);
void pgt__ofl_bm_detach(struct pgt_ofl_dev *d);
void pgt__ofl_bm_close(struct pgt_ofl_dev *d);

#endif /* PGT_HAL_OFFLOAD_H */
