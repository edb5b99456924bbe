/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim, run as a user runs it: bad input gets a clear message and a
 * non-zero exit, --help works, and short runs of every scenario produce a
 * report whose figures agree with each other (pages sent >= pages dirtied,
 * the destination equals the source, released memory shows on the host,
 * the heat map adds up to the timeline...), one test per report field.
 *
 * The binary is found next to this test (../tools/pgtrack-sim) or in
 * $PGT_SIM. The JSON is parsed with json-c, loaded at run time (the test
 * binaries do not link it).
 */
#include "tests/common/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

/* Member by dotted path ("balloon.target_bytes"); fails the test if absent. */
static json_object *jp(json_object *o, const char *path)
{
	char buf[256], *save = NULL, *k;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
		json_object *v = NULL;

		if (!o || !json_object_object_get_ex(o, k, &v))
			fail_msg("report has no \"%s\" (in %s)", k, path);
		o = v;
	}
	return o;
}

static uint64_t ju(json_object *o, const char *path)
{
	json_object *v = jp(o, path);

	if (json_object_get_type(v) != json_type_int)
		fail_msg("%s is not an integer", path);
	return json_object_get_uint64(v);
}

static double jd(json_object *o, const char *path)
{
	json_object *v = jp(o, path);

	if (json_object_get_type(v) != json_type_int && json_object_get_type(v) != json_type_double)
		fail_msg("%s is not a number", path);
	return json_object_get_double(v);
}

static bool jb(json_object *o, const char *path)
{
	json_object *v = jp(o, path);

	if (json_object_get_type(v) != json_type_boolean)
		fail_msg("%s is not a boolean", path);
	return json_object_get_boolean(v);
}

static const char *js(json_object *o, const char *path)
{
	json_object *v = jp(o, path);

	if (json_object_get_type(v) != json_type_string)
		fail_msg("%s is not a string", path);
	return json_object_get_string(v);
}

static json_object *ja(json_object *o, const char *path)
{
	json_object *v = jp(o, path);

	if (json_object_get_type(v) != json_type_array)
		fail_msg("%s is not an array", path);
	return v;
}

#define jlen(a) json_object_array_length(a)
#define jat(a, i) json_object_array_get_idx((a), (size_t)(i))

/* ---- running the tool ---- */

static char sim_path[PATH_MAX];
static char tmpdir[] = "/tmp/pgt-test-sim-XXXXXX";

struct run {
	int status;    /* exit code, or 128 + signal */
	char out[65536];
	char err[65536];
};

static void slurp_fd(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
}

