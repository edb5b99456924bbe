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

/* Entries of directory @path other than "." names, e.g. the threads in
 * /proc/self/task or the open fds in /proc/self/fd; -1 if unreadable. */
int pgt_test_count_dir(const char *path);

/*
 * Guarded buffer: one page followed by a PROT_NONE page, so a parser that
 * reads past the end of its input faults. pgt_test_guard_setup() and
 * pgt_test_guard_teardown() are cmocka group fixtures (0 or -1).
 * pgt_test_guarded() copies @len bytes of @s to end exactly at the guard
 * page and returns the copy (fails the test when @len exceeds a page).
 */
int pgt_test_guard_setup(void **state);
int pgt_test_guard_teardown(void **state);
char *pgt_test_guarded(const void *s, size_t len);

struct pgt_region_config;
struct pgt_region_info;
struct pgt_engine;
struct pgt_region;

/*
 * Open an engine (fails the test if it cannot) and create one region from
 * @rc in it; @info, when not NULL, is filled (its size set here). Returns
 * 0, or pgt_region_create()'s error with the engine closed and *@eng,
 * *@r NULL, for the caller to skip on (no hugepages, no tracker here).
 */
int pgt_test_region_open(const struct pgt_region_config *rc, struct pgt_engine **eng,
			 struct pgt_region **r, struct pgt_region_info *info);

#endif
