// SPDX-License-Identifier: MIT
/*
 * Identity engine: at the end of the handshake only the session facts and
 * references to the peer certificate (and the intermediates the client sent)
 * are recorded; each variable's value is derived from the certificate the
 * first time it is rendered and cached in the struct gw_identity. The nginx
 * variables are produced with the same OpenSSL calls nginx 1.22 uses
 * (src/event/ngx_event_openssl.c, ngx_ssl_get_*), so they match byte for byte.
 */
#include <errno.h>
#include <stddef.h>
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

/* The cached value of every empty field: shared, never freed. */
static char id_empty[1];

static void str_free(char *s)
{
	if (s != id_empty)
		free(s);
}

/* Append a memory BIO's content. */
static int bio_append(BIO *bio, struct buf *out)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);

	if (n < 0)
		return -ENOMEM;
	return buf_append(out, data, (size_t)n);
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
	int ret = -ENOMEM;

	if (!bio)
		return -ENOMEM;
	if (PEM_write_bio_X509(bio, x))
		ret = bio_append(bio, out);
	BIO_free(bio);
	return ret;
}

/*
 * The leaf's PEM: the cached $ssl_client_raw_cert if there is one, else
 * written into @tmp (not cached: a configuration that uses only
 * $ssl_client_escaped_cert keeps only that one).
 */
static int leaf_pem(struct gw_identity *id, struct buf *tmp, const char **pem, size_t *len)
{
	int ret;

	if (id->raw_cert) {
		*pem = id->raw_cert;
		*len = strlen(id->raw_cert);
		return 0;
	}
	ret = pem_of(id->x509, tmp);
	*pem = tmp->data ? tmp->data : "";
	*len = tmp->len;
	return ret;
}

/* X509_NAME_print_ex(XN_FLAG_RFC2253) as nginx's $ssl_client_s_dn. */
static int name_rfc2253(const X509_NAME *name, struct buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int ret = -ENOMEM;

	if (!bio)
		return -ENOMEM;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		ret = bio_append(bio, out);
	BIO_free(bio);
	return ret;
}

static int name_oneline(const X509_NAME *name, struct buf *out)
{
	char *p = X509_NAME_oneline(name, NULL, 0);
	int ret;

	if (!p)
		return -ENOMEM;
	ret = buf_puts(out, p);
	OPENSSL_free(p);
	return ret;
}

static int asn1_time_text(const ASN1_TIME *t, struct buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int ret;

	if (!bio)
		return -ENOMEM;
	ASN1_TIME_print(bio, t); /* nginx ignores the result too */
	ret = bio_append(bio, out);
	BIO_free(bio);
	return ret;
}

static time_t asn1_time_epoch(const ASN1_TIME *t)
{
	struct tm tm;

	if (!ASN1_TIME_to_tm(t, &tm))
		return (time_t)-1;
	return timegm(&tm);
}

