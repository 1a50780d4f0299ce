// SPDX-License-Identifier: MIT
/*
 * ktlsgw entry point: command line (-c, -t, -V as nginx), start-up order
 * (config -> validation -> TLS contexts -> sockets -> pid/daemon -> loop),
 * reload on SIGHUP. No relay logic lives here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include "gw/config.h"
#include "gw/ktls.h"
#include "gw/log.h"
#include "gw/passthrough.h"
#include "gw/sockmap.h"
#include "gw/tls.h"
#include "gw/worker.h"
#include "gw/workers.h"

#define DEFAULT_CONF "/etc/ktlsgw/ktlsgw.conf"

/*
 * A configuration generation: the config and the TLS contexts that the
 * connections accepted under it keep using. The current one holds a
 * reference; each connection holds one (struct gw_gen, conn.c). The current
 * generation's groups live in the worker's listeners; an older one keeps
 * them in @ls (unbound) until its last connection is gone.
 */
struct generation {
	struct gw_gen base;
	struct gw_config *cfg;
	struct listener *ls;
	size_t nls;
};

static struct generation *current;
static const char *conf_path = DEFAULT_CONF;
static char *pid_written; /* the pid file this process wrote (a reload cannot move it) */

static void generation_release(struct gw_gen *base)
{
	struct generation *g = container_of(base, struct generation, base);

	if (g != current)
		pr_notice("previous configuration released: no connection uses it any more");
	if (g->ls)
		listeners_close(g->ls, g->nls);
	config_free(g->cfg);
	free(g);
}

static struct generation *generation_new(struct gw_config *cfg)
{
	struct generation *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->base.refs = 1; /* current */
	g->base.release = generation_release;
	g->cfg = cfg;
	return g;
}

static void generation_put(struct generation *g)
{
	if (--g->base.refs == 0)
		g->base.release(&g->base);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: ktlsgw [-h] [-t] [-V] [-c FILE]\n"
		   "\n"
		   "Options:\n"
		   "  -c FILE  configuration file (nginx syntax; default " DEFAULT_CONF ")\n"
		   "  -t       test the configuration and exit\n"
		   "  -V       print the version, OpenSSL and the kernel features found\n"
		   "  -h       this help\n"
		   "Signals: HUP reload, TERM/INT drain and stop, QUIT stop now.\n");
}

static void emerg_line(int len, const char *p)
{
	fprintf(stderr, "ktlsgw: [emerg] %.*s\n", len, p);
}

static void log_line(int len, const char *p)
{
	pr_err("%.*s", len, p);
}

static void warn_line(int len, const char *p)
{
	fprintf(stderr, "ktlsgw: [warn] %.*s\n", len, p);
}

/* Hand each line of a "FILE:LINE: ...\n..." error text to @out. */
static void each_line(const char *err, void (*out)(int len, const char *p))
{
	const char *p = err ? err : "unknown error";

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);

		if (len)
			out(len, p);
		if (!nl)
			break;
		p = nl + 1;
	}
}

static void print_errors(const char *err)
{
	each_line(err, emerg_line);
}

