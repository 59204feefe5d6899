"""Streaming through each proxy (bench.py `--only streaming`): large bodies both ways and the latency a
proxy adds to server-sent events. Standard library only (the client is curl; the upstream is
breakerbox-test-upstream, which writes large bodies from one static buffer and counts uploads without
keeping them).

Targets, side by side in one run: the upstream directly (the ceiling), breakerbox (defaults:
`limits.stream_buffer` 64 KiB), breakerbox with `stream_buffer: 256KiB` (the memory-for-CPU trade-off),
HAProxy (`mode http`, default buffers), nginx with `proxy_buffering on` + `proxy_request_buffering on`
(its defaults: a large body goes through a temporary file) and nginx with both `off`. Placement as in
bench.py: each proxy alone on core 0 with one worker/thread; curl (or the SSE reader) and the upstream on
core 1. Repetitions interleaved (every target once per measurement, the order rotating each repetition),
medians reported.

1. **Download**: `GET /x?bytes=N` (Content-Length N), read by `curl -o /dev/null`. MB/s (MB = 10^6
   bytes; curl's own transfer time), the proxy's CPU seconds (utime+stime of its processes from /proc
   over the transfer), **MB per proxy CPU-second**, and the proxy's memory during the transfer: VmRSS
   sampled every 20 ms (the peak) and VmHWM (its peak RSS, reset before each transfer through
   /proc/PID/clear_refs).
2. **Upload** of N bytes to `POST /__sink` (which counts the body and answers its size, checked), with
   Content-Length (`curl -T` of a sparse file of N bytes) and chunked (`dd if=/dev/zero | curl -T -`),
   same figures. `Expect: 100-continue` is turned off (curl would otherwise wait for the 100 first).
3. **SSE latency**: `GET /x?stream=sse&events=E&interval_ms=10`; event i carries `sent_us` (the
   upstream's CLOCK_REALTIME when it wrote it). A Python reader on core 1 timestamps each event's data
   line as it arrives; per event receive − sent; p50/p99 per target, and what the proxy adds: its p50
   (p99) minus the direct p50 (p99). nginx with buffering on holds events until its buffer fills or the
   stream ends: shown as measured, never counted as a failure.

Sizes: `--stream-mib` (default 1024; 64 for short runs, `--seconds 1`) and `--sse-events` (200; 20).
The run fails (bench.py exits 1) when a transfer is not complete and 200 — a short body, a wrong upload
count, a curl error — or when an SSE stream misses events (except nginx with buffering on); never on a
figure.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

B = None  # bench.py's module (set by run)
MiB = 1 << 20
SSE_INTERVAL_MS = 10
RSS_PERIOD = 0.02
RSS_GOAL_MIB = 32

BB = "breakerbox"
BB256 = "breakerbox (stream_buffer 256 KiB)"
HAPROXY = "haproxy"
HAPROXY_ND = "haproxy (option http-no-delay)"
NGINX_ON = "nginx (buffering on)"
NGINX_OFF = "nginx (buffering off)"
TARGETS = ("direct", BB, BB256, HAPROXY, NGINX_ON, NGINX_OFF)
# HAProxy corks a body it knows continues (MSG_MORE) unless told otherwise: for SSE, where that is the
# difference, also with `option http-no-delay`, as an SSE deployment of HAProxy would be configured.
SSE_TARGETS = TARGETS + (HAPROXY_ND,)
# Where nginx's SSE events may legitimately be held back (the point of the cell).
HOLDS_EVENTS = {NGINX_ON}

# The SSE reader, run pinned on the load core: one line of JSON with the status, the Content-Type and
# (seq, receive_us - sent_us) for every event, in the order received.
SSE_READER = r"""
import http.client, json, sys, time
port, path, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
conn.request("GET", path, headers={"Accept": "text/event-stream"})
r = conn.getresponse()
out = {"status": r.status, "content_type": r.getheader("Content-Type"), "events": [], "error": None}
try:
    while True:
        line = r.readline()
        now = time.time_ns() // 1000
        if not line:
            break
        if line.startswith(b"data: "):
            d = json.loads(line[6:])
            out["events"].append((d["seq"], now - d["sent_us"]))
except Exception as e:
    out["error"] = repr(e)
print(json.dumps(out))
"""


# ---- configurations ----------------------------------------------------------------------------------
def haproxy_config(port, upstream_port, no_delay=False):
    return f"""
