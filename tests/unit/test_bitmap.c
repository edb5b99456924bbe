/* SPDX-License-Identifier: MIT */
/*
 * Two-level bitmap: edge sizes, range operations at word/group/summary-word
 * edges, a differential test against a plain bool array, setters racing a
 * taker, validate() catching corruption, and bad input.
 */
#include "tests/common/testutil.h"
#include "lib/bitmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUMW_BITS ((uint64_t)PGT_BM_GROUP_BITS * 64) /* bits per summary word */

/* Context printed with every failure so a seed/op can be replayed. */
static char ctx[160];

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			char m_[256];                                          \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                 \
			fail_msg("%s: %s (%s)", ctx, m_, #cond);               \
		}                                                              \
	} while (0)

/* ---- shadow model ---- */

struct model {
	uint64_t n;
	bool *bit;
};

static void model_init(struct model *m, uint64_t n)
{
	m->n = n;
	m->bit = calloc(n, 1);
	assert_non_null(m->bit);
}

static void model_fini(struct model *m)
{
	free(m->bit);
	m->bit = NULL;
}

static uint64_t model_count(const struct model *m)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < m->n; i++)
		c += m->bit[i];
	return c;
}

static uint64_t model_word(const struct model *m, uint64_t w)
{
	uint64_t v = 0;

	for (uint64_t i = w * 64; i < m->n && i < w * 64 + 64; i++)
		v |= (uint64_t)m->bit[i] << (i % 64);
	return v;
}

struct run {
	uint64_t first, n;
};

/* Maximal runs of the model; caller frees. */
static size_t model_runs(const struct model *m, struct run **out)
{
	size_t cap = 16, k = 0;
	struct run *r = malloc(cap * sizeof(*r));

	assert_non_null(r);
	for (uint64_t i = 0; i < m->n;) {
		uint64_t j;

		if (!m->bit[i]) {
			i++;
			continue;
		}
		for (j = i; j < m->n && m->bit[j]; j++)
			;
		if (k == cap) {
			cap *= 2;
			r = realloc(r, cap * sizeof(*r));
			assert_non_null(r);
		}
		r[k].first = i;
		r[k++].n = j - i;
		i = j;
	}
	*out = r;
	return k;
}

/* Full comparison: words, invariants, popcount. */
static void check_equal(const struct pgt_bitmap *b, const struct model *m)
{
	const char *why = NULL;

	CHECK(pgt__bitmap_validate(b, &why), "validate: %s", why ? why : "?");
	CHECK(b->nbits == m->n, "nbits");
	for (uint64_t w = 0; w < b->nwords; w++) {
		uint64_t got = atomic_load(&b->words[w]), want = model_word(m, w);

		CHECK(got == want, "word %llu: %#llx want %#llx", (unsigned long long)w,
		      (unsigned long long)got, (unsigned long long)want);
	}
	CHECK(pgt__bitmap_popcount(b) == model_count(m), "popcount");
}

/* ---- callbacks ---- */

struct runlog {
	struct run *r;
	size_t n, cap;
	size_t stop_after; /* 0: never stop */
	int stop_rc;
};

static int log_run(void *arg, uint64_t first, uint64_t n)
{
	struct runlog *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		assert_non_null(l->r);
	}
	l->r[l->n].first = first;
	l->r[l->n++].n = n;
	return l->stop_after && l->n == l->stop_after ? l->stop_rc : 0;
}

struct wordlog {
	uint64_t *idx, *bits;
	size_t n, cap;
};

static void log_word(void *arg, size_t word, uint64_t bits)
{
	struct wordlog *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->idx = realloc(l->idx, l->cap * sizeof(*l->idx));
		l->bits = realloc(l->bits, l->cap * sizeof(*l->bits));
		assert_non_null(l->idx);
		assert_non_null(l->bits);
	}
	l->idx[l->n] = word;
	l->bits[l->n++] = bits;
}

/* Runs reported (up to @upto of them) must be the model's first runs. */
static void check_runs(const struct runlog *l, const struct model *m, size_t upto)
{
	struct run *want;
	size_t nw = model_runs(m, &want);
	size_t expect = upto && upto < nw ? upto : nw;

	CHECK(l->n == expect, "%zu runs reported, want %zu", l->n, expect);
	for (size_t i = 0; i < l->n; i++)
		CHECK(l->r[i].first == want[i].first && l->r[i].n == want[i].n,
		      "run %zu: [%llu,+%llu) want [%llu,+%llu)", i,
		      (unsigned long long)l->r[i].first, (unsigned long long)l->r[i].n,
		      (unsigned long long)want[i].first, (unsigned long long)want[i].n);
	free(want);
}

