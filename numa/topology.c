/* SPDX-License-Identifier: MIT */
/*
 * NUMA topology: nodes, their memory, CPUs, cores and caches, and the
 * distances between them, from hwloc (this machine, a synthetic description
 * or an XML export). Without hwloc the machine is one node holding every
 * online CPU, which is what a single-node host is anyway; the log says so.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hal/export.h"
#include "numa/numa_pvt.h"
#include "pgt_config.h"

#if PGT_HAVE_HWLOC
#include <hwloc.h>
#endif

#define DIST_LOCAL 10
#define DIST_REMOTE 20

/* ---------------------------------------------------------------- */
/* Logging without an engine                                          */
/* ---------------------------------------------------------------- */

struct tlog {
	pgt_log_fn fn;
	void *arg;
	int level;
};

static void tlog(const struct tlog *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void tlog(const struct tlog *l, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!l->fn || level > l->level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	l->fn(l->arg, level, buf);
}

/* ---------------------------------------------------------------- */
/* Building                                                          */
/* ---------------------------------------------------------------- */

static int node_cmp(const void *a, const void *b)
{
	const struct pgt_topo_node *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

static int finish(struct pgt_topology *t)
{
	qsort(t->nodes, t->nnodes, sizeof(*t->nodes), node_cmp);
	t->ncpus = 0;
	for (unsigned i = 0; i < t->nnodes; i++)
		t->ncpus += t->nodes[i].ncpus;
	if (!t->dist) {
		t->dist = calloc((size_t)t->nnodes * t->nnodes, sizeof(*t->dist));
		if (!t->dist)
			return -ENOMEM;
		for (unsigned i = 0; i < t->nnodes; i++)
			for (unsigned j = 0; j < t->nnodes; j++)
				t->dist[i * t->nnodes + j] = i == j ? DIST_LOCAL : DIST_REMOTE;
	}
	return 0;
}

/* Online CPUs from /sys, else sysconf: 0 .. n-1. */
static void online_cpus(struct pgt_cpuset *s)
{
	if (!pgt__cpuset_read("/sys/devices/system/cpu/online", s))
		return;
	memset(s, 0, sizeof(*s));
	long c = sysconf(_SC_NPROCESSORS_ONLN);

	for (long i = 0; i < (c > 0 ? c : 1); i++)
		pgt__cpuset_set(s, (unsigned)i);
}

/* More than one node online according to the kernel? */
static bool host_is_numa(void)
{
	char buf[256];
	FILE *f = fopen("/sys/devices/system/node/online", "re");
	size_t n = 0;
	struct pgt_cpuset s;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	return n && !pgt__cpuset_parse(buf, n, &s) && pgt__cpuset_count(&s) > 1;
}

static int load_fallback(struct pgt_topology *t, const struct tlog *l, const char *why)
{
	struct pgt_topo_node *nd = calloc(1, sizeof(*nd));
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	char list[128];

	if (!nd)
		return -ENOMEM;
	nd->id = 0;
	nd->memory = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
	online_cpus(&nd->cpus);
	nd->ncpus = pgt__cpuset_count(&nd->cpus);
	nd->ncores = nd->ncpus;
	t->nodes = nd;
	t->nnodes = 1;
	t->source = PGT_TOPO_FALLBACK;
	t->this_system = true;
	tlog(l, host_is_numa() ? PGT_LOG_WARN : PGT_LOG_INFO,
	     "NUMA topology: %s; treating the host as one node with CPUs %s%s", why,
	     pgt__cpuset_format(&nd->cpus, list, sizeof(list)),
	     host_is_numa() ? " although the kernel lists several nodes: tracking state is not node-local" : "");
	return finish(t);
}

#if PGT_HAVE_HWLOC

static void from_hwloc_set(hwloc_const_bitmap_t hs, struct pgt_cpuset *s)
{
	int i;

	memset(s, 0, sizeof(*s));
	if (!hs)
		return;
	hwloc_bitmap_foreach_begin(i, hs) {
		if (i >= PGT_CPUSET_BITS)
			break;
		pgt__cpuset_set(s, (unsigned)i);
	}
	hwloc_bitmap_foreach_end();
}

static hwloc_bitmap_t to_hwloc_set(const struct pgt_cpuset *s)
{
	hwloc_bitmap_t hs = hwloc_bitmap_alloc();

	if (!hs)
		return NULL;
	for (int i = pgt__cpuset_next(s, 0); i >= 0; i = pgt__cpuset_next(s, i + 1))
		hwloc_bitmap_set(hs, (unsigned)i);
	return hs;
}

static uint64_t cache_bytes(hwloc_topology_t hw, hwloc_const_cpuset_t set, hwloc_obj_type_t type)
{
	uint64_t sum = 0;
	hwloc_obj_t o = NULL;

	if (hwloc_bitmap_iszero(set))
		return 0;
	while ((o = hwloc_get_next_obj_inside_cpuset_by_type(hw, set, type, o))) {
		if (o->attr && o->attr->cache.type != HWLOC_OBJ_CACHE_INSTRUCTION)
			sum += o->attr->cache.size;
	}
	return sum;
}

static void hwloc_distances(struct pgt_topology *t, hwloc_topology_t hw)
{
	struct hwloc_distances_s *d = NULL;
	unsigned nr = 1;

	if (hwloc_distances_get_by_type(hw, HWLOC_OBJ_NUMANODE, &nr, &d, 0, 0) || !nr || !d)
		return;
	for (unsigned i = 0; i < d->nbobjs; i++) {
		for (unsigned j = 0; j < d->nbobjs; j++) {
			int a = pgt__topo_index(t, (int)d->objs[i]->os_index);
			int b = pgt__topo_index(t, (int)d->objs[j]->os_index);
			uint64_t v = d->values[i * d->nbobjs + j];

			if (a >= 0 && b >= 0 && v > 0 && v < 1000000)
				t->dist[(unsigned)a * t->nnodes + (unsigned)b] = (uint32_t)v;
		}
	}
	hwloc_distances_release(hw, d);
}

static int load_hwloc(struct pgt_topology *t, const char *spec, const struct tlog *l)
{
	hwloc_topology_t hw;
	char *desc = NULL, *cpus = NULL;
	int ret = -EINVAL, n;

	if (hwloc_topology_init(&hw))
		return -ENOMEM;
	if (spec && *spec) {
		desc = strdup(spec);
		if (!desc) {
			ret = -ENOMEM;
			goto err;
		}
		cpus = strstr(desc, ";cpus=");
		if (cpus) {
			*cpus = 0;
			cpus += 6;
		}
		if (!strncmp(desc, "xml:", 4)) {
			if (hwloc_topology_set_xml(hw, desc + 4)) {
				tlog(l, PGT_LOG_ERR, "NUMA topology: hwloc cannot use XML file %s",
				     desc + 4);
				goto err;
			}
		} else if (hwloc_topology_set_synthetic(hw, desc)) {
			tlog(l, PGT_LOG_ERR,
			     "NUMA topology: hwloc rejects synthetic description \"%s\"", desc);
			goto err;
		}
	}
	if (hwloc_topology_load(hw)) {
		tlog(l, PGT_LOG_ERR, "NUMA topology: hwloc could not load %s%s%s",
		     desc ? "\"" : "this machine", desc ? desc : "", desc ? "\"" : "");
		goto err;
	}
	if (cpus) {
		struct pgt_cpuset want;
		hwloc_bitmap_t hs;
		int r;

		if (pgt__cpuset_parse(cpus, strlen(cpus), &want) || !pgt__cpuset_count(&want)) {
			tlog(l, PGT_LOG_ERR, "NUMA topology: bad CPU list \"%s\"", cpus);
			goto err;
		}
		hs = to_hwloc_set(&want);
		if (!hs) {
			ret = -ENOMEM;
			goto err;
		}
		hwloc_bitmap_and(hs, hs, hwloc_topology_get_topology_cpuset(hw));
		r = hwloc_bitmap_iszero(hs) ? -1 : hwloc_topology_restrict(hw, hs, 0);
		hwloc_bitmap_free(hs);
		if (r) {
			tlog(l, PGT_LOG_ERR, "NUMA topology: CPU list \"%s\" leaves no CPU", cpus);
			goto err;
		}
	}
	n = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_NUMANODE);
	if (n <= 0) {
		tlog(l, PGT_LOG_ERR, "NUMA topology: no NUMA node in %s", desc ? desc : "this machine");
		goto err;
	}
	t->nodes = calloc((size_t)n, sizeof(*t->nodes));
	if (!t->nodes) {
		ret = -ENOMEM;
		goto err;
	}
	for (int i = 0; i < n; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(hw, HWLOC_OBJ_NUMANODE, (unsigned)i);
		struct pgt_topo_node *nd = &t->nodes[i];

		nd->id = (int)o->os_index;
		nd->memory = o->attr ? o->attr->numanode.local_memory : 0;
		from_hwloc_set(o->cpuset, &nd->cpus);
		nd->ncpus = pgt__cpuset_count(&nd->cpus);
		nd->ncores = hwloc_bitmap_iszero(o->cpuset) ? 0 :
			(unsigned)hwloc_get_nbobjs_inside_cpuset_by_type(hw, o->cpuset, HWLOC_OBJ_CORE);
		nd->cache[0] = cache_bytes(hw, o->cpuset, HWLOC_OBJ_L1CACHE);
		nd->cache[1] = cache_bytes(hw, o->cpuset, HWLOC_OBJ_L2CACHE);
		nd->cache[2] = cache_bytes(hw, o->cpuset, HWLOC_OBJ_L3CACHE);
	}
	t->nnodes = (unsigned)n;
	/* HWLOC_SYNTHETIC / HWLOC_XMLFILE in the environment also give a
	 * topology that is not this machine's */
	t->this_system = hwloc_topology_is_thissystem(hw) && !desc;
	t->source = t->this_system ? PGT_TOPO_HWLOC : PGT_TOPO_SYNTHETIC;
	t->hw = hw;
	ret = finish(t);
	if (!ret)
		hwloc_distances(t, hw);
	free(desc);
	return ret;
err:
	free(desc);
	hwloc_topology_destroy(hw);
	return ret;
}

#endif /* PGT_HAVE_HWLOC */

PGT_EXPORT int pgt_topology_load(const struct pgt_topology_config *cfg, pgt_topology **out)
{
	struct pgt_topology_config def = { .size = sizeof(def) };
	struct pgt_topology *t;
	struct tlog l;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg)
		cfg = &def;
	if ((ret = PGT_ARG_IN(cfg, sizeof(*cfg))))
		return ret;
	if (cfg->flags)
		return -EINVAL;
	l = (struct tlog){ cfg->log, cfg->log_arg, cfg->log_level ? cfg->log_level : PGT_LOG_WARN };
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
#if PGT_HAVE_HWLOC
	ret = load_hwloc(t, cfg->spec, &l);
	if (ret == -EINVAL && !(cfg->spec && *cfg->spec)) {
		/* hwloc failed on this machine: still give a usable answer */
		free(t->nodes);
		t->nodes = NULL;
		ret = load_fallback(t, &l, "hwloc failed on this machine");
	}
#else
	if (cfg->spec && *cfg->spec) {
		tlog(&l, PGT_LOG_ERR, "NUMA topology \"%s\": this build has no hwloc", cfg->spec);
		ret = -EOPNOTSUPP;
	} else {
		ret = load_fallback(t, &l, "built without hwloc");
	}
#endif
	if (ret) {
		pgt_topology_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

PGT_EXPORT void pgt_topology_free(pgt_topology *t)
{
	if (!t)
		return;
#if PGT_HAVE_HWLOC
	if (t->hw)
		hwloc_topology_destroy(t->hw);
#endif
	free(t->nodes);
	free(t->dist);
	free(t);
}

int pgt__topo_index(const struct pgt_topology *t, int node)
{
	unsigned lo = 0, hi = t->nnodes;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (t->nodes[mid].id == node)
			return (int)mid;
		if (t->nodes[mid].id < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int pgt__topo_worker_node(const struct pgt_topology *t, int node)
{
	int i = pgt__topo_index(t, node), best = -1;
	uint32_t bd = UINT32_MAX;

	if (i < 0)
		return -1;
	if (t->nodes[i].ncpus)
		return node;
	for (unsigned j = 0; j < t->nnodes; j++) {
		uint32_t d = t->dist[(unsigned)i * t->nnodes + j];

		if (t->nodes[j].ncpus && d < bd) {
			bd = d;
			best = t->nodes[j].id;
		}
	}
	return best;
}

PGT_EXPORT int pgt_topology_info(const pgt_topology *t, struct pgt_topology_info *out)
{
	int ret;

	if (!t || !out)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(out, sizeof(*out))))
		return ret;
	*out = (struct pgt_topology_info){
		.size = sizeof(*out),
		.source = t->source,
		.this_system = t->this_system,
		.nnodes = t->nnodes,
		.ncpus = t->ncpus,
		.max_node = t->nnodes ? t->nodes[t->nnodes - 1].id : -1,
	};
	return 0;
}

PGT_EXPORT int pgt_topology_node(const pgt_topology *t, unsigned idx, struct pgt_numa_node *out)
{
	const struct pgt_topo_node *nd;
	int ret;

	if (!t || !out)
		return -EINVAL;
	if ((ret = PGT_ARG_OUT(out, sizeof(*out))))
		return ret;
	if (idx >= t->nnodes)
		return -ENOENT;
	nd = &t->nodes[idx];
	*out = (struct pgt_numa_node){
		.size = sizeof(*out),
		.id = nd->id,
		.memory = nd->memory,
		.ncpus = nd->ncpus,
		.ncores = nd->ncores,
		.cache = { nd->cache[0], nd->cache[1], nd->cache[2] },
	};
	pgt__cpuset_format(&nd->cpus, out->cpulist, sizeof(out->cpulist));
	return 0;
}

PGT_EXPORT int pgt_topology_find(const pgt_topology *t, int node)
{
	int i;

	if (!t)
		return -EINVAL;
	i = pgt__topo_index(t, node);
	return i < 0 ? -ENOENT : i;
}

PGT_EXPORT int pgt_topology_distance(const pgt_topology *t, int from, int to)
{
	int a, b;

	if (!t)
		return -EINVAL;
	a = pgt__topo_index(t, from);
	b = pgt__topo_index(t, to);
	if (a < 0 || b < 0)
		return -ENOENT;
	return (int)t->dist[(unsigned)a * t->nnodes + (unsigned)b];
}

PGT_EXPORT int pgt_topology_node_cpus(const pgt_topology *t, int node, int *cpus, size_t cap)
{
	int i, n = 0;

	if (!t || (!cpus && cap))
		return -EINVAL;
	i = pgt__topo_index(t, node);
	if (i < 0)
		return -ENOENT;
	for (int c = pgt__cpuset_next(&t->nodes[i].cpus, 0); c >= 0;
	     c = pgt__cpuset_next(&t->nodes[i].cpus, c + 1)) {
		if ((size_t)n < cap)
			cpus[n] = c;
		n++;
	}
	return n;
}

PGT_EXPORT int pgt_topology_cpu_node(const pgt_topology *t, int cpu)
{
	if (!t || cpu < 0)
		return -EINVAL;
	for (unsigned i = 0; i < t->nnodes; i++)
		if (pgt__cpuset_isset(&t->nodes[i].cpus, (unsigned)cpu))
			return t->nodes[i].id;
	return -ENOENT;
}
