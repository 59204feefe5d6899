"""Proxy core, end to end: routing modes, keep-alive reuse, header rules, proxy errors, limits,
pipelining, HTTP/1.0, chunked bodies, never-an-open-proxy, and a graceful drain on SIGTERM."""
import signal
import socket
import threading
import time
import unittest

from harness import ProxyTestCase, request, read_response, raw_exchange, wait_until, ok_response


def config(upstreams, limits="", extra_listeners="", workers=1, upstream_defaults=""):
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
{extra_listeners}
admin:
  enabled: false
limits:
  header_timeout: 500ms
  idle_timeout: 5s
  drain_timeout: 5s
{limits}
logging:
  level: info
defaults:
  connect_timeout: 500ms
  request_timeout: 3s
{upstream_defaults}
upstreams:
{upstreams}
"""


class RoutingTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.pay = self.upstream("payments")
        self.cat = self.upstream("catalog")
        self.bb = self.breakerbox(config(f"""
  payments:
    endpoints: [{self.pay.address}]
    routes:
      hosts: [payments]
      path_prefix: /payments
      strip_prefix: true
  catalog:
    endpoints: [{self.cat.address}]
    routes:
      hosts: [catalog.internal:80]
""", extra_listeners="""  - name: payments-local
    address: 127.0.0.1:0
    upstream: payments
