/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim reports: the summary on stdout, the JSON report (json-c) and
 * the SVG heat map (plain text; every string that reaches it is escaped).
 *
 * JSON report, schema "pgtrack-sim-report/1" (bytes unless named otherwise,
 * pages at the guest's tracking page size):
 *   schema, tool, version, elapsed_s, boot_s (elapsed_s = boot_s + the
 *               configured duration, give or take a migration's end)
 *   config      the settings the run used (memory_bytes, vcpus, workloads...)
 *   guest       backing and why, page_size_bytes, pages, dirty_method,
 *               touch_tracking, hugepages_free_at_start
 *   workloads[] vcpu, kind, gpa, area_bytes, writes, allocs, frees,
 *               reported_pages, reclaimed_pages (4 KiB pages)
 *   device      ring_gpa, ring_bytes, own_mapping, writes, merges,
 *               merged_pages, rejected_log_entries
 *   timeline[]  per interval: t, phase, touched_bytes, dirty_pages,
 *               dirty_bytes_per_s, released/resident/pinned/guest_bytes
 *               (pgtrack), host_rss/host_hugetlb/cgroup_bytes,
 *               hugepages_free, mem_available_bytes, balloon_target_bytes
 *   migrations[] link_gbit, budget_ms, rounds[] (round, stop_and_copy,
 *               pages, bytes, seconds, dirty_after_ms), rounds_count
 *               (pre-copy), pages_sent, bytes_sent, refine, granule_bytes
 *               (pages are 4 KiB pieces when refine), bytes_sent_whole_pages,
 *               zero_markers, zero_marker_pieces, zero_marker_bytes,
 *               bytes_sent_without_zero_markers, zero_check_ms (rounds[]
 *               have zero_pieces), first_round_pages,
 *               final_pages, estimated/measured_downtime_ms, guest_stop_ms,
 *               converged, end_reason, dirtied_pages, dirtied_not_sent,
 *               verified, verify_units, verify_mismatch, destination...
 *   snapshots[] index, kind (full|incremental), t, pages, bytes;
 *               snapshot_chain_bytes
 *   balloon     target, reached, refused target and why, safe limit, pinned,
 *               ballooned/reported/reclaimed/freed bytes, partial large
 *               pages, host figures before and at best, release_visible
 *   views       kernel_passes, kernel_reported_pages and what each consumer
 *               (sampler, snapshots, migrations) received
 *   engine_stats the library's pgt_stats_render() JSON ("pgtrack-stats/1")
 *   heatmap     rows, pages_per_row, dirty[interval][row], touched[...]
 *   consistency migrations_verified, pages_sent_ge_dirtied,
 *               release_visible_to_host
 *   explain[]   pgt_explain() lines: key, bytes, text
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tools/sim.h"

#define REPORT_SCHEMA "pgtrack-sim-report/1"

/* ---------------------------------------------------------------- */
/* Figures shared by the summary and the JSON                        */
/* ---------------------------------------------------------------- */

struct views_fig {
	uint64_t kernel_passes;
	uint64_t kernel_reported;
	uint64_t views_open;
	uint64_t mig_pages;
};

static void views_figures(struct sim *s, struct views_fig *v)
{
	struct pgt_region_stats st = { .size = sizeof(st) };

	memset(v, 0, sizeof(*v));
	if (s->r && !pgt_region_stats(s->r, &st)) {
		v->kernel_passes = st.harvests;
		v->kernel_reported = st.dirty_reported;
		v->views_open = st.views;
	}
	for (unsigned i = 0; i < s->nmigs; i++)
		v->mig_pages += s->migs[i].view_pages;
}

static uint64_t hp_size(void)
{
	uint64_t v = sim_meminfo("Hugepagesize");

	return v ? v : 2ULL << 20;
}

/* Released memory as the host sees it in this process: HugetlbPages for
 * hugetlb, RSS otherwise (what the backing is charged to). HugePages_Free
 * is reported too, but the pool is shared with every other process. */
static bool release_visible(struct sim *s, const struct balloon_report *b, uint64_t *seen)
{
	if (s->info.backing == PGT_BACKING_HUGETLB)
		*seen = b->hugetlb_before > b->hugetlb_min ? b->hugetlb_before - b->hugetlb_min : 0;
	else
		*seen = b->rss_before > b->rss_min ? b->rss_before - b->rss_min : 0;
	return b->freed_bytes == 0 || *seen > 0;
}

#define MAX_EXPLAIN 64

/* Guest vs process vs cgroup memory, line by line (pgt_explain). */
static int explain(struct sim *s, struct pgt_explain_line *lines, size_t cap)
{
	struct pgt_account acc = { .size = sizeof(acc) };
	struct pgt_host_usage hu = { .size = sizeof(hu) };
	int n;

	if (!s->eng || pgt_account_engine(s->eng, 0, &acc) || pgt_host_usage(&hu))
		return 0;
	n = pgt_explain(&acc, &hu, lines, cap);
	return n < 0 ? 0 : (size_t)n < cap ? n : (int)cap;
}

/* ---------------------------------------------------------------- */
/* Summary                                                           */
/* ---------------------------------------------------------------- */

static void print_workloads(const struct sim *s, FILE *f)
{
	char b1[32], b2[32];

	for (unsigned i = 0; i < s->nwls; i++) {
		const struct wl *w = &s->wls[i];

		fprintf(f, "  vCPU %u      %-6s over %8s: %" PRIu64 " page writes", w->vcpu,
			sim_wl_name(w->kind), sim_bytes(w->a.n * SIM_UNIT, b1, sizeof(b1)),
			atomic_load(&w->writes));
		if (w->kind == WL_CHURN)
			fprintf(f, ", %" PRIu64 " allocations, %" PRIu64 " frees, %s reported",
				atomic_load(&w->allocs), atomic_load(&w->frees),
				sim_bytes(atomic_load(&w->reported) * SIM_UNIT, b2, sizeof(b2)));
		fputc('\n', f);
	}
}

static void print_device(struct sim *s, FILE *f)
{
	char b1[32];
	struct pgt_offload_info di;

	sim_device_info(s, &di);
	fprintf(f, "  device      %" PRIu64 " DMA page writes into a %s ring (pgtrack offload "
		"\"sim\"): %" PRIu64 " log records in %" PRIu64 " harvests (%" PRIu64
		" pages), %" PRIu64 " bad records dropped, %" PRIu64 " overflows\n",
		di.dma_writes, sim_bytes(s->ring.n * SIM_UNIT, b1, sizeof(b1)), di.records,
		di.harvests, di.pages, di.rejected, di.lost);
}

static void print_migration(const struct migration *m, FILE *f)
{
	char b1[32], b2[32];

	fprintf(f, "  migrate     %g Gbit/s: ", m->link_gbit);
	if (!m->nrounds) {
		fprintf(f, "%s\n", m->error ? strerror(-m->error) : m->end_reason);
		return;
	}
	fprintf(f, "%s after %u pre-copy round%s; sent %" PRIu64 " pages, %s; final "
		"stop-and-copy %" PRIu64 " pages, estimated downtime %.1f ms (budget %g ms), "
		"measured %.1f ms (%.1f ms of it stopping the guest)\n",
		m->converged ? "converged" : !strcmp(m->end_reason, "max rounds")
			? "NOT converged (max rounds)" : "NOT converged (out of time)",
		m->nrounds - 1, m->nrounds == 2 ? "" : "s",
		m->pages_sent, sim_bytes(m->bytes_sent, b1, sizeof(b1)), m->final_pages,
		m->est_downtime_ms, m->budget_ms, m->downtime_ms, m->stop_ms);
	if (m->refine)
		fprintf(f, "              refined to 4 KiB pieces: %s sent, whole 2 MiB "
			"pages would have been %s in the same rounds\n",
			sim_bytes(m->bytes_sent, b1, sizeof(b1)),
			sim_bytes(m->bytes_2m, b2, sizeof(b2)));
	if (m->zero_markers)
		fprintf(f, "              zero markers: %" PRIu64 " zero 4 KiB pieces sent as "
			"%llu-byte markers (%.1f ms checking): %s sent, %s without markers\n",
			m->zero_pieces, SIM_ZERO_MARKER, m->zero_check_ms,
			sim_bytes(m->bytes_sent, b1, sizeof(b1)),
			sim_bytes(m->bytes_sent + m->zero_pieces * (SIM_UNIT - SIM_ZERO_MARKER),
				  b2, sizeof(b2)));
	fprintf(f, "              %" PRIu64 " pages dirtied during it, %" PRIu64
		" of them not re-sent; destination %s (%" PRIu64 " pages of 4 KiB compared, "
		"%" PRIu64 " released ones skipped)\n",
		m->dirtied_pages, m->dirtied_not_sent,
		m->verified ? "identical to the source" : "DIFFERS from the source",
		m->verify_units, m->released_skipped);
}

static void print_snapshots(const struct sim *s, FILE *f)
{
	char b1[32];
	uint64_t total = 0;

	fprintf(f, "  snapshots  ");
	for (size_t i = 0; i < s->nsnaps; i++) {
		fprintf(f, " #%u %s%s", s->snaps[i].index, s->snaps[i].full ? "full " : "+",
			sim_bytes(s->snaps[i].bytes, b1, sizeof(b1)));
		total += s->snaps[i].bytes;
	}
	fprintf(f, "  (chain %s)\n", sim_bytes(total, b1, sizeof(b1)));
}

static void print_balloon(struct sim *s, const struct balloon_report *b, FILE *f)
{
	char b1[32], b2[32], b3[32], b4[32], b5[32];
	uint64_t seen = 0;
	bool vis = release_visible(s, b, &seen);

	fprintf(f, "  balloon     target %s %s", sim_bytes(b->target, b1, sizeof(b1)),
		b->reached ? "reached" : "NOT reached");
	if (b->reached)
		fprintf(f, " in %.1f s", b->reach_seconds);
	if (b->refused_target)
		fprintf(f, "; %s refused first (%s: safe limit %s, pinned %s)",
			sim_bytes(b->refused_target, b2, sizeof(b2)),
			b->refused_error ? strerror(-b->refused_error) : "accepted",
			sim_bytes(b->limit, b3, sizeof(b3)), sim_bytes(b->pinned, b4, sizeof(b4)));
	fputc('\n', f);
	fprintf(f, "              ballooned %s, free page reporting %s, host freed %s; "
		"%s refused as pinned; %" PRIu64 " large pages partly released (%s in 4 KiB "
		"pieces)\n",
		sim_bytes(b->released_bytes, b1, sizeof(b1)),
		sim_bytes(b->reported_bytes, b2, sizeof(b2)),
		sim_bytes(b->freed_bytes, b3, sizeof(b3)),
		sim_bytes(b->refused_pinned, b4, sizeof(b4)), b->partial_pages,
		sim_bytes(b->partial_units * SIM_UNIT, b5, sizeof(b5)));
	if (s->info.backing == PGT_BACKING_HUGETLB)
		fprintf(f, "              host: HugetlbPages %s -> %s (-%s), HugePages_Free %"
			PRIu64 " -> %" PRIu64 " (+%s)", sim_bytes(b->hugetlb_before, b2, sizeof(b2)),
			sim_bytes(b->hugetlb_min, b3, sizeof(b3)), sim_bytes(seen, b1, sizeof(b1)),
			b->hp_free_before, b->hp_free_peak,
			sim_bytes(b->hp_free_peak > b->hp_free_before
				  ? (b->hp_free_peak - b->hp_free_before) * hp_size() : 0,
				  b4, sizeof(b4)));
	else
		fprintf(f, "              host: RSS %s -> %s (-%s)",
			sim_bytes(b->rss_before, b1, sizeof(b1)),
			sim_bytes(b->rss_min, b2, sizeof(b2)), sim_bytes(seen, b3, sizeof(b3)));
	fprintf(f, ", guest resident %s -> %s, cgroup %s -> %s%s\n",
		sim_bytes(b->resident_before, b1, sizeof(b1)),
		sim_bytes(b->resident_min, b2, sizeof(b2)),
		sim_bytes(b->cg_before, b3, sizeof(b3)), sim_bytes(b->cg_min, b4, sizeof(b4)),
		vis ? "" : "  (release NOT visible to the host)");
	if (b->deflate_target)
		fprintf(f, "              deflate to %s %s, %s taken back\n",
			sim_bytes(b->deflate_target, b1, sizeof(b1)),
			b->deflate_reached ? "reached" : "not reached",
			sim_bytes(b->reclaimed_bytes, b2, sizeof(b2)));
}

/* The equations' heads and the guest's side; --json has every line. */
static void print_explain(struct sim *s, FILE *f)
{
	char b1[32];
	struct pgt_explain_line lines[MAX_EXPLAIN];
	int n = explain(s, lines, MAX_EXPLAIN);

	if (n)
		fprintf(f, "  memory      guest vs process vs cgroup, now (pgt_explain; all "
			"lines in --json):\n");
	for (int i = 0; i < n; i++) {
		const char *k = lines[i].key;
		int64_t v = lines[i].bytes;

		if (strchr(k, '.') && strncmp(k, "guest.", 6) && !strchr(k, '-') &&
		    strcmp(k, "cg.usage"))
			continue;
		fprintf(f, "    %-16s %s%10s  %s\n", k, v < 0 ? "-" : " ",
			sim_bytes((uint64_t)(v < 0 ? -v : v), b1, sizeof(b1)), lines[i].text);
	}
}

void sim_print_summary(struct sim *s, FILE *f)
{
	const struct sim_config *c = &s->cfg;
	const struct balloon_report *b = sim_balloon_report(s);
	struct views_fig vf;
	char b1[32];

	views_figures(s, &vf);
	fprintf(f, "\npgtrack-sim %s: %s guest, %u vCPUs, ran %.1f s (boot %.1f s)\n",
		pgt_version(), sim_bytes(c->memory, b1, sizeof(b1)), c->vcpus, sim_elapsed(s),
		s->boot_s);
	fprintf(f, "  guest RAM   %s; %s tracking at %s\n", s->backing_why,
		pgt_dirty_method_name(s->info.dirty_method),
		sim_bytes(s->info.page_size, b1, sizeof(b1)));
	print_workloads(s, f);
	if (s->ring.n)
		print_device(s, f);
	for (unsigned i = 0; i < s->nmigs; i++)
		print_migration(&s->migs[i], f);
	if (s->nsnaps)
		print_snapshots(s, f);
	if (b && b->ran)
		print_balloon(s, b, f);
	fprintf(f, "  views       one tracker, %" PRIu64 " kernel passes reporting %" PRIu64
		" pages; each consumer got its own: sampler %" PRIu64 ", snapshots %" PRIu64
		", migrations %" PRIu64 " pages\n",
		vf.kernel_passes, vf.kernel_reported, s->sampler_pages, s->snap_pages_total,
		vf.mig_pages);
	print_explain(s, f);
	fflush(f);
}

/* ---------------------------------------------------------------- */
/* JSON                                                              */
/* ---------------------------------------------------------------- */

static void add(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static json_object *ju(uint64_t v)
{
	return json_object_new_uint64(v);
}

static json_object *jd(double v)
{
	return json_object_new_double(isfinite(v) ? v : 0);
}

static json_object *jb(bool v)
{
	return json_object_new_boolean(v);
}

static json_object *js(const char *v)
{
	return json_object_new_string(v ? v : "");
}

static json_object *config_json(const struct sim *s)
{
	const struct sim_config *c = &s->cfg;
	json_object *o = json_object_new_object(), *a;

	add(o, "memory_bytes", ju(c->memory));
	add(o, "vcpus", ju(c->vcpus));
	add(o, "backing", js(c->backing ? pgt_backing_name(c->backing) : "auto"));
	add(o, "dirty_method", js(pgt_dirty_method_name(c->dirty_method)));
	add(o, "touch", jb(c->touch));
	add(o, "refine", jb(c->refine));
	add(o, "zero_markers", jb(c->zero_markers));
	add(o, "workloads", js(c->workloads));
	add(o, "duration_s", jd(c->duration));
	add(o, "interval_s", jd(c->interval));
	a = json_object_new_array();
	if (c->scenarios & SC_MIGRATE)
		json_object_array_add(a, js("migrate"));
	if (c->scenarios & SC_BALLOON)
		json_object_array_add(a, js("balloon"));
	if (c->scenarios & SC_SNAPSHOT)
		json_object_array_add(a, js("snapshot"));
	add(o, "scenarios", a);
	a = json_object_new_array();
	for (unsigned i = 0; i < c->nlinks; i++)
		json_object_array_add(a, jd(c->link[i]));
	add(o, "link_gbit", a);
	add(o, "downtime_budget_ms", jd(c->downtime_ms));
	add(o, "max_rounds", ju(c->max_rounds));
	add(o, "balloon_target_bytes", ju(c->balloon_target));
	add(o, "device", jb(c->device));
	add(o, "seed", ju(c->seed));
	return o;
}

static json_object *migration_json(const struct sim *s, const struct migration *m)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	(void)s;
	add(o, "link_gbit", jd(m->link_gbit));
	add(o, "budget_ms", jd(m->budget_ms));
	add(o, "max_rounds", ju(m->max_rounds));
	add(o, "started_s", jd(m->t_start));
	add(o, "ended_s", jd(m->t_end));
	for (unsigned i = 0; i < m->nrounds; i++) {
		json_object *r = json_object_new_object();

		add(r, "round", ju(m->rounds[i].round));
		add(r, "stop_and_copy", jb(i + 1 == m->nrounds));
		add(r, "pages", ju(m->rounds[i].pages));
		add(r, "bytes", ju(m->rounds[i].bytes));
		add(r, "seconds", jd(m->rounds[i].seconds));
		add(r, "dirty_after_ms", jd(m->rounds[i].est_downtime_ms));
		add(r, "zero_pieces", ju(m->rounds[i].zero_pieces));
		json_object_array_add(a, r);
	}
	add(o, "rounds", a);
	/* pre-copy rounds, the stop-and-copy not counted */
	add(o, "rounds_count", ju(m->nrounds ? m->nrounds - 1 : 0));
	add(o, "pages_sent", ju(m->pages_sent));
	add(o, "bytes_sent", ju(m->bytes_sent));
	/* refine: rounds sent 4 KiB pieces of 2 MiB pages; bytes_sent_whole_pages
	 * is what sending each touched page whole would have cost in the same
	 * rounds (a run with refine off needs more rounds, or does not converge) */
	add(o, "refine", jb(m->refine));
	add(o, "granule_bytes", ju(m->granule));
	add(o, "bytes_sent_whole_pages", ju(m->bytes_2m));
	/* zero markers: bytes_sent counts each marker as SIM_ZERO_MARKER bytes;
	 * without markers the same pieces would have gone as 4 KiB each */
	add(o, "zero_markers", jb(m->zero_markers));
	add(o, "zero_marker_pieces", ju(m->zero_pieces));
	add(o, "zero_marker_bytes", ju(m->zero_pieces * SIM_ZERO_MARKER));
	add(o, "bytes_sent_without_zero_markers",
	    ju(m->bytes_sent + m->zero_pieces * (SIM_UNIT - SIM_ZERO_MARKER)));
	add(o, "zero_check_ms", jd(m->zero_check_ms));
	add(o, "first_round_pages", ju(m->first_round_pages));
	add(o, "final_pages", ju(m->final_pages));
	add(o, "estimated_downtime_ms", jd(m->est_downtime_ms));
	add(o, "measured_downtime_ms", jd(m->downtime_ms));
	add(o, "guest_stop_ms", jd(m->stop_ms));
	add(o, "converged", jb(m->converged));
	add(o, "end_reason", js(m->end_reason));
	add(o, "throughput_bytes_per_s", jd(m->throughput));
	add(o, "dirtied_pages", ju(m->dirtied_pages));
	add(o, "dirtied_not_sent", ju(m->dirtied_not_sent));
	add(o, "view_pages", ju(m->view_pages));
	add(o, "destination", js(m->destination ? m->destination : "none"));
	add(o, "verify_units", ju(m->verify_units));
	add(o, "verify_mismatch", ju(m->verify_mismatch));
	add(o, "released_skipped", ju(m->released_skipped));
	add(o, "verified", jb(m->verified));
	add(o, "error", m->error ? js(strerror(-m->error)) : NULL);
	return o;
}

static json_object *balloon_json(struct sim *s, const struct balloon_report *b)
{
	json_object *o = json_object_new_object();
	uint64_t seen = 0;
	bool vis;

	if (!b || !b->ran) {
		add(o, "ran", jb(false));
		return o;
	}
	vis = release_visible(s, b, &seen);
	add(o, "ran", jb(true));
	add(o, "configured_bytes", ju(b->configured));
	add(o, "target_bytes", ju(b->target));
	add(o, "reached", jb(b->reached));
	add(o, "reach_seconds", jd(b->reach_seconds));
	add(o, "tolerance_bytes", ju(b->tolerance));
	add(o, "exact_on_target", jb(b->exact));
	add(o, "reasks", ju(b->reasks));
	add(o, "refused_target_bytes", ju(b->refused_target));
	add(o, "refused_error", b->refused_error ? js(strerror(-b->refused_error)) : NULL);
	add(o, "safe_limit_bytes", ju(b->limit));
	add(o, "pinned_bytes", ju(b->pinned));
	add(o, "kept_bytes", ju(b->kept));
	add(o, "ballooned_bytes", ju(b->released_bytes));
	add(o, "reported_bytes", ju(b->reported_bytes));
	add(o, "reclaimed_bytes", ju(b->reclaimed_bytes));
	add(o, "freed_bytes", ju(b->freed_bytes));
	add(o, "refused_pinned_bytes", ju(b->refused_pinned));
	add(o, "partial_large_pages", ju(b->partial_pages));
	add(o, "partial_released_bytes", ju(b->partial_units * SIM_UNIT));
	add(o, "deflate_target_bytes", ju(b->deflate_target));
	add(o, "deflate_reached", jb(b->deflate_reached));
	add(o, "balloon_calls", ju(b->balloon_calls));
	add(o, "hugepages_free_before", ju(b->hp_free_before));
	add(o, "hugepages_free_peak", ju(b->hp_free_peak));
	add(o, "host_hugetlb_before_bytes", ju(b->hugetlb_before));
	add(o, "host_hugetlb_min_bytes", ju(b->hugetlb_min));
	add(o, "host_rss_before_bytes", ju(b->rss_before));
	add(o, "host_rss_min_bytes", ju(b->rss_min));
	add(o, "cgroup_before_bytes", ju(b->cg_before));
	add(o, "cgroup_min_bytes", ju(b->cg_min));
	add(o, "resident_before_bytes", ju(b->resident_before));
	add(o, "resident_min_bytes", ju(b->resident_min));
	add(o, "host_saw_bytes", ju(seen));
	add(o, "host_saw_via", js(s->info.backing == PGT_BACKING_HUGETLB ? "HugetlbPages" : "RSS"));
	add(o, "release_visible", jb(vis));
	return o;
}

static json_object *heat_json(const struct sim *s, const uint32_t *h)
{
	json_object *a = json_object_new_array();

	for (size_t k = 0; k < s->nsamples; k++) {
		json_object *col = json_object_new_array();

		for (unsigned r = 0; r < s->rows; r++)
			json_object_array_add(col, ju(h[k * s->rows + r]));
		json_object_array_add(a, col);
	}
	return a;
}

/* The library's own rendering, parsed: also proves it is valid JSON. */
static json_object *engine_stats_json(struct sim *s, char *err, size_t n)
{
	int64_t need = pgt_stats_render(s->eng, PGT_STATS_JSON, NULL, 0);
	char *buf;
	json_object *o;

	if (need < 0) {
		snprintf(err, n, "pgt_stats_render: %s", strerror((int)-need));
		return NULL;
	}
	buf = malloc((size_t)need + 4096);
	if (!buf) {
		snprintf(err, n, "out of memory");
		return NULL;
	}
	need = pgt_stats_render(s->eng, PGT_STATS_JSON, buf, (size_t)need + 4096);
	if (need < 0) {
		snprintf(err, n, "pgt_stats_render: %s", strerror((int)-need));
		free(buf);
		return NULL;
	}
	o = json_tokener_parse(buf);
	if (!o)
		snprintf(err, n, "the library's stats JSON does not parse");
	free(buf);
	return o;
}

static json_object *guest_json(const struct sim *s)
{
	json_object *o = json_object_new_object();

	add(o, "memory_bytes", ju(s->info.length));
	add(o, "backing", js(pgt_backing_name((int)s->info.backing)));
	add(o, "backing_reason", js(s->backing_why));
	add(o, "page_size_bytes", ju(s->info.page_size));
	add(o, "pages", ju(s->npages));
	add(o, "dirty_method", js(pgt_dirty_method_name(s->info.dirty_method)));
	add(o, "touch_tracking", jb(s->cfg.touch));
	add(o, "hugepages_free_at_start", ju(s->hp_free_at_start));
	return o;
}

static json_object *workloads_json(const struct sim *s)
{
	json_object *o, *a;

	a = json_object_new_array();
	for (unsigned i = 0; i < s->nwls; i++) {
		const struct wl *w = &s->wls[i];

		o = json_object_new_object();
		add(o, "vcpu", ju(w->vcpu));
		add(o, "kind", js(sim_wl_name(w->kind)));
		add(o, "gpa", ju(sim_unit_gpa(s, w->a.first)));
		add(o, "area_bytes", ju(w->a.n * SIM_UNIT));
		add(o, "writes", ju(atomic_load(&w->writes)));
		add(o, "allocs", ju(atomic_load(&w->allocs)));
		add(o, "frees", ju(atomic_load(&w->frees)));
		add(o, "reported_pages", ju(atomic_load(&w->reported)));
		add(o, "reclaimed_pages", ju(atomic_load(&w->reclaimed)));
		json_object_array_add(a, o);
	}
	return a;
}

static json_object *device_json(struct sim *s)
{
	json_object *o = json_object_new_object();
	struct pgt_offload_info di;

	sim_device_info(s, &di);
	add(o, "enabled", jb(s->ring.n > 0));
	add(o, "backend", js("sim"));
	add(o, "ring_gpa", ju(sim_unit_gpa(s, s->ring.first)));
	add(o, "ring_bytes", ju(s->ring.n * SIM_UNIT));
	add(o, "own_mapping", jb(s->dev.alias));
	add(o, "writes", ju(di.dma_writes));
	add(o, "log_records", ju(di.records));
	add(o, "merges", ju(di.harvests));
	add(o, "merged_pages", ju(di.pages));
	add(o, "rejected_log_entries", ju(di.rejected));
	add(o, "lost_track", ju(di.lost));
	return o;
}

static json_object *timeline_json(const struct sim *s)
{
	json_object *o, *a;

	a = json_object_new_array();
	for (size_t i = 0; i < s->nsamples; i++) {
		const struct sample *x = &s->samples[i];

		o = json_object_new_object();
		add(o, "t", jd(x->t));
		add(o, "phase", js(x->phase));
		add(o, "touched_bytes", ju(x->touched_bytes));
		add(o, "dirty_pages", ju(x->dirty_pages));
		add(o, "dirty_bytes_per_s", jd(x->dirty_rate));
		add(o, "released_bytes", ju(x->released));
		add(o, "resident_bytes", ju(x->resident));
		add(o, "pinned_bytes", ju(x->pinned));
		add(o, "guest_bytes", ju(x->guest_bytes));
		add(o, "host_rss_bytes", ju(x->host_rss));
		add(o, "host_hugetlb_bytes", ju(x->host_hugetlb));
		add(o, "cgroup_bytes", ju(x->cg_usage));
		add(o, "hugepages_free", ju(x->hp_free));
		add(o, "mem_available_bytes", ju(x->mem_available));
		add(o, "balloon_target_bytes", ju(x->balloon_target));
		json_object_array_add(a, o);
	}
	return a;
}

/* Also says whether every migration that ran was verified and sent at
 * least the pages dirtied during it. */
static json_object *migrations_json(const struct sim *s, bool *mig_ok, bool *sent_ge)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < s->nmigs; i++) {
		const struct migration *m = &s->migs[i];

		json_object_array_add(a, migration_json(s, m));
		if (m->nrounds) {
			*mig_ok &= m->verified;
			*sent_ge &= m->pages_sent >= m->dirtied_pages;
		}
	}
	return a;
}

