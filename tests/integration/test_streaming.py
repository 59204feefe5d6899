"""Streaming, end to end with the real binary: large bodies relayed piece by piece in bounded memory
(downloads, uploads, a slow client), streamed answers forwarded as they arrive (SSE, NDJSON,
X-Accel-Buffering), an upstream that breaks mid-stream, retries only before a streamed request is
committed, WebSocket tunnels (handshake, echo, stripped upgrades, idle and total timeouts, drain on
SIGTERM, max_tunnels, close_tunnels_on_open), max_streams, the bulkhead slot given back at the head,
the hard body limits, HTTP/1.0 and HEAD, the stale cache of a streamed answer, /metrics through
promtool, and the configuration errors of the new keys.

Every wait is bounded (socket timeouts, wait_until); memory is read from /proc/<pid>/status (VmHWM,
the peak resident set since start), so a relay that buffered a 100 MiB body would show it."""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import sample, sanitized_binary, ProxyTestCase, request, read_response, raw_exchange, wait_until, PROMTOOL, BREAKERBOX_BIN

TOKEN = "t0ken"
MIB = 1024 * 1024
BIG = 100 * MIB  # 104857600
PIECE = 64 * 1024
RSS_BOUND_KIB = 64 * 1024  # breakerbox's peak RSS must stay under 64 MiB whatever the body length
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def config(upstreams, limits="", listeners="", workers=1, defaults=""):
    return f"""
workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:0
{listeners}
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
limits:
  drain_timeout: 5s
{limits}
defaults:
  connect_timeout: 500ms
{defaults}
upstreams:
{upstreams}
"""


def one_upstream(up, extra="", name="svc"):
    """An upstream block routed at /, with `extra` lines (4-space indented) added."""
    return f"""
  {name}:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
{extra}"""


# --- observation helpers ---------------------------------------------------------------------------

def vm_hwm_kib(pid):
    """The process's peak resident set size so far, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


def scrape(bb):
    r = request(bb.port("admin"), target="/metrics")
    assert r.status == 200, r.status
    return r.body.decode()


def metric(bb, name, **labels):
    return sample(scrape(bb), name, **labels)


def health(bb, upstream="svc"):
    return request(bb.port("admin"), target=f"/health/circuits/{upstream}").json()["upstreams"][upstream]


def admin_post(bb, path):
    return request(bb.port("admin"), method="POST", target=path, headers={"Authorization": "Bearer " + TOKEN})


def realtime_us():
    return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000


# --- raw HTTP on a socket --------------------------------------------------------------------------

class Raw:
    """One client connection read through a buffered reader: a response head, then its body as the
    test chooses (Content-Length, chunked piece by piece, or until the connection ends)."""

    def __init__(self, port, timeout=5, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.f = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def head(self):
        """(version, status, headers with lowercase names); raises when the connection ends first."""
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed before a response head")
        version, status = line.decode().split(" ", 2)[:2]
        headers = {}
        while True:
            h = self.f.readline().decode()
            if h in ("\r\n", "\n", ""):
                break
            k, v = h.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return version, int(status), headers

    def body(self, headers):
        """A whole Content-Length body (small ones only)."""
        return self.f.read(int(headers.get("content-length", "0")))

    def chunks(self):
        """Yields the data of each chunk as it arrives; returns normally only after the terminating
        zero chunk (a connection that ends first raises ConnectionError)."""
        while True:
            size_line = self.f.readline()
            if not size_line:
                raise ConnectionError("the chunked body ended without its terminating chunk")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    t = self.f.readline()
                    if t in (b"\r\n", b""):
                        return
            data = self.f.read(size)
            if len(data) < size:
                raise ConnectionError("the connection ended inside a chunk")
            if self.f.readline() != b"\r\n":
                raise ValueError("a chunk without its CRLF")
            yield data

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()


def count_body(resp, piece=PIECE, pause=0.0):
    """Counts an http.client response's body bytes without keeping them."""
    n = 0
    while True:
        d = resp.read(piece)
        if not d:
            return n
        n += len(d)
        if pause:
            time.sleep(pause)


def upload(port, target, total, chunked, timeout=30):
    """Sends a body of `total` bytes from one 64 KiB piece (never the whole body in memory), with
    Content-Length or chunked; returns the response (read_response). A server may answer early (413)
    and close while the body is still coming: then the sending stops and the answer is read."""
    piece = b"u" * PIECE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
        s.sendall(b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n%s\r\n\r\n"
                  % (target.encode(), framing))
        try:
            left = total
            while left:
                n = min(left, PIECE)
                if chunked:
                    s.sendall(b"%x\r\n" % n + piece[:n] + b"\r\n")
                else:
                    s.sendall(piece[:n])
                left -= n
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before the whole body was sent
        return read_response(s, timeout=timeout)


def sse_events(data):
    """Splits SSE text into complete events (each a dict of its fields) and the incomplete rest."""
    events = []
    while b"\n\n" in data:
        raw, data = data.split(b"\n\n", 1)
        fields = {}
        for line in raw.decode().split("\n"):
            k, _, v = line.partition(": ")
            fields[k] = v
        events.append(fields)
    return events, data


# --- a minimal WebSocket client (RFC 6455) ---------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def ws_accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def mask_bytes(data, mask):
    if not data:
        return b""
    m = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(len(data), "big")


