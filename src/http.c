// SPDX-License-Identifier: MIT
/*
 * HTTP/1.1 request-direction parser and rewriter (gw/http.h).
 *
 * The client->backend stream is consumed one byte at a time by state
 * machines that follow nginx 1.22's (ngx_http_parse_request_line,
 * ngx_http_parse_header_line, ngx_http_parse_chunked) so that a request is
 * accepted or refused, with the same status, exactly where nginx would, and
 * so that the output does not depend on how the input was split. A head is
 * collected whole and forwarded only once it is complete and valid: the
 * request line and the kept header lines keep their original bytes, the
 * stripped ones are gone, the configured headers are injected last.
 *
 * nginx's large_client_header_buffers is modelled buffer by buffer (see
 * lbuf_full()): the first client_header_buffer_size buffer, then up to N
 * buffers of S bytes, a partial line being moved whole to the next buffer.
 * Each request is modelled as starting in a fresh first buffer, which is
 * what nginx does for the first request and for keep-alive requests whose
 * bytes were not already read with the previous one.
 *
 * Deliberate differences from nginx 1.22 (which would proxy them): a header
 * line without ':' and an HTTP/0.9 request are answered 400.
 */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include "gw/http.h"

#define CR '\r'
#define LF '\n'

#define HTTP_DEF_CLIENT_BUF 1024
#define HTTP_DEF_LARGE_NUM 4
#define HTTP_DEF_LARGE_SIZE 8192
#define HTTP_MAX_OFF INT64_MAX

/* Byte states of the current line (request line, header line). */
enum {
	RL_START = 0,
	RL_METHOD,
	RL_SP_URI,
	RL_SCHEMA,
	RL_SCHEMA_SL,
	RL_SCHEMA_SL2,
	RL_HOST_START,
	RL_HOST,
	RL_HOST_END,
	RL_HOST_LIT,
	RL_PORT,
	RL_URI,
	RL_SP_VERSION,
	RL_H,
	RL_HT,
	RL_HTT,
	RL_HTTP,
	RL_MAJOR1,
	RL_MAJOR,
	RL_MINOR1,
	RL_MINOR,
	RL_SP_AFTER,
	RL_ALMOST,
	H_START,
	H_NAME,
	H_SP_VALUE,
	H_VALUE,
	H_SP_AFTER,
	H_ALMOST,
	H_HEAD_ALMOST,
};

/* Chunked body states (p->chunk_state). */
enum {
	CH_START = 0,
	CH_SIZE,
	CH_EXT,
	CH_EXT_ALMOST,
	CH_DATA,
	CH_AFTER_DATA,
	CH_AFTER_DATA_ALMOST,
	CH_LAST_EXT,
	CH_LAST_EXT_ALMOST,
	CH_TRAILER,
	CH_TRAILER_ALMOST,
	CH_TRAILER_LINE,
	CH_TRAILER_LINE_ALMOST,
};

/* p->hflags */
#define HTTP_HF_HOST (1U << 0)
#define HTTP_HF_RL_HOST (1U << 1) /* host taken from the request line */
#define HTTP_HF_XFF (1U << 2)
#define HTTP_HF_CONN_UPGRADE (1U << 3)
#define HTTP_HF_UPGRADE (1U << 4)
#define HTTP_HF_CL (1U << 5)
#define HTTP_HF_TE (1U << 6)
#define HTTP_HF_CONN_CLOSE (1U << 7)
#define HTTP_HF_CONN_KA (1U << 8)
#define HTTP_HF_UNIQUE_SHIFT 9

/* nginx 1.22's ngx_http_process_unique_header_line headers: a repeat is 400. */
static const char *const http_unique[] = {
	"Content-Length", "Transfer-Encoding", "If-Modified-Since", "If-Unmodified-Since",
	"If-Match",	  "If-None-Match",     "Content-Range",	    "If-Range",
	"Expect",	  "Authorization",
};

static const char *const http_identity_exact[] = {
	"X-Forwarded-Client-Cert",
	"Client-Cert",
	"Client-Cert-Chain",
};

static const char *const http_identity_prefix[] = {
	"X-SSL-",
	"X-Client-",
};

static bool name_eq(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

bool http_is_identity_header(const char *name, size_t len, const struct gw_header *headers,
			     size_t nheaders)
{
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(http_identity_exact); i++)
		if (name_eq(name, len, http_identity_exact[i]))
			return true;
	for (i = 0; i < ARRAY_SIZE(http_identity_prefix); i++) {
		n = strlen(http_identity_prefix[i]);
		if (len >= n && strncasecmp(name, http_identity_prefix[i], n) == 0)
			return true;
	}
	for (i = 0; i < nheaders; i++)
		if (headers[i].name && name_eq(name, len, headers[i].name))
			return true;
	return false;
}

/* nginx's lowcase[] table: the characters of a valid header name. */
static bool name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

