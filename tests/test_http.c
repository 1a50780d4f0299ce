// SPDX-License-Identifier: MIT
/*
 * The HTTP request-direction rewriter: rewriting with a real inject
 * callback, identity-header stripping, bodies, pipelining, incrementality
 * (every split point), nginx's status for malformed heads and header
 * limits, upgrade, error pages; and, where nginx is installed, the same
 * corpus sent to a real nginx 1.22 on loopback to compare statuses.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "gw/http.h"

/* The injected lines show what inject() was given. */
static int test_inject(void *arg, const char *xff, const char *host, struct buf *out)
{
	int *calls = arg;

	(*calls)++;
	if (buf_puts(out, "X-SSL-Client-Verify: SUCCESS\r\n"))
		return -ENOMEM;
	return buf_printf(out, "X-Got-XFF: %s\r\nX-Got-Host: %s\r\n", xff ? xff : "(none)",
			  host ? host : "(none)");
}

static struct gw_header test_hdrs[] = {
	{.name = "X-SSL-Client-Verify"},
	{.name = "X-Forwarded-For"},
	{.name = "X-Real-Identity"},
};

static int inject_calls;

static void rw_init(struct http_rewrite *rw)
{
	memset(rw, 0, sizeof(*rw));
	rw->headers = test_hdrs;
	rw->nheaders = ARRAY_SIZE(test_hdrs);
	rw->inject = test_inject;
	rw->inject_arg = &inject_calls;
}

/* Small limits, as the nginx server of test_http_nginx_compare. */
static void rw_small(struct http_rewrite *rw)
{
	rw_init(rw);
	rw->header_buffer_count = 2;
	rw->header_buffer_size = 512;
	rw->client_header_buffer_size = 128;
}

/*
 * Feed @in in pieces: @cut1 and @cut2 split it in three (0 and len for
 * fewer), or byte by byte when @bytewise. Output in @out (reset first).
 */
static int feed_split(const struct http_rewrite *rw, const char *in, size_t len, size_t cut1,
		      size_t cut2, bool bytewise, struct buf *out, int *status,
		      struct http_parser *pout)
{
	struct http_parser p;
	size_t i;
	int ret = 0;

	buf_reset(out);
	*status = 0;
	http_parser_init(&p);
	if (bytewise) {
		for (i = 0; i < len && !ret; i++)
			ret = http_feed(&p, rw, in + i, 1, out, status);
	} else {
		ret = http_feed(&p, rw, in, cut1, out, status);
		if (!ret)
			ret = http_feed(&p, rw, in + cut1, cut2 - cut1, out, status);
		if (!ret)
			ret = http_feed(&p, rw, in + cut2, len - cut2, out, status);
	}
	if (pout)
		*pout = p;
	else
		http_parser_free(&p);
	return ret;
}

static int feed_all(const struct http_rewrite *rw, const char *in, struct buf *out, int *status)
{
	size_t len = strlen(in);

	return feed_split(rw, in, len, len, len, false, out, status, NULL);
}

static bool out_is(const struct buf *out, const char *want, const char *name)
{
	if (out->len == strlen(want) && memcmp(out->data, want, out->len) == 0)
		return true;
	TEST_FAIL("%s: output differs\n--- got ---\n%.*s\n--- want ---\n%s", name, (int)out->len,
		  out->data ? out->data : "", want);
	return false;
}

void test_http_rewrite_strips_identity(void)
{
	struct http_rewrite rw;
	struct buf out = {0};
	int st;
	const char *in = "GET /a?b=c HTTP/1.1\r\n"
			 "Host: WWW.Example.COM:8443\r\n"
			 "X-SSL-Cert: spoof\r\n"
			 "x-ssl-client-verify: SUCCESS\r\n"
			 "X-SSL-CLIENT-S-DN: CN=admin\r\n"
			 "User-Agent: t\r\n"
			 "X-Client-Foo: 1\r\n"
			 "x-CLIENT-cert-Chain: 2\r\n"
			 "X-Forwarded-Client-Cert: By=x\r\n"
			 "x-forwarded-client-cert: By=y\r\n"
			 "Client-Cert: :abc:\r\n"
			 "CLIENT-CERT-CHAIN: :abc:\r\n"
			 "X-Real-Identity: root\r\n"
			 "X-Forwarded-For: 10.0.0.1\r\n"
			 "Accept: */*\r\n"
			 "x-forwarded-for:  10.0.0.2 ,10.0.0.3  \r\n"
			 "X_SSL_Cert: underscore\r\n"
			 "X-Kept:   spaced value  \r\n"
			 "\r\n";

	rw_init(&rw);
	inject_calls = 0;
	if (!ASSERT_OK(feed_all(&rw, in, &out, &st), "feed"))
		goto out;
	out_is(&out,
	       "GET /a?b=c HTTP/1.1\r\n"
	       "Host: WWW.Example.COM:8443\r\n"
	       "User-Agent: t\r\n"
	       "Accept: */*\r\n"
	       "X-Kept:   spaced value  \r\n"
	       "X-SSL-Client-Verify: SUCCESS\r\n"
	       "X-Got-XFF: 10.0.0.1, 10.0.0.2 ,10.0.0.3\r\n"
	       "X-Got-Host: www.example.com\r\n"
	       "\r\n",
	       "rewritten head");
	ASSERT_EQ(inject_calls, 1, "inject called once");
out:
	buf_free(&out);
}

void test_http_rewrite_bare_lf_and_host(void)
{
	struct http_rewrite rw;
	struct buf out = {0};
	int st;

	rw_init(&rw);
	/* bare LF lines keep their bytes; $host prefers the request line's host */
	if (ASSERT_OK(feed_all(&rw,
			       "\r\n\nGET http://Back.Example.:81/x HTTP/1.1\n"
			       "Host: other\nX-Client-Id: 7\n\n",
			       &out, &st),
		      "feed"))
		out_is(&out,
		       "GET http://Back.Example.:81/x HTTP/1.1\n"
		       "Host: other\n"
		       "X-SSL-Client-Verify: SUCCESS\r\n"
		       "X-Got-XFF: (none)\r\n"
		       "X-Got-Host: back.example\r\n"
		       "\r\n",
		       "bare LF");
	/* HTTP/1.0 without Host: inject gets NULL */
	if (ASSERT_OK(feed_all(&rw, "GET / HTTP/1.0\r\n\r\n", &out, &st), "feed 1.0"))
		out_is(&out,
		       "GET / HTTP/1.0\r\n"
		       "X-SSL-Client-Verify: SUCCESS\r\n"
		       "X-Got-XFF: (none)\r\n"
		       "X-Got-Host: (none)\r\n"
		       "\r\n",
		       "HTTP/1.0");
	buf_free(&out);
}

