#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: a demo PKI, an echo backend, ktlsgw in front of it with
# ssl_verify_client on; one mTLS request (curl and openssl s_client, as the
# nginx recipe shows), one request without a certificate; prints what the
# backend saw, then stops everything.
set -euo pipefail
OUT=${1:-build/default}
BIN=$OUT/ktlsgw
DEMO=$PWD/$OUT/demo
PKI=$DEMO/pki
mkdir -p "$DEMO"
scripts/gen-test-certs.sh "$PKI" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BPORT=$(free_port)
GPORT=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat > "$DEMO/ktlsgw.conf" <<CONF
# The nginx mTLS recipe (seed document), with a backend and identity headers.
error_log $DEMO/error.log info;
http {
    server {
        listen 127.0.0.1:$GPORT ssl;
        server_name service.domain.com;
        ssl_certificate $PKI/server.crt;
        ssl_certificate_key $PKI/server.key;
        ssl_client_certificate $PKI/ca-bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        location / {
            proxy_pass http://127.0.0.1:$BPORT;
            proxy_set_header X-SSL-Cert \$ssl_client_escaped_cert;
            proxy_set_header X-SSL-Verify \$ssl_client_verify;
            proxy_set_header X-SSL-Serial \$ssl_client_serial;
            proxy_set_header X-SSL-Client-S-DN \$ssl_client_s_dn;
            proxy_set_header X-SSL-Fingerprint \$ssl_client_fingerprint;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
: > "$DEMO/error.log"
python3 scripts/echo-backend.py "$BPORT" & pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break
	sleep 0.1
done
"$BIN" -t -c "$DEMO/ktlsgw.conf"
"$BIN" -c "$DEMO/ktlsgw.conf" & pids+=($!)
for _ in $(seq 100); do
	grep -q "listening on 127.0.0.1:$GPORT" "$DEMO/error.log" && break
	sleep 0.1
done

echo
echo "== 1. mTLS request with client-good's certificate (curl); a forged X-SSL-Verify header is sent too"
curl -sS --cacert "$PKI/ca-root.pem" --cert "$PKI/client-good.crt" --key "$PKI/client-good.key" \
	--resolve "service.domain.com:$GPORT:127.0.0.1" -H 'X-SSL-Verify: SUCCESS-forged' \
	"https://service.domain.com:$GPORT/hello" | sed 's/^\(  X-SSL-Cert: .\{60\}\).*/\1.../'

echo
echo "== 2. the same with openssl s_client, as the nginx recipe shows"
printf 'GET /s_client HTTP/1.1\r\nHost: service.domain.com\r\nConnection: close\r\n\r\n' |
	openssl s_client -connect "127.0.0.1:$GPORT" -servername service.domain.com -quiet \
		-cert "$PKI/client-good.crt" -key "$PKI/client-good.key" -CAfile "$PKI/ca-root.pem" \
		2>&1 | grep -E 'verify return|backend saw|X-SSL-Verify|X-SSL-Client-S-DN' || true

echo
echo "== 3. request without a client certificate: the handshake is refused"
if curl -sS -o /dev/null --cacert "$PKI/ca-root.pem" --resolve "service.domain.com:$GPORT:127.0.0.1" \
	"https://service.domain.com:$GPORT/hello" 2>&1; then
	echo "UNEXPECTED: the request went through"
	exit 1
fi
echo "(curl failed, as it must: no certificate, no backend)"
sleep 0.2
echo
echo "== ktlsgw's log (info level)"
cat "$DEMO/error.log"
echo
echo "demo done (files in $DEMO)"
