#include "../support/manual_clock.hpp"
#include "resilience/breaker_permit.hpp"
#include "resilience/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace breakerbox;
using namespace breakerbox::resilience;

namespace {

config::breaker_config count_cfg()
{
    config::breaker_config c;
    c.window = config::window_type::count_based;
    c.window_size = 10;
    c.minimum_calls = 10;
    c.consecutive_failures = 0;
    c.failure_rate_enabled = false;
    c.open_duration = seconds(5);
    c.open_duration_jitter = 0;
    c.half_open_max_wait = seconds(10);
    return c;
}

struct circuit_breaker_test : ::testing::Test {
    manual_clock clk;
    std::vector<transition_event> events;
    std::unique_ptr<circuit_breaker> cb;

    void make(const config::breaker_config& c)
    {
        cb = std::make_unique<circuit_breaker>("svc", c, clk, [this](const transition_event& e) { events.push_back(e); });
    }
    // One complete call: admitted (or not) and, if admitted, its outcome after `took`.
    admission call(outcome o, nanos took = 0)
    {
        auto p = cb->try_acquire();
        clk.advance(took);
        cb->on_result(p, o);
        return p.kind;
    }
    void fail(int n)
    {
        for (int i = 0; i < n; ++i)
            call(outcome::failure);
    }
    void succeed(int n)
    {
        for (int i = 0; i < n; ++i)
            call(outcome::success);
    }
};

} // namespace

TEST_F(circuit_breaker_test, consecutive_failures_trip_after_exactly_the_threshold)
{
    auto c = count_cfg();
    c.consecutive_failures = 5;
    make(c);
    fail(4);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    succeed(1); // resets the run
    fail(4);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    fail(1);
    EXPECT_EQ(cb->state(), breaker_state::open);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].from, breaker_state::closed);
    EXPECT_EQ(events[0].to, breaker_state::open);
    EXPECT_EQ(events[0].reason, "5 consecutive failures >= 5");
    EXPECT_EQ(cb->transition_count(breaker_state::closed, breaker_state::open), 1u);
}

TEST_F(circuit_breaker_test, failure_rate_needs_the_minimum_number_of_calls)
{
    auto c = count_cfg();
    c.failure_rate_enabled = true;
    c.failure_rate_threshold = 50;
    c.window_size = 20;
    c.minimum_calls = 20;
    make(c);
    succeed(10);
    fail(9);
    EXPECT_EQ(cb->state(), breaker_state::closed); // 9/19: below the volume
    fail(1);                                       // 10/20 = 50%
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(events.at(0).reason, "failure rate 50% >= 50% over 20 calls (10 failed)");
}

TEST_F(circuit_breaker_test, count_window_forgets_calls_older_than_its_size)
{
    auto c = count_cfg();
    c.failure_rate_enabled = true;
    c.failure_rate_threshold = 50;
    c.window_size = 10;
    c.minimum_calls = 10;
    make(c);
    fail(4);
    succeed(10); // the four failures slide out
    fail(4);     // 4/10
    EXPECT_EQ(cb->state(), breaker_state::closed);
    fail(1); // 5/10
    EXPECT_EQ(cb->state(), breaker_state::open);
}

TEST_F(circuit_breaker_test, minimum_failures_lets_19_of_19_trip_below_the_volume)
{
    auto c = count_cfg();
    c.failure_rate_enabled = true;
    c.window_size = 100;
    c.minimum_calls = 20;
    make(c);
    fail(19);
    EXPECT_EQ(cb->state(), breaker_state::closed); // Hystrix#1729: never trips without minimum_failures

    c.minimum_failures = 10;
    make(c);
    fail(9);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    fail(1);
    EXPECT_EQ(cb->state(), breaker_state::open);
}