/* ---- random inputs biased to word, group and summary-word edges ---- */

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? pgt_test_rand(s) % n : 0;
}

static uint64_t pick_pos(uint64_t *s, uint64_t n)
{
	static const uint64_t unit[] = { 64, PGT_BM_GROUP_BITS, SUMW_BITS };
	uint64_t p;

	if (rnd(s, 2))
		return rnd(s, n);
	if (rnd(s, 5) == 0) {
		p = n - 1 - rnd(s, 3);
	} else {
		uint64_t u = unit[rnd(s, 3)];
		uint64_t k = n / u + 1;

		p = rnd(s, k) * u + rnd(s, 5) - 2;
	}
	return p < n ? p : rnd(s, n); /* also catches wrap below 0 */
}

static uint64_t pick_len(uint64_t *s, uint64_t room)
{
	uint64_t l;

	switch (rnd(s, 6)) {
	case 0: case 1:
		l = 1 + rnd(s, 3);
		break;
	case 2:
		l = 62 + rnd(s, 5);
		break;
	case 3:
		l = 1 + rnd(s, 200);
		break;
	case 4:
		l = PGT_BM_GROUP_BITS - 2 + rnd(s, 5);
		break;
	default:
		l = 1 + rnd(s, room);
	}
	return l < room ? l : room;
}

static void random_fill(struct pgt_bitmap *b, struct model *m, uint64_t *s, unsigned ops)
{
	for (unsigned k = 0; k < ops; k++) {
		uint64_t p = pick_pos(s, m->n), l = pick_len(s, m->n - p);

		if (rnd(s, 2)) {
			pgt__bitmap_set(b, p);
			m->bit[p] = true;
		} else {
			pgt__bitmap_set_range(b, p, l);
			memset(m->bit + p, 1, l);
		}
	}
}

/* ---- tests ---- */

static const uint64_t edge_sizes[] = {
	1, 63, 64, 65, 4095, 4096, 4097, 64 * 4096 + 3, (256ULL << 20) / 4096 + 3,
};

static void test_edge_sizes(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(edge_sizes) / sizeof(edge_sizes[0]); k++) {
		uint64_t n = edge_sizes[k];
		struct pgt_bitmap b;
		struct runlog l = { 0 };
		unsigned long *out;
		size_t nw = (size_t)((n + 63) / 64);

		snprintf(ctx, sizeof(ctx), "edge size %llu", (unsigned long long)n);
		assert_int_equal(pgt__bitmap_init(&b, n), 0);
		CHECK(b.nwords == nw, "nwords");
		CHECK(b.nsummary == (nw + 63) / 64, "nsummary (groups)");
		CHECK(((uintptr_t)b.words & 63) == 0 && ((uintptr_t)b.summary & 63) == 0,
		      "64-byte alignment");
		CHECK(pgt__bitmap_bytes(&b) >= nw * 8 + 8, "bytes");
		CHECK(pgt__bitmap_empty(&b), "empty after init");
		CHECK(pgt__bitmap_validate(&b, NULL), "valid after init");

		for (uint64_t i = 0; i < n; i++)
			CHECK(!pgt__bitmap_test_and_set(&b, i), "tas %llu", (unsigned long long)i);
		CHECK(pgt__bitmap_test_and_set(&b, n - 1), "tas again");
		CHECK(pgt__bitmap_popcount(&b) == n, "popcount full");
		CHECK(pgt__bitmap_count_runs(&b) == 1, "one run");
		CHECK(pgt__bitmap_validate(&b, NULL), "valid full");
		assert_int_equal(pgt__bitmap_for_each_run(&b, log_run, &l), 0);
		CHECK(l.n == 1 && l.r[0].first == 0 && l.r[0].n == n, "for_each_run full");

		out = malloc(nw * sizeof(*out));
		assert_non_null(out);
		CHECK(pgt__bitmap_export_kvm(&b, out, nw) == (int64_t)n, "export count");
		for (size_t w = 0; w < nw; w++) {
			unsigned long want = ~0UL;

			if (w == nw - 1 && n % 64)
				want = (1UL << (n % 64)) - 1;
			CHECK(out[w] == want, "export word %zu", w);
		}

		l.n = 0;
		CHECK(pgt__bitmap_take_runs(&b, log_run, &l) == n, "take_runs count");
		CHECK(l.n == 1 && l.r[0].first == 0 && l.r[0].n == n, "take_runs one run");
		CHECK(pgt__bitmap_empty(&b) && pgt__bitmap_popcount(&b) == 0, "empty after take");
		for (size_t sw = 0; sw < (b.nsummary + 63) / 64; sw++)
			CHECK(atomic_load(&b.summary[sw]) == 0, "summary cleared by take");

		/* Every other bit: n/2 runs of one, none joined. */
		for (uint64_t i = 0; i < n; i += 2)
			pgt__bitmap_set(&b, i);
		CHECK(pgt__bitmap_count_runs(&b) == (n + 1) / 2, "alternating runs");
		CHECK(pgt__bitmap_take(&b, NULL, NULL) == (n + 1) / 2, "take alternating");
		CHECK(pgt__bitmap_validate(&b, NULL), "valid at end");

		free(out);
		free(l.r);
		pgt__bitmap_fini(&b);
		CHECK(pgt__bitmap_bytes(&b) == 0 && b.words == NULL, "fini");
		pgt__bitmap_fini(&b); /* twice is harmless */
	}
}

