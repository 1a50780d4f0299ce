// SPDX-License-Identifier: MIT
/*
 * tls.c against real OpenSSL clients: every handshake runs over an AF_UNIX
 * socketpair, the gateway side through tls_ssl_new()/tls_handshake(), the
 * client side a plain OpenSSL client presenting the generated test PKI.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "test.h"
#include "gw/ktls.h"
#include "gw/tls.h"

#define P 512

/* A server{} filled by hand, with storage for its strings. */
struct tsrv {
	struct gw_server s;
	char cert[2][P], key[2][P];
	char *certp[2], *keyp[2];
	struct gw_where cw[2], kw[2];
	char ca[P], trusted[P], crl[P];
	char *names[4];
	struct gw_allow allows[4];
};

static void tsrv_init(struct tsrv *t, const char *ca)
{
	memset(t, 0, sizeof(*t));
	t->s.mode = GW_MODE_HTTP;
	t->s.file = "test.conf";
	t->s.line = 1;
	snprintf(t->cert[0], P, "%s", test__cert("server.crt"));
	snprintf(t->key[0], P, "%s", test__cert("server.key"));
	t->certp[0] = t->cert[0];
	t->keyp[0] = t->key[0];
	t->cw[0] = (struct gw_where){"test.conf", 10};
	t->kw[0] = (struct gw_where){"test.conf", 11};
	t->cw[1] = (struct gw_where){"test.conf", 12};
	t->kw[1] = (struct gw_where){"test.conf", 13};
	t->s.certs = t->certp;
	t->s.keys = t->keyp;
	t->s.certs_where = t->cw;
	t->s.keys_where = t->kw;
	t->s.ncerts = 1;
	if (ca) {
		snprintf(t->ca, P, "%s", test__cert(ca));
		t->s.client_certificate = t->ca;
	}
	t->s.client_certificate_where = (struct gw_where){"test.conf", 14};
	t->s.trusted_certificate_where = (struct gw_where){"test.conf", 15};
	t->s.crl_where = (struct gw_where){"test.conf", 16};
	t->s.ciphers_where = (struct gw_where){"test.conf", 17};
	t->s.verify_where = (struct gw_where){"test.conf", 18};
	t->s.verify = GW_VERIFY_ON;
	t->s.verify_depth = 1;
	t->s.protocols = GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3;
	t->s.ciphers = "HIGH:!aNULL:!MD5";
	t->s.session_cache = GW_SESS_CACHE_NONE;
	t->s.session_timeout = 300;
	t->s.session_tickets = true;
	t->s.verify_cache = true;
	t->s.verify_failure = GW_VFAIL_HANDSHAKE;
	t->names[0] = "";
	t->s.server_names = t->names;
	t->s.nserver_names = 1;
	t->s.allows = t->allows;
}

static void tsrv_pair(struct tsrv *t, int i, const char *cert, const char *key)
{
	snprintf(t->cert[i], P, "%s", strchr(cert, '/') ? cert : test__cert(cert));
	snprintf(t->key[i], P, "%s", strchr(key, '/') ? key : test__cert(key));
	t->certp[i] = t->cert[i];
	t->keyp[i] = t->key[i];
	if ((size_t)i + 1 > t->s.ncerts)
		t->s.ncerts = (size_t)i + 1;
}

static void tsrv_crl(struct tsrv *t, const char *crl)
{
	snprintf(t->crl, P, "%s", test__cert(crl));
	t->s.crl = t->crl;
}

static void tsrv_trusted(struct tsrv *t, const char *f)
{
	snprintf(t->trusted, P, "%s", test__cert(f));
	t->s.trusted_certificate = t->trusted;
}

/* What the client does. */
struct tcli {
	const char *name; /* "client-good" -> .chain.crt + .key; NULL = no certificate */
	const char *sni;
	int max_version; /* 0 = library default */
	int min_version;
	const char *sigalgs;
	const char *ciphers; /* TLS 1.2 list */
	SSL_SESSION *resume; /* offer this session */
};

struct hs {
	int srv_rc;   /* tls_handshake(): 0 or -EPROTO */
	int cli_ok;   /* client handshake completed */
	int decision; /* tls_verify_decision() when srv_rc == 0 */
	int status;
	char reason[1400];
	const struct tls_srv *picked;
	X509 *server_cert; /* what the client got */
	int server_chain;  /* certificates the server sent */
	int ca_names;	   /* CA names in the CertificateRequest, -1 = no request */
	char ca_first[512];
	int version;
	bool reused;
	SSL_SESSION *session; /* the client's session, for resumption */
};

static int cli_cert_cb(SSL *ssl, void *arg)
{
	struct hs *h = arg;
	const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(ssl);

	h->ca_names = names ? sk_X509_NAME_num(names) : 0;
	if (h->ca_names > 0)
		X509_NAME_oneline(sk_X509_NAME_value(names, 0), h->ca_first, sizeof(h->ca_first));
	return 1;
}

static void hs_free(struct hs *h)
{
	X509_free(h->server_cert);
	h->server_cert = NULL;
	SSL_SESSION_free(h->session);
	h->session = NULL;
}

/*
 * Handshake @cl against @t over a socketpair, both ends non-blocking and
 * stepped in turn. Returns 0 when the exchange ran to its end.
 */
static int run_hs(struct tls_srv *t, const struct tcli *cl, struct hs *h)
{
	SSL_CTX *cctx = NULL;
	SSL *s = NULL, *c = NULL;
	int sv[2] = {-1, -1};
	bool sdone = false, cdone = false, cfail = false;
	int ret = -1;
	char path[P];

	memset(h, 0, sizeof(*h));
	h->ca_names = -1;
	h->srv_rc = 1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1)
		return -1;
	cctx = SSL_CTX_new(TLS_client_method());
	if (!cctx)
		goto out;
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_cert_cb(cctx, cli_cert_cb, h);
	if (cl->name) {
		snprintf(path, P, "%s.chain.crt", test__cert(cl->name));
		if (!SSL_CTX_use_certificate_chain_file(cctx, path))
			goto out;
		snprintf(path, P, "%s.key", test__cert(cl->name));
		if (!SSL_CTX_use_PrivateKey_file(cctx, path, SSL_FILETYPE_PEM))
			goto out;
	}
	SSL_CTX_set_min_proto_version(cctx, cl->min_version ? cl->min_version : TLS1_2_VERSION);
	if (cl->max_version)
		SSL_CTX_set_max_proto_version(cctx, cl->max_version);
	if (cl->sigalgs && !SSL_CTX_set1_sigalgs_list(cctx, cl->sigalgs))
		goto out;
	if (cl->ciphers && !SSL_CTX_set_cipher_list(cctx, cl->ciphers))
		goto out;
	c = SSL_new(cctx);
	s = tls_ssl_new(t, sv[0]);
	if (!c || !s)
		goto out;
	SSL_set_fd(c, sv[1]);
	SSL_set_connect_state(c);
	if (cl->sni)
		SSL_set_tlsext_host_name(c, cl->sni);
	if (cl->resume)
		SSL_set_session(c, cl->resume);

	for (int i = 0; i < 200 && !(sdone && (cdone || cfail)); i++) {
		if (!sdone) {
			short want;
			int r = tls_handshake(s, &want);

			if (r != -EAGAIN) {
				h->srv_rc = r;
				sdone = true;
			}
		}
		if (!cdone && !cfail) {
			int r = SSL_do_handshake(c);

			if (r == 1)
				cdone = true;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ &&
				 SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
				cfail = true;
		}
	}
	ERR_clear_error();
	if (!sdone)
		goto out;
	h->cli_ok = cdone;
	h->picked = tls_ssl_srv(s);
	h->version = SSL_version(c);
	if (cdone) {
		STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c);

		h->server_cert = SSL_get1_peer_certificate(c);
		h->server_chain = chain ? sk_X509_num(chain) : 0;
		h->reused = SSL_session_reused(c);
		if (SSL_version(c) == TLS1_3_VERSION) {
			char b;

			/* the server's NewSessionTicket follows the handshake: read it */
			SSL_read(c, &b, 1);
			ERR_clear_error();
		}
		h->session = SSL_get1_session(c);
	}
	if (h->srv_rc == 0)
		h->decision = tls_verify_decision(s, &h->status);
	snprintf(h->reason, sizeof(h->reason), "%s", tls_ssl_reason(s));
	if (h->srv_rc == 0 && cdone) {
		/* a clean close keeps the session resumable */
		SSL_shutdown(s);
		SSL_shutdown(c);
	}
	ret = 0;
