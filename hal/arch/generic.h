/* SPDX-License-Identifier: MIT */
/*
 * Portable fallbacks for architectures without their own header: C11-style
 * fences and CLOCK_MONOTONIC as the "cycle" counter (1 cycle = 1 ns).
 */
#ifndef PGT_ARCH_GENERIC_H
#define PGT_ARCH_GENERIC_H

#include <stdint.h>
#include <time.h>

static inline void pgt_mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static inline void pgt_rmb(void)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static inline void pgt_wmb(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void pgt_cpu_relax(void)
{
	__asm__ __volatile__("" ::: "memory");
}

static inline void pgt_prefetch(const void *p)
{
	__builtin_prefetch(p, 0, 3);
}

static inline void pgt_prefetchw(const void *p)
{
	__builtin_prefetch(p, 1, 3);
}

static inline uint64_t pgt_cycles(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t pgt__arch_cycles_hz(void)
{
	return 1000000000u;
}

#endif /* PGT_ARCH_GENERIC_H */
