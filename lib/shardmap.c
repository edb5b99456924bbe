/* SPDX-License-Identifier: MIT */
/*
 * Sharded page bitmaps: one struct pgt_bitmap per shard of a region, each
 * allocated on its node, harvested by a worker of that node.
 *
 * Lock-free merge. Shard boundaries are multiples of 64 pages, so in the
 * KVM-layout output every unsigned long word belongs to exactly one shard and
 * workers write their words without coordination. Runs need a place in one
 * array: each shard first counts its runs (and whether its first and last
 * pages are set), the workers meet at a barrier, each computes its slice of
 * the array from those counts (a run crossing a boundary is written once, by
 * the shard where it starts, and the next shard hands over its length as a
 * carry), then takes its bits straight into its slice. The caller adds the
 * carries afterwards: O(shards), no copy of the runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hal/hal.h"
#include "lib/bits.h"
#include "lib/shardmap.h"


/* The layout pgt__bitmap_init makes, in memory from the seam. */
static int shard_alloc(struct pgt_shardmap *m, struct pgt_shard *s)
{
	uint64_t nwords = (s->npages + 63) / 64;
	size_t ngroups = (size_t)((nwords + PGT_BM_GROUP_WORDS - 1) / PGT_BM_GROUP_WORDS);
	size_t wbytes = (size_t)pgt__round_up((size_t)nwords * 8, 64);
	size_t sbytes = (size_t)pgt__round_up((ngroups + 63) / 64 * 8, 64);
	size_t bytes = (size_t)pgt__round_up(wbytes + sbytes, (size_t)pgt_hal_page_size());
	void *mem;

	if (s->node < 0)
		return pgt__bitmap_init(&s->bm, s->npages);
	if (s->npages > (1ULL << 40))
		return -ENOMEM;
	mem = m->ops->alloc(m->ops->arg, bytes, s->node);
	if (!mem)
		return -ENOMEM;
	s->mem = mem;
	s->bytes = bytes;
	s->bm = (struct pgt_bitmap){
		.nbits = s->npages,
		.nwords = (size_t)nwords,
		.nsummary = ngroups,
		.words = mem,
		.summary = (_Atomic uint64_t *)((char *)mem + wbytes),
	};
	return 0;
}

static void shard_free(struct pgt_shardmap *m, struct pgt_shard *s)
{
	if (s->mem)
		m->ops->free(m->ops->arg, s->mem, s->bytes);
	else
		pgt__bitmap_fini(&s->bm);
	s->mem = NULL;
	memset(&s->bm, 0, sizeof(s->bm));
}

int pgt__shardmap_init_geom(struct pgt_shardmap *m, uint64_t nbits,
			    const struct pgt_shard_geom *g, unsigned n,
			    const struct pgt_numa_ops *ops, struct pgt_workers *workers)
{
	uint64_t next = 0;
	int ret = 0;

	memset(m, 0, sizeof(*m));
	if (!nbits || !n || !g)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		/* contiguous, 64-aligned, covering [0, nbits) */
		if (g[i].first != next || !g[i].npages || (g[i].first % 64))
			return -EINVAL;
		next += g[i].npages;
	}
	if (next != nbits)
		return -EINVAL;
	m->s = calloc(n, sizeof(*m->s));
	if (!m->s)
		return -ENOMEM;
	m->nbits = nbits;
	m->ops = ops ? ops : &pgt__node_plain_ops;
	m->workers = workers;
	m->parallel_min_bits = PGT_SHARD_PARALLEL_BITS;
	for (unsigned i = 0; i < n; i++) {
		struct pgt_shard *s = &m->s[i];

		s->first = g[i].first;
		s->npages = g[i].npages;
		s->node = g[i].node;
		s->worker = g[i].worker;
		ret = shard_alloc(m, s);
		if (ret)
			break;
		m->n++;
	}
	if (ret)
		pgt__shardmap_fini(m);
	return ret;
}

void pgt__shardmap_fini(struct pgt_shardmap *m)
{
	if (!m->s)
		return;
	for (unsigned i = 0; i < m->n; i++) {
		if (m->s[i].ctr)
			atomic_fetch_sub_explicit(&m->s[i].ctr->meta_bytes,
						  pgt__bitmap_bytes(&m->s[i].bm),
						  memory_order_relaxed);
		shard_free(m, &m->s[i]);
	}
	free(m->s);
	memset(m, 0, sizeof(*m));
}