static int digest_hex(X509 *x, const EVP_MD *md, struct buf *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n;

	if (!X509_digest(x, md, d, &n))
		return -ENOMEM;
	return hex_append(out, d, n, hex_lower);
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

/* What one walk over the subjectAltName gives; a NULL member is not wanted. */
struct san_out {
	struct buf *dns;    /* "a,b" */
	struct buf *uri;    /* "u1,u2" */
	struct buf *xfcc;   /* ";URI=u1;URI=u2;DNS=a;DNS=b" (Envoy's key order) */
	struct buf *spiffe; /* the single spiffe:// URI */
};

static int san_walk(X509 *cert, const struct san_out *o)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	struct buf xd = {0};
	const char *only_uri = NULL;
	int nuri = 0, only_len = 0, ret = 0;

	for (int i = 0; !ret && gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_IA5STRING *s;
		struct buf *list;
		const char *p;
		size_t n;

		if (g->type == GEN_DNS) {
			s = g->d.dNSName;
			list = o->dns;
		} else if (g->type == GEN_URI) {
			s = g->d.uniformResourceIdentifier;
			list = o->uri;
		} else {
			continue;
		}
		if (!san_printable(s))
			continue;
		p = (const char *)ASN1_STRING_get0_data(s);
		n = (size_t)ASN1_STRING_length(s);
		if (list && list->len)
			ret = buf_puts(list, ",");
		if (list)
			ret = ret ?: buf_append(list, p, n);
		if (g->type == GEN_URI) {
			only_uri = p;
			only_len = (int)n;
			nuri++;
			if (o->xfcc) {
				ret = ret ?: buf_puts(o->xfcc, ";URI=");
				ret = ret ?: buf_append(o->xfcc, p, n);
			}
		} else if (o->xfcc) {
			ret = ret ?: buf_puts(&xd, ";DNS=");
			ret = ret ?: buf_append(&xd, p, n);
		}
	}
	if (o->xfcc && xd.len)
		ret = ret ?: buf_append(o->xfcc, xd.data, xd.len);
	if (o->spiffe && nuri == 1 && only_len > 9 && strncmp(only_uri, "spiffe://", 9) == 0)
		ret = ret ?: buf_append(o->spiffe, only_uri, (size_t)only_len);
	buf_free(&xd);
	GENERAL_NAMES_free(gens);
	return ret;
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

/*
 * ---- One "make" function per lazy field: append the value to @out. ----
 * They run only with id->x509 set, except mk_verify.
 */

static int mk_verify(struct gw_identity *id, struct buf *out)
{
	if (!id->has_cert)
		return buf_puts(out, "NONE");
	if (id->verify_result == X509_V_OK)
		return buf_puts(out, "SUCCESS");
	return buf_printf(out, "FAILED:%s", X509_verify_cert_error_string(id->verify_result));
}

static int mk_raw_cert(struct gw_identity *id, struct buf *out)
{
	return pem_of(id->x509, out);
}

/* $ssl_client_cert: drop the last byte, a TAB after each remaining LF */
static int mk_cert(struct gw_identity *id, struct buf *out)
{
	struct buf tmp = {0};
	const char *pem;
	size_t len;
	int ret = leaf_pem(id, &tmp, &pem, &len);

	for (size_t i = 0; !ret && i + 1 < len; i++) {
		ret = buf_append(out, &pem[i], 1);
		if (!ret && pem[i] == '\n')
			ret = buf_append(out, "\t", 1);
	}
	buf_free(&tmp);
	return ret;
}

static int mk_escaped_cert(struct gw_identity *id, struct buf *out)
{
	struct buf tmp = {0};
	const char *pem;
	size_t len;
	int ret = leaf_pem(id, &tmp, &pem, &len);

	ret = ret ?: identity_escape_uri_component(pem, len, out);
	buf_free(&tmp);
	return ret;
}

static int mk_s_dn(struct gw_identity *id, struct buf *out)
{
	return name_rfc2253(X509_get_subject_name(id->x509), out);
}

static int mk_s_dn_legacy(struct gw_identity *id, struct buf *out)
{
	return name_oneline(X509_get_subject_name(id->x509), out);
}

static int mk_i_dn(struct gw_identity *id, struct buf *out)
{
	return name_rfc2253(X509_get_issuer_name(id->x509), out);
}

static int mk_i_dn_legacy(struct gw_identity *id, struct buf *out)
{
	return name_oneline(X509_get_issuer_name(id->x509), out);
}

static int mk_serial(struct gw_identity *id, struct buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int ret;

	if (!bio)
		return -ENOMEM;
	i2a_ASN1_INTEGER(bio, X509_get_serialNumber(id->x509));
	ret = bio_append(bio, out);
	BIO_free(bio);
	return ret;
}

static int mk_fp_sha1(struct gw_identity *id, struct buf *out)
{
	return digest_hex(id->x509, EVP_sha1(), out);
}

static int mk_fp_sha256(struct gw_identity *id, struct buf *out)
{
	return digest_hex(id->x509, EVP_sha256(), out);
}

static int mk_v_start(struct gw_identity *id, struct buf *out)
{
	return asn1_time_text(X509_get0_notBefore(id->x509), out);
}

static int mk_v_end(struct gw_identity *id, struct buf *out)
{
	return asn1_time_text(X509_get0_notAfter(id->x509), out);
}

static int mk_cn(struct gw_identity *id, struct buf *out)
{
	const X509_NAME *name = X509_get_subject_name(id->x509);
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n, ret;

	if (i < 0)
		return 0;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	if (n < 0)
		return 0; /* an undecodable CN: no CN */
	ret = buf_append(out, utf8, strnlen((char *)utf8, (size_t)n));
	OPENSSL_free(utf8);
	return ret;
}

static int mk_san_dns(struct gw_identity *id, struct buf *out)
{
	return san_walk(id->x509, &(struct san_out){.dns = out});
}

static int mk_san_uri(struct gw_identity *id, struct buf *out)
{
	return san_walk(id->x509, &(struct san_out){.uri = out});
}

static int mk_spiffe_id(struct gw_identity *id, struct buf *out)
{
	return san_walk(id->x509, &(struct san_out){.spiffe = out});
}

/* Envoy XFCC element: Hash, Cert, Chain, Subject, URI..., DNS... */
static int mk_xfcc(struct gw_identity *id, struct buf *out)
{
	struct buf pem = {0}, chain_pem = {0}, dn = {0};
	const char *leaf, *s_dn = id->s_dn;
	size_t leaf_len;
	int ret;

	ret = buf_puts(out, "Hash=");
	if (id->fp_sha256)
		ret = ret ?: buf_puts(out, id->fp_sha256);
	else
		ret = ret ?: digest_hex(id->x509, EVP_sha256(), out);
	ret = ret ?: leaf_pem(id, &pem, &leaf, &leaf_len);
	ret = ret ?: buf_puts(out, ";Cert=\"");
	ret = ret ?: identity_escape_uri_component(leaf, leaf_len, out);
	/* Chain: the leaf, then what the client sent */
	ret = ret ?: buf_append(&chain_pem, leaf, leaf_len);
	for (int i = 0; !ret && id->chain && i < sk_X509_num(id->chain); i++)
		ret = pem_of(sk_X509_value(id->chain, i), &chain_pem);
	ret = ret ?: buf_puts(out, "\";Chain=\"");
	ret = ret ?: identity_escape_uri_component(chain_pem.data, chain_pem.len, out);
	ret = ret ?: buf_puts(out, "\"");
	if (!ret && !s_dn) {
		ret = mk_s_dn(id, &dn) ?: buf_append(&dn, "", 0);
		s_dn = dn.data;
	}
	if (!ret && s_dn[0])
		ret = xfcc_quoted(out, "Subject", s_dn);
	ret = ret ?: san_walk(id->x509, &(struct san_out){.xfcc = out});
	buf_free(&pem);
	buf_free(&chain_pem);
	buf_free(&dn);
	return ret;
}

static int mk_rfc9440_cert(struct gw_identity *id, struct buf *out)
{
	if (id->der)
		return sf_binary(id->der, id->der_len, out);
	return der_sf_binary(id->x509, out);
}

/* the intermediates the client sent; the leaf is not part of it */
static int mk_rfc9440_chain(struct gw_identity *id, struct buf *out)
{
	int ret = 0;

	for (int i = 0; !ret && id->chain && i < sk_X509_num(id->chain); i++) {
		if (i)
			ret = buf_puts(out, ", ");
		ret = ret ?: der_sf_binary(sk_X509_value(id->chain, i), out);
	}
	return ret;
}

static int mk_sig_alg(struct gw_identity *id, struct buf *out)
{
	const char *sn = OBJ_nid2sn(X509_get_signature_nid(id->x509));

	if (!sn || strcmp(sn, "UNDEF") == 0)
		return 0;
	return buf_puts(out, sn);
}

static int mk_key_alg(struct gw_identity *id, struct buf *out)
{
	EVP_PKEY *pkey = X509_get0_pubkey(id->x509);
	int type;

	if (!pkey)
		return 0;
	type = EVP_PKEY_get_base_id(pkey);
	switch (type) {
	case EVP_PKEY_RSA:
	case EVP_PKEY_RSA_PSS:
		return buf_printf(out, "RSA%d", EVP_PKEY_get_bits(pkey));
	case EVP_PKEY_EC:
		return buf_printf(out, "EC%d", EVP_PKEY_get_bits(pkey));
	case EVP_PKEY_DSA:
		return buf_printf(out, "DSA%d", EVP_PKEY_get_bits(pkey));
	}
	return buf_puts(out, OBJ_nid2sn(type) ?: "");
}

static const struct {
	size_t off; /* of the char * cache in struct gw_identity */
	int (*make)(struct gw_identity *id, struct buf *out);
} lazy_fields[GW_ID__COUNT] = {
#define LAZY(e, field) [e] = {offsetof(struct gw_identity, field), mk_##field}
	LAZY(GW_ID_VERIFY, verify),
	LAZY(GW_ID_RAW_CERT, raw_cert),
	LAZY(GW_ID_CERT, cert),
	LAZY(GW_ID_ESCAPED_CERT, escaped_cert),
	LAZY(GW_ID_S_DN, s_dn),
	LAZY(GW_ID_S_DN_LEGACY, s_dn_legacy),
	LAZY(GW_ID_I_DN, i_dn),
	LAZY(GW_ID_I_DN_LEGACY, i_dn_legacy),
	LAZY(GW_ID_SERIAL, serial),
	LAZY(GW_ID_FP_SHA1, fp_sha1),
	LAZY(GW_ID_FP_SHA256, fp_sha256),
	LAZY(GW_ID_V_START, v_start),
	LAZY(GW_ID_V_END, v_end),
	LAZY(GW_ID_CN, cn),
	LAZY(GW_ID_SAN_DNS, san_dns),
	LAZY(GW_ID_SAN_URI, san_uri),
	LAZY(GW_ID_SPIFFE_ID, spiffe_id),
	LAZY(GW_ID_XFCC, xfcc),
	LAZY(GW_ID_RFC9440_CERT, rfc9440_cert),
	LAZY(GW_ID_RFC9440_CHAIN, rfc9440_chain),
	LAZY(GW_ID_SIG_ALG, sig_alg),
	LAZY(GW_ID_KEY_ALG, key_alg),
#undef LAZY
};

static char **lazy_slot(struct gw_identity *id, enum gw_id_str which)
{
	return (char **)((char *)id + lazy_fields[which].off);
}

const char *identity_str(struct gw_identity *id, enum gw_id_str which)
{
	char **slot;
	struct buf b = {0};
	char *s;

	if ((unsigned int)which >= GW_ID__COUNT)
		return id_empty;
	slot = lazy_slot(id, which);
	if (*slot)
		return *slot;
	/* without a certificate (or a hand-made identity) every field but verify is "" */
	if (!id->x509 && which != GW_ID_VERIFY) {
		*slot = id_empty;
		return *slot;
	}
	if (lazy_fields[which].make(id, &b)) {
		buf_free(&b);
		return NULL;
	}
	/* an exact-size copy: the cache is held as long as the connection */
	s = b.len ? buf_strdup(&b) : id_empty;
	buf_free(&b);
	if (!s)
		return NULL;
	*slot = s;
	return s;
}

int identity_der(struct gw_identity *id, const unsigned char **der, size_t *len)
{
	unsigned char *p = NULL;
	int n;

	if (!id->der && id->x509) {
		n = i2d_X509(id->x509, &p);
		if (n <= 0)
			return -ENOMEM;
		id->der = p;
		id->der_len = (size_t)n;
	}
	*der = id->der;
	*len = id->der ? id->der_len : 0;
	return 0;
}

int identity_fill(struct gw_identity *id)
{
	const unsigned char *der;
	size_t len;

	for (int i = 0; i < GW_ID__COUNT; i++)
		if (!identity_str(id, (enum gw_id_str)i))
			return -ENOMEM;
	if (!id->server_name)
		id->server_name = id_empty;
	if (id->x509)
		id->not_after = asn1_time_epoch(X509_get0_notAfter(id->x509));
	return identity_der(id, &der, &len);
}

/*
 * Keep references to @cert and to the intermediates in @chain after it (a
 * leading copy of the leaf, as a client-side chain has, is skipped): no copy
 * of anything when the client sent only its leaf.
 */
static int hold_certs(X509 *cert, STACK_OF(X509) * chain, struct gw_identity *id)
{
	int first = 0, n = chain ? sk_X509_num(chain) : 0;

	if (!cert)
		return 0;
	if (!X509_up_ref(cert))
		return -ENOMEM;
	id->x509 = cert;
	id->has_cert = true;
	if (n > 0 && X509_cmp(sk_X509_value(chain, 0), cert) == 0)
		first = 1;
	if (n <= first)
		return 0;
	id->chain = sk_X509_new_reserve(NULL, n - first);
	if (!id->chain)
		return -ENOMEM;
	for (int i = first; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);

		if (!X509_up_ref(x))
			return -ENOMEM;
		sk_X509_push(id->chain, x); /* reserved: cannot fail */
	}
	return 0;
}

