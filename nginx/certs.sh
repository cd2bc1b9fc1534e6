#!/bin/sh
# Development certificates: a local CA and a server certificate it signs (ECDSA P-256).
#
#   nginx/certs.sh [out-dir]          # default .local/tls; TLS_HOSTNAME adds a host name SAN
#
# Creates ca.crt/ca.key once and (re)issues server.crt/server.key when they are missing, will
# expire within 30 days, or lack the requested host name. Production mounts a publicly trusted
# certificate with its full chain instead (see nginx/README.md).
set -eu

out="${1:-.local/tls}"
hostname="${TLS_HOSTNAME:-}"
days=90   # Mozilla's recommended lifetime; re-running this script renews the certificate
mkdir -p "$out"
umask 077

if [ ! -s "$out/ca.crt" ] || [ ! -s "$out/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  # CA:TRUE and keyCertSign are what strict validators (sslyze, Java, Oracle wallets) check.
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days 1825 \
    -subj "/O=credit-risk serving/CN=credit-risk development CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$out/ca.crt"
  rm -f "$out/server.crt"
  echo "certs: created the development CA $out/ca.crt"
fi

sans="DNS:localhost,IP:127.0.0.1"
[ -n "$hostname" ] && [ "$hostname" != localhost ] && sans="$sans,DNS:$hostname"

renew=no
if [ ! -s "$out/server.crt" ] || [ ! -s "$out/server.key" ]; then
  renew=yes
elif ! openssl x509 -in "$out/server.crt" -noout -checkend $((30 * 86400)) >/dev/null; then
  renew=yes
elif [ -n "$hostname" ] && ! openssl x509 -in "$out/server.crt" -noout -ext subjectAltName \
       | grep -q "DNS:$hostname"; then
  renew=yes
fi

if [ "$renew" = yes ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/server.key"
  openssl req -new -key "$out/server.key" -subj "/CN=${hostname:-localhost}" -out "$out/server.csr"
  cat > "$out/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
  openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$out/server.ext" -out "$out/server.crt" \
    2>/dev/null
  rm -f "$out/server.csr" "$out/server.ext"
  echo "certs: issued $out/server.crt for $sans, valid $days days"
else
  echo "certs: $out/server.crt is valid and current"
fi
chmod 600 "$out/ca.key" "$out/server.key"
chmod 644 "$out/ca.crt" "$out/server.crt"
