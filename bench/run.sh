#!/usr/bin/env bash
# Builds and runs every benchmark; figures are appended to build/bench/*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/bench/writer_bench
build/bench/ingest_bench
build/bench/aggregator_bench
build/bench/freshness_bench
build/bench/query_bench
build/bench/archive_bench
build/bench/pipeline_bench
