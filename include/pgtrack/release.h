/* SPDX-License-Identifier: MIT */
/*
 * pgtrack memory give-back: release (balloon inflate, free page reporting,
 * discard) at 4 KiB granularity also inside 2 MiB pages, pinned pages and the
 * safe balloon limit, memory targets with XenAPI semantics, accounting that
 * reconciles guest, process and cgroup views, zero pages and write ages.
 *
 * Units: guest-physical addresses and lengths are bytes; "units" are 4 KiB
 * pieces (PGT_RELEASE_UNIT), the granularity guests report freed memory in,
 * whatever the backing page size. Conventions as in pgtrack.h: 0 or a count,
 * or a negative errno; structs that may grow start with a size field.
 */
#ifndef PGTRACK_RELEASE_H
#define PGTRACK_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Release granularity in bytes. */
#define PGT_RELEASE_UNIT 4096ULL

/** Highest number of NUMA nodes the per-node arrays below hold. */
#define PGT_MAX_NODES 64

/* ------------------------------------------------------------------ */
/* Release                                                             */
/* ------------------------------------------------------------------ */

/** pgt_release() flags. */
enum pgt_release_flags {
	/*
	 * Units already released are not an error: they are counted in
	 * pgt_release_result.already (and freed again where that is cheap).
	 * Without it a range holding a released unit fails with -EALREADY.
	 */
	PGT_RELEASE_REPEAT_OK = 1u << 0,
	/*
	 * The guest never reuses a released 4 KiB piece of a large page without
	 * the hypervisor calling pgt_reclaim() first (virtio-balloon inflate
	 * semantics). Skips the check that every piece of a completed large
	 * page still reads as zero before the page is freed (see pgt_release()).
	 */
	PGT_RELEASE_TRUSTED = 1u << 1,
};

/** One guest-physical range, bytes; both multiples of PGT_RELEASE_UNIT. */
struct pgt_range {
	uint64_t gpa;
	uint64_t len;
};

/**
 * struct pgt_release_result - What a release did.
 * @size:         sizeof(struct pgt_release_result), set by the caller.
 * @released:     units newly marked released.
 * @already:      units that were released before (PGT_RELEASE_REPEAT_OK).
 * @pinned:       units refused because they are pinned (never released).
 * @first_pinned: guest-physical address of the first refused unit.
 * @reused:       units found written again when their large page was about
 *                to be freed: they are no longer released (the guest took
 *                them back without saying so) and the page stays.
 * @freed_bytes:  host memory returned by this call (whole backing pages).
 * @status:       optional, caller-owned array of one entry per range:
 *                receives 0, or -EBUSY when some unit of that range was pinned.
 */
struct pgt_release_result {
	uint32_t size;
	uint32_t reserved;
	uint64_t released;
	uint64_t already;
	uint64_t pinned;
	uint64_t first_pinned;
	uint64_t reused;
	uint64_t freed_bytes;
	int32_t *status;
};

/**
 * pgt_release() - The guest gave pages back: free them on the host.
 * @eng:   engine.
 * @gpa:   guest-physical start, a multiple of PGT_RELEASE_UNIT.
 * @len:   bytes, a non-zero multiple of PGT_RELEASE_UNIT; the range must lie
 *         inside one region.
 * @flags: enum pgt_release_flags.
 * @res:   optional result (@res->size set), may be NULL.
 *
 * Whole backing pages are freed at once: MADV_DONTNEED for private memory,
 * fallocate(PUNCH_HOLE) on the region's fd (or MADV_REMOVE) for shared
 * memory, so the host sees the memory come back (RSS, HugePages_Free). Their
 * touched, dirty (in every view) and zero state is cleared; the dirty
 * tracker is re-armed so a later write is reported again. A 4 KiB piece of a
 * larger page is zeroed (punched) and counted; when all pieces of the page
 * are released the page is freed. Unless PGT_RELEASE_TRUSTED, the page is
 * first checked to read as zero everywhere: a piece that was written again
 * is taken out of the released set (@res->reused) and the page stays.
 *
 * Pinned units are never released: they are skipped, counted in
 * @res->pinned and their range's @res->status entry is -EBUSY; the other
 * units of the range are released.
 *
 * Returns: units released (>= 0); -EINVAL (unaligned, empty, NULL engine),
 * -ERANGE (not inside one region), -EALREADY (a unit is released already and
 * no PGT_RELEASE_REPEAT_OK), or the error of the freeing syscall. On -EINVAL,
 * -ERANGE and -EALREADY nothing was changed or freed.
 */
int64_t pgt_release(pgt_engine *eng, uint64_t gpa, uint64_t len, uint32_t flags,
		    struct pgt_release_result *res);

