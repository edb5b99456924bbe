/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-numa against a child process with a known layout: 64 MiB private
 * anonymous memory bound to node 0 with half touched, a hugetlb mapping, an
 * mlocked range and a 128 MiB shared memfd (what QEMU's memory backends
 * look like, so automatic detection picks it). The numbers the tool prints
 * (JSON) must be those; bad input must give a message and a non-zero exit.
 * Also the smaps/numa_maps parsers on the fixtures of tests/fixtures/numa.
 */
#include "tools/lib/pgtool.h"
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/mempolicy.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pgtrack.h>

#define MIB ((uint64_t)1 << 20)

/* ---- fixtures ---- */

/*
 * The source tree, from the build tree's meson-info (integration tests get
 * no PGT_SRCDIR): this binary is <build>/tests/test_numa_tool.
 */
static const char *srcdir(void)
{
	static char src[4096];
	char exe[4096], info[8192], buf[16384];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *k = "\"source\": \"";
	char *p, *e, *slash;
	FILE *f;
	size_t len;

	if (src[0])
		return src;
#ifdef PGT_SRCDIR
	snprintf(src, sizeof(src), "%s", PGT_SRCDIR);
	return src;
#endif
	assert_true(n > 0);
	exe[n] = 0;
	slash = strrchr(exe, '/');
	assert_non_null(slash);
	*slash = 0;
	snprintf(info, sizeof(info), "%s/../meson-info/meson-info.json", exe);
	f = fopen(info, "r");
	assert_non_null(f);
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	p = strstr(buf, k);
	assert_non_null(p);
	p += strlen(k);
	e = strchr(p, '"');
	assert_non_null(e);
	snprintf(src, sizeof(src), "%.*s", (int)(e - p), p);
	return src;
}

