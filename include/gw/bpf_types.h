/* SPDX-License-Identifier: MIT */
/*
 * ABI shared by the programs in bpf/ and by src/sockmap.c, src/workers.c.
 * Types-only: nothing but <linux/types.h>; every size is asserted in
 * src/sockmap.c. Byte order is host order unless a field says otherwise.
 */
#ifndef GW_BPF_TYPES_H
#define GW_BPF_TYPES_H

#include <linux/types.h>

/*
 * sock_hash (BPF_MAP_TYPE_SOCKHASH): key = the socket's cookie
 * (SO_COOKIE / bpf_get_socket_cookie()), value = the socket fd on update.
 * A socket leaves the map by itself when it is closed.
 */
#define GW_PT_MAX_SOCKS 65536

/*
 * peers (BPF_MAP_TYPE_HASH): key = a socket's cookie, value = where its bytes
 * go and how many went. Userspace inserts both halves of a pair before the
 * sockets, and deletes them after closing the sockets.
 */
struct gw_pt_peer {
	__u64 peer_cookie; /* sock_hash key of the socket that receives our bytes */
	__u64 bytes;	   /* bytes received on this socket and redirected to the peer */
	__u64 skbs;	   /* verdicts that redirected */
	__u64 drops;	   /* verdicts that dropped (no peer: the pair is being torn down) */
};

/* stats (BPF_MAP_TYPE_PERCPU_ARRAY, one slot): process-wide totals. */
struct gw_pt_stats {
	__u64 bytes;	 /* redirected */
	__u64 skbs;	 /* redirected */
	__u64 no_peer;	 /* a socket of sock_hash without a peers entry: dropped */
	__u64 redir_err; /* bpf_sk_redirect_hash() failed (peer not in sock_hash): dropped */
};

/*
 * SO_REUSEPORT steering (bpf/gw_reuseport.bpf.c).
 * worker_socks (BPF_MAP_TYPE_REUSEPORT_SOCKARRAY): index = group * GW_MAX_WORKERS + worker.
 * groups (BPF_MAP_TYPE_HASH): key = struct gw_rp_key of a listening address, value = group.
 */
#define GW_MAX_WORKERS 64
#define GW_MAX_GROUPS 16

struct gw_rp_key {
	__u32 port;   /* local port, host byte order (bpf_sock.src_port) */
	__u32 family; /* AF_INET or AF_INET6 */
};

/* rp_stats (BPF_MAP_TYPE_PERCPU_ARRAY, one slot). */
struct gw_rp_stats {
	__u64 by_cpu;	  /* steered to the worker of the receiving CPU */
	__u64 fallback;	  /* left to the kernel's hash (no group / empty slot) */
	__u64 migrated;	  /* a request of a closing listener moved to a live one */
	__u64 migrate_fb; /* migration left to the kernel's hash */
};

#endif /* GW_BPF_TYPES_H */
