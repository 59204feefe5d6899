"""Bulkheads, retries within a budget, and fallbacks, end to end with the real binary."""
import socket
import threading
import time
import unittest

from harness import ProxyTestCase, request, wait_until, free_port


def config(upstreams, workers=2):
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
{upstreams}
"""


def concurrently(n, fn):
    results = [None] * n

    def run(i):
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


class BulkheadTest(ProxyTestCase):
    def test_limit_holds_under_concurrency(self):
        up = self.upstream("svc", defaults="delay_ms=300", threads=8)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    bulkhead: {{max_concurrent: 2, max_queue: 20, queue_timeout: 10s}}
"""))
        statuses = concurrently(8, lambda i: request(bb.port(), target=f"/r{i}").status)
        self.assertEqual(statuses, [200] * 8)  # all served, by queueing
        stats = up.stats()
        self.assertEqual(stats["requests"], 8)
        self.assertEqual(stats["max_in_flight"], 2)  # never more than the limit at the upstream

    def test_queue_timeout_and_full_queue_reject_with_503(self):
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    bulkhead: {{max_concurrent: 1, max_queue: 1, queue_timeout: 200ms}}
"""))
        slow = threading.Thread(target=lambda: request(bb.port(), target="/slow?delay_ms=2000"))
        slow.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1))
        results = concurrently(3, lambda i: request(bb.port(), target=f"/q{i}"))
        errors = sorted(r.headers.get("x-breakerbox-error") for r in results)
        self.assertTrue(all(r.status == 503 for r in results), [r.status for r in results])
        # one waited in the queue until its timeout; the others found the queue full
        self.assertEqual(errors.count("queue_timeout"), 1, errors)
        self.assertEqual(errors.count("bulkhead_full"), 2, errors)
        self.assertEqual(results[0].json()["upstream"], "svc")
        slow.join(timeout=10)
        self.assertEqual(up.stats()["requests"], 1)  # only the slow one ever reached the upstream
        # local rejections never feed the breaker
        h = request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        self.assertEqual(h["state"], "closed")
        self.assertEqual(h["window"]["failures"], 0)
        self.assertEqual(h["rejections"]["queue_timeout"], 1)
        self.assertEqual(h["rejections"]["bulkhead_full"], 2)
        self.assertEqual(h["bulkhead"]["limit"], 1)


    def test_a_client_that_leaves_the_queue_is_never_forwarded(self):
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    bulkhead: {{max_concurrent: 1, max_queue: 10, queue_timeout: 30s}}
"""))
        slow = threading.Thread(target=lambda: request(bb.port(), target="/slow?delay_ms=1500"))
        slow.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1))
        quitter = socket.create_connection(("127.0.0.1", bb.port()), timeout=5)
        quitter.sendall(b"GET /abandoned HTTP/1.1\r\nHost: x\r\n\r\n")
        health = lambda: request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        self.assertTrue(wait_until(lambda: health()["bulkhead"]["queued"] == 1))
        quitter.close()  # gives up while queued
        self.assertTrue(wait_until(lambda: health()["bulkhead"]["queued"] == 0))
        slow.join(timeout=10)
        self.assertEqual(request(bb.port(), target="/after").status, 200)
        # the abandoned request never reached the upstream, and the slot it was granted nothing
        self.assertEqual(up.stats()["requests"], 2)
        self.assertEqual(health()["bulkhead"]["in_flight"], 0)

    def hold_the_only_connection(self, fallbacks=""):
        """One endpoint allowed one connection, held by a slow request: the next request finds it taken."""
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    pool: {{max_connections_per_endpoint: 1}}
    retries: {{max_attempts: 1}}
{fallbacks}""", workers=1))
        slow = threading.Thread(target=lambda: request(bb.port(), target="/slow?delay_ms=1000"))
        slow.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1))
        return up, bb, slow

    def test_connections_per_endpoint_are_limited(self):
        up, bb, slow = self.hold_the_only_connection()
        r = request(bb.port(), target="/second")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers["x-breakerbox-error"], "connection_limit")  # not the bulkhead: its own reason
        self.assertIn("max_connections_per_endpoint", r.json()["detail"])
        rejections = request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]["rejections"]
        self.assertEqual((rejections["connection_limit"], rejections["bulkhead_full"]), (1, 0))
        slow.join(timeout=10)
        self.assertEqual(request(bb.port(), target="/third").status, 200)  # the connection is free again
        self.assertEqual(up.stats()["connections"], 1)

    def test_a_connection_limit_fires_limit_reached_not_bulkhead_full(self):
        # Issue 32: every capacity refusal fired the bulkhead_full trigger; a fallback for a full bulkhead
        # answered for a connection limit too, with X-Breakerbox-Fallback-Reason: bulkhead_full.
        _, bb, slow = self.hold_the_only_connection("""    fallbacks:
      - when: [bulkhead_full]
        static: {status: 503, body: "bulkhead"}
      - when: [limit_reached]
        static: {status: 503, body: "limit: {{reason}}"}
