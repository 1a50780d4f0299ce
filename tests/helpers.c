// SPDX-License-Identifier: MIT
/* Small helpers shared by the unit tests. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include "test.h"

void test__sa4(struct sockaddr_in *s, const char *ip, int port)
{
	memset(s, 0, sizeof(*s));
	s->sin_family = AF_INET;
	s->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &s->sin_addr);
}

void test__sa6(struct sockaddr_in6 *s, const char *ip, int port)
{
	memset(s, 0, sizeof(*s));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((uint16_t)port);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
}

long test__clock_offset;
bool test__clock_tick;
time_t test__clock_fixed;

/*
 * The unit tests' wall clock: this time() replaces libc's for the whole
 * process, the gateway's code and OpenSSL's certificate checks alike, shifted
 * by test__clock_offset seconds (0 but in tests that move the clock). With
 * test__clock_tick, each reading is a second later than the one before: a
 * slow machine, where every step of a handshake lands in another second.
 * With test__clock_fixed set, the clock stands at that second instead of
 * following the real one (and ticks from there with test__clock_tick).
 */
time_t time(time_t *tp)
{
	struct timespec ts;
	time_t now;

	if (test__clock_fixed) {
		now = test__clock_tick ? test__clock_fixed++ : test__clock_fixed;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		now = ts.tv_sec + test__clock_offset;
		if (test__clock_tick)
			test__clock_offset++;
	}
	if (tp)
		*tp = now;
	return now;
}
