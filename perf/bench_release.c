/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench release: release throughput through pgtrack against the raw
 * kernel loop a VMM would write itself, on the same memory in one run, and
 * the cost of an accounting snapshot.
 *
 * Cases (one 4 KiB unit per call, in one random order shared by both sides):
 *   anon-4k       pgt_release()            vs madvise(MADV_DONTNEED) per unit
 *   hugetlb-4k    pgt_release() (checked)  vs fallocate(PUNCH_HOLE) per unit,
 *                                            plus a 2 MiB punch when a page's
 *                                            last unit goes (the raw loop keeps
 *                                            its own counters)
 *   hugetlb-4k-trusted   the same with PGT_RELEASE_TRUSTED (no zero check)
 *   hugetlb-2m    pgt_release() of whole pages vs one punch per page
 * Engine and raw loop share one mapping and each pass: each side owns half
 * the backing pages (alternating between passes) in its own random order,
 * and they take turns of 256 timed calls, so load drift on a shared machine
 * hits both alike. Memory is re-populated untimed before each pass and the
 * engine's state reset with pgt_reclaim(); the thread is pinned to one CPU.
 * ratios.release_engine_vs_raw is the median over turn pairs of anon-4k
 * engine time / raw time (goal <= 1.20); the hugetlb ratios alongside.
 * The snapshot case times pgt_account_region() on a 1 GiB anonymous region
 * (64 MiB with --quick) with half its pages resident in random places and a
 * dirty view open.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pgtrack.h>

#include "perf/bench.h"

#define MiB (1ull << 20)
#define UNIT PGT_RELEASE_UNIT
#define GPA0 (1ull << 32)

int bench_release_main(int argc, char **argv);

struct cell {
	const char *name;
	int backing;
	uint64_t len;
	uint64_t step;      /* bytes per call: 4 KiB or 2 MiB */
	uint32_t flags;
};

struct rel_ctx {
	const struct bench_opts *o;
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	uint64_t *eorder, *rorder; /* calls of each side: offsets / step */
	uint64_t ne, nr;
	uint16_t *count;           /* raw hugetlb loop: units punched per page */
};

#define CHUNK 256
/* calls per turn: enough turns for a paired median also with 2 MiB steps */
#define TURN(cl) ((cl)->step == UNIT ? CHUNK : 8)

static void populate(struct rel_ctx *c)
{
	/* untimed: a write per base page faults it in */
	for (uint64_t off = 0; off < c->info.length; off += UNIT)
		((volatile uint8_t *)c->info.addr)[off] = 1;
}

static int engine_calls(struct rel_ctx *c, const struct cell *cl, uint64_t from, uint64_t n)
{
	for (uint64_t i = from; i < from + n; i++) {
		int64_t got = pgt_release(c->eng, GPA0 + c->eorder[i] * cl->step, cl->step,
					  cl->flags, NULL);

		if (got < 0)
			return (int)got;
	}
	return 0;
}

static int raw_calls(struct rel_ctx *c, const struct cell *cl, uint64_t from, uint64_t n)
{
	uint8_t *base = c->info.addr;
	int fd = c->info.fd;

	for (uint64_t i = from; i < from + n; i++) {
		uint64_t off = c->rorder[i] * cl->step;

		if (cl->backing != PGT_BACKING_HUGETLB) {
			if (madvise(base + off, cl->step, MADV_DONTNEED))
				return -errno;
			continue;
		}
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)cl->step))
			return -errno;
		/* the least a raw VMM must do to free a hugepage: count pieces */
		if (cl->step == UNIT && ++c->count[off / (2 * MiB)] == 512 &&
		    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(off & ~(2 * MiB - 1)), (off_t)(2 * MiB)))
			return -errno;
	}
	return 0;
}

