/* SPDX-License-Identifier: MIT */
/* Escaping used by stats_render.c, exposed to the unit tests. Not installed. */
#ifndef PGT_STATS_PVT_H
#define PGT_STATS_PVT_H

#include <stddef.h>

/*
 * Escape the NUL-terminated @s for use inside a JSON string (without the
 * quotes) or inside a Prometheus label value. Bytes that are not valid UTF-8
 * become U+FFFD. At most @cap - 1 bytes and a NUL are written (nothing when
 * @cap is 0). Returns the length of the full escaped text, like snprintf:
 * the output is complete when the result is below @cap.
 */
size_t pgt__json_escape(char *dst, size_t cap, const char *s);
size_t pgt__prom_escape(char *dst, size_t cap, const char *s);

/* Length of the valid UTF-8 sequence at @s (1-4), or 0 when it is not one
 * (overlong forms, surrogates and code points above U+10FFFF included). */
size_t pgt__utf8_seq(const unsigned char *s);

#endif
