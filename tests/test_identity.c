// SPDX-License-Identifier: MIT
/*
 * Identity engine tests. Every certificate field is checked against the
 * openssl CLI run on the same generated files (an independent printer of the
 * same values nginx prints), or against expectations derived by hand from
 * nginx's rules. A real TLS handshake over a socketpair feeds
 * identity_from_ssl().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include "test.h"
#include "gw/identity.h"
#include "gw/proxy_proto.h"

/* Output of a shell command (trailing newlines dropped), malloc'd. */
static __printf(1, 2) char *sh(const char *fmt, ...)
{
	struct buf out = {0};
	char cmd[4096], chunk[4096];
	va_list ap;
	size_t n;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&out, chunk, n);
	pclose(f);
	while (out.len && out.data[out.len - 1] == '\n')
		out.len--;
	buf_append(&out, "", 0);
	return out.data ? out.data : strdup("");
}

/* "key=value" output of the CLI: the value. */
static char *cli_value(const char *opts, const char *file)
{
	char *s = sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s' -noout %s", file, opts);
	char *eq = s ? strchr(s, '=') : NULL;
	char *v;

	if (!eq)
		return s;
	v = strdup(eq + 1);
	free(s);
	return v;
}

/* CLI "AA:BB:..." fingerprint as nginx's lowercase hex without colons. */
static char *cli_fingerprint(const char *md, const char *file)
{
	char *s = cli_value(md, file), *d = s;

	for (char *p = s; *p; p++)
		if (*p != ':')
			*d++ = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
	*d = '\0';
	return s;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);

	return n >= m && strcmp(s + n - m, tail) == 0;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	struct buf b = {0};
	char chunk[4096];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_append(&b, "", 0);
	return b.data;
}

static X509 *load_cert(const char *name)
{
	FILE *f = fopen(test__cert(name), "r");
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* The certificates after the leaf in NAME.chain.crt: what the client sends. */
static STACK_OF(X509) * load_intermediates(const char *name)
{
	char file[256];
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *x;
	FILE *f;
	int i = 0;

	snprintf(file, sizeof(file), "%s.chain.crt", name);
	f = fopen(test__cert(file), "r");
	if (!f || !sk)
		return sk;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
		if (i++ == 0)
			X509_free(x);
		else
			sk_X509_push(sk, x);
	}
	ERR_clear_error();
	fclose(f);
	return sk;
}

/* Independent URL-component escaper for the expectations. */
static char *escape_expect(const char *s)
{
	static const char keep[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789-._~";
	char *out = malloc(3 * strlen(s) + 1), *d = out;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (strchr(keep, *p))
			*d++ = (char)*p;
		else
			d += sprintf(d, "%%%02X", *p);
	}
	*d = '\0';
	return out;
}

static char *b64_of_der(const char *file)
{
	return sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s' -outform DER | openssl base64 -A",
		  file);
}

static char *render1(struct gw_identity *id, int var)
{
	struct gw_var_ctx ctx = {.id = id};
	struct buf b = {0};

	if (identity_var_render(&ctx, var, &b))
		return NULL;
	buf_append(&b, "", 0);
	return b.data;
}

/* Compare one field with an expectation, freeing the expectation. */
static void expect(const char *actual, char *want, const char *what)
{
	ASSERT_STREQ(actual, want, what);
	free(want);
}

/* Everything the CLI can print for @name. */
static void check_against_cli(const char *name, struct gw_identity *id)
{
	char file[256], *raw, *want;
	const char *path;

	snprintf(file, sizeof(file), "%s.crt", name);
	path = test__cert(file);
	snprintf(file, sizeof(file), "%s", path);
	path = file;

	ASSERT_TRUE(id->has_cert, "has_cert");
	expect(id->s_dn, cli_value("-subject -nameopt RFC2253", path), "s_dn");
	expect(id->i_dn, cli_value("-issuer -nameopt RFC2253", path), "i_dn");
	expect(id->s_dn_legacy, cli_value("-subject -nameopt compat", path), "s_dn_legacy");
	expect(id->i_dn_legacy, cli_value("-issuer -nameopt compat", path), "i_dn_legacy");
	expect(id->serial, cli_value("-serial", path), "serial");
	expect(id->fp_sha1, cli_fingerprint("-fingerprint -sha1", path), "fingerprint sha1");
	expect(id->fp_sha256, cli_fingerprint("-fingerprint -sha256", path), "fingerprint sha256");
	expect(id->v_start, cli_value("-startdate", path), "v_start");
	expect(id->v_end, cli_value("-enddate", path), "v_end");

	/* raw PEM as the CLI writes it; the file is the same bytes (openssl ca -notext) */
	raw = sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s'", path);
	want = malloc(strlen(raw) + 2);
	sprintf(want, "%s\n", raw);
	free(raw);
	ASSERT_STREQ(id->raw_cert, want, "raw_cert");
	expect(id->raw_cert, read_file(path), "raw_cert = file");

	/* $ssl_client_cert: last LF dropped, TAB after every other LF (by hand) */
	{
		size_t n = strlen(want);
		char *c = malloc(2 * n + 1), *d = c;

		for (size_t i = 0; i + 1 < n; i++) {
			*d++ = want[i];
			if (want[i] == '\n')
				*d++ = '\t';
		}
		*d = '\0';
		ASSERT_STREQ(id->cert, c, "cert");
		free(c);
	}
	ASSERT_TRUE(strncmp(id->cert, "-----BEGIN CERTIFICATE-----\n\t", 29) == 0, "cert head");
	ASSERT_TRUE(ends_with(id->cert, "\n\t-----END CERTIFICATE-----"), "cert tail");
	ASSERT_TRUE(strncmp(id->escaped_cert, "-----BEGIN%20CERTIFICATE-----%0A", 32) == 0,
		    "escaped head");
	expect(id->escaped_cert, escape_expect(want), "escaped_cert");
	free(want);

	/* DER and RFC 9440 */
	{
		char *b64 = b64_of_der(path), *sf = malloc(strlen(b64) + 3);
		char *hex = sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s' -outform DER | "
			       "od -An -v -tx1 | tr -d ' \\n'",
			       path);
		char *dhex = malloc(2 * id->der_len + 1);

		sprintf(sf, ":%s:", b64);
		ASSERT_STREQ(id->rfc9440_cert, sf, "rfc9440_cert");
		for (size_t i = 0; i < id->der_len; i++)
			sprintf(dhex + 2 * i, "%02x", id->der[i]);
		dhex[2 * id->der_len] = '\0';
		ASSERT_STREQ(dhex, hex, "der");
		free(b64);
		free(sf);
		free(hex);
		free(dhex);
	}
	ASSERT_STREQ(id->verify, "SUCCESS", "verify");
	ASSERT_TRUE(id->not_after != (time_t)-1, "not_after parsed");
}

