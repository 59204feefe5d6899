// One configuration generation: the config, its routing table, and each upstream's state shared by
// all workers (breaker, bulkhead, retry budget, stale cache) with its static fallback answers rendered
// once. Immutable once built and shared (shared_ptr) by everything that uses it, so that a reload can
// install a new one while requests in flight finish on the one they started with.
#pragma once
#include "config/config.hpp"
#include "resilience/fallback_response.hpp"
#include "resilience/upstream_resilience.hpp"
#include "routing/router.hpp"

#include <array>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace breakerbox::runtime {

struct config_generation {
    // `previous`: the configuration being replaced; breakers of upstreams whose breaker policy is
    // unchanged are carried over with their state and windows.
    config_generation(config::config c, const clock& clk, const config_generation* previous);

    const config::config cfg;
    const routing::router router;
    std::vector<std::shared_ptr<resilience::upstream_resilience>> upstreams; // same order as cfg.upstreams
    std::uint64_t generation = 1;
    std::vector<std::string> kept_breakers;  // upstream names whose breaker state survived the reload
    std::vector<std::string> fresh_breakers; // upstream names that start with a new breaker

    std::optional<std::size_t> index_of(std::string_view upstream) const;
    // The static fallback answer of upstream `u`'s fallback `f` for `trigger`, rendered once; nullptr when
    // it has to be rendered per answer (or `f` is not a static fallback).
    const resilience::prerendered_answer* static_answer(std::size_t u, std::size_t f,
                                                        config::fallback_trigger trigger) const noexcept;

private:
    // [upstream][fallback][trigger bit]
    std::vector<std::vector<std::array<std::optional<resilience::prerendered_answer>, config::fallback_trigger_count>>>
        static_answers_;
};

} // namespace breakerbox::runtime
