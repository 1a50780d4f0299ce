# SPDX-License-Identifier: MIT
"""Oracle tests: the same server{} blocks run on nginx 1.22 and on ktlsgw; the
decisions and the values the backend receives must be the same."""

import base64
import hashlib
import os
import re
import subprocess
import threading
import time

from lib import (Attempt, EchoBackend, Server, Skip, TestFailure, attempt, cert, chain_ders,
                 check, check_eq, der_of, free_port, gw_available, need_gw, run_check, san,
                 test, SLOW, GW_BIN, TMPROOT)

CLIENTS = ["client-good", "client-int1", "client-int2", "client-expired", "client-notyet",
           "client-revoked", "client-other", "client-self", "client-spiffe", "client-utf8",
           "client-rsa", None]
MODES = ["on", "optional", "optional_no_ca", "off"]
VERSIONS = ["1.3", "1.2"]
DEPTHS = [1, 2, 3]

SERVER_BLOCK = """
    server {
        listen 127.0.0.1:@P%(i)d@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/%(ca)s;
        ssl_verify_client %(mode)s;
        ssl_verify_depth %(depth)d;
        ssl_protocols TLSv1.2 TLSv1.3;
%(extra)s
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
        }
    }
"""

ERR_495 = "The SSL certificate error"
ERR_496 = "No required SSL certificate was sent"


def nginx_error_page(reason):
    return ("<html>\r\n<head><title>400 %s</title></head>\r\n<body>\r\n"
            "<center><h1>400 Bad Request</h1></center>\r\n<center>%s</center>\r\n"
            "<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n" % (reason, reason))


def cname(c):
    return c or "none"


def run_matrix(kind, servers, backend, extra_gw=""):
    """servers: list of dicts (ca, mode, depth, extra). Returns {(i, client): Attempt}."""
    ports = {"P%d" % i: free_port() for i in range(len(servers))}
    ports["BPORT"] = backend.port
    blocks = []
    for i, sv in enumerate(servers):
        extra = sv.get("extra", "")
        if kind == "gw" and extra_gw:
            extra += "\n        " + extra_gw
        blocks.append(SERVER_BLOCK % dict(i=i, ca=sv["ca"], mode=sv["mode"], depth=sv["depth"],
                                          extra="        " + extra))
    res = {}
    with Server(kind, http=blocks, ports=ports, name="matrix").start() as srv:
        for i in range(len(servers)):
            port = ports["P%d" % i]
            sv = servers[i]
            for c in CLIENTS:
                for ver in VERSIONS:
                    path = "/m/%s%s/%d/%s/%s" % (kind, "-http" if extra_gw else "", i,
                                                 cname(c), ver)
                    a = attempt(port, c, path=path, version=ver)
                    a.path = path
                    res[(i, c, ver)] = a
            srv.check_alive("server %s" % describe(sv))
    res["_log"] = srv.logtext()
    return res


def describe(sv):
    return "%s/%s/depth%d%s" % (sv["ca"], sv["mode"], sv["depth"],
                                "/" + sv["extra"].strip() if sv.get("extra") else "")


def nginx_sane(servers, ngv):
    """Sanity of the oracle run itself (the harness works): a few known facts."""
    for ver in VERSIONS:
        ng = {k[:2]: v for k, v in ngv.items() if k != "_log" and k[2] == ver}
        _nginx_sane(servers, ng)


def _nginx_sane(servers, ng):
    for i, sv in enumerate(servers):
        good = ng[(i, "client-good")]
        check(good.accepted, "nginx rejected client-good on %s: %r" % (describe(sv), good))
        if sv["mode"] == "on" and sv["ca"] == "ca-bundle.pem":
            none = ng[(i, None)]
            check(none.resp is not None and none.resp.status == 400 and
                  ERR_496 in none.resp.body.decode(), "nginx: no cert on %s: %r" % (
                      describe(sv), none))
            other = ng[(i, "client-other")]
            check(other.resp is not None and other.resp.status == 400,
                  "nginx accepted client-other on %s" % describe(sv))
        if sv["mode"] == "off":
            for c in CLIENTS:
                check(ng[(i, c)].accepted, "nginx off rejected %s" % cname(c))
        for c in ("client-expired", "client-notyet"):
            if sv["mode"] in ("on", "optional", "optional_no_ca"):
                check(not ng[(i, c)].accepted, "nginx accepted %s on %s" % (c, describe(sv)))
        if "crl" in sv.get("extra", "") and sv["mode"] != "off":
            check(not ng[(i, "client-revoked")].accepted,
                  "nginx accepted client-revoked on %s" % describe(sv))