void test_http_identity_predicate(void)
{
	static const char *const yes[] = {
		"X-SSL-Cert",	   "x-ssl-client-verify",     "X-SSL-",	     "X-Client-Foo",
		"x-client-",	   "X-Forwarded-Client-Cert", "client-cert", "Client-Cert-Chain",
		"x-real-identity", "X-FORWARDED-FOR"};
	static const char *const no[] = {
		"X-SSL", "X-Clients",	     "Client-Certs", "X-Forwarded-Client",
		"Host",	 "X-Forwarded-Host", "XSSL-Cert"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++)
		ASSERT_TRUE(http_is_identity_header(yes[i], strlen(yes[i]), test_hdrs,
						    ARRAY_SIZE(test_hdrs)),
			    yes[i]);
	for (i = 0; i < ARRAY_SIZE(no); i++)
		ASSERT_FALSE(http_is_identity_header(no[i], strlen(no[i]), test_hdrs,
						     ARRAY_SIZE(test_hdrs)),
			     no[i]);
	ASSERT_FALSE(http_is_identity_header("X-Real-Identity", 15, NULL, 0), "no config");
}

#define INJ "X-SSL-Client-Verify: SUCCESS\r\nX-Got-XFF: (none)\r\nX-Got-Host: a\r\n\r\n"

/* Streams with their exact rewritten output: bodies, pipelining, trailers. */
static const struct {
	const char *name;
	const char *in;
	const char *want;
} streams[] = {
	{"cl pipelined",
	 "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nX-SSL-Cert: x\r\n\r\n"
	 "X-SSL-Cert:"
	 "GET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
	 "PUT /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
	 "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n" INJ "X-SSL-Cert:"
	 "GET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" INJ
	 "PUT /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n" INJ "\r\n\r\n"},
	{"chunked ext trailers",
	 "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "5;name=\"v\" ; x\r\nhello\r\n"
	 "A\r\n0123456789\r\n"
	 "00c \r\nHost: b\r\n\r\nx\r\n"
	 "0;last\r\n"
	 "X-SSL-Cert: spoof\r\n"
	 "Checksum: abc\r\n"
	 "x-client-id: 1\r\n"
	 "X-Real-Identity: t\n"
	 "Bad Name: 1\r\n"
	 " folded\r\n"
	 "Kept-Lf: 1\n"
	 "\r\n"
	 "GET /n HTTP/1.1\r\nHost: a\r\n\r\n",
	 "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" INJ
	 "5;name=\"v\" ; x\r\nhello\r\n"
	 "A\r\n0123456789\r\n"
	 "00c \r\nHost: b\r\n\r\nx\r\n"
	 "0;last\r\n"
	 "Checksum: abc\r\n"
	 "Kept-Lf: 1\n"
	 "\r\n"
	 "GET /n HTTP/1.1\r\nHost: a\r\n" INJ},
	{"chunked bare lf, no trailer",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
	 "3\nabc\n0\n\n"
	 "DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n" INJ "3\nabc\n0\n\n"
	 "DELETE /d HTTP/1.1\r\nHost: a\r\n" INJ},
	{"dropped invalid names, leading crlf",
	 "\r\nGET / HTTP/1.1\r\nHost: a\r\nX.SSL.Cert: 1\r\nX\xff: 2\r\nOk-1: 3\r\n\r\n",
	 "GET / HTTP/1.1\r\nHost: a\r\nOk-1: 3\r\n" INJ},
};

void test_http_bodies_and_pipelining(void)
{
	struct http_rewrite rw;
	struct buf out = {0};
	size_t i;
	int st;

	rw_init(&rw);
	for (i = 0; i < ARRAY_SIZE(streams); i++)
		if (ASSERT_OK(feed_all(&rw, streams[i].in, &out, &st), streams[i].name))
			out_is(&out, streams[i].want, streams[i].name);
	buf_free(&out);
}

/* Output, return and status at every split point equal the one-call ones. */
static void check_splits(const struct http_rewrite *rw, const char *in, size_t len,
			 const char *name)
{
	struct buf ref = {0}, out = {0};
	int ref_ret, ref_st, ret, st;
	size_t a, b;

	ref_ret = feed_split(rw, in, len, len, len, false, &ref, &ref_st, NULL);
	ret = feed_split(rw, in, len, 0, 0, true, &out, &st, NULL);
	if (!ASSERT_EQ(ret, ref_ret, name) || !ASSERT_EQ(st, ref_st, name) ||
	    !ASSERT_EQ(out.len, ref.len, name) ||
	    (out.len && !ASSERT_MEMEQ(out.data, ref.data, out.len, name)))
		goto out;
	for (a = 0; a <= len; a++) {
		for (b = a; b <= len; b += (len > 400 ? 97 : 1)) {
			ret = feed_split(rw, in, len, a, b, false, &out, &st, NULL);
			if (ret != ref_ret || st != ref_st || out.len != ref.len ||
			    (out.len && memcmp(out.data, ref.data, out.len))) {
				TEST_FAIL("%s: split %zu/%zu differs (ret %d/%d status %d/%d)",
					  name, a, b, ret, ref_ret, st, ref_st);
				goto out;
			}
		}
	}
out:
	buf_free(&ref);
	buf_free(&out);
}

void test_http_every_split_point(void)
{
	struct http_rewrite rw;
	struct buf all = {0};
	size_t i;

	rw_init(&rw);
	for (i = 0; i < ARRAY_SIZE(streams); i++) {
		check_splits(&rw, streams[i].in, strlen(streams[i].in), streams[i].name);
		buf_puts(&all, streams[i].in);
	}
	/* everything pipelined on one connection, then an error at the end */
	buf_puts(&all, "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  fold\r\n\r\n");
	check_splits(&rw, all.data, all.len, "all pipelined");
	buf_free(&all);
}

/* Heads and the status nginx 1.22.1 answers (0: accepted and forwarded). */
struct status_case {
	const char *name;
	const char *in;
	int status;
};

