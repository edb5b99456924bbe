/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-probe: what this host offers for page tracking, what is missing and
 * what each missing piece costs. A table for people, --json for programs.
 * Uses the public API only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <pgtrack.h>

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [--json] [--root DIR]\n"
		"Probe the kernel and host for what page tracking can use.\n"
		"\n"
		"  -j, --json      print one JSON object instead of the table\n"
		"  -r, --root DIR  read /proc and /sys below DIR (a fixture tree);\n"
		"                  the live kernel tests are then not run\n"
		"  -h, --help      show this help\n"
		"\n"
		"Exit status: 0 ok, 1 probe failed, 2 usage error.\n",
		prog);
}

/* ---- formatting helpers ---- */

static const char *errname(int err)
{
	static char buf[16];
	const char *n = err ? strerrorname_np(-err) : NULL;

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", -err);
	return buf;
}

static const char *size_str(uint64_t v, char *buf, size_t n)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	while (v >= 1024 && !(v % 1024) && u < 6) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, "%" PRIu64 " %s", v, unit[u]);
	return buf;
}

static const char *method_name(int m)
{
	const char *n = pgt_dirty_method_name(m);

	return n ? n : "?";
}

static const char *const mode_names[] = { "missing", "wp", "minor" };

static const char *simd_names[] = { "sse2", "avx2", "avx512", "neon" };

/* ---- JSON ---- */

static json_object *jerr(int err)
{
	return err ? json_object_new_string(errname(err)) : NULL;
}

static json_object *jlimit(uint64_t v)
{
	return v == UINT64_MAX ? json_object_new_string("unlimited") : json_object_new_uint64(v);
}

static void add(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

/* The offload backends and whether this host has what each needs: the
 * live host only (a saved /proc tree says nothing of device nodes). */
static int offload_list(struct pgt_offload_backend_info *bi, int cap)
{
	int n;

	for (int i = 0; i < cap; i++)
		bi[i].size = sizeof(bi[i]);
	n = pgt_offload_backends(bi, (size_t)cap);
	return n < 0 ? 0 : n < cap ? n : cap;
}

static const char *shape_name(uint32_t shape)
{
	return shape == PGT_OFFLOAD_RING ? "ring" : shape == PGT_OFFLOAD_BITMAP ? "bitmap"
		: shape == PGT_OFFLOAD_HOTLIST ? "hot list" : "?";
}

static json_object *memtype_json(const struct pgt_probe *p, int t)
{
	json_object *mt = json_object_new_object(), *modes = json_object_new_array();
	json_object *io = json_object_new_array();

	for (unsigned b = 0; b < 3; b++)
		if (p->uffd_modes[t] & (1u << b))
			json_object_array_add(modes, json_object_new_string(mode_names[b]));
	for (unsigned b = 0; b < 64; b++) {
		if (p->uffd_ioctls[t] & (1ULL << b)) {
			const char *n = pgt_uffd_ioctl_name(b);
			char tmp[16];

			snprintf(tmp, sizeof(tmp), "nr%u", b);
			json_object_array_add(io, json_object_new_string(n ? n : tmp));
		}
	}
	add(mt, "registered", json_object_new_boolean(!p->uffd_register_error[t]));
	add(mt, "modes", modes);
	add(mt, "ioctls", io);
	add(mt, "error", jerr(p->uffd_register_error[t]));
	return mt;
}

static json_object *uffd_json(const struct pgt_probe *p)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	json_object *m = json_object_new_object();

	add(o, "syscall", json_object_new_boolean(p->uffd_syscall));
	add(o, "user_mode_only", json_object_new_boolean(p->uffd_user_only));
	add(o, "dev", json_object_new_boolean(p->uffd_dev));
	add(o, "error", jerr(p->uffd_error));
	add(o, "unprivileged_userfaultfd",
	    p->unprivileged_uffd < 0 ? NULL : json_object_new_int(p->unprivileged_uffd));
	add(o, "features_mask", json_object_new_uint64(p->uffd_features));
	for (unsigned b = 0; b < 64; b++) {
		if (p->uffd_features & (1ULL << b)) {
			const char *n = pgt_uffd_feature_name(b);
			char tmp[16];

			snprintf(tmp, sizeof(tmp), "bit%u", b);
			json_object_array_add(a, json_object_new_string(n ? n : tmp));
		}
	}
	add(o, "features", a);
	for (int t = 0; t < PGT_MEM__COUNT; t++)
		add(m, pgt_memtype_name(t), memtype_json(p, t));
	add(o, "memtypes", m);
	return o;
}