/* An identity from NAME.crt and the intermediates NAME.chain.crt sends, not filled. */
static int lazy_from_file(const char *name, long verify, struct gw_identity *id)
{
	char file[256];
	STACK_OF(X509) * chain;
	X509 *x;
	int ret;

	snprintf(file, sizeof(file), "%s.crt", name);
	x = load_cert(file);
	if (!x)
		return -ENOENT;
	chain = load_intermediates(name);
	ret = identity_from_x509(x, chain, verify, id);
	/* the identity holds its own references */
	sk_X509_pop_free(chain, X509_free);
	X509_free(x);
	return ret;
}

static int from_file(const char *name, struct gw_identity *id)
{
	/* every field computed, as the eager identity had them: read directly below */
	return lazy_from_file(name, X509_V_OK, id) ?: identity_fill(id);
}

void test_identity_client_good(void)
{
	struct gw_identity id;
	char *fp, *s, *esc, *want;

	if (!ASSERT_OK(from_file("client-good", &id), "from_x509"))
		return;
	check_against_cli("client-good", &id);
	ASSERT_STREQ(id.s_dn,
		     "emailAddress=good@client.test,CN=client-good,OU=clients,O=ktlsgw test,"
		     "L=San Francisco,ST=California,C=US",
		     "s_dn literal");
	ASSERT_STREQ(id.s_dn_legacy,
		     "/C=US/ST=California/L=San Francisco/O=ktlsgw test/OU=clients/CN=client-good/"
		     "emailAddress=good@client.test",
		     "s_dn_legacy literal");
	ASSERT_STREQ(id.i_dn, "CN=ktlsgw Test Root CA,O=ktlsgw test,C=US", "i_dn literal");
	ASSERT_STREQ(id.cn, "client-good", "cn");
	ASSERT_STREQ(id.san_dns, "good.client.test,alt.client.test", "san_dns");
	ASSERT_STREQ(id.san_uri, "https://client.test/id/1", "san_uri");
	ASSERT_STREQ(id.spiffe_id, "", "no spiffe id");
	ASSERT_STREQ(id.key_alg, "EC256", "key_alg");
	ASSERT_STREQ(id.sig_alg, "ecdsa-with-SHA256", "sig_alg");
	s = sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s' -noout -text | "
	       "grep -m1 'Signature Algorithm' | sed 's/.*: //'",
	       test__cert("client-good.crt"));
	ASSERT_STREQ(id.sig_alg, s, "sig_alg = CLI");
	free(s);
	s = cli_value("-ext subjectAltName", test__cert("client-good.crt"));
	ASSERT_STRSTR(s, "DNS:good.client.test, DNS:alt.client.test, URI:https://client.test/id/1",
		      "CLI SAN order");
	free(s);
	ASSERT_STREQ(id.rfc9440_chain, "", "no chain sent");
	ASSERT_STREQ(id.protocol, "", "no session: protocol");
	ASSERT_STREQ(id.group, "", "no session: group");

	/* XFCC, by hand from the pieces */
	fp = cli_fingerprint("-fingerprint -sha256", test__cert("client-good.crt"));
	esc = escape_expect(id.raw_cert);
	want = malloc(strlen(fp) + 2 * strlen(esc) + 1024);
	sprintf(want,
		"Hash=%s;Cert=\"%s\";Chain=\"%s\";Subject=\"emailAddress=good@client.test,"
		"CN=client-good,OU=clients,O=ktlsgw test,L=San Francisco,ST=California,C=US\";"
		"URI=https://client.test/id/1;DNS=good.client.test;DNS=alt.client.test",
		fp, esc, esc);
	ASSERT_STREQ(id.xfcc, want, "xfcc");
	free(fp);
	free(esc);
	free(want);
	identity_clear(&id);
}

