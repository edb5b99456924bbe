/* SPDX-License-Identifier: MIT */
/*
 * What the offload fuzz targets share: reading little-endian fields from
 * the input (missing bytes read as zero) and an invariant check that aborts
 * with the target's name, so the replay driver and libFuzzer see a crash.
 */
#ifndef PGT_FUZZ_INPUT_H
#define PGT_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                         \
	do {                                                                             \
		if (!(c)) {                                                              \
			fprintf(stderr, "%s: %s failed (line %d)\n", FUZZ_NAME, #c, __LINE__); \
			abort();                                                         \
		}                                                                        \
	} while (0)

struct in {
	const uint8_t *p;
	size_t left;
};

/* The next @n bytes (n <= 8) as a little-endian number. */
static inline uint64_t get(struct in *in, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++, in->left -= !!in->left)
		v |= (uint64_t)(in->left ? *in->p++ : 0) << (8 * i);
	return v;
}

#endif
