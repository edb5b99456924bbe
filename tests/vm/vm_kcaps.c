/* SPDX-License-Identifier: MIT */
/*
 * vm_kcaps: what the running kernel really offers for page tracking, measured
 * with raw syscalls and no pgtrack code, so the VM matrix can check that each
 * guest is the kernel it claims to be and that pgtrack's own probe agrees.
 *
 * Usage: vm_kcaps [key=value ...]
 * Every fact is printed as "# fact key=value [(why)]". Each key=value argument
 * is an expectation and becomes one TAP test; without arguments the program
 * only reports (one test: the facts were collected).
 */
#include "hal/compat_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define MAX_FACTS 32

struct fact {
	char key[32];
	char val[80];
};

static struct fact facts[MAX_FACTS];
static unsigned n_facts;
static long page_size;

static void fact(const char *key, const char *why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fact(const char *key, const char *why, const char *fmt, ...)
{
	struct fact *f;
	va_list ap;

	if (n_facts == MAX_FACTS)
		abort();
	f = &facts[n_facts++];
	snprintf(f->key, sizeof(f->key), "%s", key);
	va_start(ap, fmt);
	vsnprintf(f->val, sizeof(f->val), fmt, ap);
	va_end(ap);
	printf("# fact %s=%s", f->key, f->val);
	if (why)
		printf(" (%s)", why);
	putchar('\n');
	fflush(stdout);
}

static const char *fact_get(const char *key)
{
	for (unsigned i = 0; i < n_facts; i++)
		if (!strcmp(facts[i].key, key))
			return facts[i].val;
	return NULL;
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int pagemap_entry(int fd, const void *addr, uint64_t *ent)
{
	off_t off = (off_t)((uintptr_t)addr / (uintptr_t)page_size) * 8;

	if (pread(fd, ent, sizeof(*ent), off) != (ssize_t)sizeof(*ent))
		return -errno;
	return 0;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int err = 0;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	if (n < 0)
		err = -errno;
	close(fd);
	return err;
}

static void probe_basics(void)
{
	struct utsname u;
	struct dirent *de;
	DIR *d;
	int nodes = 0;

	uname(&u);
	fact("kernel", NULL, "%s", u.release);
	fact("arch", NULL, "%s", u.machine);
	fact("page_size", NULL, "%ld", page_size);
	fact("cpus", NULL, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
	d = opendir("/sys/devices/system/node");
	if (d) {
		while ((de = readdir(d)))
			if (!strncmp(de->d_name, "node", 4) &&
			    de->d_name[4] >= '0' && de->d_name[4] <= '9')
				nodes++;
		closedir(d);
	}
	fact("nodes", d ? NULL : "no /sys/devices/system/node", "%d", nodes);
}

/*
 * Soft-dirty as the kernel's selftest checks it: after clear_refs "4" a
 * written page shows bit 55 and an untouched one does not. arm64 accepts the
 * write to clear_refs but never sets the bit, so only the bit counts.
 */
static void probe_softdirty(void)
{
	char *p = map_anon(2 * page_size);
	uint64_t e0 = 0, e1 = 0;
	const char *why = NULL;
	int fd, err, ok = 0;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (!p || fd < 0) {
		fact("softdirty", "cannot map or open pagemap", "0");
		goto out;
	}
	p[0] = 1;
	p[page_size] = 1;
	err = write_file("/proc/self/clear_refs", "4");
	if (err) {
		why = "clear_refs 4 rejected";
		goto report;
	}
	p[0] = 2;
	if (pagemap_entry(fd, p, &e0) || pagemap_entry(fd, p + page_size, &e1)) {
		why = "pagemap read failed";
		goto report;
	}
	if (!(e0 & PGT_PM_SOFT_DIRTY))
		why = "written page has no bit 55";
	else if (e1 & PGT_PM_SOFT_DIRTY)
		why = "clean page has bit 55";
	else
		ok = 1;
report:
	fact("softdirty", why, "%d", ok);
out:
	if (fd >= 0)
		close(fd);
	if (p)
		munmap(p, 2 * page_size);
}

static int uffd_open(const char **how)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	*how = "syscall";
	if (fd < 0 && errno == EPERM) {
		fd = (int)syscall(SYS_userfaultfd,
				  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		*how = "syscall-user-only";
	}
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		*how = "/dev/userfaultfd";
		if (dev < 0)
			return -errno;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
	return fd < 0 ? -errno : fd;
}

/* One UFFDIO_API per descriptor: the kernel refuses a second one. */
static int uffd_open_api(uint64_t features, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	const char *how;
	int fd = uffd_open(&how);

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (got)
		*got = api.features;
	return fd;
}

struct toucher {
	volatile char *addr;
	int write;
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;

	if (t->write)
		t->addr[0] = 42;
	else
		(void)t->addr[0];
	return NULL;
}

/*
 * Wait for one fault on @fd and report its flags; the faulting thread stays
 * blocked until the caller resolves it. Returns 0 or -errno.
 */
static int uffd_wait_fault(int fd, uint64_t *flags)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct uffd_msg msg;

	if (poll(&pfd, 1, 5000) != 1)
		return -ETIMEDOUT;
	if (read(fd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return -errno;
	if (msg.event != UFFD_EVENT_PAGEFAULT)
		return -EPROTO;
	*flags = msg.arg.pagefault.flags;
	return 0;
}

/* A real MISSING fault resolved by UFFDIO_COPY, as a first-touch tracker does. */
static void probe_uffd_missing(void)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct toucher t = { 0 };
	const char *why = NULL;
	char *src = map_anon(page_size), *dst = map_anon(page_size);
	pthread_t th;
	uint64_t flags;
	int fd, err, ok = 0, started = 0;

	fd = uffd_open_api(0, NULL);
	if (fd < 0 || !src || !dst) {
		why = fd < 0 ? strerror(-fd) : "mmap failed";
		goto out;
	}
	reg.range.start = (uintptr_t)dst;
	reg.range.len = (uint64_t)page_size;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		why = "UFFDIO_REGISTER MISSING failed";
		goto out;
	}
	memset(src, 7, (size_t)page_size);
	t.addr = dst;
	if (pthread_create(&th, NULL, touch_thread, &t)) {
		why = "pthread_create failed";
		goto out;
	}
	started = 1;
	err = uffd_wait_fault(fd, &flags);
	if (!err) {
		struct uffdio_copy cp = {
			.dst = (uintptr_t)dst, .src = (uintptr_t)src,
			.len = (uint64_t)page_size,
		};

		if (ioctl(fd, UFFDIO_COPY, &cp))
			why = "UFFDIO_COPY failed";
		else
			ok = 1;
	} else {
		why = "no fault delivered";
	}
out:
	if (started) {
		/* Closing the descriptor wakes a toucher nobody resolved. */
		if (!ok) {
			close(fd);
			fd = -1;
		}
		pthread_join(th, NULL);
		if (ok && dst[0] != 7) {
			ok = 0;
			why = "copied page has wrong contents";
		}
	}
	fact("uffd_missing", why, "%d", ok);
	if (fd >= 0)
		close(fd);
	if (src)
		munmap(src, page_size);
	if (dst)
		munmap(dst, page_size);
}

/*
 * Sync userfaultfd write-protect: protect a populated page, let a thread
 * write it, see the fault flagged WP, unprotect. arm64 6.1 has no
 * CONFIG_HAVE_ARCH_USERFAULTFD_WP and refuses the feature in UFFDIO_API.
 */
static void probe_uffd_wp(void)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct toucher t = { .write = 1 };
	struct uffdio_writeprotect wp = { 0 };
	const char *why = NULL;
	char *p = map_anon(page_size);
	uint64_t flags = 0;
	pthread_t th;
	int fd, ok = 0, started = 0;

	fd = uffd_open_api(UFFD_FEATURE_PAGEFAULT_FLAG_WP, NULL);
	if (fd < 0 || !p) {
		why = fd < 0 ? "UFFDIO_API with PAGEFAULT_FLAG_WP refused" : "mmap failed";
		goto out;
	}
	p[0] = 1;
	reg.range.start = (uintptr_t)p;
	reg.range.len = (uint64_t)page_size;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		why = "UFFDIO_REGISTER WP failed";
		goto out;
	}
	wp.range = reg.range;
	wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
		why = "UFFDIO_WRITEPROTECT failed";
		goto out;
	}
	t.addr = p;
	if (pthread_create(&th, NULL, touch_thread, &t)) {
		why = "pthread_create failed";
		goto out;
	}
	started = 1;
	if (uffd_wait_fault(fd, &flags))
		why = "no fault delivered";
	else if (!(flags & UFFD_PAGEFAULT_FLAG_WP))
		why = "fault not flagged WP";
	else
		ok = 1;
