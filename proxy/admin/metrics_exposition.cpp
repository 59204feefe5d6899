#include "admin/metrics_exposition.hpp"

#include "cluster/cluster_sync.hpp"
#include "queue/queue_store.hpp"

#include "admin/event_hub.hpp"
#include "admin/upstream_snapshot.hpp"
#include "resilience/circuit_view.hpp"
#include "tls/upstream_tls.hpp"

#include <build_info.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <limits>
#include <optional>

namespace breakerbox::admin {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using resilience::breaker_state;

// Every metric family /metrics exposes besides the labelled upstream counters (those come with their
// label values from runtime::upstream_families): name, type and help, declared once, in output order.
#define BREAKERBOX_METRIC_FAMILIES(X)                                                                                            \
    X(build_info, Gauge, "breakerbox_build_info", "Build information; always 1.")                                                \
    X(config_generation, Gauge, "breakerbox_config_generation",                                                                  \
      "The configuration generation serving new requests (1 at start).")                                                         \
    X(config_info, Gauge, "breakerbox_config_info", "The loaded configuration file and its SHA-256; always 1.")                  \
    X(config_reloads, Counter, "breakerbox_config_reloads_total", "Reloads (SIGHUP, POST /admin/reload), by result.")            \
    X(config_last_reload_success, Gauge, "breakerbox_config_last_reload_success_timestamp_seconds",                              \
      "Unix time of the last applied reload (0: none since start).")                                                             \
    X(config_last_reload_successful, Gauge, "breakerbox_config_last_reload_successful",                                          \
      "1 when the last reload was applied (or none was tried), 0 when it was rejected.")                                         \
    X(circuit_state, Gauge, "breakerbox_circuit_state", "1 for the circuit's current state, 0 for the others.")                  \
    X(circuit_state_code, Gauge, "breakerbox_circuit_state_code", "Circuit state as a number: 0 closed, 1 half-open, 2 open.")   \
    X(transitions, Counter, "breakerbox_circuit_transitions_total", "Circuit state transitions.")                                \
    X(trips, Counter, "breakerbox_circuit_trips_total", "Transitions into open or forced-open.")                                 \
    X(window_calls, Gauge, "breakerbox_circuit_window_calls", "Calls in the breaker's sliding window.")                          \
    X(failure_ratio, Gauge, "breakerbox_circuit_failure_ratio", "Failure ratio over the sliding window (0-1).")                  \
    X(slow_call_ratio, Gauge, "breakerbox_circuit_slow_call_ratio", "Slow-call ratio over the sliding window (0-1).")            \
    X(consecutive_failures, Gauge, "breakerbox_circuit_consecutive_failures", "Current run of consecutive failures.")            \
    X(circuit_decided_by, Gauge, "breakerbox_circuit_decided_by",                                                                \
      "1 for who decides what the next request finds (breaker, operator, cluster, cluster_operator), 0 for the others.")         \
    X(next_probe, Gauge, "breakerbox_circuit_next_probe_seconds",                                                                \
      "Seconds until a request may pass again, whoever decides (0 unless open; 0 when forced open).")                            \
    X(slow_requests, Counter, "breakerbox_upstream_slow_requests_total", "Upstream calls slower than the slow-call duration.")   \
    X(bulkhead_in_flight, Gauge, "breakerbox_bulkhead_in_flight", "Requests holding a bulkhead slot.")                           \
    X(bulkhead_queued, Gauge, "breakerbox_bulkhead_queued", "Requests waiting for a bulkhead slot.")                             \
    X(bulkhead_limit, Gauge, "breakerbox_bulkhead_limit", "Bulkhead limit on concurrent requests (0: unlimited).")               \
    X(bulkhead_queue_limit, Gauge, "breakerbox_bulkhead_queue_limit", "Bulkhead wait-queue capacity.")                           \
    X(streams_active, Gauge, "breakerbox_streams_active", "Streamed exchanges in progress (they hold no bulkhead slot).")        \
    X(streams_limit, Gauge, "breakerbox_streams_limit", "streaming.max_streams: streamed exchanges allowed at once.")            \
    X(tunnels_active, Gauge, "breakerbox_tunnels_active", "Upgraded connections (WebSocket, ...) open.")                         \
    X(tunnels_limit, Gauge, "breakerbox_tunnels_limit", "streaming.max_tunnels: upgraded connections allowed at once.")          \
    X(retry_budget_in_use, Gauge, "breakerbox_retry_budget_in_use", "Retries in flight against the retry budget.")               \
    X(tls_certificate_expiry, Gauge, "breakerbox_upstream_tls_certificate_expiry_seconds",                                       \
      "Seconds until the soonest-expiring certificate the upstream's endpoints presented in a full handshake.")                  \
    X(request_duration, Histogram, "breakerbox_upstream_request_duration_seconds",                                               \
      "Duration of upstream calls (connect, write, read).")                                                                      \
    X(outlier_endpoints, Gauge, "breakerbox_outlier_endpoints",                                                                  \
      "Endpoints of the upstream by outlier-detection state (healthy, detected, ejected).")                                      \
    X(outlier_ejections_active, Gauge, "breakerbox_outlier_ejections_active", "Endpoints ejected now.")                          \
    X(outlier_ejections_enforced, Counter, "breakerbox_outlier_ejections_enforced_total", "Ejections carried out, by rule.")     \
    X(outlier_ejections_detected, Counter, "breakerbox_outlier_ejections_detected_total",                                        \
      "Outliers detected, by rule, whether or not ejected (the cap, or too few endpoints to enforce a rate rule).")              \
    X(outlier_circuit_opens, Counter, "breakerbox_outlier_circuit_opens_total",                                                  \
      "Times the upstream's circuit was opened because too few endpoints were healthy (min_healthy_percent).")                   \
    X(outlier_endpoint_ejected, Gauge, "breakerbox_outlier_endpoint_ejected", "1 while the endpoint is ejected, else 0.")        \
    X(outlier_endpoint_ejections, Counter, "breakerbox_outlier_endpoint_ejections_total", "Ejections of the endpoint.")          \
    X(active_probes, Counter, "breakerbox_active_probes_total",                                                                  \
      "Active half-open probes (circuit_breaker.half_open.probe) by outcome.")                                                   \
    X(queue_depth, Gauge, "breakerbox_queue_depth", "Queued requests waiting or being delivered (queue fallback).")              \
    X(queue_in_flight, Gauge, "breakerbox_queue_in_flight", "Queued requests being delivered now.")                              \
    X(queue_bytes, Gauge, "breakerbox_queue_bytes", "Stored size of the queued requests, bytes.")                                \
    X(queue_oldest_age, Gauge, "breakerbox_queue_oldest_age_seconds", "Age of the oldest queued request (0: none).")             \
    X(queue_dead_letters, Gauge, "breakerbox_queue_dead_letters", "Dead letters kept: failed and expired requests.")             \
    X(queue_enqueued, Counter, "breakerbox_queue_enqueued_total", "Requests stored by the queue fallback (202 sent).")           \
    X(queue_delivered, Counter, "breakerbox_queue_delivered_total", "Queued requests delivered.")                                \
    X(queue_dead_lettered, Counter, "breakerbox_queue_dead_lettered_total",                                                      \
      "Queued requests dead-lettered: a terminal answer or max_attempts.")                                                       \
    X(queue_expired, Counter, "breakerbox_queue_expired_total", "Queued requests not delivered within max_age.")                 \
    X(queue_rejected, Counter, "breakerbox_queue_rejected_total", "Requests the queue did not take, by reason.")                 \
    X(queue_delivery_attempts, Counter, "breakerbox_queue_delivery_attempts_total", "Delivery attempts, by result.")             \
    X(cluster_live_replicas, Gauge, "breakerbox_cluster_live_replicas",                                                          \
      "Replicas reporting on the upstream in the cluster (scope: cluster), at the last sync.")                                   \
    X(cluster_verdict, Gauge, "breakerbox_cluster_verdict",                                                                      \
      "1 for the cluster's current verdict on the upstream, 0 for the others.")                                                  \
    X(connections, Counter, "breakerbox_downstream_connections_total", "Client connections accepted.")                           \
    X(connections_parked, Counter, "breakerbox_downstream_connections_parked_total",                                             \
      "Idle keep-alive client connections that gave their read buffer back after a second without a request.")                   \
    X(connections_active, Gauge, "breakerbox_downstream_connections_active", "Client connections open now.")                     \
    X(connections_rejected, Counter, "breakerbox_downstream_connections_rejected_total",                                         \
      "Client connections refused (limit or draining).")                                                                         \
    X(accept_errors, Counter, "breakerbox_accept_errors_total", "Failed accept() calls.")                                        \
    X(requests, Counter, "breakerbox_downstream_requests_total", "Client requests read.")                                        \
    X(responses, Counter, "breakerbox_downstream_responses_total", "Responses sent to clients, by status class.")                \
    X(event_viewers, Gauge, "breakerbox_admin_event_viewers", "GET /events streams (dashboards) connected now.")                 \
    X(event_viewers_dropped, Counter, "breakerbox_admin_event_viewers_dropped_total",                                            \
      "Event-stream viewers dropped because they did not read fast enough.")                                                     \
    X(cluster_redis_up, Gauge, "breakerbox_cluster_redis_up", "1 while the cluster sync reaches Redis (scope: cluster).")        \
    X(cluster_sync_duration, Histogram, "breakerbox_cluster_sync_duration_seconds",                                              \
      "One sync with Redis: every clustered upstream's report and verdict, one pipelined call.")                                 \
    X(cluster_sync_failures, Counter, "breakerbox_cluster_sync_failures_total", "Syncs and connections that failed, by reason.") \
    X(cluster_commands, Counter, "breakerbox_cluster_redis_commands_total", "Commands sent to Redis by the cluster sync.")       \
    X(cluster_clock_offset, Gauge, "breakerbox_cluster_clock_offset_seconds",                                                    \
      "Redis TIME minus this host's clock, at the last sync.")                                                                   \
    X(queue_commit_duration, Histogram, "breakerbox_queue_commit_duration_seconds",                                              \
      "Time to write and commit one group of queue operations (the fsync included).")                                            \
    X(generated_responses, Counter, "breakerbox_proxy_generated_responses_total",                                                \
      "Responses breakerbox generated itself (errors, rejections).")

#define BREAKERBOX_METRIC_ENUM(id, type, name, help) id,
enum class metric : std::size_t { BREAKERBOX_METRIC_FAMILIES(BREAKERBOX_METRIC_ENUM) count };
#undef BREAKERBOX_METRIC_ENUM

using labels = std::vector<ClientMetric::Label>;

// The families being rendered: the fixed ones (by `metric`) and the labelled upstream counters.
class exposition {
public:
    exposition()
    {
#define BREAKERBOX_METRIC_INIT(id, type, name, help) fixed_.push_back(MetricFamily{name, help, MetricType::type, {}});
        BREAKERBOX_METRIC_FAMILIES(BREAKERBOX_METRIC_INIT)
#undef BREAKERBOX_METRIC_INIT
        for (const auto& f : runtime::upstream_families)
            labelled_.push_back(MetricFamily{std::string(f.metric), std::string(f.help), MetricType::Counter, {}});
    }

