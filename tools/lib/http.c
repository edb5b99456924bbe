/* SPDX-License-Identifier: MIT */
/*
 * A read-only HTTP endpoint on 127.0.0.1 for the tools' /metrics and JSON
 * (libmicrohttpd does the HTTP; this file only binds and dispatches).
 *
 * The socket is bound here, not by MHD_start_daemon: libmicrohttpd reports
 * a failed start without saying why, and "the port is taken" is the one
 * failure a user can act on. Port 0 takes any free port; the caller learns
 * which from @bound.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgt_config.h"
#include "tools/lib/pgtool.h"

#if PGT_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

struct pgtool_http {
	struct MHD_Daemon *mhd;
	int sock;
	pgtool_http_fn fn;
	void *arg;
};

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type,
				 char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *data_len, void **req_state)
{
	struct pgtool_http *h = cls;
	struct pgtool_http_reply r = { .status = 500, .type = "text/plain; charset=utf-8" };

	(void)version;
	(void)data;
	(void)req_state;
	/* a body would be ignored: refuse uploads rather than read them */
	if ((strcmp(method, "GET") && strcmp(method, "HEAD")) || (data_len && *data_len)) {
		char *msg = strdup("only GET and HEAD\n");

		return msg ? send_body(c, MHD_HTTP_METHOD_NOT_ALLOWED, r.type, msg, strlen(msg))
			   : MHD_NO;
	}
	if (h->fn(h->arg, url, &r) || !r.body) {
		free(r.body);
		r.body = strdup("internal error\n");
		r.len = r.body ? strlen(r.body) : 0;
		r.status = 500;
		r.type = "text/plain; charset=utf-8";
		if (!r.body)
			return MHD_NO;
	}
	return send_body(c, r.status, r.type, r.body, r.len);
}

int pgtool_http_start(int port, pgtool_http_fn fn, void *arg, struct pgtool_http **out,
		      int *bound, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	struct pgtool_http *h;
	int one = 1, e;

	if (!fn || !out || port < 0 || port > 65535) {
		snprintf(err, errlen, "bad port %d (0..65535)", port);
		return -EINVAL;
	}
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->fn = fn;
	h->arg = arg;
	h->sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->sock < 0) {
		e = errno;
		snprintf(err, errlen, "socket: %s", strerror(e));
		free(h);
		return -e;
	}
	setsockopt(h->sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(h->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		e = errno;
		if (e == EADDRINUSE)
			snprintf(err, errlen, "127.0.0.1:%d is already in use (choose another port, "
				 "or 0 for a free one)", port);
		else
			snprintf(err, errlen, "cannot bind 127.0.0.1:%d: %s", port, strerror(e));
		goto fail;
	}
	if (listen(h->sock, 16) || getsockname(h->sock, (struct sockaddr *)&sa, &salen)) {
		e = errno;
		snprintf(err, errlen, "cannot listen on 127.0.0.1:%d: %s", port, strerror(e));
		goto fail;
	}
	h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
				  on_request, h, MHD_OPTION_LISTEN_SOCKET, h->sock,
				  MHD_OPTION_CONNECTION_LIMIT, 16U,
				  MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
	if (!h->mhd) {
		e = EIO;
		snprintf(err, errlen, "libmicrohttpd did not start on 127.0.0.1:%d", port);
		goto fail;
	}
	if (bound)
		*bound = ntohs(sa.sin_port);
	*out = h;
	return 0;
fail:
	close(h->sock);
	free(h);
	return -e;
}

void pgtool_http_stop(struct pgtool_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->mhd);
	close(h->sock);
	free(h);
}

#else /* !PGT_HAVE_MHD */

int pgtool_http_start(int port, pgtool_http_fn fn, void *arg, struct pgtool_http **out,
		      int *bound, char *err, size_t errlen)
{
	(void)port;
	(void)fn;
	(void)arg;
	(void)out;
	(void)bound;
	snprintf(err, errlen, "built without libmicrohttpd: no HTTP endpoint");
	return -EOPNOTSUPP;
}

void pgtool_http_stop(struct pgtool_http *h)
{
	(void)h;
}

#endif