out:
	ERR_clear_error();
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(cctx);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	return ret;
}

static struct tls_srv *srv_new_ok(struct tsrv *t)
{
	struct tls_srv *srv = NULL;
	char *err = NULL;

	if (!ASSERT_OK(tls_srv_new(&t->s, &srv, &err), "tls_srv_new"))
		fprintf(stderr, "      err: %s\n", err ? err : "(none)");
	free(err);
	return srv;
}

/* ------------------------------------------------------------------ */

void test_tls_good_client_both_modes(void)
{
	for (int m = 0; m < 2; m++) {
		struct tsrv t;
		struct tls_srv *srv;
		struct tcli cl = {.name = "client-good"};
		struct hs h;

		tsrv_init(&t, "ca-root.pem");
		t.s.verify_failure = m ? GW_VFAIL_HTTP : GW_VFAIL_HANDSHAKE;
		srv = srv_new_ok(&t);
		if (!srv)
			return;
		if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
			ASSERT_OK(h.srv_rc, "handshake");
			ASSERT_TRUE(h.cli_ok, "client done");
			ASSERT_OK(h.decision, "decision");
			ASSERT_STREQ(h.reason, "", "no reason");
			ASSERT_TRUE(h.picked == srv, "server");
		}
		hs_free(&h);
		tls_srv_free(srv);
	}
}

/*
 * The decision matrix: for each client, mode and depth, the outcome nginx
 * 1.22 gives (reject = 495/496 in http mode, handshake failure otherwise).
 */
struct vcase {
	const char *client;
	enum gw_verify verify;
	int depth;
	const char *ca;
	const char *crl;
	int status; /* 0 = accepted, 495, 496 */
	const char *reason;
};

