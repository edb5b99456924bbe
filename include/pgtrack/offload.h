/* SPDX-License-Identifier: MIT */
/*
 * pgtrack offload hooks: devices that write guest memory by DMA (an FPGA, a
 * SoC, a SmartNIC, a vhost-user back-end, a VFIO device, an IOMMU) log what
 * they wrote in hardware, behind the CPU's page tables where no dirty tracker
 * sees it; KVM logs vCPU writes in its dirty ring; a CXL memory device counts
 * accesses in its hotness monitoring unit (CHMU). pgtrack reads those logs
 * through one ops table per backend and merges them into the regions' dirty
 * views (pgt_dirty_harvest() sees them as if a tracker had) or, for access
 * hotness, into the region's age view.
 *
 * Also here: DPDK memory as region backing (PGT_BACKING_DPDK) and its IOVAs.
 *
 * Everything in this header is experimental (PGT_EXPERIMENTAL, the
 * EXPERIMENTAL node of the version map). Conventions as in pgtrack.h: 0 or a
 * count, else a negative errno; argument structs start with their size.
 *
 * The ring record and the two index protocols are specified in
 * docs/offload-ring.md, complete enough to build a producer from.
 */
#ifndef PGTRACK_OFFLOAD_H
#define PGTRACK_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>
#include <pgtrack/account.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* The ring record: one format for every source                        */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_offload_rec - One dirty-log record, 16 bytes, byte-identical to
 * KVM's struct kvm_dirty_gfn (little-endian). A KVM dirty ring, a PML log
 * converted with pgt_offload_pml_pack(), an FPGA's or a SmartNIC's log: all
 * are arrays of these.
 * @flags:  PGT_OFFLOAD_REC_* bits; KVM uses bits 0 and 1 only.
 * @slot:   without PGT_OFFLOAD_REC_ADDR: the slot of the attach range the
 *          record is in (struct pgt_offload_range.slot; KVM: as_id << 16 |
 *          memslot id); with it: 0.
 * @offset: without PGT_OFFLOAD_REC_ADDR: the 4 KiB page index inside the
 *          slot's range (KVM: the gfn relative to the memslot); with it: the
 *          IOVA divided by 4096.
 */
struct pgt_offload_rec {
	uint32_t flags;
	uint32_t slot;
	uint64_t offset;
};

/* KVM_DIRTY_GFN_F_DIRTY: the producer wrote this record (written last). */
#define PGT_OFFLOAD_REC_DIRTY (1u << 0)
/* KVM_DIRTY_GFN_F_RESET: the consumer took it (flag protocol only). */
#define PGT_OFFLOAD_REC_RESET (1u << 1)
/* pgtrack: @offset is an IOVA page number, @slot is 0. */
#define PGT_OFFLOAD_REC_ADDR (1u << 2)
/* pgtrack index protocol: the lap parity (docs/offload-ring.md, "phase"). */
#define PGT_OFFLOAD_REC_PHASE (1u << 3)
/* Bits 4..7: reserved, 0. A record with one set is counted as bad. */
#define PGT_OFFLOAD_REC_RESERVED (0xfu << 4)
/* Bits 8..15: source id (which PML log, DMA engine, queue wrote it). */
#define PGT_OFFLOAD_REC_SRC_SHIFT 8
#define PGT_OFFLOAD_REC_SRC_MASK (0xffu << PGT_OFFLOAD_REC_SRC_SHIFT)
/* Bits 16..31: run length minus one, in 4 KiB pages (1 .. 65536 pages). */
#define PGT_OFFLOAD_REC_RUN_SHIFT 16
#define PGT_OFFLOAD_REC_RUN_MASK (0xffffu << PGT_OFFLOAD_REC_RUN_SHIFT)
#define PGT_OFFLOAD_REC_RUN_MAX 65536u
/* The granule of @offset and of run lengths, whatever the region's page. */
#define PGT_OFFLOAD_REC_PAGE 4096u

/* The flag word of a record: @npages (1 .. 65536) from source @src,
 * IOVA-addressed when @addr. DIRTY is included; PHASE is not. */
#define PGT_OFFLOAD_REC_FLAGS(src, npages, addr)                                   \
	(PGT_OFFLOAD_REC_DIRTY | ((addr) ? PGT_OFFLOAD_REC_ADDR : 0u) |           \
	 (((uint32_t)(src) & 0xffu) << PGT_OFFLOAD_REC_SRC_SHIFT) |                \
	 ((((uint32_t)(npages) - 1u) & 0xffffu) << PGT_OFFLOAD_REC_RUN_SHIFT))