""")
        r = request(bb.port(), target="/second")
        self.assertEqual((r.status, r.body), (503, b"limit: limit_reached"))
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "limit_reached")
        slow.join(timeout=10)


class RetryTest(ProxyTestCase):
    def test_retry_goes_to_another_endpoint(self):
        bad = self.upstream("bad", defaults="status=503")
        good = self.upstream("good")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{bad.address}, {good.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{enabled: false}}
    retries: {{max_attempts: 2, backoff_base: 1ms, backoff_max: 5ms}}
""", workers=1))
        for i in range(10):
            r = request(bb.port(), target=f"/r{i}")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["server"], "good")
        self.assertEqual(good.stats()["requests"], 10)
        tried_bad = bad.stats()["requests"]
        self.assertGreater(tried_bad, 0)
        h = request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        # every request that met the bad endpoint was retried once, on the good one, and succeeded
        self.assertEqual(h["retries"]["attempted"], tried_bad)
        self.assertEqual(h["retries"]["succeeded"], tried_bad)

    def failing(self, retries):
        up = self.upstream("svc", defaults="status=503")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{enabled: false}}
    retries: {retries}
"""))
        return up, bb

    def test_only_idempotent_methods_are_retried(self):
        up, bb = self.failing("{max_attempts: 3, backoff_base: 1ms, backoff_max: 2ms}")
        self.assertEqual(request(bb.port(), target="/g").status, 503)
        self.assertEqual(up.stats()["requests"], 3)
        up.reset()
        up.configure("status=503")
        self.assertEqual(request(bb.port(), method="POST", target="/p", body=b"x").status, 503)
        self.assertEqual(up.stats()["requests"], 1)  # POST: never retried by default
        up.reset()
        up.configure("status=503")
        self.assertEqual(request(bb.port(), method="POST", target="/p", body=b"x",
                                 headers={"Idempotency-Key": "k-1"}).status, 503)
        self.assertEqual(up.stats()["requests"], 3)  # unless it carries an Idempotency-Key
        up.reset()
        up.configure("status=500")
        self.assertEqual(request(bb.port(), target="/g").status, 500)
        self.assertEqual(up.stats()["requests"], 1)  # 500 is not in retry_on

    def test_the_budget_limits_retries(self):
        up, bb = self.failing("{max_attempts: 3, backoff_base: 1ms, backoff_max: 2ms, budget: {ratio: 0, min_concurrent: 0}}")
        for _ in range(5):
            self.assertEqual(request(bb.port(), target="/g").status, 503)
        self.assertEqual(up.stats()["requests"], 5)  # no budget, no retries
        h = request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        self.assertEqual(h["retries"]["budget_exhausted"], 5)
        self.assertEqual(h["retries"]["attempted"], 0)

    def test_a_long_retry_after_stops_retries(self):
        up, bb = self.failing("{max_attempts: 3, retry_after_max: 1s}")
        r = request(bb.port(), target="/g?header=Retry-After:30")
        self.assertEqual(r.status, 503)
        self.assertEqual(up.stats()["requests"], 1)
        r = request(bb.port(), target="/g?header=Retry-After:0")
        self.assertEqual(up.stats()["requests"], 4)

    def test_retries_stop_when_the_circuit_opens(self):
        up = self.upstream("svc", defaults="status=503")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{consecutive_failures: 3, open_duration: 60s}}
    retries: {{max_attempts: 6, backoff_base: 1ms, backoff_max: 2ms}}
"""))
        r = request(bb.port(), target="/g")
        self.assertEqual(r.status, 503)
        self.assertNotIn("x-breakerbox-error", r.headers)  # the upstream's last real answer
        self.assertEqual(up.stats()["requests"], 3)  # every attempt was recorded; the 4th was refused
        h = request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        self.assertEqual(h["state"], "open")
        self.assertEqual(h["retries"]["stopped_by_breaker"], 1)


class FallbackTest(ProxyTestCase):
    def test_static_fallback_when_the_circuit_is_open(self):
        up = self.upstream("svc", defaults="status=500")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{consecutive_failures: 2, open_duration: 60s}}
    retries: {{max_attempts: 1}}
    fallbacks:
      - when: [circuit_open]
        static:
          status: 200
          headers: {{Content-Type: application/json, X-Note: "up={{{{upstream}}}} retry={{{{retry_after}}}}"}}
          body: '{{"items": [], "degraded": true, "source": "{{{{upstream}}}}"}}'