size_t pgt__shardmap_bytes(const struct pgt_shardmap *m)
{
	size_t b = m->n * sizeof(*m->s);

	for (unsigned i = 0; i < m->n; i++)
		b += m->s[i].mem ? m->s[i].bytes : pgt__bitmap_bytes(&m->s[i].bm);
	return b;
}

/* ---- range operations, split at shard boundaries ---- */

typedef void (*range_fn)(struct pgt_bitmap *b, uint64_t first, uint64_t n);

static void for_range(struct pgt_shardmap *m, uint64_t first, uint64_t n, range_fn fn)
{
	if (first >= m->nbits)
		return;
	if (n > m->nbits - first)
		n = m->nbits - first;
	while (n) {
		struct pgt_shard *s = pgt__shardmap_find(m, first);
		uint64_t off = first - s->first;
		uint64_t k = s->npages - off < n ? s->npages - off : n;

		fn(&s->bm, off, k);
		first += k;
		n -= k;
	}
}

void pgt__shardmap_set_range(struct pgt_shardmap *m, uint64_t first, uint64_t n)
{
	for_range(m, first, n, pgt__bitmap_set_range);
}

void pgt__shardmap_clear_range(struct pgt_shardmap *m, uint64_t first, uint64_t n)
{
	for_range(m, first, n, pgt__bitmap_clear_range);
}

void pgt__shardmap_zero(struct pgt_shardmap *m)
{
	for (unsigned i = 0; i < m->n; i++)
		pgt__bitmap_zero(&m->s[i].bm);
}

uint64_t pgt__shardmap_popcount(const struct pgt_shardmap *m)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < m->n; i++)
		n += pgt__bitmap_popcount(&m->s[i].bm);
	return n;
}

struct clip {
	uint64_t lo, hi, n;
};

static int clip_run(void *arg, uint64_t first, uint64_t n)
{
	struct clip *c = arg;
	uint64_t a = first > c->lo ? first : c->lo;
	uint64_t b = first + n < c->hi ? first + n : c->hi;

	if (a < b)
		c->n += b - a;
	return first >= c->hi; /* past the range: stop */
}

uint64_t pgt__shardmap_count_range(const struct pgt_shardmap *m, uint64_t first, uint64_t n)
{
	uint64_t total = 0;

	if (first >= m->nbits)
		return 0;
	if (n > m->nbits - first)
		n = m->nbits - first;
	for (unsigned i = 0; i < m->n; i++) {
		const struct pgt_shard *s = &m->s[i];
		struct clip c;

		if (s->first + s->npages <= first || s->first >= first + n)
			continue;
		if (first <= s->first && first + n >= s->first + s->npages) {
			total += pgt__bitmap_popcount(&s->bm);
			continue;
		}
		c = (struct clip){ first > s->first ? first - s->first : 0,
				   first + n - s->first, 0 };
		pgt__bitmap_for_each_run(&s->bm, clip_run, &c);
		total += c.n;
	}
	return total;
}

static bool last_set(const struct pgt_shard *s)
{
	return pgt__bitmap_test(&s->bm, s->npages - 1);
}

uint64_t pgt__shardmap_count_runs(const struct pgt_shardmap *m)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < m->n; i++) {
		n += pgt__bitmap_count_runs(&m->s[i].bm);
		if (i && last_set(&m->s[i - 1]) && pgt__bitmap_test(&m->s[i].bm, 0))
			n--;
	}
	return n;
}

struct joined {
	pgt_bitmap_run_fn fn;
	void *arg;
	uint64_t base;
	uint64_t first, n;  /* pending run, global */
};

static int join_run(void *arg, uint64_t first, uint64_t n)
{
	struct joined *j = arg;
	int ret = 0;

	first += j->base;
	if (j->n && j->first + j->n == first) {
		j->n += n;
		return 0;
	}
	if (j->n)
		ret = j->fn(j->arg, j->first, j->n);
	j->first = first;
	j->n = n;
	return ret;
}

