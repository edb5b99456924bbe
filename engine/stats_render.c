/* SPDX-License-Identifier: MIT */
/*
 * The engine's accounting as JSON and as Prometheus text exposition, written
 * into the caller's buffer. Kept free of JSON/HTTP libraries on purpose: the
 * only strings that come from outside are region names, and those go through
 * the two small escapers below (unit-tested byte by byte).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_pvt.h"
#include "engine/stats_pvt.h"
#include "hal/export.h"
#include "pgtrack/account.h"
#include "pgtrack/release.h"
#include "pgtrack/target.h"
#include "pgtrack/stats.h"

/*
 * Output that keeps counting past the end of the buffer, so one pass both
 * renders and sizes (snprintf semantics for the whole document).
 */
struct out {
	char *buf;
	size_t cap;
	size_t pos;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->pos < o->cap) {
		size_t room = o->cap - o->pos;

		memcpy(o->buf + o->pos, s, n < room ? n : room);
	}
	o->pos += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) putf(struct out *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Callers format numbers and static names only: 128 bytes is plenty. */
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* NUL-terminate within the buffer; true when the whole text fitted. */
static bool finish(struct out *o)
{
	if (!o->cap)
		return false;
	if (o->pos < o->cap) {
		o->buf[o->pos] = '\0';
		return true;
	}
	o->buf[o->cap - 1] = '\0';
	return false;
}

size_t pgt__utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0; /* continuation byte, overlong lead (C0/C1) or > U+10FFFF */
	/* Second-byte ranges exclude overlong forms, surrogates and > U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* U+FFFD in the two spellings the formats use. */
#define JSON_REPLACEMENT "\\ufffd"
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

static void json_escape_out(struct out *o, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned char c = *s;
		size_t n;

		switch (c) {
		case '"': puts_(o, "\\\""); s++; continue;
		case '\\': puts_(o, "\\\\"); s++; continue;
		case '\b': puts_(o, "\\b"); s++; continue;
		case '\f': puts_(o, "\\f"); s++; continue;
		case '\n': puts_(o, "\\n"); s++; continue;
		case '\r': puts_(o, "\\r"); s++; continue;
		case '\t': puts_(o, "\\t"); s++; continue;
		default:
			break;
		}
		if (c < 0x20) {
			putf(o, "\\u%04x", c);
			s++;
			continue;
		}
		n = pgt__utf8_seq(s);
		if (!n) {
			puts_(o, JSON_REPLACEMENT);
			s++;
			continue;
		}
		put(o, (const char *)s, n);
		s += n;
	}
}

/* Label values: the exposition format escapes only \, " and line feed. */
static void prom_escape_out(struct out *o, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t n;

		switch (*s) {
		case '"': puts_(o, "\\\""); s++; continue;
		case '\\': puts_(o, "\\\\"); s++; continue;
		case '\n': puts_(o, "\\n"); s++; continue;
		default:
			break;
		}
		n = pgt__utf8_seq(s);
		if (!n) {
			puts_(o, UTF8_REPLACEMENT);
			s++;
			continue;
		}
		put(o, (const char *)s, n);
		s += n;
	}
}

size_t pgt__json_escape(char *dst, size_t cap, const char *s)
{
	struct out o = { dst, cap, 0 };

	json_escape_out(&o, s);
	finish(&o);
	return o.pos;
}

size_t pgt__prom_escape(char *dst, size_t cap, const char *s)
{
	struct out o = { dst, cap, 0 };

	prom_escape_out(&o, s);
	finish(&o);
	return o.pos;
}

/* ---------------------------------------------------------------- */

struct snap {
	struct pgt_region_info info;
	struct pgt_region_stats st;
	struct pgt_mem_counts mc;   /* pgt_account_region() totals */
	int acc_err;
};

static const char *backing_str(const struct snap *s)
{
	const char *n = pgt_backing_name((int)s->info.backing);

	return n ? n : "unknown";
}

