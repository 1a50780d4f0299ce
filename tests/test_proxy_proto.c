// SPDX-License-Identifier: MIT
/*
 * PROXY protocol encoder tests. The expected bytes are written out by hand
 * from haproxy's doc/proxy-protocol.txt (section 2.2), not produced by the
 * encoder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <openssl/pem.h>
#include "test.h"
#include "gw/proxy_proto.h"

/* A hand-made identity: a client cert with CN "abc", TLS 1.3, one cipher. */
static void small_identity(struct gw_identity *id)
{
	memset(id, 0, sizeof(*id));
	id->has_cert = true;
	id->verify_result = 0;
	id->protocol = (char *)"TLSv1.3";
	id->cipher = (char *)"TLS_AES_128_GCM_SHA256";
	id->cn = (char *)"abc";
	id->server_name = (char *)"";
	id->sig_alg = (char *)"";
	id->key_alg = (char *)"";
	id->group = (char *)"";
	id->sig_scheme = (char *)"";
}

static void dump_diff(const struct buf *b, const unsigned char *want, size_t n)
{
	for (size_t i = 0; i < MIN(b->len, n); i++)
		if ((unsigned char)b->data[i] != want[i]) {
			fprintf(stderr, "      first difference at byte %zu: %02x != %02x\n", i,
				(unsigned char)b->data[i], want[i]);
			return;
		}
}

static void check_bytes(const struct buf *b, const unsigned char *want, size_t n, const char *what)
{
	if (!ASSERT_EQ(b->len, n, what) || !ASSERT_MEMEQ(b->data, want, n, what))
		dump_diff(b, want, n);
}

void test_pp2_tcp4_ssl_vector(void)
{
	/* clang-format off */
	static const unsigned char want[] = {
		/* signature */
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21,	    /* version 2, PROXY */
		0x11,	    /* TCP over IPv4 */
		0x00, 0x3d, /* 61 = 12 address bytes + 49 TLV bytes */
		1, 2, 3, 4, /* src 1.2.3.4 */
		5, 6, 7, 8, /* dst 5.6.7.8 */
		0x16, 0x2e, /* 5678 */
		0x01, 0xbb, /* 443 */
		0x20, 0x00, 0x2e, /* PP2_TYPE_SSL, 46 = 1 + 4 + 10 + 6 + 25 */
		0x07,		  /* SSL | CERT_CONN | CERT_SESS */
		0x00, 0x00, 0x00, 0x00, /* verified */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x22, 0x00, 0x03, 'a', 'b', 'c',
		0x23, 0x00, 0x16, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2', '8', '_',
		'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6',
	};
	/* clang-format on */
	struct sockaddr_in src, dst;
	struct gw_identity id;
	struct buf b = {0};

	test__sa4(&src, "1.2.3.4", 5678);
	test__sa4(&dst, "5.6.7.8", 443);
	small_identity(&id);
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  "encode");
	check_bytes(&b, want, sizeof(want), "tcp4 vector");
	buf_free(&b);
}

void test_pp2_flags_verify_authority(void)
{
	/* clang-format off */
	static const unsigned char resumed_head[] = {
		0x02, 0x00, 0x09, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', /* AUTHORITY */
		0x20, 0x00, 0x2e, 0x05, 0x00, 0x00, 0x00, 0x00, /* SSL | CERT_SESS, verified */
	};
	/* clang-format on */
	/* clang-format off */
	static const unsigned char nocert_tlv[] = {
		0x20, 0x00, 0x28, /* 40 = 1 + 4 + 10 + 25: no CN without a cert */
		0x01,		  /* SSL only */
		0x00, 0x00, 0x00, 0x01, /* no certificate: not zero */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x23, 0x00, 0x16, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2', '8', '_',
		'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6',
	};
	/* clang-format on */
	/* clang-format off */
	static const unsigned char failed_tlv[] = {
		0x20, 0x00, 0x2e, 0x07, 0x00, 0x00, 0x00, 0x0a, /* X509_V_ERR_CERT_HAS_EXPIRED */
	};
	/* clang-format on */
	struct sockaddr_in src, dst;
	struct gw_identity id;
	struct buf b = {0};

	test__sa4(&src, "1.2.3.4", 5678);
	test__sa4(&dst, "5.6.7.8", 443);
	small_identity(&id);
	id.reused = true;
	id.server_name = (char *)"a.example";
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  "resumed");
	ASSERT_EQ(b.len, 16 + 12 + 12 + 49, "resumed length");
	ASSERT_MEMEQ(b.data + 28, resumed_head, sizeof(resumed_head), "authority + flags");
	ASSERT_EQ((unsigned char)b.data[14] << 8 | (unsigned char)b.data[15], b.len - 16,
		  "length field");

	buf_reset(&b);
	small_identity(&id);
	id.has_cert = false;
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  "no cert");
	ASSERT_EQ(b.len, 28 + sizeof(nocert_tlv), "no cert length");
	ASSERT_MEMEQ(b.data + 28, nocert_tlv, sizeof(nocert_tlv), "no cert tlv");

	buf_reset(&b);
	small_identity(&id);
	id.verify_result = X509_V_ERR_CERT_HAS_EXPIRED;
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  "failed verify");
	ASSERT_MEMEQ(b.data + 28, failed_tlv, sizeof(failed_tlv), "verify result");
	buf_free(&b);
}

