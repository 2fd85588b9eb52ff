#!/usr/bin/env bash
# Runs the whole pipeline locally without Docker: PostgreSQL in a private data directory,
# the development Kafka broker, timestream-writer, aggregator, archive, ingest and query
# replicas behind nginx (the same gRPC load-balancer configuration as docker-compose.yml), and
# the device simulator. Metrics on fixed loopback ports (printed at the end). ingest and query
# serve TLS (a local CA from deploy/certs.sh) and check bearer tokens (.local/credentials); the
# admin token is in .local/admin.token, the simulator's (write only) in .local/simulator.token.
# Everything it starts is recorded under .local/ and ended by deploy/local/stop.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

state="$root/.local"
pg_port="${TIDEMARK_LOCAL_PG_PORT:-55432}"
ingest_port="${TIDEMARK_LOCAL_INGEST_PORT:-50051}"
query_port="${TIDEMARK_LOCAL_QUERY_PORT:-50052}"
ingest_replicas="${TIDEMARK_LOCAL_INGEST_REPLICAS:-2}"
query_replicas="${TIDEMARK_LOCAL_QUERY_REPLICAS:-2}"
sim_duration="${TIDEMARK_LOCAL_SIM_DURATION:-10m}"
sim_rate="${TIDEMARK_LOCAL_SIM_RATE:-500}"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"

# Replica i listens on 50061+i (ingest) or 50071+i (query) and serves metrics on 9101+i or
# 9111+i, next to the writer's 9121: ten of each fit.
if ! [[ "$ingest_replicas" =~ ^([1-9]|10)$ && "$query_replicas" =~ ^([1-9]|10)$ ]]; then
  echo "TIDEMARK_LOCAL_INGEST_REPLICAS=$ingest_replicas, TIDEMARK_LOCAL_QUERY_REPLICAS=$query_replicas:" \
    "each from 1 to 10 (their ports are fixed)" >&2
  exit 2
fi

if [ -f "$state/pids" ]; then
  echo "a local stack is already running; stop it with deploy/local/stop.sh" >&2
  exit 1
fi

scripts/install-deps.sh
scripts/build.sh
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
bin="$root/${TIDEMARK_BUILD_DIR:-build}"
mkdir -p "$state/logs"
: > "$state/pids"
# A failure part-way, or Ctrl-C, stops whatever was already started.
trap 'echo "start-up failed; stopping what was started (logs in .local/logs)" >&2; deploy/local/stop.sh' ERR
trap 'echo "interrupted; stopping what was started" >&2; deploy/local/stop.sh; exit 130' INT TERM

