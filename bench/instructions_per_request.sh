#!/usr/bin/env bash
# User-space instructions per proxied request under callgrind (repeatable to about 0.5%, whatever else
# the machine does): one worker, the test upstream on 127.0.0.1, a warm-up, then N keep-alive requests
# on one connection between callgrind_control -z and -d.
#   bash bench/instructions_per_request.sh [BREAKERBOX_BIN] [GET|POST] [N]
# Compare two builds by running it on each binary (e.g. a worktree of the base commit).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/breakerbox}
method=${2:-GET}
count=${3:-2000}
upstream_bin=build/breakerbox-test-upstream
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

"$upstream_bin" --listen 127.0.0.1:0 --name up --threads 1 >"$dir/up.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$dir/up.out" ] && break; sleep 0.1; done
upstream_port=$(awk '{print $2; exit}' "$dir/up.out")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/breakerbox.yaml" <<YAML
workers: 1
listeners: [{name: main, address: "127.0.0.1:$port"}]
admin: {enabled: false}
logging: {level: error}
upstreams:
  svc:
    endpoints: ["127.0.0.1:$upstream_port"]
    routes: {path_prefix: /}
YAML
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" --config "$dir/breakerbox.yaml" 2>"$dir/valgrind.err" &
vpid=$!
pids+=($vpid)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done

send() { # count
  python3 - "$port" "$method" "$1" <<'PY'
import socket, sys
port, method, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
body = b"x=1" if method == "POST" else b""
req = f"{method} /item HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
for _ in range(n):
    s.sendall(req)
    assert f.readline().startswith(b"HTTP/1.1 200")
    length = 0
    while (h := f.readline()) not in (b"\r\n", b""):
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    f.read(length)
PY
}
send 200
callgrind_control -z "$vpid" >/dev/null 2>&1
send "$count"
callgrind_control -d "$vpid" >/dev/null 2>&1
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out.1")
echo "$method: $((total / count)) instructions per request ($bin)"
[ -z "${KEEP:-}" ] || cp "$dir/cg.out.1" "$KEEP" # the profile, for callgrind_annotate
