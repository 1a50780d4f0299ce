# SPDX-License-Identifier: MIT
"""upstream{} with keepalive: the backend keep-alive pool (tier U), and what a client's
"Connection: close" does when proxy_set_header Connection "" keeps it from the backend."""

import re
import time

from lib import (EchoBackend, Server, TlsConn, _Reader, _ThreadedServer, _TlsReader, check,
                 check_eq, free_port, http_get, need_gw, read_response, test, SLOW)
from test_gateway import FORGED_HDRS, HTTP_BLOCK, check_identity

# test_gateway's server block, through "upstream be"
UPS_BLOCK = """
    upstream be {
        server 127.0.0.1:@BPORT@;
        %(ups)s
    }
""" + HTTP_BLOCK.replace("proxy_pass http://127.0.0.1:@BPORT@;",
                         "proxy_pass %(target)s;\n            %(conn)s")
assert HTTP_BLOCK.count("proxy_pass http://127.0.0.1:@BPORT@;") == 1, "HTTP_BLOCK changed"


def gw_ups(be, ups="keepalive 4;", ktls="off", target="http://be",
           conn='proxy_set_header Connection "";'):
    """ktlsgw proxying to @be through "upstream be { ... @ups }". ssl_ktls off by default:
    the pool is tier U's, and these tests run on tier K in the VM otherwise."""
    need_gw()
    ports = {"P0": free_port(), "BPORT": be.port}
    block = UPS_BLOCK % dict(ups=ups, extra="ssl_ktls %s;" % ktls, target=target, conn=conn)
    return Server("gw", http=[block], ports=ports, name="ups").start()


def exit_counts(gw):
    """Stop @gw; (backend connections reused, requests sent again) from its exit line."""
    gw.stop()
    m = re.search(r"(\d+) kept backend connection\(s\) reused, (\d+) request\(s\) sent again",
                  gw.logtext())
    check(m is not None, "no exit line with the pool counters: %s" % gw.logtext()[-600:])
    return int(m.group(1)), int(m.group(2))


