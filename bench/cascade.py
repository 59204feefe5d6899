#!/usr/bin/env python3
"""The cascading failure of the design documents, measured: service A (bench/caller_service.py, a fixed
pool of 32 worker threads) serves `order` requests by calling payments and `browse` requests by calling
catalog. Payments hangs for a while mid-run and then recovers. What happens to A's *other* work — browse —
with no sidecar, behind HAProxy, behind nginx and behind breakerbox (the example's breaker; and
"breakerbox+probe", the same with an active probe)?

Load: open loop at a fixed arrival rate (default 100 requests/s, every fifth an order), each request a
new connection to A with a 10 s client timeout; latency counts from the request's *scheduled* time, so a
caller that cannot keep up cannot hide its queueing (coordinated omission). Browse goodput: browse
requests answered from catalog within the latency objective (250 ms). Phases: before, during and after
the hang (default 20 s each). Output: a Markdown table (per system and phase) on stdout, a JSON of
per-second series, and a PNG (browse goodput, p99 latencies, orders answered by payments and A's busy
workers over time, the outage shaded). Every process is stopped at the end, whatever happens; everything listens on 127.0.0.1.

Placement (2 cores, as bench.py): the proxy alone on core 0 with one worker/thread; the upstreams, the
caller and this load generator on core 1.

Exit status 1 when the scenario could not run or an answer was invalid (a system did not start, a
malformed answer, answer kinds that do not add up, a phase without requests, the hang not applied,
breakerbox served no fallback during the outage) — never because of a figure: those are reported.
"""
import argparse
import asyncio
import http.client
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (free_port, wait_port, Proc, HAPROXY, NGINX, BUILD, BREAKERBOX, core placement)


def _import_matplotlib():
    """Debian's python3-matplotlib lives in /usr/bin/python3's site-packages; a python3 earlier on PATH
    (pyenv, a virtualenv) may lack it, so the bench re-runs itself under /usr/bin/python3 then."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system) \
                and os.environ.get("CASCADE_REEXEC") != "1":
            os.environ["CASCADE_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        raise SystemExit("cascade.py needs matplotlib: install Debian's python3-matplotlib (scripts/setup.sh)")


plt = _import_matplotlib()

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM_BIN = os.path.join(bench.BUILD, "breakerbox-test-upstream")
SYSTEMS = ("no sidecar", "haproxy", "nginx", "breakerbox", "breakerbox+probe")
KINDS = ("real", "fallback", "error", "timeout", "unanswered")
PHASES = ("before", "during", "after")
# Normal upstream latencies: payments' charge takes 20 ms, catalog's listing 5 ms.
PAYMENTS_DELAY_MS, CATALOG_DELAY_MS = 20, 5
# Timeouts. A's client timeout towards its upstreams (caller_service.py --timeout): 5 s, what a careful
# service sets. The proxies' own timeout towards payments: 2 s for HAProxy and nginx (their only way to
# stop waiting for a hung server), the point at which breakerbox's breaker calls a call slow; breakerbox's
# request_timeout stays at 4 s, under A's 5 s, since its slow-call rule acts at 2 s.
CALLER_TIMEOUT_S = 5.0
PROXY_TIMEOUT_S = 2
BREAKERBOX_TIMEOUT_S = 4
LOAD_TIMEOUT_S = 10.0  # the load generator's own client timeout towards A
# The bulkhead for payments, the same for every proxy that has one: 8 calls at once, 8 more may wait
# 100 ms for a slot. Payments' normal load needs 20/s x 20 ms = 0.4 calls at once.
BULKHEAD_CALLS, BULKHEAD_QUEUE, QUEUE_TIMEOUT_MS = 8, 8, 100
FALLBACK_BODY = '{"error": "payments is unavailable", "order": "queued for later"}'


class OutOfTime(BaseException):
    """The run's time is up (SIGALRM) or it was asked to stop (SIGTERM): a BaseException, so that no
    per-system `except Exception` goes on with the next system, and every `finally` stops its processes."""


def stop_run(signum, _frame):
    raise OutOfTime(f"stopped by signal {signum}")


# ---- the processes -------------------------------------------------------------------------------
def start_test_upstream(name, delay_ms, procs):
    port = bench.free_port()
    p = bench.Proc(name, [UPSTREAM_BIN, "--listen", f"127.0.0.1:{port}", "--threads", "2", "--name", name,
                          "--defaults", f"delay_ms={delay_ms}"], bench.LOAD_CORE)
    procs.append(p)
    bench.wait_port(port, p)
    return port


def set_payments(port, query):
    """POST /__config?QUERY on the test upstream: the defaults every request without its own get."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", f"/__config?{query}")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"payments /__config?{query} answered {resp.status}")
    return json.loads(body)


