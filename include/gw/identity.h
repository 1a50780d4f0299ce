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
 * Everything the gateway knows about the client after the handshake. All
 * strings are malloc'd and NUL-terminated; "" (not NULL) when empty, so
 * rendering never branches on NULL. Filled by identity_from_ssl().
 */
struct gw_identity {
	bool has_cert;	    /* the client presented a certificate */
	long verify_result; /* SSL_get_verify_result() */
	char *verify;	    /* "SUCCESS", "FAILED:<reason>", "NONE" */

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
	time_t not_after; /* for $ssl_client_v_remain, computed when rendered; -1 if unparsable */

	/* beyond nginx */
	char *cn;	     /* first CN of the subject, UTF-8 */
	char *san_dns;	     /* "a.example,b.example" */
	char *san_uri;	     /* "spiffe://td/x,https://..." */
	char *spiffe_id;     /* the single spiffe:// URI SAN, or "" */
	char *xfcc;	     /* Envoy XFCC element */
	char *rfc9440_cert;  /* ":BASE64(DER):" */
	char *rfc9440_chain; /* ":B64:, :B64:" intermediates sent by the client */
	unsigned char *der;  /* leaf DER, for PROXY v2 0x28 */
	size_t der_len;

	/* session */
	char *protocol;	   /* SSL_get_version(): "TLSv1.3" */
	char *cipher;	   /* SSL_get_cipher_name() */
	char *server_name; /* SNI or "" */
	bool reused;	   /* $ssl_session_reused "r" / "." */
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
	/*
	 * PROXY v2 0x26: negotiated key exchange group, TLS (IANA) name from
	 * SSL_group_to_name(): "x25519", "secp256r1", "ffdhe2048"; "" when none
	 * (e.g. a resumed TLS 1.2 session).
	 */
	char *group;
	/*
	 * PROXY v2 0x27: the scheme the client signed its CertificateVerify with,
	 * TLS SignatureScheme name built from SSL_get_peer_signature_type_nid() and
	 * SSL_get_peer_signature_nid(): "ecdsa_secp256r1_sha256",
	 * "rsa_pss_rsae_sha256", "rsa_pkcs1_sha256", "ed25519"; "" when the client
	 * did not sign in this handshake (no cert, or a resumed session).
	 */
	char *sig_scheme;
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
	const struct gw_identity *id;
	const struct sockaddr *peer;  /* client address */
	const struct sockaddr *local; /* our address the client connected to */
	const char *xff;
	const char *host;	 /* Host header without port, or NULL */
	const char *server_name; /* first server_name of the server{} */
};

/* Fill @id from a finished handshake. Returns 0 or -ENOMEM/-EPROTO. */
int identity_from_ssl(SSL *ssl, struct gw_identity *id);

/*
 * Fill the certificate part of @id from @cert (and the client-sent
 * intermediates @chain, may be NULL); session fields are set to "".
 * @verify_result is what SSL_get_verify_result() would give.
 * For unit tests and the http 495 path. Returns 0 or -errno.
 */
int identity_from_x509(X509 *cert, STACK_OF(X509) * chain, long verify_result,
		       struct gw_identity *id);

/* Release all strings; leaves @id zeroed. Accepts a zeroed struct. */
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

/* Append the value of @var to @out. Returns 0 or -ENOMEM. */
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
