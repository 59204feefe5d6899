#!/usr/bin/env bash
# Installs exactly the Debian 12 packages breakerbox needs to build, test and demo, and (through
# bench/setup.sh) HAProxy and nginx for the benchmark and its smoke test, without starting their services.
#   bash scripts/setup.sh --build-only   # only what compiling needs (the container image's build stage)
# Idempotent: packages already present are skipped by apt; runs `apt-get update` first.
set -euo pipefail

# What compiling breakerbox and its test upstream needs (all the container image's build stage installs).
build_packages=(
  g++ cmake ninja-build make pkg-config ca-certificates
  libboost1.81-dev            # Beast + Asio, headers only (NOT the 1.74 default)
  nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev libcli11-dev
  libmimalloc-dev              # the proxy's allocator (CMakeLists.txt says why)
  libssl-dev                   # TLS towards upstreams (OpenSSL 3.0 through boost::asio::ssl)
  libsqlite3-dev               # the queue fallback's durable store
  libhiredis-dev               # circuit state shared across replicas (cluster scope), Redis client 0.14
)
# What the tests, the demo and the benchmarks need on top.
test_packages=(
  curl python3 python3-yaml
  python3-matplotlib           # the cascade bench's plot (bench/cascade.py, bench.cascade_smoke)
  libgtest-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev  # libFuzzer targets (tests/fuzz)
  wrk                          # the soak test's load generator
  openssl                      # test certificates, made at run time (tests/integration/tls_pki.py)
  chromium                     # the dashboard's browser test (tests/browser, driven by playwright-core)
  faketime                     # a replica with a skewed clock (tests/integration/test_cluster.py)
)
build_only=0
[ "${1:-}" = --build-only ] && build_only=1
packages=("${build_packages[@]}")
[ "$build_only" = 1 ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { [ "$updated" = 1 ] || { $SUDO apt-get update -qq; updated=1; }; }

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
else
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "$build_only" = 1 ] && exit 0

# Prometheus' own promtool and server, for the metrics and alert-rule tests. The Debian package is
# downloaded and unpacked into .tools/ rather than installed, so that no Prometheus service starts.
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
if [ ! -x "$tools/prometheus/usr/bin/promtool" ]; then
  apt_update
  mkdir -p "$tools/debs"
  (cd "$tools/debs" && apt-get download prometheus >/dev/null)
  dpkg-deb -x "$tools"/debs/prometheus_*.deb "$tools/prometheus"
  rm -rf "$tools/debs"
  echo "setup: promtool unpacked to $tools/prometheus/usr/bin"
fi

# The benchmark's comparison proxies (the bench.smoke test runs them) and redis-server (the cluster
# tests): their services must not start.
bash "$root/bench/setup.sh"


# The browser test's driver: playwright-core from the npm registry (version pinned in
# tests/browser/package-lock.json), run by Node.js — Debian's nodejs and npm unless a Node.js with npm
# is already there. It drives Debian's chromium (/usr/bin/chromium); it downloads no browser.
if ! command -v npm >/dev/null 2>&1; then
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
# `npm ls` fails when the package is missing or not the pinned version.
if ! (cd "$root/tests/browser" && npm ls playwright-core >/dev/null 2>&1); then
  # npm trusts its own CA list unless told otherwise: the system's bundle (ca-certificates, above) also
  # holds any CA the machine's administrator added, e.g. for an egress proxy that inspects TLS.
  cafile=()
  [ -s /etc/ssl/certs/ca-certificates.crt ] && cafile=(--cafile /etc/ssl/certs/ca-certificates.crt)
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error "${cafile[@]}")
fi
