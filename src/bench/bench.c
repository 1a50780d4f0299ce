// SPDX-License-Identifier: MIT
/*
 * ktlsgw-bench: an mTLS load generator (OpenSSL 3, epoll, one thread per core).
 *
 * ktlsgw-bench MODE [options] HOST:PORT, MODE one of
 *   handshake  a new mTLS connection per request (GET /size/N, Connection: close)
 *   rps        -c keep-alive connections, GET /size/N one after the other on each
 *   bulk       keep-alive connections, --download SIZE (GET /size/SIZE) or --upload SIZE
 *              (POST of SIZE bytes; the answer must be "SIZE\n", as ktlsgw-bench-backend says)
 *   stream     raw bytes (stream mode): --echo (default) sends --size bytes and reads them
 *              back, --sink only sends
 *
 * Every unit of work (a request, an echoed chunk, a sunk chunk) ends as exactly one success
 * or one error of a kind: with -n N, successes + errors = N. A response counts only when its
 * status is the expected one, its Content-Length is the size asked for and that many body
 * bytes arrived (and with --check-body, they are the pattern of include/gw/bench.h).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw/bench.h"
#include "gw/chain_digest.h"

#define HBUF_SIZE (16 * 1024)
#define RBUF_SIZE (256 * 1024)
#define TICK_NS (50 * 1000 * 1000ULL)

enum bench_mode { M_HANDSHAKE, M_RPS, M_BULK, M_STREAM };

enum bench_err {
	E_CONNECT,   /* TCP connect failed */
	E_HANDSHAKE, /* TLS handshake failed */
	E_TLS,	     /* TLS error after the handshake */
	E_CLOSED,    /* the peer closed before the answer was complete */
	E_TIMEOUT,   /* no answer within --timeout */
	E_STATUS,    /* status code not the expected one */
	E_PARSE,     /* malformed response head */
	E_LENGTH,    /* Content-Length missing or not the size asked for, or too many bytes */
	E_BODY,	     /* body (or echoed bytes) not what was sent / asked for */
	E_NR
};

static const char *const err_names[E_NR] = {
	"connect", "handshake", "tls", "closed", "timeout", "status", "parse", "length", "body",
};

enum conn_state {
	C_IDLE,	   /* no connection; start one when a ticket is available */
	C_BACKOFF, /* after a failed connect: wait for retry_at */
	C_CONNECTING,
	C_HANDSHAKE,
	C_SEND,
	C_RECV_HEAD,
	C_RECV_BODY,
	C_RECV_ECHO,
	C_DONE, /* no more work for this slot */
};

struct bench_thread;

struct bench_conn {
	struct bench_thread *t;
	int fd;
	SSL *ssl;
	enum conn_state st;
	bool has_ticket;   /* a unit of work is in progress (its outcome is owed) */
	bool close_after;  /* the answer said Connection: close */
	bool hs_pending;   /* handshake done here, nothing read from the server yet */
	SSL_SESSION *sess; /* --resume: the last session of this slot */
	uint64_t t_start;  /* start of the unit of work */
	uint64_t deadline;
	uint64_t retry_at;
	/* what is being sent: the request head, then body bytes of the pattern */
	const char *wbuf;
	size_t wlen, woff;
	uint64_t wbody_left, wbody_off;
	/* what is being received */
	char hbuf[HBUF_SIZE];
	size_t hlen;
	uint64_t body_want, body_got;
	uint64_t echo_off; /* stream: pattern offset of the next byte both ways */
};

struct bench_thread {
	pthread_t tid;
	int idx;
	int ep;
	int nconns;
	struct bench_conn *conns;
	char req[512];
	size_t req_len;
	unsigned char rbuf[RBUF_SIZE];
	/* written by this thread, read by the main thread (relaxed atomics) */
	uint64_t ok, handshakes, resumed, bytes_rx, bytes_tx;
	uint64_t errs[E_NR];
	const char *proto, *cipher, *group;
	struct bench_hist hist;
	bool finished;
};

static struct {
	enum bench_mode mode;
	const char *target;
	const char *cert, *key, *ca, *sni, *host, *ciphers, *suites, *groups;
	int tls; /* 0, 12, 13 */
	bool resume, json, quiet, check_body, sink, tls_set;
	bool provider_ec; /* --provider-ec: no bench_ec_legacy() */
	bool ec_legacy;	  /* bench_ec_legacy() is in effect */
	long threads, conns;
	double duration;
	uint64_t nreq; /* 0: run for duration */
	uint64_t size; /* handshake/rps body size; stream chunk size */
	uint64_t download, upload;
	bool has_download, has_upload;
	double timeout;
	int expect_status;
} opt = {
	.mode = M_RPS,
	.sni = "localhost",
	.duration = 10,
	.size = 64,
	.timeout = 10,
	.expect_status = 200,
};

