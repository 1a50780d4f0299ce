// SPDX-License-Identifier: MIT
/*
 * The worker processes of worker_processes N (include/gw/workers.h): the
 * master (fork, signals, reload by replacing the workers, respawn), the
 * SK_REUSEPORT steering program it loads once for all of them, and the
 * worker side (pinning, steering slots, readiness).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/crypto.h>
#include "gw/bpf_types.h"
#include "gw/log.h"
#include "gw/sockmap.h"
#include "gw/tls.h"
#include "gw/workers.h"
#include "gw_reuseport.skel.h"

int workers_self = -1;

struct wproc {
	pid_t pid;
	int index;
	unsigned int gen; /* the master's generation it serves */
	bool ready;
};

static struct gw_reuseport_bpf *rp_skel; /* NULL: the kernel's hash steers */
static int ready_pipe[2] = {-1, -1};	 /* workers write their index when ready */
static int nworkers;

int workers_count(const struct gw_config *cfg)
{
	long n = cfg->worker_processes;

	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return (int)MIN(n, (long)GW_MAX_WORKERS);
}

/* Every listen gets SO_REUSEPORT: each worker binds its own socket. */
static void force_reuseport(struct gw_config *cfg)
{
	for (size_t i = 0; i < cfg->nservers; i++)
		for (size_t j = 0; j < cfg->servers[i].nlistens; j++)
			cfg->servers[i].listens[j].reuseport = true;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

int workers_steer_group(uint16_t port, int family)
{
	int fd = bpf_map__fd(rp_skel->maps.groups);
	struct gw_rp_key key = {.port = port, .family = (uint32_t)family};
	uint32_t g = 0, k, next = 0;
	void *prev = NULL;
	struct gw_rp_key cur, nk;

	if (bpf_map_lookup_elem(fd, &key, &g) == 0)
		return (int)g;
	/* the next free group number */
	while (bpf_map_get_next_key(fd, prev, &nk) == 0) {
		if (bpf_map_lookup_elem(fd, &nk, &k) == 0 && k + 1 > next)
			next = k + 1;
		cur = nk;
		prev = &cur;
	}
	if (next >= GW_MAX_GROUPS)
		return -ENOSPC;
	if (bpf_map_update_elem(fd, &key, &next, BPF_NOEXIST))
		return -errno;
	return (int)next;
}

/* groups: one number per (port, family) of @cfg's listens. */
static int fill_groups(const struct gw_config *cfg)
{
	for (size_t i = 0; i < cfg->nservers; i++) {
		for (size_t j = 0; j < cfg->servers[i].nlistens; j++) {
			const struct gw_listen *l = &cfg->servers[i].listens[j];
			int g = workers_steer_group(addr_port(&l->addr), l->addr.ss_family);

			if (g == -ENOSPC) {
				pr_warn("workers: more than %d listening ports: the kernel's hash "
					"steers the others",
					GW_MAX_GROUPS);
				return 0;
			}
			if (g < 0)
				return g;
		}
	}
	return 0;
}

int workers_steer_load(int n)
{
	int err;

	if (rp_skel)
		return 0;
	sockmap_log_libbpf();
	rp_skel = gw_reuseport_bpf__open();
	if (!rp_skel)
		return -errno;
	rp_skel->rodata->nworkers = (uint32_t)n;
	err = gw_reuseport_bpf__load(rp_skel);
	if (err) {
		gw_reuseport_bpf__destroy(rp_skel);
		rp_skel = NULL;
	}
	return err;
}

void workers_steer_unload(void)
{
	gw_reuseport_bpf__destroy(rp_skel);
	rp_skel = NULL;
}

int workers_steer_attach(int fd, int index)
{
	int prog = bpf_program__fd(rp_skel->progs.gw_rp_select);
	int socks = bpf_map__fd(rp_skel->maps.worker_socks);
	int groups = bpf_map__fd(rp_skel->maps.groups);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct gw_rp_key key = {};
	uint64_t v = (uint64_t)fd;
	uint32_t g, idx;

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return -errno;
	key.port = addr_port(&ss);
	key.family = ss.ss_family;
	if (bpf_map_lookup_elem(groups, &key, &g))
		return -ENOENT;
	/* the program belongs to the reuseport group: any member attaches it */
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)))
		return -errno;
	/* a new generation's worker takes over the slot of the one it replaces */
	idx = g * GW_MAX_WORKERS + (uint32_t)index;
	if (bpf_map_update_elem(socks, &idx, &v, BPF_ANY))
		return -errno;
	return 0;
}

int workers_steer_stats(struct gw_rp_stats *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct gw_rp_stats *v;
	uint32_t zero = 0;
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (!rp_skel || ncpu <= 0)
		return -ENOENT;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(rp_skel->maps.rp_stats), &zero, v) == 0) {
		for (int i = 0; i < ncpu; i++) {
			out->by_cpu += v[i].by_cpu;
			out->fallback += v[i].fallback;
			out->migrated += v[i].migrated;
			out->migrate_fb += v[i].migrate_fb;
		}
	} else {
		err = -errno;
	}
	free(v);
	return err;
}