# PostgreSQL refuses to run as root: run it as the postgres user Debian's package creates.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
pgdata="$state/pgdata"
if [ ! -f "$pgdata/PG_VERSION" ]; then
  mkdir -p "$pgdata"
  [ ${#as_pg[@]} -eq 0 ] || chown postgres:postgres "$pgdata"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pgdata" -A trust -U tidemark -E UTF8 >"$state/logs/initdb.log"
fi
# Every connection over TCP proves a password (any local user can reach 127.0.0.1); only the
# socket, in the data directory that its owner alone may enter, lets the superuser in without
# one, to set that password. Rewritten on every start, so a store made with trust everywhere
# (before this rule) is closed too; truncating keeps the file's owner.
cat > "$pgdata/pg_hba.conf" <<'HBA'
# Written by deploy/local/run.sh on every start.
local all tidemark                trust
host  all all      127.0.0.1/32   scram-sha-256
host  all all      ::1/128        scram-sha-256
HBA
[ ${#as_pg[@]} -eq 0 ] || chown postgres:postgres "$state/logs"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdata" -l "$state/logs/postgresql.log" -w \
  -o "-p $pg_port -k '$pgdata' -c listen_addresses=127.0.0.1" start >/dev/null
echo "pg_ctl $pgdata" >> "$state/pids"
# The superuser's password, kept in .local/secrets; psql (here, init-roles.sh and the commands
# printed at the end) finds it in the password file PGPASSFILE names.
mkdir -p "$state/secrets"
chmod 700 "$state/secrets"
[ -s "$state/secrets/postgres" ] || (umask 077; openssl rand -hex 24 > "$state/secrets/postgres")
"$pg_bin/psql" -X -h "$pgdata" -p "$pg_port" -U tidemark -d postgres -q -v ON_ERROR_STOP=1 \
  -v password_file="$state/secrets/postgres" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\set password `cat :'password_file'`
ALTER ROLE tidemark PASSWORD :'password';
SQL
(umask 077
 echo "127.0.0.1:$pg_port:*:tidemark:$(cat "$state/secrets/postgres")" > "$state/secrets/pgpass")
export PGPASSFILE="$state/secrets/pgpass"
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U tidemark -d postgres -qAt \
  -c "SELECT 1 FROM pg_database WHERE datname = 'tidemark'" | grep -q 1 ||
  "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U tidemark -d postgres -q -c "CREATE DATABASE tidemark"

start() {  # name, command...
  local name="$1"; shift
  "$@" >"$state/logs/$name.log" 2>&1 &
  echo "$! $name" >> "$state/pids"
}

rm -f "$state/bootstrap"
start devbroker "$bin/tools/devbroker/devbroker" --bootstrap_file="$state/bootstrap"
for _ in $(seq 50); do [ -s "$state/bootstrap" ] && break; sleep 0.1; done
if [ ! -s "$state/bootstrap" ]; then
  echo "devbroker did not start (.local/logs/devbroker.log)" >&2
  false
fi
TIDEMARK_KAFKA_BROKERS="$(cat "$state/bootstrap")"
export TIDEMARK_KAFKA_BROKERS

# TLS and tokens: a local CA and server certificate, and two tokens whose SHA-256 only is in
# the credentials file the services read (kept across runs).
certs="$state/certs"
deploy/certs.sh "$certs" >/dev/null
if [ ! -f "$state/credentials" ]; then
  (umask 077
   "$bin/tools/cli/tidemark" token --name=local-admin --scopes=read,write,explicit_version \
     > "$state/admin.grant"
   "$bin/tools/cli/tidemark" token --name=simulator --scopes=write > "$state/simulator.grant"
   head -n 1 "$state/admin.grant" > "$state/admin.token"
   head -n 1 "$state/simulator.grant" > "$state/simulator.token"
   tail -n 1 -q "$state/admin.grant" "$state/simulator.grant" > "$state/credentials"
   rm -f "$state/admin.grant" "$state/simulator.grant")
fi
api_security=(--tls_cert_file="$certs/server.pem" --tls_key_file="$certs/server-key.pem"
              --credentials_file="$state/credentials")
export TIDEMARK_TLS_CA_FILE="$certs/ca.pem"  # the CLI's and the simulator's trust

# The writer logs in as tidemark_writer (owns the database, not a superuser), query as
# tidemark_query (read-only): the roles deploy/postgres/init-roles.sh makes for compose, with
# passwords in .local/secrets.
pg_owner="$("$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U tidemark -d tidemark -qAt -c \
  "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'schema_migrations'")"
if [ -n "$pg_owner" ] && [ "$pg_owner" != tidemark_writer ]; then
  echo "the local store in $pgdata was made by a superuser writer; remove it (development data)" \
    "or reassign its tables to tidemark_writer (docs/security.md)" >&2
  false
fi
for role in writer query; do
  [ -s "$state/secrets/$role" ] || (umask 077; openssl rand -hex 24 > "$state/secrets/$role")
done
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=tidemark TIDEMARK_DB=tidemark \
  TIDEMARK_WRITER_PASSWORD_FILE="$state/secrets/writer" \
  TIDEMARK_QUERY_PASSWORD_FILE="$state/secrets/query" deploy/postgres/init-roles.sh

writer_dsn="host=127.0.0.1 port=$pg_port user=tidemark_writer dbname=tidemark"
# Metrics on fixed loopback ports (deploy/local/prometheus.yml scrapes them).
export TIDEMARK_METRICS_HOST=127.0.0.1
TIDEMARK_PG_DSN="$writer_dsn" TIDEMARK_PG_PASSWORD_FILE="$state/secrets/writer" \
  start timestream-writer "$bin/services/timestream-writer/timestream-writer" --metrics_port=9121

start aggregator "$bin/services/aggregator/aggregator" --windows="${TIDEMARK_LOCAL_WINDOWS:-1m,5m}" \
  --metrics_port=9122
# Short files locally, so the lake fills while you watch; production keeps Firehose-like 5 min.
start archive "$bin/services/archive/archive" --lake="$state/lake" --batch_max_age=10s \
  --metrics_port=9123
# Replicas on private ports; clients use nginx on $ingest_port and $query_port.
ingest_servers="" query_servers=""
for i in $(seq 0 $((ingest_replicas - 1))); do
  start "ingest-$i" "$bin/services/ingest/ingest" --listen="127.0.0.1:$((50061 + i))" \
    --metrics_port=$((9101 + i)) "${api_security[@]}"
  ingest_servers="$ingest_servers server 127.0.0.1:$((50061 + i)) max_fails=1 fail_timeout=5s;"
done
for i in $(seq 0 $((query_replicas - 1))); do
  TIDEMARK_PG_DSN="host=127.0.0.1 port=$pg_port user=tidemark_query dbname=tidemark" \
    TIDEMARK_PG_PASSWORD_FILE="$state/secrets/query" start "query-$i" "$bin/services/query/query" --listen="127.0.0.1:$((50071 + i))" \
    --metrics_port=$((9111 + i)) "${api_security[@]}"
  query_servers="$query_servers server 127.0.0.1:$((50071 + i)) max_fails=1 fail_timeout=5s;"
done
nginx_state="$state/nginx"
mkdir -p "$nginx_state"
chmod 0777 "$nginx_state"  # nginx's workers run as another user when started as root
sed -e "s|\${NGINX_STATE}|$nginx_state|g" -e "s|\${NGINX_ERROR_LOG}|$state/logs/nginx.log|g" \
    -e "s|\${INGEST_LISTEN}|127.0.0.1:$ingest_port|g" -e "s|\${QUERY_LISTEN}|127.0.0.1:$query_port|g" \
    -e "s|\${INGEST_SERVERS}|$ingest_servers|g" -e "s|\${QUERY_SERVERS}|$query_servers|g" \
    -e "s|\${LISTEN_TLS}|ssl|g" -e "s|\${UPSTREAM_SCHEME}|grpcs|g" \
    -e "s|\${SERVER_TLS}|ssl_certificate \"$certs/server.pem\"; ssl_certificate_key \"$certs/server-key.pem\";|g" \
    -e "s|\${UPSTREAM_TLS}|grpc_ssl_trusted_certificate \"$certs/ca.pem\"; grpc_ssl_verify on; grpc_ssl_name localhost; grpc_ssl_session_reuse on;|g" \
    deploy/nginx/tidemark-grpc.conf.template > "$nginx_state/nginx.conf"
# Debian installs nginx in /usr/sbin, which a user's PATH may lack.
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
start nginx "$nginx_bin" -e "$state/logs/nginx.log" -c "$nginx_state/nginx.conf" -g "daemon off;"
# Up means every service answers SERVING on its own /health (one that lost its port to
# another program exits at once) and ingest answers through nginx.
health_ports="9121 9122 9123"
for i in $(seq 0 $((ingest_replicas - 1))); do health_ports="$health_ports $((9101 + i))"; done
for i in $(seq 0 $((query_replicas - 1))); do health_ports="$health_ports $((9111 + i))"; done
all_alive() {
  local pid name
  while read -r pid name; do
    [ "$pid" = "pg_ctl" ] || kill -0 "$pid" 2>/dev/null || return 1
  done < "$state/pids"
}
all_serving() {
  local port
  for port in $health_ports; do
    "$bin/tools/cli/tidemark" health "http://127.0.0.1:$port/health" --timeout=1s \
      >/dev/null 2>&1 || return 1
  done
  "$bin/tools/cli/tidemark" health "127.0.0.1:$ingest_port" --tls_ca_file="$certs/ca.pem" \
    --service=tidemark.v1.IngestService --timeout=1s >/dev/null 2>&1
}
echo "waiting for the services to serve..."
serving=false
for _ in $(seq 60); do
  all_alive || break
  if all_serving; then serving=true; break; fi
  sleep 0.5
done
while read -r pid name; do
  [ "$pid" = "pg_ctl" ] && continue
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$name exited during start-up: $(tail -n 2 "$state/logs/$name.log" 2>/dev/null)" >&2
  fi
done < "$state/pids"
all_alive
if [ "$serving" != true ]; then
  echo "the services did not all serve within 30 s (their /health on ports $health_ports;" \
    "logs in .local/logs)" >&2
  false
fi
TIDEMARK_TOKEN_FILE="$state/simulator.token" start simulator "$bin/services/simulator/simulator" \
  --ingest="127.0.0.1:$ingest_port" --rate="$sim_rate" --duration="$sim_duration"

trap - ERR
cat <<TXT

Tidemark is running locally (state and logs in .local/):
  PostgreSQL         127.0.0.1:$pg_port  database tidemark (passwords in $state/secrets:
                     PGPASSFILE='$state/secrets/pgpass' psql -h 127.0.0.1 -p $pg_port -U tidemark tidemark)
  devbroker (Kafka)  $TIDEMARK_KAFKA_BROKERS
  ingest (gRPC)      127.0.0.1:$ingest_port  (nginx -> $ingest_replicas replicas on 127.0.0.1:50061...)
  query (gRPC)       127.0.0.1:$query_port  (nginx -> $query_replicas replicas on 127.0.0.1:50071...)
  metrics (/metrics, /health on each)  ingest 127.0.0.1:9101..  query 127.0.0.1:9111..
                     timestream-writer :9121  aggregator :9122  archive :9123
  aggregator         ${TIDEMARK_LOCAL_WINDOWS:-1m,5m} windows, 2m allowed lateness -> tidemark.aggregates
  timestream-writer  raw points, aggregates and late-point repairs -> PostgreSQL
  archive            every raw event -> $state/lake/year=/month=/day=/hour=/*.jsonl.gz
  simulator          $sim_rate records/s for $sim_duration (.local/logs/simulator.log)

ingest and query speak TLS (CA .local/certs/ca.pem) and want a token; for the commands below:
  export TIDEMARK_TLS_CA_FILE='$certs/ca.pem' TIDEMARK_TOKEN_FILE='$state/admin.token'
New tokens: build/tools/cli/tidemark token --name=NAME --scopes=read|write|write:PREFIX
  (first line: the token; second: append it to '$state/credentials', re-read within a second)

Look at the data:
  build/tools/cli/tidemark series --query=127.0.0.1:$query_port --measure=temperature --limit=10
  build/tools/cli/tidemark points --query=127.0.0.1:$query_port --measure=speed --where=device_id=turbine-0001 --since=5m
  build/tools/cli/tidemark points --query=127.0.0.1:$query_port --measure=temperature --since=10m --format=csv

Window aggregates (once the first minute has closed), as the reference queries read them:
  PGPASSFILE='$state/secrets/pgpass' psql -h 127.0.0.1 -p $pg_port -U tidemark tidemark -c "SELECT time, measure_name, \"measure_value::double\" FROM narrow WHERE measure_name IN ('temperature', 'avg_temperature') AND device_id = '00000000-0000-4000-8000-000000000001' ORDER BY time DESC LIMIT 10"

Aggregates, rollups and live updates through the query API:
  build/tools/cli/tidemark aggregates --query=127.0.0.1:$query_port --measure=speed --window=1m --since=10m --real_time
  build/tools/cli/tidemark rollup --query=127.0.0.1:$query_port --measure=temperature --bucket=1h --since=1d --format=chart
  build/tools/cli/tidemark subscribe --query=127.0.0.1:$query_port --measure=speed --window=1m

The lake (every event under the hour of its own time):
  find '$state/lake' -name '*.jsonl.gz' | head; zcat "\$(find '$state/lake' -name '*.jsonl.gz' | head -1)" | head -3

Health (gRPC health protocol through nginx, or a consumer's /health):
  build/tools/cli/tidemark health 127.0.0.1:$ingest_port --service=tidemark.v1.IngestService
  build/tools/cli/tidemark health http://127.0.0.1:9121/health

Stop everything with: deploy/local/stop.sh
TXT
