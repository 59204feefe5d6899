"""The `queue` fallback's cost and speed (bench.py `--only queue`; docs/queue.md). Standard library only.
(Not named queue.py: bench/ is first on sys.path of the scripts run from it, and caller_service.py's
`import queue` must find the standard library's.)

Placement as in the rest of bench.py: breakerbox (one worker) on core 0, the load generator and the
upstream on core 1. Three measurements, reported and never asserted:

1. **Durable enqueues per second** and the 202's latency (p50, p99), with `synchronous: full` and
   `normal` (group commit is always on): wrk with a Lua script — one thread, keep-alive connections, one
   pre-built request — sends `POST /orders` with a 1 KiB JSON body to an upstream whose circuit is forced
   open (`POST /admin/circuits/svc/force-open`), answered by a queue fallback with large limits
   (`max_entries: 1000000`, `max_bytes: 4GiB`); 64 and 256 connections (64 only in short runs). Each
   run on a new breakerbox with an empty database (the rate falls as the database grows), full and
   normal interleaved; medians of the repetitions. Then the same on one database, several runs in a
   row: the rate against the entries already queued.
   Also: breakerbox's CPU per enqueue (utime+stime of the process, /proc/<pid>/stat), how busy each core
   was, and commits per second from `breakerbox_queue_commit_duration_seconds` (enqueues per commit:
   the group commit's batch). The issue's goal, >= 10,000 durable enqueues/s with `full` on the 2-core
   machine, is reported as met or not.
2. **Time to drain**: N requests queued while the circuit is forced open, then the circuit reset
   (`POST /admin/circuits/svc/reset`); the time until the upstream has received all N and the queue's
   depth (`/health/circuits/svc`, its `queue` block) is 0, against the expected N / rate, at `delivery:
   {rate: 200, concurrency: 4}`; the upstream (breakerbox-test-upstream) answers after 10 ms. Also the
   highest number of deliveries the upstream saw at once (at most the concurrency), and one delivered
   request's status resource and delivery headers.
3. **Bytes on disk per queued request**: for the last 64-connection databases of (1) and the growing
   one, the database file and its -wal over the entries queued, while breakerbox runs, then after a clean stop (SIGTERM) and a checkpoint (Python's sqlite3,
   `PRAGMA wal_checkpoint(TRUNCATE)`), for the 1 KiB body used.

Answers that make a figure meaningless (a non-202, a socket error, enqueues that do not add up, a drain
that never ends) are bench failures; what differs from docs/queue.md is listed as a finding.
"""
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

B = None  # bench.py's module (set by run)
TOKEN = "bench"
UPSTREAM = "svc"
PATH = "/orders"
TARGET_PER_S = 10000  # the goal with synchronous: full
DRAIN_RATE, DRAIN_CONCURRENCY, DRAIN_DELAY_MS = 200, 4, 10


def json_body(size=1024):
    """A JSON object of exactly `size` bytes, as an order would be."""
    head = '{"order_id":"ord-000000000042","customer":"c-1234","currency":"EUR","items":[{"sku":"A-1","qty":2},' \
           '{"sku":"B-7","qty":1}],"note":"'
    tail = '"}'
    return (head + "n" * (size - len(head) - len(tail)) + tail).encode()


BODY = json_body()
json.loads(BODY)  # well-formed


def fs_type(path):
    """The file system holding `path` (tmpfs would make fsync free, and `full` meaningless)."""
    best, kind = "", "?"
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def config_text(port, admin, upstream_port, db_path, synchronous, rate=DRAIN_RATE, concurrency=DRAIN_CONCURRENCY):
    return f"""
workers: 1
listeners: [{{name: main, address: "127.0.0.1:{port}"}}]
admin: {{address: "127.0.0.1:{admin}", token: {TOKEN}}}
logging: {{level: error}}
limits: {{max_connections: {B.connection_limit()}}}
queue_store:
  path: {db_path}
  synchronous: {synchronous}
upstreams:
  {UPSTREAM}:
    endpoints: ["127.0.0.1:{upstream_port}"]
    routes: {{path_prefix: /}}
    connect_timeout: 1s
    request_timeout: 5s
    circuit_breaker: {{consecutive_failures: 5}}
    fallbacks:
      - when: [circuit_open]
        queue:
          max_entries: 1000000
          max_bytes: 4GiB
          delivery: {{rate: {rate}, concurrency: {concurrency}}}
"""


