/* SPDX-License-Identifier: MIT */
/*
 * Sub-page refinement on 2 MiB hugetlb pages (pgt_region_refine()).
 *
 * A full-content oracle: two consumers (one per view) keep a copy of the
 * region updated only from the 4 KiB pieces their refined harvests report;
 * after each of their harvests the copy must equal the source. Random 1 to
 * 4096-byte writes (some rewrite the bytes already there), 4 KiB releases
 * (the piece reads zero afterwards) between rounds. Over-reports (a
 * reported piece the consumer already had) are counted and printed; the
 * refined volume must be a small fraction of what 2 MiB reporting sends.
 */
#include <errno.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/common/testutil.h"
#include "pgtrack/pgtrack.h"
#include "pgtrack/release.h"

#define MiB (1024ull * 1024)
#define GPA0 (1ull << 32)
#define NHP 8
#define LEN (NHP * 2 * MiB)
#define PIECES (LEN / 4096)
/* write/harvest rounds of the oracle tests; PGT_REFINE_ROUNDS sets them (the
 * VM guests run fewer: TCG hashes slowly) */
static int rounds = 40;

struct consumer {
	pgt_dirty_view *v;
	uint8_t *copy;
	uint64_t reported, over;
	uint64_t pages_2m;      /* what 2 MiB reporting would send, in pieces */
	bool dirty[NHP];        /* pages written since this consumer's harvest */
	uint8_t *data;          /* non-NULL: take the pieces from the harvest */
	struct pgt_run runs[PIECES];
	unsigned long bm[PIECES / (8 * sizeof(unsigned long))];
};

struct fx {
	pgt_engine *eng;
	pgt_region *r;
	uint8_t *mem;
	uint64_t seed;
};

static int open_hugetlb(struct fx *f, int mode)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_HUGETLB, .length = LEN, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_AUTO, .numa_node = -1,
		.name = "refine",
	};
	struct pgt_region_info info;
	int ret;

	memset(f, 0, sizeof(*f));
	if (pgt_test_free_hugepages() < NHP)
		return -ENOMEM;
	ret = pgt_test_region_open(&rc, &f->eng, &f->r, &info);
	if (ret)
		return ret;
	f->mem = info.addr;
	assert_int_equal(pgt_region_refine(f->r, mode), 0);
	assert_int_equal(pgt_region_refine_mode(f->r), mode);
	f->seed = pgt_test_seed();
	return 0;
}

/*
 * The two-consumer fixture: the hugetlb region in refine @mode, and two
 * consumers each with a view and a (zero) copy of the region. Skips the
 * test where no such region can be made.
 */
static struct consumer *open_consumers(struct fx *f, int mode)
{
	struct consumer *c = calloc(2, sizeof(*c));
	int ret;

	assert_non_null(c);
	ret = open_hugetlb(f, mode);
	if (ret) {
		free(c);
		pgt_skip("no hugetlb region with dirty tracking here: %s", strerror(-ret));
	}
	for (int i = 0; i < 2; i++) {
		c[i].copy = calloc(1, LEN);
		assert_non_null(c[i].copy);
		assert_int_equal(pgt_dirty_view_open(f->r, &c[i].v), 0);
	}
	return c;
}

static void close_consumers(struct fx *f, struct consumer *c)
{
	for (int i = 0; i < 2; i++) {
		pgt_dirty_view_close(c[i].v);
		free(c[i].copy);
		free(c[i].data);
	}
	free(c);
	pgt_engine_close(f->eng);
}

