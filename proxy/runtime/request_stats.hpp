// Request-path statistics, declared once (X-macros) so that the counters, their Prometheus label values
// and the /health/circuits keys cannot drift apart. Worker-owned blocks of single-writer counters;
// readers (the admin listener) sum them across workers.
#pragma once
#include "config/config.hpp"
#include "core/local_counter.hpp"
#include "tls/handshake_result.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace breakerbox::runtime {

// Upstream call outcomes as recorded (label `outcome`). client_gone: the client went away while its
// call was queued for the bulkhead or in flight (cancelled; the breaker records nothing for it).
#define BREAKERBOX_UPSTREAM_OUTCOMES(X) \
    X(success)                          \
    X(status_failure)                   \
    X(connect_failed)                   \
    X(connect_timeout)                  \
    X(tls_handshake_failed)             \
    X(tls_verify_failed)                \
    X(tls_reset)                        \
    X(timeout)                          \
    X(reset)                            \
    X(invalid_response)                 \
    X(ignored)                          \
    X(client_gone)

// Requests answered locally without reaching the upstream (label `reason`).
#define BREAKERBOX_REJECTION_REASONS(X) \
    X(circuit_open)                     \
    X(cluster_open)                     \
    X(half_open_full)                   \
    X(recovery_ramp)                    \
    X(bulkhead_full)                    \
    X(queue_timeout)                    \
    X(connection_limit)                 \
    X(no_endpoint)                      \
    X(no_healthy_endpoint)              \
    X(stream_limit)                     \
    X(tunnel_limit)

// What happened to retries (label `result`).
#define BREAKERBOX_RETRY_RESULTS(X) \
    X(attempted)                    \
    X(succeeded)                    \
    X(budget_exhausted)             \
    X(stopped_by_breaker)           \
    X(abandoned)

// How streamed exchanges and tunnels ended (label `end`). upstream_failed: the upstream broke, was
// invalid or exceeded max_response_body after the answer had begun (the client's connection is aborted;
// the breaker records a failure); client_closed: the client went away or stopped reading; drained: the
// drain timeout ended a tunnel; circuit_opened: streaming.close_tunnels_on_open.
#define BREAKERBOX_STREAM_ENDS(X) \
    X(completed)                  \
    X(upstream_failed)            \
    X(client_closed)              \
    X(idle_timeout)               \
    X(total_timeout)              \
    X(drained)                    \
    X(circuit_opened)

#define BREAKERBOX_ENUM_ENTRY(name) name,
#define BREAKERBOX_NAME_ENTRY(name) #name,

enum class upstream_outcome : std::uint8_t { BREAKERBOX_UPSTREAM_OUTCOMES(BREAKERBOX_ENUM_ENTRY) count };
enum class rejection_reason : std::uint8_t { BREAKERBOX_REJECTION_REASONS(BREAKERBOX_ENUM_ENTRY) count };
enum class retry_result : std::uint8_t { BREAKERBOX_RETRY_RESULTS(BREAKERBOX_ENUM_ENTRY) count };
enum class stream_end : std::uint8_t { BREAKERBOX_STREAM_ENDS(BREAKERBOX_ENUM_ENTRY) count };

inline constexpr std::array<std::string_view, static_cast<std::size_t>(upstream_outcome::count)> upstream_outcome_names{
    BREAKERBOX_UPSTREAM_OUTCOMES(BREAKERBOX_NAME_ENTRY)};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(rejection_reason::count)> rejection_reason_names{
    BREAKERBOX_REJECTION_REASONS(BREAKERBOX_NAME_ENTRY)};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(retry_result::count)> retry_result_names{
    BREAKERBOX_RETRY_RESULTS(BREAKERBOX_NAME_ENTRY)};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(stream_end::count)> stream_end_names{
    BREAKERBOX_STREAM_ENDS(BREAKERBOX_NAME_ENTRY)};
// TLS handshakes with the upstream (label `result`), by tls::handshake_result.
inline constexpr std::array<std::string_view, static_cast<std::size_t>(tls::handshake_result::count)> tls_handshake_result_names{
    BREAKERBOX_TLS_HANDSHAKE_RESULTS(BREAKERBOX_NAME_ENTRY)};
