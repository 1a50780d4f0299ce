// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include "test.h"
#include "gw/common.h"

void test_buf_append_consume(void)
{
	struct buf b = {};
	char *s;

	ASSERT_OK(buf_puts(&b, "hello "), "puts");
	ASSERT_OK(buf_printf(&b, "%s %d", "world", 42), "printf");
	ASSERT_EQ(buf_avail(&b), 14, "avail");
	buf_consume(&b, 6);
	s = buf_strdup(&b);
	ASSERT_STREQ(s, "world 42", "content after consume");
	free(s);
	for (int i = 0; i < 10000; i++)
		ASSERT_OK(buf_append(&b, "x", 1), "append");
	ASSERT_EQ(buf_avail(&b), 10008, "grown");
	buf_free(&b);
	ASSERT_TRUE(b.data == NULL, "freed");
}
