/* SPDX-License-Identifier: MIT */
/*
 * CXL hotness monitoring unit (CHMU) register interface, CXL 3.2 §8.2.8.x,
 * as the Linux RFC driver (cxl/hmu) and QEMU's emulation lay it out. Shared
 * by the backend (chmu.c) and its model (model.c). Not installed.
 *
 * Offsets are from the start of the CHMU register block; instance i begins
 * at PGT_CHMU_INST0 + i * instance length (COMMON_CAP2). Field encodings the
 * drafts leave open are read here as: unit sizes supported, bit n = 2^(n+8)
 * bytes; unit size in CFG2 in bytes; epoch lengths as value[15:4] x
 * scale[3:0] (1: 100 us, 2: 1 ms, 3: 10 ms, 4: 100 ms, 5: 1 s).
 */
#ifndef PGT_HAL_CHMU_H
#define PGT_HAL_CHMU_H

#include <stdint.h>

#define PGT_CHMU_COMMON_CAP1 0x00 /* [3:0] version, [15:8] instances */
#define PGT_CHMU_COMMON_CAP2 0x08 /* [15:0] instance length */
#define PGT_CHMU_INST0 0x10

/* per instance */
#define PGT_CHMU_CAP1 0x00      /* [4] overflow int, [15:8] M2S kinds tracked,
                                 * [31:16] max epoch, [47:32] min epoch,
                                 * [63:48] hot-list entries */
#define PGT_CHMU_CAP2 0x08      /* [31:0] unit sizes, [63:48] flags */
#define PGT_CHMU_CAP3 0x10      /* range bitmap offset */
#define PGT_CHMU_CAP4 0x18      /* hot-list offset */
#define PGT_CHMU_CFG1 0x40      /* [7:0] M2S kinds, [15:8] flags,
                                 * [31:16] control, [63:32] threshold */
#define PGT_CHMU_CFG2 0x48      /* [31:0] unit size, [47:40] mode, [63:48] epoch */
#define PGT_CHMU_CFG3 0x50
#define PGT_CHMU_STAT 0x60      /* [31:16] op in progress, [39:32] counter
                                 * width, [47:40] overflow status (W1C) */
#define PGT_CHMU_HEADTAIL 0x68  /* [15:0] head (host writes), [31:16] tail */

#define PGT_CHMU_CTL_ENABLE (1u << 0)
#define PGT_CHMU_CTL_RESET (1u << 1)
#define PGT_CHMU_M2S_ALL (1u << 5)
#define PGT_CHMU_STAT_OVERFLOW 1u /* in the overflow status byte */

static inline uint64_t pgt_chmu_field(uint64_t v, unsigned lo, unsigned hi)
{
	return (v >> lo) & (~0ULL >> (63 - (hi - lo)));
}

/* Epoch length encoding -> microseconds (0: invalid). */
static inline uint64_t pgt_chmu_epoch_us(uint64_t enc)
{
	static const uint64_t scale_us[] = { 0, 100, 1000, 10000, 100000, 1000000 };
	unsigned s = (unsigned)(enc & 0xf);

	return s < 6 ? (enc >> 4) * scale_us[s] : 0;
}

/* Microseconds -> the finest scale whose value fits 12 bits (at least 1). */
static inline uint64_t pgt_chmu_epoch_enc(uint64_t us)
{
	static const uint64_t scale_us[] = { 0, 100, 1000, 10000, 100000, 1000000 };

	for (unsigned s = 1; s < 6; s++)
		if (us / scale_us[s] <= 4095)
			return ((us / scale_us[s] ? us / scale_us[s] : 1) << 4) | s;
	return (4095ULL << 4) | 5;
}

#endif /* PGT_HAL_CHMU_H */
