// SPDX-License-Identifier: MIT
/*
 * Configuration: nginx's grammar and directives (DESIGN.md "Interface
 * contract"), nginx's defaults and inheritance, nginx's error messages.
 *
 * Three passes:
 *  1. read: a tokenizer with nginx's rules (ngx_conf_read_token: quotes,
 *     backslash escapes, "#" comments only at the start of a word, "${var}")
 *     builds a tree of directives; "include" is expanded right there, so it
 *     works wherever a directive may appear.
 *  2. walk: every directive is looked up in a keyword table (HAProxy style)
 *     that says in which contexts it is allowed, how many arguments it takes
 *     and which parser handles it. Values land in a "level" (http{}, stream{},
 *     server{}, location / {}) with a bit saying they were set there.
 *  3. finish: each server is merged (innermost level that set a value wins,
 *     else nginx's default), addresses are checked across servers.
 * Errors never stop a pass: all of them are collected ("FILE:LINE: message",
 * one per line) so that one "ktlsgw -t" shows everything.
 *
 * Relative paths. nginx resolves ssl_certificate & co. and include against
 * its configuration prefix, which "-c FILE" sets to FILE's directory. We do
 * the same: relative paths are relative to the directory of the main config
 * file (for config_parse_buf(), of @name). For include only, when the pattern
 * matches nothing there, the directory of the including file is tried too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <glob.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include "gw/config.h"
#include "gw/identity.h"
#include "gw/log.h"

#define CF_MAX_INCLUDE_DEPTH 16
#define CF_ANY_ARGS 0xffff

/* ---------------------------------------------------------------- parse tree */

struct cf_node {
	char **args; /* args[0] is the directive name */
	size_t nargs;
	const char *file;
	int line; /* where the ";" or "{" is, as nginx reports it */
	bool block;
	struct cf_list *children;
};

struct cf_list {
	struct cf_node *v;
	size_t n;
};

/* ---------------------------------------------------------------- levels */

/* One bit per mergeable setting: set at this level. */
enum cf_field {
	F_CERT,
	F_KEY,
	F_CLIENT_CA,
	F_TRUSTED,
	F_VERIFY,
	F_DEPTH,
	F_CRL,
	F_PROTOCOLS,
	F_CIPHERS,
	F_PREFER,
	F_SESS_CACHE,
	F_SESS_TIMEOUT,
	F_TICKETS,
	F_VCACHE,
	F_KTLS,
	F_VFAIL,
	F_ALLOW,
	F_HS_TIMEOUT,
	F_ECDH,
	F_PROXY_PASS,
	F_HEADERS,
	F_PP,
	F_PPV,
	F_PP_TLV,
	F_CONNECT_TO,
	F_IDLE_TO,
	F_HDR_BUFS,
	F_ACCESS_LOG,
	F__COUNT,
};

struct cf_strw {
	char *s;
	struct gw_where w;
};

/*
 * upstream NAME { server ADDR; keepalive N; ... } (http{} only): one server,
 * and the idle connections to it each worker keeps (conn.c's backend pool).
 */
struct cf_upstream {
	char *name;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int nservers;
	long keepalive;	 /* 0: none, every client connection opens its own */
	long timeout_ms; /* keepalive_timeout, default 60s as nginx */
	long requests;	 /* keepalive_requests, default 1000 as nginx */
	long time_ms;	 /* keepalive_time, default 1h as nginx */
	bool keepalive_set, timeout_set, requests_set, time_set;
};

/* Settings of one http{}, stream{}, server{} or location / {} block. */
struct cf_level {
	uint64_t set;
	struct cf_strw *certs, *keys;
	size_t ncerts, nkeys;
	struct cf_strw client_ca, trusted, crl, ciphers, ecdh;
	int verify;
	struct gw_where verify_where;
	int depth;
	unsigned int protocols;
	bool prefer, tickets, vcache, pp, pp_tlv;
	int sess_cache;
	long sess_cache_size;
	long sess_timeout;
	int ktls, vfail;
	struct gw_allow *allows;
	size_t nallows;
	long hs_timeout_ms;
	struct cf_strw proxy_pass;
	struct sockaddr_storage backend;
	socklen_t backendlen;
	const struct cf_upstream *ups; /* proxy_pass http://NAME of an upstream{} */
	struct gw_header *headers;
	size_t nheaders;
	int ppv;
	long connect_ms, idle_ms;
	int hb_count;
	long hb_size;
	char *access_log;
};

struct cf_server {
	enum gw_mode mode;
	const char *file;
	int line;
	struct cf_level lv;
	struct cf_level *outer; /* http{} or stream{} level, NULL for a top-level server */
	struct cf_level *loc;	/* location / {} */
	struct gw_listen *listens;
	size_t nlistens;
	bool *explicit_default; /* per listen: written with default_server */
	char **names;
	size_t nnames;
	struct gw_passthrough *pts;
	size_t npts;
	bool proxy_pass_err; /* a proxy_pass was written but rejected: no second error */
};

enum cf_ctx {
	CTX_MAIN = 1 << 0,
	CTX_EVENTS = 1 << 1,
	CTX_HTTP = 1 << 2,
	CTX_HSRV = 1 << 3,
	CTX_LOC = 1 << 4,
	CTX_STREAM = 1 << 5,
	CTX_SSRV = 1 << 6,
	CTX_TYPES = 1 << 7, /* inside a no-op block: everything is ignored */
	CTX_UPS = 1 << 8,   /* upstream{} */
};

#define CTX_SSL (CTX_HTTP | CTX_HSRV | CTX_STREAM | CTX_SSRV)
#define CTX_H (CTX_HTTP | CTX_HSRV)
#define CTX_HL (CTX_HTTP | CTX_HSRV | CTX_LOC)
#define CTX_S (CTX_STREAM | CTX_SSRV)
#define CTX_ALLSRV (CTX_HTTP | CTX_HSRV | CTX_LOC | CTX_STREAM | CTX_SSRV)

struct cf_parser {
	struct gw_config *cfg;
	struct buf err;
	int nerrs;
	char *prefix; /* directory for relative paths, no trailing '/' */
	int include_depth;

	bool worker_processes_set, pid_set, daemon_set, events_seen, metrics_set, wc_set;
	bool error_log_main;
	struct cf_level *http, *stream;
	struct cf_server **servers;
	size_t nservers;
	struct cf_upstream **ups;
	size_t nups;
	bool ups_prescan; /* h_http_stream() reads the upstream{} blocks first */
};

/* The walker's position. */
struct cf_walk {
	enum cf_ctx ctx;
	struct cf_level *lv;	 /* level receiving settings, NULL in main/events */
	struct cf_server *srv;	 /* current server{} */
	struct cf_upstream *ups; /* current upstream{} */
};

static void cf_error(struct cf_parser *p, const char *file, int line, const char *fmt, ...)
	__printf(4, 5);

static void cf_error(struct cf_parser *p, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (p->err.len)
		buf_puts(&p->err, "\n");
	buf_printf(&p->err, "%s:%d: %s", file, line, msg ? msg : "out of memory");
	free(msg);
	p->nerrs++;
}

#define nerr(p, n, fmt, ...) cf_error((p), (n)->file, (n)->line, fmt, ##__VA_ARGS__)

static void *xrealloc_array(void *ptr, size_t n, size_t size)
{
	if (n && size > SIZE_MAX / n)
		return NULL;
	return realloc(ptr, n * size);
}

/* Append one zeroed element to a dynamic array; returns it or NULL. */
#define ARR_PUSH(arr, cnt)                                                                         \
	({                                                                                         \
		typeof(arr) ___a = xrealloc_array((arr), (cnt) + 1, sizeof(*(arr)));               \
		typeof(arr) ___e = NULL;                                                           \
		if (___a) {                                                                        \
			(arr) = ___a;                                                              \
			___e = &___a[(cnt)++];                                                     \
			memset(___e, 0, sizeof(*___e));                                            \
		}                                                                                  \
		___e;                                                                              \
	})

/* ---------------------------------------------------------------- tree memory */

static void cf_list_free(struct cf_list *l);

static void cf_node_free(struct cf_node *n)
{
	for (size_t i = 0; i < n->nargs; i++)
		free(n->args[i]);
	free(n->args);
	if (n->children) {
		cf_list_free(n->children);
		free(n->children);
	}
}

static void cf_list_free(struct cf_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		cf_node_free(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Remember a file name for the config's lifetime; returns the stored copy. */
static const char *cf_intern_file(struct cf_parser *p, const char *name)
{
	struct gw_config *cfg = p->cfg;
	char **slot;

	for (size_t i = 0; i < cfg->nfiles; i++)
		if (strcmp(cfg->files[i], name) == 0)
			return cfg->files[i];
	slot = ARR_PUSH(cfg->files, cfg->nfiles);
	if (!slot)
		return NULL;
	*slot = strdup(name);
	if (!*slot) {
		cfg->nfiles--;
		return NULL;
	}
	return *slot;
}

/* ---------------------------------------------------------------- tokenizer */

enum cf_tok {
	TOK_WORD,
	TOK_SEMI,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_EOF,
	TOK_ERR,
};

struct cf_lexer {
	const char *p, *end;
	const char *file;
	int line;
};

static bool cf_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copy [s, e) undoing nginx's escapes: \" \' \\ drop the backslash, \t \r \n become controls. */
static char *cf_unescape(const char *s, const char *e)
{
	char *out = malloc((size_t)(e - s) + 1), *d = out;

	if (!out)
		return NULL;
	while (s < e) {
		if (*s == '\\' && s + 1 < e) {
			switch (s[1]) {
			case '"':
			case '\'':
			case '\\':
				s++;
				break;
			case 't':
				*d++ = '\t';
				s += 2;
				continue;
			case 'r':
				*d++ = '\r';
				s += 2;
				continue;
			case 'n':
				*d++ = '\n';
				s += 2;
				continue;
			}
		}
		*d++ = *s++;
	}
	*d = '\0';
	return out;
}

static enum cf_tok cf_lex(struct cf_parser *p, struct cf_lexer *lx, char **word)
{
	const char *s;

	*word = NULL;
	for (;;) {
		while (lx->p < lx->end && cf_space(*lx->p)) {
			if (*lx->p == '\n')
				lx->line++;
			lx->p++;
		}
		if (lx->p < lx->end && *lx->p == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
			continue;
		}
		break;
	}
	if (lx->p >= lx->end)
		return TOK_EOF;
	switch (*lx->p) {
	case ';':
		lx->p++;
		return TOK_SEMI;
	case '{':
		lx->p++;
		return TOK_LBRACE;
	case '}':
		lx->p++;
		return TOK_RBRACE;
	case '"':
	case '\'': {
		char q = *lx->p++;

		s = lx->p;
		while (lx->p < lx->end && *lx->p != q) {
			if (*lx->p == '\\' && lx->p + 1 < lx->end) {
				if (lx->p[1] == '\n')
					lx->line++;
				lx->p++;
			} else if (*lx->p == '\n') {
				lx->line++;
			}
			lx->p++;
		}
		if (lx->p >= lx->end) {
			cf_error(p, lx->file, lx->line,
				 "unexpected end of file, expecting \";\" or \"}\"");
			return TOK_ERR;
		}
		*word = cf_unescape(s, lx->p);
		lx->p++;
		if (lx->p < lx->end && !cf_space(*lx->p) && *lx->p != ';' && *lx->p != '{') {
			cf_error(p, lx->file, lx->line, "unexpected \"%c\"", *lx->p);
			free(*word);
			*word = NULL;
			return TOK_ERR;
		}
		return *word ? TOK_WORD : TOK_ERR;
	}
	}
	s = lx->p;
	while (lx->p < lx->end) {
		char c = *lx->p;

		if (c == '\\' && lx->p + 1 < lx->end) {
			if (lx->p[1] == '\n')
				lx->line++;
			lx->p += 2;
			continue;
		}
		if (c == '$' && lx->p + 1 < lx->end && lx->p[1] == '{') {
			lx->p += 2;
			continue;
		}
		if (cf_space(c) || c == ';' || c == '{')
			break;
		lx->p++;
	}
	*word = cf_unescape(s, lx->p);
	return *word ? TOK_WORD : TOK_ERR;
}

static int cf_parse_text(struct cf_parser *p, const char *text, size_t len, const char *file,
			 struct cf_list *out);

static bool cf_has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static char *cf_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* @rel resolved against @dir (absolute paths as they are). */
static char *cf_join(const char *dir, const char *rel)
{
	char *out;

	if (rel[0] == '/' || !dir)
		return strdup(rel);
	if (asprintf(&out, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel) < 0)
		return NULL;
	return out;
}

static char *cf_read_file(const char *path, size_t *len, int *err)
{
	struct buf b = {};
	FILE *f = fopen(path, "re");
	char chunk[8192];
	size_t n;

	if (!f) {
		*err = errno;
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n)) {
			*err = ENOMEM;
			goto fail;
		}
	}
	if (ferror(f)) {
		*err = errno ? errno : EIO;
		goto fail;
	}
	fclose(f);
	if (buf_append(&b, "", 1)) {
		buf_free(&b);
		*err = ENOMEM;
		return NULL;
	}
	*len = b.len - 1;
	return b.data;
fail:
	fclose(f);
	buf_free(&b);
	return NULL;
}