global
  nbthread 1
  maxconn 1000
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  {"option http-no-delay" if no_delay else ""}
frontend fe
  bind 127.0.0.1:{port}
  {B.FORWARDING_HEADERS["haproxy"]}
  default_backend be
backend be
  server s1 127.0.0.1:{upstream_port} maxconn 1000
"""


def nginx_config(port, upstream_port, directory, buffering):
    onoff = "on" if buffering else "off"
    return f"""
daemon off; master_process on; worker_processes 1; pid {directory}/nginx-stream-{port}.pid;
error_log stderr crit;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {directory}/nginx-{port}-body;
  proxy_temp_path {directory}/nginx-{port}-proxy;
  upstream u {{ server 127.0.0.1:{upstream_port} max_fails=0; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    client_max_body_size 0;
    location / {{
      proxy_pass http://u;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {B.FORWARDING_HEADERS["nginx"]}
      proxy_buffering {onoff};
      proxy_request_buffering {onoff};
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      proxy_send_timeout 60s;
      proxy_next_upstream off;
    }}
  }}
}}
"""


def breakerbox_config(port, admin_port, upstream_port, stream_buffer=None):
    limits = f"limits: {{stream_buffer: {stream_buffer}}}\n" if stream_buffer else ""
    return f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:{port}"}}]
admin: {{address: "127.0.0.1:{admin_port}", token: bench}}
logging: {{level: error}}
{limits}upstreams:
  svc:
    endpoints: ["127.0.0.1:{upstream_port}"]
    routes: {{path_prefix: /}}
    connect_timeout: 1s
    request_timeout: 60s
    retries: {{max_attempts: 1}}
"""


def start_target(bench, name, upstream_port):
    port = B.free_port()
    if name in (HAPROXY, HAPROXY_ND):
        args = [B.HAPROXY, "-f", bench.write(f"haproxy-stream-{port}.cfg",
                                             haproxy_config(port, upstream_port, name == HAPROXY_ND))]
    elif name in (NGINX_ON, NGINX_OFF):
        conf = bench.write(f"nginx-stream-{port}.conf", nginx_config(port, upstream_port, bench.dir, name == NGINX_ON))
        args = [B.NGINX, "-c", conf, "-p", bench.dir]
    else:
        conf = bench.write(f"breakerbox-stream-{port}.yaml",
                           breakerbox_config(port, B.free_port(), upstream_port, "256KiB" if name == BB256 else None))
        args = [B.BREAKERBOX, "--config", conf]
    p = B.Proc(name, args, B.PROXY_CORE)
    bench.procs.append(p)
    B.wait_port(port, p)
    return port, p


# ---- measuring one transfer --------------------------------------------------------------------------
def status_kib(pids, field):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def reset_hwm(pids):
    """Resets the processes' VmHWM to their current RSS (Linux >= 4.0; root or the owner). False if not."""
    ok = bool(pids)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class RssSampler(threading.Thread):
    """The peak of the processes' summed VmRSS, sampled every RSS_PERIOD s from the load core."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.done = pids, 0, threading.Event()

    def run(self):
        try:
            os.sched_setaffinity(0, {int(B.LOAD_CORE)})  # this thread only: keep core 0 to the proxy
        except (OSError, AttributeError):
            pass
        while True:
            self.peak = max(self.peak, status_kib(self.pids, "VmRSS"))
            if self.done.wait(RSS_PERIOD):
                break

    def finish(self):
        self.done.set()
        self.join(timeout=5)
        self.peak = max(self.peak, status_kib(self.pids, "VmRSS"))
        return self.peak


def run_pinned(cmd, timeout, shell=False):
    """Runs a command (or a shell pipeline) on the load core in a session of its own, killed whole if it
    outlives `timeout`. Returns (exit status, stdout, stderr)."""
    args = ["taskset", "-c", B.LOAD_CORE] + (["sh", "-c", cmd] if shell else cmd)
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return None, out, err + f" [killed after {timeout} s]"
    finally:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    return p.returncode, out, err


def measure(proxy, cmd, timeout, shell=False):
    """One transfer: curl's exit status, output and stderr, with the proxy's CPU, memory and the cores'
    busy fractions around it."""
    pids = proxy.pids() if proxy else []
    hwm_reset = reset_hwm(pids)
    rss_before = status_kib(pids, "VmRSS")
    sampler = RssSampler(pids)
    sampler.start()
    cpu_before = B.cpu_ticks(pids)
    cores_before = B.core_ticks(B.PROXY_CORE), B.core_ticks(B.LOAD_CORE)
    rc, out, err = run_pinned(cmd, timeout, shell)
    cpu_after = B.cpu_ticks(pids)
    cores_after = B.core_ticks(B.PROXY_CORE), B.core_ticks(B.LOAD_CORE)
    peak = sampler.finish()
    hwm = status_kib(pids, "VmHWM")
    user, kernel = ((a - b) / B.CLK_TCK for a, b in zip(cpu_after, cpu_before))
    return {"rc": rc, "out": out, "err": err.strip(),
            "cpu_s": user + kernel if pids else None, "user_s": user if pids else None,
            "kernel_s": kernel if pids else None,
            "rss_before_mib": rss_before / 1024 if pids else None, "peak_rss_mib": peak / 1024 if pids else None,
            "hwm_mib": hwm / 1024 if pids and hwm_reset else None,
            "proxy_core_busy": B.busy_fraction(cores_before[0], cores_after[0]),
            "load_core_busy": B.busy_fraction(cores_before[1], cores_after[1])}


def curl_stats(out):
    """The last line of curl's -w: 'http_code bytes time_total'; the rest of stdout is the body."""
    body, _, last = out.rstrip("\n").rpartition("\n")
    code, size, total = last.split()
    return int(code), int(float(size)), float(total), body