/*
 * The control block of a pgtrack-native ring (the index protocol): 256
 * bytes, each index on its own 64-byte line, the records right after it.
 * Fields are little-endian u32; @prod and @lost_seq are written by the
 * producer only, @cons by the consumer only (docs/offload-ring.md has the
 * memory ordering). pgtrack fills @magic .. @rec_offset when it creates the
 * ring and never trusts what it reads back from them.
 */
#define PGT_OFFLOAD_RING_MAGIC 0x52544750u /* "PGTR" */
#define PGT_OFFLOAD_RING_VERSION 1u
#define PGT_OFFLOAD_RING_MIN 16u
#define PGT_OFFLOAD_RING_MAX (1u << 22)

struct pgt_offload_ring_ctl {
	uint32_t magic;
	uint32_t version;
	uint32_t entries;      /* power of two, PGT_OFFLOAD_RING_MIN .. _MAX */
	uint32_t rec_offset;   /* bytes from this block to record 0: 256 */
	uint8_t pad0[48];
	uint32_t prod;         /* free-running: records published */
	uint8_t pad1[60];
	uint32_t cons;         /* free-running: records consumed */
	uint8_t pad2[60];
	uint32_t lost_seq;     /* bumped by the producer for each overflow */
	uint8_t pad3[60];
};

/* ------------------------------------------------------------------ */
/* Backends                                                            */
/* ------------------------------------------------------------------ */

typedef struct pgt_offload pgt_offload;

/** How a backend reports (struct pgt_offload_caps.shape). */
enum pgt_offload_shape {
	PGT_OFFLOAD_RING = 1,    /* 16-byte records in a ring */
	PGT_OFFLOAD_BITMAP,      /* a dirty bitmap over IOVA ranges */
	PGT_OFFLOAD_HOTLIST,     /* access counts per unit and epoch */
};

/** Capability flags (struct pgt_offload_caps.flags). */
enum pgt_offload_cap {
	PGT_OFFLOAD_CAP_HW = 1u << 0,        /* needs hardware (or the model) */
	PGT_OFFLOAD_CAP_HOTNESS = 1u << 1,   /* feeds the age view, not dirty */
	PGT_OFFLOAD_CAP_PAGE_SIZE_SET = 1u << 2, /* the driver may change the page size */
	PGT_OFFLOAD_CAP_NO_CLEAR = 1u << 3,  /* can read without clearing (before unmap) */
	PGT_OFFLOAD_CAP_LOST = 1u << 4,      /* reports overflow: all becomes dirty */
};

/**
 * struct pgt_offload_caps - What a backend can do.
 * @page_sizes: supported logging page sizes, bit n set = 2^n bytes.
 * @granularity: the smallest of them.
 * @max_ranges: IOVA ranges one attach may have (0: no limit).
 */
struct pgt_offload_caps {
	uint32_t size;
	uint32_t shape;
	uint32_t flags;
	uint32_t max_ranges;
	uint64_t page_sizes;
	uint64_t granularity;
};

/**
 * struct pgt_offload_backend_info - One backend as pgt_offload_backends()
 * finds it.
 * @name:   "sim", "ring", "kvm-ring", "vhost-log", "vfio", "iommufd", "chmu".
 * @status: 0 when usable on this host; else why not (-ENODEV: no such
 *          hardware, -EOPNOTSUPP: not built in or not supported).
 * @reason: a sentence saying what was found.
 */
struct pgt_offload_backend_info {
	uint32_t size;
	int32_t status;
	char name[16];
	char reason[128];
	struct pgt_offload_caps caps;
};

/**
 * pgt_offload_backends() - List the backends and probe each on this host.
 * @out: receives up to @cap entries (each @out[i].size must be set), may be
 *       NULL with @cap 0 to count.
 * Cheap (stat of device nodes), no device is opened.
 * Returns: the number of backends (may exceed @cap), or -EINVAL.
 */
PGT_EXPERIMENTAL
int pgt_offload_backends(struct pgt_offload_backend_info *out, size_t cap);

/* ---- per-backend configuration (struct pgt_offload_config.backend_config) ---- */

