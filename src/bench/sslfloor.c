// SPDX-License-Identifier: MIT
/*
 * ktlsgw-bench-sslfloor: what OpenSSL alone keeps per idle server connection after an mTLS
 * handshake, i.e. the floor under any OpenSSL-based proxy's "RSS per idle TLS connection".
 *
 * N server SSL objects complete a handshake each (TLS 1.3 unless --tls12, the client
 * presents a certificate, the server verifies it, SSL_MODE_RELEASE_BUFFERS as nginx,
 * HAProxy and ktlsgw set it) over a socketpair, the client side is freed, and the server
 * side is kept with nothing else: no proxy state at all. Prints the heap held per server
 * SSL (glibc mallinfo2: in-use bytes, chunk headers included) and the RSS growth per
 * server SSL. Run it with GLIBC_TUNABLES=glibc.malloc.tcache_count=0 so that chunks freed
 * to the thread cache are not counted as in use.
 *
 *   ktlsgw-bench-sslfloor --certs DIR [-n N] [--tls12] [--json]
 * DIR holds server.crt, server.key, ca-root.pem, client-good.chain.crt, client-good.key.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static long rss_kib(void)
{
	long kib = -1;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void die(const char *what)
{
	fprintf(stderr, "ktlsgw-bench-sslfloor: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static SSL_CTX *ctx_new(bool server, const char *dir, bool tls12)
{
	char crt[4096], key[4096], ca[4096];
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!ctx)
		die("SSL_CTX_new");
	snprintf(crt, sizeof(crt), "%s/%s", dir, server ? "server.crt" : "client-good.chain.crt");
	snprintf(key, sizeof(key), "%s/%s", dir, server ? "server.key" : "client-good.key");
	snprintf(ca, sizeof(ca), "%s/ca-root.pem", dir);
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		die("cannot load the certificate or key");
	if (server) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
			die("cannot load ca-root.pem");
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	if (tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	return ctx;
}

/* One handshake over a non-blocking socketpair; returns the server SSL, client freed. */
static SSL *handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
	int sp[2], rs = 0, rc = 0;
	SSL *s, *c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp))
		die(strerror(errno));
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	if (!s || !c || !SSL_set_fd(s, sp[0]) || !SSL_set_fd(c, sp[1]))
		die("SSL_new");
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 1000 && !(rs == 1 && rc == 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(c);
		if (rs != 1)
			rs = SSL_do_handshake(s);
	}
	if (rs != 1 || rc != 1)
		die("handshake failed");
	SSL_free(c);
	close(sp[1]);
	return s;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"certs", required_argument, NULL, 'c'},
		{"tls12", no_argument, NULL, '2'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *dir = NULL;
	bool tls12 = false, json = false;
	long n = 2000;
	int o;

	while ((o = getopt_long(argc, argv, "c:n:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			dir = optarg;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case '2':
			tls12 = true;
			break;
		case 'j':
			json = true;
			break;
		default:
			fprintf(stderr, "usage: ktlsgw-bench-sslfloor --certs DIR [-n N] [--tls12] "
					"[--json]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (!dir || n < 1) {
		fprintf(stderr, "ktlsgw-bench-sslfloor: --certs DIR is required, -n >= 1\n");
		return 2;
	}
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)n + 64 > rl.rlim_cur)
		n = (long)rl.rlim_cur - 64;

	SSL_CTX *sctx = ctx_new(true, dir, tls12), *cctx = ctx_new(false, dir, tls12);
	SSL **keep = calloc((size_t)n, sizeof(*keep));

	if (!keep)
		die("out of memory");
	/* warm-up: first-use allocations (method tables, caches) are not per connection */
	for (int i = 0; i < 16; i++)
		SSL_free(handshake(sctx, cctx));
	size_t heap0 = mallinfo2().uordblks;
	long rss0 = rss_kib();

	for (long i = 0; i < n; i++)
		keep[i] = handshake(sctx, cctx);
	size_t heap1 = mallinfo2().uordblks;
	long rss1 = rss_kib();
	double heap = (double)(heap1 - heap0) / 1024.0 / (double)n;
	double rss = (double)(rss1 - rss0) / (double)n;
	const char *ver = SSL_get_version(keep[0]);

	if (json)
		printf("{\"connections\": %ld, \"protocol\": \"%s\", \"heap_kib_per_conn\": %.2f, "
		       "\"rss_kib_per_conn\": %.2f, \"openssl\": \"%s\"}\n",
		       n, ver, heap, rss, OpenSSL_version(OPENSSL_VERSION));
	else
		printf("%ld idle server SSL objects (%s, client certificate verified, "
		       "RELEASE_BUFFERS), %s: heap %.2f KiB, RSS %.2f KiB per connection\n",
		       n, ver, OpenSSL_version(OPENSSL_VERSION), heap, rss);
	for (long i = 0; i < n; i++)
		SSL_free(keep[i]);
	free(keep);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}