static int rp_load(const struct gw_config *cfg, int n)
{
	int err = workers_steer_load(n);

	if (!err)
		err = fill_groups(cfg);
	if (err)
		workers_steer_unload();
	return err;
}

int workers_attach(struct listener *ls, size_t n)
{
	int err = 0;

	for (size_t i = 0; rp_skel && i < n; i++) {
		int e = workers_steer_attach(ls[i].fd, workers_self);

		if (e) {
			err = e;
			pr_err("workers: steering for %s: %s", ls[i].listen->text, strerror(-e));
		}
	}
	if (ready_pipe[1] >= 0) {
		unsigned char b = (unsigned char)workers_self;

		if (write(ready_pipe[1], &b, 1) != 1)
			err = err ? err : -errno;
		close(ready_pipe[1]);
		ready_pipe[1] = -1;
	}
	return err;
}

static pid_t spawn(int index, unsigned int gen)
{
	pid_t pid = fork();

	if (pid != 0) {
		if (pid < 0)
			pr_alert("fork() failed (%d: %s)", errno, strerror(errno));
		return pid;
	}
	/* the worker */
	workers_self = index;
	prctl(PR_SET_PDEATHSIG, SIGQUIT); /* the master gone: stop now */
	close(ready_pipe[0]);
	ready_pipe[0] = -1;
	{
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cpu_set_t set;

		/* worker i on CPU i: the CPU that takes a SYN picks the worker running there */
		if (ncpu > 0) {
			CPU_ZERO(&set);
			CPU_SET((size_t)(index % ncpu), &set);
			sched_setaffinity(0, sizeof(set), &set);
		}
	}
	(void)gen;
	return 0;
}

static void rp_log_stats(void)
{
	struct gw_rp_stats sum;

	if (workers_steer_stats(&sum))
		return;
	pr_notice("workers: connections steered to the receiving CPU's worker %llu, by the "
		  "kernel's hash %llu; migrated from a closing listener %llu (by hash %llu)",
		  (unsigned long long)sum.by_cpu, (unsigned long long)sum.fallback,
		  (unsigned long long)sum.migrated, (unsigned long long)sum.migrate_fb);
}

static void signal_gen(struct wproc *w, size_t nw, unsigned int gen, int sig)
{
	for (size_t i = 0; i < nw; i++)
		if (w[i].pid > 0 && w[i].gen == gen)
			kill(w[i].pid, sig);
}

static size_t alive(const struct wproc *w, size_t nw)
{
	size_t n = 0;

	for (size_t i = 0; i < nw; i++)
		n += w[i].pid > 0;
	return n;
}

/* Read readiness bytes until the workers of @gen are all ready or @ms passed. */
static bool wait_ready(struct wproc *w, size_t nw, unsigned int gen, long ms)
{
	struct timespec ts;
	uint64_t until = gw_now_ms() + (uint64_t)ms;

	for (;;) {
		size_t ready = 0, total = 0;
		unsigned char b;

		for (size_t i = 0; i < nw; i++) {
			if (w[i].gen != gen)
				continue;
			total++;
			ready += w[i].ready;
		}
		if (ready == total)
			return true;
		while (read(ready_pipe[0], &b, 1) == 1) {
			for (size_t i = 0; i < nw; i++)
				if (w[i].gen == gen && w[i].index == b && w[i].pid > 0)
					w[i].ready = true;
		}
		/* a worker of @gen that died before it was ready: the start failed */
		for (size_t i = 0; i < nw; i++) {
			int st;

			if (w[i].gen == gen && w[i].pid > 0 && !w[i].ready &&
			    waitpid(w[i].pid, &st, WNOHANG) == w[i].pid) {
				w[i].pid = 0;
				return false;
			}
		}
		if (gw_now_ms() > until)
			return false;
		ts.tv_sec = 0;
		ts.tv_nsec = 10 * 1000 * 1000;
		nanosleep(&ts, NULL);
	}
}

