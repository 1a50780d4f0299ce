// SPDX-License-Identifier: MIT
/*
 * Configuration module: nginx grammar, defaults, inheritance, errors with
 * FILE:LINE, includes, the sample configs of tests/configs/.
 */
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include "test.h"
#include "gw/config.h"
#include "gw/identity.h"
#include "gw/log.h"

#define TLS_OK "listen 443 ssl; ssl_certificate /c.crt; ssl_certificate_key /c.key;\n"

static struct gw_config *parse(const char *text, char **err)
{
	*err = NULL;
	return config_parse_buf(text, "/etc/gw/gw.conf", err);
}

/* Expect failure with exactly @msg as the whole error text. */
static bool expect_err(const char *text, const char *msg)
{
	char *err = NULL;
	struct gw_config *cfg = parse(text, &err);
	bool ok = ASSERT_TRUE(cfg == NULL, "parse fails") && ASSERT_STREQ(err, msg, "error text");

	config_free(cfg);
	free(err);
	return ok;
}

static char *mktmpdir(void)
{
	char *d = strdup("/tmp/gwcfg-XXXXXX");

	if (d && !mkdtemp(d)) {
		free(d);
		return NULL;
	}
	return d;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *out = NULL;
	size_t cap = 0, len = 0, n;

	if (!f)
		return NULL;
	do {
		if (len + 4096 + 1 > cap) {
			char *p = realloc(out, cap = len + 8192);

			if (!p)
				break;
			out = p;
		}
		n = fread(out + len, 1, 4096, f);
		len += n;
	} while (n > 0);
	fclose(f);
	if (out)
		out[len] = '\0';
	return out;
}

/* $GW_CERTS as an absolute path (config paths resolve against the config's directory). */
static const char *certs_dir(void)
{
	static char abs[4096];
	const char *d = getenv("GW_CERTS");

	if (!d)
		return NULL;
	if (!realpath(d, abs))
		return d;
	return abs;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		port = ntohs(s->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else {
		snprintf(buf, len, "family %d", ss->ss_family);
	}
	return buf;
}

void test_config_defaults(void)
{
	char *err = NULL, a[64];
	struct gw_config *cfg = parse("server {\n" TLS_OK "}\n", &err);
	struct gw_server *s;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	ASSERT_EQ(cfg->worker_processes, 1, "worker_processes");
	ASSERT_EQ(cfg->worker_connections, 512, "worker_connections");
	ASSERT_EQ(cfg->worker_rlimit_nofile, 0, "worker_rlimit_nofile not set");
	ASSERT_EQ(cfg->error_log_level, GW_LOG_ERR, "error_log level");
	ASSERT_TRUE(cfg->error_log == NULL, "error_log stderr");
	ASSERT_FALSE(cfg->daemon, "daemon off");
	ASSERT_TRUE(cfg->pid == NULL, "no pid");
	if (!ASSERT_EQ(cfg->nservers, 1, "one server"))
		goto out;
	s = &cfg->servers[0];
	ASSERT_EQ(s->mode, GW_MODE_HTTP, "top-level server is http");
	ASSERT_EQ(s->line, 1, "server line");
	ASSERT_STREQ(s->file, "/etc/gw/gw.conf", "server file");
	ASSERT_EQ(s->nlistens, 1, "listens");
	ASSERT_STREQ(addr_str(&s->listens[0].addr, a, sizeof(a)), "0.0.0.0:443", "listen 443");
	ASSERT_TRUE(s->listens[0].ssl, "ssl");
	ASSERT_FALSE(s->listens[0].reuseport, "reuseport");
	ASSERT_EQ(s->listens[0].backlog, 511, "backlog");
	ASSERT_TRUE(s->listens[0].default_server, "first server is the default");
	ASSERT_EQ(s->listens[0].line, 2, "listen line");
	ASSERT_EQ(s->nserver_names, 1, "server_name default");
	ASSERT_STREQ(s->server_names[0], "", "server_name \"\"");
	ASSERT_EQ(s->ncerts, 1, "certs");
	ASSERT_STREQ(s->certs[0], "/c.crt", "cert");
	ASSERT_STREQ(s->keys[0], "/c.key", "key");
	ASSERT_EQ(s->certs_where[0].line, 2, "cert line");
	ASSERT_EQ(s->verify, GW_VERIFY_OFF, "verify off");
	ASSERT_EQ(s->verify_depth, 1, "verify depth 1");
	ASSERT_EQ(s->protocols, GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3, "protocols");
	ASSERT_STREQ(s->ciphers, "HIGH:!aNULL:!MD5", "ciphers");
	ASSERT_FALSE(s->prefer_server_ciphers, "prefer off");
	ASSERT_EQ(s->session_cache, GW_SESS_CACHE_NONE, "session cache none");
	ASSERT_EQ(s->session_timeout, 300, "session timeout 5m");
	ASSERT_TRUE(s->session_tickets, "tickets on");
	ASSERT_TRUE(s->verify_cache, "verify cache on");
	ASSERT_EQ(s->ktls, GW_KTLS_AUTO, "ktls auto");
	ASSERT_EQ(s->verify_failure, GW_VFAIL_HANDSHAKE, "vfail handshake");
	ASSERT_EQ(s->nallows, 0, "no allows");
	ASSERT_EQ(s->handshake_timeout_ms, 10000, "handshake timeout");
	ASSERT_TRUE(s->ecdh_curve == NULL, "ecdh auto");
	ASSERT_TRUE(s->proxy_pass == NULL, "no proxy_pass");
	ASSERT_EQ(s->backendlen, 0, "no backend");
	ASSERT_EQ(s->nheaders, 0, "no headers");
	ASSERT_FALSE(s->proxy_protocol, "pp off");
	ASSERT_EQ(s->proxy_protocol_version, 2, "pp v2");
	ASSERT_FALSE(s->proxy_protocol_tlv_cert, "tlv cert off");
	ASSERT_EQ(s->proxy_connect_timeout_ms, 60000, "connect timeout");
	ASSERT_EQ(s->idle_timeout_ms, 75000, "keepalive_timeout 75s");
	ASSERT_EQ(s->header_buffer_count, 4, "header buffers");
	ASSERT_EQ(s->header_buffer_size, 8192, "header buffer size");
	ASSERT_TRUE(s->access_log == NULL, "access_log off");
out:
	config_free(cfg);
	free(err);
}

void test_config_main_directives(void)
{
	char *err = NULL;
	struct gw_config *cfg = parse("worker_processes auto;\n"
				      "error_log logs/error.log debug;\n"
				      "pid run/gw.pid;\n"
				      "daemon on;\n"
				      "metrics_listen 127.0.0.1:9100;\n"
				      "events { worker_connections 2048; }\n"
				      "http { server {\n" TLS_OK "} }\n",
				      &err);

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	ASSERT_EQ(cfg->worker_processes, 0, "auto = 0");
	ASSERT_STREQ(cfg->error_log, "/etc/gw/logs/error.log", "error_log relative to conf dir");
	ASSERT_EQ(cfg->error_log_level, GW_LOG_DEBUG, "level");
	ASSERT_STREQ(cfg->pid, "/etc/gw/run/gw.pid", "pid");
	ASSERT_TRUE(cfg->daemon, "daemon on");
	ASSERT_STREQ(cfg->metrics_listen, "127.0.0.1:9100", "metrics_listen");
	ASSERT_EQ(cfg->worker_connections, 2048, "worker_connections");
	config_free(cfg);
	cfg = parse("worker_processes 4;\nserver {\n" TLS_OK "}\n", &err);
	if (ASSERT_OK_PTR(cfg, err ? err : "parse"))
		ASSERT_EQ(cfg->worker_processes, 4, "worker_processes 4");
	expect_err("worker_processes many;\n",
		   "/etc/gw/gw.conf:1: invalid value \"many\" in \"worker_processes\" directive\n"
		   "/etc/gw/gw.conf:1: no \"server\" is defined: nothing to do");
	expect_err("error_log x.log loud;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: invalid log level \"loud\"");
	expect_err("daemon maybe;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: invalid value \"maybe\" in \"daemon\" directive, it must be "
		   "\"on\" or \"off\"");
out:
	config_free(cfg);
	free(err);
}

void test_config_inheritance(void)
{
	char *err = NULL;
	struct gw_config *cfg =
		parse("http {\n"
		      "  ssl_certificate /h.crt; ssl_certificate_key /h.key;\n"
		      "  ssl_client_certificate /ca.pem;\n"
		      "  ssl_verify_client optional;\n"
		      "  ssl_verify_depth 3;\n"
		      "  ssl_protocols TLSv1.3;\n"
		      "  ssl_session_cache shared:SSL:10m;\n"
		      "  ssl_client_allow cn alice;\n"
		      "  keepalive_timeout 30s;\n"
		      "  server { listen 443 ssl; }\n"
		      "  server { listen 8443 ssl;\n"
		      "    ssl_certificate /s.crt; ssl_certificate_key /s.key;\n"
		      "    ssl_certificate /s2.crt; ssl_certificate_key /s2.key;\n"
		      "    ssl_verify_client on; ssl_verify_depth 2; ssl_protocols TLSv1.2;\n"
		      "    ssl_client_allow dns b.example; ssl_client_allow uri spiffe://td/x;\n"
		      "    location / { keepalive_timeout 5; proxy_pass http://127.0.0.1:8080; }\n"
		      "  }\n"
		      "}\n",
		      &err);
	struct gw_server *a, *b;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 2, "servers"))
		goto out;
	a = &cfg->servers[0];
	b = &cfg->servers[1];
	ASSERT_EQ(a->ncerts, 1, "a certs inherited");
	ASSERT_STREQ(a->certs[0], "/h.crt", "a cert");
	ASSERT_STREQ(a->keys[0], "/h.key", "a key");
	ASSERT_EQ(a->certs_where[0].line, 2, "a cert where = http level");
	ASSERT_STREQ(a->client_certificate, "/ca.pem", "a ca");
	ASSERT_EQ(a->verify, GW_VERIFY_OPTIONAL, "a verify");
	ASSERT_EQ(a->verify_depth, 3, "a depth");
	ASSERT_EQ(a->protocols, GW_PROTO_TLSv1_3, "a protocols");
	ASSERT_EQ(a->session_cache, GW_SESS_CACHE_ON, "a cache");
	ASSERT_EQ(a->session_cache_size, 40000, "shared 10m = 40000 sessions");
	ASSERT_EQ(a->nallows, 1, "a allows");
	ASSERT_EQ(a->allows[0].kind, GW_ALLOW_CN, "a allow kind");
	ASSERT_STREQ(a->allows[0].value, "alice", "a allow value");
	ASSERT_EQ(a->idle_timeout_ms, 30000, "a keepalive");

	ASSERT_EQ(b->ncerts, 2, "b certs replace");
	ASSERT_STREQ(b->certs[1], "/s2.crt", "b cert 2");
	ASSERT_STREQ(b->keys[1], "/s2.key", "b key 2");
	ASSERT_EQ(b->keys_where[1].line, 13, "b key 2 line");
	ASSERT_STREQ(b->client_certificate, "/ca.pem", "b ca inherited");
	ASSERT_EQ(b->client_certificate_where.line, 3, "b ca where");
	ASSERT_EQ(b->verify, GW_VERIFY_ON, "b verify");
	ASSERT_EQ(b->verify_where.line, 14, "b verify where");
	ASSERT_EQ(b->verify_depth, 2, "b depth");
	ASSERT_EQ(b->protocols, GW_PROTO_TLSv1_2, "b protocols");
	ASSERT_EQ(b->session_cache_size, 40000, "b cache inherited");
	if (ASSERT_EQ(b->nallows, 2, "b allows replace")) {
		ASSERT_EQ(b->allows[0].kind, GW_ALLOW_DNS, "b allow 0");
		ASSERT_STREQ(b->allows[1].value, "spiffe://td/x", "b allow 1");
	}
	ASSERT_EQ(b->idle_timeout_ms, 5000, "location keepalive (bare number = seconds)");
	ASSERT_STREQ(b->proxy_pass, "http://127.0.0.1:8080", "proxy_pass from location");
