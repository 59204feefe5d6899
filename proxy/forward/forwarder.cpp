#include "forward/forwarder.hpp"

#include "forward/upstream_exchange.hpp"
#include "http/error_response.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"

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

    prepare_upstream_request(req, route, worker.state, ucfg, client);

    upstream::endpoint_slot* ep = up.pick();
    if (!ep)
        co_return proxy_failure(proxy_error::no_endpoint, ucfg, {});

    exchange_limits limits{std::chrono::steady_clock::now() + as_duration(ucfg.request_timeout), ucfg.connect_timeout,
                           worker.state.cfg.limits.max_response_body};
    exchange_result result;
    {
        outstanding_guard counted{*ep};
        result = co_await exchange(up, *ep, req, limits);
    }

    if (result.error != proxy_error::ok)
        co_return proxy_failure(result.error, ucfg, result.detail);
    prepare_client_response(result.response, head, worker.state);
    co_return forward_result{std::move(result.response), proxy_error::ok, ucfg.name};
}

} // namespace breakerbox::forward