static const struct vcase vcases[] = {
	/* on */
	{"client-good", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{"client-rsa", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{"client-spiffe", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{"client-utf8", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{NULL, GW_VERIFY_ON, 1, "ca-root.pem", NULL, 496,
	 "client sent no certificate (ssl_verify_client on)"},
	{"client-expired", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495,
	 "certificate \"CN=client-expired,O=ktlsgw test,C=US\" expired on "},
	{"client-notyet", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495,
	 "certificate \"CN=client-notyet,O=ktlsgw test,C=US\" is not yet valid until "},
	{"client-other", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495,
	 "unknown CA: no trusted issuer for \"CN=client-other,O=ktlsgw other,C=US\" issued by "
	 "\"CN=ktlsgw Other Root CA,O=ktlsgw other,C=US\""},
	{"client-self", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495,
	 "self-signed certificate \"CN=client-self,O=ktlsgw self,C=US\""},
	/* OpenSSL's depth counts the CAs above the leaf, trust anchor excluded */
	{"client-int1", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{"client-int1", GW_VERIFY_ON, 2, "ca-root.pem", NULL, 0, ""},
	{"client-int1", GW_VERIFY_ON, 3, "ca-root.pem", NULL, 0, ""},
	{"client-int2", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495,
	 "verify depth 1 exceeded: chain needs depth 2 (ssl_verify_depth)"},
	{"client-int2", GW_VERIFY_ON, 2, "ca-root.pem", NULL, 0, ""},
	{"client-int2", GW_VERIFY_ON, 3, "ca-root.pem", NULL, 0, ""},
	/* the seed's bundle: intermediates + root + client certificates */
	{"client-good", GW_VERIFY_ON, 3, "ca-bundle.pem", NULL, 0, ""},
	{"client-int2", GW_VERIFY_ON, 3, "ca-bundle.pem", NULL, 0, ""},
	{"client-other", GW_VERIFY_ON, 3, "ca-bundle.pem", NULL, 495, "unknown CA"},
	/* CRL */
	{"client-revoked", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
	{"client-revoked", GW_VERIFY_ON, 1, "ca-root.pem", "crl-root.pem", 495,
	 "certificate \"CN=client-revoked,O=ktlsgw test,C=US\" revoked (serial "},
	{"client-good", GW_VERIFY_ON, 1, "ca-root.pem", "crl-root.pem", 0, ""},
	{"client-int2", GW_VERIFY_ON, 3, "ca-root.pem", "crl-all.pem", 0, ""},
	{"client-int1", GW_VERIFY_ON, 2, "ca-root.pem", "crl-root.pem", 495,
	 "no CRL in ssl_crl for \"CN=client-int1,O=ktlsgw test,C=US\""},
	{"client-good", GW_VERIFY_ON, 1, "ca-root.pem", "crl-expired.pem", 495,
	 "CRL has expired (issuer \"CN=ktlsgw Test Root CA,O=ktlsgw test,C=US\")"},
	/* optional */
	{NULL, GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 0, ""},
	{"client-good", GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 0, ""},
	{"client-other", GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 495, "unknown CA"},
	{"client-self", GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 495, "self-signed"},
	{"client-expired", GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 495, "expired on"},
	/* optional_no_ca: unknown issuers are forgiven, nothing else */
	{NULL, GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", NULL, 0, ""},
	{"client-other", GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", NULL, 0, ""},
	{"client-self", GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", NULL, 0, ""},
	{"client-self", GW_VERIFY_OPTIONAL_NO_CA, 1, NULL, NULL, 0, ""},
	{"client-good", GW_VERIFY_OPTIONAL_NO_CA, 1, NULL, NULL, 0, ""},
	{"client-expired", GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", NULL, 495, "expired"},
	/* a chain cut by the depth ends on "unable to get issuer": forgiven, as nginx */
	{"client-int2", GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", NULL, 0, ""},
	{"client-int2", GW_VERIFY_OPTIONAL, 1, "ca-root.pem", NULL, 495,
	 "verify depth 1 exceeded: chain needs depth 2"},
	{"client-other", GW_VERIFY_OPTIONAL_NO_CA, 1, "ca-root.pem", "crl-root.pem", 0, ""},
	{"client-int2", GW_VERIFY_ON, 1, "ca-bundle.pem", NULL, 495, "verify depth 1 exceeded"},
	/* off: nothing asked, nothing checked */
	{NULL, GW_VERIFY_OFF, 1, "ca-root.pem", NULL, 0, ""},
};

/*
 * Each case twice on the same server{}: the second handshake of a cleanly
 * verified chain comes from the verification cache and must decide the same.
 */
static void run_vcase(const struct vcase *v, enum gw_verify_failure vf)
{
	struct tsrv t;
	struct tls_srv *srv;
	struct tcli cl = {.name = v->client};
	char what[300];
	struct hs h;

	tsrv_init(&t, v->ca);
	t.s.verify = v->verify;
	t.s.verify_depth = v->depth;
	t.s.verify_failure = vf;
	if (v->crl)
		tsrv_crl(&t, v->crl);
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	for (int pass = 1; pass <= 2; pass++) {
		snprintf(what, sizeof(what), "%s verify=%d depth=%d ca=%s crl=%s %s, handshake %d",
			 v->client ? v->client : "(none)", v->verify, v->depth, v->ca ? v->ca : "-",
			 v->crl ? v->crl : "-", vf == GW_VFAIL_HTTP ? "http" : "handshake", pass);
		if (!ASSERT_OK(run_hs(srv, &cl, &h), what))
			break;
		if (vf == GW_VFAIL_HTTP || v->status == 0) {
			/* the handshake always completes; the decision is nginx's */
			if (!ASSERT_OK(h.srv_rc, what))
				fprintf(stderr, "      reason: %s\n", h.reason);
			ASSERT_EQ(h.decision, v->status ? -EACCES : 0, what);
			ASSERT_EQ(h.status, v->status, what);
		} else {
			ASSERT_EQ(h.srv_rc, -EPROTO, what);
		}
		if (v->reason[0])
			ASSERT_STRSTR(h.reason, v->reason, what);
		else
			ASSERT_STREQ(h.reason, "", what);
		hs_free(&h);
	}
	tls_srv_free(srv);
}

void test_tls_verify_matrix_handshake(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(vcases); i++)
		run_vcase(&vcases[i], GW_VFAIL_HANDSHAKE);
}

void test_tls_verify_matrix_http(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(vcases); i++)
		run_vcase(&vcases[i], GW_VFAIL_HTTP);
}

/* TLS 1.2 and 1.3 reach the same decisions. */
void test_tls_verify_matrix_tls12(void)
{
	static const struct vcase some[] = {
		{"client-good", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 0, ""},
		{NULL, GW_VERIFY_ON, 1, "ca-root.pem", NULL, 496, "client sent no certificate"},
		{"client-other", GW_VERIFY_ON, 1, "ca-root.pem", NULL, 495, "unknown CA"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(some); i++) {
		for (int m = 0; m < 2; m++) {
			struct tsrv t;
			struct tls_srv *srv;
			struct tcli cl = {.name = some[i].client, .max_version = TLS1_2_VERSION};
			struct hs h;

			tsrv_init(&t, some[i].ca);
			t.s.verify_failure = m ? GW_VFAIL_HTTP : GW_VFAIL_HANDSHAKE;
			srv = srv_new_ok(&t);
			if (!srv)
				return;
			if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
				ASSERT_EQ(h.version, TLS1_2_VERSION, "TLS 1.2");
				if (m || !some[i].status) {
					ASSERT_OK(h.srv_rc, "completes");
					ASSERT_EQ(h.status, some[i].status, "status");
				} else {
					ASSERT_EQ(h.srv_rc, -EPROTO, "handshake fails");
					ASSERT_FALSE(h.cli_ok, "client sees the failure (1.2)");
				}
				if (some[i].reason[0])
					ASSERT_STRSTR(h.reason, some[i].reason, "reason");
			}
			hs_free(&h);
			tls_srv_free(srv);
		}
	}
}

void test_tls_client_allow(void)
{
	static const struct {
		enum gw_allow_kind kind;
		const char *value;
		const char *client;
		bool ok;
	} cases[] = {
		{GW_ALLOW_CN, "client-good", "client-good", true},
		{GW_ALLOW_CN, "client-good", "client-rsa", false},
		{GW_ALLOW_DNS, "ALT.client.test", "client-good", true},
		{GW_ALLOW_DNS, "client.test", "client-good", false},
		{GW_ALLOW_URI, "spiffe://example.org/ns/default/sa/web", "client-spiffe", true},
		{GW_ALLOW_URI, "spiffe://example.org/ns/default/sa/web", "client-good", false},
		{GW_ALLOW_FINGERPRINT, NULL, "client-good", true}, /* sha256, colons */
		{GW_ALLOW_FINGERPRINT, "", "client-good", true},   /* sha1, plain */
		{GW_ALLOW_FINGERPRINT, NULL, "client-rsa", false},
	};
	char fp256[200], fp1[100];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;
	X509 *x;
	FILE *f = fopen(test__cert("client-good.crt"), "r");

	if (!ASSERT_OK_PTR(f, "open client-good.crt"))
		return;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!ASSERT_OK_PTR(x, "read"))
		return;
	X509_digest(x, EVP_sha256(), md, &len);
	for (unsigned int i = 0; i < len; i++)
		snprintf(fp256 + 3 * i, 4, "%02X:", md[i]);
	fp256[3 * len - 1] = '\0';
	X509_digest(x, EVP_sha1(), md, &len);
	for (unsigned int i = 0; i < len; i++)
		snprintf(fp1 + 2 * i, 3, "%02x", md[i]);
	X509_free(x);

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		for (int m = 0; m < 2; m++) {
			struct tsrv t;
			struct tls_srv *srv;
			struct tcli cl = {.name = cases[i].client};
			char what[128];
			struct hs h;

			snprintf(what, sizeof(what), "allow case %zu mode %d", i, m);
			tsrv_init(&t, "ca-root.pem");
			t.s.verify_failure = m ? GW_VFAIL_HTTP : GW_VFAIL_HANDSHAKE;
			t.allows[0].kind = cases[i].kind;
			t.allows[0].value = (char *)(cases[i].value ? cases[i].value : fp256);
			if (cases[i].value && !cases[i].value[0])
				t.allows[0].value = fp1;
			/* a second entry that matches nobody */
			t.allows[1].kind = GW_ALLOW_CN;
			t.allows[1].value = "nobody";
			t.s.nallows = 2;
			srv = srv_new_ok(&t);
			if (!srv)
				return;
			if (ASSERT_OK(run_hs(srv, &cl, &h), what)) {
				if (cases[i].ok) {
					ASSERT_OK(h.srv_rc, what);
					ASSERT_OK(h.decision, what);
				} else if (m) {
					ASSERT_OK(h.srv_rc, what);
					ASSERT_EQ(h.status, 495, what);
				} else {
					ASSERT_EQ(h.srv_rc, -EPROTO, what);
				}
				if (!cases[i].ok)
					ASSERT_STRSTR(h.reason, "not in ssl_client_allow", what);
			}
			hs_free(&h);
			tls_srv_free(srv);
		}
	}
}

/* ssl_client_certificate sends CA names; ssl_trusted_certificate only trusts. */
void test_tls_ca_names(void)
{
	static const struct {
		const char *client_ca, *trusted;
		int names;
	} cases[] = {
		{"ca-root.pem", NULL, 1},
		{"ca-all.pem", NULL, 4},
		{"ca-bundle.pem", NULL, 6},
		{"ca-other.pem", "ca-root.pem", 1},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		for (int v = 0; v < 2; v++) {
			struct tsrv t;
			struct tls_srv *srv;
			struct tcli cl = {.name = "client-good",
					  .max_version = v ? TLS1_2_VERSION : 0};
			struct hs h;

			tsrv_init(&t, cases[i].client_ca);
			if (cases[i].trusted)
				tsrv_trusted(&t, cases[i].trusted);
			srv = srv_new_ok(&t);
			if (!srv)
				return;
			if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
				ASSERT_OK(h.srv_rc, "handshake");
				ASSERT_OK(h.decision, "trusted via either file");
				ASSERT_EQ(h.ca_names, cases[i].names, "CA names sent");
				if (i == 3)
					ASSERT_STRSTR(h.ca_first, "CN=ktlsgw Other Root CA",
						      "only client_certificate names");
				else
					ASSERT_STRSTR(h.ca_first, "O=ktlsgw test", "names");
			}
			hs_free(&h);
			tls_srv_free(srv);
		}
	}
}

/* optional_no_ca without any CA file: a request with no names */
void test_tls_optional_no_ca_no_names(void)
{
	struct tsrv t;
	struct tls_srv *srv;
	struct tcli cl = {.name = "client-self"};
	struct hs h;

	tsrv_init(&t, NULL);
	t.s.verify = GW_VERIFY_OPTIONAL_NO_CA;
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
		ASSERT_OK(h.srv_rc, "handshake");
		ASSERT_EQ(h.ca_names, 0, "no CA names");
	}
	hs_free(&h);
	tls_srv_free(srv);
}

static int pkey_id(X509 *x)
{
	return x ? EVP_PKEY_get_base_id(X509_get0_pubkey(x)) : -1;
}

/* ECDSA and RSA pairs in one server{}: the client's signature algorithms choose. */
void test_tls_rsa_and_ecdsa(void)
{
	/* the client signs with the same list: an RSA client for RSA-only lists */
	static const struct {
		const char *client;
		const char *sigalgs;
		int max;
		int key;
	} cases[] = {
		{"client-good", "ECDSA+SHA256", 0, EVP_PKEY_EC},
		{"client-rsa", "rsa_pss_rsae_sha256", 0, EVP_PKEY_RSA},
		{"client-rsa", "RSA+SHA256", TLS1_2_VERSION, EVP_PKEY_RSA},
		{"client-good", "ECDSA+SHA256", TLS1_2_VERSION, EVP_PKEY_EC},
	};
	struct tsrv t;
	struct tls_srv *srv;

	tsrv_init(&t, "ca-root.pem");
	tsrv_pair(&t, 1, "server-rsa.crt", "server-rsa.key");
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct tcli cl = {.name = cases[i].client,
				  .sigalgs = cases[i].sigalgs,
				  .max_version = cases[i].max};
		struct hs h;

		if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
			ASSERT_OK(h.srv_rc, cases[i].sigalgs);
			ASSERT_EQ(pkey_id(h.server_cert), cases[i].key, cases[i].sigalgs);
		}
		hs_free(&h);
	}
	tls_srv_free(srv);
}

/* The chain in ssl_certificate's file is sent, nothing is added (SSL_MODE_NO_AUTO_CHAIN). */
void test_tls_chain_sent(void)
{
	struct tsrv t;
	struct tls_srv *srv;
	struct tcli cl = {.name = "client-good"};
	struct hs h;

	tsrv_init(&t, "ca-all.pem");
	tsrv_pair(&t, 0, "server-int.fullchain.crt", "server-int.key");
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
		ASSERT_OK(h.srv_rc, "handshake");
		ASSERT_EQ(h.server_chain, 2, "leaf + int1");
	}
	hs_free(&h);
	tls_srv_free(srv);

	tsrv_init(&t, "ca-all.pem");
	tsrv_pair(&t, 0, "server-int.crt", "server-int.key");
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
		ASSERT_OK(h.srv_rc, "handshake");
		ASSERT_EQ(h.server_chain, 1, "leaf only, not built from the store");
	}
	hs_free(&h);
	tls_srv_free(srv);
}

void test_tls_protocols(void)
{
	static const struct {
		unsigned int srv;
		int cli_min, cli_max;
		int version; /* 0 = must fail */
		const char *reason;
	} cases[] = {
		{GW_PROTO_TLSv1_2, 0, 0, TLS1_2_VERSION, ""},
		{GW_PROTO_TLSv1_3, 0, 0, TLS1_3_VERSION, ""},
		{GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3, 0, 0, TLS1_3_VERSION, ""},
		{GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3, 0, TLS1_2_VERSION, TLS1_2_VERSION, ""},
		{GW_PROTO_TLSv1_3, 0, TLS1_2_VERSION, 0, "unsupported protocol"},
		{GW_PROTO_TLSv1_2, TLS1_3_VERSION, 0, 0, "unsupported protocol"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct tsrv t;
		struct tls_srv *srv;
		struct tcli cl = {.name = "client-good",
				  .min_version = cases[i].cli_min,
				  .max_version = cases[i].cli_max};
		char what[64];
		struct hs h;

		snprintf(what, sizeof(what), "protocols case %zu", i);
		tsrv_init(&t, "ca-root.pem");
		t.s.protocols = cases[i].srv;
		srv = srv_new_ok(&t);
		if (!srv)
			return;
		if (ASSERT_OK(run_hs(srv, &cl, &h), what)) {
			if (cases[i].version) {
				ASSERT_OK(h.srv_rc, what);
				ASSERT_EQ(h.version, cases[i].version, what);
			} else {
				ASSERT_EQ(h.srv_rc, -EPROTO, what);
				ASSERT_STRSTR(h.reason, cases[i].reason, what);
			}
		}
		hs_free(&h);
		tls_srv_free(srv);
	}
}

void test_tls_no_shared_cipher(void)
{
	struct tsrv t;
	struct tls_srv *srv;
	struct tcli cl = {.name = "client-good",
			  .max_version = TLS1_2_VERSION,
			  .ciphers = "ECDHE-RSA-AES128-GCM-SHA256"};
	struct hs h;

	tsrv_init(&t, "ca-root.pem"); /* ECDSA certificate only */
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	if (ASSERT_OK(run_hs(srv, &cl, &h), "run")) {
		ASSERT_EQ(h.srv_rc, -EPROTO, "fails");
		ASSERT_STREQ(h.reason, "no shared cipher", "reason");
	}
	hs_free(&h);
	tls_srv_free(srv);
}

void test_tls_bad_ciphers_config(void)
{
	struct tsrv t;
	struct tls_srv *srv = NULL;
	char *err = NULL;

	tsrv_init(&t, "ca-root.pem");
	t.s.ciphers = "NOPE-NOTHING";
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "rejected");
	ASSERT_STRSTR(err, "test.conf:17: SSL_CTX_set_cipher_list(\"NOPE-NOTHING\") failed",
		      "message");
	free(err);
}

void test_tls_sni_group(void)
{
	static const struct {
		const char *sni;
		int want;
	} cases[] = {
		{NULL, 0},
		{"unknown.test", 0},
		{"api.example.com", 1},
		{"API.Example.COM.", 1},
		{"x.example.com", 2},	/* *.example.com */
		{"a.b.example.com", 2}, /* wildcard spans labels, as nginx */
		{"example.org", 3},	/* .example.org */
		{"www.example.org", 3},
		{"deep.api.example.com", 2},
		{"mail.example.net", 4}, /* mail.* */
	};
	struct tsrv t[5];
	struct tls_srv *g[5] = {0};
	static char *n1[] = {"api.example.com"}, *n2[] = {"*.example.com"},
		    *n3[] = {".example.org"}, *n4[] = {"mail.*"};
	char **names[5] = {NULL, n1, n2, n3, n4};

	for (int i = 0; i < 5; i++) {
		tsrv_init(&t[i], "ca-root.pem");
		if (names[i]) {
			t[i].s.server_names = names[i];
			t[i].s.nserver_names = 1;
		}
		/* tell them apart: odd ones serve the RSA certificate */
		if (i % 2)
			tsrv_pair(&t[i], 0, "server-rsa.crt", "server-rsa.key");
		/* and server 1 does not ask for a client certificate */
		if (i == 1)
			t[i].s.verify = GW_VERIFY_OFF;
		g[i] = srv_new_ok(&t[i]);
		if (!g[i])
			goto out;
	}
	if (!ASSERT_OK(tls_srv_group(g, 5), "group"))
		goto out;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct tcli cl = {.name = "client-good", .sni = cases[i].sni};
		const char *what = cases[i].sni ? cases[i].sni : "(no sni)";
		struct hs h;

		if (ASSERT_OK(run_hs(g[0], &cl, &h), what)) {
			ASSERT_OK(h.srv_rc, what);
			ASSERT_TRUE(h.picked == g[cases[i].want], what);
			ASSERT_TRUE(tls_srv_server(h.picked) == &t[cases[i].want].s, what);
			ASSERT_EQ(pkey_id(h.server_cert),
				  cases[i].want % 2 ? EVP_PKEY_RSA : EVP_PKEY_EC, what);
			/* verification follows the chosen server */
			ASSERT_EQ(h.ca_names, cases[i].want == 1 ? -1 : 1, what);
		}
		hs_free(&h);
	}
out:
	for (int i = 0; i < 5; i++)
		tls_srv_free(g[i]);
}

