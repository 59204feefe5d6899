#!/usr/bin/env python3
"""breakerbox against HAProxy and nginx, side by side, in one run. Standard library only.

Placement (2 cores): every proxy runs on core 0 with one worker/thread; the load generator (wrk) and
the upstream (nginx serving fixed bodies) share core 1. Each proxy therefore gets the same single core
and competes with nothing, and the load side is identical for all of them: that is what makes the
ratios fair. Runs are interleaved (A B C D, A B C D, ...) and the median of the repetitions reported.
Everything listens on 127.0.0.1 and is stopped at the end, whatever happens.
"""
import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import tls_pki  # noqa: E402  (test certificates made at run time with the openssl command)
import ejection  # noqa: E402  (the endpoint-ejection scenario, bench/ejection.py)
import events  # noqa: E402  (the event stream's cost, bench/events.py)
import queue_fallback  # noqa: E402  (the queue fallback: enqueues, drain, bytes on disk; bench/queue_fallback.py)
import cluster  # noqa: E402  (circuit state shared through Redis, scope: cluster; bench/cluster.py)
import streaming  # noqa: E402  (large bodies both ways and SSE latency through each proxy; bench/streaming.py)
BUILD = os.environ.get("BREAKERBOX_BUILD", os.path.join(ROOT, "build"))
BREAKERBOX = os.path.join(BUILD, "breakerbox")
MICRO = os.path.join(BUILD, "bench", "resilience_bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
PROXY_CORE = "0"
LOAD_CORE = "1" if CORES > 1 else "0"
# Debian installs the proxies in /usr/sbin, which a non-root PATH may lack.
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
HAPROXY = shutil.which("haproxy", path=SBIN_PATH) or "haproxy"
NGINX = shutil.which("nginx", path=SBIN_PATH) or "nginx"
SMALL = "x" * 64
BIG = "y" * 4096
# The upstream's paths, with how tables name them and the body each must carry.
BODIES = {"/small": ("64 B", SMALL), "/4k": ("4 KiB", BIG)}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with status {proc.popen.returncode} before listening on {port}: "
                               f"{proc.popen.stderr.read().decode(errors='replace').strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} does not listen on {port} after {timeout} s")


def connection_limit():
    """How many client connections every proxy is configured for: as many as the descriptor limit allows
    a proxy that holds two descriptors per connection (HAProxy refuses to start otherwise), at most
    8,000; the memory scenario needs 1,000. Containers often cap the hard limit at 4,096."""
    return min(8000, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64) // 2)


# Every proxy does the same header work as breakerbox's defaults (forwarding: via, x_forwarded_for,
# x_forwarded_proto, x_forwarded_host; the client's Host kept): the upstream and the client get the same
# bytes from each, so neither the proxies nor the load core behind them compare different work.
FORWARDING_HEADERS = {
    "haproxy": """option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy\"""",
    "nginx": """proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header Via "1.1 nginx";
      add_header Via "1.1 nginx" always;""",
}


def cpu_ticks(pids):
    """(user, kernel) clock ticks of the processes, summed."""
    user = kernel = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])    # utime
            kernel += int(fields[12])  # stime
        except OSError:
            pass
    return user, kernel


def read_bytes(wrk_output):
    """The bytes wrk read over the run ("... requests in 3.00s, 12.34MB read"; wrk's units are 1024-based)."""
    m = re.search(r"requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", wrk_output)
    return float(m.group(1)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(2)] if m else 0.0


def core_ticks(core):
    """(busy, total) clock ticks of one CPU since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                ticks = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    return 0, 0


def parse_wrk(out):
    """wrk --latency's report: requests per second, requests, p50 and p99 in ms, answers other than
    2xx/3xx and socket errors."""
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk gave no result: {out[-500:]}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def latency(pct):
        lm = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(lm.group(1)), lm.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {"rps": float(m.group(1)), "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": latency(50), "p99": latency(99),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def busy_fraction(before, after):
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else None


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]
    except OSError:
        return []


class Proc:
    def __init__(self, name, args, core, cwd=None):
        self.name = name
        self.popen = subprocess.Popen(["taskset", "-c", core] + args, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)

    def pids(self):
        """The processes doing the work (nginx: its workers)."""
        kids = children(self.popen.pid)
        return kids or [self.popen.pid]

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=10)


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="breakerbox-bench-")
        # nginx's workers drop root's privileges (to nobody): the upstream's 4 KiB file must be readable
        # for them, or every "4 KiB" answer is a 403 page (as it was, unnoticed, until the bench checked
        # the answers' status).
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.upstream_port = free_port()
        self.failures = []

    def cleanup(self):
        for p in reversed(self.procs):
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---- the processes -------------------------------------------------------------------------
    def start_upstream(self):
        with open(os.path.join(self.dir, "big.txt"), "w") as f:
            f.write(BIG)
        conf = self.write("upstream.conf", f"""
