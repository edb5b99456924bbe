/* SPDX-License-Identifier: MIT */
/*
 * libpgtrack-attach preloaded into this test, which plays the VMM (meson
 * sets LD_PRELOAD, PGT_ATTACH_EXE=test_attach_preload and PGT_ATTACH_RAM for
 * a 72 MiB private anonymous and a 40 MiB memfd "guest RAM"): the library
 * must find both, count exactly the pages written, account what the "VMM"
 * discards through madvise and punch-hole (also after a harvest re-protected
 * the holes: the engine's uffd-wp markers, attach_pvt.h), take back what it
 * re-populates, step aside when the "VMM" registers guest RAM with its own
 * userfaultfd and come back after, follow a fork, serve /metrics, show up in
 * pgtrack-numa --pid, and leave a process with bad settings alone. Fast:
 * 50 ms sampling, 200 ms epochs, no QEMU (that is attach_qemu.py).
 */
#include "tests/common/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/lib/pgtool.h"

#define MIB (1ULL << 20)
#define PG 4096ULL
#define ANON_SIZE (72 * MIB)
#define MEMFD_SIZE (40 * MIB)

static uint8_t *anon, *mem;
static int memfd = -1;
static const char *numa_tool, *self;

/*
 * Run a shell command without the preload: /bin/sh and other helpers are
 * not built with the sanitizers a sanitizer build's library needs.
 * Returns its exit status; its stdout and stderr in @out.
 */
static int run_cmd(const char *cmd, char *out, size_t len)
{
	char *pre = strdup(getenv("LD_PRELOAD"));
	size_t n;
	FILE *p;
	int st;

	assert_non_null(pre);
	unsetenv("LD_PRELOAD");
	p = popen(cmd, "r");
	setenv("LD_PRELOAD", pre, 1);
	free(pre);
	assert_non_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL);
}

/* The state the library wrote last (each 200 ms epoch). */
static int state(struct pgtool_attach_state *st)
{
	return pgtool_attach_state_read(0, st);
}

static const struct pgtool_attach_region *region_at(const struct pgtool_attach_state *st,
						    const void *addr)
{
	for (unsigned i = 0; i < st->nregions; i++)
		if (st->region[i].start == (uintptr_t)addr)
			return &st->region[i];
	return NULL;
}

/* Wait until @pred holds for the state (or @secs pass); the last state. */
static bool wait_for(struct pgtool_attach_state *st, double secs,
		     bool (*pred)(const struct pgtool_attach_state *))
{
	double end = now_s() + secs;

	do {
		if (!state(st) && pred(st))
			return true;
		sleep_ms(50);
	} while (now_s() < end);
	return false;
}

static bool both_tracked(const struct pgtool_attach_state *st)
{
	return !strcmp(st->state, "attached") && region_at(st, anon) && region_at(st, mem);
}

/* Two epochs after the last change: every figure is in the file. */
static void settle(struct pgtool_attach_state *st)
{
	sleep_ms(600);
	assert_int_equal(state(st), 0);
}

static int setup(void **st)
{
	(void)st;
	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "pgtrack-attach")) {
		fprintf(stderr, "run with LD_PRELOAD=libpgtrack-attach.so (meson test does)\n");
		return -1;
	}
	/* PROT_NONE guards: the mapping must not merge with a neighbour */
	anon = mmap(NULL, ANON_SIZE + 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == (uint8_t *)MAP_FAILED)
		return -1;
	anon += PG;
	if (mprotect(anon, ANON_SIZE, PROT_READ | PROT_WRITE))
		return -1;
	memfd = memfd_create("pgt-test-mem", MFD_CLOEXEC);
	if (anon == MAP_FAILED || memfd < 0 || ftruncate(memfd, (off_t)MEMFD_SIZE))
		return -1;
	mem = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	return mem == MAP_FAILED ? -1 : 0;
}

/* Later tests need what the first found. */
static void require_attached(void)
{
	struct pgtool_attach_state st;

	if (state(&st) || !both_tracked(&st))
		pgt_skip("the library is not tracking this process (see test_finds_ram)");
}

static void test_finds_ram(void **unused)
{
	struct pgtool_attach_state st;
	const struct pgtool_attach_region *a, *m;

	(void)unused;
	if (!wait_for(&st, 10, both_tracked)) {
		if (!state(&st) && !strcmp(st.state, "failed") && strstr(st.message, "tracker"))
			pgt_skip("no tracker that leaves a VMM alone here: %s", st.message);
		fail_msg("not attached to both mappings: %s (%s)", st.state, st.message);
	}
	a = region_at(&st, anon);
	m = region_at(&st, mem);
	assert_int_equal(a->end - a->start, ANON_SIZE);
	assert_string_equal(a->backing, "anon");
	assert_int_equal(m->end - m->start, MEMFD_SIZE);
	assert_string_equal(m->backing, "memfd");
	assert_string_equal(m->mapping, "/memfd:pgt-test-mem (deleted)");
	assert_true(st.http_port > 0);
}

