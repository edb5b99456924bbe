/* SPDX-License-Identifier: MIT */
/*
 * pgtrack accounting: what a VM's memory is and costs, per region, node and
 * engine, reconciled with the process's RSS and its cgroup (pgt_explain);
 * zero pages; write and touch ages. Bytes throughout; conventions as in
 * pgtrack.h.
 */
#ifndef PGTRACK_ACCOUNT_H
#define PGTRACK_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pgtrack/pgtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/** pgt_zero_pages() flags. */
enum pgt_zero_pages_flags {
	/* Report only resident pieces whose content is zero, not holes. */
	PGT_ZERO_PAGES_RESIDENT = 1u << 0,
};

/**
 * pgt_zero_pages() - Which 4 KiB pieces of guest range [@gpa, @gpa + @len)
 * of @r read as zero, for a migration stream that sends a marker instead.
 * Nothing is faulted in. @bitmap (KVM layout, bit i = the piece at
 * @gpa + i * 4 KiB, ceil(len / 256 KiB) words) is overwritten: set = zero.
 * Always 4 KiB pieces, also on 2 MiB pages. Zero are: holes of private
 * anonymous memory (anon, THP, MAP_HUGETLB) and of memfd/shmem files
 * (SEEK_DATA), pieces mapping the zero page (PAGEMAP_SCAN PAGE_IS_PFNZERO)
 * and resident pieces whose bytes are all zero (hugetlbfs pieces not
 * mapped here are read through the fd: a hole reads as zeros there without
 * allocating). Holes of private memory a uffd tracker write-protects carry
 * uffd-wp markers the kernel shows as swap entries: they are told from swap
 * (and reported) only with CAP_SYS_ADMIN, which reads the swap type in
 * /proc/self/pagemap. Never reported: swapped pieces, holes of shared
 * anonymous memory, of private file mappings and of private memory with a
 * page provider (their content is unknown without reading). A
 * piece may be written right after the call: the caller pauses the guest
 * or re-sends pieces the dirty log reports.
 * Returns: the number of zero pieces; -EINVAL (NULL @r, unknown flag,
 * @gpa or @len not 4 KiB multiples, NULL @bitmap with @len), -ERANGE
 * (range outside @r), -ENOMEM. @bitmap is untouched on an argument error
 * and zeroed on another error. With PGT_ZERO_PAGES_RESIDENT only pieces
 * holding memory of their own are reported (no holes, no zero-page maps).
 */
PGT_EXPERIMENTAL
int64_t pgt_zero_pages(pgt_region *r, uint64_t gpa, uint64_t len, unsigned long *bitmap,
		       uint32_t flags);

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
#endif /* PGTRACK_ACCOUNT_H */
