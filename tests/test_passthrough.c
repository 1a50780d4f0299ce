// SPDX-License-Identifier: MIT
/*
 * The ClientHello peek parser on real ClientHellos made by OpenSSL (SNI,
 * ALPN), cut at every length (a ClientHello split across segments), split
 * across TLS records, truncated, and garbage; and the route choice (exact
 * names, "*.suffix" wildcards).
 */
#include <errno.h>
#include <stdlib.h>
#include <openssl/ssl.h>
#include "gw/passthrough.h"
#include "test.h"

/* The first flight of an OpenSSL client with @sni and @alpn (wire format) into @out. */
static int client_hello(const char *sni, const unsigned char *alpn, unsigned int alpn_len,
			unsigned char *out, size_t size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	int n = -1;

	if (!ssl || !rb || !wb)
		goto out;
	SSL_set_bio(ssl, rb, wb);
	rb = wb = NULL;
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	if (alpn)
		SSL_set_alpn_protos(ssl, alpn, alpn_len);
	SSL_set_connect_state(ssl);
	SSL_do_handshake(ssl);
	n = BIO_read(SSL_get_wbio(ssl), out, (int)size);
out:
	BIO_free(rb);
	BIO_free(wb);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n;
}

static const unsigned char h2_h11[] = "\x02h2\x08http/1.1";

void test_passthrough_hello_sni_alpn(void)
{
	unsigned char ch[4096];
	struct pt_hello h;
	int n = client_hello("Pass.Example.COM", h2_h11, sizeof(h2_h11) - 1, ch, sizeof(ch));

	if (!ASSERT_GE(n, 100, "ClientHello"))
		return;
	if (!ASSERT_OK(passthrough_parse_hello(ch, (size_t)n, &h), "parse"))
		return;
	ASSERT_TRUE(h.has_sni, "has sni");
	ASSERT_STREQ(h.sni, "pass.example.com", "sni lowercased");
	ASSERT_STREQ(h.alpn, "h2,http/1.1", "alpn");
	ASSERT_EQ(h.len, n, "record bytes");
	/* every shorter prefix asks for more: a ClientHello split across segments */
	for (int cut = 0; cut < n; cut++) {
		int err = passthrough_parse_hello(ch, (size_t)cut, &h);

		if (!ASSERT_EQ(err, -EAGAIN, "prefix needs more")) {
			fprintf(stderr, "      cut at %d of %d\n", cut, n);
			break;
		}
	}
}

void test_passthrough_hello_no_sni(void)
{
	unsigned char ch[4096];
	struct pt_hello h;
	int n = client_hello(NULL, NULL, 0, ch, sizeof(ch));

	if (!ASSERT_GE(n, 100, "ClientHello"))
		return;
	ASSERT_OK(passthrough_parse_hello(ch, (size_t)n, &h), "parse");
	ASSERT_FALSE(h.has_sni, "no sni");
	ASSERT_STREQ(h.sni, "", "empty sni");
	ASSERT_STREQ(h.alpn, "", "no alpn");
}

/* Re-frame the handshake message of @ch (one record) into records of @first, then the rest. */
static size_t split_records(const unsigned char *ch, size_t n, size_t first, unsigned char *out)
{
	const unsigned char *msg = ch + 5;
	size_t mlen = n - 5, o = 0, done = 0;

	while (done < mlen) {
		size_t take = done == 0 ? first : mlen - done;

		memcpy(out + o, ch, 3);
		out[o + 3] = (unsigned char)(take >> 8);
		out[o + 4] = (unsigned char)take;
		memcpy(out + o + 5, msg + done, take);
		o += 5 + take;
		done += take;
	}
	return o;
}

void test_passthrough_hello_split_records(void)
{
	unsigned char ch[4096], two[4200];
	struct pt_hello h;
	int n = client_hello("split.example", h2_h11, sizeof(h2_h11) - 1, ch, sizeof(ch));

	if (!ASSERT_GE(n, 100, "ClientHello"))
		return;
	for (size_t first = 1; first < (size_t)n - 5; first += 37) {
		size_t m = split_records(ch, (size_t)n, first, two);

		if (!ASSERT_OK(passthrough_parse_hello(two, m, &h), "two records") ||
		    !ASSERT_STREQ(h.sni, "split.example", "sni across records"))
			break;
		ASSERT_EQ(h.len, m, "both records counted");
		/* cut inside the second record */
		ASSERT_EQ(passthrough_parse_hello(two, m - 1, &h), -EAGAIN, "second record cut");
	}
}

