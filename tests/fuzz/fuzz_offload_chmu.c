/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the CHMU backend and the hot-list parser: the CXL
 * register block (capabilities, hot-list offset and size, counter width,
 * head and tail, the entries) comes from the input, as from a device that
 * may be broken or hostile. Whatever it says: every register access stays
 * inside the block the caller mapped (the seam below aborts otherwise),
 * hot pages land only on mapped pages, and the hot counts stay inside the
 * target.
 *
 * Input: u8 instance, u8 unit-size shift, u32 threshold, then the register
 * block (1 KiB), then per harvest (up to 3) a u64 head/tail word and 8
 * entries written at the hot list's offset.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/offload/chmu.h"
#include "hal/offload/offload.h"
#include "lib/offload.h"

#define FUZZ_NAME "fuzz_offload_chmu"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BLOCK 1024

static uint8_t *block;

static uint64_t rd(void *ctx, const volatile void *r)
{
	uint64_t off = (uint64_t)((const volatile uint8_t *)r - block), v;

	(void)ctx;
	CHECK(off <= BLOCK - 8 && !(off & 7));
	memcpy(&v, block + off, 8);
	return v;
}

static void wr(void *ctx, volatile void *r, uint64_t v)
{
	uint64_t off = (uint64_t)((volatile uint8_t *)r - block);

	(void)ctx;
	CHECK(off <= BLOCK - 8 && !(off & 7));
	memcpy(block + off, &v, 8);
}

static int ex(void *ctx, const char *path)
{
	(void)ctx, (void)path;
	return 0;
}

static const struct pgt_ofl_io io = { .rd64 = rd, .wr64 = wr, .exists = ex };

static struct pgt_ofl_map map;
static struct pgt_ofl_stats st;

static void hot(void *arg, const uint64_t *e, size_t n, unsigned cb, uint64_t unit)
{
	(void)arg;
	CHECK(cb >= 1 && cb <= 63);
	pgt__ofl_hotlist(&map, e, n, cb, unit, &st);
}

static void bitmap(void *arg, uint64_t iova, uint64_t ps, const uint64_t *b, uint64_t n)
{
	(void)arg, (void)iova, (void)ps, (void)b, (void)n;
	CHECK(0); /* a hot-list device never hands over a bitmap */
}

static void lost(void *arg, int err)
{
	(void)arg, (void)err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct pgt_offload_chmu_config cfg = { .size = sizeof(cfg) };
	const struct pgt_ofl_sink sink = { .bitmap = bitmap, .hot = hot, .lost = lost };
	struct pgt_ofl_seg seg = { .pfn = 0, .npages = 256, .off = 0, .target = 0 };
	struct pgt_ofl_target t = { .npages = 256, .shift = 12 };
	struct pgt_ofl_win win = { .iova = 0, .len = 1 << 20 };
	struct pgt_ofl_dev d = { .ops = &pgt__ofl_chmu, .io = &io };
	uint64_t ps = 0;
	static uint8_t blk[BLOCK] __attribute__((aligned(64)));

	block = blk;
	cfg.instance = (uint32_t)get(&in, 1) % 4;
	cfg.unit_size = 1ULL << (8 + get(&in, 1) % 16);
	cfg.threshold = (uint32_t)get(&in, 4);
	for (int i = 0; i < BLOCK; i++)
		blk[i] = (uint8_t)get(&in, 1);
	cfg.regs = blk;
	cfg.regs_len = BLOCK;
	memset(&st, 0, sizeof(st));
	t.bits = calloc(5, 8);
	t.hot = calloc(256, 4);
	CHECK(t.bits && t.hot);
	CHECK(pgt__ofl_map_init(&map, &seg, 1, &t, 1) == 0);
	if (!d.ops->open(&d, &cfg) && !d.ops->attach(&d, &win, 1) && !d.ops->start(&d, &ps)) {
		CHECK(ps == cfg.unit_size || !cfg.unit_size);
		for (int h = 0; h < 3; h++) {
			uint64_t ilen = pgt_chmu_field(rd(NULL, blk + PGT_CHMU_COMMON_CAP2), 0, 15);
			uint64_t base = PGT_CHMU_INST0 + cfg.instance * ilen;
			uint64_t ht = get(&in, 8);

			if (base + PGT_CHMU_HEADTAIL + 8 <= BLOCK)
				wr(NULL, blk + base + PGT_CHMU_HEADTAIL, ht);
			for (int e = 0; e < 8; e++) {
				uint64_t lo = rd(NULL, blk + PGT_CHMU_INST0 + cfg.instance * ilen + PGT_CHMU_CAP4);
				uint64_t off = base + lo + 8 * (uint64_t)e;
				uint64_t v = get(&in, 8);

				if (lo < BLOCK && off <= BLOCK - 8 && !(off & 7))
					wr(NULL, blk + off, v);
			}
			d.ops->harvest(&d, 0, 0, 0, &sink);
			CHECK(!(t.bits[4])); /* nothing past the target's 256 pages */
		}
	}
	if (d.priv)
		d.ops->close(&d);
	pgt__ofl_map_fini(&map);
	free(t.bits);
	free(t.hot);
	return 0;
}