static void test_range_edges(void **state)
{
	static const uint64_t pos[] = {
		0, 1, 62, 63, 64, 65, 127, 128, 4094, 4095, 4096, 4097, 8191, 8192,
		262142, 262143, 262144, 262145, 262146,
	};
	static const uint64_t len[] = {
		1, 2, 63, 64, 65, 128, 4095, 4096, 4097, 8192, 262143, 262144, 262145,
	};
	const uint64_t n = 64 * 4096 + 3;
	struct pgt_bitmap b;
	struct runlog l = { 0 };

	(void)state;
	assert_int_equal(pgt__bitmap_init(&b, n), 0);
	for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
		for (size_t j = 0; j < sizeof(len) / sizeof(len[0]); j++) {
			uint64_t p = pos[i], k = len[j];

			if (p + k > n)
				continue;
			snprintf(ctx, sizeof(ctx), "range [%llu,+%llu) of %llu",
				 (unsigned long long)p, (unsigned long long)k, (unsigned long long)n);

			pgt__bitmap_set_range(&b, p, k);
			CHECK(pgt__bitmap_validate(&b, NULL), "valid after set_range");
			CHECK(pgt__bitmap_popcount(&b) == k, "popcount");
			CHECK(pgt__bitmap_count_runs(&b) == 1, "count_runs");
			CHECK(pgt__bitmap_test(&b, p) && pgt__bitmap_test(&b, p + k - 1), "ends set");
			CHECK(!p || !pgt__bitmap_test(&b, p - 1), "below clear");
			CHECK(!pgt__bitmap_test(&b, p + k), "above clear");
			l.n = 0;
			assert_int_equal(pgt__bitmap_for_each_run(&b, log_run, &l), 0);
			CHECK(l.n == 1 && l.r[0].first == p && l.r[0].n == k, "for_each_run");
			l.n = 0;
			CHECK(pgt__bitmap_take_runs(&b, log_run, &l) == k, "take_runs count");
			CHECK(l.n == 1 && l.r[0].first == p && l.r[0].n == k, "take_runs run");
			CHECK(pgt__bitmap_empty(&b), "empty after take_runs");

			pgt__bitmap_set_range(&b, 0, n);
			pgt__bitmap_clear_range(&b, p, k);
			CHECK(pgt__bitmap_validate(&b, NULL), "valid after clear_range");
			CHECK(pgt__bitmap_popcount(&b) == n - k, "popcount after clear_range");
			l.n = 0;
			assert_int_equal(pgt__bitmap_for_each_run(&b, log_run, &l), 0);
			{
				size_t r = 0;

				if (p) {
					CHECK(l.r[r].first == 0 && l.r[r].n == p, "low run");
					r++;
				}
				if (p + k < n) {
					CHECK(r < l.n && l.r[r].first == p + k && l.r[r].n == n - p - k,
					      "high run");
					r++;
				}
				CHECK(l.n == r, "run count after clear_range");
			}
			/* A clear_range covering a whole group drops its summary bit. */
			for (uint64_t g = 0; g < b.nsummary; g++) {
				uint64_t lo = g * PGT_BM_GROUP_BITS, hi = lo + PGT_BM_GROUP_BITS;

				if (hi > n)
					hi = n;
				if (lo >= p && hi <= p + k)
					CHECK(!((atomic_load(&b.summary[g / 64]) >> (g % 64)) & 1),
					      "summary of cleared group %llu", (unsigned long long)g);
			}
			pgt__bitmap_zero(&b);
			CHECK(pgt__bitmap_empty(&b) && pgt__bitmap_validate(&b, NULL), "zero");
		}
	}
	free(l.r);
	pgt__bitmap_fini(&b);
}

