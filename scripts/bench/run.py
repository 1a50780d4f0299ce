#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ktlsgw vs nginx vs HAProxy, driven by scripts/bench.sh (which builds, installs and makes
the PKI first). One process per proxy, 1 worker/thread each, pinned with taskset on CPU 1;
ktlsgw-bench (1 thread) and the backends on CPU 0. Every scenario runs against each proxy
in turn, the order rotating each round; the table holds the medians.

Equivalent configurations (the same for all three where each can):
  ECDSA P-256 server certificate (server.crt), client certificates verified against
  ca-root.pem (verify required), TLS 1.2 + 1.3 with the cipher, group and version forced by
  the client (TLS_AES_256_GCM_SHA384 / ECDHE-ECDSA-AES256-GCM-SHA384, X25519 key exchange;
  P-256 offered too: TLS 1.2 needs the ECDSA certificate's curve in the client's list), the
  same groups on every server (X25519, P-256: HAProxy's default is P-256 alone, which made
  TLS 1.3 clients retry and TLS 1.2 use another curve; the table names the group), session
  cache + tickets, identity headers (X-SSL-Client-Verify, X-SSL-Client-S-DN and the client
  certificate: nginx/ktlsgw $ssl_client_escaped_cert, HAProxy ssl_c_der,base64), upstream
  keep-alive, no access log, error log at "error", no request or response spooling to disk.
  Stream: TLS terminated, a PROXY header with the identity to an echo backend (ktlsgw v2
  with SSL TLVs, HAProxy send-proxy-v2-ssl-cn, nginx v1: all it has).
  Passthrough: not terminated; SNI routed to a TLS terminator on CPU 0 (nginx, the same for
  all): ktlsgw ssl_passthrough (eBPF sockmap), HAProxy mode tcp + req.ssl_sni +
  option splice-auto, nginx ssl_preread + map.
"""

import argparse
import json
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CPU_PROXY, CPU_LOAD = "1", "0"
PT_SNI = "service.domain.com"  # in server.crt's SAN

# name, label, ktlsgw-bench mode and args, listener, result key, unit
SCENARIOS = [
    ("rps", "small keep-alive GETs (64 B)", ["rps", "-c", "32", "--size", "64"], "H",
     "requests_per_s", "req/s"),
    ("download", "1 MiB downloads", ["bulk", "-c", "8", "--download", "1m"], "H",
     "mb_per_s", "MB/s"),
    ("upload", "1 MiB uploads", ["bulk", "-c", "8", "--upload", "1m"], "H", "mb_per_s", "MB/s"),
    ("hs13", "new handshakes TLS 1.3", ["handshake", "-c", "16", "--tls", "1.3"], "H",
     "handshakes_per_s", "hs/s"),
    ("hs13r", "resumed handshakes TLS 1.3",
     ["handshake", "-c", "16", "--tls", "1.3", "--resume"], "H", "handshakes_per_s", "hs/s"),
    ("hs12", "new handshakes TLS 1.2", ["handshake", "-c", "16", "--tls", "1.2"], "H",
     "handshakes_per_s", "hs/s"),
    ("stream", "stream echo (16 KiB chunks)", ["stream", "-c", "16", "--echo", "--size", "16k"],
     "S", "mb_per_s", "MB/s"),
    ("passthrough", "passthrough, 1 MiB downloads (not terminated)",
     ["bulk", "-c", "8", "--download", "1m", "--sni", PT_SNI], "P", "mb_per_s", "MB/s"),
]
PROXIES = ["ktlsgw", "nginx", "haproxy"]
NAMES = {"ktlsgw": "ktlsgw", "nginx": "nginx", "haproxy": "HAProxy"}


def log(msg):
    print(msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_seconds(pid):
    """user+sys of every thread of @pid (io_uring workers included)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def established(port):
    """Established TCP connections whose local port is @port (the proxy's side)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    v = line.split()
                    if v[3] == "01" and int(v[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def cpu_busy():
    """Busy jiffies (all but idle and iowait) per CPU, from /proc/stat."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = line.split()
                n = [int(x) for x in v[1:]]
                busy[v[0][3:]] = sum(n) - n[3] - n[4]
    return busy


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def affinity(pid):
    """The CPUs every thread of @pid may run on (a set of strings)."""
    cpus = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        cpus.add(line.split()[1])
        except OSError:
            pass
    return cpus


