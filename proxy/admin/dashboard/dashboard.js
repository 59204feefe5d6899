// breakerbox dashboard: one page, served from the binary, reading only /events (whose snapshot is the
// /health/circuits body, and whose samples are what /metrics counts). No external requests (the Content-Security-Policy forbids them). The admin
// token, when entered, stays in this page's memory and is sent only with operator actions.
"use strict";

const SAMPLE_WINDOW = 300; // seconds of history drawn in the sparklines
const STATE_RANK = { open: 0, forced_open: 1, half_open: 2, disabled: 3, forced_closed: 4, closed: 5 };

const model = {
  health: null,      // the last /health/circuits body
  samples: Object.create(null), // upstream -> [{t, rps, p99, errors, ...}] (no prototype: any name is safe)
  events: [],        // timeline, newest first
  seen: new Set(),   // event ids already in the timeline
  token: null,       // admin token, once accepted
  instance: null,    // the sidecar's instance id: event ids start afresh with a new process
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }

function duration(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// ---- data in ------------------------------------------------------------------------------------
// `live`: a sample sent after the snapshot (the snapshot's totals already hold its history's counts).
function addSample(sample, live) {
  for (const u of sample.upstreams) {
    const list = model.samples[u.upstream] || (model.samples[u.upstream] = []);
    const failures = sum(u.requests) - (u.requests.success || 0) - (u.requests.ignored || 0) - (u.requests.client_gone || 0);
    list.push({ t: sample.t, rps: sum(u.requests) + sum(u.rejections), p99: u.latency_ms ? u.latency_ms.p99 : null,
                errors: failures, fallbacks: sum(u.fallbacks), state: u.state, bulkhead: u.bulkhead,
                budget: u.retry_budget_in_use, ejected: u.ejected });
    if (list.length > SAMPLE_WINDOW) list.shift();
    const h = model.health && model.health.upstreams[u.upstream];
    if (h) { // the live figures; the policy (thresholds) comes with the snapshot
      Object.assign(h, { state: u.state, decided_by: u.decided_by, reason: u.reason, seconds_in_state: u.seconds_in_state,
                         next_probe_in_ms: u.next_probe_in_ms, bulkhead: { ...h.bulkhead, ...u.bulkhead } });
      h.window.failure_rate = u.failure_rate;
      h.window.slow_call_rate = u.slow_call_rate;
      h.retries.budget_in_use = u.retry_budget_in_use;
      if (h.outlier_detection && u.ejected != null) h.outlier_detection.ejected = u.ejected;
      if (live) { // the snapshot's totals, kept current by each second's changes
        addCounts(h, "requests", u.requests);
        addCounts(h, "fallbacks", u.fallbacks);
      }
    }
  }
}

function addCounts(h, key, changes) {
  const totals = h[key] || (h[key] = {});
  for (const [k, n] of Object.entries(changes || {})) totals[k] = (totals[k] || 0) + n;
}

// `live`: it happened just now (a kept event from the snapshot is history: the snapshot's own state is newer).
function addEvent(kind, id, data, live) {
  if (id != null) {
    if (model.seen.has(id)) return;
    model.seen.add(id);
  }
  model.events.unshift({ kind, id, data, at: data.at }); // the server's time (every event has one)
  if (model.events.length > 200) model.seen.delete(model.events.pop().id);
  if (live && kind === "transition" && model.health) {
    const h = model.health.upstreams[data.upstream];
    if (h) { h.state = data.to; h.reason = data.reason; h.seconds_in_state = 0; if (data.decided_by) h.decided_by = data.decided_by; }
  }
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("open", () => setStatus("live"));
  source.addEventListener("error", () => {
    setStatus("reconnecting…", "lost");
    // The browser retries by itself, except after an answer that is not a stream (503 too_many_viewers).
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
  source.addEventListener("snapshot", (m) => {
    const s = JSON.parse(m.data);
    const instance = s.health.instance && s.health.instance.id;
    if (instance !== model.instance) { model.seen.clear(); model.events = []; model.instance = instance; }
    model.health = s.health;
    model.samples = Object.create(null);
    for (const sample of s.samples) addSample(sample, false);
    for (const e of s.events) addEvent(e.event, e.id, e.data, false);
    render();
  });
  source.addEventListener("sample", (m) => { addSample(JSON.parse(m.data), true); render(); });
  for (const kind of ["transition", "operator", "reload"])
    source.addEventListener(kind, (m) => { addEvent(kind, Number(m.lastEventId), JSON.parse(m.data), true); render(); });
  // A reload may change upstreams and thresholds: a new connection brings a new snapshot.
  source.addEventListener("reload", () => { source.close(); setTimeout(connect, 200); });
}

// ok | degraded (something half-open or forced) | open, as /health/circuits says it.
function overallStatus() {
  const states = Object.values(model.health.upstreams).map((h) => h.state);
  if (states.some((s) => s === "open" || s === "forced_open")) return "open";
  if (states.some((s) => s === "half_open")) return "degraded";
  return "ok";
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "pill " + (cls || text);
}

// ---- drawing ------------------------------------------------------------------------------------
function sparkline(values, cls) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${SAMPLE_WINDOW} 34`);
  svg.setAttribute("preserveAspectRatio", "none");
  const finite = values.filter((v) => v != null);
  const max = Math.max(1e-9, ...finite);
  const points = [];
  values.forEach((v, i) => {
    if (v == null) return;
    points.push(`${SAMPLE_WINDOW - values.length + i},${(32 - (v / max) * 30).toFixed(1)}`);
  });
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  if (cls) line.setAttribute("class", cls);
  svg.append(line);
  return svg;
}

function rateBar(label, rate, threshold) {
  const bar = el("div", { class: "bar" });
  const fill = el("div", { class: "fill" + (threshold != null && rate * 100 >= threshold ? " over" : "") });
  fill.style.width = `${Math.min(100, rate * 100)}%`;
  bar.append(fill);
  if (threshold != null) {
    const mark = el("div", { class: "mark", title: `threshold ${threshold}%` });
    mark.style.left = `${Math.min(100, threshold)}%`;
    bar.append(mark);
  }
  return el("div", { class: "row" }, el("span", {}, `${label} ${(rate * 100).toFixed(1)}%`), bar);
}

function usageBar(label, used, limit) {
  const bar = el("div", { class: "bar" });
  const fill = el("div", { class: "fill" + (limit && used >= limit ? " over" : "") });
  fill.style.width = limit ? `${Math.min(100, (100 * used) / limit)}%` : "0%";
  bar.append(fill);
  return el("div", { class: "row" }, el("span", {}, `${label} ${used}${limit ? " / " + limit : ""}`), bar);
}

function tile(name, h) {
  const samples = model.samples[name] || [];
  const last = samples[samples.length - 1] || {};
  const lastMinute = samples.slice(-60);
  const policy = h.policy.circuit_breaker;
  const t = el("article", { class: `tile ${h.state}`, "data-upstream": name });
  t.append(el("h3", {}, name, el("span", { class: `state ${h.state}`, "data-role": "state" }, h.state.replace("_", " "))));
  let timing = `for ${duration(h.seconds_in_state)}`;
  if (h.next_probe_in_ms != null) timing += ` · next probe in ${duration(h.next_probe_in_ms / 1000)}`;
  else if (h.state === "forced_open") timing += " · no probe until an operator releases it";
  t.append(el("div", { class: "row muted" }, el("span", {}, timing),
              el("span", { "data-role": "decided-by" }, `decided by ${(h.decided_by || "breaker").replace("_", " ")}`)));
  t.append(el("div", { class: "reason", title: h.reason }, h.reason));
  t.append(rateBar("errors", h.window.failure_rate,
                   policy.failure_rate && policy.failure_rate.enabled ? policy.failure_rate.threshold_percent : null));
  t.append(rateBar("slow", h.window.slow_call_rate,
                   policy.slow_calls && policy.slow_calls.enabled ? policy.slow_calls.rate_threshold_percent : null));
  t.append(el("div", { class: "row" }, el("span", {}, `requests ${last.rps != null ? last.rps : 0}/s`),
              el("span", { class: "muted" }, `fallbacks last min ${lastMinute.reduce((a, s) => a + s.fallbacks, 0)}`)));
  t.append(sparkline(samples.map((s) => s.rps)));
  t.append(el("div", { class: "row" }, el("span", {}, `p99 ${last.p99 != null ? last.p99.toFixed(1) + " ms" : "–"}`),
              el("span", { class: "muted" }, `errors last min ${lastMinute.reduce((a, s) => a + s.errors, 0)}`)));
  t.append(sparkline(samples.map((s) => s.p99), "p99"));
  t.append(usageBar("bulkhead", h.bulkhead.in_flight, h.bulkhead.limit));
  t.append(el("div", { class: "row muted" }, el("span", {}, `queued ${h.bulkhead.queued}`),
              el("span", {}, `retry budget in use ${h.retries.budget_in_use}`)));
  const kinds = failureKinds(h.requests);
  if (kinds) t.append(el("div", { class: "row muted", "data-role": "failure-kinds" }, el("span", {}, `failures since start: ${kinds}`)));
  const served = Object.entries(h.fallbacks || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(" · ");
  if (served) t.append(el("div", { class: "row muted", "data-role": "fallbacks" }, el("span", {}, `fallbacks served: ${served}`)));
  if (h.outlier_detection) {
    const out = h.outlier_detection.endpoints.filter((e) => e.state === "ejected").map((e) => e.address);
    t.append(el("div", { class: "row muted" }, el("span", {},
      `endpoints ejected ${h.outlier_detection.ejected} of ${h.outlier_detection.endpoints.length}` +
      (out.length ? `: ${out.join(", ")}` : ""))));
  }
  const ops = el("div", { class: "ops" + (model.token ? "" : " hidden") });
  for (const [action, label] of [["force-open", "force open"], ["force-closed", "force closed"], ["reset", "reset"]])
    ops.append(el("button", { type: "button", "data-action": action, onclick: () => act(name, action) }, label));
  t.append(ops);
  return t;
}

// What the upstream's failures were, by kind, since start ("refused 5 · 5xx 2"), or "" when none: the
// cause stays in view when a later transition (a failed probe) replaces the reason above.
function failureKinds(r) {
  if (!r) return "";
  const kinds = [["refused", r.connect_failed], ["timeout", (r.timeout || 0) + (r.connect_timeout || 0)],
                 ["5xx", r.status_failure], ["TLS", (r.tls_handshake_failed || 0) + (r.tls_verify_failed || 0) + (r.tls_reset || 0)],
                 ["reset", r.reset], ["invalid", r.invalid_response]];
  return kinds.filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(" · ");
}

function badness(h) {
  return [STATE_RANK[h.state] ?? 9, -h.window.failure_rate, -h.window.slow_call_rate];
}

// A click is a press and a release on the same element: tiles rebuilt in between would lose it, so a
// render waits while a pointer is down.
let pointerDown = false, renderWaiting = false;
document.addEventListener("pointerdown", () => { pointerDown = true; });
function pointerReleased() {
  pointerDown = false;
  if (renderWaiting) setTimeout(render, 0); // after the click has been dispatched
}
document.addEventListener("pointerup", pointerReleased);
document.addEventListener("pointercancel", pointerReleased);
window.addEventListener("blur", pointerReleased); // released outside the window

function render() {
  if (pointerDown) { renderWaiting = true; return; }
  renderWaiting = false;
  if (!model.health) return;
  setStatus(overallStatus());
  const inst = model.health.instance || {};
  $("instance").textContent = `${inst.id || ""} · v${inst.version || "?"} · config generation ${model.health.config_generation}`;
  let names = Object.keys(model.health.upstreams);
  if ($("sort").value === "worst") {
    names.sort((a, b) => {
      const x = badness(model.health.upstreams[a]), y = badness(model.health.upstreams[b]);
      for (let i = 0; i < x.length; ++i) if (x[i] !== y[i]) return x[i] - y[i];
      return a.localeCompare(b);
    });
  } else names.sort();
  const focused = focusedButton(); // a keyboard user's place survives the redraw
  $("tiles").replaceChildren(...names.map((n) => tile(n, model.health.upstreams[n])));
  $("timeline").replaceChildren(...model.events.map(timelineItem));
  if (focused) {
    const again = document.querySelector(`[data-upstream="${CSS.escape(focused.upstream)}"] button[data-action="${CSS.escape(focused.action)}"]`);
    if (again) again.focus();
  }
}

// The operator button that has the keyboard focus, by its tile and action (the tiles are redrawn each
// second: without this the focus would fall back to the page at every sample).
function focusedButton() {
  const b = document.activeElement;
  if (!b || b.tagName !== "BUTTON" || !b.dataset.action) return null;
  const t = b.closest("[data-upstream]");
  return t ? { upstream: t.dataset.upstream, action: b.dataset.action } : null;
}

// "2026-12-07 19:48:35 UTC": the server's time of the event, with its date, in UTC (a fleet's operators
// share one zone; the page says which).
function utcText(at) {
  const t = new Date(at);
  return Number.isNaN(t.getTime()) ? "(no time)" : t.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function timelineItem(e) {
  const when = utcText(e.at);
  const d = e.data;
  if (e.kind === "transition")
    return el("li", { "data-kind": "transition" }, `${when} ${d.upstream}: ${d.from} → `, el("span", { class: "to" }, d.to), ` — ${d.reason}`);
  if (e.kind === "operator")
    return el("li", { "data-kind": "operator" }, `${when} operator ${d.who}: ${d.action} ${d.upstream}${d.endpoint ? " " + d.endpoint : ""}`);
  return el("li", { "data-kind": e.kind }, `${when} reload: ${d.applied ? "applied, generation " + d.generation : "rejected"}`);
}

// ---- operator actions ---------------------------------------------------------------------------
async function post(path, token) {
  return fetch(path, { method: "POST", cache: "no-store",
                       headers: { Authorization: `Bearer ${token}`, "X-Breakerbox-Actor": "dashboard" } });
}

async function useToken(event) {
  event.preventDefault();
  const token = $("token").value;
  $("token").value = "";
  try {
    const r = await post("/admin/token", token); // checks the token, changes nothing
    model.token = r.ok ? token : null;
    $("token-state").textContent = r.ok ? "operator controls on" : `token refused (${r.status})`;
  } catch (e) {
    $("token-state").textContent = "admin listener unreachable";
  }
  render();
}

async function act(upstream, action) {
  if (!model.token) return;
  try {
    const r = await post(`/admin/circuits/${encodeURIComponent(upstream)}/${action}`, model.token);
    if (r.status === 401 || r.status === 403) { model.token = null; $("token-state").textContent = "token refused"; render(); }
    else if (!r.ok) $("token-state").textContent = `${action} ${upstream}: ${r.status}`;
    // The result itself arrives as events (operator, transition).
  } catch (e) {
    $("token-state").textContent = "admin listener unreachable";
  }
}

// ---- start --------------------------------------------------------------------------------------
$("token-form").addEventListener("submit", useToken);
$("sort").addEventListener("change", render);
connect();
