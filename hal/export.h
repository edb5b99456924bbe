/* SPDX-License-Identifier: MIT */
/* Marks a public function definition: the library builds with
 * -fvisibility=hidden and a version script (libpgtrack.map); only functions
 * carrying PGT_EXPORT and listed in the map are exported. */
#ifndef PGT_EXPORT_H
#define PGT_EXPORT_H
#define PGT_EXPORT __attribute__((visibility("default")))
#endif
