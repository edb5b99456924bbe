/* SPDX-License-Identifier: MIT */
/*
 * pgt_stats_render(): the escapers byte by byte, the snprintf-like sizing,
 * and every field of both formats against pgt_region_info()/pgt_region_stats()
 * of the same moment. The JSON document is parsed with json-c, loaded at run
 * time (the test binaries do not link it); without it those tests skip.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <json-c/json.h>

#include "engine/stats_pvt.h"
#include "pgtrack.h"

/* ---- helpers ---- */

static char *render(pgt_engine *e, int fmt)
{
	int64_t need = pgt_stats_render(e, fmt, NULL, 0);
	char *buf;

	assert_true(need > 0);
	buf = malloc((size_t)need + 1);
	assert_non_null(buf);
	assert_int_equal(pgt_stats_render(e, fmt, buf, (size_t)need + 1), need);
	assert_int_equal(strlen(buf), (size_t)need);
	return buf;
}

static size_t jesc(const char *in, char *out, size_t cap)
{
	return pgt__json_escape(out, cap, in);
}

static size_t pesc(const char *in, char *out, size_t cap)
{
	return pgt__prom_escape(out, cap, in);
}

/* ---- escapers ---- */

static void test_utf8_seq(void **state)
{
	static const struct {
		const char *s;
		size_t n;
	} cases[] = {
		{ "a", 1 },
		{ "\x7f", 1 },
		{ "\xc3\xa9", 2 },             /* é */
		{ "\xe2\x82\xac", 3 },         /* € */
		{ "\xf0\x9f\x98\x80", 4 },     /* U+1F600 */
		{ "\xf4\x8f\xbf\xbf", 4 },     /* U+10FFFF */
		{ "\x80", 0 },                 /* lone continuation */
		{ "\xc0\x80", 0 },             /* overlong NUL */
		{ "\xc1\xbf", 0 },             /* overlong */
		{ "\xe0\x80\x80", 0 },         /* overlong 3-byte */
		{ "\xed\xa0\x80", 0 },         /* surrogate D800 */
		{ "\xf0\x80\x80\x80", 0 },     /* overlong 4-byte */
		{ "\xf4\x90\x80\x80", 0 },     /* > U+10FFFF */
		{ "\xf5\x80\x80\x80", 0 },
		{ "\xe2\x82", 0 },             /* truncated by the NUL */
		{ "\xc3", 0 },
		{ "\xe2\x28\xa1", 0 },         /* bad continuation */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = pgt__utf8_seq((const unsigned char *)cases[i].s);

		if (n != cases[i].n)
			fail_msg("case %zu: got %zu, want %zu", i, n, cases[i].n);
	}
}

static void test_json_escape(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "" },
		{ "guest-ram", "guest-ram" },
		{ "a\"b", "a\\\"b" },
		{ "a\\b", "a\\\\b" },
		{ "\b\f\n\r\t", "\\b\\f\\n\\r\\t" },
		{ "\x01\x1f", "\\u0001\\u001f" },
		{ "\x7f", "\x7f" },
		{ "/", "/" },
		{ "caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac" },
		{ "x\xffy", "x\\ufffdy" },
		{ "\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd" },
		{ "\xe2\x82", "\\ufffd\\ufffd" },
	};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = jesc(cases[i].in, buf, sizeof(buf));

		assert_string_equal(buf, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
}

static void test_json_escape_truncates(void **state)
{
	char buf[8];

	(void)state;
	/* Like snprintf: the full length is returned, the output is cut. */
	memset(buf, 'X', sizeof(buf));
	assert_int_equal(jesc("ab\"cdefgh", buf, 5), 10);
	assert_string_equal(buf, "ab\\\"");
	assert_int_equal(buf[5], 'X');
	assert_int_equal(jesc("abc", NULL, 0), 3);
	assert_int_equal(jesc("abc", buf, 1), 3);
	assert_string_equal(buf, "");
}

