/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking on the real kernel, every method × memory type: exact
 * reports, get-and-clear, re-arming, reads that must not dirty, several views
 * that never steal from each other, run and bitmap outputs agreeing, and a
 * too-small run buffer that consumes nothing.
 */
#include "tests/common/testutil.h"
#include "tests/common/matrix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LEN (16u << 20)
#define WORDS(n) (((n) + 63) / 64)

static struct pgt_probe probe = { .size = sizeof(probe) };
static uint64_t seed;

struct fixture {
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	const struct pgt_case *c;
	const char *why; /* skip reason */
};

/*
 * Regions are created in the test body, not in setup: cmocka installs its own
 * SIGSEGV handler before each test function, which would replace the one the
 * mprotect tracker installs at region creation.
 */
static void open_region(struct fixture *f)
{
	const struct pgt_case *c = f->c;
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)c->backing, .length = LEN,
		.gpa = 1ULL << 32, .track = PGT_TRACK_DIRTY, .dirty_method = c->method,
		.numa_node = -1, .name = c->name,
	};

	assert_int_equal(pgt_engine_open(NULL, &f->eng), 0);
	assert_int_equal(pgt_region_create(f->eng, &rc, &f->r), 0);
	f->info.size = sizeof(f->info);
	assert_int_equal(pgt_region_info(f->r, &f->info), 0);
	assert_int_equal(f->info.dirty_method, c->method);
}

static int setup(void **state)
{
	const struct pgt_case *c = *state;
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->c = c;
	f->why = pgt_matrix_skip(c, &probe, LEN, pgt_test_free_hugepages());
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->eng) {
		pgt_region_destroy(f->r);
		pgt_engine_close(f->eng);
	}
	free(f);
	return 0;
}

/* Exact methods report exactly the written pages; others at least them. */
static bool exact(const struct pgt_case *c)
{
	/* soft-dirty marks a whole THP when one 4 KiB of it is written */
	return !(c->method == PGT_DIRTY_SOFT_DIRTY && c->backing == PGT_BACKING_THP);
}

static void write_pages(struct fixture *f, const uint64_t *bm)
{
	for (uint64_t p = 0; p < f->info.npages; p++)
		if (bm[p / 64] >> (p % 64) & 1)
			((volatile uint8_t *)f->info.addr)[p * f->info.page_size + (p % 7) * 64] = (uint8_t)(p | 1);
}

static void random_set(uint64_t *bm, uint64_t npages, unsigned permille, uint64_t *s)
{
	memset(bm, 0, WORDS(npages) * 8);
	for (uint64_t p = 0; p < npages; p++)
		if (pgt_test_rand(s) % 1000 < permille)
			bm[p / 64] |= 1ULL << (p % 64);
	bm[0] |= 1; /* never empty */
}

/* Harvest into bitmap and runs; check they agree; return the bitmap. */
static int64_t harvest(struct fixture *f, pgt_dirty_view *v, uint64_t *out)
{
	size_t words = WORDS(f->info.npages);
	struct pgt_run *runs = calloc(f->info.npages, sizeof(*runs));
	uint64_t *fromruns = calloc(words, 8);
	struct pgt_harvest h = {
		.size = sizeof(h), .bitmap = (unsigned long *)out, .bitmap_words = words,
		.runs = runs, .runs_cap = f->info.npages,
	};
	int64_t n = pgt_dirty_harvest(v, &h);
	uint64_t sum = 0;

	assert_true(n >= 0);
	assert_int_equal((uint64_t)n, h.dirty_pages);
	for (size_t i = 0; i < h.nruns; i++) {
		uint64_t first = (runs[i].gpa - f->info.gpa) / f->info.page_size;

		assert_true(runs[i].npages > 0);
		assert_true(first + runs[i].npages <= f->info.npages);
		if (i)
			assert_true(runs[i].gpa > runs[i - 1].gpa +
				    (runs[i - 1].npages) * f->info.page_size); /* maximal, sorted */
		for (uint64_t p = first; p < first + runs[i].npages; p++)
			fromruns[p / 64] |= 1ULL << (p % 64);
		sum += runs[i].npages;
	}
	assert_int_equal(sum, (uint64_t)n);
	assert_memory_equal(fromruns, out, words * 8);
	free(runs);
	free(fromruns);
	return n;
}