/* {"available": ok, "error": err}: the shape of the verified features. */
static json_object *feature_json(bool ok, int err)
{
	json_object *o = json_object_new_object();

	add(o, "available", json_object_new_boolean(ok));
	add(o, "error", jerr(err));
	return o;
}

static json_object *thp_json(const struct pgt_probe *p)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	add(o, "enabled", json_object_new_string(p->thp_enabled));
	add(o, "defrag", json_object_new_string(p->thp_defrag));
	add(o, "shmem_enabled", json_object_new_string(p->shmem_thp_enabled));
	add(o, "pmd_size", json_object_new_uint64(p->thp_pmd_size));
	for (unsigned b = 0; b < 64; b++)
		if (p->mthp_sizes & (1ULL << b))
			json_object_array_add(a, json_object_new_uint64(1ULL << b));
	add(o, "mthp_sizes", a);
	add(o, "error", jerr(p->thp_error));
	return o;
}

static json_object *pools_json(const struct pgt_probe *p)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < p->n_pools; i++) {
		const struct pgt_hugepage_pool *hp = &p->pools[i];
		json_object *e = json_object_new_object();

		add(e, "page_size", json_object_new_uint64(hp->page_size));
		add(e, "node", hp->node < 0 ? NULL : json_object_new_int(hp->node));
		add(e, "total", json_object_new_uint64(hp->total));
		add(e, "free", json_object_new_uint64(hp->free));
		add(e, "reserved", json_object_new_uint64(hp->reserved));
		add(e, "surplus", json_object_new_uint64(hp->surplus));
		json_object_array_add(a, e);
	}
	return a;
}

static json_object *offload_json(void)
{
	struct pgt_offload_backend_info bi[16];
	json_object *ob = json_object_new_array();
	int n = offload_list(bi, 16);

	for (int i = 0; i < n; i++) {
		json_object *o = json_object_new_object();

		add(o, "name", json_object_new_string(bi[i].name));
		add(o, "available", json_object_new_boolean(!bi[i].status));
		add(o, "error", jerr(bi[i].status));
		add(o, "shape", json_object_new_string(shape_name(bi[i].caps.shape)));
		add(o, "granularity", json_object_new_uint64(bi[i].caps.granularity));
		add(o, "needs_hardware", json_object_new_boolean(bi[i].caps.flags & PGT_OFFLOAD_CAP_HW));
		add(o, "reason", json_object_new_string(bi[i].reason));
		json_object_array_add(ob, o);
	}
	return ob;
}

static json_object *vfio_json(const struct pgt_probe *p)
{
	json_object *o = json_object_new_object();

	add(o, "container", json_object_new_boolean(p->vfio_container));
	add(o, "groups", json_object_new_int((int)p->vfio_groups));
	add(o, "devices", json_object_new_int((int)p->vfio_devices));
	return o;
}

