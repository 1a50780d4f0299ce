// SPDX-License-Identifier: MIT
/*
 * Identity engine: the peer certificate is parsed once per connection into a
 * struct gw_identity, and every variable is rendered from that struct. The
 * nginx variables are produced with the same OpenSSL calls nginx 1.22 uses
 * (src/event/ngx_event_openssl.c, ngx_ssl_get_*), so they match byte for byte.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "gw/identity.h"

static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

/* A malloc'd NUL-terminated copy of a memory BIO's content. */
static char *bio_take(BIO *bio)
{
	char *data, *s;
	long n = BIO_get_mem_data(bio, &data);

	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

static int set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s ? s : "");
	return *dst ? 0 : -ENOMEM;
}

/* Take the buffer's content as a string ("" for an empty buffer). */
static int set_buf(char **dst, struct buf *b)
{
	free(*dst);
	*dst = b->len ? buf_strdup(b) : strdup("");
	return *dst ? 0 : -ENOMEM;
}

static int hex_append(struct buf *out, const unsigned char *p, size_t n, const char *digits)
{
	int ret = buf_reserve(out, 2 * n);

	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++) {
		out->data[out->len++] = digits[p[i] >> 4];
		out->data[out->len++] = digits[p[i] & 0xf];
	}
	out->data[out->len] = '\0';
	return 0;
}

static bool uri_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int identity_escape_uri_component(const void *s, size_t len, struct buf *out)
{
	const unsigned char *p = s;
	int ret = buf_reserve(out, 3 * len);

	if (ret)
		return ret;
	for (size_t i = 0; i < len; i++) {
		if (uri_unreserved(p[i])) {
			out->data[out->len++] = (char)p[i];
			continue;
		}
		out->data[out->len++] = '%';
		out->data[out->len++] = hex_upper[p[i] >> 4];
		out->data[out->len++] = hex_upper[p[i] & 0xf];
	}
	out->data[out->len] = '\0';
	return 0;
}

static int pem_of(X509 *x, struct buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ret = -ENOMEM;

	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_X509(bio, x))
		goto out;
	n = BIO_get_mem_data(bio, &data);
	if (n < 0)
		goto out;
	ret = buf_append(out, data, (size_t)n);
out:
	BIO_free(bio);
	return ret;
}

/* X509_NAME_print_ex(XN_FLAG_RFC2253) as nginx's $ssl_client_s_dn. */
static int name_rfc2253(const X509_NAME *name, char **dst)
{
	BIO *bio = BIO_new(BIO_s_mem());

	if (!bio)
		return -ENOMEM;
	free(*dst);
	*dst = NULL;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		*dst = bio_take(bio);
	BIO_free(bio);
	return *dst ? 0 : -ENOMEM;
}

static int name_oneline(const X509_NAME *name, char **dst)
{
	char *p = X509_NAME_oneline(name, NULL, 0);
	int ret;

	if (!p)
		return -ENOMEM;
	ret = set_str(dst, p);
	OPENSSL_free(p);
	return ret;
}

static int asn1_time_text(const ASN1_TIME *t, char **dst)
{
	BIO *bio = BIO_new(BIO_s_mem());

	if (!bio)
		return -ENOMEM;
	free(*dst);
	ASN1_TIME_print(bio, t); /* nginx ignores the result too */
	*dst = bio_take(bio);
	BIO_free(bio);
	return *dst ? 0 : -ENOMEM;
}

static time_t asn1_time_epoch(const ASN1_TIME *t)
{
	struct tm tm;

	if (!ASN1_TIME_to_tm(t, &tm))
		return (time_t)-1;
	return timegm(&tm);
}

/* RFC 9440 sf-binary: ":" base64(DER) ":" */
static int sf_binary(const unsigned char *der, size_t len, struct buf *out)
{
	size_t b64 = 4 * ((len + 2) / 3);
	int ret = buf_reserve(out, b64 + 2);

	if (ret)
		return ret;
	out->data[out->len++] = ':';
	out->len += (size_t)EVP_EncodeBlock((unsigned char *)out->data + out->len, der, (int)len);
	out->data[out->len++] = ':';
	out->data[out->len] = '\0';
	return 0;
}