def upstream_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/__stats")
    stats = json.loads(conn.getresponse().read())
    conn.close()
    return stats


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def haproxy_config(directory, ports, upstreams):
    """HAProxy as well as it allows: per-server maxconn 8 with a queue of 8 waiting at most 100 ms
    (its bulkhead), timeout server 2 s, health checks every second that mark the server down after two
    failures (timeout check 1 s), observe layer7 with error-limit 3 / on-error mark-down (passive: three
    errors or timeouts in a row mark it down at once), on-marked-down shutdown-sessions (the requests
    already waiting are cut, freeing their callers), and the static fallback as the 502/503/504 error
    files (503 is what a request gets while the server is down or its queue wait times out)."""
    fallback = FALLBACK_BODY.encode()
    errorfiles = []
    for status, reason in ((502, "Bad Gateway"), (503, "Service Unavailable"), (504, "Gateway Timeout")):
        path = write(directory, f"fallback-{status}.http",
                     f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nX-Fallback: static\r\n"
                     f"Cache-Control: no-store\r\nContent-Length: {len(fallback)}\r\n\r\n{FALLBACK_BODY}")
        errorfiles.append(f"errorfile {status} {path}")
    errorfiles = "\n  ".join(errorfiles)
    return write(directory, "haproxy.cfg", f"""
global
  nbthread 1
  maxconn 1000  # far above what A can have open (32 workers), and within a 4,096-descriptor limit
defaults
  mode http
  option http-keep-alive
  http-reuse safe
  timeout connect 1s
  timeout client 30s
  timeout server {PROXY_TIMEOUT_S}s
  timeout queue {QUEUE_TIMEOUT_MS}ms
  timeout check 1s
frontend payments_in
  bind 127.0.0.1:{ports['payments']}
  default_backend payments
frontend catalog_in
  bind 127.0.0.1:{ports['catalog']}
  default_backend catalog
backend payments
  option httpchk GET /health
  {errorfiles}
  server p1 127.0.0.1:{upstreams['payments']} maxconn {BULKHEAD_CALLS} maxqueue {BULKHEAD_QUEUE} check inter 1s fall 2 rise 2 observe layer7 error-limit 3 on-error mark-down on-marked-down shutdown-sessions
backend catalog
  server c1 127.0.0.1:{upstreams['catalog']} maxconn 128
""")


def nginx_config(directory, ports, upstreams):
    """nginx as well as it allows (open source: no request queue): max_conns=8 on payments, a backup
    server that is the static fallback (so that max_fails counts — nginx ignores max_fails for a lone
    server — and requests beyond max_conns or while payments is marked failed get the fallback at once),
    max_fails=3 fail_timeout=10s, proxy_read_timeout 2 s, no retry of a POST (proxy_next_upstream off),
    and the fallback for nginx's own 502/504 too (error_page)."""
    fb = ports["fallback"]
    return write(directory, "nginx.conf", f"""
daemon off; master_process on; worker_processes 1; pid {directory}/nginx.pid;
error_log stderr crit;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  upstream payments {{
    server 127.0.0.1:{upstreams['payments']} max_conns={BULKHEAD_CALLS} max_fails=3 fail_timeout=10s;
    server 127.0.0.1:{fb} backup;
    keepalive 16;
  }}
  upstream catalog {{ server 127.0.0.1:{upstreams['catalog']}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{ports['payments']} backlog=4096;
    location / {{
      proxy_pass http://payments;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_send_timeout {PROXY_TIMEOUT_S}s;
      proxy_read_timeout {PROXY_TIMEOUT_S}s;
      proxy_next_upstream off;
      error_page 502 503 504 = @fallback;
    }}
    location @fallback {{ default_type application/json; add_header X-Fallback static always;
                          return 503 '{FALLBACK_BODY}'; }}
  }}
  server {{
    listen 127.0.0.1:{fb} backlog=4096;
    location / {{ default_type application/json; add_header X-Fallback static always;
                  return 503 '{FALLBACK_BODY}'; }}
  }}
  server {{
    listen 127.0.0.1:{ports['catalog']} backlog=4096;
    location / {{ proxy_pass http://catalog; proxy_http_version 1.1; proxy_set_header Connection "";
                  proxy_connect_timeout 1s; proxy_read_timeout {PROXY_TIMEOUT_S}s; }}
  }}
}}
""")


