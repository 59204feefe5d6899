#include "core/error.hpp"
#include "http/error_response.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace breakerbox;

TEST(proxy_error, every_reason_has_a_token_a_status_and_a_message)
{
    for (int i = 1; i <= static_cast<int>(proxy_error::client_closed); ++i) {
        auto e = static_cast<proxy_error>(i);
        EXPECT_NE(token(e), "unknown") << i;
        EXPECT_GE(http_status(e), 400u) << i;
        EXPECT_FALSE(make_error_code(e).message().empty());
        EXPECT_STREQ(make_error_code(e).category().name(), "breakerbox.proxy");
    }
    EXPECT_EQ(http_status(proxy_error::upstream_connect_failed), 502u);
    EXPECT_EQ(http_status(proxy_error::upstream_timeout), 504u);
    EXPECT_EQ(http_status(proxy_error::circuit_open), 503u);
}

TEST(error_response, carries_json_and_the_reason_header)
{
    auto res = http::make_error_response(proxy_error::upstream_timeout, "payments", "too slow");
    EXPECT_EQ(res.result_int(), 504u);
    EXPECT_EQ(res[http::error_header], "upstream_timeout");
    EXPECT_EQ(res[http::upstream_header], "payments");
    auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["error"], "upstream_timeout");
    EXPECT_EQ(body["upstream"], "payments");
    EXPECT_EQ(body["detail"], "too slow");
    EXPECT_EQ(res[boost::beast::http::field::content_length], std::to_string(res.body().size()));
}