void test_identity_client_utf8(void)
{
	struct gw_identity id;
	char *x, *p, *d;

	if (!ASSERT_OK(from_file("client-utf8", &id), "from_x509"))
		return;
	check_against_cli("client-utf8", &id);
	/* RFC 2253: UTF-8 as \XX, specials escaped, the multi-valued RDN joined by '+' */
	ASSERT_STREQ(id.s_dn,
		     "CN=J\\C3\\BCrgen \\\"JJ\\\" \\C3\\9Cnal \\<j=1\\>\\; xy,OU=Ops+OU=Dev,"
		     "O=M\\C3\\BCller & S\\C3\\B6hne\\, GmbH,C=DE",
		     "s_dn literal");
	ASSERT_STREQ(id.cn, "J\xc3\xbcrgen \"JJ\" \xc3\x9cnal <j=1>; xy", "cn utf-8");
	ASSERT_STREQ(id.san_dns, "", "no san");
	ASSERT_STREQ(id.san_uri, "", "no uri");
	/* XFCC Subject: '"' and '\' backslash-escaped; unescaping gives s_dn back */
	x = strstr(id.xfcc, ";Subject=\"");
	if (ASSERT_TRUE(x != NULL, "xfcc subject")) {
		char *un = malloc(strlen(x));

		d = un;
		for (p = x + 10; *p && *p != '"'; p++) {
			if (*p == '\\')
				p++;
			*d++ = *p;
		}
		*d = '\0';
		ASSERT_STREQ(un, id.s_dn, "xfcc subject unescaped");
		ASSERT_STREQ(p, "\"", "subject is the last key");
		free(un);
	}
	ASSERT_STRSTR(id.xfcc, "Subject=\"CN=J\\\\C3\\\\BCrgen \\\\\\\"JJ\\\\\\\" ", "escaped");
	identity_clear(&id);
}

void test_identity_client_spiffe(void)
{
	struct gw_identity id;
	char *fp, *want;

	if (!ASSERT_OK(from_file("client-spiffe", &id), "from_x509"))
		return;
	check_against_cli("client-spiffe", &id);
	ASSERT_STREQ(id.spiffe_id, "spiffe://example.org/ns/default/sa/web", "spiffe id");
	ASSERT_STREQ(id.san_uri, "spiffe://example.org/ns/default/sa/web", "san_uri");
	ASSERT_STREQ(id.san_dns, "", "san_dns");
	fp = cli_fingerprint("-fingerprint -sha256", test__cert("client-spiffe.crt"));
	want = malloc(strlen(fp) + 128);
	sprintf(want, "Hash=%s;Cert=\"", fp);
	ASSERT_TRUE(strncmp(id.xfcc, want, strlen(want)) == 0, "xfcc head");
	ASSERT_STRSTR(id.xfcc,
		      "\";Subject=\"CN=client-spiffe,O=ktlsgw test,C=US\";"
		      "URI=spiffe://example.org/ns/default/sa/web",
		      "xfcc tail");
	ASSERT_TRUE(!strstr(id.xfcc, "DNS="), "no DNS key");
	free(fp);
	free(want);
	identity_clear(&id);
}

void test_identity_client_rsa(void)
{
	struct gw_identity id;
	char *bits;

	if (!ASSERT_OK(from_file("client-rsa", &id), "from_x509"))
		return;
	check_against_cli("client-rsa", &id);
	bits = sh("OPENSSL_CONF=/dev/null openssl x509 -in '%s' -noout -text | "
		  "grep -o 'Public-Key: ([0-9]* bit)' | tr -dc 0-9",
		  test__cert("client-rsa.crt"));
	ASSERT_STREQ(bits, "2048", "CLI key size");
	ASSERT_STREQ(id.key_alg, "RSA2048", "key_alg");
	ASSERT_STREQ(id.cn, "client-rsa", "cn");
	ASSERT_TRUE(ends_with(id.xfcc, "\";Subject=\"CN=client-rsa,O=ktlsgw test,C=US\""),
		    "xfcc ends with subject");
	free(bits);
	identity_clear(&id);
}

void test_identity_client_int2_chain(void)
{
	struct gw_identity id;
	char *b2, *b1, *want, *chain_pem, *esc;

	if (!ASSERT_OK(from_file("client-int2", &id), "from_x509"))
		return;
	check_against_cli("client-int2", &id);
	ASSERT_STREQ(id.i_dn, "CN=ktlsgw Intermediate 2,O=ktlsgw test,C=US", "issuer");
	ASSERT_STREQ(id.i_dn_legacy, "/C=US/O=ktlsgw test/CN=ktlsgw Intermediate 2",
		     "issuer legacy");
	b2 = b64_of_der(test__cert("int2-ca.crt"));
	b1 = b64_of_der(test__cert("int1-ca.crt"));
	want = malloc(strlen(b1) + strlen(b2) + 16);
	sprintf(want, ":%s:, :%s:", b2, b1);
	ASSERT_STREQ(id.rfc9440_chain, want, "rfc9440_chain");
	/* XFCC Chain = leaf + what the client sent, i.e. the .chain.crt file */
	chain_pem = read_file(test__cert("client-int2.chain.crt"));
	esc = escape_expect(chain_pem);
	free(want);
	want = malloc(strlen(esc) + 16);
	sprintf(want, ";Chain=\"%s\";", esc);
	ASSERT_STRSTR(id.xfcc, want, "xfcc chain");
	free(b1);
	free(b2);
	free(want);
	free(chain_pem);
	free(esc);
	identity_clear(&id);
}