static void test_prom_escape(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "" },
		{ "vm-1", "vm-1" },
		{ "a\"b", "a\\\"b" },
		{ "a\\b", "a\\\\b" },
		{ "a\nb", "a\\nb" },
		{ "tab\there", "tab\there" }, /* only \, " and LF are escaped */
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
		{ "x\xffy", "x\xef\xbf\xbdy" },
		{ "}{=,", "}{=," },
	};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = pesc(cases[i].in, buf, sizeof(buf));

		assert_string_equal(buf, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
	assert_int_equal(pesc("a\nb", buf, 3), 4);
	assert_string_equal(buf, "a\\");
}

/* ---- the engine under test: two regions with known state ---- */

#define NAME_NASTY "vm \"one\"\\\n\xff"
#define NAME_NASTY_JSON "vm \"one\"\\\n\xef\xbf\xbd" /* what json-c hands back */
#define NAME_NASTY_PROM "vm \\\"one\\\"\\\\\\n\xef\xbf\xbd"
#define NPAGES 64

struct fix {
	pgt_engine *e;
	pgt_region *r[2];
	pgt_dirty_view *v[2];
	struct pgt_region_info info[2];
	struct pgt_region_stats st[2];
	struct pgt_mem_counts mc[2];
	char *json;
	char *prom;
	bool tracked; /* region 0 has dirty + touch tracking */
};

static struct fix F;

static int setup(void **state)
{
	struct pgt_region_config c = {
		.size = sizeof(c), .backing = PGT_BACKING_ANON, .numa_node = -1,
		.dirty_method = PGT_DIRTY_AUTO,
	};
	long ps = sysconf(_SC_PAGESIZE);

	(void)state;
	memset(&F, 0, sizeof(F));
	if (pgt_engine_open(NULL, &F.e))
		return -1;
	c.length = NPAGES * (uint64_t)ps;
	c.name = NAME_NASTY;
	c.gpa = 1ULL << 32;
	c.track = PGT_TRACK_DIRTY | PGT_TRACK_TOUCH;
	F.tracked = pgt_test_have_uffd() && !pgt_region_create(F.e, &c, &F.r[0]);
	if (!F.tracked) {
		c.track = 0;
		if (pgt_region_create(F.e, &c, &F.r[0]))
			return -1;
	}
	c.name = "plain";
	c.gpa = 0;
	c.track = 0;
	if (pgt_region_create(F.e, &c, &F.r[1]))
		return -1;
	if (F.tracked) {
		uint8_t *p;

		F.info[0].size = sizeof(F.info[0]);
		pgt_region_info(F.r[0], &F.info[0]);
		p = F.info[0].addr;
		if (pgt_dirty_view_open(F.r[0], &F.v[0]) || pgt_dirty_view_open(F.r[0], &F.v[1]))
			return -1;
		for (int i = 0; i < 5; i++)
			p[(size_t)i * 3 * (size_t)ps] = 1;
		struct pgt_harvest h = { .size = sizeof(h) };
		if (pgt_dirty_harvest(F.v[0], &h) < 0)
			return -1;
	}
	/* region 1: some memory resident, 2 pages pinned, 3 released */
	{
		struct pgt_region_info in = { .size = sizeof(in) };
		uint8_t *p;

		pgt_region_info(F.r[1], &in);
		p = in.addr;
		for (int i = 0; i < 10; i++)
			p[(size_t)i * (size_t)ps] = 1;
		if (pgt_pin(F.e, in.gpa + 2 * (uint64_t)ps, 2 * (uint64_t)ps))
			return -1;
		if (pgt_release(F.e, in.gpa + 6 * (uint64_t)ps, 3 * (uint64_t)ps, 0, NULL) != 3)
			return -1;
	}
	for (int i = 0; i < 2; i++) {
		struct pgt_account acc = { .size = sizeof(acc) };

		F.info[i].size = sizeof(F.info[i]);
		F.st[i].size = sizeof(F.st[i]);
		if (pgt_account_region(F.r[i], 0, &acc))
			return -1;
		F.mc[i] = acc.total;
		if (pgt_region_info(F.r[i], &F.info[i]) || pgt_region_stats(F.r[i], &F.st[i]))
			return -1;
	}
	F.json = render(F.e, PGT_STATS_JSON);
	F.prom = render(F.e, PGT_STATS_PROMETHEUS);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pgt_dirty_view_close(F.v[0]);
	pgt_dirty_view_close(F.v[1]);
	pgt_engine_close(F.e);
	free(F.json);
	free(F.prom);
	return 0;
}