static char *slurp(const char *rel, size_t *len)
{
	char path[8192];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/tests/fixtures/numa/%s", srcdir(), rel);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static pgtool_procmap *parse_fixture(const char *smaps, const char *nmaps, int *err)
{
	size_t sl = 0, nl = 0;
	char *s = smaps ? slurp(smaps, &sl) : NULL, *n = nmaps ? slurp(nmaps, &nl) : NULL;
	pgtool_procmap *m = NULL;

	*err = pgtool_procmap_parse(s, sl, n, nl, &m);
	free(s);
	free(n);
	return m;
}

static const struct pgtool_mapping *at(const pgtool_procmap *m, uint64_t start)
{
	for (size_t i = 0; i < pgtool_procmap_count(m); i++)
		if (pgtool_procmap_get(m, i)->start == start)
			return pgtool_procmap_get(m, i);
	fail_msg("no mapping at %#" PRIx64, start);
	return NULL;
}

static void test_fixtures(void **state)
{
	const struct pgtool_mapping *mp;
	pgtool_procmap *m;
	size_t idx[4];
	int err;

	(void)state;
	m = parse_fixture("vm-1node/smaps", "vm-1node/numa_maps", &err);
	assert_int_equal(err, 0);
	mp = at(m, 0x7f0b9a600000);
	assert_true(mp->flags & PGTOOL_MAP_HUGETLB);
	assert_true(mp->flags & PGTOOL_MAP_SHARED);
	assert_true(mp->flags & PGTOOL_MAP_ANON);
	assert_int_equal(mp->page_size, 2 * MIB);
	assert_int_equal(mp->hugetlb, 4 * MIB);
	assert_int_equal(mp->rss, 4 * MIB);
	assert_int_equal(mp->node_bytes[0], 4 * MIB);
	assert_string_equal(mp->name, "/memfd:guest-ram (deleted)");
	mp = at(m, 0x7f0b96600000);
	assert_string_equal(mp->policy, "bind:0");
	assert_int_equal(mp->rss, 32 * MIB);
	assert_int_equal(mp->node_bytes[0], 32 * MIB);
	assert_int_equal(mp->end - mp->start, 64 * MIB);
	mp = at(m, 0x7f0b96200000);
	assert_int_equal(mp->locked, 4 * MIB);
	assert_true(mp->flags & PGTOOL_MAP_LOCKED);
	mp = at(m, 0x7f0b95200000);
	assert_string_equal(mp->name, "/memfd:vm ram (deleted)");
	assert_int_equal(mp->node_bytes[0], 8 * MIB);
	/* nothing shared or hugetlb of 64 MiB: the largest private anon */
	assert_int_equal(pgtool_procmap_guess_guest(m, 0, idx, 4), 1);
	assert_int_equal(pgtool_procmap_get(m, idx[0])->start, 0x7f0b96600000);
	/* down to 1 MiB: the hugetlb and the shared memfd */
	assert_int_equal(pgtool_procmap_guess_guest(m, MIB, idx, 4), 2);
	assert_int_equal(pgtool_procmap_get(m, idx[0])->start, 0x7f0b95200000);
	assert_int_equal(pgtool_procmap_get(m, idx[1])->start, 0x7f0b9a600000);
	pgtool_procmap_free(m);

	m = parse_fixture("vm-2node/smaps", "vm-2node/numa_maps", &err);
	assert_int_equal(err, 0);
	assert_int_equal(pgtool_procmap_count(m), 5);
	mp = at(m, 0x7f2000000000);
	assert_string_equal(mp->policy, "bind:0");
	assert_int_equal(mp->nnodes, 2);
	assert_int_equal(mp->node_bytes[0], 250 * 2 * MIB);
	assert_int_equal(mp->node_bytes[1], 6 * 2 * MIB);
	assert_int_equal(mp->rss, 512 * MIB);
	mp = at(m, 0x7f2040000000);
	assert_int_equal(mp->hugetlb, 512 * MIB);
	assert_int_equal(mp->locked, 512 * MIB);
	mp = at(m, 0x7f3000000000);
	assert_string_equal(mp->policy, "interleave:0-1");
	assert_int_equal(mp->anon_huge, 64 * MIB);
	assert_true(mp->flags & PGTOOL_MAP_THP);
	assert_int_equal(mp->node_bytes[1], 64 * MIB);
	mp = at(m, 0x7ffd00000000);
	assert_string_equal(mp->policy, "prefer (many):0-1");
	assert_true(mp->flags & PGTOOL_MAP_SPECIAL);
	assert_int_equal(pgtool_procmap_guess_guest(m, 0, idx, 4), 2);
	assert_int_equal(pgtool_procmap_get(m, idx[0])->start, 0x7f2000000000);
	assert_int_equal(pgtool_procmap_get(m, idx[1])->start, 0x7f2040000000);
	pgtool_procmap_free(m);

	/* numa_maps alone: mappings of their own, zero length */
	m = parse_fixture(NULL, "vm-2node/numa_maps", &err);
	assert_int_equal(err, 0);
	assert_int_equal(pgtool_procmap_count(m), 5);
	assert_int_equal(at(m, 0x7f2040000000)->node_bytes[1], 512 * MIB);
	pgtool_procmap_free(m);

	/* cut, garbage, text of another format: an error, never a crash */
	m = parse_fixture("truncated-smaps", NULL, &err);
	assert_int_equal(err, -EBADMSG);
	assert_null(m);
	m = parse_fixture("truncated-header", NULL, &err);
	assert_int_equal(err, -EBADMSG);
	m = parse_fixture("garbage", "garbage", &err);
	assert_int_equal(err, -EBADMSG);
	m = parse_fixture("garbage-text", NULL, &err);
	assert_int_equal(err, -EBADMSG);
	m = parse_fixture(NULL, "garbage-text", &err);
	assert_int_equal(err, -EBADMSG);
	/* a numa_maps line cut after a complete token still parses */
	m = parse_fixture("vm-1node/smaps", "truncated-numa_maps", &err);
	assert_int_equal(err, 0);
	pgtool_procmap_free(m);
	assert_int_equal(pgtool_procmap_parse(NULL, 5, NULL, 0, &m), -EINVAL);
	assert_int_equal(pgtool_procmap_parse(NULL, 0, NULL, 0, NULL), -EINVAL);
	assert_int_equal(pgtool_procmap_parse(NULL, 0, NULL, 0, &m), 0);
	assert_int_equal(pgtool_procmap_count(m), 0);
	assert_null(pgtool_procmap_get(m, 0));
	pgtool_procmap_free(m);
}

/* ---- the child ---- */

struct layout {
	uint64_t anon, huge, locked, shared;
	size_t huge_len;
	int really_locked; /* ASan's mlock() interceptor returns 0 and locks nothing */
};

/* VmLck of this process in bytes, from /proc/self/status. */
static uint64_t vmlck(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb << 10;
}

static pid_t child_pid;
static int child_hold = -1;
static struct layout lay;

static void child_main(int out, int hold)
{
	unsigned long mask = 1;
	struct layout l = { 0 };
	char *a, *c, *d, *h = MAP_FAILED;
	int fd;

	/*
	 * 2 MiB more, unmapped again: test_bad_input needs a hole after the
	 * anonymous mapping. Kernels before 6.7 do not align large anonymous
	 * mappings to 2 MiB, so the next mapping would otherwise start right at
	 * its end. None of the later mappings fits into 2 MiB.
	 */
	a = mmap(NULL, 66 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || munmap(a + 64 * MIB, 2 * MIB) ||
	    syscall(SYS_mbind, a, 64 * MIB, MPOL_BIND, &mask, 64, 0))
		_exit(3);
	/* 4 KiB pages, so rss is exactly what was written (THP enabled=always) */
	if (madvise(a, 64 * MIB, MADV_NOHUGEPAGE))
		_exit(3);
	memset(a, 1, 32 * MIB);
	if (pgt_test_free_hugepages() >= 4) {
		h = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (h != MAP_FAILED) {
			memset(h, 2, 8 * MIB);
			l.huge = (uintptr_t)h;
			l.huge_len = 8 * MIB;
		}
	}
	c = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED || mlock(c, 4 * MIB))
		_exit(4);
	fd = memfd_create("guest ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 128 * MIB))
		_exit(5);
	d = mmap(NULL, 128 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (d == MAP_FAILED)
		_exit(6);
	memset(d, 3, 16 * MIB);
	l.anon = (uintptr_t)a;
	l.locked = (uintptr_t)c;
	l.really_locked = vmlck() >= 4 * MIB;
	l.shared = (uintptr_t)d;
	if (write(out, &l, sizeof(l)) != sizeof(l))
		_exit(7);
	/* hold the layout until the parent closes the pipe */
	while (read(hold, &mask, 1) > 0)
		;
	_exit(0);
}

static int start_child(void **state)
{
	int p1[2], p2[2];

	(void)state;
	if (pipe(p1) || pipe(p2))
		return -1;
	child_pid = fork();
	if (child_pid < 0)
		return -1;
	if (!child_pid) {
		close(p1[0]);
		close(p2[1]);
		child_main(p1[1], p2[0]);
	}
	close(p1[1]);
	close(p2[0]);
	child_hold = p2[1];
	if (read(p1[0], &lay, sizeof(lay)) != sizeof(lay))
		return -1;
	close(p1[0]);
	return 0;
}

static int stop_child(void **state)
{
	int st;

	(void)state;
	close(child_hold);
	waitpid(child_pid, &st, 0);
	return 0;
}

/* ---- running the tool ---- */

static char tool[8192];

static bool find_tool(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return false;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return false;
	*slash = 0;
	snprintf(tool, sizeof(tool), "%s/../tools/pgtrack-numa", exe);
	return access(tool, X_OK) == 0;
}

struct result {
	int status;       /* exit code, or 128 + signal */
	char *out, *err;
};

static char *drain(int fd)
{
	size_t len = 0, cap = 65536;
	char *b = malloc(cap + 1);
	ssize_t n;

	while ((n = read(fd, b + len, cap - len)) > 0) {
		len += (size_t)n;
		if (len == cap)
			b = realloc(b, (cap *= 2) + 1);
	}
	b[len] = 0;
	close(fd);
	return b;
}

/* Run the tool with @args (NULL-terminated), as user @uid when >= 0. */
static struct result run(int uid, const char *const *args)
{
	const char *argv[32];
	int po[2], pe[2], st;
	struct result r;
	pid_t pid;
	unsigned n = 0;

	argv[n++] = tool;
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	assert_int_equal(pipe(po), 0);
	assert_int_equal(pipe(pe), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		if (uid >= 0 && (setgid((gid_t)uid) || setuid((uid_t)uid)))
			_exit(99);
		execv(tool, (char *const *)argv);
		_exit(98);
	}
	close(po[1]);
	close(pe[1]);
	/* stderr is small; stdout may be large: read stdout first */
	r.out = drain(po[0]);
	r.err = drain(pe[0]);
	waitpid(pid, &st, 0);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return r;
}

static void done(struct result *r)
{
	free(r->out);
	free(r->err);
}

/* End of the JSON value starting at @p (object or array), skipping strings. */
static const char *value_end(const char *p)
{
	int depth = 0;
	bool str = false;

	for (; *p; p++) {
		if (str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				str = false;
			continue;
		}
		if (*p == '"')
			str = true;
		else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
	}
	return p;
}

/*
 * The JSON object inside array @section ("guest", "mappings") whose "start"
 * is @start, copied out; NULL when absent.
 */
static char *object_at(const char *doc, const char *section, uint64_t start)
{
	char key[64], want[64];
	const char *s, *e, *hit;

	snprintf(key, sizeof(key), "\"%s\":", section);
	s = strstr(doc, key);
	if (!s)
		return NULL;
	s = strchr(s, '[');
	e = value_end(s);
	snprintf(want, sizeof(want), "\"start\":%" PRIu64 ",", start);
	hit = strstr(s, want);
	if (!hit || hit > e)
		return NULL;
	while (hit > s && *hit != '{')
		hit--;
	e = value_end(hit);
	return strndup(hit, (size_t)(e - hit));
}

/* Number after "key": in @obj (first occurrence after @from, if given). */
static int64_t num(const char *obj, const char *from, const char *key)
{
	char k[64];
	const char *p = from ? strstr(obj, from) : obj;

	assert_non_null(p);
	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(p, k);
	if (!p)
		fail_msg("no \"%s\" in %s", key, obj);
	return strtoll(p + strlen(k), NULL, 10);
}

static bool has(const char *obj, const char *text)
{
	return strstr(obj, text) != NULL;
}

static void need_tool(void)
{
	if (!find_tool())
		pgt_skip("pgtrack-numa was not built (tools need json-c)");
}

static void test_layout_json(void **state)
{
	char pid[16], range[64];
	struct result r;
	char *o;

	(void)state;
	need_tool();
	snprintf(pid, sizeof(pid), "%d", child_pid);
	r = run(-1, (const char *[]){ "--pid", pid, "--json", "--all", NULL });
	assert_int_equal(r.status, 0);
	assert_true(has(r.out, "\"schema\":\"pgtrack-numa/1\""));

	o = object_at(r.out, "mappings", lay.anon);
	assert_non_null(o);
	assert_int_equal(num(o, NULL, "size"), 64 * MIB);
	assert_int_equal(num(o, NULL, "rss"), 32 * MIB);
	assert_int_equal(num(o, NULL, "page_size"), 4096);
	assert_true(has(o, "\"policy\":\"bind:0\""));
	assert_true(has(o, "\"hugetlb\":false"));
	assert_int_equal(num(o, "\"numa_maps_nodes\"", "bytes"), 32 * MIB);
	free(o);

	o = object_at(r.out, "mappings", lay.locked);
	assert_non_null(o);
	if (lay.really_locked) {
		assert_int_equal(num(o, NULL, "locked"), 4 * MIB);
		assert_int_equal(num(o, NULL, "rss"), 4 * MIB);
	} else {
		pgt_test_note("mlock() locked nothing (a sanitizer's interceptor): locked range not checked");
	}
	free(o);

	if (lay.huge) {
		o = object_at(r.out, "mappings", lay.huge);
		assert_non_null(o);
		assert_true(has(o, "\"hugetlb\":true"));
		assert_int_equal(num(o, NULL, "page_size"), 2 * MIB);
		assert_int_equal(num(o, NULL, "rss"), 8 * MIB);
		free(o);
	} else {
		pgt_test_note("no free hugepages: hugetlb mapping not checked");
	}

	/* automatic guest RAM: the 128 MiB shared memfd, not the private anon */
	o = object_at(r.out, "guest", lay.shared);
	assert_non_null(o);
	assert_true(has(o, "\"source\":\"auto\""));
	assert_int_equal(num(o, NULL, "size"), 128 * MIB);
	assert_int_equal(num(o, NULL, "resident"), 16 * MIB);
	assert_int_equal(num(o, NULL, "absent"), 112 * MIB);
	assert_true(has(o, "/memfd:guest ram"));
	free(o);
	assert_null(object_at(r.out, "guest", lay.anon));
	assert_true(num(r.out, "\"process\"", "rss") >= (int64_t)(52 * MIB));
	assert_true(has(r.out, "\"key\":\"rss_vmm\""));
	assert_true(has(r.out, "\"hugepages\":["));
	done(&r);

	/* --range: the bound anonymous mapping, checked with move_pages */
	snprintf(range, sizeof(range), "%#" PRIx64 "-%#" PRIx64, lay.anon, lay.anon + 64 * MIB);
	r = run(-1, (const char *[]){ "--pid", pid, "--json", "--range", range, NULL });
	assert_int_equal(r.status, 0);
	o = object_at(r.out, "guest", lay.anon);
	assert_non_null(o);
	assert_true(has(o, "\"source\":\"range\""));
	assert_int_equal(num(o, NULL, "intended_node"), 0);
	assert_int_equal(num(o, NULL, "resident"), 32 * MIB);
	assert_int_equal(num(o, NULL, "misplaced"), 0);
	assert_int_equal(num(o, "\"nodes\":[", "resident"), 32 * MIB);
	free(o);
	done(&r);

	/* a range inside a mapping */
	snprintf(range, sizeof(range), "%#" PRIx64 "-%#" PRIx64, lay.anon + 30 * MIB,
		 lay.anon + 34 * MIB);
	r = run(-1, (const char *[]){ "--pid", pid, "--json", "--range", range, NULL });
	assert_int_equal(r.status, 0);
	o = object_at(r.out, "guest", lay.anon + 30 * MIB);
	assert_non_null(o);
	assert_int_equal(num(o, NULL, "size"), 4 * MIB);
	assert_int_equal(num(o, NULL, "resident"), 2 * MIB);
	free(o);
	done(&r);
}

static void test_views(void **state)
{
	char pid[16], svg[] = "/tmp/pgt-numa-XXXXXX";
	struct result r;
	char *nl;
	int fd;

	(void)state;
	need_tool();
	snprintf(pid, sizeof(pid), "%d", child_pid);
	r = run(-1, (const char *[]){ "--pid", pid, NULL });
	assert_int_equal(r.status, 0);
	assert_true(has(r.out, "NUMA nodes"));
	assert_true(has(r.out, "Guest memory"));
	assert_true(has(r.out, "/memfd:guest ram"));
	assert_true(has(r.out, "Reconciliation"));
	assert_string_equal(r.err, "");
	done(&r);

	fd = mkstemp(svg);
	assert_true(fd >= 0);
	close(fd);
	r = run(-1, (const char *[]){ "--pid", pid, "--svg", svg, NULL });
	assert_int_equal(r.status, 0);
	done(&r);
	{
		size_t len;
		FILE *f = fopen(svg, "r");
		char buf[65536];

		assert_non_null(f);
		len = fread(buf, 1, sizeof(buf) - 1, f);
		buf[len] = 0;
		fclose(f);
		assert_true(!strncmp(buf, "<svg", 4));
		assert_true(has(buf, "</svg>"));
		assert_true(has(buf, "node 0"));
		assert_true(has(buf, "#1f77b4")); /* node 0's resident pages */
		assert_true(has(buf, "#dddddd")); /* and the absent ones */
	}
	unlink(svg);

	r = run(-1, (const char *[]){ "--pid", pid, "--json", "--watch", "1", "--count", "2", NULL });
	assert_int_equal(r.status, 0);
	nl = strchr(r.out, '\n');
	assert_non_null(nl);
	assert_int_equal(r.out[0], '{');
	assert_int_equal(nl[1], '{');
	assert_non_null(strchr(nl + 1, '\n'));
	assert_int_equal(*(strchr(nl + 1, '\n') + 1), 0);
	done(&r);
}

static void expect(const char *const *args, int status, const char *msg)
{
	struct result r = run(-1, args);

	if (r.status != status || !has(r.err, msg))
		fail_msg("%s %s: exit %d (want %d), stderr \"%s\" (want \"%s\")", args[0],
			 args[1] ? args[1] : "", r.status, status, r.err, msg);
	assert_false(r.status >= 128);
	done(&r);
}

static void test_bad_input(void **state)
{
	char pid[16], range[64];
	struct result r;

	(void)state;
	need_tool();
	snprintf(pid, sizeof(pid), "%d", child_pid);
	expect((const char *[]){ "--pid", "2147483647", NULL }, 1, "no such process");
	expect((const char *[]){ "--pid", "abc", NULL }, 2, "bad process id");
	expect((const char *[]){ "--pid", "-5", NULL }, 2, "bad process id");
	expect((const char *[]){ "--pid", "0", NULL }, 2, "bad process id");
	expect((const char *[]){ "--pid", pid, "--range", "0x3000-0x1000", NULL }, 2, "bad range");
	expect((const char *[]){ "--pid", pid, "--range", "0x1001-0x3000", NULL }, 2, "bad range");
	expect((const char *[]){ "--pid", pid, "--range", "zzz", NULL }, 2, "bad range");
	expect((const char *[]){ "--pid", pid, "--range", "0x1000-0x3000", NULL }, 1,
	       "is not mapped");
	snprintf(range, sizeof(range), "%#" PRIx64 "-%#" PRIx64, lay.anon, lay.anon + 65 * MIB);
	expect((const char *[]){ "--pid", pid, "--range", range, NULL }, 1, "is not mapped");
	expect((const char *[]){ "--pid", pid, "--watch", "0", NULL }, 2, "bad --watch");
	expect((const char *[]){ "--pid", pid, "--count", "3", NULL }, 2, "--count needs --watch");
	expect((const char *[]){ "--pid", pid, "--min-size", "12Q", NULL }, 2, "bad size");
	expect((const char *[]){ "--pid", pid, "--svg", "/nonexistent/dir/x.svg", NULL }, 1,
	       "cannot write");
	expect((const char *[]){ "--bogus", NULL }, 2, "unrecognized option");
	expect((const char *[]){ "--pid", NULL }, 2, "requires an argument");
	expect((const char *[]){ NULL }, 2, "--pid PID or --demo SIZE is required");
	expect((const char *[]){ "--pid", pid, "--demo", "64M", NULL }, 2, "exclude each other");
	expect((const char *[]){ "--pid", pid, "extra", NULL }, 2, "unexpected argument");
	expect((const char *[]){ "--demo", "3M", NULL }, 1, "multiple of 2 MiB");

	r = run(-1, (const char *[]){ "--help", NULL });
	assert_int_equal(r.status, 0);
	assert_true(has(r.out, "Usage: "));
	done(&r);
}

/* Whether user @uid may execute the tool (a build under /root is not). */
static bool can_exec_as(int uid)
{
	int st;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid)
		_exit(setgid((gid_t)uid) || setuid((uid_t)uid) || access(tool, X_OK) ? 1 : 0);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* A process we may not read: the tool as nobody against root's child. */
static void test_unreadable_process(void **state)
{
	char pid[16];
	struct result r;

	(void)state;
	need_tool();
	if (geteuid() != 0)
		pgt_skip("not root: cannot run the tool as another user");
	if (!can_exec_as(65534))
		pgt_skip("user nobody cannot execute %s (a directory on its path is closed "
			 "to others, e.g. a build under /root)", tool);
	snprintf(pid, sizeof(pid), "%d", child_pid);
	r = run(65534, (const char *[]){ "--pid", pid, NULL });
	assert_int_equal(r.status, 1);
	assert_true(has(r.err, "not allowed"));
	done(&r);
}

/* --demo: a region pgtrack tracks, reported with its counters. */
static void test_demo(void **state)
{
	struct result r;

	(void)state;
	need_tool();
	if (!pgt_test_have_uffd())
		pgt_skip("userfaultfd not available: no touch tracking for --demo");
	r = run(-1, (const char *[]){ "--demo", "64M", "--json", NULL });
	assert_int_equal(r.status, 0);
	assert_true(has(r.out, "\"source\":\"pgtrack\""));
	assert_true(has(r.out, "\"tracked\":{"));
	/* half touched, then 2 MiB released */
	assert_int_equal(num(r.out, "\"tracked\":{", "touched"), 30 * MIB);
	assert_int_equal(num(r.out, "\"tracked\":{", "released"), 2 * MIB);
	/* 16 MiB written; the 2 MiB released among them changed again (zero):
	 * still in the harvest (issue 11) */
	assert_int_equal(num(r.out, "\"tracked\":{", "dirty_last_harvest"), 16 * MIB);
	assert_int_equal(num(r.out, "\"guest\":[", "resident"), 30 * MIB);
	done(&r);
}

/* --prometheus: the report on /metrics, measured anew per scrape. */
static void test_prometheus(void **state)
{
	int errp[2], st;
	char line[512], *body;
	unsigned port = 0;
	pid_t pid;
	FILE *ef;

	(void)state;
	need_tool();
	if (!pgt_test_have_uffd())
		pgt_skip("userfaultfd not available: no touch tracking for --demo");
	assert_int_equal(pipe(errp), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int nul = open("/dev/null", O_WRONLY);

		dup2(nul, 1);
		dup2(errp[1], 2);
		close(errp[0]);
		execl(tool, tool, "--demo", "64M", "--prometheus", "0", (char *)NULL);
		_exit(127);
	}
	close(errp[1]);
	ef = fdopen(errp[0], "r");
	assert_non_null(ef);
	while (fgets(line, sizeof(line), ef)) {
		if (strstr(line, "without libmicrohttpd")) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fclose(ef);
			pgt_skip("pgtrack-numa built without libmicrohttpd");
		}
		if (sscanf(line, "%*[^:]: /metrics on http://127.0.0.1:%u", &port) == 1)
			break;
	}
	assert_true(port > 0 && port < 65536);
	body = pgt_test_http_get(port, "/metrics", 30);
	assert_non_null(body);
	assert_non_null(strstr(body, " 200 "));
	assert_non_null(strstr(body, "# TYPE pgtrack_numa_info gauge"));
	assert_non_null(strstr(body, "pgtrack_numa_guest_bytes{"));
	/* the demo's region is pgtrack's own: its figures are there */
	assert_non_null(strstr(body, "pgtrack_numa_tracked_bytes{"));
	assert_non_null(strstr(body, "kind=\"touched\"} 31457280"));
	assert_non_null(strstr(body, "pgtrack_numa_reconcile_bytes{key=\"rss\"}"));
	free(body);
	kill(pid, SIGINT);
	while (fgets(line, sizeof(line), ef))
		;
	fclose(ef);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test_setup_teardown(test_layout_json, start_child, stop_child),
		cmocka_unit_test_setup_teardown(test_views, start_child, stop_child),
		cmocka_unit_test_setup_teardown(test_bad_input, start_child, stop_child),
		cmocka_unit_test_setup_teardown(test_unreadable_process, start_child, stop_child),
		cmocka_unit_test(test_demo),
		cmocka_unit_test(test_prometheus),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("numa_tool", tests, NULL, NULL);
}
