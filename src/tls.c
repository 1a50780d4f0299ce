// SPDX-License-Identifier: MIT
/*
 * TLS server side. One SSL_CTX per server{}, built the way nginx 1.22 builds
 * it (ngx_ssl_create, ngx_ssl_certificates, ngx_ssl_client_certificate,
 * ngx_ssl_trusted_certificate, ngx_ssl_crl, ngx_ssl_session_cache), SNI
 * selection among the servers of one listen socket, and client verification.
 *
 * Verification keeps nginx's exact outcome. nginx asks for a certificate
 * with SSL_VERIFY_PEER and a per-certificate callback that always says yes,
 * so OpenSSL walks the whole chain and the last error it met becomes the
 * verify result; after the handshake ngx_http_process_request() rejects on
 * that result (optional_no_ca forgives the "unknown issuer" family) and, for
 * "on" only, on a missing certificate. ssl_verify_failure http replays that
 * after the handshake (tls_verify_decision); ssl_verify_failure handshake
 * takes the same decision from SSL_CTX_set_cert_verify_callback, on the same
 * final error, so the handshake itself fails.
 *
 * Every rejection leaves a human reason in the per-SSL state (tls_ssl_reason).
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "gw/chain_digest.h"
#include "gw/log.h"
#include "gw/tls.h"
#include "gw/ktls.h"

#define TLS_DN_MAX 512
#define TLS_REASON_MAX 1280

/*
 * The verification cache (ssl_verify_cache): the chains that
 * X509_verify_cert() accepted under this server{}'s store and parameters,
 * by the SHA-256 of their certificates, and until when that result holds.
 * Workers are processes: each has its own, no locks.
 */
#define TLS_VCACHE_SLOTS 1024 /* direct-mapped: 40 KiB, allocated on the first store */

struct vcache_ent {
	unsigned char md[SHA256_DIGEST_LENGTH];
	time_t from;  /* verified at: a clock set back before it misses */
	time_t until; /* 0: empty */
};

struct tls_srv {
	const struct gw_server *srv;
	SSL_CTX *ctx;
	struct vcache_ent *vcache;
	EVP_MD *sha256;		/* fetched once: no implicit fetch per handshake */
	EVP_MD_CTX *vmd;	/* the key's digest context, reused */
	time_t *events;		/* when a certificate or CRL of the store starts or ends */
	size_t nevents;		/* (sorted) validity: a cached result holds until the next one */
	struct tls_srv **group; /* set by tls_srv_group(); group[0] is the default */
	size_t ngroup;
	unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH]; /* session id context */
	unsigned int sid_ctx_len;
	bool read_ahead; /* no server{} of the listen group can go tier K */
};

/*
 * Why a client was refused: allocated on the first verify error or refusal
 * only (3 KiB that a verified connection does not carry).
 */
struct tls_detail {
	int err_depth;
	char subj[TLS_DN_MAX];
	char issuer[TLS_DN_MAX];
	char when[64];	 /* notAfter / notBefore of the failing certificate */
	char serial[96]; /* hex serial of the failing certificate */
	char crl_iss[TLS_DN_MAX];
	int need_depth; /* for X509_V_ERR_CERT_CHAIN_TOO_LONG: depth the chain needs */
	char reason[TLS_REASON_MAX];
};

/* Per-connection state, hung off the SSL as ex_data and freed with it. */
struct tls_conn {
	struct tls_srv *srv;  /* current server{} (changes on SNI) */
	int err;	      /* the last per-certificate verify error OpenSSL reported */
	struct tls_detail *d; /* NULL until something is refused */
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_ssl_idx = -1;
static int tls_ctx_idx = -1;

static void tls_conn_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			     void *argp)
{
	struct tls_conn *c = ptr;

	if (c)
		free(c->d);
	free(c);
}

/* The refusal details of @c, allocated on first use; NULL when out of memory. */
static struct tls_detail *tls_detail(struct tls_conn *c)
{
	if (!c->d) {
		c->d = calloc(1, sizeof(*c->d));
		if (c->d)
			c->d->need_depth = -1;
	}
	return c->d;
}

static void tls_init_once(void)
{
	tls_ssl_idx = SSL_get_ex_new_index(0, "ktlsgw conn", NULL, NULL, tls_conn_free_cb);
	tls_ctx_idx = SSL_CTX_get_ex_new_index(0, "ktlsgw srv", NULL, NULL, NULL);
}

static struct tls_conn *tls_conn_of(const SSL *ssl)
{
	if (!ssl || tls_ssl_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, tls_ssl_idx);
}

/* ------------------------------------------------------------------ */
/* messages */

static char *xasprintf(const char *fmt, ...) __printf(1, 2);
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* OpenSSL's reason for the oldest entry of the error queue (the cause), then clear it. */
static void ssl_err_reason(char *out, size_t n, const char *dflt)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (r)
		snprintf(out, n, "%s", r);
	else if (e)
		snprintf(out, n, "error:%08lX", e);
	else
		snprintf(out, n, "%s", dflt);
	ERR_clear_error();
}

static const char *where_file(const struct gw_server *srv, const struct gw_where *w)
{
	if (w && w->file)
		return w->file;
	return srv->file ? srv->file : "(config)";
}

static int where_line(const struct gw_server *srv, const struct gw_where *w)
{
	if (w && w->file)
		return w->line;
	return srv->line;
}

/* *err = "FILE:LINE: <what>: <OpenSSL reason>", returns -EINVAL. */
static int cfg_err(char **err, const struct gw_server *srv, const struct gw_where *w,
		   const char *what)
{
	char why[256];

	ssl_err_reason(why, sizeof(why), "unknown error");
	if (err)
		*err = xasprintf("%s:%d: %s: %s", where_file(srv, w), where_line(srv, w), what,
				 why);
	return -EINVAL;
}

/* RFC 2253 DN, UTF-8 kept, controls and separators escaped (safe for a log line). */
static void dn_str(const X509_NAME *name, char *out, size_t n)
{
	BIO *b;
	int len;

	out[0] = '\0';
	if (!name)
		return;
	b = BIO_new(BIO_s_mem());
	if (!b)
		return;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		len = BIO_read(b, out, (int)n - 1);
		out[len > 0 ? len : 0] = '\0';
	}
	BIO_free(b);
}

static void time_str(const ASN1_TIME *t, char *out, size_t n)
{
	BIO *b = BIO_new(BIO_s_mem());
	int len;

	out[0] = '\0';
	if (!b)
		return;
	if (t && ASN1_TIME_print(b, t)) {
		len = BIO_read(b, out, (int)n - 1);
		out[len > 0 ? len : 0] = '\0';
	}
	BIO_free(b);
}

