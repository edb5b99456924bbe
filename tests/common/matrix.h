/* SPDX-License-Identifier: MIT */
/*
 * Memory-type × dirty-method matrix shared by the integration and stress
 * tests (after the kernel's mm selftests: "uffd-async on hugetlb").
 */
#ifndef PGT_TEST_MATRIX_H
#define PGT_TEST_MATRIX_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <pgtrack.h>

struct pgt_case {
	char name[64];
	int method;
	int backing;
};

static const int pgt_matrix_methods[] = {
	PGT_DIRTY_UFFD_ASYNC, PGT_DIRTY_SOFT_DIRTY, PGT_DIRTY_UFFD_SYNC, PGT_DIRTY_MPROTECT,
};
static const int pgt_matrix_backings[] = {
	PGT_BACKING_ANON, PGT_BACKING_THP, PGT_BACKING_HUGETLB, PGT_BACKING_MEMFD,
};

#define PGT_MATRIX_N (4 * 4)

/* Fill @cases (PGT_MATRIX_N entries). Returns the count. */
static inline int pgt_matrix_fill(struct pgt_case *cases)
{
	int n = 0;

	for (int m = 0; m < 4; m++)
		for (int b = 0; b < 4; b++) {
			struct pgt_case *c = &cases[n++];

			c->method = pgt_matrix_methods[m];
			c->backing = pgt_matrix_backings[b];
			snprintf(c->name, sizeof(c->name), "%s on %s",
				 pgt_dirty_method_name(c->method), pgt_backing_name(c->backing));
		}
	return n;
}

/*
 * Why a case cannot run here, or NULL. @probe from pgt_probe().
 * Hugetlb needs @huge_bytes of free 2 MiB pages.
 */
static inline const char *pgt_matrix_skip(const struct pgt_case *c, const struct pgt_probe *p,
					  uint64_t huge_bytes, long free_huge)
{
	if (c->method == PGT_DIRTY_SOFT_DIRTY && !p->soft_dirty)
		return "soft-dirty not available on this kernel (CONFIG_MEM_SOFT_DIRTY off)";
	if (c->method == PGT_DIRTY_SOFT_DIRTY && c->backing == PGT_BACKING_HUGETLB)
		return "soft-dirty does not track hugetlb (clear_refs skips hugetlb VMAs); the tracker refuses it";
	if (c->method == PGT_DIRTY_UFFD_ASYNC && !p->pagemap_scan)
		return "PAGEMAP_SCAN / uffd WP-async not available on this kernel";
	if (c->method == PGT_DIRTY_UFFD_SYNC &&
	    (p->uffd_error || !(p->uffd_features & (1u << 0) /* PAGEFAULT_FLAG_WP */)))
		return "userfaultfd write-protect not available on this kernel";
	if ((c->method == PGT_DIRTY_UFFD_ASYNC || c->method == PGT_DIRTY_UFFD_SYNC) &&
	    (c->backing == PGT_BACKING_HUGETLB || c->backing == PGT_BACKING_MEMFD) &&
	    !(p->uffd_features & (1u << 12) /* WP_HUGETLBFS_SHMEM */))
		return "userfaultfd write-protect on shmem/hugetlbfs not available";
	if (c->backing == PGT_BACKING_HUGETLB && (uint64_t)free_huge * (2u << 20) < huge_bytes)
		return "not enough free 2 MiB hugepages (echo N > /proc/sys/vm/nr_hugepages)";
	return NULL;
}

#endif
