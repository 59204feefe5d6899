"""Circuit state shared across replicas through Redis (`circuit_breaker.scope: cluster`; docs/cluster.md):
what it costs and how fast it spreads (bench.py `--only cluster`). Standard library only.

Everything runs on this machine: a redis-server of our own (Debian's /usr/bin/redis-server) on a Unix
socket in the bench's temporary folder (`--port 0 --save "" --appendonly no`), breakerbox replicas on
127.0.0.1 ephemeral ports, and an upstream; all of it is stopped at the end, whatever happens (the
processes are bench.py's, which kills them in its `finally`). Four figures, reported and never
asserted — the bench fails only when a process does not start or requests fail:

1. **Cost per proxied request**: one replica's CPU per request (utime+stime from /proc, wrk with 50
   keep-alive connections for nginx's 64 B `/small`, like bench.py's throughput cells: breakerbox alone
   on core 0, wrk and the upstream on core 1) for the same configuration with `scope: local` (the
   reference, "off"), `scope: cluster`, and `scope: cluster` with its Redis SIGSTOPped (a Redis of its
   own, stopped for the whole figure), plus the same without any `cluster` block; interleaved, the order
   rotating each repetition, medians. In a full run also user-space instructions under callgrind, per
   thread: the worker's per request (the request path) and the main thread's per sync.
2. **Time until the whole fleet rejects**: N replicas (N = 2, 4, 8), started at random moments within
   one sync interval so that their sync loops run at independent phases; replica A (with quorum 2: A and
   B at once) trips on failing requests (`consecutive_failures: 3`), every other replica is polled on its
   own path (about every 1.5 ms) and its first 503 with the cluster's detail timestamped; a thread also
   watches Redis for the verdict (GET every 0.5 ms). Reported: from the answer of the tripping failure to
   the "open" verdict in Redis (the tripping replica's nudged sync), and to the first cluster rejection at
   the last replica (the others' next periodic sync), p50/p99 over the trials, against the issue's goal
   (< 100 ms at p99), for `sync_interval` 500 ms and 100 ms (and 90 ms for N = 8), and once with a
   tripping replica that has no admin listener. Each trial on a new fleet with a `key_prefix` of its own
   (no Redis state from the trial before). Short runs (`--seconds 1`): N = 4 at 100 ms, 3 trials per row.
3. **Upstream calls wasted before the whole fleet is open**, cluster against local-only: N replicas
   with the same breaker (`consecutive_failures: 5`, the default failure-rate rule), each with its own
   client at a fixed rate (even: 20 req/s each; skewed: two hot replicas at 100 req/s, the rest at
   2 req/s), 1 s healthy, then every upstream answer is a 500 (`POST /__config?status=500` on
   breakerbox-test-upstream); the upstream calls from then until every replica has rejected a request.
   Local and cluster interleaved, median of up to 3 runs. Short runs: N = 4, even traffic.
4. **Redis commands per second per replica** (`breakerbox_cluster_redis_commands_total` over a window)
   at about 10 req/s and at wrk's full rate, for 1 and 4 clustered upstreams and sync intervals of 500
   and 100 ms, against clustered upstreams / sync interval and against a per-request design (two Redis
   calls per request).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

B = None  # bench.py's module (set by run)
TOKEN = "bench"
REDIS = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin") or "/usr/bin/redis-server"
CLUSTER_DETAIL = "cluster"  # the cluster rejection's detail: "the cluster's circuit is open (a quorum of replicas)"
GOAL_MS = 100  # the goal: every replica rejects within 100 ms (p99) of the trip


# ---- small helpers ------------------------------------------------------------------------------------
def pct(values, p):
    """The p-th percentile, linear between the closest ranks (with 20 values, p99 is near the maximum)."""
    s = sorted(v for v in values if v is not None)
    if not s:
        return None
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def f(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def request(port, method, path, headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def metrics(admin):
    return request(admin, "GET", "/metrics")[2].decode(errors="replace")


def metric(text, name, labels=""):
    """The value of the series `name{labels}` (labels as written in the exposition, or "" for none)."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(None, 1)[1])
    return None


def classify(status, headers, body):
    """ok (the upstream's 200), failed (the upstream's 500, relayed), cluster_open (a 503 by the cluster's
    verdict), local_open (a 503 by the replica's own breaker), or what else it was."""
    if status == 200:
        return "ok"
    if status == 500:
        return "failed"
    if status == 503 and headers.get("x-breakerbox-error") == "circuit_open":
        try:
            detail = json.loads(body).get("detail", "")
        except ValueError:
            detail = ""
        return "cluster_open" if CLUSTER_DETAIL in detail else "local_open"
    return f"status {status}"


