/* SPDX-License-Identifier: MIT */
/*
 * pgtrack memory targets: the safe balloon size derived from pinned pages
 * (per NUMA node), a VM's memory limits with XenAPI semantics, the target
 * controller that drives a balloon until the guest is there, and the
 * hypervisor overhead arithmetic. Bytes throughout; conventions as in
 * pgtrack.h.
 */
#ifndef PGTRACK_TARGET_H
#define PGTRACK_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Balloon limit                                                       */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_balloon_params - Inputs of the safe balloon size.
 * @size:              sizeof(struct pgt_balloon_params).
 * @reserve_bytes:     memory the guest must keep (kernel, reservations,
 *                     crash kernel...), never ballooned.
 * @headroom_bytes:    extra safety margin.
 * @headroom_permille: extra margin as a fraction of configured memory.
 */
struct pgt_balloon_params {
	uint32_t size;
	uint32_t headroom_permille;
	uint64_t reserve_bytes;
	uint64_t headroom_bytes;
};

/**
 * struct pgt_balloon_limit - The largest balloon that is safe now.
 * @configured:  bytes of guest memory in all regions.
 * @released:    bytes released already.
 * @pinned:      bytes that can never be freed: pinned units, and for large
 *               pages the whole page around any pinned unit (releasing its
 *               other pieces would free nothing on the host).
 * @kept:        reserve plus headroom.
 * @limit:       bytes the balloon may still take: configured - released -
 *               pinned - kept, at least 0.
 * @nnodes:      entries used in @node_limit (highest node id + 1).
 * @node_limit:  @limit split by NUMA node (reserve and headroom are taken
 *               from the nodes in proportion to their reclaimable memory):
 *               where a controller can take memory from.
 * @unknown_node: part of @limit in regions with no known node.
 */
struct pgt_balloon_limit {
	uint32_t size;
	uint32_t nnodes;
	uint64_t configured;
	uint64_t released;
	uint64_t pinned;
	uint64_t kept;
	uint64_t limit;
	uint64_t unknown_node;
	uint64_t node_limit[PGT_MAX_NODES];
};

/**
 * pgt_balloon_limit() - Compute the safe balloon from pinned pages, the
 * guest's reservations and a headroom, in total and per NUMA node.
 * @p may be NULL (no reserve, no headroom).
 * Returns: 0 or -EINVAL.
 */
int pgt_balloon_limit(pgt_engine *eng, const struct pgt_balloon_params *p,
		      struct pgt_balloon_limit *out);

/* ------------------------------------------------------------------ */
/* Memory targets (XenAPI semantics)                                   */
/* ------------------------------------------------------------------ */

/**
 * struct pgt_memory_limits - A VM's memory settings, bytes.
 * Valid when static_min <= dynamic_min <= target <= dynamic_max <=
 * static_max and static_max > 0. @overhead is what the hypervisor itself
 * needs for the VM (device model, shadow page tables...), on top of guest
 * memory.
 */
struct pgt_memory_limits {
	uint32_t size;
	uint32_t reserved;
	uint64_t static_min;
	uint64_t dynamic_min;
	uint64_t target;
	uint64_t dynamic_max;
	uint64_t static_max;
	uint64_t overhead;
};

/**
 * pgt_limits_check() - Validate @l.
 * @why: optional buffer receiving the reason (NUL-terminated) on failure,
 *       e.g. "dynamic_min (512 MiB) > target (256 MiB)".
 * Returns: 0 or -EINVAL.
 */
int pgt_limits_check(const struct pgt_memory_limits *l, char *why, size_t whylen);

typedef struct pgt_target pgt_target;

/**
 * typedef pgt_balloon_fn - Ask the guest to change its balloon.
 * @arg:   balloon_arg of the config.
 * @pages: > 0: give back that many more 4 KiB units (inflate); < 0: it may
 *         take back -@pages units (deflate).
 * The guest answers asynchronously: given-back pages arrive through
 * pgt_release(), taken-back ones through pgt_reclaim() (or by touching them).
 * Returns 0 or a negative errno (recorded in the target status).
 * Called from pgt_target_set() and pgt_target_wait() in the caller's thread,
 * never with pgtrack locks held.
 */
typedef int (*pgt_balloon_fn)(void *arg, int64_t pages);

/**
 * struct pgt_target_config - A memory target controller.
 * @size:        sizeof(struct pgt_target_config).
 * @limits:      initial settings (checked with pgt_limits_check()).
 * @balloon:     balloon callback (required).
 * @balloon_arg: passed to @balloon.
 * @safety:      reserve and headroom for pgt_balloon_limit(); may be zero.
 * @retry_ns:    re-ask the guest for what is still missing after this long
 *               without progress (0: 100 ms).
 * @tolerance:   the target counts as reached when the guest is within this
 *               many bytes of it, either side (0: one 4 KiB unit below).
 *               Guests that also free pages through free page reporting
 *               move the figure all the time: give them a tolerance.
 *
 * Progress, for the re-ask, means the guest came closer to the target;
 * released memory moving away from it (or back and forth) is not progress.
 */