static void shuffle(uint64_t *v, uint64_t n, uint64_t *seed)
{
	for (uint64_t i = n ? n - 1 : 0; i > 0; i--) {
		uint64_t j = bench_rand(seed) % (i + 1), t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

/*
 * One measured pass. The machine is shared and its load drifts, so the two
 * sides are interleaved finely: each owns half the backing pages (which
 * half alternates between passes), in its own random order, and they take
 * turns of CHUNK calls, each turn timed. Both see the same conditions.
 */
static int pass(struct rel_ctx *c, const struct cell *cl, unsigned rep, uint64_t *ens,
		uint64_t *rns, double *ratios, size_t *nratios)
{
	uint64_t per_page = 2 * MiB > cl->step && cl->backing == PGT_BACKING_HUGETLB
				    ? 2 * MiB / cl->step : 1;
	uint64_t calls = c->info.length / cl->step, ie = 0, ir = 0, turn = 0;
	uint64_t seed = c->o->seed + rep;
	int ret = 0;

	c->ne = c->nr = 0;
	for (uint64_t i = 0; i < calls; i++) {
		if (((i / per_page) ^ rep) & 1)
			c->rorder[c->nr++] = i;
		else
			c->eorder[c->ne++] = i;
	}
	shuffle(c->eorder, c->ne, &seed);
	shuffle(c->rorder, c->nr, &seed);
	memset(c->count, 0, (c->info.length / (2 * MiB) + 1) * sizeof(*c->count));
	populate(c);
	*ens = *rns = 0;
	while (!ret && (ie < c->ne || ir < c->nr)) {
		uint64_t ke = c->ne - ie < TURN(cl) ? c->ne - ie : TURN(cl);
		uint64_t kr = c->nr - ir < TURN(cl) ? c->nr - ir : TURN(cl);
		uint64_t te, tr, t0, t1, t2;

		/* who goes first alternates, so position effects cancel */
		t0 = bench_now_ns();
		ret = (turn & 1) ? raw_calls(c, cl, ir, kr) : engine_calls(c, cl, ie, ke);
		t1 = bench_now_ns();
		if (!ret)
			ret = (turn & 1) ? engine_calls(c, cl, ie, ke) : raw_calls(c, cl, ir, kr);
		t2 = bench_now_ns();
		te = (turn & 1) ? t2 - t1 : t1 - t0;
		tr = (turn & 1) ? t1 - t0 : t2 - t1;
		*ens += te;
		*rns += tr;
		/* a turn pair is a paired sample: the median of their ratios
		 * shrugs off the load spikes of a shared machine */
		if (ke == TURN(cl) && kr == TURN(cl) && tr && ratios)
			ratios[(*nratios)++] = (double)te / (double)tr;
		ie += ke;
		ir += kr;
		turn++;
	}
	if (ret)
		return ret;
	/* the engine released its half exactly; reset it (bookkeeping only) */
	if (pgt_released_count(c->r) != (int64_t)(c->ne * cl->step / UNIT))
		return -EIO;
	return pgt_reclaim(c->eng, GPA0, c->info.length) < 0 ? -EIO : 0;
}

static void add_result(struct json_object *results, const struct cell *cl, const char *method,
		       int cpu, uint64_t *ns, unsigned n, uint64_t calls, int err, const char *why)
{
	struct json_object *e = json_object_new_object();
	char label[32];
	bool ok = !err && n;
	uint64_t med = ok ? bench_quantile_u64(ns, n, 0.5) : 0;
	double secs = (double)med / 1e9;
	uint64_t bytes = calls * cl->step;

	bench_size_label(cl->len, label, sizeof(label));
	bench_json_str(e, "bench", "release");
	bench_json_str(e, "case", cl->name);
	bench_json_str(e, "method", method);
	bench_json_str(e, "backing", pgt_backing_name(cl->backing));
	bench_json_u64(e, "size", cl->len, true);
	bench_json_str(e, "size_label", label);
	bench_json_u64(e, "step_bytes", cl->step, true);
	bench_json_u64(e, "calls", calls, true);
	json_object_object_add(e, "placement", json_object_new_int(cpu));
	bench_json_str(e, "placement_kind", "pinned, one thread");
	bench_json_u64(e, "reps", n, true);
	bench_json_u64(e, "ns_median", med, ok);
	bench_json_u64(e, "ns_p90", ok ? bench_quantile_u64(ns, n, 0.9) : 0, ok);
	bench_json_dbl(e, "ns_per_call", ok ? (double)med / (double)calls : 0, ok);
	bench_json_dbl(e, "units_per_sec", ok ? (double)(bytes / UNIT) / secs : 0, ok && secs > 0);
	bench_json_dbl(e, "bytes_per_sec", ok ? (double)bytes / secs : 0, ok && secs > 0);
	bench_json_str(e, "status", err ? "error" : (ok ? "ok" : "skipped"));
	if (!ok)
		bench_json_str(e, "reason", why ? why : strerror(-err));
	json_object_array_add(results, e);
}

/* One case. Returns the median engine/raw time ratio over turn pairs, or 0. */
static double run_cell(const struct bench_opts *o, const struct cell *cl,
		       struct json_object *results, int cpu)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)cl->backing, .length = cl->len,
		.gpa = GPA0, .numa_node = -1, .name = cl->name,
	};
	struct rel_ctx c = { .o = o };
	uint64_t *ens = calloc(o->reps, sizeof(uint64_t)), *rns = calloc(o->reps, sizeof(uint64_t));
	size_t maxpairs = (size_t)o->reps * (cl->len / cl->step / 2 / TURN(cl) + 1), npairs = 0;
	double *ratio = calloc(maxpairs, sizeof(double)), med = 0;
	unsigned n = 0;
	const char *why = NULL;
	int err = 0;

	c.info.size = sizeof(c.info);
	if (!ens || !rns || !ratio) {
		err = -ENOMEM;
		goto report;
	}
	if (cl->backing == PGT_BACKING_HUGETLB &&
	    bench_free_hugepages() < (long)(cl->len / (2 * MiB)) + 4) {
		why = "not enough free 2 MiB hugepages";
		goto report;
	}
	err = pgt_engine_open(NULL, &c.eng);
	if (!err)
		err = pgt_region_create(c.eng, &rc, &c.r);
	if (!err)
		err = pgt_region_info(c.r, &c.info);
	c.eorder = malloc(cl->len / cl->step * sizeof(uint64_t));
	c.rorder = malloc(cl->len / cl->step * sizeof(uint64_t));
	c.count = calloc(cl->len / (2 * MiB) + 1, sizeof(*c.count));
	if (!err && (!c.eorder || !c.rorder || !c.count))
		err = -ENOMEM;
	if (err)
		goto report;
	/* one untimed pass: allocations and first-use costs */
	err = pass(&c, cl, 0, &ens[0], &rns[0], NULL, NULL);
	for (unsigned i = 0; !err && i < o->reps; i++) {
		err = pass(&c, cl, i, &ens[n], &rns[n], ratio, &npairs);
		if (err)
			break;
		bench_note("release %s pass %u: engine %.3f ms, raw %.3f ms", cl->name, i,
			   (double)ens[n] / 1e6, (double)rns[n] / 1e6);
		n++;
	}
	if (!err && npairs) {
		med = bench_quantile_dbl(ratio, npairs, 0.5);
	} else if (!err && n) {
		/* too few calls for full turns: whole passes */
		for (unsigned i = 0; i < n; i++)
			ratio[i] = rns[i] ? (double)ens[i] / (double)rns[i] : 0;
		med = bench_quantile_dbl(ratio, n, 0.5);
	}