static json_object *snapshots_json(const struct sim *s, uint64_t *chain)
{
	json_object *o, *a = json_object_new_array();
	uint64_t total = 0;

	for (size_t i = 0; i < s->nsnaps; i++) {
		o = json_object_new_object();
		add(o, "index", ju(s->snaps[i].index));
		add(o, "kind", js(s->snaps[i].full ? "full" : "incremental"));
		add(o, "t", jd(s->snaps[i].t));
		add(o, "pages", ju(s->snaps[i].pages));
		add(o, "bytes", ju(s->snaps[i].bytes));
		json_object_array_add(a, o);
		total += s->snaps[i].bytes;
	}
	*chain = total;
	return a;
}

static json_object *views_json(const struct sim *s, const struct views_fig *vf)
{
	json_object *o = json_object_new_object();

	add(o, "kernel_passes", ju(vf->kernel_passes));
	add(o, "kernel_reported_pages", ju(vf->kernel_reported));
	add(o, "sampler_pages", ju(s->sampler_pages));
	add(o, "snapshot_pages", ju(s->snap_pages_total));
	add(o, "migration_pages", ju(vf->mig_pages));
	add(o, "open_at_end", ju(vf->views_open));
	return o;
}

static json_object *heatmap_json(const struct sim *s)
{
	json_object *o = json_object_new_object();

	add(o, "rows", ju(s->rows));
	add(o, "pages_per_row", ju(s->pages_per_row));
	add(o, "page_size_bytes", ju(s->info.page_size));
	add(o, "interval_s", jd(s->cfg.interval));
	add(o, "dirty", heat_json(s, s->heat_dirty));
	add(o, "touched", heat_json(s, s->heat_touch));
	return o;
}