static void test_dirty_exact(void **unused)
{
	struct pgtool_attach_state st0, st1;
	uint64_t a0, m0;

	(void)unused;
	require_attached();
	settle(&st0);
	a0 = region_at(&st0, anon)->dirty_bytes_total;
	m0 = region_at(&st0, mem)->dirty_bytes_total;
	for (uint64_t p = 0; p < 1000; p++)
		anon[p * PG + 8] = 1;
	for (uint64_t p = 0; p < 300; p++)
		mem[p * PG + 8] = 1;
	settle(&st1);
	/*
	 * Every page, none missed; a page whose first write races a sampling
	 * pass is counted in both (the store faults, the pass re-protects the
	 * fresh pte, the retried store faults again): at most one per pass
	 * that ran while the loop wrote, and the loop takes a few ms.
	 */
	assert_in_range(region_at(&st1, anon)->dirty_bytes_total - a0, 1000 * PG, 1002 * PG);
	assert_in_range(region_at(&st1, mem)->dirty_bytes_total - m0, 300 * PG, 302 * PG);
	assert_int_equal(region_at(&st1, anon)->touched_bytes, 1000 * PG);
	assert_int_equal(region_at(&st1, mem)->touched_bytes, 300 * PG);
	/* the same pages again, in a later sampling period: counted again */
	for (uint64_t p = 0; p < 1000; p++)
		anon[p * PG + 8] = 2;
	settle(&st0);
	assert_in_range(region_at(&st0, anon)->dirty_bytes_total - a0, 2000 * PG, 2004 * PG);
}

static void test_release_anon(void **unused)
{
	struct pgtool_attach_state st0, st1;
	const struct pgtool_attach_region *r0, *r1;

	(void)unused;
	require_attached();
	/* harvests ran since the pages were written (settle): a hole left
	 * now gets a uffd-wp marker at the next one */
	settle(&st0);
	r0 = region_at(&st0, anon);
	assert_int_equal(madvise(anon + 100 * PG, 100 * PG, MADV_DONTNEED), 0);
	settle(&st1);
	r1 = region_at(&st1, anon);
	assert_int_equal(r1->discarded_bytes - r0->discarded_bytes, 100 * PG);
	assert_int_equal(r1->released_bytes - r0->released_bytes, 100 * PG);
	/* pages freed read as zero now: changed, so reported to consumers */
	assert_true(r1->dirty_bytes_total - r0->dirty_bytes_total >= 100 * PG);
}

static void test_release_memfd(void **unused)
{
	struct pgtool_attach_state st0, st1;
	const struct pgtool_attach_region *r0, *r1;

	(void)unused;
	require_attached();
	settle(&st0);
	r0 = region_at(&st0, mem);
	/* DONTNEED only unmaps shared memory: not a discard, nothing freed */
	assert_int_equal(madvise(mem + 10 * PG, 20 * PG, MADV_DONTNEED), 0);
	settle(&st1);
	r1 = region_at(&st1, mem);
	assert_int_equal(r1->discarded_bytes, r0->discarded_bytes);
	assert_int_equal(r1->released_bytes, r0->released_bytes);
	/* a punch-hole frees: discard and release, as QEMU's balloon does */
	assert_int_equal(fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(200 * PG), (off_t)(50 * PG)), 0);
	assert_int_equal(madvise(mem + 200 * PG, 50 * PG, MADV_DONTNEED), 0);
	settle(&st1);
	r1 = region_at(&st1, mem);
	assert_int_equal(r1->discarded_bytes - r0->discarded_bytes, 50 * PG);
	assert_int_equal(r1->released_bytes - r0->released_bytes, 50 * PG);
}

static void test_reclaim(void **unused)
{
	struct pgtool_attach_state st0, st1;
	const struct pgtool_attach_region *r0, *r1;

	(void)unused;
	require_attached();
	settle(&st0);
	r0 = region_at(&st0, anon);
	/* balloon deflate: QEMU says MADV_WILLNEED on the pages given back */
	assert_int_equal(madvise(anon + 100 * PG, 40 * PG, MADV_WILLNEED), 0);
	settle(&st1);
	r1 = region_at(&st1, anon);
	assert_int_equal(r1->reclaimed_bytes - r0->reclaimed_bytes, 40 * PG);
	assert_int_equal(r0->released_bytes - r1->released_bytes, 40 * PG);
	/* the guest uses 20 others again without a word: released no more */
	for (uint64_t p = 160; p < 180; p++)
		anon[p * PG] = 3;
	settle(&st0);
	assert_int_equal(r1->released_bytes - region_at(&st0, anon)->released_bytes, 20 * PG);
}

