"""Circuit state shared across replicas through Redis (`circuit_breaker.scope: cluster`, docs/cluster.md),
with the real parts: a real `redis-server` on a Unix socket in a temporary folder (no persistence), run as
a subprocess the tests kill -9, SIGSTOP/SIGCONT and restart; three real breakerbox processes with the same
configuration except `replica_id`; one real test upstream they share; `faketime` for a replica whose
clock is two hours ahead.

Each replica sends its requests under its own path (/a/.., /b/.., /c/..), so the upstream's per-path
counts (/__stats) tell which replica forwarded what.

No timing assertions except the generous "answered within the client timeout" bounds the contract asks
for (nothing on the request path waits for Redis); state changes are waited for with wait_until.

Readings of docs/cluster.md this module relies on:
 1. `/health/circuits/svc` has `upstreams.svc.cluster` (`verdict`, `live_replicas`, `open_replicas`, ...)
    and a top-level `cluster` block (`replica_id`, `redis.up`, `redis.last_error`).
 2. A request the cluster's verdict turns away is the open-circuit answer (503, `X-Breakerbox-Error:
    circuit_open`) whose JSON `detail` mentions the cluster, counted as
    `breakerbox_rejections_total{reason="cluster_open"}`.
 3. "exactly one probe per half-open period ... No herd of probes when the open time ends": from the
    moment the cluster opens until it closes again (its verdict key is gone from Redis), at most one
    request of all replicas reaches the upstream — also in the moments after the open time ends, before
    each replica's next sync — and a holder that keeps reporting keeps its lease (only a holder that goes
    away lets it expire).
 4. `breakerbox_cluster_clock_offset_seconds` is Redis TIME minus the replica's clock: about -7200 on a
    replica two hours ahead.
 5. "503 when Redis cannot be reached (nothing changed)": an action answered 503 is never applied later.
 6. `cluster.redis` takes `unix:/path` or `host:port`; a bare host name without a port is refused, a
    `name:port` is accepted (the name is resolved at each connection).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import sample, sanitized_binary, ProxyTestCase, request, wait_until, free_port, PROMTOOL, BREAKERBOX_BIN

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "/usr/bin/redis-server"
FAKETIME = shutil.which("faketime") or "/usr/bin/faketime"
TOKEN = "cluster-token"
SYNC = 0.1  # the replicas' sync_interval, seconds
CLIENT_TIMEOUT = 2.0  # no request may wait for Redis: every answer comes within this


class RedisError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        return f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RedisError("unexpected reply %r" % line)


class Redis:
    """A real redis-server on a Unix socket, without persistence, that the test kills, stops and restarts."""

    def __init__(self, folder):
        self.folder = folder
        self.sock = os.path.join(folder, "redis.sock")
        self.address = "unix:" + self.sock
        self.proc = None
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--dir", self.folder, "--daemonize", "no",
             "--logfile", os.path.join(self.folder, "redis-%d.log" % self.starts)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(self._pings, timeout=10, interval=0.05):
            raise RuntimeError("redis-server did not start:\n" + self.log())

    def _pings(self):
        try:
            return self.command("PING", timeout=0.5) == "PONG"
        except (OSError, RedisError):
            return False

    def command(self, *args, timeout=2.0):
        """One command on its own connection (RESP), the reply as Python values."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
            s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            with s.makefile("rb") as f:
                return _read_reply(f)

    def log(self):
        try:
            with open(os.path.join(self.folder, "redis-%d.log" % self.starts)) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # works on a stopped process too
            self.proc.wait(timeout=10)


