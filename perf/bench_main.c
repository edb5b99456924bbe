/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-bench: dirty-tracking and first-touch benchmarks.
 *
 *   pgtrack-bench [dirty|touch|release|all] | numa [--json] [--sizes 256M,1G] [--quick]
 *                 [--reps N] [--methods list] [--no-hugetlb] [--access w,r]
 *                 [--budget SECONDS] [--seed N] [--verbose]
 *
 * Prints one JSON object (--json) or a table. Methodology: perf/README.md.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <pgtrack.h>

#include "perf/bench.h"

#ifndef PGT_BENCH_BUILDTYPE
#define PGT_BENCH_BUILDTYPE "unknown"
#endif

static const char *const method_names[BM__COUNT] = {
	[BM_UNTRACKED] = "untracked",
	[BM_RAW_IOCTL] = "raw-ioctl",
	[BM_PAGEMAP_READ] = "pagemap-read",
	[BM_UFFD_ASYNC] = "uffd-async",
	[BM_UFFD_SYNC] = "uffd-sync",
	[BM_MPROTECT] = "mprotect",
	[BM_SOFT_DIRTY] = "soft-dirty",
};

const char *bench_method_name(int m)
{
	return m >= 0 && m < BM__COUNT ? method_names[m] : "?";
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static cpu_set_t allowed;
static bool allowed_set;

int bench_cpus(int *cpus, int cap)
{
	int n = 0;

	if (!allowed_set) {
		CPU_ZERO(&allowed);
		if (sched_getaffinity(0, sizeof(allowed), &allowed))
			CPU_SET(0, &allowed);
		allowed_set = true;
	}
	for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[n++] = c;
	return n ? n : 1;
}

int bench_pin_self(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return -pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

void bench_unpin_self(void)
{
	int c;

	bench_cpus(&c, 1);
	pthread_setaffinity_np(pthread_self(), sizeof(allowed), &allowed);
}

static long read_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "re");
	long v;

	if (!f)
		return dflt;
	if (fscanf(f, "%ld", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

long bench_free_hugepages(void)
{
	return read_long("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", -1);
}

long bench_max_map_count(void)
{
	return read_long("/proc/sys/vm/max_map_count", 65530);
}

long bench_map_count(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int ch;

	if (!f)
		return 0;
	while ((ch = getc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static bool quiet;

void bench_set_quiet(bool q)
{
	quiet = q;
}

void bench_note(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	fputs("pgtrack-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank; the median of an even count is the lower middle. */
static size_t rank(size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);

	if (q == 0.5)
		i = (n - 1) / 2;
	return i < n ? i : n - 1;
}

uint64_t bench_quantile_u64(uint64_t *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[rank(n, q)];
}

double bench_quantile_dbl(double *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_dbl);
	return v[rank(n, q)];
}

void bench_size_label(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ull << 30) && !(b & ((1ull << 30) - 1)))
		snprintf(buf, len, "%lluG", (unsigned long long)(b >> 30));
	else if (b >= (1ull << 20) && !(b & ((1ull << 20) - 1)))
		snprintf(buf, len, "%lluM", (unsigned long long)(b >> 20));
	else
		snprintf(buf, len, "%lluK", (unsigned long long)(b >> 10));
}

uint64_t bench_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

void bench_json_dbl(struct json_object *o, const char *key, double v, bool ok)
{
	json_object_object_add(o, key, ok ? json_object_new_double(v) : NULL);
}

void bench_json_u64(struct json_object *o, const char *key, uint64_t v, bool ok)
{
	json_object_object_add(o, key, ok ? json_object_new_uint64(v) : NULL);
}

void bench_json_str(struct json_object *o, const char *key, const char *s)
{
	json_object_object_add(o, key, s ? json_object_new_string(s) : NULL);
}

struct json_object *bench_ratio(double value, bool ok, const char *goal_op, double goal,
				const char *what)
{
	struct json_object *r = json_object_new_object();

	bench_json_dbl(r, "value", value, ok);
	bench_json_dbl(r, "goal", goal, goal_op != NULL);
	bench_json_str(r, "goal_op", goal_op);
	if (goal_op && ok)
		json_object_object_add(r, "met", json_object_new_boolean(
			!strcmp(goal_op, "<=") ? value <= goal : value >= goal));
	else
		json_object_object_add(r, "met", NULL);
	bench_json_str(r, "what", what);
	return r;
}

/* ---------------------------------------------------------------- */

static int parse_size(const char *s, uint64_t *out)
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
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	if (*end || !v || (v & ((2ull << 20) - 1)))
		return -EINVAL; /* hugetlb needs whole 2 MiB pages */
	*out = v;
	return 0;
}

static int parse_list(char *arg, int (*one)(const char *, void *), void *ctx)
{
	char *save = NULL;

	for (char *t = strtok_r(arg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int ret = one(t, ctx);

		if (ret)
			return ret;
	}
	return 0;
}

static int one_size(const char *t, void *ctx)
{
	struct bench_opts *o = ctx;

	if (o->nsizes == BENCH_MAX_SIZES)
		return -E2BIG;
	return parse_size(t, &o->sizes[o->nsizes++]);
}

static int one_method(const char *t, void *ctx)
{
	struct bench_opts *o = ctx;

	for (int m = 0; m < BM__COUNT; m++)
		if (!strcmp(t, method_names[m])) {
			o->methods |= 1u << m;
			return 0;
		}
	return -EINVAL;
}

static int one_access(const char *t, void *ctx)
{
	struct bench_opts *o = ctx;

	if (!strcmp(t, "write") || !strcmp(t, "w"))
		o->touch_access |= 1;
	else if (!strcmp(t, "read") || !strcmp(t, "r"))
		o->touch_access |= 2;
	else
		return -EINVAL;
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: pgtrack-bench [dirty|touch|release|all] [options]\n"
	      "       pgtrack-bench numa [--json] [--quick] (see --help after numa)\n"
	      "       pgtrack-bench offload [--json] [--quick] (see --help after offload)\n"
	      "  --json            print one JSON object on stdout\n"
	      "  --sizes LIST      region sizes, e.g. 256M,1G (multiples of 2M)\n"
	      "  --quick           small sizes, few repetitions (CI smoke)\n"
	      "  --reps N          measured repetitions per cell\n"
	      "  --methods LIST    of untracked,raw-ioctl,pagemap-read,uffd-async,\n"
	      "                    uffd-sync,mprotect,soft-dirty (default: all)\n"
	      "  --no-hugetlb      skip the 2 MiB hugetlb cells\n"
	      "  --no-anon         skip the 4 KiB anonymous cells\n"
	      "  --access LIST     touch: write,read (default: write)\n"
	      "  --budget SECONDS  soft time cap per cell (default 25, --quick 2)\n"
	      "  --seed N          page-selection seed\n"
	      "  --verbose         progress on stderr also with --json\n", f);
}

/* First line of @path (trailing newline dropped) into @buf; false if unreadable. */
static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool ok = f && fgets(buf, (int)len, f);

	if (f)
		fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = 0;
	return ok;
}

/* /sys/devices/system/cpu/vulnerabilities/<name>: state */
static struct json_object *host_mitigations(void)
{
	const char *dir = "/sys/devices/system/cpu/vulnerabilities";
	struct json_object *o = json_object_new_object();
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512], line[256];

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (read_line(path, line, sizeof(line)))
			bench_json_str(o, e->d_name, line);
	}
	if (d)
		closedir(d);
	return o;
}