void test_pp2_tcp6_and_families(void)
{
	/* clang-format off */
	static const unsigned char want6[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x21, 0x00, 0x24, /* TCP over IPv6, 36 bytes */
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* 2001:db8::1 */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,		 /* ::1 */
		0x03, 0xe8, /* 1000 */
		0x01, 0xbb, /* 443 */
	};
	/* clang-format on */
	/* clang-format off */
	static const unsigned char mixed_addr[] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1, /* ::ffff:10.0.0.1 */
	};
	/* clang-format on */
	/* clang-format off */
	static const unsigned char unspec[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x00, 0x00, 0x00,
	};
	/* clang-format on */
	struct sockaddr_in6 s6, d6;
	struct sockaddr_in s4;
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	struct buf b = {0};

	test__sa6(&s6, "2001:db8::1", 1000);
	test__sa6(&d6, "::1", 443);
	ASSERT_OK(pp2_encode((struct sockaddr *)&s6, (struct sockaddr *)&d6, NULL, false, &b),
		  "tcp6");
	check_bytes(&b, want6, sizeof(want6), "tcp6 vector");

	buf_reset(&b);
	test__sa4(&s4, "10.0.0.1", 1000);
	ASSERT_OK(pp2_encode((struct sockaddr *)&s4, (struct sockaddr *)&d6, NULL, false, &b),
		  "mixed");
	ASSERT_EQ(b.len, 16 + 36, "mixed length");
	ASSERT_EQ((unsigned char)b.data[13], 0x21, "mixed is TCP6");
	ASSERT_MEMEQ(b.data + 16, mixed_addr, 16, "v4-mapped source");

	buf_reset(&b);
	ASSERT_OK(pp2_encode((struct sockaddr *)&su, (struct sockaddr *)&d6, NULL, false, &b),
		  "unspec");
	check_bytes(&b, unspec, sizeof(unspec), "unspec vector");
	buf_free(&b);
}

/* Find sub-TLV @type inside the PP2_TYPE_SSL TLV of a v2 header. */
static const unsigned char *find_ssl_sub(const struct buf *b, unsigned char type, size_t *len)
{
	const unsigned char *p = (const unsigned char *)b->data;
	size_t end = b->len, off = 16 + (p[13] == 0x11 ? 12 : p[13] == 0x21 ? 36 : 0);

	while (off + 3 <= end) {
		size_t l = (size_t)p[off + 1] << 8 | p[off + 2];

		if (p[off] == PP2_TYPE_SSL) {
			size_t s = off + 3 + 5, e = off + 3 + l;

			while (s + 3 <= e) {
				size_t sl = (size_t)p[s + 1] << 8 | p[s + 2];

				if (p[s] == type) {
					*len = sl;
					return p + s + 3;
				}
				s += 3 + sl;
			}
			return NULL;
		}
		off += 3 + l;
	}
	return NULL;
}

