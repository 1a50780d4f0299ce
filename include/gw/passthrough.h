/* SPDX-License-Identifier: MIT */
/*
 * Passthrough routes (ssl_passthrough SERVER_NAME HOST:PORT): on a listener
 * with such routes the ClientHello is peeked (never consumed; bounded in
 * size and time, split across segments and records), its SNI chooses
 * between the terminated path (conn.c, as before) and a passthrough to
 * HOST:PORT, whose bytes the eBPF sockmap (src/sockmap.c) moves both ways in
 * the kernel. Without BPF, or with KTLSGW_PASSTHROUGH_RELAY=copy|splice, the
 * bytes are relayed by io_uring in userspace instead (fallback and benchmark).
 */
#ifndef GW_PASSTHROUGH_H
#define GW_PASSTHROUGH_H

#include "gw/conn.h"

/* The most bytes peeked for a ClientHello (records and handshake header included). */
#define GW_PT_PEEK_MAX 16384

/* What the peek learned from a ClientHello. */
struct pt_hello {
	bool has_sni;	/* a server_name extension with a host_name entry */
	char sni[256];	/* lowercase, no trailing dot (tls_name_normalize) */
	char alpn[256]; /* the ALPN protocols, comma-separated, for the log; "" if none */
	size_t len;	/* bytes of the records that carry the ClientHello */
};

/*
 * Parse the start of a TLS stream (@n bytes at @p) as a ClientHello that may
 * span several records and arrive in several segments. Returns 0 with *@h
 * filled, -EAGAIN when more bytes are needed, -E2BIG when the ClientHello
 * would not fit in GW_PT_PEEK_MAX bytes, -EINVAL when the bytes are not a
 * TLS ClientHello or are malformed (lengths that disagree, a bad SNI).
 */
int passthrough_parse_hello(const unsigned char *p, size_t n, struct pt_hello *h);

/*
 * The route of @srvs (the servers of one listener, @n of them) for @sni:
 * an exact name first, then the longest "*.suffix" (matching one or more
 * labels in front of ".suffix"). NULL when none; *@owner is the server{}
 * that holds the route.
 */
const struct gw_passthrough *passthrough_route(const struct gw_server *const *srvs, size_t n,
					       const char *sni, const struct gw_server **owner);

/*
 * The accept hook (loop.c): takes @fd when @lst has passthrough routes,
 * peeks, and either splices it to its route or hands it to conn_accepted();
 * calls conn_accepted() at once otherwise.
 */
void passthrough_accepted(struct listener *lst, int fd);

/* The completion of an OP_PASSTHROUGH op (loop.c dispatch). */
void passthrough_complete(void *op, int res, unsigned int flags);

/* The tick (loop.c): peek deadlines, FIN forwarding retries. */
void passthrough_sweep(struct worker *w, uint64_t now);

/* Shutdown (worker_fini): close every passthrough connection, map entries removed. */
void passthrough_abort_all(struct worker *w, const char *reason);
/* After the ring is gone (worker_fini): free what is left. */
void passthrough_free_all(struct worker *w);

/*
 * Load the sockmap programs now if @cfg has passthrough routes (once per
 * process; start-up, before the workers fork). Returns 0, or -errno with a
 * logged reason; the caller decides whether that is fatal (it is not: the
 * userspace relay takes over, with a warning).
 */
int passthrough_init(const struct gw_config *cfg);

/* Release the BPF objects (process exit). */
void passthrough_fini(void);

#endif /* GW_PASSTHROUGH_H */