TEST_F(circuit_breaker_test, time_window_counts_only_the_last_duration)
{
    auto c = count_cfg();
    c.window = config::window_type::time_based;
    c.window_duration = seconds(10);
    c.window_buckets = 10;
    c.failure_rate_enabled = true;
    c.minimum_calls = 10;
    make(c);
    fail(9);
    clk.advance(seconds(11)); // all nine age out
    fail(9);
    succeed(0);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    clk.advance(seconds(5));
    fail(1); // 10 failures within 10 s
    EXPECT_EQ(cb->state(), breaker_state::open);
}

TEST_F(circuit_breaker_test, slow_calls_trip_the_slow_call_rule)
{
    auto c = count_cfg();
    c.slow_call_enabled = true;
    c.slow_call_duration = millis(500);
    c.slow_call_rate_threshold = 80;
    c.minimum_calls = 10;
    make(c);
    for (int i = 0; i < 7; ++i)
        call(outcome::success, millis(600));
    succeed(2);
    EXPECT_EQ(cb->state(), breaker_state::closed); // 7/9
    call(outcome::success, millis(600));           // 8/10 = 80%
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_NE(events.at(0).reason.find("slow-call rate 80%"), std::string::npos);
}

// Slow-call rules without a rate: the window's minimum is out of reach on purpose.
config::breaker_config slow_streak_cfg(std::uint32_t consecutive, bool in_flight)
{
    auto c = count_cfg();
    c.slow_call_enabled = true;
    c.slow_call_duration = millis(500);
    c.slow_call_rate_threshold = 100;
    c.minimum_calls = 1000;
    c.window_size = 1000;
    c.slow_call_consecutive = consecutive;
    c.slow_call_in_flight = in_flight;
    return c;
}

TEST_F(circuit_breaker_test, consecutive_slow_calls_trip_and_a_fast_call_ends_the_streak)
{
    make(slow_streak_cfg(3, false));
    call(outcome::success, millis(600));
    call(outcome::failure, millis(500)); // slow too: slowness is about time, not the answer
    call(outcome::failure, millis(10));  // a fast call, failed or not, ends the streak
    call(outcome::success, millis(600));
    call(outcome::success, millis(600));
    EXPECT_EQ(cb->state(), breaker_state::closed);
    EXPECT_EQ(cb->snapshot().consecutive_slow_calls, 2u);
    call(outcome::success, millis(600));
    ASSERT_EQ(cb->state(), breaker_state::open);
    EXPECT_NE(events.at(0).reason.find("3 consecutive slow calls >= 3"), std::string::npos) << events.at(0).reason;
    EXPECT_EQ(cb->snapshot().consecutive_slow_calls, 3u);
}

TEST_F(circuit_breaker_test, in_flight_slow_calls_are_recorded_once_when_they_become_slow_and_can_trip)
{
    make(slow_streak_cfg(3, true));
    std::vector<std::unique_ptr<breaker_permit>> calls;
    for (int i = 0; i < 3; ++i)
        calls.push_back(std::make_unique<breaker_permit>(*cb, cb->try_acquire()));
    clk.advance(millis(499));
    for (auto& p : calls)
        p->record_if_slow(clk.now());
    EXPECT_EQ(cb->snapshot().window.calls, 0u); // not slow yet
    clk.advance(millis(1));
    calls[0]->record_if_slow(clk.now());
    calls[0]->record_if_slow(clk.now()); // once only
    calls[1]->record_if_slow(clk.now());
    EXPECT_EQ(cb->snapshot().window.calls, 2u);
    EXPECT_EQ(cb->snapshot().window.slow, 2u);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    calls[2]->record_if_slow(clk.now()); // the third, still without an answer: trips
    ASSERT_EQ(cb->state(), breaker_state::open);
    EXPECT_TRUE(calls[2]->slow_recorded());
    for (auto& p : calls) // their timeouts arrive later: from the closed period, they change nothing
        p->complete(outcome::failure, clk.now() + seconds(1));
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(events.size(), 1u);
}