def ws_frame(opcode, payload, fin=True):
    """A client frame: always masked (RFC 6455 §5.3)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + mask_bytes(payload, mask)


class WebSocket:
    """The client side of an upgraded connection through breakerbox."""

    def __init__(self, port, target="/chat", host="ws.example", timeout=5, extra_headers=""):
        self.raw = Raw(port, timeout=timeout)
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.raw.send((f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n").encode())
        self.version, self.status, self.headers = self.raw.head()
        self.body = b"" if self.status == 101 else self.raw.body(self.headers)

    def json(self):
        return json.loads(self.body)

    def send(self, payload, opcode=OP_TEXT):
        self.raw.send(ws_frame(opcode, payload))

    def recv_frame(self):
        f = self.raw.f
        h = f.read(2)
        if len(h) < 2:
            raise ConnectionError("the connection ended before a frame")
        fin, opcode, masked, n = h[0] & 0x80, h[0] & 0x0F, h[1] & 0x80, h[1] & 0x7F
        if masked:
            raise AssertionError("a frame from the server must not be masked")
        if n == 126:
            n = struct.unpack("!H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", f.read(8))[0]
        payload = f.read(n)
        if len(payload) < n:
            raise ConnectionError("the connection ended inside a frame")
        return bool(fin), opcode, payload

    def recv(self):
        """One whole message (continuation frames joined; pings answered): (opcode, payload)."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.recv_frame()
            if op == OP_PING:
                self.send(payload, OP_PONG)
                continue
            if op in (OP_PONG,):
                continue
            if op == OP_CLOSE:
                return op, payload
            if opcode is None:
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def close(self, wait=True):
        """The closing handshake (1000), then waits for the end of the connection."""
        try:
            self.send(struct.pack("!H", 1000), OP_CLOSE)
            if wait:
                while True:
                    op, _ = self.recv()
                    if op == OP_CLOSE:
                        break
                self.raw.sock.recv(1)  # the server closes after the handshake
        except (OSError, ConnectionError):
            pass
        finally:
            self.raw.close()

    def ended(self):
        """True when the connection ends (EOF or reset) before the socket timeout; frames read on the
        way (a close frame) are skipped."""
        try:
            while True:
                d = self.raw.f.read1(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


SANITIZED = sanitized_binary()


class StreamingCase(ProxyTestCase):
    def assert_rss_bounded(self, bb, what):
        # A sanitizer's runtime keeps freed memory in quarantine and adds shadow memory: RSS measures it,
        # not breakerbox. The Release suite checks the bound; the sanitized suites check the rest.
        if SANITIZED:
            return
        hwm = vm_hwm_kib(bb.proc.pid)
        self.assertLess(hwm, RSS_BOUND_KIB, f"{what}: breakerbox's peak RSS was {hwm} KiB")


# --- 1. large bodies in bounded memory -------------------------------------------------------------

class LargeBodyTest(StreamingCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc", threads=2)
        self.bb = self.breakerbox(config(one_upstream(self.up)))

    def download(self, target):
        conn = http.client.HTTPConnection("127.0.0.1", self.bb.port(), timeout=10)
        try:
            conn.request("GET", target)
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            headers = {k.lower(): v for k, v in r.getheaders()}
            return headers, count_body(r)
        finally:
            conn.close()

    def test_100mib_download_with_content_length(self):
        headers, n = self.download(f"/big?bytes={BIG}")
        self.assertEqual(headers.get("content-length"), str(BIG))  # the length is kept
        self.assertNotIn("transfer-encoding", headers)
        self.assertEqual(n, BIG)
        self.assert_rss_bounded(self.bb, "100 MiB download (Content-Length)")
        self.assertEqual(metric(self.bb, "breakerbox_streams_total", upstream="svc", end="completed"), 1)

    def test_100mib_download_chunked(self):
        headers, n = self.download(f"/big?bytes={BIG}&chunked=1")
        self.assertEqual(headers.get("transfer-encoding", "").lower(), "chunked")
        self.assertNotIn("content-length", headers)
        self.assertEqual(n, BIG)
        self.assert_rss_bounded(self.bb, "100 MiB chunked download")
        self.assertEqual(metric(self.bb, "breakerbox_streams_total", upstream="svc", end="completed"), 1)

    def test_100mib_upload_with_content_length(self):
        r = upload(self.bb.port(), "/__sink", BIG, chunked=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_bytes"], BIG)
        self.assertEqual(r.json()["headers"].get("Content-Length"), str(BIG))  # the same length upstream
        self.assertEqual(self.up.stats()["last_sink_bytes"], BIG)
        self.assert_rss_bounded(self.bb, "100 MiB upload (Content-Length)")

    def test_100mib_chunked_upload(self):
        r = upload(self.bb.port(), "/__sink", BIG, chunked=True)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_bytes"], BIG)
        self.assertEqual(r.json()["headers"].get("Transfer-Encoding", "").lower(), "chunked")  # longer than request_buffer
        self.assertEqual(self.up.stats()["last_sink_bytes"], BIG)
        self.assert_rss_bounded(self.bb, "100 MiB chunked upload")

    def partial_upload(self, total, sent_first, chunked):
        """Sends the head and `sent_first` body bytes of a `total`-byte PUT to /__sink; returns the socket
        (the caller sends the rest with send_body)."""
        s = socket.create_connection(("127.0.0.1", self.bb.port()), timeout=10)
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
        s.sendall(b"PUT /__sink HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % framing)
        self.send_body(s, sent_first, chunked)
        return s

    @staticmethod
    def send_body(s, n, chunked, last=False):
        piece = b"p" * PIECE
        while n:
            k = min(n, PIECE)
            s.sendall(b"%x\r\n" % k + piece[:k] + b"\r\n" if chunked else piece[:k])
            n -= k
        if chunked and last:
            s.sendall(b"0\r\n\r\n")

    def test_an_upload_longer_than_the_replay_buffer_streams_from_its_first_byte(self):
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                self.up.reset()
                # 2 MiB of 3 MiB sent: beyond request_buffer (1 MiB), so the upstream is already reading
                # while the client has not finished.
                s = self.partial_upload(3 * MIB, 2 * MIB, chunked)
                try:
                    self.assertTrue(wait_until(lambda: self.up.stats()["sink_bytes"] > 0, timeout=5),
                                    "the upstream got nothing before the client's body was complete")
                    self.send_body(s, MIB, chunked, last=True)
                    r = read_response(s, timeout=10)
                finally:
                    s.close()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["body_bytes"], 3 * MIB)
                self.assertEqual(self.up.stats()["last_sink_bytes"], 3 * MIB)

    def test_an_upload_within_the_replay_buffer_is_read_whole_first(self):
        s = self.partial_upload(512 * 1024, 256 * 1024, chunked=False)
        try:
            time.sleep(0.5)  # room for a wrong early forward (not a timing assertion: nothing may arrive)
            self.assertEqual(self.up.stats()["requests"], 0, "a body that fits the replay buffer was forwarded early")
            self.assertEqual(self.up.stats()["sink_bytes"], 0)
            self.send_body(s, 256 * 1024, chunked=False)
            r = read_response(s, timeout=10)
        finally:
            s.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_bytes"], 512 * 1024)

    def test_a_short_chunked_upload_is_buffered_and_sent_with_content_length(self):
        # Within request_buffer a chunked body is read whole (replayable) and re-framed.
        r = upload(self.bb.port(), "/__sink", 100000, chunked=True)
        self.assertEqual(r.json()["body_bytes"], 100000)
        self.assertEqual(r.json()["headers"].get("Content-Length"), "100000")
        self.assertNotIn("Transfer-Encoding", r.json()["headers"])


# --- 2. streamed answers are forwarded as they arrive ----------------------------------------------

class ForwardedAsTheyArriveTest(StreamingCase):
    INTERVAL_MS = 400
    PIECES = 5

    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc", threads=2)
        self.bb = self.breakerbox(config(one_upstream(self.up)))

    def test_sse_events_arrive_one_by_one(self):
        c = Raw(self.bb.port())
        try:
            c.send(b"GET /events?stream=sse&events=5&interval_ms=%d HTTP/1.1\r\nHost: x\r\n\r\n" % self.INTERVAL_MS)
            version, status, headers = c.head()
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/event-stream"))
            self.assertEqual(headers.get("transfer-encoding", "").lower(), "chunked")
            self.assertNotIn("content-length", headers)
            chunks = c.chunks()
            data, events = b"", []
            while not events:
                data += next(chunks)
                events, data = sse_events(data)
            first_received_us = realtime_us()
            for piece in chunks:  # the rest, to the terminating chunk
                data += piece
            more, rest = sse_events(data)
            events += more
        finally:
            c.close()
        self.assertEqual(rest, b"")
        self.assertEqual([e["id"] for e in events], ["0", "1", "2", "3", "4"])
        payloads = [json.loads(e["data"]) for e in events]
        self.assertEqual([p["seq"] for p in payloads], [0, 1, 2, 3, 4])
        # Causal order: event 0 reached this client before the upstream even made event 4.
        self.assertLess(first_received_us, payloads[4]["sent_us"],
                        "event 0 was held back until the stream had (nearly) ended")

    def first_piece_before_last_made(self, target, expect_chunked):
        """Requests a paced body of PIECES pieces INTERVAL_MS apart; returns (headers, body length,
        when the first byte came, the earliest moment the upstream can have made its last piece)."""
        c = Raw(self.bb.port())
        try:
            sent_us = realtime_us()
            c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
            version, status, headers = c.head()
            self.assertEqual(status, 200)
            if expect_chunked:
                self.assertEqual(headers.get("transfer-encoding", "").lower(), "chunked")
                chunks = c.chunks()
                first = next(chunks)
                first_us = realtime_us()
                total = len(first) + sum(len(p) for p in chunks)
            else:
                length = int(headers["content-length"])
                first = c.f.read1(length)
                first_us = realtime_us()
                total = len(first)
                while total < length:
                    d = c.f.read1(length - total)
                    if not d:
                        break
                    total += len(d)
            # The upstream waits at least INTERVAL_MS before each piece after the first.
            last_made_us = sent_us + (self.PIECES - 1) * self.INTERVAL_MS * 1000
            return headers, total, first_us, last_made_us
        finally:
            c.close()

    def test_ndjson_feed_streams_chunked(self):
        headers, total, first_us, last_made_us = self.first_piece_before_last_made(
            f"/feed?stream=chunks&chunks={self.PIECES}&chunk_bytes=16&interval_ms={self.INTERVAL_MS}"
            "&content_type=application/x-ndjson", expect_chunked=True)
        self.assertEqual(headers["content-type"], "application/x-ndjson")
        self.assertEqual(total, self.PIECES * 16)
        self.assertLess(first_us, last_made_us, "the first piece was held back")

    def test_ndjson_feed_with_a_small_content_length_streams_by_its_type(self):
        # 80 bytes with Content-Length would be buffered whole; the type alone makes it stream.
        headers, total, first_us, last_made_us = self.first_piece_before_last_made(
            f"/feed?stream=length&chunks={self.PIECES}&chunk_bytes=16&interval_ms={self.INTERVAL_MS}"
            "&content_type=application/x-ndjson", expect_chunked=False)
        self.assertEqual(headers["content-length"], str(self.PIECES * 16))  # the known length is kept
        self.assertEqual(total, self.PIECES * 16)
        self.assertLess(first_us, last_made_us, "the first piece was held back")

    def test_x_accel_buffering_no_on_a_chunked_octet_stream(self):
        headers, total, first_us, last_made_us = self.first_piece_before_last_made(
            f"/bin?stream=chunks&chunks={self.PIECES}&chunk_bytes=100&interval_ms={self.INTERVAL_MS}"
            "&header=X-Accel-Buffering:no", expect_chunked=True)
        self.assertEqual(total, self.PIECES * 100)
        self.assertLess(first_us, last_made_us, "the first piece was held back")

    def test_x_accel_buffering_no_with_a_small_content_length_streams(self):
        headers, total, first_us, last_made_us = self.first_piece_before_last_made(
            f"/bin?stream=length&chunks={self.PIECES}&chunk_bytes=100&interval_ms={self.INTERVAL_MS}"
            "&header=X-Accel-Buffering:no", expect_chunked=False)
        self.assertEqual(headers["content-length"], str(self.PIECES * 100))
        self.assertEqual(total, self.PIECES * 100)
        self.assertLess(first_us, last_made_us, "the first piece was held back")

    def test_a_small_octet_stream_with_content_length_is_buffered_whole(self):
        # The control: same paced body, no streaming type nor header: read whole before it is sent on,
        # so its first byte cannot come before the upstream made the last piece.
        headers, total, first_us, last_made_us = self.first_piece_before_last_made(
            f"/bin?stream=length&chunks={self.PIECES}&chunk_bytes=100&interval_ms={self.INTERVAL_MS}",
            expect_chunked=False)
        self.assertEqual(total, self.PIECES * 100)
        self.assertGreaterEqual(first_us, last_made_us, "a small Content-Length body was not buffered")


# --- 3. a slow client ------------------------------------------------------------------------------

class SlowClientTest(StreamingCase):
    def test_a_slow_reader_of_100mib_holds_breakerbox_memory_bounded(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up)))
        conn = http.client.HTTPConnection("127.0.0.1", bb.port(), timeout=10)
        conn.sock = socket.socket()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        conn.sock.settimeout(10)
        conn.sock.connect(("127.0.0.1", bb.port()))
        try:
            conn.request("GET", f"/big?bytes={BIG}&chunked=1")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            n = count_body(r, pause=0.002)  # 64 KiB, then 2 ms: about 30 MB/s, ten times slower than the upstream
        finally:
            conn.close()
        self.assertEqual(n, BIG)
        self.assert_rss_bounded(bb, "100 MiB to a slow reader")


    def test_a_slow_upstream_reader_of_a_100mib_upload_holds_breakerbox_memory_bounded(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up)))
        r = upload(bb.port(), "/__sink?read_delay_ms=1", BIG, chunked=False, timeout=60)  # 64 KiB per ms at most
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_bytes"], BIG)
        self.assert_rss_bounded(bb, "100 MiB to a slow upstream reader")


