/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim configuration: "key = value" lines. The demo is such a text
 * embedded in the binary (pgtrack-sim --dump-config prints it), a --config
 * file is read by the same parser, and command-line options set the same
 * keys, so there is one place that knows what a value means.
 */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tools/sim.h"

const char sim_default_config[] =
	"# pgtrack-sim default scenario: the demo played when run without arguments.\n"
	"# A 512 MiB guest with 2 vCPUs, all scenarios, about 30 seconds.\n"
	"\n"
	"memory = 512M            # guest RAM\n"
	"vcpus = 2\n"
	"backing = auto           # auto: hugetlb when the pool has the pages, else thp\n"
	"dirty_method = auto      # auto, uffd-async, uffd-sync, mprotect, soft-dirty\n"
	"touch = on               # first-touch tracking (touched set, full snapshot)\n"
	"refine = on              # 2 MiB pages: migrations send changed 4 KiB pieces\n"
	"zero_markers = on        # migrations send an 8-byte marker for a zero 4 KiB piece\n"
	"\n"
	"# One group per vCPU, '+' runs several workloads on one vCPU.\n"
	"workloads = zipf+stream, random+churn\n"
	"random.rate = 3000       # page writes per second, uniform\n"
	"random.area = 12%        # of guest memory\n"
	"zipf.rate = 6000         # page writes per second, hot/cold\n"
	"zipf.area = 25%\n"
	"zipf.theta = 1.4         # skew: higher is hotter\n"
	"stream.rate = 16M        # bytes per second, sequential\n"
	"stream.area = 10%\n"
	"churn.rate = 400         # allocations per second; frees are reported\n"
	"churn.area = 15%\n"
	"churn.chunk = 256K       # largest allocation\n"
	"cache = 30%              # page cache, touched at boot; the balloon drops it\n"
	"hostpin = 3%             # part of it the host pinned behind the guest's back\n"
	"\n"
	"device = on              # sim offload device: DMA writes into a pinned ring\n"
	"device.rate = 16M        # bytes per second\n"
	"device.ring = 1.5%        # of memory, or a size; whole 2 MiB pages\n"
	"\n"
	"duration = 30s\n"
	"interval = 1s            # one live-view line / heat-map column\n"
	"scenarios = migrate, balloon, snapshot\n"
	"link = 10, 100           # Gbit/s; one pre-copy migration per speed\n"
	"downtime = 30ms          # budget for the final stop-and-copy\n"
	"max_rounds = 20\n"
	"balloon.target = 70%     # memory target: a size or a % of memory (358 MiB)\n"
	"balloon.rate = 256M      # how fast the guest's balloon driver inflates\n"
	"balloon.reserve = 10%    # the guest keeps at least this (kernel)\n"
	"snapshot.every = 0       # seconds between snapshots; 0: duration / 6\n"
	"seed = 1\n"
	"heatmap.rows = 64\n";

enum ktype {
	K_SIZE,         /* bytes */
	K_SIZE_PCT,     /* bytes, or a % of memory (resolved in check) */
	K_FRAC,         /* "15%" or 0.15 */
	K_DOUBLE,
	K_UINT,
	K_BOOL,
	K_SECONDS,
	K_MS,
	K_BYTERATE,
	K_WORKLOADS,
	K_BACKING,
	K_METHOD,
	K_SCENARIOS,
	K_LINKS,
};

struct key {
	const char *name;
	enum ktype type;
	size_t off;
	double min, max;
};

#define O(f) offsetof(struct sim_config, f)