TEST_F(circuit_breaker_test, a_call_recorded_slow_in_flight_still_counts_its_failure_in_the_streak_but_not_twice_in_the_window)
{
    auto c = slow_streak_cfg(0, true);
    c.consecutive_failures = 2;
    make(c);
    {
        breaker_permit p(*cb, cb->try_acquire());
        clk.advance(millis(600));
        p.record_if_slow(clk.now());
        clk.advance(millis(400));
        p.complete(outcome::failure, clk.now()); // the timeout
    }
    EXPECT_EQ(cb->snapshot().window.calls, 1u);
    EXPECT_EQ(cb->snapshot().window.failures, 0u);
    EXPECT_EQ(cb->snapshot().consecutive_failures, 1u);
    fail(1);
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_NE(events.at(0).reason.find("2 consecutive failures"), std::string::npos);
}

TEST_F(circuit_breaker_test, without_in_flight_a_running_call_is_not_recorded_before_it_ends)
{
    make(slow_streak_cfg(1, false));
    breaker_permit p(*cb, cb->try_acquire());
    clk.advance(seconds(10));
    p.record_if_slow(clk.now());
    EXPECT_FALSE(p.slow_recorded());
    EXPECT_EQ(cb->snapshot().window.calls, 0u);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    p.complete(outcome::success, clk.now());
    EXPECT_EQ(cb->state(), breaker_state::open); // slow at its end, as Resilience4j records it
}

TEST_F(circuit_breaker_test, a_probe_that_becomes_slow_in_flight_fails_at_once_and_its_late_end_changes_nothing)
{
    auto c = slow_streak_cfg(0, true);
    c.consecutive_failures = 1;
    c.half_open_max_probes = 2;
    make(c);
    fail(1);
    clk.advance(seconds(5));
    auto slow = std::make_unique<breaker_permit>(*cb, cb->try_acquire());
    ASSERT_EQ(slow->get().kind, admission::probe);
    clk.advance(millis(600));
    slow->record_if_slow(clk.now());
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_NE(events.back().reason.find("probe failed"), std::string::npos);
    clk.advance(seconds(60));
    auto next = std::make_unique<breaker_permit>(*cb, cb->try_acquire()); // the next half-open period
    ASSERT_EQ(next->get().kind, admission::probe);
    slow->complete(outcome::success, clk.now()); // its late end touches neither the new period...
    slow.reset();                                // ...nor its probe slots
    EXPECT_EQ(cb->snapshot().probes_in_flight, 1u);
    EXPECT_EQ(cb->try_acquire().kind, admission::probe);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_probes);
}

TEST_F(circuit_breaker_test, ignored_outcomes_count_neither_way)
{
    auto c = count_cfg();
    c.consecutive_failures = 3;
    make(c);
    fail(2);
    for (int i = 0; i < 5; ++i)
        call(outcome::ignored);
    fail(1);
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(cb->snapshot().window.calls, 3u); // the three failures only: ignored calls never enter the window
}

TEST_F(circuit_breaker_test, open_rejects_then_half_open_admits_limited_probes_and_closes)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.half_open_max_probes = 2;
    c.half_open_successes_to_close = 2;
    make(c);
    fail(1);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    EXPECT_EQ(cb->time_until_probe(), seconds(5));
    clk.advance(seconds(5) - millis(1));
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    clk.advance(millis(1));
    auto p1 = cb->try_acquire();
    auto p2 = cb->try_acquire();
    auto p3 = cb->try_acquire();
    EXPECT_EQ(cb->state(), breaker_state::half_open);
    EXPECT_EQ(p1.kind, admission::probe);
    EXPECT_EQ(p2.kind, admission::probe);
    EXPECT_EQ(p3.kind, admission::rejected_probes);
    cb->on_result(p1, outcome::success);
    EXPECT_EQ(cb->state(), breaker_state::half_open);
    cb->on_result(p2, outcome::success);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[1].to, breaker_state::half_open);
    EXPECT_EQ(events[2].to, breaker_state::closed);
    EXPECT_EQ(events[2].reason, "2 probe(s) succeeded in half-open");
}

