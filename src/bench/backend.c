// SPDX-License-Identifier: MIT
/*
 * ktlsgw-bench-backend: a small, fast backend for benchmarks (epoll, one thread per core,
 * one shared listening socket with EPOLLEXCLUSIVE).
 *
 * HTTP/1.1 (default), keep-alive unless "Connection: close" (or HTTP/1.0 without keep-alive):
 *   GET|HEAD /size/N  200, Content-Length N, the body pattern of include/gw/bench.h
 *   POST|PUT *        the body (Content-Length or chunked) is read and discarded; 200 with
 *                     the body "<bytes received>\n"
 *   anything else     404
 * --echo / --sink: raw bytes (stream mode): echoed back / discarded. A PROXY protocol v1 or
 * v2 header at the start of a connection is recognised and skipped.
 * --fault KIND[:EVERY]: every EVERY-th response of a thread (default every one) is wrong:
 *   status (500, the right body), length (one byte more than asked), body (first byte
 *   wrong), close (the connection closes half-way through the body). For testing that
 *   ktlsgw-bench counts wrong answers as errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gw/bench.h"

#define RBUF_SIZE (64 * 1024)
#define MAX_HEAD (16 * 1024)

enum be_mode { BE_HTTP, BE_ECHO, BE_SINK };
enum be_fault { FAULT_NONE, FAULT_STATUS, FAULT_LENGTH, FAULT_BODY, FAULT_CLOSE };

enum be_state {
	ST_PROXY,      /* raw modes: looking for a PROXY header */
	ST_HEAD,       /* reading a request head */
	ST_BODY_CL,    /* discarding a Content-Length body */
	ST_CHUNK_SIZE, /* chunked: size line */
	ST_CHUNK_DATA,
	ST_CHUNK_CRLF,
	ST_TRAILER,
	ST_RAW,
};

struct be_conn {
	struct be_conn *prev, *next; /* the thread's connections */
	int fd;
	enum be_state st;
	bool keepalive;
	bool sending;
	bool close_after;
	uint64_t body_left; /* request body still to discard */
	uint64_t received;  /* request body bytes */
	size_t rlen;
	/* response */
	char head[512];
	size_t head_len, head_off;
	uint64_t resp_left; /* pattern body bytes still to send */
	uint64_t resp_off;  /* pattern offset */
	bool corrupt;	    /* FAULT_BODY: first body byte is wrong */
	char small[32];	    /* a non-pattern body (upload answer) */
	size_t small_len, small_off;
	/* raw echo: bytes waiting to go back */
	size_t wpos;
	/*
	 * The last recv() returned less than it could take: the socket is empty. Linux
	 * signals each arrival to an edge-triggered epoll, so the recv() that would only
	 * say EAGAIN is skipped (a syscall per request on the CPU the load shares).
	 */
	bool drained;
	char rbuf[RBUF_SIZE];
};

static enum be_mode mode = BE_HTTP;
static enum be_fault fault = FAULT_NONE;
static unsigned long fault_every = 1;
static int lfd = -1;
static volatile sig_atomic_t stopping;

