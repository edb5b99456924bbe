/* SPDX-License-Identifier: MIT */
/*
 * lib/offload.c on injected data: the IOVA map, the ring record in both
 * index protocols (with the device-side producer of hal/offload), dirty
 * bitmaps at any page size, CHMU hot lists, PML packing and the word-wide
 * merge into page bitmaps. Every result is compared with a brute-force
 * model of the map; malformed input must be counted and never set a bit
 * outside the targets.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hal/hal.h"
#include "hal/offload/offload.h"
#include "lib/offload.h"
#include "tests/common/offload_world.h"

static uint64_t seed;

/*
 * Two regions: A of 1024 4 KiB pages, B of 8 2 MiB pages. Slot 7 is an
 * IOVA range at 1 GiB running through the last 64 pages of A into the first
 * 2 MiB page of B; slot 3 is 16 pages of A at IOVA 2 GiB.
 */
static void two_regions(struct world *w)
{
	memset(w, 0, sizeof(*w));
	world_target(w, 1024, 12);
	world_target(w, 8, 21);
	world_seg(w, 1ULL << 30, 64 << 12, 7, 0, 0, (1024 - 64) << 12);
	world_seg(w, (1ULL << 30) + (64 << 12), 2ULL << 20, 7, 64 << 12, 1, 0);
	world_seg(w, 2ULL << 30, 16 << 12, 3, 0, 0, 0);
	world_init(w);
}

/* ---------------------------------------------------------------- */

static void test_map_rejects(void **state)
{
	struct pgt_ofl_target t = { .npages = 64, .shift = 12 };
	uint64_t bits[2] = { 0 };
	struct pgt_ofl_map m;
	struct pgt_ofl_seg a = { .pfn = 10, .npages = 8, .slot = 1, .off = 0 };
	struct pgt_ofl_seg s2[2];

	(void)state;
	t.bits = bits;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), 0);
	pgt__ofl_map_fini(&m);
	assert_int_equal(pgt__ofl_map_init(&m, &a, 0, &t, 1), -EINVAL);
	/* overlapping IOVAs */
	s2[0] = a;
	s2[1] = a;
	s2[1].pfn = 17;
	s2[1].slot = 2;
	s2[1].off = 8 << 12;
	assert_int_equal(pgt__ofl_map_init(&m, s2, 2, &t, 1), -EINVAL);
	s2[1].pfn = 18;
	assert_int_equal(pgt__ofl_map_init(&m, s2, 2, &t, 1), 0);
	pgt__ofl_map_fini(&m);
	/* the same slot twice over the same slot pages */
	s2[1].slot = 1;
	assert_int_equal(pgt__ofl_map_init(&m, s2, 2, &t, 1), -EINVAL);
	s2[1].slot_pfn = 8;
	assert_int_equal(pgt__ofl_map_init(&m, s2, 2, &t, 1), 0);
	pgt__ofl_map_fini(&m);
	/* outside the target, misaligned, empty, wrapping, no such target */
	a.off = 60 << 12;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), -EINVAL);
	a.off = 100;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), -EINVAL);
	a.off = 0;
	a.npages = 0;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), -EINVAL);
	a.npages = 8;
	a.pfn = (1ULL << 52) - 4;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), -EINVAL);
	a.pfn = 10;
	a.target = 1;
	assert_int_equal(pgt__ofl_map_init(&m, &a, 1, &t, 1), -EINVAL);
}

static void rec(struct world *w, struct pgt_ofl_stats *st, uint32_t flags, uint32_t slot,
		uint64_t off)
{
	struct pgt_offload_rec r = { flags, slot, off };

	pgt__ofl_ingest(&w->m, &r, 1, st);
}

