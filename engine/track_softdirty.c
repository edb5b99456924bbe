/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking with soft-dirty bits (CONFIG_MEM_SOFT_DIRTY, x86 and a few
 * others; not arm64). Writing "4" to /proc/self/clear_refs clears the bit in
 * every pte of the process and write-protects them; the next write sets it
 * again; /proc/self/pagemap shows it as bit 55.
 *
 * clear_refs works on the whole process, so one harvest must first save the
 * soft-dirty state of every region tracked this way (into their pending
 * bitmaps) before clearing. And a write between reading pagemap and clearing
 * would be lost: with a quiesce callback the writers are paused for that
 * window, without one the tracker warns that it is exact only with idle
 * writers. The probe only picks this method where it saw the bit work.
 *
 * Writers are paused before any pgtrack lock is taken (the pause/resume
 * hooks run outside harvest_lock and rel->lock, see pgt__collect_begin):
 * a vCPU that itself calls pgtrack (a merge, a release) can then reach the
 * point where it parks. Every writer paused is resumed, and only those.
 *
 * Fixed-size table: at most SD_MAX regions use soft-dirty at once (start
 * fails with -ENOSPC beyond): clear_refs is process-wide, so every harvest
 * reads all of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/hal.h"

#define CHUNK 4096 /* pagemap entries per pread */

#define SD_MAX 64

static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pgt_region *sd_regions[SD_MAX];

/*
 * The writers paused, from pause to resume; one pauser at a time. The
 * callbacks are copied: a region destroyed while its writers are paused
 * still gets them resumed.
 */
static pthread_mutex_t sd_pause_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	pgt_quiesce_fn fn;
	void *arg;
} sd_paused[SD_MAX];
static unsigned sd_npaused;

static void resume_paused(void)
{
	while (sd_npaused) {
		sd_npaused--;
		sd_paused[sd_npaused].fn(sd_paused[sd_npaused].arg, false);
	}
}

/* Pause the writers of every soft-dirty region that can be paused. */
static int sd_pause_all(void)
{
	int ret = 0;

	pthread_mutex_lock(&sd_pause_lock);
	pthread_mutex_lock(&sd_lock);
	for (unsigned i = 0; i < SD_MAX; i++)
		if (sd_regions[i] && sd_regions[i]->quiesce) {
			sd_paused[sd_npaused].fn = sd_regions[i]->quiesce;
			sd_paused[sd_npaused].arg = sd_regions[i]->quiesce_arg;
			sd_npaused++;
		}
	pthread_mutex_unlock(&sd_lock);
	for (unsigned i = 0; i < sd_npaused; i++) {
		ret = sd_paused[i].fn(sd_paused[i].arg, true);
		if (ret) {
			/* resume exactly the ones paused before it */
			sd_npaused = i;
			resume_paused();
			pthread_mutex_unlock(&sd_pause_lock);
			return ret;
		}
	}
	return 0;
}

static void sd_resume_all(void)
{
	resume_paused();
	pthread_mutex_unlock(&sd_pause_lock);
}

int64_t pgt__softdirty_parse(const uint64_t *entries, size_t n, unsigned per_page_shift,
			     uint64_t first_page, pgt_bitmap_run_fn fn, void *arg)
{
	size_t per = (size_t)1 << per_page_shift;
	uint64_t run_first = 0, run_len = 0;
	int64_t total = 0;

	if (!entries || per_page_shift > 20 || n % per)
		return -EINVAL;
	for (size_t p = 0; p < n / per; p++) {
		bool dirty = false;

		for (size_t k = 0; k < per && !dirty; k++)
			dirty = entries[p * per + k] & PGT_PM_SOFT_DIRTY;
		if (dirty) {
			if (!run_len)
				run_first = first_page + p;
			run_len++;
			total++;
		} else if (run_len) {
			if (fn)
				fn(arg, run_first, run_len);
			run_len = 0;
		}
	}
	if (run_len && fn)
		fn(arg, run_first, run_len);
	return total;
}

static int set_pending(void *arg, uint64_t first, uint64_t n)
{
	struct pgt_region *r = arg;

	pgt__bitmap_set_range(&r->pending, first, n);
	return 0;
}

static int drop(void *arg, uint64_t first, uint64_t n)
{
	(void)arg;
	(void)first;
	(void)n;
	return 0;
}

