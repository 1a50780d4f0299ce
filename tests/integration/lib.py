# SPDX-License-Identifier: MIT
"""Integration test harness: servers under test (nginx as the oracle, ktlsgw),
backends (HTTP echo, PROXY v1/v2 receiver), TLS/raw clients, a recording TCP
tap and a TLS record walker. Python 3 standard library only.

Every wait is bounded; every process and thread started here is registered
and torn down by cleanup() (run.py calls it on exit, failure and Ctrl-C)."""

import base64
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

CERTS = os.path.abspath(os.environ.get("GW_CERTS", "build/default/certs"))
GW_BIN = os.path.abspath(os.environ.get("GW_BIN", "build/default/ktlsgw"))
NGINX_BIN = os.environ.get("NGINX_BIN", shutil.which("nginx") or "/usr/sbin/nginx")
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
SLOW = 3 if ("san" in GW_BIN or os.environ.get("ASAN_OPTIONS")) else 1
TMPROOT = tempfile.mkdtemp(prefix="ktlsgw-it-")

_servers = []
_closers = []
_lock = threading.Lock()


class TestFailure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, why):
    if not cond:
        raise TestFailure(why)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


def cert(name):
    """Path of a file of the test PKI."""
    return os.path.join(CERTS, name)


def read_file(name):
    with open(cert(name), "rb") as f:
        return f.read()


def gw_available():
    return os.path.isfile(GW_BIN) and os.access(GW_BIN, os.X_OK)


def need_gw():
    if not gw_available():
        raise Skip("ktlsgw not built (%s)" % GW_BIN)


_ports_given = set()
_ports_lock = threading.Lock()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(family=socket.AF_INET):
    """A TCP port nothing listens on, below the kernel's ephemeral range and not handed out
    before in this run. A port from bind(0) is an ephemeral one: an outgoing connection (a
    client's, a proxy's to its backend) could take it before the server under test binds it
    (a sanitizer run once failed with "bind() ... (98: Address already in use)")."""
    import random
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    hi = min(_ephemeral_low(), 65536) - 1
    lo = max(1024, hi - 20000)
    for _ in range(1000):
        port = random.randint(lo, hi)
        with _ports_lock:
            if port in _ports_given:
                continue
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        with _ports_lock:
            if port in _ports_given:
                continue
            _ports_given.add(port)
        return port
    raise TestFailure("no free TCP port in %d-%d" % (lo, hi))


