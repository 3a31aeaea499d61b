#!/usr/bin/env bash
# The ATNA receiver's client PKI: a local CA that signs the certificates of the nodes that
# may send audit messages (IHE ATNA node authentication, mutual TLS). The receiver trusts
# only this CA for clients (--client-ca); a sender's identity is its certificate's subject
# CN, which the sender policy (--senders) binds to the AuditSourceIDs it may claim.
# Keys are mode 600 in mode-700 directories; nothing is overwritten.
# Usage:
#   atna-pki.sh ca DIR            DIR/client-ca.crt and DIR/client-ca.key (once)
#   atna-pki.sh client DIR CN OUT OUT.crt and OUT.key for subject CN, signed by DIR's CA
#                                 (once; clientAuth only)
set -euo pipefail

die() { printf '[atna-pki] error: %s\n' "$*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl is not installed"

ca() {
  local dir="$1"
  [ -s "$dir/client-ca.crt" ] && [ -s "$dir/client-ca.key" ] && return 0
  mkdir -p "$dir"; chmod 700 "$dir"
  (umask 077
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes \
     -days 825 -keyout "$dir/client-ca.key.tmp" -out "$dir/client-ca.crt.tmp" \
     -subj "/CN=PHI audit ledger ATNA client CA" \
     -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
     -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1) \
    || die "openssl could not make the ATNA client CA"
  mv "$dir/client-ca.key.tmp" "$dir/client-ca.key"
  mv "$dir/client-ca.crt.tmp" "$dir/client-ca.crt"
}

client() {
  local dir="$1" cn="$2" out="$3" ext
  [ -s "$out.crt" ] && [ -s "$out.key" ] && return 0
  [ -s "$dir/client-ca.key" ] || die "no CA in $dir: run '$0 ca $dir' first"
  case "$cn" in ""|*/*|*=*) die "the CN must be non-empty, without / or =" ;; esac
  mkdir -p "$(dirname "$out")"
  ext="$(mktemp)"; trap 'rm -f "$ext" "$out.csr"' RETURN
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$ext"
  (umask 077
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes \
     -keyout "$out.key.tmp" -out "$out.csr" -subj "/CN=$cn" >/dev/null 2>&1 &&
   openssl x509 -req -in "$out.csr" -CA "$dir/client-ca.crt" -CAkey "$dir/client-ca.key" \
     -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$ext" \
     -out "$out.crt.tmp" >/dev/null 2>&1) \
    || die "openssl could not issue the client certificate for $cn"
  chmod 600 "$out.key.tmp" "$out.crt.tmp"
  mv "$out.key.tmp" "$out.key"; mv "$out.crt.tmp" "$out.crt"
}

case "${1:-}" in
  ca) [ $# -eq 2 ] || die "usage: $0 ca DIR"; ca "$2" ;;
  client) [ $# -eq 4 ] || die "usage: $0 client DIR CN OUT"; client "$2" "$3" "$4" ;;
  *) die "usage: $0 ca DIR | client DIR CN OUT" ;;
esac