void test_identity_verify_and_none(void)
{
	struct gw_identity id;
	X509 *x = load_cert("client-expired.crt");
	char *v;

	if (!ASSERT_OK_PTR(x, "load"))
		return;
	ASSERT_OK(identity_from_x509(x, NULL, X509_V_ERR_CERT_HAS_EXPIRED, &id), "expired");
	ASSERT_OK(identity_fill(&id), "fill");
	ASSERT_STREQ(id.verify, "FAILED:certificate has expired", "verify failed");
	v = render1(&id, GW_VAR_SSL_CLIENT_V_REMAIN);
	ASSERT_STREQ(v, "0", "v_remain of an expired cert");
	free(v);
	identity_clear(&id);
	X509_free(x);

	ASSERT_OK(identity_from_x509(NULL, NULL, X509_V_OK, &id), "no cert");
	ASSERT_OK(identity_fill(&id), "fill");
	ASSERT_FALSE(id.has_cert, "has_cert");
	ASSERT_STREQ(id.verify, "NONE", "verify none");
	for (int var = 0; var < GW_VAR__COUNT; var++) {
		v = render1(&id, var);
		if (var == GW_VAR_SSL_CLIENT_VERIFY)
			ASSERT_STREQ(v, "NONE", "verify var");
		else if (var == GW_VAR_SSL_SESSION_REUSED)
			ASSERT_STREQ(v, ".", "reused var");
		else if (var == GW_VAR_SCHEME)
			ASSERT_STREQ(v, "https", "scheme");
		else
			ASSERT_STREQ(v, "", identity_var_name(var));
		free(v);
	}
	ASSERT_OK_PTR(id.cn, "cn not NULL");
	ASSERT_OK_PTR(id.sig_scheme, "sig_scheme not NULL");
	identity_clear(&id);
	identity_clear(&id); /* a zeroed struct is accepted */
}

void test_identity_v_remain(void)
{
	struct gw_identity id;
	char *end, *epoch, *v, want[32];
	long long days;

	if (!ASSERT_OK(from_file("client-good", &id), "from_x509"))
		return;
	end = cli_value("-enddate", test__cert("client-good.crt"));
	epoch = sh("date -u -d '%s' +%%s", end);
	days = (atoll(epoch) - (long long)time(NULL)) / 86400;
	snprintf(want, sizeof(want), "%lld", days);
	v = render1(&id, GW_VAR_SSL_CLIENT_V_REMAIN);
	ASSERT_STREQ(v, want, "v_remain");
	ASSERT_GE(days, 800, "about 825 days");
	free(v);
	free(end);
	free(epoch);
	identity_clear(&id);
}

void test_identity_addr_text_nginx(void)
{
	/* input, nginx's ngx_inet6_ntop text (worked out by hand from its rules) */
	static const char *const cases[][2] = {
		{"::1", "::1"},
		{"::", "::"},
		{"2001:db8::1", "2001:db8::1"},
		{"2001:DB8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, /* one zero: kept */
		{"1:0:0:2:0:0:0:3", "1:0:0:2::3"},		  /* the longest run */
		{"1:0:0:2:3:0:0:4", "1::2:3:0:0:4"},		  /* first of equals */
		{"::ffff:1.2.3.4", "::ffff:1.2.3.4"},
		{"::102:304", "::1.2.3.4"},
		{"fe80::1:2", "fe80::1:2"},
		{"1::", "1::"},
		{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
	};
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	char text[128];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		test__sa6(&s6, cases[i][0], 1);
		identity_addr_text((struct sockaddr *)&s6, text, sizeof(text));
		ASSERT_STREQ(text, cases[i][1], cases[i][0]);
	}
	test__sa4(&s4, "10.20.30.40", 5);
	ASSERT_EQ(identity_addr_text((struct sockaddr *)&s4, text, sizeof(text)), 11, "len");
	ASSERT_STREQ(text, "10.20.30.40", "v4");
	ASSERT_EQ(identity_addr_port((struct sockaddr *)&s4), 5, "port");
}

void test_identity_render_template(void)
{
	struct gw_identity id;
	struct sockaddr_in6 peer, local;
	struct gw_var_ctx ctx = {0};
	struct gw_tmpl t;
	struct buf out = {0};
	char *err = NULL, want[1024];

	if (!ASSERT_OK(from_file("client-good", &id), "from_x509"))
		return;
	test__sa6(&peer, "2001:db8::7", 50123);
	test__sa6(&local, "::1", 8443);
	ctx.id = &id;
	ctx.peer = (struct sockaddr *)&peer;
	ctx.local = (struct sockaddr *)&local;
	ctx.xff = "10.0.0.1, 10.0.0.2";
	ctx.host = "Service.Domain.COM.:8443";
	ctx.server_name = "service.domain.com";
	if (!ASSERT_OK(tmpl_compile(
			       "$remote_addr:$remote_port>$server_addr:${server_port} "
			       "[$ssl_client_s_dn] $ssl_client_verify "
			       "$ssl_session_reused/$scheme://$host xff=$proxy_add_x_forwarded_for "
			       "fp=$ssl_client_fingerprint",
			       &t, &err),
		       "compile"))
		goto out;
	ASSERT_OK(tmpl_render(&t, &ctx, &out), "render");
	snprintf(want, sizeof(want),
		 "2001:db8::7:50123>::1:8443 [%s] SUCCESS ./https://service.domain.com "
		 "xff=10.0.0.1, 10.0.0.2, 2001:db8::7 fp=%s",
		 id.s_dn, id.fp_sha1);
	buf_append(&out, "", 0);
	ASSERT_STREQ(out.data, want, "rendered");

	/* no Host: the server_name; no X-Forwarded-For: only remote_addr */
	buf_reset(&out);
	ctx.host = NULL;
	ctx.xff = NULL;
	ASSERT_OK(identity_var_render(&ctx, GW_VAR_HOST, &out), "host");
	ASSERT_OK(identity_var_render(&ctx, GW_VAR_PROXY_ADD_X_FORWARDED_FOR, &out), "xff");
	buf_append(&out, "", 0);
	ASSERT_STREQ(out.data, "service.domain.com2001:db8::7", "fallbacks");
	buf_reset(&out);
	ctx.host = "[::1]:443";
	ASSERT_OK(identity_var_render(&ctx, GW_VAR_HOST, &out), "host v6");
	buf_append(&out, "", 0);
	ASSERT_STREQ(out.data, "[::1]", "host v6 literal");
	tmpl_free(&t);
out:
	buf_free(&out);
	identity_clear(&id);
}

void test_identity_escape_table(void)
{
	struct buf b = {0};
	unsigned char all[257];
	char *want;

	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	all[256] = 0;
	ASSERT_OK(identity_escape_uri_component(all + 1, 255, &b), "escape");
	want = escape_expect((char *)all + 1);
	buf_append(&b, "", 0);
	ASSERT_STREQ(b.data, want, "every byte");
	ASSERT_STRSTR(b.data, "%2B%2C-.%2F0", "+ , - . / 0");
	ASSERT_STRSTR(b.data, "Z%5B%5C%5D%5E_%60a", "Z [ \\ ] ^ _ ` a");
	ASSERT_STRSTR(b.data, "z%7B%7C%7D~%7F%80", "z { | } ~ DEL");
	free(want);
	buf_free(&b);
}

/* ---- a real handshake over a socketpair ---- */

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx)
		return NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, test__cert("server.crt")) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, test__cert("server.key"), SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, test__cert("ca-root.pem"), NULL) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"test", 4);
	return ctx;
}