/* Apply one harvest to @c's copy; the copy must equal the source after. */
static void consume(struct fx *f, struct consumer *c, bool use_bitmap)
{
	struct pgt_harvest h = { .size = sizeof(h) };
	int64_t n;
	uint64_t got = 0;

	if (use_bitmap) {
		h.bitmap = c->bm;
		h.bitmap_words = sizeof(c->bm) / sizeof(c->bm[0]);
	} else {
		h.runs = c->runs;
		h.runs_cap = PIECES;
	}
	if (c->data) {
		h.data = c->data;
		h.data_cap = LEN;
	}
	n = pgt_dirty_harvest(c->v, &h);
	assert_true(n >= 0);
	assert_int_equal(h.page_size, 4096);
	assert_int_equal(h.data_len, c->data ? (uint64_t)n * 4096 : 0);
	for (uint64_t i = 0; i < PIECES; i++) {
		bool hit = false;

		if (use_bitmap) {
			hit = c->bm[i / (8 * sizeof(unsigned long))] &
			      (1ul << (i % (8 * sizeof(unsigned long))));
		} else {
			for (size_t k = 0; k < h.nruns && !hit; k++)
				hit = i >= (c->runs[k].gpa - GPA0) / 4096 &&
				      i < (c->runs[k].gpa - GPA0) / 4096 + c->runs[k].npages;
		}
		if (!hit)
			continue;
		if (!memcmp(c->copy + i * 4096, f->mem + i * 4096, 4096))
			c->over++;
		memcpy(c->copy + i * 4096, c->data ? c->data + got * 4096 : f->mem + i * 4096, 4096);
		got++;
	}
	assert_int_equal(got, (uint64_t)n);
	assert_int_equal(h.dirty_pages, (uint64_t)n);
	c->reported += got;
	for (int p = 0; p < NHP; p++) {
		c->pages_2m += c->dirty[p] ? 512 : 0;
		c->dirty[p] = false;
	}
	for (uint64_t i = 0; i < PIECES; i++)
		if (memcmp(c->copy + i * 4096, f->mem + i * 4096, 4096))
			fail_msg("piece %llu differs after a harvest (a lost change)",
				 (unsigned long long)i);
}

static void mark(struct consumer *c, uint64_t off, uint64_t len)
{
	for (int i = 0; i < 2; i++)
		for (uint64_t p = off / (2 * MiB); p <= (off + len - 1) / (2 * MiB); p++)
			c[i].dirty[p] = true;
}

static void random_writes(struct fx *f, struct consumer *c, uint64_t *touched)
{
	unsigned nw = 1 + (unsigned)(pgt_test_rand(&f->seed) % 6);

	for (unsigned w = 0; w < nw; w++) {
		uint64_t len = 1 + pgt_test_rand(&f->seed) % 4096;
		uint64_t off = pgt_test_rand(&f->seed) % (LEN - len);
		uint64_t kind = pgt_test_rand(&f->seed) % 8;

		for (uint64_t i = 0; i < len; i++)
			f->mem[off + i] = kind == 0 ? f->mem[off + i] /* same bytes */
					  : (uint8_t)pgt_test_rand(&f->seed);
		*touched += (off + len - 1) / 4096 - off / 4096 + 1;
		mark(c, off, len);
	}
}

static void run_oracle(int mode, bool data)
{
	uint64_t touched = 0, released = 0;
	struct consumer *c;
	struct fx f;

	c = open_consumers(&f, mode);
	for (int i = 0; i < 2; i++)
		memset(c[i].dirty, 1, sizeof(c[i].dirty));  /* first harvest: whole */
	if (data) {
		c[0].data = malloc(LEN);
		assert_non_null(c[0].data);
	}
	/* views open: the mode is fixed */
	assert_int_equal(pgt_region_refine(f.r, PGT_REFINE_OFF), -EBUSY);
	for (int round = 0; round < rounds; round++) {
		random_writes(&f, c, &touched);
		if (round % 5 == 4) {
			uint64_t p = pgt_test_rand(&f.seed) % PIECES;

			assert_true(pgt_release(f.eng, GPA0 + p * 4096, 4096,
						PGT_RELEASE_REPEAT_OK, NULL) >= 0);
			released++;
			mark(c, p * 4096, 4096);
		}
		consume(&f, &c[0], round & 1);
		if (round % 3 == 2)  /* the second view harvests less often */
			consume(&f, &c[1], !(round & 1));
	}
	consume(&f, &c[1], false);
	for (int i = 0; i < 2; i++)
		pgt_test_note("%s%s view %d: %llu pieces reported (2 MiB reporting: %llu) for %llu "
			      "touched by writes + %llu released, %llu over-reported (already "
			      "equal)", mode == PGT_REFINE_COMPARE ? "compare" : "fingerprint",
			      c[i].data ? " (data)" : "", i,
			      (unsigned long long)c[i].reported, (unsigned long long)c[i].pages_2m,
			      (unsigned long long)touched, (unsigned long long)released,
			      (unsigned long long)c[i].over);
	/* the first harvest is whole pages, after that changed pieces (and
	 * pieces re-sent while their page keeps being written) */
	assert_true(c[0].reported * 2 < c[0].pages_2m);
	/* taking the bytes from the harvest: the first harvest whole, then
	 * each changed piece once (a write may change several pieces) */
	if (data)
		assert_true(c[0].reported <= PIECES + touched + released);
	close_consumers(&f, c);
}

