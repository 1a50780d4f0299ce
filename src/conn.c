// SPDX-License-Identifier: MIT
/*
 * Per-connection state machine (see gw/conn.h). Every socket operation of
 * the relay is an io_uring op; OpenSSL drives the handshake on the socket
 * itself (io_uring polls give readiness) and then, for tier U, works on
 * a BIO that reads the io_uring receive buffers and writes into the send
 * queue (relay_bio_*).
 *
 * Invariants:
 * - one recv per direction in flight at most; a client recv only once what
 *   the previous one produced has been sent, a backend recv while at most
 *   one buffer's worth waits behind the send in flight (bounded memory,
 *   backpressure);
 * - receive buffers belong to the worker's ring and go back to it when the
 *   completion has been handled: an idle connection holds none;
 * - a conn is freed only when no op references it (inflight == 0);
 * - nothing is written to the client socket except OpenSSL's records;
 * - no byte reaches the backend before tls_verify_decision() accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include "gw/conn.h"
#include "gw/ktls.h"
#include "gw/log.h"
#include "gw/proxy_proto.h"

#define conn_log(c, lvl, fmt, ...) gw_log(lvl, "conn=%lu " fmt, (c)->id, ##__VA_ARGS__)

static void conn_step(struct conn *c);
static void conn_maybe_free(struct conn *c);
static void ktls_send_close_notify(struct conn *c);
static void backend_connect(struct conn *c);
static void conn_finish(struct conn *c, const char *reason);

_Static_assert(sizeof(struct conn) % 16 == 0 && _Alignof(struct conn) >= 16,
	       "conn pointers carry the op kind in their low bits");

static inline uint64_t tag(void *p, enum op_kind k)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)k;
}

static struct io_uring_sqe *conn_sqe(struct conn *c, enum op_kind k)
{
	struct io_uring_sqe *sqe = worker_sqe(c->w);

	io_uring_sqe_set_data64(sqe, tag(c, k));
	c->inflight++;
	return sqe;
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, len, "unix");
	}
}

static long idle_ms(const struct conn *c)
{
	return c->srv->idle_timeout_ms > 0 ? c->srv->idle_timeout_ms : 75000;
}

static void touch(struct conn *c)
{
	if (c->state == CS_RELAY || c->state == CS_REJECT)
		c->deadline_ms = gw_now_ms() + (uint64_t)idle_ms(c);
}

/* ---------------------------------------------------------------- teardown */

void access_log_line(struct worker *w, const char *path, const char *peer, const char *fmt, ...)
{
	struct access_log *al = NULL;
	char when[64];
	struct tm tm;
	time_t now = time(NULL);
	struct buf line = {};
	va_list ap;
	int err;

	if (!path)
		return;
	for (size_t i = 0; i < w->nlogs; i++)
		if (strcmp(w->logs[i].path, path) == 0)
			al = &w->logs[i];
	if (!al || al->fd < 0)
		return;
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm);
	va_start(ap, fmt);
	err = buf_printf(&line, "%s - [%s] ", peer, when);
	if (!err)
		err = buf_vprintf(&line, fmt, ap);
	if (!err)
		err = buf_puts(&line, "\n");
	va_end(ap);
	if (!err && write(al->fd, line.data, line.len) < 0)
		pr_warn("access_log %s: %s", path, strerror(errno));
	buf_free(&line);
}

static void access_log_write(struct conn *c)
{
	/*
	 * One line per connection (ktlsgw relays, it does not parse responses):
	 * remote address, time, TLS, verification, subject, requests, bytes, tier.
	 * The identity is computed only for a line that is written.
	 */
	const char *path = c->srv ? c->srv->access_log : NULL;
	bool id = path && c->ident.protocol;

	access_log_line(c->w, path, c->peer_text,
			"\"%s %s\" verify=\"%s\" s_dn=\"%s\" sni=\"%s\" requests=%lu "
			"up=%llu down=%llu tier=%c duration=%.3f reason=\"%s\"",
			c->ident.protocol ? c->ident.protocol : "-",
			c->ident.cipher ? c->ident.cipher : "-",
			id ? identity_verify(&c->ident) ?: "-" : "-",
			id ? identity_s_dn(&c->ident) ?: "" : "",
			c->ident.server_name ? c->ident.server_name : "", c->hp.requests,
			(unsigned long long)c->bytes_up, (unsigned long long)c->bytes_down,
			c->tier_k ? 'K' : 'U', (double)(gw_now_ms() - c->start_ms) / 1000.0,
			c->close_reason ? c->close_reason : "");
}

/*
 * Abortive close: cancel every op on both sockets; the memory goes when the
 * last completion comes back.
 */
void conn_abort(struct conn *c, const char *reason)
{
	struct io_uring_sqe *sqe;

	if (c->state == CS_CLOSING)
		return;
	if (!c->close_reason)
		c->close_reason = reason;
	c->state = CS_CLOSING;
	if (c->tier_k)
		conn_log(c, GW_LOG_INFO, "closed: %s (spliced up=%llu down=%llu of %llu/%llu)",
			 reason, (unsigned long long)c->spliced_up,
			 (unsigned long long)c->spliced_down, (unsigned long long)c->bytes_up,
			 (unsigned long long)c->bytes_down);
	else
		conn_log(c, GW_LOG_INFO, "closed: %s", reason);
	access_log_write(c);
	if (c->cfd >= 0) {
		sqe = worker_sqe(c->w);
		io_uring_prep_cancel_fd(sqe, c->cfd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, OP_IGNORE);
	}
	/*
	 * A backend kept for the pool with no op on it gets no cancel: the fd
	 * may serve another client before this cancel would run.
	 */
	if (c->bsend_busy)
		c->bkeep = false; /* bytes on their way to the backend: not between exchanges */
	if (c->bfd >= 0 && !(c->bkeep && !c->brx_busy)) {
		sqe = worker_sqe(c->w);
		io_uring_prep_cancel_fd(sqe, c->bfd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, OP_IGNORE);
	}
	/* freed by conn_maybe_free() from the caller's frame, never here */
}

/*
 * Free the SSL of @c. SSL_free() drops the session from the cache unless
 * OpenSSL saw a shutdown: tier K sends its close_notify through the kernel
 * and an idle timeout sends none, so mark it, as nginx does on its timeouts
 * and errors (a fatal alert removed the session already).
 */
static void conn_ssl_free(struct conn *c)
{
	if (c->ssl && SSL_is_init_finished(c->ssl))
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c->ssl);
	c->ssl = NULL;
}

/* ------------------------------------------------------------ backend pool */

/*
 * upstream keepalive: a worker keeps the backend connections of finished
 * client connections that ended between two exchanges (http_resp_idle()),
 * most recently used first, up to "keepalive N" per backend address, and
 * gives them to the next client connections instead of connecting. Tier U
 * only: the response framing is read from the plaintext OpenSSL encrypts,
 * and tier K splices responses unseen.
 */
static bool bpool_match(const struct bpool_ent *e, const struct gw_server *s)
{
	return e->addrlen == s->backendlen && memcmp(&e->addr, &s->backend, s->backendlen) == 0;
}

static void bpool_unlink(struct worker *w, struct bpool_ent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		w->bpool = e->next;
	if (e->next)
		e->next->prev = e->prev;
}

static void bpool_drop(struct worker *w, struct bpool_ent *e)
{
	bpool_unlink(w, e);
	close(e->fd);
	free(e);
}

/*
 * An idle connection to @c's backend into c->bfd: the most recently used
 * one that the backend has neither closed nor written to since (a peek that
 * does not wait says so). Returns false when there is none.
 */
