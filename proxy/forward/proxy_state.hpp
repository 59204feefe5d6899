// Everything shared by all workers: the configuration, the routing table, and the process-wide
// counters. Shared; the config and router are immutable after start-up, the rest are atomics.
#pragma once
#include "config/config.hpp"
#include "resilience/upstream_resilience.hpp"
#include "routing/router.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace breakerbox::forward {

struct proxy_state {
    proxy_state(config::config c, const clock& clk, std::size_t workers) : cfg(std::move(c)), router(cfg), worker_count(workers)
    {
        std::uint64_t seed = static_cast<std::uint64_t>(clk.now());
        for (const auto& u : cfg.upstreams)
            resilience.push_back(std::make_unique<resilience::upstream_resilience>(u, clk, seed++));
    }

    const config::config cfg;
    const routing::router router;
    const std::size_t worker_count;
    std::vector<std::unique_ptr<resilience::upstream_resilience>> resilience; // same order as cfg.upstreams

    std::atomic<bool> ready{false};      // every listener bound and serving; false again while draining
    std::atomic<bool> draining{false};
    std::atomic<std::int64_t> active_connections{0};
    std::atomic<std::uint64_t> accept_errors{0};
    std::atomic<std::uint64_t> rejected_connections{0}; // above limits.max_connections or while draining

    // Identity of this sidecar instance: breaker state is per instance, and /health/circuits says so.
    std::string instance_id;
    std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
};

} // namespace breakerbox::forward
