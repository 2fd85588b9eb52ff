#!/usr/bin/env bash
# Installs what building, running and testing Tidemark needs, from Debian 12's packages.
# Does nothing when everything is already there. --build-only: just what compiling needs
# (the image's build stage).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librdkafka-dev libpqxx-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libcpp-httplib-dev libre2-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
if [ "${1:-}" != "--build-only" ]; then
  packages+=(
    # The local stack and the tests: PostgreSQL, nginx as the gRPC load balancer in front of
    # ingest and query replicas, promtool (prometheus) to check the scrape configuration and
    # every /metrics page, docker-compose to validate deploy/docker-compose.yml.
    postgresql postgresql-client
    nginx-light
    # clang: the sanitizer and fuzz builds (scripts/test.sh, scripts/fuzz.sh)
    clang libclang-rt-14-dev
    prometheus
    docker-compose
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
# Packaged daemons (nginx, prometheus) must not start system-wide on install: the local stack
# and the tests run their own instances on their own ports.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