/* Run pgtrack-sim with @args (NULL-terminated), capture both streams. */
static void run_sim(struct run *r, const char *const *args)
{
	const char *argv[64];
	char of[PATH_MAX], ef[PATH_MAX];
	int ofd, efd, st;
	size_t n = 0;
	pid_t pid;

	argv[n++] = sim_path;
	while (args[n - 1] && n < 63) {
		argv[n] = args[n - 1];
		n++;
	}
	argv[n] = NULL;
	snprintf(of, sizeof(of), "%s/stdout", tmpdir);
	snprintf(ef, sizeof(ef), "%s/stderr", tmpdir);
	ofd = open(of, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	efd = open(ef, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(ofd >= 0 && efd >= 0);
	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		dup2(ofd, 1);
		dup2(efd, 2);
		execv(sim_path, (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp_fd(ofd, r->out, sizeof(r->out));
	slurp_fd(efd, r->err, sizeof(r->err));
	close(ofd);
	close(efd);
}

static void expect_fail(const char *const *args, int status, const char *msg)
{
	static struct run r;

	run_sim(&r, args);
	if (r.status != status || !strstr(r.err, msg)) {
		pgt_test_note("stderr: %s", r.err);
		fail_msg("pgtrack-sim %s ...: exit %d (want %d), stderr lacks \"%s\"", args[0],
			 r.status, status, msg);
	}
	/* never a crash: a message, no signal */
	assert_true(r.status < 128);
}

/* ---- fixture: two reported runs, done once ---- */

struct report {
	json_object *j;
	char json[PATH_MAX];
	char svg[PATH_MAX];
	char out[65536];
	bool hugetlb;
	uint64_t npages, page_size, memory;
};

static struct report A;  /* every scenario, default backing (hugetlb or thp) */
static struct report B;  /* every scenario on THP, 4 KiB tracking */

static int do_report(struct report *rep, const char *name, const char *backing)
{
	static struct run r;
	const char *args[] = {
		"--duration", "4", "--memory", "128M", "--interval", "0.5", "--link", "10,100",
		"--backing", backing, "--json", rep->json, "--svg", rep->svg, NULL,
	};

	snprintf(rep->json, sizeof(rep->json), "%s/%s.json", tmpdir, name);
	snprintf(rep->svg, sizeof(rep->svg), "%s/%s.svg", tmpdir, name);
	run_sim(&r, args);
	if (r.status) {
		pgt_test_note("pgtrack-sim %s exited %d:\n%s", name, r.status, r.err);
		return 0; /* the field tests then fail, naming what is missing */
	}
	snprintf(rep->out, sizeof(rep->out), "%s", r.out);
	if (getenv("PGT_VM"))
		pgt_test_note("pgtrack-sim %s:\n%s\nstderr:\n%s", name, r.out, r.err);
	rep->j = json_object_from_file(rep->json);
	if (!rep->j)
		return 0;
	rep->hugetlb = !strcmp(js(rep->j, "guest.backing"), "hugetlb");
	rep->npages = ju(rep->j, "guest.pages");
	rep->page_size = ju(rep->j, "guest.page_size_bytes");
	rep->memory = ju(rep->j, "guest.memory_bytes");
	return 0;
}

static bool have_sim;
static const char *skip_why;

static int setup(void **state)
{
	const char *env = getenv("PGT_SIM");
	char self[PATH_MAX];
	ssize_t n;

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	if (env && *env) {
		snprintf(sim_path, sizeof(sim_path), "%s", env);
	} else {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return -1;
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		if (strlen(self) + 32 > sizeof(sim_path))
			return -1;
		memcpy(sim_path, self, strlen(self));
		strcpy(sim_path + strlen(self), "/../tools/pgtrack-sim");
	}
	have_sim = access(sim_path, X_OK) == 0;
	if (!have_sim) {
		skip_why = "pgtrack-sim not built (needs json-c)";
		return 0;
	}
	if (!pgt_test_have_uffd()) {
		skip_why = "userfaultfd unavailable: no dirty tracking";
		return 0;
	}
	do_report(&A, "auto", "auto");
	do_report(&B, "thp", "thp");
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	if (A.j)
		json_object_put(A.j);
	if (B.j)
		json_object_put(B.j);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd))
		return 0;
	return 0;
}

#define NEED_SIM()                                                          \
	do {                                                                \
		if (!have_sim)                                              \
			pgt_skip("%s", skip_why);                           \
	} while (0)

#define NEED_RUNS()                                                         \
	do {                                                                \
		NEED_SIM();                                                 \
		if (skip_why)                                               \
			pgt_skip("%s", skip_why);                           \
		if (!A.j || !B.j)                                           \
			fail_msg("a scenario run produced no report");      \
	} while (0)

#define EACH(rep) for (struct report *rep = &A; rep; rep = rep == &A ? &B : NULL)

/* ---- bad input, help ---- */

static void test_help(void **state)
{
	static struct run r;
	static const char *const opts[] = {
		"--duration", "--memory", "--vcpus", "--backing", "--workloads", "--link",
		"--downtime", "--target", "--config", "--json", "--svg", "--prometheus", "--help",
		"--no-zero-markers",
	};
	const char *args[] = { "--help", NULL };

	(void)state;
	NEED_SIM();
	run_sim(&r, args);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage:"));
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (!strstr(r.out, opts[i]))
			fail_msg("--help does not mention %s", opts[i]);
}

static void test_version_and_dump(void **state)
{
	static struct run r;
	const char *v[] = { "--version", NULL };
	const char *d[] = { "--dump-config", NULL };

	(void)state;
	NEED_SIM();
	run_sim(&r, v);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "pgtrack-sim "));
	run_sim(&r, d);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "memory = 512M"));
	assert_non_null(strstr(r.out, "vcpus = 2"));
	assert_non_null(strstr(r.out, "duration = 30s"));
}

static void test_bad_options(void **state)
{
	(void)state;
	NEED_SIM();
	expect_fail((const char *[]){ "--bogus", NULL }, 2, "unrecognized option");
	expect_fail((const char *[]){ "--memory", "12x", NULL }, 2, "memory: bad size '12x'");
	expect_fail((const char *[]){ "--memory", "3M", NULL }, 2, "memory");
	expect_fail((const char *[]){ "--vcpus", "0", NULL }, 2, "vcpus: bad integer");
	expect_fail((const char *[]){ "--vcpus", "-3", NULL }, 2, "vcpus: bad integer");
	expect_fail((const char *[]){ "--duration", "soon", NULL }, 2, "duration: bad duration");
	expect_fail((const char *[]){ "--backing", "floppy", NULL }, 2, "backing: unknown");
	expect_fail((const char *[]){ "--workloads", "zipf+nope", NULL }, 2,
		    "unknown workload 'nope'");
	expect_fail((const char *[]){ "--workloads", "zipf,zipf,zipf", NULL }, 2,
		    "3 workload groups for 2 vCPUs");
	expect_fail((const char *[]){ "--link", "fast", NULL }, 2, "bad link speed");
	expect_fail((const char *[]){ "--target", "2G", NULL }, 2, "above memory");
	expect_fail((const char *[]){ "--set", "nokey=1", NULL }, 2, "unknown key 'nokey'");
	expect_fail((const char *[]){ "--set", "novalue", NULL }, 2, "KEY=VALUE");
	expect_fail((const char *[]){ "--prometheus", "70000", NULL }, 2, "bad port");
	expect_fail((const char *[]){ "--prometheus", "http", NULL }, 2, "bad port");
	expect_fail((const char *[]){ "fly", NULL }, 2, "unknown scenario 'fly'");
	expect_fail((const char *[]){ "--duration", NULL }, 2, "requires an argument");
}

