#include "runtime/config_generation.hpp"

#include "tls/upstream_tls.hpp"

#include <bit>

namespace breakerbox::runtime {
namespace {

// The same upstream's TLS in the configuration being replaced, if it had TLS.
const tls::upstream_tls* previous_tls(const config_generation* previous, const std::string& name)
{
    if (!previous)
        return nullptr;
    const auto i = previous->index_of(name);
    return i ? previous->upstreams[*i]->tls.get() : nullptr;
}

} // namespace

config_generation::config_generation(config::config c, const clock& clk, const config_generation* previous)
    : cfg(std::move(c)), router(cfg)
{
    std::uint64_t seed = static_cast<std::uint64_t>(clk.now());
    if (previous)
        generation = previous->generation + 1;
    for (const auto& u : cfg.upstreams) {
        std::shared_ptr<resilience::circuit_breaker> kept;
        std::shared_ptr<resilience::outlier_detector> kept_outliers; // ejections survive a reload that keeps the policy
        if (auto i = previous ? previous->index_of(u.name) : std::nullopt) {
            const auto& before = previous->cfg.upstreams[*i];
            if (before.breaker == u.breaker)
                kept = previous->upstreams[*i]->breaker_ptr;
            if (u.outliers.enabled && before.outliers == u.outliers)
                kept_outliers = previous->upstreams[*i]->outliers;
        }
        (kept ? kept_breakers : fresh_breakers).push_back(u.name);
        auto& shared = upstreams.emplace_back(
            std::make_shared<resilience::upstream_resilience>(u, clk, seed++, std::move(kept), std::move(kept_outliers)));
        if (u.tls.enabled)
            shared->tls = std::make_shared<tls::upstream_tls>(u.tls, previous_tls(previous, u.name));
        auto& answers = static_answers_.emplace_back(u.fallbacks.size());
        for (std::size_t f = 0; f < u.fallbacks.size(); ++f) {
            const auto& fb = u.fallbacks[f];
            if (fb.kind != config::fallback_kind::static_response)
                continue;
            for (unsigned bit = 0; bit < config::fallback_trigger_count; ++bit)
                if (fb.triggers & (1u << bit))
                    answers[f][bit] =
                        resilience::prerender_static_fallback(fb, u.name, static_cast<config::fallback_trigger>(1u << bit));
        }
    }
}

const resilience::prerendered_answer* config_generation::static_answer(std::size_t u, std::size_t f,
                                                                       config::fallback_trigger trigger) const noexcept
{
    const auto& answer = static_answers_[u][f][std::countr_zero(static_cast<unsigned>(trigger))];
    return answer ? &*answer : nullptr;
}

std::optional<std::size_t> config_generation::index_of(std::string_view upstream) const
{
    for (std::size_t i = 0; i < cfg.upstreams.size(); ++i)
        if (cfg.upstreams[i].name == upstream)
            return i;
    return std::nullopt;
}

} // namespace breakerbox::runtime
