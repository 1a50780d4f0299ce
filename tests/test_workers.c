// SPDX-License-Identifier: MIT
/*
 * The SK_REUSEPORT steering program on real sockets (it has no test run in
 * this kernel's BPF_PROG_TEST_RUN): two SO_REUSEPORT listeners in one group
 * as workers 0 and 1, connections from a client pinned to CPU c land on
 * worker c % 2, and connections queued on a listener that closes without
 * accepting them are migrated to the other one (none is reset).
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include "gw/workers.h"
#include "test.h"

static int reuseport_listener(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				.sin_port = htons(*port)};
	socklen_t len = sizeof(a);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		return -errno;
	*port = ntohs(a.sin_port);
	return fd;
}

static int connect_from_cpu(uint16_t port, int cpu)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				.sin_port = htons(port)};
	cpu_set_t set, saved;
	int fd;

	sched_getaffinity(0, sizeof(saved), &saved);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		fd = -1;
	}
	sched_setaffinity(0, sizeof(saved), &saved);
	return fd;
}

/* Accept every queued connection of @l (waiting up to 200 ms for the first). */
static int accept_all(int l)
{
	struct pollfd p = {.fd = l, .events = POLLIN};
	int n = 0, fd;

	poll(&p, 1, 200);
	while ((fd = accept(l, NULL, NULL)) >= 0) {
		close(fd);
		n++;
	}
	return n;
}

static void setup_or_skip(int *l0, int *l1, uint16_t *port)
{
	cpu_set_t set;
	int err;

	sched_getaffinity(0, sizeof(set), &set);
	if (!CPU_ISSET(0, &set) || !CPU_ISSET(1, &set))
		test__skip("needs CPUs 0 and 1");
	err = workers_steer_load(2);
	if (err == -EPERM || err == -EACCES)
		test__skip("BPF not permitted here");
	if (!ASSERT_OK(err, "workers_steer_load"))
		return;
	*port = 0;
	*l0 = reuseport_listener(port);
	*l1 = reuseport_listener(port);
	ASSERT_GE(*l0, 0, "listener 0");
	ASSERT_GE(*l1, 0, "listener 1");
	ASSERT_EQ(workers_steer_group(*port, AF_INET), 0, "group");
	ASSERT_OK(workers_steer_attach(*l0, 0), "attach worker 0");
	ASSERT_OK(workers_steer_attach(*l1, 1), "attach worker 1");
}

void test_workers_steer_by_cpu(void)
{
	int l0 = -1, l1 = -1, c[20];
	uint16_t port;
	struct gw_rp_stats st;

	setup_or_skip(&l0, &l1, &port);
	if (test__failed)
		goto out;
	for (int i = 0; i < 20; i++)
		c[i] = connect_from_cpu(port, i % 2);
	ASSERT_EQ(accept_all(l0), 10, "CPU 0's connections on worker 0");
	ASSERT_EQ(accept_all(l1), 10, "CPU 1's connections on worker 1");
	ASSERT_OK(workers_steer_stats(&st), "stats");
	ASSERT_EQ(st.by_cpu, 20, "steered by CPU");
	for (int i = 0; i < 20; i++)
		close(c[i]);
out:
	close(l0);
	close(l1);
	workers_steer_unload();
}

void test_workers_migrate_on_close(void)
{
	int l0 = -1, l1 = -1, c[10];
	uint16_t port;
	struct gw_rp_stats st;
	char b;

	setup_or_skip(&l0, &l1, &port);
	if (test__failed)
		goto out;
	for (int i = 0; i < 10; i++)
		c[i] = connect_from_cpu(port, 0);
	/* worker 0 drains: its listener closes with 10 connections in its accept queue */
	close(l0);
	l0 = -1;
	ASSERT_EQ(accept_all(l1), 10, "queued connections migrated to worker 1");
	ASSERT_OK(workers_steer_stats(&st), "stats");
	ASSERT_EQ(st.migrated, 10, "migrated by the program");
	for (int i = 0; i < 10; i++) {
		/* a reset one would read ECONNRESET; a migrated one is just closed by us: EOF */
		struct pollfd p = {.fd = c[i], .events = POLLIN};

		poll(&p, 1, 1000);
		ASSERT_EQ(recv(c[i], &b, 1, 0), 0, "clean EOF, no reset");
		close(c[i]);
	}
	/* after the close, new connections from CPU 0 fall back to the live worker */
	c[0] = connect_from_cpu(port, 0);
	ASSERT_EQ(accept_all(l1), 1, "CPU 0 with worker 0 gone: worker 1");
	close(c[0]);
out:
	close(l0);
	close(l1);
	workers_steer_unload();
}
