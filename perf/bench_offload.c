/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench offload: the cost of merging device dirty logs.
 *
 * ring: a full 65,536-entry native ring (index protocol) of 1-page records
 * at random 4 KiB pages spread over a 1 GiB and a 16 GiB region (anonymous,
 * never touched: only the log is read, as a device's log would be), taken
 * with pgt_offload_harvest() into the region's one dirty view: records
 * checked, mapped, set in the region's bitmap and merged into the view. The
 * ring is refilled between repetitions (not timed) and the view harvested
 * (not timed) so every repetition starts from the same state. The same
 * records are also taken by the parser alone (lib/offload.c, no merge) to
 * show where the time goes.
 *   ratios.ingest_vs_100gbe_64b = records/s (median) / 148.8 M (a 100 GbE
 *     line of 64-byte packets, one record each), 1 GiB; goal >= 1.0
 *   ratios.ring_harvest_65536_us_p99 = p99 of one full-ring harvest, 1 GiB,
 *     in microseconds; goal <= 200
 *   (the 16 GiB figures are reported next to them)
 *
 * bitmap: a 1 GiB region's worth of dirty bitmap (1 bit per 4 KiB) at 1 %,
 * 10 % and 100 % set bits, merged into the view as a VFIO REPORT or IOMMUFD
 * bitmap is (pgt__offload_merge_bitmap: what those backends do after their
 * ioctl), and taken from a vhost-user log and merged (pgt_offload_harvest on
 * "vhost-log"), each against a plain OR of the same bitmap into a bitmap of
 * the same size, measured in turns in the same run. The OR's source and the
 * VFIO bitmap are copied just before (untimed), as the REPORT ioctl would
 * have just written it; the vhost logs are written just before too.
 *   ratios.vfio_merge_vs_or = merge / OR at 10 %; goal <= 1.2
 *   ratios.vhost_merge_vs_or = vhost log swap (the log-swap protocol; the
 *     callback is the bench acknowledging in-process) + merge + clear / OR
 *     at 10 %; goal <= 1.2
 *   ratios.vhost_xchg_merge_vs_or = the same log without a swap callback:
 *     read and cleared by atomic exchange per non-zero word; no goal
 *
 * Placement: everything runs on one thread pinned to the first allowed CPU
 * (the producer too, untimed); the engine's threads are idle.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <json-c/json.h>

#include <pgtrack.h>

#include "engine/engine_pvt.h"
#include "hal/hal.h"
#include "hal/offload/offload.h"
#include "lib/offload.h"
#include "perf/bench.h"

#define RING 65536u
#define MAX_REPS 1000
#define LINE_RATE 148.8e6 /* 100 GbE, 64-byte frames: packets per second */

struct ob_opts {
	bool json, quick;
	unsigned reps;
	uint64_t seed;
	uint64_t sizes[2];
	unsigned nsizes;
};

static void ob_usage(FILE *f)
{
	fprintf(f,
		"Usage: pgtrack-bench offload [--json] [--reps N] [--quick] [--seed S]\n"
		"Device dirty logs merged into a view: a full 65,536-record ring spread over\n"
		"1 GiB and 16 GiB, and dirty bitmaps (VFIO/IOMMUFD, vhost-user log) against a\n"
		"plain OR of the same bitmap.\n"
		"  -j, --json       JSON on stdout\n"
		"  -r, --reps N     measured repetitions per cell (default 101, quick 11)\n"
		"  -q, --quick      fewer repetitions, 1 GiB only\n"
		"  -S, --seed S     record and bitmap seed\n"
		"  -h, --help       this help\n");
}

/* A 4 KiB-page anonymous region, never touched, with one view. */
struct rig {
	pgt_engine *eng;
	pgt_region *r;
	pgt_dirty_view *v;
	struct pgt_region_info info;
	unsigned long *bm;
};

static int rig_open(struct rig *g, uint64_t size, char *why, size_t n)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = size, .gpa = 0,
		.track = PGT_TRACK_DIRTY, .numa_node = -1, .name = "bench-offload",
	};
	int ret;

	memset(g, 0, sizeof(*g));
	ret = pgt_engine_open(NULL, &g->eng);
	if (!ret)
		ret = pgt_region_create(g->eng, &rc, &g->r);
	if (!ret)
		ret = pgt_dirty_view_open(g->r, &g->v);
	if (ret) {
		snprintf(why, n, "region of %llu MiB: %s", (unsigned long long)(size >> 20),
			 strerror(-ret));
		pgt_engine_close(g->eng);
		g->eng = NULL;
		return ret;
	}
	g->info.size = sizeof(g->info);
	pgt_region_info(g->r, &g->info);
	g->bm = calloc(g->info.npages / 64 + 1, sizeof(long));
	return g->bm ? 0 : -ENOMEM;
}