static void serial_str(const X509 *x, char *out, size_t n)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	snprintf(out, n, "%s", hex ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

/* ------------------------------------------------------------------ */
/* verification */

/* ngx_ssl_verify_error_optional(): the errors optional_no_ca forgives. */
static bool verify_error_optional(long err)
{
	return err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
	       err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
	       err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	       err == X509_V_ERR_CERT_UNTRUSTED ||
	       err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

/* Errors a chain cut short by ssl_verify_depth can end with. */
static bool depth_cut_error(long err)
{
	return err == X509_V_ERR_CERT_CHAIN_TOO_LONG ||
	       err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || verify_error_optional(err);
}

static bool verify_result_ok(const struct gw_server *srv, long err)
{
	if (err == X509_V_OK)
		return true;
	return srv->verify == GW_VERIFY_OPTIONAL_NO_CA && verify_error_optional(err);
}

static int always_ok_cb(int ok, X509_STORE_CTX *x)
{
	return 1;
}

/*
 * The ssl_verify_depth the chain of @x's leaf needs: verify it again with no
 * depth limit. Returns -1 if it does not verify even so.
 */
static int chain_needed_depth(X509_STORE_CTX *x)
{
	X509_STORE_CTX *y = X509_STORE_CTX_new();
	int depth = -1;

	if (!y)
		return -1;
	if (X509_STORE_CTX_init(y, X509_STORE_CTX_get0_store(x), X509_STORE_CTX_get0_cert(x),
				X509_STORE_CTX_get0_untrusted(x))) {
		X509_STORE_CTX_set_default(y, "ssl_client");
		X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(y), 100);
		X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(y),
					      X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
		X509_STORE_CTX_set_verify_cb(y, always_ok_cb);
		/* OpenSSL's depth counts the CAs between the leaf and the trust anchor */
		if (X509_verify_cert(y) > 0 && X509_STORE_CTX_get_error(y) == X509_V_OK)
			depth = MAX(sk_X509_num(X509_STORE_CTX_get0_chain(y)) - 2, 0);
	}
	X509_STORE_CTX_free(y);
	ERR_clear_error();
	return depth;
}

/* Remember the details of a per-certificate error: the last one decides, as in nginx. */
static void record_error(struct tls_conn *c, X509_STORE_CTX *x)
{
	X509 *cert = X509_STORE_CTX_get_current_cert(x);
	X509_CRL *crl = X509_STORE_CTX_get0_current_crl(x);

	c->err = X509_STORE_CTX_get_error(x);
	if (!tls_detail(c))
		return;
	c->d->err_depth = X509_STORE_CTX_get_error_depth(x);
	c->d->subj[0] = c->d->issuer[0] = c->d->when[0] = c->d->serial[0] = c->d->crl_iss[0] = '\0';
	if (cert) {
		dn_str(X509_get_subject_name(cert), c->d->subj, sizeof(c->d->subj));
		dn_str(X509_get_issuer_name(cert), c->d->issuer, sizeof(c->d->issuer));
		serial_str(cert, c->d->serial, sizeof(c->d->serial));
		if (c->err == X509_V_ERR_CERT_NOT_YET_VALID)
			time_str(X509_get0_notBefore(cert), c->d->when, sizeof(c->d->when));
		else
			time_str(X509_get0_notAfter(cert), c->d->when, sizeof(c->d->when));
	}
	if (crl)
		dn_str(X509_CRL_get_issuer(crl), c->d->crl_iss, sizeof(c->d->crl_iss));
	/*
	 * A chain cut short by ssl_verify_depth ends on an untrusted CA: OpenSSL
	 * then says "unable to get issuer" (or "chain too long"). Tell that
	 * apart from a really unknown CA.
	 */
	c->d->need_depth = -1;
	if (depth_cut_error(c->err))
		c->d->need_depth = chain_needed_depth(x);
}

/* nginx's ngx_ssl_verify_callback(): note, and go on. */
static int tls_verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = tls_conn_of(ssl);

	if (!ok && c)
		record_error(c, x);
	return 1;
}

/* Explain verify result @err into c->d->reason. */
static void explain_verify(struct tls_conn *c, const struct gw_server *srv, long err)
{
	if (!tls_detail(c))
		return;
	char *r = c->d->reason;
	size_t n = sizeof(c->d->reason);
	bool have = c->err == err;
	const char *subj = have ? c->d->subj : "?";

	if (have && c->d->need_depth > srv->verify_depth && depth_cut_error(err)) {
		snprintf(r, n, "verify depth %d exceeded: chain needs depth %d (ssl_verify_depth)",
			 srv->verify_depth, c->d->need_depth);
		return;
	}
	switch (err) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		snprintf(r, n, "unknown CA: no trusted issuer for \"%s\" issued by \"%s\"", subj,
			 have ? c->d->issuer : "?");
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		snprintf(r, n, "certificate \"%s\" expired on %s", subj, have ? c->d->when : "?");
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(r, n, "certificate \"%s\" is not yet valid until %s", subj,
			 have ? c->d->when : "?");
		break;
	case X509_V_ERR_CERT_REVOKED:
		snprintf(r, n, "certificate \"%s\" revoked (serial %s)", subj,
			 have ? c->d->serial : "?");
		break;
	case X509_V_ERR_CERT_CHAIN_TOO_LONG:
		snprintf(r, n, "verify depth %d exceeded (ssl_verify_depth)", srv->verify_depth);
		break;
	case X509_V_ERR_CRL_HAS_EXPIRED:
		snprintf(r, n, "CRL has expired (issuer \"%s\")", have ? c->d->crl_iss : "?");
		break;
	case X509_V_ERR_CRL_NOT_YET_VALID:
		snprintf(r, n, "CRL is not yet valid (issuer \"%s\")", have ? c->d->crl_iss : "?");
		break;
	case X509_V_ERR_UNABLE_TO_GET_CRL:
		snprintf(r, n, "no CRL in ssl_crl for \"%s\" (issuer \"%s\")", subj,
			 have ? c->d->issuer : "?");
		break;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		snprintf(r, n, "self-signed certificate \"%s\"", subj);
		break;
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		snprintf(r, n, "self-signed certificate \"%s\" in chain is not trusted", subj);
		break;
	default:
		snprintf(r, n, "certificate \"%s\" verify error %ld: %s", subj, err,
			 X509_verify_cert_error_string(err));
		break;
	}
}

static bool hex_norm(const char *in, char *out, size_t n)
{
	size_t k = 0;

	for (; *in; in++) {
		if (*in == ':')
			continue;
		if (!isxdigit((unsigned char)*in) || k + 1 >= n)
			return false;
		out[k++] = (char)tolower((unsigned char)*in);
	}
	out[k] = '\0';
	return true;
}

