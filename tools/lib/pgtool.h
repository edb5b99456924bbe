/* SPDX-License-Identifier: MIT */
/*
 * The tools-side library (libpgtool, static, not installed): what pgtrack's
 * own tools need beyond the public API. Parsing of /proc/<pid>/smaps and
 * numa_maps for any process (pgtrack-numa, libpgtrack-attach) and the text
 * rendering of pgt_explain(). Same conventions as the public headers:
 * 0 or a count, -errno, nothing printed.
 */
#ifndef PGTOOL_H
#define PGTOOL_H

#include <stddef.h>
#include <stdint.h>

#include <pgtrack.h>

/* ---- Mappings of any process ---- */

typedef struct pgtool_procmap pgtool_procmap;

/** struct pgtool_mapping.flags */
enum pgt_mapping_flags {
	PGTOOL_MAP_READ = 1u << 0,
	PGTOOL_MAP_WRITE = 1u << 1,
	PGTOOL_MAP_EXEC = 1u << 2,
	PGTOOL_MAP_SHARED = 1u << 3,
	PGTOOL_MAP_ANON = 1u << 4,      /* no file (or shmem/memfd: see @name) */
	PGTOOL_MAP_HUGETLB = 1u << 5,   /* hugetlbfs / MAP_HUGETLB ("ht") */
	PGTOOL_MAP_LOCKED = 1u << 6,    /* mlock / MAP_LOCKED ("lo") */
	PGTOOL_MAP_THP = 1u << 7,       /* MADV_HUGEPAGE ("hg") */
	PGTOOL_MAP_NOHUGEPAGE = 1u << 8,/* MADV_NOHUGEPAGE ("nh") */
	PGTOOL_MAP_SPECIAL = 1u << 9,   /* [stack], [vdso], [vvar]... */
	PGTOOL_MAP_SMAPS = 1u << 14,    /* smaps fields are filled */
	PGTOOL_MAP_NUMA = 1u << 15,     /* numa_maps fields are filled */
};

#define PGTOOL_MAPPING_NAME_LEN 256
#define PGTOOL_MAPPING_POLICY_LEN 64

/**
 * struct pgtool_mapping - One mapping (VMA) of a process. Sizes in bytes.
 * @start, @end:  virtual address range.
 * @offset:       file offset.
 * @name:         path or pseudo-name ("[heap]", "/memfd:guest (deleted)"),
 *                truncated to the buffer; "" for anonymous memory.
 * @page_size:    KernelPageSize (smaps).
 * @rss:          resident; for hugetlb mappings the hugetlb pages.
 * @pss, @anon, @swap, @locked, @referenced: as in smaps.
 * @anon_huge:    AnonHugePages: resident in transparent hugepages.
 * @pmd_mapped:   ShmemPmdMapped + FilePmdMapped.
 * @hugetlb:      Shared_Hugetlb + Private_Hugetlb.
 * @policy:       NUMA policy from numa_maps ("default", "bind:0",
 *                "interleave:0-1", "prefer:1").
 * @nnodes:       entries used in @node_bytes (highest node + 1).
 * @node_bytes:   resident bytes per node from numa_maps.
 */
struct pgtool_mapping {
	uint64_t start;
	uint64_t end;
	uint64_t offset;
	uint32_t flags;
	uint32_t nnodes;
	char name[PGTOOL_MAPPING_NAME_LEN];
	uint64_t page_size;
	uint64_t rss;
	uint64_t pss;
	uint64_t anon;
	uint64_t anon_huge;
	uint64_t pmd_mapped;
	uint64_t hugetlb;
	uint64_t swap;
	uint64_t locked;
	uint64_t referenced;
	char policy[PGTOOL_MAPPING_POLICY_LEN];
	uint64_t node_bytes[PGT_MAX_NODES];
};

/**
 * pgtool_procmap_read() - Read /proc/@pid/smaps and /proc/@pid/numa_maps.
 * @pid:   process id, 0 for the caller.
 * @flags: reserved, 0.
 * @out:   receives the map; free it with pgtool_procmap_free().
 * Returns: 0; -EINVAL; -ESRCH (no such process); -EACCES/-EPERM (not
 * allowed to read it); -EBADMSG (the files do not parse); -EFBIG (over
 * 256 MiB of text); -ENOMEM. A kernel without NUMA has no numa_maps: the
 * map then has no PGTOOL_MAP_NUMA fields.
 */
int pgtool_procmap_read(int pid, uint32_t flags, pgtool_procmap **out);

/**
 * pgtool_procmap_parse() - The same from the texts of smaps (@smaps, @slen
 * bytes) and numa_maps (@nmaps, @nlen; NULL or 0 when absent). The texts are
 * untrusted: any bytes give a map or an error, never a crash. numa_maps lines
 * that match no smaps mapping are kept as mappings of their own.
 * Returns: 0, -EINVAL, -EBADMSG (a line that does not parse), -ENOMEM.
 */
int pgtool_procmap_parse(const char *smaps, size_t slen, const char *nmaps, size_t nlen,
		      pgtool_procmap **out);

/** pgtool_procmap_free() - Free a map. NULL is a no-op. */
void pgtool_procmap_free(pgtool_procmap *m);

/** pgtool_procmap_count() - Number of mappings (0 for NULL). */
size_t pgtool_procmap_count(const pgtool_procmap *m);

/**
 * pgtool_procmap_get() - The @i-th mapping, in address order; valid until the
 * map is freed. Returns: the mapping, or NULL when @i is out of range.
 */
const struct pgtool_mapping *pgtool_procmap_get(const pgtool_procmap *m, size_t i);

/**
 * pgtool_procmap_guess_guest() - The mappings that look like a VM's guest RAM:
 * writable, at least @min_bytes (0 means 64 MiB), and hugetlb-backed or
 * shared anonymous memory (memfd, shmem: what QEMU memory backends use);
 * when there is none, the largest private anonymous mappings of that size.
 * @idx: receives up to @cap mapping indices, ascending.
 * Returns: the number found (may exceed @cap), or -EINVAL.
 */
int pgtool_procmap_guess_guest(const pgtool_procmap *m, uint64_t min_bytes, size_t *idx, size_t cap);

/*
 * pgtool_numa_maps_line() - Parse one numa_maps line (without newline) into
 * @m: start address, policy, N<node>= counts (pages of kernelpagesize_kB).
 * Exposed for tests and the fuzz target. Returns: 0 or -EBADMSG.
 */
int pgtool_numa_maps_line(const char *line, size_t len, struct pgtool_mapping *m);

/* ---- Accounting text ---- */

/**
 * pgtool_explain_render() - pgt_explain() as text ("key  bytes  text\n" lines)
 * into @buf (always NUL-terminated when @len > 0).
 * Returns: the length the full text needs (as snprintf), or -EINVAL.
 */
int pgtool_explain_render(const struct pgt_account *guest, const struct pgt_host_usage *host,
		       char *buf, size_t len);

#endif /* PGTOOL_H */