daemon off; master_process on; worker_processes 1; pid {self.dir}/upstream.pid;
error_log stderr crit;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{self.upstream_port} backlog=4096;
    add_header X-Upstream yes always;
    location = /small {{ default_type text/plain; return 200 "{SMALL}"; }}
    location = /4k {{ default_type text/plain; alias {self.dir}/big.txt; }}
    location = /forwarded {{ default_type text/plain;
      return 200 "host=$http_host|via=$http_via|xff=$http_x_forwarded_for|proto=$http_x_forwarded_proto|xfh=$http_x_forwarded_host"; }}
  }}
}}
""")
        self.upstream = Proc("upstream", [NGINX, "-c", conf, "-p", self.dir], LOAD_CORE)
        self.procs.append(self.upstream)
        wait_port(self.upstream_port, self.upstream)

    def start_tls_upstream(self):
        """The same nginx bodies over TLS (a certificate for localhost from a CA made now), with a
        server-side session cache and tickets, so that resumption is possible for every proxy."""
        self.pki = tls_pki.make_pki(os.path.join(self.dir, "pki"))
        os.chmod(os.path.join(self.dir, "pki"), 0o755)
        cert, key = self.pki["server"]
        self.tls_port = free_port()
        conf = self.write("upstream-tls.conf", f"""
daemon off; master_process on; worker_processes 1; pid {self.dir}/upstream-tls.pid;
error_log stderr crit;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{self.tls_port} ssl backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
    location = /small {{ default_type text/plain; return 200 "{SMALL}"; }}
    location = /4k {{ default_type text/plain; alias {self.dir}/big.txt; }}
  }}
}}
""")
        self.tls_upstream = Proc("upstream-tls", [NGINX, "-c", conf, "-p", self.dir], LOAD_CORE)
        self.procs.append(self.tls_upstream)
        wait_port(self.tls_port, self.tls_upstream)

    def start_haproxy(self, port, outage=False, tls=None, idle_pool=None):
        """`tls`: None (plain upstream), "pooled" (kept-alive TLS connections), "resumed" (a new
        connection per request, resuming the session) or "full" (a new connection and a full handshake
        per request)."""
        checks = ("check inter 500ms fall 2 rise 1 observe layer7 error-limit 3 on-error mark-down "
                  "on-marked-down shutdown-sessions" if outage else "")
        server_addr = f"127.0.0.1:{self.upstream_port}"
        reuse = "http-reuse always"
        if tls:
            server_addr = f"127.0.0.1:{self.tls_port}"
            checks = f"ssl verify required ca-file {self.pki['ca']} sni str(localhost) alpn http/1.1"
            if tls == "full":
                checks += " no-ssl-reuse"
            if tls != "pooled":
                reuse = "http-reuse never\n  option http-server-close"
        conf = self.write(f"haproxy-{port}.cfg", f"""
global
  nbthread 1
  maxconn {connection_limit()}
defaults
  mode http
  option http-keep-alive
  {reuse}
  timeout connect 1s
  timeout client 30s
  timeout server {"1s" if outage else "30s"}
  timeout queue 1s
frontend fe
  bind 127.0.0.1:{port}
  {FORWARDING_HEADERS["haproxy"]}
  default_backend be
backend be
  {"option httpchk GET /small" if outage else ""}
  server s1 {server_addr} maxconn {2000 if idle_pool else 1000} {checks} {f"pool-purge-delay 60s" if idle_pool else ""}
""")
        p = Proc("haproxy", [HAPROXY, "-f", conf], PROXY_CORE)
        self.procs.append(p)
        wait_port(port, p)
        return p

    def start_nginx(self, port, outage=False, tls=None, idle_pool=None):
        fails = "max_fails=3 fail_timeout=1s" if outage else "max_fails=0"
        server_addr, scheme, keepalive, tls_lines = f"127.0.0.1:{self.upstream_port}", "http", "keepalive 64;", ""
        if tls:
            server_addr, scheme = f"127.0.0.1:{self.tls_port}", "https"
            keepalive = "keepalive 64;" if tls == "pooled" else ""
        if idle_pool:
            keepalive = f"keepalive {idle_pool};"
            tls_lines = (f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {self.pki['ca']}; proxy_ssl_verify_depth 2;\n"
                         f"      proxy_ssl_server_name on; proxy_ssl_name localhost; "
                         f"proxy_ssl_session_reuse {'off' if tls == 'full' else 'on'};")
        conf = self.write(f"nginx-{port}.conf", f"""
