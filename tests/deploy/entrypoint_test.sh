#!/bin/sh
# The image's entrypoint as Docker's HEALTHCHECK runs it: 0 healthy, 1 unhealthy, never
# another code (Docker reserves them), for every result of the probe; the recorded service is
# left as it was; a job (the simulator) is healthy while it runs.
# usage: entrypoint_test.sh deploy/docker/entrypoint.sh
set -u
entrypoint="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
# A stand-in probe that exits with $FAKE_RC.
printf '#!/bin/sh\nexit ${FAKE_RC:-0}\n' > "$work/bin/tidemark"
chmod +x "$work/bin/tidemark"
sed "s|^state=.*|state=$work/state|" "$entrypoint" > "$work/entrypoint.sh"
failures=0
expect() {  # description expected actual
  if [ "$2" != "$3" ]; then echo "entrypoint: $1: exit $3, expected $2" >&2; failures=$((failures + 1)); fi
}
for service in ingest query timestream-writer; do
  printf 'service=%s\ngrpc_port=50051\nmetrics_port=9100\n' "$service" > "$work/state"
  for rc in 0 1 2 14; do
    want=1
    [ "$rc" = 0 ] && want=0
    PATH="$work/bin:$PATH" FAKE_RC=$rc sh "$work/entrypoint.sh" healthcheck
    expect "$service, probe exit $rc" "$want" "$?"
  done
  grep -q "^service=$service$" "$work/state" || { echo "entrypoint: state overwritten" >&2; failures=$((failures + 1)); }
done
printf 'service=simulator\ngrpc_port=\nmetrics_port=9100\n' > "$work/state"
PATH="$work/bin:$PATH" FAKE_RC=1 sh "$work/entrypoint.sh" healthcheck
expect "simulator" 0 "$?"
rm -f "$work/state"
sh "$work/entrypoint.sh" healthcheck 2>/dev/null
expect "no service started" 1 "$?"
[ "$failures" = 0 ] && echo "entrypoint health check: every case as Docker expects"
exit "$failures"
