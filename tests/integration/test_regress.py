# SPDX-License-Identifier: MIT
"""Regression tests for defects found in review of the relay (conn.c, loop.c,
main.c): each one failed before its fix."""

import hashlib
import shutil
import os
import signal
import socket
import subprocess
import time

from lib import (EchoBackend, Skip, TlsConn, _ThreadedServer, _TlsReader, cert, check, check_eq,
                 free_port, http_get, proc_status, read_response, test, SLOW)
from test_gateway import gw_http, port_of



@test("regress/max-fragment-length", timeout=60)
def t_maxfrag():
    """A client that negotiates max_fragment_length makes SSL_write() stop after
    one record: a 100000-byte response must still arrive whole (it was lost:
    "TLS write error")."""
    n = 100000
    with EchoBackend() as be, gw_http(be) as gw:
        for ver in ("-tls1_2", "-tls1_3"):
            p = subprocess.Popen(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port_of(gw), ver,
                 "-maxfraglen", "512", "-quiet", "-cert", cert("client-good.crt"),
                 "-key", cert("client-good.key"), "-CAfile", cert("ca-root.pem")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            p.stdin.write(http_get("/big/%d" % n, close=True))
            p.stdin.flush()
            try:
                out, _ = p.communicate(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            head, _, body = out.partition(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200"), "%s: status line %r" % (ver, head[:40]))
            check_eq(len(body), n, "%s: body bytes with max_fragment_length 512" % ver)
            want = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"x-sha256:")]
            check(want, "%s: no X-Sha256 header" % ver)
            check_eq(hashlib.sha256(body).hexdigest(), want[0], "%s: body sha256" % ver)
        check("TLS write error" not in gw.logtext(), "log: TLS write error")


class SlowUpgradeBackend(_ThreadedServer):
    """Answers an Upgrade request with "HTTP/1.1 1", a pause, then the rest of a
    101, and echoes raw bytes afterwards (the 101 split across reads). With
    path /never it never answers (the client must not be read meanwhile)."""

    def serve(self, c, addr):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        if b" /never " in head.split(b"\r\n")[0]:
            time.sleep(30)
            return
        c.sendall(b"HTTP/1.1 1")
        time.sleep(0.3)
        c.sendall(b"01 Switching Protocols\r\nUpgrade: x-test\r\nConnection: upgrade\r\n\r\n")
        if rest:
            c.sendall(rest)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


UPGRADE = (b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\n"
           b"Upgrade: x-test\r\n\r\n")


@test("regress/upgrade-101-split", timeout=60)
def t_upgrade_split():
    """The backend's "HTTP/1.1 101" arrives in two reads: the connection must
    still switch to an opaque relay (raw bytes that are not HTTP pass)."""
    with SlowUpgradeBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            c.send(UPGRADE % b"/ws")
            rd = _TlsReader(c)
            head = rd.until(b"\r\n\r\n")
            check(head is not None and head.startswith(b"HTTP/1.1 101"), "101: %r" % head)
            raw = b"\x81\x05hello not http at all\r\n\r\n"
            c.send(raw)
            got = rd.exact(len(raw))
            check_eq(got, raw, "opaque bytes after a split 101")


@test("regress/upgrade-wait-bounded", timeout=60)
def t_upgrade_bounded():
    """While an Upgrade request waits for the backend's answer the gateway does
    not read the client: pushing 32 MiB grows its memory by little (it grew
    by the whole amount). Without transparent huge pages, which would count 2 MiB for
    any page touched (see gw/idle-connection-memory)."""
    with SlowUpgradeBackend() as be, gw_http(be, thp=False) as gw:
        pid = gw.proc.pid
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            c.send(UPGRADE % b"/never")
            time.sleep(0.3)
            before = proc_status(pid)
            c.sock.settimeout(0.5)
            chunk = os.urandom(65536)
            sent = 0
            t0 = time.monotonic()
            try:
                while sent < (32 << 20) and time.monotonic() - t0 < 5 * SLOW:
                    c.obj.write(chunk)
                    d = c.out.read()
                    c.sock.sendall(d)
                    sent += len(chunk)
            except (socket.timeout, OSError):
                pass
            time.sleep(0.3)
            grew = proc_status(pid) - before
            check(sent < (24 << 20), "the gateway kept reading: %d bytes accepted" % sent)
            check(grew < 8 * 1024, "gateway RSS grew by %d KiB while the upgrade waited" % grew)
            check(gw.alive(), "gateway alive")


@test("regress/sigterm-idle-keepalive", timeout=60)
def t_sigterm_idle():
    """SIGTERM with an idle keep-alive connection: it is closed with
    close_notify and the gateway exits within a few seconds (it waited the
    whole 30 s drain)."""
    with EchoBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/idle/1"))
            r = read_response(c, rd)
            check(r is not None and r.status == 200, "request before SIGTERM")
            gw.expect_exit = True
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            rest = c.recv_all()
            check_eq(rest, b"", "nothing after the response")
            check(not c.unclean, "closed without close_notify")
            while gw.alive() and time.monotonic() - t0 < 10 * SLOW:
                time.sleep(0.05)
            took = time.monotonic() - t0
            check(not gw.alive(), "still running %.1fs after SIGTERM" % took)
            check(took < 5 * SLOW, "exit took %.1fs" % took)
            check_eq(gw.stop(), 0, "exit status")


@test("regress/hup-releases-old-config", timeout=60)
def t_hup_release():
    """A reload's previous configuration is freed when its last connection
    closes, not kept until exit (it leaked one configuration per SIGHUP)."""
    marker = "previous configuration released"
    with EchoBackend() as be, gw_http(be) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            c.send(http_get("/rel/1"))
            check(read_response(c, rd).status == 200, "first request")
            gw.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5 * SLOW)
            check("reconfigured" in gw.logtext(), "reload logged")
            check(marker not in gw.logtext(), "released while a connection uses it")
            c.send(http_get("/rel/2"))
            check(read_response(c, rd).status == 200, "request on the old configuration")
            c.shutdown_write()
            c.recv_all()
        t0 = time.monotonic()
        while marker not in gw.logtext() and time.monotonic() - t0 < 5 * SLOW:
            time.sleep(0.05)
        check(marker in gw.logtext(), "not released after its last connection closed")
        for _ in range(20):
            gw.proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        time.sleep(0.5 * SLOW)
        check(gw.logtext().count("reconfigured") >= 2, "reloads")
        check_eq(gw.logtext().count(marker), gw.logtext().count("reconfigured"),
                 "one release per reload without connections")