TEST_F(circuit_breaker_test, with_an_active_probe_client_calls_are_never_probes)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.half_open_max_probes = 2;
    c.half_open_successes_to_close = 2;
    c.probe_path = "/health";
    make(c);
    EXPECT_TRUE(cb->probes_actively());
    EXPECT_EQ(cb->try_acquire_probe(clk.now()).kind, admission::rejected_open); // closed: nothing to probe
    fail(1);
    clk.advance(seconds(5));
    // The open time has passed, but a client call neither moves the state nor becomes a probe.
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    EXPECT_EQ(cb->state(), breaker_state::open);
    auto p1 = cb->try_acquire_probe(clk.now());
    EXPECT_EQ(p1.kind, admission::probe);
    EXPECT_EQ(cb->state(), breaker_state::half_open);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_probes); // half-open: still the prober's
    cb->on_result(p1, outcome::success);
    auto p2 = cb->try_acquire_probe(clk.now());
    EXPECT_EQ(p2.kind, admission::probe);
    cb->on_result(p2, outcome::success);
    EXPECT_EQ(cb->state(), breaker_state::closed);
    EXPECT_EQ(cb->try_acquire().kind, admission::admitted);
    EXPECT_EQ(cb->try_acquire_probe(clk.now()).kind, admission::rejected_open);
}

TEST_F(circuit_breaker_test, certain_rejection_agrees_with_try_acquire_and_changes_nothing)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    make(c);
    EXPECT_EQ(cb->certain_rejection(clk.now()), std::nullopt); // closed
    fail(1);
    EXPECT_EQ(cb->certain_rejection(clk.now()), admission::rejected_open);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    clk.advance(seconds(5));
    EXPECT_EQ(cb->certain_rejection(clk.now()), std::nullopt); // a probe may go now...
    EXPECT_EQ(cb->state(), breaker_state::open);               // ...and looking did not move the state
    auto probe = cb->try_acquire();
    EXPECT_EQ(probe.kind, admission::probe);
    EXPECT_EQ(cb->certain_rejection(clk.now()), std::nullopt); // half-open: only trying tells
    cb->force_open("test");
    EXPECT_EQ(cb->certain_rejection(clk.now()), admission::rejected_open);

    c.probe_path = "/health"; // with an active prober, open and half-open reject every client call
    make(c);
    fail(1);
    clk.advance(seconds(5));
    EXPECT_EQ(cb->certain_rejection(clk.now()), admission::rejected_open);
    auto active = cb->try_acquire_probe(clk.now());
    EXPECT_EQ(active.kind, admission::probe);
    EXPECT_EQ(cb->certain_rejection(clk.now()), admission::rejected_probes);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_probes);
}

TEST_F(circuit_breaker_test, without_an_active_probe_the_prober_path_behaves_like_a_client)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    make(c);
    EXPECT_FALSE(cb->probes_actively());
    fail(1);
    clk.advance(seconds(5));
    EXPECT_EQ(cb->try_acquire().kind, admission::probe); // Resilience4j semantics: the client is the probe
}

TEST_F(circuit_breaker_test, a_failed_probe_reopens_with_a_longer_open_time_up_to_the_cap)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.open_duration = seconds(5);
    c.open_duration_multiplier = 2;
    c.max_open_duration = seconds(15);
    make(c);
    fail(1);
    EXPECT_EQ(events.back().open_for, seconds(5));
    clk.advance(seconds(5));
    call(outcome::failure); // probe fails
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(events.back().open_for, seconds(10));
    EXPECT_EQ(events.back().reason, "probe failed in half-open");
    clk.advance(seconds(10));
    call(outcome::failure);
    EXPECT_EQ(events.back().open_for, seconds(15)); // capped (20 s otherwise)
}

