#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Gateway CPU and throughput per GiB for a passthrough route (ssl_passthrough), three relays
# of the same binary in one run, on this host:
#   sockmap  the eBPF sk_skb verdict moves the bytes in the kernel (the default)
#   splice   io_uring splice socket -> pipe -> socket   (KTLSGW_PASSTHROUGH_RELAY=splice)
#   copy     io_uring recv/send through a userspace buffer (KTLSGW_PASSTHROUGH_RELAY=copy)
# Each run: one connection, a real ClientHello, then SIZE MiB each way at once (client and
# backend are Python on loopback), the bytes checked by SHA-256.
#
#   scripts/bench-passthrough.sh [SIZE_MIB (256)] [RUNS (3)]    (env GW_BIN, GW_CERTS)
#
# Prints one line per run and a median line per relay: gateway CPU seconds (user+sys of the
# process and its io_uring workers, /proc/PID/stat), CPU s/GiB, wall s/GiB, GiB/s, and the
# whole machine's CPU s/GiB over the run (/proc/stat: includes the kernel work done in
# softirq and kworkers on the gateway's behalf, and the Python client and backend).
# Needs root (BPF).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
export GW_BIN=${GW_BIN:-build/default/ktlsgw} GW_CERTS=${GW_CERTS:-build/default/certs}
[ -x "$GW_BIN" ] || { echo "no $GW_BIN: run make" >&2; exit 2; }
[ -f "$GW_CERTS/server.crt" ] || scripts/gen-test-certs.sh "$GW_CERTS" >/dev/null
exec python3 - "${1:-256}" "${2:-3}" <<'PY'
import os, statistics, sys, time
sys.path.insert(0, "tests/integration")
import lib
import test_passthrough as tp

size, runs = int(sys.argv[1]) << 20, int(sys.argv[2])
gib = 2 * size / (1 << 30)  # both directions


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait


res = {}
try:
    for run in range(runs):
        for mode in ("sockmap", "splice", "copy"):
            out = []
            be = tp.RawBackend(tp.bulk_backend(size, out))
            gw = tp.gw_pt(be.port, env={"KTLSGW_PASSTHROUGH_RELAY": mode})
            if mode == "sockmap" and "eBPF sockmap loaded" not in gw.logtext():
                sys.exit("BPF unavailable: %s" % gw.logtext()[-300:])
            pid = gw.proc.pid
            c0, m0, t0 = tp.cpu_seconds(pid), machine_cpu(), time.monotonic()
            up, down, got = tp.bulk(gw.ports["P0"], "pass.example", size, size)
            while not out and time.monotonic() - t0 < 120:
                time.sleep(0.01)
            wall = time.monotonic() - t0
            cpu, mcpu = tp.cpu_seconds(pid) - c0, machine_cpu() - m0
            gw.stop()
            be.close()
            if not out or out[0][0] != up or got != size or down != out[0][2]:
                sys.exit("%s: transfer corrupted or incomplete" % mode)
            res.setdefault(mode, []).append((cpu, wall, mcpu))
            print("run %d %-8s gateway CPU %6.3f s = %6.3f s/GiB   wall %6.3f s/GiB "
                  "(%5.2f GiB/s)   machine CPU %6.2f s/GiB" % (
                      run + 1, mode, cpu, cpu / gib, wall / gib, gib / wall, mcpu / gib),
                  flush=True)
finally:
    lib.cleanup()
print("median over %d runs, %d MiB each way (%.2f GiB moved per run):" % (runs, size >> 20, gib))
for mode, v in res.items():
    cpu = statistics.median(x[0] for x in v)
    wall = statistics.median(x[1] for x in v)
    mcpu = statistics.median(x[2] for x in v)
    print("  %-8s gateway %.3f CPU-s/GiB   %.3f wall-s/GiB (%.2f GiB/s)   machine %.2f "
          "CPU-s/GiB" % (mode, cpu / gib, wall / gib, gib / wall, mcpu / gib))
PY