// Fallbacks served (label `kind`): counted by config::fallback_kind, named as the config names them.
inline constexpr std::size_t fallback_kind_count = std::size(config::fallback_kind_names);
inline constexpr auto fallback_kind_labels = [] {
    std::array<std::string_view, fallback_kind_count> labels{};
    for (std::size_t i = 0; i < labels.size(); ++i)
        labels[i] = config::fallback_kind_names[i].name;
    return labels;
}();
static_assert(
    [] {
        for (std::size_t i = 0; i < fallback_kind_count; ++i)
            if (static_cast<std::size_t>(config::fallback_kind_names[i].value) != i)
                return false;
        return true;
    }(),
    "config::fallback_kind_names must list the kinds in the enum's order (they index the counters)");

// Upper bounds of the request-duration histogram, in seconds (Prometheus `le`).
inline constexpr std::array<double, 14> duration_buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// The counters of one upstream: on one worker (Counter = local_counter, written by that worker only),
// or summed over the workers for a report (Counter = std::uint64_t, upstream_totals).
template <class Counter>
struct upstream_counters {
    std::array<Counter, static_cast<std::size_t>(upstream_outcome::count)> outcomes{};
    std::array<Counter, static_cast<std::size_t>(rejection_reason::count)> rejections{};
    std::array<Counter, static_cast<std::size_t>(retry_result::count)> retries{};
    std::array<Counter, fallback_kind_count> fallbacks{};
    std::array<Counter, static_cast<std::size_t>(tls::handshake_result::count)> tls_handshakes{};
    std::array<Counter, static_cast<std::size_t>(stream_end::count)> streams{}; // streamed exchanges, by how they ended
    std::array<Counter, static_cast<std::size_t>(stream_end::count)> tunnels{}; // upgraded connections, by how they ended
    Counter slow{};
    std::array<Counter, duration_buckets.size() + 1> duration_bucket{}; // last: +Inf
    Counter duration_sum_ns{};
};

// Calls f(x, y) for each counter x of `a` and the counter y of `b` in the same place: the one list of
// the fields, for every operation that goes over all of them.
template <class A, class B, class F>
void for_each_counter(A& a, B& b, F&& f)
{
    const auto pairwise = [&](auto& xs, auto& ys) {
        for (std::size_t i = 0; i < xs.size(); ++i)
            f(xs[i], ys[i]);
    };
    pairwise(a.outcomes, b.outcomes);
    pairwise(a.rejections, b.rejections);
    pairwise(a.retries, b.retries);
    pairwise(a.fallbacks, b.fallbacks);
    pairwise(a.tls_handshakes, b.tls_handshakes);
    pairwise(a.streams, b.streams);
    pairwise(a.tunnels, b.tunnels);
    f(a.slow, b.slow);
    pairwise(a.duration_bucket, b.duration_bucket);
    f(a.duration_sum_ns, b.duration_sum_ns);
}

struct upstream_stats : upstream_counters<local_counter> {
    void observe_duration(std::int64_t ns) noexcept
    {
        const double s = static_cast<double>(ns) / 1e9;
        std::size_t i = 0;
        while (i < duration_buckets.size() && s > duration_buckets[i])
            ++i;
        duration_bucket[i].add();
        duration_sum_ns.add(static_cast<std::uint64_t>(ns > 0 ? ns : 0));
    }
    void count(upstream_outcome o) noexcept { outcomes[static_cast<std::size_t>(o)].add(); }
    void count(rejection_reason r) noexcept { rejections[static_cast<std::size_t>(r)].add(); }
    void count(retry_result r) noexcept { retries[static_cast<std::size_t>(r)].add(); }
    void count(config::fallback_kind f) noexcept { fallbacks[static_cast<std::size_t>(f)].add(); }
    void count_stream(stream_end e) noexcept { streams[static_cast<std::size_t>(e)].add(); }
    void count_tunnel(stream_end e) noexcept { tunnels[static_cast<std::size_t>(e)].add(); }
};

using upstream_totals = upstream_counters<std::uint64_t>;

inline void accumulate(upstream_totals& total, const upstream_stats& one_worker)
{
    for_each_counter(total, one_worker, [](std::uint64_t& t, const local_counter& c) { t += c.value(); });
}

// The labelled per-upstream counter families, declared once for /metrics and /health/circuits: the
// Prometheus family and its help, the label, the /health/circuits key, and the label values (the
// lists above, whose order is the counters' order).
struct labelled_family {
    std::string_view metric;
    std::string_view help;
    std::string_view label;
    std::string_view json_key;
    std::span<const std::string_view> values;
    std::span<const std::uint64_t> (*counts)(const upstream_totals&);
};