/** Where the sim device writes (struct pgt_offload_sim_config.pattern). */
enum pgt_offload_sim_pattern {
	PGT_OFFLOAD_SIM_RANDOM = 0, /* uniform over the attached ranges */
	PGT_OFFLOAD_SIM_SEQ,        /* sequential, wrapping (a receive ring) */
	PGT_OFFLOAD_SIM_HOT,        /* 90 % of writes to the first 1/16 */
};

/**
 * typedef pgt_offload_sim_write_fn - Called by the sim device before each DMA
 * write of @len bytes at guest-physical @gpa; returns the 64-bit value the
 * device stores in every 8-byte word it writes. Runs on the device thread.
 */
typedef uint64_t (*pgt_offload_sim_write_fn)(void *arg, uint64_t gpa, uint32_t len);
/**
 * typedef pgt_offload_sim_tick_fn - Called by the sim device after each batch
 * of writes, once its records are published: a safe point where the caller
 * may block the device (a paused guest). Runs on the device thread.
 */
typedef void (*pgt_offload_sim_tick_fn)(void *arg);

/**
 * struct pgt_offload_sim_config - The "sim" backend: a device thread doing
 * DMA-like writes into the attached ranges (through a mapping of the backing
 * file where the region has one, so the CPU tracker does not see them) and
 * logging each in a pgtrack-native ring (index protocol) in hugepage memory,
 * or DPDK memory when an EAL is up. A full ring bumps lost_seq: the next
 * harvest treats every attached page as dirty. Nothing is dropped silently.
 * @rate:        DMA writes per second (0: as fast as it can).
 * @pattern:     enum pgt_offload_sim_pattern.
 * @write_bytes: bytes per write (8 .. 1 MiB, multiple of 8; 0: 64). A write
 *               crossing pages is one record with a run length.
 * @ring_entries: ring size (power of two; 0: 65536).
 * @batch:       records published per index update (0: 64).
 * @seed:        pattern seed.
 * @cpu:         pin the device thread to this CPU, -1: not pinned.
 * @on_write, @on_tick, @arg: optional callbacks (above).
 */
struct pgt_offload_sim_config {
	uint32_t size;
	uint32_t pattern;
	uint64_t rate;
	uint32_t write_bytes;
	uint32_t ring_entries;
	uint32_t batch;
	int32_t cpu;
	uint64_t seed;
	pgt_offload_sim_write_fn on_write;
	pgt_offload_sim_tick_fn on_tick;
	void *arg;
};

/**
 * struct pgt_offload_ring_config - The "ring" backend: a pgtrack-native ring
 * (index protocol, docs/offload-ring.md) for a producer outside pgtrack: an
 * FPGA, a SmartNIC, a SoC, another process. pgtrack allocates it at start in
 * memory a device can DMA into (DPDK memory, with its IOVA, when an EAL is
 * up; else hugepages) and consumes it; pgt_offload_info() gives its address
 * (ring) and IOVA (ring_iova) to program into the device. The sim backend is
 * this ring with pgtrack's own device thread as the producer.
 * @entries: records, a power of two (0: 65536).
 */
struct pgt_offload_ring_config {
	uint32_t size;
	uint32_t entries;
	uint64_t reserved;
};

/**
 * struct pgt_offload_kvm_config - The "kvm-ring" backend: KVM-layout rings
 * (flag protocol: DIRTY set by the producer, RESET by pgtrack).
 * Either rings in memory the caller provides (@rings, @nrings, @entries: a
 * VMM's own ring, a device writing KVM's layout), whose producer resets the
 * harvested records itself; or, on a host with /dev/kvm, the real rings of
 * a VM whose dirty ring the VMM enabled (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]
 * before creating vCPUs): @vm_fd, @vcpu_fds, @nvcpus, @ring_bytes (the size
 * it enabled); pgtrack maps them and issues KVM_RESET_DIRTY_RINGS.
 */
struct pgt_offload_kvm_config {
	uint32_t size;
	uint32_t nrings;
	struct pgt_offload_rec *const *rings;
	uint32_t entries;
	int32_t vm_fd;
	const int *vcpu_fds;
	uint32_t nvcpus;
	uint32_t ring_bytes;
};

