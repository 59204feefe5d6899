#include "forward/runtime.hpp"

namespace breakerbox::forward {

runtime::runtime(config::config c, const clock& clk, const runtime* previous) : cfg(std::move(c)), router(cfg)
{
    std::uint64_t seed = static_cast<std::uint64_t>(clk.now());
    if (previous)
        generation = previous->generation + 1;
    for (const auto& u : cfg.upstreams) {
        std::shared_ptr<resilience::circuit_breaker> kept;
        if (previous)
            if (auto i = previous->index_of(u.name); i && previous->cfg.upstreams[*i].breaker == u.breaker)
                kept = previous->resilience[*i]->breaker_ptr;
        (kept ? kept_breakers : fresh_breakers).push_back(u.name);
        resilience.push_back(std::make_shared<resilience::upstream_resilience>(u, clk, seed++, std::move(kept)));
    }
}

std::optional<std::size_t> runtime::index_of(std::string_view upstream) const
{
    for (std::size_t i = 0; i < cfg.upstreams.size(); ++i)
        if (cfg.upstreams[i].name == upstream)
            return i;
    return std::nullopt;
}

} // namespace breakerbox::forward