# --- 4. an upstream that breaks mid-stream ---------------------------------------------------------

class BrokenStreamTest(StreamingCase):
    def test_a_broken_stream_is_truncated_for_the_client_and_counts_as_a_failure(self):
        up = self.upstream("svc")
        # The head of each is recorded as a success, its broken body as one more failure: the window sees
        # success, failure, success, failure — 2 failures in 4 calls is 50%.
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    circuit_breaker:
      consecutive_failures: 0
      failure_rate: {threshold: 50, window: count, window_size: 4, minimum_calls: 4}
      open_duration: 60s
""")))
        for i in range(2):
            c = Raw(bb.port())
            got, ending = 0, None
            try:
                c.send(b"GET /s%d?stream=chunks&chunks=20&chunk_bytes=16&interval_ms=20&die_after=5 HTTP/1.1\r\n"
                       b"Host: x\r\n\r\n" % i)
                version, status, headers = c.head()
                self.assertEqual(status, 200)  # the head was a success
                self.assertEqual(headers.get("transfer-encoding", "").lower(), "chunked")
                try:
                    for piece in c.chunks():
                        got += len(piece)
                    ending = "complete"
                except ConnectionResetError:
                    ending = "reset"
                except ConnectionError:
                    ending = "truncated"
            finally:
                c.close()
            self.assertIn(ending, ("reset", "truncated"), "a broken upstream body looked complete")
            self.assertEqual(ending, "reset", "the client's connection was closed, not aborted (TCP reset)")
            self.assertLessEqual(got, 5 * 16)
            if i == 0:
                self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc",
                                                          end="upstream_failed") == 1, timeout=5))
                self.assertTrue(wait_until(lambda: health(bb)["window"]["calls"] == 2, timeout=5), health(bb)["window"])
                h = health(bb)
                self.assertEqual((h["window"]["calls"], h["window"]["failures"]), (2, 1))  # head success + body failure
                self.assertEqual(h["state"], "closed")
                self.assertEqual(h["requests"]["success"], 1)
        self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc",
                                                  end="upstream_failed") == 2, timeout=5))
        # Every head was a 200, yet the two broken bodies were failures: the circuit is open.
        self.assertTrue(wait_until(lambda: health(bb)["state"] == "open", timeout=5), health(bb))
        self.assertEqual(health(bb)["window"]["failures"], 2)
        r = request(bb.port(), target="/after")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers["x-breakerbox-error"], "circuit_open")


    def test_broken_streams_with_good_heads_trip_consecutive_failures(self):
        # A stream's good head does not end a run of consecutive failures until its body completes
        # (circuit_breaker::on_stream_head): two broken bodies in a row are two consecutive failures.
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    circuit_breaker:
      consecutive_failures: 2
      failure_rate: {enabled: false}
      open_duration: 60s
""")))
        for i in range(2):
            self.assertEqual(health(bb)["state"], "closed")
            c = Raw(bb.port())
            try:
                c.send(b"GET /c%d?stream=chunks&chunks=20&chunk_bytes=16&interval_ms=20&die_after=3 HTTP/1.1\r\n"
                       b"Host: x\r\n\r\n" % i)
                self.assertEqual(c.head()[1], 200)
                with self.assertRaises(ConnectionError):
                    for _ in c.chunks():
                        pass
            finally:
                c.close()
            self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc",
                                                      end="upstream_failed") == i + 1, timeout=5))
        self.assertTrue(wait_until(lambda: health(bb)["state"] == "open", timeout=5), health(bb))
        # and a stream that completes ends the run: a fresh breakerbox, broken, whole, broken stays closed
        bb2 = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    circuit_breaker:
      consecutive_failures: 2
      failure_rate: {enabled: false}