static const char *method_str(const struct snap *s)
{
	const char *n = pgt_dirty_method_name(s->info.dirty_method);

	return n ? n : "none";
}

static void render_json(struct out *o, const struct snap *sn, size_t n)
{
	uint64_t len = 0, touched = 0, meta = 0, resident = 0, released = 0;

	puts_(o, "{\"schema\":\"" PGT_STATS_SCHEMA "\",\"version\":\"");
	json_escape_out(o, pgt_version());
	puts_(o, "\",\"regions\":[");
	for (size_t i = 0; i < n; i++) {
		const struct pgt_region_info *in = &sn[i].info;
		const struct pgt_region_stats *st = &sn[i].st;

		puts_(o, i ? ",{\"name\":\"" : "{\"name\":\"");
		json_escape_out(o, in->name);
		putf(o, "\",\"backing\":\"%s\"", backing_str(&sn[i]));
		putf(o, ",\"gpa\":%" PRIu64, in->gpa);
		putf(o, ",\"length_bytes\":%" PRIu64, in->length);
		putf(o, ",\"page_size_bytes\":%" PRIu64, in->page_size);
		putf(o, ",\"pages\":%" PRIu64, in->npages);
		putf(o, ",\"numa_node\":%d", in->numa_node);
		putf(o, ",\"dirty_method\":\"%s\"", method_str(&sn[i]));
		putf(o, ",\"track_dirty\":%s", (in->track & PGT_TRACK_DIRTY) ? "true" : "false");
		putf(o, ",\"track_touch\":%s", (in->track & PGT_TRACK_TOUCH) ? "true" : "false");
		putf(o, ",\"touched\":%" PRIu64, st->touched);
		putf(o, ",\"touched_bytes\":%" PRIu64, st->touched * in->page_size);
		putf(o, ",\"touch_faults\":%" PRIu64, st->touch_faults);
		putf(o, ",\"touch_errors\":%" PRIu64, st->touch_errors);
		putf(o, ",\"wp_faults\":%" PRIu64, st->wp_faults);
		putf(o, ",\"harvests\":%" PRIu64, st->harvests);
		putf(o, ",\"dirty_reported\":%" PRIu64, st->dirty_reported);
		putf(o, ",\"dirty_views\":%" PRIu64, st->views);
		putf(o, ",\"metadata_bytes\":%" PRIu64, st->metadata_bytes);
		putf(o, ",\"resident_bytes\":%" PRIu64, sn[i].mc.resident);
		putf(o, ",\"released_bytes\":%" PRIu64, sn[i].mc.released);
		putf(o, ",\"pinned_bytes\":%" PRIu64, sn[i].mc.pinned);
		putf(o, ",\"zero_bytes\":%" PRIu64, sn[i].mc.zero);
		putf(o, ",\"dirty_pending_bytes\":%" PRIu64, sn[i].mc.dirty);
		putf(o, ",\"partial_hugepages\":%" PRIu64, sn[i].mc.partial_hugepages);
		if (sn[i].acc_err)
			putf(o, ",\"account_error\":%d", sn[i].acc_err);
		puts_(o, "}");
		len += in->length;
		resident += sn[i].mc.resident;
		released += sn[i].mc.released;
		touched += st->touched * in->page_size;
		meta += st->metadata_bytes;
	}
	putf(o, "],\"totals\":{\"regions\":%zu", n);
	putf(o, ",\"length_bytes\":%" PRIu64, len);
	putf(o, ",\"touched_bytes\":%" PRIu64, touched);
	putf(o, ",\"resident_bytes\":%" PRIu64, resident);
	putf(o, ",\"released_bytes\":%" PRIu64, released);
	putf(o, ",\"metadata_bytes\":%" PRIu64 "}}\n", meta);
}

/* One metric family of per-region samples. */
struct family {
	const char *name;
	const char *type;
	const char *help;
	uint64_t (*get)(const struct snap *s);
};