def compare_matrix(servers, ng, gw, backend, http_mode):
    diffs = []
    paths = set(backend.paths())
    for i, sv in enumerate(servers):
        for c, ver in [(c, v) for c in CLIENTS for v in VERSIONS]:
            n, g = ng[(i, c, ver)], gw[(i, c, ver)]
            where = "%s client=%s TLS%s" % (describe(sv), cname(c), ver)
            if n.accepted:
                if not g.accepted:
                    diffs.append("%s: nginx 200, ktlsgw %r" % (where, g))
                continue
            check(n.resp is not None, "nginx gave no response at %s: %r" % (where, n))
            if g.path in paths:
                diffs.append("%s: rejected by nginx (%d) but ktlsgw reached the backend" % (
                    where, n.resp.status))
            if not http_mode:
                if g.resp is not None:
                    diffs.append("%s: nginx %d, ktlsgw answered HTTP %d (want failed handshake)" % (
                        where, n.resp.status, g.resp.status))
            else:
                if g.resp is None:
                    diffs.append("%s: nginx %d, ktlsgw %r" % (where, n.resp.status, g))
                    continue
                want = n.resp.body.replace(b"nginx/1.22.1", b"ktlsgw")
                if g.resp.status != n.resp.status or g.resp.body != want:
                    diffs.append("%s: nginx %d %r, ktlsgw %d %r" % (
                        where, n.resp.status, want[:70], g.resp.status, g.resp.body[:70]))
                elif g.resp.header("Server") != "ktlsgw":
                    diffs.append("%s: Server header %r" % (where, g.resp.header("Server")))
            if n.path in paths:
                diffs.append("%s: nginx reached the backend?!" % where)
    return diffs


def matrix_servers(ca, extra=""):
    return [dict(ca=ca, mode=m, depth=d, extra=extra) for m in MODES for d in DEPTHS]


def matrix_test(ca, extra):
    servers = matrix_servers(ca, extra)
    with EchoBackend() as be:
        ng = run_matrix("nginx", servers, be)
        nginx_sane(servers, ng)
        need_gw()
        gw = run_matrix("gw", servers, be)
        diffs = compare_matrix(servers, ng, gw, be, False)
        gwh = run_matrix("gw", servers, be, "ssl_verify_failure http;")
        diffs += ["[ssl_verify_failure http] " + d for d in
                  compare_matrix(servers, ng, gwh, be, True)]
    if diffs:
        raise TestFailure("%d mismatches: %s" % (len(diffs), " | ".join(diffs[:25])))


def _mk_matrix(ca, extra, label):
    @test("oracle/matrix/%s" % label, timeout=240)
    def _t():
        matrix_test(ca, extra)


_mk_matrix("ca-bundle.pem", "", "ca-bundle")
_mk_matrix("ca-all.pem", "", "ca-all")
_mk_matrix("ca-bundle.pem", "ssl_crl @CERTS@/crl-all.pem;", "ca-bundle+crl-all")
_mk_matrix("ca-all.pem", "ssl_crl @CERTS@/crl-all.pem;", "ca-all+crl-all")


@test("oracle/crl-expired", timeout=120)
def t_crl_expired():
    servers = [dict(ca="ca-all.pem", mode=m, depth=3, extra="ssl_crl @CERTS@/crl-expired.pem;")
               for m in ("on", "optional", "optional_no_ca")]
    with EchoBackend() as be:
        ng = run_matrix("nginx", servers, be)
        check(not ng[(0, "client-good", "1.3")].accepted,
              "nginx accepted client-good with an expired CRL")
        check("CRL has expired" in ng["_log"], "nginx log lacks 'CRL has expired'")
        need_gw()
        gw = run_matrix("gw", servers, be)
        diffs = compare_matrix(servers, ng, gw, be, False)
        check("CRL has expired" in gw["_log"],
              "ktlsgw log lacks 'CRL has expired': %s" % gw["_log"][-800:])
    if diffs:
        raise TestFailure("%d mismatches: %s" % (len(diffs), " | ".join(diffs[:25])))


# ---------------------------------------------------------------------------
# Variables

NGINX_VARS = ["ssl_client_cert", "ssl_client_raw_cert", "ssl_client_escaped_cert",
              "ssl_client_s_dn", "ssl_client_s_dn_legacy", "ssl_client_i_dn",
              "ssl_client_i_dn_legacy", "ssl_client_serial", "ssl_client_fingerprint",
              "ssl_client_verify", "ssl_client_v_start", "ssl_client_v_end",
              "ssl_client_v_remain", "ssl_protocol", "ssl_cipher", "ssl_server_name",
              "ssl_session_reused", "remote_addr", "remote_port", "server_port",
              "proxy_add_x_forwarded_for"]
