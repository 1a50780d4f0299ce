// SPDX-License-Identifier: MIT
/*
 * Kernel TLS on the client socket after the verified handshake (tier K).
 *
 * Debian's OpenSSL 3.0 with SSL_OP_ENABLE_KTLS installs TLS 1.2 TX and RX
 * and TLS 1.3 TX itself (it attaches the "tls" ULP); TLS 1.3 RX it leaves in
 * userspace, so the gateway derives the client's application traffic key
 * from CLIENT_TRAFFIC_SECRET_0 (captured by the keylog callback, never
 * logged) and sets SOL_TLS/TLS_RX itself (KERNEL-VM.md, measured on 6.1).
 * Read-ahead is off wherever tier K is possible (tls_ssl_new()), so nothing
 * past the client's Finished sits in OpenSSL; the switch is refused if
 * anything does.
 */
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include "gw/ktls.h"
#include "gw/log.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

bool ktls_kernel;

/* The client's TLS 1.3 application traffic secret, per SSL (ex_data). */
struct ktls_secret {
	unsigned char secret[EVP_MAX_MD_SIZE];
	size_t len;
};

static int secret_idx = -1;

static void secret_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct ktls_secret *s = ptr;

	if (s) {
		OPENSSL_cleanse(s, sizeof(*s));
		free(s);
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "CLIENT_TRAFFIC_SECRET_0 <client random hex> <secret hex>": keep the secret. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	static const char tag[] = "CLIENT_TRAFFIC_SECRET_0 ";
	struct ktls_secret *s;
	const char *p;
	size_t n = 0;

	if (strncmp(line, tag, sizeof(tag) - 1) != 0)
		return;
	p = strchr(line + sizeof(tag) - 1, ' ');
	if (!p)
		return;
	p++;
	s = SSL_get_ex_data(ssl, secret_idx);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || !SSL_set_ex_data((SSL *)ssl, secret_idx, s)) {
			free(s);
			return;
		}
	}
	while (p[0] && p[1] && n < sizeof(s->secret)) {
		int hi = hexval(p[0]), lo = hexval(p[1]);

		if (hi < 0 || lo < 0)
			break;
		s->secret[n++] = (unsigned char)(hi << 4 | lo);
		p += 2;
	}
	s->len = n;
}

int ktls_init(void)
{
	if (secret_idx < 0)
		secret_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, secret_free);
	return secret_idx < 0 ? -ENOMEM : 0;
}

void ktls_ctx_setup(SSL_CTX *ctx)
{
	if (ktls_init())
		return;
	SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
}

int gw_hkdf(int mode, const char *digest, const void *key, size_t klen, const void *salt,
	    size_t slen, const void *info, size_t ilen, unsigned char *out, size_t olen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[6], *p = params;
	int ret = -EPROTO;

	EVP_KDF_free(kdf);
	if (!kctx)
		return -ENOMEM;
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, klen);
	if (salt)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, slen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, ilen);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, olen, params) > 0)
		ret = 0;
	EVP_KDF_CTX_free(kctx);
	return ret;
}

/*
 * HKDF-Expand-Label(secret, label, "", len) of RFC 8446 7.1: expand-only,
 * with a hand-built HkdfLabel.
 */
static int hkdf_expand_label(const EVP_MD *md, const unsigned char *secret, size_t slen,
			     const char *label, unsigned char *out, size_t len)
{
	unsigned char info[2 + 1 + 6 + 16 + 1];
	size_t ll = strlen(label), n = 0;

	if (ll > 16)
		return -EINVAL;
	info[n++] = (unsigned char)(len >> 8);
	info[n++] = (unsigned char)len;
	info[n++] = (unsigned char)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0; /* empty context */
	return gw_hkdf(EVP_KDF_HKDF_MODE_EXPAND_ONLY, EVP_MD_get0_name(md), secret, slen, NULL, 0,
		       info, n, out, len);
}

