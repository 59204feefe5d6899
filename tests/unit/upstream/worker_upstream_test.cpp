#include "upstream/worker_upstream.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
using namespace breakerbox::upstream;

namespace {

struct worker_upstream_test : ::testing::Test {
    asio::io_context ioc;
    config::upstream_config cfg;
    std::unique_ptr<worker_upstream> up;

    void SetUp() override
    {
        cfg.name = "svc";
        cfg.pool.idle_timeout = seconds(60);
        up = std::make_unique<worker_upstream>(cfg, 0, 1);
        up->set_endpoints({tcp::endpoint(asio::ip::make_address("127.0.0.1"), 7001)});
    }
    endpoint_slot& ep() { return *up->pick(0); }
    // A connection after an exchange: its buffers hold the capacity the exchange gave them.
    std::unique_ptr<upstream_connection> used_connection()
    {
        auto c = std::make_unique<upstream_connection>(ioc.get_executor(), ep().open_connections);
        c->buffer.prepare(8192);
        c->head.assign(300, 'h');
        c->head.clear();
        return c;
    }
};

} // namespace

TEST_F(worker_upstream_test, idle_pooled_connections_give_their_buffers_back_after_a_second)
{
    const nanos t0 = seconds(100);
    up->give_back(ep(), used_connection(), t0);
    up->sweep(t0 + millis(999));
    ASSERT_EQ(ep().idle.size(), 1u);
    EXPECT_GE(ep().idle.back()->buffer.capacity(), 8192u); // a connection in steady use keeps them
    EXPECT_GE(ep().idle.back()->head.capacity(), 300u);
    up->sweep(t0 + seconds(1));
    ASSERT_EQ(ep().idle.size(), 1u); // still pooled, only lighter
    EXPECT_EQ(ep().idle.back()->buffer.capacity(), 0u);
    EXPECT_LT(ep().idle.back()->head.capacity(), 300u);
}

TEST_F(worker_upstream_test, connections_idle_past_the_idle_timeout_are_closed)
{
    const nanos t0 = seconds(100);
    up->give_back(ep(), used_connection(), t0);
    up->sweep(t0 + seconds(60));
    EXPECT_TRUE(ep().idle.empty());
    EXPECT_EQ(ep().open_connections, 0u);
}