class Proc:
    def __init__(self, name, argv, cpu, logdir, port=None, env=None):
        self.name = name
        self.log = open(os.path.join(logdir, name + ".log"), "wb")
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + argv, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        self.pid = self.proc.pid  # taskset execs the program: same pid
        if port and not wait_port(port, self.proc):
            self.stop()
            sys.exit("%s did not listen on %d; see %s" % (name, port, self.log.name))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


# --- configurations ------------------------------------------------------------------------

def conf_ktlsgw(c, ports, be, echo, term, ktls, pt, vcache="on"):
    tls = """
        ssl_certificate {C}/server.crt;
        ssl_certificate_key {C}/server.key;
        ssl_client_certificate {C}/ca-root.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache shared:BENCH:10m;
        ssl_ktls {K};
        ssl_verify_cache {V};""".format(C=c, K=ktls, V=vcache)
    ptline = "ssl_passthrough %s 127.0.0.1:%d;" % (PT_SNI, term) if pt else ""
    return """worker_processes 1;
error_log {D}/ktlsgw.error.log error;
events {{
    worker_connections 100000;
}}
http {{
    access_log off;
    upstream be {{
        server 127.0.0.1:{B};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{H} ssl;
        server_name localhost;{TLS}
        keepalive_timeout 600s;
        location / {{
            proxy_pass http://be;
            proxy_set_header Connection "";
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{S} ssl;{TLS}
        proxy_pass 127.0.0.1:{E};
        proxy_protocol on;
    }}
    server {{
        listen 127.0.0.1:{P} ssl;
        server_name localhost;{TLS}
        proxy_pass 127.0.0.1:{E};
        {PT}
    }}
}}
""".format(D=ports["dir"], H=ports["H"], S=ports["S"], P=ports["P"], B=be, E=echo, TLS=tls,
           PT=ptline)


def conf_nginx(c, ports, be, echo, term):
    d = ports["dir"]
    tls = """
        ssl_certificate {C}/server.crt;
        ssl_certificate_key {C}/server.key;
        ssl_client_certificate {C}/ca-root.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache shared:BENCH_@Z@:10m;""".format(C=c)
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, d, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return """load_module {M};
user root;
master_process off;
daemon off;
worker_processes 1;
worker_rlimit_nofile 200000;
pid {D}/nginx.pid;
error_log {D}/nginx.error.log error;
events {{
    worker_connections 100000;
}}
http {{
    access_log off;
{T}    upstream be {{
        server 127.0.0.1:{B};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{H} ssl;
        server_name localhost;{TLSH}
        keepalive_timeout 600s;
        keepalive_requests 100000000;
        client_header_timeout 600s;
        client_max_body_size 0;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_request_buffering off;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{S} ssl;{TLSS}
        proxy_pass 127.0.0.1:{E};
        proxy_protocol on;
    }}
    map $ssl_preread_server_name $pt_target {{
        {SNI} 127.0.0.1:{TM};
        default 127.0.0.1:{E};
    }}
    server {{
        listen 127.0.0.1:{P};
        ssl_preread on;
        proxy_pass $pt_target;
    }}
}}
""".format(M=STREAM_MODULE, D=d, T=temps, B=be, H=ports["H"], S=ports["S"], P=ports["P"],
           E=echo, TM=term, SNI=PT_SNI, TLSH=tls.replace("@Z@", "H"),
           TLSS=tls.replace("@Z@", "S"))


def conf_haproxy(c, ports, be, echo, term):
    bind = ("ssl crt {D}/server.pem ca-file {C}/ca-root.pem verify required "
            "ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 curves X25519:P-256").format(
                D=ports["dir"], C=c)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # HAProxy sizes its descriptors as 2 x maxconn; an idle client connection has no server
    # side, so a maxconn near the descriptor limit (no strict-limits) still takes them all.
    return """global
    nbthread 1
    maxconn {MC}
    no strict-limits
    tune.ssl.cachesize 40000
    tune.maxrewrite 4096

defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-request 600s
    timeout http-keep-alive 600s
    option http-keep-alive
    http-reuse always

frontend fe_http
    bind 127.0.0.1:{H} {BIND}
    http-request set-header X-SSL-Client-Verify %[ssl_c_verify]
    http-request set-header X-SSL-Client-S-DN %{{+Q}}[ssl_c_s_dn]
    http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64]
    default_backend be_http

backend be_http
    server b 127.0.0.1:{B}

frontend fe_stream
    mode tcp
    bind 127.0.0.1:{S} {BIND}
    default_backend be_echo

backend be_echo
    mode tcp
    server e 127.0.0.1:{E} send-proxy-v2-ssl-cn

frontend fe_pt
    mode tcp
    bind 127.0.0.1:{P}
    option splice-auto
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend be_pt if {{ req.ssl_sni -i {SNI} }}
    default_backend be_pt_other

backend be_pt
    mode tcp
    option splice-auto
    server t 127.0.0.1:{TM}

backend be_pt_other
    mode tcp
    server e 127.0.0.1:{E}
""".format(H=ports["H"], S=ports["S"], P=ports["P"], B=be, E=echo, TM=term, SNI=PT_SNI,
           BIND=bind, MC=max(1000, nofile - 200))