static struct sockaddr_storage target_addr;
static socklen_t target_len;
static SSL_CTX *ctx;
static int conn_ex_idx;
static uint64_t issued; /* tickets handed out (-n) */
static volatile int stop_now;
static uint64_t expect_len; /* Content-Length every answer must have */
static char upload_answer[32];
static size_t upload_answer_len;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void add_rel(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static uint64_t get_rel(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* a unit of work may start: true while running and (with -n) tickets are left */
static bool take_ticket(void)
{
	if (stop_now)
		return false;
	if (!opt.nreq)
		return true;
	return __atomic_fetch_add(&issued, 1, __ATOMIC_RELAXED) < opt.nreq;
}

static void conn_close(struct bench_conn *c)
{
	if (c->ssl) {
		if (SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl); /* one close_notify, not waiting for the peer's */
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->hs_pending = false;
	c->st = C_IDLE;
}

static void conn_fail(struct bench_conn *c, enum bench_err e)
{
	/* nothing came from the server since the handshake: it refused it (TLS 1.3 alert) */
	if (c->hs_pending && (e == E_TLS || e == E_CLOSED))
		e = E_HANDSHAKE;
	c->hs_pending = false;
	if (c->has_ticket && !stop_now)
		add_rel(&c->t->errs[e], 1);
	c->has_ticket = false;
	conn_close(c);
	if (e == E_CONNECT) {
		c->st = C_BACKOFF;
		c->retry_at = now_ns() + TICK_NS;
	}
}

static void hs_confirm(struct bench_conn *c);

static void conn_success(struct bench_conn *c)
{
	uint64_t t = now_ns();

	hs_confirm(c); /* stream --sink: the server never writes */

	if (!stop_now) {
		hist_add(&c->t->hist, t - c->t_start);
		add_rel(&c->t->ok, 1);
	}
	c->has_ticket = false;
}

/*
 * --ca: the server's chain is verified in full (X509_verify_cert) the first
 * time; a later handshake that presents exactly the same certificates (by
 * their SHA-256) is accepted without building and checking the chain again.
 * Re-verifying the one server it measures would cost the load generator a
 * whole X509_verify_cert() per handshake (0.94 M instructions, callgrind), on
 * the CPU whose limit caps the proxies' handshake rates. OpenSSL still checks
 * the server's handshake signature against the certificate's key every time.
 */
static pthread_mutex_t pin_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char pin_md[EVP_MAX_MD_SIZE];
static bool pinned;

static int pin_verify_cb(X509_STORE_CTX *x, void *arg)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	bool have = chain_digest(x, m, EVP_sha256(), md), hit;
	int ret;

	EVP_MD_CTX_free(m);

	if (have) {
		pthread_mutex_lock(&pin_mu);
		hit = pinned && memcmp(pin_md, md, SHA256_DIGEST_LENGTH) == 0;
		pthread_mutex_unlock(&pin_mu);
		if (hit)
			return 1;
	}
	ret = X509_verify_cert(x);
	if (have && ret > 0 && X509_STORE_CTX_get_error(x) == X509_V_OK) {
		pthread_mutex_lock(&pin_mu);
		memcpy(pin_md, md, SHA256_DIGEST_LENGTH);
		pinned = true;
		pthread_mutex_unlock(&pin_mu);
	}
	return ret;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct bench_conn *c = SSL_get_ex_data(ssl, conn_ex_idx);

	if (!c || !opt.resume)
		return 0;
	SSL_SESSION_free(c->sess);
	c->sess = sess;
	return 1; /* we keep the reference */
}

static void start_unit(struct bench_conn *c)
{
	c->t_start = now_ns();
	c->deadline = c->t_start + (uint64_t)(opt.timeout * 1e9);
	c->has_ticket = true;
}

/* set up the next unit of work on an established connection (C_SEND) */
static void begin_request(struct bench_conn *c)
{
	struct bench_thread *t = c->t;

	c->hlen = 0;
	c->body_got = 0;
	c->close_after = false;
	c->st = C_SEND;
	if (opt.mode == M_STREAM) {
		c->wbuf = NULL;
		c->wlen = c->woff = 0;
		c->wbody_left = opt.size;
		c->wbody_off = c->echo_off;
		return;
	}
	c->wbuf = t->req;
	c->wlen = t->req_len;
	c->woff = 0;
	c->wbody_left = opt.mode == M_BULK && opt.has_upload ? opt.upload : 0;
	c->wbody_off = 0;
}

/* open a new connection for a slot that holds a ticket */
static void conn_open(struct bench_conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
	int one = 1;

	c->fd = socket(target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(c, E_CONNECT);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = c;
	if (epoll_ctl(c->t->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
		conn_fail(c, E_CONNECT);
		return;
	}
	c->st = C_CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&target_addr, target_len) && errno != EINPROGRESS)
		conn_fail(c, E_CONNECT);
}

/* slot is idle: take a ticket and connect, or finish */
static void conn_next(struct bench_conn *c)
{
	if (!take_ticket()) {
		conn_close(c);
		c->st = C_DONE;
		return;
	}
	start_unit(c);
	conn_open(c);
}

static int ssl_outcome(struct bench_conn *c, int r, enum bench_err kind)
{
	int e = SSL_get_error(c->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error()))
		kind = kind == E_HANDSHAKE ? E_HANDSHAKE : E_CLOSED;
	ERR_clear_error();
	conn_fail(c, kind);
	return -1;
}

/* check a response head hbuf[0..hlen); 0 or the error kind + 1 */
static int parse_head(struct bench_conn *c, size_t hlen)
{
	const char *p = c->hbuf, *eol, *v;
	size_t vlen;
	bool has_cl = false;
	uint64_t cl = 0;
	int status;

	eol = memmem(p, hlen, "\r\n", 2);
	if (!eol || eol - p < 12 || memcmp(p, "HTTP/1.", 7) || p[8] != ' ' || p[9] < '1' ||
	    p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
	    (eol - p > 12 && p[12] != ' '))
		return E_PARSE + 1;
	status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	for (const char *l = eol + 2; l < p + hlen - 2;) {
		const char *e = memmem(l, (size_t)(p + hlen - l), "\r\n", 2);
		size_t ll = (size_t)(e - l);

		if (bench_hdr_is(l, ll, "content-length", &v, &vlen)) {
			char tmp[24];

			if (has_cl || !vlen || vlen >= sizeof(tmp) ||
			    strspn(v, "0123456789") < vlen)
				return E_LENGTH + 1;
			memcpy(tmp, v, vlen);
			tmp[vlen] = 0;
			cl = strtoull(tmp, NULL, 10);
			has_cl = true;
		} else if (bench_hdr_is(l, ll, "connection", &v, &vlen)) {
			if (vlen == 5 && !strncasecmp(v, "close", 5))
				c->close_after = true;
		}
		l = e + 2;
	}
	if (status != opt.expect_status)
		return E_STATUS + 1;
	if (!has_cl || cl != expect_len)
		return E_LENGTH + 1;
	c->body_want = cl;
	return 0;
}

/* body bytes arrived (at body offset c->body_got); 0 or the error kind + 1 */
static int take_body(struct bench_conn *c, const void *p, size_t n)
{
	if (n > c->body_want - c->body_got)
		return E_LENGTH + 1;
	if (opt.mode == M_BULK && opt.has_upload) {
		if (memcmp(p, upload_answer + c->body_got, n))
			return E_BODY + 1;
	} else if (opt.check_body && bench_pat_check(p, n, c->body_got)) {
		return E_BODY + 1;
	}
	c->body_got += n;
	add_rel(&c->t->bytes_rx, n);
	return 0;
}

/* a unit of work is complete: next one on this connection, or a new connection */
static void unit_done(struct bench_conn *c)
{
	conn_success(c);
	if (opt.mode == M_HANDSHAKE || c->close_after) {
		conn_close(c);
		conn_next(c);
		return;
	}
	if (!take_ticket()) {
		conn_close(c);
		c->st = C_DONE;
		return;
	}
	start_unit(c);
	begin_request(c);
}

static void hs_confirm(struct bench_conn *c)
{
	if (!c->hs_pending)
		return;
	c->hs_pending = false;
	add_rel(&c->t->handshakes, 1);
	if (SSL_session_reused(c->ssl))
		add_rel(&c->t->resumed, 1);
}

static void handshake_done(struct bench_conn *c)
{
	struct bench_thread *t = c->t;

	/*
	 * Counted when the server's first bytes arrive (hs_confirm): in TLS 1.3 the client
	 * finishes first, and a server that rejects the client certificate says so after.
	 */
	c->hs_pending = true;
	/* latency: handshake mode times the whole connection, the others the request only */
	if (opt.mode != M_HANDSHAKE)
		c->t_start = now_ns();
	if (!t->proto) {
		int g = SSL_get_negotiated_group(c->ssl);

		t->proto = SSL_get_version(c->ssl);
		t->cipher = SSL_get_cipher_name(c->ssl);
		/* the key exchange group (names live as long as the SSL_CTX: the whole run) */
		t->group = g > 0 ? SSL_group_to_name(c->ssl, g) : NULL;
	}
	begin_request(c);
}

/* run a connection until it would block */
static void conn_drive(struct bench_conn *c)
{
	struct bench_thread *t = c->t;
	int r, k;

	for (;;) {
		switch (c->st) {
		case C_CONNECTING: {
			int err = 0;
			socklen_t el = sizeof(err);

			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
				conn_fail(c, E_CONNECT);
				return;
			}
			/* not connected yet: EPOLLOUT will come */
			{
				struct sockaddr_storage ss;
				socklen_t sl = sizeof(ss);

				if (getpeername(c->fd, (struct sockaddr *)&ss, &sl))
					return;
			}
			c->ssl = SSL_new(ctx);
			if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
				conn_fail(c, E_HANDSHAKE);
				return;
			}
			SSL_set_ex_data(c->ssl, conn_ex_idx, c);
			SSL_set_tlsext_host_name(c->ssl, opt.sni);
			if (opt.resume && c->sess)
				SSL_set_session(c->ssl, c->sess);
			SSL_set_connect_state(c->ssl);
			c->st = C_HANDSHAKE;
			break;
		}
		case C_HANDSHAKE:
			r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				if (ssl_outcome(c, r, E_HANDSHAKE))
					break;
				return;
			}
			handshake_done(c);
			break;
		case C_SEND:
			if (c->woff < c->wlen) {
				r = SSL_write(c->ssl, c->wbuf + c->woff, (int)(c->wlen - c->woff));
				if (r <= 0) {
					if (ssl_outcome(c, r, E_TLS))
						break;
					return;
				}
				c->woff += (size_t)r;
				break;
			}
			if (c->wbody_left) {
				size_t n = c->wbody_left < BENCH_PAT_SPAN ? c->wbody_left
									  : BENCH_PAT_SPAN;

				r = SSL_write(c->ssl, bench_pat_at(c->wbody_off), (int)n);
				if (r <= 0) {
					if (ssl_outcome(c, r, E_TLS))
						break;
					return;
				}
				c->wbody_left -= (uint64_t)r;
				c->wbody_off += (uint64_t)r;
				add_rel(&t->bytes_tx, (uint64_t)r);
				break;
			}
			if (opt.mode == M_STREAM && opt.sink) {
				c->echo_off += opt.size;
				unit_done(c);
				break;
			}
			c->st = opt.mode == M_STREAM ? C_RECV_ECHO : C_RECV_HEAD;
			break;
		case C_RECV_HEAD: {
			char *e;
			size_t hl, extra;

			if (c->hlen == HBUF_SIZE) {
				conn_fail(c, E_PARSE);
				break;
			}
			r = SSL_read(c->ssl, c->hbuf + c->hlen, (int)(HBUF_SIZE - c->hlen));
			if (r <= 0) {
				if (ssl_outcome(c, r, E_TLS))
					break;
				return;
			}
			hs_confirm(c);
			c->hlen += (size_t)r;
			e = memmem(c->hbuf, c->hlen, "\r\n\r\n", 4);
			if (!e)
				break;
			hl = (size_t)(e - c->hbuf) + 4;
			k = parse_head(c, hl);
			if (!k && (extra = c->hlen - hl))
				k = take_body(c, c->hbuf + hl, extra);
			if (k) {
				conn_fail(c, (enum bench_err)(k - 1));
				break;
			}
			if (c->body_got == c->body_want)
				unit_done(c);
			else
				c->st = C_RECV_BODY;
			break;
		}
		case C_RECV_BODY: {
			uint64_t want = c->body_want - c->body_got;

			r = SSL_read(c->ssl, t->rbuf, want < RBUF_SIZE ? (int)want : RBUF_SIZE);
			if (r <= 0) {
				if (ssl_outcome(c, r, E_TLS))
					break;
				return;
			}
			hs_confirm(c);
			k = take_body(c, t->rbuf, (size_t)r);
			if (k) {
				conn_fail(c, (enum bench_err)(k - 1));
				break;
			}
			if (c->body_got == c->body_want)
				unit_done(c);
			break;
		}
		case C_RECV_ECHO: {
			uint64_t want = opt.size - c->body_got;

			r = SSL_read(c->ssl, t->rbuf, want < RBUF_SIZE ? (int)want : RBUF_SIZE);
			if (r <= 0) {
				if (ssl_outcome(c, r, E_TLS))
					break;
				return;
			}
			hs_confirm(c);
			if (bench_pat_check(t->rbuf, (size_t)r, c->echo_off + c->body_got)) {
				conn_fail(c, E_BODY);
				break;
			}
			c->body_got += (uint64_t)r;
			add_rel(&t->bytes_rx, (uint64_t)r);
			if (c->body_got == opt.size) {
				c->echo_off += opt.size;
				unit_done(c);
			}
			break;
		}
		case C_IDLE:
			conn_next(c);
			if (c->st == C_CONNECTING)
				return; /* its EPOLLOUT drives it */
			break;
		default:
			return;
		}
	}
}

