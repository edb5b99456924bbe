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
#include <stdio.h>

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
	PGTOOL_MAP_UFFD = 1u << 10,     /* registered with a userfaultfd ("um", "uw", "ui") */
	PGTOOL_MAP_SMAPS = 1u << 14,    /* smaps fields are filled */
	PGTOOL_MAP_NUMA = 1u << 15,     /* numa_maps fields are filled */
};

#define PGTOOL_MAPPING_NAME_LEN 256
#define PGTOOL_MAPPING_POLICY_LEN 64

/**
 * struct pgtool_mapping - One mapping (VMA) of a process. Sizes in bytes.
 * @start, @end:  virtual address range.
 * @offset:       file offset.
 * @dev_major, @dev_minor, @inode: the backing file (0 for anonymous memory);
 *                compare with fstat() of a descriptor (major()/minor() of
 *                st_dev, st_ino) to find the fd a mapping came from.
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
	uint32_t dev_major;
	uint32_t dev_minor;
	uint64_t inode;
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

/* ---- HTTP endpoint (libmicrohttpd) ---- */

typedef struct pgtool_http pgtool_http;

/**
 * struct pgtool_http_reply - What a request handler answers.
 * @status: HTTP status code (200, 404, 503...).
 * @type:   Content-Type, a static string.
 * @body:   malloc()ed body; the server frees it. NULL is an error (500).
 * @len:    bytes of @body.
 */
struct pgtool_http_reply {
	unsigned status;
	const char *type;
	char *body;
	size_t len;
};

/**
 * typedef pgtool_http_fn - Answer a GET or HEAD of @path (e.g. "/metrics").
 * Runs on the server's thread. Returns 0 with @r filled, or non-zero for a
 * 500 without a body.
 */
typedef int (*pgtool_http_fn)(void *arg, const char *path, struct pgtool_http_reply *r);

/**
 * pgtool_http_start() - Serve @fn on 127.0.0.1:@port (0: any free port),
 * from a thread of libmicrohttpd. Only GET and HEAD are answered.
 * @bound: receives the port bound (may be NULL).
 * @err:   receives a one-line reason on failure ("... is already in use").
 * Returns: 0; -EINVAL; -EADDRINUSE and other bind/listen errors; -EOPNOTSUPP
 * when built without libmicrohttpd; -ENOMEM, -EIO.
 */
int pgtool_http_start(int port, pgtool_http_fn fn, void *arg, pgtool_http **out, int *bound,
		      char *err, size_t errlen);

/** pgtool_http_stop() - Stop serving and free. NULL is a no-op. */
void pgtool_http_stop(pgtool_http *h);

/**
 * pgtool_prom_label() - Write @s as a Prometheus label value (without the
 * quotes): backslash, quote and line feed escaped, other control and
 * non-ASCII bytes as '?'.
 */
void pgtool_prom_label(FILE *f, const char *s);

/** pgtool_prom_family() - The "# HELP" and "# TYPE" lines of a family. */
void pgtool_prom_family(FILE *f, const char *name, const char *type, const char *help);

/* ---- State of libpgtrack-attach in another process ---- */

/*
 * libpgtrack-attach (tools/attach) writes what it tracks inside a process
 * (a QEMU) to <dir>/attach-<pid>.json, schema PGTOOL_ATTACH_SCHEMA
 * (docs/attach.md), every age epoch. <dir> is the process's PGT_ATTACH_DIR,
 * else /run/pgtrack for root, else $XDG_RUNTIME_DIR/pgtrack, else
 * /tmp/pgtrack-<uid>.
 * These functions find and read it for other tools (pgtrack-numa --pid).
 */
#define PGTOOL_ATTACH_SCHEMA "pgtrack-attach/1"
#define PGTOOL_ATTACH_MAX_REGIONS 16
#define PGTOOL_ATTACH_WINDOWS 16
#define PGTOOL_ATTACH_STATE_MAX (1u << 20)

