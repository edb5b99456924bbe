/* SPDX-License-Identifier: MIT */
/*
 * The state file of libpgtrack-attach, read by other tools.
 *
 * The file comes from another process, possibly another user's (root runs
 * pgtrack-numa on an unprivileged QEMU): it is read with a size bound,
 * parsed by json-c with an explicit length, and every member is checked for
 * its type and copied with a bound. A file naming another process, or an
 * earlier process that had the same pid, is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tools/lib/pgtool.h"

/* ---- reading members ---- */

static json_object *member(json_object *o, const char *key)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* A number member: 0 absent or null (*out untouched), 1 found, -1 wrong type. */
static int num(json_object *o, const char *key, double *out)
{
	json_object *v = member(o, key);

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return -1;
	*out = json_object_get_double(v);
	return 1;
}

static int u64(json_object *o, const char *key, uint64_t *out)
{
	json_object *v = member(o, key);

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -1;
	/* json-c keeps integers above INT64_MAX as uint64 */
	*out = json_object_get_uint64(v);
	if (!*out && json_object_get_int64(v) < 0)
		return -1;
	return 1;
}

/* Signed byte count where null or absent means "unknown" (-1). */
static int maybe_bytes(json_object *o, const char *key, int64_t *out)
{
	uint64_t v = 0;
	int r = u64(o, key, &v);

	if (r < 0)
		return -1;
	*out = r && v <= INT64_MAX ? (int64_t)v : -1;
	return 0;
}

static int str(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v = member(o, key);
	const char *s;
	size_t n;

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n >= len)
		n = len - 1;
	for (size_t i = 0; i < n; i++) /* a terminal reads these: no control bytes */
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[n] = 0;
	return 1;
}

static int region(json_object *o, struct pgtool_attach_region *r)
{
	json_object *rate, *win, *numa, *nodes;
	uint64_t size = 0;

	if (!json_object_is_type(o, json_type_object))
		return -1;
	memset(r, 0, sizeof(*r));
	r->touched_bytes = r->resident_bytes = r->released_bytes = -1;
	for (int i = 0; i < 3; i++)
		r->dirty_rate[i] = -1;
	if (str(o, "name", r->name, sizeof(r->name)) < 0 ||
	    str(o, "mapping", r->mapping, sizeof(r->mapping)) < 0 ||
	    str(o, "backing", r->backing, sizeof(r->backing)) < 0 ||
	    str(o, "dirty_method", r->dirty_method, sizeof(r->dirty_method)) < 0 ||
	    u64(o, "start", &r->start) != 1 || u64(o, "size", &size) != 1 ||
	    u64(o, "page_size", &r->page_size) < 0 ||
	    u64(o, "dirty_bytes_total", &r->dirty_bytes_total) < 0 ||
	    maybe_bytes(o, "touched_bytes", &r->touched_bytes) ||
	    maybe_bytes(o, "resident_bytes", &r->resident_bytes) ||
	    maybe_bytes(o, "released_bytes", &r->released_bytes) ||
	    u64(o, "vmm_discarded_bytes", &r->discarded_bytes) < 0 ||
	    u64(o, "reclaimed_bytes", &r->reclaimed_bytes) < 0)
		return -1;
	if (r->start + size < r->start)
		return -1;
	r->end = r->start + size;
	rate = member(o, "dirty_rate_bytes_per_second");
	if (rate) {
		static const char *const keys[3] = { "1s", "10s", "60s" };

		if (!json_object_is_type(rate, json_type_object))
			return -1;
		for (int i = 0; i < 3; i++)
			if (num(rate, keys[i], &r->dirty_rate[i]) < 0)
				return -1;
	}
	win = member(o, "written_bytes");
	if (win) {
		size_t n;

		if (!json_object_is_type(win, json_type_array))
			return -1;
		n = json_object_array_length(win);
		for (size_t i = 0; i < n && r->nwindows < PGTOOL_ATTACH_WINDOWS; i++) {
			json_object *w = json_object_array_get_idx(win, i);
			double s = 0;
			uint64_t b = 0;

			if (!json_object_is_type(w, json_type_object) ||
			    num(w, "within_seconds", &s) != 1 || u64(w, "bytes", &b) != 1 || !(s > 0))
				return -1;
			r->window_s[r->nwindows] = s;
			r->written_bytes[r->nwindows++] = b;
		}
	}
	numa = member(o, "numa");
	if (numa && !json_object_is_type(numa, json_type_null)) {
		if (!json_object_is_type(numa, json_type_object))
			return -1;
		nodes = member(numa, "nodes");
		if (nodes) {
			size_t n;

			if (!json_object_is_type(nodes, json_type_array))
				return -1;
			n = json_object_array_length(nodes);
			for (size_t i = 0; i < n; i++) {
				json_object *x = json_object_array_get_idx(nodes, i);
				uint64_t node = 0, b = 0;

				if (!json_object_is_type(x, json_type_object) ||
				    u64(x, "node", &node) != 1 || u64(x, "resident_bytes", &b) != 1)
					return -1;
				if (node >= PGT_MAX_NODES)
					continue;
				r->node_bytes[node] = b;
				if (node + 1 > r->nnodes)
					r->nnodes = (unsigned)node + 1;
			}
		}
	}
	return 0;
}

