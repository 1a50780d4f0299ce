#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Generate the test PKI into DIR (default build/default/certs) with the openssl CLI.
# No key is ever committed; this runs at test time. Re-running is cheap: a stamp
# file keeps a PKI younger than a day (its expired/not-yet-valid certs are relative to now).
#
# Layout (all PEM):
#   root-ca  int1-ca (by root)  int2-ca (by int1)  other-ca (separate root)
#   server (ECDSA P-256, by root, SAN localhost/127.0.0.1/::1)  server-rsa (RSA 2048, by root)
#   server-int + server-int.fullchain.crt (leaf + int1)
#   client-good (by root)  client-int1 (by int1)  client-int2 (by int2, via int1)
#   client-expired  client-notyet  client-revoked (all by root)  client-other (by other-ca)
#   client-self (self-signed)  client-spiffe (URI SAN spiffe://...)  client-utf8 (UTF-8,
#   multi-valued RDN, special characters)  client-rsa (RSA 2048, by root)
#   *.crt *.key, plus *.chain.crt = leaf + the intermediates a client sends
#   crl-root.pem crl-int1.pem crl-int2.pem crl-other.pem, crl-all.pem (every CA), crl-expired.pem
#   ca-bundle.pem: seed-style bundle: int1 + int2 + root + three client certs concatenated
#   ca-root.pem (root only), ca-other.pem, ca-all.pem (root+int1+int2+other)
set -euo pipefail

DIR=${1:-build/default/certs}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
STAMP="$DIR/.stamp-v4"
if [ -f "$STAMP" ] && [ -n "$(find "$STAMP" -mmin -1440 2>/dev/null)" ]; then
	exit 0
fi
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
export OPENSSL_CONF=/dev/null

ecdsa_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

cat > ext.cnf <<'EXT'
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,DNS:service.domain.com,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_san ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = DNS:good.client.test,DNS:alt.client.test,URI:https://client.test/id/1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_spiffe ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://example.org/ns/default/sa/web
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ self ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
EXT

{ printf '[ req ]\ndistinguished_name = dn\n[ dn ]\n'; cat ext.cnf; } > req.cnf

# ca_setup NAME: state for "openssl ca" in NAME.db/
ca_setup() {
	mkdir -p "$1.db/new"
	: > "$1.db/index.txt"
	echo 1000 > "$1.db/crlnumber"
	cat > "$1.db/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = $PWD/$1.db
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $PWD/$1.crt
private_key = $PWD/$1.key
default_md = sha256
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = optional
[ req ]
distinguished_name = dn
[ dn ]
CNF
}

# rand_serial FILE: a positive 16-byte serial (first byte < 0x80)
rand_serial() { printf '%02X%s\n' $((RANDOM % 112 + 16)) "$(openssl rand -hex 15 | tr a-f A-F)" > "$1"; }

# issue NAME CA SUBJ EXT [KEYTYPE] [START END]
issue() {
	local name=$1 ca=$2 subj=$3 ext=$4 kt=${5:-ec} start=${6:-} end=${7:-}
	if [ "$kt" = rsa ]; then rsa_key "$name.key"; else ecdsa_key "$name.key"; fi
	openssl req -new -key "$name.key" -subj "$subj" -utf8 -multivalue-rdn \
		-config "$ca.db/ca.cnf" -out "$name.csr"
	rand_serial "$ca.db/serial"
	local dates=(-days 825)
	if [ -n "$start" ]; then dates=(-startdate "$start" -enddate "$end"); fi
	openssl ca -batch -notext -utf8 -multivalue-rdn -preserveDN -config "$ca.db/ca.cnf" \
		"${dates[@]}" -extfile ext.cnf -extensions "$ext" -in "$name.csr" -out "$name.crt" \
		2>/dev/null
	rm -f "$name.csr"
}

# root CA NAME SUBJ
root_ca() {
	ecdsa_key "$1.key"
	openssl req -new -x509 -key "$1.key" -subj "$2" -days 3650 -sha256 \
		-config req.cnf -extensions v3_ca -set_serial "0x$(openssl rand -hex 8)" -out "$1.crt"
	ca_setup "$1"
}