/* Percent sizes are parked here as negative thousandths until check. */
static const struct key keys[] = {
	{ "memory", K_SIZE, O(memory), 8 << 20, 1ULL << 40 },
	{ "vcpus", K_UINT, O(vcpus), 1, SIM_MAX_VCPUS },
	{ "backing", K_BACKING, O(backing), 0, 0 },
	{ "dirty_method", K_METHOD, O(dirty_method), 0, 0 },
	{ "touch", K_BOOL, O(touch), 0, 0 },
	{ "refine", K_BOOL, O(refine), 0, 0 },
	{ "zero_markers", K_BOOL, O(zero_markers), 0, 0 },
	{ "workloads", K_WORKLOADS, O(workloads), 0, 0 },
	{ "random.rate", K_DOUBLE, O(rate[WL_RANDOM]), 0, 1e7 },
	{ "random.area", K_FRAC, O(area[WL_RANDOM]), 0.001, 0.9 },
	{ "zipf.rate", K_DOUBLE, O(rate[WL_ZIPF]), 0, 1e7 },
	{ "zipf.area", K_FRAC, O(area[WL_ZIPF]), 0.001, 0.9 },
	{ "zipf.theta", K_DOUBLE, O(zipf_theta), 0.01, 5 },
	{ "stream.rate", K_BYTERATE, O(rate[WL_STREAM]), 0, 64e9 },
	{ "stream.area", K_FRAC, O(area[WL_STREAM]), 0.001, 0.9 },
	{ "churn.rate", K_DOUBLE, O(rate[WL_CHURN]), 0, 1e6 },
	{ "churn.area", K_FRAC, O(area[WL_CHURN]), 0.001, 0.9 },
	{ "churn.chunk", K_SIZE, O(churn_chunk), SIM_UNIT, 64 << 20 },
	{ "cache", K_FRAC, O(cache), 0, 0.9 },
	{ "hostpin", K_SIZE_PCT, O(hostpin), 0, 1ULL << 40 },
	{ "device", K_BOOL, O(device), 0, 0 },
	{ "device.rate", K_BYTERATE, O(device_rate), 0, 64e9 },
	{ "device.ring", K_SIZE_PCT, O(device_ring), 0, 1ULL << 40 },
	{ "duration", K_SECONDS, O(duration), 0.5, 86400 },
	{ "interval", K_SECONDS, O(interval), 0.05, 3600 },
	{ "scenarios", K_SCENARIOS, O(scenarios), 0, 0 },
	{ "link", K_LINKS, O(link), 0.001, 10000 },
	{ "downtime", K_MS, O(downtime_ms), 0.001, 3600e3 },
	{ "max_rounds", K_UINT, O(max_rounds), 1, 10000 },
	{ "balloon.target", K_SIZE_PCT, O(balloon_target), 0, 1ULL << 40 },
	{ "balloon.rate", K_BYTERATE, O(balloon_rate), 1 << 20, 1e12 },
	{ "balloon.reserve", K_SIZE_PCT, O(balloon_reserve), 0, 1ULL << 40 },
	{ "snapshot.every", K_SECONDS, O(snapshot_every), 0, 86400 },
	{ "seed", K_UINT, O(seed), 0, 1e18 },
	{ "heatmap.rows", K_UINT, O(heat_rows), 4, 1024 },
};

static const char *const wl_names[WL__COUNT] = { "random", "zipf", "stream", "churn" };

const char *sim_wl_name(int kind)
{
	return kind >= 0 && kind < WL__COUNT ? wl_names[kind] : "?";
}

static int errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return end == s || *end || errno || !isfinite(*out) ? -1 : 0;
}