static void thread_tick(struct bench_thread *t, uint64_t now)
{
	for (int i = 0; i < t->nconns; i++) {
		struct bench_conn *c = &t->conns[i];

		if (c->st == C_BACKOFF && now >= c->retry_at) {
			c->st = C_IDLE;
			conn_drive(c);
		} else if (c->st >= C_CONNECTING && c->st < C_DONE && c->has_ticket &&
			   now > c->deadline) {
			conn_fail(c, E_TIMEOUT);
			conn_drive(c);
		}
	}
}

static void *thread_main(void *arg)
{
	struct bench_thread *t = arg;
	struct epoll_event evs[256];
	uint64_t last_tick = now_ns();

	for (int i = 0; i < t->nconns; i++) {
		t->conns[i].st = C_IDLE;
		conn_drive(&t->conns[i]);
	}
	while (!stop_now) {
		int n = epoll_wait(t->ep, evs, 256, (int)(TICK_NS / 1000000));
		uint64_t now;
		bool active = false;

		for (int i = 0; i < n; i++)
			conn_drive(evs[i].data.ptr);
		now = now_ns();
		if (now - last_tick >= TICK_NS) {
			last_tick = now;
			thread_tick(t, now);
		}
		for (int i = 0; i < t->nconns && !active; i++)
			active = t->conns[i].st != C_DONE;
		if (!active)
			break;
	}
	for (int i = 0; i < t->nconns; i++) {
		conn_close(&t->conns[i]);
		SSL_SESSION_free(t->conns[i].sess);
		t->conns[i].sess = NULL;
	}
	__atomic_store_n(&t->finished, true, __ATOMIC_RELEASE);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_now = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsgw-bench handshake|rps|bulk|stream [options] HOST:PORT\n"
		   "  --cert FILE --key FILE   client certificate (chain) and key\n"
		   "  --ca FILE                verify the server against these CAs (in full\n"
		   "                           once; the same chain again is accepted as\n"
		   "                           verified), else no check\n"
		   "  --sni NAME               SNI (default localhost); --host NAME Host header\n"
		   "  --tls 1.2|1.3            only this version; --resume: session resumption\n"
		   "  --ciphers L --ciphersuites L --groups L   as OpenSSL lists\n"
		   "  -t THREADS (default: cores)  -c CONNECTIONS (default 2 per thread)\n"
		   "  -d SECONDS (default 10) | -n UNITS   --timeout SECONDS (default 10)\n"
		   "  --size N       handshake/rps: GET /size/N (default 64); stream: chunk size\n"
		   "  --download SIZE | --upload SIZE    bulk\n"
		   "  --echo | --sink                    stream (default echo)\n"
		   "  --check-body   check every body byte; --expect-status N (default 200)\n"
		   "  --json         machine-readable result on stdout; -q: no progress lines\n"
		   "  --provider-ec  decode EC public keys with OpenSSL 3.0's provider decoders\n"
		   "                 (default: its built-in legacy EC method, 1.2 M instructions\n"
		   "                 less per certificate; the proxy under test is not affected)\n"
		   "exit status: 0 no errors, 1 errors (or nothing succeeded), 2 usage/setup\n");
}

