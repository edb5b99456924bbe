/* SPDX-License-Identifier: MIT */
/*
 * The engine's calibration (issue 16): lazily on the first PGT_DIRTY_AUTO
 * region (engines that never track dirty pages pay nothing), from this
 * boot's cache file when it holds good costs, else measured and written
 * back. pgt_calibration() reports it.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "engine/calibrate_pvt.h"
#include "engine/engine_pvt.h"
#include "hal/compat_uapi.h"
#include "hal/export.h"

static void calib_measure_store(struct pgt_engine *e, const char *path, const char *boot)
{
	struct pgt__calib_result *res = &e->calib;

	res->error = pgt__calib_measure(&e->probe, &res->c, &res->st);
	if (res->error) {
		pgt__log(e, PGT_LOG_INFO, "calibration failed (%s): AUTO follows feature order",
			 strerror(-res->error));
		return;
	}
	res->source = PGT_CALIB_MEASURED;
	if (!res->cache_error)
		res->cache_error = pgt__calib_cache_store(path, boot, &res->c);
	pgt__log(e, PGT_LOG_INFO, "calibrated in %.2f ms (%llu page ops)%s",
		 (double)res->st.ns / 1e6, (unsigned long long)res->st.iterations,
		 res->cache_error ? ", not cached" : "");
}

/* Fill e->calib once; caller holds e->calib_lock. */
static void calib_run(struct pgt_engine *e)
{
	struct pgt__calib_result *res = &e->calib;
	char boot[PGT_CALIB_BOOT_ID_LEN + 1], path[PATH_MAX];
	int ret;

	memset(res, 0, sizeof(*res));
	if (e->calib_flags & PGT_CALIBRATE_OFF) {
		res->error = -ECANCELED;
		return;
	}
	res->cache_error = pgt__calib_boot_id(boot);
	if (!res->cache_error)
		res->cache_error = pgt__calib_cache_path(path, sizeof(path));
	if (!res->cache_error && !(e->calib_flags & PGT_CALIBRATE_FRESH)) {
		ret = pgt__calib_cache_load(path, boot, &res->c);
		if (!ret) {
			res->source = PGT_CALIB_CACHED;
			return;
		}
		/* missing, another boot's or not ours: measured and rewritten */
		if (ret != -ENOENT)
			pgt__log(e, PGT_LOG_INFO, "calibration cache %s ignored: %s", path,
				 strerror(-ret));
	}
	calib_measure_store(e, path, boot);
}

const struct pgt__calib_result *pgt__calib_get(struct pgt_engine *e)
{
	pthread_mutex_lock(&e->calib_lock);
	if (!e->calib_done) {
		calib_run(e);
		e->calib_done = true;
	}
	pthread_mutex_unlock(&e->calib_lock);
	return &e->calib;
}

/* Methods the probe says work on 1 GiB of @hugetlb or 4 KiB anonymous
 * memory: the tracker's own supported() checks, without a region. */
static uint32_t probe_avail(const struct pgt_probe *p, bool hugetlb)
{
	uint64_t hs = hugetlb ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0;
	uint64_t an = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | hs;
	uint64_t sn = UFFD_FEATURE_PAGEFAULT_FLAG_WP | hs;
	uint32_t m = 1u << PGT_DIRTY_MPROTECT;

	if (p->pagemap_scan && (p->uffd_features & an) == an)
		m |= 1u << PGT_DIRTY_UFFD_ASYNC;
	if (!hugetlb && p->soft_dirty)
		m |= 1u << PGT_DIRTY_SOFT_DIRTY;
	if (!p->uffd_error && (p->uffd_features & sn) == sn)
		m |= 1u << PGT_DIRTY_UFFD_SYNC;
	return m;
}

/* AUTO's pick for @npages in @avail: measured choice, else feature order. */
int pgt__calib_pick(const struct pgt__calib_result *res, uint32_t avail, uint64_t npages)
{
	int m = res->error ? -ENODATA : pgt__calib_choose(&res->c, avail, npages, PGT_CALIB_DIRTY);

	for (int i = PGT_DIRTY_UFFD_ASYNC; m < 0 && i < PGT_DIRTY_NONE; i++)
		if (avail & (1u << i))
			m = i;
	return m < 0 ? -EOPNOTSUPP : m;
}

PGT_EXPORT int pgt_calibration(pgt_engine *e, struct pgt_calibration *out)
{
	const struct pgt__calib_result *res;
	struct pgt_calibration c = { .size = sizeof(c) };
	size_t fill;
	int ret;

	if (!e || !out)
		return -EINVAL;
	if ((ret = pgt__arg_out(out, out->size, sizeof(*out), sizeof(*out), &fill)))
		return ret;
	res = pgt__calib_get(e);
	c.source = res->source;
	c.error = res->error;
	c.cache_error = res->cache_error;
	c.measured = res->source == PGT_CALIB_MEASURED ? res->st.measured : 0;
	c.measure_ns = res->source == PGT_CALIB_MEASURED ? res->st.ns : 0;
	c.iterations = res->st.iterations;
	c.wp_async_fault_ns = res->c.wp_async_fault;
	c.mprotect_fault_ns = res->c.mprotect_fault;
	c.sync_fault_ns = res->c.sync_fault;
	c.scan_clean_ns = res->c.scan_clean;
	c.reprotect_ns = res->c.reprotect;
	c.pagemap_read_ns = res->c.pagemap_read;
	c.method_1g_4k = pgt__calib_pick(res, probe_avail(&e->probe, false), (1ull << 30) >> 12);
	c.method_1g_2m = pgt__calib_pick(res, probe_avail(&e->probe, true), (1ull << 30) >> 21);
	memcpy(out, &c, fill);
	out->size = (uint32_t)fill;
	return 0;
}