int pgtool_attach_state_parse(const char *text, size_t len, struct pgtool_attach_state *out)
{
	struct json_tokener *tok;
	json_object *root, *regions;
	char schema[64] = "";
	uint64_t pid = 0, port = 0;
	int ret = -EBADMSG;

	if (!text || !out || len > PGTOOL_ATTACH_STATE_MAX || len > INT32_MAX)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, text, (int)len);
	/* the whole text, one document: trailing garbage is a broken file */
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    (size_t)json_tokener_get_parse_end(tok) < len) {
		json_tokener_free(tok);
		json_object_put(root);
		return -EBADMSG;
	}
	json_tokener_free(tok);
	if (!json_object_is_type(root, json_type_object) ||
	    str(root, "schema", schema, sizeof(schema)) != 1 || strcmp(schema, PGTOOL_ATTACH_SCHEMA))
		goto out;
	if (u64(root, "pid", &pid) != 1 || !pid || pid > INT32_MAX ||
	    u64(root, "starttime", &out->starttime) < 0 || num(root, "time", &out->time) < 0 ||
	    str(root, "state", out->state, sizeof(out->state)) != 1 ||
	    str(root, "message", out->message, sizeof(out->message)) < 0 ||
	    u64(root, "http_port", &port) < 0 || port > 65535)
		goto out;
	out->pid = (int)pid;
	out->http_port = (int)port;
	regions = member(root, "regions");
	if (regions) {
		size_t n;

		if (!json_object_is_type(regions, json_type_array))
			goto out;
		n = json_object_array_length(regions);
		for (size_t i = 0; i < n; i++) {
			struct pgtool_attach_region r;

			if (region(json_object_array_get_idx(regions, i), &r))
				goto out;
			if (out->nregions < PGTOOL_ATTACH_MAX_REGIONS)
				out->region[out->nregions++] = r;
		}
	}
	ret = 0;
out:
	json_object_put(root);
	return ret;
}

/* ---- finding the file ---- */

int pgtool_attach_dir(unsigned i, unsigned uid, const char *attach_dir, const char *xdg,
		      char *buf, size_t len)
{
	char run_user[64], tmp[64];
	const char *cand[4];
	unsigned k = 0;
	int n;

	if (!buf || !len)
		return -EINVAL;
	if (attach_dir && *attach_dir)
		cand[k++] = attach_dir;
	if (!uid)
		cand[k++] = "/run/pgtrack";
	if (xdg && *xdg == '/') {
		n = snprintf(run_user, sizeof(run_user), "%s/pgtrack", xdg);
		if (n > 0 && (size_t)n < sizeof(run_user))
			cand[k++] = run_user;
	}
	snprintf(tmp, sizeof(tmp), "/tmp/pgtrack-%u", uid);
	cand[k++] = tmp;
	if (i >= k)
		return -ENOENT;
	n = snprintf(buf, len, "%s", cand[i]);
	return n < 0 || (size_t)n >= len ? -ENOBUFS : n;
}