static void test_records(void **state)
{
	struct pgt_ofl_stats st = { 0 };
	struct world w;

	(void)state;
	two_regions(&w);
	/* slot mode: one page, and a run across the region boundary */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(1, 1, false), 7, 5);
	model_slot(&w, 7, 5);
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(1, 10, false), 7, 60);
	for (uint64_t p = 60; p < 70; p++)
		model_slot(&w, 7, p);
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(2, 3, false), 3, 0);
	for (uint64_t p = 0; p < 3; p++)
		model_slot(&w, 3, p);
	assert_int_equal(st.rejected, 0);
	/* address mode */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(9, 2, true), 0, PFN(2ULL << 30) + 14);
	model_pfn(&w, PFN(2ULL << 30) + 14);
	model_pfn(&w, PFN(2ULL << 30) + 15);
	assert_int_equal(st.rejected, 0);
	check_world(&w);
	/* a run running off its slot: counted once, the mapped part kept */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 4, false), 3, 14);
	model_slot(&w, 3, 14);
	model_slot(&w, 3, 15);
	assert_int_equal(st.rejected, 1);
	/* an address run from a hole into a segment: the segment part kept */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 3, true), 0, PFN(2ULL << 30) - 2);
	model_pfn(&w, PFN(2ULL << 30));
	assert_int_equal(st.rejected, 2);
	check_world(&w);
	/* wholly malformed: nothing may change */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, false), 99, 0);             /* no such slot */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, false), 7, 64 + 512);       /* past the slot */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, true), 5, PFN(2ULL << 30)); /* ADDR with a slot */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, true) | (1u << 5), 0, PFN(2ULL << 30));
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, true) & ~PGT_OFFLOAD_REC_DIRTY, 0, 0);
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 2, true), 0, (1ULL << 52) - 1); /* wraps */
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 1, true), 0, UINT64_MAX);
	rec(&w, &st, PGT_OFFLOAD_REC_FLAGS(0, 65536, false), 7, UINT64_MAX - 10);
	assert_int_equal(st.rejected, 10);
	assert_int_equal(st.records, 14);
	check_world(&w);
	/* the whole map */
	pgt__ofl_mark_all(&w.m, &st);
	model_all(&w);
	assert_true(st.all);
	check_world(&w);
	clear_world(&w);
	world_fini(&w);
}

/* Random records against the model, many laps of a small native ring. */
static void test_ring_index(void **state)
{
	size_t bytes = pgt__ofl_ring_bytes(16);
	void *mem = aligned_alloc(64, bytes);
	struct pgt_offload_rec in[40];
	struct pgt_ofl_stats st = { 0 };
	struct pgt_ofl_ring ring;
	struct pgt_ofl_prod prod;
	uint64_t s = seed, total = 0;
	struct world w;

	(void)state;
	two_regions(&w);
	assert_int_equal(pgt__ofl_ring_create(&ring, mem, bytes, 16), 0);
	pgt__ofl_prod_init(&prod, ring.ctl, 16);
	for (int round = 0; round < 400; round++) {
		uint32_t n = (uint32_t)(pgt_test_rand(&s) % 17), k; /* never more than fits */

		for (uint32_t i = 0; i < n; i++) {
			bool slot = pgt_test_rand(&s) & 1;
			uint32_t run = 1 + (uint32_t)(pgt_test_rand(&s) % 4);

			if (slot) {
				uint64_t off = pgt_test_rand(&s) % (64 + 512);

				in[i] = (struct pgt_offload_rec){ PGT_OFFLOAD_REC_FLAGS(i, run, false), 7, off };
				for (uint32_t j = 0; j < run; j++)
					model_slot(&w, 7, off + j);
			} else {
				uint64_t pfn = PFN(2ULL << 30) + pgt_test_rand(&s) % 16;

				in[i] = (struct pgt_offload_rec){ PGT_OFFLOAD_REC_FLAGS(i, run, true), 0, pfn };
				for (uint32_t j = 0; j < run; j++)
					model_pfn(&w, pfn + j);
			}
		}
		k = pgt__ofl_produce(&prod, in, n);
		assert_int_equal(k, n);
		total += n;
		assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), n);
		assert_int_equal(ring.ctl->cons, ring.ctl->prod);
		assert_false(st.all);
		if (round % 7 == 0) {
			check_world(&w);
			clear_world(&w);
		}
	}
	assert_int_equal(st.records, total);
	assert_int_equal(st.torn + st.bad_index + st.lost, 0);
	check_world(&w);
	world_fini(&w);
	free(mem);
}