static bool allow_fingerprint(X509 *cert, const char *value)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
	const EVP_MD *type;
	unsigned int len;

	if (!hex_norm(value, want, sizeof(want)))
		return false;
	if (strlen(want) == 40)
		type = EVP_sha1();
	else if (strlen(want) == 64)
		type = EVP_sha256();
	else
		return false;
	if (!X509_digest(cert, type, md, &len))
		return false;
	for (unsigned int i = 0; i < len; i++)
		snprintf(got + 2 * i, 3, "%02x", md[i]);
	return strcmp(got, want) == 0;
}

static bool allow_cn(X509 *cert, const char *value)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	int i = -1;

	while ((i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0) {
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8, d);
		bool eq = len >= 0 && (size_t)len == strlen(value) &&
			  memcmp(utf8, value, (size_t)len) == 0;

		OPENSSL_free(utf8);
		if (eq)
			return true;
	}
	return false;
}

static bool allow_san(X509 *cert, int type, const char *value)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *s;
		size_t len;

		if (g->type != type)
			continue;
		s = type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
		len = (size_t)ASN1_STRING_length(s);
		if (len != strlen(value))
			continue;
		if (type == GEN_DNS)
			found = strncasecmp((const char *)ASN1_STRING_get0_data(s), value, len) ==
				0;
		else
			found = memcmp(ASN1_STRING_get0_data(s), value, len) == 0;
	}
	GENERAL_NAMES_free(names);
	return found;
}

static bool allow_match(const struct gw_server *srv, X509 *cert)
{
	for (size_t i = 0; i < srv->nallows; i++) {
		const struct gw_allow *a = &srv->allows[i];
		bool ok = false;

		switch (a->kind) {
		case GW_ALLOW_CN:
			ok = allow_cn(cert, a->value);
			break;
		case GW_ALLOW_DNS:
			ok = allow_san(cert, GEN_DNS, a->value);
			break;
		case GW_ALLOW_URI:
			ok = allow_san(cert, GEN_URI, a->value);
			break;
		case GW_ALLOW_FINGERPRINT:
			ok = allow_fingerprint(cert, a->value);
			break;
		}
		if (ok)
			return true;
	}
	return false;
}

static void explain_allow(struct tls_conn *c, X509 *cert)
{
	char subj[TLS_DN_MAX];

	if (!tls_detail(c))
		return;
	dn_str(X509_get_subject_name(cert), subj, sizeof(subj));
	snprintf(c->d->reason, sizeof(c->d->reason), "certificate \"%s\" not in ssl_client_allow",
		 subj);
}

/*
 * The decision on a presented certificate: verify result @err, leaf @cert.
 * Returns 0 (accept) or -EACCES with c->d->reason set.
 */
static int decide_cert(struct tls_conn *c, const struct gw_server *srv, long err, X509 *cert)
{
	if (!verify_result_ok(srv, err)) {
		explain_verify(c, srv, err);
		return -EACCES;
	}
	if (srv->nallows && cert && !allow_match(srv, cert)) {
		explain_allow(c, cert);
		return -EACCES;
	}
	return 0;
}

static void explain_no_cert(struct tls_conn *c, const struct gw_server *srv)
{
	if (!tls_detail(c))
		return;
	snprintf(c->d->reason, sizeof(c->d->reason), "client sent no certificate (%s)",
		 srv->verify == GW_VERIFY_ON ? "ssl_verify_client on" : "ssl_client_allow");
}

/* ------------------------------------------------------------------ */
/* verification cache */

/*
 * X509_verify_cert() is a function of the chain the client sent, the
 * server{}'s store and verify parameters (fixed until a reload builds new
 * workers) and the time. The time only enters through validity periods: the
 * notBefore/notAfter of the certificates (sent or in the store) and the
 * lastUpdate/nextUpdate of the CRLs. So an accepted chain stays accepted,
 * with the same result, until the next of those instants: ssl_verify_cache
 * keeps that, and a client that comes back with the same chain skips the
 * chain building and the CA's signature check (a sixth of a new mTLS
 * handshake, callgrind). Only a clean X509_V_OK is kept: every error, even
 * one that optional_no_ca forgives, is verified again, so its log line and
 * $ssl_client_verify are computed as they always are.
 */
static unsigned long vcache_hits;

unsigned long tls_verify_cache_hits(void)
{
	return vcache_hits;
}

static bool asn1_to_time(const ASN1_TIME *a, time_t *out)
{
	struct tm tm;

	if (!a || !ASN1_TIME_to_tm(a, &tm))
		return false;
	*out = timegm(&tm);
	return true;
}

static int time_cmp(const void *a, const void *b)
{
	time_t x = *(const time_t *)a, y = *(const time_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The instants at which something in @t's store becomes valid or stops being
 * valid, sorted. Returns false (no cache) if one of them cannot be read.
 */
static bool vcache_events(struct tls_srv *t)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(t->ctx));
	int n = objs ? sk_X509_OBJECT_num(objs) : 0;
	size_t k = 0;

	t->events = calloc((size_t)n * 2 + 1, sizeof(*t->events));
	if (!t->events)
		return false;
	for (int i = 0; i < n; i++) {
		X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
		const ASN1_TIME *from = NULL, *to = NULL;
		X509_CRL *crl;
		X509 *x;

		switch (X509_OBJECT_get_type(o)) {
		case X509_LU_X509:
			x = X509_OBJECT_get0_X509(o);
			from = X509_get0_notBefore(x);
			to = X509_get0_notAfter(x);
			break;
		case X509_LU_CRL:
			crl = X509_OBJECT_get0_X509_CRL(o);
			from = X509_CRL_get0_lastUpdate(crl);
			to = X509_CRL_get0_nextUpdate(crl); /* none: never expires */
			break;
		default:
			return false;
		}
		if (!asn1_to_time(from, &t->events[k++]))
			return false;
		if (to && !asn1_to_time(to, &t->events[k++]))
			return false;
	}
	qsort(t->events, k, sizeof(*t->events), time_cmp);
	t->nevents = k;
	return true;
}

/* The key of @x's chain: chain_digest(), with @t's digest context (made on first use). */
static bool vcache_key(struct tls_srv *t, X509_STORE_CTX *x, unsigned char *md)
{
	if (!t->vmd)
		t->vmd = EVP_MD_CTX_new();
	return chain_digest(x, t->vmd, t->sha256, md);
}

static struct vcache_ent *vcache_slot(struct tls_srv *t, const unsigned char *md)
{
	uint32_t h;

	memcpy(&h, md, sizeof(h));
	return &t->vcache[h & (TLS_VCACHE_SLOTS - 1)];
}

static bool vcache_hit(struct tls_srv *t, const unsigned char *md, time_t now)
{
	struct vcache_ent *e;

	if (!t->vcache)
		return false;
	e = vcache_slot(t, md);
	return e->from <= now && now < e->until && memcmp(e->md, md, sizeof(e->md)) == 0;
}