static void test_oracle_fingerprint(void **state)
{
	(void)state;
	run_oracle(PGT_REFINE_FINGERPRINT, false);
}

static void test_oracle_data(void **state)
{
	(void)state;
	run_oracle(PGT_REFINE_FINGERPRINT, true);
}

static void test_oracle_compare(void **state)
{
	(void)state;
	run_oracle(PGT_REFINE_COMPARE, false);
}

/*
 * open_hugetlb() in fingerprint mode with a view (skipped where it cannot
 * run), every page written, then the view's first two harvests into @h:
 * whole pages, then nothing (what was reported is certain now).
 */
static pgt_dirty_view *open_filled(struct fx *f, struct pgt_harvest *h)
{
	pgt_dirty_view *v;
	int ret = open_hugetlb(f, PGT_REFINE_FINGERPRINT);

	if (ret)
		pgt_skip("no hugetlb region with dirty tracking here: %s", strerror(-ret));
	assert_int_equal(pgt_dirty_view_open(f->r, &v), 0);
	memset(f->mem, 1, LEN);
	assert_int_equal(pgt_dirty_harvest(v, h), PIECES);  /* first: whole pages */
	assert_int_equal(pgt_dirty_harvest(v, h), 0);
	return v;
}

/* One 8-byte write in each of two pages: 2 pieces, not 2 x 512. */
static void test_one_word(void **state)
{
	struct pgt_run runs[16];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 16 };
	pgt_dirty_view *v, *v2;
	struct fx f;

	(void)state;
	v = open_filled(&f, &h);
	f.mem[5 * 4096 + 8] = 2;
	f.mem[2 * MiB + 511 * 4096] = 3;
	assert_int_equal(pgt_dirty_harvest(v, &h), 2);
	assert_int_equal(h.nruns, 2);
	assert_int_equal(runs[0].gpa, GPA0 + 5 * 4096);
	assert_int_equal(runs[1].gpa, GPA0 + 2 * MiB + 511 * 4096);
	/*
	 * Page 0 written again: its changed pieces, and piece 5 again (the
	 * consumer may have copied it while it was being rewritten); page 1
	 * not. Too few runs first: -ENOBUFS and nothing consumed.
	 */
	f.mem[4096] = 9;
	f.mem[3 * 4096] = 9;
	h.runs_cap = 1;
	assert_int_equal(pgt_dirty_harvest(v, &h), -ENOBUFS);
	assert_int_equal(h.nruns, 3);
	h.runs_cap = 16;
	assert_int_equal(pgt_dirty_harvest(v, &h), 3);
	assert_int_equal(runs[0].gpa, GPA0 + 4096);
	assert_int_equal(runs[1].gpa, GPA0 + 3 * 4096);
	assert_int_equal(runs[2].gpa, GPA0 + 5 * 4096);
	assert_int_equal(pgt_dirty_harvest(v, &h), 0);
	/* same bytes written: the page is dirty, no piece changed */
	f.mem[4096] = 9;
	assert_int_equal(pgt_dirty_harvest(v, &h), 0);
	/* a piece zeroed behind the consumer's back (released) is reported */
	assert_true(pgt_release(f.eng, GPA0 + 4096, 4096, PGT_RELEASE_REPEAT_OK, NULL) >= 0);
	assert_int_equal(f.mem[4096], 0);
	assert_int_equal(pgt_dirty_harvest(v, &h), 1);
	assert_int_equal(runs[0].gpa, GPA0 + 4096);
	/* a view with refinement off reports 2 MiB pages */
	assert_int_equal(pgt_dirty_view_refine(NULL, false), -EINVAL);
	assert_int_equal(pgt_dirty_view_open(f.r, &v2), 0);
	assert_int_equal(pgt_dirty_view_refine(v2, false), 0);
	f.mem[3 * 2 * MiB + 77] = 5;
	assert_int_equal(pgt_dirty_harvest(v2, &h), 1);
	assert_int_equal(h.page_size, 2 * MiB);
	assert_int_equal(runs[0].gpa, GPA0 + 3 * 2 * MiB);
	assert_int_equal(pgt_dirty_harvest(v, &h), 1);  /* the other view: refined */
	assert_int_equal(h.page_size, 4096);
	assert_int_equal(runs[0].gpa, GPA0 + 3 * 2 * MiB);
	/* the data copy: too small is -ENOBUFS with the size, nothing taken;
	 * a view that does not refine has none to give */
	f.mem[6 * 2 * MiB + 4096 * 7] = 42;
	f.mem[6 * 2 * MiB + 4096 * 9] = 43;
	{
		uint8_t *d = malloc(2 * 4096);
		struct pgt_harvest hd = { .size = sizeof(hd), .runs = runs, .runs_cap = 16,
					  .data = d, .data_cap = 4096 };

		assert_non_null(d);
		assert_int_equal(pgt_dirty_harvest(v, &hd), -ENOBUFS);
		assert_int_equal(hd.data_len, 2 * 4096);
		hd.data_cap = 2 * 4096;
		assert_int_equal(pgt_dirty_harvest(v, &hd), 2);
		assert_int_equal(hd.data_len, 2 * 4096);
		assert_memory_equal(d, f.mem + 6 * 2 * MiB + 4096 * 7, 4096);
		assert_memory_equal(d + 4096, f.mem + 6 * 2 * MiB + 4096 * 9, 4096);
		/*
		 * Too small after a part was copied (pieces in different
		 * 64-piece groups: the first fits, the second does not):
		 * still -ENOBUFS, and the next harvest gives both.
		 */
		f.mem[6 * 2 * MiB + 4096 * 7] = 44;
		f.mem[6 * 2 * MiB + 4096 * 100] = 45;
		hd.data_cap = 4096;
		assert_int_equal(pgt_dirty_harvest(v, &hd), -ENOBUFS);
		assert_int_equal(hd.data_len, 2 * 4096);
		hd.data_cap = 2 * 4096;
		assert_int_equal(pgt_dirty_harvest(v, &hd), 2);
		assert_int_equal(runs[0].gpa, GPA0 + 6 * 2 * MiB + 4096 * 7);
		assert_int_equal(runs[1].gpa, GPA0 + 6 * 2 * MiB + 4096 * 100);
		assert_memory_equal(d, f.mem + 6 * 2 * MiB + 4096 * 7, 4096);
		assert_memory_equal(d + 4096, f.mem + 6 * 2 * MiB + 4096 * 100, 4096);
		assert_int_equal(pgt_dirty_harvest(v, &hd), 0);
		assert_int_equal(pgt_dirty_harvest(v2, &hd), -EINVAL);
		free(d);
	}
	pgt_dirty_view_close(v2);
	pgt_dirty_view_close(v);
	pgt_engine_close(f.eng);
}