def _listening_inodes(port):
    """Inodes of the sockets listening on TCP @port (IPv4 and IPv6)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        out.add(fields[9])
        except OSError:
            pass
    return out


def port_owned_by(pid, port):
    """True if process @pid holds a socket listening on @port. A port picked by
    free_port() can be taken by someone else before our server binds it: then
    our server fails to start while the port answers (another process's)."""
    inodes = _listening_inodes(port)
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


def proc_status(pid, field="VmRSS:"):
    """The number after @field in /proc/PID/status (VmRSS: in KiB), 0 when absent."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def wait_port(port, proc=None, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if proc is not None:
            if port_owned_by(proc.pid, port):
                return True
            time.sleep(0.02)
            continue
        try:
            s = socket.create_connection((host, port), timeout=0.5)
            s.close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def cleanup():
    with _lock:
        servers = list(_servers)
        closers = list(_closers)
        _servers.clear()
        _closers.clear()
    for s in servers:
        try:
            s.stop()
        except Exception:
            pass
    for c in closers:
        try:
            c()
        except Exception:
            pass
    shutil.rmtree(TMPROOT, ignore_errors=True)


def cleanup_test():
    """Between tests: stop servers and close sockets/backends a test left."""
    with _lock:
        servers = list(_servers)
        closers = list(_closers)
        _closers.clear()
    for s in servers:
        try:
            s.stop()
        except Exception:
            pass
    for c in closers:
        try:
            c()
        except Exception:
            pass


def register_closer(fn):
    with _lock:
        _closers.append(fn)


# ---------------------------------------------------------------------------
# Servers under test


def subst(template, mapping):
    """Replace @NAME@ placeholders; @CERTS@ is always known."""
    m = {"CERTS": CERTS}
    m.update({k: str(v) for k, v in mapping.items()})

    def rep(mo):
        k = mo.group(1)
        if k not in m:
            raise KeyError("no value for @%s@" % k)
        return m[k]

    return re.sub(r"@([A-Z0-9_]+)@", rep, template)


class Server:
    """nginx (kind "nginx") or ktlsgw (kind "gw") running one config.

    http / stream: lists of server{} blocks (text with @PLACEHOLDERS@);
    extra_gw: text appended inside each gw server{} (e.g. ssl_verify_failure)."""

    def __init__(self, kind, http=(), stream=(), ports=None, name="srv", top="", thp=True,
                 prefix=()):
        self.kind = kind
        self.thp = thp
        self.prefix = list(prefix)  # a command that execs the rest (prlimit ...)
        # ktlsgw with worker processes: the workers own the sockets, not the master
        self.workers = kind == "gw" and re.search(r"worker_processes\s+(auto|[2-9]|\d\d)", top)
        self.dir = tempfile.mkdtemp(prefix="%s-%s-" % (kind, name), dir=TMPROOT)
        self.ports = dict(ports or {})
        self.proc = None
        self.logpath = os.path.join(self.dir, "stderr.log")
        self.conf = os.path.join(self.dir, "%s.conf" % ("nginx" if kind == "nginx" else "ktlsgw"))
        self.exit_code = None
        text = []
        if kind == "nginx":
            if stream:
                text.append("load_module %s;" % STREAM_MODULE)
            text.append("user root;")
            text.append("master_process off;")
            text.append("worker_processes 1;")
            text.append("pid %s/nginx.pid;" % self.dir)
        text.append("error_log stderr info;")
        text.append(top)
        text.append("events {\n    worker_connections 1024;\n}" if kind == "nginx" else "events {\n}")
        if http:
            text.append("http {")
            if kind == "nginx":
                for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                    text.append("    %s_temp_path %s/%s;" % (t, self.dir, t))
            text.append("    access_log off;")
            for blk in http:
                text.append(subst(blk, self.ports))
            text.append("}")
        if stream:
            text.append("stream {")
            for blk in stream:
                text.append(subst(blk, self.ports))
            text.append("}")
        with open(self.conf, "w") as f:
            f.write("\n".join(text) + "\n")

    def argv(self):
        if self.kind == "nginx":
            argv = [NGINX_BIN, "-p", self.dir + "/", "-c", self.conf, "-g", "daemon off;"]
        else:
            argv = [GW_BIN, "-c", self.conf]
        if not self.thp:
            # prctl(PR_SET_THP_DISABLE) survives execve: the server's memory comes in
            # 4 KiB pages even where transparent huge pages are "always" (Debian's 6.1
            # kernel in the VM), so RSS measures what it touched, not 2 MiB rounding
            argv = [sys.executable, "-c", "import ctypes, os, sys\n"
                    "if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0):\n"
                    "    sys.exit('PR_SET_THP_DISABLE: %s' % os.strerror(ctypes.get_errno()))\n"
                    "os.execv(sys.argv[1], sys.argv[1:])"] + argv
        return self.prefix + argv

    def start(self, wait_ports=None, timeout=10.0):
        if self.kind == "gw":
            need_gw()
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True)
        with _lock:
            _servers.append(self)
        if self.workers and wait_ports is None:
            # the master's ready line comes once every worker listens
            deadline = time.monotonic() + 15 * SLOW
            while "master process" not in self.logtext() and time.monotonic() < deadline:
                self.check_alive("start")
                time.sleep(0.05)
            if "master process" not in self.logtext():
                self.stop()
                raise TestFailure("workers not ready: %r" % self.logtext()[-800:])
            return self
        for p in (wait_ports if wait_ports is not None else self.listen_ports()):
            if not wait_port(p, self.proc, timeout):
                self.stop()
                raise TestFailure("%s did not listen on %d (exit %r): %s" % (
                    self.kind, p, self.exit_code, self.logtext()[-1500:]))
        return self

    def listen_ports(self):
        return [v for k, v in self.ports.items() if k.startswith("P")]

    def logtext(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None:
            return self.exit_code
        self.died = self.proc.poll() is not None
        if not self.died:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.exit_code = self.proc.returncode
        self.proc = None
        try:
            self.log.close()
        except Exception:
            pass
        with _lock:
            if self in _servers:
                _servers.remove(self)
        return self.exit_code

    def sanitizer_errors(self):
        t = self.logtext()
        for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if pat in t:
                i = t.index(pat)
                return t[i:i + 1500]
        return None

    def __enter__(self):
        return self

    def check_alive(self, during=""):
        if not self.alive():
            code = self.proc.poll() if self.proc else self.exit_code
            raise TestFailure("%s exited by itself (status %r)%s; log tail: %s" % (
                self.kind, code, " during " + during if during else "",
                self.logtext()[-1200:]))

    def __exit__(self, etype, e, tb):
        self.stop()
        if self.kind != "gw":
            return
        err = self.sanitizer_errors()
        died = getattr(self, "died", False) and not getattr(self, "expect_exit", False)
        if etype is None or issubclass(etype, (TestFailure, OSError, ssl.SSLError)):
            extra = ""
            if died and "exited by itself" not in str(e or ""):
                extra += "ktlsgw exited by itself (status %r); log tail: %s" % (
                    self.exit_code, self.logtext()[-1200:])
            if err:
                extra += " sanitizer report: " + err
            if extra:
                raise TestFailure(("%s | " % e if e else "") + extra)


def run_check(conf_path, timeout=20):
    """ktlsgw -t -c FILE -> (rc, output)."""
    need_gw()
    p = subprocess.run([GW_BIN, "-t", "-c", conf_path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout * SLOW)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Backends


class _ThreadedServer:
    def __init__(self, family=socket.AF_INET):
        self.family = family
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.accepts = 0
        self.errors = []
        self.conns = []
        self._stop = False
        self._mu = threading.Lock()
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()
        register_closer(self.close)

    def _accept_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.2)
                if not r:
                    continue
                c, addr = self.lsock.accept()
            except OSError:
                return
            with self._mu:
                self.accepts += 1
                self.conns.append(c)
            c.settimeout(30 * SLOW)
            threading.Thread(target=self._serve_wrap, args=(c, addr), daemon=True).start()

    def _serve_wrap(self, c, addr):
        try:
            self.serve(c, addr)
        except Exception as e:  # recorded, tests may look
            with self._mu:
                self.errors.append(repr(e))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._mu:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class _Reader:
    """Buffered reader over a plain socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        d = self.sock.recv(262144)
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit or not self.fill():
                return None
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        # gather, join once: appending to one bytes object is quadratic (64 MiB bodies)
        parts, have = [self.buf], len(self.buf)
        self.buf = b""
        while have < n:
            if not self.fill():
                self.buf = b"".join(parts) + self.buf
                return None
            parts.append(self.buf)
            have += len(self.buf)
            self.buf = b""
        data = b"".join(parts)
        out, self.buf = data[:n], data[n:]
        return out


def det_bytes(n, seed=b"ktlsgw"):
    """n deterministic pseudo-random bytes."""
    return hashlib.shake_256(b"ktlsgw-det:" + seed).digest(n)


class EchoBackend(_ThreadedServer):
    """HTTP/1.1 echo backend. For every request it answers 200 with a JSON body:
    head_b64 (raw request head bytes), headers (list of [name, value], split on
    CRLF only, latin-1), method, target, version, body_len, body_sha256,
    trailers, conn_seq (request number on this connection), conn_id.
    GET /big/N answers N deterministic bytes instead (X-Sha256 header).
    Keep-alive for HTTP/1.1 unless "Connection: close"."""

    def __init__(self, family=socket.AF_INET):
        self.requests = []
        self._conn_ids = 0
        super().__init__(family)

    def serve(self, c, addr):
        with self._mu:
            self._conn_ids += 1
            cid = self._conn_ids
        r = _Reader(c)
        seq = 0
        while True:
            head = r.until(b"\r\n\r\n", 1 << 20)
            if head is None:
                return
            seq += 1
            lines = head[:-4].split(b"\r\n")
            reqline = lines[0].decode("latin-1")
            parts = reqline.split(" ")
            method, target, version = (parts + ["", "", ""])[:3]
            headers = []
            for ln in lines[1:]:
                name, _, value = ln.partition(b":")
                headers.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
            hmap = {}
            for n, v in headers:
                hmap.setdefault(n.lower(), []).append(v)
            body = hashlib.sha256()
            blen = 0
            trailers = []
            te = ",".join(hmap.get("transfer-encoding", [])).lower()
            if "chunked" in te:
                while True:
                    sz = r.until(b"\r\n")
                    if sz is None:
                        return
                    n = int(sz.split(b";")[0].strip(), 16)
                    if n == 0:
                        while True:
                            t = r.until(b"\r\n")
                            if t is None:
                                return
                            if t == b"\r\n":
                                break
                            tn, _, tv = t[:-2].partition(b":")
                            trailers.append([tn.decode("latin-1"), tv.strip().decode("latin-1")])
                        break
                    d = r.exact(n + 2)
                    if d is None:
                        return
                    body.update(d[:n])
                    blen += n
            elif "content-length" in hmap:
                n = int(hmap["content-length"][0])
                while n > 0:
                    if not r.buf and not r.fill():
                        return
                    take = r.buf[:n]
                    r.buf = r.buf[len(take):]
                    body.update(take)
                    blen += len(take)
                    n -= len(take)
            rec = {
                "head_b64": base64.b64encode(head).decode(),
                "headers": headers,
                "method": method,
                "target": target,
                "version": version,
                "body_len": blen,
                "body_sha256": body.hexdigest(),
                "trailers": trailers,
                "conn_seq": seq,
                "conn_id": cid,
            }
            with self._mu:
                self.requests.append(rec)
            close = version == "HTTP/1.0" and "keep-alive" not in ",".join(
                hmap.get("connection", [])).lower()
            close = close or "close" in ",".join(hmap.get("connection", [])).lower()
            m = re.match(r"^/big/(\d+)", target)
            if m:
                payload = det_bytes(int(m.group(1)), b"big")
                extra = "X-Sha256: %s\r\n" % hashlib.sha256(payload).hexdigest()
            else:
                payload = json.dumps(rec).encode()
                extra = "Content-Type: application/json\r\n"
            resp = ("HTTP/1.1 200 OK\r\nServer: echo\r\n%sContent-Length: %d\r\n%s\r\n" % (
                extra, len(payload), "Connection: close\r\n" if close else "")).encode()
            c.sendall(resp + (b"" if method == "HEAD" else payload))
            if close:
                try:
                    c.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return

    def paths(self):
        with self._mu:
            return [r["target"] for r in self.requests]


def parse_pp2(hdr):
    """Decode a whole PROXY v2 header (bytes) into a dict."""
    ver_cmd, fam, length = hdr[12], hdr[13], struct.unpack("!H", hdr[14:16])[0]
    out = {"version": ver_cmd >> 4, "command": ver_cmd & 0xF, "family": fam >> 4,
           "transport": fam & 0xF, "len": length, "tlvs": []}
    body = hdr[16:16 + length]
    off = 0
    if fam == 0x11:
        out["src"] = socket.inet_ntop(socket.AF_INET, body[0:4])
        out["dst"] = socket.inet_ntop(socket.AF_INET, body[4:8])
        out["sport"], out["dport"] = struct.unpack("!HH", body[8:12])
        off = 12
    elif fam == 0x21:
        out["src"] = socket.inet_ntop(socket.AF_INET6, body[0:16])
        out["dst"] = socket.inet_ntop(socket.AF_INET6, body[16:32])
        out["sport"], out["dport"] = struct.unpack("!HH", body[32:36])
        off = 36
    out["tlvs"] = parse_tlvs(body[off:])
    return out


def parse_tlvs(b):
    tlvs = []
    off = 0
    while off < len(b):
        if off + 3 > len(b):
            raise ValueError("truncated TLV header at %d" % off)
        t = b[off]
        ln = struct.unpack("!H", b[off + 1:off + 3])[0]
        v = b[off + 3:off + 3 + ln]
        if len(v) != ln:
            raise ValueError("TLV 0x%02x overruns (%d > %d)" % (t, ln, len(v)))
        ent = {"type": t, "value": v}
        if t == 0x20:
            if ln < 5:
                raise ValueError("SSL TLV too short")
            ent["client"] = v[0]
            ent["verify"] = struct.unpack("!I", v[1:5])[0]
            ent["sub"] = parse_tlvs(v[5:])
        tlvs.append(ent)
        off += 3 + ln
    return tlvs


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxyReceiver(_ThreadedServer):
    """Backend behind a PROXY protocol sender. Reads a v1 or v2 header, decodes
    it (self.headers gets one dict per connection), then, per the first line
    the client sends after the tunnel is up:
      "ECHO\\n"   echo every byte until EOF;
      "SINK N\\n" read to EOF, then send a JSON line {len, sha256} followed by
                 N deterministic bytes, then close;
      "INFO\\n"   send the decoded header as one JSON line, then echo.
    Without such a line (other data) everything is echoed."""

    def __init__(self, family=socket.AF_INET):
        self.headers = []
        super().__init__(family)

    def serve(self, c, addr):
        r = _Reader(c)
        first = r.exact(16)
        if first is None:
            with self._mu:
                self.headers.append({"error": "short"})
            return
        if first[:12] == PP2_SIG:
            length = struct.unpack("!H", first[14:16])[0]
            rest = r.exact(length)
            if rest is None:
                return
            raw = first + rest
            info = parse_pp2(raw)
            info["raw_len"] = len(raw)
        elif first.startswith(b"PROXY "):
            r.buf = first + r.buf
            line = r.until(b"\r\n", 107)
            if line is None:
                return
            f = line[:-2].decode().split(" ")
            info = {"version": 1, "proto": f[1], "line": line.decode("latin-1")}
            if f[1] in ("TCP4", "TCP6"):
                info.update(src=f[2], dst=f[3], sport=int(f[4]), dport=int(f[5]))
        else:
            info = {"error": "no PROXY header", "first": first.hex()}
            r.buf = first + r.buf
        info["peer"] = list(addr[:2])
        with self._mu:
            self.headers.append(info)
        cmd = r.until(b"\n", 64)
        if cmd is None:
            if r.buf:
                c.sendall(r.buf)
            return
        if cmd == b"INFO\n":
            c.sendall(json.dumps(jsonable(info)).encode() + b"\n")
            cmd = b""
        elif cmd.startswith(b"SINK "):
            n = int(cmd[5:].strip())
            h = hashlib.sha256(r.buf)
            total = len(r.buf)
            r.buf = b""
            while True:
                d = c.recv(262144)
                if not d:
                    break
                h.update(d)
                total += len(d)
            c.sendall(json.dumps({"len": total, "sha256": h.hexdigest()}).encode() + b"\n")
            c.sendall(det_bytes(n, b"sink"))
            c.shutdown(socket.SHUT_WR)
            return
        elif cmd == b"ECHO\n":
            cmd = b""
        if cmd or r.buf:
            c.sendall(cmd + r.buf)
        r.buf = b""
        while True:
            d = c.recv(262144)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)


