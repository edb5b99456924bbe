/* SPDX-License-Identifier: MIT */
/*
 * Parsers for the /proc and /sys files the probe reads, and the file parts of
 * the probe built on them. Everything here takes a root directory so that a
 * fixture tree can stand in for the live system, and every buffer parser is
 * bounded by an explicit length: the input may be truncated, empty, binary or
 * hostile (the fuzzer feeds it), and must give an errno, never a crash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hal/probe_pvt.h"

/* ------------------------------------------------------------------ */
/* Buffer parsers                                                      */
/* ------------------------------------------------------------------ */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digits at buf[*pos..len) into *out; at least one digit. */
static int take_u64(const char *buf, size_t len, size_t *pos, uint64_t *out)
{
	size_t i = *pos;
	uint64_t v = 0;
	bool overflow = false;

	if (i >= len || !is_digit(buf[i]))
		return -EBADMSG;
	for (; i < len && is_digit(buf[i]); i++) {
		unsigned d = (unsigned)(buf[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	*pos = i;
	if (overflow)
		return -ERANGE;
	*out = v;
	return 0;
}

int pgt__parse_u64(const char *buf, size_t len, uint64_t *out)
{
	size_t i = 0;
	uint64_t v;
	int ret;

	if (!buf || !out)
		return -EINVAL;
	while (i < len && is_blank(buf[i]))
		i++;
	ret = take_u64(buf, len, &i, &v);
	if (ret == -ERANGE) {
		/* Still malformed if garbage follows the digits. */
		while (i < len && is_blank(buf[i]))
			i++;
		return i == len ? -ERANGE : -EBADMSG;
	}
	if (ret)
		return ret;
	while (i < len && is_blank(buf[i]))
		i++;
	if (i != len)
		return -EBADMSG;
	*out = v;
	return 0;
}

/* The first line of buf, without surrounding blanks: [*start, *end). */
static void first_line(const char *buf, size_t len, size_t *start, size_t *end)
{
	size_t s = 0, e;

	while (s < len && (buf[s] == ' ' || buf[s] == '\t'))
		s++;
	e = s;
	while (e < len && buf[e] != '\n')
		e++;
	while (e > s && is_blank(buf[e - 1]))
		e--;
	*start = s;
	*end = e;
}

static bool is_word_char(char c)
{
	/* Printable ASCII without blanks: releases and arch names. */
	return c > ' ' && c < 0x7f;
}

int pgt__parse_word(const char *buf, size_t len, char *out, size_t outsz)
{
	size_t s, e;

	if (!buf || !out || !outsz)
		return -EINVAL;
	first_line(buf, len, &s, &e);
	if (s == e)
		return -EBADMSG;
	for (size_t i = s; i < e; i++)
		if (!is_word_char(buf[i]))
			return -EBADMSG;
	if (e - s >= outsz)
		return -ERANGE;
	memcpy(out, buf + s, e - s);
	out[e - s] = '\0';
	return 0;
}

static int take_uint(const char *buf, size_t len, size_t *pos, unsigned *out)
{
	uint64_t v;
	int ret = take_u64(buf, len, pos, &v);

	if (ret)
		return ret;
	if (v > UINT_MAX)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}

int pgt__parse_release(const char *buf, size_t len, char *rel, size_t relsz,
		       unsigned *major, unsigned *minor, unsigned *patch)
{
	char tmp[256];
	unsigned v[3] = { 0, 0, 0 };
	size_t i = 0, n;
	int ret;

	if (!buf || !rel || !relsz || !major || !minor || !patch)
		return -EINVAL;
	ret = pgt__parse_word(buf, len, tmp, sizeof(tmp));
	if (ret)
		return ret;
	n = strlen(tmp);
	/* "major.minor" at least: "6" or "6." or "v6.1" are not releases. */
	ret = take_uint(tmp, n, &i, &v[0]);
	if (ret)
		return ret;
	if (i >= n || tmp[i] != '.')
		return -EBADMSG;
	i++;
	ret = take_uint(tmp, n, &i, &v[1]);
	if (ret)
		return ret;
	if (i < n && tmp[i] == '.' && i + 1 < n && is_digit(tmp[i + 1])) {
		i++;
		ret = take_uint(tmp, n, &i, &v[2]);
		if (ret)
			return ret;
	}
	if (n >= relsz)
		return -ERANGE;
	memcpy(rel, tmp, n + 1);
	*major = v[0];
	*minor = v[1];
	*patch = v[2];
	return 0;
}

int pgt__parse_bracketed(const char *buf, size_t len, char *out, size_t outsz)
{
	size_t s, e, open = SIZE_MAX, close = SIZE_MAX;

	if (!buf || !out || !outsz)
		return -EINVAL;
	first_line(buf, len, &s, &e);
	for (size_t i = s; i < e; i++) {
		if (buf[i] == '[') {
			if (open != SIZE_MAX)
				return -EBADMSG;
			open = i;
		} else if (buf[i] == ']') {
			if (open == SIZE_MAX || close != SIZE_MAX)
				return -EBADMSG;
			close = i;
		} else if (!is_word_char(buf[i]) && !is_blank(buf[i])) {
			return -EBADMSG;
		} else if (open != SIZE_MAX && close == SIZE_MAX && is_blank(buf[i])) {
			return -EBADMSG;
		}
	}
	if (open == SIZE_MAX || close == SIZE_MAX || close == open + 1)
		return -EBADMSG;
	if (close - open - 1 >= outsz)
		return -ERANGE;
	memcpy(out, buf + open + 1, close - open - 1);
	out[close - open - 1] = '\0';
	return 0;
}

int pgt__parse_node_list(const char *buf, size_t len, int *count, int *max_id)
{
	uint64_t seen[(PGT_PROBE_MAX_NODE + 1) / 64] = { 0 };
	size_t i = 0, s, e;
	int n = 0, max = -1;

	if (!buf || !count || !max_id)
		return -EINVAL;
	if (!len)
		return -EBADMSG; /* sysfs prints "\n" for an empty list */
	first_line(buf, len, &s, &e);
	/* Nothing may follow the first line but blanks. */
	for (size_t j = e; j < len; j++)
		if (!is_blank(buf[j]))
			return -EBADMSG;
	i = s;
	while (i < e) {
		uint64_t a, b;
		int ret = take_u64(buf, e, &i, &a);

		if (ret)
			return ret;
		b = a;
		if (i < e && buf[i] == '-') {
			i++;
			ret = take_u64(buf, e, &i, &b);
			if (ret)
				return ret;
		}
		if (a > PGT_PROBE_MAX_NODE || b > PGT_PROBE_MAX_NODE)
			return -ERANGE;
		if (b < a)
			return -EBADMSG;
		for (uint64_t k = a; k <= b; k++) {
			uint64_t bit = 1ULL << (k % 64);

			if (!(seen[k / 64] & bit)) {
				seen[k / 64] |= bit;
				n++;
			}
		}
		if ((int)b > max)
			max = (int)b;
		if (i < e) {
			if (buf[i] != ',' || i + 1 == e)
				return -EBADMSG;
			i++;
		}
	}
	*count = n;
	*max_id = max;
	return 0;
}

int pgt__parse_hugepages_name(const char *name, uint64_t *bytes)
{
	static const char pre[] = "hugepages-";
	size_t n, i = sizeof(pre) - 1;
	uint64_t kb;
	int ret;

	if (!name || !bytes)
		return -EINVAL;
	n = strnlen(name, 256);
	if (n < i + 3 || strncmp(name, pre, i))
		return -EBADMSG;
	ret = take_u64(name, n, &i, &kb);
	if (ret)
		return ret;
	if (n - i != 2 || name[i] != 'k' || name[i + 1] != 'B' || !kb)
		return -EBADMSG;
	if (kb > UINT64_MAX / 1024)
		return -ERANGE;
	*bytes = kb * 1024;
	return 0;
}

/* A limit field of /proc/pid/limits at buf[*pos]: number or "unlimited". */
static int take_limit(const char *buf, size_t len, size_t *pos, uint64_t *out)
{
	static const char unl[] = "unlimited";
	size_t i = *pos;

	while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	if (len - i >= sizeof(unl) - 1 && !memcmp(buf + i, unl, sizeof(unl) - 1)) {
		*pos = i + sizeof(unl) - 1;
		*out = UINT64_MAX;
	} else {
		int ret = take_u64(buf, len, &i, out);

		*pos = i;
		if (ret)
			return ret;
	}
	/* A field ends at a blank or the end of the line. */
	if (*pos < len && !is_blank(buf[*pos]))
		return -EBADMSG;
	return 0;
}

int pgt__parse_limits_memlock(const char *buf, size_t len, uint64_t *cur, uint64_t *max)
{
	static const char key[] = "Max locked memory";
	size_t i = 0, kl = sizeof(key) - 1;

	if (!buf || !cur || !max)
		return -EINVAL;
	while (i < len) {
		size_t e = i;

		while (e < len && buf[e] != '\n')
			e++;
		if (e - i > kl && !memcmp(buf + i, key, kl)) {
			size_t p = i + kl;
			uint64_t c, m;
			int ret = take_limit(buf, e, &p, &c);

			if (!ret)
				ret = take_limit(buf, e, &p, &m);
			if (ret)
				return ret;
			*cur = c;
			*max = m;
			return 0;
		}
		i = e + 1;
	}
	return -EBADMSG;
}

static bool has_token(const char *s, size_t len, const char *tok)
{
	size_t tl = strlen(tok), i = 0;

	while (i < len) {
		size_t e;

		while (i < len && is_blank(s[i]))
			i++;
		e = i;
		while (e < len && !is_blank(s[e]))
			e++;
		if (e - i == tl && !memcmp(s + i, tok, tl))
			return true;
		i = e;
	}
	return false;
}

int pgt__parse_cpuinfo_simd(const char *buf, size_t len, uint32_t *simd)
{
	size_t i = 0;

	if (!buf || !simd)
		return -EINVAL;
	while (i < len) {
		size_t e = i, k = i, colon;
		bool x86, arm;

		while (e < len && buf[e] != '\n')
			e++;
		while (k < e && buf[k] != ':')
			k++;
		colon = k;
		while (k > i && is_blank(buf[k - 1]))
			k--;
		x86 = k - i == 5 && !memcmp(buf + i, "flags", 5);
		arm = k - i == 8 && !memcmp(buf + i, "Features", 8);
		if (colon < e && (x86 || arm)) {
			const char *v = buf + colon + 1;
			size_t vl = e - colon - 1;
			uint32_t s = 0;

			if (x86) {
				if (has_token(v, vl, "sse2"))
					s |= PGT_SIMD_SSE2;
				if (has_token(v, vl, "avx2"))
					s |= PGT_SIMD_AVX2;
				if (has_token(v, vl, "avx512f") && has_token(v, vl, "avx512bw"))
					s |= PGT_SIMD_AVX512;
			} else if (has_token(v, vl, "asimd")) {
				s |= PGT_SIMD_NEON;
			}
			*simd = s;
			return 0;
		}
		i = e + 1;
	}
	return -EBADMSG;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

int pgt__path(char *out, size_t outsz, const char *root, const char *rel)
{
	int n;

	if (!root)
		root = "";
	n = snprintf(out, outsz, "%s%s", root, rel);
	if (n < 0 || (size_t)n >= outsz)
		return -ENAMETOOLONG;
	return 0;
}

long pgt__read_file(const char *root, const char *rel, char *buf, size_t cap)
{
	char path[PATH_MAX];
	size_t got = 0;
	int fd, ret;

	if (!buf || !cap)
		return -EINVAL;
	ret = pgt__path(path, sizeof(path), root, rel);
	if (ret)
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* sysfs answers in one read, procfs may need several. */
	while (got < cap - 1) {
		ssize_t r = read(fd, buf + got, cap - 1 - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			close(fd);
			return ret;
		}
		if (!r)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	return (long)got;
}

int pgt__read_u64(const char *root, const char *rel, uint64_t *out)
{
	char buf[64];
	long n = pgt__read_file(root, rel, buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	/* A value filling the buffer is not a sysfs number. */
	if ((size_t)n == sizeof(buf) - 1)
		return -EBADMSG;
	return pgt__parse_u64(buf, (size_t)n, out);
}

int pgt__probe_release(const char *root, struct pgt_probe *p)
{
	char buf[256];
	long n = pgt__read_file(root, "/proc/sys/kernel/osrelease", buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	return pgt__parse_release(buf, (size_t)n, p->kernel_release, sizeof(p->kernel_release),
				  &p->kernel_major, &p->kernel_minor, &p->kernel_patch);
}

void pgt__probe_sysctl(const char *root, struct pgt_probe *p)
{
	char buf[64];
	uint64_t v;
	long n;

	p->unprivileged_uffd = -1;
	if (!pgt__read_u64(root, "/proc/sys/vm/unprivileged_userfaultfd", &v) && v <= INT_MAX)
		p->unprivileged_uffd = (int)v;
	/* kernel.arch (the uname machine) is not in every kernel: then unknown. */
	n = pgt__read_file(root, "/proc/sys/kernel/arch", buf, sizeof(buf));
	if (n < 0 || pgt__parse_word(buf, (size_t)n, p->arch, sizeof(p->arch)))
		p->arch[0] = '\0';
}

static bool exists(const char *root, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;

	return !pgt__path(path, sizeof(path), root, rel) && !stat(path, &st);
}

#define THP_DIR "/sys/kernel/mm/transparent_hugepage"

void pgt__probe_thp(const char *root, struct pgt_probe *p)
{
	char buf[256], path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	long n;
	int ret;

	p->thp_enabled[0] = p->thp_defrag[0] = p->shmem_thp_enabled[0] = '\0';
	p->thp_pmd_size = 0;
	p->mthp_sizes = 0;
	p->thp_error = 0;

	n = pgt__read_file(root, THP_DIR "/enabled", buf, sizeof(buf));
	ret = n < 0 ? (int)n : pgt__parse_bracketed(buf, (size_t)n, p->thp_enabled,
						    sizeof(p->thp_enabled));
	if (ret) {
		p->thp_enabled[0] = '\0';
		p->thp_error = ret;
		return; /* no THP (CONFIG_TRANSPARENT_HUGEPAGE off) */
	}
	/* shmem (memfd, memory-backend-memfd): its own switch; a missing or
	 * bad file leaves "" and is not an error of anonymous THP */
	n = pgt__read_file(root, THP_DIR "/shmem_enabled", buf, sizeof(buf));
	if (n < 0 || pgt__parse_bracketed(buf, (size_t)n, p->shmem_thp_enabled,
					  sizeof(p->shmem_thp_enabled)))
		p->shmem_thp_enabled[0] = '\0';
	n = pgt__read_file(root, THP_DIR "/defrag", buf, sizeof(buf));
	ret = n < 0 ? (int)n : pgt__parse_bracketed(buf, (size_t)n, p->thp_defrag,
						    sizeof(p->thp_defrag));
	if (ret) {
		p->thp_defrag[0] = '\0';
		p->thp_error = ret;
	}
	ret = pgt__read_u64(root, THP_DIR "/hpage_pmd_size", &p->thp_pmd_size);
	if (ret) {
		p->thp_pmd_size = 0;
		if (!p->thp_error)
			p->thp_error = ret;
	}
	/*
	 * mTHP (6.8+): a hugepages-<size>kB directory per size; only those with
	 * an "enabled" file are anonymous sizes (8 KiB exists for shmem only).
	 */
	if (pgt__path(path, sizeof(path), root, THP_DIR))
		return;
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char rel[PATH_MAX];
		uint64_t sz;

		if (pgt__parse_hugepages_name(de->d_name, &sz))
			continue;
		if (sz & (sz - 1))
			continue; /* not a power of two: no such page size */
		snprintf(rel, sizeof(rel), THP_DIR "/%s/enabled", de->d_name);
		if (!exists(root, rel))
			continue;
		p->mthp_sizes |= sz;
	}
	closedir(d);
}

static int pool_cmp(const void *a, const void *b)
{
	const struct pgt_hugepage_pool *x = a, *y = b;

	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	if (x->page_size != y->page_size)
		return x->page_size < y->page_size ? -1 : 1;
	return 0;
}

/*
 * The pools of one hugepages directory: @dir is "/sys/kernel/mm/hugepages" or
 * "/sys/devices/system/node/nodeN/hugepages". Returns 0 or the first error.
 */
static int read_pools(const char *root, const char *dir, int node, struct pgt_probe *p)
{
	char path[PATH_MAX];
	struct dirent *de;
	int ret, err = 0;
	DIR *d;

	ret = pgt__path(path, sizeof(path), root, dir);
	if (ret)
		return ret;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct pgt_hugepage_pool pool = { .node = node };
		static const struct {
			const char *file;
			size_t off;
			bool global_only;
		} fields[] = {
			{ "nr_hugepages", offsetof(struct pgt_hugepage_pool, total), false },
			{ "free_hugepages", offsetof(struct pgt_hugepage_pool, free), false },
			{ "resv_hugepages", offsetof(struct pgt_hugepage_pool, reserved), true },
			{ "surplus_hugepages", offsetof(struct pgt_hugepage_pool, surplus), false },
		};
		char rel[PATH_MAX];

		if (pgt__parse_hugepages_name(de->d_name, &pool.page_size))
			continue;
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			uint64_t v = 0;

			if (fields[i].global_only && node >= 0)
				continue;
			if (snprintf(rel, sizeof(rel), "%s/%s/%s", dir, de->d_name,
				     fields[i].file) >= (int)sizeof(rel)) {
				ret = -ENAMETOOLONG;
			} else {
				ret = pgt__read_u64(root, rel, &v);
			}
			if (ret && !err)
				err = ret;
			memcpy((char *)&pool + fields[i].off, &v, sizeof(v));
		}
		if (p->n_pools >= PGT_PROBE_MAX_POOLS) {
			if (!err)
				err = -ENOSPC;
			continue;
		}
		p->pools[p->n_pools++] = pool;
	}
	closedir(d);
	return err;
}

void pgt__probe_pools(const char *root, struct pgt_probe *p)
{
	char path[PATH_MAX];
	struct dirent *de;
	unsigned nglobal;
	int ret;
	DIR *d;

	p->n_pools = 0;
	p->pools_error = read_pools(root, "/sys/kernel/mm/hugepages", -1, p);
	nglobal = p->n_pools;
	if (pgt__path(path, sizeof(path), root, "/sys/devices/system/node"))
		return;
	d = opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			char dir[128];
			uint64_t node;
			size_t i = 4;

			if (strncmp(de->d_name, "node", 4) ||
			    take_u64(de->d_name, strlen(de->d_name), &i, &node) ||
			    de->d_name[i] || node > PGT_PROBE_MAX_NODE)
				continue;
			snprintf(dir, sizeof(dir), "/sys/devices/system/node/node%u/hugepages",
				 (unsigned)node);
			ret = read_pools(root, dir, (int)node, p);
			/* A node without a hugepages dir (memoryless) is fine. */
			if (ret && ret != -ENOENT && !p->pools_error)
				p->pools_error = ret;
		}
		closedir(d);
	}
	/* readdir order is arbitrary; make it stable. */
	qsort(p->pools, nglobal, sizeof(p->pools[0]), pool_cmp);
	qsort(p->pools + nglobal, p->n_pools - nglobal, sizeof(p->pools[0]), pool_cmp);
}

void pgt__probe_numa(const char *root, struct pgt_probe *p)
{
	char buf[PGT_PROBE_FILE_MAX];
	long n;
	int ret;

	n = pgt__read_file(root, "/sys/devices/system/node/online", buf, sizeof(buf));
	if (n == -ENOENT) {
		/* CONFIG_NUMA off: all memory is one node. */
		p->numa_nodes = 1;
		p->numa_max_node = 0;
		p->numa_error = 0;
		return;
	}
	ret = n < 0 ? (int)n : pgt__parse_node_list(buf, (size_t)n, &p->numa_nodes,
						    &p->numa_max_node);
	if (!ret && p->numa_nodes == 0)
		ret = -EBADMSG; /* a running system has a node */
	if (ret) {
		p->numa_nodes = 0;
		p->numa_max_node = -1;
	}
	p->numa_error = ret;
}

/*
 * Entries of a directory; with @numeric only VFIO group names: "<n>" or
 * "noiommu-<n>" (groups of devices without an IOMMU).
 */
static unsigned count_entries(const char *root, const char *rel, bool numeric)
{
	char path[PATH_MAX];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	if (pgt__path(path, sizeof(path), root, rel))
		return 0;
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		const char *s = de->d_name;

		if (s[0] == '.')
			continue;
		if (numeric) {
			const char *num;

			if (!strncmp(s, "noiommu-", 8))
				s += 8;
			num = s;
			while (*s && is_digit(*s))
				s++;
			if (*s || s == num)
				continue;
		}
		n++;
	}
	closedir(d);
	return n;
}

void pgt__probe_devices(const char *root, struct pgt_probe *p)
{
	p->iommufd = exists(root, "/dev/iommu");
	p->vfio_container = exists(root, "/dev/vfio/vfio");
	p->vfio_groups = count_entries(root, "/dev/vfio", true);
	p->vfio_devices = count_entries(root, "/dev/vfio/devices", false);
}

void pgt__probe_cpu_files(const char *root, struct pgt_probe *p)
{
	/* cpuinfo grows with the CPU count; the first CPU's lines are enough. */
	const size_t cap = 65536;
	char *cpu;
	uint64_t v;
	long n;

	p->cacheline = 0;
	if (!pgt__read_u64(root, "/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size",
			   &v) && v && v <= 4096)
		p->cacheline = (unsigned)v;
	p->simd = 0;
	cpu = malloc(cap);
	if (cpu) {
		n = pgt__read_file(root, "/proc/cpuinfo", cpu, cap);
		if (n > 0)
			pgt__parse_cpuinfo_simd(cpu, (size_t)n, &p->simd);
		free(cpu);
	}
	/*
	 * A PMD maps page_size / 8 entries of page_size bytes, so the base page
	 * is sqrt(8 * hpage_pmd_size): 4 KiB -> 2 MiB, 16 KiB -> 32 MiB,
	 * 64 KiB -> 512 MiB. Fixture trees have no other record of it.
	 */
	p->page_size = 0;
	for (uint64_t ps = 4096; ps <= (1u << 20) && p->thp_pmd_size; ps <<= 1) {
		if (ps / 8 * ps == p->thp_pmd_size) {
			p->page_size = ps;
			break;
		}
	}
}

void pgt__probe_memlock_file(const char *root, struct pgt_probe *p)
{
	char buf[PGT_PROBE_FILE_MAX];
	long n = pgt__read_file(root, "/proc/self/limits", buf, sizeof(buf));
	int ret;

	ret = n < 0 ? (int)n : pgt__parse_limits_memlock(buf, (size_t)n, &p->memlock_cur,
							 &p->memlock_max);
	if (ret)
		p->memlock_cur = p->memlock_max = 0;
	p->memlock_error = ret;
}