/* The first instant after @now at which @c's validity changes; false if unreadable. */
static bool cert_next_change(X509 *c, time_t now, time_t *until)
{
	time_t from, to;

	if (!asn1_to_time(X509_get0_notBefore(c), &from) ||
	    !asn1_to_time(X509_get0_notAfter(c), &to))
		return false;
	if (from > now && from < *until)
		*until = from;
	if (to > now && to < *until)
		*until = to;
	return true;
}

/*
 * Keep the clean acceptance of the chain @md in @x, verified between @now and
 * @done, until its result could change: the first validity change of a store
 * object or sent certificate after @now. If one falls before @done, the
 * checks may have seen two states: not stored. Otherwise nothing changed over
 * [@now, until), which holds every instant the checks read, so the result is
 * the same at any instant of it (and a clock set back before @now misses).
 */
static void vcache_store(struct tls_srv *t, const unsigned char *md, X509_STORE_CTX *x, time_t now,
			 time_t done)
{
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(x);
	time_t until = (time_t)INT64_MAX;
	struct vcache_ent *e;

	for (size_t i = 0; i < t->nevents; i++)
		if (t->events[i] > now) {
			until = t->events[i];
			break;
		}
	if (!cert_next_change(X509_STORE_CTX_get0_cert(x), now, &until))
		return;
	/* the verified chain's others are store objects: in t->events already */
	for (int i = 0; sent && i < sk_X509_num(sent); i++)
		if (!cert_next_change(sk_X509_value(sent, i), now, &until))
			return;
	if (done < now || until <= done) /* or the clock was set back meanwhile */
		return;
	if (!t->vcache)
		t->vcache = calloc(TLS_VCACHE_SLOTS, sizeof(*t->vcache));
	if (!t->vcache)
		return;
	e = vcache_slot(t, md);
	memcpy(e->md, md, sizeof(e->md));
	e->from = now;
	e->until = until;
}

/*
 * X509_verify_cert(), or the cached acceptance of the same chain. A clean
 * acceptance (X509_V_OK, no per-certificate error on the way) is stored.
 */
static int verify_chain(struct tls_srv *t, struct tls_conn *c, X509_STORE_CTX *x)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	/*
	 * Only for the chain being verified under this server{}'s own store
	 * and depth (what the cache assumes; switch_server() keeps it so).
	 */
	bool keyed = t->srv->verify_cache && t->events &&
		     X509_STORE_CTX_get0_store(x) == SSL_CTX_get_cert_store(t->ctx) &&
		     X509_VERIFY_PARAM_get_depth(X509_STORE_CTX_get0_param(x)) ==
			     SSL_CTX_get_verify_depth(t->ctx) &&
		     vcache_key(t, x, md);
	time_t now = keyed ? time(NULL) : 0;
	int ret;

	if (keyed && vcache_hit(t, md, now)) {
		vcache_hits++;
		return 1; /* X509_STORE_CTX_init() left the error at X509_V_OK */
	}
	ret = X509_verify_cert(x);
	if (keyed && ret > 0 && X509_STORE_CTX_get_error(x) == X509_V_OK &&
	    (!c || c->err == X509_V_OK))
		vcache_store(t, md, x, now, time(NULL));
	return ret;
}

/*
 * ssl_verify_failure handshake: SSL_CTX_set_cert_verify_callback. Builds the
 * chain exactly as OpenSSL would (the per-certificate callback, nginx's, is
 * already installed on @x by libssl), then applies nginx's decision.
 */
static int tls_app_verify_cb(X509_STORE_CTX *x, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = tls_conn_of(ssl);
	struct tls_srv *t = arg;
	int ret = verify_chain(t, c, x);
	long err = X509_STORE_CTX_get_error(x);

	/* ssl_verify_failure http: what OpenSSL does without this callback */
	if (t->srv->verify_failure != GW_VFAIL_HANDSHAKE)
		return ret > 0 ? ret : 0;
	if (!c)
		return ret > 0 && err == X509_V_OK;
	if (decide_cert(c, t->srv, err, X509_STORE_CTX_get0_cert(x)) < 0) {
		if (err == X509_V_OK)
			X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	/* accepted (e.g. optional_no_ca): go on with the handshake like nginx */
	return 1;
}

/* ------------------------------------------------------------------ */
/* SSL_CTX construction */

static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
	return 0; /* never prompt on a terminal: encrypted keys are an error */
}

/* ngx_ssl_certificate(): leaf + chain from one file, then its key. */
static int load_pair(SSL_CTX *ctx, const struct gw_server *srv, size_t i, char **err)
{
	const struct gw_where *cw = srv->certs_where ? &srv->certs_where[i] : NULL;
	const struct gw_where *kw = srv->keys_where ? &srv->keys_where[i] : NULL;
	const char *cf = srv->certs[i], *kf = srv->keys[i];
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *leaf = NULL, *x;
	char what[4200];
	BIO *b;
	int ret = -EINVAL;

	ERR_clear_error();
	b = BIO_new_file(cf, "r");
	if (!b) {
		snprintf(what, sizeof(what), "cannot load certificate \"%s\"", cf);
		return cfg_err(err, srv, cw, what);
	}
	leaf = PEM_read_bio_X509_AUX(b, NULL, pem_no_password, NULL);
	if (!leaf) {
		BIO_free(b);
		snprintf(what, sizeof(what), "cannot load certificate \"%s\"", cf);
		return cfg_err(err, srv, cw, what);
	}
	chain = sk_X509_new_null();
	if (!chain)
		goto out_nomem;
	while ((x = PEM_read_bio_X509(b, NULL, pem_no_password, NULL))) {
		if (!sk_X509_push(chain, x)) {
			X509_free(x);
			goto out_nomem;
		}
	}
	/* only "no start line" at EOF is the normal end of the chain */
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE && ERR_peek_last_error()) {
		snprintf(what, sizeof(what), "cannot load certificate chain \"%s\"", cf);
		ret = cfg_err(err, srv, cw, what);
		goto out;
	}
	ERR_clear_error();
	BIO_free(b);
	b = NULL;

	if (!SSL_CTX_use_certificate(ctx, leaf)) {
		snprintf(what, sizeof(what), "SSL_CTX_use_certificate(\"%s\") failed", cf);
		ret = cfg_err(err, srv, cw, what);
		goto out;
	}
	if (!SSL_CTX_set0_chain(ctx, chain)) {
		snprintf(what, sizeof(what), "SSL_CTX_set0_chain(\"%s\") failed", cf);
		ret = cfg_err(err, srv, cw, what);
		goto out;
	}
	chain = NULL; /* owned by ctx now */

	b = BIO_new_file(kf, "r");
	if (b)
		pkey = PEM_read_bio_PrivateKey(b, NULL, pem_no_password, NULL);
	if (!pkey) {
		snprintf(what, sizeof(what), "cannot load certificate key \"%s\"", kf);
		ret = cfg_err(err, srv, kw, what);
		goto out;
	}
	/*
	 * SSL_CTX_use_PrivateKey() only compares the key with a certificate of
	 * the same type: an RSA key next to an ECDSA certificate would load and
	 * leave both unusable. Compare them here, naming both directives.
	 */
	if (!X509_check_private_key(leaf, pkey) || !SSL_CTX_use_PrivateKey(ctx, pkey)) {
		char why[256];

		ssl_err_reason(why, sizeof(why), "key values mismatch");
		if (err)
			*err = xasprintf("%s:%d: ssl_certificate_key \"%s\" does not match "
					 "ssl_certificate \"%s\" at %s:%d: %s",
					 where_file(srv, kw), where_line(srv, kw), kf, cf,
					 where_file(srv, cw), where_line(srv, cw), why);
		ret = -EINVAL;
		goto out;
	}
	ret = 0;
	goto out;