GW_VARS = ["ssl_client_fingerprint_sha256", "ssl_client_san_dns", "ssl_client_san_uri",
           "ssl_client_spiffe_id", "ssl_client_xfcc", "ssl_client_cert_rfc9440",
           "ssl_client_chain_rfc9440"]


def hname(var):
    return "X-V-" + var.replace("_", "-")


def var_block(i, ca, mode, depth, gw):
    hs = "\n".join("            proxy_set_header %s $%s;" % (hname(v), v) for v in
                   NGINX_VARS + (GW_VARS if gw else []))
    return """
    server {
        listen 127.0.0.1:@P%d@ ssl;
        server_name localhost;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/%s;
        ssl_verify_client %s;
        ssl_verify_depth %d;
        ssl_session_cache shared:SSL:1m;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
%s
            proxy_pass http://127.0.0.1:@BPORT@;
        }
    }
""" % (i, ca, mode, depth, hs)


VAR_SERVERS = [("ca-all.pem", "on", 3), ("ca-root.pem", "optional_no_ca", 1),
               ("ca-all.pem", "optional", 3)]
# (server index, client, tls version, resume)
VAR_CASES = [(0, "client-good", "1.3", False), (0, "client-good", "1.2", False),
             (0, "client-utf8", None, False), (0, "client-spiffe", None, False),
             (0, "client-rsa", "1.2", False), (0, "client-int2", None, False),
             (1, "client-other", None, False), (1, "client-self", None, False),
             (1, "client-good", None, False), (2, None, None, False),
             (0, "client-good", "1.3", True), (0, "client-rsa", "1.2", True)]


def backend_vars(be, path):
    recs = [r for r in be.requests if r["target"] == path]
    if len(recs) != 1:
        raise TestFailure("backend got %d requests for %s" % (len(recs), path))
    out = {}
    for n, v in recs[0]["headers"]:
        if n.startswith("X-V-"):
            if n in out:
                raise TestFailure("header %s twice" % n)
            out[n] = v
    return out


def run_vars(kind, be):
    ports = {"P%d" % i: free_port() for i in range(len(VAR_SERVERS))}
    ports["BPORT"] = be.port
    blocks = [var_block(i, *sv, kind == "gw") for i, sv in enumerate(VAR_SERVERS)]
    res = []
    with Server(kind, http=blocks, ports=ports, name="vars").start():
        for n, (si, c, ver, resume) in enumerate(VAR_CASES):
            port = ports["P%d" % si]
            sess = None
            if resume:
                a0 = attempt(port, c, path="/v/%s/%d/first" % (kind, n), version=ver,
                             sni="localhost", keep=True)
                check(a0.accepted, "%s: first connection for resumption: %r" % (kind, a0))
                sess = a0.conn.session
                a0.conn.close()
                check(sess is not None, "no session to resume")
            path = "/v/%s/%d" % (kind, n)
            a = attempt(port, c, path=path, version=ver, sni="localhost", session=sess,
                        extra=b"X-Forwarded-For: 192.0.2.7\r\n", keep=True)
            check(a.accepted, "%s: case %d (%s) not accepted: %r" % (kind, n, c, a))
            lp = a.conn.local_port()
            reused = a.conn.obj.session_reused
            a.conn.close()
            v = backend_vars(be, path)
            # connection-specific values: check them, then normalise
            rp = v.get(hname("remote_port"))
            check_eq(rp, str(lp), "%s case %d $remote_port" % (kind, n))
            v[hname("remote_port")] = "<client port>"
            sp = v.get(hname("server_port"))
            check_eq(sp, str(port), "%s case %d $server_port" % (kind, n))
            v[hname("server_port")] = "<listen port>"
            if resume:
                check(reused, "%s case %d: client did not resume" % (kind, n))
            res.append(v)
    return res


def expected_gw_vars(c):
    der = der_of(c + ".crt")
    dns = san(c, "DNS")
    uri = san(c, "URI")
    spiffe = [u for u in uri if u.startswith("spiffe://")]
    chain = chain_ders(c)
    return {
        "ssl_client_fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "ssl_client_san_dns": ",".join(dns),
        "ssl_client_san_uri": ",".join(uri),
        "ssl_client_spiffe_id": spiffe[0] if len(spiffe) == 1 else "",
        "ssl_client_cert_rfc9440": ":%s:" % base64.b64encode(der).decode(),
        "ssl_client_chain_rfc9440": ", ".join(":%s:" % base64.b64encode(d).decode()
                                              for d in chain),
    }


