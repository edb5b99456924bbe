/* SPDX-License-Identifier: MIT */
/*
 * libpgtrack-attach: instances, regions, the sampler thread, stepping
 * aside, the state file and the HTTP endpoint.
 *
 * Locking: the registry lock (global: the list of open instances) is taken
 * before an instance's lock, by whoever registers memory with userfaultfd
 * (pgt_attach_add(), discovery) and by the preload's UFFDIO_REGISTER
 * wrapper around the VMM's own registration, so the two never interleave:
 * either pgtrack's registration lands first and the VMM's wrapper makes it
 * step aside, or the VMM's lands first and pgtrack's fails with EBUSY.
 * The sampler takes only the instance lock. Threads of pgtrack itself
 * (the engine's fault handlers) take neither.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "hal/export.h"
#include "tools/attach/attach_pvt.h"

_Thread_local int pgt_attach__inside;

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct pgt_attach *instances;

void pgt_attach__registry_lock(void)
{
	pthread_mutex_lock(&registry);
}

void pgt_attach__registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}

struct pgt_attach *pgt_attach__registry_first(void)
{
	return instances;
}

void pgt_attach__after_fork(void)
{
	pthread_mutex_init(&registry, NULL);
	instances = NULL;
}

void pgt_attach__exit(struct pgt_attach *a)
{
	if (a && a->state_path[0] && a->pid == getpid())
		unlink(a->state_path);
}

uint64_t pgt_attach__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void pgt_attach__log(const struct pgt_attach *a, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!a->cfg.log || level > a->cfg.log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->cfg.log(a->cfg.log_arg, level, msg);
}

static void set_state(struct pgt_attach *a, int state, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_state(struct pgt_attach *a, int state, const char *fmt, ...)
{
	va_list ap;

	a->state = state;
	va_start(ap, fmt);
	vsnprintf(a->message, sizeof(a->message), fmt, ap);
	va_end(ap);
}

PGT_EXPORT const char *pgt_attach_state_name(int state)
{
	static const char *const names[] = {
		[PGT_ATTACH_SEARCHING] = "searching",
		[PGT_ATTACH_ATTACHED] = "attached",
		[PGT_ATTACH_WAITING] = "waiting",
		[PGT_ATTACH_STEPPED_ASIDE] = "stepped-aside",
		[PGT_ATTACH_FAILED] = "failed",
	};

	if (state < 0 || state >= (int)(sizeof(names) / sizeof(names[0])))
		return NULL;
	return names[state];
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

static int check_config(struct pgt_attach_config *c)
{
	const uint32_t known = PGT_TRACK_DIRTY | PGT_TRACK_TOUCH | PGT_TRACK_REMOVE;

	if (c->flags & ~(uint32_t)PGT_ATTACH_HOLD)
		return -EINVAL;
	if ((c->track & ~known) || (c->track && !(c->track & PGT_TRACK_DIRTY)))
		return -EINVAL;
	if (c->dirty_method < 0 || c->dirty_method >= PGT_DIRTY__COUNT)
		return -EINVAL;
	/* these stop or fault the vCPU on its writes: not in someone else's VMM */
	if (c->dirty_method == PGT_DIRTY_UFFD_SYNC || c->dirty_method == PGT_DIRTY_MPROTECT ||
	    c->dirty_method == PGT_DIRTY_NONE)
		return -EOPNOTSUPP;
	if (!c->interval_ms)
		c->interval_ms = 100;
	if (!c->epoch_ms)
		c->epoch_ms = c->interval_ms > 1000 ? c->interval_ms : 1000;
	if (c->interval_ms < 10 || c->interval_ms > 60000 || c->epoch_ms > 600000 ||
	    c->epoch_ms % c->interval_ms)
		return -EINVAL;
	if (!c->numa_ms)
		c->numa_ms = 10000;
	if (c->numa_ms < -1 || c->numa_ms > 3600000)
		return -EINVAL;
	if (c->http_port < -1 || c->http_port > 65535)
		return -EINVAL;
	if (!c->log_level)
		c->log_level = PGT_LOG_INFO;
	return 0;
}

/* Tracker and tracking bits this host allows without touching the guest. */
static int resolve_tracking(struct pgt_attach *a)
{
	const struct pgt_probe *p = &a->probe;
	uint32_t want = a->cfg.track;

	switch (a->cfg.dirty_method) {
	case PGT_DIRTY_AUTO:
		if (p->pagemap_scan)
			a->method = PGT_DIRTY_UFFD_ASYNC;
		else if (p->soft_dirty)
			a->method = PGT_DIRTY_SOFT_DIRTY;
		else
			return -EOPNOTSUPP;
		break;
	case PGT_DIRTY_UFFD_ASYNC:
		if (!p->pagemap_scan)
			return -EOPNOTSUPP;
		a->method = PGT_DIRTY_UFFD_ASYNC;
		break;
	default:
		if (!p->soft_dirty)
			return -EOPNOTSUPP;
		a->method = PGT_DIRTY_SOFT_DIRTY;
		break;
	}
	/*
	 * A user-mode-only userfaultfd (no CAP_SYS_PTRACE,
	 * vm.unprivileged_userfaultfd=0) cannot serve a missing-page fault
	 * taken inside a system call: the VMM's read() into guest memory, or
	 * KVM's access, would fail with EFAULT. Touch tracking would change what
	 * the guest sees then; WP-async faults never leave the kernel.
	 */
	bool touch_ok = p->touch_tracking && !p->uffd_user_only;

	if (!want) {
		want = PGT_TRACK_DIRTY;
		if (touch_ok)
			want |= PGT_TRACK_TOUCH;
		if ((a->method == PGT_DIRTY_UFFD_ASYNC || touch_ok) &&
		    (p->uffd_features & UFFD_FEATURE_EVENT_REMOVE))
			want |= PGT_TRACK_REMOVE;
	} else if ((want & PGT_TRACK_TOUCH) && !touch_ok) {
		return -EOPNOTSUPP;
	}
	a->track = want;
	return 0;
}

