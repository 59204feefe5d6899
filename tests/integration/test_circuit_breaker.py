"""The circuit breaker in the request path, with the real binary and a failing upstream."""
import threading
import time
import unittest

from harness import ProxyTestCase, request, wait_until


def config(upstream, breaker, workers=2):
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  enabled: false
upstreams:
  svc:
    endpoints: [{upstream.address}]
    request_timeout: 5s
    retries: {{max_attempts: 1}}  # the breaker alone; retries have their own tests
    routes:
      path_prefix: /
    circuit_breaker:
{breaker}
"""


CONSECUTIVE_3 = """      consecutive_failures: 3
      failure_rate: {enabled: false}
      open_duration: 300ms
      open_duration_jitter: 0
      half_open: {max_probes: 1, successes_to_close: 1}
"""


class CircuitBreakerTest(ProxyTestCase):
    def test_opens_after_exactly_the_configured_failures_and_stops_traffic(self):
        up = self.upstream("svc", defaults="status=500")
        bb = self.breakerbox(config(up, CONSECUTIVE_3.replace("300ms", "60s")))
        for _ in range(3):
            r = request(bb.port(), target="/x")
            self.assertEqual(r.status, 500)  # the upstream's own answers
            self.assertNotIn("x-breakerbox-error", r.headers)
        self.assertEqual(up.stats()["requests"], 3)
        for _ in range(20):
            r = request(bb.port(), target="/x")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")
            self.assertEqual(r.headers["x-breakerbox-upstream"], "svc")
            retry_after = int(r.headers["retry-after"])
            self.assertGreaterEqual(retry_after, 1)
            self.assertLessEqual(retry_after, 60)
            body = r.json()
            self.assertEqual(body["error"], "circuit_open")
            self.assertEqual(body["upstream"], "svc")
            self.assertEqual(body["state"], "open")
        self.assertEqual(up.stats()["requests"], 3)  # nothing reached the upstream while open
        opened = [e for e in bb.log_entries("circuit transition", at_least=1) if e["to"] == "open"]
        self.assertEqual(len(opened), 1)  # logged exactly once
        self.assertEqual(opened[0]["from"], "closed")
        self.assertEqual(opened[0]["upstream"], "svc")
        self.assertEqual(opened[0]["reason"], "3 consecutive failures >= 3")

    def test_half_open_admits_one_probe_and_recovery_closes_the_circuit(self):
        up = self.upstream("svc", defaults="status=503", threads=2)
        bb = self.breakerbox(config(up, CONSECUTIVE_3))
        for _ in range(3):
            request(bb.port(), target="/x")
        self.assertEqual(request(bb.port(), target="/x").status, 503)
        self.assertEqual(up.stats()["requests"], 3)
        # The upstream recovers, but answers slowly, so the probe is still in flight while others arrive.
        up.configure("status=200")
        # Poll until the open time has passed and a probe gets through.
        self.assertTrue(wait_until(lambda: request(bb.port(), target="/first").status == 200, timeout=10))
        # That request was the probe and succeeded: the circuit is closed again.
        transitions = [(e["from"], e["to"]) for e in bb.log_entries("circuit transition", at_least=3)]
        self.assertEqual(transitions, [("closed", "open"), ("open", "half_open"), ("half_open", "closed")])
        self.assertEqual(request(bb.port(), target="/after").status, 200)

    def test_probes_are_limited_while_half_open(self):
        up = self.upstream("svc", defaults="status=500", threads=4)
        bb = self.breakerbox(config(up, CONSECUTIVE_3))
        for _ in range(3):
            request(bb.port(), target="/x")
        # Recovered but slow: the single probe stays in flight while the burst arrives.
        up.configure("status=200&delay_ms=3000")
        before = up.stats()["requests"]
        time.sleep(0.5)  # let the 300 ms open time pass (not an assertion: any longer wait works too)
        statuses = []
        lock = threading.Lock()

        def one():
            s = request(bb.port(), target="/p").status
            with lock:
                statuses.append(s)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        self.assertEqual(sorted(statuses), [200] + [503] * 7)  # exactly one probe went through
        self.assertEqual(up.stats()["requests"] - before, 1)
        self.assertEqual(up.stats()["max_in_flight"], 1)
        transitions = [(e["from"], e["to"]) for e in bb.log_entries("circuit transition", at_least=3)]
        self.assertEqual(transitions, [("closed", "open"), ("open", "half_open"), ("half_open", "closed")])

    def test_slow_upstream_trips_the_slow_call_rule(self):
        up = self.upstream("svc", defaults="delay_ms=150")
        bb = self.breakerbox(config(up, """      consecutive_failures: 0
      failure_rate: {window: count, window_size: 10, minimum_calls: 4}
      slow_calls: {duration: 100ms, rate_threshold: 50}
      open_duration: 60s
