// SPDX-License-Identifier: MIT
/*
 * ktlsgw-bench only (never the gateway): EC public keys decoded by OpenSSL's
 * own legacy EC method instead of the provider decoders.
 *
 * OpenSSL 3.0 decodes a certificate's public key through
 * OSSL_DECODER_CTX_new_for_pkey(), which walks every decoder and key manager
 * of the library context on each call: 1.24 M instructions per certificate,
 * a quarter of the load generator's TLS 1.2 handshake (callgrind; 3.1 and
 * later cache it). x509_pubkey_ex_d2i_ex() tries the legacy method first
 * when an ENGINE offers a pkey method for the key's type; this ENGINE offers
 * OpenSSL's built-in EC method (EVP_PKEY_meth_find), so the arithmetic is
 * OpenSSL's own, without the lookups. The proxies under test are not
 * touched: a lighter client lets the proxy, not the load generator, set the
 * pace of handshake scenarios on a machine where they share two CPUs.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/opensslconf.h>
#include <openssl/engine.h>
#include <openssl/evp.h>

#include "gw/bench.h"

#ifndef OPENSSL_NO_ENGINE
static int ec_pmeths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
	static const int ec_nids[] = {EVP_PKEY_EC};

	(void)e;
	if (!pmeth) {
		*nids = ec_nids;
		return 1;
	}
	*pmeth = nid == EVP_PKEY_EC ? (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(EVP_PKEY_EC) : NULL;
	return *pmeth != NULL;
}

bool bench_ec_legacy(void)
{
	ENGINE *e = ENGINE_new();
	bool ok;

	ok = e && EVP_PKEY_meth_find(EVP_PKEY_EC) && ENGINE_set_id(e, "ktlsgw-bench-ec") &&
	     ENGINE_set_name(e, "OpenSSL's built-in EC method (ktlsgw-bench)") &&
	     ENGINE_set_pkey_meths(e, ec_pmeths) && ENGINE_add(e) && ENGINE_register_pkey_meths(e);
	ENGINE_free(e); /* the engine list keeps its own reference */
	return ok;
}
#else
bool bench_ec_legacy(void)
{
	return false;
}
#endif
