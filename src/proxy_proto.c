// SPDX-License-Identifier: MIT
/*
 * PROXY protocol encoders: v2 (binary, with the SSL TLVs) per haproxy's
 * doc/proxy-protocol.txt, and v1 (text) as nginx's stream module writes it.
 */
#include <errno.h>
#include <netinet/in.h>
#include "gw/proxy_proto.h"

static void put16(unsigned char *p, size_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static int put_tlv(struct buf *out, unsigned char type, const void *val, size_t len)
{
	unsigned char hdr[3] = {type};

	if (len > 0xffff)
		return -E2BIG;
	put16(hdr + 1, len);
	return buf_append(out, hdr, sizeof(hdr)) ?: buf_append(out, val, len);
}

static int put_str_tlv(struct buf *out, unsigned char type, const char *s)
{
	return s && s[0] ? put_tlv(out, type, s, strlen(s)) : 0;
}

/* A certificate-derived string of @id (computed now if need be), as put_str_tlv(). */
static int put_id_tlv(struct buf *out, unsigned char type, struct gw_identity *id,
		      enum gw_id_str which)
{
	const char *s = identity_str(id, which);

	return s ? put_str_tlv(out, type, s) : -ENOMEM;
}

/* The 16 address bytes of @sa, IPv4 as ::ffff:a.b.c.d; and its port (network order). */
static void addr6(const struct sockaddr *sa, unsigned char a[16], unsigned char port[2])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memset(a, 0, 10);
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &sin->sin_addr, 4);
		memcpy(port, &sin->sin_port, 2);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(a, &sin6->sin6_addr, 16);
		memcpy(port, &sin6->sin6_port, 2);
	}
}

static bool is_inet(const struct sockaddr *sa)
{
	return sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

static int put_addresses(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *fam,
			 struct buf *out)
{
	unsigned char a[36];

	if (!is_inet(src) || !is_inet(dst)) {
		*fam = PP2_FAM_UNSPEC;
		return 0;
	}
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;

		*fam = PP2_FAM_TCP4;
		memcpy(a, &s->sin_addr, 4);
		memcpy(a + 4, &d->sin_addr, 4);
		memcpy(a + 8, &s->sin_port, 2);
		memcpy(a + 10, &d->sin_port, 2);
		return buf_append(out, a, 12);
	}
	*fam = PP2_FAM_TCP6;
	addr6(src, a, a + 32);
	addr6(dst, a + 16, a + 34);
	return buf_append(out, a, 36);
}

static int put_ssl_tlv(struct gw_identity *id, bool with_cert, struct buf *out)
{
	size_t start = out->len, len;
	unsigned char client = PP2_CLIENT_SSL, head[8];
	const unsigned char *der = NULL;
	size_t der_len = 0;
	uint32_t verify = 1; /* no certificate: non-zero, as the spec asks */
	int ret;

	if (id->has_cert) {
		client |= PP2_CLIENT_CERT_SESS;
		if (!id->reused)
			client |= PP2_CLIENT_CERT_CONN;
		verify = (uint32_t)id->verify_result;
	}
	head[0] = PP2_TYPE_SSL;
	head[1] = head[2] = 0; /* length, patched below */
	head[3] = client;
	head[4] = (unsigned char)(verify >> 24);
	head[5] = (unsigned char)(verify >> 16);
	head[6] = (unsigned char)(verify >> 8);
	head[7] = (unsigned char)verify;
	ret = buf_append(out, head, sizeof(head));
	ret = ret ?: put_str_tlv(out, PP2_SUBTYPE_SSL_VERSION, id->protocol);
	if (id->has_cert)
		ret = ret ?: put_id_tlv(out, PP2_SUBTYPE_SSL_CN, id, GW_ID_CN);
	ret = ret ?: put_str_tlv(out, PP2_SUBTYPE_SSL_CIPHER, id->cipher);
	ret = ret ?: put_id_tlv(out, PP2_SUBTYPE_SSL_SIG_ALG, id, GW_ID_SIG_ALG);
	ret = ret ?: put_id_tlv(out, PP2_SUBTYPE_SSL_KEY_ALG, id, GW_ID_KEY_ALG);
	ret = ret ?: put_str_tlv(out, PP2_SUBTYPE_SSL_GROUP, id->group);
	ret = ret ?: put_str_tlv(out, PP2_SUBTYPE_SSL_SIG_SCHEME, id->sig_scheme);
	if (!ret && with_cert && id->has_cert)
		ret = identity_der(id, &der, &der_len);
	if (der && der_len)
		ret = ret ?: put_tlv(out, PP2_SUBTYPE_SSL_CLIENT_CERT, der, der_len);
	if (ret)
		return ret;
	len = out->len - start - 3;
	if (len > 0xffff)
		return -E2BIG;
	put16((unsigned char *)out->data + start + 1, len);
	return 0;
}

int pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, struct gw_identity *id,
	       bool with_cert, struct buf *out)
{
	size_t start = out->len, len;
	unsigned char fixed[PP2_HEADER_LEN];
	int ret;

	memcpy(fixed, PP2_SIGNATURE, PP2_SIGNATURE_LEN);
	fixed[12] = PP2_VERSION_PROXY;
	fixed[14] = fixed[15] = 0; /* length, patched below */
	ret = buf_append(out, fixed, sizeof(fixed));
	ret = ret ?: put_addresses(src, dst, &fixed[13], out);
	if (!ret && id) {
		ret = put_str_tlv(out, PP2_TYPE_AUTHORITY, identity_server_name(id));
		ret = ret ?: put_ssl_tlv(id, with_cert, out);
	}
	if (ret)
		goto fail;
	len = out->len - start - PP2_HEADER_LEN;
	if (len > 0xffff) {
		ret = -E2BIG;
		goto fail;
	}
	out->data[start + 13] = (char)fixed[13];
	put16((unsigned char *)out->data + start + 14, len);
	return 0;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return ret;
}

int pp1_encode(const struct sockaddr *src, const struct sockaddr *dst, struct buf *out)
{
	char s[128], d[128];

	if (!is_inet(src) || !dst || dst->sa_family != src->sa_family)
		return buf_puts(out, "PROXY UNKNOWN\r\n");
	identity_addr_text(src, s, sizeof(s));
	identity_addr_text(dst, d, sizeof(d));
	return buf_printf(out, "PROXY %s %s %s %u %u\r\n",
			  src->sa_family == AF_INET ? "TCP4" : "TCP6", s, d,
			  identity_addr_port(src), identity_addr_port(dst));
}
