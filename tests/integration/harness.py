"""Test harness: starts the real breakerbox binary and real controllable upstreams on 127.0.0.1
ephemeral ports, and talks real HTTP to them. Standard library only.

Every process started here is bounded: waits have timeouts and everything is killed in tearDown.
"""
import json
import os
import signal
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import http.client
import unittest
import weakref

BREAKERBOX_BIN = os.environ.get("BREAKERBOX_BIN", "../../build/breakerbox")
UPSTREAM_BIN = os.environ.get("TEST_UPSTREAM_BIN", "../../build/breakerbox-test-upstream")
PROMETHEUS_DIR = os.environ.get("PROMETHEUS_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../.tools/prometheus/usr/bin"))
PROMTOOL = os.path.join(PROMETHEUS_DIR, "promtool")
PROMETHEUS = os.path.join(PROMETHEUS_DIR, "prometheus")
START_TIMEOUT = 10.0
# stop() sends SIGTERM and waits this long for the drain and a clean exit (a test's own requests are over
# by then, and its upstreams are stopped first, so a drain has nothing to wait for).
STOP_TIMEOUT = float(os.environ.get("BREAKERBOX_STOP_TIMEOUT", "30"))
# What a sanitizer (ASan, LSan, UBSan, TSan) writes to stderr when it finds something.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                     "ThreadSanitizer:", "runtime error:", "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


class Upstream:
    """One breakerbox-test-upstream process."""

    def __init__(self, name="upstream", defaults="", threads=1, tls=None):
        """`tls`: serve TLS — a dict with "cert", "key", and optionally "ca" (to verify our own /__
        requests), "client_ca" (require a client certificate), "max_version" ("1.2"),
        "idle_timeout_ms"."""
        args = [UPSTREAM_BIN, "--listen", "127.0.0.1:0", "--name", name, "--threads", str(threads)]
        if defaults:
            args += ["--defaults", defaults]
        self.tls = tls
        if tls:
            args += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
            if tls.get("client_ca"):
                args += ["--client-ca", tls["client_ca"]]
            if tls.get("max_version"):
                args += ["--tls-max-version", tls["max_version"]]
            if tls.get("idle_timeout_ms"):
                args += ["--idle-timeout-ms", str(tls["idle_timeout_ms"])]
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise RuntimeError("upstream did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(line.split()[1])
        self.address = "127.0.0.1:%d" % self.port

    def _admin(self, method, path):
        if self.tls:
            # Our own observation requests: no verification needed, and (when the upstream requires
            # one) the client certificate the test made.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if self.tls.get("admin_client"):
                ctx.load_cert_chain(*self.tls["admin_client"])
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self):
        return self._admin("GET", "/__stats")

    def reset(self):
        return self._admin("POST", "/__reset")

    def configure(self, query):
        """Default behaviour for requests that do not ask for their own, e.g. 'status=500'."""
        return self._admin("POST", "/__config?" + query)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class Breakerbox:
    """The real breakerbox binary on a config written to a temporary file."""

    def __init__(self, config_text, extra_env=None, command_prefix=None):
        """`command_prefix`: a wrapper to run the binary under, e.g. ["faketime", "-f", "+2h"]; it then
        runs in its own session, and stop() kills the whole group (a wrapper may fork)."""
        self.command_prefix = list(command_prefix or [])
        self.dir = tempfile.TemporaryDirectory(prefix="breakerbox-test-")
        self.config_path = os.path.join(self.dir.name, "breakerbox.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        env = dict(os.environ)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(self.command_prefix + [BREAKERBOX_BIN, "--config", self.config_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=bool(self.command_prefix))
        self.logs = []
        self.ports = {}
        self.signalled = False  # the test sent a signal itself (then its exit status is the test's business)
        self._stopped = False
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop(graceful=False)
            raise RuntimeError("breakerbox did not become ready:\n" + "\n".join(map(str, self.logs)))

    def _read_logs(self):
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"raw": line.rstrip()}
            with self._lock:
                self.logs.append(entry)
            if entry.get("msg") == "listening":
                self.ports[entry["listener"]] = entry["port"]
            elif entry.get("msg") == "admin listening":
                self.ports["admin"] = entry["port"]
            elif entry.get("msg") == "breakerbox ready":
                self._ready.set()

    def log_entries(self, msg=None, at_least=0, timeout=5):
        """Log lines so far (with that msg). Lines arrive through a pipe and a reader thread, so a
        caller that expects some waits for at least that many (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [e for e in self.logs if msg is None or e.get("msg") == msg]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def port(self, listener="main"):
        return self.ports[listener]

    def signal(self, signo):
        self.signalled = True
        self.proc.send_signal(signo)

    def wait(self, timeout=20):
        return self.proc.wait(timeout=timeout)

    def _kill(self, signo):
        try:
            if self.command_prefix:
                os.killpg(self.proc.pid, signo)  # the wrapper and what it started
            elif self.proc.poll() is None:
                self.proc.send_signal(signo)
        except ProcessLookupError:
            pass

    def stop(self, graceful=True):
        """Ends the process as an operator would: SIGTERM, the drain, a clean exit — and fails (raises
        AssertionError, after everything is cleaned up) on a nonzero exit, no exit within STOP_TIMEOUT, a
        process that died by itself, or any sanitizer report, which is printed. So LeakSanitizer runs for
        every sidecar of the sanitizer suites, and a report cannot pass unseen. A process the test
        signalled itself is only checked for sanitizer reports. graceful=False: SIGKILL, nothing checked."""
        if self._stopped:
            return
        self._stopped = True
        problems = []
        running = self.proc.poll() is None
        if not running and not self.signalled and graceful:
            problems.append("breakerbox exited by itself during the test, with status %s" % self.proc.returncode)
        if running and graceful:
            self._kill(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT)
                # Under a wrapper (faketime forks) the status is the wrapper's, not breakerbox's.
                if code != 0 and not self.signalled and not self.command_prefix:
                    problems.append("breakerbox exited with status %d after SIGTERM (0 expected)" % code)
            except subprocess.TimeoutExpired:
                problems.append("breakerbox did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
        self._kill(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self.proc.stderr.close()
        self.dir.cleanup()
        reports = self.sanitizer_reports()
        if reports:
            problems.append("sanitizer report:\n" + "\n".join(reports))
        if problems and graceful:
            tail = "\n".join(json.dumps(e) for e in self.logs[-15:] if "raw" not in e)
            raise AssertionError("\n".join(problems) + "\n-- the last log lines:\n" + tail)

    def sanitizer_reports(self):
        """The lines of stderr that are not log lines, from the first sanitizer report on (capped)."""
        with self._lock:
            raw = [e["raw"] for e in self.logs if "raw" in e]
        for i, line in enumerate(raw):
            if any(mark in line for mark in SANITIZER_REPORTS):
                return raw[i:i + 200]
        return []


class Response:
    def __init__(self, status, headers, body, version):
        self.status = status
        self.headers = headers  # dict, lowercase names
        self.body = body
        self.version = version

    def json(self):
        return json.loads(self.body)


def request(port, method="GET", target="/", headers=None, body=None, timeout=10, host="127.0.0.1"):
    """A well-formed request on its own connection with http.client."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=headers is not None and "Host" in headers,
                        skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data, r.version)
    finally:
        conn.close()


