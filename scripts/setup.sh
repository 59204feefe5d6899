#!/usr/bin/env bash
# Installs exactly the Debian 12 packages breakerbox needs to build, test and demo.
# Idempotent: packages already present are skipped by apt; runs `apt-get update` first.
set -euo pipefail

packages=(
  g++ cmake ninja-build make pkg-config ca-certificates curl python3
  libboost1.81-dev            # Beast + Asio, headers only (NOT the 1.74 default)
  nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev libcli11-dev
  libgtest-dev libbenchmark-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