TEST_F(circuit_breaker_test, open_time_resets_after_staying_closed_long_enough)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.open_backoff_reset_after = seconds(60);
    make(c);
    fail(1);
    clk.advance(seconds(5));
    succeed(1); // probe succeeds: closed
    EXPECT_EQ(cb->state(), breaker_state::closed);
    clk.advance(seconds(30));
    fail(1); // re-trip soon after: grows
    EXPECT_EQ(events.back().open_for, seconds(10));
    clk.advance(seconds(10));
    succeed(1);
    clk.advance(seconds(61));
    fail(1); // closed long enough: back to the base
    EXPECT_EQ(events.back().open_for, seconds(5));
}

TEST_F(circuit_breaker_test, jitter_stays_within_its_bounds_and_varies)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.open_duration_jitter = 0.2;
    c.open_duration_multiplier = 1;
    std::vector<nanos> seen;
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        cb = std::make_unique<circuit_breaker>(
            "svc", c, clk,
            [&](const transition_event& e) {
                if (e.to == breaker_state::open)
                    seen.push_back(e.open_for);
            },
            seed);
        call(outcome::failure);
    }
    ASSERT_EQ(seen.size(), 20u);
    for (nanos d : seen) {
        EXPECT_GE(d, seconds(4));
        EXPECT_LE(d, seconds(6));
    }
    EXPECT_NE(*std::min_element(seen.begin(), seen.end()), *std::max_element(seen.begin(), seen.end()));
}

TEST_F(circuit_breaker_test, half_open_gives_up_after_max_wait)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.half_open_max_wait = seconds(10);
    make(c);
    fail(1);
    clk.advance(seconds(5));
    auto stuck = cb->try_acquire(); // a probe that never completes
    EXPECT_EQ(stuck.kind, admission::probe);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_probes);
    clk.advance(seconds(10));
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_NE(events.back().reason.find("max_wait"), std::string::npos);
    cb->on_result(stuck, outcome::success); // late: must not close the new open state
    EXPECT_EQ(cb->state(), breaker_state::open);
}

TEST_F(circuit_breaker_test, released_probe_frees_its_slot)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    make(c);
    fail(1);
    clk.advance(seconds(5));
    auto p = cb->try_acquire();
    EXPECT_EQ(p.kind, admission::probe);
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_probes);
    cb->release(p); // client went away
    EXPECT_EQ(cb->try_acquire().kind, admission::probe);
}

TEST_F(circuit_breaker_test, late_outcomes_from_an_older_state_are_ignored)
{
    auto c = count_cfg();
    c.consecutive_failures = 2;
    make(c);
    auto early = cb->try_acquire();
    fail(2);
    EXPECT_EQ(cb->state(), breaker_state::open);
    clk.advance(seconds(5));
    auto probe = cb->try_acquire();
    cb->on_result(early, outcome::failure); // from the closed period: no effect on half-open
    EXPECT_EQ(cb->state(), breaker_state::half_open);
    cb->on_result(probe, outcome::success);
    EXPECT_EQ(cb->state(), breaker_state::closed);
}

TEST_F(circuit_breaker_test, operator_states)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    make(c);
    cb->force_open("test");
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open);
    clk.advance(seconds(3600));
    EXPECT_EQ(cb->try_acquire().kind, admission::rejected_open); // never half-opens by itself
    EXPECT_EQ(events.back().reason, "operator force-open by test");

    cb->force_closed("test");
    fail(10);
    EXPECT_EQ(cb->state(), breaker_state::forced_closed); // records, never trips
    EXPECT_EQ(cb->snapshot().window.failures, 10u);

    cb->disable("test");
    fail(10);
    EXPECT_EQ(cb->try_acquire().kind, admission::admitted);
    EXPECT_EQ(cb->state(), breaker_state::disabled);

    cb->reset("test");
    EXPECT_EQ(cb->state(), breaker_state::closed);
    EXPECT_EQ(cb->snapshot().window.calls, 0u);
    fail(1);
    EXPECT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(events.back().open_for, seconds(5));
}