void test_tls_key_errors(void)
{
	struct tsrv t;
	struct tls_srv *srv = NULL;
	char *err = NULL;
	char tmp[] = "/tmp/gw-tls-XXXXXX";
	int fd;

	/* mismatched key: RSA key for the ECDSA certificate */
	tsrv_init(&t, "ca-root.pem");
	tsrv_pair(&t, 0, "server.crt", "server-rsa.key");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "mismatch rejected");
	ASSERT_STRSTR(err, "test.conf:11: ssl_certificate_key \"", "key FILE:LINE");
	ASSERT_STRSTR(err, "does not match ssl_certificate \"", "names the certificate");
	ASSERT_STRSTR(err, "server.crt\" at test.conf:10", "certificate FILE:LINE");
	free(err);
	err = NULL;

	/* same type, other key */
	tsrv_init(&t, "ca-root.pem");
	tsrv_pair(&t, 0, "server.crt", "client-good.key");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "other EC key rejected");
	ASSERT_STRSTR(err, "test.conf:11:", "FILE:LINE");
	ASSERT_STRSTR(err, "mismatch", "OpenSSL's reason");
	free(err);
	err = NULL;

	/* missing key file */
	tsrv_init(&t, "ca-root.pem");
	tsrv_pair(&t, 0, "server.crt", "/nonexistent/server.key");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "missing key");
	ASSERT_STRSTR(err, "test.conf:11: cannot load certificate key \"/nonexistent/server.key\"",
		      "message");
	free(err);
	err = NULL;

	/* garbage key file */
	fd = mkstemp(tmp);
	if (ASSERT_TRUE(fd >= 0, "mkstemp")) {
		ASSERT_TRUE(write(fd, "not a key\n", 10) == 10, "write");
		close(fd);
		tsrv_init(&t, "ca-root.pem");
		tsrv_pair(&t, 0, "server.crt", tmp);
		ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "garbage key");
		ASSERT_STRSTR(err, "test.conf:11: cannot load certificate key", "message");
		free(err);
		err = NULL;
		/* unreadable (when not root) */
		if (geteuid() != 0 && chmod(tmp, 0) == 0) {
			tsrv_pair(&t, 0, "server.crt", tmp);
			ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "unreadable key");
			ASSERT_STRSTR(err, "test.conf:11: cannot load certificate key", "msg");
			free(err);
			err = NULL;
		}
		unlink(tmp);
	}

	/* missing certificate, second pair */
	tsrv_init(&t, "ca-root.pem");
	tsrv_pair(&t, 1, "/nonexistent/rsa.crt", "server-rsa.key");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "missing cert");
	ASSERT_STRSTR(err, "test.conf:12: cannot load certificate \"/nonexistent/rsa.crt\"",
		      "message");
	free(err);
	err = NULL;

	/* unreadable CA file, CRL file */
	tsrv_init(&t, "nonexistent-ca.pem");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "missing CA");
	ASSERT_STRSTR(err, "test.conf:14: SSL_CTX_load_verify_locations(", "CA message");
	free(err);
	err = NULL;
	tsrv_init(&t, "ca-root.pem");
	tsrv_crl(&t, "nonexistent-crl.pem");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "missing CRL");
	ASSERT_STRSTR(err, "test.conf:16: X509_LOOKUP_load_file(", "CRL message");
	free(err);
	err = NULL;

	/* nginx 1.22: "on" needs ssl_client_certificate */
	tsrv_init(&t, NULL);
	tsrv_trusted(&t, "ca-root.pem");
	ASSERT_EQ(tls_srv_new(&t.s, &srv, &err), -EINVAL, "no client certificate");
	ASSERT_STRSTR(err, "test.conf:18: no ssl_client_certificate for ssl_verify_client",
		      "message");
	free(err);
}