struct locker {
	volatile uint64_t *words;
	_Atomic bool stop;
};

/* Is the first 4 KiB of @p in memory (for the memfd: in the page cache)? */
static bool in_core(const void *p)
{
	unsigned char vec[1] = { 0 };

	assert_int_equal(mincore((void *)p, 4096, vec), 0);
	return vec[0] & 1;
}

/*
 * Residency, taken for the whole harvest at once: a freed huge page is
 * refined as zeros without being read (reading it would allocate it again);
 * the other pages of the same harvest, resident, are read.
 */
static void test_residency(void **state)
{
	struct pgt_run runs[16];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 16 };
	pgt_dirty_view *v;
	struct fx f;

	(void)state;
	v = open_filled(&f, &h);
	assert_true(pgt_release(f.eng, GPA0 + 2 * 2 * MiB, 2 * MiB, 0, NULL) > 0);
	assert_false(in_core(f.mem + 2 * 2 * MiB));
	f.mem[0] = 2;
	f.mem[7 * 2 * MiB + 3 * 4096] = 2;
	assert_int_equal(pgt_dirty_harvest(v, &h), 1 + 512 + 1);
	assert_int_equal(h.nruns, 3);
	assert_int_equal(runs[0].gpa, GPA0);
	assert_int_equal(runs[1].gpa, GPA0 + 2 * 2 * MiB);
	assert_int_equal(runs[1].npages, 512);
	assert_int_equal(runs[2].gpa, GPA0 + 7 * 2 * MiB + 3 * 4096);
	assert_false(in_core(f.mem + 2 * 2 * MiB));  /* not allocated back */
	/* freed and not written since: nothing */
	assert_int_equal(pgt_dirty_harvest(v, &h), 0);
	assert_false(in_core(f.mem + 2 * 2 * MiB));
	pgt_dirty_view_close(v);
	pgt_engine_close(f.eng);
}