static json_object *explain_json(struct sim *s)
{
	struct pgt_explain_line lines[MAX_EXPLAIN];
	int k = explain(s, lines, MAX_EXPLAIN);
	json_object *a = json_object_new_array();

	for (int i = 0; i < k; i++) {
		json_object *o = json_object_new_object();

		add(o, "key", js(lines[i].key));
		add(o, "bytes", json_object_new_int64(lines[i].bytes));
		add(o, "text", js(lines[i].text));
		json_object_array_add(a, o);
	}
	return a;
}

int sim_write_json(struct sim *s, FILE *f, char *err, size_t n)
{
	json_object *root = json_object_new_object(), *o;
	const struct balloon_report *b = sim_balloon_report(s);
	struct views_fig vf;
	bool mig_ok = true, sent_ge = true;
	uint64_t chain = 0;
	const char *txt;

	views_figures(s, &vf);
	add(root, "schema", js(REPORT_SCHEMA));
	add(root, "tool", js("pgtrack-sim"));
	add(root, "version", js(pgt_version()));
	add(root, "config", config_json(s));
	add(root, "guest", guest_json(s));
	add(root, "elapsed_s", jd(sim_elapsed(s)));
	add(root, "boot_s", jd(s->boot_s));
	add(root, "workloads", workloads_json(s));
	add(root, "device", device_json(s));
	add(root, "timeline", timeline_json(s));
	add(root, "migrations", migrations_json(s, &mig_ok, &sent_ge));
	add(root, "snapshots", snapshots_json(s, &chain));
	add(root, "snapshot_chain_bytes", ju(chain));
	add(root, "balloon", balloon_json(s, b));
	add(root, "views", views_json(s, &vf));
	o = engine_stats_json(s, err, n);
	if (!o) {
		json_object_put(root);
		return -1;
	}
	add(root, "engine_stats", o);
	add(root, "heatmap", heatmap_json(s));
	o = json_object_new_object();
	add(o, "migrations_verified", jb(mig_ok));
	add(o, "pages_sent_ge_dirtied", jb(sent_ge));
	if (b && b->ran) {
		uint64_t seen;

		add(o, "release_visible_to_host", jb(release_visible(s, b, &seen)));
	}
	add(root, "consistency", o);
	add(root, "explain", explain_json(s));

	txt = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
					     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (fputs(txt, f) < 0 || fputc('\n', f) < 0 || fflush(f)) {
		snprintf(err, n, "%s", strerror(errno));
		json_object_put(root);
		return -1;
	}
	json_object_put(root);
	return 0;
}