static bool is_alpha(unsigned char c)
{
	c |= 0x20;
	return c >= 'a' && c <= 'z';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static size_t cfg_client_buf(const struct http_rewrite *rw)
{
	return rw->client_header_buffer_size > 0 ? (size_t)rw->client_header_buffer_size
						 : HTTP_DEF_CLIENT_BUF;
}

static int cfg_large_num(const struct http_rewrite *rw)
{
	return rw->header_buffer_count > 0 ? rw->header_buffer_count : HTTP_DEF_LARGE_NUM;
}

static size_t cfg_large_size(const struct http_rewrite *rw)
{
	return rw->header_buffer_size > 0 ? (size_t)rw->header_buffer_size : HTTP_DEF_LARGE_SIZE;
}

/* Forget the current head and get ready for the next request. */
static void head_reset(struct http_parser *p)
{
	buf_reset(&p->head);
	buf_reset(&p->fwd);
	buf_reset(&p->xff);
	buf_reset(&p->host);
	p->lstate = RL_START;
	p->in_reqline = true;
	p->upgrade_after = false;
	p->close_after = false;
	p->line_start = 0;
	p->name_end = p->val_start = p->val_end = 0;
	p->line_invalid = p->line_colon = false;
	p->uri_start = p->uri_end = p->host_start = p->host_end = p->method_len = 0;
	p->http_major = p->http_minor = 0;
	p->hflags = 0;
	p->cl_start = p->cl_end = p->te_start = p->te_end = 0;
	p->lbuf_size = 0;
	p->lbuf_used = 0;
	p->lbuf_busy = 0;
	p->line_len = 0;
	p->remaining = 0;
	p->chunk_state = CH_START;
}

void http_parser_init(struct http_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->state = HTTP_S_HEAD;
	head_reset(p);
}

void http_parser_free(struct http_parser *p)
{
	if (!p)
		return;
	buf_free(&p->head);
	buf_free(&p->held);
	buf_free(&p->fwd);
	buf_free(&p->xff);
	buf_free(&p->host);
}

static int fail(struct http_parser *p, int status)
{
	p->state = HTTP_S_ERROR;
	p->err_status = status;
	return -EBADMSG;
}

/*
 * nginx's ngx_http_validate_host(): on success the host is stored in
 * p->host lowercased, without the port and without a trailing dot.
 * Returns 0 or -EBADMSG (nginx answers 400), -ENOMEM.
 */
static int validate_host(struct http_parser *p, const char *h, size_t len)
{
	size_t i, dot_pos = len, host_len = len;
	int st = 0; /* 0 usual, 1 ip literal, 2 rest */
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)h[i];
		switch (c) {
		case '.':
			if (i > 0 && dot_pos == i - 1)
				return -EBADMSG;
			dot_pos = i;
			break;
		case ':':
			if (st == 0) {
				host_len = i;
				st = 2;
			}
			break;
		case '[':
			if (i == 0)
				st = 1;
			break;
		case ']':
			if (st == 1) {
				host_len = i + 1;
				st = 2;
			}
			break;
		default:
			if (c == '/' || c <= 0x20 || c == 0x7f)
				return -EBADMSG;
			break;
		}
	}
	if (host_len && dot_pos == host_len - 1)
		host_len--;
	if (host_len == 0)
		return -EBADMSG;

	buf_reset(&p->host);
	if (buf_reserve(&p->host, host_len))
		return -ENOMEM;
	for (i = 0; i < host_len; i++) {
		c = (unsigned char)h[i];
		p->host.data[p->host.len++] = (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : (char)c;
	}
	p->host.data[p->host.len] = '\0';
	return 0;
}

/*
 * The checks of nginx's ngx_http_parse_complex_uri() that refuse a path:
 * a bad or NUL %-escape, or a "/.." above the root (after %-decoding, with
 * "//" merged). Only the path is examined: it ends at the first raw '?' or
 * '#'. Returns true if nginx accepts it.
 */
static bool uri_path_ok(const char *u, size_t len)
{
	enum { SEG, SLASH, DOT, DOTDOT } st = SEG;
	unsigned long depth = 0;
	size_t i = 0;
	int hi, lo;
	unsigned char c;
	bool literal;

	while (i < len) {
		c = (unsigned char)u[i++];
		literal = false;
		if (c == '?' || c == '#')
			break;
		if (c == '%') {
			if (i + 2 > len)
				return false;
			hi = hex_val((unsigned char)u[i]);
			lo = hex_val((unsigned char)u[i + 1]);
			if (hi < 0 || lo < 0)
				return false;
			i += 2;
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0)
				return false;
			/* a decoded '%', '#' or '?' is an ordinary character */
			literal = c == '%' || c == '#' || c == '?';
		}
		switch (st) {
		case SEG:
			if (c == '/' && !literal)
				st = SLASH;
			break;
		case SLASH:
			if (literal || (c != '/' && c != '.')) {
				st = SEG;
				depth++;
			} else if (c == '.') {
				st = DOT;
			}
			break;
		case DOT:
			if (c == '/' && !literal) {
				st = SLASH;
			} else if (c == '.' && !literal) {
				st = DOTDOT;
			} else {
				st = SEG;
				depth++;
			}
			break;
		case DOTDOT:
			if (c == '/' && !literal) {
				if (depth == 0)
					return false;
				depth--;
				st = SLASH;
			} else {
				st = SEG;
				depth++;
			}
			break;
		}
	}
	return !(st == DOTDOT && depth == 0);
}

/* The request line is complete (head holds it, terminator included). */
static int reqline_done(struct http_parser *p)
{
	int ret;

	if (p->http_major == 0) /* HTTP/0.9: nginx would answer without headers */
		return fail(p, 400);
	if (p->uri_start && p->uri_end > p->uri_start &&
	    !uri_path_ok(p->head.data + p->uri_start, p->uri_end - p->uri_start))
		return fail(p, 400);
	if (p->host_start) {
		ret = validate_host(p, p->head.data + p->host_start, p->host_end - p->host_start);
		if (ret == -EBADMSG)
			return fail(p, 400);
		if (ret)
			return ret;
		p->hflags |= HTTP_HF_RL_HOST;
	}
	if (buf_append(&p->fwd, p->head.data, p->head.len))
		return -ENOMEM;
	p->in_reqline = false;
	p->lstate = H_START;
	p->line_len = 0;
	return 0;
}

/* Does a Connection value list @token? */
static bool conn_has_token(const char *v, size_t len, const char *token)
{
	size_t i = 0, s, e;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (name_eq(v + s, e - s, token))
			return true;
	}
	return false;
}

