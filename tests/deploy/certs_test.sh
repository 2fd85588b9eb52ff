#!/usr/bin/env bash
# deploy/certs.sh run again: keeps what is current, and issues a certificate again when it is
# not signed by ca.pem, expires within 30 days, or lacks a name asked for; names IPv6 addresses
# as addresses; leaves no temporary files when openssl fails.
# usage: certs_test.sh deploy/certs.sh
set -u
certs="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dir="$work/certs"
failures=0
fail() { echo "certs: $*" >&2; failures=$((failures + 1)); }
run() { bash "$certs" "$dir" "$@" >/dev/null 2>"$work/stderr" || fail "certs.sh $* failed: $(cat "$work/stderr")"; }
sum() { sha256sum "$dir/$1" | cut -d' ' -f1; }
names() { openssl x509 -in "$dir/$1" -noout -ext subjectAltName | tail -n +2; }
verifies() { openssl verify -CAfile "$dir/ca.pem" "$dir/$1" >/dev/null 2>&1; }

run
for f in ca.pem server.pem server-key.pem client.pem client-key.pem; do
  [ -s "$dir/$f" ] || fail "$f not made"
done
verifies server.pem || fail "server.pem not signed by ca.pem"
[ "$(stat -c %a "$dir/server-key.pem")" = 600 ] || fail "server-key.pem is not 600"
server="$(sum server.pem)" client="$(sum client.pem)" ca="$(sum ca.pem)"

# Again: nothing changes.
run
[ "$(sum server.pem)" = "$server" ] && [ "$(sum client.pem)" = "$client" ] &&
  [ "$(sum ca.pem)" = "$ca" ] || fail "a second run changed a current certificate"

# A new name: the server certificate is issued again, naming it and the defaults.
run lake.example 10.1.2.3
[ "$(sum server.pem)" != "$server" ] || fail "a new name did not issue server.pem again"
for n in DNS:lake.example "IP Address:10.1.2.3" DNS:localhost DNS:ingest; do
  names server.pem | grep -q "$n" || fail "server.pem does not name $n: $(names server.pem)"
done
[ "$(sum client.pem)" = "$client" ] || fail "a new server name issued client.pem again"
openssl x509 -in "$dir/server.pem" -noout -pubkey > "$work/cert.pub"
openssl pkey -in "$dir/server-key.pem" -pubout > "$work/key.pub"
cmp -s "$work/cert.pub" "$work/key.pub" || fail "server-key.pem does not match server.pem"
server="$(sum server.pem)"
# A name that only starts like one it has is not taken for it.
run lake.example 10.1.2.3 lake.ex
names server.pem | grep -q "DNS:lake.ex," || names server.pem | grep -q "DNS:lake.ex$" ||
  fail "lake.ex is not named: $(names server.pem)"
server="$(sum server.pem)"
# Fewer names than it has: still current.
run
[ "$(sum server.pem)" = "$server" ] || fail "a run without extra names issued server.pem again"

# IPv6 addresses are named as addresses (which openssl prints in full), and stay current.
run ::1 fd00::a:1
names server.pem | grep -q "IP Address:0:0:0:0:0:0:0:1" &&
  names server.pem | grep -q "IP Address:FD00:0:0:0:0:0:A:1" ||
  fail "IPv6 addresses not named as addresses: $(names server.pem)"
openssl x509 -in "$dir/server.pem" -noout -checkip ::1 | grep -q "does match" ||
  fail "server.pem does not match ::1"
server="$(sum server.pem)"
run '[::1]' fd00::a:1
[ "$(sum server.pem)" = "$server" ] || fail "a second run with IPv6 addresses issued it again"
# Something that looks like an address but is none is refused, not taken for a match.
for bad in 1.2.3 a:b; do
  if bash "$certs" "$dir" "$bad" >/dev/null 2>"$work/stderr"; then fail "$bad was accepted"; fi
  grep -q "$bad is not an IP address" "$work/stderr" ||
    fail "$bad: no reason: $(cat "$work/stderr")"
done
[ "$(sum server.pem)" = "$server" ] || fail "a refused name changed server.pem"

# openssl failing part-way leaves no temporary files and the current certificate in place.
mkdir -p "$work/bin"
printf '%s\n' '#!/usr/bin/env bash' \
  "if [ \"\$1\" = x509 ] && [ \"\$2\" = -req ]; then touch '$work/refused'; exit 1; fi" \
  "exec $(command -v openssl) \"\$@\"" > "$work/bin/openssl"