/* ---------------------------------------------------------------- */
/* SVG heat map                                                      */
/* ---------------------------------------------------------------- */

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			/* control characters are not allowed in XML 1.0 */
			if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n')
				fputc(*s, f);
		}
	}
}

static void text(FILE *f, double x, double y, const char *anchor, int size, const char *fill,
		 const char *s)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\" fill=\"%s\">",
		x, y, anchor, size, fill);
	xml_text(f, s);
	fputs("</text>\n", f);
}

/* Colour ramps: dirty is black-red-orange-yellow-white (hot), touched a blue ramp. */
static void ramp(double v, const double stops[][3], int nstops, char *out, size_t n)
{
	double p;
	int i;

	if (v < 0)
		v = 0;
	if (v > 1)
		v = 1;
	p = v * (nstops - 1);
	i = (int)p;
	if (i >= nstops - 1)
		i = nstops - 2;
	p -= i;
	snprintf(out, n, "#%02x%02x%02x",
		 (unsigned)(stops[i][0] + (stops[i + 1][0] - stops[i][0]) * p),
		 (unsigned)(stops[i][1] + (stops[i + 1][1] - stops[i][1]) * p),
		 (unsigned)(stops[i][2] + (stops[i + 1][2] - stops[i][2]) * p));
}

static const double hot[][3] = {
	{ 24, 24, 32 }, { 120, 20, 60 }, { 210, 50, 30 }, { 250, 150, 20 }, { 255, 240, 160 },
};
static const double blue[][3] = {
	{ 24, 24, 32 }, { 30, 60, 120 }, { 50, 130, 200 }, { 150, 210, 250 },
};