/*
 * A page our mapping does not hold but the file does: a vhost-user back-end
 * writes, through its own mapping, a page pgt_release() freed (the guest
 * reused it), and its dirty log reports the page. The harvest must report
 * and copy the back-end's bytes: mincore and PAGEMAP_SCAN see only our
 * mapping, and taking the page for zeros would send zeros. The freed page
 * must stay freed in the file where nobody wrote it.
 */
static void test_unmapped_file_page(void **state)
{
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_run runs[16];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 16 };
	unsigned long bm[1] = { 1ul << 5 | 1ul << 6 };
	uint8_t *data, *other;
	pgt_dirty_view *v;
	struct fx f;

	(void)state;
	v = open_filled(&f, &h);
	h.data = data = malloc(LEN);  /* after the skip: it is a longjmp */
	h.data_cap = LEN;
	assert_non_null(data);
	assert_int_equal(pgt_region_info(f.r, &info), 0);
	assert_true(info.fd >= 0);
	/* pages 5 and 6 freed; the back-end writes two pieces of page 5 */
	assert_true(pgt_release(f.eng, GPA0 + 5 * 2 * MiB, 2 * 2 * MiB, 0, NULL) > 0);
	other = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, info.fd, 5 * 2 * MiB);
	assert_true(other != MAP_FAILED);
	memset(other + 9 * 4096, 0x77, 4096);
	other[300 * 4096 + 5] = 0x42;
	assert_int_equal(pgt_dirty_merge(f.r, bm, NHP), 0);  /* its dirty log */
	assert_false(in_core(f.mem + 5 * 2 * MiB));  /* our mapping: empty */
	/* page 5: all pieces changed (zeros now, two written); page 6 too */
	assert_int_equal(pgt_dirty_harvest(v, &h), 2 * 512);
	assert_int_equal(h.nruns, 1);
	assert_int_equal(runs[0].gpa, GPA0 + 5 * 2 * MiB);
	assert_memory_equal(data, other, 2 * MiB);  /* the back-end's bytes */
	for (uint64_t i = 0; i < 2 * MiB; i += 4096)
		assert_int_equal(data[2 * MiB + i], 0);
	assert_int_equal(data[9 * 4096], 0x77);
	/* nothing new: the fingerprints describe the back-end's bytes */
	assert_int_equal(pgt_dirty_merge(f.r, bm, NHP), 0);
	assert_int_equal(pgt_dirty_harvest(v, &h), 0);
	assert_false(in_core(f.mem + 6 * 2 * MiB));  /* page 6: not allocated back */
	munmap(other, 2 * MiB);
	pgt_dirty_view_close(v);
	pgt_engine_close(f.eng);
	free(data);
}

/*
 * The same with guest memory the VMM mapped and registered without its fd
 * (pgtrack opens the file itself): the release frees the file's pages, and
 * the page the back-end wrote after it is read from the file, not taken
 * for zeros.
 */
