/* SPDX-License-Identifier: MIT */
/*
 * The "kvm-ring" backend: rings in KVM's dirty-ring layout, consumed with
 * the flag protocol (DIRTY from the producer, RESET from us).
 *
 * Two sources. Rings in memory the caller provides (a VMM's own ring, a
 * device that writes KVM's layout): the producer resets harvested records
 * itself. Or KVM's per-vCPU rings: mapped from each vCPU fd at page
 * PGT_KVM_DIRTY_LOG_PAGE_OFFSET (the VMM enabled KVM_CAP_DIRTY_LOG_RING
 * before creating the vCPUs, as KVM requires), and after each harvest
 * KVM_RESET_DIRTY_RINGS on the VM fd re-protects the harvested pages and
 * frees their entries. With KVM_CAP_DIRTY_LOG_RING_ACQ_REL (arm64) KVM
 * relies on exactly the acquire load of flags and release store of RESET
 * lib/offload.c does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal/compat_uapi.h"
#include "hal/offload/offload.h"

struct kvm {
	struct pgt_offload_kvm_config cfg;
	struct pgt_offload_rec **rings;
	uint32_t nrings;
	uint32_t entries;
	bool mapped;          /* KVM's rings (ours to unmap) */
	size_t map_len;
	uint64_t resets;
};

static int kvm_probe(const struct pgt_ofl_io *io, struct pgt_offload_caps *caps, char *why,
		     size_t n)
{
	int ret = io->exists(io->ctx, "/dev/kvm");

	/* usable either way: rings in caller memory need no kernel; at most
	 * one range per KVM memslot */
	if (ret)
		return pgt__ofl_caps(caps, PGT_OFFLOAD_RING, 0, 1ULL << 12, 32768, 0, why, n,
				     "rings in caller memory only: /dev/kvm absent (%s)", strerror(-ret));
	return pgt__ofl_caps(caps, PGT_OFFLOAD_RING, 0, 1ULL << 12, 32768, 0, why, n,
			     "rings in caller memory, or KVM's per-vCPU dirty rings");
}

static void kvm_unmap(struct pgt_ofl_dev *d, struct kvm *k)
{
	for (uint32_t i = 0; i < k->nrings; i++)
		if (k->mapped && k->rings[i])
			d->io->munmap(d->io->ctx, k->rings[i], k->map_len);
	free(k->rings);
	k->rings = NULL;
	k->nrings = 0;
}

static int kvm_open(struct pgt_ofl_dev *d, const void *cfgp)
{
	const struct pgt_offload_kvm_config *c = cfgp;
	struct kvm *k;
	int ret;

	ret = pgt__ofl_cfg_size(c, sizeof(*c), sizeof(*c));
	if (ret)
		return ret;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->cfg = *c;
	d->priv = k;
	if (c->rings) {
		/* caller memory: the layout is KVM's, the sizes KVM's */
		if (!c->nrings || c->nrings > 4096 || c->entries < 2 ||
		    c->entries > PGT_KVM_DIRTY_RING_MAX_ENTRIES || (c->entries & (c->entries - 1)) ||
		    c->vcpu_fds || c->nvcpus)
			return -EINVAL;
		k->rings = calloc(c->nrings, sizeof(*k->rings));
		if (!k->rings)
			return -ENOMEM;
		for (uint32_t i = 0; i < c->nrings; i++) {
			if (!c->rings[i] || ((uintptr_t)c->rings[i] & 15))
				return -EINVAL;
			k->rings[i] = c->rings[i];
		}
		k->nrings = c->nrings;
		k->entries = c->entries;
		return 0;
	}
	/* KVM's rings */
	if (c->vm_fd < 0 || !c->vcpu_fds || !c->nvcpus || c->nvcpus > 4096 ||
	    c->ring_bytes < 4096 || (c->ring_bytes & (c->ring_bytes - 1)) ||
	    c->ring_bytes / sizeof(struct pgt_offload_rec) > PGT_KVM_DIRTY_RING_MAX_ENTRIES)
		return -EINVAL;
	ret = d->io->exists(d->io->ctx, "/dev/kvm");
	if (ret) {
		pgt__ofl_log(d, PGT_LOG_WARN, "kvm-ring: /dev/kvm: %s", strerror(-ret));
		return -ENODEV;
	}
	k->rings = calloc(c->nvcpus, sizeof(*k->rings));
	if (!k->rings)
		return -ENOMEM;
	k->mapped = true;
	k->map_len = c->ring_bytes;
	k->entries = c->ring_bytes / (uint32_t)sizeof(struct pgt_offload_rec);
	for (uint32_t i = 0; i < c->nvcpus; i++) {
		int err = 0;
		void *p = d->io->mmap(d->io->ctx, c->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
				      c->vcpu_fds[i],
				      (off_t)PGT_KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize(), &err);

		if (!p) {
			pgt__ofl_log(d, PGT_LOG_WARN, "kvm-ring: mapping the dirty ring of vCPU %u: %s", i,
				     strerror(-err));
			/* no ring there: the VMM did not enable KVM_CAP_DIRTY_LOG_RING */
			kvm_unmap(d, k);
			return err == -EINVAL || err == -ENODEV ? -EOPNOTSUPP : err;
		}
		k->rings[i] = p;
		k->nrings = i + 1;
	}
	return 0;
}