static void test_state_known(void **state)
{
	(void)state;
	if (!F.tracked)
		pgt_skip("userfaultfd unavailable: region 0 has no dirty/touch tracking");
	assert_int_equal(F.st[0].touched, 5);
	assert_int_equal(F.st[0].views, 2);
	/* one view has all five pending */
	assert_int_equal(F.mc[0].dirty, 5 * (uint64_t)sysconf(_SC_PAGESIZE));
	assert_true(F.st[0].harvests >= 1);
	assert_true(F.st[0].dirty_reported >= 5);
}

/* The accounting the fields are compared with is the one set up. */
static void test_account_known(void **state)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);

	(void)state;
	assert_int_equal(F.mc[1].released, 3 * ps);
	assert_int_equal(F.mc[1].pinned, 2 * ps);
	assert_int_equal(F.mc[1].resident, 7 * ps);
	assert_int_equal(F.mc[1].configured, NPAGES * ps);
}

/* ---- sizing and bad input ---- */

static void test_sizing(void **state)
{
	int64_t need = pgt_stats_render(F.e, PGT_STATS_PROMETHEUS, NULL, 0);
	char *buf = malloc((size_t)need + 1);

	(void)state;
	assert_non_null(buf);
	/* Exactly the text without room for the NUL: refused, left empty. */
	memset(buf, 'X', (size_t)need + 1);
	assert_int_equal(pgt_stats_render(F.e, PGT_STATS_PROMETHEUS, buf, (size_t)need),
			 -ENOBUFS);
	assert_int_equal(buf[0], '\0');
	assert_int_equal(pgt_stats_render(F.e, PGT_STATS_PROMETHEUS, buf, 1), -ENOBUFS);
	assert_int_equal(buf[0], '\0');
	assert_int_equal(pgt_stats_render(F.e, PGT_STATS_PROMETHEUS, buf, (size_t)need + 1),
			 need);
	assert_int_equal(buf[need], '\0');
	free(buf);
}