class Conn:
    """One keep-alive client connection; get() returns (kind, monotonic time the answer was read)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read()
            kind = classify(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
            if r.getheader("Connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            kind = f"error {type(e).__name__}"
        return kind, time.monotonic()

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None


class Client(threading.Thread):
    """Requests to one replica: at `rate` per second on a fixed schedule (a late answer does not shift the
    schedule), or back to back with `gap` seconds between (rate None). Records (sent, answered, kind);
    ends when `stop` is set, or after its first answer of a kind in `until`."""

    def __init__(self, port, path, stop, rate=None, gap=0.001, until=()):
        super().__init__(daemon=True)
        self.port, self.path, self.stop, self.rate, self.gap, self.until = port, path, stop, rate, gap, set(until)
        self.records = []

    def run(self):
        c = Conn(self.port)
        next_t = time.monotonic() + (random.uniform(0, 1 / self.rate) if self.rate else 0)
        try:
            while not self.stop.is_set():
                if self.rate:
                    wait = next_t - time.monotonic()
                    if wait > 0 and self.stop.wait(wait):
                        break
                    next_t += 1 / self.rate
                sent = time.monotonic()
                kind, answered = c.get(self.path)
                self.records.append((sent, answered, kind))
                if kind in self.until:
                    break
                if not self.rate and self.gap:
                    time.sleep(self.gap)
        finally:
            c.close()

    def first(self, kinds, after=0.0):
        return next((r for r in self.records if r[2] in kinds and r[1] >= after), None)


# ---- Redis: our own server, and the few commands the bench reads with -------------------------------------
class RedisConn:
    """A RESP connection over the Unix socket: call() sends one command and returns the reply (bytes, int,
    list or None), or raises."""

    def __init__(self, sock_path, timeout=2):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(sock_path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def call(self, *args):
        parts = [str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self.read()

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected RESP line {line!r}")

    def close(self):
        self.file.close()
        self.sock.close()


def redis_call(sock_path, *args, timeout=2):
    c = RedisConn(sock_path, timeout)
    try:
        return c.call(*args)
    finally:
        c.close()


class VerdictWatch(threading.Thread):
    """When the cluster's verdict in Redis becomes "open ..." (GET every 0.5 ms on one connection)."""

    def __init__(self, sock_path, key, stop):
        super().__init__(daemon=True)
        self.sock_path, self.key, self.stop, self.seen = sock_path, key, stop, None

    def run(self):
        c = RedisConn(self.sock_path)
        try:
            while not self.stop.is_set() and self.seen is None:
                if (c.call("GET", self.key) or b"").startswith(b"open "):
                    self.seen = time.monotonic()
                    break
                time.sleep(0.0005)
        finally:
            c.close()