static int cf_parse_file(struct cf_parser *p, const char *path, struct cf_list *out,
			 const char *from_file, int from_line)
{
	const char *file;
	size_t len = 0;
	int err = 0, ret;
	struct stat st;
	char *text;

	file = cf_intern_file(p, path);
	if (!file)
		return -ENOMEM;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		err = EISDIR;
		text = NULL;
	} else {
		text = cf_read_file(path, &len, &err);
	}
	if (!text) {
		if (from_file)
			cf_error(p, from_file, from_line, "open() \"%s\" failed (%d: %s)", path,
				 err, strerror(err));
		else
			cf_error(p, file, 0, "open() \"%s\" failed (%d: %s)", path, err,
				 strerror(err));
		return -err;
	}
	ret = cf_parse_text(p, text, len, file, out);
	free(text);
	return ret;
}

static int cf_include(struct cf_parser *p, struct cf_node *n, struct cf_list *out)
{
	char *pattern = NULL, *dir = NULL;
	glob_t g = {};
	int ret = 0, gr;

	if (n->nargs != 2) {
		nerr(p, n, "invalid number of arguments in \"include\" directive");
		return 0;
	}
	if (p->include_depth >= CF_MAX_INCLUDE_DEPTH) {
		nerr(p, n, "too many nested \"include\" directives (include loop?)");
		return 0;
	}
	pattern = cf_join(p->prefix, n->args[1]);
	if (!pattern)
		return -ENOMEM;
	gr = glob(pattern, GLOB_ERR, NULL, &g);
	if (gr == GLOB_NOMATCH && n->args[1][0] != '/') {
		/* not under the prefix: try next to the including file */
		dir = cf_dirname(n->file);
		if (!dir) {
			ret = -ENOMEM;
			goto out;
		}
		if (strcmp(dir, p->prefix) != 0) {
			char *alt = cf_join(dir, n->args[1]);

			if (!alt) {
				ret = -ENOMEM;
				goto out;
			}
			globfree(&g);
			memset(&g, 0, sizeof(g));
			gr = glob(alt, GLOB_ERR, NULL, &g);
			if (gr == 0) {
				free(pattern);
				pattern = alt;
			} else {
				free(alt);
			}
		}
	}
	if (gr == GLOB_NOMATCH) {
		/* nginx: a pattern that matches nothing is fine, a missing file is not */
		if (!cf_has_glob(n->args[1]))
			nerr(p, n, "open() \"%s\" failed (2: %s)", pattern, strerror(ENOENT));
		goto out;
	}
	if (gr != 0) {
		nerr(p, n, "glob() \"%s\" failed", pattern);
		goto out;
	}
	p->include_depth++;
	for (size_t i = 0; i < g.gl_pathc && ret != -ENOMEM; i++)
		ret = cf_parse_file(p, g.gl_pathv[i], out, n->file, n->line);
	p->include_depth--;
	if (ret != -ENOMEM)
		ret = 0;
out:
	globfree(&g);
	free(pattern);
	free(dir);
	return ret;
}

/*
 * Parse directives until "}" (@in_block) or the end of the text. Syntax
 * errors are recorded; parsing goes on where it can.
 */
static int cf_parse_list(struct cf_parser *p, struct cf_lexer *lx, struct cf_list *out,
			 bool in_block)
{
	char **args = NULL;
	size_t nargs = 0;
	int ret = 0;

	for (;;) {
		char *word;
		enum cf_tok t = cf_lex(p, lx, &word);
		struct cf_node *n;

		if (t == TOK_WORD) {
			char **slot = ARR_PUSH(args, nargs);

			if (!slot) {
				free(word);
				ret = -ENOMEM;
				goto out;
			}
			*slot = word;
			continue;
		}
		if (t == TOK_ERR) {
			ret = -EINVAL;
			goto out;
		}
		if (t == TOK_EOF) {
			if (nargs)
				cf_error(p, lx->file, lx->line,
					 "unexpected end of file, expecting \";\" or \"}\"");
			else if (in_block)
				cf_error(p, lx->file, lx->line,
					 "unexpected end of file, expecting \"}\"");
			ret = nargs || in_block ? -EINVAL : 0;
			goto out;
		}
		if (t == TOK_RBRACE) {
			if (nargs || !in_block) {
				cf_error(p, lx->file, lx->line, "unexpected \"}\"");
				if (nargs)
					goto out_err;
				continue;
			}
			goto out;
		}
		if (!nargs) {
			cf_error(p, lx->file, lx->line, "unexpected \"%s\"",
				 t == TOK_SEMI ? ";" : "{");
			if (t == TOK_LBRACE) {
				struct cf_list skip = {};

				ret = cf_parse_list(p, lx, &skip, true);
				cf_list_free(&skip);
				if (ret)
					goto out;
			}
			continue;
		}
		if (t == TOK_SEMI && strcmp(args[0], "include") == 0) {
			struct cf_node inc = {
				.args = args, .nargs = nargs, .file = lx->file, .line = lx->line};

			ret = cf_include(p, &inc, out);
			cf_node_free(&inc);
			args = NULL;
			nargs = 0;
			if (ret)
				goto out;
			continue;
		}
		n = ARR_PUSH(out->v, out->n);
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		n->args = args;
		n->nargs = nargs;
		n->file = lx->file;
		n->line = lx->line;
		args = NULL;
		nargs = 0;
		if (t == TOK_LBRACE) {
			n->block = true;
			n->children = calloc(1, sizeof(*n->children));
			if (!n->children) {
				ret = -ENOMEM;
				goto out;
			}
			ret = cf_parse_list(p, lx, n->children, true);
			if (ret)
				goto out;
		}
	}
out_err:
	ret = -EINVAL;
out:
	for (size_t i = 0; i < nargs; i++)
		free(args[i]);
	free(args);
	return ret;
}

static int cf_parse_text(struct cf_parser *p, const char *text, size_t len, const char *file,
			 struct cf_list *out)
{
	struct cf_lexer lx = {.p = text, .end = text + len, .file = file, .line = 1};
	int ret = cf_parse_list(p, &lx, out, false);

	/* a syntax error is recorded; what was read so far is still checked */
	return ret == -ENOMEM ? ret : 0;
}

/* ---------------------------------------------------------------- values */

int config_parse_size(const char *s, long *out)
{
	long v = 0, scale = 1;
	size_t len = strlen(s);
	const char *end;

	if (!len)
		return -EINVAL;
	end = s + len;
	switch (s[len - 1]) {
	case 'k':
	case 'K':
		scale = 1024;
		end--;
		break;
	case 'm':
	case 'M':
		scale = 1024 * 1024;
		end--;
		break;
	}
	if (end == s)
		return -EINVAL;
	for (const char *c = s; c < end; c++) {
		if (*c < '0' || *c > '9')
			return -EINVAL;
		if (v > (LONG_MAX - (*c - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*c - '0');
	}
	if (v > LONG_MAX / scale)
		return -ERANGE;
	*out = v * scale;
	return 0;
}

/*
 * nginx's ngx_parse_time(): "1h 30m", "1d12h", "500ms", bare number =
 * seconds; units y M w d h m s ms, each at most once and from the largest
 * down. @is_sec: the value is in seconds and "ms" is invalid.
 */
static int cf_parse_time(const char *s, bool is_sec, long *out)
{
	enum { ST_START, ST_YEAR, ST_MONTH, ST_WEEK, ST_DAY, ST_HOUR, ST_MIN, ST_SEC, ST_MSEC };
	int step = ST_START;
	long total = 0, value = 0, scale;
	bool digits = false, valid = false;

	for (; *s; s++) {
		int st;

		if (*s >= '0' && *s <= '9') {
			if (value > (LONG_MAX / 1000 - (*s - '0')) / 10)
				return -ERANGE;
			value = value * 10 + (*s - '0');
			digits = true;
			continue;
		}
		if (*s == ' ' && !digits)
			continue;
		switch (*s) {
		case 'y':
			st = ST_YEAR, scale = 365L * 24 * 3600 * 1000;
			break;
		case 'M':
			st = ST_MONTH, scale = 30L * 24 * 3600 * 1000;
			break;
		case 'w':
			st = ST_WEEK, scale = 7L * 24 * 3600 * 1000;
			break;
		case 'd':
			st = ST_DAY, scale = 24L * 3600 * 1000;
			break;
		case 'h':
			st = ST_HOUR, scale = 3600L * 1000;
			break;
		case 'm':
			if (s[1] == 's') {
				if (is_sec)
					return -EINVAL;
				s++;
				st = ST_MSEC, scale = 1;
			} else {
				st = ST_MIN, scale = 60L * 1000;
			}
			break;
		case 's':
			st = ST_SEC, scale = 1000;
			break;
		default:
			return -EINVAL;
		}
		if (!digits || st <= step)
			return -EINVAL;
		step = st;
		if (value > LONG_MAX / scale || total > LONG_MAX - value * scale)
			return -ERANGE;
		total += value * scale;
		value = 0;
		digits = false;
		valid = true;
		while (s[1] == ' ')
			s++;
	}
	if (digits) {
		/* a bare number is seconds */
		if (step >= ST_SEC)
			return -EINVAL;
		if (value > LONG_MAX / 1000 || total > LONG_MAX - value * 1000)
			return -ERANGE;
		total += value * 1000;
		valid = true;
	}
	if (!valid)
		return -EINVAL;
	if (is_sec)
		total /= 1000;
	*out = total;
	return 0;
}

int config_parse_time_ms(const char *s, long *out)
{
	return cf_parse_time(s, false, out);
}

static int cf_parse_int(const char *s, long max, long *out)
{
	long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -ERANGE;
	}
	*out = v;
	return 0;
}

/*
 * "HOST:PORT", "[V6]:PORT", "*:PORT", "PORT" (@listen only), HOST alone
 * (port @defport, or an error when @defport is 0). Hostnames are resolved
 * with getaddrinfo() once, the first IPv4 address preferred (a backend on
 * "localhost" most often listens on 127.0.0.1). Returns 0 or -EINVAL with
 * *@why: "invalid port", "no port", "host not found", "invalid host".
 */
static int cf_parse_addr(const char *text, bool listen, int defport, struct sockaddr_storage *ss,
			 socklen_t *sslen, const char **why)
{
	char host[256];
	const char *colon, *portstr = NULL;
	long port = defport;
	bool wildcard = false;

	memset(ss, 0, sizeof(*ss));
	*why = "invalid host";
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (!rb || (size_t)(rb - text - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, (size_t)(rb - text - 1));
		host[rb - text - 1] = '\0';
		if (rb[1] == ':')
			portstr = rb + 2;
		else if (rb[1] != '\0')
			return -EINVAL;
	} else {
		colon = strrchr(text, ':');
		if (listen && !colon && text[0] && strspn(text, "0123456789") == strlen(text)) {
			/* "listen 443" */
			portstr = text;
			wildcard = true;
			host[0] = '\0';
		} else {
			size_t hl = colon ? (size_t)(colon - text) : strlen(text);

			if (hl >= sizeof(host) || hl == 0)
				return -EINVAL;
			if (colon && memchr(text, ':', hl)) /* bare IPv6 without brackets */
				return -EINVAL;
			memcpy(host, text, hl);
			host[hl] = '\0';
			if (colon)
				portstr = colon + 1;
		}
	}
	if (portstr) {
		if (cf_parse_int(portstr, 65535, &port) || port < 1) {
			*why = "invalid port";
			return -EINVAL;
		}
	} else if (!defport) {
		*why = "no port";
		return -EINVAL;
	}
	if (strcmp(host, "*") == 0)
		wildcard = true;
	if (wildcard) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
		return 0;
	}
	{
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai, *pick;

		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			*sslen = sizeof(*sin);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)port);
			*sslen = sizeof(*sin6);
			return 0;
		}
		if (text[0] == '[')
			return -EINVAL;
		if (getaddrinfo(host, NULL, &hints, &res) != 0) {
			*why = "host not found";
			return -EINVAL;
		}
		pick = res;
		for (ai = res; ai; ai = ai->ai_next) {
			if (ai->ai_family == AF_INET) {
				pick = ai;
				break;
			}
		}
		if (pick->ai_addrlen > sizeof(*ss) ||
		    (pick->ai_family != AF_INET && pick->ai_family != AF_INET6)) {
			freeaddrinfo(res);
			*why = "host not found";
			return -EINVAL;
		}
		memcpy(ss, pick->ai_addr, pick->ai_addrlen);
		*sslen = pick->ai_addrlen;
		if (pick->ai_family == AF_INET)
			sin->sin_port = htons((uint16_t)port);
		else
			sin6->sin6_port = htons((uint16_t)port);
		freeaddrinfo(res);
	}
	return 0;
}