static void test_bad_args(void **state)
{
	char buf[16];

	(void)state;
	assert_int_equal(pgt_stats_render(NULL, PGT_STATS_JSON, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pgt_stats_render(F.e, 0, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pgt_stats_render(F.e, 3, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pgt_stats_render(F.e, PGT_STATS_JSON, NULL, 5), -EINVAL);
}

static void test_empty_engine(void **state)
{
	pgt_engine *e;
	char *j, *p;

	(void)state;
	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	j = render(e, PGT_STATS_JSON);
	p = render(e, PGT_STATS_PROMETHEUS);
	assert_non_null(strstr(j, "\"regions\":[]"));
	assert_non_null(strstr(j, "\"totals\":{\"regions\":0,"));
	assert_non_null(strstr(p, "\npgtrack_regions 0\n"));
	/* Families are still declared, without samples. */
	assert_non_null(strstr(p, "# TYPE pgtrack_region_harvests_total counter\n"));
	free(j);
	free(p);
	pgt_engine_close(e);
}

/* ---- JSON: one test per field ---- */

enum kind { K_U64, K_INT, K_STR, K_BOOL };

struct field {
	const char *name;
	enum kind kind;
	/* expected value for region i */
	uint64_t (*u)(int i);
	const char *(*s)(int i);
	bool (*b)(int i);
	int64_t (*n)(int i);
	/* Prometheus family carrying it, NULL when JSON only */
	const char *prom;
};

static const char *x_name(int i) { return i ? "plain" : NAME_NASTY_JSON; }
static const char *x_backing(int i) { return pgt_backing_name((int)F.info[i].backing); }
static const char *x_method(int i) { return pgt_dirty_method_name(F.info[i].dirty_method); }
static uint64_t x_gpa(int i) { return F.info[i].gpa; }
static uint64_t x_len(int i) { return F.info[i].length; }
static uint64_t x_psize(int i) { return F.info[i].page_size; }
static uint64_t x_pages(int i) { return F.info[i].npages; }
static int64_t x_node(int i) { return F.info[i].numa_node; }
static bool x_tdirty(int i) { return F.info[i].track & PGT_TRACK_DIRTY; }
static bool x_ttouch(int i) { return F.info[i].track & PGT_TRACK_TOUCH; }
static uint64_t x_touched(int i) { return F.st[i].touched; }
static uint64_t x_touched_b(int i) { return F.st[i].touched * F.info[i].page_size; }
static uint64_t x_tfaults(int i) { return F.st[i].touch_faults; }
static uint64_t x_terrors(int i) { return F.st[i].touch_errors; }
static uint64_t x_wpfaults(int i) { return F.st[i].wp_faults; }
static uint64_t x_harvests(int i) { return F.st[i].harvests; }
static uint64_t x_reported(int i) { return F.st[i].dirty_reported; }
static uint64_t x_views(int i) { return F.st[i].views; }
static uint64_t x_meta(int i) { return F.st[i].metadata_bytes; }
static uint64_t x_resident(int i) { return F.mc[i].resident; }
static uint64_t x_released(int i) { return F.mc[i].released; }
static uint64_t x_pinned(int i) { return F.mc[i].pinned; }
static uint64_t x_zero(int i) { return F.mc[i].zero; }
static uint64_t x_pending(int i) { return F.mc[i].dirty; }
static uint64_t x_partial(int i) { return F.mc[i].partial_hugepages; }

static const struct field fields[] = {
	{ "name", K_STR, .s = x_name },
	{ "backing", K_STR, .s = x_backing },
	{ "gpa", K_U64, .u = x_gpa },
	{ "length_bytes", K_U64, .u = x_len, .prom = "pgtrack_region_size_bytes" },
	{ "page_size_bytes", K_U64, .u = x_psize, .prom = "pgtrack_region_page_size_bytes" },
	{ "pages", K_U64, .u = x_pages, .prom = "pgtrack_region_pages" },
	{ "numa_node", K_INT, .n = x_node },
	{ "dirty_method", K_STR, .s = x_method },
	{ "track_dirty", K_BOOL, .b = x_tdirty },
	{ "track_touch", K_BOOL, .b = x_ttouch },
	{ "touched", K_U64, .u = x_touched, .prom = "pgtrack_region_touched_pages" },
	{ "touched_bytes", K_U64, .u = x_touched_b, .prom = "pgtrack_region_touched_bytes" },
	{ "touch_faults", K_U64, .u = x_tfaults, .prom = "pgtrack_region_touch_faults_total" },
	{ "touch_errors", K_U64, .u = x_terrors, .prom = "pgtrack_region_touch_errors_total" },
	{ "wp_faults", K_U64, .u = x_wpfaults, .prom = "pgtrack_region_wp_faults_total" },
	{ "harvests", K_U64, .u = x_harvests, .prom = "pgtrack_region_harvests_total" },
	{ "dirty_reported", K_U64, .u = x_reported,
	  .prom = "pgtrack_region_dirty_reported_pages_total" },
	{ "dirty_views", K_U64, .u = x_views, .prom = "pgtrack_region_dirty_views" },
	{ "metadata_bytes", K_U64, .u = x_meta, .prom = "pgtrack_region_metadata_bytes" },
	{ "resident_bytes", K_U64, .u = x_resident, .prom = "pgtrack_region_resident_bytes" },
	{ "released_bytes", K_U64, .u = x_released, .prom = "pgtrack_region_released_bytes" },
	{ "pinned_bytes", K_U64, .u = x_pinned, .prom = "pgtrack_region_pinned_bytes" },
	{ "zero_bytes", K_U64, .u = x_zero, .prom = "pgtrack_region_zero_bytes" },
	{ "dirty_pending_bytes", K_U64, .u = x_pending,
	  .prom = "pgtrack_region_dirty_pending_bytes" },
	{ "partial_hugepages", K_U64, .u = x_partial, .prom = "pgtrack_region_partial_hugepages" },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static json_object *parse_json(void)
{
	json_object *root;

	root = json_tokener_parse(F.json);
	if (!root)
		fail_msg("not valid JSON: %s", F.json);
	return root;
}

static json_object *jget(json_object *o, const char *k)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, k, &v))
		fail_msg("member \"%s\" missing", k);
	return v;
}

/* Regions come in guest-physical order: "plain" (gpa 0) first. */
static int json_index(int region)
{
	return region == 1 ? 0 : 1;
}

static void test_json_field(void **state)
{
	const struct field *f = *state;
	json_object *root = parse_json(), *regs = jget(root, "regions");

	assert_int_equal(json_object_array_length(regs), 2);
	for (int i = 0; i < 2; i++) {
		json_object *r = json_object_array_get_idx(regs, (size_t)json_index(i));
		json_object *v = jget(r, f->name);

		switch (f->kind) {
		case K_U64:
			assert_int_equal(json_object_get_type(v), json_type_int);
			assert_int_equal((uint64_t)json_object_get_int64(v), f->u(i));
			break;
		case K_INT:
			assert_int_equal(json_object_get_type(v), json_type_int);
			assert_int_equal(json_object_get_int64(v), f->n(i));
			break;
		case K_STR:
			assert_int_equal(json_object_get_type(v), json_type_string);
			assert_string_equal(json_object_get_string(v), f->s(i));
			break;
		case K_BOOL:
			assert_int_equal(json_object_get_type(v), json_type_boolean);
			assert_int_equal(!!json_object_get_boolean(v), f->b(i));
			break;
		}
	}
	json_object_put(root);
}

static void test_json_top(void **state)
{
	json_object *root = parse_json(), *t;

	(void)state;
	assert_string_equal(json_object_get_string(jget(root, "schema")), PGT_STATS_SCHEMA);
	assert_string_equal(json_object_get_string(jget(root, "version")), pgt_version());
	t = jget(root, "totals");
	assert_int_equal(json_object_get_int64(jget(t, "regions")), 2);
	assert_int_equal(json_object_get_int64(jget(t, "length_bytes")),
			 (int64_t)(F.info[0].length + F.info[1].length));
	assert_int_equal(json_object_get_int64(jget(t, "touched_bytes")),
			 (int64_t)(x_touched_b(0) + x_touched_b(1)));
	assert_int_equal(json_object_get_int64(jget(t, "metadata_bytes")),
			 (int64_t)(F.st[0].metadata_bytes + F.st[1].metadata_bytes));
	assert_int_equal(json_object_get_int64(jget(t, "resident_bytes")),
			 (int64_t)(F.mc[0].resident + F.mc[1].resident));
	assert_int_equal(json_object_get_int64(jget(t, "released_bytes")),
			 (int64_t)(F.mc[0].released + F.mc[1].released));
	/* accounting worked: no error member */
	for (int i = 0; i < 2; i++) {
		json_object *r = json_object_array_get_idx(jget(root, "regions"), (size_t)i), *v = NULL;

		assert_false(json_object_object_get_ex(r, "account_error", &v));
	}
	json_object_put(root);
}

/* ---- Prometheus: exposition shape and one test per family ---- */

static void prom_labels(int i, char *buf, size_t n)
{
	snprintf(buf, n, "{region=\"%s\",backing=\"%s\",gpa=\"0x%" PRIx64 "\"}",
		 i ? "plain" : NAME_NASTY_PROM, x_backing(i), F.info[i].gpa);
}

/* The line starting with @prefix (at a line start), or NULL. */
static const char *find_line(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, n))
			return p;
	return NULL;
}