class Redis:
    def __init__(self, bench, name):
        self.dir = os.path.join(bench.dir, f"redis-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.log = os.path.join(self.dir, "redis.log")
        self.proc = B.Proc(f"redis-server ({name})",
                           [REDIS, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700", "--save", "",
                            "--appendonly", "no", "--dir", self.dir, "--logfile", self.log], B.LOAD_CORE)
        bench.procs.append(self.proc)
        self.stopped = False
        deadline = time.monotonic() + 10
        while True:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"redis-server ({name}) exited with status {self.proc.popen.returncode}: {self.tail()}")
            try:
                if redis_call(self.sock, "PING", timeout=0.5) == b"PONG":
                    break
            except (OSError, RuntimeError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server ({name}) does not answer PING on {self.sock} after 10 s: {self.tail()}")
            time.sleep(0.05)

    def tail(self):
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()[-500:].strip()
        except OSError:
            return "(no log)"

    def call(self, *args):
        return redis_call(self.sock, *args)

    def sigstop(self):
        os.kill(self.proc.popen.pid, signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        if self.stopped:
            os.kill(self.proc.popen.pid, signal.SIGCONT)
            self.stopped = False


# ---- breakerbox replicas --------------------------------------------------------------------------------
def cluster_block(redis, rid, prefix, interval_ms=None, quorum=None):
    extra = ""
    if interval_ms:
        extra += f", sync_interval: {interval_ms}ms"
    if quorum:
        extra += f", quorum: {quorum}"
    return f'cluster: {{redis: "unix:{redis.sock}", replica_id: {rid}, key_prefix: {prefix}{extra}}}\n'


class Replica:
    def __init__(self, bench, name, body, core, admin=True):
        """`body`: the configuration after the listener/admin lines (cluster block, upstreams)."""
        self.bench, self.name, self.body, self.core, self.admin_enabled = bench, name, body, core, admin
        self.proc = None
        self.start()

    def start(self):
        # free_port() can hand out the same port twice, or one another process takes before breakerbox
        # binds it (thousands of starts in a run): then again with other ports.
        for attempt in range(3):
            try:
                return self.start_once()
            except RuntimeError as e:
                if attempt == 2 or not ("in use" in str(e) or "used by" in str(e)):
                    raise
                self.stop()

    def start_once(self):
        self.port = B.free_port()
        self.admin = None
        while self.admin_enabled and self.admin in (None, self.port):
            self.admin = B.free_port()
        admin = (f'admin: {{address: "127.0.0.1:{self.admin}", token: {TOKEN}}}' if self.admin_enabled
                 else "admin: {enabled: false}")
        conf = self.bench.write(f"cluster-{self.name}.yaml", f"""workers: 1
listeners: [{{name: main, address: "127.0.0.1:{self.port}"}}]
{admin}
logging: {{level: error}}
limits: {{max_connections: {B.connection_limit()}}}
{self.body}""")
        wait_binary()
        self.proc = B.Proc(f"breakerbox ({self.name})", [B.BREAKERBOX, "--config", conf], self.core)
        self.bench.procs.append(self.proc)
        B.wait_port(self.port, self.proc)
        if self.admin:
            B.wait_port(self.admin, self.proc)

    def stop(self):
        if self.proc and self.proc in self.bench.procs:
            self.bench.stop(self.proc)


def start_staggered(bench, names_bodies, core, interval_ms, admin=lambda i: True):
    """Replicas started at random moments within one sync interval, so that their sync loops run at
    independent phases, as in a fleet started over time."""
    offsets = sorted(random.uniform(0, interval_ms / 1000) for _ in names_bodies)
    t0 = time.monotonic()
    out = []
    for i, ((name, body), off) in enumerate(zip(names_bodies, offsets)):
        wait = t0 + off - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        out.append(Replica(bench, name, body, core, admin(i)))
    return out


def loadavg():
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def wait_binary():
    """The binary may be rebuilt under the bench: wait a little for it to be back."""
    deadline = time.monotonic() + 120
    while not os.access(B.BREAKERBOX, os.X_OK):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{B.BREAKERBOX} is missing")
        time.sleep(1)


# ---- 1. cost per proxied request -------------------------------------------------------------------------
def cost_body(bench, mode, redis, prefix):
    """bench.py's breakerbox configuration for the throughput cells, with a `cluster` block (none for
    "no cluster block") and the upstream's scope."""
    scope = "cluster" if "scope: cluster" in mode else "local"
    block = "" if mode == "no cluster block" else cluster_block(redis, f"cost-{COST_MODES.index(mode)}", prefix)
    return f"""{block}upstreams:
  svc:
    endpoints: ["127.0.0.1:{bench.upstream_port}"]
    routes: {{path_prefix: /}}
    connect_timeout: 1s
    request_timeout: 30s
    bulkhead: {{max_concurrent: 1000, max_queue: 1000}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{consecutive_failures: 5, scope: {scope}}}
"""


COST_MODES = ("no cluster block", "scope: local", "scope: cluster", "scope: cluster, Redis SIGSTOPped")


def redis_state(admin):
    m = metrics(admin)
    return (metric(m, "breakerbox_cluster_redis_up"), metric(m, "breakerbox_cluster_redis_commands_total"),
            metric(m, "breakerbox_cluster_sync_duration_seconds_count"),
            metric(m, "breakerbox_cluster_sync_failures_total", 'reason="timeout"'))


def wait_redis_up(admin, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_state(admin)[0] == want:
            return True
        time.sleep(0.05)
    return False


def cost(bench, up_redis, stopped_redis, findings):
    seconds, reps = bench.args.seconds, bench.args.reps
    boxes = {}
    for mode in COST_MODES:
        redis = stopped_redis if "SIGSTOP" in mode else up_redis
        boxes[mode] = Replica(bench, f"cost-{len(boxes)}", cost_body(bench, mode, redis, "cost"), B.PROXY_CORE)
    for mode in ("scope: cluster", "scope: cluster, Redis SIGSTOPped"):
        if not wait_redis_up(boxes[mode].admin, 1):
            findings.append(f"cost/{mode}: not in sync with Redis 5 s after start")
    stopped_redis.sigstop()  # from now on every sync of that replica misses command_timeout
    time.sleep(0.6)
    if not wait_redis_up(boxes["scope: cluster, Redis SIGSTOPped"].admin, 0):
        findings.append("cost/Redis SIGSTOPped: breakerbox_cluster_redis_up still 1 after 5 s")
    results = {}
    for rep in range(reps):
        order = COST_MODES[rep % len(COST_MODES):] + COST_MODES[:rep % len(COST_MODES)]
        for mode in order:
            bb = boxes[mode]
            state_before = redis_state(bb.admin)
            main_before = main_thread_ns(bb.proc)
            t0 = time.monotonic()
            r = bench.wrk(bb.port, "/small", 50, seconds, bb.proc.pids())
            elapsed = time.monotonic() - t0
            main_after = main_thread_ns(bb.proc)
            state_after = redis_state(bb.admin)
            # The main thread runs the sync (and the admin listener, answering the two /metrics reads here).
            r["main_us_per_s"] = (main_after - main_before) / 1000 / elapsed if main_after and main_before else None
            if r["non2xx"] or r["socket_errors"]:
                bench.failures.append(f"cluster/cost {mode}: {r['non2xx']} non-2xx answers, {r['socket_errors']} socket errors")
            if r["bytes_per_request"] < 64:
                bench.failures.append(f"cluster/cost {mode}: {r['bytes_per_request']:.0f} bytes per answer, less than the 64 B body")
            r["redis_up"] = state_after[0]
            r["commands_per_s"] = ((state_after[1] - state_before[1]) / elapsed
                                   if state_after[1] is not None and state_before[1] is not None else None)
            r["timeouts_per_s"] = ((state_after[3] - state_before[3]) / elapsed
                                   if state_after[3] is not None and state_before[3] is not None else None)
            results.setdefault(mode, []).append(r)
        print(f"  cluster: cost repetition {rep + 1}/{reps} done", file=sys.stderr)
    for mode, runs in results.items():
        want = {"scope: cluster": 1, "scope: cluster, Redis SIGSTOPped": 0}.get(mode)
        if want is not None and any(r["redis_up"] != want for r in runs):
            findings.append(f"cost/{mode}: breakerbox_cluster_redis_up was {[r['redis_up'] for r in runs]} after the runs (expected {want})")
    instructions = None
    if seconds > 1 and shutil.which("valgrind") and shutil.which("callgrind_control"):
        for bb in boxes.values():
            bb.stop()
        stopped_redis.sigcont()  # the callgrind runs stop it themselves, once the replica is in sync
        instructions = {mode: callgrind(bench, mode, up_redis, stopped_redis, findings) for mode in COST_MODES}
        base = instructions.get("scope: local")
        for mode, r in instructions.items():
            # The sync's own instructions: the main thread's, minus what it does per second with scope: local
            # (its timers, the metrics sampler), over the syncs in the window.
            if r and base and r["syncs"]:
                r["net_per_sync"] = (r["main_total"] - base["main_total"] / base["seconds"] * r["seconds"]) / r["syncs"]
    else:
        for bb in boxes.values():
            bb.stop()
        stopped_redis.sigcont()
    med = {}
    for mode, runs in results.items():
        med[mode] = {k: statistics.median(r[k] for r in runs) if all(r[k] is not None for r in runs) else None
                     for k in ("rps", "p50", "p99", "cpu_us", "user_us", "kernel_us", "proxy_core_busy",
                               "load_core_busy", "commands_per_s", "timeouts_per_s", "main_us_per_s")}
        med[mode]["cpu_range"] = (min(r["cpu_us"] for r in runs), max(r["cpu_us"] for r in runs))
    raw = {mode: [(r["cpu_us"], r["rps"]) for r in runs] for mode, runs in results.items()}
    return {"cells": med, "raw": raw, "instructions": instructions, "seconds": seconds, "reps": reps}


def callgrind(bench, mode, up_redis, stopped_redis, findings, count=4000):
    """User-space instructions under callgrind, per thread (--separate-threads): the worker's per proxied
    request, the main thread's per sync (bench/instructions_per_request.sh's method, with Redis)."""
    redis = stopped_redis if "SIGSTOP" in mode else up_redis
    port = admin = B.free_port()
    while admin == port:
        admin = B.free_port()
    out = os.path.join(bench.dir, f"cg-{mode.split()[-1]}-{port}")
    conf = bench.write(f"cluster-cg-{port}.yaml", f"""workers: 1
listeners: [{{name: main, address: "127.0.0.1:{port}"}}]
admin: {{address: "127.0.0.1:{admin}", token: {TOKEN}}}
logging: {{level: error}}
{cost_body(bench, mode, redis, "cg").replace('replica_id: ', 'command_timeout: 1s, replica_id: ')}""")
    p = B.Proc(f"breakerbox under callgrind ({mode})",
               ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
                B.BREAKERBOX, "--config", conf], B.PROXY_CORE)
    bench.procs.append(p)
    try:
        B.wait_port(port, p, timeout=60)
        B.wait_port(admin, p, timeout=60)
        scoped = "scope: cluster" in mode
        if scoped and not wait_redis_up(admin, 1, timeout=20):
            findings.append(f"callgrind/{mode}: not in sync with Redis")
        if "SIGSTOP" in mode:
            stopped_redis.sigstop()
            if not wait_redis_up(admin, 0, timeout=20):
                findings.append(f"callgrind/{mode}: breakerbox_cluster_redis_up still 1 with Redis stopped")
        send_keepalive(port, 300)
        syncs0 = redis_state(admin)[2] if scoped else None
        subprocess.run(["callgrind_control", "-z", str(p.popen.pid)], capture_output=True, timeout=60)
        t0 = time.monotonic()
        send_keepalive(port, count)
        elapsed = time.monotonic() - t0
        subprocess.run(["callgrind_control", "-d", str(p.popen.pid)], capture_output=True, timeout=60)
        syncs1 = redis_state(admin)[2] if scoped else None
        totals = {}
        for name in os.listdir(bench.dir):
            m = re.fullmatch(re.escape(os.path.basename(out)) + r"\.1-(\d+)", name)
            if m:
                with open(os.path.join(bench.dir, name)) as fh:
                    for line in fh:
                        if line.startswith(("summary:", "totals:")):
                            totals[int(m.group(1))] = int(line.split()[1])
                            break
        if not totals:
            findings.append(f"callgrind/{mode}: no per-thread dump")
            return None
        main_ir = totals.get(1, 0)
        worker_ir = max(v for k, v in totals.items() if k != 1) if len(totals) > 1 else None
        # The main thread also answered the two /metrics reads around the window (not counted: they are
        # outside it) — inside it, it ran the syncs and its timers.
        syncs = (syncs1 - syncs0) if syncs1 is not None and syncs0 is not None else None
        return {"total_per_request": sum(totals.values()) / count,
                "worker_per_request": worker_ir / count if worker_ir is not None else None,
                "main_total": main_ir, "main_per_request": main_ir / count, "seconds": elapsed,
                "syncs": syncs, "net_per_sync": None, "threads": len(totals)}
    finally:
        stopped_redis.sigcont()
        bench.stop(p)


def main_thread_ns(proc):
    """Nanoseconds on a CPU of the process's main thread (the sync task's and the admin listener's), from
    schedstat: clock ticks (10 ms) are too coarse for a thread that works microseconds per second."""
    try:
        pid = proc.pids()[0]
        with open(f"/proc/{pid}/task/{pid}/schedstat") as fh:
            return int(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def send_keepalive(port, n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    fh = s.makefile("rb")
    req = b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n"
    try:
        for _ in range(n):
            s.sendall(req)
            status = fh.readline()
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"callgrind run: answer {status!r}")
            length = 0
            while (h := fh.readline()) not in (b"\r\n", b""):
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":")[1])
            fh.read(length)
    finally:
        s.close()


def one_upstream(test_port, breaker):
    """The upstream `svc` of figures 2 and 3: `breaker` (flow-map entries) plus a long open time without
    jitter, so that nothing half-opens within a trial."""
    return f"""upstreams:
  svc:
    endpoints: ["127.0.0.1:{test_port}"]
    routes: {{path_prefix: /}}
    request_timeout: 5s
    retries: {{max_attempts: 1}}
    outlier_detection: {{enabled: false}}
    circuit_breaker: {{{breaker}, open_duration: 30s, open_duration_jitter: 0}}
"""


# ---- 2. time until the whole fleet rejects ------------------------------------------------------------------
def spread_body(test_port, redis, rid, prefix, interval_ms, quorum):
    # Only the "quorum of open replicas" rule can open the cluster here (the failure-rate rule is off), so
    # the figure is the propagation of one trip; a long open time so that nothing half-opens in a trial.
    return cluster_block(redis, rid, prefix, interval_ms, quorum) + one_upstream(
        test_port, "scope: cluster, consecutive_failures: 3, failure_rate: {enabled: false}")


def trip(port, out, i):
    """Failing requests until the circuit rejects one; out[i] = the time the tripping failure's answer
    (the last 500) was read, or an error text."""
    c = Conn(port)
    last_fail = None
    try:
        for _ in range(50):
            kind, t = c.get("/trip?status=500")
            if kind == "failed":
                last_fail = t
            elif kind in ("local_open", "cluster_open"):
                out[i] = last_fail if last_fail is not None else "rejected before any failure"
                return
            else:
                out[i] = f"tripping request answered {kind}"
                return
        out[i] = "50 failures did not trip the circuit"
    finally:
        c.close()


def wait_all_pass(targets, deadline):
    """Every {name: (port, path)} answers 200: the cluster's verdict is gone everywhere. Returns those that
    still do not, with their last answer."""
    pending = dict(targets)
    last = {}
    while pending and time.monotonic() < deadline:
        for key, (port, path) in list(pending.items()):
            c = Conn(port)
            kind, _ = c.get(path)
            c.close()
            if kind == "ok":
                del pending[key]
            else:
                last[key] = kind
        if pending:
            time.sleep(0.01)
    return {k: last.get(k) for k in pending}


def spread_row(bench, ctx, interval_ms, quorum, n, trials, tripper_admin=True):
    """`trials` trips, each on a new fleet of N replicas with a key prefix of its own (so no trial meets
    the Redis state of the one before: no reset, no "recovered" period). Returns per trial the delay (s)
    of every other replica's first cluster rejection after the tripping failure (None: not seen within the
    deadline), and of the verdict in Redis."""
    ntrip = quorum
    redis = ctx["redis"]
    interval = interval_ms / 1000
    out = []
    for t in range(trials):
        prefix = f"spread-{interval_ms}-{quorum}-{n}-{'a' if tripper_admin else 'n'}-{t}"
        stop = threading.Event()
        fleet = []
        try:
            fleet = start_staggered(bench, [(f"spread-r{i}", spread_body(ctx["test_port"], redis, f"r{i}", prefix, interval_ms, quorum))
                                            for i in range(n)],
                                    B.PROXY_CORE, interval_ms, admin=lambda i: tripper_admin or i >= ntrip)
            trippers, pollers = fleet[:ntrip], fleet[ntrip:]
            targets = {f"r{i}": (r.port, "/ok" if i < ntrip else f"/p{i}") for i, r in enumerate(fleet)}
            left = wait_all_pass(targets, time.monotonic() + 5 + 4 * interval)
            if left:
                bench.failures.append(f"cluster/spread N={n} {interval_ms} ms quorum {quorum}: {left} "
                                      "(replica: last answer) do not pass healthy requests")
                break
            watch = VerdictWatch(redis.sock, "{" + prefix + ":svc}:verdict", stop)
            watch.start()
            polls = [Client(r.port, f"/p{ntrip + j}", stop, gap=0.001, until=("cluster_open",))
                     for j, r in enumerate(pollers)]
            for c in polls:
                c.start()
            time.sleep(0.05 + random.uniform(0, interval))  # a random moment against the replicas' sync phases
            trip_at = [None] * ntrip
            threads = [threading.Thread(target=trip, args=(r.port, trip_at, i), daemon=True) for i, r in enumerate(trippers)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=30)
            bad = [x for x in trip_at if not isinstance(x, float)]
            if bad:
                bench.failures.append(f"cluster/spread N={n} {interval_ms} ms: {bad}")
                break
            t_ref = max(trip_at)
            deadline = t_ref + max(3.0, 8 * interval)
            for c in polls:
                c.join(timeout=max(0.0, deadline - time.monotonic()))
            stop.set()
            for c in polls:
                c.join(timeout=5)
            watch.join(timeout=5)
            delays = []
            for c in polls:
                odd = [r for r in c.records if r[2] not in ("ok", "cluster_open")]
                if odd:
                    bench.failures.append(f"cluster/spread N={n}: a poll of {c.path} answered {odd[0][2]}")
                hit = c.first(("cluster_open",))
                delays.append(hit[1] - t_ref if hit else None)
            gaps = [b[0] - a[0] for c in polls for a, b in zip(c.records, c.records[1:])]
            out.append({"delays": delays, "poll_gap": statistics.mean(gaps) if gaps else None,
                        "in_redis": watch.seen - t_ref if watch.seen else None})
        finally:
            stop.set()
            for r in fleet:
                r.stop()
    return out


SPREAD_ROWS_FULL = [(500, 1, 2), (500, 1, 4), (500, 1, 8), (100, 1, 2), (100, 1, 4), (100, 1, 8), (100, 2, 4), (100, 2, 8),
                    (90, 1, 8)]
SPREAD_ROWS_SMOKE = [(100, 1, 4), (100, 2, 4)]


def spread(bench, ctx, findings):
    smoke = bench.args.seconds <= 1
    rows = SPREAD_ROWS_SMOKE if smoke else SPREAD_ROWS_FULL
    res = []
    trials = 3
    for interval_ms, quorum, n in rows:
        trials = 3 if smoke else (20 if interval_ms >= 500 else 30)
        runs = spread_row(bench, ctx, interval_ms, quorum, n, trials)
        res.append(summarise_spread(interval_ms, quorum, n, runs, True))
        print(f"  cluster: spread N={n}, sync_interval {interval_ms} ms, quorum {quorum}: done", file=sys.stderr)
    # A replica without an admin listener, for the tripping one: see docs/benchmarks.md.
    interval_ms, quorum, n = (100, 1, 4)
    runs = spread_row(bench, ctx, interval_ms, quorum, n, trials, tripper_admin=False)
    res.append(summarise_spread(interval_ms, quorum, n, runs, False))
    print(f"  cluster: spread N={n}, {interval_ms} ms, tripping replica without admin listener: done", file=sys.stderr)
    for r in res:
        if r["missed"]:
            findings.append(f"spread N={r['n']}, {r['interval_ms']} ms, quorum {r['quorum']}: {r['missed']} replica-trials "
                            "saw no cluster rejection within the deadline")
    return {"rows": res}


def summarise_spread(interval_ms, quorum, n, runs, tripper_admin):
    last = [max(r["delays"]) * 1000 if r["delays"] and None not in r["delays"] else None for r in runs]
    every = [d * 1000 for r in runs for d in r["delays"] if d is not None]
    missed = sum(1 for r in runs for d in r["delays"] if d is None)
    gaps = [r["poll_gap"] for r in runs if r["poll_gap"]]
    in_redis = [r["in_redis"] * 1000 for r in runs if r["in_redis"] is not None]
    return {"interval_ms": interval_ms, "quorum": quorum, "n": n, "tripper_admin": tripper_admin, "trials": len(runs),
            "last_p50": pct(last, 50), "last_p99": pct(last, 99), "last_max": max((x for x in last if x is not None), default=None),
            "each_p50": pct(every, 50), "missed": missed, "poll_gap_ms": statistics.mean(gaps) * 1000 if gaps else None,
            "redis_p50": pct(in_redis, 50), "redis_max": max(in_redis, default=None),
            "redis_late": sum(1 for x in in_redis if x > interval_ms / 2)}


# ---- 3. upstream calls wasted before the fleet is open -----------------------------------------------------
def waste_body(test_port, redis, rid, prefix, scope):
    return cluster_block(redis, rid, prefix) + one_upstream(test_port, f"scope: {scope}, consecutive_failures: 5")


SHAPES = {"even": lambda n: [20.0] * n, "skewed": lambda n: [100.0, 100.0] + [2.0] * (n - 2)}


def waste_run(bench, ctx, n, shape, scope, rep):
    test_port = ctx["test_port"]
    prefix = f"waste-{n}-{shape}-{scope}-{rep}"
    request(test_port, "POST", "/__reset")
    fleet = start_staggered(bench, [(f"{prefix}-r{i}", waste_body(test_port, ctx["redis"], f"r{i}", prefix, scope))
                                    for i in range(n)], B.PROXY_CORE, 500)
    stop = threading.Event()
    rates = SHAPES[shape](n)
    clients = [Client(r.port, f"/r{i}", stop, rate=rates[i]) for i, r in enumerate(fleet)]
    try:
        for c in clients:
            c.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        _, _, body = request(test_port, "POST", "/__config?status=500")  # the answer: the counts at the switch
        before = json.loads(body)["paths"]
        deadline = t0 + 20
        while time.monotonic() < deadline:
            if all(c.first(("local_open", "cluster_open"), after=t0) for c in clients):
                break
            time.sleep(0.01)
        time.sleep(0.2)
        stop.set()
        for c in clients:
            c.join(timeout=10)
        after = json.loads(request(test_port, "GET", "/__stats")[2])["paths"]
    finally:
        stop.set()
        request(test_port, "POST", "/__reset")
        for r in fleet:
            r.stop()
    firsts = [c.first(("local_open", "cluster_open"), after=t0) for c in clients]
    for c in clients:
        odd = [r for r in c.records if r[2] not in ("ok", "failed", "local_open", "cluster_open")]
        if odd:
            bench.failures.append(f"cluster/waste {shape} N={n} {scope}: {c.path} answered {odd[0][2]}")
        early = [r for r in c.records if r[1] < t0 and r[2] != "ok"]
        if early:
            bench.failures.append(f"cluster/waste {shape} N={n} {scope}: {c.path} answered {early[0][2]} before the fault")
    if None in firsts:
        return {"complete": False, "open_s": None, "upstream_calls": None, "failed_answers": None,
                "by_cluster": sum(1 for x in firsts if x and x[2] == "cluster_open"), "n": n}
    end = max(x[1] for x in firsts)
    upstream_calls = sum(after.get(f"/r{i}", 0) - before.get(f"/r{i}", 0) for i in range(n))
    failed_before_open = sum(1 for c in clients for r in c.records if r[2] == "failed" and r[1] >= t0 and r[0] <= end)
    return {"complete": True, "open_s": end - t0, "upstream_calls": upstream_calls, "failed_answers": failed_before_open,
            "by_cluster": sum(1 for x in firsts if x[2] == "cluster_open"), "n": n,
            "per_replica": [sum(1 for r in c.records if r[2] == "failed" and r[1] >= t0) for c in clients]}


def waste(bench, ctx, findings):
    smoke = bench.args.seconds <= 1
    cases = [(4, "even")] if smoke else [(n, s) for s in ("even", "skewed") for n in (4, 8)]
    reps = 1 if smoke else min(3, bench.args.reps)  # deterministic enough: the ranges are a call or two wide
    res = {}
    for n, shape in cases:
        for rep in range(reps):
            for scope in (("local", "cluster") if rep % 2 == 0 else ("cluster", "local")):
                r = waste_run(bench, ctx, n, shape, scope, rep)
                if not r["complete"]:
                    findings.append(f"waste {shape} N={n} {scope}: not every replica rejected within 20 s of the fault")
                res.setdefault((n, shape, scope), []).append(r)
        print(f"  cluster: waste N={n} {shape} done", file=sys.stderr)
    out = {}
    for k, runs in res.items():
        done = [r for r in runs if r["complete"]]
        out[k] = {"runs": len(runs), "complete": len(done),
                  "calls": statistics.median(r["upstream_calls"] for r in done) if done else None,
                  "calls_range": (min(r["upstream_calls"] for r in done), max(r["upstream_calls"] for r in done)) if done else None,
                  "failed_answers": statistics.median(r["failed_answers"] for r in done) if done else None,
                  "open_s": statistics.median(r["open_s"] for r in done) if done else None,
                  "by_cluster": statistics.median(r["by_cluster"] for r in done) if done else None}
    return {"cells": out, "reps": reps}


# ---- 4. Redis commands per second per replica ---------------------------------------------------------------
def commands_body(bench, redis, prefix, clustered, interval_ms):
    ups = ""
    for k in range(1, 5):
        ups += f"""  u{k}:
    endpoints: ["127.0.0.1:{bench.upstream_port}"]
    routes: {{path_prefix: /u{k}, strip_prefix: true}}
    retries: {{max_attempts: 1}}
    bulkhead: {{max_concurrent: 1000, max_queue: 1000}}
    circuit_breaker: {{scope: {"cluster" if k <= clustered else "local"}}}
"""
    return cluster_block(redis, "cmd", prefix, interval_ms) + "upstreams:\n" + ups


COMMAND_VARIANTS_FULL = [(1, 500), (4, 500), (4, 100)]
COMMAND_VARIANTS_SMOKE = [(1, 500), (4, 100)]


def commands(bench, ctx, findings):
    smoke = bench.args.seconds <= 1
    window = max(1, bench.args.seconds)
    rows = []
    for clustered, interval_ms in (COMMAND_VARIANTS_SMOKE if smoke else COMMAND_VARIANTS_FULL):
        prefix = f"cmd-{clustered}-{interval_ms}"
        bb = Replica(bench, prefix, commands_body(bench, ctx["redis"], prefix, clustered, interval_ms), B.PROXY_CORE)
        try:
            if not wait_redis_up(bb.admin, 1):
                findings.append(f"commands/{prefix}: not in sync with Redis")
            time.sleep(0.3)
            for load in ("about 10 req/s", "wrk, 50 connections"):
                m0, t0 = metrics(bb.admin), time.monotonic()
                if load.startswith("wrk"):
                    w = bench.wrk(bb.port, "/u1/small", 50, window, bb.proc.pids())
                    answered, bad = w["requests"], w["non2xx"] + w["socket_errors"]
                else:
                    stop = threading.Event()
                    c = Client(bb.port, "/u1/small", stop, rate=10.0)
                    c.start()
                    time.sleep(window)
                    stop.set()
                    c.join(timeout=10)
                    answered = len(c.records)
                    bad = sum(1 for r in c.records if r[2] != "ok")
                m1, t1 = metrics(bb.admin), time.monotonic()
                if bad:
                    bench.failures.append(f"cluster/commands {prefix} {load}: {bad} requests failed")
                elapsed = t1 - t0

                def delta(name, labels=""):
                    a, b = metric(m0, name, labels), metric(m1, name, labels)
                    return None if a is None or b is None else b - a

                cmds = delta("breakerbox_cluster_redis_commands_total")
                syncs = delta("breakerbox_cluster_sync_duration_seconds_count")
                rows.append({"clustered": clustered, "interval_ms": interval_ms, "load": load,
                             "req_per_s": answered / elapsed, "commands_per_s": cmds / elapsed if cmds is not None else None,
                             "syncs_per_s": syncs / elapsed if syncs is not None else None,
                             "expected": clustered / (interval_ms / 1000)})
        finally:
            bb.stop()
        print(f"  cluster: commands, {clustered} clustered upstream(s), {interval_ms} ms done", file=sys.stderr)
    return {"rows": rows, "window": window}


# ---- run and report -------------------------------------------------------------------------------------
def run(bench, bench_module):
    global B
    B = bench_module
    wait_binary()
    if not os.access(REDIS, os.X_OK):
        raise RuntimeError(f"{REDIS} is missing (apt-get install redis-server)")
    findings = []
    t_start = time.monotonic()
    load_before = loadavg()
    up = Redis(bench, "cluster")
    stopped = Redis(bench, "stopped")
    test_port = B.free_port()
    test_up = B.Proc("test upstream (cluster)", [os.path.join(B.BUILD, "breakerbox-test-upstream"), "--listen",
                                                f"127.0.0.1:{test_port}", "--name", "cluster", "--threads", "2"], B.LOAD_CORE)
    bench.procs.append(test_up)
    B.wait_port(test_port, test_up)
    ctx = {"redis": up, "test_port": test_port}
    version = subprocess.run([REDIS, "--version"], capture_output=True, text=True).stdout.split()
    try:
        res = {"cost": cost(bench, up, stopped, findings)}
        res["spread"] = spread(bench, ctx, findings)
        res["waste"] = waste(bench, ctx, findings)
        res["commands"] = commands(bench, ctx, findings)
    finally:
        stopped.sigcont()
        bench.stop(test_up)
        for r in (up, stopped):
            if r.proc in bench.procs:
                bench.stop(r.proc)
    res["findings"] = findings
    res["redis_version"] = next((v.split("=", 1)[1] for v in version if v.startswith("v=")), "?")
    res["took_s"] = time.monotonic() - t_start
    res["load"] = (load_before, loadavg())
    for x in findings:
        print(f"  cluster finding: {x}", file=sys.stderr)
    return res


def print_results(res):
    c = res["cost"]
    cells = c["cells"]
    ref = cells["scope: local"]
    print(f"\n### Shared circuit state (scope: cluster): cost per proxied request (wrk, 50 connections, 64 B; "
          f"median of {c['reps']} × {c['seconds']} s, interleaved; Redis {res['redis_version']} on a Unix socket)\n")
    print("| configuration | req/s | p50 ms | p99 ms | CPU µs/req (range) | user + kernel | CPU vs scope: local | "
          "main thread CPU µs/s | Redis commands/s | sync timeouts/s | proxy core busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in COST_MODES:
        r = cells[mode]
        lo, hi = r["cpu_range"]
        print(f"| {mode} | {f(r['rps'], 0)} | {f(r['p50'], 3)} | {f(r['p99'], 3)} | {f(r['cpu_us'], 2)} ({lo:.2f}–{hi:.2f}) | "
              f"{f(r['user_us'], 2)} + {f(r['kernel_us'], 2)} | {r['cpu_us'] / ref['cpu_us']:.3f} | {f(r['main_us_per_s'], 0)} | "
              f"{f(r['commands_per_s'], 1)} | "
              f"{f(r['timeouts_per_s'], 1)} | {B.percent(r['proxy_core_busy'])} |")
    raw = c["raw"]
    print("\nCPU per request against scope: local's in the same repetition: "
          + "; ".join(f"{mode}: " + " ".join(f"{a[0] / b[0]:.2f}" for a, b in zip(raw[mode], raw["scope: local"]))
                      for mode in COST_MODES if mode != "scope: local"))
    ins = c["instructions"]
    if ins:
        print("\nUser-space instructions under callgrind (one keep-alive connection, 4,000 GETs after 300 of warm-up; per thread):\n")
        w0 = (ins.get("scope: local") or {}).get("worker_per_request")
        print("| configuration | all threads, per request | worker thread, per request | worker vs scope: local | "
              "main thread, per request | syncs in the window | main thread per sync, net of scope: local's |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mode, r in ins.items():
            if r:
                d = f"{r['worker_per_request'] - w0:+,.0f}" if w0 and r["worker_per_request"] else "-"
                print(f"| {mode} | {f(r['total_per_request'], 0)} | {f(r['worker_per_request'], 0)} | {d} | "
                      f"{f(r['main_per_request'], 0)} | {f(r['syncs'], 0)} in {r['seconds']:.1f} s | {f(r['net_per_sync'], 0)} |")

    s = res["spread"]
    print("\n### Shared circuit state: from the tripping failure at one replica to the first cluster rejection at the "
          "last of N (with 20–30 trials, p99 lies between the two largest)\n")
    print("| N replicas | sync_interval | quorum (replicas tripped) | trials | verdict in Redis p50 / max ms (trials > ½ interval) | "
          f"last replica p50 ms | last replica p99 ms | max ms | any replica p50 ms | < {GOAL_MS} ms at p99 | poll gap ms |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in s["rows"]:
        q = f"{r['quorum']} ({'A' if r['quorum'] == 1 else 'A and B at once'})"
        if not r["tripper_admin"]:
            q += ", A without admin listener"
        met = "-" if r["last_p99"] is None else ("**met**" if r["last_p99"] < GOAL_MS else "not met")
        print(f"| {r['n']} | {r['interval_ms']} ms | {q} | {r['trials']} | {f(r['redis_p50'])} / {f(r['redis_max'])} ({r['redis_late']}) | "
              f"{f(r['last_p50'])} | {f(r['last_p99'])} | {f(r['last_max'])} | "
              f"{f(r['each_p50'])} | {met} | {f(r['poll_gap_ms'], 2)} |")

    w = res["waste"]
    print(f"\n### Shared circuit state: upstream calls wasted before every replica rejects (the upstream answers 500 "
          f"from t=0; `consecutive_failures: 5`; median of {w['reps']})\n")
    print("| N | traffic | scope | upstream calls until the fleet is open (range) | 500s relayed to clients | "
          "fleet open after s | replicas whose first rejection was the cluster's |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for (n, shape, scope), r in sorted(w["cells"].items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] != "local")):
        traffic = "20 req/s each" if shape == "even" else "2 × 100 req/s, the rest 2 req/s"
        rng = f" ({r['calls_range'][0]}–{r['calls_range'][1]})" if r["calls_range"] else ""
        print(f"| {n} | {traffic} | {scope} | {f(r['calls'], 0)}{rng} | {f(r['failed_answers'], 0)} | {f(r['open_s'], 2)} | "
              f"{f(r['by_cluster'], 0)} of {n} |")

    m = res["commands"]
    print(f"\n### Shared circuit state: Redis commands per replica ({m['window']} s windows)\n")
    print("| clustered upstreams | sync_interval | load | req/s | Redis commands/s | syncs/s | upstreams ÷ interval | "
          "a per-request design (2 × req/s) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in m["rows"]:
        print(f"| {r['clustered']} of 4 | {r['interval_ms']} ms | {r['load']} | {f(r['req_per_s'], 0)} | {f(r['commands_per_s'], 1)} | "
              f"{f(r['syncs_per_s'], 1)} | {f(r['expected'], 1)} | {f(2 * r['req_per_s'], 0)} |")
    if res["findings"]:
        print("\nSeen while measuring (not figures):")
        for x in res["findings"]:
            print(f"- {x}")
    print(f"\n(cluster part: {res['took_s']:.0f} s; load average before and after: {res['load'][0]} / {res['load'][1]} "
          f"on {os.cpu_count()} cores — other work on the machine moves the CPU figures)")


if __name__ == "__main__":
    # Standalone: the same as bench.py --only cluster (bench.py provides the upstream, the helpers and the cleanup).
    here = os.path.dirname(os.path.abspath(__file__))
    os.execv(sys.executable, [sys.executable, os.path.join(here, "bench.py"), "--only", "cluster"] + sys.argv[1:])
