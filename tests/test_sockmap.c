// SPDX-License-Identifier: MIT
/*
 * The passthrough sockmap on real loopback sockets (sk_skb programs have no
 * BPF_PROG_TEST_RUN): load, pair, bytes both ways with counters, the
 * SO_RCVLOWAT kick for bytes queued before the pair was made, a FIN seen by
 * poll(POLLRDHUP) while the bytes flow in the kernel, and the map emptied by
 * unpair and by close. Skips where BPF is not permitted.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "gw/sockmap.h"
#include "test.h"

/* A connected loopback pair: *@c the connecting end, *@s the accepted one. */
static int tcp_pair(int *c, int *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -errno;
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	*s = accept(l, NULL, NULL);
	close(l);
	return *s < 0 ? -errno : 0;
}

static struct sockmap *open_or_skip(void)
{
	struct sockmap *sm = NULL;
	int err = sockmap_open(&sm);

	if (err == -EPERM || err == -EACCES || err == -ENOSYS || err == -EOPNOTSUPP)
		test__skip("BPF not permitted here");
	if (!ASSERT_OK(err, "sockmap_open"))
		return NULL;
	return sm;
}

/* Read exactly @n bytes from @fd with a 5 s bound. */
static ssize_t read_n(int fd, char *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&pfd, 1, 5000) != 1)
			break;
		r = recv(fd, p + got, n - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

void test_sockmap_pair_moves_bytes(void)
{
	int c1 = -1, s1 = -1, c2 = -1, s2 = -1, lowat = 1;
	struct sockmap *sm = open_or_skip();
	uint64_t k1, k2, b1 = 0, b2 = 0;
	size_t ns, np;
	char buf[64 * 1024], got[sizeof(buf)];

	if (!sm)
		return;
	if (!ASSERT_OK(tcp_pair(&c1, &s1), "pair 1") || !ASSERT_OK(tcp_pair(&c2, &s2), "pair 2"))
		goto out;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7 + 3);
	/* bytes that arrive before the pairing stay queued on s1 (the peeked ClientHello) */
	ASSERT_EQ(send(c1, "hello", 5, 0), 5, "early send");
	usleep(20000);
	k1 = sockmap_cookie(s1);
	k2 = sockmap_cookie(s2);
	ASSERT_TRUE(k1 && k2 && k1 != k2, "cookies");
	if (!ASSERT_OK(sockmap_pair(sm, s1, k1, s2, k2), "sockmap_pair"))
		goto out;
	sockmap_count(sm, &ns, &np);
	ASSERT_EQ(ns, 2, "sock_hash entries");
	ASSERT_EQ(np, 2, "peers entries");
	/* SO_RCVLOWAT runs the socket's data_ready: the verdict takes the queued bytes */
	ASSERT_OK(setsockopt(s1, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)), "kick");
	if (!ASSERT_EQ(read_n(c2, got, 5), 5, "early bytes redirected"))
		goto out;
	ASSERT_MEMEQ(got, "hello", 5, "early bytes");
	ASSERT_EQ(send(c1, buf, sizeof(buf), 0), (long)sizeof(buf), "send c1");
	if (ASSERT_EQ(read_n(c2, got, sizeof(buf)), (long)sizeof(buf), "c1 -> c2"))
		ASSERT_MEMEQ(got, buf, sizeof(buf), "c1 -> c2 bytes");
	ASSERT_EQ(send(c2, buf, 1000, 0), 1000, "send c2");
	if (ASSERT_EQ(read_n(c1, got, 1000), 1000, "c2 -> c1"))
		ASSERT_MEMEQ(got, buf, 1000, "c2 -> c1 bytes");
	ASSERT_OK(sockmap_bytes(sm, k1, &b1), "bytes s1");
	ASSERT_OK(sockmap_bytes(sm, k2, &b2), "bytes s2");
	ASSERT_EQ(b1, sizeof(buf) + 5, "counter s1 -> s2");
	ASSERT_EQ(b2, 1000, "counter s2 -> s1");

	/* a FIN from c1: s1 reports it to poll while its bytes go through the verdict */
	shutdown(c1, SHUT_WR);
	{
		struct pollfd pfd = {.fd = s1, .events = POLLRDHUP};

		ASSERT_EQ(poll(&pfd, 1, 2000), 1, "poll RDHUP");
		ASSERT_TRUE(pfd.revents & POLLRDHUP, "RDHUP");
	}
	sockmap_unpair(sm, k1, k2);
	sockmap_count(sm, &ns, &np);
	ASSERT_EQ(ns, 0, "sock_hash empty after unpair");
	ASSERT_EQ(np, 0, "peers empty after unpair");
	ASSERT_EQ(sockmap_bytes(sm, k1, &b1), -ENOENT, "counter gone");
out:
	close(c1);
	close(s1);
	close(c2);
	close(s2);
	sockmap_close(sm);
}

void test_sockmap_close_leaves_map(void)
{
	int c1 = -1, s1 = -1, c2 = -1, s2 = -1;
	struct sockmap *sm = open_or_skip();
	size_t ns = 9, np = 9;

	if (!sm)
		return;
	if (!ASSERT_OK(tcp_pair(&c1, &s1), "pair 1") || !ASSERT_OK(tcp_pair(&c2, &s2), "pair 2"))
		goto out;
	if (!ASSERT_OK(sockmap_pair(sm, s1, sockmap_cookie(s1), s2, sockmap_cookie(s2)), "pair"))
		goto out;
	ASSERT_EQ(sockmap_pair(sm, s1, sockmap_cookie(s1), s2, sockmap_cookie(s2)), -EEXIST,
		  "pairing twice");
	close(s1);
	close(s2);
	s1 = s2 = -1;
	sockmap_count(sm, &ns, &np);
	ASSERT_EQ(ns, 0, "a closed socket leaves sock_hash by itself");
out:
	close(c1);
	close(s1);
	close(c2);
	close(s2);
	sockmap_close(sm);
}
