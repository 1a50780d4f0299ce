// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include "test.h"
#include "gw/identity.h"

void test_tmpl_compile_parts(void)
{
	struct gw_tmpl t;
	char *err = NULL;

	if (!ASSERT_OK(tmpl_compile("a $ssl_client_s_dn, ${remote_addr}x $scheme", &t, &err),
		       "compile"))
		return;
	ASSERT_EQ(t.nparts, 6, "parts");
	ASSERT_STREQ(t.parts[0].lit, "a ", "lit 0");
	ASSERT_EQ(t.parts[1].var_id, GW_VAR_SSL_CLIENT_S_DN, "var 1");
	ASSERT_STREQ(t.parts[2].lit, ", ", "lit 2");
	ASSERT_EQ(t.parts[3].var_id, GW_VAR_REMOTE_ADDR, "var 3");
	ASSERT_STREQ(t.parts[4].lit, "x ", "lit 4");
	ASSERT_EQ(t.parts[5].var_id, GW_VAR_SCHEME, "var 5");
	tmpl_free(&t);
}

void test_tmpl_compile_errors(void)
{
	struct gw_tmpl t;
	char *err = NULL;

	ASSERT_ERR(tmpl_compile("$nope", &t, &err), "unknown var");
	ASSERT_STRSTR(err, "unknown \"nope\" variable", "message");
	free(err);
	err = NULL;
	ASSERT_ERR(tmpl_compile("${remote_addr", &t, &err), "unclosed brace");
	free(err);
}