static void test_bad_config_file(void **state)
{
	char path[PATH_MAX];
	FILE *f;

	(void)state;
	NEED_SIM();
	expect_fail((const char *[]){ "--config", "/nonexistent/sim.conf", NULL }, 2,
		    "No such file");
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("# fine\nmemory = 256M\n\nthis line has no equals sign\n", f);
	fclose(f);
	expect_fail((const char *[]){ "--config", path, NULL }, 2, "bad.conf:4: expected 'key = value'");
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("memory = 256M\nzipf.theta = lots\n", f);
	fclose(f);
	expect_fail((const char *[]){ "--config", path, NULL }, 2, "bad.conf:2: zipf.theta: bad number");
}

static void test_bad_output(void **state)
{
	(void)state;
	NEED_SIM();
	expect_fail((const char *[]){ "--json", "/nonexistent/dir/r.json", NULL }, 1, "--json");
	expect_fail((const char *[]){ "--svg", "/nonexistent/dir/r.svg", NULL }, 1, "--svg");
}

/* --version says whether this build serves /metrics (libmicrohttpd). */
static void need_metrics(void)
{
	static struct run r;
	const char *v[] = { "--version", NULL };

	run_sim(&r, v);
	assert_int_equal(r.status, 0);
	if (strstr(r.out, "/metrics: no"))
		pgt_skip("pgtrack-sim was built without libmicrohttpd: no /metrics");
	assert_non_null(strstr(r.out, "/metrics: yes"));
}

static void test_port_in_use(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	char port[16];
	int fd;

	(void)state;
	NEED_SIM();
	need_metrics();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
	expect_fail((const char *[]){ "--prometheus", port, "--duration", "1", "--memory", "64M",
				      NULL }, 1, "is in use");
	close(fd);
}

