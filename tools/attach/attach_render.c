/* SPDX-License-Identifier: MIT */
/*
 * The attach figures as JSON (json-c; schema pgtrack-attach/1, documented
 * in docs/attach.md) and as Prometheus text exposition. The engine's own
 * rendering (pgt_stats_render) is embedded: parsed into the JSON document,
 * appended to the Prometheus text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "pgt_config.h"
#include "tools/attach/attach_pvt.h"

static const char *const rate_keys[PGT_ATTACH_RATES] = { "1s", "10s", "60s" };

static json_object *jbytes(int64_t v)
{
	return v < 0 ? NULL : json_object_new_int64(v);
}

static json_object *ju64(uint64_t v)
{
	return json_object_new_uint64(v);
}

static void put(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static double epoch_s(const struct pgt_attach *a)
{
	return a->cfg.epoch_ms / 1000.0;
}

/* Memory written / first touched within the last 2^k epochs. */
static json_object *windows(const struct pgt_attach *a, const struct att_region *g,
			    const uint64_t *bucket)
{
	json_object *arr = json_object_new_array();
	uint64_t cum = 0;

	for (int k = 0; k < PGT_ATTACH_WINDOWS; k++) {
		json_object *w = json_object_new_object();

		cum += bucket[k];
		put(w, "within_seconds", json_object_new_double(epoch_s(a) * (double)(1u << k)));
		put(w, "bytes", ju64(cum * g->page_size));
		json_object_array_add(arr, w);
	}
	return arr;
}

static json_object *region_json(struct pgt_attach *a, unsigned i, uint64_t now)
{
	struct att_region *g = &a->reg[i];
	struct pgt_attach_figures f = { .size = sizeof(f) };
	json_object *o = json_object_new_object(), *t, *x;

	pgt_attach__figures(a, g, &f);
	put(o, "name", json_object_new_string(g->name));
	put(o, "mapping", json_object_new_string(g->mapping));
	put(o, "tracked", json_object_new_boolean(g->live));
	put(o, "start", ju64(g->start));
	put(o, "size", ju64(g->length));
	put(o, "page_size", ju64(g->page_size));
	put(o, "backing", json_object_new_string(g->backing));
	put(o, "gpa", ju64(g->gpa));
	put(o, "dirty_method", json_object_new_string(pgt_dirty_method_name(g->method)));
	t = json_object_new_array();
	if (g->track & PGT_TRACK_DIRTY)
		json_object_array_add(t, json_object_new_string("dirty"));
	if (g->track & PGT_TRACK_TOUCH)
		json_object_array_add(t, json_object_new_string("touch"));
	if (g->track & PGT_TRACK_REMOVE)
		json_object_array_add(t, json_object_new_string("remove"));
	put(o, "track", t);
	put(o, "dirty_bytes_total", ju64(f.dirty_bytes_total));
	x = json_object_new_object();
	for (int k = 0; k < PGT_ATTACH_RATES; k++)
		put(x, rate_keys[k], g->live ? ju64(f.dirty_rate[k]) : NULL);
	put(o, "dirty_rate_bytes_per_second", x);
	if (g->live && g->hist_ok) {
		put(o, "written_bytes", windows(a, g, g->hist.write));
		put(o, "first_touched_bytes", windows(a, g, g->hist.touch));
		x = json_object_new_array();
		for (int k = 0; k < PGT_AGE_BUCKETS; k++)
			json_object_array_add(x, ju64(g->hist.write[k]));
		put(o, "write_age_pages", x);
		put(o, "age_epochs", ju64(g->hist.epoch));
	}
	put(o, "touched_bytes", jbytes(f.touched_bytes));
	put(o, "resident_bytes", jbytes(f.resident_bytes));
	put(o, "released_bytes", jbytes(f.released_bytes));
	put(o, "vmm_discarded_bytes", ju64(f.discarded_bytes));
	put(o, "vmm_discard_calls", ju64(f.discard_calls));
	put(o, "reclaimed_bytes", ju64(f.reclaimed_bytes));
	if (g->live && g->pl_ns) {
		x = json_object_new_object();
		put(x, "measured_seconds_ago", json_object_new_double((double)(now - g->pl_ns) / 1e9));
		if (g->pl_err) {
			put(x, "error", json_object_new_string(strerror(-g->pl_err)));
		} else {
			json_object *nodes = json_object_new_array();

			for (unsigned n = 0; n < g->pl.nnodes && n < PGT_MAX_NODES; n++) {
				json_object *nd;

				if (!g->pl.node_pages[n])
					continue;
				nd = json_object_new_object();
				put(nd, "node", json_object_new_int((int)n));
				put(nd, "resident_bytes", ju64(g->pl.node_pages[n] * g->pl.page_size));
				json_object_array_add(nodes, nd);
			}
			put(x, "nodes", nodes);
			put(x, "absent_bytes", ju64(g->pl.absent * g->pl.page_size));
		}
		put(o, "numa", x);
	}
	return o;
}