static void test_prom_field(void **state)
{
	const struct field *f = *state;
	char want[512], labels[256];
	const char *help, *type, *s0, *s1;

	snprintf(want, sizeof(want), "# HELP %s ", f->prom);
	help = find_line(F.prom, want);
	assert_non_null(help);
	snprintf(want, sizeof(want), "# TYPE %s %s\n", f->prom,
		 strstr(f->prom, "_total") ? "counter" : "gauge");
	type = find_line(F.prom, want);
	assert_non_null(type);
	assert_true(help < type);
	prom_labels(1, labels, sizeof(labels));
	snprintf(want, sizeof(want), "%s%s %" PRIu64 "\n", f->prom, labels, f->u(1));
	s0 = find_line(F.prom, want);
	if (!s0)
		fail_msg("no sample line \"%s\"", want);
	prom_labels(0, labels, sizeof(labels));
	snprintf(want, sizeof(want), "%s%s %" PRIu64 "\n", f->prom, labels, f->u(0));
	s1 = find_line(F.prom, want);
	if (!s1)
		fail_msg("no sample line \"%s\"", want);
	/* Samples follow their family's TYPE line, before the next family. */
	assert_true(type < s0 && s0 < s1);
	assert_null(memmem(type + 1, (size_t)(s1 - type - 1), "# TYPE", 6));
}