/* The kernel options that move fault and TLB-flush costs (/proc/config.gz or /boot). */
static struct json_object *host_kconfig(const char *release)
{
	static const char *const keys[] = {
		"CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=", "CONFIG_PREEMPT_NONE=",
		"CONFIG_PREEMPT_VOLUNTARY=", "CONFIG_PREEMPT=", "CONFIG_PREEMPT_DYNAMIC=",
		"CONFIG_HZ=", "CONFIG_PARAVIRT=", "CONFIG_PVM_GUEST=", "CONFIG_KVM_GUEST=",
		"CONFIG_BROADCAST_TLB_FLUSH=", "CONFIG_TRANSPARENT_HUGEPAGE=",
		"CONFIG_PTE_MARKER_UFFD_WP=", "CONFIG_MEM_SOFT_DIRTY=", "CONFIG_USERFAULTFD=",
		"CONFIG_MITIGATION_RETPOLINE=", "CONFIG_MITIGATION_RETHUNK=",
	};
	struct json_object *o = json_object_new_object();
	char cmd[320], line[256];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "{ gzip -dc /proc/config.gz || cat /boot/config-%s; } "
		 "2>/dev/null", release);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strncmp(line, keys[i], strlen(keys[i]))) {
				char *eq = strchr(line, '=');

				*eq = 0;
				bench_json_str(o, line, eq + 1);
			}
	}
	if (f)
		pclose(f);
	return o;
}

/* Jiffies of the "cpu" line of /proc/stat: [0] total, [1] steal, [2] idle+iowait. */
static bool read_stat(uint64_t *t)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "re");
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
			   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) : 0;

	if (f)
		fclose(f);
	if (n < 8)
		return false;
	/* guest time (8, 9) is already counted in user */
	t[0] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	t[1] = v[7];
	t[2] = v[3] + v[4];
	return true;
}

