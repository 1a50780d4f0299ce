/* SPDX-License-Identifier: MIT */
/*
 * One logging backend for the whole process (STYLE.md 5.5). Lines look like
 *   2026/11/27 10:00:00 [error] 1234#0: conn=7 tls: handshake failed: ...
 * i.e. nginx's error_log layout, so operators' log tooling keeps working.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include "gw/common.h"

enum gw_log_level {
	GW_LOG_EMERG = 0,
	GW_LOG_ALERT,
	GW_LOG_CRIT,
	GW_LOG_ERR,
	GW_LOG_WARN,
	GW_LOG_NOTICE,
	GW_LOG_INFO,
	GW_LOG_DEBUG,
};

extern enum gw_log_level gw_log_verbosity;

/* Write one line at @lvl. Saves and restores errno. */
void gw_log_emit(enum gw_log_level lvl, const char *fmt, ...) __printf(2, 3);

/*
 * Redirect the log to @path (append); NULL or "stderr" means stderr.
 * Returns 0 or -errno.
 */
int gw_log_open(const char *path);

/* Parse an nginx level name ("debug" .. "emerg"). Returns the level or -EINVAL. */
int gw_log_level_parse(const char *name);

/* Log and clear OpenSSL's error queue, one line per entry, at @lvl, prefixed by @what. */
void gw_log_ssl_errors(enum gw_log_level lvl, const char *what);

/* Test the level first so that filtered messages do not evaluate arguments. */
#define gw_log(lvl, fmt, ...)                                                                      \
	do {                                                                                       \
		if ((lvl) <= gw_log_verbosity)                                                     \
			gw_log_emit((lvl), fmt, ##__VA_ARGS__);                                    \
	} while (0)
#define pr_emerg(fmt, ...) gw_log(GW_LOG_EMERG, fmt, ##__VA_ARGS__)
#define pr_alert(fmt, ...) gw_log(GW_LOG_ALERT, fmt, ##__VA_ARGS__)
#define pr_crit(fmt, ...) gw_log(GW_LOG_CRIT, fmt, ##__VA_ARGS__)
#define pr_err(fmt, ...) gw_log(GW_LOG_ERR, fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) gw_log(GW_LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_notice(fmt, ...) gw_log(GW_LOG_NOTICE, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) gw_log(GW_LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) gw_log(GW_LOG_DEBUG, fmt, ##__VA_ARGS__)

#endif /* GW_LOG_H */
