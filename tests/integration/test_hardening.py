"""Hardening: every upstream fault and every hostile or broken client gets exactly one well-formed
answer (or a clean close when nobody is left to answer), nothing is forwarded that should not be, the
breaker records the right outcome, and breakerbox keeps serving."""
import socket
import threading
import time
import unittest

from harness import ProxyTestCase, request, read_response, raw_exchange, wait_until


def config(svc, other):
    return f"""
workers: 2
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
limits:
  header_timeout: 500ms
  body_timeout: 500ms
upstreams:
  svc:
    endpoints: [{svc.address}]
    request_timeout: 1s
    retries: {{max_attempts: 1}}
    circuit_breaker: {{enabled: true, consecutive_failures: 1000, failure_rate: {{enabled: false}}}}
    routes: {{path_prefix: /}}
  other:
    endpoints: [{other.address}]
    routes: {{hosts: [other]}}
"""


class UpstreamFaultTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc", threads=4)
        self.other = self.upstream("other")
        self.bb = self.breakerbox(config(self.up, self.other))

    def outcomes(self):
        return request(self.bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]["requests"]

    def check(self, fault, status, error, outcome):
        before = self.outcomes()[outcome]
        conns_before = self.up.stats()["connections"]
        r = request(self.bb.port(), target=f"/f?fault={fault}", timeout=10)
        self.assertEqual(r.status, status, fault)
        if error:
            self.assertEqual(r.headers["x-breakerbox-error"], error, fault)
            self.assertEqual(r.json()["error"], error, fault)
            self.assertEqual(r.json()["upstream"], "svc")
        self.assertEqual(self.outcomes()[outcome], before + 1, f"{fault}: recorded as {outcome}")
        # the broken connection was not reused: the next request opens a new one and succeeds
        self.assertEqual(request(self.bb.port(), target="/next").status, 200, fault)
        self.assertGreater(self.up.stats()["connections"], conns_before, fault)
        # and other upstreams are unaffected
        self.assertEqual(request(self.bb.port(), target="/x", headers={"Host": "other"}).json()["server"], "other")

    def test_reset_before_the_response(self):
        self.check("reset", 502, "upstream_reset", "reset")

    def test_reset_mid_headers(self):
        self.check("reset_mid_headers", 502, "upstream_reset", "reset")

    def test_reset_mid_body(self):
        self.check("reset_mid_body", 502, "upstream_reset", "reset")

    def test_closed_without_an_answer(self):
        self.check("close", 502, "upstream_reset", "reset")

    def test_hang_before_anything(self):
        self.check("hang", 504, "upstream_timeout", "timeout")

    def test_hang_after_the_headers(self):
        self.check("hang_after_headers", 504, "upstream_timeout", "timeout")

    def test_slow_drip(self):
        self.check("drip", 504, "upstream_timeout", "timeout")

    def test_invalid_http(self):
        self.check("garbage", 502, "upstream_invalid_response", "invalid_response")

    def test_oversized_headers(self):
        self.check("huge_headers", 502, "upstream_invalid_response", "invalid_response")

    def test_body_shorter_than_its_content_length(self):
        self.check("short_body", 502, "upstream_reset", "reset")

    def test_body_longer_than_its_content_length(self):
        # The declared 5 bytes are the response; the extra bytes poison the connection, which is dropped.
        before = self.up.stats()["connections"]
        r = request(self.bb.port(), target="/f?fault=long_body")
        self.assertEqual((r.status, r.body), (200, b"01234"))
        self.assertEqual(request(self.bb.port(), target="/next").status, 200)
        self.assertEqual(self.up.stats()["connections"], before + 2)


class HostileClientTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc", threads=4)
        self.other = self.upstream("other")
        self.bb = self.breakerbox(config(self.up, self.other))

    def rejected(self, data):
        out = raw_exchange(self.bb.port(), data, timeout=5)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:120])
        self.assertIn(b"Connection: close", out)
        self.assertEqual(out.count(b"HTTP/1.1"), 1, out)  # one answer, then the connection is closed
        self.assertEqual(self.up.stats()["requests"], 0)  # nothing forwarded, not even the smuggled part

    def test_content_length_with_transfer_encoding(self):
        self.rejected(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")

    def test_two_different_content_lengths(self):
        self.rejected(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")

    def test_invalid_chunk_size(self):
        self.rejected(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")

    def test_obsolete_line_folding(self):
        self.rejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n")

    def test_transfer_encoding_not_ending_in_chunked(self):
        self.rejected(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc")

    def test_garbage(self):
        self.rejected(b"\x00\x01\x02 garbage \xff\r\n\r\n")

    def test_slowloris_gets_408_on_the_header_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5)
        got = b""
        try:
            for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                s.sendall(bytes([ch]))
                time.sleep(0.05)  # trickles slower than the 500 ms header deadline allows for the whole header
        except OSError:
            pass
        s.settimeout(5)
        try:
            while True:
                c = s.recv(4096)
                if not c:
                    break
                got += c
        except OSError:
            pass
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 408 "), got[:100])
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_client_leaving_mid_request_body(self):
        s = socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little")
        s.close()
        time.sleep(0.1)
        self.assertEqual(request(self.bb.port(), target="/ok").status, 200)
        self.assertEqual(self.up.stats()["requests"], 1)  # the incomplete request was never forwarded

    def test_client_leaving_mid_response_cancels_the_upstream_request(self):
        s = socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5)
        s.sendall(b"GET /slow?delay_ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(wait_until(lambda: self.up.stats()["in_flight"] == 1))
        s.close()  # gone before the answer
        health = lambda: request(self.bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        self.assertTrue(wait_until(lambda: health()["bulkhead"]["in_flight"] == 0, timeout=10))
        h = health()
        # cancelled, not waited out: no outcome was recorded (the 3 s answer would have been a success),
        # and a client going away is not an upstream failure either
        self.assertEqual(h["requests"]["success"], 0)
        self.assertEqual(h["window"]["calls"], 0)
        self.assertEqual(h["state"], "closed")
        self.assertEqual(request(self.bb.port(), target="/ok").status, 200)

    def test_pipelined_garbage_after_a_good_request(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"GET /good HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
            first = read_response(s)
            second = read_response(s)
        self.assertEqual(first.status, 200)
        self.assertEqual(second.status, 400)
        self.assertEqual(self.up.stats()["requests"], 1)


if __name__ == "__main__":
    unittest.main()
