/* SPDX-License-Identifier: MIT */
/*
 * What every public entry point uses: PGT_EXPORT and the size rule of
 * argument structs. Not installed.
 */
#ifndef PGT_EXPORT_H
#define PGT_EXPORT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Marks a public function definition: the library builds with
 * -fvisibility=hidden and a version script (libpgtrack.map); only functions
 * carrying PGT_EXPORT and listed in the map are exported. */
#define PGT_EXPORT __attribute__((visibility("default")))

/* More growth than any struct will see in a release: a size beyond
 * sizeof + this is a caller's bug (an uninitialised field), not a newer
 * struct, and its tail is not read. */
#define PGT_ARG_GROWTH_MAX 4096u

/*
 * The size rule (pgtrack.h, "Conventions"), the kernel's extensible-struct
 * rule: @size (the caller's struct->size) below @v1 (the size of the first
 * version) is -EINVAL; above @known + PGT_ARG_GROWTH_MAX is -E2BIG; bytes of a newer,
 * larger struct beyond @known (what this library knows) must be zero, else
 * -E2BIG (the caller asked for something this library cannot do). 0 when
 * the struct may be used. @arg is read only past @known.
 */
static inline int pgt__arg_in(const void *arg, uint32_t size, size_t v1, size_t known)
{
	const unsigned char *p = arg;

	if (size < v1)
		return -EINVAL;
	if (size > known + PGT_ARG_GROWTH_MAX)
		return -E2BIG;
	for (size_t i = known; i < size; i++)
		if (p[i])
			return -E2BIG;
	return 0;
}

/*
 * The same rule for a struct the library fills (info, stats): a larger
 * caller struct gets its unknown tail zeroed, so a newer caller reads 0 for
 * fields this library does not have. Call before filling; *@fill (may be
 * NULL) receives the bytes to fill (min(size, known)).
 */
static inline int pgt__arg_out(void *arg, uint32_t size, size_t v1, size_t known, size_t *fill)
{
	if (size < v1)
		return -EINVAL;
	if (size > known + PGT_ARG_GROWTH_MAX)
		return -E2BIG;
	if (size > known)
		memset((unsigned char *)arg + known, 0, size - known);
	if (fill)
		*fill = size < known ? size : known;
	return 0;
}

/*
 * The rule on a struct @p whose first version was @v1 bytes (sizeof(*p)
 * while it has not grown): input structs, and output structs (whose
 * unknown tail is zeroed; the caller then fills sizeof(*p) bytes, which
 * size >= v1 makes safe as long as v1 == sizeof(*p)).
 */
#define PGT_ARG_IN(p, v1) pgt__arg_in((p), (p)->size, (v1), sizeof(*(p)))
#define PGT_ARG_OUT(p, v1) pgt__arg_out((p), (p)->size, (v1), sizeof(*(p)), NULL)

#endif
