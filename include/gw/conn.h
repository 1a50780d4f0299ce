/* SPDX-License-Identifier: MIT */
/*
 * The worker (one io_uring, its listeners and connections) and the
 * per-connection state machine: accept -> TLS handshake (OpenSSL on the
 * socket, readiness from io_uring polls) -> verification decision ->
 * identity -> backend connect -> relay (tier U: OpenSSL over the relay BIO,
 * every socket read and write an io_uring op) -> close_notify / teardown.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <liburing.h>
#include <openssl/ssl.h>
#include "gw/common.h"
#include "gw/config.h"
#include "gw/http.h"
#include "gw/identity.h"
#include "gw/tls.h"

/* io_uring user_data = pointer | op kind (objects are 16-byte aligned). */
enum op_kind {
	OP_IGNORE = 0, /* cancel requests and the like: nothing to do */
	OP_ACCEPT = 1,
	OP_POLL_CLIENT = 2,
	OP_RECV_CLIENT = 3,
	OP_SEND_CLIENT = 4,
	OP_CONNECT = 5,
	OP_RECV_BACKEND = 6,
	OP_SEND_BACKEND = 7,
	OP_SHUT_BACKEND = 8,
	OP_TICK = 9,
	OP_SIGNAL = 10,
	OP_SPLICE_C_IN = 11,  /* tier K: client socket -> pipe p1 */
	OP_SPLICE_B_OUT = 12, /* tier K: pipe p1 -> backend */
	OP_SPLICE_B_IN = 13,  /* tier K: backend -> pipe p2 */
	OP_SPLICE_C_OUT = 14, /* tier K: pipe p2 -> client socket (the kernel encrypts) */
	OP_PASSTHROUGH = 15,  /* passthrough.c: the pointer is a struct pt_op */
	OP__LAST = OP_PASSTHROUGH,
};
#define OP_MASK 0xfULL
_Static_assert(OP__LAST <= OP_MASK, "op kinds fit in the low bits");

struct worker;

/*
 * A configuration generation (main.c): connections keep the one they were
 * accepted under alive; release() runs when the last reference goes.
 */
struct gw_gen {
	int refs;
	void (*release)(struct gw_gen *g);
};

/*
 * io_uring user_data carries an object pointer with the op kind in its low 4
 * bits: every object named that way must be 16-byte aligned, also inside
 * arrays (listeners are one array).
 */
#define GW_OP_ALIGNED __attribute__((aligned(16)))

/* One listening socket and the server{} blocks that share it (SNI group). */
struct GW_OP_ALIGNED listener {
	struct worker *w;
	int fd;
	const struct gw_listen *listen; /* of the default server */
	struct tls_srv **group;		/* [0] = default server */
	size_t ngroup;
	struct gw_gen *gen; /* the generation of group */
	bool armed;	    /* a multishot accept is in flight */
	bool paused;	    /* out of fds/memory: re-armed at the next tick */
};

struct access_log {
	char *path;
	int fd;
};

/* Connection life cycle */
enum conn_state {
	CS_HANDSHAKE = 0,
	CS_CONNECTING, /* handshake done, backend connect in flight */
	CS_RELAY,
	CS_REJECT, /* ssl_verify_failure http / 502: wait for a request head, answer a page */
	CS_CLOSING,
};

#define GW_IO_BUF 16384
#define GW_PIPE_SIZE (256 * 1024)
/*
 * Receive buffers come from a per-worker provided-buffer ring (io_uring picks
 * one when data arrives), so an idle connection holds none: GW_RX_BUFS
 * buffers of GW_RX_BUF bytes, returned as soon as a completion is handled.
 * Without the ring (kernel < 5.19, KTLSGW_RX_RING=off) each connection
 * allocates its own on first use.
 */
#define GW_RX_BUF 32768
#define GW_RX_BUFS 128
#define GW_RX_BGID 1
#define GW_SPARE_BUFS 16
#define GW_SPARE_MIN 4096 /* smaller buffers stay with their connection */

struct GW_OP_ALIGNED conn {
	struct conn *prev, *next; /* worker's list */
	struct worker *w;
	struct listener *lst;
	unsigned long id;
	enum conn_state state;
	int cfd, bfd;
	SSL *ssl;
	const struct gw_server *srv; /* after SNI */
	struct gw_gen *gen;	     /* configuration generation, referenced */
	struct tls_srv **group;	     /* the listener's SNI group when accepted */
	size_t ngroup;
	bool sni_matched; /* the SNI named a server{} of a multi-server group */
	char sni[256];	  /* that SNI, lowercase, no trailing dot */
	struct sockaddr_storage peer, local;
	char peer_text[64];
	struct gw_identity ident;
	int inflight;	      /* ops submitted and not completed */
	uint64_t deadline_ms; /* handshake, connect or idle deadline (monotonic) */
	uint64_t start_ms;
	const char *close_reason;
	int reject_status; /* CS_REJECT: 495, 496, 502 */

	/* client -> backend */
	char *crx;	 /* GW_RX_BUF: tier K recvmsg, or tier U without the ring */
	const char *rin; /* tier U: received TLS bytes the read BIO hands OpenSSL */
	size_t rin_len;
	struct buf rin_left; /* a partial record kept until the rest arrives */
	bool rx_ahead;	     /* tier U: records read ahead with Finished wait in OpenSSL */
	bool crx_busy;
	bool client_eof;      /* close_notify or FIN from the client */
	struct buf c2b;	      /* plaintext waiting to be sent to the backend */
	struct buf c2b_later; /* produced while a send of c2b was in flight */
	char upg_peek[12];    /* first bytes of the answer to an Upgrade request */
	size_t upg_len;
	bool bsend_busy;
	bool backend_shut; /* SHUT_WR sent to the backend */
	struct http_parser hp;
	struct http_rewrite rw;

