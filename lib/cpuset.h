/* SPDX-License-Identifier: MIT */
/* CPU and node sets: fixed-size bit sets, parsed from and printed as Linux
 * lists ("0-3,8"). Not installed. */
#ifndef PGT_CPUSET_H
#define PGT_CPUSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 1024 entries; hosts with more are clipped. */
#define PGT_CPUSET_BITS 1024
struct pgt_cpuset {
	uint64_t w[PGT_CPUSET_BITS / 64];
};

static inline void pgt__cpuset_set(struct pgt_cpuset *s, unsigned i)
{
	if (i < PGT_CPUSET_BITS)
		s->w[i / 64] |= 1ULL << (i % 64);
}

static inline bool pgt__cpuset_isset(const struct pgt_cpuset *s, unsigned i)
{
	return i < PGT_CPUSET_BITS && (s->w[i / 64] >> (i % 64)) & 1;
}

unsigned pgt__cpuset_count(const struct pgt_cpuset *s);
/* Lowest member >= @from, or -1. */
int pgt__cpuset_next(const struct pgt_cpuset *s, int from);
/* "0-3,8" into @buf (always NUL-terminated; "..." when cut). Returns @buf. */
char *pgt__cpuset_format(const struct pgt_cpuset *s, char *buf, size_t len);
/* Parse a list ("0-3,8", bounded by @len, trailing newline allowed).
 * Returns 0 or -EINVAL (syntax, a member >= PGT_CPUSET_BITS). */
int pgt__cpuset_parse(const char *buf, size_t len, struct pgt_cpuset *s);
/* A list from a sysfs file (".../online"). 0, or -ENOENT/-EINVAL when the
 * file is missing, does not parse or names nothing. */
int pgt__cpuset_read(const char *path, struct pgt_cpuset *s);

#endif /* PGT_CPUSET_H */
