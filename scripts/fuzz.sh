#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer, UndefinedBehaviorSanitizer)
# and runs each from its committed seed corpus (fuzz/corpus/<target>/) for a bounded time.
# Fails on any crash, sanitizer report, leak, timeout or violated property, printing the
# report and the command that reproduces it.
#
#   scripts/fuzz.sh [target ...]          all targets when none is named
#
# TIDEMARK_FUZZ_SECONDS   seconds of fuzzing per target (default 20)
# TIDEMARK_FUZZ_BUILD_DIR build directory (default build-fuzz; scripts/test.sh passes its
#                         sanitizer build, which has the targets too)
# Inputs found along the way stay in <build dir>/fuzz-runs/<target>/corpus; the committed
# corpus is only read (add an input to it by hand when it is worth keeping).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build_dir=${TIDEMARK_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${TIDEMARK_FUZZ_SECONDS:-20}

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_*.cc; do targets+=("$(basename "$f" .cc)"); done
fi

if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    -DCMAKE_CXX_COMPILER=clang++ -DTIDEMARK_FUZZ=ON -DTIDEMARK_WERROR=OFF
fi
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=()
for t in "${targets[@]}"; do
  seeds="$root/fuzz/corpus/$t"
  if [ ! -d "$seeds" ]; then
    echo "fuzz: $t has no seed corpus in fuzz/corpus/$t" >&2
    failed+=("$t")
    continue
  fi
  work="$root/$build_dir/fuzz-runs/$t"
  mkdir -p "$work/corpus"
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*
  log="$work/fuzz.log"
  start=$(date +%s)
  # -timeout: one input taking this long is a finding too (a loop that a record can stall).
  if (cd "$work" && "$root/$build_dir/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" \
        corpus "$seeds") > "$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz: $t ok: ${runs:-?} inputs in $(( $(date +%s) - start ))s, ${cov:-cov: ?}"
  else
    echo "fuzz: $t FAILED after $(( $(date +%s) - start ))s; its report:" >&2
    grep -v '^#[0-9]' "$log" | tail -60 >&2
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$a" ] && echo "fuzz: reproduce with: $build_dir/fuzz/$t $a" >&2
    done
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a finding"