void test_pp2_client_cert_tlv(void)
{
	FILE *f = fopen(test__cert("client-good.crt"), "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	struct sockaddr_in src, dst;
	struct gw_identity id = {0};
	struct buf b = {0};
	size_t len = 0;
	int n;

	if (f)
		fclose(f);
	if (!ASSERT_OK_PTR(x, "load cert"))
		return;
	n = i2d_X509(x, &der);
	test__sa4(&src, "1.2.3.4", 5678);
	test__sa4(&dst, "5.6.7.8", 443);
	if (!ASSERT_OK(identity_from_x509(x, NULL, X509_V_OK, &id), "identity"))
		goto out;
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  "with cert");
	ASSERT_EQ((size_t)((unsigned char)b.data[14] << 8 | (unsigned char)b.data[15]), b.len - 16,
		  "length field");
	p = find_ssl_sub(&b, PP2_SUBTYPE_SSL_CLIENT_CERT, &len);
	if (ASSERT_TRUE(p != NULL, "0x28 present") && ASSERT_EQ(len, n, "0x28 length"))
		ASSERT_MEMEQ(p, der, (size_t)n, "0x28 is the DER");
	p = find_ssl_sub(&b, PP2_SUBTYPE_SSL_CN, &len);
	if (ASSERT_TRUE(p != NULL, "CN present"))
		ASSERT_TRUE(len == 11 && memcmp(p, "client-good", 11) == 0, "CN value");
	p = find_ssl_sub(&b, PP2_SUBTYPE_SSL_KEY_ALG, &len);
	if (ASSERT_TRUE(p != NULL, "key alg present"))
		ASSERT_TRUE(len == 5 && memcmp(p, "EC256", 5) == 0, "key alg value");
	p = find_ssl_sub(&b, PP2_SUBTYPE_SSL_SIG_ALG, &len);
	if (ASSERT_TRUE(p != NULL, "sig alg present"))
		ASSERT_TRUE(len == 17 && memcmp(p, "ecdsa-with-SHA256", 17) == 0, "sig alg value");

	buf_reset(&b);
	ASSERT_OK(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, false, &b),
		  "without cert");
	ASSERT_TRUE(find_ssl_sub(&b, PP2_SUBTYPE_SSL_CLIENT_CERT, &len) == NULL, "no 0x28");
	ASSERT_TRUE(find_ssl_sub(&b, PP2_SUBTYPE_SSL_CN, &len) != NULL, "CN still there");

	/* too big for the 16-bit length: refused, buffer untouched */
	buf_reset(&b);
	buf_puts(&b, "keep");
	OPENSSL_free(id.der);
	id.der_len = 70000;
	id.der = OPENSSL_zalloc(id.der_len);
	ASSERT_EQ(pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, &id, true, &b),
		  -E2BIG, "E2BIG");
	ASSERT_EQ(b.len, 4, "buffer untouched");
out:
	identity_clear(&id);
	buf_free(&b);
	OPENSSL_free(der);
	X509_free(x);
}

void test_pp1_text(void)
{
	struct sockaddr_in s4, d4;
	struct sockaddr_in6 s6, d6;
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	struct buf b = {0};

	test__sa4(&s4, "1.2.3.4", 5678);
	test__sa4(&d4, "5.6.7.8", 443);
	ASSERT_OK(pp1_encode((struct sockaddr *)&s4, (struct sockaddr *)&d4, &b), "tcp4");
	buf_append(&b, "", 0);
	ASSERT_STREQ(b.data, "PROXY TCP4 1.2.3.4 5.6.7.8 5678 443\r\n", "tcp4 line");

	buf_reset(&b);
	test__sa6(&s6, "2001:DB8:0:0:1::1", 1000);
	test__sa6(&d6, "::ffff:127.0.0.1", 8443);
	ASSERT_OK(pp1_encode((struct sockaddr *)&s6, (struct sockaddr *)&d6, &b), "tcp6");
	buf_append(&b, "", 0);
	ASSERT_STREQ(b.data, "PROXY TCP6 2001:db8::1:0:0:1 ::ffff:127.0.0.1 1000 8443\r\n",
		     "tcp6 line");

	buf_reset(&b);
	ASSERT_OK(pp1_encode((struct sockaddr *)&su, (struct sockaddr *)&d4, &b), "unknown");
	ASSERT_OK(pp1_encode((struct sockaddr *)&s4, (struct sockaddr *)&d6, &b), "mixed");
	buf_append(&b, "", 0);
	ASSERT_STREQ(b.data, "PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n", "unknown lines");
	buf_free(&b);
}
