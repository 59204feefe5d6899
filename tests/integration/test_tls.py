"""HTTPS upstreams: breakerbox originates TLS with verification on by default — chain and name — SNI,
mutual TLS, pooled and resumed sessions, the three TLS failure reasons (never a retry for a verification
failure), rotation by reload, the verify-off warning, and what /health/circuits and /metrics say. The
certificates are made at run time with the `openssl` command (tls_pki.py); the upstream is the real test
upstream in TLS mode."""
import os
import shutil
import signal
import ssl
import subprocess
import socket
import tempfile
import threading
import time
import unittest

from harness import (ProxyTestCase, request, wait_until, ok_response, BREAKERBOX_BIN, PROMTOOL)
import tls_pki

PKI_DIR = None
PKI = None


def setUpModule():
    global PKI_DIR, PKI
    PKI_DIR = tempfile.TemporaryDirectory(prefix="breakerbox-pki-")
    PKI = tls_pki.make_pki(PKI_DIR.name)


def tearDownModule():
    PKI_DIR.cleanup()


def config(upstream_address, tls="", extra="", workers=1):
    return f"""
workers: {workers}
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0", token: t0ken}}
upstreams:
  pay:
    endpoints: ["{upstream_address}"]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 2, backoff_base: 1ms, backoff_max: 1ms}}
    tls:
{tls}{extra}"""


def trusted(ca=None, name="localhost", more=""):
    return f"      ca_file: {ca or PKI['ca']}\n      server_name: {name}\n{more}"


