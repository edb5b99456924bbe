/* SPDX-License-Identifier: MIT */
/*
 * Calibration core (issue 16): measured per-page costs of the kernel
 * primitives, the pure choice of a dirty tracker from them, and the per-boot
 * cache format (calibrate.c, pure); the bounded measurement
 * (calib_measure.c), the cache file (calib_cache.c), the engine's lazy
 * calibration behind PGT_DIRTY_AUTO and pgt_calibration() (calib_engine.c).
 */
#ifndef PGT_ENGINE_CALIBRATE_PVT_H
#define PGT_ENGINE_CALIBRATE_PVT_H

#include <stddef.h>
#include <stdint.h>

/* Costs in ns, per 4 KiB page unless said otherwise (perf/bench_prim.c names). */
struct pgt__calib_costs {
	double wp_async_fault;   /* writer's first store under uffd WP-async */
	double mprotect_fault;   /* SIGSEGV + mprotect(RW) round trip */
	double sync_fault;       /* sync uffd-WP fault resolved by a handler */
	double scan_clean;       /* PAGEMAP_SCAN walk per clean entry */
	double reprotect;        /* re-protect of one written page, flush included */
	double pagemap_read;     /* pread of one pagemap entry */
};

/*
 * Expected tracking cost of one harvest interval for @method on @npages pages
 * of which a share @dirty is written once: writers' faults plus harvest.
 * Negative errno for an unknown method or invalid costs.
 */
double pgt__calib_round_cost(const struct pgt__calib_costs *c, int method,
			     uint64_t npages, double dirty);

/*
 * The cheapest method in @avail (1u << enum pgt_dirty_method) for @npages at
 * @dirty; -EOPNOTSUPP when none is available, -EINVAL on invalid costs.
 */
int pgt__calib_choose(const struct pgt__calib_costs *c, uint32_t avail, uint64_t npages,
		      double dirty);

#define PGT_CALIB_BOOT_ID_LEN 36

/*
 * Cache file: "pgtrack-calibration 1\nboot_id <36 chars>\n" then one
 * "<key> <ns>\n" line per field of struct pgt__calib_costs, each exactly
 * once, values finite and in [0, 1e9]. Parse @len bytes of @buf (no NUL
 * needed); 0, -ESTALE when written under another boot than @boot_id, or
 * -EINVAL for anything malformed (then @out is untouched).
 */
int pgt__calib_parse(const char *buf, size_t len, const char *boot_id,
		     struct pgt__calib_costs *out);
/* Format @c for @boot_id into @buf; the length, or -ENOSPC. */
int pgt__calib_format(const struct pgt__calib_costs *c, const char *boot_id, char *buf,
		      size_t len);

/* ---- measurement (calib_measure.c) ---- */
struct pgt_probe;

#define PGT_CALIB_PAGES 256                 /* 4 KiB pages of the scratch mapping */
#define PGT_CALIB_REPS 3
#define PGT_CALIB_DEADLINE_NS 50000000ull   /* no repetition starts after it */
/* Page operations of one measurement at most: 3 reps of (write + pagemap
 * read), of (clean scan + write + written scan) plus one scan, of mprotect. */
#define PGT_CALIB_MAX_ITER ((uint64_t)PGT_CALIB_PAGES * PGT_CALIB_REPS * 6 + PGT_CALIB_PAGES)
/* Share of pages written per harvest interval the choice assumes. */
#define PGT_CALIB_DIRTY 0.01

struct pgt__calib_stats {
	uint64_t ns;            /* the measurement's wall time */
	uint64_t iterations;    /* page operations done (<= PGT_CALIB_MAX_ITER) */
	uint32_t measured;      /* PGT_CALIB_M_* (pgtrack/probe.h) */
};

/*
 * Measure @out's costs for what @p says this kernel has. -ETIME if the
 * deadline passed before the essentials, other -errno on failure (@out then
 * untouched). @st is always filled.
 */
int pgt__calib_measure(const struct pgt_probe *p, struct pgt__calib_costs *out,
		       struct pgt__calib_stats *st);

/* ---- cache file (calib_cache.c) ---- */
int pgt__calib_boot_id(char out[PGT_CALIB_BOOT_ID_LEN + 1]);
int pgt__calib_cache_path(char *buf, size_t len);
int pgt__calib_cache_load(const char *path, const char *boot_id, struct pgt__calib_costs *out);
int pgt__calib_cache_store(const char *path, const char *boot_id,
			   const struct pgt__calib_costs *c);

/* ---- per engine (calib_engine.c) ---- */
struct pgt__calib_result {
	struct pgt__calib_costs c;
	struct pgt__calib_stats st;
	int error;              /* 0: @c usable */
	int cache_error;        /* 0: read from or written to the cache */
	uint32_t source;        /* enum pgt_calib_source */
};

struct pgt_engine;
/* The engine's calibration, done on the first call (cache or measure). */
const struct pgt__calib_result *pgt__calib_get(struct pgt_engine *e);
/* AUTO's method among @avail (1u << method) for @npages: the measured
 * choice, or the first in feature order when @res has no costs. */
int pgt__calib_pick(const struct pgt__calib_result *res, uint32_t avail, uint64_t npages);

#endif /* PGT_ENGINE_CALIBRATE_PVT_H */
