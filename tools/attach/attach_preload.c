/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD=libpgtrack-attach.so: pgtrack in an unmodified QEMU.
 *
 * The constructor reads the PGT_ATTACH_* environment (docs/attach.md),
 * opens an attach instance and lets its thread look for guest RAM; nothing
 * happens in processes that are not the VMM (LD_PRELOAD is inherited by
 * the helpers QEMU starts), and a configuration error is reported and
 * leaves the VMM alone: this library never makes QEMU fail.
 *
 * Three libc functions are wrapped, all forwarding to libc unchanged:
 *  - ioctl(UFFDIO_REGISTER): the VMM is about to register memory with its
 *    own userfaultfd (post-copy, background snapshot). A range can belong
 *    to one userfaultfd only, so pgtrack steps aside first, and the
 *    registry lock held across the call keeps pgtrack from registering in
 *    between. Every other request costs one comparison.
 *  - madvise(DONTNEED/REMOVE/WILLNEED) and fallocate(PUNCH_HOLE): what the
 *    VMM discards (balloon inflate, free page reporting: counted, to set
 *    against what pgtrack sees as released) and re-populates (balloon
 *    deflate: taken back from the released set).
 *
 * A fork without exec (-daemonize) leaves the child without the sampler
 * thread; the first wrapped call in the child starts a new instance.
 */
/*
 * Both fallocate and fallocate64 are defined below, as libc exports both;
 * with 64-bit file offsets the headers rename fallocate to fallocate64.
 * On the 64-bit hosts this builds for, off_t is 64 bits either way.
 */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/userfaultfd.h>

#include "hal/export.h"
#include "tools/attach/attach_pvt.h"

static struct pgt_attach *preload;
static atomic_bool forked;
static char exe_name[64] = "the VMM";

/* ---- configuration from the environment ---- */

static void log_stderr(void *arg, int level, const char *msg)
{
	(void)arg;
	/* one write per line: QEMU and its other threads write here too */
	dprintf(STDERR_FILENO, "pgtrack-attach[%d]: %s%s\n", (int)getpid(),
		level <= PGT_LOG_ERR ? "error: " : level == PGT_LOG_WARN ? "warning: " : "", msg);
}

struct env_cfg {
	struct pgt_attach_config cfg;
	const char *rules;
	bool quiet;
};

static int env_long(const char *name, long min, long max, long *out, char *err, size_t n)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v)
		return 0;
	errno = 0;
	x = strtol(v, &end, 10);
	if (!*v || *end || errno || x < min || x > max) {
		snprintf(err, n, "%s=\"%s\": want a whole number from %ld to %ld", name, v, min, max);
		return -EINVAL;
	}
	*out = x;
	return 1;
}

/* The three periods: sampling, epoch (a multiple of it), NUMA queries. */
static int env_periods(struct pgt_attach_config *c, char *err, size_t n)
{
	long x;
	int r;

	if ((r = env_long("PGT_ATTACH_PORT", 0, 65535, &x, err, n)) < 0)
		return r;
	if (r)
		c->http_port = (int)x;
	if ((r = env_long("PGT_ATTACH_INTERVAL_MS", 10, 60000, &x, err, n)) < 0)
		return r;
	if (r)
		c->interval_ms = (uint32_t)x;
	if ((r = env_long("PGT_ATTACH_EPOCH_MS", 10, 600000, &x, err, n)) < 0)
		return r;
	if (r)
		c->epoch_ms = (uint32_t)x;
	if (c->epoch_ms && c->epoch_ms % (c->interval_ms ? c->interval_ms : 100)) {
		snprintf(err, n, "PGT_ATTACH_EPOCH_MS=%u is not a multiple of the sampling "
			 "interval (%u ms)", c->epoch_ms, c->interval_ms ? c->interval_ms : 100);
		return -EINVAL;
	}
	if ((r = env_long("PGT_ATTACH_NUMA_MS", -1, 3600000, &x, err, n)) < 0)
		return r;
	if (r)
		c->numa_ms = x ? (int32_t)x : -1;
	return 0;
}