def one_request(port, req, cert="client-good", version=None, closes=True, interim=False):
    """A new TLS connection, @req, its response (after a 100 Continue with @interim); with
    @closes, the gateway must close the connection after it (well before keepalive_timeout)."""
    with TlsConn(port, cert, version=version) as c:
        c.handshake()
        rd = _TlsReader(c)
        c.send(req)
        if interim:
            check_eq(rd.until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n", "interim")
        r = read_response(c, rd, head_only=req.startswith(b"HEAD "))
        check(r is not None, "no response to %r" % req[:40])
        if closes:
            t0 = time.monotonic()
            rest = rd.buf + c.recv_all()
            check_eq(rest, b"", "bytes after the response")
            check(time.monotonic() - t0 < 5 * SLOW, "the gateway kept the client connection "
                  "open after answering its Connection: close")
        return r


class ScriptBackend(_ThreadedServer):
    """HTTP/1.1 backend reading request heads (and Content-Length bodies); answer(path, seq)
    gives the raw response bytes (None: close without answering) and whether to close after.
    Records (connection, request number on it, method, path, head) and which connections the
    gateway closed."""

    def __init__(self, answer):
        self.answer = answer
        self.log = []
        self.closed = []
        self._n = 0
        super().__init__()

    def serve(self, c, addr):
        with self._mu:
            self._n += 1
            cid = self._n
        r = _Reader(c)
        seq = 0
        while True:
            head = r.until(b"\r\n\r\n")
            if head is None:
                with self._mu:
                    self.closed.append(cid)
                return
            seq += 1
            method, path = head.split(b" ")[:2]
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if m and r.exact(int(m.group(1))) is None:
                return
            with self._mu:
                self.log.append((cid, seq, method.decode(), path.decode(), head))
            ans, close = self.answer(path.decode(), seq)
            if ans is None:
                return
            c.sendall(ans)
            if close:
                return

    def where(self, path):
        """[(connection, request number)] of the requests for @path."""
        with self._mu:
            return [(e[0], e[1]) for e in self.log if e[3] == path]


ANSWERS = {
    "/cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
    "/204": b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    "/continue": b"HTTP/1.1 100 Continue\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes",
    "/close-hdr": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "/eof": b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
}


def req(path, method="GET", extra=b""):
    return ("%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)).encode() + extra + \
        b"Connection: close\r\n\r\n"


@test("gw/upstream/keepalive-reuse", timeout=120)
def t_reuse():
    """Client connections one after another share one backend connection; each request
    carries its own client's identity and nothing a client forged; the client's
    Connection: close stays off the backend, and the gateway closes the client."""
    with EchoBackend() as be, gw_ups(be) as gw:
        port = gw.ports["P0"]
        who = []
        for i in range(6):
            cert, ver = (("client-good", "1.2"), ("client-rsa", "1.3"))[i % 2]
            r = one_request(port, http_get("/u/%d" % i, extra=FORGED_HDRS, close=True), cert, ver)
            check_eq(r.status, 200, "request %d" % i)
            rec = [x for x in be.requests if x["target"] == "/u/%d" % i][0]
            check_identity(rec, cert, "client %d (%s) on a kept connection" % (i, cert))
            check("connection" not in [n.lower() for n, _ in rec["headers"]],
                  "request %d: the client's Connection header reached the backend" % i)
            who.append(rec["conn_id"])
        check_eq(set(who), {who[0]}, "backend connections of six successive clients")
        # a keep-alive client that ends with close_notify leaves the connection kept too
        with TlsConn(port, "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            for i in range(3):
                c.send(http_get("/k/%d" % i))
                r = read_response(c, rd)
                check(r is not None and r.status == 200, "keep-alive request %d" % i)
                check_eq(r.json()["conn_id"], who[0], "keep-alive client's backend connection")
            c.shutdown_write()
            check_eq(c.recv_all(), b"", "after close_notify")
        time.sleep(0.3)
        r = one_request(port, http_get("/last", close=True))
        check_eq(r.json()["conn_id"], who[0], "backend connection after a keep-alive client")
        check_eq(be.accepts, 1, "backend connections accepted")
        check_eq(exit_counts(gw), (7, 0), "(reused, sent again)")


@test("gw/upstream/keepalive-framing", timeout=120)
def t_framing():
    """Reuse follows the responses' framing: Content-Length, chunked with trailers, HEAD,
    204 and 1xx keep the backend connection; "Connection: close" or a response ended by the
    backend's close do not, and every byte reaches the client either way."""
    with ScriptBackend(lambda path, seq: (ANSWERS[path], path == "/eof")) as be, \
            gw_ups(be) as gw:
        port = gw.ports["P0"]
        bodies = {"/cl": b"ok", "/chunked": b"hello world", "/204": b"", "/continue": b"yes"}
        for path in ("/cl", "/chunked", "/204", "/continue"):
            r = one_request(port, req(path), interim=path == "/continue")
            check_eq(r.body, bodies[path], path + " body")
        r = one_request(port, req("/head", "HEAD"))
        check_eq(r.status, 200, "HEAD")
        check_eq([be.where(p) for p in ("/cl", "/chunked", "/204", "/continue", "/head")],
                 [[(1, 1)], [(1, 2)], [(1, 3)], [(1, 4)], [(1, 5)]],
                 "(connection, request) of each exchange")
        check_eq(one_request(port, req("/close-hdr")).body, b"ok", "/close-hdr body")
        check_eq(be.where("/close-hdr"), [(1, 6)], "/close-hdr on the kept connection")
        one_request(port, req("/cl"))
        check_eq(be.where("/cl")[-1], (2, 1), "after Connection: close: a new connection")
        check_eq(one_request(port, req("/eof")).body, b"until the end", "close-delimited body")
        check_eq(be.where("/eof"), [(2, 2)], "/eof")
        one_request(port, req("/cl"))
        check_eq(be.where("/cl")[-1], (3, 1), "after a close-delimited body: a new connection")
        deadline = time.monotonic() + 5 * SLOW
        while 1 not in be.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        check(1 in be.closed, "the gateway did not close the connection the backend said "
              "it would close")
        check_eq(exit_counts(gw), (6, 0), "(reused, sent again)")


@test("gw/upstream/pipelined-close", timeout=60)
def t_pipelined():
    """Pipelined requests: what follows a request with Connection: close never reaches the
    backend (as nginx, which reads no further request); the answered ones all arrive."""
    with EchoBackend() as be, gw_ups(be) as gw:
        port = gw.ports["P0"]
        with TlsConn(port, "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/p1") + http_get("/p2", close=True) + http_get("/p3"))
            for p in ("/p1", "/p2"):
                r = read_response(c, rd)
                check(r is not None and r.status == 200, p)
                check_eq(r.json()["target"], p, "response order")
            check_eq(rd.buf + c.recv_all(), b"", "after the response to the closing request")
        check_eq(sorted(be.paths()), ["/p1", "/p2"], "requests the backend got")
        r = one_request(port, http_get("/next", close=True))
        check_eq(r.json()["conn_id"], be.requests[0]["conn_id"], "connection kept after it")
        check_eq(exit_counts(gw), (1, 0), "(reused, sent again)")


@test("gw/upstream/retry-and-502", timeout=90)
def t_retry():
    """A kept connection that the backend closes instead of answering: a GET is sent again
    on a new connection (as nginx does for a cached one), a POST is not: 502."""
    def answer(path, seq):
        if seq == 2:
            return None, True  # the backend drops its idle connection at this request
        return ANSWERS["/cl"], False

    with ScriptBackend(answer) as be, gw_ups(be) as gw:
        port = gw.ports["P0"]
        check_eq(one_request(port, req("/a")).status, 200, "/a")
        r = one_request(port, req("/b"))
        check_eq((r.status, r.body), (200, b"ok"), "/b, answered on the second try")
        check_eq(be.where("/b"), [(1, 2), (2, 1)], "/b sent on the kept, then a new connection")
        r = one_request(port, req("/p", "POST", b"Content-Length: 1\r\n") + b"x")
        check_eq(r.status, 502, "POST on a kept connection the backend closed")
        check_eq(be.where("/p"), [(2, 2)], "/p sent once")
        check(re.search(r"closed the connection before answering", gw.logtext()),
              "no log line for the 502")
        check_eq(exit_counts(gw), (2, 1), "(reused, sent again)")


@test("gw/upstream/keepalive-limits", timeout=90)
def t_limits():
    """keepalive_requests ends a backend connection's reuse, keepalive_timeout closes an
    idle kept one."""
    with ScriptBackend(lambda path, seq: (ANSWERS["/cl"], False)) as be, \
            gw_ups(be, "keepalive 4; keepalive_requests 3; keepalive_timeout 1s;") as gw:
        port = gw.ports["P0"]
        for i in range(4):
            one_request(port, req("/%d" % i))
        check_eq([be.where("/%d" % i)[0] for i in range(4)], [(1, 1), (1, 2), (1, 3), (2, 1)],
                 "(connection, request) with keepalive_requests 3")
        deadline = time.monotonic() + 6 * SLOW
        while 2 not in be.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        check_eq(sorted(be.closed), [1, 2], "connections closed by the gateway (limit, timeout)")
        one_request(port, req("/after"))
        check_eq(be.where("/after"), [(3, 1)], "after the idle timeout: a new connection")
        check_eq(exit_counts(gw), (2, 0), "(reused, sent again)")


@test("gw/upstream/connection-close-without-pool", timeout=90)
def t_close_1to1():
    """proxy_set_header Connection "" where the backend connection is the client's alone (no
    keepalive; on tier K, in the VM, with keepalive as well): the backend still learns the
    client's "close" and the client is not left open for keepalive_timeout."""
    for ups, ktls in (("", "auto"), ("keepalive 4;", "auto")):
        with EchoBackend() as be, gw_ups(be, ups, ktls) as gw:
            r = one_request(gw.ports["P0"], http_get("/c", close=True))
            check_eq(r.status, 200, "response")
            conn = [v for n, v in r.json()["headers"] if n.lower() == "connection"]
            pooled = ups and "tier=K" not in gw.logtext()
            check_eq(conn, [] if pooled else ["close"],
                     "Connection toward the backend (%s, %s)" % (
                         ups or "no keepalive", "tier U pool" if pooled else "1:1"))
            r = one_request(gw.ports["P0"], http_get("/ka"), closes=False)  # nothing added
            check("connection" not in [n.lower() for n, _ in r.json()["headers"]],
                  "Connection added to a keep-alive request")


@test("gw/upstream/keepalive-client-outlives-backend", timeout=90)
def t_client_outlives():
    """A keep-alive client keeps its connection when the backend closes an idle one (its
    keep-alive timeout): the next request goes on a new backend connection; one the backend
    drops at the next request is sent again (as nginx for a cached connection)."""
    def answer(path, seq):
        if path == "/drop":
            return None, True
        return ANSWERS["/cl"], path == "/then-close"

    with ScriptBackend(answer) as be, gw_ups(be) as gw:
        with TlsConn(gw.ports["P0"], "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/then-close"))
            check_eq(read_response(c, rd).body, b"ok", "/then-close")
            deadline = time.monotonic() + 5 * SLOW
            while 1 not in be.closed and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # the gateway reads the backend's close
            c.send(http_get("/next"))
            r = read_response(c, rd)
            check(r is not None and r.body == b"ok", "the client connection did not survive "
                  "the backend closing its idle connection")
            check_eq(be.where("/next"), [(2, 1)], "/next on a new backend connection")
        # a backend that closes as the request arrives: the GET goes again, once
        with TlsConn(gw.ports["P0"], "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/a"))
            check_eq(read_response(c, rd).body, b"ok", "/a")
            dropped = []

            def drop_b_once(path, seq):
                if path == "/b" and not dropped:
                    dropped.append(seq)
                    return None, True
                return ANSWERS["/cl"], False
            be.answer = drop_b_once
            c.send(http_get("/b"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "/b after the backend dropped it")
        a = be.where("/a")[0]
        check_eq(be.where("/b"), [(a[0], a[1] + 1), (3, 1)], "/b: dropped, then again")
        check_eq(exit_counts(gw)[1], 1, "requests sent again")


@test("gw/upstream/told-to-close", timeout=60)
def t_told_to_close():
    """A backend connection that a request told to close is never reused, even when the answer
    does not say so; a refused Upgrade that asked to close forwards nothing after it."""
    with ScriptBackend(lambda path, seq: (ANSWERS["/cl"], False)) as be, \
            gw_ups(be, conn="") as gw:
        port = gw.ports["P0"]
        one_request(port, req("/a"))  # "Connection: close" reaches the backend
        one_request(port, req("/b"))
        check_eq([be.where(p) for p in ("/a", "/b")], [[(1, 1)], [(2, 1)]],
                 "a connection told to close was reused")
        check_eq(exit_counts(gw), (0, 0), "(reused, sent again)")
    with ScriptBackend(lambda path, seq: (ANSWERS["/cl"], False)) as be, gw_ups(be) as gw:
        port = gw.ports["P0"]
        with TlsConn(port, "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(b"GET /u HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade, close\r\n"
                   b"Upgrade: x\r\n\r\n" + http_get("/after"))
            check_eq(read_response(c, rd).body, b"ok", "the refused Upgrade's answer")
            check_eq(rd.buf + c.recv_all(), b"", "after it")
        one_request(port, req("/next"))
        check_eq([e[:4] for e in be.log], [(1, 1, "GET", "/u"), (1, 2, "GET", "/next")],
                 "what the backend got")