/**
 * struct pgt_offload_vhost_config - The "vhost-log" backend: the vhost-user
 * dirty log, one bit per 4 KiB of guest-physical memory
 * (log[page / 8] |= 1 << page % 8, what DPDK's rte_vhost_log_write() sets),
 * shared through a memfd. @fd -1: pgtrack creates the memfd at start, sized
 * for the attached ranges (pgt_offload_info() gives fd and size for
 * VHOST_USER_SET_LOG_BASE); else the caller's log of @log_size bytes at
 * @fd_offset. Without @swap the log is read and cleared by 64-bit atomic
 * exchange, as QEMU does (right for a back-end that may be writing, ~20x
 * the cost of a plain load per non-zero word).
 *
 * Log-swap protocol (@swap set, PGT_EXPERIMENTAL; needs @fd -1): pgtrack
 * creates two logs of the same size at start, A (pgt_offload_info()'s
 * log_fd: the caller sends it with VHOST_USER_SET_LOG_BASE) and a spare B.
 * Each pgt_offload_harvest():
 *  1. calls @swap(@swap_arg, fd of B, size). The caller moves the back-end
 *     to B (VHOST_USER_SET_LOG_BASE with VHOST_USER_PROTOCOL_F_REPLY_ACK)
 *     and returns 0 only once the back-end acknowledged: it has stopped
 *     writing A and every write it made to A happens before the ack (on the
 *     back-end: its log writes, then a release store or the ack's system
 *     call; for a callback in the same process an acquire/release pair
 *     around the ack flag). pgtrack issues a release fence before the call
 *     (B's clearing stores are visible before the back-end writes it) and
 *     an acquire fence after it (A's last bits are visible to it).
 *  2. reads A with plain SIMD loads straight into the region's views (A's
 *     words are the regions' bitmap words), zeroes it, and keeps it as the
 *     spare the next harvest hands over: the back-end must not write A
 *     again until it is handed A by a later @swap call.
 *  pgt_offload_info()'s log_fd then names B, the log in use.
 * @swap returning non-zero means the switch may or may not have happened:
 * that harvest takes both logs by atomic exchange (right either way) and
 * the next one tries again. Every bit the back-end sets is reported by
 * exactly one harvest. The callback runs under the device's lock: it must
 * not call back into this pgt_offload. It runs in every harvest of the
 * device, including the one pgt_dirty_harvest() on a region the device is
 * attached to makes (the drain): the back-end must answer for as long as
 * the device is started.
 */
struct pgt_offload_vhost_config {
	uint32_t size;
	int32_t fd;
	uint64_t log_size;
	uint64_t fd_offset;
	/* since the log-swap protocol (PGT_EXPERIMENTAL); zero: no swap */
	int (*swap)(void *arg, int fd, uint64_t size);
	void *swap_arg;
};

/**
 * struct pgt_offload_vfio_config - The "vfio" backend: VFIO device DMA
 * logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START / REPORT / STOP) on the
 * caller's open VFIO device fd. The driver may pick another page size than
 * asked (pgt_offload_info() says which); REPORT reads and clears; any error
 * makes every attached page dirty (the uAPI's rule).
 */
struct pgt_offload_vfio_config {
	uint32_t size;
	int32_t device_fd;
};

/**
 * struct pgt_offload_iommufd_config - The "iommufd" backend: IOMMU dirty
 * tracking of a HW page table (IOMMU_HWPT_SET_DIRTY_TRACKING,
 * IOMMU_HWPT_GET_DIRTY_BITMAP) the VMM allocated with
 * IOMMU_HWPT_ALLOC_DIRTY_TRACKING. A harvest with PGT_OFFLOAD_HARVEST_UNMAP
 * reads with NO_CLEAR (the range is about to be unmapped).
 */
struct pgt_offload_iommufd_config {
	uint32_t size;
	int32_t iommufd;
	uint32_t hwpt_id;
	uint32_t reserved;
};

/**
 * struct pgt_offload_chmu_config - The "chmu" backend: a CXL hotness
 * monitoring unit (CXL 3.2 CHMU register interface) whose register block the
 * caller mapped (@regs; e.g. a BAR mmap). @instance selects the CHMU in the
 * block; @unit_size (bytes, a size the unit supports; 0: the smallest),
 * @threshold (accesses per epoch that make a unit hot; 0: 1) and
 * @epoch_us (0: the unit's minimum) configure it. Hot units feed the age
 * view of the regions they map to (pgt_offload_hot_histogram()). Attach
 * ranges map device physical addresses (iova) to guest-physical ones.
 */
