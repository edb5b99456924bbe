/* SPDX-License-Identifier: MIT */
/*
 * The sim offload device's callbacks for tests: every DMA write it makes is
 * recorded (guest-physical address, before the write), and the device parks
 * at its tick (after publishing its records) once it made enough writes,
 * as a paused guest would. Tests only.
 */
#ifndef PGT_TEST_DMA_WRITES_H
#define PGT_TEST_DMA_WRITES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct dma_writes {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t *gpa;          /* cap entries, calloc'd by dma_writes_init() */
	size_t n, cap;
	size_t stop_after;      /* park once this many writes were made */
	bool parked, quit;
	uint64_t value_xor;     /* the device stores gpa ^ value_xor */
};

static inline void dma_writes_init(struct dma_writes *w, size_t cap, size_t stop_after,
				   uint64_t value_xor)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->gpa = calloc(cap, sizeof(*w->gpa));
	w->n = 0;
	w->cap = cap;
	w->stop_after = stop_after;
	w->parked = w->quit = false;
	w->value_xor = value_xor;
}

static inline void dma_writes_fini(struct dma_writes *w)
{
	free(w->gpa);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

/* pgt_offload_sim_write_fn */
static inline uint64_t dma_write(void *arg, uint64_t gpa, uint32_t len)
{
	struct dma_writes *w = arg;

	(void)len;
	pthread_mutex_lock(&w->lock);
	if (w->n < w->cap)
		w->gpa[w->n++] = gpa;
	pthread_mutex_unlock(&w->lock);
	return gpa ^ w->value_xor;
}

/* pgt_offload_sim_tick_fn */
static inline void dma_tick(void *arg)
{
	struct dma_writes *w = arg;

	pthread_mutex_lock(&w->lock);
	while (w->n >= w->stop_after && !w->quit) {
		w->parked = true;
		pthread_cond_broadcast(&w->cond);
		pthread_cond_wait(&w->cond, &w->lock);
	}
	w->parked = false;
	pthread_mutex_unlock(&w->lock);
}

/* Until the device parked with at least stop_after writes made. */
static inline void dma_wait(struct dma_writes *w)
{
	pthread_mutex_lock(&w->lock);
	while (!w->parked || w->n < w->stop_after)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Let it make @more writes (park again then), or run on for good. */
static inline void dma_go(struct dma_writes *w, size_t more, bool quit)
{
	pthread_mutex_lock(&w->lock);
	w->stop_after = w->n + more;
	w->quit = quit;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

#endif
