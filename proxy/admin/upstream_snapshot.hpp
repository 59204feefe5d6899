// One upstream's figures at one moment: read once from its shared state (the breaker's snapshot, what
// the next request finds, the bulkhead, the stream and tunnel limits, the retry budget, outlier
// detection) and the workers' counters summed. /health/circuits, /metrics and the /events sampler each
// render this one record, so no two of them compute a figure differently (issue 32).
// Main thread (the admin listener's); built for one report and never kept.
#pragma once
#include "admin/admin_context.hpp"
#include "resilience/bulkhead.hpp"
#include "resilience/circuit_view.hpp"
#include "resilience/upstream_resilience.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace breakerbox::admin {

// A concurrency limit as read now (streaming.max_streams, max_tunnels).
struct limit_reading {
    std::uint32_t active;
    std::uint32_t limit;
};

struct upstream_snapshot {
    // The upstream itself: its policy, TLS, stale cache and outlier detector, for the reports that
    // show them in detail.
    const resilience::upstream_resilience& shared;
    nanos taken_at;                       // the clock's now() when it was read
    resilience::breaker_snapshot breaker; // the local breaker's own figures
    resilience::circuit_view circuit;     // what the next request finds, and who decides it
    std::string reason;                   // why: the breaker's last reason, or the cluster's (circuit_reason)
    double seconds_in_state;              // in the local breaker's state
    // The time until a request may pass again: only while requests are turned away and a time is
    // scheduled (a local forced_open has none).
    std::optional<nanos> next_probe_in;
    double failure_rate;   // the breaker's window, 0-1 (0 without calls)
    double slow_call_rate; // the same for slow calls
    resilience::bulkhead_snapshot bulkhead;
    std::uint32_t retry_budget_in_use;
    limit_reading streams;
    limit_reading tunnels;
    std::optional<std::uint32_t> ejected; // endpoints outlier detection keeps out; nullopt when it is off
    runtime::upstream_totals totals;      // the counters, summed over the workers

    const std::string& name() const noexcept { return shared.cfg.name; }
};

upstream_snapshot take_upstream_snapshot(const admin_context& ctx, const resilience::upstream_resilience& shared, nanos now);

// part / whole; 0 without a whole (a window without calls has no failure rate).
double ratio(std::uint64_t part, std::uint64_t whole) noexcept;

// Why the circuit is as the next request finds it: the breaker's last reason, or the cluster's when
// its verdict (or a cluster-wide operator action) decides.
std::string circuit_reason(const admin_context& ctx, const resilience::upstream_resilience& r,
                           const resilience::circuit_view& circuit, const std::string& breaker_reason);

} // namespace breakerbox::admin
