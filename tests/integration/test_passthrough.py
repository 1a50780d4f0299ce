# SPDX-License-Identifier: MIT
"""Passthrough routes (ssl_passthrough NAME HOST:PORT) on the host kernel: the
ClientHello is peeked, a routed name is spliced to its backend by the eBPF
sockmap (the gateway never terminates it), other names share the port and are
terminated as before. Needs root (BPF); skipped with the reason otherwise."""

import hashlib
import json
import re
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

from lib import (Server, Skip, Tap, TestFailure, _ThreadedServer, cert, check,
                 check_eq, det_bytes, free_port, need_gw, parse_pp2, raw_connect,
                 read_until_closed, register_closer, test, walk_tls_records, GW_BIN, SLOW)

PT_BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        proxy_pass 127.0.0.1:@TPORT@;
        ssl_passthrough pass.example @BPORT@;
        ssl_passthrough *.wild.example @BPORT@;
        %(extra)s
    }
"""


def gw_pt(bport, tport=None, extra="", env=None, top=""):
    """A stream gateway: passthrough names to 127.0.0.1:bport, the rest terminated
    to tport (a ProxyReceiver unless given)."""
    need_gw()
    ports = {"P0": free_port(), "BPORT": "127.0.0.1:%d" % bport, "TPORT": tport or 9}
    srv = Server("gw", stream=[PT_BLOCK % dict(extra=extra)], ports=ports, name="pt", top=top)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return srv.start()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def need_bpf(srv):
    # the port listens before the programs are loaded (slow under TCG): wait for the start
    deadline = time.monotonic() + 20 * SLOW
    while "eBPF sockmap" not in srv.logtext() and time.monotonic() < deadline:
        srv.check_alive("start")
        time.sleep(0.05)
    t = srv.logtext()
    if "eBPF sockmap loaded" not in t:
        raise Skip("the gateway could not load its BPF programs here: %s" % t[-300:])


def client_hello(sni, alpn=None):
    """The first flight of a real TLS client (OpenSSL through Python's ssl)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        d = s.recv(min(1 << 20, n - len(b)))
        if not d:
            break
        b += d
    return bytes(b)


def read_hello(s):
    """Read one TLS record (the ClientHello) from a backend socket."""
    h = recv_exact(s, 5)
    if len(h) < 5:
        return h
    return h + recv_exact(s, struct.unpack("!H", h[3:5])[0])


class RawBackend(_ThreadedServer):
    """A passthrough backend that speaks raw bytes after the client's ClientHello
    record (optionally after a PROXY v2 header): self.handler(conn, index) runs per
    connection; self.hellos / self.pp2 collect what arrived first."""

    def __init__(self, handler, proxy=False):
        self.handler = handler
        self.proxy = proxy
        self.hellos = []
        self.pp2 = []
        super().__init__()

    def serve(self, c, addr):
        if self.proxy:
            hdr = recv_exact(c, 16)
            hdr += recv_exact(c, struct.unpack("!H", hdr[14:16])[0])
            with self._mu:
                self.pp2.append(parse_pp2(hdr))
        h = read_hello(c)
        with self._mu:
            i = len(self.hellos)
            self.hellos.append(h)
        self.handler(c, i)


class PlainEcho(_ThreadedServer):
    """The terminated path's backend (no PROXY header): echoes."""

    def serve(self, c, addr):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)


class TlsBackend(_ThreadedServer):
    """A backend that terminates TLS itself with server-rsa.crt and echoes."""

    def __init__(self):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert("server-rsa.crt"), cert("server-rsa.key"))
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.snis = []
        self.ctx.sni_callback = lambda o, name, ctx: self.snis.append(name)
        super().__init__()

    def serve(self, c, addr):
        t = self.ctx.wrap_socket(c, server_side=True)
        while True:
            d = t.recv(65536)
            if not d:
                break
            t.sendall(d)
        try:
            t.unwrap()
        except (OSError, ssl.SSLError):
            pass