int pgt__shardmap_for_each_run(const struct pgt_shardmap *m, pgt_bitmap_run_fn fn, void *arg)
{
	struct joined j = { fn, arg, 0, 0, 0 };
	int ret;

	for (unsigned i = 0; i < m->n; i++) {
		j.base = m->s[i].first;
		ret = pgt__bitmap_for_each_run(&m->s[i].bm, join_run, &j);
		if (ret)
			return ret;
	}
	return j.n ? fn(arg, j.first, j.n) : 0;
}

uint64_t pgt__shardmap_or_kvm(struct pgt_shardmap *m, const unsigned long *src, uint64_t nbits)
{
	uint64_t n = 0;

	if (nbits > m->nbits)
		nbits = m->nbits;
	for (unsigned i = 0; i < m->n && m->s[i].first < nbits; i++) {
		struct pgt_shard *s = &m->s[i];
		uint64_t k = nbits - s->first < s->npages ? nbits - s->first : s->npages;

		n += pgt__bitmap_or_kvm(&s->bm, src + s->first / PGT_BITS_PER_LONG, k);
	}
	return n;
}

int64_t pgt__shardmap_export_kvm(const struct pgt_shardmap *m, unsigned long *out, size_t words)
{
	int64_t n = 0;

	if (words < (m->nbits + PGT_BITS_PER_LONG - 1) / PGT_BITS_PER_LONG)
		return -ENOBUFS;
	for (unsigned i = 0; i < m->n; i++) {
		const struct pgt_shard *s = &m->s[i];
		int64_t k = pgt__bitmap_export_kvm(&s->bm, out + s->first / PGT_BITS_PER_LONG,
						   words - s->first / PGT_BITS_PER_LONG);

		if (k < 0)
			return k;
		n += k;
	}
	return n;
}

bool pgt__shardmap_validate(const struct pgt_shardmap *m, const char **reason)
{
	uint64_t next = 0;

	for (unsigned i = 0; i < m->n; i++) {
		const struct pgt_shard *s = &m->s[i];

		if (s->first != next || s->first % 64 || s->bm.nbits != s->npages) {
			if (reason)
				*reason = "shard geometry";
			return false;
		}
		if (!pgt__bitmap_validate(&s->bm, reason))
			return false;
		next += s->npages;
	}
	if (next != m->nbits) {
		if (reason)
			*reason = "shards do not cover the map";
		return false;
	}
	return true;
}

/* ---- parallel get-and-clear ---- */

struct take_job {
	struct pgt_shardmap *m;
	struct pgt_shard_out *o;
	unsigned nworkers;          /* 0: inline */
	struct pgt_barrier bar;
	/* per shard */
	uint64_t *cnt;              /* runs counted */
	uint8_t *edge;              /* bit 0: first page set, bit 1: last page set */
	uint64_t *carry;            /* joined first run's length */
	uint64_t *taken;
	uint64_t *nruns_seen;       /* runs seen by the take (no runs array) */
	uint64_t *used;             /* runs written to each shard's slice */
	_Atomic bool overflow;      /* a setter broke the exclusive-use rule */
};

/* Per shard, on the worker's stack; the hot fields first. */
struct shard_ctx {
	unsigned long *bitmap;
	struct pgt_bitmap *bm;      /* the shard's bits, to put runs back */
	struct pgt_run *runs;
	uint64_t gpa;               /* of the shard's page 0 */
	uint64_t base;              /* the shard's first page */
	unsigned shift;
	bool first_done;
	bool skip_first;
	size_t slot;                /* next run index in runs */
	size_t slot_end;            /* end of this shard's slice */
	uint64_t nruns;
	uint64_t last_end;          /* shard-relative end of the last run */
	uint64_t carry;
	bool starts;                /* first run started at page 0 */
	bool overflow;
};

static inline void out_bits(unsigned long *bm, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t w = first / PGT_BITS_PER_LONG, b = first % PGT_BITS_PER_LONG;
		uint64_t k = PGT_BITS_PER_LONG - b < n ? PGT_BITS_PER_LONG - b : n;

		bm[w] |= k == PGT_BITS_PER_LONG ? ~0UL : ((1UL << k) - 1) << b;
		first += k;
		n -= k;
	}
}

/* The first run of a shard: it may continue the previous shard's last. */
static bool first_run(struct shard_ctx *c, uint64_t first, uint64_t n)
{
	c->first_done = true;
	c->starts = first == 0;
	if (c->skip_first) {
		c->carry = n;
		return true;
	}
	return false;
}

