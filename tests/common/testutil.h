/* SPDX-License-Identifier: MIT */
/* Helpers shared by the cmocka tests. */
#ifndef PGT_TESTUTIL_H
#define PGT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Skip the current cmocka test with a reason printed as a TAP diagnostic. */
#define pgt_skip(...)                                                   \
	do {                                                            \
		pgt_test_note(__VA_ARGS__);                             \
		skip();                                                 \
	} while (0)

void pgt_test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* xorshift64* PRNG, deterministic per seed. */
uint64_t pgt_test_rand(uint64_t *state);
/* Seed from PGT_TEST_SEED env or time; printed as a note so failures replay. */
uint64_t pgt_test_seed(void);

/* Number of free 2 MiB hugepages in the pool (0 when none / unreadable). */
long pgt_test_free_hugepages(void);
/* Resident set of this process in bytes (from /proc/self/statm). */
uint64_t pgt_test_rss(void);
/* Whether userfaultfd is usable here (syscall or /dev/userfaultfd). */
int pgt_test_have_uffd(void);
/*
 * GET http://127.0.0.1:@port@path (HTTP/1.0); retried up to @attempts
 * times, 100 ms apart, until the status is 200. Returns the whole
 * response (status line, headers, body; malloc'd, NUL-terminated).
 */
char *pgt_test_http_get(unsigned port, const char *path, int attempts);

#endif
