"""Outlier detection per endpoint, working with the upstream's breaker: the real binary balancing over
real test upstreams (one process per endpoint) on 127.0.0.1."""
import os
import signal
import subprocess
import unittest

from harness import sample, ProxyTestCase, request, wait_until, free_port, PROMTOOL

TOKEN = "outlier-token"


def config(endpoints, outliers="", breaker="", fallbacks="", retries="{max_attempts: 1}", workers=2):
    eps = ", ".join(endpoints)
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
upstreams:
  svc:
    endpoints: [{eps}]
    routes: {{path_prefix: /}}
    retries: {retries}
    outlier_detection:
      max_ejection_time_jitter: 0s
{outliers}
    circuit_breaker:
      # Lax on its own, so that what happens here is outlier detection's doing.
      consecutive_failures: 0
      failure_rate: {{minimum_calls: 1000}}
      open_duration: 60s
{breaker}
{fallbacks}
"""


class OutlierCase(ProxyTestCase):
    def health(self, bb):
        return request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]

    def endpoints(self, bb):
        return {e["address"]: e for e in self.health(bb)["outlier_detection"]["endpoints"]}

    def metrics(self, bb):
        return request(bb.port("admin"), target="/metrics").body.decode()

    def post(self, bb, path, token=TOKEN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return request(bb.port("admin"), method="POST", target=path, headers=headers)

    def send(self, bb, n):
        return [request(bb.port(), target=f"/r{i}") for i in range(n)]


class EjectionTest(OutlierCase):
    def test_one_failing_endpoint_is_ejected_and_the_breaker_stays_closed(self):
        good = [self.upstream("good%d" % i) for i in range(2)]
        bad = self.upstream("bad")
        bad.configure("status=500")
        bb = self.breakerbox(config([u.address for u in good + [bad]], outliers="      consecutive_5xx: 3"))
        answers = self.send(bb, 40)
        self.assertEqual(bad.stats()["requests"], 3)  # ejected after its third failure in a row
        self.assertEqual(sum(1 for a in answers if a.status == 500), 3)
        self.assertEqual(sum(1 for a in answers if a.status == 200), 37)
        h = self.health(bb)
        self.assertEqual(h["state"], "closed")
        eps = self.endpoints(bb)
        self.assertEqual(eps[bad.address]["state"], "ejected")
        self.assertEqual(eps[bad.address]["last_rule"], "consecutive_5xx")
        self.assertEqual([eps[g.address]["state"] for g in good], ["healthy", "healthy"])
        self.assertEqual(h["outlier_detection"]["ejections_enforced"]["consecutive_5xx"], 1)
        lines = bb.log_entries("endpoint ejected", at_least=1)
        self.assertEqual(lines[0]["endpoint"], bad.address)
        self.assertEqual(lines[0]["rule"], "consecutive_5xx")
        scrape = self.metrics(bb)
        self.assertEqual(sample(scrape, "breakerbox_outlier_ejections_active", upstream="svc"), 1)
        self.assertEqual(sample(scrape, "breakerbox_outlier_endpoint_ejected", endpoint=bad.address), 1)
        self.assertEqual(sample(scrape, "breakerbox_outlier_ejections_enforced_total", rule="consecutive_5xx"), 1)
        self.assertEqual(sample(scrape, "breakerbox_outlier_endpoints", state="healthy"), 2)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape.encode(), capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_retries_go_around_a_failing_endpoint_until_it_is_ejected(self):
        good = self.upstream("good")
        bad = self.upstream("bad")
        bad.configure("status=503")
        bb = self.breakerbox(config([good.address, bad.address], outliers="      consecutive_5xx: 3",
                                    retries="{max_attempts: 3}"))
        answers = self.send(bb, 30)
        self.assertEqual([a.status for a in answers], [200] * 30)  # the retries answered for it
        self.assertEqual(bad.stats()["requests"], 3)  # ejected: neither picked nor retried on since
        self.assertEqual(self.endpoints(bb)[bad.address]["state"], "ejected")

    def test_the_only_endpoint_is_left_to_the_breaker(self):
        up = self.upstream("only")
        up.configure("status=500")
        bb = self.breakerbox(config([up.address], outliers="      consecutive_5xx: 2"))
        answers = self.send(bb, 20)
        self.assertEqual([a.status for a in answers], [500] * 20)  # the lax breaker never opens; nothing ejects
        h = self.health(bb)
        self.assertEqual(h["state"], "closed")
        self.assertEqual(self.endpoints(bb)[up.address]["state"], "healthy")
        self.assertGreater(h["outlier_detection"]["ejections_detected"]["consecutive_5xx"], 0)
        self.assertEqual(h["outlier_detection"]["ejections_enforced"]["consecutive_5xx"], 0)

    def test_the_ejection_cap_with_2_3_and_10_endpoints(self):
        # Every endpoint fails; the breaker is off, so only the cap limits the ejections: at most
        # max_ejection_percent (50 %) rounded down, at least one, never the last one.
        for n, expected in ((2, 1), (3, 1), (10, 5)):
            with self.subTest(endpoints=n):
                ups = [self.upstream("e%d" % i) for i in range(n)]
                for u in ups:
                    u.configure("status=500")
                bb = self.breakerbox(config([u.address for u in ups], outliers="      consecutive_5xx: 2",
                                            breaker="      enabled: false"))
                self.send(bb, 4 * n + 4)
                od = self.health(bb)["outlier_detection"]
                states = [e["state"] for e in od["endpoints"]]
                self.assertEqual(states.count("ejected"), expected, states)
                self.assertEqual(states.count("detected"), n - expected, states)
                self.assertEqual(od["max_ejected"], expected)
                # The detected ones still serve: none of the later requests found no endpoint.
                self.assertTrue(all(u.stats()["requests"] >= 2 for u in ups))
                bb.stop()
                for u in ups:
                    u.stop()

    def test_all_failing_opens_the_upstream_and_the_fallback_answers(self):
        ups = [self.upstream("e%d" % i) for i in range(3)]
        for u in ups:
            u.configure("status=503")
        fallback = """    fallbacks:
      - when: [circuit_open]
        static: {status: 200, body: '{"from": "fallback"}'}"""
        bb = self.breakerbox(config([u.address for u in ups], outliers="      consecutive_5xx: 2", fallbacks=fallback))
        answers = self.send(bb, 20)
        served = [a for a in answers if a.headers.get("x-breakerbox-fallback") == "static"]
        self.assertGreater(len(served), 0)
        self.assertEqual(served[-1].body, b'{"from": "fallback"}')
        # Once open, nothing more reached the endpoints.
        self.assertLessEqual(sum(u.stats()["requests"] for u in ups), 6)
        h = self.health(bb)
        self.assertEqual(h["state"], "open")
        # e0 ejected (the cap: one of three), then e1 detected: 1 of 3 healthy is below 50 %.
        self.assertIn("outlier detection: 1 of 3 endpoints healthy, below min_healthy_percent 50.0%", h["reason"])
        self.assertEqual(h["outlier_detection"]["circuit_opens"], 1)
        transition = bb.log_entries("circuit transition", at_least=1)[0]
        self.assertIn("min_healthy_percent", transition["reason"])
        self.assertEqual(sample(self.metrics(bb), "breakerbox_outlier_circuit_opens_total", upstream="svc"), 1)

    def test_below_min_healthy_percent_opens_the_upstream(self):
        # 2 of 4 failing, both ejected (the cap is 2 of 4): 2 of 4 = 50 % healthy stays closed at
        # min_healthy_percent 50 and opens at 60.
        for threshold, state in ((50, "closed"), (60, "open")):
            with self.subTest(min_healthy_percent=threshold):
                ups = [self.upstream("e%d" % i) for i in range(4)]
                for u in ups[:2]:
                    u.configure("status=500")
                bb = self.breakerbox(config([u.address for u in ups],
                                            outliers=f"      consecutive_5xx: 1\n      min_healthy_percent: {threshold}"))
                self.send(bb, 12)
                h = self.health(bb)
                self.assertEqual(h["outlier_detection"]["ejected"], 2)
                self.assertEqual(h["state"], state)
                bb.stop()
                for u in ups:
                    u.stop()


class EjectionTimeTest(OutlierCase):
    def test_ejection_time_grows_with_each_ejection_and_caps(self):
        good = self.upstream("good")
        bad = self.upstream("bad")
        bad.configure("status=500")
        bb = self.breakerbox(config([good.address, bad.address], outliers="""      consecutive_5xx: 1
      base_ejection_time: 300ms
      max_ejection_time: 700ms
      interval: 60s""", workers=1))
        chosen = []
        for round_ in range(3):
            before = bad.stats()["requests"]
            # Round robin: the bad endpoint is back in rotation once its time is over.
            self.assertTrue(wait_until(lambda: (request(bb.port(), target="/x").status == 500)
                                       or bad.stats()["requests"] > before, timeout=5))
            lines = bb.log_entries("endpoint ejected", at_least=round_ + 1)
            chosen.append(lines[round_]["ejected_for_seconds"])
            self.assertEqual(lines[round_]["ejection_level"], round_ + 1)
            self.assertEqual(lines[round_]["level"], "warn")  # the severity, never a field's value
        self.assertEqual(chosen, [0.3, 0.6, 0.7])  # base × level, capped
        returned = bb.log_entries("endpoint returned to load balancing", at_least=2)
        self.assertGreaterEqual(len(returned), 2)
        self.assertEqual(returned[0]["why"], "ejection time over")

    def test_local_origin_failures_and_5xx_are_counted_apart(self):
        good = self.upstream("good")
        bad = self.upstream("bad")
        bad.configure("status=500")
        dead = "127.0.0.1:%d" % free_port()  # nothing listens: connect refused
        bb = self.breakerbox(config([good.address, bad.address, dead], outliers="""      consecutive_5xx: 3
      consecutive_local_origin_failure: 2
      max_ejection_percent: 100""", breaker="      enabled: false"))
        self.send(bb, 30)
        eps = self.endpoints(bb)
        self.assertEqual(eps[dead]["state"], "ejected")
        self.assertEqual(eps[dead]["last_rule"], "consecutive_local_origin_failure")
        self.assertEqual(eps[bad.address]["state"], "ejected")
        self.assertEqual(eps[bad.address]["last_rule"], "consecutive_5xx")
        self.assertEqual(eps[good.address]["state"], "healthy")
        self.assertEqual(bad.stats()["requests"], 3)
        enforced = self.health(bb)["outlier_detection"]["ejections_enforced"]
        self.assertEqual(enforced["consecutive_local_origin_failure"], 1)
        self.assertEqual(enforced["consecutive_5xx"], 1)

    def test_a_health_probe_returns_an_ejected_endpoint_early(self):
        good = self.upstream("good")
        bad = self.upstream("bad")
        bad.configure("status=500")
        bb = self.breakerbox(config([good.address, bad.address], outliers="""      consecutive_5xx: 2
      base_ejection_time: 60s
      probe: {path: /health, interval: 100ms}"""))
        self.send(bb, 8)
        self.assertEqual(self.endpoints(bb)[bad.address]["state"], "ejected")
        # Still failing: the probes keep it out.
        self.assertTrue(wait_until(lambda: bad.stats()["paths"].get("/health", 0) >= 2, timeout=5))
        self.assertEqual(self.endpoints(bb)[bad.address]["state"], "ejected")
        bad.reset()  # healthy again: well before its 60 s are over, a probe brings it back
        self.assertTrue(wait_until(lambda: self.endpoints(bb)[bad.address]["state"] == "healthy", timeout=5))
        self.assertEqual(bb.log_entries("endpoint returned to load balancing", at_least=1)[0]["why"], "health probe succeeded")
        before = bad.stats()["requests"]
        self.send(bb, 4)
        self.assertGreater(bad.stats()["requests"], before)


class OperatorAndReloadTest(OutlierCase):
    def test_manual_eject_and_uneject(self):
        ups = [self.upstream("e%d" % i) for i in range(2)]
        bb = self.breakerbox(config([u.address for u in ups]))
        path = f"/admin/endpoints/svc/{ups[0].address}/eject"
        self.assertEqual(self.post(bb, path, token=None).status, 401)
        self.assertEqual(self.post(bb, path, token="wrong").status, 401)
        r = self.post(bb, path)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.endpoints(bb)[ups[0].address]["state"], "ejected")
        self.assertTrue(self.endpoints(bb)[ups[0].address]["manual"])
        self.assertIsNone(self.endpoints(bb)[ups[0].address]["ejected_for_ms"])  # no end time
        before = ups[0].stats()["requests"]
        self.send(bb, 6)
        self.assertEqual(ups[0].stats()["requests"], before)  # out of load balancing
        # Never the last endpoint in load balancing.
        r = self.post(bb, f"/admin/endpoints/svc/{ups[1].address}/eject")
        self.assertEqual(r.status, 409)
        self.assertIn("without an endpoint", r.json()["detail"])
        self.assertEqual(self.post(bb, "/admin/endpoints/svc/127.0.0.9:1/eject").status, 404)
        self.assertEqual(self.post(bb, "/admin/endpoints/nope/1.2.3.4:5/eject").status, 404)
        self.assertEqual(self.post(bb, f"/admin/endpoints/svc/{ups[0].address}/explode").status, 404)
        # The address may come percent-encoded (as an IPv6 label's brackets and colons usually do).
        encoded = ups[0].address.replace(":", "%3A")
        self.assertEqual(self.post(bb, f"/admin/endpoints/svc/{encoded}/uneject").status, 200)
        self.send(bb, 6)
        self.assertGreater(ups[0].stats()["requests"], before)
        actions = [e for e in bb.log_entries("operator action", at_least=2) if e.get("endpoint")]
        self.assertEqual([a["action"] for a in actions], ["eject", "uneject"])
        scrape = self.metrics(bb)
        self.assertEqual(sample(scrape, "breakerbox_outlier_ejections_enforced_total", rule="manual"), 1)

    def test_changed_addresses_keep_the_state_of_those_that_remain(self):
        # A reload with a changed endpoint list goes through the same path as re-resolution: the
        # detector keeps the records of the addresses that remain.
        good = self.upstream("good")
        bad = self.upstream("bad")
        extra = self.upstream("extra")
        bad.configure("status=500")
        outliers = "      consecutive_5xx: 2\n      base_ejection_time: 60s"
        bb = self.breakerbox(config([good.address, bad.address], outliers=outliers))
        self.send(bb, 8)
        self.assertEqual(self.endpoints(bb)[bad.address]["state"], "ejected")
        with open(bb.config_path, "w") as f:
            f.write(config([good.address, bad.address, extra.address], outliers=outliers))
        bb.signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: extra.address in self.endpoints(bb), timeout=5))
        eps = self.endpoints(bb)
        self.assertEqual(eps[bad.address]["state"], "ejected")
        self.assertEqual(eps[bad.address]["ejections"], 1)
        self.assertEqual(eps[extra.address]["state"], "healthy")
        before = bad.stats()["requests"]
        self.send(bb, 9)
        self.assertEqual(bad.stats()["requests"], before)
        self.assertGreater(extra.stats()["requests"], 0)
        # An address that leaves takes its ejection with it: the upstream no longer counts it.
        with open(bb.config_path, "w") as f:
            f.write(config([good.address, extra.address], outliers=outliers))
        bb.signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: bad.address not in self.endpoints(bb), timeout=5))
        self.assertEqual(self.health(bb)["outlier_detection"]["ejected"], 0)

    def test_disabled_detection_reports_nothing_and_never_ejects(self):
        good = self.upstream("good")
        bad = self.upstream("bad")
        bad.configure("status=500")
        bb = self.breakerbox(config([good.address, bad.address], outliers="      enabled: false"))
        self.send(bb, 20)
        self.assertEqual(bad.stats()["requests"], 10)
        self.assertIsNone(self.health(bb)["outlier_detection"])
        self.assertNotIn("breakerbox_outlier_", self.metrics(bb))
        self.assertEqual(self.post(bb, f"/admin/endpoints/svc/{bad.address}/eject").status, 409)


if __name__ == "__main__":
    unittest.main()