char *pgt_attach__json(struct pgt_attach *a, bool full, size_t *len)
{
	json_object *root = json_object_new_object(), *regions, *tot, *x;
	struct pgt_attach_figures f = { .size = sizeof(f) };
	uint64_t now = pgt_attach__now_ns();
	struct timespec wall;
	const char *text;
	char *out;

	if (!root)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &wall);
	put(root, "schema", json_object_new_string(PGTOOL_ATTACH_SCHEMA));
	put(root, "version", json_object_new_string(PGT_VERSION));
	put(root, "pid", json_object_new_int(a->pid));
	put(root, "starttime", ju64(a->starttime));
	put(root, "time", json_object_new_double((double)wall.tv_sec + wall.tv_nsec / 1e9));
	put(root, "state", json_object_new_string(pgt_attach_state_name(a->state)));
	put(root, "message", json_object_new_string(a->message));
	put(root, "http_port", a->port ? json_object_new_int(a->port) : NULL);
	put(root, "interval_ms", json_object_new_int((int)a->cfg.interval_ms));
	put(root, "epoch_ms", json_object_new_int((int)a->cfg.epoch_ms));
	put(root, "steps_aside", ju64(a->steps_aside));
	regions = json_object_new_array();
	for (unsigned i = 0; i < a->nregions; i++)
		if (a->reg[i].used)
			json_object_array_add(regions, region_json(a, i, now));
	put(root, "regions", regions);
	pgt_attach__figures(a, NULL, &f);
	tot = json_object_new_object();
	put(tot, "regions", json_object_new_int((int)f.regions));
	put(tot, "guest_bytes", ju64(f.guest_bytes));
	put(tot, "dirty_bytes_total", ju64(f.dirty_bytes_total));
	x = json_object_new_object();
	for (int k = 0; k < PGT_ATTACH_RATES; k++)
		put(x, rate_keys[k], ju64(f.dirty_rate[k]));
	put(tot, "dirty_rate_bytes_per_second", x);
	put(tot, "touched_bytes", jbytes(f.touched_bytes));
	put(tot, "resident_bytes", jbytes(f.resident_bytes));
	put(tot, "released_bytes", jbytes(f.released_bytes));
	put(tot, "vmm_discarded_bytes", ju64(f.discarded_bytes));
	put(tot, "reclaimed_bytes", ju64(f.reclaimed_bytes));
	put(root, "totals", tot);
	if (full && a->eng) {
		int64_t need = pgt_stats_render(a->eng, PGT_STATS_JSON, NULL, 0);
		char *buf = need > 0 ? malloc((size_t)need + 4096) : NULL;

		if (buf && pgt_stats_render(a->eng, PGT_STATS_JSON, buf, (size_t)need + 4096) > 0)
			put(root, "pgtrack", json_tokener_parse(buf));
		free(buf);
	}
	text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN |
						 JSON_C_TO_STRING_NOSLASHESCAPE, len);
	out = text ? strdup(text) : NULL;
	json_object_put(root);
	return out;
}

/* ---- Prometheus ---- */

static void sample(FILE *f, const char *name, const struct att_region *g, const char *extra_k,
		   const char *extra_v, double v)
{
	fprintf(f, "%s{region=\"", name);
	pgtool_prom_label(f, g->name);
	fputs("\",mapping=\"", f);
	pgtool_prom_label(f, g->mapping);
	fputc('"', f);
	if (extra_k)
		fprintf(f, ",%s=\"%s\"", extra_k, extra_v);
	fprintf(f, "} %.17g\n", v);
}