"""))
        for _ in range(4):
            self.assertEqual(request(bb.port(), target="/slow").status, 200)
        r = request(bb.port(), target="/slow")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")
        self.assertEqual(up.stats()["requests"], 4)
        reason = bb.log_entries("circuit transition", at_least=1)[0]["reason"]
        self.assertIn("slow-call rate 100% >= 50% over 4 calls", reason)

    def test_classification_501_and_4xx_do_not_count_connect_failures_do(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(up, CONSECUTIVE_3.replace("300ms", "60s")))
        for status in [501, 505, 404, 429, 501, 400]:
            self.assertEqual(request(bb.port(), target=f"/x?status={status}").status, status)
        self.assertEqual(bb.log_entries("circuit transition"), [])
        up.stop()  # now connections are refused: those are failures
        for _ in range(3):
            self.assertEqual(request(bb.port(), target="/x").status, 502)
        self.assertEqual(request(bb.port(), target="/x").status, 503)

    def test_failure_rate_over_a_time_window(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(up, """      consecutive_failures: 0
      failure_rate: {threshold: 50, window: time, window_duration: 60s, window_buckets: 6, minimum_calls: 10}
      open_duration: 60s
"""))
        for i in range(10):
            status = 500 if i % 2 else 200
            self.assertEqual(request(bb.port(), target=f"/x?status={status}").status, status)
        r = request(bb.port(), target="/x")
        self.assertEqual(r.status, 503)
        self.assertIn("failure rate 50% >= 50% over 10 calls", bb.log_entries("circuit transition", at_least=1)[0]["reason"])

    def test_active_probes_keep_clients_off_a_hung_upstream_and_close_the_circuit(self):
        up = self.upstream("svc", defaults="status=503", threads=4)
        bb = self.breakerbox(config(up, """      consecutive_failures: 3
      failure_rate: {enabled: false}
      open_duration: 200ms
      open_duration_multiplier: 1
      open_duration_jitter: 0
      half_open: {successes_to_close: 2, probe: {path: /health, timeout: 300ms}}
