/* SPDX-License-Identifier: MIT */
/*
 * Which mappings of this process are guest RAM: by the sizes QEMU's command
 * line announces (-m, memory-backend-* size=), or by PGT_ATTACH_RAM rules
 * (name glob and size). The command line and the rules are parsed with
 * explicit lengths and bounds (a fuzz target feeds them arbitrary bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tools/attach/attach_pvt.h"

/* ---- sizes ---- */

int pgt_attach__parse_size(const char *s, size_t len, uint64_t unit, uint64_t *out)
{
	static const char suffix[] = "BKMGTPE";
	uint64_t whole = 0, frac = 0, fscale = 1, mult = unit;
	size_t i = 0;
	const char *x;

	if (!s || !len || !out)
		return -EINVAL;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(s[i] - '0');
	}
	if (!i)
		return -EINVAL;
	if (i < len && s[i] == '.') {
		/* QEMU takes "1.5G"; a fraction of a byte is not a size */
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
			if (fscale >= 1000000000000ULL)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(s[i] - '0');
			fscale *= 10;
		}
	}
	if (i < len) {
		char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];

		x = c ? memchr(suffix, c, sizeof(suffix) - 1) : NULL;
		if (!x || i + 1 != len)
			return -EINVAL;
		mult = 1ULL << (10 * (x - suffix));
	}
	if (whole > UINT64_MAX / mult)
		return -EINVAL;
	if (frac) {
		unsigned __int128 f = (unsigned __int128)frac * mult;

		if (f % fscale || whole * mult > UINT64_MAX - (uint64_t)(f / fscale))
			return -EINVAL;
		*out = whole * mult + (uint64_t)(f / fscale);
	} else {
		*out = whole * mult;
	}
	return 0;
}

/* The value of key @key in a QEMU "a=b,c=d" option list, or NULL. */
static const char *opt_value(const char *s, size_t len, const char *key, size_t *vlen)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < len;) {
		size_t e = i;

		while (e < len && s[e] != ',')
			e++;
		if (e - i > klen && !memcmp(s + i, key, klen) && s[i + klen] == '=') {
			*vlen = e - i - klen - 1;
			return s + i + klen + 1;
		}
		i = e + 1;
	}
	return NULL;
}

static bool has_opt(const char *s, size_t len, const char *key)
{
	size_t vlen;

	return opt_value(s, len, key, &vlen) != NULL;
}

/* "-object" value: a memory backend's size, 1; not a backend, 0; -EBADMSG. */
static int backend_size(const char *v, size_t len, uint64_t *size)
{
	const char *type, *sz;
	size_t tlen, slen;

	if (len && v[0] == '{') {
		/* the JSON form libvirt uses */
		struct json_tokener *tok = json_tokener_new();
		json_object *o, *t = NULL, *s = NULL;
		int ret = -EBADMSG;

		if (!tok || len > INT32_MAX) {
			json_tokener_free(tok);
			return -EBADMSG;
		}
		o = json_tokener_parse_ex(tok, v, (int)len);
		json_tokener_free(tok);
		if (!o || !json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, "qom-type", &t) ||
		    !json_object_is_type(t, json_type_string)) {
			json_object_put(o);
			return o ? 0 : -EBADMSG;
		}
		if (strncmp(json_object_get_string(t), "memory-backend-", 15)) {
			json_object_put(o);
			return 0;
		}
		if (json_object_object_get_ex(o, "size", &s)) {
			if (json_object_is_type(s, json_type_int) && json_object_get_int64(s) > 0) {
				*size = (uint64_t)json_object_get_int64(s);
				ret = 1;
			} else if (json_object_is_type(s, json_type_string) &&
				   !pgt_attach__parse_size(json_object_get_string(s),
							   (size_t)json_object_get_string_len(s), 1,
							   size)) {
				ret = 1;
			}
		}
		json_object_put(o);
		return ret;
	}
	type = opt_value(v, len, "qom-type", &tlen);
	if (!type) { /* "memory-backend-ram,id=..." */
		type = v;
		tlen = 0;
		while (tlen < len && v[tlen] != ',')
			tlen++;
	}
	if (tlen < 15 || memcmp(type, "memory-backend-", 15))
		return 0;
	sz = opt_value(v, len, "size", &slen);
	if (!sz || pgt_attach__parse_size(sz, slen, 1, size))
		return -EBADMSG;
	return 1;
}