static void rig_reset(struct rig *g)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = g->bm,
				 .bitmap_words = g->info.npages / 64 + 1 };

	pgt_dirty_harvest(g->v, &h);
}

static void rig_close(struct rig *g)
{
	if (!g->eng)
		return;
	pgt_dirty_view_close(g->v);
	pgt_engine_close(g->eng);
	free(g->bm);
}

static void summary(struct json_object *e, uint64_t *t, unsigned n, uint64_t *med, uint64_t *p99)
{
	*med = bench_quantile_u64(t, n, 0.5);
	*p99 = bench_quantile_u64(t, n, 0.99);
	bench_json_u64(e, "median_ns", *med, true);
	bench_json_u64(e, "p90_ns", bench_quantile_u64(t, n, 0.9), true);
	bench_json_u64(e, "p99_ns", *p99, true);
	bench_json_u64(e, "min_ns", bench_quantile_u64(t, n, 0), true);
}

/* ---- ring ---- */

struct ring_result {
	bool ok;
	double rate, rate_parse;     /* records per second, medians */
	uint64_t p99_ns;
};

static void fill_records(struct pgt_offload_rec *rec, uint64_t npages, uint64_t *seed)
{
	for (unsigned i = 0; i < RING; i++)
		rec[i] = (struct pgt_offload_rec){ PGT_OFFLOAD_REC_FLAGS(0, 1, false), 0,
						   bench_rand(seed) % npages };
}

static struct ring_result bench_ring(const struct ob_opts *o, uint64_t size,
				     struct json_object *results)
{
	struct pgt_offload_config oc = { .size = sizeof(oc), .backend = "ring" };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct json_object *e = json_object_new_object(), *p = json_object_new_object();
	struct pgt_offload_rec *rec = malloc(RING * sizeof(*rec));
	uint64_t *t = calloc(o->reps, 8), *tp = calloc(o->reps, 8), seed = o->seed, med, p99, pmed, pp99;
	struct ring_result res = { 0 };
	struct pgt_offload_range rg;
	struct pgt_ofl_prod prod;
	char label[16], why[160] = "";
	pgt_offload *dev = NULL;
	struct rig g;
	/* the parser alone: the same map on a private target */
	struct pgt_ofl_target tg = { .shift = 12 };
	struct pgt_ofl_seg seg = { .pfn = 0, .target = 0 };
	struct pgt_ofl_map map;
	struct pgt_ofl_ring pring;
	void *pmem = aligned_alloc(64, pgt__ofl_ring_bytes(RING));
	struct pgt_ofl_prod pprod;