static SSL_CTX *client_ctx(const char *name, int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char crt[256], key[256];

	if (!ctx)
		return NULL;
	snprintf(crt, sizeof(crt), "%s", test__cert(name));
	strcat(crt, ".chain.crt");
	snprintf(key, sizeof(key), "%s", test__cert(name));
	strcat(key, ".key");
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, test__cert("ca-root.pem"), NULL) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* send exactly NAME.chain.crt, not a chain completed from the trust store */
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	if (max_version)
		SSL_CTX_set_max_proto_version(ctx, max_version);
	return ctx;
}

struct hs {
	SSL *c, *s;
	int fd[2];
};

/* Drive both ends to the end of the handshake; the client then reads one byte. */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *sess, struct hs *h)
{
	bool cdone = false, sdone = false;
	char byte;

	memset(h, 0, sizeof(*h));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, h->fd))
		return -errno;
	fcntl(h->fd[0], F_SETFL, O_NONBLOCK);
	fcntl(h->fd[1], F_SETFL, O_NONBLOCK);
	h->c = SSL_new(cctx);
	h->s = SSL_new(sctx);
	SSL_set_fd(h->c, h->fd[0]);
	SSL_set_fd(h->s, h->fd[1]);
	SSL_set_connect_state(h->c);
	SSL_set_accept_state(h->s);
	SSL_set_tlsext_host_name(h->c, "localhost");
	if (sess)
		SSL_set_session(h->c, sess);
	for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
		int r;

		if (!cdone) {
			r = SSL_do_handshake(h->c);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(h->c, r) != SSL_ERROR_WANT_READ)
				goto fail;
		}
		if (!sdone) {
			r = SSL_do_handshake(h->s);
			if (r == 1)
				sdone = true;
			else if (SSL_get_error(h->s, r) != SSL_ERROR_WANT_READ)
				goto fail;
		}
	}
	if (!(cdone && sdone))
		return -ETIMEDOUT;
	/* let the client take the TLS 1.3 tickets */
	if (SSL_write(h->s, "x", 1) != 1)
		return -EPROTO;
	for (int i = 0; i < 1000; i++)
		if (SSL_read(h->c, &byte, 1) == 1)
			return 0;
	return -ETIMEDOUT;
fail:
	ERR_print_errors_fp(stderr);
	return -EPROTO;
}

static void hs_free(struct hs *h)
{
	/* a clean close: OpenSSL marks a session freed without one not resumable */
	SSL_shutdown(h->c);
	SSL_shutdown(h->s);
	SSL_free(h->c);
	SSL_free(h->s);
	close(h->fd[0]);
	close(h->fd[1]);
}

void test_identity_from_ssl_handshake(void)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("client-good", 0);
	struct gw_identity id = {0}, cid = {0};
	SSL_SESSION *sess = NULL;
	struct hs h;

	if (!ASSERT_OK_PTR(sctx, "server ctx") || !ASSERT_OK_PTR(cctx, "client ctx"))
		goto out;
	if (!ASSERT_OK(handshake(cctx, sctx, NULL, &h), "handshake"))
		goto out;
	if (!ASSERT_OK(identity_from_ssl(h.s, &id), "identity_from_ssl") ||
	    !ASSERT_OK(identity_fill(&id), "fill"))
		goto out_hs;
	ASSERT_TRUE(id.has_cert, "has_cert");
	ASSERT_STREQ(id.verify, "SUCCESS", "verify");
	ASSERT_STREQ(id.protocol, "TLSv1.3", "protocol");
	ASSERT_STREQ(id.cipher, SSL_get_cipher_name(h.c), "cipher = client's view");
	ASSERT_STREQ(id.server_name, "localhost", "sni");
	ASSERT_FALSE(id.reused, "reused");
	ASSERT_STREQ(id.group, "x25519", "group (OpenSSL's default first)");
	ASSERT_STREQ(id.sig_scheme, "ecdsa_secp256r1_sha256", "sig_scheme");
	ASSERT_STREQ(id.cn, "client-good", "cn");
	ASSERT_STREQ(id.rfc9440_chain, "", "client sent no intermediates");
	/* the cert part equals the file-based parse */
	if (ASSERT_OK(from_file("client-good", &cid), "file")) {
		ASSERT_STREQ(id.raw_cert, cid.raw_cert, "same raw cert");
		ASSERT_STREQ(id.xfcc, cid.xfcc, "same xfcc");
		ASSERT_STREQ(id.s_dn, cid.s_dn, "same dn");
	}
	sess = SSL_get1_session(h.c);
	ASSERT_TRUE(sess && SSL_SESSION_is_resumable(sess), "resumable session");
	identity_clear(&id);
	identity_clear(&cid);
	hs_free(&h);

	/* a resumption: the session's cert, no CertificateVerify this time */
	if (!ASSERT_OK(handshake(cctx, sctx, sess, &h), "resumed handshake"))
		goto out;
	if (ASSERT_OK(identity_from_ssl(h.s, &id), "identity_from_ssl resumed") &&
	    ASSERT_OK(identity_fill(&id), "fill")) {
		ASSERT_TRUE(id.reused, "reused");
		ASSERT_TRUE(id.has_cert, "cert from the session");
		ASSERT_STREQ(id.verify, "SUCCESS", "verify from the session");
		ASSERT_STREQ(id.cn, "client-good", "cn");
		ASSERT_STREQ(id.sig_scheme, "", "no client signature");
		identity_clear(&id);
	}
