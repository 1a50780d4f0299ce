// SPDX-License-Identifier: MIT
/*
 * ktls-openssl: one OpenSSL 3 TLS connection over loopback with SSL_OP_ENABLE_KTLS on both
 * ends, used by tests/vm/run.py inside the kernel-TLS VM (Python 3.11's ssl module has no
 * OP_ENABLE_KTLS, and it cannot tell whether OpenSSL really moved a direction to the kernel).
 *
 *   ktls-openssl VERSION CIPHER BYTES
 *     VERSION  1.2 | 1.3
 *     CIPHER   an OpenSSL cipher name (1.2, e.g. ECDHE-ECDSA-AES128-GCM-SHA256) or a TLS 1.3
 *              suite (e.g. TLS_CHACHA20_POLY1305_SHA256)
 *     BYTES    how many bytes the client sends; the server echoes them back
 *
 * A fresh P-256 key and self-signed certificate are made in memory; the client verifies the
 * server against it. The client runs in a forked child. Each side prints one line:
 *   server: version=TLSv1.2 cipher=... ktls_tx=1 ktls_rx=1 bytes=N intact=1
 *   client: ...
 * and the exit status is 0 when both sides finished and the echoed bytes were intact
 * (whether kTLS was used is for the caller to judge from the lines and /proc/net/tls_stat).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK 16384
#define LIMIT_S 60

struct conf {
	int version;
	const char *cipher;
	size_t bytes;
};

static unsigned char pattern_byte(size_t i)
{
	return (unsigned char)(i * 7 + (i >> 12));
}

static int make_cert(EVP_PKEY **pkey, X509 **cert)
{
	X509_NAME *name;

	*pkey = EVP_EC_gen("P-256");
	*cert = X509_new();
	if (!*pkey || !*cert)
		return -ENOMEM;
	X509_set_version(*cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(*cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(*cert), 3600);
	name = X509_get_subject_name(*cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(*cert, name);
	X509_set_pubkey(*cert, *pkey);
	if (!X509_sign(*cert, *pkey, EVP_sha256()))
		return -EINVAL;
	return 0;
}

static SSL_CTX *make_ctx(const struct conf *c, int server, EVP_PKEY *pkey, X509 *cert)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	int ok;

	if (!ctx)
		return NULL;
	ok = SSL_CTX_set_min_proto_version(ctx, c->version) &&
	     SSL_CTX_set_max_proto_version(ctx, c->version);
	if (c->version == TLS1_3_VERSION)
		ok = ok && SSL_CTX_set_ciphersuites(ctx, c->cipher);
	else
		ok = ok && SSL_CTX_set_cipher_list(ctx, c->cipher);
	SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
	if (server) {
		ok = ok && SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, pkey);
	} else {
		ok = ok && X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (!ok) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void report(const char *who, SSL *ssl, size_t bytes, int intact)
{
	printf("%s: version=%s cipher=%s ktls_tx=%d ktls_rx=%d bytes=%zu intact=%d\n", who,
	       SSL_get_version(ssl), SSL_get_cipher_name(ssl),
	       (int)BIO_get_ktls_send(SSL_get_wbio(ssl)), (int)BIO_get_ktls_recv(SSL_get_rbio(ssl)),
	       bytes, intact);
	fflush(stdout);
}

static int write_all(SSL *ssl, const unsigned char *buf, size_t len)
{
	size_t done = 0;
	int n;

	while (done < len) {
		n = SSL_write(ssl, buf + done, (int)(len - done));
		if (n <= 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int run_client(const struct conf *c, SSL_CTX *ctx, const struct sockaddr_in *addr)
{
	unsigned char *buf = malloc(CHUNK);
	size_t sent = 0, got = 0, i, len;
	int fd, n, intact = 1, err = -EIO;
	SSL *ssl = NULL;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (!buf || fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
		perror("client: connect");
		goto out;
	}
	ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set1_host(ssl, "localhost") ||
	    SSL_connect(ssl) != 1) {
		fprintf(stderr, "client: handshake failed\n");
		goto out;
	}
	/* Send everything, then read the echo: the server echoes chunk by chunk. */
	while (sent < c->bytes || got < c->bytes) {
		if (sent < c->bytes) {
			len = c->bytes - sent < CHUNK ? c->bytes - sent : CHUNK;
			for (i = 0; i < len; i++)
				buf[i] = pattern_byte(sent + i);
			if (write_all(ssl, buf, len) < 0) {
				fprintf(stderr, "client: SSL_write failed\n");
				goto out;
			}
			sent += len;
			continue;
		}
		n = SSL_read(ssl, buf, CHUNK);
		if (n <= 0) {
			fprintf(stderr, "client: SSL_read ended after %zu bytes\n", got);
			goto out;
		}
		for (i = 0; i < (size_t)n; i++)
			if (buf[i] != pattern_byte(got + i))
				intact = 0;
		got += (size_t)n;
	}
	report("client", ssl, got, intact);
	SSL_shutdown(ssl);
	err = intact ? 0 : -EBADMSG;