@test("oracle/variables", timeout=180)
def t_variables():
    with EchoBackend() as be:
        ng = run_vars("nginx", be)
        # oracle sanity: values computed in Python agree with nginx's
        for n, (si, c, ver, resume) in enumerate(VAR_CASES):
            v = ng[n]
            if c is None:
                check_eq(v.get(hname("ssl_client_verify")), "NONE", "nginx verify without cert")
                continue
            der = der_of(c + ".crt")
            check_eq(v.get(hname("ssl_client_fingerprint")), hashlib.sha1(der).hexdigest(),
                     "nginx sha1 fingerprint of %s" % c)
            check_eq(v.get(hname("ssl_session_reused")), "r" if resume else ".",
                     "nginx $ssl_session_reused case %d" % n)
            check_eq(v.get(hname("proxy_add_x_forwarded_for")), "192.0.2.7, 127.0.0.1",
                     "nginx $proxy_add_x_forwarded_for")
        check(ng[6][hname("ssl_client_verify")].startswith("FAILED:"), "nginx other: not FAILED")
        check("\n\t" in ng[0][hname("ssl_client_cert")], "nginx $ssl_client_cert has no LF TAB")
        need_gw()
        gw = run_vars("gw", be)
    diffs = []
    for n, (si, c, ver, resume) in enumerate(VAR_CASES):
        nv, gv = ng[n], gw[n]
        for var in NGINX_VARS:
            h = hname(var)
            if nv.get(h) != gv.get(h):
                diffs.append("case %d %s %s: nginx %r ktlsgw %r" % (
                    n, cname(c), var, nv.get(h), gv.get(h)))
        if c is not None and VAR_SERVERS[si][1] == "on":
            for var, want in expected_gw_vars(c).items():
                got = gv.get(hname(var))
                if got != want and not (want == "" and got is None):
                    diffs.append("case %d %s $%s: got %r want %r" % (n, c, var, got, want))
            xf = gv.get(hname("ssl_client_xfcc")) or ""
            exp = expected_gw_vars(c)
            need = ["Hash=" + exp["ssl_client_fingerprint_sha256"]]
            need += ["URI=" + u for u in san(c, "URI")] + ["DNS=" + d for d in san(c, "DNS")]
            if c == "client-good":
                # Envoy: Cert is the URL-encoded PEM, Subject the RFC 2253 DN (nginx's values)
                need += ['Cert="%s"' % nv.get(hname("ssl_client_escaped_cert")),
                         'Subject="%s"' % nv.get(hname("ssl_client_s_dn"))]
            for part in need:
                if part not in xf:
                    diffs.append("case %d %s $ssl_client_xfcc %r lacks %r" % (n, c, xf, part))
    if diffs:
        raise TestFailure("%d differences: %s" % (len(diffs), " | ".join(diffs[:30])))


# ---------------------------------------------------------------------------
# The seed document's server{} blocks

SEED1 = """server {
listen @P0@ ssl;
server_name service.domain.com;
ssl_certificate @CERTS@/server.crt;
ssl_certificate_key @CERTS@/server.key;
ssl_client_certificate @CERTS@/ca-bundle.pem;
ssl_verify_client on;
# Additional security settings
ssl_protocols TLSv1.2 TLSv1.3;
ssl_prefer_server_ciphers on;
%s}
"""
SEED2 = """server {
listen @P0@ ssl;
server_name service.domain.com;
# Server certificates
ssl_certificate @CERTS@/server.crt;
ssl_certificate_key @CERTS@/server.key;
# Client certificate configuration
ssl_client_certificate @CERTS@/ca-bundle.pem;
ssl_verify_client on;
# Recommended additional parameters
ssl_verify_depth 2;
ssl_protocols TLSv1.2;
ssl_ciphers HIGH:!aNULL:!MD5;
%s}
"""
# The seed's "additional parameters", added to the first block.
SEED1_EXTRA = """ssl_verify_depth 3; # Ensure proper chain verification depth
ssl_crl @CERTS@/crl-all.pem; # If using Certificate Revocation Lists
ssl_session_cache shared:SSL:10m;
ssl_session_timeout 10m;
"""
PROXY = """location / {
proxy_pass http://127.0.0.1:@BPORT@;
proxy_set_header X-SSL-Cert $ssl_client_cert;
proxy_set_header X-SSL-Verify $ssl_client_verify;
proxy_set_header X-SSL-Serial $ssl_client_serial;
}
"""