static bool cf_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	{
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
}

/* ---------------------------------------------------------------- keyword table */

struct cf_kw;
typedef int (*cf_handler)(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			  const struct cf_kw *kw);

struct cf_enum {
	const char *name;
	int value;
};

struct cf_kw {
	const char *name;
	unsigned int ctx;
	unsigned short amin, amax; /* arguments after the name */
	bool block;
	cf_handler fn;
	int field;  /* enum cf_field for the generic handlers */
	size_t off; /* offset in struct cf_level for the generic handlers */
	const struct cf_enum *vals;
};

static int cf_walk_list(struct cf_parser *p, struct cf_list *l, struct cf_walk *w);
static int cf_walk_node(struct cf_parser *p, struct cf_node *n, struct cf_walk *w);

static bool cf_mark(struct cf_parser *p, struct cf_node *n, struct cf_level *lv, int field)
{
	if (lv->set & (1ULL << field)) {
		nerr(p, n, "\"%s\" directive is duplicate", n->args[0]);
		return false;
	}
	lv->set |= 1ULL << field;
	return true;
}

static int h_flag(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	bool v;

	if (strcasecmp(n->args[1], "on") == 0) {
		v = true;
	} else if (strcasecmp(n->args[1], "off") == 0) {
		v = false;
	} else {
		nerr(p, n, "invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
		     n->args[1], n->args[0]);
		return 0;
	}
	if (cf_mark(p, n, w->lv, kw->field))
		*(bool *)((char *)w->lv + kw->off) = v;
	return 0;
}

static int h_enum(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	struct buf msg = {};
	const struct cf_enum *e;
	size_t cnt = 0;

	for (e = kw->vals; e->name; e++) {
		if (strcmp(e->name, n->args[1]) == 0) {
			if (!cf_mark(p, n, w->lv, kw->field))
				return 0;
			*(int *)((char *)w->lv + kw->off) = e->value;
			if (kw->field == F_VERIFY)
				w->lv->verify_where = (struct gw_where){n->file, n->line};
			return 0;
		}
		cnt++;
	}
	for (size_t i = 0; i < cnt; i++)
		buf_printf(&msg, "%s\"%s\"",
			   i == 0	  ? ""
			   : i + 1 == cnt ? " or "
					  : ", ",
			   kw->vals[i].name);
	nerr(p, n, "invalid value \"%s\" in \"%s\" directive, it must be %s", n->args[1],
	     n->args[0], msg.data ? msg.data : "");
	buf_free(&msg);
	return 0;
}

static int h_int(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	long v;

	if (cf_parse_int(n->args[1], INT32_MAX, &v)) {
		nerr(p, n, "\"%s\" directive invalid number", n->args[0]);
		return 0;
	}
	if (cf_mark(p, n, w->lv, kw->field))
		*(int *)((char *)w->lv + kw->off) = (int)v;
	return 0;
}

/* Times in milliseconds, except ssl_session_timeout (seconds, "ms" invalid, as nginx). */
static int h_time(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	bool is_sec = kw->field == F_SESS_TIMEOUT;
	long v;

	if (cf_parse_time(n->args[1], is_sec, &v)) {
		nerr(p, n, "\"%s\" directive invalid value", n->args[0]);
		return 0;
	}
	if (kw->field == F_IDLE_TO && n->nargs > 2) {
		long ignored;

		if (cf_parse_time(n->args[2], true, &ignored)) {
			nerr(p, n, "\"%s\" directive invalid value", n->args[0]);
			return 0;
		}
		pr_warn("%s:%d: the \"Keep-Alive: timeout\" header time of \"%s\" has no effect "
			"in ktlsgw, ignored",
			n->file, n->line, n->args[0]);
	}
	if (cf_mark(p, n, w->lv, kw->field))
		*(long *)((char *)w->lv + kw->off) = v;
	return 0;
}

static char *cf_path(struct cf_parser *p, const char *s)
{
	return cf_join(p->prefix, s);
}

/* A string (file names are resolved against the prefix) with where it was written. */
static int h_str(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	struct cf_strw *sw = (struct cf_strw *)((char *)w->lv + kw->off);
	bool is_file = kw->field == F_CLIENT_CA || kw->field == F_TRUSTED || kw->field == F_CRL;
	char *v;

	if (!n->args[1][0]) {
		nerr(p, n, "invalid value \"\" in \"%s\" directive", n->args[0]);
		return 0;
	}
	if (!cf_mark(p, n, w->lv, kw->field))
		return 0;
	v = is_file ? cf_path(p, n->args[1]) : strdup(n->args[1]);
	if (!v)
		return -ENOMEM;
	sw->s = v;
	sw->w = (struct gw_where){n->file, n->line};
	return 0;
}

/* ssl_certificate / ssl_certificate_key: repeatable, the list replaces the outer one. */
static int h_cert(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	struct cf_level *lv = w->lv;
	bool key = kw->field == F_KEY;
	struct cf_strw *e;

	if (!n->args[1][0]) {
		nerr(p, n, "invalid value \"\" in \"%s\" directive", n->args[0]);
		return 0;
	}
	if (strncmp(n->args[1], "data:", 5) == 0 || strncmp(n->args[1], "engine:", 7) == 0 ||
	    strchr(n->args[1], '$')) {
		nerr(p, n, "\"%s\" directive: only file names are supported by ktlsgw", n->args[0]);
		return 0;
	}
	lv->set |= 1ULL << kw->field;
	e = key ? ARR_PUSH(lv->keys, lv->nkeys) : ARR_PUSH(lv->certs, lv->ncerts);
	if (!e)
		return -ENOMEM;
	e->s = cf_path(p, n->args[1]);
	if (!e->s)
		return -ENOMEM;
	e->w = (struct gw_where){n->file, n->line};
	return 0;
}

static int h_protocols(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		       const struct cf_kw *kw)
{
	static const struct cf_enum protos[] = {
		{"SSLv3", GW_PROTO_SSLv3},     {"TLSv1", GW_PROTO_TLSv1},
		{"TLSv1.1", GW_PROTO_TLSv1_1}, {"TLSv1.2", GW_PROTO_TLSv1_2},
		{"TLSv1.3", GW_PROTO_TLSv1_3}, {},
	};
	unsigned int mask = 0;
	bool bad = false;

	for (size_t i = 1; i < n->nargs; i++) {
		const struct cf_enum *e;

		if (strcmp(n->args[i], "SSLv2") == 0) {
			nerr(p, n, "\"SSLv2\" in \"ssl_protocols\" directive is not supported");
			bad = true;
			continue;
		}
		for (e = protos; e->name; e++)
			if (strcmp(e->name, n->args[i]) == 0)
				break;
		if (!e->name) {
			nerr(p, n, "invalid value \"%s\" in \"ssl_protocols\" directive",
			     n->args[i]);
			bad = true;
			continue;
		}
		mask |= (unsigned int)e->value;
	}
	if (!bad && cf_mark(p, n, w->lv, kw->field))
		w->lv->protocols = mask;
	return 0;
}

/* off | none | [builtin[:size]] [shared:name:size]; sizes in sessions (1m ~ 4000). */
static int h_sess_cache(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			const struct cf_kw *kw)
{
	long total = 0;
	int mode = GW_SESS_CACHE_ON;

	for (size_t i = 1; i < n->nargs; i++) {
		const char *a = n->args[i];
		long v;

		if (strcmp(a, "off") == 0 || strcmp(a, "none") == 0) {
			if (n->nargs != 2)
				goto invalid;
			mode = a[0] == 'o' ? GW_SESS_CACHE_OFF : GW_SESS_CACHE_NONE;
			continue;
		}
		if (strcmp(a, "builtin") == 0) {
			total += 20480; /* nginx's default builtin size */
			continue;
		}
		if (strncmp(a, "builtin:", 8) == 0) {
			if (cf_parse_int(a + 8, INT32_MAX, &v) || v == 0)
				goto invalid;
			total += v;
			continue;
		}
		if (strncmp(a, "shared:", 7) == 0) {
			const char *name = a + 7, *colon = strchr(name, ':');

			if (!colon || colon == name || config_parse_size(colon + 1, &v))
				goto invalid;
			if (v < 8 * 4096) {
				nerr(p, n, "session cache \"%s\" is too small", a);
				return 0;
			}
			total += v * 4000 / (1024 * 1024);
			continue;
		}
		goto invalid;
	}
	if (cf_mark(p, n, w->lv, kw->field)) {
		w->lv->sess_cache = mode;
		w->lv->sess_cache_size = mode == GW_SESS_CACHE_ON ? total : 0;
	}
	return 0;
invalid:
	nerr(p, n, "invalid session cache \"%s\"", n->args[1]);
	return 0;
}

static int h_allow(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		   const struct cf_kw *kw)
{
	static const struct cf_enum kinds[] = {
		{"cn", GW_ALLOW_CN},
		{"dns", GW_ALLOW_DNS},
		{"uri", GW_ALLOW_URI},
		{"fingerprint", GW_ALLOW_FINGERPRINT},
		{},
	};
	const struct cf_enum *e;
	struct gw_allow *a;
	char *v;

	for (e = kinds; e->name; e++)
		if (strcmp(e->name, n->args[1]) == 0)
			break;
	if (!e->name) {
		nerr(p, n,
		     "invalid value \"%s\" in \"ssl_client_allow\" directive, it must be \"cn\", "
		     "\"dns\", \"uri\" or \"fingerprint\"",
		     n->args[1]);
		return 0;
	}
	if (!n->args[2][0]) {
		nerr(p, n, "invalid value \"\" in \"ssl_client_allow\" directive");
		return 0;
	}
	v = strdup(n->args[2]);
	if (!v)
		return -ENOMEM;
	if (e->value == GW_ALLOW_FINGERPRINT) {
		/* normalised: lowercase hex without colons, SHA-1 (40) or SHA-256 (64) */
		size_t len = 0;

		for (const char *s = n->args[2]; *s; s++) {
			if (*s == ':')
				continue;
			if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
			      (*s >= 'A' && *s <= 'F'))) {
				len = 0;
				break;
			}
			v[len++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
		}
		v[len] = '\0';
		if (len != 40 && len != 64) {
			nerr(p, n,
			     "invalid fingerprint \"%s\" in \"ssl_client_allow\" directive, it "
			     "must "
			     "be a SHA-1 or SHA-256 in hex",
			     n->args[2]);
			free(v);
			return 0;
		}
	}
	w->lv->set |= 1ULL << kw->field;
	a = ARR_PUSH(w->lv->allows, w->lv->nallows);
	if (!a) {
		free(v);
		return -ENOMEM;
	}
	a->kind = (enum gw_allow_kind)e->value;
	a->value = v;
	return 0;
}