    void add(metric m, labels l, double value) { add_to(fixed_[static_cast<std::size_t>(m)], std::move(l), value); }
    void add_labelled(std::size_t family, labels l, double value) { add_to(labelled_[family], std::move(l), value); }
    void add_histogram(metric m, ClientMetric h) { fixed_[static_cast<std::size_t>(m)].metric.push_back(std::move(h)); }

    // The text format: the upstream families first (fixed ones, then the labelled counters), then the
    // proxy-wide ones. A family without samples (active probes when none is configured) is left out.
    std::string serialize()
    {
        const auto first_proxy_wide = static_cast<std::size_t>(metric::connections);
        std::vector<MetricFamily> out;
        for (std::size_t i = 0; i < first_proxy_wide; ++i)
            out.push_back(std::move(fixed_[i]));
        for (auto& f : labelled_)
            out.push_back(std::move(f));
        for (std::size_t i = first_proxy_wide; i < fixed_.size(); ++i)
            out.push_back(std::move(fixed_[i]));
        std::erase_if(out, [](const MetricFamily& f) { return f.metric.empty(); });
        return prometheus::TextSerializer().Serialize(out);
    }

private:
    static void add_to(MetricFamily& f, labels l, double value)
    {
        ClientMetric m;
        m.label = std::move(l);
        if (f.type == MetricType::Counter)
            m.counter.value = value;
        else
            m.gauge.value = value;
        f.metric.push_back(std::move(m));
    }