def _configs_dir():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@test("cli/full-nginx-conf", timeout=60)
def t_full_conf():
    """tests/configs/full-nginx.conf uses every supported directive: -t passes
    (warning about what this build or kernel does not serve); starting it
    refuses with FILE:LINE where the kernel lacks the kTLS it demands
    (ssl_passthrough routes are served: no warning about them)."""
    from lib import GW_BIN, TMPROOT, need_gw, run_check, subst
    need_gw()
    d = os.path.join(TMPROOT, "fullconf")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(_configs_dir()):
        with open(os.path.join(_configs_dir(), name)) as f:
            text = f.read()
        with open(os.path.join(d, name), "w") as f:
            f.write(subst(text, {}))
    conf = os.path.join(d, "full-nginx.conf")
    rc, out = run_check(conf)
    check(rc == 0 and "test is successful" in out, "-t: exit %d: %r" % (rc, out[-600:]))
    check("ssl_passthrough" not in out, "-t does not warn about passthrough: %r" % out[-600:])
    if not os.path.exists("/proc/net/tls_stat"):
        # (with kernel TLS it starts and serves: nothing left to refuse)
        p = subprocess.run([GW_BIN, "-c", conf], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20 * SLOW)
        out = p.stdout.decode(errors="replace")
        check_eq(p.returncode, 1, "start exit code (%r)" % out[-400:])
        # the full config says "ssl_ktls on" in one server: refused where the kernel has no TLS
        check('"ssl_ktls on" requires kernel TLS' in out, "no ssl_ktls on error: %r" % out[-600:])
    for seed in ("seed-server1.conf", "seed-server2.conf"):
        rc, out = run_check(os.path.join(d, seed))
        check(rc == 0 and "test is successful" in out, "%s: %r" % (seed, out[-400:]))


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for ln in f:
            if ln.startswith("Max open files"):
                return tuple(int(x) for x in ln.split()[3:5])
    return None


