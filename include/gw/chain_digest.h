/* SPDX-License-Identifier: MIT */
/*
 * The identity of a certificate chain exactly as the peer sent it, for the
 * gateway's verification cache (tls.c) and the load generator's check of the
 * server (src/bench/bench.c).
 */
#ifndef GW_CHAIN_DIGEST_H
#define GW_CHAIN_DIGEST_H

#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/*
 * SHA-256 over the SHA-256 of each certificate of @x (its leaf first, then
 * the others it was given as untrusted) into @out (32 bytes), with the digest
 * context @m and @sha256 (a fetched SHA-256, or EVP_sha256()). The error
 * queue is left as it was. Returns false if a digest failed.
 */
bool chain_digest(X509_STORE_CTX *x, EVP_MD_CTX *m, const EVP_MD *sha256, unsigned char *out);

#endif /* GW_CHAIN_DIGEST_H */