static bool bpool_take(struct conn *c)
{
	struct worker *w = c->w;
	struct bpool_ent *e, *next;
	char x;

	for (e = w->bpool; e; e = next) {
		next = e->next;
		if (!bpool_match(e, c->srv))
			continue;
		if (recv(e->fd, &x, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
			bpool_unlink(w, e);
			c->bfd = e->fd;
			c->b_born_ms = e->born_ms;
			c->b_reqs = e->requests;
			c->b_req0 = c->hp.requests - c->hp.rq_count;
			c->b_retry = true;
			free(e);
			w->stats.backend_reused++;
			return true;
		}
		bpool_drop(w, e);
	}
	return false;
}

/* conn_free(): keep c->bfd (c->bkeep) for a later client, or close it. */
static void bpool_put(struct conn *c)
{
	const struct gw_server *s = c->srv;
	struct worker *w = c->w;
	uint64_t now = gw_now_ms();
	unsigned long reqs = c->b_reqs + (c->hp.requests - c->b_req0);
	struct bpool_ent *e, *o, *last = NULL;
	int n = 0;

	if (w->draining || w->stop || reqs >= (unsigned long)s->keepalive_requests ||
	    now - c->b_born_ms >= (uint64_t)s->keepalive_time_ms || !(e = calloc(1, sizeof(*e)))) {
		close(c->bfd);
		return;
	}
	for (o = w->bpool; o; o = o->next) {
		if (bpool_match(o, s)) {
			n++;
			last = o;
		}
	}
	if (n >= s->keepalive)
		bpool_drop(w, last); /* the least recently used one makes room */
	e->fd = c->bfd;
	e->addr = s->backend;
	e->addrlen = s->backendlen;
	e->idle_until_ms = now + (uint64_t)s->keepalive_timeout_ms;
	e->born_ms = c->b_born_ms;
	e->requests = reqs;
	e->next = w->bpool;
	if (e->next)
		e->next->prev = e;
	w->bpool = e;
}

/* The tick: close what has been idle for keepalive_timeout, all of it when draining. */
static void bpool_sweep(struct worker *w, uint64_t now)
{
	struct bpool_ent *e, *next;

	for (e = w->bpool; e; e = next) {
		next = e->next;
		if (w->draining || now >= e->idle_until_ms)
			bpool_drop(w, e);
	}
}

/*
 * The backend connection of @c is between exchanges: every request sent
 * has its whole response, nothing is on its way, and no response said the
 * backend closes.
 */
static bool backend_reusable(const struct conn *c)
{
	return c->bpool && c->bfd >= 0 && c->state == CS_RELAY && !c->backend_eof &&
	       !c->backend_shut && !c->bsend_busy && !buf_avail(&c->c2b) &&
	       !buf_avail(&c->c2b_later) && http_resp_idle(&c->hr, &c->hp);
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->bfd >= 0 && c->bkeep && http_resp_idle(&c->hr, &c->hp) && !c->backend_shut)
		bpool_put(c);
	else if (c->bfd >= 0)
		close(c->bfd);
	for (int i = 0; i < 2; i++) {
		if (c->p1[i] >= 0)
			close(c->p1[i]);
		if (c->p2[i] >= 0)
			close(c->p2[i]);
	}
	conn_ssl_free(c);
	identity_clear(&c->ident);
	http_parser_free(&c->hp);
	buf_free(&c->c2b);
	buf_free(&c->c2b_later);
	buf_free(&c->b2c);
	buf_free(&c->b2c_later);
	buf_free(&c->rin_left);
	buf_free(&c->b_sent);
	http_resp_free(&c->hr);
	free(c->crx);
	free(c->brx);
	if (c->gen && --c->gen->refs == 0)
		c->gen->release(c->gen);
	free(c);
}

static void conn_maybe_free(struct conn *c)
{
	if (c->state == CS_CLOSING && c->inflight == 0)
		conn_free(c);
}

void conn_abort_all(struct worker *w, const char *reason)
{
	struct conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		conn_abort(c, reason);
		conn_maybe_free(c);
	}
}

void conn_free_all(struct worker *w)
{
	while (w->conns)
		conn_free(w->conns);
	while (w->bpool)
		bpool_drop(w, w->bpool);
}

/* ------------------------------------------------------ receive buffers */

void worker_rx_ring_init(struct worker *w)
{
	const char *env = getenv("KTLSGW_RX_RING");
	struct io_uring_buf_reg reg = {.bgid = GW_RX_BGID};
	unsigned int n = GW_RX_BUFS;
	size_t rsz;
	void *ring, *bufs;
	int err;

	if (env && strcmp(env, "off") == 0) {
		pr_notice("KTLSGW_RX_RING=off: per-connection receive buffers");
		return;
	}
	if (env) {
		/* a test knob: a small ring makes receives wait for a buffer */
		char *end;
		unsigned long v = strtoul(env, &end, 10);

		if (*end || v == 0 || v > 32768 || (v & (v - 1))) {
			pr_warn("KTLSGW_RX_RING=%s is not off or a power of two up to 32768: %u "
				"buffers",
				env, n);
		} else {
			n = (unsigned int)v;
		}
	}
	rsz = n * sizeof(struct io_uring_buf);
	ring = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return;
	/* untouched buffers cost no memory: the pages come with the first use */
	bufs = mmap(NULL, (size_t)n * GW_RX_BUF, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED) {
		munmap(ring, rsz);
		return;
	}
	reg.ring_addr = (unsigned long)ring;
	reg.ring_entries = n;
	err = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (err) {
		pr_info("no io_uring provided-buffer ring (%s): per-connection receive buffers",
			strerror(-err));
		munmap(bufs, (size_t)n * GW_RX_BUF);
		munmap(ring, rsz);
		return;
	}
	w->rx_ring = ring;
	w->rx_bufs = bufs;
	w->rx_nbufs = n;
	io_uring_buf_ring_init(w->rx_ring);
	for (unsigned int i = 0; i < n; i++)
		io_uring_buf_ring_add(w->rx_ring, w->rx_bufs + (size_t)i * GW_RX_BUF, GW_RX_BUF,
				      (unsigned short)i, io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(w->rx_ring, (int)n);
}

/* After io_uring_queue_exit(): the kernel holds no buffer any more. */
void worker_rx_ring_exit(struct worker *w)
{
	if (!w->rx_ring)
		return;
	munmap(w->rx_bufs, (size_t)w->rx_nbufs * GW_RX_BUF);
	munmap(w->rx_ring, w->rx_nbufs * sizeof(struct io_uring_buf));
	w->rx_ring = NULL;
	w->rx_bufs = NULL;
}

/* The ring buffer a completion with IORING_CQE_F_BUFFER filled. */
static char *rx_ring_buf(struct worker *w, unsigned int flags)
{
	return w->rx_bufs + (size_t)(flags >> IORING_CQE_BUFFER_SHIFT) * GW_RX_BUF;
}

/* Hand that buffer back to the kernel. */
static void rx_ring_put(struct worker *w, unsigned int flags)
{
	unsigned short bid = (unsigned short)(flags >> IORING_CQE_BUFFER_SHIFT);

	io_uring_buf_ring_add(w->rx_ring, w->rx_bufs + (size_t)bid * GW_RX_BUF, GW_RX_BUF, bid,
			      io_uring_buf_ring_mask(w->rx_nbufs), 0);
	io_uring_buf_ring_advance(w->rx_ring, 1);
}

/*
 * The buffer a receive names: NULL with the ring (io_uring picks one when
 * data is there, rx_select()), else *@own, allocated on first use.
 * Returns 0 or -ENOMEM.
 */
static int rx_buf(struct conn *c, char **own, void **buf)
{
	*buf = NULL;
	if (c->w->rx_ring)
		return 0;
	if (!*own && !(*own = malloc(GW_RX_BUF)))
		return -ENOMEM;
	*buf = *own;
	return 0;
}

static void rx_select(struct conn *c, struct io_uring_sqe *sqe)
{
	if (c->w->rx_ring) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = GW_RX_BGID;
	}
}

/* A recv of @fd (rx_buf(), rx_select()). Returns 0 or -ENOMEM (nothing submitted). */
static int prep_rx(struct conn *c, enum op_kind k, int fd, char **own)
{
	struct io_uring_sqe *sqe;
	void *buf;

	if (rx_buf(c, own, &buf))
		return -ENOMEM;
	sqe = conn_sqe(c, k);
	io_uring_prep_recv(sqe, fd, buf, GW_RX_BUF, 0);
	rx_select(c, sqe);
	return 0;
}

/* Shrink an empty buffer back to nothing once it grew past @keep bytes. */
static void buf_trim(struct buf *b, size_t keep)
{
	if (!buf_avail(b) && b->cap > keep)
		buf_free(b);
}

/* A drained send buffer past GW_SPARE_MIN goes to the worker's spares (or is freed). */
static void buf_release(struct worker *w, struct buf *b)
{
	if (buf_avail(b) || b->cap <= GW_SPARE_MIN)
		return;
	if (w->nspare < GW_SPARE_BUFS) {
		b->off = b->len = 0;
		w->spare[w->nspare++] = *b;
		memset(b, 0, sizeof(*b));
		return;
	}
	buf_free(b);
}

/* An empty buffer without memory takes a spare, if there is one. */
static struct buf *buf_prepare(struct worker *w, struct buf *b)
{
	if (!b->data && w->nspare)
		*b = w->spare[--w->nspare];
	return b;
}

void worker_spare_free(struct worker *w)
{
	while (w->nspare)
		buf_free(&w->spare[--w->nspare]);
}

/*
 * Tier U: OpenSSL's BIO once the handshake is over. Reads hand OpenSSL the
 * bytes of the current receive (c->rin) after any partial record kept from
 * the last one (c->rin_left); writes append the records to b2c, or to
 * b2c_later while a send of b2c is in flight (its memory must not move). No
 * copy in between, and nothing held between requests.
 */
static BIO_METHOD *relay_bio_method;

static int relay_bio_read(BIO *b, char *out, int outl)
{
	struct conn *c = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (outl <= 0)
		return 0;
	if (buf_avail(&c->rin_left)) {
		n = MIN((size_t)outl, buf_avail(&c->rin_left));
		memcpy(out, buf_head(&c->rin_left), n);
		buf_consume(&c->rin_left, n);
		return (int)n;
	}
	if (c->rin_len) {
		n = MIN((size_t)outl, c->rin_len);
		memcpy(out, c->rin, n);
		c->rin += n;
		c->rin_len -= n;
		return (int)n;
	}
	BIO_set_retry_read(b);
	return -1;
}

