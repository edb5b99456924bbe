/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: every buffer parser of the probe on the same input. The input
 * is copied into a buffer of exactly its size so a sanitizer sees any read
 * past the end; each parser must return 0, -EBADMSG or -ERANGE, and what it
 * returns on success must hold together (checked with abort()).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/probe_pvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ret(int ret)
{
	if (ret != 0 && ret != -EBADMSG && ret != -ERANGE)
		abort();
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void check_word(const char *w, size_t cap)
{
	size_t n = strnlen(w, cap);

	if (n == 0 || n >= cap)
		abort();
	for (size_t i = 0; i < n; i++)
		if (is_blank(w[i]) || (unsigned char)w[i] < 0x21 || (unsigned char)w[i] >= 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	char rel[65], word[16], name[300];
	unsigned ma, mi, pa;
	uint64_t v, c, m;
	uint32_t simd;
	int ret, n, max;

	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);

	ret = pgt__parse_u64(buf, size, &v);
	check_ret(ret);
	if (!ret) {
		/* The value printed back is the input's digits without zeros
		 * in front. */
		char out[24];
		size_t i = 0, d;

		while (i < size && is_blank(buf[i]))
			i++;
		while (i + 1 < size && buf[i] == '0' && buf[i + 1] >= '0' && buf[i + 1] <= '9')
			i++;
		d = (size_t)snprintf(out, sizeof(out), "%llu", (unsigned long long)v);
		if (i + d > size || memcmp(buf + i, out, d))
			abort();
	}

	ret = pgt__parse_release(buf, size, rel, sizeof(rel), &ma, &mi, &pa);
	check_ret(ret);
	if (!ret) {
		check_word(rel, sizeof(rel));
		if (strtoul(rel, NULL, 10) != ma)
			abort();
	}

	ret = pgt__parse_word(buf, size, word, sizeof(word));
	check_ret(ret);
	if (!ret)
		check_word(word, sizeof(word));

	ret = pgt__parse_bracketed(buf, size, word, sizeof(word));
	check_ret(ret);
	if (!ret) {
		check_word(word, sizeof(word));
		if (strchr(word, '[') || strchr(word, ']'))
			abort();
	}

	ret = pgt__parse_node_list(buf, size, &n, &max);
	check_ret(ret);
	if (!ret && (n < 0 || max > PGT_PROBE_MAX_NODE || n > max + 1 || (n == 0) != (max == -1)))
		abort();

	ret = pgt__parse_limits_memlock(buf, size, &c, &m);
	check_ret(ret);

	ret = pgt__parse_cpuinfo_simd(buf, size, &simd);
	check_ret(ret);
	if (!ret && (simd & ~(uint32_t)(PGT_SIMD_SSE2 | PGT_SIMD_AVX2 | PGT_SIMD_AVX512 |
					PGT_SIMD_NEON)))
		abort();

	/* Directory names are NUL-terminated strings. */
	n = (int)(size < sizeof(name) - 1 ? size : sizeof(name) - 1);
	memcpy(name, buf, (size_t)n);
	name[n] = '\0';
	ret = pgt__parse_hugepages_name(name, &v);
	check_ret(ret);
	if (!ret && (v == 0 || v % 1024))
		abort();

	free(buf);
	return 0;
}
