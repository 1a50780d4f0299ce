// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Passthrough routes: both sockets of a connection that the gateway does not
 * terminate (ssl_passthrough) sit in sock_hash; the stream verdict program
 * runs on every skb received on either socket and redirects it to the egress
 * of the peer socket, so the bytes never reach userspace. Userspace owns the
 * pairing (peers) and the teardown: the kernel does not forward a FIN through
 * a redirect. The verdict also watches how far the peer's TCP is behind (see
 * GW_PT_QUEUE_MAX_DEFAULT) and reports a peer past queue_max in events.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "gw/bpf_types.h"

#define SK_DROP 0
#define SK_PASS 1

/* set before load (KTLSGW_PT_QUEUE_MAX) */
const volatile __u32 queue_max = GW_PT_QUEUE_MAX_DEFAULT;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, GW_PT_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_PT_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct gw_pt_peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_pt_stats);
} stats SEC(".maps");

/* cookies (__u64) of sockets whose peer fell queue_max behind */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* How many of our redirected bytes the peer's TCP has not taken yet (0 if unknown). */
static __always_inline __u32 peer_behind(struct gw_pt_peer *p, __u64 *peer)
{
	struct bpf_sock *psk = bpf_map_lookup_elem(&sock_hash, peer);
	struct tcp_sock *tp;
	__s32 behind = 0;
	__u32 seq;

	if (!psk)
		return 0;
	tp = bpf_skc_to_tcp_sock(psk);
	if (tp) {
		seq = tp->write_seq;
		if (!(p->flags & GW_PT_F_SEQ0)) {
			/* before our first byte: what the peer's TCP holds is not ours */
			p->peer_seq0 = seq;
			p->flags |= GW_PT_F_SEQ0;
		}
		/* 32-bit sequence space: fine while less than 2 GiB are behind */
		behind = (__s32)((__u32)p->bytes - (seq - p->peer_seq0));
	}
	bpf_sk_release(psk);
	return behind > 0 ? (__u32)behind : 0;
}

SEC("sk_skb/stream_verdict")
int gw_pt_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct gw_pt_peer *p = bpf_map_lookup_elem(&peers, &cookie);
	__u32 zero = 0;
	struct gw_pt_stats *st = bpf_map_lookup_elem(&stats, &zero);
	__u64 peer;
	long ret;

	if (!p) {
		if (st)
			st->no_peer++;
		return SK_DROP;
	}
	/*
	 * A FIN without data reaches the verdict as an empty skb. Redirected, it
	 * would make the peer's psock send after userspace has shut the peer's
	 * write side (EPIPE, reported as a socket error): FINs are userspace's.
	 */
	if (skb->len == 0)
		return SK_DROP;
	/* the helpers want the key on the stack or in a map value */
	peer = p->peer_cookie;
	if (!(p->flags & GW_PT_F_BEHIND) && peer_behind(p, &peer) > queue_max) {
		/* once per socket: the gateway resets the connection */
		p->flags |= GW_PT_F_BEHIND;
		bpf_ringbuf_output(&events, &cookie, sizeof(cookie), 0);
		if (st)
			st->behind++;
	}
	ret = bpf_sk_redirect_hash(skb, &sock_hash, &peer, 0);
	if (ret != SK_PASS) {
		__sync_fetch_and_add(&p->drops, 1);
		if (st)
			st->redir_err++;
		return SK_DROP;
	}
	/* bytes counted here are the ones userspace waits for before forwarding a FIN */
	__sync_fetch_and_add(&p->bytes, skb->len);
	__sync_fetch_and_add(&p->skbs, 1);
	if (st) {
		st->bytes += skb->len;
		st->skbs++;
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