out:
	config_free(cfg);
	free(err);
}

void test_config_proxy_set_header_inheritance(void)
{
	char *err = NULL;
	struct gw_config *cfg =
		parse("http {\n"
		      "  proxy_set_header X-SSL-Cert $ssl_client_cert;\n"
		      "  proxy_set_header X-SSL-Verify $ssl_client_verify;\n"
		      "  server { " TLS_OK " proxy_pass http://127.0.0.1:1; }\n"
		      "  server { " TLS_OK " proxy_set_header X-Only \"dn=${ssl_client_s_dn}!\";\n"
		      "    location / { proxy_pass http://127.0.0.1:1; } }\n"
		      "  server { " TLS_OK " proxy_set_header X-Srv a;\n"
		      "    location / { proxy_pass http://127.0.0.1:1; proxy_set_header X-Loc "
		      "$remote_addr; } }\n"
		      "}\n",
		      &err);
	struct gw_server *s;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 3, "servers"))
		goto out;
	s = &cfg->servers[0];
	if (ASSERT_EQ(s->nheaders, 2, "inherits both")) {
		ASSERT_STREQ(s->headers[0].name, "X-SSL-Cert", "name 0");
		ASSERT_EQ(s->headers[0].value.nparts, 1, "parts");
		ASSERT_EQ(s->headers[0].value.parts[0].var_id, GW_VAR_SSL_CLIENT_CERT, "var");
		ASSERT_STREQ(s->headers[1].name, "X-SSL-Verify", "name 1");
	}
	s = &cfg->servers[1];
	if (ASSERT_EQ(s->nheaders, 1, "own list, nothing inherited")) {
		ASSERT_STREQ(s->headers[0].name, "X-Only", "own");
		ASSERT_STREQ(s->headers[0].value.src, "dn=${ssl_client_s_dn}!", "src");
		ASSERT_EQ(s->headers[0].value.nparts, 3, "3 parts");
	}
	s = &cfg->servers[2];
	if (ASSERT_EQ(s->nheaders, 1, "location list only")) {
		ASSERT_STREQ(s->headers[0].name, "X-Loc", "location header");
		ASSERT_EQ(s->headers[0].value.parts[0].var_id, GW_VAR_REMOTE_ADDR, "remote_addr");
	}
	config_free(cfg);
	cfg = NULL;
	expect_err("server {\n" TLS_OK "proxy_set_header X-A $nope;\n}\n",
		   "/etc/gw/gw.conf:3: unknown \"nope\" variable");
out:
	config_free(cfg);
	free(err);
}