static int print_version(void)
{
	struct gw_features f;

	probe_features(&f);
	printf("ktlsgw version %s\n", GW_VERSION);
	printf("openssl: built with %s, running with %s\n", OPENSSL_VERSION_TEXT,
	       OpenSSL_version(OPENSSL_VERSION));
	if (f.ktls)
		printf("ktls: yes\n");
	else
		printf("ktls: no (TCP_ULP \"tls\": %s)\n", strerror(f.ktls_err));
	if (f.sockmap)
		printf("sockmap: yes\n");
	else
		printf("sockmap: no (BPF_MAP_TYPE_SOCKHASH: %s)\n", strerror(f.sockmap_err));
	{
		/* the programs themselves: a sockhash can exist where loading is refused */
		struct sockmap *sm = NULL;
		int err = sockmap_open(&sm);

		if (err)
			printf("bpf: no (loading the sockmap programs: %s; passthrough routes are "
			       "relayed in userspace)\n",
			       strerror(-err));
		else
			printf("bpf: yes (sk_skb verdict on a sockhash: passthrough in the "
			       "kernel)\n");
		sockmap_close(sm);
	}
	printf("io_uring: %s%s\n", f.io_uring ? "yes" : "no",
	       f.io_uring ? (f.io_uring_splice ? " (splice)" : " (no splice)") : "");
	printf("tiers: %sU (OpenSSL in userspace over io_uring)\n",
	       f.ktls ? "K (kTLS; the kernel encrypts and decrypts), " : "");
	{
		/* jemalloc exports mallctl() when it is the malloc linked in */
		int (*ctl)(const char *, void *, size_t *, void *, size_t) =
			(int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT,
										       "mallctl");
		const char *ver = NULL;
		size_t len = sizeof(ver);

		if (ctl && ctl("version", &ver, &len, NULL, 0) == 0 && ver)
			printf("malloc: jemalloc %s\n", ver);
		else
			printf("malloc: glibc\n");
	}
	return 0;
}

/*
 * Directives that this build or this kernel cannot serve: running without
 * them would silently do something else (use userspace TLS where kTLS is
 * required), so they stop
 * the start with a clear error. -t, which checks the configuration itself,
 * passes and warns. metrics_listen only warns.
 */
static int check_unserved(const struct gw_config *cfg, bool fatal, char **err)
{
	struct buf b = {};

	if (cfg->metrics_listen)
		pr_warn("metrics_listen %s: /metrics, /healthz and /readyz are not served by this "
			"build yet",
			cfg->metrics_listen);
	for (size_t i = 0; i < cfg->nservers; i++) {
		const struct gw_server *s = &cfg->servers[i];

		if (s->ktls == GW_KTLS_ON && !ktls_kernel)
			buf_printf(&b,
				   "%s%s:%d: \"ssl_ktls on\" requires kernel TLS, and this "
				   "kernel has none (TCP_ULP \"tls\" unavailable; use auto or off)",
				   b.len ? "\n" : "", s->file, s->line);
	}
	if (!b.len)
		return 0;
	if (!fatal) {
		each_line(b.data, warn_line);
		buf_free(&b);
		return 0;
	}
	*err = buf_strdup(&b);
	buf_free(&b);
	return -EINVAL;
}

/* Load and fully check a configuration (@to_run: it is about to be served). */
static struct gw_config *load_checked(const char *path, bool to_run, char **err)
{
	struct gw_config *cfg = config_load(path, err);

	if (!cfg)
		return NULL;
	if (config_validate(cfg, err) || check_unserved(cfg, to_run, err)) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* worker_processes > 1: the master's SIGHUP check (config and TLS material). */
static struct gw_config *load_for_master(void)
{
	char *err = NULL;
	struct gw_config *cfg = load_checked(conf_path, true, &err);
	struct listener *ls;
	size_t nls;

