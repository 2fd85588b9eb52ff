#!/usr/bin/env bash
# The container image, tried as a user would: builds deploy/Dockerfile with podman from this
# checkout as it is (a build/ and a .local/ are made if missing, to prove they neither break
# nor enter the image), then runs every Tidemark service from the image on the host network
# against a private PostgreSQL and the development broker (also from the image), and checks
# each service's HEALTHCHECK, one write through ingest and one query that reads it back.
# Needs podman and a debian:bookworm base image (/work/shared/podman-setup.sh or the like, as
# root) and Debian's PostgreSQL. Not part of scripts/test.sh: the image build compiles the
# services again in Release without ccache (measured on a 2-core machine: 14-17 minutes for the
# build, under a minute for the checks), which does not fit beside the suite in CI's 30 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
image="${TIDEMARK_IMAGE:-localhost/tidemark:image-test}"
work="$(mktemp -d /tmp/tidemark-image-test.XXXXXX)"
chmod 0777 "$work"  # the services run as nobody and write the bootstrap file and the lake here
containers=()
made=()
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_pg=()
[ "$(id -u)" -ne 0 ] || as_pg=(runuser -u postgres --)

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    for c in "${containers[@]}"; do
      echo "--- logs of $c" >&2
      podman logs --tail 30 "$c" >&2 || true
    done
  fi
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  [ ! -f "$work/pg/PG_VERSION" ] || "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  for m in "${made[@]}"; do rm -rf "$m"; done
  rm -rf "$work"
  [ $rc -eq 0 ] && echo "image test passed" || echo "image test FAILED" >&2
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # seconds, description, command...
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timed out after ${seconds}s waiting for: $what" >&2
  return 1
}

# A checkout in use: a stale build tree (whose CMakeCache names another source directory)
# and local state, which .dockerignore must keep out of the build context.
for d in build .local; do
  if [ ! -e "$d" ]; then mkdir -p "$d"; made+=("$root/$d"); fi
done
if [ ! -e build/CMakeCache.txt ]; then
  echo "CMAKE_HOME_DIRECTORY:INTERNAL=/somewhere/else" > build/CMakeCache.txt
  made+=("$root/build/CMakeCache.txt")
fi
marker=".local/image-test-marker-$$"
echo "must not be in the image" > "$marker"
made+=("$root/$marker")

echo "building $image"
start=$(date +%s)
podman build --format docker -f deploy/Dockerfile -t "$image" . >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" >&2; exit 1; }
echo "built in $(( $(date +%s) - start ))s; $(podman image inspect "$image" --format '{{.Size}}') bytes"
# Nothing of the checkout beyond the binaries is in the runtime image.
if podman run --rm --entrypoint /bin/sh "$image" -c 'test -e /src || ls / | grep -q "^build"'; then
  echo "the runtime image holds sources or a build tree" >&2; exit 1
fi
podman image inspect "$image" --format '{{json .Config.Healthcheck}}' | grep -q healthcheck ||
  { echo "the image has no HEALTHCHECK" >&2; exit 1; }
podman run --rm "$image" ingest --help | grep -q TIDEMARK_LISTEN

run() {  # name, podman arguments... (service and flags last)
  local name="tidemark-image-test-$$-$1"; shift
  # Without systemd podman cannot schedule the HEALTHCHECK itself (and says so on stderr);
  # the test runs it with `podman healthcheck run` instead.
  podman run -d --name "$name" --network host -v "$work:/state" "$@" \
    2> >(grep -v "systemd connection" >&2) >/dev/null
  containers+=("$name")
}
healthy() { podman healthcheck run "tidemark-image-test-$$-$1"; }

# PostgreSQL from Debian's packages, private to this test.
pg_port="$(free_port)"
mkdir -p "$work/pg" && chmod 0700 "$work/pg"
[ ${#as_pg[@]} -eq 0 ] || chown postgres:postgres "$work/pg"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -A trust -U tidemark -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U tidemark -d postgres -q -c "CREATE DATABASE tidemark"
dsn="host=127.0.0.1 port=$pg_port user=tidemark dbname=tidemark"

run devbroker "$image" devbroker --bootstrap_file=/state/bootstrap
wait_for 30 "the development broker" test -s "$work/bootstrap"
brokers="$(cat "$work/bootstrap")"
# The image checks its services, not authentication (security_e2e_test does): an open API.
env=(-e "TIDEMARK_KAFKA_BROKERS=$brokers" -e TIDEMARK_METRICS_HOST=127.0.0.1
     -e TIDEMARK_ALLOW_UNAUTHENTICATED=true)

run timestream-writer "${env[@]}" -e "TIDEMARK_PG_DSN=$dsn" \
  -e "TIDEMARK_METRICS_PORT=$(free_port)" "$image" timestream-writer
schema_ready() {
  "$pg_bin/psql" "$dsn" -qAt -c "SELECT 1 FROM pg_roles WHERE rolname = 'tidemark_reader'" | grep -q 1
}
wait_for 60 "the writer's schema" schema_ready
"$pg_bin/psql" "$dsn" -q -c "CREATE ROLE tidemark_query LOGIN IN ROLE tidemark_reader"
run aggregator "${env[@]}" -e "TIDEMARK_METRICS_PORT=$(free_port)" "$image" aggregator --windows=1m
run archive "${env[@]}" -e "TIDEMARK_METRICS_PORT=$(free_port)" "$image" archive --lake=/state/lake
ingest_port="$(free_port)" query_port="$(free_port)"
run ingest "${env[@]}" -e "TIDEMARK_METRICS_PORT=$(free_port)" "$image" ingest \
  --listen="127.0.0.1:$ingest_port"
run query "${env[@]}" -e "TIDEMARK_METRICS_PORT=$(free_port)" \
  -e "TIDEMARK_PG_DSN=host=127.0.0.1 port=$pg_port user=tidemark_query dbname=tidemark" \
  "$image" query --listen="127.0.0.1:$query_port"

for s in timestream-writer aggregator archive ingest query; do
  wait_for 60 "$s healthy (the image's HEALTHCHECK)" healthy "$s"
  echo "$s: healthy"
done

# One write through ingest (the simulator from the image), and the points read back.
podman run --rm --network host "$image" simulator --ingest="127.0.0.1:$ingest_port" \
  --devices=5 --max_records=20 --batch_size=20 --duration=60s --percent_late=0 \
  --percent_clock_ahead=0 > "$work/simulator.out"
grep -q '"accepted":20' "$work/simulator.out" || { cat "$work/simulator.out" >&2; exit 1; }
points="$(grep -o '"points_accepted":[0-9]*' "$work/simulator.out" | cut -d: -f2)"
echo "ingest: 20 records ($points points) written and acknowledged"
query_rows() {  # the CSV has a header line, then one line per point
  podman run --rm --network host "$image" tidemark points --query="127.0.0.1:$query_port" \
    --since=1h --format=csv --limit=0 > "$work/points.csv" &&
    [ "$(( $(grep -c . "$work/points.csv") - 1 ))" -eq "$points" ]
}
wait_for 60 "the $points points readable through query" query_rows
echo "query: $points points read back"

# Health follows PostgreSQL: query reports NOT_SERVING while it is down.
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null
unhealthy() { ! healthy query; }
wait_for 30 "query unhealthy without PostgreSQL" unhealthy
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
wait_for 30 "query healthy again" healthy query
echo "query: NOT_SERVING without PostgreSQL, SERVING again after it returned"