def figures(r, nbytes, seconds):
    r["seconds"] = seconds
    r["mb_s"] = nbytes / 1e6 / seconds if seconds > 0 else None
    r["mb_per_cpu_s"] = nbytes / 1e6 / r["cpu_s"] if r["cpu_s"] else None
    return r


def download(bench, name, port, proxy, nbytes, timeout):
    cmd = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(timeout), "-w", "\n%{http_code} %{size_download} %{time_total}",
           f"http://127.0.0.1:{port}/x?bytes={nbytes}"]
    r = measure(proxy, cmd, timeout + 10)
    try:
        code, size, seconds, _ = curl_stats(r["out"])
    except ValueError:
        code, size, seconds = 0, 0, 0.0
    if r["rc"] != 0 or code != 200 or size != nbytes:
        bench.failures.append(f"streaming download, {name}: curl exit {r['rc']}, status {code}, {size} of {nbytes} "
                              f"bytes{', ' + r['err'] if r['err'] else ''}")
    return figures(r, nbytes, seconds)


def upload(bench, name, port, proxy, nbytes, timeout, chunked, zeros_file):
    url = f"http://127.0.0.1:{port}/__sink"
    w = "\n%{http_code} %{size_upload} %{time_total}"
    common = f"curl -sS --max-time {timeout} -X POST -H 'Expect:' -H 'Content-Type: application/octet-stream' -w '{w}'"
    if chunked:
        cmd = f"dd if=/dev/zero bs=1M count={nbytes // MiB} status=none | {common} -T - '{url}'"
    else:
        cmd = f"{common} -T '{zeros_file}' '{url}'"
    r = measure(proxy, cmd, timeout + 10, shell=True)
    try:
        code, size, seconds, body = curl_stats(r["out"])
        got = json.loads(body)["body_bytes"]
        framing = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    except (ValueError, KeyError, TypeError):
        code, size, seconds, got, framing = 0, 0, 0.0, None, {}
    if r["rc"] != 0 or code != 200 or got != nbytes:
        bench.failures.append(f"streaming upload ({'chunked' if chunked else 'Content-Length'}), {name}: curl exit "
                              f"{r['rc']}, status {code}, curl sent {size}, the upstream counted {got} of {nbytes} "
                              f"bytes{', ' + r['err'] if r['err'] else ''}; output: {r['out'][-300:]!r}")
    # How the body reached the upstream (a buffering proxy turns chunked into Content-Length).
    r["upstream_framing"] = ("chunked" if "chunked" in str(framing.get("transfer-encoding", "")).lower()
                             else "length" if "content-length" in framing else "?")
    return figures(r, nbytes, seconds)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def sse(bench, name, port, events):
    path = f"/x?stream=sse&events={events}&interval_ms={SSE_INTERVAL_MS}"
    timeout = events * SSE_INTERVAL_MS / 1000 + 30
    rc, out, err = run_pinned([sys.executable, "-c", SSE_READER, str(port), path, str(timeout)], timeout + 10)
    try:
        res = json.loads(out)
    except ValueError:
        res = {"status": 0, "content_type": None, "events": [], "error": f"exit {rc}: {err.strip()[-300:]}"}
    seqs = [s for s, _ in res["events"]]
    lat = [d for _, d in res["events"]]
    complete = seqs == list(range(events))
    if (res["status"] != 200 or not complete or res["error"]) and name not in HOLDS_EVENTS:
        bench.failures.append(f"streaming SSE, {name}: status {res['status']}, {len(seqs)} of {events} events "
                              f"{'in order' if complete else '(missing or out of order)'}, error {res['error']}")
    return {"received": len(seqs), "complete": complete, "status": res["status"],
            "p50_us": percentile(lat, 0.5), "p99_us": percentile(lat, 0.99), "max_us": max(lat) if lat else None}