def config(redis, upstream, replica, breaker="", sync="100ms", quorum=2, cluster_extra="", workers=1, consecutive=3,
           rate="{minimum_calls: 1000}"):
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
cluster:
  redis: "{redis}"
  replica_id: {replica}
  sync_interval: {sync}
  quorum: {quorum}
{cluster_extra}
upstreams:
  svc:
    endpoints: [{upstream}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker:
      scope: cluster
      consecutive_failures: {consecutive}
      failure_rate: {rate}
      open_duration_jitter: 0
{breaker}
  plain:
    endpoints: [{upstream}]
    routes: {{path_prefix: /plain}}
    retries: {{max_attempts: 1}}
"""


def sample_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class ClusterCase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(REDIS_SERVER):
            self.fail("redis-server is required (Debian's redis-server package; the setup script installs it): "
                      "not found at " + REDIS_SERVER)
        self.tmp = tempfile.TemporaryDirectory(prefix="bbx-redis-")
        self.addCleanup(self.tmp.cleanup)
        self.redis = Redis(self.tmp.name)
        self.addCleanup(self.redis.stop)  # after tearDown's processes, even when setUp fails later
        self.up = self.upstream("up", threads=4)
        self.replicas = {}

    # --- processes -----------------------------------------------------------------------------------

    def replica(self, name, breaker="", command_prefix=None, **kw):
        bb = self.breakerbox(config(self.redis.address, self.up.address, name, breaker=breaker, **kw),
                             command_prefix=command_prefix)
        bb.name = name
        self.replicas[name] = bb
        return bb

    def start_three(self, breaker="", prefixes=None, **kw):
        prefixes = prefixes or {}
        a, b, c = (self.replica(n, breaker, prefixes.get(n), **kw) for n in "abc")
        self.wait_live(3, a, b, c)
        return a, b, c

    def wait_live(self, n, *replicas, timeout=10):
        """Every replica has synced and sees n live replicas."""
        for bb in replicas:
            self.assertTrue(wait_until(lambda: (self.view(bb) or {}).get("live_replicas") == n, timeout=timeout),
                            "%s never saw %d live replicas: %s\n%s" % (bb.name, n, self.health(bb), self.logs(bb)))

    # --- observation ---------------------------------------------------------------------------------

    def health(self, bb):
        return request(bb.port("admin"), target="/health/circuits/svc", timeout=CLIENT_TIMEOUT).json()

    def view(self, bb):
        """The upstream's cluster block."""
        return self.health(bb)["upstreams"]["svc"].get("cluster")

    def local_state(self, bb):
        """The replica's own breaker (`state` is what the next request finds, whoever decides it)."""
        return self.health(bb)["upstreams"]["svc"]["breaker_state"]

    def metrics(self, bb):
        return request(bb.port("admin"), target="/metrics", timeout=CLIENT_TIMEOUT).body.decode()

    def redis_up(self, bb):
        return sample(self.metrics(bb), "breakerbox_cluster_redis_up")

    def logs(self, bb):
        return "\n".join(json.dumps(e) for e in bb.log_entries()[-40:])

    def hits(self, prefix):
        """Requests the upstream saw under a path prefix."""
        return sum(n for p, n in self.up.stats()["paths"].items() if p.startswith(prefix))

    def get(self, bb, path, timeout=CLIENT_TIMEOUT):
        return request(bb.port(), target=path, timeout=timeout)

    def post(self, bb, path, token=TOKEN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return request(bb.port("admin"), method="POST", target=path, headers=headers, timeout=CLIENT_TIMEOUT)

    def fail_locally(self, bb, n=3):
        """n failing requests through one replica: its own breaker opens (consecutive_failures: 3)."""
        for i in range(n):
            r = self.get(bb, "/%s/fail%d?status=500" % (bb.name, i))
            self.assertEqual(r.status, 500, r.body)
        self.assertTrue(wait_until(lambda: self.local_state(bb) == "open", timeout=5), self.health(bb))

    def assert_cluster_rejection(self, r, who):
        self.assertEqual(r.status, 503, "%s: %s" % (who, r.body))
        self.assertEqual(r.headers.get("x-breakerbox-error"), "circuit_open", who)
        self.assertIn("cluster", r.json().get("detail", "").lower(), "%s: %s" % (who, r.body))

    def wait_verdict(self, bb, verdict, timeout=10):
        self.assertTrue(wait_until(lambda: (self.view(bb) or {}).get("verdict") == verdict, timeout=timeout),
                        "%s: verdict never %s: %s\n%s" % (bb.name, verdict, self.view(bb), self.logs(bb)))


class SharedOpenTest(ClusterCase):
    def test_an_open_propagates_to_a_replica_that_saw_no_failures(self):
        a, b, c = self.start_three(breaker="      open_duration: 30s")
        self.fail_locally(a)
        self.fail_locally(b)
        self.wait_verdict(c, "open")
        self.assertEqual(self.local_state(c), "closed")  # C's own breaker saw nothing
        r = self.get(c, "/c/first")
        self.assert_cluster_rejection(r, "c")
        # Issue 30 §1: every report says what C's requests find — open, decided by the cluster — and when
        # the next one may pass (the cluster's open time, ~30 s), not C's own closed breaker.
        self.assertGreaterEqual(int(r.headers["retry-after"]), 20, r.headers)
        self.assertEqual(r.json()["state"], "open")
        self.assertEqual(r.json()["decided_by"], "cluster")
        self.assertEqual(r.json()["retry_after_seconds"], int(r.headers["retry-after"]))
        report = request(c.port("admin"), target="/health/circuits", timeout=CLIENT_TIMEOUT)
        self.assertEqual(report.status, 503)
        self.assertEqual(report.json()["status"], "open")
        mine = report.json()["upstreams"]["svc"]
        self.assertEqual((mine["state"], mine["decided_by"], mine["breaker_state"]), ("open", "cluster", "closed"))
        self.assertGreater(mine["next_probe_in_ms"], 20000)
        self.assertTrue(mine["reason"].startswith("cluster: "), mine["reason"])
        scrape_now = self.metrics(c)
        self.assertEqual(sample(scrape_now, "breakerbox_circuit_state_code", upstream="svc"), 2.0)
        self.assertEqual(sample(scrape_now, "breakerbox_circuit_state", upstream="svc", state="open"), 1.0)
        self.assertEqual(sample(scrape_now, "breakerbox_circuit_decided_by", upstream="svc", decided_by="cluster"), 1.0)
        self.assertGreater(sample(scrape_now, "breakerbox_circuit_next_probe_seconds", upstream="svc"), 20.0)
        self.assertNotIn("/c/first", self.up.stats()["paths"])
        self.assertEqual(self.hits("/c/"), 0)
        scrape = self.metrics(c)
        self.assertEqual(sample(scrape, "breakerbox_rejections_total", upstream="svc", reason="cluster_open"), 1.0)
        h = self.health(c)
        block = h["upstreams"]["svc"]["cluster"]
        self.assertEqual(block["verdict"], "open")
        self.assertEqual(block["live_replicas"], 3)
        self.assertEqual(block["open_replicas"], 2)
        self.assertEqual(h["cluster"]["replica_id"], "c")
        self.assertTrue(h["cluster"]["redis"]["up"])
        # The other replicas' answers are the cluster's too (or their own open circuit): nothing reaches
        # the upstream from anyone while the cluster's circuit is open.
        before = self.up.stats()["requests"]
        for bb in (a, b, c):
            self.assertEqual(self.get(bb, "/%s/later" % bb.name).status, 503)
        self.assertEqual(self.up.stats()["requests"], before)

    def test_one_replica_failing_alone_opens_nothing_elsewhere(self):
        a, b, c = self.start_three(breaker="      open_duration: 30s")
        self.fail_locally(a)
        # B and C have seen A's report (one open replica of three): the sync works, and still no verdict.
        for bb in (b, c):
            self.assertTrue(wait_until(lambda: (self.view(bb) or {}).get("open_replicas") == 1, timeout=5),
                            self.view(bb))
        sent = {"b": 0, "c": 0}
        deadline = time.monotonic() + 8 * SYNC
        i = 0
        while time.monotonic() < deadline:
            for bb in (b, c):
                r = self.get(bb, "/%s/ok%d" % (bb.name, i))
                self.assertEqual(r.status, 200, "%s: %s" % (bb.name, r.body))
                sent[bb.name] += 1
            i += 1
            time.sleep(SYNC / 4)
        self.assertEqual(self.hits("/b/"), sent["b"])
        self.assertEqual(self.hits("/c/"), sent["c"])
        for bb in (b, c):
            self.assertEqual(self.view(bb)["verdict"], "closed")
            self.assertEqual(self.local_state(bb), "closed")
        self.assertEqual(self.local_state(a), "open")
        self.assertEqual(self.get(a, "/a/after").status, 503)  # A's own breaker still rejects locally

    RATE = dict(consecutive=0, rate="{minimum_calls: 4, threshold: 50}", breaker="      open_duration: 30s")

    def test_a_failure_rate_from_one_replica_alone_opens_nothing(self):
        # The summed rate reaches the threshold with enough calls, but the failures all come from A.
        a, b, c = self.start_three(**self.RATE)
        # (3 calls each: below minimum_calls locally, so A stays closed too.)
        for i in range(3):
            self.assertEqual(self.get(a, "/a/fail%d?status=500" % i).status, 500)
            self.assertEqual(self.get(b, "/b/ok%d" % i).status, 200)
        self.assertTrue(wait_until(lambda: (self.view(c) or {}).get("failures") == 3
                                   and self.view(c).get("calls") == 6, timeout=5), self.view(c))
        self.assertEqual(self.local_state(a), "closed")
        time.sleep(5 * SYNC)
        for bb in (b, c):
            self.assertEqual(self.view(bb)["verdict"], "closed")
            self.assertEqual(self.get(bb, "/%s/after" % bb.name).status, 200)
        self.assertEqual(self.hits("/c/after"), 1)

    def test_a_failure_rate_summed_over_two_replicas_opens_for_all(self):
        # A and B each see 2 failures: below minimum_calls (4) locally, so neither opens on its own;
        # summed over the cluster: 4 of 4 calls failed, from 2 replicas — the cluster opens, C rejects.
        a, b, c = self.start_three(**self.RATE)
        for bb in (a, b):
            for i in range(2):
                self.assertEqual(self.get(bb, "/%s/fail%d?status=500" % (bb.name, i)).status, 500)
        for bb in (a, b, c):
            self.wait_verdict(bb, "open")
        self.assertEqual(self.local_state(a), "closed")
        self.assertEqual(self.local_state(b), "closed")
        self.assertEqual(self.view(c)["open_replicas"], 0)
        for bb in (a, b, c):
            self.assert_cluster_rejection(self.get(bb, "/%s/after" % bb.name), bb.name)
        self.assertEqual(self.hits("/c/"), 0)
        self.assertEqual(self.hits("/a/after") + self.hits("/b/after"), 0)


class ProbeTest(ClusterCase):
    def open_cluster(self, open_duration):
        a, b, c = self.start_three(breaker="      open_duration: %s" % open_duration)
        self.fail_locally(a)
        self.fail_locally(b)
        for bb in (a, b, c):
            self.wait_verdict(bb, "open")
        return a, b, c

    def traffic(self, replicas, stop, per_replica=2, timeout=CLIENT_TIMEOUT):
        """Concurrent requests from every replica until `stop` is set; the answers, by replica."""
        answers = {bb.name: [] for bb in replicas}
        errors = []

        def run(bb, k):
            i = 0
            while not stop.is_set():
                try:
                    r = self.get(bb, "/%s/t%d-%d" % (bb.name, k, i), timeout=timeout)
                    answers[bb.name].append(r.status)
                except Exception as e:  # noqa: BLE001 - reported by the test
                    errors.append("%s: %r" % (bb.name, e))
                i += 1
                time.sleep(0.005)

        threads = [threading.Thread(target=run, args=(bb, k), daemon=True) for bb in replicas for k in range(per_replica)]
        for t in threads:
            t.start()
        return threads, answers, errors

    def test_exactly_one_probe_per_half_open_period_across_the_three(self):
        a, b, c = self.open_cluster("1s")
        self.up.reset()
        self.up.configure("delay_ms=150")  # the probe takes a while: the others must reject meanwhile
        stop = threading.Event()
        threads, answers, errors = self.traffic((a, b, c), stop)
        key = "{breakerbox:svc}:verdict"
        # Every upstream count read before a moment at which Redis still holds the (open or half-open)
        # verdict counts only requests that reached the upstream before the cluster closed.
        before_close = 0
        saw_half_open = False
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                seen = self.up.stats()["requests"]
                verdict = self.redis.command("GET", key)
                if verdict is None or verdict.startswith("recovered "):  # closed (and announced as recovered)
                    break
                saw_half_open = saw_half_open or verdict.startswith("half_open")
                before_close = max(before_close, seen)
                time.sleep(0.003)
            else:
                self.fail("the cluster never closed: %s" % self.redis.command("GET", key))
            closed_count = self.up.stats()["requests"]
            # After the probe succeeded, all three forward again.
            for bb in (a, b, c):
                self.assertTrue(wait_until(lambda: self.hits("/%s/t" % bb.name) > 0, timeout=5),
                                "%s never forwarded again: %s" % (bb.name, self.view(bb)))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        self.assertEqual(errors, [])
        self.assertTrue(saw_half_open, "the verdict went from open to closed without a half-open period")
        self.assertGreaterEqual(closed_count, 1, "no probe reached the upstream")
        for bb in (a, b, c):
            self.assertEqual(self.view(bb)["verdict"], "closed")
            self.assertEqual(self.local_state(bb), "closed", "%s: %s" % (bb.name, self.health(bb)["upstreams"]["svc"]))
        self.assertLessEqual(before_close, 1, "requests reached the upstream while the cluster was not closed: %s"
                             % self.up.stats()["paths"])

    def test_a_probe_that_outlasts_the_lease_is_still_the_only_one(self):
        # The holder keeps reporting while its probe is in flight: it has not gone away, so its lease does
        # not pass to another replica (4 sync intervals = 400 ms here; the probe takes 2 s).
        a, b, c = self.open_cluster("1s")
        self.up.reset()
        self.up.configure("delay_ms=2000")
        # Traffic starts once every replica knows the half-open period began (one holds the lease): what
        # happens at the end of the open time itself is the test above.
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.view(bb)["verdict"] in ("half_open", "probing"), timeout=10),
                            self.view(bb))
        self.assertIsNotNone(self.redis.command("GET", "{breakerbox:svc}:lease"))
        stop = threading.Event()
        threads, answers, errors = self.traffic((a, b, c), stop, per_replica=1, timeout=10)
        try:
            self.assertTrue(wait_until(lambda: self.up.stats()["requests"] >= 1, timeout=10), "no probe was sent")
            first = dict(self.up.stats()["paths"])
            time.sleep(1.5)  # the probe is still in flight: nobody else may probe meanwhile
            during = self.up.stats()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        self.assertEqual(during["requests"], 1, "more than one probe while the first was in flight: first %s, then %s"
                         % (first, during["paths"]))
        self.assertEqual(errors, [])


