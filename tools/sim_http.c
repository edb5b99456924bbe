/* SPDX-License-Identifier: MIT */
/*
 * pgtrack-sim /metrics: the library's Prometheus rendering plus the
 * simulator's live figures, served by libmicrohttpd on 127.0.0.1 only.
 * We bind the socket ourselves so "port in use" is reported as such
 * (MHD_start_daemon only says it failed) and hand it to libmicrohttpd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgt_config.h"
#include "tools/sim.h"

#if PGT_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

struct sim_http {
	struct MHD_Daemon *d;
	int fd;
	struct sim *s;
};

/* snprintf-style appender that grows the buffer. */
struct text {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void tput(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tput(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = (t->cap + (size_t)n + 1) * 2;
			char *nb = realloc(t->buf, cap);

			if (!nb) {
				t->oom = true;
				return;
			}
			t->buf = nb;
			t->cap = cap;
		}
	}
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
	tput(t, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static char *render(struct sim *s, size_t *len)
{
	struct text t = { 0 };
	struct sample x;
	int64_t need;

	need = pgt_stats_render(s->eng, PGT_STATS_PROMETHEUS, NULL, 0);
	if (need < 0)
		return NULL;
	/* slack: counters may grow digits between sizing and rendering */
	t.cap = (size_t)need + 8192;
	t.buf = malloc(t.cap);
	if (!t.buf)
		return NULL;
	need = pgt_stats_render(s->eng, PGT_STATS_PROMETHEUS, t.buf, t.cap);
	if (need < 0) {
		free(t.buf);
		return NULL;
	}
	t.len = (size_t)need;
	pthread_mutex_lock(&s->mlock);
	x = s->last;
	pthread_mutex_unlock(&s->mlock);
	gauge(&t, "pgtrack_sim_elapsed_seconds", "Seconds since the simulated guest started.",
	      sim_elapsed(s));
	gauge(&t, "pgtrack_sim_touched_bytes", "Guest memory touched at the last sample.",
	      (double)x.touched_bytes);
	gauge(&t, "pgtrack_sim_dirty_bytes_per_second", "Dirty rate over the last interval.",
	      x.dirty_rate);
	gauge(&t, "pgtrack_sim_released_bytes", "Guest memory released to the host.",
	      (double)x.released);
	gauge(&t, "pgtrack_sim_resident_bytes", "Guest memory resident on the host.",
	      (double)x.resident);
	gauge(&t, "pgtrack_sim_guest_bytes", "Memory the guest holds (configured - released).",
	      (double)x.guest_bytes);
	gauge(&t, "pgtrack_sim_host_rss_bytes", "VmRSS of the simulator process.",
	      (double)x.host_rss);
	gauge(&t, "pgtrack_sim_host_hugetlb_bytes", "HugetlbPages of the simulator process.",
	      (double)x.host_hugetlb);
	gauge(&t, "pgtrack_sim_cgroup_bytes", "Memory usage of the simulator's cgroup.",
	      (double)x.cg_usage);
	gauge(&t, "pgtrack_sim_hugepages_free", "HugePages_Free of the default pool.",
	      (double)x.hp_free);
	gauge(&t, "pgtrack_sim_balloon_target_bytes", "Memory target set (0: none).",
	      (double)x.balloon_target);
	if (t.oom) {
		free(t.buf);
		return NULL;
	}
	*len = t.len;
	return t.buf;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
			     char *body, size_t len, bool owned)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct sim *s = cls;
	static char not_found[] = "not found: try /metrics\n";
	static char bad_method[] = "method not allowed\n";
	static char failed[] = "rendering failed\n";
	static char starting[] = "the guest is starting\n";
	size_t len = 0;
	char *body;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", bad_method,
			     strlen(bad_method), false);
	if (strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", not_found, strlen(not_found),
			     false);
	if (!atomic_load(&s->ready))
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", starting,
			     strlen(starting), false);
	body = render(s, &len);
	if (!body)
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", failed,
			     strlen(failed), false);
	return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len, true);
}

int sim_http_start(struct sim *s, int port, struct sim_http **out, int *bound, char *err,
		   size_t n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t alen = sizeof(a);
	struct sim_http *h;
	int one = 1, fd;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, n, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		int e = errno;

		close(fd);
		if (e == EADDRINUSE)
			snprintf(err, n, "port %d on 127.0.0.1 is in use (pick another, or 0 for any "
				 "free port)", port);
		else if (e == EACCES)
			snprintf(err, n, "port %d on 127.0.0.1: permission denied (ports below 1024 "
				 "need privileges)", port);
		else
			snprintf(err, n, "bind 127.0.0.1:%d: %s", port, strerror(e));
		return -1;
	}
	if (listen(fd, 16) || getsockname(fd, (struct sockaddr *)&a, &alen)) {
		snprintf(err, n, "listen on 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		snprintf(err, n, "out of memory");
		return -1;
	}
	h->fd = fd;
	h->s = s;
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
				handler, s, MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, 8U,
				MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, n, "libmicrohttpd could not start on 127.0.0.1:%d", port);
		close(fd);
		free(h);
		return -1;
	}
	*bound = ntohs(a.sin_port);
	*out = h;
	return 0;
}

void sim_http_stop(struct sim_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	close(h->fd);
	free(h);
}

#else /* !PGT_HAVE_MHD */

int sim_http_start(struct sim *s, int port, struct sim_http **out, int *bound, char *err,
		   size_t n)
{
	(void)s;
	(void)port;
	(void)out;
	(void)bound;
	snprintf(err, n, "this pgtrack-sim was built without libmicrohttpd");
	return -1;
}

void sim_http_stop(struct sim_http *h)
{
	(void)h;
}

#endif