"""))

    def test_dedicated_listener_forwards_everything_to_its_upstream(self):
        r = request(self.bb.port("payments-local"), target="/v1/charge?id=7")
        self.assertEqual(r.status, 200)
        echo = r.json()
        self.assertEqual(echo["server"], "payments")
        self.assertEqual(echo["target"], "/v1/charge?id=7")

    def test_path_prefix_is_stripped(self):
        r = request(self.bb.port(), target="/payments/v1/charge?id=7")
        self.assertEqual(r.json()["server"], "payments")
        self.assertEqual(r.json()["target"], "/v1/charge?id=7")
        r = request(self.bb.port(), target="/payments")
        self.assertEqual(r.json()["target"], "/")

    def test_prefix_matches_only_on_a_segment_boundary(self):
        r = request(self.bb.port(), target="/paymentsxyz")
        self.assertEqual(r.status, 404)
        self.assertEqual(self.pay.stats()["requests"], 0)

    def test_host_header_routes(self):
        r = request(self.bb.port(), target="/items", headers={"Host": "payments"})
        self.assertEqual(r.json()["server"], "payments")
        self.assertEqual(r.json()["target"], "/items")  # host routes do not strip anything

    def test_host_with_port_must_match_exactly(self):
        r = request(self.bb.port(), target="/items", headers={"Host": "catalog.internal:80"})
        self.assertEqual(r.json()["server"], "catalog")
        r = request(self.bb.port(), target="/items", headers={"Host": "catalog.internal:81"})
        self.assertEqual(r.status, 404)

    def test_absolute_form_target_as_used_with_http_proxy(self):
        r = request(self.bb.port(), target="http://payments/v2/refund?x=1", headers={"Host": "payments"})
        self.assertEqual(r.status, 200)
        echo = r.json()
        self.assertEqual(echo["server"], "payments")
        self.assertEqual(echo["target"], "/v2/refund?x=1")
        self.assertEqual(echo["headers"]["Host"], "payments")

    def test_unconfigured_host_is_never_contacted(self):
        # A real server that breakerbox is not configured for: an open proxy would reach it.
        bystander = self.upstream("bystander")
        target = f"http://{bystander.address}/secret"
        r = request(self.bb.port(), target=target, headers={"Host": bystander.address})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"], "no_route")
        self.assertEqual(r.headers["x-breakerbox-error"], "no_route")
        r = request(self.bb.port(), target="/secret", headers={"Host": bystander.address})
        self.assertEqual(r.status, 404)
        self.assertEqual(bystander.stats()["connections"], 0)

    def test_errors_made_by_the_proxy_have_no_body_for_head(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"HEAD /x HTTP/1.1\r\nHost: nobody.example\r\n\r\n"
                      b"GET /x HTTP/1.1\r\nHost: nobody.example\r\n\r\n")
            head = read_response(s, head=True)
            get = read_response(s)
        self.assertEqual((head.status, get.status), (404, 404))
        self.assertEqual(head.headers["content-length"], get.headers["content-length"])
        self.assertEqual(get.json()["error"], "no_route")  # the second answer starts where it should

    def test_connect_is_refused(self):
        r = request(self.bb.port(), method="CONNECT", target="payments:443", headers={"Host": "payments:443"})
        self.assertEqual(r.status, 405)
        self.assertEqual(r.json()["error"], "method_not_allowed")
        self.assertEqual(self.pay.stats()["connections"], 0)

    def test_https_absolute_form_is_not_forwarded(self):
        r = request(self.bb.port(), target="https://payments/x", headers={"Host": "payments"})
        self.assertEqual(r.status, 404)


class ForwardingTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc")
        self.bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{self.up.address}]
    routes:
      path_prefix: /
"""))

    def test_upstream_connections_are_reused(self):
        for i in range(20):
            self.assertEqual(request(self.bb.port(), target=f"/r{i}").status, 200)
        stats = self.up.stats()
        self.assertEqual(stats["requests"], 20)
        self.assertEqual(stats["connections"], 1)

    def test_hop_by_hop_request_headers_are_stripped_and_forwarding_headers_added(self):
        r = request(self.bb.port(), target="/h", headers={
            "Host": "svc.example", "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive", "TE": "trailers",
            "Upgrade": "websocket", "Trailer": "X-T", "X-End-To-End": "kept",
            "X-Forwarded-For": "10.0.0.1"})
        h = r.json()["headers"]
        names = {k.lower() for k in h}
        for hop in ["connection", "x-secret-hop", "keep-alive", "proxy-connection", "te", "upgrade",
                    "trailer", "transfer-encoding"]:
            self.assertNotIn(hop, names)
        self.assertEqual(h["X-End-To-End"], "kept")
        self.assertEqual(h["X-Forwarded-For"], "10.0.0.1, 127.0.0.1")
        self.assertEqual(h["X-Forwarded-Proto"], "http")
        self.assertEqual(h["X-Forwarded-Host"], "svc.example")
        self.assertIn("breakerbox", h["Via"])

    def test_hop_by_hop_response_headers_are_stripped(self):
        r = request(self.bb.port(), target="/h?header=Keep-Alive:timeout%3D9&header=X-Upstream-Hop:1"
                                           "&header=Connection:X-Upstream-Hop&header=X-Kept:yes")
        self.assertEqual(r.status, 200)
        self.assertNotIn("keep-alive", r.headers)
        self.assertNotIn("x-upstream-hop", r.headers)
        self.assertEqual(r.headers["x-kept"], "yes")

    def test_upstream_status_and_body_pass_through(self):
        r = request(self.bb.port(), target="/x?status=503&bytes=4096")
        self.assertEqual(r.status, 503)
        self.assertEqual(len(r.body), 4096)
        self.assertNotIn("x-breakerbox-error", r.headers)  # an upstream answer, not a proxy error

    def test_request_body_is_forwarded(self):
        r = request(self.bb.port(), method="POST", target="/p", body=b"a" * 5000)
        self.assertEqual(r.json()["body_bytes"], 5000)
        self.assertEqual(r.json()["headers"]["Content-Length"], "5000")

    def test_chunked_request_and_response_bodies(self):
        req = (b"POST /c?chunked=1&bytes=3000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(req)
            r = read_response(s)
        self.assertEqual(r.status, 200)
        # An answer of unknown length streams (docs/streaming.md): chunked again towards an HTTP/1.1 client,
        # every byte of it, and no Content-Length invented.
        self.assertEqual(len(r.body), 3000)
        self.assertEqual(r.headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", r.headers)
        # and the request body arrived de-chunked
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            r = read_response(s)
        self.assertEqual(r.json()["body_bytes"], 11)
        self.assertNotIn("Transfer-Encoding", r.json()["headers"])

    def test_head_keeps_content_length(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"HEAD /h?bytes=1234 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            r1 = read_response(s, head=True)
            r2 = read_response(s)
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.headers["content-length"], "1234")
        self.assertEqual(r2.json()["target"], "/after")

    def test_pipelined_requests_are_answered_in_order(self):
        # The first is slow: a proxy that answered out of order would return /fast first.
        data = (b"GET /slow?delay_ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /third?status=201 HTTP/1.1\r\nHost: x\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=10) as s:
            s.sendall(data)
            rs = [read_response(s) for _ in range(3)]
        self.assertEqual([r.json()["target"] for r in rs], ["/slow?delay_ms=300", "/fast", "/third?status=201"])
        self.assertEqual(rs[2].status, 201)

    def test_http10_client(self):
        out = raw_exchange(self.bb.port(), b"GET /old HTTP/1.0\r\n\r\n", timeout=5)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        self.assertIn(b'"target":"/old"', body)  # and the connection was closed after it (raw_exchange returned)

    def test_http10_keep_alive(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r1 = read_response(s)
            s.sendall(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r2 = read_response(s)
        self.assertEqual(r1.version, "HTTP/1.0")
        self.assertEqual(r1.headers.get("connection", "").lower(), "keep-alive")
        self.assertEqual(r2.json()["target"], "/b")

    def test_connection_close_from_client_is_honoured(self):
        out = raw_exchange(self.bb.port(), b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        self.assertIn(b"Connection: close", out)
        self.assertEqual(out.count(b"HTTP/1.1 "), 1)

    def test_pooled_connection_closed_by_the_upstream_is_not_lost(self):
        # The upstream advertises keep-alive but closes right after responding.
        for i in range(5):
            r = request(self.bb.port(), target=f"/x?fault=close_after_response&i={i}")
            self.assertEqual(r.status, 200)
            r = request(self.bb.port(), target=f"/y{i}")
            self.assertEqual(r.status, 200)
        self.assertEqual(self.up.stats()["requests"], 10)


class InterimResponseTest(ProxyTestCase):
    """Issue 30 §5, RFC 9110 §15.2: an intermediary forwards the 1xx responses it did not ask for (never
    to an HTTP/1.0 client) — as the client's proxy (absolute form) and on gateway routes alike."""

    def setUp(self):
        super().setUp()

        def hints(up, conn, index):
            while up.read_request(conn):
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: keep-alive\r\n\r\n"
                             + ok_response(extra="Connection: close\r\n"))
                return

        self.up = self.scripted(hints)
        self.bb = self.breakerbox(config(f"""
  hints:
    endpoints: [{self.up.address}]
    routes:
      hosts: [hints.test]
  gateway:
    endpoints: [{self.up.address}]
    routes:
      path_prefix: /eh
"""))

    def interim_then_final(self, raw):
        out = raw_exchange(self.bb.port(), raw, timeout=5)
        self.assertTrue(out.endswith(b"ok"), out)
        return out

    def test_a_103_reaches_a_client_that_uses_breakerbox_as_its_proxy(self):
        out = self.interim_then_final(b"GET http://hints.test/eh HTTP/1.1\r\nHost: hints.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 103 Early Hints\r\n"), out)
        interim = out.split(b"\r\n\r\n", 1)[0]
        self.assertIn(b"Link: </style.css>; rel=preload", interim)
        self.assertNotIn(b"keep-alive", interim.lower())  # hop-by-hop fields never leak
        self.assertIn(b"HTTP/1.1 200 OK", out.split(b"\r\n\r\n", 1)[1])

    def test_a_103_reaches_a_client_of_a_gateway_route(self):
        out = self.interim_then_final(b"GET /eh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 103 Early Hints\r\n"), out)

    def test_at_most_16_are_passed_on(self):
        def flood(up, conn, index):
            if up.read_request(conn):
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" * 40
                             + ok_response(extra="Connection: close\r\n"))

        up = self.scripted(flood)
        bb = self.breakerbox(config(f"""
  flood:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
"""))
        out = raw_exchange(bb.port(), b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        self.assertEqual(out.count(b"HTTP/1.1 103 "), 16)
        self.assertTrue(out.endswith(b"ok"), out[-200:])

    def test_never_to_an_http10_client(self):
        out = self.interim_then_final(b"GET /eh HTTP/1.0\r\n\r\n")
        self.assertNotIn(b" 103 ", out)
        self.assertTrue(out.startswith(b"HTTP/1.0 200") or out.startswith(b"HTTP/1.1 200"), out)


class IdleAndResolutionTest(ProxyTestCase):
    def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout(self):
        up = self.upstream("svc")
        bb = self.breakerbox(f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{enabled: false}}
limits: {{idle_timeout: 300ms}}
upstreams:
  svc: {{endpoints: ["{up.address}"], routes: {{path_prefix: /}}}}
""")
        with socket.create_connection(("127.0.0.1", bb.port()), timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s).status, 200)
            s.settimeout(5)
            self.assertEqual(s.recv(10), b"")  # closed by breakerbox, well before the 5 s socket timeout

    def _parking_breakerbox(self, idle_timeout):
        up = self.upstream("svc")
        return self.breakerbox(f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0"}}
limits: {{idle_timeout: {idle_timeout}, drain_timeout: 5s}}
upstreams:
  svc: {{endpoints: ["{up.address}"], routes: {{path_prefix: /}}}}
""")

    @staticmethod
    def _parked(bb):
        metrics = request(bb.port("admin"), target="/metrics").body.decode()
        for line in metrics.splitlines():
            if line.startswith("breakerbox_downstream_connections_parked_total "):
                return float(line.split()[1])
        raise AssertionError("no breakerbox_downstream_connections_parked_total in /metrics")

    def test_a_parked_idle_connection_answers_its_next_requests(self):
        # After a second without a request the connection gives its read buffer back and waits
        # without one; the next request (split in two writes, then pipelined) is read as usual.
        bb = self._parking_breakerbox("60s")
        with socket.create_connection(("127.0.0.1", bb.port()), timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s).json()["target"], "/a")
            self.assertEqual(self._parked(bb), 0)
            self.assertTrue(wait_until(lambda: self._parked(bb) >= 1, timeout=10))
            s.sendall(b"GET /b HTTP/1.1\r\nHo")
            s.sendall(b"st: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s).json()["target"], "/b")
            self.assertEqual(read_response(s).json()["target"], "/c")
            self.assertTrue(wait_until(lambda: self._parked(bb) >= 2, timeout=10))  # parks again when idle again
            s.sendall(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_response(s).json()["target"], "/d")

    def test_a_parked_connection_still_closes_at_its_idle_timeout_and_on_drain(self):
        bb = self._parking_breakerbox("3s")
        timed_out = socket.create_connection(("127.0.0.1", bb.port()), timeout=10)
        timed_out.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(timed_out).status, 200)
        self.assertTrue(wait_until(lambda: self._parked(bb) >= 1, timeout=10))
        self.assertEqual(timed_out.recv(10), b"")  # closed at the idle timeout, well before the 10 s socket timeout
        timed_out.close()
        drained = socket.create_connection(("127.0.0.1", bb.port()), timeout=10)
        drained.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(drained).status, 200)
        self.assertTrue(wait_until(lambda: self._parked(bb) >= 2, timeout=10))
        bb.signal(signal.SIGTERM)
        status = bb.wait(timeout=10)
        self.assertEqual(status, 0, "\n".join(map(str, bb.log_entries())))
        self.assertEqual(drained.recv(10), b"")
        drained.close()

    def test_endpoint_names_are_resolved(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [localhost:{up.port}]
    routes:
      path_prefix: /
"""))
        for i in range(5):
            self.assertEqual(request(bb.port(), target=f"/n{i}").json()["server"], "svc")


class ProxyErrorTest(ProxyTestCase):
    def test_connect_refused_is_502_with_a_json_body(self):
        # A port that was just free: nothing listens there.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        bb = self.breakerbox(config(f"""
  dead:
    endpoints: [127.0.0.1:{dead}]
    routes:
      path_prefix: /
"""))
        r = request(bb.port(), target="/x")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_connect_failed")
        self.assertEqual(r.headers["x-breakerbox-upstream"], "dead")
        body = r.json()
        self.assertEqual(body["error"], "upstream_connect_failed")
        self.assertEqual(body["upstream"], "dead")
        self.assertIn("detail", body)

    def test_upstream_timeout_is_504(self):
        up = self.upstream("slow")
        bb = self.breakerbox(config(f"""
  slow:
    endpoints: [{up.address}]
    request_timeout: 300ms
    routes:
      path_prefix: /
"""))
        r = request(bb.port(), target="/x?delay_ms=3000")
        self.assertEqual(r.status, 504)
        self.assertEqual(r.json()["error"], "upstream_timeout")

    def test_invalid_upstream_response_is_502(self):
        up = self.upstream("bad")
        bb = self.breakerbox(config(f"""
  bad:
    endpoints: [{up.address}]
    routes:
      path_prefix: /
"""))
        r = request(bb.port(), target="/x?fault=garbage")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["error"], "upstream_invalid_response")
        r = request(bb.port(), target="/x?fault=reset")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["error"], "upstream_reset")
        # and it keeps serving afterwards
        self.assertEqual(request(bb.port(), target="/ok").status, 200)


class LimitsTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc")
        self.bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{self.up.address}]
    routes:
      path_prefix: /
""", limits="""  max_header_bytes: 4KiB
  max_request_body: 10KiB
"""))

    def test_oversized_headers_get_431(self):
        out = raw_exchange(self.bb.port(), b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:100])
        self.assertIn(b"header_too_large", out)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_oversized_request_line_gets_414(self):
        out = raw_exchange(self.bb.port(), b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 414"), out[:100])

    def test_oversized_body_gets_413(self):
        r = request(self.bb.port(), method="POST", target="/p", body=b"b" * 20000)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"], "body_too_large")
        out = raw_exchange(self.bb.port(), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           b"4000\r\n" + b"c" * 0x4000 + b"\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:100])
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_slow_headers_get_408(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the header
            r = read_response(s, timeout=5)
        self.assertEqual(r.status, 408)
        self.assertEqual(r.json()["error"], "request_timeout")

    def test_garbage_gets_400(self):
        out = raw_exchange(self.bb.port(), b"\x16\x03\x01 this is not http\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:100])


class ConnectionLimitTest(ProxyTestCase):
    def test_connections_above_the_limit_get_503_and_existing_ones_keep_working(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes:
      path_prefix: /
""", limits="  max_connections: 2\n"))
        a = socket.create_connection(("127.0.0.1", bb.port()), timeout=5)
        b = socket.create_connection(("127.0.0.1", bb.port()), timeout=5)
        a.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(a).status, 200)
        b.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(b).status, 200)
        out = raw_exchange(bb.port(), b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 503"), out[:100])
        self.assertIn(b"too_many_connections", out)
        a.sendall(b"GET /a2 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(a).status, 200)
        a.close()
        b.close()


class DrainTest(ProxyTestCase):
    def test_sigterm_lets_an_in_flight_request_finish(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes:
      path_prefix: /
"""))
        port = bb.port()
        result = {}

        def slow():
            result["r"] = request(port, target="/slow?delay_ms=800")

        t = threading.Thread(target=slow)
        t.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1, timeout=5))
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # an idle keep-alive client
        idle.sendall(b"GET /i HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(idle).status, 200)
        bb.signal(signal.SIGTERM)
        t.join(timeout=10)
        self.assertEqual(result["r"].status, 200)
        self.assertEqual(result["r"].json()["target"], "/slow?delay_ms=800")
        self.assertEqual(bb.wait(timeout=10), 0)
        self.assertEqual(idle.recv(10), b"")  # the idle connection was closed, not left hanging
        idle.close()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


if __name__ == "__main__":
    unittest.main()
