"""The `queue` fallback ("queue for later", docs/queue.md) with the real binary: the 202 answer and its
status resource, durability across kill -9 (during a burst of enqueues and during a delivery), FIFO
delivery that stops at the first retryable failure, dead letters, expiry, idempotency keys, the limits
that pass a request on to the next fallback, credentials kept off the disk, pacing, delivery through the
breaker, the admin queue API, /metrics (checked by promtool), file modes and configuration errors.

Readings of docs/queue.md this module relies on where the text leaves a choice (the implementation
should agree, or the test be changed):

 1. `GET /admin/queues` answers `{"queues": {"<upstream>": {...}}}` (a list of objects with an
    "upstream" key is accepted too); each queue's object has `depth` (queued + in flight), `bytes`,
    `oldest_age_seconds`, `in_flight` and `dead_letters` — the names of the gauges in /metrics.
 2. `dead_letters` counts `failed` and `expired` entries (what purge removes).
 3. `GET /admin/queues/{upstream}?state=..&limit=..` answers `{"entries": [...]}` (a bare list is
    accepted too), oldest first; an entry has `id`, `status`, `attempts` and no `body` key.
    `GET /admin/queues/{upstream}/{id}` has `id`, `status`, the stored headers (`headers`: an object,
    or a list of [name, value] pairs / {"name", "value"} objects; or `request_fields`: a list of
    "Name: value" strings, as the implementation answers), `body_size` (bytes) and `response` (as in
    the status resource). An unknown id is 404; so is an upstream that has no queue (unknown, or
    without a queue fallback), as /admin/circuits/{name} and /admin/endpoints/{name} answer.
 4. Successful admin mutations answer 200 (DELETE may answer 204); every /admin/queues call without the
    token, or with a wrong one, is 401.
 5. A circuit forced open through the admin API is the `circuit_open` trigger; `POST
    /admin/circuits/svc/reset` closes it and the queue starts delivering by itself within seconds.
 6. `/health/circuits` has `upstreams.svc.queue` as an object with (at least) `depth`; an upstream
    without a queue fallback has no (or a null) `queue` block.
 7. After a retryable failure, the entry (while `queued`) has a non-empty `last_error`.
 8. `response.headers` in the status resource has lowercase names; the stored request keeps its other
    headers (Content-Type, X-Custom) and they are delivered.
 9. `Prefer: wait=10, respond-async` (a list, RFC 7240) counts as asking for respond-async.
10. `breakerbox_queue_delivery_attempts_total` summed over `result` (without `result="not_sent"`) is
    the number of deliveries sent.
11. `delivery.rate: 5` means no more than ~5 starts in any second (no burst of a whole second's worth
    on top of the steady rate): 10 deliveries span at least ~1.6 s.
12. `max_bytes` counts the stored body and headers: two 600-byte bodies do not fit in 1KiB.
13. The database holds an id as its 32-hex text or as 16 raw bytes; the -wal file (it holds the same
    data) is 0600 like the database.
14. A queue_store folder that others can read refuses the start with exit status 1 and a message that
    names the folder or `queue_store`.
"""
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ProxyTestCase, request, wait_until, PROMTOOL, BREAKERBOX_BIN

TOKEN = "queue-token"
STATUS = "/_breakerbox/queue/"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NEXT_BODY = "not queued"

# Circuits are opened and closed by the admin API unless a test says otherwise; the breaker itself is
# lax so that failed deliveries do not open it by accident.
LAX_BREAKER = {"consecutive_failures": 1000, "failure_rate": {"enabled": False}, "open_duration": "60s",
               "open_duration_jitter": 0}
FAST_DELIVERY = {"rate": 50, "backoff_base": "100ms", "backoff_max": "200ms"}