/* Runs wanted: each run goes to this shard's slice of the array. */
static int take_run(void *arg, uint64_t first, uint64_t n)
{
	struct shard_ctx *c = arg;

	if (__builtin_expect(!c->first_done, 0) && first_run(c, first, n))
		goto bits;
	if (__builtin_expect(c->slot >= c->slot_end, 0)) {
		/* more runs than counted: keep them for the next take */
		pgt__bitmap_set_range(c->bm, first, n);
		c->overflow = true;
		return 0;
	}
	c->runs[c->slot++] = (struct pgt_run){ c->gpa + (first << c->shift), n };
bits:
	if (c->bitmap)
		out_bits(c->bitmap, c->base + first, n);
	return 0;
}

/* Bitmap only: runs are counted, and where they end, to join them later. */
static int take_bits(void *arg, uint64_t first, uint64_t n)
{
	struct shard_ctx *c = arg;

	if (__builtin_expect(!c->first_done, 0))
		first_run(c, first, n);
	c->nruns++;
	c->last_end = first + n;
	if (c->bitmap)
		out_bits(c->bitmap, c->base + first, n);
	return 0;
}

static bool is_mine(const struct take_job *j, unsigned shard, unsigned w)
{
	const struct pgt_shard *s = &j->m->s[shard];
	unsigned owner;

	if (!j->nworkers)
		return true;
	owner = s->worker >= 0 ? (unsigned)s->worker % j->nworkers : shard % j->nworkers;
	return owner == w;
}

/* Slice of shard @k in o->runs, and whether its first run joins the previous. */
static size_t slot_of(const struct take_job *j, unsigned k, bool *join, size_t *total)
{
	size_t off = 0, mine = 0;

	for (unsigned i = 0; i < j->m->n; i++) {
		bool jn = i && (j->edge[i - 1] & 2) && (j->edge[i] & 1);

		if (i == k) {
			mine = off;
			*join = jn;
		}
		off += j->cnt[i] - (jn ? 1 : 0);
	}
	if (total)
		*total = off;
	return mine;
}

static void take_worker(void *arg, unsigned w)
{
	struct take_job *j = arg;
	struct pgt_shardmap *m = j->m;
	struct pgt_shard_out *o = j->o;
	bool runs = o->runs != NULL;
	size_t total = 0;

	if (runs) {
		for (unsigned k = 0; k < m->n; k++) {
			if (!is_mine(j, k, w))
				continue;
			j->cnt[k] = pgt__bitmap_count_runs(&m->s[k].bm);
			j->edge[k] = (uint8_t)(pgt__bitmap_test(&m->s[k].bm, 0) |
					       (last_set(&m->s[k]) << 1));
		}
		if (j->nworkers)
			pgt__barrier_wait(&j->bar);
		if (m->take_hook) {
			if (w == 0)
				m->take_hook(m->take_hook_arg);
			if (j->nworkers)
				pgt__barrier_wait(&j->bar);
		}
		bool jn;

		slot_of(j, 0, &jn, &total);
		if (total > o->runs_cap)
			return; /* the caller reports -ENOBUFS */
	}
	for (unsigned k = 0; k < m->n; k++) {
		struct pgt_shard *s = &m->s[k];
		struct shard_ctx c = {
			.bitmap = o->bitmap, .bm = &s->bm, .runs = o->runs, .base = s->first,
			.gpa = o->gpa + (s->first << o->page_shift), .shift = o->page_shift,
		};
		uint64_t t0 = s->ctr ? pgt_hal_now_ns() : 0;

		if (!is_mine(j, k, w))
			continue;
		size_t slice = 0;

		if (runs) {
			bool jn;

			c.slot = slice = slot_of(j, k, &c.skip_first, NULL);
			c.slot_end = k + 1 < m->n ? slot_of(j, k + 1, &jn, NULL) : total;
		}
		if (o->bitmap) {
			size_t w0 = s->first / PGT_BITS_PER_LONG;
			size_t w1 = k + 1 == m->n ? o->bitmap_words
						  : (s->first + s->npages) / PGT_BITS_PER_LONG;

			memset(o->bitmap + w0, 0, (w1 - w0) * sizeof(unsigned long));
		}
		j->taken[k] = pgt__bitmap_take_runs(&s->bm, runs ? take_run : take_bits, &c);
		j->used[k] = c.slot - slice;
		/* runs merged since they were counted leave a hole in the slice */
		if (runs && c.slot != c.slot_end)
			c.overflow = true;
		j->carry[k] = c.carry;
		j->nruns_seen[k] = c.nruns;
		if (c.overflow)
			atomic_store_explicit(&j->overflow, true, memory_order_relaxed);
		/* without a runs array, joins are found from what was taken */
		if (!runs)
			j->edge[k] = (uint8_t)((c.first_done && c.starts) |
					       ((c.first_done && c.last_end == s->npages) << 1));
		if (s->ctr)
			atomic_fetch_add_explicit(&s->ctr->harvest_ns, pgt_hal_now_ns() - t0,
						  memory_order_relaxed);
	}
}

