/* SPDX-License-Identifier: MIT */
#include "tests/common/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/mman.h>

#include <pgtrack.h>

void pgt_test_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("# ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

uint64_t pgt_test_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t pgt_test_seed(void)
{
	const char *env = getenv("PGT_TEST_SEED");
	uint64_t seed;

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
	}
	if (!seed)
		seed = 1;
	pgt_test_note("seed %llu (replay with PGT_TEST_SEED)", (unsigned long long)seed);
	return seed;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

long pgt_test_free_hugepages(void)
{
	return read_long("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
}

uint64_t pgt_test_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

int pgt_test_have_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/*
 * cmocka 1.1.5 prints a skipped test as "not ok N # SKIP", which TAP
 * consumers (meson) count as a failure. When TAP output is on, run the test
 * with stdout going through a pipe to a forked filter that turns those lines
 * into "ok N # SKIP". A forked process rather than a thread so that output is
 * not lost when the test crashes: the filter drains until every writer is
 * gone. Runs before main() for every test linked with this library.
 */
static void tap_filter(int in)
{
	FILE *f = fdopen(in, "r");
	char line[4096];

	if (!f)
		_exit(1);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "not ok ", 7) && strstr(line, "# SKIP"))
			fputs(line + 4, stdout);
		else
			fputs(line, stdout);
		fflush(stdout);
	}
	_exit(0);
}

__attribute__((constructor)) static void tap_fixup(void)
{
	const char *out = getenv("CMOCKA_MESSAGE_OUTPUT");
	int fds[2];
	pid_t pid;

	if (!out || strcasecmp(out, "TAP") || pipe(fds))
		return;
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[1]);
		tap_filter(fds[0]);
	}
	close(fds[0]);
	dup2(fds[1], STDOUT_FILENO);
	close(fds[1]);
}

/* One GET; the whole response, or NULL when the connection fails. */
static char *http_once(unsigned port, const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char req[512], buf[8192], *body = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return NULL;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (len + (size_t)n + 1 > cap) {
			char *nb;

			cap = (len + (size_t)n + 1) * 2;
			nb = realloc(body, cap);
			if (!nb)
				break;
			body = nb;
		}
		memcpy(body + len, buf, (size_t)n);
		len += (size_t)n;
	}
	close(fd);
	if (!body)
		body = calloc(1, 1);
	else
		body[len] = '\0';
	return body;
}

char *pgt_test_http_get(unsigned port, const char *path, int attempts)
{
	char *body = NULL;

	for (int i = 0; i < attempts; i++) {
		free(body);
		body = http_once(port, path);
		if (body && (strstr(body, "HTTP/1.0 200") || strstr(body, "HTTP/1.1 200")))
			break;
		usleep(100000);
	}
	return body;
}

int pgt_test_count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static char *guard_base;
static size_t guard_ps;

int pgt_test_guard_setup(void **state)
{
	(void)state;
	guard_ps = (size_t)sysconf(_SC_PAGESIZE);
	guard_base = mmap(NULL, 2 * guard_ps, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard_base == MAP_FAILED) {
		guard_base = NULL;
		return -1;
	}
	return mprotect(guard_base + guard_ps, guard_ps, PROT_NONE);
}

int pgt_test_guard_teardown(void **state)
{
	(void)state;
	if (guard_base)
		munmap(guard_base, 2 * guard_ps);
	guard_base = NULL;
	return 0;
}

char *pgt_test_guarded(const void *s, size_t len)
{
	char *p;

	assert_non_null(guard_base);
	assert_true(len <= guard_ps);
	p = guard_base + guard_ps - len;
	memcpy(p, s, len);
	return p;
}

int pgt_test_region_open(const struct pgt_region_config *rc, pgt_engine **eng, pgt_region **r,
			 struct pgt_region_info *info)
{
	int ret;

	*r = NULL;
	assert_int_equal(pgt_engine_open(NULL, eng), 0);
	ret = pgt_region_create(*eng, rc, r);
	if (ret) {
		pgt_engine_close(*eng);
		*eng = NULL;
		*r = NULL;
		return ret;
	}
	if (info) {
		memset(info, 0, sizeof(*info));
		info->size = sizeof(*info);
		assert_int_equal(pgt_region_info(*r, info), 0);
	}
	return 0;
}