static int der_sf_binary(X509 *x, struct buf *out)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	int ret;

	if (n <= 0)
		return -ENOMEM;
	ret = sf_binary(der, (size_t)n, out);
	OPENSSL_free(der);
	return ret;
}

/*
 * A SAN string is kept only if it has no control bytes or NUL: these values
 * go into request headers, so a CR/LF in a (CA-signed) SAN must not pass.
 */
static bool san_printable(const ASN1_IA5STRING *s)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	for (int i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return n > 0;
}

static int parse_sans(X509 *cert, struct gw_identity *id, struct buf *xfcc_tail)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	struct buf dns = {0}, uri = {0}, xd = {0};
	const char *only_uri = NULL;
	int nuri = 0, only_len = 0, ret = 0;

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_IA5STRING *s;
		struct buf *list;

		if (g->type == GEN_DNS) {
			s = g->d.dNSName;
			list = &dns;
		} else if (g->type == GEN_URI) {
			s = g->d.uniformResourceIdentifier;
			list = &uri;
		} else {
			continue;
		}
		if (!san_printable(s))
			continue;
		if (list->len)
			ret = ret ?: buf_puts(list, ",");
		ret = ret
			      ?: buf_append(list, ASN1_STRING_get0_data(s),
					    (size_t)ASN1_STRING_length(s));
		/* XFCC: URI= pairs first, then DNS= pairs (Envoy's key order) */
		if (g->type == GEN_URI) {
			only_uri = (const char *)ASN1_STRING_get0_data(s);
			only_len = ASN1_STRING_length(s);
			nuri++;
			ret = ret ?: buf_puts(xfcc_tail, ";URI=");
			ret = ret ?: buf_append(xfcc_tail, only_uri, (size_t)only_len);
		} else {
			ret = ret ?: buf_puts(&xd, ";DNS=");
			ret = ret
				      ?: buf_append(&xd, ASN1_STRING_get0_data(s),
						    (size_t)ASN1_STRING_length(s));
		}
	}
	if (xd.len)
		ret = ret ?: buf_append(xfcc_tail, xd.data, xd.len);
	ret = ret ?: set_buf(&id->san_dns, &dns);
	ret = ret ?: set_buf(&id->san_uri, &uri);
	if (!ret && nuri == 1 && only_len > 9 && strncmp(only_uri, "spiffe://", 9) == 0) {
		free(id->spiffe_id);
		id->spiffe_id = strndup(only_uri, (size_t)only_len);
		if (!id->spiffe_id)
			ret = -ENOMEM;
	}
	buf_free(&dns);
	buf_free(&uri);
	buf_free(&xd);
	GENERAL_NAMES_free(gens);
	return ret;
}

