#!/usr/bin/env bash
# Installs the servers that only tests use, from the npm registry into .local/npm (gitignored):
# s3rver, an S3-protocol server that checks SigV4 signatures, for the S3 client's integration
# test; @duckdb/node-api, for reading what the archive writes. Installs Debian's nodejs and npm
# first when node or npm is missing. Does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that every machine tests against the same servers.
packages=(
  s3rver@3.7.1
  @duckdb/node-api@1.5.6-r.1
)
prefix=.local/npm

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing: nodejs npm"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi

missing=()
for spec in "${packages[@]}"; do
  name="${spec%@*}"
  version="${spec##*@}"
  manifest="$prefix/node_modules/$name/package.json"
  installed="$( [ -f "$manifest" ] && node -p "require('./$manifest').version" 2>/dev/null || true)"
  [ "$installed" = "$version" ] || missing+=("$spec")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing into $prefix: ${missing[*]}"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "${missing[@]}"