/**
 * struct pgtool_attach_region - One guest RAM mapping tracked by the attach
 * library. Bytes throughout; -1 in a signed field: not known.
 * @dirty_rate:   bytes written per second over the last 1, 10 and 60 s
 *                (unique pages per sampling interval, summed).
 * @window_s, @written_bytes: memory written within the last @window_s[i]
 *                seconds, @nwindows entries, ascending (from the write-age
 *                histogram: powers of two of the age epoch).
 * @discarded_bytes: what the VMM discarded in the range (madvise
 *                DONTNEED/REMOVE, punch-hole), as seen at its calls.
 * @node_bytes:   resident bytes per host NUMA node (@nnodes entries).
 */
struct pgtool_attach_region {
	char name[64];
	char mapping[PGTOOL_MAPPING_NAME_LEN];
	char backing[16];
	char dirty_method[16];
	uint64_t start;
	uint64_t end;
	uint64_t page_size;
	uint64_t dirty_bytes_total;
	double dirty_rate[3];
	int64_t touched_bytes;
	int64_t resident_bytes;
	int64_t released_bytes;
	uint64_t discarded_bytes;
	uint64_t reclaimed_bytes;
	unsigned nwindows;
	double window_s[PGTOOL_ATTACH_WINDOWS];
	uint64_t written_bytes[PGTOOL_ATTACH_WINDOWS];
	unsigned nnodes;
	uint64_t node_bytes[PGT_MAX_NODES];
};

/**
 * struct pgtool_attach_state - The document as read.
 * @time:     when it was written (seconds since the epoch).
 * @state:    "searching", "attached", "waiting", "stepped-aside", "failed".
 * @message:  the latest thing worth telling (why it waits, stepped aside...).
 * @http_port: the /metrics port, 0 when none.
 */
struct pgtool_attach_state {
	int pid;
	uint64_t starttime;
	double time;
	char state[24];
	char message[256];
	int http_port;
	unsigned nregions;
	struct pgtool_attach_region region[PGTOOL_ATTACH_MAX_REGIONS];
};

/**
 * pgtool_attach_state_parse() - Parse the @len bytes at @text (untrusted:
 * another process wrote them). Unknown members are ignored, members of the
 * wrong type are errors; more than PGTOOL_ATTACH_MAX_REGIONS regions keep
 * the first ones.
 * Returns: 0; -EBADMSG (not JSON, wrong schema or types); -EINVAL.
 */
int pgtool_attach_state_parse(const char *text, size_t len, struct pgtool_attach_state *out);

/**
 * pgtool_attach_dir() - Candidate @i (0, 1, 2...: by preference, the list
 * above) for the directory the attach library of a process running as
 * @uid, with PGT_ATTACH_DIR=@attach_dir and XDG_RUNTIME_DIR=@xdg (NULL or
 * "": unset), writes its state to. The library takes the first it can use.
 * Returns: the length written, or -ENOENT past the last candidate, -ENOBUFS.
 */
int pgtool_attach_dir(unsigned i, unsigned uid, const char *attach_dir, const char *xdg,
		      char *buf, size_t len);

/**
 * pgtool_attach_state_read() - Find and read the state file of process
 * @pid (another process, or 0 for the caller). The file must name @pid and
 * the process start time /proc/@pid/stat gives, so a file left by an
 * earlier process with the same id is not taken.
 * Returns: 0; -ENOENT (the process has no attach library writing state);
 * -ESTALE (a file for an earlier process with this id); -EBADMSG; -ESRCH;
 * -EACCES; -ENOMEM.
 */
int pgtool_attach_state_read(int pid, struct pgtool_attach_state *out);

/** pgtool_proc_starttime() - Field 22 of /proc/@pid/stat (0: self). 0 or -errno. */
int pgtool_proc_starttime(int pid, uint64_t *out);

#endif /* PGTOOL_H */
