/* SPDX-License-Identifier: MIT */
/*
 * Probe internals: the parsers behind pgt_probe() and pgt_probe_root(). Each
 * buffer parser takes a pointer and a length (not NUL-terminated, never read
 * past @len) so tests and the fuzzer can feed it anything. Errors:
 *   -EBADMSG  malformed (empty, garbage, truncated, wrong shape)
 *   -ERANGE   well formed but a number or string does not fit
 *   -ENOENT   (file readers) the file does not exist
 * Not installed.
 */
#ifndef PGT_PROBE_PVT_H
#define PGT_PROBE_PVT_H

#include <stddef.h>
#include <stdint.h>

#include "pgtrack/probe.h"

/* Highest NUMA node id accepted in a node list (the kernel's MAX_NUMNODES is
 * at most 1 << 10 on every architecture). */
#define PGT_PROBE_MAX_NODE 4095

/* Largest file the probe reads, /proc/cpuinfo excepted (which is cut). */
#define PGT_PROBE_FILE_MAX 4096

/* ---- buffer parsers ---- */

/*
 * A decimal unsigned number, optionally surrounded by blanks and newlines
 * (sysfs and procfs values: "512\n").
 */
int pgt__parse_u64(const char *buf, size_t len, uint64_t *out);

/*
 * A kernel release ("6.1.0-28-arm64", "6.18.44-fc-v669"): the first line,
 * copied to @rel (NUL-terminated, @relsz bytes), and its leading
 * major.minor[.patch] numbers. Returns -ERANGE when the release does not fit
 * @rel or a number does not fit an unsigned.
 */
int pgt__parse_release(const char *buf, size_t len, char *rel, size_t relsz,
		       unsigned *major, unsigned *minor, unsigned *patch);

/* A single word on the first line ("x86_64\n"), copied to @out. */
int pgt__parse_word(const char *buf, size_t len, char *out, size_t outsz);

/*
 * The selected value of a sysfs choice file: "always [madvise] never" ->
 * "madvise". -EBADMSG without exactly one [bracketed] word.
 */
int pgt__parse_bracketed(const char *buf, size_t len, char *out, size_t outsz);

/*
 * A kernel node/cpu list ("0-3,5\n"). @count receives the number of distinct
 * ids, @max_id the highest (-1 for an empty list "\n"). Ids above
 * PGT_PROBE_MAX_NODE give -ERANGE.
 */
int pgt__parse_node_list(const char *buf, size_t len, int *count, int *max_id);

/*
 * A hugepage directory name "hugepages-2048kB" (NUL-terminated @name) ->
 * bytes. -EBADMSG for any other name, -ERANGE when it overflows.
 */
int pgt__parse_hugepages_name(const char *name, uint64_t *bytes);

/*
 * /proc/<pid>/limits: the "Max locked memory" soft and hard limits in bytes,
 * UINT64_MAX for "unlimited".
 */
int pgt__parse_limits_memlock(const char *buf, size_t len, uint64_t *cur, uint64_t *max);

/*
 * /proc/cpuinfo: SIMD levels (enum pgt_simd bits) from the first "flags"
 * (x86) or "Features" (arm64) line. -EBADMSG when there is neither.
 */
int pgt__parse_cpuinfo_simd(const char *buf, size_t len, uint32_t *simd);

/* ---- file readers (@root "" or NULL is the live system) ---- */

/*
 * Read @rel (an absolute path such as "/proc/sys/kernel/osrelease") below
 * @root into @buf, at most @cap - 1 bytes, NUL-terminated.
 * Returns: the number of bytes read or -errno (-ENAMETOOLONG when the joined
 * path does not fit).
 */
long pgt__read_file(const char *root, const char *rel, char *buf, size_t cap);

/* Join @root and @rel into @out. Returns 0 or -ENAMETOOLONG. */
int pgt__path(char *out, size_t outsz, const char *root, const char *rel);

/* Read and parse a number file. */
int pgt__read_u64(const char *root, const char *rel, uint64_t *out);

/*
 * The file parts of a probe, each filling its fields of @p and recording its
 * error there. pgt__probe_release() is the only one whose failure fails
 * pgt_probe_root(); the rest leave "unknown" values (0, "") behind.
 */
int pgt__probe_release(const char *root, struct pgt_probe *p);
void pgt__probe_sysctl(const char *root, struct pgt_probe *p);
void pgt__probe_thp(const char *root, struct pgt_probe *p);
void pgt__probe_pools(const char *root, struct pgt_probe *p);
void pgt__probe_numa(const char *root, struct pgt_probe *p);
void pgt__probe_devices(const char *root, struct pgt_probe *p);
/* Only for fixture trees; the live probe asks the HAL and getrlimit(). */
void pgt__probe_cpu_files(const char *root, struct pgt_probe *p);
void pgt__probe_memlock_file(const char *root, struct pgt_probe *p);

/*
 * Choose best_dirty_method and touch_tracking from the tested fields of @p.
 */
void pgt__probe_decide(struct pgt_probe *p);

/* Live probes run so far by pgt_probe/pgt_probe_refresh (tests). */
unsigned pgt__probe_runs(void);

#endif /* PGT_PROBE_PVT_H */
