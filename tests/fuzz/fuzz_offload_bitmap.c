/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the dirty-bitmap parser (lib/offload.c) that the
 * vhost-log, VFIO and IOMMUFD backends share: a bitmap at any page size
 * over any IOVA, against segments at odd places in two targets of 4 KiB
 * and 2 MiB pages. The result must equal a brute-force model bit for bit
 * (pages set, set bits read, bits rejected), and nothing may be written
 * outside the targets.
 *
 * Input: u8 page shift (12 + n % 10), u16 base IOVA in 2 MiB units (% 32), u16
 * bit count (1 + n % 1500), three segments of (u16 IOVA page, u16 pages,
 * u16 target offset, u8 target), then the bitmap bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/offload.h"

#define FUZZ_NAME "fuzz_offload_bitmap"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NT 2
static const uint64_t tpages[NT] = { 4096, 16 };
static const unsigned tshift[NT] = { 12, 21 };

static struct pgt_ofl_seg seg[3];
static unsigned nseg;
static uint64_t *want[NT];

static bool model(uint64_t pfn)
{
	for (unsigned i = 0; i < nseg; i++)
		if (pfn >= seg[i].pfn && pfn - seg[i].pfn < seg[i].npages) {
			uint64_t p = (seg[i].off + ((pfn - seg[i].pfn) << 12)) >> tshift[seg[i].target];

			want[seg[i].target][p / 64] |= 1ULL << (p % 64);
			return true;
		}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	unsigned ps = 12 + (unsigned)(get(&in, 1) % 10);
	uint64_t iova = ((get(&in, 2) % 32) << 21) & ~((1ULL << ps) - 1);
	uint64_t nbits = 1 + get(&in, 2) % 1500, got, rejected = 0, set = 0;
	struct pgt_ofl_target t[NT];
	struct pgt_ofl_stats st = { 0 };
	struct pgt_ofl_map m;
	uint64_t *bits;

	nseg = 0;
	for (int i = 0; i < 3; i++) {
		uint64_t pfn = get(&in, 2) % 20000, np = 1 + get(&in, 2) % 600, off = get(&in, 2) % 4096;
		unsigned tg = (unsigned)get(&in, 1) % NT;
		uint64_t cap = (tpages[tg] << tshift[tg]) >> 12; /* target size in 4 KiB */
		bool clash = false;

		if (off >= cap)
			off %= cap;
		if (np > cap - off)
			np = cap - off;
		for (unsigned j = 0; j < nseg; j++)
			clash |= pfn < seg[j].pfn + seg[j].npages && seg[j].pfn < pfn + np;
		if (clash)
			continue;
		seg[nseg++] = (struct pgt_ofl_seg){ .pfn = pfn, .npages = np, .slot = (uint32_t)i,
						    .off = off << 12, .target = tg };
	}
	for (int i = 0; i < NT; i++) {
		t[i] = (struct pgt_ofl_target){ .npages = tpages[i], .shift = tshift[i] };
		t[i].bits = calloc(tpages[i] / 64 + (tpages[i] % 64 != 0), 8);
		want[i] = calloc(tpages[i] / 64 + 1, 8);
		CHECK(t[i].bits && want[i]);
	}
	bits = calloc((nbits + 63) / 64, 8);
	CHECK(bits);
	for (uint64_t b = 0; b < nbits; b++) {
		if (!in.left)
			break;
		if (!(in.p[b / 8 % in.left] >> (b % 8) & 1))
			continue;
		bool hit = false;

		bits[b / 64] |= 1ULL << (b % 64);
		set++;
		for (uint64_t p = 0; p < 1ULL << (ps - 12); p++)
			hit |= model((iova >> 12) + (b << (ps - 12)) + p);
		rejected += !hit;
	}
	if (nbits % 64) /* garbage past the end must be ignored */
		bits[nbits / 64] |= ~0ULL << (nbits % 64);
	if (nseg && !pgt__ofl_map_init(&m, seg, nseg, t, NT)) {
		got = pgt__ofl_bitmap(&m, iova, 1ULL << ps, bits, nbits, &st);
		CHECK(got == set);
		CHECK(st.records == set);
		CHECK(st.rejected == rejected);
		for (int i = 0; i < NT; i++)
			for (size_t w = 0; w < (tpages[i] + 63) / 64; w++)
				CHECK(t[i].bits[w] == want[i][w]);
		pgt__ofl_map_fini(&m);
	}
	for (int i = 0; i < NT; i++) {
		free(t[i].bits);
		free(want[i]);
	}
	free(bits);
	return 0;
}
