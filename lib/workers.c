/* SPDX-License-Identifier: MIT */
/*
 * Worker pools: threads bound to one node's CPUs that harvest that node's
 * shards, so the words of a shard are read and cleared by a CPU next to the
 * memory holding them. A job runs one function on every worker and the
 * caller waits; a pool runs one job at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "hal/hal.h"
#include "lib/workers.h"

struct pgt_worker {
	pthread_t th;
	struct pgt_workers *pool;
	unsigned idx;
	struct pgt_cpuset cpus;
	int bind_err;
};

struct pgt_workers {
	unsigned n;
	struct pgt_worker *w;
	const struct pgt_numa_ops *ops;
	pthread_mutex_t run_lock;       /* serialises jobs */
	pthread_mutex_t lock;           /* everything below */
	pthread_cond_t go;
	pthread_cond_t done;
	uint64_t gen;
	unsigned left;                  /* workers still in the job / starting */
	bool stop;
	void (*fn)(void *arg, unsigned i);
	void *arg;
};

void pgt__barrier_init(struct pgt_barrier *b, unsigned n)
{
	atomic_store(&b->count, 0);
	atomic_store(&b->gen, 0);
	b->n = n;
}

void pgt__barrier_wait(struct pgt_barrier *b)
{
	unsigned gen = atomic_load_explicit(&b->gen, memory_order_acquire);

	if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == b->n) {
		atomic_store_explicit(&b->count, 0, memory_order_relaxed);
		atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
		return;
	}
	/* Spin a little (the others are on other CPUs), then let them run:
	 * on an oversubscribed host the last one may need our CPU. */
	for (unsigned i = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == gen; i++) {
		if (i < 64)
			pgt_cpu_relax();
		else
			sched_yield();
	}
}

static void *worker_main(void *arg)
{
	struct pgt_worker *w = arg;
	struct pgt_workers *p = w->pool;
	uint64_t seen = 0;

	if (pgt__cpuset_count(&w->cpus))
		w->bind_err = p->ops->bind_self(p->ops->arg, &w->cpus);
	pthread_mutex_lock(&p->lock);
	if (--p->left == 0)
		pthread_cond_signal(&p->done);
	for (;;) {
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->go, &p->lock);
		if (p->stop)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->lock);
		p->fn(p->arg, w->idx);
		pthread_mutex_lock(&p->lock);
		if (--p->left == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pgt__workers_start(struct pgt_workers **out, unsigned n, const struct pgt_cpuset *cpus,
		       const struct pgt_numa_ops *ops)
{
	struct pgt_workers *p;
	unsigned started = 0;
	int ret = 0;

	*out = NULL;
	if (!n || n > 1024)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->w = calloc(n, sizeof(*p->w));
	if (!p->w) {
		free(p);
		return -ENOMEM;
	}
	p->ops = ops ? ops : &pgt__node_plain_ops;
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	p->left = n;
	for (unsigned i = 0; i < n; i++) {
		p->w[i].pool = p;
		p->w[i].idx = i;
		if (cpus)
			p->w[i].cpus = cpus[i];
		ret = -pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i]);
		if (ret)
			break;
		started++;
	}
	pthread_mutex_lock(&p->lock);
	p->left -= n - started;
	/* Wait until every worker has bound itself: bind errors are then known
	 * and the first job does not pay for thread start-up. */
	while (p->left)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	p->n = started;
	if (ret) {
		pgt__workers_stop(p);
		return ret;
	}
	*out = p;
	return 0;
}

void pgt__workers_stop(struct pgt_workers *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->w[i].th, NULL);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->run_lock);
	free(p->w);
	free(p);
}

unsigned pgt__workers_count(const struct pgt_workers *p)
{
	return p ? p->n : 0;
}

int pgt__workers_bind_error(const struct pgt_workers *p, unsigned i)
{
	return p && i < p->n ? p->w[i].bind_err : -EINVAL;
}

const struct pgt_cpuset *pgt__workers_cpus(const struct pgt_workers *p, unsigned i)
{
	return p && i < p->n ? &p->w[i].cpus : NULL;
}

void pgt__workers_run(struct pgt_workers *p, void (*fn)(void *arg, unsigned i), void *arg)
{
	pthread_mutex_lock(&p->run_lock);
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->left = p->n;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	while (p->left)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->run_lock);
}
