"""Faults rebuilt from public bug reports against other proxies (issue 15), each checked on the wire
against the real binary with a scripted upstream that decides every byte: a request that must not be
repeated is never sent twice; trailer fields never become header fields; transfer codings other than
chunked are refused; Host is validated; a circuit past its open time is reported as the next request
will find it; a client that leaves is counted; Retry-After is read as RFC 9110 says; Expect: 100-continue
on a request nobody takes is answered at once; a failover target gets its own Host."""
import socket
import time
import unittest

from harness import ProxyTestCase, request, raw_exchange, ok_response, wait_until

TOKEN = "wire-faults-token"


def config(upstreams, workers=1):
    return f"""
workers: {workers}
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0", token: {TOKEN}}}
limits: {{header_timeout: 2s, body_timeout: 2s}}
upstreams:
{upstreams}
"""


def circuits(bb, name):
    return request(bb.port("admin"), target=f"/health/circuits/{name}").json()["upstreams"][name]


def keep_alive_then(after_first):
    """A scripted upstream: the first connection answers GET /warm and stays open, then runs
    `after_first(up, conn)` for the next request on it; later connections answer 200 to everything."""
    def handler(up, conn, index):
        if index == 0:
            req = up.read_request(conn)
            conn.sendall(ok_response(b"warm"))
            after_first(up, conn)
            return
        while up.read_request(conn):
            conn.sendall(ok_response(b"fresh"))
    return handler


def answering(raw):
    """A scripted upstream handler that answers every request on a connection with `raw`."""
    def handler(up, conn, index):
        while up.read_request(conn):
            conn.sendall(raw)
    return handler


def read_then_close(up, conn):
    up.read_request(conn)  # the whole request arrives, then the upstream dies without answering


class ResendSafetyTest(ProxyTestCase):
    """Fault 1: the stale-connection replay resent a POST that the upstream had read in full."""

    def start(self, after_first, retries=""):
        up = self.scripted(keep_alive_then(after_first))
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    request_timeout: 3s
    {retries}