void test_config_sizes_and_times(void)
{
	long v;

	ASSERT_OK(config_parse_size("512", &v), "512");
	ASSERT_EQ(v, 512, "512");
	ASSERT_OK(config_parse_size("8k", &v), "8k");
	ASSERT_EQ(v, 8192, "8k");
	ASSERT_OK(config_parse_size("8K", &v), "8K");
	ASSERT_EQ(v, 8192, "8K");
	ASSERT_OK(config_parse_size("10m", &v), "10m");
	ASSERT_EQ(v, 10 * 1024 * 1024, "10m");
	ASSERT_ERR(config_parse_size("", &v), "empty");
	ASSERT_ERR(config_parse_size("k", &v), "k");
	ASSERT_ERR(config_parse_size("1x", &v), "1x");
	ASSERT_ERR(config_parse_size("-1", &v), "-1");
	ASSERT_ERR(config_parse_size("99999999999999999999", &v), "overflow");

	ASSERT_OK(config_parse_time_ms("10s", &v), "10s");
	ASSERT_EQ(v, 10000, "10s");
	ASSERT_OK(config_parse_time_ms("10", &v), "bare = seconds");
	ASSERT_EQ(v, 10000, "10");
	ASSERT_OK(config_parse_time_ms("500ms", &v), "500ms");
	ASSERT_EQ(v, 500, "500ms");
	ASSERT_OK(config_parse_time_ms("1h", &v), "1h");
	ASSERT_EQ(v, 3600000, "1h");
	ASSERT_OK(config_parse_time_ms("10m", &v), "10m");
	ASSERT_EQ(v, 600000, "10m");
	ASSERT_OK(config_parse_time_ms("1h 30m", &v), "1h 30m");
	ASSERT_EQ(v, 5400000, "1h 30m");
	ASSERT_OK(config_parse_time_ms("1d12h", &v), "1d12h");
	ASSERT_EQ(v, 36L * 3600000, "1d12h");
	ASSERT_OK(config_parse_time_ms("1w", &v), "1w");
	ASSERT_EQ(v, 7L * 86400000, "1w");
	ASSERT_OK(config_parse_time_ms("1M", &v), "1M");
	ASSERT_EQ(v, 30L * 86400000, "1M");
	ASSERT_OK(config_parse_time_ms("1y", &v), "1y");
	ASSERT_EQ(v, 365L * 86400000, "1y");
	ASSERT_OK(config_parse_time_ms("1s 500ms", &v), "1s 500ms");
	ASSERT_EQ(v, 1500, "1s 500ms");
	ASSERT_ERR(config_parse_time_ms("1s1h", &v), "wrong order");
	ASSERT_ERR(config_parse_time_ms("1h1h", &v), "unit twice");
	ASSERT_ERR(config_parse_time_ms("s", &v), "no number");
	ASSERT_ERR(config_parse_time_ms("", &v), "empty");
	ASSERT_ERR(config_parse_time_ms("10x", &v), "bad unit");
	ASSERT_ERR(config_parse_time_ms("1s 5", &v), "bare number after seconds");
}

void test_config_time_directives(void)
{
	char *err = NULL;
	struct gw_config *cfg = parse("server {\n" TLS_OK "ssl_session_timeout 1h;\n"
				      "ssl_handshake_timeout 1500ms;\n"
				      "proxy_connect_timeout 2s;\n"
				      "keepalive_timeout 1m 60;\n"
				      "large_client_header_buffers 8 1k;\n}\n",
				      &err);

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	ASSERT_EQ(cfg->servers[0].session_timeout, 3600, "session timeout seconds");
	ASSERT_EQ(cfg->servers[0].handshake_timeout_ms, 1500, "handshake ms");
	ASSERT_EQ(cfg->servers[0].proxy_connect_timeout_ms, 2000, "connect");
	ASSERT_EQ(cfg->servers[0].idle_timeout_ms, 60000, "keepalive");
	ASSERT_EQ(cfg->servers[0].header_buffer_count, 8, "hb count");
	ASSERT_EQ(cfg->servers[0].header_buffer_size, 1024, "hb size");
	/* nginx's sec slot: "ms" is not allowed */
	expect_err("server {\n" TLS_OK "ssl_session_timeout 500ms;\n}\n",
		   "/etc/gw/gw.conf:3: \"ssl_session_timeout\" directive invalid value");
	expect_err("server {\n" TLS_OK "proxy_connect_timeout soon;\n}\n",
		   "/etc/gw/gw.conf:3: \"proxy_connect_timeout\" directive invalid value");
	expect_err("server {\n" TLS_OK "large_client_header_buffers 4 8q;\n}\n",
		   "/etc/gw/gw.conf:3: invalid value \"8q\"");
out:
	config_free(cfg);
	free(err);
}

void test_config_error_messages(void)
{
	expect_err("server {\n" TLS_OK "foo bar;\n}\n",
		   "/etc/gw/gw.conf:3: unknown directive \"foo\"");
	expect_err("server {\n" TLS_OK "worker_processes 2;\n}\n",
		   "/etc/gw/gw.conf:3: \"worker_processes\" directive is not allowed here");
	expect_err("listen 443 ssl;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: \"listen\" directive is not allowed here");
	expect_err(
		"server {\n" TLS_OK "ssl_verify_depth 1 2;\n}\n",
		"/etc/gw/gw.conf:3: invalid number of arguments in \"ssl_verify_depth\" directive");
	expect_err(
		"server {\n" TLS_OK "ssl_verify_depth;\n}\n",
		"/etc/gw/gw.conf:3: invalid number of arguments in \"ssl_verify_depth\" directive");
	expect_err("server {\n" TLS_OK "ssl_verify_depth x;\n}\n",
		   "/etc/gw/gw.conf:3: \"ssl_verify_depth\" directive invalid number");
	expect_err("server {\n" TLS_OK "ssl_verify_client maybe;\n}\n",
		   "/etc/gw/gw.conf:3: invalid value \"maybe\" in \"ssl_verify_client\" directive, "
		   "it must be \"on\", \"off\", \"optional\" or \"optional_no_ca\"");
	expect_err("server {\n" TLS_OK "ssl_session_tickets yes;\n}\n",
		   "/etc/gw/gw.conf:3: invalid value \"yes\" in \"ssl_session_tickets\" directive, "
		   "it must be \"on\" or \"off\"");
	expect_err("server {\n" TLS_OK "ssl_protocols TLSv1.2;\nssl_protocols TLSv1.3;\n}\n",
		   "/etc/gw/gw.conf:4: \"ssl_protocols\" directive is duplicate");
	expect_err("server {\n" TLS_OK "ssl_protocols SSLv2 TLSv1.2;\n}\n",
		   "/etc/gw/gw.conf:3: \"SSLv2\" in \"ssl_protocols\" directive is not supported");
	expect_err("server {\n" TLS_OK "ssl_protocols TLSv9;\n}\n",
		   "/etc/gw/gw.conf:3: invalid value \"TLSv9\" in \"ssl_protocols\" directive");
	expect_err("server {\n" TLS_OK "}\n}\n", "/etc/gw/gw.conf:4: unexpected \"}\"");
	expect_err("worker_rlimit_nofile 0;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: \"worker_rlimit_nofile\" directive invalid number");
	expect_err("worker_rlimit_nofile 1k;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: \"worker_rlimit_nofile\" directive invalid number");
	expect_err("worker_rlimit_nofile 100;\nworker_rlimit_nofile 200;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:2: \"worker_rlimit_nofile\" directive is duplicate");
	expect_err("server {\n" TLS_OK "\n",
		   "/etc/gw/gw.conf:4: unexpected end of file, expecting \"}\"");
	expect_err("server {\n" TLS_OK "server_name x\n",
		   "/etc/gw/gw.conf:4: unexpected end of file, expecting \";\" or \"}\"");
	expect_err("server {\n" TLS_OK "ssl_ktls on {\n}\n}\n",
		   "/etc/gw/gw.conf:3: directive \"ssl_ktls\" is not terminated by \";\"");
	expect_err("events;\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: directive \"events\" has no opening \"{\"");
	expect_err("server {\n" TLS_OK "ssl on;\n}\n",
		   "/etc/gw/gw.conf:3: the \"ssl\" directive is deprecated and not supported by "
		   "ktlsgw, use the \"listen ... ssl\" directive instead");
	expect_err("server {\n" TLS_OK "location /api { }\n}\n",
		   "/etc/gw/gw.conf:3: only \"location / { ... }\" is supported by ktlsgw, not "
		   "\"location /api\"");
	expect_err("server {\n" TLS_OK "location = / { }\n}\n",
		   "/etc/gw/gw.conf:3: only \"location / { ... }\" is supported by ktlsgw, not "
		   "\"location = ...\"");
	expect_err("server {\n" TLS_OK "add_header Strict-Transport-Security max-age=1;\n}\n",
		   "/etc/gw/gw.conf:3: unknown directive \"add_header\"");
	expect_err("server {\n" TLS_OK "proxy_protocol on;\n}\n",
		   "/etc/gw/gw.conf:3: \"proxy_protocol\" directive is not allowed here");
	expect_err("server {\n" TLS_OK "ssl_verify_client on;\n}\n",
		   "/etc/gw/gw.conf:3: no ssl_client_certificate for ssl_verify_client");
	expect_err("http { }\nhttp { }\n",
		   "/etc/gw/gw.conf:2: \"http\" directive is duplicate\n"
		   "/etc/gw/gw.conf:1: no \"server\" is defined: nothing to do");
}