out_hs:
	hs_free(&h);
out:
	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

void test_identity_from_ssl_rsa_chain(void)
{
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx("client-rsa", TLS1_2_VERSION);
	SSL_CTX *cctx2 = client_ctx("client-int2", 0);
	struct gw_identity id = {0}, fid = {0};
	struct hs h;

	if (!ASSERT_OK_PTR(sctx, "server ctx") || !ASSERT_OK_PTR(cctx, "client ctx") ||
	    !ASSERT_OK_PTR(cctx2, "client ctx 2"))
		goto out;
	if (ASSERT_OK(handshake(cctx, sctx, NULL, &h), "handshake rsa 1.2")) {
		if (ASSERT_OK(identity_from_ssl(h.s, &id), "identity") &&
		    ASSERT_OK(identity_fill(&id), "fill")) {
			ASSERT_STREQ(id.protocol, "TLSv1.2", "protocol");
			ASSERT_STREQ(id.key_alg, "RSA2048", "key_alg");
			ASSERT_STREQ(id.sig_scheme, "rsa_pss_rsae_sha256", "sig_scheme");
			ASSERT_STREQ(id.group, "x25519", "group");
			ASSERT_STREQ(id.cipher, SSL_get_cipher_name(h.c), "cipher");
			identity_clear(&id);
		}
		hs_free(&h);
	}
	if (ASSERT_OK(handshake(cctx2, sctx, NULL, &h), "handshake int2")) {
		if (ASSERT_OK(identity_from_ssl(h.s, &id), "identity") &&
		    ASSERT_OK(identity_fill(&id), "fill") &&
		    ASSERT_OK(from_file("client-int2", &fid), "file")) {
			ASSERT_STREQ(id.verify, "SUCCESS", "verified through int2, int1");
			ASSERT_STREQ(id.rfc9440_chain, fid.rfc9440_chain, "chain as sent");
			ASSERT_STREQ(id.xfcc, fid.xfcc, "xfcc with chain");
			ASSERT_STRSTR(id.rfc9440_chain, ":, :", "two entries");
		}
		identity_clear(&id);
		identity_clear(&fid);
		hs_free(&h);
	}
out:
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	SSL_CTX_free(cctx2);
}

/* ---- lazy identity: nothing derived until asked, the same values in any order ---- */

/* The cache field of @which, by name (independent of identity.c's own table). */
static char **lazy_field(struct gw_identity *id, int which)
{
	char **f[GW_ID__COUNT] = {
		[GW_ID_VERIFY] = &id->verify,
		[GW_ID_RAW_CERT] = &id->raw_cert,
		[GW_ID_CERT] = &id->cert,
		[GW_ID_ESCAPED_CERT] = &id->escaped_cert,
		[GW_ID_S_DN] = &id->s_dn,
		[GW_ID_S_DN_LEGACY] = &id->s_dn_legacy,
		[GW_ID_I_DN] = &id->i_dn,
		[GW_ID_I_DN_LEGACY] = &id->i_dn_legacy,
		[GW_ID_SERIAL] = &id->serial,
		[GW_ID_FP_SHA1] = &id->fp_sha1,
		[GW_ID_FP_SHA256] = &id->fp_sha256,
		[GW_ID_V_START] = &id->v_start,
		[GW_ID_V_END] = &id->v_end,
		[GW_ID_CN] = &id->cn,
		[GW_ID_SAN_DNS] = &id->san_dns,
		[GW_ID_SAN_URI] = &id->san_uri,
		[GW_ID_SPIFFE_ID] = &id->spiffe_id,
		[GW_ID_XFCC] = &id->xfcc,
		[GW_ID_RFC9440_CERT] = &id->rfc9440_cert,
		[GW_ID_RFC9440_CHAIN] = &id->rfc9440_chain,
		[GW_ID_SIG_ALG] = &id->sig_alg,
		[GW_ID_KEY_ALG] = &id->key_alg,
	};

	return f[which];
}

/* Bit i set iff lazy field i is computed; the DER counts as bit GW_ID__COUNT. */
static unsigned long computed(struct gw_identity *id)
{
	unsigned long m = 0;

	for (int i = 0; i < GW_ID__COUNT; i++)
		if (*lazy_field(id, i))
			m |= 1UL << i;
	if (id->der)
		m |= 1UL << GW_ID__COUNT;
	return m;
}