/* ------------------------------------------------------------------ */
/* State file                                                          */
/* ------------------------------------------------------------------ */

/* A directory we own (or create) and may write. */
static bool usable_dir(const char *dir, bool is_tmp)
{
	struct stat st;

	if (mkdir(dir, is_tmp ? 0700 : 0755) && errno != EEXIST)
		return false;
	if (lstat(dir, &st) || !S_ISDIR(st.st_mode))
		return false;
	/* a directory in /tmp someone else made could be theirs to read or swap */
	if (is_tmp && st.st_uid != geteuid())
		return false;
	return access(dir, W_OK) == 0;
}

static void choose_state_dir(struct pgt_attach *a)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[512];

	a->state_path[0] = 0;
	if (a->cfg.state_dir && !a->cfg.state_dir[0])
		return;
	for (unsigned i = 0; pgtool_attach_dir(i, (unsigned)geteuid(), a->cfg.state_dir, xdg, dir,
					      sizeof(dir)) >= 0; i++) {
		if (!usable_dir(dir, !strncmp(dir, "/tmp/", 5)))
			continue;
		snprintf(a->state_dir, sizeof(a->state_dir), "%s", dir);
		snprintf(a->state_path, sizeof(a->state_path), "%s/attach-%d.json", dir, a->pid);
		return;
	}
	pgt_attach__log(a, PGT_LOG_WARN, "no writable directory for the state file "
			"(PGT_ATTACH_DIR, /run/pgtrack, $XDG_RUNTIME_DIR, /tmp): other tools "
			"will not see this process");
}

