"""The admin listener: probes, /health/circuits (shape and the 200/503 rule), /metrics checked by
promtool and scraped by a real Prometheus, token enforcement, and operator actions on the data path."""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import urllib.parse

from harness import (ProxyTestCase, request, wait_until, free_port, PROMTOOL, PROMETHEUS, BREAKERBOX_BIN)

TOKEN = "s3cret-token"


def config(upstream, token=TOKEN, breaker="      consecutive_failures: 3\n      open_duration: 60s\n"):
    token_line = f"  token: {token}\n" if token else ""
    return f"""
workers: 2
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
{token_line}
upstreams:
  svc:
    endpoints: [{upstream.address}]
    routes:
      path_prefix: /
    circuit_breaker:
{breaker}
  other:
    endpoints: [{upstream.address}]
    routes:
      hosts: [other]
"""


class AdminTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc")
        self.bb = self.breakerbox(config(self.up))
        self.admin = self.bb.port("admin")

    def post(self, path, token=TOKEN, actor=None):
        headers = {}
        if token:
            headers["Authorization"] = "Bearer " + token
        if actor:
            headers["X-Breakerbox-Actor"] = actor
        return request(self.admin, method="POST", target=path, headers=headers)

    def trip(self):
        for _ in range(3):
            request(self.bb.port(), target="/x?status=500")

    def test_probes(self):
        self.assertEqual(request(self.admin, target="/live").status, 200)
        r = request(self.admin, target="/ready")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ready")
        self.assertEqual(request(self.admin, method="POST", target="/live").status, 405)
        self.assertEqual(request(self.admin, target="/nope").status, 404)
        root = request(self.admin, target="/")  # issue 33: the admin address leads to the dashboard
        self.assertEqual((root.status, root.headers["location"]), (302, "/dashboard"))
        # and the start-up log says, per upstream, where it goes, TLS and scope (one line each)
        line = self.bb.log_entries("upstream", at_least=1)[0]
        self.assertEqual((line["upstream"], line["endpoints"], line["tls"], line["scope"]),
                         ("svc", [self.up.address], "off", "local"))

    def test_not_ready_while_draining(self):
        done = {}
        t = threading.Thread(target=lambda: done.update(r=request(self.bb.port(), target="/slow?delay_ms=1500")))
        t.start()
        self.assertTrue(wait_until(lambda: self.up.stats()["in_flight"] == 1))
        self.bb.signal(signal.SIGTERM)
        self.assertTrue(wait_until(lambda: request(self.admin, target="/ready").status == 503))
        self.assertEqual(request(self.admin, target="/ready").json()["status"], "draining")
        self.assertEqual(request(self.admin, target="/live").status, 200)  # alive while it drains
        t.join(timeout=10)
        self.assertEqual(done["r"].status, 200)
        self.assertEqual(self.bb.wait(timeout=10), 0)

    def test_the_drain_period_accepts_with_connection_close_then_refuses(self):
        # Issue 33 (Kubernetes): the app and its sidecar get SIGTERM together; the app's own calls during
        # its graceful shutdown must still go out. With limits.drain_period new connections are accepted
        # (each answer says Connection: close), then the listeners close and the process exits 0.
        bb = self.breakerbox(config(self.up).replace("upstreams:", "limits: {drain_period: 1s, drain_timeout: 5s}\nupstreams:", 1))
        bb.signal(signal.SIGTERM)
        self.assertTrue(wait_until(lambda: request(bb.port("admin"), target="/ready").status == 503))
        r = request(bb.port(), target="/during")  # a new connection, inside the drain period
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("connection"), "close")
        self.assertGreaterEqual(self.up.stats()["paths"].get("/during", 0), 1)

        def refused():
            try:
                request(bb.port(), target="/after")
                return False
            except OSError:
                return True

        self.assertTrue(wait_until(refused, timeout=10))  # then the listeners close (answered until then)
        self.assertEqual(bb.wait(timeout=15), 0)
        self.assertEqual(len(bb.log_entries("listeners closed", at_least=1)), 1)

    def test_admin_is_not_on_the_data_port(self):
        r = request(self.bb.port(), target="/health/circuits", headers={"Host": "unrouted"})
        self.assertNotIn("instance", r.body.decode())  # forwarded to the upstream (prefix /), not the admin API
        self.assertEqual(r.json()["server"], "svc")

    def test_health_shape_and_status_rule(self):
        request(self.bb.port(), target="/ok")
        r = request(self.admin, target="/health/circuits")
        self.assertEqual(r.status, 200)
        h = r.json()
        self.assertEqual(h["status"], "ok")
        self.assertTrue(h["instance"]["id"])
        self.assertIn("per-instance", h["instance"]["scope"])
        self.assertIn("started_at", h["instance"])
        svc = h["upstreams"]["svc"]
        for key in ["state", "since", "seconds_in_state", "reason", "transitions", "trips", "open_duration_ms",
                    "next_probe_in_ms", "consecutive_failures", "window", "half_open", "requests",
                    "slow_requests", "rejections", "policy"]:
            self.assertIn(key, svc)
        self.assertEqual(svc["state"], "closed")
        self.assertEqual(svc["requests"]["success"], 1)
        self.assertEqual(svc["window"]["calls"], 1)
        self.assertEqual(svc["policy"]["circuit_breaker"]["consecutive_failures"], 3)
        self.assertIs(svc["policy"]["circuit_breaker"]["cancel_in_flight"], False)  # the effective policy, defaults too
        self.assertEqual(svc["policy"]["endpoints"], [self.up.address])
        self.assertIn("other", h["upstreams"])

        self.trip()
        request(self.bb.port(), target="/x")  # rejected
        r = request(self.admin, target="/health/circuits")
        self.assertEqual(r.status, 503)
        h = r.json()
        self.assertEqual(h["status"], "open")
        svc = h["upstreams"]["svc"]
        self.assertEqual(svc["state"], "open")
        self.assertEqual(svc["reason"], "3 consecutive failures >= 3")
        self.assertEqual(svc["trips"], 1)
        self.assertGreater(svc["next_probe_in_ms"], 0)
        self.assertEqual(svc["requests"]["status_failure"], 3)
        self.assertEqual(svc["rejections"]["circuit_open"], 1)
        self.assertEqual(h["upstreams"]["other"]["state"], "closed")
        # one upstream
        one = request(self.admin, target="/health/circuits/other")
        self.assertEqual(one.status, 200)
        self.assertEqual(list(one.json()["upstreams"]), ["other"])
        self.assertEqual(request(self.admin, target="/health/circuits/svc").status, 503)
        self.assertEqual(request(self.admin, target="/health/circuits/nope").status, 404)

    def test_half_open_is_degraded_with_200(self):
        bb = self.breakerbox(config(self.up, breaker="      consecutive_failures: 1\n      open_duration: 100ms\n"))
        request(bb.port(), target="/x?status=500")
        done = threading.Event()

        def slow_probe():
            # keeps the single probe in flight, so the circuit stays half-open for a while
            while not done.is_set():
                if request(bb.port(), target="/p?delay_ms=1500").status == 200:
                    return

        t = threading.Thread(target=slow_probe)
        t.start()
        try:
            # (past its open time the circuit reports half_open at once; wait for the probe to be in flight)
            def probing():
                j = request(bb.port("admin"), target="/health/circuits").json()
                return j["status"] == "degraded" and j["upstreams"]["svc"]["half_open"]["probes_in_flight"] == 1
            self.assertTrue(wait_until(probing, timeout=10))
            r = request(bb.port("admin"), target="/health/circuits")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["upstreams"]["svc"]["state"], "half_open")
            self.assertEqual(r.json()["upstreams"]["svc"]["half_open"]["probes_in_flight"], 1)
        finally:
            done.set()
            t.join(timeout=10)

    def test_promtool_accepts_a_real_scrape_after_real_traffic(self):
        for i in range(5):
            request(self.bb.port(), target=f"/ok{i}")
        self.trip()
        request(self.bb.port(), target="/rejected")
        request(self.bb.port(), target="/x", headers={"Host": "other"})
        r = request(self.admin, target="/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
        text = r.body.decode()
        self.assertIn('breakerbox_circuit_state_code{upstream="svc"} 2', text)
        self.assertIn('breakerbox_circuit_state{upstream="svc",state="open"} 1', text)
        self.assertIn('breakerbox_upstream_requests_total{upstream="svc",outcome="success"} 5', text)
        self.assertIn('breakerbox_upstream_requests_total{upstream="svc",outcome="status_failure"} 3', text)
        self.assertIn('breakerbox_rejections_total{upstream="svc",reason="circuit_open"} 1', text)
        self.assertIn('breakerbox_circuit_transitions_total{upstream="svc",from="closed",to="open"} 1', text)
        self.assertIn('breakerbox_upstream_request_duration_seconds_count{upstream="svc"} 8', text)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=r.body, capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual((check.stdout + check.stderr).strip(), b"", check.stdout + check.stderr)  # no lint findings

    def test_alert_rules_pass_promtool(self):
        here = os.path.dirname(os.path.abspath(__file__))
        rules = os.path.join(here, "../../config/alerts.yaml")
        check = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        test = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yaml"], cwd=here, capture_output=True, timeout=60)
        self.assertEqual(test.returncode, 0, test.stdout + test.stderr)

    def test_token_is_enforced(self):
        self.assertEqual(self.post("/admin/circuits/svc/force-open", token=None).status, 401)
        r = self.post("/admin/circuits/svc/force-open", token="wrong")
        self.assertEqual(r.status, 401)
        self.assertIn("bearer", r.headers["www-authenticate"].lower())
        self.assertEqual(request(self.admin, target="/admin/circuits/svc/force-open").status, 405)  # GET never mutates
        self.assertEqual(request(self.admin, target="/health/circuits").json()["upstreams"]["svc"]["state"], "closed")
        self.assertEqual(self.post("/admin/circuits/nope/reset").status, 404)
        self.assertEqual(self.post("/admin/circuits/svc/explode").status, 404)

    def test_without_a_token_mutations_are_refused(self):
        bb = self.breakerbox(config(self.up, token=None))
        r = request(bb.port("admin"), method="POST", target="/admin/circuits/svc/force-open",
                    headers={"Authorization": "Bearer anything"})
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["error"], "mutations_disabled")

    def test_token_from_the_environment(self):
        bb = self.breakerbox(config(self.up, token=None), extra_env={"BREAKERBOX_ADMIN_TOKEN": "from-env"})
        r = request(bb.port("admin"), method="POST", target="/admin/circuits/svc/force-open",
                    headers={"Authorization": "Bearer from-env"})
        self.assertEqual(r.status, 200)

    def test_operator_actions_change_the_data_path(self):
        base = self.up.stats()["requests"]
        r = self.post("/admin/circuits/svc/force-open", actor="alice")
        self.assertEqual(r.status, 200)
        # Issue 33: a short result, not the whole circuits document: what changed and what requests find.
        self.assertEqual({k: r.json()[k] for k in ("result", "action", "upstream", "from", "to", "state", "decided_by")},
                         {"result": "done", "action": "force-open", "upstream": "svc", "from": "closed", "to": "forced_open",
                          "state": "forced_open", "decided_by": "operator"})
        self.assertNotIn("circuit", r.json())
        for _ in range(5):
            res = request(self.bb.port(), target="/x")
            self.assertEqual(res.status, 503)
            self.assertEqual(res.headers["x-breakerbox-error"], "circuit_open")
        self.assertEqual(self.up.stats()["requests"], base)  # never contacted
        h = request(self.admin, target="/health/circuits").json()["upstreams"]["svc"]
        self.assertEqual(h["reason"], "operator force-open by 127.0.0.1 (alice)")
        actions = self.bb.log_entries("operator action", at_least=1)
        self.assertEqual(actions[-1]["who"], "127.0.0.1 (alice)")
        self.assertEqual(actions[-1]["to"], "forced_open")

        self.assertEqual(self.post("/admin/circuits/svc/force-closed").status, 200)
        for _ in range(10):  # far beyond the 3-failure threshold
            self.assertEqual(request(self.bb.port(), target="/x?status=500").status, 500)
        self.assertEqual(request(self.admin, target="/health/circuits").json()["upstreams"]["svc"]["state"], "forced_closed")

        self.assertEqual(self.post("/admin/circuits/svc/disable").status, 200)
        for _ in range(5):
            self.assertEqual(request(self.bb.port(), target="/x?status=500").status, 500)

        self.assertEqual(self.post("/admin/circuits/svc/reset").status, 200)
        self.trip()
        self.assertEqual(request(self.bb.port(), target="/x").status, 503)  # a normal breaker again
        self.assertEqual(self.post("/admin/circuits/reset").status, 200)  # reset all
        self.assertEqual(request(self.bb.port(), target="/x").status, 200)

    def test_public_admin_address_without_token_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(f"""
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "0.0.0.0:9901"}}
upstreams:
  svc: {{endpoints: ["{self.up.address}"], routes: {{path_prefix: /}}}}
""")
            f.flush()
            env = {k: v for k, v in os.environ.items() if k != "BREAKERBOX_ADMIN_TOKEN"}
            r = subprocess.run([BREAKERBOX_BIN, "--config", f.name], capture_output=True, text=True, timeout=10, env=env)
            self.assertEqual(r.returncode, 1)
            self.assertIn("admin.address", r.stderr)
            self.assertIn("without a token", r.stderr)


class PrometheusScrapeTest(ProxyTestCase):
    def test_prometheus_scrapes_the_state_of_a_tripped_circuit(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(up))
        for _ in range(3):
            request(bb.port(), target="/x?status=500")
        port = free_port()
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "prometheus.yml"), "w") as f:
                f.write(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: breakerbox
    static_configs:
      - targets: ["127.0.0.1:{bb.port('admin')}"]
""")
            prom = subprocess.Popen([PROMETHEUS, "--config.file", os.path.join(d, "prometheus.yml"),
                                     "--storage.tsdb.path", os.path.join(d, "data"),
                                     "--web.listen-address", f"127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                query = urllib.parse.quote('breakerbox_circuit_state_code{upstream="svc"}')
                url = f"http://127.0.0.1:{port}/api/v1/query?query={query}"

                def value():
                    try:
                        with urllib.request.urlopen(url, timeout=2) as resp:
                            result = json.loads(resp.read())["data"]["result"]
                            return result[0]["value"][1] if result else None
                    except OSError:
                        return None

                self.assertTrue(wait_until(lambda: value() is not None, timeout=30, interval=0.5))
                self.assertEqual(value(), "2")
            finally:
                prom.terminate()
                prom.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