class TlsUpstreamTest(ProxyTestCase):
    def tls_upstream(self, cert="server", **more):
        cert_path, key_path = PKI[cert]
        return self.upstream("pay", tls=dict(cert=cert_path, key=key_path, **more))

    def metric(self, bb, needle):
        text = request(bb.port("admin"), target="/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith(needle + " "):
                return float(line.split()[-1])
        return None

    def test_requests_go_over_verified_tls_with_sni_and_alpn(self):
        up = self.tls_upstream()
        bb = self.breakerbox(config(up.address, trusted()))
        r = request(bb.port(), target="/hello")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["target"], "/hello")
        post = request(bb.port(), method="POST", target="/orders", body=b'{"n": 1}' * 1000)
        self.assertEqual(post.status, 200)
        self.assertEqual(post.json()["body_bytes"], 8000)
        tls = up.stats()["tls"]
        self.assertEqual(tls["sni"], {"localhost": 1})  # the name, not the endpoint's IP
        self.assertEqual(tls["alpn"], {"http/1.1": 1})
        self.assertEqual(sum(tls["protocols"].values()), 1)  # one pooled connection carried both
        health = request(bb.port("admin"), target="/health/circuits").json()["upstreams"]["pay"]["tls"]
        self.assertTrue(health["verify"])
        self.assertEqual(health["server_name"], "localhost")
        self.assertEqual(health["peers"][0]["verified_name"], "localhost")
        self.assertGreater(health["peers"][0]["expires_in_seconds"], 3600)
        self.assertEqual(health["handshakes"]["full"], 1)
        expiry = self.metric(bb, 'breakerbox_upstream_tls_certificate_expiry_seconds{upstream="pay"}')
        self.assertTrue(expiry is not None and 3600 < expiry <= 86400, expiry)
        self.assertEqual(self.metric(bb, 'breakerbox_upstream_tls_handshakes_total{upstream="pay",result="full"}'), 1)
        scrape = request(bb.port("admin"), target="/metrics").body
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape, capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_an_ip_endpoint_is_verified_by_ip_when_no_name_is_given(self):
        up = self.tls_upstream()
        bb = self.breakerbox(config(up.address, f"      ca_file: {PKI['ca']}\n"))
        self.assertEqual(request(bb.port(), target="/").status, 200)
        self.assertEqual(up.stats()["tls"]["sni"], {"": 1})  # no SNI for an IP literal (RFC 6066 §3)

    def test_a_handshake_that_never_completes_is_bounded_by_connect_timeout(self):
        def hold_the_hello(upstream, conn, index):
            conn.recv(4096)
            conn.settimeout(5)
            try:
                conn.recv(1)  # never answers; the proxy gives up first
            except OSError:
                pass
        silent = self.scripted(hold_the_hello)
        bb = self.breakerbox(config(silent.address, trusted(), "    connect_timeout: 200ms\n"))
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 504)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_connect_timeout")
        self.assertEqual(self.metric(bb, 'breakerbox_upstream_tls_handshakes_total{upstream="pay",result="timeout"}'), 2)

    def test_min_version_refuses_an_older_server(self):
        up = self.tls_upstream(max_version="1.2")
        bb = self.breakerbox(config(up.address, trusted(more="      min_version: \"1.3\"\n")))
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_handshake_failed")
        ok = self.breakerbox(config(up.address, trusted()))
        self.assertEqual(request(ok.port(), target="/").status, 200)
        self.assertEqual(up.stats()["tls"]["protocols"], {"TLSv1.2": 1})

    def test_a_failover_target_uses_its_own_tls(self):
        down = self.tls_upstream("wrong_name")  # the primary: refused by verification
        backup = self.tls_upstream()
        text = config(down.address, trusted(),
                      "    fallbacks:\n      - upstream: backup\n"
                      f"  backup:\n    endpoints: [\"{backup.address}\"]\n    routes: {{hosts: [backup]}}\n"
                      f"    tls: {{ca_file: {PKI['ca']}, server_name: localhost}}\n")
        bb = self.breakerbox(text)
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers["x-breakerbox-fallback"], "upstream:backup")
        self.assertEqual(backup.stats()["tls"]["sni"], {"localhost": 1})

    def test_certificates_that_fail_verification_are_refused_counted_and_never_retried(self):
        cases = [("wrong_name", "hostname mismatch"), ("unknown_ca", "unable to get local issuer"),
                 ("expired", "expired"),
                 ("cn_only", "hostname mismatch")]  # the name only in the subject's CN is not the name
        for cert, why in cases:
            with self.subTest(cert):
                up = self.tls_upstream(cert)
                bb = self.breakerbox(config(up.address, trusted()))
                r = request(bb.port(), target="/")
                self.assertEqual(r.status, 502)
                self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_verify_failed")
                self.assertIn(why, r.json()["detail"])
                self.assertEqual(up.stats()["tls"]["failed"], 1)  # max_attempts 2, yet one handshake: deterministic
                self.assertEqual(up.stats()["requests"], 0)
                self.assertEqual(self.metric(bb, 'breakerbox_upstream_requests_total{upstream="pay",outcome="tls_verify_failed"}'), 1)
                self.assertEqual(self.metric(bb, 'breakerbox_upstream_tls_handshakes_total{upstream="pay",result="verify_failed"}'), 1)
                bb.stop()
                up.stop()

    def test_mutual_tls_with_and_without_a_client_certificate(self):
        client_cert, client_key = PKI["client"]
        for version in ("1.3", "1.2"):
            with self.subTest(version):
                up = self.tls_upstream(client_ca=PKI["ca"], max_version=version if version == "1.2" else None,
                                       admin_client=PKI["client"])
                without = self.breakerbox(config(up.address, trusted()))
                r = request(without.port(), target="/")
                self.assertEqual(r.status, 502)
                self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_handshake_failed", r.body)
                self.assertEqual(up.stats()["requests"], 0)
                with_cert = self.breakerbox(config(up.address, trusted(more=f"      client_certificate: {client_cert}\n"
                                                                          f"      client_key: {client_key}\n")))
                self.assertEqual(request(with_cert.port(), target="/").status, 200)
                self.assertEqual(up.stats()["tls"]["client_subjects"], {"breakerbox client": 1})
                for p in (without, with_cert, up):
                    p.stop()

    def tls13_refusing_server(self):
        """A TLS 1.3 server that requires a client certificate we do not send and closes at once after the
        failed handshake; its port."""
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        server_ctx.load_cert_chain(*PKI["server"])
        server_ctx.load_verify_locations(PKI["ca"])
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.2)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.settimeout(5)
                try:
                    server_ctx.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass
                finally:
                    conn.close()  # closed at once after the failed handshake

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        self.addCleanup(lambda: (stop.set(), thread.join(5), listener.close()))
        return listener.getsockname()[1]

    def test_a_tls13_refusal_of_our_certificate_is_a_handshake_failure_not_a_reset(self):
        # Issue 30 §4: in TLS 1.3 the server judges the client's certificate after the client's side of
        # the handshake is done; a server that then closes the socket made the first write fail with a
        # reset (2–26 of 40 answers were upstream_reset). Every answer must read the alert.
        port = self.tls13_refusing_server()
        bb = self.breakerbox(f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:0"}}]
upstreams:
  pay:
    endpoints: ["127.0.0.1:{port}"]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{consecutive_failures: 1000, failure_rate: {{enabled: false}}}}
    tls:
{trusted()}""")
        # A request of many TLS records: the server's close (after its alert) resets the connection while
        # the request is still being written, so the write fails first — every time, not by chance.
        body = b"x" * (512 * 1024)
        errors = [request(bb.port(), method="POST", target="/x%d" % i, body=body).headers.get("x-breakerbox-error")
                  for i in range(20)]
        errors += [request(bb.port(), target="/y%d" % i).headers.get("x-breakerbox-error") for i in range(20)]
        self.assertEqual(errors, ["upstream_tls_handshake_failed"] * 40)

    def test_the_active_prober_reads_a_tls13_refusal_as_a_handshake_failure(self):
        # The prober's own exchange (background/active_prober) meets the same TLS 1.3 refusal: each probe
        # is classified as the request path classifies it, upstream_tls_handshake_failed, never a reset.
        port = self.tls13_refusing_server()
        bb = self.breakerbox(f"""