	if (cfg && listeners_open(cfg, false, &ls, &nls, &err) == 0) {
		listeners_close(ls, nls);
		return cfg;
	}
	each_line(err, log_line);
	free(err);
	config_free(cfg);
	return NULL;
}

static int write_pid(const struct gw_config *cfg)
{
	FILE *f;

	if (!cfg->pid)
		return 0;
	f = fopen(cfg->pid, "w");
	if (!f) {
		fprintf(stderr, "ktlsgw: [emerg] open() \"%s\" failed (%d: %s)\n", cfg->pid, errno,
			strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	pid_written = strdup(cfg->pid);
	return 0;
}

static int test_config(const char *path)
{
	struct listener *ls;
	size_t nls;
	char *err = NULL;
	struct gw_config *cfg = load_checked(path, false, &err);

	if (cfg && listeners_open(cfg, false, &ls, &nls, &err) == 0) {
		listeners_close(ls, nls);
		fprintf(stderr, "ktlsgw: the configuration file %s syntax is ok\n", path);
		fprintf(stderr, "ktlsgw: configuration file %s test is successful\n", path);
		config_free(cfg);
		return 0;
	}
	print_errors(err);
	fprintf(stderr, "ktlsgw: configuration file %s test failed\n", path);
	free(err);
	config_free(cfg);
	return 1;
}

static void apply_logging(const struct gw_config *cfg)
{
	int err = gw_log_open(cfg->error_log);

	if (err)
		pr_err("error_log %s: %s, logging to stderr", cfg->error_log, strerror(-err));
	gw_log_verbosity = (enum gw_log_level)cfg->error_log_level;
}

/*
 * The open-file limit: worker_rlimit_nofile N sets it to N, as nginx does
 * (the hard limit raised to N if it is lower, never lowered: a later reload
 * may ask for more); without it the soft limit is raised to the hard one. A
 * tier K connection with its backend holds six descriptors (two sockets, two
 * splice pipes), and where systemd starts a session the soft limit is 1024
 * for the sake of select(), which nothing here uses.
 */
static void apply_nofile(const struct gw_config *cfg)
{
	struct rlimit rl, want;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (cfg->worker_rlimit_nofile) {
		want.rlim_cur = (rlim_t)cfg->worker_rlimit_nofile;
		want.rlim_max = want.rlim_cur > rl.rlim_max ? want.rlim_cur : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
		/* above the hard limit without the privilege to raise it */
		pr_alert("setrlimit(RLIMIT_NOFILE, %ld) failed (%d: %s), using the hard limit %lu",
			 cfg->worker_rlimit_nofile, errno, strerror(errno),
			 (unsigned long)rl.rlim_max);
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		pr_warn("raising the open-file limit to its hard limit %lu: %s",
			(unsigned long)rl.rlim_max, strerror(errno));
	else if (!cfg->worker_rlimit_nofile)
		pr_info("open-file limit raised to the hard limit, %lu",
			(unsigned long)rl.rlim_max);
}

static void open_access_logs(struct worker *w, const struct gw_config *cfg)
{
	for (size_t i = 0; i < cfg->nservers; i++) {
		const char *p = cfg->servers[i].access_log;
		bool have = false;

		if (!p)
			continue;
		for (size_t j = 0; j < w->nlogs; j++)
			have |= strcmp(w->logs[j].path, p) == 0;
		if (have)
			continue;
		struct access_log *nl = realloc(w->logs, (w->nlogs + 1) * sizeof(*nl));
		if (!nl)
			return;
		w->logs = nl;
		nl[w->nlogs].path = strdup(p);
		nl[w->nlogs].fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (nl[w->nlogs].fd < 0)
			pr_err("access_log \"%s\": %s", p, strerror(errno));
		w->nlogs++;
	}
}

static void close_access_logs(struct worker *w)
{
	for (size_t j = 0; j < w->nlogs; j++) {
		if (w->logs[j].fd >= 0)
			close(w->logs[j].fd);
		free(w->logs[j].path);
	}
	free(w->logs);
	w->logs = NULL;
	w->nlogs = 0;
}

/*
 * SIGHUP: load the file again; on success new connections use the new
 * certificates, CA bundle, CRL and settings while established ones keep
 * theirs. Listen addresses must stay the same (a change needs a restart).
 */
static int reload(struct worker *w)
{
	struct generation *g, *old = current;
	char *err = NULL;
	struct gw_config *cfg = load_checked(conf_path, true, &err);
	struct listener *ls;
	size_t nls, *match = NULL;
	bool same;

	/*
	 * New session ticket keys, as nginx's change with each reload: a ticket
	 * issued before a CRL update must not resume after it. Before the
	 * SSL_CTXs; in one process only (a master's workers are replaced by new
	 * ones on a reload; one that gets a SIGHUP itself has no secret left and
	 * its SSL_CTXs get OpenSSL's random keys).
	 */
	if (cfg && workers_self < 0 && tls_ticket_secret_rotate(NULL))
		pr_err("no random bytes for a new session ticket secret: random keys per server");
	if (!cfg || listeners_open(cfg, false, &ls, &nls, &err)) {
		each_line(err, log_line); /* after start-up: into the error log */
		pr_err("reload of %s failed, keeping the running configuration", conf_path);
		free(err);
		config_free(cfg);
		return -EINVAL;
	}
	/* the same set of addresses, in any order: match each new listener to a bound socket */
	same = nls == w->nlisteners && (match = calloc(nls ? nls : 1, sizeof(*match)));
	for (size_t i = 0; same && i < nls; i++) {
		same = false;
		for (size_t j = 0; j < w->nlisteners; j++) {
			const struct gw_listen *a = ls[i].listen, *b = w->listeners[j].listen;

			if (a->addrlen == b->addrlen &&
			    memcmp(&a->addr, &b->addr, a->addrlen) == 0) {
				if (a->reuseport != b->reuseport || a->backlog != b->backlog ||
				    a->ipv6only != b->ipv6only)
					pr_warn("reload: %s: reuseport, backlog and ipv6only "
						"changes "
						"take effect on restart",
						a->text);
				match[i] = j;
				same = true;
			}
		}
	}
	if (!same) {
		pr_err("reload of %s: listen addresses changed, a restart is needed; keeping "
		       "the running configuration",
		       conf_path);
		free(match);
		listeners_close(ls, nls);
		config_free(cfg);
		return -EINVAL;
	}
	passthrough_init(cfg); /* routes added by this reload: load the programs now */
	g = generation_new(cfg);
	if (!g) {
		free(match);
		listeners_close(ls, nls);
		config_free(cfg);
		return -ENOMEM;
	}
	/* the new groups take over the bound sockets; the old ones stay for their conns */
	for (size_t i = 0; i < nls; i++) {
		struct listener *live = &w->listeners[match[i]];
		struct tls_srv **og = live->group;
		size_t on = live->ngroup;
		const struct gw_listen *ol = live->listen;

		live->group = ls[i].group;
		live->ngroup = ls[i].ngroup;
		live->listen = ls[i].listen;
		live->gen = &g->base;
		ls[i].group = og;
		ls[i].ngroup = on;
		ls[i].listen = ol;
	}
	free(match);
	old->ls = ls; /* fds are -1: not bound */
	old->nls = nls;
	current = g;
	w->cfg = cfg;
	if ((cfg->pid && (!pid_written || strcmp(cfg->pid, pid_written) != 0)) ||
	    (!cfg->pid && pid_written))
		pr_warn("reload: a changed \"pid\" takes effect on restart");
	apply_logging(cfg);
	apply_nofile(cfg);
	close_access_logs(w);
	open_access_logs(w, cfg);
	generation_put(old); /* freed now if no connection uses it */
	pr_notice("reconfigured from %s", conf_path);
	return 0;
}

int main(int argc, char **argv)
{
	bool test = false;
	struct worker w = {};
	struct gw_config *cfg;
	struct listener *ls;
	size_t nls;
	sigset_t sigs;
	char *err = NULL;
	int opt, ret;

	while ((opt = getopt(argc, argv, "c:tVhq")) != -1) {
		switch (opt) {
		case 'c':
			conf_path = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'V':
			return print_version();
		case 'h':
			usage(stdout);
			return 0;
		case 'q':
			break;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ktlsgw: invalid option: \"%s\"\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	{
		struct gw_features f;

		probe_features(&f);
		ktls_kernel = f.ktls; /* tls_srv_new() asks OpenSSL for kTLS only then */
		/* KTLSGW_KTLS_RELAY=copy: tier K without splice (for comparisons) */
		ktls_splice = !(getenv("KTLSGW_KTLS_RELAY") &&
				strcmp(getenv("KTLSGW_KTLS_RELAY"), "copy") == 0);
		if (ktls_init())
			return 1;
	}
	if (test)
		return test_config(conf_path);

	/* held from the start, read by the worker's signalfd: none is lost during start-up */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGQUIT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	cfg = load_checked(conf_path, true, &err);
	if (!cfg) {
		print_errors(err);
		free(err);
		return 1;
	}
	/* before the fork: every worker derives the same session ticket keys */
	if (tls_ticket_secret_rotate(NULL)) {
		fprintf(stderr, "ktlsgw: [emerg] no random bytes for the session ticket keys\n");
		config_free(cfg);
		return 1;
	}
	if (workers_count(cfg) > 1) {
		/* worker_processes N: the master forks; a worker goes on below (workers.h) */
		int code;

		apply_logging(cfg);
		apply_nofile(cfg);
		if (cfg->daemon && daemon(1, 0)) {
			fprintf(stderr, "ktlsgw: [emerg] daemon(): %s\n", strerror(errno));
			return 1;
		}
		if (write_pid(cfg))
			return 1;
		if (!workers_master(&cfg, load_for_master, &code)) {
			tls_ticket_secret_clear();
			config_free(cfg);
			if (pid_written)
				unlink(pid_written);
			free(pid_written);
			return code;
		}
		free(pid_written); /* the master's */
		pid_written = NULL;
	}
	if (listeners_open(cfg, true, &ls, &nls, &err)) {
		print_errors(err);
		free(err);
		config_free(cfg);
		return 1;
	}
	if (workers_self >= 0)
		tls_ticket_secret_clear(); /* its SSL_CTXs have their keys; the master keeps it */
	passthrough_init(cfg); /* BPF once per process; without it the routes are copied */
	current = generation_new(cfg);
	if (!current) {
		listeners_close(ls, nls);
		config_free(cfg);
		return 1;
	}
	for (size_t i = 0; i < nls; i++)
		ls[i].gen = &current->base;
	if (workers_self < 0) {
		if (cfg->daemon && daemon(1, 0)) {
			fprintf(stderr, "ktlsgw: [emerg] daemon(): %s\n", strerror(errno));
			return 1;
		}
		if (write_pid(cfg))
			return 1;
	}
	apply_logging(cfg);
	apply_nofile(cfg);
	ret = worker_init(&w, cfg);
	if (ret)
		return 1;
	w.listeners = ls;
	w.nlisteners = nls;
	if (workers_self >= 0) {
		workers_attach(ls, nls); /* steering slots; tells the master it is ready */
		pr_notice("worker process %d (worker %d)", (int)getpid(), workers_self);
	}
	open_access_logs(&w, cfg);
	{
		for (size_t i = 0; i < nls; i++)
			pr_notice("listening on %s (%s)", ls[i].listen->text,
				  tls_srv_server(ls[i].group[0])->mode == GW_MODE_HTTP ? "http"
										       : "stream");
		pr_notice("ktlsgw %s started: %s; %s", GW_VERSION, OpenSSL_version(OPENSSL_VERSION),
			  ktls_kernel
				  ? "kernel TLS available: tier K where ssl_ktls allows, tier U "
				    "otherwise"
				  : "no kernel TLS in this kernel: tier U (OpenSSL over io_uring) "
				    "for "
				    "all connections");
	}
	ret = worker_run(&w, reload);
	worker_fini(&w); /* every connection closed: older generations are released */
	close_access_logs(&w);
	listeners_close(w.listeners, w.nlisteners);
	current->ls = NULL; /* its groups were the worker's listeners' */
	generation_put(current);
	passthrough_fini();
	tls_ticket_secret_clear();
	if (pid_written)
		unlink(pid_written);
	free(pid_written);
	return ret ? 1 : 0;
}
