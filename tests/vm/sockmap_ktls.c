// SPDX-License-Identifier: MIT
/*
 * Why the gateway never puts a kTLS socket into its sockmap (DESIGN.md): the
 * kernel refuses the combination in both orders. Run in the kTLS VM
 * (scripts/vmtest.sh): on a kernel without TLS every check is skipped.
 *
 *   order A: socket in a SOCKHASH first, then TCP_ULP "tls" + TLS_TX / TLS_RX
 *            -> expected: TLS_TX and TLS_RX fail with EINVAL
 *   order B: TCP_ULP "tls" + TLS_TX first, then the SOCKHASH insert
 *            -> expected: the insert fails with EINVAL
 *
 * A check FAILS when the kernel accepts the combination: that is the day to
 * revisit the design (sockmap on the kTLS socket), not a gateway bug.
 * Output: one line per check, then "N passed, N failed, N skipped".
 * Raw bpf(2) only (no libbpf, no programs: the refusal is in the map update
 * and in the TLS setsockopt). Build: cc -O2 -o sockmap-ktls tests/vm/sockmap_ktls.c
 */
#include <errno.h>
#include <stdarg.h>
#include <linux/bpf.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static int npass, nfail, nskip;

static void __attribute__((format(printf, 3, 4)))
result(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok > 0)
		npass++;
	else if (ok == 0)
		nfail++;
	else
		nskip++;
	printf("%-5s %s: ", ok > 0 ? "ok" : ok == 0 ? "FAIL" : "SKIP", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static int sockhash_new(void)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_SOCKHASH;
	a.key_size = 4;
	a.value_size = 4;
	a.max_entries = 4;
	return (int)syscall(__NR_bpf, BPF_MAP_CREATE, &a, sizeof(a));
}

/* Insert @fd under key 1. Returns 0 or -errno. */
static int sockhash_insert(int map, int fd)
{
	union bpf_attr a;
	unsigned int key = 1, val = (unsigned int)fd;

	memset(&a, 0, sizeof(a));
	a.map_fd = (unsigned int)map;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)&val;
	a.flags = BPF_ANY;
	return syscall(__NR_bpf, BPF_MAP_UPDATE_ELEM, &a, sizeof(a)) ? -errno : 0;
}

static int tcp_pair(int *c, int *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -errno;
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	*s = accept(l, NULL, NULL);
	close(l);
	return *s < 0 ? -errno : 0;
}

/* TLS 1.2 AES-128-GCM with a fixed test key (no traffic is exchanged). */
static int set_tls(int fd, int dir)
{
	struct tls12_crypto_info_aes_gcm_128 ci;

	memset(&ci, 0, sizeof(ci));
	ci.info.version = TLS_1_2_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	memset(ci.key, 0x11, sizeof(ci.key));
	memset(ci.iv, 0x22, sizeof(ci.iv));
	memset(ci.salt, 0x33, sizeof(ci.salt));
	return setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) ? -errno : 0;
}

static int set_ulp(int fd)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) ? -errno : 0;
}

int main(void)
{
	int c = -1, s = -1, map, err;

	map = sockhash_new();
	if (map < 0) {
		result("sockhash", -1, "cannot create a SOCKHASH (%d: %s)", errno, strerror(errno));
		goto out;
	}
	/* the kernel must have TLS at all */
	if (tcp_pair(&c, &s) || set_ulp(s)) {
		result("ktls", -1, "no kernel TLS here (%d: %s)", errno, strerror(errno));
		goto out;
	}
	close(c);
	close(s);

	/* order A: in the map first, then kTLS */
	err = tcp_pair(&c, &s);
	if (!err)
		err = sockhash_insert(map, s);
	if (err) {
		result("order_a_insert", 0, "a plain TCP socket must enter the map (%d: %s)", -err,
		       strerror(-err));
		goto out;
	}
	err = set_ulp(s);
	if (err) {
		/* refused even earlier: the ULP itself */
		result("order_a_ulp_or_tls_tx", err == -EINVAL,
		       "TCP_ULP on a socket in a sockmap: "
		       "%d (%s) (EINVAL expected)",
		       -err, strerror(-err));
	} else {
		err = set_tls(s, TLS_TX);
		result("order_a_tls_tx", err == -EINVAL,
		       "TLS_TX on a socket in a sockmap: %d (%s) (EINVAL expected; 0 means the "
		       "kernel allows kTLS + sockmap now: revisit DESIGN.md)",
		       -err, strerror(-err));
		err = set_tls(s, TLS_RX);
		result("order_a_tls_rx", err == -EINVAL,
		       "TLS_RX on a socket in a sockmap: %d (%s) (EINVAL expected)", -err,
		       strerror(-err));
	}
	close(c);
	close(s);

	/* order B: kTLS first, then the map */
	if (tcp_pair(&c, &s) || set_ulp(s) || set_tls(s, TLS_TX)) {
		result("order_b_tls_tx", 0, "TLS_TX on a fresh socket (%d: %s)", errno,
		       strerror(errno));
		goto out;
	}
	err = sockhash_insert(map, s);
	result("order_b_insert", err == -EINVAL,
	       "a kTLS socket into a sockmap: %d (%s) (EINVAL expected; 0 means the kernel "
	       "allows kTLS + sockmap now: revisit DESIGN.md)",
	       -err, strerror(-err));
out:
	if (c >= 0)
		close(c);
	if (s >= 0)
		close(s);
	printf("%d passed, %d failed, %d skipped\n", npass, nfail, nskip);
	return nfail ? 1 : 0;
}
