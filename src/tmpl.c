// SPDX-License-Identifier: MIT
/*
 * Variable names and "$var" templates (proxy_set_header values, access_log).
 * Compilation happens at config time so an unknown variable is a config
 * error; rendering lives in identity.c next to the values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "gw/identity.h"

static const char *const var_names[GW_VAR__COUNT] = {
	[GW_VAR_SSL_CLIENT_CERT] = "ssl_client_cert",
	[GW_VAR_SSL_CLIENT_RAW_CERT] = "ssl_client_raw_cert",
	[GW_VAR_SSL_CLIENT_ESCAPED_CERT] = "ssl_client_escaped_cert",
	[GW_VAR_SSL_CLIENT_S_DN] = "ssl_client_s_dn",
	[GW_VAR_SSL_CLIENT_S_DN_LEGACY] = "ssl_client_s_dn_legacy",
	[GW_VAR_SSL_CLIENT_I_DN] = "ssl_client_i_dn",
	[GW_VAR_SSL_CLIENT_I_DN_LEGACY] = "ssl_client_i_dn_legacy",
	[GW_VAR_SSL_CLIENT_SERIAL] = "ssl_client_serial",
	[GW_VAR_SSL_CLIENT_FINGERPRINT] = "ssl_client_fingerprint",
	[GW_VAR_SSL_CLIENT_VERIFY] = "ssl_client_verify",
	[GW_VAR_SSL_CLIENT_V_START] = "ssl_client_v_start",
	[GW_VAR_SSL_CLIENT_V_END] = "ssl_client_v_end",
	[GW_VAR_SSL_CLIENT_V_REMAIN] = "ssl_client_v_remain",
	[GW_VAR_SSL_PROTOCOL] = "ssl_protocol",
	[GW_VAR_SSL_CIPHER] = "ssl_cipher",
	[GW_VAR_SSL_SERVER_NAME] = "ssl_server_name",
	[GW_VAR_SSL_SESSION_REUSED] = "ssl_session_reused",
	[GW_VAR_REMOTE_ADDR] = "remote_addr",
	[GW_VAR_REMOTE_PORT] = "remote_port",
	[GW_VAR_SERVER_ADDR] = "server_addr",
	[GW_VAR_SERVER_PORT] = "server_port",
	[GW_VAR_PROXY_ADD_X_FORWARDED_FOR] = "proxy_add_x_forwarded_for",
	[GW_VAR_SCHEME] = "scheme",
	[GW_VAR_HOST] = "host",
	[GW_VAR_SSL_CLIENT_FINGERPRINT_SHA256] = "ssl_client_fingerprint_sha256",
	[GW_VAR_SSL_CLIENT_SAN_DNS] = "ssl_client_san_dns",
	[GW_VAR_SSL_CLIENT_SAN_URI] = "ssl_client_san_uri",
	[GW_VAR_SSL_CLIENT_SPIFFE_ID] = "ssl_client_spiffe_id",
	[GW_VAR_SSL_CLIENT_XFCC] = "ssl_client_xfcc",
	[GW_VAR_SSL_CLIENT_CERT_RFC9440] = "ssl_client_cert_rfc9440",
	[GW_VAR_SSL_CLIENT_CHAIN_RFC9440] = "ssl_client_chain_rfc9440",
};

int identity_var_lookup(const char *name, size_t len)
{
	for (int i = 0; i < GW_VAR__COUNT; i++)
		if (strlen(var_names[i]) == len && strncmp(var_names[i], name, len) == 0)
			return i;
	return -ENOENT;
}

const char *identity_var_name(int var)
{
	return var >= 0 && var < GW_VAR__COUNT ? var_names[var] : "?";
}

static bool is_var_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static int add_part(struct gw_tmpl *t, const char *lit, size_t litlen, int var)
{
	struct gw_tmpl_part *p = realloc(t->parts, (t->nparts + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	t->parts = p;
	p = &t->parts[t->nparts];
	p->lit = NULL;
	p->var_id = var;
	if (lit) {
		p->lit = strndup(lit, litlen);
		if (!p->lit)
			return -ENOMEM;
	}
	t->nparts++;
	return 0;
}

int tmpl_compile(const char *src, struct gw_tmpl *t, char **err)
{
	const char *s = src, *lit = src;
	int ret;

	memset(t, 0, sizeof(*t));
	t->src = strdup(src);
	if (!t->src)
		return -ENOMEM;
	while (*s) {
		const char *name, *end;
		bool brace;
		int var;

		if (*s != '$') {
			s++;
			continue;
		}
		brace = s[1] == '{';
		name = s + 1 + brace;
		end = name;
		while (is_var_char(*end))
			end++;
		if (brace && *end != '}') {
			if (asprintf(err, "the closing bracket in \"%.*s\" variable is missing",
				     (int)(end - name), name) < 0)
				*err = NULL;
			ret = -EINVAL;
			goto err;
		}
		if (end == name) {
			if (asprintf(err, "invalid variable name in \"%s\"", src) < 0)
				*err = NULL;
			ret = -EINVAL;
			goto err;
		}
		var = identity_var_lookup(name, (size_t)(end - name));
		if (var < 0) {
			if (asprintf(err, "unknown \"%.*s\" variable", (int)(end - name), name) < 0)
				*err = NULL;
			ret = -EINVAL;
			goto err;
		}
		if (s > lit) {
			ret = add_part(t, lit, (size_t)(s - lit), -1);
			if (ret)
				goto err;
		}
		ret = add_part(t, NULL, 0, var);
		if (ret)
			goto err;
		s = end + brace;
		lit = s;
	}
	if (s > lit) {
		ret = add_part(t, lit, (size_t)(s - lit), -1);
		if (ret)
			goto err;
	}
	return 0;
err:
	tmpl_free(t);
	return ret;
}

void tmpl_free(struct gw_tmpl *t)
{
	for (size_t i = 0; i < t->nparts; i++)
		free(t->parts[i].lit);
	free(t->parts);
	free(t->src);
	memset(t, 0, sizeof(*t));
}