# ---- the part --------------------------------------------------------------------------------------
def sizes(args):
    smoke = args.seconds <= 1
    mib = getattr(args, "stream_mib", None) or (64 if smoke else 1024)
    events = getattr(args, "sse_events", None) or (20 if smoke else 200)
    return mib * MiB, events


def run(bench, bench_module):
    global B
    B = bench_module
    nbytes, events = sizes(bench.args)
    # curl's limit per transfer: generous (a proxy at 20 MB/s still finishes), but bounded.
    timeout = int(60 + nbytes / 20e6)
    upstream_bin = os.path.join(B.BUILD, "breakerbox-test-upstream")
    upstream_port = B.free_port()
    upstream = B.Proc("stream-upstream", [upstream_bin, "--listen", f"127.0.0.1:{upstream_port}", "--name", "stream",
                                          "--threads", "1"], B.LOAD_CORE)
    bench.procs.append(upstream)
    zeros = os.path.join(bench.dir, "zeros.bin")
    results = {}
    started = []
    try:
        B.wait_port(upstream_port, upstream)
        with open(zeros, "wb") as f:  # sparse: reads as zeros without a GiB on disk
            f.truncate(nbytes)
        targets = {"direct": (upstream_port, None)}
        for name in SSE_TARGETS[1:]:
            targets[name] = start_target(bench, name, upstream_port)
            started.append(targets[name][1])
        cells = (("download", TARGETS, lambda n, port, p: download(bench, n, port, p, nbytes, timeout)),
                 ("upload, Content-Length", TARGETS,
                  lambda n, port, p: upload(bench, n, port, p, nbytes, timeout, False, zeros)),
                 ("upload, chunked", TARGETS, lambda n, port, p: upload(bench, n, port, p, nbytes, timeout, True, zeros)),
                 ("sse", SSE_TARGETS, lambda n, port, p: sse(bench, n, port, events)))
        # The sparse file read once, so that no upload is the one that brings it into the page cache.
        run_pinned(f"cat '{zeros}' > /dev/null", 120 + nbytes / 50e6, shell=True)
        for rep in range(bench.args.reps):
            for cell, names, fn in cells:
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    port, proxy = targets[name]
                    if proxy and proxy.popen.poll() is not None:
                        bench.failures.append(f"streaming {cell}, {name}: the proxy exited with status "
                                              f"{proxy.popen.returncode}: {proxy.popen.stderr.read().decode(errors='replace')[-500:]}")
                        continue
                    results.setdefault((cell, name), []).append(fn(name, port, proxy))
            print(f"  streaming repetition {rep + 1}/{bench.args.reps} done", file=sys.stderr)
    finally:
        for p in started:
            bench.stop(p)
        bench.stop(upstream)
        try:
            os.remove(zeros)
        except OSError:
            pass
    return {"bytes": nbytes, "events": events, "reps": bench.args.reps, "runs": results}


# ---- the report ----------------------------------------------------------------------------------------
def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def ratio(a, b, digits=2):
    return f"{a / b:.{digits}f}" if a is not None and b else "-"


def size_label(nbytes):
    return f"{nbytes // (1 << 30)} GiB" if nbytes % (1 << 30) == 0 else f"{nbytes // MiB} MiB"


