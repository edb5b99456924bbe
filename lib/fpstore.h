/* SPDX-License-Identifier: MIT */
/*
 * Per-region fingerprint store for sub-page refinement: which 4 KiB pieces
 * of a large page (2 MiB) changed since the page was last looked at.
 *
 * Two kinds:
 *  - PGT_FP_CRC: one CRC32C (hal/crc.c) per 4 KiB piece, 512 x 4 B = 2 KiB
 *    per 2 MiB page (0.098 % of the memory) plus one "known" bit per page.
 *    One array for the whole region, mapped MAP_NORESERVE at init: the
 *    kernel populates it as pages are first refined, so resident metadata
 *    follows the refined working set and never exceeds the bound. A changed
 *    piece is missed only on a CRC collision (2^-32 per changed piece).
 *  - PGT_FP_SHADOW: a full copy of the memory (100 %), compared byte for
 *    byte: no collision, for users who need certainty.
 *
 * Not thread-safe: the caller serialises (the engine's harvest_lock).
 */
#ifndef PGT_FPSTORE_H
#define PGT_FPSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGT_FP_PIECE 4096u

enum pgt_fp_kind {
	PGT_FP_CRC = 1,
	PGT_FP_SHADOW = 2,
};

struct pgt_fpstore {
	int kind;
	uint64_t npages;
	unsigned pieces;        /* per page: page_size / 4096, a multiple of 64 */
	size_t mask_words;      /* pieces / 64 */
	uint32_t *fp;           /* CRC: npages * pieces */
	uint8_t *shadow;        /* SHADOW: npages * pieces * 4096 */
	size_t map_bytes;
	uint64_t *known;        /* page has a stored state */
	uint32_t zero_crc;      /* CRC32C of a zero piece */
	uint64_t collisions_possible; /* pieces compared equal by CRC, total */
};

/* 0, -EINVAL (page size not a multiple of 256 KiB, kind), -ENOMEM. */
int pgt__fpstore_init(struct pgt_fpstore *s, int kind, uint64_t npages, uint64_t page_size);
void pgt__fpstore_fini(struct pgt_fpstore *s);
/* Bytes the store may hold when every page has been refined (the bound). */
size_t pgt__fpstore_bytes(const struct pgt_fpstore *s);

/*
 * Compare the page @page (its memory at @mem, or NULL when it is not
 * resident and reads as zero) with its stored state, store the new state,
 * and write to @mask (s->mask_words words) one bit per piece that changed.
 * A page with no stored state reports every piece. Returns the number of
 * changed pieces.
 */
unsigned pgt__fpstore_update(struct pgt_fpstore *s, uint64_t page, const void *mem,
			     uint64_t *mask);

/*
 * The same in parts, so that a caller can use each part while its memory is
 * in cache: begin() says whether @page has a stored state (and records that
 * it will have one); update_range() compares and stores pieces [@first,
 * @first + @n) of the page at @mem (NULL: zero), setting their bits in the
 * page's @mask (other bits untouched), every piece changed if !@known.
 */
bool pgt__fpstore_begin(struct pgt_fpstore *s, uint64_t page);
unsigned pgt__fpstore_update_range(struct pgt_fpstore *s, uint64_t page, unsigned first,
				   unsigned n, const void *mem, bool known, uint64_t *mask);

/*
 * Store piece @k of page @page as the bytes at @data (what a consumer was
 * given, which may differ from what update() saw if the guest wrote in
 * between). Returns true when that differs from the stored state.
 */
bool pgt__fpstore_settle(struct pgt_fpstore *s, uint64_t page, unsigned k, const void *data);

/*
 * Copy piece @k of page @page from @src (NULL: not resident, reads as zero)
 * to the consumer's @dst and store the state of the copy: settle() of what
 * was copied, in one pass for CRC stores (pgt_hal_crc32c_4k_copy).
 * Returns true when the copy differs from the stored state.
 */
bool pgt__fpstore_copy(struct pgt_fpstore *s, uint64_t page, unsigned k, void *dst,
		       const void *src);

/* Forget the stored state of every page (next update reports them whole). */
void pgt__fpstore_forget(struct pgt_fpstore *s);

#endif /* PGT_FPSTORE_H */