out:
	if (started) {
		/*
		 * Unprotecting wakes the writer whether or not we saw its
		 * fault; closing the descriptor is the fallback.
		 */
		wp.mode = 0;
		if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
			close(fd);
			fd = -1;
		}
		pthread_join(th, NULL);
	}
	fact("uffd_wp", why, "%d", ok);
	if (fd >= 0)
		close(fd);
	if (p)
		munmap(p, page_size);
}

static void probe_uffd(void)
{
	uint64_t features = 0;
	int fd = uffd_open_api(0, &features);

	if (fd < 0) {
		fact("uffd", strerror(-fd), "0");
		fact("uffd_features", NULL, "0x0");
		fact("wp_async", "no userfaultfd", "0");
		fact("uffd_missing", "no userfaultfd", "0");
		fact("uffd_wp", "no userfaultfd", "0");
		return;
	}
	close(fd);
	fact("uffd", NULL, "1");
	fact("uffd_features", NULL, "0x%" PRIx64, features);
	fact("wp_async", NULL, "%d", !!(features & UFFD_FEATURE_WP_ASYNC));
	probe_uffd_missing();
	probe_uffd_wp();
}

/* A read-only PAGEMAP_SCAN (no write-protect flags) tells whether the ioctl exists. */
static void probe_pagemap_scan(void)
{
	char *p = map_anon(page_size);
	struct page_region vec[4];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.vec = (uintptr_t)vec,
		.vec_len = 4,
		.category_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int n;

	if (!p || fd < 0) {
		fact("pagemap_scan", "cannot map or open pagemap", "0");
		goto out;
	}
	p[0] = 1;
	arg.start = (uintptr_t)p;
	arg.end = (uintptr_t)p + (uintptr_t)page_size;
	n = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (n < 0)
		fact("pagemap_scan", strerror(errno), "0");
	else if (n != 1)
		fact("pagemap_scan", "present page not reported", "0");
	else
		fact("pagemap_scan", NULL, "1");
out:
	if (fd >= 0)
		close(fd);
	if (p)
		munmap(p, page_size);
}