/* Undo a take whose runs did not fit their slices: every run written and
 * every carry goes back into the map. */
static void put_back(struct take_job *j)
{
	struct pgt_shardmap *m = j->m;
	const struct pgt_shard_out *o = j->o;

	for (unsigned k = 0; k < m->n; k++) {
		bool skip;
		size_t at = slot_of(j, k, &skip, NULL);

		for (size_t i = at; i < at + j->used[k]; i++)
			pgt__shardmap_set_range(m, (o->runs[i].gpa - o->gpa) >> o->page_shift,
						o->runs[i].npages);
		if (j->carry[k])
			pgt__shardmap_set_range(m, m->s[k].first, j->carry[k]);
	}
}

static void take_inline(struct take_job *j)
{
	take_worker(j, 0);
}

int64_t pgt__shardmap_take(struct pgt_shardmap *m, struct pgt_shard_out *o)
{
	struct take_job j = { .m = m, .o = o };
	uint64_t stack[6 * 8];
	uint64_t *mem = stack;
	int64_t taken = 0;
	size_t total = 0;
	bool jn;

	if (o->bitmap && o->bitmap_words < (m->nbits + PGT_BITS_PER_LONG - 1) / PGT_BITS_PER_LONG)
		return -EINVAL;
	if (m->n > 8) {
		mem = calloc((size_t)m->n * 6, sizeof(uint64_t));
		if (!mem)
			return -ENOMEM;
	} else {
		memset(stack, 0, sizeof(stack));
	}
	j.cnt = mem;
	j.carry = mem + m->n;
	j.taken = mem + 2 * m->n;
	j.nruns_seen = mem + 3 * m->n;
	j.used = mem + 4 * m->n;
	j.edge = (uint8_t *)(mem + 5 * m->n);
	if (m->workers && m->n > 1 && m->nbits >= m->parallel_min_bits) {
		j.nworkers = pgt__workers_count(m->workers);
		pgt__barrier_init(&j.bar, j.nworkers);
		pgt__workers_run(m->workers, take_worker, &j);
	} else {
		take_inline(&j);
	}
	if (o->runs) {
		slot_of(&j, 0, &jn, &total);
		o->nruns = total;
		if (total > o->runs_cap) {
			taken = -ENOBUFS;
			goto out;
		}
		if (atomic_load(&j.overflow)) {
			/* a setter broke the exclusive-use rule: runs do not match
			 * their slices. Nothing is lost: what was taken goes back
			 * (the surplus already went back), the caller may retry. */
			put_back(&j);
			o->nruns = 0;
			taken = -EBUSY;
			goto out;
		}
		for (unsigned k = 1; k < m->n; k++) {
			bool join = false; /* gcc -O3 cannot see slot_of sets it */
			size_t at = slot_of(&j, k, &join, NULL);

			if (join)
				o->runs[at - 1].npages += j.carry[k];
		}
	} else {
		o->nruns = 0;
		for (unsigned k = 0; k < m->n; k++) {
			o->nruns += j.nruns_seen[k];
			/* a run that began at a shard's page 0 continues the
			 * previous shard's last run when that one reached its end */
			if (k && (j.edge[k - 1] & 2) && (j.edge[k] & 1))
				o->nruns--;
		}
	}
	for (unsigned k = 0; k < m->n; k++)
		taken += (int64_t)j.taken[k];
out:
	if (mem != stack)
		free(mem);
	return taken;
}
