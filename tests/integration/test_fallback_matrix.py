"""Every fallback kind served for every trigger, with the right headers: static, stale, another
upstream and the explicit error × circuit open, bulkhead full, upstream error, timeout."""
import socket
import threading
import unittest

from harness import ProxyTestCase, read_response, request, wait_until

TOKEN = "matrix"
KINDS = {
    "static": ("static: {status: 299, body: 'from static'}", "static"),
    "stale": ("stale: {}", "stale"),
    "failover": ("upstream: backup", "upstream:backup"),
    "explicit": ("error: {}", "error"),
}


def config(svc, backup):
    blocks = []
    for name, (fallback, _) in KINDS.items():
        blocks.append(f"""
  {name}:
    endpoints: [{svc.address}]
    routes: {{path_prefix: /{name}, strip_prefix: true}}
    request_timeout: 2s
    retries: {{max_attempts: 1}}
    bulkhead: {{max_concurrent: 1, max_queue: 0}}
    circuit_breaker: {{consecutive_failures: 1000, failure_rate: {{enabled: false}}}}
    stale_cache: {{max_entries: 10}}
    fallbacks:
      - when: [circuit_open, bulkhead_full, upstream_error, timeout]
        {fallback}""")
    return f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0", token: {TOKEN}}}
upstreams:{''.join(blocks)}
  backup:
    endpoints: [{backup.address}]
"""


class FallbackMatrixTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.svc = self.upstream("svc", threads=4)
        self.backup = self.upstream("backup")
        self.bb = self.breakerbox(config(self.svc, self.backup))
        for name in KINDS:  # a good answer for the stale cache
            self.assertEqual(request(self.bb.port(), target=f"/{name}/item").status, 200)

    def admin(self, path):
        r = request(self.bb.port("admin"), method="POST", target=path, headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(r.status, 200)

    def check(self, name, trigger, response):
        marker = KINDS[name][1]
        self.assertEqual(response.headers.get("x-breakerbox-fallback"), marker, f"{name} / {trigger}")
        self.assertEqual(response.headers.get("x-breakerbox-fallback-reason"), trigger, f"{name} / {trigger}")
        if name == "static":
            self.assertEqual((response.status, response.body), (299, b"from static"))
        elif name == "stale":
            self.assertEqual(response.status, 200)
            self.assertIn("age", response.headers)
            self.assertEqual(response.json()["target"], "/item")
        elif name == "failover":
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["server"], "backup")
        else:  # the explicit error: a proxy error, or the upstream's own failure answer
            self.assertGreaterEqual(response.status, 500)

    def test_head_requests_get_every_fallback_without_a_body(self):
        # A body after a HEAD answer would be read as the start of the next response on the connection.
        for name in KINDS:
            self.admin(f"/admin/circuits/{name}/force-open")
            with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
                s.sendall(f"HEAD /{name}/item HTTP/1.1\r\nHost: 127.0.0.1:{self.bb.port()}\r\n\r\n"
                          f"GET /{name}/item HTTP/1.1\r\nHost: 127.0.0.1:{self.bb.port()}\r\n\r\n".encode())  # the key the cache was filled with
                head = read_response(s, head=True)
                get = read_response(s)
            self.assertEqual(head.headers.get("x-breakerbox-fallback"), KINDS[name][1], name)
            self.assertEqual(head.status, get.status, name)
            if name != "failover":  # the backup echoes the method it saw, so its GET body is one byte shorter
                self.assertEqual(head.headers.get("content-length"), get.headers.get("content-length"), name)
            self.check(name, "circuit_open", get)  # the next answer on the connection is intact
            self.admin(f"/admin/circuits/{name}/reset")

    def test_circuit_open(self):
        for name in KINDS:
            self.admin(f"/admin/circuits/{name}/force-open")
            self.check(name, "circuit_open", request(self.bb.port(), target=f"/{name}/item"))
            self.admin(f"/admin/circuits/{name}/reset")

    def test_upstream_error(self):
        self.svc.configure("status=500")
        for name in KINDS:
            self.check(name, "upstream_error", request(self.bb.port(), target=f"/{name}/item"))

    def test_timeout(self):
        self.svc.configure("delay_ms=3000")
        for name in KINDS:
            self.check(name, "timeout", request(self.bb.port(), target=f"/{name}/item"))

    def test_bulkhead_full(self):
        for name in KINDS:
            before = self.svc.stats()["requests"]
            holder = threading.Thread(target=lambda: request(self.bb.port(), target=f"/{name}/hold?delay_ms=1500"))
            holder.start()
            self.assertTrue(wait_until(lambda: self.svc.stats()["requests"] > before))
            self.check(name, "bulkhead_full", request(self.bb.port(), target=f"/{name}/item"))
            holder.join(timeout=10)


if __name__ == "__main__":
    unittest.main()