workers: 1
logging: {{level: debug}}
listeners: [{{name: main, address: "127.0.0.1:0"}}]
upstreams:
  pay:
    endpoints: ["127.0.0.1:{port}"]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{consecutive_failures: 1, open_duration: 50ms, open_duration_multiplier: 1, open_duration_jitter: 0,
                      half_open: {{probe: {{path: /healthz}}}}}}
    tls:
{trusted()}""")
        self.assertEqual(request(bb.port(), target="/").headers.get("x-breakerbox-error"), "upstream_tls_handshake_failed")
        # Many probes: the reset that hid the alert came by chance (the server's close racing our read).
        probes = bb.log_entries("active probe", at_least=30, timeout=20)
        self.assertGreaterEqual(len(probes), 30)
        self.assertEqual({p["error"] for p in probes}, {"upstream_tls_handshake_failed"}, probes)
        self.assertEqual({p["outcome"] for p in probes}, {"failure"})

    def test_new_connections_resume_the_session(self):
        up = self.tls_upstream()
        bb = self.breakerbox(config(up.address, trusted(), "    pool: {max_idle_per_endpoint: 0}\n"))
        for _ in range(3):
            self.assertEqual(request(bb.port(), target="/").status, 200)
        tls = up.stats()["tls"]
        self.assertEqual((tls["full"], tls["resumed"]), (1, 2))  # a connection per request, one full handshake
        self.assertEqual(self.metric(bb, 'breakerbox_upstream_tls_handshakes_total{upstream="pay",result="resumed"}'), 2)

        no_reuse = self.breakerbox(config(up.address, trusted(more="      session_reuse: false\n"),
                                          "    pool: {max_idle_per_endpoint: 0}\n"))
        up.reset()
        for _ in range(2):
            self.assertEqual(request(no_reuse.port(), target="/").status, 200)
        self.assertEqual((up.stats()["tls"]["full"], up.stats()["tls"]["resumed"]), (2, 0))

    def test_a_pooled_tls_connection_the_upstream_dropped_loses_nothing(self):
        # The upstream closes idle connections with a bare FIN (no close_notify: many servers do).
        up = self.tls_upstream(idle_timeout_ms=200)
        bb = self.breakerbox(config(up.address, trusted()))
        self.assertEqual(request(bb.port(), target="/first").status, 200)
        wait_until(lambda: up.stats()["open_connections"] <= 1, timeout=5)  # (the /__stats request's own)
        # Both a request that may be resent and one that must not be get their answer on a new connection.
        self.assertEqual(request(bb.port(), method="POST", target="/once", body=b"x").status, 200)
        self.assertEqual(request(bb.port(), target="/again").status, 200)
        self.assertEqual(up.stats()["requests"], 3)

    def test_a_plain_http_endpoint_fails_the_handshake(self):
        def answer_in_plain_http(upstream, conn, index):
            conn.recv(4096)  # the ClientHello, which a plain HTTP server takes for a bad request
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        plain = self.scripted(answer_in_plain_http)
        bb = self.breakerbox(config(plain.address, trusted()))
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_handshake_failed")
        self.assertIn("plain HTTP", r.json()["detail"])

    def test_a_close_during_the_handshake_is_a_tls_reset(self):
        def close_after_hello(upstream, conn, index):
            conn.recv(4096)  # the ClientHello
        scripted = self.scripted(close_after_hello)
        bb = self.breakerbox(config(scripted.address, trusted()))
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_reset")
        self.assertEqual(scripted.connections, 2)  # a connect-class failure: retried once (retry_on connect_failure)

    def test_client_certificates_rotate_on_reload_and_broken_material_is_rejected(self):
        workdir = tempfile.mkdtemp(prefix="breakerbox-rotate-")
        self.addCleanup(shutil.rmtree, workdir)
        cert, key = os.path.join(workdir, "client.pem"), os.path.join(workdir, "client.key")
        shutil.copy(PKI["client"][0], cert)
        shutil.copy(PKI["client"][1], key)
        up = self.tls_upstream(client_ca=PKI["ca"], admin_client=PKI["client"])
        bb = self.breakerbox(config(up.address, trusted(more=f"      client_certificate: {cert}\n      client_key: {key}\n"),
                                    "    pool: {max_idle_per_endpoint: 0}\n"))
        self.assertEqual(request(bb.port(), target="/").status, 200)
        shutil.copy(PKI["client2"][0], cert)
        shutil.copy(PKI["client2"][1], key)
        r = request(bb.port("admin"), method="POST", target="/admin/reload", headers={"Authorization": "Bearer t0ken"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(request(bb.port(), target="/").status, 200)
        self.assertEqual(up.stats()["tls"]["client_subjects"], {"breakerbox client": 1, "breakerbox client 2": 1})

        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
        r = request(bb.port("admin"), method="POST", target="/admin/reload", headers={"Authorization": "Bearer t0ken"})
        self.assertEqual(r.status, 422)
        self.assertTrue(any("upstreams.pay.tls.client_key" in e for e in r.json()["errors"]), r.json())
        self.assertEqual(request(bb.port(), target="/").status, 200)  # the previous material keeps serving

    def test_verify_off_is_spelled_out_warned_at_start_and_on_reload(self):
        up = self.tls_upstream("wrong_name")
        bb = self.breakerbox(config(up.address, "      verify: false\n"))
        self.assertEqual(request(bb.port(), target="/").status, 200)
        warning = "TLS verification is off: the upstream's certificate and name are not checked"
        self.assertEqual(len(bb.log_entries(warning, at_least=1)), 1)
        bb.signal(signal.SIGHUP)
        self.assertTrue(bb.log_entries("configuration reloaded", at_least=1))
        self.assertEqual(len(bb.log_entries(warning, at_least=2)), 2)
        self.assertFalse(request(bb.port("admin"), target="/health/circuits").json()["upstreams"]["pay"]["tls"]["verify"])

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*PKI["server"])
        return ctx

    def test_verify_off_does_not_turn_other_handshake_failures_into_verification_failures(self):
        up = self.tls_upstream(client_ca=PKI["ca"], max_version="1.2", admin_client=PKI["client"])
        bb = self.breakerbox(config(up.address, "      verify: false\n"))
        r = request(bb.port(), target="/")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_tls_handshake_failed", r.body)

    def test_a_deadline_during_a_tls_read_ends_the_request(self):
        ctx = self.server_context()

        def answer_nothing(upstream, conn, index):
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)  # the request
                time.sleep(3)    # and no answer
        silent = self.scripted(answer_nothing)
        bb = self.breakerbox(config(silent.address, trusted(), "    request_timeout: 300ms\n"))
        r = request(bb.port(), target="/", timeout=10)
        # 504 upstream_timeout: the deadline ended it (the upstream's own close, 3 s later, would be a 502)
        self.assertEqual(r.status, 504)
        self.assertEqual(r.headers["x-breakerbox-error"], "upstream_timeout")

    def test_a_pooled_tls_connection_closed_with_close_notify_is_not_reused(self):
        ctx = self.server_context()

        def one_answer_then_close_notify(upstream, conn, index):
            with ctx.wrap_socket(conn, server_side=True) as tls:
                upstream.read_request(tls)
                tls.sendall(ok_response(b"first" if index == 0 else b"again"))
                if index == 0:
                    time.sleep(0.2)
                    tls.unwrap().close()  # close_notify, as a well-behaved server closes an idle connection
                else:
                    time.sleep(1)
        scripted = self.scripted(one_answer_then_close_notify)
        bb = self.breakerbox(config(scripted.address, trusted()))
        self.assertEqual(request(bb.port(), target="/").body, b"first")
        time.sleep(0.5)
        r = request(bb.port(), method="POST", target="/once", body=b"x")  # must not be sent twice: always peeked
        self.assertEqual((r.status, r.body), (200, b"again"))
        self.assertEqual(scripted.connections, 2)
        self.assertEqual(scripted.count("POST"), 1)

    def test_unreadable_material_refuses_to_start_with_file_line_and_key(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config("127.0.0.1:9", "      ca_file: /nonexistent/ca.pem\n"))
        self.addCleanup(os.unlink, f.name)
        check = subprocess.run([BREAKERBOX_BIN, "--check-config", f.name], capture_output=True, text=True, timeout=10)
        self.assertEqual(check.returncode, 1)
        self.assertRegex(check.stdout + check.stderr, r"\.yaml:\d+:\d+: upstreams\.pay\.tls\.ca_file: cannot read /nonexistent/ca\.pem")

    def test_no_trust_source_refuses_to_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config("127.0.0.1:9", "      server_name: localhost\n"))
        self.addCleanup(os.unlink, f.name)
        env = dict(os.environ, SSL_CERT_FILE="/nonexistent/bundle.pem")
        check = subprocess.run([BREAKERBOX_BIN, "--check-config", f.name], capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(check.returncode, 1)
        self.assertIn("upstreams.pay.tls: no trust source", check.stdout + check.stderr)

    def test_the_active_prober_uses_the_upstreams_tls(self):
        up = self.tls_upstream()
        probe = ("    circuit_breaker: {consecutive_failures: 1, open_duration: 200ms, half_open: {probe: {path: /healthz}}}\n")
        bb = self.breakerbox(config(up.address, trusted(), probe))
        up.configure("status=500")
        self.assertEqual(request(bb.port(), target="/").status, 500)
        health = lambda: request(bb.port("admin"), target="/health/circuits").json()["upstreams"]["pay"]["state"]
        self.assertIn(health(), ("open", "half_open"))  # the prober may be probing the still failing upstream
        up.configure("status=200")
        self.assertTrue(wait_until(lambda: health() == "closed", timeout=10))
        self.assertGreaterEqual(up.stats()["paths"].get("/healthz", 0), 1)


if __name__ == "__main__":
    unittest.main()


class TlsStreamingTest(ProxyTestCase):
    """Streamed bodies and tunnels over an HTTPS upstream (docs/streaming.md): the relay reads through TLS,
    an upload writes through it, and a WebSocket's tunnel runs both directions through it."""

    def test_streams_uploads_and_websocket_through_tls(self):
        from test_streaming import Raw, WebSocket, upload, sse_events, OP_TEXT  # the streaming module's clients
        cert_path, key_path = PKI["server"]
        up = self.upstream("pay", tls=dict(cert=cert_path, key=key_path))
        bb = self.breakerbox(config(up.address, trusted()))
        # a chunked body of 8 MiB, decoded and re-chunked, every byte
        c = Raw(bb.port(), timeout=10)
        try:
            c.send(b"GET /big?bytes=8388608&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            _, status, headers = c.head()
            self.assertEqual((status, headers.get("transfer-encoding")), (200, "chunked"))
            self.assertEqual(sum(len(p) for p in c.chunks()), 8 << 20)
            # the connection carries the next request: a length above the buffer, relayed as bytes
            c.send(b"GET /big?bytes=3000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            _, status, headers = c.head()
            self.assertEqual((status, headers.get("content-length")), (200, "3000000"))
            got = 0
            while got < 3000000:
                d = c.f.read1(65536)
                self.assertTrue(d, "the body ended early")
                got += len(d)
            # and server-sent events, each as it comes
            c.send(b"GET /sse?stream=sse&events=3&interval_ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            _, status, headers = c.head()
            self.assertEqual(headers.get("content-type"), "text/event-stream")
            events, rest = sse_events(b"".join(c.chunks()))
            self.assertEqual([e["id"] for e in events], ["0", "1", "2"])
        finally:
            c.close()
        # an upload longer than the replay buffer, written through TLS as it arrives
        r = upload(bb.port(), "/__sink", 5 << 20, chunked=False)
        self.assertEqual((r.status, r.json()["body_bytes"]), (200, 5 << 20))
        r = upload(bb.port(), "/__sink", 3 << 20, chunked=True)
        self.assertEqual((r.status, r.json()["body_bytes"]), (200, 3 << 20))
        # a WebSocket: the tunnel's upstream side is the TLS session
        ws = WebSocket(bb.port(), target="/chat", host="x")
        try:
            self.assertEqual(ws.status, 101)
            for text in (b"one", b"two" * 30000):
                ws.send(text)
                self.assertEqual(ws.recv(), (OP_TEXT, text))
        finally:
            ws.close()
        self.assertEqual(up.stats()["websockets"], 1)