    std::vector<MetricFamily> fixed_;
    std::vector<MetricFamily> labelled_;
};

// 0 closed, 1 half-open, 2 open (Dapr's convention); forced states map to what they behave like.
double state_code(breaker_state s)
{
    switch (s) {
    case breaker_state::half_open: return 1;
    case breaker_state::open:
    case breaker_state::forced_open: return 2;
    default: return 0;
    }
}

// The state gauges follow what the next request finds (the local breaker, an operator, the cluster's
// verdict: resilience/circuit_view.hpp), so an alert on them fires whoever turns requests away.
void add_breaker(exposition& e, const upstream_snapshot& u)
{
    const std::string& name = u.name();
    const auto& cb = u.shared.breaker;
    for (const auto& [s, state_name] : resilience::breaker_state_names)
        e.add(metric::circuit_state, {{"upstream", name}, {"state", std::string(state_name)}}, u.circuit.state == s ? 1 : 0);
    e.add(metric::circuit_state_code, {{"upstream", name}}, state_code(u.circuit.state));
    for (const auto& [d, decider_name] : resilience::circuit_decider_names)
        e.add(metric::circuit_decided_by, {{"upstream", name}, {"decided_by", std::string(decider_name)}},
              u.circuit.decided_by == d ? 1 : 0);
    for (const auto& [from, from_name] : resilience::breaker_state_names)
        for (const auto& [to, to_name] : resilience::breaker_state_names) {
            const auto n = cb.transition_count(from, to);
            if (n > 0 || resilience::is_automatic_transition(from, to)) // the usual edges, declared before they happen
                e.add(metric::transitions, {{"upstream", name}, {"from", std::string(from_name)}, {"to", std::string(to_name)}},
                      double(n));
        }
    e.add(metric::trips, {{"upstream", name}}, double(u.breaker.trips));
    e.add(metric::window_calls, {{"upstream", name}}, u.breaker.window.calls);
    e.add(metric::failure_ratio, {{"upstream", name}}, u.failure_rate);
    e.add(metric::slow_call_ratio, {{"upstream", name}}, u.slow_call_rate);
    e.add(metric::consecutive_failures, {{"upstream", name}}, u.breaker.consecutive_failures);
    e.add(metric::next_probe, {{"upstream", name}}, u.next_probe_in ? double(*u.next_probe_in) / 1e9 : 0);
}

void add_counters(exposition& e, const std::string& name, const runtime::upstream_totals& totals)
{
    for (std::size_t f = 0; f < std::size(runtime::upstream_families); ++f) {
        const auto& family = runtime::upstream_families[f];
        const auto counts = family.counts(totals);
        for (std::size_t k = 0; k < counts.size(); ++k)
            e.add_labelled(f, {{"upstream", name}, {std::string(family.label), std::string(family.values[k])}},
                           double(counts[k]));
    }
    e.add(metric::slow_requests, {{"upstream", name}}, double(totals.slow));
    ClientMetric h;
    h.label = {{"upstream", name}};
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < totals.duration_bucket.size(); ++b) {
        cumulative += totals.duration_bucket[b];
        const double le =
            b < runtime::duration_buckets.size() ? runtime::duration_buckets[b] : std::numeric_limits<double>::infinity();
        h.histogram.bucket.push_back({cumulative, le});
    }
    h.histogram.sample_count = cumulative;
    h.histogram.sample_sum = double(totals.duration_sum_ns) / 1e9;
    e.add_histogram(metric::request_duration, std::move(h));
}