# ---- talking to breakerbox ----------------------------------------------------------------------------
def request(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def admin_post(admin, path):
    return request(admin, "POST", path, headers={"Authorization": f"Bearer {TOKEN}"})


def queue_block(admin):
    """The upstream's `queue` block in /health/circuits/svc (answered 503 while a circuit is open), or None."""
    _, _, body = request(admin, "GET", f"/health/circuits/{UPSTREAM}")
    try:
        return json.loads(body)["upstreams"][UPSTREAM].get("queue")
    except (ValueError, KeyError, TypeError):
        return None


def metrics(admin):
    return request(admin, "GET", "/metrics")[2].decode(errors="replace")


def metric_sum(text, name):
    """The sum over the series of exactly `name` (those labelled with another upstream excluded); None if absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        labels = line[len(name):].split("}", 1)[0] if line[len(name)] == "{" else ""
        if 'upstream="' in labels and f'upstream="{UPSTREAM}"' not in labels:
            continue
        try:
            total += float(line.rsplit(None, 1)[1])
            found = True
        except (ValueError, IndexError):
            pass
    return total if found else None


def depth_of(admin):
    """Entries queued + in flight: the health block's depth (+ in_flight if reported apart), else /metrics."""
    q = queue_block(admin)
    if isinstance(q, dict) and "depth" in q:
        return q["depth"], q
    d = metric_sum(metrics(admin), "breakerbox_queue_depth")
    return (None if d is None else int(d)), q


def start(bench, name, synchronous, upstream_port, rate=DRAIN_RATE, concurrency=DRAIN_CONCURRENCY):
    """One breakerbox with a queue fallback; its database in a folder breakerbox creates (0700)."""
    port, admin = B.free_port(), B.free_port()
    db = os.path.join(bench.dir, f"queue-{name}", "queue.db")
    conf = bench.write(f"breakerbox-queue-{name}.yaml",
                       config_text(port, admin, upstream_port, db, synchronous, rate, concurrency))
    p = B.Proc(f"breakerbox ({name})", [B.BREAKERBOX, "--config", conf], B.PROXY_CORE)
    bench.procs.append(p)
    B.wait_port(port, p)
    B.wait_port(admin, p)
    return {"proc": p, "port": port, "admin": admin, "db": db, "name": name, "synchronous": synchronous}


def force_open(bench, bb):
    status, _, body = admin_post(bb["admin"], f"/admin/circuits/{UPSTREAM}/force-open")
    if status != 200:
        bench.failures.append(f"queue/{bb['name']}: force-open answered {status}: {body[:200]!r}")


def check_202(bench, bb, findings):
    """One enqueue by hand: the 202 of docs/queue.md, and its status resource. Returns the id or None."""
    status, h, body = request(bb["port"], "POST", PATH, BODY, {"Content-Type": "application/json"})
    tag = f"queue/{bb['name']}"
    if status != 202:
        bench.failures.append(f"{tag}: a POST to the open circuit answered {status}, not 202: {body[:300]!r}")
        return None
    try:
        j = json.loads(body)
    except ValueError:
        findings.append(f"{tag}: the 202's body is not JSON: {body[:200]!r}")
        return None
    qid = j.get("id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", qid or ""):
        findings.append(f"{tag}: the 202's id {qid!r} is not 32 lowercase hex digits")
    if j.get("status") != "queued" or j.get("upstream") != UPSTREAM or j.get("duplicate") is not False:
        findings.append(f"{tag}: the 202's body differs from docs/queue.md: {j}")
    if h.get("x-breakerbox-fallback") != "queue" or h.get("x-breakerbox-fallback-reason") != "circuit_open":
        findings.append(f"{tag}: 202 headers X-Breakerbox-Fallback {h.get('x-breakerbox-fallback')!r}, "
                        f"-Reason {h.get('x-breakerbox-fallback-reason')!r} (expected queue, circuit_open)")
    location = h.get("location", "")
    if not location or j.get("location") != location or not location.endswith(qid or "?"):
        findings.append(f"{tag}: 202 Location {location!r} against body location {j.get('location')!r}")
    if "retry-after" not in h:
        findings.append(f"{tag}: the 202 has no Retry-After")
    if location:
        s, _, sb = request(bb["port"], "GET", location)
        try:
            sj = json.loads(sb)
        except ValueError:
            sj = {}
        if s != 200 or sj.get("status") != "queued" or sj.get("id") != qid:
            findings.append(f"{tag}: GET {location} answered {s} {sb[:200]!r} (expected 200, status queued)")
    return qid


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def db_files(db):
    return {suffix: file_size(db + suffix) for suffix in ("", "-wal", "-shm")}


# ---- 1. durable enqueues per second -------------------------------------------------------------------
def wrk_post(bench, bb, conns, seconds, script):
    pid = bb["proc"].popen.pid
    m_before = metrics(bb["admin"])
    before = B.cpu_ticks([pid])
    cores_before = B.core_ticks(B.PROXY_CORE), B.core_ticks(B.LOAD_CORE)
    out = subprocess.run(["taskset", "-c", B.LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "--timeout", "10s", "-s", script, f"http://127.0.0.1:{bb['port']}{PATH}"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    after = B.cpu_ticks([pid])
    cores_after = B.core_ticks(B.PROXY_CORE), B.core_ticks(B.LOAD_CORE)
    time.sleep(0.2)  # the requests wrk abandoned at its end: committed, or not, by now
    m_after = metrics(bb["admin"])
    w = B.parse_wrk(out)
    total = w["requests"]

    def delta(name):
        a, b = metric_sum(m_before, name), metric_sum(m_after, name)
        return None if a is None or b is None else b - a

    user_us, kernel_us = ((a - b) / B.CLK_TCK * 1e6 / max(total, 1) for a, b in zip(after, before))
    commits = delta("breakerbox_queue_commit_duration_seconds_count")
    commit_s = delta("breakerbox_queue_commit_duration_seconds_sum")
    return {**w, "cpu_us": user_us + kernel_us, "user_us": user_us, "kernel_us": kernel_us,
            "proxy_core_busy": B.busy_fraction(cores_before[0], cores_after[0]),
            "load_core_busy": B.busy_fraction(cores_before[1], cores_after[1]),
            "enqueued": delta("breakerbox_queue_enqueued_total"),
            "commits_per_s": commits / seconds if commits else None,
            "per_commit": total / commits if commits else None,
            "commit_ms": commit_s / commits * 1000 if commits and commit_s is not None else None}


def post_script(bench):
    return bench.write("queue-post.lua", "wrk.method = \"POST\"\n"
                                         "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                                         f"wrk.body = '{BODY.decode()}'\n")


def open_box(bench, name, mode, findings, first):
    """A breakerbox with a new, empty database and its circuit forced open (the upstream, nginx, is never
    asked). The first of each mode is also checked against docs/queue.md: the 202, the files' modes."""
    bb = start(bench, name, mode, bench.upstream_port)
    force_open(bench, bb)
    if first:
        check_202(bench, bb, findings)
        for path, want in ((os.path.dirname(bb["db"]), 0o700), (bb["db"], 0o600)):
            got = os.stat(path).st_mode & 0o777 if os.path.exists(path) else None
            if got != want:
                findings.append(f"queue/{name}: {path} has mode {oct(got) if got is not None else 'missing'}, "
                                f"docs/queue.md says {oct(want)} when breakerbox creates it")
    return bb


def check_cell(bench, findings, tag, r, conns):
    if r["non2xx"] or r["socket_errors"]:
        bench.failures.append(f"{tag}: {r['non2xx']} answers other than 2xx, {r['socket_errors']} socket errors")
    if r["enqueued"] is None:
        findings.append(f"{tag}: /metrics has no breakerbox_queue_enqueued_total for {UPSTREAM}")
    elif not r["requests"] <= r["enqueued"] <= r["requests"] + conns:
        bench.failures.append(f"{tag}: wrk got {r['requests']} answers, breakerbox counted {r['enqueued']:.0f} "
                              f"enqueues (expected between {r['requests']} and {r['requests'] + conns})")


def discard(bench, bb):
    """Stops a breakerbox and removes its database (a few hundred MB after a long cell)."""
    bench.stop(bb["proc"])
    shutil.rmtree(os.path.dirname(bb["db"]), ignore_errors=True)


def enqueue_rate(bench, findings, seconds, reps):
    """Each cell on a new breakerbox with an empty database: the rate falls as the database grows (see
    growth), so full and normal are compared on databases of the same size. The last repetition's
    64-connection databases are kept for the bytes on disk."""
    script = post_script(bench)
    conn_cells = (64,) if seconds <= 1 else (64, 256)
    results, disk, checked = {}, {}, set()
    for rep in range(reps):
        order = ("full", "normal") if rep % 2 == 0 else ("normal", "full")
        for conns in conn_cells:
            for mode in order:
                bb = open_box(bench, f"enqueue-{mode}-{conns}-{rep}", mode, findings, mode not in checked)
                checked.add(mode)
                r = wrk_post(bench, bb, conns, seconds, script)
                results.setdefault((mode, conns), []).append(r)
                check_cell(bench, findings, f"queue/enqueue {mode}, {conns} conns", r, conns)
                if rep == reps - 1 and conns == conn_cells[0]:
                    disk[f"{mode} ({conns} conns, {seconds} s)"] = on_disk(bench, bb, findings)
                    shutil.rmtree(os.path.dirname(bb["db"]), ignore_errors=True)
                else:
                    discard(bench, bb)
        print(f"  queue: enqueue repetition {rep + 1}/{reps} done", file=sys.stderr)
    med = {k: {m: (statistics.median(x[m] for x in v) if all(x[m] is not None for x in v) else None) for m in v[0]}
           for k, v in results.items()}
    for k, v in results.items():
        med[k]["rps_range"] = (min(x["rps"] for x in v), max(x["rps"] for x in v))
    return med, disk


def growth(bench, findings, seconds, steps, disk):
    """One breakerbox (full, 64 connections) for `steps` runs in a row: the rate against the entries
    already queued."""
    script = post_script(bench)
    bb = open_box(bench, "growth", "full", findings, False)
    out = []
    for i in range(steps):
        entries, _ = depth_of(bb["admin"])
        r = wrk_post(bench, bb, 64, seconds, script)
        check_cell(bench, findings, f"queue/growth step {i + 1}", r, 64)
        r["entries_before"] = entries
        out.append(r)
    disk[f"full (growth, {steps} × {seconds} s)"] = on_disk(bench, bb, findings)
    shutil.rmtree(os.path.dirname(bb["db"]), ignore_errors=True)
    print("  queue: growth done", file=sys.stderr)
    return out


# ---- 3. bytes on disk ---------------------------------------------------------------------------------
def on_disk(bench, bb, findings):
    entries, block = depth_of(bb["admin"])
    live = db_files(bb["db"])
    logical = block.get("bytes") if isinstance(block, dict) else None
    p = bb["proc"]
    try:
        os.killpg(p.popen.pid, signal.SIGTERM)  # a clean stop: the last connection's close checkpoints
        p.popen.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        findings.append(f"queue/{bb['name']}: breakerbox did not stop within 15 s of SIGTERM")
    bench.stop(p)
    stopped = db_files(bb["db"])
    wal_kept = os.path.exists(bb["db"] + "-wal")  # a clean close checkpoints and removes it
    rows = None
    try:
        con = sqlite3.connect(bb["db"], timeout=5)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
            rows = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
            page_size = con.execute("PRAGMA page_size").fetchone()[0]
            free_pages = con.execute("PRAGMA freelist_count").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        findings.append(f"queue/{bb['name']}: the database cannot be read after the stop: {e}")
        page_size = free_pages = None
    checkpointed = db_files(bb["db"])
    source = "depth"
    if not entries and rows:
        entries, source = max(rows.values()), "rows"  # the largest table's rows: one per queued request
    if not entries:
        bench.failures.append(f"queue/{bb['name']}: no queue depth to divide by (got {entries!r})")
        entries = None
    per = (lambda n: n / entries if entries else None)
    return {"entries": entries, "entries_from": source, "rows": rows, "logical_bytes": logical,
            "live_db": live[""], "live_wal": live["-wal"], "live_per_entry": per(live[""] + live["-wal"]),
            "stopped_db": stopped[""], "stopped_wal": stopped["-wal"] if wal_kept else None,
            "checkpointed_db": checkpointed[""], "checkpointed_per_entry": per(checkpointed[""] + checkpointed["-wal"]),
            "page_size": page_size, "free_pages": free_pages}


# ---- 2. the drain ------------------------------------------------------------------------------------
def enqueue_n(port, n, clients=8):
    """n POSTs from `clients` keep-alive connections; returns ([(status, id, location)], seconds)."""
    out, lock, next_i = [], threading.Lock(), [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                if next_i[0] >= n:
                    break
                next_i[0] += 1
            try:
                conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                try:
                    j = json.loads(body)
                except ValueError:
                    j = {}
                item = (r.status, j.get("id"), r.getheader("Location"))
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                item = (0, None, str(e))
            with lock:
                out.append(item)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out, time.monotonic() - t0


def upstream_stats(port):
    return json.loads(request(port, "GET", "/__stats", timeout=5)[2])


def drain(bench, findings, n):
    upstream_bin = os.path.join(B.BUILD, "breakerbox-test-upstream")
    up_port = B.free_port()
    up = B.Proc("queue upstream", [upstream_bin, "--listen", f"127.0.0.1:{up_port}", "--name", "orders", "--threads", "2",
                                   "--defaults", f"delay_ms={DRAIN_DELAY_MS}"], B.LOAD_CORE)
    bench.procs.append(up)
    B.wait_port(up_port, up)
    bb = start(bench, "drain", "full", up_port)
    res = {"n": n, "rate": DRAIN_RATE, "concurrency": DRAIN_CONCURRENCY, "expected_s": n / DRAIN_RATE}
    try:
        force_open(bench, bb)
        answers, fill_s = enqueue_n(bb["port"], n)
        res["fill_s"] = fill_s
        bad = [a for a in answers if a[0] != 202]
        if bad or len(answers) != n:
            bench.failures.append(f"queue/drain: {len(bad)} of {len(answers)} enqueues not answered 202 "
                                  f"(first: {bad[0] if bad else None})")
        depth, _ = depth_of(bb["admin"])
        res["depth_before"] = depth
        if depth != n:
            findings.append(f"queue/drain: depth {depth!r} after {n} enqueues (expected {n})")
        if upstream_stats(up_port)["paths"].get(PATH, 0):
            findings.append("queue/drain: the upstream received deliveries while the circuit was forced open")
        timeout = 3 * n / DRAIN_RATE + 60
        t0 = time.monotonic()
        status, _, body = admin_post(bb["admin"], f"/admin/circuits/{UPSTREAM}/reset")
        if status != 200:
            bench.failures.append(f"queue/drain: reset answered {status}: {body[:200]!r}")
        first = all_seen = empty = None
        seen = 0
        while time.monotonic() - t0 < timeout:
            now = time.monotonic() - t0
            seen = upstream_stats(up_port)["paths"].get(PATH, 0)
            if seen and first is None:
                first = now
            if seen >= n and all_seen is None:
                all_seen = now
            if all_seen is not None:
                depth, block = depth_of(bb["admin"])
                in_flight = block.get("in_flight", 0) if isinstance(block, dict) else 0
                if depth is None:
                    findings.append("queue/drain: no queue depth, neither in /health/circuits nor in /metrics")
                    break
                if depth == 0 and not in_flight:
                    empty = time.monotonic() - t0
                    break
            time.sleep(0.01)
        stats = upstream_stats(up_port)
        res.update({"first_s": first, "all_delivered_s": all_seen, "drained_s": empty,
                    "upstream_received": stats["paths"].get(PATH, 0), "max_in_flight": stats.get("max_in_flight"),
                    "steady_rate": (n - 1) / (all_seen - first) if first is not None and all_seen and all_seen > first else None})
        if empty is None and all_seen is None:
            bench.failures.append(f"queue/drain: not drained {timeout:.0f} s after the reset: the upstream received "
                                  f"{seen} of {n}, depth {depth_of(bb['admin'])[0]!r}")
        if res["upstream_received"] > n:
            findings.append(f"queue/drain: the upstream received {res['upstream_received']} deliveries for {n} requests "
                            "(no failure was injected: each should have been delivered once)")
        if (res["max_in_flight"] or 0) > DRAIN_CONCURRENCY:
            findings.append(f"queue/drain: the upstream saw {res['max_in_flight']} deliveries at once "
                            f"(delivery.concurrency: {DRAIN_CONCURRENCY})")
        ok = [a for a in answers if a[0] == 202 and a[2]]
        if ok:
            check_delivered(bb, ok[0], findings)
    finally:
        bench.stop(bb["proc"])
        bench.stop(up)
    return res


def check_delivered(bb, answer, findings):
    """The status resource of a delivered request, and the delivery headers the upstream echoed."""
    _, qid, location = answer
    s, _, body = request(bb["port"], "GET", location)
    try:
        j = json.loads(body)
    except ValueError:
        findings.append(f"queue/drain: GET {location} answered {s} with a body that is not JSON")
        return
    resp = j.get("response") or {}
    if s != 200 or j.get("status") != "delivered" or j.get("attempts") != 1 or resp.get("status") != 200:
        findings.append(f"queue/drain: status resource after the drain: {s} {json.dumps(j)[:400]}")
        return
    try:
        echoed = {k.lower(): v for k, v in json.loads(resp.get("body", "")).get("headers", {}).items()}
    except (ValueError, AttributeError):
        findings.append("queue/drain: the stored response body is not the upstream's JSON echo "
                        f"(truncated: {resp.get('body_truncated')})")
        return
    want = {"x-breakerbox-delivery-attempt": "1", "x-breakerbox-queue-id": qid}
    wrong = {k: echoed.get(k) for k, v in want.items() if echoed.get(k) != v}
    if wrong or not echoed.get("idempotency-key") or echoed.get("idempotency-key") != j.get("idempotency_key"):
        findings.append(f"queue/drain: delivery headers {wrong or ''} Idempotency-Key {echoed.get('idempotency-key')!r} "
                        f"(status resource: {j.get('idempotency_key')!r})")


def run(bench, bench_module):
    global B
    B = bench_module
    findings = []
    seconds, reps = bench.args.seconds, bench.args.reps
    fs = fs_type(bench.dir)
    enq, disk = enqueue_rate(bench, findings, seconds, reps)
    grown = growth(bench, findings, seconds, 2 if seconds <= 1 else 6, disk)
    drained = drain(bench, findings, 200 if seconds <= 1 else 1000)
    for f in findings:
        print(f"  queue finding: {f}", file=sys.stderr)
    return {"enqueue": enq, "growth": grown, "disk": disk, "drain": drained, "fs": fs, "findings": findings,
            "seconds": seconds, "reps": reps}


def print_results(res):
    def f(v, digits=1):
        return "-" if v is None else f"{v:,.{digits}f}"

    enq = res["enqueue"]
    print(f"\n### Queue for later: durable enqueues (circuit forced open, `POST {PATH}` with a {len(BODY):,}-byte JSON "
          f"body, wrk -t1 keep-alive; database on {res['fs']}, new and empty for each run; "
          f"median of {res['reps']} × {res['seconds']} s)\n")
    print("| synchronous | conns | enqueues/s (202s) (range) | p50 ms | p99 ms | breakerbox CPU µs/enqueue (user + kernel) | "
          "commits/s | enqueues per commit | mean commit ms | proxy core busy | load core busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (mode, conns), r in sorted(enq.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lo, hi = r["rps_range"]
        print(f"| {mode} | {conns} | {f(r['rps'], 0)} ({lo:,.0f}–{hi:,.0f}) | {f(r['p50'], 3)} | {f(r['p99'], 3)} | "
              f"{f(r['cpu_us'], 1)} ({f(r['user_us'], 1)} + {f(r['kernel_us'], 1)}) | {f(r['commits_per_s'], 0)} | "
              f"{f(r['per_commit'], 1)} | {f(r['commit_ms'], 2)} | {B.percent(r['proxy_core_busy'])} | "
              f"{B.percent(r['load_core_busy'])} |")
    best = max((r["rps"] for (mode, _), r in enq.items() if mode == "full"), default=0)
    g = res["growth"]
    print(f"\nGoal: ≥ {TARGET_PER_S:,} durable enqueues/s with `synchronous: full` — "
          f"{'**met**' if best >= TARGET_PER_S else '**not met**'} (best median: {best:,.0f}/s from an empty database; "
          f"{g[-1]['rps']:,.0f}/s with {g[-1]['entries_before'] or 0:,} entries already queued, below).")

    print(f"\n### Queue for later: the enqueue rate as the queue grows (full, 64 connections, {len(g)} runs of "
          f"{res['seconds']} s in a row on one database)\n")
    print("| entries queued before | enqueues/s | p99 ms | breakerbox CPU µs/enqueue (user + kernel) | enqueues per commit | "
          "mean commit ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in g:
        print(f"| {f(r['entries_before'], 0)} | {f(r['rps'], 0)} | {f(r['p99'], 2)} | {f(r['cpu_us'], 1)} "
              f"({f(r['user_us'], 1)} + {f(r['kernel_us'], 1)}) | {f(r['per_commit'], 1)} | {f(r['commit_ms'], 2)} |")

    d = res["drain"]
    print(f"\n### Queue for later: drain after the circuit closes ({d['n']:,} queued; delivery rate {d['rate']}/s, "
          f"concurrency {d['concurrency']}; the upstream answers after {DRAIN_DELAY_MS} ms)\n")
    print("| expected N / rate | first delivery | upstream received all | queue depth 0 | steady rate /s | "
          "max deliveries at once | enqueue of the N took |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {f(d['expected_s'], 2)} s | {f(d['first_s'], 3)} s | {f(d['all_delivered_s'], 2)} s | "
          f"{f(d['drained_s'], 2)} s | {f(d.get('steady_rate'), 1)} | {d.get('max_in_flight', '-')} | {f(d.get('fill_s'), 2)} s |")

    print(f"\n### Queue for later: bytes on disk per queued request ({len(BODY):,}-byte body)\n")
    print("| database | entries | running: db + wal bytes | per entry | wal after a clean stop | "
          "after stop + checkpoint: db bytes | per entry | queue's own count of bytes | page size | free pages |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, k in res["disk"].items():
        entries = f(k['entries'], 0) + (" (rows)" if k["entries_from"] == "rows" else "")
        wal = "removed" if k["stopped_wal"] is None else f"{k['stopped_wal']:,} bytes"
        print(f"| {mode} | {entries} | {f(k['live_db'], 0)} + {f(k['live_wal'], 0)} | {f(k['live_per_entry'], 0)} | {wal} | "
              f"{f(k['checkpointed_db'], 0)} | {f(k['checkpointed_per_entry'], 0)} | {f(k['logical_bytes'], 0)} | "
              f"{k['page_size'] or '-'} | {f(k['free_pages'], 0)} |")
    rows = {m: k["rows"] for m, k in res["disk"].items() if k["rows"]}
    if rows:
        print(f"\n(rows per table after the stop: {rows})")
    if res["findings"]:
        print("\nDifferences from docs/queue.md seen while measuring:")
        for x in res["findings"]:
            print(f"- {x}")
