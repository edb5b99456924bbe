/* SPDX-License-Identifier: MIT */
/*
 * The version map, the public headers and the shared library agree: every
 * pgt_ function declared in include/pgtrack/ is in libpgtrack.map and
 * exported by libpgtrack.so, nothing else is exported, and internal pgt__
 * symbols stay hidden. (libnvme keeps the same check.) A declaration marked
 * PGT_EXPERIMENTAL sits in the map's EXPERIMENTAL node, every other one in a
 * versioned node (as DPDK keeps its experimental API apart).
 * argv[1]: path of libpgtrack.so; the source tree comes from PGT_SRCDIR.
 */
#include "tests/common/testutil.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXSYM 512

static const char *so_path;

struct symset {
	char *name[MAXSYM];
	bool experimental[MAXSYM];
	int n;
};

/* Index of @name in @s, or -1. */
static int find(const struct symset *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->name[i], name))
			return i;
	return -1;
}

static bool has(const struct symset *s, const char *name)
{
	return find(s, name) >= 0;
}

static void add(struct symset *s, const char *name, size_t len, bool experimental)
{
	char buf[128];

	assert_true(len < sizeof(buf));
	memcpy(buf, name, len);
	buf[len] = 0;
	if (!has(s, buf)) {
		assert_true(s->n < MAXSYM);
		s->experimental[s->n] = experimental;
		s->name[s->n++] = strdup(buf);
	}
}

/* Whether the declaration holding @p (from the end of the previous one)
 * carries PGT_EXPERIMENTAL. */
static bool marked_experimental(const char *txt, const char *p)
{
	const char *b = p;

	while (b > txt && b[-1] != ';' && b[-1] != '}' && b[-1] != '#')
		b--;
	for (const char *q = b; q < p; q++)
		if (!strncmp(q, "PGT_EXPERIMENTAL", 16))
			return true;
	return false;
}

static void drop(struct symset *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->name[i]);
	s->n = 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return buf;
}

/* Remove comments so prose mentioning pgt_foo() does not count. */
static void strip_comments(char *s)
{
	for (char *p = s; *p; p++) {
		if (p[0] == '/' && p[1] == '*') {
			char *e = strstr(p + 2, "*/");

			e = e ? e + 2 : p + strlen(p);
			memset(p, ' ', (size_t)(e - p));
			p = e - 1;
		}
	}
}

/* Function declarations: "pgt_name(" not inside "(*...)" (typedefs) or #define. */
static void header_symbols(struct symset *s)
{
	char dir[4096];
	DIR *d;
	struct dirent *de;

	snprintf(dir, sizeof(dir), "%s/include/pgtrack", PGT_SRCDIR);
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[8192];
		char *txt, *p;

		if (!strstr(de->d_name, ".h"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		txt = slurp(path);
		strip_comments(txt);
		for (p = txt; (p = strstr(p, "pgt_")); p++) {
			char *e = p;
			char *b = p - 1;

			if (p > txt && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
				continue;
			while (isalnum((unsigned char)*e) || *e == '_')
				e++;
			if (*e != '(')
				continue;
			while (b > txt && *b == ' ')
				b--;
			if (*b == '(' || (b >= txt + 6 && !strncmp(b - 6, "define", 6)))
				continue;
			if (*b == '*') { /* "(*pgt_fn)" is a pointer type, "T *pgt_fn(" a function */
				while (b > txt && (*b == '*' || *b == ' '))
					b--;
				if (*b == '(')
					continue;
			}
			add(s, p, (size_t)(e - p), marked_experimental(txt, p));
		}
		free(txt);
	}
	closedir(d);
}

/* Every node "NAME { global: sym; ... local: *; } PARENT;" of the map. */
static void map_symbols(struct symset *s)
{
	char path[4096];
	char *txt, *p;

	snprintf(path, sizeof(path), "%s/libpgtrack.map", PGT_SRCDIR);
	txt = slurp(path);
	strip_comments(txt);
	for (p = txt; (p = strchr(p, '{'));) {
		char *close = strchr(p, '}'), *name = p, *q;
		bool experimental;

		assert_non_null(close);
		while (name > txt && isspace((unsigned char)name[-1]))
			name--;
		while (name > txt && (isalnum((unsigned char)name[-1]) || name[-1] == '_' ||
				      name[-1] == '.'))
			name--;
		experimental = !strncmp(name, "EXPERIMENTAL", 12);
		q = strstr(p, "global:");
		if (q && q < close) {
			char *end = strstr(q, "local:");

			if (!end || end > close)
				end = close;
			for (q += 7; q < end;) {
				char *e;

				while (q < end && !isalnum((unsigned char)*q) && *q != '_')
					q++;
				for (e = q; e < end && (isalnum((unsigned char)*e) || *e == '_');)
					e++;
				if (e > q)
					add(s, q, (size_t)(e - q), experimental);
				q = e;
			}
		}
		p = close + 1;
	}
	free(txt);
}

static void test_map_matches_headers(void **state)
{
	struct symset hdr = { 0 }, map = { 0 };
	int bad = 0;

	(void)state;
	header_symbols(&hdr);
	map_symbols(&map);
	assert_true(hdr.n > 10);
	for (int i = 0; i < hdr.n; i++) {
		int k = find(&map, hdr.name[i]);

		if (k < 0) {
			pgt_test_note("declared in a header, missing from libpgtrack.map: %s", hdr.name[i]);
			bad++;
		} else if (map.experimental[k] != hdr.experimental[i]) {
			pgt_test_note("%s: %s in the header, %s in libpgtrack.map", hdr.name[i],
				      hdr.experimental[i] ? "PGT_EXPERIMENTAL" : "stable",
				      map.experimental[k] ? "EXPERIMENTAL" : "a versioned node");
			bad++;
		}
	}
	for (int i = 0; i < map.n; i++)
		if (!has(&hdr, map.name[i])) {
			pgt_test_note("in libpgtrack.map, declared in no public header: %s", map.name[i]);
			bad++;
		}
	drop(&hdr);
	drop(&map);
	assert_int_equal(bad, 0);
}

static void test_library_exports(void **state)
{
	struct symset map = { 0 };
	void *h;
	int bad = 0;

	(void)state;
	map_symbols(&map);
	h = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		pgt_test_note("dlopen %s: %s", so_path, dlerror());
	assert_non_null(h);
	for (int i = 0; i < map.n; i++)
		if (!dlsym(h, map.name[i])) {
			pgt_test_note("not exported by the library: %s", map.name[i]);
			bad++;
		}
	/* internals stay hidden */
	assert_null(dlsym(h, "pgt__bitmap_init"));
	assert_null(dlsym(h, "pgt__log"));
	dlclose(h);
	drop(&map);
	assert_int_equal(bad, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_matches_headers),
		cmocka_unit_test(test_library_exports),
	};

	so_path = argc > 1 ? argv[1] : "libpgtrack.so";
	return cmocka_run_group_tests_name("version_map", tests, NULL, NULL);
}