out_nomem:
	ret = -ENOMEM;
	if (err)
		*err = xasprintf("%s:%d: out of memory", where_file(srv, cw), where_line(srv, cw));
out:
	BIO_free(b);
	EVP_PKEY_free(pkey);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	ERR_clear_error();
	return ret;
}

/* ngx_ssl_crl(): every CRL (and certificate) of the file into the store. */
static int load_crl(SSL_CTX *ctx, const struct gw_server *srv, char **err)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
	char what[4200];

	snprintf(what, sizeof(what), "X509_LOOKUP_load_file(\"%s\") failed", srv->crl);
	if (!lookup || !X509_LOOKUP_load_file(lookup, srv->crl, X509_FILETYPE_PEM))
		return cfg_err(err, srv, &srv->crl_where, what);
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/*
 * ngx_ssl_session_id_context(): sessions may only resume on a server{} with
 * the same certificates and the same client verification. Digest of those:
 * the mode, the server certificates, the client CA names, every certificate
 * and CRL of the verification store (ssl_client_certificate,
 * ssl_trusted_certificate, ssl_crl: a server{} that checks a CRL does not
 * resume a session of one that does not), the verify settings and the
 * allow-list. The session ticket keys are derived from it too.
 */
static int set_sid_ctx(struct tls_srv *t, SSL_CTX *ctx, const struct gw_server *srv)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);
	unsigned int len = 0;
	int ok, ret = -ENOMEM;
	int vals[3] = {(int)srv->verify, srv->verify_depth, (int)srv->verify_failure};

	if (!m)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(m, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(m, srv->mode == GW_MODE_HTTP ? "HTTP" : "STREAM", 4);
	for (int k = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); ok && k == 1;
	     k = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
		unsigned char buf[EVP_MAX_MD_SIZE];
		unsigned int bl;
		X509 *x = SSL_CTX_get0_certificate(ctx);

		ok = x && X509_digest(x, EVP_sha256(), buf, &bl) && EVP_DigestUpdate(m, buf, bl);
	}
	for (int i = 0; ok && names && i < sk_X509_NAME_num(names); i++) {
		unsigned char *der = NULL;
		int dl = i2d_X509_NAME(sk_X509_NAME_value(names, i), &der);

		ok = dl > 0 && EVP_DigestUpdate(m, der, (size_t)dl);
		OPENSSL_free(der);
	}
	{
		STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));

		/*
		 * The store's order (each add sorts what was there, then appends):
		 * the same files loaded in the same sequence give the same order
		 * in every worker. Each worker reads the files itself, so a file
		 * replaced on disk between two workers' starts (before a reload)
		 * gives them other keys: their tickets then do not cross.
		 */
		for (int i = 0; ok && objs && i < sk_X509_OBJECT_num(objs); i++) {
			X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
			unsigned char buf[EVP_MAX_MD_SIZE];
			unsigned int bl = 0;
			X509 *x = X509_OBJECT_get0_X509(o);
			X509_CRL *crl = X509_OBJECT_get0_X509_CRL(o);

			if (x)
				ok = X509_digest(x, EVP_sha256(), buf, &bl);
			else if (crl)
				ok = X509_CRL_digest(crl, EVP_sha256(), buf, &bl);
			ok = ok && EVP_DigestUpdate(m, buf, bl);
		}
	}
	ok = ok && EVP_DigestUpdate(m, vals, sizeof(vals));
	for (size_t i = 0; ok && i < srv->nallows; i++)
		ok = EVP_DigestUpdate(m, srv->allows[i].value, strlen(srv->allows[i].value) + 1);
	ok = ok && EVP_DigestFinal_ex(m, md, &len);
	if (ok && len > SSL_MAX_SID_CTX_LENGTH)
		len = SSL_MAX_SID_CTX_LENGTH;
	if (ok && SSL_CTX_set_session_id_context(ctx, md, len)) {
		memcpy(t->sid_ctx, md, len);
		t->sid_ctx_len = len;
		ret = 0;
	}
	EVP_MD_CTX_free(m);
	ERR_clear_error();
	return ret;
}

/* The process's ticket secret (tls_ticket_secret_*()); unset: OpenSSL's per-SSL_CTX keys. */
static struct tls_ticket_secret ticket_secret;

int tls_ticket_secret_rotate(struct tls_ticket_secret *old)
{
	unsigned char s[sizeof(ticket_secret.key)];
	int ret = 0;

	if (old)
		*old = ticket_secret;
	if (RAND_priv_bytes(s, sizeof(s)) == 1) {
		memcpy(ticket_secret.key, s, sizeof(s));
		ticket_secret.set = true;
	} else {
		/* never the old keys again: OpenSSL's random ones per SSL_CTX */
		tls_ticket_secret_clear();
		ret = -EIO;
	}
	OPENSSL_cleanse(s, sizeof(s));
	return ret;
}

void tls_ticket_secret_restore(struct tls_ticket_secret *old)
{
	ticket_secret = *old;
	OPENSSL_cleanse(old, sizeof(*old));
}

void tls_ticket_secret_clear(void)
{
	OPENSSL_cleanse(&ticket_secret, sizeof(ticket_secret));
}

/*
 * Session ticket keys (name, HMAC and AES keys: 80 bytes) derived from the
 * process's secret and the server{}'s session id context: every worker
 * encrypts and decrypts a server{}'s tickets alike (nginx gets the same by
 * making its SSL_CTXs before the fork), and servers with other certificates
 * or client verification get other keys.
 */