/* A header line is complete: head[line_start, end) with its terminator. */
static int header_line_done(struct http_parser *p, const struct http_rewrite *rw, size_t end)
{
	const char *name = p->head.data + p->line_start;
	size_t nlen = p->name_end - p->line_start;
	const char *val = p->head.data + p->val_start;
	size_t vlen = p->val_end - p->val_start;
	unsigned bit;
	size_t i;
	int ret;

	p->lstate = H_START;
	p->line_len = 0;

	/* ignore_invalid_headers (nginx default): neither used nor proxied */
	if (p->line_invalid)
		return 0;
	if (!p->line_colon)
		return fail(p, 400);

	if (name_eq(name, nlen, "Host")) {
		if (p->hflags & HTTP_HF_HOST)
			return fail(p, 400);
		p->hflags |= HTTP_HF_HOST;
		if (p->hflags & HTTP_HF_RL_HOST) {
			/* nginx validates it all the same; $host stays the request line's */
			struct buf keep = p->host;

			memset(&p->host, 0, sizeof(p->host));
			ret = validate_host(p, val, vlen);
			buf_free(&p->host);
			p->host = keep;
		} else {
			ret = validate_host(p, val, vlen);
		}
		if (ret == -EBADMSG)
			return fail(p, 400);
		if (ret)
			return ret;
	}
	for (i = 0; i < ARRAY_SIZE(http_unique); i++) {
		if (!name_eq(name, nlen, http_unique[i]))
			continue;
		bit = 1U << (HTTP_HF_UNIQUE_SHIFT + i);
		if (p->hflags & bit)
			return fail(p, 400);
		p->hflags |= bit;
		if (i == 0) {
			p->hflags |= HTTP_HF_CL;
			p->cl_start = p->val_start;
			p->cl_end = p->val_end;
		} else if (i == 1) {
			p->hflags |= HTTP_HF_TE;
			p->te_start = p->val_start;
			p->te_end = p->val_end;
		}
	}
	if (name_eq(name, nlen, "Connection")) {
		if (conn_has_token(val, vlen, "upgrade"))
			p->hflags |= HTTP_HF_CONN_UPGRADE;
		if (conn_has_token(val, vlen, "close"))
			p->hflags |= HTTP_HF_CONN_CLOSE;
		if (conn_has_token(val, vlen, "keep-alive"))
			p->hflags |= HTTP_HF_CONN_KA;
	}
	if (name_eq(name, nlen, "Upgrade") && vlen)
		p->hflags |= HTTP_HF_UPGRADE;
	if (name_eq(name, nlen, "X-Forwarded-For")) {
		if ((p->hflags & HTTP_HF_XFF) && buf_append(&p->xff, ", ", 2))
			return -ENOMEM;
		if (buf_append(&p->xff, val, vlen))
			return -ENOMEM;
		p->hflags |= HTTP_HF_XFF;
	}

	if (http_is_identity_header(name, nlen, rw->headers, rw->nheaders))
		return 0;
	if (buf_append(&p->fwd, name, end - p->line_start))
		return -ENOMEM;
	return 0;
}

/* nginx's ngx_atoof(): digits only, at least one, no overflow. */
static int parse_length(const char *s, size_t len, uint64_t *res)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (!is_digit((unsigned char)s[i]))
			return -EINVAL;
		if (v > (uint64_t)HTTP_MAX_OFF / 10 ||
		    (v == (uint64_t)HTTP_MAX_OFF / 10 &&
		     (uint64_t)(s[i] - '0') > (uint64_t)HTTP_MAX_OFF % 10))
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*res = v;
	return 0;
}

static void request_done(struct http_parser *p)
{
	bool up = p->upgrade_after, closed = p->close_after;

	head_reset(p);
	p->state = up ? HTTP_S_UPGRADE_WAIT : closed ? HTTP_S_CLOSED : HTTP_S_HEAD;
	p->upgrade_closes = up && closed; /* refused, it closes as any other */
}

/* Does the client close after this request ("Connection: close", HTTP/1.0 without keep-alive)? */
static bool request_closes(const struct http_parser *p, int version)
{
	return (p->hflags & HTTP_HF_CONN_CLOSE) ||
	       (version < 1001 && !(p->hflags & HTTP_HF_CONN_KA));
}

/*
 * The next header line of the head @h at or after *@next (which moves past
 * it): its value without surrounding blanks, its name in *@name, *@nlen;
 * NULL at the end. Lines without ':' (the request or status line) are skipped.
 */
static const char *header_next(const char *h, size_t len, const char **next, const char **name,
			       size_t *nlen, size_t *vlen)
{
	const char *e = h + len, *l = *next, *colon, *eol;

	for (; l < e; l = eol + 1) {
		eol = memchr(l, '\n', (size_t)(e - l));
		if (!eol)
			return NULL;
		colon = memchr(l, ':', (size_t)(eol - l));
		*next = eol + 1;
		if (!colon)
			continue;
		const char *v = colon + 1, *ve = eol;

		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		*name = l;
		*nlen = (size_t)(colon - l);
		*vlen = (size_t)(ve - v);
		return v;
	}
	return NULL;
}

/* The value of the next "@name:" line of @h at or after *@next, as header_next(). */
static const char *header_find(const char *h, size_t len, const char *name, size_t *vlen,
			       const char **next)
{
	const char *n, *v;
	size_t nlen;

	while ((v = header_next(h, len, next, &n, &nlen, vlen)))
		if (name_eq(n, nlen, name))
			return v;
	return NULL;
}

/* Is there a "@name:" line in the header lines @h? */
static bool has_header_line(const char *h, size_t len, const char *name)
{
	const char *next = h;
	size_t vlen;

	return header_find(h, len, name, &vlen, &next) != NULL;
}

/* Does a "Connection:" line of the head @h list @token? */
static bool head_conn_token(const char *h, size_t len, const char *token)
{
	const char *next = h, *v;
	size_t vlen;

	while ((v = header_find(h, len, "Connection", &vlen, &next)))
		if (conn_has_token(v, vlen, token))
			return true;
	return false;
}

/* rw->track: remember what the response to the request just forwarded depends on. */
static void request_track(struct http_parser *p, int version)
{
	unsigned char f = 0;

	if (name_eq(p->head.data, p->method_len, "HEAD"))
		f |= HTTP_RQ_HEAD;
	if (name_eq(p->head.data, p->method_len, "POST") ||
	    name_eq(p->head.data, p->method_len, "PATCH") ||
	    name_eq(p->head.data, p->method_len, "LOCK"))
		f |= HTTP_RQ_NONIDEM;
	if (request_closes(p, version))
		f |= HTTP_RQ_CLOSE;
	if (p->rq_count == HTTP_RQ_MAX) {
		p->rq_lost = true;
	} else {
		p->rq[(p->rq_first + p->rq_count) % HTTP_RQ_MAX] = f;
		p->rq_count++;
	}
	p->close_after = (f & HTTP_RQ_CLOSE) != 0;
}

