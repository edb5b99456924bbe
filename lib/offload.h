/* SPDX-License-Identifier: MIT */
/*
 * Offload log parsing with no engine state (lib/offload.c): the IOVA map
 * that every device report goes through, and the parsers that feed it —
 * ring records (index and flag protocols, docs/offload-ring.md), dirty
 * bitmaps at any page size, CXL CHMU hot-list entries. Not installed.
 *
 * Everything a device writes is untrusted. The parsers copy each record or
 * word once, check it, and only ever set bits inside the targets' own
 * bitmaps; whatever does not fit the map is counted in struct pgt_ofl_stats.
 * One parser call at a time per map (the caller serialises).
 */
#ifndef PGT_LIB_OFFLOAD_H
#define PGT_LIB_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtrack/offload.h"
#include "lib/bitmap.h"

#define PGT_OFL_PAGE_SHIFT 12 /* record and run granule: 4 KiB */

/* What one parser call saw. Plain counters, added to. */
struct pgt_ofl_stats {
	uint64_t records;   /* records, set bits or hot-list entries read */
	uint64_t rejected;  /* outside the map, wrapping, malformed (dropped) */
	uint64_t torn;      /* index protocol: a published record not (fully) written */
	uint64_t bad_index; /* index protocol: producer index past the ring */
	uint64_t lost;      /* producer-reported overflows */
	uint64_t hot_units; /* hot lists: entries that hit the map */
	uint64_t hot_count; /* ... their summed counts */
	bool all;           /* the whole map was marked */
};

/*
 * A target: the flat bitmap (one bit per page of the target's region, 64-bit
 * words) the parsers set bits in, with the span of words they touched so the
 * merge visits only those. Owned by the caller.
 */
struct pgt_ofl_target {
	uint64_t *bits;
	uint64_t npages;
	unsigned shift;         /* log2 of the region's page size (>= 12) */
	size_t lo, hi;          /* touched words [lo, hi); hi == 0: none */
	/* hot lists: the access count of each page, summed (NULL: not kept) */
	uint32_t *hot;
};

/*
 * A segment: the part of one attach range that lies in one target. Ranges
 * spanning regions are split into several segments with the same slot.
 */
struct pgt_ofl_seg {
	uint64_t pfn;       /* first IOVA page (4 KiB units) */
	uint64_t npages;    /* 4 KiB pages */
	uint64_t slot_pfn;  /* page offset of the segment inside its slot's range */
	uint64_t off;       /* byte offset of the segment in the target's region */
	uint32_t slot;
	uint32_t target;
};

struct pgt_ofl_map {
	struct pgt_ofl_seg *segs;   /* sorted by pfn */
	uint32_t *by_slot;          /* segment indices sorted by (slot, slot_pfn) */
	uint32_t nsegs;
	struct pgt_ofl_target *targets;
	uint32_t ntargets;
	uint32_t last;              /* cache: segment of the last IOVA lookup */
	uint32_t last_slot;         /* cache: by_slot index of the last slot lookup */
};

/*
 * Build @m from @segs (copied and sorted) over @targets (not copied: they
 * must outlive the map). -EINVAL when segments overlap in IOVA or in slot
 * space, are empty, wrap, name a missing target or lie outside it; -ENOMEM.
 */
int pgt__ofl_map_init(struct pgt_ofl_map *m, const struct pgt_ofl_seg *segs, uint32_t n,
		      struct pgt_ofl_target *targets, uint32_t ntargets);
void pgt__ofl_map_fini(struct pgt_ofl_map *m);

/* Mark 4 KiB IOVA pages [pfn, pfn + n) dirty; pages outside the map count
 * as one rejection. n == 0 is rejected. */
void pgt__ofl_mark(struct pgt_ofl_map *m, uint64_t pfn, uint64_t n, struct pgt_ofl_stats *st);
/* Mark every mapped page (the device lost track). */
void pgt__ofl_mark_all(struct pgt_ofl_map *m, struct pgt_ofl_stats *st);
/* Zero what the targets hold in [lo, hi) and reset their spans. */
void pgt__ofl_targets_clear(struct pgt_ofl_map *m);

/*
 * Records from an array (software ingest): a record counts when DIRTY is set
 * and the reserved bits are clear (PHASE and RESET are ignored); others are
 * rejected. Returns records accepted.
 */
uint64_t pgt__ofl_ingest(struct pgt_ofl_map *m, const struct pgt_offload_rec *recs, size_t n,
			 struct pgt_ofl_stats *st);

/* ---- rings ---- */

