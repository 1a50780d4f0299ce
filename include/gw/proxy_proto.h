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

#define PP2_SIGNATURE "\r\n\r\n\0\r\nQUIT\n"
#define PP2_SIGNATURE_LEN 12
#define PP2_HEADER_LEN 16 /* signature, ver_cmd, fam, len */
#define PP2_VERSION_PROXY 0x21
#define PP2_FAM_UNSPEC 0x00
#define PP2_FAM_TCP4 0x11
#define PP2_FAM_TCP6 0x21

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
 * Append a PROXY v2 header (PROXY command, 0x21) for a TCP connection from
 * @src to @dst: TCP4 (0x11) when both are AF_INET, TCP6 (0x21) when both are
 * AF_INET6; one of each: TCP6 with the IPv4 one as ::ffff:a.b.c.d (as
 * haproxy); anything else: UNSPEC (0x00) with no address block.
 * When @id is not NULL, TLVs follow in this order:
 *   PP2_TYPE_AUTHORITY  the SNI, when the client sent one;
 *   PP2_TYPE_SSL        client: PP2_CLIENT_SSL, | CERT_SESS when the session
 *                       has a client cert, | CERT_CONN when it was presented
 *                       in this handshake (has_cert && !reused) - both on a
 *                       full handshake, only CERT_SESS on a resumption;
 *                       verify: 0 iff a cert was presented and verified,
 *                       else SSL_get_verify_result(), or 1 with no cert;
 *                       sub-TLVs 0x21 version, 0x22 CN (only with a cert),
 *                       0x23 cipher, 0x24 sig alg, 0x25 key alg, 0x26 group,
 *                       0x27 sig scheme (each only when not empty), 0x28 DER
 *                       client cert (only when @with_cert and a cert exists).
 * The certificate-derived values are computed in (and cached by) @id as needed.
 * Returns 0, -ENOMEM, or -E2BIG if it would exceed 65535 bytes after the
 * 16-byte fixed part; on error @out is left as it was.
 */
int pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, struct gw_identity *id,
	       bool with_cert, struct buf *out);

/*
 * Append the v1 line as nginx's stream proxy_protocol writes it:
 * "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", TCP6 with nginx's IPv6 text
 * (no brackets), or "PROXY UNKNOWN\r\n" for other or mixed families.
 * Returns 0 or -ENOMEM.
 */
int pp1_encode(const struct sockaddr *src, const struct sockaddr *dst, struct buf *out);

#endif /* GW_PROXY_PROTO_H */