static bool stepped_aside(const struct pgtool_attach_state *st)
{
	return !strcmp(st->state, "stepped-aside");
}

static void test_step_aside(void **unused)
{
	struct pgtool_attach_state st;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)anon, .len = ANON_SIZE },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct uffdio_range range = { .start = (uintptr_t)anon, .len = ANON_SIZE };
	uint64_t total;
	int fd;

	(void)unused;
	require_attached();
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		pgt_skip("no userfaultfd for the test's own registration: %s", strerror(errno));
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	assert_int_equal(state(&st), 0);
	total = region_at(&st, anon)->dirty_bytes_total;
	/* the "VMM" takes guest RAM for its own userfaultfd (post-copy): it
	 * succeeds, because pgtrack let go first */
	assert_int_equal(ioctl(fd, UFFDIO_REGISTER, &reg), 0);
	assert_true(wait_for(&st, 2, stepped_aside));
	assert_non_null(strstr(st.message, "userfaultfd"));
	assert_non_null(strstr(st.message, "test_attach_pre"));
	/* its figures stay, no longer tracked */
	assert_int_equal(region_at(&st, anon)->dirty_bytes_total, total);
	/* while it holds the range pgtrack does not come back */
	sleep_ms(3000);
	assert_int_equal(state(&st), 0);
	assert_string_not_equal(st.state, "attached");
	/* it lets go: pgtrack tracks again (hold-off 2 s, a look every 2 s) */
	assert_int_equal(ioctl(fd, UFFDIO_UNREGISTER, &range), 0);
	close(fd);
	assert_true(wait_for(&st, 8, both_tracked));
	assert_int_equal(region_at(&st, anon)->dirty_bytes_total, total);
	anon[5 * PG] = 9;
	settle(&st);
	assert_int_equal(region_at(&st, anon)->dirty_bytes_total, total + PG);
}

/* GET @path from the attach library's HTTP endpoint; the body, malloc()ed. */
static char *http_get(int port, const char *path, int *status)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[256], *buf = malloc(1 << 20), *body;
	size_t got = 0;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_non_null(buf);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	assert_int_equal(write(s, req, strlen(req)), (ssize_t)strlen(req));
	for (ssize_t n; got < (1 << 20) - 1 && (n = read(s, buf + got, (1 << 20) - 1 - got)) > 0;)
		got += (size_t)n;
	close(s);
	buf[got] = 0;
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", status), 1);
	body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return buf;
}

static void test_http(void **unused)
{
	struct pgtool_attach_state st, parsed;
	char *body, line[160];
	int status;

	(void)unused;
	require_attached();
	assert_int_equal(state(&st), 0);
	body = http_get(st.http_port, "/metrics", &status);
	assert_int_equal(status, 200);
	snprintf(line, sizeof(line), "pgtrack_attach_info{version=\"%s\"", pgt_version());
	assert_non_null(strstr(body, line));
	snprintf(line, sizeof(line), "mapping=\"\"} %llu\n", (unsigned long long)ANON_SIZE);
	assert_non_null(strstr(body, line));
	assert_non_null(strstr(body, "mapping=\"/memfd:pgt-test-mem (deleted)\""));
	/* the engine's own families follow */
	assert_non_null(strstr(body, "pgtrack_region_touched_pages{region=\"ram0\""));
	free(body);
	body = http_get(st.http_port, "/json", &status);
	assert_int_equal(status, 200);
	/* the same schema as the state file, plus the engine's object */
	assert_int_equal(pgtool_attach_state_parse(body, strlen(body), &parsed), 0);
	assert_int_equal(parsed.nregions, 2);
	assert_non_null(strstr(body, "\"pgtrack\":{\"schema\":\"pgtrack-stats/1\""));
	free(body);
	body = http_get(st.http_port, "/nothing", &status);
	assert_int_equal(status, 404);
	free(body);
}

static void test_numa_tool(void **unused)
{
	char cmd[512], out[65536];

	(void)unused;
	require_attached();
	if (!numa_tool)
		pgt_skip("pgtrack-numa not built (no json-c)");
	snprintf(cmd, sizeof(cmd), "%s --pid %d 2>&1", numa_tool, (int)getpid());
	assert_int_equal(run_cmd(cmd, out, sizeof(out)), 0);
	/* the guest list comes from the library; pgtrack's lines for each */
	assert_non_null(strstr(out, "tracked by libpgtrack-attach in the process"));
	assert_non_null(strstr(out, "pgtrack-attach: attached"));
	assert_non_null(strstr(out, "/memfd:pgt-test-mem"));
	assert_non_null(strstr(out, "pgtrack (uffd-async): touched"));
	/* 100 freed - 40 reclaimed - 20 used again; 50 punched */
	assert_non_null(strstr(out, "released 160.0 KiB"));
	assert_non_null(strstr(out, "released 200.0 KiB"));
}

