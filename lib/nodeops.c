/* SPDX-License-Identifier: MIT */
/* The node seam without nodes: what lib/ uses when a caller gives no ops. */
#include <errno.h>
#include <sys/mman.h>

#include "lib/nodeops.h"

static void *plain_alloc(void *arg, size_t bytes, int node)
{
	(void)arg;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)node;
	return p == MAP_FAILED ? NULL : p;
}

static void plain_free(void *arg, void *p, size_t bytes)
{
	(void)arg;
	munmap(p, bytes);
}

static int plain_bind(void *arg, const struct pgt_cpuset *cpus)
{
	(void)arg;
	(void)cpus;
	return 0;
}

static int plain_mbind(void *arg, void *addr, size_t len, int mode, const unsigned long *mask,
		       unsigned long maxnode, unsigned flags)
{
	(void)arg, (void)addr, (void)len, (void)mode, (void)mask, (void)maxnode, (void)flags;
	return -EOPNOTSUPP;
}

static int plain_move_pages(void *arg, int pid, unsigned long count, void **pages,
			    const int *nodes, int *status, int flags)
{
	(void)arg, (void)pid, (void)count, (void)pages, (void)nodes, (void)status, (void)flags;
	return -EOPNOTSUPP;
}

const struct pgt_numa_ops pgt__node_plain_ops = {
	.alloc = plain_alloc,
	.free = plain_free,
	.bind_self = plain_bind,
	.mbind = plain_mbind,
	.move_pages = plain_move_pages,
};