/* get-and-clear by word, against the model */
static void op_take(struct pgt_bitmap *b, struct model *m)
{
	uint64_t n = m->n;
	struct wordlog l = { 0 };
	uint64_t want = model_count(m), got;
	size_t j = 0;

	got = pgt__bitmap_take(b, log_word, &l);
	CHECK(got == want, "take returned %llu want %llu", (unsigned long long)got,
	      (unsigned long long)want);
	for (uint64_t w = 0; w < b->nwords; w++) {
		uint64_t v = model_word(m, w);

		if (!v)
			continue;
		CHECK(j < l.n && l.idx[j] == w && l.bits[j] == v, "take word %llu",
		      (unsigned long long)w);
		j++;
	}
	CHECK(j == l.n, "take reported extra words");
	memset(m->bit, 0, n);
	free(l.idx);
	free(l.bits);
}

/* get-and-clear by runs, stopped early at random */
static void op_take_runs(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	struct runlog l = { .stop_after = rnd(s, 4), .stop_rc = 1 };
	uint64_t got = pgt__bitmap_take_runs(b, log_run, &l), sum = 0;

	check_runs(&l, m, l.stop_after);
	for (size_t i = 0; i < l.n; i++) {
		sum += l.r[i].n;
		memset(m->bit + l.r[i].first, 0, l.r[i].n);
	}
	CHECK(got == sum, "take_runs returned %llu want %llu", (unsigned long long)got,
	      (unsigned long long)sum);
	free(l.r);
}

/* OR of another random bitmap */
static void op_or(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	uint64_t n = m->n;
	struct pgt_bitmap src;
	struct model ms;

	model_init(&ms, n);
	assert_int_equal(pgt__bitmap_init(&src, n), 0);
	random_fill(&src, &ms, s, (unsigned)rnd(s, 6));
	assert_int_equal(pgt__bitmap_or(b, &src), 0);
	for (uint64_t i = 0; i < n; i++)
		m->bit[i] |= ms.bit[i];
	check_equal(&src, &ms); /* src untouched */
	pgt__bitmap_fini(&src);
	model_fini(&ms);
}

/* OR of a KVM-layout bitmap shorter, equal or longer, with garbage past its end */
static void op_or_kvm(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	uint64_t n = m->n;
	/* Source sizes below, at and beyond the bitmap. */
	uint64_t kb = rnd(s, 3) ? 1 + rnd(s, n + 130) : n;
	size_t kw = (size_t)((kb + 63) / 64);
	unsigned long *src = calloc(kw, sizeof(*src));
	unsigned dens = 1 + (unsigned)rnd(s, 64);
	uint64_t want = 0;

	assert_non_null(src);
	for (uint64_t i = 0; i < kb; i++) {
		if (rnd(s, 64) >= dens)
			continue;
		src[i / 64] |= 1UL << (i % 64);
		if (i < n) {
			m->bit[i] = true;
			want++;
		}
	}
	/* Garbage beyond kb must be ignored too. */
	if (kb % 64)
		src[kw - 1] |= ~0UL << (kb % 64);
	CHECK(pgt__bitmap_or_kvm(b, src, kb) == want, "or_kvm count");
	free(src);
}

/* export in KVM layout, too small a buffer first */
static void op_export(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	size_t nw = b->nwords;
	unsigned long *out = malloc((nw + 1) * sizeof(*out));

	assert_non_null(out);
	memset(out, 0xa5, (nw + 1) * sizeof(*out));
	CHECK(pgt__bitmap_export_kvm(b, out, nw - 1) == -ENOBUFS || nw == 0, "ENOBUFS");
	CHECK(pgt__bitmap_export_kvm(b, out, nw + rnd(s, 2)) == (int64_t)model_count(m),
	      "export count");
	for (size_t w = 0; w < nw; w++)
		CHECK(out[w] == model_word(m, w), "export word %zu", w);
	free(out);
}