static void test_ring_overflow_torn_index(void **state)
{
	size_t bytes = pgt__ofl_ring_bytes(16);
	void *mem = aligned_alloc(64, bytes);
	struct pgt_offload_rec in[20];
	struct pgt_ofl_stats st = { 0 };
	struct pgt_ofl_ring ring;
	struct pgt_ofl_prod prod;
	struct world w;

	(void)state;
	two_regions(&w);
	for (int i = 0; i < 20; i++)
		in[i] = (struct pgt_offload_rec){ PGT_OFFLOAD_REC_FLAGS(0, 1, false), 3, (uint64_t)i % 16 };
	assert_int_equal(pgt__ofl_ring_create(&ring, mem, bytes, 16), 0);
	pgt__ofl_prod_init(&prod, ring.ctl, 16);

	/* overflow: 16 fit, 4 dropped, lost_seq says so, all is dirty */
	assert_int_equal(pgt__ofl_produce(&prod, in, 20), 16);
	assert_int_equal(ring.ctl->lost_seq, 1);
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 16);
	assert_int_equal(st.lost, 1);
	assert_true(st.all);
	model_all(&w);
	check_world(&w);
	clear_world(&w);
	/* seen once only */
	memset(&st, 0, sizeof(st));
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 0);
	assert_false(st.all);

	/* torn: the index says 2 more, the slots hold last lap's records */
	__atomic_store_n(&ring.ctl->prod, ring.ctl->prod + 2, __ATOMIC_RELEASE);
	prod.prod += 2;
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 2);
	assert_int_equal(st.torn, 2);
	assert_true(st.all);
	model_all(&w);
	check_world(&w);
	clear_world(&w);

	/* an index a ring and more ahead: resynchronise, all dirty */
	memset(&st, 0, sizeof(st));
	__atomic_store_n(&ring.ctl->prod, ring.ctl->prod + 16 + 5, __ATOMIC_RELEASE);
	prod.prod += 16 + 5;
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 0);
	assert_int_equal(st.bad_index, 1);
	assert_true(st.all);
	assert_int_equal(ring.ctl->cons, ring.ctl->prod);
	model_all(&w);
	check_world(&w);
	clear_world(&w);
	/* and then it works again */
	memset(&st, 0, sizeof(st));
	assert_int_equal(pgt__ofl_produce(&prod, in, 3), 3);
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 3);
	assert_false(st.all);
	for (int i = 0; i < 3; i++)
		model_slot(&w, 3, (uint64_t)i);
	check_world(&w);
	/* a consumer index from nowhere (device wrote it): the producer
	 * treats the ring as full rather than overwrite unread records */
	__atomic_store_n(&ring.ctl->cons, ring.ctl->prod + 7, __ATOMIC_RELEASE);
	assert_int_equal(pgt__ofl_produce(&prod, in, 1), 0);
	assert_int_equal(ring.ctl->lost_seq, 2);

	/* headers that are not ours */
	assert_int_equal(pgt__ofl_ring_index(&ring, mem, 32), -EINVAL);
	((struct pgt_offload_ring_ctl *)mem)->magic ^= 1;
	assert_int_equal(pgt__ofl_ring_index(&ring, mem, 16), -EINVAL);
	((struct pgt_offload_ring_ctl *)mem)->magic ^= 1;
	assert_int_equal(pgt__ofl_ring_index(&ring, mem, 16), 0);
	assert_int_equal(pgt__ofl_ring_create(&ring, mem, bytes, 24), -EINVAL);
	assert_int_equal(pgt__ofl_ring_create(&ring, mem, bytes - 1, 16), -EINVAL);
	world_fini(&w);
	free(mem);
}

