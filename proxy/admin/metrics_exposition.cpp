#include "admin/metrics_exposition.hpp"

#include <build_info.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>
#include <sstream>

namespace breakerbox::admin {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using resilience::breaker_state;

MetricFamily family(std::string name, std::string help, MetricType type)
{
    return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value)
{
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

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

} // namespace

std::string render_metrics(const admin_context& ctx)
{
    const auto rt = ctx.state.current();
    const auto& ups = rt->cfg.upstreams;
    std::vector<MetricFamily> out;

    auto build = family("breakerbox_build_info", "Build information; always 1.", MetricType::Gauge);
    add(build, {{"version", build::version}, {"instance", ctx.state.instance_id}}, 1);
    out.push_back(std::move(build));

    auto state = family("breakerbox_circuit_state", "1 for the circuit's current state, 0 for the others.", MetricType::Gauge);
    auto code = family("breakerbox_circuit_state_code", "Circuit state as a number: 0 closed, 1 half-open, 2 open.", MetricType::Gauge);
    auto transitions = family("breakerbox_circuit_transitions_total", "Circuit state transitions.", MetricType::Counter);
    auto trips = family("breakerbox_circuit_trips_total", "Transitions into open or forced-open.", MetricType::Counter);
    auto window_calls = family("breakerbox_circuit_window_calls", "Calls in the breaker's sliding window.", MetricType::Gauge);
    auto failure_rate = family("breakerbox_circuit_failure_ratio", "Failure ratio over the sliding window (0-1).", MetricType::Gauge);
    auto slow_rate = family("breakerbox_circuit_slow_call_ratio", "Slow-call ratio over the sliding window (0-1).", MetricType::Gauge);
    auto consecutive = family("breakerbox_circuit_consecutive_failures", "Current run of consecutive failures.", MetricType::Gauge);
    auto next_probe = family("breakerbox_circuit_next_probe_seconds", "Seconds until the next half-open probe (0 unless open).", MetricType::Gauge);
    auto requests = family("breakerbox_upstream_requests_total", "Upstream calls by outcome.", MetricType::Counter);
    auto slow = family("breakerbox_upstream_slow_requests_total", "Upstream calls slower than the slow-call duration.", MetricType::Counter);
    auto rejections = family("breakerbox_rejections_total", "Requests answered locally without reaching the upstream, by reason.", MetricType::Counter);
    auto retries = family("breakerbox_retries_total", "Retries by result.", MetricType::Counter);
    auto fallbacks = family("breakerbox_fallbacks_total", "Responses served by a fallback, by kind.", MetricType::Counter);
    auto bulk_in_flight = family("breakerbox_bulkhead_in_flight", "Requests holding a bulkhead slot.", MetricType::Gauge);
    auto bulk_queued = family("breakerbox_bulkhead_queued", "Requests waiting for a bulkhead slot.", MetricType::Gauge);
    auto bulk_limit = family("breakerbox_bulkhead_limit", "Bulkhead limit on concurrent requests (0: unlimited).", MetricType::Gauge);
    auto bulk_queue_limit = family("breakerbox_bulkhead_queue_limit", "Bulkhead wait-queue capacity.", MetricType::Gauge);
    auto budget = family("breakerbox_retry_budget_in_use", "Retries in flight against the retry budget.", MetricType::Gauge);
    auto duration = family("breakerbox_upstream_request_duration_seconds", "Duration of upstream calls (connect, write, read).", MetricType::Histogram);
    auto probes = family("breakerbox_active_probes_total", "Active half-open probes (circuit_breaker.half_open.probe) by outcome.", MetricType::Counter);

    const nanos now = ctx.clk.now();
    const std::array<breaker_state, resilience::breaker_state_count> all_states{
        breaker_state::closed, breaker_state::open, breaker_state::half_open,
        breaker_state::forced_open, breaker_state::forced_closed, breaker_state::disabled};
    for (std::size_t i = 0; i < ups.size(); ++i) {
        const std::string& name = ups[i].name;
        const auto& cb = rt->upstreams[i]->breaker;
        const auto snap = cb.snapshot();
        for (auto s : all_states)
            add(state, {{"upstream", name}, {"state", std::string(resilience::to_string(s))}}, snap.state == s ? 1 : 0);
        add(code, {{"upstream", name}}, state_code(snap.state));
        for (auto from : all_states)
            for (auto to : all_states) {
                auto n = cb.transition_count(from, to);
                if (n > 0 || resilience::is_automatic_transition(from, to))
                    add(transitions, {{"upstream", name}, {"from", std::string(resilience::to_string(from))}, {"to", std::string(resilience::to_string(to))}},
                        static_cast<double>(n));
            }
        add(trips, {{"upstream", name}}, static_cast<double>(snap.trips));
        add(window_calls, {{"upstream", name}}, snap.window.calls);
        add(failure_rate, {{"upstream", name}}, snap.window.calls ? double(snap.window.failures) / snap.window.calls : 0);
        add(slow_rate, {{"upstream", name}}, snap.window.calls ? double(snap.window.slow) / snap.window.calls : 0);
        add(consecutive, {{"upstream", name}}, snap.consecutive_failures);
        add(next_probe, {{"upstream", name}}, snap.state == breaker_state::open ? double(std::max<nanos>(0, snap.open_until - now)) / 1e9 : 0);
        for (std::size_t k = 0; k < runtime::upstream_outcome_names.size(); ++k)
            add(requests, {{"upstream", name}, {"outcome", std::string(runtime::upstream_outcome_names[k])}},
                double(ctx.sum_upstream(name, [k](const auto& s) { return s.outcomes[k].value(); })));
        add(slow, {{"upstream", name}}, double(ctx.sum_upstream(name, [](const auto& s) { return s.slow.value(); })));
        for (std::size_t k = 0; k < runtime::rejection_reason_names.size(); ++k)
            add(rejections, {{"upstream", name}, {"reason", std::string(runtime::rejection_reason_names[k])}},
                double(ctx.sum_upstream(name, [k](const auto& s) { return s.rejections[k].value(); })));

        for (std::size_t k = 0; k < runtime::retry_result_names.size(); ++k)
            add(retries, {{"upstream", name}, {"result", std::string(runtime::retry_result_names[k])}},
                double(ctx.sum_upstream(name, [k](const auto& s) { return s.retries[k].value(); })));
        for (std::size_t k = 0; k < runtime::fallback_kind_names.size(); ++k)
            add(fallbacks, {{"upstream", name}, {"kind", std::string(runtime::fallback_kind_names[k])}},
                double(ctx.sum_upstream(name, [k](const auto& s) { return s.fallbacks[k].value(); })));
        const auto bulk = rt->upstreams[i]->bulk.snapshot();
        add(bulk_in_flight, {{"upstream", name}}, bulk.in_flight);
        add(bulk_queued, {{"upstream", name}}, bulk.queued);
        add(bulk_limit, {{"upstream", name}}, bulk.limit);
        add(bulk_queue_limit, {{"upstream", name}}, bulk.max_queue);
        add(budget, {{"upstream", name}}, rt->upstreams[i]->budget.active());
        if (cb.probes_actively()) {
            static constexpr std::array<std::string_view, 3> outcome_names{"success", "failure", "ignored"};
            for (std::size_t k = 0; k < outcome_names.size(); ++k)
                add(probes, {{"upstream", name}, {"outcome", std::string(outcome_names[k])}},
                    double(rt->upstreams[i]->active_probes[k].load(std::memory_order_relaxed)));
        }

        ClientMetric h;
        h.label = {{"upstream", name}};
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b <= runtime::duration_buckets.size(); ++b) {
            cumulative += ctx.sum_upstream(name, [b](const auto& s) { return s.duration_bucket[b].value(); });
            h.histogram.bucket.push_back({cumulative, b < runtime::duration_buckets.size() ? runtime::duration_buckets[b]
                                                                                         : std::numeric_limits<double>::infinity()});
        }
        h.histogram.sample_count = cumulative;
        h.histogram.sample_sum = double(ctx.sum_upstream(name, [](const auto& s) { return s.duration_sum_ns.value(); })) / 1e9;
        duration.metric.push_back(std::move(h));
    }
    for (auto* f : {&state, &code, &transitions, &trips, &window_calls, &failure_rate, &slow_rate, &consecutive, &next_probe,
                    &requests, &slow, &rejections, &retries, &fallbacks, &bulk_in_flight, &bulk_queued, &bulk_limit,
                    &bulk_queue_limit, &budget, &duration})
        out.push_back(std::move(*f));
    if (!probes.metric.empty()) // only upstreams with an active probe have these
        out.push_back(std::move(probes));