/* Where bytes for the client go now: behind whatever is waiting. */
static struct buf *b2c_tail(struct conn *c)
{
	return buf_prepare(c->w,
			   c->csend_busy || buf_avail(&c->b2c_later) ? &c->b2c_later : &c->b2c);
}

static int relay_bio_write(BIO *b, const char *in, int inl)
{
	struct conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (inl <= 0)
		return 0;
	if (buf_append(b2c_tail(c), in, (size_t)inl))
		return -1;
	return inl;
}

static long relay_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int relay_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO *relay_bio_new(struct conn *c)
{
	BIO *b;

	if (!relay_bio_method) {
		BIO_METHOD *m =
			BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ktlsgw relay");

		if (!m || !BIO_meth_set_read(m, relay_bio_read) ||
		    !BIO_meth_set_write(m, relay_bio_write) ||
		    !BIO_meth_set_ctrl(m, relay_bio_ctrl) ||
		    !BIO_meth_set_create(m, relay_bio_create)) {
			BIO_meth_free(m);
			return NULL;
		}
		relay_bio_method = m; /* one per process, kept until exit */
	}
	b = BIO_new(relay_bio_method);
	if (b)
		BIO_set_data(b, c);
	return b;
}

/* --------------------------------------------------------------- accepting */

void *worker_admit(struct worker *w, int fd, size_t size)
{
	void *p;

	if (w->cfg->worker_connections > 0 &&
	    w->nconns >= (unsigned long)w->cfg->worker_connections) {
		pr_warn("%d worker_connections are not enough, closing new connection",
			w->cfg->worker_connections);
		close(fd);
		return NULL;
	}
	p = calloc(1, size);
	if (!p) {
		pr_err("accept: out of memory");
		close(fd);
	}
	return p;
}

void conn_accepted(struct listener *lst, int fd)
{
	struct worker *w = lst->w;
	struct conn *c;
	socklen_t len;
	int one = 1;

	c = worker_admit(w, fd, sizeof(*c));
	if (!c)
		return;
	c->w = w;
	c->lst = lst;
	c->id = ++w->next_id;
	c->cfd = fd;
	c->bfd = -1;
	c->p1[0] = c->p1[1] = c->p2[0] = c->p2[1] = -1;
	c->srv = tls_srv_server(lst->group[0]);
	c->group = lst->group; /* a reload replaces lst->group; the old one lives on */
	c->ngroup = lst->ngroup;
	c->gen = lst->gen;
	if (c->gen)
		c->gen->refs++;
	c->start_ms = gw_now_ms();
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	http_parser_init(&c->hp);
	http_resp_init(&c->hr);

	len = sizeof(c->peer);
	getpeername(fd, (struct sockaddr *)&c->peer, &len);
	len = sizeof(c->local);
	getsockname(fd, (struct sockaddr *)&c->local, &len);
	addr_text(&c->peer, c->peer_text, sizeof(c->peer_text));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	c->ssl = tls_ssl_new(lst->group[0], fd);
	if (!c->ssl) {
		gw_log_ssl_errors(GW_LOG_ERR, "SSL_new");
		conn_abort(c, "SSL_new failed");
		conn_maybe_free(c);
		return;
	}
	c->deadline_ms =
		c->start_ms +
		(uint64_t)(c->srv->handshake_timeout_ms > 0 ? c->srv->handshake_timeout_ms : 10000);
	conn_log(c, GW_LOG_DEBUG, "accepted from %s", c->peer_text);
	conn_step(c);
	conn_maybe_free(c);
}

/* --------------------------------------------------------------- the relay */

/*
 * Tier K moves the decrypted stream socket -> pipe -> socket with io_uring
 * SPLICE (the payload never enters userspace); KTLSGW_KTLS_RELAY=copy makes
 * it use recvmsg/send of plaintext instead (the kernel still does the
 * crypto), for comparisons.
 */
bool ktls_splice;

/*
 * Tier K: splice @len bytes from @in to @out once @in (or @out, per @events)
 * is ready. A POLL_ADD linked in front of the SPLICE keeps the io-wq thread
 * from meeting a non-blocking socket with nothing to read (EAGAIN).
 */
/* A POLL_ADD for @fd linked in front of the next SQE (tier K, see below). */
static void link_poll(struct conn *c, int fd, unsigned int events)
{
	struct io_uring_sqe *sqe = worker_sqe(c->w);

	io_uring_prep_poll_add(sqe, fd, events);
	io_uring_sqe_set_data64(sqe, OP_IGNORE);
	sqe->flags |= IOSQE_IO_LINK;
}

static void splice_op(struct conn *c, int in, int out, size_t len, unsigned int events,
		      enum op_kind kind)
{
	struct io_uring_sqe *sqe;

	link_poll(c, events == POLLIN ? in : out, events);
	sqe = conn_sqe(c, kind);
	io_uring_prep_splice(sqe, in, -1, out, -1, (unsigned int)len, SPLICE_F_MOVE);
}

/*
 * Tier K: how many client bytes the next read may splice (0: read them with
 * recvmsg). Stream mode splices everything; http mode the bulk of request
 * bodies (and everything after a 101), never a head, a chunk-size line or a
 * trailer, which the parser must see. A body's short tail is copied: a
 * splice is two io_uring ops and an io-wq hop, worth it for bulk only.
 */
#define GW_SPLICE_MIN 16384

static size_t splice_in_len(const struct conn *c)
{
	uint64_t n;

	if (c->state != CS_RELAY || c->p1[1] < 0 || c->p1_fill) /* pipes: tier K, splice on */
		return 0;
	if (c->srv->mode == GW_MODE_STREAM)
		return GW_PIPE_SIZE;
	n = http_passthrough_len(&c->hp);
	if (n < GW_SPLICE_MIN)
		return 0;
	return n > GW_PIPE_SIZE ? GW_PIPE_SIZE : (size_t)n;
}

/* Tier K: the backend's bytes go backend -> pipe -> client (all but an Upgrade answer). */
static bool splice_out(const struct conn *c)
{
	return c->p2[1] >= 0 && /* pipes exist on tier K with the splice relay only */
	       (c->srv->mode == GW_MODE_STREAM || c->hp.state != HTTP_S_UPGRADE_WAIT);
}

static void client_recv(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->crx_busy || c->client_eof || buf_avail(&c->c2b) || c->p1_fill ||
	    c->state == CS_CLOSING)
		return;
	/*
	 * While an Upgrade request waits for the backend's answer the client is
	 * not read: what it sent meanwhile (one read at most) is held by the
	 * parser, and nothing is appended to c2b under an in-flight send.
	 */
	if (c->hp.state == HTTP_S_UPGRADE_WAIT)
		return;
	if (c->tier_k) {
		size_t len = splice_in_len(c);

		if (len) {
			/* decrypted bytes go socket -> pipe -> backend in the kernel */
			splice_op(c, c->cfd, c->p1[1], len, POLLIN, OP_SPLICE_C_IN);
		} else {
			/* request heads are rewritten: read them, decrypted by the kernel */
			if (rx_buf(c, &c->crx, &c->iov.iov_base)) {
				conn_abort(c, "out of memory");
				return;
			}
			memset(&c->cmsg, 0, sizeof(c->cmsg));
			c->iov.iov_len = GW_RX_BUF;
			c->msg.msg_iov = &c->iov;
			c->msg.msg_iovlen = 1;
			c->msg.msg_control = c->cmsg;
			c->msg.msg_controllen = sizeof(c->cmsg);
			c->msg.msg_flags = 0;
			/*
			 * On a kTLS socket io_uring's recvmsg can complete with EAGAIN
			 * (seen on 6.1 with TLS 1.2 ChaCha20): wait for POLLIN first,
			 * and retry on EAGAIN.
			 */
			link_poll(c, c->cfd, POLLIN);
			sqe = conn_sqe(c, OP_RECV_CLIENT);
			io_uring_prep_recvmsg(sqe, c->cfd, &c->msg, 0);
			rx_select(c, sqe);
		}
		c->crx_busy = true;
		return;
	}
	if (c->rx_ahead) {
		/*
		 * Bytes read ahead with the handshake: a receive that completes
		 * at once (a NOP) decrypts them from the event loop, as any.
		 */
		io_uring_prep_nop(conn_sqe(c, OP_RECV_CLIENT));
		c->crx_busy = true;
		return;
	}
	if (prep_rx(c, OP_RECV_CLIENT, c->cfd, &c->crx)) {
		conn_abort(c, "out of memory");
		return;
	}
	c->crx_busy = true;
}

static void backend_recv(struct conn *c)
{
	if (c->brx_busy || c->backend_eof || c->bfd < 0 || c->state != CS_RELAY ||
	    c->finish_after_flush)
		return;
	if (splice_out(c)) {
		if (buf_avail(&c->b2c) || buf_avail(&c->b2c_later) || c->p2_fill || c->csend_busy)
			return;
		splice_op(c, c->bfd, c->p2[1], GW_PIPE_SIZE, POLLIN, OP_SPLICE_B_IN);
		c->brx_busy = true;
		return;
	}
	/*
	 * The next read may run while the client's send is in flight (its
	 * records queue in b2c_later): one buffer's worth ahead at most.
	 */
	if (buf_avail(&c->b2c_later) >= GW_RX_BUF)
		return;
	if (prep_rx(c, OP_RECV_BACKEND, c->bfd, &c->brx)) {
		conn_abort(c, "out of memory");
		return;
	}
	c->brx_busy = true;
}