static int set_ticket_keys(const struct tls_srv *t, SSL_CTX *ctx)
{
	static const char salt[] = "ktlsgw session ticket keys";
	unsigned char keys[80];
	int ret;

	if (!ticket_secret.set)
		return 0;
	ret = gw_hkdf(EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, "SHA256", ticket_secret.key,
		      sizeof(ticket_secret.key), salt, sizeof(salt) - 1, t->sid_ctx, t->sid_ctx_len,
		      keys, sizeof(keys));
	if (!ret && SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) != 1)
		ret = -EPROTO;
	OPENSSL_cleanse(keys, sizeof(keys));
	ERR_clear_error();
	return ret;
}

/* ngx_ssl_session_cache() */
static int set_session_cache(struct tls_srv *t, SSL_CTX *ctx, const struct gw_server *srv)
{
	int err = set_sid_ctx(t, ctx, srv);

	if (err)
		return err;
	if (!srv->session_tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/*
	 * Even without tickets here: OpenSSL seals every ticket of a listener
	 * with its default server{}'s keys (the SSL's session_ctx, kept when SNI
	 * picks another server{}), whose own tickets may be off.
	 */
	err = set_ticket_keys(t, ctx);
	if (err)
		return err;
	/*
	 * One TLS 1.3 ticket per handshake, not OpenSSL's default two: in
	 * OpenSSL 3.0 each ticket copies the session through d2i_SSL_SESSION,
	 * which decodes the client certificate again (callgrind: 1.65 M
	 * instructions per ticket, a sixth of a whole new mTLS handshake). One
	 * ticket is enough to resume, and a resumed handshake brings a new one.
	 */
	SSL_CTX_set_num_tickets(ctx, 1);
	switch (srv->session_cache) {
	case GW_SESS_CACHE_OFF:
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		return 0;
	case GW_SESS_CACHE_NONE:
		/* session ids handed out, nothing stored (nginx's Outlook Express note) */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
							    SSL_SESS_CACHE_NO_AUTO_CLEAR |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_cache_size(ctx, 1);
		break;
	case GW_SESS_CACHE_ON:
		/*
		 * No auto-clear: OpenSSL would walk the whole cache for expired
		 * sessions every 255 handshakes, inside one of them (2 % of a new
		 * TLS 1.2 handshake's instructions, callgrind); the worker's tick
		 * does it every GW_SESS_EXPIRE_S instead (tls_srv_expire_sessions).
		 */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
							    SSL_SESS_CACHE_NO_AUTO_CLEAR);
		if (srv->session_cache_size > 0)
			SSL_CTX_sess_set_cache_size(ctx, srv->session_cache_size);
		break;
	}
	SSL_CTX_set_timeout(ctx, srv->session_timeout > 0 ? srv->session_timeout : 300);
	return 0;
}

/* ngx_ssl_create(): protocols as nginx, after resetting min/max version. */
static void set_protocols(SSL_CTX *ctx, unsigned int p)
{
	static const struct {
		unsigned int bit;
		uint64_t op;
	} map[] = {
		{GW_PROTO_SSLv3, SSL_OP_NO_SSLv3},     {GW_PROTO_TLSv1, SSL_OP_NO_TLSv1},
		{GW_PROTO_TLSv1_1, SSL_OP_NO_TLSv1_1}, {GW_PROTO_TLSv1_2, SSL_OP_NO_TLSv1_2},
		{GW_PROTO_TLSv1_3, SSL_OP_NO_TLSv1_3},
	};

	if (!p)
		p = GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3;
	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		SSL_CTX_clear_options(ctx, map[i].op);
		if (!(p & map[i].bit))
			SSL_CTX_set_options(ctx, map[i].op);
	}
	/* Debian's openssl.cnf may raise MinProtocol: nginx resets it */
	SSL_CTX_set_min_proto_version(ctx, 0);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
}

int tls_srv_new(const struct gw_server *srv, struct tls_srv **out, char **err)
{
	struct tls_srv *t;
	SSL_CTX *ctx;
	char what[4200];
	int mode, ret;

	if (err)
		*err = NULL;
	pthread_once(&tls_once, tls_init_once);
	if (tls_ssl_idx < 0 || tls_ctx_idx < 0)
		return -ENOMEM;
	if (!srv->ncerts) {
		if (err)
			*err = xasprintf("%s:%d: no \"ssl_certificate\" is defined for the server",
					 where_file(srv, NULL), where_line(srv, NULL));
		return -EINVAL;
	}
	if (srv->verify != GW_VERIFY_OFF && srv->verify != GW_VERIFY_OPTIONAL_NO_CA &&
	    !srv->client_certificate) {
		if (err)
			*err = xasprintf("%s:%d: no ssl_client_certificate for ssl_verify_client",
					 where_file(srv, &srv->verify_where),
					 where_line(srv, &srv->verify_where));
		return -EINVAL;
	}

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->srv = srv;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ret = cfg_err(err, srv, NULL, "SSL_CTX_new() failed");
		goto err_free;
	}
	t->ctx = ctx;
	if (!SSL_CTX_set_ex_data(ctx, tls_ctx_idx, t)) {
		ret = -ENOMEM;
		goto err_ctx;
	}

	SSL_CTX_set_options(ctx, SSL_OP_SINGLE_DH_USE | SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	set_protocols(ctx, srv->protocols);
	/*
	 * Read-ahead, set per connection (tls_ssl_new()): none where kTLS may
	 * take over the socket, which must then hold every record after Finished.
	 */
	t->read_ahead = !ktls_possible(srv);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
	/* tier K: OpenSSL puts what it can into the kernel; ktls_finish() the rest */
	if (ktls_possible(srv))
		ktls_ctx_setup(ctx);
	SSL_CTX_set_default_passwd_cb(ctx, pem_no_password);

	for (size_t i = 0; i < srv->ncerts; i++) {
		ret = load_pair(ctx, srv, i, err);
		if (ret)
			goto err_ctx;
	}

	snprintf(what, sizeof(what), "SSL_CTX_set_cipher_list(\"%s\") failed",
		 srv->ciphers ? srv->ciphers : "HIGH:!aNULL:!MD5");
	if (!SSL_CTX_set_cipher_list(ctx, srv->ciphers ? srv->ciphers : "HIGH:!aNULL:!MD5")) {
		ret = cfg_err(err, srv, &srv->ciphers_where, what);
		goto err_ctx;
	}
	if (srv->prefer_server_ciphers)
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (srv->ecdh_curve && strcmp(srv->ecdh_curve, "auto") != 0 &&
	    !SSL_CTX_set1_groups_list(ctx, srv->ecdh_curve)) {
		snprintf(what, sizeof(what),
			 "ssl_ecdh_curve \"%s\": SSL_CTX_set1_groups_list() failed",
			 srv->ecdh_curve);
		ret = cfg_err(err, srv, NULL, what);
		goto err_ctx;
	}

	/* ngx_ssl_client_certificate(): only when verification is on, as nginx 1.22 */
	if (srv->verify != GW_VERIFY_OFF) {
		mode = SSL_VERIFY_PEER;
		if (srv->verify_failure == GW_VFAIL_HANDSHAKE &&
		    (srv->verify == GW_VERIFY_ON || srv->nallows))
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, tls_verify_cb);
		if (srv->client_certificate) {
			STACK_OF(X509_NAME) * names;

			snprintf(what, sizeof(what), "SSL_CTX_load_verify_locations(\"%s\") failed",
				 srv->client_certificate);
			if (!SSL_CTX_load_verify_locations(ctx, srv->client_certificate, NULL)) {
				ret = cfg_err(err, srv, &srv->client_certificate_where, what);
				goto err_ctx;
			}
			ERR_clear_error();
			names = SSL_load_client_CA_file(srv->client_certificate);
			if (!names) {
				snprintf(what, sizeof(what),
					 "SSL_load_client_CA_file(\"%s\") failed",
					 srv->client_certificate);
				ret = cfg_err(err, srv, &srv->client_certificate_where, what);
				goto err_ctx;
			}
			SSL_CTX_set_client_CA_list(ctx, names);
		}
		/* both modes: the verification cache; handshake mode decides there too */
		SSL_CTX_set_cert_verify_callback(ctx, tls_app_verify_cb, t);
	}
	/* ngx_ssl_trusted_certificate() */
	SSL_CTX_set_verify_depth(ctx, srv->verify_depth > 0 ? srv->verify_depth : 1);
	if (srv->trusted_certificate) {
		snprintf(what, sizeof(what), "SSL_CTX_load_verify_locations(\"%s\") failed",
			 srv->trusted_certificate);
		if (!SSL_CTX_load_verify_locations(ctx, srv->trusted_certificate, NULL)) {
			ret = cfg_err(err, srv, &srv->trusted_certificate_where, what);
			goto err_ctx;
		}
		ERR_clear_error();
	}
	if (srv->crl) {
		ret = load_crl(ctx, srv, err);
		if (ret)
			goto err_ctx;
	}
	/* no verification cache if a validity period of the store cannot be read */
	if (srv->verify != GW_VERIFY_OFF && srv->verify_cache) {
		X509_STORE *vs = NULL;

		/* an openssl.cnf VerifyCAFile/VerifyCAPath store: not the one read here */
		SSL_CTX_get0_verify_cert_store(ctx, &vs);
		t->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
		if (vs || !t->sha256 || !vcache_events(t)) {
			free(t->events);
			t->events = NULL;
			pr_warn("%s:%d: ssl_verify_cache disabled: cannot read the validity "
				"periods of the trusted certificates and CRLs",
				where_file(srv, NULL), where_line(srv, NULL));
		}
		ERR_clear_error();
	}
	ret = set_session_cache(t, ctx, srv);
	if (ret) {
		if (err)
			*err = xasprintf("%s:%d: cannot set up the session cache",
					 where_file(srv, NULL), where_line(srv, NULL));
		goto err_ctx;
	}
	ERR_clear_error();
	*out = t;
	return 0;