/* PGT_ATTACH_DIRTY and PGT_ATTACH_TRACK. */
static int env_tracking(struct pgt_attach_config *c, char *err, size_t n)
{
	const char *v = getenv("PGT_ATTACH_DIRTY");
	char buf[128], *save = NULL;

	if (v) {
		int m = pgt_dirty_method_parse(v);

		if (m != PGT_DIRTY_AUTO && m != PGT_DIRTY_UFFD_ASYNC && m != PGT_DIRTY_SOFT_DIRTY) {
			snprintf(err, n, "PGT_ATTACH_DIRTY=\"%s\": want auto, uffd-async or soft-dirty "
				 "(trackers that stop vCPUs are not used in a VMM)", v);
			return -EINVAL;
		}
		c->dirty_method = m;
	}
	v = getenv("PGT_ATTACH_TRACK");
	if (!v || !strcmp(v, "auto"))
		return 0;
	if (strlen(v) >= sizeof(buf))
		goto bad;
	strcpy(buf, v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "dirty"))
			c->track |= PGT_TRACK_DIRTY;
		else if (!strcmp(t, "touch"))
			c->track |= PGT_TRACK_TOUCH;
		else if (!strcmp(t, "remove"))
			c->track |= PGT_TRACK_REMOVE;
		else
			goto bad;
	}
	if (c->track & PGT_TRACK_DIRTY)
		return 0;
bad:
	snprintf(err, n, "PGT_ATTACH_TRACK=\"%s\": want auto, or a comma list of dirty, touch, "
		 "remove that holds dirty", v);
	return -EINVAL;
}

/* PGT_ATTACH_LOG and PGT_ATTACH_STEP_ASIDE. */
static int env_behaviour(struct env_cfg *e, char *err, size_t n)
{
	static const struct {
		const char *name;
		int level;
	} lv[] = { { "quiet", -1 }, { "error", PGT_LOG_ERR }, { "warn", PGT_LOG_WARN },
		   { "info", PGT_LOG_INFO }, { "debug", PGT_LOG_DEBUG } };
	struct pgt_attach_config *c = &e->cfg;
	const char *v = getenv("PGT_ATTACH_LOG");
	size_t i;

	if (v) {
		for (i = 0; i < sizeof(lv) / sizeof(lv[0]) && strcmp(v, lv[i].name); i++)
			;
		if (i == sizeof(lv) / sizeof(lv[0])) {
			snprintf(err, n, "PGT_ATTACH_LOG=\"%s\": want quiet, error, warn, info or debug", v);
			return -EINVAL;
		}
		if (lv[i].level < 0)
			e->quiet = true, c->log = NULL;
		else
			c->log_level = lv[i].level;
	}
	v = getenv("PGT_ATTACH_STEP_ASIDE");
	if (v) {
		if (!strcmp(v, "no") || !strcmp(v, "0"))
			c->flags |= PGT_ATTACH_HOLD;
		else if (strcmp(v, "yes") && strcmp(v, "1")) {
			snprintf(err, n, "PGT_ATTACH_STEP_ASIDE=\"%s\": want yes or no", v);
			return -EINVAL;
		}
	}
	return 0;
}

static int env_rules(struct env_cfg *e, char *err, size_t n)
{
	const char *v = getenv("PGT_ATTACH_RAM");
	char *globs[PGT_ATTACH_MAX_REGIONS], *copy;
	uint64_t sizes[PGT_ATTACH_MAX_REGIONS];
	int r;

	if (!v)
		return 0;
	copy = strdup(v);
	r = copy ? pgt_attach__rules(copy, globs, sizes, PGT_ATTACH_MAX_REGIONS) : -ENOMEM;
	free(copy);
	if (r < 0) {
		snprintf(err, n, "PGT_ATTACH_RAM=\"%s\": want NAME-GLOB[@SIZE][,...] (at most "
			 "%d), e.g. \"/memfd:*@4G\" or \"[anon]@512M\"", v, PGT_ATTACH_MAX_REGIONS);
		return -EINVAL;
	}
	e->rules = v;
	return 0;
}

static int parse_env(struct env_cfg *e, char *err, size_t n)
{
	struct pgt_attach_config *c = &e->cfg;
	int r;

	memset(e, 0, sizeof(*e));
	c->size = sizeof(*c);
	c->http_port = -1;
	c->log = log_stderr;
	c->log_level = PGT_LOG_INFO;
	if ((r = env_periods(c, err, n)) || (r = env_tracking(c, err, n)) ||
	    (r = env_behaviour(e, err, n)))
		return r;
	c->state_dir = getenv("PGT_ATTACH_DIR");
	return env_rules(e, err, n);
}

/* ---- starting ---- */