static void test_ring_kvm(void **state)
{
	struct pgt_offload_rec recs[8];
	struct pgt_ofl_stats st = { 0 };
	struct pgt_ofl_ring ring;
	struct world w;

	(void)state;
	two_regions(&w);
	memset(recs, 0, sizeof(recs));
	assert_int_equal(pgt__ofl_ring_kvm(&ring, recs, 6), -EINVAL);
	assert_int_equal(pgt__ofl_ring_kvm(&ring, recs, 8), 0);
	/* three dirty entries as KVM writes them: flags 1, slot, gfn offset */
	for (int i = 0; i < 3; i++)
		recs[i] = (struct pgt_offload_rec){ 1, 7, (uint64_t)(10 + i) };
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(recs[i].flags, PGT_OFFLOAD_REC_RESET);
		model_slot(&w, 7, (uint64_t)(10 + i));
	}
	check_world(&w);
	/* harvested but not yet reset by the producer: not taken again */
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 0);
	/* the producer reset them and went on, around the ring */
	for (int i = 0; i < 8; i++)
		recs[i] = (struct pgt_offload_rec){ 1, 3, (uint64_t)i };
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 8); /* one lap at most */
	for (int i = 0; i < 8; i++)
		model_slot(&w, 3, (uint64_t)i);
	check_world(&w);
	assert_int_equal(ring.cons, 11);
	/* a record with reserved bits: published, not understood: all dirty */
	memset(&st, 0, sizeof(st));
	recs[3] = (struct pgt_offload_rec){ 1 | (1u << 6), 3, 1 };
	assert_int_equal(pgt__ofl_ring_consume(&ring, &w.m, &st), 1);
	assert_int_equal(st.torn, 1);
	model_all(&w);
	check_world(&w);
	world_fini(&w);
}

/* Bitmaps at every page size against the model, segments at odd places. */
static void test_bitmap(void **state)
{
	uint64_t s = seed ^ 0xb17;

	(void)state;
	for (int round = 0; round < 300; round++) {
		struct pgt_ofl_stats st = { 0 };
		unsigned ps = 12 + (unsigned)(pgt_test_rand(&s) % 10); /* 4K .. 2M */
		uint64_t nbits = 1 + pgt_test_rand(&s) % 300, want_rej = 0, got;
		uint64_t iova = ((pgt_test_rand(&s) % 64) << 21) & ~((1ULL << ps) - 1);
		uint64_t *bits = calloc((nbits + 63) / 64, 8);
		struct world w;

		memset(&w, 0, sizeof(w));
		world_target(&w, 4096, 12);
		world_target(&w, 64, 21);
		/* three segments somewhere in [0, 128 MiB) of IOVA */
		world_seg(&w, (pgt_test_rand(&s) % 1024) << 12, (1 + pgt_test_rand(&s) % 700) << 12, 1, 0,
			  0, (pgt_test_rand(&s) % 1024) << 12);
		world_seg(&w, (40ULL << 20) + ((pgt_test_rand(&s) % 1024) << 12),
			  (1 + pgt_test_rand(&s) % 2048) << 12, 2, 0, 1, (pgt_test_rand(&s) % 8) << 21);
		world_seg(&w, (80ULL << 20) + ((pgt_test_rand(&s) % 1024) << 12),
			  (1 + pgt_test_rand(&s) % 1024) << 12, 3, 0, 0, 2048ULL << 12);
		world_init(&w);
		for (uint64_t b = 0; b < nbits; b++) {
			bool hit = false;

			if (pgt_test_rand(&s) % 3)
				continue;
			bits[b / 64] |= 1ULL << (b % 64);
			for (uint64_t p = 0; p < 1ULL << (ps - 12); p++)
				hit |= model_pfn(&w, PFN(iova) + (b << (ps - 12)) + p);
			want_rej += !hit;
		}
		/* garbage past nbits must be ignored */
		if (nbits % 64)
			bits[nbits / 64] |= ~0ULL << (nbits % 64);
		got = pgt__ofl_bitmap(&w.m, iova, 1ULL << ps, bits, nbits, &st);
		if (nbits % 64)
			bits[nbits / 64] &= ~(~0ULL << (nbits % 64));
		assert_int_equal(got, pgt_hal_popcount(bits, (nbits + 63) / 64));
		assert_int_equal(st.rejected, want_rej);
		check_world(&w);
		world_fini(&w);
		free(bits);
	}
}