def merged(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config(endpoint, db_path, queue=None, breaker=None, store=None, when=("circuit_open",), bulkhead=None,
           next_fallback=True, plain=None):
    """A configuration with one upstream `svc` (every path) with a queue fallback, followed by a static
    503 (the "next fallback"). JSON is YAML, so the nested settings are written as JSON."""
    q = merged({"delivery": FAST_DELIVERY}, queue)
    qs = merged({"path": db_path}, store)
    fallbacks = [{"when": list(when), "queue": q}]
    if next_fallback:
        fallbacks.append({"when": ["circuit_open", "bulkhead_full"], "static": {"status": 503, "body": NEXT_BODY}})
    svc = {"endpoints": [endpoint], "routes": {"path_prefix": "/"}, "request_timeout": "5s",
           "retries": {"max_attempts": 1}, "circuit_breaker": breaker or LAX_BREAKER, "fallbacks": fallbacks}
    if bulkhead:
        svc["bulkhead"] = bulkhead
    upstreams = {"svc": svc}
    if plain:
        upstreams["plain"] = {"endpoints": [plain], "routes": {"hosts": ["plain"]}}
    return f"""
workers: 2
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0", token: {TOKEN}}}
queue_store: {json.dumps(qs)}
upstreams: {json.dumps(upstreams)}
"""


def lower_headers(h):
    """Headers as a dict with lowercase names, from an object or a list of pairs / name-value objects."""
    if isinstance(h, dict):
        return {k.lower(): v for k, v in h.items()}
    out = {}
    for item in h or []:
        if isinstance(item, dict):
            out[item["name"].lower()] = item["value"]
        elif isinstance(item, str):  # "Name: value"
            k, v = item.split(":", 1)
            out[k.strip().lower()] = v.strip()
        else:
            out[item[0].lower()] = item[1]
    return out


def db_files(db_path):
    return [p for p in (db_path, db_path + "-wal") if os.path.exists(p)]


def db_raw(db_path):
    """The bytes of the database and its WAL, as they are on disk."""
    data = b""
    for p in db_files(db_path):
        with open(p, "rb") as f:
            data += f.read()
    return data


def db_values(db_path):
    """Every value of every table, as one text (blobs also as hex): a check that does not depend on the
    schema."""
    con = sqlite3.connect(db_path, timeout=10)
    try:
        parts = []
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in con.execute('SELECT * FROM "%s"' % t.replace('"', '""')):
                for v in row:
                    if isinstance(v, bytes):
                        parts.append(v.hex())
                        parts.append(v.decode("latin-1"))
                    elif v is not None:
                        parts.append(str(v))
        return "\n".join(parts)
    finally:
        con.close()


def matching_samples(text, name, **labels):
    """The values of the samples of `name` whose labels include all given ones."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}") + 1]))
        elif line.startswith(name + " "):
            found = {}
        else:
            continue
        if all(found.get(k) == v for k, v in labels.items()):
            yield float(line.rsplit(" ", 1)[1])


def sample(text, name, **labels):
    """The value of one sample, by its labels (all given ones must match); None if absent."""
    return next(matching_samples(text, name, **labels), None)


def samples_sum(text, name, **labels):
    """The sum of the matching samples; None if there is none."""
    values = list(matching_samples(text, name, **labels))
    return sum(values) if values else None


class Recorder:
    """A ScriptedUpstream handler: answers each request with decide(method, target, headers, body) ->
    (status, body) on a keep-alive connection, and records (time, method, target, headers dict) in order."""

    def __init__(self, decide=None, hold=0.0):
        self.decide = decide or (lambda m, t, h, b: (200, b"done"))
        self.hold = hold
        self.seen = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, up, conn, index):
        while True:
            req = up.read_request(conn)
            if req is None:
                return
            method, target, headers, body = req
            with self.lock:
                self.seen.append((time.monotonic(), method, target, lower_headers(headers)))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.hold:
                    time.sleep(self.hold)
                status, out = self.decide(method, target, headers, body)
            finally:
                with self.lock:
                    self.in_flight -= 1
            reason = http.client.responses.get(status, "X")
            conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, reason.encode(), len(out), out))

    def targets(self):
        with self.lock:
            return [t for _, _, t, _ in self.seen]

    def count(self, target):
        return self.targets().count(target)

    def records(self):
        with self.lock:
            return list(self.seen)


class QueueCase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.qdir = tempfile.mkdtemp(prefix="breakerbox-queue-test-")
        self.addCleanup(shutil.rmtree, self.qdir, True)
        self.db = os.path.join(self.qdir, "queue.db")

    # -- processes --------------------------------------------------------------------------------
    def start(self, endpoint, db=None, extra_env=None, **kw):
        return self.breakerbox(config(endpoint, db or self.db, **kw), extra_env)

    # -- admin ------------------------------------------------------------------------------------
    def admin(self, bb, method, path, token=TOKEN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return request(bb.port("admin"), method=method, target=path, headers=headers)

    def circuit(self, bb, action):
        r = self.admin(bb, "POST", f"/admin/circuits/svc/{action}")
        self.assertEqual(r.status, 200, r.body)

    def force_open(self, bb):
        self.circuit(bb, "force-open")

    def close(self, bb):
        self.circuit(bb, "reset")

    def health(self, bb):
        return request(bb.port("admin"), target="/health/circuits").json()["upstreams"]

    def metrics(self, bb):
        r = request(bb.port("admin"), target="/metrics")
        self.assertEqual(r.status, 200)
        return r.body.decode()

    def summary(self, bb, upstream="svc"):
        r = self.admin(bb, "GET", "/admin/queues")
        self.assertEqual(r.status, 200, r.body)
        j = r.json()
        qs = j.get("queues", j) if isinstance(j, dict) else j
        if isinstance(qs, list):
            for q in qs:
                if q.get("upstream") == upstream:
                    return q
            self.fail(f"no queue {upstream} in {j}")
        self.assertIn(upstream, qs, j)
        return qs[upstream]

    def stored_headers(self, entry):
        """The stored request headers of an admin entry (`headers`, or `request_fields` as "Name: value")."""
        for key in ("headers", "request_fields"):
            if key in entry:
                return lower_headers(entry[key])
        self.fail(f"no stored headers in {entry}")

    def entries(self, bb, query="", upstream="svc"):
        r = self.admin(bb, "GET", f"/admin/queues/{upstream}{query}")
        self.assertEqual(r.status, 200, r.body)
        j = r.json()
        return j["entries"] if isinstance(j, dict) else j

    # -- the data path ----------------------------------------------------------------------------
    def send(self, bb, target="/orders", body=b'{"item": 1}', headers=None, method="POST"):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return request(bb.port(), method=method, target=target, headers=h, body=body)

    def enqueue(self, bb, target="/orders", body=b'{"item": 1}', headers=None, method="POST"):
        """Sends a request that must be queued; returns its id."""
        r = self.send(bb, target, body, headers, method)
        self.assertEqual(r.status, 202, (target, r.status, r.headers, r.body))
        self.assertEqual(r.headers.get("x-breakerbox-fallback"), "queue")
        return r.json()["id"]

    def assert_next_fallback(self, r, what=""):
        self.assertEqual(r.status, 503, (what, r.status, r.body))
        self.assertEqual(r.headers.get("x-breakerbox-fallback"), "static", what)
        self.assertEqual(r.body, NEXT_BODY.encode(), what)

    def status(self, bb, qid):
        r = request(bb.port(), target=STATUS + qid)
        self.assertEqual(r.status, 200, (qid, r.status, r.body))
        return r.json()

    def wait_state(self, bb, qid, states, timeout=20):
        states = (states,) if isinstance(states, str) else tuple(states)
        last = {}

        def check():
            last["j"] = self.status(bb, qid)
            return last["j"]["status"] in states

        self.assertTrue(wait_until(check, timeout=timeout, interval=0.05),
                        f"{qid} never became {states}: {last.get('j')}")
        return last["j"]

    def echo(self, status_json):
        """The test upstream's JSON echo kept in a delivered entry's response."""
        resp = status_json["response"]
        self.assertFalse(resp["body_truncated"], resp)
        e = json.loads(resp["body"])
        e["headers"] = lower_headers(e["headers"])
        return e


class AnswerAndStatusTest(QueueCase):
    def test_202_answer_status_resource_and_delivery(self):
        up = self.upstream("svc")
        bb = self.start(up.address, breaker=merged(LAX_BREAKER, {"consecutive_failures": 1}))
        self.assertEqual(request(bb.port(), target="/trip?status=500").status, 500)  # opens the circuit (60 s)
        self.assertEqual(self.health(bb)["svc"]["state"], "open")
        body = b'{"item": 42}'
        r = self.send(bb, "/orders?status=201", body, {"Idempotency-Key": "order-1", "X-Custom": "kept"})
        self.assertEqual(r.status, 202, r.body)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        j = r.json()
        qid = j["id"]
        self.assertRegex(qid, ID_RE)
        self.assertEqual(r.headers["location"], STATUS + qid)
        self.assertEqual(j["location"], STATUS + qid)
        self.assertEqual(r.headers["x-breakerbox-fallback"], "queue")
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "circuit_open")
        self.assertNotIn("preference-applied", r.headers)  # no Prefer: respond-async was sent
        retry_after = int(r.headers["retry-after"])
        self.assertGreaterEqual(retry_after, 1)
        self.assertLessEqual(retry_after, 60)
        self.assertEqual(j["status"], "queued")
        self.assertEqual(j["upstream"], "svc")
        self.assertEqual(j["idempotency_key"], "order-1")
        self.assertIs(j["duplicate"], False)
        self.assertEqual(up.stats()["paths"].get("/orders", 0), 0)  # nothing was sent

        # A request without a key gets one minted; another id.
        r2 = self.send(bb, "/orders?status=201", b'{"item": 43}')
        self.assertEqual(r2.status, 202, r2.body)
        minted = r2.json()["idempotency_key"]
        self.assertTrue(minted)
        qid2 = r2.json()["id"]
        self.assertNotEqual(qid2, qid)

        s = self.status(bb, qid)
        self.assertEqual(s["id"], qid)
        self.assertEqual(s["upstream"], "svc")
        self.assertEqual(s["status"], "queued")
        self.assertEqual(s["attempts"], 0)
        self.assertEqual(s["method"], "POST")
        self.assertEqual(s["target"], "/orders?status=201")
        self.assertEqual(s["idempotency_key"], "order-1")
        self.assertRegex(s["enqueued_at"], TIME_RE)
        self.assertRegex(s["updated_at"], TIME_RE)

        self.close(bb)
        s = self.wait_state(bb, qid, "delivered")
        self.assertEqual(s["attempts"], 1)
        self.assertEqual(s["last_error"], "")
        self.assertGreaterEqual(s["updated_at"], s["enqueued_at"])
        self.assertEqual(s["response"]["status"], 201)
        self.assertEqual(lower_headers(s["response"]["headers"]).get("content-type"), "application/json")
        e = self.echo(s)
        self.assertEqual(e["method"], "POST")
        self.assertEqual(e["target"], "/orders?status=201")
        self.assertEqual(e["body_bytes"], len(body))
        self.assertEqual(e["headers"]["idempotency-key"], "order-1")
        self.assertEqual(e["headers"]["x-breakerbox-delivery-attempt"], "1")
        self.assertEqual(e["headers"]["x-breakerbox-queue-id"], qid)
        self.assertEqual(e["headers"]["x-custom"], "kept")
        self.assertEqual(e["headers"]["content-type"], "application/json")

        s2 = self.wait_state(bb, qid2, "delivered")
        e2 = self.echo(s2)
        self.assertEqual(e2["headers"]["idempotency-key"], minted)
        self.assertEqual(s2["idempotency_key"], minted)
        self.assertEqual(up.stats()["paths"]["/orders"], 2)  # each delivered once

    def test_unknown_id_is_404_and_other_methods_405(self):
        up = self.upstream("svc")
        bb = self.start(up.address)
        for target in (STATUS + "0123456789abcdef0123456789abcdef", STATUS + "not-an-id"):
            r = request(bb.port(), target=target)
            self.assertEqual(r.status, 404, target)
            r.json()  # a JSON body
        self.force_open(bb)
        qid = self.enqueue(bb)
        self.close(bb)
        self.wait_state(bb, qid, "delivered")
        for method in ("POST", "DELETE", "PUT"):
            r = request(bb.port(), method=method, target=STATUS + qid, body=b"")
            self.assertEqual(r.status, 405, method)
        self.assertEqual(up.stats()["paths"].get(STATUS + qid, 0), 0)  # the status path is never forwarded

    def test_custom_status_path(self):
        up = self.upstream("svc")
        bb = self.start(up.address, store={"status_path": "/_q/"})
        self.force_open(bb)
        r = self.send(bb)
        self.assertEqual(r.status, 202)
        qid = r.json()["id"]
        self.assertEqual(r.headers["location"], "/_q/" + qid)
        s = request(bb.port(), target="/_q/" + qid)
        self.assertEqual(s.status, 200)
        self.assertEqual(s.json()["status"], "queued")

    def test_response_body_is_kept_up_to_the_limit(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"response_body_limit": 100})
        self.force_open(bb)
        qid = self.enqueue(bb, "/big?bytes=1000")
        self.close(bb)
        s = self.wait_state(bb, qid, "delivered")
        self.assertEqual(s["response"]["status"], 200)
        self.assertIs(s["response"]["body_truncated"], True)
        self.assertEqual(s["response"]["body"], "x" * 100)


class WhatIsQueuedTest(QueueCase):
    def test_methods_get_is_never_queued(self):
        up = self.upstream("svc")
        bb = self.start(up.address)
        self.force_open(bb)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = self.send(bb, "/m", b"{}", method=method)
            self.assertEqual(r.status, 202, method)
        for method in ("GET", "HEAD", "OPTIONS"):
            r = request(bb.port(), method=method, target="/m")
            self.assertEqual(r.status, 503, method)
            self.assertEqual(r.headers.get("x-breakerbox-fallback"), "static", method)
        self.assertEqual(self.summary(bb)["depth"], 4)

    def test_configured_methods_and_path_prefixes(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"methods": ["POST"], "path_prefixes": ["/orders"]})
        self.force_open(bb)
        self.enqueue(bb, "/orders/1")
        self.assert_next_fallback(self.send(bb, "/orders/1", method="PUT"), "PUT not in methods")
        self.assert_next_fallback(self.send(bb, "/other"), "path outside the prefixes")
        self.assertEqual(self.summary(bb)["depth"], 1)

    def test_require_prefer_async(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"require_prefer_async": True})
        self.force_open(bb)
        self.assert_next_fallback(self.send(bb), "no Prefer")
        self.assert_next_fallback(self.send(bb, headers={"Prefer": "return=minimal"}), "another preference")
        r = self.send(bb, headers={"Prefer": "respond-async"})
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(r.headers.get("preference-applied"), "respond-async")
        r = self.send(bb, "/orders/2", headers={"Prefer": "wait=10, respond-async"})
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(r.headers.get("preference-applied"), "respond-async")
        self.assertEqual(self.summary(bb)["depth"], 2)

    def test_prefer_is_acknowledged_without_being_required(self):
        up = self.upstream("svc")
        bb = self.start(up.address)
        self.force_open(bb)
        r = self.send(bb, headers={"Prefer": "respond-async"})
        self.assertEqual(r.status, 202)
        self.assertEqual(r.headers.get("preference-applied"), "respond-async")

    def test_full_queue_passes_to_the_next_fallback(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"max_entries": 2})
        self.force_open(bb)
        a = self.enqueue(bb, "/a")
        b = self.enqueue(bb, "/b")
        self.assert_next_fallback(self.send(bb, "/c"), "third entry in a queue of 2")
        rejected = samples_sum(self.metrics(bb), "breakerbox_queue_rejected_total", upstream="svc")
        self.assertEqual(rejected, 1)
        self.close(bb)
        self.wait_state(bb, a, "delivered")
        self.wait_state(bb, b, "delivered")
        self.force_open(bb)
        self.enqueue(bb, "/d")  # delivered entries no longer count
        self.assertEqual(up.stats()["paths"].get("/c", 0), 0)

    def test_max_bytes_passes_to_the_next_fallback(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"max_bytes": "1KiB"})
        self.force_open(bb)
        self.enqueue(bb, "/a", b"a" * 600)
        self.assert_next_fallback(self.send(bb, "/b", b"b" * 600), "second 600-byte body in 1KiB")

    def test_body_above_max_body_size_passes_to_the_next_fallback(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"max_body_size": "1KiB"})
        self.force_open(bb)
        self.enqueue(bb, "/fits", b"x" * 1024)
        self.assert_next_fallback(self.send(bb, "/big", b"x" * 1025), "1025 bytes over 1KiB")
        self.assert_next_fallback(self.send(bb, "/bigger", b"x" * 5000), "5000 bytes over 1KiB")
        self.assertEqual(self.summary(bb)["depth"], 1)

    def test_bulkhead_full_trigger(self):
        up = self.upstream("svc")
        bb = self.start(up.address, when=("bulkhead_full",), bulkhead={"max_concurrent": 1, "max_queue": 0})
        holder = threading.Thread(target=lambda: request(bb.port(), target="/hold?delay_ms=1500"))
        holder.start()
        try:
            self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1, timeout=10))
            r = self.send(bb, "/while-full")
            self.assertEqual(r.status, 202, r.body)
            self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "bulkhead_full")
            qid = r.json()["id"]
        finally:
            holder.join(timeout=10)
        s = self.wait_state(bb, qid, "delivered")
        self.assertEqual(s["response"]["status"], 200)
        self.assertEqual(up.stats()["paths"]["/while-full"], 1)
        self.assertEqual(self.summary(bb)["depth"], 0)  # the delivery was not queued again


class IdempotencyTest(QueueCase):
    def test_duplicate_key_same_payload_same_id_other_payload_422(self):
        up = self.upstream("svc")
        bb = self.start(up.address)
        self.force_open(bb)
        key = {"Idempotency-Key": "dup-1"}
        first = self.send(bb, "/orders", b'{"a": 1}', key)
        self.assertEqual(first.status, 202)
        qid = first.json()["id"]
        again = self.send(bb, "/orders", b'{"a": 1}', key)
        self.assertEqual(again.status, 202, again.body)
        self.assertEqual(again.json()["id"], qid)
        self.assertIs(again.json()["duplicate"], True)
        self.assertEqual(again.json()["status"], "queued")
        for target, body, why in (("/orders", b'{"a": 2}', "other body"), ("/other", b'{"a": 1}', "other target")):
            r = self.send(bb, target, body, key)
            self.assertEqual(r.status, 422, (why, r.status, r.body))
            self.assertEqual(r.json()["error"], "idempotency_key_reused", why)
        r = self.send(bb, "/orders", b'{"a": 1}', key, method="PUT")
        self.assertEqual(r.status, 422, ("other method", r.status, r.body))
        other = self.enqueue(bb, "/orders", b'{"a": 1}', {"Idempotency-Key": "dup-2"})
        self.assertNotEqual(other, qid)
        self.assertEqual(self.summary(bb)["depth"], 2)
        self.close(bb)
        self.wait_state(bb, qid, "delivered")
        self.wait_state(bb, other, "delivered")
        self.assertEqual(up.stats()["paths"]["/orders"], 2)  # dup-1 once, dup-2 once


class DeliveryTest(QueueCase):
    def test_fifo_one_at_a_time(self):
        rec = Recorder(hold=0.05)
        up = self.scripted(rec)
        bb = self.start(up.address)
        self.force_open(bb)
        ids = [self.enqueue(bb, f"/o/{i}", b'{"n": %d}' % i) for i in range(8)]
        self.assertEqual(rec.targets(), [])
        self.close(bb)
        for qid in ids:
            self.wait_state(bb, qid, "delivered")
        self.assertEqual(rec.targets(), [f"/o/{i}" for i in range(8)])
        self.assertEqual(rec.max_in_flight, 1)  # concurrency 1: each ends before the next starts
        for _, _, fields, _ in up.requests:  # the stored request is sent as it was, nothing twice
            names = [k.lower() for k, _ in fields]
            self.assertEqual(sorted(n for n in set(names) if names.count(n) > 1), [], fields)
        for (_, method, target, headers), qid in zip(rec.records(), ids):
            self.assertEqual(method, "POST")
            self.assertEqual(headers["x-breakerbox-delivery-attempt"], "1")
            self.assertEqual(headers["x-breakerbox-queue-id"], qid)
            self.assertTrue(headers["idempotency-key"])

    def test_concurrency_limits_deliveries_in_flight(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"delivery": {"concurrency": 3}})
        self.force_open(bb)
        ids = [self.enqueue(bb, f"/c/{i}?delay_ms=400") for i in range(6)]
        up.reset()
        self.close(bb)
        for qid in ids:
            self.wait_state(bb, qid, "delivered")
        most = up.stats()["max_in_flight"]
        self.assertLessEqual(most, 3)
        self.assertGreaterEqual(most, 2)

    def test_a_retryable_failure_stops_the_drain(self):
        healed = threading.Event()

        def decide(method, target, headers, body):
            if target == "/o/0" and not healed.is_set():
                return 503, b"busy"
            return 200, b"done"

        rec = Recorder(decide)
        up = self.scripted(rec)
        bb = self.start(up.address)
        self.force_open(bb)
        ids = [self.enqueue(bb, f"/o/{i}") for i in range(3)]
        self.close(bb)
        self.assertTrue(wait_until(lambda: rec.count("/o/0") >= 3, timeout=15), rec.targets())
        self.assertEqual(rec.targets(), ["/o/0"] * len(rec.targets()))  # nothing behind it overtook it
        head = self.status(bb, ids[0])
        self.assertIn(head["status"], ("queued", "in_flight"))
        self.assertGreaterEqual(head["attempts"], 3)
        if head["status"] == "queued":
            self.assertTrue(head["last_error"], head)
        self.assertEqual(self.status(bb, ids[1])["status"], "queued")
        self.assertEqual(self.status(bb, ids[1])["attempts"], 0)
        healed.set()
        for qid in ids:
            self.wait_state(bb, qid, "delivered")
        tries = rec.count("/o/0")
        self.assertEqual(rec.targets(), ["/o/0"] * tries + ["/o/1", "/o/2"])
        head = self.status(bb, ids[0])
        self.assertEqual(head["attempts"], tries)
        self.assertEqual(head["response"]["status"], 200)
        attempts = [h["x-breakerbox-delivery-attempt"] for _, _, t, h in rec.records() if t == "/o/0"]
        self.assertEqual(attempts, [str(n) for n in range(1, tries + 1)])
        keys = {h["idempotency-key"] for _, _, t, h in rec.records() if t == "/o/0"}
        self.assertEqual(len(keys), 1)  # the same key on every attempt

    def test_backoff_doubles_up_to_its_cap(self):
        healed = threading.Event()
        rec = Recorder(lambda m, t, h, b: (200, b"done") if healed.is_set() else (503, b"busy"))
        up = self.scripted(rec)
        bb = self.start(up.address, queue={"delivery": {"backoff_base": "300ms", "backoff_max": "600ms"}})
        self.force_open(bb)
        qid = self.enqueue(bb, "/b")
        self.close(bb)
        self.assertTrue(wait_until(lambda: rec.count("/b") >= 4, timeout=15))
        healed.set()
        self.wait_state(bb, qid, "delivered")
        times = [t for t, _, _, _ in rec.records()]
        gaps = [round(b - a, 3) for a, b in zip(times, times[1:])][:3]
        # base x 2^(n-1): 0.3, 0.6, then capped at 0.6 (1.2 without the cap)
        self.assertGreaterEqual(gaps[0], 0.25, gaps)
        self.assertGreaterEqual(gaps[1], 0.5, gaps)
        self.assertGreaterEqual(gaps[2], 0.5, gaps)
        self.assertLess(gaps[2], 1.1, gaps)

    def test_retention(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"retention": "1s"})
        self.force_open(bb)
        done = self.enqueue(bb, "/done")
        self.close(bb)
        self.wait_state(bb, done, "delivered")
        self.force_open(bb)
        waiting = self.enqueue(bb, "/waiting")
        # The delivered record answers for its retention, then it is gone; a queued one stays.
        self.assertTrue(wait_until(lambda: request(bb.port(), target=STATUS + done).status == 404, timeout=15))
        self.assertEqual(self.status(bb, waiting)["status"], "queued")

    def test_dead_letters_max_attempts_and_terminal_4xx(self):
        def decide(method, target, headers, body):
            if target == "/dead":
                return 503, b"still down"
            if target == "/bad":
                return 400, b"bad request body"
            return 201, b"created"

        rec = Recorder(decide)
        up = self.scripted(rec)
        bb = self.start(up.address, queue={"max_attempts": 2})
        self.force_open(bb)
        dead = self.enqueue(bb, "/dead")
        bad = self.enqueue(bb, "/bad")
        ok = self.enqueue(bb, "/ok")
        self.close(bb)
        s_ok = self.wait_state(bb, ok, ("delivered", "failed"))
        self.assertEqual(s_ok["status"], "delivered")
        self.assertEqual(s_ok["response"]["status"], 201)
        self.assertEqual(rec.targets(), ["/dead", "/dead", "/bad", "/ok"])
        s_dead = self.status(bb, dead)
        self.assertEqual(s_dead["status"], "failed")
        self.assertEqual(s_dead["attempts"], 2)
        s_bad = self.status(bb, bad)
        self.assertEqual(s_bad["status"], "failed")
        self.assertEqual(s_bad["attempts"], 1)
        self.assertEqual(s_bad["response"]["status"], 400)
        self.assertEqual(s_bad["response"]["body"], "bad request body")
        failed = [e["id"] for e in self.entries(bb, "?state=failed&limit=100")]
        self.assertEqual(failed, [dead, bad])
        q = self.summary(bb)
        self.assertEqual(q["dead_letters"], 2)
        self.assertEqual(q["depth"], 0)
        m = self.metrics(bb)
        self.assertEqual(sample(m, "breakerbox_queue_dead_lettered_total", upstream="svc"), 2)
        self.assertEqual(sample(m, "breakerbox_queue_dead_letters", upstream="svc"), 2)
        self.assertEqual(sample(m, "breakerbox_queue_delivered_total", upstream="svc"), 1)

    def test_expiry(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"max_age": "1s"})
        self.force_open(bb)
        qid = self.enqueue(bb, "/late")
        s = self.wait_state(bb, qid, ("expired", "delivered", "failed"), timeout=15)
        self.assertEqual(s["status"], "expired")
        self.assertEqual(s["attempts"], 0)
        q = self.summary(bb)
        self.assertEqual(q["depth"], 0)
        self.assertEqual(q["dead_letters"], 1)
        self.assertEqual(sample(self.metrics(bb), "breakerbox_queue_expired_total", upstream="svc"), 1)
        self.close(bb)
        self.assertEqual(request(bb.port(), target="/live").status, 200)  # the circuit is closed
        # An expired request is never delivered (a bounded look for a delivery that must not come).
        self.assertFalse(wait_until(lambda: up.stats()["paths"].get("/late", 0) > 0, timeout=1.5))
        self.assertEqual(self.status(bb, qid)["status"], "expired")

    def test_pacing(self):
        rec = Recorder()
        up = self.scripted(rec)
        bb = self.start(up.address, queue={"delivery": {"rate": 5}})
        self.force_open(bb)
        ids = [self.enqueue(bb, f"/p/{i}") for i in range(10)]
        self.close(bb)
        for qid in ids:
            self.wait_state(bb, qid, "delivered", timeout=30)
        times = [t for t, _, _, _ in rec.records()]
        self.assertEqual(len(times), 10)
        span = times[-1] - times[0]
        self.assertGreaterEqual(span, 1.6, f"10 deliveries at rate 5 took only {span:.2f}s")
        most_in_a_second = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        self.assertLessEqual(most_in_a_second, 6, [round(t - times[0], 3) for t in times])

    def test_delivery_goes_through_the_breaker(self):
        up = self.upstream("svc")
        bb = self.start(up.address, breaker=merged(LAX_BREAKER, {"consecutive_failures": 1}))
        self.force_open(bb)
        qid = self.enqueue(bb, "/through")
        up.configure("status=503")
        self.close(bb)
        # The delivery fails, counts as the breaker's failure and re-opens the circuit; the queue waits.
        self.assertTrue(wait_until(lambda: self.health(bb)["svc"]["state"] == "open", timeout=15))
        self.assertEqual(up.stats()["paths"].get("/through", 0), 1)
        s = self.wait_state(bb, qid, "queued")
        self.assertEqual(s["attempts"], 1)
        self.assertTrue(s["last_error"], s)
        self.assertFalse(wait_until(lambda: up.stats()["paths"].get("/through", 0) > 1, timeout=1.5),
                         "delivered again while the circuit was open")
        s = self.status(bb, qid)
        self.assertEqual((s["status"], s["attempts"]), ("queued", 1))  # turned away: not counted
        self.assertEqual(self.summary(bb)["depth"], 1)
        self.assertEqual(sample(self.metrics(bb), "breakerbox_queue_enqueued_total", upstream="svc"), 1)  # not queued again
        up.configure("")
        self.close(bb)
        s = self.wait_state(bb, qid, "delivered")
        self.assertEqual(s["attempts"], 2)
        self.assertEqual(self.echo(s)["headers"]["x-breakerbox-delivery-attempt"], "2")
        self.assertEqual(up.stats()["paths"]["/through"], 2)

    def test_a_request_the_upstream_may_have_got_is_never_queued(self):
        # cancel_in_flight: the circuit opening ends a POST already sent to the upstream. It is answered
        # by the next fallback, never queued: a delivery would make the upstream do it twice.
        up = self.upstream("svc", threads=2)
        bb = self.start(up.address, breaker=merged(LAX_BREAKER, {"consecutive_failures": 1, "cancel_in_flight": True}))
        result = {}

        def slow_post():
            result["r"] = request(bb.port(), "POST", "/slow?delay_ms=4000", body=b"{}", timeout=15)

        t = threading.Thread(target=slow_post)
        t.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] >= 1, timeout=5))
        self.assertEqual(request(bb.port(), target="/trip?status=500").status, 500)  # the trip
        t.join(15)
        r = result["r"]
        self.assertEqual(r.status, 503, r.body)
        self.assertIn(NEXT_BODY.encode(), r.body)
        self.assertEqual(self.summary(bb)["depth"], 0)
        self.assertEqual(sample(self.metrics(bb), "breakerbox_queue_enqueued_total", upstream="svc"), 0)
        # The same request refused before it was sent is queued.
        self.assertEqual(request(bb.port(), "POST", "/slow", body=b"{}").status, 202)

    def test_an_active_probe_closes_the_circuit_and_the_queue_drains(self):
        up = self.upstream("svc")
        breaker = merged(LAX_BREAKER, {"consecutive_failures": 1, "open_duration": "300ms",
                                       "half_open": {"probe": {"path": "/health"}}})
        bb = self.start(up.address, breaker=breaker)
        up.configure("status=500")
        self.assertEqual(request(bb.port(), target="/trip").status, 500)
        qid = self.enqueue(bb, "/later")
        self.assertEqual(self.status(bb, qid)["status"], "queued")
        self.assertTrue(wait_until(lambda: up.stats()["paths"].get("/health", 0) >= 1, timeout=10))
        self.assertEqual(up.stats()["paths"].get("/later", 0), 0)
        up.configure("")  # recovered: the next probe closes the circuit, then the queue delivers
        s = self.wait_state(bb, qid, "delivered")
        self.assertEqual(s["response"]["status"], 200)
        self.assertEqual(up.stats()["paths"]["/later"], 1)

    def test_a_warning_without_an_active_probe(self):
        up = self.upstream("svc")
        bb = self.start(up.address)

        def probe_warnings(b):
            return [e for e in b.log_entries() if e.get("level") == "warn" and "probe" in json.dumps(e).lower()]

        self.assertTrue(wait_until(lambda: probe_warnings(bb), timeout=5), bb.log_entries())
        with_probe = self.start(up.address, db=os.path.join(self.qdir, "other.db"),
                                breaker=merged(LAX_BREAKER, {"half_open": {"probe": {"path": "/health"}}}))
        self.assertFalse(wait_until(lambda: probe_warnings(with_probe), timeout=1), probe_warnings(with_probe))


class CredentialsTest(QueueCase):
    SECRETS = {"Authorization": "Bearer SECRET-AUTH-4711", "Cookie": "session=SECRET-COOKIE-4712",
               "Proxy-Authorization": "Basic SECRET-PROXY-4713"}

    def test_credentials_are_not_stored_nor_delivered(self):
        up = self.upstream("svc")
        bb = self.start(up.address)
        self.force_open(bb)
        headers = dict(self.SECRETS, **{"X-Custom": "keep-me-header-value"})
        qid = self.enqueue(bb, "/secret", b'{"payload": "body-marker-0815"}', headers)
        raw = db_raw(self.db)
        self.assertIn(b"keep-me-header-value", raw)  # the check sees what is stored
        self.assertIn(b"body-marker-0815", raw)
        for secret in (b"SECRET-AUTH-4711", b"SECRET-COOKIE-4712", b"SECRET-PROXY-4713"):
            self.assertNotIn(secret, raw)
        r = self.admin(bb, "GET", f"/admin/queues/svc/{qid}")
        self.assertEqual(r.status, 200, r.body)
        stored = self.stored_headers(r.json())
        self.assertEqual(stored.get("x-custom"), "keep-me-header-value")
        for name in ("authorization", "cookie", "proxy-authorization"):
            self.assertNotIn(name, stored)
        self.close(bb)
        e = self.echo(self.wait_state(bb, qid, "delivered"))
        self.assertEqual(e["headers"]["x-custom"], "keep-me-header-value")
        for name in ("authorization", "cookie", "proxy-authorization"):
            self.assertNotIn(name, e["headers"])

    def test_delivery_headers_add_credentials_of_their_own(self):
        up = self.scripted(Recorder())
        bb = self.start(up.address, queue={"delivery": {"headers": {"Authorization": "Bearer ${ORDERS_TOKEN}",
                                                                    "X-Tenant": "configured"}}},
                        extra_env={"ORDERS_TOKEN": "delivery-token-99"})
        self.force_open(bb)
        qid = self.enqueue(bb, "/secret", b"{}", dict(self.SECRETS, **{"X-Tenant": "from-client"}))
        self.assertNotIn(b"SECRET-AUTH-4711", db_raw(self.db))
        self.close(bb)
        self.wait_state(bb, qid, "delivered")
        self.assertEqual(len(up.requests), 1)
        fields = [(k.lower(), v) for k, v in up.requests[0][2]]
        self.assertEqual([v for k, v in fields if k == "authorization"], ["Bearer delivery-token-99"])
        self.assertEqual([v for k, v in fields if k == "x-tenant"], ["configured"])  # replacing the client's
        self.assertEqual([k for k, v in fields if k in ("cookie", "proxy-authorization")], [])

    def test_store_credentials_keeps_them(self):
        up = self.upstream("svc")
        bb = self.start(up.address, queue={"store_credentials": True})
        self.force_open(bb)
        qid = self.enqueue(bb, "/secret", b"{}", dict(self.SECRETS))
        self.assertIn(b"SECRET-AUTH-4711", db_raw(self.db))
        self.close(bb)
        e = self.echo(self.wait_state(bb, qid, "delivered"))
        self.assertEqual(e["headers"]["authorization"], "Bearer SECRET-AUTH-4711")
        self.assertEqual(e["headers"]["cookie"], "session=SECRET-COOKIE-4712")


class CrashTest(QueueCase):
    def test_kill9_during_a_burst_of_enqueues(self):
        up = self.upstream("svc", threads=2)
        bb = self.start(up.address, queue={"delivery": {"rate": 200}})
        self.force_open(bb)
        port = bb.port()
        accepted, other, lock = [], [], threading.Lock()

        def writer(n):
            i = 0
            while True:
                try:
                    r = request(port, method="POST", target=f"/burst/{n}/{i}", body=b'{"n": %d, "i": %d}' % (n, i),
                                headers={"Idempotency-Key": f"burst-{n}-{i}", "Content-Type": "application/json"},
                                timeout=10)
                except (OSError, http.client.HTTPException):
                    return  # breakerbox is gone
                with lock:
                    if r.status == 202:
                        accepted.append((r.json()["id"], f"/burst/{n}/{i}"))
                    else:
                        other.append((r.status, r.body))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            self.assertTrue(wait_until(lambda: len(accepted) >= 40, timeout=30), len(accepted))
        finally:
            bb.signal(signal.SIGKILL)  # while the writers keep sending
            bb.wait(timeout=10)
            for t in threads:
                t.join(timeout=20)
        self.assertEqual(other, [])
        ids = [qid for qid, _ in accepted]
        self.assertEqual(len(set(ids)), len(ids))
        # Every 202 was sent after its commit: every one is in the database after the crash.
        stored = db_values(self.db)
        missing = [qid for qid in ids if qid not in stored and bytes.fromhex(qid).decode("latin-1") not in stored]
        self.assertEqual(missing, [], f"{len(missing)} of {len(ids)} accepted ids are not in the database")

        again = self.start(up.address, queue={"delivery": {"rate": 200}})
        for qid in ids:
            self.assertIn(self.status(again, qid)["status"], ("queued", "in_flight", "delivered"))
        for qid, target in accepted:
            self.wait_state(again, qid, "delivered", timeout=30)
        paths = up.stats()["paths"]
        self.assertEqual([t for _, t in accepted if paths.get(t, 0) < 1], [])

    def test_kill9_during_a_delivery_redelivers_with_the_same_key(self):
        up = self.upstream("svc", threads=2)
        bb = self.start(up.address)
        self.force_open(bb)
        qid = self.enqueue(bb, "/slow", b'{"x": 1}', {"Idempotency-Key": "kill-key"})
        up.configure("delay_ms=4000")  # the upstream holds the delivery
        self.close(bb)
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1, timeout=15))
        s = self.status(bb, qid)
        self.assertEqual((s["status"], s["attempts"]), ("in_flight", 1))  # committed before it was sent
        bb.signal(signal.SIGKILL)
        bb.wait(timeout=10)
        up.configure("")  # answers at once from now on
        again = self.start(up.address)
        s = self.wait_state(again, qid, "delivered")
        self.assertEqual(s["attempts"], 2)
        e = self.echo(s)
        self.assertEqual(e["headers"]["idempotency-key"], "kill-key")
        self.assertEqual(e["headers"]["x-breakerbox-delivery-attempt"], "2")
        self.assertEqual(e["headers"]["x-breakerbox-queue-id"], qid)
        self.assertEqual(up.stats()["paths"]["/slow"], 2)

    def test_synchronous_normal_survives_kill9(self):
        up = self.upstream("svc")
        bb = self.start(up.address, store={"synchronous": "normal"})
        self.force_open(bb)
        ids = [self.enqueue(bb, f"/n/{i}") for i in range(5)]
        bb.signal(signal.SIGKILL)
        bb.wait(timeout=10)
        again = self.start(up.address, store={"synchronous": "normal"})
        for qid in ids:
            self.wait_state(again, qid, "delivered")


class AdminApiTest(QueueCase):
    def test_admin_queue_api(self):
        up = self.upstream("svc", threads=2)
        bb = self.start(up.address)
        self.force_open(bb)
        a = self.enqueue(bb, "/a?status=400")  # a terminal answer: dead-lettered
        self.close(bb)
        self.wait_state(bb, a, "failed")
        self.force_open(bb)
        b = self.enqueue(bb, "/b", b"0123456789", {"X-Custom": "bee"})
        c = self.enqueue(bb, "/c")

        calls = [("GET", "/admin/queues"), ("GET", "/admin/queues/svc?state=queued&limit=100"),
                 ("GET", f"/admin/queues/svc/{b}"), ("POST", f"/admin/queues/svc/{a}/requeue"),
                 ("DELETE", f"/admin/queues/svc/{c}"), ("POST", "/admin/queues/svc/purge")]
        for method, path in calls:
            self.assertEqual(self.admin(bb, method, path, token=None).status, 401, (method, path))
            self.assertEqual(self.admin(bb, method, path, token="wrong").status, 401, (method, path))
        self.assertEqual(self.status(bb, c)["status"], "queued")  # nothing happened
        self.assertEqual(self.status(bb, a)["status"], "failed")

        q = self.summary(bb)
        self.assertEqual(q["depth"], 2)
        self.assertEqual(q["in_flight"], 0)
        self.assertEqual(q["dead_letters"], 1)
        self.assertGreater(q["bytes"], 0)
        self.assertGreaterEqual(q["oldest_age_seconds"], 0)

        queued = self.entries(bb, "?state=queued&limit=100")
        self.assertEqual([e["id"] for e in queued], [b, c])
        for e in queued:
            self.assertNotIn("body", e)
            self.assertEqual(e["status"], "queued")
        self.assertEqual([e["id"] for e in self.entries(bb, "?state=queued&limit=1")], [b])
        self.assertEqual([e["id"] for e in self.entries(bb, "?state=failed&limit=100")], [a])

        r = self.admin(bb, "GET", f"/admin/queues/svc/{b}")
        self.assertEqual(r.status, 200, r.body)
        one = r.json()
        self.assertEqual(one["id"], b)
        self.assertEqual(one["status"], "queued")
        self.assertEqual(one["body_size"], 10)
        self.assertEqual(self.stored_headers(one).get("x-custom"), "bee")
        r = self.admin(bb, "GET", f"/admin/queues/svc/{a}")
        self.assertEqual(r.json()["response"]["status"], 400)
        self.assertEqual(self.admin(bb, "GET", "/admin/queues/svc/0123456789abcdef0123456789abcdef").status, 404)

        self.assertEqual(self.admin(bb, "POST", f"/admin/queues/svc/{b}/requeue").status, 409)  # not failed/expired
        r = self.admin(bb, "POST", f"/admin/queues/svc/{a}/requeue")
        self.assertEqual(r.status, 200, r.body)
        s = self.status(bb, a)
        self.assertEqual((s["status"], s["attempts"]), ("queued", 0))
        r = self.admin(bb, "DELETE", f"/admin/queues/svc/{c}")
        self.assertIn(r.status, (200, 204), r.body)
        self.assertEqual(request(bb.port(), target=STATUS + c).status, 404)
        self.assertEqual(sorted(e["id"] for e in self.entries(bb, "?state=queued&limit=100")), sorted([a, b]))

        self.close(bb)  # a fails again (400), b is delivered
        self.wait_state(bb, a, "failed")
        self.wait_state(bb, b, "delivered")
        r = self.admin(bb, "POST", "/admin/queues/svc/purge")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(request(bb.port(), target=STATUS + a).status, 404)  # purged
        self.assertEqual(self.status(bb, b)["status"], "delivered")  # delivered records are kept
        self.assertEqual(self.admin(bb, "POST", f"/admin/queues/svc/{b}/requeue").status, 409)  # delivered
        self.assertEqual(self.summary(bb)["dead_letters"], 0)
        self.assertEqual(up.stats()["paths"].get("/c", 0), 0)  # the deleted entry was never delivered

        # Not while in flight.
        self.force_open(bb)
        d = self.enqueue(bb, "/d?delay_ms=2000")
        self.close(bb)
        self.wait_state(bb, d, "in_flight")
        self.assertEqual(self.admin(bb, "DELETE", f"/admin/queues/svc/{d}").status, 409)
        self.assertEqual(self.summary(bb)["in_flight"], 1)
        self.wait_state(bb, d, "delivered")


    def test_unknown_upstream_is_404(self):
        up = self.upstream("svc")
        bb = self.start(up.address, plain=up.address)  # `plain` exists but has no queue fallback
        for name in ("nope", "plain"):
            for method, path in (("GET", f"/admin/queues/{name}"), ("GET", f"/admin/queues/{name}?state=queued"),
                                 ("POST", f"/admin/queues/{name}/purge")):
                r = self.admin(bb, method, path)
                self.assertEqual(r.status, 404, (method, path, r.body))


class MetricsTest(QueueCase):
    FAMILIES = ["breakerbox_queue_depth", "breakerbox_queue_bytes", "breakerbox_queue_oldest_age_seconds",
                "breakerbox_queue_dead_letters", "breakerbox_queue_enqueued_total", "breakerbox_queue_delivered_total",
                "breakerbox_queue_dead_lettered_total", "breakerbox_queue_expired_total",
                "breakerbox_queue_rejected_total", "breakerbox_queue_delivery_attempts_total",
                "breakerbox_queue_commit_duration_seconds_bucket", "breakerbox_queue_commit_duration_seconds_sum",
                "breakerbox_queue_commit_duration_seconds_count"]

    def test_metrics_health_and_promtool(self):
        up = self.upstream("svc")
        plain = self.upstream("plain")
        bb = self.start(up.address, queue={"max_body_size": "1KiB"}, plain=plain.address)
        self.force_open(bb)
        ok = self.enqueue(bb, "/ok")
        bad = self.enqueue(bb, "/bad?status=400")
        self.close(bb)
        self.wait_state(bb, ok, "delivered")
        self.wait_state(bb, bad, "failed")
        self.force_open(bb)
        self.enqueue(bb, "/waiting", b"w" * 100)
        self.assert_next_fallback(self.send(bb, "/big", b"x" * 2048))

        text = self.metrics(bb)
        for family in self.FAMILIES:
            self.assertIn(family, text)
        self.assertEqual(sample(text, "breakerbox_queue_enqueued_total", upstream="svc"), 3)
        self.assertEqual(sample(text, "breakerbox_queue_delivered_total", upstream="svc"), 1)
        self.assertEqual(sample(text, "breakerbox_queue_dead_lettered_total", upstream="svc"), 1)
        self.assertEqual(sample(text, "breakerbox_queue_depth", upstream="svc"), 1)
        self.assertEqual(sample(text, "breakerbox_queue_dead_letters", upstream="svc"), 1)
        self.assertGreater(sample(text, "breakerbox_queue_bytes", upstream="svc"), 100)
        self.assertGreaterEqual(sample(text, "breakerbox_queue_oldest_age_seconds", upstream="svc"), 0)
        self.assertEqual(samples_sum(text, "breakerbox_queue_rejected_total", upstream="svc"), 1)
        sent = samples_sum(text, "breakerbox_queue_delivery_attempts_total", upstream="svc")
        sent -= samples_sum(text, "breakerbox_queue_delivery_attempts_total", upstream="svc", result="not_sent") or 0
        self.assertEqual(sent, 2)  # one delivered, one terminal
        self.assertGreaterEqual(samples_sum(text, "breakerbox_queue_commit_duration_seconds_count"), 3)
        self.assertIn('le="+Inf"', "\n".join(l for l in text.splitlines()
                                             if l.startswith("breakerbox_queue_commit_duration_seconds_bucket")))
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual((check.stdout + check.stderr).strip(), b"", check.stdout + check.stderr)  # no lint findings

        h = self.health(bb)
        self.assertIsInstance(h["svc"]["queue"], dict)
        self.assertEqual(h["svc"]["queue"]["depth"], 1)
        self.assertFalse(h["plain"].get("queue"))


class FilesAndConfigTest(QueueCase):
    def test_file_modes(self):
        up = self.upstream("svc")
        folder = os.path.join(self.qdir, "made-by-breakerbox")
        db = os.path.join(folder, "queue.db")
        bb = self.start(up.address, db=db)
        self.force_open(bb)
        self.enqueue(bb)
        self.assertEqual(stat.S_IMODE(os.stat(folder).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(db).st_mode), 0o600)
        for p in db_files(db):
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600, p)

    def test_a_folder_others_can_read_is_said_and_the_file_stays_private(self):
        up = self.upstream("svc")
        folder = os.path.join(self.qdir, "open")
        os.mkdir(folder)
        os.chmod(folder, 0o755)
        db = os.path.join(folder, "queue.db")
        bb = self.breakerbox(config(up.address, db))
        warned = bb.log_entries("the queue's folder is readable by other users: queued requests are data; make it 0700",
                                at_least=1)
        self.assertEqual(warned[0]["folder"], folder)
        self.assertEqual(os.stat(db).st_mode & 0o777, 0o600)

    def check_config(self, text):
        path = os.path.join(self.qdir, "check.yaml")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([BREAKERBOX_BIN, "--check-config", path], capture_output=True, text=True, timeout=15)

    def test_configuration_errors(self):
        good = config("127.0.0.1:9", self.db)
        r = self.check_config(good)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # the control: the rest is valid

        without_store = re.sub(r"queue_store: .*\n", "", good)
        self.assertNotIn("queue_store", without_store)
        r = self.check_config(without_store)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("queue_store", r.stderr)

        two = good.replace('"fallbacks": [', '"fallbacks": [{"when": ["circuit_open"], "queue": {}}, ')
        r = self.check_config(two)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("upstreams.svc.fallbacks", r.stderr)

        r = self.check_config(config("127.0.0.1:9", self.db, when=("circuit_open", "upstream_error")))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("upstreams.svc.fallbacks[0]", r.stderr)


if __name__ == "__main__":
    unittest.main()