static int parse_cn(X509 *cert, struct gw_identity *id)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n;

	if (i < 0)
		return 0;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	if (n < 0)
		return 0; /* an undecodable CN: no CN */
	free(id->cn);
	id->cn = strndup((char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return id->cn ? 0 : -ENOMEM;
}

static int parse_key_alg(X509 *cert, struct gw_identity *id)
{
	EVP_PKEY *pkey = X509_get0_pubkey(cert);
	char text[64];
	int type;

	if (!pkey)
		return 0;
	type = EVP_PKEY_get_base_id(pkey);
	switch (type) {
	case EVP_PKEY_RSA:
	case EVP_PKEY_RSA_PSS:
		snprintf(text, sizeof(text), "RSA%d", EVP_PKEY_get_bits(pkey));
		break;
	case EVP_PKEY_EC:
		snprintf(text, sizeof(text), "EC%d", EVP_PKEY_get_bits(pkey));
		break;
	case EVP_PKEY_DSA:
		snprintf(text, sizeof(text), "DSA%d", EVP_PKEY_get_bits(pkey));
		break;
	default:
		snprintf(text, sizeof(text), "%s", OBJ_nid2sn(type) ?: "");
		break;
	}
	return set_str(&id->key_alg, text);
}

/* XFCC quoted value: '"' and '\' are backslash-escaped. */
static int xfcc_quoted(struct buf *out, const char *key, const char *val)
{
	int ret = buf_printf(out, ";%s=\"", key);

	for (const char *p = val; !ret && *p; p++) {
		if (*p == '"' || *p == '\\')
			ret = buf_append(out, "\\", 1);
		ret = ret ?: buf_append(out, p, 1);
	}
	return ret ?: buf_puts(out, "\"");
}

static int parse_cert(X509 *cert, STACK_OF(X509) * chain, struct gw_identity *id)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	struct buf b = {0}, chain_pem = {0}, tail = {0};
	ASN1_INTEGER *serial = X509_get_serialNumber(cert);
	BIO *bio;
	int ret, n;

	id->has_cert = true;

	/* $ssl_client_raw_cert and its two nginx derivatives */
	ret = pem_of(cert, &b);
	ret = ret ?: set_buf(&id->raw_cert, &b);
	if (ret)
		goto out;
	buf_reset(&b);
	/* $ssl_client_cert: drop the last byte, a TAB after each remaining LF */
	for (size_t i = 0, len = strlen(id->raw_cert); !ret && i + 1 < len; i++) {
		ret = buf_append(&b, &id->raw_cert[i], 1);
		if (!ret && id->raw_cert[i] == '\n')
			ret = buf_append(&b, "\t", 1);
	}
	ret = ret ?: set_buf(&id->cert, &b);
	buf_reset(&b);
	ret = ret ?: identity_escape_uri_component(id->raw_cert, strlen(id->raw_cert), &b);
	ret = ret ?: set_buf(&id->escaped_cert, &b);
	if (ret)
		goto out;

	ret = name_rfc2253(X509_get_subject_name(cert), &id->s_dn);
	ret = ret ?: name_oneline(X509_get_subject_name(cert), &id->s_dn_legacy);
	ret = ret ?: name_rfc2253(X509_get_issuer_name(cert), &id->i_dn);
	ret = ret ?: name_oneline(X509_get_issuer_name(cert), &id->i_dn_legacy);
	if (ret)
		goto out;

	bio = BIO_new(BIO_s_mem());
	if (!bio) {
		ret = -ENOMEM;
		goto out;
	}
	i2a_ASN1_INTEGER(bio, serial);
	free(id->serial);
	id->serial = bio_take(bio);
	BIO_free(bio);
	if (!id->serial) {
		ret = -ENOMEM;
		goto out;
	}

	buf_reset(&b);
	ret = X509_digest(cert, EVP_sha1(), md, &mdlen) ? 0 : -ENOMEM;
	ret = ret ?: hex_append(&b, md, mdlen, hex_lower);
	ret = ret ?: set_buf(&id->fp_sha1, &b);
	buf_reset(&b);
	ret = ret ?: (X509_digest(cert, EVP_sha256(), md, &mdlen) ? 0 : -ENOMEM);
	ret = ret ?: hex_append(&b, md, mdlen, hex_lower);
	ret = ret ?: set_buf(&id->fp_sha256, &b);
	ret = ret ?: asn1_time_text(X509_get0_notBefore(cert), &id->v_start);
	ret = ret ?: asn1_time_text(X509_get0_notAfter(cert), &id->v_end);
	if (ret)
		goto out;
	id->not_after = asn1_time_epoch(X509_get0_notAfter(cert));

	ret = parse_cn(cert, id);
	ret = ret ?: parse_sans(cert, id, &tail);
	ret = ret ?: parse_key_alg(cert, id);
	ret = ret ?: set_str(&id->sig_alg, OBJ_nid2sn(X509_get_signature_nid(cert)));
	if (ret)
		goto out;
	if (strcmp(id->sig_alg, "UNDEF") == 0)
		ret = set_str(&id->sig_alg, "");

	/* DER for PROXY v2, RFC 9440 forms */
	free(id->der);
	id->der = NULL;
	n = i2d_X509(cert, &id->der);
	if (n <= 0) {
		id->der = NULL;
		ret = -ENOMEM;
		goto out;
	}
	id->der_len = (size_t)n;
	buf_reset(&b);
	ret = ret ?: sf_binary(id->der, id->der_len, &b);
	ret = ret ?: set_buf(&id->rfc9440_cert, &b);

	/* the intermediates the client sent; the leaf is not part of it */
	buf_reset(&b);
	ret = ret ?: pem_of(cert, &chain_pem);
	for (int i = 0; !ret && chain && i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (i == 0 && X509_cmp(x, cert) == 0)
			continue; /* a client-side style chain that starts with the leaf */
		if (b.len)
			ret = buf_puts(&b, ", ");
		ret = ret ?: der_sf_binary(x, &b);
		ret = ret ?: pem_of(x, &chain_pem);
	}
	ret = ret ?: set_buf(&id->rfc9440_chain, &b);
	if (ret)
		goto out;

	/* Envoy XFCC element: Hash, Cert, Chain, Subject, URI..., DNS... */
	buf_reset(&b);
	ret = buf_printf(&b, "Hash=%s;Cert=\"", id->fp_sha256);
	ret = ret ?: identity_escape_uri_component(id->raw_cert, strlen(id->raw_cert), &b);
	ret = ret ?: buf_puts(&b, "\";Chain=\"");
	ret = ret ?: identity_escape_uri_component(chain_pem.data, chain_pem.len, &b);
	ret = ret ?: buf_puts(&b, "\"");
	if (!ret && id->s_dn[0])
		ret = xfcc_quoted(&b, "Subject", id->s_dn);
	if (!ret && tail.len)
		ret = buf_append(&b, tail.data, tail.len);
	ret = ret ?: set_buf(&id->xfcc, &b);
out:
	buf_free(&b);
	buf_free(&chain_pem);
	buf_free(&tail);
	return ret;
}

