#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs unit, integration and e2e tests.
# Integration and e2e tests start their own PostgreSQL clusters and development brokers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-test-servers.sh
scripts/build.sh
cd "${TIDEMARK_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 -j 2 "$@"