static void test_prom_shape(void **state)
{
	char want[256];
	int helps = 0, types = 0;

	(void)state;
	snprintf(want, sizeof(want), "pgtrack_info{version=\"%s\"} 1\n", pgt_version());
	assert_non_null(find_line(F.prom, want));
	assert_non_null(find_line(F.prom, "pgtrack_regions 2\n"));
	snprintf(want, sizeof(want),
		 "pgtrack_region_info{region=\"%s\",backing=\"%s\",gpa=\"0x%" PRIx64
		 "\",dirty_method=\"%s\"} 1\n",
		 NAME_NASTY_PROM, x_backing(0), F.info[0].gpa, x_method(0));
	assert_non_null(find_line(F.prom, want));
	/* Every line is a comment or a pgtrack_ sample; each family declared once. */
	for (const char *p = F.prom; *p;) {
		const char *e = strchr(p, '\n');

		assert_non_null(e);
		if (!strncmp(p, "# HELP ", 7))
			helps++;
		else if (!strncmp(p, "# TYPE ", 7))
			types++;
		else
			assert_int_equal(strncmp(p, "pgtrack_", 8), 0);
		/* A raw line feed inside a label would have split the line. */
		assert_null(memchr(p, '\xff', (size_t)(e - p)));
		p = e + 1;
	}
	assert_int_equal(helps, types);
	/* info, regions, region_info and one per numeric field */
	{
		int fams = 3;

		for (size_t i = 0; i < NFIELDS; i++)
			fams += fields[i].prom != NULL;
		assert_int_equal(helps, fams);
	}
}

int main(void)
{
	struct CMUnitTest tests[11 + 2 * NFIELDS];
	static char names[2 * NFIELDS][64];
	size_t n = 0, k = 0;

	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_utf8_seq);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_json_escape);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_json_escape_truncates);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_prom_escape);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_state_known);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_account_known);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_sizing);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_bad_args);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_empty_engine);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_json_top);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_prom_shape);
	for (size_t i = 0; i < NFIELDS; i++) {
		snprintf(names[k], sizeof(names[k]), "json_field_%s", fields[i].name);
		tests[n++] = (struct CMUnitTest){ .name = names[k++], .test_func = test_json_field,
						  .initial_state = (void *)&fields[i] };
	}
	for (size_t i = 0; i < NFIELDS; i++) {
		if (!fields[i].prom)
			continue;
		snprintf(names[k], sizeof(names[k]), "prom_%s", fields[i].prom);
		tests[n++] = (struct CMUnitTest){ .name = names[k++], .test_func = test_prom_field,
						  .initial_state = (void *)&fields[i] };
	}
	return _cmocka_run_group_tests("stats_render", tests, n, setup, teardown);
}
