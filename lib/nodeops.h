/* SPDX-License-Identifier: MIT */
/*
 * The node seam: every call that allocates on a NUMA node, binds a thread or
 * asks the kernel about placement goes through a struct pgt_numa_ops, so the
 * data structures here stay free of libnuma/hwloc and tests can record what
 * would happen on nodes this host does not have. numa/ops.c implements it
 * with the real system calls (pgt__numa_sys_ops). Not installed.
 */
#ifndef PGT_NODEOPS_H
#define PGT_NODEOPS_H

#include <stddef.h>

#include "lib/cpuset.h"

struct pgt_numa_ops {
	/* Zeroed, page-aligned memory of @bytes on @node (-1: anywhere). */
	void *(*alloc)(void *arg, size_t bytes, int node);
	void (*free)(void *arg, void *p, size_t bytes);
	/* Bind the calling thread to @cpus. 0 or -errno. */
	int (*bind_self)(void *arg, const struct pgt_cpuset *cpus);
	/* mbind(2). 0 or -errno. */
	int (*mbind)(void *arg, void *addr, size_t len, int mode, const unsigned long *mask,
		     unsigned long maxnode, unsigned flags);
	/* move_pages(2). 0 or -errno (per-page results in @status). */
	int (*move_pages)(void *arg, int pid, unsigned long count, void **pages, const int *nodes,
			  int *status, int flags);
	void *arg;
};

/* No nodes: calloc'd memory, threads stay unbound, placement calls fail
 * with -EOPNOTSUPP. What lib/ uses when it is given no ops. */
extern const struct pgt_numa_ops pgt__node_plain_ops;

#endif /* PGT_NODEOPS_H */
