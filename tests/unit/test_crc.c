/* SPDX-License-Identifier: MIT */
/*
 * CRC32C kernels (hal/crc.c): known test vectors, and every implementation
 * this CPU has equal to the scalar table reference on random data, for
 * whole 4 KiB blocks and for any length and alignment of the byte API.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/testutil.h"
#include "hal/hal.h"

static uint64_t seed;

/* Bitwise CRC32C, independent of the tables hal/crc.c builds. */
static uint32_t ref_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static void fill(uint8_t *p, size_t n, uint64_t *st)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)pgt_test_rand(st);
}

static int restore(void **state)
{
	(void)state;
	pgt__hal_crc_force(true);
	return 0;
}

/* RFC 3720 (iSCSI) B.4 vectors and the usual check value. */
static void test_vectors(void **state)
{
	uint8_t buf[48];

	(void)state;
	assert_int_equal(pgt_hal_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(pgt__hal_crc32c_scalar(0, "123456789", 9), 0xE3069283u);
	memset(buf, 0, 32);
	assert_int_equal(pgt_hal_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, 32);
	assert_int_equal(pgt_hal_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(pgt_hal_crc32c(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(pgt_hal_crc32c(0, buf, 32), 0x113FDB5Cu);
	/* continuation: crc(a|b) == crc(crc(a), b) */
	assert_int_equal(pgt_hal_crc32c(pgt_hal_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* The fused copy: the destination holds the source, the CRC is of it. */
static void check_copy(const uint8_t *src)
{
	uint8_t *dst = aligned_alloc(4096, 2 * 4096);

	assert_non_null(dst);
	for (unsigned so = 0; so < 4096; so += so < 64 ? 1 : 1021)
		for (unsigned dof = 0; dof < 128; dof += 37) {
			memset(dst, 0xa5, 2 * 4096);
			assert_int_equal(pgt_hal_crc32c_4k_copy(dst + dof, src + so),
					 ref_bitwise(0, src + so, 4096));
			assert_memory_equal(dst + dof, src + so, 4096);
			for (unsigned i = 0; i < dof; i++)
				assert_int_equal(dst[i], 0xa5);      /* nothing outside */
			assert_int_equal(dst[dof + 4096], 0xa5);
		}
	free(dst);
}

static void check_impl(const char *name)
{
	enum { NB = 8 };
	uint8_t *buf = aligned_alloc(4096, (NB + 1) * 4096);
	uint32_t got[NB], want[NB];
	uint64_t st = seed;

	assert_non_null(buf);
	fill(buf, (NB + 1) * 4096, &st);
	memset(buf + 4096, 0, 4096);    /* a zero block among random ones */
	assert_int_equal(pgt__hal_crc_force_name(name), 0);
	assert_string_equal(pgt__hal_crc_impl(), name);
	/* whole blocks at every alignment up to 64, then odd ones */
	for (unsigned off = 0; off < 4096; off += off < 64 ? 1 : 509) {
		pgt_hal_crc32c_4k(buf + off, NB, got);
		for (int i = 0; i < NB; i++)
			want[i] = ref_bitwise(0, buf + off + (size_t)i * 4096, 4096);
		assert_memory_equal(got, want, sizeof(got));
		pgt__hal_crc32c_4k_scalar(buf + off, NB, got);
		assert_memory_equal(got, want, sizeof(got));
	}
	check_copy(buf);
	/* byte API: every length up to 300 at every alignment up to 16 */
	for (unsigned a = 0; a < 16; a++)
		for (size_t n = 0; n <= 300; n++)
			assert_int_equal(pgt_hal_crc32c(7, buf + a, n), ref_bitwise(7, buf + a, n));
	/* a one-bit change in any lane changes the block's CRC */
	for (unsigned bit = 0; bit < 4096 * 8; bit += 1021) {
		uint32_t before, after;

		pgt_hal_crc32c_4k(buf, 1, &before);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		pgt_hal_crc32c_4k(buf, 1, &after);
		assert_int_not_equal(before, after);
		assert_int_equal(after, ref_bitwise(0, buf, 4096));
	}
	free(buf);
}

static void test_scalar(void **state)
{
	(void)state;
	check_impl("scalar");
	assert_int_equal(pgt__hal_crc_force(false), 0);
	assert_string_equal(pgt__hal_crc_impl(), "scalar");
}

/* The best implementation is picked, and forcing by name rejects bad names. */
static void test_hw(void **state)
{
	(void)state;
	assert_int_equal(pgt__hal_crc_force_name("no-such-crc"), -EINVAL);
	assert_int_equal(pgt__hal_crc_force_name(NULL), -EINVAL);
	if (pgt__hal_crc_force(true) == -ENOTSUP)
		pgt_skip("CPU has no CRC32C instructions");
	pgt_test_note("best implementation: %s", pgt__hal_crc_impl());
	check_impl(pgt__hal_crc_impl());
}

/* Every implementation this build has and this CPU runs, equal to the reference. */
static void test_each_impl(void **state)
{
	const char *name;
	unsigned tested = 0;

	(void)state;
	assert_string_equal(pgt__hal_crc_impl_name(0), "scalar");
	for (unsigned i = 1; (name = pgt__hal_crc_impl_name(i)); i++) {
		if (pgt__hal_crc_force_name(name) == -ENOTSUP) {
			pgt_test_note("%s: not on this CPU", name);
			continue;
		}
		pgt_test_note("%s: tested", name);
		check_impl(name);
		tested++;
	}
	if (!tested)
		pgt_skip("no hardware CRC32C implementation on this CPU");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test_teardown(test_scalar, restore),
		cmocka_unit_test_teardown(test_hw, restore),
		cmocka_unit_test_teardown(test_each_impl, restore),
	};

	seed = pgt_test_seed();
	return cmocka_run_group_tests_name("crc", tests, NULL, NULL);
}