/* Every string field still NULL becomes "". */
static int fill_empty(struct gw_identity *id)
{
	char **fields[] = {
		&id->verify,	&id->raw_cert,	  &id->cert,	     &id->escaped_cert,
		&id->s_dn,	&id->s_dn_legacy, &id->i_dn,	     &id->i_dn_legacy,
		&id->serial,	&id->fp_sha1,	  &id->fp_sha256,    &id->v_start,
		&id->v_end,	&id->cn,	  &id->san_dns,	     &id->san_uri,
		&id->spiffe_id, &id->xfcc,	  &id->rfc9440_cert, &id->rfc9440_chain,
		&id->protocol,	&id->cipher,	  &id->server_name,  &id->sig_alg,
		&id->key_alg,	&id->group,	  &id->sig_scheme,
	};

	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (!*fields[i] && set_str(fields[i], ""))
			return -ENOMEM;
	return 0;
}

static int set_verify(struct gw_identity *id, long verify_result)
{
	char text[256];

	id->verify_result = verify_result;
	if (!id->has_cert)
		return set_str(&id->verify, "NONE");
	if (verify_result == X509_V_OK)
		return set_str(&id->verify, "SUCCESS");
	snprintf(text, sizeof(text), "FAILED:%s", X509_verify_cert_error_string(verify_result));
	return set_str(&id->verify, text);
}

int identity_from_x509(X509 *cert, STACK_OF(X509) * chain, long verify_result,
		       struct gw_identity *id)
{
	int ret = 0;

	memset(id, 0, sizeof(*id));
	id->not_after = (time_t)-1;
	if (cert)
		ret = parse_cert(cert, chain, id);
	ret = ret ?: set_verify(id, verify_result);
	ret = ret ?: fill_empty(id);
	if (ret)
		identity_clear(id);
	return ret;
}