int pgt_attach__cmdline_sizes(const char *cmd, size_t len, uint64_t *sizes, unsigned cap)
{
	uint64_t ram = 0, backend[ATT_MAX_SIZES];
	unsigned nb = 0;
	bool have_ram = false, ram_in_backends = false;
	const char *prev = NULL;
	size_t plen = 0;

	if (!cmd || (!sizes && cap))
		return -EINVAL;
	for (size_t i = 0; i < len;) {
		const char *arg = cmd + i;
		size_t alen = 0;

		while (i + alen < len && cmd[i + alen])
			alen++;
		i += alen + 1;
		if (prev) {
			/* QEMU takes "-opt" and "--opt" alike */
			const char *o = prev + (plen > 1 && prev[1] == '-');
			size_t olen = plen - (size_t)(o - prev);

			if (olen == 2 && !memcmp(o, "-m", 2)) {
				const char *v = arg;
				size_t vlen = 0;

				if (has_opt(arg, alen, "size")) {
					v = opt_value(arg, alen, "size", &vlen);
				} else {
					while (vlen < alen && arg[vlen] != ',')
						vlen++;
				}
				/* -m takes MiB when no unit is given */
				if (pgt_attach__parse_size(v, vlen, 1ULL << 20, &ram))
					return -EBADMSG;
				have_ram = true;
			} else if (olen == 7 && !memcmp(o, "-object", 7)) {
				uint64_t s;
				int r = backend_size(arg, alen, &s);

				if (r < 0)
					return r;
				if (r && nb < ATT_MAX_SIZES)
					backend[nb++] = s;
			} else if ((olen == 8 && !memcmp(o, "-machine", 8)) ||
				   (olen == 2 && !memcmp(o, "-M", 2))) {
				if (has_opt(arg, alen, "memory-backend"))
					ram_in_backends = true;
			} else if (olen == 5 && !memcmp(o, "-numa", 5)) {
				if (has_opt(arg, alen, "memdev"))
					ram_in_backends = true;
			}
			prev = NULL;
			continue;
		}
		if (alen > 1 && arg[0] == '-')
			prev = arg, plen = alen;
	}
	{
		unsigned n = 0;

		/* machine RAM made of backends is not a mapping of its own */
		if (have_ram && !ram_in_backends) {
			if (n < cap)
				sizes[n] = ram;
			n++;
		} else if (!have_ram && !ram_in_backends && !nb) {
			/* QEMU's default: 128 MiB */
			if (n < cap)
				sizes[n] = 128ULL << 20;
			n++;
		}
		for (unsigned k = 0; k < nb; k++) {
			if (n < cap)
				sizes[n] = backend[k];
			n++;
		}
		return (int)n;
	}
}

int pgt_attach__rules(char *copy, char **globs, uint64_t *sizes, unsigned cap)
{
	unsigned n = 0;
	char *save = NULL, *tok;

	if (!copy)
		return -EINVAL;
	if (!*copy)
		return -EINVAL;
	for (char *p = copy; *p; p++)
		if (*p == ',' && (p == copy || p[1] == ',' || !p[1]))
			return -EINVAL; /* an empty rule */
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *at = strrchr(tok, '@');

		if (n == cap)
			return -EINVAL;
		sizes[n] = 0;
		if (at) {
			if (pgt_attach__parse_size(at + 1, strlen(at + 1), 1, &sizes[n]) || !sizes[n])
				return -EINVAL;
			*at = 0;
		}
		globs[n] = *tok ? tok : (char *)"*";
		n++;
	}
	return n ? (int)n : -EINVAL;
}

/* ---- mappings ---- */

static bool private_anon(const struct pgtool_mapping *m)
{
	/* "" or a name given with prctl(PR_SET_VMA_ANON_NAME); not [heap] */
	return (m->flags & PGTOOL_MAP_ANON) && !(m->flags & PGTOOL_MAP_SHARED) &&
	       (!m->name[0] || !strncmp(m->name, "[anon:", 6));
}

/* Memory a VMM could hand a guest: writable data, not code or stacks. */
static bool ram_like(const struct pgtool_mapping *m)
{
	if (!(m->flags & PGTOOL_MAP_WRITE) || (m->flags & (PGTOOL_MAP_EXEC | PGTOOL_MAP_SPECIAL)))
		return false;
	return private_anon(m) || (m->flags & (PGTOOL_MAP_SHARED | PGTOOL_MAP_HUGETLB));
}

/*
 * Whether @b continues @a: one mapping the kernel keeps as several VMAs
 * (part of it mlocked, or madvised). Only for a file (memfd, hugetlbfs,
 * shm): its inode and offsets say so. Adjacent anonymous VMAs say nothing
 * (a thread stack or a heap can end where guest RAM begins): never joined.
 */
