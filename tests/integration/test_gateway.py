# SPDX-License-Identifier: MIT
"""Gateway behaviour tests (ktlsgw only, nginx where a status is compared)."""

import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import time

from lib import (EchoBackend, ProxyReceiver, Server, Tap, TestFailure, TlsConn, _TlsReader,
                 attempt, cert, chain_ders, check, check_eq, cert_sig_alg, der_of, det_bytes,
                 free_port, http_get, need_gw, proc_status, raw_connect, read_response,
                 read_until_closed, run_check, subst, test, walk_tls_records, SLOW, TMPROOT)

HTTP_BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        %(extra)s
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-SSL-Cert $ssl_client_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Fingerprint $ssl_client_fingerprint;
            proxy_set_header X-Custom-Identity $ssl_client_s_dn;
        }
    }
"""

STREAM_BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass 127.0.0.1:@BPORT@;
        proxy_protocol on;
        proxy_protocol_tlv_cert on;
        %(extra)s
    }
"""


def gw_http(be, extra="", bport=None, kind="gw", thp=True, prefix=(), top=""):
    if kind == "gw":
        need_gw()
    ports = {"P0": free_port(), "BPORT": bport or be.port}
    return Server(kind, http=[HTTP_BLOCK % dict(extra=extra)], ports=ports, name="http",
                  thp=thp, prefix=prefix, top=top).start()


def gw_stream(be, extra="", bport=None):
    need_gw()
    ports = {"P0": free_port(), "BPORT": bport or be.port}
    return Server("gw", stream=[STREAM_BLOCK % dict(extra=extra)], ports=ports,
                  name="stream").start()


def port_of(srv):
    return srv.ports["P0"]


FORGED = [("X-SSL-Cert", "forged-cert"), ("X-SSL-Client-Verify", "forged-SUCCESS"),
          ("x-client-foo", "forged-foo"), ("X-Forwarded-Client-Cert", "forged-xfcc"),
          ("Client-Cert", ":Zm9yZ2Vk:"), ("Client-Cert-Chain", ":Zm9yZ2Vk:"),
          ("x-CUSTOM-identity", "forged-dn"), ("X-SSL-Fingerprint", "forged-fp")]
FORGED_HDRS = b"".join(("%s: %s\r\n" % (n, v)).encode() for n, v in FORGED)


def check_identity(rec, certname, what):
    """The backend record carries the configured identity once, no forged value."""
    blob = json.dumps(rec["headers"]) + json.dumps(rec["trailers"])
    check("forged" not in blob and "Zm9yZ2Vk" not in blob,
          "%s: forged identity reached the backend: %s" % (what, [
              h for h in rec["headers"] + rec["trailers"]
              if "forged" in h[1] or "Zm9yZ2Vk" in h[1]]))
    hm = {}
    for n, v in rec["headers"]:
        hm.setdefault(n.lower(), []).append(v)
    for n in ("x-ssl-cert", "x-ssl-client-verify", "x-ssl-fingerprint", "x-custom-identity"):
        check(len(hm.get(n, [])) == 1, "%s: header %s %d times" % (what, n, len(hm.get(n, []))))
    check_eq(hm["x-ssl-client-verify"][0], "SUCCESS", what + " X-SSL-Client-Verify")
    check_eq(hm["x-ssl-fingerprint"][0], hashlib.sha1(der_of(certname + ".crt")).hexdigest(),
             what + " X-SSL-Fingerprint")
    check(hm["x-ssl-cert"][0].startswith("-----BEGIN CERTIFICATE-----\n\t"),
          "%s: X-SSL-Cert %r" % (what, hm["x-ssl-cert"][0][:60]))
    for n in ("x-client-foo", "x-forwarded-client-cert", "client-cert", "client-cert-chain"):
        check(n not in hm, "%s: %s reached the backend" % (what, n))


def rec_for(be, path):
    recs = [r for r in be.requests if r["target"] == path]
    check(len(recs) == 1, "backend got %d requests for %s" % (len(recs), path))
    return recs[0]


@test("gw/http/forged-identity-keepalive", timeout=60)
def t_forged():
    with EchoBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            for i in range(3):
                c.send(http_get("/f/%d" % i, extra=FORGED_HDRS))
                r = read_response(c, rd)
                check(r is not None and r.status == 200, "request %d: %r" % (i, r and r.status))
                check_identity(rec_for(be, "/f/%d" % i), "client-good", "request %d" % i)
            # pipelined: three requests in one write, each with forged headers
            c.send(b"".join(http_get("/f/p%d" % i, extra=FORGED_HDRS) for i in range(3)))
            for i in range(3):
                r = read_response(c, rd)
                check(r is not None and r.status == 200, "pipelined %d: %r" % (i, r and r.status))
                check_eq(r.json()["target"], "/f/p%d" % i, "pipelined response order")
                check_identity(rec_for(be, "/f/p%d" % i), "client-good", "pipelined %d" % i)
            # spellings a lenient backend could read as identity headers
            odd = (b"X-SSL-Cert : forged-sp\r\nX-SSL-Cert:\tforged-tab\r\nx-ssl-client-verify:"
                   b"forged-nosp\r\nX-SSL-CERT: forged-upper\r\nX-Custom-Identity:forged-x\r\n")
            c.send(http_get("/f/odd", extra=odd))
            r = read_response(c, rd)
            if r is not None and r.status == 200:
                check_identity(rec_for(be, "/f/odd"), "client-good", "odd spellings")
            else:
                check(r is None or r.status == 400, "odd spellings: %r" % (r and r.status))
                return
            # chunked body whose trailers try to forge identity
            body = b"5\r\nhello\r\n0\r\n" + FORGED_HDRS + b"\r\n"
            c.send(b"POST /f/trailers HTTP/1.1\r\nHost: localhost\r\n"
                   b"Transfer-Encoding: chunked\r\n" + FORGED_HDRS + b"\r\n" + body)
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "trailers request: %r" % (r and r.status))
            rec = rec_for(be, "/f/trailers")
            check_identity(rec, "client-good", "chunked+trailers")
            check_eq(rec["body_len"], 5, "chunked body length")
        check(len({r["conn_id"] for r in be.requests}) >= 1, "no backend connection")


@test("gw/http/keepalive-identity", timeout=60)
def t_keepalive():
    with EchoBackend() as be, gw_http(be) as gw:
        for ver in ("1.2", "1.3"):
            with TlsConn(port_of(gw), "client-rsa", version=ver) as c:
                c.handshake()
                rd = _TlsReader(c)
                for i in range(3):
                    c.send(http_get("/k/%s/%d" % (ver, i)))
                    r = read_response(c, rd)
                    check(r is not None and r.status == 200, "TLS%s request %d: %r" % (
                        ver, i, r and r.status))
                    check_identity(rec_for(be, "/k/%s/%d" % (ver, i)), "client-rsa",
                                   "TLS%s keep-alive request %d" % (ver, i))


