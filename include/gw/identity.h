/* SPDX-License-Identifier: MIT */
/*
 * Identity engine: the verified peer certificate is parsed once per
 * connection into a struct gw_identity; every variable of the contract is
 * rendered from it (byte-identical to nginx 1.22 for nginx's variables).
 * Also owns the variable table and the "$var" templates used by
 * proxy_set_header and access_log.
 */
#ifndef GW_IDENTITY_H
#define GW_IDENTITY_H

#include <time.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "gw/common.h"
#include "gw/config.h"

enum gw_var {
	GW_VAR_SSL_CLIENT_CERT = 0,
	GW_VAR_SSL_CLIENT_RAW_CERT,
	GW_VAR_SSL_CLIENT_ESCAPED_CERT,
	GW_VAR_SSL_CLIENT_S_DN,
	GW_VAR_SSL_CLIENT_S_DN_LEGACY,
	GW_VAR_SSL_CLIENT_I_DN,
	GW_VAR_SSL_CLIENT_I_DN_LEGACY,
	GW_VAR_SSL_CLIENT_SERIAL,
	GW_VAR_SSL_CLIENT_FINGERPRINT,
	GW_VAR_SSL_CLIENT_VERIFY,
	GW_VAR_SSL_CLIENT_V_START,
	GW_VAR_SSL_CLIENT_V_END,
	GW_VAR_SSL_CLIENT_V_REMAIN,
	GW_VAR_SSL_PROTOCOL,
	GW_VAR_SSL_CIPHER,
	GW_VAR_SSL_SERVER_NAME,
	GW_VAR_SSL_SESSION_REUSED,
	GW_VAR_REMOTE_ADDR,
	GW_VAR_REMOTE_PORT,
	GW_VAR_SERVER_ADDR,
	GW_VAR_SERVER_PORT,
	GW_VAR_PROXY_ADD_X_FORWARDED_FOR,
	GW_VAR_SCHEME,
	GW_VAR_HOST,
	GW_VAR_SSL_CLIENT_FINGERPRINT_SHA256,
	GW_VAR_SSL_CLIENT_SAN_DNS,
	GW_VAR_SSL_CLIENT_SAN_URI,
	GW_VAR_SSL_CLIENT_SPIFFE_ID,
	GW_VAR_SSL_CLIENT_XFCC,
	GW_VAR_SSL_CLIENT_CERT_RFC9440,
	GW_VAR_SSL_CLIENT_CHAIN_RFC9440,
	GW_VAR__COUNT,
};

/*
 * The strings derived from the peer certificate, computed on first use
 * (identity_str()) and cached in struct gw_identity.
 */
enum gw_id_str {
	GW_ID_VERIFY = 0,
	GW_ID_RAW_CERT,
	GW_ID_CERT,
	GW_ID_ESCAPED_CERT,
	GW_ID_S_DN,
	GW_ID_S_DN_LEGACY,
	GW_ID_I_DN,
	GW_ID_I_DN_LEGACY,
	GW_ID_SERIAL,
	GW_ID_FP_SHA1,
	GW_ID_FP_SHA256,
	GW_ID_V_START,
	GW_ID_V_END,
	GW_ID_CN,
	GW_ID_SAN_DNS,
	GW_ID_SAN_URI,
	GW_ID_SPIFFE_ID,
	GW_ID_XFCC,
	GW_ID_RFC9440_CERT,
	GW_ID_RFC9440_CHAIN,
	GW_ID_SIG_ALG,
	GW_ID_KEY_ALG,
	GW_ID__COUNT,
};

/*
 * Everything the gateway knows about the client after the handshake.
 *
 * identity_from_ssl() records only what the SSL holds at that moment (the
 * session facts below) and REFERENCES to the peer certificate and to the
 * intermediates the client sent; it keeps no SSL pointer, so the SSL may be
 * freed before the identity. Each certificate-derived string is computed
 * the first time it is asked for (identity_str() and the accessors below,
 * identity_var_render(), pp2_encode()) and cached in its field:
 *
 *   NULL     not computed yet;
 *   ""       empty (a shared static empty string, never freed);
 *   else     malloc'd, NUL-terminated.
 *
 * So read a cache field directly only after identity_str() for it or
 * identity_fill() (which computes them all, the former eager behaviour).
 * A failed computation (out of memory) caches nothing.
 */
struct gw_identity {
	bool has_cert;	    /* the client presented a certificate */
	bool reused;	    /* $ssl_session_reused "r" / "." */
	long verify_result; /* SSL_get_verify_result() */
	X509 *x509;	    /* the peer certificate (a reference), NULL without one */
	/* the intermediates the client sent after its leaf (references), NULL if none */
	STACK_OF(X509) * chain;

