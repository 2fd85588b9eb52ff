#!/usr/bin/env bash
# Makes a local certificate authority and the certificates the local stack and compose use:
#   ca.pem / ca-key.pem            the CA (keep ca-key.pem private; it signs everything below)
#   server.pem / server-key.pem    ingest and query (names: localhost, 127.0.0.1, ingest,
#                                  query, nginx, and any extra names given as arguments)
#   client.pem / client-key.pem    a client certificate (CN tidemark-client) for mutual TLS
# Usage: deploy/certs.sh DIR [extra-name ...]. Existing files are kept, so running it again
# is safe; delete a file (or DIR) to make it anew. Certificates are valid for 825 days.
# Private keys are made readable by their owner only; containers run as `nobody`, so for
# compose make them readable by it: TIDEMARK_CERT_KEY_MODE=0644 deploy/certs.sh DIR.
set -euo pipefail
dir="${1:?usage: deploy/certs.sh DIR [extra-name ...]}"
shift
mkdir -p "$dir"
cd "$dir"
umask 077
days=825

if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=Tidemark local CA" -keyout ca-key.pem -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

# sign NAME CN EXTENSIONS: a key and a certificate signed by the CA.
sign() {
  local name="$1" cn="$2" ext="$3"
  [ -f "$name.pem" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sans="DNS:localhost,IP:127.0.0.1,DNS:ingest,DNS:query,DNS:nginx"
for extra in "$@"; do
  if [[ "$extra" =~ ^[0-9.]+$ ]]; then sans="$sans,IP:$extra"; else sans="$sans,DNS:$extra"; fi
done
sign server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans"
sign client tidemark-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectAltName=DNS:tidemark-client"
chmod 644 ca.pem server.pem client.pem
chmod "${TIDEMARK_CERT_KEY_MODE:-0600}" server-key.pem client-key.pem
chmod 600 ca-key.pem
echo "certificates in $(pwd): ca.pem server.pem server-key.pem client.pem client-key.pem"