err_ctx:
	SSL_CTX_free(ctx);
err_free:
	EVP_MD_free(t->sha256);
	free(t->events);
	free(t);
	ERR_clear_error();
	return ret;
}

void tls_srv_free(struct tls_srv *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	EVP_MD_CTX_free(t->vmd);
	EVP_MD_free(t->sha256);
	free(t->events);
	free(t->vcache);
	free(t);
}

SSL_CTX *tls_srv_ctx(const struct tls_srv *t)
{
	return t->ctx;
}

const struct gw_server *tls_srv_server(const struct tls_srv *t)
{
	return t->srv;
}

/* ------------------------------------------------------------------ */
/* SNI */

/*
 * nginx's server_name match score for @host (lowercase, no trailing dot):
 * 3 = exact, 2 = "*.suffix" / ".suffix" (longer wins), 1 = "prefix.*",
 * 0 = no match. *@len is the length of the matched part.
 */
static int name_match(const char *pat, const char *host, size_t *len)
{
	size_t pl = strlen(pat), hl = strlen(host);

	*len = pl;
	if (pl == 0)
		return 0;
	if (pat[0] != '*' && pat[0] != '.' && pat[pl - 1] != '*')
		return strcasecmp(pat, host) == 0 ? 3 : 0;
	if (pat[0] == '.') {
		/* ".example.com" = "example.com" + "*.example.com" */
		if (strcasecmp(pat + 1, host) == 0)
			return 2;
		if (hl > pl - 1 && strcasecmp(host + hl - pl, pat) == 0)
			return 2;
		return 0;
	}
	if (pat[0] == '*' && pl >= 2 && pat[1] == '.') {
		if (hl > pl - 1 && strcasecmp(host + hl - (pl - 1), pat + 1) == 0)
			return 2;
		return 0;
	}
	if (pat[pl - 1] == '*' && pl >= 2 && pat[pl - 2] == '.') {
		if (hl > pl - 1 && strncasecmp(host, pat, pl - 1) == 0)
			return 1;
		return 0;
	}
	return 0;
}

static struct tls_srv *sni_pick(struct tls_srv **group, size_t n, const char *host)
{
	struct tls_srv *best = NULL;
	int best_score = 0;
	size_t best_len = 0;

	for (size_t i = 0; i < n; i++) {
		const struct gw_server *s = group[i]->srv;

		for (size_t j = 0; j < s->nserver_names; j++) {
			size_t len;
			int score = name_match(s->server_names[j], host, &len);

			if (score > best_score ||
			    (score && score == best_score && len > best_len)) {
				best = group[i];
				best_score = score;
				best_len = len;
			}
		}
	}
	return best;
}

bool tls_name_normalize(const char *name, size_t len, char *host, size_t size)
{
	if (len && name[len - 1] == '.')
		len--;
	if (len == 0 || len >= size)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '\0')
			return false;
		host[i] = (char)tolower((unsigned char)name[i]);
	}
	host[len] = '\0';
	return true;
}

/*
 * Make @pick the server{} of @ssl, as ngx_http_ssl_servername() does.
 * Returns false if OpenSSL could not switch (out of memory): the handshake
 * must then fail, not go on with one server{}'s store and another's depth.
 */
static bool switch_server(SSL *ssl, struct tls_srv *pick)
{
	struct tls_conn *c = tls_conn_of(ssl);
	SSL_CTX *ctx = pick->ctx;

	if (ctx == SSL_get_SSL_CTX(ssl)) {
		if (c)
			c->srv = pick;
		return true;
	}
	/* also takes the new context's session id context (still the default's here) */
	if (SSL_set_SSL_CTX(ssl, ctx) != ctx)
		return false;
	if (c)
		c->srv = pick;
	/* SSL_set_SSL_CTX() only switches certificates: the rest as nginx does */
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
	SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
	SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
	SSL_set_options(ssl, SSL_CTX_get_options(ctx));
	return true;
}