/**
 * pgt_release_batch() - pgt_release() of @n ranges at once (a virtio-balloon
 * inflate buffer, a free page reporting batch). The ranges may be in any
 * order and in different regions but must not overlap each other: the whole
 * batch is checked before anything is freed, and a bad range (-EINVAL,
 * -ERANGE, -EALREADY; -EINVAL also for overlapping or repeated ranges)
 * fails the batch with nothing changed.
 * Returns: units released, or a negative errno.
 */
int64_t pgt_release_batch(pgt_engine *eng, const struct pgt_range *ranges, size_t n,
			  uint32_t flags, struct pgt_release_result *res);

/**
 * pgt_reclaim() - The guest takes released units back (balloon deflate).
 * They stop being released; pages that were freed come back zero-filled on
 * first access. Units that are not released are ignored.
 * Returns: units un-released, -EINVAL or -ERANGE.
 */
int64_t pgt_reclaim(pgt_engine *eng, uint64_t gpa, uint64_t len);

/**
 * pgt_release_rescan() - Notice releases that happened behind pgtrack's back
 * (madvise or punch-hole by another thread, userfaultfd REMOVE events):
 * pages recorded as touched (first-touch tracking) or announced by a REMOVE
 * event that are no longer resident become released. Also takes back pages
 * the guest touched again (deflate) into the counters.
 * Returns: pages newly found released, or a negative errno.
 */
int64_t pgt_release_rescan(pgt_region *r);

/**
 * pgt_released_test() - Whether the unit holding @gpa is released.
 * Returns: 1, 0, or -ERANGE.
 */
int pgt_released_test(pgt_engine *eng, uint64_t gpa);

/**
 * pgt_released_count() - Released units of @r (4 KiB each), pieces of
 * partly released large pages included.
 * Returns: the count or -EINVAL.
 */
int64_t pgt_released_count(const pgt_region *r);

#define PGT_PARTIAL_BUCKETS 8

/** A partly released large page. */
struct pgt_partial_page {
	uint64_t gpa;       /* of the large page */
	uint32_t released;  /* units released, 1 .. units-per-page - 1 */
	uint32_t pinned;    /* units pinned */
};

/**
 * struct pgt_partial_report - Partly released large pages of a region.
 * @size:        sizeof(struct pgt_partial_report), set by the caller.
 * @partial:     out: pages with some but not all units released.
 * @units:       out: released units inside them.
 * @units_per_page: out: units per backing page (512 for 2 MiB; 1 when the
 *               region has 4 KiB pages, and then the report is empty).
 * @hist:        out: pages by released fraction, bucket i holding fill
 *               in [i, i + 1) / PGT_PARTIAL_BUCKETS of the page.
 * @pages:       optional, caller-owned: receives up to @pages_cap pages,
 *               most released first (the cheapest to finish), ties in
 *               guest-physical order.
 * @npages:      out: entries written to @pages.
 */
struct pgt_partial_report {
	uint32_t size;
	uint32_t units_per_page;
	uint64_t partial;
	uint64_t units;
	uint64_t hist[PGT_PARTIAL_BUCKETS];
	struct pgt_partial_page *pages;
	size_t pages_cap;
	size_t npages;
};

/** pgt_release_partial() - Fill @rep. Returns 0 or -EINVAL. */
int pgt_release_partial(const pgt_region *r, struct pgt_partial_report *rep);

/* ------------------------------------------------------------------ */
/* Pinned pages and the balloon limit                                  */
/* ------------------------------------------------------------------ */

/**
 * pgt_pin() - Mark a guest-physical range pinned (DMA-mapped, device
 * pinned): its units are never released. Pins nest like DMA mappings: each
 * pgt_pin() is undone by one pgt_unpin() of the same range; a unit is pinned
 * while any pin covers it. Pinning a released unit takes it back first
 * (a device mapping populates it).
 * Returns: 0, -EINVAL (unaligned or empty), -ERANGE (not in one region),
 * -ENOMEM.
 */
int pgt_pin(pgt_engine *eng, uint64_t gpa, uint64_t len);

/**
 * pgt_unpin() - Remove one pin made by pgt_pin() of exactly this range.
 * Returns: 0, -EINVAL, -ERANGE, or -ENOENT when there is no such pin.
 */
int pgt_unpin(pgt_engine *eng, uint64_t gpa, uint64_t len);

/**
 * pgt_pinned_discover() - Find memory the kernel keeps pinned for us: locked
 * VMAs (mlock, MAP_LOCKED: the "lo" flag in /proc/self/smaps VmFlags)
 * inside regions. They replace the previous discovery's
 * pins (hypervisor pins are kept).
 * Returns: units pinned by discovery, or a negative errno.
 */