/* run iteration, stopped early at random */
static void op_for_each_run(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	struct runlog l = { .stop_after = rnd(s, 3), .stop_rc = 42 };
	int rc = pgt__bitmap_for_each_run(b, log_run, &l);
	struct run *want;
	size_t nwant = model_runs(m, &want);

	free(want);
	check_runs(&l, m, l.stop_after);
	CHECK(rc == (l.stop_after && l.stop_after <= nwant ? 42 : 0), "for_each_run rc %d", rc);
	free(l.r);
}

/* One random operation on (b, m), checked; returns nothing, fails loudly. */
static void random_op(struct pgt_bitmap *b, struct model *m, uint64_t *s)
{
	uint64_t n = m->n, p = pick_pos(s, n), k = pick_len(s, n - p);

	switch (rnd(s, 16)) {
	case 0: case 1:
		pgt__bitmap_set(b, p);
		m->bit[p] = true;
		break;
	case 2:
		pgt__bitmap_clear(b, p);
		m->bit[p] = false;
		break;
	case 3:
		pgt__bitmap_set_range(b, p, k);
		memset(m->bit + p, 1, k);
		break;
	case 4:
		pgt__bitmap_clear_range(b, p, k);
		memset(m->bit + p, 0, k);
		break;
	case 5:
		CHECK(pgt__bitmap_test_and_set(b, p) == m->bit[p], "test_and_set %llu",
		      (unsigned long long)p);
		CHECK(pgt__bitmap_test(b, p), "test after test_and_set");
		m->bit[p] = true;
		break;
	case 6:
		op_take(b, m);
		break;
	case 7:
		op_take_runs(b, m, s);
		break;
	case 8:
		op_or(b, m, s);
		break;
	case 9:
		op_or_kvm(b, m, s);
		break;
	case 10:
		op_export(b, m, s);
		break;
	case 11:
		op_for_each_run(b, m, s);
		break;
	case 12: {
		struct run *want;
		size_t nwant = model_runs(m, &want);

		free(want);
		CHECK(pgt__bitmap_count_runs(b) == nwant, "count_runs");
		break;
	}
	case 13:
		CHECK(pgt__bitmap_popcount(b) == model_count(m), "popcount");
		CHECK(pgt__bitmap_empty(b) == (model_count(m) == 0), "empty");
		CHECK(pgt__bitmap_test(b, p) == m->bit[p], "test %llu", (unsigned long long)p);
		break;
	case 14:
		if (rnd(s, 4) == 0) {
			pgt__bitmap_zero(b);
			memset(m->bit, 0, n);
		}
		break;
	default:
		random_fill(b, m, s, 1 + (unsigned)rnd(s, 3));
	}
}

/* ---- iteration per set bit ---- */

/*
 * Walk @b with next_bits in batches of @cap from a cursor @from, checking
 * each bit against the model and the find_next reference loop.
 */
static void iter_check(const struct pgt_bitmap *b, const struct model *m, uint64_t from,
		       size_t cap)
{
	uint64_t pos = from, out[300], ref = pgt__bitmap_find_next(b, from), want = from;
	size_t n;

	while (want < m->n && !m->bit[want])
		want++;
	CHECK(ref == want, "find_next(%llu) = %llu, want %llu", (unsigned long long)from,
	      (unsigned long long)ref, (unsigned long long)want);
	while ((n = pgt__bitmap_next_bits(b, &pos, out, cap))) {
		CHECK(n <= cap, "next_bits wrote %zu > cap %zu", n, cap);
		for (size_t i = 0; i < n; i++) {
			CHECK(out[i] == ref, "next_bits[%zu] = %llu, find_next loop says %llu (cap %zu)",
			      i, (unsigned long long)out[i], (unsigned long long)ref, cap);
			CHECK(m->bit[out[i]], "bit %llu not set", (unsigned long long)out[i]);
			ref = pgt__bitmap_find_next(b, ref + 1);
		}
		CHECK(pos <= m->n, "cursor %llu beyond nbits", (unsigned long long)pos);
	}
	CHECK(ref == m->n, "next_bits stopped before %llu (from %llu, cap %zu)",
	      (unsigned long long)ref, (unsigned long long)from, cap);
}

static int count_bit(void *arg, uint64_t bit)
{
	uint64_t *c = arg;

	(void)bit;
	return ++c[0] == c[1] ? 7 : 0;
}

