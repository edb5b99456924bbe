/* SPDX-License-Identifier: MIT */
/* CPU and node sets: count, iterate, print and parse Linux lists. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/cpuset.h"


unsigned pgt__cpuset_count(const struct pgt_cpuset *s)
{
	unsigned n = 0;

	for (size_t i = 0; i < PGT_CPUSET_BITS / 64; i++)
		n += (unsigned)__builtin_popcountll(s->w[i]);
	return n;
}

int pgt__cpuset_next(const struct pgt_cpuset *s, int from)
{
	if (from < 0)
		from = 0;
	for (unsigned i = (unsigned)from; i < PGT_CPUSET_BITS;) {
		uint64_t w = s->w[i / 64] >> (i % 64);

		if (w)
			return (int)(i + (unsigned)__builtin_ctzll(w));
		i = (i / 64 + 1) * 64;
	}
	return -1;
}

char *pgt__cpuset_format(const struct pgt_cpuset *s, char *buf, size_t len)
{
	size_t pos = 0;
	bool cut = false;

	if (!len)
		return buf;
	buf[0] = 0;
	for (int i = pgt__cpuset_next(s, 0); i >= 0;) {
		int j = i;
		char item[32];
		int k;

		while (j + 1 < PGT_CPUSET_BITS && pgt__cpuset_isset(s, (unsigned)j + 1))
			j++;
		if (j == i)
			k = snprintf(item, sizeof(item), "%s%d", pos ? "," : "", i);
		else
			k = snprintf(item, sizeof(item), "%s%d-%d", pos ? "," : "", i, j);
		if (pos + (size_t)k + 4 > len) {
			cut = true;
			break;
		}
		memcpy(buf + pos, item, (size_t)k + 1);
		pos += (size_t)k;
		i = pgt__cpuset_next(s, j + 1);
	}
	if (cut && len >= 4)
		memcpy(buf + (pos + 4 <= len ? pos : len - 4), "...", 4);
	return buf;
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Decimal at buf[*pos..len), below PGT_CPUSET_BITS. */
static int take_num(const char *buf, size_t len, size_t *pos, unsigned *out)
{
	unsigned v = 0;
	size_t i = *pos;

	if (i >= len || !digit(buf[i]))
		return -EINVAL;
	for (; i < len && digit(buf[i]); i++) {
		v = v * 10 + (unsigned)(buf[i] - '0');
		if (v >= PGT_CPUSET_BITS)
			return -EINVAL;
	}
	*pos = i;
	*out = v;
	return 0;
}

int pgt__cpuset_parse(const char *buf, size_t len, struct pgt_cpuset *s)
{
	size_t i = 0;

	memset(s, 0, sizeof(*s));
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	if (!len)
		return 0; /* an empty list is valid (a node without CPUs) */
	for (;;) {
		unsigned a, b;

		if (take_num(buf, len, &i, &a))
			return -EINVAL;
		b = a;
		if (i < len && buf[i] == '-') {
			i++;
			if (take_num(buf, len, &i, &b) || b < a)
				return -EINVAL;
		}
		for (unsigned c = a; c <= b; c++)
			pgt__cpuset_set(s, c);
		if (i == len)
			return 0;
		if (buf[i] != ',')
			return -EINVAL;
		i++;
	}
}

int pgt__cpuset_read(const char *path, struct pgt_cpuset *s)
{
	char buf[4096];
	FILE *f = fopen(path, "re");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	if (!n)
		return -ENOENT;
	if (pgt__cpuset_parse(buf, n, s) || !pgt__cpuset_count(s))
		return -EINVAL;
	return 0;
}
