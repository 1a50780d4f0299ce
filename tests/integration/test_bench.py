# SPDX-License-Identifier: MIT
"""ktlsgw-bench smoke tests: a short run of each mode through a real ktlsgw (tier U,
ssl_ktls off) to ktlsgw-bench-backend, asserting the counts and the JSON (the harness's
correctness, not timing), and backends that answer wrongly (ktlsgw-bench-backend --fault)
whose answers must be counted as errors of their kind, never as successes."""

import json
import os
import re
import subprocess
import time

import lib
from lib import Server, Skip, TestFailure, cert, check, check_eq, free_port, need_gw, test

BIN_DIR = os.path.dirname(lib.GW_BIN)
BENCH = os.environ.get("BENCH_BIN", os.path.join(BIN_DIR, "ktlsgw-bench"))
BACKEND = os.environ.get("BENCH_BACKEND_BIN", os.path.join(BIN_DIR, "ktlsgw-bench-backend"))

ERR_KINDS = ["connect", "handshake", "tls", "closed", "timeout", "status", "parse", "length",
             "body"]

HTTP_BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-root.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:BENCH:1m;
        ssl_ktls off;
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-SSL-Cert $ssl_client_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        }
    }
"""

STREAM_BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-root.pem;
        ssl_verify_client on;
        ssl_ktls off;
        proxy_pass 127.0.0.1:@BPORT@;
        proxy_protocol on;
        proxy_protocol_tlv_cert on;
    }
"""


def need_bench():
    need_gw()
    for b in (BENCH, BACKEND):
        if not os.access(b, os.X_OK):
            raise Skip("%s not built" % b)


class Backend:
    """ktlsgw-bench-backend on an ephemeral port (one thread: --fault counts are exact)."""

    def __init__(self, *args):
        self.portfile = os.path.join(lib.TMPROOT, "be-port-%d" % time.monotonic_ns())
        self.log = open(self.portfile + ".log", "wb")
        self.proc = subprocess.Popen([BACKEND, "-l", "127.0.0.1:0", "-t", "1",
                                      "--port-file", self.portfile] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        lib.register_closer(self.close)
        deadline = time.monotonic() + 10 * lib.SLOW
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with open(self.portfile) as f:
                    txt = f.read()
                if txt.endswith("\n"):
                    self.port = int(txt)
                    break
            except OSError:
                pass
            time.sleep(0.02)
        if self.port is None:
            self.close()
            raise TestFailure("ktlsgw-bench-backend did not start (exit %r)" % self.proc.poll())

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def gateway(be_port, stream=False):
    ports = {"P0": free_port(), "BPORT": be_port}
    if stream:
        return Server("gw", stream=[STREAM_BLOCK], ports=ports, name="bench-stream").start()
    return Server("gw", http=[HTTP_BLOCK], ports=ports, name="bench-http").start()


def bench(mode, port, *args, client="client-good", want_rc=0, json_out=True, quiet=True):
    """Run ktlsgw-bench; returns (parsed JSON or stdout text, stderr text)."""
    argv = [BENCH, mode, "--cert", cert(client + ".chain.crt"), "--key", cert(client + ".key"),
            "--ca", cert("ca-root.pem"), "--timeout", str(5 * lib.SLOW)]
    argv += list(args)
    if json_out:
        argv.append("--json")
    if quiet:
        argv.append("-q")
    argv.append("127.0.0.1:%d" % port)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60 * lib.SLOW)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != want_rc:
        raise TestFailure("ktlsgw-bench %s: exit %d (want %d): %s %s" % (
            " ".join(args), p.returncode, want_rc, out[-1500:], err[-1500:]))
    if not json_out:
        return out, err
    try:
        return json.loads(out), err
    except ValueError:
        raise TestFailure("ktlsgw-bench --json printed no JSON: %r" % out[-1500:])


