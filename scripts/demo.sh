#!/usr/bin/env bash
# Installs what is missing, builds, and starts breakerbox on config/example.yaml together with the
# three demo upstreams that config points at (127.0.0.1:7001-7003). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target breakerbox breakerbox-test-upstream

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
./build/breakerbox-test-upstream --listen 127.0.0.1:7001 --name payments-1 >/dev/null & pids+=($!)
./build/breakerbox-test-upstream --listen 127.0.0.1:7002 --name catalog-1 >/dev/null & pids+=($!)
./build/breakerbox-test-upstream --listen 127.0.0.1:7003 --name catalog-2 >/dev/null & pids+=($!)

cat <<'MSG'

breakerbox is starting on config/example.yaml. In another terminal:

  curl -i http://127.0.0.1:8080/payments/charge             # path prefix, stripped
  curl -i -x http://127.0.0.1:8080 http://catalog/items      # HTTP_PROXY style (absolute-form)
  curl -i http://127.0.0.1:9001/refunds                       # dedicated listener for payments
  curl -i 'http://127.0.0.1:8080/payments/x?status=503'       # the demo upstream answers what you ask;
                                                              # three of these (each retried once) open
                                                              # the payments circuit: for the next 10 s
                                                              # its static fallback answers at once
  curl http://127.0.0.1:9901/health/circuits                  # the circuits, their state and why
  # open http://127.0.0.1:9901/dashboard in a browser         # the same, live

  curl -X POST 'http://127.0.0.1:7003/__config?status=500'    # one catalog endpoint turns bad; then
  for i in $(seq 12); do curl -so /dev/null http://127.0.0.1:8080/catalog/x; done
  curl http://127.0.0.1:9901/health/circuits/catalog          # 127.0.0.1:7003 ejected (5 failures in a
                                                              # row), the catalog circuit still closed
  curl -i -x http://127.0.0.1:8080 http://example.com/        # never an open proxy: 404

Ctrl-C stops breakerbox and the demo upstreams.
MSG
./build/breakerbox --config config/example.yaml & pids+=($!)
wait "${pids[-1]}"