static json_object *to_json(const struct pgt_probe *p, bool live)
{
	json_object *root = json_object_new_object();
	json_object *o, *a;

	o = json_object_new_object();
	add(o, "release", json_object_new_string(p->kernel_release));
	add(o, "major", json_object_new_int(p->kernel_major));
	add(o, "minor", json_object_new_int(p->kernel_minor));
	add(o, "patch", json_object_new_int(p->kernel_patch));
	add(root, "kernel", o);
	add(root, "arch", json_object_new_string(p->arch));
	add(root, "live", json_object_new_boolean(live));
	add(root, "page_size", json_object_new_uint64(p->page_size));
	add(root, "cacheline", json_object_new_int((int)p->cacheline));
	a = json_object_new_array();
	for (unsigned i = 0; i < 4; i++)
		if (p->simd & (1u << i))
			json_object_array_add(a, json_object_new_string(simd_names[i]));
	add(root, "simd", a);
	add(root, "cycles_per_sec", json_object_new_uint64(p->cycles_per_sec));
	add(root, "userfaultfd", uffd_json(p));
	add(root, "pagemap_scan", feature_json(p->pagemap_scan, p->pagemap_scan_error));
	add(root, "soft_dirty", feature_json(p->soft_dirty, p->soft_dirty_error));
	add(root, "thp", thp_json(p));
	add(root, "hugepages", pools_json(p));
	add(root, "hugepages_error", jerr(p->pools_error));
	add(root, "numa_nodes", json_object_new_int(p->numa_nodes));
	add(root, "numa_max_node", json_object_new_int(p->numa_max_node));
	add(root, "numa_error", jerr(p->numa_error));
	o = json_object_new_object();
	add(o, "iommufd", json_object_new_boolean(p->iommufd));
	add(root, "iommu", o);
	add(root, "vfio", vfio_json(p));
	if (live)
		add(root, "offload_backends", offload_json());
	o = json_object_new_object();
	add(o, "soft", jlimit(p->memlock_cur));
	add(o, "hard", jlimit(p->memlock_max));
	add(o, "error", jerr(p->memlock_error));
	add(root, "memlock", o);
	add(root, "best_dirty_method", json_object_new_string(method_name(p->best_dirty_method)));
	add(root, "touch_tracking", json_object_new_boolean(p->touch_tracking));
	o = json_object_new_object();
	add(o, "ok", json_object_new_boolean(p->uffd_continue_wp));
	add(o, "error", jerr(p->uffd_continue_wp_error));
	add(root, "uffd_continue_wp", o);
	return root;
}

/* ---- table ---- */

