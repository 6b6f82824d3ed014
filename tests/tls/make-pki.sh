#!/usr/bin/env bash
# Test certificates, made fresh by the TLS tests and `make bench` (never committed):
#   make-pki.sh DIR
# DIR/ca.crt            root CA (ECDSA P-256) that clients trust
# DIR/server.crt/.key   ECDSA P-256 server certificate (SEC1 key) for 127.0.0.1 and localhost, signed by ca
# DIR/inter.crt         intermediate CA (signed by ca)
# DIR/server-rsa-chain.crt/server-rsa.key  RSA 2048 server certificate signed by inter, with
#                       inter appended (a chain, as users get from their CA); PKCS#1 key
# DIR/client.crt/.key   client certificate CN=alice (signed by ca), for require_certificate
# DIR/rogue-ca.crt, DIR/rogue.crt/.key  a client certificate CN=mallory from an untrusted CA
# DIR/revoked.crt/.key  client certificate CN=eve (signed by ca), revoked in DIR/ca.crl
# DIR/ca.crl            ca's CRL (PEM) revoking revoked.crt, for crlfile
# DIR/server.spki       base64 SHA-256 of server.crt's public key (Chromium's
#                       --ignore-certificate-errors-spki-list trusts it)
set -euo pipefail
dir=${1:?usage: make-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
days=7
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ext() { printf '%s\n' "$@" > ext.cnf; }

ec ca.key
openssl req -x509 -new -key ca.key -out ca.crt -days $days -subj /CN=midge-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign

ec server.key
# SEC1 ("BEGIN EC PRIVATE KEY"), as older tools write it; client.key stays PKCS#8.
openssl ec -in server.key -out server.sec1.key 2>/dev/null && mv server.sec1.key server.key
openssl req -new -key server.key -out server.csr -subj /CN=localhost
ext basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=serverAuth \
    subjectAltName=IP:127.0.0.1,DNS:localhost
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days $days \
    -extfile ext.cnf 2>/dev/null

ec inter.key
openssl req -new -key inter.key -out inter.csr -subj /CN=midge-test-intermediate
ext basicConstraints=critical,CA:TRUE,pathlen:0 keyUsage=critical,keyCertSign,cRLSign
openssl x509 -req -in inter.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out inter.crt -days $days \
    -extfile ext.cnf 2>/dev/null

openssl genrsa -traditional -out server-rsa.key 2048 2>/dev/null || openssl genrsa -out server-rsa.key 2048 2>/dev/null
openssl req -new -key server-rsa.key -out server-rsa.csr -subj /CN=localhost
ext basicConstraints=CA:FALSE keyUsage=digitalSignature,keyEncipherment extendedKeyUsage=serverAuth \
    subjectAltName=IP:127.0.0.1,DNS:localhost
openssl x509 -req -in server-rsa.csr -CA inter.crt -CAkey inter.key -CAcreateserial -out server-rsa.crt \
    -days $days -extfile ext.cnf 2>/dev/null
cat server-rsa.crt inter.crt > server-rsa-chain.crt

ec client.key
openssl req -new -key client.key -out client.csr -subj "/O=midge tests/CN=alice"
ext basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=clientAuth
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days $days \
    -extfile ext.cnf 2>/dev/null

ec rogue-ca.key
openssl req -x509 -new -key rogue-ca.key -out rogue-ca.crt -days $days -subj /CN=rogue-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ec rogue.key
openssl req -new -key rogue.key -out rogue.csr -subj /CN=mallory
ext basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=clientAuth
openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -out rogue.crt \
    -days $days -extfile ext.cnf 2>/dev/null

ec revoked.key
openssl req -new -key revoked.key -out revoked.csr -subj /CN=eve
ext basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=clientAuth
openssl x509 -req -in revoked.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out revoked.crt -days $days \
    -extfile ext.cnf 2>/dev/null
# A CRL needs `openssl ca` and its database: a minimal one, removed afterwards.
mkdir -p crl-db && : > crl-db/index.txt && echo 01 > crl-db/crlnumber
cat > crl-db/ca.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = crl-db/index.txt
crlnumber = crl-db/crlnumber
certificate = ca.crt
private_key = ca.key
default_md = sha256
default_crl_days = $days
CNF
openssl ca -config crl-db/ca.cnf -revoke revoked.crt 2>/dev/null
openssl ca -config crl-db/ca.cnf -gencrl -out ca.crl 2>/dev/null
rm -rf crl-db

openssl x509 -in server.crt -pubkey -noout | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | base64 > server.spki
rm -f ./*.csr ext.cnf ./*.srl