static void band(FILE *f, struct sim *s, const uint32_t *h, double x0, double y0, double cw,
		 double ch, bool logscale)
{
	char col[16];

	for (size_t k = 0; k < s->nsamples; k++) {
		for (unsigned r = 0; r < s->rows; r++) {
			double v = (double)h[k * s->rows + r] / (double)s->pages_per_row;

			if (logscale)
				v = v > 0 ? 0.12 + 0.88 * log10(1 + 999 * v) / 3 : 0;
			ramp(v, logscale ? hot : blue, logscale ? 5 : 4, col, sizeof(col));
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
				"fill=\"%s\"/>\n", x0 + (double)k * cw, y0 + r * ch, cw + 0.3, ch + 0.3,
				col);
		}
	}
}

static void y_axis(FILE *f, struct sim *s, double x0, double y0, double h)
{
	char lbl[48];

	for (int i = 0; i <= 4; i++) {
		uint64_t gpa = s->info.gpa + s->info.length / 4 * (uint64_t)i;
		double y = y0 + h * i / 4;

		snprintf(lbl, sizeof(lbl), "%" PRIu64 " MiB", gpa >> 20);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>\n",
			x0 - 4, y, x0, y);
		text(f, x0 - 6, y + 4, "end", 11, "#ccc", lbl);
	}
}