int64_t pgt_pinned_discover(pgt_engine *eng);

/** pgt_pinned_test() - 1 when the unit holding @gpa is pinned, 0, -ERANGE. */
int pgt_pinned_test(pgt_engine *eng, uint64_t gpa);

/** pgt_pinned_count() - Pinned units of @r, or -EINVAL. */
int64_t pgt_pinned_count(const pgt_region *r);

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

/* ------------------------------------------------------------------ */
/* Accounting and explanation                                          */
/* ------------------------------------------------------------------ */

/** Guest memory counters, bytes (partial_hugepages: a count). */
struct pgt_mem_counts {
	uint64_t configured;
	uint64_t touched;    /* first-touch tracking, else = resident */
	uint64_t resident;
	uint64_t dirty;      /* pending in any dirty view */
	uint64_t released;
	uint64_t pinned;
	uint64_t zero;       /* found zero by the last pgt_zero_scan() */
	uint64_t partial_hugepages;
	/* part of @released: 4 KiB pieces of large pages that are still
	 * resident (freed only when the whole large page is) */
	uint64_t released_partial;
};

/** pgt_account() flags. */
enum pgt_account_flags {
	/* Ask the kernel for the node of every resident page (move_pages)
	 * instead of using the region's binding; slow on big regions. */
	PGT_ACCOUNT_NUMA_EXACT = 1u << 0,
};

/**
 * struct pgt_account - Guest memory of a region or an engine.
 * @total:         all of it.
 * @nnodes:        entries used in @node (highest node seen + 1).
 * @node:          by NUMA node (the region's bound node; the only node on a
 *                 single-node host; the kernel's answer with
 *                 PGT_ACCOUNT_NUMA_EXACT).
 * @unknown_node:  memory whose node is unknown.
 * @resident_anon, @resident_shmem, @resident_hugetlb: @total.resident by
 *                 how the kernel accounts it (for pgt_explain()).
 * @metadata:      bytes pgtrack's release/pin/zero/age state uses.
 */
struct pgt_account {
	uint32_t size;
	uint32_t nnodes;
	struct pgt_mem_counts total;
	struct pgt_mem_counts unknown_node;
	uint64_t resident_anon;
	uint64_t resident_shmem;
	uint64_t resident_hugetlb;
	uint64_t metadata;
	struct pgt_mem_counts node[PGT_MAX_NODES];
};

/** pgt_account_region() - Account one region. Returns 0 or -errno. */
int pgt_account_region(pgt_region *r, uint32_t flags, struct pgt_account *out);

/** pgt_account_engine() - Sum over all regions of @eng. Returns 0 or -errno. */
int pgt_account_engine(pgt_engine *eng, uint32_t flags, struct pgt_account *out);

/**
 * struct pgt_host_usage - The host's view of this process, bytes.
 * From /proc/self/status: @rss (VmRSS) = @rss_anon + @rss_file +
 * @rss_shmem, @swap (VmSwap), @hugetlb (HugetlbPages, not part of VmRSS).
 * From /proc/meminfo: the default hugepage pool (@hp_*: pages, @hp_size bytes).
 * The cgroup: @cg_version 0 (none found), 1 or 2; @cg_path; @cg_usage
 * (v2 memory.current, v1 memory.usage_in_bytes), @cg_limit (UINT64_MAX:
 * none), and from memory.stat @cg_anon, @cg_file (page cache, shmem
 * included), @cg_shmem, @cg_file_mapped, @cg_kernel (v2 "kernel", else
 * slab + kernel stacks + page tables + sockets), @cg_hugetlb (v2
 * hugetlb.<size>.current when charged). @errors: bit 0 status, bit 1
 * meminfo, bit 2 cgroup unreadable.
 */
struct pgt_host_usage {
	uint32_t size;
	uint32_t errors;
	uint64_t rss;
	uint64_t rss_anon;
	uint64_t rss_file;
	uint64_t rss_shmem;
	uint64_t swap;
	uint64_t hugetlb;
	uint64_t hp_total;
	uint64_t hp_free;
	uint64_t hp_rsvd;
	uint64_t hp_size;
	int cg_version;
	char cg_path[256];
	uint64_t cg_usage;
	uint64_t cg_limit;
	uint64_t cg_anon;
	uint64_t cg_file;
	uint64_t cg_shmem;
	uint64_t cg_file_mapped;
	uint64_t cg_kernel;
	uint64_t cg_hugetlb;
};

/** pgt_host_usage() - Read the live values. Returns 0 or -EINVAL. */
int pgt_host_usage(struct pgt_host_usage *out);