static int parse_target(const char *s)
{
	char host[256], *colon;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;

	if (snprintf(host, sizeof(host), "%s", s) >= (int)sizeof(host))
		return -EINVAL;
	colon = strrchr(host, ':');
	if (!colon)
		return -EINVAL;
	*colon = 0;
	if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
		colon[-1] = 0;
		memmove(host, host + 1, strlen(host));
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -EINVAL;
	memcpy(&target_addr, ai->ai_addr, ai->ai_addrlen);
	target_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int setup_ctx(void)
{
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(ctx, opt.tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, opt.tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
	/*
	 * No auto-chain: with --ca, OpenSSL would otherwise build the client's own chain
	 * from the trust store in every handshake (X509_verify_cert: 30 % of the load
	 * generator's CPU here) and send the root CA as well, which the proxy would decode.
	 * The client sends exactly the --cert file.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_NO_AUTO_CHAIN);
	/*
	 * One read() for a whole response rather than one for each record header and one
	 * for each record body: the load generator shares a CPU with the backend and must
	 * not be what limits the proxy under test. Every state reads until WANT_READ, so
	 * nothing OpenSSL read ahead waits for an edge that has passed.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (opt.cert && SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1) {
		fprintf(stderr, "ktlsgw-bench: cannot load --cert %s\n", opt.cert);
		return -EINVAL;
	}
	if (opt.key && SSL_CTX_use_PrivateKey_file(ctx, opt.key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "ktlsgw-bench: cannot load --key %s\n", opt.key);
		return -EINVAL;
	}
	if (opt.cert && opt.key && SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "ktlsgw-bench: --key does not match --cert\n");
		return -EINVAL;
	}
	if (opt.ca) {
		if (SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
			fprintf(stderr, "ktlsgw-bench: cannot load --ca %s\n", opt.ca);
			return -EINVAL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_cert_verify_callback(ctx, pin_verify_cb, NULL);
	}
	if (opt.ciphers && SSL_CTX_set_cipher_list(ctx, opt.ciphers) != 1) {
		fprintf(stderr, "ktlsgw-bench: bad --ciphers\n");
		return -EINVAL;
	}
	if (opt.suites && SSL_CTX_set_ciphersuites(ctx, opt.suites) != 1) {
		fprintf(stderr, "ktlsgw-bench: bad --ciphersuites\n");
		return -EINVAL;
	}
	if (opt.groups && SSL_CTX_set1_groups_list(ctx, opt.groups) != 1) {
		fprintf(stderr, "ktlsgw-bench: bad --groups\n");
		return -EINVAL;
	}
	if (opt.resume) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	}
	conn_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return 0;
}

struct totals {
	uint64_t ok, handshakes, resumed, bytes_rx, bytes_tx, errs[E_NR], errs_total;
};

static void sum_threads(struct bench_thread **th, long n, struct totals *s)
{
	memset(s, 0, sizeof(*s));
	for (long i = 0; i < n; i++) {
		s->ok += get_rel(&th[i]->ok);
		s->handshakes += get_rel(&th[i]->handshakes);
		s->resumed += get_rel(&th[i]->resumed);
		s->bytes_rx += get_rel(&th[i]->bytes_rx);
		s->bytes_tx += get_rel(&th[i]->bytes_tx);
		for (int k = 0; k < E_NR; k++)
			s->errs[k] += get_rel(&th[i]->errs[k]);
	}
	for (int k = 0; k < E_NR; k++)
		s->errs_total += s->errs[k];
}

static const char *mode_name(void)
{
	static const char *const names[] = {"handshake", "rps", "bulk", "stream"};

	return names[opt.mode];
}

static void report(struct bench_thread **th, long n, double secs)
{
	struct bench_hist *h = malloc(sizeof(*h));
	struct totals s;
	const char *proto = NULL, *cipher = NULL, *group = NULL;
	double us[7];
	static const double qs[] = {0.5, 0.9, 0.99, 0.999};

	if (!h) {
		fprintf(stderr, "ktlsgw-bench: out of memory\n");
		return;
	}
	sum_threads(th, n, &s);
	hist_init(h);
	for (long i = 0; i < n; i++) {
		hist_merge(h, &th[i]->hist);
		if (!proto && th[i]->proto) {
			proto = th[i]->proto;
			cipher = th[i]->cipher;
			group = th[i]->group;
		}
	}
	for (int i = 0; i < 4; i++)
		us[i] = (double)hist_quantile(h, qs[i]) / 1e3;
	us[4] = h->count ? (double)h->min / 1e3 : 0;
	us[5] = h->count ? (double)h->sum / (double)h->count / 1e3 : 0;
	us[6] = (double)h->max / 1e3;
	if (secs <= 0)
		secs = 1e-9;
	if (opt.json) {
		printf("{\"mode\":\"%s\",\"target\":\"%s\",\"threads\":%ld,\"connections\":%ld,"
		       "\"tls_version\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\","
		       "\"resume\":%s,\"ec_keys\":\"%s\",",
		       mode_name(), opt.target, opt.threads, opt.conns, proto ? proto : "",
		       cipher ? cipher : "", group ? group : "", opt.resume ? "true" : "false",
		       opt.ec_legacy ? "legacy" : "provider");
		if (opt.mode == M_BULK)
			printf("\"%s\":%llu,", opt.has_upload ? "upload" : "download",
			       (unsigned long long)(opt.has_upload ? opt.upload : opt.download));
		else
			printf("\"size\":%llu,", (unsigned long long)opt.size);
		if (opt.mode == M_STREAM)
			printf("\"stream\":\"%s\",", opt.sink ? "sink" : "echo");
		printf("\"duration_s\":%.6f,\"requests\":%llu,\"requests_per_s\":%.1f,"
		       "\"handshakes\":%llu,\"resumed\":%llu,\"handshakes_per_s\":%.1f,"
		       "\"bytes_rx\":%llu,\"bytes_tx\":%llu,\"mb_per_s\":%.3f,",
		       secs, (unsigned long long)s.ok, (double)s.ok / secs,
		       (unsigned long long)s.handshakes, (unsigned long long)s.resumed,
		       (double)s.handshakes / secs, (unsigned long long)s.bytes_rx,
		       (unsigned long long)s.bytes_tx,
		       (double)(s.bytes_rx + s.bytes_tx) / 1e6 / secs);
		printf("\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,"
		       "\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f},",
		       (unsigned long long)h->count, us[4], us[5], us[0], us[1], us[2], us[3],
		       us[6]);
		printf("\"errors_total\":%llu,\"errors\":{", (unsigned long long)s.errs_total);
		for (int k = 0; k < E_NR; k++)
			printf("%s\"%s\":%llu", k ? "," : "", err_names[k],
			       (unsigned long long)s.errs[k]);
		printf("}}\n");
	} else {
		printf("%s %s: %ld threads, %ld connections, %s %s %s%s, %.2f s\n", mode_name(),
		       opt.target, opt.threads, opt.conns, proto ? proto : "-",
		       cipher ? cipher : "-", group ? group : "-", opt.resume ? " (resume)" : "",
		       secs);
		printf("  EC keys    %s\n", opt.ec_legacy ? "OpenSSL's legacy EC method"
							  : "OpenSSL's provider decoders");
		printf("  requests   %12llu  %12.1f /s\n", (unsigned long long)s.ok,
		       (double)s.ok / secs);
		printf("  handshakes %12llu  %12.1f /s  (%llu resumed)\n",
		       (unsigned long long)s.handshakes, (double)s.handshakes / secs,
		       (unsigned long long)s.resumed);
		printf("  data       %12.3f MB  %10.3f MB/s  (rx %llu B, tx %llu B)\n",
		       (double)(s.bytes_rx + s.bytes_tx) / 1e6,
		       (double)(s.bytes_rx + s.bytes_tx) / 1e6 / secs,
		       (unsigned long long)s.bytes_rx, (unsigned long long)s.bytes_tx);
		printf("  latency us  min %.1f  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  "
		       "p99.9 %.1f  max %.1f\n",
		       us[4], us[5], us[0], us[1], us[2], us[3], us[6]);
		printf("  errors     %12llu", (unsigned long long)s.errs_total);
		for (int k = 0; k < E_NR; k++)
			if (s.errs[k])
				printf("  %s %llu", err_names[k], (unsigned long long)s.errs[k]);
		printf("\n");
	}
	fflush(stdout);
	free(h);
}

static int parse_args(int argc, char **argv)
{
	enum {
		O_CERT = 256,
		O_KEY,
		O_CA,
		O_SNI,
		O_HOST,
		O_TLS,
		O_RESUME,
		O_CIPHERS,
		O_SUITES,
		O_GROUPS,
		O_SIZE,
		O_DOWN,
		O_UP,
		O_ECHO,
		O_SINK,
		O_CHECK,
		O_JSON,
		O_TIMEOUT,
		O_STATUS,
		O_PROVIDER_EC
	};
	static const struct option opts[] = {{"cert", required_argument, NULL, O_CERT},
					     {"key", required_argument, NULL, O_KEY},
					     {"ca", required_argument, NULL, O_CA},
					     {"sni", required_argument, NULL, O_SNI},
					     {"host", required_argument, NULL, O_HOST},
					     {"tls", required_argument, NULL, O_TLS},
					     {"resume", no_argument, NULL, O_RESUME},
					     {"ciphers", required_argument, NULL, O_CIPHERS},
					     {"ciphersuites", required_argument, NULL, O_SUITES},
					     {"groups", required_argument, NULL, O_GROUPS},
					     {"size", required_argument, NULL, O_SIZE},
					     {"download", required_argument, NULL, O_DOWN},
					     {"upload", required_argument, NULL, O_UP},
					     {"echo", no_argument, NULL, O_ECHO},
					     {"sink", no_argument, NULL, O_SINK},
					     {"check-body", no_argument, NULL, O_CHECK},
					     {"json", no_argument, NULL, O_JSON},
					     {"timeout", required_argument, NULL, O_TIMEOUT},
					     {"expect-status", required_argument, NULL, O_STATUS},
					     {"provider-ec", no_argument, NULL, O_PROVIDER_EC},
					     {"threads", required_argument, NULL, 't'},
					     {"connections", required_argument, NULL, 'c'},
					     {"duration", required_argument, NULL, 'd'},
					     {"requests", required_argument, NULL, 'n'},
					     {"quiet", no_argument, NULL, 'q'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	char *end;
	int o;

	opt.threads = sysconf(_SC_NPROCESSORS_ONLN);
	while ((o = getopt_long(argc, argv, "t:c:d:n:qh", opts, NULL)) != -1) {
		switch (o) {
		case O_CERT:
			opt.cert = optarg;
			break;
		case O_KEY:
			opt.key = optarg;
			break;
		case O_CA:
			opt.ca = optarg;
			break;
		case O_SNI:
			opt.sni = optarg;
			break;
		case O_HOST:
			opt.host = optarg;
			break;
		case O_TLS:
			if (!strcmp(optarg, "1.2"))
				opt.tls = 12;
			else if (!strcmp(optarg, "1.3"))
				opt.tls = 13;
			else
				goto bad;
			break;
		case O_RESUME:
			opt.resume = true;
			break;
		case O_CIPHERS:
			opt.ciphers = optarg;
			break;
		case O_SUITES:
			opt.suites = optarg;
			break;
		case O_GROUPS:
			opt.groups = optarg;
			break;
		case O_SIZE:
			if (bench_parse_size(optarg, &opt.size))
				goto bad;
			break;
		case O_DOWN:
			if (bench_parse_size(optarg, &opt.download))
				goto bad;
			opt.has_download = true;
			break;
		case O_UP:
			if (bench_parse_size(optarg, &opt.upload))
				goto bad;
			opt.has_upload = true;
			break;
		case O_ECHO:
			opt.sink = false;
			break;
		case O_SINK:
			opt.sink = true;
			break;
		case O_CHECK:
			opt.check_body = true;
			break;
		case O_PROVIDER_EC:
			opt.provider_ec = true;
			break;
		case O_JSON:
			opt.json = true;
			break;
		case O_TIMEOUT:
			opt.timeout = strtod(optarg, &end);
			if (*end || !(opt.timeout > 0))
				goto bad;
			break;
		case O_STATUS:
			opt.expect_status = (int)strtol(optarg, &end, 10);
			if (*end || opt.expect_status < 100 || opt.expect_status > 599)
				goto bad;
			break;
		case 't':
			opt.threads = strtol(optarg, &end, 10);
			if (*end || opt.threads < 1 || opt.threads > 1024)
				goto bad;
			break;
		case 'c':
			opt.conns = strtol(optarg, &end, 10);
			if (*end || opt.conns < 1 || opt.conns > 1000000)
				goto bad;
			break;
		case 'd':
			opt.duration = strtod(optarg, &end);
			if (*end || !(opt.duration > 0))
				goto bad;
			break;
		case 'n':
			if (bench_parse_size(optarg, &opt.nreq) || !opt.nreq)
				goto bad;
			break;
		case 'q':
			opt.quiet = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return -EINVAL;
	}
	if (!strcmp(argv[optind], "handshake"))
		opt.mode = M_HANDSHAKE;
	else if (!strcmp(argv[optind], "rps"))
		opt.mode = M_RPS;
	else if (!strcmp(argv[optind], "bulk"))
		opt.mode = M_BULK;
	else if (!strcmp(argv[optind], "stream"))
		opt.mode = M_STREAM;
	else {
		fprintf(stderr, "ktlsgw-bench: unknown mode %s\n", argv[optind]);
		return -EINVAL;
	}
	opt.target = argv[optind + 1];
	if (opt.mode == M_BULK && opt.has_download == opt.has_upload) {
		fprintf(stderr, "ktlsgw-bench: bulk wants one of --download SIZE, --upload SIZE\n");
		return -EINVAL;
	}
	if (opt.mode == M_STREAM && !opt.size) {
		fprintf(stderr, "ktlsgw-bench: stream wants --size > 0\n");
		return -EINVAL;
	}
	if (!opt.conns)
		opt.conns = 2 * opt.threads;
	if (opt.threads > opt.conns)
		opt.threads = opt.conns;
	if (!opt.host)
		opt.host = opt.sni;
	return 0;
bad:
	fprintf(stderr, "ktlsgw-bench: bad value '%s'\n", optarg);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct bench_thread **th;
	struct totals prev = {0}, cur;
	uint64_t t0, tlast, tend;
	int rc = 2, sec = 0;
	long i;

	if (parse_args(argc, argv))
		return 2;
	if (parse_target(opt.target)) {
		fprintf(stderr, "ktlsgw-bench: cannot resolve %s (want HOST:PORT)\n", opt.target);
		return 2;
	}
	/* before any certificate is decoded, the client's own included */
	opt.ec_legacy = !opt.provider_ec && bench_ec_legacy();
	if (!opt.provider_ec && !opt.ec_legacy)
		fprintf(stderr, "ktlsgw-bench: OpenSSL's legacy EC method is not available: "
				"decoding EC keys with the provider decoders\n");
	if (setup_ctx())
		goto out_ctx;
	bench_pat_at(0);
	if (opt.mode == M_BULK && opt.has_upload) {
		upload_answer_len = (size_t)snprintf(upload_answer, sizeof(upload_answer), "%llu\n",
						     (unsigned long long)opt.upload);
		expect_len = upload_answer_len;
	} else {
		expect_len = opt.mode == M_BULK ? opt.download : opt.size;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	th = calloc((size_t)opt.threads, sizeof(*th));
	if (!th)
		goto out_ctx;
	for (i = 0; i < opt.threads; i++) {
		struct bench_thread *t = aligned_alloc(64, (sizeof(*t) + 63) & ~(size_t)63);

		if (!t)
			goto out_threads;
		memset(t, 0, sizeof(*t));
		th[i] = t;
		t->idx = (int)i;
		t->nconns = (int)(opt.conns / opt.threads + (i < opt.conns % opt.threads));
		t->conns = calloc((size_t)t->nconns, sizeof(*t->conns));
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		if (!t->conns || t->ep < 0)
			goto out_threads;
		hist_init(&t->hist);
		for (int j = 0; j < t->nconns; j++) {
			t->conns[j].t = t;
			t->conns[j].fd = -1;
		}
		if (opt.mode == M_BULK && opt.has_upload)
			t->req_len = (size_t)snprintf(
				t->req, sizeof(t->req),
				"POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %llu\r\n"
				"Content-Type: application/octet-stream\r\n\r\n",
				opt.host, (unsigned long long)opt.upload);
		else
			t->req_len = (size_t)snprintf(
				t->req, sizeof(t->req),
				"GET /size/%llu HTTP/1.1\r\nHost: %s\r\n%s\r\n",
				(unsigned long long)expect_len, opt.host,
				opt.mode == M_HANDSHAKE ? "Connection: close\r\n" : "");
		if (t->req_len >= sizeof(t->req))
			goto out_threads;
	}
	t0 = tlast = now_ns();
	tend = t0 + (uint64_t)(opt.duration * 1e9);
	for (i = 0; i < opt.threads; i++) {
		if (pthread_create(&th[i]->tid, NULL, thread_main, th[i])) {
			fprintf(stderr, "ktlsgw-bench: pthread_create failed\n");
			stop_now = 1;
			for (long j = 0; j < i; j++)
				pthread_join(th[j]->tid, NULL);
			goto out_threads;
		}
	}
	for (;;) {
		uint64_t now = now_ns(), next = tlast + 1000000000ULL;
		bool all_done = true;

		for (i = 0; i < opt.threads; i++)
			all_done &= __atomic_load_n(&th[i]->finished, __ATOMIC_ACQUIRE);
		if (all_done || stop_now || (!opt.nreq && now >= tend))
			break;
		if (now >= next) {
			double dt = (double)(now - tlast) / 1e9;

			sum_threads(th, opt.threads, &cur);
			sec++;
			if (!opt.quiet)
				fprintf(stderr,
					"[%3ds] %10.1f req/s %9.1f hs/s %10.3f MB/s  errors %llu\n",
					sec, (double)(cur.ok - prev.ok) / dt,
					(double)(cur.handshakes - prev.handshakes) / dt,
					(double)(cur.bytes_rx + cur.bytes_tx - prev.bytes_rx -
						 prev.bytes_tx) /
						1e6 / dt,
					(unsigned long long)(cur.errs_total - prev.errs_total));
			prev = cur;
			tlast = now;
			continue;
		}
		{
			uint64_t wake = next;
			struct timespec ts;

			if (!opt.nreq && tend < wake)
				wake = tend;
			/* wake at least every 10 ms to see threads finishing (-n) */
			if (wake - now > 10000000ULL)
				wake = now + 10000000ULL;
			ts.tv_sec = (time_t)((wake - now) / 1000000000ULL);
			ts.tv_nsec = (long)((wake - now) % 1000000000ULL);
			nanosleep(&ts, NULL);
		}
	}
	/* results count up to here: work finishing after stop_now is not counted */
	tend = now_ns();
	stop_now = 1;
	for (i = 0; i < opt.threads; i++)
		pthread_join(th[i]->tid, NULL);
	report(th, opt.threads, (double)(tend - t0) / 1e9);
	sum_threads(th, opt.threads, &cur);
	rc = cur.errs_total || !cur.ok ? 1 : 0;
out_threads:
	for (i = 0; i < opt.threads; i++) {
		if (!th[i])
			continue;
		if (th[i]->ep >= 0)
			close(th[i]->ep);
		free(th[i]->conns);
		free(th[i]);
	}
	free(th);
out_ctx:
	SSL_CTX_free(ctx);
	return rc;
}