std::int64_t unix_now()
{
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The earliest expiry (seconds since the epoch) among the certificates the endpoints presented; none
// before a full handshake.
std::optional<std::int64_t> soonest_expiry(const tls::upstream_tls& t)
{
    std::optional<std::int64_t> soonest;
    for (const auto& p : t.peers())
        if (p.not_after > 0 && (!soonest || p.not_after < *soonest))
            soonest = p.not_after;
    return soonest;
}

void add_capacity(exposition& e, const upstream_snapshot& u)
{
    const std::string& name = u.name();
    const auto& shared = u.shared;
    e.add(metric::bulkhead_in_flight, {{"upstream", name}}, u.bulkhead.in_flight);
    e.add(metric::bulkhead_queued, {{"upstream", name}}, u.bulkhead.queued);
    e.add(metric::bulkhead_limit, {{"upstream", name}}, u.bulkhead.limit);
    e.add(metric::bulkhead_queue_limit, {{"upstream", name}}, u.bulkhead.max_queue);
    e.add(metric::retry_budget_in_use, {{"upstream", name}}, u.retry_budget_in_use);
    e.add(metric::streams_active, {{"upstream", name}}, u.streams.active);
    e.add(metric::streams_limit, {{"upstream", name}}, u.streams.limit);
    e.add(metric::tunnels_active, {{"upstream", name}}, u.tunnels.active);
    e.add(metric::tunnels_limit, {{"upstream", name}}, u.tunnels.limit);
    if (shared.tls)
        if (const auto expiry = soonest_expiry(*shared.tls))
            e.add(metric::tls_certificate_expiry, {{"upstream", name}}, double(*expiry - unix_now()));
    if (shared.breaker.probes_actively())
        for (const auto& [o, outcome_name] : resilience::outcome_names)
            e.add(metric::active_probes, {{"upstream", name}, {"outcome", std::string(outcome_name)}},
                  double(shared.active_probes[static_cast<std::size_t>(o)].load(std::memory_order_relaxed)));
}

void add_outliers(exposition& e, const std::string& name, const resilience::outlier_detector& d, nanos now)
{
    const auto endpoints = d.view(now);
    std::array<std::size_t, 3> by_state{};
    for (const auto& ep : endpoints) {
        ++by_state[static_cast<std::size_t>(ep.state)];
        const labels l{{"upstream", name}, {"endpoint", ep.address}};
        e.add(metric::outlier_endpoint_ejected, l, ep.state == resilience::endpoint_state::ejected ? 1 : 0);
        e.add(metric::outlier_endpoint_ejections, l, double(ep.ejections));
    }
    for (const auto& [s, state_name] : resilience::endpoint_state_names)
        e.add(metric::outlier_endpoints, {{"upstream", name}, {"state", std::string(state_name)}},
              double(by_state[static_cast<std::size_t>(s)]));
    e.add(metric::outlier_ejections_active, {{"upstream", name}}, d.ejected_count());
    for (const auto& [rule, rule_name] : resilience::outlier_rule_names) {
        e.add(metric::outlier_ejections_enforced, {{"upstream", name}, {"rule", std::string(rule_name)}},
              double(d.enforced_total(rule)));
        e.add(metric::outlier_ejections_detected, {{"upstream", name}, {"rule", std::string(rule_name)}},
              double(d.detected_total(rule)));
    }
    e.add(metric::outlier_circuit_opens, {{"upstream", name}}, double(d.upstream_opens()));
}

// Every queue the store knows (configured now, or with entries left from an earlier configuration).
void add_queues(exposition& e, const queue::queue_store& store)
{
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const auto& name : store.upstreams()) {
        const auto& c = store.counters(name);
        const labels l{{"upstream", name}};
        const auto oldest = c.oldest_ms.load();
        e.add(metric::queue_depth, l, double(c.depth.load()));
        e.add(metric::queue_in_flight, l, double(c.in_flight.load()));
        e.add(metric::queue_bytes, l, double(c.bytes.load()));
        e.add(metric::queue_oldest_age, l, oldest ? double(std::max<std::int64_t>(0, now_ms - oldest)) / 1000.0 : 0.0);
        e.add(metric::queue_dead_letters, l, double(c.dead_letters.load()));
        e.add(metric::queue_enqueued, l, double(c.enqueued.load()));
        e.add(metric::queue_delivered, l, double(c.delivered.load()));
        e.add(metric::queue_dead_lettered, l, double(c.dead_lettered.load()));
        e.add(metric::queue_expired, l, double(c.expired.load()));
        for (const auto& r : queue::rejection_names)
            e.add(metric::queue_rejected, {{"upstream", name}, {"reason", std::string(r.name)}},
                  double(c.rejected[static_cast<std::size_t>(r.value)].load()));
        for (const auto& r : queue::delivery_result_names)
            e.add(metric::queue_delivery_attempts, {{"upstream", name}, {"result", std::string(r.name)}},
                  double(c.attempts[static_cast<std::size_t>(r.value)].load()));
    }
}

