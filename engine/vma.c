/* SPDX-License-Identifier: MIT */
/*
 * What the kernel says about this process's own mappings, from
 * /proc/self/smaps: the VMA holding an address (its kernel page size and
 * whether it is hugetlb), and the mlock'ed VMAs pinned-page discovery
 * wants. The text is parsed bounded: any bytes give an answer or an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/release_pvt.h"
#include "hal/hal.h"

/* Lowercase hex at line[*i], at most 16 digits; false if none. */
static bool take_hex(const char *line, size_t ll, size_t *i, uint64_t *out)
{
	uint64_t v = 0;
	int n = 0;

	for (; *i < ll && n <= 16; (*i)++, n++) {
		char c = line[*i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			break;
		v = v << 4 | d;
	}
	*out = v;
	return n && n <= 16;
}

/* "start-end perms offset ..." (the offset is 0 when it cannot be read) */
static bool vma_header(const char *line, size_t ll, struct pgt_vma *v)
{
	size_t i = 0;

	*v = (struct pgt_vma){ 0 };
	if (!take_hex(line, ll, &i, &v->start) || i >= ll || line[i] != '-')
		return false;
	i++;
	if (!take_hex(line, ll, &i, &v->end) || i >= ll || line[i] != ' ')
		return false;
	i += 6;  /* " rwxp " */
	if (i > ll || !take_hex(line, ll, &i, &v->offset) || i >= ll || line[i] != ' ')
		v->offset = 0;
	return v->end > v->start;
}

/* A two-letter token of a VmFlags line, delimited by blanks. */
static bool has_flag(const char *line, size_t ll, const char *tok)
{
	for (size_t i = 8; i + 2 <= ll; i++)
		if (line[i] == tok[0] && line[i + 1] == tok[1] && line[i - 1] == ' ' &&
		    (i + 2 == ll || line[i + 2] == ' '))
			return true;
	return false;
}

/* "KernelPageSize:     2048 kB" */
static uint64_t kb_value(const char *line, size_t ll, size_t skip)
{
	uint64_t v = 0;
	size_t i = skip;

	while (i < ll && line[i] == ' ')
		i++;
	for (; i < ll && line[i] >= '0' && line[i] <= '9'; i++) {
		if (v > (UINT64_MAX >> 10) / 10)
			return 0;
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	return v << 10;
}

int pgt__smaps_walk(const char *buf, size_t len, pgt_vma_fn fn, void *arg)
{
	struct pgt_vma v = { 0 };
	bool have = false;
	int found = 0;

	for (size_t pos = 0; pos < len;) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - line) : len - pos;
		struct pgt_vma h;

		pos += ll + (nl ? 1 : 0);
		if (ll > 8 && !memcmp(line, "VmFlags:", 8)) {
			int ret;

			if (!have)
				continue;
			v.locked = has_flag(line, ll, "lo");
			v.hugetlb = has_flag(line, ll, "ht");
			v.shared = has_flag(line, ll, "sh");
			v.thp_off = has_flag(line, ll, "nh");
			v.thp_on = has_flag(line, ll, "hg");
			have = false;
			found++;
			ret = fn(arg, &v);
			if (ret)
				return ret;
		} else if (ll > 15 && !memcmp(line, "KernelPageSize:", 15)) {
			v.kernel_page_size = kb_value(line, ll, 15);
		} else if (vma_header(line, ll, &h)) {
			v = h;
			have = true;
		}
	}
	return found;
}

struct locked_ctx {
	void (*fn)(void *arg, uint64_t start, uint64_t end);
	void *arg;
	int found;
};

static int locked_one(void *arg, const struct pgt_vma *v)
{
	struct locked_ctx *c = arg;

	if (v->locked) {
		c->fn(c->arg, v->start, v->end);
		c->found++;
	}
	return 0;
}

int pgt__parse_smaps_locked(const char *buf, size_t len,
			    void (*fn)(void *arg, uint64_t start, uint64_t end), void *arg)
{
	struct locked_ctx c = { fn, arg, 0 };

	pgt__smaps_walk(buf, len, locked_one, &c);
	return c.found;
}

int pgt__read_smaps(char **out, size_t *outlen)
{
	const char *path = "/proc/self/smaps";
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0 || !buf) {
		ret = fd < 0 ? -errno : -ENOMEM;
		goto err;
	}
	for (;;) {
		ssize_t got;

		if (len == cap) {
			char *nb = cap > (64u << 20) ? NULL : realloc(buf, cap * 2);

			if (!nb) {
				ret = -ENOMEM;
				goto err;
			}
			buf = nb;
			cap *= 2;
		}
		got = read(fd, buf + len, cap - len);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto err;
		}
		if (!got)
			break;
		len += (size_t)got;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;
err:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

struct find_ctx {
	uint64_t addr;
	struct pgt_vma *out;
};

static int find_one(void *arg, const struct pgt_vma *v)
{
	struct find_ctx *c = arg;

	if (c->addr < v->start || c->addr >= v->end)
		return 0;
	*c->out = *v;
	return -EEXIST; /* found: stop */
}

int pgt__vma_of(const void *addr, struct pgt_vma *out)
{
	struct find_ctx c = { (uintptr_t)addr, out };
	char *buf;
	size_t len;
	int ret = pgt__read_smaps(&buf, &len);

	if (ret)
		return ret;
	ret = pgt__smaps_walk(buf, len, find_one, &c);
	free(buf);
	return ret == -EEXIST ? 0 : -ENOENT;
}

int pgt__present_walk(uint64_t start, uint64_t end, bool swapped, bool scan,
		      pgt_present_fn fn, void *arg)
{
	uint64_t want = PAGE_IS_PRESENT | (swapped ? PAGE_IS_SWAPPED : 0);
	struct page_region vec[256];
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), ret = -ENOTTY;

	if (fd < 0)
		return -errno;
	if (scan) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uintptr_t)vec, .vec_len = sizeof(vec) / sizeof(vec[0]),
			.category_anyof_mask = want, .return_mask = want,
		};

		for (ret = 0; !ret;) {
			long k = ioctl(fd, PAGEMAP_SCAN, &a);

			if (k < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				break;
			}
			for (long i = 0; i < k && !ret; i++)
				ret = fn(arg, vec[i].start, vec[i].end, NULL);
			if (a.walk_end >= end || a.walk_end <= a.start)
				break;
			a.start = a.walk_end;
		}
	}
	if (ret == -ENOTTY || ret == -EINVAL) {
		/* Pre-6.7 kernel: 8 bytes of pagemap per base page. */
		uint64_t bp = pgt_hal_page_size(), buf[512];
		uint64_t mask = PGT_PM_PRESENT | (swapped ? PGT_PM_SWAP : 0);

		ret = 0;
		for (uint64_t a = start; a < end && !ret;) {
			size_t k = (size_t)((end - a) / bp);
			ssize_t got;

			if (k > sizeof(buf) / sizeof(buf[0]))
				k = sizeof(buf) / sizeof(buf[0]);
			got = pread(fd, buf, k * sizeof(buf[0]), (off_t)(a / bp * 8));
			if (got <= 0) {
				ret = got < 0 ? -errno : -EIO;
				break;
			}
			for (size_t i = 0; i < (size_t)got / 8 && !ret; i++)
				if (buf[i] & mask)
					ret = fn(arg, a + i * bp, a + (i + 1) * bp, &buf[i]);
			a += (uint64_t)got / 8 * bp;
		}
	}
	close(fd);
	return ret;
}