/* Send what waits for the client (tier U: records, tier K: plaintext). */
static void client_flush(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->state == CS_CLOSING)
		return;
	if (c->csend_busy) {
		backend_recv(c); /* read on while the send is in flight */
		return;
	}
	if (!buf_avail(&c->b2c) && buf_avail(&c->b2c_later)) {
		struct buf t = c->b2c;

		c->b2c = c->b2c_later;
		c->b2c_later = t;
	}
	if (!buf_avail(&c->b2c)) {
		/* nothing kept between responses beyond a small buffer */
		buf_release(c->w, &c->b2c);
		buf_release(c->w, &c->b2c_later);
		if (c->tier_k && c->close_notify_due && !c->p2_fill) {
			c->close_notify_due = false;
			ktls_send_close_notify(c);
			return; /* on_close_notify() comes back here */
		}
		if (c->finish_after_flush) {
			if (c->p2_fill)
				return; /* the last spliced bytes are still on their way */
			conn_abort(c, c->close_reason ? c->close_reason : "done");
			return;
		}
		backend_recv(c);
		return;
	}
	sqe = conn_sqe(c, OP_SEND_CLIENT);
	io_uring_prep_send(sqe, c->cfd, buf_head(&c->b2c), buf_avail(&c->b2c), MSG_NOSIGNAL);
	c->csend_busy = true;
	backend_recv(c);
}

static void backend_flush(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->bsend_busy || c->state == CS_CLOSING)
		return;
	if (c->bfd < 0) {
		/* http: no backend before the first request (as nginx) */
		if (c->state != CS_RELAY)
			return; /* connecting */
		if (buf_avail(&c->c2b) && c->bpool && bpool_take(c)) {
			conn_log(c, GW_LOG_DEBUG, "backend %s: kept connection reused",
				 c->srv->proxy_pass);
			backend_flush(c);
			backend_recv(c);
		} else if (buf_avail(&c->c2b))
			backend_connect(c);
		else if (c->client_eof)
			conn_finish(c, "client closed");
		else
			client_recv(c);
		return;
	}
	if (!buf_avail(&c->c2b)) {
		if (c->client_eof && backend_reusable(c)) {
			/* every answer is out: the backend stays open for the pool */
			c->bkeep = true;
			conn_finish(c, "client closed");
			return;
		}
		if (c->client_eof && !c->backend_shut && c->state == CS_RELAY) {
			/* the client finished sending: pass the half-close on */
			c->bkeep = false;
			sqe = conn_sqe(c, OP_SHUT_BACKEND);
			io_uring_prep_shutdown(sqe, c->bfd, SHUT_WR);
			c->backend_shut = true;
			c->bsend_busy = true;
			return;
		}
		client_recv(c);
		return;
	}
	c->bkeep = false; /* a request after the decision to keep it: not between exchanges */
	sqe = conn_sqe(c, OP_SEND_BACKEND);
	io_uring_prep_send(sqe, c->bfd, buf_head(&c->c2b), buf_avail(&c->c2b), MSG_NOSIGNAL);
	c->bsend_busy = true;
}

/*
 * Encrypt all of @p into the write BIO. SSL_MODE_ENABLE_PARTIAL_WRITE makes
 * SSL_write() stop after one record (e.g. with a negotiated
 * max_fragment_length); the relay BIO never blocks, so loop. Returns 0 or -EPROTO.
 */
static int ssl_write_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);

		if (w <= 0)
			return -EPROTO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Tier K: the close_notify record through the kernel (TLS_SET_RECORD_TYPE
 * 21), sent so that it also flushes the records before it.
 *
 * On 6.1, a kTLS send returns once the record is encrypted and queued in
 * the TLS layer, not in TCP: with a full socket buffer the kernel keeps it
 * on its own list and pushes it when TCP has room. close() frees what is
 * still on that list (tls_sk_proto_close -> tls_sw_release_resources_tx
 * tries once with the original MSG_DONTWAIT and drops the rest), so the
 * client would lose the tail of the stream. A send WITHOUT MSG_DONTWAIT
 * pushes every earlier record first and returns only when all of them and
 * the close_notify are in TCP (which then delivers them after close()).
 * So the socket is made blocking (SO_SNDTIMEO bounds the wait) and the
 * sendmsg runs in io_uring's worker thread (IOSQE_ASYNC), never in the loop.
 */