/* /proc/self/cmdline, whole (QEMU command lines are long). */
static char *read_cmdline(size_t *len)
{
	size_t cap = 1 << 16, got = 0;
	char *buf = malloc(cap);
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);

	*len = 0;
	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap) {
			char *nb = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	*len = got;
	return buf;
}

/* Whether this process is one to attach to: preloaded (not linked) or
 * PGT_ATTACH=1, and the executable matches PGT_ATTACH_EXE. */
static bool wanted(bool *is_qemu)
{
	const char *on = getenv("PGT_ATTACH"), *pre = getenv("LD_PRELOAD");
	const char *pattern = getenv("PGT_ATTACH_EXE");
	char exe[PATH_MAX];
	ssize_t n;
	const char *base;

	if (on && !strcmp(on, "0"))
		return false;
	/* a VMM linking the library drives it through the API itself */
	if (!(on && !strcmp(on, "1")) && !(pre && strstr(pre, "pgtrack-attach")))
		return false;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = 0;
	base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	snprintf(exe_name, sizeof(exe_name), "%.63s", base);
	*is_qemu = !fnmatch("qemu-system-*", base, 0);
	return !fnmatch(pattern && *pattern ? pattern : "qemu-system-*", base, 0);
}

static void start(void)
{
	struct env_cfg e;
	char err[256];
	char *cmdline = NULL;
	size_t len = 0;
	bool is_qemu = false;
	int ret;

	if (!wanted(&is_qemu))
		return;
	if (parse_env(&e, err, sizeof(err))) {
		log_stderr(NULL, PGT_LOG_ERR, err);
		log_stderr(NULL, PGT_LOG_ERR, "not attaching; the VMM runs as without pgtrack");
		return;
	}
	ret = pgt_attach_open(&e.cfg, &preload);
	if (ret) {
		if (!e.quiet)
			log_stderr(NULL, PGT_LOG_ERR, ret == -EINVAL ?
				   "bad PGT_ATTACH_* settings; not attaching" :
				   "cannot attach (see above); the VMM runs as without pgtrack");
		preload = NULL;
		return;
	}
	/* only QEMU's command line says how big its RAM is */
	if (is_qemu)
		cmdline = read_cmdline(&len);
	ret = pgt_attach__autofind(preload, e.rules, cmdline, len);
	free(cmdline);
	if (ret && !e.quiet) {
		log_stderr(NULL, PGT_LOG_ERR, "cannot start looking for guest RAM; not attaching");
		pgt_attach_close(preload);
		preload = NULL;
		return;
	}
	if (!e.quiet && e.cfg.log_level >= PGT_LOG_INFO) {
		char msg[160];

		if (pgt_attach_http_port(preload))
			snprintf(msg, sizeof(msg), "looking for guest RAM; /metrics and /json on "
				 "http://127.0.0.1:%d", pgt_attach_http_port(preload));
		else
			snprintf(msg, sizeof(msg), "looking for guest RAM (no HTTP: set PGT_ATTACH_PORT)");
		log_stderr(NULL, PGT_LOG_INFO, msg);
	}
}

static void on_fork_child(void)
{
	if (preload)
		atomic_store(&forked, true);
}

/* In a child of fork() (QEMU -daemonize): the threads stayed behind. */
static void check_fork(void)
{
	if (!atomic_load_explicit(&forked, memory_order_relaxed) || !atomic_exchange(&forked, false))
		return;
	/* the parent's instance cannot be closed here: its threads and locks
	 * are the parent's; it is left as it is */
	preload = NULL;
	pgt_attach__after_fork();
	start();
}

__attribute__((constructor)) static void attach_init(void)
{
	start();
	if (preload)
		pthread_atfork(NULL, NULL, on_fork_child);
}

__attribute__((destructor)) static void attach_fini(void)
{
	/* at exit the VMM's threads may still run: no teardown, only the state
	 * file goes, so no tool reports a process that is gone */
	if (preload && !atomic_load(&forked))
		pgt_attach__exit(preload);
}

/* ---- the wrappers ---- */

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef int (*madvise_fn)(void *, size_t, int);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*fallocate64_fn)(int, int, off64_t, off64_t);

static _Atomic(ioctl_fn) real_ioctl;
static _Atomic(madvise_fn) real_madvise;

static int call_ioctl(int fd, unsigned long req, void *arg)
{
	ioctl_fn f = atomic_load_explicit(&real_ioctl, memory_order_relaxed);

	if (!f) {
		f = (ioctl_fn)next("ioctl");
		if (!f) {
			errno = ENOSYS;
			return -1;
		}
		atomic_store(&real_ioctl, f);
	}
	return f(fd, req, arg);
}