	/*
	 * Session facts, set when the identity is filled ("" from identity_from_x509()).
	 * protocol, cipher and sig_scheme are static strings (SSL_get_version(),
	 * SSL_CIPHER_get_name() of OpenSSL's static cipher tables, our own table).
	 */
	const char *protocol; /* SSL_get_version(): "TLSv1.3" */
	const char *cipher;   /* SSL_get_cipher_name() */
	char *server_name;    /* SNI (malloc'd) or "" */
	/*
	 * PROXY v2 0x26: negotiated key exchange group, TLS (IANA) name from
	 * SSL_group_to_name(): "x25519", "secp256r1", "ffdhe2048"; "" when none
	 * (e.g. a resumed TLS 1.2 session). A static string for the well-known
	 * groups, else group_copy.
	 */
	const char *group;
	char *group_copy;
	/*
	 * PROXY v2 0x27: the scheme the client signed its CertificateVerify with,
	 * TLS SignatureScheme name built from SSL_get_peer_signature_type_nid() and
	 * SSL_get_peer_signature_nid(): "ecdsa_secp256r1_sha256",
	 * "rsa_pss_rsae_sha256", "rsa_pkcs1_sha256", "ed25519"; "" when the client
	 * did not sign in this handshake (no cert, or a resumed session).
	 */
	const char *sig_scheme;

	/* ---- computed on first use (see above) ---- */
	char *verify; /* "SUCCESS", "FAILED:<reason>", "NONE" */

	/* certificate, nginx formats */
	char *raw_cert;	    /* PEM as PEM_write_bio_X509 writes it */
	char *cert;	    /* PEM, last LF dropped, "\n\t" continuation */
	char *escaped_cert; /* URL-encoded PEM, nginx's NGX_ESCAPE_URI_COMPONENT */
	char *s_dn, *s_dn_legacy, *i_dn, *i_dn_legacy;
	char *serial;	 /* uppercase hex (i2a_ASN1_INTEGER) */
	char *fp_sha1;	 /* lowercase hex, no colons */
	char *fp_sha256; /* lowercase hex, no colons */
	char *v_start;	 /* "Nov 27 10:48:00 2026 GMT" (ASN1_TIME_print) */
	char *v_end;

	/* beyond nginx */
	char *cn;	     /* first CN of the subject, UTF-8 */
	char *san_dns;	     /* "a.example,b.example" */
	char *san_uri;	     /* "spiffe://td/x,https://..." */
	char *spiffe_id;     /* the single spiffe:// URI SAN, or "" */
	char *xfcc;	     /* Envoy XFCC element */
	char *rfc9440_cert;  /* ":BASE64(DER):" */
	char *rfc9440_chain; /* ":B64:, :B64:" intermediates sent by the client */
	/*
	 * PROXY v2 0x24: signature algorithm of the CLIENT certificate, OpenSSL
	 * short name of X509_get_signature_nid() (haproxy's format, which haproxy
	 * applies to its own certificate): "ecdsa-with-SHA256", "RSA-SHA256".
	 */
	char *sig_alg;
	/*
	 * PROXY v2 0x25: client key algorithm, haproxy style: "RSA2048", "EC256",
	 * "DSA2048"; any other key type: its OpenSSL short name ("ED25519").
	 */
	char *key_alg;
	unsigned char *der; /* leaf DER for PROXY v2 0x28 (OPENSSL_malloc'd): identity_der() */
	size_t der_len;
	/*
	 * notAfter for $ssl_client_v_remain, -1 if unparsable; rendering reads the
	 * certificate itself, this copy is set by identity_fill() (or by hand).
	 */
	time_t not_after;
};

/*
 * Per-request (or per-connection) context for rendering variables. xff is
 * the incoming X-Forwarded-For list joined by ", " as nginx does (NULL if
 * none). @id may be NULL (no TLS): every ssl variable renders as "".
 * $host is @host lowercased, without ":port" and a trailing dot (what nginx's
 * host validation stores), else @server_name, else "" (nginx 1.22's
 * ngx_http_variable_host has no further fallback).
 */
struct gw_var_ctx {
	struct gw_identity *id;	      /* not const: rendering fills its cache */
	const struct sockaddr *peer;  /* client address */
	const struct sockaddr *local; /* our address the client connected to */
	const char *xff;
	const char *host;	 /* Host header without port, or NULL */
	const char *server_name; /* first server_name of the server{} */
};

