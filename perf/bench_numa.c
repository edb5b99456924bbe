/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench numa: the cost of sharding a region's dirty bitmap by NUMA
 * node. A harvest of a view (get-and-clear into a KVM bitmap and runs, what
 * pgt_dirty_harvest does after the kernel pass) over a flat bitmap is
 * compared with the same over 1, 2 and 4 shards, taken in the caller (one
 * worker) or by a pool of 1 or 2 worker threads bound to CPUs, at several
 * dirty densities.
 *
 * This measures the sharded bitmap itself (numa/shard.c) against the flat
 * one (engine/bitmap.c), so it uses those internal interfaces: through the
 * public API the kernel's PAGEMAP_SCAN walk (~0.3 ms per GiB) would hide
 * the merge cost the ratio is about.
 *
 * ratios.shard_merge_overhead = 4-shard single-worker harvest / flat harvest
 * at 1 % dirty (goal <= 1.05).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <json-c/json.h>

#include <pgtrack.h>

#include "numa/numa_pvt.h"
#include "perf/bench.h"

#define MAX_REPS 1000

struct nb_opts {
	bool json, quick;
	uint64_t size;
	unsigned reps;
	uint64_t seed;
};

static void nb_usage(FILE *f)
{
	fprintf(f,
		"Usage: pgtrack-bench numa [--json] [--size SIZE] [--reps N] [--quick] [--seed S]\n"
		"Harvest of a region's dirty bitmap: flat vs 1/2/4 node shards taken by 1 or 2\n"
		"workers, at 0.1 %%, 1 %% and 10 %% dirty 4 KiB pages.\n"
		"  -j, --json       JSON on stdout\n"
		"  -s, --size SIZE  region size (default 1G; K/M/G suffixes)\n"
		"  -r, --reps N     measured harvests per cell (default 101, quick 15)\n"
		"  -q, --quick      fewer repetitions, 256M\n"
		"  -S, --seed S     random pattern seed\n"
		"  -h, --help       this help\n");
}

static int nb_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end || !v || v % (1 << 21))
		return -EINVAL;
	*out = v;
	return 0;
}

/* ---- the flat baseline: dirty.c's harvest before shards, as it was ---- */

struct flat_region {
	uint64_t gpa;
	unsigned page_shift;
};

struct flat_ctx {
	const struct flat_region *r;
	struct pgt_harvest *h;
};

static void flat_set_bits(unsigned long *bm, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t w = first / 64, b = first % 64;
		uint64_t k = 64 - b < n ? 64 - b : n;
		unsigned long mask = k == 64 ? ~0UL : ((1UL << k) - 1) << b;

		bm[w] |= mask;
		first += k;
		n -= k;
	}
}

static int flat_run(void *arg, uint64_t first, uint64_t n)
{
	struct flat_ctx *x = arg;
	struct pgt_harvest *h = x->h;

	if (h->runs)
		h->runs[h->nruns] = (struct pgt_run){ x->r->gpa + (first << x->r->page_shift), n };
	h->nruns++;
	if (h->bitmap)
		flat_set_bits(h->bitmap, first, n);
	return 0;
}

/* ---- pattern ---- */

struct pattern {
	size_t n;
	struct pgt_run *r;  /* page runs (gpa field = first page) */
};

static void make_pattern(struct pattern *p, uint64_t nbits, double density, uint64_t *seed)
{
	uint64_t want = (uint64_t)((double)nbits * density);

	p->r = calloc(want ? want : 1, sizeof(*p->r));
	p->n = 0;
	/* single pages and short runs, as guest writes look */
	for (uint64_t got = 0; got < want;) {
		uint64_t first = bench_rand(seed) % nbits;
		uint64_t len = 1 + (bench_rand(seed) % 8 == 0 ? bench_rand(seed) % 16 : 0);

		if (len > nbits - first)
			len = nbits - first;
		if (len > want - got)
			len = want - got;
		p->r[p->n++] = (struct pgt_run){ first, len };
		got += len;
	}
}

/* ---- cells ---- */

struct cell {
	const char *kind;   /* "flat", "sharded" */
	unsigned shards;
	unsigned workers;   /* 1: in the caller; otherwise a pool of this many */
	bool pool;          /* single worker as a pool thread (handoff cost) */
};

/* A cell's state: a flat bitmap or a shard map with its pool. */
struct cell_state {
	struct pgt_bitmap flat;
	struct pgt_shardmap m;
	struct pgt_workers *w;
	uint64_t *t;
	uint64_t bits;
};