static void test_bitmap_rejects(void **state)
{
	struct pgt_ofl_stats st = { 0 };
	uint64_t bits[2] = { ~0ULL, ~0ULL };
	struct world w;

	(void)state;
	two_regions(&w);
	/* bad page sizes and alignment: nothing read */
	assert_int_equal(pgt__ofl_bitmap(&w.m, 0, 2048, bits, 64, &st), 0);
	assert_int_equal(pgt__ofl_bitmap(&w.m, 0, 12288, bits, 64, &st), 0);
	assert_int_equal(pgt__ofl_bitmap(&w.m, 4096, 8192, bits, 64, &st), 0);
	/* a bitmap running past the end of 64-bit IOVA space */
	assert_int_equal(pgt__ofl_bitmap(&w.m, UINT64_MAX & ~4095ULL, 4096, bits, 64, &st), 0);
	assert_int_equal(st.rejected, 1);
	check_world(&w);
	world_fini(&w);
}

static void test_hotlist(void **state)
{
	struct pgt_ofl_stats st = { 0 };
	uint32_t hot[1024] = { 0 };
	uint64_t e[6];
	struct world w;

	(void)state;
	memset(&w, 0, sizeof(w));
	world_target(&w, 1024, 12);
	w.t[0].hot = hot;
	/* device addresses [1 MiB, 3 MiB) are pages 0..511 of the region */
	world_seg(&w, 1ULL << 20, 2ULL << 20, 0, 0, 0, 0);
	world_init(&w);
	/* 16-bit counts; 64 KiB units: unit 16 starts at 1 MiB */
	e[0] = (16ULL << 16) | 7;
	e[1] = (17ULL << 16) | 0xffff;
	e[2] = (15ULL << 16) | 3;       /* below the map */
	e[3] = (48ULL << 16) | 3;       /* above it */
	e[4] = (~0ULL << 16) | 1;       /* an address past 64 bits */
	e[5] = (16ULL << 16) | 2;       /* the same unit again */
	assert_int_equal(pgt__ofl_hotlist(&w.m, e, 6, 16, 64 << 10, &st), 6);
	assert_int_equal(st.hot_units, 3);
	assert_int_equal(st.hot_count, 7 + 0xffff + 2);
	assert_int_equal(st.rejected, 3);
	for (uint64_t p = 0; p < 16; p++) {
		model_pfn(&w, PFN(1ULL << 20) + p);
		assert_int_equal(hot[p], 9);
		model_pfn(&w, PFN(1ULL << 20) + 16 + p);
		assert_int_equal(hot[16 + p], 0xffff);
	}
	assert_int_equal(hot[32], 0);
	check_world(&w);
	/* units smaller than a page map to the page; bad geometry reads nothing */
	e[0] = ((1ULL << 20) / 256 + 3) << 8 | 1;
	assert_int_equal(pgt__ofl_hotlist(&w.m, e, 1, 8, 256, &st), 1);
	assert_int_equal(hot[0], 10);
	assert_int_equal(pgt__ofl_hotlist(&w.m, e, 1, 0, 4096, &st), 0);
	assert_int_equal(pgt__ofl_hotlist(&w.m, e, 1, 8, 3000, &st), 0);
	world_fini(&w);
}

static void test_pml_pack(void **state)
{
	uint64_t g[10] = { 0x5000, 0x6000, 0x6abc, 0x7000, 0x1000, 0x1000, 0x2000, 0x9000, 0x8000, 0x9fff };
	struct pgt_offload_rec out[10];

	(void)state;
	memset(out, 0xa5, sizeof(out));
	/* pages 5 6 6 7 | 1 1 2 | 9 | 8 9: four runs */
	assert_int_equal(pgt__ofl_pml_pack(g, 10, 4, out, 3), -ENOBUFS);
	assert_int_equal(out[0].slot, 0xa5a5a5a5); /* untouched */
	assert_int_equal(pgt__ofl_pml_pack(g, 10, 4, out, 4), 4);
	assert_int_equal(out[0].offset, 5);
	assert_int_equal(out[0].flags, PGT_OFFLOAD_REC_FLAGS(4, 3, true));
	assert_int_equal(out[1].offset, 1);
	assert_int_equal(out[1].flags, PGT_OFFLOAD_REC_FLAGS(4, 2, true));
	assert_int_equal(out[2].offset, 9);
	assert_int_equal(out[2].flags, PGT_OFFLOAD_REC_FLAGS(4, 1, true));
	assert_int_equal(out[3].offset, 8);
	assert_int_equal(out[3].flags, PGT_OFFLOAD_REC_FLAGS(4, 2, true));
	assert_int_equal(out[3].slot, 0);
	assert_int_equal(pgt__ofl_pml_pack(g, 0, 4, out, 0), 0);
	assert_int_equal(pgt__ofl_pml_pack(g, 10, 256, out, 10), -EINVAL);
	/* runs stop at the longest a record can carry */
	{
		size_t n = PGT_OFFLOAD_REC_RUN_MAX + 5;
		uint64_t *big = malloc(n * 8);

		for (size_t i = 0; i < n; i++)
			big[i] = (uint64_t)i << 12;
		assert_int_equal(pgt__ofl_pml_pack(big, n, 0, out, 2), 2);
		assert_int_equal(out[0].flags >> PGT_OFFLOAD_REC_RUN_SHIFT, 0xffff);
		assert_int_equal(out[1].offset, PGT_OFFLOAD_REC_RUN_MAX);
		free(big);
	}
}