""").replace("admin:\n  enabled: false", "admin:\n  address: 127.0.0.1:0"))
        for _ in range(3):
            self.assertEqual(request(bb.port(), target="/x").status, 503)  # the upstream's own answers: trips
        up.configure("fault=hang")  # now it accepts and never answers, as a stuck process does
        # The prober keeps probing (each probe times out and re-opens the circuit); clients meanwhile are
        # answered by the breaker itself, whether it is open or half-open, and never become probes.
        self.assertTrue(wait_until(lambda: up.stats()["paths"].get("/health", 0) >= 3, timeout=10))
        for _ in range(30):
            r = request(bb.port(), target="/client")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")
        paths = up.stats()["paths"]
        self.assertEqual(paths.get("/client", 0), 0)
        self.assertEqual(paths["/x"], 3)
        # Recovery: two successful probes close the circuit, then clients reach the upstream again.
        up.configure("status=200")
        self.assertTrue(wait_until(lambda: request(bb.port(), target="/after").status == 200, timeout=10))
        # The closing transition is logged by the prober's thread just after the state changed, so a
        # client can be admitted before that line reaches the log: wait for it rather than race it.
        def transitions():
            return [(e["from"], e["to"]) for e in bb.log_entries("circuit transition")]
        self.assertTrue(wait_until(lambda: transitions()[-1:] == [("half_open", "closed")], timeout=10), transitions())
        transitions = transitions()
        self.assertEqual(transitions[0], ("closed", "open"))
        self.assertEqual(transitions[-1], ("half_open", "closed"))
        self.assertIn(("half_open", "open"), transitions)  # hung probes failed on their timeout
        self.assertEqual(bb.log_entries("circuit transition")[-1]["reason"], "2 probe(s) succeeded in half-open")
        self.assertEqual(up.stats()["paths"].get("/client", 0), 0)
        # The probes are counted by outcome in /metrics: every probe the upstream saw, no more.
        metrics = request(bb.port("admin"), target="/metrics").body.decode()
        counts = {}
        for line in metrics.splitlines():
            if line.startswith("breakerbox_active_probes_total{"):
                outcome = line.split('outcome="')[1].split('"')[0]
                counts[outcome] = float(line.rsplit(" ", 1)[1])
        self.assertGreaterEqual(counts["failure"], 3)
        self.assertEqual(counts["success"], 2)
        self.assertEqual(counts["success"] + counts["failure"] + counts["ignored"], up.stats()["paths"]["/health"])

    def _hung_requests_then_trip(self, breaker, request_timeout):
        """Two requests hang in the upstream, then two quick 500s open the circuit; returns the two
        hung requests' answers."""
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(up, breaker).replace("request_timeout: 5s", f"request_timeout: {request_timeout}"))
        answers = []

        def hung():
            answers.append(request(bb.port(), target="/hang?fault=hang", timeout=20))

        threads = [threading.Thread(target=hung) for _ in range(2)]
        for t in threads:
            t.start()
        self.assertTrue(wait_until(lambda: up.stats()["paths"].get("/hang", 0) == 2))
        for _ in range(2):
            self.assertEqual(request(bb.port(), target="/fail?status=500").status, 500)  # the second one trips
        for t in threads:
            t.join(timeout=25)
        self.assertEqual(len(answers), 2, "every hung request got an answer")
        return answers

    def test_cancel_in_flight_answers_requests_already_waiting_when_the_circuit_opens(self):
        # request_timeout 60s: without the cancellation the clients (20 s timeout) would get nothing.
        answers = self._hung_requests_then_trip("""      consecutive_failures: 2
      failure_rate: {enabled: false}
      open_duration: 60s
      cancel_in_flight: true
""", "60s")
        for r in answers:
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")
            self.assertEqual(r.json()["state"], "open")

    def test_cancel_in_flight_ends_a_retry_with_the_answer_before_it(self):
        # One worker, round robin: the first attempt goes to `first` (503, retryable), the retry to
        # `second`, which hangs. An operator forcing the circuit open counts as a trip too.
        first = self.upstream("first", defaults="status=503")
        second = self.upstream("second", defaults="fault=hang", threads=2)
        bb = self.breakerbox(f"""
workers: 1
listeners:
  - name: main
    address: 127.0.0.1:0
admin: {{address: "127.0.0.1:0", token: t0ken}}
upstreams:
  svc:
    endpoints: [{first.address}, {second.address}]
    request_timeout: 60s
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 2, backoff_base: 1ms, backoff_max: 1ms}}
    circuit_breaker: {{consecutive_failures: 100, failure_rate: {{enabled: false}}, cancel_in_flight: true}}
""")
        answers = []
        client = threading.Thread(target=lambda: answers.append(request(bb.port(), target="/item", timeout=20)))
        client.start()
        self.assertTrue(wait_until(lambda: second.stats()["requests"] == 1))  # the retry waits on the hung endpoint
        r = request(bb.port("admin"), method="POST", target="/admin/circuits/svc/force-open",
                    headers={"Authorization": "Bearer t0ken"})
        self.assertEqual(r.status, 200)
        client.join(timeout=25)
        self.assertEqual(len(answers), 1, "the client got an answer long before its 60 s request timeout")
        self.assertEqual(answers[0].status, 503)
        self.assertNotIn("x-breakerbox-error", answers[0].headers)  # the upstream's own answer to the first attempt
        self.assertEqual(answers[0].json()["server"], "first")
        self.assertEqual(first.stats()["requests"], 1)

    def test_by_default_requests_in_flight_finish_on_their_own_when_the_circuit_opens(self):
        answers = self._hung_requests_then_trip("""      consecutive_failures: 2
      failure_rate: {enabled: false}
      open_duration: 60s
""", "1s")
        for r in answers:
            self.assertEqual(r.status, 504)  # their own timeout, as Resilience4j's in-flight calls do
            self.assertEqual(r.headers["x-breakerbox-error"], "upstream_timeout")

    def _hung_requests(self, breaker, request_timeout, count=3):
        """`count` requests hang in the upstream and nothing else happens; returns their answers and
        the breakerbox."""
        up = self.upstream("svc", threads=count + 1)
        bb = self.breakerbox(config(up, breaker).replace("request_timeout: 5s", f"request_timeout: {request_timeout}"))
        answers = []

        def hung():
            answers.append(request(bb.port(), target="/hang?fault=hang", timeout=20))

        threads = [threading.Thread(target=hung) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=25)
        self.assertEqual(len(answers), count, "every hung request got an answer")
        self.assertEqual(up.stats()["paths"].get("/hang", 0), count)
        return answers, bb

    SLOW_STREAK = """      consecutive_failures: 0
      failure_rate: {enabled: false}
      slow_calls: {duration: 200ms, consecutive: 3, in_flight: IN_FLIGHT}
      open_duration: 60s
      cancel_in_flight: true
"""

    def test_slow_calls_in_flight_open_the_circuit_on_a_hung_upstream_before_any_call_ends(self):
        # request_timeout 60s, clients wait 20 s: only calls recorded as slow while still hanging can
        # open the circuit (three in a row, on two workers), and cancel_in_flight then answers them.
        answers, bb = self._hung_requests(self.SLOW_STREAK.replace("IN_FLIGHT", "true"), "60s")
        for r in answers:
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")
        trips = bb.log_entries("circuit transition", at_least=1)
        self.assertEqual([(e["from"], e["to"]) for e in trips], [("closed", "open")])
        self.assertEqual(trips[0]["reason"], "3 consecutive slow calls >= 3 (slower than 0.2s)")

    def test_without_in_flight_slow_calls_count_only_when_they_end(self):
        answers, bb = self._hung_requests(self.SLOW_STREAK.replace("IN_FLIGHT", "false"), "1s")
        for r in answers:
            self.assertEqual(r.status, 504)  # each waited out its own timeout
            self.assertEqual(r.headers["x-breakerbox-error"], "upstream_timeout")
        trips = bb.log_entries("circuit transition", at_least=1)
        self.assertEqual(trips[0]["reason"], "3 consecutive slow calls >= 3 (slower than 0.2s)")


if __name__ == "__main__":
    unittest.main()