static void test_iterate(void **state)
{
	static const double dens[] = { 0, 1e-5, 0.002, 0.05, 0.5, 0.97, 1 };
	static const size_t caps[] = { 1, 3, 64, 65, 300 };
	uint64_t s = pgt_test_seed();

	(void)state;
	for (size_t k = 0; k < sizeof(edge_sizes) / sizeof(edge_sizes[0]); k++) {
		for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
			uint64_t n = edge_sizes[k], thr = (uint64_t)(dens[d] * 1048576.0), c[2];
			struct pgt_bitmap b;
			struct model m;

			snprintf(ctx, sizeof(ctx), "iterate n %llu density %g",
				 (unsigned long long)n, dens[d]);
			assert_int_equal(pgt__bitmap_init(&b, n), 0);
			model_init(&m, n);
			for (uint64_t i = 0; i < n; i++) {
				if (pgt_test_rand(&s) % 1048576 < thr) {
					pgt__bitmap_set(&b, i);
					m.bit[i] = true;
				}
			}
			/* a lone bit at each end, past any group of bits */
			if (dens[d] > 0 && dens[d] < 0.01) {
				pgt__bitmap_set(&b, n - 1);
				m.bit[n - 1] = true;
			}
			for (size_t ci = 0; ci < sizeof(caps) / sizeof(caps[0]); ci++) {
				iter_check(&b, &m, 0, caps[ci]);
				iter_check(&b, &m, rnd(&s, n), caps[ci]);
			}
			iter_check(&b, &m, n - 1, 2);
			iter_check(&b, &m, n, 2);
			c[0] = 0;
			c[1] = 0;
			assert_int_equal(pgt__bitmap_for_each_bit(&b, count_bit, c), 0);
			CHECK(c[0] == model_count(&m), "for_each_bit saw %llu", (unsigned long long)c[0]);
			if (c[0] > 2) {
				c[1] = c[0] / 2;
				c[0] = 0;
				assert_int_equal(pgt__bitmap_for_each_bit(&b, count_bit, c), 7);
				CHECK(c[0] == c[1], "for_each_bit went on after a stop");
			}
			model_fini(&m);
			pgt__bitmap_fini(&b);
		}
	}
}

static void test_differential(void **state)
{
	static const uint64_t sizes[] = {
		1, 2, 63, 64, 65, 130, 4095, 4096, 4097, 3 * 4096 + 77,
		64 * 4096 + 3, (256ULL << 20) / 4096 + 3,
	};
	uint64_t s = pgt_test_seed(), total = 0;

	(void)state;
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		uint64_t n = sizes[z];
		/* Bound the O(n) shadow comparison: ~2e7 bit checks per size. */
		uint64_t ops = 20000000 / (n + 64);
		struct pgt_bitmap b;
		struct model m;

		if (ops > 3000)
			ops = 3000;
		if (ops < 150)
			ops = 150;
		model_init(&m, n);
		assert_int_equal(pgt__bitmap_init(&b, n), 0);
		for (uint64_t op = 0; op < ops; op++) {
			snprintf(ctx, sizeof(ctx), "differential n=%llu op %llu",
				 (unsigned long long)n, (unsigned long long)op);
			random_op(&b, &m, &s);
			check_equal(&b, &m);
		}
		total += ops;
		pgt__bitmap_fini(&b);
		model_fini(&m);
	}
	pgt_test_note("%llu random operations checked", (unsigned long long)total);
}

/* ---- setters racing one taker ---- */

struct race {
	struct pgt_bitmap b;
	uint64_t n;
	atomic_int go;
	atomic_int running;
};

struct setter {
	struct race *r;
	uint64_t seed;
	unsigned ops;
	bool *mine;
	struct run *log;        /* bits of op k: [log[k].first, +log[k].n) */
	_Atomic unsigned done;  /* ops completed (release: log entries visible) */
};

static void *setter_main(void *arg)
{
	struct setter *t = arg;
	uint64_t n = t->r->n;

	while (!atomic_load(&t->r->go))
		;
	for (unsigned k = 0; k < t->ops; k++) {
		uint64_t p = pick_pos(&t->seed, n), l = 1;

		switch (rnd(&t->seed, 4)) {
		case 0:
			(void)pgt__bitmap_test_and_set(&t->r->b, p);
			break;
		case 1:
			l = 1 + rnd(&t->seed, 130);
			if (l > n - p)
				l = n - p;
			pgt__bitmap_set_range(&t->r->b, p, l);
			break;
		default:
			pgt__bitmap_set(&t->r->b, p);
		}
		memset(t->mine + p, 1, l);
		t->log[k] = (struct run){ p, l };
		atomic_store_explicit(&t->done, k + 1, memory_order_release);
	}
	atomic_fetch_sub(&t->r->running, 1);
	return NULL;
}