static void test_fork(void **unused)
{
	pid_t child;
	int status;

	(void)unused;
	require_attached();
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		struct pgtool_attach_state st;
		double end = now_s() + 10;

		/* the parent's threads did not come: the first wrapped call
		 * starts the library again in the child */
		madvise(anon, PG, MADV_WILLNEED);
		while (now_s() < end) {
			if (!state(&st) && st.pid == getpid() && both_tracked(&st))
				exit(0);
			sleep_ms(50);
		}
		exit(1);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static uint8_t *huge;

static bool huge_tracked(const struct pgtool_attach_state *st)
{
	return region_at(st, huge) != NULL;
}

/*
 * A hugetlb memfd (QEMU's memory-backend-memfd,hugetlb=on) mapped after
 * the start: found by the periodic look, tracked at 2 MiB, and a
 * punch-hole (QEMU's only discard on hugetlb: no REMOVE event) accounted
 * from residency.
 */
static void test_hugetlb(void **unused)
{
	struct pgtool_attach_state st0, st1;
	const struct pgtool_attach_region *r0, *r1;
	int fd;

	(void)unused;
	require_attached();
	if (pgt_test_free_hugepages() < 4)
		pgt_skip("fewer than 4 free 2 MiB hugepages");
	fd = memfd_create("pgt-test-huge", MFD_CLOEXEC | MFD_HUGETLB);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(8 * MIB)), 0);
	huge = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(huge != MAP_FAILED);
	assert_true(wait_for(&st0, 8, huge_tracked));
	r0 = region_at(&st0, huge);
	assert_string_equal(r0->backing, "hugetlb");
	assert_int_equal(r0->page_size, 2 * MIB);
	huge[0] = 1;
	huge[2 * MIB + 5] = 1;
	huge[4 * MIB + 7] = 1;
	settle(&st0);
	r0 = region_at(&st0, huge);
	assert_int_equal(r0->dirty_bytes_total, 6 * MIB);
	assert_int_equal(r0->touched_bytes, 6 * MIB);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(2 * MIB),
				   (off_t)(2 * MIB)), 0);
	settle(&st1);
	r1 = region_at(&st1, huge);
	assert_int_equal(r1->discarded_bytes - r0->discarded_bytes, 2 * MIB);
	assert_int_equal(r1->released_bytes - r0->released_bytes, 2 * MIB);
	munmap(huge, 8 * MIB);
	close(fd);
}

/* A process with bad settings: a clear message, and it runs as without. */
static void test_bad_settings(void **unused)
{
	static const struct {
		const char *env, *says;
	} cases[] = {
		{ "PGT_ATTACH_INTERVAL_MS=fast", "PGT_ATTACH_INTERVAL_MS=\"fast\": want a whole number" },
		{ "PGT_ATTACH_PORT=70000", "PGT_ATTACH_PORT=\"70000\"" },
		{ "PGT_ATTACH_INTERVAL_MS=100 PGT_ATTACH_EPOCH_MS=150",
		  "not a multiple of the sampling interval" },
		{ "PGT_ATTACH_DIRTY=mprotect", "trackers that stop vCPUs are not used" },
		{ "PGT_ATTACH_TRACK=touch", "that holds dirty" },
		{ "PGT_ATTACH_RAM=,", "want NAME-GLOB[@SIZE]" },
		{ "PGT_ATTACH_RAM=x@12Q", "want NAME-GLOB[@SIZE]" },
		{ "PGT_ATTACH_LOG=loud", "want quiet, error, warn, info or debug" },
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[2048], out[4096];

		/* this test program again, as a bare process that only prints */
		snprintf(cmd, sizeof(cmd), "env LD_PRELOAD='%s' PGT_ATTACH=1 %s '%s' --bare 2>&1",
			 getenv("LD_PRELOAD"), cases[i].env, self);
		assert_int_equal(run_cmd(cmd, out, sizeof(out)), 0);
		if (!strstr(out, cases[i].says) || !strstr(out, "still-runs"))
			fail_msg("%s: got \"%s\"", cases[i].env, out);
		assert_non_null(strstr(out, "not attaching"));
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_finds_ram),
		cmocka_unit_test(test_dirty_exact),
		cmocka_unit_test(test_release_anon),
		cmocka_unit_test(test_release_memfd),
		cmocka_unit_test(test_reclaim),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_numa_tool),
		cmocka_unit_test(test_step_aside),
		cmocka_unit_test(test_hugetlb),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_bad_settings),
	};

	if (argc > 1 && !strcmp(argv[1], "--bare")) {
		puts("still-runs");
		return 0;
	}
	self = argv[0];
	numa_tool = argc > 1 ? argv[1] : NULL;
	return cmocka_run_group_tests(tests, setup, NULL);
}
