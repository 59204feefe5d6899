// What a queued request's delivery records when it ended without an answer: a local refusal is "not
// sent" (no attempt used), anything that may have reached the upstream is a retryable attempt.
#include "background/queue_delivery.hpp"

#include <gtest/gtest.h>

namespace breakerbox {
namespace {

TEST(queue_delivery, every_local_refusal_is_not_sent)
{
    // no_healthy_endpoint included: every endpoint ejected while the breaker stayed closed must not use
    // up a queued request's attempts (it did, before the outcome table decided this).
    for (auto e : {proxy_error::circuit_open, proxy_error::bulkhead_full, proxy_error::queue_timeout,
                   proxy_error::connection_limit, proxy_error::no_endpoint, proxy_error::no_healthy_endpoint})
        EXPECT_TRUE(background::not_sent(e)) << token(e);
    for (auto e : {proxy_error::upstream_reset, proxy_error::upstream_timeout, proxy_error::upstream_connect_failed,
                   proxy_error::upstream_invalid_response, proxy_error::client_closed})
        EXPECT_FALSE(background::not_sent(e)) << token(e);
}

} // namespace
} // namespace breakerbox
