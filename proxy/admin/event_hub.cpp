#include "admin/event_hub.hpp"

#include "admin/health_report.hpp"
#include "admin/upstream_snapshot.hpp"
#include "core/iso8601.hpp"
#include "core/log.hpp"
#include "resilience/circuit_view.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>

namespace breakerbox::admin {
namespace {

// The counts of one labelled family that changed during the second, by label value.
nlohmann::json family_delta(const runtime::labelled_family& family, const runtime::upstream_totals& now,
                            const runtime::upstream_totals& before)
{
    nlohmann::json out = nlohmann::json::object();
    const auto a = family.counts(now);
    const auto b = family.counts(before);
    for (std::size_t k = 0; k < a.size(); ++k)
        if (a[k] != b[k]) // lower: the counters restarted (the upstream was removed and added again)
            out[std::string(family.values[k])] = a[k] > b[k] ? a[k] - b[k] : a[k];
    return out;
}

nlohmann::json latency_json(const runtime::upstream_totals& now, const runtime::upstream_totals& before)
{
    std::array<std::uint64_t, runtime::duration_buckets.size() + 1> delta{};
    for (std::size_t i = 0; i < delta.size(); ++i)
        delta[i] = now.duration_bucket[i] >= before.duration_bucket[i] ? now.duration_bucket[i] - before.duration_bucket[i]
                                                                       : now.duration_bucket[i];
    const auto p50 = bucket_quantile(delta, runtime::duration_buckets, 0.5);
    if (!p50)
        return nullptr;
    const auto p99 = bucket_quantile(delta, runtime::duration_buckets, 0.99);
    return {{"p50", *p50 * 1000.0}, {"p99", *p99 * 1000.0}};
}

// One upstream's second: what requests find now, and what moved since the previous sample (`before`).
nlohmann::json sample_json(const upstream_snapshot& u, const runtime::upstream_totals& before)
{
    const auto& bulk = u.bulkhead;
    nlohmann::json s = {
        {"upstream", u.name()},
        {"state", resilience::to_string(u.circuit.state)},
        {"decided_by", name_of(u.circuit.decided_by)},
        {"reason", u.reason},
        {"seconds_in_state", u.seconds_in_state},
        {"next_probe_in_ms",
         u.next_probe_in ? nlohmann::json(static_cast<double>(*u.next_probe_in) / 1e6) : nlohmann::json(nullptr)},
        {"latency_ms", latency_json(u.totals, before)},
        {"failure_rate", u.failure_rate},
        {"slow_call_rate", u.slow_call_rate},
        {"bulkhead", {{"in_flight", bulk.in_flight}, {"queued", bulk.queued}, {"limit", bulk.limit}}},
        {"retry_budget_in_use", u.retry_budget_in_use},
        {"ejected", u.ejected ? nlohmann::json(*u.ejected) : nlohmann::json(nullptr)},
    };
    for (std::size_t f = 0; f < 4; ++f) // requests, rejections, retries, fallbacks
        s[std::string(runtime::upstream_families[f].json_key)] = family_delta(runtime::upstream_families[f], u.totals, before);
    return s;
}

} // namespace

std::optional<double> bucket_quantile(std::span<const std::uint64_t> buckets, std::span<const double> bounds, double q)
{
    std::uint64_t total = 0;
    for (auto c : buckets)
        total += c;
    if (total == 0)
        return std::nullopt;
    const double rank = q * static_cast<double>(total);
    double below = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
        const double count = static_cast<double>(buckets[i]);
        if (count > 0 && below + count >= rank) {
            if (i >= bounds.size())
                return bounds.back(); // +Inf: the largest finite bound is all that is known
            const double lower = i == 0 ? 0.0 : bounds[i - 1];
            return lower + (bounds[i] - lower) * std::clamp((rank - below) / count, 0.0, 1.0);
        }
        below += count;
    }
    return bounds.back();
}

std::string sse_frame(std::optional<std::uint64_t> id, std::string_view event, const nlohmann::json& data)
{
    std::string out;
    if (id)
        out += "id: " + std::to_string(*id) + "\n";
    out += "event: ";
    out += event;
    out += "\ndata: ";
    out += data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); // one line: dump escapes newlines
    out += "\n\n";
    return out;
}

event_hub::event_hub(asio::any_io_executor main, const admin_context& ctx, event_limits limits)
    : main_(std::move(main)), ctx_(ctx), limits_(limits),
      // Unique across restarts: a browser reconnecting to a new process with an old Last-Event-ID is
      // told (events_lost) and given everything, instead of skipping the new process's first events.
      first_id_(static_cast<std::uint64_t>(ctx.clk.unix_millis()) * 1000), next_id_(first_id_)
{
}

void event_hub::start() { asio::co_spawn(main_, sample_loop(), asio::detached); }

void event_hub::post_transition(const resilience::transition_event& e)
{
    nlohmann::json data = {{"upstream", e.upstream},
                           {"from", resilience::to_string(e.from)},
                           {"to", resilience::to_string(e.to)},
                           {"reason", e.reason},
                           {"decided_by", e.to == resilience::breaker_state::forced_open ||
                                                  e.to == resilience::breaker_state::forced_closed ||
                                                  e.to == resilience::breaker_state::disabled
                                              ? "operator"
                                              : "breaker"},
                           // when it happened (the breaker's clock), not when it was posted here
                           {"at", iso8601(std::chrono::time_point_cast<std::chrono::system_clock::duration>(
                                      wall_time(ctx_.clk) - std::chrono::nanoseconds(ctx_.clk.now() - e.at)))}};
    if (e.to == resilience::breaker_state::open)
        data["open_for_ms"] = static_cast<double>(e.open_for) / 1e6;
    asio::post(main_, [this, data = std::move(data)]() mutable { publish("transition", std::move(data)); });
}

