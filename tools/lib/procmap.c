/* SPDX-License-Identifier: MIT */
/*
 * Mappings of any process from /proc/PID/smaps and /proc/PID/numa_maps.
 *
 * Both files are untrusted input here (another process's names end up in
 * them, and the parser is fuzzed with arbitrary bytes): every parser works
 * on an explicit length, never relies on a terminating NUL, bounds every
 * copy, checks every number for overflow, and reports -EBADMSG for a line it
 * cannot read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hal/export.h"
#include "tools/lib/pgtool.h"

#define MAX_MAPPINGS (1u << 20)
#define MAX_TEXT (256u << 20)

struct pgtool_procmap {
	size_t n, cap;
	struct pgtool_mapping *m;
};

/* ---- scanning helpers (all bounded by len) ---- */

struct scan {
	const char *p;
	size_t len, i;
};

static bool at_end(const struct scan *s)
{
	return s->i >= s->len;
}

static char peek(const struct scan *s)
{
	return at_end(s) ? 0 : s->p[s->i];
}

static void skip_spaces(struct scan *s)
{
	while (!at_end(s) && (s->p[s->i] == ' ' || s->p[s->i] == '\t'))
		s->i++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int take_hex(struct scan *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t start = s->i;

	for (int d; !at_end(s) && (d = hexval(s->p[s->i])) >= 0; s->i++) {
		if (v >> 60)
			return -EBADMSG;
		v = v << 4 | (uint64_t)d;
	}
	if (s->i == start)
		return -EBADMSG;
	*out = v;
	return 0;
}

static int take_dec(struct scan *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t start = s->i;

	for (; !at_end(s) && s->p[s->i] >= '0' && s->p[s->i] <= '9'; s->i++) {
		unsigned d = (unsigned)(s->p[s->i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	if (s->i == start)
		return -EBADMSG;
	*out = v;
	return 0;
}

static bool take_lit(struct scan *s, const char *lit)
{
	size_t n = strlen(lit);

	if (s->len - s->i < n || memcmp(s->p + s->i, lit, n))
		return false;
	s->i += n;
	return true;
}

/* Copy at most @outsz - 1 bytes, replacing control bytes; always terminated. */
static void copy_text(char *out, size_t outsz, const char *p, size_t n)
{
	size_t k = n < outsz - 1 ? n : outsz - 1;

	for (size_t i = 0; i < k; i++)
		out[i] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i];
	out[k] = 0;
}

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* ---- the map ---- */

static struct pgtool_mapping *grow(struct pgtool_procmap *m)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct pgtool_mapping *nm;

		if (m->n >= MAX_MAPPINGS)
			return NULL;
		nm = realloc(m->m, cap * sizeof(*nm));
		if (!nm)
			return NULL;
		m->m = nm;
		m->cap = cap;
	}
	memset(&m->m[m->n], 0, sizeof(m->m[0]));
	return &m->m[m->n++];
}

/* ---- smaps ---- */

/* "start-end perms offset dev inode [name]" */
static int smaps_header(const char *line, size_t len, struct pgtool_mapping *m)
{
	struct scan s = { line, len, 0 };
	uint64_t inode, major, minor;
	char perms[4];

	if (take_hex(&s, &m->start) || !take_lit(&s, "-") || take_hex(&s, &m->end) ||
	    m->end < m->start || peek(&s) != ' ')
		return -EBADMSG;
	s.i++;
	if (s.len - s.i < 5 || s.p[s.i + 4] != ' ')
		return -EBADMSG;
	memcpy(perms, s.p + s.i, 4);
	s.i += 5;
	if ((perms[0] != 'r' && perms[0] != '-') || (perms[1] != 'w' && perms[1] != '-') ||
	    (perms[2] != 'x' && perms[2] != '-') || (perms[3] != 's' && perms[3] != 'p'))
		return -EBADMSG;
	m->flags |= (perms[0] == 'r' ? PGTOOL_MAP_READ : 0) | (perms[1] == 'w' ? PGTOOL_MAP_WRITE : 0) |
		    (perms[2] == 'x' ? PGTOOL_MAP_EXEC : 0) | (perms[3] == 's' ? PGTOOL_MAP_SHARED : 0);
	if (take_hex(&s, &m->offset) || peek(&s) != ' ')
		return -EBADMSG;
	s.i++;
	if (take_hex(&s, &major) || !take_lit(&s, ":") || take_hex(&s, &minor) || peek(&s) != ' ' ||
	    major > 0xfff || minor > 0xfffff)
		return -EBADMSG;
	s.i++;
	if (take_dec(&s, &inode))
		return -EBADMSG;
	m->dev_major = (uint32_t)major;
	m->dev_minor = (uint32_t)minor;
	m->inode = inode;
	if (!at_end(&s) && peek(&s) != ' ' && peek(&s) != '\t')
		return -EBADMSG;
	skip_spaces(&s);
	copy_text(m->name, sizeof(m->name), s.p + s.i, s.len - s.i);
	if (!inode || starts(m->name, "/memfd:") || starts(m->name, "/dev/zero") ||
	    starts(m->name, "/SYSV") || starts(m->name, "[anon"))
		m->flags |= PGTOOL_MAP_ANON;
	if (m->name[0] == '[' && !starts(m->name, "[heap]") && !starts(m->name, "[anon"))
		m->flags |= PGTOOL_MAP_SPECIAL;
	m->flags |= PGTOOL_MAP_SMAPS;
	return 0;
}

static const struct {
	const char *key;
	size_t off;
} smaps_keys[] = {
	{ "KernelPageSize", offsetof(struct pgtool_mapping, page_size) },
	{ "Rss", offsetof(struct pgtool_mapping, rss) },
	{ "Pss", offsetof(struct pgtool_mapping, pss) },
	{ "Anonymous", offsetof(struct pgtool_mapping, anon) },
	{ "AnonHugePages", offsetof(struct pgtool_mapping, anon_huge) },
	{ "ShmemPmdMapped", offsetof(struct pgtool_mapping, pmd_mapped) },
	{ "FilePmdMapped", offsetof(struct pgtool_mapping, pmd_mapped) },
	{ "Shared_Hugetlb", offsetof(struct pgtool_mapping, hugetlb) },
	{ "Private_Hugetlb", offsetof(struct pgtool_mapping, hugetlb) },
	{ "Swap", offsetof(struct pgtool_mapping, swap) },
	{ "Locked", offsetof(struct pgtool_mapping, locked) },
	{ "Referenced", offsetof(struct pgtool_mapping, referenced) },
};

static void vmflags(const char *p, size_t len, struct pgtool_mapping *m)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if ((i && p[i - 1] != ' ') || (i + 2 < len && p[i + 2] != ' '))
			continue;
		if (p[i] == 'h' && p[i + 1] == 't')
			m->flags |= PGTOOL_MAP_HUGETLB;
		else if (p[i] == 'l' && p[i + 1] == 'o')
			m->flags |= PGTOOL_MAP_LOCKED;
		else if (p[i] == 'h' && p[i + 1] == 'g')
			m->flags |= PGTOOL_MAP_THP;
		else if (p[i] == 'n' && p[i + 1] == 'h')
			m->flags |= PGTOOL_MAP_NOHUGEPAGE;
		else if (p[i] == 'u' && (p[i + 1] == 'm' || p[i + 1] == 'w' || p[i + 1] == 'i'))
			m->flags |= PGTOOL_MAP_UFFD;
	}
}