/* Bytes of a native ring of @entries records (control block included). */
static inline size_t pgt__ofl_ring_bytes(uint32_t entries)
{
	return sizeof(struct pgt_offload_ring_ctl) + (size_t)entries * sizeof(struct pgt_offload_rec);
}

/* The consumer's side of a ring. Geometry is the consumer's own copy: what
 * it reads back from shared memory is never used to address it. */
struct pgt_ofl_ring {
	struct pgt_offload_ring_ctl *ctl; /* index protocol; NULL: flag protocol */
	struct pgt_offload_rec *recs;
	uint32_t entries;
	unsigned shift;                   /* log2(entries) */
	uint32_t cons;
	uint32_t lost_seen;
};

/* Lay out a native ring in @mem (@bytes >= pgt__ofl_ring_bytes(entries)),
 * zeroed, header filled, and set up @ring to consume it. -EINVAL on bad
 * geometry. */
int pgt__ofl_ring_create(struct pgt_ofl_ring *ring, void *mem, size_t bytes, uint32_t entries);
/* Consume an existing native ring at @ctl of @entries records (a power of
 * two in range); -EINVAL when its header disagrees. */
int pgt__ofl_ring_index(struct pgt_ofl_ring *ring, struct pgt_offload_ring_ctl *ctl,
			uint32_t entries);
/* Consume a KVM-layout ring (flag protocol) of @entries (power of two). */
int pgt__ofl_ring_kvm(struct pgt_ofl_ring *ring, struct pgt_offload_rec *recs, uint32_t entries);

/*
 * Consume what the producer published, at most one ring's worth, into @m.
 * Index protocol: acquire prod, check each record (DIRTY, lap phase,
 * reserved bits; a bad one is torn: the whole map is marked), release cons.
 * A producer index more than a ring ahead (bad_index) or a new lost_seq
 * marks the whole map. Flag protocol: take records while DIRTY && !RESET
 * (acquire), set RESET (release). Returns records consumed.
 */
uint64_t pgt__ofl_ring_consume(struct pgt_ofl_ring *ring, struct pgt_ofl_map *m,
			       struct pgt_ofl_stats *st);

/* ---- bitmaps ---- */

/*
 * A dirty bitmap over IOVA: bit i (bit i % 64 of word i / 64) covers
 * [iova + i * page_size, iova + (i + 1) * page_size). @page_size a power of
 * two >= 4 KiB, @iova aligned to it. Set bits outside the map are rejected
 * (counted per run of them). Returns bits read (set ones).
 */
uint64_t pgt__ofl_bitmap(struct pgt_ofl_map *m, uint64_t iova, uint64_t page_size,
			 const uint64_t *bits, uint64_t nbits, struct pgt_ofl_stats *st);

/* ---- CXL CHMU hot lists ---- */

/*
 * Hot-list entries: bits [0, @count_bits) are the access count, the rest the
 * unit index; unit u covers device addresses [u * unit_size, (u + 1) *
 * unit_size) (@unit_size a power of two >= 4 KiB). Units inside the map add
 * their count to the target's hot[] (when kept) and mark its pages; others
 * are rejected. Returns entries read.
 */
uint64_t pgt__ofl_hotlist(struct pgt_ofl_map *m, const uint64_t *entries, size_t n,
			  unsigned count_bits, uint64_t unit_size, struct pgt_ofl_stats *st);

/* ---- PML ---- */

/* pgt_offload_pml_pack(): sort-free run building. Returns records or
 * -ENOBUFS. */
int pgt__ofl_pml_pack(const uint64_t *gpas, size_t n, unsigned src,
		      struct pgt_offload_rec *out, size_t cap);

/* ---- merging into page bitmaps ---- */

/*
 * dst words [w0, w0 + nw) |= src[0 .. nw), for a caller that holds every
 * other writer and taker of @dst out (views under the region's harvest
 * lock): relaxed loads and stores, no read-modify-write. Keeps the summary
 * over-approximate as bitmap.h requires. Words past dst->nwords and bits
 * past dst->nbits are ignored. Returns the set bits of src it took (the
 * ignored ones not counted), from the same pass (pgt_hal_or_count()).
 */
uint64_t pgt__ofl_or_words(struct pgt_bitmap *dst, size_t w0, const uint64_t *src, size_t nw);

/* pgt__ofl_or_words() that also zeroes the src words it covered (the
 * ignored tail bits of the last word too): a quiescent log, in one pass. */
uint64_t pgt__ofl_take_words(struct pgt_bitmap *dst, size_t w0, uint64_t *src, size_t nw);

#endif /* PGT_LIB_OFFLOAD_H */
