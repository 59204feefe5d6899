// Everything about one upstream that all workers share: its circuit breaker and its outcome
// classifier, its endpoints' outlier detector, its bulkhead, its retry budget, (when a stale fallback is configured) its
// stale-response cache, and (with tls) its TLS client context. Shared, lock-free on the hot path; created once at start-up.
#pragma once
#include "config/config.hpp"
#include "resilience/bulkhead.hpp"
#include "resilience/circuit_breaker.hpp"
#include "resilience/cluster_gate.hpp"
#include "resilience/concurrency_limit.hpp"
#include "resilience/outcome.hpp"
#include "resilience/outlier_detector.hpp"
#include "resilience/retry_budget.hpp"
#include "resilience/stale_cache.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

namespace breakerbox::tls {
class upstream_tls;
}

namespace breakerbox::resilience {

class upstream_resilience {
public:
    // `kept`: the breaker of the previous configuration, reused when its policy did not change (reload).
    // `kept_outliers`: the previous configuration's outlier detector, reused when its policy did not
    // change (its endpoints keep their ejections).
    upstream_resilience(const config::upstream_config& cfg, const clock& clk, std::uint64_t seed,
                        std::shared_ptr<circuit_breaker> kept = nullptr,
                        std::shared_ptr<outlier_detector> kept_outliers = nullptr);

    const config::upstream_config& cfg;
    outcome_classifier classifier;
    const std::shared_ptr<circuit_breaker> breaker_ptr; // shared with later configurations that keep it
    circuit_breaker& breaker;
    bulkhead bulk;
    retry_budget budget;
    std::unique_ptr<stale_cache> cache; // only with a stale fallback
    // Only with outlier_detection.enabled; shared with later configurations that keep it.
    const std::shared_ptr<outlier_detector> outliers;
    std::shared_ptr<tls::upstream_tls> tls; // only with tls.enabled (set by the configuration generation)
    cluster_gate cluster;                   // the cluster's verdict (scope: cluster; never set otherwise)
    concurrency_limit streams;              // streamed exchanges in progress (streaming.max_streams)
    concurrency_limit tunnels;              // upgraded connections open (streaming.max_tunnels)
    // Active half-open probes by outcome (success, failure, ignored): written by the prober on the main
    // thread, read by /metrics.
    std::array<std::atomic<std::uint64_t>, 3> active_probes{};
};

// Logs a transition as one structured line (the breaker calls it on the winning thread only), then
// tells the transition observer, if one is set.
void log_transition(const transition_event& e);

// The one process-wide observer of breaker transitions (the admin listener's /events stream). Set
// once at start-up, before any worker thread runs, and never changed after; called on the thread that
// won the transition, so it must only copy and hand over (post), never block.
void set_transition_observer(std::function<void(const transition_event&)> observer);

// Opens the upstream's breaker when outlier detection's `verdict` says too few endpoints are healthy
// (counted once, by the winner of the transition). Any thread.
void apply_outlier_verdict(upstream_resilience& shared, outlier_verdict verdict, nanos now);

} // namespace breakerbox::resilience
