/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim internals: a simulated guest (vCPU threads writing into guest
 * RAM that pgtrack allocated and tracks), the scenarios that consume the
 * tracking (pre-copy migration, balloon, incremental snapshots), and the
 * reports. Public pgtrack API only.
 */
#ifndef PGT_SIM_H
#define PGT_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <pgtrack.h>

#define SIM_UNIT 4096ULL        /* guest page: what workloads and the balloon use */
#define SIM_UNIT_SHIFT 12
#define SIM_MAX_VCPUS 64
#define SIM_MAX_LINKS 8
#define SIM_MAX_WL 8            /* workload instances per vCPU */
#define SIM_BITS (8 * sizeof(unsigned long))
#define SIM_ZERO_MARKER 8ULL    /* wire bytes of a zero piece's marker */

enum wl_kind { WL_RANDOM, WL_ZIPF, WL_STREAM, WL_CHURN, WL__COUNT };

enum scenario {
	SC_MIGRATE = 1u << 0,
	SC_BALLOON = 1u << 1,
	SC_SNAPSHOT = 1u << 2,
};

/* ---- configuration (sim_config.c) ---- */

struct sim_config {
	uint64_t memory;
	unsigned vcpus;
	int backing;                    /* 0 = auto, else enum pgt_backing */
	int dirty_method;               /* enum pgt_dirty_method */
	bool touch;                     /* first-touch tracking */
	bool refine;                    /* large pages: report changed 4 KiB pieces */
	bool zero_markers;              /* migrations send a marker for zero pieces */
	char workloads[256];            /* "zipf+stream,random+churn" */
	unsigned nwl[SIM_MAX_VCPUS];    /* parsed from it */
	uint8_t wl[SIM_MAX_VCPUS][SIM_MAX_WL];
	double rate[WL__COUNT];         /* random/zipf: writes/s; stream: bytes/s;
	                                 * churn: allocations/s */
	double area[WL__COUNT];         /* fraction of guest memory, per instance */
	double zipf_theta;
	uint64_t churn_chunk;           /* largest allocation */
	double cache;                   /* fraction: page cache the balloon drops */
	uint64_t hostpin;               /* bytes of it the host pinned */
	bool device;
	double device_rate;             /* bytes/s */
	uint64_t device_ring;
	double duration;
	double interval;
	unsigned scenarios;
	double link[SIM_MAX_LINKS];     /* Gbit/s */
	unsigned nlinks;
	double downtime_ms;
	unsigned max_rounds;
	uint64_t balloon_target;
	double balloon_rate;            /* bytes/s */
	uint64_t balloon_reserve;
	double snapshot_every;          /* s, 0 = duration / 6 */
	uint64_t seed;
	unsigned heat_rows;
};

/* Parse "key = value" lines (# comments). @origin names the text in errors.
 * Returns 0, or -1 with a message in @err. */
int sim_config_parse(struct sim_config *c, const char *text, const char *origin,
		     char *err, size_t errlen);
/* Set one key. Returns 0, or -1 with a message in @err. */
int sim_config_set(struct sim_config *c, const char *key, const char *value,
		   char *err, size_t errlen);
/* Cross-field checks after everything is set. */
int sim_config_check(struct sim_config *c, char *err, size_t errlen);
/* The embedded default scenario (the demo). */
extern const char sim_default_config[];
const char *sim_wl_name(int kind);
/* Bytes of an area that is @frac of @memory: whole 2 MiB pages, at least one. */
uint64_t sim_area_bytes(double frac, uint64_t memory);

/* ---- small helpers (sim_util.c) ---- */

uint64_t sim_now_ns(void);
void sim_sleep_until(uint64_t t_ns);
void sim_sleep_ns(uint64_t ns);
uint64_t sim_rand(uint64_t *s);
double sim_rand01(uint64_t *s);
/* "512 MiB", "1.5 GiB", "4 KiB" */
const char *sim_bytes(uint64_t v, char *buf, size_t n);
/* Parse "512M", "2G", "4096", "1.5G"; returns 0 or -1. */
int sim_parse_size(const char *s, uint64_t *out);
/* Counters read from /proc/meminfo (kB values in bytes, HugePages_* raw). */
uint64_t sim_meminfo(const char *key);

/* ---- guest (sim_guest.c) ---- */