/* The empty line ending the head was read: check, then forward the head. */
static int head_done(struct http_parser *p, const struct http_rewrite *rw, struct buf *out)
{
	int version = p->http_major * 1000 + p->http_minor;
	const char *te = p->head.data + p->te_start;
	uint64_t cl = 0;
	bool chunked = false;
	int ret;

	/* the order of nginx's ngx_http_process_request_header() */
	if (version > 1000 && !(p->hflags & HTTP_HF_HOST))
		return fail(p, 400);
	if ((p->hflags & HTTP_HF_CL) &&
	    parse_length(p->head.data + p->cl_start, p->cl_end - p->cl_start, &cl))
		return fail(p, 400);
	if (p->hflags & HTTP_HF_TE) {
		if (version < 1001)
			return fail(p, 400);
		if (p->te_end - p->te_start != 7 || strncasecmp(te, "chunked", 7) != 0)
			return fail(p, 501);
		if (p->hflags & HTTP_HF_CL)
			return fail(p, 400);
		chunked = true;
	}
	if (name_eq(p->head.data, p->method_len, "CONNECT") ||
	    name_eq(p->head.data, p->method_len, "TRACE")) {
		/* nginx compares methods case-sensitively; they are upper case here */
		return fail(p, 405);
	}

	size_t mark = out->len;

	if (buf_append(out, p->fwd.data, p->fwd.len))
		return -ENOMEM;
	if (rw->inject) {
		ret = rw->inject(rw->inject_arg, (p->hflags & HTTP_HF_XFF) ? p->xff.data : NULL,
				 p->host.len ? p->host.data : NULL, out);
		if (ret > 0) {
			/* the relay refuses this request (e.g. 421): none of it goes out */
			out->len = mark;
			out->data[mark] = '\0';
			return fail(p, ret);
		}
		if (ret)
			return ret;
	}
	if (!rw->track && (p->hflags & HTTP_HF_CONN_CLOSE) &&
	    http_is_identity_header("Connection", 10, rw->headers, rw->nheaders) &&
	    !has_header_line(out->data + mark, out->len - mark, "Connection")) {
		/*
		 * proxy_set_header Connection "" dropped the client's "close" and
		 * the backend connection is this client's alone (no keepalive
		 * pool, or tier K, which does not read responses): the backend
		 * must close after the answer, or a client that reads to the end
		 * of the connection waits for keepalive_timeout. nginx closes
		 * such a client after the response itself.
		 */
		if (buf_puts(out, "Connection: close\r\n"))
			return -ENOMEM;
	}
	if (rw->track && (head_conn_token(out->data + mark, out->len - mark, "close") ||
			  (version < 1001 &&
			   !head_conn_token(out->data + mark, out->len - mark, "keep-alive")))) {
		/*
		 * The backend was told to close after this request (the client's
		 * "close" kept, proxy_set_header Connection close, HTTP/1.0): it
		 * need not say so in its answer, but its connection is done.
		 */
		p->close_sent = true;
	}
	if (buf_append(out, "\r\n", 2))
		return -ENOMEM;
	p->requests++;

	p->upgrade_after = (p->hflags & (HTTP_HF_CONN_UPGRADE | HTTP_HF_UPGRADE)) ==
			   (HTTP_HF_CONN_UPGRADE | HTTP_HF_UPGRADE);
	if (rw->track)
		request_track(p, version);
	if (chunked) {
		p->state = HTTP_S_BODY_CHUNKED;
		p->chunk_state = CH_START;
		p->remaining = 0;
		buf_reset(&p->head);
	} else if (cl) {
		p->state = HTTP_S_BODY_CL;
		p->remaining = cl;
		buf_reset(&p->head);
	} else {
		request_done(p);
	}
	return 0;
}

/*
 * nginx's header buffer is full and the head is not complete: what
 * ngx_http_alloc_large_header_buffer() decides. The current partial line
 * (p->line_len bytes) moves whole to a new S-byte buffer while fewer than N
 * are in use; a partial line of S bytes or more cannot move. A refusal is
 * 414 in the request line, 494 after it.
 */
static int lbuf_full(struct http_parser *p, const struct http_rewrite *rw)
{
	size_t s = cfg_large_size(rw);

	if (p->in_reqline && p->lstate == RL_START) {
		/* only CR/LF so far: nginx reuses the buffer */
		p->lbuf_used = 0;
		return 0;
	}
	if (p->line_len && p->line_len >= s)
		goto decline;
	if (p->lbuf_busy >= cfg_large_num(rw))
		goto decline;
	p->lbuf_busy++;
	p->lbuf_size = s;
	p->lbuf_used = p->line_len;
	return 0;
decline:
	return fail(p, p->in_reqline ? 414 : 494);
}

static bool method_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}

/*
 * One byte of the request line. Returns 0, or -EBADMSG / -ENOMEM.
 * i is the byte's offset in p->head (already appended).
 */
