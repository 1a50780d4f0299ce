// SPDX-License-Identifier: MIT
/*
 * ktlsgw entry point: command line (-c, -t, -V as nginx), start-up order
 * (config -> validation -> TLS contexts -> sockets -> pid/daemon -> loop),
 * reload on SIGHUP. No relay logic lives here.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include "gw/config.h"
#include "gw/log.h"
#include "gw/worker.h"

#define DEFAULT_CONF "/etc/ktlsgw/ktlsgw.conf"

/* Configurations still referenced by connections opened before a reload. */
struct generation {
	struct gw_config *cfg;
	struct listener *ls;
	size_t nls;
	struct generation *prev;
};

static struct generation *current;
static const char *conf_path = DEFAULT_CONF;

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
	printf("io_uring: %s%s\n", f.io_uring ? "yes" : "no",
	       f.io_uring ? (f.io_uring_splice ? " (splice)" : " (no splice)") : "");
	printf("tiers: U (OpenSSL in userspace over io_uring)%s\n",
	       f.ktls ? "; K (kTLS + io_uring splice) pending" : "");
	return 0;
}

/* Load and fully check a configuration, as -t does. */
static struct gw_config *load_checked(const char *path, char **err)
{
	struct gw_config *cfg = config_load(path, err);

	if (!cfg)
		return NULL;
	if (config_validate(cfg, err)) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static int test_config(const char *path)
{
	struct listener *ls;
	size_t nls;
	char *err = NULL;
	struct gw_config *cfg = load_checked(path, &err);

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
	struct generation *g;
	char *err = NULL;
	struct gw_config *cfg = load_checked(conf_path, &err);
	struct listener *ls;
	size_t nls;

	if (!cfg || listeners_open(cfg, false, &ls, &nls, &err)) {
		each_line(err, log_line); /* after start-up: into the error log */
		pr_err("reload of %s failed, keeping the running configuration", conf_path);
		free(err);
		config_free(cfg);
		return -EINVAL;
	}
	bool same = nls == w->nlisteners;
	for (size_t i = 0; same && i < nls; i++)
		same = ls[i].listen->addrlen == w->listeners[i].listen->addrlen &&
		       memcmp(&ls[i].listen->addr, &w->listeners[i].listen->addr,
			      ls[i].listen->addrlen) == 0;
	if (!same) {
		pr_err("reload of %s: listen addresses changed, a restart is needed; keeping "
		       "the running configuration",
		       conf_path);
		listeners_close(ls, nls);
		config_free(cfg);
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		listeners_close(ls, nls);
		config_free(cfg);
		return -ENOMEM;
	}
	/* the new groups take over the bound sockets; the old generation stays for its conns */
	for (size_t i = 0; i < nls; i++) {
		struct tls_srv **og = w->listeners[i].group;
		size_t on = w->listeners[i].ngroup;
		const struct gw_listen *ol = w->listeners[i].listen;

		w->listeners[i].group = ls[i].group;
		w->listeners[i].ngroup = ls[i].ngroup;
		w->listeners[i].listen = ls[i].listen;
		ls[i].group = og;
		ls[i].ngroup = on;
		ls[i].listen = ol;
	}
	g->cfg = current->cfg;
	g->ls = ls; /* fds are -1: not bound */
	g->nls = nls;
	g->prev = current->prev;
	current->prev = g;
	current->cfg = cfg;
	w->cfg = cfg;
	apply_logging(cfg);
	close_access_logs(w);
	open_access_logs(w, cfg);
	pr_notice("reconfigured from %s", conf_path);
	return 0;
}

int main(int argc, char **argv)
{
	bool test = false;
	struct worker w = {};
	struct generation gen = {};
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
	if (test)
		return test_config(conf_path);

	gen.cfg = load_checked(conf_path, &err);
	if (!gen.cfg) {
		print_errors(err);
		free(err);
		return 1;
	}
	current = &gen;
	if (listeners_open(gen.cfg, true, &gen.ls, &gen.nls, &err)) {
		print_errors(err);
		free(err);
		config_free(gen.cfg);
		return 1;
	}
	if (gen.cfg->worker_processes != 1)
		pr_notice("worker_processes %d: this build runs one worker process, using 1",
			  gen.cfg->worker_processes);
	if (gen.cfg->daemon && daemon(1, 0)) {
		fprintf(stderr, "ktlsgw: [emerg] daemon(): %s\n", strerror(errno));
		return 1;
	}
	if (gen.cfg->pid) {
		FILE *f = fopen(gen.cfg->pid, "w");

		if (!f) {
			fprintf(stderr, "ktlsgw: [emerg] open() \"%s\" failed (%d: %s)\n",
				gen.cfg->pid, errno, strerror(errno));
			return 1;
		}
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	apply_logging(gen.cfg);
	ret = worker_init(&w, gen.cfg);
	if (ret)
		return 1;
	w.listeners = gen.ls;
	w.nlisteners = gen.nls;
	open_access_logs(&w, gen.cfg);
	{
		struct gw_features f;

		probe_features(&f);
		for (size_t i = 0; i < gen.nls; i++)
			pr_notice("listening on %s (%s)", gen.ls[i].listen->text,
				  tls_srv_server(gen.ls[i].group[0])->mode == GW_MODE_HTTP
					  ? "http"
					  : "stream");
		pr_notice("ktlsgw %s started: %s; kTLS %s, tier U (OpenSSL over io_uring) for all "
			  "connections",
			  GW_VERSION, OpenSSL_version(OPENSSL_VERSION),
			  f.ktls ? "available (tier K not in this build)" : "not available in this kernel");
	}
	ret = worker_run(&w, reload);
	worker_fini(&w);
	close_access_logs(&w);
	listeners_close(w.listeners, w.nlisteners);
	while (gen.prev) {
		struct generation *g = gen.prev;

		gen.prev = g->prev;
		listeners_close(g->ls, g->nls);
		config_free(g->cfg);
		free(g);
	}
	if (gen.cfg->pid)
		unlink(gen.cfg->pid);
	config_free(gen.cfg);
	return ret ? 1 : 0;
}
