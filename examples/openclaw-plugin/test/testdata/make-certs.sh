#!/bin/sh
# make-certs.sh writes the throwaway PEM files test/broker.test.mjs uses:
# a test CA, a server certificate it signed for 127.0.0.1, ::1 and
# localhost, a client certificate it signed (mTLS), and a second CA that
# signed neither (the wrong CA). The keys guard nothing but these tests.
# The CAs' own keys are not kept: run this again to make a new set.
#   cd examples/openclaw-plugin/test/testdata && sh make-certs.sh
set -eu
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ec "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -subj "/CN=airlock plugin test CA" -days $days -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

ec "$tmp/other-ca.key"
openssl req -x509 -new -key "$tmp/other-ca.key" -subj "/CN=airlock plugin test other CA" -days $days -out other-ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # name subject extensions
  ec "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$tmp/$1.csr"
  printf '%s\n' "$3" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.crt -CAkey "$tmp/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
    -days $days -extfile "$tmp/$1.ext" -out "$1.crt"
}
leaf server "/CN=airlockd test" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth
basicConstraints=critical,CA:FALSE"
leaf client "/CN=openclaw gateway test" "extendedKeyUsage=clientAuth
basicConstraints=critical,CA:FALSE"
chmod 0644 ./*.crt ./*.key