/* Guest layout brackets on the right: where each area lives. */
static void areas(FILE *f, struct sim *s, double x, double y0, double h)
{
	struct lab { const char *name; uint64_t first, n; } a[SIM_MAX_VCPUS * SIM_MAX_WL + 3];
	unsigned na = 0;
	char lbl[64];

	if (s->ring.n)
		a[na++] = (struct lab){ "device ring", s->ring.first, s->ring.n };
	if (s->cache.n)
		a[na++] = (struct lab){ "page cache", s->cache.first, s->cache.n };
	for (unsigned i = 0; i < s->nwls && na < sizeof(a) / sizeof(a[0]); i++)
		a[na++] = (struct lab){ sim_wl_name(s->wls[i].kind), s->wls[i].a.first,
					  s->wls[i].a.n };
	for (unsigned i = 0; i < na; i++) {
		double ya = y0 + h * (double)a[i].first / (double)s->nunits;
		double yb = y0 + h * (double)(a[i].first + a[i].n) / (double)s->nunits;

		fprintf(f, "<path d=\"M%.1f %.1f h5 V%.1f h-5\" stroke=\"#aaa\" fill=\"none\"/>\n", x,
			ya + 1, yb - 1);
		snprintf(lbl, sizeof(lbl), "%s", a[i].name);
		if (yb - ya >= 9)
			text(f, x + 9, (ya + yb) / 2 + 4, "start", 10, "#ccc", lbl);
	}
}

