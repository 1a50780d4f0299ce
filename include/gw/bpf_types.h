/* SPDX-License-Identifier: MIT */
/*
 * ABI shared by the programs in bpf/ and by src/sockmap.c, src/workers.c.
 * Types-only: nothing but <linux/types.h>; every size is asserted in
 * src/sockmap.c. Byte order is host order unless a field says otherwise.
 */
#ifndef GW_BPF_TYPES_H
#define GW_BPF_TYPES_H

/* bpf/ programs include vmlinux.h (CO-RE), which already has these types */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

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
	__u32 peer_seq0;   /* the peer's TCP write_seq at our first redirect (BPF sets it) */
	__u32 flags;	   /* GW_PT_F_*, written by the BPF side only */
};

/* gw_pt_peer.flags */
#define GW_PT_F_SEQ0 1U	  /* peer_seq0 is set */
#define GW_PT_F_BEHIND 2U /* the peer fell more than queue_max behind (event sent) */

/*
 * The redirect queue in front of a peer's TCP has no limit in the kernel: a
 * sender faster than its receiver (a backend on the LAN, a slow client) parks
 * its bytes in kernel memory that no socket limit covers. The verdict
 * measures how far the peer's TCP is behind (its write_seq, read with CO-RE)
 * and, past queue_max, reports the socket in the events ring buffer; the
 * gateway then resets the connection with a logged reason. Pausing the
 * direction instead (taking the sender out of sock_hash, or keeping its
 * bytes on it with SK_PASS) was tried: on Linux 6.18 both delivered some
 * bytes twice under memory pressure, so it is not done. KTLSGW_PT_QUEUE_MAX
 * (bytes) overrides the default.
 */
#define GW_PT_QUEUE_MAX_DEFAULT (256U << 20)

/* stats (BPF_MAP_TYPE_PERCPU_ARRAY, one slot): process-wide totals. */
struct gw_pt_stats {
	__u64 bytes;	 /* redirected */
	__u64 skbs;	 /* redirected */
	__u64 no_peer;	 /* a socket of sock_hash without a peers entry: dropped */
	__u64 redir_err; /* bpf_sk_redirect_hash() failed (peer not in sock_hash): dropped */
	__u64 behind;	 /* peers that fell queue_max behind (events) */
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