	bench_size_label(size, label, sizeof(label));
	json_object_object_add(e, "method", json_object_new_string("ring"));
	bench_json_str(e, "backing", "anon");
	bench_json_u64(e, "size", size, true);
	bench_json_str(e, "size_label", label);
	bench_json_u64(e, "records", RING, true);
	bench_json_str(e, "placement", "one thread pinned to the first allowed CPU");
	if (rig_open(&g, size, why, sizeof(why)))
		goto skip;
	if (pgt_offload_open(g.eng, &oc, &dev) ||
	    (rg = (struct pgt_offload_range){ .iova = 0, .length = size, .gpa = 0 },
	     pgt_offload_attach(dev, &rg, 1)) ||
	    pgt_offload_start(dev, 0) || pgt_offload_info(dev, &info)) {
		snprintf(why, sizeof(why), "opening the ring device failed");
		goto skip;
	}
	pgt__ofl_prod_init(&prod, info.ring, info.ring_entries);
	tg.npages = size >> 12;
	tg.bits = calloc(tg.npages / 64 + 1, 8);
	seg.npages = tg.npages;
	if (!tg.bits || !pmem || pgt__ofl_map_init(&map, &seg, 1, &tg, 1) ||
	    pgt__ofl_ring_create(&pring, pmem, pgt__ofl_ring_bytes(RING), RING)) {
		snprintf(why, sizeof(why), "out of memory");
		goto skip;
	}
	pgt__ofl_prod_init(&pprod, pring.ctl, RING);
	bench_note("offload ring: %s, %u reps", label, o->reps);
	for (unsigned r = 0; r < o->reps + 2; r++) {
		struct pgt_ofl_stats st = { 0 };
		uint64_t t0, t1, n;
		int64_t got;

		fill_records(rec, tg.npages, &seed);
		/* library path: harvest into the view */
		rig_reset(&g);
		if (pgt__ofl_produce(&prod, rec, RING) != RING)
			goto fail;
		t0 = bench_now_ns();
		got = pgt_offload_harvest(dev, NULL);
		t1 = bench_now_ns();
		if (got <= 0)
			goto fail;
		if (r >= 2)
			t[r - 2] = t1 - t0;
		/* the parser alone, same records */
		pgt__ofl_targets_clear(&map);
		if (pgt__ofl_produce(&pprod, rec, RING) != RING)
			goto fail;
		t0 = bench_now_ns();
		n = pgt__ofl_ring_consume(&pring, &map, &st);
		t1 = bench_now_ns();
		if (n != RING || st.rejected)
			goto fail;
		if (r >= 2)
			tp[r - 2] = t1 - t0;
	}
	summary(e, t, o->reps, &med, &p99);
	summary(p, tp, o->reps, &pmed, &pp99);
	res.ok = true;
	res.rate = RING / (med / 1e9);
	res.rate_parse = RING / (pmed / 1e9);
	res.p99_ns = p99;
	bench_json_dbl(e, "records_per_sec", res.rate, true);
	bench_json_dbl(e, "ns_per_record", (double)med / RING, true);
	bench_json_dbl(p, "records_per_sec", res.rate_parse, true);
	bench_json_dbl(p, "ns_per_record", (double)pmed / RING, true);
	json_object_object_add(e, "parse_only", p);
	bench_json_str(e, "status", "ok");
	pgt__ofl_map_fini(&map);
	goto out;
fail:
	snprintf(why, sizeof(why), "a harvest did not take the whole ring");
skip:
	bench_json_str(e, "status", "skipped");
	bench_json_str(e, "reason", why);
	json_object_put(p);
out:
	json_object_array_add(results, e);
	pgt_offload_close(dev);
	rig_close(&g);
	free(tg.bits);
	free(pmem);
	free(rec);
	free(t);
	free(tp);
	return res;
}

/* ---- bitmaps ---- */

static void plain_or(uint64_t *restrict dst, const uint64_t *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] |= src[i];
}

struct bm_result {
	bool ok;
	double vfio, vhost, vhost_xchg;     /* ratios to the OR */
};

/* The vhost back-end of the swap path: the bench itself, acknowledging at
 * once (in-process); it writes whichever log it was last moved to. */
struct swap_be {
	int fd[2];
	uint64_t *map[2];
	uint64_t size;
	int cur;                 /* the fd in use */
};

