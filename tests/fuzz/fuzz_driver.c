/* SPDX-License-Identifier: MIT */
/*
 * Replay driver for the libFuzzer targets when not built with
 * -fsanitize=fuzzer: runs every file of the corpus directory given as argv[1],
 * then PGT_FUZZ_ITERS (default 20000) deterministic mutations of them
 * (bit flips, truncation, splices, random bytes). A crash or sanitizer report
 * fails the test; the target itself asserts its invariants with abort().
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PGT_FUZZ_MAX 65536

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(int argc, char **argv)
{
	static uint8_t corpus[64][PGT_FUZZ_MAX];
	static size_t clen[64];
	static uint8_t buf[PGT_FUZZ_MAX];
	size_t n = 0;
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	long iters = 20000;
	const char *env = getenv("PGT_FUZZ_ITERS");

	if (env)
		iters = atol(env);
	if (argc > 1) {
		DIR *d = opendir(argv[1]);
		struct dirent *de;

		while (d && (de = readdir(d)) && n < 64) {
			char path[4096];
			FILE *f;

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
			f = fopen(path, "rb");
			if (!f)
				continue;
			clen[n] = fread(corpus[n], 1, PGT_FUZZ_MAX, f);
			fclose(f);
			LLVMFuzzerTestOneInput(corpus[n], clen[n]);
			n++;
		}
		if (d)
			closedir(d);
	}
	if (!n) { /* no corpus: start from empty and random inputs */
		clen[0] = 0;
		n = 1;
	}
	for (long it = 0; it < iters; it++) {
		size_t k = rng(&s) % n, len = clen[k];

		memcpy(buf, corpus[k], len);
		switch (rng(&s) % 5) {
		case 0: /* bit flips */
			for (int j = 0; len && j < 4; j++)
				buf[rng(&s) % len] ^= (uint8_t)(1u << (rng(&s) % 8));
			break;
		case 1: /* truncate */
			len = len ? rng(&s) % len : 0;
			break;
		case 2: { /* splice with another input */
			size_t o = rng(&s) % n, cut = len ? rng(&s) % len : 0;
			size_t add = clen[o] ? rng(&s) % clen[o] : 0;

			if (cut + add > PGT_FUZZ_MAX)
				add = PGT_FUZZ_MAX - cut;
			memcpy(buf + cut, corpus[o], add);
			len = cut + add;
			break;
		}
		case 3: /* random bytes */
			len = rng(&s) % 512;
			for (size_t j = 0; j < len; j++)
				buf[j] = (uint8_t)rng(&s);
			break;
		default: /* overwrite with interesting values */
			for (int j = 0; len && j < 3; j++)
				buf[rng(&s) % len] = (uint8_t[]){0, 0xff, '\n', ' ', '0', '9', '-', ':'}[rng(&s) % 8];
		}
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("fuzz: %zu corpus inputs, %ld mutations, no crash\n", n, iters);
	return 0;
}