/* The lazy field a certificate variable is cached in, -1 for the others. */
static int field_of_var(int var)
{
	static const int map[][2] = {
		{GW_VAR_SSL_CLIENT_CERT, GW_ID_CERT},
		{GW_VAR_SSL_CLIENT_RAW_CERT, GW_ID_RAW_CERT},
		{GW_VAR_SSL_CLIENT_ESCAPED_CERT, GW_ID_ESCAPED_CERT},
		{GW_VAR_SSL_CLIENT_S_DN, GW_ID_S_DN},
		{GW_VAR_SSL_CLIENT_S_DN_LEGACY, GW_ID_S_DN_LEGACY},
		{GW_VAR_SSL_CLIENT_I_DN, GW_ID_I_DN},
		{GW_VAR_SSL_CLIENT_I_DN_LEGACY, GW_ID_I_DN_LEGACY},
		{GW_VAR_SSL_CLIENT_SERIAL, GW_ID_SERIAL},
		{GW_VAR_SSL_CLIENT_FINGERPRINT, GW_ID_FP_SHA1},
		{GW_VAR_SSL_CLIENT_VERIFY, GW_ID_VERIFY},
		{GW_VAR_SSL_CLIENT_V_START, GW_ID_V_START},
		{GW_VAR_SSL_CLIENT_V_END, GW_ID_V_END},
		{GW_VAR_SSL_CLIENT_FINGERPRINT_SHA256, GW_ID_FP_SHA256},
		{GW_VAR_SSL_CLIENT_SAN_DNS, GW_ID_SAN_DNS},
		{GW_VAR_SSL_CLIENT_SAN_URI, GW_ID_SAN_URI},
		{GW_VAR_SSL_CLIENT_SPIFFE_ID, GW_ID_SPIFFE_ID},
		{GW_VAR_SSL_CLIENT_XFCC, GW_ID_XFCC},
		{GW_VAR_SSL_CLIENT_CERT_RFC9440, GW_ID_RFC9440_CERT},
		{GW_VAR_SSL_CLIENT_CHAIN_RFC9440, GW_ID_RFC9440_CHAIN},
	};

	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (map[i][0] == var)
			return map[i][1];
	return -1;
}

static const char *const lazy_certs[] = {
	"client-good", "client-int1", "client-int2",   "client-rsa",
	"client-utf8", "client-self", "client-spiffe", "client-expired",
};

void test_identity_lazy_nothing_until_asked(void)
{
	struct gw_identity id;
	const unsigned char *der;
	char *v;
	size_t len;

	if (!ASSERT_OK(lazy_from_file("client-int2", X509_V_OK, &id), "from_x509"))
		return;
	ASSERT_TRUE(id.has_cert && id.x509, "the certificate is referenced");
	ASSERT_EQ(id.chain ? sk_X509_num(id.chain) : 0, 2, "both intermediates referenced");
	ASSERT_EQ(computed(&id), 0, "nothing derived after identity_from_x509");

	/* $ssl_client_s_dn: the subject DN, nothing else (no fingerprint, no PEM) */
	v = render1(&id, GW_VAR_SSL_CLIENT_S_DN);
	ASSERT_STRSTR(v, "CN=client-int2", "s_dn");
	free(v);
	ASSERT_EQ(computed(&id), 1UL << GW_ID_S_DN, "only s_dn");

	/* $ssl_client_verify */
	v = render1(&id, GW_VAR_SSL_CLIENT_VERIFY);
	ASSERT_STREQ(v, "SUCCESS", "verify");
	free(v);
	ASSERT_EQ(computed(&id), 1UL << GW_ID_S_DN | 1UL << GW_ID_VERIFY, "s_dn, verify");

	/* $ssl_client_escaped_cert: the PEM it is made of is not kept */
	v = render1(&id, GW_VAR_SSL_CLIENT_ESCAPED_CERT);
	ASSERT_STRSTR(v, "-----BEGIN%20CERTIFICATE-----%0A", "escaped");
	free(v);
	ASSERT_EQ(computed(&id),
		  1UL << GW_ID_S_DN | 1UL << GW_ID_VERIFY | 1UL << GW_ID_ESCAPED_CERT,
		  "escaped cert, not raw");

	/* a second rendering uses the cache: the same pointer */
	v = (char *)id.escaped_cert;
	ASSERT_TRUE(identity_str(&id, GW_ID_ESCAPED_CERT) == v, "cached");
	ASSERT_TRUE(identity_der(&id, &der, &len) == 0 && der && len > 0, "der");
	ASSERT_TRUE(id.der == der, "der cached");
	identity_clear(&id);
	ASSERT_EQ(computed(&id), 0, "cleared");
	ASSERT_TRUE(!id.x509 && !id.chain, "references dropped");

	/* no certificate: every field is "" without an allocation */
	ASSERT_OK(identity_from_x509(NULL, NULL, X509_V_OK, &id), "no cert");
	for (int i = 0; i < GW_ID__COUNT; i++) {
		const char *s = identity_str(&id, (enum gw_id_str)i);

		ASSERT_STREQ(s, i == GW_ID_VERIFY ? "NONE" : "", "no cert field");
	}
	identity_clear(&id);
}

/*
 * Every variable rendered alone on a fresh identity (only its field gets
 * computed) equals the value of the filled identity, over several certs;
 * and rendering all of them in reverse order on one identity (dependencies
 * already cached: raw PEM, SHA-256, s_dn before xfcc ...) gives the same.
 */
