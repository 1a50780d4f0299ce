/* SPDX-License-Identifier: MIT */
/*
 * The passthrough sockmap (bpf/gw_sockmap.bpf.c): skeleton load, the stream
 * verdict attached to sock_hash, and the pairing of two sockets whose bytes
 * the kernel then moves to each other.
 */
#ifndef GW_SOCKMAP_H
#define GW_SOCKMAP_H

#include <stddef.h>
#include <stdint.h>
#include "gw/bpf_types.h"

struct sockmap;

/*
 * Open, load and attach the programs. Returns 0 and *@out, or -errno (EPERM
 * without CAP_BPF/CAP_NET_ADMIN); the libbpf messages are in the log.
 * KTLSGW_PT_QUEUE_MAX=bytes overrides GW_PT_QUEUE_MAX_DEFAULT.
 */
int sockmap_open(struct sockmap **out);
/* Detach and free; accepts NULL. Sockets still in the map stay open (the caller's). */
void sockmap_close(struct sockmap *sm);

/* SO_COOKIE of @fd, or 0 on error (errno set). */
uint64_t sockmap_cookie(int fd);

/*
 * Pair @a and @b: the peers entries first, then both sockets into sock_hash
 * (@b, then @a: the first bytes usually come from @a). From then on every
 * byte received on one leaves on the other. Returns 0 or -errno; on error
 * nothing stays in the maps.
 */
int sockmap_pair(struct sockmap *sm, int a, uint64_t ca, int b, uint64_t cb);

/* Remove both sockets and their peers entries (missing ones are fine). */
void sockmap_unpair(struct sockmap *sm, uint64_t ca, uint64_t cb);

/* The limit in force (GW_PT_QUEUE_MAX_DEFAULT or KTLSGW_PT_QUEUE_MAX). */
uint32_t sockmap_queue_max(const struct sockmap *sm);

/*
 * Events: a socket whose peer fell queue_max behind (bpf_types.h). Returns an
 * fd that polls readable when events wait (the first call sets @on_behind),
 * or -errno. sockmap_events_consume() calls @on_behind with each cookie.
 */
int sockmap_events(struct sockmap *sm, void (*on_behind)(void *ctx, uint64_t cookie), void *ctx);
int sockmap_events_consume(struct sockmap *sm);

/* Bytes received on the socket @cookie and redirected to its peer. -ENOENT if unknown. */
int sockmap_bytes(struct sockmap *sm, uint64_t cookie, uint64_t *bytes);

/* Entries in sock_hash and peers now (tests, shutdown log). */
int sockmap_count(struct sockmap *sm, size_t *socks, size_t *peers);

/* Process-wide totals summed over the CPUs. */
int sockmap_stats(struct sockmap *sm, struct gw_pt_stats *out);

/* Log libbpf's messages through gw_log (once per process). */
void sockmap_log_libbpf(void);

#endif /* GW_SOCKMAP_H */
