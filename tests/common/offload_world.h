/* SPDX-License-Identifier: MIT */
/*
 * A small offload world for tests: lib/offload.c targets and segments, and
 * a brute-force model of where each IOVA page lands (tests only).
 */
#ifndef PGT_TEST_OFFLOAD_WORLD_H
#define PGT_TEST_OFFLOAD_WORLD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/offload.h"
#include "tests/common/testutil.h"

#define PFN(x) ((x) >> 12)

struct world {
	struct pgt_ofl_target t[4];
	uint64_t *want[4];      /* expected bits */
	struct pgt_ofl_seg seg[16];
	uint32_t nseg, nt;
	struct pgt_ofl_map m;
};

static inline void world_target(struct world *w, uint64_t npages, unsigned shift)
{
	uint32_t i = w->nt++;

	w->t[i] = (struct pgt_ofl_target){ .npages = npages, .shift = shift };
	w->t[i].bits = calloc((npages + 63) / 64 + 1, 8); /* +1: a guard word */
	w->want[i] = calloc((npages + 63) / 64 + 1, 8);
	assert_non_null(w->t[i].bits);
	assert_non_null(w->want[i]);
}

static inline void world_seg(struct world *w, uint64_t iova, uint64_t len, uint32_t slot,
		      uint64_t slot_off, uint32_t target, uint64_t off)
{
	w->seg[w->nseg++] = (struct pgt_ofl_seg){
		.pfn = PFN(iova), .npages = PFN(len), .slot_pfn = PFN(slot_off), .off = off,
		.slot = slot, .target = target,
	};
}

static inline void world_init(struct world *w)
{
	assert_int_equal(pgt__ofl_map_init(&w->m, w->seg, w->nseg, w->t, w->nt), 0);
}

static inline void world_fini(struct world *w)
{
	pgt__ofl_map_fini(&w->m);
	for (uint32_t i = 0; i < w->nt; i++) {
		free(w->t[i].bits);
		free(w->want[i]);
	}
	memset(w, 0, sizeof(*w));
}

/* Model: IOVA page @pfn is written. Returns whether it is mapped. */
static inline bool model_pfn(struct world *w, uint64_t pfn)
{
	for (uint32_t i = 0; i < w->nseg; i++) {
		const struct pgt_ofl_seg *s = &w->seg[i];

		if (pfn >= s->pfn && pfn - s->pfn < s->npages) {
			uint64_t p = (s->off + ((pfn - s->pfn) << 12)) >> w->t[s->target].shift;

			w->want[s->target][p / 64] |= 1ULL << (p % 64);
			return true;
		}
	}
	return false;
}

/* Model: slot page; returns whether mapped. */
static inline bool model_slot(struct world *w, uint32_t slot, uint64_t spfn)
{
	for (uint32_t i = 0; i < w->nseg; i++) {
		const struct pgt_ofl_seg *s = &w->seg[i];

		if (s->slot == slot && spfn >= s->slot_pfn && spfn - s->slot_pfn < s->npages)
			return model_pfn(w, s->pfn + (spfn - s->slot_pfn));
	}
	return false;
}

static inline void model_all(struct world *w)
{
	for (uint32_t i = 0; i < w->nseg; i++)
		for (uint64_t p = 0; p < w->seg[i].npages; p++)
			model_pfn(w, w->seg[i].pfn + p);
}

static inline void check_world(struct world *w)
{
	for (uint32_t i = 0; i < w->nt; i++) {
		size_t nw = (w->t[i].npages + 63) / 64;

		for (size_t k = 0; k < nw; k++)
			if (w->t[i].bits[k] != w->want[i][k])
				fail_msg("target %u word %zu: got %#llx want %#llx", i, k,
					 (unsigned long long)w->t[i].bits[k],
					 (unsigned long long)w->want[i][k]);
		/* nothing beyond the target's pages, nothing in the guard word */
		if (w->t[i].npages % 64)
			assert_int_equal(w->t[i].bits[nw - 1] >> (w->t[i].npages % 64), 0);
		assert_int_equal(w->t[i].bits[nw], 0);
		/* the touched span covers every set word */
		for (size_t k = 0; k < nw; k++)
			if (w->t[i].bits[k])
				assert_true(k >= w->t[i].lo && k < w->t[i].hi);
	}
}

static inline void clear_world(struct world *w)
{
	pgt__ofl_targets_clear(&w->m);
	for (uint32_t i = 0; i < w->nt; i++) {
		memset(w->want[i], 0, ((w->t[i].npages + 63) / 64 + 1) * 8);
		for (size_t k = 0; k < (w->t[i].npages + 63) / 64; k++)
			assert_int_equal(w->t[i].bits[k], 0);
	}
}

#endif