""")))
        for die in (b"&die_after=3", b"", b"&die_after=3"):
            c = Raw(bb2.port())
            try:
                c.send(b"GET /d?stream=chunks&chunks=5&chunk_bytes=16&interval_ms=10" + die + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                c.head()
                try:
                    for _ in c.chunks():
                        pass
                except ConnectionError:
                    pass
            finally:
                c.close()
        self.assertTrue(wait_until(lambda: metric(bb2, "breakerbox_streams_total", upstream="svc",
                                                  end="upstream_failed") == 2, timeout=5))
        self.assertEqual(health(bb2)["state"], "closed")


class ReviewRegressionTest(StreamingCase):
    """Faults a review found in the first version of streaming, each as it would show on the wire."""

    def test_a_streamed_failure_answer_keeps_its_body_when_no_fallback_replaces_it(self):
        # A chunked 500 with a body: before, the body was dropped (the client got the 500 with nothing).
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up, "    retries: {max_attempts: 1}\n")))
        c = Raw(bb.port())
        try:
            c.send(b"GET /e?status=500&bytes=3000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            _, status, headers = c.head()
            self.assertEqual(status, 500)
            self.assertEqual(headers.get("transfer-encoding"), "chunked")
            self.assertEqual(sum(len(p) for p in c.chunks()), 3000)
        finally:
            c.close()

    def test_an_upstream_that_answers_an_upload_early_is_heard(self):
        # The upstream refuses the upload after its head (413) and closes without reading the body: the
        # client gets the upstream's 413, not a 502, and the breaker does not count a reset.
        def refuse_early(upstream, conn, index):
            f = conn.makefile("rb")
            while f.readline() not in (b"\r\n", b""):
                pass
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.3)
        up = self.scripted(refuse_early)
        bb = self.breakerbox(config(one_upstream(up, "    retries: {max_attempts: 1}\n")))
        r = upload(bb.port(), "/up", 8 << 20, chunked=False)
        self.assertEqual((r.status, r.body), (413, b"too big!"))
        self.assertEqual(health(bb)["requests"]["reset"], 0)

    def test_a_101_to_another_protocol_is_refused(self):
        def switch_to_h2c(upstream, conn, index):
            upstream.read_request(conn)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
            time.sleep(0.5)
        up = self.scripted(switch_to_h2c)
        bb = self.breakerbox(config(one_upstream(up, "    retries: {max_attempts: 1}\n")))
        c = Raw(bb.port())
        try:
            c.send(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            _, status, headers = c.head()
            self.assertEqual(status, 502)
            self.assertEqual(headers.get("x-breakerbox-error"), "upstream_invalid_response")
        finally:
            c.close()
        # only the first protocol the client offered was forwarded
        self.assertTrue(wait_until(lambda: up.requests, timeout=5))
        upgrade = [v for k, v in up.requests[0][2] if k.lower() == "upgrade"]
        self.assertEqual(upgrade, ["websocket"])


class StreamOutcomeTest(StreamingCase):
    def test_a_long_stream_is_judged_by_its_head_not_its_length(self):
        # Each stream lasts about 600 ms, far beyond the 100 ms slow-call duration, but its head came at
        # once: the outcome is recorded at the head, so none is slow and the circuit stays closed.
        up = self.upstream("svc", threads=2)
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    circuit_breaker:
      consecutive_failures: 0
      failure_rate: {window: count, window_size: 10, minimum_calls: 2}
      slow_calls: {duration: 100ms, rate_threshold: 50}
      open_duration: 60s
""")))
        for i in range(3):
            r = request(bb.port(), target=f"/s{i}?stream=sse&events=4&interval_ms=200")
            self.assertEqual(r.status, 200)
            self.assertEqual(len(sse_events(r.body)[0]), 4)
        h = health(bb)
        self.assertEqual(h["state"], "closed")
        self.assertEqual((h["window"]["calls"], h["window"]["slow"], h["window"]["failures"]), (3, 0, 0))
        # The control: a slow head is a slow call.
        self.assertEqual(request(bb.port(), target="/slow?delay_ms=300").status, 200)
        self.assertEqual(health(bb)["window"]["slow"], 1)


# --- 5. retries before commit, never after ---------------------------------------------------------

class RetryAndCommitTest(StreamingCase):
    def test_a_small_put_is_retried_a_committed_one_is_not(self):
        bad = self.upstream("bad", defaults="fault=reset")  # reads the whole request, then resets
        good = self.upstream("good")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{bad.address}, {good.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{enabled: false}}
    outlier_detection: {{enabled: false}}
    retries: {{max_attempts: 2, retry_on: [reset, connect_failure], methods: [PUT], backoff_base: 1ms, backoff_max: 2ms}}
