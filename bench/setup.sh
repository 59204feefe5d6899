#!/usr/bin/env bash
# Installs the benchmark's tools from Debian (wrk, haproxy, nginx) and redis-server (the cluster-scope
# tests and bench start their own, on a Unix socket) without starting their services:
# a temporary policy-rc.d refuses service starts during installation. Idempotent.
set -euo pipefail
need=()
for p in wrk haproxy nginx-light util-linux redis-server; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created=1
fi
trap '[ "$created" = 1 ] && $SUDO rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