    auto connections = family("breakerbox_downstream_connections_total", "Client connections accepted.", MetricType::Counter);
    add(connections, {}, double(ctx.sum_worker([](const auto& w) { return w.connections_accepted.value(); })));
    auto parked = family("breakerbox_downstream_connections_parked_total",
                         "Idle keep-alive client connections that gave their read buffer back after a second without a request.",
                         MetricType::Counter);
    add(parked, {}, double(ctx.sum_worker([](const auto& w) { return w.connections_parked.value(); })));
    auto active = family("breakerbox_downstream_connections_active", "Client connections open now.", MetricType::Gauge);
    add(active, {}, double(ctx.state.active_connections.load()));
    auto rejected = family("breakerbox_downstream_connections_rejected_total", "Client connections refused (limit or draining).", MetricType::Counter);
    add(rejected, {}, double(ctx.state.rejected_connections.load()));
    auto accept_errors = family("breakerbox_accept_errors_total", "Failed accept() calls.", MetricType::Counter);
    add(accept_errors, {}, double(ctx.state.accept_errors.load()));
    auto reqs = family("breakerbox_downstream_requests_total", "Client requests read.", MetricType::Counter);
    add(reqs, {}, double(ctx.sum_worker([](const auto& w) { return w.requests.value(); })));
    auto responses = family("breakerbox_downstream_responses_total", "Responses sent to clients, by status class.", MetricType::Counter);
    for (unsigned c = 1; c <= 5; ++c)
        add(responses, {{"code", std::to_string(c) + "xx"}}, double(ctx.sum_worker([c](const auto& w) { return w.responses_by_class[c].value(); })));
    auto generated = family("breakerbox_proxy_generated_responses_total", "Responses breakerbox generated itself (errors, rejections).", MetricType::Counter);
    add(generated, {}, double(ctx.sum_worker([](const auto& w) { return w.proxy_errors.value(); })));
    for (auto* f : {&connections, &parked, &active, &rejected, &accept_errors, &reqs, &responses, &generated})
        out.push_back(std::move(*f));

    return prometheus::TextSerializer().Serialize(out);
}

} // namespace breakerbox::admin
