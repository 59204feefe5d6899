#include "config/loader.hpp"
#include "routing/router.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;

namespace {

config::config make_config()
{
    auto r = config::load_string(R"(
listeners:
  - {name: main, address: "127.0.0.1:8080"}
  - {name: pay, address: "127.0.0.1:9001", upstream: payments}
upstreams:
  payments:
    endpoints: ["127.0.0.1:1"]
    routes: {hosts: [payments, Payments.Internal:8443], path_prefix: /pay, strip_prefix: true}
  api:
    endpoints: ["127.0.0.1:2"]
    routes: {path_prefix: /api}
  api-v2:
    endpoints: ["127.0.0.1:3"]
    routes: {path_prefix: /api/v2/, strip_prefix: true}
)", "t.yaml", [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
    EXPECT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors[0].text());
    return *r.cfg;
}

} // namespace

class router_test : public ::testing::Test {
protected:
    config::config cfg = make_config();
    routing::router router{cfg};
    std::string name_of(const std::optional<routing::route_match>& m) { return m ? cfg.upstreams[m->upstream].name : "none"; }
};

TEST_F(router_test, dedicated_listener_takes_everything)
{
    auto m = router.match(1, "/anything?x=1", "whatever");
    EXPECT_EQ(name_of(m), "payments");
    EXPECT_EQ(m->origin_target, "/anything?x=1");
}

TEST_F(router_test, host_header_matches_case_insensitively_with_or_without_port)
{
    EXPECT_EQ(name_of(router.match(0, "/x", "PAYMENTS")), "payments");
    EXPECT_EQ(name_of(router.match(0, "/x", "payments:8080")), "payments"); // bare entry: any port
    EXPECT_EQ(name_of(router.match(0, "/x", "payments.internal:8443")), "payments");
    EXPECT_EQ(name_of(router.match(0, "/x", "payments.internal:80")), "none");
}

TEST_F(router_test, absolute_form_uses_its_authority_and_becomes_origin_form)
{
    auto m = router.match(0, "http://payments/v1/charge?id=1#frag", "ignored");
    ASSERT_TRUE(m);
    EXPECT_EQ(name_of(m), "payments");
    EXPECT_EQ(m->origin_target, "/v1/charge?id=1");
    EXPECT_EQ(m->authority, "payments");
    auto q = router.match(0, "http://payments?x=1", "");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->origin_target, "/?x=1");
}

TEST_F(router_test, absolute_form_for_unknown_hosts_is_never_routed)
{
    EXPECT_FALSE(router.match(0, "http://evil.example/pay/x", "evil.example"));
    EXPECT_FALSE(router.match(0, "http://user@payments/x", "payments"));
    EXPECT_FALSE(router.match(0, "https://payments/x", "payments"));
    EXPECT_FALSE(router.match(0, "payments:443", "payments"));
    EXPECT_FALSE(router.match(0, "*", ""));
}

TEST_F(router_test, longest_prefix_on_segment_boundaries_with_stripping)
{
    auto m = router.match(0, "/pay/charge", "127.0.0.1:8080");
    EXPECT_EQ(name_of(m), "payments");
    EXPECT_EQ(m->origin_target, "/charge");
    EXPECT_EQ(router.match(0, "/pay", "")->origin_target, "/");
    EXPECT_EQ(router.match(0, "/pay?x=1", "")->origin_target, "/?x=1");
    EXPECT_EQ(name_of(router.match(0, "/payment", "")), "none");
    EXPECT_EQ(name_of(router.match(0, "/api/v1/x", "")), "api");
    EXPECT_EQ(router.match(0, "/api/v1/x", "")->origin_target, "/api/v1/x"); // not stripped
    auto v2 = router.match(0, "/api/v2/items", "");
    EXPECT_EQ(name_of(v2), "api-v2");
    EXPECT_EQ(v2->origin_target, "/items");
}

TEST_F(router_test, nothing_matches_means_no_route)
{
    EXPECT_FALSE(router.match(0, "/", "127.0.0.1:8080"));
    EXPECT_FALSE(router.match(0, "/other", "unknown"));
}