char *pgt_attach__prometheus(struct pgt_attach *a, size_t *len)
{
	struct pgt_attach_figures fig[PGT_ATTACH_MAX_REGIONS];
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	if (!f)
		return NULL;
	for (unsigned i = 0; i < a->nregions; i++) {
		fig[i] = (struct pgt_attach_figures){ .size = sizeof(fig[i]) };
		pgt_attach__figures(a, &a->reg[i], &fig[i]);
	}
	pgtool_prom_family(f, "pgtrack_attach_info", "gauge",
			   "libpgtrack-attach in this process (always 1).");
	fprintf(f, "pgtrack_attach_info{version=\"%s\",state=\"%s\",pid=\"%d\"} 1\n", PGT_VERSION,
		pgt_attach_state_name(a->state), a->pid);
	pgtool_prom_family(f, "pgtrack_attach_steps_aside_total", "counter",
	       "Times pgtrack gave guest RAM up to the VMM's own userfaultfd.");
	fprintf(f, "pgtrack_attach_steps_aside_total %" PRIu64 "\n", a->steps_aside);

#define EACH(expr)                                                      \
	for (unsigned i = 0; i < a->nregions; i++) {                    \
		const struct att_region *g = &a->reg[i];                \
		const struct pgt_attach_figures *x = &fig[i];           \
		(void)x;                                                \
		if (!g->used)                                           \
			continue;                                       \
		expr;                                                   \
	}
	pgtool_prom_family(f, "pgtrack_attach_tracked", "gauge", "1 while pgtrack tracks the mapping.");
	EACH(sample(f, "pgtrack_attach_tracked", g, NULL, NULL, g->live));
	pgtool_prom_family(f, "pgtrack_attach_guest_bytes", "gauge", "Size of the guest RAM mapping.");
	EACH(sample(f, "pgtrack_attach_guest_bytes", g, NULL, NULL, (double)g->length));
	pgtool_prom_family(f, "pgtrack_attach_dirty_bytes_total", "counter",
	       "Bytes reported written (a page once per sampling interval).");
	EACH(sample(f, "pgtrack_attach_dirty_bytes_total", g, NULL, NULL,
		    (double)x->dirty_bytes_total));
	pgtool_prom_family(f, "pgtrack_attach_dirty_rate_bytes_per_second", "gauge",
	       "Bytes written per second over the window.");
	EACH(if (g->live) for (int k = 0; k < PGT_ATTACH_RATES; k++)
		     sample(f, "pgtrack_attach_dirty_rate_bytes_per_second", g, "window",
			    rate_keys[k], (double)x->dirty_rate[k]));
	pgtool_prom_family(f, "pgtrack_attach_written_bytes", "gauge",
	       "Memory written within the last N seconds (write-age histogram).");
	EACH(if (g->live && g->hist_ok) for (int k = 0; k < PGT_ATTACH_WINDOWS; k++) {
		char w[32];

		snprintf(w, sizeof(w), "%g", epoch_s(a) * (double)(1u << k));
		sample(f, "pgtrack_attach_written_bytes", g, "within_seconds", w,
		       (double)x->written_bytes[k]);
	});
	pgtool_prom_family(f, "pgtrack_attach_touched_bytes", "gauge",
	       "Guest RAM populated since tracking began (first-touch tracking).");
	EACH(if (x->touched_bytes >= 0) sample(f, "pgtrack_attach_touched_bytes", g, NULL, NULL,
					       (double)x->touched_bytes));
	pgtool_prom_family(f, "pgtrack_attach_resident_bytes", "gauge", "Guest RAM in host memory.");
	EACH(if (x->resident_bytes >= 0) sample(f, "pgtrack_attach_resident_bytes", g, NULL, NULL,
						(double)x->resident_bytes));
	pgtool_prom_family(f, "pgtrack_attach_released_bytes", "gauge",
	       "Guest RAM given back (balloon, free page reporting) and not used since.");
	EACH(if (x->released_bytes >= 0) sample(f, "pgtrack_attach_released_bytes", g, NULL, NULL,
						(double)x->released_bytes));
	pgtool_prom_family(f, "pgtrack_attach_vmm_discarded_bytes_total", "counter",
	       "Bytes the VMM discarded in the mapping (madvise, punch-hole calls).");
	EACH(sample(f, "pgtrack_attach_vmm_discarded_bytes_total", g, NULL, NULL,
		    (double)x->discarded_bytes));
	pgtool_prom_family(f, "pgtrack_attach_reclaimed_bytes_total", "counter",
	       "Bytes the VMM took back from the released set (balloon deflate).");
	EACH(sample(f, "pgtrack_attach_reclaimed_bytes_total", g, NULL, NULL,
		    (double)x->reclaimed_bytes));
	pgtool_prom_family(f, "pgtrack_attach_numa_resident_bytes", "gauge",
	       "Guest RAM resident per host NUMA node at the last placement query.");
	EACH(if (g->live && g->pl_ns && !g->pl_err) for (unsigned n = 0; n < g->pl.nnodes; n++) {
		char node[16];

		snprintf(node, sizeof(node), "%u", n);
		sample(f, "pgtrack_attach_numa_resident_bytes", g, "node", node,
		       (double)(g->pl.node_pages[n] * g->pl.page_size));
	});
#undef EACH
	if (a->eng) {
		int64_t need = pgt_stats_render(a->eng, PGT_STATS_PROMETHEUS, NULL, 0);
		char *eb = need > 0 ? malloc((size_t)need + 4096) : NULL;

		if (eb && pgt_stats_render(a->eng, PGT_STATS_PROMETHEUS, eb, (size_t)need + 4096) > 0)
			fputs(eb, f);
		free(eb);
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}
