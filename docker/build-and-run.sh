#!/usr/bin/env bash
# Builds the breakerbox image without a Docker daemon (podman, through ../shared/tools/oci-build.sh),
# runs it beside the controllable upstream (also as an image), checks /live, proxies one request through
# it, stops it with SIGTERM (a drain), and reports the image size and build time. Host networking,
# 127.0.0.1 only. scripts/test.sh runs it (so CI does); the image's build stage compiles only.
set -euo pipefail
cd "$(dirname "$0")/.."
oci=${OCI_BUILD:-$(cd .. && pwd)/shared/tools/oci-build.sh}
export BUILDAH_FORMAT=docker # keeps HEALTHCHECK (the OCI format has no such field)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start=$(date +%s)
"$oci" build . breakerbox:dev
"$oci" podman build --pull=never --target test-upstream -t breakerbox-test-upstream:dev . >/dev/null
built=$(date +%s)

up_port=$(free_port)
data_port=$(free_port)
admin_port=$(free_port)
suffix=$$
cleanup() {
  "$oci" podman rm -f "bb-$suffix" "bb-upstream-$suffix" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$oci" podman run -d --name "bb-upstream-$suffix" breakerbox-test-upstream:dev \
  --listen "127.0.0.1:$up_port" --name container-upstream >/dev/null
"$oci" podman run -d --name "bb-$suffix" \
  -e BACKEND_ADDRESS="127.0.0.1:$up_port" -e BREAKERBOX_LISTEN="127.0.0.1:$data_port" \
  -e BREAKERBOX_ADMIN_ADDRESS="127.0.0.1:$admin_port" breakerbox:dev >/dev/null

for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$admin_port/live" >/dev/null && break
  sleep 0.2
done
echo "live:    $(curl -fs "http://127.0.0.1:$admin_port/live")"
echo "ready:   $(curl -fs "http://127.0.0.1:$admin_port/ready")"
body=$(curl -fs "http://127.0.0.1:$data_port/backend/hello")
echo "proxied: $body"
echo "$body" | grep -q '"server":"container-upstream"' || { echo "FAIL: the request did not reach the upstream"; exit 1; }
echo "$body" | grep -q '"target":"/hello"' || { echo "FAIL: prefix not stripped"; exit 1; }
"$oci" podman exec "bb-$suffix" id -u | grep -qx 10001 || { echo "FAIL: not running as the non-root user"; exit 1; }

"$oci" podman stop -t 20 "bb-$suffix" >/dev/null
code=$("$oci" podman inspect "bb-$suffix" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { echo "FAIL: exit code $code after SIGTERM"; "$oci" podman logs "bb-$suffix" | tail -5; exit 1; }
echo "stopped: exit code 0 after SIGTERM (drained)"

size=$("$oci" podman image inspect breakerbox:dev --format '{{.Size}}')
echo "image breakerbox:dev: $((size / 1024 / 1024)) MiB; build $((built - start)) s"