def check_json(r, mode, requests, errors=None):
    """The JSON's shape and the invariants every run has."""
    for k in ("mode", "target", "threads", "connections", "tls_version", "cipher", "duration_s",
              "requests", "requests_per_s", "handshakes", "resumed", "handshakes_per_s",
              "bytes_rx", "bytes_tx", "mb_per_s", "latency_us", "errors_total", "errors",
              "ec_keys"):
        check(k in r, "JSON has no %r: %r" % (k, r))
    check_eq(r["mode"], mode, "mode")
    check_eq(sorted(r["errors"]), sorted(ERR_KINDS), "error kinds")
    want_err = dict.fromkeys(ERR_KINDS, 0)
    want_err.update(errors or {})
    check_eq(r["errors"], want_err, "errors")
    check_eq(r["errors_total"], sum(want_err.values()), "errors_total")
    check_eq(r["requests"], requests, "requests")
    lat = r["latency_us"]
    check_eq(lat["count"], requests, "latency count")
    if requests:
        seq = [lat[k] for k in ("min", "p50", "p90", "p99", "p99_9", "max")]
        check(seq == sorted(seq) and seq[0] > 0, "latency not ordered: %r" % lat)
        check(lat["min"] <= lat["mean"] <= lat["max"], "mean outside min..max: %r" % lat)
        check(r["requests_per_s"] > 0 and r["duration_s"] > 0, "no rate: %r" % r)
        rate = r["requests"] / r["duration_s"]
        check(abs(r["requests_per_s"] - rate) <= 0.01 * rate + 0.1,
              "requests_per_s %r is not requests/duration %r" % (r["requests_per_s"], rate))
    mb = (r["bytes_rx"] + r["bytes_tx"]) / 1e6 / r["duration_s"]
    check(abs(r["mb_per_s"] - mb) <= 0.01 * mb + 0.001,
          "mb_per_s %r, want %r" % (r["mb_per_s"], mb))


@test("bench/rps: keep-alive GETs, every body checked, counts exact", timeout=60)
def t_rps():
    need_bench()
    be = Backend()
    with gateway(be.port) as gw:
        p = gw.ports["P0"]
        r, _ = bench("rps", p, "-t", "2", "-c", "4", "-n", "300", "--check-body")
        check_json(r, "rps", 300)
        check_eq(r["handshakes"], 4, "handshakes (one per keep-alive connection)")
        check_eq(r["bytes_rx"], 300 * 64, "bytes_rx (300 bodies of 64)")
        check_eq(r["bytes_tx"], 0, "bytes_tx")
        check_eq(r["tls_version"], "TLSv1.3", "tls_version")
        check_eq((r["threads"], r["connections"]), (2, 4), "threads, connections")
        r, _ = bench("rps", p, "-t", "1", "-c", "2", "-n", "50", "--size", "0", "--tls", "1.2")
        check_json(r, "rps", 50)
        check_eq(r["tls_version"], "TLSv1.2", "tls_version")
        check_eq(r["bytes_rx"], 0, "bytes_rx")
        # text output, and the progress line each second on stderr (-d)
        out, err = bench("rps", p, "-t", "1", "-c", "2", "-d", "1.3", json_out=False,
                         quiet=False)
        check(re.search(r"^\[\s*1s\]\s+[0-9.]+ req/s", err, re.M), "no progress line: %r" % err)
        m = re.search(r"^\s+requests\s+(\d+)", out, re.M)
        check(m and int(m.group(1)) > 0, "text report: %r" % out)
        m = re.search(r"^\s+errors\s+(\d+)", out, re.M)
        check(m and m.group(1) == "0", "text report errors: %r" % out)
        m = re.search(r"(\d+\.\d+) s$", out.splitlines()[0])
        check(m and 1.2 <= float(m.group(1)) <= 3 * lib.SLOW, "duration: %r" % out)
        gw.check_alive("bench rps")


@test("bench/handshake: a new mTLS connection per request, TLS 1.2/1.3, resumption", timeout=90)
def t_handshake():
    need_bench()
    be = Backend()
    with gateway(be.port) as gw:
        p = gw.ports["P0"]
        for ver in ("1.3", "1.2"):
            r, _ = bench("handshake", p, "-t", "2", "-c", "2", "-n", "40", "--tls", ver)
            check_json(r, "handshake", 40)
            check_eq(r["tls_version"], "TLSv" + ver, "tls_version")
            check_eq((r["handshakes"], r["resumed"]), (40, 0), "handshakes, resumed")
            check_eq(r["bytes_rx"], 40 * 64, "bytes_rx")
            # each slot's first connection is a full handshake, every later one resumes
            r, _ = bench("handshake", p, "-t", "1", "-c", "2", "-n", "40", "--tls", ver,
                         "--resume")
            check_json(r, "handshake", 40)
            check_eq((r["handshakes"], r["resumed"]), (40, 38),
                     "TLS %s handshakes, resumed" % ver)
        gw.check_alive("bench handshake")


