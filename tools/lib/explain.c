/* SPDX-License-Identifier: MIT */
/* pgt_explain() as text, for tools and logs. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/lib/pgtool.h"

int pgtool_explain_render(const struct pgt_account *g, const struct pgt_host_usage *h,
				  char *buf, size_t len)
{
	struct pgt_explain_line v[48];
	int n = pgt_explain(g, h, v, sizeof(v) / sizeof(v[0]));
	size_t need = 0;

	if (n < 0 || (len && !buf))
		return n < 0 ? n : -EINVAL;
	if (len)
		buf[0] = '\0';
	for (int i = 0; i < n && i < (int)(sizeof(v) / sizeof(v[0])); i++) {
		int k = snprintf(len > need ? buf + need : NULL, len > need ? len - need : 0,
				 "%-18s %15lld  %s\n", v[i].key, (long long)v[i].bytes, v[i].text);

		if (k < 0)
			return -EINVAL;
		need += (size_t)k;
	}
	return need > INT32_MAX ? -EOVERFLOW : (int)need;
}