enum unit_state {
	U_FREE = 0,     /* free in the guest, still backed on the host */
	U_USED,         /* in use by a workload, the page cache, a ring */
	U_REPORTED,     /* free and reported: released on the host */
	U_BALLOON,      /* in the balloon: released on the host */
	U_BALLOON_PIN,  /* in the balloon, but the host refused it (pinned) */
};

struct area {
	const char *name;
	uint64_t first;   /* unit index */
	uint64_t n;       /* units */
};

struct chunk {
	uint64_t first;
	uint32_t n;
};

struct wl {
	int kind;
	unsigned vcpu;
	struct area a;
	uint64_t rng;
	double carry;     /* fractional writes owed from the last tick */
	uint64_t cursor;  /* stream position, churn search start */
	_Atomic uint64_t writes;
	_Atomic uint64_t allocs;
	_Atomic uint64_t frees;
	_Atomic uint64_t reported;      /* units released by free page reporting */
	_Atomic uint64_t reclaimed;     /* units taken back on reuse */
	uint64_t live;                  /* churn: units allocated */
	struct chunk *chunks;           /* churn: live allocations */
	size_t nchunks, chunks_cap;
	uint64_t *to_report;            /* churn: freed, not yet reported */
	size_t nreport, report_cap;
	uint64_t next_report_ns;
};

struct sim;

struct vcpu {
	struct sim *s;
	unsigned id;
	pthread_t th;
	struct wl *wl[SIM_MAX_WL];
	unsigned nwl;
	bool booted;
};

/*
 * The simulated offload device: pgtrack's "sim" offload backend, DMA writes
 * into a pinned ring area of guest memory, logged in its own ring and
 * merged into every view by pgtrack (pgtrack/offload.h).
 */
struct device {
	struct sim *s;
	pgt_offload *dev;
	bool running;
	bool alias;             /* it wrote through its own mapping of the file */
	struct area ring;
	uint64_t rng;
	struct pgt_offload_info info; /* counters at stop (live ones before) */
};

struct balloon;
struct migration;

/* One row of the timeline (per interval). */
struct sample {
	double t;
	const char *phase;
	uint64_t touched_bytes;
	uint64_t dirty_pages;           /* in this interval (sampler view) */
	double dirty_rate;              /* bytes/s */
	uint64_t released;
	uint64_t resident;
	uint64_t pinned;
	uint64_t guest_bytes;           /* memory the guest holds */
	uint64_t host_rss;
	uint64_t host_hugetlb;
	uint64_t cg_usage;
	uint64_t hp_free;               /* HugePages_Free */
	uint64_t mem_available;
	uint64_t balloon_target;
};

struct snapshot {
	unsigned index;
	bool full;
	double t;
	uint64_t pages;
	uint64_t bytes;
};

struct sim {
	struct sim_config cfg;
	pgt_engine *eng;
	pgt_region *r;
	struct pgt_region_info info;
	uint8_t *mem;
	uint64_t npages;          /* tracking pages */
	unsigned page_shift;
	uint64_t nunits;
	unsigned units_per_page;
	char backing_why[192];
	bool refining;            /* pgt_region_refine() is on: migrations
				   * harvest 4 KiB pieces of 2 MiB pages */
	uint64_t hp_free_at_start;

	/* guest allocator; rel_lock is write-held around every release and
	 * reclaim, read-held by whoever reads guest memory (migration), so a
	 * read never faults a page back in while it is being given away */
	pthread_mutex_t glock;
	pthread_rwlock_t rel_lock;
	uint8_t *ustate;          /* enum unit_state per unit */
	struct area ring, cache, hostpin;
	struct wl *wls;
	unsigned nwls;
	struct vcpu *vcpus;

	/* run control */
	_Atomic bool stop;
	_Atomic unsigned booted;
	_Atomic int pause_req;
	unsigned participants;    /* threads that honour a pause */
	unsigned paused;
	pthread_mutex_t plock;
	pthread_cond_t pcond;
	uint64_t t0;
	double boot_s;            /* start to boot done; the scenarios start then */

	/* pages written while shadow is on, set before the write */
	_Atomic unsigned long *shadow;
	_Atomic bool shadow_on;

	struct device dev;
	struct balloon *bal;

