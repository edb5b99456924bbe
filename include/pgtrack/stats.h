/* SPDX-License-Identifier: MIT */
/*
 * pgtrack statistics export: the engine's accounting rendered as JSON or as
 * Prometheus text exposition into a caller's buffer. No dependencies: the
 * library formats and escapes itself, so a VMM can serve the text however it
 * likes (the pgtrack tools serve it on /metrics through libmicrohttpd).
 */
#ifndef PGTRACK_STATS_H
#define PGTRACK_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Output formats of pgt_stats_render(). */
enum pgt_stats_format {
	PGT_STATS_JSON = 1,       /* one JSON object, schema below */
	PGT_STATS_PROMETHEUS = 2, /* text exposition format 0.0.4 */
};

/** The "schema" member of the JSON document; bumped on incompatible change. */
#define PGT_STATS_SCHEMA "pgtrack-stats/1"

/**
 * pgt_stats_render() - Render the engine's accounting.
 * @eng:    the engine.
 * @format: PGT_STATS_JSON or PGT_STATS_PROMETHEUS.
 * @buf:    output buffer, NUL-terminated on success; may be NULL when @len
 *          is 0 (a size query, as snprintf(NULL, 0, ...)).
 * @len:    size of @buf in bytes.
 *
 * Every region is read under the engine's region list lock, each region's
 * counters in one consistent snapshot (pgt_region_stats()), so one document
 * never mixes two moments of a region. Regions appear in guest-physical
 * order.
 *
 * JSON schema ("pgtrack-stats/1"). All sizes are bytes, all counts are pages
 * at the region's page size unless the name ends in _bytes:
 *
 *   {
 *     "schema": "pgtrack-stats/1",
 *     "version": "0.1.0",                 library version
 *     "regions": [ {
 *       "name": "guest-ram",              region label, JSON-escaped
 *       "backing": "hugetlb",             pgt_backing_name()
 *       "gpa": 0,                         guest-physical base
 *       "length_bytes": 536870912,
 *       "page_size_bytes": 2097152,       tracking granularity
 *       "pages": 256,
 *       "numa_node": -1,
 *       "dirty_method": "uffd-async",     pgt_dirty_method_name(); "none" when off
 *       "track_dirty": true,
 *       "track_touch": true,
 *       "touched": 250,                   pages populated (0 without touch tracking)
 *       "touched_bytes": 524288000,
 *       "touch_faults": 250,              counters of struct pgt_region_stats
 *       "touch_errors": 0,
 *       "wp_faults": 0,
 *       "harvests": 31,
 *       "dirty_reported": 1200,
 *       "dirty_views": 3,
 *       "metadata_bytes": 1234,
 *       "resident_bytes": 520093696,     pgt_account_region() totals (release.h):
 *       "released_bytes": 16777216,      guest memory given back,
 *       "pinned_bytes": 8388608,         never releasable,
 *       "zero_bytes": 0,                 found zero by pgt_zero_scan(),
 *       "dirty_pending_bytes": 4194304,  written since some view harvested,
 *       "partial_hugepages": 3,          large pages partly released (a count)
 *       "account_error": -12             only when accounting failed (then the
 *                                        six values above are 0)
 *     } ],
 *     "totals": {
 *       "regions": 1,
 *       "length_bytes": 536870912,
 *       "touched_bytes": 524288000,
 *       "resident_bytes": 520093696,
 *       "released_bytes": 16777216,
 *       "metadata_bytes": 1234
 *     }
 *   }
 *
 * Rendering accounts every region (pgt_account_region()), which reads the
 * region's residency from /proc/self/pagemap and collects pending dirty
 * pages into the views (nothing is lost: each view still gets them at its
 * next harvest). Expect a fraction of a millisecond per GiB of 4 KiB pages.
 *
 * Prometheus: metric families named pgtrack_*, each with # HELP and # TYPE,
 * one sample per region labelled region="<name>", backing="<backing>" and
 * gpa="<hex base>" (names need not be unique; the base is). Counters end in
 * _total. Label values are escaped as the exposition format requires
 * (backslash, double quote, line feed) and bytes that are not UTF-8 become
 * U+FFFD.
 *
 * Metric families: pgtrack_info{version}, pgtrack_regions,
 * pgtrack_region_info{...,dirty_method}, and per region
 * pgtrack_region_{size_bytes, page_size_bytes, pages, touched_pages,
 * touched_bytes, dirty_views, metadata_bytes, resident_bytes, released_bytes,
 * pinned_bytes, zero_bytes, dirty_pending_bytes, partial_hugepages} (gauges)
 * and pgtrack_region_{touch_faults, touch_errors, wp_faults, harvests,
 * dirty_reported_pages}_total (counters).
 *
 * Returns: the number of bytes written, without the terminating NUL; with
 * @buf NULL and @len 0, the number of bytes a full rendering needs (add one
 * for the NUL); -ENOBUFS when @len is too small (then @buf holds an empty
 * string, never a truncated document; counters may grow between a size query
 * and the rendering, so allow slack or retry); -EINVAL for a NULL @eng, an
 * unknown @format, or a NULL @buf with a non-zero @len; -ENOMEM.
 */
int64_t pgt_stats_render(pgt_engine *eng, int format, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_STATS_H */