def print_transfer(res, cell, title):
    runs = res["runs"]
    if not any(k[0] == cell for k in runs):
        return
    print(f"\n### {title} (median of {res['reps']})\n")
    upload_cell = cell.startswith("upload")
    print("| target | MB/s | proxy CPU s (user + kernel) | MB per proxy CPU-second | MB/CPU-s ÷ breakerbox's | MB/s ÷ breakerbox's | "
          "proxy RSS before MiB | peak RSS MiB (20 ms samples) | VmHWM MiB | proxy core busy | load core busy |"
          + (" upstream got |" if upload_cell else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if upload_cell else ""))
    med = {}
    for name in TARGETS:
        if (cell, name) not in runs:
            continue
        rs = runs[(cell, name)]
        med[name] = {k: median(rs, k) for k in ("mb_s", "cpu_s", "user_s", "kernel_s", "mb_per_cpu_s", "rss_before_mib",
                                                "peak_rss_mib", "hwm_mib", "proxy_core_busy", "load_core_busy")}
    bb = med.get(BB, {})
    for name, m in med.items():
        cpu = "-" if m["cpu_s"] is None else f"{m['cpu_s']:.2f} ({m['user_s']:.2f} + {m['kernel_s']:.2f})"
        framing = f" {runs[(cell, name)][0].get('upstream_framing', '?')} |" if upload_cell else ""
        print(f"| {name} | {fmt(m['mb_s'], 0)} | {cpu} | {fmt(m['mb_per_cpu_s'], 0)} | "
              f"{ratio(m['mb_per_cpu_s'], bb.get('mb_per_cpu_s'))} | {ratio(m['mb_s'], bb.get('mb_s'))} | "
              f"{fmt(m['rss_before_mib'])} | {fmt(m['peak_rss_mib'])} | {fmt(m['hwm_mib'])} | "
              f"{B.percent(m['proxy_core_busy'])} | {B.percent(m['load_core_busy'])} |{framing}")
    others = {n: m["mb_per_cpu_s"] for n, m in med.items() if n not in ("direct", BB, BB256) and m["mb_per_cpu_s"]}
    if bb.get("mb_per_cpu_s") and others:
        best = max(others, key=others.get)
        peak = max(v for v in (bb.get("peak_rss_mib"), bb.get("hwm_mib")) if v is not None)
        print(f"\nbreakerbox: {bb['mb_per_cpu_s']:,.0f} MB per CPU-second against the best other proxy's "
              f"{others[best]:,.0f} ({best}): {bb['mb_per_cpu_s'] / others[best]:.2f}× "
              f"({'at least' if bb['mb_per_cpu_s'] >= others[best] else 'below'} it); peak RSS {peak:.1f} MiB "
              f"({'under' if peak < RSS_GOAL_MIB else 'not under'} the {RSS_GOAL_MIB} MiB goal).")


def print_results(res):
    global B
    B = B or sys.modules.get("__main__")
    size = size_label(res["bytes"])
    print_transfer(res, "download", f"Streaming: {size} download (`GET /x?bytes={res['bytes']}`, Content-Length), "
                                    f"curl -o /dev/null")
    print_transfer(res, "upload, Content-Length", f"Streaming: {size} upload with Content-Length "
                                                  f"(`POST /__sink`, curl -T of a sparse file)")
    print_transfer(res, "upload, chunked", f"Streaming: {size} upload, chunked (`POST /__sink`, dd | curl -T -)")
    runs = res["runs"]
    print(f"\n### Streaming: SSE, {res['events']} events {SSE_INTERVAL_MS} ms apart; latency from the upstream's "
          f"write to the reader (median of {res['reps']})\n")
    print("| target | events received (worst rep) | p50 µs | p99 µs | max µs | added p50 µs vs direct | "
          "added p99 µs vs direct | added p50 ÷ breakerbox's |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    med = {n: {k: median(runs[("sse", n)], k) for k in ("p50_us", "p99_us", "max_us")}
           for n in SSE_TARGETS if ("sse", n) in runs}
    d = med.get("direct", {})
    bb_added = med[BB]["p50_us"] - d["p50_us"] if BB in med and d.get("p50_us") is not None else None

    def added(m, k):
        return m[k] - d[k] if m.get(k) is not None and d.get(k) is not None else None

    for name, m in med.items():
        worst = min(r["received"] for r in runs[("sse", name)])
        a50 = added(m, "p50_us")
        print(f"| {name} | {worst} of {res['events']} | {fmt(m['p50_us'], 0)} | {fmt(m['p99_us'], 0)} | "
              f"{fmt(m['max_us'], 0)} | {fmt(a50, 0) if name != 'direct' else ''} | "
              f"{fmt(added(m, 'p99_us'), 0) if name != 'direct' else ''} | "
              f"{ratio(a50, bb_added) if name != 'direct' and bb_added and bb_added > 0 else ''} |")
    print("\nThe small-body request cells (64 B, 4 KiB) are `--only throughput`'s.")