_readers = weakref.WeakKeyDictionary()


def sample(text, name, **labels):
    """A /metrics text's value of one sample by its labels (all given ones must match), or None."""
    for line in text.splitlines():
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def sanitized_binary():
    """Whether BREAKERBOX_BIN carries a sanitizer runtime (the ASan and TSan suites)."""
    with open(BREAKERBOX_BIN, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def read_response(sock, timeout=10, head=False):
    """Reads exactly one HTTP/1.x response from a raw socket (Content-Length or chunked framing). One buffered
    reader per socket, so bytes of the next (pipelined) response read ahead are not lost."""
    sock.settimeout(timeout)
    f = _readers.get(sock)
    if f is None:
        f = _readers[sock] = sock.makefile("rb")
    status_line = f.readline().decode()
    if not status_line:
        return None
    version, status = status_line.split(" ", 2)[:2]
    headers = {}
    while True:
        line = f.readline().decode()
        if line in ("\r\n", "\n", ""):
            break
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if not head and headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(int(status), headers, _read_chunked(f), version)
    length = 0 if head else int(headers.get("content-length", "0"))
    body = f.read(length) if length else b""
    return Response(int(status), headers, body, version)


def _read_chunked(f):
    """A chunked body, decoded (a streamed answer of unknown length: docs/streaming.md)."""
    parts = []
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(f.read(size))
        f.readline()


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes, returns everything the peer sends until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def free_port():
    """A port that was free a moment ago (for programs that cannot report an ephemeral port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(predicate, timeout=10, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class ProxyTestCase(unittest.TestCase):
    """Starts and reliably stops the processes a test asks for."""

    def setUp(self):
        self._processes = []

    def tearDown(self):
        # Upstreams first: a request still waiting on one then ends at once, so breakerbox's drain (its
        # stop is SIGTERM) has nothing to wait for. Every process is stopped before a failure is raised.
        problems = []
        ordered = sorted(reversed(self._processes), key=lambda p: isinstance(p, Breakerbox))
        for p in ordered:
            try:
                p.stop()
            except AssertionError as e:
                problems.append(str(e))
            except Exception:
                pass
        if problems:
            self.fail("\n\n".join(problems))

    def upstream(self, name="upstream", defaults="", threads=1, tls=None):
        u = Upstream(name, defaults, threads, tls)
        self._processes.append(u)
        return u

    def breakerbox(self, config_text, extra_env=None, command_prefix=None):
        b = Breakerbox(config_text, extra_env, command_prefix)
        self._processes.append(b)
        return b

    def scripted(self, handler):
        u = ScriptedUpstream(handler)
        self._processes.append(u)
        return u


class ScriptedUpstream:
    """A raw-socket upstream on 127.0.0.1 whose every byte the test decides: `handler(conn, index)` runs
    for each accepted connection (index counts from 0) on its own thread. Every request head read with
    read_request is kept in `requests` (method, target, header lines, body), so a test can count exactly
    what reached the upstream."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self._threads = []
        self._conns = []
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self):
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn, index):
        conn.settimeout(10)
        try:
            self.handler(self, conn, index)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def read_request(self, conn):
        """Reads one request (Content-Length or chunked body); returns (method, target, headers, body)
        with headers as a list of (name, value) in order, or None when the peer closed first."""
        f = conn.makefile("rb")
        line = f.readline()
        if not line:
            return None
        method, target, _ = line.decode().split(" ", 2)
        headers = []
        while True:
            h = f.readline().decode()
            if h in ("\r\n", "\n", ""):
                break
            k, v = h.split(":", 1)
            headers.append((k.strip(), v.strip()))
        names = {k.lower(): v for k, v in headers}
        body = b""
        if "content-length" in names:
            body = f.read(int(names["content-length"]))
        elif names.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += f.read(size)
                f.readline()
        with self._lock:
            self.requests.append((method, target, headers, body))
        return method, target, headers, body

    def count(self, method, target=None):
        with self._lock:
            return sum(1 for m, t, _, _ in self.requests if m == method and (target is None or t == target))

    def stop(self):
        self._stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # a handler waiting on its connection ends now, as when a real server dies
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)


def ok_response(body=b"ok", extra=""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra.encode(), body)
