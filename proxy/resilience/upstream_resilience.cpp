#include "resilience/upstream_resilience.hpp"

#include "core/log.hpp"

#include <nlohmann/json.hpp>

namespace breakerbox::resilience {

upstream_resilience::upstream_resilience(const config::upstream_config& c, const clock& clk, std::uint64_t seed,
                                         std::shared_ptr<circuit_breaker> kept, std::shared_ptr<outlier_detector> kept_outliers)
    : cfg(c), classifier(c.breaker.classify),
      breaker_ptr(kept ? std::move(kept) : std::make_shared<circuit_breaker>(c.name, c.breaker, clk, log_transition, seed)),
      breaker(*breaker_ptr), bulk(c.bulkhead.max_concurrent, c.bulkhead.max_queue),
      budget(c.retries.budget_ratio, c.retries.budget_min_concurrent),
      outliers(kept_outliers        ? std::move(kept_outliers)
               : c.outliers.enabled ? std::make_shared<outlier_detector>(c.name, c.outliers, seed)
                                    : nullptr),
      streams(c.streaming.max_streams), tunnels(c.streaming.max_tunnels)
{
    if (c.has_stale_fallback())
        cache = std::make_unique<stale_cache>(c.stale_cache);
}

namespace {
std::function<void(const transition_event&)>& transition_observer()
{
    static std::function<void(const transition_event&)> observer;
    return observer;
}
} // namespace

void set_transition_observer(std::function<void(const transition_event&)> observer)
{
    transition_observer() = std::move(observer);
}

void log_transition(const transition_event& e)
{
    nlohmann::json fields = {
        {"upstream", e.upstream}, {"from", to_string(e.from)}, {"to", to_string(e.to)}, {"reason", e.reason}};
    if (e.to == breaker_state::open)
        fields["open_for_ms"] = e.open_for / millis(1);
    const auto lvl = e.to == breaker_state::open || e.to == breaker_state::forced_open ? log::level::warn : log::level::info;
    if (log::enabled(lvl))
        log::write(lvl, "circuit transition", fields);
    if (const auto& observer = transition_observer())
        observer(e);
}

void apply_outlier_verdict(upstream_resilience& shared, outlier_verdict verdict, nanos now)
{
    if (!verdict.open_upstream || !shared.outliers)
        return;
    const auto state = shared.breaker.state();
    if (shared.breaker.trip_from_outside(verdict.reason, now)) {
        shared.outliers->count_upstream_open();
        return;
    }
    // Not closed: open already, or half-open (its probes decide), or an operator's state or a disabled
    // breaker, which outlier detection does not override. Said, so it is not silent.
    if (state != breaker_state::open)
        log::warn("too few healthy endpoints, but the circuit is not closed: left as it is",
                  {{"upstream", shared.cfg.name}, {"state", to_string(state)}, {"reason", verdict.reason}});
}

} // namespace breakerbox::resilience
