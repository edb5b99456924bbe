/* SPDX-License-Identifier: MIT */
/*
 * x86_64 primitives, included only through hal/hal.h.
 *
 * The barriers order ordinary cacheable memory between CPUs (the kernel's
 * smp_* flavour): x86 is TSO, so only a store followed by a load can be
 * reordered and only pgt_mb() needs an instruction. They are not meant for
 * write-combining or non-temporal stores.
 */
#ifndef PGT_ARCH_X86_64_H
#define PGT_ARCH_X86_64_H

#include <stdint.h>

static inline void pgt_mb(void)
{
	__asm__ __volatile__("mfence" ::: "memory");
}

static inline void pgt_rmb(void)
{
	__asm__ __volatile__("" ::: "memory");
}

static inline void pgt_wmb(void)
{
	__asm__ __volatile__("" ::: "memory");
}

static inline void pgt_cpu_relax(void)
{
	__asm__ __volatile__("pause" ::: "memory");
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
 * TSC. rdtsc alone may execute before earlier instructions retire, which
 * makes short intervals read too small; lfence (dispatch-serialising on
 * Intel, and on AMD since the Spectre mitigations set the MSR bit that
 * makes it so) keeps it after them.
 */
static inline uint64_t pgt_cycles(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return ((uint64_t)hi << 32) | lo;
}

/*
 * XCR0: which register states the kernel saves (bit 1 SSE, 2 AVX, 5-7
 * AVX-512), for the SIMD dispatch next to CPUID. Asm, since _xgetbv()
 * needs -mxsave; call only where CPUID says OSXSAVE.
 */
static inline uint64_t pgt__arch_xcr0(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* The TSC rate is not architecturally readable on every CPU: calibrate. */
static inline uint64_t pgt__arch_cycles_hz(void)
{
	return 0;
}

#endif /* PGT_ARCH_X86_64_H */