int identity_from_x509(X509 *cert, STACK_OF(X509) * chain, long verify_result,
		       struct gw_identity *id)
{
	int ret;

	memset(id, 0, sizeof(*id));
	id->not_after = (time_t)-1;
	id->verify_result = verify_result;
	id->protocol = id->cipher = id->group = id->sig_scheme = "";
	id->server_name = id_empty;
	ret = hold_certs(cert, chain, id);
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

/*
 * SSL_group_to_name() gives a string of the SSL_CTX (its group list), which
 * may go before the identity: the well-known names are taken from this
 * table, any other one is copied.
 */
static int set_group(struct gw_identity *id, const char *name)
{
	static const char *const known[] = {
		"x25519",	   "x448",	"secp256r1",	   "secp384r1",
		"secp521r1",	   "ffdhe2048", "ffdhe3072",	   "ffdhe4096",
		"ffdhe6144",	   "ffdhe8192", "brainpoolP256r1", "brainpoolP384r1",
		"brainpoolP512r1", "secp224r1", "secp256k1",
	};

	for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
		if (strcmp(name, known[i]) == 0) {
			id->group = known[i];
			return 0;
		}
	}
	id->group_copy = strdup(name);
	if (!id->group_copy)
		return -ENOMEM;
	id->group = id->group_copy;
	return 0;
}