def conf_terminator(c, d, port, be):
    """nginx on CPU 0: the TLS endpoint behind the passthrough routes (the same for all)."""
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, d, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return """user root;
master_process off;
daemon off;
worker_processes 1;
pid {D}/term.pid;
error_log {D}/term.error.log error;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{T}    upstream be {{
        server 127.0.0.1:{B};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{P} ssl;
        server_name {SNI};
        ssl_certificate {C}/server.crt;
        ssl_certificate_key {C}/server.key;
        ssl_client_certificate {C}/ca-root.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
""".format(D=d, T=temps, B=be, P=port, SNI=PT_SNI, C=c)


# --- the runs ------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.a = args
        self.certs = os.path.abspath(args.certs)
        self.bindir = os.path.abspath(args.bin)
        self.out = os.path.abspath(args.out)
        self.logdir = os.path.join(self.out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.procs = []
        self.pt_skip = None
        if os.geteuid() != 0:
            self.pt_skip = "not root: ktlsgw cannot load the sockmap program"
        elif "bpf: yes" not in versions(self.bindir, full=True):
            self.pt_skip = "ktlsgw -V: no BPF here, the route would be relayed in userspace"

    def start(self, name, argv, cpu, port=None, env=None):
        p = Proc(name, argv, cpu, self.logdir, port, env)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []

    def backends(self):
        be, echo, term = free_port(), free_port(), free_port()
        bb = os.path.join(self.bindir, "ktlsgw-bench-backend")
        self.start("backend-http", [bb, "-l", "127.0.0.1:%d" % be, "-t", "1"], CPU_LOAD, be)
        self.start("backend-echo", [bb, "-l", "127.0.0.1:%d" % echo, "-t", "1", "--echo"],
                   CPU_LOAD, echo)
        d = os.path.join(self.out, "run", "term")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(conf_terminator(self.certs, d, term, be))
        self.start("terminator-nginx", [NGINX, "-p", d + "/", "-c", conf], CPU_LOAD, term)
        return be, echo, term

    def start_proxy(self, name, be, echo, term, tag=""):
        d = os.path.join(self.out, "run", name + tag)
        os.makedirs(d, exist_ok=True)
        ports = {"dir": d, "H": free_port(), "S": free_port(), "P": free_port()}
        if name == "ktlsgw":
            conf = os.path.join(d, "ktlsgw.conf")
            text = conf_ktlsgw(self.certs, ports, be, echo, term, self.a.ktls,
                               self.pt_skip is None, self.a.verify_cache)
            argv = [os.path.join(self.bindir, "ktlsgw"), "-c", conf]
        elif name == "nginx":
            conf = os.path.join(d, "nginx.conf")
            text = conf_nginx(self.certs, ports, be, echo, term)
            argv = [NGINX, "-p", d + "/", "-c", conf]
        else:
            conf = os.path.join(d, "haproxy.cfg")
            with open(os.path.join(d, "server.pem"), "w") as f:
                for part in ("server.crt", "server.key"):
                    with open(os.path.join(self.certs, part)) as g:
                        f.write(g.read())
            text = conf_haproxy(self.certs, ports, be, echo, term)
            argv = [HAPROXY, "-db", "-f", conf]
        with open(conf, "w") as f:
            f.write(text)
        p = self.start(name + tag, argv, CPU_PROXY, ports["H"])
        for k in ("S", "P"):
            if not wait_port(ports[k], p.proc):
                sys.exit("%s did not listen on %d; see %s" % (name, ports[k], p.log.name))
        p.ports = ports
        return p

    def bench(self, sc, port, duration=None, n=None):
        mode_args = list(sc[2])
        argv = ["taskset", "-c", CPU_LOAD, os.path.join(self.bindir, "ktlsgw-bench")]
        argv += [mode_args[0], "-t", "1", "--json", "-q", "--timeout", "10",
                 "--cert", os.path.join(self.certs, "client-good.chain.crt"),
                 "--key", os.path.join(self.certs, "client-good.key"),
                 "--ca", os.path.join(self.certs, "ca-root.pem"), "--groups", "X25519:P-256"]
        if "1.2" in mode_args:
            argv += ["--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"]
        else:
            argv += ["--ciphersuites", "TLS_AES_256_GCM_SHA384"]
        argv += mode_args[1:]
        if self.a.load_ec == "provider":
            argv.append("--provider-ec")
        argv += ["-n", str(n)] if n else ["-d", str(duration)]
        argv.append("127.0.0.1:%d" % port)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=(duration or 10) + 60)
        try:
            r = json.loads(p.stdout.decode())
        except ValueError:
            r = None
        return p.returncode, r, p.stderr.decode("utf-8", "replace")

    def run(self):
        a = self.a
        scen = [s for s in SCENARIOS if s[0] in a.scenarios]
        proxies = [p for p in PROXIES if p in a.proxies]
        results = {s[0]: {p: [] for p in proxies} for s in scen}
        idle = {}
        meta = {"rounds": a.rounds, "duration_s": a.duration, "idle": a.idle, "ktls": a.ktls,
                "verify_cache": a.verify_cache, "load_ec": a.load_ec,
                "kernel": os.uname().release, "cpus": os.cpu_count(),
                "pinning": "proxy on CPU %s; ktlsgw-bench (1 thread), backends and the "
                           "passthrough terminator on CPU %s" % (CPU_PROXY, CPU_LOAD),
                "versions": versions(self.bindir), "skipped": {},
                "command": os.environ.get("BENCH_CMD") or " ".join(sys.argv)}
        try:
            be, echo, term = self.backends()
            px = {name: self.start_proxy(name, be, echo, term) for name in proxies}
            for name, p in px.items():
                log("%-8s pid %d, threads on CPU %s" % (NAMES[name], p.pid,
                                                        ",".join(sorted(affinity(p.pid)))))
            log("load generator and backends on CPU %s" % CPU_LOAD)
            # correctness first: a short run of each scenario, every body checked
            for s in list(scen):
                if s[0] == "passthrough" and self.pt_skip:
                    meta["skipped"]["passthrough"] = self.pt_skip
                    scen.remove(s)
                    continue
                for name, p in px.items():
                    sc = (s[0], s[1], s[2] + ["--check-body"] if s[2][0] != "stream" else s[2])
                    rc, r, err = self.bench(sc, p.ports[s[3]], n=50)
                    if rc != 0 or not r:
                        sys.exit("check %s via %s failed (rc %d): %s %s" % (
                            s[0], name, rc, json.dumps(r and r["errors"]), err[-800:]))
            log("checks passed: %s through %s" % (", ".join(s[0] for s in scen),
                                                   ", ".join(proxies)))
            total = len(scen) * len(proxies) * a.rounds
            done = 0
            for rnd in range(a.rounds):
                for si, s in enumerate(scen):
                    k = (rnd + si) % len(proxies)
                    for name in proxies[k:] + proxies[:k]:
                        p = px[name]
                        c0, b0, t0 = cpu_seconds(p.pid), cpu_busy(), time.monotonic()
                        rc, r, err = self.bench(s, p.ports[s[3]], duration=a.duration)
                        wall = time.monotonic() - t0
                        cpu = cpu_seconds(p.pid) - c0
                        b1 = cpu_busy()
                        hz = os.sysconf("SC_CLK_TCK")
                        load = 100.0 * (b1[CPU_LOAD] - b0[CPU_LOAD]) / hz / wall
                        pcpu = 100.0 * (b1[CPU_PROXY] - b0[CPU_PROXY]) / hz / wall
                        done += 1
                        if not r:
                            log("  %s via %s: no result (rc %d) %s" % (s[0], name, rc,
                                                                      err[-300:]))
                            continue
                        val = r[s[4]]
                        units = val * r["duration_s"]
                        results[s[0]][name].append({
                            "round": rnd + 1, "value": val, "errors": r["errors_total"],
                            "cpu_s": cpu,
                            "cpu_pct": 100.0 * cpu / wall, "cpu0_busy_pct": load,
                            "cpu1_busy_pct": pcpu,
                            "per_cpu_s": units / cpu if cpu >= 0.02 * wall else None,
                            "p50_us": r["latency_us"]["p50"],
                            "p99_us": r["latency_us"]["p99"], "cipher": r["cipher"],
                            "group": r.get("group", ""), "tls": r["tls_version"], "resumed": r["resumed"],
                            "handshakes": r["handshakes"]})
                        log("[%3d/%d] round %d %-11s %-8s %10.1f %-5s proxy %3.0f%% CPU; "
                            "busy: CPU%s %3.0f%% CPU%s %3.0f%%%s" % (
                            done, total, rnd + 1, s[0], NAMES[name], val, s[5],
                            100.0 * cpu / wall, CPU_LOAD, load, CPU_PROXY, pcpu,
                            "  errors %d" % r["errors_total"] if r["errors_total"] else ""))
            for p in px.values():
                if p.proc.poll() is not None:
                    sys.exit("%s died during the run; see %s" % (p.name, p.log.name))
            for p in px.values():
                p.stop()
                self.procs.remove(p)
            if a.idle:
                for name in proxies:
                    idle[name] = self.idle_rss(name, be, echo, term, a.idle)
                meta["ssl_floor"] = self.ssl_floor(a.idle)
        finally:
            self.stop_all()
        return scen, proxies, results, idle, meta

    def ssl_floor(self, n):
        """What OpenSSL alone keeps per idle server SSL after an mTLS handshake (same certs,
        TLS 1.3): the floor under every proxy's idle RSS figure."""
        tool = os.path.join(self.bindir, "ktlsgw-bench-sslfloor")
        env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
        try:
            p = subprocess.run(["taskset", "-c", CPU_LOAD, tool, "--certs", self.certs, "-n",
                                str(min(n, 5000)), "--json"], stdout=subprocess.PIPE,
                               env=env, timeout=300, check=True)
            r = json.loads(p.stdout.decode())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            log("ssl floor: %s" % e)
            return None
        log("ssl floor: %d idle server SSL objects alone (%s): RSS %.2f KiB, heap %.2f KiB per "
            "connection" % (r["connections"], r["openssl"], r["rss_kib_per_conn"],
                            r["heap_kib_per_conn"]))
        return r

    def idle_rss(self, name, be, echo, term, n):
        """RSS delta per idle mTLS connection: a fresh process, one warm-up connection,
        then N connections that complete the handshake and stay open without a request."""
        p = self.start_proxy(name, be, echo, term, tag="-idle")
        port = p.ports["H"]
        opener = [sys.executable, os.path.abspath(__file__), "--idle-opener", str(n),
                  "--certs", self.certs, "--port", str(port)]
        warm = subprocess.run(["taskset", "-c", CPU_LOAD] + opener[:2] +
                              ["--idle-opener", "1", "--certs", self.certs, "--port",
                               str(port), "--close"], stdout=subprocess.PIPE, timeout=60)
        settle(p.pid)
        base = rss_kib(p.pid)
        op = subprocess.Popen(["taskset", "-c", CPU_LOAD] + opener, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
        line = op.stdout.readline().decode().split()
        opened = int(line[1]) if len(line) == 2 and line[0] == "open" else 0
        settle(p.pid)
        rss = rss_kib(p.pid)
        fds = len(os.listdir("/proc/%d/fd" % p.pid))
        est = established(port)  # still open on the proxy's side: the divisor
        alive = p.proc.poll() is None
        op.stdin.close()
        op.wait(60)
        p.stop()
        self.procs.remove(p)
        per = (rss - base) / est if est else None
        log("idle %-8s %d of %d connections opened, %d established at the proxy: RSS %d -> %d "
            "KiB = %s KiB/conn, %d fds%s%s" % (
            NAMES[name], opened, n, est, base, rss, "%.2f" % per if per is not None else "-",
            fds,
            "" if alive else " (the proxy died)", "" if warm.returncode == 0 else
            " (warm-up failed)"))
        return {"opened": opened, "wanted": n, "established": est, "rss_base_kib": base,
                "rss_kib": rss, "fds": fds,
                "kib_per_conn": per if alive else None}


def settle(pid, quiet_s=1.0, limit_s=60):
    """Wait until @pid has used no CPU for @quiet_s (handshakes finished)."""
    deadline = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def idle_opener(n, certs, port, close):
    """Open @n mTLS connections (TLS 1.3, handshake only), print "open N", keep them until
    stdin closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(os.path.join(certs, "client-good.chain.crt"),
                        os.path.join(certs, "client-good.key"))
    # No trust store: OpenSSL would complete the client's chain from it (auto-chain) and
    # send the root CA too, which every proxy would then decode and keep with the session.
    # The client sends exactly client-good.chain.crt, as ktlsgw-bench does; the server is
    # checked by its certificate instead.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with open(os.path.join(certs, "server.crt")) as f:
        server_der = ssl.PEM_cert_to_DER_cert(f.read())
    conns, lock, fails = [], threading.Lock(), []

    def worker(k):
        for _ in range(k):
            try:
                s = socket.create_connection(("127.0.0.1", port), 10)
                t = ctx.wrap_socket(s, server_hostname="localhost")
                if t.getpeercert(binary_form=True) != server_der:
                    raise OSError("not the bench's server certificate")
                with lock:
                    conns.append(t)
            except OSError as e:
                with lock:
                    fails.append(str(e))
    nthreads = min(8, n)
    ths = [threading.Thread(target=worker, args=(n // nthreads + (i < n % nthreads),))
           for i in range(nthreads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if fails:
        sys.stderr.write("idle opener: %d failed, first: %s\n" % (len(fails), fails[0]))
    print("open %d" % len(conns), flush=True)
    if not close:
        sys.stdin.read()
    for t in conns:
        t.close()


def versions(bindir, full=False):
    if full:
        return subprocess.run([os.path.join(bindir, "ktlsgw"), "-V"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=10).stdout.decode()

    def first(argv):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=10)
            return p.stdout.decode().splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {"ktlsgw": first([os.path.join(bindir, "ktlsgw"), "-V"]),
            "nginx": first([NGINX, "-v"]), "haproxy": first([HAPROXY, "-v"]),
            "openssl": first(["openssl", "version"])}


# --- the table and the chart ---------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x]
    return "%.2f" % (max(xs) / min(xs)) if xs else "-"


def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def fmt(v):
    if v is None:
        return "-"
    return "%.0f" % v if v >= 100 else "%.1f" % v


def report(scen, proxies, results, idle, meta, out, cmd):
    has = {p: p in proxies for p in PROXIES}
    L = []
    L.append("Medians of %d rounds x %d s; %s; ktlsgw tier %s; kernel %s, %d CPUs." % (
        meta["rounds"], meta["duration_s"], meta["pinning"],
        "U (ssl_ktls off)" if meta["ktls"] == "off" else "ssl_ktls " + meta["ktls"],
        meta["kernel"], meta["cpus"]))
    L.append("")
    L.append("ktlsgw ssl_verify_cache %s: %s" % (
        meta.get("verify_cache", "on"),
        "ktlsgw-bench presents one client certificate, so every new handshake after the first "
        "takes the client's chain from the verification cache (nginx and HAProxy verify it "
        "each time)" if meta.get("verify_cache", "on") == "on" else
        "every chain is verified, as nginx and HAProxy do"))
    L.append("")
    if meta.get("load_ec", "provider") == "legacy":
        L.append("ktlsgw-bench decodes EC public keys with OpenSSL's legacy EC method, not "
                 "OpenSSL 3.0's provider decoders (1.2 M instructions less per certificate, "
                 "on the load generator's CPU only; every proxy decodes as it always does).")
    else:
        L.append("ktlsgw-bench decodes EC public keys with OpenSSL 3.0's provider decoders "
                 "(--load-ec provider).")
    L.append("")
    hdr = "| scenario | unit | " + " | ".join(NAMES[p] for p in proxies)
    if has["ktlsgw"] and has["nginx"]:
        hdr += " | ktlsgw/nginx"
    if has["ktlsgw"] and has["haproxy"]:
        hdr += " | ktlsgw/HAProxy"
    hdr += " | proxy CPU % | spread max/min |"
    L.append(hdr)
    L.append("|" + "---|" * (hdr.count("|") - 1))
    chart = []
    eff = []
    for s in scen:
        r = results[s[0]]
        m = {p: med(x["value"] for x in r[p]) for p in proxies}
        cpu = {p: med(x["cpu_pct"] for x in r[p]) for p in proxies}
        pcs = {p: med(x["per_cpu_s"] for x in r[p]) for p in proxies}
        errs = {p: sum(x["errors"] for x in r[p]) for p in proxies}
        row = "| %s | %s | " % (s[1], s[5]) + " | ".join(
            fmt(m[p]) + (" (%d errors)" % errs[p] if errs[p] else "") for p in proxies)
        if has["ktlsgw"] and has["nginx"]:
            row += " | **%s**" % ratio(m["ktlsgw"], m["nginx"])
        if has["ktlsgw"] and has["haproxy"]:
            row += " | **%s**" % ratio(m["ktlsgw"], m["haproxy"])
        row += " | " + " / ".join("%.0f" % cpu[p] if cpu[p] is not None else "-"
                                  for p in proxies)
        row += " | " + " / ".join(spread([x["value"] for x in r[p]]) for p in proxies) + " |"
        L.append(row)
        chart.append((s[0], m))
        eff.append((s, pcs))
    if idle:
        m = {p: idle.get(p, {}).get("kib_per_conn") for p in proxies}
        row = "| RSS per idle mTLS connection (%d open; lower is better) | KiB | " % meta["idle"]
        row += " | ".join("%.1f" % m[p] if m[p] is not None else "-" for p in proxies)
        if has["ktlsgw"] and has["nginx"]:
            row += " | **%s**" % ratio(m["ktlsgw"], m["nginx"])
        if has["ktlsgw"] and has["haproxy"]:
            row += " | **%s**" % ratio(m["ktlsgw"], m["haproxy"])
        row += " | | |"
        L.append(row)
        fl = meta.get("ssl_floor")
        if fl:
            # the same for every proxy (one OpenSSL): the floor under the row above
            cells = ["%.1f" % fl["rss_kib_per_conn"]] * len(proxies)
            cells += [""] * ((has["ktlsgw"] and has["nginx"]) + (has["ktlsgw"] and has["haproxy"]))
            L.append("| of which OpenSSL alone (an idle server SSL, nothing else: "
                     "ktlsgw-bench-sslfloor) | KiB | " + " | ".join(cells) + " | | |")
    L.append("")
    L.append("The ratios are ktlsgw's median over the other's (higher is better, but for RSS). "
             "proxy CPU %% and spread (the highest over the lowest of the rounds) are given "
             "for %s in this order." % ", ".join(NAMES[p] for p in proxies))
    L.append("")
    L.append("Work per CPU-second of the proxy (the unit above x duration / the proxy's "
             "user+sys time; where a proxy is below ~95 % CPU the load generator on CPU 0 "
             "was the limit and this column is the fairer comparison):")
    L.append("")
    hdr = "| scenario | unit per proxy CPU-s | " + " | ".join(NAMES[p] for p in proxies)
    if has["ktlsgw"] and has["nginx"]:
        hdr += " | ktlsgw/nginx"
    if has["ktlsgw"] and has["haproxy"]:
        hdr += " | ktlsgw/HAProxy"
    hdr += " |"
    L.append(hdr)
    L.append("|" + "---|" * (hdr.count("|") - 1))
    for s, pcs in eff:
        row = "| %s | %s | " % (s[1], s[5].split("/")[0]) + " | ".join(
            fmt(pcs[p]) if pcs[p] is not None else "(CPU < 2 %)" for p in proxies)
        if has["ktlsgw"] and has["nginx"]:
            row += " | %s" % ratio(pcs["ktlsgw"], pcs["nginx"])
        if has["ktlsgw"] and has["haproxy"]:
            row += " | %s" % ratio(pcs["ktlsgw"], pcs["haproxy"])
        L.append(row + " |")
    L.append("")
    if has["ktlsgw"] and (has["nginx"] or has["haproxy"]) and meta["rounds"] > 1:
        L.append("Paired by round (each round runs the proxies back to back, so the host's "
                 "slower drifts cancel): the median of the per-round ratios, and their range:")
        L.append("")
        others = [p for p in ("nginx", "haproxy") if has[p]]
        hdr = "| scenario | " + " | ".join("ktlsgw/%s per round" % NAMES[p] for p in others)
        L.append(hdr + " |")
        L.append("|" + "---|" * (hdr.count("|")))
        for s in scen:
            r = results[s[0]]
            cells = []
            for p in others:
                other = {x["round"]: x["value"] for x in r[p]}
                rs = [a["value"] / other[a["round"]] for a in r["ktlsgw"]
                      if a["value"] and other.get(a["round"])]
                cells.append("**%.2f** (%.2f-%.2f)" % (statistics.median(rs), min(rs), max(rs))
                             if rs else "-")
            L.append("| %s | %s |" % (s[1], " | ".join(cells)))
        L.append("")
    for k, v in meta["skipped"].items():
        L.append("Skipped: %s (%s)." % (k, v))
    ciphers = set()
    for s in scen:
        for p in proxies:
            for x in results[s[0]][p]:
                ciphers.add("%s %s %s" % (x["tls"], x["cipher"], x.get("group", "")))
    L.append("Negotiated: %s. Versions: %s." % (
        ", ".join(sorted(ciphers)), "; ".join("%s" % v for v in meta["versions"].values())))
    L.append("")
    L.append("Command: `%s`" % cmd)
    md = "\n".join(L) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "scenarios": [s[0] for s in scen], "results": results,
                   "idle": idle}, f, indent=1)
    plot(chart, proxies, idle, out)
    return md


def plot(chart, proxies, idle, out):
    """Bars: each scenario's median relative to the best of the three (1.0 = best), and RSS
    per idle connection relative to the smallest (inverted: 1.0 = smallest)."""
    dat = os.path.join(out, "results.dat")
    with open(dat, "w") as f:
        f.write("scenario " + " ".join(NAMES[p] for p in proxies) + "\n")
        for name, m in chart:
            best = max([v for v in m.values() if v] or [0])
            if not best:
                continue
            f.write(name + " " + " ".join("%.4f" % ((m[p] or 0) / best) for p in proxies) + "\n")
        if idle:
            v = {p: idle.get(p, {}).get("kib_per_conn") for p in proxies}
            low = min([x for x in v.values() if x] or [0])
            if low:
                f.write("idle-RSS " + " ".join("%.4f" % (low / v[p] if v[p] else 0)
                                               for p in proxies) + "\n")
    gp = """set terminal svg size 1000,480 dynamic font "sans,12"
set output '{O}/results.svg'
set title "mTLS, 1 worker each: median / best of the three\\n(idle-RSS: smallest / own)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:1.1]
set grid ytics
set key outside top center horizontal
set xtics rotate by -30
plot for [i=2:{N}] '{D}' using i:xtic(1) title columnheader(i)
""".format(O=out, D=dat, N=len(proxies) + 1)
    with open(os.path.join(out, "results.gp"), "w") as f:
        f.write(gp)
    try:
        subprocess.run(["gnuplot", os.path.join(out, "results.gp")], check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log("gnuplot failed: %s (the table is in results.md)" % e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--certs", default="build/default/certs")
    ap.add_argument("--bin", default="build/default")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--ktls", default="off", choices=["off", "auto"])
    ap.add_argument("--verify-cache", default="on", choices=["on", "off"],
                    help="ktlsgw's ssl_verify_cache (default on, as its default)")
    ap.add_argument("--load-ec", default="legacy", choices=["legacy", "provider"],
                    help="how ktlsgw-bench decodes EC keys (default legacy: a lighter load)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--report", metavar="RESULTS_JSON",
                    help="only write the table and the chart again from a results.json")
    ap.add_argument("--idle-opener", type=int)
    ap.add_argument("--port", type=int)
    ap.add_argument("--close", action="store_true")
    a = ap.parse_args()
    if a.idle_opener is not None:
        idle_opener(a.idle_opener, a.certs, a.port, a.close)
        return
    cmd = os.environ.get("BENCH_CMD") or " ".join(sys.argv)
    if a.report:
        with open(a.report) as f:
            j = json.load(f)
        scen = [s for s in SCENARIOS if s[0] in j["scenarios"]]
        proxies = [p for p in PROXIES if p in j["results"][scen[0][0]]]
        out = os.path.dirname(os.path.abspath(a.report))
        print(report(scen, proxies, j["results"], j["idle"], j["meta"], out,
                     j["meta"].get("command", cmd)))
        return
    if a.quick:
        a.rounds, a.duration, a.idle = 1, 2, min(a.idle, 1000)
    a.scenarios = [x for x in a.scenarios.split(",") if x]
    a.proxies = [x for x in a.proxies.split(",") if x]
    bad = [x for x in a.scenarios if x not in [s[0] for s in SCENARIOS]]
    bad += [x for x in a.proxies if x not in PROXIES]
    if bad:
        sys.exit("unknown scenario or proxy: %s" % ", ".join(bad))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    # one descriptor per idle client in each proxy (none connects a backend before a request)
    if a.idle + 500 > soft:
        n = soft - 500
        log("open files limit %d (cannot be raised here): %d idle connections instead of %d"
            % (soft, n, a.idle))
        a.idle = n
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs (proxy on CPU 1, load on CPU 0)")
    for b in (NGINX, HAPROXY, STREAM_MODULE):
        if not os.path.exists(b):
            sys.exit("no %s: scripts/install-deps.sh --bench" % b)
    t0 = time.monotonic()
    b = Bench(a)
    scen, proxies, results, idle, meta = b.run()
    md = report(scen, proxies, results, idle, meta, b.out, cmd)
    print()
    print(md)
    print("written: %s/results.md, results.json, results.svg (%.0f s)" % (
        os.path.relpath(b.out), time.monotonic() - t0))


if __name__ == "__main__":
    main()