/* The load seen during the run: steal and busy share of all CPUs, from /proc/stat. */
static void add_run_load(struct json_object *h, const uint64_t *s0)
{
	uint64_t s1[3];
	double load[3];

	if (getloadavg(load, 3) == 3)
		bench_json_dbl(h, "load_end", load[0], true);
	if (!read_stat(s1) || s1[0] <= s0[0])
		return;
	bench_json_dbl(h, "steal_percent", 100.0 * (double)(s1[1] - s0[1]) /
		       (double)(s1[0] - s0[0]), true);
	bench_json_dbl(h, "busy_percent", 100.0 * (1.0 - (double)(s1[2] - s0[2]) /
		       (double)(s1[0] - s0[0])), true);
}

/* cmdline, mitigations, kernel config, THP, hypervisor: what two runs must share. */
static void add_host_kernel(struct json_object *h, const char *release)
{
	char line[4096];
	FILE *f;

	if (read_line("/proc/cmdline", line, sizeof(line)))
		bench_json_str(h, "cmdline", line);
	json_object_object_add(h, "mitigations", host_mitigations());
	json_object_object_add(h, "kernel_config", host_kconfig(release));
	if (read_line("/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof(line)))
		bench_json_str(h, "thp_enabled", line);
	f = fopen("/proc/cpuinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10)) {
			line[strcspn(line, "\n")] = 0;
			bench_json_str(h, "cpu_model", strchr(line, ':') ? strchr(line, ':') + 2 : line);
		} else if (!strncmp(line, "flags", 5)) {
			/* page-table isolation without PCID flushes the whole user
			 * TLB at every syscall: every harvest pays for it */
			line[strcspn(line, "\n")] = 0;
			if (strlen(line) + 1 < sizeof(line))
				strcat(line, " ");
			json_object_object_add(h, "cpu_pti", json_object_new_boolean(strstr(line, " pti ") != NULL));
			json_object_object_add(h, "cpu_pcid", json_object_new_boolean(strstr(line, " pcid ") != NULL));
			break;
		}
	}
	if (f)
		fclose(f);
	f = popen("dmesg 2>/dev/null | grep -m1 'Hypervisor detected'", "r");
	if (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		bench_json_str(h, "hypervisor", strstr(line, "detected: ") ?
			       strstr(line, "detected: ") + 10 : line);
	}
	if (f)
		pclose(f);
}

static void add_host(struct json_object *root, const struct bench_opts *o, const char *which)
{
	struct json_object *h = json_object_new_object(), *op = json_object_new_object();
	struct json_object *sizes = json_object_new_array(), *cpus = json_object_new_array();
	struct pgt_probe p = { .size = sizeof(p) };
	struct utsname u;
	int cpu[64], n = bench_cpus(cpu, 64);
	double load[3] = { 0 };

	json_object_object_add(root, "benchmark", json_object_new_string(which));
	bench_json_str(root, "pgtrack_version", pgt_version());
	bench_json_str(root, "build_type", PGT_BENCH_BUILDTYPE);
	if (!uname(&u)) {
		bench_json_str(h, "kernel", u.release);
		bench_json_str(h, "kernel_version", u.version);
		add_host_kernel(h, u.release);
	}
	for (int i = 0; i < n; i++)
		json_object_array_add(cpus, json_object_new_int(cpu[i]));
	json_object_object_add(h, "cpus", cpus);
	if (getloadavg(load, 3) == 3)
		bench_json_dbl(h, "load_start", load[0], true);
	bench_json_u64(h, "free_hugepages_2m_start", (uint64_t)bench_free_hugepages(),
		       bench_free_hugepages() >= 0);
	bench_json_u64(h, "max_map_count", (uint64_t)bench_max_map_count(), true);
	if (!pgt_probe(&p)) {
		bench_json_str(h, "best_dirty_method", pgt_dirty_method_name(p.best_dirty_method));
		json_object_object_add(h, "pagemap_scan", json_object_new_boolean(p.pagemap_scan));
		json_object_object_add(h, "soft_dirty", json_object_new_boolean(p.soft_dirty));
		json_object_object_add(h, "touch_tracking", json_object_new_boolean(p.touch_tracking));
	}
	json_object_object_add(root, "host", h);

	json_object_object_add(op, "quick", json_object_new_boolean(o->quick));
	json_object_object_add(op, "reps", json_object_new_int((int)o->reps));
	for (unsigned i = 0; i < o->nsizes; i++)
		json_object_array_add(sizes, json_object_new_uint64(o->sizes[i]));
	json_object_object_add(op, "sizes", sizes);
	json_object_object_add(op, "hugetlb", json_object_new_boolean(!o->no_hugetlb));
	json_object_object_add(op, "anon", json_object_new_boolean(!o->no_anon));
	bench_json_u64(op, "seed", o->seed, true);
	bench_json_dbl(op, "cell_budget_s", o->cell_budget_s, true);
	json_object_object_add(root, "options", op);
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : "-";
}

/* A ratio, its spread, and the primitive costs behind it (ns/page). */
static void print_ratio(const char *k, struct json_object *v)
{
	struct json_object *p;

	printf("ratio %-28s %10s  goal %s %s  met %s  trusted %s", k, jstr(v, "value"),
	       jstr(v, "goal_op"), jstr(v, "goal"), jstr(v, "met"), jstr(v, "trusted"));
	if (json_object_object_get_ex(v, "predicted_from_primitives", &p))
		printf("  predicted %s", jstr(v, "predicted_from_primitives"));
	printf("\n");
	if (json_object_object_get_ex(v, "primitives", &p) && p) {
		printf("      ns/page:");
		json_object_object_foreach(p, pk, pv)
			printf(" %s=%s", pk, pv ? json_object_get_string(pv) : "-");
		printf("\n");
	}
}

/* The table for humans: one line per result, then the ratios. */
static void print_text(struct json_object *root)
{
	struct json_object *res, *rat, *prim;

	if (json_object_object_get_ex(root, "primitives", &prim)) {
		printf("primitives (ns):");
		json_object_object_foreach(prim, pk, pv)
			if (strcmp(pk, "units"))
				printf(" %s=%s", pk, pv ? json_object_get_string(pv) : "-");
		printf("\n");
	}
	if (json_object_object_get_ex(root, "results", &res)) {
		for (size_t i = 0; i < json_object_array_length(res); i++) {
			struct json_object *e = json_object_array_get_idx(res, i), *tmp;

			if (json_object_object_get_ex(e, "faults_per_sec_median", &tmp))
				printf("touch %-9s %-7s %5s %-5s %-9s runs %-2s  %12s faults/s  "
				       "%8s ns/fault  %s %s\n",
				       jstr(e, "method"), jstr(e, "backing"), jstr(e, "size_label"),
				       jstr(e, "access"), jstr(e, "placement_kind"), jstr(e, "runs"),
				       jstr(e, "faults_per_sec_median"),
				       jstr(e, "ns_per_fault_median"), jstr(e, "status"),
				       strcmp(jstr(e, "status"), "ok") ? jstr(e, "reason") : "");
			else
				printf("dirty %-12s %-7s %5s %6s%% w%-2s rounds %-2s harvest %10s ns "
				       "(p90 %10s)  writer %8s ns/page  pages %-7s %s %s\n",
				       jstr(e, "method"), jstr(e, "backing"), jstr(e, "size_label"),
				       jstr(e, "dirty_percent"), jstr(e, "writers"), jstr(e, "rounds"),
				       jstr(e, "harvest_median_ns"), jstr(e, "harvest_p90_ns"),
				       jstr(e, "writer_ns_per_page"), jstr(e, "pages"),
				       jstr(e, "status"),
				       strcmp(jstr(e, "status"), "ok") ? jstr(e, "reason") : "");
		}
	}
	if (json_object_object_get_ex(root, "ratios", &rat)) {
		json_object_object_foreach(rat, k, v)
			print_ratio(k, v);
	}
}

/* The commands that take their own options: the command line as it is. */
static int other_command(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
		{ "numa", bench_numa_main },
		{ "offload", bench_offload_main },
		{ "kernels", bench_kernels_main },
		{ "refine", bench_refine_main },
	};

	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;
		for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
			if (!strcmp(argv[i], cmds[k].name))
				return cmds[k].fn(argc, argv);
		break;
	}
	return -1;
}