static const struct status_case status_cases[] = {
	{"ok", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  cont\r\n\r\n", 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcont\r\n\r\n", 400},
	{"nul value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\0002\r\n\r\n", 400},
	{"nul name", "GET / HTTP/1.1\r\nHost: a\r\nX\000A: 1\r\n\r\n", 400},
	{"nul uri", "GET /\000 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"cl and te",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	 400},
	{"te and cl",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	 "Content-Length: 3\r\n\r\n0\r\n\r\n",
	 400},
	{"dup cl",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
	 "\r\nabc",
	 400},
	{"bad cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc", 400},
	{"neg cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc", 400},
	{"plus cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
	{"empty cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\nabc", 400},
	{"huge cl",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n"
	 "\r\n",
	 400},
	{"te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	{"te list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	{"te http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"te CHUNKED",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED  \r\n\r\n"
	 "0\r\n\r\n",
	 0},
	{"dup te",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	 400},
	{"bad chunk size",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "zz\r\n\r\n",
	 400},
	{"chunk no crlf",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "3\r\nabcX\r\n0\r\n\r\n",
	 400},
	{"chunk size overflow",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	 "\r\n10000000000000000\r\n",
	 400},
	{"no host 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
	{"no host 1.0", "GET / HTTP/1.0\r\n\r\n", 0},
	{"dup host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"bad host", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400},
	{"host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
	{"host port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
	{"lowercase method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"tab after method", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"connect path", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
	{"trace", "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
	{"unknown method", "FOO_BAR-X / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"underscore ignored", "GET / HTTP/1.1\r\nHost: a\r\nX_SSL: 1\r\n\r\n", 0},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", 400},
	{"colon first", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
	{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400},
	{"http/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"http/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
	{"http/11.1", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 505},
	{"http/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400},
	{"http/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0},
	{"http/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0},
	{"http/1.1000", "GET / HTTP/1.1000\r\nHost: a\r\n\r\n", 400},
	{"lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	{"bare lf", "GET / HTTP/1.1\nHost: a\n\n", 0},
	{"cr only", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400},
	{"cr cr lf", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\r\n\r\n", 0},
	{"cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rx\r\n\r\n", 400},
	{"dotdot", "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"dotdot ok", "GET /a/../x HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"dotdot quoted", "GET /a/%2e%2E/..%2f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"dotdot in args", "GET /a?/../../x HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"bad pct", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"pct nul", "GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"pct short", "GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"pct in args", "GET /a?%zz HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"abs no host", "GET http://Foo.com:80/x HTTP/1.1\r\n\r\n", 400},
	{"abs ok", "GET http://Foo.com:80/x HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"abs bad host", "GET http://a..b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"abs ipv6", "GET http://[::1]:80/ HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"abs underscore", "GET http://a_b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"dup authorization",
	 "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\n"
	 "Authorization: b\r\n\r\n",
	 400},
	{"dup cookie", "GET / HTTP/1.1\r\nHost: a\r\nCookie: a\r\nCookie: b\r\n\r\n", 0},
	{"high byte name",
	 "GET / HTTP/1.1\r\nHost: a\r\nX\xff"
	 "A: 1\r\n\r\n",
	 0},
	{"tab in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A:\t1\r\n\r\n", 0},
	{"spaces in line", "GET  /  HTTP/1.1  \r\nHost: a\r\n\r\n", 0},
	{"del in uri", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"high byte uri", "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	{"header done then junk", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400},
	{"upgrade",
	 "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
	 "Upgrade: websocket\r\n\r\n",
	 0},
};

/* Deliberate differences from nginx 1.22 (it proxies these). */
static const struct status_case status_cases_own[] = {
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400},
	{"http/0.9", "GET /\r\n", 400},
	{"http/0.9 lf", "GET /x\n", 400},
};

static int status_of(const struct http_rewrite *rw, const char *in, size_t len, bool *complete)
{
	struct http_parser p;
	struct buf out = {0};
	int st = 0, ret;

	ret = feed_split(rw, in, len, len, len, false, &out, &st, &p);
	*complete = p.requests > 0;
	http_parser_free(&p);
	buf_free(&out);
	if (ret == -EBADMSG)
		return st;
	return ret;
}

static size_t case_len(const struct status_case *c)
{
	size_t n = strlen(c->in);

	/* NUL cases: the rest of the literal after the NUL */
	if (strncmp(c->name, "nul ", 4) == 0)
		n += 1 + strlen(c->in + n + 1);
	return n;
}

void test_http_statuses(void)
{
	struct http_rewrite rw;
	bool complete;
	size_t i;
	int st;

	rw_init(&rw);
	for (i = 0; i < ARRAY_SIZE(status_cases); i++) {
		const struct status_case *c = &status_cases[i];

		st = status_of(&rw, c->in, case_len(c), &complete);
		ASSERT_EQ(st, c->status, c->name);
		if (!c->status)
			ASSERT_TRUE(complete, c->name);
		check_splits(&rw, c->in, case_len(c), c->name);
	}
	for (i = 0; i < ARRAY_SIZE(status_cases_own); i++) {
		st = status_of(&rw, status_cases_own[i].in, strlen(status_cases_own[i].in),
			       &complete);
		ASSERT_EQ(st, status_cases_own[i].status, status_cases_own[i].name);
	}
}

void test_http_error_state_sticks(void)
{
	struct http_rewrite rw;
	struct http_parser p;
	struct buf out = {0};
	int st = 0;

	rw_init(&rw);
	http_parser_init(&p);
	ASSERT_OK(http_feed(&p, &rw, "GET / HTTP/1.1\r\nHost: a\r\n\r\nG", 28, &out, &st), "first");
	ASSERT_EQ(http_feed(&p, &rw, "et", 2, &out, &st), -EBADMSG, "lowercase in method");
	ASSERT_EQ(st, 400, "status");
	ASSERT_EQ(p.state, HTTP_S_ERROR, "state");
	st = 0;
	ASSERT_EQ(http_feed(&p, &rw, "GET", 3, &out, &st), -EBADMSG, "sticks");
	ASSERT_EQ(st, 400, "status again");
	ASSERT_EQ(p.requests, 1, "one forwarded");
	http_parser_free(&p);
	buf_free(&out);
}

/* A request line of exactly @len bytes (CRLF included) and the head after it. */
static char *make_reqline(size_t len, const char *rest)
{
	size_t fixed = strlen("GET / HTTP/1.1\r\n"), n = len - fixed;
	char *s = malloc(len + strlen(rest) + 1);

	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', n);
	strcpy(s + 5 + n, " HTTP/1.1\r\n");
	strcat(s, rest);
	return s;
}

/* "Host: a" line, then a header line of exactly @len bytes (CRLF included). */
static char *make_hdrline(size_t len)
{
	const char *pre = "GET / HTTP/1.1\r\nHost: a\r\nX-A: ";
	size_t n = len - strlen("X-A: \r\n");
	char *s = malloc(strlen(pre) + n + 8);

	strcpy(s, pre);
	memset(s + strlen(pre), 'b', n);
	strcpy(s + strlen(pre) + n, "\r\n\r\n");
	return s;
}

/* @n header lines of @len bytes each. */
static char *make_many(int n, size_t len)
{
	struct buf b = {0};
	char *s;
	int i;

	buf_puts(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 0; i < n; i++) {
		buf_printf(&b, "X-%04d: ", i);
		for (size_t k = strlen("X-0000: \r\n"); k < len; k++)
			buf_puts(&b, "c");
		buf_puts(&b, "\r\n");
	}
	buf_puts(&b, "\r\n");
	s = buf_strdup(&b);
	buf_free(&b);
	return s;
}

struct limit_case {
	char *in;
	int status;
	char name[48];
};

/* Limit cases for rw_small() (N=2, S=512, first buffer 128), as nginx answers. */
static size_t limit_cases(struct limit_case *lc)
{
	size_t n = 0;

	lc[n] = (struct limit_case){make_reqline(511, "Host: a\r\n\r\n"), 0, "reqline S-1"};
	n++;
	lc[n] = (struct limit_case){make_reqline(512, "Host: a\r\n\r\n"), 0, "reqline S"};
	n++;
	lc[n] = (struct limit_case){make_reqline(513, "Host: a\r\n\r\n"), 414, "reqline S+1"};
	n++;
	lc[n] = (struct limit_case){make_reqline(4000, "Host: a\r\n\r\n"), 414, "reqline long"};
	n++;
	lc[n] = (struct limit_case){make_hdrline(512), 0, "hdrline S"};
	n++;
	lc[n] = (struct limit_case){make_hdrline(513), 494, "hdrline S+1"};
	n++;
	lc[n] = (struct limit_case){make_hdrline(3000), 494, "hdrline long"};
	n++;
	/* the whole head: 128 + 2 * 512 with whole lines per buffer */
	lc[n] = (struct limit_case){make_many(2, 300), 0, "2 x 300"};
	n++;
	lc[n] = (struct limit_case){make_many(3, 300), 494, "3 x 300"};
	n++;
	lc[n] = (struct limit_case){make_many(20, 40), 0, "20 x 40"};
	n++;
	lc[n] = (struct limit_case){make_many(30, 40), 494, "30 x 40"};
	n++;
	lc[n] = (struct limit_case){make_reqline(500, ""), 0, "reqline then many"};
	free(lc[n].in);
	lc[n].in = make_reqline(500, "Host: a\r\nX-1: 12345678901234567890\r\n"
				     "X-2: 12345678901234567890\r\n\r\n");
	n++;
	return n;
}

void test_http_limits_small(void)
{
	struct limit_case lc[16];
	struct http_rewrite rw;
	bool complete;
	size_t i, n;

	rw_small(&rw);
	n = limit_cases(lc);
	for (i = 0; i < n; i++) {
		ASSERT_EQ(status_of(&rw, lc[i].in, strlen(lc[i].in), &complete), lc[i].status,
			  lc[i].name);
		free(lc[i].in);
	}
}

void test_http_limits_default(void)
{
	struct http_rewrite rw;
	bool complete;
	char *s;
	int i;
	static const struct {
		int kind; /* 0 request line, 1 header line */
		size_t len;
		int status;
	} cases[] = {
		{0, 8192, 0},
		{0, 8193, 414},
		{1, 8192, 0},
		{1, 8193, 494},
	};

	rw_init(&rw);
	for (i = 0; i < (int)ARRAY_SIZE(cases); i++) {
		s = cases[i].kind ? make_hdrline(cases[i].len)
				  : make_reqline(cases[i].len, "Host: a\r\n\r\n");
		ASSERT_EQ(status_of(&rw, s, strlen(s), &complete), cases[i].status,
			  cases[i].kind ? "header line" : "request line");
		free(s);
	}
	/* 4 x 8k buffers after the 1k one: 4 lines of 8000 fit, 5 do not */
	s = make_many(4, 8000);
	ASSERT_EQ(status_of(&rw, s, strlen(s), &complete), 0, "4 x 8000");
	free(s);
	s = make_many(5, 8000);
	ASSERT_EQ(status_of(&rw, s, strlen(s), &complete), 494, "5 x 8000");
	free(s);
	/* explicit large_client_header_buffers 8 16k */
	rw.header_buffer_count = 8;
	rw.header_buffer_size = 16384;
	s = make_hdrline(16384);
	ASSERT_EQ(status_of(&rw, s, strlen(s), &complete), 0, "16k line");
	free(s);
	s = make_hdrline(16385);
	ASSERT_EQ(status_of(&rw, s, strlen(s), &complete), 494, "16k+1 line");
	free(s);
}

static const char upgrade_req[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
				  "Upgrade: websocket\r\nX-SSL-Cert: x\r\n\r\n";
static const char upgrade_fwd[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
				  "Upgrade: websocket\r\n" INJ;

void test_http_upgrade_switched(void)
{
	struct http_rewrite rw;
	struct http_parser p;
	struct buf out = {0};
	const char frame[] = "\x81\x05hello GET / HTTP/1.1\r\nX-SSL-Cert: not a header\r\n\r\n";
	int st = 0;

	rw_init(&rw);
	http_parser_init(&p);
	if (!ASSERT_OK(http_feed(&p, &rw, upgrade_req, strlen(upgrade_req), &out, &st), "head"))
		goto out;
	ASSERT_EQ(p.state, HTTP_S_UPGRADE_WAIT, "waiting");
	out_is(&out, upgrade_fwd, "head forwarded");
	buf_reset(&out);
	ASSERT_OK(http_feed(&p, &rw, frame, 10, &out, &st), "held 1");
	ASSERT_OK(http_feed(&p, &rw, frame + 10, sizeof(frame) - 11, &out, &st), "held 2");
	ASSERT_EQ(out.len, 0, "nothing passes while waiting");
	ASSERT_OK(http_upgrade_done(&p, &rw, true, &out, &st), "switched");
	ASSERT_EQ(p.state, HTTP_S_OPAQUE, "opaque");
	ASSERT_EQ(out.len, sizeof(frame) - 1, "held bytes");
	ASSERT_MEMEQ(out.data, frame, sizeof(frame) - 1, "held bytes untouched");
	buf_reset(&out);
	ASSERT_OK(http_feed(&p, &rw, "get \0 x", 7, &out, &st), "opaque feed");
	ASSERT_EQ(out.len, 7, "opaque bytes");
	ASSERT_MEMEQ(out.data, "get \0 x", 7, "opaque bytes untouched");
	ASSERT_ERR(http_upgrade_done(&p, &rw, true, &out, &st), "not waiting");
out:
	http_parser_free(&p);
	buf_free(&out);
}

void test_http_upgrade_refused(void)
{
	struct http_rewrite rw;
	struct http_parser p;
	struct buf out = {0};
	const char next[] = "GET /2 HTTP/1.1\r\nHost: a\r\nX-Client-Cert: x\r\n\r\nGET /3 HT";
	int st = 0;

	rw_init(&rw);
	http_parser_init(&p);
	ASSERT_OK(http_feed(&p, &rw, upgrade_req, strlen(upgrade_req), &out, &st), "head");
	buf_reset(&out);
	ASSERT_OK(http_feed(&p, &rw, next, strlen(next), &out, &st), "held");
	ASSERT_EQ(out.len, 0, "held");
	ASSERT_OK(http_upgrade_done(&p, &rw, false, &out, &st), "not switched");
	out_is(&out, "GET /2 HTTP/1.1\r\nHost: a\r\n" INJ, "held parsed as HTTP");
	ASSERT_EQ(p.state, HTTP_S_HEAD, "head state");
	buf_reset(&out);
	ASSERT_OK(http_feed(&p, &rw, "TP/1.1\r\nHost: a\r\n\r\n", 19, &out, &st), "rest");
	out_is(&out, "GET /3 HTTP/1.1\r\nHost: a\r\n" INJ, "third");
	/* an upgrade request with a body: the body first, then the wait */
	http_parser_free(&p);
	http_parser_init(&p);
	buf_reset(&out);
	ASSERT_OK(http_feed(&p, &rw,
			    "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
			    "Content-Length: 2\r\n\r\nokGET",
			    strlen("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
				   "Upgrade: h2c\r\nContent-Length: 2\r\n\r\nokGET"),
			    &out, &st),
		  "upgrade with body");
	ASSERT_EQ(p.state, HTTP_S_UPGRADE_WAIT, "waits after the body");
	ASSERT_EQ(p.held.len, 3, "GET held");
	ASSERT_TRUE(out.len >= 2 && memcmp(out.data + out.len - 2, "ok", 2) == 0, "body passed");
	/* Connection: upgrade without Upgrade is an ordinary request */
	http_parser_free(&p);
	http_parser_init(&p);
	ASSERT_OK(http_feed(&p, &rw, "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", 47,
			    &out, &st),
		  "no upgrade header");
	ASSERT_EQ(p.state, HTTP_S_HEAD, "no wait");
	http_parser_free(&p);
	buf_free(&out);
}

void test_http_error_pages(void)
{
	struct buf out = {0};
	/* 2026-11-27 11:00:17 UTC, a Friday */
	const time_t t = 1795777217;
	const char *want400 = "HTTP/1.1 400 Bad Request\r\n"
			      "Server: ktlsgw\r\n"
			      "Date: Fri, 27 Nov 2026 11:00:17 GMT\r\n"
			      "Content-Type: text/html\r\n"
			      "Content-Length: 151\r\n"
			      "Connection: close\r\n"
			      "\r\n"
			      "<html>\r\n"
			      "<head><title>400 Bad Request</title></head>\r\n"
			      "<body>\r\n"
			      "<center><h1>400 Bad Request</h1></center>\r\n"
			      "<hr><center>ktlsgw</center>\r\n"
			      "</body>\r\n"
			      "</html>\r\n";
	const char *want494 =
		"HTTP/1.1 400 Bad Request\r\n"
		"Server: ktlsgw\r\n"
		"Date: Fri, 27 Nov 2026 11:00:17 GMT\r\n"
		"Content-Type: text/html\r\n"
		"Content-Length: 227\r\n"
		"Connection: close\r\n"
		"\r\n"
		"<html>\r\n"
		"<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n"
		"<body>\r\n"
		"<center><h1>400 Bad Request</h1></center>\r\n"
		"<center>Request Header Or Cookie Too Large</center>\r\n"
		"<hr><center>ktlsgw</center>\r\n"
		"</body>\r\n"
		"</html>\r\n";
	static const struct {
		int status;
		const char *line, *title;
	} all[] = {
		{400, "HTTP/1.1 400 Bad Request", "400 Bad Request"},
		{405, "HTTP/1.1 405 Not Allowed", "405 Not Allowed"},
		{414, "HTTP/1.1 414 Request-URI Too Large", "414 Request-URI Too Large"},
		{494, "HTTP/1.1 400 Bad Request", "400 Request Header Or Cookie Too Large"},
		{495, "HTTP/1.1 400 Bad Request", "400 The SSL certificate error"},
		{496, "HTTP/1.1 400 Bad Request", "400 No required SSL certificate was sent"},
		{501, "HTTP/1.1 501 Not Implemented", "501 Not Implemented"},
		{502, "HTTP/1.1 502 Bad Gateway", "502 Bad Gateway"},
		{504, "HTTP/1.1 504 Gateway Time-out", "504 Gateway Time-out"},
		{505, "HTTP/1.1 505 HTTP Version Not Supported", "505 HTTP Version Not Supported"},
	};
	char title[128];
	const char *body;
	size_t i;

	if (ASSERT_OK(http_error_response_at(400, t, &out), "400"))
		out_is(&out, want400, "400 page");
	buf_reset(&out);
	if (ASSERT_OK(http_error_response_at(494, t, &out), "494"))
		out_is(&out, want494, "494 page");
	for (i = 0; i < ARRAY_SIZE(all); i++) {
		buf_reset(&out);
		if (!ASSERT_OK(http_error_response(all[i].status, &out), all[i].line))
			continue;
		ASSERT_TRUE(strncmp(out.data, all[i].line, strlen(all[i].line)) == 0, all[i].line);
		snprintf(title, sizeof(title), "<title>%s</title>", all[i].title);
		ASSERT_STRSTR(out.data, title, all[i].line);
		body = strstr(out.data, "\r\n\r\n");
		if (ASSERT_OK_PTR(body, "end of head")) {
			char cl[64];

			snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body + 4));
			ASSERT_STRSTR(out.data, cl, all[i].line);
		}
	}
	buf_reset(&out);
	ASSERT_EQ(http_error_response(418, &out), -EINVAL, "unknown status");
	buf_free(&out);
}

/* --- the same corpus against a real nginx ------------------------------- */

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int connect_port(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 3};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* nginx's status for @in: 0 for 2xx (accepted), the code, or -1. */
static int nginx_status(int port, const char *in, size_t len)
{
	char resp[512];
	size_t got = 0;
	ssize_t n;
	int fd, code = -1;

	fd = connect_port(port);
	if (fd < 0)
		return -1;
	if (write(fd, in, len) != (ssize_t)len)
		goto out;
	shutdown(fd, SHUT_WR);
	while (got < sizeof(resp) - 1 && (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)n;
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.1 %d", &code) == 1 && code >= 200 && code < 300)
		code = 0;
out:
	close(fd);
	return code;
}

void test_http_nginx_compare(void)
{
	char dir[] = "/tmp/gw-nginx-XXXXXX", path[256], gopt[512];
	struct limit_case lc[16];
	struct http_rewrite rw;
	int port, fd = -1, i, ours, theirs, tries;
	bool complete;
	size_t n, k;
	pid_t pid;
	FILE *f;

	if (access("/usr/sbin/nginx", X_OK) != 0)
		test__skip("nginx not installed");
	port = free_port();
	if (port < 0 || !mkdtemp(dir))
		test__skip("no port or temp dir");
	snprintf(path, sizeof(path), "%s/nginx.conf", dir);
	f = fopen(path, "w");
	if (!ASSERT_OK_PTR(f, "conf"))
		return;
	/* limits as rw_small(); everything else nginx's defaults */
	fprintf(f,
		"worker_processes 1;\nevents {}\nhttp {\n access_log off;\n"
		" client_body_temp_path %s/b; proxy_temp_path %s/p;\n"
		" fastcgi_temp_path %s/f; uwsgi_temp_path %s/u; scgi_temp_path %s/s;\n"
		" server {\n  listen 127.0.0.1:%d;\n"
		"  client_header_buffer_size 128;\n  large_client_header_buffers 2 512;\n"
		"  location / { return 200 \"ok\\n\"; }\n }\n}\n",
		dir, dir, dir, dir, dir, port);
	fclose(f);
	snprintf(gopt, sizeof(gopt), "daemon off; pid %s/nginx.pid; error_log %s/error.log info;",
		 dir, dir);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl("/usr/sbin/nginx", "nginx", "-p", dir, "-c", path, "-g", gopt, (char *)NULL);
		_exit(127);
	}
	for (tries = 0; tries < 100; tries++) {
		fd = connect_port(port);
		if (fd >= 0)
			break;
		usleep(30000);
	}
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		test__skip("nginx did not start");
	}
	close(fd);

	rw_small(&rw);
	for (k = 0; k < ARRAY_SIZE(status_cases); k++) {
		const struct status_case *c = &status_cases[k];

		ours = status_of(&rw, c->in, case_len(c), &complete);
		if (ours == 494)
			ours = 400; /* nginx's status line for 494 */
		theirs = nginx_status(port, c->in, case_len(c));
		if (ours != theirs)
			TEST_FAIL("%s: ours %d, nginx %d", c->name, ours, theirs);
	}
	n = limit_cases(lc);
	for (i = 0; i < (int)n; i++) {
		ours = status_of(&rw, lc[i].in, strlen(lc[i].in), &complete);
		if (ours == 494)
			ours = 400;
		theirs = nginx_status(port, lc[i].in, strlen(lc[i].in));
		if (ours != theirs)
			TEST_FAIL("limit %s: ours %d, nginx %d", lc[i].name, ours, theirs);
		free(lc[i].in);
	}
	kill(pid, SIGQUIT);
	waitpid(pid, NULL, 0);
	snprintf(gopt, sizeof(gopt), "rm -rf '%s'", dir);
	if (system(gopt) != 0)
		TEST_FAIL("cleanup %s", dir);
}

/* inject() refusing a request (the relay's 421): nothing of that request goes out. */
static int refuse_other_host(void *arg, const char *xff, const char *host, struct buf *out)
{
	if (host && strcmp(host, "other.test") == 0)
		return 421;
	return buf_puts(out, "X-Ok: 1\r\n");
}

void test_http_inject_refuses(void)
{
	static const char in[] = "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
				 "GET /2 HTTP/1.1\r\nHost: Other.test:443\r\nX-Secret: s\r\n\r\n";
	struct http_rewrite rw;
	struct http_parser p;
	struct buf out = {};
	int status = 0;

	rw_init(&rw);
	rw.inject = refuse_other_host;
	http_parser_init(&p);
	ASSERT_EQ(http_feed(&p, &rw, in, sizeof(in) - 1, &out, &status), -EBADMSG, "refused");
	ASSERT_EQ(status, 421, "status");
	ASSERT_EQ(p.requests, 1, "one request forwarded");
	ASSERT_TRUE(out.data && strstr(out.data, "GET /1 ") && strstr(out.data, "X-Ok: 1\r\n"),
		    "first request forwarded");
	ASSERT_TRUE(!strstr(out.data, "GET /2") && !strstr(out.data, "X-Secret"),
		    "nothing of the refused request");
	buf_free(&out);
	ASSERT_OK(http_error_response(421, &out), "421 page");
	ASSERT_STRSTR(out.data, "HTTP/1.1 421 Misdirected Request\r\n", "status line");
	ASSERT_STRSTR(out.data, "<center><h1>421 Misdirected Request</h1></center>", "body");
	buf_free(&out);
	http_parser_free(&p);
}

/*
 * Tier K splices request bodies past the parser: a relay that moves every
 * byte http_passthrough_len() allows (in steps of @step) and feeds the rest
 * must produce exactly what feeding everything produces, and the parser must
 * end in the same place (next request parsed, trailers stripped).
 */
static int feed_with_passthrough(const struct http_rewrite *rw, const char *in, size_t len,
				 size_t step, struct buf *out, size_t *moved)
{
	struct http_parser p;
	size_t i = 0;
	int ret = 0, status = 0;

	http_parser_init(&p);
	*moved = 0;
	while (i < len && !ret) {
		uint64_t pass = http_passthrough_len(&p);

		if (pass) {
			size_t k = MIN(MIN((size_t)MIN(pass, (uint64_t)SIZE_MAX), step), len - i);

			ret = buf_append(out, in + i, k);
			http_passthrough_done(&p, k);
			*moved += k;
			i += k;
		} else {
			ret = http_feed(&p, rw, in + i, 1, out, &status);
			i++;
		}
	}
	http_parser_free(&p);
	return ret;
}

void test_http_passthrough_matches_feed(void)
{
	static const char in[] =
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n"
		"X-SSL-Client-Verify: forged\r\nX-Other: kept\r\n\r\n"
		"GET /c HTTP/1.1\r\nHost: x\r\nX-SSL-Client-Verify: forged\r\n\r\n";
	struct http_rewrite rw;
	struct buf want = {}, got = {};
	int status = 0;
	size_t moved;

	rw_init(&rw);
	ASSERT_EQ(feed_all(&rw, in, &want, &status), 0, "feed_all(&rw, in, &want, &status), 0");
	for (size_t step = 1; step <= 17; step++) {
		buf_reset(&got);
		ASSERT_EQ(feed_with_passthrough(&rw, in, strlen(in), step, &got, &moved), 0,
			  "feed_with_passthrough(&rw, in, strlen(in), step, &got, &move");
		ASSERT_EQ(
			moved, (size_t)(10 + 5 + 16),
			"moved, (size_t)(10 + 5 + 16)"); /* bodies only: no head, size or trailer */
		ASSERT_EQ(got.len, want.len, "got.len, want.len");
		ASSERT_TRUE(memcmp(got.data, want.data, want.len) == 0,
			    "memcmp(got.data, want.data, want.len) == 0");
	}
	ASSERT_TRUE(memmem(want.data, want.len, "forged", 6) == NULL,
		    "memmem(want.data, want.len, 'forged', 6) == NULL");
	ASSERT_TRUE(memmem(want.data, want.len, "X-Other: kept", 13) != NULL,
		    "memmem(want.data, want.len, 'X-Other: kept', 13) != NULL");
	buf_free(&want);
	buf_free(&got);
}

void test_http_passthrough_len_states(void)
{
	struct http_rewrite rw;
	struct http_parser p;
	struct buf out = {};
	int status = 0;
	static const char head[] = "PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
	static const char up[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
				 "Upgrade: websocket\r\n\r\n";

	rw_init(&rw);
	http_parser_init(&p);
	ASSERT_EQ(http_passthrough_len(&p), 0, "http_passthrough_len(&p), 0");
	ASSERT_EQ(http_feed(&p, &rw, head, strlen(head) - 1, &out, &status), 0,
		  "http_feed(&p, &rw, head, strlen(head) - 1, &out, &status), 0");
	ASSERT_EQ(http_passthrough_len(&p), 0,
		  "http_passthrough_len(&p), 0"); /* the head is not complete */
	ASSERT_EQ(http_feed(&p, &rw, "\n", 1, &out, &status), 0,
		  "http_feed(&p, &rw, 'n', 1, &out, &status), 0");
	ASSERT_EQ(http_passthrough_len(&p), 100000, "http_passthrough_len(&p), 100000");
	http_passthrough_done(&p, 99999);
	ASSERT_EQ(http_passthrough_len(&p), 1, "http_passthrough_len(&p), 1");
	http_passthrough_done(&p, 5); /* more than allowed: ignored */
	ASSERT_EQ(http_passthrough_len(&p), 1, "http_passthrough_len(&p), 1");
	http_passthrough_done(&p, 1);
	ASSERT_EQ(http_passthrough_len(&p), 0, "http_passthrough_len(&p), 0");
	ASSERT_EQ(p.state, HTTP_S_HEAD, "p.state, HTTP_S_HEAD");
	ASSERT_EQ(p.requests, 1, "p.requests, 1");
	/* after a 101 everything is opaque */
	ASSERT_EQ(http_feed(&p, &rw, up, strlen(up), &out, &status), 0,
		  "http_feed(&p, &rw, up, strlen(up), &out, &status), 0");
	ASSERT_EQ(p.state, HTTP_S_UPGRADE_WAIT, "p.state, HTTP_S_UPGRADE_WAIT");
	ASSERT_EQ(http_passthrough_len(&p), 0, "http_passthrough_len(&p), 0");
	buf_reset(&out);
	ASSERT_EQ(http_upgrade_done(&p, &rw, true, &out, &status), 0,
		  "http_upgrade_done(&p, &rw, true, &out, &status), 0");
	ASSERT_EQ(http_passthrough_len(&p), UINT64_MAX, "http_passthrough_len(&p), UINT64_MAX");
	http_parser_free(&p);
	buf_free(&out);
}

/* ---------------------------------------------------- response framing (backend pool) */

/* proxy_set_header Connection "", as nginx's keepalive recipe has it */
static struct gw_header track_hdrs[] = {
	{.name = "X-SSL-Client-Verify"},
	{.name = "Connection"},
};

/* Feed @reqs to a tracking parser (the requests the responses answer). */
static bool track_requests(struct http_parser *p, const char *reqs, struct buf *out)
{
	struct http_rewrite rw;
	int status = 0;

	rw_init(&rw);
	rw.headers = track_hdrs;
	rw.nheaders = ARRAY_SIZE(track_hdrs);
	rw.track = true;
	return ASSERT_EQ(http_feed(p, &rw, reqs, strlen(reqs), out, &status), 0,
			 "http_feed(requests)");
}

static const char resp_reqs[] =
	"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
	"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	"GET /d HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n"
	"GET /e HTTP/1.1\r\nHost: x\r\n\r\n";
static const char resp_answers[] =
	"HTTP/1.1 100 Continue\r\n\r\n"
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" /* HEAD: no body */
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	"5;x=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n"
	"HTTP/1.1 204 No Content\r\nX-A: b\n\n";

/* The answers split at @cut (and byte by byte when @cut is 0) give 4 complete exchanges. */
static bool resp_split(size_t cut)
{
	struct http_parser p;
	struct http_resp r;
	struct buf out = {};
	size_t n = strlen(resp_answers), i;
	bool ok;

	http_parser_init(&p);
	http_resp_init(&r);
	ok = track_requests(&p, resp_reqs, &out);
	/* nothing after the request that closes the connection is forwarded */
	ok = ok && ASSERT_TRUE(strstr(out.data, "GET /d") && !strstr(out.data, "GET /e"),
			       "/e dropped after Connection: close");
	ok = ok && ASSERT_EQ(p.state, HTTP_S_CLOSED, "p.state, HTTP_S_CLOSED");
	ok = ok && ASSERT_EQ(p.rq_count, 4, "p.rq_count, 4");
	ok = ok && ASSERT_EQ(p.rq[1], HTTP_RQ_HEAD, "HEAD remembered");
	ok = ok && ASSERT_EQ(p.rq[3], HTTP_RQ_CLOSE, "close remembered");
	if (cut) {
		ok = ok && ASSERT_EQ(http_resp_feed(&r, &p, resp_answers, cut), 0, "feed 1");
		ok = ok && ASSERT_FALSE(http_resp_idle(&r, &p), "not idle mid-way");
		ok = ok &&
		     ASSERT_EQ(http_resp_feed(&r, &p, resp_answers + cut, n - cut), 0, "feed 2");
	} else {
		for (i = 0; ok && i < n; i++) {
			ok = ASSERT_EQ(http_resp_feed(&r, &p, resp_answers + i, 1), 0, "feed");
			if (i + 1 < n)
				ok = ok && ASSERT_FALSE(http_resp_idle(&r, &p), "not idle");
		}
	}
	ok = ok && ASSERT_EQ(r.state, HR_HEAD, "r.state, HR_HEAD");
	ok = ok && ASSERT_EQ(r.done, 4, "r.done, 4");
	ok = ok && ASSERT_EQ(p.rq_count, 0, "p.rq_count, 0");
	ok = ok && ASSERT_TRUE(r.close_due, "the closing request is answered");
	ok = ok && ASSERT_TRUE(http_resp_idle(&r, &p), "idle after the last answer");
	if (!ok)
		fprintf(stderr, "  (split at %zu)\n", cut);
	http_resp_free(&r);
	http_parser_free(&p);
	buf_free(&out);
	return ok;
}

void test_http_resp_framing(void)
{
	for (size_t cut = 0; cut < strlen(resp_answers); cut++)
		if (!resp_split(cut))
			return;
}

void test_http_resp_not_reusable(void)
{
	static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const struct {
		const char *reqs, *answers, *why;
		int idle;
		enum http_resp_state state;
	} cases[] = {
		{get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "framed", 1, HR_HEAD},
		{get, "HTTP/1.1 200 OK\r\n\r\nbody until close", "close-delimited", 0, HR_LOST},
		{get, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.0 answer", 0,
		 HR_HEAD},
		{get, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		 "Connection: close", 0, HR_HEAD},
		{get, "HTTP/1.1 101 Switching Protocols\r\n\r\n", "101", 0, HR_LOST},
		{"", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "unsolicited", 0, HR_LOST},
		{get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		 "conflicting lengths", 0, HR_LOST},
		{get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		 "repeated equal lengths", 1, HR_HEAD},
		{get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", "not chunked", 0,
		 HR_LOST},
		{get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		 "gzip, chunked", 1, HR_HEAD},
		{get, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "partial body", 0,
		 HR_BODY_CL},
		{get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		 "partial chunk", 0, HR_BODY_CHUNKED},
		{get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk", 0,
		 HR_LOST},
		{get, "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", "304", 1, HR_HEAD},
		{get, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra",
		 "answer beyond the request", 0, HR_LOST},
		{get, "garbage\r\n\r\n", "no status line", 0, HR_LOST},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",
		 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "request body not all sent", 0,
		 HR_HEAD},
		{"GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		 "HTTP/1.0 request: the backend closes after it", 0, HR_HEAD},
	};
	struct http_resp r;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct http_parser p;
		struct buf out = {};
		int idle;

		http_parser_init(&p);
		http_resp_init(&r);
		if (!track_requests(&p, cases[i].reqs, &out))
			return;
		ASSERT_EQ(http_resp_feed(&r, &p, cases[i].answers, strlen(cases[i].answers)), 0,
			  cases[i].why);
		idle = http_resp_idle(&r, &p);
		if (!ASSERT_EQ(idle, cases[i].idle, cases[i].why) ||
		    !ASSERT_EQ(r.state, cases[i].state, cases[i].why))
			return;
		http_resp_free(&r);
		http_parser_free(&p);
		buf_free(&out);
	}
	/* HTTP/1.0 closes unless it asks for keep-alive; POST is never sent twice */
	{
		struct http_parser p;
		struct buf out = {};

		http_parser_init(&p);
		track_requests(&p,
			       "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
			       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
			       "GET / HTTP/1.0\r\n\r\n",
			       &out);
		ASSERT_EQ(p.rq_count, 3, "p.rq_count, 3");
		ASSERT_EQ(p.rq[0], 0, "1.0 keep-alive");
		ASSERT_EQ(p.rq[1], HTTP_RQ_NONIDEM, "POST");
		ASSERT_EQ(p.rq[2], HTTP_RQ_CLOSE, "1.0 closes");
		http_parser_free(&p);
		buf_free(&out);
	}
	/* more pipelined requests than remembered: never reusable */
	{
		struct http_parser p;
		struct buf reqs = {}, out = {};

		for (int i = 0; i <= HTTP_RQ_MAX; i++)
			buf_puts(&reqs, get);
		http_parser_init(&p);
		http_resp_init(&r);
		track_requests(&p, reqs.data, &out);
		ASSERT_TRUE(p.rq_lost, "p.rq_lost");
		ASSERT_FALSE(http_resp_idle(&r, &p), "not idle after losing count");
		http_resp_free(&r);
		http_parser_free(&p);
		buf_free(&reqs);
		buf_free(&out);
	}
}

/* A refused Upgrade that also asked to close: nothing after it is forwarded. */
void test_http_resp_upgrade_refused_closes(void)
{
	static const char reqs[] = "GET /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n"
				   "Upgrade: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_rewrite rw;
	struct http_parser p;
	struct http_resp r;
	struct buf out = {}, more = {};
	int status = 0;

	rw_init(&rw);
	rw.headers = track_hdrs;
	rw.nheaders = ARRAY_SIZE(track_hdrs);
	rw.track = true;
	http_parser_init(&p);
	http_resp_init(&r);
	ASSERT_EQ(http_feed(&p, &rw, reqs, strlen(reqs), &out, &status), 0, "feed");
	ASSERT_EQ(p.state, HTTP_S_UPGRADE_WAIT, "waits for the answer");
	ASSERT_EQ(http_resp_feed(&r, &p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38), 0,
		  "answer");
	ASSERT_EQ(http_upgrade_done(&p, &rw, false, &more, &status), 0, "refused");
	ASSERT_EQ(p.state, HTTP_S_CLOSED, "closed after the refusal");
	ASSERT_EQ(more.len, 0, "/next not forwarded");
	ASSERT_TRUE(r.close_due, "the client is closed");
	http_resp_free(&r);
	http_parser_free(&p);
	buf_free(&out);
	buf_free(&more);
}

/* The backend was told to close (the client's "close" kept): never reused, whatever it answers. */
void test_http_resp_close_sent(void)
{
	struct http_rewrite rw;
	struct http_parser p;
	struct http_resp r;
	struct buf out = {};
	int status = 0;
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

	rw_init(&rw); /* Connection is not among the headers set: it is forwarded */
	rw.track = true;
	http_parser_init(&p);
	http_resp_init(&r);
	ASSERT_EQ(http_feed(&p, &rw, req, strlen(req), &out, &status), 0, "feed");
	ASSERT_STRSTR(out.data, "Connection: close", "forwarded");
	ASSERT_TRUE(p.close_sent, "p.close_sent");
	ASSERT_EQ(http_resp_feed(&r, &p, ans, strlen(ans)), 0, "answer");
	ASSERT_EQ(r.done, 1, "answered");
	ASSERT_FALSE(http_resp_idle(&r, &p), "not reusable");
	http_resp_free(&r);
	http_parser_free(&p);
	buf_free(&out);
}