static void note_madvise(uint64_t start, uint64_t len, int advice)
{
	pgt_attach__registry_lock();
	for (struct pgt_attach *a = pgt_attach__registry_first(); a; a = a->next_inst)
		pgt_attach__note_madvise(a, start, len, advice);
	pgt_attach__registry_unlock();
}

PGT_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	const struct uffdio_register *reg;
	va_list ap;
	void *arg;
	int ret, err;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req != UFFDIO_REGISTER || pgt_attach__inside || !arg)
		return call_ioctl(fd, req, arg);
	check_fork();
	reg = arg;
	pgt_attach__registry_lock();
	for (struct pgt_attach *a = pgt_attach__registry_first(); a; a = a->next_inst) {
		char who[96];

		snprintf(who, sizeof(who), "%s (pid %d)", exe_name, (int)getpid());
		pgt_attach_uffd_claim(a, reg->range.start, reg->range.len, who);
	}
	ret = call_ioctl(fd, req, arg);
	err = errno;
	pgt_attach__registry_unlock();
	errno = err;
	return ret;
}

#define MAX_HELD 8

PGT_EXPORT int madvise(void *addr, size_t len, int advice)
{
	madvise_fn f = atomic_load_explicit(&real_madvise, memory_order_relaxed);
	struct pgt_attach *held[MAX_HELD];
	bool discard = advice == MADV_DONTNEED || advice == MADV_REMOVE;
	unsigned nheld = 0;
	int ret, err;

	if (!f) {
		f = (madvise_fn)next("madvise");
		if (!f) {
			errno = ENOSYS;
			return -1;
		}
		atomic_store(&real_madvise, f);
	}
	if (pgt_attach__inside || (!discard && advice != MADV_WILLNEED))
		return f(addr, len, advice);
	check_fork();
	if (discard) {
		/* no harvest while tracked memory is being freed (attach_pvt.h) */
		pgt_attach__registry_lock();
		for (struct pgt_attach *a = pgt_attach__registry_first(); a && nheld < MAX_HELD;
		     a = a->next_inst)
			if (pgt_attach__discard_begin(a, (uintptr_t)addr, len))
				held[nheld++] = a;
		pgt_attach__registry_unlock();
	}
	ret = f(addr, len, advice);
	err = errno;
	for (unsigned i = 0; i < nheld; i++)
		pgt_attach__discard_end(held[i], (uintptr_t)addr, len);
	if (!ret)
		note_madvise((uintptr_t)addr, len, advice);
	errno = err;
	return ret;
}

/* After a successful punch-hole of @fd: count it where it hits guest RAM. */
static void note_punch(int fd, int mode, int64_t off, int64_t len)
{
	struct stat st;
	int err = errno;

	if (pgt_attach__inside || !(mode & FALLOC_FL_PUNCH_HOLE) || off < 0 || len <= 0)
		return;
	check_fork();
	if (!fstat(fd, &st)) {
		pgt_attach__registry_lock();
		for (struct pgt_attach *a = pgt_attach__registry_first(); a; a = a->next_inst)
			pgt_attach__note_punch(a, (uint64_t)st.st_dev, (uint64_t)st.st_ino,
					       (uint64_t)off, (uint64_t)len);
		pgt_attach__registry_unlock();
	}
	errno = err;
}

/* libc's @name, looked up once into @slot. */
static void *real(_Atomic(void *) *slot, const char *name)
{
	void *f = atomic_load_explicit(slot, memory_order_relaxed);

	if (!f) {
		f = next(name);
		atomic_store(slot, f);
	}
	if (!f)
		errno = ENOSYS;
	return f;
}

static _Atomic(void *) libc_fallocate, libc_fallocate64;

PGT_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	fallocate_fn f = (fallocate_fn)real(&libc_fallocate, "fallocate");
	int ret = f ? f(fd, mode, off, len) : -1;

	if (!ret)
		note_punch(fd, mode, off, len);
	return ret;
}

/* QEMU is built with 64-bit file offsets: it calls this one */
PGT_EXPORT int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	fallocate64_fn f = (fallocate64_fn)real(&libc_fallocate64, "fallocate64");
	int ret = f ? f(fd, mode, off, len) : -1;

	if (!ret)
		note_punch(fd, mode, off, len);
	return ret;
}
