#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Side-by-side mTLS benchmark: ktlsgw (tier U by default), nginx and HAProxy, one
# worker/thread each, equivalent configurations, pinned: the proxy under test on CPU 1, the
# load generator (build/ktlsgw-bench) and the backends on CPU 0.
#
#   scripts/bench.sh [--rounds R (3)] [--duration D (5)] [--idle N (10000)]
#                    [--scenarios a,b,...] [--proxies ktlsgw,nginx,haproxy] [--ktls off|auto]
#                    [--verify-cache on|off] [--load-ec legacy|provider] [--out DIR (build/bench)]
#                    [--no-install] [--quick]
#
# Builds (make), generates the test PKI (build/default/certs), installs what is missing
# (scripts/install-deps.sh --bench: nginx, HAProxy, gnuplot; Debian packages), then runs
# scripts/bench/run.py: every scenario against each proxy in turn (the order rotates each
# round), R rounds of D seconds, medians; then RSS per idle mTLS connection (N idle
# connections to a fresh process of each proxy). Writes DIR/results.md (the table),
# DIR/results.json (every run), DIR/results.svg (gnuplot chart) and DIR/logs/.
# --quick: 1 round of 2 s and 1000 idle connections (a check of the harness, not figures).
# --verify-cache off: ktlsgw verifies every client chain (ssl_verify_cache off), as the
# others do; by default the one client certificate of the load is verified once.
# --load-ec provider: the load generator decodes EC keys with OpenSSL 3.0's provider
# decoders; by default with OpenSSL's legacy EC method, 1.2 M instructions less per server
# certificate, so that the proxy, not the load on the other CPU, limits handshake scenarios.
# python3 scripts/bench/run.py --report DIR/results.json writes the table and chart again.
# Needs root for the sockmap passthrough route (ktlsgw loads BPF); without it that
# scenario is skipped with the reason.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

install=1
for a in "$@"; do
	[ "$a" = "--no-install" ] && install=0
	[ "$a" = "-h" ] || [ "$a" = "--help" ] && { sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
done
if [ "$install" = 1 ]; then
	scripts/install-deps.sh --if-missing --bench
fi
make -j"$(nproc)" >/dev/null
scripts/gen-test-certs.sh build/default/certs >/dev/null
# 10 000 idle connections: the opener and each proxy need that many descriptors and more.
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export BENCH_CMD="scripts/bench.sh${*:+ $*}"
exec python3 scripts/bench/run.py --certs build/default/certs --bin build/default "$@"