report:
	add_result(results, cl, "pgtrack", cpu, ens, n, c.ne, err, why);
	add_result(results, cl, cl->backing == PGT_BACKING_HUGETLB ? "raw-punch" : "raw-madvise",
		   cpu, rns, n, c.nr, err, why);
	if (c.eng) {
		pgt_region_destroy(c.r);
		pgt_engine_close(c.eng);
	}
	free(c.eorder);
	free(c.rorder);
	free(c.count);
	free(ens);
	free(rns);
	free(ratio);
	return med;
}

/* Accounting snapshot of a big region: the cost a monitoring loop pays. */
static void run_account(const struct bench_opts *o, struct json_object *results, int cpu)
{
	uint64_t len = o->quick ? 64 * MiB : 1ull << 30, seed = o->seed ^ 7;
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = len, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "account",
	};
	struct cell cl = { "account-snapshot", PGT_BACKING_ANON, len, UNIT, 0 };
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_account *a = calloc(1, sizeof(*a));
	unsigned reps = o->reps * 4, n = 0;
	uint64_t *ns = calloc(reps, sizeof(uint64_t));
	pgt_dirty_view *v = NULL;
	pgt_engine *eng = NULL;
	pgt_region *r = NULL;
	int err;

	err = a && ns ? pgt_engine_open(NULL, &eng) : -ENOMEM;
	if (!err && pgt_region_create(eng, &rc, &r)) {
		/* no dirty tracking here: account without a view */
		rc.track = 0;
		err = pgt_region_create(eng, &rc, &r);
	}
	if (!err)
		err = pgt_region_info(r, &info);
	if (!err && rc.track)
		err = pgt_dirty_view_open(r, &v);
	if (!err) {
		/* half the pages resident, in random places; a few released */
		for (uint64_t p = 0; p < len / UNIT; p++)
			if (bench_rand(&seed) & 1)
				((volatile uint8_t *)info.addr)[p * UNIT] = 1;
		pgt_release(eng, GPA0, 64 * UNIT, PGT_RELEASE_REPEAT_OK, NULL);
	}
	for (unsigned i = 0; !err && i < reps; i++) {
		uint64_t t0;

		a->size = sizeof(*a);
		t0 = bench_now_ns();
		err = pgt_account_region(r, 0, a);
		ns[n++] = bench_now_ns() - t0;
	}
	if (!err) {
		struct json_object *e;

		add_result(results, &cl, "pgt_account_region", cpu, ns, n, 1, 0, NULL);
		e = json_object_array_get_idx(results, json_object_array_length(results) - 1);
		bench_json_u64(e, "resident_bytes", a->total.resident, true);
		bench_json_u64(e, "metadata_bytes", a->metadata, true);
		json_object_object_add(e, "dirty_view", json_object_new_boolean(v != NULL));
	} else {
		add_result(results, &cl, "pgt_account_region", cpu, ns, 0, 1, err, NULL);
	}
	pgt_dirty_view_close(v);
	if (eng) {
		if (r)
			pgt_region_destroy(r);
		pgt_engine_close(eng);
	}
	free(a);
	free(ns);
}

