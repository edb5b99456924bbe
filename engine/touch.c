/* SPDX-License-Identifier: MIT */
/*
 * First-touch tracking: userfaultfd MISSING (every backing) and MINOR
 * (shared backings) faults are resolved here, and each page's first
 * population is recorded in r->touched and in a compact first-touch order
 * log.
 *
 * How a fault is resolved:
 *  - MINOR (the page is already in the page cache, written through another
 *    mapping or the fd): UFFDIO_CONTINUE maps it.
 *  - MISSING without a provider: UFFDIO_ZEROPAGE where the kernel offers it
 *    (anon, shmem), else a UFFDIO_COPY from a read-only zero buffer
 *    (hugetlbfs has no ZEROPAGE). An anonymous write fault also takes the
 *    COPY path: ZEROPAGE would map the shared zero page and the retried
 *    write would fault again to replace it.
 *  - MISSING with a provider: the provider fills a bounce buffer, which is
 *    copied in with UFFDIO_COPY; the provider returning 1 means "zero page".
 *
 * Dirty tracking on the same uffd (UFFDIO_REGISTER_MODE_WP): a read fault is
 * resolved with *_MODE_WP so the new page starts clean; ZEROPAGE has no WP
 * mode, and it refuses to overwrite the uffd-wp marker WP_UNPOPULATED leaves
 * on empty ptes (-EEXIST forever), so WP regions always use COPY. A write
 * fault is resolved without WP under WP-async (the page counts as written),
 * but with WP under synchronous WP tracking: the retried write then takes a
 * WP fault and reaches the dirty tracker through its own path instead of
 * being lost.
 *
 * A fault that cannot be resolved (provider error, no hugepage left) must
 * not leave the faulting thread blocked forever. In order of preference:
 * UFFDIO_POISON (the thread gets SIGBUS with BUS_MCEERR_AR at the page, as
 * for a hardware memory error); else tgkill(SIGBUS) to the faulting thread
 * when the kernel reports its id (UFFD_FEATURE_THREAD_ID): the signal ends
 * its interruptible uffd wait, si_code is SI_TKILL; if its handler returns,
 * the access faults again and the provider is asked again. Else (the fault
 * came from another process, e.g. process_vm_readv) the range is woken so
 * the access is retried: the failure repeats and is counted, it does not
 * hang silently.
 *
 * The touched bit is set (and the fault counted) before the resolving ioctl
 * wakes the vCPU, so once an access has completed pgt_touched_test() and the
 * stats report it. A page whose provider failed is not marked. If the fill
 * itself then fails (no hugepage left), the page stays marked although it
 * was never populated: the guest did touch it.
 *
 * Pages already populated when tracking starts (a registered mapping) never
 * fault; pgt__touch_init() marks them (PAGEMAP_SCAN present/swapped, else a
 * pagemap read) and puts them first in the order, ascending. Without MINOR
 * registration, shared pages already in the page cache would map silently,
 * so they are marked at init too (mincore).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"


/* ------------------------------------------------------------------ */
/* First-touch order log                                               */
/* ------------------------------------------------------------------ */

/*
 * The order is a sequence of page indices, stored as tokens in fixed-size
 * chunks. A token encodes a run of consecutive pages [first, first + n):
 *   varint(zigzag(first - prev) << 1 | (n > 1)) [varint(n - 2) if n > 1]
 * where prev is the last page of the previous token. Sequential touching
 * costs a few bytes per run, not per page; a random page in a 1 GiB region
 * of 4 KiB pages costs 3 bytes. The run being extended is kept open (not
 * yet encoded) so appending never rewrites bytes.
 *
 * Each chunk records the sequence index of its first entry and the delta
 * base it starts from: a chunk is a checkpoint, and pgt_touch_order(start)
 * binary-searches the chunk and decodes at most one chunk to reach @start.
 */
#define TLOG_CHUNK_BYTES 1024
#define TLOG_TOKEN_MAX 20 /* two 10-byte varints */

struct tlog_chunk {
	uint64_t seq;  /* sequence index of the first entry */
	uint64_t prev; /* delta base for the first token */
	uint32_t used; /* bytes of data[] in use */
	uint8_t data[];
};

#define TLOG_DATA_BYTES (TLOG_CHUNK_BYTES - offsetof(struct tlog_chunk, data))

