/* SPDX-License-Identifier: MIT */
/* Worker pools and a reusable barrier (workers.c). Not installed. */
#ifndef PGT_WORKERS_H
#define PGT_WORKERS_H

#include <stdatomic.h>

#include "lib/nodeops.h"


struct pgt_workers;

/*
 * Start @n threads; worker i binds itself to @cpus[i] (NULL or an empty set:
 * unbound) through @ops (NULL: pgt__numa_sys_ops). A bind failure is kept
 * (pgt__workers_bind_error) and the worker runs unbound.
 */
int pgt__workers_start(struct pgt_workers **out, unsigned n, const struct pgt_cpuset *cpus,
		       const struct pgt_numa_ops *ops);
void pgt__workers_stop(struct pgt_workers *w);
unsigned pgt__workers_count(const struct pgt_workers *w);
int pgt__workers_bind_error(const struct pgt_workers *w, unsigned i);
const struct pgt_cpuset *pgt__workers_cpus(const struct pgt_workers *w, unsigned i);

/*
 * Run fn(arg, i) on every worker i concurrently and wait for all. Jobs of
 * one pool run one at a time (callers are serialised); fn must not call
 * pgt__workers_run on the same pool.
 */
void pgt__workers_run(struct pgt_workers *w, void (*fn)(void *arg, unsigned i), void *arg);

/*
 * A barrier for the @n participants of one job (the workers), reusable.
 * Waiters spin briefly then yield: jobs are short.
 */
struct pgt_barrier {
	_Atomic unsigned count;
	_Atomic unsigned gen;
	unsigned n;
};
void pgt__barrier_init(struct pgt_barrier *b, unsigned n);
void pgt__barrier_wait(struct pgt_barrier *b);

#endif /* PGT_WORKERS_H */