@test("gw/http/bodies", timeout=120)
def t_bodies():
    rnd = random.Random(1234)
    with EchoBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            body = det_bytes(1 << 20, b"cl")
            c.send(b"POST /b/cl HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                   % len(body) + body)
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "1 MiB POST: %r" % (r and r.status))
            j = r.json()
            check_eq((j["body_len"], j["body_sha256"]),
                     (len(body), hashlib.sha256(body).hexdigest()), "1 MiB Content-Length body")
            # chunked, random chunk sizes
            total = hashlib.sha256()
            n = 0
            parts = [b"POST /b/chunked HTTP/1.1\r\nHost: localhost\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"]
            for i in range(60):
                sz = rnd.choice([1, 7, 100, 4095, 4096, 16384, 16385, 65536, 100000])
                d = det_bytes(sz, b"ch%d" % i)
                total.update(d)
                n += sz
                parts.append(b"%x\r\n" % sz + d + b"\r\n")
            parts.append(b"0\r\n\r\n")
            c.send(b"".join(parts))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "chunked POST: %r" % (r and r.status))
            j = r.json()
            check_eq((j["body_len"], j["body_sha256"]), (n, total.hexdigest()), "chunked body")
            # 1 MiB response
            c.send(http_get("/big/1048576"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "1 MiB GET: %r" % (r and r.status))
            check_eq(len(r.body), 1 << 20, "response length")
            check_eq(hashlib.sha256(r.body).hexdigest(), r.header("X-Sha256"), "response sha256")
            # and the connection still works
            c.send(http_get("/b/after"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "request after the bodies")


MALFORMED = [
    ("bad request line", b"GARBAGE\r\n\r\n"),
    ("bad method chars", b"G\x01T / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("bad version", b"GET / HTTP/9\r\nHost: localhost\r\n\r\n"),
    ("NUL in header", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A\x00b: c\r\n\r\n"),
    ("bare CR in header", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: b\rc\r\n\r\n"),
    ("bad content-length", b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n"),
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two content-lengths", b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n X-SSL-Cert: forged\r\n\r\n"),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                       b"\r\nzz\r\n"),
    ("9k request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("9k header", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"),
]


def malformed_outcome(port, data):
    with TlsConn(port, "client-good") as c:
        c.handshake()
        c.send(data)
        rd = _TlsReader(c)
        r = read_response(c, rd)
        if r is None:
            return ("no response", True, b"")
        closed = rd.buf == b"" and c.recv() == b""
        return (r.status, closed, r.body.replace(b"nginx/1.22.1", b"ktlsgw"))


@test("gw/http/malformed-vs-nginx", timeout=90)
def t_malformed():
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            with gw_http(be, kind=kind) as srv:
                for name, data in MALFORMED:
                    out[(kind, name)] = malformed_outcome(port_of(srv), data)
            if kind == "nginx":
                check_eq(out[("nginx", "9k request line")][:2], (414, True),
                         "nginx 9k request line")
                check_eq(out[("nginx", "9k header")][:2], (400, True), "nginx 9k header")
                check_eq(out[("nginx", "bad request line")][:2], (400, True),
                         "nginx malformed line")
                check_eq(len(be.requests), 0, "nginx passed a malformed request on")
        diffs = []
        for name, data in MALFORMED:
            n, g = out[("nginx", name)], out[("gw", name)]
            if n != g:
                diffs.append("%s: nginx (status, closed, page)=%r ktlsgw %r" % (name, n, g))
        check_eq(len(be.requests), 0, "requests passed on by ktlsgw and nginx")
        if diffs:
            raise TestFailure(" | ".join(diffs))


def pp2_ssl(info):
    ssl_tlv = [t for t in info["tlvs"] if t["type"] == 0x20]
    check(len(ssl_tlv) == 1, "PROXY v2: %d SSL TLVs" % len(ssl_tlv))
    sub = {}
    for t in ssl_tlv[0]["sub"]:
        sub.setdefault(t["type"], []).append(t["value"])
    return ssl_tlv[0], sub


@test("gw/http/http10-and-head", timeout=60)
def t_http10():
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            with gw_http(be, kind=kind) as srv:
                for name, req in (("http/1.0", b"GET /h10 HTTP/1.0\r\n\r\n"),
                                  ("HEAD", b"HEAD /big/10 HTTP/1.1\r\nHost: localhost\r\n"
                                           b"Connection: close\r\n\r\n")):
                    with TlsConn(port_of(srv), "client-good") as c:
                        c.handshake()
                        c.send(req)
                        data = c.recv_all()
                    st = data.split(b"\r\n", 1)[0].split(b" ")[1:2]
                    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
                    out[(kind, name)] = (st, len(body) if name == "HEAD" else None)
    for name in ("http/1.0", "HEAD"):
        check_eq(out[("gw", name)], out[("nginx", name)], name + " (status, HEAD body length)")


@test("gw/stream/proxy-v2-tlvs", timeout=60)
def t_pp2():
    with ProxyReceiver() as be, gw_stream(be) as gw:
        for certname, ver, keyalg, sni in (("client-good", "1.3", "EC256", "localhost"),
                                           ("client-rsa", "1.2", "RSA2048", None),
                                           ("client-rsa", "1.3", "RSA2048", "service.domain.com"),
                                           ("client-int2", "1.3", "EC256", None)):
            with TlsConn(port_of(gw), certname, version=ver, sni=sni) as c:
                c.handshake()
                c.send(b"INFO\n")
                rd = _TlsReader(c)
                line = rd.until(b"\n")
                check(line is not None, "no INFO line through the stream")
                info = be.headers[-1]
                what = "%s TLS%s" % (certname, ver)
                check_eq(info.get("version"), 2, what + " PROXY version")
                check_eq((info["command"], info["family"], info["transport"]), (1, 1, 1),
                         what + " (PROXY, TCP, over IPv4)")
                check_eq((info["src"], info["sport"]), ("127.0.0.1", c.local_port()),
                         what + " source")
                check_eq((info["dst"], info["dport"]), ("127.0.0.1", port_of(gw)),
                         what + " destination")
                tlv, sub = pp2_ssl(info)
                check_eq(tlv["client"] & 0x03, 0x03, what + " client flags SSL|CERT_CONN")
                check_eq(tlv["verify"], 0, what + " verify")
                check_eq(sub.get(0x21), [c.obj.version().encode()], what + " version sub-TLV")
                check_eq(sub.get(0x22), [certname.encode()], what + " CN sub-TLV")
                check_eq(sub.get(0x23), [c.obj.cipher()[0].encode()], what + " cipher sub-TLV")
                check_eq(sub.get(0x24), [cert_sig_alg(certname).encode()],
                         what + " sig alg sub-TLV")
                check_eq(sub.get(0x25), [keyalg.encode()], what + " key alg sub-TLV")
                # the Python client's defaults: X25519 first; its key's default scheme
                check_eq(sub.get(0x26), [b"x25519"], what + " group sub-TLV")
                check_eq(sub.get(0x27), [b"ecdsa_secp256r1_sha256" if keyalg == "EC256" else
                                         b"rsa_pss_rsae_sha256"], what + " sig scheme sub-TLV")
                auth = [t["value"] for t in info["tlvs"] if t["type"] == 0x02]
                check_eq(auth, [sni.encode()] if sni else [], what + " AUTHORITY TLV (SNI)")
                check_eq(info["raw_len"], 16 + info["len"], what + " header length")
                check_eq(sub.get(0x28), [der_of(certname + ".crt")], what + " client cert DER")
                # then an echo
                c.send(b"ping-pong\n")
                got = rd.until(b"\n")
                check_eq(got, b"ping-pong\n", what + " echo")


@test("gw/stream/half-close-4MiB", timeout=120)
def t_half_close():
    n = 4 << 20
    with ProxyReceiver() as be, gw_stream(be) as gw:
        for ver in ("1.3", "1.2"):
            with TlsConn(port_of(gw), "client-good", version=ver, timeout=30) as c:
                c.handshake()
                up = det_bytes(n, b"up" + ver.encode())
                c.send(b"SINK %d\n" % n)
                c.send(up)
                c.shutdown_write()
                rd = _TlsReader(c)
                line = rd.until(b"\n")
                check(line is not None, "TLS%s: no answer after the half-close" % ver)
                j = json.loads(line)
                check_eq((j["len"], j["sha256"]), (n, hashlib.sha256(up).hexdigest()),
                         "TLS%s bytes client->backend" % ver)
                down = rd.buf + c.recv_all()
                check_eq(len(down), n, "TLS%s bytes backend->client" % ver)
                check_eq(hashlib.sha256(down).digest(), hashlib.sha256(
                    det_bytes(n, b"sink")).digest(), "TLS%s sha256 backend->client" % ver)


def good_still_served(gw, be, stream=False):
    if stream:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            c.send(b"ECHO\nhello\n")
            rd = _TlsReader(c)
            check_eq(rd.until(b"\n"), b"hello\n", "good client after abuse")
        return
    a = attempt(port_of(gw), "client-good", path="/still")
    check(a.accepted, "good client after abuse: %r" % a)


@test("gw/abuse/garbage-silent-vanishing", timeout=90)
def t_abuse():
    with EchoBackend() as be, gw_http(be, extra="ssl_handshake_timeout 1s;") as gw:
        port = port_of(gw)
        # garbage instead of a ClientHello
        s = raw_connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, closed, _ = read_until_closed(s, 5 * SLOW)
        s.close()
        check(closed, "garbage: connection not closed")
        ok, why, _ = walk_tls_records(data)
        check(ok, "garbage: non-TLS bytes sent back: " + why)
        good_still_served(gw, be)
        # silent client: handshake timeout 1s
        s = raw_connect(port)
        t0 = time.monotonic()
        data, closed, dt = read_until_closed(s, 6 * SLOW)
        s.close()
        check(closed, "silent client: not closed within %.1fs" % dt)
        check(0.7 <= dt <= 2.5 * SLOW, "silent client closed after %.2fs (want ~1s)" % dt)
        good_still_served(gw, be)
        # vanishes after the ClientHello, and after reading part of the answer
        for stage in ("after-hello", "after-server-flight"):
            c = TlsConn(port, "client-good")
            try:
                c.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            c._flush()
            if stage == "after-server-flight":
                c.sock.recv(100)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            good_still_served(gw, be)
        # a client that sends half a ClientHello then goes silent: timeout too
        c = TlsConn(port, "client-good")
        try:
            c.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = c.out.read()
        c.sock.sendall(hello[:20])
        data, closed, dt = read_until_closed(c.sock, 6 * SLOW)
        c.close()
        check(closed and dt <= 2.5 * SLOW, "half ClientHello: closed=%s after %.2fs" % (closed, dt))
        check(gw.alive(), "ktlsgw died")
        good_still_served(gw, be)
        check_eq(be.accepts, len(set(r["conn_id"] for r in be.requests)), "backend accepts")


@test("gw/abuse/stream-after-abuse", timeout=60)
def t_stream_abuse():
    with ProxyReceiver() as be, gw_stream(be, extra="ssl_handshake_timeout 1s;") as gw:
        s = raw_connect(port_of(gw))
        s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 10)
        data, closed, _ = read_until_closed(s, 5 * SLOW)
        s.close()
        check(closed, "garbage: connection not closed")
        ok, why, _ = walk_tls_records(data)
        check(ok, "garbage: non-TLS bytes sent back: " + why)
        check_eq(be.accepts, 0, "backend accepts after garbage")
        good_still_served(gw, be, stream=True)


@test("gw/backend-down", timeout=60)
def t_backend_down():
    dead = free_port()
    with EchoBackend() as be:
        with gw_http(be, bport=dead) as gw:
            a = attempt(port_of(gw), "client-good", path="/down", keep=True)
            # the backend is connected when the request has arrived: nginx's 502
            check(a.resp is not None and a.resp.status == 502, "http, backend down: %r" % a)
            a.conn.close()
            time.sleep(0.2)
            log = gw.logtext()
            check("refused" in log.lower(), "log does not name the reason (connection refused): %s"
                  % log[-600:])
            check(gw.alive(), "ktlsgw died")
    with ProxyReceiver() as pr:
        with gw_stream(pr, bport=dead) as gw:
            with TlsConn(port_of(gw), "client-good") as c:
                c.handshake()
                c.send(b"ECHO\nx\n")
                data = c.recv_all()
                check_eq(data, b"", "stream, backend down: data")
                check(not c.unclean, "stream, backend down: closed without close_notify")
            check("refused" in gw.logtext().lower(), "stream log does not name the reason: %s" %
                  gw.logtext()[-600:])


@test("gw/config/check", timeout=60)
def t_config_check():
    need_gw()
    d = os.path.join(TMPROOT, "cfgcheck")
    os.makedirs(d, exist_ok=True)
    good = os.path.join(d, "good.conf")
    with open(good, "w") as f:
        f.write(subst("events {\n}\nhttp {\n" + HTTP_BLOCK % dict(extra="") + "}\n",
                      {"P0": free_port(), "BPORT": free_port()}))
    rc, out = run_check(good)
    check(rc == 0 and "syntax is ok" in out and "test is successful" in out,
          "good config: exit %d: %r" % (rc, out[-500:]))
    cases = [
        ("bad-value", "ssl_verify_client maybe;"),
        ("unknown-directive", "ssl_frobnicate on;"),
        ("missing-semicolon", "ssl_verify_depth 3\n"),
        ("missing-file", "ssl_crl /nonexistent/crl.pem;"),
    ]
    for name, line in cases:
        p = os.path.join(d, name + ".conf")
        text = ("events {\n}\nhttp {\n    server {\n        listen 127.0.0.1:%d ssl;\n"
                "        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
                "        %s\n        location / { proxy_pass http://127.0.0.1:%d; }\n"
                "    }\n}\n" % (free_port(), cert("server.crt"), cert("server.key"), line,
                              free_port()))
        if name == "missing-semicolon":
            text = text.replace("ssl_verify_depth 3\n", "ssl_verify_depth 3 \n")
        with open(p, "w") as f:
            f.write(text)
        rc, out = run_check(p)
        check_eq(rc, 1, "%s: exit code (output %r)" % (name, out[-400:]))
        want_line = 8 if name != "missing-semicolon" else 9
        if name in ("missing-semicolon",):
            check(("%s:" % p) in out, "%s: no FILE:LINE in %r" % (name, out[-400:]))
        else:
            check(("%s:%d" % (p, want_line)) in out, "%s: no %s:%d in %r" % (
                name, p, want_line, out[-400:]))


@test("gw/config/port-in-use", timeout=60)
def t_port_in_use():
    need_gw()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        with EchoBackend() as be:
            srv = Server("gw", http=[HTTP_BLOCK % dict(extra="")],
                         ports={"P0": port, "BPORT": be.port}, name="inuse")
            srv.start(wait_ports=[])
            deadline = time.monotonic() + 10 * SLOW
            while srv.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            alive = srv.alive()
            rc = srv.stop()
            check(not alive, "ktlsgw kept running with its port in use")
            check(rc not in (0, None), "exit code %r" % rc)
            log = srv.logtext()
            check("in use" in log.lower() or "eaddrinuse" in log.lower(),
                  "no clear start-up error: %r" % log[-500:])
    finally:
        s.close()


@test("gw/unverified-never-reaches-backend", timeout=60)
def t_unverified():
    with EchoBackend() as be, gw_http(be) as gw:
        # (ca-all.pem trusts other-ca: client-other is a verified client here)
        for c in ("client-self", "client-expired", "client-notyet", None):
            for ver in ("1.2", "1.3"):
                a = attempt(port_of(gw), c, version=ver, path="/u")
                check(a.resp is None, "%s TLS%s: got HTTP %r" % (c, ver, a.resp and a.resp.status))
        time.sleep(0.2)
        check_eq(be.accepts, 0, "backend accept count")
        a = attempt(port_of(gw), "client-good", path="/u-good")
        check(a.accepted, "good: %r" % a)
        check_eq(be.accepts, 1, "backend accept count after a good client")
    with ProxyReceiver() as pr, gw_stream(pr) as gw:
        for c in ("client-self", None):
            with TlsConn(port_of(gw), c, version="1.3") as conn:
                try:
                    conn.handshake()
                    conn.send(b"ECHO\nx\n")
                    conn.recv()
                except (ssl.SSLError, OSError):
                    pass
        time.sleep(0.2)
        check_eq(pr.accepts, 0, "stream backend accept count")


@test("gw/tls-records-only", timeout=120)
def t_records_only():
    """Everything the client receives is TLS records, on the good, rejected and
    error paths, http and stream."""
    dead = free_port()
    problems = []
    with EchoBackend() as be, ProxyReceiver() as pr:
        gws = [("http", gw_http(be)), ("http-verify-failure-http",
                                       gw_http(be, extra="ssl_verify_failure http;")),
               ("http-backend-down", gw_http(be, bport=dead)), ("stream", gw_stream(pr)),
               ("stream-backend-down", gw_stream(pr, bport=dead))]
        try:
            for label, gw in gws:
                tap = Tap(port_of(gw))
                scen = []
                for c in ("client-good", "client-self", None):
                    for ver in ("1.2", "1.3"):
                        scen.append((c, ver))
                for i, (c, ver) in enumerate(scen):
                    if label.startswith("stream"):
                        try:
                            with TlsConn(tap.port, c, version=ver) as conn:
                                conn.handshake()
                                conn.send(b"SINK 70000\n" + det_bytes(100000))
                                conn.shutdown_write()
                                conn.recv_all()
                        except (ssl.SSLError, OSError):
                            pass
                    else:
                        a = attempt(tap.port, c, version=ver, path="/rec",
                                    extra=b"Connection: close\r\n")
                        if a.conn:
                            a.conn.close()
                    if not tap.wait(i, 10):
                        problems.append("%s %s TLS%s: tap did not finish" % (label, c, ver))
                        continue
                    ok, why, types = walk_tls_records(bytes(tap.down[i]))
                    if not ok:
                        problems.append("%s %s TLS%s: %s" % (label, c, ver, why))
                # garbage and plain HTTP
                s = raw_connect(tap.port)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                read_until_closed(s, 5 * SLOW)
                s.close()
                i = len(scen)
                if tap.wait(i, 10):
                    ok, why, _ = walk_tls_records(bytes(tap.down[i]))
                    if not ok:
                        problems.append("%s plain HTTP: %s" % (label, why))
                tap.close()
        finally:
            for _, gw in gws:
                gw.stop()
    if problems:
        raise TestFailure(" | ".join(problems))


@test("gw/sigterm-exit", timeout=60)
def t_sigterm():
    with EchoBackend() as be:
        gw = gw_http(be)
        a = attempt(port_of(gw), "client-good", path="/t")
        check(a.accepted, "good: %r" % a)
        rc = gw.stop()
        check_eq(rc, 0, "exit code after SIGTERM")
        err = gw.sanitizer_errors()
        check(err is None, "sanitizer: %s" % err)


@test("gw/ipv6-listen", timeout=60)
def t_ipv6():
    need_gw()
    with EchoBackend() as be:
        block = (HTTP_BLOCK % dict(extra="")).replace(
            "listen 127.0.0.1:@P0@ ssl;", "listen [::1]:@P0@ ssl;").replace(
            "proxy_set_header X-Custom-Identity $ssl_client_s_dn;",
            "proxy_set_header X-Custom-Identity $ssl_client_s_dn;\n"
            "            proxy_set_header X-Remote $remote_addr;")
        p = free_port(socket.AF_INET6)
        with Server("gw", http=[block], ports={"P0": p, "BPORT": be.port},
                    name="v6").start(wait_ports=[]) as gw:
            from lib import wait_port
            check(wait_port(p, gw.proc, host="::1"), "no listen on [::1]:%d" % p)
            a = attempt(p, "client-good", path="/v6", host="::1")
            check(a.accepted, "IPv6 client: %r" % a)
            hm = {n: v for n, v in rec_for(be, "/v6")["headers"]}
            check_eq(hm.get("X-Remote"), "::1", "$remote_addr over IPv6")


REASONS = [
    # client, CA file, CRL, depth, what the log line must say (regex, case-insensitive)
    (None, "ca-all.pem", "", 3, r"no.*certificate|certificate.*not.*sent|no required"),
    ("client-expired", "ca-all.pem", "", 3, r"expired"),
    ("client-notyet", "ca-all.pem", "", 3, r"not yet valid"),
    ("client-self", "ca-all.pem", "", 3, r"self.signed"),
    ("client-other", "ca-root.pem", "", 3, r"issuer|unknown ca|unable to get"),
    ("client-revoked", "ca-all.pem", "ssl_crl @CERTS@/crl-all.pem;", 3, r"revoked"),
    ("client-int2", "ca-all.pem", "", 1, r"depth|too long|unable to get issuer"),
    ("client-good", "ca-all.pem", "ssl_crl @CERTS@/crl-expired.pem;", 3, r"CRL has expired"),
]


@test("gw/log/rejection-reasons", timeout=90)
def t_reasons():
    """Every rejected handshake is logged with the client address and why."""
    need_gw()
    problems = []
    with EchoBackend() as be:
        for c, ca, crl, depth, pat in REASONS:
            blk = (HTTP_BLOCK % dict(extra=crl)).replace("ca-all.pem", ca).replace(
                "ssl_verify_depth 3;", "ssl_verify_depth %d;" % depth)
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server("gw", http=[blk], ports=ports, name="reasons").start() as gw:
                for ver in ("1.2", "1.3"):
                    a = attempt(ports["P0"], c, version=ver, path="/r", keep=True)
                    lp = a.conn.local_port() if a.conn else None
                    if a.conn:
                        a.conn.close()
                    if a.resp is not None:
                        problems.append("%s TLS%s: not rejected (%r)" % (c, ver, a))
                        continue
                    time.sleep(0.1)
                    lines = [ln for ln in gw.logtext().splitlines()
                             if "127.0.0.1:%d" % lp in ln]
                    if not any(re.search(pat, ln, re.I) for ln in lines):
                        problems.append("%s TLS%s: no log line for 127.0.0.1:%d matching /%s/: %r"
                                        % (c, ver, lp, pat, lines))
        check_eq(be.accepts, 0, "backend accepts")
    if problems:
        raise TestFailure(" | ".join(problems))


@test("gw/signals/hup-reload-keeps-connections", timeout=60)
def t_hup():
    import signal as _signal
    with EchoBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/h/1"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "before SIGHUP")
            gw.proc.send_signal(_signal.SIGHUP)
            time.sleep(0.5 * SLOW)
            check(gw.alive(), "ktlsgw died on SIGHUP")
            c.send(http_get("/h/2"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "established connection after SIGHUP: %r" % (
                r and r.status))
            check_identity(rec_for(be, "/h/2"), "client-good", "after SIGHUP")
        a = attempt(port_of(gw), "client-good", path="/h/3")
        check(a.accepted, "new connection after SIGHUP: %r" % a)


@test("gw/signals/sigterm-drains", timeout=60)
def t_drain():
    """SIGTERM with a stream connection open: the open connection still gets its
    answer, then ktlsgw exits 0 within a bounded time."""
    with ProxyReceiver() as pr, gw_stream(pr) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            c.send(b"ECHO\nbefore\n")
            rd = _TlsReader(c)
            check_eq(rd.until(b"\n"), b"before\n", "echo before SIGTERM")
            import signal as _signal
            gw.expect_exit = True
            gw.proc.send_signal(_signal.SIGTERM)
            time.sleep(0.3)
            # new connections are refused once draining
            try:
                s = socket.create_connection(("127.0.0.1", port_of(gw)), timeout=2)
                s.close()
                refused = False
            except OSError:
                refused = True
            c.send(b"during\n")
            got = rd.until(b"\n")
            c.shutdown_write()
            rest = c.recv_all()
            check_eq(got, b"during\n", "echo on the open connection while draining")
            check(refused, "listener still accepting after SIGTERM")
        t0 = time.monotonic()
        while gw.alive() and time.monotonic() - t0 < 15 * SLOW:
            time.sleep(0.05)
        check(not gw.alive(), "ktlsgw still running %.0fs after SIGTERM with no connection left"
              % (time.monotonic() - t0))
        check_eq(gw.stop(), 0, "exit status")


@test("gw/stream/proxy-v2-tcp6", timeout=60)
def t_pp2_v6():
    need_gw()
    from lib import wait_port
    with ProxyReceiver() as pr:
        p = free_port(socket.AF_INET6)
        blk = (STREAM_BLOCK % dict(extra="")).replace("listen 127.0.0.1:@P0@ ssl;",
                                                       "listen [::1]:@P0@ ssl;")
        with Server("gw", stream=[blk], ports={"P0": p, "BPORT": pr.port},
                    name="v6s").start(wait_ports=[]) as gw:
            check(wait_port(p, gw.proc, host="::1"), "no listen on [::1]:%d" % p)
            with TlsConn(p, "client-good", host="::1") as c:
                c.handshake()
                c.send(b"INFO\n")
                check(_TlsReader(c).until(b"\n") is not None, "no INFO line")
                info = pr.headers[-1]
                check_eq((info["family"], info["transport"]), (2, 1), "TCP over IPv6")
                check_eq((info["src"], info["sport"], info["dst"], info["dport"]),
                         ("::1", c.local_port(), "::1", p), "addresses")


def s_client_get(port, path, sess_out=None, sess_in=None, ver="-tls1_3"):
    """openssl s_client (TLS 1.3, client-good) sends one GET; returns its -msg output."""
    import subprocess
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, ver, "-msg",
            "-servername", "localhost", "-cert", cert("client-good.crt"),
            "-key", cert("client-good.key"), "-ign_eof"]
    if sess_out:
        argv += ["-sess_out", sess_out]
    if sess_in:
        argv += ["-sess_in", sess_in]
    req = b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode()
    p = subprocess.run(argv, input=req, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20 * SLOW)
    return p.stdout.decode("utf-8", "replace")


@test("gw/tls13-one-session-ticket-resumes", timeout=60)
def t_one_ticket():
    """A TLS 1.3 handshake gets one NewSessionTicket (OpenSSL's default is two; each costs
    a decode of the client certificate in OpenSSL 3.0), and it resumes: the resumed
    connection is verified from the ticket and the backend gets the same identity."""
    sess = os.path.join(TMPROOT, "one-ticket.sess")
    with EchoBackend() as be, gw_http(be) as gw:
        out = s_client_get(port_of(gw), "/t-full", sess_out=sess)
        n = len(re.findall(r"<<< TLS 1.3, Handshake \[length [0-9a-f]+\], NewSessionTicket",
                           out))
        check_eq(n, 1, "NewSessionTickets in a full TLS 1.3 handshake")
        check("HTTP/1.1 200" in out, "full handshake: no 200: %s" % out[-400:])
        out = s_client_get(port_of(gw), "/t-resumed", sess_in=sess)
        check("Reused, TLSv1.3" in out, "not resumed: %s" % out[-600:])
        check("HTTP/1.1 200" in out, "resumed: no 200: %s" % out[-400:])
        n = len(re.findall(r"<<< TLS 1.3, Handshake \[length [0-9a-f]+\], NewSessionTicket",
                           out))
        check_eq(n, 1, "NewSessionTickets in a resumed TLS 1.3 handshake")
        for path in ("/t-full", "/t-resumed"):
            check_identity(rec_for(be, path), "client-good", path)


@test("workers/session-ticket-resumes-on-another-worker", timeout=180)
def t_ticket_other_worker():
    """worker_processes 2: a session ticket issued by one worker resumes on the other, TLS
    1.3 and 1.2 (nginx makes its SSL_CTXs, ticket keys included, before it forks; ktlsgw
    derives each server{}'s keys from one secret made before the fork). Resumptions
    alternate the client's CPU (the steering program sends a connection to the worker of
    the CPU it came from; the kernel's hash otherwise): every one resumes, and some land on
    the worker that did not issue the ticket (it was one in two before)."""
    from test_passthrough import _need_cpus
    _need_cpus(2)

    def served(log):
        return [int(p) for p in re.findall(
            r"\] (\d+)#0: conn=\d+ client 127\.0\.0\.1:\d+: TLSv1", log)]
    saved = os.sched_getaffinity(0)
    with EchoBackend() as be, gw_http(be, top="worker_processes 2;") as gw:
        try:
            for ver in ("-tls1_3", "-tls1_2"):
                sess = os.path.join(TMPROOT, "worker-ticket%s.sess" % ver)
                os.sched_setaffinity(0, {0})
                out = s_client_get(port_of(gw), "/wt-full" + ver, sess_out=sess, ver=ver)
                check("HTTP/1.1 200" in out, "%s full handshake: %s" % (ver, out[-400:]))
                deadline = time.monotonic() + 5 * SLOW
                while not served(gw.logtext()) and time.monotonic() < deadline:
                    time.sleep(0.02)
                issuer = served(gw.logtext())[-1]
                others = 0
                for i in range(8):
                    os.sched_setaffinity(0, {(i + 1) % 2})
                    n = len(served(gw.logtext()))
                    out = s_client_get(port_of(gw), "/wt-resumed%s/%d" % (ver, i),
                                       sess_in=sess, ver=ver)
                    check("Reused, TLSv1." in out, "%s resumption %d not resumed: %s" % (
                        ver, i, out[-600:]))
                    check("HTTP/1.1 200" in out, "%s resumption %d: %s" % (ver, i, out[-300:]))
                    deadline = time.monotonic() + 5 * SLOW
                    while len(served(gw.logtext())) <= n and time.monotonic() < deadline:
                        time.sleep(0.02)
                    others += served(gw.logtext())[-1] != issuer
                check(others > 0, "%s: no resumption reached the other worker" % ver)
                check_identity(rec_for(be, "/wt-resumed%s/0" % ver), "client-good", ver)
        finally:
            os.sched_setaffinity(0, saved)


@test("gw/reload-changes-ticket-keys", timeout=180)
def t_reload_ticket_keys():
    """A reload makes new session ticket keys, as nginx's change with each reload: a ticket
    issued before it no longer resumes (a client revoked by the reloaded CRL must not come
    back on its old ticket), one issued after it does. One process, and with workers (the
    master makes the secret its new workers fork with)."""
    import signal as _signal
    for top, ready in (("", "reconfigured from"),
                       ("worker_processes 2;", "reconfigured: 2 new worker processes")):
        with EchoBackend() as be, gw_http(be, top=top) as gw:
            for ver in ("-tls1_3", "-tls1_2"):
                what = "%s %s" % (top or "one process", ver)
                old = os.path.join(TMPROOT, "reload-ticket-old%s.sess" % ver)
                new = os.path.join(TMPROOT, "reload-ticket-new%s.sess" % ver)
                out = s_client_get(port_of(gw), "/rk-old", sess_out=old, ver=ver)
                check("HTTP/1.1 200" in out, "%s: first: %s" % (what, out[-300:]))
                out = s_client_get(port_of(gw), "/rk-same", sess_in=old, ver=ver)
                check("Reused, TLSv1." in out, "%s: not resumed before the reload" % what)
                n = gw.logtext().count(ready)
                gw.proc.send_signal(_signal.SIGHUP)
                deadline = time.monotonic() + 20 * SLOW
                while gw.logtext().count(ready) == n and time.monotonic() < deadline:
                    time.sleep(0.05)
                check(gw.logtext().count(ready) > n, "%s: no reload: %s" % (
                    what, gw.logtext()[-600:]))
                out = s_client_get(port_of(gw), "/rk-after", sess_in=old, sess_out=new,
                                   ver=ver)
                check("HTTP/1.1 200" in out, "%s: after the reload: %s" % (what, out[-300:]))
                check("Reused, TLSv1." not in out and "New, TLSv1." in out,
                      "%s: a ticket from before the reload resumed" % what)
                out = s_client_get(port_of(gw), "/rk-new", sess_in=new, ver=ver)
                check("Reused, TLSv1." in out, "%s: a ticket from after the reload did not "
                      "resume: %s" % (what, out[-400:]))


@test("gw/tls13-stateful-tickets-resume", timeout=60)
def t_stateful_tickets():
    """ssl_session_tickets off with a session cache (as nginx): TLS 1.3 resumption is
    stateful, the ticket only names a session kept in the worker's cache (a few dozen bytes,
    where a stateless ticket carries the encrypted session, client certificate included).
    It resumes with the same identity at the backend; without a cache nothing resumes."""
    def tickets(out):
        return [int(n, 16) for n in re.findall(
            r"<<< TLS 1.3, Handshake \[length ([0-9a-f]+)\], NewSessionTicket", out)]
    sess = os.path.join(TMPROOT, "stateful-ticket.sess")
    with EchoBackend() as be:
        with gw_http(be) as gw:
            out = s_client_get(port_of(gw), "/st-stateless", sess_out=sess)
            stateless = tickets(out)
            check(len(stateless) == 1 and stateless[0] > 400,
                  "stateless ticket lengths %r" % stateless)
        with gw_http(be, extra="ssl_session_cache shared:T13:1m; "
                               "ssl_session_tickets off;") as gw:
            out = s_client_get(port_of(gw), "/st-full", sess_out=sess)
            check("HTTP/1.1 200" in out, "full handshake: no 200: %s" % out[-400:])
            n = tickets(out)
            check(len(n) == 1 and n[0] < 100, "stateful ticket lengths %r (stateless: %r)" % (
                n, stateless))
            out = s_client_get(port_of(gw), "/st-resumed", sess_in=sess)
            check("Reused, TLSv1.3" in out, "not resumed: %s" % out[-600:])
            check("HTTP/1.1 200" in out, "resumed: no 200: %s" % out[-400:])
        with gw_http(be, extra="ssl_session_tickets off;") as gw:
            out = s_client_get(port_of(gw), "/st-nocache", sess_out=sess)
            check("HTTP/1.1 200" in out, "no cache: no 200: %s" % out[-400:])
            out = s_client_get(port_of(gw), "/st-nocache-again", sess_in=sess)
            check("Reused, TLSv1.3" not in out and "HTTP/1.1 200" in out,
                  "no cache: resumed or failed: %s" % out[-600:])
        for path in ("/st-stateless", "/st-full", "/st-resumed", "/st-nocache",
                     "/st-nocache-again"):
            check_identity(rec_for(be, path), "client-good", path)


@test("gw/tls12-session-cache-expiry", timeout=60)
def t_session_expiry():
    """TLS 1.2 session-id resumption from the server's cache (tickets off): a session resumes
    within ssl_session_timeout and not after it (the cache is swept by the worker's tick, not
    by OpenSSL's auto-clear inside handshakes)."""
    import subprocess
    sess = os.path.join(TMPROOT, "tls12-cache.sess")

    def get(path, sess_out=None, sess_in=None):
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port_of(gw), "-tls1_2",
                "-servername", "localhost", "-cert", cert("client-good.crt"),
                "-key", cert("client-good.key"), "-ign_eof", "-no_ticket"]
        argv += ["-sess_out", sess_out] if sess_out else ["-sess_in", sess_in]
        req = b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % (
            path.encode())
        return subprocess.run(argv, input=req, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=20 * SLOW).stdout.decode("utf-8", "replace")
    # 5 s: the first connection and its resumption fit in it even in the TCG VM
    with EchoBackend() as be, gw_http(be, extra="ssl_session_cache shared:T12:1m; "
                                      "ssl_session_tickets off; ssl_session_timeout 5s;") as gw:
        t0 = time.monotonic()
        out = get("/s-new", sess_out=sess)
        check("New, TLSv1.2" in out and "HTTP/1.1 200" in out, "first: %s" % out[-500:])
        out = get("/s-again", sess_in=sess)
        check("Reused, TLSv1.2" in out and "HTTP/1.1 200" in out,
              "within the timeout (%.1f s after the first): not resumed: %s" % (
                  time.monotonic() - t0, out[-500:]))
        time.sleep(max(0.0, t0 + 6.5 - time.monotonic()))
        out = get("/s-late", sess_in=sess)
        check("New, TLSv1.2" in out and "HTTP/1.1 200" in out,
              "after the timeout: resumed or failed: %s" % out[-500:])
        for path in ("/s-new", "/s-again", "/s-late"):
            check_identity(rec_for(be, path), "client-good", path)


def open_verified(port, n):
    """@n verified TLS connections (client-good) that have sent nothing."""
    conns = []
    for _ in range(n):
        c = TlsConn(port, "client-good")
        c.handshake()
        conns.append(c)
    return conns


@test("gw/http/backend-connected-on-first-request", timeout=60)
def t_lazy_backend():
    """http mode connects the backend when the first request has arrived (as nginx): a
    verified client that sends nothing holds one socket at the gateway and none at the
    backend; its first request connects; a client that leaves without a request never
    reaches the backend."""
    def nsock():
        # sockets only: on tier K a connection with a backend also holds two splice pipes
        n = 0
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
            except OSError:
                pass
        return n
    with EchoBackend() as be, gw_http(be) as gw:
        pid = gw.proc.pid
        nfd = nsock
        base = nfd()
        base_all = len(os.listdir("/proc/%d/fd" % pid))
        idle = open_verified(port_of(gw), 20)
        time.sleep(0.3)
        check_eq(nfd() - base, 20, "sockets for 20 idle verified clients")
        check_eq(len(os.listdir("/proc/%d/fd" % pid)) - base_all, 20,
                 "descriptors for 20 idle verified clients (tier K: no pipe before a backend)")
        check_eq(be.accepts, 0, "backend connections for idle clients")
        rd = _TlsReader(idle[0])
        idle[0].send(http_get("/first"))
        check_eq(read_response(idle[0], rd).status, 200, "first request")
        idle[0].send(http_get("/second"))
        check_eq(read_response(idle[0], rd).status, 200, "second request, same backend")
        check_eq(be.accepts, 1, "backend connections after two requests on one client")
        check_eq(nfd() - base, 21, "sockets: 20 clients + 1 backend")
        for c in idle[1:]:
            c.shutdown_write()
            check_eq(c.recv_all(), b"", "a client leaving without a request: no data")
            check(not c.unclean, "closed without close_notify")
            c.close()
        time.sleep(0.3)
        check_eq(be.accepts, 1, "backend connections after 19 clients left without a request")
        check_eq(nfd() - base, 2, "sockets left: one client and its backend")
        idle[0].close()
        check_identity(rec_for(be, "/first"), "client-good", "/first")


def idle_rss_per_conn(extra, n=300):
    """RSS growth of the gateway per idle verified connection (KiB) over @n of them, its
    server{} given @extra. The gateway runs without transparent huge pages: where they are
    "always" (Debian's 6.1 kernel, so the VM), jemalloc's 2 MiB-aligned extents fault in
    whole huge pages, and 300 connections (~6 MiB) read anywhere from 20 to 37 KiB each
    depending on how many 2 MiB pages the growth happened to start."""
    with EchoBackend() as be, gw_http(be, extra=extra, thp=False) as gw:
        pid = gw.proc.pid

        def huge_kib():
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for ln in f:
                    if ln.startswith("AnonHugePages:"):
                        return int(ln.split()[1])
            return 0
        check_eq(proc_status(pid, "THP_enabled:"), 0,
                 "THP_enabled of the gateway (PR_SET_THP_DISABLE)")
        warm = TlsConn(port_of(gw), "client-good")
        warm.handshake()
        rd = _TlsReader(warm)
        warm.send(http_get("/warm"))
        check_eq(read_response(warm, rd).status, 200, "warm-up request")
        time.sleep(0.3)
        base = proc_status(pid)
        conns = open_verified(port_of(gw), n)
        time.sleep(0.5)
        per = (proc_status(pid) - base) / float(n)
        check_eq(huge_kib(), 0, "KiB in transparent huge pages")
        # each still works: a request on the last one opened
        rd = _TlsReader(conns[-1])
        conns[-1].send(http_get("/after-idle"))
        check_eq(read_response(conns[-1], rd).status, 200, "a request after the idle period")
        for c in conns:
            c.close()
        warm.close()
        return per


@test("gw/idle-connection-memory", timeout=180)
def t_idle_memory():
    """An idle verified connection costs the gateway little memory: OpenSSL's own state
    (21 KiB for a TLS 1.3 server SSL, ktlsgw-bench-sslfloor) plus ktlsgw's ~2 KiB; no
    receive buffer, no send buffer, no backend socket, no identity strings until a request
    needs them. RSS growth over 300 idle connections must stay under 34 KiB each (it was
    70 KiB with per-connection 16 KiB buffers and eager identity). Tier U, in the VM too:
    OpenSSL keeps the connection's state there (ktls/idle-connection-memory: tier K)."""
    from lib import Skip
    if SLOW > 1:
        raise Skip("sanitizer build: its allocator's memory is not the gateway's")
    per = idle_rss_per_conn("ssl_ktls off;")
    print("      RSS per idle verified connection: %.1f KiB" % per, flush=True)
    check(per < 34, "RSS per idle connection %.1f KiB >= 34" % per)


@test("gw/http/backend-connect-timeout-504", timeout=60)
def t_connect_timeout():
    """A backend that never completes the TCP handshake (its accept queue is full, so the
    kernel drops the SYNs): after proxy_connect_timeout the request gets nginx's 504, the
    reason is logged, and the gateway serves on."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    try:
        for _ in range(3):  # fill the accept queue; later SYNs are dropped
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", lst.getsockname()[1]))
            except BlockingIOError:
                pass
            fillers.append(f)
        time.sleep(0.2)
        with EchoBackend() as be, gw_http(be, bport=lst.getsockname()[1],
                                          extra="proxy_connect_timeout 1s;") as gw:
            t0 = time.monotonic()
            a = attempt(port_of(gw), "client-good", path="/slow-connect")
            took = time.monotonic() - t0
            check(a.resp is not None and a.resp.status == 504,
                  "backend connect timeout: %r" % a)
            check(0.8 <= took < 8, "answered after %.1f s (proxy_connect_timeout 1s)" % took)
            check("timed out" in gw.logtext(), "log: %s" % gw.logtext()[-600:])
            check(gw.alive(), "ktlsgw died")
    finally:
        for f in fillers:
            f.close()
        lst.close()


# ---------------------------------------------------------------------------
# ssl_verify_cache

VC_BLOCK = """
    server {
        listen 127.0.0.1:@%(port)s@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate %(ca)s;
        ssl_verify_client %(verify)s;
        ssl_verify_depth 3;
        %(extra)s
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
        }
    }
"""


def cache_hits(gw):
    """Stop @gw; the chains its workers accepted from the verification cache."""
    gw.stop()
    log = gw.logtext()
    hits = re.findall(r"(\d+) client chain\(s\) verified from the cache", log)
    check(hits, "no exit line with the cache count: %s" % log[-800:])
    return sum(int(h) for h in hits)


def vc_get(port, path, ctx=None, certname=None):
    """One GET over a new mTLS connection: (status or None, X-SSL-Client-Verify or None)."""
    import json as _json
    c = None
    try:
        c = TlsConn(port, certname, ctx=ctx)
        c.handshake()
        c.send(http_get(path))
        resp = read_response(c)
    except (ssl.SSLError, OSError, TestFailure) as e:
        return None, "refused: %s" % e
    finally:
        if c:
            c.close()
    if resp is None:
        return None, "refused: no response"
    verify = None
    if resp.status == 200:
        hdrs = dict((n.lower(), v) for n, v in _json.loads(resp.body)["headers"])
        verify = hdrs.get("x-ssl-client-verify")
    return resp.status, verify


def short_pki(d, cert_end, crl_end):
    """A CA in @d; client "short" valid until @cert_end, client "long" for a day (both by
    it); an empty CRL of the CA whose nextUpdate is @crl_end (epoch seconds)."""
    import subprocess

    def run(*argv):
        subprocess.run(argv, cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)

    def stamp(t):
        return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))
    os.makedirs(os.path.join(d, "new"), exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "crlnumber"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ ca ]\ndefault_ca = this\n[ this ]\ndir = %s\ndatabase = $dir/index.txt\n"
                "new_certs_dir = $dir/new\nserial = $dir/serial\ncrlnumber = $dir/crlnumber\n"
                "certificate = $dir/ca.crt\nprivate_key = $dir/ca.key\ndefault_md = sha256\n"
                "policy = any\nunique_subject = no\n[ any ]\ncommonName = supplied\n"
                "[ req ]\ndistinguished_name = dn\n[ dn ]\n"
                "[ v3_ca ]\nbasicConstraints = critical,CA:TRUE\n"
                "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
                "[ client ]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n" % d)
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", "ca.key")
    run("openssl", "req", "-new", "-x509", "-key", "ca.key", "-subj", "/CN=vcache test CA",
        "-days", "2", "-config", "ca.cnf", "-extensions", "v3_ca", "-out", "ca.crt")
    now = time.time()
    for name, end in (("short", cert_end), ("long", now + 86400)):
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", name + ".key")
        run("openssl", "req", "-new", "-key", name + ".key", "-subj", "/CN=vcache-" + name,
            "-config", "ca.cnf", "-out", name + ".csr")
        run("openssl", "ca", "-batch", "-notext", "-config", "ca.cnf", "-extensions", "client",
            "-startdate", stamp(now - 60), "-enddate", stamp(end), "-in", name + ".csr",
            "-out", name + ".crt")
    run("openssl", "ca", "-batch", "-config", "ca.cnf", "-gencrl", "-crl_lastupdate",
        stamp(now - 60), "-crl_nextupdate", stamp(crl_end), "-out", "crl.pem")


def pki_ctx(d, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(os.path.join(d, name + ".crt"), os.path.join(d, name + ".key"))
    return ctx


@test("gw/verify-cache/until-notAfter-and-nextUpdate", timeout=120)
def t_verify_cache_time():
    """ssl_verify_cache (on by default): a client that comes back with the same chain is
    accepted from the cache, but only until the next instant at which the verification
    could change. A client certificate that expires, and a CRL whose nextUpdate passes,
    while their acceptance is cached: the next handshake is verified again and refused,
    with the reason nginx would log."""
    need_gw()
    d = os.path.join(TMPROOT, "vcache-pki")
    os.makedirs(d, exist_ok=True)
    window = 10 * SLOW
    end = int(time.time()) + window
    short_pki(d, end, end)
    with EchoBackend() as be:
        ports = {"P0": free_port(), "P1": free_port(), "BPORT": be.port}
        blocks = [VC_BLOCK % dict(port="P0", ca=d + "/ca.crt", verify="on", extra=""),
                  VC_BLOCK % dict(port="P1", ca=d + "/ca.crt", verify="on",
                                  extra="ssl_crl %s/crl.pem;" % d)]
        gw = Server("gw", http=blocks, ports=ports, name="vcache").start()
        short, long_ = pki_ctx(d, "short"), pki_ctx(d, "long")
        for i in (1, 2):
            check_eq(vc_get(ports["P0"], "/short-%d" % i, ctx=short),
                     (200, "SUCCESS"), "short-lived certificate, connection %d" % i)
            check_eq(vc_get(ports["P1"], "/crl-%d" % i, ctx=long_),
                     (200, "SUCCESS"), "certificate under a CRL, connection %d" % i)
        check(time.time() < end - 0.5, "the connections took the whole %d s window" % window)
        time.sleep(max(0.0, end + 1.2 - time.time()))
        st, why = vc_get(ports["P0"], "/short-late", ctx=short)
        check(st is None, "expired certificate accepted (from the cache?): %r" % ((st, why),))
        st, why = vc_get(ports["P1"], "/crl-late", ctx=long_)
        check(st is None, "certificate accepted after the CRL's nextUpdate: %r" % ((st, why),))
        time.sleep(0.3)
        log = gw.logtext()
        check(re.search(r'certificate "CN=vcache-short" expired on', log),
              "no 'expired' reason in the log: %s" % log[-1200:])
        check("CRL has expired" in log, "no 'CRL has expired' in the log: %s" % log[-1200:])
        check_eq(cache_hits(gw), 2, "chains accepted from the cache (the second of each pair)")
        check_eq(sorted(r["target"] for r in be.requests),
                 ["/crl-1", "/crl-2", "/short-1", "/short-2"], "requests at the backend")


@test("gw/verify-cache/only-clean-results", timeout=120)
def t_verify_cache_clean():
    """Only a clean acceptance is cached: with optional_no_ca and ssl_verify_failure http, a
    self-signed client (forgiven, FAILED:...) and an expired one (400, nginx's 495 page) are verified again
    each time and get the same answer; a good one is accepted from the cache the second
    time. The answers are the same with ssl_verify_cache off, which caches nothing."""
    want = [("client-good", (200, "SUCCESS")),
            ("client-self", (200, "FAILED:self-signed certificate")),
            ("client-expired", (400, None)),
            ("client-int2", (200, "SUCCESS"))]
    for cache, hits in (("on", 2), ("off", 0)):
        with EchoBackend() as be:
            ports = {"P0": free_port(), "BPORT": be.port}
            blk = VC_BLOCK % dict(port="P0", ca="@CERTS@/ca-all.pem", verify="optional_no_ca",
                                  extra="ssl_verify_failure http; ssl_verify_cache %s;" % cache)
            gw = Server("gw", http=[blk], ports=ports, name="vcache-" + cache).start()
            for i in (1, 2):
                for name, exp in want:
                    check_eq(vc_get(ports["P0"], "/%s-%d" % (name, i), certname=name), exp,
                             "ssl_verify_cache %s: %s, connection %d" % (cache, name, i))
            check_eq(cache_hits(gw), hits, "ssl_verify_cache %s: chains from the cache" % cache)


def handshake_then(c, data, split=0, pause=0.0, close_notify=False, raw=b""):
    """Handshake @c (TlsConn) and send @data (a list of writes, one record each) in the same
    write as the client's last flight: in TLS 1.3 its Finished and the records right after,
    then a close_notify if asked, then @raw bytes as they are. With @split, the write stops
    @split bytes short (inside the last record) and the rest follows @pause seconds later."""
    c.handshake(flush=False)
    for d in data:
        c.obj.write(d)
    if close_notify:
        try:
            c.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
    out = c.out.read() + raw
    if split:
        c.sock.sendall(out[:-split])
        time.sleep(pause)
        out = out[-split:]
    c.sock.sendall(out)


def closed_promptly(c, what):
    """@c's server answers nothing and closes (an alert, a reset or EOF) well before the
    client's read timeout; returns the response if there was one (a failure)."""
    t0 = time.monotonic()
    try:
        r = read_response(c)
    except (ssl.SSLError, ConnectionError):
        r = None
    except OSError as e:  # the read timed out: the server neither answered nor closed
        raise TestFailure("%s: no answer and not closed after %.1f s: %s" % (
            what, time.monotonic() - t0, e))
    check(time.monotonic() - t0 < 5 * SLOW, "%s: closed only after %.1f s" % (
        what, time.monotonic() - t0))
    return r


@test("gw/read-ahead/request-with-finished", timeout=180)
def t_read_ahead_http():
    """On tier U the handshake reads ahead: a request that arrives in the same TCP write as the
    client's Finished (TLS 1.3, and a resumed TLS 1.2 handshake, whose Finished is the
    client's last), whole, cut inside its record, two pipelined, or followed by close_notify,
    is decrypted from OpenSSL's buffer and answered, its forged identity headers replaced as
    always. Bytes that are no TLS record after Finished close the connection. A client that
    fails verification gets nothing to the backend, its request in the same write or not
    (ssl_verify_failure handshake, and http: the 400 page). Each case runs with ssl_ktls off
    and with the default auto (tier K where the kernel has TLS: no read-ahead there)."""
    for ktls in ("ssl_ktls off;", ""):
        tag = "off" if ktls else "auto"
        with EchoBackend() as be, gw_http(be, extra=ktls) as gw:
            for ver in ("1.3", "1.2"):
                for how, split in (("whole", 0), ("cut", 7)):
                    path = "/ra/%s/%s/%s" % (tag, ver, how)
                    with TlsConn(port_of(gw), "client-good", version=ver) as c:
                        handshake_then(c, [http_get(path, extra=FORGED_HDRS)], split,
                                       0.3 * SLOW)
                        r = read_response(c)
                        check(r is not None and r.status == 200,
                              "%s TLS%s %s: %r" % (tag, ver, how, r and r.status))
                        check_identity(rec_for(be, path), "client-good", path)
                with TlsConn(port_of(gw), "client-good", version=ver) as c:
                    paths = ["/ra/%s/%s/pipe-%d" % (tag, ver, i) for i in (1, 2)]
                    handshake_then(c, [http_get(p) for p in paths])
                    rd = _TlsReader(c)
                    for p in paths:
                        r = read_response(c, rd)
                        check(r is not None and r.status == 200, "%s: %r" % (
                            p, r and r.status))
                        check_eq(json.loads(r.body)["target"], p, p + ": answer order")
            # TLS 1.2 resumed: the client's Finished comes last, the request with it
            with TlsConn(port_of(gw), "client-good", version="1.2") as c:
                c.handshake()
                c.send(http_get("/ra/%s/1.2-first" % tag))
                check(read_response(c) is not None, "TLS 1.2 first connection: no answer")
                sess = c.session
            for how, split in (("whole", 0), ("cut", 7)):
                path = "/ra/%s/1.2-resumed/%s" % (tag, how)
                with TlsConn(port_of(gw), "client-good", version="1.2", session=sess) as c:
                    handshake_then(c, [http_get(path, extra=FORGED_HDRS)], split, 0.3 * SLOW)
                    check(c.obj.session_reused, "%s: TLS 1.2 session not resumed" % path)
                    r = read_response(c)
                    check(r is not None and r.status == 200, "%s: %r" % (path, r and r.status))
                    check_identity(rec_for(be, path), "client-good", path)
            # the request and the client's close_notify with its Finished: answered
            path = "/ra/%s/then-close" % tag
            with TlsConn(port_of(gw), "client-good", version="1.3") as c:
                handshake_then(c, [http_get(path)], close_notify=True)
                r = read_response(c)
                check(r is not None and r.status == 200, "%s: %r" % (path, r and r.status))
                check_identity(rec_for(be, path), "client-good", path)
            # bytes that are no TLS record after Finished: closed, nothing reaches the backend
            with TlsConn(port_of(gw), "client-good", version="1.3") as c:
                handshake_then(c, [], raw=b"GET /ra/garbage HTTP/1.1\r\nHost: x\r\n\r\n")
                r = closed_promptly(c, "%s: garbage after Finished" % tag)
                check(r is None, "%s: garbage after Finished: answered %r" % (tag, r and r.status))
            for certname in ("client-expired", "client-self"):
                with TlsConn(port_of(gw), certname, version="1.3") as c:
                    try:
                        handshake_then(c, [http_get("/ra/refused/" + certname)])
                    except (ssl.SSLError, ConnectionError):
                        pass
                    r = closed_promptly(c, "%s: %s" % (tag, certname))
                    check(r is None, "%s: %s answered %r" % (tag, certname, r and r.status))
            check(not [r for r in be.requests if "garbage" in r["target"] or
                       "refused" in r["target"]], "refused or garbage requests at the backend")
        with EchoBackend() as be, gw_http(be, extra=ktls + "ssl_verify_failure http;") as gw:
            with TlsConn(port_of(gw), "client-expired", version="1.3") as c:
                handshake_then(c, [http_get("/ra/page")])
                r = read_response(c)
                check(r is not None and r.status == 400, "%s ssl_verify_failure http: %r" % (
                    tag, r and r.status))
            with TlsConn(port_of(gw), "client-good", version="1.3") as c:
                handshake_then(c, [http_get("/ra/good")])
                r = read_response(c)
                check(r is not None and r.status == 200, "%s verified client: %r" % (
                    tag, r and r.status))
            check_eq([r["target"] for r in be.requests], ["/ra/good"],
                     "%s: requests at the backend" % tag)


@test("gw/read-ahead/stream-with-finished", timeout=120)
def t_read_ahead_stream():
    """Stream mode: bytes in the same write as the client's Finished (TLS 1.3), whole or cut
    inside their record, reach the backend after the PROXY header, in order, and come back
    (ssl_ktls off, and the default auto: tier K where the kernel has TLS)."""
    payload = det_bytes(3000, b"ra-stream")  # all in one read-ahead
    for ktls in ("ssl_ktls off;", ""):
        with ProxyReceiver() as be, gw_stream(be, extra=ktls) as gw:
            for how, split in (("whole", 0), ("cut", 11)):
                what = "%s %s" % (ktls or "auto", how)
                with TlsConn(port_of(gw), "client-good", version="1.3") as c:
                    handshake_then(c, [b"ECHO\n" + payload[:100], payload[100:]], split,
                                   0.3 * SLOW)
                    # all of it echoed before the client sends anything else
                    got = _TlsReader(c).exact(len(payload))
                    check(got is not None, "%s: the echo stopped short" % what)
                    check_eq(hashlib.sha256(got).hexdigest(),
                             hashlib.sha256(payload).hexdigest(), "%s: echoed bytes" % what)
                    c.shutdown_write()
                    check_eq(c.recv_all(), b"", "%s: bytes after the echo" % what)
            check_eq(len(be.headers), 2, "PROXY headers at the backend")


@test("gw/read-ahead/handshake-reads", timeout=120)
def t_read_ahead_reads():
    """Tier U reads the client's handshake flights whole: read() calls per new mTLS connection
    (handshake, one GET, close), counted by the kernel (/proc/PID/io syscr). Without read-ahead
    OpenSSL reads each record's header and body apart: 12 per TLS 1.2 handshake."""
    n = 20
    with EchoBackend() as be, gw_http(be, extra="ssl_ktls off;") as gw:
        def syscr():
            with open("/proc/%d/io" % gw.proc.pid) as f:
                return int(re.search(r"syscr: (\d+)", f.read()).group(1))
        for ver in ("1.2", "1.3"):
            before = syscr()
            for i in range(n):
                with TlsConn(port_of(gw), "client-good", version=ver) as c:
                    c.handshake()
                    c.send(http_get("/reads/%s/%d" % (ver, i), close=True))
                    r = read_response(c)
                    check(r is not None and r.status == 200, "TLS%s #%d: %r" % (
                        ver, i, r and r.status))
            per = (syscr() - before) / n
            print("      TLS%s: %.1f read() calls per connection" % (ver, per))
            check(per <= 5, "TLS%s: %.1f read() calls per connection" % (ver, per))
