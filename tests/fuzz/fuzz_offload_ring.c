/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the ring consumer (lib/offload.c): a device writes
 * whatever it likes into a ring, its indices and its lost counter, in
 * either protocol, over a few consumes. Whatever the input: no write
 * outside the targets (ASan), no bit for a page outside the map, indices
 * that end where the producer said, a records count that adds up, and a
 * whole map marked whenever the consumer said it lost track.
 *
 * Input: byte 0 mode (bit 0: flag protocol, bits 1-3: log2 entries - 4),
 * byte 1 segment shape, then per round (up to 4): u32 prod advance, u32
 * lost_seq, u8 count, and that many 16-byte records written at the
 * producer's position (raw: flags, slot and offset as the input says).
 * Missing bytes read as zero.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/offload.h"

#define FUZZ_NAME "fuzz_offload_ring"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NT 2
static const uint64_t tpages[NT] = { 300, 5 };
static const unsigned tshift[NT] = { 12, 21 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct pgt_ofl_target t[NT];
	uint64_t *allowed[NT];
	struct pgt_ofl_seg seg[3];
	struct pgt_ofl_map m;
	struct pgt_ofl_ring ring;
	struct pgt_ofl_stats st = { 0 };
	unsigned mode = (unsigned)get(&in, 1), shape = (unsigned)get(&in, 1);
	uint32_t entries = 16u << ((mode >> 1) & 7);
	bool flags = mode & 1;
	void *mem;
	struct pgt_offload_rec *recs;
	uint32_t prod = 0;

	if (entries > 1024)
		entries = 1024;
	for (int i = 0; i < NT; i++) {
		t[i] = (struct pgt_ofl_target){ .npages = tpages[i], .shift = tshift[i] };
		t[i].bits = calloc(tpages[i] / 64 + 1, 8);
		allowed[i] = calloc(tpages[i] / 64 + 1, 8);
		CHECK(t[i].bits && allowed[i]);
	}
	/* slot 1: 200 pages of target 0 at IOVA 1 MiB (offset from the shape);
	 * slot 2 continues it into target 1's first 2 MiB; slot 3 elsewhere */
	seg[0] = (struct pgt_ofl_seg){ .pfn = 256, .npages = 200, .slot = 1,
				       .off = (uint64_t)(shape % 100) << 12, .target = 0 };
	seg[1] = (struct pgt_ofl_seg){ .pfn = 456, .npages = 512, .slot = 1, .slot_pfn = 200,
				       .off = (uint64_t)(shape % 4) << 21, .target = 1 };
	seg[2] = (struct pgt_ofl_seg){ .pfn = 1u << 20, .npages = 16, .slot = 3, .off = 0,
				       .target = 0 };
	CHECK(pgt__ofl_map_init(&m, seg, 3, t, NT) == 0);
	for (int s = 0; s < 3; s++)
		for (uint64_t p = 0; p < seg[s].npages; p++) {
			uint64_t tp = (seg[s].off + (p << 12)) >> tshift[seg[s].target];

			allowed[seg[s].target][tp / 64] |= 1ULL << (tp % 64);
		}

	mem = aligned_alloc(64, pgt__ofl_ring_bytes(entries));
	CHECK(mem);
	if (flags) {
		recs = mem;
		memset(mem, 0, (size_t)entries * 16);
		CHECK(pgt__ofl_ring_kvm(&ring, recs, entries) == 0);
	} else {
		CHECK(pgt__ofl_ring_create(&ring, mem, pgt__ofl_ring_bytes(entries), entries) == 0);
		recs = ring.recs;
	}
	for (int round = 0; round < 4 && in.left; round++) {
		uint32_t adv = (uint32_t)get(&in, 4), lost = (uint32_t)get(&in, 4);
		unsigned n = (unsigned)get(&in, 1);
		uint32_t before = ring.cons;
		uint64_t got, rec_before = st.records;
		bool lost_track;

		for (unsigned i = 0; i < n; i++) {
			struct pgt_offload_rec *r = &recs[(prod + i) & (entries - 1)];

			r->flags = (uint32_t)get(&in, 4);
			r->slot = (uint32_t)get(&in, 4);
			r->offset = get(&in, 8);
		}
		/* small advances mostly, any value sometimes */
		if (!(adv & 0x80000000u))
			adv %= entries + 2;
		prod += adv;
		if (!flags) {
			ring.ctl->prod = prod;
			ring.ctl->lost_seq = lost & 3;
		}
		st.all = false;
		got = pgt__ofl_ring_consume(&ring, &m, &st);
		CHECK(st.records - rec_before == got);
		CHECK(got <= entries);
		lost_track = st.all;
		if (!flags) {
			/* the consumer ends where the producer said, whatever it said */
			CHECK(ring.cons == prod);
			CHECK(ring.ctl->cons == prod);
			CHECK(got == ((uint32_t)(prod - before) <= entries ? (uint32_t)(prod - before) : 0));
		} else {
			CHECK(ring.cons - before == got);
			for (uint64_t i = 0; i < got; i++)
				CHECK(recs[(before + i) & (entries - 1)].flags == PGT_OFFLOAD_REC_RESET);
		}
		for (int i = 0; i < NT; i++) {
			size_t nw = tpages[i] / 64 + 1;

			for (size_t w = 0; w < nw; w++) {
				CHECK(!(t[i].bits[w] & ~allowed[i][w]));
				if (lost_track)
					CHECK(t[i].bits[w] == allowed[i][w]);
			}
		}
		pgt__ofl_targets_clear(&m);
	}
	pgt__ofl_map_fini(&m);
	for (int i = 0; i < NT; i++) {
		free(t[i].bits);
		free(allowed[i]);
	}
	free(mem);
	return 0;
}
