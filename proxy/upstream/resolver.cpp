#include "upstream/resolver.hpp"

#include "core/log.hpp"

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace breakerbox::upstream {
namespace {

void add_unique(std::vector<tcp::endpoint>& out, const tcp::endpoint& ep)
{
    if (std::find(out.begin(), out.end(), ep) == out.end())
        out.push_back(ep);
}

void order(std::vector<tcp::endpoint>& v)
{
    std::stable_partition(v.begin(), v.end(), [](const tcp::endpoint& e) { return e.address().is_v4(); });
}

} // namespace

bool all_literal(const config::upstream_config& up)
{
    return std::all_of(up.endpoints.begin(), up.endpoints.end(), [](const config::host_port& hp) {
        error_code ec;
        asio::ip::make_address(hp.host, ec);
        return !ec;
    });
}

resolution resolve_now(const config::upstream_config& up)
{
    resolution out;
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    for (const auto& hp : up.endpoints) {
        error_code ec;
        auto results = resolver.resolve(hp.host, std::to_string(hp.port), tcp::resolver::numeric_service, ec);
        if (ec) {
            out.errors.push_back(hp.text() + ": " + ec.message());
            continue;
        }
        for (const auto& r : results)
            add_unique(out.addresses, r.endpoint());
    }
    order(out.addresses);
    return out;
}

asio::awaitable<void> keep_resolving(const config::upstream_config& up, std::vector<tcp::endpoint> current,
                                     publish_fn publish, std::function<bool()> active)
{
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    tcp::resolver resolver(ex);
    for (;;) {
        timer.expires_after(as_duration(up.resolve_interval));
        auto [tec] = co_await timer.async_wait(nothrow_awaitable);
        if (tec || !active())
            co_return;
        std::vector<tcp::endpoint> next;
        bool failed = false;
        for (const auto& hp : up.endpoints) {
            auto [ec, results] = co_await resolver.async_resolve(hp.host, std::to_string(hp.port),
                                                                 tcp::resolver::numeric_service, nothrow_awaitable);
            if (ec) {
                failed = true;
                log::warn("re-resolution failed; keeping the last known addresses",
                          {{"upstream", up.name}, {"endpoint", hp.text()}, {"error", ec.message()}});
                continue;
            }
            for (const auto& r : results)
                add_unique(next, r.endpoint());
        }
        order(next);
        if (next.empty() || (failed && next.size() < current.size()) || next == current)
            continue;
        log::info("upstream addresses changed", {{"upstream", up.name}, {"count", next.size()}});
        current = next;
        publish(std::move(next));
    }
}

} // namespace breakerbox::upstream
