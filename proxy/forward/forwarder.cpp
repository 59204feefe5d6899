#include "forward/forwarder.hpp"

#include "forward/upstream_exchange.hpp"
#include "http/error_response.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"
#include "resilience/breaker_permit.hpp"

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;

// Rewrites the client's request into the one sent upstream (RFC 9110 §7.6).
void prepare_upstream_request(http::request& req, const routing::route_match& route, const proxy_state& state,
                              const config::upstream_config& up, const client_info& client)
{
    http::strip_hop_by_hop(req.base());
    req.erase(bhttp::field::expect); // the body is already buffered: no 100-continue upstream
    http::add_forwarding_fields(req.base(), state.cfg.forwarding, {client.ip, route.authority});
    if (!up.host_rewrite.empty())
        req.set(bhttp::field::host, up.host_rewrite);
    else if (req[bhttp::field::host].empty() || req.target().front() != '/')
        req.set(bhttp::field::host, route.authority.empty() ? up.endpoints.front().text() : route.authority);
    req.target(route.origin_target);
    req.version(11);
    http::frame_request(req);
}

// Turns the upstream's response into the one sent downstream.
void prepare_client_response(http::response& res, bool head_request, const proxy_state& state)
{
    http::strip_hop_by_hop(res.base());
    http::frame_response(res, head_request);
    if (state.cfg.forwarding.via) {
        auto existing = res[bhttp::field::via];
        res.set(bhttp::field::via, existing.empty() ? std::string("1.1 breakerbox") : std::string(existing) + ", 1.1 breakerbox");
    }
}

upstream_outcome outcome_label(proxy_error e, resilience::outcome classified)
{
    switch (e) {
    case proxy_error::ok:
        return classified == resilience::outcome::success   ? upstream_outcome::success
               : classified == resilience::outcome::failure ? upstream_outcome::status_failure
                                                            : upstream_outcome::ignored;
    case proxy_error::upstream_connect_failed: return upstream_outcome::connect_failed;
    case proxy_error::upstream_connect_timeout: return upstream_outcome::connect_timeout;
    case proxy_error::upstream_timeout: return upstream_outcome::timeout;
    case proxy_error::upstream_reset: return upstream_outcome::reset;
    default: return upstream_outcome::invalid_response;
    }
}

rejection_reason rejection_label(resilience::admission a)
{
    switch (a) {
    case resilience::admission::rejected_probes: return rejection_reason::half_open_full;
    case resilience::admission::rejected_ramp: return rejection_reason::recovery_ramp;
    default: return rejection_reason::circuit_open;
    }
}

// Counts a request against its endpoint for least-outstanding balancing, even if the coroutine is
// destroyed mid-flight.
struct outstanding_guard {
    explicit outstanding_guard(upstream::endpoint_slot& ep) : ep_(ep) { ++ep_.outstanding; }
    ~outstanding_guard() { --ep_.outstanding; }
    outstanding_guard(const outstanding_guard&) = delete;
    outstanding_guard& operator=(const outstanding_guard&) = delete;

private:
    upstream::endpoint_slot& ep_;
};

// The breaker said no. NOTE: this is where configured fallbacks will answer instead (issue: bulkheads,
// retries and fallbacks); until then the explicit 503.
forward_result rejected_by_breaker(const resilience::circuit_breaker& cb, const resilience::permit& p,
                                   const config::upstream_config& up)
{
    const auto state = cb.state();
    const nanos wait = cb.time_until_probe();
    // Whole seconds, rounded up; the breaker stores times at millisecond resolution, so up to 1 ms of
    // its rounding is not allowed to add a second.
    const long retry_after = std::max<long>(1, static_cast<long>((wait - millis(1) + seconds(1) - 1) / seconds(1)));
    std::string_view why = p.kind == resilience::admission::rejected_probes ? "half-open: the allowed probes are already in flight"
                           : p.kind == resilience::admission::rejected_ramp ? "recovering: admitting a growing share of traffic"
                                                                            : "the circuit is open";
    return {http::make_circuit_open_response(up.name, resilience::to_string(state), retry_after, why),
            proxy_error::circuit_open, up.name};
}

forward_result proxy_failure(proxy_error e, const config::upstream_config& up, std::string_view detail)
{
    return {http::make_error_response(e, up.name, detail), e, up.name};
}

} // namespace

asio::awaitable<forward_result> forward_request(worker_context& worker, http::request& req,
                                                const routing::route_match& route, const client_info& client)
{
    auto& up = worker.upstreams[route.upstream];
    const auto& ucfg = up.cfg();
    const bool head = req.method() == bhttp::verb::head;

    auto& shared = *worker.state.resilience[route.upstream];
    auto& stats = worker.stats.upstreams[route.upstream];

    // Breaker admission first: an open circuit answers without touching the network.
    const auto started = std::chrono::steady_clock::now();
    const nanos started_ns = started.time_since_epoch().count(); // steady_clock_source's time base
    resilience::breaker_permit permit(shared.breaker, shared.breaker.try_acquire(started_ns));
    if (!permit.get().admitted()) {
        stats.count(rejection_label(permit.get().kind));
        co_return rejected_by_breaker(shared.breaker, permit.get(), ucfg);
    }

    prepare_upstream_request(req, route, worker.state, ucfg, client);

    upstream::endpoint_slot* ep = up.pick();
    if (!ep) {
        stats.count(rejection_reason::no_endpoint);
        co_return proxy_failure(proxy_error::no_endpoint, ucfg, {}); // local: the permit is released, nothing recorded
    }

    exchange_limits limits{started + as_duration(ucfg.request_timeout), ucfg.connect_timeout,
                           worker.state.cfg.limits.max_response_body};
    exchange_result result;
    {
        outstanding_guard counted{*ep};
        result = co_await exchange(up, *ep, req, limits);
    }

    const nanos finished_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    const auto classified = result.error == proxy_error::ok ? shared.classifier.of_status(result.response.result_int())
                                                            : shared.classifier.of_error(result.error);
    permit.complete(classified, finished_ns);
    stats.count(outcome_label(result.error, classified));
    stats.observe_duration(finished_ns - started_ns);
    if (ucfg.breaker.slow_call_enabled && finished_ns - started_ns >= ucfg.breaker.slow_call_duration)
        stats.slow.add();
    if (result.error != proxy_error::ok)
        co_return proxy_failure(result.error, ucfg, result.detail);
    prepare_client_response(result.response, head, worker.state);
    co_return forward_result{std::move(result.response), proxy_error::ok, ucfg.name};
}

} // namespace breakerbox::forward