struct pgt_target_config {
	uint32_t size;
	uint32_t flags;
	struct pgt_memory_limits limits;
	pgt_balloon_fn balloon;
	void *balloon_arg;
	struct pgt_balloon_params safety;
	uint64_t retry_ns;
	uint64_t tolerance;
};

/**
 * pgt_target_open() - Create a target controller over all regions of @eng
 * (the VM's guest memory: its size is what regions hold minus what is
 * released). The caller owns it; free with pgt_target_close().
 * Returns: 0, -EINVAL (bad config or limits), -ENOMEM.
 */
int pgt_target_open(pgt_engine *eng, const struct pgt_target_config *cfg, pgt_target **out);

/** pgt_target_close() - Free @t. NULL is a no-op. */
void pgt_target_close(pgt_target *t);

/**
 * pgt_target_set() - Set a new target on the live VM and ask the balloon to
 * reach it. @target must lie in [dynamic_min, dynamic_max]; a target needing
 * a balloon larger than pgt_balloon_limit() allows is refused.
 * Returns: 0; -EINVAL (outside the dynamic range); -ENOSPC (not safely
 * reachable: pinned, reserved memory); or the balloon callback's error.
 * On -EINVAL and -ENOSPC the previous target stays.
 */
int pgt_target_set(pgt_target *t, uint64_t target);

/**
 * pgt_target_set_limits() - Change the dynamic range and target of the live
 * VM (static_min/static_max and overhead may not change while it runs:
 * -EBUSY). The target is then driven as with pgt_target_set().
 * Returns: 0, -EINVAL, -EBUSY, -ENOSPC or the balloon's error.
 */
int pgt_target_set_limits(pgt_target *t, const struct pgt_memory_limits *l);

/**
 * pgt_target_wait() - Wait until the guest reaches the target, re-asking
 * the balloon for what is missing when it makes no progress for retry_ns.
 * @timeout_ns: 0 checks once.
 * Returns: 0 when reached; -ETIMEDOUT (with a non-zero timeout the guest did
 * not cooperate in time: the cooperative flag becomes false, until a later
 * wait sees the target reached); -EINVAL.
 */
int pgt_target_wait(pgt_target *t, uint64_t timeout_ns);

/**
 * struct pgt_target_status - State of a target controller.
 * @guest:        bytes the guest holds now (configured - released).
 * @target:       current target.
 * @missing:      bytes still to give back (> 0) or to take back (< 0).
 * @reached:      @guest has reached @target.
 * @cooperative:  the guest reached its last target before the last wait
 *                timed out (true until a wait times out).
 * @balloon_calls, @balloon_errors: callback statistics; @last_error is the
 *                last callback error (0 if none).
 * @set_ns:       CLOCK_MONOTONIC time the target was last set.
 * @reached_ns:   time it was last reached (0: not yet).
 */
struct pgt_target_status {
	uint32_t size;
	int32_t last_error;
	uint64_t guest;
	uint64_t target;
	int64_t missing;
	bool reached;
	bool cooperative;
	uint64_t balloon_calls;
	uint64_t balloon_errors;
	uint64_t set_ns;
	uint64_t reached_ns;
	struct pgt_memory_limits limits;
};

/** pgt_target_status() - Fill @st (@st->size set). Returns 0 or -EINVAL. */
int pgt_target_status(pgt_target *t, struct pgt_target_status *st);

/**
 * struct pgt_overhead_params - Inputs of pgt_compute_overhead().
 * @size:            sizeof(struct pgt_overhead_params).
 * @page_size:       backing page size (4 KiB or 2 MiB).
 * @track:           enum pgt_track bits the region will use.
 * @dirty_views:     dirty views that will be open.
 * @dirty_method:    enum pgt_dirty_method (sync and mprotect keep a pending
 *                   bitmap); AUTO counts as uffd-async.
 * @age:             write-age tracking will be on.
 * @hv_fixed:        hypervisor's declared overhead, bytes per VM.
 * @hv_per_gib:      hypervisor's declared overhead, bytes per GiB of guest.
 */
struct pgt_overhead_params {
	uint32_t size;
	uint32_t track;
	uint64_t page_size;
	uint32_t dirty_views;
	int32_t dirty_method;
	bool age;
	uint64_t hv_fixed;
	uint64_t hv_per_gib;
};

/**
 * pgt_compute_overhead() - Host memory a guest of @guest_bytes costs beyond
 * its own memory: pgtrack's metadata at worst (every bitmap, every large
 * page partly released) plus the hypervisor's declared overhead.
 * Returns: 0 or -EINVAL; *@overhead receives bytes.
 */
int pgt_compute_overhead(const struct pgt_overhead_params *p, uint64_t guest_bytes,
			 uint64_t *overhead);

/**
 * pgt_maximise_memory() - The largest guest (a multiple of the page size)
 * whose memory plus overhead fits @host_bytes.
 * Returns: 0, -EINVAL, or -ENOSPC when not even one page fits.
 */
int pgt_maximise_memory(const struct pgt_overhead_params *p, uint64_t host_bytes,
			uint64_t *guest_bytes);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_TARGET_H */
