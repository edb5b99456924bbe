/* SPDX-License-Identifier: MIT */
/*
 * The guest side of the attach validation (tests/attach/attach_qemu.py):
 * a static program in the busybox initramfs that dirties a known amount of
 * memory at a known rate, so the host can compare what pgtrack (attached
 * to QEMU) and QEMU's calc-dirty-rate measure against the truth.
 *
 *   attach-writer BUFFER_MIB RATE_MIBS:SECONDS...
 *
 * maps and populates BUFFER_MIB, then for each phase writes pages of the
 * buffer in order, round and round, paced to RATE_MIBS MiB/s (0: none)
 * for SECONDS, each write changing the page's first 8 bytes (QEMU's
 * sampling compares page hashes, so a write must change the contents).
 * Then it frees the buffer (free page reporting gives it to the host).
 * Markers on stdout, one line each, for the host to follow:
 *   @@W populated pages=N secs=S
 *   @@W phase I rate=R secs=S start
 *   @@W phase I end pages=N secs=S        pages written, guest seconds
 *   @@W freed
 * Pacing is by the guest clock (under TCG it follows the host's). A phase
 * that cannot keep up writes as fast as it can and says so in its count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1UL << 20)
#define PAGE 4096UL

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	unsigned long mib, npages, next = 0;
	uint64_t stamp = 1;
	unsigned char *buf;
	double t0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || (mib = strtoul(argv[1], NULL, 10)) == 0) {
		fprintf(stderr, "usage: %s BUFFER_MIB RATE_MIBS:SECONDS...\n", argv[0]);
		return 2;
	}
	npages = mib * MIB / PAGE;
	buf = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	t0 = now();
	for (unsigned long p = 0; p < npages; p++)
		memcpy(buf + p * PAGE, &stamp, sizeof(stamp));
	printf("@@W populated pages=%lu secs=%.2f\n", npages, now() - t0);
	for (int i = 2; i < argc; i++) {
		double rate, secs, start, t;
		unsigned long written = 0;

		if (sscanf(argv[i], "%lf:%lf", &rate, &secs) != 2 || rate < 0 || secs <= 0) {
			fprintf(stderr, "bad phase \"%s\": want RATE_MIBS:SECONDS\n", argv[i]);
			return 2;
		}
		printf("@@W phase %d rate=%g secs=%g start\n", i - 1, rate, secs);
		start = now();
		while ((t = now() - start) < secs) {
			/* pages due by now; written in one go, then a 10 ms rest */
			unsigned long due = (unsigned long)(rate * MIB / PAGE * t);

			stamp++;
			for (; written < due; written++) {
				memcpy(buf + next * PAGE, &stamp, sizeof(stamp));
				next = (next + 1) % npages;
			}
			pause_ms(10);
		}
		printf("@@W phase %d end pages=%lu secs=%.3f\n", i - 1, written, now() - start);
	}
	munmap(buf, npages * PAGE);
	printf("@@W freed\n");
	return 0;
}