/*
 * The server{} is chosen from the SNI in the ClientHello callback, which
 * libssl runs BEFORE it looks up a session to resume (TLS 1.2 session ids
 * and tickets, TLS 1.3 PSKs): the lookup then compares the session's id
 * context with the chosen server's, so a session made on one server{} never
 * resumes on another with other certificates or verification. (The
 * servername callback runs after the lookup: switching there let a session
 * from server a resume on server b, skipping b's verification.)
 */
static int tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
	struct tls_srv *def = arg;
	const unsigned char *p;
	size_t len, list, nlen;
	struct tls_srv *pick;
	char host[256];

	if (!def->group || !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len))
		return SSL_CLIENT_HELLO_SUCCESS;
	/* ServerNameList: u16 length, then { u8 type (0 = host_name), u16 length, name } */
	if (len < 2)
		return SSL_CLIENT_HELLO_SUCCESS;
	list = (size_t)p[0] << 8 | p[1];
	if (list + 2 != len || list < 3 || p[2] != TLSEXT_NAMETYPE_host_name)
		return SSL_CLIENT_HELLO_SUCCESS; /* libssl rejects it later */
	nlen = (size_t)p[3] << 8 | p[4];
	if (nlen + 3 > list || !tls_name_normalize((const char *)p + 5, nlen, host, sizeof(host)))
		return SSL_CLIENT_HELLO_SUCCESS;
	pick = tls_srv_pick(def->group, def->ngroup, host);
	if (pick && !switch_server(ssl, pick)) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* ngx_http_ssl_servername(): acknowledges the name; the switch was made above. */
static int tls_servername_cb(SSL *ssl, int *ad, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (!name || !*name)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

struct tls_srv *tls_srv_pick(struct tls_srv *const *group, size_t n, const char *host)
{
	return sni_pick((struct tls_srv **)group, n, host);
}

int tls_srv_group(struct tls_srv **group, size_t n)
{
	bool read_ahead = true;

	if (!group || n == 0)
		return -EINVAL;
	/* SNI may pick any of them after the ClientHello was read */
	for (size_t i = 0; i < n; i++)
		read_ahead = read_ahead && group[i]->read_ahead;
	for (size_t i = 0; i < n; i++) {
		group[i]->group = group;
		group[i]->ngroup = n;
		group[i]->read_ahead = read_ahead;
		SSL_CTX_set_client_hello_cb(group[i]->ctx, tls_client_hello_cb, group[i]);
		SSL_CTX_set_tlsext_servername_callback(group[i]->ctx, tls_servername_cb);
		SSL_CTX_set_tlsext_servername_arg(group[i]->ctx, group[i]);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* connections */

SSL *tls_ssl_new(struct tls_srv *t, int fd)
{
	struct tls_conn *c;
	SSL *ssl;

	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->srv = t;
	c->err = X509_V_OK;
	ssl = SSL_new(t->ctx);
	if (!ssl)
		goto err_free;
	if (!SSL_set_ex_data(ssl, tls_ssl_idx, c)) {
		SSL_free(ssl);
		goto err_free;
	}
	/* the SSL owns c now (tls_conn_free_cb) */
	if (!SSL_set_fd(ssl, fd)) {
		SSL_free(ssl);
		goto err_clear;
	}
	/*
	 * Tier U only: the handshake reads what the socket holds at once, not
	 * a record header and then its body (12 read()s per new TLS 1.2 mTLS
	 * handshake without, 3 with). Bytes read past Finished stay in
	 * OpenSSL for the relay (conn.c use_relay_bio()).
	 */
	SSL_set_read_ahead(ssl, t->read_ahead);
	SSL_set_accept_state(ssl);
	return ssl;

err_free:
	free(c);
err_clear:
	ERR_clear_error();
	errno = ENOMEM;
	return NULL;
}

void tls_srv_expire_sessions(struct tls_srv *t, time_t now)
{
	if (t && t->ctx)
		SSL_CTX_flush_sessions(t->ctx, (long)now);
}

const struct tls_srv *tls_ssl_srv(SSL *ssl)
{
	struct tls_conn *c = tls_conn_of(ssl);

	return c ? c->srv : NULL;
}

int tls_handshake(SSL *ssl, short *want)
{
	struct tls_conn *c = tls_conn_of(ssl);
	int r, e, saved;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		int status;

		/*
		 * A resumed session skipped the verify callbacks: apply the
		 * current server{}'s decision (allow-list included) now.
		 */
		if (c && SSL_session_reused(ssl) &&
		    c->srv->srv->verify_failure == GW_VFAIL_HANDSHAKE &&
		    tls_verify_decision(ssl, &status) < 0)
			return -EPROTO;
		return 0;
	}
	saved = errno;
	e = SSL_get_error(ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	default:
		break;
	}
	if (!c || !tls_detail(c))
		goto out;
	if (c->d->reason[0]) {
		/* our verification said why */
	} else if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		explain_no_cert(c, c->srv->srv);
	} else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		snprintf(c->d->reason, sizeof(c->d->reason), "%s during handshake",
			 saved ? strerror(saved) : "connection closed by client");
	} else if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(c->d->reason, sizeof(c->d->reason),
			 "connection closed by client during handshake");
	} else {
		ssl_err_reason(c->d->reason, sizeof(c->d->reason), "handshake failed");
	}
out:
	ERR_clear_error();
	return -EPROTO;
}

int tls_verify_decision(SSL *ssl, int *status)
{
	struct tls_conn *c = tls_conn_of(ssl);
	const struct gw_server *srv;
	X509 *peer;
	long vr;

	*status = 0;
	if (!c)
		return -EINVAL;
	srv = c->srv->srv;
	if (srv->verify == GW_VERIFY_OFF)
		return 0;
	vr = SSL_get_verify_result(ssl);
	peer = SSL_get0_peer_certificate(ssl);
	if (!verify_result_ok(srv, vr)) {
		if (!c->d || !c->d->reason[0])
			explain_verify(c, srv, vr);
		*status = 495;
		return -EACCES;
	}
	if (!peer) {
		if (srv->verify == GW_VERIFY_ON || srv->nallows) {
			explain_no_cert(c, srv);
			*status = 496;
			return -EACCES;
		}
		return 0;
	}
	if (srv->nallows && !allow_match(srv, peer)) {
		explain_allow(c, peer);
		*status = 495;
		return -EACCES;
	}
	return 0;
}

const char *tls_ssl_reason(SSL *ssl)
{
	struct tls_conn *c = tls_conn_of(ssl);

	return c && c->d ? c->d->reason : "";
}
