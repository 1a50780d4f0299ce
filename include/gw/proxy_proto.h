/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol header encoders (v1 text, v2 binary with the SSL TLVs),
 * per haproxy's proxy-protocol.txt.
 */
#ifndef GW_PROXY_PROTO_H
#define GW_PROXY_PROTO_H

#include <sys/socket.h>
#include "gw/common.h"
#include "gw/identity.h"

#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
#define PP2_SUBTYPE_SSL_CIPHER 0x23
#define PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PP2_SUBTYPE_SSL_GROUP 0x26
#define PP2_SUBTYPE_SSL_SIG_SCHEME 0x27
#define PP2_SUBTYPE_SSL_CLIENT_CERT 0x28

#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04

/*
 * Append a PROXY v2 header for a TCP connection from @src to @dst (both
 * AF_INET or both AF_INET6; mixed or other families give an AF_UNSPEC
 * LOCAL-less "UNSPEC" header as the spec says). When @id is not NULL the
 * PP2_TYPE_SSL TLV is added (and 0x28 when @with_cert), plus AUTHORITY when
 * SNI was sent. Returns 0, -ENOMEM, or -E2BIG if it would exceed 65535.
 */
int pp2_encode(const struct sockaddr *src, const struct sockaddr *dst,
	       const struct gw_identity *id, bool with_cert, struct buf *out);

/* Append "PROXY TCP4 a b p q\r\n" (or TCP6/UNKNOWN). Returns 0 or -ENOMEM. */
int pp1_encode(const struct sockaddr *src, const struct sockaddr *dst, struct buf *out);

#endif /* GW_PROXY_PROTO_H */