static int h_set_header(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			const struct cf_kw *kw)
{
	struct gw_header *h;
	char *err = NULL;

	for (const char *s = n->args[1]; *s; s++) {
		if ((unsigned char)*s <= 0x20 || *s == ':' || (unsigned char)*s >= 0x7f) {
			nerr(p, n, "invalid header name \"%s\" in \"proxy_set_header\" directive",
			     n->args[1]);
			return 0;
		}
	}
	if (!n->args[1][0] || strchr(n->args[1], '$')) {
		nerr(p, n, "invalid header name \"%s\" in \"proxy_set_header\" directive",
		     n->args[1]);
		return 0;
	}
	w->lv->set |= 1ULL << kw->field;
	h = ARR_PUSH(w->lv->headers, w->lv->nheaders);
	if (!h)
		return -ENOMEM;
	h->name = strdup(n->args[1]);
	if (!h->name)
		return -ENOMEM;
	if (tmpl_compile(n->args[2], &h->value, &err)) {
		nerr(p, n, "%s", err ? err : "out of memory");
		free(err);
		free(h->name);
		w->lv->nheaders--;
	}
	return 0;
}

static int h_proxy_pass(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			const struct cf_kw *kw)
{
	bool http = w->ctx != CTX_SSRV;
	const char *target = n->args[1], *why;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char *hostport = NULL;
	int ret = 0;

	if (http) {
		const char *slash;

		if (strncmp(target, "https://", 8) == 0) {
			nerr(p, n,
			     "\"proxy_pass\" to https:// is not supported by ktlsgw, the backend "
			     "must be plain http://");
			return 0;
		}
		if (strncmp(target, "http://", 7) != 0) {
			nerr(p, n, "invalid URL prefix in \"%s\"", target);
			return 0;
		}
		target += 7;
		if (strncmp(target, "unix:", 5) == 0) {
			nerr(p, n, "\"proxy_pass\" to a unix socket is not supported by ktlsgw");
			return 0;
		}
		slash = strchr(target, '/');
		if (slash && strcmp(slash, "/") != 0) {
			nerr(p, n,
			     "\"proxy_pass\" with a URI other than \"/\" is not supported by "
			     "ktlsgw: \"%s\"",
			     n->args[1]);
			return 0;
		}
		if (strchr(target, '$')) {
			nerr(p, n, "variables in \"proxy_pass\" are not supported by ktlsgw");
			return 0;
		}
		hostport = slash ? strndup(target, (size_t)(slash - target)) : strdup(target);
	} else {
		if (strncmp(target, "unix:", 5) == 0 || strchr(target, '$')) {
			nerr(p, n, "\"proxy_pass\" to \"%s\" is not supported by ktlsgw", target);
			return 0;
		}
		hostport = strdup(target);
	}
	if (!hostport)
		return -ENOMEM;
	if (http) {
		/* as nginx: an upstream{} of that name before any host of that name */
		for (size_t i = 0; i < p->nups; i++) {
			if (strcasecmp(p->ups[i]->name, hostport) != 0)
				continue;
			if (!cf_mark(p, n, w->lv, kw->field))
				goto out;
			w->lv->backend = p->ups[i]->addr;
			w->lv->backendlen = p->ups[i]->addrlen;
			w->lv->ups = p->ups[i];
			goto set;
		}
	}
	if (cf_parse_addr(hostport, false, http ? 80 : 0, &ss, &sslen, &why)) {
		w->srv->proxy_pass_err = true;
		nerr(p, n, "%s in upstream \"%s\"", why, hostport);
		goto out;
	}
	if (!cf_mark(p, n, w->lv, kw->field))
		goto out;
	w->lv->backend = ss;
	w->lv->backendlen = sslen;
	w->lv->ups = NULL;
set:
	w->lv->proxy_pass.s = strdup(n->args[1]);
	w->lv->proxy_pass.w = (struct gw_where){n->file, n->line};
	if (!w->lv->proxy_pass.s)
		ret = -ENOMEM;
out:
	free(hostport);
	return ret;
}

static int h_access_log(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			const struct cf_kw *kw)
{
	char *v = NULL;

	if (strcmp(n->args[1], "off") == 0) {
		if (n->nargs > 2) {
			nerr(p, n, "invalid parameter \"%s\"", n->args[2]);
			return 0;
		}
	} else {
		if (n->nargs > 2 && strcmp(n->args[2], "combined") != 0) {
			nerr(p, n,
			     "\"access_log\" format \"%s\" is not supported by ktlsgw, only "
			     "\"combined\"",
			     n->args[2]);
			return 0;
		}
		if (n->nargs > 3) {
			nerr(p, n, "\"access_log\" parameter \"%s\" is not supported by ktlsgw",
			     n->args[3]);
			return 0;
		}
		if (strchr(n->args[1], '$')) {
			nerr(p, n,
			     "variables in the \"access_log\" path are not supported by ktlsgw");
			return 0;
		}
		v = strcmp(n->args[1], "stderr") == 0 ? strdup("stderr") : cf_path(p, n->args[1]);
		if (!v)
			return -ENOMEM;
	}
	if (!cf_mark(p, n, w->lv, kw->field)) {
		free(v);
		return 0;
	}
	w->lv->access_log = v;
	return 0;
}

static int h_hdr_bufs(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		      const struct cf_kw *kw)
{
	long cnt, size;

	if (cf_parse_int(n->args[1], 1024, &cnt) || cnt == 0) {
		nerr(p, n, "invalid value \"%s\"", n->args[1]);
		return 0;
	}
	if (config_parse_size(n->args[2], &size) || size == 0) {
		nerr(p, n, "invalid value \"%s\"", n->args[2]);
		return 0;
	}
	if (cf_mark(p, n, w->lv, kw->field)) {
		w->lv->hb_count = (int)cnt;
		w->lv->hb_size = size;
	}
	return 0;
}

static int h_ppv(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	if (strcmp(n->args[1], "1") != 0 && strcmp(n->args[1], "2") != 0) {
		nerr(p, n,
		     "invalid value \"%s\" in \"proxy_protocol_version\" directive, it must be "
		     "\"1\" or \"2\"",
		     n->args[1]);
		return 0;
	}
	if (cf_mark(p, n, w->lv, kw->field))
		w->lv->ppv = n->args[1][0] - '0';
	return 0;
}

/* ---- server-only directives */

static int h_listen(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		    const struct cf_kw *kw)
{
	struct cf_server *s = w->srv;
	struct gw_listen l = {.backlog = 511, .ipv6only = true, .file = n->file, .line = n->line};
	bool is_default = false, ipv6only_set = false, bad = false;
	const char *why;
	struct gw_listen *slot;
	bool *dslot;

	if (strncmp(n->args[1], "unix:", 5) == 0) {
		nerr(p, n, "unix domain sockets in \"listen\" are not supported by ktlsgw");
		return 0;
	}
	if (cf_parse_addr(n->args[1], true, 80, &l.addr, &l.addrlen, &why)) {
		nerr(p, n, "%s in \"%s\" of the \"listen\" directive", why, n->args[1]);
		return 0;
	}
	for (size_t i = 2; i < n->nargs; i++) {
		const char *a = n->args[i];
		long v;

		if (strcmp(a, "ssl") == 0) {
			l.ssl = true;
		} else if (strcmp(a, "reuseport") == 0) {
			l.reuseport = true;
		} else if (strcmp(a, "default_server") == 0 || strcmp(a, "default") == 0) {
			if (w->ctx == CTX_SSRV)
				goto invalid;
			is_default = true;
		} else if (strncmp(a, "backlog=", 8) == 0) {
			if (cf_parse_int(a + 8, INT32_MAX, &v) || v == 0) {
				nerr(p, n, "invalid backlog \"%s\"", a + 8);
				bad = true;
			} else {
				l.backlog = (int)v;
			}
		} else if (strncmp(a, "ipv6only=", 9) == 0) {
			if (strcmp(a + 9, "on") == 0) {
				l.ipv6only = true;
			} else if (strcmp(a + 9, "off") == 0) {
				l.ipv6only = false;
			} else {
				nerr(p, n, "invalid ipv6only flags \"%s\"", a + 9);
				bad = true;
			}
			ipv6only_set = true;
		} else if (strcmp(a, "http2") == 0 || strcmp(a, "spdy") == 0 ||
			   strcmp(a, "quic") == 0 || strcmp(a, "http3") == 0 ||
			   strcmp(a, "proxy_protocol") == 0 || strcmp(a, "udp") == 0 ||
			   strcmp(a, "bind") == 0 || strcmp(a, "deferred") == 0 ||
			   strncmp(a, "rcvbuf=", 7) == 0 || strncmp(a, "sndbuf=", 7) == 0 ||
			   strncmp(a, "so_keepalive=", 13) == 0 ||
			   strncmp(a, "fastopen=", 9) == 0 || strncmp(a, "setfib=", 7) == 0 ||
			   strncmp(a, "accept_filter=", 14) == 0) {
			nerr(p, n,
			     "the \"%s\" parameter of the \"listen\" directive is not supported "
			     "by ktlsgw",
			     a);
			bad = true;
		} else {
		invalid:
			nerr(p, n, "invalid parameter \"%s\"", a);
			bad = true;
		}
	}
	if (ipv6only_set && l.addr.ss_family != AF_INET6) {
		nerr(p, n, "ipv6only is not supported on addr \"%s\"", n->args[1]);
		bad = true;
	}
	if (bad)
		return 0;
	for (size_t i = 0; i < s->nlistens; i++) {
		if (cf_addr_eq(&s->listens[i].addr, &l.addr)) {
			nerr(p, n, "a duplicate listen %s", n->args[1]);
			return 0;
		}
	}
	l.text = strdup(n->args[1]);
	if (!l.text)
		return -ENOMEM;
	slot = ARR_PUSH(s->listens, s->nlistens);
	if (!slot) {
		free(l.text);
		return -ENOMEM;
	}
	*slot = l;
	dslot = xrealloc_array(s->explicit_default, s->nlistens, sizeof(bool));
	if (!dslot)
		return -ENOMEM;
	s->explicit_default = dslot;
	dslot[s->nlistens - 1] = is_default;
	return 0;
}