int identity_from_ssl(SSL *ssl, struct gw_identity *id)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const char *name;
	int group, ret;

	ret = identity_from_x509(cert, SSL_get_peer_cert_chain(ssl), SSL_get_verify_result(ssl),
				 id);
	if (ret)
		return ret;
	id->reused = SSL_session_reused(ssl);
	/* static strings: ssl_protocol_to_string(), the static cipher tables' names */
	id->protocol = SSL_get_version(ssl) ?: "";
	id->cipher = SSL_get_cipher_name(ssl) ?: "";
	id->sig_scheme = sig_scheme_name(ssl, cert);
	if (sni && sni[0]) {
		id->server_name = strdup(sni);
		if (!id->server_name)
			ret = -ENOMEM;
	}
	group = SSL_get_negotiated_group(ssl);
	if (!ret && group > 0 && !(group & TLSEXT_nid_unknown)) {
		name = SSL_group_to_name(ssl, group);
		if (name)
			ret = set_group(id, name);
	}
	if (ret)
		identity_clear(id);
	return ret;
}

void identity_clear(struct gw_identity *id)
{
	for (int i = 0; i < GW_ID__COUNT; i++)
		str_free(*lazy_slot(id, (enum gw_id_str)i));
	str_free(id->server_name);
	free(id->group_copy);
	OPENSSL_free(id->der);
	X509_free(id->x509);
	sk_X509_pop_free(id->chain, X509_free);
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
	time_t now, not_after = id->not_after;

	if (!id->has_cert)
		return 0;
	if (id->x509)
		not_after = asn1_time_epoch(X509_get0_notAfter(id->x509));
	if (not_after == (time_t)-1)
		return 0;
	now = time(NULL);
	if (not_after < now + 86400)
		return buf_puts(out, "0");
	return buf_printf(out, "%lld", (long long)((not_after - now) / 86400));
}