void test_config_collects_all_errors(void)
{
	expect_err("server {\n" TLS_OK "foo;\n"
		   "ssl_verify_depth a;\n"
		   "\n"
		   "ssl_verify_client maybe;\n"
		   "}\n"
		   "bar 1;\n",
		   "/etc/gw/gw.conf:3: unknown directive \"foo\"\n"
		   "/etc/gw/gw.conf:4: \"ssl_verify_depth\" directive invalid number\n"
		   "/etc/gw/gw.conf:6: invalid value \"maybe\" in \"ssl_verify_client\" directive, "
		   "it must be \"on\", \"off\", \"optional\" or \"optional_no_ca\"\n"
		   "/etc/gw/gw.conf:8: unknown directive \"bar\"");
}

void test_config_tls_requirements(void)
{
	expect_err(
		"server {\nlisten 443 ssl;\n}\n",
		"/etc/gw/gw.conf:1: no \"ssl_certificate\" is defined for the \"listen ... ssl\" "
		"directive in /etc/gw/gw.conf:2");
	expect_err(
		"server {\nlisten 443;\nssl_certificate /a; ssl_certificate_key /b;\n}\n",
		"/etc/gw/gw.conf:2: \"listen 443\" without \"ssl\" is not supported: ktlsgw only "
		"terminates TLS");
	expect_err("server {\nssl_certificate /a; ssl_certificate_key /b;\n}\n",
		   "/etc/gw/gw.conf:1: no \"listen ... ssl\" is defined for server: ktlsgw only "
		   "terminates TLS, add \"listen 443 ssl;\"");
	expect_err(
		"server {\nlisten 443 ssl;\nssl_certificate /a;\nssl_certificate /b;\n"
		"ssl_certificate_key /ka;\n}\n",
		"/etc/gw/gw.conf:4: no \"ssl_certificate_key\" is defined for certificate \"/b\"");
	expect_err(
		"stream {\nserver {\n" TLS_OK "}\n}\n",
		"/etc/gw/gw.conf:2: no \"proxy_pass\" is defined for server in /etc/gw/gw.conf:2");
	expect_err(
		"stream {\nserver {\n" TLS_OK "proxy_pass 127.0.0.1:9;\n"
		"ssl_verify_failure http;\n}\n}\n",
		"/etc/gw/gw.conf:2: \"ssl_verify_failure http\" is only possible in http servers, "
		"not in the stream server in /etc/gw/gw.conf:2");
}

void test_config_quoted_strings(void)
{
	char *err = NULL;
	struct gw_config *cfg =
		parse("server { # comment { ; }\n" TLS_OK
		      "  server_name \"a b\" 'c;d' e\\\"f \"g\\\"h\\\\i\" x#y;\n"
		      "  ssl_ciphers \"A\\tB\\nC\\rD\\qE\";\n"
		      "  proxy_set_header \"X-A\" '$ssl_client_s_dn ${remote_addr}x';\n"
		      "  proxy_set_header X-B ${ssl_client_serial}z;\n"
		      "}\n",
		      &err);
	struct gw_server *s;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	s = &cfg->servers[0];
	if (ASSERT_EQ(s->nserver_names, 5, "names")) {
		ASSERT_STREQ(s->server_names[0], "a b", "double-quoted with space");
		ASSERT_STREQ(s->server_names[1], "c;d", "single-quoted with ;");
		ASSERT_STREQ(s->server_names[2], "e\"f", "escaped quote in word");
		ASSERT_STREQ(s->server_names[3], "g\"h\\i", "escapes in quotes");
		ASSERT_STREQ(s->server_names[4], "x#y", "# inside a word");
	}
	ASSERT_STREQ(s->ciphers, "A\tB\nC\rD\\qE", "\\t \\n \\r, other escapes kept");
	if (ASSERT_EQ(s->nheaders, 2, "headers")) {
		ASSERT_STREQ(s->headers[0].name, "X-A", "quoted name");
		ASSERT_EQ(s->headers[0].value.nparts, 4, "parts");
		ASSERT_STREQ(s->headers[1].value.src, "${ssl_client_serial}z", "${} in a word");
	}
	config_free(cfg);
	cfg = NULL;
	expect_err("server {\n" TLS_OK "server_name \"a\"b;\n}\n",
		   "/etc/gw/gw.conf:3: unexpected \"b\"");
	expect_err("server {\n" TLS_OK "server_name \"abc;\n}\n",
		   "/etc/gw/gw.conf:5: unexpected end of file, expecting \";\" or \"}\"");
out:
	config_free(cfg);
	free(err);
}

void test_config_noop_warnings(void)
{
	char logpath[] = "/tmp/gwcfg-log-XXXXXX";
	char *err = NULL, *log = NULL;
	struct gw_config *cfg;
	int fd = mkstemp(logpath);

	if (!ASSERT_GE(fd, 0, "mkstemp"))
		return;
	close(fd);
	if (!ASSERT_OK(gw_log_open(logpath), "log to file"))
		goto out;
	cfg = parse("user www-data;\n"
		    "events { use epoll; multi_accept on; accept_mutex off; }\n"
		    "http {\n"
		    "  sendfile on;\n"
		    "  types {\n    text/html html;\n    image/png png;\n  }\n"
		    "  server {\n" TLS_OK "    client_max_body_size 1m;\n  }\n"
		    "}\n",
		    &err);
	gw_log_open(NULL);
	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	config_free(cfg);
	log = read_all(logpath);
	ASSERT_STRSTR(log, "[warn] ", "warn level");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:1: \"user\" has no effect in ktlsgw, ignored", "user");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:2: \"use\" has no effect in ktlsgw, ignored", "use");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:2: \"multi_accept\" has no effect", "multi_accept");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:2: \"accept_mutex\" has no effect", "accept_mutex");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:4: \"sendfile\" has no effect in ktlsgw, ignored",
		      "sendfile");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:5: \"types\" has no effect in ktlsgw, ignored",
		      "types");
	ASSERT_STRSTR(log, "/etc/gw/gw.conf:11: \"client_max_body_size\" has no effect", "cmbs");
	ASSERT_TRUE(!strstr(log, "\"text/html\""), "types{} content is not parsed");
	ASSERT_STRSTR(log, "no \"proxy_pass\" is defined for server", "no proxy_pass warning");
	/* a no-op used as a block is still a syntax error */
	expect_err("sendfile on { }\nserver {\n" TLS_OK "}\n",
		   "/etc/gw/gw.conf:1: directive \"sendfile\" is not terminated by \";\"");
out:
	gw_log_open(NULL);
	unlink(logpath);
	free(log);
	free(err);
}

