# SPDX-License-Identifier: MIT
"""Tier K (kernel TLS) end to end. These need a kernel with TLS: they run in
the VM of `make vmtest` (Debian's 6.1 kernel under qemu) and skip, saying so,
on a kernel without it (the dev/CI host; there the same gateway tests run on
tier U). Every test checks from the gateway's log that tier K really ran and
from /proc/net/tls_stat that the kernel installed TX and RX."""

import hashlib
import os
import re
import subprocess
import time

from lib import (EchoBackend, ProxyReceiver, Server, Skip, Tap, TestFailure, TlsConn, _TlsReader,
                 cert, check, check_eq, det_bytes, free_port, http_get, need_gw, read_response,
                 test, walk_tls_records, SLOW, TMPROOT)

NBYTES = int(os.environ.get("KTLS_BYTES", str(64 << 20)))
MARKER = b"PLAINTEXT-MARKER-6b1f0d"

# (label, version, ssl_protocols, TLS 1.2 cipher list, TLS 1.3 ciphersuite, log cipher)
COMBOS = [
    ("tls12-aes128gcm", "1.2", "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", None,
     "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("tls12-aes256gcm", "1.2", "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", None,
     "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("tls12-chacha20", "1.2", "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", None,
     "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("tls13-aes128gcm", "1.3", "TLSv1.3", None, "TLS_AES_128_GCM_SHA256",
     "TLS_AES_128_GCM_SHA256"),
    ("tls13-aes256gcm", "1.3", "TLSv1.3", None, "TLS_AES_256_GCM_SHA384",
     "TLS_AES_256_GCM_SHA384"),
    ("tls13-chacha20", "1.3", "TLSv1.3", None, "TLS_CHACHA20_POLY1305_SHA256",
     "TLS_CHACHA20_POLY1305_SHA256"),
]

BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols %(protos)s;
        %(ciphers)s
        ssl_ktls on;
        %(body)s
    }
"""
STREAM_BODY = "proxy_pass 127.0.0.1:@BPORT@;\n        proxy_protocol on;"
HTTP_BODY = """location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
        }"""


def kernel_has_tls():
    if os.path.exists("/proc/net/tls_stat"):
        return True
    import socket
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    a.listen(1)
    c = socket.create_connection(a.getsockname())
    s, _ = a.accept()
    try:
        s.setsockopt(socket.SOL_TCP, 31, b"tls")  # TCP_ULP
        return True
    except OSError:
        return False
    finally:
        for x in (s, c, a):
            x.close()


def need_ktls():
    need_gw()
    if not kernel_has_tls():
        raise Skip("no kernel TLS in this kernel: these run in `make vmtest`")


def tls_stat():
    out = {}
    try:
        with open("/proc/net/tls_stat") as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
    except OSError:
        pass
    return out


def conf_env(suite):
    """OPENSSL_CONF that limits the gateway's TLS 1.3 ciphersuites (nginx has no
    directive for them; OpenSSL reads the system configuration)."""
    if not suite:
        return None
    path = os.path.join(TMPROOT, "openssl-%s.cnf" % suite)
    with open(path, "w") as f:
        f.write("openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sd\n"
                "[sd]\nCiphersuites = %s\n" % suite)
    return path


def start_gw(combo, body, bport):
    label, ver, protos, c12, c13, _ = combo
    ciphers = "ssl_ciphers %s;" % c12 if c12 else ""
    text = BLOCK % dict(protos=protos, ciphers=ciphers, body=body)
    ports = {"P0": free_port(), "BPORT": bport}
    kw = {"stream": [text]} if "proxy_protocol" in body else {"http": [text]}
    env = conf_env(c13)
    old = os.environ.get("OPENSSL_CONF")
    if env:
        os.environ["OPENSSL_CONF"] = env
    try:
        srv = Server("gw", ports=ports, name="ktls-" + label, **kw).start()
    finally:
        if env:
            if old is None:
                del os.environ["OPENSSL_CONF"]
            else:
                os.environ["OPENSSL_CONF"] = old
    return srv


def check_tier_k(gw, combo, what):
    label, ver, _, _, _, cipher = combo
    log = gw.logtext()
    lines = [ln for ln in log.splitlines() if " tier=" in ln and "client " in ln]
    check(lines, "%s: no connection line in the log: %s" % (what, log[-800:]))
    for ln in lines:
        check("tier=K" in ln, "%s: not tier K: %s" % (what, ln))
        check(cipher in ln and ("TLSv" + ver) in ln, "%s: want %s %s: %s" % (
            what, "TLSv" + ver, cipher, ln))
    # who installed RX: OpenSSL 3.0 does it for TLS 1.2 only; for 1.3 the gateway derives it
    rx_by = "RX by the gateway" if ver == "1.3" else "RX by OpenSSL"
    check(("kTLS: TX by OpenSSL, " + rx_by) in log, "%s: want %r in the log" % (what, rx_by))


def check_stat_delta(before, after, what):
    for k in ("TlsTxSw", "TlsRxSw"):
        check(after.get(k, 0) > before.get(k, 0), "%s: %s did not grow (%r -> %r)" % (
            what, k, before.get(k), after.get(k)))
    check_eq(after.get("TlsDecryptError", 0), before.get("TlsDecryptError", 0),
             what + ": TlsDecryptError")


def marked(n, seed):
    """n bytes with the plaintext marker planted every 64 KiB."""
    b = bytearray(det_bytes(n, seed))
    for off in range(0, n - len(MARKER), 65536):
        b[off:off + len(MARKER)] = MARKER
    return bytes(b)


def with_log(fn):
    """Failures carry the gateway's log tail (the VM keeps nothing afterwards)."""
    def run(*a):
        holder = {}
        try:
            return fn(holder, *a)
        except Skip:
            raise
        except Exception as e:
            gw = holder.get("gw")
            raise TestFailure("%s: %s; gateway log: %s" % (
                type(e).__name__, e, gw.logtext()[-1500:] if gw else "(not started)"))
    return run


