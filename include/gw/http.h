/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1.1 request-direction parser and rewriter (client -> backend).
 * It finds each request head in the decrypted stream, strips every
 * incoming header that could spoof identity (all proxy_set_header names and
 * the families X-SSL-*, X-Client-*, X-Forwarded-Client-Cert, Client-Cert,
 * Client-Cert-Chain), appends the proxy_set_header headers with variables
 * expanded, and passes bodies (Content-Length, chunked) through untouched.
 * The response direction is relayed untouched by the caller; with the
 * backend keep-alive pool, http_resp_feed() observes where responses end.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "gw/common.h"
#include "gw/config.h"
#include <time.h>

enum http_state {
	HTTP_S_HEAD = 0,     /* collecting a request head */
	HTTP_S_BODY_CL,	     /* Content-Length body */
	HTTP_S_BODY_CHUNKED, /* chunked body (and trailers) */
	HTTP_S_UPGRADE_WAIT, /* Upgrade request sent; waiting for the backend's answer */
	HTTP_S_OPAQUE,	     /* after 101: bytes pass untouched */
	HTTP_S_ERROR,	     /* a 4xx was produced; nothing more is accepted */
	HTTP_S_CLOSED,	     /* rw->track: a request closed the connection; the rest is dropped */
};

/* What the response to a forwarded request depends on (rw->track). */
#define HTTP_RQ_HEAD 0x1    /* HEAD: the response has no body */
#define HTTP_RQ_CLOSE 0x2   /* "Connection: close", or HTTP/1.0 without keep-alive */
#define HTTP_RQ_NONIDEM 0x4 /* POST, PATCH, LOCK: never sent twice (as nginx) */
#define HTTP_RQ_MAX 32	    /* outstanding (pipelined) requests remembered */

/*
 * What a request head is rewritten with. Owned by the caller.
 * inject() appends the configured header lines ("Name: value\r\n" each) for
 * one request; @xff is the incoming X-Forwarded-For values joined by ", "
 * as nginx joins them (NULL if none), @host the Host header value without
 * port (NULL if none). It returns 0, -ENOMEM, or an HTTP status (> 0, e.g.
 * 421) to refuse the request: nothing of it is forwarded and http_feed()
 * fails with that status. The relay implements it with tmpl_render();
 * http.c never renders variables itself.
 */
struct http_rewrite {
	const struct gw_header *headers; /* proxy_set_header list: names to strip */
	size_t nheaders;
	int (*inject)(void *arg, const char *xff, const char *host, struct buf *out);
	void *inject_arg;
	int header_buffer_count; /* large_client_header_buffers, nginx default 4 (0: default) */
	long header_buffer_size; /* nginx default 8k (0: default) */
	long client_header_buffer_size; /* nginx default 1k (0: default) */
	/*
	 * Backend keep-alive pool (conn.c): remember each forwarded request for
	 * http_resp_feed(), and stop forwarding after a request that closes the
	 * connection (nginx reads no request after it either).
	 */
	bool track;
};

struct http_parser {
	enum http_state state;
	struct buf head;	/* partial head */
	uint64_t remaining;	/* body bytes (CL) or bytes left in the current chunk */
	int chunk_state;	/* private to http.c */
	struct buf held;	/* client bytes held while HTTP_S_UPGRADE_WAIT */
	unsigned long requests; /* heads forwarded */

	/* The rest is private to http.c: the current head or trailer line. */
	struct buf fwd;	    /* request line + kept header lines of the current head */
	struct buf xff;	    /* X-Forwarded-For values joined by ", " */
	struct buf host;    /* $host: request-line host, else Host header (normalised) */
	int err_status;	    /* status once in HTTP_S_ERROR */
	int lstate;	    /* byte state inside the current line */
	bool in_reqline;    /* still in the request line */
	bool upgrade_after; /* enter HTTP_S_UPGRADE_WAIT after this request's body */
	size_t line_start;  /* offsets into head of the current line */
	size_t name_end, val_start, val_end;
	bool line_invalid, line_colon;
	size_t uri_start, uri_end, host_start, host_end, method_len;
	int http_major, http_minor;
	unsigned hflags;			   /* HTTP_HF_* seen in this head */
	size_t cl_start, cl_end, te_start, te_end; /* values in head */
	size_t lbuf_size, lbuf_used;		   /* nginx header-buffer model */
	int lbuf_busy;
	size_t line_len;     /* bytes of the current line as nginx counts them */
	bool close_after;    /* rw->track: HTTP_S_CLOSED after this request's body */
	bool upgrade_closes; /* ... or after the refusal of its Upgrade */
	bool close_sent;     /* rw->track: the backend was told to close (it will) */
	/* rw->track: forwarded requests not answered yet, HTTP_RQ_* each, oldest first */
	unsigned char rq[HTTP_RQ_MAX];
	unsigned int rq_first, rq_count;
	bool rq_lost; /* more were outstanding than rq holds */
};

