#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a command inside a throwaway VM that boots Debian 12's own 6.1 kernel (which ships
# tls.ko) on the host's userland, so that the kernel TLS paths can be tested on a host
# whose kernel has no kTLS (recipe: docs/KERNEL-VM.md).
#
#   scripts/vmtest.sh [--timeout SECS] [--out DIR] [-e NAME=VALUE]... [--rebuild] [--quiet]
#                     -- COMMAND...
#
# COMMAND is an argv (as with env/timeout; use `sh -c '...'` for a shell line). It runs as
# root in the guest, chrooted into the host's / shared READ-ONLY over 9p, in the repository
# root, with:
#   PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  (no pyenv: python3 is
#        /usr/bin/python3), HOME=/tmp/home, TMPDIR=/tmp, LANG=C.UTF-8, TERM=dumb,
#   VMTEST=1, VMTEST_KVER=<guest kernel>, VMTEST_OUT=/tmp/vmout, plus each -e NAME=VALUE.
# Writable in the guest: /tmp, /run, /dev/shm (tmpfs, lost at power-off) and /tmp/vmout,
# a writable 9p share of the host folder --out DIR (default build/vm/out, emptied at each
# run; a DIR given with --out is never emptied; one run at a time per DIR): what a test
# writes there comes back. The root share is mounted with cache=loose (read-only, and bash
# starts in 0.3 s instead of 2-11 s): do not rebuild the tree while a VM runs.
# Mounted too: /proc, /sys, /dev (devtmpfs), /sys/fs/bpf. Loopback is up; no other network.
# Modules loaded before COMMAND: see MODULES below (tls and the AEAD crypto it needs).
#
# The guest console streams to stdout, less the exit marker and the kernel's power-off line
# (both stay in the console log). --quiet: no runner lines on stderr when the VM ran and
# printed its marker, so that COMMAND's last line is the last one printed (make vmtest).
# Exit status: COMMAND's own; 124 when the VM ran past --timeout (default 300 s; qemu is
# killed); 125 when the VM did not boot or printed no exit marker; 2 on a usage error.
# The guest kills COMMAND itself a little before the host's limit (vmtest.timeout) so that a
# hung test still ends with a marker and a clean power-off.
#
# Cache (build/vm/, or $VMTEST_DIR): the kernel package is fetched once with
# `apt-get download` (never installed), unpacked with `dpkg -x`; the kernel image and the
# initramfs (static busybox + the modules with their dependencies + /init) are rebuilt only
# when missing or when this script changed (or with --rebuild). Layout:
#   build/vm/linux-image-*.deb   the package as downloaded (a rebuild needs no network)
#   build/vm/kver                its kernel release, e.g. 6.1.0-56-amd64
#   build/vm/vmlinuz, initrd.gz  what qemu boots; initrd.stamp: what they were built from
#   build/vm/out/                the default --out folder
#   build/vm/out/vmtest-console.log  (or DIR/vmtest-console.log) the last console, \r removed
#   build/vm/run.XXXXXX/         per-run command script (read by the guest), removed after
#
# Environment: VMTEST_KVM=1 boots with -accel kvm -cpu host (opt-in: nested KVM does not work
# on the dev/CI machines, TCG is the default); VMTEST_KPKG=linux-image-... picks another
# kernel package; VMTEST_MODULES="m1 m2" loads extra modules; VMTEST_MEM (MiB, 1024),
# VMTEST_SMP (2); VMTEST_DIR (build/vm).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd -P)
VMDIR=${VMTEST_DIR:-$ROOT/build/vm}
TIMEOUT=300
OUTDIR=
REBUILD=0
QUIET=0
ENVS=()
MODULES="virtio_pci 9pnet_virtio 9p virtio_rng tls aesni_intel gcm ccm chacha20poly1305
	chacha_generic chacha-x86_64 poly1305_generic poly1305-x86_64 veth ${VMTEST_MODULES:-}"
# one line, single spaces
# shellcheck disable=SC2086,SC2116
MODULES=$(echo $MODULES)

die() { echo "vmtest: $*" >&2; exit "${RC:-125}"; }
usage() {
	sed -n '3,9p' "$SELF" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--timeout) [ $# -ge 2 ] || usage; TIMEOUT=$2; shift 2 ;;
	--timeout=*) TIMEOUT=${1#*=}; shift ;;
	--out) [ $# -ge 2 ] || usage; OUTDIR=$2; shift 2 ;;
	--out=*) OUTDIR=${1#*=}; shift ;;
	-e|--env) [ $# -ge 2 ] || usage; ENVS+=("$2"); shift 2 ;;
	--rebuild) REBUILD=1; shift ;;
	-q|--quiet) QUIET=1; shift ;;
	-h|--help) usage ;;
	--) shift; break ;;
	*) usage ;;
	esac