struct pgt_offload_chmu_config {
	uint32_t size;
	uint32_t instance;
	volatile void *regs;
	uint64_t regs_len;
	uint64_t unit_size;
	uint32_t threshold;
	uint32_t epoch_us;
};

/**
 * struct pgt_offload_config - pgt_offload_open() parameters.
 * @backend:        a backend name (pgt_offload_backends()).
 * @backend_config: the backend's struct above (size set), or NULL for
 *                  defaults where the backend has any ("sim" does).
 * @name:           optional label for logs (copied).
 */
struct pgt_offload_config {
	uint32_t size;
	uint32_t flags;
	const char *backend;
	const void *backend_config;
	const char *name;
};

/**
 * pgt_offload_open() - Open an offload device on a backend.
 * @eng: the engine whose regions the device writes.
 * @cfg: configuration.
 * @out: receives the device; the caller owns it and frees it with
 *       pgt_offload_close() (pgt_engine_close() closes those still open).
 *
 * Returns: 0; -EINVAL (bad config); -ENOENT (no such backend); -ENODEV (the
 * hardware is not there); -EOPNOTSUPP (the device cannot log, or the backend
 * is not built in); -ENOMEM; or the error of opening the device.
 */
PGT_EXPERIMENTAL
int pgt_offload_open(pgt_engine *eng, const struct pgt_offload_config *cfg, pgt_offload **out);

/**
 * struct pgt_offload_range - One IOVA range the device may write, and where
 * it lands in guest-physical memory.
 * @iova:   device address (for a CHMU: device physical address); 4 KiB aligned.
 * @length: bytes, a multiple of 4 KiB.
 * @gpa:    guest-physical address of @iova; [@gpa, @gpa + @length) must be
 *          guest memory of the engine's regions (it may span several).
 * @slot:   the slot records name this range by (KVM: as_id << 16 | memslot);
 *          unique per attach.
 */
struct pgt_offload_range {
	uint64_t iova;
	uint64_t length;
	uint64_t gpa;
	uint32_t slot;
	uint32_t flags;     /* reserved, 0 */
};

/**
 * pgt_offload_attach() - Give the device its IOVA → guest-physical map.
 * Ranges may not overlap in IOVA or repeat a slot. The regions they cover
 * need PGT_TRACK_DIRTY (for a hot-list backend: age tracking,
 * pgt_age_start(), to keep the hotness) and cannot be destroyed while
 * attached (pgt_region_destroy() returns -EBUSY). Replaces an earlier map
 * when the device is stopped.
 *
 * Returns: 0; -EINVAL (overlap, alignment, a gap in guest memory, a region
 * without dirty tracking); -E2BIG (more ranges than the backend takes);
 * -EBUSY (started); -ENOMEM.
 */
PGT_EXPERIMENTAL
int pgt_offload_attach(pgt_offload *dev, const struct pgt_offload_range *ranges, size_t n);

/**
 * pgt_offload_start() - Start logging at @page_size bytes (a power of two,
 * at least 4 KiB; 0: the backend's granularity). The driver may choose
 * another size (VFIO): pgt_offload_info() reports the one in use. The sim
 * device starts writing.
 *
 * Returns: 0; -EINVAL (page size); -EBUSY (already started); -ENOENT (not
 * attached); or the device's error.
 */
PGT_EXPERIMENTAL
int pgt_offload_start(pgt_offload *dev, uint64_t page_size);

/** pgt_offload_harvest() flags. */
enum pgt_offload_harvest_flags {
	/* The range is about to be unmapped: read without clearing where the
	 * device can (IOMMUFD NO_CLEAR), an ordinary harvest elsewhere. */
	PGT_OFFLOAD_HARVEST_UNMAP = 1u << 0,
};

/**
 * struct pgt_offload_harvest - Arguments and results of pgt_offload_harvest().
 * @flags:   enum pgt_offload_harvest_flags.
 * @iova, @length: bitmap backends only: harvest this IOVA range (both 0:
 *           everything attached).
 * @records: out: ring records (or bitmap bits, hot-list entries) read.
 * @pages:   out: distinct region pages marked dirty (or found hot).
 * @rejected: out: records or bits outside the attached ranges, wrapping
 *           runs, bad flags: counted and dropped.
 * @all_dirty: out: 1 when the device lost track (ring overflow, torn record,
 *           index past the ring, device error) and every attached page was
 *           reported dirty instead.
 */