def write_conf(name, text):
    d = os.path.join(TMPROOT, "conf-%s-%d" % (name, time.monotonic_ns()))
    os.makedirs(d)
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def seed_check(label, block):
    from lib import subst
    need_gw()
    # as-is: the seed's own port 443 (-t does not bind), only the file paths changed
    p = write_conf(label + ".conf", subst(block, {"P0": 443}))
    rc, out = run_check(p)
    check(rc == 0, "ktlsgw -t on %s: exit %d: %s" % (label, rc, out.strip()[-600:]))
    check("syntax is ok" in out and "test is successful" in out,
          "ktlsgw -t on %s: output %r" % (label, out[-600:]))


@test("oracle/seed/check-as-is")
def t_seed_check():
    seed_check("seed1", SEED1 % "")
    seed_check("seed2", SEED2 % "")
    seed_check("seed1-extra", SEED1 % SEED1_EXTRA)


def seed_behaviour(block, cases):
    results = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=[block % PROXY], ports=ports, name="seed").start():
                for c, ver in cases:
                    a = attempt(ports["P0"], c, version=ver, sni="service.domain.com",
                                path="/seed/%s/%s/%s" % (kind, cname(c), ver))
                    results[(kind, c, ver)] = a
        diffs = []
        paths = set(be.paths())
        for c, ver in cases:
            n, g = results[("nginx", c, ver)], results[("gw", c, ver)]
            if n.accepted != g.accepted:
                diffs.append("%s %s: nginx %r ktlsgw %r" % (cname(c), ver, n, g))
            elif n.accepted and n.resp.json()["headers"] and g.resp is not None:
                nh = {k: v for k, v in n.resp.json()["headers"] if k.startswith("X-SSL-")}
                gh = {k: v for k, v in g.resp.json()["headers"] if k.startswith("X-SSL-")}
                if nh != gh:
                    diffs.append("%s %s: headers nginx %r ktlsgw %r" % (cname(c), ver, nh, gh))
            if not n.accepted and "/seed/gw/%s/%s" % (cname(c), ver) in paths:
                diffs.append("%s %s: rejected client reached the backend" % (cname(c), ver))
    return diffs


SEED_CASES = [(c, v) for c in ("client-good", "client-int1", "client-int2", "client-rsa",
                               "client-expired", "client-revoked", "client-other", "client-self",
                               None) for v in ("1.2", "1.3")]


@test("oracle/seed/server1", timeout=120)
def t_seed1():
    diffs = seed_behaviour(SEED1 % ("%s"), SEED_CASES)
    diffs += ["[+extra] " + d for d in seed_behaviour(SEED1 % (SEED1_EXTRA + "%s"), SEED_CASES)]
    if diffs:
        raise TestFailure(" | ".join(diffs))


@test("oracle/seed/server2", timeout=120)
def t_seed2():
    diffs = seed_behaviour(SEED2 % ("%s"), [(c, "1.2") for c, v in SEED_CASES if v == "1.2"])
    if diffs:
        raise TestFailure(" | ".join(diffs))


@test("oracle/seed/openssl-s_client", timeout=120)
def t_s_client():
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=[SEED1 % PROXY], ports=ports, name="sclient").start():
                out = s_client(ports["P0"], "/sclient/" + kind)
            check("Verify return code: 0 (ok)" in out,
                  "%s: s_client output lacks 'Verify return code: 0 (ok)': %s" % (kind, out[-800:]))
            check("HTTP/1.1 200 OK" in out and '"/sclient/%s"' % kind in out,
                  "%s: no backend answer through s_client: %s" % (kind, out[-800:]))
            check("/sclient/" + kind in be.paths(), "%s: backend not reached" % kind)


def s_client(port, path, timeout=15):
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-cert",
            cert("client-good.crt"), "-key", cert("client-good.key"), "-CAfile",
            cert("ca-root.pem")]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    buf = bytearray()

    def rd():
        while True:
            d = p.stdout.read1(65536)
            if not d:
                return
            buf.extend(d)

    t = threading.Thread(target=rd, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + timeout * SLOW
        while b"Verify return code" not in buf and time.monotonic() < deadline:
            if p.poll() is not None:
                break
            time.sleep(0.05)
        # wait for the session ticket(s) so that s_client is in its read loop
        time.sleep(0.3)
        p.stdin.write(("GET %s HTTP/1.1\r\nHost: service.domain.com\r\nConnection: close\r\n\r\n"
                       % path).encode())
        p.stdin.flush()
        while time.monotonic() < deadline and p.poll() is None:
            if b'"body_sha256"' in buf and b"}" in buf[buf.rfind(b'"body_sha256"'):]:
                break
            time.sleep(0.05)
        time.sleep(0.1)
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(3)
        t.join(3)
    return buf.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Harness self-tests against nginx alone (the tools the gw tests rely on)

NGINX_STREAM = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-all.pem;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass 127.0.0.1:@BPORT@;
        proxy_protocol on;
        proxy_half_close on;
    }