void test_config_listen(void)
{
	char *err = NULL, a[80];
	struct gw_config *cfg = parse("server {\n"
				      "  listen 127.0.0.1:8443 ssl reuseport backlog=100;\n"
				      "  listen *:9443 ssl;\n"
				      "  listen [::1]:443 ssl;\n"
				      "  listen [::]:443 ssl ipv6only=off;\n"
				      "  listen localhost:7443 ssl;\n"
				      "  ssl_certificate /a; ssl_certificate_key /b;\n"
				      "}\n"
				      "server {\n"
				      "  listen 127.0.0.1:8443 ssl reuseport default_server;\n"
				      "  listen [::1]:443 ssl;\n"
				      "  ssl_certificate /a; ssl_certificate_key /b;\n"
				      "}\n",
				      &err);
	struct gw_listen *l;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 2, "servers") ||
	    !ASSERT_EQ(cfg->servers[0].nlistens, 5, "listens"))
		goto out;
	l = cfg->servers[0].listens;
	ASSERT_STREQ(addr_str(&l[0].addr, a, sizeof(a)), "127.0.0.1:8443", "v4");
	ASSERT_EQ(l[0].addrlen, sizeof(struct sockaddr_in), "v4 len");
	ASSERT_TRUE(l[0].reuseport, "reuseport");
	ASSERT_EQ(l[0].backlog, 100, "backlog");
	ASSERT_STREQ(l[0].text, "127.0.0.1:8443", "text");
	ASSERT_FALSE(l[0].default_server, "default_server given to the other server");
	ASSERT_TRUE(cfg->servers[1].listens[0].default_server, "explicit default_server");
	ASSERT_STREQ(addr_str(&l[1].addr, a, sizeof(a)), "0.0.0.0:9443", "*:port");
	ASSERT_STREQ(addr_str(&l[2].addr, a, sizeof(a)), "[::1]:443", "[::1]");
	ASSERT_EQ(l[2].addrlen, sizeof(struct sockaddr_in6), "v6 len");
	ASSERT_TRUE(l[2].ipv6only, "ipv6only default on");
	ASSERT_TRUE(l[2].default_server, "first on [::1]:443 is default");
	ASSERT_FALSE(cfg->servers[1].listens[1].default_server, "second on [::1]:443 is not");
	ASSERT_STREQ(addr_str(&l[3].addr, a, sizeof(a)), "[::]:443", "[::]");
	ASSERT_FALSE(l[3].ipv6only, "ipv6only=off");
	ASSERT_STREQ(addr_str(&l[4].addr, a, sizeof(a)), "127.0.0.1:7443", "localhost resolved");
	config_free(cfg);
	cfg = NULL;

	expect_err("server {\n" TLS_OK "listen 8443 ssl http2;\n}\n",
		   "/etc/gw/gw.conf:3: the \"http2\" parameter of the \"listen\" directive is not "
		   "supported by ktlsgw");
	expect_err(
		"server {\n" TLS_OK "listen 8443 ssl proxy_protocol;\n}\n",
		"/etc/gw/gw.conf:3: the \"proxy_protocol\" parameter of the \"listen\" directive "
		"is not supported by ktlsgw");
	expect_err("server {\n" TLS_OK "listen 8443 ssl quic;\n}\n",
		   "/etc/gw/gw.conf:3: the \"quic\" parameter of the \"listen\" directive is not "
		   "supported by ktlsgw");
	expect_err("server {\n" TLS_OK "listen 8443 ssl wat;\n}\n",
		   "/etc/gw/gw.conf:3: invalid parameter \"wat\"");
	expect_err("server {\n" TLS_OK "listen 70000 ssl;\n}\n",
		   "/etc/gw/gw.conf:3: invalid port in \"70000\" of the \"listen\" directive");
	expect_err("server {\n" TLS_OK "listen 1.2.3.4:0 ssl;\n}\n",
		   "/etc/gw/gw.conf:3: invalid port in \"1.2.3.4:0\" of the \"listen\" directive");
	expect_err("server {\n" TLS_OK "listen 127.0.0.1:443 ssl ipv6only=on;\n}\n",
		   "/etc/gw/gw.conf:3: ipv6only is not supported on addr \"127.0.0.1:443\"");
	expect_err("server {\n" TLS_OK "listen 0.0.0.0:443 ssl;\n}\n",
		   "/etc/gw/gw.conf:3: a duplicate listen 0.0.0.0:443");
	expect_err("server {\n" TLS_OK "}\nserver {\nlisten 443 ssl reuseport;\n"
		   "ssl_certificate /a; ssl_certificate_key /b;\n}\n",
		   "/etc/gw/gw.conf:5: duplicate listen options for 443: different flags than in "
		   "/etc/gw/gw.conf:2");
	expect_err(
		"server {\n" TLS_OK
		"}\nstream { server {\nlisten 443 ssl;\nproxy_pass 127.0.0.1:1;\n"
		"ssl_certificate /a; ssl_certificate_key /b;\n} }\n",
		"/etc/gw/gw.conf:5: duplicate listen options for 443: different http/stream mode "
		"than in /etc/gw/gw.conf:2");
	expect_err("server {\nlisten 443 ssl default_server;\nssl_certificate /a; "
		   "ssl_certificate_key /b;\n}\nserver {\nlisten 443 ssl default_server;\n"
		   "ssl_certificate /a; ssl_certificate_key /b;\n}\n",
		   "/etc/gw/gw.conf:6: a duplicate default server for 443");
out:
	config_free(cfg);
	free(err);
}

void test_config_proxy_pass(void)
{
	char *err = NULL, a[80];
	struct gw_config *cfg = parse(
		"server {\n" TLS_OK "proxy_pass http://127.0.0.1:8080/;\n}\n"
		"server {\nlisten 444 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		"proxy_pass http://localhost;\n}\n"
		"server {\nlisten 445 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		"proxy_pass http://[::1]:81;\n}\n"
		"stream {\nserver {\nlisten 446 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		"proxy_pass localhost:9000;\n}\n}\n",
		&err);

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 4, "servers"))
		goto out;
	ASSERT_STREQ(cfg->servers[0].proxy_pass, "http://127.0.0.1:8080/", "as written");
	ASSERT_STREQ(addr_str(&cfg->servers[0].backend, a, sizeof(a)), "127.0.0.1:8080", "backend");
	ASSERT_STREQ(addr_str(&cfg->servers[1].backend, a, sizeof(a)), "127.0.0.1:80",
		     "default port 80, name resolved");
	ASSERT_STREQ(addr_str(&cfg->servers[2].backend, a, sizeof(a)), "[::1]:81", "v6 backend");
	ASSERT_EQ(cfg->servers[3].mode, GW_MODE_STREAM, "stream");
	ASSERT_STREQ(addr_str(&cfg->servers[3].backend, a, sizeof(a)), "127.0.0.1:9000",
		     "stream backend");
	ASSERT_EQ(cfg->servers[3].idle_timeout_ms, 600000, "proxy_timeout default 10m");
	config_free(cfg);
	cfg = NULL;
	expect_err("server {\n" TLS_OK "proxy_pass https://127.0.0.1:1;\n}\n",
		   "/etc/gw/gw.conf:3: \"proxy_pass\" to https:// is not supported by ktlsgw, the "
		   "backend must be plain http://");
	expect_err("server {\n" TLS_OK "proxy_pass http://127.0.0.1:1/api;\n}\n",
		   "/etc/gw/gw.conf:3: \"proxy_pass\" with a URI other than \"/\" is not supported "
		   "by ktlsgw: \"http://127.0.0.1:1/api\"");
	expect_err("server {\n" TLS_OK "proxy_pass http://nonexistent.invalid:1;\n}\n",
		   "/etc/gw/gw.conf:3: host not found in upstream \"nonexistent.invalid:1\"");
	expect_err("server {\n" TLS_OK "proxy_pass 127.0.0.1:1;\n}\n",
		   "/etc/gw/gw.conf:3: invalid URL prefix in \"127.0.0.1:1\"");
	expect_err("server {\n" TLS_OK
		   "proxy_pass http://127.0.0.1:1;\nproxy_pass http://127.0.0.1:2;\n}\n",
		   "/etc/gw/gw.conf:4: \"proxy_pass\" directive is duplicate");
	expect_err("stream { server {\n" TLS_OK "proxy_pass 127.0.0.1;\n} }\n",
		   "/etc/gw/gw.conf:3: no port in upstream \"127.0.0.1\"");
	expect_err("stream { server {\n" TLS_OK "proxy_pass nonexistent.invalid:1;\n} }\n",
		   "/etc/gw/gw.conf:3: host not found in upstream \"nonexistent.invalid:1\"");
out:
	config_free(cfg);
	free(err);
}

