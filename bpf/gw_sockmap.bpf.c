// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Passthrough routes: both sockets of a connection that the gateway does not
 * terminate (ssl_passthrough) sit in sock_hash; the stream verdict program
 * runs on every skb received on either socket and redirects it to the egress
 * of the peer socket, so the bytes never reach userspace. Userspace owns the
 * pairing (peers) and the teardown: the kernel does not forward a FIN through
 * a redirect.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "gw/bpf_types.h"

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
	/* the helper wants the key on the stack or in a map value */
	peer = p->peer_cookie;
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