static void be_close(int ep, struct be_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	if (c->next)
		c->next->prev = c->prev;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static bool fault_now(unsigned long *nresp)
{
	if (fault == FAULT_NONE)
		return false;
	return ++*nresp % fault_every == 0;
}

/* prepare the response to the request whose head is rbuf[0..hlen) */
static void be_respond_pattern(struct be_conn *c, int status, uint64_t len, bool head_only,
			       unsigned long *nresp)
{
	const char *reason = status == 200 ? "OK" : "Not Found";
	bool f = fault_now(nresp);

	uint64_t send_len = len;

	c->corrupt = false;
	if (f && fault == FAULT_STATUS) {
		status = 500;
		reason = "Internal Server Error";
	} else if (f && (fault == FAULT_LENGTH || (fault == FAULT_BODY && !len))) {
		send_len = ++len;
	} else if (f && fault == FAULT_BODY) {
		c->corrupt = true;
	} else if (f && fault == FAULT_CLOSE) {
		/* announce len, send half of it (or, for an empty body, the head only), close */
		send_len = len / 2;
		c->close_after = true;
	}
	c->head_len = (size_t)snprintf(c->head, sizeof(c->head),
				       "HTTP/1.1 %d %s\r\nServer: ktlsgw-bench-backend\r\n"
				       "Content-Length: %llu\r\n%s\r\n",
				       status, reason, (unsigned long long)len,
				       c->keepalive ? "" : "Connection: close\r\n");
	c->head_off = 0;
	if (f && fault == FAULT_CLOSE && !len)
		c->head_len -= 2; /* not even the end of the head */
	c->resp_left = head_only ? 0 : send_len;
	c->resp_off = 0;
	c->small_len = c->small_off = 0;
	c->sending = true;
}

static void be_respond_upload(struct be_conn *c, unsigned long *nresp)
{
	uint64_t n = c->received;
	bool f = fault_now(nresp);
	int status = 200;

	if (f && fault == FAULT_STATUS)
		status = 500;
	else if (f && (fault == FAULT_LENGTH || fault == FAULT_BODY))
		n++;
	c->small_len =
		(size_t)snprintf(c->small, sizeof(c->small), "%llu\n", (unsigned long long)n);
	c->head_len = (size_t)snprintf(c->head, sizeof(c->head),
				       "HTTP/1.1 %d %s\r\nServer: ktlsgw-bench-backend\r\n"
				       "Content-Length: %zu\r\n%s\r\n",
				       status, status == 200 ? "OK" : "Internal Server Error",
				       c->small_len, c->keepalive ? "" : "Connection: close\r\n");
	if (f && fault == FAULT_CLOSE) {
		c->small_len = 0;
		c->close_after = true;
	}
	c->head_off = 0;
	c->small_off = 0;
	c->resp_left = 0;
	c->corrupt = false;
	c->sending = true;
}

/* parse the head rbuf[0..hlen); returns 0 or -EBADMSG */
static int be_parse_head(struct be_conn *c, size_t hlen, unsigned long *nresp)
{
	char *p = c->rbuf, *eol, *sp1, *sp2;
	const char *v;
	size_t vlen;
	bool http10, chunked = false, has_cl = false, is_get, is_head;
	uint64_t cl = 0, size;

	eol = memmem(p, hlen, "\r\n", 2);
	if (!eol)
		return -EBADMSG;
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1)
		return -EBADMSG;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7))
		return -EBADMSG;
	http10 = sp2[8] == '0';
	c->keepalive = !http10;
	for (char *l = eol + 2; l < p + hlen - 2;) {
		char *e = memmem(l, (size_t)(p + hlen - l), "\r\n", 2);
		size_t ll = (size_t)(e - l);

		if (bench_hdr_is(l, ll, "content-length", &v, &vlen)) {
			char tmp[24];

			if (!vlen || vlen >= sizeof(tmp))
				return -EBADMSG;
			memcpy(tmp, v, vlen);
			tmp[vlen] = 0;
			if (bench_parse_size(tmp, &cl) || strspn(tmp, "0123456789") != vlen)
				return -EBADMSG;
			has_cl = true;
		} else if (bench_hdr_is(l, ll, "transfer-encoding", &v, &vlen)) {
			chunked = vlen >= 7 && !strncasecmp(v + vlen - 7, "chunked", 7);
		} else if (bench_hdr_is(l, ll, "connection", &v, &vlen)) {
			if (vlen == 5 && !strncasecmp(v, "close", 5))
				c->keepalive = false;
			else if (vlen == 10 && !strncasecmp(v, "keep-alive", 10))
				c->keepalive = true;
		}
		l = e + 2;
	}
	is_get = sp1 - p == 3 && !memcmp(p, "GET", 3);
	is_head = sp1 - p == 4 && !memcmp(p, "HEAD", 4);
	c->received = 0;
	if (chunked) {
		c->st = ST_CHUNK_SIZE;
		return 0;
	}
	if (has_cl && cl) {
		c->body_left = cl;
		c->st = ST_BODY_CL;
		return 0;
	}
	c->st = ST_HEAD;
	if ((is_get || is_head) && sp2 - sp1 > 6 && !memcmp(sp1 + 1, "/size/", 6)) {
		char tmp[24];
		size_t n = (size_t)(sp2 - sp1 - 7);

		if (n && n < sizeof(tmp)) {
			memcpy(tmp, sp1 + 7, n);
			tmp[n] = 0;
			if (!bench_parse_size(tmp, &size)) {
				be_respond_pattern(c, 200, size, is_head, nresp);
				return 0;
			}
		}
	}
	if (is_get || is_head) {
		be_respond_pattern(c, 404, 0, is_head, nresp);
		return 0;
	}
	be_respond_upload(c, nresp);
	return 0;
}