static void row(const char *what, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void row(const char *what, const char *status, const char *fmt, ...)
{
	va_list ap;

	printf("  %-22s %-8s ", what, status);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* "missing and what it costs" lines, collected while the table prints. */
static char costs[32][256];
static unsigned ncosts;

static void cost(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cost(const char *fmt, ...)
{
	va_list ap;

	if (ncosts >= sizeof(costs) / sizeof(costs[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(costs[ncosts++], sizeof(costs[0]), fmt, ap);
	va_end(ap);
}

/* The feature list, cut into lines that fit next to the table columns. */
static void print_wrapped(const char *what, uint64_t mask, const char *list)
{
	char line[80];
	const char *w = list;
	bool first = true;

	while (*w || first) {
		size_t n = 0;

		line[0] = '\0';
		if (first)
			n = (size_t)snprintf(line, sizeof(line), "0x%" PRIx64 ":", mask);
		while (*w) {
			size_t l = strcspn(w, " ");

			if (n && n + 1 + l > 60)
				break;
			n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%.*s", n ? " " : "",
					      (int)l, w);
			w += l;
			while (*w == ' ')
				w++;
		}
		row(first ? what : "", "", "%s", line);
		first = false;
	}
}

static const char *uffd_why(int err)
{
	switch (err) {
	case -ENOSYS: return "kernel without CONFIG_USERFAULTFD, or an emulator";
	case -EPERM:
		return "not permitted (vm.unprivileged_userfaultfd=0 without "
		       "CAP_SYS_PTRACE, or seccomp)";
	case -ENOENT: return "not tested (fixture tree)";
	default: return strerror(-err);
	}
}

static void modes_str(uint32_t modes, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned b = 0; b < 3; b++)
		if (modes & (1u << b))
			o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%s", o ? "|" : "",
					      mode_names[b]);
}

static void ioctls_str(uint64_t io, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned b = 0; b < 64; b++) {
		const char *name;

		/* register/unregister/api are on every uffd; list the range ones */
		if (!(io & (1ULL << b)) || b == 0 || b == 1 || b == 0x3f)
			continue;
		name = pgt_uffd_ioctl_name(b);
		o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%s", o ? " " : "",
				      name ? name : "?");
	}
}

/* The CPU, NUMA and memlock lines above the feature table. */
static void print_host(const struct pgt_probe *p, bool live, const char *root)
{
	char s1[32], s2[32], buf[512];

	printf("pgtrack-probe: kernel %s (%s)%s%s\n\n", p->kernel_release,
	       p->arch[0] ? p->arch : "arch unknown", live ? "" : ", files of ", live ? "" : root);
	buf[0] = '\0';
	for (unsigned i = 0; i < 4; i++)
		if (p->simd & (1u << i))
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %s", simd_names[i]);
	printf("  CPU: %s pages, %u B cache lines, SIMD%s", p->page_size ?
	       size_str(p->page_size, s1, sizeof(s1)) : "?", p->cacheline, buf[0] ? buf : " none");
	if (p->cycles_per_sec)
		printf(", cycle counter %.3f GHz", p->cycles_per_sec / 1e9);
	printf("\n  NUMA: %d node%s online", p->numa_nodes, p->numa_nodes == 1 ? "" : "s");
	if (p->numa_error)
		printf(" (node list unreadable: %s)", errname(p->numa_error));
	printf("\n  memlock: ");
	if (p->memlock_error)
		printf("unknown (%s)\n\n", errname(p->memlock_error));
	else
		printf("%s soft, %s hard\n\n",
		       p->memlock_cur == UINT64_MAX ? "unlimited" :
		       size_str(p->memlock_cur, s1, sizeof(s1)),
		       p->memlock_max == UINT64_MAX ? "unlimited" :
		       size_str(p->memlock_max, s2, sizeof(s2)));
}

static void print_uffd(const struct pgt_probe *p, bool live)
{
	const char *best = method_name(p->best_dirty_method);
	bool uffd = p->uffd_syscall || p->uffd_dev;
	char buf[512];

	if (uffd) {
		snprintf(buf, sizeof(buf), "%s%s%s%s; vm.unprivileged_userfaultfd=%d",
			 p->uffd_syscall ? "syscall" : "", p->uffd_user_only ? " (user mode only)" : "",
			 p->uffd_syscall && p->uffd_dev ? ", " : "", p->uffd_dev ? "/dev/userfaultfd" : "",
			 p->unprivileged_uffd);
		row("userfaultfd", "yes", "%s", buf);
		buf[0] = '\0';
		for (unsigned b = 0; b < 64; b++) {
			if (p->uffd_features & (1ULL << b)) {
				const char *n = pgt_uffd_feature_name(b);

				snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
					 buf[0] ? " " : "", n ? n : "?");
			}
		}
		print_wrapped("  features", p->uffd_features, buf);
		if (p->uffd_user_only)
			cost("userfaultfd: user mode only → faults taken inside the kernel (KVM, vhost, "
			     "O_DIRECT) are not caught; run with CAP_SYS_PTRACE or set "
			     "vm.unprivileged_userfaultfd=1");
	} else {
		row("userfaultfd", live ? "NO" : "-", "%s: %s", errname(p->uffd_error),
		    uffd_why(p->uffd_error));
		if (live)
			cost("userfaultfd: %s → no touch tracking (first touch, snapshot restore, "
			     "post-copy), no uffd dirty trackers; dirty tracking uses %s",
			     uffd_why(p->uffd_error), best);
	}
	for (int t = 0; t < PGT_MEM__COUNT && uffd; t++) {
		char name[32], ms[32], io[256];
		int err = p->uffd_register_error[t];

		snprintf(name, sizeof(name), "  register %s", pgt_memtype_name(t));
		if (err) {
			row(name, "NO", "%s", err == -ENOMEM && t == PGT_MEM_HUGETLB ?
			    "ENOMEM: no free hugepage to map" : errname(err));
			if (t == PGT_MEM_HUGETLB && err == -ENOMEM)
				cost("uffd on hugetlb: untested, the pool had no free page → reserve "
				     "hugepages (echo N > /proc/sys/vm/nr_hugepages) before hugetlb "
				     "regions");
			else
				cost("uffd on %s: %s → no touch/uffd tracking of %s regions",
				     pgt_memtype_name(t), errname(err), pgt_memtype_name(t));
			continue;
		}
		modes_str(p->uffd_modes[t], ms, sizeof(ms));
		ioctls_str(p->uffd_ioctls[t], io, sizeof(io));
		row(name, "yes", "%s: %s", ms, io);
		if (t == PGT_MEM_ANON && !(p->uffd_modes[t] & PGT_UFFD_MODE_WP))
			cost("uffd write-protect: not on anonymous memory → no uffd-sync tracker "
			     "(no write-before callbacks for copy-on-write snapshots)");
		if (t != PGT_MEM_ANON && !(p->uffd_modes[t] & PGT_UFFD_MODE_MINOR))
			cost("uffd MINOR on %s: absent → first touch of shared %s pages populated "
			     "elsewhere is not seen", pgt_memtype_name(t), pgt_memtype_name(t));
	}
}

