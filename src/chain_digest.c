// SPDX-License-Identifier: MIT
/* The SHA-256 identity of a certificate chain as sent (include/gw/chain_digest.h). */
#include <openssl/err.h>
#include <openssl/sha.h>
#include "gw/chain_digest.h"

bool chain_digest(X509_STORE_CTX *x, EVP_MD_CTX *m, const EVP_MD *sha256, unsigned char *out)
{
	STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(x);
	X509 *leaf = X509_STORE_CTX_get0_cert(x);
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl;
	bool ok;

	ERR_set_mark();
	ok = m && leaf && EVP_DigestInit_ex(m, sha256, NULL) && X509_digest(leaf, sha256, d, &dl) &&
	     EVP_DigestUpdate(m, d, dl);
	/* a server's untrusted list is the whole peer chain, leaf included */
	for (int i = 0; ok && sk && i < sk_X509_num(sk); i++) {
		X509 *c = sk_X509_value(sk, i);

		if (c != leaf)
			ok = X509_digest(c, sha256, d, &dl) && EVP_DigestUpdate(m, d, dl);
	}
	ok = ok && EVP_DigestFinal_ex(m, out, &dl) && dl == SHA256_DIGEST_LENGTH;
	ERR_pop_to_mark(); /* the handshake's own errors stay */
	return ok;
}
