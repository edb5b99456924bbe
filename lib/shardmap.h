/* SPDX-License-Identifier: MIT */
/*
 * Sharded page bitmaps (shardmap.c): a region-wide bitmap whose bits live in
 * one struct pgt_bitmap per shard, each allocated on its node through the
 * node seam and taken by a worker of that node. Not installed.
 */
#ifndef PGT_SHARDMAP_H
#define PGT_SHARDMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pgtrack/pgtrack.h"
#include "lib/bitmap.h"
#include "lib/nodeops.h"
#include "lib/workers.h"

/* Counters of one shard (per-node stats sum them by node). */
struct pgt_shard_ctr {
	_Atomic uint64_t dirty;
	_Atomic uint64_t released;
	_Atomic uint64_t remote_touch;
	_Atomic uint64_t harvest_ns;
	_Atomic uint64_t meta_bytes;
};

/* Where a shard lives: pages [first, first + npages) of the map. */
struct pgt_shard_geom {
	uint64_t first;                /* page index, multiple of 64 */
	uint64_t npages;
	int node;                      /* allocation node, -1: default */
	int worker;                    /* worker index, -1: the caller */
};

struct pgt_shard {
	uint64_t first;
	uint64_t npages;
	int node;
	int worker;
	struct pgt_bitmap bm;
	void *mem;
	size_t bytes;
	struct pgt_shard_ctr *ctr;     /* may be NULL */
};

/*
 * A region-wide page bitmap whose bits live in one struct pgt_bitmap per
 * shard, each allocated on its node. Indices are region page numbers.
 * set/test/set_range are atomic as in bitmap.h; the rest needs the caller
 * to exclude takers (as bitmap.h), and pgt__shardmap_take needs exclusive
 * use (no setters either: its run offsets are counted first).
 */
struct pgt_shardmap {
	uint64_t nbits;
	unsigned n;
	struct pgt_shard *s;
	const struct pgt_numa_ops *ops;
	struct pgt_workers *workers;   /* NULL: everything in the caller */
	/* Smaller maps are taken in the caller even with workers: waking a
	 * worker costs 15-50 us on a busy host (PLATFORM-NOTES), a whole 1 GiB
	 * map at 10 % dirty takes ~15 us. Default PGT_SHARD_PARALLEL_BITS. */
	uint64_t parallel_min_bits;
	/* Tests: called once between counting the runs and taking them. */
	void (*take_hook)(void *arg);
	void *take_hook_arg;
};

/* 16 GiB of 4 KiB pages: from there two workers gain more than a wake-up. */
#define PGT_SHARD_PARALLEL_BITS (1ULL << 22)

/* From explicit geometry; @ops NULL: pgt__node_plain_ops (no nodes), @workers
 * NULL: everything in the caller. numa/ builds it from a region layout
 * (pgt__numa_shardmap_init). */
int pgt__shardmap_init_geom(struct pgt_shardmap *m, uint64_t nbits,
			    const struct pgt_shard_geom *g, unsigned n,
			    const struct pgt_numa_ops *ops, struct pgt_workers *workers);
void pgt__shardmap_fini(struct pgt_shardmap *m);
size_t pgt__shardmap_bytes(const struct pgt_shardmap *m);

static inline struct pgt_shard *pgt__shardmap_find(const struct pgt_shardmap *m, uint64_t i)
{
	unsigned lo = 0, hi = m->n;

	/* most regions have one or two shards */
	if (m->n == 1 || i < m->s[1].first)
		return &m->s[0];
	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (m->s[mid].first <= i)
			lo = mid;
		else
			hi = mid;
	}
	return &m->s[lo];
}

static inline void pgt__shardmap_set(struct pgt_shardmap *m, uint64_t i)
{
	struct pgt_shard *s = pgt__shardmap_find(m, i);

	pgt__bitmap_set(&s->bm, i - s->first);
}

static inline bool pgt__shardmap_test(const struct pgt_shardmap *m, uint64_t i)
{
	const struct pgt_shard *s = pgt__shardmap_find(m, i);

	return pgt__bitmap_test(&s->bm, i - s->first);
}

/* 64-bit word @w of the map (bits 64w .. 64w+63), relaxed; 0 past the end.
 * Shards own whole words, so a word is never split between two. */
static inline uint64_t pgt__shardmap_word(const struct pgt_shardmap *m, size_t w)
{
	const struct pgt_shard *s;

	if (!m->n || (uint64_t)w * 64 >= m->nbits)
		return 0;
	s = pgt__shardmap_find(m, (uint64_t)w * 64);
	return atomic_load_explicit(&s->bm.words[w - s->first / 64], memory_order_relaxed);
}

void pgt__shardmap_set_range(struct pgt_shardmap *m, uint64_t first, uint64_t n);
void pgt__shardmap_clear_range(struct pgt_shardmap *m, uint64_t first, uint64_t n);
void pgt__shardmap_zero(struct pgt_shardmap *m);
uint64_t pgt__shardmap_popcount(const struct pgt_shardmap *m);
/* Popcount of [first, first + n). */
uint64_t pgt__shardmap_count_range(const struct pgt_shardmap *m, uint64_t first, uint64_t n);
/* Maximal runs, joined across shard boundaries. */
uint64_t pgt__shardmap_count_runs(const struct pgt_shardmap *m);
int pgt__shardmap_for_each_run(const struct pgt_shardmap *m, pgt_bitmap_run_fn fn, void *arg);
uint64_t pgt__shardmap_or_kvm(struct pgt_shardmap *m, const unsigned long *src, uint64_t nbits);
int64_t pgt__shardmap_export_kvm(const struct pgt_shardmap *m, unsigned long *out, size_t words);
bool pgt__shardmap_validate(const struct pgt_shardmap *m, const char **reason);

/*
 * Output of a sharded get-and-clear: a KVM-layout bitmap (overwritten) and/or
 * runs of guest-physical pages, as struct pgt_harvest.
 */
struct pgt_shard_out {
	unsigned long *bitmap;
	size_t bitmap_words;
	struct pgt_run *runs;
	size_t runs_cap;
	uint64_t gpa;                  /* of region page 0 */
	unsigned page_shift;
	size_t nruns;                  /* out: written, or needed on -ENOBUFS */
};

/*
 * Get-and-clear every shard, in parallel on the shards' workers when the map
 * has a pool, and merge into @o without a lock: each shard owns whole words
 * of the bitmap and a slice of the runs array counted beforehand; runs
 * meeting at a shard boundary are joined afterwards. Needs exclusive use of
 * the map. Returns bits taken; -ENOBUFS when @o->runs_cap is too small
 * (@o->nruns says how many are needed; nothing is taken); -EINVAL when
 * @o->bitmap_words is too small; -EBUSY when a concurrent setter broke the
 * exclusive-use rule and runs did not match their slices: every bit taken
 * is put back (nothing is lost; @o->bitmap and @o->runs are then to be
 * ignored), never a write outside @o->runs.
 */
int64_t pgt__shardmap_take(struct pgt_shardmap *m, struct pgt_shard_out *o);

#endif /* PGT_SHARDMAP_H */
