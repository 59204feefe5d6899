#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite: unit tests and the integration tests
# that start the real binary against real upstreams on 127.0.0.1 — in the Release build (then the
# container image is built and checked end to end), again with AddressSanitizer+UBSan (clang, whose
# build also makes the libFuzzer targets, run for a bounded time each from the seed corpus in
# tests/fuzz), and with ThreadSanitizer (g++); sanitizer builds at -O1, no -g. Each
# stage's time is printed; docs/ci.md says what each costs and what the next addition may spend.
#   SANITIZERS=0 bash scripts/test.sh    # Release only (quicker, for local iteration)
#   FUZZ_SECONDS=300 bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
begin=$(date +%s)
bash scripts/setup.sh
jobs=$(nproc)

# Each stage's time, printed as it ends and summed up at the end (issue 31's table comes from here).
stage_start=$begin
stages=()
stage_done() { # name
  local now
  now=$(date +%s)
  stages+=("$1 $((now - stage_start))")
  echo "== $1: $((now - stage_start)) s"
  stage_start=$now
}

run_suite() { # build-dir, extra cmake args...
  local dir=$1
  shift
  echo "== $dir: build"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  stage_done "$dir build"
  echo "== $dir: test"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
  stage_done "$dir test"
}

# The container image: built from the Dockerfile and checked end to end (docker/build-and-run.sh: /live,
# a proxied request, the non-root user, a drain on SIGTERM), so that a change that breaks it cannot land.
#   IMAGE=0 bash scripts/test.sh   # skip it (local iteration)
check_image() {
  [ "${IMAGE:-1}" != 0 ] || { echo "== image: skipped (IMAGE=0)"; return 0; }
  local oci
  oci=${OCI_BUILD:-$(cd .. && pwd)/shared/tools/oci-build.sh}
  # Inside a container (the fresh-machine test runs this script in one), podman may be unable to nest:
  # only there, and only when a trivial container cannot run, is the check skipped, and loudly.
  if [ -f /run/.containerenv ] || [ -f /.dockerenv ]; then
    if ! "$oci" setup >/dev/null 2>&1 || ! "$oci" podman run --rm --pull=never docker.io/library/debian:bookworm true >/dev/null 2>&1; then
      echo "== image: SKIPPED: this script runs inside a container that cannot run nested containers"
      return 0
    fi
  fi
  echo "== image: build and check (docker/build-and-run.sh)"
  bash docker/build-and-run.sh
}

start=$(date +%s)
stage_done setup
run_suite build
check_image
stage_done image
if [ "${SANITIZERS:-1}" != 0 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  # The sanitizers watch breakerbox (its unit tests and the integration suites against the binary); the
  # controllable upstream is a test tool: both suites use the Release build's instead of compiling it again.
  upstream_bin=$(pwd)/build/breakerbox-test-upstream
  # One clang build serves AddressSanitizer+UBSan and the fuzzers (libFuzzer is clang's): the suites,
  # then the fuzz targets from the same objects. Then ThreadSanitizer (g++).
  CXX=clang++-14 run_suite build-asan -DBREAKERBOX_SANITIZE=address -DBREAKERBOX_FUZZ=ON -DBREAKERBOX_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DBREAKERBOX_TEST_UPSTREAM="$upstream_bin"
  for target in config_loader request_path; do
    seeds="tests/fuzz/corpus/${target%%_*}"
    [ "$target" = request_path ] && seeds=tests/fuzz/corpus/request
    work=$(mktemp -d)
    echo "== fuzz: $target for ${FUZZ_SECONDS:-30} s"
    build-asan/tests/fuzz/${target}_fuzz -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -print_final_stats=1 \
      "$work" "$seeds" 2>&1 | tail -n 4
    rm -rf "$work"
  done
  stage_done "fuzz run"
  run_suite build-tsan -DBREAKERBOX_SANITIZE=thread -DBREAKERBOX_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
    -DBREAKERBOX_TEST_UPSTREAM="$upstream_bin"
fi
echo "== stages (seconds):"
printf '   %s\n' "${stages[@]}"
echo "== all suites passed in $(( $(date +%s) - start )) s after set-up ($(( $(date +%s) - begin )) s in all)"
