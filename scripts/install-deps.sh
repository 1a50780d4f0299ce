#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install everything the build, the tests and the demo need, from Debian 12's packages.
#   scripts/install-deps.sh             install (apt-get update first)
#   scripts/install-deps.sh --if-missing  only when something is missing (make deps)
#   scripts/install-deps.sh --bench     also what scripts/bench.sh compares against and plots
#                                       with (haproxy, gnuplot-nox); combines with --if-missing
set -euo pipefail

if_missing=0
bench=0
for a in "$@"; do
	case "$a" in
	--if-missing) if_missing=1 ;;
	--bench) bench=1 ;;
	*) echo "usage: $0 [--if-missing] [--bench]" >&2; exit 2 ;;
	esac
done

PKGS=(build-essential pkg-config libssl-dev openssl liburing-dev libbpf-dev bpftool
	libjemalloc-dev
	clang llvm clang-format python3 nginx libnginx-mod-stream curl iproute2 procps
	qemu-system-x86 busybox-static cpio kmod)
if [ "$bench" = 1 ]; then
	PKGS+=(haproxy gnuplot-nox util-linux)
fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "$if_missing" = 1 ] && [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-deps: installing ${missing[*]:-${PKGS[*]}}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
# The Debian nginx (and haproxy) packages start a system service; the tests and the
# benchmark start their own.
for svc in nginx haproxy; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet $svc 2>/dev/null; then
		$SUDO systemctl stop $svc || true
	fi
done
