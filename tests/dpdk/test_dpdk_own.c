/* SPDX-License-Identifier: MIT */
/*
 * DPDK memory in an EAL pgtrack starts itself with hugepages (--in-memory
 * --no-pci): the first pgt_dpdk_init() starts it (0), later ones find it
 * (1), a region creation needs none before it. This program does not link
 * DPDK: pgtrack loads librte_eal itself at first use. The calling thread
 * keeps its CPU affinity (the EAL pins its caller). Then the common checks.
 */
#include "tests/dpdk/dpdk_common.h"

#include <sched.h>

static void test_own_eal(void **state)
{
	struct pgt_dpdk_config bad = { .size = sizeof(bad), .flags = 8 };
	struct pgt_dpdk_config dc = { .size = sizeof(dc), .lcore = -1 };
	cpu_set_t before, after;
	struct dfx f;

	(void)state;
	if (pgt_test_free_hugepages() < 64)
		pgt_skip("needs 64 free 2 MiB hugepages, %ld free", pgt_test_free_hugepages());
	assert_int_equal(pgt_dpdk_init(&bad), -EINVAL);
	bad.flags = 0;
	bad.size = 4;
	assert_int_equal(pgt_dpdk_init(&bad), -EINVAL);
	assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof(before), &before), 0);
	assert_int_equal(pgt_dpdk_init(&dc), 0);
	assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof(after), &after), 0);
	assert_true(CPU_EQUAL(&before, &after));
	assert_int_equal(pgt_dpdk_init(NULL), 1);
	dfx_open(&f);
	assert_int_equal(f.info.page_size, 2 * MIB);
	dpdk_track_release(&f);
	dpdk_offload(&f);
	dfx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_eal),
	};

	pgt_probe(&dprobe);
	return cmocka_run_group_tests_name("dpdk_own", tests, NULL, NULL);
}