struct tlog {
	pthread_mutex_t lock;
	struct tlog_chunk **chunks;
	size_t nchunks;
	size_t cap;
	uint64_t encoded;   /* entries held by the chunks */
	uint64_t last;      /* last page encoded */
	uint64_t run_first; /* open run, not yet encoded */
	uint64_t run_len;
	bool truncated;     /* allocation failed: the log is a prefix */
};

static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Decoding only reads bytes this file wrote, so no bounds checks beyond @end. */
static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift = 0;

	while (p < end && shift < 64) {
		uint8_t b = *p++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return p;
		}
		shift += 7;
	}
	return NULL;
}

static int tlog_init(struct tlog *l)
{
	memset(l, 0, sizeof(*l));
	return -pthread_mutex_init(&l->lock, NULL);
}

static void tlog_fini(struct tlog *l)
{
	for (size_t i = 0; i < l->nchunks; i++)
		free(l->chunks[i]);
	free(l->chunks);
	pthread_mutex_destroy(&l->lock);
}

static struct tlog_chunk *tlog_new_chunk(struct tlog *l)
{
	struct tlog_chunk *c;

	if (l->nchunks == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 16;
		struct tlog_chunk **nc = realloc(l->chunks, ncap * sizeof(*nc));

		if (!nc)
			return NULL;
		l->chunks = nc;
		l->cap = ncap;
	}
	c = malloc(TLOG_CHUNK_BYTES);
	if (!c)
		return NULL;
	c->seq = l->encoded;
	c->prev = l->last;
	c->used = 0;
	l->chunks[l->nchunks++] = c;
	return c;
}

/* Encode the open run. Caller holds l->lock. */
static int tlog_flush_run(struct tlog *l)
{
	struct tlog_chunk *c = l->nchunks ? l->chunks[l->nchunks - 1] : NULL;
	uint8_t tok[TLOG_TOKEN_MAX];
	uint64_t head;
	size_t n;

	if (!l->run_len)
		return 0;
	/* Page indices stay far below 2^62, so the shift cannot lose bits. */
	head = zigzag((int64_t)(l->run_first - l->last)) << 1 | (l->run_len > 1);
	n = put_varint(tok, head);
	if (l->run_len > 1)
		n += put_varint(tok + n, l->run_len - 2);
	if (!c || c->used + n > TLOG_DATA_BYTES) {
		c = tlog_new_chunk(l);
		if (!c)
			return -ENOMEM;
	}
	memcpy(c->data + c->used, tok, n);
	c->used += (uint32_t)n;
	l->encoded += l->run_len;
	l->last = l->run_first + l->run_len - 1;
	l->run_len = 0;
	return 0;
}