static void test_or_words(void **state)
{
	uint64_t s = seed ^ 0x0a;
	struct pgt_bitmap b;
	const char *why = NULL;

	(void)state;
	for (int round = 0; round < 50; round++) {
		uint64_t nbits = 1 + pgt_test_rand(&s) % 20000, set = 0, w0, nw;
		uint64_t *src, *want;

		assert_int_equal(pgt__bitmap_init(&b, nbits), 0);
		want = calloc(b.nwords, 8);
		src = calloc(b.nwords + 1, 8);
		for (size_t i = 0; i < b.nwords; i++)
			if (pgt_test_rand(&s) % 4 == 0) {
				uint64_t v = pgt_test_rand(&s);

				want[i] = v;
				pgt__bitmap_set(&b, i * 64 + (v & 63) < nbits ? i * 64 + (v & 63) : 0);
			}
		for (size_t i = 0; i < b.nwords; i++) {
			uint64_t v = atomic_load(&b.words[i]);

			want[i] = v;
		}
		w0 = pgt_test_rand(&s) % b.nwords;
		nw = 1 + pgt_test_rand(&s) % (b.nwords - w0 + 1); /* may run past the end */
		for (size_t i = 0; i < nw; i++) {
			src[i] = pgt_test_rand(&s) % 3 ? 0 : pgt_test_rand(&s);
			if (w0 + i < b.nwords) {
				uint64_t v = src[i];

				if (w0 + i + 1 == b.nwords && nbits % 64)
					v &= ~0ULL >> (64 - nbits % 64);
				want[w0 + i] |= v;
				set += (uint64_t)__builtin_popcountll(v);
			}
		}
		/* the count is of the bits taken (past the end: ignored); the
		 * taking variant zeroes the words it covered, tail bits too */
		if (round % 2) {
			assert_int_equal(pgt__ofl_take_words(&b, w0, src, nw), set);
			for (size_t i = 0; i < nw && w0 + i < b.nwords; i++)
				assert_int_equal(src[i], 0);
		} else {
			assert_int_equal(pgt__ofl_or_words(&b, w0, src, nw), set);
		}
		assert_int_equal(pgt__bitmap_popcount(&b), pgt_hal_popcount(want, b.nwords));
		for (size_t i = 0; i < b.nwords; i++)
			assert_int_equal(atomic_load(&b.words[i]), want[i]);
		assert_true(pgt__bitmap_validate(&b, &why));
		assert_int_equal(pgt__bitmap_popcount(&b), pgt_hal_popcount(want, b.nwords));
		pgt__bitmap_fini(&b);
		free(want);
		free(src);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_rejects),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_ring_index),
		cmocka_unit_test(test_ring_overflow_torn_index),
		cmocka_unit_test(test_ring_kvm),
		cmocka_unit_test(test_bitmap),
		cmocka_unit_test(test_bitmap_rejects),
		cmocka_unit_test(test_hotlist),
		cmocka_unit_test(test_pml_pack),
		cmocka_unit_test(test_or_words),
	};

	seed = pgt_test_seed();
	return cmocka_run_group_tests_name("offload_ring", tests, NULL, NULL);
}