int bench_release(const struct bench_opts *o, struct json_object *results,
		  struct json_object *ratios, struct json_object *info)
{
	uint64_t len = o->quick ? 16 * MiB : 256 * MiB;
	const struct cell cells[] = {
		{ "anon-4k", PGT_BACKING_ANON, len, UNIT, 0 },
		{ "hugetlb-4k", PGT_BACKING_HUGETLB, len / 4, UNIT, 0 },
		{ "hugetlb-4k-trusted", PGT_BACKING_HUGETLB, len / 4, UNIT, PGT_RELEASE_TRUSTED },
		{ "hugetlb-2m", PGT_BACKING_HUGETLB, len, 2 * MiB, 0 },
	};
	double r[4] = { 0 };
	int cpus[256], ncpu = bench_cpus(cpus, 256), cpu = cpus[ncpu - 1];

	bench_pin_self(cpu);
	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		if (o->no_hugetlb && cells[i].backing == PGT_BACKING_HUGETLB)
			continue;
		if (o->no_anon && cells[i].backing == PGT_BACKING_ANON)
			continue;
		r[i] = run_cell(o, &cells[i], results, cpu);
	}
	run_account(o, results, cpu);
	bench_unpin_self();

	json_object_object_add(ratios, "release_engine_vs_raw",
			       bench_ratio(r[0], r[0] > 0, "<=", 1.20,
					   "anon 4 KiB units: pgt_release() time / madvise loop time"));
	json_object_object_add(ratios, "release_hugetlb_4k_engine_vs_raw",
			       bench_ratio(r[1], r[1] > 0, NULL, 0,
					   "4 KiB pieces of 2 MiB hugetlb, zero-checked: pgt_release() "
					   "time / counting punch loop time"));
	json_object_object_add(ratios, "release_hugetlb_4k_trusted_vs_raw",
			       bench_ratio(r[2], r[2] > 0, "<=", 1.20,
					   "the same with PGT_RELEASE_TRUSTED"));
	json_object_object_add(ratios, "release_hugetlb_2m_engine_vs_raw",
			       bench_ratio(r[3], r[3] > 0, "<=", 1.20,
					   "whole 2 MiB pages: pgt_release() / punch loop"));
	json_object_object_add(info, "release",
			       json_object_new_string(
				       "one 4 KiB unit (or 2 MiB page) per call; engine and raw loop "
				       "on one mapping, each owning half its pages in its own random "
				       "order, taking turns of 256 timed calls; memory re-populated "
				       "untimed per pass, engine state reset with pgt_reclaim(); one "
				       "thread pinned to one CPU, which side goes first alternating; "
				       "ratio = median over turn pairs of engine/raw time"));
	return 0;
}

