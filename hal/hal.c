/* SPDX-License-Identifier: MIT */
/*
 * Host facts the engine needs (page and cache line size, hugepage sizes) and
 * time: the raw cycle counter's rate, conversions and CLOCK_MONOTONIC.
 */
#include "hal/hal.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000ull

/* How long the cycle counter is compared with CLOCK_MONOTONIC. */
#define CALIBRATE_NS (15 * 1000 * 1000ull)

/* Results of idempotent look-ups; a racing first call computes the same. */
static _Atomic uint64_t page_size;
static _Atomic unsigned cacheline;

static pthread_once_t cycles_once = PTHREAD_ONCE_INIT;
static uint64_t cycles_hz;

uint64_t pgt_hal_page_size(void)
{
	uint64_t v = atomic_load_explicit(&page_size, memory_order_relaxed);
	long ps;

	if (v)
		return v;
	ps = sysconf(_SC_PAGESIZE);
	v = ps > 0 ? (uint64_t)ps : 4096;
	atomic_store_explicit(&page_size, v, memory_order_relaxed);
	return v;
}

static bool plausible_line(long v)
{
	return v >= 16 && v <= 1024 && !(v & (v - 1));
}

static long read_sysfs_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

unsigned pgt_hal_cacheline(void)
{
	unsigned v = atomic_load_explicit(&cacheline, memory_order_relaxed);
	long l = -1;

	if (v)
		return v;
#ifdef _SC_LEVEL1_DCACHE_LINESIZE
	/* glibc answers 0 where it has no cpuid-style source (e.g. arm64). */
	l = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
#endif
	if (!plausible_line(l))
		l = read_sysfs_long("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size");
	v = plausible_line(l) ? (unsigned)l : 64;
	atomic_store_explicit(&cacheline, v, memory_order_relaxed);
	return v;
}

/* "hugepages-2048kB" -> 2 MiB; 0 for anything else. */
static uint64_t parse_hugepage_dir(const char *name)
{
	static const char prefix[] = "hugepages-";
	unsigned long long kb;
	char *end;

	if (strncmp(name, prefix, sizeof(prefix) - 1))
		return 0;
	name += sizeof(prefix) - 1;
	if (*name < '0' || *name > '9')
		return 0;
	errno = 0;
	kb = strtoull(name, &end, 10);
	if (errno || strcmp(end, "kB") || !kb || kb > UINT64_MAX / 1024)
		return 0;
	return (uint64_t)kb * 1024;
}

int pgt__hal_hugepage_sizes_at(const char *dir, uint64_t *sizes, int cap)
{
	struct dirent *de;
	int n = 0, stored = 0;
	DIR *d;

	if (!dir || cap < 0 || (cap && !sizes))
		return -EINVAL;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		uint64_t sz = parse_hugepage_dir(de->d_name);
		int i;

		if (!sz)
			continue;
		n++;
		/* Keep the @cap smallest, ascending: insertion into @sizes. */
		if (stored == cap && (!cap || sz >= sizes[cap - 1]))
			continue;
		i = stored < cap ? stored++ : cap - 1;
		for (; i > 0 && sizes[i - 1] > sz; i--)
			sizes[i] = sizes[i - 1];
		sizes[i] = sz;
	}
	closedir(d);
	return n;
}

int pgt_hal_hugepage_sizes(uint64_t *sizes, int cap)
{
	return pgt__hal_hugepage_sizes_at("/sys/kernel/mm/hugepages", sizes, cap);
}

uint64_t pgt_hal_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* a * b / c without intermediate overflow (c != 0). */
static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
#ifdef __SIZEOF_INT128__
	unsigned __int128 q = (unsigned __int128)a * b / c;

	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
#else
	/* Exact while (a % c) * b fits, i.e. for b = 1e9 and c < 18e9. */
	return a / c * b + a % c * b / c;
#endif
}

/*
 * One (cycles, ns) pair. A preemption or interrupt between the two clock
 * reads would skew it, so keep the tightest bracket of a few tries and take
 * its midpoint.
 */
static void clock_pair(uint64_t *cyc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 16; i++) {
		uint64_t a = pgt_hal_now_ns();
		uint64_t c = pgt_cycles();
		uint64_t b = pgt_hal_now_ns();

		if (b - a < best) {
			best = b - a;
			*cyc = c;
			*ns = a + (b - a) / 2;
		}
	}
}

static uint64_t calibrate(void)
{
	uint64_t c0 = 0, t0 = 0, c1 = 0, t1 = 0; /* gcc -O3 cannot see clock_pair sets them */
	struct timespec until;
	uint64_t end;

	clock_pair(&c0, &t0);
	end = t0 + CALIBRATE_NS;
	until.tv_sec = (time_t)(end / NSEC_PER_SEC);
	until.tv_nsec = (long)(end % NSEC_PER_SEC);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
	clock_pair(&c1, &t1);
	if (c1 <= c0 || t1 <= t0)
		return 0;
	return mul_div(c1 - c0, NSEC_PER_SEC, t1 - t0);
}

static void cycles_init(void)
{
	uint64_t hz = pgt__arch_cycles_hz();

	if (!hz)
		hz = calibrate();
	/* A counter that did not move: report nanoseconds rather than divide by 0. */
	cycles_hz = hz ? hz : NSEC_PER_SEC;
}

uint64_t pgt_hal_cycles_per_sec(void)
{
	pthread_once(&cycles_once, cycles_init);
	return cycles_hz;
}

uint64_t pgt_hal_cycles_to_ns(uint64_t cycles)
{
	return mul_div(cycles, NSEC_PER_SEC, pgt_hal_cycles_per_sec());
}
