/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench kernels: the HAL kernels and the bitmap iteration against
 * their baselines, side by side in one run (issue 13, part 4).
 *
 *   zero check        vs a streaming read of the same buffer   (goal >= 0.9)
 *   next_bits/bit     vs a find_next_bit loop, densities 1e-6..0.5 (>= 3 dense)
 *   set+iterate+clear vs CRoaring (when built with it)          (<= 1.2 each)
 *   popcount, OR-merge (and OR counting new bits) vs the scalar code
 *
 * Every figure is the median of --reps runs; the baselines run interleaved
 * with the measured code so a noisy neighbour hits both.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hal/hal.h"
#include "lib/bitmap.h"
#include "perf/bench.h"

#ifdef PGT_HAVE_ROARING
#include <roaring/roaring.h>
#endif

#define MAX_REPS 64

struct kopts {
	bool json, quick;
	unsigned reps;
	uint64_t seed;
	uint64_t zero_bytes, nbits;
};

static volatile uint64_t sink;

static double median(double *v, unsigned n)
{
	return bench_quantile_dbl(v, n, 0.5);
}

/* The streaming read: every word loaded and folded, 4 chains. */
static __attribute__((noinline)) uint64_t stream_read(const uint64_t *w, size_t n)
{
	uint64_t a = 0, b = 0, c = 0, d = 0;

	for (size_t i = 0; i + 4 <= n; i += 4) {
		a |= w[i];
		b |= w[i + 1];
		c |= w[i + 2];
		d |= w[i + 3];
	}
	return a | b | c | d;
}

static void add_ratio(struct json_object *ratios, const char *key, double v, bool ok,
		      const char *op, double goal, const char *what)
{
	json_object_object_add(ratios, key, bench_ratio(v, ok, op, goal, what));
}

/* ---- zero check ---- */

static void bench_zero(const struct kopts *o, struct json_object *res, struct json_object *ratios)
{
	uint64_t *buf = aligned_alloc(4096, o->zero_bytes);
	double z[MAX_REPS], r[MAX_REPS], q[MAX_REPS];
	struct json_object *j = json_object_new_object();

	if (!buf)
		return;
	memset(buf, 0, o->zero_bytes);
	/*
	 * Paired and alternating: each rep times both back to back, in
	 * alternating order (the second of a pair found the other's effect
	 * on the memory system), and the ratio is the median of the per-rep
	 * ratios, so a neighbour's burst that hits one rep moves one pair,
	 * not the two medians independently.
	 */
	for (unsigned i = 0; i < o->reps; i++) {
		for (int k = 0; k < 2; k++) {
			uint64_t t0 = bench_now_ns();

			if ((k ^ (int)(i & 1)) == 0) {
				sink += stream_read(buf, o->zero_bytes / 8);
				r[i] = (double)o->zero_bytes / (double)(bench_now_ns() - t0);
			} else {
				sink += pgt_hal_is_zero(buf, o->zero_bytes);
				z[i] = (double)o->zero_bytes / (double)(bench_now_ns() - t0);
			}
		}
		q[i] = z[i] / r[i];
	}
	json_object_object_add(j, "test", json_object_new_string("zero_check"));
	bench_json_str(j, "impl", pgt__hal_is_zero_impl());
	bench_json_u64(j, "bytes", o->zero_bytes, true);
	bench_json_dbl(j, "zero_gbps", median(z, o->reps), true);
	bench_json_dbl(j, "stream_read_gbps", median(r, o->reps), true);
	json_object_array_add(res, j);
	add_ratio(ratios, "zero_vs_memread", median(q, o->reps), true, ">=", 0.9,
		  "median over reps of HAL zero check GB/s / streaming read GB/s, same buffer, "
		  "timed back to back in alternating order");
	bench_note("zero: %.1f GB/s, read %.1f GB/s", median(z, o->reps), median(r, o->reps));
	free(buf);
}

/* ---- popcount and OR-merge vs scalar ---- */

