/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench: shared pieces of the benchmark program (options, timing,
 * CPU placement, statistics, JSON helpers). See perf/README.md.
 */
#ifndef PGT_BENCH_H
#define PGT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define BENCH_MAX_SIZES 8

/* Measured methods of the dirty benchmark (also the --methods names). */
enum bench_method {
	BM_UNTRACKED = 0, /* plain writes, no tracking: the writer baseline */
	BM_RAW_IOCTL,     /* hand-registered uffd WP-async + PAGEMAP_SCAN loop */
	BM_PAGEMAP_READ,  /* pread + parse of /proc/self/pagemap */
	BM_UFFD_ASYNC,    /* engine methods from here on */
	BM_UFFD_SYNC,
	BM_MPROTECT,
	BM_SOFT_DIRTY,
	BM__COUNT
};

struct bench_opts {
	bool json;
	bool quick;
	bool no_hugetlb;
	bool no_anon;
	bool verbose;
	unsigned reps;              /* measured repetitions per cell */
	unsigned nsizes;
	uint64_t sizes[BENCH_MAX_SIZES];
	uint32_t methods;           /* 1 << enum bench_method */
	uint32_t touch_access;      /* bit 0: write, bit 1: read */
	uint64_t seed;
	double cell_budget_s;       /* soft time cap per measured cell */
};

/* ---- bench_main.c ---- */
const char *bench_method_name(int m);
uint64_t bench_now_ns(void);
/* CPUs this process may run on (sorted); returns the count (>= 1). */
int bench_cpus(int *cpus, int cap);
/* Pin the calling thread to one CPU. Returns 0 or -errno. */
int bench_pin_self(int cpu);
/* Restore the calling thread's affinity to every allowed CPU. */
void bench_unpin_self(void);
/* Free 2 MiB hugepages in the pool, -1 when unknown. */
long bench_free_hugepages(void);
/* vm.max_map_count (65530 when unreadable) and mappings of this process. */
long bench_max_map_count(void);
long bench_map_count(void);
/* Progress line on stderr (unless --json without --verbose is quiet). */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_set_quiet(bool quiet);
/* Sort @v in place and return the @q quantile (0..1, nearest rank). */
uint64_t bench_quantile_u64(uint64_t *v, size_t n, double q);
double bench_quantile_dbl(double *v, size_t n, double q);
/* "256M", "1G": the label of a size in bytes. */
void bench_size_label(uint64_t bytes, char *buf, size_t len);
/* xorshift64* */
uint64_t bench_rand(uint64_t *s);

/* JSON helpers: add a key, or null when @ok is false. */
void bench_json_dbl(struct json_object *o, const char *key, double v, bool ok);
void bench_json_u64(struct json_object *o, const char *key, uint64_t v, bool ok);
void bench_json_str(struct json_object *o, const char *key, const char *s);
/*
 * A ratio entry: value (null when !ok), goal (null when goal_op is NULL),
 * goal_op ("<=" or ">="), met (null without a goal or a value).
 */
struct json_object *bench_ratio(double value, bool ok, const char *goal_op, double goal,
				const char *what);

/*
 * Benchmark memory (bench_dirty.c): @backing PGT_BACKING_HUGETLB maps 2 MiB
 * pages of a hugetlb memfd (-ENOMEM when the pool lacks them), anything
 * else private anonymous 4 KiB pages with THP off; all populated, so a
 * benchmark measures what it measures and not first touch.
 */
struct bench_mem {
	int backing;
	uint8_t *addr;
	uint64_t len, ps, npages;
	unsigned shift;         /* log2(ps) */
	int fd;                 /* the hugetlb memfd, or -1 */
};

/* Map and populate @len bytes into @m. Returns 0, or -ENOMEM with the
 * reason in @why (@wl bytes) and @m empty (addr NULL, fd -1). */
int bench_mem_map(struct bench_mem *m, int backing, uint64_t len, char *why, size_t wl);
/* The same without populating: every page faults on first touch. */
int bench_mem_map_empty(struct bench_mem *m, int backing, uint64_t len, char *why, size_t wl);
/* Unmap and close; @m is empty after (a second call does nothing). */
void bench_mem_unmap(struct bench_mem *m);

/* ---- bench_dirty.c / bench_touch.c ---- */
int bench_dirty(const struct bench_opts *o, struct json_object *results,
		struct json_object *ratios, struct json_object *info);
int bench_touch(const struct bench_opts *o, struct json_object *results,
		struct json_object *ratios, struct json_object *info);
int bench_release(const struct bench_opts *o, struct json_object *results,
		  struct json_object *ratios, struct json_object *info);
/* bench_prim.c: per-page costs of the kernel primitives behind the dirty
 * ratios (object of ns figures; see the file's header comment). */
struct json_object *bench_dirty_primitives(int cpu_here, int cpu_other, bool hugetlb);
/* numa has its own options (it drives the internal shard maps directly) */
int bench_numa_main(int argc, char **argv);
/* offload too (bench_offload.c: device logs merged into views) */
int bench_offload_main(int argc, char **argv);
int bench_kernels_main(int argc, char **argv); /* bench_kernels.c: HAL kernels, bitmap iteration */
int bench_refine_main(int argc, char **argv);  /* bench_refine.c: 4 KiB refinement of 2 MiB pages */

#endif /* PGT_BENCH_H */
