// Everything resilience-related about one upstream that all workers share: its circuit breaker and
// its outcome classifier (bulkhead, retry budget and fallbacks join here as they land).
// Shared, lock-free on the hot path; created once at start-up.
#pragma once
#include "config/config.hpp"
#include "resilience/circuit_breaker.hpp"
#include "resilience/outcome.hpp"

namespace breakerbox::resilience {

class upstream_resilience {
public:
    upstream_resilience(const config::upstream_config& cfg, const clock& clk, std::uint64_t seed);

    const config::upstream_config& cfg;
    outcome_classifier classifier;
    circuit_breaker breaker;
};

// Logs a transition as one structured line (the breaker calls it on the winning thread only).
void log_transition(const transition_event& e);

} // namespace breakerbox::resilience
