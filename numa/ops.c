/* SPDX-License-Identifier: MIT */
/*
 * The system side of the NUMA seam: node-local allocation, thread binding,
 * mbind and move_pages.
 *
 * libnuma reports errors by printing (numa_error()/numa_warn() write to
 * stderr) and a library must not print: every node handed to libnuma is
 * first checked against the nodes this host has with memory, and the
 * placement calls that can fail on bad input (mbind, move_pages) are raw
 * system calls returning errnos.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "numa/numa_pvt.h"
#include "pgt_config.h"

#if PGT_HAVE_NUMA
#include <numa.h>
#endif
#if PGT_HAVE_HWLOC
#include <hwloc.h>
#endif

static pthread_once_t mem_once = PTHREAD_ONCE_INIT;
static struct pgt_cpuset mem_nodes;

static void read_mem_nodes(void)
{
	if (pgt__cpuset_read("/sys/devices/system/node/has_memory", &mem_nodes)) {
		/* no NUMA in this kernel: everything is node 0 */
		memset(&mem_nodes, 0, sizeof(mem_nodes));
		pgt__cpuset_set(&mem_nodes, 0);
	}
}

const struct pgt_cpuset *pgt__numa_host_mem_nodes(void)
{
	pthread_once(&mem_once, read_mem_nodes);
	return &mem_nodes;
}

static bool node_usable(int node)
{
	return node >= 0 && pgt__cpuset_isset(pgt__numa_host_mem_nodes(), (unsigned)node);
}

static void *sys_alloc(void *arg, size_t bytes, int node)
{
	void *p;

	(void)arg;
	if (!bytes)
		return NULL;
#if PGT_HAVE_NUMA
	if (node_usable(node) && numa_available() >= 0) {
		p = numa_alloc_onnode(bytes, node);
		return p;
	}
#else
	(void)node_usable;
	(void)node;
#endif
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void sys_free(void *arg, void *p, size_t bytes)
{
	(void)arg;
	/* numa_alloc_onnode memory is an mmap too: numa_free is munmap */
	if (p)
		munmap(p, bytes);
}

static int sys_bind_self(void *arg, const struct pgt_cpuset *cpus)
{
	const struct pgt_topology *t = arg;
	cpu_set_t cs;

#if PGT_HAVE_HWLOC
	if (t && t->hw && t->this_system) {
		hwloc_bitmap_t hs = hwloc_bitmap_alloc();
		int ret;

		if (!hs)
			return -ENOMEM;
		for (int i = pgt__cpuset_next(cpus, 0); i >= 0; i = pgt__cpuset_next(cpus, i + 1))
			hwloc_bitmap_set(hs, (unsigned)i);
		ret = hwloc_set_cpubind(t->hw, hs, HWLOC_CPUBIND_THREAD);
		ret = ret ? -errno : 0;
		hwloc_bitmap_free(hs);
		return ret;
	}
#else
	(void)t;
#endif
	CPU_ZERO(&cs);
	for (int i = pgt__cpuset_next(cpus, 0); i >= 0 && i < CPU_SETSIZE;
	     i = pgt__cpuset_next(cpus, i + 1))
		CPU_SET(i, &cs);
	return -pthread_setaffinity_np(pthread_self(), sizeof(cs), &cs);
}

static int sys_mbind(void *arg, void *addr, size_t len, int mode, const unsigned long *mask,
		     unsigned long maxnode, unsigned flags)
{
	(void)arg;
	if (syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags))
		return -errno;
	return 0;
}

static int sys_move_pages(void *arg, int pid, unsigned long count, void **pages,
			  const int *nodes, int *status, int flags)
{
	long r;

	(void)arg;
	r = syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
	if (r < 0)
		return -errno;
	return 0;
}

const struct pgt_numa_ops pgt__numa_sys_ops = {
	.alloc = sys_alloc,
	.free = sys_free,
	.bind_self = sys_bind_self,
	.mbind = sys_mbind,
	.move_pages = sys_move_pages,
	.arg = NULL,
};