def jsonable(o):
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, list):
        return [jsonable(v) for v in o]
    return o


# ---------------------------------------------------------------------------
# Clients

_ctx_cache = {}


def client_ctx(certname=None, version=None, chain=True, ca="ca-root.pem"):
    """Client SSLContext (cached, so that sessions can be reused). certname
    "client-good" loads client-good.chain.crt (or .crt if chain=False)."""
    key = (certname, version, chain, ca)
    ctx = _ctx_cache.get(key)
    if ctx:
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    # No trust store on the client: OpenSSL would otherwise complete the client's chain
    # from it (auto-chain) and send the root too; the client must send exactly its
    # *.chain.crt. The server certificate is checked by server_cert_ok() instead.
    ctx.verify_mode = ssl.CERT_NONE
    if version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if certname:
        ctx.load_cert_chain(cert(certname + (".chain.crt" if chain else ".crt")),
                            cert(certname + ".key"))
    _ctx_cache[key] = ctx
    return ctx


class ConnClosed(Exception):
    pass


class TlsConn:
    """TLS client over a plain blocking socket with memory BIOs, so that the
    test controls every byte (half-close, vanishing mid-handshake...)."""

    def __init__(self, port, certname=None, version=None, sni=None, session=None,
                 host="127.0.0.1", timeout=10.0, chain=True, ctx=None, connect_to=None):
        self.ctx = ctx or client_ctx(certname, version, chain)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout * SLOW)
        self.sock.connect((host, port))
        register_closer(self.sock.close)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=sni,
                                     session=session)
        self.tcp_eof = False
        self.unclean = False
        self.read_size = 262144  # per socket read; small to read slowly (slow-reader tests)

    def server_cert_ok(self):
        """The server sent the test PKI's server certificate."""
        der = self.obj.getpeercert(binary_form=True)
        return der in (der_of("server.crt"), der_of("server-rsa.crt"), der_of("server-int.crt"))

    def local_port(self):
        return self.sock.getsockname()[1]

    def _flush(self):
        d = self.out.read()
        if d:
            self.sock.sendall(d)

    def _fill(self):
        if self.tcp_eof:
            raise ConnClosed("EOF")
        try:
            d = self.sock.recv(self.read_size)
        except ConnectionResetError:
            d = b""
        if not d:
            self.tcp_eof = True
            self.inc.write_eof()
        else:
            self.inc.write(d)

    def handshake(self, flush=True):
        """Complete the handshake; with flush=False the client's last flight stays in the
        outgoing BIO (to be sent with what follows it)."""
        while True:
            try:
                self.obj.do_handshake()
                if flush:
                    self._flush()
                return self
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def send(self, data):
        mv = memoryview(data)
        step = 65536
        for i in range(0, len(mv), step):
            self.obj.write(mv[i:i + step])
            self._flush()

    def recv(self, n=262144):
        """Application bytes; b"" at close_notify or at TCP EOF (unclean set)."""
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                if self.tcp_eof:
                    self.unclean = True
                    return b""
                self._fill()
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLEOFError:
                self.unclean = True
                return b""

    def recv_all(self, limit=1 << 30):
        out = []
        total = 0
        while total < limit:
            d = self.recv()
            if not d:
                break
            out.append(d)
            total += len(d)
        return b"".join(out)

    def close_notify(self):
        """Send close_notify; keep reading possible."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()

    def shutdown_write(self):
        self.close_notify()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def session(self):
        return self.obj.session

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class _TlsReader:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def fill(self):
        d = self.conn.recv()
        if not d:
            return False
        self.buf += d
        return True

    def until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit or not self.fill():
                return None
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        # gather, join once: appending to one bytes object is quadratic (64 MiB bodies)
        parts, have = [self.buf], len(self.buf)
        self.buf = b""
        while have < n:
            if not self.fill():
                self.buf = b"".join(parts) + self.buf
                return None
            parts.append(self.buf)
            have += len(self.buf)
            self.buf = b""
        data = b"".join(parts)
        out, self.buf = data[:n], data[n:]
        return out


def read_response(conn, reader=None, head_only=False):
    """Read one HTTP/1.x response from TlsConn; None if the connection ended
    before a whole head arrived."""
    rd = reader or _TlsReader(conn)
    head = rd.until(b"\r\n\r\n")
    if head is None:
        return None
    lines = head[:-4].split(b"\r\n")
    st = lines[0].decode("latin-1").split(" ", 2)
    headers = []
    for ln in lines[1:]:
        n, _, v = ln.partition(b":")
        headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
    resp = Response(int(st[1]), st[2] if len(st) > 2 else "", headers, b"", head)
    hm = {n.lower(): v for n, v in headers}
    if "chunked" in hm.get("transfer-encoding", "").lower():
        body = []
        while True:
            sz = rd.until(b"\r\n")
            if sz is None:
                break
            n = int(sz.split(b";")[0], 16)
            if n == 0:
                while rd.until(b"\r\n") not in (b"\r\n", None):
                    pass  # trailer lines, up to the empty one
                break
            body.append(rd.exact(n) or b"")
            rd.exact(2)
        resp.body = b"".join(body)
    elif "content-length" in hm:
        resp.body = rd.exact(int(hm["content-length"])) or b""
    else:
        while rd.fill():
            pass
        resp.body, rd.buf = rd.buf, b""
    resp.reader = rd
    return resp


def http_get(path, host="localhost", extra=b"", close=False):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n" % (path, host)).encode() + extra + (
        b"Connection: close\r\n" if close else b"") + b"\r\n"


class Attempt:
    """Outcome of one TLS connection + one request."""

    def __init__(self):
        self.handshake_ok = False
        self.error = None
        self.resp = None
        self.conn = None
        self.server_der = None

    @property
    def accepted(self):
        return self.resp is not None and self.resp.status == 200

    def kind(self):
        if self.resp is not None:
            return "http %d" % self.resp.status
        return "tls-fail"

    def __repr__(self):
        return "<%s%s>" % (self.kind(), " (%s)" % self.error if self.error else "")


def attempt(port, certname=None, path="/", version=None, sni=None, extra=b"", session=None,
            keep=False, timeout=10.0, host="127.0.0.1"):
    """Connect, handshake, send one request, read the response. Never raises
    on TLS/connection errors: they are recorded in Attempt.error."""
    a = Attempt()
    try:
        c = TlsConn(port, certname, version=version, sni=sni, session=session, timeout=timeout,
                    host=host)
    except OSError as e:
        a.error = "connect: %s" % e
        return a
    a.conn = c
    try:
        c.handshake()
        a.handshake_ok = True
        a.server_der = c.obj.getpeercert(binary_form=True)
        if not c.server_cert_ok():
            a.error = "unexpected server certificate"
            return a
        c.send(http_get(path, sni or "localhost", extra))
        a.resp = read_response(c)
        if a.resp is None:
            a.error = "no response (unclean=%s)" % c.unclean
    except (ssl.SSLError, OSError, ConnClosed) as e:
        a.error = "%s: %s" % (type(e).__name__, e)
    finally:
        if not keep:
            c.close()
    return a


def raw_connect(port, host="127.0.0.1", timeout=5.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    s.connect((host, port))
    register_closer(s.close)
    return s


def read_until_closed(s, timeout):
    """Read from a raw socket until EOF/RST or timeout. Returns (data, closed, seconds)."""
    t0 = time.monotonic()
    data = b""
    s.settimeout(timeout)
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return data, False, time.monotonic() - t0
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return data, False, time.monotonic() - t0
        except ConnectionResetError:
            return data, True, time.monotonic() - t0
        if not d:
            return data, True, time.monotonic() - t0
        data += d


# ---------------------------------------------------------------------------
# TCP tap: records what flows between a client and a server


class Tap(_ThreadedServer):
    """Listens on an ephemeral port and forwards each connection to target;
    self.down[i] / self.up[i] are the bytes server->client / client->server of
    connection i (complete once self.done[i] is set)."""

    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.down = []
        self.up = []
        self.done = []
        super().__init__()

    def serve(self, c, addr):
        with self._mu:
            i = len(self.down)
            self.down.append(bytearray())
            self.up.append(bytearray())
            ev = threading.Event()
            self.done.append(ev)
        try:
            s = socket.create_connection(self.target, timeout=10)
        except OSError:
            ev.set()
            return
        s.settimeout(None)
        c.settimeout(None)
        with self._mu:
            self.conns.append(s)

        def pump(src, dst, rec):
            try:
                while True:
                    d = src.recv(65536)
                    if not d:
                        break
                    rec += d
                    dst.sendall(d)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=pump, args=(c, s, self.up[i]), daemon=True)
        t.start()
        pump(s, c, self.down[i])
        t.join(30 * SLOW)
        s.close()
        ev.set()

    def wait(self, i, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            with self._mu:
                if i < len(self.done):
                    ev = self.done[i]
                    break
            time.sleep(0.01)
        else:
            return False
        return ev.wait(max(0.0, deadline - time.monotonic()))


def walk_tls_records(data):
    """Check that data is a sequence of whole TLS records. Returns (ok, why, types)."""
    off = 0
    types = []
    while off < len(data):
        if len(data) - off < 5:
            return False, "trailing %d bytes (partial record header) at %d" % (
                len(data) - off, off), types
        ct = data[off]
        ver = struct.unpack("!H", data[off + 1:off + 3])[0]
        ln = struct.unpack("!H", data[off + 3:off + 5])[0]
        if ct not in (20, 21, 22, 23):
            return False, "bad content type %d at %d (bytes %r)" % (
                ct, off, bytes(data[off:off + 16])), types
        if not 0x0301 <= ver <= 0x0304:
            return False, "bad version 0x%04x at %d" % (ver, off), types
        if ln > 16384 + 2048 or ln == 0:
            return False, "bad length %d at %d" % (ln, off), types
        if off + 5 + ln > len(data):
            return False, "record at %d truncated (%d of %d)" % (off, len(data) - off - 5, ln), types
        types.append(ct)
        off += 5 + ln
    return True, "", types


# ---------------------------------------------------------------------------
# Certificate facts computed in Python (for the non-nginx variables)


def pem_certs(text):
    return re.findall(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", text,
                      re.S)


def der_of(certname_file):
    pems = pem_certs(read_file(certname_file))
    return ssl.PEM_cert_to_DER_cert(pems[0].decode())


def chain_ders(certname):
    """DER of the certs a client sends after its leaf."""
    pems = pem_certs(read_file(certname + ".chain.crt"))
    return [ssl.PEM_cert_to_DER_cert(p.decode()) for p in pems[1:]]


def decode_cert(path):
    return ssl._ssl._test_decode_cert(path)


def san(certname, kind):
    d = decode_cert(cert(certname + ".crt"))
    return [v for k, v in d.get("subjectAltName", ()) if k == kind]


def openssl_text(path):
    p = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=20, env=dict(os.environ,
                                                                       OPENSSL_CONF="/dev/null"))
    return p.stdout.decode("utf-8", "replace")


def cert_sig_alg(certname):
    m = re.search(r"Signature Algorithm: (\S+)", openssl_text(cert(certname + ".crt")))
    return m.group(1) if m else None


# ---------------------------------------------------------------------------
# Registry

TESTS = []


def test(name, timeout=120):
    def deco(fn):
        TESTS.append((name, fn, timeout))
        return fn
    return deco
