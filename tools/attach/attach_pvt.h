/* SPDX-License-Identifier: MIT */
/* libpgtrack-attach internals, shared by its .c files. Not installed. */
#ifndef PGTRACK_ATTACH_PVT_H
#define PGTRACK_ATTACH_PVT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <pgtrack.h>

#include "tools/attach/pgtrack-attach.h"
#include "tools/lib/pgtool.h"

/* Dirty-rate samples kept per region: the 60 s window at the shortest
 * sampling period (10 ms), plus one. */
#define ATT_RING 6001

struct att_sample {
	uint64_t t_ns;
	uint64_t bytes;
};

/* The hot check of the interposers, read without the instance lock. */
struct att_range {
	_Atomic uint64_t start;
	_Atomic uint64_t end;   /* 0: slot unused or not tracked now */
};

struct att_region {
	bool used;              /* slot holds a mapping (tracked now or before) */
	bool live;              /* pgtrack tracks it now */
	char name[64];
	char mapping[PGTOOL_MAPPING_NAME_LEN];
	char backing[16];
	uint64_t start, length, page_size, gpa, fd_offset;
	int fd;                 /* our dup of the memory's fd, or -1 */
	uint64_t dev, ino;      /* of @fd: punch-holes on it are discards */
	uint32_t track;
	int method;
	pgt_region *r;
	pgt_dirty_view *rate;   /* the dirty-rate consumer */
	bool age;               /* pgt_age_start() succeeded */
	uint64_t live_since_ns;
	/* figures (under the instance lock) */
	uint64_t dirty_total;   /* bytes, over every time it was tracked */
	struct att_sample *ring;
	unsigned ring_head, ring_n;
	struct pgt_age_histogram hist;
	bool hist_ok;
	int64_t touched, resident, released;
	struct pgt_placement pl;
	int pl_err;
	uint64_t pl_ns;         /* when @pl was measured, 0 never */
	/* counted by the interposers, lock-free */
	_Atomic uint64_t discarded, discard_calls, reclaimed;
	_Atomic bool discard_seen; /* a discard since the last rescan */
};

struct pgt_attach {
	struct pgt_attach_config cfg;
	char state_dir[512];
	/*
	 * The VMM's discards (read) against rescan + harvest (write): see
	 * pgt_attach__discard_begin(). Taken before nothing else; the
	 * sampler takes it under @lock.
	 */
	pthread_rwlock_t discard_lock;
	pthread_mutex_t lock;   /* everything below */
	pgt_engine *eng;
	struct pgt_probe probe;
	uint32_t track;         /* resolved default */
	int method;
	unsigned nregions;      /* slots used */
	struct att_region reg[PGT_ATTACH_MAX_REGIONS];
	struct att_range ranges[PGT_ATTACH_MAX_REGIONS];
	int state;
	char message[320];
	uint64_t steps_aside;
	uint64_t hold_off_ns;   /* no re-attach before (after a claim) */
	uint64_t next_gpa;
	/* automatic discovery (the preload) */
	bool autofind;
	char *rules;
	char *cmdline;
	size_t cmdline_len;
	unsigned expected;      /* mappings the command line announces, 0 unknown */
	uint64_t next_find_ns;
	/* the sampler */
	pthread_t thread;
	bool thread_on, stop;
	pthread_cond_t wake;
	uint64_t next_epoch_ns, next_numa_ns;
	/* outputs */
	pgtool_http *http;
	int port;
	char state_path[600];
	uint64_t starttime;
	int pid;
	struct pgt_attach *next_inst; /* the registry of open instances */
};

