#include "forward/retry_policy.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {
constexpr std::int64_t now_unix = 1796083200; // Tue, 01 Dec 2026 00:00:00 GMT

config::retry_config policy()
{
    config::retry_config rc;
    rc.max_attempts = 3;
    rc.backoff_base = millis(25);
    rc.backoff_max = millis(250);
    rc.retry_after_max = seconds(1);
    return rc;
}

http::response answer(unsigned status, std::string_view retry_after = {})
{
    http::response res{static_cast<bhttp::status>(status), 11};
    if (!retry_after.empty())
        res.set(bhttp::field::retry_after, retry_after);
    return res;
}
} // namespace

TEST(method_retryable, follows_rfc9110_and_the_post_rule)
{
    auto rc = policy();
    http::request get{bhttp::verb::get, "/", 11};
    http::request post{bhttp::verb::post, "/", 11};
    EXPECT_TRUE(forward::method_retryable(get, rc));
    EXPECT_FALSE(forward::method_retryable(post, rc));
    post.set("Idempotency-Key", "k1");
    EXPECT_TRUE(forward::method_retryable(post, rc));
    http::request plain_post{bhttp::verb::post, "/", 11};
    rc.allow_post = true;
    EXPECT_TRUE(forward::method_retryable(plain_post, rc));
    http::request patch{bhttp::verb::patch, "/", 11};
    EXPECT_FALSE(forward::method_retryable(patch, rc));
}

TEST(retry_delay, full_jitter_from_the_random_number)
{
    const auto rc = policy();
    const auto ok = answer(503);
    // attempt 1: ceiling 25 ms; attempt 2: 50 ms; attempt 5: capped at 250 ms.
    EXPECT_EQ(forward::retry_delay(proxy_error::upstream_reset, ok, rc, 1, 7, now_unix), 7);
    EXPECT_EQ(forward::retry_delay(proxy_error::upstream_reset, ok, rc, 1, millis(25) + 1, now_unix), 0);
    EXPECT_EQ(forward::retry_delay(proxy_error::upstream_reset, ok, rc, 2, millis(50), now_unix), millis(50));
    EXPECT_EQ(forward::retry_delay(proxy_error::upstream_reset, ok, rc, 5, millis(250), now_unix), millis(250));
}

TEST(retry_delay, honours_a_valid_retry_after_and_ignores_an_invalid_one)
{
    const auto rc = policy();
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "1"), rc, 1, 7, now_unix), seconds(1));
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "2"), rc, 1, 7, now_unix), std::nullopt); // beyond retry_after_max
    // A date in the past means now (RFC 9110 §10.2.3), not "stop retrying".
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "Sun, 06 Nov 1994 08:49:37 GMT"), rc, 1, 7, now_unix), 0);
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "Tue, 01 Dec 2026 00:00:01 GMT"), rc, 1, 7, now_unix), seconds(1));
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "Tue, 01 Dec 2026 00:01:00 GMT"), rc, 1, 7, now_unix), std::nullopt);
    // Invalid values are ignored: the usual backoff applies.
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "-5"), rc, 1, 7, now_unix), 7);
    EXPECT_EQ(forward::retry_delay(proxy_error::ok, answer(503, "later"), rc, 1, 7, now_unix), 7);
}

TEST(outcome_retryable, by_error_and_status)
{
    auto rc = policy();
    rc.on_statuses = {503};
    EXPECT_TRUE(forward::outcome_retryable(proxy_error::ok, answer(503), rc));
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::ok, answer(500), rc));
    rc.on_reset = false;
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::upstream_reset, answer(200), rc));
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::circuit_open, answer(200), rc));
}