static double time_words(int which, bool scalar, uint64_t *d, const uint64_t *s, size_t n)
{
	uint64_t t0 = bench_now_ns();

	for (int k = 0; k < 16; k++) {
		switch (which) {
		case 0:
			sink += scalar ? pgt__hal_popcount_scalar(s, n) : pgt_hal_popcount(s, n);
			break;
		case 1:
			if (scalar)
				pgt__hal_or_scalar(d, s, n);
			else
				pgt_hal_or(d, s, n);
			break;
		default:
			sink += scalar ? pgt__hal_or_new_scalar(d, s, n) : pgt_hal_or_new(d, s, n);
			break;
		}
	}
	return 16.0 * (double)n * 8 / (double)(bench_now_ns() - t0);
}

static void bench_words(const struct kopts *o, struct json_object *res, struct json_object *ratios)
{
	static const char *const names[] = { "popcount", "or", "or_new" };
	const size_t n = 32768;                 /* 256 KiB each: L2 resident */
	uint64_t *d = aligned_alloc(64, n * 8), *s = aligned_alloc(64, n * 8), rs = o->seed;

	if (!d || !s)
		goto out;
	for (size_t i = 0; i < n; i++) {
		s[i] = bench_rand(&rs);
		d[i] = bench_rand(&rs);
	}
	for (int w = 0; w < 3; w++) {
		double v[MAX_REPS], sc[MAX_REPS];
		struct json_object *j = json_object_new_object();
		char key[64];

		for (unsigned i = 0; i < o->reps; i++) {
			sc[i] = time_words(w, true, d, s, n);
			v[i] = time_words(w, false, d, s, n);
		}
		json_object_object_add(j, "test", json_object_new_string(names[w]));
		bench_json_str(j, "impl", w ? pgt__hal_or_impl() : pgt__hal_popcount_impl());
		bench_json_dbl(j, "simd_gbps", median(v, o->reps), true);
		bench_json_dbl(j, "scalar_gbps", median(sc, o->reps), true);
		json_object_array_add(res, j);
		snprintf(key, sizeof(key), "%s_simd_vs_scalar", names[w]);
		add_ratio(ratios, key, median(v, o->reps) / median(sc, o->reps), true, NULL, 0,
			  "GB/s of the dispatched kernel / the scalar reference, 256 KiB");
	}
out:
	free(d);
	free(s);
}

/* ---- bitmap iteration ---- */

static const double densities[] = { 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5 };
#define NDENS (sizeof(densities) / sizeof(densities[0]))

/* Distinct random bit indices at @dens, in random order; returns how many. */
static size_t make_bits(uint64_t nbits, double dens, uint64_t *rs, uint32_t *idx)
{
	uint64_t thr = (uint64_t)(dens * 4294967296.0);
	size_t m = 0;

	for (uint64_t i = 0; i < nbits; i++)
		if ((bench_rand(rs) >> 32) < thr)
			idx[m++] = (uint32_t)i;
	if (!m)
		idx[m++] = (uint32_t)(bench_rand(rs) % nbits);
	for (size_t i = m - 1; i > 0; i--) {
		size_t k = (size_t)(bench_rand(rs) % (i + 1));
		uint32_t t = idx[i];

		idx[i] = idx[k];
		idx[k] = t;
	}
	return m;
}

static uint64_t walk_next_bits(const struct pgt_bitmap *b)
{
	uint64_t pos = 0, out[2048], acc = 0;
	size_t n;

	while ((n = pgt__bitmap_next_bits(b, &pos, out, 2048)))
		for (size_t i = 0; i < n; i++)
			acc += out[i];
	return acc;
}

static uint64_t walk_find_next(const struct pgt_bitmap *b)
{
	uint64_t acc = 0;

	for (uint64_t i = pgt__bitmap_find_next(b, 0); i < b->nbits; i = pgt__bitmap_find_next(b, i + 1))
		acc += i;
	return acc;
}

