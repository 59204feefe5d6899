"""Hot reload: SIGHUP and POST /admin/reload install a new configuration atomically; requests in
flight finish on the old one; breaker state survives when its policy did not change; an invalid file
is rejected with its errors logged while the old configuration keeps serving."""
import hashlib
import signal
import subprocess
import threading
import unittest

from harness import ProxyTestCase, request, sample, wait_until, PROMTOOL

TOKEN = "reload-token"


def config(a, b, route_a_to="a", breaker="{consecutive_failures: 2, open_duration: 60s}", timeout="5s", extra=""):
    return f"""
workers: 2
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0", token: {TOKEN}}}
upstreams:
  a:
    endpoints: [{a.address if route_a_to == "a" else b.address}]
    routes: {{path_prefix: /a}}
    request_timeout: {timeout}
    retries: {{max_attempts: 1}}
    circuit_breaker: {breaker}
  b:
    endpoints: [{b.address}]
    routes: {{path_prefix: /b}}
{extra}
"""


class ReloadTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.upstream("A", threads=2)
        self.b = self.upstream("B")
        self.bb = self.breakerbox(config(self.a, self.b))

    def rewrite(self, text):
        with open(self.bb.config_path, "w") as f:
            f.write(text)

    def sighup_and_wait(self, expected_msg):
        before = len(self.bb.log_entries(expected_msg))
        self.bb.signal(signal.SIGHUP)
        entries = self.bb.log_entries(expected_msg, at_least=before + 1)
        self.assertGreater(len(entries), before, f"no '{expected_msg}' log line")
        return entries[-1]

    def health(self, upstream=None):
        target = "/health/circuits" + (f"/{upstream}" if upstream else "")
        return request(self.bb.port("admin"), target=target).json()

    def test_sighup_applies_a_new_configuration_to_new_requests(self):
        self.assertEqual(request(self.bb.port(), target="/a/x").json()["server"], "A")
        self.rewrite(config(self.a, self.b, route_a_to="b"))
        entry = self.sighup_and_wait("configuration reloaded")
        self.assertEqual(entry["generation"], 2)
        self.assertTrue(wait_until(lambda: request(self.bb.port(), target="/a/x").json()["server"] == "B"))
        self.assertEqual(self.health()["config_generation"], 2)

    def test_in_flight_requests_finish_on_the_old_configuration(self):
        result = {}
        t = threading.Thread(target=lambda: result.update(r=request(self.bb.port(), target="/a/slow?delay_ms=1000")))
        t.start()
        self.assertTrue(wait_until(lambda: self.a.stats()["in_flight"] == 1))
        # the new configuration gives upstream "a" another endpoint and a tiny timeout
        self.rewrite(config(self.a, self.b, route_a_to="b", timeout="100ms"))
        self.sighup_and_wait("configuration reloaded")
        t.join(timeout=10)
        self.assertEqual(result["r"].status, 200)  # not cut by the new 100 ms timeout
        self.assertEqual(result["r"].json()["server"], "A")  # and answered by the old endpoint
        self.assertEqual(request(self.bb.port(), target="/a/next").json()["server"], "B")

    def test_counters_survive_a_reload_and_count_requests_finishing_on_the_old_configuration(self):
        for _ in range(3):
            self.assertEqual(request(self.bb.port(), target="/a/x").status, 200)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=request(self.bb.port(), target="/a/slow?delay_ms=1000")))
        t.start()
        self.assertTrue(wait_until(lambda: self.a.stats()["in_flight"] == 1))
        self.rewrite(config(self.a, self.b, timeout="4s"))  # a changed policy: a new generation
        self.sighup_and_wait("configuration reloaded")
        t.join(timeout=10)
        self.assertEqual(result["r"].status, 200)
        self.assertEqual(request(self.bb.port(), target="/a/y").status, 200)
        # 3 before, 1 finished on the old generation, 1 after: none lost, none restarted
        self.assertEqual(self.health("a")["upstreams"]["a"]["requests"]["success"], 5)
        metrics = request(self.bb.port("admin"), target="/metrics").body.decode()
        self.assertIn('breakerbox_upstream_requests_total{upstream="a",outcome="success"} 5', metrics)

    def test_an_upstream_removed_and_added_again_starts_from_zero(self):
        with_c = f"""  c:
    endpoints: [{self.b.address}]
    routes: {{path_prefix: /c}}
"""
        self.rewrite(config(self.a, self.b, extra=with_c))
        self.sighup_and_wait("configuration reloaded")
        for _ in range(2):
            self.assertEqual(request(self.bb.port(), target="/c/x").status, 200)
        self.assertEqual(self.health("c")["upstreams"]["c"]["requests"]["success"], 2)
        self.rewrite(config(self.a, self.b))
        self.sighup_and_wait("configuration reloaded")
        self.rewrite(config(self.a, self.b, extra=with_c))
        self.sighup_and_wait("configuration reloaded")
        # every worker installs the new generation on its own thread: wait for all of them
        self.assertTrue(wait_until(lambda: self.health("c")["upstreams"]["c"]["requests"]["success"] == 0, timeout=5))

    def test_breaker_state_is_kept_when_its_policy_is_unchanged(self):
        for _ in range(2):
            request(self.bb.port(), target="/a/x?status=500")
        self.assertEqual(self.health("a")["upstreams"]["a"]["state"], "open")
        # change something else about the upstream: the breaker (and its open state) stays
        self.rewrite(config(self.a, self.b, timeout="3s"))
        entry = self.sighup_and_wait("configuration reloaded")
        self.assertIn("a", entry["breakers_kept"])
        h = self.health("a")["upstreams"]["a"]
        self.assertEqual(h["state"], "open")
        self.assertEqual(h["trips"], 1)
        self.assertEqual(request(self.bb.port(), target="/a/x").status, 503)
        # change the breaker policy: a fresh breaker, closed
        self.rewrite(config(self.a, self.b, breaker="{consecutive_failures: 3, open_duration: 60s}", timeout="3s"))
        entry = self.sighup_and_wait("configuration reloaded")
        self.assertIn("a", entry["breakers_reset"])
        self.assertIn("b", entry["breakers_kept"])
        self.assertEqual(self.health("a")["upstreams"]["a"]["state"], "closed")
        self.assertEqual(request(self.bb.port(), target="/a/x").status, 200)

    def test_an_invalid_file_is_rejected_and_the_old_configuration_keeps_serving(self):
        self.rewrite(config(self.a, self.b, route_a_to="b", extra="    conect_timeout: 1s\n"))
        entry = self.sighup_and_wait("configuration reload rejected")
        self.assertTrue(any("conect_timeout" in e and ":" in e for e in entry["errors"]), entry["errors"])
        self.assertEqual(entry["generation"], 1)
        self.assertEqual(request(self.bb.port(), target="/a/x").json()["server"], "A")
        self.assertEqual(self.health()["config_generation"], 1)
        # changing listeners needs a restart: rejected too
        self.rewrite(config(self.a, self.b).replace('{name: main, address: "127.0.0.1:0"}',
                                                     '{name: other, address: "127.0.0.1:0"}'))
        entry = self.sighup_and_wait("configuration reload rejected")
        self.assertTrue(any("restart" in e for e in entry["errors"]), entry["errors"])
        self.assertEqual(request(self.bb.port(), target="/a/x").json()["server"], "A")

    def test_reload_metrics_say_which_file_serves_and_how_the_last_reload_went(self):
        # Issue 33: a replica that rejected its file kept serving an older one with nothing in /metrics
        # to say so. Generation, file hash, reloads by result, the last success and whether the last
        # reload was applied — checked by promtool, and the alert rule on them by promtool test rules.
        def metrics():
            body = request(self.bb.port("admin"), target="/metrics").body
            check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            return body.decode()

        def file_hash():
            with open(self.bb.config_path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()

        m = metrics()
        self.assertEqual(sample(m, "breakerbox_config_generation"), 1)
        self.assertEqual(sample(m, "breakerbox_config_info", sha256=file_hash()), 1)
        self.assertEqual(sample(m, "breakerbox_config_last_reload_successful"), 1)
        self.assertEqual(sample(m, "breakerbox_config_last_reload_success_timestamp_seconds"), 0)
        served = file_hash()
        self.rewrite(config(self.a, self.b, extra="    conect_timeout: 1s\n"))
        self.sighup_and_wait("configuration reload rejected")
        m = metrics()
        self.assertEqual(sample(m, "breakerbox_config_reloads_total", result="rejected"), 1)
        self.assertEqual(sample(m, "breakerbox_config_reloads_total", result="applied"), 0)
        self.assertEqual(sample(m, "breakerbox_config_last_reload_successful"), 0)
        self.assertEqual(sample(m, "breakerbox_config_generation"), 1)
        self.assertEqual(sample(m, "breakerbox_config_info", sha256=served), 1)  # the file still serving, not the one on disk
        self.rewrite(config(self.a, self.b, route_a_to="b"))
        self.sighup_and_wait("configuration reloaded")
        m = metrics()
        self.assertEqual(sample(m, "breakerbox_config_reloads_total", result="applied"), 1)
        self.assertEqual(sample(m, "breakerbox_config_last_reload_successful"), 1)
        self.assertEqual(sample(m, "breakerbox_config_generation"), 2)
        self.assertEqual(sample(m, "breakerbox_config_info", sha256=file_hash()), 1)
        self.assertGreater(sample(m, "breakerbox_config_last_reload_success_timestamp_seconds"), 1.7e9)

    def test_admin_reload_needs_the_token_and_reports(self):
        admin = self.bb.port("admin")
        self.assertEqual(request(admin, method="POST", target="/admin/reload").status, 401)
        self.rewrite(config(self.a, self.b, route_a_to="b"))
        r = request(admin, method="POST", target="/admin/reload", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json()["applied"])
        self.assertEqual(r.json()["generation"], 2)
        self.assertTrue(wait_until(lambda: request(self.bb.port(), target="/a/x").json()["server"] == "B"))
        self.rewrite("upstreams: [not, a, mapping]\n")
        r = request(admin, method="POST", target="/admin/reload", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(r.status, 422)
        self.assertFalse(r.json()["applied"])
        self.assertTrue(r.json()["errors"])
        self.assertEqual(request(self.bb.port(), target="/a/x").json()["server"], "B")


if __name__ == "__main__":
    unittest.main()
