// What the next request to an upstream will find, and who decides it: the one answer every report gives
// (/health/circuits, /metrics, the dashboard, /events, Retry-After and the open-circuit body), so that no
// report can disagree with what the forwarder does (issue 30 §1).
//
// The forwarder asks, in this order, before anything goes on the network: the cluster's verdict
// (circuit_breaker.scope: cluster — open, half_open and forced_open reject), then the local breaker
// (open, half_open without a free probe, forced_open). The first that rejects decides; the next request
// passes only once every one of them would let it, so the time to the next probe is the longest of
// theirs.
//
// Pure functions of their inputs (time passed in): unit-tested without threads or sockets.
#pragma once
#include "core/clock.hpp"
#include "core/enum_names.hpp"
#include "resilience/circuit_breaker.hpp"
#include "resilience/cluster_gate.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace breakerbox::resilience {

// breaker: the local breaker's own rules; operator: an operator's local state (forced_open,
// forced_closed, disabled); cluster: the replicas' shared verdict (scope: cluster); cluster_operator: an
// operator's cluster-wide action.
enum class circuit_decider : std::uint8_t { breaker, operator_action, cluster, cluster_operator };
inline constexpr enum_name<circuit_decider> circuit_decider_names[]{{circuit_decider::breaker, "breaker"},
                                                                    {circuit_decider::operator_action, "operator"},
                                                                    {circuit_decider::cluster, "cluster"},
                                                                    {circuit_decider::cluster_operator, "cluster_operator"}};
constexpr std::span<const enum_name<circuit_decider>> names_of(circuit_decider) noexcept { return circuit_decider_names; }

struct circuit_view {
    breaker_state state = breaker_state::closed; // what the next request finds
    circuit_decider decided_by = circuit_decider::breaker;
    // Time until a request may pass again (ns), when one is scheduled: 0 when requests pass now (or a
    // probe may go now); nullopt when nothing is scheduled — a local forced_open lasts until an operator
    // releases it.
    std::optional<nanos> next_probe_in = 0;
    bool rejects() const noexcept { return state == breaker_state::open || state == breaker_state::forced_open; }
};

// The local breaker's part, as of `now`: its effective state (an open circuit whose open time is over
// is half_open) and its time to the next probe.
struct local_breaker_reading {
    breaker_state state = breaker_state::closed;
    nanos until_probe = 0; // > 0 only while open
};
local_breaker_reading read_breaker(const circuit_breaker& cb, nanos now) noexcept;

// The combination (see the file comment).
circuit_view effective_circuit(const local_breaker_reading& local, const cluster_reading& cluster) noexcept;

// Both read at `now`.
inline circuit_view effective_circuit(const circuit_breaker& cb, const cluster_gate& gate, nanos now) noexcept
{
    return effective_circuit(read_breaker(cb, now), gate.reading(now));
}

// What a request finds changed without a local breaker transition (the cluster's verdict came or went):
// published to /events as a `transition` with its `decided_by`, like the breaker's own.
struct circuit_change {
    std::string_view upstream;
    circuit_view from;
    circuit_view to;
    std::string reason;
};
inline bool same_decision(const circuit_view& a, const circuit_view& b) noexcept
{
    return a.state == b.state && a.decided_by == b.decided_by;
}

// Retry-After (RFC 9110 §10.2.3) in whole seconds for a request turned away now: the time to the next
// probe rounded up, at least 1 (a client must not retry in the same second); 0 when nothing is scheduled
// (a local forced_open): then no Retry-After is sent, and the body's retry_after_seconds is null.
long retry_after_seconds(const circuit_view& v) noexcept;

} // namespace breakerbox::resilience
