#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs the whole test suite: unit tests and the
# integration tests that start the real binary against real upstreams on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 600