""", limits="  request_buffer: 1MiB\n"))
        # A 1 KiB PUT fits the replay buffer: reset at `bad`, resent to `good`.
        small = None
        for i in range(2):  # round robin: within two requests one meets `bad` first
            small = request(bb.port(), method="PUT", target=f"/small{i}", body=b"s" * 1024)
            self.assertEqual(small.status, 200)
            self.assertEqual(small.json()["server"], "good")
            self.assertEqual(small.json()["body_bytes"], 1024)
            if bad.stats()["requests"]:
                break
        self.assertEqual(bad.stats()["requests"], 1)
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="attempted"), 1)
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="abandoned"), 0)
        # A 3 MiB PUT streams; `bad` reads all of it, then resets: committed, so no retry.
        big = None
        for i in range(2):
            bad_before = bad.stats()["requests"]
            big = upload(bb.port(), f"/big{i}", 3 * MIB, chunked=False)
            if bad.stats()["requests"] > bad_before:
                break
            self.assertEqual(big.status, 200)  # it went to `good` first: the next one meets `bad`
        self.assertEqual(big.status, 502)
        self.assertEqual(big.json()["error"], "upstream_reset")
        self.assertEqual(good.stats()["paths"].get(f"/big{i}", 0), 0, "the committed request was sent again")
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="abandoned"), 1)
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="attempted"), 1)

    def test_failover_to_another_upstream_only_before_commit(self):
        primary = self.upstream("primary", defaults="fault=reset")  # reads the whole request, then resets
        backup = self.upstream("backup")
        bb = self.breakerbox(config(f"""
  primary:
    endpoints: [{primary.address}]
    routes: {{path_prefix: /}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {{enabled: false}}
    fallbacks:
      - when: [upstream_error]
        upstream: backup
  backup:
    endpoints: [{backup.address}]
"""))
        small = upload(bb.port(), "/small", 4096, chunked=False)
        self.assertEqual(small.status, 200)
        self.assertEqual(small.json()["server"], "backup")
        self.assertEqual(small.json()["body_bytes"], 4096)
        self.assertEqual(small.headers["x-breakerbox-fallback"], "upstream:backup")
        big = upload(bb.port(), "/big", 3 * MIB, chunked=False)
        self.assertEqual(big.status, 502)
        self.assertEqual(big.json()["error"], "upstream_reset")
        self.assertNotIn("x-breakerbox-fallback", big.headers)
        self.assertEqual(backup.stats()["requests"], 1, "the committed request was sent to the failover upstream")
        self.assertEqual(primary.stats()["requests"], 2)

    def test_a_chunked_put_within_the_buffer_is_retried(self):
        bad = self.upstream("bad", defaults="fault=reset")
        good = self.upstream("good")
        bb = self.breakerbox(config(f"""
  svc:
    endpoints: [{bad.address}, {good.address}]
    routes: {{path_prefix: /}}
    circuit_breaker: {{enabled: false}}
    outlier_detection: {{enabled: false}}
    retries: {{max_attempts: 2, retry_on: [reset], methods: [PUT], backoff_base: 1ms, backoff_max: 2ms}}
"""))
        for i in range(2):  # round robin: at least one meets `bad` first
            r = upload(bb.port(), f"/c{i}", 200000, chunked=True)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["server"], "good")
            self.assertEqual(r.json()["body_bytes"], 200000)
            self.assertEqual(good.stats()["paths"].get(f"/c{i}"), 1)
        tried_bad = bad.stats()["requests"]
        self.assertGreaterEqual(tried_bad, 1)
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="attempted"), tried_bad)
        self.assertEqual(metric(bb, "breakerbox_retries_total", upstream="svc", result="abandoned"), 0)


# --- 6-9. WebSocket tunnels ------------------------------------------------------------------------

class WebSocketTest(StreamingCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("ws", threads=2)
        self.plain = self.upstream("plain")
        self.bb = self.breakerbox(config(f"""
  ws:
    endpoints: [{self.up.address}]
    routes: {{path_prefix: /ws, strip_prefix: true}}
  plain:
    endpoints: [{self.plain.address}]
    routes: {{path_prefix: /plain}}
    streaming: {{upgrades: []}}
""", listeners="""  - name: ws-local
    address: 127.0.0.1:0
    upstream: ws
"""))

    def echo_session(self, ws):
        self.assertEqual(ws.status, 101, ws.body)
        self.assertEqual(ws.headers.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", ws.headers.get("connection", "").lower())
        self.assertEqual(ws.headers.get("sec-websocket-accept"), ws_accept_for(ws.key))
        for payload in (b"hello", "h\u00e9llo \u2603".encode(), b"m" * 300, b"L" * 70000):
            ws.send(payload)
            self.assertEqual(ws.recv(), (OP_TEXT, payload))
        ws.send(bytes(range(256)), OP_BINARY)
        self.assertEqual(ws.recv(), (OP_BINARY, bytes(range(256))))
        ws.close()

    def test_echo_through_a_dedicated_listener(self):
        self.echo_session(WebSocket(self.bb.port("ws-local"), target="/chat"))
        self.assertEqual(self.up.stats()["paths"].get("/chat"), 1)
        h = health(self.bb, "ws")
        self.assertEqual(h["requests"]["success"], 1)  # the upgrade was one breaker call, a success
        self.assertEqual((h["window"]["calls"], h["window"]["failures"]), (1, 0))

    def test_echo_through_a_path_prefix_route(self):
        self.echo_session(WebSocket(self.bb.port(), target="/ws/room/1"))
        self.assertEqual(self.up.stats()["paths"].get("/room/1"), 1)  # the prefix was stripped
        self.assertTrue(wait_until(lambda: self.up.stats()["websockets_open"] == 0, timeout=5))
        self.assertEqual(self.up.stats()["websockets"], 1)
        # One tunnel, ended (the metric and /health/circuits agree).
        self.assertTrue(wait_until(lambda: sum(health(self.bb, "ws")["streaming"]["tunnels"]["ended"].values()) == 1,
                                   timeout=5), health(self.bb, "ws")["streaming"])
        self.assertEqual(health(self.bb, "ws")["streaming"]["tunnels"]["active"], 0)
        self.assertEqual(health(self.bb, "ws")["streaming"]["tunnels"]["ended"]["completed"], 1)  # a closing handshake
        text = scrape(self.bb)
        self.assertEqual(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                             if l.startswith('breakerbox_tunnels_total{upstream="ws"')), 1)

    def test_the_upstream_closing_ends_the_tunnel(self):
        ws = WebSocket(self.bb.port(), target="/ws/chat?ws_close_after_ms=300")
        try:
            self.assertEqual(ws.status, 101)
            ws.send(b"hi")
            self.assertEqual(ws.recv(), (OP_TEXT, b"hi"))
            op, payload = ws.recv()  # the upstream's close frame, passed through
            self.assertEqual(op, OP_CLOSE)
            self.assertEqual(struct.unpack("!H", payload[:2])[0], 1000)
            ws.send(payload[:2], OP_CLOSE)  # the closing handshake's answer
            self.assertTrue(ws.ended(), "the tunnel stayed open after the upstream closed")
        finally:
            ws.raw.close()
        self.assertTrue(wait_until(lambda: health(self.bb, "ws")["streaming"]["tunnels"]["active"] == 0, timeout=5))
        self.assertEqual(sum(health(self.bb, "ws")["streaming"]["tunnels"]["ended"].values()), 1)

    def test_an_upgrade_not_allowed_is_stripped_and_sent_as_a_plain_request(self):
        ws = WebSocket(self.bb.port(), target="/plain/chat")
        try:
            self.assertEqual(ws.status, 200)  # the upstream answered a plain request: no 101
            echo = ws.json()
            names = {k.lower() for k in echo["headers"]}
            self.assertNotIn("upgrade", names)
            self.assertNotIn("upgrade", echo["headers"].get("Connection", "").lower())
            self.assertNotIn("upgrade", ws.headers)
            self.assertEqual(self.plain.stats()["websockets"], 0)
        finally:
            ws.raw.close()

    def test_a_refused_upgrade_passes_the_upstream_answer(self):
        ws = WebSocket(self.bb.port(), target="/ws/chat?ws_status=403")
        try:
            self.assertEqual(ws.status, 403)
            self.assertEqual(ws.json()["server"], "ws")
            self.assertEqual(self.up.stats()["websockets"], 0)
        finally:
            ws.raw.close()


class TunnelTimeoutTest(StreamingCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("ws")
        self.bb = self.breakerbox(config(one_upstream(self.up, "    streaming: {idle_timeout: 300ms}\n")))

    def test_an_idle_tunnel_is_closed(self):
        ws = WebSocket(self.bb.port(), timeout=5)
        try:
            self.assertEqual(ws.status, 101)
            ws.send(b"one")
            self.assertEqual(ws.recv(), (OP_TEXT, b"one"))
            self.assertTrue(ws.ended(), "an idle tunnel was still open after the 5 s socket timeout")
        finally:
            ws.raw.close()
        self.assertTrue(wait_until(lambda: metric(self.bb, "breakerbox_tunnels_total", upstream="svc",
                                                  end="idle_timeout") == 1, timeout=5))

    def test_an_active_tunnel_is_not_closed(self):
        ws = WebSocket(self.bb.port(), timeout=5)
        try:
            self.assertEqual(ws.status, 101)
            for i in range(10):  # a frame every 100 ms for a second: never 300 ms without a byte
                ws.send(b"tick %d" % i)
                self.assertEqual(ws.recv(), (OP_TEXT, b"tick %d" % i))
                time.sleep(0.1)
        finally:
            ws.close()
        self.assertEqual(metric(self.bb, "breakerbox_tunnels_total", upstream="svc", end="idle_timeout"), 0)


class DrainTunnelTest(StreamingCase):
    def test_sigterm_lets_open_tunnels_run_until_the_drain_timeout(self):
        up = self.upstream("ws")
        bb = self.breakerbox(config(one_upstream(up), limits="  drain_timeout: 3s\n").replace(
            "  drain_timeout: 5s\n", ""))
        port = bb.port()
        ws = WebSocket(port, timeout=10)
        try:
            self.assertEqual(ws.status, 101)
            ws.send(b"before")
            self.assertEqual(ws.recv(), (OP_TEXT, b"before"))
            bb.signal(signal.SIGTERM)
            # The listener closes: new connections are refused.
            def refused():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return False
                except OSError:
                    return True
            self.assertTrue(wait_until(refused, timeout=5), "breakerbox still accepted connections")
            # The open tunnel still works after the signal.
            for i in range(3):
                ws.send(b"after %d" % i)
                self.assertEqual(ws.recv(), (OP_TEXT, b"after %d" % i))
            self.assertIsNone(bb.proc.poll(), "breakerbox exited while a tunnel was open within the drain timeout")
            status = bb.wait(timeout=10)  # it exits by itself at the drain timeout
            self.assertEqual(status, 0, "\n".join(map(str, bb.log_entries())))
            self.assertTrue(bb.log_entries("breakerbox stopped", at_least=1))
            self.assertTrue(ws.ended(), "the tunnel was left open after breakerbox exited")
        finally:
            ws.raw.close()

    def test_sigterm_lets_open_streams_run_until_the_drain_timeout(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up), limits="  drain_timeout: 2s\n").replace(
            "  drain_timeout: 5s\n", ""))
        c = Raw(bb.port(), timeout=10)
        events = []
        try:
            c.send(b"GET /forever?stream=sse&events=0&interval_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.head()[1], 200)
            chunks = c.chunks()
            data = b""
            while len(events) < 2:
                data += next(chunks)
                more, data = sse_events(data)
                events += more
            bb.signal(signal.SIGTERM)
            self.assertTrue(bb.log_entries("draining", at_least=1), "no 'draining' log line")
            before = len(events)
            with self.assertRaises(ConnectionError):  # ended by the drain timeout: truncated, never complete
                for piece in chunks:
                    data += piece
                    more, data = sse_events(data)
                    events += more
        finally:
            c.close()
        self.assertGreater(len(events), before + 2, "the stream did not go on after SIGTERM")
        self.assertEqual([int(e["id"]) for e in events], list(range(len(events))))
        self.assertEqual(bb.wait(timeout=10), 0)

    def test_an_upgrade_arriving_while_draining_is_refused(self):
        # A client whose request head is half sent when SIGTERM arrives finishes it while breakerbox
        # drains (an open tunnel keeps the drain going): the upgrade is refused, 503 upgrade_refused.
        up = self.upstream("ws")
        bb = self.breakerbox(config(one_upstream(up), limits="  drain_timeout: 3s\n").replace(
            "  drain_timeout: 5s\n", ""))
        tunnel = WebSocket(bb.port(), timeout=10)
        late = Raw(bb.port(), timeout=10)
        try:
            self.assertEqual(tunnel.status, 101)
            late.send(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
            self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_downstream_connections_active") == 2, timeout=5))
            bb.signal(signal.SIGTERM)
            self.assertTrue(bb.log_entries("draining", at_least=1), "no 'draining' log line")
            late.send(b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            version, status, headers = late.head()
            body = json.loads(late.body(headers))
            self.assertEqual(status, 503)
            self.assertEqual(body["error"], "upgrade_refused")
            self.assertEqual(headers.get("x-breakerbox-error"), "upgrade_refused")
            self.assertEqual(up.stats()["websockets"], 1)  # only the tunnel opened before the signal
            tunnel.send(b"still")
            self.assertEqual(tunnel.recv(), (OP_TEXT, b"still"))
        finally:
            late.close()
            tunnel.raw.close()
        self.assertEqual(bb.wait(timeout=10), 0)


class LimitTest(StreamingCase):
    def test_max_tunnels(self):
        up = self.upstream("ws", threads=2)
        bb = self.breakerbox(config(one_upstream(up, "    streaming: {max_tunnels: 1}\n")))
        first = WebSocket(bb.port())
        try:
            self.assertEqual(first.status, 101)
            second = WebSocket(bb.port())
            second.raw.close()
            self.assertEqual(second.status, 503)
            self.assertEqual(second.json()["error"], "tunnel_limit")
            self.assertEqual(second.headers.get("x-breakerbox-error"), "tunnel_limit")
            self.assertEqual(metric(bb, "breakerbox_rejections_total", upstream="svc", reason="tunnel_limit"), 1)
            first.send(b"still here")
            self.assertEqual(first.recv(), (OP_TEXT, b"still here"))
        finally:
            first.close()
        self.assertTrue(wait_until(lambda: health(bb)["streaming"]["tunnels"]["active"] == 0, timeout=5),
                        health(bb).get("streaming"))
        third = WebSocket(bb.port())
        try:
            self.assertEqual(third.status, 101)
            third.send(b"again")
            self.assertEqual(third.recv(), (OP_TEXT, b"again"))
        finally:
            third.close()
        self.assertEqual(metric(bb, "breakerbox_rejections_total", upstream="svc", reason="tunnel_limit"), 1)

    def test_max_streams(self):
        up = self.upstream("svc", threads=2)
        bb = self.breakerbox(config(one_upstream(up, "    streaming: {max_streams: 1}\n")))
        sse = Raw(bb.port())
        try:
            sse.send(b"GET /forever?stream=sse&events=0&interval_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(sse.head()[1], 200)
            next(sse.chunks())
            second = request(bb.port(), target="/second?stream=sse&events=2&interval_ms=10")
            self.assertEqual(second.status, 503)
            self.assertEqual(second.json()["error"], "stream_limit")
            self.assertEqual(metric(bb, "breakerbox_rejections_total", upstream="svc", reason="stream_limit"), 1)
            buffered = request(bb.port(), target="/small?bytes=1000")  # a buffered answer needs no stream place
            self.assertEqual(buffered.status, 200)
            self.assertEqual(len(buffered.body), 1000)
            self.assertEqual(request(bb.port(), target="/echo").status, 200)
            # An upload longer than the replay buffer is a stream too.
            with socket.create_connection(("127.0.0.1", bb.port()), timeout=5) as s:
                s.sendall(b"PUT /__sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 * MIB))
                r = read_response(s)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["error"], "stream_limit")
            self.assertEqual(metric(bb, "breakerbox_rejections_total", upstream="svc", reason="stream_limit"), 2)
            self.assertEqual(up.stats()["sink_bytes"], 0)
        finally:
            sse.close()
        # The stream's place is given back when its client leaves (an end of its own).
        self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc", end="client_closed") == 1,
                                   timeout=10))
        self.assertTrue(wait_until(lambda: request(bb.port(), target="/third?stream=sse&events=2&interval_ms=10").status == 200,
                                   timeout=10))


# --- 10. streams hold no bulkhead slot -------------------------------------------------------------

class BulkheadTest(StreamingCase):
    def test_streams_release_the_bulkhead_slot_at_the_head(self):
        up = self.upstream("svc", threads=2)
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    bulkhead: {max_concurrent: 1, max_queue: 0}
""")))
        # The control: a slow buffered request holds the one slot, a second is refused.
        slow = []
        t = threading.Thread(target=lambda: slow.append(request(bb.port(), target="/slow?delay_ms=800")))
        t.start()
        self.assertTrue(wait_until(lambda: up.stats()["in_flight"] == 1, timeout=5))
        self.assertEqual(request(bb.port(), target="/refused").status, 503)
        t.join(timeout=10)
        self.assertEqual(slow[0].status, 200)
        # Two SSE streams at once: the second starts while the first is in the middle of its events.
        a, b = Raw(bb.port()), Raw(bb.port())
        try:
            a.send(b"GET /a?stream=sse&events=6&interval_ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(a.head()[1], 200)
            a_chunks = a.chunks()
            a_data = next(a_chunks)
            b.send(b"GET /b?stream=sse&events=3&interval_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(b.head()[1], 200)
            b_events, rest = sse_events(b"".join(b.chunks()))
            self.assertEqual([e["id"] for e in b_events], ["0", "1", "2"])
            a_events, rest = sse_events(a_data + b"".join(a_chunks))
            self.assertEqual([e["id"] for e in a_events], ["0", "1", "2", "3", "4", "5"])
        finally:
            a.close()
            b.close()
        # Two tunnels at once, through the same one-slot bulkhead.
        one, two = WebSocket(bb.port()), WebSocket(bb.port())
        try:
            self.assertEqual((one.status, two.status), (101, 101))
            for ws in (one, two, one):
                ws.send(b"both")
                self.assertEqual(ws.recv(), (OP_TEXT, b"both"))
            self.assertEqual(request(bb.port(), target="/buffered").status, 200)  # and the slot is free
        finally:
            one.close()
            two.close()
        self.assertEqual(metric(bb, "breakerbox_rejections_total", upstream="svc", reason="bulkhead_full"), 1)


# --- 11. HTTP/1.0 and HEAD -------------------------------------------------------------------------

class FramingTest(StreamingCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc")
        self.bb = self.breakerbox(config(one_upstream(self.up)))

    def test_http10_client_of_a_chunked_stream_gets_a_close_delimited_body(self):
        out = raw_exchange(self.bb.port(), b"GET /s?stream=chunks&chunks=5&chunk_bytes=1000&interval_ms=20 HTTP/1.0\r\n\r\n",
                           timeout=5)
        head, sep, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        lower = head.lower()
        self.assertNotIn(b"transfer-encoding", lower)
        self.assertNotIn(b"content-length", lower)
        self.assertEqual(body, b"x" * 5000)  # and the connection was closed after it (raw_exchange returned)

    def test_http10_client_of_a_large_chunked_body(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=10) as s:
            s.sendall(b"GET /big?bytes=%d&chunked=1 HTTP/1.0\r\n\r\n" % (20 * MIB))
            f = s.makefile("rb")
            status = f.readline()
            self.assertIn(b" 200 ", status)
            headers = []
            while True:
                h = f.readline()
                if h in (b"\r\n", b""):
                    break
                headers.append(h.lower())
            self.assertFalse([h for h in headers if h.startswith(b"transfer-encoding") or h.startswith(b"content-length")])
            n = 0
            while True:
                d = f.read1(PIECE)
                if not d:
                    break
                n += len(d)
        self.assertEqual(n, 20 * MIB)

    def test_head_of_a_large_resource_gets_the_head_only(self):
        with socket.create_connection(("127.0.0.1", self.bb.port()), timeout=5) as s:
            s.sendall(b"HEAD /big?bytes=%d HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n" % BIG)
            r1 = read_response(s, head=True)
            r2 = read_response(s)
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.headers["content-length"], str(BIG))
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.json()["target"], "/after")  # no body bytes came between the two


# --- hard limits, stream timeouts, tunnels and the circuit ------------------------------------------

class HardLimitTest(StreamingCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("svc", threads=2)

    def start(self, limits):
        return self.breakerbox(config(one_upstream(self.up, "    retries: {max_attempts: 1}\n"), limits=limits))

    def test_max_request_body(self):
        bb = self.start("  max_request_body: 2MiB\n")
        # Known to be too long from its Content-Length: refused before any of it is read or forwarded.
        with socket.create_connection(("127.0.0.1", bb.port()), timeout=5) as s:
            s.sendall(b"PUT /__sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 * MIB))
            r = read_response(s)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"], "body_too_large")
        self.assertEqual(self.up.stats()["requests"], 0)
        # Chunked: found out on the way (it was streaming already), still a 413 for the client.
        r = upload(bb.port(), "/__sink", 3 * MIB, chunked=True)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"], "body_too_large")
        self.assertNotEqual(self.up.stats()["last_sink_bytes"], 3 * MIB)  # the upstream never got a whole body
        # Within the limit: fine.
        r = upload(bb.port(), "/__sink", 2 * MIB, chunked=False)
        self.assertEqual((r.status, r.json()["body_bytes"]), (200, 2 * MIB))

    def test_max_response_body_with_a_content_length_beyond_the_response_buffer(self):
        # Known too long from its Content-Length (which would make it stream): 502 before any byte.
        # (Regression: read_message once dropped the body_limit error of the put() that completed the
        # head — Beast marks the header done before its Content-Length check — and relayed it whole.)
        bb = self.start("  max_response_body: 2MiB\n")
        r = request(bb.port(), target="/big?bytes=%d" % (3 * MIB))
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["error"], "upstream_response_too_large")

    def test_max_response_body_with_a_content_length_within_the_response_buffer(self):
        # The same for an answer read whole whose head and body come in one read (the upstream writes an
        # answer up to 1 MiB at once): the regression let these through whenever body bytes came with the head.
        bb = self.start("  max_response_body: 512KiB\n")
        for i in range(5):
            r = request(bb.port(), target=f"/b{i}?bytes=800000")
            self.assertEqual(r.status, 502, f"request {i}")
            self.assertEqual(r.json()["error"], "upstream_response_too_large")

    def test_max_response_body_of_a_chunked_answer_aborts_the_stream(self):
        bb = self.start("  max_response_body: 2MiB\n")
        c = Raw(bb.port())
        got = 0
        try:
            c.send(b"GET /big?bytes=%d&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n" % (3 * MIB))
            self.assertEqual(c.head()[1], 200)
            with self.assertRaises((ConnectionError, OSError)):  # truncated: no terminating chunk
                for piece in c.chunks():
                    got += len(piece)
        finally:
            c.close()
        self.assertLessEqual(got, 2 * MIB)
        self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc",
                                                  end="upstream_failed") == 1, timeout=5))


