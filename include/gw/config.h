/* SPDX-License-Identifier: MIT */
/*
 * Configuration: nginx grammar, the directives of DESIGN.md's interface
 * contract, nginx defaults. config_load() parses a file (and its includes)
 * into a struct gw_config whose servers have every inherited setting already
 * merged (http{} -> server{} -> location / {}), so that the rest of the
 * gateway never looks at blocks again.
 *
 * Ownership: everything hanging off a gw_config is owned by it and released
 * by config_free().
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <sys/socket.h>
#include <netinet/in.h>
#include "gw/common.h"

enum gw_mode {
	GW_MODE_HTTP = 0,
	GW_MODE_STREAM = 1,
};

/* ssl_verify_client */
enum gw_verify {
	GW_VERIFY_OFF = 0,
	GW_VERIFY_ON = 1,
	GW_VERIFY_OPTIONAL = 2,
	GW_VERIFY_OPTIONAL_NO_CA = 3, /* same numbering as nginx's sscf->verify */
};

/* ssl_verify_failure */
enum gw_verify_failure {
	GW_VFAIL_HANDSHAKE = 0, /* fail the TLS handshake, log why */
	GW_VFAIL_HTTP = 1,	/* finish the handshake, answer nginx's 400 (495/496) page */
};

/* ssl_ktls */
enum gw_ktls {
	GW_KTLS_AUTO = 0,
	GW_KTLS_ON = 1,
	GW_KTLS_OFF = 2,
};

/* ssl_protocols bits */
#define GW_PROTO_SSLv3 (1U << 0)
#define GW_PROTO_TLSv1 (1U << 1)
#define GW_PROTO_TLSv1_1 (1U << 2)
#define GW_PROTO_TLSv1_2 (1U << 3)
#define GW_PROTO_TLSv1_3 (1U << 4)

/* ssl_session_cache */
enum gw_sess_cache {
	GW_SESS_CACHE_NONE = 0, /* nginx default: ids handed out, nothing stored */
	GW_SESS_CACHE_OFF = 1,
	GW_SESS_CACHE_ON = 2, /* builtin[:size] and/or shared:name:size */
};

/* ssl_client_allow kinds */
enum gw_allow_kind {
	GW_ALLOW_CN = 0,
	GW_ALLOW_DNS = 1,
	GW_ALLOW_URI = 2,
	GW_ALLOW_FINGERPRINT = 3, /* SHA-256 or SHA-1, hex, colons optional, any case */
};

struct gw_allow {
	enum gw_allow_kind kind;
	char *value; /* fingerprints normalised by config: lowercase hex, no colons */
};

/* Where a directive was written: file names are owned by the gw_config. */
struct gw_where {
	const char *file;
	int line;
};

/* One "listen" directive. */
struct gw_listen {
	struct sockaddr_storage addr; /* AF_INET or AF_INET6, port set */
	socklen_t addrlen;
	char *text; /* as written, for messages ("127.0.0.1:8443") */
	bool ssl;
	bool reuseport;
	int backlog; /* default 511 as nginx (-1 on Linux means 511 there too) */
	/*
	 * The default server for this address (SNI miss / no SNI): set on exactly
	 * one listen per address across all servers, the one written with
	 * "default_server", else the first one, as nginx.
	 */
	bool default_server;
	bool ipv6only; /* IPv6 addresses only: IPV6_V6ONLY, default on as nginx */
	const char *file;
	int line;
};

/*
 * A compiled value with variables: "prefix $var text ${var}suffix".
 * parts alternate literal text and variable names; var_id is resolved by
 * the identity module (identity_var_lookup()) at parse time, so an unknown
 * variable is a config error with file:line.
 */
struct gw_tmpl_part {
	char *lit;  /* literal text, or NULL for a variable */
	int var_id; /* enum gw_var when lit == NULL */
};

struct gw_tmpl {
	struct gw_tmpl_part *parts;
	size_t nparts;
	char *src; /* original text */
};

/* proxy_set_header NAME VALUE */
struct gw_header {
	char *name;
	struct gw_tmpl value;
};

