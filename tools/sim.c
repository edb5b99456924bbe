/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim: a guest you can watch. A simulated VM whose RAM pgtrack
 * allocates and tracks, vCPU threads running workloads into it, and the
 * consumers a hypervisor has: pre-copy migration, a balloon with a memory
 * target, incremental snapshots, all from one dirty tracker. Live view on
 * stderr, summary on stdout, --json / --svg reports, /metrics.
 * Public pgtrack API only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgt_config.h"
#include "tools/sim.h"

#define EXIT_USAGE 2

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [OPTIONS] [SCENARIO...]\n"
		"A simulated guest whose memory pgtrack tracks, and the hypervisor jobs that use it.\n"
		"Without arguments: a ~30 s demo (512 MiB guest, 2 vCPUs, every scenario).\n"
		"\n"
		"Scenarios (default: all):\n"
		"  migrate    iterative pre-copy at each --link speed until the rest fits the\n"
		"             downtime budget; stop-and-copy; destination verified\n"
		"  balloon    a memory target: the guest's balloon gives memory back (also 4 KiB\n"
		"             pieces of 2 MiB pages), pinned pages are honoured\n"
		"  snapshot   incremental snapshots: the touched set, then dirty sets\n"
		"\n"
		"Options:\n"
		"  -d, --duration SECONDS   run length after boot (default 30)\n"
		"  -m, --memory SIZE        guest RAM, e.g. 512M, 2G\n"
		"  -c, --vcpus N            vCPU threads\n"
		"  -b, --backing KIND       auto (hugetlb if the pool suffices, else thp), hugetlb,\n"
		"                           thp, anon, memfd\n"
		"  -w, --workloads SPEC     per vCPU, e.g. 'zipf+stream,random+churn'\n"
		"                           (random, zipf, stream, churn, idle)\n"
		"  -l, --link GBITS         link speed(s) for migrate, e.g. 10 or 10,25,100\n"
		"  -D, --downtime MS        downtime budget (default 30 ms)\n"
		"  -t, --target SIZE        balloon memory target, e.g. 320M or 60%%\n"
		"  -i, --interval SECONDS   live-view / heat-map interval (default 1)\n"
		"      --no-device          without the simulated offload device\n"
		"      --no-touch           without first-touch tracking\n"
		"      --no-refine          migrate whole 2 MiB pages (no 4 KiB refinement)\n"
		"      --no-zero-markers    migrate zero 4 KiB pieces whole (no 8-byte marker)\n"
		"  -C, --config FILE        read settings from FILE (same keys as --dump-config)\n"
		"  -o, --set KEY=VALUE      set any configuration key\n"
		"      --dump-config        print the embedded default configuration and exit\n"
		"  -j, --json FILE          write a machine-readable report\n"
		"  -g, --svg FILE           draw the dirty/touched heat map over time\n"
		"  -p, --prometheus PORT    serve /metrics on 127.0.0.1:PORT while running\n"
		"                           (0: any free port, printed)\n"
		"  -S, --seed N             random seed\n"
		"  -q, --quiet              no live view (summary only)\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               show this help\n"
		"\n"
		"Settings are applied in order: embedded default, --config FILE, options.\n"
		"Exit status: 0 ok, 1 run failed (memory, port in use, output file), 2 usage error.\n",
		prog);
}

/* ---------------------------------------------------------------- */
/* Live view                                                         */
/* ---------------------------------------------------------------- */

double sim_elapsed(const struct sim *s)
{
	return s->t0 ? (double)(sim_now_ns() - s->t0) / 1e9 : 0;
}

static void bar_clear(struct sim *s)
{
	if (s->tty && !s->quiet)
		fputs("\r\033[K", s->log);
}

static void bar_draw(struct sim *s)
{
	double t = sim_elapsed(s), d = s->boot_s + s->cfg.duration;
	int width = 30, fill;
	char bar[64];

	if (!s->tty || s->quiet || !s->t0)
		return;
	fill = (int)(t / d * width);
	if (fill > width)
		fill = width;
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	fprintf(s->log, "[%s] %5.1f/%.0f s  %s", bar, t < d ? t : d, d, s->phase);
	fflush(s->log);
}

void sim_event(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->quiet)
		return;
	pthread_mutex_lock(&s->outlock);
	bar_clear(s);
	fprintf(s->log, "[%6.1fs] ", sim_elapsed(s));
	va_start(ap, fmt);
	vfprintf(s->log, fmt, ap);
	va_end(ap);
	fputc('\n', s->log);
	bar_draw(s);
	fflush(s->log);
	pthread_mutex_unlock(&s->outlock);
}