@test("cli/open-file-limit", timeout=120)
def t_nofile():
    """The soft open-file limit is raised to the hard one at start (a shell's 1024 would
    cap a tier K gateway at ~170 busy connections): started under 256:4096, 300 idle
    verified clients fit and the last one is served. worker_rlimit_nofile N sets the limit
    to N, as nginx does, raising the hard limit if it must and never lowering it."""
    from test_gateway import open_verified
    if not shutil.which("prlimit"):
        raise Skip("no prlimit (util-linux)")
    with EchoBackend() as be, gw_http(be, prefix=["prlimit", "--nofile=256:4096", "--"]) as gw:
        conns = open_verified(port_of(gw), 300)
        rd = _TlsReader(conns[-1])
        conns[-1].send(http_get("/300th"))
        resp = read_response(conns[-1], rd)
        check(resp is not None and resp.status == 200, "the 300th idle client served: %r" % resp)
        for c in conns:
            c.close()
        check_eq(nofile_limits(gw.proc.pid), (4096, 4096), "open-file limits (soft, hard)")
        check("open-file limit raised to the hard limit, 4096" in gw.logtext(),
              "log: %s" % gw.logtext()[-600:])
    # the hard limit is never lowered (a reload may ask for more), raised where allowed
    with open("/proc/self/status") as f:
        caps = [int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")][0]
    may_raise = bool(caps & (1 << 24))  # CAP_SYS_RESOURCE (not in a default container)
    for n, want in ((1500, (1500, 4096)),
                    (8000, (8000, 8000) if may_raise else (4096, 4096))):
        with EchoBackend() as be, gw_http(be, prefix=["prlimit", "--nofile=256:4096", "--"],
                                          top="worker_rlimit_nofile %d;" % n) as gw:
            check_eq(nofile_limits(gw.proc.pid), want, "worker_rlimit_nofile %d" % n)
            if not may_raise and n > 4096:
                check("setrlimit(RLIMIT_NOFILE, 8000) failed" in gw.logtext() and
                      "using the hard limit 4096" in gw.logtext(),
                      "no alert: %s" % gw.logtext()[-600:])
            check(gw.alive(), "gateway alive")


@test("cli/version-features", timeout=30)
def t_version():
    """-V: version, OpenSSL, and one line per kernel feature."""
    from lib import GW_BIN, need_gw
    need_gw()
    out = subprocess.run([GW_BIN, "-V"], stdout=subprocess.PIPE, timeout=10).stdout.decode()
    for key in ("ktlsgw version ", "openssl: ", "ktls: ", "sockmap: ", "io_uring: "):
        check(any(ln.startswith(key) for ln in out.splitlines()), "-V lacks %r: %r" % (key, out))
    ktls = [ln for ln in out.splitlines() if ln.startswith("ktls: ")][0]
    have = os.path.exists("/proc/sys/net/ipv4/tcp_available_ulp") and "tls" in open(
        "/proc/sys/net/ipv4/tcp_available_ulp").read()
    # a registered "tls" ULP must be seen; without it the probe may still autoload the module
    check(not have or ktls.startswith("ktls: yes"),
          "-V says %r while tcp_available_ulp lists tls" % ktls)
    # the allocator the binary runs with: jemalloc when it is linked in (the plain build
    # links it where libjemalloc is installed, install-deps.sh installs it)
    mal = [ln for ln in out.splitlines() if ln.startswith("malloc: ")]
    check(len(mal) == 1, "-V lacks the malloc line: %r" % out)
    linked = b"libjemalloc" in subprocess.run(["ldd", GW_BIN], stdout=subprocess.PIPE,
                                               timeout=10).stdout
    check_eq(mal[0].startswith("malloc: jemalloc "), linked,
             "-V %r vs jemalloc linked (ldd)" % mal[0])


@test("gw/access-log", timeout=60)
def t_access_log():
    """access_log: one line per connection with the address, TLS, verify
    result, subject, request count and bytes; a rejected handshake is logged too."""
    from lib import TMPROOT, attempt
    path = os.path.join(TMPROOT, "access-%d.log" % free_port())
    with EchoBackend() as be, gw_http(be, extra="access_log %s;" % path) as gw:
        with TlsConn(port_of(gw), "client-good") as c:
            c.handshake()
            rd = _TlsReader(c)
            for i in (1, 2):
                c.send(http_get("/al/%d" % i))
                check(read_response(c, rd).status == 200, "request %d" % i)
            port = c.local_port()
            c.shutdown_write()
            c.recv_all()
        a = attempt(port_of(gw), None, path="/al/none")
        check(not a.accepted, "no-cert client accepted")
        t0 = time.monotonic()
        lines = []
        while len(lines) < 2 and time.monotonic() - t0 < 5 * SLOW:
            time.sleep(0.05)
            lines = open(path).read().splitlines() if os.path.exists(path) else []
        check_eq(len(lines), 2, "access log lines: %r" % lines)
        good = [ln for ln in lines if "127.0.0.1:%d " % port in ln]
        check(len(good) == 1, "no line for the good connection: %r" % lines)
        ln = good[0]
        tier = "tier=K" if os.path.exists("/proc/net/tls_stat") else "tier=U"
        for part in ('verify="SUCCESS"', "CN=client-good", "requests=2", tier, "TLSv1."):
            check(part in ln, "%r not in %r" % (part, ln))
        check(any('reason="handshake failed"' in x for x in lines), "rejected: %r" % lines)
