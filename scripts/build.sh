#!/usr/bin/env bash
# Configures and builds Tidemark with Ninja (and ccache when present) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${TIDEMARK_BUILD_DIR:-build}"
[ -f "$build_dir/build.ninja" ] || cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build_dir" -j "$(nproc)"
