#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Kernel TLS suite, run INSIDE the VM of scripts/vmtest.sh (Debian's 6.1 kernel):
`make vmtest`, or by hand
    scripts/vmtest.sh -- /usr/bin/python3 tests/vm/run.py [SUBSTRING]

Proves on the real kernel that tls.ko is there and works: TCP_ULP "tls" on an established
loopback socket, TLS_TX/TLS_RX with each AEAD the gateway may meet (records the kernel writes
are real TLS records that the kernel reads back; no plaintext on the wire), OpenSSL 3 moving
TLS 1.2 and 1.3 connections onto kTLS (counters in /proc/net/tls_stat), and `ktlsgw -V`
reporting `ktls: yes`.

One line per test (ok / FAIL / skip), then `N passed, N failed, N skipped`; exit 1 on any
failure. Python 3 stdlib only; the OpenSSL part uses build/vm/ktls-openssl (built on the host
by `make vmtest` from tests/vm/ktls_openssl.c). Environment: GW_BIN (build/ktlsgw),
VMTEST_KTLS_OPENSSL (build/vm/ktls-openssl), VMTEST_OUT (a folder the host gets back: the
suite copies /proc/net/tls_stat there at the end).
"""
import errno
import os
import socket
import struct
import subprocess
import sys
import time
import traceback

TCP_ULP = 31  # Python 3.11's socket module has no TCP_ULP / SOL_TLS
SOL_TLS = 282
TLS_TX = 1
TLS_RX = 2
TLS_1_2 = 0x0303
TLS_1_3 = 0x0304
# include/uapi/linux/tls.h: cipher type, iv, key, salt, rec_seq sizes
CIPHERS = {
    "aes-gcm-128": (51, 8, 16, 4, 8),
    "aes-gcm-256": (52, 8, 32, 4, 8),
    "aes-ccm-128": (53, 8, 16, 4, 8),
    "chacha20-poly1305": (54, 12, 32, 0, 8),
}
STEP_TIMEOUT = 120  # seconds, any subprocess; sockets time out after 20 s

GW_BIN = os.environ.get("GW_BIN", "build/ktlsgw")
KTLS_OPENSSL = os.environ.get("VMTEST_KTLS_OPENSSL", "build/vm/ktls-openssl")


class Skip(Exception):
    pass


def tls_stat():
    with open("/proc/net/tls_stat") as f:
        return {k: int(v) for k, v in (line.split() for line in f if line.strip())}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after}


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def tcp_pair():
    """An established loopback TCP connection: (client, server)."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(1)
    cli = socket.create_connection(lsn.getsockname(), timeout=20)
    srv, _ = lsn.accept()
    srv.settimeout(20)
    lsn.close()
    return cli, srv


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        check(chunk, f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def crypto_info(version, cipher, seed):
    ctype, ivl, keyl, saltl, seql = CIPHERS[cipher]
    material = bytes((seed * 31 + i * 7) & 0xFF for i in range(ivl + keyl + saltl))
    iv, key, salt = material[:ivl], material[ivl:ivl + keyl], material[ivl + keyl:]
    return struct.pack("<HH", version, ctype) + iv + key + salt + bytes(seql)


# ---- tests ---------------------------------------------------------------------------------

def test_kernel_is_the_vm():
    rel = os.uname().release
    check(os.environ.get("VMTEST") == "1",
          "not inside the VM of scripts/vmtest.sh (run `make vmtest`)")
    return f"kernel {rel}"


def test_tls_module_loaded():
    check(os.path.exists("/proc/net/tls_stat"),
          "no /proc/net/tls_stat: `modprobe tls` did not work")
    check(os.path.isdir("/sys/module/tls"), "no /sys/module/tls")
    return f"{len(tls_stat())} counters in /proc/net/tls_stat"


def test_tcp_ulp_tls_on_established_socket():
    cli, srv = tcp_pair()
    with cli, srv:
        cli.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        ulp = cli.getsockopt(socket.IPPROTO_TCP, TCP_ULP, 16).rstrip(b"\0")
        check(ulp == b"tls", f"TCP_ULP reads back {ulp!r}")
        # and on a socket that is not connected, the kernel refuses it
        s = socket.socket()
        with s:
            try:
                s.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
                raise AssertionError("TCP_ULP tls accepted on an unconnected socket")
            except OSError as e:
                check(e.errno == errno.ENOTCONN,
                      f"{os.strerror(e.errno)} on an unconnected socket, not ENOTCONN")
    return "getsockopt(TCP_ULP) = tls"


def raw_roundtrip(version, cipher):
    """TX on one socket, the peer reads raw TLS records; the records are then replayed into
    a second connection whose receiver has TLS_RX with the same key: plaintext comes back."""
    payload = b"kTLS raw record check %s %s\n" % (cipher.encode(), hex(version).encode()) * 1500
    info = crypto_info(version, cipher, seed=len(cipher))
    before = tls_stat()
    a, b = tcp_pair()
    c, d = tcp_pair()
    with a, b, c, d:
        for s in (a, d):
            s.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        a.setsockopt(SOL_TLS, TLS_TX, info)
        d.setsockopt(SOL_TLS, TLS_RX, info)
        a.sendall(payload)
        wire = b""
        nrec = 0
        while True:  # read whole records until the plaintext is covered
            hdr = recv_exact(b, 5)
            ctype, ver, length = struct.unpack("!BHH", hdr)
            check(ctype == 23 and ver == 0x0303,
                  f"record header {hdr.hex()} is not application data / 0x0303")
            body = recv_exact(b, length)
            wire += hdr + body
            nrec += 1
            # per record: 16-byte tag; TLS 1.2 GCM/CCM add an 8-byte explicit nonce, TLS 1.3
            # the inner content type byte
            if version == TLS_1_3:
                overhead = 16 + 1
            else:
                overhead = 16 + (0 if cipher == "chacha20-poly1305" else 8)
            if sum_plain(wire, overhead) >= len(payload):
                break
        check(payload[:64] not in wire and b"kTLS raw record" not in wire,
              "plaintext visible on the wire")
        c.sendall(wire)
        got = recv_exact(d, len(payload))
        check(got == payload, "bytes decrypted by TLS_RX differ from what was sent")
        after = tls_stat()
    dl = delta(before, after)
    check(dl["TlsTxSw"] >= 1 and dl["TlsRxSw"] >= 1,
          f"TlsTxSw +{dl['TlsTxSw']}, TlsRxSw +{dl['TlsRxSw']}")
    check(dl["TlsDecryptError"] == 0, f"TlsDecryptError +{dl['TlsDecryptError']}")
    return (f"{len(payload)} bytes in {nrec} records, "
            f"TlsTxSw +{dl['TlsTxSw']} TlsRxSw +{dl['TlsRxSw']}")


def sum_plain(wire, overhead):
    total, off = 0, 0
    while off + 5 <= len(wire):
        length = struct.unpack("!H", wire[off + 3:off + 5])[0]
        total += length - overhead
        off += 5 + length
    return total


def make_raw_test(version, cipher):
    def t():
        return raw_roundtrip(version, cipher)
    name = "raw_tls%s_%s" % ("12" if version == TLS_1_2 else "13", cipher.replace("-", "_"))
    t.__name__ = "test_" + name
    return t


OPENSSL_CASES = [
    ("1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("1.3", "TLS_AES_128_GCM_SHA256"),
    ("1.3", "TLS_AES_256_GCM_SHA384"),
    ("1.3", "TLS_CHACHA20_POLY1305_SHA256"),
]


def openssl_ktls(version, cipher, nbytes=1 << 20):
    if not os.access(KTLS_OPENSSL, os.X_OK):
        raise AssertionError(f"{KTLS_OPENSSL} missing: `make vmtest` builds it")
    before = tls_stat()
    p = subprocess.run([KTLS_OPENSSL, version, cipher, str(nbytes)], capture_output=True,
                       text=True, timeout=STEP_TIMEOUT)
    after = tls_stat()
    check(p.returncode == 0, f"ktls-openssl exit {p.returncode}: {p.stderr.strip()[-400:]}")
    sides = {}
    for line in p.stdout.splitlines():
        who, _, rest = line.partition(": ")
        sides[who] = dict(kv.split("=", 1) for kv in rest.split())
    check(set(sides) == {"server", "client"}, f"unexpected output {p.stdout!r}")
    for who, s in sides.items():
        check(s["version"] == "TLSv" + version, f"{who} negotiated {s['version']}")
        check(s["cipher"] == cipher, f"{who} negotiated {s['cipher']}")
        check(s["intact"] == "1" and int(s["bytes"]) == nbytes, f"{who}: bytes not intact")
        check(s["ktls_tx"] == "1", f"{who}: OpenSSL did not move TX to the kernel")
        if version == "1.2":
            check(s["ktls_rx"] == "1", f"{who}: OpenSSL did not move RX to the kernel")
    dl = delta(before, after)
    check(dl["TlsTxSw"] >= 2, f"TlsTxSw +{dl['TlsTxSw']} (want +2: both ends)")
    if version == "1.2":
        check(dl["TlsRxSw"] >= 2, f"TlsRxSw +{dl['TlsRxSw']} (want +2: both ends)")
    check(dl["TlsDecryptError"] == 0, f"TlsDecryptError +{dl['TlsDecryptError']}")
    check(after["TlsCurrTxSw"] == before["TlsCurrTxSw"] and
          after["TlsCurrRxSw"] == before["TlsCurrRxSw"],
          "TlsCurrTxSw/TlsCurrRxSw did not come back after the sockets closed")
    rx = sides["server"]["ktls_rx"]
    return (f"{nbytes} bytes echoed, kTLS TX both ends, RX {'both ends' if rx == '1' else 'none'}"
            f"; TlsTxSw +{dl['TlsTxSw']} TlsRxSw +{dl['TlsRxSw']}")


def make_openssl_test(version, cipher):
    def t():
        return openssl_ktls(version, cipher)
    t.__name__ = "test_openssl_tls%s_%s" % (version.replace(".", ""), cipher)
    return t


def test_ktlsgw_version_reports_ktls():
    if not os.access(GW_BIN, os.X_OK):
        raise AssertionError(f"{GW_BIN} missing: `make` builds it")
    p = subprocess.run([GW_BIN, "-V"], capture_output=True, text=True, timeout=STEP_TIMEOUT)
    out = p.stdout + p.stderr
    check(p.returncode == 0, f"ktlsgw -V exit {p.returncode}: {out.strip()[-300:]}")
    lines = [line for line in out.splitlines() if line.startswith("ktls:")]
    check(lines and lines[0].startswith("ktls: yes"), f"ktlsgw -V says {lines or out!r}")
    return lines[0]


TESTS = [test_kernel_is_the_vm, test_tls_module_loaded, test_tcp_ulp_tls_on_established_socket]
TESTS += [make_raw_test(v, c) for v in (TLS_1_2, TLS_1_3) for c in CIPHERS]
TESTS += [make_openssl_test(v, c) for v, c in OPENSSL_CASES]
TESTS += [test_ktlsgw_version_reports_ktls]


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    passed = failed = skipped = 0
    for t in TESTS:
        name = t.__name__[len("test_"):]
        if pattern.lower() not in name.lower():
            continue
        t0 = time.monotonic()
        try:
            note = t()
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f} s){': ' + note if note else ''}",
                  flush=True)
        except Skip as e:
            skipped += 1
            print(f"skip {name}: {e}", flush=True)
        except Exception as e:  # an assertion or anything unexpected: one failed test
            failed += 1
            if isinstance(e, AssertionError):
                msg = str(e)
            else:  # one line: what was raised and where in this file
                here = [f for f in traceback.extract_tb(e.__traceback__)
                        if f.filename == __file__]
                where = f" (run.py:{here[-1].lineno})" if here else ""
                msg = f"{type(e).__name__}: {e}{where}"
            print(f"FAIL {name}: {msg}", flush=True)
    if os.path.exists("/proc/net/tls_stat"):
        with open("/proc/net/tls_stat") as f:
            stat = f.read()
        print("tls_stat: " + " ".join(f"{k}={v}" for k, v in
                                      (line.split() for line in stat.splitlines() if line)))
        out = os.environ.get("VMTEST_OUT")
        if out and os.path.isdir(out):
            with open(os.path.join(out, "tls_stat.txt"), "w") as f:
                f.write(stat)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