TEST_F(circuit_breaker_test, disabled_by_configuration_admits_everything)
{
    auto c = count_cfg();
    c.enabled = false;
    c.consecutive_failures = 1;
    make(c);
    fail(50);
    EXPECT_EQ(cb->state(), breaker_state::disabled);
    EXPECT_TRUE(events.empty());
}

TEST_F(circuit_breaker_test, recovery_ramp_admits_a_growing_share)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.recovery_ramp = seconds(10);
    make(c);
    EXPECT_EQ(cb->try_acquire().kind, admission::admitted); // no ramp at start-up
    fail(1);
    clk.advance(seconds(5));
    succeed(1); // probe closes it: the ramp starts now
    auto share = [&] {
        int admitted = 0;
        for (int i = 0; i < 1000; ++i) {
            auto p = cb->try_acquire();
            if (p.admitted()) {
                ++admitted;
                cb->release(p);
            }
        }
        return admitted;
    };
    clk.advance(seconds(1));
    int early = share();
    clk.advance(seconds(5));
    int later = share();
    EXPECT_NEAR(early, 100, 15);
    EXPECT_NEAR(later, 600, 15);
    clk.advance(seconds(5));
    EXPECT_EQ(share(), 1000);
    EXPECT_EQ(cb->state(), breaker_state::closed); // ramp rejections are not failures
}

TEST_F(circuit_breaker_test, snapshot_reports_figures)
{
    auto c = count_cfg();
    c.consecutive_failures = 3;
    make(c);
    succeed(2);
    fail(2);
    auto s = cb->snapshot();
    EXPECT_EQ(s.state, breaker_state::closed);
    EXPECT_EQ(s.window.calls, 4u);
    EXPECT_EQ(s.window.failures, 2u);
    EXPECT_EQ(s.consecutive_failures, 2u);
    fail(1);
    s = cb->snapshot();
    EXPECT_EQ(s.state, breaker_state::open);
    EXPECT_EQ(s.trips, 1u);
    EXPECT_EQ(s.open_until, clk.now() + seconds(5));
    EXPECT_EQ(s.last_reason, "3 consecutive failures >= 3");
}

// What is reported must match what the next call finds, with or without traffic: an open circuit whose
// open time is over admits its next call as a probe, so it reports half_open (issue 15, fault 5).
TEST_F(circuit_breaker_test, an_open_circuit_past_its_open_time_reports_half_open_without_traffic)
{
    auto c = count_cfg();
    c.consecutive_failures = 2;
    c.open_duration = millis(1500);
    make(c);
    fail(2);
    ASSERT_EQ(cb->state(), breaker_state::open);
    EXPECT_EQ(cb->effective_state(clk.now()), breaker_state::open);
    EXPECT_EQ(cb->snapshot().state, breaker_state::open);
    EXPECT_EQ(cb->snapshot().open_until, clk.now() + millis(1500));

    clk.advance(millis(1499));
    EXPECT_EQ(cb->snapshot().state, breaker_state::open);
    clk.advance(millis(1));
    EXPECT_EQ(cb->effective_state(clk.now()), breaker_state::half_open);
    clk.advance(seconds(600)); // minutes without a request
    const auto snap = cb->snapshot();
    EXPECT_EQ(snap.state, breaker_state::half_open);
    EXPECT_EQ(snap.recorded_state, breaker_state::open); // the stored word moves lazily
    EXPECT_EQ(snap.open_until, 0);
    EXPECT_EQ(cb->time_until_probe(), 0);
    EXPECT_EQ(events.size(), 1u); // no transition happened: only the report says what comes next

    // And the next call is indeed a probe, as reported.
    auto p = cb->try_acquire();
    EXPECT_EQ(p.kind, admission::probe);
    EXPECT_EQ(cb->state(), breaker_state::half_open);
    cb->on_result(p, outcome::success);
}

