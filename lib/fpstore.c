/* SPDX-License-Identifier: MIT */
/* Fingerprint store for sub-page refinement (fpstore.h). */
#include "lib/fpstore.h"
#include "hal/hal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int pgt__fpstore_init(struct pgt_fpstore *s, int kind, uint64_t npages, uint64_t page_size)
{
	static const uint8_t zero[PGT_FP_PIECE];
	size_t per;
	void *m;

	memset(s, 0, sizeof(*s));
	if (!npages || page_size % (64u * PGT_FP_PIECE) ||
	    (kind != PGT_FP_CRC && kind != PGT_FP_SHADOW))
		return -EINVAL;
	s->kind = kind;
	s->npages = npages;
	s->pieces = (unsigned)(page_size / PGT_FP_PIECE);
	s->mask_words = s->pieces / 64;
	per = kind == PGT_FP_CRC ? s->pieces * sizeof(uint32_t) : (size_t)page_size;
	if (npages > SIZE_MAX / per)
		return -ENOMEM;
	s->map_bytes = (size_t)npages * per;
	/* untouched parts of the map cost nothing: populated as pages are refined */
	m = mmap(NULL, s->map_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	if (kind == PGT_FP_CRC)
		s->fp = m;
	else
		s->shadow = m;
	s->known = calloc((size_t)((npages + 63) / 64), sizeof(uint64_t));
	if (!s->known) {
		munmap(m, s->map_bytes);
		memset(s, 0, sizeof(*s));
		return -ENOMEM;
	}
	pgt_hal_crc32c_4k(zero, 1, &s->zero_crc);
	return 0;
}

void pgt__fpstore_fini(struct pgt_fpstore *s)
{
	if (s->fp || s->shadow)
		munmap(s->fp ? (void *)s->fp : (void *)s->shadow, s->map_bytes);
	free(s->known);
	memset(s, 0, sizeof(*s));
}

size_t pgt__fpstore_bytes(const struct pgt_fpstore *s)
{
	return s->map_bytes + (size_t)((s->npages + 63) / 64) * sizeof(uint64_t);
}

void pgt__fpstore_forget(struct pgt_fpstore *s)
{
	memset(s->known, 0, (size_t)((s->npages + 63) / 64) * sizeof(uint64_t));
}

static unsigned update_crc(struct pgt_fpstore *s, uint32_t *fp, const uint8_t *mem, unsigned first,
			   unsigned n, bool known, uint64_t *mask)
{
	uint32_t now[64];
	unsigned changed = 0;

	for (unsigned base = first; base < first + n; base += 64) {
		unsigned m = first + n - base < 64 ? first + n - base : 64;

		if (mem)
			pgt_hal_crc32c_4k(mem + (size_t)base * PGT_FP_PIECE, m, now);
		else
			for (unsigned i = 0; i < m; i++)
				now[i] = s->zero_crc;
		for (unsigned i = 0; i < m; i++) {
			unsigned k = base + i;

			if (!known || now[i] != fp[k]) {
				mask[k / 64] |= 1ull << (k % 64);
				changed++;
			}
			fp[k] = now[i];
		}
	}
	if (known)
		s->collisions_possible += n - changed;
	return changed;
}

static unsigned update_shadow(uint8_t *sh, const uint8_t *mem, unsigned first, unsigned n,
			      bool known, uint64_t *mask)
{
	unsigned changed = 0;

	for (unsigned k = first; k < first + n; k++) {
		uint8_t *d = sh + (size_t)k * PGT_FP_PIECE;
		const uint8_t *m = mem ? mem + (size_t)k * PGT_FP_PIECE : NULL;
		bool diff = !known || (m ? memcmp(d, m, PGT_FP_PIECE) != 0 :
				       !pgt_hal_is_zero(d, PGT_FP_PIECE));

		if (!diff)
			continue;
		mask[k / 64] |= 1ull << (k % 64);
		changed++;
		if (m)
			memcpy(d, m, PGT_FP_PIECE);
		else
			memset(d, 0, PGT_FP_PIECE);
	}
	return changed;
}

bool pgt__fpstore_begin(struct pgt_fpstore *s, uint64_t page)
{
	bool known = s->known[page / 64] & (1ull << (page % 64));

	s->known[page / 64] |= 1ull << (page % 64);
	return known;
}

unsigned pgt__fpstore_update_range(struct pgt_fpstore *s, uint64_t page, unsigned first,
				   unsigned n, const void *mem, bool known, uint64_t *mask)
{
	if (first > s->pieces || n > s->pieces - first)
		return 0;
	if (s->kind == PGT_FP_CRC)
		return update_crc(s, s->fp + (size_t)page * s->pieces, mem, first, n, known, mask);
	return update_shadow(s->shadow + (size_t)page * s->pieces * PGT_FP_PIECE, mem, first, n, known,
			     mask);
}

unsigned pgt__fpstore_update(struct pgt_fpstore *s, uint64_t page, const void *mem,
			     uint64_t *mask)
{
	bool known = pgt__fpstore_begin(s, page);

	memset(mask, 0, s->mask_words * sizeof(uint64_t));
	return pgt__fpstore_update_range(s, page, 0, s->pieces, mem, known, mask);
}

bool pgt__fpstore_settle(struct pgt_fpstore *s, uint64_t page, unsigned k, const void *data)
{
	size_t i = (size_t)page * s->pieces + k;
	uint32_t c;

	if (s->kind == PGT_FP_CRC) {
		pgt_hal_crc32c_4k(data, 1, &c);
		if (c == s->fp[i])
			return false;
		s->fp[i] = c;
		return true;
	}
	if (!memcmp(s->shadow + i * PGT_FP_PIECE, data, PGT_FP_PIECE))
		return false;
	memcpy(s->shadow + i * PGT_FP_PIECE, data, PGT_FP_PIECE);
	return true;
}

bool pgt__fpstore_copy(struct pgt_fpstore *s, uint64_t page, unsigned k, void *dst,
		       const void *src)
{
	size_t i = (size_t)page * s->pieces + k;
	uint32_t c;

	if (s->kind != PGT_FP_CRC || !src) {
		if (src)
			memcpy(dst, src, PGT_FP_PIECE);
		else
			memset(dst, 0, PGT_FP_PIECE);
		return pgt__fpstore_settle(s, page, k, dst);
	}
	c = pgt_hal_crc32c_4k_copy(dst, src);
	if (c == s->fp[i])
		return false;
	s->fp[i] = c;
	return true;
}