/* Session cache, tickets, modes and depth as configured. */
void test_tls_ctx_settings(void)
{
	struct tsrv t;
	struct tls_srv *srv;
	SSL_CTX *ctx;

	tsrv_init(&t, "ca-root.pem");
	t.s.session_cache = GW_SESS_CACHE_ON;
	t.s.session_tickets = false;
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	ctx = tls_srv_ctx(srv);
	ASSERT_TRUE(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET, "no tickets");
	/* no auto-clear: the worker's tick expires sessions (tls_srv_expire_sessions) */
	ASSERT_EQ(SSL_CTX_get_session_cache_mode(ctx),
		  SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR, "cache mode");
	ASSERT_EQ(SSL_CTX_get_timeout(ctx), 300, "timeout");
	ASSERT_EQ(SSL_CTX_get_num_tickets(ctx), 1, "one TLS 1.3 ticket");
	{
		/* a session past its timeout leaves the cache at the sweep, a fresh one stays */
		SSL_SESSION *old = SSL_SESSION_new(), *fresh = SSL_SESSION_new();
		unsigned char id1[32] = {1}, id2[32] = {2};
		time_t now = time(NULL);

		ASSERT_TRUE(old && fresh, "SSL_SESSION_new");
		if (old && fresh) {
			SSL_SESSION_set1_id(old, id1, sizeof(id1));
			SSL_SESSION_set1_id(fresh, id2, sizeof(id2));
			SSL_SESSION_set_time(old, now - 100);
			SSL_SESSION_set_timeout(old, 10);
			SSL_SESSION_set_time(fresh, now);
			SSL_SESSION_set_timeout(fresh, 300);
			ASSERT_TRUE(SSL_CTX_add_session(ctx, old), "add old");
			ASSERT_TRUE(SSL_CTX_add_session(ctx, fresh), "add fresh");
			ASSERT_EQ(SSL_CTX_sess_number(ctx), 2, "two cached");
			tls_srv_expire_sessions(srv, now);
			ASSERT_EQ(SSL_CTX_sess_number(ctx), 1, "the expired one swept");
		}
		SSL_SESSION_free(old);
		SSL_SESSION_free(fresh);
	}
	ASSERT_FALSE(SSL_CTX_get_read_ahead(ctx), "no read-ahead");
	ASSERT_EQ(SSL_CTX_get_mode(ctx) &
			  (SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			   SSL_MODE_RELEASE_BUFFERS),
		  SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			  SSL_MODE_RELEASE_BUFFERS,
		  "modes");
	ASSERT_EQ(SSL_CTX_get_verify_depth(ctx), 1, "depth");
	tls_srv_free(srv);

	tsrv_init(&t, "ca-root.pem");
	t.s.session_cache = GW_SESS_CACHE_OFF;
	srv = srv_new_ok(&t);
	if (!srv)
		return;
	ASSERT_EQ(SSL_CTX_get_session_cache_mode(tls_srv_ctx(srv)), SSL_SESS_CACHE_OFF, "off");
	tls_srv_free(srv);
}