void test_config_stream(void)
{
	char *err = NULL;
	struct gw_config *cfg = parse(
		"stream {\n"
		"  proxy_protocol on;\n"
		"  proxy_timeout 1h;\n"
		"  server {\n" TLS_OK "    proxy_pass 127.0.0.1:9000;\n"
		"    proxy_protocol_version 1;\n    server_name s.example;\n"
		"    access_log /var/log/gw.log combined;\n  }\n"
		"  server {\n    listen 8443 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		"    proxy_pass 127.0.0.1:9001;\n    proxy_protocol_tlv_cert on;\n"
		"    ssl_passthrough *.pass.example 127.0.0.1:9443;\n  }\n"
		"}\n",
		&err);
	struct gw_server *s;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 2, "servers"))
		goto out;
	s = &cfg->servers[0];
	ASSERT_EQ(s->mode, GW_MODE_STREAM, "mode");
	ASSERT_TRUE(s->proxy_protocol, "pp inherited");
	ASSERT_EQ(s->proxy_protocol_version, 1, "v1");
	ASSERT_EQ(s->idle_timeout_ms, 3600000, "proxy_timeout");
	ASSERT_STREQ(s->server_names[0], "s.example", "server_name in stream");
	ASSERT_STREQ(s->access_log, "/var/log/gw.log", "access_log");
	s = &cfg->servers[1];
	ASSERT_EQ(s->proxy_protocol_version, 2, "v2 default");
	ASSERT_TRUE(s->proxy_protocol_tlv_cert, "tlv cert");
	if (ASSERT_EQ(s->npassthroughs, 1, "passthrough")) {
		ASSERT_STREQ(s->passthroughs[0].server_name, "*.pass.example", "pt name");
		ASSERT_STREQ(s->passthroughs[0].target, "127.0.0.1:9443", "pt target");
		ASSERT_EQ(s->passthroughs[0].addrlen, sizeof(struct sockaddr_in), "pt resolved");
	}
	config_free(cfg);
	cfg = NULL;
	expect_err("stream { server {\n" TLS_OK "proxy_pass 127.0.0.1:1;\nlocation / { }\n} }\n",
		   "/etc/gw/gw.conf:4: \"location\" directive is not allowed here");
	expect_err(
		"stream { server {\n" TLS_OK
		"proxy_pass 127.0.0.1:1;\nproxy_protocol_version 3;\n} }\n",
		"/etc/gw/gw.conf:4: invalid value \"3\" in \"proxy_protocol_version\" directive, "
		"it must be \"1\" or \"2\"");
	expect_err("server {\n" TLS_OK "ssl_passthrough a.example nonexistent.invalid:1;\n}\n",
		   "/etc/gw/gw.conf:3: host not found in upstream \"nonexistent.invalid:1\"");
	expect_err("http { ssl_passthrough a.example 127.0.0.1:1; }\n",
		   "/etc/gw/gw.conf:1: \"ssl_passthrough\" directive is not allowed here\n"
		   "/etc/gw/gw.conf:1: no \"server\" is defined: nothing to do");
out:
	config_free(cfg);
	free(err);
}

void test_config_ssl_values(void)
{
	char *err = NULL;
	struct gw_config *cfg = parse(
		"server {\n" TLS_OK "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3 SSLv3;\n"
		"ssl_session_cache builtin:1000 shared:SSL:1m;\n"
		"ssl_ktls off; ssl_verify_failure http; ssl_session_tickets off; ssl_verify_cache "
		"off;\n"
		"ssl_prefer_server_ciphers on; ssl_ecdh_curve X25519:prime256v1;\n"
		"ssl_verify_client optional_no_ca;\n"
		"ssl_client_allow fingerprint "
		"AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11;\n"
		"ssl_crl crl.pem; ssl_trusted_certificate ../ca/all.pem;\n"
		"}\n"
		"server {\nlisten 8443 ssl; ssl_certificate rel.crt; ssl_certificate_key rel.key;\n"
		"ssl_session_cache off;\n}\n"
		"server {\nlisten 8444 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		"ssl_session_cache builtin;\n}\n",
		&err);
	struct gw_server *s;

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 3, "servers"))
		goto out;
	s = &cfg->servers[0];
	ASSERT_EQ(s->protocols,
		  GW_PROTO_SSLv3 | GW_PROTO_TLSv1 | GW_PROTO_TLSv1_1 | GW_PROTO_TLSv1_2 |
			  GW_PROTO_TLSv1_3,
		  "protocols");
	ASSERT_EQ(s->session_cache, GW_SESS_CACHE_ON, "cache on");
	ASSERT_EQ(s->session_cache_size, 1000 + 4000, "builtin 1000 + 1m shared");
	ASSERT_EQ(s->ktls, GW_KTLS_OFF, "ktls off");
	ASSERT_EQ(s->verify_failure, GW_VFAIL_HTTP, "vfail http");
	ASSERT_FALSE(s->session_tickets, "tickets off");
	ASSERT_FALSE(s->verify_cache, "verify cache off");
	ASSERT_TRUE(cfg->servers[1].verify_cache, "verify cache on elsewhere");
	ASSERT_TRUE(s->prefer_server_ciphers, "prefer");
	ASSERT_STREQ(s->ecdh_curve, "X25519:prime256v1", "ecdh");
	ASSERT_EQ(s->verify, GW_VERIFY_OPTIONAL_NO_CA, "optional_no_ca needs no CA");
	if (ASSERT_EQ(s->nallows, 1, "allow"))
		ASSERT_STREQ(s->allows[0].value, "abcd00112233445566778899aabbccddeeff0011",
			     "fingerprint normalised");
	ASSERT_STREQ(s->crl, "/etc/gw/crl.pem", "relative to the config directory");
	ASSERT_STREQ(s->trusted_certificate, "/etc/gw/../ca/all.pem", "relative with ..");
	ASSERT_EQ(s->crl_where.line, 9, "crl line");
	s = &cfg->servers[1];
	ASSERT_STREQ(s->certs[0], "/etc/gw/rel.crt", "relative cert");
	ASSERT_EQ(s->session_cache, GW_SESS_CACHE_OFF, "cache off");
	ASSERT_EQ(cfg->servers[2].session_cache_size, 20480, "builtin default size");
	config_free(cfg);
	cfg = NULL;
	expect_err("server {\n" TLS_OK "ssl_session_cache shared:SSL;\n}\n",
		   "/etc/gw/gw.conf:3: invalid session cache \"shared:SSL\"");
	expect_err("server {\n" TLS_OK "ssl_session_cache shared:SSL:1k;\n}\n",
		   "/etc/gw/gw.conf:3: session cache \"shared:SSL:1k\" is too small");
	expect_err("server {\n" TLS_OK "ssl_client_allow serial 01;\n}\n",
		   "/etc/gw/gw.conf:3: invalid value \"serial\" in \"ssl_client_allow\" directive, "
		   "it must be \"cn\", \"dns\", \"uri\" or \"fingerprint\"");
	expect_err(
		"server {\n" TLS_OK "ssl_client_allow fingerprint abc;\n}\n",
		"/etc/gw/gw.conf:3: invalid fingerprint \"abc\" in \"ssl_client_allow\" directive, "
		"it must be a SHA-1 or SHA-256 in hex");
	expect_err(
		"server {\n" TLS_OK "ssl_ktls maybe;\n}\n",
		"/etc/gw/gw.conf:3: invalid value \"maybe\" in \"ssl_ktls\" directive, it must be "
		"\"auto\", \"on\" or \"off\"");
out:
	config_free(cfg);
	free(err);
}

