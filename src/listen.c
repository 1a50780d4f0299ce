// SPDX-License-Identifier: MIT
/*
 * Listening sockets: one per distinct address; the server{} blocks that
 * listen there form an SNI group whose first member is the default server
 * (as nginx). Bind errors are worded as nginx words them.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "gw/log.h"
#include "gw/worker.h"

static bool same_addr(const struct gw_listen *a, const struct gw_listen *b)
{
	return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static int open_socket(const struct gw_listen *l, char **err)
{
	const char *what = "socket()";
	int fd, one = 1, e;

	fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	what = "setsockopt(SO_REUSEPORT)";
	if (l->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		goto fail;
	if (l->addr.ss_family == AF_INET6) {
		int v6only = l->ipv6only ? 1 : 0;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	what = "bind()";
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen))
		goto fail;
	what = "listen()";
	if (listen(fd, l->backlog > 0 ? l->backlog : 511))
		goto fail;
	return fd;
fail:
	e = errno;
	/* nginx's wording: bind() to 127.0.0.1:443 failed (98: Address already in use) */
	if (asprintf(err, "%s:%d: %s to %s failed (%d: %s)", l->file ? l->file : "?", l->line, what,
		     l->text, e, strerror(e)) < 0)
		*err = NULL;
	if (fd >= 0)
		close(fd);
	return -e;
}

int listeners_open(const struct gw_config *cfg, bool bind_sockets, struct listener **out, size_t *n,
		   char **err)
{
	struct listener *ls = NULL;
	struct tls_srv **tsrv;
	size_t nl = 0;
	int ret = 0;

	*err = NULL;
	tsrv = calloc(cfg->nservers ? cfg->nservers : 1, sizeof(*tsrv));
	if (!tsrv)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nservers; i++) {
		ret = tls_srv_new(&cfg->servers[i], &tsrv[i], err);
		if (ret)
			goto fail;
	}
	for (size_t i = 0; i < cfg->nservers; i++) {
		const struct gw_server *s = &cfg->servers[i];

		for (size_t j = 0; j < s->nlistens; j++) {
			const struct gw_listen *l = &s->listens[j];
			struct listener *x = NULL;

			for (size_t k = 0; k < nl; k++)
				if (same_addr(ls[k].listen, l))
					x = &ls[k];
			if (x && tls_srv_server(x->group[0])->mode != s->mode) {
				if (asprintf(err,
					     "%s:%d: \"%s\" is used by an http and a stream server",
					     l->file, l->line, l->text) < 0)
					*err = NULL;
				ret = -EINVAL;
				goto fail;
			}
			if (!x) {
				struct listener *nls = realloc(ls, (nl + 1) * sizeof(*ls));

				if (!nls) {
					ret = -ENOMEM;
					goto fail;
				}
				ls = nls;
				x = &ls[nl++];
				memset(x, 0, sizeof(*x));
				x->fd = -1;
				x->listen = l;
			}
			struct tls_srv **g = realloc(x->group, (x->ngroup + 1) * sizeof(*g));
			if (!g) {
				ret = -ENOMEM;
				goto fail;
			}
			x->group = g;
			x->group[x->ngroup++] = tsrv[i];
			if (l->default_server && x->ngroup > 1) {
				/* "listen ... default_server": the group's default server */
				memmove(&x->group[1], &x->group[0], (x->ngroup - 1) * sizeof(*g));
				x->group[0] = tsrv[i];
				x->listen = l;
			}
		}
	}
	for (size_t k = 0; k < nl; k++) {
		ret = tls_srv_group(ls[k].group, ls[k].ngroup);
		if (ret)
			goto fail;
		if (!bind_sockets)
			continue;
		ls[k].fd = open_socket(ls[k].listen, err);
		if (ls[k].fd < 0) {
			ret = ls[k].fd;
			goto fail;
		}
	}
	/* tsrv[] entries are now owned through the groups (freed by listeners_close) */
	free(tsrv);
	*out = ls;
	*n = nl;
	return 0;
fail:
	for (size_t k = 0; k < nl; k++) {
		if (ls[k].fd >= 0)
			close(ls[k].fd);
		free(ls[k].group);
	}
	free(ls);
	for (size_t i = 0; i < cfg->nservers; i++)
		tls_srv_free(tsrv[i]);
	free(tsrv);
	if (!*err && asprintf(err, "%s", strerror(-ret)) < 0)
		*err = NULL;
	return ret;
}

void listeners_close(struct listener *ls, size_t n)
{
	/* each tls_srv is in the group of every address its server listens on */
	struct tls_srv **seen = NULL;
	size_t nseen = 0;

	for (size_t k = 0; k < n; k++) {
		if (ls[k].fd >= 0)
			close(ls[k].fd);
		for (size_t g = 0; g < ls[k].ngroup; g++) {
			bool dup = false;

			for (size_t s = 0; s < nseen; s++)
				dup |= seen[s] == ls[k].group[g];
			if (dup)
				continue;
			struct tls_srv **ns = realloc(seen, (nseen + 1) * sizeof(*ns));
			if (!ns)
				continue; /* leak rather than double free */
			seen = ns;
			seen[nseen++] = ls[k].group[g];
		}
		free(ls[k].group);
	}
	for (size_t s = 0; s < nseen; s++)
		tls_srv_free(seen[s]);
	free(seen);
	free(ls);
}