class RedisFailureTest(ClusterCase):
    def sync_failures(self, bb):
        return sample_sum(self.metrics(bb), "breakerbox_cluster_sync_failures_total")

    def test_redis_killed_then_restarted_empty(self):
        a, b, c = self.start_three(breaker="      open_duration: 30s")
        self.fail_locally(a)
        self.fail_locally(b)
        self.wait_verdict(c, "open")
        self.assert_cluster_rejection(self.get(c, "/c/before"), "c")
        self.redis.kill()
        # Local-only breaking at once: C (its own circuit closed) forwards; every answer comes promptly and
        # is either forwarded or A's / B's own open circuit — never an error caused by Redis.
        self.assertTrue(wait_until(lambda: self.get(c, "/c/during").status == 200, timeout=5),
                        "C still rejects with Redis gone: %s" % self.view(c))
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.redis_up(bb) == 0, timeout=5), bb.name)
        for i in range(10):
            for bb in (a, b, c):
                r = self.get(bb, "/%s/down%d" % (bb.name, i))  # raises past the client timeout
                if bb is c:
                    self.assertEqual(r.status, 200, r.body)
                else:
                    self.assertEqual(r.status, 503, r.body)
                    self.assertEqual(r.headers.get("x-breakerbox-error"), "circuit_open")
                    self.assertNotIn("cluster", r.json()["detail"])  # their own breaker's answer
        first = self.sync_failures(c)
        self.assertGreater(first, 0)
        self.assertTrue(wait_until(lambda: self.sync_failures(c) > first, timeout=10), "sync failures do not grow")
        h = self.health(c)
        self.assertFalse(h["cluster"]["redis"]["up"])
        self.assertTrue(h["cluster"]["redis"]["last_error"])
        # Local breaking still works: C's own failures open C's own circuit.
        self.fail_locally(c)
        r = self.get(c, "/c/local-open")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers.get("x-breakerbox-error"), "circuit_open")
        # The operators close every local circuit; then Redis comes back empty on the same socket.
        for bb in (a, b, c):
            self.assertEqual(self.post(bb, "/admin/circuits/svc/reset").status, 200)
            self.assertEqual(self.local_state(bb), "closed")
        self.redis.start()
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.redis_up(bb) == 1, timeout=15),
                            "%s did not reconnect: %s\n%s" % (bb.name, self.health(bb)["cluster"], self.logs(bb)))
        self.wait_live(3, a, b, c)
        # No stale open: the 30 s verdict from before the kill is gone; every replica forwards.
        before = {bb.name: self.hits("/%s/after" % bb.name) for bb in (a, b, c)}
        for i in range(5):
            for bb in (a, b, c):
                r = self.get(bb, "/%s/after%d" % (bb.name, i))
                self.assertEqual(r.status, 200, "%s: %s" % (bb.name, r.body))
            time.sleep(SYNC)
        for bb in (a, b, c):
            self.assertEqual(self.hits("/%s/after" % bb.name) - before[bb.name], 5)
            self.assertEqual(self.view(bb)["verdict"], "closed")

    def test_redis_stopped_no_request_waits(self):
        a, b, c = self.start_three()
        self.redis.pause()
        try:
            deadline = time.monotonic() + 3
            i = 0
            while time.monotonic() < deadline:
                for bb in (a, b, c):
                    r = self.get(bb, "/%s/s%d" % (bb.name, i), timeout=1.5)  # raises past the bound
                    self.assertEqual(r.status, 200, r.body)
                i += 1
            for bb in (a, b, c):
                self.assertTrue(wait_until(lambda: self.redis_up(bb) == 0, timeout=5), bb.name)
            scrape = self.metrics(a)
            self.assertGreater(sample(scrape, "breakerbox_cluster_sync_failures_total", reason="timeout"), 0)
            self.assertTrue(self.health(a)["cluster"]["redis"]["last_error"])
        finally:
            self.redis.resume()
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.redis_up(bb) == 1, timeout=15),
                            "%s: %s\n%s" % (bb.name, self.health(bb)["cluster"], self.logs(bb)))
        self.wait_live(3, a, b, c)
        for bb in (a, b, c):
            self.assertEqual(self.get(bb, "/%s/back" % bb.name).status, 200)


