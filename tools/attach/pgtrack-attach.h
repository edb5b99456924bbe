/* SPDX-License-Identifier: MIT */
/*
 * libpgtrack-attach: pgtrack inside a running VMM.
 *
 * Two ways to use it:
 *  - LD_PRELOAD=libpgtrack-attach.so qemu-system-x86_64 ...: the library
 *    finds guest RAM in the unmodified QEMU by itself (docs/attach.md; its
 *    PGT_ATTACH_* environment variables are the configuration);
 *  - a VMM that links it calls this API: pgt_attach_open(), then
 *    pgt_attach_add() for each guest RAM mapping (or pgt_attach_find() to
 *    look for them the way the preload does).
 *
 * Either way it tracks writes with pgtrack's best non-blocking tracker
 * (uffd WP-async + PAGEMAP_SCAN: every thread's writes, vCPUs and device
 * emulation alike, resolved in the kernel, never stopping a vCPU), memory
 * the VMM gives back (userfaultfd REMOVE events, residency rescans) and
 * host NUMA placement, and serves per-VM figures: dirty rate, memory
 * written in the last N seconds and the write-age histogram, touched,
 * resident and released memory, per-node placement. They come as a C
 * struct, as JSON and Prometheus text (pgt_attach_render()), on
 * http://127.0.0.1:<port>/metrics and /json, and in a state file other
 * tools read (pgtrack-numa --pid).
 *
 * It never changes what the guest reads or writes. If the VMM registers
 * guest RAM with a userfaultfd of its own (QEMU post-copy, background
 * snapshot), pgtrack steps aside first (pgt_attach_uffd_claim(); the
 * preload does it when it sees the VMM's UFFDIO_REGISTER) and tracks again
 * once the VMM has let go.
 *
 * Conventions as in pgtrack.h: 0 or a count, or a negative errno; argument
 * structs start with a size field; nothing printed (a log callback).
 * Thread safety: every function may be called from any thread, except that
 * pgt_attach_close() must not race with other calls on the same handle.
 */
#ifndef PGTRACK_ATTACH_H
#define PGTRACK_ATTACH_H

#include <stddef.h>
#include <stdint.h>

#include <pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pgt_attach pgt_attach;

/** pgt_attach_config.flags */
enum pgt_attach_flags {
	/*
	 * Keep tracking when the VMM registers guest RAM with its own
	 * userfaultfd: its UFFDIO_REGISTER then fails with EBUSY. For
	 * comparisons and tests; the default steps aside.
	 */
	PGT_ATTACH_HOLD = 1u << 0,
};

/**
 * struct pgt_attach_config - How to attach.
 * @size:        sizeof(struct pgt_attach_config).
 * @flags:       enum pgt_attach_flags.
 * @track:       PGT_TRACK_* bits wanted; 0 takes PGT_TRACK_DIRTY |
 *               PGT_TRACK_REMOVE, plus PGT_TRACK_TOUCH where userfaultfd
 *               may serve kernel-mode faults (see docs/attach.md: with a
 *               user-mode-only userfaultfd a missing-page fault inside a
 *               system call would fail, so touch tracking stays off).
 *               PGT_TRACK_DIRTY is required.
 * @dirty_method: enum pgt_dirty_method; 0 (AUTO) takes uffd-async, else
 *               soft-dirty; trackers that stop or fault vCPUs (uffd-sync,
 *               mprotect) are refused with -EOPNOTSUPP: they would change
 *               how the guest runs.
 * @interval_ms: dirty-rate sampling period (0: 100; 10..60000). Rates count
 *               distinct pages written per period.
 * @epoch_ms:    write-age epoch, release rescan and state file period (0:
 *               1000; a multiple of @interval_ms, up to 600000).
 * @numa_ms:     host NUMA placement query period (0: 10000; -1 never).
 * @http_port:   serve /metrics and /json on 127.0.0.1:@http_port (0: any
 *               free port; -1: no HTTP).
 * @state_dir:   directory for attach-<pid>.json (NULL: the default list of
 *               pgtool.h; "": no state file).
 * @log:         log callback (NULL: silence), @log_arg passed to it.
 * @log_level:   highest level logged (0: PGT_LOG_INFO).
 */
struct pgt_attach_config {
	uint32_t size;
	uint32_t flags;
	uint32_t track;
	int32_t dirty_method;
	uint32_t interval_ms;
	uint32_t epoch_ms;
	int32_t numa_ms;
	int32_t http_port;
	const char *state_dir;
	pgt_log_fn log;
	void *log_arg;
	int log_level;
};