static void print_pagemap_scan(const struct pgt_probe *p, bool live)
{
	const char *best = method_name(p->best_dirty_method);

	if (p->pagemap_scan) {
		row("PAGEMAP_SCAN", "yes", "WP-async get-and-clear verified on a written page");
	} else if (!live) {
		row("PAGEMAP_SCAN", "-", "not tested (fixture tree)");
	} else {
		const char *why = p->pagemap_scan_error == -ENOTTY ?
				  "ioctl unknown (kernel < 6.7)" :
				  p->pagemap_scan_error == -EOPNOTSUPP ?
				  "uffd WP-async missing or not working" :
				  p->pagemap_scan_error == -ENOSYS ?
				  "ioctl or userfaultfd not implemented (emulator?)" :
				  uffd_why(p->pagemap_scan_error);

		row("PAGEMAP_SCAN", "NO", "%s: %s", errname(p->pagemap_scan_error), why);
		cost("PAGEMAP_SCAN: %s → dirty tracking uses %s (slower harvest%s)", why, best,
		     p->best_dirty_method == PGT_DIRTY_MPROTECT ? ", a signal per first write" :
		     p->best_dirty_method == PGT_DIRTY_UFFD_SYNC ?
		     ", a handler wake-up per first write" :
		     ", pagemap read + clear_refs of the whole process");
	}
}

static void print_soft_dirty(const struct pgt_probe *p, bool live)
{
	const char *best = method_name(p->best_dirty_method);

	if (p->soft_dirty) {
		row("soft-dirty", "yes", "clear_refs 4 + pagemap bit 55 verified");
	} else if (!live) {
		row("soft-dirty", "-", "not tested (fixture tree)");
	} else {
		const char *why = p->soft_dirty_error == -EOPNOTSUPP ? "not compiled in" :
				  p->soft_dirty_error == -EIO ? "pagemap does not show this process" :
				  strerror(-p->soft_dirty_error);

		row("soft-dirty", "NO", "%s: %s", errname(p->soft_dirty_error), why);
		cost("soft-dirty: %s → dirty tracking uses %s%s", why, best,
		     p->best_dirty_method < PGT_DIRTY_SOFT_DIRTY ? " (no loss: it is better)" : "");
	}
}

static void print_thp(const struct pgt_probe *p)
{
	char s1[32], s2[32], buf[512];

	if (p->thp_error) {
		row("THP", "NO", "%s", errname(p->thp_error));
		cost("THP: %s → thp regions get 4 KiB pages (more TLB misses)", errname(p->thp_error));
	} else {
		buf[0] = '\0';
		for (unsigned b = 0; b < 64; b++)
			if (p->mthp_sizes & (1ULL << b))
				snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %s",
					 size_str(1ULL << b, s1, sizeof(s1)));
		row("THP", strcmp(p->thp_enabled, "never") ? "yes" : "off",
		    "enabled=%s defrag=%s shmem=%s, PMD %s%s%s", p->thp_enabled, p->thp_defrag,
		    p->shmem_thp_enabled[0] ? p->shmem_thp_enabled : "?",
		    size_str(p->thp_pmd_size, s2, sizeof(s2)), buf[0] ? ", mTHP" : "", buf);
		if (!strcmp(p->thp_enabled, "never"))
			cost("THP: enabled=never → thp regions get 4 KiB pages");
	}
}

