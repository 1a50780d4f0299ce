// SPDX-License-Identifier: MIT
/*
 * Loader and userspace half of bpf/gw_sockmap.bpf.c (see include/gw/sockmap.h):
 * the skeleton is opened and loaded once per process, the stream verdict is
 * attached to sock_hash, and passthrough.c pairs and unpairs sockets. The
 * ABI sizes shared with the BPF side are asserted here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "gw/log.h"
#include "gw/sockmap.h"
#include "gw_sockmap.skel.h"

_Static_assert(sizeof(struct gw_pt_peer) == 40, "gw_pt_peer ABI");
_Static_assert(sizeof(struct gw_pt_stats) == 40, "gw_pt_stats ABI");
_Static_assert(sizeof(struct gw_rp_key) == 8, "gw_rp_key ABI");
_Static_assert(sizeof(struct gw_rp_stats) == 32, "gw_rp_stats ABI");

struct sockmap {
	struct gw_sockmap_bpf *skel;
	int hash_fd, peers_fd, stats_fd;
	uint32_t queue_max;
	struct ring_buffer *events;
	void (*on_behind)(void *ctx, uint64_t cookie);
	void *ctx;
};

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n > 0 && line[MIN((size_t)n, sizeof(line) - 1) - 1] == '\n')
		line[MIN((size_t)n, sizeof(line) - 1) - 1] = '\0';
	if (level == LIBBPF_WARN)
		pr_warn("libbpf: %s", line);
	else if (level == LIBBPF_INFO)
		pr_info("libbpf: %s", line);
	else
		pr_debug("libbpf: %s", line);
	return 0;
}

void sockmap_log_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}

int sockmap_open(struct sockmap **out)
{
	const char *qm = getenv("KTLSGW_PT_QUEUE_MAX");
	struct sockmap *sm;
	int err;

	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	sockmap_log_libbpf();
	sm->skel = gw_sockmap_bpf__open();
	if (!sm->skel) {
		err = -errno;
		pr_err("bpf: open gw_sockmap: %s", strerror(-err));
		goto err_free;
	}
	sm->queue_max = GW_PT_QUEUE_MAX_DEFAULT;
	if (qm && atol(qm) > 0 && atol(qm) < (1L << 31))
		sm->queue_max = (uint32_t)atol(qm);
	sm->skel->rodata->queue_max = sm->queue_max;
	err = gw_sockmap_bpf__load(sm->skel);
	if (err) {
		pr_err("bpf: load gw_sockmap: %s", strerror(-err));
		goto err_destroy;
	}
	sm->hash_fd = bpf_map__fd(sm->skel->maps.sock_hash);
	sm->peers_fd = bpf_map__fd(sm->skel->maps.peers);
	sm->stats_fd = bpf_map__fd(sm->skel->maps.stats);
	/*
	 * A stream verdict without a stream parser: each skb is judged as it
	 * arrives (no strparser framing, no extra copy).
	 */
	err = bpf_prog_attach(bpf_program__fd(sm->skel->progs.gw_pt_verdict), sm->hash_fd,
			      BPF_SK_SKB_STREAM_VERDICT, 0);
	if (err) {
		err = -errno;
		pr_err("bpf: attach sk_skb stream verdict: %s", strerror(-err));
		goto err_destroy;
	}
	*out = sm;
	return 0;

err_destroy:
	gw_sockmap_bpf__destroy(sm->skel);
err_free:
	free(sm);
	return err;
}

void sockmap_close(struct sockmap *sm)
{
	if (!sm)
		return;
	ring_buffer__free(sm->events);
	bpf_prog_detach2(bpf_program__fd(sm->skel->progs.gw_pt_verdict), sm->hash_fd,
			 BPF_SK_SKB_STREAM_VERDICT);
	gw_sockmap_bpf__destroy(sm->skel);
	free(sm);
}

uint64_t sockmap_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len))
		return 0;
	return cookie;
}

int sockmap_pair(struct sockmap *sm, int a, uint64_t ca, int b, uint64_t cb)
{
	struct gw_pt_peer pa = {.peer_cookie = cb}, pb = {.peer_cookie = ca};
	uint64_t fa = (uint64_t)a, fb = (uint64_t)b;
	int err;

	if (bpf_map_update_elem(sm->peers_fd, &ca, &pa, BPF_NOEXIST) ||
	    bpf_map_update_elem(sm->peers_fd, &cb, &pb, BPF_NOEXIST)) {
		err = -errno;
		goto fail;
	}
	/* the value of a sock_hash update is the socket's fd */
	if (bpf_map_update_elem(sm->hash_fd, &cb, &fb, BPF_NOEXIST) ||
	    bpf_map_update_elem(sm->hash_fd, &ca, &fa, BPF_NOEXIST)) {
		err = -errno;
		goto fail;
	}
	return 0;
fail:
	sockmap_unpair(sm, ca, cb);
	return err;
}

void sockmap_unpair(struct sockmap *sm, uint64_t ca, uint64_t cb)
{
	/* sockets first: no verdict may find a socket without its peer entry and drop */
	bpf_map_delete_elem(sm->hash_fd, &ca);
	bpf_map_delete_elem(sm->hash_fd, &cb);
	bpf_map_delete_elem(sm->peers_fd, &ca);
	bpf_map_delete_elem(sm->peers_fd, &cb);
}

uint32_t sockmap_queue_max(const struct sockmap *sm)
{
	return sm->queue_max;
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct sockmap *sm = ctx;
	uint64_t cookie;

	if (len < sizeof(cookie))
		return 0;
	memcpy(&cookie, data, sizeof(cookie));
	sm->on_behind(sm->ctx, cookie);
	return 0;
}

int sockmap_events(struct sockmap *sm, void (*on_behind)(void *ctx, uint64_t cookie), void *ctx)
{
	if (!sm->events) {
		sm->on_behind = on_behind;
		sm->ctx = ctx;
		sm->events =
			ring_buffer__new(bpf_map__fd(sm->skel->maps.events), on_event, sm, NULL);
		if (!sm->events)
			return -errno;
	}
	return ring_buffer__epoll_fd(sm->events);
}

int sockmap_events_consume(struct sockmap *sm)
{
	return sm->events ? ring_buffer__consume(sm->events) : 0;
}

int sockmap_bytes(struct sockmap *sm, uint64_t cookie, uint64_t *bytes)
{
	struct gw_pt_peer p;

	if (bpf_map_lookup_elem(sm->peers_fd, &cookie, &p))
		return -errno;
	*bytes = p.bytes;
	return 0;
}

static size_t count_keys(int fd)
{
	uint64_t key, next;
	size_t n = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		n++;
		key = next;
		prev = &key;
	}
	return n;
}

int sockmap_count(struct sockmap *sm, size_t *socks, size_t *peers)
{
	*socks = count_keys(sm->hash_fd);
	*peers = count_keys(sm->peers_fd);
	return 0;
}

int sockmap_stats(struct sockmap *sm, struct gw_pt_stats *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct gw_pt_stats *v;
	uint32_t zero = 0;

	memset(out, 0, sizeof(*out));
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(sm->stats_fd, &zero, v)) {
		free(v);
		return -errno;
	}
	for (int i = 0; i < ncpu; i++) {
		out->bytes += v[i].bytes;
		out->skbs += v[i].skbs;
		out->no_peer += v[i].no_peer;
		out->redir_err += v[i].redir_err;
		out->behind += v[i].behind;
	}
	free(v);
	return 0;
}