daemon off; master_process on; worker_processes 1; pid {self.dir}/nginx-{port}.pid;
error_log stderr crit;
events {{ worker_connections {2 * connection_limit()}; }}  # nginx counts both sides of a proxied connection
http {{
  access_log off; keepalive_requests 1000000;
  upstream u {{ server {server_addr} {fails}; {keepalive} }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass {scheme}://u;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {FORWARDING_HEADERS["nginx"]}
      {tls_lines}
      proxy_connect_timeout 1s;
      proxy_read_timeout {"1s" if outage else "30s"};
      proxy_next_upstream off;
    }}
  }}
}}
""")
        p = Proc("nginx", [NGINX, "-c", conf, "-p", self.dir], PROXY_CORE)
        self.procs.append(p)
        wait_port(port, p)
        return p

    def start_breakerbox(self, port, admin_port, outage=False, stale=False, tls=None, pool_idle=None):
        fallbacks = ""
        endpoint, tls_lines = f"127.0.0.1:{self.upstream_port}", ""
        if tls:
            endpoint = f"127.0.0.1:{self.tls_port}"
            tls_lines = (f"    tls: {{ca_file: {self.pki['ca']}, server_name: localhost"
                         f"{', session_reuse: false' if tls == 'full' else ''}}}\n")
            if tls != "pooled":
                tls_lines += "    pool: {max_idle_per_endpoint: 0}\n"
        if pool_idle:
            tls_lines += f"    pool: {{max_idle_per_endpoint: {pool_idle}}}\n"
        if stale:
            fallbacks = """    stale_cache: {max_entries: 100, max_age: 60s}
    fallbacks:
      - when: [circuit_open, timeout, upstream_error]
        stale: {}