	/* views: independent consumers of one tracker */
	pgt_dirty_view *sampler;
	pgt_dirty_view *snapview;
	uint64_t sampler_pages, snap_pages_total;
	unsigned long *sbm;       /* sampler bitmap */
	size_t words;

	/* timeline and heat map */
	struct sample *samples;
	size_t nsamples, samples_cap;
	uint32_t *heat_dirty;     /* [sample][row] dirty pages */
	uint32_t *heat_touch;     /* [sample][row] touched pages */
	unsigned rows;
	uint64_t pages_per_row;
	unsigned long *touched_union; /* when there is no touch tracking */

	struct snapshot *snaps;
	size_t nsnaps, snaps_cap;

	struct migration *migs;
	unsigned nmigs;

	/* phase labels for the heat map: [start, end) per scenario event */
	struct { double t0, t1; char label[48]; } marks[16];
	unsigned nmarks;

	/* live view */
	bool tty;
	bool quiet;
	FILE *log;                /* stderr */
	pthread_mutex_t outlock;
	char phase[32];

	/* for /metrics */
	_Atomic bool ready;       /* engine and region exist */
	pthread_mutex_t mlock;
	struct sample last;
};

/* Log an event line on the live view (thread-safe). */
void sim_event(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double sim_elapsed(const struct sim *s);

int sim_guest_create(struct sim *s, char *err, size_t errlen);
void sim_guest_destroy(struct sim *s);
int sim_vcpus_start(struct sim *s);
void sim_vcpus_stop(struct sim *s);
/* Pause every guest-side thread (vCPUs, device, balloon driver) at a safe
 * point and return when all are parked; sim_resume() lets them go. */
void sim_pause(struct sim *s);
void sim_resume(struct sim *s);
/* Called by guest-side threads at safe points. */
void sim_pause_point(struct sim *s);
/* Threads that honour pauses register before they start and leave on exit. */
void sim_participant_join(struct sim *s);
void sim_participant_leave(struct sim *s);
/* Pages of @s->r that hold the unit range (for dirty bitmaps). */
static inline uint64_t sim_unit_page(const struct sim *s, uint64_t unit)
{
	return unit >> (s->page_shift - SIM_UNIT_SHIFT);
}
static inline uint64_t sim_unit_gpa(const struct sim *s, uint64_t unit)
{
	return s->info.gpa + (unit << SIM_UNIT_SHIFT);
}
static inline void sim_shadow_mark(struct sim *s, uint64_t unit)
{
	if (atomic_load_explicit(&s->shadow_on, memory_order_relaxed)) {
		uint64_t p = sim_unit_page(s, unit);

		atomic_fetch_or_explicit(&s->shadow[p / SIM_BITS], 1UL << (p % SIM_BITS),
					 memory_order_relaxed);
	}
}
int sim_device_start(struct sim *s);
void sim_device_stop(struct sim *s);
/* The device's counters, live while it runs. */
void sim_device_info(struct sim *s, struct pgt_offload_info *info);
/* Units released by pgtrack (any source), per pgt_released_test. */
bool sim_unit_released(struct sim *s, uint64_t unit);

/* ---- migration (sim_migrate.c) ---- */

struct mig_round {
	unsigned round;
	uint64_t pages;
	uint64_t bytes;
	double seconds;
	double est_downtime_ms;   /* if we stopped after harvesting this round's set */
	uint64_t zero_pieces;     /* 4 KiB pieces sent as zero markers */
};

struct migration {
	struct sim *s;
	double link_gbit;
	double budget_ms;
	unsigned max_rounds;
	pthread_t th;
	_Atomic bool done;
	_Atomic bool force_stop;
	double t_start, t_end;
	/* results */
	struct mig_round *rounds;
	unsigned nrounds, rounds_cap;
	uint64_t pages_sent;
	uint64_t bytes_sent;
	uint64_t first_round_pages;
	uint64_t final_pages;         /* stop-and-copy */
	double est_downtime_ms;
	double downtime_ms;           /* measured guest pause */
	double stop_ms;               /* of it: until every guest thread parked */
	bool converged;
	const char *end_reason;       /* "converged", "max rounds", "time" */
	double throughput;            /* bytes/s actually achieved */
	uint64_t dirtied_pages;       /* written during the migration (shadow) */
	uint64_t dirtied_not_sent;    /* of those, never re-sent (must be 0) */
	uint64_t released_skipped;    /* units released meanwhile (not compared) */
	uint64_t verify_units;
	uint64_t verify_mismatch;
	bool verified;
	int error;
	uint64_t view_pages;          /* everything this view harvested */
	bool refine;                  /* rounds send 4 KiB pieces, not pages */
	uint64_t granule;             /* bytes per harvested unit ("pages") */
	uint64_t bytes_2m;            /* what sending whole pages instead of the
				       * refined pieces would have cost */
	const char *destination;      /* "process" or "in-process buffer" */
	/* zero markers: a 4 KiB piece pgt_zero_pages() reports zero goes as
	 * SIM_ZERO_MARKER bytes (its offset and a flag, as QEMU's zero-page
	 * header) instead of 4 KiB; bytes_sent counts the markers */
	bool zero_markers;
	uint64_t zero_pieces;
	double zero_check_ms;         /* spent in pgt_zero_pages() */
	void *priv;
};

int sim_migration_start(struct sim *s, struct migration *m);
/* pgtrack-sim --destination-host LEN: the destination side of a migration. */
int sim_destination_main(uint64_t len);
void sim_migration_join(struct sim *s, struct migration *m);

/* ---- balloon (sim_balloon.c) ---- */

struct balloon_report {
	bool ran;
	uint64_t configured;
	uint64_t target;
	uint64_t refused_target;      /* the unsafe target tried first */
	int refused_error;
	uint64_t deflate_target;
	bool reached;
	bool exact;                   /* the library saw it exactly on target */
	uint64_t tolerance;           /* "reached" within this many bytes */
	double reach_seconds;
	uint64_t reasks;
	bool deflate_reached;
	uint64_t limit;               /* safe balloon at the start */
	uint64_t pinned;
	uint64_t kept;
	uint64_t released_bytes;      /* by the balloon */
	uint64_t reported_bytes;      /* by free page reporting */
	uint64_t reclaimed_bytes;
	uint64_t freed_bytes;         /* host memory freed (whole pages) */
	uint64_t refused_pinned;      /* bytes the host refused: pinned */
	uint64_t partial_pages;       /* large pages partly released at the end */
	uint64_t partial_units;
	uint64_t hp_free_before, hp_free_peak;
	uint64_t rss_before, rss_min;
	uint64_t hugetlb_before, hugetlb_min;
	uint64_t cg_before, cg_min;
	uint64_t resident_before, resident_min;
	uint64_t balloon_calls;
};

int sim_balloon_init(struct sim *s, char *err, size_t errlen);
void sim_balloon_fini(struct sim *s);
int sim_balloon_inflate(struct sim *s, uint64_t target);
int sim_balloon_deflate(struct sim *s, uint64_t target);
/* Often (main loop): drive the memory target. */
void sim_balloon_tick(struct sim *s);
/* Once per sample: note the host figures the report compares. */
void sim_balloon_sample(struct sim *s, const struct sample *now);
/* Final figures (partial pages, the RSS/cgroup explanation); NULL without
 * a balloon. */
const struct balloon_report *sim_balloon_report(struct sim *s);
/* The target currently set (0: none). */
bool sim_balloon_reached(struct sim *s);
uint64_t sim_balloon_target(struct sim *s);
void sim_balloon_free(struct sim *s);
/* Free page reporting from the churn workload (vCPU thread). */
void sim_report_free(struct sim *s, struct wl *w, bool force);
/* Guest allocator: churn chunk allocation/free (under s->glock inside). */
bool sim_churn_alloc(struct sim *s, struct wl *w, uint32_t n, struct chunk *out);
void sim_churn_free(struct sim *s, struct wl *w, const struct chunk *c);

/* ---- reports (sim_report.c) ---- */

int sim_write_json(struct sim *s, FILE *f, char *err, size_t errlen);
int sim_write_svg(struct sim *s, FILE *f, char *err, size_t errlen);
void sim_print_summary(struct sim *s, FILE *f);

/* ---- /metrics (sim_http.c) ---- */

struct sim_http;
/* Serve /metrics on 127.0.0.1:@port (0: any free port). */
int sim_http_start(struct sim *s, int port, struct sim_http **out, int *bound_port,
		   char *err, size_t errlen);
void sim_http_stop(struct sim_http *h);

#endif
