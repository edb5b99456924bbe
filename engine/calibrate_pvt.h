/* SPDX-License-Identifier: MIT */
/*
 * Calibration core (issue 16): measured per-page costs of the kernel
 * primitives, the pure choice of a dirty tracker from them, and the per-boot
 * cache format. Nothing here measures or touches files: the measurement and
 * the wiring into PGT_DIRTY_AUTO are not written yet (perf/README.md, "Why
 * the ratios fell").
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

#endif /* PGT_ENGINE_CALIBRATE_PVT_H */