class StreamTimeoutTest(StreamingCase):
    def test_a_silent_stream_ends_at_the_idle_timeout_and_counts_as_a_failure(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    streaming: {idle_timeout: 300ms}
""")))
        c = Raw(bb.port(), timeout=5)
        events = []
        try:
            c.send(b"GET /quiet?stream=sse&events=3&interval_ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.head()[1], 200)
            with self.assertRaises(ConnectionError):  # aborted (reset) long before the 3 s gap ends
                data = b""
                for piece in c.chunks():
                    data += piece
                    more, data = sse_events(data)
                    events += more
        finally:
            c.close()
        self.assertEqual([e["id"] for e in events], ["0"])
        self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc", end="idle_timeout") == 1,
                                   timeout=5))
        h = health(bb)
        self.assertEqual((h["window"]["calls"], h["window"]["failures"]), (2, 1))  # head success, then the silence

    def test_a_client_leaving_a_quiet_stream_is_noticed_at_once_and_is_not_a_failure(self):
        # Issue 30 §2: one event, then a quiet upstream; two clients in turn read the event and leave.
        # Their departure must end the relay while it waits on the upstream (client_closed), long before
        # the idle timeout, and nothing may be recorded for the breaker (two failures would open it).
        up = self.upstream("svc", threads=4)
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    streaming: {idle_timeout: 20s}
    circuit_breaker: {consecutive_failures: 2, failure_rate: {enabled: false}}
""")))
        for n in (1, 2):
            c = Raw(bb.port(), timeout=5)
            try:
                c.send(b"GET /events?stream=sse&events=2&interval_ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.head()[1], 200)
                first = next(c.chunks())
                self.assertIn(b"id: 0", first)
                time.sleep(0.3)
            finally:
                c.close()
            # A bound far below the idle timeout: only a relay that watches the client ends this soon.
            self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_streams_total", upstream="svc", end="client_closed") == n,
                                       timeout=10), scrape(bb))
        self.assertEqual(metric(bb, "breakerbox_streams_total", upstream="svc", end="idle_timeout"), 0)
        h = health(bb)
        self.assertEqual(h["state"], "closed")
        self.assertEqual(h["consecutive_failures"], 0)
        self.assertEqual(h["window"]["failures"], 0)
        self.assertEqual(request(bb.port(), target="/after").status, 200)  # the upstream never failed

    def test_a_tunnel_ends_at_its_total_timeout_however_active(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up, "    streaming: {total_timeout: 1s}\n")))
        ws = WebSocket(bb.port(), timeout=5)
        exchanged = 0
        try:
            self.assertEqual(ws.status, 101)
            with self.assertRaises((ConnectionError, OSError)):
                for _ in range(100):  # a frame every 100 ms: 10 s if nothing ended it
                    ws.send(b"busy")
                    self.assertEqual(ws.recv(), (OP_TEXT, b"busy"))
                    exchanged += 1
                    time.sleep(0.1)
        finally:
            ws.raw.close()
        self.assertGreater(exchanged, 0)
        self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_tunnels_total", upstream="svc", end="total_timeout") == 1,
                                   timeout=5))


