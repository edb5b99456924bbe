/* SPDX-License-Identifier: MIT */
/*
 * DPDK memory in an EAL pgtrack starts without hugepages (--no-huge
 * --no-shconf -m 128): 4 KiB pages of one shmem file, IOVA = VA, so the
 * region has one backing fd (released by punch-hole) and one IOVA range.
 * Region creation with no EAL up at all (the default pgt_dpdk_init() picks
 * hugepages only when the pool has them) is covered by test_dpdk_own.
 */
#include "tests/dpdk/dpdk_common.h"

static void test_nohuge_eal(void **state)
{
	struct pgt_dpdk_config dc = { .size = sizeof(dc), .flags = PGT_DPDK_NO_HUGE,
				      .memory_mb = 128, .lcore = -1 };
	struct pgt_offload_range rg[2];
	struct dfx f;

	(void)state;
	assert_int_equal(pgt_dpdk_init(&dc), 0);
	dfx_open(&f);
	assert_int_equal(f.info.page_size, 4096);
	assert_true(f.info.fd >= 0);
	assert_int_equal(pgt_offload_region_ranges(f.r, 0, rg, 2), 1);
	assert_int_equal(rg[0].iova, (uint64_t)(uintptr_t)f.info.addr); /* VA mode */
	dpdk_track_release(&f);
	dpdk_offload(&f);
	dfx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nohuge_eal),
	};

	pgt_probe(&dprobe);
	return cmocka_run_group_tests_name("dpdk_nohuge", tests, NULL, NULL);
}
