"""The deployment files are at least well-formed and say what they claim: YAML parses, the embedded
breakerbox configs pass --check-config, Prometheus accepts its config, Kubernetes probes point at
/live and /ready, and the Dockerfile keeps its promises (non-root, healthcheck, ports)."""
import json
import os
import re
import subprocess
import tempfile
import unittest

import yaml

from harness import BREAKERBOX_BIN, PROMTOOL, UPSTREAM_BIN, ProxyTestCase, request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")


def load_all(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_config(text, env=None):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        return subprocess.run([BREAKERBOX_BIN, "--check-config", f.name], capture_output=True, text=True,
                              timeout=10, env={**os.environ, **(env or {})})


class DeploymentFilesTest(unittest.TestCase):
    def test_bundled_configs_are_valid(self):
        for rel in ["config/example.yaml", "docker/breakerbox.yaml"]:
            with open(os.path.join(ROOT, rel)) as f:
                r = check_config(f.read())
            self.assertEqual(r.returncode, 0, rel + ": " + r.stderr)

    def test_the_readmes_own_upstream_example_is_valid(self):
        # The README opens with a configuration a newcomer copies: it must load as it stands.
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## Your own upstream"):]
        example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
        r = check_config(example)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_the_command_line_exits_0_or_1_as_the_readme_says(self):
        # Issue 30 §8: usage errors exited with CLI11's own codes (109, 114); the README promises 0 or 1.
        cases = [(["--help"], 0), (["--version"], 0), (["--no-such-flag"], 1), (["--check-config"], 1),
                 (["--check-config", "/nonexistent/nope.yaml"], 1), (["extra", "positional"], 1)]
        for args, code in cases:
            with self.subTest(args=args):
                r = subprocess.run([BREAKERBOX_BIN] + args, capture_output=True, text=True, timeout=10)
                self.assertEqual(r.returncode, code, r.stdout + r.stderr)
        missing = subprocess.run([BREAKERBOX_BIN, "--check-config", "/nonexistent/nope.yaml"], capture_output=True,
                                 text=True, timeout=10)
        self.assertIn("cannot read the file: No such file or directory", missing.stderr)

    def test_version_says_what_was_built_from_what(self):
        # Issue 33: --version printed the version alone; an operator comparing replicas needs the commit,
        # the build type and the libraries as loaded (like haproxy -vv).
        out = subprocess.run([BREAKERBOX_BIN, "--version"], capture_output=True, text=True, timeout=10).stdout
        lines = dict(line.split(": ", 1) for line in out.splitlines()[1:])
        self.assertRegex(out.splitlines()[0], r"^breakerbox \d+\.\d+\.\d+$")
        self.assertRegex(lines["commit"], r"^([0-9a-f]{12}|unknown)$")
        self.assertRegex(lines["build"], r"^(Release|Debug|RelWithDebInfo|MinSizeRel), C\+\+20")
        self.assertRegex(lines["openssl"], r"^built OpenSSL 3\.\S+ .*; loaded OpenSSL 3\.")
        self.assertRegex(lines["sqlite"], r"^built 3\.\d+\.\d+; loaded 3\.\d+\.\d+$")
        for key in ("boost", "hiredis", "nlohmann_json", "allocator"):
            self.assertIn(key, lines)
        helptext = subprocess.run([BREAKERBOX_BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
        for word in ("SIGHUP", "SIGTERM", "BREAKERBOX_ADMIN_TOKEN", "config/reference.md"):
            self.assertIn(word, helptext)
        # The demo sends newcomers to the test upstream: its --help documents every query knob.
        knobs = subprocess.run([UPSTREAM_BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
        for knob in ("status=N", "delay_ms=N", "fault=KIND", "hang", "die_after=K", "stream=sse", "/__sink", "WebSocket"):
            self.assertIn(knob, knobs)

    def test_cluster_config_needs_its_redis_password(self):
        with open(os.path.join(ROOT, "docker/breakerbox-cluster.yaml")) as f:
            text = f.read()
        self.assertEqual(check_config(text, {"REDIS_PASSWORD": "secret"}).returncode, 0)
        env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            r = subprocess.run([BREAKERBOX_BIN, "--check-config", f.name], capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cluster.password_env", r.stderr)

    def test_compose_cluster_runs_three_sidecars_sharing_one_redis(self):
        services = load_all("docker/compose-cluster.yaml")[0]["services"]
        sidecars = [n for n in services if n.startswith("breakerbox-")]
        self.assertEqual(len(sidecars), 3)
        self.assertIn("redis", services)
        ids = set()
        for n in sidecars:
            svc = services[n]
            self.assertEqual(svc["network_mode"], "service:app-" + n.split("-")[1])
            self.assertEqual(svc["environment"]["REDIS_ADDRESS"], "redis:6379")
            self.assertIn("REDIS_PASSWORD", svc["environment"])
            ids.add(svc["environment"]["REPLICA_ID"])
        self.assertEqual(len(ids), 3)  # each replica reports under its own id

    def test_kubernetes_cluster_example_reads_the_password_from_a_secret(self):
        docs = load_all("docker/kubernetes/cluster-redis.yaml")
        kinds = [d["kind"] for d in docs]
        self.assertIn("Secret", kinds)
        self.assertIn("Service", kinds)
        orders = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "orders")
        sidecar = next(c for c in orders["spec"]["template"]["spec"]["containers"] if c["name"] == "breakerbox")
        env = {e["name"]: e for e in sidecar["env"]}
        self.assertEqual(env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"], "breakerbox-redis")
        self.assertEqual(env["REDIS_ADDRESS"]["value"], "breakerbox-redis:6379")

    def test_compose_runs_breakerbox_as_a_sidecar_with_prometheus(self):
        compose = load_all("docker/compose.yaml")[0]
        services = compose["services"]
        self.assertEqual(set(services), {"app", "breakerbox", "flaky", "prometheus"})
        self.assertEqual(services["breakerbox"]["network_mode"], "service:app")
        self.assertIn("BREAKERBOX_ADMIN_TOKEN", services["breakerbox"]["environment"])
        volumes = " ".join(services["prometheus"]["volumes"])
        self.assertIn("alerts.yaml", volumes)
        self.assertIn("prometheus.yml", volumes)

    def test_prometheus_config_is_accepted_by_promtool(self):
        with open(os.path.join(ROOT, "docker/prometheus.yml")) as f:
            text = f.read().replace("/etc/prometheus/alerts.yaml", os.path.join(ROOT, "config/alerts.yaml"))
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            f.write(text)
            f.flush()
            r = subprocess.run([PROMTOOL, "check", "config", f.name], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def pod_specs(self, rel):
        for doc in load_all(rel):
            if doc["kind"] == "Deployment":
                yield doc["spec"]["template"]

    def test_kubernetes_probes_and_annotations(self):
        for rel, key in [("docker/kubernetes/deployment.yaml", "containers"),
                         ("docker/kubernetes/deployment-native-sidecar.yaml", "initContainers")]:
            for template in self.pod_specs(rel):
                ann = template["metadata"]["annotations"]
                self.assertEqual(ann["prometheus.io/scrape"], "true")
                self.assertEqual(ann["prometheus.io/port"], "9901")
                sidecar = [c for c in template["spec"][key] if c["name"] == "breakerbox"][0]
                self.assertEqual(sidecar["livenessProbe"]["httpGet"]["path"], "/live")
                self.assertEqual(sidecar["readinessProbe"]["httpGet"]["path"], "/ready")
                self.assertTrue(sidecar["securityContext"]["runAsNonRoot"])
                if key == "initContainers":
                    self.assertEqual(sidecar["restartPolicy"], "Always")

    def test_configmap_config_is_valid_and_needs_its_token(self):
        docs = load_all("docker/kubernetes/configmap.yaml")
        cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
        text = cm["data"]["breakerbox.yaml"]
        ok = check_config(text, {"BREAKERBOX_ADMIN_TOKEN": "t"})
        self.assertEqual(ok.returncode, 0, ok.stderr)
        env = {k: v for k, v in os.environ.items() if k != "BREAKERBOX_ADMIN_TOKEN"}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            missing = subprocess.run([BREAKERBOX_BIN, "--check-config", f.name], capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("BREAKERBOX_ADMIN_TOKEN", missing.stderr)
        self.assertTrue(any(d["kind"] == "Secret" for d in docs))

    def test_dockerfile_promises(self):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            text = f.read()
        self.assertRegex(text, r"FROM debian:bookworm-slim AS runtime")
        self.assertRegex(text, r"\nUSER 10001")
        self.assertRegex(text, r"\nEXPOSE 8080 9901")
        self.assertRegex(text, r"\nHEALTHCHECK .*\n.*/live")
        self.assertIn("bash scripts/setup.sh", text)
        runtime = text[text.index("AS runtime"):]
        self.assertNotIn("-dev", runtime)  # runtime libraries only


if __name__ == "__main__":
    unittest.main()


class GrafanaDashboardTest(ProxyTestCase):
    """docker/grafana/breakerbox-dashboard.json is built on the metric names breakerbox exports: every
    family its queries use is in a real scrape (after real traffic through two endpoints)."""

    def test_every_metric_the_dashboard_queries_is_exported(self):
        with open(os.path.join(ROOT, "docker/grafana/breakerbox-dashboard.json")) as f:
            dash = json.load(f)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
        used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bbreakerbox_\w+", e)}
        self.assertGreater(len(used), 10)
        ups = [self.upstream("a"), self.upstream("b")]
        bb = self.breakerbox(f"""
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0"}}
upstreams:
  svc:
    endpoints: [{ups[0].address}, {ups[1].address}]
    routes: {{path_prefix: /}}
""")
        for _ in range(4):
            request(bb.port(), target="/x")
        scrape = request(bb.port("admin"), target="/metrics").body.decode()
        families = set(re.findall(r"^# TYPE (\w+) ", scrape, re.M))
        # The certificate expiry exists only once a TLS upstream has presented a certificate.
        missing = sorted(used - families - {"breakerbox_upstream_tls_certificate_expiry_seconds"})
        self.assertEqual(missing, [], "queried by the Grafana dashboard but not exported")