static int cell_open(const struct cell *c, struct cell_state *cs, uint64_t nbits, unsigned reps,
		     const int *cpus, int ncpus)
{
	memset(cs, 0, sizeof(*cs));
	cs->t = calloc(reps, sizeof(*cs->t));
	if (!cs->t)
		return -ENOMEM;
	if (!strcmp(c->kind, "flat"))
		return pgt__bitmap_init(&cs->flat, nbits);

	struct pgt_shard_geom g[8];
	struct pgt_cpuset set[2] = { { { 0 } }, { { 0 } } };
	unsigned nw = c->pool || c->workers > 1 ? c->workers : 0;
	int ret;

	for (unsigned k = 0; k < c->shards; k++) {
		uint64_t first = (nbits * k / c->shards) & ~63ULL;
		uint64_t next = k + 1 < c->shards ? (nbits * (k + 1) / c->shards) & ~63ULL : nbits;

		g[k] = (struct pgt_shard_geom){ first, next - first, -1, nw ? (int)(k % nw) : -1 };
	}
	for (unsigned i = 0; i < nw && i < 2; i++)
		pgt__cpuset_set(&set[i], (unsigned)cpus[i % ncpus]);
	if (nw && (ret = pgt__workers_start(&cs->w, nw, set, &pgt__numa_sys_ops)))
		return ret;
	ret = pgt__shardmap_init_geom(&cs->m, nbits, g, c->shards, &pgt__numa_sys_ops, cs->w);
	cs->m.parallel_min_bits = 0; /* measure the pool at every size */
	return ret;
}

static void cell_close(struct cell_state *cs)
{
	if (cs->m.n)
		pgt__shardmap_fini(&cs->m);
	else
		pgt__bitmap_fini(&cs->flat);
	pgt__workers_stop(cs->w);
	free(cs->t);
}

/* Refill (not timed) and harvest once; returns the harvest's nanoseconds. */
static uint64_t cell_harvest(struct cell_state *cs, const struct pattern *p, uint64_t nbits,
			     unsigned long *bm, struct pgt_run *runs)
{
	size_t words = (size_t)((nbits + 63) / 64);
	uint64_t t0, t1, n;

	for (size_t i = 0; i < p->n; i++) {
		if (cs->m.n)
			pgt__shardmap_set_range(&cs->m, p->r[i].gpa, p->r[i].npages);
		else
			pgt__bitmap_set_range(&cs->flat, p->r[i].gpa, p->r[i].npages);
	}
	t0 = bench_now_ns();
	if (cs->m.n) {
		struct pgt_shard_out o = {
			.bitmap = bm, .bitmap_words = words, .runs = runs,
			.runs_cap = p->n + 1, .gpa = 0, .page_shift = 12,
		};

		n = (uint64_t)pgt__shardmap_take(&cs->m, &o);
	} else {
		/* count (the -ENOBUFS check), clear, take: dirty.c's order */
		static const struct flat_region fr = { 0, 12 };
		struct pgt_harvest h = {
			.size = sizeof(h), .bitmap = bm, .bitmap_words = words,
			.runs = runs, .runs_cap = p->n + 1,
		};
		struct flat_ctx fc = { &fr, &h };

		if (pgt__bitmap_count_runs(&cs->flat) > h.runs_cap)
			abort();
		memset(h.bitmap, 0, h.bitmap_words * sizeof(unsigned long));
		n = pgt__bitmap_take_runs(&cs->flat, flat_run, &fc);
	}
	t1 = bench_now_ns();
	cs->bits = n;
	return t1 - t0;
}

static const struct cell cells[] = {
	{ "flat", 1, 1, false },
	{ "sharded", 1, 1, false },
	{ "sharded", 2, 1, false },
	{ "sharded", 4, 1, false },
	{ "sharded", 2, 1, true },
	{ "sharded", 4, 1, true },
	{ "sharded", 2, 2, false },
	{ "sharded", 4, 2, false },
};
enum { NC = sizeof(cells) / sizeof(cells[0]) };
static const double densities[] = { 0.001, 0.01, 0.1 };