static int h_server_name(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			 const struct cf_kw *kw)
{
	struct cf_server *s = w->srv;

	for (size_t i = 1; i < n->nargs; i++) {
		char **slot;

		if (n->args[i][0] == '~') {
			nerr(p, n,
			     "regular expressions in \"server_name\" are not supported by ktlsgw: "
			     "\"%s\"",
			     n->args[i]);
			continue;
		}
		slot = ARR_PUSH(s->names, s->nnames);
		if (!slot)
			return -ENOMEM;
		*slot = strdup(n->args[i]);
		if (!*slot)
			return -ENOMEM;
		/* nginx lowercases server names */
		for (char *c = *slot; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
	}
	return 0;
}

static int h_passthrough(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			 const struct cf_kw *kw)
{
	struct cf_server *s = w->srv;
	struct gw_passthrough pt = {};
	const char *why;

	if (!n->args[1][0]) {
		nerr(p, n, "invalid server name \"\" in \"ssl_passthrough\" directive");
		return 0;
	}
	if (cf_parse_addr(n->args[2], false, 0, &pt.addr, &pt.addrlen, &why)) {
		nerr(p, n, "%s in upstream \"%s\"", why, n->args[2]);
		return 0;
	}
	for (size_t i = 0; i < s->npts; i++) {
		if (strcasecmp(s->pts[i].server_name, n->args[1]) == 0) {
			nerr(p, n, "duplicate \"ssl_passthrough\" for server name \"%s\"",
			     n->args[1]);
			return 0;
		}
	}
	pt.server_name = strdup(n->args[1]);
	pt.target = strdup(n->args[2]);
	if (!pt.server_name || !pt.target || !ARR_PUSH(s->pts, s->npts)) {
		free(pt.server_name);
		free(pt.target);
		return -ENOMEM;
	}
	for (char *c = pt.server_name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	s->pts[s->npts - 1] = pt;
	return 0;
}

static int h_ssl(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	nerr(p, n,
	     "the \"ssl\" directive is deprecated and not supported by ktlsgw, use the "
	     "\"listen ... ssl\" directive instead");
	return 0;
}

static void cf_level_init(struct cf_level *lv)
{
	memset(lv, 0, sizeof(*lv));
}

static int h_location(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		      const struct cf_kw *kw)
{
	struct cf_walk inner = {.ctx = CTX_LOC, .srv = w->srv};

	if (n->nargs != 2 || strcmp(n->args[1], "/") != 0) {
		nerr(p, n,
		     "only \"location / { ... }\" is supported by ktlsgw, not \"location%s%s%s\"",
		     n->nargs > 1 ? " " : "", n->nargs > 1 ? n->args[1] : "",
		     n->nargs > 2 ? " ..." : "");
		return 0;
	}
	if (w->srv->loc) {
		nerr(p, n, "duplicate location \"/\"");
		return 0;
	}
	w->srv->loc = calloc(1, sizeof(*w->srv->loc));
	if (!w->srv->loc)
		return -ENOMEM;
	cf_level_init(w->srv->loc);
	inner.lv = w->srv->loc;
	return cf_walk_list(p, n->children, &inner);
}

static int h_server(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		    const struct cf_kw *kw)
{
	struct cf_walk inner = {};
	struct cf_server *s, **slot;

	if (n->nargs != 1) {
		nerr(p, n, "invalid number of arguments in \"server\" directive");
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	slot = ARR_PUSH(p->servers, p->nservers);
	if (!slot) {
		free(s);
		return -ENOMEM;
	}
	*slot = s;
	cf_level_init(&s->lv);
	s->file = n->file;
	s->line = n->line;
	s->mode = w->ctx == CTX_STREAM ? GW_MODE_STREAM : GW_MODE_HTTP;
	s->outer = w->ctx == CTX_MAIN ? NULL : w->lv;
	inner.ctx = s->mode == GW_MODE_STREAM ? CTX_SSRV : CTX_HSRV;
	inner.lv = &s->lv;
	inner.srv = s;
	return cf_walk_list(p, n->children, &inner);
}

/*
 * upstream NAME { ... }: read by h_http_stream() before the rest of http{},
 * so that a proxy_pass written before the block finds it, as in nginx.
 */
static int h_upstream(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		      const struct cf_kw *kw)
{
	struct cf_walk inner = {.ctx = CTX_UPS};
	struct cf_upstream *u, **slot;
	int ret;

	for (size_t i = 0; i < p->nups; i++) {
		if (strcasecmp(p->ups[i]->name, n->args[1]) == 0) {
			nerr(p, n, "duplicate upstream \"%s\"", n->args[1]);
			return 0;
		}
	}
	u = calloc(1, sizeof(*u));
	if (!u || !(u->name = strdup(n->args[1]))) {
		free(u);
		return -ENOMEM;
	}
	slot = ARR_PUSH(p->ups, p->nups);
	if (!slot) {
		free(u->name);
		free(u);
		return -ENOMEM;
	}
	*slot = u;
	u->timeout_ms = 60000;
	u->requests = 1000;
	u->time_ms = 3600000;
	inner.ups = u;
	ret = cf_walk_list(p, n->children, &inner);
	if (ret)
		return ret;
	if (!u->nservers)
		nerr(p, n, "no servers are inside upstream");
	return 0;
}

/* server ADDR inside upstream{}: one, without parameters. */
static int h_ups_server(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			const struct cf_kw *kw)
{
	struct cf_upstream *u = w->ups;
	const char *why;

	if (u->nservers++) {
		nerr(p, n,
		     "upstream \"%s\" has more than one server: ktlsgw does not balance between "
		     "backends",
		     u->name);
		return 0;
	}
	if (n->nargs > 2) {
		nerr(p, n, "\"server\" parameter \"%s\" is not supported by ktlsgw", n->args[2]);
		return 0;
	}
	if (strncmp(n->args[1], "unix:", 5) == 0) {
		nerr(p, n, "a unix socket in upstream \"%s\" is not supported by ktlsgw", u->name);
		return 0;
	}
	if (cf_parse_addr(n->args[1], false, 80, &u->addr, &u->addrlen, &why))
		nerr(p, n, "%s in upstream \"%s\"", why, n->args[1]);
	return 0;
}

/* keepalive N, keepalive_requests N, keepalive_timeout T, keepalive_time T in upstream{}. */
static int h_ups_keepalive(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			   const struct cf_kw *kw)
{
	struct cf_upstream *u = w->ups;
	const char *name = n->args[0];
	bool *set;
	long v = 0;
	int bad;

	if (strcmp(name, "keepalive") == 0) {
		set = &u->keepalive_set;
		bad = cf_parse_int(n->args[1], INT_MAX, &v) || v < 1;
		u->keepalive = v;
	} else if (strcmp(name, "keepalive_requests") == 0) {
		set = &u->requests_set;
		bad = cf_parse_int(n->args[1], LONG_MAX / 10, &v) || v < 1;
		u->requests = v;
	} else if (strcmp(name, "keepalive_timeout") == 0) {
		set = &u->timeout_set;
		bad = cf_parse_time(n->args[1], false, &v) != 0;
		u->timeout_ms = v;
	} else {
		set = &u->time_set;
		bad = cf_parse_time(n->args[1], false, &v) != 0;
		u->time_ms = v;
	}
	if (*set) {
		nerr(p, n, "\"%s\" directive is duplicate", name);
		return 0;
	}
	*set = true;
	if (bad)
		nerr(p, n, "invalid value \"%s\" in \"%s\" directive", n->args[1], name);
	return 0;
}

static int h_http_stream(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			 const struct cf_kw *kw)
{
	bool stream = n->args[0][0] == 's';
	struct cf_level **lvp = stream ? &p->stream : &p->http;
	struct cf_walk inner = {.ctx = stream ? CTX_STREAM : CTX_HTTP};

	if (*lvp) {
		nerr(p, n, "\"%s\" directive is duplicate", n->args[0]);
		return 0;
	}
	*lvp = calloc(1, sizeof(**lvp));
	if (!*lvp)
		return -ENOMEM;
	cf_level_init(*lvp);
	inner.lv = *lvp;
	if (!stream) {
		p->ups_prescan = true;
		for (size_t i = 0; i < n->children->n; i++) {
			struct cf_node *c = &n->children->v[i];
			int ret;

			if (strcmp(c->args[0], "upstream") != 0)
				continue;
			ret = cf_walk_node(p, c, &inner);
			if (ret) {
				p->ups_prescan = false;
				return ret;
			}
		}
		p->ups_prescan = false;
	}
	return cf_walk_list(p, n->children, &inner);
}

static int h_events(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		    const struct cf_kw *kw)
{
	struct cf_walk inner = {.ctx = CTX_EVENTS};

	if (p->events_seen) {
		nerr(p, n, "\"events\" directive is duplicate");
		return 0;
	}
	p->events_seen = true;
	return cf_walk_list(p, n->children, &inner);
}

/* ---- main / events directives */

static int h_worker_processes(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
			      const struct cf_kw *kw)
{
	long v = 0;

	if (strcmp(n->args[1], "auto") != 0 && (cf_parse_int(n->args[1], 4096, &v) || v == 0)) {
		nerr(p, n, "invalid value \"%s\" in \"worker_processes\" directive", n->args[1]);
		return 0;
	}
	if (p->worker_processes_set) {
		nerr(p, n, "\"worker_processes\" directive is duplicate");
		return 0;
	}
	p->worker_processes_set = true;
	p->cfg->worker_processes = (int)v;
	return 0;
}

static int h_worker_connections(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
				const struct cf_kw *kw)
{
	long v;

	if (cf_parse_int(n->args[1], INT32_MAX, &v) || v == 0) {
		nerr(p, n, "invalid number \"%s\"", n->args[1]);
		return 0;
	}
	if (p->wc_set) {
		nerr(p, n, "\"worker_connections\" directive is duplicate");
		return 0;
	}
	p->wc_set = true;
	p->cfg->worker_connections = (int)v;
	return 0;
}

static int h_worker_rlimit_nofile(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
				  const struct cf_kw *kw)
{
	long v;

	if (cf_parse_int(n->args[1], INT32_MAX, &v) || v == 0) {
		nerr(p, n, "\"worker_rlimit_nofile\" directive invalid number");
		return 0;
	}
	if (p->cfg->worker_rlimit_nofile) {
		nerr(p, n, "\"worker_rlimit_nofile\" directive is duplicate");
		return 0;
	}
	p->cfg->worker_rlimit_nofile = v;
	return 0;
}

static int h_error_log(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		       const struct cf_kw *kw)
{
	struct gw_config *cfg = p->cfg;
	int level = GW_LOG_ERR;
	char *path;

	if (n->nargs > 2) {
		level = gw_log_level_parse(n->args[2]);
		if (level < 0) {
			nerr(p, n, "invalid log level \"%s\"", n->args[2]);
			return 0;
		}
	}
	if (n->nargs > 3) {
		nerr(p, n, "invalid number of arguments in \"error_log\" directive");
		return 0;
	}
	if (strncmp(n->args[1], "syslog:", 7) == 0 || strncmp(n->args[1], "memory:", 7) == 0) {
		nerr(p, n, "\"error_log\" to \"%s\" is not supported by ktlsgw", n->args[1]);
		return 0;
	}
	if (w->ctx != CTX_MAIN) {
		if (p->error_log_main || cfg->error_log) {
			pr_warn("%s:%d: \"error_log\" inside \"%s\" has no effect in ktlsgw (one "
				"error_log for the process, already set), ignored",
				n->file, n->line,
				w->ctx & (CTX_HTTP | CTX_STREAM) ? "http/stream" : "server");
			return 0;
		}
		pr_warn("%s:%d: \"error_log\" inside a block applies to the whole process in "
			"ktlsgw",
			n->file, n->line);
	} else if (p->error_log_main) {
		pr_warn("%s:%d: ktlsgw writes one error_log, this one is ignored", n->file,
			n->line);
		return 0;
	} else {
		p->error_log_main = true;
	}
	if (strcmp(n->args[1], "stderr") == 0)
		path = NULL;
	else if (!(path = cf_path(p, n->args[1])))
		return -ENOMEM;
	free(cfg->error_log);
	cfg->error_log = path;
	cfg->error_log_level = level;
	return 0;
}

static int h_pid(struct cf_parser *p, struct cf_node *n, struct cf_walk *w, const struct cf_kw *kw)
{
	if (p->pid_set) {
		nerr(p, n, "\"pid\" directive is duplicate");
		return 0;
	}
	p->pid_set = true;
	if (strcmp(n->args[1], "off") == 0)
		return 0;
	p->cfg->pid = cf_path(p, n->args[1]);
	return p->cfg->pid ? 0 : -ENOMEM;
}

static int h_daemon(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		    const struct cf_kw *kw)
{
	if (strcmp(n->args[1], "on") != 0 && strcmp(n->args[1], "off") != 0) {
		nerr(p, n,
		     "invalid value \"%s\" in \"daemon\" directive, it must be \"on\" or \"off\"",
		     n->args[1]);
		return 0;
	}
	if (p->daemon_set) {
		nerr(p, n, "\"daemon\" directive is duplicate");
		return 0;
	}
	p->daemon_set = true;
	p->cfg->daemon = strcmp(n->args[1], "on") == 0;
	return 0;
}

static int h_metrics(struct cf_parser *p, struct cf_node *n, struct cf_walk *w,
		     const struct cf_kw *kw)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why;

	if (cf_parse_addr(n->args[1], true, 0, &ss, &len, &why)) {
		nerr(p, n, "%s in \"%s\" of the \"metrics_listen\" directive", why, n->args[1]);
		return 0;
	}
	if (p->metrics_set) {
		nerr(p, n, "\"metrics_listen\" directive is duplicate");
		return 0;
	}
	p->metrics_set = true;
	p->cfg->metrics_listen = strdup(n->args[1]);
	return p->cfg->metrics_listen ? 0 : -ENOMEM;
}

static const struct cf_enum verify_vals[] = {
	{"on", GW_VERIFY_ON},
	{"off", GW_VERIFY_OFF},
	{"optional", GW_VERIFY_OPTIONAL},
	{"optional_no_ca", GW_VERIFY_OPTIONAL_NO_CA},
	{},
};
static const struct cf_enum ktls_vals[] = {
	{"auto", GW_KTLS_AUTO},
	{"on", GW_KTLS_ON},
	{"off", GW_KTLS_OFF},
	{},
};
static const struct cf_enum vfail_vals[] = {
	{"handshake", GW_VFAIL_HANDSHAKE},
	{"http", GW_VFAIL_HTTP},
	{},
};

#define LVOFF(f) offsetof(struct cf_level, f)

static const struct cf_kw cf_keywords[] = {
	/* main */
	{"worker_processes", CTX_MAIN, 1, 1, false, h_worker_processes, -1, 0, NULL},
	{"worker_rlimit_nofile", CTX_MAIN, 1, 1, false, h_worker_rlimit_nofile, -1, 0, NULL},
	{"error_log", CTX_MAIN | CTX_ALLSRV, 1, 2, false, h_error_log, -1, 0, NULL},
	{"pid", CTX_MAIN, 1, 1, false, h_pid, -1, 0, NULL},
	{"daemon", CTX_MAIN, 1, 1, false, h_daemon, -1, 0, NULL},
	{"metrics_listen", CTX_MAIN, 1, 1, false, h_metrics, -1, 0, NULL},
	{"events", CTX_MAIN, 0, 0, true, h_events, -1, 0, NULL},
	{"http", CTX_MAIN, 0, 0, true, h_http_stream, -1, 0, NULL},
	{"stream", CTX_MAIN, 0, 0, true, h_http_stream, -1, 0, NULL},
	{"server", CTX_MAIN | CTX_HTTP | CTX_STREAM, 0, CF_ANY_ARGS, true, h_server, -1, 0, NULL},
	/* events */
	{"worker_connections", CTX_EVENTS, 1, 1, false, h_worker_connections, -1, 0, NULL},
	/* servers */
	{"listen", CTX_HSRV | CTX_SSRV, 1, CF_ANY_ARGS, false, h_listen, -1, 0, NULL},
	{"server_name", CTX_HSRV | CTX_SSRV, 1, CF_ANY_ARGS, false, h_server_name, -1, 0, NULL},
	{"location", CTX_HSRV, 1, 2, true, h_location, -1, 0, NULL},
	{"ssl_passthrough", CTX_HSRV | CTX_SSRV, 2, 2, false, h_passthrough, -1, 0, NULL},
	/* upstream{} */
	{"upstream", CTX_HTTP, 1, 1, true, h_upstream, -1, 0, NULL},
	{"server", CTX_UPS, 1, CF_ANY_ARGS, false, h_ups_server, -1, 0, NULL},
	{"keepalive", CTX_UPS, 1, 1, false, h_ups_keepalive, -1, 0, NULL},
	{"keepalive_requests", CTX_UPS, 1, 1, false, h_ups_keepalive, -1, 0, NULL},
	{"keepalive_timeout", CTX_UPS, 1, 1, false, h_ups_keepalive, -1, 0, NULL},
	{"keepalive_time", CTX_UPS, 1, 1, false, h_ups_keepalive, -1, 0, NULL},
	/* upstream */
	{"proxy_pass", CTX_HSRV | CTX_LOC | CTX_SSRV, 1, 1, false, h_proxy_pass, F_PROXY_PASS, 0,
	 NULL},
	{"proxy_set_header", CTX_HL, 2, 2, false, h_set_header, F_HEADERS, 0, NULL},
	{"access_log", CTX_ALLSRV, 1, 3, false, h_access_log, F_ACCESS_LOG, 0, NULL},
	{"keepalive_timeout", CTX_HL, 1, 2, false, h_time, F_IDLE_TO, LVOFF(idle_ms), NULL},
	{"proxy_timeout", CTX_S, 1, 1, false, h_time, F_IDLE_TO, LVOFF(idle_ms), NULL},
	{"proxy_connect_timeout", CTX_ALLSRV, 1, 1, false, h_time, F_CONNECT_TO, LVOFF(connect_ms),
	 NULL},
	{"large_client_header_buffers", CTX_H, 2, 2, false, h_hdr_bufs, F_HDR_BUFS, 0, NULL},
	{"proxy_protocol", CTX_S, 1, 1, false, h_flag, F_PP, LVOFF(pp), NULL},
	{"proxy_protocol_version", CTX_S, 1, 1, false, h_ppv, F_PPV, 0, NULL},
	{"proxy_protocol_tlv_cert", CTX_S, 1, 1, false, h_flag, F_PP_TLV, LVOFF(pp_tlv), NULL},
	/* TLS */
	{"ssl", CTX_SSL, 1, 1, false, h_ssl, -1, 0, NULL},
	{"ssl_certificate", CTX_SSL, 1, 1, false, h_cert, F_CERT, 0, NULL},
	{"ssl_certificate_key", CTX_SSL, 1, 1, false, h_cert, F_KEY, 0, NULL},
	{"ssl_client_certificate", CTX_SSL, 1, 1, false, h_str, F_CLIENT_CA, LVOFF(client_ca),
	 NULL},
	{"ssl_trusted_certificate", CTX_SSL, 1, 1, false, h_str, F_TRUSTED, LVOFF(trusted), NULL},
	{"ssl_crl", CTX_SSL, 1, 1, false, h_str, F_CRL, LVOFF(crl), NULL},
	{"ssl_ciphers", CTX_SSL, 1, 1, false, h_str, F_CIPHERS, LVOFF(ciphers), NULL},
	{"ssl_ecdh_curve", CTX_SSL, 1, 1, false, h_str, F_ECDH, LVOFF(ecdh), NULL},
	{"ssl_verify_client", CTX_SSL, 1, 1, false, h_enum, F_VERIFY, LVOFF(verify), verify_vals},
	{"ssl_verify_depth", CTX_SSL, 1, 1, false, h_int, F_DEPTH, LVOFF(depth), NULL},
	{"ssl_protocols", CTX_SSL, 1, CF_ANY_ARGS, false, h_protocols, F_PROTOCOLS, 0, NULL},
	{"ssl_prefer_server_ciphers", CTX_SSL, 1, 1, false, h_flag, F_PREFER, LVOFF(prefer), NULL},
	{"ssl_session_cache", CTX_SSL, 1, 2, false, h_sess_cache, F_SESS_CACHE, 0, NULL},
	{"ssl_session_timeout", CTX_SSL, 1, 1, false, h_time, F_SESS_TIMEOUT, LVOFF(sess_timeout),
	 NULL},
	{"ssl_session_tickets", CTX_SSL, 1, 1, false, h_flag, F_TICKETS, LVOFF(tickets), NULL},
	{"ssl_verify_cache", CTX_SSL, 1, 1, false, h_flag, F_VCACHE, LVOFF(vcache), NULL},
	{"ssl_ktls", CTX_SSL, 1, 1, false, h_enum, F_KTLS, LVOFF(ktls), ktls_vals},
	{"ssl_verify_failure", CTX_SSL, 1, 1, false, h_enum, F_VFAIL, LVOFF(vfail), vfail_vals},
	{"ssl_client_allow", CTX_SSL, 2, 2, false, h_allow, F_ALLOW, 0, NULL},
	{"ssl_handshake_timeout", CTX_SSL, 1, 1, false, h_time, F_HS_TIMEOUT, LVOFF(hs_timeout_ms),
	 NULL},
};

/*
 * nginx directives that do not apply to ktlsgw: accepted, logged as a
 * warning, otherwise ignored (DESIGN.md: "a clear error or an explicit,
 * logged no-op"). Why each one is harmless:
 *   user                        we run as the user that started us (no privilege drop)
 *   worker_cpu_affinity, worker_priority, worker_shutdown_timeout, timer_resolution,
 *   pcre_jit, load_module, env, lock_file, working_directory, thread_pool:
 *                               nginx process/module tuning without a ktlsgw equivalent
 *   use, multi_accept, accept_mutex, accept_mutex_delay, worker_aio_requests:
 *                               event-loop tuning; ktlsgw always uses io_uring
 *   sendfile, tcp_nopush, tcp_nodelay, aio, directio, output_buffers:
 *                               static-file serving and socket tuning for responses
 *   types {}, default_type, types_hash_*, server_names_hash_*, variables_hash_*:
 *                               MIME types and nginx's hash tables (nothing served)
 *   server_tokens, charset, gzip*, etag, index, root, autoindex:
 *                               response generation; ktlsgw relays the backend's answer
 *   client_max_body_size, client_body_buffer_size, client_header_buffer_size,
 *   client_header_timeout, client_body_timeout, send_timeout, keepalive_requests,
 *   reset_timedout_connection:  nginx enforces these per request; ktlsgw does NOT
 *                               (bodies stream unlimited), hence the warning
 *   proxy_http_version, proxy_buffering, proxy_buffer_size, proxy_buffers,
 *   proxy_busy_buffers_size, proxy_request_buffering, proxy_read_timeout,
 *   proxy_send_timeout, proxy_redirect:
 *                               ktlsgw relays HTTP/1.1 unbuffered; idle timeout is
 *                               keepalive_timeout (http) / proxy_timeout (stream)
 *   log_format                  only "combined" is written
 *   resolver, resolver_timeout  names are resolved once at start-up
 *   ssl_dhparam                 DHE suites need it; without it they are off, as in nginx
 *                               when it is absent (ECDHE is unaffected)
 *   ssl_stapling, ssl_stapling_verify, ssl_stapling_file, ssl_stapling_responder,
 *   ssl_buffer_size, ssl_session_ticket_key:
 *                               OCSP stapling and record sizing are not done; ticket
 *                               keys come from a secret random per start (tls.c)
 * Anything not in this table and not supported is an error, e.g. add_header
 * (would silently drop e.g. HSTS), ssl_password_file, ssl_early_data.
 */
struct cf_noop {
	const char *name;
	bool block;
};

static const struct cf_noop cf_noops[] = {
	{"user", false},
	{"worker_cpu_affinity", false},
	{"worker_priority", false},
	{"worker_shutdown_timeout", false},
	{"timer_resolution", false},
	{"pcre_jit", false},
	{"load_module", false},
	{"env", false},
	{"lock_file", false},
	{"working_directory", false},
	{"thread_pool", false},
	{"use", false},
	{"multi_accept", false},
	{"accept_mutex", false},
	{"accept_mutex_delay", false},
	{"worker_aio_requests", false},
	{"sendfile", false},
	{"tcp_nopush", false},
	{"tcp_nodelay", false},
	{"aio", false},
	{"directio", false},
	{"output_buffers", false},
	{"types", true},
	{"default_type", false},
	{"types_hash_max_size", false},
	{"types_hash_bucket_size", false},
	{"server_names_hash_max_size", false},
	{"server_names_hash_bucket_size", false},
	{"variables_hash_max_size", false},
	{"variables_hash_bucket_size", false},
	{"server_tokens", false},
	{"charset", false},
	{"gzip", false},
	{"gzip_vary", false},
	{"gzip_proxied", false},
	{"gzip_comp_level", false},
	{"gzip_buffers", false},
	{"gzip_http_version", false},
	{"gzip_types", false},
	{"gzip_min_length", false},
	{"gzip_disable", false},
	{"etag", false},
	{"index", false},
	{"root", false},
	{"autoindex", false},
	{"client_max_body_size", false},
	{"client_body_buffer_size", false},
	{"client_header_buffer_size", false},
	{"client_header_timeout", false},
	{"client_body_timeout", false},
	{"send_timeout", false},
	{"keepalive_requests", false},
	{"reset_timedout_connection", false},
	{"proxy_http_version", false},
	{"proxy_buffering", false},
	{"proxy_buffer_size", false},
	{"proxy_buffers", false},
	{"proxy_busy_buffers_size", false},
	{"proxy_request_buffering", false},
	{"proxy_read_timeout", false},
	{"proxy_send_timeout", false},
	{"proxy_redirect", false},
	{"log_format", false},
	{"resolver", false},
	{"resolver_timeout", false},
	{"ssl_dhparam", false},
	{"ssl_stapling", false},
	{"ssl_stapling_verify", false},
	{"ssl_stapling_file", false},
	{"ssl_stapling_responder", false},
	{"ssl_buffer_size", false},
	{"ssl_session_ticket_key", false},
};

static int cf_walk_node(struct cf_parser *p, struct cf_node *n, struct cf_walk *w)
{
	const char *name = n->args[0];
	const struct cf_kw *kw = NULL;
	size_t nargs = n->nargs - 1;
	bool known = false;

	if (w->ctx == CTX_TYPES)
		return 0;
	if (w->ctx == CTX_HTTP && !p->ups_prescan && strcmp(name, "upstream") == 0)
		return 0; /* read before the rest of http{} (h_http_stream) */
	for (size_t i = 0; i < ARRAY_SIZE(cf_keywords); i++) {
		if (strcmp(cf_keywords[i].name, name) != 0)
			continue;
		known = true;
		if (cf_keywords[i].ctx & w->ctx) {
			kw = &cf_keywords[i];
			break;
		}
	}
	if (!kw) {
		/* keepalive_requests is upstream{}'s and a no-op in http{} */
		for (size_t i = 0; i < ARRAY_SIZE(cf_noops); i++) {
			if (strcmp(cf_noops[i].name, name) != 0)
				continue;
			if (cf_noops[i].block != n->block) {
				nerr(p, n,
				     cf_noops[i].block
					     ? "directive \"%s\" has no opening \"{\""
					     : "directive \"%s\" is not terminated by \";\"",
				     name);
				return 0;
			}
			pr_warn("%s:%d: \"%s\" has no effect in ktlsgw, ignored", n->file, n->line,
				name);
			return 0;
		}
		if (known)
			nerr(p, n, "\"%s\" directive is not allowed here", name);
		else
			nerr(p, n, "unknown directive \"%s\"", name);
		return 0;
	}
	if (kw->block != n->block) {
		nerr(p, n,
		     kw->block ? "directive \"%s\" has no opening \"{\""
			       : "directive \"%s\" is not terminated by \";\"",
		     name);
		return 0;
	}
	if (nargs < kw->amin || nargs > kw->amax) {
		nerr(p, n, "invalid number of arguments in \"%s\" directive", name);
		return 0;
	}
	return kw->fn(p, n, w, kw);
}

static int cf_walk_list(struct cf_parser *p, struct cf_list *l, struct cf_walk *w)
{
	for (size_t i = 0; i < l->n; i++) {
		int ret = cf_walk_node(p, &l->v[i], w);

		if (ret)
			return ret;
	}
	return 0;
}

/* ---------------------------------------------------------------- merge */

static void cf_level_free(struct cf_level *lv)
{
	if (!lv)
		return;
	for (size_t i = 0; i < lv->ncerts; i++)
		free(lv->certs[i].s);
	for (size_t i = 0; i < lv->nkeys; i++)
		free(lv->keys[i].s);
	free(lv->certs);
	free(lv->keys);
	free(lv->client_ca.s);
	free(lv->trusted.s);
	free(lv->crl.s);
	free(lv->ciphers.s);
	free(lv->ecdh.s);
	for (size_t i = 0; i < lv->nallows; i++)
		free(lv->allows[i].value);
	free(lv->allows);
	free(lv->proxy_pass.s);
	for (size_t i = 0; i < lv->nheaders; i++) {
		free(lv->headers[i].name);
		tmpl_free(&lv->headers[i].value);
	}
	free(lv->headers);
	free(lv->access_log);
}

static void cf_server_free(struct cf_server *s)
{
	if (!s)
		return;
	cf_level_free(&s->lv);
	cf_level_free(s->loc);
	free(s->loc);
	for (size_t i = 0; i < s->nlistens; i++)
		free(s->listens[i].text);
	free(s->listens);
	free(s->explicit_default);
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	free(s->names);
	for (size_t i = 0; i < s->npts; i++) {
		free(s->pts[i].server_name);
		free(s->pts[i].target);
	}
	free(s->pts);
	free(s);
}

/* The innermost level of @s that set @field, or NULL (use the default). */
static const struct cf_level *cf_pick(const struct cf_server *s, int field)
{
	uint64_t bit = 1ULL << field;

	if (s->loc && (s->loc->set & bit))
		return s->loc;
	if (s->lv.set & bit)
		return &s->lv;
	if (s->outer && (s->outer->set & bit))
		return s->outer;
	return NULL;
}

static int cf_dup(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int cf_dup_strw(char **dst, struct gw_where *w, const struct cf_level *L, size_t off,
		       const char *def)
{
	const struct cf_strw *sw;

	if (!L) {
		*w = (struct gw_where){};
		return cf_dup(dst, def);
	}
	sw = (const struct cf_strw *)((const char *)L + off);
	*w = sw->w;
	return cf_dup(dst, sw->s);
}

static void server_fields_free(struct gw_server *s);

/* Fill @d from the merged levels of @s. */
static int cf_build_server(struct cf_parser *p, struct cf_server *s, struct gw_server *d)
{
	const struct cf_level *L;
	size_t i;

	d->mode = s->mode;
	d->file = s->file;
	d->line = s->line;

	/* listens, names, passthroughs move over */
	d->listens = s->listens;
	d->nlistens = s->nlistens;
	s->listens = NULL;
	s->nlistens = 0;
	if (s->nnames) {
		d->server_names = s->names;
		d->nserver_names = s->nnames;
		s->names = NULL;
		s->nnames = 0;
	} else {
		d->server_names = calloc(1, sizeof(char *));
		if (!d->server_names || cf_dup(&d->server_names[0], ""))
			return -ENOMEM;
		d->nserver_names = 1;
	}
	d->passthroughs = s->pts;
	d->npassthroughs = s->npts;
	s->pts = NULL;
	s->npts = 0;

	/* certificates and keys: each list comes whole from one level (nginx's ptr merge) */
	L = cf_pick(s, F_CERT);
	if (L && L->ncerts) {
		const struct cf_level *K = cf_pick(s, F_KEY);
		size_t nkeys = K ? K->nkeys : 0;

		if (nkeys < L->ncerts) {
			const struct cf_strw *c = &L->certs[L->ncerts - 1];

			cf_error(p, c->w.file, c->w.line,
				 "no \"ssl_certificate_key\" is defined for certificate \"%s\"",
				 c->s);
		} else {
			d->certs = calloc(L->ncerts, sizeof(char *));
			d->keys = calloc(L->ncerts, sizeof(char *));
			d->certs_where = calloc(L->ncerts, sizeof(struct gw_where));
			d->keys_where = calloc(L->ncerts, sizeof(struct gw_where));
			if (!d->certs || !d->keys || !d->certs_where || !d->keys_where)
				return -ENOMEM;
			d->ncerts = L->ncerts;
			for (i = 0; i < L->ncerts; i++) {
				if (cf_dup(&d->certs[i], L->certs[i].s) ||
				    cf_dup(&d->keys[i], K->keys[i].s))
					return -ENOMEM;
				d->certs_where[i] = L->certs[i].w;
				d->keys_where[i] = K->keys[i].w;
			}
		}
	}
	if (cf_dup_strw(&d->client_certificate, &d->client_certificate_where,
			cf_pick(s, F_CLIENT_CA), LVOFF(client_ca), NULL) ||
	    cf_dup_strw(&d->trusted_certificate, &d->trusted_certificate_where,
			cf_pick(s, F_TRUSTED), LVOFF(trusted), NULL) ||
	    cf_dup_strw(&d->crl, &d->crl_where, cf_pick(s, F_CRL), LVOFF(crl), NULL) ||
	    cf_dup_strw(&d->ciphers, &d->ciphers_where, cf_pick(s, F_CIPHERS), LVOFF(ciphers),
			"HIGH:!aNULL:!MD5"))
		return -ENOMEM;
	{
		struct gw_where unused;

		if (cf_dup_strw(&d->ecdh_curve, &unused, cf_pick(s, F_ECDH), LVOFF(ecdh), NULL))
			return -ENOMEM;
		if (d->ecdh_curve && strcmp(d->ecdh_curve, "auto") == 0) {
			free(d->ecdh_curve);
			d->ecdh_curve = NULL;
		}
	}
	L = cf_pick(s, F_VERIFY);
	d->verify = L ? (enum gw_verify)L->verify : GW_VERIFY_OFF;
	d->verify_where = L ? L->verify_where : (struct gw_where){};
	L = cf_pick(s, F_DEPTH);
	d->verify_depth = L ? L->depth : 1;
	L = cf_pick(s, F_PROTOCOLS);
	d->protocols = L ? L->protocols : GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3;
	L = cf_pick(s, F_PREFER);
	d->prefer_server_ciphers = L ? L->prefer : false;
	L = cf_pick(s, F_SESS_CACHE);
	d->session_cache = L ? (enum gw_sess_cache)L->sess_cache : GW_SESS_CACHE_NONE;
	d->session_cache_size = L ? L->sess_cache_size : 0;
	L = cf_pick(s, F_SESS_TIMEOUT);
	d->session_timeout = L ? L->sess_timeout : 300;
	L = cf_pick(s, F_TICKETS);
	d->session_tickets = L ? L->tickets : true;
	L = cf_pick(s, F_VCACHE);
	d->verify_cache = L ? L->vcache : true;
	L = cf_pick(s, F_KTLS);
	d->ktls = L ? (enum gw_ktls)L->ktls : GW_KTLS_AUTO;
	L = cf_pick(s, F_VFAIL);
	d->verify_failure = L ? (enum gw_verify_failure)L->vfail : GW_VFAIL_HANDSHAKE;
	L = cf_pick(s, F_HS_TIMEOUT);
	d->handshake_timeout_ms = L ? L->hs_timeout_ms : 10000;

	L = cf_pick(s, F_ALLOW);
	if (L && L->nallows) {
		d->allows = calloc(L->nallows, sizeof(*d->allows));
		if (!d->allows)
			return -ENOMEM;
		d->nallows = L->nallows;
		for (i = 0; i < L->nallows; i++) {
			d->allows[i].kind = L->allows[i].kind;
			if (cf_dup(&d->allows[i].value, L->allows[i].value))
				return -ENOMEM;
		}
	}

	L = cf_pick(s, F_PROXY_PASS);
	if (L) {
		if (cf_dup(&d->proxy_pass, L->proxy_pass.s))
			return -ENOMEM;
		d->backend = L->backend;
		d->backendlen = L->backendlen;
		if (L->ups) {
			d->keepalive = (int)L->ups->keepalive;
			d->keepalive_timeout_ms = L->ups->timeout_ms;
			d->keepalive_requests = L->ups->requests;
			d->keepalive_time_ms = L->ups->time_ms;
		}
	}
	L = cf_pick(s, F_HEADERS);
	if (L && L->nheaders) {
		d->headers = calloc(L->nheaders, sizeof(*d->headers));
		if (!d->headers)
			return -ENOMEM;
		d->nheaders = L->nheaders;
		for (i = 0; i < L->nheaders; i++) {
			char *err = NULL;

			if (cf_dup(&d->headers[i].name, L->headers[i].name))
				return -ENOMEM;
			/* recompiling known-good text cannot fail but for memory */
			if (tmpl_compile(L->headers[i].value.src, &d->headers[i].value, &err)) {
				free(err);
				return -ENOMEM;
			}
		}
	}
	L = cf_pick(s, F_PP);
	d->proxy_protocol = L ? L->pp : false;
	L = cf_pick(s, F_PPV);
	d->proxy_protocol_version = L ? L->ppv : 2;
	L = cf_pick(s, F_PP_TLV);
	d->proxy_protocol_tlv_cert = L ? L->pp_tlv : false;
	L = cf_pick(s, F_CONNECT_TO);
	d->proxy_connect_timeout_ms = L ? L->connect_ms : 60000;
	L = cf_pick(s, F_IDLE_TO);
	d->idle_timeout_ms = L ? L->idle_ms : s->mode == GW_MODE_HTTP ? 75000 : 600000;
	L = cf_pick(s, F_HDR_BUFS);
	d->header_buffer_count = L ? L->hb_count : 4;
	d->header_buffer_size = L ? L->hb_size : 8192;
	L = cf_pick(s, F_ACCESS_LOG);
	if (L && cf_dup(&d->access_log, L->access_log))
		return -ENOMEM;
	return 0;
}

/* Semantic checks of one merged server (nginx's merge-time errors and ours). */
static void cf_check_server(struct cf_parser *p, const struct cf_server *s,
			    const struct gw_server *d, bool certs_err)
{
	const struct gw_listen *first_ssl = NULL;

	if (!d->nlistens)
		cf_error(p, d->file, d->line,
			 "no \"listen ... ssl\" is defined for server: ktlsgw only terminates TLS, "
			 "add \"listen 443 ssl;\"");
	for (size_t i = 0; i < d->nlistens; i++) {
		if (d->listens[i].ssl) {
			if (!first_ssl)
				first_ssl = &d->listens[i];
		} else {
			cf_error(p, d->listens[i].file, d->listens[i].line,
				 "\"listen %s\" without \"ssl\" is not supported: ktlsgw only "
				 "terminates TLS",
				 d->listens[i].text);
		}
	}
	if (first_ssl && !d->ncerts && !certs_err)
		cf_error(
			p, d->file, d->line,
			"no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in "
			"%s:%d",
			first_ssl->file, first_ssl->line);
	if ((d->verify == GW_VERIFY_ON || d->verify == GW_VERIFY_OPTIONAL) &&
	    !d->client_certificate)
		cf_error(p, d->verify_where.file, d->verify_where.line,
			 "no ssl_client_certificate for ssl_verify_client");
	if (d->mode == GW_MODE_STREAM) {
		if (!d->proxy_pass && !s->proxy_pass_err)
			cf_error(p, d->file, d->line,
				 "no \"proxy_pass\" is defined for server in %s:%d", d->file,
				 d->line);
		if (d->verify_failure == GW_VFAIL_HTTP)
			cf_error(
				p, d->file, d->line,
				"\"ssl_verify_failure http\" is only possible in http servers, not "
				"in the stream server in %s:%d",
				d->file, d->line);
		if (d->proxy_protocol && d->proxy_protocol_tlv_cert &&
		    d->proxy_protocol_version == 1)
			pr_warn("%s:%d: \"proxy_protocol_tlv_cert on\" has no effect with "
				"\"proxy_protocol_version 1\" (v1 carries no TLVs)",
				d->file, d->line);
	} else if (!d->proxy_pass) {
		/* nginx would serve files; the seed's blocks have no proxy_pass and must load */
		pr_warn("%s:%d: no \"proxy_pass\" is defined for server: its requests are "
			"answered 404 (ktlsgw serves no files)",
			d->file, d->line);
	}
}

/* Across servers: same address = same flags and mode; one default server per address. */
static void cf_check_addresses(struct cf_parser *p, struct gw_config *cfg)
{
	struct gw_server *sv = cfg->servers;

	for (size_t a = 0; a < cfg->nservers; a++) {
		for (size_t i = 0; i < sv[a].nlistens; i++) {
			struct gw_listen *l = &sv[a].listens[i];
			struct gw_listen *first = NULL;
			bool seen_default = false, conflict = false;

			/* only handle an address at its first occurrence */
			for (size_t b = 0; b <= a && !first; b++)
				for (size_t j = 0; j < sv[b].nlistens; j++) {
					if (b == a && j == i)
						break;
					if (cf_addr_eq(&sv[b].listens[j].addr, &l->addr)) {
						first = &sv[b].listens[j];
						break;
					}
				}
			if (first)
				continue;
			for (size_t b = a; b < cfg->nservers; b++) {
				for (size_t j = 0; j < sv[b].nlistens; j++) {
					struct gw_listen *o = &sv[b].listens[j];

					if (o == l || !cf_addr_eq(&o->addr, &l->addr))
						continue;
					if (!conflict &&
					    (o->ssl != l->ssl || o->reuseport != l->reuseport ||
					     sv[b].mode != sv[a].mode ||
					     o->ipv6only != l->ipv6only)) {
						cf_error(p, o->file, o->line,
							 "duplicate listen options for %s: "
							 "different "
							 "%s than in %s:%d",
							 o->text,
							 sv[b].mode != sv[a].mode
								 ? "http/stream mode"
								 : "flags",
							 l->file, l->line);
						conflict = true;
					}
				}
			}
			/* default server */
			for (size_t b = a; b < cfg->nservers; b++) {
				for (size_t j = 0; j < sv[b].nlistens; j++) {
					struct gw_listen *o = &sv[b].listens[j];

					if (!cf_addr_eq(&o->addr, &l->addr) || !o->default_server)
						continue;
					if (seen_default) {
						cf_error(p, o->file, o->line,
							 "a duplicate default server for %s",
							 o->text);
						o->default_server = false;
					}
					seen_default = true;
				}
			}
			if (!seen_default)
				l->default_server = true;
		}
	}
}

static int cf_finish(struct cf_parser *p)
{
	struct gw_config *cfg = p->cfg;
	int ret;

	cfg->servers = calloc(p->nservers ? p->nservers : 1, sizeof(*cfg->servers));
	if (!cfg->servers)
		return -ENOMEM;
	for (size_t i = 0; i < p->nservers; i++) {
		struct cf_server *s = p->servers[i];
		struct gw_server *d = &cfg->servers[cfg->nservers++];
		int before = p->nerrs;

		for (size_t j = 0; j < s->nlistens; j++)
			s->listens[j].default_server = s->explicit_default[j];
		ret = cf_build_server(p, s, d);
		if (ret)
			return ret;
		cf_check_server(p, s, d, p->nerrs != before);
	}
	cf_check_addresses(p, cfg);
	if (!cfg->nservers)
		cf_error(p, cfg->file, 1, "no \"server\" is defined: nothing to do");
	return 0;
}

/* ---------------------------------------------------------------- entry points */

static void server_fields_free(struct gw_server *s)
{
	for (size_t i = 0; i < s->nlistens; i++)
		free(s->listens[i].text);
	free(s->listens);
	for (size_t i = 0; i < s->nserver_names; i++)
		free(s->server_names[i]);
	free(s->server_names);
	for (size_t i = 0; i < s->ncerts; i++) {
		free(s->certs[i]);
		free(s->keys[i]);
	}
	free(s->certs);
	free(s->keys);
	free(s->certs_where);
	free(s->keys_where);
	free(s->client_certificate);
	free(s->trusted_certificate);
	free(s->crl);
	free(s->ciphers);
	free(s->ecdh_curve);
	for (size_t i = 0; i < s->nallows; i++)
		free(s->allows[i].value);
	free(s->allows);
	for (size_t i = 0; i < s->npassthroughs; i++) {
		free(s->passthroughs[i].server_name);
		free(s->passthroughs[i].target);
	}
	free(s->passthroughs);
	free(s->proxy_pass);
	for (size_t i = 0; i < s->nheaders; i++) {
		free(s->headers[i].name);
		tmpl_free(&s->headers[i].value);
	}
	free(s->headers);
	free(s->access_log);
}

void config_free(struct gw_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nservers; i++)
		server_fields_free(&cfg->servers[i]);
	free(cfg->servers);
	free(cfg->file);
	free(cfg->error_log);
	free(cfg->pid);
	free(cfg->metrics_listen);
	for (size_t i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg);
}

/*
 * Common body of config_load() and config_parse_buf(): @text NULL means
 * read @name from disk.
 */
static struct gw_config *cf_run(const char *text, const char *name, char **err)
{
	struct cf_parser p = {};
	struct cf_list root = {};
	struct cf_walk w = {.ctx = CTX_MAIN};
	struct gw_config *cfg;
	int ret = -ENOMEM;

	*err = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		goto oom;
	p.cfg = cfg;
	cfg->file = strdup(name);
	cfg->error_log_level = GW_LOG_ERR;
	cfg->worker_processes = 1;
	cfg->worker_connections = 512;
	p.prefix = cf_dirname(name);
	if (!cfg->file || !p.prefix)
		goto out;
	if (text) {
		const char *file = cf_intern_file(&p, name);

		if (!file)
			goto out;
		ret = cf_parse_text(&p, text, strlen(text), file, &root);
	} else {
		ret = cf_parse_file(&p, name, &root, NULL, 0);
		if (ret == -ENOMEM)
			goto out;
		if (ret) {
			/* the message names the file at line 0; nginx says it without a line */
			buf_free(&p.err);
			memset(&p.err, 0, sizeof(p.err));
			buf_printf(&p.err, "open() \"%s\" failed (%d: %s)", name, -ret,
				   strerror(-ret));
			p.nerrs = 1;
			ret = 0;
			goto out;
		}
	}
	if (ret)
		goto out;
	ret = cf_walk_list(&p, &root, &w);
	if (ret)
		goto out;
	ret = cf_finish(&p);
out:
	cf_list_free(&root);
	for (size_t i = 0; i < p.nservers; i++)
		cf_server_free(p.servers[i]);
	free(p.servers);
	cf_level_free(p.http);
	free(p.http);
	cf_level_free(p.stream);
	free(p.stream);
	for (size_t i = 0; i < p.nups; i++) {
		free(p.ups[i]->name);
		free(p.ups[i]);
	}
	free(p.ups);
	free(p.prefix);
	if (ret == -ENOMEM) {
		buf_free(&p.err);
		config_free(cfg);
		goto oom;
	}
	if (p.nerrs) {
		*err = buf_strdup(&p.err);
		buf_free(&p.err);
		config_free(cfg);
		return NULL;
	}
	buf_free(&p.err);
	return cfg;
oom:
	*err = strdup("out of memory");
	return NULL;
}

struct gw_config *config_load(const char *path, char **err)
{
	return cf_run(NULL, path, err);
}

struct gw_config *config_parse_buf(const char *text, const char *name, char **err)
{
	return cf_run(text, name, err);
}

/* ---------------------------------------------------------------- validate */

static void cf_check_file(struct buf *b, int *nerrs, const struct gw_where *w, const char *what,
			  const char *path)
{
	struct stat st;
	int fd, e = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		e = errno;
	else if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		e = EISDIR;
	if (fd >= 0)
		close(fd);
	if (!e)
		return;
	if (b->len)
		buf_puts(b, "\n");
	buf_printf(b, "%s:%d: cannot load %s \"%s\": %s", w->file ? w->file : "?", w->line, what,
		   path, strerror(e));
	(*nerrs)++;
}

int config_validate(const struct gw_config *cfg, char **err)
{
	struct buf b = {};
	int nerrs = 0;

	*err = NULL;
	for (size_t i = 0; i < cfg->nservers; i++) {
		const struct gw_server *s = &cfg->servers[i];

		for (size_t j = 0; j < s->ncerts; j++) {
			cf_check_file(&b, &nerrs, &s->certs_where[j], "certificate", s->certs[j]);
			cf_check_file(&b, &nerrs, &s->keys_where[j], "certificate key", s->keys[j]);
		}
		if (s->client_certificate)
			cf_check_file(&b, &nerrs, &s->client_certificate_where, "certificate",
				      s->client_certificate);
		if (s->trusted_certificate)
			cf_check_file(&b, &nerrs, &s->trusted_certificate_where, "certificate",
				      s->trusted_certificate);
		if (s->crl)
			cf_check_file(&b, &nerrs, &s->crl_where, "CRL", s->crl);
	}
	if (!nerrs) {
		buf_free(&b);
		return 0;
	}
	*err = buf_strdup(&b);
	buf_free(&b);
	return -EINVAL;
}
