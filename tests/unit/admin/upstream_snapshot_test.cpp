// One upstream's figures read once (admin/upstream_snapshot.hpp): the rates, the next probe only while
// requests are turned away, the counters summed over the workers. Manual clock; nothing sleeps.
#include "admin/upstream_snapshot.hpp"

#include "../support/manual_clock.hpp"
#include "config/loader.hpp"
#include "runtime/worker_context.hpp"

#include <gtest/gtest.h>

namespace breakerbox::admin {
namespace {

TEST(ratio, is_zero_without_a_whole)
{
    EXPECT_DOUBLE_EQ(ratio(0, 0), 0.0);
    EXPECT_DOUBLE_EQ(ratio(3, 0), 0.0);
    EXPECT_DOUBLE_EQ(ratio(1, 4), 0.25);
}

struct snapshot_fixture : ::testing::Test {
    asio::io_context ioc;
    manual_clock clk;
    std::optional<runtime::proxy_state> state;
    std::optional<runtime::worker_context> first, second;
    std::optional<admin_context> ctx;

    void SetUp() override
    {
        auto loaded = config::load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n"
                                          "upstreams:\n  svc:\n    endpoints: [\"127.0.0.1:1\"]\n    routes: {hosts: [svc]}\n"
                                          "    circuit_breaker: {consecutive_failures: 2, open_duration: 5s}\n"
                                          "    outlier_detection: {enabled: false}\n",
                                          "snapshot_test.yaml", [](const std::string&) { return std::optional<std::string>(); });
        ASSERT_TRUE(loaded.cfg);
        state.emplace(std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), clk, nullptr), 2);
        first.emplace(ioc, *state, 0, clk);
        second.emplace(ioc, *state, 1, clk);
        ctx.emplace(admin_context{*state, {&*first, &*second}, clk, {}});
    }
    resilience::upstream_resilience& svc() { return *state->current()->upstreams[0]; }
    void fail_once()
    {
        auto& cb = svc().breaker;
        cb.on_result(cb.try_acquire(clk.now()), resilience::outcome::failure, clk.now());
    }
};

TEST_F(snapshot_fixture, a_closed_circuit_has_no_next_probe_and_sums_the_workers_counters)
{
    first->current->upstreams[0].stats.count(runtime::upstream_outcome::success);
    second->current->upstreams[0].stats.count(runtime::upstream_outcome::success);
    second->current->upstreams[0].stats.count(runtime::upstream_outcome::timeout);
    fail_once();
    const auto u = take_upstream_snapshot(*ctx, svc(), clk.now());
    EXPECT_EQ(u.name(), "svc");
    EXPECT_EQ(u.circuit.state, resilience::breaker_state::closed);
    EXPECT_FALSE(u.next_probe_in);
    EXPECT_EQ(u.breaker.window.calls, 1u);
    EXPECT_DOUBLE_EQ(u.failure_rate, 1.0);
    EXPECT_DOUBLE_EQ(u.slow_call_rate, 0.0);
    EXPECT_EQ(u.totals.outcomes[static_cast<std::size_t>(runtime::upstream_outcome::success)], 2u);
    EXPECT_EQ(u.totals.outcomes[static_cast<std::size_t>(runtime::upstream_outcome::timeout)], 1u);
    EXPECT_FALSE(u.ejected); // outlier detection is off
    EXPECT_EQ(u.bulkhead.in_flight, 0u);
}

TEST_F(snapshot_fixture, an_open_circuit_says_when_the_next_probe_may_go_and_why)
{
    fail_once();
    fail_once();
    clk.advance(seconds(2));
    const auto u = take_upstream_snapshot(*ctx, svc(), clk.now());
    EXPECT_EQ(u.circuit.state, resilience::breaker_state::open);
    ASSERT_TRUE(u.next_probe_in);
    EXPECT_GT(*u.next_probe_in, 0);
    EXPECT_LE(*u.next_probe_in, seconds(3) + seconds(1)); // the open time, with its jitter
    EXPECT_DOUBLE_EQ(u.seconds_in_state, 2.0);
    EXPECT_EQ(u.reason, u.breaker.last_reason); // the local breaker decides
    EXPECT_FALSE(u.reason.empty());
}

TEST_F(snapshot_fixture, a_forced_open_circuit_has_no_next_probe)
{
    svc().breaker.force_open("tester");
    const auto u = take_upstream_snapshot(*ctx, svc(), clk.now());
    EXPECT_TRUE(u.circuit.rejects());
    EXPECT_EQ(u.circuit.decided_by, resilience::circuit_decider::operator_action);
    EXPECT_FALSE(u.next_probe_in); // an operator holds it until they release it
}

} // namespace
} // namespace breakerbox::admin
