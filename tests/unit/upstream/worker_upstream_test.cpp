#include "upstream/worker_upstream.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

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

TEST(worker_upstream_outliers, load_balancing_and_retries_skip_ejected_endpoints_until_their_time_is_over)
{
    config::upstream_config cfg;
    cfg.name = "svc";
    worker_upstream up(cfg, 0, 1);
    std::vector<tcp::endpoint> addresses;
    std::map<tcp::endpoint, std::shared_ptr<endpoint_health>> records;
    for (int i = 0; i < 3; ++i) {
        addresses.emplace_back(asio::ip::make_address("127.0.0.1"), 7001 + i);
        records[addresses.back()] = std::make_shared<endpoint_health>(addresses.back());
    }
    up.set_endpoints(addresses, [&](const tcp::endpoint& a) { return records[a]; });
    // The second endpoint ejected until t = 10 s.
    records[addresses[1]]->word.store(endpoint_word{endpoint_state::ejected, false, false, 10'000}.encode());
    std::set<std::uint16_t> picked;
    for (int k = 0; k < 30; ++k)
        picked.insert(up.pick(seconds(5))->address.port());
    EXPECT_EQ(picked, (std::set<std::uint16_t>{7001, 7003}));
    // A retry avoiding the previous endpoint still never gets the ejected one.
    for (int k = 0; k < 10; ++k) {
        auto* first = up.pick(seconds(5));
        EXPECT_NE(up.pick(seconds(5), first)->address.port(), 7002);
    }
    EXPECT_FALSE(up.all_kept_out(seconds(5)));
    picked.clear();
    for (int k = 0; k < 30; ++k)
        picked.insert(up.pick(seconds(10))->address.port()); // its time is over
    EXPECT_EQ(picked.size(), 3u);
    for (auto& [a, r] : records)
        r->word.store(endpoint_word{endpoint_state::ejected, true, false, 0}.encode()); // all ejected by hand
    EXPECT_EQ(up.pick(seconds(5)), nullptr);
    EXPECT_TRUE(up.all_kept_out(seconds(5)));
}

// A streamed answer or a tunnel keeps its connection long after its exchange (docs/streaming.md): when
// re-resolution drops its address meanwhile, the retired slot must outlive that connection — the
// connection's destructor counts down the slot's open_connections, and a clean end gives it back.
TEST_F(worker_upstream_test, a_retired_endpoint_lives_while_a_stream_holds_its_connection)
{
    auto& old = ep();
    auto held = std::make_unique<upstream_connection>(ioc.get_executor(), old.open_connections); // the stream's
    up->set_endpoints({tcp::endpoint(asio::ip::make_address("127.0.0.1"), 7002)});
    ASSERT_TRUE(old.retired);
    ASSERT_EQ(old.outstanding, 0u); // the exchange is over: only the connection holds the slot
    up->sweep(seconds(1));
    EXPECT_EQ(old.open_connections, 1u);             // still there (a freed slot would be read here: ASan says so)
    up->give_back(old, std::move(held), seconds(2)); // the stream ended cleanly: a retired slot keeps nothing
    EXPECT_EQ(old.open_connections, 0u);
    up->sweep(seconds(3)); // now it goes
}