static void ktls_send_close_notify(struct conn *c)
{
	static const unsigned char alert[2] = {1, 0}; /* warning, close_notify */
	struct timeval tv = {.tv_sec = (time_t)(idle_ms(c) / 1000)};
	struct io_uring_sqe *sqe;
	struct cmsghdr *cm;
	int fl = fcntl(c->cfd, F_GETFL);

	if (tv.tv_sec <= 0 || tv.tv_sec > 600)
		tv.tv_sec = 60;
	if (fl < 0 || fcntl(c->cfd, F_SETFL, fl & ~O_NONBLOCK) ||
	    setsockopt(c->cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		conn_log(c, GW_LOG_WARN, "close_notify: blocking send not set up: %s",
			 strerror(errno));
	c->cn_iov.iov_base = (void *)alert;
	c->cn_iov.iov_len = sizeof(alert);
	memset(&c->cn_msg, 0, sizeof(c->cn_msg));
	memset(c->cn_cmsg, 0, sizeof(c->cn_cmsg));
	c->cn_msg.msg_iov = &c->cn_iov;
	c->cn_msg.msg_iovlen = 1;
	c->cn_msg.msg_control = c->cn_cmsg;
	c->cn_msg.msg_controllen = sizeof(c->cn_cmsg);
	cm = CMSG_FIRSTHDR(&c->cn_msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = 21; /* alert */

	/* on_client_send() hands it to on_close_notify() */
	sqe = conn_sqe(c, OP_SEND_CLIENT);
	io_uring_prep_sendmsg(sqe, c->cfd, &c->cn_msg, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_ASYNC;
	c->csend_busy = true;
	c->cn_busy = true;
}

static void on_close_notify(struct conn *c, int res)
{
	int fl = fcntl(c->cfd, F_GETFL);

	c->csend_busy = false;
	c->cn_busy = false;
	if (fl >= 0)
		fcntl(c->cfd, F_SETFL, fl | O_NONBLOCK);
	if (c->state == CS_CLOSING)
		return;
	if (res != 2) {
		conn_log(c, GW_LOG_INFO, "client %s: close_notify not sent: %s", c->peer_text,
			 res < 0 ? strerror(-res) : "short write");
		conn_abort(c, "client write error");
		return;
	}
	client_flush(c);
}

static void queue_close_notify(struct conn *c)
{
	if (c->close_notify_sent)
		return;
	c->close_notify_sent = true;
	if (c->tier_k) {
		c->close_notify_due = true; /* sent by client_flush() after what is queued */
		return;
	}
	SSL_shutdown(c->ssl);
	ERR_clear_error();
}

/* Plaintext for the client: OpenSSL encrypts it (tier U) or the kernel does (tier K). */
static int client_write_plain(struct conn *c, const char *p, size_t n)
{
	if (c->tier_k)
		return buf_append(b2c_tail(c), p, n);
	return ssl_write_all(c, p, n);
}

/* Queue close_notify and close once everything for the client has left. */
static void conn_finish(struct conn *c, const char *reason)
{
	if (c->state == CS_CLOSING)
		return;
	if (!c->close_reason)
		c->close_reason = reason;
	queue_close_notify(c);
	c->finish_after_flush = true;
	client_flush(c);
}

/* Answer @status with nginx's page and close (ssl_verify_failure http, 502, 4xx). */
static void conn_answer_error(struct conn *c, int status, const char *reason)
{
	struct buf page = {};

	if (c->bfd >= 0) {
		/* nothing more goes to the backend; its pending answer is dropped */
		shutdown(c->bfd, SHUT_RDWR);
	}
	if (http_error_response(status, &page) == 0 && client_write_plain(c, page.data, page.len))
		ERR_clear_error();
	buf_free(&page);
	c->client_eof = true;
	conn_finish(c, reason);
}

/*
 * nginx's ngx_http_set_virtual_server() for a TLS connection: does the Host
 * of this request belong to the server{} the connection was made for?
 * Returns 0, or 421 (Misdirected Request). Where nginx would hand the
 * request to another server{} without client verification, ktlsgw answers
 * 421 too: one connection, one server{} (README, differences).
 */
static int host_check(struct conn *c, const char *host)
{
	const struct tls_srv *hs;

	if (!host || c->ngroup < 2)
		return 0; /* nginx has no virtual names for a lone server */
	if (c->sni_matched && strcmp(host, c->sni) == 0)
		return 0;
	hs = tls_srv_pick(c->group, c->ngroup, host);
	if (!hs)
		hs = c->group[0];
	if (c->sni_matched && tls_srv_server(hs)->verify != GW_VERIFY_OFF)
		return 421; /* nginx: "client attempted to request the server name different ..." */
	if (tls_srv_server(hs) == c->srv)
		return 0;
	return 421;
}

static int inject_headers(void *arg, const char *xff, const char *host, struct buf *out)
{
	struct conn *c = arg;
	int status = host_check(c, host);

	if (status) {
		conn_log(c, GW_LOG_INFO,
			 "client %s requested host \"%s\", not served by the server{} negotiated "
			 "(SNI \"%s\"): 421",
			 c->peer_text, host, c->sni);
		return status;
	}
	struct gw_var_ctx ctx = {
		.id = &c->ident,
		.peer = (const struct sockaddr *)&c->peer,
		.local = (const struct sockaddr *)&c->local,
		.xff = xff,
		.host = host,
		.server_name = c->srv->nserver_names ? c->srv->server_names[0] : "",
	};

	for (size_t i = 0; i < c->srv->nheaders; i++) {
		const struct gw_header *h = &c->srv->headers[i];
		size_t mark = out->len;

		if (buf_puts(out, h->name) || buf_append(out, ": ", 2))
			return -ENOMEM;
		size_t vstart = out->len;
		if (tmpl_render(&h->value, &ctx, out))
			return -ENOMEM;
		if (out->len == vstart) {
			/* nginx does not send a header whose value is empty */
			out->len = mark;
			continue;
		}
		if (buf_append(out, "\r\n", 2))
			return -ENOMEM;
	}
	return 0;
}

/* Plaintext from the client: rewrite (http) or pass (stream) into c2b. */
static int client_plain(struct conn *c, const char *p, size_t n)
{
	int status = 0, err;

	c->bytes_up += n;
	if (c->state == CS_REJECT) {
		/* only wait for a complete request head before answering */
		struct buf sink = {};

		err = http_feed(&c->hp, &c->rw, p, n, &sink, &status);
		buf_free(&sink);
		if (err || c->hp.requests > 0 || c->hp.state != HTTP_S_HEAD) {
			conn_answer_error(c, c->reject_status, c->close_reason);
			return -ECANCELED;
		}
		return 0;
	}
	if (c->srv->mode == GW_MODE_STREAM)
		return buf_append(&c->c2b, p, n);
	if (c->bpool && !c->b_retry && backend_reusable(c)) {
		/*
		 * A new exchange on an idle backend connection: if the backend
		 * closed it meanwhile, the request goes again on a new one.
		 */
		c->b_retry = true;
		buf_reset(&c->b_sent);
	}
	err = http_feed(&c->hp, &c->rw, p, n, &c->c2b, &status);
	if (err == -EBADMSG) {
		conn_log(c, GW_LOG_INFO, "client sent an invalid request: answering %d", status);
		conn_answer_error(c, status, "invalid request");
		return -ECANCELED;
	}
	return err;
}

/* Decrypt what the client sent (now in the read BIO) and forward it. */
static void client_decrypt(struct conn *c)
{
	char plain[GW_IO_BUF];

	for (;;) {
		int n = SSL_read(c->ssl, plain, sizeof(plain));

		if (n > 0) {
			int err = client_plain(c, plain, (size_t)n);

			if (err == -ECANCELED)
				return; /* answered and finishing */
			if (err) {
				conn_abort(c, "out of memory");
				return;
			}
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_ZERO_RETURN:
			conn_log(c, GW_LOG_DEBUG, "client sent close_notify");
			c->client_eof = true;
			break;
		default:
			conn_log(c, GW_LOG_INFO, "TLS error from client %s", c->peer_text);
			gw_log_ssl_errors(GW_LOG_INFO, "SSL_read");
			conn_abort(c, "TLS error from client");
			return;
		}
		break;
	}
	client_flush(c); /* e.g. a KeyUpdate answer */
	if (c->state == CS_CLOSING)
		return;
	if (c->state == CS_REJECT) {
		if (c->client_eof)
			conn_finish(c, c->close_reason);
		else
			client_recv(c);
		return;
	}
	backend_flush(c);
}

/*
 * Tier K: a record that is not application data (splice stopped with
 * EINVAL, or recvmsg said so): close_notify ends the client's stream, any
 * other alert closes, a handshake record (a TLS 1.3 KeyUpdate: 6.1 cannot
 * rekey) closes with a counted reason. Nothing of it reaches the backend.
 * Returns 0 to go on, -ECANCELED when the connection is closing.
 */
static int ktls_control(struct conn *c, unsigned char type, const unsigned char *p, size_t n)
{
	if (type == 21 && n >= 2 && p[1] == 0) {
		conn_log(c, GW_LOG_DEBUG, "client sent close_notify");
		c->client_eof = true;
		return 0;
	}
	if (type == 21) {
		conn_log(c, GW_LOG_INFO, "client %s sent TLS alert %u (level %u)", c->peer_text,
			 n >= 2 ? p[1] : 0, n >= 1 ? p[0] : 0);
		conn_abort(c, "TLS alert from client");
		return -ECANCELED;
	}
	if (type == 22 && n >= 1 && p[0] == 24) {
		c->w->stats.ktls_keyupdate++;
		conn_log(c, GW_LOG_WARN,
			 "client %s sent a TLS 1.3 KeyUpdate: kernel TLS on this kernel cannot "
			 "rekey, "
			 "closing",
			 c->peer_text);
		conn_abort(c, "client KeyUpdate (kTLS cannot rekey)");
		return -ECANCELED;
	}
	conn_log(c, GW_LOG_INFO, "client %s sent an unexpected TLS record (type %u)", c->peer_text,
		 type);
	conn_abort(c, "unexpected TLS record");
	return -ECANCELED;
}

/* The record type of a tier K recvmsg (23 when the kernel gave none). */
static unsigned char ktls_record_type(struct msghdr *msg)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			return *CMSG_DATA(cm);
	return 23;
}

/* Tier K: plaintext (or a control record) read with recvmsg into crx. */
static void ktls_client_input(struct conn *c, int res, const char *data)
{
	unsigned char type = ktls_record_type(&c->msg);
	int err;

	if (type != 23) {
		if (ktls_control(c, type, (const unsigned char *)data, (size_t)res))
			return;
	} else {
		err = client_plain(c, data, (size_t)res);
		if (err == -ECANCELED)
			return;
		if (err) {
			conn_abort(c, "out of memory");
			return;
		}
	}
	if (c->state == CS_REJECT) {
		if (c->client_eof)
			conn_finish(c, c->close_reason);
		else
			client_recv(c);
		return;
	}
	backend_flush(c);
}

static void on_client_recv(struct conn *c, int res, const char *data)
{
	c->crx_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (c->rx_ahead) {
		/* client_recv()'s NOP: the records read ahead, none from the socket */
		c->rx_ahead = false;
		client_decrypt(c);
		return;
	}
	if (res == -ENOBUFS)
		c->w->rx_nobufs++;
	if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
		client_recv(c); /* readiness without a record yet: wait again */
		return;
	}
	if (res < 0) {
		if (res != -ECONNRESET)
			conn_log(c, GW_LOG_INFO, "client %s: read: %s", c->peer_text,
				 strerror(-res));
		conn_abort(c, res == -ECONNRESET ? "client reset the connection"
						 : "client read error");
		return;
	}
	touch(c);
	if (res == 0) {
		/* TCP FIN without close_notify: treat as end of the client's stream */
		conn_log(c, GW_LOG_DEBUG, "client closed (FIN)");
		c->client_eof = true;
		if (c->state == CS_REJECT) {
			conn_abort(c, c->close_reason);
			return;
		}
		backend_flush(c);
		return;
	}
	if (c->tier_k) {
		ktls_client_input(c, res, data);
		return;
	}
	c->rin = data;
	c->rin_len = (size_t)res;
	client_decrypt(c);
	/* a partial record stays until the rest arrives; the buffer goes back */
	if (c->rin_len && c->state != CS_CLOSING && buf_append(&c->rin_left, c->rin, c->rin_len))
		conn_abort(c, "out of memory");
	c->rin = NULL;
	c->rin_len = 0;
	buf_trim(&c->rin_left, 4096);
}

static void on_client_send(struct conn *c, int res)
{
	if (c->cn_busy) {
		on_close_notify(c, res);
		return;
	}
	c->csend_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (res < 0) {
		conn_abort(c, "client write error");
		return;
	}
	touch(c);
	buf_consume(&c->b2c, (size_t)res);
	client_flush(c);
}

/* Stream mode: both sides closed and everything for the backend sent: done. */
static void stream_maybe_done(struct conn *c)
{
	if (c->client_eof && c->backend_eof && c->backend_shut && !c->bsend_busy &&
	    !buf_avail(&c->c2b))
		conn_finish(c, "both sides closed");
}

/*
 * After an Upgrade request: the backend's first bytes say whether it
 * switched protocols ("HTTP/1.x 101"). They may come in pieces: keep the
 * first 12 until they decide. Returns 0, or -ECANCELED if the conn is
 * finishing.
 */
static int upgrade_check(struct conn *c, const char *p, size_t n)
{
	static const char v11[] = "HTTP/1.1 101", v10[] = "HTTP/1.0 101";
	struct buf held = {};
	size_t take = MIN(n, sizeof(c->upg_peek) - c->upg_len);
	int status = 0, err;
	bool sw;

	memcpy(c->upg_peek + c->upg_len, p, take);
	c->upg_len += take;
	sw = c->upg_len >= 12 &&
	     (memcmp(c->upg_peek, v11, 12) == 0 || memcmp(c->upg_peek, v10, 12) == 0);
	if (c->upg_len < 12 && (memcmp(c->upg_peek, v11, c->upg_len) == 0 ||
				memcmp(c->upg_peek, v10, c->upg_len) == 0))
		return 0; /* not decided yet */
	c->upg_len = 0;
	/* never append to c2b under an in-flight send: stage, then append when idle */
	err = http_upgrade_done(&c->hp, &c->rw, sw, &held, &status);
	if (!err &&
	    buf_append(c->bsend_busy ? &c->c2b_later : &c->c2b, buf_head(&held), buf_avail(&held)))
		err = -ENOMEM;
	buf_free(&held);
	if (err) {
		conn_answer_error(c, status ? status : 400, "invalid request");
		return -ECANCELED;
	}
	backend_flush(c);
	return 0;
}

/*
 * Backend bytes read into userspace (tier U, or an Upgrade answer on tier
 * K): peeked for "101" while an Upgrade waits, then queued for the client.
 * Returns 0, or -ECANCELED when the connection is closing.
 */
static int backend_data(struct conn *c, const char *p, size_t n)
{
	if (c->b_retry) {
		/* the kept connection answers: no retry from here */
		c->b_retry = false;
		buf_free(&c->b_sent);
	}
	if (c->bpool && http_resp_feed(&c->hr, &c->hp, p, n)) {
		conn_abort(c, "out of memory");
		return -ECANCELED;
	}
	if (c->hp.state == HTTP_S_UPGRADE_WAIT && upgrade_check(c, p, n))
		return -ECANCELED;
	if (client_write_plain(c, p, n)) {
		gw_log_ssl_errors(GW_LOG_ERR, "SSL_write");
		conn_abort(c, "TLS write error");
		return -ECANCELED;
	}
	if (c->hr.close_due) {
		/*
		 * The client asked to close (its Connection: close need not have
		 * reached the backend, proxy_set_header Connection ""): it is
		 * answered, so close it, as nginx does; the backend may stay.
		 */
		c->hr.close_due = false;
		c->bkeep = backend_reusable(c);
		conn_finish(c, "client asked to close");
		return -ECANCELED;
	}
	return 0;
}

/*
 * A connection from the pool failed before any answer (the backend closed
 * it as it was taken): connect anew and send the same bytes, as nginx does
 * for a cached connection. Not for POST, PATCH and LOCK requests, and not
 * past 64 KiB sent. Returns true when retried.
 */
static bool backend_retry(struct conn *c)
{
	struct buf all = {};

	if (!c->b_retry || c->bsend_busy || c->hp.rq_lost || !c->hp.rq_count)
		return false; /* nothing sent that waits for an answer: backend_gone() */
	for (unsigned int i = 0; i < c->hp.rq_count; i++)
		if (c->hp.rq[(c->hp.rq_first + i) % HTTP_RQ_MAX] & HTTP_RQ_NONIDEM)
			return false;
	if (buf_append(&all, buf_head(&c->b_sent), buf_avail(&c->b_sent)) ||
	    buf_append(&all, buf_head(&c->c2b), buf_avail(&c->c2b)) ||
	    buf_append(&all, buf_head(&c->c2b_later), buf_avail(&c->c2b_later))) {
		buf_free(&all);
		return false;
	}
	conn_log(c, GW_LOG_INFO,
		 "backend %s closed a kept connection before answering: sending the request on "
		 "a new one",
		 c->srv->proxy_pass);
	close(c->bfd);
	c->bfd = -1;
	buf_free(&c->c2b);
	c->c2b = all;
	buf_reset(&c->c2b_later);
	buf_free(&c->b_sent);
	c->b_retry = false;
	c->backend_eof = false;
	c->backend_shut = false;
	c->w->stats.backend_retried++;
	backend_connect(c);
	return true;
}

/*
 * The backend closed (or failed). Where responses are tracked and a request
 * waits with nothing of its answer sent yet, the client gets nginx's 502,
 * else the connection finishes after what was relayed.
 */
static void backend_gone(struct conn *c, const char *reason)
{
	if (c->bpool && c->hp.state == HTTP_S_HEAD && http_resp_answered(&c->hr, &c->hp) &&
	    !c->bsend_busy && !buf_avail(&c->c2b) && !buf_avail(&c->c2b_later)) {
		/*
		 * Between exchanges (its keep-alive timeout, or it said close):
		 * the client stays, its next request gets another connection.
		 */
		conn_log(c, GW_LOG_DEBUG, "backend %s closed an idle connection",
			 c->srv->proxy_pass);
		close(c->bfd);
		c->bfd = -1;
		c->backend_eof = false;
		c->backend_shut = false;
		c->b_retry = false;
		c->hr.close = false;
		c->hp.close_sent = false;
		buf_free(&c->b_sent);
		backend_flush(c); /* the next client read, or finish if the client is gone */
		return;
	}
	if (c->bpool && c->hp.rq_count && c->hr.state == HR_HEAD && !c->hr.head.len) {
		conn_log(c, GW_LOG_ERR, "backend %s closed the connection before answering",
			 c->srv->proxy_pass);
		conn_answer_error(c, 502, reason);
		return;
	}
	conn_finish(c, reason);
}

static void on_backend_recv(struct conn *c, int res, const char *data)
{
	c->brx_busy = false;
	if (res != -ECANCELED)
		c->bkeep = false; /* it said something after all: not between exchanges */
	if (c->state == CS_CLOSING)
		return;
	if (c->finish_after_flush)
		return; /* an error page or close_notify is queued: nothing may follow it */
	if (res == -ENOBUFS)
		c->w->rx_nobufs++;
	if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
		backend_recv(c);
		return;
	}
	if (res <= 0 && backend_retry(c))
		return;
	if (res < 0) {
		conn_log(c, GW_LOG_ERR, "backend %s: recv: %s", c->srv->proxy_pass, strerror(-res));
		backend_gone(c, "backend read error");
		return;
	}
	touch(c);
	if (res == 0) {
		c->backend_eof = true;
		if (c->srv->mode == GW_MODE_HTTP) {
			backend_gone(c, "backend closed");
			return;
		}
		/* stream half-close: tell the client, keep relaying what it still sends */
		queue_close_notify(c);
		client_flush(c);
		if (c->state != CS_CLOSING)
			stream_maybe_done(c);
		return;
	}
	c->bytes_down += (uint64_t)res;
	if (backend_data(c, data, (size_t)res))
		return;
	client_flush(c);
}

static void on_backend_send(struct conn *c, int res)
{
	c->bsend_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (res < 0) {
		if (c->b_retry && c->brx_busy)
			return; /* the receive reports the closed connection and retries */
		conn_log(c, GW_LOG_ERR, "backend %s: send: %s", c->srv->proxy_pass, strerror(-res));
		conn_finish(c, "backend write error");
		return;
	}
	touch(c);
	if (c->b_retry && (buf_avail(&c->b_sent) + (size_t)res > 65536 ||
			   buf_append(&c->b_sent, buf_head(&c->c2b), (size_t)res))) {
		c->b_retry = false; /* too much to send again */
		buf_free(&c->b_sent);
	}
	buf_consume(&c->c2b, (size_t)res);
	if (!buf_avail(&c->c2b) && buf_avail(&c->c2b_later)) {
		struct buf t = c->c2b;

		c->c2b = c->c2b_later;
		c->c2b_later = t;
	}
	backend_flush(c);
}

static void on_backend_shut(struct conn *c, int res)
{
	c->bsend_busy = false;
	if (c->state == CS_CLOSING)
		return;
	/* nothing more will come from the client: keep relaying the answer */
	if (c->backend_eof)
		stream_maybe_done(c);
}

/* Tier K: client -> pipe done; move the bytes on to the backend. */
static void on_splice_c_in(struct conn *c, int res)
{
	c->crx_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (res == -EAGAIN || res == -EINTR) {
		client_recv(c);
		return;
	}
	if (res == -EINVAL) {
		/* the next record is not application data: read it with its type */
		char ctrl[CMSG_SPACE(1)], tmp[GW_IO_BUF];
		struct iovec iov = {.iov_base = tmp, .iov_len = sizeof(tmp)};
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctrl,
			.msg_controllen = sizeof(ctrl),
		};
		ssize_t n = recvmsg(c->cfd, &msg, MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			client_recv(c);
			return;
		}
		if (n <= 0) {
			conn_abort(c, n == 0 ? "client closed" : "client read error");
			return;
		}
		touch(c);
		unsigned char type = ktls_record_type(&msg);

		if (type == 23) {
			/* data after all (a race with the splice): through the copy path */
			int err = client_plain(c, tmp, (size_t)n);

			if (err == -ECANCELED)
				return;
			if (err) {
				conn_abort(c, "out of memory");
				return;
			}
		} else if (ktls_control(c, type, (unsigned char *)tmp, (size_t)n)) {
			return;
		}
		backend_flush(c);
		return;
	}
	if (res < 0) {
		conn_log(c, GW_LOG_INFO, "client %s: splice: %s", c->peer_text, strerror(-res));
		conn_abort(c, res == -ECONNRESET ? "client reset the connection"
						 : "client read error");
		return;
	}
	touch(c);
	if (res == 0) {
		c->client_eof = true;
		backend_flush(c);
		return;
	}
	c->bytes_up += (uint64_t)res;
	c->spliced_up += (uint64_t)res;
	if (c->srv->mode == GW_MODE_HTTP)
		http_passthrough_done(&c->hp, (uint64_t)res);
	c->p1_fill += (size_t)res;
	splice_op(c, c->p1[0], c->bfd, c->p1_fill, POLLOUT, OP_SPLICE_B_OUT);
	c->bsend_busy = true;
}