/* "Key:   123 kB" (unit optional), "VmFlags: rd wr", or a key we skip. */
static int smaps_field(const char *line, size_t len, struct pgtool_mapping *m)
{
	const char *colon = memchr(line, ':', len);
	struct scan s;
	size_t klen;
	uint64_t v;

	if (!colon || colon == line)
		return -EBADMSG;
	klen = (size_t)(colon - line);
	for (size_t i = 0; i < klen; i++) {
		char c = line[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return -EBADMSG;
	}
	s = (struct scan){ line, len, klen + 1 };
	if (klen == 7 && !memcmp(line, "VmFlags", 7)) {
		vmflags(line + klen + 1, len - klen - 1, m);
		return 0;
	}
	for (size_t k = 0; k < sizeof(smaps_keys) / sizeof(smaps_keys[0]); k++) {
		if (strlen(smaps_keys[k].key) != klen || memcmp(line, smaps_keys[k].key, klen))
			continue;
		skip_spaces(&s);
		if (take_dec(&s, &v))
			return -EBADMSG;
		skip_spaces(&s);
		/* every size field carries its unit: a line without it is cut */
		if (!take_lit(&s, "kB") || v > UINT64_MAX / 1024)
			return -EBADMSG;
		v *= 1024;
		skip_spaces(&s);
		if (!at_end(&s))
			return -EBADMSG;
		uint64_t *f = (uint64_t *)((char *)m + smaps_keys[k].off);

		*f = *f + v < *f ? UINT64_MAX : *f + v;
		return 0;
	}
	return 0; /* a field this parser does not use */
}

static bool is_header(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && hexval(line[i]) >= 0)
		i++;
	return i > 0 && i < len && line[i] == '-';
}