/* TLS SignatureScheme name of the client's CertificateVerify. */
static const char *sig_scheme_name(SSL *ssl, X509 *cert)
{
	static const struct {
		int type, md;
		const char *name;
	} schemes[] = {
		{EVP_PKEY_EC, NID_sha256, "ecdsa_secp256r1_sha256"},
		{EVP_PKEY_EC, NID_sha384, "ecdsa_secp384r1_sha384"},
		{EVP_PKEY_EC, NID_sha512, "ecdsa_secp521r1_sha512"},
		{EVP_PKEY_EC, NID_sha224, "ecdsa_sha224"},
		{EVP_PKEY_EC, NID_sha1, "ecdsa_sha1"},
		{EVP_PKEY_RSA, NID_sha256, "rsa_pkcs1_sha256"},
		{EVP_PKEY_RSA, NID_sha384, "rsa_pkcs1_sha384"},
		{EVP_PKEY_RSA, NID_sha512, "rsa_pkcs1_sha512"},
		{EVP_PKEY_RSA, NID_sha224, "rsa_pkcs1_sha224"},
		{EVP_PKEY_RSA, NID_sha1, "rsa_pkcs1_sha1"},
		{EVP_PKEY_DSA, NID_sha256, "dsa_sha256"},
		{EVP_PKEY_DSA, NID_sha1, "dsa_sha1"},
	};
	int type = NID_undef, md = NID_undef;
	EVP_PKEY *pkey;
	bool pss_key;

	if (!cert || !SSL_get_peer_signature_type_nid(ssl, &type))
		return "";
	SSL_get_peer_signature_nid(ssl, &md);
	switch (type) {
	case EVP_PKEY_ED25519:
		return "ed25519";
	case EVP_PKEY_ED448:
		return "ed448";
	case EVP_PKEY_RSA_PSS:
		pkey = X509_get0_pubkey(cert);
		pss_key = pkey && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA_PSS;
		switch (md) {
		case NID_sha256:
			return pss_key ? "rsa_pss_pss_sha256" : "rsa_pss_rsae_sha256";
		case NID_sha384:
			return pss_key ? "rsa_pss_pss_sha384" : "rsa_pss_rsae_sha384";
		case NID_sha512:
			return pss_key ? "rsa_pss_pss_sha512" : "rsa_pss_rsae_sha512";
		}
		return "";
	}
	for (size_t i = 0; i < ARRAY_SIZE(schemes); i++)
		if (schemes[i].type == type && schemes[i].md == md)
			return schemes[i].name;
	return "";
}

int identity_from_ssl(SSL *ssl, struct gw_identity *id)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	int group, ret;

	ret = identity_from_x509(cert, SSL_get_peer_cert_chain(ssl), SSL_get_verify_result(ssl),
				 id);
	if (ret)
		return ret;
	id->reused = SSL_session_reused(ssl);
	ret = set_str(&id->protocol, SSL_get_version(ssl));
	ret = ret ?: set_str(&id->cipher, SSL_get_cipher_name(ssl));
	ret = ret ?: set_str(&id->server_name, sni);
	group = SSL_get_negotiated_group(ssl);
	if (!ret && group > 0 && !(group & TLSEXT_nid_unknown))
		ret = set_str(&id->group, SSL_group_to_name(ssl, group));
	ret = ret ?: set_str(&id->sig_scheme, sig_scheme_name(ssl, cert));
	if (ret)
		identity_clear(id);
	return ret;
}

void identity_clear(struct gw_identity *id)
{
	char *fields[] = {
		id->verify,    id->raw_cert,	id->cert,	  id->escaped_cert,
		id->s_dn,      id->s_dn_legacy, id->i_dn,	  id->i_dn_legacy,
		id->serial,    id->fp_sha1,	id->fp_sha256,	  id->v_start,
		id->v_end,     id->cn,		id->san_dns,	  id->san_uri,
		id->spiffe_id, id->xfcc,	id->rfc9440_cert, id->rfc9440_chain,
		id->protocol,  id->cipher,	id->server_name,  id->sig_alg,
		id->key_alg,   id->group,	id->sig_scheme,
	};

	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		free(fields[i]);
	OPENSSL_free(id->der);
	memset(id, 0, sizeof(*id));
}