inline constexpr labelled_family upstream_families[]{
    {"breakerbox_upstream_requests_total", "Upstream calls by outcome.", "outcome", "requests", upstream_outcome_names,
     [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.outcomes); }},
    {"breakerbox_rejections_total", "Requests answered locally without reaching the upstream, by reason.", "reason", "rejections",
     rejection_reason_names, [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.rejections); }},
    {"breakerbox_retries_total", "Retries by result.", "result", "retries", retry_result_names,
     [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.retries); }},
    {"breakerbox_fallbacks_total", "Responses served by a fallback, by kind.", "kind", "fallbacks", fallback_kind_labels,
     [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.fallbacks); }},
    {"breakerbox_upstream_tls_handshakes_total",
     "TLS handshakes with the upstream's endpoints, by result (full, resumed, or how it failed).", "result", "tls_handshakes",
     tls_handshake_result_names, [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.tls_handshakes); }},
    {"breakerbox_streams_total", "Streamed exchanges (bodies relayed piece by piece) by how they ended.", "end", "streams",
     stream_end_names, [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.streams); }},
    {"breakerbox_tunnels_total", "Upgraded connections (WebSocket and other Upgrade protocols) by how they ended.", "end",
     "tunnels", stream_end_names, [](const upstream_totals& t) { return std::span<const std::uint64_t>(t.tunnels); }},
};

// Proxy-wide figures of one worker (local_counter), or summed over the workers (worker_totals).
template <class Counter>
struct worker_counters {
    Counter connections_accepted{};
    Counter connections_parked{};                // idle keep-alive connections that gave their buffers back
    Counter requests{};                          // requests read from clients (answered by anyone)
    std::array<Counter, 6> responses_by_class{}; // index = status / 100 (1xx..5xx)
    Counter proxy_errors{};                      // responses breakerbox generated itself
};
using worker_stats = worker_counters<local_counter>;
using worker_totals = worker_counters<std::uint64_t>;

inline void accumulate(worker_totals& total, const worker_stats& w)
{
    total.connections_accepted += w.connections_accepted.value();
    total.connections_parked += w.connections_parked.value();
    total.requests += w.requests.value();
    for (std::size_t i = 0; i < total.responses_by_class.size(); ++i)
        total.responses_by_class[i] += w.responses_by_class[i].value();
    total.proxy_errors += w.proxy_errors.value();
}

// A configuration generation's view of its worker's statistics: the worker's own counters, and one
// upstream_stats per upstream of the generation (by index). The objects are the worker's for its whole
// life, per upstream name (worker_stats_registry): a reload neither restarts a Prometheus counter nor
// loses what the requests still finishing on the old generation count.
struct generation_stats {
    std::shared_ptr<worker_stats> worker;
    struct upstream_list {
        std::vector<std::shared_ptr<upstream_stats>> items; // same order as the generation's upstreams
        upstream_stats& operator[](std::size_t i) const noexcept { return *items[i]; }
        std::size_t size() const noexcept { return items.size(); }
    } upstreams;
};

// Worker-owned: the statistics objects of one worker, handed to each generation it serves.
class worker_stats_registry {
public:
    // The objects for a generation whose upstreams are named `names`, in that order: an upstream seen
    // before keeps its counters; one the generation does not name is forgotten at once (an older
    // generation still serving keeps counting into its own objects, which nobody reports any more), so
    // an upstream removed and later added again starts from zero on every worker alike.
    generation_stats for_upstreams(const std::vector<std::string_view>& names)
    {
        generation_stats g{worker_, {}};
        g.upstreams.items.reserve(names.size());
        for (auto name : names) {
            auto& slot = by_name_[std::string(name)];
            if (!slot)
                slot = std::make_shared<upstream_stats>();
            g.upstreams.items.push_back(slot);
        }
        std::erase_if(by_name_, [&](const auto& entry) {
            return std::find(names.begin(), names.end(), std::string_view(entry.first)) == names.end();
        });
        return g;
    }

private:
    std::shared_ptr<worker_stats> worker_ = std::make_shared<worker_stats>();
    std::unordered_map<std::string, std::shared_ptr<upstream_stats>> by_name_;
};

} // namespace breakerbox::runtime
