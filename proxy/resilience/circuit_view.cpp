#include "resilience/circuit_view.hpp"

#include <algorithm>

namespace breakerbox::resilience {

local_breaker_reading read_breaker(const circuit_breaker& cb, nanos now) noexcept
{
    const auto state = cb.effective_state(now);
    return {state, state == breaker_state::open ? cb.time_until_probe() : 0};
}

namespace {

circuit_view local_view(const local_breaker_reading& local) noexcept
{
    circuit_view v{local.state, circuit_decider::breaker, nanos{0}};
    switch (local.state) {
    case breaker_state::open: v.next_probe_in = local.until_probe; break;
    case breaker_state::forced_open: v.next_probe_in = std::nullopt; [[fallthrough]];
    case breaker_state::forced_closed:
    case breaker_state::disabled: v.decided_by = circuit_decider::operator_action; break;
    default: break;
    }
    return v;
}

} // namespace

circuit_view effective_circuit(const local_breaker_reading& local, const cluster_reading& cluster) noexcept
{
    const circuit_view mine = local_view(local);
    // The local breaker's own wait, where it would reject too once the cluster lets requests through.
    const nanos local_wait = mine.next_probe_in.value_or(0);
    switch (cluster.verdict) {
    case cluster_verdict::open: return {breaker_state::open, circuit_decider::cluster, std::max(cluster.left, local_wait)};
    case cluster_verdict::half_open: // another replica holds the probe: its outcome comes with a sync
        return {breaker_state::open, circuit_decider::cluster, std::max(cluster.left, local_wait)};
    case cluster_verdict::forced_open:
        return {breaker_state::forced_open, circuit_decider::cluster_operator, std::max(cluster.left, local_wait)};
    case cluster_verdict::probing: // this replica holds the cluster's probe: the local breaker still asks first
        if (mine.rejects())
            return mine;
        return {breaker_state::half_open, circuit_decider::cluster, nanos{0}};
    case cluster_verdict::forced_closed: // the gate lets everything through: the local breaker decides
    case cluster_verdict::closed: break;
    }
    return mine;
}

long retry_after_seconds(const circuit_view& v) noexcept
{
    if (!v.next_probe_in)
        return 0;
    // Up to 1 ms of the stored times' rounding is not allowed to add a second.
    const nanos wait = *v.next_probe_in;
    return std::max<long>(1, static_cast<long>((wait - millis(1) + seconds(1) - 1) / seconds(1)));
}

} // namespace breakerbox::resilience