struct pgt_offload_harvest {
	uint32_t size;
	uint32_t flags;
	uint64_t iova;
	uint64_t length;
	uint64_t records;
	uint64_t pages;
	uint64_t rejected;
	uint32_t all_dirty;
	uint32_t reserved;
};

/**
 * pgt_offload_harvest() - Read the device's log and merge it: dirty pages
 * into every open dirty view of the regions they are in, hot units into the
 * age view. pgt_dirty_harvest() runs this for the dirty-logging devices
 * attached to its region first, so a page a device wrote and logged before
 * a view's harvest began is in that harvest; call it yourself to drain a
 * ring more often than you harvest. Serialised per device; never blocks the
 * device.
 * @h: may be NULL.
 *
 * Returns: pages marked (>= 0); -EINVAL; -ENOENT (not started); or a device
 * error (every attached page was then reported dirty).
 */
PGT_EXPERIMENTAL
int64_t pgt_offload_harvest(pgt_offload *dev, struct pgt_offload_harvest *h);

/**
 * pgt_offload_ingest() - Merge records from any software source (a VMM that
 * reads PML logs itself, a SmartNIC message) through the device's map, as
 * if they had come from its ring. Same checks: records outside the map are
 * counted and dropped. Needs an attached device; works started or not.
 * @h: optional results as pgt_offload_harvest().
 *
 * Returns: pages marked, or -EINVAL / -ENOENT (not attached).
 */
PGT_EXPERIMENTAL
int64_t pgt_offload_ingest(pgt_offload *dev, const struct pgt_offload_rec *recs, size_t n,
			   struct pgt_offload_harvest *h);

/**
 * pgt_offload_pml_pack() - Turn a PML-style message (guest-physical
 * addresses of written 4 KiB pages, e.g. the 512 of an Intel PML page) into
 * IOVA-addressed records from source @src, joining consecutive pages into
 * runs. Addresses need not be sorted; the low 12 bits are ignored.
 * @out: receives up to @cap records.
 *
 * Returns: records written; -ENOBUFS when @cap is too small (nothing is
 * written: n records always fit); -EINVAL.
 */
PGT_EXPERIMENTAL
int pgt_offload_pml_pack(const uint64_t *gpas, size_t n, unsigned src,
			 struct pgt_offload_rec *out, size_t cap);

/** pgt_offload_stop() - Stop logging (the sim device stops writing; its
 * last records stay harvestable). A bitmap or hot-list device's log, which
 * cannot be read once stopped, is harvested into the views first: quiesce
 * the device before (as VFIO migration does: last REPORT, then STOP), a
 * write between that read and the stop is not logged. Returns 0, -EINVAL,
 * -ENOENT (not started) or the device's error. */
PGT_EXPERIMENTAL
int pgt_offload_stop(pgt_offload *dev);

/** pgt_offload_detach() - Drop the map (stops first); the regions can be
 * destroyed again. The device is stopped, then whatever it logged (ring
 * records included) is harvested into the views: nothing it wrote before
 * the stop goes unreported. Returns 0 or -EINVAL. */
PGT_EXPERIMENTAL
int pgt_offload_detach(pgt_offload *dev);

/** pgt_offload_close() - Harvest what is left, stop, detach, close the
 * device. NULL is a no-op. */
PGT_EXPERIMENTAL
void pgt_offload_close(pgt_offload *dev);

/**
 * struct pgt_offload_info - What pgt_offload_info() reports. Counters are
 * totals since open.
 * @backend:    backend name (static).
 * @started:    1 while logging.
 * @page_size:  logging page size in use (0 before start).
 * @ring, @ring_bytes, @ring_entries, @ring_iova: "sim", "ring": the ring's control
 *              block (struct pgt_offload_ring_ctl), its size and IOVA (DPDK
 *              memory; else 0).
 * @log_fd, @log_size: "vhost-log": the log memfd (owned by the device) and
 *              its size; with a swap callback, the log the back-end was
 *              last moved to (it changes at every harvest).
 * @records, @pages, @rejected: as in struct pgt_offload_harvest, summed.
 * @lost:       times the device lost track (ring overflow) or pgtrack did
 *              (torn record, index past the ring, device error).
 * @torn, @bad_index, @device_errors: the reasons behind @lost.
 * @harvests:   pgt_offload_harvest() calls (incl. those of
 *              pgt_dirty_harvest()).
 * @dma_writes: "sim": writes the device made.
 */