def _mk_stream(combo):
    @test("ktls/stream/" + combo[0], timeout=300)
    @with_log
    def _t(holder):
        need_ktls()
        n = NBYTES
        with ProxyReceiver() as be:
            gw = holder["gw"] = start_gw(combo, STREAM_BODY, be.port)
            with gw, Tap(gw.ports["P0"]) as tap:
                before = tls_stat()
                up = marked(n, b"up")
                with TlsConn(tap.port, "client-good", version=combo[1], timeout=120) as c:
                    c.handshake()
                    c.send(b"SINK %d\n" % n)
                    c.send(up)
                    c.shutdown_write()
                    rd = _TlsReader(c)
                    line = rd.until(b"\n")
                    check(line is not None, "no answer after the half-close")
                    import json
                    j = json.loads(line)
                    check_eq((j["len"], j["sha256"]), (n, hashlib.sha256(up).hexdigest()),
                             "client->backend bytes")
                    down = rd.buf + c.recv_all()
                    check_eq(len(down), n, "backend->client length")
                    check_eq(hashlib.sha256(down).hexdigest(),
                             hashlib.sha256(det_bytes(n, b"sink")).hexdigest(),
                             "backend->client sha256")
                    check(not c.unclean, "no close_notify from the gateway")
                tap.done[0].wait(10 * SLOW)
                ok, why, types = walk_tls_records(bytes(tap.down[0]))
                check(ok, "gateway->client is not TLS records only: " + why)
                sink = det_bytes(n, b"sink")
                check(sink[4096:4160] not in tap.down[0], "backend plaintext on the client wire")
                check(MARKER not in tap.up[0] and MARKER not in tap.down[0],
                      "plaintext marker on the client wire")
                time.sleep(0.2)
                check_stat_delta(before, tls_stat(), combo[0])
                check_tier_k(gw, combo, combo[0])
    return _t