/* /metrics while a guest runs: start it, read the port it printed, GET. */
static void test_prometheus(void **state)
{
	int errp[2], st;
	char buf[8192], *p, *body = NULL;
	unsigned port = 0;
	pid_t pid;
	FILE *ef;

	(void)state;
	NEED_SIM();
	need_metrics();
	if (skip_why)
		pgt_skip("%s", skip_why);
	assert_int_equal(pipe(errp), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int nul = open("/dev/null", O_WRONLY);

		dup2(nul, 1);
		dup2(errp[1], 2);
		close(errp[0]);
		execl(sim_path, sim_path, "--prometheus", "0", "--duration", "3", "--memory", "64M",
		      "--no-device", "snapshot", (char *)NULL);
		_exit(127);
	}
	close(errp[1]);
	ef = fdopen(errp[0], "r");
	assert_non_null(ef);
	while (fgets(buf, sizeof(buf), ef))
		if (sscanf(buf, "serving http://127.0.0.1:%u/metrics", &port) == 1)
			break;
	assert_true(port > 0 && port < 65536);
	/* 503 until the guest exists */
	body = pgt_test_http_get(port, "/metrics", 50);
	assert_non_null(body);
	assert_non_null(strstr(body, "HTTP/1.0 200") ? body : strstr(body, "HTTP/1.1 200"));
	assert_non_null(strstr(body, "text/plain; version=0.0.4"));
	assert_non_null(strstr(body, "# TYPE pgtrack_region_pages gauge"));
	p = strstr(body, "pgtrack_region_pages{region=\"guest-ram\",backing=\"");
	assert_non_null(p);
	assert_non_null(strstr(body, "\npgtrack_regions 1\n"));
	assert_non_null(strstr(body, "\npgtrack_sim_elapsed_seconds "));
	assert_non_null(strstr(body, "# TYPE pgtrack_sim_host_rss_bytes gauge"));
	free(body);
	while (fgets(buf, sizeof(buf), ef))
		;
	fclose(ef);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- report fields ---- */

/*
 * Run pgtrack-sim with @args (which write the report to @path) for a run
 * with one migration; returns the report (json_object_put() it) and its
 * migration in *@m, whose destination must be identical to the source.
 */
static json_object *run_one_migration(const char *const *args, const char *path,
				      json_object **m)
{
	static struct run r;
	json_object *j;

	run_sim(&r, args);
	if (r.status)
		fail_msg("pgtrack-sim exited %d:\n%s", r.status, r.err);
	j = json_object_from_file(path);
	assert_non_null(j);
	assert_int_equal(jlen(ja(j, "migrations")), 1);
	*m = jat(ja(j, "migrations"), 0);
	assert_true(jb(*m, "verified"));
	assert_int_equal(ju(*m, "verify_mismatch"), 0);
	return j;
}

/*
 * The demo's point on hugetlb (issue 13): the default scenario's 10 Gbit/s
 * migration converges with 4 KiB refinement and not without it, the
 * destination identical both times. Shortened to 8 s (the migration runs
 * early); about 10 s a run.
 */
static void test_refine_converges(void **state)
{
	char path[2][PATH_MAX];
	json_object *m[2], *j[2];

	(void)state;
	NEED_SIM();
	if (skip_why)
		pgt_skip("%s", skip_why);
	if (pgt_test_free_hugepages() < 300)
		pgt_skip("needs 300 free 2 MiB hugepages for a 512 MiB guest, %ld free",
			 pgt_test_free_hugepages());
	for (int i = 0; i < 2; i++) {
		const char *args[] = {
			"--backing", "hugetlb", "--duration", "8", "--link", "10",
			"--json", path[i], i ? "--no-refine" : NULL, NULL,
		};

		snprintf(path[i], sizeof(path[i]), "%s/refine%d.json", tmpdir, i);
		j[i] = run_one_migration(args, path[i], &m[i]);
		pgt_test_note("refine %s: converged %d after %llu rounds, %llu bytes sent "
			      "(whole pages: %llu)", i ? "off" : "on", jb(m[i], "converged"),
			      (unsigned long long)ju(m[i], "rounds_count"),
			      (unsigned long long)ju(m[i], "bytes_sent"),
			      (unsigned long long)ju(m[i], "bytes_sent_whole_pages"));
	}
	assert_true(jb(m[0], "refine"));
	assert_int_equal(ju(m[0], "granule_bytes"), 4096);
	assert_false(jb(m[1], "refine"));
	assert_true(jb(m[0], "converged"));
	assert_false(jb(m[1], "converged"));
	assert_true(ju(m[0], "bytes_sent") < ju(m[1], "bytes_sent"));
	assert_true(ju(m[0], "bytes_sent") < ju(m[0], "bytes_sent_whole_pages"));
	for (int i = 0; i < 2; i++)
		json_object_put(j[i]);
}

/*
 * Zero markers (issue 13 part 3): a 64 MiB memfd guest whose only memory
 * written is one 10% workload area, migrated without touch tracking, so
 * round 1 sends all of it: every other 4 KiB piece is a file hole, known
 * zero, and goes as an 8-byte marker. Against the same run with
 * --no-zero-markers: fewer bytes, the destination identical both times.
 * Half a second of guest time a run.
 */
static void test_zero_markers(void **state)
{
	char path[2][PATH_MAX];
	json_object *m[2], *j[2];
	uint64_t area = 0, known;

	(void)state;
	NEED_SIM();
	if (skip_why)
		pgt_skip("%s", skip_why);
	for (int i = 0; i < 2; i++) {
		const char *args[] = {
			"--memory", "64M", "--duration", "0.5", "--backing", "memfd", "--no-touch",
			"--no-device", "--workloads", "random,idle", "--set", "random.area=10%",
			"--set", "cache=0", "--set", "hostpin=0", "--link", "10", "--json", path[i],
			"migrate", i ? "--no-zero-markers" : NULL, NULL,
		};

		snprintf(path[i], sizeof(path[i]), "%s/zero%d.json", tmpdir, i);
		j[i] = run_one_migration(args, path[i], &m[i]);
		assert_int_equal(ju(m[i], "verify_units"), (64ULL << 20) / 4096);
		assert_int_equal(ju(m[i], "first_round_pages"), (64ULL << 20) / 4096);
		pgt_test_note("zero markers %s: %llu bytes sent, %llu markers", i ? "off" : "on",
			      (unsigned long long)ju(m[i], "bytes_sent"),
			      (unsigned long long)ju(m[i], "zero_marker_pieces"));
	}
	assert_int_equal(jlen(ja(j[0], "workloads")), 1);
	area = ju(jat(ja(j[0], "workloads"), 0), "area_bytes");
	known = ((64ULL << 20) - area) / 4096;
	assert_true(known > 0);
	assert_true(jb(m[0], "zero_markers"));
	assert_true(jb(j[0], "config.zero_markers"));
	/* round 1 reads the never-written memory as zero, and only that
	 * (each area piece holds a random non-zero word) */
	assert_true(ju(jat(ja(m[0], "rounds"), 0), "zero_pieces") >= known);
	assert_true(ju(m[0], "zero_marker_pieces") <= known + (area / 4096) / 64);
	assert_int_equal(ju(m[0], "zero_marker_bytes"), ju(m[0], "zero_marker_pieces") * 8);
	assert_int_equal(ju(m[0], "bytes_sent_without_zero_markers"),
			 ju(m[0], "bytes_sent") + ju(m[0], "zero_marker_pieces") * (4096 - 8));
	assert_false(jb(m[1], "zero_markers"));
	assert_false(jb(j[1], "config.zero_markers"));
	assert_int_equal(ju(m[1], "zero_marker_pieces"), 0);
	assert_int_equal(ju(m[1], "bytes_sent_without_zero_markers"), ju(m[1], "bytes_sent"));
	/* the known-zero memory costs 8 bytes a piece instead of 4096 */
	assert_true(ju(m[0], "bytes_sent") + known * (4096 - 8) <= ju(m[1], "bytes_sent") +
								      (8ULL << 20));
	assert_true(ju(m[0], "bytes_sent") < ju(m[1], "bytes_sent"));
	for (int i = 0; i < 2; i++)
		json_object_put(j[i]);
}

static void field_schema(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		assert_string_equal(js(r->j, "schema"), "pgtrack-sim-report/1");
		assert_string_equal(js(r->j, "tool"), "pgtrack-sim");
		assert_true(strlen(js(r->j, "version")) >= 5);
	}
}