static int kvm_attach(struct pgt_ofl_dev *d, const struct pgt_ofl_win *w, unsigned n)
{
	(void)d, (void)w, (void)n;
	return 0;
}

static int kvm_start(struct pgt_ofl_dev *d, uint64_t *page_size)
{
	(void)d;
	/* KVM logs guest frames: 4 KiB whatever backs them */
	if (*page_size && *page_size != 4096)
		return -EINVAL;
	*page_size = 4096;
	return 0;
}

static int kvm_rings(struct pgt_ofl_dev *d, struct pgt_ofl_ring_desc *out, unsigned cap)
{
	struct kvm *k = d->priv;

	for (uint32_t i = 0; i < k->nrings && i < cap; i++)
		out[i] = (struct pgt_ofl_ring_desc){ .recs = k->rings[i], .entries = k->entries };
	return (int)k->nrings;
}

static int kvm_harvest(struct pgt_ofl_dev *d, uint64_t iova, uint64_t len, uint32_t flags,
		       const struct pgt_ofl_sink *sink)
{
	struct kvm *k = d->priv;
	int ret;

	(void)iova, (void)len, (void)flags, (void)sink;
	if (!k->mapped)
		return 0; /* the caller's producer resets its own ring */
	/* re-protects the harvested pages: a write after this is logged again */
	ret = d->io->ioctl(d->io->ctx, k->cfg.vm_fd, KVM_RESET_DIRTY_RINGS, NULL);
	if (ret < 0)
		return ret;
	k->resets += (uint64_t)ret;
	return 0;
}

static int kvm_stop(struct pgt_ofl_dev *d)
{
	(void)d; /* a KVM dirty ring cannot be switched off once enabled */
	return 0;
}

static void kvm_detach(struct pgt_ofl_dev *d)
{
	(void)d;
}

static void kvm_close(struct pgt_ofl_dev *d)
{
	struct kvm *k = d->priv;

	if (!k)
		return;
	kvm_unmap(d, k);
	free(k);
	d->priv = NULL;
}

static void kvm_info(const struct pgt_ofl_dev *d, struct pgt_offload_info *info)
{
	const struct kvm *k = d->priv;

	info->ring = k->nrings ? k->rings[0] : NULL;
	info->ring_entries = k->entries;
	info->ring_bytes = (uint64_t)k->entries * sizeof(struct pgt_offload_rec);
}

const struct pgt_ofl_ops pgt__ofl_kvm = {
	.name = "kvm-ring", .shape = PGT_OFFLOAD_RING,
	.probe = kvm_probe, .open = kvm_open, .attach = kvm_attach, .start = kvm_start,
	.rings = kvm_rings, .harvest = kvm_harvest, .stop = kvm_stop, .detach = kvm_detach,
	.close = kvm_close, .info = kvm_info,
};