/* Returns -1 to go on, else the exit status. */
static int nb_parse(int argc, char **argv, struct nb_opts *o)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "reps", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "js:r:qS:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': o->json = true; break;
		case 'q': o->quick = true; break;
		case 's':
			if (nb_size(optarg, &o->size)) {
				fprintf(stderr, "bad --size '%s' (a multiple of 2M)\n", optarg);
				return 2;
			}
			break;
		case 'r':
			o->reps = (unsigned)strtoul(optarg, NULL, 0);
			if (!o->reps || o->reps > MAX_REPS) {
				fprintf(stderr, "bad --reps '%s'\n", optarg);
				return 2;
			}
			break;
		case 'S': o->seed = strtoull(optarg, NULL, 0) | 1; break;
		case 'h': nb_usage(stdout); return 0;
		default: nb_usage(stderr); return 2;
		}
	}
	/* the only operand allowed is the subcommand itself */
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "numa")) {
			nb_usage(stderr);
			return 2;
		}
	}
	if (!o->size)
		o->size = o->quick ? 256ULL << 20 : 1ULL << 30;
	if (!o->reps)
		o->reps = o->quick ? 15 : 101;
	return -1;
}

static void nb_methodology(struct json_object *meth, const struct nb_opts *o)
{
	bench_json_str(meth, "placement",
		       "caller pinned to the first allowed CPU; pool workers pinned to the first and second");
	bench_json_u64(meth, "region_bytes", o->size, true);
	bench_json_u64(meth, "page_bytes", 4096, true);
	bench_json_u64(meth, "reps", o->reps, true);
	bench_json_str(meth, "statistic", "median of reps after 2 warm-up turns; cells take turns in every repetition");
	bench_json_str(meth, "harvest",
		       "get-and-clear of a view into a KVM bitmap + runs (pgt_dirty_harvest after the kernel pass); refill not timed");
	bench_json_str(meth, "workers",
		       "1 = shards taken in the calling thread; pool = handed to worker threads (wake-up included)");
}

static struct json_object *cell_json(size_t k, double density, uint64_t bits, size_t nruns,
				     const uint64_t *med)
{
	const struct cell *cl = &cells[k];
	struct json_object *e = json_object_new_object();

	bench_json_str(e, "kind", cl->kind);
	json_object_object_add(e, "shards", json_object_new_int((int)cl->shards));
	json_object_object_add(e, "workers", json_object_new_int((int)cl->workers));
	bench_json_str(e, "run_in", cl->pool || cl->workers > 1 ? "pool" : "caller");
	bench_json_dbl(e, "dirty_fraction", density, true);
	bench_json_u64(e, "dirty_pages", bits, true);
	bench_json_u64(e, "runs", nruns, true);
	bench_json_u64(e, "harvest_ns", med[k], med[k] > 0);
	if (k)
		bench_json_dbl(e, "vs_flat", (double)med[k] / (double)med[0], med[0] > 0);
	if (k && strcmp(cl->kind, "flat") && !cl->pool && cl->workers == 1)
		bench_json_dbl(e, "merge_cost_ns", (double)med[k] - (double)med[0], true);
	bench_json_str(e, "status", med[k] ? "ok" : "failed");
	return e;
}

/* All cells at one density, taking turns; medians into @med. */
static void run_density(const struct nb_opts *o, size_t d, const int *cpus, int ncpus,
			uint64_t *med, struct json_object *results)
{
	uint64_t nbits = o->size >> 12, seed = o->seed + d;
	struct cell_state cs[NC];
	struct pattern p;
	size_t words = (size_t)((nbits + 63) / 64);
	unsigned long *bm = calloc(words, sizeof(long));
	struct pgt_run *runs;
	bool ok[NC];

	make_pattern(&p, nbits, densities[d], &seed);
	runs = calloc(p.n + 1, sizeof(*runs));
	bench_note("numa: %.1f %% dirty, %zu runs", densities[d] * 100, p.n);
	for (size_t k = 0; k < NC; k++)
		ok[k] = !cell_open(&cells[k], &cs[k], nbits, o->reps, cpus, ncpus);
	/*
	 * Cells take turns within each repetition, in a rotating order, so a
	 * change of load on this shared host hits all of them alike; two
	 * warm-up turns.
	 */
	for (unsigned r = 0; r < o->reps + 2; r++)
		for (size_t i = 0; i < NC; i++) {
			size_t k = (i + r) % NC; /* rotate: no cell always follows a pool */
			uint64_t ns;

			if (!ok[k])
				continue;
			ns = cell_harvest(&cs[k], &p, nbits, bm, runs);
			if (r >= 2)
				cs[k].t[r - 2] = ns;
		}
	for (size_t k = 0; k < NC; k++)
		med[k] = ok[k] ? bench_quantile_u64(cs[k].t, o->reps, 0.5) : 0;
	for (size_t k = 0; k < NC; k++) {
		json_object_array_add(results, cell_json(k, densities[d], cs[k].bits, p.n, med));
		cell_close(&cs[k]);
	}
	free(bm);
	free(runs);
	free(p.r);
}

