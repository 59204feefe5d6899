// What the next request finds and who decides it (issue 30 §1): every combination of the local
// breaker's state and the cluster's verdict, checked against what the gate and the breaker admit, so
// that the reports built on circuit_view cannot say "closed" while requests are turned away.
#include "../support/manual_clock.hpp"
#include "resilience/circuit_view.hpp"

#include <gtest/gtest.h>

namespace breakerbox::resilience {
namespace {

config::breaker_config breaker_cfg()
{
    config::breaker_config c;
    c.consecutive_failures = 5;
    c.failure_rate_enabled = false;
    c.open_duration = seconds(10);
    c.open_duration_jitter = 0;
    return c;
}

struct circuit_view_test : ::testing::Test {
    manual_clock clk;
    circuit_breaker cb{"svc", breaker_cfg(), clk, nullptr};
    cluster_gate gate;
    void trip()
    {
        for (int i = 0; i < 5; ++i) {
            auto p = cb.try_acquire();
            cb.on_result(p, outcome::failure);
        }
        ASSERT_EQ(cb.state(), breaker_state::open);
    }
    circuit_view view() { return effective_circuit(cb, gate, clk.now()); }
};

TEST_F(circuit_view_test, a_closed_breaker_without_a_verdict_passes_now)
{
    const auto v = view();
    EXPECT_EQ(v.state, breaker_state::closed);
    EXPECT_EQ(v.decided_by, circuit_decider::breaker);
    EXPECT_FALSE(v.rejects());
    EXPECT_EQ(retry_after_seconds(v), 1);
}

// The replica 3: its own breaker closed, the cluster's verdict open with 10 s left.
TEST_F(circuit_view_test, the_clusters_open_verdict_is_what_requests_find)
{
    const nanos now = clk.now();
    gate.set(cluster_verdict::open, now + seconds(3), now + seconds(10)); // valid for 3 s (a few syncs)
    ASSERT_EQ(gate.admit(now), gate_admission::reject);                   // what the forwarder does
    const auto v = view();
    EXPECT_EQ(v.state, breaker_state::open);
    EXPECT_EQ(v.decided_by, circuit_decider::cluster);
    EXPECT_TRUE(v.rejects());
    EXPECT_EQ(retry_after_seconds(v), 10); // not 1
    clk.advance(millis(2500));
    EXPECT_EQ(retry_after_seconds(view()), 8);
}

TEST_F(circuit_view_test, the_longer_wait_of_cluster_and_breaker_is_the_next_probe)
{
    trip(); // local: 10 s
    const nanos now = clk.now();
    gate.set(cluster_verdict::open, now + seconds(1), now + seconds(3));
    EXPECT_EQ(retry_after_seconds(view()), 10);
    EXPECT_EQ(view().decided_by, circuit_decider::cluster); // the gate is asked first
}

TEST_F(circuit_view_test, another_replicas_probe_keeps_this_one_rejecting)
{
    const nanos now = clk.now();
    gate.set(cluster_verdict::half_open, now + millis(600), now);
    ASSERT_EQ(gate.admit(now), gate_admission::reject);
    const auto v = view();
    EXPECT_TRUE(v.rejects());
    EXPECT_EQ(v.decided_by, circuit_decider::cluster);
    EXPECT_EQ(retry_after_seconds(v), 1);
}

TEST_F(circuit_view_test, holding_the_clusters_probe_is_half_open)
{
    const nanos now = clk.now();
    gate.set(cluster_verdict::probing, now + seconds(1), now + seconds(1));
    const auto v = view();
    EXPECT_EQ(v.state, breaker_state::half_open);
    EXPECT_EQ(v.decided_by, circuit_decider::cluster);
    trip(); // the local breaker is asked after the gate: an open one still refuses the probe
    EXPECT_EQ(view().state, breaker_state::open);
    EXPECT_EQ(view().decided_by, circuit_decider::breaker);
}

TEST_F(circuit_view_test, a_cluster_wide_forced_open_says_when_it_ends)
{
    const nanos now = clk.now();
    gate.set(cluster_verdict::forced_open, now + seconds(1), now + seconds(30));
    const auto v = view();
    EXPECT_EQ(v.state, breaker_state::forced_open);
    EXPECT_EQ(v.decided_by, circuit_decider::cluster_operator);
    EXPECT_EQ(retry_after_seconds(v), 30);
}

TEST_F(circuit_view_test, a_cluster_wide_forced_closed_leaves_the_local_breaker_to_decide)
{
    trip();
    const nanos now = clk.now();
    gate.set(cluster_verdict::forced_closed, now + seconds(1), now + seconds(30));
    ASSERT_EQ(gate.admit(now), gate_admission::pass);
    EXPECT_EQ(view().state, breaker_state::open);
    EXPECT_EQ(view().decided_by, circuit_decider::breaker);
}

TEST_F(circuit_view_test, a_local_forced_open_has_no_next_probe)
{
    cb.force_open("test");
    const auto v = view();
    EXPECT_EQ(v.state, breaker_state::forced_open);
    EXPECT_EQ(v.decided_by, circuit_decider::operator_action);
    EXPECT_FALSE(v.next_probe_in.has_value());
    EXPECT_EQ(retry_after_seconds(v), 0); // no Retry-After at all
}

TEST_F(circuit_view_test, an_open_breaker_past_its_open_time_is_half_open)
{
    trip();
    EXPECT_EQ(retry_after_seconds(view()), 10);
    clk.advance(seconds(10));
    EXPECT_EQ(view().state, breaker_state::half_open);
    EXPECT_FALSE(view().rejects());
}

TEST_F(circuit_view_test, an_expired_verdict_decides_nothing)
{
    const nanos now = clk.now();
    gate.set(cluster_verdict::open, now + seconds(1), now + seconds(10));
    clk.advance(seconds(1) + millis(2)); // the gate keeps times in whole milliseconds, rounded up
    EXPECT_EQ(view().state, breaker_state::closed);
    EXPECT_EQ(view().decided_by, circuit_decider::breaker);
}

} // namespace
} // namespace breakerbox::resilience
