#!/usr/bin/env python3
"""The calling service of the cascade bench (bench/cascade.py): service "A" of the design documents.

It is built like a typical thread-pool web service, because the cascade is a property of that design:
- one acceptor thread takes connections into a bounded queue (1,024, like Tomcat's accept count and a
  bounded executor queue); when the queue is full the acceptor blocks and the kernel's listen backlog
  (128) fills next, so a caller that cannot keep up makes its own clients wait, never drops them;
- a fixed pool of worker threads (default 32) takes connections from the queue, one request each;
- `GET /order` calls the payments upstream (`POST /charge`), `GET /browse` the catalog upstream
  (`GET /products`), each worker over its own keep-alive connection per upstream, with the client
  timeout a careful service sets (default 5 s: far above payments' normal 20 ms, short enough that a
  hung call does not hold a worker for a minute as library defaults would);
- each answer is a small JSON: the kind of the upstream's answer — `real` (a 2xx from the upstream),
  `fallback` (a designed degraded answer, marked `X-Breakerbox-Fallback` by breakerbox or `X-Fallback`
  by the HAProxy/nginx configurations of the bench), `error` (any other answer, or a failed connection),
  `timeout` (the client timeout fired) — with the upstream call's and the queue wait's milliseconds.

Every 100 ms a sampler thread appends "monotonic_time busy_workers queued_requests" to the file given by
--samples: CLOCK_MONOTONIC is shared by all processes, so the bench lines the samples up with its own
clock.

Standard library only. Worker threads spend nearly all their time blocked on sockets, so the GIL does
not limit the few hundred requests per second the bench sends.
"""
import argparse
import http.client
import json
import queue
import socket
import threading
import time

FALLBACK_HEADERS = ("X-Breakerbox-Fallback", "X-Fallback")
ORDER_BODY = b'{"order": 42, "amount_cents": 1999}'


class Upstream:
    """One worker's keep-alive connection to one upstream (http.client is not thread-safe, so each
    worker has its own, as a per-thread connection pool would)."""

    def __init__(self, base, timeout):
        host, port = base.rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method, path, body=None, may_resend=False):
        """(kind, status). A GET that fails on a reused connection before any answer is sent once more on
        a new one — the keep-alive race every HTTP client library handles (urllib3 does the same); a POST
        never is, since the upstream may have acted on it."""
        reused = self.conn is not None
        kind, status = self._attempt(method, path, body)
        if kind == "error" and reused and may_resend:
            kind, status = self._attempt(method, path, body)
        return kind, status

    def _attempt(self, method, path, body):
        """One exchange: its (kind, status), or ("timeout" | "error", 0) with the connection closed."""
        try:
            return self._exchange(method, path, body)
        except socket.timeout:
            self.close()
            return "timeout", 0
        except (OSError, http.client.HTTPException):
            self.close()
            return "error", 0

    def _exchange(self, method, path, body):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        resp.read()
        if resp.will_close:
            self.close()
        if any(resp.getheader(h) for h in FALLBACK_HEADERS):
            return "fallback", resp.status
        return ("real" if 200 <= resp.status < 300 else "error"), resp.status


class Caller:
    def __init__(self, args):
        self.args = args
        self.queue = queue.Queue(maxsize=args.queue)
        self.busy = 0
        self.lock = threading.Lock()

    def acceptor(self, listener):
        while True:
            conn, _ = listener.accept()
            self.queue.put((conn, time.monotonic()))  # blocks when full: the backlog fills next

    def worker(self):
        payments = Upstream(self.args.payments, self.args.timeout)
        catalog = Upstream(self.args.catalog, self.args.timeout)
        while True:
            conn, accepted = self.queue.get()
            with self.lock:
                self.busy += 1
            try:
                self.serve(conn, accepted, payments, catalog)
            except OSError:
                pass  # the client gave up and closed: its answer has nowhere to go
            finally:
                conn.close()
                with self.lock:
                    self.busy -= 1

    def serve(self, conn, accepted, payments, catalog):
        conn.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        path = head.split(b" ", 2)[1].decode(errors="replace")
        waited_ms = (time.monotonic() - accepted) * 1000
        start = time.monotonic()
        if path == "/order":
            kind, status = payments.call("POST", "/charge", ORDER_BODY)
        elif path == "/browse":
            kind, status = catalog.call("GET", "/products", may_resend=True)
        else:
            self.answer(conn, 404, {"error": f"no route {path}"})
            return
        self.answer(conn, 200, {"kind": kind, "status": status, "queue_ms": round(waited_ms, 3),
                                "upstream_ms": round((time.monotonic() - start) * 1000, 3)})

    @staticmethod
    def answer(conn, status, doc):
        body = json.dumps(doc).encode()
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (status, len(body), body))

    def sampler(self, path):
        with open(path, "a", buffering=1) as f:
            while True:
                with self.lock:
                    busy = self.busy
                f.write(f"{time.monotonic():.3f} {busy} {self.queue.qsize()}\n")
                time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:0", help="address (port 0: ephemeral, printed on stdout)")
    ap.add_argument("--payments", required=True, help="host:port the order requests call")
    ap.add_argument("--catalog", required=True, help="host:port the browse requests call")
    ap.add_argument("--workers", type=int, default=32, help="fixed worker pool")
    ap.add_argument("--queue", type=int, default=1024, help="accepted connections waiting for a worker")
    ap.add_argument("--timeout", type=float, default=5.0, help="client timeout of each upstream call, seconds")
    ap.add_argument("--samples", help="file to append 'time busy queued' to every 100 ms")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(128)
    caller = Caller(args)
    for _ in range(args.workers):
        threading.Thread(target=caller.worker, daemon=True).start()
    if args.samples:
        threading.Thread(target=caller.sampler, args=(args.samples,), daemon=True).start()
    print(f"listening {listener.getsockname()[1]}", flush=True)
    caller.acceptor(listener)


if __name__ == "__main__":
    main()