static void test_registered_file_page(void **state)
{
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_run runs[16];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = 16 };
	unsigned long bm[1] = { 1ul << 5 };
	struct stat st0, st1;
	uint8_t *mem, *data, *other;
	pgt_dirty_view *v;
	pgt_engine *e;
	pgt_region *r;
	int fd;

	(void)state;
	if (pgt_test_free_hugepages() < NHP)
		pgt_skip("needs %d free 2 MiB hugepages", NHP);
	fd = memfd_create("vmm-guest", MFD_CLOEXEC | MFD_HUGETLB);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, LEN), 0);
	mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(mem != MAP_FAILED);

	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = LEN, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_AUTO, .numa_node = -1,
		.addr = mem, .fd = -1, .name = "vmm-guest",
	};

	assert_int_equal(pgt_engine_open(NULL, &e), 0);
	assert_int_equal(pgt_region_register(e, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_true(info.fd >= 0);
	assert_int_equal(pgt_region_refine(r, PGT_REFINE_FINGERPRINT), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	memset(mem, 1, LEN);
	assert_int_equal(pgt_dirty_harvest(v, &h), PIECES);
	assert_int_equal(fstat(fd, &st0), 0);
	assert_true(pgt_release(e, GPA0 + 5 * 2 * MiB, 2 * MiB, 0, NULL) > 0);
	assert_int_equal(fstat(fd, &st1), 0);
	assert_int_equal(st0.st_blocks - st1.st_blocks, 2 * MiB / 512);  /* freed */
	other = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 5 * 2 * MiB);
	assert_true(other != MAP_FAILED);
	memset(other + 9 * 4096, 0x77, 4096);
	assert_int_equal(pgt_dirty_merge(r, bm, NHP), 0);
	h.data = data = malloc(LEN);
	h.data_cap = LEN;
	assert_non_null(data);
	assert_int_equal(pgt_dirty_harvest(v, &h), 512);
	assert_memory_equal(data, other, 2 * MiB);  /* the back-end's bytes */
	assert_int_equal(data[9 * 4096], 0x77);
	munmap(other, 2 * MiB);
	pgt_dirty_view_close(v);
	pgt_engine_close(e);
	munmap(mem, LEN);
	close(fd);
	free(data);
}

/* Take and release lock words: values that change and change back. */
static void *locker_main(void *arg)
{
	struct locker *l = arg;
	uint64_t st = 12345;

	while (!atomic_load(&l->stop)) {
		uint64_t i = pgt_test_rand(&st) % (NHP * 8);

		l->words[i * 2048 + 7] = 1;
		l->words[i * 2048 + 7] = 0;
		if (!(i & 7))
			l->words[i * 2048 + 300] = pgt_test_rand(&st);
	}
	return NULL;
}

/*
 * A writer thread keeps changing words (and changing lock words back)
 * while two consumers harvest, one from guest memory after the harvest
 * and one from the harvest's data copy; after the writer stops, one more
 * harvest each must leave both copies equal to the source.
 */
static void test_lock_words(void **state)
{
	struct locker l = { 0 };
	struct consumer *c;
	pthread_t th;
	struct fx f;

	(void)state;
	c = open_consumers(&f, PGT_REFINE_FINGERPRINT);
	c[1].data = malloc(LEN);
	assert_non_null(c[1].data);
	l.words = (volatile uint64_t *)f.mem;
	assert_int_equal(pthread_create(&th, NULL, locker_main, &l), 0);
	for (int round = 0; round < 30; round++)
		for (int i = 0; i < 2; i++) {
			struct pgt_harvest h = { .size = sizeof(h), .bitmap = c[i].bm,
						 .bitmap_words = PIECES / (8 * sizeof(long)),
						 .data = c[i].data, .data_cap = c[i].data ? LEN : 0 };
			int64_t n = pgt_dirty_harvest(c[i].v, &h);
			uint64_t got = 0;

			assert_true(n >= 0);
			for (uint64_t k = 0; k < PIECES; k++) {
				if (!(c[i].bm[k / (8 * sizeof(long))] & (1ul << (k % (8 * sizeof(long))))))
					continue;
				memcpy(c[i].copy + k * 4096,
				       c[i].data ? c[i].data + got * 4096 : f.mem + k * 4096, 4096);
				got++;
			}
			assert_int_equal(got, (uint64_t)n);
			c[i].reported += got;
		}
	atomic_store(&l.stop, true);
	pthread_join(th, NULL);
	for (int i = 0; i < 2; i++) {
		consume(&f, &c[i], true);  /* fails on any stale piece */
		pgt_test_note("lock words, %s: %llu pieces over 31 harvests",
			      c[i].data ? "from the harvest's copy" : "from guest memory",
			      (unsigned long long)c[i].reported);
	}
	close_consumers(&f, c);
}

struct scribbler {
	uint8_t *mem;
	uint64_t len;
	_Atomic bool stop;
};

static void *scribble_main(void *arg)
{
	struct scribbler *s = arg;
	uint64_t st = 777;

	while (!atomic_load(&s->stop)) {
		uint64_t off = pgt_test_rand(&st) % (s->len / 8) * 8;

		*(volatile uint64_t *)(s->mem + off) = pgt_test_rand(&st) | 1;
	}
	return NULL;
}

/*
 * The fingerprint tracker (no kernel support): a writer thread runs while
 * a consumer harvests and copies the reported pages; after the writer
 * stops, one more harvest leaves the copy equal to the source (no lost
 * write). A read(2) into guest memory (a kernel write, which mprotect
 * tracking turns into EFAULT) is reported. Anonymous 4 KiB memory, and
 * hugetlb with refinement when the pool has pages.
 */
static void run_tracker(int backing, uint64_t len)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = (uint32_t)backing, .length = len, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_FINGERPRINT, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	struct scribbler s = { 0 };
	uint64_t npieces = len / 4096, words = npieces / (8 * sizeof(long));
	unsigned long *bm = calloc(words, sizeof(long));
	uint8_t *copy = calloc(1, len), buf[4096];
	pgt_dirty_view *v;
	pgt_engine *eng;
	pgt_region *r;
	pthread_t th;
	int pfd[2];

	assert_non_null(bm);
	assert_non_null(copy);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(info.dirty_method, PGT_DIRTY_FINGERPRINT);
	if (backing == PGT_BACKING_HUGETLB)
		assert_int_equal(pgt_region_refine(r, PGT_REFINE_FINGERPRINT), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	s.mem = info.addr;
	s.len = len;
	/* a kernel write: read(2) from a pipe into guest memory */
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(write(pfd[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(read(pfd[0], s.mem + len / 2, sizeof(buf)), (ssize_t)sizeof(buf));
	close(pfd[0]);
	close(pfd[1]);
	assert_true(pgt_dirty_harvest(v, &(struct pgt_harvest){ .size = sizeof(struct pgt_harvest),
			.bitmap = bm, .bitmap_words = words }) >= 1);
	assert_true(bm[(len / 2 / 4096) / (8 * sizeof(long))] &
		    (1ul << ((len / 2 / 4096) % (8 * sizeof(long)))));
	memcpy(copy, s.mem, len);  /* the consumer's full copy */
	assert_int_equal(pthread_create(&th, NULL, scribble_main, &s), 0);
	for (int round = 0; round <= 20; round++) {
		struct pgt_harvest h = { .size = sizeof(h), .bitmap = bm, .bitmap_words = words };
		uint64_t gran;

		if (round == 20) {
			atomic_store(&s.stop, true);
			pthread_join(th, NULL);
		}
		assert_true(pgt_dirty_harvest(v, &h) >= 0);
		gran = h.page_size;
		for (uint64_t i = 0; i < len / gran; i++)
			if (bm[i / (8 * sizeof(long))] & (1ul << (i % (8 * sizeof(long)))))
				memcpy(copy + i * gran, s.mem + i * gran, gran);
	}
	for (uint64_t i = 0; i < npieces; i++)
		if (memcmp(copy + i * 4096, s.mem + i * 4096, 4096))
			fail_msg("piece %llu differs: a write was lost", (unsigned long long)i);
	pgt_dirty_view_close(v);
	pgt_engine_close(eng);
	free(bm);
	free(copy);
}

/*
 * The fingerprint tracker on shared hugetlb: a page freed here and written
 * by another process through its own mapping is reported at each change
 * (read from the file, not taken for zeros); a freed page nobody wrote is
 * not allocated back.
 */
static void test_tracker_file_page(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_HUGETLB, .length = LEN, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_FINGERPRINT, .numa_node = -1,
	};
	struct pgt_region_info info = { .size = sizeof(info) };
	struct pgt_run runs[NHP];
	struct pgt_harvest h = { .size = sizeof(h), .runs = runs, .runs_cap = NHP };
	pgt_dirty_view *v;
	pgt_engine *eng;
	pgt_region *r;
	uint8_t *mem, *other;
	int settle;

	(void)state;
	if (pgt_test_free_hugepages() < NHP)
		pgt_skip("needs %d free hugepages", NHP);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	assert_int_equal(pgt_region_create(eng, &rc, &r), 0);
	assert_int_equal(pgt_region_info(r, &info), 0);
	assert_int_equal(pgt_dirty_view_open(r, &v), 0);
	mem = info.addr;
	memset(mem, 1, LEN);
	assert_true(pgt_release(eng, GPA0 + 5 * 2 * MiB, 2 * 2 * MiB, 0, NULL) > 0);
	for (settle = 0; settle < 4 && pgt_dirty_harvest(v, &h) > 0; settle++)
		;
	assert_true(settle < 4);  /* a changed page is reported twice, then not */
	other = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, info.fd, 5 * 2 * MiB);
	assert_true(other != MAP_FAILED);
	for (int round = 0; round < 2; round++) {
		other[100 + round] = 7;
		assert_int_equal(pgt_dirty_harvest(v, &h), 1);
		assert_int_equal(runs[0].gpa, GPA0 + 5 * 2 * MiB);
		assert_int_equal(pgt_dirty_harvest(v, &h), 1);  /* once more */
		assert_int_equal(pgt_dirty_harvest(v, &h), 0);
	}
	assert_false(in_core(mem + 5 * 2 * MiB));  /* ours stays unmapped */
	assert_false(in_core(mem + 6 * 2 * MiB));
	munmap(other, 2 * MiB);
	pgt_dirty_view_close(v);
	pgt_engine_close(eng);
}

static void test_fingerprint_tracker(void **state)
{
	(void)state;
	run_tracker(PGT_BACKING_ANON, 8 * MiB);
	if (pgt_test_free_hugepages() < NHP)
		pgt_skip("anonymous part passed; hugetlb part needs %d free hugepages", NHP);
	run_tracker(PGT_BACKING_HUGETLB, LEN);
}

static void test_bad_input(void **state)
{
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_ANON, .length = 4 * MiB, .gpa = GPA0,
		.track = PGT_TRACK_DIRTY, .dirty_method = PGT_DIRTY_AUTO, .numa_node = -1,
	};
	pgt_engine *eng;
	pgt_region *r;

	(void)state;
	assert_int_equal(pgt_region_refine(NULL, PGT_REFINE_FINGERPRINT), -EINVAL);
	assert_int_equal(pgt_region_refine_mode(NULL), -EINVAL);
	assert_int_equal(pgt_engine_open(NULL, &eng), 0);
	if (pgt_region_create(eng, &rc, &r)) {
		pgt_engine_close(eng);
		pgt_skip("no anonymous region with dirty tracking here");
	}
	/* 4 KiB pages: nothing to refine */
	assert_int_equal(pgt_region_refine(r, PGT_REFINE_FINGERPRINT), -EINVAL);
	assert_int_equal(pgt_region_refine(r, 7), -EINVAL);
	assert_int_equal(pgt_region_refine_mode(r), PGT_REFINE_OFF);
	pgt_engine_close(eng);
}

int main(void)
{
	const char *env = getenv("PGT_REFINE_ROUNDS");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_word),
		cmocka_unit_test(test_residency),
		cmocka_unit_test(test_unmapped_file_page),
		cmocka_unit_test(test_registered_file_page),
		cmocka_unit_test(test_oracle_fingerprint),
		cmocka_unit_test(test_oracle_compare),
		cmocka_unit_test(test_oracle_data),
		cmocka_unit_test(test_lock_words),
		cmocka_unit_test(test_fingerprint_tracker),
		cmocka_unit_test(test_tracker_file_page),
		cmocka_unit_test(test_bad_input),
	};

	if (env && atoi(env) > 0)
		rounds = atoi(env);
	return cmocka_run_group_tests_name("refine", tests, NULL, NULL);
}
