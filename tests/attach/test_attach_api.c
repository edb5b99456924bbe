/* SPDX-License-Identifier: MIT */
/*
 * libpgtrack-attach without the preload: QEMU's size syntax and command
 * lines, PGT_ATTACH_RAM rules, which mappings of an smaps text are guest
 * RAM, the state file parser, and the C API a VMM that links the library
 * calls (configuration errors, add/overlap, figures, rendering, stepping
 * aside with and without PGT_ATTACH_HOLD).
 */
#include "tests/common/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tools/attach/attach_pvt.h"

#define MIB (1ULL << 20)
#define PG 4096ULL

static void test_parse_size(void **unused)
{
	uint64_t v;

	(void)unused;
	assert_int_equal(pgt_attach__parse_size("512M", 4, 1, &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(pgt_attach__parse_size("1.5G", 4, 1, &v), 0);
	assert_int_equal(v, 1536 * MIB);
	assert_int_equal(pgt_attach__parse_size("2048", 4, MIB, &v), 0);
	assert_int_equal(v, 2048 * MIB);
	assert_int_equal(pgt_attach__parse_size("4k", 2, 1, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(pgt_attach__parse_size("1T", 2, 1, &v), 0);
	assert_int_equal(v, 1ULL << 40);
	/* what is not a size, or not a whole number of bytes */
	assert_int_equal(pgt_attach__parse_size("", 0, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("M", 1, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("12Q", 3, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("12MB", 4, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("1.5", 3, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("-5", 2, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("99999999999999999999", 20, 1, &v), -EINVAL);
	assert_int_equal(pgt_attach__parse_size("20000000E", 9, 1, &v), -EINVAL);
}

/* "a b c" -> "a\0b\0c\0" (spaces separate arguments here) */
static int sizes_of(const char *line, uint64_t *out)
{
	char buf[1024];
	size_t n = strlen(line);

	assert_true(n < sizeof(buf));
	memcpy(buf, line, n + 1);
	for (size_t i = 0; i < n; i++)
		if (buf[i] == ' ')
			buf[i] = 0;
	return pgt_attach__cmdline_sizes(buf, n + 1, out, ATT_MAX_SIZES);
}

static void test_cmdline(void **unused)
{
	uint64_t s[ATT_MAX_SIZES];

	(void)unused;
	assert_int_equal(sizes_of("qemu-system-x86_64 -m 512M -nographic", s), 1);
	assert_int_equal(s[0], 512 * MIB);
	assert_int_equal(sizes_of("qemu -m size=1G,slots=2,maxmem=4G", s), 1);
	assert_int_equal(s[0], 1024 * MIB);
	assert_int_equal(sizes_of("qemu --m 2048", s), 1); /* MiB by default */
	assert_int_equal(s[0], 2048 * MIB);
	assert_int_equal(sizes_of("qemu -nographic", s), 1); /* QEMU's default */
	assert_int_equal(s[0], 128 * MIB);
	/* machine RAM from a backend: the backend is the mapping */
	assert_int_equal(sizes_of("qemu -m 512M -object memory-backend-memfd,id=m0,size=512M "
				  "-machine pc,memory-backend=m0", s), 1);
	assert_int_equal(s[0], 512 * MIB);
	/* two NUMA nodes: two mappings of 512 MiB, not a 1 GiB one */
	assert_int_equal(sizes_of("qemu -m 1G -object memory-backend-ram,id=a,size=512M "
				  "-object qom-type=memory-backend-ram,id=b,size=512M "
				  "-numa node,nodeid=0,memdev=a -numa node,nodeid=1,memdev=b", s), 2);
	assert_int_equal(s[0], 512 * MIB);
	assert_int_equal(s[1], 512 * MIB);
	/* a backend for something else (ivshmem): RAM and it */
	assert_int_equal(sizes_of("qemu -m 256M -object memory-backend-file,id=sh,size=64M,"
				  "mem-path=/dev/shm/x,share=on -object secret,id=s,data=x", s), 2);
	assert_int_equal(s[0], 256 * MIB);
	assert_int_equal(s[1], 64 * MIB);
	/* libvirt's JSON objects */
	assert_int_equal(sizes_of("qemu -object {\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\","
				  "\"size\":536870912} -machine pc,memory-backend=pc.ram", s), 1);
	assert_int_equal(s[0], 512 * MIB);
	assert_int_equal(sizes_of("qemu -object {\"qom-type\":\"memory-backend-memfd\",\"size\":\"2G\"} "
				  "-numa node,memdev=x", s), 1);
	assert_int_equal(s[0], 2048 * MIB);
	/* broken sizes are an error, not a guess */
	assert_int_equal(sizes_of("qemu -m lots", s), -EBADMSG);
	assert_int_equal(sizes_of("qemu -object memory-backend-ram,id=a,size=big", s), -EBADMSG);
	assert_int_equal(sizes_of("qemu -object {\"qom-type\":", s), -EBADMSG);
}

static void test_rules(void **unused)
{
	char *g[PGT_ATTACH_MAX_REGIONS];
	uint64_t s[PGT_ATTACH_MAX_REGIONS];
	char buf[256];

	(void)unused;
	strcpy(buf, "[anon]@64M,/memfd:*,@1G");
	assert_int_equal(pgt_attach__rules(buf, g, s, PGT_ATTACH_MAX_REGIONS), 3);
	assert_string_equal(g[0], "[anon]");
	assert_int_equal(s[0], 64 * MIB);
	assert_string_equal(g[1], "/memfd:*");
	assert_int_equal(s[1], 0);
	assert_string_equal(g[2], "*");
	assert_int_equal(s[2], 1024 * MIB);
	static const char *const bad[] = { "", ",", "a,", ",a", "a,,b", "a@", "a@0", "a@12Q" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(buf, bad[i]);
		assert_int_equal(pgt_attach__rules(buf, g, s, PGT_ATTACH_MAX_REGIONS), -EINVAL);
	}
	strcpy(buf, "a,b,c");
	assert_int_equal(pgt_attach__rules(buf, g, s, 2), -EINVAL);
}

/* What QEMU's maps look like: RAM, its TCG code buffer, heap, a library. */
static const char maps[] =
	/* a stack right below guest RAM: not part of it */
	"7effffe00000-7f0000000000 rw-p 00000000 00:00 0 \n"
	"KernelPageSize: 4 kB\nVmFlags: rd wr mr mw me ac sd\n"
	"7f0000000000-7f0008000000 rw-p 00000000 00:00 0 \n"          /* 128 MiB anon */
	"KernelPageSize: 4 kB\nVmFlags: rd wr mr mw me ac sd hg\n"
	"7f0010000000-7f0020000000 rwxp 00000000 00:00 0 \n"          /* 256 MiB code buffer */
	"KernelPageSize: 4 kB\nVmFlags: rd wr ex mr mw me ac sd\n"
	"7f0020000000-7f0028000000 rw-s 00000000 00:01 1160 /memfd:memory-backend-memfd (deleted)\n"
	"KernelPageSize: 4 kB\nVmFlags: rd wr sh mr mw me ms sd\n"
	/* the same memfd in two VMAs: one mapping of 256 MiB */
	"7f0030000000-7f0034000000 rw-s 00000000 00:01 1170 /memfd:memory-backend-memfd (deleted)\n"
	"KernelPageSize: 4 kB\nVmFlags: rd wr sh mr mw me ms sd\n"
	"7f0034000000-7f0040000000 rw-s 04000000 00:01 1170 /memfd:memory-backend-memfd (deleted)\n"
	"KernelPageSize: 4 kB\nVmFlags: rd wr sh mr mw me ms sd lo\n"
	"7f0040000000-7f0060000000 rw-s 00000000 00:0f 2001 /dev/hugepages/qemu_back_mem.ram (deleted)\n"
	"KernelPageSize: 2048 kB\nVmFlags: rd wr sh mr mw me ms de ht sd\n"
	"7f0060000000-7f0068000000 rw-p 00000000 00:00 0 [heap]\n"   /* 128 MiB heap */
	"KernelPageSize: 4 kB\nVmFlags: rd wr mr mw me ac sd\n"
	"7f0068000000-7f0068200000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6\n"
	"KernelPageSize: 4 kB\nVmFlags: rd ex mr mw me sd\n"
	"7f0070000000-7f0078000000 rw-p 00000000 00:00 0 \n"          /* 128 MiB, held by QEMU's uffd */
	"KernelPageSize: 4 kB\nVmFlags: rd wr mr mw me ac sd uw\n";

static int selected(const char *rules, const uint64_t *sizes, unsigned n,
		    struct att_candidate *c)
{
	pgtool_procmap *pm;
	int k;

	assert_int_equal(pgtool_procmap_parse(maps, sizeof(maps) - 1, NULL, 0, &pm), 0);
	k = pgt_attach__select(pm, rules, sizes, n, c, PGT_ATTACH_MAX_REGIONS);
	pgtool_procmap_free(pm);
	return k;
}

static void test_select(void **unused)
{
	struct att_candidate c[PGT_ATTACH_MAX_REGIONS];
	uint64_t s128 = 128 * MIB, s256[2] = { 256 * MIB, 512 * MIB };

	(void)unused;
	/* -m 128M: the anonymous RAM (and the one QEMU holds), not the heap */
	assert_int_equal(selected(NULL, &s128, 1, c), 1);
	assert_int_equal(c[0].start, 0x7f0000000000ULL);
	assert_false(c[0].flags & PGTOOL_MAP_UFFD);
	/* 256 MiB: the split memfd joined (not the code buffer of that size),
	 * 512 MiB: the hugetlb file */
	assert_int_equal(selected(NULL, s256, 2, c), 2);
	assert_int_equal(c[0].start, 0x7f0030000000ULL);
	assert_int_equal(c[0].end, 0x7f0040000000ULL);
	assert_int_equal(c[0].ino, 1170);
	assert_int_equal(c[1].page_size, 2 * MIB);
	assert_true(c[1].flags & PGTOOL_MAP_HUGETLB);
	/* rules: names and sizes */
	assert_int_equal(selected("/memfd:*", NULL, 0, c), 2);
	assert_int_equal(selected("/memfd:*@128M", NULL, 0, c), 1);
	assert_int_equal(c[0].ino, 1160);
	assert_int_equal(selected("[anon]", NULL, 0, c), 3); /* the stack too: no size */
	assert_int_equal(c[1].end - c[1].start, 128 * MIB); /* not joined with it */
	assert_true(c[2].flags & PGTOOL_MAP_UFFD); /* reported; the caller waits */
	assert_int_equal(selected("[anon]@1G", NULL, 0, c), 0);
	assert_int_equal(selected("/usr/lib/*", NULL, 0, c), 0); /* not writable */
	assert_int_equal(selected("\\[heap\\]", NULL, 0, c), 0); /* private, named: not RAM */
	assert_int_equal(selected("@", NULL, 0, c), -EINVAL);
}

static void test_state_parse(void **unused)
{
	struct pgtool_attach_state *st = malloc(sizeof(*st));
	static const char good[] =
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":42,\"starttime\":7,\"time\":1.5,"
		"\"state\":\"attached\",\"message\":\"a\\nb\",\"http_port\":null,\"regions\":[{"
		"\"name\":\"ram0\",\"mapping\":\"\",\"start\":4096,\"size\":8192,\"page_size\":4096,"
		"\"dirty_bytes_total\":12288,\"touched_bytes\":null,\"released_bytes\":4096,"
		"\"dirty_rate_bytes_per_second\":{\"1s\":1.5,\"10s\":2,\"60s\":null},"
		"\"written_bytes\":[{\"within_seconds\":1,\"bytes\":4096}],"
		"\"numa\":{\"nodes\":[{\"node\":1,\"resident_bytes\":8192},"
		"{\"node\":999,\"resident_bytes\":1}]}}]}";
	static const char *const bad[] = {
		"",
		"{}",
		"{\"schema\":\"pgtrack-attach/2\",\"pid\":1,\"state\":\"x\"}",
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":0,\"state\":\"x\"}",
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":\"1\",\"state\":\"x\"}",
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":1,\"state\":\"x\"} trailing",
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":1,\"state\":\"x\",\"regions\":{}}",
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":1,\"state\":\"x\",\"regions\":[{\"start\":1}]}",
		/* start + size wraps */
		("{\"schema\":\"pgtrack-attach/1\",\"pid\":1,\"state\":\"x\",\"regions\":[{"
		 "\"start\":18446744073709551615,\"size\":2}]}"),
		"{\"schema\":\"pgtrack-attach/1\",\"pid\":1,\"state\":\"x\",\"http_port\":70000}",
		"[1,2]",
	};

	(void)unused;
	assert_non_null(st);
	assert_int_equal(pgtool_attach_state_parse(good, sizeof(good) - 1, st), 0);
	assert_int_equal(st->pid, 42);
	assert_string_equal(st->message, "a?b"); /* no control bytes for a terminal */
	assert_int_equal(st->http_port, 0);
	assert_int_equal(st->nregions, 1);
	assert_int_equal(st->region[0].end, 4096 + 8192);
	assert_int_equal(st->region[0].touched_bytes, -1);
	assert_int_equal(st->region[0].released_bytes, 4096);
	assert_true(st->region[0].dirty_rate[0] == 1.5 && st->region[0].dirty_rate[2] < 0);
	assert_int_equal(st->region[0].nwindows, 1);
	assert_int_equal(st->region[0].nnodes, 2);
	assert_int_equal(st->region[0].node_bytes[1], 8192);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pgtool_attach_state_parse(bad[i], strlen(bad[i]), st) != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
	free(st);
}

static void test_config(void **unused)
{
	static const struct {
		struct pgt_attach_config c;
		int want;
	} cases[] = {
		{ { .size = 4 }, -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .flags = 0x80, .http_port = -1 }, -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .interval_ms = 5, .http_port = -1 }, -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .interval_ms = 100, .epoch_ms = 150,
		    .http_port = -1 }, -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .track = PGT_TRACK_TOUCH, .http_port = -1 },
		  -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .dirty_method = PGT_DIRTY_UFFD_SYNC,
		    .http_port = -1 }, -EOPNOTSUPP },
		{ { .size = sizeof(struct pgt_attach_config), .dirty_method = PGT_DIRTY_MPROTECT,
		    .http_port = -1 }, -EOPNOTSUPP },
		{ { .size = sizeof(struct pgt_attach_config), .dirty_method = 99, .http_port = -1 },
		  -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .http_port = 70000 }, -EINVAL },
		{ { .size = sizeof(struct pgt_attach_config), .numa_ms = -2, .http_port = -1 }, -EINVAL },
	};
	pgt_attach *a = (pgt_attach *)1;

	(void)unused;
	assert_int_equal(pgt_attach_open(NULL, NULL), -EINVAL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(pgt_attach_open(&cases[i].c, &a), cases[i].want);
		assert_null(a);
		a = (pgt_attach *)1;
	}
}

static pgt_attach *open_or_skip(uint32_t flags)
{
	struct pgt_attach_config c = {
		.size = sizeof(c), .flags = flags, .interval_ms = 50, .epoch_ms = 100,
		.http_port = -1, .state_dir = "",
	};
	pgt_attach *a;
	int ret = pgt_attach_open(&c, &a);

	if (ret == -EOPNOTSUPP)
		pgt_skip("no tracker that leaves a VMM alone on this kernel "
			 "(needs uffd WP-async with PAGEMAP_SCAN, or soft-dirty)");
	assert_int_equal(ret, 0);
	return a;
}

static void test_api(void **unused)
{
	struct pgt_attach_figures f = { .size = sizeof(f) };
	struct pgtool_attach_state *st = malloc(sizeof(*st));
	uint8_t *m = mmap(NULL, 18 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct pgt_attach_ram ram = { .size = sizeof(ram), .name = "guest", .addr = m,
				      .length = 16 * MIB, .fd = -1 };
	pgt_attach *a;
	char *text;
	int64_t n;

	(void)unused;
	assert_true(m != MAP_FAILED && st);
	a = open_or_skip(0);
	assert_int_equal(pgt_attach_figures(a, -1, &f), 0);
	assert_int_equal(f.state, PGT_ATTACH_SEARCHING);
	assert_int_equal(f.regions, 0);
	assert_int_equal(pgt_attach_figures(a, 0, &f), -ENOENT);
	assert_int_equal(pgt_attach_add(a, &ram), 0);
	/* the same, an overlap, misaligned, a bad struct */
	assert_int_equal(pgt_attach_add(a, &ram), -EEXIST);
	ram.addr = m + MIB;
	assert_int_equal(pgt_attach_add(a, &ram), -EEXIST);
	ram.addr = m + 100;
	assert_int_equal(pgt_attach_add(a, &ram), -EINVAL);
	ram.addr = m;
	ram.size = 8;
	assert_int_equal(pgt_attach_add(a, &ram), -EINVAL);
	ram.size = sizeof(ram);
	for (uint64_t p = 0; p < 256; p++)
		m[p * PG] = 1;
	assert_int_equal(pgt_attach_figures(a, 0, &f), 0);
	assert_int_equal(f.state, PGT_ATTACH_ATTACHED);
	assert_int_equal(f.guest_bytes, 16 * MIB);
	assert_in_range(f.dirty_bytes_total, 256 * PG, 258 * PG);
	/* JSON in the schema the state file has, and Prometheus */
	n = pgt_attach_render(a, PGT_ATTACH_JSON, &text);
	assert_true(n > 0);
	assert_int_equal(pgtool_attach_state_parse(text, (size_t)n, st), 0);
	assert_int_equal(st->nregions, 1);
	assert_string_equal(st->region[0].name, "guest");
	free(text);
	n = pgt_attach_render(a, PGT_ATTACH_PROMETHEUS, &text);
	assert_true(n > 0);
	assert_non_null(strstr(text, "pgtrack_attach_guest_bytes{region=\"guest\",mapping=\"\"} "
				 "16777216"));
	free(text);
	assert_int_equal(pgt_attach_render(a, 7, &text), -EINVAL);
	/* a claim elsewhere gives nothing up; on it, the region goes */
	assert_int_equal(pgt_attach_uffd_claim(a, (uintptr_t)m + 16 * MIB, MIB, "me"), 0);
	assert_int_equal(pgt_attach_uffd_claim(a, (uintptr_t)m + MIB, PG, "me"), 1);
	assert_int_equal(pgt_attach_figures(a, -1, &f), 0);
	assert_int_equal(f.state, PGT_ATTACH_STEPPED_ASIDE);
	assert_int_equal(f.regions, 0);
	assert_int_equal(f.steps_aside, 1);
	assert_in_range(f.dirty_bytes_total, 256 * PG, 258 * PG); /* kept */
	/* not taken back under the VMM's feet */
	assert_int_equal(pgt_attach_add(a, &ram), -EBUSY);
	pgt_attach_close(a);

	/* PGT_ATTACH_HOLD: keep it (the VMM's registration will fail) */
	a = open_or_skip(PGT_ATTACH_HOLD);
	assert_int_equal(pgt_attach_add(a, &ram), 0);
	assert_int_equal(pgt_attach_uffd_claim(a, (uintptr_t)m, PG, "me"), 0);
	assert_int_equal(pgt_attach_figures(a, 0, &f), 0);
	assert_int_equal(f.state, PGT_ATTACH_ATTACHED);
	pgt_attach_close(a);
	pgt_attach_close(NULL);
	munmap(m, 18 * MIB);
	free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_cmdline),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_state_parse),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_api),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