bool workers_master(struct gw_config **cfgp, struct gw_config *(*load)(void), int *exit_code)
{
	struct tls_ticket_secret old_secret = {0}; /* the running workers' during a reload */
	struct gw_config *cfg = *cfgp;
	struct wproc *w;
	size_t nw = 0, cap;
	unsigned int gen = 1;
	sigset_t set;
	bool stopping = false;
	int err;

	nworkers = workers_count(cfg);
	force_reuseport(cfg);
	cap = (size_t)nworkers * 4;
	w = calloc(cap, sizeof(*w));
	if (!w || pipe2(ready_pipe, O_CLOEXEC | O_NONBLOCK)) {
		*exit_code = 1;
		free(w);
		return false;
	}
	err = rp_load(cfg, nworkers);
	if (err)
		pr_warn("workers: the SK_REUSEPORT steering program did not load (%d: %s): the "
			"kernel's hash picks the worker, and a closing listener's queue migrates "
			"only with net.ipv4.tcp_migrate_req = 1",
			-err, strerror(-err));
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);

	for (int i = 0; i < nworkers; i++) {
		pid_t pid = spawn(i, gen);

		if (pid == 0)
			goto child;
		w[nw++] = (struct wproc){.pid = pid, .index = i, .gen = gen};
	}
	if (!wait_ready(w, nw, gen, 15000)) {
		pr_emerg("workers: a worker failed to start; stopping");
		signal_gen(w, nw, gen, SIGQUIT);
		while (wait(NULL) > 0)
			;
		*exit_code = 1;
		goto out;
	}
	pr_notice("master process %d: %d worker processes, steering %s", (int)getpid(), nworkers,
		  rp_skel ? "by the receiving CPU (SK_REUSEPORT eBPF, migration on close)"
			  : "by the kernel's hash");

	while (alive(w, nw) > 0) {
		siginfo_t si;
		struct timespec ts = {.tv_sec = 1};
		int sig = sigtimedwait(&set, &si, &ts);
		pid_t pid;
		int st;

		/* reap, respawn a current worker that died by itself */
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (size_t i = 0; i < nw; i++) {
				if (w[i].pid != pid)
					continue;
				w[i].pid = 0;
				if (w[i].gen == gen && !stopping &&
				    (WIFSIGNALED(st) || WEXITSTATUS(st) != 0)) {
					pid_t np;

					pr_alert("worker process %d exited (status %d), respawning",
						 (int)pid, st);
					np = spawn(w[i].index, gen);
					if (np == 0)
						goto child;
					if (np > 0)
						w[i] = (struct wproc){
							.pid = np, .index = w[i].index, .gen = gen};
				}
			}
		}
		if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
			pr_notice("signal %d (%s) received, stopping the workers", sig,
				  strsignal(sig));
			stopping = true;
			for (unsigned int g = 1; g <= gen; g++)
				signal_gen(w, nw, g, sig);
		} else if (sig == SIGHUP && !stopping) {
			struct gw_config *ncfg = load();
			unsigned int ngen = gen + 1;
			size_t first = nw;

			if (!ncfg) {
				pr_err("reload failed, keeping the running workers");
				continue;
			}
			force_reuseport(ncfg);
			/* compact: forget reaped entries so the table does not grow */
			{
				size_t k = 0;

				for (size_t i = 0; i < nw; i++)
					if (w[i].pid > 0)
						w[k++] = w[i];
				nw = k;
				first = nw;
			}
			if (nw + (size_t)nworkers > cap) {
				pr_err("reload: too many draining workers, try again later");
				config_free(ncfg);
				continue;
			}
			if (rp_skel)
				fill_groups(ncfg);
			/*
			 * New session ticket keys for the new workers, as nginx's
			 * change with each reload; the old ones come back if they
			 * fail, for the running workers' respawns.
			 */
			if (tls_ticket_secret_rotate(&old_secret))
				pr_err("reload: no random bytes for a new session ticket secret: "
				       "random keys per worker");
			for (int i = 0; i < nworkers; i++) {
				pid_t np = spawn(i, ngen);

				if (np == 0) {
					*cfgp = ncfg;
					goto child_keep;
				}
				w[nw++] = (struct wproc){.pid = np, .index = i, .gen = ngen};
			}
			if (!wait_ready(w, nw, ngen, 15000)) {
				pr_err("reload: new workers failed to start, keeping the old ones");
				for (size_t i = first; i < nw; i++)
					if (w[i].pid > 0)
						kill(w[i].pid, SIGQUIT);
				tls_ticket_secret_restore(&old_secret);
				config_free(ncfg);
				continue;
			}
			OPENSSL_cleanse(&old_secret, sizeof(old_secret));
			/* the new workers hold the steering slots: the old ones drain */
			signal_gen(w, nw, gen, SIGTERM);
			config_free(cfg);
			cfg = *cfgp = ncfg;
			gen = ngen;
			pr_notice("reconfigured: %d new worker processes, the previous ones drain",
				  nworkers);
		}
	}
	rp_log_stats();
	*exit_code = 0;
out:
	free(w);
	workers_steer_unload();
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	return false;

child:
	/* the worker serves the configuration it was forked with */
	*cfgp = cfg;
	free(w);
	*exit_code = 0;
	return true;
child_keep:
	/* forked for a reload: serve the new configuration only */
	OPENSSL_cleanse(&old_secret, sizeof(old_secret));
	config_free(cfg);
	free(w);
	*exit_code = 0;
	return true;
}
