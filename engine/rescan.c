/* SPDX-License-Identifier: MIT */
/*
 * Releases behind pgtrack's back: memory of a region freed by someone else
 * (madvise DONTNEED/REMOVE by the VMM or a device model), noticed through
 * userfaultfd REMOVE events (PGT_TRACK_REMOVE) and pgt_release_rescan(),
 * which accounts what is gone and reports it to the dirty views.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/release_pvt.h"
#include "hal/export.h"
#include "hal/hal.h"


/*
 * UFFD_EVENT_REMOVE from a handler thread (madvise DONTNEED/REMOVE on the
 * range, by anyone). The madvise caller waits until the event is read, and
 * that may be a release of ours holding rel->lock: so only note the pages
 * here, lock-free; pgt_release_rescan() checks and accounts them.
 */
void pgt__release_on_remove(struct pgt_region *r, uint64_t start, uint64_t end)
{
	uint64_t first, last;
	struct pgt_rel *rel;

	if (!pgt__host_pages(r, start, end, &first, &last))
		return;
	/*
	 * The whole pages holding the range: a piece of a large page removed
	 * is zeroed, its page changed too. The kernel zaps the range once
	 * this event is read, so this report may reach a view before the
	 * memory changed: pgt_release_rescan() reports the hinted pages again
	 * (after their madvise returned), and accounts those that are gone.
	 */
	pgt__dirty_mark(r, first, last - first);
	rel = pgt__rel_get(r);
	if (!rel)
		return;
	if (!rel->removed.words)
		return;
	pgt__bitmap_set_range(&rel->removed, first, last - first);
	atomic_store_explicit(&rel->removed_any, true, memory_order_release);
}

struct rescan_ctx {
	struct pgt_region *r;
	struct pgt_rel *rel;
	const struct pgt_bitmap *hint;  /* REMOVE-event pages among the candidates */
	uint64_t found;
	int err;
};

/*
 * Candidates [first, first + n): those not resident were released. A page a
 * REMOVE event named counts as resident only when present: a swapped-out
 * look there is the uffd-wp marker a uffd-async harvest leaves in the
 * zapped hole (PAGEMAP_SCAN reports markers as swapped), while a page
 * refilled after the madvise is present. Other candidates (touched pages)
 * may be truly swapped out: swapped counts as resident for them.
 */
static int rescan_run(void *arg, uint64_t first, uint64_t n)
{
	struct rescan_ctx *x = arg;
	struct pgt_region *r = x->r;
	struct pgt_rel *rel = x->rel;
	uint64_t chunk = 4096;

	for (uint64_t off = 0; off < n; off += chunk) {
		uint64_t k = n - off < chunk ? n - off : chunk;
		uint64_t res[4096 / 64], present[4096 / 64];
		int64_t got;

		memset(res, 0, sizeof(res));
		memset(present, 0, sizeof(present));
		got = pgt__resident(r, first + off, k, true, res);
		if (got >= 0 && pgt__bitmap_count_range(x->hint, first + off, k))
			got = pgt__resident(r, first + off, k, false, present);
		if (got < 0) {
			x->err = (int)got;
			return 1;
		}
		for (uint64_t i = 0; i < k; i++) {
			uint64_t p = first + off + i;
			bool hinted = pgt__bitmap_test(x->hint, p);
			const uint64_t *in = hinted ? present : res;

			if (in[i / 64] >> (i % 64) & 1 || pgt__bitmap_test(&rel->released, p))
				continue;
			if (pgt__bitmap_test(&rel->pinned, p))
				continue; /* cannot be gone; never mark it */
			/* Gone behind our back: account it as released. */
			pgt__rel_gone(r, rel, p, 1);
			rel->stat_external_pages++;
			x->found++;
		}
	}
	return 0;
}

static int mark_run(void *arg, uint64_t first, uint64_t n)
{
	pgt__dirty_mark(arg, first, n);
	return 0;
}

PGT_EXPORT int64_t pgt_release_rescan(pgt_region *r)
{
	struct rescan_ctx x = { r, NULL, NULL, 0, 0 };
	struct pgt_bitmap cand, hint;
	int ret;

	if (!r)
		return -EINVAL;
	x.rel = pgt__rel_get(r);
	if (!x.rel)
		return -ENOMEM;
	ret = pgt__bitmap_init(&cand, r->npages);
	if (!ret && (ret = pgt__bitmap_init(&hint, r->npages)))
		pgt__bitmap_fini(&cand);
	if (ret)
		return ret;
	x.hint = &hint;
	/* REMOVE events already read (their madvise returned) are recorded */
	pgt__flight_wait(&r->evflight);
	pthread_mutex_lock(&x.rel->lock);
	pgt__rel_sync_touch(r, x.rel);
	/* Candidates: pages we know were populated, and REMOVE hints. */
	if (pgt__touch_on(r))
		pgt__bitmap_or(&cand, &r->touched);
	if (atomic_exchange(&x.rel->removed_any, false)) {
		/* their madvise returned: the memory is zero now, say it again */
		pgt__bitmap_for_each_run(&x.rel->removed, mark_run, r);
		pgt__bitmap_or(&cand, &x.rel->removed);
		pgt__bitmap_or(&hint, &x.rel->removed);
		pgt__bitmap_take(&x.rel->removed, NULL, NULL);
	}
	pgt__bitmap_for_each_run(&cand, rescan_run, &x);
	pthread_mutex_unlock(&x.rel->lock);
	pgt__bitmap_fini(&cand);
	pgt__bitmap_fini(&hint);
	if (x.err)
		return x.err;
	if (x.found)
		pgt__log(r->eng, PGT_LOG_INFO, "region %s: %llu page(s) released behind our back",
			 r->name, (unsigned long long)x.found);
	return (int64_t)x.found;
}