"""
        # The outage configuration mirrors HAProxy's: its health check (GET /small every 500 ms, one
        # success to rise) is breakerbox's active probe after a 500 ms open time, and its
        # on-marked-down shutdown-sessions is breakerbox's cancel_in_flight. Beyond what HAProxy can
        # express: three calls in a row still unanswered after 250 ms (slow_calls.in_flight; /small
        # normally takes well under 1 ms) open the circuit without waiting for the 1 s timeout.
        breaker = ("{consecutive_failures: 3, open_duration: 500ms, open_duration_multiplier: 1, open_duration_jitter: 0, "
                   "slow_calls: {duration: 250ms, consecutive: 3, in_flight: true, rate_threshold: 100}, "
                   "cancel_in_flight: true, half_open: {probe: {path: /small, timeout: 500ms}}}"
                   if outage else "{consecutive_failures: 5}")
        conf = self.write(f"breakerbox-{port}.yaml", f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:{port}"}}]
admin: {{address: "127.0.0.1:{admin_port}", token: bench}}
logging: {{level: error}}
limits: {{max_connections: {connection_limit()}}}
upstreams:
  svc:
    endpoints: ["{endpoint}"]
    routes: {{path_prefix: /}}
{tls_lines}    connect_timeout: 1s
    request_timeout: {"1s" if outage else "30s"}
    bulkhead: {{max_concurrent: 1000, max_queue: 1000}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {breaker}
{fallbacks}  failfast:
    endpoints: ["127.0.0.1:{self.upstream_port}"]
    routes: {{path_prefix: /failfast}}
    fallbacks:
      - static: {{status: 503, body: "{{{{upstream}}}} unavailable"}}
""")
        p = Proc("breakerbox", [BREAKERBOX, "--config", conf], PROXY_CORE)
        self.procs.append(p)
        wait_port(port, p)
        return p

    def stop(self, p):
        p.stop()
        self.procs.remove(p)

    # ---- measurements --------------------------------------------------------------------------
    def wrk(self, port, path, conns, seconds, pids):
        before = cpu_ticks(pids)
        cores_before = core_ticks(PROXY_CORE), core_ticks(LOAD_CORE)
        out = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                              f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=seconds + 30).stdout
        after = cpu_ticks(pids)
        cores_after = core_ticks(PROXY_CORE), core_ticks(LOAD_CORE)
        w = parse_wrk(out)
        total = w["requests"]

        def us_per_request(ticks):
            return ticks / CLK_TCK * 1e6 / max(total, 1) if pids else None

        user_us, kernel_us = (us_per_request(a - b) for a, b in zip(after, before))
        cpu_us = user_us + kernel_us if pids else None
        return {**w, "cpu_us": cpu_us, "user_us": user_us, "kernel_us": kernel_us,
                # Which side limited the run: a core near 100% busy is the bottleneck.
                "proxy_core_busy": busy_fraction(cores_before[0], cores_after[0]),
                "load_core_busy": busy_fraction(cores_before[1], cores_after[1]),
                "bytes_per_request": read_bytes(out) / max(total, 1)}

    def check_same_header_work(self, ports):
        """Refuses to compare proxies that do different header work (FORWARDING_HEADERS)."""
        for name in ("haproxy", "nginx", "breakerbox"):
            conn = http.client.HTTPConnection("127.0.0.1", ports[name], timeout=5)
            conn.request("GET", "/forwarded")
            resp = conn.getresponse()
            seen = dict(kv.split("=", 1) for kv in resp.read().decode().split("|"))
            conn.close()
            expected = {"host": f"127.0.0.1:{ports[name]}", "xff": "127.0.0.1", "proto": "http",
                        "xfh": f"127.0.0.1:{ports[name]}"}
            wrong = {k: seen.get(k) for k, v in expected.items() if seen.get(k) != v}
            if wrong or not seen.get("via") or not resp.getheader("Via"):
                raise RuntimeError(f"{name} does not forward like the others: {seen}, response Via {resp.getheader('Via')!r}")
            print(f"  {name} forwards: {seen}; response Via: {resp.getheader('Via')}", file=sys.stderr)

    def check_answers(self, results):
        """A figure measured on failing requests means nothing: every proxied request must have been a
        2xx, every fast-fail request the fallback's 503, with no socket errors. Reported at the end
        (bench.py then exits 1), so one bad cell does not hide the rest of the report."""
        for (name, conns, path), runs in results.items():
            requests = sum(r["requests"] for r in runs)
            non2xx = sum(r["non2xx"] for r in runs)
            socket_errors = sum(r["socket_errors"] for r in runs)
            fast_fail = name == "breakerbox fast-fail"
            expected_non2xx = requests if fast_fail else 0
            if non2xx != expected_non2xx or socket_errors:
                self.failures.append(f"{name}, {conns} conns, {path}: {requests} requests, {non2xx} non-2xx "
                                     f"(expected {expected_non2xx}), {socket_errors} socket errors")
            # ...and carried the body the cell is named after (a short error page would be "fast").
            body = len(BODIES[path][1])
            least = min(r["bytes_per_request"] for r in runs)
            if not fast_fail and least < body:
                self.failures.append(f"{name}, {conns} conns, {path}: {least:.0f} bytes read per answer, "
                                     f"less than the {body}-byte body")

    def throughput(self):
        targets = {}
        ports = {"direct": self.upstream_port}
        ports["haproxy"], ports["nginx"], ports["breakerbox"] = free_port(), free_port(), free_port()
        targets["direct"] = None
        targets["haproxy"] = self.start_haproxy(ports["haproxy"])
        targets["nginx"] = self.start_nginx(ports["nginx"])
        self.bb_admin = free_port()
        targets["breakerbox"] = self.start_breakerbox(ports["breakerbox"], self.bb_admin)
        # The fast-fail route: force its circuit open; the static fallback answers without the network.
        conn = http.client.HTTPConnection("127.0.0.1", self.bb_admin, timeout=5)
        conn.request("POST", "/admin/circuits/failfast/force-open", headers={"Authorization": "Bearer bench"})
        assert conn.getresponse().status == 200
        self.check_same_header_work(ports)
        cells = [(c, path) for c in (1, 50) for path in BODIES]
        results = {}
        names = ("direct", "haproxy", "nginx", "breakerbox")
        for rep in range(self.args.reps):
            # Interleaved, and the order rotates from one repetition to the next, so that no target is
            # always the one measured right after another's run (or always first).
            order = names[rep % len(names):] + names[:rep % len(names)]
            for conns, path in cells:
                for name in order:
                    p = targets[name]
                    pids = p.pids() if p else []
                    r = self.wrk(ports[name], path, conns, self.args.seconds, pids)
                    results.setdefault((name, conns, path), []).append(r)
                if conns == 50 and path == "/small":  # fast-fail, right after the cell it is compared with
                    r = self.wrk(ports["breakerbox"], "/failfast", 50, self.args.seconds, targets["breakerbox"].pids())
                    results.setdefault(("breakerbox fast-fail", 50, "/small"), []).append(r)
            print(f"  repetition {rep + 1}/{self.args.reps} done", file=sys.stderr)
        for name, p in targets.items():
            if p:
                self.stop(p)
        self.check_answers(results)
        out = {k: {m: statistics.median(x[m] for x in v) if v[0][m] is not None else None for m in v[0]}
               for k, v in results.items()}
        for k, v in results.items():  # the tail moves with the machine: show how far, and who won each repetition
            out[k]["p99_range"] = (min(x["p99"] for x in v), max(x["p99"] for x in v))
            out[k]["p99s"] = [x["p99"] for x in v]
        return out

    def outage(self, name):
        port, admin = free_port(), free_port()
        if name == "haproxy":
            p = self.start_haproxy(port, outage=True)
        elif name == "nginx":
            p = self.start_nginx(port, outage=True)
        else:
            p = self.start_breakerbox(port, admin, outage=True, stale=(name == "breakerbox+stale"))
        # warm up (and fill the stale cache)
        for _ in range(20):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/small")
            c.getresponse().read()
            c.close()
        die_at, revive_at, end_at = 2.0, 6.0, 10.0
        records = []
        lock = threading.Lock()
        t0 = time.monotonic()
        stop = threading.Event()

        def client():
            conn = None
            while not stop.is_set():
                start = time.monotonic() - t0
                status, upstream = 0, False
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
                    conn.request("GET", "/small")
                    r = conn.getresponse()
                    r.read()
                    status = r.status
                    upstream = r.getheader("X-Upstream") == "yes" and r.getheader("X-Breakerbox-Fallback") is None
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException):
                    if conn:
                        conn.close()
                    conn = None
                end = time.monotonic() - t0
                with lock:
                    records.append((start, end, status, upstream))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        upstream_pids = [self.upstream.popen.pid] + children(self.upstream.popen.pid)
        time.sleep(die_at)
        for pid in upstream_pids:
            os.kill(pid, signal.SIGSTOP)  # hangs, as a sick upstream does: accepted but never answered
        time.sleep(revive_at - die_at)
        for pid in upstream_pids:
            os.kill(pid, signal.SIGCONT)
        time.sleep(end_at - revive_at)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        self.stop(p)

        during = [r for r in records if r[0] >= die_at]
        failed = sum(1 for r in during if not (200 <= r[2] < 300))
        # fast again: after the last request that started during the outage and took over 100 ms
        slow_ends = [r[1] for r in records if die_at <= r[0] < revive_at and r[1] - r[0] > 0.1]
        fast_again = (max(slow_ends) - die_at) if slow_ends else 0.0
        recovered = [r[1] for r in records if r[0] >= revive_at and r[3]]
        back = (min(recovered) - revive_at) if recovered else None
        return {"requests": len(during), "failed": failed, "fast_again_s": fast_again, "recovered_s": back}

    def memory(self, name):
        port, admin = free_port(), free_port()
        p = {"haproxy": self.start_haproxy, "nginx": self.start_nginx}.get(name)
        p = p(port) if p else self.start_breakerbox(port, admin)
        time.sleep(0.3)
        idle = rss_kib(p.pids())
        socks = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.settimeout(5)
            s.recv(65536)
        # What 1,000 idle keep-alive clients cost once the proxy has settled after answering them (the
        # same wait for every proxy; breakerbox parks connections idle for a second and gives the memory
        # back a second later).
        time.sleep(3.5)
        loaded = rss_kib(p.pids())
        for s in socks:
            s.close()
        self.stop(p)
        return {"idle_mib": idle / 1024, "with_1000_mib": loaded / 1024}


    # ---- TLS towards the upstream ------------------------------------------------------------------
    def tls_throughput(self):
        """Proxied requests to a TLS upstream: over pooled TLS connections (CPU per request), and with a
        new upstream connection per request, resuming the session or making a full handshake (new
        connections per second and CPU per connection), interleaved like the plain cells."""
        self.start_tls_upstream()
        results = {}
        starts = {"haproxy": self.start_haproxy, "nginx": self.start_nginx,
                  "breakerbox": lambda port, tls: self.start_breakerbox(port, free_port(), tls=tls)}
        for mode in ("pooled", "resumed", "full"):
            targets = {}
            for name, start in starts.items():
                port = free_port()
                targets[name] = (port, start(port, tls=mode))
            for rep in range(self.args.reps):
                order = list(targets)[rep % 3:] + list(targets)[:rep % 3]
                for name in order:
                    port, p = targets[name]
                    r = self.wrk(port, "/small", 50, self.args.seconds, p.pids())
                    results.setdefault((name, mode), []).append(r)
            for _, p in targets.values():
                self.stop(p)
            print(f"  TLS {mode} done", file=sys.stderr)
        for (name, mode), runs in results.items():
            if sum(r["non2xx"] + r["socket_errors"] for r in runs):
                self.failures.append(f"TLS {mode}, {name}: non-2xx answers or socket errors")
        return {k: {m: statistics.median(x[m] for x in v) if v[0][m] is not None else None for m in v[0]}
                for k, v in results.items()}

    @staticmethod
    def upstream_open_connections(port, tls):
        """The test upstream's count of open connections (its own /__stats connection included)."""
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/__stats")
        n = json.loads(conn.getresponse().read())["open_connections"]
        conn.close()
        return n - 1

    def tls_memory(self, name):
        """Memory per pooled upstream connection, TLS against plain: 1,000 concurrent slow requests make
        each proxy open 1,000 upstream connections (breakerbox-test-upstream, 300 ms per answer), which its
        pool then keeps; RSS 3.5 s later, minus RSS before, over the connections kept — for a TLS and a
        plain upstream."""
        upstream_bin = os.path.join(BUILD, "breakerbox-test-upstream")
        per_conn, kept = {}, {}
        for kind in ("plain", "tls"):
            args = [upstream_bin, "--listen", "127.0.0.1:0", "--threads", "1"]
            if kind == "tls":
                args += ["--tls-cert", self.pki["server"][0], "--tls-key", self.pki["server"][1]]
            up = subprocess.Popen(["taskset", "-c", LOAD_CORE] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                up_port = int(up.stdout.readline().split()[1])
                saved = self.tls_port, self.upstream_port
                self.tls_port = self.upstream_port = up_port
                port = free_port()
                tls = "pooled" if kind == "tls" else None
                if name == "breakerbox":
                    p = self.start_breakerbox(port, free_port(), tls=tls, pool_idle=2000)
                else:
                    p = {"haproxy": self.start_haproxy, "nginx": self.start_nginx}[name](port, tls=tls, idle_pool=2000)
                self.tls_port, self.upstream_port = saved
                time.sleep(0.3)
                before = rss_kib(p.pids())
                # 1,000 clients, one request each, all in flight together (the upstream answers after
                # 300 ms), all answered: the proxy opens 1,000 upstream connections and pools them.
                socks = []
                for _ in range(1000):
                    c = socket.create_connection(("127.0.0.1", port))
                    c.sendall(b"GET /slow?delay_ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
                    socks.append(c)
                for c in socks:
                    c.settimeout(30)
                    c.recv(65536)
                time.sleep(3.5)
                pooled = self.upstream_open_connections(up_port, kind == "tls")
                kept[kind] = pooled
                if name == "breakerbox" and pooled < 900: # ours must pool them; a peer's choice is reported
                    self.failures.append(f"TLS memory, {name}, {kind}: only {pooled} upstream connections were kept")
                per_conn[kind] = (rss_kib(p.pids()) - before) / pooled if pooled >= 100 else None
                for c in socks:
                    c.close()
                self.stop(p)
            finally:
                up.kill()
                up.wait(timeout=10)
        extra = per_conn["tls"] - per_conn["plain"] if per_conn["tls"] is not None and per_conn["plain"] is not None else None
        return {"plain_kib": per_conn["plain"], "tls_kib": per_conn["tls"], "tls_extra_kib": extra,
                "kept": f"{kept['plain']} / {kept['tls']}"}


def print_tls(res, mem):
    print("\n### TLS towards the upstream (50 connections, 64 B; nginx TLS upstream with session cache and tickets)\n")
    print("| upstream connections | proxy | req/s | p99 ms | proxy CPU µs/req | CPU vs HAProxy | req/s vs HAProxy |")
    print("|---|---|---:|---:|---:|---:|---:|")
    labels = {"pooled": "pooled (keep-alive)", "resumed": "new per request, resumed", "full": "new per request, full handshake"}
    for mode in ("pooled", "resumed", "full"):
        h = res[("haproxy", mode)]
        for name in ("haproxy", "nginx", "breakerbox"):
            r = res[(name, mode)]
            ratio = r["cpu_us"] / h["cpu_us"] if r["cpu_us"] and h["cpu_us"] else None
            print(f"| {labels[mode]} | {name} | {fmt(r['rps'], 0)} | {fmt(r['p99'], 3)} | {fmt(r['cpu_us'], 2)} | "
                  f"{fmt(ratio, 2)} | {r['rps'] / h['rps']:.2f} |")
    if mem:
        print("\n| proxy | upstream connections kept (plain / TLS) | KiB per pooled plain connection | KiB per pooled TLS connection | TLS extra |")
        print("|---|---:|---:|---:|---:|")
        for n, m in mem.items():
            print(f"| {n} | {m['kept']} | {fmt(m['plain_kib'])} | {fmt(m['tls_kib'])} | {fmt(m['tls_extra_kib'])} |")
        print("\n(per connection: RSS growth over the connections the upstream saw kept; '-' when fewer than 100 were)")


def percent(v):
    return "-" if v is None else f"{v * 100:.0f}%"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=3, help="length of each wrk run")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    ap.add_argument("--only", default="throughput,tls,outage,ejection,events,queue,cluster,streaming,memory,micro",
                    help="comma-separated parts to run (default: all): throughput, tls, outage, ejection, events, queue, cluster, "
                         "streaming, memory, micro")
    ap.add_argument("--stream-mib", type=int, help="streaming: MiB per download and upload (default 1024; 64 with --seconds 1)")
    ap.add_argument("--sse-events", type=int, help="streaming: SSE events per stream (default 200; 20 with --seconds 1)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    unknown = parts - {"throughput", "tls", "outage", "ejection", "events", "queue", "cluster", "streaming", "memory", "micro"}
    if unknown:
        ap.error(f"unknown part(s) for --only: {', '.join(sorted(unknown))}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    b = Bench(args)
    try:
        b.start_upstream()
        res, outage, mem, tls_res, tls_mem, ejected, streamed, queued = None, None, None, None, None, None, None, None
        clustered, streamed_large = None, None
        if "throughput" in parts:
            print(f"== throughput: {args.reps} interleaved repetitions of {args.seconds}s per cell "
                  f"(proxy on core {PROXY_CORE}, wrk + upstream on core {LOAD_CORE})", file=sys.stderr)
            res = b.throughput()
        if "tls" in parts:
            print(f"== TLS upstream: {args.reps} interleaved repetitions of {args.seconds}s per cell", file=sys.stderr)
            tls_res = b.tls_throughput()
            tls_mem = {n: b.tls_memory(n) for n in ("haproxy", "nginx", "breakerbox")}
        if "outage" in parts:
            print("== outage scenario", file=sys.stderr)
            outage = {n: b.outage(n) for n in ("haproxy", "nginx", "breakerbox", "breakerbox+stale")}
        if "ejection" in parts:
            print("== endpoint ejection scenario", file=sys.stderr)
            ejected = ejection.run(b, sys.modules[__name__])
        if "events" in parts:
            print("== the event stream's cost", file=sys.stderr)
            streamed = events.run(b, sys.modules[__name__])
        if "queue" in parts:
            print("== the queue fallback: durable enqueues, drain, bytes on disk", file=sys.stderr)
            queued = queue_fallback.run(b, sys.modules[__name__])
        if "cluster" in parts:
            print("== circuit state shared through Redis (scope: cluster): cost, spread, wasted calls, Redis commands",
                  file=sys.stderr)
            clustered = cluster.run(b, sys.modules[__name__])
        if "streaming" in parts:
            print("== streaming: large downloads and uploads, SSE latency", file=sys.stderr)
            streamed_large = streaming.run(b, sys.modules[__name__])
        if "memory" in parts:
            print("== memory", file=sys.stderr)
            mem = {n: b.memory(n) for n in ("haproxy", "nginx", "breakerbox")}
    finally:
        b.cleanup()
    if res:
        print_throughput(res)
    if tls_res:
        print_tls(tls_res, tls_mem)
    if outage:
        print_outage(outage)
    if ejected:
        ejection.print_results(ejected)
    if streamed:
        events.print_results(streamed)
    if queued:
        queue_fallback.print_results(queued)
    if clustered:
        cluster.print_results(clustered)
    if streamed_large:
        streaming.print_results(streamed_large)
    if mem:
        print_memory(mem)
    if "micro" in parts:
        if os.path.exists(MICRO):
            print_micro()
        else:
            b.failures.append(f"{MICRO} is missing (configure with -DBREAKERBOX_BUILD_BENCH=ON)")
    if b.failures:
        print("\n### Checks failed — the figures above are not valid\n")
        for f in b.failures:
            print(f"- {f}")
        sys.exit(1)


def print_throughput(res):

    print("\n### Throughput and latency (median)\n")
    print("| conns | body | target | req/s | p50 ms | p99 ms (range) | proxy CPU µs/req | vs direct | vs HAProxy req/s | CPU vs HAProxy |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for conns in (1, 50):
        for path in BODIES:
            d = res[("direct", conns, path)]
            h = res[("haproxy", conns, path)]
            for name in ("direct", "haproxy", "nginx", "breakerbox"):
                r = res[(name, conns, path)]
                cpu_ratio = (r["cpu_us"] / h["cpu_us"]) if r["cpu_us"] and h["cpu_us"] else None
                lo, hi = r["p99_range"]
                print(f"| {conns} | {BODIES[path][0]} | {name} | {fmt(r['rps'], 0)} | {fmt(r['p50'], 3)} | "
                      f"{fmt(r['p99'], 3)} ({lo:.2f}–{hi:.2f}) | {fmt(r['cpu_us'], 2)} | {r['rps'] / d['rps']:.2f} | {r['rps'] / h['rps']:.2f} | {fmt(cpu_ratio, 2)} |")
    print("\np99 in parentheses: the range over the repetitions. breakerbox's p99 against HAProxy's, repetition by repetition:")
    for conns in (1, 50):
        for path in BODIES:
            pairs = list(zip(res[("breakerbox", conns, path)]["p99s"], res[("haproxy", conns, path)]["p99s"]))
            lower = sum(1 for b, h in pairs if b <= h)
            print(f"- {conns} conn{'s' if conns > 1 else ''}, {BODIES[path][0]}: "
                  f"at or below HAProxy's in {lower} of {len(pairs)}")
    print_cpu_split(res)
    ff = res[("breakerbox fast-fail", 50, "/small")]
    bbp = res[("breakerbox", 50, "/small")]
    print(f"\n### Fast-fail (circuit forced open, static fallback, 50 connections)\n")
    print(f"breakerbox fast-fail: {fmt(ff['rps'], 0)} req/s, p99 {fmt(ff['p99'], 3)} ms, {fmt(ff['cpu_us'], 2)} µs CPU/req — "
          f"{ff['rps'] / bbp['rps']:.2f}x its proxied throughput ({fmt(bbp['rps'], 0)} req/s); "
          f"{bbp['cpu_us'] / ff['cpu_us']:.2f}x less CPU per answer than per proxied request. "
          f"Busy during fast-fail: proxy core {percent(ff['proxy_core_busy'])}, load core {percent(ff['load_core_busy'])} "
          f"(proxied: {percent(bbp['proxy_core_busy'])}, {percent(bbp['load_core_busy'])}) — "
          f"where a load core is near 100%, req/s measure wrk, and the CPU ratio is the one that measures breakerbox.")


def print_cpu_split(res):
    # The proxies make the same system calls and send the same TCP segments per request, so their kernel
    # time is the same work; only user time is the proxy's own. This table shows how much of a CPU ratio
    # against HAProxy is within the proxy's reach: a ratio below (breakerbox kernel / HAProxy total) would
    # need less kernel work per request, not better code.
    print("\n### Where the CPU goes (µs per request, median; 50 connections)\n")
    print("| body | target | user | kernel | total | lowest CPU ratio vs HAProxy reachable with this kernel time | proxy core busy | load core busy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in BODIES:
        h = res[("haproxy", 50, path)]
        for name in ("haproxy", "nginx", "breakerbox"):
            r = res[(name, 50, path)]
            floor = f"{r['kernel_us'] / h['cpu_us']:.2f}" if name != "haproxy" else ""
            print(f"| {BODIES[path][0]} | {name} | {fmt(r['user_us'], 2)} | {fmt(r['kernel_us'], 2)} | "
                  f"{fmt(r['cpu_us'], 2)} | {floor} | {percent(r['proxy_core_busy'])} | {percent(r['load_core_busy'])} |")


def print_outage(outage):
    print("\n### Outage: the upstream hangs (SIGSTOP) at t=2s and comes back at t=6s; 8 clients in a loop\n")
    print("| proxy | requests after t=2s | failed | answered fast again after | traffic reaches the recovered upstream after |")
    print("|---|---:|---:|---:|---:|")
    for n, o in outage.items():
        print(f"| {n} | {o['requests']} | {o['failed']} | {fmt(o['fast_again_s'], 2)} s | {fmt(o['recovered_s'], 2)} s |")


def print_memory(mem):
    print("\n### Memory (RSS)\n")
    print("| proxy | idle MiB | with 1,000 idle keep-alive clients MiB |")
    print("|---|---:|---:|")
    for n, m in mem.items():
        print(f"| {n} | {fmt(m['idle_mib'])} | {fmt(m['with_1000_mib'])} |")


def print_micro():
    print("\n### Microbenchmarks (Google Benchmark)\n")
    out = subprocess.run([MICRO, "--benchmark_min_time=0.2", "--benchmark_format=json"], capture_output=True, text=True, timeout=300).stdout
    print("| benchmark | ns/op (wall) | ns/op (CPU) |")
    print("|---|---:|---:|")
    for bm in json.loads(out)["benchmarks"]:
        print(f"| {bm['name']} | {bm['real_time']:.1f} | {bm['cpu_time']:.1f} |")


if __name__ == "__main__":
    main()