def tls_client(port, sni, certname=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if certname:
        ctx.load_cert_chain(cert(certname + ".chain.crt"), cert(certname + ".key"))
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    return ctx.wrap_socket(s, server_hostname=sni)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def cpu_seconds(pid):
    """CPU time of @pid's live threads, in ns from /proc/PID/task/*/schedstat (the tick
    based utime+stime of /proc/PID/stat moves in 10 ms steps: a 20 ms reading was 2 ticks
    of sampling luck, not work); /proc/PID/stat where schedstat is missing."""
    try:
        ns = 0
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                ns += int(f.read().split()[0])
        return ns / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def gw_maps(pid):
    """Entries now in the sock_hash and peers maps that the process @pid holds
    (found through its fds: /proc/PID/fdinfo names each map's type and id;
    dumped with bpftool). None where that cannot be read."""
    ids = {}
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if "bpf-map" not in os.readlink("/proc/%d/fd/%s" % (pid, fd)):
                    continue
                with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                    info = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
            except OSError:
                continue
            kind = {"18": "sock_hash", "1": "peers"}.get(info.get("map_type", "").strip())
            if kind and "map_id" in info:
                ids[kind] = info["map_id"].strip()
    except OSError:
        return None
    if len(ids) != 2:
        return None
    res = {}
    for kind, mid in ids.items():
        try:
            out = subprocess.run(["bpftool", "-j", "map", "dump", "id", mid],
                                 capture_output=True, timeout=20).stdout
            res[kind] = len(json.loads(out or b"[]"))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
    return res


def wait_maps_empty(pid, timeout=10.0):
    deadline = time.monotonic() + timeout * SLOW
    m = gw_maps(pid)
    while m and (m["sock_hash"] or m["peers"]) and time.monotonic() < deadline:
        time.sleep(0.1)
        m = gw_maps(pid)
    return m


def bulk(port, sni, n, backend_bytes):
    """Client side of a bulk transfer through the gateway: send the ClientHello
    and n bytes, read n bytes back; returns (sha256 sent, sha256 received, len)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60 * SLOW)
    data = det_bytes(1 << 20, b"up")
    s.sendall(client_hello(sni))
    res = {}

    def sender():
        h = hashlib.sha256()
        left = n
        while left:
            chunk = data[:min(left, len(data))]
            s.sendall(chunk)
            h.update(chunk)
            left -= len(chunk)
        s.shutdown(socket.SHUT_WR)
        res["up"] = h.hexdigest()

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    h = hashlib.sha256()
    got = 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
    t.join(60 * SLOW)
    s.close()
    return res.get("up"), h.hexdigest(), got


def bulk_backend(n, results):
    data = det_bytes(1 << 20, b"down")

    def handler(c, i):
        h = hashlib.sha256()
        sent = hashlib.sha256()

        def sender():
            left = n
            while left:
                chunk = data[:min(left, len(data))]
                c.sendall(chunk)
                sent.update(chunk)
                left -= len(chunk)
            c.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        got = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            got += len(d)
        t.join(60 * SLOW)
        results.append((h.hexdigest(), got, sent.hexdigest()))
    return handler


@test("passthrough/tls-end-to-end-and-terminated-on-one-port", timeout=60)
def t_e2e():
    """A routed name reaches the backend's own TLS (its certificate, its ALPN,
    the SNI unchanged), exact and wildcard; other names and no SNI are terminated
    by the gateway with mTLS on the same port; the error log names the route."""
    be = TlsBackend()
    rx = PlainEcho()
    with gw_pt(be.port, rx.port) as gw:
        need_bpf(gw)
        port = gw.ports["P0"]
        for name in ("pass.example", "a.b.wild.example"):
            t = tls_client(port, name)
            check_eq(t.getpeercert(binary_form=True), der(cert("server-rsa.crt")),
                     "%s: the backend's certificate" % name)
            check_eq(t.selected_alpn_protocol(), "h2", "ALPN negotiated by the backend")
            msg = os.urandom(100000)
            t.sendall(msg)
            check_eq(recv_exact(t, len(msg)), msg, "%s: echo through the sockmap" % name)
            t.close()
        check_eq(be.snis, ["pass.example", "a.b.wild.example"], "SNI seen by the backend")
        for sni in ("localhost", "other.example", None):
            t = tls_client(port, sni, "client-good")
            check_eq(t.getpeercert(binary_form=True), der(cert("server.crt")),
                     "sni %r: terminated by the gateway" % sni)
            t.sendall(b"hello")
            check_eq(recv_exact(t, 5), b"hello", "terminated relay for sni %r" % sni)
            t.close()
        check_eq(rx.accepts, 3, "terminated connections at their backend")
        time.sleep(0.2)
        log = gw.logtext()
        check('sni "pass.example" alpn "h2,http/1.1" -> 127.0.0.1:%d (sockmap)' % be.port
              in log, "route logged: %r" % log[-1500:])
        m = wait_maps_empty(gw.proc.pid)
        if m is not None:
            check_eq(m, {"sock_hash": 0, "peers": 0}, "maps empty after the connections")


@test("passthrough/proxy-v2-authority", timeout=60)
def t_proxy_v2():
    """proxy_protocol on: a PROXY v2 header (real addresses, AUTHORITY = SNI, no SSL
    TLV: nothing was terminated) precedes the ClientHello, which arrives intact."""
    be = RawBackend(lambda c, i: c.sendall(b"ok"), proxy=True)
    with gw_pt(be.port, extra="proxy_protocol on;") as gw:
        need_bpf(gw)
        hello = client_hello("pass.example")
        s = raw_connect(gw.ports["P0"])
        s.sendall(hello)
        check_eq(recv_exact(s, 2), b"ok", "backend answer")
        cport = s.getsockname()[1]
        s.close()
        check_eq(be.hellos, [hello], "ClientHello byte for byte")
        h = be.pp2[0]
        check_eq((h["version"], h["command"], h["src"], h["sport"], h["dport"]),
                 (2, 1, "127.0.0.1", cport, gw.ports["P0"]), "addresses")
        check_eq([(t["type"], t["value"]) for t in h["tlvs"]], [(2, b"pass.example")],
                 "TLVs: AUTHORITY only")


@test("passthrough/split-clienthello", timeout=60)
def t_split():
    """A ClientHello that arrives in pieces (3 segments, 200 ms apart) and one split
    over two TLS records both reach the backend whole."""
    be = RawBackend(lambda c, i: c.sendall(b"ok"))
    with gw_pt(be.port) as gw:
        need_bpf(gw)
        hello = client_hello("pass.example")
        s = raw_connect(gw.ports["P0"])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b in ((0, 3), (3, 60), (60, len(hello))):
            s.sendall(hello[a:b])
            time.sleep(0.2)
        check_eq(recv_exact(s, 2), b"ok", "answer after a split ClientHello")
        s.close()
        check_eq(be.hellos[0], hello, "segments reassembled by TCP, untouched")
        body = hello[5:]
        two = hello[:3] + struct.pack("!H", 40) + body[:40] + hello[:3] + \
            struct.pack("!H", len(body) - 40) + body[40:]
        s = raw_connect(gw.ports["P0"])
        s.sendall(two)
        # the backend reads one record; the second follows it
        check_eq(recv_exact(s, 2), b"ok", "answer after two records")
        s.close()


@test("passthrough/sni-missing-malformed-unrouted", timeout=60)
def t_malformed():
    """No SNI, an unrouted SNI and a garbage first flight go to the terminated path:
    OpenSSL answers them (a handshake, or an alert and a close); the gateway stays
    up and the backend never sees them."""
    be = RawBackend(lambda c, i: c.sendall(b"ok"))
    with gw_pt(be.port) as gw:
        need_bpf(gw)
        port = gw.ports["P0"]
        s = raw_connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: pass.example\r\n\r\n")
        data = read_until_closed(s, 5 * SLOW)[0]
        ok, why, types = walk_tls_records(data)
        check(ok and types in ([], [21]), "garbage: TLS alert or close only: %r" % data[:40])
        s.close()
        s = raw_connect(port)
        s.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")  # truncated body
        read_until_closed(s, 5 * SLOW)
        s.close()
        check_eq(be.accepts, 0, "nothing reached the passthrough backend")
        gw.check_alive("garbage first flights")


@test("passthrough/raw-capture-terminated-never-plaintext", timeout=60)
def t_capture():
    """On a port with passthrough routes, what a terminated connection sends to the
    client is TLS records only (the capture is taken between client and gateway)."""
    rx = PlainEcho()
    be = RawBackend(lambda c, i: None)
    with gw_pt(be.port, rx.port) as gw:
        need_bpf(gw)
        tap = Tap(gw.ports["P0"])
        t = tls_client(tap.port, "localhost", "client-good")
        t.sendall(b"PLAINTEXT-MARKER" * 1000)
        check_eq(len(recv_exact(t, 16000)), 16000, "echo")
        t.close()
        check(tap.wait(0), "tap finished")
        down = bytes(tap.down[0])
        ok, why, _ = walk_tls_records(down)
        check(ok, "client wire: " + why)
        check(b"PLAINTEXT-MARKER" not in down, "no plaintext on the client wire")


@test("passthrough/100MiB-both-ways-cpu-vs-userspace", timeout=300)
def t_bulk_cpu():
    """100 MiB each way through a passthrough route, intact, with the sockmap; then the
    same through the userspace copy relay (KTLSGW_PASSTHROUGH_RELAY=copy) of the same
    binary. The sockmap gateway's CPU time must be under a tenth of the copy one's."""
    n = 100 << 20
    cpu = {}
    for mode in ("sockmap", "copy"):
        results = []
        be = RawBackend(bulk_backend(n, results))
        env = {"KTLSGW_PASSTHROUGH_RELAY": mode}
        with gw_pt(be.port, env=env) as gw:
            if mode == "sockmap":
                need_bpf(gw)
            pid = gw.proc.pid
            c0 = cpu_seconds(pid)
            t0 = time.monotonic()
            up, down, got = bulk(gw.ports["P0"], "pass.example", n, n)
            dt = time.monotonic() - t0
            deadline = time.monotonic() + 10 * SLOW
            while not results and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu[mode] = (cpu_seconds(pid) - c0, dt)
            check(results, "%s: backend finished" % mode)
            bh, bgot, bsent = results[0]
            check_eq((bgot, bh), (n, up), "%s: client -> backend intact" % mode)
            check_eq((got, down), (n, bsent), "%s: backend -> client intact" % mode)
            if mode == "sockmap":
                m = wait_maps_empty(pid)
                if m is not None:
                    check_eq(m, {"sock_hash": 0, "peers": 0}, "maps empty after the transfer")
        be.close()
    print("      gateway CPU for 2 x 100 MiB: sockmap %.3f s (%.2f s wall), userspace copy "
          "%.3f s (%.2f s wall)" % (cpu["sockmap"][0], cpu["sockmap"][1], cpu["copy"][0],
                                    cpu["copy"][1]), flush=True)
    check(cpu["copy"][0] > 0.02, "the copy relay used measurable CPU: %r" % cpu)
    check(cpu["sockmap"][0] < cpu["copy"][0] / 10,
          "sockmap gateway CPU %.3f s >= a tenth of the copy relay's %.3f s" % (
              cpu["sockmap"][0], cpu["copy"][0]))


def _pair(gw_port, sni="pass.example"):
    s = socket.create_connection(("127.0.0.1", gw_port), timeout=10 * SLOW)
    s.sendall(client_hello(sni))
    return s


@test("passthrough/half-close-both-ways", timeout=60)
def t_half_close():
    """The kernel does not forward a FIN through a redirect: the gateway does, after
    the bytes. Client FIN first: the backend reads all, then EOF, then answers and the
    client reads it all; backend FIN first: the client still sends after it."""
    def handler(c, i):
        if i == 0:
            got = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            c.sendall(hashlib.sha256(got).hexdigest().encode() + b" %d" % len(got))
            c.shutdown(socket.SHUT_WR)
        else:
            c.sendall(b"bye")
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            results.append(got)

    results = []
    be = RawBackend(handler)
    with gw_pt(be.port) as gw:
        need_bpf(gw)
        data = det_bytes(3 << 20)
        s = _pair(gw.ports["P0"])
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        ans = read_until_closed(s, 10 * SLOW)[0]
        check_eq(ans, hashlib.sha256(data).hexdigest().encode() + b" %d" % len(data),
                 "client FIN after 3 MiB: all bytes, then EOF, then the answer")
        s.close()
        s = _pair(gw.ports["P0"])
        check_eq(recv_exact(s, 3), b"bye", "backend bytes before its FIN")
        check_eq(s.recv(10), b"", "backend FIN forwarded")
        s.sendall(b"after-fin" * 1000)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10 * SLOW
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(results, [b"after-fin" * 1000], "client bytes after the backend's FIN")
        s.close()
        m = wait_maps_empty(gw.proc.pid)
        if m is not None:
            check_eq(m, {"sock_hash": 0, "peers": 0}, "maps empty")


@test("passthrough/resets-backend-death-shutdown", timeout=90)
def t_resets():
    """A client RST resets the backend side; the backend dying (RST) resets the
    client; a backend that is down fails the connect (client reset); SIGTERM drains
    a live passthrough connection and the shutdown log reports no map entry left."""
    events = []

    def handler(c, i):
        if i == 1:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # backend death: RST
            return
        try:
            d = c.recv(100)
            while d:
                d = c.recv(100)
            events.append("eof")
        except ConnectionResetError:
            events.append("reset")

    be = RawBackend(handler)
    with gw_pt(be.port) as gw:
        need_bpf(gw)
        port = gw.ports["P0"]
        s = _pair(port)
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        deadline = time.monotonic() + 10 * SLOW
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(events, ["reset"], "client RST reaches the backend as a reset")
        s = _pair(port)
        try:
            d = s.recv(10)
            check_eq(d, b"", "backend death: EOF or reset")
            reset = False
        except ConnectionResetError:
            reset = True
        check(reset, "backend death resets the client")
        s.close()
        log = gw.logtext()
        check("client reset the connection" in log and "backend reset the connection" in log,
              "reasons logged: %r" % log[-1500:])
    # a backend that is down: connect refused, the client is reset
    with gw_pt(free_port()) as gw:
        s = _pair(gw.ports["P0"])
        try:
            s.recv(10)
            refused = "eof"
        except ConnectionResetError:
            refused = "reset"
        check_eq(refused, "reset", "backend down: the client is reset")
        s.close()
        time.sleep(0.2)
        check("backend connect failed" in gw.logtext(), "reason logged: %r" % gw.logtext()[-800:])
    if True:
        # a live connection through a new backend, then SIGQUIT (stop now)
        live = RawBackend(lambda c, i: time.sleep(30))
        gw2 = gw_pt(live.port)
        s = _pair(gw2.ports["P0"])
        time.sleep(0.3)
        m = gw_maps(gw2.proc.pid)
        if m is not None:
            check_eq(m, {"sock_hash": 2, "peers": 2}, "a live pair in the maps")
        gw2.stop(signal.SIGQUIT)
        log = gw2.logtext()
        check("sockmap entries left: 0 sockets, 0 peers" in log,
              "shutdown leaves no map entry: %r" % log[-800:])
        s.close()


@test("passthrough/10000-short-connections-no-leak", timeout=300)
def t_many():
    """10 000 short passthrough connections (ClientHello, one byte back, close):
    afterwards the maps are empty and the gateway's fd count is back at baseline."""
    be = RawBackend(lambda c, i: c.sendall(b"x"))
    with gw_pt(be.port) as gw:
        need_bpf(gw)
        port = gw.ports["P0"]
        pid = gw.proc.pid
        hello = client_hello("pass.example")
        base = nfds(pid)
        errors = []
        n, nthreads = 10000, 8

        def worker(k):
            for _ in range(n // nthreads):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
                    s.sendall(hello)
                    if s.recv(1) != b"x":
                        errors.append("no byte")
                    s.close()
                except OSError as e:
                    errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(250 * SLOW)
        check(not errors, "%d errors, first %r" % (len(errors), errors[:3]))
        check_eq(be.accepts, n, "backend connections")
        deadline = time.monotonic() + 20 * SLOW
        while nfds(pid) > base and time.monotonic() < deadline:
            time.sleep(0.1)
        check_eq(nfds(pid), base, "gateway fds back at baseline")
        m = wait_maps_empty(pid)
        if m is None:
            raise Skip("the gateway's maps cannot be read (bpftool, /proc/PID/fdinfo)")
        check_eq(m, {"sock_hash": 0, "peers": 0}, "maps empty after 10 000 connections")


@test("passthrough/kernel-queue-limit-resets-a-stalled-transfer", timeout=60)
def t_queue_limit():
    """The sk_skb redirect queue has no limit of its own: behind a backend that does
    not read, a client could park gigabytes in kernel memory. With a limit of 8 MiB
    (KTLSGW_PT_QUEUE_MAX) the client can push at most the limit plus the socket
    buffers before the gateway resets the connection, logs why, and empties the maps."""
    be = RawBackend(lambda c, i: time.sleep(10))
    with gw_pt(be.port, env={"KTLSGW_PT_QUEUE_MAX": str(8 << 20)}) as gw:
        need_bpf(gw)
        s = _pair(gw.ports["P0"])
        s.setblocking(False)
        buf, sent, reset = b"q" * 65536, 0, False
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline and not reset:
            try:
                sent += s.send(buf)
            except BlockingIOError:
                time.sleep(0.005)
            except (ConnectionResetError, BrokenPipeError):
                reset = True
        s.close()
        check(reset, "reset after %d MiB" % (sent >> 20))
        check(sent < 64 << 20, "the client parked %d MiB in the kernel" % (sent >> 20))
        time.sleep(0.2)
        log = gw.logtext()
        check("the backend reads more slowly than the client sends" in log and
              "the backend fell too far behind" in log, "reason logged: %r" % log[-800:])
        m = wait_maps_empty(gw.proc.pid)
        if m is not None:
            check_eq(m, {"sock_hash": 0, "peers": 0}, "maps empty")


# ---------------------------------------------------------------------------
# worker_processes N: SO_REUSEPORT listeners, SK_REUSEPORT steering and migration


def _workers(log):
    return {int(m.group(2)): int(m.group(1))
            for m in re.finditer(r"worker process (\d+) \(worker (\d+)\)", log)}


def _served_by(log):
    return [int(p) for p in re.findall(r"\] (\d+)#0: conn=\d+ passthrough: 127", log)]


def _need_cpus(n):
    if len(os.sched_getaffinity(0)) < n:
        raise Skip("needs %d CPUs" % n)


@test("workers/steer-to-the-receiving-cpu", timeout=60)
def t_steer():
    """worker_processes 2: worker i is pinned to CPU i, and a connection made from
    CPU c (loopback: the SYN is processed on c) is accepted by worker c."""
    _need_cpus(2)
    be = RawBackend(lambda c, i: c.sendall(b"x"))
    hello = client_hello("pass.example")
    with gw_pt(be.port, top="worker_processes 2;") as gw:
        need_bpf(gw)
        check("steering by the receiving CPU" in gw.logtext(), "steering program loaded")
        workers = _workers(gw.logtext())
        check_eq(sorted(workers), [0, 1], "two workers")
        saved = os.sched_getaffinity(0)
        seen = {}
        try:
            for cpu in (0, 1, 0, 1):
                os.sched_setaffinity(0, {cpu})
                before = len(_served_by(gw.logtext()))
                for _ in range(5):
                    s = socket.create_connection(("127.0.0.1", gw.ports["P0"]), timeout=10)
                    s.sendall(hello)
                    check_eq(s.recv(1), b"x", "answer")
                    s.close()
                deadline = time.monotonic() + 5 * SLOW
                while len(_served_by(gw.logtext())) < before + 5 and \
                        time.monotonic() < deadline:
                    time.sleep(0.02)
                seen.setdefault(cpu, set()).update(_served_by(gw.logtext())[before:])
        finally:
            os.sched_setaffinity(0, saved)
        check_eq(seen, {0: {workers[0]}, 1: {workers[1]}}, "worker per receiving CPU")
    check("steered to the receiving CPU's worker 20," in gw.logtext(),
          "master's steering counters: %r" % gw.logtext()[-400:])


@test("workers/draining-worker-loses-no-queued-connection", timeout=60)
def t_drain_queue():
    """Connections queued on a worker's listener while it does not run (SIGSTOP),
    then that worker drains (SIGTERM, SIGCONT): every one is served, by it (io_uring
    had accepted them) or by the live worker (migrated when the listener closed).
    (A worker killed outright loses what io_uring accepted on its behalf: those
    sockets die with it.)"""
    _need_cpus(2)
    be = RawBackend(lambda c, i: c.sendall(b"x"))
    hello = client_hello("pass.example")
    with gw_pt(be.port, top="worker_processes 2;") as gw:
        need_bpf(gw)
        workers = _workers(gw.logtext())
        os.kill(workers[0], signal.SIGSTOP)
        saved = os.sched_getaffinity(0)
        socks = []
        try:
            os.sched_setaffinity(0, {0})
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", gw.ports["P0"]), timeout=10)
                s.sendall(hello)
                socks.append(s)
        finally:
            os.sched_setaffinity(0, saved)
        time.sleep(0.2)
        os.kill(workers[0], signal.SIGTERM)
        os.kill(workers[0], signal.SIGCONT)
        got = []
        for s in socks:
            try:
                got.append(s.recv(1))
            except OSError as e:
                got.append(repr(e))
            s.close()
        check_eq(got, [b"x"] * 20, "every queued connection served")
        check(set(_served_by(gw.logtext())) <= set(workers.values()), "served by the workers")
    m = re.search(r"migrated from a closing listener (\d+)", gw.logtext())
    check(m, "master's counters: %r" % gw.logtext()[-400:])
    print("      migrated from the closing listener: %s of 20" % m.group(1), flush=True)


@test("workers/reload-under-a-connection-storm-loses-nothing", timeout=120)
def t_reload_storm():
    """SIGHUP to the master twice during a storm of passthrough and terminated
    connections: new workers start, the old ones drain (their listeners close, queued
    connections migrate); every connection is served."""
    be = RawBackend(lambda c, i: c.sendall(b"x"))
    rx = PlainEcho()
    hello = client_hello("pass.example")
    with gw_pt(be.port, rx.port, top="worker_processes 2;") as gw:
        need_bpf(gw)
        port = gw.ports["P0"]
        stop = threading.Event()
        counts = {"ok": 0, "tls": 0}
        errors = []
        mu = threading.Lock()

        def storm(k):
            while not stop.is_set():
                try:
                    if k == 0:
                        t = tls_client(port, "localhost", "client-good")
                        t.sendall(b"y")
                        ok = recv_exact(t, 1) == b"y"
                        t.close()
                        key = "tls"
                    else:
                        s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
                        s.sendall(hello)
                        ok = s.recv(1) == b"x"
                        s.close()
                        key = "ok"
                    with mu:
                        if ok:
                            counts[key] += 1
                        else:
                            errors.append("no answer")
                except (OSError, ssl.SSLError) as e:
                    with mu:
                        errors.append(repr(e))

        ts = [threading.Thread(target=storm, args=(k,), daemon=True) for k in range(4)]
        for t in ts:
            t.start()
        for _ in range(2):
            time.sleep(1.0)
            os.kill(gw.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20 * SLOW
            n = gw.logtext().count("reconfigured:")
            while gw.logtext().count("reconfigured:") == n and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for t in ts:
            t.join(30 * SLOW)
        log = gw.logtext()
        check_eq(log.count("reconfigured:"), 2, "two reloads: %r" % log[-600:])
        check(not errors, "%d failed connections of %d, first %r" % (
            len(errors), counts["ok"] + counts["tls"] + len(errors), errors[:3]))
        check(counts["ok"] > 50 and counts["tls"] > 3, "storm volume %r" % counts)
    m = re.search(r"migrated from a closing listener (\d+)", gw.logtext())
    print("      storm: %d passthrough + %d terminated connections, 2 reloads, 0 lost; "
          "migrated from closing listeners: %s" % (counts["ok"], counts["tls"],
                                                  m.group(1) if m else "?"), flush=True)


@test("passthrough/without-bpf-userspace-fallback", timeout=60)
def t_no_bpf():
    """Run as nobody (no CAP_BPF): -V says the programs do not load, the start logs a
    warning, and passthrough routes still work, relayed by io_uring in userspace."""
    import shutil
    from lib import TMPROOT
    if not shutil.which("setpriv"):
        raise Skip("no setpriv")
    need_gw()
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", GW_BIN, "-V"], capture_output=True, text=True,
                         timeout=20)
    check("bpf: no (loading the sockmap programs: Operation not permitted" in out.stdout,
          "-V: %r" % out.stdout)
    d = os.path.join(TMPROOT, "nobody")
    os.makedirs(d, exist_ok=True)
    for n in ("server.crt", "server.key"):
        shutil.copy(cert(n), d)
        os.chown(os.path.join(d, n), 65534, 65534)
    os.chmod(TMPROOT, 0o711)
    be = RawBackend(lambda c, i: c.sendall(b"ok"))
    ports = {"P0": free_port(), "BPORT": "127.0.0.1:%d" % be.port, "TPORT": 9}
    block = PT_BLOCK.replace("@CERTS@/server.", d + "/server.") % dict(extra="")
    block = block.replace("ssl_client_certificate @CERTS@/ca-all.pem;", "")
    block = block.replace("ssl_verify_client on;", "")
    srv = Server("gw", stream=[block], ports=ports, name="nobpf")
    os.chmod(srv.dir, 0o755)
    os.chmod(srv.conf, 0o644)
    orig = srv.argv
    srv.argv = lambda: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all"] + orig()
    srv.start(wait_ports=[])
    with srv as gw:
        deadline = time.monotonic() + 10 * SLOW
        while "started" not in gw.logtext() and time.monotonic() < deadline:
            gw.check_alive("start")
            time.sleep(0.05)
        check("eBPF sockmap unavailable" in gw.logtext(), "warning: %r" % gw.logtext()[-600:])
        hello = client_hello("pass.example")
        s = raw_connect(gw.ports["P0"])
        s.sendall(hello)
        check_eq(recv_exact(s, 2), b"ok", "answer through the userspace relay")
        s.close()
        check_eq(be.hellos, [hello], "ClientHello intact")
        time.sleep(0.2)
        check("(userspace copy)" in gw.logtext(), "relay logged: %r" % gw.logtext()[-600:])


@test("passthrough/idle-timeout-and-access-log", timeout=120)
def t_pt_idle():
    """A passthrough pair that moves no byte either way for proxy_timeout is
    closed with a logged reason (the sockmap carries the bytes, so the gateway
    reads its counters), while a pair that keeps talking past the same timeout
    is not; each routed connection gets one access_log line (tier=P, SNI, ALPN,
    target, bytes, reason)."""
    from lib import TMPROOT

    def handler(c, i):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)

    path = os.path.join(TMPROOT, "pt-access-%d.log" % free_port())
    with RawBackend(handler) as be:
        gw = gw_pt(be.port, extra="proxy_timeout 2s;\n        access_log %s;" % path)
        with gw:
            need_bpf(gw)
            idle = raw_connect(gw.ports["P0"])
            idle.sendall(client_hello("pass.example", ["h2"]))
            busy = raw_connect(gw.ports["P0"])
            busy.sendall(client_hello("a.wild.example"))
            deadline = time.monotonic() + 3 * SLOW
            while len(be.hellos) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            check_eq(len(be.hellos), 2, "both routed")
            # the busy pair talks every 0.5 s for 4.5 s; the idle one stays silent
            busy.settimeout(5 * SLOW)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.5:
                busy.sendall(b"ping")
                check_eq(recv_exact(busy, 4), b"ping", "busy pair echo")
                time.sleep(0.5)
            idle.settimeout(5 * SLOW)
            try:
                got = idle.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = None
            check_eq(got, b"", "the idle pair was closed (FIN)")
            busy.sendall(b"still")
            check_eq(recv_exact(busy, 5), b"still", "the busy pair is still open")
            check("timed out (proxy_timeout" in gw.logtext(), "no timeout line: " +
                  gw.logtext()[-600:])
            busy.close()
            deadline = time.monotonic() + 10 * SLOW
            lines = []
            while len(lines) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                lines = open(path).read().splitlines() if os.path.exists(path) else []
            check_eq(len(lines), 2, "access log lines: %r" % lines)
            first = [ln for ln in lines if 'sni="pass.example"' in ln]
            check(len(first) == 1, "no line for the idle pair: %r" % lines)
            for part in ('"passthrough"', 'alpn="h2"', 'target="127.0.0.1:%d"' % be.port,
                         "tier=P", 'reason="timed out (proxy_timeout'):
                check(part in first[0], "%r not in %r" % (part, first[0]))
            check(any('sni="a.wild.example"' in ln and " up=" in ln for ln in lines),
                  "no line for the busy pair: %r" % lines)
