// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * SO_REUSEPORT steering for worker_processes N: every worker has its own
 * listening socket per address, all in one reuseport group per address. A new
 * connection goes to the worker of the CPU that received it (workers are
 * pinned, worker i on CPU i % ncpus); when that slot is empty the kernel's
 * hash decides. Attached as BPF_SK_REUSEPORT_SELECT_OR_MIGRATE: when a
 * worker's listener closes (drain, reload), the requests and accepted-but-not-
 * yet-accept()ed children queued on it are moved to a live listener instead of
 * being reset.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "gw/bpf_types.h"

/* set before load: workers per group */
const volatile __u32 nworkers = 1;

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, GW_MAX_GROUPS *GW_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} worker_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_MAX_GROUPS);
	__type(key, struct gw_rp_key);
	__type(value, __u32);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_rp_stats);
} rp_stats SEC(".maps");

SEC("sk_reuseport/migrate")
int gw_rp_select(struct sk_reuseport_md *md)
{
	struct gw_rp_key key = {};
	struct bpf_sock *sk = md->sk, *msk = md->migrating_sk;
	struct gw_rp_stats *st;
	__u32 zero = 0, *group, idx, n = nworkers, w;
	int migrating = msk != 0;

	st = bpf_map_lookup_elem(&rp_stats, &zero);
	/*
	 * A closing listener has already given its port back (src_port 0):
	 * the group of a migration is found from the migrating request or
	 * child, whose local port is the listener's.
	 */
	if (n == 0 || n > GW_MAX_WORKERS)
		goto fallback;
	if (msk) {
		__u32 port = msk->src_port, family = msk->family;

		/*
		 * Keep these loads apart from the ones below: merged, one
		 * instruction would read through two pointer types, which the
		 * verifier refuses.
		 */
		asm volatile("" : "+r"(port), "+r"(family));
		key.port = port;
		key.family = family;
	} else if (sk) {
		key.port = sk->src_port;
		key.family = sk->family;
	} else {
		goto fallback;
	}
	group = bpf_map_lookup_elem(&groups, &key);
	if (!group || *group >= GW_MAX_GROUPS)
		goto fallback;
	w = bpf_get_smp_processor_id() % n;
	/*
	 * Try the receiving CPU's worker, then the next ones: during a drain
	 * the closing worker's slot is already empty (its socket left the
	 * array when it was closed).
	 */
	for (__u32 i = 0; i < GW_MAX_WORKERS; i++) {
		if (i >= n)
			break;
		idx = *group * GW_MAX_WORKERS + (w + i) % n;
		if (bpf_sk_select_reuseport(md, &worker_socks, &idx, 0) == 0) {
			if (st) {
				if (migrating)
					st->migrated++;
				else
					st->by_cpu++;
			}
			return SK_PASS;
		}
	}
fallback:
	if (st) {
		if (migrating)
			st->migrate_fb++;
		else
			st->fallback++;
	}
	/* SK_PASS without a selection: the kernel picks by hash (and migrates by hash) */
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