/* Install the TLS 1.3 RX key derived from the client's traffic secret. */
static int install_rx13(SSL *ssl, int fd, char *why, size_t wlen)
{
	struct ktls_secret *s = SSL_get_ex_data(ssl, secret_idx);
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	uint32_t id = c ? SSL_CIPHER_get_id(c) & 0xffff : 0;
	unsigned char key[32], iv[12];
	size_t klen;
	const EVP_MD *md;
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} ci;
	socklen_t cilen;
	int ret;

	if (!s || !s->len) {
		snprintf(why, wlen, "no client traffic secret captured");
		return -EPROTO;
	}
	switch (id) {
	case 0x1301:
		md = EVP_sha256();
		klen = 16;
		break;
	case 0x1302:
		md = EVP_sha384();
		klen = 32;
		break;
	case 0x1303:
		md = EVP_sha256();
		klen = 32;
		break;
	default:
		snprintf(why, wlen, "cipher 0x%04x has no kernel TLS 1.3 RX", (unsigned)id);
		return -EPROTO;
	}
	if (hkdf_expand_label(md, s->secret, s->len, "key", key, klen) ||
	    hkdf_expand_label(md, s->secret, s->len, "iv", iv, sizeof(iv))) {
		snprintf(why, wlen, "HKDF-Expand-Label failed");
		return -EPROTO;
	}
	memset(&ci, 0, sizeof(ci));
	if (id == 0x1303) {
		ci.cc.info.version = TLS_1_3_VERSION;
		ci.cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci.cc.iv, iv, 12);
		memcpy(ci.cc.key, key, 32);
		cilen = sizeof(ci.cc);
	} else if (id == 0x1301) {
		ci.g128.info.version = TLS_1_3_VERSION;
		ci.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(ci.g128.salt, iv, 4);
		memcpy(ci.g128.iv, iv + 4, 8);
		memcpy(ci.g128.key, key, 16);
		cilen = sizeof(ci.g128);
	} else {
		ci.g256.info.version = TLS_1_3_VERSION;
		ci.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(ci.g256.salt, iv, 4);
		memcpy(ci.g256.iv, iv + 4, 8);
		memcpy(ci.g256.key, key, 32);
		cilen = sizeof(ci.g256);
	}
	/*
	 * Test hook (VM suite, ktls/rx-key-fails): KTLSGW_TEST_KTLS_RX_FAIL=1 hands the
	 * kernel a cipher it does not know, so that its real refusal, after the ULP
	 * and TX are in place, exercises the close-without-writing path.
	 */
	if (getenv("KTLSGW_TEST_KTLS_RX_FAIL"))
		ci.g128.info.cipher_type = 0xffff;
	/* rec_seq 0: no application record from the client has been read yet */
	ret = setsockopt(fd, SOL_TLS, TLS_RX, &ci, cilen) ? -errno : 0;
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	OPENSSL_cleanse(&ci, sizeof(ci));
	OPENSSL_cleanse(s, sizeof(*s));
	if (ret)
		snprintf(why, wlen, "setsockopt(TLS_RX): %s", strerror(-ret));
	return ret;
}

static bool ulp_attached(int fd)
{
	char name[16] = "";
	socklen_t len = sizeof(name);

	return getsockopt(fd, IPPROTO_TCP, TCP_ULP, name, &len) == 0 && strcmp(name, "tls") == 0;
}

int ktls_finish(SSL *ssl, int fd, char *why, size_t wlen)
{
	bool tx = BIO_get_ktls_send(SSL_get_wbio(ssl));
	bool rx = BIO_get_ktls_recv(SSL_get_rbio(ssl));

	why[0] = '\0';
	if (!tx && !rx) {
		/*
		 * OpenSSL kept both directions (cipher without kernel support, or
		 * the ULP refused): its records pass a key-less ULP untouched.
		 */
		snprintf(why, wlen, "OpenSSL did not enable kTLS for %s %s%s", SSL_get_version(ssl),
			 SSL_get_cipher_name(ssl),
			 ulp_attached(fd) ? " (ULP attached without keys)" : "");
		return 0;
	}
	if (!tx) {
		snprintf(why, wlen, "kTLS RX without TX");
		return -EPROTO;
	}
	if (SSL_has_pending(ssl)) {
		snprintf(why, wlen, "OpenSSL holds unread data after the handshake");
		return -EPROTO;
	}
	if (!rx) {
		if (SSL_version(ssl) != TLS1_3_VERSION) {
			snprintf(why, wlen, "kTLS TX without RX on %s", SSL_get_version(ssl));
			return -EPROTO;
		}
		if (install_rx13(ssl, fd, why, wlen))
			return -EPROTO;
		snprintf(why, wlen, "TX by OpenSSL, RX by the gateway");
		return 1;
	}
	snprintf(why, wlen, "TX by OpenSSL, RX by OpenSSL");
	return 1;
}