"""))
        self.assertEqual(request(bb.port(), target="/warm").body, b"warm")
        return up, bb

    def test_a_post_read_by_the_upstream_is_not_sent_again(self):
        up, bb = self.start(read_then_close)
        before = circuits(bb, "svc")
        r = request(bb.port(), method="POST", target="/order", body=b"x=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_reset")
        self.assertEqual(up.count("POST", "/order"), 1, "the POST reached the upstream twice")
        after = circuits(bb, "svc")
        self.assertEqual(after["requests"]["reset"], before["requests"]["reset"] + 1)
        self.assertEqual(after["retries"]["attempted"], before["retries"]["attempted"])

    def test_an_idempotent_request_is_resent_as_a_counted_retry(self):
        up, bb = self.start(read_then_close)
        before = circuits(bb, "svc")
        r = request(bb.port(), method="PUT", target="/order/1", body=b"x=1")
        self.assertEqual((r.status, r.body), (200, b"fresh"))
        self.assertEqual(up.count("PUT", "/order/1"), 2)
        self.assertEqual(circuits(bb, "svc")["retries"]["attempted"], before["retries"]["attempted"] + 1)

    def test_a_post_with_an_idempotency_key_is_resent_as_a_counted_retry(self):
        up, bb = self.start(read_then_close)
        r = request(bb.port(), method="POST", target="/order", body=b"x=1", headers={"Idempotency-Key": "k-1"})
        self.assertEqual((r.status, r.body), (200, b"fresh"))
        self.assertEqual(up.count("POST", "/order"), 2)
        self.assertEqual(circuits(bb, "svc")["retries"]["attempted"], 1)

    def test_a_resend_takes_the_retry_budget(self):
        # A budget of no retries at all: the stale-connection resend is refused and counted as such.
        up, bb = self.start(read_then_close, "retries: {budget: {ratio: 0, min_concurrent: 0}}")
        r = request(bb.port(), method="PUT", target="/order/1", body=b"x=1")
        self.assertEqual(r.status, 502)
        self.assertEqual(up.count("PUT", "/order/1"), 1)
        self.assertEqual(circuits(bb, "svc")["retries"]["budget_exhausted"], 1)

    def test_without_retries_nothing_is_resent(self):
        up, bb = self.start(read_then_close, "retries: {max_attempts: 1}")
        r = request(bb.port(), target="/item")
        self.assertEqual(r.status, 502)
        self.assertEqual(up.count("GET", "/item"), 1)
        self.assertEqual(circuits(bb, "svc")["retries"]["attempted"], 0)

    def test_an_interim_answer_proves_the_upstream_has_the_request(self):
        # After a 103 the upstream has the request: a close then is the upstream's failure (recorded as
        # a reset, retried only by the ordinary rules), not a stale pooled connection.
        def early_hints_then_close(up, conn):
            up.read_request(conn)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        up, bb = self.start(early_hints_then_close)
        out = raw_exchange(bb.port(), b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nx=1",
                           timeout=5)
        self.assertTrue(out.startswith(b"HTTP/1.1 103 "), out)  # forwarded (RFC 9110 §15.2), then the final answer
        self.assertIn(b"\r\n\r\nHTTP/1.1 502 ", out)
        self.assertEqual(up.count("POST", "/order"), 1)
        r = request(bb.port(), target="/warm")  # the pool is empty now: a fresh connection answers
        self.assertEqual(circuits(bb, "svc")["requests"]["reset"], 1)

    def test_a_post_does_not_use_a_pooled_connection_the_upstream_has_closed(self):
        # The benign race, made certain: the upstream closes the idle connection right after its answer.
        # A POST must then not be lost to it: the pool's liveness check finds the close first.
        up, bb = self.start(lambda up, conn: None)
        self.assertTrue(wait_until(lambda: up.connections >= 1))
        time.sleep(0.05)  # ordering only: the upstream's FIN is on its way back before the POST is sent
        r = request(bb.port(), method="POST", target="/order", body=b"x=1")
        self.assertEqual((r.status, r.body), (200, b"fresh"))
        self.assertEqual(up.count("POST", "/order"), 1)

    def test_a_post_the_first_upstream_may_have_is_not_failed_over(self):
        svc = self.scripted(keep_alive_then(read_then_close))
        backup = self.scripted(keep_alive_then(read_then_close))
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{svc.address}]
    routes: {{path_prefix: /}}
    fallbacks: [{{upstream: backup}}]
  backup:
    endpoints: [{backup.address}]
"""))
        self.assertEqual(request(bb.port(), target="/warm").body, b"warm")
        r = request(bb.port(), method="POST", target="/order", body=b"x=1")
        self.assertEqual(r.status, 502)
        self.assertEqual(svc.count("POST"), 1)
        self.assertEqual(backup.count("POST"), 0, "a POST the first upstream may have processed went to the failover too")

    def test_a_post_that_never_left_is_failed_over(self):
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % closed.getsockname()[1]
        closed.close()  # nothing listens there: connection refused
        backup = self.scripted(keep_alive_then(read_then_close))
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{dead}]
    routes: {{path_prefix: /}}
    fallbacks: [{{upstream: backup}}]
  backup:
    endpoints: [{backup.address}]