/* Tier K: pipe -> backend done. */
static void on_splice_b_out(struct conn *c, int res)
{
	c->bsend_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (res == -EAGAIN || res == -EINTR)
		res = 0;
	else if (res <= 0) {
		conn_log(c, GW_LOG_ERR, "backend %s: splice: %s", c->srv->proxy_pass,
			 strerror(res ? -res : EPIPE));
		conn_finish(c, "backend write error");
		return;
	}
	touch(c);
	c->p1_fill -= (size_t)res;
	if (c->p1_fill) {
		splice_op(c, c->p1[0], c->bfd, c->p1_fill, POLLOUT, OP_SPLICE_B_OUT);
		c->bsend_busy = true;
		return;
	}
	backend_flush(c); /* half-close when the client is done, else the next splice */
}

/* Tier K: backend -> pipe done; on to the client (encrypted by the kernel). */
static void on_splice_b_in(struct conn *c, int res)
{
	c->brx_busy = false;
	if (c->state == CS_CLOSING || c->finish_after_flush)
		return;
	if (res == -EAGAIN || res == -EINTR) {
		backend_recv(c);
		return;
	}
	if (res < 0) {
		conn_log(c, GW_LOG_ERR, "backend %s: splice: %s", c->srv->proxy_pass,
			 strerror(-res));
		conn_finish(c, "backend read error");
		return;
	}
	touch(c);
	if (res == 0) {
		c->backend_eof = true;
		if (c->srv->mode == GW_MODE_HTTP) {
			conn_finish(c, "backend closed");
			return;
		}
		queue_close_notify(c);
		client_flush(c);
		if (c->state != CS_CLOSING)
			stream_maybe_done(c);
		return;
	}
	c->bytes_down += (uint64_t)res;
	if (c->srv->mode == GW_MODE_HTTP && c->hp.state == HTTP_S_UPGRADE_WAIT) {
		/*
		 * An Upgrade request was parsed while this splice was in flight: its
		 * answer must be peeked for "101", so take the bytes out of the pipe
		 * and go through the copy path.
		 */
		char tmp[GW_IO_BUF];

		for (size_t left = (size_t)res; left;) {
			ssize_t k = read(c->p2[0], tmp, MIN(left, sizeof(tmp)));

			if (k <= 0) {
				conn_abort(c, "pipe read error");
				return;
			}
			left -= (size_t)k;
			if (backend_data(c, tmp, (size_t)k))
				return;
		}
		client_flush(c);
		return;
	}
	c->spliced_down += (uint64_t)res;
	c->p2_fill += (size_t)res;
	splice_op(c, c->p2[0], c->cfd, c->p2_fill, POLLOUT, OP_SPLICE_C_OUT);
	c->csend_busy = true;
}

