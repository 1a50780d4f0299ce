#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A tiny HTTP/1.1 backend for the demo: answers every request with the
request line and headers it received (so the injected identity is visible).
Usage: echo-backend.py PORT"""
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        lines = [f"backend saw: {self.requestline}"]
        lines += [f"  {k}: {v}" for k, v in self.headers.items()]
        lines.append(f"  (body: {len(body)} bytes)")
        out = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
