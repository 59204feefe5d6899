"""The cost of the dashboard's event stream (bench.py `--only events`): breakerbox's CPU per proxied
request (wrk, 50 connections, 64 B) with 0 and with 10 `/events` viewers connected — as 10 open
dashboards are — and the admin (main) thread's CPU per viewer. Runs are interleaved (0, 10, 0, 10, …)
on one breakerbox; the median of the repetitions is reported. Standard library only.
"""
import socket
import statistics
import threading

B = None  # bench.py's module (set by run)
VIEWERS = 10


def main_thread_ns(pid):
    """Nanoseconds on a CPU of the process's main thread (the admin listener's), from schedstat: clock
    ticks (10 ms) are too coarse for a thread that works a few ms per second."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class Viewers:
    """n clients reading /events as a browser would (everything, as it comes)."""

    def __init__(self, admin_port, n):
        self.stop = threading.Event()
        self.bytes = 0
        self.socks = []
        self.threads = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", admin_port), timeout=5)
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            self.socks.append(s)
            t = threading.Thread(target=self.read, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def read(self, s):
        s.settimeout(0.5)
        while not self.stop.is_set():
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        for s in self.socks:
            s.close()


def run(bench, bench_module):
    global B
    B = bench_module
    port, admin = B.free_port(), B.free_port()
    proxy = bench.start_breakerbox(port, admin)
    results = {0: [], VIEWERS: []}
    try:
        for _ in range(bench.args.reps):
            for n in (0, VIEWERS):
                viewers = Viewers(admin, n) if n else None
                before = main_thread_ns(proxy.popen.pid)
                r = bench.wrk(port, "/small", 50, bench.args.seconds, proxy.pids())
                admin_ns = main_thread_ns(proxy.popen.pid) - before
                if viewers:
                    viewers.close()
                    if viewers.bytes == 0:
                        bench.failures.append("events: the viewers received nothing")
                if r["non2xx"] or r["socket_errors"]:
                    bench.failures.append(f"events: {r['non2xx']} non-2xx answers, {r['socket_errors']} socket errors")
                r["admin_ms_per_s"] = admin_ns / 1e6 / bench.args.seconds
                results[n].append(r)
    finally:
        bench.stop(proxy)
    return results


def print_results(res):
    print(f"\n### The event stream's cost: 0 vs {VIEWERS} `/events` viewers (dashboards), 50 connections, 64 B "
          f"(median of {len(res[0])})\n")
    print("| viewers | req/s | breakerbox CPU µs/req | p99 ms | admin (main) thread ms of CPU per second |")
    print("|---:|---:|---:|---:|---:|")
    med = {}
    for n, runs in res.items():
        med[n] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_us", "p99", "admin_ms_per_s")}
        m = med[n]
        print(f"| {n} | {m['rps']:,.0f} | {m['cpu_us']:.2f} | {m['p99']:.3f} | {m['admin_ms_per_s']:.2f} |")
    per_viewer = (med[VIEWERS]["admin_ms_per_s"] - med[0]["admin_ms_per_s"]) / VIEWERS
    spread = [r["cpu_us"] for r in res[0]]
    print(f"\nCPU per request with {VIEWERS} viewers: {med[VIEWERS]['cpu_us'] / med[0]['cpu_us']:.3f}× without "
          f"(the 0-viewer runs themselves spread {min(spread):.2f}–{max(spread):.2f} µs). "
          f"Admin thread per viewer: {per_viewer:.3f} ms of CPU per second.")