#ifdef PGT_HAVE_ROARING
static uint64_t roaring_cycle(roaring_bitmap_t *r, const uint32_t *idx, size_t m)
{
	roaring_uint32_iterator_t it;
	uint32_t buf[256], n;
	uint64_t acc = 0;

	for (size_t i = 0; i < m; i++)
		roaring_bitmap_add(r, idx[i]);
	roaring_init_iterator(r, &it);
	while ((n = roaring_read_uint32_iterator(&it, buf, 256)))
		for (uint32_t i = 0; i < n; i++)
			acc += buf[i];
	roaring_bitmap_clear(r);
	return acc;
}
#endif

struct take_acc {
	uint64_t acc;
};

static void take_word(void *arg, size_t word, uint64_t bits)
{
	struct take_acc *t = arg;

	for (; bits; bits &= bits - 1)
		t->acc += (uint64_t)word * 64 + (uint64_t)__builtin_ctzll(bits);
}

/*
 * Set, then iterate and clear in one pass: get-and-clear (take) is how a
 * harvest empties a bitmap, and it visits each set group once.
 */
static uint64_t pgt_cycle(struct pgt_bitmap *b, const uint32_t *idx, size_t m)
{
	struct take_acc t = { 0 };

	for (size_t i = 0; i < m; i++)
		pgt__bitmap_set(b, idx[i]);
	pgt__bitmap_take(b, take_word, &t);
	return t.acc;
}

/* One density: iteration vs find_next, and set+iterate+clear vs CRoaring. */
static double bench_density(const struct kopts *o, struct pgt_bitmap *b, const uint32_t *idx,
			    size_t m, double dens, struct json_object *res, struct json_object *ratios)
{
	double it[MAX_REPS], fn[MAX_REPS], cy[MAX_REPS], ro[MAX_REPS], worst = 0;
	struct json_object *j = json_object_new_object();
	bool have_ro = false;
	char key[64];

	/* sparse densities: repeat so each timing covers ~10^5 bits */
	unsigned rep = m < 100000 ? (unsigned)(100000 / m) : 1;

	for (unsigned i = 0; i < o->reps; i++) {
		uint64_t t0, a = 0;

		t0 = bench_now_ns();
		for (unsigned k = 0; k < rep; k++)
			a = pgt_cycle(b, idx, m);
		cy[i] = (double)(bench_now_ns() - t0) / (double)m / rep;
		for (size_t k = 0; k < m; k++)
			pgt__bitmap_set(b, idx[k]);
		t0 = bench_now_ns();
		for (unsigned k = 0; k < rep; k++)
			if (walk_next_bits(b) != a)
				bench_note("kernels: next_bits and take disagree at density %g", dens);
		it[i] = (double)(bench_now_ns() - t0) / (double)m / rep;
		t0 = bench_now_ns();
		for (unsigned k = 0; k < rep && k < 4; k++)
			if (walk_find_next(b) != a)
				bench_note("kernels: next_bits and find_next disagree at density %g", dens);
		fn[i] = (double)(bench_now_ns() - t0) / (double)m / (rep < 4 ? rep : 4);
		pgt__bitmap_zero(b);
#ifdef PGT_HAVE_ROARING
		roaring_bitmap_t *r = roaring_bitmap_create();

		t0 = bench_now_ns();
		for (unsigned k = 0; k < rep; k++)
			if (roaring_cycle(r, idx, m) != a)
				bench_note("kernels: CRoaring disagrees at density %g", dens);
		ro[i] = (double)(bench_now_ns() - t0) / (double)m / rep;
		roaring_bitmap_free(r);
		have_ro = true;
#else
		ro[i] = 0;
#endif
	}
	json_object_object_add(j, "test", json_object_new_string("bitmap_iterate"));
	bench_json_dbl(j, "density", dens, true);
	bench_json_u64(j, "set_bits", m, true);
	bench_json_dbl(j, "next_bits_ns_per_bit", median(it, o->reps), true);
	bench_json_dbl(j, "find_next_ns_per_bit", median(fn, o->reps), true);
	bench_json_dbl(j, "set_iter_clear_ns_per_bit", median(cy, o->reps), true);
	bench_json_dbl(j, "roaring_set_iter_clear_ns_per_bit", median(ro, o->reps), have_ro);
	json_object_array_add(res, j);
	snprintf(key, sizeof(key), "iterate_vs_find_next_d%g", dens);
	add_ratio(ratios, key, median(fn, o->reps) / median(it, o->reps), true,
		  dens >= 0.5 ? ">=" : NULL, 3, "find_next loop ns/bit / next_bits ns/bit");
	if (have_ro) {
		double best = median(ro, o->reps) < median(cy, o->reps) ? median(ro, o->reps)
									 : median(cy, o->reps);

		worst = median(cy, o->reps) / best;
		snprintf(key, sizeof(key), "set_iter_clear_vs_best_d%g", dens);
		add_ratio(ratios, key, worst, true, "<=", 1.2,
			  "pgt bitmap set+iterate+clear / the better of it and CRoaring");
	}
	bench_note("d %g: next_bits %.2f ns/bit, find_next %.2f, cycle %.2f, roaring %.2f", dens,
		   median(it, o->reps), median(fn, o->reps), median(cy, o->reps), median(ro, o->reps));
	return worst;
}