root_ca root-ca "/C=US/O=ktlsgw test/CN=ktlsgw Test Root CA"
root_ca other-ca "/C=US/O=ktlsgw other/CN=ktlsgw Other Root CA"
ca_setup int1-ca
issue int1-ca root-ca "/C=US/O=ktlsgw test/CN=ktlsgw Intermediate 1" v3_ca
ca_setup int2-ca
issue int2-ca int1-ca "/C=US/O=ktlsgw test/CN=ktlsgw Intermediate 2" v3_ca

issue server root-ca "/C=US/O=ktlsgw test/CN=localhost" server
issue server-rsa root-ca "/C=US/O=ktlsgw test/CN=localhost" server rsa
issue server-int int1-ca "/C=US/O=ktlsgw test/CN=localhost" server
cat server-int.crt int1-ca.crt > server-int.fullchain.crt

now=$(date -u +%s)
past_start=$(date -u -d "@$((now - 86400 * 30))" +%Y%m%d%H%M%SZ)
past_end=$(date -u -d "@$((now - 86400 * 2))" +%Y%m%d%H%M%SZ)
fut_start=$(date -u -d "@$((now + 86400 * 30))" +%Y%m%d%H%M%SZ)
fut_end=$(date -u -d "@$((now + 86400 * 400))" +%Y%m%d%H%M%SZ)

issue client-good root-ca "/C=US/ST=California/L=San Francisco/O=ktlsgw test/OU=clients/CN=client-good/emailAddress=good@client.test" client_san
issue client-int1 int1-ca "/C=US/O=ktlsgw test/CN=client-int1" client
issue client-int2 int2-ca "/C=US/O=ktlsgw test/CN=client-int2" client
issue client-expired root-ca "/C=US/O=ktlsgw test/CN=client-expired" client ec "$past_start" "$past_end"
issue client-notyet root-ca "/C=US/O=ktlsgw test/CN=client-notyet" client ec "$fut_start" "$fut_end"
issue client-revoked root-ca "/C=US/O=ktlsgw test/CN=client-revoked" client
issue client-other other-ca "/C=US/O=ktlsgw other/CN=client-other" client
issue client-spiffe root-ca "/C=US/O=ktlsgw test/CN=client-spiffe" client_spiffe
issue client-utf8 root-ca "/C=DE/O=Müller & Söhne, GmbH/OU=Dev+OU=Ops/CN=Jürgen \"JJ\" Ünal <j=1>; x\\y" client
issue client-rsa root-ca "/C=US/O=ktlsgw test/CN=client-rsa" client rsa
ecdsa_key client-self.key
openssl req -new -x509 -key client-self.key -subj "/C=US/O=ktlsgw self/CN=client-self" -days 825 \
	-config req.cnf -extensions self \
	-set_serial "0x$(openssl rand -hex 8)" -out client-self.crt

# What a client sends: leaf + intermediates.
for c in client-good client-expired client-notyet client-revoked client-spiffe client-utf8 client-rsa; do
	cp "$c.crt" "$c.chain.crt"
done
cat client-int1.crt int1-ca.crt > client-int1.chain.crt
cat client-int2.crt int2-ca.crt int1-ca.crt > client-int2.chain.crt
cp client-other.crt client-other.chain.crt
cp client-self.crt client-self.chain.crt

openssl ca -batch -config root-ca.db/ca.cnf -revoke client-revoked.crt -crl_reason keyCompromise 2>/dev/null
for ca in root-ca int1-ca int2-ca other-ca; do
	openssl ca -batch -config "$ca.db/ca.cnf" -gencrl -out "crl-${ca%-ca}.pem" 2>/dev/null
done
cat crl-root.pem crl-int1.pem crl-int2.pem crl-other.pem > crl-all.pem
# A root CRL whose nextUpdate has passed: OpenSSL rejects with "CRL has expired".
openssl ca -batch -config root-ca.db/ca.cnf -gencrl \
	-crl_lastupdate "$past_start" -crl_nextupdate "$past_end" -out crl-root-expired.pem 2>/dev/null
cat crl-root-expired.pem crl-int1.pem crl-int2.pem crl-other.pem > crl-expired.pem

cat int1-ca.crt int2-ca.crt root-ca.crt client-good.crt client-int1.crt client-rsa.crt > ca-bundle.pem
cp root-ca.crt ca-root.pem
cp other-ca.crt ca-other.pem
cat root-ca.crt int1-ca.crt int2-ca.crt other-ca.crt > ca-all.pem
chmod 600 ./*.key
touch .stamp-v4 # relative: we are in $DIR