static int tlog_append(struct tlog *l, uint64_t page)
{
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	if (l->truncated) {
		ret = -ENOMEM;
	} else if (l->run_len && page == l->run_first + l->run_len) {
		l->run_len++;
	} else {
		ret = tlog_flush_run(l);
		if (ret) {
			l->truncated = true;
		} else {
			l->run_first = page;
			l->run_len = 1;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* Copy entries [start, start + cap) of the sequence. Caller holds l->lock. */
static size_t tlog_read(const struct tlog *l, uint64_t start, uint64_t *out, size_t cap)
{
	size_t got = 0;
	size_t lo, hi;

	if (start < l->encoded) {
		/* last chunk whose seq <= start */
		lo = 0;
		hi = l->nchunks;
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;

			if (l->chunks[mid]->seq <= start)
				lo = mid;
			else
				hi = mid;
		}
		for (size_t ci = lo; ci < l->nchunks && got < cap; ci++) {
			const struct tlog_chunk *c = l->chunks[ci];
			const uint8_t *p = c->data, *end = c->data + c->used;
			uint64_t seq = c->seq, prev = c->prev;

			while (p < end && got < cap) {
				uint64_t head, n = 1, first;

				p = get_varint(p, end, &head);
				if (!p)
					return got; /* cannot happen: we wrote it */
				if (head & 1) {
					p = get_varint(p, end, &n);
					if (!p)
						return got;
					n += 2;
				}
				first = prev + (uint64_t)unzigzag(head >> 1);
				prev = first + n - 1;
				if (seq + n <= start) {
					seq += n;
					continue;
				}
				for (uint64_t k = start > seq ? start - seq : 0; k < n && got < cap; k++)
					out[got++] = first + k;
				seq += n;
			}
		}
	}
	if (got < cap && l->run_len) {
		uint64_t pos = start + got; /* sequence index of the next entry */

		if (pos >= l->encoded) {
			for (uint64_t k = pos - l->encoded; k < l->run_len && got < cap; k++)
				out[got++] = l->run_first + k;
		}
	}
	return got;
}

/* ------------------------------------------------------------------ */
/* Per-region state                                                    */
/* ------------------------------------------------------------------ */

struct touch_state {
	struct tlog log;
	uint64_t base_page;  /* system page size: unit of -EEXIST skips */
	uint64_t exist_unit; /* granularity the kernel fills at */
	bool hugetlb;
	/* read-only anonymous mapping: reads as zeros, costs no memory */
	void *zero;
	/* bounce buffers for providers, one per concurrently faulting handler */
	pthread_mutex_t buf_lock;
	void *free_bufs;     /* singly linked through the first word */
	unsigned nbufs;
	_Atomic unsigned err_logged;
	uint64_t asked;      /* uffd features this tracker asked for */
};

/*
 * Features in force for the tracker. UFFDIO_API answers with every feature
 * the kernel has, not the ones the context was opened with, so
 * r->uffd_features may hold more than was negotiated; intersect with what
 * was asked for.
 */
static inline uint64_t touch_feat(const struct pgt_region *r, const struct touch_state *ts)
{
	return r->uffd_features & ts->asked;
}

/* Log the first few errors of a region, then one in 1024: a failing
 * provider should not flood the log from the fault path. */
static bool touch_should_log(struct touch_state *ts)
{
	unsigned n = atomic_fetch_add(&ts->err_logged, 1);

	return n < 8 || (n & 1023) == 0;
}

uint64_t pgt__touch_features(const struct pgt_region *r)
{
	uint64_t avail = r->eng->probe.uffd_features;
	uint64_t f;

	/* MISSING on shmem/hugetlbfs needs these on old kernels only; they
	 * are informational today, so ask for whatever is offered. */
	f = avail & (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS);
	if (r->shared)
		f |= avail & (r->hugetlb ? UFFD_FEATURE_MINOR_HUGETLBFS
						   : UFFD_FEATURE_MINOR_SHMEM);
	f |= avail & (UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID);
	return f;
}

uint64_t pgt__touch_mode(const struct pgt_region *r)
{
	uint64_t avail = r->eng->probe.uffd_features;
	uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;

	if (r->shared &&
	    (avail & (r->hugetlb ? UFFD_FEATURE_MINOR_HUGETLBFS
					   : UFFD_FEATURE_MINOR_SHMEM)))
		mode |= UFFDIO_REGISTER_MODE_MINOR;
	return mode;
}

/* Record the first touch of @page. Returns true when it was the first. */
static bool touch_mark(struct pgt_region *r, struct touch_state *ts, uint64_t page)
{
	if (pgt__bitmap_test_and_set(&r->touched, page))
		return false;
	atomic_fetch_add(&r->ntouched, 1);
	if (tlog_append(&ts->log, page) && touch_should_log(ts))
		pgt__log(r->eng, PGT_LOG_WARN,
			 "region %s: out of memory for the first-touch order; "
			 "it is truncated from page %llu on",
			 r->name ? r->name : "?", (unsigned long long)page);
	return true;
}

static void touch_mark_range(struct pgt_region *r, struct touch_state *ts,
			     uint64_t start, uint64_t end)
{
	uint64_t first, last;

	if (pgt__host_pages(r, start, end, &first, &last))
		for (uint64_t p = first; p < last; p++)
			touch_mark(r, ts, p);
}

/*
 * Pages populated before registration never fault: mark them. PAGEMAP_SCAN
 * reports present/swapped runs directly; older kernels get a pagemap read.
 */
struct mark_ctx {
	struct pgt_region *r;
	struct touch_state *ts;
};

static int mark_present(void *arg, uint64_t start, uint64_t end, const uint64_t *pm)
{
	struct mark_ctx *c = arg;

	(void)pm;
	touch_mark_range(c->r, c->ts, start, end);
	return 0;
}

static int touch_scan_present(struct pgt_region *r, struct touch_state *ts)
{
	struct mark_ctx c = { r, ts };
	uint64_t start = (uint64_t)(uintptr_t)r->addr;

	return pgt__present_walk(start, start + r->length, true, true, mark_present, &c);
}

/*
 * Without MINOR registration a shared page already in the page cache maps
 * silently on first access: we would never see it. Count such pages as
 * touched now (mincore reports page-cache residency for shmem).
 */
static void touch_scan_cached(struct pgt_region *r, struct touch_state *ts)
{
	uint64_t bp = pgt_hal_page_size();
	unsigned char vec[4096];

	for (uint64_t off = 0; off < r->length;) {
		uint64_t n = (r->length - off) / bp;

		if (n > sizeof(vec))
			n = sizeof(vec);
		if (mincore(r->addr + off, n * bp, vec))
			return;
		for (uint64_t i = 0; i < n; i++)
			if (vec[i] & 1)
				touch_mark(r, ts, (off + i * bp) >> r->page_shift);
		off += n * bp;
	}
}

/*
 * The source of zero fills. For 4 KiB pages a read-only mapping of the
 * shared zero page costs nothing. For 2 MiB hugetlb fills the kernel copies
 * 2 MiB per fault, and copying from the zero page (4 KiB mapped 512 times)
 * measured 150-158 us against 106-116 us from real zeroed memory on a THP:
 * there it pays to spend 2 MiB on a real, 2 MiB-aligned zero buffer.
 * Read-only either way. Returns NULL on failure.
 */
static void *zero_source(uint64_t size, bool huge)
{
	uint8_t *p, *a;

	if (!huge) {
		p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		/* Map the zero page in now, so the first COPY from it does not
		 * take the kernel's slow "source not present" retry. */
		(void)madvise(p, size, MADV_POPULATE_READ);
		return p;
	}
	p = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (p + 2 * size > a + size)
		munmap(a + size, (size_t)(p + 2 * size - (a + size)));
	(void)madvise(a, size, MADV_HUGEPAGE);
	memset(a, 0, size); /* populate: real zeroed memory, a THP where possible */
	if (mprotect(a, size, PROT_READ)) {
		munmap(a, size);
		return NULL;
	}
	return a;
}

size_t pgt__touch_bytes(const struct pgt_region *r)
{
	struct touch_state *ts = r->tpriv;
	size_t n;

	if (!ts)
		return 0;
	pthread_mutex_lock(&ts->log.lock);
	n = sizeof(*ts) + ts->log.nchunks * TLOG_CHUNK_BYTES + ts->log.cap * sizeof(void *);
	pthread_mutex_unlock(&ts->log.lock);
	pthread_mutex_lock(&ts->buf_lock);
	n += (size_t)ts->nbufs * r->page_size;
	pthread_mutex_unlock(&ts->buf_lock);
	return n;
}

static void touch_state_free(struct touch_state *ts, uint64_t page_size)
{
	void *b;

	if (!ts)
		return;
	while ((b = ts->free_bufs)) {
		ts->free_bufs = *(void **)b;
		munmap(b, page_size);
	}
	if (ts->zero)
		munmap(ts->zero, page_size);
	pthread_mutex_destroy(&ts->buf_lock);
	tlog_fini(&ts->log);
	free(ts);
}

int pgt__touch_init(struct pgt_region *r)
{
	struct touch_state *ts;
	int ret;

	if (!r || r->tpriv || !r->npages)
		return -EINVAL;
	ts = calloc(1, sizeof(*ts));
	if (!ts)
		return -ENOMEM;
	ret = tlog_init(&ts->log);
	if (ret) {
		free(ts);
		return ret;
	}
	ret = -pthread_mutex_init(&ts->buf_lock, NULL);
	if (ret) {
		tlog_fini(&ts->log);
		free(ts);
		return ret;
	}
	ts->base_page = pgt_hal_page_size();
	ts->asked = pgt__touch_features(r);
	/* hugetlb registrations offer no ZEROPAGE; the ioctl list also
	 * catches large pages whatever the VMA said */
	ts->hugetlb = r->hugetlb || (r->page_size > ts->base_page &&
				     !(r->uffd_ioctls & (1ULL << _UFFDIO_ZEROPAGE)));
	ts->exist_unit = ts->hugetlb ? r->page_size : ts->base_page;

	ts->zero = zero_source(r->page_size, ts->hugetlb);
	if (!ts->zero) {
		touch_state_free(ts, r->page_size);
		return -ENOMEM;
	}

	ret = pgt__bitmap_init(&r->touched, r->npages);
	if (ret) {
		touch_state_free(ts, r->page_size);
		return ret;
	}
	atomic_store(&r->ntouched, 0);

	ret = touch_scan_present(r, ts);
	if (ret)
		pgt__log(r->eng, PGT_LOG_WARN,
			 "region %s: cannot scan for pages present before tracking (%s); "
			 "they are not counted as touched",
			 r->name ? r->name : "?", strerror(-ret));
	if (r->shared && !(pgt__touch_mode(r) & UFFDIO_REGISTER_MODE_MINOR))
		touch_scan_cached(r, ts);
	r->tpriv = ts;
	return 0;
}

void pgt__touch_fini(struct pgt_region *r)
{
	if (!r || !r->tpriv)
		return;
	touch_state_free(r->tpriv, r->page_size);
	r->tpriv = NULL;
	pgt__bitmap_fini(&r->touched);
}

/* ------------------------------------------------------------------ */
/* Fault resolution                                                    */
/* ------------------------------------------------------------------ */

enum fill_op { FILL_COPY, FILL_ZERO, FILL_CONTINUE };

/*
 * One ioctl; returns 0 when the whole range was done, else -errno with
 * *done set to the bytes done before the error. @wp: map protected;
 * @dontwake: leave the faulting thread asleep (the caller wakes it).
 */
static int fill_once(struct pgt_region *r, enum fill_op op, uint64_t dst, uint64_t len,
		     const void *src, bool wp, bool dontwake, uint64_t *done)
{
	int64_t res;
	int ret;

	*done = 0;
	switch (op) {
	case FILL_COPY: {
		struct uffdio_copy c = {
			.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len,
			.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) |
				(dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0),
		};

		ret = ioctl(r->uffd, UFFDIO_COPY, &c);
		res = c.copy;
		break;
	}
	case FILL_ZERO: {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

		ret = ioctl(r->uffd, UFFDIO_ZEROPAGE, &z);
		res = z.zeropage;
		break;
	}
	case FILL_CONTINUE:
	default: {
		struct uffdio_continue c = {
			.range = { .start = dst, .len = len },
			.mode = (wp ? UFFDIO_CONTINUE_MODE_WP : 0) |
				(dontwake ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0),
		};

		ret = ioctl(r->uffd, UFFDIO_CONTINUE, &c);
		res = c.mapped;
		break;
	}
	}
	if (ret == 0) {
		*done = len;
		return 0;
	}
	ret = -errno;
	/* A partial fill returns -EAGAIN with the bytes done in the result
	 * field; a failure without progress stores -errno there. */
	if (res > 0)
		*done = (uint64_t)res;
	return ret;
}

static void uffd_wake(struct pgt_region *r, uint64_t start, uint64_t len)
{
	struct uffdio_range w = { .start = start, .len = len };

	(void)ioctl(r->uffd, UFFDIO_WAKE, &w);
}

/* Wake [start, start + len) after a DONTWAKE fill, protecting it first
 * when @protect (see fill_range). */
static void protect_and_wake(struct pgt_region *r, uint64_t start, uint64_t len, bool protect)
{
	if (protect) {
		uint64_t first = (start - (uintptr_t)r->addr) >> r->page_shift;
		uint64_t n = (len + r->page_size - 1) >> r->page_shift;
		int ret = pgt__uffd_wp(r, first, n, true, false);

		if (ret) {
			pgt__log(r->eng, PGT_LOG_ERR,
				 "region %s: protecting a filled page: %s; it stays dirty",
				 r->name, strerror(-ret));
			/* a fault-driven tracker's harvests retry the protection
			 * of pending pages; WP-async's scan protects it anyway */
			if (r->dops && r->dops->uses_pending)
				pgt__bitmap_set_range(&r->pending, first, n);
		}
		pgt__dirty_mark(r, first, n);
	}
	uffd_wake(r, start, len);
}

/*
 * hugetlb: UFFDIO_COPY answers -EEXIST, not -ENOMEM, when the pool has no
 * page left (seen on 6.18: the allocation failed, the page table exists).
 * Taken at face value the fill "succeeds", the thread is woken, faults
 * again, and loops forever. True when the page is not mapped and the pool
 * of its size is empty: then the fill failed for want of memory.
 */
static bool hugetlb_pool_empty(const struct pgt_region *r, const struct touch_state *ts,
			       uint64_t addr)
{
	unsigned char v = 0;
	char path[96], buf[32];
	ssize_t n;
	int fd;

	if (mincore((void *)(uintptr_t)addr, ts->base_page, &v) == 0 && (v & 1))
		return false;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages",
		 (unsigned long long)(r->page_size >> 10));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strtoul(buf, NULL, 10) == 0;
}