void test_identity_lazy_equals_filled(void)
{
	for (size_t c = 0; c < ARRAY_SIZE(lazy_certs); c++) {
		const char *name = lazy_certs[c];
		long verify = strcmp(name, "client-expired") == 0 ? X509_V_ERR_CERT_HAS_EXPIRED
								  : X509_V_OK;
		struct gw_identity full, one, rev;
		char *want[GW_VAR__COUNT] = {0}, what[128];

		if (!ASSERT_OK(lazy_from_file(name, verify, &full), name))
			continue;
		if (!ASSERT_OK(identity_fill(&full), "fill")) {
			identity_clear(&full);
			continue;
		}
		for (int var = 0; var < GW_VAR__COUNT; var++)
			want[var] = render1(&full, var);

		for (int var = 0; var < GW_VAR__COUNT; var++) {
			int f = field_of_var(var);
			char *v;

			snprintf(what, sizeof(what), "%s $%s alone", name, identity_var_name(var));
			if (!ASSERT_OK(lazy_from_file(name, verify, &one), what))
				continue;
			v = render1(&one, var);
			ASSERT_STREQ(v, want[var], what);
			ASSERT_EQ(computed(&one), f < 0 ? 0 : 1UL << f, what);
			free(v);
			identity_clear(&one);
		}

		if (ASSERT_OK(lazy_from_file(name, verify, &rev), "reverse")) {
			for (int var = GW_VAR__COUNT - 1; var >= 0; var--) {
				char *v = render1(&rev, var);

				snprintf(what, sizeof(what), "%s $%s reverse", name,
					 identity_var_name(var));
				ASSERT_STREQ(v, want[var], what);
				free(v);
			}
			/* and a second time, from the cache */
			for (int var = 0; var < GW_VAR__COUNT; var++) {
				char *v = render1(&rev, var);

				snprintf(what, sizeof(what), "%s $%s cached", name,
					 identity_var_name(var));
				ASSERT_STREQ(v, want[var], what);
				free(v);
			}
			identity_clear(&rev);
		}
		for (int var = 0; var < GW_VAR__COUNT; var++)
			free(want[var]);
		identity_clear(&full);
	}
}

/*
 * The identity outlives its SSL: render every variable after SSL_free() and
 * SSL_CTX_free() (the certificate and chain are held by reference, the
 * session strings are static or copied). Under ASan a dangling pointer fails.
 */
void test_identity_lazy_outlives_ssl(void)
{
	static const char *const names[] = {"client-int2", "client-good"};

	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		SSL_CTX *sctx = server_ctx(), *cctx = client_ctx(names[n], 0);
		struct gw_identity id = {0}, fid = {0};
		char cipher[128] = "", what[128];
		struct hs h;
		bool ok;

		if (!ASSERT_OK_PTR(sctx, "server ctx") || !ASSERT_OK_PTR(cctx, "client ctx")) {
			SSL_CTX_free(sctx);
			SSL_CTX_free(cctx);
			continue;
		}
		ok = ASSERT_OK(handshake(cctx, sctx, NULL, &h), "handshake");
		if (ok) {
			snprintf(cipher, sizeof(cipher), "%s", SSL_get_cipher_name(h.c));
			ok = ASSERT_OK(identity_from_ssl(h.s, &id), "identity_from_ssl");
			ASSERT_EQ(computed(&id), 0, "nothing derived at the end of the handshake");
			hs_free(&h);
		}
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
		if (!ok)
			continue;
		if (!ASSERT_OK(lazy_from_file(names[n], X509_V_OK, &fid), "file") ||
		    !ASSERT_OK(identity_fill(&fid), "fill")) {
			identity_clear(&id);
			identity_clear(&fid);
			continue;
		}
		for (int var = 0; var < GW_VAR__COUNT; var++) {
			char *v = render1(&id, var), *w = render1(&fid, var);

			snprintf(what, sizeof(what), "%s $%s after SSL_free", names[n],
				 identity_var_name(var));
			if (var == GW_VAR_SSL_PROTOCOL)
				ASSERT_STREQ(v, "TLSv1.3", what);
			else if (var == GW_VAR_SSL_CIPHER)
				ASSERT_STREQ(v, cipher, what);
			else if (var == GW_VAR_SSL_SERVER_NAME)
				ASSERT_STREQ(v, "localhost", what);
			else
				ASSERT_STREQ(v, w, what); /* the file's identity has no session */
			free(v);
			free(w);
		}
		ASSERT_STREQ(id.group, "x25519", "group after SSL_CTX_free");
		ASSERT_STREQ(id.sig_scheme, "ecdsa_secp256r1_sha256", "sig_scheme");
		identity_clear(&id);
		identity_clear(&fid);
	}
}

/* PROXY v2 computes only what its TLVs carry: CN, sig and key algorithms, the DER. */
void test_identity_lazy_pp2(void)
{
	struct sockaddr_in src, dst;
	struct gw_identity id, full;
	struct buf b = {0}, fb = {0};

	test__sa4(&src, "1.2.3.4", 5678);
	test__sa4(&dst, "5.6.7.8", 443);
	if (!ASSERT_OK(lazy_from_file("client-rsa", X509_V_OK, &id), "lazy"))
		return;
	if (ASSERT_OK(lazy_from_file("client-rsa", X509_V_OK, &full), "full")) {
		ASSERT_OK(identity_fill(&full), "fill");
		ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, false,
				     &b),
			  "encode without cert");
		ASSERT_EQ(computed(&id),
			  1UL << GW_ID_CN | 1UL << GW_ID_SIG_ALG | 1UL << GW_ID_KEY_ALG,
			  "cn, sig_alg, key_alg");
		buf_reset(&b);
		ASSERT_OK(
			pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
			"encode with cert");
		ASSERT_EQ(computed(&id),
			  1UL << GW_ID_CN | 1UL << GW_ID_SIG_ALG | 1UL << GW_ID_KEY_ALG |
				  1UL << GW_ID__COUNT,
			  "and the DER");
		ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &full, true,
				     &fb),
			  "encode filled");
		if (ASSERT_EQ(b.len, fb.len, "same length"))
			ASSERT_MEMEQ(b.data, fb.data, b.len, "same bytes as the filled identity");
		identity_clear(&full);
	}
	identity_clear(&id);
	buf_free(&b);
	buf_free(&fb);
}