class ReplicaTest(ClusterCase):
    # libfaketime works by LD_PRELOAD; a sanitizer runtime must be the first library of the process
    # (ASan refuses to start otherwise) and intercepts the same clock calls. The skew is a property of
    # the sync's logic, not of memory or threads: the Release suite runs this test.
    @unittest.skipIf(sanitized_binary(), "libfaketime (LD_PRELOAD) and a sanitizer runtime cannot share a process")
    def test_a_replica_with_a_skewed_clock_takes_part(self):
        if not os.path.exists(FAKETIME):
            self.fail("faketime is required (Debian's faketime package)")
        a, b, c = self.start_three(breaker="      open_duration: 30s", prefixes={"c": [FAKETIME, "-f", "+2h"]})
        # C's clock is two hours ahead: Redis TIME minus C's clock is about -2 h; A's about 0.
        self.assertTrue(wait_until(lambda: self.view(a)["live_replicas"] == 3, timeout=5))
        offset = sample(self.metrics(c), "breakerbox_cluster_clock_offset_seconds")
        self.assertIsNotNone(offset)
        self.assertGreater(abs(offset), 3600, offset)
        self.assertTrue(-9000 < offset < -5400, "Redis TIME minus C's clock should be about -7200: %s" % offset)
        self.assertLess(abs(sample(self.metrics(a), "breakerbox_cluster_clock_offset_seconds")), 60)
        self.assertLess(abs(self.health(c)["cluster"]["redis"]["clock_offset_ms"] / 1000 + 7200), 1800)
        self.fail_locally(a)
        self.fail_locally(b)
        self.wait_verdict(c, "open")
        self.assert_cluster_rejection(self.get(c, "/c/skewed"), "c")
        self.assertEqual(self.hits("/c/"), 0)
        # C stays among the live replicas (its reports are not taken as stale), seen from A and from C.
        time.sleep(5 * SYNC)
        self.assertEqual(self.view(a)["live_replicas"], 3)
        self.assertEqual(self.view(c)["live_replicas"], 3)
        self.assertEqual(self.view(c)["verdict"], "open")

    def test_a_replica_restarted_while_the_cluster_is_open_rejects_from_its_first_sync(self):
        a, b, c = self.start_three(breaker="      open_duration: 30s")
        self.fail_locally(a)
        self.fail_locally(b)
        self.wait_verdict(c, "open")
        c.stop()
        self._processes.remove(c)
        c2 = self.replica("c", breaker="      open_duration: 30s")  # ready: the harness waited for it
        time.sleep(SYNC)
        for i in range(5):
            self.assert_cluster_rejection(self.get(c2, "/c/new%d" % i), "restarted c")
        self.assertEqual(self.hits("/c/"), 0)
        self.assertEqual(self.view(c2)["verdict"], "open")
        self.assertEqual(self.local_state(c2), "closed")


