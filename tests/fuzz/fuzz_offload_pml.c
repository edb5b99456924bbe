/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for PML packing (pgt_offload_pml_pack()): addresses from
 * the input become IOVA-addressed records whose pages are exactly the input
 * pages, each run within the record limit, never more records than
 * addresses; a buffer too small is refused without a byte written.
 *
 * Input: u8 capacity, then 8-byte addresses (their low bits scrambled).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/offload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz_offload_pml"
#include "tests/fuzz/fuzz_input.h"

#define MAXN 600

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint64_t g[MAXN], in_pages[MAXN], out_pages[MAXN * 4];
	static struct pgt_offload_rec out[MAXN + 1];
	size_t cap, n = 0, nin, nout = 0;
	int k;

	if (!size)
		return 0;
	cap = data[0];
	for (size_t i = 1; i + 8 <= size && n < MAXN; i += 8) {
		uint64_t v;

		memcpy(&v, data + i, 8);
		/* mostly near each other, so runs happen */
		g[n++] = (v & 0xfff) | ((v >> 12) % 4096) << 12 | (v >> 60) << 52;
	}
	memset(out, 0xee, sizeof(out));
	k = pgt__ofl_pml_pack(g, n, 3, out, cap);
	if (k == -ENOBUFS) {
		CHECK(cap < n);
		for (size_t i = 0; i < MAXN + 1; i++)
			CHECK(out[i].slot == 0xeeeeeeee);
		k = pgt__ofl_pml_pack(g, n, 3, out, n);
	}
	CHECK(k >= 0 && (size_t)k <= n);
	CHECK(out[k].slot == 0xeeeeeeee);
	for (int i = 0; i < k; i++) {
		uint32_t run = ((out[i].flags & PGT_OFFLOAD_REC_RUN_MASK) >> PGT_OFFLOAD_REC_RUN_SHIFT) + 1;

		CHECK(out[i].flags == PGT_OFFLOAD_REC_FLAGS(3, run, true));
		CHECK(out[i].slot == 0);
		for (uint32_t j = 0; j < run && nout < MAXN * 4; j++)
			out_pages[nout++] = out[i].offset + j;
	}
	for (size_t i = 0; i < n; i++)
		in_pages[i] = g[i] >> 12;
	nin = n;
	qsort(in_pages, nin, 8, cmp);
	qsort(out_pages, nout, 8, cmp);
	/* the same set of pages */
	{
		size_t a = 0, b = 0;

		while (a < nin || b < nout) {
			uint64_t x = a < nin ? in_pages[a] : UINT64_MAX, y = b < nout ? out_pages[b] : UINT64_MAX;

			CHECK(x == y);
			while (a < nin && in_pages[a] == x)
				a++;
			while (b < nout && out_pages[b] == y)
				b++;
		}
	}
	return 0;
}
