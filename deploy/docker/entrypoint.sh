#!/bin/sh
# The image's entrypoint: `tidemark-entrypoint SERVICE [flags...]` runs a Tidemark executable;
# `tidemark-entrypoint healthcheck` probes the service this container runs (the image's
# HEALTHCHECK). Flags may also come from TIDEMARK_* environment variables.
set -eu
state=/tmp/tidemark-entrypoint.state

usage() {
  cat <<TXT
usage: tidemark-entrypoint SERVICE [flags...]
services: ingest aggregator timestream-writer archive query simulator devbroker
tools:    tidemark (the CLI: tidemark health ADDRESS, tidemark series ...)
          healthcheck (probes the service this container runs)
Each binary lists its flags and their TIDEMARK_* environment variables with --help.
TXT
}

healthcheck() {
  [ -f "$state" ] || { echo "no service started in this container" >&2; exit 1; }
  . "$state"
  # Docker reads 0 as healthy and 1 as unhealthy and reserves every other code; the probe's
  # own usage errors (exit 2, e.g. an unreadable TLS CA file) are unhealthy too.
  case "$service" in
    ingest)
      tidemark health --timeout=3s "127.0.0.1:$grpc_port" --service=tidemark.v1.IngestService ||
        exit 1 ;;
    query)
      tidemark health --timeout=3s "127.0.0.1:$grpc_port" --service=tidemark.v1.QueryService ||
        exit 1 ;;
    aggregator|archive|timestream-writer)
      tidemark health --timeout=3s "http://127.0.0.1:$metrics_port/health" || exit 1 ;;
    *)
      # The simulator and the development broker are jobs and tools: running is healthy.
      ;;
  esac
  exit 0
}

[ $# -gt 0 ] || { usage; exit 2; }
service="$1"
case "$service" in
  healthcheck) healthcheck ;;
  -h|--help|help) usage; exit 0 ;;
  ingest|aggregator|timestream-writer|archive|query|simulator|devbroker|tidemark) shift ;;
  *) echo "tidemark-entrypoint: unknown service \"$service\"" >&2; usage >&2; exit 2 ;;
esac

# Where the service will listen: the last --listen/--metrics_port flag, else the environment,
# else the service's default. The health check reads it back.
case "$service" in
  ingest) listen="${TIDEMARK_LISTEN:-0.0.0.0:50051}" ;;
  query) listen="${TIDEMARK_LISTEN:-0.0.0.0:50052}" ;;
  *) listen="" ;;
esac
metrics_port="${TIDEMARK_METRICS_PORT:-9100}"
for arg in "$@"; do
  case "$arg" in
    --listen=*) listen="${arg#--listen=}" ;;
    --metrics_port=*) metrics_port="${arg#--metrics_port=}" ;;
  esac
done
if [ "$service" != tidemark ]; then
  printf 'service=%s\ngrpc_port=%s\nmetrics_port=%s\n' "$service" "${listen##*:}" \
    "$metrics_port" > "$state"
fi
exec "/usr/local/bin/$service" "$@"
