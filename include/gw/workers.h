/* SPDX-License-Identifier: MIT */
/*
 * worker_processes N (N > 1): a master process forks N workers; each opens
 * its own SO_REUSEPORT listening socket per address, pinned to CPU i % ncpus.
 * An SK_REUSEPORT program (bpf/gw_reuseport.bpf.c, loaded by the master,
 * shared through inherited fds) sends each new connection to the worker of
 * the CPU that received it, and, attached as SELECT_OR_MIGRATE, moves the
 * connections queued on a closing listener to a live one.
 *
 * SIGHUP to the master: the configuration is checked, N new workers start
 * with it and take over the steering slots, then the old workers drain
 * (their listeners close: queued connections migrate) and exit. SIGTERM /
 * SIGINT / SIGQUIT are passed to every worker; the master exits after them.
 */
#ifndef GW_WORKERS_H
#define GW_WORKERS_H

#include "gw/bpf_types.h"
#include "gw/conn.h"

/* This process's worker index, or -1 in the master / a single-process gateway. */
extern int workers_self;

/* The number of worker processes @cfg asks for (auto: online CPUs, at most GW_MAX_WORKERS). */
int workers_count(const struct gw_config *cfg);

/*
 * Run the master for @*cfg (worker_processes > 1). @load re-reads and checks
 * the configuration on SIGHUP (NULL on error, already logged).
 * Returns true in a worker: the caller serves *@cfg (the generation it was
 * forked for) and calls workers_attach() once its listeners are open.
 * Returns false in the master when it is done: exit with *@exit_code.
 */
bool workers_master(struct gw_config **cfg, struct gw_config *(*load)(void), int *exit_code);

/*
 * In a worker: put its listening sockets into the steering map (attaching the
 * program to their reuseport groups) and tell the master it is ready.
 * Returns 0 or -errno (logged; the kernel's hash then steers).
 */
int workers_attach(struct listener *ls, size_t n);

/*
 * The steering program on its own (the master uses these; tests too).
 * load: for @n workers, once per process. group: the group number of a
 * listening (port, family), allocated on first use (-ENOSPC past
 * GW_MAX_GROUPS). attach: attach the program to @fd's reuseport group and
 * make @fd worker @index's socket in it. stats: the counters summed over
 * the CPUs. All return 0 (or the group) or -errno.
 */
int workers_steer_load(int n);
int workers_steer_group(uint16_t port, int family);
int workers_steer_attach(int fd, int index);
int workers_steer_stats(struct gw_rp_stats *out);
void workers_steer_unload(void);

#endif /* GW_WORKERS_H */