// A histogram sample from cumulative bucket counts (`le` = `bounds`, then +Inf = `count`), in seconds.
template <std::size_t N>
ClientMetric histogram_of(const std::array<std::uint64_t, N>& cumulative, const std::array<double, N>& bounds,
                          std::uint64_t count, double sum)
{
    ClientMetric h;
    for (std::size_t b = 0; b < N; ++b)
        h.histogram.bucket.push_back({cumulative[b], bounds[b]});
    h.histogram.bucket.push_back({count, std::numeric_limits<double>::infinity()});
    h.histogram.sample_count = count;
    h.histogram.sample_sum = sum;
    return h;
}

void add_commit_latency(exposition& e, const queue::queue_store& store)
{
    const auto hist = store.commit_latency();
    e.add_histogram(metric::queue_commit_duration,
                    histogram_of(hist.cumulative, queue::queue_store::commit_buckets, hist.count, hist.sum));
}

// scope: cluster — per upstream what the last sync learnt.
void add_cluster_upstreams(exposition& e, const cluster::sync_status& c)
{
    for (const auto& [name, view] : c.upstreams) {
        e.add(metric::cluster_live_replicas, {{"upstream", name}}, double(view.live_replicas));
        for (const auto& v : resilience::cluster_verdict_names)
            e.add(metric::cluster_verdict, {{"upstream", name}, {"state", std::string(v.name)}}, v.value == view.verdict ? 1 : 0);
    }
}