/* Tier K: pipe -> client done. */
static void on_splice_c_out(struct conn *c, int res)
{
	c->csend_busy = false;
	if (c->state == CS_CLOSING)
		return;
	if (res == -EAGAIN || res == -EINTR)
		res = 0;
	else if (res <= 0) {
		conn_abort(c, "client write error");
		return;
	}
	touch(c);
	c->p2_fill -= (size_t)res;
	if (c->p2_fill) {
		splice_op(c, c->p2[0], c->cfd, c->p2_fill, POLLOUT, OP_SPLICE_C_OUT);
		c->csend_busy = true;
		return;
	}
	client_flush(c); /* close_notify or finish if due, else the next backend read */
}

/* ---------------------------------------------------- handshake and connect */

static void relay_start(struct conn *c)
{
	int err;

	c->state = CS_RELAY;
	touch(c);
	if (c->srv->mode == GW_MODE_STREAM && c->srv->proxy_protocol) {
		if (c->srv->proxy_protocol_version == 1)
			err = pp1_encode((struct sockaddr *)&c->peer, (struct sockaddr *)&c->local,
					 &c->c2b);
		else
			err = pp2_encode((struct sockaddr *)&c->peer, (struct sockaddr *)&c->local,
					 &c->ident, c->srv->proxy_protocol_tlv_cert, &c->c2b);
		if (err) {
			conn_abort(c, "PROXY header encoding failed");
			return;
		}
	}
	backend_flush(c); /* sends the PROXY header or posts the first client recv */
	backend_recv(c);
}

/* No backend connection for @c: http answers 502 (its request has arrived: as nginx). */
static void backend_failed(struct conn *c, const char *reason)
{
	if (c->srv->mode == GW_MODE_HTTP)
		conn_answer_error(c, 502, reason);
	else
		conn_finish(c, reason);
}

static void on_connect(struct conn *c, int res)
{
	if (c->state == CS_CLOSING || c->finish_after_flush)
		return; /* closing, or answered already (504 after the connect timeout) */
	if (res < 0) {
		conn_log(c, GW_LOG_ERR, "connect() to backend %s failed (%d: %s) for client %s",
			 c->srv->proxy_pass, -res, strerror(-res), c->peer_text);
		backend_failed(c, "backend connect failed");
		return;
	}
	conn_log(c, GW_LOG_DEBUG, "backend %s connected", c->srv->proxy_pass);
	c->b_born_ms = gw_now_ms();
	c->b_reqs = 0;
	c->b_req0 = c->hp.requests - c->hp.rq_count; /* earlier ones went elsewhere */
	relay_start(c);
}

static int make_pipe(int p[2])
{
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	/* room for a few records per splice; the default 64 KiB also works */
	fcntl(p[0], F_SETPIPE_SZ, GW_PIPE_SIZE);
	return 0;
}

static void backend_connect(struct conn *c)
{
	const struct gw_server *s = c->srv;
	struct io_uring_sqe *sqe;

	/*
	 * Tier K splices through two pipes, made with the backend connection:
	 * an idle http client holds no pipe (4 descriptors fewer).
	 */
	if (c->tier_k && ktls_splice && c->p1[0] < 0 && (make_pipe(c->p1) || make_pipe(c->p2))) {
		conn_log(c, GW_LOG_ERR, "pipe: %s", strerror(errno));
		backend_failed(c, "no pipe for the splice relay");
		return;
	}
	c->bfd = socket(s->backend.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->bfd < 0) {
		conn_log(c, GW_LOG_ERR, "backend socket: %s", strerror(errno));
		backend_failed(c, "backend socket failed");
		return;
	}
	int one = 1;
	setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = CS_CONNECTING;
	c->deadline_ms =
		gw_now_ms() +
		(uint64_t)(s->proxy_connect_timeout_ms > 0 ? s->proxy_connect_timeout_ms : 60000);
	sqe = conn_sqe(c, OP_CONNECT);
	io_uring_prep_connect(sqe, c->bfd, (struct sockaddr *)&s->backend, s->backendlen);
}

/*
 * Switch the finished handshake onto the relay BIO (tier U). With read-ahead
 * (no server{} of the listener can go tier K), what the client sent after
 * its Finished in the same flight, a TLS 1.3 request say, may already sit in
 * OpenSSL's read buffer: the BIO swap keeps it there, and the first
 * client_recv() decrypts it before reading the socket again.
 */
static int use_relay_bio(struct conn *c)
{
	bool ahead = SSL_has_pending(c->ssl);
	BIO *b;

	/* without read-ahead nothing past Finished can sit in OpenSSL */
	if (ahead && !SSL_get_read_ahead(c->ssl))
		return -EPROTO;
	b = relay_bio_new(c);
	if (!b)
		return -ENOMEM;
	SSL_set_bio(c->ssl, b, b); /* one reference for both directions */
	/* the relay hands OpenSSL whole receives: no read-ahead needed */
	SSL_set_read_ahead(c->ssl, 0);
	c->rx_ahead = ahead;
	return 0;
}