static int parse_smaps(struct pgtool_procmap *pm, const char *buf, size_t len)
{
	struct pgtool_mapping *cur = NULL;

	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		const char *line = buf + pos;
		int ret;

		pos += ll + (nl != NULL);
		if (!ll)
			continue;
		if (is_header(line, ll)) {
			cur = grow(pm);
			if (!cur)
				return pm->n >= MAX_MAPPINGS ? -E2BIG : -ENOMEM;
			ret = smaps_header(line, ll, cur);
		} else if (cur) {
			ret = smaps_field(line, ll, cur);
		} else {
			ret = -EBADMSG;
		}
		if (ret)
			return ret;
	}
	for (size_t i = 0; i < pm->n; i++)
		if (pm->m[i].flags & PGTOOL_MAP_HUGETLB) /* Rss leaves hugetlb pages out */
			pm->m[i].rss += pm->m[i].hugetlb;
	return 0;
}

/* ---- numa_maps ---- */

/* Policy names the kernel prints with a space inside (mpol_to_str). */
static const char *const spaced_policies[] = { "weighted interleave", "prefer (many)" };

int pgtool_numa_maps_line(const char *line, size_t len, struct pgtool_mapping *m)
{
	struct scan s = { line, len, 0 };
	uint64_t counts[PGT_MAX_NODES] = { 0 };
	uint64_t kps = 0;
	size_t pstart;

	if (take_hex(&s, &m->start) || peek(&s) != ' ')
		return -EBADMSG;
	skip_spaces(&s);
	pstart = s.i;
	for (size_t k = 0; k < sizeof(spaced_policies) / sizeof(spaced_policies[0]); k++)
		if (take_lit(&s, spaced_policies[k]))
			break;
	while (!at_end(&s) && peek(&s) != ' ' && peek(&s) != '\t')
		s.i++;
	if (s.i == pstart)
		return -EBADMSG;
	copy_text(m->policy, sizeof(m->policy), line + pstart, s.i - pstart);
	while (!at_end(&s)) {
		size_t t0;

		skip_spaces(&s);
		t0 = s.i;
		if (at_end(&s))
			break;
		if (peek(&s) == 'N' && s.i + 1 < s.len && s.p[s.i + 1] >= '0' && s.p[s.i + 1] <= '9') {
			uint64_t node, v;

			s.i++;
			if (take_dec(&s, &node) || !take_lit(&s, "=") || take_dec(&s, &v))
				return -EBADMSG;
			if (node < PGT_MAX_NODES) {
				counts[node] = v;
				if (node + 1 > m->nnodes)
					m->nnodes = (uint32_t)node + 1;
			}
		} else if (take_lit(&s, "kernelpagesize_kB=")) {
			if (take_dec(&s, &kps) || kps > (UINT64_MAX >> 10))
				return -EBADMSG;
			kps <<= 10;
		} else if (take_lit(&s, "huge")) {
			if (!at_end(&s) && peek(&s) != ' ')
				s.i = t0 + 1; /* "hugefoo=": just another token */
			else
				m->flags |= PGTOOL_MAP_HUGETLB;
		}
		while (!at_end(&s) && peek(&s) != ' ' && peek(&s) != '\t')
			s.i++;
	}
	if (!kps)
		kps = 4096;
	if (m->page_size == 0)
		m->page_size = kps;
	for (unsigned n = 0; n < m->nnodes; n++)
		m->node_bytes[n] = counts[n] > UINT64_MAX / kps ? UINT64_MAX : counts[n] * kps;
	m->flags |= PGTOOL_MAP_NUMA;
	return 0;
}