static void field_config(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *sc = ja(r->j, "config.scenarios"), *l = ja(r->j, "config.link_gbit");

		assert_int_equal(ju(r->j, "config.memory_bytes"), 128ULL << 20);
		assert_int_equal(ju(r->j, "config.vcpus"), 2);
		assert_true(fabs(jd(r->j, "config.duration_s") - 4) < 1e-9);
		assert_true(fabs(jd(r->j, "config.interval_s") - 0.5) < 1e-9);
		assert_int_equal(jlen(sc), 3);
		assert_int_equal(jlen(l), 2);
		assert_true(jd(r->j, "config.downtime_budget_ms") == 30);
		assert_int_equal(ju(r->j, "config.balloon_target_bytes"),
				 (uint64_t)(0.7 * (128 << 20)) & ~4095ULL);
		assert_true(jb(r->j, "config.device"));
		assert_true(jb(r->j, "config.touch"));
		assert_string_equal(js(r->j, "config.workloads"), "zipf+stream, random+churn");
	}
	assert_string_equal(js(B.j, "config.backing"), "thp");
}

static void field_guest(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		const char *b = js(r->j, "guest.backing");

		assert_true(!strcmp(b, "hugetlb") || !strcmp(b, "thp"));
		assert_true(strlen(js(r->j, "guest.backing_reason")) > 10);
		assert_int_equal(r->memory, 128ULL << 20);
		assert_int_equal(r->npages * r->page_size, r->memory);
		assert_int_equal(r->page_size, r->hugetlb ? 2ULL << 20 : 4096);
		assert_true(strlen(js(r->j, "guest.dirty_method")) > 0);
		assert_true(jb(r->j, "guest.touch_tracking"));
		(void)ju(r->j, "guest.hugepages_free_at_start");
	}
	assert_string_equal(js(B.j, "guest.backing"), "thp");
	/* auto says why it did not take hugetlb */
	if (!A.hugetlb)
		assert_non_null(strstr(js(A.j, "guest.backing_reason"), "hugetlb"));
}

static void field_elapsed(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		double e = jd(r->j, "elapsed_s"), boot = jd(r->j, "boot_s");

		/* --duration runs after boot, however long boot took */
		assert_true(boot > 0 && boot < e);
		assert_true(e >= boot + 4 && e < boot + 60);
	}
}

static void field_workloads(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *w = ja(r->j, "workloads");
		bool kinds[4] = { false };

		assert_int_equal(jlen(w), 4);
		for (size_t i = 0; i < jlen(w); i++) {
			json_object *x = jat(w, i);
			const char *k = js(x, "kind");

			assert_true(ju(x, "vcpu") < 2);
			assert_true(ju(x, "writes") > 0);
			assert_true(ju(x, "area_bytes") >= 2ULL << 20);
			assert_true(ju(x, "gpa") + ju(x, "area_bytes") <= r->memory);
			if (!strcmp(k, "churn")) {
				kinds[3] = true;
				assert_true(ju(x, "allocs") > 0);
				assert_true(ju(x, "frees") <= ju(x, "allocs"));
				assert_true(ju(x, "reported_pages") > 0);
			} else {
				kinds[!strcmp(k, "random") ? 0 : !strcmp(k, "zipf") ? 1 : 2] = true;
				assert_int_equal(ju(x, "allocs"), 0);
			}
		}
		assert_true(kinds[0] && kinds[1] && kinds[2] && kinds[3]);
	}
}

static void field_device(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		assert_true(jb(r->j, "device.enabled"));
		assert_true(ju(r->j, "device.ring_bytes") >= 2ULL << 20);
		assert_true(ju(r->j, "device.writes") > 0);
		assert_true(ju(r->j, "device.merges") > 0);
		assert_true(ju(r->j, "device.merged_pages") > 0);
		assert_int_equal(ju(r->j, "device.rejected_log_entries"), 0);
		/* shared (hugetlb) memory: the device writes through its own mapping */
		assert_int_equal(jb(r->j, "device.own_mapping"), r->hugetlb);
	}
}

static void field_timeline(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *t = ja(r->j, "timeline");
		double prev = -1;

		assert_true(jlen(t) >= 7);
		for (size_t i = 0; i < jlen(t); i++) {
			json_object *x = jat(t, i);

			assert_true(jd(x, "t") > prev);
			prev = jd(x, "t");
			assert_true(strlen(js(x, "phase")) > 0);
			assert_true(ju(x, "touched_bytes") <= r->memory);
			assert_true(ju(x, "dirty_pages") <= r->npages);
			assert_true(jd(x, "dirty_bytes_per_s") >= 0);
			assert_true(ju(x, "released_bytes") <= r->memory);
			assert_true(ju(x, "resident_bytes") <= r->memory);
			assert_true(ju(x, "pinned_bytes") <= r->memory);
			assert_int_equal(ju(x, "guest_bytes"), r->memory - ju(x, "released_bytes"));
			assert_true(ju(x, "host_rss_bytes") > 0);
			(void)ju(x, "host_hugetlb_bytes");
			(void)ju(x, "cgroup_bytes");
			(void)ju(x, "hugepages_free");
			assert_true(ju(x, "mem_available_bytes") > 0);
			(void)ju(x, "balloon_target_bytes");
			if (r->hugetlb)
				assert_true(ju(x, "host_hugetlb_bytes") >= ju(x, "resident_bytes") / 2);
		}
		/* the guest was touched, and written all along */
		assert_true(ju(jat(t, jlen(t) - 1), "touched_bytes") > 0);
		assert_true(ju(jat(t, 1), "dirty_pages") > 0);
	}
}