def breakerbox_config(directory, ports, upstreams, probe=False):
    """breakerbox with config/example.yaml's breaker for payments (five failures in a row, or three calls
    in a row still unanswered after 2 s — while they wait — open the circuit for 10 s, doubling on each
    re-trip; the calls waiting are answered at once), a bulkhead of 8 + 8 waiting 100 ms, request_timeout
    4 s, and the static fallback on every trigger. Catalog gets the defaults.

    probe=True ("breakerbox+probe"): the example's breaker plus HAProxy's health check as an active probe
    (GET /health, 1 s timeout, after a 1 s open time that does not grow): client requests are then never
    probes, so a short open time costs them nothing, and recovery is seen within about a second."""
    probe_lines = ("      open_duration: 1s\n      open_duration_multiplier: 1\n"
                   "      half_open: {probe: {path: /health, timeout: 1s}}\n") if probe else "      open_duration: 10s\n"
    return write(directory, "breakerbox.yaml", f"""
workers: 1
listeners:
  - {{name: payments, address: "127.0.0.1:{ports['payments']}", upstream: payments}}
  - {{name: catalog, address: "127.0.0.1:{ports['catalog']}", upstream: catalog}}
admin: {{address: "127.0.0.1:{ports['admin']}", token: bench}}
logging: {{level: error}}
upstreams:
  payments:
    endpoints: ["127.0.0.1:{upstreams['payments']}"]
    connect_timeout: 1s
    request_timeout: {BREAKERBOX_TIMEOUT_S}s
    bulkhead: {{max_concurrent: {BULKHEAD_CALLS}, max_queue: {BULKHEAD_QUEUE}, queue_timeout: {QUEUE_TIMEOUT_MS}ms}}
    circuit_breaker:
      consecutive_failures: 5
{probe_lines}      slow_calls: {{duration: 2s, consecutive: 3, in_flight: true}}
      cancel_in_flight: true
    fallbacks:
      - when: [circuit_open, bulkhead_full, timeout, upstream_error]
        static:
          status: 503
          headers: {{Content-Type: application/json}}
          body: '{FALLBACK_BODY}'
  catalog:
    endpoints: ["127.0.0.1:{upstreams['catalog']}"]
    connect_timeout: 1s
    request_timeout: {PROXY_TIMEOUT_S}s
""")


