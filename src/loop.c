// SPDX-License-Identifier: MIT
/*
 * The worker: one io_uring that carries every accept, poll, recv, send,
 * connect and shutdown, a 250 ms tick for deadlines, and a signalfd read for
 * SIGTERM/SIGINT (drain), SIGQUIT (stop now) and SIGHUP (reload request).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include "gw/conn.h"
#include "gw/log.h"
#include "gw/passthrough.h"
#include "gw/worker.h"

#define GW_RING_ENTRIES 1024
#define GW_DRAIN_MS 30000

uint64_t gw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct io_uring_sqe *worker_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&w->ring)))
		io_uring_submit(&w->ring);
	return sqe;
}

_Static_assert(sizeof(struct listener) % 16 == 0 && _Alignof(struct listener) >= 16,
	       "listener pointers (array elements) carry the op kind in their low bits");

static void arm_accept(struct listener *l)
{
	struct io_uring_sqe *sqe;

	if (l->armed || l->w->draining)
		return;
	sqe = worker_sqe(l->w);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | OP_ACCEPT);
	l->armed = true;
}

static void arm_tick(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	/* deadlines are checked 4 times a second: a 1 s timeout fires within 1.25 s */
	w->tick.tv_sec = 0;
	w->tick.tv_nsec = 250 * 1000 * 1000;
	io_uring_prep_timeout(sqe, &w->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, OP_TICK);
}

static void arm_signal(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	/*
	 * Poll, then read() here: an io_uring read of a signalfd is punted to an
	 * io-wq thread, which reads its own (empty) signal queue and blocks.
	 */
	io_uring_prep_poll_add(sqe, w->sigfd, POLLIN);
	io_uring_sqe_set_data64(sqe, OP_SIGNAL);
}

static void start_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	w->drain_deadline_ms = gw_now_ms() + GW_DRAIN_MS;
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		struct io_uring_sqe *sqe;

		if (l->fd < 0)
			continue;
		if (!l->armed) {
			/* paused (EMFILE): nothing in flight, stop listening now */
			close(l->fd);
			l->fd = -1;
			continue;
		}
		/* the listener is closed when the cancelled accept completes */
		sqe = worker_sqe(w);
		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, OP_IGNORE);
	}
	pr_notice("draining %lu connection(s), no new connections accepted", w->nconns);
}

static void handle_signal(struct worker *w, const struct signalfd_siginfo *si)
{
	switch (si->ssi_signo) {
	case SIGTERM:
	case SIGINT:
		pr_notice("signal %u (%s) received, draining", si->ssi_signo,
			  strsignal((int)si->ssi_signo));
		start_drain(w);
		break;
	case SIGQUIT:
		pr_notice("signal %u (SIGQUIT) received, stopping now", si->ssi_signo);
		w->stop = true;
		break;
	case SIGHUP:
		pr_notice("signal 1 (SIGHUP) received, reconfiguring");
		w->reload = true;
		break;
	default:
		break;
	}
}

static void on_signal(struct worker *w, int res)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		handle_signal(w, &si);
	arm_signal(w);
}

static void on_accept(struct listener *l, int res, unsigned int flags)
{
	if (!(flags & IORING_CQE_F_MORE))
		l->armed = false;
	if (res >= 0) {
		if (l->w->draining)
			close(res);
		else
			passthrough_accepted(l, res); /* conn_accepted() unless routes exist */
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
		/* as nginx: stop accepting for a while instead of spinning on the error */
		pr_alert("accept() on %s failed (%d: %s), pausing accepts", l->listen->text, -res,
			 strerror(-res));
		l->paused = true;
	} else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
		pr_err("accept() on %s failed (%d: %s)", l->listen->text, -res, strerror(-res));
	}
	if (l->w->draining) {
		if (!l->armed && l->fd >= 0) {
			/* accept over: stop listening so new clients go elsewhere */
			close(l->fd);
			l->fd = -1;
		}
		return;
	}
	if (!l->armed && !l->paused)
		arm_accept(l);
}