static void print_pools(const struct pgt_probe *p)
{
	uint64_t total = 0;
	char s1[32];

	for (unsigned i = 0; i < p->n_pools; i++) {
		const struct pgt_hugepage_pool *hp = &p->pools[i];
		char name[64];

		if (hp->node < 0)
			total += hp->total;
		if (hp->node < 0)
			snprintf(name, sizeof(name), "hugetlb %s",
				 size_str(hp->page_size, s1, sizeof(s1)));
		else
			snprintf(name, sizeof(name), "  node %d %s", hp->node,
				 size_str(hp->page_size, s1, sizeof(s1)));
		if (hp->node < 0)
			row(name, hp->total ? "yes" : "empty",
			    "%" PRIu64 " pages, %" PRIu64 " free, %" PRIu64 " reserved, %"
			    PRIu64 " surplus", hp->total, hp->free, hp->reserved, hp->surplus);
		else
			row(name, "", "%" PRIu64 " pages, %" PRIu64 " free", hp->total, hp->free);
	}
	if (!p->n_pools) {
		row("hugetlb", "NO", "%s", p->pools_error ? errname(p->pools_error) : "no pools");
		cost("hugetlb: no pools → hugetlb regions unavailable");
	} else if (!total) {
		cost("hugetlb: no pages reserved → hugetlb regions fail until pages are "
		     "reserved (echo N > /proc/sys/vm/nr_hugepages)");
	}
}

static void print_devices(const struct pgt_probe *p, bool live)
{
	char s1[32];

	row("iommufd", p->iommufd ? "yes" : "NO", "/dev/iommu %s", p->iommufd ? "present" : "absent");
	if (!p->iommufd)
		cost("iommufd: /dev/iommu absent → no IOMMU dirty tracking for offload devices");
	row("VFIO", p->vfio_container || p->vfio_devices ? "yes" : "NO",
	    "container %s, %u group%s, %u device cdev%s", p->vfio_container ? "yes" : "no",
	    p->vfio_groups, p->vfio_groups == 1 ? "" : "s", p->vfio_devices,
	    p->vfio_devices == 1 ? "" : "s");
	if (p->uffd_continue_wp_error == -EINVAL)
		cost("UFFDIO_CONTINUE_MODE_WP: refused (before 6.6) → each MINOR fault under uffd-WP "
		     "takes continue + write-protect + wake, and reports its page dirty once");
	if (!p->vfio_container && !p->vfio_devices)
		cost("VFIO: absent → no device DMA dirty logging (vfio offload backend)");
	if (live) {
		struct pgt_offload_backend_info bi[16];
		int n = offload_list(bi, 16);

		for (int i = 0; i < n; i++) {
			char name[32];

			snprintf(name, sizeof(name), "offload %s", bi[i].name);
			row(name, bi[i].status ? "NO" : "yes", "%s: %s", shape_name(bi[i].caps.shape),
			    bi[i].reason);
		}
	}
	if (!p->memlock_error && p->memlock_cur != UINT64_MAX && p->memlock_cur < (1ULL << 30))
		cost("memlock: %s → at most that much guest memory can be pinned for DMA "
		     "(raise ulimit -l for VFIO/offload)", size_str(p->memlock_cur, s1, sizeof(s1)));
}

static void print_table(const struct pgt_probe *p, bool live, const char *root)
{
	print_host(p, live, root);
	printf("  %-22s %-8s %s\n", "feature", "status", "detail");
	print_uffd(p, live);
	print_pagemap_scan(p, live);
	print_soft_dirty(p, live);
	print_thp(p);
	print_pools(p);
	print_devices(p, live);
	printf("\n  dirty tracking: %s%s\n", method_name(p->best_dirty_method),
	       live ? "" : " (nothing live tested)");
	printf("  touch tracking: %s\n", p->touch_tracking ? "yes (uffd MISSING on anonymous memory)" :
	       "no");
	if (ncosts) {
		printf("\nmissing, and what it costs:\n");
		for (unsigned i = 0; i < ncosts; i++)
			printf("  %s\n", costs[i]);
	}
}

/*
 * The engine's calibration (pgt_calibration()): the per-page costs this boot
 * measured (or cached) and what PGT_DIRTY_AUTO picks from them. Live only.
 */
