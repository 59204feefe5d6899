// Everything shared by all workers: the configuration, the routing table, and the process-wide
// counters. Shared; the config and router are immutable after start-up, the rest are atomics.
#pragma once
#include "config/config.hpp"
#include "routing/router.hpp"

#include <atomic>
#include <cstdint>

namespace breakerbox::forward {

struct proxy_state {
    explicit proxy_state(config::config c) : cfg(std::move(c)), router(cfg) {}

    const config::config cfg;
    const routing::router router;

    std::atomic<bool> draining{false};
    std::atomic<std::int64_t> active_connections{0};
};

} // namespace breakerbox::forward
