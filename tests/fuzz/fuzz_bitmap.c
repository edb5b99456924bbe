/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the two-level bitmap: the input is an operation
 * stream applied to a small bitmap (up to three groups) and to a plain bool
 * array; any disagreement or failed validate() aborts.
 *
 * Input: two bytes of size, then ops: one opcode byte followed by its
 * arguments (16-bit little-endian positions and lengths, taken modulo what
 * fits). Missing bytes read as zero. Each input has a work budget so the
 * replay driver stays fast under sanitizers and qemu.
 */
#include "lib/bitmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BITS (2 * PGT_BM_GROUP_BITS + 200)
#define BUDGET 100000 /* bool-array steps per input */

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "fuzz_bitmap: %s failed (line %d)\n", #c, \
				__LINE__);                                         \
			abort();                                                   \
		}                                                                  \
	} while (0)

struct in {
	const uint8_t *p;
	size_t left;
};

static unsigned u8(struct in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static unsigned u16(struct in *in)
{
	unsigned lo = u8(in);

	return lo | u8(in) << 8;
}

struct model {
	uint64_t n, count;
	bool bit[MAX_BITS];
};

static void m_set(struct model *m, uint64_t i, bool v)
{
	m->count += (uint64_t)v - (uint64_t)m->bit[i];
	m->bit[i] = v;
}

static uint64_t m_word(const struct model *m, uint64_t w)
{
	uint64_t v = 0;

	for (uint64_t i = w * 64; i < m->n && i < w * 64 + 64; i++)
		v |= (uint64_t)m->bit[i] << (i % 64);
	return v;
}

/* Next maximal run at or after *pos; false when none. */
static bool m_next_run(const struct model *m, uint64_t *pos, uint64_t *first, uint64_t *n)
{
	uint64_t i = *pos, j;

	while (i < m->n && !m->bit[i])
		i++;
	if (i >= m->n)
		return false;
	for (j = i; j < m->n && m->bit[j]; j++)
		;
	*first = i;
	*n = j - i;
	*pos = j;
	return true;
}

static void check_words(const struct pgt_bitmap *b, const struct model *m, uint64_t from,
			uint64_t to)
{
	for (uint64_t w = from / 64; w <= to / 64 && w < b->nwords; w++)
		CHECK(atomic_load_explicit(&b->words[w], memory_order_relaxed) == m_word(m, w));
}

struct runcheck {
	const struct model *m;
	uint64_t pos;  /* model scan position */
	uint64_t seen; /* runs reported */
	uint64_t stop; /* stop after this many (0: never) */
	uint64_t bits;
	bool clear;    /* take: drop reported runs from the model */
	struct model *mm;
};

static int run_cb(void *arg, uint64_t first, uint64_t n)
{
	struct runcheck *c = arg;
	uint64_t f, k;

	CHECK(m_next_run(c->m, &c->pos, &f, &k));
	CHECK(f == first && k == n);
	c->bits += n;
	if (c->clear)
		for (uint64_t i = first; i < first + n; i++)
			m_set(c->mm, i, false);
	return ++c->seen == c->stop ? 7 : 0;
}

struct wordcheck {
	struct model *m;
	uint64_t next; /* words below this were reported or zero */
};

static void word_cb(void *arg, size_t w, uint64_t bits)
{
	struct wordcheck *c = arg;

	CHECK(w >= c->next && bits);
	for (uint64_t x = c->next; x < w; x++)
		CHECK(m_word(c->m, x) == 0);
	CHECK(m_word(c->m, w) == bits);
	for (uint64_t i = w * 64; i < w * 64 + 64 && i < c->m->n; i++)
		m_set(c->m, i, false);
	c->next = w + 1;
}

static struct model m, ms;

/* take_runs (@clear) or for_each_run: a copy of the model checks the runs
 * while the real one loses the taken ones. Returns the cost. */
static uint64_t op_runs(struct pgt_bitmap *b, uint64_t n, uint64_t p, bool clear)
{
	struct runcheck c = { .m = &ms, .stop = p % 4, .clear = clear, .mm = &m };

	ms = m;
	if (clear) {
		uint64_t got = pgt__bitmap_take_runs(b, run_cb, &c);

		CHECK(got == c.bits);
	} else {
		int rc = pgt__bitmap_for_each_run(b, run_cb, &c);

		CHECK(rc == (c.stop && c.seen == c.stop ? 7 : 0));
	}
	if (!c.stop || c.seen < c.stop) {
		uint64_t f, k;

		CHECK(!m_next_run(&ms, &c.pos, &f, &k));
	}
	return 2 * n;
}

/* OR of a bitmap of up to four random ranges. */
static uint64_t op_or(struct pgt_bitmap *b, struct in *in, uint64_t n)
{
	unsigned k = u8(in) % 5;
	struct pgt_bitmap src;

	if (pgt__bitmap_init(&src, n))
		abort();
	memset(&ms, 0, sizeof(ms));
	ms.n = n;
	for (unsigned j = 0; j < k; j++) {
		uint64_t q = u16(in) % n, l = 1 + u16(in) % (n - q);

		pgt__bitmap_set_range(&src, q, l);
		for (uint64_t i = q; i < q + l; i++)
			m_set(&ms, i, true);
	}
	CHECK(pgt__bitmap_or(b, &src) == 0);
	for (uint64_t i = 0; i < n; i++)
		if (ms.bit[i])
			m_set(&m, i, true);
	CHECK(pgt__bitmap_popcount(&src) == ms.count);
	pgt__bitmap_fini(&src);
	return 3 * n;
}

/* KVM-layout sources shorter and longer than the bitmap, xorshift-filled,
 * with garbage past their end. */
static uint64_t op_or_kvm(struct pgt_bitmap *b, struct in *in, uint64_t n)
{
	uint64_t kb = 1 + u16(in) % (n + 130);
	size_t kw = (size_t)((kb + 63) / 64);
	uint64_t x = u16(in) | 1, thr = u8(in), want = 0;
	unsigned long *v = calloc(kw ? kw : 1, sizeof(*v));

	CHECK(v);
	for (uint64_t i = 0; i < kb; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if ((x & 255) >= thr)
			continue;
		v[i / 64] |= 1UL << (i % 64);
		if (i < n) {
			m_set(&m, i, true);
			want++;
		}
	}
	if (kb % 64)
		v[kw - 1] |= ~0UL << (kb % 64);
	CHECK(pgt__bitmap_or_kvm(b, v, kb) == want);
	free(v);
	return 2 * kb;
}

static uint64_t op_export(struct pgt_bitmap *b, uint64_t n)
{
	size_t nw = b->nwords;
	unsigned long *out = malloc(nw * sizeof(*out));

	CHECK(out);
	CHECK(pgt__bitmap_export_kvm(b, out, nw - 1) == -ENOBUFS);
	CHECK(pgt__bitmap_export_kvm(b, out, nw) == (int64_t)m.count);
	for (size_t w = 0; w < nw; w++)
		CHECK(out[w] == m_word(&m, w));
	free(out);
	return n;
}

/* Set, clear, test and ranges of them. Returns the cost beyond the base. */
static uint64_t op_bits(struct pgt_bitmap *b, struct in *in, unsigned op, uint64_t n, uint64_t p,
			uint64_t *len)
{
	switch (op) {
	case 0:
		pgt__bitmap_set(b, p);
		m_set(&m, p, true);
		return 0;
	case 1:
		pgt__bitmap_clear(b, p);
		m_set(&m, p, false);
		return 0;
	case 2:
		CHECK(pgt__bitmap_test_and_set(b, p) == m.bit[p]);
		m_set(&m, p, true);
		return 0;
	case 3:
		CHECK(pgt__bitmap_test(b, p) == m.bit[p]);
		return 0;
	default: /* 4, 5 */
		*len = 1 + u16(in) % (n - p);
		if (op == 4)
			pgt__bitmap_set_range(b, p, *len);
		else
			pgt__bitmap_clear_range(b, p, *len);
		for (uint64_t i = p; i < p + *len; i++)
			m_set(&m, i, op == 4);
		return *len;
	}
}

/* One operation on (@b, the model). Returns its cost beyond the base. */
static uint64_t one_op(struct pgt_bitmap *b, struct in *in, unsigned op, uint64_t n, uint64_t p,
		       uint64_t *len)
{
	switch (op) {
	case 6: {
		struct wordcheck c = { &m, 0 };
		uint64_t want = m.count;

		CHECK(pgt__bitmap_take(b, word_cb, &c) == want);
		CHECK(m.count == 0);
		return n;
	}
	case 7:
	case 8:
		return op_runs(b, n, p, op == 7);
	case 9: {
		uint64_t pos = 0, f, k, runs = 0;

		while (m_next_run(&m, &pos, &f, &k))
			runs++;
		CHECK(pgt__bitmap_count_runs(b) == runs);
		return n;
	}
	case 10:
		CHECK(pgt__bitmap_popcount(b) == m.count);
		CHECK(pgt__bitmap_empty(b) == !m.count);
		return 0;
	case 11:
		return op_or(b, in, n);
	case 12:
		return op_or_kvm(b, in, n);
	case 13:
		return op_export(b, n);
	case 14:
		pgt__bitmap_zero(b);
		memset(m.bit, 0, n);
		m.count = 0;
		return 0;
	default:
		return op_bits(b, in, op, n, p, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct pgt_bitmap b;
	uint64_t n, budget = BUDGET;
	const char *why = NULL;

	n = 1 + u16(&in) % MAX_BITS;
	if (pgt__bitmap_init(&b, n))
		abort();
	memset(&m, 0, sizeof(m));
	m.n = n;
	while (in.left && budget > n / 64 + 64) {
		unsigned op = u8(&in) % 15;
		uint64_t p = u16(&in) % n, len = 0, cost = n / 64 + 8;

		cost += one_op(&b, &in, op, n, p, &len);
		CHECK(pgt__bitmap_validate(&b, &why));
		CHECK(pgt__bitmap_popcount(&b) == m.count);
		check_words(&b, &m, p ? p - 1 : 0, p + len);
		budget -= cost < budget ? cost : budget;
	}
	check_words(&b, &m, 0, n - 1);
	pgt__bitmap_fini(&b);
	return 0;
}