static void add_ratio(struct json_object *ratios, const char *key, uint64_t num, uint64_t den,
		      const char *op, double goal, const char *what)
{
	json_object_object_add(ratios, key, bench_ratio((double)num / (double)den, num && den,
							op, goal, what));
}

/* headline at 1 % dirty (index 1); cells: 0 flat, 3 four shards inline,
 * 2 two shards inline, 5 four shards in one pool worker, 7 two workers */
static void nb_ratios(struct json_object *ratios, uint64_t med[][NC])
{
	add_ratio(ratios, "shard_merge_overhead", med[1][3], med[1][0], "<=", 1.05,
		  "4-shard harvest in one worker / flat harvest, 1 % dirty");
	add_ratio(ratios, "shard_merge_overhead_2", med[1][2], med[1][0], "<=", 1.05,
		  "2-shard harvest in one worker / flat harvest, 1 % dirty");
	add_ratio(ratios, "shard_split_overhead", med[1][3], med[1][1], "<=", 1.05,
		  "4 shards / 1 shard, both in one worker, 1 % dirty: the split and merge alone");
	add_ratio(ratios, "two_workers_speedup_10pct", med[2][3], med[2][7], NULL, 0,
		  "4 shards: one worker / two pool workers, 10 % dirty (2 shared cores)");
	add_ratio(ratios, "pool_handoff_1pct", med[1][5], med[1][3], NULL, 0,
		  "4 shards: one pool worker / in the caller, 1 % dirty (thread wake-up)");
}

static void nb_print(uint64_t med[][NC])
{
	for (size_t d = 0; d < 3; d++) {
		printf("%.1f %% dirty:\n", densities[d] * 100);
		for (size_t k = 0; k < NC; k++)
			printf("  %-8s shards %u workers %u %-6s %9.1f us  x%.3f\n", cells[k].kind,
			       cells[k].shards, cells[k].workers,
			       cells[k].pool || cells[k].workers > 1 ? "pool" : "caller",
			       (double)med[d][k] / 1000.0,
			       med[d][0] ? (double)med[d][k] / (double)med[d][0] : 0.0);
	}
	printf("ratio shard_merge_overhead %.3f (goal <= 1.05)\n",
	       med[1][0] ? (double)med[1][3] / (double)med[1][0] : 0.0);
}

int bench_numa_main(int argc, char **argv)
{
	struct nb_opts o = { .seed = 0x9e3779b97f4a7c15ull };
	struct json_object *root, *host, *meth, *results, *ratios;
	uint64_t med[3][NC];
	int cpus[64], ncpus, ret;
	double load[3];
	struct utsname u;

	ret = nb_parse(argc, argv, &o);
	if (ret >= 0)
		return ret;
	bench_set_quiet(o.json);
	json_c_set_serialization_double_format("%.6g", JSON_C_OPTION_GLOBAL);

	ncpus = bench_cpus(cpus, 64);
	root = json_object_new_object();
	host = json_object_new_object();
	meth = json_object_new_object();
	results = json_object_new_array();
	ratios = json_object_new_object();
	json_object_object_add(root, "benchmark", json_object_new_string("numa"));
	bench_json_str(root, "pgtrack_version", pgt_version());
	if (!uname(&u))
		bench_json_str(host, "kernel", u.release);
	json_object_object_add(host, "ncpus", json_object_new_int(ncpus));
	if (getloadavg(load, 3) == 3)
		bench_json_dbl(host, "load_start", load[0], true);

	/* the caller on the first CPU, pool workers on the first and second */
	bench_pin_self(cpus[0]);
	nb_methodology(meth, &o);
	for (size_t d = 0; d < 3; d++)
		run_density(&o, d, cpus, ncpus, med[d], results);
	bench_unpin_self();
	nb_ratios(ratios, med);
	if (getloadavg(load, 3) == 3)
		bench_json_dbl(host, "load_end", load[0], true);
	json_object_object_add(root, "host", host);
	json_object_object_add(root, "methodology", meth);
	json_object_object_add(root, "results", results);
	json_object_object_add(root, "ratios", ratios);
	if (o.json)
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		nb_print(med);
	json_object_put(root);
	return 0;
}