struct pgt_offload_info {
	uint32_t size;
	uint32_t started;
	const char *backend;
	uint32_t shape;
	uint32_t nranges;
	uint64_t page_size;
	void *ring;
	uint64_t ring_bytes;
	uint64_t ring_iova;
	uint32_t ring_entries;
	int32_t log_fd;
	uint64_t log_size;
	uint64_t records;
	uint64_t pages;
	uint64_t rejected;
	uint64_t lost;
	uint64_t torn;
	uint64_t bad_index;
	uint64_t device_errors;
	uint64_t harvests;
	uint64_t dma_writes;
};

/** pgt_offload_info() - Describe a device. @info->size must be set.
 * Returns 0 or -EINVAL. */
PGT_EXPERIMENTAL
int pgt_offload_info(const pgt_offload *dev, struct pgt_offload_info *info);

/**
 * pgt_offload_region_ranges() - The IOVA map of a region as a device sees
 * it: for DPDK memory the IOVAs DPDK gives its pages (physical addresses in
 * IOVA-as-PA mode, so usually many ranges), merged where contiguous; for any
 * other region one identity range (iova = gpa). Slots are numbered from
 * @slot0. Ready for pgt_offload_attach().
 * @out: receives up to @cap ranges.
 *
 * Returns: the number of ranges (may exceed @cap), or -EINVAL.
 */
PGT_EXPERIMENTAL
int pgt_offload_region_ranges(const pgt_region *r, uint32_t slot0,
			      struct pgt_offload_range *out, size_t cap);

/**
 * struct pgt_hot_histogram - Pages of a region by age epochs since a
 * hotness source (CHMU) last reported them hot, next to the write-age
 * histogram of pgt_age_histogram() and on the same epochs (pgt_age_sample()).
 * Bucket 0: hot in the current epoch; bucket k (1..14): 2^(k-1) .. 2^k - 1
 * epochs ago; the last bucket: never reported hot.
 * @units: hot-list entries that reached this region.
 * @accesses: their summed access counts.
 */
struct pgt_hot_histogram {
	uint32_t size;
	uint32_t reserved;
	uint64_t epoch;
	uint64_t pages;
	uint64_t units;
	uint64_t accesses;
	uint64_t hot[PGT_AGE_BUCKETS];
};

/**
 * pgt_offload_hot_histogram() - Hotness of a region (needs pgt_age_start()).
 * Returns: 0, or -EINVAL (no age tracking, bad arguments).
 */
PGT_EXPERIMENTAL
int pgt_offload_hot_histogram(const pgt_region *r, struct pgt_hot_histogram *h);

/* ------------------------------------------------------------------ */
/* DPDK memory                                                         */
/* ------------------------------------------------------------------ */

/** pgt_dpdk_init() flags. */
enum pgt_dpdk_flags {
	PGT_DPDK_NO_HUGE = 1u << 0, /* --no-huge --no-shconf -m <memory_mb> */
};

/**
 * struct pgt_dpdk_config - The EAL pgtrack starts when the application has
 * none (DPDK allows one per process, for its whole life).
 * @flags:     enum pgt_dpdk_flags. Without PGT_DPDK_NO_HUGE: --in-memory,
 *             memory from the 2 MiB hugepage pool.
 * @memory_mb: --no-huge only: memory for the EAL (0: 256).
 * @lcore:     the one lcore (-l), -1: the CPU this thread runs on.
 */
struct pgt_dpdk_config {
	uint32_t size;
	uint32_t flags;
	uint32_t memory_mb;
	int32_t lcore;
};

/**
 * pgt_dpdk_init() - Make sure a DPDK EAL is up: an application's is used
 * as it is; otherwise one is started with --in-memory --no-pci
 * --no-telemetry (and --no-huge with PGT_DPDK_NO_HUGE). Regions with
 * PGT_BACKING_DPDK call it with @cfg NULL (hugepages when the pool has free
 * pages, else --no-huge) if nothing did before.
 *
 * Returns: 1 when an EAL was already up, 0 when pgtrack started one;
 * -EOPNOTSUPP (built without DPDK); -EINVAL; or rte_eal_init()'s error.
 */
PGT_EXPERIMENTAL
int pgt_dpdk_init(const struct pgt_dpdk_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_OFFLOAD_H */