int sim_write_svg(struct sim *s, FILE *f, char *err, size_t n)
{
	const double left = 80, right = 120, top = 78, bandh_min = 160, gap = 46, bottom = 70;
	double ch = s->rows ? fmax(2.0, fmin(6.0, 320.0 / s->rows)) : 4;
	double bandh = fmax(bandh_min, ch * s->rows);
	double plotw = 760, cw, width, height, y1, y2;
	double dur = s->nsamples ? s->samples[s->nsamples - 1].t : 1;
	char lbl[256], b1[32], b2[32];

	if (!s->nsamples) {
		snprintf(err, n, "no samples: the run was too short for one interval");
		return -1;
	}
	ch = bandh / s->rows;
	cw = plotw / (double)s->nsamples;
	width = left + plotw + right;
	y1 = top;
	y2 = top + bandh + gap;
	height = y2 + bandh + bottom;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
		width, height, width, height);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#16161d\"/>\n");
	snprintf(lbl, sizeof(lbl), "pgtrack-sim: %s guest, %u vCPUs, %s",
		 sim_bytes(s->info.length, b1, sizeof(b1)), s->cfg.vcpus, s->backing_why);
	text(f, left, 24, "start", 15, "#eee", lbl);
	snprintf(lbl, sizeof(lbl), "x: time (%g s per column)  y: guest-physical address, "
		 "%" PRIu64 " pages of %s per row",
		 s->cfg.interval, s->pages_per_row, sim_bytes(s->info.page_size, b2, sizeof(b2)));
	text(f, left, 42, "start", 11, "#aaa", lbl);

	/* scenario marks above the first band */
	for (unsigned i = 0; i < s->nmarks; i++) {
		double xa = left + plotw * s->marks[i].t0 / dur;
		double xb = left + plotw * fmin(s->marks[i].t1, dur) / dur;
		double yy = 54 + (i % 2) * 10;

		if (xb < xa + 2)
			xb = xa + 2;
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"4\" fill=\"%s\"/>\n",
			xa, yy, xb - xa, i % 2 ? "#7fb3d5" : "#f5b041");
		text(f, xa + 2, yy - 2, "start", 9, "#ddd", s->marks[i].label);
	}

	text(f, left - 60, y1 - 6, "start", 12, "#eee", "dirty pages per interval");
	band(f, s, s->heat_dirty, left, y1, cw, ch, true);
	y_axis(f, s, left, y1, bandh);
	areas(f, s, left + plotw + 6, y1, bandh);

	text(f, left - 60, y2 - 6, "start", 12, "#eee", "touched (first-touch tracking)");
	band(f, s, s->heat_touch, left, y2, cw, ch, false);
	y_axis(f, s, left, y2, bandh);
	areas(f, s, left + plotw + 6, y2, bandh);

	/* x axis: ticks at 1, 2 or 5 times a power of ten seconds */
	{
		double step = pow(10, floor(log10(dur / 6))), t;

		if (dur / step > 12)
			step *= 5;
		else if (dur / step > 6)
			step *= 2;
		for (t = 0; t <= dur + 1e-9; t += step) {
			double x = left + plotw * t / dur;

			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"stroke=\"#888\"/>\n", x, y2 + bandh, x, y2 + bandh + 4);
			snprintf(lbl, sizeof(lbl), step < 1 ? "%.1f s" : "%.0f s", t);
			text(f, x, y2 + bandh + 16, "middle", 11, "#ccc", lbl);
		}
	}
	/* legends */
	{
		double lx = left, ly = height - 26;
		char col[16];

		for (int i = 0; i < 100; i++) {
			ramp(i / 99.0, hot, 5, col, sizeof(col));
			fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"1.6\" height=\"10\" fill=\"%s\"/>\n",
				lx + i * 1.6, ly, col);
			ramp(i / 99.0, blue, 4, col, sizeof(col));
			fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"1.6\" height=\"10\" fill=\"%s\"/>\n",
				lx + 330 + i * 1.6, ly, col);
		}
		text(f, lx, ly + 22, "start", 10, "#bbb", "0");
		text(f, lx + 160, ly + 22, "end", 10, "#bbb", "row fully dirty (log scale)");
		text(f, lx + 330, ly + 22, "start", 10, "#bbb", "0");
		text(f, lx + 490, ly + 22, "end", 10, "#bbb", "row fully touched");
	}
	fputs("</svg>\n", f);
	if (fflush(f) || ferror(f)) {
		snprintf(err, n, "%s", strerror(errno));
		return -1;
	}
	return 0;
}
