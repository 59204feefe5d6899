#include "forward/fallback_response.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {
config::fallback_config static_fallback(std::string body)
{
    config::fallback_config fb;
    fb.kind = config::fallback_kind::static_response;
    fb.status = 503;
    fb.body = std::move(body);
    return fb;
}
} // namespace

TEST(render_static_fallback, substitutes_every_known_placeholder_and_keeps_the_rest)
{
    const forward::fallback_vars vars{"orders", 7, "circuit_open"};
    auto res = forward::render_static_fallback(static_fallback("{{upstream}}{{reason}} in {{retry_after}}s {{other}} {{upstream"), vars);
    EXPECT_EQ(res.body(), "orderscircuit_open in 7s {{other}} {{upstream");
    EXPECT_EQ(res[bhttp::field::content_length], std::to_string(res.body().size()));
    EXPECT_EQ(res[bhttp::field::retry_after], "7");
    EXPECT_EQ(res.result_int(), 503u);

    auto plain = forward::render_static_fallback(static_fallback("no placeholders {{ here"), {"u", 0, "timeout"});
    EXPECT_EQ(plain.body(), "no placeholders {{ here");
    EXPECT_EQ(plain.count(bhttp::field::retry_after), 0u);
}

TEST(render_static_fallback, header_values_cannot_start_a_new_line)
{
    auto fb = static_fallback("x");
    fb.headers.emplace_back("X-Why", "{{reason}}\r\nInjected: yes");
    fb.headers.emplace_back("Content-Length", "999");
    auto res = forward::render_static_fallback(fb, {"u", 0, "timeout"});
    EXPECT_EQ(res["X-Why"], "timeoutInjected: yes");
    EXPECT_EQ(res.count(bhttp::field::content_length), 1u);
    EXPECT_EQ(res[bhttp::field::content_length], "1");
}

TEST(render_static_fallback, a_status_without_content_gets_no_body)
{
    auto fb = static_fallback("ignored");
    fb.status = 204;
    auto no_content = forward::render_static_fallback(fb, {"u", 0, "timeout"});
    EXPECT_TRUE(no_content.body().empty());
    EXPECT_EQ(no_content.count(bhttp::field::content_length), 0u);
    fb.status = 304;
    EXPECT_TRUE(forward::render_static_fallback(fb, {"u", 0, "timeout"}).body().empty());
}

TEST(mark_fallback, leaves_one_kind_and_one_reason)
{
    http::response res{bhttp::status::ok, 11};
    forward::mark_fallback(res, "stale", "timeout");
    forward::mark_fallback(res, "error", "circuit_open");
    EXPECT_EQ(res.count(forward::fallback_header), 1u);
    EXPECT_EQ(res[forward::fallback_header], "error");
    EXPECT_EQ(res[forward::fallback_reason_header], "circuit_open");
}