/**
 * pgt_attach_open() - Start an attach instance: a sampler thread, the HTTP
 * endpoint if asked, no memory tracked yet.
 * @cfg: configuration (NULL: defaults).
 * @out: receives the handle; free it with pgt_attach_close().
 * Returns: 0; -EINVAL (bad config); -EADDRINUSE and other HTTP start
 * errors; -EOPNOTSUPP (HTTP asked, built without libmicrohttpd); -ENOMEM.
 */
int pgt_attach_open(const struct pgt_attach_config *cfg, pgt_attach **out);

/**
 * pgt_attach_close() - Stop tracking, stop the threads and the HTTP server,
 * remove the state file and free. The memory stays as it is. NULL is a
 * no-op.
 */
void pgt_attach_close(pgt_attach *a);

/**
 * struct pgt_attach_ram - One guest RAM mapping of this process.
 * @size:      sizeof(struct pgt_attach_ram).
 * @name:      label in the figures (copied; NULL: "ram<N>").
 * @addr:      start of the mapping, aligned to @page_size.
 * @length:    bytes, a multiple of @page_size.
 * @fd:        the memory's file (memfd, hugetlbfs, shm) or -1 for private
 *             anonymous memory; duplicated, the caller keeps its own.
 * @fd_offset: offset of @addr in @fd.
 * @page_size: backing page size (0: hugetlbfs block size of @fd, else
 *             the base page size).
 */
struct pgt_attach_ram {
	uint32_t size;
	uint32_t reserved;
	const char *name;
	void *addr;
	uint64_t length;
	int fd;
	uint64_t fd_offset;
	uint64_t page_size;
};

/**
 * pgt_attach_add() - Track a guest RAM mapping. The mapping must stay
 * mapped until pgt_attach_close() or pgt_attach_uffd_claim() let it go.
 * Returns: the index of the region (>= 0); -EINVAL; -EEXIST (overlaps a
 * tracked mapping); -EBUSY (another userfaultfd holds the range: the VMM's
 * own post-copy or snapshot; try again later); -EOPNOTSUPP (no tracker
 * that leaves the guest alone on this kernel); -ENOSPC (more than
 * PGT_ATTACH_MAX_REGIONS); other errors of pgt_region_register().
 */
int pgt_attach_add(pgt_attach *a, const struct pgt_attach_ram *ram);

#define PGT_ATTACH_MAX_REGIONS 16

/**
 * struct pgt_attach_match - Which mappings of this process are guest RAM,
 * for pgt_attach_find().
 * @size:     sizeof(struct pgt_attach_match).
 * @rules:    NULL, or a comma list of NAME-GLOB[@SIZE] (fnmatch(3) against
 *            the /proc/self/maps name; "[anon]" is private anonymous
 *            memory; SIZE takes K, M, G, T suffixes): a mapping is guest
 *            RAM when some rule matches its name and, if given, its size.
 * @cmdline:  NULL, or QEMU's command line ("-m" and memory-backend sizes),
 *            NUL-separated as in /proc/self/cmdline, @cmdline_len bytes:
 *            without @rules, mappings of exactly those sizes are guest RAM.
 *            Without either, the largest shared/hugetlb mappings of at
 *            least 64 MiB (else private anonymous) are taken.
 */
struct pgt_attach_match {
	uint32_t size;
	uint32_t reserved;
	const char *rules;
	const char *cmdline;
	size_t cmdline_len;
};

/**
 * pgt_attach_find() - Look for guest RAM in /proc/self/smaps and track
 * every match not tracked yet (pgt_attach_add() with the memory's fd found
 * in /proc/self/fd).
 * Returns: the number of mappings tracked by this call; -ENOENT when
 * nothing matches (yet: QEMU maps RAM after its start, call again);
 * -EBUSY when a match is held by another userfaultfd; -EINVAL for bad
 * @m->rules; errors of pgt_attach_add().
 */
int pgt_attach_find(pgt_attach *a, const struct pgt_attach_match *m);

/**
 * pgt_attach_uffd_claim() - The VMM is about to register
 * [@start, @start + @len) with a userfaultfd of its own (post-copy,
 * background snapshot): pgtrack stops tracking every overlapping region
 * and unregisters, so the VMM's registration succeeds. The figures keep
 * their totals; the state says "stepped-aside" with @who in the message.
 * Tracking comes back by itself (pgt_attach_find() or a new add) once the
 * VMM has unregistered. With PGT_ATTACH_HOLD nothing is done.
 * Returns: the number of regions given up (0 when none overlaps).
 */
int pgt_attach_uffd_claim(pgt_attach *a, uint64_t start, uint64_t len, const char *who);