	/* upstream keepalive (tier U, http): the backend connection outlives the client's */
	bool bpool;	      /* this connection may take one from the pool and give it back */
	bool bkeep;	      /* the backend is between exchanges: pool it when freed */
	uint64_t b_born_ms;   /* when bfd was connected (keepalive_time) */
	unsigned long b_reqs; /* requests bfd served before this client (keepalive_requests) */
	unsigned long b_req0; /* hp.requests sent on earlier backend connections */
	struct buf b_sent;    /* reused bfd, nothing answered yet: what was sent, for a retry */
	bool b_retry;	      /* b_sent holds all of it */
	struct http_resp hr;  /* where the backend's responses end */

	/* backend -> client */
	char *brx; /* GW_RX_BUF, without the ring only */
	bool brx_busy;
	bool backend_eof;
	struct buf b2c;	      /* TLS records (tier K: plaintext) being sent to the client */
	struct buf b2c_later; /* produced while a send of b2c was in flight */
	bool csend_busy;
	bool close_notify_sent;
	bool finish_after_flush; /* close once b2c is flushed */

	uint64_t bytes_up, bytes_down;	   /* plaintext client->backend, backend->client */
	uint64_t spliced_up, spliced_down; /* tier K: of those, moved by splice */

	/* tier K: keys in the kernel, the SSL is not used for I/O any more */
	bool tier_k;
	bool close_notify_due; /* send it once everything queued has left */
	int p1[2], p2[2];      /* stream mode: client->backend and backend->client pipes */
	size_t p1_fill, p2_fill;
	bool cn_busy;	      /* the OP_SEND_CLIENT in flight is the close_notify */
	struct msghdr cn_msg; /* the close_notify record */
	struct iovec cn_iov;
	char cn_cmsg[CMSG_SPACE(1)] __attribute__((aligned(8)));
	struct msghdr msg; /* http mode: recvmsg of the request direction */
	struct iovec iov;
	char cmsg[CMSG_SPACE(1)] __attribute__((aligned(8)));
};

/* An idle backend connection in a worker's pool (upstream keepalive; conn.c). */
struct bpool_ent {
	struct bpool_ent *prev, *next; /* most recently used first */
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint64_t idle_until_ms; /* keepalive_timeout */
	uint64_t born_ms;
	unsigned long requests;
};

struct worker {
	struct io_uring ring;
	const struct gw_config *cfg;
	struct listener *listeners;
	size_t nlisteners;
	struct conn *conns; /* list head */
	unsigned long nconns;
	unsigned long next_id;
	bool draining;
	bool stop;
	uint64_t drain_deadline_ms;
	int sigfd;
	struct __kernel_timespec tick;
	struct access_log *logs;
	size_t nlogs;
	struct io_uring_buf_ring *rx_ring; /* NULL: per-connection receive buffers */
	char *rx_bufs;			   /* rx_nbufs x GW_RX_BUF */
	unsigned int rx_nbufs;
	unsigned long rx_nobufs; /* receives that found the ring empty */
	/*
	 * Send buffers given back by drained connections, for the next one that
	 * needs a big one: no malloc/realloc/free cycle per response, whatever
	 * the allocator (tcmalloc returned them to its page heap every time).
	 */
	struct buf spare[GW_SPARE_BUFS];
	unsigned int nspare;
	struct bpool_ent *bpool; /* idle backend connections */
	struct {
		unsigned long backend_reused;  /* backend connections taken from the pool */
		unsigned long backend_retried; /* requests sent again after a pooled one closed */
		unsigned long tier_k;	       /* connections relayed on tier K */
		unsigned long tier_u_fallback; /* kTLS wanted (auto) but tier U used */
		unsigned long ktls_keyupdate;  /* closed on a client KeyUpdate */
	} stats;
	bool fallback_logged;
	bool reload;
	uint64_t next_expire_ms; /* the next sweep of expired TLS sessions */
};

uint64_t gw_now_ms(void);

/* Tier K splices through pipes (default) or copies (KTLSGW_KTLS_RELAY=copy; conn.c). */
extern bool ktls_splice;

/* Submission helper: an SQE (submitting first if the ring is full), never NULL. */
struct io_uring_sqe *worker_sqe(struct worker *w);

/*
 * Append "PEER - [TIME] " + the formatted rest as one line to the access_log
 * @path of @w (nothing when @path is NULL or not open).
 */
void access_log_line(struct worker *w, const char *path, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * A zeroed object of @size for accepted socket @fd, or NULL with @fd closed
 * and the reason logged (worker_connections reached, out of memory).
 */
void *worker_admit(struct worker *w, int fd, size_t size);

/* Free the spare send buffers of @w. */
void worker_spare_free(struct worker *w);

/* Set up the receive buffer ring of @w (none where the kernel refuses it). */
void worker_rx_ring_init(struct worker *w);
void worker_rx_ring_exit(struct worker *w);

/* Accepted socket @fd on @lst: allocate a conn and start the handshake. */
void conn_accepted(struct listener *lst, int fd);
/* A completion for @c. */
void conn_complete(struct conn *c, enum op_kind kind, int res, unsigned int flags);
/* Close @c now (abortive); @reason is logged. */
void conn_abort(struct conn *c, const char *reason);
/* The 1 s tick: expire deadlines. */
void conn_sweep(struct worker *w, uint64_t now);
/* Abort every connection (shutdown); they are freed as their ops complete. */
void conn_abort_all(struct worker *w, const char *reason);
/* Free what is left after the ring is gone. */
void conn_free_all(struct worker *w);

#endif /* GW_CONN_H */