class OperatorTest(ClusterCase):
    def test_cluster_wide_operator_actions(self):
        a, b, c = self.start_three()
        # Without the token, or with a wrong one: 401, nothing changes.
        self.assertEqual(self.post(a, "/admin/circuits/svc/force-open?scope=cluster&for=30s", token=None).status, 401)
        self.assertEqual(self.post(a, "/admin/circuits/svc/force-open?scope=cluster&for=30s", token="wrong").status, 401)
        self.assertIsNone(self.redis.command("GET", "{breakerbox:svc}:verdict"))
        # A non-clustered upstream, an unknown one: 404.
        self.assertEqual(self.post(a, "/admin/circuits/plain/force-open?scope=cluster").status, 404)
        self.assertEqual(self.post(a, "/admin/circuits/nosuch/force-open?scope=cluster").status, 404)
        # Forced open through A: B and C reject too, without calling the upstream.
        r = self.post(a, "/admin/circuits/svc/force-open?scope=cluster&for=30s")
        self.assertEqual(r.status, 200, r.body)
        for bb in (b, c):
            self.wait_verdict(bb, "forced_open")
        before = self.up.stats()["requests"]
        for bb in (a, b, c):
            self.assert_cluster_rejection(self.get(bb, "/%s/forced" % bb.name), bb.name)
        self.assertEqual(self.up.stats()["requests"], before)
        # Reset through B: all forward again (well before the 30 s are over).
        self.assertEqual(self.post(b, "/admin/circuits/svc/reset?scope=cluster").status, 200)
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.get(bb, "/%s/reset" % bb.name).status == 200, timeout=5),
                            "%s: %s" % (bb.name, self.view(bb)))
        # `for` ends a forced state by itself.
        self.assertEqual(self.post(c, "/admin/circuits/svc/force-open?scope=cluster&for=2s").status, 200)
        self.wait_verdict(a, "forced_open")
        self.assertEqual(self.get(a, "/a/forced2").status, 503)
        for bb in (a, b, c):
            self.assertTrue(wait_until(lambda: self.get(bb, "/%s/expired" % bb.name).status == 200, timeout=8),
                            "%s: %s" % (bb.name, self.view(bb)))

    def test_an_action_answers_503_when_redis_is_gone(self):
        a, b, c = self.start_three()
        self.redis.kill()
        self.assertTrue(wait_until(lambda: self.redis_up(a) == 0, timeout=5))
        r = self.post(a, "/admin/circuits/svc/force-open?scope=cluster&for=30s")
        self.assertEqual(r.status, 503, r.body)
        self.assertEqual(r.json().get("error"), "cluster_unavailable")
        for bb in (a, b, c):
            self.assertEqual(self.get(bb, "/%s/nored" % bb.name).status, 200)

    def test_an_action_refused_while_redis_is_stopped_changes_nothing(self):
        # "503 when Redis cannot be reached (nothing changed)": with Redis SIGSTOPped the action answers
        # 503 — and once Redis runs again, no forced state appears that the operator was told did not
        # happen.
        a, b, c = self.start_three()
        self.redis.pause()
        try:
            r = self.post(a, "/admin/circuits/svc/force-open?scope=cluster&for=30s")
            self.assertEqual(r.status, 503, r.body)
        finally:
            self.redis.resume()
        self.assertTrue(wait_until(lambda: self.redis_up(a) == 1, timeout=15))
        time.sleep(3 * SYNC)
        self.assertIsNone(self.redis.command("GET", "{breakerbox:svc}:verdict"),
                          "the refused action was applied after all")
        for bb in (a, b, c):
            self.assertEqual(self.get(bb, "/%s/after" % bb.name).status, 200, "%s: %s" % (bb.name, self.view(bb)))