int worker_init(struct worker *w, const struct gw_config *cfg)
{
	sigset_t set;
	int err;

	w->cfg = cfg;
	/*
	 * COOP_TASKRUN: completions are run when the worker enters the kernel
	 * anyway, not by interrupting it (an IPI in a VM): the profile of small
	 * keep-alive requests showed thousands of context switches a second
	 * without it. Kernels before 5.19 refuse the flag: plain setup then.
	 */
	err = io_uring_queue_init(GW_RING_ENTRIES, &w->ring,
				  IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	if (err == -EINVAL)
		err = io_uring_queue_init(GW_RING_ENTRIES, &w->ring, 0);
	if (err) {
		pr_emerg("io_uring_queue_init: %s", strerror(-err));
		return err;
	}
	worker_rx_ring_init(w);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	w->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w->sigfd < 0) {
		err = -errno;
		pr_emerg("signalfd: %s", strerror(errno));
		io_uring_queue_exit(&w->ring);
		worker_rx_ring_exit(w);
		return err;
	}
	return 0;
}

/* Handle every completion that is ready. */
static void dispatch(struct worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned int head, n = 0;

	io_uring_for_each_cqe(&w->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		enum op_kind kind = (enum op_kind)(ud & OP_MASK);
		void *p = (void *)(uintptr_t)(ud & ~OP_MASK);

		n++;
		switch (kind) {
		case OP_IGNORE:
			break;
		case OP_ACCEPT:
			on_accept(p, cqe->res, cqe->flags);
			break;
		case OP_PASSTHROUGH:
			passthrough_complete(p, cqe->res, cqe->flags);
			break;
		case OP_TICK:
			conn_sweep(w, gw_now_ms());
			passthrough_sweep(w, gw_now_ms());
			for (size_t i = 0; i < w->nlisteners; i++) {
				if (w->listeners[i].paused && !w->draining) {
					w->listeners[i].paused = false;
					arm_accept(&w->listeners[i]);
				}
			}
			if (gw_now_ms() >= w->next_expire_ms) {
				time_t now = time(NULL);

				w->next_expire_ms = gw_now_ms() + GW_SESS_EXPIRE_S * 1000;
				for (size_t i = 0; i < w->nlisteners; i++)
					for (size_t j = 0; j < w->listeners[i].ngroup; j++)
						tls_srv_expire_sessions(w->listeners[i].group[j],
									now);
			}
			if (w->draining && gw_now_ms() > w->drain_deadline_ms) {
				pr_warn("drain timeout: closing %lu connection(s)", w->nconns);
				w->stop = true;
			}
			arm_tick(w);
			break;
		case OP_SIGNAL:
			on_signal(w, cqe->res);
			break;
		default:
			conn_complete(p, kind, cqe->res, cqe->flags);
			break;
		}
	}
	io_uring_cq_advance(&w->ring, n);
}

/*
 * Close every connection, and wait (2 s at most) for their cancelled ops to
 * complete: the kernel must not write into a receive buffer after it is freed.
 */
void worker_fini(struct worker *w)
{
	struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
	uint64_t until = gw_now_ms() + 2000;

	w->draining = true;
	conn_abort_all(w, "shutting down");
	passthrough_abort_all(w, "shutting down");
	while (w->nconns && gw_now_ms() < until) {
		struct io_uring_cqe *cqe;

		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		dispatch(w);
	}
	io_uring_queue_exit(&w->ring); /* cancels and waits for anything left */
	worker_rx_ring_exit(w);
	conn_free_all(w);
	worker_spare_free(w);
	passthrough_free_all(w);
	if (w->sigfd >= 0)
		close(w->sigfd);
}

int worker_run(struct worker *w, int (*reload)(struct worker *w))
{
	for (size_t i = 0; i < w->nlisteners; i++) {
		w->listeners[i].w = w;
		arm_accept(&w->listeners[i]);
	}
	arm_tick(w);
	arm_signal(w);
	while (!w->stop) {
		int err = io_uring_submit_and_wait(&w->ring, 1);

		if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY) {
			pr_emerg("io_uring_submit_and_wait: %s", strerror(-err));
			return err;
		}
		dispatch(w);
		if (w->reload) {
			w->reload = false;
			if (reload)
				reload(w);
		}
		if (w->draining && w->nconns == 0)
			w->stop = true;
	}
	/* the kernel TLS counters (the metrics endpoint will export them) */
	pr_notice("exiting: %lu connection(s) on tier K, %lu tier U fallback(s), "
		  "%lu closed on a client KeyUpdate, %lu receive(s) retried for a ring buffer, "
		  "%lu client chain(s) verified from the cache, %lu kept backend connection(s) "
		  "reused, %lu request(s) sent again",
		  w->stats.tier_k, w->stats.tier_u_fallback, w->stats.ktls_keyupdate, w->rx_nobufs,
		  tls_verify_cache_hits(), w->stats.backend_reused, w->stats.backend_retried);
	return 0;
}