TEST_F(circuit_breaker_test, operator_states_are_reported_as_stored)
{
    make(count_cfg());
    cb->force_open("test");
    clk.advance(seconds(3600));
    EXPECT_EQ(cb->snapshot().state, breaker_state::forced_open);
    EXPECT_EQ(cb->effective_state(clk.now()), breaker_state::forced_open);
}

TEST(breaker_transitions, only_the_state_machine_enters_open_and_half_open)
{
    using s = breaker_state;
    EXPECT_TRUE(is_automatic_transition(s::closed, s::open));
    EXPECT_TRUE(is_automatic_transition(s::open, s::half_open));
    EXPECT_TRUE(is_automatic_transition(s::half_open, s::closed));
    EXPECT_TRUE(is_automatic_transition(s::half_open, s::open));
    EXPECT_FALSE(is_automatic_transition(s::closed, s::half_open));
    EXPECT_FALSE(is_automatic_transition(s::open, s::closed));
    EXPECT_FALSE(is_legal_transition(s::closed, s::half_open));
    EXPECT_FALSE(is_legal_transition(s::forced_open, s::open));
    EXPECT_FALSE(is_legal_transition(s::disabled, s::half_open));
    for (auto from : {s::closed, s::open, s::half_open, s::forced_open, s::forced_closed, s::disabled})
        for (auto to : {s::closed, s::forced_open, s::forced_closed, s::disabled})
            EXPECT_TRUE(is_legal_transition(from, to)); // operator actions
}

// A streamed answer recorded at its head that breaks afterwards is one more failure (docs/streaming.md):
// while closed it counts toward the rules, so a run of broken streams with good heads trips the circuit.
TEST_F(circuit_breaker_test, a_stream_broken_after_its_head_counts_as_a_failure)
{
    auto c = count_cfg();
    c.consecutive_failures = 3;
    make(c);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(cb->state(), breaker_state::closed) << i;
        auto head = cb->try_acquire();
        ASSERT_EQ(head.kind, admission::admitted);
        cb->on_stream_head(head, outcome::success, clk.now()); // the head: a 200
        cb->on_failure_after_answer(clk.now());                // then the body breaks
    }
    EXPECT_EQ(cb->state(), breaker_state::open);
}

// A stream that completes ends the run, as a success does; a plain success (a buffered answer) too.
TEST_F(circuit_breaker_test, a_completed_stream_ends_a_run_of_failures)
{
    auto c = count_cfg();
    c.consecutive_failures = 3;
    make(c);
    fail(2);
    auto head = cb->try_acquire();
    cb->on_stream_head(head, outcome::success, clk.now());
    EXPECT_EQ(cb->snapshot().consecutive_failures, 2u); // not yet: the body may still break
    cb->on_stream_completed();
    EXPECT_EQ(cb->snapshot().consecutive_failures, 0u);
    fail(2);
    EXPECT_EQ(cb->state(), breaker_state::closed);
}

// Open or half-open: a late failure changes nothing (the probe was decided by the head; an open circuit
// records nothing).
TEST_F(circuit_breaker_test, a_late_failure_is_not_recorded_unless_closed)
{
    auto c = count_cfg();
    c.consecutive_failures = 1;
    c.half_open_max_probes = 1;
    c.half_open_successes_to_close = 1;
    make(c);
    fail(1);
    ASSERT_EQ(cb->state(), breaker_state::open);
    const auto transitions = cb->snapshot().transitions;
    cb->on_failure_after_answer(clk.now());
    EXPECT_EQ(cb->snapshot().transitions, transitions);
    clk.advance(seconds(6));
    auto probe = cb->try_acquire();
    ASSERT_EQ(probe.kind, admission::probe);
    cb->on_failure_after_answer(clk.now()); // another stream of the earlier period breaks meanwhile: not recorded
    cb->on_result(probe, outcome::success);
    EXPECT_EQ(cb->state(), breaker_state::closed);
}