static uint64_t f_length(const struct snap *s) { return s->info.length; }
static uint64_t f_psize(const struct snap *s) { return s->info.page_size; }
static uint64_t f_pages(const struct snap *s) { return s->info.npages; }
static uint64_t f_touched(const struct snap *s) { return s->st.touched; }
static uint64_t f_touched_b(const struct snap *s) { return s->st.touched * s->info.page_size; }
static uint64_t f_tfaults(const struct snap *s) { return s->st.touch_faults; }
static uint64_t f_terrors(const struct snap *s) { return s->st.touch_errors; }
static uint64_t f_wpfaults(const struct snap *s) { return s->st.wp_faults; }
static uint64_t f_harvests(const struct snap *s) { return s->st.harvests; }
static uint64_t f_reported(const struct snap *s) { return s->st.dirty_reported; }
static uint64_t f_views(const struct snap *s) { return s->st.views; }
static uint64_t f_meta(const struct snap *s) { return s->st.metadata_bytes; }
static uint64_t f_resident(const struct snap *s) { return s->mc.resident; }
static uint64_t f_released(const struct snap *s) { return s->mc.released; }
static uint64_t f_pinned(const struct snap *s) { return s->mc.pinned; }
static uint64_t f_zero(const struct snap *s) { return s->mc.zero; }
static uint64_t f_pending(const struct snap *s) { return s->mc.dirty; }
static uint64_t f_partial(const struct snap *s) { return s->mc.partial_hugepages; }

static const struct family families[] = {
	{ "pgtrack_region_size_bytes", "gauge", "Guest memory in the region.", f_length },
	{ "pgtrack_region_page_size_bytes", "gauge",
	  "Tracking granularity (the backing page size).", f_psize },
	{ "pgtrack_region_pages", "gauge", "Pages in the region at its page size.", f_pages },
	{ "pgtrack_region_touched_pages", "gauge",
	  "Pages populated since first-touch tracking began.", f_touched },
	{ "pgtrack_region_touched_bytes", "gauge",
	  "Bytes populated since first-touch tracking began.", f_touched_b },
	{ "pgtrack_region_touch_faults_total", "counter",
	  "First-touch faults resolved by handler threads.", f_tfaults },
	{ "pgtrack_region_touch_errors_total", "counter",
	  "First-touch faults failed because the page provider failed.", f_terrors },
	{ "pgtrack_region_wp_faults_total", "counter",
	  "Write faults taken by the uffd-sync and mprotect trackers.", f_wpfaults },
	{ "pgtrack_region_harvests_total", "counter",
	  "Kernel dirty-tracking passes (shared by all views).", f_harvests },
	{ "pgtrack_region_dirty_reported_pages_total", "counter",
	  "Dirty pages reported by the kernel passes.", f_reported },
	{ "pgtrack_region_dirty_views", "gauge", "Open dirty views (independent consumers).",
	  f_views },
	{ "pgtrack_region_metadata_bytes", "gauge",
	  "Memory pgtrack itself uses to track the region.", f_meta },
	{ "pgtrack_region_resident_bytes", "gauge", "Guest memory in host RAM now.", f_resident },
	{ "pgtrack_region_released_bytes", "gauge",
	  "Guest memory given back (4 KiB pieces of large pages included).", f_released },
	{ "pgtrack_region_pinned_bytes", "gauge", "Guest memory that may never be released.",
	  f_pinned },
	{ "pgtrack_region_zero_bytes", "gauge", "Guest memory the last zero scan found zero.",
	  f_zero },
	{ "pgtrack_region_dirty_pending_bytes", "gauge",
	  "Guest memory written since some dirty view last harvested.", f_pending },
	{ "pgtrack_region_partial_hugepages", "gauge",
	  "Large pages with some but not all 4 KiB pieces released.", f_partial },
};