static void check_migration(struct report *r, json_object *m)
{
	json_object *rounds = ja(m, "rounds");
	uint64_t pages = 0, bytes = 0, zero = 0, n = ju(m, "rounds_count");
	double rate = jd(m, "link_gbit") * 1e9 / 8;
	/* "pages" are what a harvest reports: 4 KiB pieces when refining */
	uint64_t gran = ju(m, "granule_bytes");

	assert_int_equal(gran, jb(m, "refine") ? 4096 : r->page_size);
	assert_int_equal(jb(m, "refine"), r->hugetlb);  /* on by default for 2 MiB pages */
	/* whole pages cost at least the refined pieces, but the estimate is
	 * taken after the copy: pieces the balloon or free page reporting took
	 * meanwhile are in bytes_sent and no longer in the estimate (seen once
	 * under TCG in the x86 6.1 guest) */
	assert_true(ju(m, "bytes_sent_whole_pages") + ju(r->j, "balloon.ballooned_bytes") +
		    ju(r->j, "balloon.reported_bytes") >= ju(m, "bytes_sent"));

	/* zero markers: on by default; 8 bytes each instead of 4 KiB */
	assert_true(jb(m, "zero_markers"));
	assert_int_equal(ju(m, "zero_marker_bytes"), ju(m, "zero_marker_pieces") * 8);
	assert_int_equal(ju(m, "bytes_sent_without_zero_markers"),
			 ju(m, "bytes_sent") + ju(m, "zero_marker_pieces") * (4096 - 8));
	assert_true(jd(m, "zero_check_ms") >= 0);

	assert_true(n >= 1);
	assert_int_equal(jlen(rounds), n + 1);
	for (size_t i = 0; i < jlen(rounds); i++) {
		json_object *x = jat(rounds, i);

		assert_int_equal(ju(x, "round"), i + 1);
		assert_int_equal(jb(x, "stop_and_copy"), i == n);
		assert_true(ju(x, "pages") <= r->memory / gran);
		assert_true(ju(x, "bytes") <= ju(x, "pages") * gran);
		pages += ju(x, "pages");
		bytes += ju(x, "bytes");
		zero += ju(x, "zero_pieces");
		/* paced: a round cannot beat the link (5% for timer slop) */
		assert_true(jd(x, "seconds") * rate * 1.05 + 1e6 >= (double)ju(x, "bytes"));
	}
	assert_int_equal(ju(m, "pages_sent"), pages);
	assert_int_equal(ju(m, "bytes_sent"), bytes);
	assert_int_equal(ju(m, "zero_marker_pieces"), zero);
	assert_int_equal(ju(m, "first_round_pages"), ju(jat(rounds, 0), "pages"));
	assert_int_equal(ju(m, "final_pages"), ju(jat(rounds, n), "pages"));
	/* pages sent >= pages dirtied, and none dirtied was left behind */
	assert_true(ju(m, "pages_sent") >= ju(m, "dirtied_pages"));
	assert_int_equal(ju(m, "dirtied_not_sent"), 0);
	assert_true(ju(m, "dirtied_pages") > 0);
	/* the destination is byte-identical where the guest still owns memory */
	assert_true(jb(m, "verified"));
	assert_int_equal(ju(m, "verify_mismatch"), 0);
	assert_true(ju(m, "verify_units") > 0);
	(void)ju(m, "released_skipped");
	assert_true(fabs(jd(m, "estimated_downtime_ms") -
			 (double)(ju(m, "final_pages") * gran) / rate * 1000) < 0.01);
	assert_true(jd(m, "measured_downtime_ms") > 0);
	assert_true(jd(m, "guest_stop_ms") >= 0);
	assert_true(jd(m, "guest_stop_ms") <= jd(m, "measured_downtime_ms"));
	assert_true(jd(m, "throughput_bytes_per_s") <= rate * 1.05);
	assert_true(ju(m, "view_pages") >= ju(m, "pages_sent") - ju(m, "first_round_pages"));
	if (jb(m, "converged")) {
		assert_string_equal(js(m, "end_reason"), "converged");
		assert_true(jd(jat(rounds, n - 1), "dirty_after_ms") <= jd(m, "budget_ms"));
	} else {
		const char *why = js(m, "end_reason");

		assert_true(!strcmp(why, "max rounds") || !strcmp(why, "out of time"));
		if (!strcmp(why, "max rounds"))
			assert_int_equal(n, ju(m, "max_rounds"));
		assert_true(jd(jat(rounds, n - 1), "dirty_after_ms") > jd(m, "budget_ms"));
	}
	assert_true(jd(m, "ended_s") > jd(m, "started_s"));
	assert_null(jp(m, "error"));
	/* a separate destination process, or (when it cannot start) a buffer */
	assert_true(!strcmp(js(m, "destination"), "process") ||
		    !strcmp(js(m, "destination"), "in-process buffer"));
}

static void field_migrations(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *ms = ja(r->j, "migrations");

		assert_int_equal(jlen(ms), 2);
		check_migration(r, jat(ms, 0));
		/* the second (100 Gbit/s) may not have had time to start */
		if (jlen(ja(jat(ms, 1), "rounds")))
			check_migration(r, jat(ms, 1));
	}
}