static int reqline_byte(struct http_parser *p, unsigned char c, size_t i)
{
	switch (p->lstate) {
	case RL_METHOD:
		if (c == ' ') {
			p->method_len = i;
			p->lstate = RL_SP_URI;
		} else if (!method_char(c)) {
			return fail(p, 400);
		}
		return 0;
	case RL_SP_URI:
		if (c == '/') {
			p->uri_start = i;
			p->lstate = RL_URI;
		} else if (is_alpha(c)) {
			p->lstate = RL_SCHEMA;
		} else if (c != ' ') {
			return fail(p, 400);
		}
		return 0;
	case RL_SCHEMA:
		if (is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.')
			return 0;
		if (c != ':')
			return fail(p, 400);
		p->lstate = RL_SCHEMA_SL;
		return 0;
	case RL_SCHEMA_SL:
	case RL_SCHEMA_SL2:
		if (c != '/')
			return fail(p, 400);
		p->lstate = p->lstate == RL_SCHEMA_SL ? RL_SCHEMA_SL2 : RL_HOST_START;
		return 0;
	case RL_HOST_START:
		p->host_start = i;
		if (c == '[') {
			p->lstate = RL_HOST_LIT;
			return 0;
		}
		p->lstate = RL_HOST;
		/* fall through */
	case RL_HOST:
		if (is_alpha(c) || is_digit(c) || c == '.' || c == '-')
			return 0;
		/* fall through */
	case RL_HOST_END:
		if (p->lstate != RL_HOST_END) /* an IP literal's end is already set */
			p->host_end = i;
		switch (c) {
		case ':':
			p->lstate = RL_PORT;
			return 0;
		case '/':
		case '?':
			p->uri_start = i;
			p->lstate = RL_URI;
			return 0;
		case ' ':
			p->lstate = RL_SP_VERSION;
			return 0;
		default:
			return fail(p, 400);
		}
	case RL_HOST_LIT:
		if (is_alpha(c) || is_digit(c) || strchr(":-._~!$&'()*+,;=", c)) {
			if (c == 0)
				return fail(p, 400);
			return 0;
		}
		if (c != ']')
			return fail(p, 400);
		p->host_end = i + 1;
		p->lstate = RL_HOST_END;
		return 0;
	case RL_PORT:
		if (is_digit(c))
			return 0;
		switch (c) {
		case '/':
		case '?':
			p->uri_start = i;
			p->lstate = RL_URI;
			return 0;
		case ' ':
			p->lstate = RL_SP_VERSION;
			return 0;
		default:
			return fail(p, 400);
		}
	case RL_URI:
		if (c == ' ') {
			p->uri_end = i;
			p->lstate = RL_SP_VERSION;
			return 0;
		}
		/* CR or LF here is HTTP/0.9 */
		if (c < 0x20 || c == 0x7f)
			return fail(p, 400);
		return 0;
	case RL_SP_VERSION:
		if (c == ' ')
			return 0;
		if (c != 'H') /* CR/LF: HTTP/0.9 */
			return fail(p, 400);
		p->lstate = RL_H;
		return 0;
	case RL_H:
	case RL_HT:
	case RL_HTT:
	case RL_HTTP: {
		static const char want[] = "TTP/";

		if (c != (unsigned char)want[p->lstate - RL_H])
			return fail(p, 400);
		p->lstate++;
		return 0;
	}
	case RL_MAJOR1:
		if (c < '1' || c > '9')
			return fail(p, 400);
		p->http_major = c - '0';
		if (p->http_major > 1)
			return fail(p, 505);
		p->lstate = RL_MAJOR;
		return 0;
	case RL_MAJOR:
		if (c == '.') {
			p->lstate = RL_MINOR1;
			return 0;
		}
		if (!is_digit(c))
			return fail(p, 400);
		return fail(p, 505); /* two digits: at least 10 */
	case RL_MINOR1:
		if (!is_digit(c))
			return fail(p, 400);
		p->http_minor = c - '0';
		p->lstate = RL_MINOR;
		return 0;
	case RL_MINOR:
		if (c == CR) {
			p->lstate = RL_ALMOST;
			return 0;
		}
		if (c == LF)
			return reqline_done(p);
		if (c == ' ') {
			p->lstate = RL_SP_AFTER;
			return 0;
		}
		if (!is_digit(c) || p->http_minor > 99)
			return fail(p, 400);
		p->http_minor = p->http_minor * 10 + (c - '0');
		return 0;
	case RL_SP_AFTER:
		if (c == ' ')
			return 0;
		if (c == CR) {
			p->lstate = RL_ALMOST;
			return 0;
		}
		if (c == LF)
			return reqline_done(p);
		return fail(p, 400);
	case RL_ALMOST:
		if (c != LF)
			return fail(p, 400);
		return reqline_done(p);
	}
	return fail(p, 400);
}

/* One byte of a header line; i is its offset in p->head. */
static int header_byte(struct http_parser *p, const struct http_rewrite *rw, unsigned char c,
		       size_t i, struct buf *out, bool *done)
{
	switch (p->lstate) {
	case H_START:
		p->line_start = i;
		p->line_invalid = false;
		p->line_colon = false;
		if (c == CR) {
			p->lstate = H_HEAD_ALMOST;
			return 0;
		}
		if (c == LF)
			goto head_end;
		p->lstate = H_NAME;
		if (name_char(c))
			return 0;
		if (c <= 0x20 || c == 0x7f || c == ':')
			return fail(p, 400); /* obs-fold, NUL, empty name */
		p->line_invalid = true;	     /* '_' and other non-token bytes */
		return 0;
	case H_NAME:
		if (name_char(c))
			return 0;
		if (c == ':') {
			p->name_end = i;
			p->line_colon = true;
			p->lstate = H_SP_VALUE;
			return 0;
		}
		if (c == CR || c == LF) {
			p->name_end = p->val_start = p->val_end = i;
			if (c == LF)
				return header_line_done(p, rw, i + 1);
			p->lstate = H_ALMOST;
			return 0;
		}
		if (c <= 0x20 || c == 0x7f)
			return fail(p, 400);
		p->line_invalid = true;
		return 0;
	case H_SP_VALUE:
		switch (c) {
		case ' ':
			return 0;
		case CR:
		case LF:
			p->val_start = p->val_end = i;
			if (c == LF)
				return header_line_done(p, rw, i + 1);
			p->lstate = H_ALMOST;
			return 0;
		case '\0':
			return fail(p, 400);
		default:
			p->val_start = i;
			p->lstate = H_VALUE;
			return 0;
		}
	case H_VALUE:
	case H_SP_AFTER:
		switch (c) {
		case ' ':
			if (p->lstate == H_VALUE)
				p->val_end = i;
			p->lstate = H_SP_AFTER;
			return 0;
		case CR:
		case LF:
			if (p->lstate == H_VALUE)
				p->val_end = i;
			if (c == LF)
				return header_line_done(p, rw, i + 1);
			p->lstate = H_ALMOST;
			return 0;
		case '\0':
			return fail(p, 400);
		default:
			p->lstate = H_VALUE;
			return 0;
		}
	case H_ALMOST:
		if (c == LF)
			return header_line_done(p, rw, i + 1);
		if (c == CR)
			return 0;
		return fail(p, 400);
	case H_HEAD_ALMOST:
		if (c != LF)
			return fail(p, 400);
		goto head_end;
	}
	return fail(p, 400);

head_end:
	*done = true;
	return head_done(p, rw, out);
}

/* One byte while collecting a head. */
static int head_byte(struct http_parser *p, const struct http_rewrite *rw, unsigned char c,
		     struct buf *out)
{
	bool done = false;
	size_t i;
	int ret;

	if (!p->lbuf_size)
		p->lbuf_size = cfg_client_buf(rw);
	p->lbuf_used++;

	if (p->in_reqline && p->lstate == RL_START) {
		if (c == CR || c == LF)
			goto account; /* leading empty lines are skipped, as nginx does */
		if (!method_char(c))
			return fail(p, 400);
		p->lstate = RL_METHOD;
	}
	i = p->head.len;
	if (buf_append(&p->head, &c, 1))
		return -ENOMEM;
	p->line_len++;
	if (p->in_reqline)
		ret = reqline_byte(p, c, i);
	else
		ret = header_byte(p, rw, c, i, out, &done);
	if (ret || done)
		return ret;
account:
	if (p->lbuf_used >= p->lbuf_size)
		return lbuf_full(p, rw);
	return 0;
}

/*
 * A complete trailer field line is in p->head: keep it unless it is an
 * identity header, has an invalid name, no ':' or is an obs-fold line.
 */
static int trailer_line_done(struct http_parser *p, const struct http_rewrite *rw, struct buf *out)
{
	const char *l = p->head.data;
	size_t len = p->head.len, n = 0;

	while (n < len && name_char((unsigned char)l[n]))
		n++;
	if (n && n < len && l[n] == ':' &&
	    !http_is_identity_header(l, n, rw->headers, rw->nheaders) && buf_append(out, l, len))
		return -ENOMEM;
	buf_reset(&p->head);
	return 0;
}

/* What a byte of chunked framing was (chunk_frame()). */
enum chunk_ev {
	CHE_BAD = -1, /* not valid framing: nginx answers 400 */
	CHE_FRAME,    /* size, extension or line end */
	CHE_TRAILER,  /* a byte of a trailer line; the state is CH_TRAILER once it is complete */
	CHE_DONE,     /* the last byte of the chunked body */
};

/*
 * One byte of chunked framing (not chunk data), nginx 1.22's
 * ngx_http_parse_chunked(): the request parser and the response tracker
 * share it. Chunk data is the caller's (CH_DATA, then CH_AFTER_DATA).
 */
static enum chunk_ev chunk_frame(int *st, uint64_t *rem, unsigned char c)
{
	int h;

	switch (*st) {
	case CH_START:
		h = hex_val(c);
		if (h < 0)
			return CHE_BAD;
		*rem = (uint64_t)h;
		*st = CH_SIZE;
		return CHE_FRAME;
	case CH_SIZE:
		if (*rem > (uint64_t)HTTP_MAX_OFF / 16)
			return CHE_BAD;
		h = hex_val(c);
		if (h >= 0) {
			*rem = *rem * 16 + (uint64_t)h;
			return CHE_FRAME;
		}
		switch (c) {
		case CR:
			*st = *rem ? CH_EXT_ALMOST : CH_LAST_EXT_ALMOST;
			break;
		case LF:
			*st = *rem ? CH_DATA : CH_TRAILER;
			break;
		case ';':
		case ' ':
		case '\t':
			*st = *rem ? CH_EXT : CH_LAST_EXT;
			break;
		default:
			return CHE_BAD;
		}
		return *rem > (uint64_t)HTTP_MAX_OFF - 5 ? CHE_BAD : CHE_FRAME;
	case CH_EXT:
	case CH_LAST_EXT:
		if (c == CR)
			(*st)++; /* the matching *_ALMOST state */
		else if (c == LF)
			*st = *st == CH_EXT ? CH_DATA : CH_TRAILER;
		return CHE_FRAME;
	case CH_EXT_ALMOST:
	case CH_LAST_EXT_ALMOST:
		if (c != LF)
			return CHE_BAD;
		*st = *st == CH_EXT_ALMOST ? CH_DATA : CH_TRAILER;
		return CHE_FRAME;
	case CH_AFTER_DATA:
		if (c == CR)
			*st = CH_AFTER_DATA_ALMOST;
		else if (c == LF)
			*st = CH_START;
		else
			return CHE_BAD;
		return CHE_FRAME;
	case CH_AFTER_DATA_ALMOST:
		if (c != LF)
			return CHE_BAD;
		*st = CH_START;
		return CHE_FRAME;
	case CH_TRAILER:
		if (c == CR) {
			*st = CH_TRAILER_ALMOST;
			return CHE_FRAME;
		}
		if (c == LF)
			return CHE_DONE;
		*st = CH_TRAILER_LINE;
		return CHE_TRAILER;
	case CH_TRAILER_ALMOST:
		return c == LF ? CHE_DONE : CHE_BAD;
	case CH_TRAILER_LINE:
		if (c == CR)
			*st = CH_TRAILER_LINE_ALMOST;
		else if (c == LF)
			*st = CH_TRAILER;
		return CHE_TRAILER;
	case CH_TRAILER_LINE_ALMOST:
		if (c != LF)
			return CHE_BAD;
		*st = CH_TRAILER;
		return CHE_TRAILER;
	default:
		return CHE_BAD;
	}
}

/* One byte of chunked framing of a request; passes it to @out. */
static int chunk_byte(struct http_parser *p, const struct http_rewrite *rw, unsigned char c,
		      struct buf *out)
{
	switch (chunk_frame(&p->chunk_state, &p->remaining, c)) {
	case CHE_FRAME:
		return buf_append(out, &c, 1) ? -ENOMEM : 0;
	case CHE_TRAILER:
		/* trailer lines are held until complete, then kept or dropped */
		if (p->head.len >= cfg_large_size(rw))
			return fail(p, 400);
		if (buf_append(&p->head, &c, 1))
			return -ENOMEM;
		if (p->chunk_state == CH_TRAILER)
			return trailer_line_done(p, rw, out);
		return 0;
	case CHE_DONE:
		if (buf_append(out, &c, 1))
			return -ENOMEM;
		request_done(p);
		return 0;
	default:
		return fail(p, 400);
	}
}

uint64_t http_passthrough_len(const struct http_parser *p)
{
	switch (p->state) {
	case HTTP_S_BODY_CL:
		return p->remaining;
	case HTTP_S_BODY_CHUNKED:
		return p->chunk_state == CH_DATA ? p->remaining : 0;
	case HTTP_S_OPAQUE:
		return UINT64_MAX;
	default:
		return 0;
	}
}

void http_passthrough_done(struct http_parser *p, uint64_t n)
{
	if (p->state == HTTP_S_OPAQUE || n > http_passthrough_len(p))
		return;
	p->remaining -= n;
	if (p->remaining)
		return;
	if (p->state == HTTP_S_BODY_CL)
		request_done(p);
	else
		p->chunk_state = CH_AFTER_DATA;
}

int http_feed(struct http_parser *p, const struct http_rewrite *rw, const char *data, size_t len,
	      struct buf *out, int *status)
{
	size_t i = 0, n;
	int ret;

	while (i < len) {
		switch (p->state) {
		case HTTP_S_HEAD:
			ret = head_byte(p, rw, (unsigned char)data[i++], out);
			if (ret)
				goto err;
			break;
		case HTTP_S_BODY_CL:
			n = len - i;
			if (n > p->remaining)
				n = (size_t)p->remaining;
			if (buf_append(out, data + i, n))
				return -ENOMEM;
			i += n;
			p->remaining -= n;
			if (!p->remaining)
				request_done(p);
			break;
		case HTTP_S_BODY_CHUNKED:
			if (p->chunk_state == CH_DATA) {
				n = len - i;
				if (n > p->remaining)
					n = (size_t)p->remaining;
				if (buf_append(out, data + i, n))
					return -ENOMEM;
				i += n;
				p->remaining -= n;
				if (!p->remaining)
					p->chunk_state = CH_AFTER_DATA;
				break;
			}
			ret = chunk_byte(p, rw, (unsigned char)data[i++], out);
			if (ret)
				goto err;
			break;
		case HTTP_S_UPGRADE_WAIT:
			if (buf_append(&p->held, data + i, len - i))
				return -ENOMEM;
			i = len;
			break;
		case HTTP_S_OPAQUE:
			if (buf_append(out, data + i, len - i))
				return -ENOMEM;
			i = len;
			break;
		case HTTP_S_ERROR:
			ret = -EBADMSG;
			goto err;
		case HTTP_S_CLOSED:
			i = len; /* nothing after a request that closes the connection */
			break;
		}
	}
	return 0;
err:
	if (ret == -EBADMSG && status)
		*status = p->err_status;
	return ret;
}

int http_upgrade_done(struct http_parser *p, const struct http_rewrite *rw, bool switched,
		      struct buf *out, int *status)
{
	struct buf held;
	int ret;

	if (p->state != HTTP_S_UPGRADE_WAIT)
		return -EINVAL;
	held = p->held;
	memset(&p->held, 0, sizeof(p->held));
	if (switched) {
		p->state = HTTP_S_OPAQUE;
		ret = buf_append(out, buf_head(&held), buf_avail(&held)) ? -ENOMEM : 0;
	} else {
		p->state = p->upgrade_closes ? HTTP_S_CLOSED : HTTP_S_HEAD;
		ret = http_feed(p, rw, buf_head(&held), buf_avail(&held), out, status);
	}
	p->upgrade_closes = false;
	buf_free(&held);
	return ret;
}

/* ------------------------------------------------------------- responses */

void http_resp_init(struct http_resp *r)
{
	memset(r, 0, sizeof(*r));
}

void http_resp_free(struct http_resp *r)
{
	buf_free(&r->head);
}

static void resp_lost(struct http_resp *r)
{
	r->state = HR_LOST;
	buf_free(&r->head);
}

/* A final response is complete: the oldest outstanding request is answered. */
static void resp_done(struct http_resp *r, struct http_parser *req)
{
	unsigned char f = req->rq[req->rq_first];

	req->rq_first = (req->rq_first + 1) % HTTP_RQ_MAX;
	req->rq_count--;
	r->done++;
	if (f & HTTP_RQ_CLOSE)
		r->close_due = true;
	r->state = HR_HEAD;
	buf_reset(&r->head);
}

/* The head is complete: decide how the body is framed. */
static void resp_head_done(struct http_resp *r, struct http_parser *req)
{
	const char *h = r->head.data, *v, *next, *name;
	size_t len = r->head.len, vlen, nlen;
	uint64_t cl = 0;
	bool has_cl = false, chunked = false, te = false;
	int status;

	if (len < 12 || strncmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') ||
	    h[8] != ' ' || !is_digit((unsigned char)h[9]) || !is_digit((unsigned char)h[10]) ||
	    !is_digit((unsigned char)h[11])) {
		resp_lost(r);
		return;
	}
	status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	if (h[7] == '0')
		r->close = true;
	next = (const char *)memchr(h, '\n', len) + 1;
	while ((v = header_next(h, len, &next, &name, &nlen, &vlen))) {
		uint64_t n;

		if (name_eq(name, nlen, "Connection")) {
			if (conn_has_token(v, vlen, "close"))
				r->close = true;
		} else if (name_eq(name, nlen, "Content-Length")) {
			if (parse_length(v, vlen, &n) || (has_cl && n != cl)) {
				resp_lost(r);
				return;
			}
			cl = n;
			has_cl = true;
		} else if (name_eq(name, nlen, "Transfer-Encoding")) {
			te = true;
			chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0 &&
				  (vlen == 7 || v[vlen - 8] == ',' || v[vlen - 8] == ' ');
		}
	}
	if (status == 101) {
		resp_lost(r); /* another protocol from here */
		return;
	}
	if (status >= 100 && status < 200) {
		buf_reset(&r->head); /* interim: the final response follows */
		return;
	}
	if ((req->rq[req->rq_first] & HTTP_RQ_HEAD) || status == 204 || status == 304) {
		resp_done(r, req);
		return;
	}
	if (te) {
		if (!chunked) {
			resp_lost(r); /* ends with the connection */
			return;
		}
		r->state = HR_BODY_CHUNKED;
		r->chunk_state = CH_START;
		r->remaining = 0;
		return;
	}
	if (!has_cl) {
		resp_lost(r); /* ends with the connection */
		return;
	}
	if (!cl) {
		resp_done(r, req);
		return;
	}
	r->state = HR_BODY_CL;
	r->remaining = cl;
}

/* Body bytes (of @avail) that belong to the current body or chunk. */
static size_t resp_body(struct http_resp *r, size_t avail)
{
	size_t n = avail > r->remaining ? (size_t)r->remaining : avail;

	r->remaining -= n;
	return n;
}

int http_resp_feed(struct http_resp *r, struct http_parser *req, const char *data, size_t len)
{
	size_t i = 0, n;
	bool end;

	while (i < len) {
		switch (r->state) {
		case HR_HEAD:
			if (!r->head.len && (req->rq_lost || !req->rq_count)) {
				resp_lost(r); /* nothing was asked that this could answer */
				return 0;
			}
			/* the head's bytes only: up to its empty line ("\n\r\n" or "\n\n") */
			end = false;
			for (n = i; n < len && !end; n++) {
				unsigned char ch = (unsigned char)data[n];

				if (ch == LF && r->eol)
					end = true;
				else
					r->eol = ch == LF ? 1 : ch == CR && r->eol == 1 ? 2 : 0;
			}
			if (r->head.len + (n - i) > HTTP_RESP_HEAD_MAX) {
				resp_lost(r);
				return 0;
			}
			if (buf_append(&r->head, data + i, n - i))
				return -ENOMEM;
			i = n;
			if (end) {
				r->eol = 0;
				resp_head_done(r, req);
			}
			break;
		case HR_BODY_CL:
			i += resp_body(r, len - i);
			if (!r->remaining)
				resp_done(r, req);
			break;
		case HR_BODY_CHUNKED:
			if (r->chunk_state == CH_DATA) {
				i += resp_body(r, len - i);
				if (!r->remaining)
					r->chunk_state = CH_AFTER_DATA;
				break;
			}
			switch (chunk_frame(&r->chunk_state, &r->remaining,
					    (unsigned char)data[i++])) {
			case CHE_BAD:
				resp_lost(r);
				return 0;
			case CHE_DONE:
				resp_done(r, req);
				break;
			default:
				break;
			}
			break;
		case HR_LOST:
			return 0;
		}
	}
	return 0;
}

bool http_resp_answered(const struct http_resp *r, const struct http_parser *req)
{
	return r->state == HR_HEAD && !r->head.len && !req->rq_count && !req->rq_lost;
}

bool http_resp_idle(const struct http_resp *r, const struct http_parser *req)
{
	return http_resp_answered(r, req) && !r->close && !req->close_sent &&
	       (req->state == HTTP_S_HEAD || req->state == HTTP_S_CLOSED);
}

struct http_page {
	int status;
	const char *line; /* status line reason, after "HTTP/1.1 " */
	const char *body; /* nginx's page without the tail */
};

#define PAGE_HEAD(t) "<html>\r\n<head><title>" t "</title></head>\r\n<body>\r\n"
#define PAGE_H1(t) "<center><h1>" t "</h1></center>\r\n"
#define PAGE(t) PAGE_HEAD(t) PAGE_H1(t)
#define PAGE_400(t) PAGE_HEAD("400 " t) PAGE_H1("400 Bad Request") "<center>" t "</center>\r\n"

static const struct http_page http_pages[] = {
	{400, "400 Bad Request", PAGE("400 Bad Request")},
	{404, "404 Not Found", PAGE("404 Not Found")},
	{405, "405 Not Allowed", PAGE("405 Not Allowed")},
	{421, "421 Misdirected Request", PAGE("421 Misdirected Request")},
	{414, "414 Request-URI Too Large", PAGE("414 Request-URI Too Large")},
	{494, "400 Bad Request", PAGE_400("Request Header Or Cookie Too Large")},
	{495, "400 Bad Request", PAGE_400("The SSL certificate error")},
	{496, "400 Bad Request", PAGE_400("No required SSL certificate was sent")},
	{501, "501 Not Implemented", PAGE("501 Not Implemented")},
	{502, "502 Bad Gateway", PAGE("502 Bad Gateway")},
	{504, "504 Gateway Time-out", PAGE("504 Gateway Time-out")},
	{505, "505 HTTP Version Not Supported", PAGE("505 HTTP Version Not Supported")},
};

static const char http_tail[] = "<hr><center>ktlsgw</center>\r\n</body>\r\n</html>\r\n";

int http_error_response_at(int status, time_t now, struct buf *out)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	const struct http_page *pg = NULL;
	struct tm tm;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(http_pages); i++)
		if (http_pages[i].status == status)
			pg = &http_pages[i];
	if (!pg || !gmtime_r(&now, &tm))
		return -EINVAL;
	/* the header order of nginx's ngx_http_header_filter() */
	if (buf_printf(out,
		       "HTTP/1.1 %s\r\n"
		       "Server: ktlsgw\r\n"
		       "Date: %s, %02d %s %d %02d:%02d:%02d GMT\r\n"
		       "Content-Type: text/html\r\n"
		       "Content-Length: %zu\r\n"
		       "Connection: close\r\n"
		       "\r\n%s%s",
		       pg->line, wday[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900,
		       tm.tm_hour, tm.tm_min, tm.tm_sec, strlen(pg->body) + strlen(http_tail),
		       pg->body, http_tail))
		return -ENOMEM;
	return 0;
}

int http_error_response(int status, struct buf *out)
{
	return http_error_response_at(status, time(NULL), out);
}