/*
 * Fill @id from a finished handshake: the session facts and references to the
 * peer certificate and chain; nothing certificate-derived is computed yet.
 * @id does not refer to @ssl afterwards. Returns 0 or -ENOMEM.
 */
int identity_from_ssl(SSL *ssl, struct gw_identity *id);

/*
 * Fill @id from @cert (a reference is taken; may be NULL: no certificate) and
 * the client-sent intermediates @chain (may be NULL; a leading copy of @cert
 * is skipped; references are taken), lazily as identity_from_ssl(); session
 * fields are set to "". @verify_result is what SSL_get_verify_result() would
 * give. For unit tests and the http 495 path. Returns 0 or -errno.
 */
int identity_from_x509(X509 *cert, STACK_OF(X509) * chain, long verify_result,
		       struct gw_identity *id);

/*
 * The string @which of @id, computed on first use and cached in @id; "" when
 * there is no certificate. NULL only when out of memory (nothing is cached
 * then, a later call tries again).
 */
const char *identity_str(struct gw_identity *id, enum gw_id_str which);

static inline const char *identity_verify(struct gw_identity *id)
{
	return identity_str(id, GW_ID_VERIFY);
}

static inline const char *identity_s_dn(struct gw_identity *id)
{
	return identity_str(id, GW_ID_S_DN);
}

static inline const char *identity_cn(struct gw_identity *id)
{
	return identity_str(id, GW_ID_CN);
}

static inline const char *identity_sig_alg(struct gw_identity *id)
{
	return identity_str(id, GW_ID_SIG_ALG);
}

static inline const char *identity_key_alg(struct gw_identity *id)
{
	return identity_str(id, GW_ID_KEY_ALG);
}

/* SNI of the connection, "" when none (never NULL). */
static inline const char *identity_server_name(const struct gw_identity *id)
{
	return id->server_name ? id->server_name : "";
}

/*
 * The leaf certificate's DER (computed on first use, cached): *@der and
 * *@len, or NULL and 0 without a certificate. Returns 0 or -ENOMEM.
 */
int identity_der(struct gw_identity *id, const unsigned char **der, size_t *len);

/*
 * Compute every lazy field now (the former eager identity: every string
 * field non-NULL, der and not_after set). Returns 0 or -ENOMEM (what was
 * computed stays cached, consistent).
 */
int identity_fill(struct gw_identity *id);

/*
 * Release the computed strings and the certificate references; leaves @id
 * zeroed. Accepts a zeroed struct.
 */
void identity_clear(struct gw_identity *id);

/*
 * Text of the address of @sa without port, as nginx's ngx_sock_ntop() writes
 * it ($remote_addr): dotted IPv4; IPv6 without brackets, lowercase, the first
 * longest run (>= 2) of zero groups as "::", "::ffff:a.b.c.d" for mapped
 * addresses; "unix:" for AF_UNIX. Returns the length, or 0 (and "") for an
 * unknown family. @len must be at least 64.
 */
size_t identity_addr_text(const struct sockaddr *sa, char *out, size_t len);
/* Port of an AF_INET/AF_INET6 @sa in host order, or 0. */
unsigned int identity_addr_port(const struct sockaddr *sa);

/*
 * Append @len bytes of @s escaped as nginx's ngx_escape_uri(...,
 * NGX_ESCAPE_URI_COMPONENT) does: every byte except ALPHA, DIGIT, "-", ".",
 * "_", "~" becomes "%XX" (uppercase hex). Returns 0 or -ENOMEM.
 */
int identity_escape_uri_component(const void *s, size_t len, struct buf *out);

/* Variable id for "$name" (without '$'), or -ENOENT. (src/tmpl.c) */
int identity_var_lookup(const char *name, size_t len);
/* The name of variable @var without '$'. (src/tmpl.c) */
const char *identity_var_name(int var);

/*
 * Append the value of @var to @out, computing (and caching in @ctx->id) the
 * certificate field it needs. Returns 0 or -ENOMEM.
 */
int identity_var_render(const struct gw_var_ctx *ctx, int var, struct buf *out);

/*
 * Compile @src ("text $var ${var}text") into @t (src/tmpl.c). Returns 0, or -EINVAL with
 * *@err set to a malloc'd "unknown "xxx" variable" message.
 */
int tmpl_compile(const char *src, struct gw_tmpl *t, char **err);
/* Append the expansion of @t to @out. Returns 0 or -ENOMEM. */
int tmpl_render(const struct gw_tmpl *t, const struct gw_var_ctx *ctx, struct buf *out);
/* Free a compiled template's parts (not the struct itself). Accepts a zeroed one. */
void tmpl_free(struct gw_tmpl *t);

#endif /* GW_IDENTITY_H */