/*
 * Fill [dst, dst + len). Pieces that already exist (another handler raced
 * us, or a concurrent population) are skipped: -EEXIST is success, and the
 * range is woken at the end since nobody else may wake a waiter there.
 * -EAGAIN without progress (mappings changing under a non-cooperative event)
 * is retried a few times and then returned: the caller wakes the faulting
 * thread so it faults again once the event has been consumed.
 *
 * @wp asks for the new page write-protected. A kernel without the op's WP
 * mode (UFFDIO_CONTINUE_MODE_WP is 6.6+, the probe says) gets the page
 * filled without waking anyone, protected with UFFDIO_WRITEPROTECT, then
 * woken. Between the fill and the protection another thread may write the
 * mapped page unseen, so the page is also reported dirty once. Never a
 * region-wide fallback to unprotected fills: that loses every later write.
 */
static int fill_range(struct pgt_region *r, struct touch_state *ts, enum fill_op op,
		      uint64_t dst, uint64_t len, const uint8_t *src, bool wp)
{
	uint64_t pos = 0;
	bool skipped = false, protect_after = false;
	unsigned again = 0;

	if (wp && op == FILL_CONTINUE && !r->eng->probe.uffd_continue_wp) {
		wp = false;
		protect_after = true;
	}
	while (pos < len) {
		uint64_t done;
		int ret = fill_once(r, op, dst + pos, len - pos, src ? src + pos : NULL,
				    wp, protect_after, &done);

		pos += done;
		if (!ret)
			break;
		if (done)
			continue;
		if (ret == -EEXIST && op == FILL_COPY && ts->hugetlb &&
		    hugetlb_pool_empty(r, ts, dst + pos)) {
			ret = -ENOMEM;
		} else if (ret == -EEXIST) {
			/* Skip one kernel-sized piece, keeping alignment. */
			uint64_t next = (dst + pos + ts->exist_unit) & ~(ts->exist_unit - 1);

			pos = next - dst;
			skipped = true;
			continue;
		}
		if (ret == -EINVAL && wp && !protect_after) {
			/* this op's WP mode is refused here: protect afterwards */
			if (touch_should_log(ts))
				pgt__log(r->eng, PGT_LOG_WARN,
					 "region %s: %s with write-protect refused (EINVAL); "
					 "protecting after the fill", r->name ? r->name : "?",
					 op == FILL_COPY ? "UFFDIO_COPY" : "UFFDIO_CONTINUE");
			wp = false;
			protect_after = true;
			continue;
		}
		if (ret == -EAGAIN && ++again <= 3) {
			sched_yield();
			continue;
		}
		if ((skipped || protect_after) && pos)
			protect_and_wake(r, dst, pos < len ? pos : len, protect_after);
		return ret;
	}
	if (skipped || protect_after)
		protect_and_wake(r, dst, len, protect_after);
	return 0;
}