/* ---- attach.c ---- */
uint64_t pgt_attach__now_ns(void);
void pgt_attach__log(const struct pgt_attach *a, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Refresh the figures of every live region: a harvest of the rate view
 * (always) and the epoch work (@epoch). Caller holds a->lock. */
void pgt_attach__sample(struct pgt_attach *a, bool epoch);
/* Figures of one region (or every live one, @reg NULL) into @f. a->lock held. */
void pgt_attach__figures(struct pgt_attach *a, const struct att_region *reg,
			 struct pgt_attach_figures *f);
/* Automatic discovery (the preload): @rules and @cmdline as in
 * struct pgt_attach_match, copied; the sampler thread looks. */
int pgt_attach__autofind(struct pgt_attach *a, const char *rules, const char *cmdline,
			 size_t cmdline_len);
/* The registry of open instances; the interposers walk it. */
void pgt_attach__registry_lock(void);
void pgt_attach__registry_unlock(void);
struct pgt_attach *pgt_attach__registry_first(void);
/* In the child of a fork(): forget the parent's instances (their threads
 * did not follow) and re-initialise the registry lock. */
void pgt_attach__after_fork(void);
/* At process exit: remove the state file, nothing else (the VMM's threads
 * may still run). */
void pgt_attach__exit(struct pgt_attach *a);
/*
 * Around the VMM's madvise(DONTNEED/REMOVE) of [@start, @start + @len):
 * begin returns true (and holds the discard lock for reading) when the
 * range overlaps tracked memory; end (only then) marks the regions for a
 * rescan and lets go. Why: pgtrack sees the pages freed from the REMOVE
 * event and the residency rescan that follows. A harvest between the free
 * and the rescan write-protects the new hole of private anonymous memory
 * with a uffd-wp pte marker, which PAGEMAP_SCAN reports as swapped, i.e.
 * resident, and the release would never be counted (engine limitation,
 * docs/attach.md). So no harvest runs while a discard is under way, and
 * the first sample after one rescans before it harvests.
 */
bool pgt_attach__discard_begin(struct pgt_attach *a, uint64_t start, uint64_t len);
void pgt_attach__discard_end(struct pgt_attach *a, uint64_t start, uint64_t len);
/* madvise(@advice) of [@start, @start + @len) by the VMM. */
#define ATT_MADVISE 0x10000
void pgt_attach__note_madvise(struct pgt_attach *a, uint64_t start, uint64_t len, int advice);
/* The punch-hole of [@off, @off + @len) in file (@dev, @ino). */
void pgt_attach__note_punch(struct pgt_attach *a, uint64_t dev, uint64_t ino, uint64_t off,
			    uint64_t len);

/*
 * Calls into pgtrack made by this library's own threads must not be seen
 * by the interposers as the VMM's (the engine's probe registers test pages
 * with userfaultfd while the registry lock is held). Per thread.
 */
extern _Thread_local int pgt_attach__inside;

/* ---- attach_find.c ---- */

#define ATT_MAX_SIZES 32

/* Sizes of guest RAM named on a QEMU command line (-m, memory-backend-*
 * size=), NUL-separated as /proc/self/cmdline. Returns the count (up to
 * @cap kept; duplicates kept: two backends of one size are two mappings) or
 * -EBADMSG for a size that does not parse. */
int pgt_attach__cmdline_sizes(const char *cmdline, size_t len, uint64_t *sizes, unsigned cap);
/* Parse "NAME-GLOB[@SIZE],..." into @globs (pointers into @copy, a
 * writable copy of the rules) and @sizes (0: any size).
 * Returns the number of rules, -EINVAL. */
int pgt_attach__rules(char *copy, char **globs, uint64_t *sizes, unsigned cap);
/* QEMU's size syntax: a number with an optional B/K/M/G/T/P/E suffix
 * (binary); @unit multiplies a number without suffix. 0 or -EINVAL. */
int pgt_attach__parse_size(const char *s, size_t len, uint64_t unit, uint64_t *out);

struct att_candidate {
	uint64_t start, end, offset, page_size;
	uint32_t flags;
	uint64_t dev, ino;
	char name[PGTOOL_MAPPING_NAME_LEN];
};

/* The mappings of @pm that are guest RAM by @rules / @sizes (see
 * struct pgt_attach_match), adjacent VMAs of one mapping joined.
 * Returns the number found (up to @cap kept), -EINVAL. */
int pgt_attach__select(const pgtool_procmap *pm, const char *rules, const uint64_t *sizes,
		       unsigned nsizes, struct att_candidate *out, unsigned cap);
/* The fd of this process that maps @c (its file), dup()ed, or -1. */
int pgt_attach__find_fd(const struct att_candidate *c);

/* ---- attach_render.c ---- */
/* The JSON document; @full adds the engine's pgt_stats_render() object.
 * Caller holds a->lock. Returns a malloc()ed string or NULL. */
char *pgt_attach__json(struct pgt_attach *a, bool full, size_t *len);
/* The Prometheus text. Caller holds a->lock. */
char *pgt_attach__prometheus(struct pgt_attach *a, size_t *len);

#endif /* PGTRACK_ATTACH_PVT_H */
