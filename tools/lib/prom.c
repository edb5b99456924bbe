/* SPDX-License-Identifier: MIT */
/* Prometheus text exposition helpers for the tools' /metrics. */
#include <stdio.h>

#include "tools/lib/pgtool.h"

void pgtool_prom_label(FILE *f, const char *s)
{
	/* the format escapes backslash, quote and line feed; other control
	 * bytes and non-ASCII (maybe not UTF-8: a file name) become '?' */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p == '"')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20 || *p >= 0x7f)
			fputc('?', f);
		else
			fputc(*p, f);
	}
}

void pgtool_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}
