#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Gateway CPU seconds per GiB relayed, tier K (ssl_ktls on) with the io_uring
splice relay, tier K with the copy relay (KTLSGW_KTLS_RELAY=copy: recvmsg/send
of plaintext, the kernel still doing the crypto) and tier U (ssl_ktls off),
same kernel, same boot. The gateway's CPU includes its io-wq threads (they
belong to its thread group). A figure, not a test: run it on a
kernel with TLS, e.g. in the VM:

    scripts/vmtest.sh --timeout 900 -e GW_BIN=build/default/ktlsgw \\
        -e GW_CERTS=build/default/certs -- python3 scripts/ktls-cpu.py [MiB] [runs]

Stream mode, PROXY v2, TLS 1.3 AES-128-GCM; MiB each way per run (default 64),
median of the runs (default 3). Under TCG the guest's crypto is emulated:
compare the tiers with each other, never with real hardware."""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))

import lib  # noqa: E402
from lib import ProxyReceiver, Server, TlsConn, _TlsReader, det_bytes, free_port  # noqa: E402

BLOCK = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.3;
        ssl_ktls %s;
        proxy_pass 127.0.0.1:@BPORT@;
        proxy_protocol on;
    }
"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(mode, relay, n):
    with ProxyReceiver() as be:
        ports = {"P0": free_port(), "BPORT": be.port}
        os.environ["KTLSGW_KTLS_RELAY"] = relay
        with Server("gw", stream=[BLOCK % mode], ports=ports, name="cpu-" + mode).start() as gw:
            pid = gw.proc.pid
            up = det_bytes(1 << 20, b"cpu")
            with TlsConn(ports["P0"], "client-good", version="1.3", timeout=600) as c:
                c.handshake()
                t0 = cpu_seconds(pid)
                c.send(b"SINK %d\n" % n)
                for _ in range(n >> 20):
                    c.send(up)
                c.shutdown_write()
                rd = _TlsReader(c)
                j = json.loads(rd.until(b"\n"))
                got = len(rd.buf) + len(c.recv_all())
                t1 = cpu_seconds(pid)
            tier = ("K-" + relay) if "tier=K" in gw.logtext() else "U"
            if j["len"] != n or got != n:
                raise SystemExit("bytes lost: up %d down %d of %d" % (j["len"], got, n))
            return tier, (t1 - t0) / (2 * n / (1 << 30))


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    n = mib << 20
    res = {}
    try:
        for r in range(runs):
            # alternate, so drift hits all
            for mode, relay in (("on", "splice"), ("on", "copy"), ("off", "splice")):
                tier, cps = one_run(mode, relay, n)
                res.setdefault(tier, []).append(cps)
                print("run %d ssl_ktls %-3s tier %s: %.2f CPU-s/GiB" % (r + 1, mode, tier, cps),
                      flush=True)
    finally:
        lib.cleanup()
    print("kernel %s, %d MiB each way, %d runs" % (os.uname().release, mib, runs))
    for tier in sorted(res):
        print("tier %s: median %.2f gateway CPU-s per GiB relayed" % (
            tier, statistics.median(res[tier])))
    for k in ("K-splice", "K-copy"):
        if k in res and "U" in res:
            print("ratio %s/U: %.2f" % (k, statistics.median(res[k]) / statistics.median(res["U"])))


if __name__ == "__main__":
    main()
