/* SPDX-License-Identifier: MIT */
/*
 * Per-boot calibration cache file (calibrate_pvt.h): where it lives, a
 * defensive read through pgt__calib_parse, an atomic write (tmp + rename).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/calibrate_pvt.h"

#define CACHE_MAX 1024

int pgt__calib_boot_id(char out[PGT_CALIB_BOOT_ID_LEN + 1])
{
	char buf[64];
	ssize_t n;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < PGT_CALIB_BOOT_ID_LEN)
		return -EBADMSG;
	for (int i = 0; i < PGT_CALIB_BOOT_ID_LEN; i++)
		if (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\0')
			return -EBADMSG;
	memcpy(out, buf, PGT_CALIB_BOOT_ID_LEN);
	out[PGT_CALIB_BOOT_ID_LEN] = 0;
	return 0;
}

/*
 * $XDG_RUNTIME_DIR/pgtrack/calibration, else /run/pgtrack/calibration; the
 * directory is made 0700 when missing. -errno when there is no usable place.
 */
int pgt__calib_cache_path(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/pgtrack", xdg);
	else
		n = snprintf(buf, len, "/run/pgtrack");
	if (n < 0 || (size_t)n + sizeof("/calibration") > len)
		return -ENAMETOOLONG;
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	strcat(buf, "/calibration");
	return 0;
}

/* 0 and @out filled, or -errno / -EINVAL (bad file) / -ESTALE (other boot). */
int pgt__calib_cache_load(const char *path, const char *boot_id, struct pgt__calib_costs *out)
{
	char buf[CACHE_MAX];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
		return -errno;
	if ((size_t)n == sizeof(buf))
		return -EINVAL;    /* larger than any file we write */
	return pgt__calib_parse(buf, (size_t)n, boot_id, out);
}

/* Write @c for @boot_id to @path atomically; 0 or -errno. */
int pgt__calib_cache_store(const char *path, const char *boot_id,
			   const struct pgt__calib_costs *c)
{
	static atomic_uint seq;
	char buf[CACHE_MAX], tmp[4096 + 64];
	int n = pgt__calib_format(c, boot_id, buf, sizeof(buf)), fd, ret = 0;

	if (n < 0)
		return n;
	if (snprintf(tmp, sizeof(tmp), "%s.%ld.%u", path, (long)getpid(),
		     atomic_fetch_add(&seq, 1)) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	errno = 0;
	if (write(fd, buf, (size_t)n) != n)
		ret = errno ? -errno : -EIO;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}
