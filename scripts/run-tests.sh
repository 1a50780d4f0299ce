#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make test: the C unit tests, the integration suite (real sockets, real
# nginx as the oracle, real openssl s_client), then the kernel TLS suite in a
# VM (make vmtest). Prints each suite's result and a final summed
# "N passed, N failed, N skipped".
set -uo pipefail
OUT=${1:-build/default}
export GW_BIN=$OUT/ktlsgw GW_CERTS=$OUT/certs
if [[ "$OUT" == *san* ]]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
fi
total_p=0 total_f=0 total_s=0
run_suite() {
	local name=$1; shift
	local log rc line
	log=$(mktemp)
	echo "== $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$name: no result line (exit $rc)"
		total_f=$((total_f + 1))
	else
		read -r p _ f _ s _ <<<"${line//,/}"
		total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + ${s:-0}))
		[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && total_f=$((total_f + 1))
	fi
	rm -f "$log"
}
run_suite unit "$OUT/run-tests"
if [ -f tests/integration/run.py ]; then
	run_suite integration python3 tests/integration/run.py
fi
# The kernel paths (tier K) need a kernel with TLS: a VM boots Debian's 6.1 kernel.
# Once per make test, with the plain build (make SAN=1 vmtest runs it with the ASan one).
if [[ "$OUT" != *san* ]]; then
	run_suite vm make --no-print-directory -s vmtest
fi
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
