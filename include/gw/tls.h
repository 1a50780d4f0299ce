/* SPDX-License-Identifier: MIT */
/*
 * TLS server side: one SSL_CTX per server{} built from its ssl_* directives
 * with nginx's semantics, SNI selection among the servers that share a
 * listen socket, client verification (verify modes, depth, CRL, allow-lists)
 * and the human explanation of every rejected handshake.
 *
 * OpenSSL's 1/0 + error queue convention stops here: functions return 0 or
 * -errno (STYLE.md 5.4).
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <time.h>
#include <openssl/ssl.h>
#include "gw/config.h"

struct tls_srv; /* one per server{} */

/*
 * Build the SSL_CTX of @srv (certificates, keys, CA list, CRL, protocols,
 * ciphers, session cache, verify mode). @srv must outlive the result.
 * Returns 0 and *@out, or -EINVAL with *@err = malloc'd "FILE:LINE: ..."
 * naming the directive and OpenSSL's reason.
 */
int tls_srv_new(const struct gw_server *srv, struct tls_srv **out, char **err);
void tls_srv_free(struct tls_srv *t);
SSL_CTX *tls_srv_ctx(const struct tls_srv *t);
const struct gw_server *tls_srv_server(const struct tls_srv *t);

/*
 * The session ticket secret: each server{}'s ticket keys are derived from it
 * and the server{}'s session id context, so that every worker forked with it
 * seals and opens the same tickets. Unset (the start, or after _clear()),
 * each SSL_CTX has OpenSSL's own random keys.
 *
 * _rotate() makes a new one (at start before forking the workers, and for
 * each reload before its SSL_CTXs), saving the previous one in *@old (may be
 * NULL) for _restore() when the reload fails; if no random bytes come it
 * clears the secret and returns -EIO. _clear() wipes it.
 */
struct tls_ticket_secret {
	unsigned char key[32];
	bool set;
};
int tls_ticket_secret_rotate(struct tls_ticket_secret *old);
void tls_ticket_secret_restore(struct tls_ticket_secret *old);
void tls_ticket_secret_clear(void);

/*
 * Servers sharing one listen address: @group[0] is the default server; the
 * others are chosen by SNI against their server_name (exact, "*.suffix",
 * ".suffix" as nginx). Installs the servername callback on every member.
 * The array must outlive the SSL_CTXs. Returns 0 or -errno.
 */
int tls_srv_group(struct tls_srv **group, size_t n);

/*
 * The server{} of @group whose server_name matches @host (lowercase, no
 * port, no trailing dot): exact, then the longest "*.x"/".x", then "x.*".
 * NULL if none matches (the caller falls back to group[0], the default).
 */
struct tls_srv *tls_srv_pick(struct tls_srv *const *group, size_t n, const char *host);

/*
 * Lowercase @name (length @len) without a trailing dot into @host (@size
 * bytes). Returns false if it is empty, too long or holds a NUL.
 */
bool tls_name_normalize(const char *name, size_t len, char *host, size_t size);

/*
 * New server-side SSL on the connected socket @fd (non-blocking), in accept
 * state, with per-connection verification state attached. NULL on ENOMEM.
 */
/* Drop the expired sessions of @t's cache (the worker's tick, every GW_SESS_EXPIRE_S). */
#define GW_SESS_EXPIRE_S 10
void tls_srv_expire_sessions(struct tls_srv *t, time_t now);

SSL *tls_ssl_new(struct tls_srv *t, int fd);

/*
 * Client chains accepted from the verification cache (ssl_verify_cache) by
 * this process: the same chain, verified cleanly before, under the same
 * server{}, before the next change of validity of anything it depends on.
 */
unsigned long tls_verify_cache_hits(void);

/* The server{} chosen for @ssl (after SNI, the default before). */
const struct tls_srv *tls_ssl_srv(SSL *ssl);

/*
 * Drive the handshake one step. Returns 0 when done, -EAGAIN with *@want
 * set to POLLIN or POLLOUT when it must wait, or -EPROTO when it failed
 * (then tls_ssl_reason() explains why). With ssl_verify_failure handshake
 * a resumed session is re-checked against the chosen server{} here.
 */
int tls_handshake(SSL *ssl, short *want);

/*
 * After a completed handshake: nginx's post-handshake decision for
 * ssl_verify_client (+ ssl_client_allow). Returns 0 to accept, or -EACCES
 * and sets *@status to 495 (certificate error) or 496 (no certificate) –
 * the ssl_verify_failure http path answers with that page. Valid in both
 * ssl_verify_failure modes (in handshake mode it accepts what the handshake
 * accepted); a rejection sets tls_ssl_reason().
 */
int tls_verify_decision(SSL *ssl, int *status);

/*
 * Why the handshake or verification of @ssl failed, for the caller's log:
 * "client sent no certificate (ssl_verify_client on)",
 * "unknown CA: no trusted issuer for \"CN=...\" issued by \"CN=...\"",
 * "certificate \"CN=...\" expired on Nov 25 10:55:43 2026 GMT",
 * "certificate \"CN=...\" is not yet valid until ...",
 * "certificate \"CN=...\" revoked (serial 61BA7D...)",
 * "verify depth 1 exceeded: chain needs depth 2 (ssl_verify_depth)",
 * "CRL has expired (issuer \"CN=...\")", "self-signed certificate \"CN=...\"",
 * "no CRL in ssl_crl for \"CN=...\" (issuer ...)",
 * "certificate \"CN=...\" not in ssl_client_allow", or OpenSSL's reason
 * ("no shared cipher", "unsupported protocol"). DNs are RFC 2253, UTF-8 kept.
 * Owned by @ssl. Never NULL; "" when nothing failed.
 */
const char *tls_ssl_reason(SSL *ssl);

#endif /* GW_TLS_H */