/**
 * pgt_host_usage_root() - The same, reading /proc and /sys below @root (a
 * fixture tree; "" or NULL is the live system).
 * Returns: 0, -EINVAL, or -ENOENT when /proc/self/status is missing.
 */
int pgt_host_usage_root(const char *root, struct pgt_host_usage *out);

/** One line of an explanation: @bytes is signed (a difference). */
struct pgt_explain_line {
	char key[32];
	int64_t bytes;
	char text[160];
};

/**
 * pgt_explain() - Reconcile guest, process and cgroup memory line by line:
 * why RSS, cgroup usage and guest usage differ (guest memory in hugetlb is
 * in neither RSS nor the memory cgroup; the VMM's own heap and libraries are
 * in RSS but not guest memory; page cache and kernel memory are in the
 * cgroup but not RSS; released memory is in none of them...). Each equation
 * is closed by a remainder line, so the lines of one equation add up.
 * @guest: pgt_account_engine() result; @host: pgt_host_usage() result.
 * @lines: caller-owned, @cap entries (may be NULL with @cap 0).
 * Returns: the number of lines (may exceed @cap: only @cap are written), or
 * -EINVAL.
 */
int pgt_explain(const struct pgt_account *guest, const struct pgt_host_usage *host,
		struct pgt_explain_line *lines, size_t cap);

/* ------------------------------------------------------------------ */
/* Zero pages                                                          */
/* ------------------------------------------------------------------ */

/** pgt_zero_scan() flags. */
enum pgt_zero_flags {
	/* Release the zero units found, like ballooned ones (pinned excepted). */
	PGT_ZERO_RELEASE = 1u << 0,
	/*
	 * The caller guarantees the guest is paused for the call. Releasing
	 * needs it, or the region's quiesce callback: a write landing between
	 * the check and the free would be lost.
	 */
	PGT_ZERO_PAUSED = 1u << 1,
};

/** Result of pgt_zero_scan(), bytes. */
struct pgt_zero_result {
	uint32_t size;
	uint32_t reserved;
	uint64_t scanned;
	uint64_t zero;
	uint64_t released;
};

/**
 * pgt_zero_scan() - Check resident pages of @r for all-zero content (SIMD)
 * without faulting anything in, and record them as zero (pgt_account()).
 * With PGT_ZERO_RELEASE also release them (4 KiB units inside large pages,
 * completing pages as pgt_release() does).
 * Returns: zero bytes found, -EINVAL, or -EBUSY when releasing without the
 * guest paused (neither PGT_ZERO_PAUSED nor a quiesce callback).
 */
int64_t pgt_zero_scan(pgt_region *r, uint32_t flags, struct pgt_zero_result *res);

/* ------------------------------------------------------------------ */
/* Write and touch age                                                 */
/* ------------------------------------------------------------------ */

/**
 * pgt_age_start() - Start write-age tracking on a region with dirty
 * tracking: an internal dirty view that pgt_age_sample() harvests. It holds
 * 8 bytes per page. Call pgt_age_stop() before pgt_region_destroy().
 * Returns: 0, -EINVAL (no dirty tracking), -EALREADY, -ENOMEM.
 */
int pgt_age_start(pgt_region *r);

/** pgt_age_stop() - Stop it and free its state. Returns 0 or -EINVAL. */
int pgt_age_stop(pgt_region *r);

/**
 * pgt_age_sample() - One age epoch: harvest the pages written since the
 * previous sample and note when pages were first touched.
 * Returns: pages written in this epoch, or a negative errno.
 */
int64_t pgt_age_sample(pgt_region *r);

#define PGT_AGE_BUCKETS 16

/**
 * struct pgt_age_histogram - Pages by epochs since they were last written
 * (@write) and since they were first touched (@touch).
 * Bucket 0: age 0 (during the last epoch); bucket k (1..14): age in
 * [2^(k-1), 2^k); bucket 15: not written (touched) since tracking started.
 * @epoch: epochs sampled. @node: the region's node (-1 unknown) or, for the
 * engine sum, the node asked for.
 */
struct pgt_age_histogram {
	uint32_t size;
	int32_t node;
	uint64_t epoch;
	uint64_t pages;
	uint64_t write[PGT_AGE_BUCKETS];
	uint64_t touch[PGT_AGE_BUCKETS];
};

/** pgt_age_histogram() - Histogram of one region. Returns 0 or -EINVAL. */
int pgt_age_histogram(const pgt_region *r, struct pgt_age_histogram *h);

/**
 * pgt_age_histogram_node() - Sum over the regions of @eng on NUMA node
 * @node (-1: all regions) that track age.
 * Returns: the number of regions summed, or -EINVAL.
 */
int pgt_age_histogram_node(pgt_engine *eng, int node, struct pgt_age_histogram *h);

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_RELEASE_H */
