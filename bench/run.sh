#!/usr/bin/env bash
# One command: installs wrk/haproxy/nginx (services not started), builds breakerbox (Release), and
# prints one table comparing breakerbox with HAProxy and nginx. About 4 minutes; 127.0.0.1 only.
#   bash bench/run.sh [--seconds N] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
bash bench/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target breakerbox resilience_bench >/dev/null
exec timeout 900 python3 bench/bench.py "$@"
