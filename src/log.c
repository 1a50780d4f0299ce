// SPDX-License-Identifier: MIT
/*
 * gw_log backend: one line per event, nginx's error_log layout
 * ("YYYY/MM/DD HH:MM:SS [level] pid#0: message"), to stderr or the
 * error_log file. OpenSSL's error queue is bridged here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include "gw/log.h"

enum gw_log_level gw_log_verbosity = GW_LOG_NOTICE;
static int log_fd = 2;

static const char *const level_names[] = {
	[GW_LOG_EMERG] = "emerg", [GW_LOG_ALERT] = "alert", [GW_LOG_CRIT] = "crit",
	[GW_LOG_ERR] = "error",	  [GW_LOG_WARN] = "warn",   [GW_LOG_NOTICE] = "notice",
	[GW_LOG_INFO] = "info",	  [GW_LOG_DEBUG] = "debug",
};

int gw_log_level_parse(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

int gw_log_open(const char *path)
{
	int fd;

	if (!path || strcmp(path, "stderr") == 0) {
		if (log_fd != 2)
			close(log_fd);
		log_fd = 2;
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1)
		return -errno;
	if (log_fd != 2)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void gw_log_emit(enum gw_log_level lvl, const char *fmt, ...)
{
	int saved = errno;
	char line[4096];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;
	size_t n;
	int r;

	localtime_r(&now, &tm);
	n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, " [%s] %d#0: ", level_names[lvl], (int)getpid());
	if (r > 0)
		n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	while (n && line[n - 1] == '\n')
		n--;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nowhere else to report it */
	}
	errno = saved;
}

struct ssl_err_ctx {
	enum gw_log_level lvl;
	const char *what;
};

static int ssl_err_cb(const char *str, size_t len, void *u)
{
	struct ssl_err_ctx *c = u;

	while (len && (str[len - 1] == '\n' || str[len - 1] == '\0'))
		len--;
	gw_log(c->lvl, "%s: %.*s", c->what, (int)len, str);
	return 1;
}

void gw_log_ssl_errors(enum gw_log_level lvl, const char *what)
{
	struct ssl_err_ctx c = {lvl, what};

	if (lvl <= gw_log_verbosity)
		ERR_print_errors_cb(ssl_err_cb, &c);
	ERR_clear_error();
}
