#include "background/outlier_monitor.hpp"

#include "background/active_prober.hpp"
#include "core/log.hpp"
#include "tls/session_cache.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace breakerbox::background {
namespace {

// Health requests to the ejected (not manually ejected) endpoints; a success returns one at once.
asio::awaitable<void> probe_ejected(resilience::upstream_resilience& shared, const std::string& host,
                                    tls::session_cache& sessions)
{
    auto& detector = *shared.outliers;
    const auto& clk = steady_clock_source::instance();
    const auto& cfg = detector.cfg();
    for (const auto& ep : detector.endpoints()) {
        const auto w = upstream::endpoint_word::decode(ep->word.load(std::memory_order_acquire));
        if (w.state != upstream::endpoint_state::ejected || w.manual)
            continue;
        const probe_result r =
            co_await probe_once(ep->address, cfg.probe_path, host, cfg.probe_timeout, shared.tls.get(), sessions);
        const auto outcome = classify_probe(r, shared.classifier);
        log::debug("outlier probe", {{"upstream", shared.cfg.name},
                                     {"endpoint", ep->label},
                                     {"status", r.status},
                                     {"error", r.error == proxy_error::ok ? "" : token(r.error)},
                                     {"outcome", name_of(outcome)}});
        if (r.error == proxy_error::ok && outcome == resilience::outcome::success)
            detector.probe_succeeded(*ep, clk.now());
    }
}

} // namespace

asio::awaitable<void> run_outlier_monitor(std::shared_ptr<resilience::upstream_resilience> shared, std::string probe_host,
                                          std::function<bool()> active)
{
    auto& detector = *shared->outliers;
    const auto& cfg = detector.cfg();
    const auto& clk = steady_clock_source::instance();
    const bool probes = !cfg.probe_path.empty();
    const nanos tick = probes ? std::clamp(cfg.probe_interval, millis(50), seconds(1)) : seconds(1);
    nanos next_evaluation = clk.now() + cfg.interval;
    nanos next_probe = clk.now() + cfg.probe_interval;
    tls::session_cache sessions; // this monitor's own (main thread), for all endpoints of this generation
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (active()) {
        const nanos now = clk.now();
        detector.expire(now);
        if (now >= next_evaluation) {
            resilience::apply_outlier_verdict(*shared, detector.evaluate(now), now);
            next_evaluation = now + cfg.interval;
        }
        if (probes && now >= next_probe && detector.ejected_count() > 0) {
            co_await probe_ejected(*shared, probe_host, sessions);
            next_probe = clk.now() + cfg.probe_interval;
        }
        timer.expires_after(as_duration(tick));
        auto [ec] = co_await timer.async_wait(nothrow_awaitable);
        if (ec)
            co_return;
    }
}

} // namespace breakerbox::background