"""


@test("harness/nginx-stream-pp1-half-close", timeout=120)
def t_harness_stream():
    import json as _json
    from lib import ProxyReceiver, TlsConn, _TlsReader, det_bytes
    with ProxyReceiver() as pr:
        ports = {"P0": free_port(), "BPORT": pr.port}
        with Server("nginx", stream=[NGINX_STREAM], ports=ports, name="hstream").start():
            with TlsConn(ports["P0"], "client-good", version="1.3") as c:
                c.handshake()
                c.send(b"INFO\n")
                rd = _TlsReader(c)
                info = _json.loads(rd.until(b"\n"))
                check_eq(info["version"], 1, "PROXY version")
                check_eq((info["src"], info["sport"]), ("127.0.0.1", c.local_port()), "v1 source")
                check_eq(info["dport"], ports["P0"], "v1 destination port")
                c.send(b"abc\n")
                check_eq(rd.until(b"\n"), b"abc\n", "echo")
            n = 1 << 20
            with TlsConn(ports["P0"], "client-good", version="1.2") as c:
                c.handshake()
                up = det_bytes(n, b"x")
                c.send(b"SINK %d\n" % n + up)
                c.shutdown_write()
                rd = _TlsReader(c)
                j = _json.loads(rd.until(b"\n"))
                check_eq((j["len"], j["sha256"]), (n, hashlib.sha256(up).hexdigest()), "sink")
                down = rd.buf + c.recv_all()
                check_eq(down, det_bytes(n, b"sink"), "bytes after the half-close")


@test("harness/tls-record-walker-on-nginx", timeout=60)
def t_harness_walker():
    from lib import Tap, raw_connect, read_until_closed, walk_tls_records
    with EchoBackend() as be:
        ports = {"P0": free_port(), "BPORT": be.port}
        blk = SERVER_BLOCK % dict(i=0, ca="ca-bundle.pem", mode="on", depth=2, extra="")
        with Server("nginx", http=[blk], ports=ports, name="walker").start():
            tap = Tap(ports["P0"])
            a = attempt(tap.port, "client-good", extra=b"Connection: close\r\n")
            check(a.accepted, "through the tap: %r" % a)
            check(tap.wait(0), "tap (good)")
            ok, why, types = walk_tls_records(bytes(tap.down[0]))
            check(ok and 23 in types and 22 in types, "good path: %s %r" % (why, types))
            s = raw_connect(tap.port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed, _ = read_until_closed(s, 5)
            s.close()
            check(tap.wait(1), "tap (plain HTTP)")
            ok, why, _ = walk_tls_records(bytes(tap.down[1]))
            # nginx answers plain HTTP with a plain-text 400: the walker must see it
            check(not ok and b"400" in data, "walker missed nginx's plain-text 400: %r" % data[:80])


@test("oracle/default-protocols", timeout=60)
def t_default_protocols():
    """nginx 1.22's default ssl_protocols is TLSv1 TLSv1.1 TLSv1.2: no TLS 1.3; ktlsgw's
    is TLSv1.2 TLSv1.3 (a documented difference)."""
    blk = """
    server {
        listen 127.0.0.1:@P0@ ssl;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-Proto $ssl_protocol;
        }
    }
"""
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=[blk], ports=ports, name="proto").start():
                for ver in ("1.3", None):
                    a = attempt(ports["P0"], None, version=ver)
                    out[(kind, ver)] = (a.accepted, a.accepted and dict(
                        (k, v) for k, v in a.resp.json()["headers"]).get("X-Proto"))
            if kind == "nginx":
                check_eq(out[("nginx", "1.3")], (False, False), "nginx TLS 1.3 by default")
                check_eq(out[("nginx", None)], (True, "TLSv1.2"), "nginx default protocol")
    # ktlsgw's documented difference (README "Differences from nginx", DESIGN.md): the
    # default is TLSv1.2 TLSv1.3.
    check_eq(out[("gw", "1.3")], (True, "TLSv1.3"), "ktlsgw TLS 1.3 by default")
    check_eq(out[("gw", None)], (True, "TLSv1.3"), "ktlsgw default protocol")


SNI_BLOCKS = ["""
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name a.test;
        ssl_certificate @CERTS@/server.crt;
        ssl_certificate_key @CERTS@/server.key;
        ssl_client_certificate @CERTS@/ca-root.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-Server a;
            proxy_set_header X-Sni $ssl_server_name;
            proxy_set_header X-Verify $ssl_client_verify;
        }
    }