/* "1.5", "250ms", "2s", "1m" -> seconds */
static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v < 0)
		return -1;
	if (!strcmp(end, "ms"))
		v /= 1000;
	else if (!strcmp(end, "us"))
		v /= 1e6;
	else if (!strcmp(end, "m") || !strcmp(end, "min"))
		v *= 60;
	else if (*end && strcmp(end, "s"))
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };

	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int parse_workloads(struct sim_config *c, const char *v, char *err, size_t n)
{
	char buf[256], *save = NULL, *grp;
	unsigned g = 0;

	if (strlen(v) >= sizeof(buf))
		return errf(err, n, "too long");
	snprintf(buf, sizeof(buf), "%s", v);
	memset(c->nwl, 0, sizeof(c->nwl));
	for (grp = strtok_r(buf, ",", &save); grp; grp = strtok_r(NULL, ",", &save)) {
		char *save2 = NULL, *w;

		if (g >= SIM_MAX_VCPUS)
			return errf(err, n, "more than %d groups", SIM_MAX_VCPUS);
		for (w = strtok_r(grp, "+", &save2); w; w = strtok_r(NULL, "+", &save2)) {
			int k;

			w = trim(w);
			if (!strcmp(w, "idle"))
				continue;
			for (k = 0; k < WL__COUNT; k++)
				if (!strcmp(w, wl_names[k]))
					break;
			if (k == WL__COUNT)
				return errf(err, n, "unknown workload '%s' (random, zipf, stream, "
					    "churn, idle)", w);
			if (c->nwl[g] >= SIM_MAX_WL)
				return errf(err, n, "more than %d workloads on one vCPU", SIM_MAX_WL);
			c->wl[g][c->nwl[g]++] = (uint8_t)k;
		}
		g++;
	}
	if (!g)
		return errf(err, n, "empty");
	snprintf(c->workloads, sizeof(c->workloads), "%s", v);
	/* group count is kept in the unused tail: nwl[g..] stay 0 */
	return 0;
}

static unsigned workload_groups(const struct sim_config *c)
{
	unsigned g = 0;
	const char *p = c->workloads;

	if (!*p)
		return 0;
	for (g = 1; *p; p++)
		g += *p == ',';
	return g;
}

static int parse_scenarios(struct sim_config *c, const char *v, char *err, size_t n)
{
	char buf[128], *save = NULL, *w;
	unsigned sc = 0;

	if (strlen(v) >= sizeof(buf))
		return errf(err, n, "too long");
	snprintf(buf, sizeof(buf), "%s", v);
	for (w = strtok_r(buf, ",+", &save); w; w = strtok_r(NULL, ",+", &save)) {
		w = trim(w);
		if (!strcmp(w, "migrate"))
			sc |= SC_MIGRATE;
		else if (!strcmp(w, "balloon"))
			sc |= SC_BALLOON;
		else if (!strcmp(w, "snapshot"))
			sc |= SC_SNAPSHOT;
		else if (!strcmp(w, "all") || !strcmp(w, "demo"))
			sc |= SC_MIGRATE | SC_BALLOON | SC_SNAPSHOT;
		else if (strcmp(w, "none"))
			return errf(err, n, "unknown scenario '%s' (migrate, balloon, snapshot, "
				    "all, none)", w);
	}
	c->scenarios = sc;
	return 0;
}

static int parse_links(struct sim_config *c, const char *v, const struct key *k,
		       char *err, size_t n)
{
	char buf[128], *save = NULL, *w;
	unsigned cnt = 0;

	if (strlen(v) >= sizeof(buf))
		return errf(err, n, "too long");
	snprintf(buf, sizeof(buf), "%s", v);
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		double d;
		size_t l;

		w = trim(w);
		l = strlen(w);
		/* accept "10", "10G", "10Gbit", "10Gbit/s" */
		if (l >= 6 && !strcasecmp(w + l - 6, "bit/s"))
			w[l -= 5] = '\0';
		if (l >= 4 && !strcasecmp(w + l - 3, "bit"))
			w[l -= 3] = '\0';
		if (l >= 2 && (w[l - 1] == 'G' || w[l - 1] == 'g'))
			w[--l] = '\0';
		if (parse_double(w, &d) || d < k->min || d > k->max)
			return errf(err, n, "bad link speed '%s' (Gbit/s, e.g. 10, 25, 100)", w);
		if (cnt >= SIM_MAX_LINKS)
			return errf(err, n, "at most %d link speeds", SIM_MAX_LINKS);
		c->link[cnt++] = d;
	}
	if (!cnt)
		return errf(err, n, "empty");
	c->nlinks = cnt;
	return 0;
}

/* The field a key sets, and the setters by key type. */
#define FIELD(T, c, k) ((T *)((char *)(c) + (k)->off))