/*
 * After the handshake: tier K when OpenSSL (and ktls_finish() for TLS 1.3
 * RX) put both directions into the kernel, else tier U on the relay BIO.
 * Decided before the verification outcome is acted on, because once a key
 * is in the kernel every byte for this client must go through it (an error
 * page included). Tier K frees the SSL: call after the identity is taken and
 * everything logged that reads the SSL. Returns 0, or -ECANCELED when the
 * connection was closed.
 */
static int choose_tier(struct conn *c)
{
	char why[160];
	int r = 0;

	if (ktls_possible(c->srv))
		r = ktls_finish(c->ssl, c->cfd, why, sizeof(why));
	if (r < 0) {
		/* a key is in the kernel but not both: never write to this socket */
		conn_log(c, GW_LOG_ERR, "kTLS for %s failed: %s; closing", c->peer_text, why);
		conn_abort(c, "kTLS key installation failed");
		return -ECANCELED;
	}
	if (r == 1) {
		conn_log(c, GW_LOG_INFO, "kTLS: %s", why);
		c->tier_k = true;
		c->w->stats.tier_k++;
		/*
		 * The keys are in the kernel, the session is in the cache (if any)
		 * and the identity holds its own references: OpenSSL's state, most
		 * of what an idle connection costs, is not needed any more.
		 */
		conn_ssl_free(c);
		return 0;
	}
	if (ktls_kernel && c->srv->ktls == GW_KTLS_ON) {
		conn_log(c, GW_LOG_ERR, "ssl_ktls on: %s; closing", why);
		conn_abort(c, "ssl_ktls on: kernel TLS not possible for this connection");
		return -ECANCELED;
	}
	if (ktls_kernel && c->srv->ktls == GW_KTLS_AUTO) {
		c->w->stats.tier_u_fallback++;
		if (!c->w->fallback_logged) {
			/* once per process; the counter keeps the total */
			c->w->fallback_logged = true;
			conn_log(c, GW_LOG_NOTICE, "tier U for this connection: %s", why);
		}
	}
	if (use_relay_bio(c)) {
		conn_abort(c, "unexpected buffered TLS data after the handshake");
		return -ECANCELED;
	}
	return 0;
}

static void handshake_done(struct conn *c)
{
	int status = 0;
	int dec;

	c->srv = tls_srv_server(tls_ssl_srv(c->ssl));
	{
		const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);

		if (name && tls_name_normalize(name, strlen(name), c->sni, sizeof(c->sni)))
			c->sni_matched = c->ngroup > 1 && tls_srv_pick(c->group, c->ngroup, c->sni);
	}
	dec = tls_verify_decision(c->ssl, &status);
	if (identity_from_ssl(c->ssl, &c->ident)) {
		conn_abort(c, "identity: out of memory");
		return;
	}
	if (dec)
		conn_log(c, GW_LOG_INFO,
			 "client %s rejected: %s (ssl_verify_failure http: answering %d)",
			 c->peer_text, tls_ssl_reason(c->ssl), status);
	if (choose_tier(c))
		return;
	c->rw.headers = c->srv->headers;
	c->rw.nheaders = c->srv->nheaders;
	c->rw.inject = inject_headers;
	c->rw.inject_arg = c;
	c->rw.header_buffer_count = c->srv->header_buffer_count;
	c->rw.header_buffer_size = c->srv->header_buffer_size;
	c->bpool = c->srv->mode == GW_MODE_HTTP && c->srv->keepalive > 0 && !c->tier_k;
	c->rw.track = c->bpool;

	if (dec) {
		if (c->srv->mode != GW_MODE_HTTP || c->srv->verify_failure != GW_VFAIL_HTTP) {
			/* never reaches a backend */
			conn_abort(c, "client certificate rejected");
			return;
		}
		c->state = CS_REJECT;
		c->reject_status = status;
		c->close_reason = "client certificate rejected";
		touch(c);
		client_recv(c);
		return;
	}
	conn_log(c, GW_LOG_INFO, "client %s: %s %s verify=%s s_dn=\"%s\" tier=%c", c->peer_text,
		 c->ident.protocol, c->ident.cipher, identity_verify(&c->ident) ?: "-",
		 identity_s_dn(&c->ident) ?: "", c->tier_k ? 'K' : 'U');
	if (!c->srv->proxy_pass) {
		/*
		 * An http server{} without proxy_pass (the seed blocks as written):
		 * nginx would serve files from its root; ktlsgw serves none and
		 * answers 404 to each request.
		 */
		c->state = CS_REJECT;
		c->reject_status = 404;
		c->close_reason = "no proxy_pass in this server";
		touch(c);
		client_recv(c);
		return;
	}
	if (c->srv->mode == GW_MODE_HTTP) {
		/*
		 * As nginx: the backend is connected once a request has arrived
		 * (backend_flush), so an idle client holds no backend socket.
		 */
		relay_start(c);
		return;
	}
	backend_connect(c);
}

static void conn_step(struct conn *c)
{
	short want = 0;
	int err;

	if (c->state != CS_HANDSHAKE)
		return;
	err = tls_handshake(c->ssl, &want);
	if (err == -EAGAIN) {
		struct io_uring_sqe *sqe = conn_sqe(c, OP_POLL_CLIENT);

		io_uring_prep_poll_add(sqe, c->cfd, (unsigned)want);
		return;
	}
	if (err) {
		conn_log(c, GW_LOG_INFO, "SSL handshake with %s failed: %s", c->peer_text,
			 tls_ssl_reason(c->ssl));
		ERR_clear_error();
		conn_abort(c, "handshake failed");
		return;
	}
	handshake_done(c);
}

/* ----------------------------------------------------------- dispatch */

void conn_complete(struct conn *c, enum op_kind kind, int res, unsigned int flags)
{
	c->inflight--;
	switch (kind) {
	case OP_POLL_CLIENT:
		if (c->state == CS_HANDSHAKE)
			conn_step(c);
		break;
	case OP_RECV_CLIENT:
		if (flags & IORING_CQE_F_BUFFER) {
			on_client_recv(c, res, rx_ring_buf(c->w, flags));
			rx_ring_put(c->w, flags);
		} else {
			on_client_recv(c, res, c->crx);
		}
		break;
	case OP_SEND_CLIENT:
		on_client_send(c, res);
		break;
	case OP_CONNECT:
		on_connect(c, res);
		break;
	case OP_RECV_BACKEND:
		if (flags & IORING_CQE_F_BUFFER) {
			on_backend_recv(c, res, rx_ring_buf(c->w, flags));
			rx_ring_put(c->w, flags);
		} else {
			on_backend_recv(c, res, c->brx);
		}
		break;
	case OP_SEND_BACKEND:
		on_backend_send(c, res);
		break;
	case OP_SHUT_BACKEND:
		on_backend_shut(c, res);
		break;
	case OP_SPLICE_C_IN:
		on_splice_c_in(c, res);
		break;
	case OP_SPLICE_B_OUT:
		on_splice_b_out(c, res);
		break;
	case OP_SPLICE_B_IN:
		on_splice_b_in(c, res);
		break;
	case OP_SPLICE_C_OUT:
		on_splice_c_out(c, res);
		break;
	default:
		break;
	}
	conn_maybe_free(c);
}

/*
 * An http connection between requests: no partial request, nothing queued
 * either way, and quiet for a second (ktlsgw does not parse responses, so a
 * second without a byte stands for "the response is complete").
 */
static bool conn_idle_between_requests(const struct conn *c, uint64_t now)
{
	return c->srv->mode == GW_MODE_HTTP && c->hp.state == HTTP_S_HEAD &&
	       !buf_avail(&c->hp.head) && !buf_avail(&c->c2b) && !buf_avail(&c->b2c) &&
	       !buf_avail(&c->b2c_later) && !c->bsend_busy && !c->csend_busy &&
	       !c->finish_after_flush && now + (uint64_t)idle_ms(c) >= c->deadline_ms + 1000;
}

void conn_sweep(struct worker *w, uint64_t now)
{
	struct conn *c, *next;

	bpool_sweep(w, now);
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (w->draining && c->state == CS_RELAY && conn_idle_between_requests(c, now)) {
			/* as nginx on shutdown: an idle keep-alive connection is closed */
			conn_finish(c, "draining");
			conn_maybe_free(c);
			continue;
		}
		if (c->state == CS_CLOSING || now < c->deadline_ms)
			continue;
		switch (c->state) {
		case CS_HANDSHAKE:
			conn_log(c, GW_LOG_INFO, "SSL handshake with %s timed out", c->peer_text);
			conn_abort(c, "handshake timed out");
			break;
		case CS_CONNECTING:
			conn_log(c, GW_LOG_ERR, "connect() to backend %s timed out for client %s",
				 c->srv->proxy_pass, c->peer_text);
			if (c->srv->mode == GW_MODE_HTTP) /* the request has arrived: as nginx */
				conn_answer_error(c, 504, "backend connect timed out");
			else
				conn_abort(c, "backend connect timed out");
			break;
		default:
			conn_log(c, GW_LOG_INFO, "idle timeout");
			c->bkeep = backend_reusable(c);
			conn_abort(c, "idle timeout");
			break;
		}
		conn_maybe_free(c);
	}
}