/* One option of dirty/touch/release/all; 0, or the exit status. */
static int one_opt(int c, struct bench_opts *o, bool *reps_set, bool *budget_set)
{
	switch (c) {
	case 'j': o->json = true; return 0;
	case 'q': o->quick = true; return 0;
	case 'H': o->no_hugetlb = true; return 0;
	case 'A': o->no_anon = true; return 0;
	case 'v': o->verbose = true; return 0;
	case 's':
		if (!parse_list(optarg, one_size, o))
			return 0;
		fprintf(stderr, "bad --sizes '%s' (multiples of 2M, e.g. 256M,1G)\n", optarg);
		return 2;
	case 'r':
		o->reps = (unsigned)strtoul(optarg, NULL, 0);
		*reps_set = true;
		if (o->reps && o->reps <= 1000)
			return 0;
		fprintf(stderr, "bad --reps '%s'\n", optarg);
		return 2;
	case 'm':
		if (!parse_list(optarg, one_method, o))
			return 0;
		fprintf(stderr, "bad --methods '%s'\n", optarg);
		usage(stderr);
		return 2;
	case 'a':
		if (!parse_list(optarg, one_access, o))
			return 0;
		fprintf(stderr, "bad --access '%s'\n", optarg);
		return 2;
	case 'b':
		o->cell_budget_s = strtod(optarg, NULL);
		*budget_set = o->cell_budget_s > 0;
		return 0;
	case 'S': o->seed = strtoull(optarg, NULL, 0) | 1; return 0;
	case 'h': usage(stdout); return 1;
	default: usage(stderr); return 2;
	}
}