void http_parser_init(struct http_parser *p);
void http_parser_free(struct http_parser *p);

/*
 * Feed @len decrypted client bytes. Rewritten bytes to send to the backend
 * are appended to @out. Returns 0, or -EBADMSG with *@status set to the
 * nginx status to answer (400, 414, 494->400 page "Request Header Or
 * Cookie Too Large", 501 for an unknown Transfer-Encoding, 405 for TRACE,
 * 505 for HTTP/2+ in the request line), after which the parser stays in
 * HTTP_S_ERROR. -ENOMEM on allocation failure. On -EBADMSG, @out may
 * already hold the complete earlier (pipelined) requests of this call;
 * nothing of the failing request is ever in @out.
 */
int http_feed(struct http_parser *p, const struct http_rewrite *rw, const char *data, size_t len,
	      struct buf *out, int *status);

/*
 * How many of the next client bytes are body the caller may move to the
 * backend without feeding them (tier K splices them): what is left of a
 * Content-Length body or of the current chunk's data, UINT64_MAX after a
 * 101 (opaque); 0 when the parser must see the next byte (heads, chunk
 * sizes, trailers).
 */
uint64_t http_passthrough_len(const struct http_parser *p);
/* The caller moved @n such bytes (n <= http_passthrough_len()). */
void http_passthrough_done(struct http_parser *p, uint64_t n);

/*
 * The backend's first response bytes after an Upgrade request: @switched
 * tells whether they were "HTTP/1.x 101". Held client bytes are processed
 * (opaquely if switched) into @out. Same returns as http_feed().
 */
int http_upgrade_done(struct http_parser *p, const struct http_rewrite *rw, bool switched,
		      struct buf *out, int *status);

/*
 * Response framing, observed (never rewritten) for the backend keep-alive
 * pool on tier U: where each response to the requests the parser forwarded
 * ends (RFC 9112 6.3: no body for HEAD, 1xx, 204, 304; chunked;
 * Content-Length), so that a backend connection is reused only between
 * complete exchanges. A response framed by the connection's close, a 101,
 * an unsolicited or unparsable one makes the tracker give up (HR_LOST): that
 * backend connection is never reused.
 */
enum http_resp_state {
	HR_HEAD = 0,	 /* collecting a response head */
	HR_BODY_CL,	 /* Content-Length body */
	HR_BODY_CHUNKED, /* chunked body and trailers */
	HR_LOST,	 /* framing unknown from here on */
};

#define HTTP_RESP_HEAD_MAX 65536

struct http_resp {
	enum http_resp_state state;
	struct buf head;    /* the head so far */
	uint64_t remaining; /* body bytes, or bytes left in the current chunk */
	int chunk_state;    /* private to http.c */
	int eol;	    /* private: where the head's last line ending stands */
	bool close;	    /* a response said the backend closes (or was HTTP/1.0) */
	bool close_due;	    /* the answer to an HTTP_RQ_CLOSE request is complete */
	unsigned long done; /* final responses complete */
};

void http_resp_init(struct http_resp *r);
void http_resp_free(struct http_resp *r);
/*
 * Observe @len backend bytes; @req supplies (and loses) the requests they
 * answer. Returns 0 or -ENOMEM.
 */
int http_resp_feed(struct http_resp *r, struct http_parser *req, const char *data, size_t len);
/* Every forwarded request has its complete response (and nothing more came). */
bool http_resp_answered(const struct http_resp *r, const struct http_parser *req);
/*
 * Between exchanges: every forwarded request has its complete response, no
 * request is partly forwarded, no response said the backend closes and no
 * request told it to.
 */
bool http_resp_idle(const struct http_resp *r, const struct http_parser *req);

/*
 * nginx's complete error response for @status (400, 405, 414, 494, 495,
 * 496, 501, 502, 504, 505) as nginx 1.22 writes it with "Connection: close", the
 * tail naming ktlsgw instead of nginx/1.22.1. Appends to @out. Returns 0 or
 * -ENOMEM.
 */
int http_error_response(int status, struct buf *out);
/* Same with the Date of @now (for tests). -EINVAL for an unknown status. */
int http_error_response_at(int status, time_t now, struct buf *out);

/*
 * True if @name (length @len) is an identity header a client may not send:
 * any @headers[i].name, X-SSL-*, X-Client-*, X-Forwarded-Client-Cert,
 * Client-Cert, Client-Cert-Chain; ASCII case-insensitive.
 */
bool http_is_identity_header(const char *name, size_t len, const struct gw_header *headers,
			     size_t nheaders);

#endif /* GW_HTTP_H */