void test_passthrough_hello_garbage(void)
{
	unsigned char ch[4096], bad[4096];
	struct pt_hello h;
	int n = client_hello("x.example", NULL, 0, ch, sizeof(ch));

	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"GET / HTTP/1.1\r\n", 16, &h),
		  -EINVAL, "http");
	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"G", 1, &h), -EINVAL,
		  "one byte of http");
	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"\x16\x07", 2, &h), -EINVAL,
		  "bad record version");
	/* an alert record */
	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"\x15\x03\x01\x00\x02\x02\x28", 7,
					  &h),
		  -EINVAL, "alert");
	/* a ServerHello-type handshake */
	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"\x16\x03\x01\x00\x04\x02\x00\x00"
								 "\x00",
					  9, &h),
		  -EINVAL, "not a client_hello");
	/* a handshake message longer than the peek bound */
	ASSERT_EQ(passthrough_parse_hello((const unsigned char *)"\x16\x03\x01\x00\x04\x01\x01\x00"
								 "\x00",
					  9, &h),
		  -E2BIG, "too large");
	if (!ASSERT_GE(n, 100, "ClientHello"))
		return;
	/* an empty record */
	memcpy(bad, ch, (size_t)n);
	bad[3] = bad[4] = 0;
	ASSERT_EQ(passthrough_parse_hello(bad, (size_t)n, &h), -EINVAL, "empty record");
	/* the handshake length shorter than its content: the extensions overrun */
	memcpy(bad, ch, (size_t)n);
	bad[8] = (unsigned char)(bad[8] - 10);
	ASSERT_EQ(passthrough_parse_hello(bad, (size_t)n, &h), -EINVAL, "inner length");
	/* every single-byte corruption gives a result, never a crash (ASan run) */
	for (int i = 0; i < n; i++) {
		memcpy(bad, ch, (size_t)n);
		bad[i] ^= 0xa5;
		(void)passthrough_parse_hello(bad, (size_t)n, &h);
	}
}

/* A handcrafted ClientHello with the SNI bytes @name. */
static size_t hello_with_sni(const char *name, size_t nlen, unsigned char *out)
{
	unsigned char body[512];
	size_t o = 0, ext_at, sni_len = nlen + 5;

	body[o++] = 3;
	body[o++] = 3;
	memset(body + o, 0x11, 32);
	o += 32;
	body[o++] = 0;				 /* session id */
	memcpy(body + o, "\x00\x02\x13\x01", 4); /* one suite */
	o += 4;
	memcpy(body + o, "\x01\x00", 2); /* null compression */
	o += 2;
	ext_at = o;
	o += 2;
	body[o++] = 0;
	body[o++] = 0; /* server_name */
	body[o++] = (unsigned char)(sni_len >> 8);
	body[o++] = (unsigned char)sni_len;
	body[o++] = (unsigned char)((nlen + 3) >> 8);
	body[o++] = (unsigned char)(nlen + 3);
	body[o++] = 0; /* host_name */
	body[o++] = (unsigned char)(nlen >> 8);
	body[o++] = (unsigned char)nlen;
	memcpy(body + o, name, nlen);
	o += nlen;
	body[ext_at] = (unsigned char)((o - ext_at - 2) >> 8);
	body[ext_at + 1] = (unsigned char)(o - ext_at - 2);
	memcpy(out, "\x16\x03\x01", 3);
	out[3] = (unsigned char)((o + 4) >> 8);
	out[4] = (unsigned char)(o + 4);
	out[5] = 1;
	out[6] = 0;
	out[7] = (unsigned char)(o >> 8);
	out[8] = (unsigned char)o;
	memcpy(out + 9, body, o);
	return o + 9;
}

void test_passthrough_hello_bad_sni(void)
{
	unsigned char ch[600];
	struct pt_hello h;
	size_t n;

	n = hello_with_sni("ok.example.", 11, ch);
	if (ASSERT_OK(passthrough_parse_hello(ch, n, &h), "trailing dot"))
		ASSERT_STREQ(h.sni, "ok.example", "trailing dot dropped");
	n = hello_with_sni("a\0b.example", 11, ch);
	ASSERT_EQ(passthrough_parse_hello(ch, n, &h), -EINVAL, "NUL in SNI");
	n = hello_with_sni("a b.example", 11, ch);
	ASSERT_EQ(passthrough_parse_hello(ch, n, &h), -EINVAL, "space in SNI");
	n = hello_with_sni("", 0, ch);
	ASSERT_EQ(passthrough_parse_hello(ch, n, &h), -EINVAL, "empty SNI");
}

void test_passthrough_route_match(void)
{
	struct gw_passthrough a[] = {
		{.server_name = (char *)"*.example.com", .target = (char *)"w:1"},
		{.server_name = (char *)"exact.example.com", .target = (char *)"e:1"},
	};
	struct gw_passthrough b[] = {
		{.server_name = (char *)"*.deep.example.com", .target = (char *)"d:1"},
	};
	struct gw_server s1 = {.passthroughs = a, .npassthroughs = 2};
	struct gw_server s2 = {.passthroughs = b, .npassthroughs = 1};
	const struct gw_server *srvs[] = {&s1, &s2}, *owner = NULL;
	const struct gw_passthrough *r;

	r = passthrough_route(srvs, 2, "exact.example.com", &owner);
	ASSERT_TRUE(r && strcmp(r->target, "e:1") == 0, "exact beats wildcard");
	r = passthrough_route(srvs, 2, "a.b.example.com", &owner);
	ASSERT_TRUE(r && strcmp(r->target, "w:1") == 0, "wildcard, two labels");
	r = passthrough_route(srvs, 2, "x.deep.example.com", &owner);
	ASSERT_TRUE(r && strcmp(r->target, "d:1") == 0 && owner == &s2, "longest wildcard");
	ASSERT_TRUE(!passthrough_route(srvs, 2, "example.com", &owner), "bare suffix");
	ASSERT_TRUE(!passthrough_route(srvs, 2, "xexample.com", &owner), "not a label boundary");
	ASSERT_TRUE(!passthrough_route(srvs, 2, "", &owner), "no sni");
}