out:
	ERR_print_errors_fp(stderr);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

static int run_server(const struct conf *c, SSL_CTX *ctx, int lfd)
{
	unsigned char *buf = malloc(CHUNK);
	size_t got = 0, i;
	int fd, n, intact = 1, err = -EIO;
	SSL *ssl = NULL;

	fd = accept(lfd, NULL, NULL);
	if (!buf || fd < 0) {
		perror("server: accept");
		goto out;
	}
	ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1) {
		fprintf(stderr, "server: handshake failed\n");
		goto out;
	}
	while (got < c->bytes) {
		n = SSL_read(ssl, buf, CHUNK);
		if (n <= 0) {
			fprintf(stderr, "server: SSL_read ended after %zu bytes\n", got);
			goto out;
		}
		for (i = 0; i < (size_t)n; i++)
			if (buf[i] != pattern_byte(got + i))
				intact = 0;
		got += (size_t)n;
		if (write_all(ssl, buf, (size_t)n) < 0) {
			fprintf(stderr, "server: SSL_write failed\n");
			goto out;
		}
	}
	report("server", ssl, got, intact);
	/* The client's close_notify (or its FIN) ends the connection. */
	(void)SSL_read(ssl, buf, CHUNK);
	SSL_shutdown(ssl);
	err = intact ? 0 : -EBADMSG;
out:
	ERR_print_errors_fp(stderr);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);
	SSL_CTX *sctx = NULL, *cctx = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	int lfd = -1, status = 0, err = 1;
	struct conf c;
	pid_t pid;

	if (argc != 4 || (strcmp(argv[1], "1.2") && strcmp(argv[1], "1.3"))) {
		fprintf(stderr, "usage: %s 1.2|1.3 CIPHER BYTES\n", argv[0]);
		return 2;
	}
	c.version = strcmp(argv[1], "1.2") ? TLS1_3_VERSION : TLS1_2_VERSION;
	c.cipher = argv[2];
	c.bytes = strtoull(argv[3], NULL, 10);
	alarm(LIMIT_S);
	signal(SIGPIPE, SIG_IGN);

	if (make_cert(&pkey, &cert) < 0) {
		fprintf(stderr, "cannot make a certificate\n");
		goto out;
	}
	sctx = make_ctx(&c, 1, pkey, cert);
	cctx = make_ctx(&c, 0, pkey, cert);
	if (!sctx || !cctx) {
		fprintf(stderr, "cannot set up the contexts for %s %s\n", argv[1], c.cipher);
		goto out;
	}
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
		perror("listen");
		goto out;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		goto out;
	}
	if (pid == 0) {
		close(lfd);
		_exit(run_client(&c, cctx, &addr) ? 1 : 0);
	}
	err = run_server(&c, sctx, lfd) ? 1 : 0;
	if (err)
		kill(pid, SIGTERM);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "client failed (status 0x%x)\n", status);
		err = 1;
	}
out:
	ERR_print_errors_fp(stderr);
	if (lfd >= 0)
		close(lfd);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return err;
}
