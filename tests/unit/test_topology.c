/* SPDX-License-Identifier: MIT */
/*
 * NUMA topology: this machine, hwloc synthetic topologies of 2, 4 and 8
 * nodes (even and uneven, with CPU-less nodes), distances, CPU lists, the
 * no-hwloc fallback, and bad input (descriptions hwloc rejects, bad CPU
 * lists) giving -EINVAL and a clear log line.
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numa/numa_pvt.h"
#include "pgt_config.h"

static char last_log[512];
static int nlogs;

static void logger(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	snprintf(last_log, sizeof(last_log), "%s", msg);
	nlogs++;
}

static int load(const char *spec, pgt_topology **t)
{
	struct pgt_topology_config c = {
		.size = sizeof(c), .spec = spec, .log = logger, .log_level = PGT_LOG_DEBUG,
	};

	last_log[0] = 0;
	nlogs = 0;
	return pgt_topology_load(&c, t);
}

static void need_hwloc(void)
{
	if (!PGT_HAVE_HWLOC)
		pgt_skip("built without hwloc (-Dhwloc=disabled): no synthetic topologies");
}

static void test_this_machine(void **state)
{
	struct pgt_topology_info ti = { .size = sizeof(ti) };
	struct pgt_numa_node nd = { .size = sizeof(nd) };
	pgt_topology *t;
	int cpus[8];

	(void)state;
	assert_int_equal(load(NULL, &t), 0);
	assert_int_equal(pgt_topology_info(t, &ti), 0);
	assert_true(ti.this_system);
	assert_true(ti.nnodes >= 1);
	assert_true(ti.ncpus >= 1);
	assert_int_equal(ti.source, PGT_HAVE_HWLOC ? PGT_TOPO_HWLOC : PGT_TOPO_FALLBACK);
	assert_int_equal(pgt_topology_node(t, 0, &nd), 0);
	assert_true(nd.memory > 0);
	assert_true(nd.ncpus >= 1);
	assert_true(pgt_topology_node_cpus(t, nd.id, cpus, 8) >= 1);
	assert_int_equal(pgt_topology_cpu_node(t, cpus[0]), nd.id);
	assert_int_equal(pgt_topology_distance(t, nd.id, nd.id), 10);
	if (!PGT_HAVE_HWLOC) {
		/* the fallback says what it did */
		assert_non_null(strstr(last_log, "one node"));
		assert_non_null(strstr(last_log, "without hwloc"));
	}
	pgt_topology_free(t);
}

struct synth {
	const char *spec;
	unsigned nodes;
	unsigned cpus_per_node;
	unsigned cores_per_node;
	bool l3;
};

static const struct synth synths[] = {
	{ "pack:2 numa:1 core:2 pu:1", 2, 2, 2, false },
	{ "pack:4 numa:1 l3:1 core:2 pu:1", 4, 2, 2, true },
	{ "pack:2 numa:4 core:1 pu:2", 8, 2, 1, false },
};

static void test_synthetic(void **state)
{
	(void)state;
	need_hwloc();
	for (size_t k = 0; k < sizeof(synths) / sizeof(synths[0]); k++) {
		const struct synth *s = &synths[k];
		struct pgt_topology_info ti = { .size = sizeof(ti) };
		pgt_topology *t;

		assert_int_equal(load(s->spec, &t), 0);
		assert_int_equal(pgt_topology_info(t, &ti), 0);
		assert_false(ti.this_system);
		assert_int_equal(ti.source, PGT_TOPO_SYNTHETIC);
		assert_int_equal(ti.nnodes, s->nodes);
		assert_int_equal(ti.ncpus, s->nodes * s->cpus_per_node);
		assert_int_equal(ti.max_node, (int)s->nodes - 1);
		for (unsigned i = 0; i < s->nodes; i++) {
			struct pgt_numa_node nd = { .size = sizeof(nd) };
			char want[32];
			int cpus[16];

			assert_int_equal(pgt_topology_node(t, i, &nd), 0);
			assert_int_equal(nd.id, (int)i);
			assert_int_equal(nd.ncpus, s->cpus_per_node);
			assert_int_equal(nd.ncores, s->cores_per_node);
			assert_true(nd.memory > 0);
			if (s->l3)
				assert_true(nd.cache[2] > 0);
			snprintf(want, sizeof(want), "%u-%u", i * s->cpus_per_node,
				 (i + 1) * s->cpus_per_node - 1);
			assert_string_equal(nd.cpulist, want);
			assert_int_equal(pgt_topology_node_cpus(t, (int)i, cpus, 16),
					 (int)s->cpus_per_node);
			assert_int_equal(cpus[0], (int)(i * s->cpus_per_node));
			assert_int_equal(pgt_topology_cpu_node(t, cpus[0]), (int)i);
			assert_int_equal(pgt_topology_find(t, (int)i), (int)i);
			for (unsigned j = 0; j < s->nodes; j++)
				assert_int_equal(pgt_topology_distance(t, (int)i, (int)j),
						 i == j ? 10 : 20);
		}
		assert_int_equal(pgt_topology_find(t, (int)s->nodes), -ENOENT);
		assert_int_equal(pgt_topology_distance(t, 0, (int)s->nodes), -ENOENT);
		assert_int_equal(pgt_topology_node_cpus(t, 99, NULL, 0), -ENOENT);
		assert_int_equal(pgt_topology_cpu_node(t, 999), -ENOENT);
		{
			struct pgt_numa_node nd = { .size = sizeof(nd) };

			assert_int_equal(pgt_topology_node(t, s->nodes, &nd), -ENOENT);
		}
		pgt_topology_free(t);
	}
}