"""))
        r = request(bb.port(), method="POST", target="/order", body=b"x=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["x-breakerbox-fallback"], "upstream:backup")
        self.assertEqual(backup.count("POST"), 1)


CHUNKED_WITH_TRAILERS = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nSet-Cookie: s=from-trailer\r\nContent-Type: text/html\r\n\r\n")


class MessageRulesTest(ProxyTestCase):
    """Faults 2, 3 and 4: trailers, transfer codings and Host, on every path a message is parsed."""

    def start(self, handler, extra=""):
        up = self.scripted(handler)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
{extra}"""))
        return up, bb

    def test_response_trailers_never_become_header_fields(self):
        up, bb = self.start(answering(CHUNKED_WITH_TRAILERS))
        out = raw_exchange(bb.port(), b"GET /t HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"http/1.1 200"), out)
        self.assertEqual([l for l in lines if l.startswith(b"content-type:")], [b"content-type: text/plain"])
        self.assertFalse([l for l in lines if l.startswith(b"set-cookie")], out)
        # A chunked answer streams (docs/streaming.md), re-chunked: the data, then a last chunk without
        # the trailer section.
        self.assertEqual(body, b"5\r\nhello\r\n0\r\n\r\n")

    def test_a_content_length_trailer_does_not_break_a_valid_answer(self):
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 99\r\n"
               b"Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n")
        up, bb = self.start(answering(raw))
        for _ in range(2):  # the connection stays usable: a trailer "Connection: close" is not the header's
            r = request(bb.port(), target="/t")
            self.assertEqual((r.status, r.body), (200, b"hello"))
            self.assertNotIn("content-length", r.headers)  # the trailer's Content-Length is not the header's
        self.assertEqual(up.connections, 1)

    def test_request_trailers_are_not_forwarded_as_header_fields(self):
        up, bb = self.start(answering(ok_response()))
        out = raw_exchange(bb.port(), b"POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                      b"3\r\nabc\r\n0\r\nHost: evil.test\r\nX-Injected: 1\r\nContent-Length: 1\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        method, target, headers, body = up.requests[0]
        names = [k.lower() for k, _ in headers]
        self.assertEqual(body, b"abc")
        self.assertEqual(names.count("host"), 1)
        self.assertNotIn("x-injected", names)
        self.assertEqual(dict((k.lower(), v) for k, v in headers)["content-length"], "3")

    def test_a_transfer_coding_other_than_chunked_gets_501_and_nothing_is_forwarded(self):
        up, bb = self.start(answering(ok_response()))
        out = raw_exchange(bb.port(), b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                      b"3\r\n\x1f\x8b\x08\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 501"), out)
        self.assertIn(b"not_implemented", out)
        self.assertIn(b"Connection: close", out)
        self.assertEqual(up.requests, [])

    def test_faulty_transfer_codings_get_400(self):
        up, bb = self.start(answering(ok_response()))
        for te in (b"chunked, chunked", b"gzip"):
            out = raw_exchange(bb.port(), b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n")
            self.assertTrue(out.startswith(b"HTTP/1.1 400"), (te, out))
        out = raw_exchange(bb.port(), b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.0 400"), out)  # RFC 9112 6.1: faulty framing in HTTP/1.0
        self.assertEqual(up.requests, [])

    def test_an_upstream_transfer_coding_other_than_chunked_is_an_invalid_response(self):
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\n\x1f\x8b\x08\r\n0\r\n\r\n"
        up, bb = self.start(answering(raw))
        r = request(bb.port(), target="/t")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_invalid_response")

    def test_host_rules_of_rfc9112(self):
        up, bb = self.start(answering(ok_response()))
        for bad in (b"GET /x HTTP/1.1\r\nHost: public.test\r\nHost: admin.test\r\n\r\n",
                    b"GET /x HTTP/1.1\r\n\r\n",
                    b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
                    b"GET /x HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
                    b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"):
            out = raw_exchange(bb.port(), bad)
            self.assertTrue(out.startswith(b"HTTP/1.1 400"), (bad, out))
            self.assertIn(b"Connection: close", out)
        out = raw_exchange(bb.port(), b"GET /x HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host
        self.assertTrue(out.startswith(b"HTTP/1.0 200"), out)
        self.assertEqual(len(up.requests), 1)
        # the admin listener follows the same rules
        out = raw_exchange(bb.port("admin"), b"GET /live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)

    def test_two_hosts_cannot_steer_routing_and_absolute_form_replaces_host(self):
        public = self.scripted(answering(ok_response(b"public")))
        admin = self.scripted(answering(ok_response(b"admin")))
        bb = self.breakerbox(config(f"""
  public:
    endpoints: [{public.address}]
    routes: {{hosts: [public.test]}}
  admin:
    endpoints: [{admin.address}]
    routes: {{hosts: [admin.test]}}
"""))
        out = raw_exchange(bb.port(), b"GET /x HTTP/1.1\r\nHost: public.test\r\nHost: admin.test\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        out = raw_exchange(bb.port(), b"GET http://admin.test/x HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(out.endswith(b"admin"), out)
        self.assertEqual(public.requests, [])
        _, target, headers, _ = admin.requests[0]
        self.assertEqual(target, "/x")
        self.assertEqual([v for k, v in headers if k.lower() == "host"], ["admin.test"])


class ReportingTest(ProxyTestCase):
    """Faults 5 and 7: what is reported matches what happens; every request is counted somewhere."""

    def test_an_open_circuit_past_its_open_time_reports_half_open_without_traffic(self):
        up = self.scripted(answering(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n"))
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{consecutive_failures: 2, open_duration: 1500ms, open_duration_jitter: 0, failure_rate: {{enabled: false}}}}
"""))
        for _ in range(2):
            self.assertEqual(request(bb.port(), target="/x").status, 500)
        health = request(bb.port("admin"), target="/health/circuits/svc")
        self.assertEqual((health.status, health.json()["upstreams"]["svc"]["state"]), (503, "open"))
        # No traffic from here on: the report must still move once the open time is over.
        self.assertTrue(wait_until(lambda: circuits(bb, "svc")["state"] == "half_open", timeout=10))
        health = request(bb.port("admin"), target="/health/circuits/svc")
        self.assertEqual(health.json()["upstreams"]["svc"]["next_probe_in_ms"], None)
        metrics = request(bb.port("admin"), target="/metrics").body.decode()
        self.assertIn('breakerbox_circuit_state_code{upstream="svc"} 1', metrics)
        self.assertEqual(len(up.requests), 2)

    def test_a_client_that_leaves_is_counted(self):
        def hang(up, conn, index):
            up.read_request(conn)
            time.sleep(3)
        up = self.scripted(hang)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    request_timeout: 5s
"""))
        with socket.create_connection(("127.0.0.1", bb.port())) as s:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertTrue(wait_until(lambda: len(up.requests) == 1))
        self.assertTrue(wait_until(lambda: circuits(bb, "svc")["requests"]["client_gone"] == 1))
        metrics = request(bb.port("admin"), target="/metrics").body.decode()
        self.assertIn('outcome="client_gone"} 1', metrics)

    def test_invalid_or_past_retry_after_does_not_end_the_retries(self):
        for value in ("-5", "Sun, 06 Nov 1994 08:49:37 GMT", "soon"):
            def flaky(up, conn, index, value=value):
                while up.read_request(conn):
                    if len(up.requests) == 1:
                        conn.sendall(b"HTTP/1.1 503 X\r\nRetry-After: %s\r\nContent-Length: 0\r\n\r\n" % value.encode())
                    else:
                        conn.sendall(ok_response(b"second"))
            up = self.scripted(flaky)
            bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
"""))
            r = request(bb.port(), target="/x")
            self.assertEqual((r.status, r.body), (200, b"second"), value)
            self.assertEqual(circuits(bb, "svc")["retries"]["attempted"], 1, value)

    def test_expect_continue_without_a_route_is_answered_at_once(self):
        up = self.scripted(lambda up, conn, i: None)
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /svc}}
"""))
        with socket.create_connection(("127.0.0.1", bb.port()), timeout=5) as s:
            s.sendall(b"POST /nowhere HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
            first = s.recv(65536)  # the body is never sent: only an immediate final answer can arrive
            self.assertTrue(first.startswith(b"HTTP/1.1 404"), first)
            self.assertIn(b"no_route", first + s.recv(65536) if b"no_route" not in first else first)


class HostForwardingTest(ProxyTestCase):
    """host_rewrite, and what a failover target gets (fault 7): the same target path, its own Host."""

    def echo_host(self):
        def handler(up, conn, index):
            while True:
                req = up.read_request(conn)
                if not req:
                    return
                host = [v for k, v in req[2] if k.lower() == "host"]
                conn.sendall(ok_response(("%s %s" % (req[1], ",".join(host))).encode()))
        return self.scripted(handler)

    def failing(self):
        return self.scripted(answering(b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n"))

    def test_host_rewrite_and_the_failover_targets_own_host(self):
        primary_ok = self.echo_host()
        primary_bad = self.failing()
        plain_backup = self.echo_host()
        rewriting_backup = self.echo_host()
        bb = self.breakerbox(config(f"""
  ok:
    endpoints: [{primary_ok.address}]
    host_rewrite: ok.internal
    routes: {{path_prefix: /ok, strip_prefix: true}}
  pay:
    endpoints: [{primary_bad.address}]
    host_rewrite: pay.internal
    retries: {{max_attempts: 1}}
    routes: {{path_prefix: /pay, strip_prefix: true}}
    fallbacks: [{{upstream: plain}}]
  pay2:
    endpoints: [{primary_bad.address}]
    host_rewrite: pay.internal
    retries: {{max_attempts: 1}}
    routes: {{path_prefix: /pay2, strip_prefix: true}}
    fallbacks: [{{upstream: rewriting}}]
  plain:
    endpoints: [{plain_backup.address}]
  rewriting:
    endpoints: [{rewriting_backup.address}]
    host_rewrite: backup.internal
"""))
        r = request(bb.port(), target="/ok/charge", headers={"Host": "client.test"})
        self.assertEqual(r.body, b"/charge ok.internal")
        r = request(bb.port(), target="/pay/charge", headers={"Host": "client.test"})
        self.assertEqual((r.status, r.headers["x-breakerbox-fallback"]), (200, "upstream:plain"))
        self.assertEqual(r.body, b"/charge client.test")  # not the primary's pay.internal
        r = request(bb.port(), target="/pay2/charge", headers={"Host": "client.test"})
        self.assertEqual(r.body, b"/charge backup.internal")


if __name__ == "__main__":
    unittest.main()
