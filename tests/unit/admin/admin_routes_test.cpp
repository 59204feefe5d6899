// The admin API's one route table (admin/admin_routes.hpp): which route a request finds, what each
// refuses before its handler (method, token, Host), and the 404 that lists them all.
#include "admin/admin_routes.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

namespace breakerbox::admin {
namespace {

namespace bhttp = boost::beast::http;

http::request request(bhttp::verb method, std::string_view target, std::string_view authorization = {},
                      std::string_view host = "127.0.0.1:9901")
{
    http::request req{method, target, 11};
    req.set(bhttp::field::host, host);
    if (!authorization.empty())
        req.set(bhttp::field::authorization, authorization);
    return req;
}

std::string path_of(bhttp::verb method, std::string_view target)
{
    const auto* route = find_route(request(method, target));
    return route ? std::string(route->path) : "(none)";
}

TEST(find_route, exact_paths_and_prefixes_with_their_rest)
{
    EXPECT_EQ(path_of(bhttp::verb::get, "/live"), "/live");
    EXPECT_EQ(path_of(bhttp::verb::get, "/live/x"), "(none)");
    EXPECT_EQ(path_of(bhttp::verb::get, "/health/circuits?x=1"), "/health/circuits");
    EXPECT_EQ(path_of(bhttp::verb::get, "/health/circuits/svc"), "/health/circuits/{upstream}");
    EXPECT_EQ(path_of(bhttp::verb::get, "/admin/queuesX"), "(none)");
    EXPECT_EQ(path_of(bhttp::verb::get, "/admin/queues"), "/admin/queues");
    const auto req = request(bhttp::verb::post, "/admin/endpoints/svc/%5B%3A%3A1%5D%3A7001/eject?x");
    EXPECT_EQ(route_rest(*find_route(req), req), "svc/%5B%3A%3A1%5D%3A7001/eject");
    const auto live = request(bhttp::verb::get, "/live");
    EXPECT_EQ(route_rest(*find_route(live), live), "");
}

TEST(find_route, a_query_condition_picks_the_cluster_wide_action)
{
    EXPECT_EQ(path_of(bhttp::verb::post, "/admin/circuits/svc/force-open?scope=cluster&for=30s"),
              "/admin/circuits/{upstream}/{action}?scope=cluster");
    EXPECT_EQ(path_of(bhttp::verb::post, "/admin/circuits/svc/force-open?scope=local"), "/admin/circuits/{upstream}/{action}");
    const auto req = request(bhttp::verb::post, "/admin/circuits/svc/reset?scope=cluster");
    EXPECT_EQ(route_rest(*find_route(req), req), "svc/reset");
}

TEST(find_route, every_route_has_one_handler_and_a_description)
{
    for (const auto& route : admin_api()) {
        EXPECT_NE(route.now == nullptr, route.later == nullptr) << route.path;
        EXPECT_FALSE(route.description.empty()) << route.path;
        EXPECT_TRUE(route.path.starts_with('/')) << route.path;
    }
}

std::optional<unsigned> refused_with(bhttp::verb method, std::string_view target, std::string_view authorization,
                                     std::string_view token, std::string_view host = "127.0.0.1:9901")
{
    const auto req = request(method, target, authorization, host);
    const auto* route = find_route(req);
    EXPECT_TRUE(route) << target;
    const auto refused = refusal(*route, req, {"127.0.0.1", token});
    return refused ? std::optional(refused->result_int()) : std::nullopt;
}

TEST(refusal, the_method_before_the_token)
{
    EXPECT_EQ(refused_with(bhttp::verb::post, "/live", {}, "t"), 405u);
    EXPECT_EQ(refused_with(bhttp::verb::head, "/metrics", {}, "t"), std::nullopt); // GET answers HEAD
    EXPECT_EQ(refused_with(bhttp::verb::get, "/admin/reload", {}, "t"), 405u);
    EXPECT_EQ(refused_with(bhttp::verb::post, "/admin/reload", {}, "t"), 401u);
    EXPECT_EQ(refused_with(bhttp::verb::post, "/admin/reload", "Bearer t", ""), 403u); // no token configured
    EXPECT_EQ(refused_with(bhttp::verb::post, "/admin/reload", "Bearer wrong", "t"), 401u);
    EXPECT_EQ(refused_with(bhttp::verb::post, "/admin/reload", "bearer t", "t"), std::nullopt);
    EXPECT_EQ(refused_with(bhttp::verb::get, "/admin/circuits/svc/reset?scope=cluster", "Bearer t", "t"), 405u);
    const auto req = request(bhttp::verb::delete_, "/admin/reload");
    EXPECT_NE(refusal(*find_route(req), req, {"127.0.0.1", "t"})->body().find("POST only"), std::string::npos);
}

TEST(refusal, the_queues_check_the_token_first_and_leave_the_method_to_their_handler)
{
    EXPECT_EQ(refused_with(bhttp::verb::get, "/admin/queues", {}, "t"), 401u); // a read needs the token too
    EXPECT_EQ(refused_with(bhttp::verb::put, "/admin/queues/svc", {}, "t"), 401u);
    EXPECT_EQ(refused_with(bhttp::verb::put, "/admin/queues/svc", "Bearer t", "t"), std::nullopt);
    EXPECT_EQ(refused_with(bhttp::verb::delete_, "/admin/queues/svc/7", "Bearer t", "t"), std::nullopt);
}

TEST(refusal, the_browser_facing_routes_want_an_address_or_localhost)
{
    EXPECT_EQ(refused_with(bhttp::verb::get, "/dashboard", {}, "", "localhost:9901"), std::nullopt);
    EXPECT_EQ(refused_with(bhttp::verb::get, "/events", {}, "", "[::1]:9901"), std::nullopt);
    EXPECT_EQ(refused_with(bhttp::verb::get, "/events", {}, "", "evil.example:9901"), 421u);
    EXPECT_EQ(refused_with(bhttp::verb::get, "/metrics", {}, "", "evil.example:9901"), std::nullopt);
}

TEST(not_found_response, lists_every_route_once)
{
    const auto res = not_found_response();
    EXPECT_EQ(res.result_int(), 404u);
    const auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["error"], "not_found");
    std::set<std::string> listed;
    for (const auto& e : body["endpoints"])
        listed.insert(e["endpoint"].get<std::string>());
    EXPECT_EQ(listed.size(), admin_api().size());
    EXPECT_TRUE(listed.contains("GET /health/circuits/{upstream}"));
    EXPECT_TRUE(listed.contains("POST /admin/reload"));
    EXPECT_NE(body["detail"].get<std::string>().find("GET /live, GET /ready, "), std::string::npos);
}

} // namespace
} // namespace breakerbox::admin
