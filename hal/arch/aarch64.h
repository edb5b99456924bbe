/* SPDX-License-Identifier: MIT */
/*
 * aarch64 primitives, included only through hal/hal.h.
 *
 * Barriers are inner-shareable (all CPUs of the host), for ordinary memory
 * shared between threads or with a cache-coherent device model.
 */
#ifndef PGT_ARCH_AARCH64_H
#define PGT_ARCH_AARCH64_H

#include <stdint.h>

static inline void pgt_mb(void)
{
	__asm__ __volatile__("dmb ish" ::: "memory");
}

static inline void pgt_rmb(void)
{
	__asm__ __volatile__("dmb ishld" ::: "memory");
}

static inline void pgt_wmb(void)
{
	__asm__ __volatile__("dmb ishst" ::: "memory");
}

static inline void pgt_cpu_relax(void)
{
	__asm__ __volatile__("yield" ::: "memory");
}

static inline void pgt_prefetch(const void *p)
{
	__builtin_prefetch(p, 0, 3);
}

static inline void pgt_prefetchw(const void *p)
{
	__builtin_prefetch(p, 1, 3);
}

/*
 * Generic timer virtual count. Reads of cntvct_el0 may be performed
 * speculatively ahead of earlier instructions; the isb keeps the read
 * after them.
 */
static inline uint64_t pgt_cycles(void)
{
	uint64_t v;

	__asm__ __volatile__("isb\n\tmrs %0, cntvct_el0" : "=r"(v) :: "memory");
	return v;
}

/* Counter frequency as firmware programmed it; 0 makes the HAL calibrate. */
static inline uint64_t pgt__arch_cycles_hz(void)
{
	uint64_t f;

	__asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(f));
	return f & 0xffffffffu;
}

#endif /* PGT_ARCH_AARCH64_H */