static int set_size(struct sim_config *c, const struct key *k, const char *v, char *err, size_t n)
{
	uint64_t u;

	if (sim_parse_size(v, &u) || (double)u < k->min || (double)u > k->max)
		return errf(err, n, "%s: bad size '%s' (e.g. 512M, 2G; %.0f MiB .. %.0f GiB)",
			    k->name, v, k->min / 1048576, k->max / 1073741824);
	*FIELD(uint64_t, c, k) = u;
	return 0;
}

static int set_size_pct(struct sim_config *c, const struct key *k, const char *v, char *err,
			size_t n)
{
	size_t l = strlen(v);
	uint64_t u;

	if (l && v[l - 1] == '%') {
		char tmp[32];
		double d;

		snprintf(tmp, sizeof(tmp), "%.*s", (int)(l - 1), v);
		if (parse_double(tmp, &d) || d <= 0 || d > 100)
			return errf(err, n, "%s: bad percentage '%s'", k->name, v);
		/* resolved against memory in sim_config_check() */
		*FIELD(uint64_t, c, k) = (1ULL << 63) | (uint64_t)(d * 1000);
		return 0;
	}
	if (sim_parse_size(v, &u) || u >= 1ULL << 62)
		return errf(err, n, "%s: bad size '%s' (e.g. 320M, or 60%%)", k->name, v);
	*FIELD(uint64_t, c, k) = u;
	return 0;
}

static int set_frac(struct sim_config *c, const struct key *k, const char *v, char *err, size_t n)
{
	size_t l = strlen(v);
	bool pct = l && v[l - 1] == '%';
	char tmp[32];
	double d;

	snprintf(tmp, sizeof(tmp), "%.*s", (int)(pct ? l - 1 : l), v);
	if (parse_double(tmp, &d))
		return errf(err, n, "%s: bad fraction '%s' (e.g. 15%% or 0.15)", k->name, v);
	if (pct)
		d /= 100;
	if (d < 0 || d > k->max || (d < k->min && d != 0))
		return errf(err, n, "%s: %s out of range (%g%% .. %g%%)", k->name, v, k->min * 100,
			    k->max * 100);
	*FIELD(double, c, k) = d;
	return 0;
}

static int set_uint(struct sim_config *c, const struct key *k, const char *v, char *err, size_t n)
{
	char *end;
	uint64_t u;

	errno = 0;
	u = strtoull(v, &end, 0);
	if (end == v || *end || errno || v[0] == '-' || (double)u < k->min || (double)u > k->max)
		return errf(err, n, "%s: bad integer '%s' (%.0f .. %.0f)", k->name, v, k->min,
			    k->max);
	if (k->off == O(seed))
		c->seed = u;
	else
		*FIELD(unsigned, c, k) = (unsigned)u;
	return 0;
}

/* K_DOUBLE, K_SECONDS and K_MS: a double, stored in the unit the key wants. */
static int set_double(struct sim_config *c, const struct key *k, const char *v, char *err,
		      size_t n)
{
	double d;

	switch (k->type) {
	case K_DOUBLE:
		if (parse_double(v, &d) || d < k->min || d > k->max)
			return errf(err, n, "%s: bad number '%s' (%g .. %g)", k->name, v, k->min,
				    k->max);
		break;
	case K_SECONDS:
		if (parse_seconds(v, &d) || d < k->min || d > k->max)
			return errf(err, n, "%s: bad duration '%s' (e.g. 30, 30s, 500ms; %g s .. %g s)",
				    k->name, v, k->min, k->max);
		break;
	default: /* K_MS */
		if (parse_seconds(v, &d))
			return errf(err, n, "%s: bad duration '%s' (e.g. 30ms, 0.3s)", k->name, v);
		/* a bare number is milliseconds here */
		if (!strpbrk(v, "sm"))
			d *= 1000;
		d *= 1000;
		if (d < k->min || d > k->max)
			return errf(err, n, "%s: '%s' out of range", k->name, v);
		break;
	}
	*FIELD(double, c, k) = d;
	return 0;
}