/* ssl_session_cache builtin: the second connection resumes, with the same decision. */
void test_tls_session_resumption(void)
{
	for (int m = 0; m < 2; m++) {
		struct tsrv t;
		struct tls_srv *srv;
		struct tcli cl = {.name = "client-good", .max_version = TLS1_2_VERSION};
		struct hs h1, h2;

		tsrv_init(&t, "ca-root.pem");
		t.s.session_cache = GW_SESS_CACHE_ON;
		t.s.session_tickets = m;
		t.s.verify_failure = GW_VFAIL_HTTP;
		srv = srv_new_ok(&t);
		if (!srv)
			return;
		if (!ASSERT_OK(run_hs(srv, &cl, &h1), "first")) {
			tls_srv_free(srv);
			return;
		}
		ASSERT_FALSE(h1.reused, "fresh");
		cl.resume = h1.session;
		if (ASSERT_OK(run_hs(srv, &cl, &h2), "second")) {
			ASSERT_OK(h2.srv_rc, "handshake");
			ASSERT_TRUE(h2.reused, m ? "resumed (ticket)" : "resumed (cache)");
			ASSERT_OK(h2.decision, "still verified");
		}
		hs_free(&h2);
		hs_free(&h1);
		tls_srv_free(srv);
	}
}

/* A session of one server{} does not resume on another with other verification. */
void test_tls_session_not_shared(void)
{
	struct tsrv t[2];
	struct tls_srv *g[2] = {0};
	static char *n1[] = {"b.test"};
	struct tcli cl = {.name = "client-good", .max_version = TLS1_2_VERSION};
	struct hs h1, h2;

	for (int i = 0; i < 2; i++) {
		tsrv_init(&t[i], "ca-root.pem");
		t[i].s.session_cache = GW_SESS_CACHE_ON;
		t[i].s.session_tickets = false;
		g[i] = srv_new_ok(&t[i]);
		if (!g[i])
			goto out;
	}
	t[1].s.server_names = n1;
	t[1].allows[0] = (struct gw_allow){GW_ALLOW_CN, "client-good"};
	t[1].s.nallows = 1;
	tls_srv_free(g[1]);
	g[1] = srv_new_ok(&t[1]);
	if (!g[1] || !ASSERT_OK(tls_srv_group(g, 2), "group"))
		goto out;
	/* established on b.test (allow-list), offered to the default server */
	cl.sni = "b.test";
	if (!ASSERT_OK(run_hs(g[0], &cl, &h1), "first"))
		goto out;
	ASSERT_TRUE(h1.picked == g[1], "SNI");
	cl.resume = h1.session;
	cl.sni = "other.test"; /* no server_name: the default server */
	if (ASSERT_OK(run_hs(g[0], &cl, &h2), "second")) {
		ASSERT_OK(h2.srv_rc, "handshake");
		ASSERT_TRUE(h2.picked == g[0], "default");
		ASSERT_FALSE(h2.reused, "not resumed across server{}s");
	}
	hs_free(&h2);
	hs_free(&h1);
out:
	tls_srv_free(g[0]);
	tls_srv_free(g[1]);
}

/*
 * ssl_verify_cache: a chain verified cleanly once is accepted from the cache
 * the next time, per chain; the allow-list still decides on every handshake;
 * with the cache off nothing is cached and the decisions are the same.
 */
void test_tls_verify_cache(void)
{
	static const struct {
		const char *client;
		int status;	    /* tls_verify_decision() status: 0 or 495 */
		unsigned long hits; /* from the cache, with it on */
	} steps[] = {
		{"client-good", 495, 0},    /* verified, then refused by the allow-list */
		{"client-good", 495, 1},    /* same chain: cache, still refused */
		{"client-int2", 0, 0},	    /* another chain: verified */
		{"client-int2", 0, 1},	    /* cache */
		{"client-expired", 495, 0}, /* errors are never cached */
		{"client-expired", 495, 0}, {"client-good", 495, 1},
	};

	for (int on = 0; on < 2; on++) {
		struct tsrv t;
		struct tls_srv *srv;
		char what[128];
		struct hs h;

		tsrv_init(&t, "ca-all.pem");
		t.s.verify_depth = 3;
		t.s.verify_failure = GW_VFAIL_HTTP;
		t.s.verify_cache = on;
		t.allows[0] = (struct gw_allow){.kind = GW_ALLOW_CN, .value = "client-int2"};
		t.s.nallows = 1;
		srv = srv_new_ok(&t);
		if (!srv)
			return;
		for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
			struct tcli cl = {.name = steps[i].client};
			unsigned long before = tls_verify_cache_hits();

			snprintf(what, sizeof(what), "cache %s, step %zu (%s)", on ? "on" : "off",
				 i, steps[i].client);
			if (!ASSERT_OK(run_hs(srv, &cl, &h), what))
				break;
			ASSERT_OK(h.srv_rc, what);
			ASSERT_EQ(h.status, steps[i].status, what);
			ASSERT_EQ(tls_verify_cache_hits() - before, on ? steps[i].hits : 0, what);
			if (steps[i].status)
				ASSERT_STRSTR(h.reason,
					      strcmp(steps[i].client, "client-good") == 0
						      ? "not in ssl_client_allow"
						      : "expired",
					      what);
			hs_free(&h);
		}
		tls_srv_free(srv);
	}
}

/* The verification cache tests' server: the root CA, refusals answered (status, reason seen). */
static struct tls_srv *vc_root_srv(struct tsrv *t)
{
	tsrv_init(t, "ca-root.pem");
	t->s.verify_failure = GW_VFAIL_HTTP;
	return srv_new_ok(t);
}

/* run_hs() for client-good with the test clock at @offset, ticking with @tick. */
static int hs_clock(struct tls_srv *srv, long offset, bool tick, struct hs *h)
{
	struct tcli cl = {.name = "client-good"};
	int rc;

	test__clock_offset = offset;
	test__clock_tick = tick;
	rc = run_hs(srv, &cl, h);
	test__clock_tick = false;
	return rc;
}