static void bench_iterate(const struct kopts *o, struct json_object *res, struct json_object *ratios)
{
	uint32_t *idx = malloc(o->nbits * sizeof(*idx));
	struct pgt_bitmap b;
	uint64_t rs = o->seed ^ 0x5851f42d4c957f2dull;
	double worst = 0;

	if (!idx || pgt__bitmap_init(&b, o->nbits)) {
		free(idx);
		return;
	}
	for (size_t d = 0; d < NDENS; d++) {
		size_t m = make_bits(o->nbits, densities[d], &rs, idx);
		double w = bench_density(o, &b, idx, m, densities[d], res, ratios);

		worst = w > worst ? w : worst;
	}
#ifdef PGT_HAVE_ROARING
	add_ratio(ratios, "set_iter_clear_vs_best_worst", worst, true, "<=", 1.2,
		  "the largest set_iter_clear_vs_best over the densities");
#else
	(void)worst;
	add_ratio(ratios, "set_iter_clear_vs_best_worst", 0, false, "<=", 1.2,
		  "built without CRoaring (libroaring-dev)");
#endif
	pgt__bitmap_fini(&b);
	free(idx);
}

int bench_kernels_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct kopts o = { .reps = 5, .seed = 0x9e3779b97f4a7c15ull };
	struct json_object *root, *res, *ratios;
	bool verbose = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jqr:S:v", lopts, NULL)) != -1) {
		switch (c) {
		case 'j': o.json = true; break;
		case 'q': o.quick = true; break;
		case 'v': verbose = true; break;
		case 'S': o.seed = strtoull(optarg, NULL, 0); break;
		case 'r':
			o.reps = (unsigned)strtoul(optarg, NULL, 0);
			if (!o.reps || o.reps > MAX_REPS) {
				fprintf(stderr, "bad --reps '%s' (1..%d)\n", optarg, MAX_REPS);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: pgtrack-bench kernels [--json] [--quick] [--reps N] [--seed N]\n");
			return 2;
		}
	}
	if (o.quick && o.reps > 3)
		o.reps = 3;
	o.zero_bytes = o.quick ? 32ull << 20 : 256ull << 20;
	o.nbits = o.quick ? 1ull << 22 : 1ull << 25;
	bench_set_quiet(o.json && !verbose);
	root = json_object_new_object();
	res = json_object_new_array();
	ratios = json_object_new_object();
	json_object_object_add(root, "benchmark", json_object_new_string("kernels"));
	bench_zero(&o, res, ratios);
	bench_words(&o, res, ratios);
	bench_iterate(&o, res, ratios);
	json_object_object_add(root, "results", res);
	json_object_object_add(root, "ratios", ratios);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	return 0;
}