static int swap_ack(void *arg, int fd, uint64_t size)
{
	struct swap_be *b = arg;

	b->cur = fd;
	b->size = size;
	return 0;
}

/* The mapping of the log in use, mapped on first sight (untimed). */
static uint64_t *swap_log(struct swap_be *b)
{
	for (int i = 0; i < 2; i++) {
		if (b->map[i] && b->fd[i] == b->cur)
			return b->map[i];
		if (!b->map[i]) {
			void *p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, b->cur, 0);

			if (p == MAP_FAILED)
				return NULL;
			b->fd[i] = b->cur;
			b->map[i] = p;
			return p;
		}
	}
	return NULL;
}

static void swap_unmap(struct swap_be *b)
{
	for (int i = 0; i < 2; i++)
		if (b->map[i])
			munmap(b->map[i], b->size);
}

static struct bm_result bench_bitmap(const struct ob_opts *o, uint64_t size, double density,
				     struct json_object *results)
{
	const uint64_t nbits = size >> 12;
	const size_t words = (size_t)(nbits / 64);
	struct pgt_offload_config vc = { .size = sizeof(vc), .backend = "vhost-log" };
	struct swap_be be = { .fd = { -1, -1 } };
	struct pgt_offload_vhost_config svc = { .size = sizeof(svc), .fd = -1, .swap = swap_ack,
						.swap_arg = &be };
	struct pgt_offload_config sc = { .size = sizeof(sc), .backend = "vhost-log",
					 .backend_config = &svc };
	struct pgt_offload_info sinfo = { .size = sizeof(sinfo) };
	struct pgt_offload_config rc = { .size = sizeof(rc), .backend = "ring" };
	struct pgt_offload_info info = { .size = sizeof(info) };
	struct json_object *e = json_object_new_object();
	struct json_object *c_or = json_object_new_object(), *c_vf = json_object_new_object(),
			   *c_vh = json_object_new_object(), *c_vs = json_object_new_object();
	/* page-aligned as the views' words and the VFIO/IOMMUFD REPORT buffer */
	uint64_t *src = aligned_alloc(4096, words * 8), *dst = aligned_alloc(4096, words * 8);
	uint64_t *rep = aligned_alloc(4096, words * 8);
	uint64_t seed = o->seed ^ 0xb17;
	uint64_t *t_or = calloc(o->reps, 8), *t_vf = calloc(o->reps, 8), *t_vh = calloc(o->reps, 8);
	uint64_t *t_vs = calloc(o->reps, 8), *slog;
	uint64_t m_or, m_vf, m_vh, m_vs, p99, set = 0;
	struct pgt_offload_range rg = { .iova = 0, .length = size, .gpa = 0 };
	struct bm_result res = { 0 };
	pgt_offload *vh = NULL, *bm = NULL, *vs = NULL;
	uint64_t *log = NULL;
	char why[160] = "", label[16];
	struct rig g;

