/* SPDX-License-Identifier: MIT */
/*
 * DPDK memory as region backing (PGT_BACKING_DPDK): a memzone per region on
 * the region's socket, in the EAL the application initialised or in one
 * pgtrack starts (--in-memory --no-pci, with hugepages or --no-huge), and
 * the IOVAs DPDK gives its pages for offload devices.
 *
 * What DPDK memory looks like (DPDK 22.11, measured): with hugepages and
 * --in-memory each 2 MiB page is its own hugetlb memfd, mapped shared, with
 * its own IOVA (physical addresses as root); with --no-huge one shmem memfd
 * backs everything at 4 KiB and IOVA = VA. So a region has a single backing
 * fd only in the second case; release then uses MADV_REMOVE on the shared
 * mapping, which frees a hugetlb page just like a punch-hole does.
 *
 * The EAL exists once per process and cannot be restarted: pgtrack never
 * cleans up one it started. A mutex serialises the one start.
 *
 * DPDK is not a link-time dependency: loading libpgtrack must not load the
 * EAL and run its constructors for programs that never use DPDK. The EAL's
 * functions are looked up at first use: the application's own when it has
 * DPDK loaded (the same EAL, not a second copy), else librte_eal of the
 * ABI pgtrack was built against (PGT_RTE_EAL_SONAME).
 */
#include "pgt_config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_pvt.h"
#include "hal/export.h"
#include "pgtrack/offload.h"

#if PGT_HAVE_DPDK
#include <dlfcn.h>
#include <rte_eal.h>
#include <rte_eal_memconfig.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_memory.h>
#include <rte_memzone.h>

#ifndef PGT_RTE_EAL_SONAME
#define PGT_RTE_EAL_SONAME "librte_eal.so"
#endif

static pthread_mutex_t eal_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

#define API(f) __typeof__(&f) f
static struct {
	bool ok;
	API(rte_eal_init);
	API(rte_lcore_count);
	API(rte_memzone_reserve_aligned);
	API(rte_memzone_free);
	API(rte_mem_virt2memseg);
	API(rte_mem_virt2iova);
	API(rte_memseg_get_fd_thread_unsafe);
	API(rte_memseg_get_fd_offset_thread_unsafe);
	API(rte_mcfg_mem_read_lock);
	API(rte_mcfg_mem_read_unlock);
	void *handle;
} eal;
#undef API

static void api_load(void)
{
	void *h = RTLD_DEFAULT;

	/* the application's EAL if it has one loaded, else the library */
	if (!dlsym(RTLD_DEFAULT, "rte_eal_init")) {
		h = dlopen(PGT_RTE_EAL_SONAME, RTLD_NOW | RTLD_GLOBAL);
		if (!h)
			return;
	}
#define SYM(f) ((*(void **)&eal.f = dlsym(h, #f)) != NULL)
	eal.ok = SYM(rte_eal_init) && SYM(rte_lcore_count) && SYM(rte_memzone_reserve_aligned) &&
		 SYM(rte_memzone_free) && SYM(rte_mem_virt2memseg) && SYM(rte_mem_virt2iova) &&
		 SYM(rte_memseg_get_fd_thread_unsafe) &&
		 SYM(rte_memseg_get_fd_offset_thread_unsafe) && SYM(rte_mcfg_mem_read_lock) &&
		 SYM(rte_mcfg_mem_read_unlock) && dlsym(h, "per_lcore__rte_errno");
#undef SYM
	eal.handle = h;
}

static bool api(void)
{
	pthread_once(&api_once, api_load);
	return eal.ok;
}

/* rte_errno of this thread (a TLS variable: dlsym gives this thread's). */
static int eal_errno(void)
{
	int *e = eal.handle ? dlsym(eal.handle, "per_lcore__rte_errno") : NULL;

	return e ? *e : 0;
}

static bool eal_up(void)
{
	/* 0 until eal.rte_eal_init() has parsed its lcores */
	return api() && eal.rte_lcore_count() > 0;
}

