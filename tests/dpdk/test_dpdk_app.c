/* SPDX-License-Identifier: MIT */
/*
 * DPDK memory in an EAL the application initialised itself (--in-memory,
 * 2 MiB hugepages; the program links DPDK, so pgtrack finds that EAL's
 * functions rather than loading another): pgtrack uses it as it is
 * (pgt_dpdk_init() says 1),
 * backs a region with a memzone, tracks it, releases from it, and points
 * the sim offload device at it through the IOVAs DPDK gives (physical
 * addresses as root: one range per page unless pages happen to be
 * contiguous), writing through DPDK's own per-page files. The memzone is
 * gone after the region is destroyed.
 */
#include "tests/dpdk/dpdk_common.h"

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_memzone.h>

static bool eal_ok;
static char eal_why[160];

static void test_app_eal(void **state)
{
	struct dfx f;
	char name[64];

	(void)state;
	if (!eal_ok)
		pgt_skip("%s", eal_why);
	assert_int_equal(pgt_dpdk_init(NULL), 1); /* the application's */
	dfx_open(&f);
	assert_int_equal(f.info.page_size, 2 * MIB);
	snprintf(name, sizeof(name), "pgt-%lx", (unsigned long)(uintptr_t)f.r);
	assert_non_null(rte_memzone_lookup(name));
	dpdk_track_release(&f);
	dpdk_offload(&f);
	dfx_close(&f);
	assert_null(rte_memzone_lookup(name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_app_eal),
	};
	char *argv[] = { "test_dpdk_app", "--in-memory", "--no-pci", "--no-telemetry", "-l", "0",
			 "--log-level=3", NULL };

	pgt_probe(&dprobe);
	if (pgt_test_free_hugepages() < 64) {
		snprintf(eal_why, sizeof(eal_why), "needs 64 free 2 MiB hugepages, %ld free",
			 pgt_test_free_hugepages());
	} else if (rte_eal_init(7, argv) < 0) {
		snprintf(eal_why, sizeof(eal_why), "rte_eal_init failed");
	} else {
		eal_ok = true;
	}
	return cmocka_run_group_tests_name("dpdk_app", tests, NULL, NULL);
}