""", """
    server {
        listen 127.0.0.1:@P0@ ssl;
        server_name b.test *.wild.test;
        ssl_certificate @CERTS@/server-rsa.crt;
        ssl_certificate_key @CERTS@/server-rsa.key;
        ssl_client_certificate @CERTS@/ca-other.pem;
        ssl_verify_client optional;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://127.0.0.1:@BPORT@;
            proxy_set_header X-Server b;
            proxy_set_header X-Sni $ssl_server_name;
            proxy_set_header X-Verify $ssl_client_verify;
        }
    }
"""]


@test("oracle/sni-server-selection", timeout=90)
def t_sni():
    """Two servers on one address: the SNI picks the certificate and the client
    verification settings, as in nginx."""
    cases = [(sni, c, ver) for sni in ("a.test", "b.test", "x.wild.test", None, "unknown.test")
             for c in (None, "client-good", "client-other") for ver in ("1.2", "1.3")]
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=SNI_BLOCKS, ports=ports, name="sni").start():
                for sni, c, ver in cases:
                    a = attempt(ports["P0"], c, version=ver, sni=sni, keep=True)
                    srv_der = a.server_der
                    if a.conn:
                        a.conn.close()
                    hdrs = None
                    if a.accepted:
                        hdrs = {k: v for k, v in a.resp.json()["headers"]
                                if k in ("X-Server", "X-Sni", "X-Verify")}
                    out[(kind, sni, c, ver)] = (
                        a.accepted, hdrs, "rsa" if srv_der == der_of("server-rsa.crt") else
                        "ec" if srv_der else None)
        diffs = []
        for sni, c, ver in cases:
            n, g = out[("nginx", sni, c, ver)], out[("gw", sni, c, ver)]
            if not n[0]:
                g = (g[0], g[1], n[2] if g[2] is None else g[2])  # a failed handshake: no cert
            if n != g:
                diffs.append("sni=%s client=%s TLS%s: nginx %r ktlsgw %r" % (
                    sni, cname(c), ver, n, g))
    if diffs:
        raise TestFailure("%d differences: %s" % (len(diffs), " | ".join(diffs)))


@test("oracle/stream-proxy-protocol-v1", timeout=60)
def t_pp1():
    """proxy_protocol_version 1: the same PROXY v1 line as nginx's stream module."""
    from lib import ProxyReceiver, TlsConn, _TlsReader
    import json as _json
    lines = {}
    with ProxyReceiver() as pr:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            blk = NGINX_STREAM.replace("proxy_half_close on;", "") + ""
            if kind == "gw":
                blk = blk.replace("proxy_protocol on;",
                                  "proxy_protocol on;\n        proxy_protocol_version 1;")
            ports = {"P0": free_port(), "BPORT": pr.port}
            with Server(kind, stream=[blk], ports=ports, name="pp1").start():
                with TlsConn(ports["P0"], "client-good") as c:
                    c.handshake()
                    c.send(b"INFO\n")
                    info = _json.loads(_TlsReader(c).until(b"\n"))
                    lp = c.local_port()
            line = info.get("line", repr(info))
            lines[kind] = line.replace(" %d %d\r\n" % (lp, ports["P0"]), " CPORT GWPORT\r\n")
    check_eq(lines["nginx"], "PROXY TCP4 127.0.0.1 127.0.0.1 CPORT GWPORT\r\n", "nginx's line")
    check_eq(lines["gw"], lines["nginx"], "PROXY v1 line (ports normalised)")