void event_hub::publish(std::string_view kind, nlohmann::json data)
{
    // Every event carries the server's time of it (UTC): a transition brings its own (when the breaker
    // moved), everything else happens now. A page must never stamp an event with its own load time.
    if (!data.contains("at"))
        data["at"] = iso8601(wall_time(ctx_.clk));
    const std::uint64_t id = next_id_++;
    std::string frame = sse_frame(id, kind, data);
    send(frame);
    history_.push_back({id, std::string(kind), std::move(data), std::move(frame)});
    while (history_.size() > limits_.history)
        history_.pop_front();
}

void event_hub::send(std::string_view frame)
{
    for (auto& v : viewers_)
        deliver(*v, frame);
}

void event_hub::deliver(event_viewer& v, std::string_view frame)
{
    if (v.dropped)
        return;
    if (v.pending.size() + frame.size() > limits_.viewer_buffer) {
        // Behind by more than its buffer: dropped, never waited for (the proxy must not slow down, and
        // memory must not grow, for a viewer that does not read).
        v.dropped = true;
        v.pending.clear();
        ++dropped_;
        if (v.socket) { // its writer may be stuck in a write: end it now, not at the write's deadline
            error_code ignored;
            v.socket->close(ignored);
        }
        log::warn("event viewer dropped: it does not read fast enough", {{"buffer_bytes", limits_.viewer_buffer}});
    } else {
        v.pending += frame;
    }
    v.wake.cancel(); // its writer wakes (and, when dropped, closes)
}

std::shared_ptr<event_viewer> event_hub::subscribe(std::optional<std::uint64_t> last_event_id)
{
    if (viewers_.size() >= limits_.max_viewers)
        return nullptr;
    auto v = std::make_shared<event_viewer>(main_);
    nlohmann::json snapshot = {{"events", nlohmann::json::array()}, {"events_lost", false}};
    if (auto report = build_health_report(ctx_, std::nullopt))
        snapshot["health"] = std::move(report->body);
    for (const auto& e : history_)
        snapshot["events"].push_back({{"id", e.id}, {"event", e.kind}, {"data", e.data}});
    const std::uint64_t last_id = next_id_ - 1;
    snapshot["last_event_id"] = last_id;
    // Some it missed are no longer kept — or it saw another process's events (ids start at this
    // process's start time, so an older process's ids are lower, a newer one's never come back).
    if (last_event_id && ((!history_.empty() && history_.front().id > *last_event_id + 1) || *last_event_id > last_id))
        snapshot["events_lost"] = true;
    // The samples are kept as text: spliced in, not parsed and dumped again per viewer.
    std::string text = snapshot.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text.pop_back(); // the closing brace
    text += ",\"samples\":[";
    for (std::size_t i = 0; i < samples_.size(); ++i) {
        if (i > 0)
            text += ',';
        text += samples_[i];
    }
    text += "]}";
    // The snapshot carries the last id, so a client that saw nothing else still resumes from it.
    v->pending = "retry: 2000\n\n"; // reconnect after 2 s (WHATWG HTML §9.2.6)
    if (last_id >= first_id_)
        v->pending += "id: " + std::to_string(last_id) + "\n";
    v->pending += "event: snapshot\ndata: " + text + "\n\n";
    // A reconnecting client (Last-Event-ID) also gets, as events, what it missed and is still kept.
    if (last_event_id)
        for (const auto& e : history_)
            if (e.id > *last_event_id || *last_event_id > last_id)
                v->pending += e.frame;
    viewers_.push_back(v);
    return v;
}

void event_hub::unsubscribe(const std::shared_ptr<event_viewer>& v) { viewers_.remove(v); }

nlohmann::json event_hub::take_sample()
{
    const auto rt = ctx_.state.current();
    const nanos now = ctx_.clk.now();
    nlohmann::json list = nlohmann::json::array();
    std::erase_if(previous_, [&](const auto& kv) { return !rt->index_of(kv.first); }); // removed upstreams
    for (const auto& shared : rt->upstreams) {
        const auto u = take_upstream_snapshot(ctx_, *shared, now);
        auto& before = previous_[u.name()]; // zeros the first time: the first sample counts since start
        list.push_back(sample_json(u, before));
        before = u.totals;
    }
    return {{"t", ctx_.clk.unix_millis()}, {"upstreams", std::move(list)}};
}

asio::awaitable<void> event_hub::sample_loop()
{
    asio::steady_timer timer(main_);
    auto next = ctx_.clk.to_steady(ctx_.clk.now());
    take_sample(); // the baseline: the first sample sent counts one second
    for (;;) {
        next += std::chrono::seconds(1);
        timer.expires_at(next);
        if (auto [ec] = co_await timer.async_wait(nothrow_awaitable); ec)
            co_return;
        // After a stall of the main thread (a blocking reload), one sample for the gap, not a burst.
        next = std::max(next, ctx_.clk.to_steady(ctx_.clk.now()));
        const std::string sample = take_sample().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (!viewers_.empty())
            send("event: sample\ndata: " + sample + "\n\n");
        samples_.push_back(sample);
        while (samples_.size() > limits_.sample_history)
            samples_.pop_front();
    }
}

} // namespace breakerbox::admin