class MetricsAndConfigTest(ClusterCase):
    FAMILIES = ("breakerbox_cluster_redis_up", "breakerbox_cluster_sync_duration_seconds",
                "breakerbox_cluster_sync_failures_total", "breakerbox_cluster_redis_commands_total",
                "breakerbox_cluster_live_replicas", "breakerbox_cluster_verdict",
                "breakerbox_cluster_clock_offset_seconds")

    def test_metrics_pass_promtool_and_have_the_cluster_families(self):
        a, b, c = self.start_three(breaker="      open_duration: 30s")
        self.fail_locally(a)
        self.fail_locally(b)
        self.wait_verdict(c, "open")
        self.assertEqual(self.get(c, "/c/x").status, 503)
        scrape = self.metrics(c)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape.encode(), capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        for family in self.FAMILIES:
            base = re.escape(family.removesuffix("_total"))
            self.assertRegex(scrape, r"(?m)^# TYPE %s(_total)? \w+" % base)
        self.assertRegex(scrape, r"(?m)^# TYPE breakerbox_cluster_sync_duration_seconds histogram")
        self.assertEqual(sample(scrape, "breakerbox_cluster_redis_up"), 1)
        self.assertEqual(sample(scrape, "breakerbox_cluster_live_replicas", upstream="svc"), 3)
        self.assertEqual(sample(scrape, "breakerbox_cluster_verdict", upstream="svc", state="open"), 1)
        self.assertEqual(sample(scrape, "breakerbox_cluster_verdict", upstream="svc", state="closed"), 0)
        self.assertGreater(sample(scrape, "breakerbox_cluster_redis_commands_total"), 0)
        self.assertGreater(sample(scrape, "breakerbox_cluster_sync_duration_seconds_count"), 0)
        self.assertEqual(sample(scrape, "breakerbox_rejections_total", upstream="svc", reason="cluster_open"), 1)
        self.assertIsNone(sample(scrape, "breakerbox_cluster_live_replicas", upstream="plain"))

    def check_config(self, text):
        path = os.path.join(self.tmp.name, "check.yaml")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([BREAKERBOX_BIN, "--check-config", path], capture_output=True, text=True, timeout=15)

    def test_configuration_errors(self):
        good = config(self.redis.address, self.up.address, "a")
        r = self.check_config(good)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # scope: cluster without a cluster block.
        without = re.sub(r"(?m)^cluster:\n(  .*\n)+", "", good)
        self.assertNotIn("replica_id", without)
        r = self.check_config(without)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("upstreams.svc.circuit_breaker.scope", r.stdout + r.stderr)
        # A bare host name (no port) is refused; host:port with a name is what the contract accepts.
        for bad in ("redis-host", "redis://127.0.0.1:6379", "unix:", "127.0.0.1"):
            with self.subTest(redis=bad):
                r = self.check_config(config(bad, self.up.address, "a"))
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("cluster.redis", r.stdout + r.stderr)
        r = self.check_config(config("redis:6379", self.up.address, "a"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Bounds from config/reference.md.
        for extra, key in (("  sync_interval: 10ms", "cluster.sync_interval"), ("  quorum: 0", "cluster.quorum")):
            with self.subTest(extra=extra):
                text = good.replace("  sync_interval: 100ms\n", "").replace("  quorum: 2\n", "")
                text = text.replace("  replica_id: a\n", "  replica_id: a\n" + extra + "\n")
                r = self.check_config(text)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(key, r.stdout + r.stderr)

    def test_a_reload_that_changes_the_cluster_block_is_refused(self):
        a = self.replica("a")
        self.wait_live(1, a)
        with open(a.config_path) as f:
            text = f.read()
        with open(a.config_path, "w") as f:
            f.write(text.replace("sync_interval: 100ms", "sync_interval: 200ms"))
        before = len(a.log_entries("configuration reload rejected"))
        a.signal(signal.SIGHUP)
        entries = a.log_entries("configuration reload rejected", at_least=before + 1)
        self.assertGreater(len(entries), before, self.logs(a))
        self.assertIn("needs a restart", json.dumps(entries[-1]))
        self.assertEqual(self.health(a)["config_generation"], 1)

    def test_a_redis_address_by_name_is_resolved(self):
        # host:port with a name (the contract's `redis:6379` form): a TCP Redis reached as localhost.
        port = free_port()
        folder = os.path.join(self.tmp.name, "tcp")
        os.mkdir(folder)
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", folder, "--daemonize", "no"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.kill(), proc.wait(timeout=10)))

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        self.assertTrue(wait_until(listening, timeout=10))
        bb = self.breakerbox(config("localhost:%d" % port, self.up.address, "named"))
        bb.name = "named"
        self.assertTrue(wait_until(lambda: self.redis_up(bb) == 1, timeout=10),
                        "%s\n%s" % (self.health(bb)["cluster"], self.logs(bb)))
        self.assertEqual(self.health(bb)["cluster"]["redis"]["address"], "localhost:%d" % port)


if __name__ == "__main__":
    unittest.main()