static bool continues(const struct att_candidate *a, const struct pgtool_mapping *b)
{
	if (!a->ino)
		return false;
	const uint32_t kind = PGTOOL_MAP_SHARED | PGTOOL_MAP_HUGETLB | PGTOOL_MAP_ANON |
			      PGTOOL_MAP_WRITE | PGTOOL_MAP_EXEC;

	return a->end == b->start && (a->flags & kind) == (b->flags & kind) &&
	       (a->flags & PGTOOL_MAP_UFFD) == (b->flags & PGTOOL_MAP_UFFD) &&
	       a->page_size == (b->page_size ? b->page_size : 4096) && !strcmp(a->name, b->name) &&
	       a->ino == b->inode && b->offset == a->offset + (a->end - a->start);
}

static bool rule_match(char **globs, const uint64_t *rsizes, int nrules,
		       const struct att_candidate *c, bool anon)
{
	for (int r = 0; r < nrules; r++) {
		bool name_ok;

		if (rsizes[r] && rsizes[r] != c->end - c->start)
			continue;
		/* "[anon]" would be a bracket expression to fnmatch: a keyword */
		if (!strcmp(globs[r], "[anon]"))
			name_ok = anon && !c->name[0];
		else
			name_ok = !fnmatch(globs[r], c->name, 0);
		if (name_ok)
			return true;
	}
	return false;
}

int pgt_attach__select(const pgtool_procmap *pm, const char *rules, const uint64_t *sizes,
		       unsigned nsizes, struct att_candidate *out, unsigned cap)
{
	char *copy = NULL, *globs[PGT_ATTACH_MAX_REGIONS];
	uint64_t rsizes[PGT_ATTACH_MAX_REGIONS];
	bool used[ATT_MAX_SIZES] = { false };
	int nrules = 0;
	unsigned n = 0;
	size_t count = pgtool_procmap_count(pm);

	if (!pm || (!out && cap) || nsizes > ATT_MAX_SIZES)
		return -EINVAL;
	if (rules) {
		copy = strdup(rules);
		if (!copy)
			return -ENOMEM;
		nrules = pgt_attach__rules(copy, globs, rsizes, PGT_ATTACH_MAX_REGIONS);
		if (nrules < 0) {
			free(copy);
			return nrules;
		}
	}
	if (!rules && !nsizes) {
		/* nothing said: what pgtrack-numa would guess */
		size_t idx[PGT_ATTACH_MAX_REGIONS];
		int k = pgtool_procmap_guess_guest(pm, 0, idx, PGT_ATTACH_MAX_REGIONS);

		for (int i = 0; i < k && i < PGT_ATTACH_MAX_REGIONS; i++) {
			const struct pgtool_mapping *m = pgtool_procmap_get(pm, idx[i]);

			if (m->flags & PGTOOL_MAP_EXEC)
				continue;
			if (n < cap)
				out[n] = (struct att_candidate){
					.start = m->start, .end = m->end, .offset = m->offset,
					.page_size = m->page_size ? m->page_size : 4096,
					.flags = m->flags, .ino = m->inode,
					.dev = makedev(m->dev_major, m->dev_minor),
				};
			if (n < cap)
				snprintf(out[n].name, sizeof(out[n].name), "%s", m->name);
			n++;
		}
		return (int)n;
	}
	for (size_t i = 0; i < count;) {
		const struct pgtool_mapping *m = pgtool_procmap_get(pm, i);
		struct att_candidate c = {
			.start = m->start, .end = m->end, .offset = m->offset,
			.page_size = m->page_size ? m->page_size : 4096, .flags = m->flags,
			.ino = m->inode, .dev = makedev(m->dev_major, m->dev_minor),
		};
		bool ok;

		snprintf(c.name, sizeof(c.name), "%s", m->name);
		for (i++; i < count && continues(&c, pgtool_procmap_get(pm, i)); i++)
			c.end = pgtool_procmap_get(pm, i)->end;
		if (!ram_like(m))
			continue;
		if (rules) {
			ok = rule_match(globs, rsizes, nrules, &c, private_anon(m));
		} else {
			ok = false;
			/* each announced size takes one mapping */
			for (unsigned k = 0; k < nsizes && !ok; k++)
				if (!used[k] && sizes[k] == c.end - c.start)
					ok = used[k] = true;
		}
		if (!ok)
			continue;
		if (n < cap)
			out[n] = c;
		n++;
	}
	free(copy);
	return (int)n;
}

int pgt_attach__find_fd(const struct att_candidate *c)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while (found < 0 && (e = readdir(d))) {
		struct stat st;
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name || fd < 0 || fd == dirfd(d))
			continue;
		if (fstat((int)fd, &st) || (uint64_t)st.st_ino != c->ino ||
		    (uint64_t)st.st_dev != c->dev)
			continue;
		found = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
	}
	closedir(d);
	return found;
}
