/* SPDX-License-Identifier: MIT */
/*
 * Calibration core: cost model, choice and cache format (calibrate_pvt.h).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pgtrack/pgtrack.h>

#include "engine/calibrate_pvt.h"

#define COST_MAX 1e9

static const struct {
	const char *key;
	size_t off;
} fields[] = {
	{ "wp_async_fault", offsetof(struct pgt__calib_costs, wp_async_fault) },
	{ "mprotect_fault", offsetof(struct pgt__calib_costs, mprotect_fault) },
	{ "sync_fault", offsetof(struct pgt__calib_costs, sync_fault) },
	{ "scan_clean", offsetof(struct pgt__calib_costs, scan_clean) },
	{ "reprotect", offsetof(struct pgt__calib_costs, reprotect) },
	{ "pagemap_read", offsetof(struct pgt__calib_costs, pagemap_read) },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static double *field(struct pgt__calib_costs *c, size_t i)
{
	return (double *)(void *)((char *)c + fields[i].off);
}

static bool cost_ok(double v)
{
	return isfinite(v) && v >= 0 && v <= COST_MAX;
}

static bool costs_ok(const struct pgt__calib_costs *c)
{
	struct pgt__calib_costs t = *c;

	for (size_t i = 0; i < NFIELDS; i++)
		if (!cost_ok(*field(&t, i)))
			return false;
	return true;
}

/*
 * uffd-async: faults, a walk over every entry, re-protect of the written.
 * soft-dirty: no cheaper model is measured; counted as uffd-async.
 * uffd-sync and mprotect: their faults; the harvest re-protects the written
 * pages from a bitmap (no walk).
 */
double pgt__calib_round_cost(const struct pgt__calib_costs *c, int method,
			     uint64_t npages, double dirty)
{
	double n = (double)npages, w;

	if (!c || !costs_ok(c) || !isfinite(dirty) || dirty < 0 || dirty > 1)
		return -EINVAL;
	w = n * dirty;
	switch (method) {
	case PGT_DIRTY_UFFD_ASYNC:
	case PGT_DIRTY_SOFT_DIRTY:
		return w * c->wp_async_fault + n * c->scan_clean + w * c->reprotect;
	case PGT_DIRTY_UFFD_SYNC:
		return w * (c->sync_fault + c->reprotect);
	case PGT_DIRTY_MPROTECT:
		return w * (c->mprotect_fault + c->reprotect);
	default:
		return -EINVAL;
	}
}

int pgt__calib_choose(const struct pgt__calib_costs *c, uint32_t avail, uint64_t npages,
		      double dirty)
{
	static const int order[] = { PGT_DIRTY_UFFD_ASYNC, PGT_DIRTY_SOFT_DIRTY,
				     PGT_DIRTY_UFFD_SYNC, PGT_DIRTY_MPROTECT };
	int best = -EOPNOTSUPP;
	double best_cost = 0;

	if (!c || !costs_ok(c))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		double v;

		if (!(avail & (1u << order[i])))
			continue;
		v = pgt__calib_round_cost(c, order[i], npages, dirty);
		if (v < 0)
			return -EINVAL;
		/* ties keep the earlier (feature-order) method */
		if (best < 0 || v < best_cost) {
			best = order[i];
			best_cost = v;
		}
	}
	return best;
}

/* One line of @buf from *@pos (excluding '\n') into @line; false at the end
 * or when the line is longer than @cap - 1 or holds a NUL. */
static bool next_line(const char *buf, size_t len, size_t *pos, char *line, size_t cap)
{
	size_t n = 0;

	if (*pos >= len)
		return false;
	while (*pos < len && buf[*pos] != '\n') {
		if (n + 1 >= cap || buf[*pos] == '\0')
			return false;
		line[n++] = buf[(*pos)++];
	}
	if (*pos >= len)
		return false;   /* every line ends with '\n' */
	(*pos)++;
	line[n] = 0;
	return true;
}

static int parse_value(const char *line, struct pgt__calib_costs *c, unsigned *seen)
{
	for (size_t i = 0; i < NFIELDS; i++) {
		size_t kl = strlen(fields[i].key);
		char *end;
		double v;

		if (strncmp(line, fields[i].key, kl) || line[kl] != ' ')
			continue;
		if (*seen & (1u << i) || line[kl + 1] < '0' || line[kl + 1] > '9')
			return -EINVAL;
		errno = 0;
		v = strtod(line + kl + 1, &end);
		if (errno || *end || !cost_ok(v))
			return -EINVAL;
		*field(c, i) = v;
		*seen |= 1u << i;
		return 0;
	}
	return -EINVAL;
}

int pgt__calib_parse(const char *buf, size_t len, const char *boot_id,
		     struct pgt__calib_costs *out)
{
	struct pgt__calib_costs c = { 0 };
	char line[96];
	size_t pos = 0;
	unsigned seen = 0;
	bool stale;

	if (!buf || !boot_id || !out || strlen(boot_id) != PGT_CALIB_BOOT_ID_LEN)
		return -EINVAL;
	if (!next_line(buf, len, &pos, line, sizeof(line)) ||
	    strcmp(line, "pgtrack-calibration 1"))
		return -EINVAL;
	if (!next_line(buf, len, &pos, line, sizeof(line)) || strncmp(line, "boot_id ", 8) ||
	    strlen(line + 8) != PGT_CALIB_BOOT_ID_LEN)
		return -EINVAL;
	stale = strcmp(line + 8, boot_id) != 0;
	while (next_line(buf, len, &pos, line, sizeof(line)))
		if (parse_value(line, &c, &seen))
			return -EINVAL;
	if (pos != len || seen != (1u << NFIELDS) - 1)
		return -EINVAL;
	if (stale)
		return -ESTALE;
	*out = c;
	return 0;
}

int pgt__calib_format(const struct pgt__calib_costs *c, const char *boot_id, char *buf,
		      size_t len)
{
	struct pgt__calib_costs t;
	size_t n;
	int w;

	if (!c || !boot_id || !buf || !costs_ok(c) || strlen(boot_id) != PGT_CALIB_BOOT_ID_LEN)
		return -EINVAL;
	t = *c;
	w = snprintf(buf, len, "pgtrack-calibration 1\nboot_id %s\n", boot_id);
	if (w < 0 || (size_t)w >= len)
		return -ENOSPC;
	n = (size_t)w;
	for (size_t i = 0; i < NFIELDS; i++) {
		w = snprintf(buf + n, len - n, "%s %.17g\n", fields[i].key, *field(&t, i));
		if (w < 0 || (size_t)w >= len - n)
			return -ENOSPC;
		n += (size_t)w;
	}
	return (int)n;
}