struct taken {
	bool *bit;
	uint64_t n;
	bool invented; /* a bit beyond nbits */
};

static void take_word(void *arg, size_t w, uint64_t bits)
{
	struct taken *t = arg;

	while (bits) {
		uint64_t i = (uint64_t)w * 64 + (unsigned)__builtin_ctzll(bits);

		bits &= bits - 1;
		if (i >= t->n)
			t->invented = true;
		else
			t->bit[i] = true;
	}
}

static int take_run(void *arg, uint64_t first, uint64_t n)
{
	struct taken *t = arg;

	if (first + n > t->n)
		t->invented = true;
	else
		memset(t->bit + first, 1, n);
	return 0;
}

/*
 * Two setters race a taker that alternates take() and take_runs(). Besides
 * "no bit lost, none invented" at the end, every set that completed before a
 * take started must have been reported by that take or an earlier one: a bit
 * stranded under a clear summary bit shows up there even when a later set to
 * the same group would have rescued it before the end.
 */
static void race_once(uint64_t n, unsigned ops, uint64_t *seed)
{
	struct race r = { .n = n };
	struct setter st[2];
	pthread_t th[2];
	struct taken tk = { .n = n };
	uint64_t takes = 0, lost = 0, invented = 0, late = 0;
	unsigned checked[2] = { 0, 0 };

	snprintf(ctx, sizeof(ctx), "race n=%llu", (unsigned long long)n);
	assert_int_equal(pgt__bitmap_init(&r.b, n), 0);
	tk.bit = calloc(n, 1);
	assert_non_null(tk.bit);
	atomic_store(&r.running, 2);
	for (int i = 0; i < 2; i++) {
		st[i] = (struct setter){ .r = &r, .seed = pgt_test_rand(seed) | 1, .ops = ops };
		st[i].mine = calloc(n, 1);
		st[i].log = calloc(ops, sizeof(*st[i].log));
		assert_non_null(st[i].mine);
		assert_non_null(st[i].log);
		assert_int_equal(pthread_create(&th[i], NULL, setter_main, &st[i]), 0);
	}
	atomic_store(&r.go, 1);
	while (atomic_load(&r.running)) {
		unsigned upto[2];

		for (int i = 0; i < 2; i++)
			upto[i] = atomic_load_explicit(&st[i].done, memory_order_acquire);
		if (takes++ & 1)
			pgt__bitmap_take_runs(&r.b, take_run, &tk);
		else
			pgt__bitmap_take(&r.b, take_word, &tk);
		for (int i = 0; i < 2; i++) {
			for (unsigned k = checked[i]; k < upto[i]; k++)
				for (uint64_t j = 0; j < st[i].log[k].n; j++)
					late += !tk.bit[st[i].log[k].first + j];
			checked[i] = upto[i];
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pgt__bitmap_take(&r.b, take_word, &tk);
	CHECK(pgt__bitmap_validate(&r.b, NULL) && pgt__bitmap_empty(&r.b), "empty after final take");
	for (uint64_t i = 0; i < n; i++) {
		bool set = st[0].mine[i] || st[1].mine[i];

		lost += set && !tk.bit[i];
		invented += !set && tk.bit[i];
	}
	pgt_test_note("race n=%llu: %llu takes, %llu lost, %llu invented, %llu late",
		      (unsigned long long)n, (unsigned long long)takes, (unsigned long long)lost,
		      (unsigned long long)invented, (unsigned long long)late);
	CHECK(!tk.invented && !lost && !invented, "union of takes == union of sets");
	CHECK(!late, "a completed set was missed by the next take");
	for (int i = 0; i < 2; i++) {
		free(st[i].mine);
		free(st[i].log);
	}
	free(tk.bit);
	pgt__bitmap_fini(&r.b);
}

static void test_concurrent_take(void **state)
{
	uint64_t s = pgt_test_seed();

	(void)state;
	/* One group: a take is so short that it often falls between a
	 * setter's word and summary updates, the window an ordering bug needs. */
	race_once(130, 200000, &s);
	/* Few groups: setters and taker fight over the same summary word. */
	race_once(3 * 4096 + 77, 200000, &s);
	race_once(64 * 4096 + 3, 100000, &s);
}

/* ---- validate must be able to fail ---- */

static void test_validate_catches(void **state)
{
	const uint64_t n = 64 * 4096 + 3; /* 65 groups, 2 summary words */
	struct pgt_bitmap b;
	const char *why;
	uint64_t save;

	(void)state;
	snprintf(ctx, sizeof(ctx), "validate");
	assert_int_equal(pgt__bitmap_init(&b, n), 0);
	pgt__bitmap_set(&b, 5000);        /* group 1 */
	pgt__bitmap_set(&b, n - 1);       /* group 64, summary word 1 */
	assert_true(pgt__bitmap_validate(&b, NULL));

	why = NULL;
	atomic_fetch_and(&b.summary[0], ~(1ULL << 1));
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
	assert_non_null(strstr(why, "summary"));
	assert_false(pgt__bitmap_validate(&b, NULL));
	atomic_fetch_or(&b.summary[0], 1ULL << 1);
	assert_true(pgt__bitmap_validate(&b, NULL));

	why = NULL;
	atomic_fetch_and(&b.summary[1], 0);
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
	atomic_fetch_or(&b.summary[1], 1);

	why = NULL;
	atomic_fetch_or(&b.words[b.nwords - 1], 1ULL << (n % 64));
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
	assert_non_null(strstr(why, "beyond nbits"));
	atomic_fetch_and(&b.words[b.nwords - 1], ~(1ULL << (n % 64)));
	assert_true(pgt__bitmap_validate(&b, NULL));

	why = NULL;
	atomic_fetch_or(&b.summary[1], 1ULL << 5); /* group 69 does not exist */
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
	atomic_fetch_and(&b.summary[1], ~(1ULL << 5));

	why = NULL;
	save = b.nbits;
	b.nbits += 64;
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
	b.nbits = save;

	/* An over-approximating summary is fine. */
	atomic_fetch_or(&b.summary[0], 1ULL << 40);
	assert_true(pgt__bitmap_validate(&b, NULL));
	assert_int_equal(pgt__bitmap_popcount(&b), 2);
	assert_int_equal(pgt__bitmap_count_runs(&b), 2);

	pgt__bitmap_fini(&b);
	why = NULL;
	assert_false(pgt__bitmap_validate(&b, &why));
	assert_non_null(why);
}

static void test_bad_input(void **state)
{
	struct pgt_bitmap a, b;
	unsigned long out[2];

	(void)state;
	assert_int_equal(pgt__bitmap_init(&a, 0), -EINVAL);
	assert_int_equal(pgt__bitmap_init(&a, UINT64_MAX), -ENOMEM);
	assert_int_equal(pgt__bitmap_init(&a, 100), 0);
	assert_int_equal(pgt__bitmap_init(&b, 101), 0);
	assert_int_equal(pgt__bitmap_or(&a, &b), -EINVAL);
	assert_int_equal(pgt__bitmap_or(&a, &a), 0);
	assert_int_equal(pgt__bitmap_export_kvm(&a, out, 1), -ENOBUFS);
	assert_int_equal(pgt__bitmap_export_kvm(&a, out, 0), -ENOBUFS);
	assert_int_equal(pgt__bitmap_export_kvm(&a, out, 2), 0);

	/* Out-of-range indices and ranges do not write outside the bitmap. */
	pgt__bitmap_set(&a, 100);
	pgt__bitmap_set(&a, UINT64_MAX);
	pgt__bitmap_clear(&a, 1000);
	assert_true(pgt__bitmap_test_and_set(&a, 100));
	assert_false(pgt__bitmap_test(&a, 100));
	pgt__bitmap_set_range(&a, 100, 5);
	pgt__bitmap_set_range(&a, 50, 0);
	assert_true(pgt__bitmap_empty(&a));
	pgt__bitmap_set_range(&a, 98, UINT64_MAX);
	assert_int_equal(pgt__bitmap_popcount(&a), 2);
	pgt__bitmap_clear_range(&a, 99, UINT64_MAX);
	assert_int_equal(pgt__bitmap_popcount(&a), 1);
	assert_true(pgt__bitmap_validate(&a, NULL));
	pgt__bitmap_fini(&a);
	pgt__bitmap_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_edge_sizes),
		cmocka_unit_test(test_range_edges),
		cmocka_unit_test(test_validate_catches),
		cmocka_unit_test(test_differential),
		cmocka_unit_test(test_iterate),
		cmocka_unit_test(test_concurrent_take),
	};

	return cmocka_run_group_tests_name("bitmap", tests, NULL, NULL);
}
