#!/usr/bin/env bash
# Makes a local certificate authority and the certificates the local stack and compose use:
#   ca.pem / ca-key.pem            the CA (keep ca-key.pem private; it signs everything below)
#   server.pem / server-key.pem    ingest and query (names: localhost, 127.0.0.1, ingest,
#                                  query, nginx, and any extra names given as arguments:
#                                  host names, IPv4 or IPv6 addresses)
#   client.pem / client-key.pem    a client certificate (CN tidemark-client) for mutual TLS
# Usage: deploy/certs.sh DIR [extra-name ...]. Existing files are kept, so running it again
# is safe; delete a file (or DIR) to make it anew. Certificates are valid for 825 days. A
# server or client certificate is issued again (key and certificate, each replaced by a
# rename, which the services pick up while they run) when it is not signed by ca.pem (a new
# CA), does not match its key, expires within 30 days, or lacks a name asked for; run it again
# to renew. The CA is never replaced by the script: it warns 30 days before ca.pem expires and
# fails once it has.
# Private keys are made readable by their owner only; containers run as `nobody`, so for
# compose make them readable by it: TIDEMARK_CERT_KEY_MODE=0644 deploy/certs.sh DIR.
set -euo pipefail
dir="${1:?usage: deploy/certs.sh DIR [extra-name ...]}"
shift
mkdir -p "$dir"
cd "$dir"
umask 077
days=825
renew_seconds=$((30 * 24 * 3600))

if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=Tidemark local CA" -keyout ca-key.pem -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

# Certificates issued by an expired CA would not verify either: say so once, rather than issue
# them again on every run.
if ! openssl x509 -in ca.pem -noout -checkend 0 >/dev/null; then
  echo "certs.sh: $(pwd)/ca.pem has expired; make a new CA: delete ca.pem and ca-key.pem, run" \
    "this again, and give clients the new ca.pem (docs/security.md, Rotating certificates)" >&2
  exit 1
fi
if ! openssl x509 -in ca.pem -noout -checkend "$renew_seconds" >/dev/null; then
  echo "certs.sh: warning: $(pwd)/ca.pem expires $(openssl x509 -in ca.pem -noout -enddate | cut -d= -f2);" \
    "make a new CA (see docs/security.md, Rotating certificates)" >&2
fi

# current NAME SANS: whether NAME.pem and its key are there, signed by ca.pem, not expiring
# within 30 days, and name everything in SANS (comma-separated DNS:x and IP:x).
current() {
  local name="$1" sans="$2" have entry
  [ -f "$name.pem" ] && [ -f "$name-key.pem" ] || return 1
  if ! openssl verify -CAfile ca.pem "$name.pem" >/dev/null 2>&1; then
    echo "certs.sh: issuing $name.pem again: not signed by ca.pem, or expired" >&2
    return 1
  fi
  # A run cut short between the key's rename and the certificate's leaves them apart.
  if [ "$(openssl x509 -in "$name.pem" -noout -pubkey 2>/dev/null)" != \
       "$(openssl pkey -in "$name-key.pem" -pubout 2>/dev/null)" ]; then
    echo "certs.sh: issuing $name.pem again: it does not match $name-key.pem" >&2
    return 1
  fi
  if ! openssl x509 -in "$name.pem" -noout -checkend "$renew_seconds" >/dev/null; then
    echo "certs.sh: issuing $name.pem again: it expires within 30 days" >&2
    return 1
  fi
  # openssl prints "DNS:a, IP Address:1.2.3.4, ..."; names are compared as ",DNS:x," to match
  # whole names. Addresses are checked by openssl, which prints IPv6 ones in a form of its own.
  have=",$(openssl x509 -in "$name.pem" -noout -ext subjectAltName | tail -n +2 | tr -d ' \n'),"
  for entry in ${sans//,/ }; do
    case "$entry" in
      IP:*) openssl x509 -in "$name.pem" -noout -checkip "${entry#IP:}" |
              grep -q "does match" && continue ;;
      *) [[ "$have" == *",$entry,"* ]] && continue ;;
    esac
    echo "certs.sh: issuing $name.pem again: it does not name $entry" >&2
    return 1
  done
}

# Temporary files of the certificate being issued, removed however the script ends.
pending=()
trap 'rm -f ${pending[@]+"${pending[@]}"}' EXIT

# sign NAME CN SANS EXTENSIONS: a key and a certificate signed by the CA, unless current.
# Written to temporary files and renamed into place, the key first.
sign() {
  local name="$1" cn="$2" sans="$3" ext="$4"
  current "$name" "$sans" && return 0
  pending=("$name-key.pem.new" "$name.csr" "$name.ext" "$name.pem.new")
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$name-key.pem.new" -out "$name.csr" 2>/dev/null
  printf '%s\nsubjectAltName=%s\n' "$ext" "$sans" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days "$days" -extfile "$name.ext" -out "$name.pem.new" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 644 "$name.pem.new"
  chmod "${TIDEMARK_CERT_KEY_MODE:-0600}" "$name-key.pem.new"
  mv -f "$name-key.pem.new" "$name-key.pem"
  mv -f "$name.pem.new" "$name.pem"
  pending=()
}

sans="DNS:localhost,IP:127.0.0.1,DNS:ingest,DNS:query,DNS:nginx"
for extra in "$@"; do
  extra="${extra#[}" extra="${extra%]}"  # [::1] as in a URL
  # An IPv4 address, or an IPv6 one (hex digits and colons, perhaps ending in IPv4 form).
  if [[ "$extra" =~ ^[0-9.]+$ || "$extra" =~ ^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$ ]]; then
    # openssl takes an address it cannot parse for a match; ca.pem names none, so a real
    # address does not match it.
    if ! openssl x509 -in ca.pem -noout -checkip "$extra" 2>/dev/null |
         grep -q "does NOT match"; then
      echo "certs.sh: $extra is not an IP address (nor a host name, which has no ':')" >&2
      exit 1
    fi
    sans="$sans,IP:$extra"
  else
    sans="$sans,DNS:$extra"
  fi
done
sign server localhost "$sans" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
sign client tidemark-client "DNS:tidemark-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
chmod 644 ca.pem server.pem client.pem
chmod "${TIDEMARK_CERT_KEY_MODE:-0600}" server-key.pem client-key.pem
chmod 600 ca-key.pem
echo "certificates in $(pwd): ca.pem server.pem server-key.pem client.pem client-key.pem"