void test_config_include(void)
{
	char *dir = mktmpdir(), path[512];
	char *err = NULL, *expect = NULL;
	struct gw_config *cfg = NULL;

	if (!ASSERT_OK_PTR(dir, "mkdtemp"))
		return;
	mkdir(strcat(strcpy(path, dir), "/conf.d"), 0755);
	mkdir(strcat(strcpy(path, dir), "/snippets"), 0755);
	write_file(dir, "main.conf",
		   "events { include ev.inc; }\n"
		   "http {\n"
		   "  include conf.d/*.conf;\n"
		   "  include conf.d/*.none;\n"
		   "}\n");
	write_file(dir, "ev.inc", "worker_connections 99;\n");
	write_file(dir, "conf.d/a.conf",
		   "server {\n  listen 1443 ssl;\n  include snippets/tls.conf;\n"
		   "  include local.inc;\n}\n");
	write_file(dir, "conf.d/local.inc", "ssl_verify_depth 7;\n");
	write_file(dir, "conf.d/b.conf",
		   "server {\n  listen 2443 ssl;\n  include snippets/tls.conf;\n"
		   "  ssl_verify_depth 4;\n}\n");
	write_file(dir, "snippets/tls.conf",
		   "# tls\nssl_certificate x.crt;\nssl_certificate_key x.key;\n");
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	cfg = config_load(path, &err);
	if (!ASSERT_OK_PTR(cfg, err ? err : "load"))
		goto out;
	ASSERT_EQ(cfg->worker_connections, 99, "include inside events{}");
	if (!ASSERT_EQ(cfg->nservers, 2, "servers from the glob, in order"))
		goto out;
	ASSERT_STRSTR(cfg->servers[0].file, "/conf.d/a.conf", "server file = included file");
	ASSERT_EQ(cfg->servers[0].listens[0].line, 2, "listen line in included file");
	ASSERT_STRSTR(cfg->servers[0].certs_where[0].file, "/snippets/tls.conf", "cert where file");
	ASSERT_EQ(cfg->servers[0].certs_where[0].line, 2, "cert where line");
	if (asprintf(&expect, "%s/x.crt", dir) > 0)
		ASSERT_STREQ(cfg->servers[1].certs[0], expect, "relative to the main config dir");
	ASSERT_EQ(cfg->servers[1].verify_depth, 4, "b depth");
	ASSERT_EQ(cfg->servers[0].verify_depth, 7, "include found next to the including file");
	config_free(cfg);
	cfg = NULL;

	/* errors inside an included file carry its name; a missing plain file is an error */
	write_file(dir, "conf.d/b.conf", "server {\n  listen 2443 ssl;\n  bogus;\n}\n");
	write_file(dir, "main.conf",
		   "http {\n  include conf.d/*.conf;\n  include missing.conf;\n}\n");
	cfg = config_load(path, &err);
	ASSERT_TRUE(cfg == NULL, "fails");
	free(expect);
	expect = NULL;
	if (asprintf(&expect,
		     "%s/main.conf:3: open() \"%s/missing.conf\" failed (2: No such file or "
		     "directory)\n"
		     "%s/conf.d/b.conf:3: unknown directive \"bogus\"\n"
		     "%s/conf.d/b.conf:1: no \"ssl_certificate\" is defined for the \"listen ... "
		     "ssl\" directive in %s/conf.d/b.conf:2",
		     dir, dir, dir, dir, dir) > 0)
		ASSERT_STREQ(err, expect, "errors");
	free(err);
	err = NULL;

	/* include loop is bounded */
	write_file(dir, "main.conf", "include main.conf;\n");
	cfg = config_load(path, &err);
	ASSERT_TRUE(cfg == NULL, "loop fails");
	ASSERT_STRSTR(err, "too many nested \"include\" directives", "loop message");
	free(err);
	err = NULL;

	/* missing main file */
	snprintf(path, sizeof(path), "%s/nope.conf", dir);
	cfg = config_load(path, &err);
	ASSERT_TRUE(cfg == NULL, "missing main");
	ASSERT_STRSTR(err, "nope.conf\" failed (2: No such file or directory)", "missing main msg");
out:
	config_free(cfg);
	free(err);
	free(expect);
	rm_rf(dir);
	free(dir);
}

void test_config_validate_files(void)
{
	char *err = NULL, *text = NULL, *expect = NULL;
	const char *certs = certs_dir();
	struct gw_config *cfg;

	if (!certs)
		test__skip("GW_CERTS not set (run through make unit-test)");
	if (asprintf(&text,
		     "server {\nlisten 443 ssl;\n"
		     "ssl_certificate %s/server.crt;\nssl_certificate_key %s/server.key;\n"
		     "ssl_client_certificate %s/ca-bundle.pem;\nssl_crl %s/crl-all.pem;\n"
		     "ssl_trusted_certificate %s/ca-all.pem;\n}\n",
		     certs, certs, certs, certs, certs) < 0)
		return;
	cfg = config_parse_buf(text, "/etc/gw/gw.conf", &err);
	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	ASSERT_OK(config_validate(cfg, &err), err ? err : "validate");
	config_free(cfg);
	cfg = config_parse_buf("server {\nlisten 443 ssl;\nssl_certificate /nonexistent/s.crt;\n"
			       "ssl_certificate_key /nonexistent/s.key;\n"
			       "ssl_client_certificate /nonexistent/ca.pem;\n"
			       "ssl_crl /;\n}\n",
			       "/etc/gw/gw.conf", &err);
	if (!ASSERT_OK_PTR(cfg, err ? err : "parse"))
		goto out;
	ASSERT_EQ(config_validate(cfg, &err), -EINVAL, "validate fails");
	ASSERT_STREQ(
		err,
		"/etc/gw/gw.conf:3: cannot load certificate \"/nonexistent/s.crt\": No such file "
		"or directory\n"
		"/etc/gw/gw.conf:4: cannot load certificate key \"/nonexistent/s.key\": No such "
		"file or directory\n"
		"/etc/gw/gw.conf:5: cannot load certificate \"/nonexistent/ca.pem\": No such "
		"file or directory\n"
		"/etc/gw/gw.conf:6: cannot load CRL \"/\": Is a directory",
		"messages");
out:
	config_free(cfg);
	free(err);
	free(text);
	free(expect);
}

/* Copy tests/configs/@name into @dir with @CERTS@ replaced by $GW_CERTS. */
static bool copy_sample(const char *dir, const char *name, char *dst, size_t dstlen)
{
	const char *certs = certs_dir();
	char src[512], *text;
	FILE *f;

	snprintf(src, sizeof(src), "tests/configs/%s", name);
	text = read_all(src);
	if (!ASSERT_OK_PTR(text, src))
		return false;
	snprintf(dst, dstlen, "%s/%s", dir, name);
	f = fopen(dst, "w");
	if (!ASSERT_OK_PTR(f, dst)) {
		free(text);
		return false;
	}
	for (char *p = text; *p;) {
		char *at = strstr(p, "@CERTS@");

		if (!at) {
			fputs(p, f);
			break;
		}
		fwrite(p, 1, (size_t)(at - p), f);
		fputs(certs, f);
		p = at + strlen("@CERTS@");
	}
	fclose(f);
	free(text);
	return true;
}

/* Load a copied sample and validate it. */
static struct gw_config *load_sample(const char *dir, const char *name)
{
	char dst[512], *err = NULL;
	struct gw_config *cfg;

	if (!copy_sample(dir, name, dst, sizeof(dst)))
		return NULL;
	cfg = config_load(dst, &err);
	if (!ASSERT_OK_PTR(cfg, err ? err : dst))
		goto out;
	if (!ASSERT_OK(config_validate(cfg, &err), err ? err : "validate")) {
		config_free(cfg);
		cfg = NULL;
	}
out:
	free(err);
	return cfg;
}