void add_cluster(exposition& e, const cluster::sync_status& c)
{
    e.add(metric::cluster_redis_up, {}, c.redis_up ? 1 : 0);
    e.add_histogram(metric::cluster_sync_duration,
                    histogram_of(c.latency_cumulative, cluster::sync_status::sync_buckets, c.latency_count, c.latency_sum));
    for (const auto& [failure, name] : cluster::redis_failure_names)
        if (failure != cluster::redis_failure::none)
            e.add(metric::cluster_sync_failures, {{"reason", std::string(name)}},
                  double(c.failures[static_cast<std::size_t>(failure)]));
    e.add(metric::cluster_commands, {}, double(c.commands));
    e.add(metric::cluster_clock_offset, {}, c.clock_offset_seconds);
}

// The configuration serving now and how reloads went: a replica that rejected its last file keeps an
// older generation and hash than its peers (config/alerts.yaml: BreakerboxConfigReloadRejected).
void add_configuration(exposition& e, const admin_context& ctx, const runtime::config_generation& rt)
{
    e.add(metric::config_generation, {}, double(rt.generation));
    e.add(metric::config_info, {{"file", rt.cfg.source_file}, {"sha256", rt.cfg.source_sha256}}, 1);
    e.add(metric::config_reloads, {{"result", "applied"}}, double(ctx.state.reloads_applied.load()));
    e.add(metric::config_reloads, {{"result", "rejected"}}, double(ctx.state.reloads_rejected.load()));
    e.add(metric::config_last_reload_success, {}, double(ctx.state.last_reload_success_unix.load()));
    e.add(metric::config_last_reload_successful, {}, ctx.state.last_reload_successful.load() ? 1 : 0);
}

void add_proxy_wide(exposition& e, const admin_context& ctx)
{
    const auto w = ctx.worker_totals();
    e.add(metric::connections, {}, double(w.connections_accepted));
    e.add(metric::connections_parked, {}, double(w.connections_parked));
    e.add(metric::connections_active, {}, double(ctx.state.active_connections.load()));
    e.add(metric::connections_rejected, {}, double(ctx.state.rejected_connections.load()));
    e.add(metric::accept_errors, {}, double(ctx.state.accept_errors.load()));
    e.add(metric::requests, {}, double(w.requests));
    for (unsigned c = 1; c <= 5; ++c)
        e.add(metric::responses, {{"code", std::to_string(c) + "xx"}}, double(w.responses_by_class[c]));
    e.add(metric::generated_responses, {}, double(w.proxy_errors));
    if (ctx.events) {
        e.add(metric::event_viewers, {}, double(ctx.events->viewers()));
        e.add(metric::event_viewers_dropped, {}, double(ctx.events->dropped_total()));
    }
}

} // namespace

std::string render_metrics(const admin_context& ctx)
{
    const auto rt = ctx.state.current();
    const nanos now = ctx.clk.now();
    exposition e;
    e.add(metric::build_info, {{"version", build::version}, {"commit", build::commit}, {"instance", ctx.state.instance_id}}, 1);
    add_configuration(e, ctx, *rt);
    for (const auto& shared : rt->upstreams) {
        const auto u = take_upstream_snapshot(ctx, *shared, now);
        add_breaker(e, u);
        add_counters(e, u.name(), u.totals);
        add_capacity(e, u);
        if (shared->outliers)
            add_outliers(e, u.name(), *shared->outliers, now);
    }
    if (ctx.state.queue)
        add_queues(e, *ctx.state.queue);
    if (ctx.cluster)
        add_cluster_upstreams(e, ctx.cluster->status());
    add_proxy_wide(e, ctx);
    if (ctx.cluster)
        add_cluster(e, ctx.cluster->status());
    if (ctx.state.queue)
        add_commit_latency(e, *ctx.state.queue);
    return e.serialize();
}

} // namespace breakerbox::admin
