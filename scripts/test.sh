#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs unit, integration and e2e tests,
# then the sanitizer stage and the bounded fuzz stage. Integration and e2e tests start their
# own PostgreSQL clusters and development brokers.
#
#   scripts/test.sh                  every stage (what CI runs)
#   scripts/test.sh --sanitize [..]  only the sanitizer stage: clang with AddressSanitizer and
#                                    UndefinedBehaviorSanitizer in build-sanitize/, the unit and
#                                    integration tests (extra arguments go to ctest)
#   scripts/test.sh --fuzz           only the fuzz stage (scripts/fuzz.sh on build-sanitize/)
#   scripts/test.sh <ctest args>     only the normal build's tests, filtered by ctest's arguments
#
# TIDEMARK_FUZZ_SECONDS sets the fuzzing time per target (default 20 s; scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(pwd)
sanitize_dir=build-sanitize

normal_stage() {
  scripts/build.sh
  (cd "${TIDEMARK_BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 -j 2 "$@")
}

# One clang build serves both sanitizer runs and fuzzing: every target has ASan and UBSan,
# and libFuzzer's coverage instrumentation, which the tests run with unaffected. Only what
# the unit and integration tests need is built, not the services.
configure_sanitize() {
  [ -f "$sanitize_dir/build.ninja" ] && return
  cmake -S . -B "$sanitize_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    -DCMAKE_CXX_COMPILER=clang++ -DTIDEMARK_FUZZ=ON -DTIDEMARK_WERROR=OFF
}

sanitize_stage() {
  configure_sanitize
  local label='unit|integration' tests=() t
  # The test executables of those labels, as ctest knows them; tests that run a program not
  # built here (docker-compose) have nothing to sanitize and ran in the normal stage.
  while read -r t; do
    ninja -C "$sanitize_dir" -t query "$t" > /dev/null 2>&1 && tests+=("$t")
  done < <(cd "$sanitize_dir" && ctest -N -L "$label" | sed -n 's/^ *Test *#[0-9]*: *//p')
  echo "sanitize: building ${tests[*]}"
  cmake --build "$sanitize_dir" -j "$(nproc)" --target "${tests[@]}"
  # halt_on_error: the first report fails the test; leaks are reported at exit, except those
  # inside libraries listed in scripts/lsan.supp.
  local only
  only="^($(IFS='|'; echo "${tests[*]}"))\$"
  (cd "$sanitize_dir" &&
    ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1 \
    LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure --timeout 900 -j 2 -L "$label" -R "$only" "$@")
}

fuzz_stage() {
  configure_sanitize
  TIDEMARK_FUZZ_BUILD_DIR="$sanitize_dir" scripts/fuzz.sh
}

scripts/install-deps.sh
scripts/install-test-servers.sh
case "${1:-}" in
  --sanitize)
    shift
    sanitize_stage "$@"
    ;;
  --fuzz)
    fuzz_stage
    ;;
  "")
    normal_stage
    sanitize_stage
    fuzz_stage
    ;;
  *)
    normal_stage "$@"
    ;;
esac