void test_config_sample_files(void)
{
	char *dir, *expect = NULL;
	struct gw_config *cfg;
	struct gw_server *s;

	if (!getenv("GW_CERTS"))
		test__skip("GW_CERTS not set (run through make unit-test)");
	dir = mktmpdir();
	if (!ASSERT_OK_PTR(dir, "mkdtemp"))
		return;

	cfg = load_sample(dir, "seed-server1.conf");
	if (ASSERT_OK_PTR(cfg, "seed 1") && ASSERT_EQ(cfg->nservers, 1, "seed 1 servers")) {
		s = &cfg->servers[0];
		ASSERT_STREQ(s->server_names[0], "service.domain.com", "name");
		ASSERT_EQ(s->verify, GW_VERIFY_ON, "verify on");
		ASSERT_EQ(s->verify_depth, 1, "nginx default depth");
		ASSERT_EQ(s->protocols, GW_PROTO_TLSv1_2 | GW_PROTO_TLSv1_3, "protocols");
		ASSERT_TRUE(s->prefer_server_ciphers, "prefer");
		ASSERT_TRUE(s->proxy_pass == NULL, "no proxy_pass in the seed");
	}
	config_free(cfg);

	cfg = load_sample(dir, "seed-server2.conf");
	if (ASSERT_OK_PTR(cfg, "seed 2") && ASSERT_EQ(cfg->nservers, 1, "seed 2 servers")) {
		s = &cfg->servers[0];
		ASSERT_EQ(s->verify_depth, 2, "depth 2");
		ASSERT_EQ(s->protocols, GW_PROTO_TLSv1_2, "TLSv1.2 only");
		ASSERT_STREQ(s->ciphers, "HIGH:!aNULL:!MD5", "ciphers");
	}
	config_free(cfg);

	/* full-nginx.conf includes full-nginx-stream.inc from its directory */
	{
		char inc[512];

		copy_sample(dir, "full-nginx-stream.inc", inc, sizeof(inc));
	}
	cfg = load_sample(dir, "full-nginx.conf");
	if (ASSERT_OK_PTR(cfg, "full") && ASSERT_EQ(cfg->nservers, 3, "full servers")) {
		ASSERT_EQ(cfg->worker_processes, 0, "auto");
		ASSERT_EQ(cfg->worker_connections, 1024, "worker_connections");
		ASSERT_EQ(cfg->worker_rlimit_nofile, 65536, "worker_rlimit_nofile");
		ASSERT_EQ(cfg->error_log_level, GW_LOG_WARN, "error_log level");
		ASSERT_STREQ(cfg->metrics_listen, "127.0.0.1:19100", "metrics");
		s = &cfg->servers[0];
		ASSERT_EQ(s->mode, GW_MODE_HTTP, "http");
		ASSERT_EQ(s->ncerts, 2, "rsa + ecdsa");
		ASSERT_EQ(s->nheaders, 2, "location headers only");
		ASSERT_EQ(s->nallows, 3, "allows");
		ASSERT_EQ(s->npassthroughs, 1, "passthrough");
		ASSERT_EQ(s->verify_depth, 3, "depth from http");
		ASSERT_EQ(s->session_cache_size, 1000 + 40000, "session cache");
		ASSERT_EQ(s->session_timeout, 600, "session timeout");
		ASSERT_EQ(s->idle_timeout_ms, 65000, "keepalive");
		ASSERT_EQ(s->header_buffer_size, 16384, "hb size");
		ASSERT_STREQ(s->access_log, "/dev/null", "access_log");
		ASSERT_TRUE(s->listens[0].default_server, "default_server");
		ASSERT_EQ(cfg->servers[1].nheaders, 3, "second server inherits http headers");
		ASSERT_TRUE(cfg->servers[1].access_log == NULL, "access_log off inherited");
		s = &cfg->servers[2];
		ASSERT_EQ(s->mode, GW_MODE_STREAM, "stream from the include");
		ASSERT_STRSTR(s->file, "full-nginx-stream.inc", "server file");
		ASSERT_EQ(s->protocols, GW_PROTO_TLSv1_3, "stream protocols");
		ASSERT_TRUE(s->proxy_protocol && s->proxy_protocol_tlv_cert, "pp");
		ASSERT_EQ(s->proxy_connect_timeout_ms, 3000, "connect");
		ASSERT_EQ(s->nlistens, 2, "listens");
	}
	config_free(cfg);
	rm_rf(dir);
	free(dir);
	free(expect);
}

void test_config_upstream(void)
{
	char *err = NULL, a[80];
	struct gw_config *cfg =
		parse("http {\n"
		      "  server {\n" TLS_OK "    location / { proxy_pass http://BE/; }\n  }\n"
		      "  upstream be {\n    server 127.0.0.1:9001;\n    keepalive 16;\n"
		      "    keepalive_timeout 5s;\n    keepalive_requests 7;\n    keepalive_time "
		      "2m;\n  }\n"
		      "  upstream plain { server localhost; }\n"
		      "  server {\nlisten 444 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		      "    proxy_pass http://plain;\n  }\n"
		      "  server {\nlisten 445 ssl; ssl_certificate /a; ssl_certificate_key /b;\n"
		      "    proxy_pass http://127.0.0.1:9002;\n  }\n"
		      "}\n",
		      &err);

	if (!ASSERT_OK_PTR(cfg, err ? err : "parse") || !ASSERT_EQ(cfg->nservers, 3, "servers"))
		goto out;
	/* proxy_pass before the upstream{} it names, the name in another case: as nginx */
	ASSERT_STREQ(cfg->servers[0].proxy_pass, "http://BE/", "as written");
	ASSERT_STREQ(addr_str(&cfg->servers[0].backend, a, sizeof(a)), "127.0.0.1:9001",
		     "the upstream's server");
	ASSERT_EQ(cfg->servers[0].keepalive, 16, "keepalive");
	ASSERT_EQ(cfg->servers[0].keepalive_timeout_ms, 5000, "keepalive_timeout");
	ASSERT_EQ(cfg->servers[0].keepalive_requests, 7, "keepalive_requests");
	ASSERT_EQ(cfg->servers[0].keepalive_time_ms, 120000, "keepalive_time");
	ASSERT_STREQ(addr_str(&cfg->servers[1].backend, a, sizeof(a)), "127.0.0.1:80",
		     "default port 80");
	ASSERT_EQ(cfg->servers[1].keepalive, 0, "no keepalive: 1:1");
	ASSERT_EQ(cfg->servers[1].keepalive_timeout_ms, 60000, "nginx default 60s");
	ASSERT_EQ(cfg->servers[1].keepalive_requests, 1000, "nginx default 1000");
	ASSERT_EQ(cfg->servers[1].keepalive_time_ms, 3600000, "nginx default 1h");
	ASSERT_EQ(cfg->servers[2].keepalive, 0, "no upstream");
	config_free(cfg);
	cfg = NULL;

	expect_err("http {\n upstream be {\n server 127.0.0.1:1;\n server 127.0.0.1:2;\n }\n"
		   " server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:4: upstream \"be\" has more than one server: ktlsgw does not "
		   "balance between backends");
	expect_err(
		"http {\n upstream be {\n server 127.0.0.1:1 weight=2;\n }\n"
		" server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		"/etc/gw/gw.conf:3: \"server\" parameter \"weight=2\" is not supported by ktlsgw");
	expect_err("http {\n upstream be {\n keepalive 2;\n }\n"
		   " server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:2: no servers are inside upstream");
	expect_err("http {\n upstream be {\n server 127.0.0.1:1;\n keepalive 0;\n }\n"
		   " server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:4: invalid value \"0\" in \"keepalive\" directive");
	expect_err("http {\n upstream be {\n server 127.0.0.1:1;\n keepalive 2;\n keepalive 3;\n"
		   " }\n server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:5: \"keepalive\" directive is duplicate");
	expect_err("http {\n upstream be {\n server 127.0.0.1:1;\n least_conn;\n }\n"
		   " server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:4: unknown directive \"least_conn\"");
	expect_err("http {\n upstream be { server 127.0.0.1:1; }\n upstream BE { server "
		   "127.0.0.1:2; }\n server {\n" TLS_OK " proxy_pass http://be;\n }\n}\n",
		   "/etc/gw/gw.conf:3: duplicate upstream \"BE\"");
	expect_err("stream {\n upstream be { server 127.0.0.1:1; }\n server {\n" TLS_OK
		   " proxy_pass be;\n }\n}\n",
		   "/etc/gw/gw.conf:2: \"upstream\" directive is not allowed here\n"
		   "/etc/gw/gw.conf:5: no port in upstream \"be\"");
	expect_err("http {\n server {\n" TLS_OK " upstream be { server 127.0.0.1:1; }\n"
		   " proxy_pass http://127.0.0.1:1;\n }\n}\n",
		   "/etc/gw/gw.conf:4: \"upstream\" directive is not allowed here");
	expect_err("http {\n upstream be { server 127.0.0.1:1; keepalive 2 }\n}\n",
		   "/etc/gw/gw.conf:2: unexpected \"}\"\n"
		   "/etc/gw/gw.conf:1: no \"server\" is defined: nothing to do");
out:
	config_free(cfg);
	free(err);
}
