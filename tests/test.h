/* SPDX-License-Identifier: MIT */
/*
 * In-house test harness (STYLE.md 5.7): every "void test_xxx(void)" in
 * tests/test_*.c is registered by the Makefile, runs in a forked child under
 * alarm(), and the runner prints "N passed, N failed, N skipped".
 * ASSERT_* return bool so they compose with goto.
 */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#define TEST(n) void n(void);
#include "tests.h"
#undef TEST

extern int test__failed;
void test__skip(const char *why) __attribute__((noreturn));
struct sockaddr_in;
struct sockaddr_in6;
/* Fill a sockaddr from a literal address and a port (tests/helpers.c). */
void test__sa4(struct sockaddr_in *s, const char *ip, int port);
void test__sa6(struct sockaddr_in6 *s, const char *ip, int port);
/* Seconds added to time() for the whole process (helpers.c); tests reset it to 0. */
extern long test__clock_offset;
/* When set, each time() reading advances the clock by one second (helpers.c). */
extern bool test__clock_tick;
/* Nonzero: time() stands at this second, not the real one (helpers.c); tests reset it. */
extern time_t test__clock_fixed;

/* Path of a generated test certificate file ($GW_CERTS/@name), static buffer. */
const char *test__cert(const char *name);

#define TEST_FAIL(fmt, ...)                                                                        \
	do {                                                                                       \
		test__failed = 1;                                                                  \
		fprintf(stderr, "      %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__);      \
	} while (0)

#define ASSERT_TRUE(cond, name)                                                                    \
	({                                                                                         \
		bool ___ok = !!(cond);                                                             \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: unexpected false", (name));                                 \
		___ok;                                                                             \
	})
#define ASSERT_FALSE(cond, name) ASSERT_TRUE(!(cond), name)
#define ASSERT_EQ(a, b, name)                                                                      \
	({                                                                                         \
		long long ___a = (long long)(a), ___b = (long long)(b);                            \
		bool ___ok = ___a == ___b;                                                         \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: actual %lld != expected %lld", (name), ___a, ___b);         \
		___ok;                                                                             \
	})
#define ASSERT_NEQ(a, b, name)                                                                     \
	({                                                                                         \
		long long ___a = (long long)(a), ___b = (long long)(b);                            \
		bool ___ok = ___a != ___b;                                                         \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: actual %lld == %lld", (name), ___a, ___b);                  \
		___ok;                                                                             \
	})
#define ASSERT_GE(a, b, name)                                                                      \
	({                                                                                         \
		long long ___a = (long long)(a), ___b = (long long)(b);                            \
		bool ___ok = ___a >= ___b;                                                         \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: actual %lld < expected %lld", (name), ___a, ___b);          \
		___ok;                                                                             \
	})
#define ASSERT_OK(res, name)                                                                       \
	({                                                                                         \
		long long ___r = (long long)(res);                                                 \
		bool ___ok = ___r == 0;                                                            \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: unexpected error %lld (errno %d)", (name), ___r, errno);    \
		___ok;                                                                             \
	})
#define ASSERT_ERR(res, name)                                                                      \
	({                                                                                         \
		long long ___r = (long long)(res);                                                 \
		bool ___ok = ___r < 0;                                                             \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: unexpected success %lld", (name), ___r);                    \
		___ok;                                                                             \
	})
#define ASSERT_STREQ(a, b, name)                                                                   \
	({                                                                                         \
		const char *___a = (a), *___b = (b);                                               \
		bool ___ok = ___a && ___b && strcmp(___a, ___b) == 0;                              \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: actual \"%s\" != expected \"%s\"", (name),                  \
				  ___a ? ___a : "(null)", ___b ? ___b : "(null)");                 \
		___ok;                                                                             \
	})
#define ASSERT_MEMEQ(a, b, n, name)                                                                \
	({                                                                                         \
		bool ___ok = memcmp((a), (b), (n)) == 0;                                           \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: memory differs", (name));                                   \
		___ok;                                                                             \
	})
#define ASSERT_STRSTR(hay, needle, name)                                                           \
	({                                                                                         \
		const char *___h = (hay), *___n = (needle);                                        \
		bool ___ok = ___h && strstr(___h, ___n);                                           \
		if (!___ok)                                                                        \
			TEST_FAIL("%s: \"%s\" not found in \"%s\"", (name), ___n,                  \
				  ___h ? ___h : "(null)");                                         \
		___ok;                                                                             \
	})
#define ASSERT_OK_PTR(p, name) ASSERT_TRUE((p) != NULL, name)

#endif /* GW_TEST_H */