/* Restricting CPUs makes uneven nodes and a node without CPUs. */
static void test_uneven(void **state)
{
	struct pgt_numa_node nd = { .size = sizeof(nd) };
	pgt_topology *t;
	const unsigned want_cpus[4] = { 2, 2, 1, 0 };

	(void)state;
	need_hwloc();
	assert_int_equal(load("pack:2 numa:2 core:2 pu:1;cpus=0-4", &t), 0);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(pgt_topology_node(t, i, &nd), 0);
		assert_int_equal(nd.ncpus, want_cpus[i]);
		assert_int_equal(nd.ncores, want_cpus[i]);
		assert_true(nd.memory > 0); /* memory stays with the node */
	}
	assert_string_equal(nd.cpulist, "");
	/* the CPU-less node's work goes to the nearest node with CPUs */
	assert_int_equal(pgt__topo_worker_node(t, 3), 0);
	assert_int_equal(pgt__topo_worker_node(t, 2), 2);
	assert_int_equal(pgt__topo_worker_node(t, 7), -1);
	pgt_topology_free(t);

	assert_int_equal(load("pack:2 numa:1 core:2 pu:1;cpus=0,3", &t), 0);
	assert_int_equal(pgt_topology_node(t, 1, &nd), 0);
	assert_string_equal(nd.cpulist, "3");
	pgt_topology_free(t);
}

static void test_bad_input(void **state)
{
	struct pgt_topology_config c = { .size = sizeof(c) };
	pgt_topology *t = (pgt_topology *)&c;

	(void)state;
	assert_int_equal(pgt_topology_load(NULL, NULL), -EINVAL);
	c.size = 4;
	assert_int_equal(pgt_topology_load(&c, &t), -EINVAL);
	assert_null(t);
	c.size = sizeof(c);
	c.flags = 1;
	assert_int_equal(pgt_topology_load(&c, &t), -EINVAL);
	assert_int_equal(pgt_topology_info(NULL, NULL), -EINVAL);
	assert_int_equal(pgt_topology_find(NULL, 0), -EINVAL);
	assert_int_equal(pgt_topology_distance(NULL, 0, 0), -EINVAL);
	assert_int_equal(pgt_topology_node_cpus(NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(pgt_topology_cpu_node(NULL, 0), -EINVAL);
	pgt_topology_free(NULL);

	if (!PGT_HAVE_HWLOC) {
		assert_int_equal(load("pack:2 numa:1 core:2 pu:1", &t), -EOPNOTSUPP);
		assert_non_null(strstr(last_log, "no hwloc"));
		return;
	}
	assert_int_equal(load("garbage:3 nonsense", &t), -EINVAL);
	assert_null(t);
	assert_non_null(strstr(last_log, "rejects"));
	assert_non_null(strstr(last_log, "garbage:3"));
	assert_int_equal(load("pack:2 numa:1 core:2 pu:1;cpus=64-70", &t), -EINVAL);
	assert_non_null(strstr(last_log, "leaves no CPU"));
	assert_int_equal(load("pack:2 numa:1 core:2 pu:1;cpus=3-1", &t), -EINVAL);
	assert_non_null(strstr(last_log, "bad CPU list"));
	assert_int_equal(load("pack:2 numa:1 core:2 pu:1;cpus=", &t), -EINVAL);
	assert_int_equal(load("xml:/nonexistent/topology.xml", &t), -EINVAL);
	assert_non_null(strstr(last_log, "/nonexistent/topology.xml"));
}

static void test_cpuset(void **state)
{
	struct pgt_cpuset s;
	char buf[64], small[12];

	(void)state;
	assert_int_equal(pgt__cpuset_parse("0-3,8,10-11\n", 12, &s), 0);
	assert_int_equal(pgt__cpuset_count(&s), 7);
	assert_string_equal(pgt__cpuset_format(&s, buf, sizeof(buf)), "0-3,8,10-11");
	assert_int_equal(pgt__cpuset_next(&s, 4), 8);
	assert_int_equal(pgt__cpuset_next(&s, 12), -1);
	/* truncated output is marked, never overflows */
	pgt__cpuset_format(&s, small, sizeof(small));
	assert_true(strlen(small) < sizeof(small));
	assert_non_null(strstr(small, "..."));
	assert_int_equal(pgt__cpuset_parse("", 0, &s), 0);
	assert_int_equal(pgt__cpuset_count(&s), 0);
	assert_int_equal(pgt__cpuset_parse("1-", 2, &s), -EINVAL);
	assert_int_equal(pgt__cpuset_parse("5-2", 3, &s), -EINVAL);
	assert_int_equal(pgt__cpuset_parse("1,,2", 4, &s), -EINVAL);
	assert_int_equal(pgt__cpuset_parse("1024", 4, &s), -EINVAL);
	assert_int_equal(pgt__cpuset_parse("99999999999999999999", 20, &s), -EINVAL);
	assert_int_equal(pgt__cpuset_parse("x", 1, &s), -EINVAL);
	/* the length bounds the parse: no terminator needed */
	assert_int_equal(pgt__cpuset_parse("7garbage", 1, &s), 0);
	assert_true(pgt__cpuset_isset(&s, 7));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_this_machine),
		cmocka_unit_test(test_synthetic),
		cmocka_unit_test(test_uneven),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_cpuset),
	};

	return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}