static void field_snapshots(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *s = ja(r->j, "snapshots");
		uint64_t total = 0;

		assert_true(jlen(s) >= 3);
		for (size_t i = 0; i < jlen(s); i++) {
			json_object *x = jat(s, i);

			assert_int_equal(ju(x, "index"), i);
			assert_string_equal(js(x, "kind"), i ? "incremental" : "full");
			assert_true(ju(x, "pages") <= r->npages);
			assert_int_equal(ju(x, "bytes"), ju(x, "pages") * r->page_size);
			(void)jd(x, "t");
			total += ju(x, "bytes");
		}
		assert_true(ju(jat(s, 0), "pages") > 0);
		assert_int_equal(ju(r->j, "snapshot_chain_bytes"), total);
	}
}

static void field_balloon(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *b = jp(r->j, "balloon");

		assert_true(jb(b, "ran"));
		assert_int_equal(ju(b, "configured_bytes"), r->memory);
		assert_int_equal(ju(b, "target_bytes"), (uint64_t)(0.7 * (128 << 20)) & ~4095ULL);
		assert_true(jb(b, "reached"));
		assert_true(jd(b, "reach_seconds") > 0);
		/* the first, unsafe target was refused: pins and the reserve */
		assert_true(ju(b, "refused_target_bytes") > 0);
		assert_string_equal(js(b, "refused_error"), strerror(ENOSPC));
		assert_true(ju(b, "pinned_bytes") >= ju(r->j, "device.ring_bytes"));
		assert_true(ju(b, "safe_limit_bytes") + ju(b, "pinned_bytes") + ju(b, "kept_bytes") <=
			    r->memory);
		assert_true(ju(b, "ballooned_bytes") > 0);
		assert_true(ju(b, "reported_bytes") > 0);
		assert_true(ju(b, "freed_bytes") > 0);
		(void)ju(b, "reclaimed_bytes");
		(void)ju(b, "refused_pinned_bytes");
		(void)ju(b, "partial_large_pages");
		(void)ju(b, "partial_released_bytes");
		(void)jb(b, "deflate_reached");
		assert_true(ju(b, "deflate_target_bytes") > ju(b, "target_bytes"));
		assert_true(ju(b, "balloon_calls") >= 1);
		/* pgtrack's own view: resident memory went down */
		assert_true(ju(b, "resident_min_bytes") < ju(b, "resident_before_bytes"));
		(void)ju(b, "hugepages_free_before");
		(void)ju(b, "hugepages_free_peak");
		(void)ju(b, "host_rss_before_bytes");
		(void)ju(b, "host_rss_min_bytes");
		(void)ju(b, "cgroup_before_bytes");
		(void)ju(b, "cgroup_min_bytes");
		assert_string_equal(js(b, "host_saw_via"), r->hugetlb ? "HugetlbPages" : "RSS");
		(void)ju(b, "host_hugetlb_before_bytes");
		(void)ju(b, "host_hugetlb_min_bytes");
		if (r->hugetlb) {
			assert_true(ju(b, "partial_large_pages") > 0);
			assert_true(ju(b, "partial_released_bytes") > 0);
		}
	}
}

/* Released memory is visible to the host: this process's HugetlbPages
 * falls and HugePages_Free rises (hugetlb), RSS falls (THP). The pool is
 * shared with whatever else runs, so HugePages_Free only has to move when
 * nothing else took pages meanwhile; the per-process figures must. */
static void field_release_visible(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *b = jp(r->j, "balloon");
		uint64_t seen = ju(b, "host_saw_bytes");

		assert_true(jb(b, "release_visible"));
		assert_true(seen >= 2ULL << 20);
		if (r->hugetlb) {
			assert_true(ju(b, "host_hugetlb_min_bytes") < ju(b, "host_hugetlb_before_bytes"));
			if (ju(b, "hugepages_free_peak") <= ju(b, "hugepages_free_before"))
				pgt_test_note("HugePages_Free did not rise (%" PRIu64 " -> %" PRIu64
					      "): another process took pages from the pool",
					      ju(b, "hugepages_free_before"),
					      ju(b, "hugepages_free_peak"));
		} else {
			assert_true(ju(b, "host_rss_min_bytes") < ju(b, "host_rss_before_bytes"));
		}
	}
}

static void field_views(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *v = jp(r->j, "views");
		uint64_t kernel = ju(v, "kernel_reported_pages");
		uint64_t merged = ju(r->j, "device.merged_pages");

		assert_true(ju(v, "kernel_passes") > 0);
		/* every view is fed by the same passes (and the device merges) */
		assert_true(ju(v, "sampler_pages") <= kernel + merged);
		assert_true(ju(v, "snapshot_pages") <= kernel + merged);
		assert_true(ju(v, "migration_pages") > 0);
		assert_true(ju(v, "sampler_pages") > 0);
		assert_true(ju(v, "snapshot_pages") > 0);
		/* sampler and snapshot chain, both still open */
		assert_int_equal(ju(v, "open_at_end"), 2);
	}
}

