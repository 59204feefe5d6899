"""Soak: about 30 s of wrk load through breakers, bulkheads and retries while the upstream flaps
(bursts of 503s, latency spikes, resets). Afterwards: breakerbox is alive, every request was answered
(no socket errors at the client), its file descriptors are back to the baseline once pools idle out,
and its resident memory did not keep growing. The figures are printed for the record."""
import os
import re
import subprocess
import threading
import time
import unittest

from harness import ProxyTestCase, request, wait_until

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "30"))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SoakTest(ProxyTestCase):
    def test_flapping_upstream_under_load(self):
        up = self.upstream("svc", threads=2)
        bb = self.breakerbox(f"""
workers: 2
listeners: [{{name: main, address: "127.0.0.1:0"}}]
admin: {{address: "127.0.0.1:0"}}
logging: {{level: info}}
upstreams:
  svc:
    endpoints: [{up.address}]
    routes: {{path_prefix: /}}
    request_timeout: 500ms
    pool: {{idle_timeout: 1s}}
    bulkhead: {{max_concurrent: 32, max_queue: 32, queue_timeout: 200ms}}
    retries: {{max_attempts: 2, backoff_base: 1ms, backoff_max: 10ms}}
    circuit_breaker:
      consecutive_failures: 20
      failure_rate: {{threshold: 50, window: time, window_duration: 2s, window_buckets: 4, minimum_calls: 50}}
      open_duration: 300ms
      max_open_duration: 1s  # re-trips double the open time; capped so that recovery is prompt after the soak
      half_open: {{max_probes: 2}}
    stale_cache: {{max_entries: 10}}
    fallbacks:
      - when: [circuit_open]
        stale: {{}}
""")
        pid = bb.proc.pid
        request(bb.port(), target="/warm")
        base_fds = fd_count(pid)
        stop = threading.Event()

        def flap():  # the upstream's mood changes every 300 ms
            moods = ["status=200", "status=503", "status=200&delay_ms=50", "fault=reset", "status=200",
                     "status=200&delay_ms=700", "status=500", "status=200"]
            i = 0
            while not stop.wait(0.3):
                try:
                    up.configure(moods[i % len(moods)])
                except OSError:
                    pass
                i += 1

        flapper = threading.Thread(target=flap)
        flapper.start()
        rss = []
        sampler_stop = threading.Event()

        def sample():
            while not sampler_stop.wait(1):
                rss.append(rss_kib(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            out = subprocess.run(["wrk", "-t2", "-c64", f"-d{SOAK_SECONDS}s", "--timeout", "5s",
                                  f"http://127.0.0.1:{bb.port()}/soak"],
                                 capture_output=True, text=True, timeout=SOAK_SECONDS + 60).stdout
        finally:
            stop.set()
            flapper.join()
            sampler_stop.set()
            sampler.join()
        up.configure("status=200")
        self.assertIsNone(bb.proc.poll(), "breakerbox died")
        total = int(re.search(r"(\d+) requests in", out).group(1))
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"\nsoak: {total} requests in {SOAK_SECONDS}s, non-2xx {non2xx.group(1) if non2xx else 0}, "
              f"socket errors {errors.groups() if errors else (0, 0, 0, 0)}")
        self.assertGreater(total, 1000)
        self.assertIsNone(errors, "every request must get an answer: " + out)  # wrk prints the line only when there are errors
        # the circuit may have been left open by the last burst: it recovers by itself
        health = lambda: request(bb.port("admin"), target="/health/circuits/svc").json()["upstreams"]["svc"]
        recovered = wait_until(lambda: request(bb.port(), target="/after").status == 200, timeout=15)
        self.assertTrue(recovered, f"not recovered: {health()}; last answer: {request(bb.port(), target='/after').body[:300]}")
        # descriptors: client connections closed, pooled upstream connections idle out after 1 s
        self.assertTrue(wait_until(lambda: fd_count(pid) <= base_fds, timeout=10),
                        f"fds {fd_count(pid)} > baseline {base_fds}")
        third = rss[len(rss) // 3] if rss else 0
        print(f"soak: RSS KiB samples first {rss[0] if rss else 0}, at 1/3 {third}, last {rss[-1] if rss else 0}; "
              f"fds back to {fd_count(pid)} (baseline {base_fds})")
        sanitized = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ  # their shadow memory grows by design
        if len(rss) >= 3 and not sanitized:
            self.assertLess(rss[-1], third * 1.5 + 8192, "resident memory kept growing")


if __name__ == "__main__":
    unittest.main()