@test("oracle/sni-session-resumption", timeout=90)
def t_sni_resume():
    """A session made on one server{} and offered to another one on the same address
    (other SNI, other verification settings) gives the same outcome as on nginx; above
    all, an unauthenticated session never gets into a server with ssl_verify_client on."""
    blocks = [b.replace("ssl_protocols TLSv1.2 TLSv1.3;",
                        "ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:S:1m;")
              for b in SNI_BLOCKS]
    # (first sni, client, then sni, client) -- the client context must stay the same
    cases = [("b.test", None, "a.test"), ("b.test", "client-other", "a.test"),
             ("a.test", "client-good", "a.test"), ("a.test", "client-good", "b.test"),
             ("b.test", None, None), ("b.test", None, "b.test")]
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=blocks, ports=ports, name="sniresume").start():
                for first, c, then in cases:
                    for ver in ("1.2", "1.3"):
                        a0 = attempt(ports["P0"], c, version=ver, sni=first, keep=True)
                        sess = a0.conn.session if a0.accepted else None
                        a0.conn.close()
                        if sess is None:
                            out[(kind, first, c, then, ver)] = ("first rejected", a0.kind())
                            continue
                        a = attempt(ports["P0"], c, version=ver, sni=then, session=sess,
                                    keep=True)
                        reused = a.conn.obj.session_reused if a.handshake_ok else None
                        a.conn.close()
                        hdr = None
                        if a.accepted:
                            hdr = {k: v for k, v in a.resp.json()["headers"]
                                   if k in ("X-Server", "X-Verify")}
                        out[(kind, first, c, then, ver)] = (a.accepted, hdr)
                        if kind == "nginx":
                            out[("reused", first, c, then, ver)] = reused
    diffs = []
    for first, c, then in cases:
        for ver in ("1.2", "1.3"):
            n = out[("nginx", first, c, then, ver)]
            g = out[("gw", first, c, then, ver)]
            if n != g:
                diffs.append("%s(%s) -> %s TLS%s: nginx %r ktlsgw %r" % (
                    first, cname(c), then, ver, n, g))
    check_eq(out[("nginx", "b.test", None, "a.test", "1.3")][0], False,
             "nginx: unauthenticated session resumed into verify-on server")
    if diffs:
        raise TestFailure(" | ".join(diffs))


@test("oracle/sni-host-mismatch", timeout=60)
def t_sni_host():
    """SNI names one server{}, the Host header another: nginx answers 421 when the
    Host's server verifies clients; otherwise the request is served. Same on ktlsgw,
    and an unverified client never reaches a verify-on server's backend.
    Documented difference (README): one connection serves one server{} on ktlsgw;
    where nginx hands the request to the Host's server{} (no SNI match, or a Host
    server without verification), ktlsgw answers 421 instead."""
    cases = [("b.test", "a.test", None), ("b.test", "a.test", "client-other"),
             ("a.test", "b.test", "client-good"), ("a.test", "x.wild.test", "client-good"),
             (None, "b.test", "client-good"), ("b.test", "unknown.test", None)]
    out = {}
    with EchoBackend() as be:
        for kind in ("nginx", "gw"):
            if kind == "gw":
                need_gw()
            ports = {"P0": free_port(), "BPORT": be.port}
            with Server(kind, http=SNI_BLOCKS, ports=ports, name="snihost").start():
                for sni, host, c in cases:
                    for ver in ("1.2", "1.3"):
                        a = attempt(ports["P0"], c, version=ver, sni=sni,
                                    extra=b"", path="/sh/%s/%s" % (kind, host))
                        # attempt() sends Host = SNI; send the mismatching one by hand
                        conn = None
                        try:
                            from lib import TlsConn, read_response
                            conn = TlsConn(ports["P0"], c, version=ver, sni=sni)
                            conn.handshake()
                            conn.send(("GET /sh HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
                            r = read_response(conn)
                        except Exception as e:  # rejected handshakes
                            r = None
                        finally:
                            if conn:
                                conn.close()
                        res = None
                        if r is not None:
                            hdr = None
                            if r.status == 200:
                                hdr = {k: v for k, v in r.json()["headers"]
                                       if k in ("X-Server", "X-Verify")}
                            res = (r.status, hdr)
                        out[(kind, sni, host, c, ver)] = (a.kind(), res)
    diffs = []
    for sni, host, c in cases:
        for ver in ("1.2", "1.3"):
            n = out[("nginx", sni, host, c, ver)]
            g = out[("gw", sni, host, c, ver)]
            if n[1] is not None and n[1][0] == 400 and g[1] is None:
                continue  # nginx's 400 page is a failed handshake on ktlsgw
            negotiated = {"a.test": "a", "b.test": "b"}.get(sni, "a")
            want = n[1]
            if n[1] is not None and n[1][0] == 200 and n[1][1]["X-Server"] != negotiated:
                want = (421, None)  # the documented difference
            if want != g[1]:
                diffs.append("sni=%s Host=%s client=%s TLS%s: nginx %r ktlsgw %r" % (
                    sni, host, cname(c), ver, n[1], g[1]))
    check_eq(out[("nginx", "b.test", "a.test", None, "1.3")][1], (421, None),
             "nginx: unverified client asking for the verify-on server")
    if diffs:
        raise TestFailure(" | ".join(diffs))