static int set_byterate(struct sim_config *c, const struct key *k, const char *v, char *err,
			size_t n)
{
	size_t l = strlen(v);
	char tmp[64];
	uint64_t u;

	if (l >= sizeof(tmp))
		return errf(err, n, "%s: too long", k->name);
	snprintf(tmp, sizeof(tmp), "%s", v);
	if (l > 2 && !strcmp(tmp + l - 2, "/s"))
		tmp[l - 2] = '\0';
	if (sim_parse_size(tmp, &u) || (double)u < k->min || (double)u > k->max)
		return errf(err, n, "%s: bad rate '%s' (bytes per second, e.g. 64M)", k->name, v);
	*FIELD(double, c, k) = (double)u;
	return 0;
}

static int set_backing(struct sim_config *c, const char *v, char *err, size_t n)
{
	if (!strcmp(v, "auto")) {
		c->backing = 0;
		return 0;
	}
	for (int b = PGT_BACKING_ANON; b < PGT_BACKING_EXTERNAL; b++) {
		if (!strcmp(v, pgt_backing_name(b))) {
			c->backing = b;
			return 0;
		}
	}
	return errf(err, n, "backing: unknown '%s' (auto, hugetlb, thp, anon, memfd)", v);
}

static int set_method(struct sim_config *c, const char *v, char *err, size_t n)
{
	int m = pgt_dirty_method_parse(v);

	if (m < 0 || m == PGT_DIRTY_NONE)
		return errf(err, n, "dirty_method: unknown '%s' (auto, uffd-async, uffd-sync, "
			    "mprotect, soft-dirty, fingerprint)", v);
	c->dirty_method = m;
	return 0;
}

/* The list keys: their parser's message, prefixed with the key. */
static int set_list(struct sim_config *c, const struct key *k, const char *v, char *err, size_t n)
{
	char tmp[256];
	int ret;

	if (k->type == K_WORKLOADS)
		ret = parse_workloads(c, v, err, n);
	else if (k->type == K_SCENARIOS)
		ret = parse_scenarios(c, v, err, n);
	else
		ret = parse_links(c, v, k, err, n);
	if (!ret)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s", err);
	return errf(err, n, "%s: %s", k->name, tmp);
}

int sim_config_set(struct sim_config *c, const char *key, const char *value,
		   char *err, size_t n)
{
	const struct key *k = NULL;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(keys[i].name, key))
			k = &keys[i];
	if (!k)
		return errf(err, n, "unknown key '%s' (pgtrack-sim --dump-config lists them)",
			    key);
	if (!*value)
		return errf(err, n, "%s: empty value", key);

	switch (k->type) {
	case K_SIZE:
		return set_size(c, k, value, err, n);
	case K_SIZE_PCT:
		return set_size_pct(c, k, value, err, n);
	case K_FRAC:
		return set_frac(c, k, value, err, n);
	case K_DOUBLE:
	case K_SECONDS:
	case K_MS:
		return set_double(c, k, value, err, n);
	case K_UINT:
		return set_uint(c, k, value, err, n);
	case K_BOOL:
		if (parse_bool(value, FIELD(bool, c, k)))
			return errf(err, n, "%s: bad boolean '%s' (on/off)", key, value);
		return 0;
	case K_BYTERATE:
		return set_byterate(c, k, value, err, n);
	case K_WORKLOADS:
	case K_SCENARIOS:
	case K_LINKS:
		return set_list(c, k, value, err, n);
	case K_BACKING:
		return set_backing(c, value, err, n);
	case K_METHOD:
		return set_method(c, value, err, n);
	}
	return errf(err, n, "%s: internal error", key);
}