done
[ $# -ge 1 ] || usage
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -ge 10 ] || RC=2 die "--timeout wants seconds (>= 10)"
for e in "${ENVS[@]}"; do
	[[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || RC=2 die "-e wants NAME=VALUE, not '$e'"
done
# A clone under /tmp (CI may make one there) is bound back over the guest's tmpfs /tmp.
case $ROOT in
/tmp) die "the repository cannot be /tmp itself" ;;
/run|/run/*|/proc/*|/sys/*|/dev/*)
	die "the repository ($ROOT) is under a folder the guest mounts over; move it" ;;
esac
case $VMDIR in
/tmp/*) case $VMDIR in "$ROOT"/*) ;; *) die "VMTEST_DIR ($VMDIR) under /tmp must be inside the repository" ;; esac ;;
esac
case $ROOT in
*[[:space:]]*) die "the repository path ($ROOT) contains white space" ;;
esac

need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 not found: run 'make deps' (scripts/install-deps.sh installs $2)"
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need depmod kmod
need dpkg-deb dpkg
[ -x /bin/busybox ] && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null |
	grep -q 'install ok installed' ||
	die "static busybox not found: run 'make deps' (scripts/install-deps.sh installs busybox-static)"

mkdir -p "$VMDIR"
VMDIR=$(cd "$VMDIR" && pwd -P)

# ---- kernel package: fetched once -------------------------------------------------------
kernel_pkg() {
	local pkg
	if [ -n "${VMTEST_KPKG:-}" ]; then
		echo "$VMTEST_KPKG"
		return
	fi
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
	if [ -z "$pkg" ]; then
		echo "vmtest: apt-cache knows no linux-image-amd64; running apt-get update" >&2
		apt-get update -qq >&2 || true
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
	fi
	[ -n "$pkg" ] ||
		die "cannot tell which linux-image-6.1.0-NN-amd64 to fetch (apt-cache depends linux-image-amd64)"
	echo "$pkg"
}

fetch_kernel() {
	local pkg deb
	pkg=$(kernel_pkg)
	deb=$(ls "$VMDIR"/"$pkg"_*.deb 2>/dev/null | tail -n 1 || true)
	if [ -z "$deb" ]; then
		echo "vmtest: fetching $pkg (apt-get download)" >&2
		(cd "$VMDIR" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2) ||
			true
		deb=$(ls "$VMDIR"/"$pkg"_*.deb 2>/dev/null | tail -n 1 || true)
		[ -n "$deb" ] || die "apt-get download $pkg failed"
	fi
	echo "$deb"
}

build_stamp() {
	# What the boot files are built from: this script (it writes /init), the package, the
	# module list and busybox.
	{
		sha256sum "$SELF" | cut -d' ' -f1
		basename "$1"
		echo "$MODULES"
		dpkg-query -W -f='${Version}\n' busybox-static
	} | sha256sum | cut -d' ' -f1
}

write_init() {
	cat >"$1" <<'EOF'
#!/bin/sh
# Generated by scripts/vmtest.sh: boot, load modules, chroot into the host's / and run the
# per-run command script; print VMTEST-EXIT=<rc> and power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
fail() {
	echo "VMTEST-SETUP-FAILED: $*"
	poweroff -f
	sleep 10
}
RUN= GT=240 REPO= KVER=$(uname -r)
for w in $(cat /proc/cmdline); do
	case $w in
	vmtest.run=*) RUN=${w#*=} ;;
	vmtest.timeout=*) GT=${w#*=} ;;
	vmtest.repo=*) REPO=${w#*=} ;;
	esac
done
[ -n "$RUN" ] || fail "no vmtest.run= on the kernel command line"
for m in @MODULES@; do
	modprobe "$m" || echo "vmtest: modprobe $m failed"
done
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host ||
	fail "mounting the host's / over 9p"
mount -t proc proc /host/proc || fail "mounting /proc"
mount -t sysfs sys /host/sys || fail "mounting /sys"
mount -t devtmpfs dev /host/dev || fail "mounting /dev"
mkdir -p /host/dev/shm /host/dev/pts
mount -t tmpfs -o mode=1777 shm /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t bpf bpf /host/sys/fs/bpf || echo "vmtest: no bpffs"
case $REPO in
/tmp/*)	# the tmpfs below would hide the repository: keep it aside, bind it back after
	mkdir -p /repo && mount -o bind "/host$REPO" /repo || fail "binding $REPO" ;;
esac
mount -t tmpfs -o mode=1777 tmp /host/tmp || fail "mounting a tmpfs on /tmp"
case $REPO in
/tmp/*) mkdir -p "/host$REPO" && mount -o bind /repo "/host$REPO" ||
	fail "binding $REPO back under the guest's /tmp" ;;
esac
mount -t tmpfs -o mode=755 run /host/run || fail "mounting a tmpfs on /run"
mkdir -p /host/tmp/vmout /host/tmp/home
mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=262144 out /host/tmp/vmout ||
	fail "mounting the output share at /tmp/vmout"
ip link set lo up || fail "bringing lo up"
[ -r "/host$RUN" ] || fail "the command script /host$RUN is not visible in the guest"
echo "vmtest: kernel $KVER up $(cut -d' ' -f1 /proc/uptime) s, running the command (limit $GT s)"
t0=$(cut -d. -f1 /proc/uptime)
timeout -s KILL "$GT" env -i \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/tmp/home TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb \
	VMTEST=1 VMTEST_KVER="$KVER" VMTEST_OUT=/tmp/vmout \
	/bin/chroot /host /bin/sh "$RUN"
rc=$?
t1=$(cut -d. -f1 /proc/uptime)
if [ "$rc" -eq 137 ] && [ $((t1 - t0)) -ge "$GT" ]; then
	echo "vmtest: the command ran past the guest's limit ($GT s) and was killed"
fi
sync
umount /host/tmp/vmout 2>/dev/null
echo "VMTEST-EXIT=$rc"
poweroff -f
sleep 10
EOF
	sed -i "s/@MODULES@/$MODULES/" "$1"
	chmod 755 "$1"
}

build_initrd() {
	local deb=$1 tmp pkgroot ir kver m f n=0
	tmp=$(mktemp -d "$VMDIR/build.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	pkgroot=$tmp/pkg
	ir=$tmp/initrd
	echo "vmtest: unpacking $(basename "$deb") and building the initramfs" >&2
	dpkg -x "$deb" "$pkgroot"
	kver=$(ls "$pkgroot/lib/modules" | head -n 1)
	[ -n "$kver" ] && [ -f "$pkgroot/boot/vmlinuz-$kver" ] || die "no kernel in $deb"
	depmod -b "$pkgroot" "$kver"
	mkdir -p "$ir"/{bin,dev,proc,sys,host,tmp,lib/modules/"$kver"}
	cp /bin/busybox "$ir/bin/busybox"
	for f in $(/bin/busybox --list); do
		[ "$f" = busybox ] || ln -s busybox "$ir/bin/$f"
	done
	ln -s bin "$ir/sbin"
	for m in $MODULES; do
		# --show-depends lists the module after its dependencies: "insmod PATH" or "builtin M"
		modprobe -d "$pkgroot" -S "$kver" --show-depends "$m" >"$tmp/deps" 2>"$tmp/err" ||
			die "module $m: $(cat "$tmp/err")"
		while read -r kind f _; do
			[ "$kind" = insmod ] || continue
			f=${f#"$pkgroot"/}
			f=lib/${f#*lib/}
			[ -f "$ir/$f" ] && continue
			mkdir -p "$ir/$(dirname "$f")"
			cp "$pkgroot/$f" "$ir/$f"
			n=$((n + 1))
		done <"$tmp/deps"
	done
	cp "$pkgroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} \
		"$ir/lib/modules/$kver/"
	depmod -b "$ir" "$kver"
	write_init "$ir/init"
	(cd "$ir" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$VMDIR/initrd.gz.tmp"
	cp "$pkgroot/boot/vmlinuz-$kver" "$VMDIR/vmlinuz.tmp"
	mv "$VMDIR/vmlinuz.tmp" "$VMDIR/vmlinuz"
	mv "$VMDIR/initrd.gz.tmp" "$VMDIR/initrd.gz"
	echo "$kver" >"$VMDIR/kver"
	echo "vmtest: initramfs for $kver: $n modules, $(du -k "$VMDIR/initrd.gz" | cut -f1) KiB" >&2
}

prepare() {
	local deb stamp
	exec 9>"$VMDIR/.lock"
	flock 9
	deb=$(ls "$VMDIR"/linux-image-*.deb 2>/dev/null | tail -n 1 || true)
	if [ -n "${VMTEST_KPKG:-}" ] || [ -z "$deb" ]; then
		deb=$(fetch_kernel)
	fi
	stamp=$(build_stamp "$deb")
	if [ "$REBUILD" = 1 ] || [ ! -f "$VMDIR/vmlinuz" ] || [ ! -f "$VMDIR/initrd.gz" ] ||
		[ ! -f "$VMDIR/kver" ] || [ "$(cat "$VMDIR/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
		build_initrd "$deb"
		echo "$stamp" >"$VMDIR/initrd.stamp"
	fi
	exec 9>&-
}

prepare
KVER=$(cat "$VMDIR/kver")

# ---- the run ----------------------------------------------------------------------------
# One run at a time per output folder (two `make vmtest` in one tree wait for each other
# instead of emptying each other's folder); the lock is held until this script exits.
DEFAULT_OUT=0
if [ -z "$OUTDIR" ]; then
	OUTDIR=$VMDIR/out
	DEFAULT_OUT=1
fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd -P)
exec 8>"$VMDIR/out-$(printf '%s' "$OUTDIR" | sha256sum | cut -c1-12).lock"
if ! flock -n 8; then
	echo "vmtest: waiting for the other run that uses $OUTDIR" >&2
	flock -w "$TIMEOUT" 8 || RC=124 die "$OUTDIR stayed in use for $TIMEOUT s"
fi
if [ "$DEFAULT_OUT" = 1 ]; then
	find "$OUTDIR" -mindepth 1 -delete
fi
RUNDIR=$(mktemp -d "$VMDIR/run.XXXXXX")
LOG=$OUTDIR/vmtest-console.log
cleanup() {
	rm -rf "$RUNDIR"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
# COMMAND's words are quoted with bash's printf %q: the guest's /bin/sh hands over to the
# host's bash (the one running this script) at once.
{
	echo "# generated by scripts/vmtest.sh"
	echo "cd $(printf '%q' "$ROOT") || exit 125"
	for e in "${ENVS[@]}"; do
		echo "export ${e%%=*}=$(printf '%q' "${e#*=}")"
	done
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$RUNDIR/cmd.bash"
echo "exec $BASH $RUNDIR/cmd.bash" >"$RUNDIR/cmd.sh"

if [ "${VMTEST_KVM:-0}" = 1 ]; then
	[ -w /dev/kvm ] || die "VMTEST_KVM=1 but /dev/kvm is not usable"
	ACCEL=(-accel kvm -cpu host)
else
	ACCEL=(-accel tcg -cpu max)
fi
# etc/sercon-port=0 keeps SeaBIOS off the serial line (it would send terminal resets);
# qemu warns about the name, which the filter below drops.
# the guest stops COMMAND before the host kills qemu: leave time for boot and power-off
if [ "$TIMEOUT" -ge 90 ]; then
	GT=$((TIMEOUT - 45))
else
	GT=$((TIMEOUT * 2 / 3))
fi

[ "$QUIET" = 1 ] ||
	echo "vmtest: booting $KVER (${ACCEL[1]}, limit ${TIMEOUT} s): $*" >&2
t0=$(date +%s.%N)
set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${ACCEL[@]}" \
	-m "${VMTEST_MEM:-1024}" -smp "${VMTEST_SMP:-2}" -nographic -no-reboot \
	-nic none -vga none -fw_cfg name=etc/sercon-port,string=0 -device virtio-rng-pci \
	-kernel "$VMDIR/vmlinuz" -initrd "$VMDIR/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 vmtest.run=$RUNDIR/cmd.sh vmtest.timeout=$GT vmtest.repo=$ROOT" \
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
	-virtfs "local,path=$OUTDIR,mount_tag=out,security_model=none" \
	</dev/null 2>&1 | sed -u -e 's/\r$//' -e '/fw_cfg name=etc\/sercon-port.*warning/d' |
	tee "$LOG" | sed -u -e '/^VMTEST-EXIT=[0-9]*$/d' -e '/^\[ *[0-9.]*\] reboot: Power down$/d'
qrc=${PIPESTATUS[0]}
set -e
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

marker=$(grep -a -E '^VMTEST-EXIT=[0-9]+$' "$LOG" | tail -n 1 || true)
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
	RC=124 die "the VM ran past --timeout $TIMEOUT s and was killed (console: $LOG)"
fi
if grep -a -q '^VMTEST-SETUP-FAILED' "$LOG"; then
	die "the guest could not set up: $(grep -a '^VMTEST-SETUP-FAILED' "$LOG" | head -n 1)" \
		"(console: $LOG)"
fi
if [ -z "$marker" ]; then
	die "no VMTEST-EXIT marker: the VM did not boot or died (qemu exit $qrc; console: $LOG)"
fi
rc=${marker#VMTEST-EXIT=}
[ "$QUIET" = 1 ] || echo "vmtest: guest exit $rc after ${secs} s" >&2
exit "$rc"
