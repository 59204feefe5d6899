// GET /events on the admin listener: a Server-Sent Events stream (WHATWG HTML §9.2) of what happens,
// and the once-a-second samples the dashboard draws. Owned by the admin server; main thread only —
// the proxy's workers never wait for it: a breaker transition (on whichever thread won it) is copied
// and posted here, and everything else is read from the same snapshots /metrics reads.
//
// Events (each `data:` is one JSON object):
// - `snapshot` (first, on every connection; its `id:` is the last event id): {"health": the
//   /health/circuits body, "samples": the last `sample_history` seconds, "events": the kept history,
//   "last_event_id", "events_lost"}. Lets a page draw at once, and a reconnecting EventSource catch up.
//   Event ids start at the process's start time (ms × 1000), so ids never repeat across restarts.
// - `transition` {upstream, from, to, reason, open_for_ms, at}, `operator` {action, upstream, who, ...},
//   `reload` {applied, generation, errors}: each with an `id:`, kept in a bounded history, replayed after
//   the `Last-Event-ID` a reconnecting client sends (only those still kept; `snapshot.events_lost` says
//   when some were not).
// - `sample` once a second: {"t": unix ms, "upstreams": [{upstream, state, requests{outcome: n},
//   rejections{reason: n}, fallbacks{kind: n}, retries{result: n} — counts during that second —,
//   latency_ms {p50, p99} (from the duration histogram's buckets, interpolated; null without requests),
//   failure_rate, slow_call_rate (the breaker's window, 0–1), bulkhead {in_flight, queued, limit},
//   retry_budget_in_use, ejected, reason (of the last transition), seconds_in_state, next_probe_in_ms
//   (null unless open)}]}. No id: samples are not replayed.
// - a `: heartbeat` comment after `heartbeat` without anything else (samples flow each second, so it
//   is rarely needed), so proxies and browsers keep the connection.
//
// Bounds: at most `max_viewers` at once (more get 503 `too_many_viewers`); each viewer's unsent bytes
// are capped at `viewer_buffer` (and its socket's send buffer is kept small): a viewer that falls
// behind is dropped (counted), never waited for.
#pragma once
#include "admin/admin_context.hpp"
#include "core/asio.hpp"
#include "resilience/circuit_breaker.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

namespace breakerbox::admin {

struct event_limits {
    std::size_t max_viewers = 16;
    std::size_t viewer_buffer = 256 * 1024; // bytes not yet written to one viewer
    nanos heartbeat = seconds(15);
    std::size_t history = 512;        // id-carrying events kept for Last-Event-ID
    std::size_t sample_history = 300; // seconds of samples in the snapshot
};

// One connected viewer: what is waiting to be written, and a timer its writer sleeps on.
struct event_viewer {
    explicit event_viewer(asio::any_io_executor ex) : wake(ex) { wake.expires_at(asio::steady_timer::time_point::max()); }
    std::string pending;
    bool dropped = false;
    asio::steady_timer wake;
    tcp::socket* socket = nullptr; // its connection (the admin session owns it), closed when it is dropped
};

class event_hub {
public:
    event_hub(asio::any_io_executor main, const admin_context& ctx, event_limits limits = {});
    event_hub(const event_hub&) = delete;
    event_hub& operator=(const event_hub&) = delete;

    // Starts the once-a-second sampler (main thread).
    void start();
    // Any thread: a breaker transition; posted to the main thread.
    void post_transition(const resilience::transition_event& e);
    // Main thread: an id-carrying event (operator action, reload).
    void publish(std::string_view kind, nlohmann::json data);

    // Main thread: a new viewer, already given its snapshot and the events after `last_event_id`;
    // nullptr when the viewer limit is reached.
    std::shared_ptr<event_viewer> subscribe(std::optional<std::uint64_t> last_event_id);
    void unsubscribe(const std::shared_ptr<event_viewer>& v);

    const event_limits& limits() const noexcept { return limits_; }
    std::size_t viewers() const noexcept { return viewers_.size(); }
    std::uint64_t dropped_total() const noexcept { return dropped_; }
    std::uint64_t first_id() const noexcept { return first_id_; } // this process's first event id
    // The next sample as it would be sent now (tests).
    nlohmann::json take_sample();

private:
    asio::awaitable<void> sample_loop();
    void send(std::string_view frame);
    void deliver(event_viewer& v, std::string_view frame);

    asio::any_io_executor main_;
    const admin_context& ctx_;
    const event_limits limits_;
    std::list<std::shared_ptr<event_viewer>> viewers_;
    const std::uint64_t first_id_; // this process's first event id: its start time in ms × 1000
    std::uint64_t next_id_;
    struct kept_event {
        std::uint64_t id;
        std::string kind;
        nlohmann::json data;
        std::string frame; // as sent
    };
    std::deque<kept_event> history_;
    std::deque<std::string> samples_; // as sent (JSON text)
    std::uint64_t dropped_ = 0;
    // The previous second's totals per upstream, for the differences.
    std::unordered_map<std::string, runtime::upstream_totals> previous_;
};

// The q-quantile (0–1) of the observations counted in `buckets` (one count per upper bound in
// `bounds`, then +Inf), interpolated linearly inside the bucket it falls in (as Prometheus's
// histogram_quantile); in the units of `bounds`. nullopt without observations.
std::optional<double> bucket_quantile(std::span<const std::uint64_t> buckets, std::span<const double> bounds, double q);

// One Server-Sent Events frame: optional id, the event name, one `data:` line of JSON, a blank line.
std::string sse_frame(std::optional<std::uint64_t> id, std::string_view event, const nlohmann::json& data);

} // namespace breakerbox::admin
