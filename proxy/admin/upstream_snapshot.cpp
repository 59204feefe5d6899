#include "admin/upstream_snapshot.hpp"

#include "cluster/cluster_sync.hpp"
#include "resilience/outlier_detector.hpp"

namespace breakerbox::admin {

double ratio(std::uint64_t part, std::uint64_t whole) noexcept { return whole ? double(part) / double(whole) : 0.0; }

std::string circuit_reason(const admin_context& ctx, const resilience::upstream_resilience& r,
                           const resilience::circuit_view& circuit, const std::string& breaker_reason)
{
    if (circuit.decided_by != resilience::circuit_decider::cluster &&
        circuit.decided_by != resilience::circuit_decider::cluster_operator)
        return breaker_reason;
    if (ctx.cluster)
        if (const auto it = ctx.cluster->status().upstreams.find(r.cfg.name); it != ctx.cluster->status().upstreams.end())
            return "cluster: " + it->second.reason;
    return "cluster: the replicas' shared verdict";
}

upstream_snapshot take_upstream_snapshot(const admin_context& ctx, const resilience::upstream_resilience& shared, nanos now)
{
    auto breaker = shared.breaker.snapshot();
    const auto circuit = resilience::effective_circuit(shared.breaker, shared.cluster, now);
    std::string reason = circuit_reason(ctx, shared, circuit, breaker.last_reason);
    const auto window = breaker.window;
    const nanos since = breaker.since;
    return {
        .shared = shared,
        .taken_at = now,
        .breaker = std::move(breaker),
        .circuit = circuit,
        .reason = std::move(reason),
        .seconds_in_state = static_cast<double>(now - since) / 1e9,
        .next_probe_in = circuit.rejects() ? circuit.next_probe_in : std::nullopt,
        .failure_rate = ratio(window.failures, window.calls),
        .slow_call_rate = ratio(window.slow, window.calls),
        .bulkhead = shared.bulk.snapshot(),
        .retry_budget_in_use = shared.budget.active(),
        .streams = {shared.streams.active(), shared.streams.limit()},
        .tunnels = {shared.tunnels.active(), shared.tunnels.limit()},
        .ejected = shared.outliers ? std::optional(shared.outliers->ejected_count()) : std::nullopt,
        .totals = ctx.upstream_totals(shared.cfg.name),
    };
}

} // namespace breakerbox::admin
