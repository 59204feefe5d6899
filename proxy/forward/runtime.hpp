// One generation of configuration: the config, its routing table and the shared per-upstream
// resilience state. Immutable once built and shared (shared_ptr) by everything that uses it, so that a
// reload can install a new one while requests in flight finish on the one they started with.
#pragma once
#include "config/config.hpp"
#include "resilience/upstream_resilience.hpp"
#include "routing/router.hpp"

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace breakerbox::forward {

struct runtime {
    // `previous`: the configuration being replaced; breakers of upstreams whose breaker policy is
    // unchanged are carried over with their state and windows.
    runtime(config::config c, const clock& clk, const runtime* previous);

    const config::config cfg;
    const routing::router router;
    std::vector<std::shared_ptr<resilience::upstream_resilience>> resilience; // same order as cfg.upstreams
    std::uint64_t generation = 1;
    std::vector<std::string> kept_breakers;  // upstream names whose breaker state survived the reload
    std::vector<std::string> fresh_breakers; // upstream names that start with a new breaker

    std::optional<std::size_t> index_of(std::string_view upstream) const;
};

} // namespace breakerbox::forward