	bench_size_label(size, label, sizeof(label));
	json_object_object_add(e, "method", json_object_new_string("bitmap"));
	bench_json_u64(e, "size", size, true);
	bench_json_str(e, "size_label", label);
	bench_json_str(e, "backing", "anon");
	bench_json_dbl(e, "dirty_fraction", density, true);
	bench_json_str(e, "placement", "one thread pinned to the first allowed CPU");
	if (!src || !dst || !rep) {
		snprintf(why, sizeof(why), "out of memory");
		goto skip;
	}
	memset(src, 0, words * 8);
	for (size_t i = 0; i < nbits; i++)
		if ((double)(bench_rand(&seed) % 1000000) < density * 1e6)
			src[i / 64] |= 1ULL << (i % 64);
	set = pgt_hal_popcount(src, words);
	bench_json_u64(e, "set_bits", set, true);
	if (rig_open(&g, size, why, sizeof(why)))
		goto skip;
	/* the VFIO/IOMMUFD merge runs on any attached bitmap-less device */
	if (pgt_offload_open(g.eng, &rc, &bm) || pgt_offload_attach(bm, &rg, 1) ||
	    pgt_offload_open(g.eng, &vc, &vh) || pgt_offload_attach(vh, &rg, 1) ||
	    pgt_offload_start(vh, 0) || pgt_offload_info(vh, &info) ||
	    pgt_offload_open(g.eng, &sc, &vs) || pgt_offload_attach(vs, &rg, 1) ||
	    pgt_offload_start(vs, 0) || pgt_offload_info(vs, &sinfo)) {
		snprintf(why, sizeof(why), "opening the devices failed");
		goto skip;
	}
	log = mmap(NULL, info.log_size, PROT_READ | PROT_WRITE, MAP_SHARED, info.log_fd, 0);
	if (log == MAP_FAILED) {
		log = NULL;
		snprintf(why, sizeof(why), "mapping the vhost log: %s", strerror(errno));
		goto skip;
	}
	be.cur = sinfo.log_fd;
	be.size = sinfo.log_size;
	bench_note("offload bitmap: %.0f %% of %s, %u reps", density * 100, label, o->reps);
	for (unsigned r = 0; r < o->reps + 2; r++) {
		uint64_t t0, t1, t2;

		/* plain OR into a cleared bitmap of the same size, its source
		 * just written as the REPORT bitmap below. The destination is
		 * cleared where the view's words are, in the untimed view
		 * reset (a harvest: PAGEMAP_SCAN, export, device drain), so
		 * both meet the same cache and TLB state; cleared after it,
		 * the OR's words were L1-hot and the view's were not */
		memset(dst, 0, words * 8);
		rig_reset(&g);
		memcpy(rep, src, words * 8);
		t0 = bench_now_ns();
		plain_or(dst, rep, words);
		t1 = bench_now_ns();
		if (r >= 2)
			t_or[r - 2] = t1 - t0;
		/* the VFIO/IOMMUFD path: the reported bitmap into the view */
		rig_reset(&g);
		/* the REPORT ioctl has just written the bitmap (as the OR's
		 * source was just written): the same cache state */
		memcpy(rep, src, words * 8);
		t0 = bench_now_ns();
		if (pgt__offload_merge_bitmap(bm, 0, 4096, rep, nbits) != (int64_t)set)
			goto fail;
		t1 = bench_now_ns();
		if (r >= 2)
			t_vf[r - 2] = t1 - t0;
		/* the vhost-user log: read-and-clear and merge */
		rig_reset(&g);
		memcpy(log, src, words * 8);
		t1 = bench_now_ns();
		if (pgt_offload_harvest(vh, NULL) != (int64_t)set)
			goto fail;
		t2 = bench_now_ns();
		if (r >= 2)
			t_vh[r - 2] = t2 - t1;
		/* the same log taken by swapping logs with the back-end */
		rig_reset(&g);
		slog = swap_log(&be);
		if (!slog)
			goto fail;
		memcpy(slog, src, words * 8);
		t1 = bench_now_ns();
		if (pgt_offload_harvest(vs, NULL) != (int64_t)set)
			goto fail;
		t2 = bench_now_ns();
		if (r >= 2)
			t_vs[r - 2] = t2 - t1;
	}
	summary(c_or, t_or, o->reps, &m_or, &p99);
	summary(c_vf, t_vf, o->reps, &m_vf, &p99);
	summary(c_vh, t_vh, o->reps, &m_vh, &p99);
	summary(c_vs, t_vs, o->reps, &m_vs, &p99);
	bench_json_dbl(c_vs, "vs_or", (double)m_vs / (double)m_or, true);
	bench_json_dbl(c_vs, "ns_per_word", (double)m_vs / (double)words, true);
	bench_json_dbl(c_vf, "vs_or", (double)m_vf / (double)m_or, true);
	bench_json_dbl(c_vh, "vs_or", (double)m_vh / (double)m_or, true);
	bench_json_dbl(c_or, "ns_per_word", (double)m_or / (double)words, true);
	bench_json_dbl(c_vf, "ns_per_word", (double)m_vf / (double)words, true);
	bench_json_dbl(c_vh, "ns_per_word", (double)m_vh / (double)words, true);
	json_object_object_add(e, "plain_or", c_or);
	json_object_object_add(e, "vfio_merge", c_vf);
	json_object_object_add(e, "vhost_read_clear_merge", c_vh);
	json_object_object_add(e, "vhost_swap_merge", c_vs);
	bench_json_str(e, "status", "ok");
	res = (struct bm_result){ true, (double)m_vf / (double)m_or, (double)m_vs / (double)m_or,
				  (double)m_vh / (double)m_or };
	goto out;
fail:
	snprintf(why, sizeof(why), "a merge did not report every set bit");
skip:
	bench_json_str(e, "status", "skipped");
	bench_json_str(e, "reason", why);
	json_object_put(c_or);
	json_object_put(c_vf);
	json_object_put(c_vh);
	json_object_put(c_vs);
out:
	json_object_array_add(results, e);
	if (log)
		munmap(log, info.log_size);
	pgt_offload_close(vh);
	pgt_offload_close(vs);
	swap_unmap(&be);
	pgt_offload_close(bm);
	rig_close(&g);
	free(src);
	free(dst);
	free(rep);
	free(t_or);
	free(t_vf);
	free(t_vh);
	free(t_vs);
	return res;
}