def start_proxy(system, directory, upstreams, procs):
    """Starts the proxy under test; returns the host:port A calls for payments and for catalog."""
    if system == "no sidecar":
        return {k: f"127.0.0.1:{v}" for k, v in upstreams.items()}
    ports = {k: bench.free_port() for k in ("payments", "catalog", "fallback", "admin")}
    if system == "haproxy":
        args = [bench.HAPROXY, "-f", haproxy_config(directory, ports, upstreams)]
    elif system == "nginx":
        args = [bench.NGINX, "-c", nginx_config(directory, ports, upstreams), "-p", directory]
    else:
        conf = breakerbox_config(directory, ports, upstreams, probe=system == "breakerbox+probe")
        check = subprocess.run([bench.BREAKERBOX, "--check-config", conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"breakerbox rejects the bench's configuration: {check.stdout}{check.stderr}")
        args = [bench.BREAKERBOX, "--config", conf]
    p = bench.Proc(system, args, bench.PROXY_CORE)
    procs.append(p)
    bench.wait_port(ports["payments"], p)
    bench.wait_port(ports["catalog"], p)
    return {"payments": f"127.0.0.1:{ports['payments']}", "catalog": f"127.0.0.1:{ports['catalog']}"}


def start_caller(targets, samples, procs, workers):
    port = bench.free_port()
    p = bench.Proc("caller", [sys.executable, os.path.join(HERE, "caller_service.py"),
                              "--listen", f"127.0.0.1:{port}", "--payments", targets["payments"],
                              "--catalog", targets["catalog"], "--workers", str(workers),
                              "--timeout", str(CALLER_TIMEOUT_S), "--samples", samples], bench.LOAD_CORE)
    procs.append(p)
    bench.wait_port(port, p)
    return port


# ---- the load -------------------------------------------------------------------------------------
async def one_request(port, path, scheduled, timeout):
    """One request to A on a new connection, timed from its scheduled send time: (answer, latency s).
    answer is A's JSON, None when A did not answer within the timeout or the connection failed, or the
    string "malformed"."""
    async def exchange():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: caller\r\nConnection: close\r\n\r\n".encode())
            return await reader.read()  # A closes after its answer
        finally:
            writer.close()

    try:
        raw = await asyncio.wait_for(exchange(), timeout - (time.monotonic() - scheduled))
    except (asyncio.TimeoutError, OSError):
        return None, time.monotonic() - scheduled
    latency = time.monotonic() - scheduled
    try:
        head, body = raw.split(b"\r\n\r\n", 1)
        answer = json.loads(body)
        if not head.startswith(b"HTTP/1.1 200") or answer.get("kind") not in KINDS[:4]:
            return "malformed", latency
        return answer, latency
    except ValueError:
        return "malformed", latency


async def open_loop(port, rate, seconds, events, timeout):
    """Sends `rate` requests per second for `seconds`, every fifth an order, each at its fixed time
    whatever the answers do; runs `events` ((offset s, function) pairs, e.g. the hang) on the way.
    Returns the records (offset s, type, answer, latency s) and the run's start on the monotonic clock."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic() + 0.2
    tasks = []
    pending_events = sorted(events)
    for i in range(int(rate * seconds)):
        offset = i / rate
        while pending_events and pending_events[0][0] <= offset:
            at, fn = pending_events.pop(0)
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            await loop.run_in_executor(None, fn)
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
        kind = "order" if i % 5 == 0 else "browse"
        tasks.append((offset, kind, asyncio.ensure_future(one_request(port, f"/{kind}", t0 + offset, timeout))))
    for at, fn in pending_events:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        await loop.run_in_executor(None, fn)
    records = []
    for offset, kind, task in tasks:
        answer, latency = await task
        records.append((offset, kind, answer, latency))
    return records, t0


def warm_up(port):
    """A few requests of each type through A: every one must be a real answer, or the system under test
    does not work at all and its figures would mean nothing."""
    async def run():
        out = []
        for path in ("/order", "/browse") * 10:
            answer, _ = await one_request(port, path, time.monotonic(), 5)
            out.append((path, answer))
        return out
    bad = [(p, a) for p, a in asyncio.run(run()) if not isinstance(a, dict) or a["kind"] != "real"]
    if bad:
        raise RuntimeError(f"warm-up answers were not real: {bad[:3]}")


# ---- one system -----------------------------------------------------------------------------------
def run_system(system, args, directory):
    """Starts everything for one system, runs the scenario, stops everything. Returns the raw records,
    the caller's busy-worker samples, and facts for the validity checks."""
    procs = []
    sub = os.path.join(directory, system.replace(" ", "-"))
    os.makedirs(sub)
    os.chmod(sub, 0o755)  # nginx's workers drop root's privileges
    try:
        upstreams = {"payments": start_test_upstream("payments", PAYMENTS_DELAY_MS, procs),
                     "catalog": start_test_upstream("catalog", CATALOG_DELAY_MS, procs)}
        targets = start_proxy(system, sub, upstreams, procs)
        samples = os.path.join(sub, "busy.txt")
        caller = start_caller(targets, samples, procs, args.workers)
        warm_up(caller)
        time.sleep(1.0 if system != "haproxy" else 2.5)  # HAProxy: its first health checks pass (rise 2)
        facts = {}

        def hang():
            facts["hang_at"] = time.monotonic()
            set_payments(upstreams["payments"], f"delay_ms={PAYMENTS_DELAY_MS}&fault=hang")

        def recover():
            # the calls the system left hanging on payments (the test upstream holds each for 10 minutes)
            facts["in_flight_at_end_of_hang"] = upstream_stats(upstreams["payments"])["in_flight"]
            facts["recover_at"] = time.monotonic()
            set_payments(upstreams["payments"], f"delay_ms={PAYMENTS_DELAY_MS}")

        total = args.before + args.hang + args.after
        records, t0 = asyncio.run(open_loop(caller, args.rate, total,
                                            [(args.before, hang), (args.before + args.hang, recover)],
                                            LOAD_TIMEOUT_S))
        facts["hang_offset"] = facts.pop("hang_at") - t0
        facts["recover_offset"] = facts.pop("recover_at") - t0
        facts["payments_charges"] = upstream_stats(upstreams["payments"])["paths"].get("/charge", 0)
        for p in procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited during the run (status {p.popen.returncode})")
        return records, read_samples(samples, t0), facts
    finally:
        for p in reversed(procs):
            p.stop()


def read_samples(path, t0):
    """The caller's (offset s, busy workers, queued requests) samples, on the run's clock."""
    out = []
    with open(path) as f:
        for line in f:
            t, busy, queued = line.split()
            out.append((float(t) - t0, int(busy), int(queued)))
    return out


# ---- the figures ----------------------------------------------------------------------------------
def kind_of(answer):
    return answer["kind"] if isinstance(answer, dict) else "unanswered"


def p99(values):
    """The 99th percentile (nearest rank), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def phase_of(offset, args):
    if offset < args.before:
        return "before"
    return "during" if offset < args.before + args.hang else "after"


def per_second(records, samples, args):
    """Per second of scheduled time: browse offered and good (real within the objective), order answers
    by kind, p99 latency (ms) of browse and of order, A's busy workers (mean and max) and queue."""
    total = args.before + args.hang + args.after
    rows = [{"t": s, "browse": 0, "browse_good": 0, "order": {k: 0 for k in KINDS}, "order_good": 0,
             "_browse_lat": [], "_order_lat": []} for s in range(total)]
    for offset, kind, answer, latency in records:
        row = rows[int(offset)]
        if kind == "browse":
            row["browse"] += 1
            row["browse_good"] += kind_of(answer) == "real" and latency * 1000 <= args.slo_ms
            row["_browse_lat"].append(latency * 1000)
        else:
            row["order"][kind_of(answer)] += 1
            row["order_good"] += kind_of(answer) == "real" and latency * 1000 <= args.slo_ms
            row["_order_lat"].append(latency * 1000)
    for row in rows:
        row["browse_p99_ms"] = p99(row.pop("_browse_lat"))
        row["order_p99_ms"] = p99(row.pop("_order_lat"))
        in_second = [(b, q) for t, b, q in samples if row["t"] <= t < row["t"] + 1]
        row["busy_mean"] = sum(b for b, _ in in_second) / len(in_second) if in_second else None
        row["busy_max"] = max((b for b, _ in in_second), default=None)
        row["queued_max"] = max((q for _, q in in_second), default=None)
    return rows


def per_phase(records, samples, args):
    """Per phase: browse offered/good, order answers by kind, p99 (ms) of each (type, kind), busy workers."""
    out = {}
    for phase in PHASES:
        recs = [r for r in records if phase_of(r[0], args) == phase]
        lat = {}
        for _, kind, answer, latency in recs:
            lat.setdefault((kind, kind_of(answer)), []).append(latency * 1000)
        browse = [r for r in recs if r[1] == "browse"]
        total = args.before + args.hang + args.after
        busy = [b for t, b, _ in samples if 0 <= t < total and phase_of(t, args) == phase]
        out[phase] = {
            "browse": len(browse),
            "browse_good": sum(1 for _, _, a, l in browse if kind_of(a) == "real" and l * 1000 <= args.slo_ms),
            "browse_kinds": {k: sum(1 for r in browse if kind_of(r[2]) == k) for k in KINDS},
            "order_kinds": {k: sum(1 for r in recs if r[1] == "order" and kind_of(r[2]) == k) for k in KINDS},
            # orders answered (really or by the fallback) within the browse objective: "at once"
            "order_fast": sum(1 for _, t, a, l in recs if t == "order" and kind_of(a) in ("real", "fallback")
                              and l * 1000 <= args.slo_ms),
            "p99_ms": {f"{t} {k}": p99(v) for (t, k), v in sorted(lat.items())},
            "p50_ms": {f"{t} {k}": sorted(v)[len(v) // 2] for (t, k), v in sorted(lat.items())},
            "busy_mean": sum(busy) / len(busy) if busy else None,
            "busy_max": max(busy, default=None),
        }
    return out


def recovery_times(rows, args):
    """Seconds from the hang's start (and from its end) until browse goodput is back above 95% of its
    level before the hang: the end of the last second below that within the phase, 0 when no second was
    below, None when the phase ends below it (not back within the phase). The same after the hang's end
    for orders answered by payments within the objective: how soon each system sends orders to the
    recovered payments again."""
    def level(key):
        return sum(r[key] for r in rows[:args.before]) / args.before

    def back(key, start, end):
        below = [r["t"] for r in rows[start:end] if r[key] < 0.95 * level(key)]
        if not below:
            return 0.0
        return None if below[-1] == end - 1 else float(below[-1] + 1 - start)

    hang_end = args.before + args.hang
    return {"before_level": level("browse_good"), "back_after_hang_start_s": back("browse_good", args.before, hang_end),
            "back_after_hang_end_s": back("browse_good", hang_end, hang_end + args.after),
            "orders_back_after_hang_end_s": back("order_good", hang_end, hang_end + args.after)}


# ---- validity -------------------------------------------------------------------------------------
def check(system, records, facts, phases, args):
    """What makes a run's figures meaningless; never a figure itself."""
    problems = []
    expected = int(args.rate * (args.before + args.hang + args.after))
    if len(records) != expected:
        problems.append(f"{len(records)} requests recorded, {expected} scheduled")
    malformed = sum(1 for r in records if r[2] == "malformed")
    if malformed:
        problems.append(f"{malformed} malformed answers from the caller")
    for phase, p in phases.items():
        orders = sum(p["order_kinds"].values())
        if p["browse"] == 0 or orders == 0:
            problems.append(f"no browse or no order requests in phase {phase}")
        if sum(p["browse_kinds"].values()) != p["browse"]:
            problems.append(f"browse answer kinds do not add up in phase {phase}")
    if sum(sum(p["order_kinds"].values()) + p["browse"] for p in phases.values()) != len(records) - malformed:
        problems.append("answer kinds do not add up to the requests")
    if facts.get("in_flight_at_end_of_hang", 0) == 0:
        problems.append("payments had no hung request in flight at the end of the hang: the hang was not applied")
    if not facts.get("payments_charges"):
        problems.append("payments saw no charge")
    if abs(facts["hang_offset"] - args.before) > 1 or abs(facts["recover_offset"] - args.before - args.hang) > 1:
        problems.append(f"the hang ran from {facts['hang_offset']:.2f} s to {facts['recover_offset']:.2f} s, "
                        f"not {args.before} s to {args.before + args.hang} s")
    if system.startswith("breakerbox") and phases["during"]["order_kinds"]["fallback"] == 0:
        problems.append("breakerbox served no fallback during the outage")
    return [f"{system}: {p}" for p in problems]


# ---- the report -----------------------------------------------------------------------------------
def fmt_ms(v):
    return "-" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def fmt_s(v, phase_len):
    return f"not within {phase_len} s" if v is None else f"{v:.0f} s"


def print_report(results, args):
    print(f"\n### Cascade: payments hangs from t={args.before} s to t={args.before + args.hang} s; "
          f"{args.rate:g} requests/s to A ({args.workers} workers), 20% order / 80% browse; browse objective "
          f"{args.slo_ms} ms\n")
    print("| system | phase | browse goodput | order: real / fallback / error / timeout / unanswered | "
          "browse p99 ms | order p99 ms by kind | A busy workers mean (max) |")
    print("|---|---|---:|---|---:|---|---:|")
    for system, res in results.items():
        for phase in PHASES:
            p = res["phases"][phase]
            seconds = {"before": args.before, "during": args.hang, "after": args.after}[phase]
            good = f"{p['browse_good'] / seconds:.1f}/s ({p['browse_good'] / max(p['browse'], 1):.1%})"
            kinds = " / ".join(str(p["order_kinds"][k]) for k in KINDS)
            browse_p99 = p99_all(res["records"], "browse", phase, args)
            order_p99 = ", ".join(f"{k.split()[1]} {fmt_ms(v)}" for k, v in p["p99_ms"].items() if k.startswith("order"))
            busy = "-" if p["busy_mean"] is None else f"{p['busy_mean']:.1f} ({p['busy_max']})"
            print(f"| {system} | {phase} | {good} | {kinds} | {fmt_ms(browse_p99)} | {order_p99} | {busy} |")
    print("\n| system | browse goodput before (answers/s) | back above 95% of it after the hang starts | "
          "after it ends | during the hang: browse goodput vs before | order fallbacks during the hang: p50 / p99 ms | "
          f"orders during the hang answered (real or fallback) within {args.slo_ms} ms | "
          "orders answered by payments again after the hang ends | calls hanging on payments at its end |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for system, res in results.items():
        rec, ph = res["recovery"], res["phases"]
        ratio = (ph["during"]["browse_good"] / args.hang) / rec["before_level"] if rec["before_level"] else 0
        fb = "-"
        if ph["during"]["order_kinds"]["fallback"]:
            fb = f"{fmt_ms(ph['during']['p50_ms']['order fallback'])} / {fmt_ms(ph['during']['p99_ms']['order fallback'])}"
        print(f"| {system} | {rec['before_level']:.1f} | {fmt_s(rec['back_after_hang_start_s'], args.hang)} | "
              f"{fmt_s(rec['back_after_hang_end_s'], args.after)} | {ratio:.1%} | {fb} | "
              f"{ph['during']['order_fast'] / max(sum(ph['during']['order_kinds'].values()), 1):.1%} | "
              f"{fmt_s(rec['orders_back_after_hang_end_s'], args.after)} | {res['facts']['in_flight_at_end_of_hang']} |")
    print(f"\nLatency counts from each request's scheduled time; 'unanswered': A gave no answer within the load "
          f"generator's {LOAD_TIMEOUT_S:g} s (counted at {LOAD_TIMEOUT_S:g} s in the p99). Calls hanging on "
          f"payments: its requests in flight when the hang ended (the bench's own health checks and probes "
          f"included).")


def p99_all(records, kind, phase, args):
    return p99([r[3] * 1000 for r in records if r[1] == kind and phase_of(r[0], args) == phase])


def plot(results, args, path):
    """One picture: browse goodput, browse and order p99 latency, orders answered by payments, and A's
    busy workers over time, one line per system, the hang shaded."""
    # Where systems do the same, their lines coincide: distinct dashes, drawn thinner over thicker,
    # keep each visible.
    styles = {"no sidecar": ("#d62728", "-", 2.0), "haproxy": ("#1f77b4", "--", 1.6),
              "nginx": ("#2ca02c", "-.", 1.6), "breakerbox": ("#ff7f0e", "-", 3.5),
              "breakerbox+probe": ("#9467bd", ":", 2.2)}
    fig, axes = plt.subplots(5, 1, figsize=(10, 14), sharex=True)
    panels = [("browse_good", f"browse goodput\n(answers/s within {args.slo_ms} ms)", False),
              ("browse_p99_ms", "browse p99 latency (ms)", True),
              ("order_p99_ms", "order p99 latency (ms)\n(real, fallback or error)", True),
              ("order_good", f"orders answered by\npayments within {args.slo_ms} ms (/s)", False),
              ("busy_mean", f"A's busy workers\n(of {args.workers}, mean per second)", False)]
    for ax, (key, label, log) in zip(axes, panels):
        ax.axvspan(args.before, args.before + args.hang, color="0.85", label="payments hangs")
        for system, res in results.items():
            xs = [r["t"] + 0.5 for r in res["seconds"] if r[key] is not None]
            ys = [r[key] for r in res["seconds"] if r[key] is not None]
            color, dash, width = styles[system]
            ax.plot(xs, ys, color=color, linestyle=dash, linewidth=width, label=system, zorder=10 - width)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if log:
            ax.set_yscale("log")
    # Reference lines, labelled where they are rather than in the legend.
    for ax, y, text in ((axes[0], args.rate * 0.8, "offered"), (axes[1], args.slo_ms, "objective"),
                        (axes[3], args.rate * 0.2, "offered"), (axes[4], args.workers, "pool size")):
        ax.axhline(y, color="0.4", linestyle=":", linewidth=1)
        if ax.get_yscale() == "linear":  # counts start at 0, and the line must stay inside the panel
            ax.set_ylim(0, max(ax.get_ylim()[1], y * 1.08))
        ax.annotate(text, (0, y), xycoords=ax.get_yaxis_transform(), xytext=(3, 2), textcoords="offset points",
                    fontsize=8, color="0.3")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.95), ncol=len(labels), fontsize=9,
               frameon=False)
    axes[-1].set_xlabel("seconds (scheduled send time)")
    fig.suptitle(f"Service A (pool of {args.workers} workers) calls payments (order, 20%) and catalog "
                 f"(browse, 80%) at {args.rate:g} req/s;\npayments hangs from {args.before} s to "
                 f"{args.before + args.hang} s", fontsize=11, y=0.99)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.04, top=0.915, hspace=0.12)  # title + legend on top
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=int, default=20, help="seconds before the hang")
    ap.add_argument("--hang", type=int, default=20, help="seconds payments hangs")
    ap.add_argument("--after", type=int, default=20, help="seconds after it recovers")
    ap.add_argument("--rate", type=float, default=100, help="requests per second to A (open loop)")
    ap.add_argument("--workers", type=int, default=32, help="A's worker pool")
    ap.add_argument("--slo-ms", type=int, default=250, help="browse latency objective")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS))
    ap.add_argument("--plot", default=os.path.join(bench.ROOT, "docs", "cascade.png"), help="PNG to write")
    ap.add_argument("--json", help="per-second series to write (default: the plot's path with .json)")
    args = ap.parse_args()
    systems = args.systems.split(",")
    if set(systems) - set(SYSTEMS):
        ap.error(f"unknown system(s): {', '.join(set(systems) - set(SYSTEMS))}")
    if min(args.before, args.hang, args.after) < 2:
        ap.error("every phase needs at least 2 seconds")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    # Bounded whatever happens: the phases plus 45 s per system (start-up, warm-up, the 10 s drain), then
    # SIGALRM stops the run through the same `finally` blocks as a normal end.
    signal.signal(signal.SIGALRM, stop_run)
    signal.signal(signal.SIGTERM, stop_run)
    signal.alarm(len(systems) * (args.before + args.hang + args.after + 45))
    os.sched_setaffinity(0, {int(bench.LOAD_CORE)})  # the load generator beside A and the upstreams
    directory = tempfile.mkdtemp(prefix="breakerbox-cascade-")
    os.chmod(directory, 0o755)
    results, failures = {}, []
    try:
        for system in systems:
            print(f"== {system}", file=sys.stderr)
            try:
                records, samples, facts = run_system(system, args, directory)
            except Exception as e:  # noqa: BLE001 — one system that cannot run must not hide the others
                failures.append(f"{system}: could not run: {e}")
                continue
            rows = per_second(records, samples, args)
            phases = per_phase(records, samples, args)
            failures += check(system, records, facts, phases, args)
            results[system] = {"records": records, "seconds": rows, "phases": phases,
                               "recovery": recovery_times(rows, args), "facts": facts}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if results:
        print_report(results, args)
        plot(results, args, args.plot)
        json_path = args.json or os.path.splitext(args.plot)[0] + ".json"
        with open(json_path, "w") as f:
            json.dump({"parameters": vars(args) | {"plot": os.path.relpath(args.plot, bench.ROOT),"caller_timeout_s": CALLER_TIMEOUT_S, "proxy_timeout_s": PROXY_TIMEOUT_S,
                                                   "breakerbox_request_timeout_s": BREAKERBOX_TIMEOUT_S,
                                                   "load_timeout_s": LOAD_TIMEOUT_S},
                       "systems": {s: {k: r[k] for k in ("seconds", "phases", "recovery", "facts")}
                                   for s, r in results.items()}}, f, indent=1)
        print(f"\nplot: {args.plot}; per-second series: {json_path}", file=sys.stderr)
    if failures:
        print("\n### Checks failed — the figures above are not valid\n")
        for f in failures:
            print(f"- {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