static void row_header(struct sim *s)
{
	if (s->quiet)
		return;
	pthread_mutex_lock(&s->outlock);
	bar_clear(s);
	fprintf(s->log, "(released, resident: guest memory per pgtrack; host RSS, hugetlb: this "
		"process; cgroup: its memory cgroup, a migration's destination process included; "
		"HP free: free 2 MiB pages in the pool)\n");
	fprintf(s->log, "%8s  %-16s %9s %11s %9s %9s %9s %9s %9s %7s\n", "time", "phase", "touched",
		"dirty/s", "released", "resident", "host RSS", "hugetlb", "cgroup", "HP free");
	bar_draw(s);
	pthread_mutex_unlock(&s->outlock);
}

static void row(struct sim *s, const struct sample *x)
{
	char a[6][32], rate[40];

	if (s->quiet)
		return;
	sim_bytes((uint64_t)x->dirty_rate, rate, sizeof(rate));
	strcat(rate, "/s");
	pthread_mutex_lock(&s->outlock);
	bar_clear(s);
	fprintf(s->log, "%7.1fs  %-16s %9s %11s %9s %9s %9s %9s %9s %7" PRIu64 "\n", x->t, x->phase,
		sim_bytes(x->touched_bytes, a[0], 32), rate, sim_bytes(x->released, a[1], 32),
		sim_bytes(x->resident, a[2], 32), sim_bytes(x->host_rss, a[3], 32),
		sim_bytes(x->host_hugetlb, a[4], 32), sim_bytes(x->cg_usage, a[5], 32),
		x->hp_free);
	bar_draw(s);
	fflush(s->log);
	pthread_mutex_unlock(&s->outlock);
}

/* ---------------------------------------------------------------- */
/* Sampling: the sampler view, touched set, accounting, host         */
/* ---------------------------------------------------------------- */

static unsigned popcount_range(const unsigned long *bm, uint64_t first, uint64_t n)
{
	unsigned c = 0;

	for (uint64_t i = first; i < first + n; i++)
		c += (bm[i / SIM_BITS] >> (i % SIM_BITS)) & 1;
	return c;
}