int pgtool_proc_starttime(int pid, uint64_t *out)
{
	char path[64], buf[1024], *p, *end;
	unsigned long long v;
	ssize_t n;
	int fd;

	if (pid < 0 || !out)
		return -EINVAL;
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/stat");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	buf[n] = 0;
	/* the name may hold spaces and parentheses: count after the last ')' */
	p = strrchr(buf, ')');
	if (!p)
		return -EBADMSG;
	p++;
	for (int field = 3; field < 22; field++) {
		p += strspn(p, " ");
		p += strcspn(p, " ");
		if (!*p)
			return -EBADMSG;
	}
	errno = 0;
	v = strtoull(p, &end, 10);
	if (errno || end == p)
		return -EBADMSG;
	*out = v;
	return 0;
}

/* PGT_ATTACH_DIR, XDG_RUNTIME_DIR and the effective uid of process @pid. */
static void target_env(int pid, char *dir, char *xdg, size_t dlen, unsigned *uid)
{
	char path[64], line[256];
	char *env;
	ssize_t n;
	FILE *f;
	int fd;

	dir[0] = xdg[0] = 0;
	*uid = (unsigned)geteuid();
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			unsigned r, e;

			if (sscanf(line, "Uid: %u %u", &r, &e) == 2) {
				*uid = e;
				break;
			}
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	env = malloc(65536);
	n = env ? read(fd, env, 65535) : -1;
	close(fd);
	if (n > 0) {
		env[n] = 0;
		for (char *p = env; p < env + n; p += strlen(p) + 1) {
			if (!strncmp(p, "PGT_ATTACH_DIR=", 15))
				snprintf(dir, dlen, "%s", p + 15);
			else if (!strncmp(p, "XDG_RUNTIME_DIR=", 16))
				snprintf(xdg, dlen, "%s", p + 16);
		}
	}
	free(env);
}

static int read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), ret;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (off_t)PGTOOL_ATTACH_STATE_MAX) {
		close(fd);
		return -EBADMSG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	ret = got == (size_t)st.st_size ? 0 : -EBADMSG;
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	buf[got] = 0;
	*text = buf;
	*len = got;
	return 0;
}

int pgtool_attach_state_read(int pid, struct pgtool_attach_state *out)
{
	char dir[512], path[600], env[512], xdg[512];
	uint64_t start;
	unsigned uid;
	int ret, best = -ENOENT;

	if (pid < 0 || !out)
		return -EINVAL;
	if (!pid)
		pid = getpid();
	ret = pgtool_proc_starttime(pid, &start);
	if (ret)
		return ret;
	target_env(pid, env, xdg, sizeof(env), &uid);
	for (unsigned i = 0; pgtool_attach_dir(i, uid, env, xdg, dir, sizeof(dir)) >= 0; i++) {
		char *text = NULL;
		size_t len = 0;

		if ((size_t)snprintf(path, sizeof(path), "%s/attach-%d.json", dir, pid) >= sizeof(path))
			continue;
		ret = read_file(path, &text, &len);
		if (ret == -ENOENT || ret == -ENOTDIR)
			continue;
		if (ret) {
			best = ret;
			continue;
		}
		ret = pgtool_attach_state_parse(text, len, out);
		free(text);
		if (!ret && (out->pid != pid || out->starttime != start))
			ret = -ESTALE;
		if (!ret)
			return 0;
		best = ret;
	}
	return best;
}