static void *buf_get(struct pgt_region *r, struct touch_state *ts)
{
	void *b;

	pthread_mutex_lock(&ts->buf_lock);
	b = ts->free_bufs;
	if (b)
		ts->free_bufs = *(void **)b;
	pthread_mutex_unlock(&ts->buf_lock);
	if (b)
		return b;
	/* First fault on this handler thread's slot: allocate once, reuse. */
	b = mmap(NULL, r->page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return NULL;
	if (r->page_size > ts->base_page)
		(void)madvise(b, r->page_size, MADV_HUGEPAGE);
	pthread_mutex_lock(&ts->buf_lock);
	ts->nbufs++;
	pthread_mutex_unlock(&ts->buf_lock);
	return b;
}

static void buf_put(struct touch_state *ts, void *b)
{
	pthread_mutex_lock(&ts->buf_lock);
	*(void **)b = ts->free_bufs;
	ts->free_bufs = b;
	pthread_mutex_unlock(&ts->buf_lock);
}

/*
 * The page cannot be provided: make sure the faulting thread does not wait
 * forever (see the comment at the top of the file).
 */
static void touch_fail(struct pgt_region *r, struct touch_state *ts,
		       const struct uffd_msg *msg, uint64_t start)
{
	uint32_t tid = 0;

	if (touch_feat(r, ts) & UFFD_FEATURE_POISON) {
		struct uffdio_poison p = {
			.range = { .start = start, .len = r->page_size },
		};

		if (ioctl(r->uffd, UFFDIO_POISON, &p) == 0)
			return;
		/* -EEXIST: a uffd-wp marker (WP_UNPOPULATED) or a racing fill;
		 * poison refuses to overwrite either. Fall through. */
	}
	if (touch_feat(r, ts) & UFFD_FEATURE_THREAD_ID)
		tid = msg->arg.pagefault.feat.ptid;
	if (tid && syscall(SYS_tgkill, getpid(), (pid_t)tid, SIGBUS) == 0)
		return;
	uffd_wake(r, start, r->page_size);
}

/*
 * Mark the page and count the fault before the resolving ioctl wakes the
 * vCPU, so a thread that has completed its access sees both (the counter is
 * taken back if the resolution fails).
 */
static void touch_begin(struct pgt_region *r, struct touch_state *ts, uint64_t page)
{
	touch_mark(r, ts, page);
	atomic_fetch_add(&r->touch_faults, 1);
}

/* One fault being resolved. */
struct fault {
	struct pgt_region *r;
	struct touch_state *ts;
	const struct uffd_msg *msg;
	uint64_t page, start;
	bool write;
	bool wp_regd;       /* the region is registered for uffd-WP too */
	bool wp;            /* fill the new page write-protected */
	const char *what;   /* the resolving ioctl, for the log */
	bool counted;       /* touch_begin() ran: the fault is counted */
	bool answered;      /* already failed and answered (provider error) */
};

static void fault_begin(struct fault *f)
{
	touch_begin(f->r, f->ts, f->page);
	f->counted = true;
}

/* MINOR: the page is in the page cache; map it. */
static int resolve_minor(struct fault *f)
{
	struct pgt_region *r = f->r;
	int ret;

	f->what = "continue";
	fault_begin(f);
	ret = fill_range(r, f->ts, FILL_CONTINUE, f->start, r->page_size, NULL, f->wp);
	if (ret == -EFAULT) {
		/* The page left the page cache (punched) since the fault:
		 * the retried access becomes a MISSING fault. */
		uffd_wake(r, f->start, r->page_size);
		ret = 0;
	}
	return ret;
}

/* MISSING with a provider: its contents, copied in. A provider error
 * fails the access at once (f->answered). */
static int resolve_provided(struct fault *f)
{
	struct pgt_region *r = f->r;
	struct touch_state *ts = f->ts;
	uint64_t gpa = r->gpa + (f->page << r->page_shift);
	void *buf = buf_get(r, ts);
	int pr;

	f->what = "copy";
	if (!buf)
		return -ENOMEM;
	pr = r->provider(r->provider_arg, gpa, buf, r->page_size);
	if (pr < 0 || pr > 1) {
		buf_put(ts, buf);
		atomic_fetch_add(&r->touch_errors, 1);
		if (touch_should_log(ts))
			pgt__log(r->eng, PGT_LOG_ERR,
				 "region %s: page provider failed for gpa 0x%llx (%d); "
				 "failing the access",
				 r->name ? r->name : "?", (unsigned long long)gpa, pr);
		touch_fail(r, ts, f->msg, f->start);
		f->answered = true;
		return pr < 0 ? pr : -EINVAL;
	}
	fault_begin(f);
	pr = fill_range(r, ts, FILL_COPY, f->start, r->page_size, pr == 0 ? buf : ts->zero, f->wp);
	buf_put(ts, buf);
	return pr;
}

/* MISSING without a provider: zeros (see the top comment for which ioctl). */
static int resolve_zero(struct fault *f)
{
	struct pgt_region *r = f->r;
	bool zp = (r->uffd_ioctls & (1ULL << _UFFDIO_ZEROPAGE)) && !f->wp_regd &&
		  !(f->write && !r->shared);

	fault_begin(f);
	f->what = zp ? "zeropage" : "copy";
	if (zp)
		return fill_range(r, f->ts, FILL_ZERO, f->start, r->page_size, NULL, false);
	return fill_range(r, f->ts, FILL_COPY, f->start, r->page_size, f->ts->zero, f->wp);
}

/* The fill failed with @ret: never leave the faulting thread waiting. */
static int fault_failed(struct fault *f, int ret)
{
	struct pgt_region *r = f->r;

	if (f->answered)
		return ret;
	if (f->counted)
		atomic_fetch_sub(&r->touch_faults, 1);
	if (ret == -EAGAIN) {
		/* Let the access fault again after the pending mapping change. */
		pgt__log(r->eng, PGT_LOG_DEBUG, "region %s: page %llu (%s): mappings changing, "
			 "retrying the access", r->name ? r->name : "?",
			 (unsigned long long)f->page, f->what);
		uffd_wake(r, f->start, r->page_size);
		return ret;
	}
	atomic_fetch_add(&r->touch_errors, 1);
	if (touch_should_log(f->ts))
		pgt__log(r->eng, PGT_LOG_ERR,
			 "region %s: cannot resolve fault at page %llu (%s): %s; "
			 "failing the access",
			 r->name ? r->name : "?", (unsigned long long)f->page, f->what,
			 strerror(-ret));
	touch_fail(r, f->ts, f->msg, f->start);
	return ret;
}

int pgt__touch_fault(struct pgt_region *r, const struct uffd_msg *msg)
{
	struct fault f = { .r = r, .ts = r ? r->tpriv : NULL, .msg = msg };
	uint64_t base, addr, flags;
	int ret = 0;

	if (!f.ts || !msg || msg->event != UFFD_EVENT_PAGEFAULT)
		return -EINVAL;
	base = (uint64_t)(uintptr_t)r->addr;
	addr = msg->arg.pagefault.address;
	flags = msg->arg.pagefault.flags;
	if (addr < base || addr >= base + r->length) {
		if (touch_should_log(f.ts))
			pgt__log(r->eng, PGT_LOG_ERR,
				 "region %s: fault at 0x%llx outside the region",
				 r->name ? r->name : "?", (unsigned long long)addr);
		return -EFAULT;
	}
	f.page = (addr - base) >> r->page_shift;
	f.start = base + (f.page << r->page_shift);
	f.write = flags & UFFD_PAGEFAULT_FLAG_WRITE;
	/* remote first touches: the faulting vCPU's node vs the page's */
	if (touch_feat(r, f.ts) & UFFD_FEATURE_THREAD_ID)
		pgt__numa_note_touch(r->numa, f.page, (int)msg->arg.pagefault.feat.ptid);
	f.wp_regd = r->dops && (r->dops->uffd_mode & UFFDIO_REGISTER_MODE_WP);
	/* Keep the new page write-protected unless the write must count as
	 * done now (WP-async: an unprotected page is a written page). */
	f.wp = f.wp_regd && !(f.write && (r->dops->uffd_features & UFFD_FEATURE_WP_ASYNC));

	if (flags & UFFD_PAGEFAULT_FLAG_MINOR)
		ret = resolve_minor(&f);
	else if (r->provider)
		ret = resolve_provided(&f);
	else
		ret = resolve_zero(&f);
	return ret ? fault_failed(&f, ret) : 0;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

PGT_EXPORT int64_t pgt_touched_count(const pgt_region *r)
{
	if (!r || !pgt__touch_on(r))
		return -EINVAL;
	return (int64_t)atomic_load((_Atomic uint64_t *)&r->ntouched);
}

PGT_EXPORT int pgt_touched_test(const pgt_region *r, uint64_t gpa)
{
	if (!r || !pgt__touch_on(r))
		return -EINVAL;
	if (gpa < r->gpa || gpa - r->gpa >= r->length)
		return -ERANGE;
	return pgt__bitmap_test(&r->touched, (gpa - r->gpa) >> r->page_shift);
}

PGT_EXPORT int64_t pgt_touched_bitmap(const pgt_region *r, unsigned long *bitmap, size_t words)
{
	if (!r || !pgt__touch_on(r) || !bitmap)
		return -EINVAL;
	return pgt__bitmap_export_kvm(&r->touched, bitmap, words);
}

PGT_EXPORT int64_t pgt_touch_order(const pgt_region *r, uint64_t start, uint64_t *pages,
				   size_t cap)
{
	struct touch_state *ts;
	size_t got;

	if (!r || !pgt__touch_on(r) || (!pages && cap))
		return -EINVAL;
	if (!cap)
		return 0;
	ts = r->tpriv;
	pthread_mutex_lock(&ts->log.lock);
	got = tlog_read(&ts->log, start, pages, cap);
	pthread_mutex_unlock(&ts->log.lock);
	return (int64_t)got;
}