class TunnelAndCircuitTest(StreamingCase):
    def test_close_tunnels_on_open(self):
        closing = self.upstream("closing")
        keeping = self.upstream("keeping")
        breaker = "{consecutive_failures: 2, failure_rate: {enabled: false}, open_duration: 60s}"
        bb = self.breakerbox(config(f"""
  closing:
    endpoints: [{closing.address}]
    routes: {{path_prefix: /closing, strip_prefix: true}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {breaker}
    streaming: {{close_tunnels_on_open: true}}
  keeping:
    endpoints: [{keeping.address}]
    routes: {{path_prefix: /keeping, strip_prefix: true}}
    retries: {{max_attempts: 1}}
    circuit_breaker: {breaker}
"""))
        a = WebSocket(bb.port(), target="/closing/chat", timeout=5)
        b = WebSocket(bb.port(), target="/keeping/chat", timeout=5)
        try:
            self.assertEqual((a.status, b.status), (101, 101))
            for name in ("closing", "keeping"):
                for _ in range(2):
                    self.assertEqual(request(bb.port(), target=f"/{name}/x?status=500").status, 500)
                self.assertEqual(health(bb, name)["state"], "open")
            self.assertTrue(a.ended(), "the tunnel of a circuit that opened (close_tunnels_on_open) was left open")
            self.assertTrue(wait_until(lambda: metric(bb, "breakerbox_tunnels_total", upstream="closing",
                                                      end="circuit_opened") == 1, timeout=5))
            b.send(b"still open")  # the default: tunnels are left alone
            self.assertEqual(b.recv(), (OP_TEXT, b"still open"))
            self.assertEqual(metric(bb, "breakerbox_tunnels_total", upstream="keeping", end="circuit_opened"), 0)
        finally:
            a.raw.close()
            b.close()