/* client-good's notBefore (@after false) or notAfter, in epoch seconds; 0 on failure. */
static time_t good_cert_time(bool after)
{
	FILE *f = fopen(test__cert("client-good.crt"), "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	struct tm tm;
	time_t t = 0;

	if (f)
		fclose(f);
	if (x && ASN1_TIME_to_tm(after ? X509_get0_notAfter(x) : X509_get0_notBefore(x), &tm))
		t = timegm(&tm);
	X509_free(x);
	ASSERT_TRUE(t, after ? "client-good notAfter" : "client-good notBefore");
	return t;
}

/*
 * A clock set back before a cached verification (NTP stepping back, a VM
 * snapshot restored) misses the cache: the chain is verified at the new time,
 * where the test PKI (younger than a day) is not valid yet, and refused as a
 * fresh verification refuses it. Back at the real time the entry serves again.
 */
void test_tls_verify_cache_clock_back(void)
{
	static const struct {
		long offset;
		int status;
		unsigned long hits;
	} steps[] = {
		{0, 0, 0},
		{0, 0, 1},
		{-(86400L + 3600), 495, 0},
		{0, 0, 1},
	};
	struct tsrv t;
	struct tls_srv *srv = vc_root_srv(&t);
	char what[96];
	struct hs h;

	if (!srv)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		unsigned long before = tls_verify_cache_hits();
		int rc;

		snprintf(what, sizeof(what), "step %zu, clock %+ld s", i, steps[i].offset);
		rc = hs_clock(srv, steps[i].offset, false, &h);
		test__clock_offset = 0;
		if (!ASSERT_OK(rc, what))
			break;
		ASSERT_OK(h.srv_rc, what);
		ASSERT_EQ(h.status, steps[i].status, what);
		ASSERT_EQ(tls_verify_cache_hits() - before, steps[i].hits, what);
		if (steps[i].status)
			ASSERT_STRSTR(h.reason, "not yet valid", what);
		hs_free(&h);
	}
	tls_srv_free(srv);
}

/*
 * On a slow machine (CI's emulated VM) one verification runs over several
 * seconds. Its acceptance is kept all the same when nothing it depends on
 * changes validity meanwhile: here the clock advances a second at every
 * reading, so each check of the verification reads another second.
 */
void test_tls_verify_cache_slow_verification(void)
{
	struct tsrv t;
	struct tls_srv *srv = vc_root_srv(&t);
	char what[64];
	struct hs h;

	if (!srv)
		return;
	for (int i = 0; i < 3; i++) {
		unsigned long before = tls_verify_cache_hits();
		int rc;

		snprintf(what, sizeof(what), "handshake %d, ticking clock", i);
		rc = hs_clock(srv, test__clock_offset, true, &h);
		if (!ASSERT_OK(rc, what))
			break;
		ASSERT_OK(h.srv_rc, what);
		ASSERT_EQ(h.status, 0, what);
		ASSERT_EQ(tls_verify_cache_hits() - before, i > 0, what);
		hs_free(&h);
	}
	test__clock_offset = 0;
	tls_srv_free(srv);
}

/*
 * A client certificate that expires while handshakes keep coming, each
 * verification spanning seconds (ticking clock, as above), starting two
 * minutes before its notAfter: the chain is served from the cache before,
 * and once a handshake is refused as expired, every later one is too, none
 * from the cache.
 */
void test_tls_verify_cache_expiry_while_verifying(void)
{
	unsigned long hits_before = 0;
	int accepted = 0, refused = 0, late_accept = 0;
	time_t not_after = good_cert_time(true);
	struct tsrv t;
	struct tls_srv *srv;
	char what[64];
	struct hs h;

	if (!not_after)
		return;

	srv = vc_root_srv(&t);
	if (!srv)
		return;
	test__clock_offset = 0;
	test__clock_offset = (long)(not_after - 120 - time(NULL));
	for (int i = 0; i < 200 && refused < 6; i++) {
		unsigned long before = tls_verify_cache_hits();
		int rc;

		snprintf(what, sizeof(what), "handshake %d", i);
		rc = hs_clock(srv, test__clock_offset, true, &h);
		if (!ASSERT_OK(rc, what) || !ASSERT_OK(h.srv_rc, what))
			break;
		if (h.status == 0) {
			accepted++;
			hits_before += tls_verify_cache_hits() - before;
			late_accept += refused > 0;
		} else {
			refused++;
			ASSERT_EQ(h.status, 495, what);
			ASSERT_STRSTR(h.reason, "expired", what);
		}
		hs_free(&h);
	}
	test__clock_offset = 0;
	ASSERT_TRUE(accepted >= 2, "handshakes accepted before notAfter");
	ASSERT_TRUE(hits_before >= 1, "accepted from the cache before notAfter");
	ASSERT_EQ(refused, 6, "handshakes refused after notAfter");
	ASSERT_EQ(late_accept, 0, "accepted after a refusal as expired");
	tls_srv_free(srv);
}

/*
 * A chain that becomes valid while it is being verified: the clock, ticking,
 * passes the notBefore of the root and of client-good (the same second)
 * between the cache's start reading and the certificate checks. It is
 * accepted, but must not be kept: one second before notBefore a fresh
 * verification refuses it as not yet valid, and so must the cache. The
 * handshake starts k seconds before notBefore, k growing until the checks
 * fall before notBefore too; the k before that one straddled notBefore.
 */
void test_tls_verify_cache_valid_while_verifying(void)
{
	bool accepted[64] = {false}, straddled = false;
	time_t not_before = good_cert_time(false);

	if (!not_before)
		return;

	for (int k = 1; k < (int)ARRAY_SIZE(accepted) && !straddled; k++) {
		struct tsrv t;
		struct tls_srv *srv = vc_root_srv(&t);
		unsigned long before;
		char what[64];
		struct hs h;
		int rc;

		if (!srv)
			return;
		snprintf(what, sizeof(what), "from %d s before notBefore, ticking", k);
		test__clock_fixed = not_before - k;
		test__clock_tick = true;
		rc = run_hs(srv, &(struct tcli){.name = "client-good"}, &h);
		test__clock_tick = false;
		if (ASSERT_OK(rc, what) && ASSERT_OK(h.srv_rc, what))
			accepted[k] = h.status == 0;
		straddled = accepted[k - 1] && !accepted[k];
		hs_free(&h);

		snprintf(what, sizeof(what), "then 1 s before notBefore (k %d)", k);
		test__clock_fixed = not_before - 1;
		before = tls_verify_cache_hits();
		rc = run_hs(srv, &(struct tcli){.name = "client-good"}, &h);
		test__clock_fixed = 0;
		if (ASSERT_OK(rc, what) && ASSERT_OK(h.srv_rc, what)) {
			ASSERT_EQ(h.status, 495, what);
			ASSERT_STRSTR(h.reason, "not yet valid", what);
			ASSERT_EQ(tls_verify_cache_hits() - before, 0, what);
		}
		hs_free(&h);
		tls_srv_free(srv);
	}
	ASSERT_TRUE(straddled, "a start at which the checks straddled notBefore");
}