static void write_state(struct pgt_attach *a)
{
	char tmp[640];
	size_t len = 0, off = 0;
	char *doc;
	int fd;

	if (!a->state_path[0])
		return;
	doc = pgt_attach__json(a, false, &len);
	if (!doc)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd >= 0) {
		while (off < len) {
			ssize_t n = write(fd, doc + off, len - off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		/* readers see the old document or the new one, never half */
		if (close(fd) || off < len || rename(tmp, a->state_path))
			unlink(tmp);
	}
	free(doc);
}

/* ------------------------------------------------------------------ */
/* Regions                                                             */
/* ------------------------------------------------------------------ */

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static void publish(struct pgt_attach *a, unsigned i, bool live)
{
	struct att_range *r = &a->ranges[i];

	if (live) {
		atomic_store(&r->start, a->reg[i].start);
		atomic_store(&r->end, a->reg[i].start + a->reg[i].length);
	} else {
		atomic_store(&r->end, 0);
	}
}

/* Stop tracking region @g. a->lock held. */
static void drop(struct pgt_attach *a, struct att_region *g)
{
	int ret;

	if (!g->live)
		return;
	publish(a, (unsigned)(g - a->reg), false);
	pgt_attach__inside++;
	if (g->age)
		pgt_age_stop(g->r);
	pgt_dirty_view_close(g->rate);
	ret = pgt_region_destroy(g->r);
	pgt_attach__inside--;
	if (ret)
		pgt_attach__log(a, PGT_LOG_ERR, "%s: pgt_region_destroy: %s", g->name,
				strerror(-ret));
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	g->r = NULL;
	g->rate = NULL;
	g->age = false;
	g->live = false;
	g->hist_ok = false;
	g->touched = g->resident = g->released = -1;
}

static const char *backing_of(const char *mapping, int fd, uint64_t page_size)
{
	if (page_size > (uint64_t)sysconf(_SC_PAGESIZE))
		return "hugetlb";
	if (fd < 0)
		return "anon";
	if (mapping && !strncmp(mapping, "/memfd:", 7))
		return "memfd";
	if (mapping && (!strncmp(mapping, "/dev/shm/", 9) || !strncmp(mapping, "/SYSV", 5)))
		return "shmem";
	return "file";
}

/*
 * Track @ram in slot @i (a new slot, or the slot of the same mapping when
 * tracking comes back). Registry lock and a->lock held.
 */
/* A new slot: its guest-physical base and name, kept across re-tracking. */
static void slot_init(struct pgt_attach *a, unsigned i, const struct pgt_attach_ram *ram)
{
	struct att_region *g = &a->reg[i];
	uint64_t align = 1ULL << 30;

	memset(g, 0, sizeof(*g));
	g->gpa = a->next_gpa;
	/* guest-physical space is pgtrack's own here: one GiB-aligned base per
	 * mapping, in the order they were found */
	a->next_gpa += (ram->length + align - 1) & ~(align - 1);
	snprintf(g->name, sizeof(g->name), "%s", ram->name ? ram->name : "");
	if (!g->name[0])
		snprintf(g->name, sizeof(g->name), "ram%u", i);
	g->fd = -1;
}

/* Register the mapping (without first touch where the memory cannot do it),
 * open the rate view and start write ages. */
static int register_ram(struct pgt_attach *a, struct att_region *g, struct pgt_region_config *rc)
{
	int ret, aret;

	pgt_attach__inside++;
	ret = pgt_region_register(a->eng, rc, &g->r);
	if (ret == -EOPNOTSUPP && (rc->track & PGT_TRACK_TOUCH)) {
		/* e.g. MISSING faults are not offered on this file system */
		pgt_attach__log(a, PGT_LOG_WARN, "%s: no first-touch tracking on this memory (%s); "
				"dirty and released only", g->name, strerror(-ret));
		rc->track &= ~(uint32_t)PGT_TRACK_TOUCH;
		if (a->method != PGT_DIRTY_UFFD_ASYNC)
			rc->track &= ~(uint32_t)PGT_TRACK_REMOVE;
		ret = pgt_region_register(a->eng, rc, &g->r);
	}
	if (!ret) {
		ret = pgt_dirty_view_open(g->r, &g->rate);
		if (ret) {
			pgt_region_destroy(g->r);
			g->r = NULL;
		}
	}
	if (!ret) {
		aret = pgt_age_start(g->r);
		g->age = aret == 0;
		if (aret)
			pgt_attach__log(a, PGT_LOG_WARN, "%s: no write ages: %s", g->name,
					strerror(-aret));
	}
	pgt_attach__inside--;
	return ret;
}

/* The slot's figures for a freshly tracked mapping. */
static void slot_fill(struct att_region *g, const struct pgt_attach_ram *ram, const char *mapping,
		      int fd, const struct stat *st)
{
	struct pgt_region_info info = { .size = sizeof(info) };

	pgt_region_info(g->r, &info);
	g->used = true;
	g->live = true;
	g->start = (uintptr_t)ram->addr;
	g->length = ram->length;
	g->page_size = info.page_size;
	g->fd_offset = ram->fd_offset;
	g->fd = fd;
	g->dev = fd >= 0 ? (uint64_t)st->st_dev : 0;
	g->ino = fd >= 0 ? (uint64_t)st->st_ino : 0;
	g->track = info.track;
	g->method = info.dirty_method;
	g->touched = g->resident = g->released = -1;
	g->ring_n = g->ring_head = 0;
	g->live_since_ns = pgt_attach__now_ns();
	snprintf(g->mapping, sizeof(g->mapping), "%s", mapping ? mapping : "");
	snprintf(g->backing, sizeof(g->backing), "%s", backing_of(mapping, fd, info.page_size));
}

static int track(struct pgt_attach *a, unsigned i, const struct pgt_attach_ram *ram,
		 const char *mapping)
{
	struct att_region *g = &a->reg[i];
	struct pgt_region_config rc = {
		.size = sizeof(rc), .backing = PGT_BACKING_EXTERNAL, .length = ram->length,
		.track = a->track, .dirty_method = a->method, .numa_node = -1,
		.addr = ram->addr, .fd = -1, .fd_offset = ram->fd_offset,
		.page_size = ram->page_size,
	};
	struct stat st = { 0 };
	int fd = -1, ret;

	if (ram->fd >= 0) {
		fd = fcntl(ram->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0 || fstat(fd, &st)) {
			ret = -errno;
			if (fd >= 0)
				close(fd);
			return ret;
		}
		rc.fd = fd;
	}
	if (!g->used)
		slot_init(a, i, ram);
	rc.gpa = g->gpa;
	rc.name = g->name;
	ret = register_ram(a, g, &rc);
	if (ret) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	if (!g->ring) {
		g->ring = calloc(60000 / a->cfg.interval_ms + 2, sizeof(*g->ring));
		if (!g->ring) {
			g->used = true;
			g->live = true;
			drop(a, g);
			return -ENOMEM;
		}
	}
	slot_fill(g, ram, mapping, fd, &st);
	if (i == a->nregions)
		a->nregions++;
	publish(a, i, true);
	pgt_attach__log(a, PGT_LOG_INFO, "%s: tracking %s%s%#" PRIx64 "+%" PRIu64 " MiB (%s, %" PRIu64
			" KiB pages): %s%s%s", g->name, g->mapping[0] ? g->mapping : "",
			g->mapping[0] ? " at " : "", g->start, g->length >> 20, g->backing,
			g->page_size >> 10, pgt_dirty_method_name(g->method),
			g->track & PGT_TRACK_TOUCH ? ", first touch" : "",
			g->track & PGT_TRACK_REMOVE ? ", remove events" : "");
	return (int)i;
}

/* Registry lock and a->lock held. */
static int add_locked(struct pgt_attach *a, const struct pgt_attach_ram *ram, const char *mapping)
{
	uint64_t start = (uintptr_t)ram->addr, ps = ram->page_size;
	unsigned slot = a->nregions;
	int ret;

	if (!ps)
		ps = (uint64_t)sysconf(_SC_PAGESIZE);
	if (!ram->addr || !ram->length || (ps & (ps - 1)) || (start & (ps - 1)) ||
	    (ram->length & (ps - 1)) || start + ram->length < start)
		return -EINVAL;
	for (unsigned i = 0; i < a->nregions; i++) {
		const struct att_region *g = &a->reg[i];

		if (g->used && g->start == start && g->length == ram->length) {
			if (g->live)
				return -EEXIST;
			slot = i;
		} else if (g->live && overlap(g->start, g->length, start, ram->length)) {
			return -EEXIST;
		}
	}
	if (slot == PGT_ATTACH_MAX_REGIONS)
		return -ENOSPC;
	/* just gave it to the VMM: do not take it back under its feet */
	if (pgt_attach__now_ns() < a->hold_off_ns)
		return -EBUSY;
	ret = track(a, slot, ram, mapping);
	if (ret >= 0) {
		unsigned live = 0;

		for (unsigned i = 0; i < a->nregions; i++)
			live += a->reg[i].live;
		set_state(a, PGT_ATTACH_ATTACHED, "tracking %u mapping%s with %s", live,
			  live == 1 ? "" : "s", pgt_dirty_method_name(a->method));
	}
	return ret;
}

PGT_EXPORT int pgt_attach_add(pgt_attach *a, const struct pgt_attach_ram *ram)
{
	int ret;

	if (!a || !ram || pgt__arg_in(ram, ram->size, sizeof(*ram), sizeof(*ram)) ||
	    ram->reserved)
		return -EINVAL;
	pgt_attach__registry_lock();
	pthread_mutex_lock(&a->lock);
	ret = add_locked(a, ram, NULL);
	pthread_mutex_unlock(&a->lock);
	pgt_attach__registry_unlock();
	return ret;
}

/* ------------------------------------------------------------------ */
/* Discovery                                                           */
/* ------------------------------------------------------------------ */

/*
 * The mappings that are guest RAM by @rules / @cmdline, read without any
 * lock held (smaps walks every page table of the process). Returns the
 * number found (up to PGT_ATTACH_MAX_REGIONS in @c), -errno.
 */
static int gather(const char *rules, const char *cmdline, size_t cmdline_len,
		  struct att_candidate *c, unsigned *expected)
{
	uint64_t sizes[ATT_MAX_SIZES];
	pgtool_procmap *pm = NULL;
	int nsizes = 0, n;

	if (!rules && cmdline) {
		nsizes = pgt_attach__cmdline_sizes(cmdline, cmdline_len, sizes, ATT_MAX_SIZES);
		if (nsizes < 0)
			nsizes = 0;
		if (nsizes > ATT_MAX_SIZES)
			nsizes = ATT_MAX_SIZES;
	}
	if (expected)
		*expected = (unsigned)nsizes;
	n = pgtool_procmap_read(0, 0, &pm);
	if (!n)
		n = pgt_attach__select(pm, rules, sizes, (unsigned)nsizes, c,
				       PGT_ATTACH_MAX_REGIONS);
	pgtool_procmap_free(pm);
	return n > PGT_ATTACH_MAX_REGIONS ? PGT_ATTACH_MAX_REGIONS : n;
}

/* Track the candidates not tracked yet. Registry lock and a->lock held.
 * Returns regions added, or -errno (-ENOENT: no candidate). */
static int add_candidates(struct pgt_attach *a, const struct att_candidate *c, int n)
{
	int added = 0, busy = 0, other = 0;

	if (n <= 0)
		return n ? n : -ENOENT;
	for (int k = 0; k < n; k++) {
		struct pgt_attach_ram ram = {
			.size = sizeof(ram), .addr = (void *)(uintptr_t)c[k].start,
			.length = c[k].end - c[k].start, .fd = -1, .fd_offset = c[k].offset,
			.page_size = c[k].page_size,
		};
		bool known = false;
		int ret;

		for (unsigned i = 0; i < a->nregions; i++)
			if (a->reg[i].live && a->reg[i].start == c[k].start &&
			    a->reg[i].length == ram.length)
				known = true;
		if (known)
			continue;
		/* smaps says another userfaultfd holds it (the VMM's own): do not
		 * even try, the registration would only fail with EBUSY */
		if (c[k].flags & PGTOOL_MAP_UFFD) {
			busy++;
			continue;
		}
		if (c[k].ino)
			ram.fd = pgt_attach__find_fd(&c[k]);
		if (c[k].ino && ram.fd < 0)
			pgt_attach__log(a, PGT_LOG_WARN, "%s: no file descriptor of this process "
					"maps it; its file is opened through /proc/self/map_files "
					"where that is allowed", c[k].name);
		ret = add_locked(a, &ram, c[k].name);
		if (ram.fd >= 0)
			close(ram.fd);
		if (ret >= 0)
			added++;
		else if (ret == -EBUSY)
			busy++;
		else if (!other)
			other = ret;
		if (ret < 0 && ret != -EBUSY)
			pgt_attach__log(a, PGT_LOG_ERR, "cannot track %s at %#" PRIx64 ": %s",
					c[k].name[0] ? c[k].name : "[anon]", c[k].start,
					strerror(-ret));
	}
	if (added)
		return added;
	return busy ? -EBUSY : other;
}

/* Find and add, taking the locks. */
static int find_and_add(struct pgt_attach *a, const char *rules, const char *cmdline,
			size_t cmdline_len, unsigned *expected)
{
	struct att_candidate *c = calloc(PGT_ATTACH_MAX_REGIONS, sizeof(*c));
	int n, ret;

	if (!c)
		return -ENOMEM;
	n = gather(rules, cmdline, cmdline_len, c, expected);
	pgt_attach__registry_lock();
	pthread_mutex_lock(&a->lock);
	ret = add_candidates(a, c, n);
	pthread_mutex_unlock(&a->lock);
	pgt_attach__registry_unlock();
	free(c);
	return ret;
}

PGT_EXPORT int pgt_attach_find(pgt_attach *a, const struct pgt_attach_match *m)
{
	char *rules_copy = NULL;
	int ret;

	if (!a || (m && (pgt__arg_in(m, m->size, sizeof(*m), sizeof(*m)) || m->reserved ||
			 (m->cmdline_len && !m->cmdline))))
		return -EINVAL;
	if (m && m->rules) {
		char *globs[PGT_ATTACH_MAX_REGIONS];
		uint64_t sizes[PGT_ATTACH_MAX_REGIONS];

		rules_copy = strdup(m->rules);
		if (!rules_copy)
			return -ENOMEM;
		ret = pgt_attach__rules(rules_copy, globs, sizes, PGT_ATTACH_MAX_REGIONS);
		free(rules_copy);
		if (ret < 0)
			return ret;
	}
	return find_and_add(a, m ? m->rules : NULL, m ? m->cmdline : NULL,
			    m ? m->cmdline_len : 0, NULL);
}

int pgt_attach__autofind(struct pgt_attach *a, const char *rules, const char *cmdline,
			 size_t cmdline_len)
{
	char *r = NULL, *c = NULL;

	if (rules) {
		char *globs[PGT_ATTACH_MAX_REGIONS], *copy = strdup(rules);
		uint64_t sizes[PGT_ATTACH_MAX_REGIONS];
		int ret = copy ? pgt_attach__rules(copy, globs, sizes, PGT_ATTACH_MAX_REGIONS)
			       : -ENOMEM;

		free(copy);
		if (ret < 0)
			return ret;
		r = strdup(rules);
		if (!r)
			return -ENOMEM;
	}
	if (cmdline && cmdline_len) {
		c = malloc(cmdline_len);
		if (!c) {
			free(r);
			return -ENOMEM;
		}
		memcpy(c, cmdline, cmdline_len);
	}
	pthread_mutex_lock(&a->lock);
	free(a->rules);
	free(a->cmdline);
	a->rules = r;
	a->cmdline = c;
	a->cmdline_len = c ? cmdline_len : 0;
	a->autofind = true;
	a->next_find_ns = 0;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* The sampler's periodic look, a->lock held on entry and exit. */
static void autofind(struct pgt_attach *a, uint64_t now)
{
	unsigned live = 0, expected = 0;
	int ret;

	for (unsigned i = 0; i < a->nregions; i++)
		live += a->reg[i].live;
	if (!a->autofind || now < a->next_find_ns || (a->expected && live >= a->expected) ||
	    a->state == PGT_ATTACH_FAILED)
		return;
	/* the configuration only changes under a->lock, by pgt_attach__autofind() */
	{
		char *rules = a->rules ? strdup(a->rules) : NULL;
		char *cmd = a->cmdline_len ? malloc(a->cmdline_len) : NULL;
		size_t clen = cmd ? a->cmdline_len : 0;
		bool oom = (a->rules && !rules) || (a->cmdline_len && !cmd);

		if (cmd)
			memcpy(cmd, a->cmdline, clen);
		pthread_mutex_unlock(&a->lock);
		ret = oom ? -ENOMEM : find_and_add(a, rules, cmd, clen, &expected);
		free(rules);
		free(cmd);
		pthread_mutex_lock(&a->lock);
	}
	a->expected = expected;
	live = 0;
	for (unsigned i = 0; i < a->nregions; i++)
		live += a->reg[i].live;
	if (ret == -EBUSY && !live) {
		if (a->state != PGT_ATTACH_WAITING && a->state != PGT_ATTACH_STEPPED_ASIDE)
			pgt_attach__log(a, PGT_LOG_WARN, "guest RAM is registered with another "
					"userfaultfd (the VMM's post-copy or background snapshot?): "
					"waiting for it to let go");
		if (a->state != PGT_ATTACH_STEPPED_ASIDE)
			set_state(a, PGT_ATTACH_WAITING, "guest RAM is registered with another "
				  "userfaultfd (the VMM's own post-copy or snapshot); pgtrack waits "
				  "until it is released");
	} else if (ret < 0 && ret != -ENOENT && ret != -EBUSY && !live) {
		set_state(a, PGT_ATTACH_FAILED, "cannot track guest RAM here: %s", strerror(-ret));
		pgt_attach__log(a, PGT_LOG_ERR, "%s", a->message);
	}
	/* search eagerly until QEMU has mapped its RAM, then look now and then
	 * (a hot-added backend, the VMM letting go of its userfaultfd) */
	if (!live && ret == -ENOENT)
		a->next_find_ns = now + (uint64_t)a->cfg.interval_ms * 2000000ull;
	else
		a->next_find_ns = now + 2000000000ull;
}

/* ------------------------------------------------------------------ */
/* Stepping aside                                                      */
/* ------------------------------------------------------------------ */

PGT_EXPORT int pgt_attach_uffd_claim(pgt_attach *a, uint64_t start, uint64_t len, const char *who)
{
	int n = 0;

	if (!a || !len)
		return 0;
	pthread_mutex_lock(&a->lock);
	if (a->cfg.flags & PGT_ATTACH_HOLD) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	for (unsigned i = 0; i < a->nregions; i++) {
		struct att_region *g = &a->reg[i];

		if (!g->live || !overlap(g->start, g->length, start, len))
			continue;
		/* the figures of the tracked time stay; a last sample keeps its writes */
		pgt_attach__sample(a, true);
		drop(a, g);
		n++;
	}
	if (n) {
		a->steps_aside++;
		/* the VMM registers right after this; look again only later */
		a->hold_off_ns = pgt_attach__now_ns() + 2000000000ull;
		a->next_find_ns = a->hold_off_ns;
		set_state(a, PGT_ATTACH_STEPPED_ASIDE, "%s registers guest RAM %#" PRIx64 "+%" PRIu64
			  " MiB with its own userfaultfd (post-copy or background snapshot): "
			  "pgtrack stepped aside and tracks again once it lets go",
			  who ? who : "the VMM", start, len >> 20);
		pgt_attach__log(a, PGT_LOG_WARN, "%s", a->message);
		write_state(a);
	}
	pthread_mutex_unlock(&a->lock);
	return n;
}

/* ------------------------------------------------------------------ */
/* Discards seen by the interposers                                    */
/* ------------------------------------------------------------------ */

/* Take [lo, hi) of region @i back from the released set. a->lock held. */
static uint64_t reclaim_locked(struct pgt_attach *a, unsigned i, uint64_t lo, uint64_t hi)
{
	struct att_region *g = &a->reg[i];
	uint64_t u = PGT_RELEASE_UNIT, gs = (lo - g->start + u - 1) & ~(u - 1);
	uint64_t ge = (hi - g->start) & ~(u - 1);
	int64_t got;

	if (!g->live || ge <= gs)
		return 0;
	pgt_attach__inside++;
	got = pgt_reclaim(a->eng, g->gpa + gs, ge - gs);
	pgt_attach__inside--;
	if (got <= 0)
		return 0;
	atomic_fetch_add(&g->reclaimed, (uint64_t)got * PGT_RELEASE_UNIT);
	return (uint64_t)got * PGT_RELEASE_UNIT;
}

/*
 * @how: 1 discard, 0 re-population, or a madvise advice (ATT_MADVISE |
 * advice): MADV_DONTNEED only unmaps shared memory (the file keeps the
 * pages; QEMU punches a hole first and that is the discard), so it counts
 * as a discard of private memory only.
 */
static int64_t note(struct pgt_attach *a, uint64_t start, uint64_t len, int how)
{
	uint64_t inside = 0;

	if (!a || !len || start + len < start)
		return 0;
	for (unsigned i = 0; i < PGT_ATTACH_MAX_REGIONS; i++) {
		struct att_region *g = &a->reg[i];
		uint64_t s = atomic_load(&a->ranges[i].start), e = atomic_load(&a->ranges[i].end);
		uint64_t lo, hi;
		bool discard = how == 1;

		if (!e || start >= e || start + len <= s)
			continue;
		lo = start > s ? start : s;
		hi = start + len < e ? start + len : e;
		inside += hi - lo;
		if (how & ATT_MADVISE) {
			int adv = how & ~ATT_MADVISE;

			if (adv == MADV_WILLNEED)
				discard = false;
			else if (adv == MADV_REMOVE || (adv == MADV_DONTNEED && !g->ino))
				discard = true;
			else
				continue;
		}
		if (discard) {
			atomic_fetch_add(&g->discarded, hi - lo);
			atomic_fetch_add(&g->discard_calls, 1);
			continue;
		}
		/* balloon deflate: the guest owns these pages again */
		pthread_mutex_lock(&a->lock);
		if (g->live && g->start == s)
			reclaim_locked(a, i, lo, hi);
		pthread_mutex_unlock(&a->lock);
	}
	return (int64_t)inside;
}

bool pgt_attach__discard_begin(struct pgt_attach *a, uint64_t start, uint64_t len)
{
	bool hit = false;

	for (unsigned i = 0; i < PGT_ATTACH_MAX_REGIONS && !hit; i++) {
		uint64_t s = atomic_load(&a->ranges[i].start), e = atomic_load(&a->ranges[i].end);

		hit = e && start < e && start + len > s;
	}
	if (hit)
		pthread_rwlock_rdlock(&a->discard_lock);
	return hit;
}

void pgt_attach__discard_end(struct pgt_attach *a, uint64_t start, uint64_t len)
{
	for (unsigned i = 0; i < PGT_ATTACH_MAX_REGIONS; i++) {
		uint64_t s = atomic_load(&a->ranges[i].start), e = atomic_load(&a->ranges[i].end);

		if (e && start < e && start + len > s)
			atomic_store(&a->reg[i].discard_seen, true);
	}
	pthread_rwlock_unlock(&a->discard_lock);
}

PGT_EXPORT int64_t pgt_attach_note_discard(pgt_attach *a, uint64_t start, uint64_t len, int discard)
{
	return note(a, start, len, discard ? 1 : 0);
}

void pgt_attach__note_madvise(struct pgt_attach *a, uint64_t start, uint64_t len, int advice)
{
	note(a, start, len, ATT_MADVISE | advice);
}

void pgt_attach__note_punch(struct pgt_attach *a, uint64_t dev, uint64_t ino, uint64_t off,
			    uint64_t len)
{
	for (unsigned i = 0; i < PGT_ATTACH_MAX_REGIONS; i++) {
		const struct att_region *g = &a->reg[i];
		uint64_t s = atomic_load(&a->ranges[i].start), e = atomic_load(&a->ranges[i].end);
		uint64_t lo, hi;

		/* dev/ino/fd_offset only change while the range is unpublished */
		if (!e || g->ino != ino || g->dev != dev)
			continue;
		lo = off > g->fd_offset ? off : g->fd_offset;
		hi = off + len < g->fd_offset + (e - s) ? off + len : g->fd_offset + (e - s);
		if (hi > lo)
			note(a, s + (lo - g->fd_offset), hi - lo, 1);
	}
}

/* ------------------------------------------------------------------ */
/* Sampling                                                            */
/* ------------------------------------------------------------------ */

static void ring_push(struct pgt_attach *a, struct att_region *g, uint64_t now, uint64_t bytes)
{
	unsigned cap = 60000 / a->cfg.interval_ms + 2;

	g->ring[g->ring_head] = (struct att_sample){ now, bytes };
	g->ring_head = (g->ring_head + 1) % cap;
	if (g->ring_n < cap)
		g->ring_n++;
}

/* Bytes per second written over the last @window_ms. */
static uint64_t ring_rate(const struct pgt_attach *a, const struct att_region *g, uint64_t now,
			  uint64_t window_ms)
{
	unsigned cap = 60000 / a->cfg.interval_ms + 2;
	uint64_t from = now - window_ms * 1000000ull, sum = 0, span;

	if (!g->ring_n)
		return 0;
	for (unsigned k = 0; k < g->ring_n; k++) {
		const struct att_sample *s = &g->ring[(g->ring_head + cap - 1 - k) % cap];

		if (s->t_ns <= from)
			break;
		sum += s->bytes;
	}
	/* tracked for less than the window: the rate over what was seen */
	span = now - g->live_since_ns < window_ms * 1000000ull ? now - g->live_since_ns
							      : window_ms * 1000000ull;
	if (!span)
		return 0;
	return (uint64_t)((double)sum * 1e9 / (double)span);
}

void pgt_attach__sample(struct pgt_attach *a, bool epoch)
{
	uint64_t now = pgt_attach__now_ns();
	bool numa = epoch && a->cfg.numa_ms >= 0 && now >= a->next_numa_ns;

	/* no discard of the VMM between a rescan and the harvests below */
	pthread_rwlock_wrlock(&a->discard_lock);
	pgt_attach__inside++;
	for (unsigned i = 0; i < a->nregions; i++) {
		struct att_region *g = &a->reg[i];
		struct pgt_harvest h = { .size = sizeof(h) };
		struct pgt_account acc = { .size = sizeof(acc) };
		int64_t n;

		if (!g->live)
			continue;
		/* REMOVE events and frees behind our back become "released"
		 * here, before a harvest write-protects the holes they left */
		if (atomic_exchange(&g->discard_seen, false) || epoch)
			pgt_release_rescan(g->r);
		n = pgt_dirty_harvest(g->rate, &h);
		if (n < 0) {
			pgt_attach__log(a, PGT_LOG_ERR, "%s: harvest: %s", g->name, strerror((int)-n));
			continue;
		}
		g->dirty_total += (uint64_t)n * g->page_size;
		ring_push(a, g, now, (uint64_t)n * g->page_size);
		if (!epoch)
			continue;
		if (g->age) {
			g->hist.size = sizeof(g->hist);
			g->hist_ok = pgt_age_sample(g->r) >= 0 && !pgt_age_histogram(g->r, &g->hist);
		}
		if (!pgt_account_region(g->r, 0, &acc)) {
			g->touched = g->track & PGT_TRACK_TOUCH ? (int64_t)acc.total.touched : -1;
			g->resident = (int64_t)acc.total.resident;
			g->released = (int64_t)acc.total.released;
		}
		if (numa) {
			int64_t q;

			g->pl = (struct pgt_placement){ .size = sizeof(g->pl) };
			q = pgt_region_placement(g->r, &g->pl);
			g->pl_err = q < 0 ? (int)q : 0;
			g->pl_ns = now;
		}
	}
	pgt_attach__inside--;
	pthread_rwlock_unlock(&a->discard_lock);
	if (numa)
		a->next_numa_ns = now + (uint64_t)a->cfg.numa_ms * 1000000ull;
}

static void add_figures(struct pgt_attach *a, const struct att_region *g, uint64_t now,
			struct pgt_attach_figures *f, bool *known)
{
	static const uint64_t windows_ms[PGT_ATTACH_RATES] = { 1000, 10000, 60000 };

	f->discarded_bytes += atomic_load(&((struct att_region *)g)->discarded);
	f->discard_calls += atomic_load(&((struct att_region *)g)->discard_calls);
	f->reclaimed_bytes += atomic_load(&((struct att_region *)g)->reclaimed);
	f->dirty_bytes_total += g->dirty_total;
	if (!g->live)
		return;
	f->regions++;
	f->guest_bytes += g->length;
	for (int k = 0; k < PGT_ATTACH_RATES; k++)
		f->dirty_rate[k] += ring_rate(a, g, now, windows_ms[k]);
	if (g->hist_ok) {
		uint64_t cum = 0;

		for (int k = 0; k < PGT_ATTACH_WINDOWS; k++) {
			cum += g->hist.write[k];
			f->written_bytes[k] += cum * g->page_size;
		}
	}
	if (g->touched >= 0) {
		f->touched_bytes = (known[0] ? f->touched_bytes : 0) + g->touched;
		known[0] = true;
	}
	if (g->resident >= 0) {
		f->resident_bytes = (known[1] ? f->resident_bytes : 0) + g->resident;
		known[1] = true;
	}
	if (g->released >= 0) {
		f->released_bytes = (known[2] ? f->released_bytes : 0) + g->released;
		known[2] = true;
	}
	if (g->pl_ns && !g->pl_err) {
		int64_t age = (int64_t)((now - g->pl_ns) / 1000000ull);

		if (f->numa_age_ms < 0 || age > f->numa_age_ms)
			f->numa_age_ms = age;
		for (unsigned n = 0; n < g->pl.nnodes && n < PGT_MAX_NODES; n++)
			f->node_bytes[n] += g->pl.node_pages[n] * g->pl.page_size;
		if (g->pl.nnodes > f->nnodes)
			f->nnodes = g->pl.nnodes;
	}
}

void pgt_attach__figures(struct pgt_attach *a, const struct att_region *reg,
			 struct pgt_attach_figures *f)
{
	uint64_t now = pgt_attach__now_ns();
	bool known[3] = { false, false, false };
	uint32_t size = f->size;

	memset(f, 0, sizeof(*f));
	f->size = size;
	f->state = (uint32_t)a->state;
	f->steps_aside = a->steps_aside;
	f->touched_bytes = f->resident_bytes = f->released_bytes = -1;
	f->numa_age_ms = -1;
	for (unsigned i = 0; i < a->nregions; i++)
		if (a->reg[i].used && (!reg || reg == &a->reg[i]))
			add_figures(a, &a->reg[i], now, f, known);
}

PGT_EXPORT int pgt_attach_figures(pgt_attach *a, int region, struct pgt_attach_figures *f)
{
	struct pgt_attach_figures tmp = { .size = sizeof(tmp) };
	size_t fill;

	if (!a || !f || pgt__arg_out(f, f->size, sizeof(*f), sizeof(*f), &fill))
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	if (region >= 0 && ((unsigned)region >= a->nregions || !a->reg[region].used)) {
		pthread_mutex_unlock(&a->lock);
		return -ENOENT;
	}
	pgt_attach__sample(a, false);
	pgt_attach__figures(a, region >= 0 ? &a->reg[region] : NULL, &tmp);
	pthread_mutex_unlock(&a->lock);
	tmp.size = f->size;
	memcpy(f, &tmp, fill);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Rendering and HTTP                                                  */
/* ------------------------------------------------------------------ */

PGT_EXPORT int64_t pgt_attach_render(pgt_attach *a, int format, char **buf)
{
	size_t len = 0;
	char *out;

	if (!a || !buf || (format != PGT_ATTACH_JSON && format != PGT_ATTACH_PROMETHEUS))
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	pgt_attach__sample(a, false);
	out = format == PGT_ATTACH_JSON ? pgt_attach__json(a, true, &len)
					: pgt_attach__prometheus(a, &len);
	pthread_mutex_unlock(&a->lock);
	if (!out)
		return -ENOMEM;
	*buf = out;
	return (int64_t)len;
}

static int http_handler(void *arg, const char *path, struct pgtool_http_reply *r)
{
	struct pgt_attach *a = arg;
	char *body = NULL;
	int64_t n;

	if (!strcmp(path, "/metrics")) {
		n = pgt_attach_render(a, PGT_ATTACH_PROMETHEUS, &body);
		r->type = "text/plain; version=0.0.4; charset=utf-8";
	} else if (!strcmp(path, "/json") || !strcmp(path, "/metrics.json")) {
		n = pgt_attach_render(a, PGT_ATTACH_JSON, &body);
		r->type = "application/json";
	} else {
		static const char help[] = "pgtrack-attach: /metrics (Prometheus), /json\n";

		r->status = !strcmp(path, "/") ? 200 : 404;
		r->type = "text/plain; charset=utf-8";
		r->body = strdup(help);
		r->len = sizeof(help) - 1;
		return r->body ? 0 : -ENOMEM;
	}
	if (n < 0)
		return (int)n;
	r->status = 200;
	r->body = body;
	r->len = (size_t)n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The sampler thread                                                  */
/* ------------------------------------------------------------------ */

static void *sampler(void *arg)
{
	struct pgt_attach *a = arg;
	uint64_t tick = pgt_attach__now_ns();
	const uint64_t period = (uint64_t)a->cfg.interval_ms * 1000000ull;

	pthread_mutex_lock(&a->lock);
	a->next_epoch_ns = tick;
	while (!a->stop) {
		uint64_t now = pgt_attach__now_ns();
		bool epoch;

		if (a->autofind)
			autofind(a, now);
		if (now < tick) {
			struct timespec ts;
			uint64_t wait = tick;

			if (a->autofind && a->next_find_ns > now && a->next_find_ns < wait)
				wait = a->next_find_ns;
			ts.tv_sec = (time_t)(wait / 1000000000ull);
			ts.tv_nsec = (long)(wait % 1000000000ull);
			pthread_cond_timedwait(&a->wake, &a->lock, &ts);
			continue;
		}
		/* a stall (the host was busy) is not caught up with a burst */
		tick = tick + period > now ? tick + period : now + period;
		epoch = now >= a->next_epoch_ns;
		if (epoch)
			a->next_epoch_ns = now + (uint64_t)a->cfg.epoch_ms * 1000000ull;
		pgt_attach__sample(a, epoch);
		if (epoch)
			write_state(a);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */
/* ------------------------------------------------------------------ */

PGT_EXPORT int pgt_attach_open(const struct pgt_attach_config *cfg, pgt_attach **out)
{
	struct pgt_attach_config c = { .size = sizeof(c), .http_port = -1 };
	struct pgt_engine_config ec = { .size = sizeof(ec), .fault_threads = 1 };
	struct pgt_attach *a;
	char err[160];
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (cfg) {
		if (pgt__arg_in(cfg, cfg->size, sizeof(*cfg), sizeof(*cfg)))
			return -EINVAL;
		c = *cfg;
		c.size = sizeof(c);
	}
	ret = check_config(&c);
	if (ret)
		return ret;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cfg = c;
	if (c.state_dir)
		snprintf(a->state_dir, sizeof(a->state_dir), "%s", c.state_dir);
	a->cfg.state_dir = c.state_dir ? a->state_dir : NULL;
	a->pid = getpid();
	pgtool_proc_starttime(0, &a->starttime);
	pthread_mutex_init(&a->lock, NULL);
	pthread_rwlock_init(&a->discard_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	for (unsigned i = 0; i < PGT_ATTACH_MAX_REGIONS; i++)
		a->reg[i].fd = -1;
	set_state(a, PGT_ATTACH_SEARCHING, "looking for guest RAM");
	ec.log = c.log;
	ec.log_arg = c.log_arg;
	/* the engine's info lines repeat ours, or come every epoch */
	ec.log_level = c.log_level >= PGT_LOG_DEBUG ? PGT_LOG_DEBUG
		       : c.log_level < PGT_LOG_WARN ? c.log_level : PGT_LOG_WARN;
	pgt_attach__inside++;
	ret = pgt_engine_open(&ec, &a->eng);
	pgt_attach__inside--;
	if (ret)
		goto fail;
	a->probe.size = sizeof(a->probe);
	pgt_probe(&a->probe);
	ret = resolve_tracking(a);
	if (ret) {
		pgt_attach__log(a, PGT_LOG_ERR, "no dirty tracker that leaves the guest alone: "
				"uffd WP-async with PAGEMAP_SCAN (Linux 6.7+) %s, soft-dirty %s%s",
				a->probe.pagemap_scan ? "yes" : "no", a->probe.soft_dirty ? "yes" : "no",
				(c.track & PGT_TRACK_TOUCH) && a->probe.uffd_user_only ?
				"; first-touch tracking needs a userfaultfd that serves kernel "
				"faults (root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1)" : "");
		goto fail;
	}
	choose_state_dir(a);
	if (c.http_port >= 0) {
		ret = pgtool_http_start(c.http_port, http_handler, a, &a->http, &a->port, err,
					sizeof(err));
		if (ret) {
			pgt_attach__log(a, PGT_LOG_ERR, "/metrics: %s", err);
			goto fail;
		}
	}
	ret = pthread_create(&a->thread, NULL, sampler, a);
	if (ret) {
		ret = -ret;
		goto fail;
	}
	a->thread_on = true;
	pgt_attach__registry_lock();
	a->next_inst = instances;
	instances = a;
	pgt_attach__registry_unlock();
	*out = a;
	return 0;
fail:
	pgtool_http_stop(a->http);
	pgt_engine_close(a->eng);
	pthread_rwlock_destroy(&a->discard_lock);
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return ret;
}

PGT_EXPORT int pgt_attach_http_port(const pgt_attach *a)
{
	return a ? a->port : 0;
}

PGT_EXPORT void pgt_attach_close(pgt_attach *a)
{
	if (!a)
		return;
	pgt_attach__registry_lock();
	for (struct pgt_attach **pp = &instances; *pp; pp = &(*pp)->next_inst)
		if (*pp == a) {
			*pp = a->next_inst;
			break;
		}
	pgt_attach__registry_unlock();
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	if (a->thread_on)
		pthread_join(a->thread, NULL);
	/* before the regions: a request in flight renders them */
	pgtool_http_stop(a->http);
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < a->nregions; i++) {
		drop(a, &a->reg[i]);
		free(a->reg[i].ring);
	}
	pthread_mutex_unlock(&a->lock);
	if (a->state_path[0])
		unlink(a->state_path);
	pgt_attach__inside++;
	pgt_engine_close(a->eng);
	pgt_attach__inside--;
	free(a->rules);
	free(a->cmdline);
	/* a discard wrapper that found us before we left the registry */
	pthread_rwlock_wrlock(&a->discard_lock);
	pthread_rwlock_unlock(&a->discard_lock);
	pthread_rwlock_destroy(&a->discard_lock);
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