static void be_consume(struct be_conn *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* run the request parser over rbuf; returns 1 to go on, 0 when it needs more, -1 to close */
static int be_http_step(struct be_conn *c, unsigned long *nresp)
{
	char *e;
	size_t n;

	switch (c->st) {
	case ST_HEAD:
		e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
		if (!e)
			return c->rlen >= MAX_HEAD ? -1 : 0;
		n = (size_t)(e - c->rbuf) + 4;
		if (be_parse_head(c, n, nresp))
			return -1;
		be_consume(c, n);
		return 1;
	case ST_BODY_CL:
		n = c->rlen < c->body_left ? c->rlen : (size_t)c->body_left;
		c->body_left -= n;
		c->received += n;
		be_consume(c, n);
		if (c->body_left)
			return 0;
		c->st = ST_HEAD;
		be_respond_upload(c, nresp);
		return 1;
	case ST_CHUNK_SIZE:
		e = memmem(c->rbuf, c->rlen, "\r\n", 2);
		if (!e)
			return c->rlen > 1024 ? -1 : 0;
		errno = 0;
		c->body_left = strtoull(c->rbuf, NULL, 16);
		if (errno)
			return -1;
		be_consume(c, (size_t)(e - c->rbuf) + 2);
		c->st = c->body_left ? ST_CHUNK_DATA : ST_TRAILER;
		return 1;
	case ST_CHUNK_DATA:
		n = c->rlen < c->body_left ? c->rlen : (size_t)c->body_left;
		c->body_left -= n;
		c->received += n;
		be_consume(c, n);
		if (c->body_left)
			return 0;
		c->st = ST_CHUNK_CRLF;
		return 1;
	case ST_CHUNK_CRLF:
		if (c->rlen < 2)
			return 0;
		if (memcmp(c->rbuf, "\r\n", 2))
			return -1;
		be_consume(c, 2);
		c->st = ST_CHUNK_SIZE;
		return 1;
	case ST_TRAILER:
		e = memmem(c->rbuf, c->rlen, "\r\n", 2);
		if (!e)
			return c->rlen > MAX_HEAD ? -1 : 0;
		n = (size_t)(e - c->rbuf) + 2;
		be_consume(c, n);
		if (n == 2) {
			c->st = ST_HEAD;
			be_respond_upload(c, nresp);
		}
		return 1;
	default:
		return -1;
	}
}

/* send what is pending; 1 done, 0 EAGAIN, -1 close */
static int be_send(struct be_conn *c)
{
	for (;;) {
		struct iovec iov[3];
		int n = 0;
		ssize_t w;
		uint64_t body;

		if (c->head_off < c->head_len) {
			iov[n].iov_base = c->head + c->head_off;
			iov[n++].iov_len = c->head_len - c->head_off;
		}
		if (c->small_off < c->small_len) {
			iov[n].iov_base = c->small + c->small_off;
			iov[n++].iov_len = c->small_len - c->small_off;
		}
		body = c->resp_left;
		if (body > BENCH_PAT_SPAN)
			body = BENCH_PAT_SPAN;
		if (body && c->corrupt && c->resp_off == 0) {
			iov[n].iov_base = "#";
			iov[n++].iov_len = 1;
		} else if (body) {
			iov[n].iov_base = (void *)bench_pat_at(c->resp_off);
			iov[n++].iov_len = (size_t)body;
		}
		if (!n)
			break;
		w = writev(c->fd, iov, n);
		if (w < 0)
			return errno == EAGAIN ? 0 : -1;
		for (int i = 0; i < n && w; i++) {
			size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

			if (iov[i].iov_base == c->head + c->head_off)
				c->head_off += k;
			else if (iov[i].iov_base == c->small + c->small_off)
				c->small_off += k;
			else {
				c->resp_left -= k;
				c->resp_off += k;
			}
			w -= (ssize_t)k;
		}
	}
	c->sending = false;
	if (c->close_after) {
		shutdown(c->fd, SHUT_WR);
		return -1;
	}
	return 1;
}

/* raw modes: skip a PROXY header at the start; 1 decided, 0 needs more, -1 bad */
static int be_proxy_step(struct be_conn *c)
{
	static const char sig2[12] = "\r\n\r\n\0\r\nQUIT\n";
	size_t n;

	if (c->rlen && c->rbuf[0] != '\r' && c->rbuf[0] != 'P') {
		c->st = ST_RAW;
		return 1;
	}
	if (c->rbuf[0] == '\r') {
		if (c->rlen < 16)
			return memcmp(c->rbuf, sig2, c->rlen) ? (c->st = ST_RAW, 1) : 0;
		if (memcmp(c->rbuf, sig2, 12)) {
			c->st = ST_RAW;
			return 1;
		}
		n = 16 + ((size_t)(unsigned char)c->rbuf[14] << 8 | (unsigned char)c->rbuf[15]);
		if (c->rlen < n)
			return 0;
		be_consume(c, n);
		c->st = ST_RAW;
		return 1;
	}
	if (c->rlen < 6)
		return memcmp(c->rbuf, "PROXY ", c->rlen) ? (c->st = ST_RAW, 1) : 0;
	if (memcmp(c->rbuf, "PROXY ", 6)) {
		c->st = ST_RAW;
		return 1;
	}
	{
		char *e = memmem(c->rbuf, c->rlen, "\r\n", 2);

		if (!e)
			return c->rlen > 107 ? -1 : 0;
		be_consume(c, (size_t)(e - c->rbuf) + 2);
	}
	c->st = ST_RAW;
	return 1;
}

/* drive one connection until it would block; false: closed */
static bool be_drive(struct be_conn *c, unsigned long *nresp)
{
	for (;;) {
		ssize_t r;
		int k;

		if (c->sending) {
			k = be_send(c);
			if (k <= 0)
				return k == 0;
			continue;
		}
		if (mode == BE_ECHO && c->st == ST_RAW && c->wpos < c->rlen) {
			r = send(c->fd, c->rbuf + c->wpos, c->rlen - c->wpos, MSG_NOSIGNAL);
			if (r < 0)
				return errno == EAGAIN;
			c->wpos += (size_t)r;
			if (c->wpos == c->rlen)
				c->wpos = c->rlen = 0;
			continue;
		}
		if (mode == BE_SINK && c->st == ST_RAW)
			c->rlen = 0;
		if (c->st == ST_PROXY && c->rlen) {
			k = be_proxy_step(c);
			if (k < 0)
				return false;
			if (k > 0)
				continue;
		} else if (mode == BE_HTTP && c->rlen) {
			k = be_http_step(c, nresp);
			if (k < 0)
				return false;
			if (k > 0)
				continue;
		}
		if (c->rlen == RBUF_SIZE)
			return false;
		if (c->drained) {
			c->drained = false;
			return true;
		}
		r = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
		if (r == 0) {
			/* raw modes: the peer finished sending; half-close our side too */
			if (mode != BE_HTTP)
				shutdown(c->fd, SHUT_WR);
			return false;
		}
		if (r < 0)
			return errno == EAGAIN;
		c->drained = (size_t)r < RBUF_SIZE - c->rlen;
		c->rlen += (size_t)r;
	}
}

static void *be_thread(void *arg)
{
	struct epoll_event ev, evs[256];
	unsigned long nresp = 0;
	struct be_conn head = {0};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)arg;
	if (ep < 0) {
		perror("epoll_create1");
		exit(1);
	}
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev)) {
		perror("epoll_ctl");
		exit(1);
	}
	while (!stopping) {
		int n = epoll_wait(ep, evs, 256, 500);

		for (int i = 0; i < n; i++) {
			struct be_conn *c = evs[i].data.ptr;

			if (!c) {
				for (;;) {
					int one = 1, fd = accept4(lfd, NULL, NULL,
								  SOCK_NONBLOCK | SOCK_CLOEXEC);

					if (fd < 0)
						break;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					c = malloc(sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					memset(c, 0, offsetof(struct be_conn, rbuf));
					c->fd = fd;
					c->st = mode == BE_HTTP ? ST_HEAD : ST_PROXY;
					ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
						close(fd);
						free(c);
						continue;
					}
					c->prev = &head;
					c->next = head.next;
					if (head.next)
						head.next->prev = c;
					head.next = c;
					if (!be_drive(c, &nresp))
						be_close(ep, c);
				}
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->drained = false; /* something arrived: read it */
			if (!be_drive(c, &nresp))
				be_close(ep, c);
		}
	}
	/* the list head is a sentinel: free every connection still open */
	while (head.next)
		be_close(ep, head.next);
	close(ep);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ktlsgw-bench-backend [-l HOST:PORT] [-t THREADS] [--echo|--sink]\n"
		"       [--fault status|length|body|close[:EVERY]] [--port-file FILE]\n"
		"  HTTP/1.1: GET /size/N answers N bytes; POST/PUT bodies are discarded and\n"
		"  answered with their length. --echo/--sink: raw bytes (PROXY header skipped).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"threads", required_argument, NULL, 't'},
					     {"echo", no_argument, NULL, 'e'},
					     {"sink", no_argument, NULL, 's'},
					     {"fault", required_argument, NULL, 'f'},
					     {"port-file", required_argument, NULL, 'P'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	const char *listen_at = "127.0.0.1:8080", *port_file = NULL;
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], *colon, *end, portstr[16];
	pthread_t *th;
	int opt, one = 1;

	while ((opt = getopt_long(argc, argv, "l:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_at = optarg;
			break;
		case 't':
			nthreads = strtol(optarg, &end, 10);
			if (*end || nthreads < 1 || nthreads > 1024) {
				fprintf(stderr, "bad -t %s\n", optarg);
				return 2;
			}
			break;
		case 'e':
			mode = BE_ECHO;
			break;
		case 's':
			mode = BE_SINK;
			break;
		case 'f': {
			char *c = strchr(optarg, ':');
			size_t n = c ? (size_t)(c - optarg) : strlen(optarg);

			if (c) {
				fault_every = strtoul(c + 1, &end, 10);
				if (*end || !fault_every) {
					fprintf(stderr, "bad --fault %s\n", optarg);
					return 2;
				}
			}
			if (n == 6 && !strncmp(optarg, "status", n))
				fault = FAULT_STATUS;
			else if (n == 6 && !strncmp(optarg, "length", n))
				fault = FAULT_LENGTH;
			else if (n == 4 && !strncmp(optarg, "body", n))
				fault = FAULT_BODY;
			else if (n == 5 && !strncmp(optarg, "close", n))
				fault = FAULT_CLOSE;
			else {
				fprintf(stderr, "bad --fault %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'P':
			port_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	snprintf(host, sizeof(host), "%s", listen_at);
	colon = strrchr(host, ':');
	if (!colon) {
		fprintf(stderr, "-l wants HOST:PORT\n");
		return 2;
	}
	*colon = 0;
	if (host[0] == '[' && colon[-1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai)) {
		fprintf(stderr, "cannot resolve %s\n", listen_at);
		return 2;
	}
	lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, ai->ai_addr, ai->ai_addrlen) || listen(lfd, 4096)) {
		fprintf(stderr, "listen %s: %s\n", listen_at, strerror(errno));
		return 1;
	}
	freeaddrinfo(ai);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	snprintf(portstr, sizeof(portstr), "%u",
		 ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port));
	if (port_file) {
		FILE *f = fopen(port_file, "w");

		if (!f || fprintf(f, "%s\n", portstr) < 0 || fclose(f)) {
			fprintf(stderr, "%s: %s\n", port_file, strerror(errno));
			return 1;
		}
	}
	bench_pat_at(0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	th = calloc((size_t)nthreads, sizeof(*th));
	if (!th)
		return 1;
	for (long i = 0; i < nthreads; i++) {
		if (pthread_create(&th[i], NULL, be_thread, NULL)) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	fprintf(stderr, "ktlsgw-bench-backend: %s mode, port %s, %ld threads\n",
		mode == BE_HTTP	  ? "http"
		: mode == BE_ECHO ? "echo"
				  : "sink",
		portstr, nthreads);
	for (long i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	free(th);
	close(lfd);
	return 0;
}