/* Standalone entry: pgtrack-bench release [--json] [--quick] [--reps N]. */
int bench_release_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "no-hugetlb", no_argument, NULL, 'H' },
		{ "seed", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_opts o = { .seed = 0x9e3779b97f4a7c15ull };
	struct json_object *root, *results, *ratios, *info;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jqr:HS:v", lopts, NULL)) != -1) {
		switch (c) {
		case 'j': o.json = true; break;
		case 'q': o.quick = true; break;
		case 'H': o.no_hugetlb = true; break;
		case 'v': o.verbose = true; break;
		case 'r': o.reps = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'S': o.seed = strtoull(optarg, NULL, 0) | 1; break;
		default:
			fprintf(stderr, "usage: pgtrack-bench release [--json] [--quick] [--reps N] "
				"[--no-hugetlb] [--seed N] [--verbose]\n");
			return 2;
		}
	}
	if (!o.reps || o.reps > 1000)
		o.reps = o.quick ? 3 : 7;
	bench_set_quiet(o.json && !o.verbose);
	root = json_object_new_object();
	results = json_object_new_array();
	ratios = json_object_new_object();
	info = json_object_new_object();
	bench_json_str(root, "bench", "release");
	ret = bench_release(&o, results, ratios, info);
	json_object_object_add(root, "methodology", info);
	json_object_object_add(root, "results", results);
	json_object_object_add(root, "ratios", ratios);
	if (o.json) {
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED));
	} else {
		for (size_t i = 0; i < json_object_array_length(results); i++) {
			struct json_object *e = json_object_array_get_idx(results, i), *x;
			const char *k[] = { "case", "method", "size_label", "ns_median",
					    "units_per_sec", "bytes_per_sec", "status" };

			for (size_t j = 0; j < sizeof(k) / sizeof(k[0]); j++)
				printf("%s=%s ", k[j], json_object_object_get_ex(e, k[j], &x) ?
						       json_object_get_string(x) : "-");
			putchar('\n');
		}
		json_object_object_foreach(ratios, key, val)
			printf("ratio %s %s\n", key, json_object_to_json_string(val));
	}
	json_object_put(root);
	return ret ? 1 : 0;
}