static void check(struct fixture *f, const uint64_t *want, const uint64_t *got, const char *what)
{
	uint64_t missing = 0, extra = 0;

	for (size_t w = 0; w < WORDS(f->info.npages); w++) {
		missing += (uint64_t)__builtin_popcountll(want[w] & ~got[w]);
		extra += (uint64_t)__builtin_popcountll(got[w] & ~want[w]);
	}
	if (missing || (extra && exact(f->c)))
		pgt_test_note("%s, %s: %llu written pages missing, %llu extra", f->c->name, what,
			      (unsigned long long)missing, (unsigned long long)extra);
	assert_int_equal(missing, 0);
	if (exact(f->c))
		assert_int_equal(extra, 0);
}

static void test_dirty(void **state)
{
	struct fixture *f = *state;
	uint64_t s = seed;
	size_t words;
	uint64_t *a, *b, *c, *got, *bc;
	pgt_dirty_view *v1, *v2;

	if (f->why)
		pgt_skip("%s: %s", f->c->name, f->why);
	open_region(f);
	words = WORDS(f->info.npages);
	a = calloc(words, 8);
	b = calloc(words, 8);
	c = calloc(words, 8);
	bc = calloc(words, 8);
	got = calloc(words, 8);

	assert_int_equal(pgt_dirty_view_open(f->r, &v1), 0);

	/* nothing written yet */
	assert_int_equal(harvest(f, v1, got), 0);

	/* reads do not dirty */
	for (uint64_t p = 0; p < f->info.npages; p += 3)
		(void)((volatile uint8_t *)f->info.addr)[p * f->info.page_size];
	harvest(f, v1, got);
	if (exact(f->c)) {
		memset(a, 0, words * 8);
		check(f, a, got, "reads");
	}

	/* exact set, then get-and-clear */
	random_set(a, f->info.npages, 100, &s);
	write_pages(f, a);
	harvest(f, v1, got);
	check(f, a, got, "first harvest");
	assert_int_equal(harvest(f, v1, got), 0);

	/* re-armed: the same pages written again are seen again */
	write_pages(f, a);
	harvest(f, v1, got);
	check(f, a, got, "re-armed");

	/* two views: v1's harvest must not take v2's pages */
	assert_int_equal(pgt_dirty_view_open(f->r, &v2), 0);
	random_set(b, f->info.npages, 50, &s);
	write_pages(f, b);
	harvest(f, v1, got);
	check(f, b, got, "view 1 after B");
	random_set(c, f->info.npages, 50, &s);
	write_pages(f, c);
	for (size_t w = 0; w < words; w++)
		bc[w] = b[w] | c[w];
	harvest(f, v2, got);
	check(f, bc, got, "view 2 sees B and C");
	harvest(f, v1, got);
	check(f, c, got, "view 1 sees C");

	/* run buffer too small: -ENOBUFS, nothing consumed */
	{
		uint64_t three[WORDS(8192)] = { 0 };
		struct pgt_run runs[4];
		struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 1 };
		uint64_t np = f->info.npages;

		three[0] = 1;
		three[(np / 2) / 64] |= 1ULL << ((np / 2) % 64);
		three[(np - 1) / 64] |= 1ULL << ((np - 1) % 64);
		assert_true(np <= 8192);
		write_pages(f, three);
		assert_int_equal(pgt_dirty_harvest(v1, &h), -ENOBUFS);
		assert_true(h.nruns >= 3);
		harvest(f, v1, got);
		memset(a, 0, words * 8);
		memcpy(a, three, words * 8);
		check(f, a, got, "after ENOBUFS");
		harvest(f, v2, got);
		check(f, a, got, "view 2 after ENOBUFS");
	}

	/* destroy refuses while views are open */
	assert_int_equal(pgt_region_destroy(f->r), -EBUSY);
	pgt_dirty_view_close(v1);
	pgt_dirty_view_close(v2);

	struct pgt_region_stats st = { .size = sizeof(st) };

	assert_int_equal(pgt_region_stats(f->r, &st), 0);
	assert_true(st.harvests > 0 && st.dirty_reported > 0);
	assert_int_equal(st.views, 0);
	free(a);
	free(b);
	free(c);
	free(bc);
	free(got);
}

int main(void)
{
	static struct pgt_case cases[PGT_MATRIX_N];
	struct CMUnitTest tests[PGT_MATRIX_N];
	int n = pgt_matrix_fill(cases);

	pgt_probe(&probe);
	seed = pgt_test_seed();
	for (int i = 0; i < n; i++)
		tests[i] = (struct CMUnitTest){ cases[i].name, test_dirty, setup, teardown, &cases[i] };
	return _cmocka_run_group_tests("dirty", tests, (size_t)n, NULL, NULL);
}
