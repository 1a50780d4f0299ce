#!/bin/sh
# SPDX-License-Identifier: MIT
# Everything `make vmtest` runs INSIDE the VM (Debian's 6.1 kernel, with kernel TLS):
#   1. tests/vm/run.py: the kernel's TLS itself (ULP, raw TLS_TX/RX, OpenSSL kTLS);
#   1b. build/vm/sockmap-ktls: kTLS and the sockmap refuse each other (EINVAL both orders);
#   2. the integration suite's tier K tests (ktls/) and the gateway tests (gw/, regress/,
#      cli/), which on this kernel run on tier K.
# Prints each suite's lines, then the summed "N passed, N failed, N skipped".
# Usage: tests/vm/suite.sh [FILTER]   (FILTER narrows both suites)
p=0 f=0 s=0
sum() {
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$2: no result line"
		f=$((f + 1))
		return
	fi
	set -- $(echo "$line" | tr -d ,)
	p=$((p + $1)) f=$((f + $3)) s=$((s + ${5:-0}))
}
log=/tmp/vmsuite.$$
/usr/bin/python3 tests/vm/run.py $1 2>&1 | tee "$log.1"
sum "$log.1" kernel
if [ -z "$1" ] || [ "$1" = sockmap-ktls ]; then
	# the kernel refuses kTLS on a socket in a sockmap, both orders (DESIGN.md)
	build/vm/sockmap-ktls 2>&1 | tee "$log.3"
	sum "$log.3" sockmap-ktls
fi
if [ -n "$1" ]; then
	set -- "$1"
else
	set -- ktls/ gw/ regress/ cli/
fi
/usr/bin/python3 tests/integration/run.py "$@" 2>&1 | tee "$log.2"
sum "$log.2" integration
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
