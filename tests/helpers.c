// SPDX-License-Identifier: MIT
/* Small helpers shared by the unit tests. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
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