/* Read one region's soft-dirty bits into its pending bitmap. */
static int save_region(struct pgt_region *r, int pm_fd)
{
	uint64_t base = pgt_hal_page_size();
	unsigned shift = r->page_shift - (unsigned)__builtin_ctzll(base);
	uint64_t per_page = 1ULL << shift;
	uint64_t entries = r->length / base;
	uint64_t chunk = CHUNK < per_page ? per_page : CHUNK;
	uint64_t *buf = malloc(chunk * sizeof(uint64_t));
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t e = 0; e < entries; e += chunk) {
		uint64_t cnt = entries - e < chunk ? entries - e : chunk;
		off_t off = (off_t)(((uintptr_t)r->addr / base + e) * sizeof(uint64_t));
		ssize_t got = pread(pm_fd, buf, cnt * sizeof(uint64_t), off);

		if (got != (ssize_t)(cnt * sizeof(uint64_t))) {
			ret = got < 0 ? -errno : -EIO;
			break;
		}
		pgt__softdirty_parse(buf, cnt, shift, e >> shift, set_pending, r);
	}
	free(buf);
	return ret;
}

static int clear_refs(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, "4", 1) != 1)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * Save every soft-dirty region's bits but @skip's, then clear them all.
 * Called with sd_lock held, writers paused (sd_pause_all).
 */
static int sync_all(const struct pgt_region *skip)
{
	int pm_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (pm_fd < 0)
		return -errno;
	for (unsigned i = 0; i < SD_MAX && !ret; i++)
		if (sd_regions[i] && sd_regions[i] != skip)
			ret = save_region(sd_regions[i], pm_fd);
	if (!ret)
		ret = clear_refs();
	close(pm_fd);
	return ret;
}

static int sd_supported(const struct pgt_region *r, const struct pgt_probe *p)
{
	/*
	 * clear_refs does not clear (nor write-protect) hugetlb entries on
	 * the kernels we know (6.1: writes after a clear went unreported), so
	 * on hugetlb this tracker would miss writes: let AUTO pick another.
	 */
	if (r->hugetlb)
		return -EOPNOTSUPP;
	return p->soft_dirty ? 0 : -EOPNOTSUPP;
}

static int sd_start(struct pgt_region *r)
{
	int ret;

	if (!r->quiesce)
		pgt__log(r->eng, PGT_LOG_WARN,
			 "region %s: soft-dirty without a quiesce callback: a write racing a harvest can be missed",
			 r->name);
	ret = sd_pause_all();
	if (ret)
		return ret;
	ret = -ENOSPC;
	pthread_mutex_lock(&sd_lock);
	for (unsigned i = 0; i < SD_MAX; i++) {
		if (!sd_regions[i]) {
			sd_regions[i] = r;
			ret = 0;
			break;
		}
	}
	if (!ret) {
		/*
		 * Keep the other regions' bits, not ours: tracking starts now.
		 * Ours are not even read: a new VMA is soft-dirty in full
		 * (VM_SOFTDIRTY), and saving that would fill every leaf of
		 * the pending bitmap only to drop it.
		 */
		ret = sync_all(r);
		pgt__bitmap_take(&r->pending, NULL, NULL);
	}
	pthread_mutex_unlock(&sd_lock);
	sd_resume_all();
	return ret;
}

/* Around a collect, before and after the caller's locks (dirty.c). */
static int sd_pause(struct pgt_region *r)
{
	(void)r;
	return sd_pause_all();
}

static void sd_resume(struct pgt_region *r)
{
	(void)r;
	sd_resume_all();
}

static int64_t sd_collect(struct pgt_region *r, pgt_bitmap_run_fn fn, void *arg)
{
	int ret;

	pthread_mutex_lock(&sd_lock);
	ret = sync_all(NULL);
	pthread_mutex_unlock(&sd_lock);
	if (ret)
		return ret;
	return (int64_t)pgt__bitmap_take_runs(&r->pending, fn ? fn : drop, arg);
}

static void sd_stop(struct pgt_region *r)
{
	pthread_mutex_lock(&sd_lock);
	for (unsigned i = 0; i < SD_MAX; i++)
		if (sd_regions[i] == r)
			sd_regions[i] = NULL;
	pthread_mutex_unlock(&sd_lock);
}

const struct pgt_dirty_ops pgt__dirty_softdirty = {
	.method = PGT_DIRTY_SOFT_DIRTY,
	.uses_pending = true,
	.supported = sd_supported,
	.start = sd_start,
	.collect = sd_collect,
	.stop = sd_stop,
	.pause = sd_pause,
	.resume = sd_resume,
};