chmod +x "$work/bin/openssl"
if PATH="$work/bin:$PATH" bash "$certs" "$dir" another.example >/dev/null 2>"$work/stderr"; then
  fail "certs.sh succeeded though openssl failed"
fi
[ -f "$work/refused" ] && grep -q "does not name DNS:another.example" "$work/stderr" ||
  fail "certs.sh did not get as far as signing: $(cat "$work/stderr")"
leftovers="$(cd "$dir" && ls -- *.new *.csr *.ext 2>/dev/null)"
[ -z "$leftovers" ] || fail "temporary files left behind: $leftovers"
[ "$(sum server.pem)" = "$server" ] || fail "server.pem changed though signing failed"

# A certificate that expires within 30 days is renewed, keeping the key mode asked for.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=tidemark-client \
  -keyout "$dir/client-key.pem" -out "$work/client.csr" 2>/dev/null
printf 'subjectAltName=DNS:tidemark-client\n' > "$work/ext"
openssl x509 -req -in "$work/client.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
  -CAcreateserial -days 10 -extfile "$work/ext" -out "$dir/client.pem" 2>/dev/null
TIDEMARK_CERT_KEY_MODE=0644 run
openssl x509 -in "$dir/client.pem" -noout -checkend $((60 * 24 * 3600)) >/dev/null ||
  fail "client.pem expiring in 10 days was not renewed"
grep -q "expires within 30 days" "$work/stderr" || fail "renewal not reported: $(cat "$work/stderr")"
[ "$(stat -c %a "$dir/client-key.pem")" = 644 ] || fail "client-key.pem is not 644"

# A key that does not match its certificate (a run cut short between the two renames).
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=x \
  -keyout "$dir/server-key.pem" -out /dev/null 2>/dev/null
run
openssl x509 -in "$dir/server.pem" -noout -pubkey > "$work/cert.pub"
openssl pkey -in "$dir/server-key.pem" -pubout > "$work/key.pub"
cmp -s "$work/cert.pub" "$work/key.pub" || fail "a key that does not match was kept"

# A new CA: both certificates are issued again under it.
rm "$dir/ca.pem" "$dir/ca-key.pem"
run
[ "$(sum ca.pem)" != "$ca" ] || fail "no new CA"
verifies server.pem || fail "server.pem not issued again under the new CA"
verifies client.pem || fail "client.pem not issued again under the new CA"
names server.pem | grep -q DNS:lake.example && fail "server.pem kept a name not asked for this time"

# A CA that expires soon is kept, with a warning.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5 \
  -subj "/CN=short CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
ca="$(sum ca.pem)"
run
[ "$(sum ca.pem)" = "$ca" ] || fail "the CA was replaced"
grep -q "warning: .*ca.pem expires" "$work/stderr" || fail "no warning: $(cat "$work/stderr")"
verifies server.pem || fail "server.pem not issued under the kept CA"

# An expired CA: a clear failure, and nothing issued under it.
mkdir -p "$work/old-ca"
: > "$work/old-ca/index.txt"
echo 01 > "$work/old-ca/serial"
printf '%s\n' "[ca]" "default_ca = old" "[old]" "database = $work/old-ca/index.txt" \
  "new_certs_dir = $work/old-ca" "serial = $work/old-ca/serial" "default_md = sha256" \
  "policy = any" "[any]" "commonName = supplied" "[v3ca]" \
  "basicConstraints = critical,CA:TRUE" "keyUsage = critical,keyCertSign,cRLSign" \
  > "$work/old-ca.cnf"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=expired CA" \
  -keyout "$dir/ca-key.pem" -out "$work/ca.csr" 2>/dev/null
openssl ca -batch -notext -config "$work/old-ca.cnf" -selfsign -keyfile "$dir/ca-key.pem" \
  -in "$work/ca.csr" -startdate 20200101000000Z -enddate 20200201000000Z -extensions v3ca \
  -out "$dir/ca.pem" 2>/dev/null || fail "could not make an expired CA for the test"
server="$(sum server.pem)"
if bash "$certs" "$dir" >/dev/null 2>"$work/stderr"; then fail "an expired CA was accepted"; fi
grep -q "ca.pem has expired" "$work/stderr" || fail "no reason given: $(cat "$work/stderr")"
[ "$(sum server.pem)" = "$server" ] || fail "server.pem was issued under an expired CA"

[ "$failures" = 0 ] && echo "certs: all checks passed"
exit "$failures"