/* nginx's IPv6 text form (ngx_inet6_ntop behaviour), written independently. */
static size_t inet6_text(const unsigned char *a, char *out, size_t len)
{
	int best = -1, best_len = 1, run = 0, run_start = -1, stop = 8;
	size_t n = 0;

	for (int g = 0; g < 8; g++) {
		if (a[2 * g] || a[2 * g + 1]) {
			run = 0;
			continue;
		}
		if (run++ == 0)
			run_start = g;
		if (run > best_len) {
			best_len = run;
			best = run_start;
		}
	}
	/* an IPv4 tail after a leading zero run: mapped, compatible */
	if (best == 0 && ((best_len == 5 && a[10] == 0xff && a[11] == 0xff) || best_len == 6 ||
			  (best_len == 7 && a[14] != 0 && a[15] != 1)))
		stop = 6;
	if (best == 0)
		out[n++] = ':';
	for (int g = 0; g < stop; g++) {
		if (g == best) {
			out[n++] = ':';
			g += best_len - 1;
			continue;
		}
		n += (size_t)snprintf(out + n, len - n, "%x", a[2 * g] << 8 | a[2 * g + 1]);
		if (g < 7)
			out[n++] = ':';
	}
	if (stop == 6)
		n += (size_t)snprintf(out + n, len - n, "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
	out[n] = '\0';
	return n;
}

size_t identity_addr_text(const struct sockaddr *sa, char *out, size_t len)
{
	const unsigned char *a;
	int n;

	out[0] = '\0';
	if (!sa)
		return 0;
	switch (sa->sa_family) {
	case AF_INET:
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = snprintf(out, len, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		return n > 0 ? (size_t)n : 0;
	case AF_INET6:
		return inet6_text(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, out, len);
	case AF_UNIX:
		n = snprintf(out, len, "unix:%.*s",
			     (int)sizeof(((const struct sockaddr_un *)sa)->sun_path),
			     ((const struct sockaddr_un *)sa)->sun_path);
		return n > 0 ? MIN((size_t)n, len - 1) : 0;
	}
	return 0;
}

unsigned int identity_addr_port(const struct sockaddr *sa)
{
	if (sa && sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa && sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

static int render_addr(const struct sockaddr *sa, struct buf *out)
{
	char text[128];
	size_t n = identity_addr_text(sa, text, sizeof(text));

	return buf_append(out, text, n);
}

static int render_port(const struct sockaddr *sa, struct buf *out)
{
	unsigned int port = identity_addr_port(sa);

	return port ? buf_printf(out, "%u", port) : 0;
}

/* $host from a Host header: lowercase, no ":port", no trailing dot. */
static int render_host(const char *host, struct buf *out)
{
	size_t len = strlen(host), start = out->len;
	bool in_brackets = false;
	int ret;

	for (size_t i = 0; i < len; i++) {
		if (host[i] == '[')
			in_brackets = true;
		else if (host[i] == ']')
			in_brackets = false;
		else if (host[i] == ':' && !in_brackets) {
			len = i;
			break;
		}
	}
	if (len && host[len - 1] == '.')
		len--;
	ret = buf_append(out, host, len);
	for (size_t i = start; !ret && i < out->len; i++)
		out->data[i] = (char)tolower((unsigned char)out->data[i]);
	return ret;
}

static int render_v_remain(const struct gw_identity *id, struct buf *out)
{
	time_t now;

	if (!id->has_cert || id->not_after == (time_t)-1)
		return 0;
	now = time(NULL);
	if (id->not_after < now + 86400)
		return buf_puts(out, "0");
	return buf_printf(out, "%lld", (long long)((id->not_after - now) / 86400));
}

int identity_var_render(const struct gw_var_ctx *ctx, int var, struct buf *out)
{
	const struct gw_identity *id = ctx->id;
	const char *s = NULL;

	switch (var) {
	case GW_VAR_REMOTE_ADDR:
		return render_addr(ctx->peer, out);
	case GW_VAR_REMOTE_PORT:
		return render_port(ctx->peer, out);
	case GW_VAR_SERVER_ADDR:
		return render_addr(ctx->local, out);
	case GW_VAR_SERVER_PORT:
		return render_port(ctx->local, out);
	case GW_VAR_PROXY_ADD_X_FORWARDED_FOR:
		if (ctx->xff && ctx->xff[0] && buf_printf(out, "%s, ", ctx->xff))
			return -ENOMEM;
		return render_addr(ctx->peer, out);
	case GW_VAR_SCHEME:
		return buf_puts(out, "https");
	case GW_VAR_HOST:
		if (ctx->host && ctx->host[0])
			return render_host(ctx->host, out);
		return buf_puts(out, ctx->server_name ? ctx->server_name : "");
	}
	if (!id)
		return 0; /* not a TLS connection: every ssl variable is empty */

	switch (var) {
	case GW_VAR_SSL_CLIENT_CERT:
		s = id->cert;
		break;
	case GW_VAR_SSL_CLIENT_RAW_CERT:
		s = id->raw_cert;
		break;
	case GW_VAR_SSL_CLIENT_ESCAPED_CERT:
		s = id->escaped_cert;
		break;
	case GW_VAR_SSL_CLIENT_S_DN:
		s = id->s_dn;
		break;
	case GW_VAR_SSL_CLIENT_S_DN_LEGACY:
		s = id->s_dn_legacy;
		break;
	case GW_VAR_SSL_CLIENT_I_DN:
		s = id->i_dn;
		break;
	case GW_VAR_SSL_CLIENT_I_DN_LEGACY:
		s = id->i_dn_legacy;
		break;
	case GW_VAR_SSL_CLIENT_SERIAL:
		s = id->serial;
		break;
	case GW_VAR_SSL_CLIENT_FINGERPRINT:
		s = id->fp_sha1;
		break;
	case GW_VAR_SSL_CLIENT_VERIFY:
		s = id->verify;
		break;
	case GW_VAR_SSL_CLIENT_V_START:
		s = id->v_start;
		break;
	case GW_VAR_SSL_CLIENT_V_END:
		s = id->v_end;
		break;
	case GW_VAR_SSL_CLIENT_V_REMAIN:
		return render_v_remain(id, out);
	case GW_VAR_SSL_PROTOCOL:
		s = id->protocol;
		break;
	case GW_VAR_SSL_CIPHER:
		s = id->cipher;
		break;
	case GW_VAR_SSL_SERVER_NAME:
		s = id->server_name;
		break;
	case GW_VAR_SSL_SESSION_REUSED:
		s = id->reused ? "r" : ".";
		break;
	case GW_VAR_SSL_CLIENT_FINGERPRINT_SHA256:
		s = id->fp_sha256;
		break;
	case GW_VAR_SSL_CLIENT_SAN_DNS:
		s = id->san_dns;
		break;
	case GW_VAR_SSL_CLIENT_SAN_URI:
		s = id->san_uri;
		break;
	case GW_VAR_SSL_CLIENT_SPIFFE_ID:
		s = id->spiffe_id;
		break;
	case GW_VAR_SSL_CLIENT_XFCC:
		s = id->xfcc;
		break;
	case GW_VAR_SSL_CLIENT_CERT_RFC9440:
		s = id->rfc9440_cert;
		break;
	case GW_VAR_SSL_CLIENT_CHAIN_RFC9440:
		s = id->rfc9440_chain;
		break;
	}
	return s ? buf_puts(out, s) : 0;
}

int tmpl_render(const struct gw_tmpl *t, const struct gw_var_ctx *ctx, struct buf *out)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < t->nparts; i++) {
		if (t->parts[i].lit)
			ret = buf_puts(out, t->parts[i].lit);
		else
			ret = identity_var_render(ctx, t->parts[i].var_id, out);
	}
	return ret;
}