static void field_engine_stats(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *e = jp(r->j, "engine_stats"), *regs = ja(e, "regions"), *g;

		assert_string_equal(js(e, "schema"), "pgtrack-stats/1");
		assert_int_equal(jlen(regs), 1);
		g = jat(regs, 0);
		assert_string_equal(js(g, "name"), "guest-ram");
		assert_string_equal(js(g, "backing"), js(r->j, "guest.backing"));
		assert_int_equal(ju(g, "pages"), r->npages);
		assert_int_equal(ju(g, "page_size_bytes"), r->page_size);
		assert_int_equal(ju(g, "harvests"), ju(r->j, "views.kernel_passes"));
		assert_int_equal(ju(g, "dirty_reported"), ju(r->j, "views.kernel_reported_pages"));
		assert_int_equal(ju(g, "dirty_views"), 2);
		assert_string_equal(js(g, "dirty_method"), js(r->j, "guest.dirty_method"));
		assert_int_equal(ju(e, "totals.regions"), 1);
	}
}

static void field_heatmap(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *h = jp(r->j, "heatmap"), *d = ja(h, "dirty"), *t = ja(h, "touched");
		json_object *tl = ja(r->j, "timeline");
		uint64_t rows = ju(h, "rows"), ppr = ju(h, "pages_per_row");

		assert_true(rows > 0 && rows <= 64);
		assert_true(rows * ppr >= r->npages);
		assert_int_equal(ju(h, "page_size_bytes"), r->page_size);
		assert_true(jd(h, "interval_s") == 0.5);
		assert_int_equal(jlen(d), jlen(tl));
		assert_int_equal(jlen(t), jlen(tl));
		for (size_t k = 0; k < jlen(d); k++) {
			uint64_t sum = 0, tsum = 0;

			assert_int_equal(jlen(jat(d, k)), rows);
			for (size_t i = 0; i < rows; i++) {
				uint64_t v = json_object_get_uint64(jat(jat(d, k), i));
				uint64_t w = json_object_get_uint64(jat(jat(t, k), i));

				assert_true(v <= ppr && w <= ppr);
				sum += v;
				tsum += w;
			}
			/* the heat map column is the timeline's interval */
			assert_int_equal(sum, ju(jat(tl, k), "dirty_pages"));
			assert_true(tsum <= r->npages);
		}
	}
}

/* pgt_explain's lines: each equation's parts add up to its head. */
static void field_explain(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		json_object *e = ja(r->j, "explain");
		bool guest = false;

		assert_true(jlen(e) >= 5);
		for (size_t i = 0; i < jlen(e); i++) {
			json_object *x = jat(e, i);

			(void)json_object_get_int64(jp(x, "bytes"));
			assert_true(strlen(js(x, "text")) > 0);
			if (!strcmp(js(x, "key"), "guest")) {
				guest = true;
				assert_int_equal(json_object_get_int64(jp(x, "bytes")), (int64_t)r->memory);
			}
		}
		assert_true(guest);
	}
}

static void field_consistency(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		assert_true(jb(r->j, "consistency.migrations_verified"));
		assert_true(jb(r->j, "consistency.pages_sent_ge_dirtied"));
		assert_true(jb(r->j, "consistency.release_visible_to_host"));
	}
}

static void field_svg(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		FILE *f = fopen(r->svg, "r");
		static char buf[1 << 22];
		size_t n, rects = 0;

		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		assert_int_equal(strncmp(buf, "<?xml", 5), 0);
		assert_non_null(strstr(buf, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
		assert_non_null(strstr(buf, "</svg>\n"));
		for (const char *p = buf; (p = strstr(p, "<rect")); p++)
			rects++;
		/* two bands of rows x intervals cells */
		assert_true(rects >= 2 * ju(r->j, "heatmap.rows") *
				     jlen(ja(r->j, "timeline")));
		assert_non_null(strstr(buf, "dirty pages per interval"));
		assert_null(strstr(buf, "<text x=\"nan"));
	}
}

static void field_summary(void **state)
{
	(void)state;
	NEED_RUNS();
	EACH(r) {
		assert_non_null(strstr(r->out, "pgtrack-sim "));
		assert_non_null(strstr(r->out, "migrate "));
		assert_non_null(strstr(r->out, "destination identical to the source"));
		assert_non_null(strstr(r->out, "snapshots "));
		assert_non_null(strstr(r->out, "balloon "));
		assert_non_null(strstr(r->out, "views "));
		assert_null(strstr(r->out, "DIFFERS"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_version_and_dump),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_bad_config_file),
		cmocka_unit_test(test_bad_output),
		cmocka_unit_test(test_port_in_use),
		cmocka_unit_test(test_prometheus),
		cmocka_unit_test(test_refine_converges),
		cmocka_unit_test(test_zero_markers),
		cmocka_unit_test(field_schema),
		cmocka_unit_test(field_config),
		cmocka_unit_test(field_guest),
		cmocka_unit_test(field_elapsed),
		cmocka_unit_test(field_workloads),
		cmocka_unit_test(field_device),
		cmocka_unit_test(field_timeline),
		cmocka_unit_test(field_migrations),
		cmocka_unit_test(field_snapshots),
		cmocka_unit_test(field_balloon),
		cmocka_unit_test(field_release_visible),
		cmocka_unit_test(field_views),
		cmocka_unit_test(field_engine_stats),
		cmocka_unit_test(field_heatmap),
		cmocka_unit_test(field_explain),
		cmocka_unit_test(field_consistency),
		cmocka_unit_test(field_svg),
		cmocka_unit_test(field_summary),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("sim", tests, setup, teardown);
}