/* The lazy field behind a certificate variable, or -1. */
static int var_field(int var)
{
	switch (var) {
	case GW_VAR_SSL_CLIENT_CERT:
		return GW_ID_CERT;
	case GW_VAR_SSL_CLIENT_RAW_CERT:
		return GW_ID_RAW_CERT;
	case GW_VAR_SSL_CLIENT_ESCAPED_CERT:
		return GW_ID_ESCAPED_CERT;
	case GW_VAR_SSL_CLIENT_S_DN:
		return GW_ID_S_DN;
	case GW_VAR_SSL_CLIENT_S_DN_LEGACY:
		return GW_ID_S_DN_LEGACY;
	case GW_VAR_SSL_CLIENT_I_DN:
		return GW_ID_I_DN;
	case GW_VAR_SSL_CLIENT_I_DN_LEGACY:
		return GW_ID_I_DN_LEGACY;
	case GW_VAR_SSL_CLIENT_SERIAL:
		return GW_ID_SERIAL;
	case GW_VAR_SSL_CLIENT_FINGERPRINT:
		return GW_ID_FP_SHA1;
	case GW_VAR_SSL_CLIENT_VERIFY:
		return GW_ID_VERIFY;
	case GW_VAR_SSL_CLIENT_V_START:
		return GW_ID_V_START;
	case GW_VAR_SSL_CLIENT_V_END:
		return GW_ID_V_END;
	case GW_VAR_SSL_CLIENT_FINGERPRINT_SHA256:
		return GW_ID_FP_SHA256;
	case GW_VAR_SSL_CLIENT_SAN_DNS:
		return GW_ID_SAN_DNS;
	case GW_VAR_SSL_CLIENT_SAN_URI:
		return GW_ID_SAN_URI;
	case GW_VAR_SSL_CLIENT_SPIFFE_ID:
		return GW_ID_SPIFFE_ID;
	case GW_VAR_SSL_CLIENT_XFCC:
		return GW_ID_XFCC;
	case GW_VAR_SSL_CLIENT_CERT_RFC9440:
		return GW_ID_RFC9440_CERT;
	case GW_VAR_SSL_CLIENT_CHAIN_RFC9440:
		return GW_ID_RFC9440_CHAIN;
	}
	return -1;
}

int identity_var_render(const struct gw_var_ctx *ctx, int var, struct buf *out)
{
	struct gw_identity *id = ctx->id;
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
	default:
		if (var_field(var) < 0)
			return 0;
		s = identity_str(id, (enum gw_id_str)var_field(var));
		if (!s)
			return -ENOMEM;
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