/* Options and the command; 0 to run, else 1 + the exit status. */
static int parse_opts(int argc, char **argv, struct bench_opts *o, const char **which)
{
	static const struct option lopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "sizes", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "methods", required_argument, NULL, 'm' },
		{ "no-hugetlb", no_argument, NULL, 'H' },
		{ "no-anon", no_argument, NULL, 'A' },
		{ "access", required_argument, NULL, 'a' },
		{ "budget", required_argument, NULL, 'b' },
		{ "seed", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool reps_set = false, budget_set = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "js:qr:m:HAa:b:S:vh", lopts, NULL)) != -1)
		if ((ret = one_opt(c, o, &reps_set, &budget_set)))
			return 1 + (ret == 1 ? 0 : ret);
	if (optind < argc)
		*which = argv[optind++];
	if (optind < argc || (strcmp(*which, "dirty") && strcmp(*which, "touch") &&
			      strcmp(*which, "release") && strcmp(*which, "all"))) {
		usage(stderr);
		return 1 + 2;
	}
	if (!o->nsizes) {
		o->nsizes = o->quick ? 1 : 2;
		o->sizes[0] = o->quick ? 16ull << 20 : 256ull << 20;
		o->sizes[1] = 1ull << 30;
	}
	if (!reps_set)
		o->reps = o->quick ? 2 : 6;
	if (!budget_set)
		o->cell_budget_s = o->quick ? 2 : 25;
	if (!o->methods)
		o->methods = (1u << BM__COUNT) - 1;
	if (!o->touch_access)
		o->touch_access = 1;
	return 0;
}

/* The finished document: host load, primitives at the top, then printed. */
static void finish(struct json_object *root, const struct bench_opts *o, const uint64_t *stat0,
		   struct json_object *results, struct json_object *ratios,
		   struct json_object *info)
{
	struct json_object *h, *prim;

	if (json_object_object_get_ex(root, "host", &h))
		add_run_load(h, stat0);
	/* the dirty primitives go to the top: "primitives" */
	if (json_object_object_get_ex(info, "primitives", &prim)) {
		json_object_object_add(root, "primitives", json_object_get(prim));
		json_object_object_del(info, "primitives");
	}
	json_object_object_add(root, "methodology", info);
	json_object_object_add(root, "results", results);
	json_object_object_add(root, "ratios", ratios);
	if (o->json)
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		print_text(root);
}

int main(int argc, char **argv)
{
	struct bench_opts o = { .seed = 0x9e3779b97f4a7c15ull };
	struct json_object *root, *results, *ratios, *info;
	const char *which = "all";
	uint64_t stat0[3];
	int ret;

	ret = other_command(argc, argv);
	if (ret >= 0)
		return ret;
	ret = parse_opts(argc, argv, &o, &which);
	if (ret)
		return ret - 1;
	bench_set_quiet(o.json && !o.verbose);
	json_c_set_serialization_double_format("%.6g", JSON_C_OPTION_GLOBAL);

	root = json_object_new_object();
	results = json_object_new_array();
	ratios = json_object_new_object();
	info = json_object_new_object();
	add_host(root, &o, which);
	if (!read_stat(stat0))
		stat0[0] = UINT64_MAX;
	if (!strcmp(which, "dirty") || !strcmp(which, "all"))
		ret = bench_dirty(&o, results, ratios, info);
	if (!ret && (!strcmp(which, "touch") || !strcmp(which, "all")))
		ret = bench_touch(&o, results, ratios, info);
	if (!ret && (!strcmp(which, "release") || !strcmp(which, "all")))
		ret = bench_release(&o, results, ratios, info);
	finish(root, &o, stat0, results, ratios, info);
	json_object_put(root);
	if (ret)
		fprintf(stderr, "pgtrack-bench: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}
