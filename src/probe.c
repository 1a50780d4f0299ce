// SPDX-License-Identifier: MIT
/*
 * Kernel feature probes for -V and the start-up log: io_uring (and its
 * SPLICE op), kernel TLS (the "tls" ULP on a real established loopback TCP
 * socket, since the ULP is refused on anything else) and BPF sockhash maps.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <liburing.h>
#include "gw/worker.h"

static int probe_ktls(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l, c = -1, s = -1, err = 0;

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len)) {
		err = -errno;
		goto out;
	}
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
		err = -errno;
		goto out;
	}
	s = accept(l, NULL, NULL);
	if (s < 0) {
		err = -errno;
		goto out;
	}
	if (setsockopt(s, SOL_TCP, TCP_ULP, "tls", sizeof("tls")))
		err = -errno;
out:
	if (s >= 0)
		close(s);
	if (c >= 0)
		close(c);
	close(l);
	return err;
}

static int probe_sockmap(void)
{
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_SOCKHASH;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	fd = (int)syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

void probe_features(struct gw_features *f)
{
	struct io_uring_probe *p;
	int err;

	memset(f, 0, sizeof(*f));
	p = io_uring_get_probe();
	if (p) {
		f->io_uring = true;
		f->io_uring_splice = io_uring_opcode_supported(p, IORING_OP_SPLICE);
		io_uring_free_probe(p);
	}
	err = probe_ktls();
	f->ktls = err == 0;
	f->ktls_err = -err;
	err = probe_sockmap();
	f->sockmap = err == 0;
	f->sockmap_err = -err;
}