static sigjmp_buf segv_env;
static void *volatile segv_addr;

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	segv_addr = si->si_addr;
	siglongjmp(segv_env, 1);
}

/* The portable baseline tracker: a write to a read-only page traps with its address. */
static void probe_mprotect(void)
{
	struct sigaction sa = { .sa_sigaction = segv_handler, .sa_flags = SA_SIGINFO };
	struct sigaction old;
	volatile char *p = map_anon(page_size);
	volatile int ok = 0; /* read after siglongjmp */

	if (!p) {
		fact("mprotect", "mmap failed", "0");
		return;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	mprotect((void *)p, page_size, PROT_READ);
	if (!sigsetjmp(segv_env, 1))
		p[8] = 1;
	else
		ok = segv_addr == (void *)(p + 8);
	sigaction(SIGSEGV, &old, NULL);
	fact("mprotect", ok ? NULL : "no SIGSEGV at the written address", "%d", ok);
	munmap((void *)p, page_size);
}

static void probe_hugetlb(void)
{
	const size_t len = 2u << 20;
	char *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) {
		fact("hugetlb_2m", strerror(errno), "0");
		return;
	}
	p[0] = 1;
	munmap(p, len);
	fact("hugetlb_2m", NULL, "1");
}

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif
#define KC_MPOL_MF_MOVE 2 /* 1 is MPOL_MF_STRICT */

static int page_node(void *p)
{
	void *pages[1] = { p };
	int status[1] = { -1 };

	if (syscall(SYS_move_pages, 0, 1UL, pages, NULL, status, 0))
		return -errno;
	return status[0];
}

/* Place a page on node 1 with mbind, then move it back with move_pages. */
static void probe_numa_move(void)
{
	const char *nodes = fact_get("nodes");
	unsigned long mask = 1UL << 1;
	char *p = map_anon(page_size);
	void *pages[1] = { p };
	int target[1] = { 0 }, status[1] = { -1 };
	const char *why = NULL;
	int ok = 0;

	if (!nodes || atoi(nodes) < 2 || !p) {
		fact("numa_move", "fewer than 2 nodes", "0");
		goto out;
	}
	if (syscall(SYS_mbind, p, page_size, MPOL_BIND, &mask, 8 * sizeof(mask),
		    KC_MPOL_MF_MOVE)) {
		why = "mbind failed";
		goto report;
	}
	p[0] = 1;
	if (page_node(p) != 1) {
		why = "page not on node 1 after mbind";
		goto report;
	}
	if (syscall(SYS_move_pages, 0, 1UL, pages, target, status, KC_MPOL_MF_MOVE) ||
	    page_node(p) != 0)
		why = "move_pages to node 0 failed";
	else
		ok = 1;
report:
	fact("numa_move", why, "%d", ok);
out:
	if (p)
		munmap(p, page_size);
}

static void probe_thp(void)
{
	char buf[128] = "", *l, *r;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (l && r) {
		*r = 0;
		fact("thp", NULL, "%s", l + 1);
	} else {
		fact("thp", "no transparent_hugepage in sysfs", "none");
	}
}

int main(int argc, char **argv)
{
	int tests = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	probe_basics();
	probe_softdirty();
	probe_uffd();
	probe_pagemap_scan();
	probe_mprotect();
	probe_hugetlb();
	probe_numa_move();
	probe_thp();

	for (int i = 1; i < argc; i++) {
		char key[32];
		const char *eq = strchr(argv[i], '='), *got;

		if (!eq || (size_t)(eq - argv[i]) >= sizeof(key)) {
			printf("not ok %d - bad expectation '%s'\n", ++tests, argv[i]);
			failed++;
			continue;
		}
		memcpy(key, argv[i], (size_t)(eq - argv[i]));
		key[eq - argv[i]] = 0;
		got = fact_get(key);
		if (got && !strcmp(got, eq + 1)) {
			printf("ok %d - %s\n", ++tests, argv[i]);
		} else {
			printf("not ok %d - %s (found %s)\n", ++tests, argv[i],
			       got ? got : "no such fact");
			failed++;
		}
	}
	if (!tests)
		printf("ok %d - facts collected\n", ++tests);
	printf("1..%d\n", tests);
	return failed ? 1 : 0;
}