static int calibration(struct pgt_calibration *c)
{
	pgt_engine *e;
	int ret = pgt_engine_open(NULL, &e);

	if (ret)
		return ret;
	c->size = sizeof(*c);
	ret = pgt_calibration(e, c);
	pgt_engine_close(e);
	return ret;
}

static const char *const calib_sources[] = { "none", "measured", "cached" };

static json_object *calibration_json(const struct pgt_calibration *c, int ret)
{
	json_object *o = json_object_new_object();

	if (ret || c->error) {
		add(o, "source", json_object_new_string("none"));
		add(o, "error", jerr(ret ? ret : c->error));
		return o;
	}
	add(o, "source", json_object_new_string(calib_sources[c->source < 3 ? c->source : 0]));
	add(o, "error", NULL);
	add(o, "cache_error", jerr(c->cache_error));
	add(o, "measure_ns", json_object_new_int64((int64_t)c->measure_ns));
	add(o, "iterations", json_object_new_int64((int64_t)c->iterations));
	add(o, "wp_async_fault_ns", json_object_new_double(c->wp_async_fault_ns));
	add(o, "mprotect_fault_ns", json_object_new_double(c->mprotect_fault_ns));
	add(o, "sync_fault_ns", json_object_new_double(c->sync_fault_ns));
	add(o, "scan_clean_ns", json_object_new_double(c->scan_clean_ns));
	add(o, "reprotect_ns", json_object_new_double(c->reprotect_ns));
	add(o, "pagemap_read_ns", json_object_new_double(c->pagemap_read_ns));
	add(o, "method_1g_4k", json_object_new_string(method_name(c->method_1g_4k)));
	add(o, "method_1g_2m", json_object_new_string(method_name(c->method_1g_2m)));
	return o;
}

static void print_calibration(const struct pgt_calibration *c, int ret)
{
	if (ret || c->error) {
		printf("\n  calibration: none (%s): AUTO follows feature order\n",
		       strerror(-(ret ? ret : c->error)));
		return;
	}
	printf("\n  calibration (%s, %.1f ms, %llu page operations; ns per 4 KiB page):\n",
	       calib_sources[c->source < 3 ? c->source : 0], (double)c->measure_ns / 1e6,
	       (unsigned long long)c->iterations);
	printf("    WP-async fault %.0f, mprotect fault %.0f%s, sync uffd-WP fault %.0f (estimated)\n",
	       c->wp_async_fault_ns, c->mprotect_fault_ns,
	       c->measured & PGT_CALIB_M_MPROTECT ? " (partly estimated)" : " (estimated)",
	       c->sync_fault_ns);
	printf("    PAGEMAP_SCAN walk %.1f, re-protect %.1f, pagemap read %.1f\n",
	       c->scan_clean_ns, c->reprotect_ns, c->pagemap_read_ns);
	printf("    AUTO picks: %s for 1 GiB of 4 KiB pages, %s for 1 GiB of 2 MiB pages\n",
	       method_name(c->method_1g_4k), method_name(c->method_1g_2m));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pgt_probe p = { .size = sizeof(p) };
	struct pgt_calibration cal = { .size = sizeof(cal) };
	const char *root = NULL;
	bool json = false;
	int c, ret, cret = 0;

	while ((c = getopt_long(argc, argv, "jr:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'r':
			root = optarg;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0]);
		return 2;
	}
	ret = root ? pgt_probe_root(root, &p) : pgt_probe(&p);
	if (ret) {
		if (root)
			fprintf(stderr, "%s: cannot probe the tree %s: %s (a tree needs at least "
				"a valid proc/sys/kernel/osrelease)\n", argv[0], root, strerror(-ret));
		else
			fprintf(stderr, "%s: probe failed: %s\n", argv[0], strerror(-ret));
		return 1;
	}
	if (!root)
		cret = calibration(&cal);
	if (json) {
		json_object *o = to_json(&p, !root);

		if (!root)
			add(o, "calibration", calibration_json(&cal, cret));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		print_table(&p, !root, root);
		if (!root)
			print_calibration(&cal, cret);
	}
	return ferror(stdout) ? 1 : 0;
}
