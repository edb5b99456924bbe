/* SPDX-License-Identifier: MIT */
/*
 * The engine's NUMA context: the topology, the worker pool (threads bound
 * to each node's CPUs) and the table of vCPU threads and their nodes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/export.h"
#include "numa/numa_pvt.h"

void pgt__numa_log(const struct pgt_numa *n, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!n || !n->log || level > n->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n->log(n->log_arg, level, buf);
}

/*
 * Workers bind only where the topology is this machine's: binding to the
 * CPUs of a synthetic description would pin real threads to CPUs chosen by
 * a test. A test seam (ops other than the system's) always sees the calls.
 */
static bool may_bind(const struct pgt_numa *n, const struct pgt_numa_ops *given)
{
	return n->topo->this_system || (given && given != &pgt__numa_sys_ops);
}

static int start_workers(struct pgt_numa *n, unsigned per_node, const struct pgt_numa_ops *given)
{
	const struct pgt_topology *t = n->topo;
	struct pgt_cpuset *sets;
	unsigned nw = 0, with_cpus = 0;
	int ret;

	for (unsigned i = 0; i < t->nnodes; i++)
		with_cpus += t->nodes[i].ncpus > 0;
	if (!per_node) {
		if (t->nnodes < 2 || with_cpus < 2)
			return 0; /* one node: harvests run in the caller */
		per_node = 1;
	}
	if (per_node > 64)
		return -EINVAL;
	sets = calloc((size_t)with_cpus * per_node, sizeof(*sets));
	n->worker_node = calloc((size_t)with_cpus * per_node, sizeof(int));
	if (!sets || !n->worker_node) {
		free(sets);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < t->nnodes; i++) {
		if (!t->nodes[i].ncpus)
			continue;
		for (unsigned k = 0; k < per_node; k++) {
			n->worker_node[nw] = t->nodes[i].id;
			if (may_bind(n, given))
				sets[nw] = t->nodes[i].cpus;
			nw++;
		}
	}
	ret = pgt__workers_start(&n->workers, nw, sets, &n->ops);
	free(sets);
	if (ret)
		return ret;
	n->nworkers = nw;
	for (unsigned i = 0; i < nw; i++) {
		int err = pgt__workers_bind_error(n->workers, i);
		char list[64];

		if (err)
			pgt__numa_log(n, PGT_LOG_WARN,
				      "NUMA worker %u of node %d: binding to CPUs %s failed (%s); it runs unbound",
				      i, n->worker_node[i],
				      pgt__cpuset_format(pgt__workers_cpus(n->workers, i), list, sizeof(list)),
				      strerror(-err));
	}
	if (!may_bind(n, given))
		pgt__numa_log(n, PGT_LOG_INFO,
			      "NUMA: topology is not this machine's: %u workers run unbound", nw);
	return 0;
}

int pgt__numa_open(const struct pgt_numa_params *p, struct pgt_numa **out)
{
	struct pgt_topology_config tc = { .size = sizeof(tc) };
	struct pgt_numa *n;
	char list[128];
	int ret;

	*out = NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->log = p->log;
	n->log_arg = p->log_arg;
	n->log_level = p->log_level ? p->log_level : PGT_LOG_WARN;
	pthread_mutex_init(&n->vcpu_lock, NULL);
	tc.spec = p->topology;
	tc.log = p->log;
	tc.log_arg = p->log_arg;
	tc.log_level = n->log_level;
	ret = pgt_topology_load(&tc, &n->topo);
	if (ret)
		goto err;
	n->ops = p->ops ? *p->ops : pgt__numa_sys_ops;
	if (!p->ops)
		n->ops.arg = n->topo;
	ret = start_workers(n, p->workers_per_node, p->ops);
	if (ret) {
		pgt__numa_log(n, PGT_LOG_ERR, "NUMA: starting workers: %s", strerror(-ret));
		goto err;
	}
	for (unsigned i = 0; i < n->topo->nnodes; i++) {
		const struct pgt_topo_node *nd = &n->topo->nodes[i];

		pgt__numa_log(n, PGT_LOG_INFO, "NUMA node %d: %llu MiB, CPUs %s", nd->id,
			      (unsigned long long)(nd->memory >> 20),
			      pgt__cpuset_format(&nd->cpus, list, sizeof(list)));
	}
	*out = n;
	return 0;
err:
	pgt__numa_close(n);
	return ret;
}

void pgt__numa_close(struct pgt_numa *n)
{
	if (!n)
		return;
	pgt__workers_stop(n->workers);
	pgt_topology_free(n->topo);
	free(n->worker_node);
	pthread_mutex_destroy(&n->vcpu_lock);
	free(n);
}

int pgt__numa_worker_for(const struct pgt_numa *n, int node, unsigned nth)
{
	unsigned cnt = 0, first = 0;
	int wn;

	if (!n || !n->nworkers)
		return -1;
	wn = pgt__topo_worker_node(n->topo, node);
	if (wn < 0) /* no node (default policy): spread over all workers */
		return (int)(nth % n->nworkers);
	for (unsigned i = 0; i < n->nworkers; i++) {
		if (n->worker_node[i] == wn) {
			if (!cnt)
				first = i;
			cnt++;
		}
	}
	return cnt ? (int)(first + nth % cnt) : -1;
}

int pgt__numa_vcpu_node(struct pgt_numa *n, int tid)
{
	int node = -1;

	if (!n || tid <= 0)
		return -1;
	pthread_mutex_lock(&n->vcpu_lock);
	for (unsigned i = 0; i < n->nvcpus; i++) {
		if (n->vcpus[i].tid == tid) {
			node = n->vcpus[i].node;
			break;
		}
	}
	pthread_mutex_unlock(&n->vcpu_lock);
	return node;
}

int pgt__numa_vcpu_set(struct pgt_numa *n, int tid, int node)
{
	int ret = 0;
	unsigned i;

	if (tid <= 0 || node < -1 || (node >= 0 && pgt__topo_index(n->topo, node) < 0))
		return -EINVAL;
	pthread_mutex_lock(&n->vcpu_lock);
	for (i = 0; i < n->nvcpus && n->vcpus[i].tid != tid; i++)
		;
	if (node < 0) {
		if (i < n->nvcpus)
			n->vcpus[i] = n->vcpus[--n->nvcpus];
	} else if (i < n->nvcpus) {
		n->vcpus[i].node = node;
	} else if (n->nvcpus < PGT_NUMA_MAX_VCPUS) {
		n->vcpus[n->nvcpus].tid = tid;
		n->vcpus[n->nvcpus].node = node;
		n->nvcpus++;
	} else {
		ret = -ENOSPC;
	}
	pthread_mutex_unlock(&n->vcpu_lock);
	return ret;
}

static const char *const policy_names[PGT_NUMA__COUNT] = {
	[PGT_NUMA_DEFAULT] = "default",
	[PGT_NUMA_BIND] = "bind",
	[PGT_NUMA_INTERLEAVE] = "interleave",
	[PGT_NUMA_EXTENTS] = "extents",
};

PGT_EXPORT const char *pgt_numa_policy_name(int policy)
{
	if (policy < 0 || policy >= PGT_NUMA__COUNT)
		return NULL;
	return policy_names[policy];
}
