"""The live dashboard and the /events stream: the real binary, a real upstream, a real browser (Debian's
chromium driven by playwright-core from tests/browser, installed by scripts/setup.sh)."""
import json
import os
import socket
import subprocess
import time
import unittest

from harness import ProxyTestCase, request, wait_until, BREAKERBOX_BIN

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
TOKEN = "dash-token"


def config(up, viewers=16):
    return f"""
workers: 2
listeners:
  - name: main
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
  max_event_viewers: {viewers}
upstreams:
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{consecutive_failures: 3, open_duration: 60s}}
"""


def open_stream(port, last_event_id=None, rcvbuf=None):
    """A raw /events connection: (socket, file). Headers are read; the caller reads events."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
    return s, s.makefile("rb")


def read_head(f):
    status = f.readline().decode()
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers


def stream_status(port):
    """The status line a new /events connection gets (the connection closed again)."""
    s, f = open_stream(port)
    try:
        return read_head(f)[0]
    finally:
        f.close()
        s.close()


def read_event(f):
    """The next event as (id, name, data), skipping comments and the retry field."""
    ev = {"id": None, "event": None, "data": None}
    while True:
        line = f.readline()
        if not line:
            return None
        line = line.decode().rstrip("\n")
        if line == "":
            if ev["event"]:
                return ev["id"], ev["event"], json.loads(ev["data"])
            continue
        if line.startswith(":"):
            continue
        k, _, v = line.partition(": ")
        if k in ev:
            ev[k] = v


def read_until(f, name, limit=50):
    for _ in range(limit):
        ev = read_event(f)
        if ev is None or ev[1] == name:
            return ev
    return None


class EventStreamTest(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc")
        self.bb = self.breakerbox(config(self.up, viewers=3))
        self.admin = self.bb.port("admin")

    def post(self, path, token=TOKEN):
        return request(self.admin, method="POST", target=path, headers={"Authorization": "Bearer " + token})

    def test_snapshot_then_a_transition_as_it_happens_then_samples(self):
        s, f = open_stream(self.admin)
        status, headers = read_head(f)
        self.assertIn("200", status)
        self.assertEqual(headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(headers["cache-control"], "no-store")
        _, name, snap = read_event(f)
        self.assertEqual(name, "snapshot")
        self.assertEqual(snap["health"]["upstreams"]["svc"]["state"], "closed")
        started = time.monotonic()
        for _ in range(3):
            request(self.bb.port(), target="/x?status=500")
        ev = read_until(f, "transition")
        self.assertLess(time.monotonic() - started, 1.0)  # pushed as it happens, not at the next sample
        eid, _, data = ev
        self.assertEqual((data["upstream"], data["from"], data["to"]), ("svc", "closed", "open"))
        self.assertIn("3 consecutive failures", data["reason"])
        self.assertGreater(int(eid), 0)
        _, _, sample = read_until(f, "sample")
        svc = sample["upstreams"][0]
        self.assertEqual(svc["upstream"], "svc")
        self.assertIn(svc["state"], ("open", "half_open"))
        self.assertIn("3 consecutive failures", svc["reason"])
        f.close()
        s.close()

    def test_operator_actions_and_reloads_are_events_and_last_event_id_resumes(self):
        s, f = open_stream(self.admin)
        read_head(f)
        read_event(f)  # snapshot
        self.assertEqual(self.post("/admin/circuits/svc/force-open").status, 200)
        eid1, name, data = read_until(f, "operator")
        self.assertEqual((data["action"], data["upstream"]), ("force-open", "svc"))
        self.assertEqual(self.post("/admin/reload").status, 200)
        read_until(f, "reload")
        f.close()
        s.close()
        self.assertEqual(self.post("/admin/circuits/svc/reset").status, 200)  # while nobody watches
        # A reconnecting client says what it saw last and gets what came after, still kept.
        s, f = open_stream(self.admin, last_event_id=eid1)
        read_head(f)
        _, name, snap = read_event(f)
        self.assertEqual(name, "snapshot")
        self.assertFalse(snap["events_lost"])
        kinds = [e["event"] for e in snap["events"]]
        self.assertIn("operator", kinds)
        replayed = []
        for _ in range(6):
            ev = read_event(f)
            if ev[1] == "sample":
                break
            replayed.append((ev[1], ev[2].get("action")))
        self.assertIn(("reload", None), replayed)
        self.assertIn(("operator", "reset"), replayed)
        self.assertNotIn(("operator", "force-open"), replayed)  # it had seen that one
        f.close()
        s.close()

    def test_a_stream_outlives_the_request_read_deadline(self):
        # The admin listener gives a request 30 s to arrive; a stream that has begun is not under it.
        s, f = open_stream(self.admin)
        read_head(f)
        read_event(f)  # snapshot
        started = time.monotonic()
        samples = 0
        while time.monotonic() - started < 33:
            ev = read_event(f)
            self.assertIsNotNone(ev, "the stream ended after %.1f s" % (time.monotonic() - started))
            samples += ev[1] == "sample"
        self.assertGreaterEqual(samples, 30)
        f.close()
        s.close()

    def test_viewer_limit(self):
        streams = [open_stream(self.admin) for _ in range(3)]
        for s, f in streams:
            read_head(f)
        s, f = open_stream(self.admin)
        status, _ = read_head(f)
        self.assertIn("503", status)
        self.assertIn(b"too_many_viewers", f.read())
        f.close()
        s.close()
        # A viewer that leaves frees its place at once (not at its next heartbeat, 15 s away).
        streams[0][1].close()
        streams[0][0].close()
        self.assertTrue(wait_until(lambda: "200" in stream_status(self.admin), timeout=5))
        for s, f in streams[1:]:
            f.close()
            s.close()

    def test_a_viewer_that_does_not_read_is_dropped_and_the_proxy_goes_on(self):
        s, f = open_stream(self.admin, rcvbuf=4096)
        read_head(f)
        # Lots of events (operator actions with long reasons), never read: its buffer fills and it is dropped.
        for i in range(6000):
            self.post("/admin/circuits/svc/force-open" if i % 2 else "/admin/circuits/svc/reset")
            if self.bb.log_entries("event viewer dropped: it does not read fast enough", timeout=0):
                break
        self.assertTrue(self.bb.log_entries("event viewer dropped: it does not read fast enough", at_least=1))
        self.post("/admin/circuits/svc/reset")
        self.assertEqual(request(self.bb.port(), target="/ok").status, 200)
        scrape = request(self.admin, target="/metrics").body.decode()
        self.assertIn("breakerbox_admin_event_viewers_dropped_total 1", scrape)
        self.assertTrue(wait_until(lambda: "breakerbox_admin_event_viewers 0" in request(self.admin, target="/metrics").body.decode()))
        f.close()
        s.close()


class DashboardTest(ProxyTestCase):
    def test_the_page_in_a_real_browser(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(up))
        page = request(bb.port("admin"), target="/dashboard")
        self.assertEqual(page.status, 200)
        csp = page.headers["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("connect-src 'self'", csp)
        shots = os.environ.get("BREAKERBOX_SCREENSHOT_DIR",
                               os.path.join(os.path.dirname(os.path.abspath(BREAKERBOX_BIN)), "screenshots"))
        os.makedirs(shots, exist_ok=True)
        run = subprocess.run(["node", os.path.join(BROWSER_DIR, "dashboard_check.mjs"), str(bb.port("admin")),
                              str(bb.port()), TOKEN, shots], capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR)
        self.assertEqual(run.returncode, 0, run.stderr)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result["console_errors"], [])
        # After the token steps only the refused token's 401 (the browser reports every non-2xx answer).
        self.assertTrue(all("401" in e for e in result["console_errors_after_token"]), result["console_errors_after_token"])
        self.assertEqual(result["external_requests"], [])
        self.assertFalse(result["buttons_visible_without_token"])
        self.assertGreaterEqual(result["threshold_marks"], 1)  # the failure-rate threshold on its bar
        self.assertLess(result["open_shown_after_ms"], 2000)
        self.assertTrue(result["timeline_mentions_trip"])
        self.assertIn("5xx 3", result["failure_kinds"])
        self.assertFalse(result["buttons_visible_with_wrong_token"])
        self.assertEqual(result["direct_post_without_token"], 401)
        self.assertTrue(result["forced_open"])
        self.assertTrue(result["timeline_mentions_operator"])
        self.assertTrue(result["timeline_items_in_utc"], result["timeline_items"])
        self.assertFalse(any("undefined" in t for t in result["timeline_items"]), result["timeline_items"])
        self.assertEqual(result["decided_by_text"], "decided by operator")
        self.assertEqual(result["focus_after_redraws"], "svc/reset")  # keyboard focus kept across updates
        self.assertLessEqual(result["phone_scroll_width"], 375)      # no horizontal scroll at phone width
        self.assertEqual(request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]["state"],
                         "forced_open")
        for name in ("dashboard-closed.png", "dashboard-open.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 10000)


if __name__ == "__main__":
    unittest.main()