/*
 * Each server{} has its own verification cache: a chain accepted (and
 * cached) on the default server, which trusts every test CA to depth 3, is
 * verified again and refused on a server chosen by SNI that trusts the root
 * to depth 1 only; and accepted from the cache again on the default.
 */
void test_tls_verify_cache_per_server(void)
{
	static const struct {
		const char *sni;
		int status;
		unsigned long hits;
		const char *reason;
	} steps[] = {
		{NULL, 0, 0, ""},
		{NULL, 0, 1, ""},
		{"strict.test", 495, 0, "verify depth 1 exceeded"},
		{"strict.test", 495, 0, "verify depth 1 exceeded"},
		{NULL, 0, 1, ""},
	};
	static char *strict[] = {"strict.test"};
	struct tsrv t[2];
	struct tls_srv *g[2] = {0};
	char what[96];
	struct hs h;

	tsrv_init(&t[0], "ca-all.pem");
	t[0].s.verify_depth = 3;
	tsrv_init(&t[1], "ca-root.pem");
	t[1].s.server_names = strict;
	t[1].s.nserver_names = 1;
	for (int i = 0; i < 2; i++) {
		t[i].s.verify_failure = GW_VFAIL_HTTP;
		g[i] = srv_new_ok(&t[i]);
		if (!g[i])
			goto out;
	}
	if (!ASSERT_OK(tls_srv_group(g, 2), "group"))
		goto out;
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		struct tcli cl = {.name = "client-int2", .sni = steps[i].sni};
		unsigned long before = tls_verify_cache_hits();

		snprintf(what, sizeof(what), "step %zu (%s)", i,
			 steps[i].sni ? steps[i].sni : "default");
		if (!ASSERT_OK(run_hs(g[0], &cl, &h), what))
			break;
		ASSERT_OK(h.srv_rc, what);
		ASSERT_TRUE(h.picked == g[steps[i].sni ? 1 : 0], what);
		ASSERT_EQ(h.status, steps[i].status, what);
		ASSERT_EQ(tls_verify_cache_hits() - before, steps[i].hits, what);
		if (steps[i].reason[0])
			ASSERT_STRSTR(h.reason, steps[i].reason, what);
		hs_free(&h);
	}
out:
	for (int i = 0; i < 2; i++)
		tls_srv_free(g[i]);
}

/*
 * Read-ahead during the handshake only where no server{} of the listen group
 * can go tier K: a kTLS kernel and ssl_ktls auto or on anywhere in the group
 * (SNI may pick it after the ClientHello was read) turn it off.
 */
void test_tls_read_ahead_per_group(void)
{
	static const struct {
		bool kernel;
		enum gw_ktls a, b;
		int want;
	} cases[] = {
		{false, GW_KTLS_AUTO, GW_KTLS_ON, 1},  {true, GW_KTLS_OFF, GW_KTLS_OFF, 1},
		{true, GW_KTLS_OFF, GW_KTLS_AUTO, 0},  {true, GW_KTLS_ON, GW_KTLS_OFF, 0},
		{true, GW_KTLS_AUTO, GW_KTLS_AUTO, 0},
	};
	bool saved = ktls_kernel;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct tsrv t[2];
		struct tls_srv *g[2];
		char what[64];
		int sv[2];

		snprintf(what, sizeof(what), "case %zu", i);
		ktls_kernel = cases[i].kernel;
		tsrv_init(&t[0], "ca-root.pem");
		tsrv_init(&t[1], "ca-root.pem");
		t[0].s.ktls = cases[i].a;
		t[1].s.ktls = cases[i].b;
		g[0] = srv_new_ok(&t[0]);
		g[1] = srv_new_ok(&t[1]);
		if (g[0] && g[1] && ASSERT_OK(tls_srv_group(g, 2), what) &&
		    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), what)) {
			for (int k = 0; k < 2; k++) {
				SSL *ssl = tls_ssl_new(g[k], sv[0]);

				if (ASSERT_TRUE(ssl, what))
					ASSERT_EQ(SSL_get_read_ahead(ssl), cases[i].want, what);
				SSL_free(ssl);
			}
			close(sv[0]);
			close(sv[1]);
		}
		tls_srv_free(g[0]);
		tls_srv_free(g[1]);
	}
	ktls_kernel = saved;
}

/*
 * Session tickets with the process's ticket secret: two SSL_CTXs built from
 * the same server{} (two workers) derive the same keys, so a ticket of one
 * resumes on the other; a server{} with other verification (an allow-list,
 * or a CRL: the session id context has the store's CRLs) gets other keys and
 * resumes nothing of it. Without the secret each SSL_CTX has its own keys
 * (the ticket does not resume elsewhere: what workers did before).
 */
void test_tls_ticket_keys_shared(void)
{
	for (int with = 1; with >= 0; with--) {
		struct tsrv t[4];
		struct tls_srv *s[4] = {0};
		unsigned char k[4][80];
		struct hs h1, h2, h3;
		struct tcli cl = {.name = "client-good"};

		if (with && !ASSERT_OK(tls_ticket_secret_rotate(NULL), "secret"))
			return;
		for (int i = 0; i < 4; i++) {
			tsrv_init(&t[i], "ca-root.pem");
			t[i].s.session_cache = GW_SESS_CACHE_OFF; /* tickets only */
			t[i].s.session_tickets = true;
		}
		t[2].allows[0] = (struct gw_allow){GW_ALLOW_CN, "client-good"};
		t[2].s.nallows = 1;
		tsrv_crl(&t[3], "crl-root.pem");
		for (int i = 0; i < 4; i++) {
			s[i] = srv_new_ok(&t[i]);
			if (!s[i])
				goto out;
			ASSERT_EQ(SSL_CTX_get_tlsext_ticket_keys(tls_srv_ctx(s[i]), k[i], 80), 1,
				  "keys");
		}
		ASSERT_EQ(memcmp(k[0], k[1], 80) == 0, with, "same server{}: same keys");
		ASSERT_TRUE(memcmp(k[0], k[2], 80) != 0, "an allow-list: other keys");
		ASSERT_TRUE(memcmp(k[0], k[3], 80) != 0, "a CRL: other keys");
		for (int v = 0; v < 2; v++) {
			cl.max_version = v ? TLS1_3_VERSION : TLS1_2_VERSION;
			cl.resume = NULL;
			if (!ASSERT_OK(run_hs(s[0], &cl, &h1), "first"))
				goto out;
			ASSERT_FALSE(h1.reused, "fresh");
			cl.resume = h1.session;
			if (ASSERT_OK(run_hs(s[1], &cl, &h2), "on the other SSL_CTX")) {
				ASSERT_OK(h2.srv_rc, "handshake");
				ASSERT_EQ(h2.reused, with,
					  v ? "TLS 1.3 resumed" : "TLS 1.2 resumed");
				ASSERT_OK(h2.decision, "verified");
			}
			hs_free(&h2);
			for (int o = 2; o < 4; o++) {
				if (ASSERT_OK(run_hs(s[o], &cl, &h3), "on another server{}")) {
					ASSERT_OK(h3.srv_rc, "handshake");
					ASSERT_FALSE(h3.reused, "not resumed on another server{}");
				}
				hs_free(&h3);
			}
			hs_free(&h1);
		}
	out:
		for (int i = 0; i < 4; i++)
			tls_srv_free(s[i]);
		tls_ticket_secret_clear();
	}
}