static int take_sample(struct sim *s, double dt, struct sample *x)
{
	struct pgt_harvest h = { .size = sizeof(h), .bitmap = s->sbm, .bitmap_words = s->words };
	struct pgt_account acc = { .size = sizeof(acc) };
	struct pgt_host_usage hu = { .size = sizeof(hu) };
	unsigned long *tb = s->touched_union;
	unsigned long *tmp = NULL;
	int64_t n = pgt_dirty_harvest(s->sampler, &h);
	size_t k;

	if (n < 0)
		return (int)n;
	memset(x, 0, sizeof(*x));
	x->t = sim_elapsed(s);
	x->phase = NULL;
	x->dirty_pages = (uint64_t)n;
	x->dirty_rate = dt > 0 ? (double)((uint64_t)n << s->page_shift) / dt : 0;
	s->sampler_pages += (uint64_t)n;
	for (size_t w = 0; w < s->words; w++)
		s->touched_union[w] |= s->sbm[w];
	if (s->cfg.touch) {
		tmp = calloc(s->words, sizeof(*tmp));
		if (tmp && pgt_touched_bitmap(s->r, tmp, s->words) >= 0)
			tb = tmp;
	}
	if (!pgt_account_engine(s->eng, 0, &acc)) {
		x->touched_bytes = acc.total.touched;
		x->released = acc.total.released;
		x->resident = acc.total.resident;
		x->pinned = acc.total.pinned;
		x->guest_bytes = acc.total.configured - acc.total.released;
	}
	if (tb == s->touched_union || !s->cfg.touch) {
		uint64_t c = 0;

		for (size_t w = 0; w < s->words; w++)
			c += (uint64_t)__builtin_popcountl(tb[w]);
		x->touched_bytes = c << s->page_shift;
	}
	if (!pgt_host_usage(&hu)) {
		x->host_rss = hu.rss;
		x->host_hugetlb = hu.hugetlb;
		x->cg_usage = hu.cg_usage;
		x->hp_free = hu.hp_free;
	}
	x->mem_available = sim_meminfo("MemAvailable");

	/* heat map column */
	if (s->nsamples == s->samples_cap) {
		size_t cap = s->samples_cap ? s->samples_cap * 2 : 64;
		struct sample *ns = realloc(s->samples, cap * sizeof(*ns));
		uint32_t *hd = realloc(s->heat_dirty, cap * s->rows * sizeof(*hd));
		uint32_t *ht;

		if (ns)
			s->samples = ns;
		if (hd)
			s->heat_dirty = hd;
		ht = realloc(s->heat_touch, cap * s->rows * sizeof(*ht));
		if (ht)
			s->heat_touch = ht;
		if (!ns || !hd || !ht) {
			free(tmp);
			return -ENOMEM;
		}
		s->samples_cap = cap;
	}
	k = s->nsamples;
	for (unsigned r = 0; r < s->rows; r++) {
		uint64_t first = r * s->pages_per_row;
		uint64_t cnt = first >= s->npages ? 0
			: (s->npages - first < s->pages_per_row ? s->npages - first : s->pages_per_row);

		s->heat_dirty[k * s->rows + r] = popcount_range(s->sbm, first, cnt);
		s->heat_touch[k * s->rows + r] = popcount_range(tb, first, cnt);
	}
	free(tmp);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Scenario schedule                                                 */
/* ---------------------------------------------------------------- */

static void add_snapshot(struct sim *s, bool full, uint64_t pages)
{
	struct snapshot *n;
	char b[32];

	if (s->nsnaps == s->snaps_cap) {
		size_t cap = s->snaps_cap ? s->snaps_cap * 2 : 16;

		n = realloc(s->snaps, cap * sizeof(*n));
		if (!n)
			return;
		s->snaps = n;
		s->snaps_cap = cap;
	}
	n = &s->snaps[s->nsnaps];
	*n = (struct snapshot){ (unsigned)s->nsnaps, full, sim_elapsed(s), pages,
				pages << s->page_shift };
	s->nsnaps++;
	if (!full)
		s->snap_pages_total += pages;
	if (full)
		sim_event(s, "snapshot #0: full, the touched set: %s (%" PRIu64 " pages)",
			  sim_bytes(n->bytes, b, sizeof(b)), pages);
	else
		sim_event(s, "snapshot #%u: incremental, dirty since #%u: %s (%" PRIu64 " pages)",
			  n->index, n->index - 1, sim_bytes(n->bytes, b, sizeof(b)), pages);
}

static int snapshot(struct sim *s)
{
	int64_t n;

	if (!s->snapview) {
		/* Open first, then take the touched set: a page written in
		 * between is in both, never in neither. */
		int ret = pgt_dirty_view_open(s->r, &s->snapview);

		if (!ret && s->refining)
			ret = pgt_dirty_view_refine(s->snapview, false);
		if (ret)
			return ret;
		n = s->cfg.touch ? pgt_touched_count(s->r) : (int64_t)s->npages;
		if (n < 0)
			return (int)n;
		add_snapshot(s, true, (uint64_t)n);
		return 0;
	}
	{
		struct pgt_harvest h = { .size = sizeof(h) };

		n = pgt_dirty_harvest(s->snapview, &h);
	}
	if (n < 0)
		return (int)n;
	add_snapshot(s, false, (uint64_t)n);
	return 0;
}

static void mark(struct sim *s, double t0, double t1, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void mark(struct sim *s, double t0, double t1, const char *fmt, ...)
{
	va_list ap;

	if (s->nmarks >= sizeof(s->marks) / sizeof(s->marks[0]))
		return;
	s->marks[s->nmarks].t0 = t0;
	s->marks[s->nmarks].t1 = t1;
	va_start(ap, fmt);
	vsnprintf(s->marks[s->nmarks].label, sizeof(s->marks[0].label), fmt, ap);
	va_end(ap);
	s->nmarks++;
}

struct schedule {
	bool boot_done;
	double boot_end;
	double end;               /* boot end + duration; infinite during boot */
	double next_snap, snap_every;
	unsigned next_mig;        /* index of the next migration to start */
	int running_mig;          /* -1: none */
	double mig_start, next_mig_at;
	double bal_inflate, bal_deflate;
	bool inflated, deflated;
	unsigned mig_mark, bal_mark;
};

static void update_phase(struct sim *s, struct schedule *sc)
{
	char p[32] = "";

	if (!sc->boot_done)
		snprintf(p, sizeof(p), "boot");
	if (sc->running_mig >= 0)
		snprintf(p + strlen(p), sizeof(p) - strlen(p), "%smigrate %gG", *p ? "+" : "",
			 s->migs[sc->running_mig].link_gbit);
	if (sc->inflated && !sc->deflated && s->bal)
		snprintf(p + strlen(p), sizeof(p) - strlen(p), "%sballoon", *p ? "+" : "");
	else if (sc->deflated)
		snprintf(p + strlen(p), sizeof(p) - strlen(p), "%sdeflate", *p ? "+" : "");
	if (!*p)
		snprintf(p, sizeof(p), "steady");
	pthread_mutex_lock(&s->outlock);
	snprintf(s->phase, sizeof(s->phase), "%s", p);
	pthread_mutex_unlock(&s->outlock);
}

/* The balloon inflated and waits for its target before it deflates. */
static bool deflate_pending(const struct sim *s, const struct schedule *sc)
{
	return s->bal && sc->inflated && !sc->deflated && sc->bal_deflate > 0;
}

static int run_events(struct sim *s, struct schedule *sc, double t)
{
	const struct sim_config *c = &s->cfg;
	int ret;

	if (!sc->boot_done && atomic_load(&s->booted) == c->vcpus) {
		/*
		 * The scenarios are timed from here, not from the start: on a
		 * slow machine (TCG, a tracker that faults on every first
		 * write) boot alone can outlast --duration, and a run that
		 * never left boot would report no workload, migration or
		 * balloon at all.
		 */
		sc->boot_done = true;
		sc->boot_end = t;
		s->boot_s = t;
		sc->end = t + c->duration;
		sc->next_mig_at += t;
		sc->bal_inflate += t;
		if (sc->bal_deflate > 0)
			sc->bal_deflate += t;
		mark(s, 0, t, "boot");
		sim_event(s, "boot done: %u vCPUs touched their memory", c->vcpus);
		if (c->scenarios & SC_SNAPSHOT) {
			ret = snapshot(s);
			if (ret)
				return ret;
			sc->next_snap = t + sc->snap_every;
		}
	}
	if (!sc->boot_done)
		return 0;
	if ((c->scenarios & SC_SNAPSHOT) && t >= sc->next_snap && t < sc->end) {
		ret = snapshot(s);
		if (ret)
			return ret;
		sc->next_snap += sc->snap_every;
	}
	if (sc->running_mig >= 0) {
		struct migration *m = &s->migs[sc->running_mig];

		if (t >= sc->end)
			atomic_store(&m->force_stop, true);
		if (atomic_load(&m->done)) {
			sim_migration_join(s, m);
			s->marks[sc->mig_mark].t1 = m->t_end;
			if (m->error)
				sim_event(s, "migrate @ %g Gbit/s failed: %s", m->link_gbit,
					  strerror(-m->error));
			sc->running_mig = -1;
			sc->next_mig_at = t + c->interval;
		}
	}
	if ((c->scenarios & SC_MIGRATE) && sc->running_mig < 0 && sc->next_mig < s->nmigs &&
	    t >= sc->next_mig_at && t < sc->end) {
		struct migration *m = &s->migs[sc->next_mig];

		ret = sim_migration_start(s, m);
		if (ret) {
			sim_event(s, "migrate: cannot start: %s", strerror(-ret));
			m->error = ret;
			m->done = true;
		} else {
			sc->running_mig = (int)sc->next_mig;
			sc->mig_mark = s->nmarks;
			mark(s, t, sc->end, "migrate %g Gbit/s", m->link_gbit);
		}
		sc->next_mig++;
	}
	if (s->bal && !sc->inflated && t >= sc->bal_inflate) {
		sc->inflated = true;
		sc->bal_mark = s->nmarks;
		mark(s, t, sc->end, "balloon to %" PRIu64 " MiB", c->balloon_target >> 20);
		ret = sim_balloon_inflate(s, c->balloon_target);
		if (ret && ret != -ENOSPC)
			sim_event(s, "balloon: %s", strerror(-ret));
	}
	/* deflate once the inflate target is reached (as an operator waits
	 * for a target): on a slow host (TCG guests) inflating takes longer
	 * than the scenario planned, and the run waits past its end for it,
	 * at most half its duration (deflate_pending()) */
	if (deflate_pending(s, sc) && t >= sc->bal_deflate &&
	    (sim_balloon_reached(s) || t >= sc->end + 0.5 * c->duration)) {
		uint64_t back = (c->memory - c->balloon_target) / 2;

		sc->deflated = true;
		s->marks[sc->bal_mark].t1 = t;
		mark(s, t, t > sc->end ? t : sc->end, "deflate");
		sim_balloon_deflate(s, (c->balloon_target + back) & ~(SIM_UNIT - 1));
	}
	update_phase(s, sc);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Options                                                           */
/* ---------------------------------------------------------------- */

enum { OPT_NO_DEVICE = 256, OPT_NO_TOUCH, OPT_DUMP, OPT_NO_REFINE, OPT_NO_ZERO_MARKERS };

static const struct option long_opts[] = {
	{ "duration", required_argument, NULL, 'd' },
	{ "memory", required_argument, NULL, 'm' },
	{ "vcpus", required_argument, NULL, 'c' },
	{ "backing", required_argument, NULL, 'b' },
	{ "workloads", required_argument, NULL, 'w' },
	{ "link", required_argument, NULL, 'l' },
	{ "downtime", required_argument, NULL, 'D' },
	{ "target", required_argument, NULL, 't' },
	{ "interval", required_argument, NULL, 'i' },
	{ "no-device", no_argument, NULL, OPT_NO_DEVICE },
	{ "no-touch", no_argument, NULL, OPT_NO_TOUCH },
	{ "no-refine", no_argument, NULL, OPT_NO_REFINE },
	{ "no-zero-markers", no_argument, NULL, OPT_NO_ZERO_MARKERS },
	{ "config", required_argument, NULL, 'C' },
	{ "set", required_argument, NULL, 'o' },
	{ "dump-config", no_argument, NULL, OPT_DUMP },
	{ "json", required_argument, NULL, 'j' },
	{ "svg", required_argument, NULL, 'g' },
	{ "prometheus", required_argument, NULL, 'p' },
	{ "seed", required_argument, NULL, 'S' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char short_opts[] = "d:m:c:b:w:l:D:t:i:C:o:j:g:p:S:qVh";

/* Option -> configuration key (NULL: handled elsewhere). */
static const char *opt_key(int opt)
{
	switch (opt) {
	case 'd': return "duration";
	case 'm': return "memory";
	case 'c': return "vcpus";
	case 'b': return "backing";
	case 'w': return "workloads";
	case 'l': return "link";
	case 'D': return "downtime";
	case 't': return "balloon.target";
	case 'i': return "interval";
	case 'S': return "seed";
	default: return NULL;
	}
}

static char *read_file(const char *path, char *err, size_t n)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (!f) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t got;

		if (cap - len < 4096) {
			char *nb;

			if (cap >= (1 << 20)) {
				snprintf(err, n, "%s: larger than 1 MiB", path);
				free(buf);
				fclose(f);
				return NULL;
			}
			nb = realloc(buf, cap + 8192);
			if (!nb) {
				free(buf);
				fclose(f);
				snprintf(err, n, "out of memory");
				return NULL;
			}
			buf = nb;
			cap += 8192;
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
		if (!got)
			break;
	}
	if (ferror(f)) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

struct outputs {
	const char *json, *svg;
	FILE *jf, *sf;
	int port;
};

static int parse_port(const char *v, int *port)
{
	char *end;
	long p;

	errno = 0;
	p = strtol(v, &end, 10);
	if (end == v || *end || errno || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

/* Pass 1: --help, --version, --dump-config, wherever they are. 1 when done. */
static int early_opts(int argc, char **argv)
{
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout, argv[0]);
			return 1;
		}
		if (opt == 'V') {
			printf("pgtrack-sim %s\n", pgt_version());
			/* scripts and tests ask before relying on --prometheus */
			puts(PGT_HAVE_MHD ? "/metrics: yes"
					  : "/metrics: no (built without libmicrohttpd)");
			return 1;
		}
		if (opt == OPT_DUMP) {
			fputs(sim_default_config, stdout);
			return 1;
		}
	}
	return 0;
}

/* The embedded default, then every --config FILE in order. */
static int load_configs(struct sim_config *c, int argc, char **argv)
{
	char err[512];
	int opt;

	if (sim_config_parse(c, sim_default_config, "default", err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: internal: %s\n", err);
		return -1;
	}
	optind = 1;
	while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		char *text;
		int ret;

		if (opt != 'C')
			continue;
		text = read_file(optarg, err, sizeof(err));
		if (!text) {
			fprintf(stderr, "pgtrack-sim: --config: %s\n", err);
			return -1;
		}
		ret = sim_config_parse(c, text, optarg, err, sizeof(err));
		free(text);
		if (ret) {
			fprintf(stderr, "pgtrack-sim: %s\n", err);
			return -1;
		}
	}
	return 0;
}

static int set_key(struct sim_config *c, const char *key, const char *value)
{
	char err[512];

	if (sim_config_set(c, key, value, err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: %s\n", err);
		return -1;
	}
	return 0;
}

/* --set KEY=VALUE */
static int set_pair(struct sim_config *c, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char k[128];

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(k)) {
		fprintf(stderr, "pgtrack-sim: --set wants KEY=VALUE, got '%s'\n", arg);
		return -1;
	}
	snprintf(k, sizeof(k), "%.*s", (int)(eq - arg), arg);
	return set_key(c, k, eq + 1);
}

/* One option of pass 2 that is not a configuration key. */
static int apply_opt(struct sim *s, int opt, const char *prog, struct outputs *o)
{
	struct sim_config *c = &s->cfg;

	switch (opt) {
	case OPT_NO_DEVICE:
		c->device = false;
		return 0;
	case OPT_NO_TOUCH:
		c->touch = false;
		return 0;
	case OPT_NO_REFINE:
		c->refine = false;
		return 0;
	case OPT_NO_ZERO_MARKERS:
		c->zero_markers = false;
		return 0;
	case 'C':
		return 0;
	case 'o':
		return set_pair(c, optarg);
	case 'j':
		o->json = optarg;
		return 0;
	case 'g':
		o->svg = optarg;
		return 0;
	case 'p':
		if (parse_port(optarg, &o->port)) {
			fprintf(stderr, "pgtrack-sim: --prometheus: bad port '%s' (0-65535)\n", optarg);
			return -1;
		}
		return 0;
	case 'q':
		s->quiet = true;
		return 0;
	default:
		/* getopt printed what was wrong */
		fprintf(stderr, "Try '%s --help'.\n", prog);
		return -1;
	}
}

/* Scenario names after the options: the "scenarios" key. */
static int set_scenarios(struct sim_config *c, int first, int argc, char **argv)
{
	char list[256] = "";
	size_t len = 0;

	for (int i = first; i < argc; i++) {
		int n = snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "", argv[i]);

		if (n < 0 || (size_t)n >= sizeof(list) - len) {
			fprintf(stderr, "pgtrack-sim: too many scenario arguments\n");
			return -1;
		}
		len += (size_t)n;
	}
	return set_key(c, "scenarios", list);
}

/* Returns 0 to run, 1 when done (help, version, dump), -1 on a usage error. */
static int parse_args(struct sim *s, int argc, char **argv, struct outputs *o)
{
	struct sim_config *c = &s->cfg;
	char err[512];
	int opt, ret;

	ret = early_opts(argc, argv);
	if (ret)
		return ret;
	if (load_configs(c, argc, argv))
		return -1;
	/* Pass 2: everything else, in order. */
	opterr = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		const char *key = opt_key(opt);

		if (key ? set_key(c, key, optarg) : apply_opt(s, opt, argv[0], o))
			return -1;
	}
	if (optind < argc && set_scenarios(c, optind, argc, argv))
		return -1;
	if (sim_config_check(c, err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: %s\n", err);
		return -1;
	}
	return 0;
}

/* Open report files before running for half a minute, so a typo fails now. */
static int open_outputs(struct outputs *o)
{
	if (o->json && !(o->jf = fopen(o->json, "w"))) {
		fprintf(stderr, "pgtrack-sim: --json %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	if (o->svg && !(o->sf = fopen(o->svg, "w"))) {
		fprintf(stderr, "pgtrack-sim: --svg %s: %s\n", o->svg, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */

static void header(struct sim *s)
{
	const struct sim_config *c = &s->cfg;
	char b[32];

	if (s->quiet)
		return;
	fprintf(s->log, "pgtrack-sim %s: %s guest, %u vCPUs, %.0f s\n", pgt_version(),
		sim_bytes(c->memory, b, sizeof(b)), c->vcpus, c->duration);
	fprintf(s->log, "guest RAM: %s; dirty tracking %s%s\n", s->backing_why,
		pgt_dirty_method_name(s->info.dirty_method),
		c->touch ? ", first-touch on" : ", first-touch off");
	for (unsigned v = 0; v < c->vcpus; v++) {
		fprintf(s->log, "vCPU %u:", v);
		for (unsigned i = 0; i < s->vcpus[v].nwl; i++) {
			const struct wl *w = s->vcpus[v].wl[i];

			fprintf(s->log, "%s %s over %s", i ? " +" : "", sim_wl_name(w->kind),
				sim_bytes(w->a.n * SIM_UNIT, b, sizeof(b)));
		}
		fprintf(s->log, "%s\n", s->vcpus[v].nwl ? "" : " idle");
	}
	if (s->ring.n)
		fprintf(s->log, "device: sim offload device, DMA writes into a pinned %s ring, %s\n",
			sim_bytes(s->ring.n * SIM_UNIT, b, sizeof(b)),
			s->info.fd >= 0 ? "through its own mapping (invisible to the CPU tracker), "
					  "logged and merged"
					: "logged and merged (private memory: the CPU tracker sees "
					  "them too)");
}

static int setup_migrations(struct sim *s)
{
	if (!(s->cfg.scenarios & SC_MIGRATE))
		return 0;
	s->migs = calloc(s->cfg.nlinks, sizeof(*s->migs));
	if (!s->migs)
		return -ENOMEM;
	s->nmigs = s->cfg.nlinks;
	for (unsigned i = 0; i < s->nmigs; i++) {
		s->migs[i].link_gbit = s->cfg.link[i];
		s->migs[i].budget_ms = s->cfg.downtime_ms;
		s->migs[i].max_rounds = s->cfg.max_rounds;
		s->migs[i].end_reason = "not run";
	}
	return 0;
}

/* When the scenarios start, as fractions of the run after boot. */
static void plan(const struct sim_config *c, struct schedule *sc)
{
	bool mig = c->scenarios & SC_MIGRATE, bal = c->scenarios & SC_BALLOON;

	sc->snap_every = c->snapshot_every > 0 ? c->snapshot_every : c->duration / 6;
	sc->next_mig_at = mig ? 0.15 * c->duration : 1e30;
	sc->bal_inflate = bal ? (mig ? 0.5 : 0.2) * c->duration : 1e30;
	sc->bal_deflate = bal ? 0.9 * c->duration : 0;
	if (sc->bal_deflate - sc->bal_inflate < 2 * c->interval)
		sc->bal_deflate = 0;
}

/* One row of the live view and the report: @dt seconds since the last. */
static int sample_now(struct sim *s, double dt)
{
	struct sample x;
	int ret = take_sample(s, dt, &x);

	if (ret) {
		sim_event(s, "sampling failed: %s", strerror(-ret));
		return ret;
	}
	x.phase = NULL;
	x.balloon_target = sim_balloon_target(s);
	s->samples[s->nsamples] = x;
	s->samples[s->nsamples].phase = strdup(s->phase);
	sim_balloon_sample(s, &x);
	pthread_mutex_lock(&s->mlock);
	s->last = x;
	pthread_mutex_unlock(&s->mlock);
	row(s, &s->samples[s->nsamples]);
	s->nsamples++;
	return 0;
}

/* Sleep towards the next sample, a live-view step at a time. */
static void idle_until(struct sim *s, double next_sample)
{
	double step = s->tty ? 0.1 : 0.05, until = next_sample - sim_elapsed(s);

	sim_sleep_ns((uint64_t)((until > 0 && until < step ? until : step) * 1e9));
	if (s->tty && !s->quiet) {
		pthread_mutex_lock(&s->outlock);
		bar_clear(s);
		bar_draw(s);
		pthread_mutex_unlock(&s->outlock);
	}
}

/* The scenarios and the samples until the end. Returns the exit status. */
static int run(struct sim *s, struct schedule *sc)
{
	double next_sample = s->cfg.interval, last_sample_t = 0;

	for (;;) {
		double t = sim_elapsed(s);
		bool ending;
		int ret;

		if (interrupted) {
			sim_event(s, "interrupted: finishing early");
			sc->end = t;
		}
		ret = run_events(s, sc, t);
		sim_balloon_tick(s);
		if (ret) {
			sim_event(s, "scenario error: %s", strerror(-ret));
			return 1;
		}
		/* past the end a migration may still be finishing, or the
		 * balloon waiting to deflate: keep to the interval until they
		 * have, then take the last sample */
		ending = t >= sc->end && sc->running_mig < 0 &&
			 (interrupted || !deflate_pending(s, sc));
		if (t >= next_sample || ending) {
			if (sample_now(s, t - last_sample_t))
				return 1;
			last_sample_t = t;
			next_sample += s->cfg.interval;
			/* late (a slow machine, a long stall): no burst of catch-up rows */
			if (next_sample <= t)
				next_sample = t + s->cfg.interval;
		}
		if (ending)
			return 0;
		idle_until(s, next_sample);
	}
}

/* Summary on stdout, then the report files. Returns the exit status. */
static int report(struct sim *s, struct outputs *o)
{
	char err[512];
	int status = 0;

	sim_print_summary(s, stdout);
	if (o->jf && sim_write_json(s, o->jf, err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: --json %s: %s\n", o->json, err);
		status = 1;
	}
	if (o->sf && sim_write_svg(s, o->sf, err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: --svg %s: %s\n", o->svg, err);
		status = 1;
	}
	return status;
}

static int close_outputs(struct outputs *o, int status)
{
	if (o->jf && fclose(o->jf) && !status) {
		fprintf(stderr, "pgtrack-sim: --json %s: %s\n", o->json, strerror(errno));
		status = 1;
	}
	if (o->sf && fclose(o->sf) && !status) {
		fprintf(stderr, "pgtrack-sim: --svg %s: %s\n", o->svg, strerror(errno));
		status = 1;
	}
	return status;
}

static void sim_free(struct sim *s)
{
	for (size_t i = 0; i < s->nsamples; i++)
		free((char *)s->samples[i].phase);
	free(s->samples);
	free(s->heat_dirty);
	free(s->heat_touch);
	free(s->snaps);
	for (unsigned i = 0; i < s->nmigs; i++)
		free(s->migs[i].rounds);
	free(s->migs);
	sim_balloon_free(s);
}

/* Threads, scenarios, samples, reports: the guest exists. */
static int run_guest(struct sim *s, struct outputs *o)
{
	struct schedule sc = { .running_mig = -1, .end = INFINITY };
	char err[512];
	int ret, status = 0;

	s->rows = s->cfg.heat_rows < s->npages ? s->cfg.heat_rows : (unsigned)s->npages;
	s->pages_per_row = (s->npages + s->rows - 1) / s->rows;
	if (setup_migrations(s)) {
		fprintf(stderr, "pgtrack-sim: out of memory\n");
		return 1;
	}
	if ((s->cfg.scenarios & SC_BALLOON) && sim_balloon_init(s, err, sizeof(err))) {
		fprintf(stderr, "pgtrack-sim: %s\n", err);
		return 1;
	}
	atomic_store(&s->ready, true);
	header(s);
	row_header(s);
	s->t0 = sim_now_ns();
	ret = sim_vcpus_start(s);
	if (!ret && s->cfg.device)
		ret = sim_device_start(s);
	if (ret) {
		fprintf(stderr, "pgtrack-sim: starting threads: %s\n", strerror(-ret));
		status = 1;
	} else {
		plan(&s->cfg, &sc);
		status = run(s, &sc);
		if (sc.running_mig >= 0) {
			atomic_store(&s->migs[sc.running_mig].force_stop, true);
			sim_migration_join(s, &s->migs[sc.running_mig]);
		}
		if (sc.boot_done && (s->cfg.scenarios & SC_SNAPSHOT) && s->snapview)
			snapshot(s);
	}
	sim_vcpus_stop(s);
	sim_device_stop(s);
	sim_balloon_fini(s);
	pthread_mutex_lock(&s->outlock);
	bar_clear(s);
	pthread_mutex_unlock(&s->outlock);
	s->tty = false;
	if (!status)
		status = report(s, o);
	atomic_store(&s->stop, true);
	sim_balloon_fini(s);
	return status;
}

int main(int argc, char **argv)
{
	static struct sim sim;
	struct sim *s = &sim;
	struct outputs o = { .port = -1 };
	struct sim_http *http = NULL;
	char err[512];
	int ret, status = 1;

	/* internal: re-executed as a migration's destination host */
	if (argc == 3 && !strcmp(argv[1], "--destination-host"))
		return sim_destination_main(strtoull(argv[2], NULL, 10));
	s->log = stderr;
	s->tty = isatty(STDERR_FILENO);
	pthread_mutex_init(&s->outlock, NULL);
	pthread_mutex_init(&s->mlock, NULL);
	snprintf(s->phase, sizeof(s->phase), "boot");
	ret = parse_args(s, argc, argv, &o);
	if (ret)
		return ret > 0 ? 0 : EXIT_USAGE;
	if (open_outputs(&o))
		return close_outputs(&o, 1);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	/* /metrics first: a port in use fails before any memory is set up. */
	if (o.port >= 0) {
		int bound;

		if (sim_http_start(s, o.port, &http, &bound, err, sizeof(err))) {
			fprintf(stderr, "pgtrack-sim: --prometheus: %s\n", err);
			return close_outputs(&o, 1);
		}
		fprintf(stderr, "serving http://127.0.0.1:%d/metrics\n", bound);
	}
	if (sim_guest_create(s, err, sizeof(err)))
		fprintf(stderr, "pgtrack-sim: %s\n", err);
	else
		status = run_guest(s, &o);
	sim_http_stop(http);
	atomic_store(&s->ready, false);
	status = close_outputs(&o, status);
	sim_guest_destroy(s);
	sim_free(s);
	return status;
}