@test("bench/bulk: downloads checked byte for byte, uploads answered with their length",
      timeout=90)
def t_bulk():
    need_bench()
    be = Backend()
    with gateway(be.port) as gw:
        p = gw.ports["P0"]
        r, _ = bench("bulk", p, "-t", "1", "-c", "2", "-n", "12", "--download", "1m",
                     "--check-body")
        check_json(r, "bulk", 12)
        check_eq((r["bytes_rx"], r["bytes_tx"]), (12 << 20, 0), "download bytes")
        check_eq(r.get("download"), 1 << 20, "download size")
        r, _ = bench("bulk", p, "-t", "2", "-c", "2", "-n", "12", "--upload", "1m")
        check_json(r, "bulk", 12)
        check_eq((r["bytes_rx"], r["bytes_tx"]), (12 * len(b"1048576\n"), 12 << 20),
                 "upload bytes")
        gw.check_alive("bench bulk")


@test("bench/stream: echo and sink through stream mode (PROXY v2 header skipped)", timeout=60)
def t_stream():
    need_bench()
    be = Backend("--echo")
    with gateway(be.port, stream=True) as gw:
        r, _ = bench("stream", gw.ports["P0"], "-t", "2", "-c", "3", "-n", "150", "--size", "16k")
        check_json(r, "stream", 150)
        check_eq((r["bytes_rx"], r["bytes_tx"]), (150 * 16384, 150 * 16384), "echo bytes")
        check_eq(r["handshakes"], 3, "handshakes")
        check_eq(r.get("stream"), "echo", "stream kind")
    sink = Backend("--sink")
    with gateway(sink.port, stream=True) as gw:
        r, _ = bench("stream", gw.ports["P0"], "-t", "1", "-c", "2", "-n", "100", "--size", "64k",
                     "--sink")
        check_json(r, "stream", 100)
        check_eq((r["bytes_rx"], r["bytes_tx"]), (0, 100 * 65536), "sink bytes")
        check_eq(r.get("stream"), "sink", "stream kind")


@test("bench/wrong-answers: a wrong status, length, body or a cut answer is an error",
      timeout=120)
def t_wrong():
    need_bench()
    # every 3rd answer of the (one-thread) backend is wrong: 30 requests = 20 ok + 10 errors
    cases = [
        ("status:3", ["rps", "--check-body"], "status"),
        ("length:3", ["rps", "--check-body"], "length"),
        ("body:3", ["rps", "--check-body"], "body"),
        ("body:3", ["rps", "--size", "0"], "length"),  # an empty body cannot be wrong: longer
        ("close:3", ["rps", "--size", "4k"], "closed"),
        ("body:3", ["bulk", "--download", "100k", "--check-body"], "body"),
        ("length:3", ["bulk", "--upload", "100k"], "body"),  # the answer names 102401 bytes
        ("status:3", ["handshake"], "status"),
    ]
    for fault, args, kind in cases:
        be = Backend("--fault", fault)
        with gateway(be.port) as gw:
            r, _ = bench(args[0], gw.ports["P0"], "-t", "1", "-c", "2", "-n", "30", *args[1:],
                         want_rc=1)
            try:
                check_json(r, args[0], 20, {kind: 10})
            except TestFailure as e:
                raise TestFailure("--fault %s, %s: %s" % (fault, " ".join(args), e))
            gw.check_alive("--fault " + fault)
        be.close()
    # every answer wrong: nothing succeeds
    be = Backend("--fault", "status:1")
    with gateway(be.port) as gw:
        r, _ = bench("rps", gw.ports["P0"], "-t", "1", "-c", "1", "-n", "5", want_rc=1)
        check_json(r, "rps", 0, {"status": 5})
    # a backend that is down: the gateway's 502 is not a success
    port = free_port()
    with gateway(port) as gw:
        r, _ = bench("rps", gw.ports["P0"], "-t", "1", "-c", "2", "-n", "6", want_rc=1)
        check_json(r, "rps", 0, {"status": 6})


