#!/usr/bin/env bash
# Makes the secrets deploy/docker-compose.yml reads, in deploy/secrets/ (never committed):
#   certs/                       a local CA and the ingest/query/nginx certificate (certs.sh)
#   postgres_password            the PostgreSQL superuser's
#   tidemark_writer_password     the writer's (schema owner, not a superuser)
#   tidemark_query_password      the read-only role's (query service and Grafana)
#   grafana_admin_password       Grafana's admin
#   lake_access_key, lake_secret_key   the S3 lake's (MinIO) keys
#   lake_credentials             the same for the archive, as an AWS shared credentials file
#   admin.token                  a bearer token with read, write and explicit_version
#   simulator.token              a bearer token that may only write
#   credentials                  what ingest and query check: the tokens' SHA-256 and scopes
# Existing files are kept, so it is safe to run again; delete one to make it anew (then
# restart what uses it; see docs/security.md for rotation). Certificates are renewed by
# certs.sh when they near expiry or lack a name asked for.
# Usage: deploy/init-secrets.sh [extra certificate name ...] (e.g. the host clients dial).
set -euo pipefail
cd "$(dirname "$0")"
dir=secrets
mkdir -p "$dir"
chmod 700 "$dir"
TIDEMARK_CERT_KEY_MODE=0644 ./certs.sh "$dir/certs" "$@" >/dev/null
umask 077

random() { openssl rand -base64 33 | tr '+/' '-_' | tr -d '=\n'; }
for name in postgres_password tidemark_writer_password tidemark_query_password \
            grafana_admin_password lake_secret_key; do
  [ -s "$dir/$name" ] || random > "$dir/$name"
done
[ -s "$dir/lake_access_key" ] || printf 'tidemark' > "$dir/lake_access_key"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$(cat "$dir/lake_access_key")" "$(cat "$dir/lake_secret_key")" > "$dir/lake_credentials"
# A token and the credentials line that grants it `scopes`; the file keeps only its SHA-256.
grant() {  # name scopes
  local name="$1" scopes="$2" token
  [ -s "$dir/$name.token" ] || { printf 'tdm_%s' "$(random)" > "$dir/$name.token"; }
  token="$(cat "$dir/$name.token")"
  printf 'token %s sha256:%s %s\n' "$name" \
    "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" "$scopes"
}
if [ ! -s "$dir/credentials" ]; then
  { echo "# Tidemark credentials (docs/security.md): token NAME sha256:HEX SCOPES [expires=...]"
    grant admin read,write,explicit_version
    grant simulator write
  } > "$dir/credentials"
fi
# The services run as `nobody` in their containers; compose mounts these files read-only, one
# by one, so they must be readable by others there, while the directory (700) keeps the other
# users of this host out.
chmod 644 "$dir"/*_password "$dir"/lake_* "$dir"/*.token "$dir"/credentials
chmod 700 "$dir"
echo "secrets in deploy/$dir; clients: --tls_ca_file=deploy/$dir/certs/ca.pem --token_file=deploy/$dir/admin.token"
