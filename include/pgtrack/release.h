/* SPDX-License-Identifier: MIT */
/*
 * pgtrack memory give-back: release (balloon inflate, free page reporting,
 * discard) at 4 KiB granularity also inside 2 MiB pages, and the pinned pages
 * that must never be released.
 *
 * Units: guest-physical addresses and lengths are bytes; "units" are 4 KiB
 * pieces (PGT_RELEASE_UNIT), the granularity guests report freed memory in,
 * whatever the backing page size. Conventions as in pgtrack.h.
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
 * memory, so the host sees the memory come back (RSS, HugePages_Free). In
 * memory the kernel may collapse into huge pages (THP: a MADV_HUGEPAGE
 * mapping, or THP "always"; for memfd/shmem, transparent_hugepage/
 * shmem_enabled), a 2 MiB range freed only in part is first marked
 * MADV_NOHUGEPAGE, so khugepaged does not fill the freed units again (a
 * later fault there maps 4 KiB); when its last released unit comes back
 * (pgt_reclaim(), or a touch seen as deflate) the range is MADV_HUGEPAGE
 * again. A mapping that was MADV_NOHUGEPAGE when registered is never
 * re-advised. Another process's mapping of the same shmem file is out of
 * reach: it must not be MADV_HUGEPAGE, or khugepaged may refill. Their
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
/* Pinned pages                                                        */
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

#ifdef __cplusplus
}
#endif
#endif /* PGTRACK_RELEASE_H */