int sim_config_parse(struct sim_config *c, const char *text, const char *origin,
		     char *err, size_t n)
{
	const char *p = text;
	unsigned line = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char buf[512], msg[384], *s, *eq, *hash;

		line++;
		if (len >= sizeof(buf))
			return errf(err, n, "%s:%u: line too long", origin, line);
		memcpy(buf, p, len);
		buf[len] = '\0';
		p += len + (nl ? 1 : 0);
		if (memchr(buf, '\0', len))
			return errf(err, n, "%s:%u: NUL byte", origin, line);
		hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		s = trim(buf);
		if (!*s)
			continue;
		eq = strchr(s, '=');
		if (!eq)
			return errf(err, n, "%s:%u: expected 'key = value', got '%s'", origin, line, s);
		*eq = '\0';
		if (sim_config_set(c, trim(s), trim(eq + 1), msg, sizeof(msg)))
			return errf(err, n, "%s:%u: %s", origin, line, msg);
	}
	return 0;
}

uint64_t sim_area_bytes(double frac, uint64_t memory)
{
	uint64_t b = (uint64_t)(frac * (double)memory) & ~((2ULL << 20) - 1);

	return b ? b : 2ULL << 20;
}

static void resolve_pct(uint64_t *v, uint64_t memory)
{
	if (*v >> 63)
		*v = (uint64_t)((double)memory * (double)(*v & ~(1ULL << 63)) / 100000);
}

int sim_config_check(struct sim_config *c, char *err, size_t n)
{
	unsigned groups = workload_groups(c);
	uint64_t used = 0, unit2m = 2ULL << 20;

	if (c->memory % unit2m)
		return errf(err, n, "memory must be a multiple of 2 MiB");
	if (groups > c->vcpus)
		return errf(err, n, "%u workload groups for %u vCPUs (one group per vCPU)",
			    groups, c->vcpus);
	/* Fewer groups than vCPUs: they repeat. */
	for (unsigned v = groups; v < c->vcpus; v++) {
		c->nwl[v] = c->nwl[v % groups];
		memcpy(c->wl[v], c->wl[v % groups], sizeof(c->wl[v]));
	}
	if (c->cache > 0)
		used += sim_area_bytes(c->cache, c->memory);
	for (unsigned v = 0; v < c->vcpus; v++)
		for (unsigned i = 0; i < c->nwl[v]; i++)
			used += sim_area_bytes(c->area[c->wl[v][i]], c->memory);
	resolve_pct(&c->device_ring, c->memory);
	resolve_pct(&c->hostpin, c->memory);
	resolve_pct(&c->balloon_reserve, c->memory);
	resolve_pct(&c->balloon_target, c->memory);
	c->device_ring = (c->device_ring + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
	if (!c->device_ring)
		c->device_ring = 2ULL << 20;
	if (c->device)
		used += c->device_ring;
	/* areas are whole 2 MiB pages, at least one each */
	if ((double)used > 0.95 * (double)c->memory)
		return errf(err, n, "workload areas, cache and device ring take %llu of %llu MiB "
			    "(at most 95%%): give the guest more memory or the areas less",
			    (unsigned long long)(used >> 20), (unsigned long long)(c->memory >> 20));
	if (c->cache == 0)
		c->hostpin = 0;
	if (c->hostpin > (uint64_t)(c->cache * (double)c->memory))
		return errf(err, n, "hostpin (%llu MiB) is larger than the cache area",
			    (unsigned long long)(c->hostpin >> 20));
	if (c->balloon_target > c->memory)
		return errf(err, n, "balloon.target (%llu MiB) is above memory (%llu MiB)",
			    (unsigned long long)(c->balloon_target >> 20),
			    (unsigned long long)(c->memory >> 20));
	c->balloon_target &= ~(SIM_UNIT - 1);
	c->balloon_reserve &= ~(SIM_UNIT - 1);
	if (c->balloon_target < c->balloon_reserve)
		return errf(err, n, "balloon.target (%llu MiB) is below balloon.reserve (%llu MiB)",
			    (unsigned long long)(c->balloon_target >> 20),
			    (unsigned long long)(c->balloon_reserve >> 20));
	if (c->interval > c->duration)
		c->interval = c->duration;
	if (!c->heat_rows)
		c->heat_rows = 64;
	return 0;
}