static long free_hugepages(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

PGT_EXPORT int pgt_dpdk_init(const struct pgt_dpdk_config *cfg)
{
	char lcore[16], mem[16];
	char *argv[16];
	int argc = 0, ret;
	cpu_set_t aff;
	bool huge, aff_ok;
	uint32_t mb = 256;
	int cpu;

	if (cfg) {
		ret = pgt__arg_in(cfg, cfg->size, sizeof(*cfg), sizeof(*cfg));
		if (ret)
			return ret;
		if ((cfg->flags & ~(uint32_t)PGT_DPDK_NO_HUGE) || cfg->lcore < -1 ||
		    cfg->lcore >= CPU_SETSIZE || cfg->memory_mb > (1u << 20))
			return -EINVAL;
		if (cfg->memory_mb)
			mb = cfg->memory_mb;
	}
	if (!api())
		return -EOPNOTSUPP; /* no librte_eal on this host */
	pthread_mutex_lock(&eal_lock);
	if (eal_up()) {
		pthread_mutex_unlock(&eal_lock);
		return 1;
	}
	huge = cfg ? !(cfg->flags & PGT_DPDK_NO_HUGE) : free_hugepages() > 0;
	cpu = cfg && cfg->lcore >= 0 ? cfg->lcore : sched_getcpu();
	snprintf(lcore, sizeof(lcore), "%d", cpu < 0 ? 0 : cpu);
	snprintf(mem, sizeof(mem), "%u", mb);
	argv[argc++] = (char *)"pgtrack";
	if (huge) {
		argv[argc++] = (char *)"--in-memory";
	} else {
		/* --in-memory wants hugepages; without them this is the way */
		argv[argc++] = (char *)"--no-huge";
		argv[argc++] = (char *)"--no-shconf";
		argv[argc++] = (char *)"-m";
		argv[argc++] = mem;
	}
	argv[argc++] = (char *)"--no-pci";
	argv[argc++] = (char *)"--no-telemetry";
	argv[argc++] = (char *)"-l";
	argv[argc++] = lcore;
	/* the library does not print: DPDK only for the critical */
	argv[argc++] = (char *)"--log-level=3";
	argv[argc] = NULL;
	/* the EAL pins its caller to the main lcore: not ours to keep */
	aff_ok = !pthread_getaffinity_np(pthread_self(), sizeof(aff), &aff);
	ret = eal.rte_eal_init(argc, argv);
	if (aff_ok)
		pthread_setaffinity_np(pthread_self(), sizeof(aff), &aff);
	pthread_mutex_unlock(&eal_lock);
	if (ret < 0)
		return eal_errno() ? -eal_errno() : -EIO;
	return 0;
}

int pgt__dpdk_zone_alloc(struct pgt_region *r, struct pgt_dpdk_zone *z)
{
	char name[RTE_MEMZONE_NAMESIZE];
	const struct rte_memzone *mz;
	uint64_t ps, off0 = 0;
	int ret, fd0 = -1;
	bool one_fd = true;

	memset(z, 0, sizeof(*z));
	z->fd = -1;
	ret = pgt_dpdk_init(NULL);
	if (ret < 0) {
		pgt__log(r->eng, PGT_LOG_WARN, "region %s: no DPDK EAL: %s", r->name, strerror(-ret));
		return ret;
	}
	snprintf(name, sizeof(name), "pgt-%lx", (unsigned long)(uintptr_t)r);
	mz = eal.rte_memzone_reserve_aligned(name, r->length,
					 r->numa_node >= 0 ? r->numa_node : SOCKET_ID_ANY, 0,
					 PGT_SZ_2M);
	if (!mz) {
		ret = eal_errno() ? -eal_errno() : -ENOMEM;
		pgt__log(r->eng, PGT_LOG_WARN, "region %s: DPDK memzone of %llu MiB: %s", r->name,
			 (unsigned long long)(r->length >> 20), strerror(-ret));
		return ret == -ENOSPC ? -ENOMEM : ret;
	}
	ps = mz->hugepage_sz;
	if (!ps || (ps & (ps - 1)) || (r->length % ps) || ((uintptr_t)mz->addr % ps)) {
		eal.rte_memzone_free(mz);
		return -EINVAL;
	}
	/* one fd behind the whole zone at linear offsets (--no-huge)? */
	eal.rte_mcfg_mem_read_lock();
	for (uint64_t off = 0; off < r->length && one_fd; off += ps) {
		const struct rte_memseg *ms = eal.rte_mem_virt2memseg((char *)mz->addr + off, NULL);
		size_t fo = 0;
		int fd = ms ? eal.rte_memseg_get_fd_thread_unsafe(ms) : -1;

		if (fd < 0 || eal.rte_memseg_get_fd_offset_thread_unsafe(ms, &fo)) {
			one_fd = false;
			break;
		}
		fo += (size_t)((uintptr_t)mz->addr + off - (uintptr_t)ms->addr);
		if (!off) {
			fd0 = fd;
			off0 = fo;
		} else if (fd != fd0 || fo != off0 + off) {
			one_fd = false;
		}
	}
	if (one_fd && fd0 >= 0)
		z->fd = fcntl(fd0, F_DUPFD_CLOEXEC, 3);
	eal.rte_mcfg_mem_read_unlock();
	z->addr = mz->addr;
	z->page_size = ps;
	z->fd_offset = z->fd >= 0 ? off0 : 0;
	z->mz = mz;
	return 0;
}

void pgt__dpdk_zone_free(struct pgt_region *r)
{
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	if (r->bpriv)
		eal.rte_memzone_free(r->bpriv);
	r->bpriv = NULL;
}

int pgt__dpdk_iova_ranges(const struct pgt_region *r, uint32_t slot0,
			  struct pgt_offload_range *out, size_t cap)
{
	struct pgt_offload_range cur = { 0 };
	uint64_t step = r->page_size;
	size_t n = 0;

	if (!eal_up() || !eal.rte_mem_virt2memseg(r->addr, NULL))
		return -ENOENT;
	for (uint64_t off = 0; off < r->length; off += step) {
		rte_iova_t iova = eal.rte_mem_virt2iova(r->addr + off);

		if (iova == RTE_BAD_IOVA)
			return -EIO;
		if (n && cur.iova + cur.length == iova) {
			cur.length += step;
			continue;
		}
		if (n && n - 1 < cap)
			out[n - 1] = cur;
		cur = (struct pgt_offload_range){
			.iova = iova, .length = step, .gpa = r->gpa + off, .slot = slot0 + (uint32_t)n,
		};
		n++;
	}
	if (n && n - 1 < cap)
		out[n - 1] = cur;
	return n > INT32_MAX ? -E2BIG : (int)n;
}

int pgt__dpdk_alias(const struct pgt_region *r, uint64_t off, uint64_t len, void **map,
		    size_t *maplen, uint8_t **dma)
{
	uint64_t ps = r->page_size, lo = off & ~(ps - 1), hi = pgt__round_up(off + len, ps);
	uint8_t *base;
	int ret = 0;

	if (!eal_up())
		return -ENOENT;
	base = mmap(NULL, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	eal.rte_mcfg_mem_read_lock();
	for (uint64_t o = lo; o < hi && !ret; o += ps) {
		const struct rte_memseg *ms = eal.rte_mem_virt2memseg(r->addr + o, NULL);
		size_t fo = 0;
		int fd = ms ? eal.rte_memseg_get_fd_thread_unsafe(ms) : -1;

		if (fd < 0 || eal.rte_memseg_get_fd_offset_thread_unsafe(ms, &fo)) {
			ret = -ENOENT;
			break;
		}
		fo += (size_t)((uintptr_t)r->addr + o - (uintptr_t)ms->addr);
		if (mmap(base + (o - lo), ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			 (off_t)fo) == MAP_FAILED)
			ret = -errno;
	}
	eal.rte_mcfg_mem_read_unlock();
	if (ret) {
		munmap(base, hi - lo);
		return ret;
	}
	*map = base;
	*maplen = hi - lo;
	*dma = base + (off - lo);
	return 0;
}

void *pgt__dpdk_dma_alloc(size_t bytes, uint64_t *iova, const void **mzp)
{
	static _Atomic unsigned seq;
	char name[RTE_MEMZONE_NAMESIZE];
	const struct rte_memzone *mz;

	if (!eal_up())
		return NULL;
	snprintf(name, sizeof(name), "pgt-dma-%u-%u", (unsigned)getpid(),
		 atomic_fetch_add(&seq, 1));
	mz = eal.rte_memzone_reserve_aligned(name, bytes, SOCKET_ID_ANY, RTE_MEMZONE_IOVA_CONTIG, 4096);
	if (!mz)
		return NULL;
	memset(mz->addr, 0, bytes);
	*iova = mz->iova;
	*mzp = mz;
	return mz->addr;
}

void pgt__dpdk_dma_free(const void *mz)
{
	eal.rte_memzone_free(mz);
}

#else /* !PGT_HAVE_DPDK */

PGT_EXPORT int pgt_dpdk_init(const struct pgt_dpdk_config *cfg)
{
	(void)cfg;
	return -EOPNOTSUPP;
}

int pgt__dpdk_zone_alloc(struct pgt_region *r, struct pgt_dpdk_zone *z)
{
	memset(z, 0, sizeof(*z));
	z->fd = -1;
	pgt__log(r->eng, PGT_LOG_WARN, "region %s: pgtrack was built without DPDK", r->name);
	return -EOPNOTSUPP;
}

void pgt__dpdk_zone_free(struct pgt_region *r)
{
	(void)r;
}

int pgt__dpdk_iova_ranges(const struct pgt_region *r, uint32_t slot0,
			  struct pgt_offload_range *out, size_t cap)
{
	(void)r, (void)slot0, (void)out, (void)cap;
	return -ENOENT;
}

int pgt__dpdk_alias(const struct pgt_region *r, uint64_t off, uint64_t len, void **map,
		    size_t *maplen, uint8_t **dma)
{
	(void)r, (void)off, (void)len, (void)map, (void)maplen, (void)dma;
	return -EOPNOTSUPP;
}

void *pgt__dpdk_dma_alloc(size_t bytes, uint64_t *iova, const void **mz)
{
	(void)bytes, (void)iova, (void)mz;
	return NULL;
}

void pgt__dpdk_dma_free(const void *mz)
{
	(void)mz;
}

#endif