static void prom_labels(struct out *o, const struct snap *s)
{
	puts_(o, "{region=\"");
	prom_escape_out(o, s->info.name);
	putf(o, "\",backing=\"%s\",gpa=\"0x%" PRIx64 "\"}", backing_str(s), s->info.gpa);
}

static void render_prom(struct out *o, const struct snap *sn, size_t n)
{
	puts_(o, "# HELP pgtrack_info Library version (the value is always 1).\n"
		 "# TYPE pgtrack_info gauge\n"
		 "pgtrack_info{version=\"");
	prom_escape_out(o, pgt_version());
	puts_(o, "\"} 1\n");
	putf(o, "# HELP pgtrack_regions Regions tracked by the engine.\n"
		"# TYPE pgtrack_regions gauge\npgtrack_regions %zu\n", n);

	puts_(o, "# HELP pgtrack_region_info Region description (the value is always 1).\n"
		 "# TYPE pgtrack_region_info gauge\n");
	for (size_t i = 0; i < n; i++) {
		puts_(o, "pgtrack_region_info{region=\"");
		prom_escape_out(o, sn[i].info.name);
		putf(o, "\",backing=\"%s\",gpa=\"0x%" PRIx64 "\",dirty_method=\"%s\"} 1\n",
		     backing_str(&sn[i]), sn[i].info.gpa, method_str(&sn[i]));
	}
	/* Every sample of a family must follow its HELP/TYPE lines together. */
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		putf(o, "# HELP %s %s\n", families[f].name, families[f].help);
		putf(o, "# TYPE %s %s\n", families[f].name, families[f].type);
		for (size_t i = 0; i < n; i++) {
			puts_(o, families[f].name);
			prom_labels(o, &sn[i]);
			putf(o, " %" PRIu64 "\n", families[f].get(&sn[i]));
		}
	}
}

PGT_EXPORT int64_t pgt_stats_render(pgt_engine *e, int format, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	struct snap *sn = NULL;
	size_t n = 0, cap = 0;
	int64_t ret;

	if (!e || (!buf && len))
		return -EINVAL;
	if (format != PGT_STATS_JSON && format != PGT_STATS_PROMETHEUS)
		return -EINVAL;

	/*
	 * Read lock held while rendering: names stay valid and no region goes
	 * away half-rendered. Lock order regions_lock -> harvest_lock (taken
	 * by pgt_region_stats) matches the rest of the engine, which never
	 * takes the list lock under a harvest lock.
	 */
	pthread_rwlock_rdlock(&e->regions_lock);
	for (struct pgt_region *r = e->regions; r; r = r->next)
		cap++;
	if (cap) {
		sn = calloc(cap, sizeof(*sn));
		if (!sn) {
			pthread_rwlock_unlock(&e->regions_lock);
			return -ENOMEM;
		}
	}
	for (struct pgt_region *r = e->regions; r && n < cap; r = r->next) {
		struct pgt_account acc = { .size = sizeof(acc) };

		sn[n].info.size = sizeof(sn[n].info);
		sn[n].st.size = sizeof(sn[n].st);
		/* Accounting first: it collects pending dirty pages into the
		 * views, which the stats then count. Same lock order as
		 * pgt_account_engine(): list, then the region's locks. */
		sn[n].acc_err = pgt_account_region(r, 0, &acc);
		if (!sn[n].acc_err)
			sn[n].mc = acc.total;
		if (pgt_region_info(r, &sn[n].info) || pgt_region_stats(r, &sn[n].st))
			continue;
		n++;
	}
	if (format == PGT_STATS_JSON)
		render_json(&o, sn, n);
	else
		render_prom(&o, sn, n);
	pthread_rwlock_unlock(&e->regions_lock);
	free(sn);

	if (!buf)
		return (int64_t)o.pos;
	if (!finish(&o)) {
		if (len)
			buf[0] = '\0';
		return -ENOBUFS;
	}
	ret = (int64_t)o.pos;
	return ret;
}
