/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS key installation on the client socket (tier K). See src/ktls.c.
 */
#ifndef GW_KTLS_H
#define GW_KTLS_H

#include <stdbool.h>
#include <openssl/ssl.h>
#include "gw/config.h"

/* Set at start-up from the probe: the kernel accepts the "tls" ULP. */
extern bool ktls_kernel;

/* Can a connection of server{} @s go tier K (ssl_ktls not off, kernel TLS here)? */
static inline bool ktls_possible(const struct gw_server *s)
{
	return ktls_kernel && s->ktls != GW_KTLS_OFF;
}

/*
 * HKDF (RFC 5869) with OpenSSL's KDF: @mode is EVP_KDF_HKDF_MODE_*, @digest
 * a name ("SHA256"), @salt may be NULL. For the TLS 1.3 RX key here and the
 * session ticket keys (tls.c). Returns 0, -ENOMEM or -EPROTO.
 */
int gw_hkdf(int mode, const char *digest, const void *key, size_t klen, const void *salt,
	    size_t slen, const void *info, size_t ilen, unsigned char *out, size_t olen);

/* Allocate the per-SSL secret slot. Returns 0 or -ENOMEM. */
int ktls_init(void);

/* Ask OpenSSL for kTLS on @ctx and capture the TLS 1.3 client traffic secret. */
void ktls_ctx_setup(SSL_CTX *ctx);

/*
 * After a verified handshake on @fd (OpenSSL still on the socket BIO):
 * returns 1 when TX and RX are both in the kernel (tier K: the SSL must not
 * be used for I/O again; @why says who installed which direction), 0 when
 * no key is in the kernel (tier U; @why says why), or -EPROTO when only part is (the connection
 * must be closed and never written to; @why says why).
 */
int ktls_finish(SSL *ssl, int fd, char *why, size_t wlen);

#endif /* GW_KTLS_H */
