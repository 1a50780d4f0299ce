/* SPDX-License-Identifier: MIT */
/*
 * Process-level wiring: listening sockets grouped by address (one socket per
 * address, its server{} blocks form an SNI group), the worker loop, and the
 * kernel feature probes shown by -V.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "gw/conn.h"

/*
 * Build the TLS contexts of every server and one listening socket per
 * distinct address. Returns 0, or -errno with *@err = malloc'd message
 * ("bind() to 127.0.0.1:443 failed (98: Address already in use)",
 * "FILE:LINE: ..." for TLS material).
 */
int listeners_open(const struct gw_config *cfg, bool bind_sockets, struct listener **out, size_t *n,
		   char **err);
void listeners_close(struct listener *l, size_t n);

int worker_init(struct worker *w, const struct gw_config *cfg);
/* Run until stopped. @reload is called on SIGHUP. Returns 0 or -errno. */
int worker_run(struct worker *w, int (*reload)(struct worker *w));
void worker_fini(struct worker *w);

struct gw_features {
	bool io_uring;
	bool io_uring_splice;
	bool ktls;    /* setsockopt(TCP_ULP, "tls") on an established socket */
	int ktls_err; /* errno of the failed probe */
	bool sockmap; /* BPF_MAP_TYPE_SOCKHASH creatable */
	int sockmap_err;
};

void probe_features(struct gw_features *f);

#endif /* GW_WORKER_H */