@test("bench/refused: a client the gateway refuses fails its handshakes (TLS 1.2 and 1.3)",
      timeout=60)
def t_refused():
    need_bench()
    be = Backend()
    with gateway(be.port) as gw:
        for ver in ("1.3", "1.2"):
            for mode in ("handshake", "rps"):
                r, _ = bench(mode, gw.ports["P0"], "-t", "1", "-c", "2", "-n", "6", "--tls", ver,
                             client="client-other", want_rc=1)
                check_json(r, mode, 0, {"handshake": 6})
                check_eq(r["handshakes"], 0, "handshakes counted for a refused client")
        # nothing listening
        r, _ = bench("rps", free_port(), "-t", "1", "-c", "2", "-n", "4", want_rc=1)
        check_json(r, "rps", 0, {"connect": 4})


@test("bench/server-verify: --ca checks the server (in full once, then the same chain)",
      timeout=60)
def t_server_verify():
    """ktlsgw-bench --ca: a server whose certificate the CAs do not sign fails every
    handshake (nothing is accepted unverified, the first time or later); against the right
    CA all pass, the later ones with the chain verified once. The same with EC keys decoded
    by OpenSSL's legacy EC method (the default) and by the provider decoders."""
    need_bench()
    be = Backend()
    with gateway(be.port) as gw:
        for ec, extra in (("legacy", ()), ("provider", ("--provider-ec",))):
            for ver in ("1.3", "1.2"):
                r, _ = bench("handshake", gw.ports["P0"], "-t", "2", "-c", "4", "-n", "40",
                             "--tls", ver, "--ca", cert("ca-other.pem"), *extra, want_rc=1)
                check_json(r, "handshake", 0, {"handshake": 40})
                check_eq(r["ec_keys"], ec, "EC key decoding")
                r, _ = bench("handshake", gw.ports["P0"], "-t", "2", "-c", "4", "-n", "40",
                             "--tls", ver, *extra)
                check_json(r, "handshake", 40)
                check_eq(r["ec_keys"], ec, "EC key decoding")


def gateway_env(be_port, env):
    """gateway() with @env added to ktlsgw's environment."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return gateway(be_port)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@test("bench/rx-ring: a 2-buffer receive ring and no ring, bodies checked", timeout=180)
def t_rx_ring():
    """Receive buffers: with a ring of 2 (KTLSGW_RX_RING=2), 16 connections moving 1 MiB
    bodies both ways make receives find the ring empty and retry: every byte still
    arrives, in order, and the exit line counts the retries. Without the ring
    (KTLSGW_RX_RING=off) each connection allocates its own: the same checks."""
    need_bench()
    be = Backend()
    try:
        for env, label in (({"KTLSGW_RX_RING": "2"}, "ring of 2"),
                           ({"KTLSGW_RX_RING": "off"}, "no ring")):
            gw = gateway_env(be.port, env)
            p = gw.ports["P0"]
            r, _ = bench("bulk", p, "-t", "2", "-c", "16", "-n", "64", "--download", "1m",
                         "--check-body")
            check_eq((r["requests"], r["errors_total"]), (64, 0), label + ": downloads")
            r, _ = bench("bulk", p, "-t", "2", "-c", "16", "-n", "64", "--upload", "1m")
            check_eq((r["requests"], r["errors_total"]), (64, 0), label + ": uploads")
            gw.stop()
            log = gw.logtext()
            m = re.search(r"(\d+) receive\(s\) retried for a ring buffer", log)
            check(m is not None, "%s: no exit line: %s" % (label, log[-800:]))
            if label == "ring of 2":
                check(int(m.group(1)) > 0, "ring of 2: no receive ever waited: %s" % m.group(0))
            else:
                check("per-connection receive buffers" in log,
                      "no ring: not said in the log: %s" % log[-800:])
                check_eq(int(m.group(1)), 0, "no ring: retries")
    finally:
        be.close()