# --- 12. the stale cache of a streamed answer ------------------------------------------------------

class StaleCacheTest(StreamingCase):
    def test_a_streamed_answer_is_cached_only_when_it_completed_within_max_bytes(self):
        up = self.upstream("svc")
        bb = self.breakerbox(config(one_upstream(up, """    retries: {max_attempts: 1}
    circuit_breaker: {consecutive_failures: 100, failure_rate: {enabled: false}}
    stale_cache: {max_entries: 100, max_bytes: 64KiB, max_age: 60s}
    fallbacks:
      - when: [circuit_open]
        stale: {}
""")))
        small = "/small?stream=chunks&chunks=3&chunk_bytes=16&interval_ms=10"
        large = "/large?stream=chunks&chunks=10&chunk_bytes=16384&interval_ms=10"  # 160 KiB > 64 KiB
        broken = "/broken?stream=chunks&chunks=3&chunk_bytes=16&interval_ms=10&die_after=2"
        fresh = request(bb.port(), target=small)
        self.assertEqual((fresh.status, fresh.body), (200, b"x" * 48))
        self.assertEqual(fresh.headers.get("transfer-encoding", "").lower(), "chunked")  # it was streamed
        r = request(bb.port(), target=large)
        self.assertEqual((r.status, len(r.body)), (200, 160 * 1024))
        with self.assertRaises(Exception):  # aborted mid-body
            request(bb.port(), target=broken)
        self.assertEqual(admin_post(bb, "/admin/circuits/svc/force-open").status, 200)
        before = up.stats()["requests"]
        r = request(bb.port(), target=small)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"x" * 48)
        self.assertEqual(r.headers.get("x-breakerbox-fallback"), "stale")
        self.assertEqual(r.headers.get("x-breakerbox-fallback-reason"), "circuit_open")
        r = request(bb.port(), target=large)
        self.assertEqual(r.status, 503)  # too large to have been kept
        self.assertEqual(r.headers.get("x-breakerbox-error"), "circuit_open")
        r = request(bb.port(), target=broken)
        self.assertEqual(r.status, 503)  # never completed: not kept
        self.assertEqual(r.headers.get("x-breakerbox-error"), "circuit_open")
        self.assertEqual(up.stats()["requests"], before)


# --- 13. /metrics after streams and tunnels --------------------------------------------------------

class MetricsTest(StreamingCase):
    def test_promtool_accepts_metrics_after_streams_and_tunnels(self):
        up = self.upstream("svc", threads=2)
        bb = self.breakerbox(config(one_upstream(up, "    streaming: {max_tunnels: 1}\n    retries: {max_attempts: 1}\n")))
        r = request(bb.port(), target="/sse?stream=sse&events=3&interval_ms=10")
        self.assertEqual(r.status, 200)
        r = request(bb.port(), target="/big?bytes=%d" % (4 * MIB))
        self.assertEqual(len(r.body), 4 * MIB)
        with self.assertRaises(Exception):
            request(bb.port(), target="/broken?stream=chunks&chunks=5&interval_ms=10&die_after=2")
        ws = WebSocket(bb.port())
        self.assertEqual(ws.status, 101)
        refused = WebSocket(bb.port())
        refused.raw.close()
        self.assertEqual(refused.status, 503)
        ws.send(b"x")
        self.assertEqual(ws.recv(), (OP_TEXT, b"x"))
        ws.close()
        self.assertTrue(wait_until(lambda: sum(v for v in [metric(bb, "breakerbox_tunnels_total", upstream="svc", end=e)
                                                           for e in ("completed", "client_closed")] if v) == 1, timeout=5))
        text = scrape(bb)
        self.assertEqual(sample(text, "breakerbox_streams_total", upstream="svc", end="completed"), 2)
        self.assertEqual(sample(text, "breakerbox_streams_total", upstream="svc", end="upstream_failed"), 1)
        self.assertEqual(sample(text, "breakerbox_rejections_total", upstream="svc", reason="tunnel_limit"), 1)
        for family in ("breakerbox_streams_total", "breakerbox_tunnels_total"):
            self.assertIn(f"# TYPE {family} counter", text)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual((check.stdout + check.stderr).strip(), b"", check.stdout + check.stderr)  # no lint findings


# --- 14. configuration errors ----------------------------------------------------------------------

class ConfigErrorTest(unittest.TestCase):
    def check_config(self, text):
        with tempfile.TemporaryDirectory(prefix="breakerbox-check-") as d:
            path = os.path.join(d, "breakerbox.yaml")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([BREAKERBOX_BIN, "--check-config", path], capture_output=True, text=True, timeout=15)
            return r.returncode, r.stdout + r.stderr, path

    @staticmethod
    def line_of(text, needle):
        for i, line in enumerate(text.splitlines(), 1):
            if needle in line:
                return i
        raise AssertionError(needle)

    BASE = """workers: 1
listeners:
  - name: main
    address: 127.0.0.1:8080
upstreams:
  svc:
    endpoints: [127.0.0.1:9000]
    routes: {path_prefix: /}
"""

    def test_the_streaming_keys_are_accepted(self):
        text = self.BASE.replace("upstreams:", "limits: {request_buffer: 2MiB, response_buffer: 512KiB, stream_buffer: 16KiB, "
                                 "max_request_body: unlimited, max_response_body: 1GiB}\nupstreams:") + \
            "    streaming: {idle_timeout: 30s, total_timeout: 1h, max_streams: 10, max_tunnels: 5, " \
            "upgrades: [websocket], close_tunnels_on_open: true}\n"
        code, out, _ = self.check_config(text)
        self.assertEqual(code, 0, out)

    def test_h2c_is_not_an_upgrade_that_can_be_forwarded(self):
        text = self.BASE + "    streaming:\n      upgrades: [websocket, h2c]\n"
        code, out, path = self.check_config(text)
        self.assertEqual(code, 1, out)
        line = self.line_of(text, "upgrades:")
        self.assertRegex(out, re.escape(f"{path}:{line}:") + r"\d+: upstreams\.svc\.streaming\.upgrades\[1\]")
        self.assertIn("h2c", out)

    def test_h2c_in_defaults(self):
        text = self.BASE.replace("upstreams:", "defaults:\n  streaming: {upgrades: [h2c]}\nupstreams:")
        code, out, path = self.check_config(text)
        self.assertEqual(code, 1, out)
        line = self.line_of(text, "upgrades:")
        self.assertRegex(out, re.escape(f"{path}:{line}:") + r"\d+: defaults\.streaming\.upgrades\[0\]")

    def test_a_stream_buffer_below_its_bound(self):
        text = self.BASE.replace("upstreams:", "limits:\n  stream_buffer: 10\nupstreams:")
        code, out, path = self.check_config(text)
        self.assertEqual(code, 1, out)
        line = self.line_of(text, "stream_buffer:")
        self.assertRegex(out, re.escape(f"{path}:{line}:") + r"\d+: limits\.stream_buffer")


if __name__ == "__main__":
    unittest.main()
