"""The endpoint-ejection scenario of bench.py (`--only ejection`): one upstream with three endpoints,
one of which dies (its process killed: connections refused) or hangs (SIGSTOP: connections accepted,
never answered) while 8 clients send GETs in a loop. Every proxy balances round robin over the same
three breakerbox-test-upstream processes, each configured as well as it allows:

- HAProxy: health checks every 500 ms (fall 2, rise 1), `observe layer7 error-limit 3 on-error
  mark-down`, `retries 2` with `option redispatch` (a failed connect goes to another server),
  `timeout server 1s`;
- nginx: `max_fails=3 fail_timeout=10s` per server, `proxy_next_upstream error timeout` with two tries,
  `proxy_read_timeout 1s`;
- breakerbox with outlier detection: 3 local-origin failures in a row eject an endpoint for 10 s,
  retries (2 attempts, connect failures and resets, on another endpoint), `request_timeout 1s`;
- breakerbox without it (`outlier_detection: {enabled: false}`), the same otherwise: what the upstream's
  breaker alone does when one endpoint of three is bad.

Figures: client requests after the fault, how many failed, how many took over 500 ms (waited on the
bad endpoint), and the latency (p50, p99) of the requests after the fault against before it. Standard library only.
"""
import http.client
import os
import signal
import statistics
import subprocess
import threading
import time

B = None  # bench.py's module: its process wrapper, ports and paths (set by run)
CLIENTS = 8
FAULT_AT = 2.0
END_AT = 8.0  # run() shortens it for short runs (the smoke test)


def start_endpoints(bench, n=3):
    """n breakerbox-test-upstream processes on the load core; returns [(port, Proc)]."""
    upstream_bin = os.path.join(B.BUILD, "breakerbox-test-upstream")
    out = []
    for i in range(n):
        port = B.free_port()
        p = B.Proc(f"endpoint{i}", [upstream_bin, "--listen", f"127.0.0.1:{port}", "--name", f"e{i}", "--threads", "2"],
                 B.LOAD_CORE)
        bench.procs.append(p)
        B.wait_port(port, p)
        out.append((port, p))
    return out


def haproxy_config(port, ports):
    servers = "\n".join(f"  server e{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1 observe layer7 error-limit 3 "
                        f"on-error mark-down" for i, p in enumerate(ports))
    return f"""
global
  nbthread 1
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 1s
  timeout client 30s
  timeout server 1s
  timeout queue 1s
  retries 2
  option redispatch 1
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /health
{servers}
"""


def nginx_config(port, ports, pid_dir):
    servers = " ".join(f"server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;" for p in ports)
    return f"""
daemon off; master_process on; worker_processes 1; pid {pid_dir}/nginx-ejection-{port}.pid;
error_log stderr crit;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  upstream u {{ {servers} keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://u;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_read_timeout 1s;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 2;
    }}
  }}
}}
"""


def breakerbox_config(port, admin_port, ports, ejection):
    endpoints = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    outliers = ("{consecutive_local_origin_failure: 3, consecutive_5xx: 3, base_ejection_time: 10s}" if ejection
                else "{enabled: false}")
    return f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:{port}"}}]
admin: {{address: "127.0.0.1:{admin_port}", token: bench}}
logging: {{level: error}}
upstreams:
  svc:
    endpoints: [{endpoints}]
    routes: {{path_prefix: /}}
    connect_timeout: 1s
    request_timeout: 1s
    retries: {{max_attempts: 2}}
    outlier_detection: {outliers}
"""


def start_proxy(bench, name, port, ports):
    if name == "haproxy":
        args = [B.HAPROXY, "-f", bench.write(f"haproxy-ejection-{port}.cfg", haproxy_config(port, ports))]
    elif name == "nginx":
        conf = bench.write(f"nginx-ejection-{port}.conf", nginx_config(port, ports, bench.dir))
        args = [B.NGINX, "-c", conf, "-p", bench.dir]
    else:
        conf = bench.write(f"breakerbox-ejection-{port}.yaml",
                           breakerbox_config(port, B.free_port(), ports, ejection=(name == "breakerbox")))
        args = [B.BREAKERBOX, "--config", conf]
    p = B.Proc(name, args, B.PROXY_CORE)
    bench.procs.append(p)
    B.wait_port(port, p)
    return p


def load(port, seconds):
    """CLIENTS closed-loop clients for `seconds`: [(start, latency s, status)] (status 0: no answer)."""
    records, lock = [], threading.Lock()
    t0 = time.monotonic()

    def client():
        conn = None
        while time.monotonic() - t0 < seconds:
            start = time.monotonic()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/item")
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
            with lock:
                records.append((start - t0, time.monotonic() - start, status))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads, records


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_one(bench, name, fault):
    endpoints = start_endpoints(bench)
    ports = [p for p, _ in endpoints]
    port = B.free_port()
    proxy = start_proxy(bench, name, port, ports)
    try:
        time.sleep(0.6)  # HAProxy's first health checks
        threads, records = load(port, END_AT)
        time.sleep(FAULT_AT)
        bad = endpoints[1][1]
        pids = bad.pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL if fault == "dies" else signal.SIGSTOP)
        for t in threads:
            t.join(timeout=END_AT + 10)
        if fault == "hangs":
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
    finally:
        for _, p in endpoints:
            p.stop()
            bench.procs.remove(p)
        proxy.stop()
        bench.procs.remove(proxy)
    before = [r for r in records if r[0] < FAULT_AT]
    after = [r for r in records if r[0] >= FAULT_AT]
    if not before or not after:
        bench.failures.append(f"ejection/{name}/{fault}: no requests before or after the fault")
    if any(r[2] != 200 for r in before):
        bench.failures.append(f"ejection/{name}/{fault}: a request failed before the fault")
    return {
        "requests": len(after),
        "failed": sum(1 for r in after if r[2] != 200),
        "slow": sum(1 for r in after if r[1] > 0.5),
        "p50_before": percentile([r[1] for r in before], 0.5),
        "p99_before": percentile([r[1] for r in before], 0.99),
        "p50_after": percentile([r[1] for r in after], 0.5),
        "p99_after": percentile([r[1] for r in after], 0.99),
    }


SYSTEMS = ("haproxy", "nginx", "breakerbox", "breakerbox-no-ejection")


def run(bench, bench_module):
    global B, END_AT
    B = bench_module
    END_AT = FAULT_AT + min(6.0, 2.0 * bench.args.seconds)
    return {(fault, name): run_one(bench, name, fault) for fault in ("dies", "hangs") for name in SYSTEMS}


def print_results(res):
    print(f"\n### Endpoint ejection: 1 of 3 endpoints dies (killed) or hangs (SIGSTOP) at t={FAULT_AT:.0f}s; "
          f"{CLIENTS} clients in a loop until t={END_AT:.0f}s\n")
    print("| fault | proxy | requests after | failed | took over 500 ms | p50 ms before → after | p99 ms before → after |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (fault, name), r in res.items():
        def ms(v):
            return "-" if v is None else f"{v * 1000:.1f}"
        print(f"| {fault} | {name} | {r['requests']} | {r['failed']} | {r['slow']} | "
              f"{ms(r['p50_before'])} → {ms(r['p50_after'])} | {ms(r['p99_before'])} → {ms(r['p99_after'])} |")
