#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install everything the build, the tests and the demo need, from Debian 12's packages.
#   scripts/install-deps.sh             install (apt-get update first)
#   scripts/install-deps.sh --if-missing  only when something is missing (make deps)
set -euo pipefail

PKGS=(build-essential pkg-config libssl-dev openssl liburing-dev libbpf-dev bpftool
	clang llvm python3 nginx libnginx-mod-stream curl iproute2 procps
	qemu-system-x86 busybox-static cpio kmod)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${1:-}" = "--if-missing" ] && [ ${#missing[@]} -eq 0 ]; then
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
# The Debian nginx package starts a system nginx on :80; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
	$SUDO systemctl stop nginx || true
fi
