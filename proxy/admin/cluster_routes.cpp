#include "admin/cluster_routes.hpp"

#include "admin/event_hub.hpp"
#include "cluster/cluster_sync.hpp"
#include "config/units.hpp"
#include "core/log.hpp"

namespace breakerbox::admin {

asio::awaitable<http::response> handle_cluster_action(const admin_context& ctx, const http::request& req,
                                                      const admin_request_info& info, std::string_view rest)
{
    const std::string_view target = req.target();
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos)
        co_return json_error_response(404, "not_found",
                                      "use POST /admin/circuits/{upstream}/{force-open|force-closed|reset}?scope=cluster");
    const std::string upstream(rest.substr(0, slash));
    const auto action = rest.substr(slash + 1);
    const auto rt = ctx.state.current();
    const auto* u = rt->cfg.find_upstream(upstream);
    if (!u || u->breaker.scope != config::breaker_scope::cluster || !ctx.cluster)
        co_return json_error_response(404, "not_clustered",
                                      "no upstream \"" + upstream + "\" with circuit_breaker.scope: cluster");
    cluster::operator_action a{upstream, {}, 0, std::string(info.remote_ip)};
    if (action == "force-open")
        a.state = "forced_open";
    else if (action == "force-closed")
        a.state = "forced_closed";
    else if (action == "reset")
        a.state = "reset";
    else
        co_return json_error_response(404, "unknown_action", "cluster-wide actions: force-open, force-closed, reset");
    if (auto lasts = query_value(target, "for"); !lasts.empty()) {
        const auto d = config::parse_duration(std::string(lasts));
        if (!d || *d <= 0 || a.state == "reset")
            co_return json_error_response(400, "bad_duration",
                                          "for= takes a duration such as 30s or 10m, with force-open or force-closed");
        a.lasts = *d;
    }
    auto error = co_await ctx.cluster->apply_operator_action(a);
    if (!error.empty())
        co_return json_error_response(503, "cluster_unavailable", error);
    if (ctx.events)
        ctx.events->publish("operator",
                            {{"action", std::string(action)}, {"scope", "cluster"}, {"upstream", upstream}, {"who", a.who}});
    co_return json_response(200, {{"action", std::string(action)},
                                  {"scope", "cluster"},
                                  {"upstream", upstream},
                                  {"lasts_ms", a.lasts / 1'000'000},
                                  {"by", a.who}});
}

} // namespace breakerbox::admin