/**
 * pgt_attach_note_discard() - The VMM discarded (@discard true: madvise
 * DONTNEED/REMOVE, punch-hole) or re-populated (false: MADV_WILLNEED of a
 * balloon deflate) [@start, @start + @len). Discards are only counted (the
 * pages are accounted released by pgtrack itself, from the kernel's REMOVE
 * events and residency); a re-population takes the range back from the
 * released set. The preload calls it from its madvise/fallocate wrappers.
 * Returns: bytes of the range inside tracked memory.
 */
int64_t pgt_attach_note_discard(pgt_attach *a, uint64_t start, uint64_t len, int discard);

/** States of an attach instance. */
enum pgt_attach_state {
	PGT_ATTACH_SEARCHING = 0, /* no guest RAM found yet */
	PGT_ATTACH_ATTACHED,      /* tracking */
	PGT_ATTACH_WAITING,       /* guest RAM held by another userfaultfd */
	PGT_ATTACH_STEPPED_ASIDE, /* the VMM took guest RAM for its own userfaultfd */
	PGT_ATTACH_FAILED,        /* cannot track here (reason in the message) */
};

/** pgt_attach_state_name() - "searching", "attached", ... or NULL. */
const char *pgt_attach_state_name(int state);

#define PGT_ATTACH_RATES 3   /* dirty rate over 1, 10 and 60 s */
#define PGT_ATTACH_WINDOWS 15 /* written within 1, 2, 4 ... 16384 epochs */

/**
 * struct pgt_attach_figures - What the instance knows, summed over its
 * regions (pgt_attach_figures()) or of one region. Bytes; -1 in a signed
 * field: not known (tracker off, not measured yet).
 * @state:          enum pgt_attach_state.
 * @regions:        regions tracked now.
 * @guest_bytes:    guest RAM tracked now.
 * @dirty_bytes_total: bytes reported written, cumulative since attach
 *                  (each sampling period counts a page once).
 * @dirty_rate:     bytes/s over the last 1, 10, 60 s.
 * @written_bytes:  memory written within the last 2^i epochs
 *                  (@epoch_ms each), from the write-age histogram.
 * @touched_bytes:  populated since tracking began (touch tracking).
 * @resident_bytes: in host memory now.
 * @released_bytes: given back by the guest (balloon, free page reporting)
 *                  and not in host memory, not used again since.
 * @discarded_bytes, @discard_calls: what the VMM discarded (counted at
 *                  its calls, see pgt_attach_note_discard()).
 * @reclaimed_bytes: taken back by the VMM (balloon deflate).
 * @steps_aside:    times pgtrack gave guest RAM up to the VMM.
 * @nnodes, @node_bytes: resident bytes per host NUMA node at the last
 *                  placement query; @numa_age_ms: how long ago (-1: never).
 */
struct pgt_attach_figures {
	uint32_t size;
	uint32_t state;
	uint32_t regions;
	uint32_t nnodes;
	uint64_t guest_bytes;
	uint64_t dirty_bytes_total;
	uint64_t dirty_rate[PGT_ATTACH_RATES];
	uint64_t written_bytes[PGT_ATTACH_WINDOWS];
	int64_t touched_bytes;
	int64_t resident_bytes;
	int64_t released_bytes;
	uint64_t discarded_bytes;
	uint64_t discard_calls;
	uint64_t reclaimed_bytes;
	uint64_t steps_aside;
	int64_t numa_age_ms;
	uint64_t node_bytes[PGT_MAX_NODES];
};

/**
 * pgt_attach_figures() - Sample now (a fresh harvest, so the counters are
 * current to the call) and fill @f (@f->size set) with the totals, or with
 * region @region's figures (@region >= 0, an index from pgt_attach_add()).
 * Returns: 0, -EINVAL, -ENOENT (no such region).
 */
int pgt_attach_figures(pgt_attach *a, int region, struct pgt_attach_figures *f);

/** Formats of pgt_attach_render(). */
enum pgt_attach_format {
	PGT_ATTACH_JSON = 1,        /* schema "pgtrack-attach/1", docs/attach.md */
	PGT_ATTACH_PROMETHEUS = 2,  /* pgtrack_attach_* plus pgt_stats_render()'s families */
};

/**
 * pgt_attach_render() - Sample now and render everything.
 * @buf: receives the text, NUL-terminated; a malloc()ed buffer the caller
 *       frees.
 * Returns: the length (without the NUL), -EINVAL, -ENOMEM.
 */
int64_t pgt_attach_render(pgt_attach *a, int format, char **buf);

/** pgt_attach_http_port() - The port /metrics is served on, or 0. */
int pgt_attach_http_port(const pgt_attach *a);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_ATTACH_H */