int bench_offload_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "reps", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const double densities[] = { 0.01, 0.1, 1.0 };
	struct ob_opts o = { .seed = 0x9e3779b97f4a7c15ull };
	struct json_object *root, *host, *meth, *results, *ratios;
	struct ring_result rr[2] = { 0 };
	struct bm_result br[4] = { 0 };
	int cpus[64], ncpus, c;
	struct utsname u;
	double load[3];

	optind = 1;
	while ((c = getopt_long(argc, argv, "jr:qS:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': o.json = true; break;
		case 'q': o.quick = true; break;
		case 'r':
			o.reps = (unsigned)strtoul(optarg, NULL, 0);
			if (!o.reps || o.reps > MAX_REPS) {
				fprintf(stderr, "bad --reps '%s'\n", optarg);
				return 2;
			}
			break;
		case 'S': o.seed = strtoull(optarg, NULL, 0) | 1; break;
		case 'h': ob_usage(stdout); return 0;
		default: ob_usage(stderr); return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "offload")) {
			ob_usage(stderr);
			return 2;
		}
	}
	if (!o.reps)
		o.reps = o.quick ? 11 : 101;
	o.sizes[0] = 1ULL << 30;
	o.sizes[1] = 16ULL << 30;
	o.nsizes = o.quick ? 1 : 2;
	bench_set_quiet(o.json);
	ncpus = bench_cpus(cpus, 64);
	bench_pin_self(cpus[0]);
	json_c_set_serialization_double_format("%.6g", JSON_C_OPTION_GLOBAL);

	root = json_object_new_object();
	host = json_object_new_object();
	meth = json_object_new_object();
	results = json_object_new_array();
	ratios = json_object_new_object();
	json_object_object_add(root, "benchmark", json_object_new_string("offload"));
	bench_json_str(root, "pgtrack_version", pgt_version());
	if (!uname(&u))
		bench_json_str(host, "kernel", u.release);
	json_object_object_add(host, "ncpus", json_object_new_int(ncpus));
	json_object_object_add(host, "cpu", json_object_new_int(cpus[0]));
	if (getloadavg(load, 3) == 3)
		bench_json_dbl(host, "load_start", load[0], true);
	bench_json_str(meth, "placement", "the measuring thread pinned to the first allowed CPU; "
		       "producer and resets on it too, untimed; engine threads idle");
	bench_json_str(meth, "ring", "65,536 one-page records at random 4 KiB pages, index protocol, "
		       "pgt_offload_harvest() into one view; parse_only: lib/offload.c without the merge");
	bench_json_str(meth, "bitmap", "1 bit per 4 KiB of a 1 GiB region (10 % also 16 GiB); the OR, the VFIO/IOMMUFD "
		       "merge, the vhost exchange read + merge and the vhost log swap + merge take "
		       "turns in every repetition, each source written just before (untimed)");
	bench_json_u64(meth, "reps", o.reps, true);
	bench_json_str(meth, "statistic", "median (and p99) of reps after 2 warm-up turns");

	for (unsigned i = 0; i < o.nsizes; i++)
		rr[i] = bench_ring(&o, o.sizes[i], results);
	for (unsigned i = 0; i < 3; i++)
		br[i] = bench_bitmap(&o, o.sizes[0], densities[i], results);
	if (o.nsizes > 1)
		br[3] = bench_bitmap(&o, o.sizes[1], densities[1], results);

	json_object_object_add(ratios, "ingest_vs_100gbe_64b",
			       bench_ratio(rr[0].rate / LINE_RATE, rr[0].ok, ">=", 1.0,
					   "ring records/s through pgt_offload_harvest(), 1 GiB, / 148.8 M"));
	json_object_object_add(ratios, "ring_harvest_65536_us_p99",
			       bench_ratio((double)rr[0].p99_ns / 1e3, rr[0].ok, "<=", 200,
					   "p99 of one full 65,536-record ring harvest, 1 GiB, us"));
	json_object_object_add(ratios, "ingest_vs_100gbe_64b_16g",
			       bench_ratio(rr[1].rate / LINE_RATE, rr[1].ok, NULL, 0,
					   "the same spread over 16 GiB"));
	json_object_object_add(ratios, "ring_harvest_65536_us_p99_16g",
			       bench_ratio((double)rr[1].p99_ns / 1e3, rr[1].ok, NULL, 0,
					   "the same spread over 16 GiB, us"));
	json_object_object_add(ratios, "vfio_merge_vs_or",
			       bench_ratio(br[1].vfio, br[1].ok, "<=", 1.2,
					   "VFIO/IOMMUFD bitmap merged into a view / plain OR, 10 %"));
	json_object_object_add(ratios, "vhost_merge_vs_or",
			       bench_ratio(br[1].vhost, br[1].ok, "<=", 1.2,
					   "vhost-user log swapped with the back-end (in-process ack), "
					   "merged and cleared / plain OR, 10 %"));
	json_object_object_add(ratios, "vhost_xchg_merge_vs_or",
			       bench_ratio(br[1].vhost_xchg, br[1].ok, NULL, 0,
					   "the same log read by atomic exchange (no swap callback) "
					   "/ plain OR, 10 %"));
	json_object_object_add(ratios, "vfio_merge_vs_or_16g",
			       bench_ratio(br[3].vfio, br[3].ok, NULL, 0, "the same, 16 GiB bitmap"));
	json_object_object_add(ratios, "vhost_merge_vs_or_16g",
			       bench_ratio(br[3].vhost, br[3].ok, NULL, 0, "the same, 16 GiB bitmap"));
	if (getloadavg(load, 3) == 3)
		bench_json_dbl(host, "load_end", load[0], true);
	json_object_object_add(root, "host", host);
	json_object_object_add(root, "methodology", meth);
	json_object_object_add(root, "results", results);
	json_object_object_add(root, "ratios", ratios);
	if (o.json) {
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		json_object_object_foreach(ratios, k, v) {
			struct json_object *x;

			printf("ratio %-32s %s\n", k,
			       json_object_object_get_ex(v, "value", &x) && x ? json_object_get_string(x) : "-");
		}
	}
	json_object_put(root);
	return 0;
}