def _mk_http(combo):
    @test("ktls/http/" + combo[0], timeout=300)
    @with_log
    def _t(holder):
        need_ktls()
        n = 1 << 20
        with EchoBackend() as be:
            gw = holder["gw"] = start_gw(combo, HTTP_BODY, be.port)
            with gw:
                before = tls_stat()
                body = marked(n, b"body")
                with TlsConn(gw.ports["P0"], "client-good", version=combo[1], timeout=120) as c:
                    c.handshake()
                    rd = _TlsReader(c)
                    c.send(b"POST /k/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
                           b"X-SSL-Client-Verify: forged\r\n\r\n" % n + body)
                    r = read_response(c, rd)
                    check(r is not None and r.status == 200, "POST")
                    import json
                    j = json.loads(r.body)
                    check_eq((j["body_len"], j["body_sha256"]),
                             (n, hashlib.sha256(body).hexdigest()), "request body")
                    hm = {k.lower(): v for k, v in j["headers"]}
                    check_eq(hm.get("x-ssl-client-verify"), "SUCCESS", "identity header")
                    c.send(http_get("/big/%d" % n))
                    r = read_response(c, rd)
                    check(r is not None and r.status == 200 and len(r.body) == n,
                          "GET /big: %r" % ((r and (r.status, len(r.body))),))
                    check_eq(hashlib.sha256(r.body).hexdigest(), r.header("X-Sha256"),
                             "response body sha256")
                check_stat_delta(before, tls_stat(), combo[0])
                check_tier_k(gw, combo, combo[0])
    return _t


for _c in COMBOS:
    _mk_stream(_c)
    _mk_http(_c)


@test("ktls/keyupdate-closes", timeout=120)
def t_keyupdate():
    """A TLS 1.3 KeyUpdate from the client (openssl s_client's "k" command):
    6.1 cannot rekey, so the connection is closed with a logged, counted
    reason; nothing of it reaches the backend; the gateway serves on."""
    need_ktls()
    combo = COMBOS[3]
    with ProxyReceiver() as be:
        gw = start_gw(combo, STREAM_BODY, be.port)
        with gw:
            p = subprocess.Popen(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.ports["P0"], "-tls1_3",
                 "-cert", cert("client-good.crt"), "-key", cert("client-good.key"),
                 "-CAfile", cert("ca-root.pem")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            p.stdin.write(b"ECHO\n")
            p.stdin.flush()
            time.sleep(2 * SLOW)
            p.stdin.write(b"k\n")
            p.stdin.flush()
            time.sleep(2 * SLOW)
            try:
                out, _ = p.communicate(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            log = gw.logtext()
            check("KeyUpdate" in log, "no KeyUpdate line in the log: %s / client: %s" % (
                log[-600:], out[-400:]))
            # the gateway still serves
            with TlsConn(gw.ports["P0"], "client-good", version="1.3") as c:
                c.handshake()
                c.send(b"ECHO\nstill\n")
                check_eq(_TlsReader(c).until(b"\n"), b"still\n", "echo after a KeyUpdate")
            check_tier_k(gw, combo, "keyupdate")


@test("ktls/resets-mid-stream", timeout=120)
def t_resets():
    """A client that resets mid-stream and a backend that dies mid-stream leave
    the gateway serving (tier K)."""
    need_ktls()
    import socket
    import struct
    combo = COMBOS[4]
    with ProxyReceiver() as be:
        gw = start_gw(combo, STREAM_BODY, be.port)
        with gw:
            c = TlsConn(gw.ports["P0"], "client-good", version="1.3")
            c.handshake()
            c.send(b"ECHO\n" + det_bytes(1 << 20, b"r"))
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sock.close()
            time.sleep(0.5 * SLOW)
            for conn in list(be.conns):
                try:
                    conn.close()
                except OSError:
                    pass
            with TlsConn(gw.ports["P0"], "client-good", version="1.3") as c2:
                c2.handshake()
                c2.send(b"ECHO\nalive\n")
                check_eq(_TlsReader(c2).until(b"\n"), b"alive\n", "served after resets")
            check(gw.alive(), "gateway alive")