static int map_cmp(const void *a, const void *b)
{
	const struct pgtool_mapping *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

static struct pgtool_mapping *find_start(struct pgtool_procmap *pm, size_t sorted, uint64_t start)
{
	size_t lo = 0, hi = sorted;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (pm->m[mid].start == start)
			return &pm->m[mid];
		if (pm->m[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int parse_numa_maps(struct pgtool_procmap *pm, const char *buf, size_t len)
{
	size_t sorted;

	if (pm->n)
		qsort(pm->m, pm->n, sizeof(*pm->m), map_cmp);
	sorted = pm->n;
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		const char *line = buf + pos;
		struct pgtool_mapping tmp, *m;
		int ret;

		pos += ll + (nl != NULL);
		if (!ll)
			continue;
		memset(&tmp, 0, sizeof(tmp));
		ret = pgtool_numa_maps_line(line, ll, &tmp);
		if (ret)
			return ret;
		m = find_start(pm, sorted, tmp.start);
		if (!m) {
			m = grow(pm);
			if (!m)
				return pm->n >= MAX_MAPPINGS ? -E2BIG : -ENOMEM;
			*m = tmp;
			m->end = m->start;
			continue;
		}
		memcpy(m->policy, tmp.policy, sizeof(m->policy));
		memcpy(m->node_bytes, tmp.node_bytes, sizeof(m->node_bytes));
		m->nnodes = tmp.nnodes;
		m->flags |= tmp.flags;
		if (!m->page_size)
			m->page_size = tmp.page_size;
	}
	if (pm->n)
		qsort(pm->m, pm->n, sizeof(*pm->m), map_cmp);
	return 0;
}

int pgtool_procmap_parse(const char *smaps, size_t slen, const char *nmaps, size_t nlen,
				 pgtool_procmap **out)
{
	struct pgtool_procmap *pm;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if ((!smaps && slen) || (!nmaps && nlen))
		return -EINVAL;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	ret = parse_smaps(pm, smaps, slen);
	if (!ret)
		ret = parse_numa_maps(pm, nmaps, nlen);
	if (ret) {
		pgtool_procmap_free(pm);
		return ret;
	}
	*out = pm;
	return 0;
}

/* Read a whole /proc file (its size is unknown to stat) into a malloc'd,
 * NUL-terminated buffer of at most @max bytes. 0 or -errno (-EFBIG). */
static int read_whole(const char *path, size_t max, char **bufp, size_t *lenp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 65536;
	char *buf;

	*bufp = NULL;
	*lenp = 0;
	if (fd < 0)
		return -errno;
	buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap >= max) {
				free(buf);
				close(fd);
				return -EFBIG;
			}
			cap = cap * 2 > max ? max : cap * 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			free(buf);
			close(fd);
			return err;
		}
		if (!n)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	*bufp = buf;
	*lenp = len;
	return 0;
}

int pgtool_procmap_read(int pid, uint32_t flags, pgtool_procmap **out)
{
	char path[64], *smaps = NULL, *nmaps = NULL;
	size_t slen, nlen = 0;
	struct stat st;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (pid < 0 || flags)
		return -EINVAL;
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d", pid);
	else
		snprintf(path, sizeof(path), "/proc/self");
	if (stat(path, &st))
		return errno == ENOENT ? -ESRCH : -errno;
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/smaps");
	ret = read_whole(path, MAX_TEXT, &smaps, &slen);
	if (ret == -ENOENT)
		ret = -ESRCH; /* exited between the two */
	if (ret)
		return ret;
	/* a process without memory (a kernel thread, a zombie) has empty files */
	memcpy(path + strlen(path) - 5, "numa_maps", 10);
	ret = read_whole(path, MAX_TEXT, &nmaps, &nlen);
	if (ret == -ENOENT) { /* kernel without NUMA */
		ret = 0;
		nlen = 0;
	}
	if (!ret)
		ret = pgtool_procmap_parse(smaps, slen, nmaps, nlen, out);
	free(smaps);
	free(nmaps);
	return ret;
}

void pgtool_procmap_free(pgtool_procmap *m)
{
	if (!m)
		return;
	free(m->m);
	free(m);
}

size_t pgtool_procmap_count(const pgtool_procmap *m)
{
	return m ? m->n : 0;
}

const struct pgtool_mapping *pgtool_procmap_get(const pgtool_procmap *m, size_t i)
{
	return m && i < m->n ? &m->m[i] : NULL;
}

static bool guest_like(const struct pgtool_mapping *m, uint64_t min, bool strong)
{
	if (!(m->flags & PGTOOL_MAP_WRITE) || (m->flags & PGTOOL_MAP_SPECIAL) || m->end - m->start < min)
		return false;
	if (strong)
		return (m->flags & PGTOOL_MAP_HUGETLB) ||
		       ((m->flags & PGTOOL_MAP_SHARED) && (m->flags & PGTOOL_MAP_ANON));
	return (m->flags & PGTOOL_MAP_ANON) && !(m->flags & PGTOOL_MAP_SHARED);
}

int pgtool_procmap_guess_guest(const pgtool_procmap *m, uint64_t min_bytes, size_t *idx,
				       size_t cap)
{
	size_t n = 0;
	uint64_t largest = 0;

	if (!m || (!idx && cap))
		return -EINVAL;
	if (!min_bytes)
		min_bytes = 64ULL << 20;
	for (size_t i = 0; i < m->n; i++) {
		if (!guest_like(&m->m[i], min_bytes, true))
			continue;
		if (n < cap)
			idx[n] = i;
		n++;
	}
	if (n)
		return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
	/* No shared or hugetlb memory: private anonymous RAM (QEMU's default
	 * backend). The VMM's heaps are smaller; keep what is near the largest. */
	for (size_t i = 0; i < m->n; i++)
		if (guest_like(&m->m[i], min_bytes, false) && m->m[i].end - m->m[i].start > largest)
			largest = m->m[i].end - m->m[i].start;
	for (size_t i = 0; i < m->n; i++) {
		if (!guest_like(&m->m[i], min_bytes, false) ||
		    m->m[i].end - m->m[i].start < largest / 4)
			continue;
		if (n < cap)
			idx[n] = i;
		n++;
	}
	return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}