"""))
        for _ in range(2):
            self.assertEqual(request(bb.port(), target="/x").status, 500)  # upstream_error is not a trigger here
        r = request(bb.port(), target="/x")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"items": [], "degraded": True, "source": "svc"})
        self.assertEqual(r.headers["x-breakerbox-fallback"], "static")
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "circuit_open")
        self.assertTrue(r.headers["x-note"].startswith("up=svc retry="))
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertEqual(up.stats()["requests"], 2)

    def test_static_fallback_when_the_bulkhead_is_full_and_on_timeout(self):
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    request_timeout: 300ms
    retries: {{max_attempts: 1}}
    bulkhead: {{max_concurrent: 1, max_queue: 0}}
    fallbacks:
      - when: [bulkhead_full, timeout]
        static: {{status: 202, body: "later: {{{{reason}}}}"}}
"""))
        slow = []
        t = threading.Thread(target=lambda: slow.append(request(bb.port(), target="/slow?delay_ms=1000")))
        t.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1))
        r = request(bb.port(), target="/second")
        self.assertEqual((r.status, r.body), (202, b"later: bulkhead_full"))
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "bulkhead_full")
        t.join(timeout=10)
        self.assertEqual((slow[0].status, slow[0].body), (202, b"later: timeout"))
        self.assertEqual(slow[0].headers["x-breakerbox-fallback-reason"], "timeout")

    def stale_setup(self, max_age="60s"):
        up = self.upstream("svc")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{enabled: false}}
    retries: {{max_attempts: 1}}
    stale_cache: {{max_entries: 100, max_age: {max_age}}}
    fallbacks:
      - when: [upstream_error, circuit_open, timeout]
        stale: {{}}
"""))
        return up, bb

    def test_stale_fallback_serves_the_last_good_response(self):
        up, bb = self.stale_setup()
        fresh = request(bb.port(), target="/item?bytes=10")
        self.assertEqual(fresh.status, 200)
        self.assertNotIn("x-breakerbox-fallback", fresh.headers)
        up.configure("status=500")
        r = request(bb.port(), target="/item?bytes=10")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, fresh.body)
        self.assertEqual(r.headers["x-breakerbox-fallback"], "stale")
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "upstream_error")
        self.assertIn("age", r.headers)
        # nothing stored for this URL: the upstream's own error goes through
        self.assertEqual(request(bb.port(), target="/never-seen").status, 500)
        # a dead upstream (connect refused) is an upstream error too
        up.stop()
        r = request(bb.port(), target="/item?bytes=10")
        self.assertEqual((r.status, r.headers["x-breakerbox-fallback"]), (200, "stale"))
        r = request(bb.port(), target="/never-seen")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["error"], "upstream_connect_failed")

    def test_stale_entries_expire_and_no_store_is_honoured(self):
        up, bb = self.stale_setup(max_age="1s")
        self.assertEqual(request(bb.port(), target="/a").status, 200)
        self.assertEqual(request(bb.port(), target="/b?header=Cache-Control:no-store").status, 200)
        up.configure("status=500")
        self.assertEqual(request(bb.port(), target="/b?header=Cache-Control:no-store").status, 500)
        self.assertEqual(request(bb.port(), target="/a").status, 200)  # still fresh enough
        time.sleep(1.2)  # let the entry pass max_age (not a timing assertion: any longer wait works too)
        self.assertEqual(request(bb.port(), target="/a").status, 500)

    def test_failover_to_another_upstream(self):
        backup = self.upstream("backup")
        dead = free_port()
        bb = self.breakerbox(config(f"""
  primary:
    endpoints: [127.0.0.1:{dead}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    fallbacks:
      - when: [upstream_error, circuit_open]
        upstream: backup
  backup:
    endpoints: [{backup.address}]
"""))
        r = request(bb.port(), target="/orders?id=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["server"], "backup")
        self.assertEqual(r.json()["target"], "/orders?id=1")
        self.assertEqual(r.headers["x-breakerbox-fallback"], "upstream:backup")
        self.assertEqual(r.headers["x-breakerbox-fallback-reason"], "upstream_error")
        # the backup has its own breaker: it is closed and counted separately
        h = request(bb.port("admin"), target="/health/circuits").json()["upstreams"]
        self.assertEqual(h["backup"]["requests"]["success"], 1)
        self.assertEqual(h["primary"]["requests"]["connect_failed"], 1)
        self.assertEqual(h["primary"]["fallbacks"]["upstream"], 1)

    def test_when_every_fallback_fails_the_client_gets_the_explicit_error(self):
        dead1, dead2 = free_port(), free_port()
        bb = self.breakerbox(config(f"""
  primary:
    endpoints: [127.0.0.1:{dead1}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    fallbacks:
      - stale: {{}}
      - upstream: backup
  backup:
    endpoints: [127.0.0.1:{dead2}]
    retries: {{max_attempts: 1}}
"""))
        r = request(bb.port(), target="/x")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["error"], "upstream_connect_failed")
        self.assertEqual(r.json()["upstream"], "primary")

    def test_explicit_error_fallback_is_marked(self):
        dead = free_port()
        bb = self.breakerbox(config(f"""
  primary:
    endpoints: [127.0.0.1:{dead}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    fallbacks:
      - when: [upstream_error]
        error: {{}}
"""))
        r = request(bb.port(), target="/x")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-fallback"], "error")
        self.assertEqual(r.json()["error"], "upstream_connect_failed")


if __name__ == "__main__":
    unittest.main()