/* ssl_passthrough SERVER_NAME HOST:PORT (issue 4 consumes it; parsed now) */
struct gw_passthrough {
	char *server_name; /* exact or "*.suffix" */
	char *target;	   /* HOST:PORT as written */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct gw_server {
	enum gw_mode mode;
	const char *file; /* where the server{} block starts */
	int line;

	struct gw_listen *listens;
	size_t nlistens;
	char **server_names; /* "" when none given, as nginx */
	size_t nserver_names;

	/* TLS */
	char **certs;		      /* ssl_certificate, may repeat (RSA + ECDSA) */
	char **keys;		      /* ssl_certificate_key, same count as certs */
	struct gw_where *certs_where; /* per certs[i] */
	struct gw_where *keys_where;  /* per keys[i] */
	size_t ncerts;
	char *client_certificate;  /* ssl_client_certificate */
	char *trusted_certificate; /* ssl_trusted_certificate */
	struct gw_where client_certificate_where, trusted_certificate_where, crl_where,
		ciphers_where, verify_where;
	enum gw_verify verify;
	int verify_depth; /* default 1 */
	char *crl;
	unsigned int protocols; /* GW_PROTO_*; default TLSv1.2|TLSv1.3 */
	char *ciphers;		/* default "HIGH:!aNULL:!MD5" */
	bool prefer_server_ciphers;
	enum gw_sess_cache session_cache;
	long session_cache_size; /* entries (nginx: 1m ~ 4000 sessions) */
	long session_timeout;	 /* seconds, default 300 */
	bool session_tickets;	 /* default on */
	bool verify_cache;	 /* ssl_verify_cache, default on (tls.c) */
	enum gw_ktls ktls;
	enum gw_verify_failure verify_failure;
	struct gw_allow *allows;
	size_t nallows;
	long handshake_timeout_ms; /* default 10000 */
	struct gw_passthrough *passthroughs;
	size_t npassthroughs;
	char *ecdh_curve; /* ssl_ecdh_curve: NULL = "auto" (OpenSSL's default groups) */

	/* upstream */
	char *proxy_pass; /* as written; NULL (backendlen 0) for an http server without one */
	struct sockaddr_storage backend;
	socklen_t backendlen;
	/*
	 * proxy_pass http://NAME of "upstream NAME { server ADDR; keepalive N; }":
	 * each worker keeps up to N idle connections to ADDR for later requests
	 * (tier U; conn.c). 0: one backend connection per client connection.
	 */
	int keepalive;
	long keepalive_timeout_ms; /* idle time in the pool, default 60s */
	long keepalive_requests;   /* requests per backend connection, default 1000 */
	long keepalive_time_ms;	   /* lifetime of a backend connection, default 1h */
	struct gw_header *headers; /* proxy_set_header, in order */
	size_t nheaders;
	bool proxy_protocol;
	int proxy_protocol_version; /* 1 or 2, default 2 */
	bool proxy_protocol_tlv_cert;
	long proxy_connect_timeout_ms; /* default 60000 */
	/* http: keepalive_timeout 75s (0 = no keep-alive, as nginx); stream: proxy_timeout 10m */
	long idle_timeout_ms;
	int header_buffer_count; /* large_client_header_buffers, default 4 */
	long header_buffer_size; /* default 8192 */

	char *access_log; /* NULL = off (our default; nginx logs to logs/access.log), "stderr" */
};

struct gw_config {
	char *file;
	int worker_processes;	/* 0 = auto */
	char *error_log;	/* NULL = stderr */
	int error_log_level;	/* enum gw_log_level, default GW_LOG_ERR as nginx */
	char *pid;		/* NULL = no pid file */
	bool daemon;		/* default off: -c runs in the foreground */
	char *metrics_listen;	/* parsed, served by the operations issue */
	int worker_connections; /* events{}: max connections per worker, default 512 */
	/* open-file limit (soft and hard) to set; 0: the soft limit is raised to the hard one */
	long worker_rlimit_nofile;

	struct gw_server *servers;
	size_t nservers;

	/* every file read (main + includes): the storage behind all file/line fields */
	char **files;
	size_t nfiles;
};

/*
 * Parse @path into a new config. On failure returns NULL and sets *@err to
 * a malloc'd message "FILE:LINE: ..." (several lines if several errors).
 */
struct gw_config *config_load(const char *path, char **err);

/* Same, from memory; @name is used in messages and to resolve relative paths. */
struct gw_config *config_parse_buf(const char *text, const char *name, char **err);

/*
 * Checks that need the file system: readable certificate/key/CA/CRL files.
 * Returns 0 or -EINVAL with *@err set.
 */
int config_validate(const struct gw_config *cfg, char **err);

void config_free(struct gw_config *cfg);

/* Parse nginx sizes ("10m", "8k", "512") and times ("10s", "1h", "500ms"). -EINVAL on error. */
int config_parse_size(const char *s, long *out);
int config_parse_time_ms(const char *s, long *out);

#endif /* GW_CONFIG_H */
