// The outlier detector on its own: time is passed in (never slept), addresses are made up.
#include "resilience/outlier_detector.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>

#include <thread>

namespace breakerbox::resilience {
namespace {

using upstream::endpoint_word;

tcp::endpoint address(int i) { return tcp::endpoint(asio::ip::make_address("127.0.0." + std::to_string(i + 1)), 7000); }

std::vector<tcp::endpoint> addresses(int n)
{
    std::vector<tcp::endpoint> out;
    for (int i = 0; i < n; ++i)
        out.push_back(address(i));
    return out;
}

config::outlier_config policy()
{
    config::outlier_config c;
    c.consecutive_5xx = 3;
    c.consecutive_local_origin_failure = 2;
    c.base_ejection_time = seconds(10);
    c.max_ejection_time = seconds(25);
    c.max_ejection_time_jitter = 0;
    return c;
}

struct detector_fixture : ::testing::Test {
    void make(int n, config::outlier_config c = policy())
    {
        d = std::make_unique<outlier_detector>("svc", c, 42);
        d->set_endpoints(addresses(n));
        eps = d->endpoints();
    }
    outlier_verdict fail(int i, int times, endpoint_outcome o = endpoint_outcome::failure_status)
    {
        outlier_verdict last;
        for (int k = 0; k < times; ++k)
            if (auto v = d->record(*eps[i], o, now); v.open_upstream)
                last = v;
        return last;
    }
    endpoint_state state(int i) const { return endpoint_word::decode(eps[i]->word.load()).state; }
    bool in_rotation(int i) const { return eps[i]->in_load_balancing(now); }

    std::unique_ptr<outlier_detector> d;
    std::vector<std::shared_ptr<endpoint_health>> eps;
    nanos now = seconds(1000);
};

TEST_F(detector_fixture, consecutive_failure_answers_eject_at_the_threshold)
{
    make(3);
    fail(0, 2);
    EXPECT_EQ(state(0), endpoint_state::healthy);
    d->record(*eps[0], endpoint_outcome::success, now); // a success ends the streak
    fail(0, 2);
    EXPECT_EQ(state(0), endpoint_state::healthy);
    fail(0, 1);
    EXPECT_EQ(state(0), endpoint_state::ejected);
    EXPECT_FALSE(in_rotation(0));
    EXPECT_EQ(d->ejected_count(), 1u);
    EXPECT_EQ(d->enforced_total(outlier_rule::consecutive_5xx), 1u);
    EXPECT_EQ(d->detected_total(outlier_rule::consecutive_5xx), 1u);
}

TEST_F(detector_fixture, local_origin_and_status_failures_are_separate_streaks)
{
    make(3);
    fail(0, 1, endpoint_outcome::local_origin_failure);
    fail(0, 1); // an answer, even a failing one: the connection worked, the local-origin streak ends
    fail(0, 1, endpoint_outcome::local_origin_failure);
    EXPECT_EQ(state(0), endpoint_state::healthy);
    EXPECT_EQ(eps[0]->consecutive_5xx.load(), 1u); // a local-origin failure does not end the 5xx streak
    fail(0, 1, endpoint_outcome::local_origin_failure);
    EXPECT_EQ(state(0), endpoint_state::ejected);
    EXPECT_EQ(d->enforced_total(outlier_rule::consecutive_local_origin_failure), 1u);
    fail(1, 1, endpoint_outcome::ignored); // ignored outcomes change nothing
    EXPECT_EQ(eps[1]->consecutive_5xx.load(), 0u);
}

TEST_F(detector_fixture, a_rule_at_zero_is_off)
{
    auto c = policy();
    c.consecutive_5xx = 0;
    make(3, c);
    fail(0, 50);
    EXPECT_EQ(state(0), endpoint_state::healthy);
}

TEST_F(detector_fixture, the_cap_allows_one_of_two_half_of_ten_and_never_the_only_one)
{
    const std::pair<int, std::uint32_t> cases[]{{1, 0}, {2, 1}, {3, 1}, {4, 2}, {10, 5}};
    for (const auto& [n, cap] : cases) {
        auto c = policy();
        c.min_healthy_percent = 0;
        make(n, c);
        EXPECT_EQ(d->max_ejected(n), cap) << n;
        for (int i = 0; i < n; ++i)
            fail(i, 3);
        EXPECT_EQ(d->ejected_count(), cap) << n;
        // The rest are detected — but the only endpoint is left to the upstream's breaker.
        EXPECT_EQ(d->unhealthy_count(), n < 2 ? 0u : static_cast<std::uint32_t>(n)) << n;
    }
    auto c = policy();
    c.max_ejection_percent = 100;
    make(3, c);
    EXPECT_EQ(d->max_ejected(3), 2u); // never the last one, even at 100 %
    c.max_ejection_percent = 0;
    make(3, c);
    EXPECT_EQ(d->max_ejected(3), 1u); // always one of at least two
}

TEST_F(detector_fixture, a_detected_endpoint_is_ejected_once_the_cap_has_room)
{
    make(2);
    fail(0, 3);
    fail(1, 3);
    EXPECT_EQ(state(1), endpoint_state::detected);
    EXPECT_TRUE(in_rotation(1)); // detected endpoints stay in load balancing
    now += seconds(11);
    d->expire(now); // endpoint 0 returns
    EXPECT_EQ(state(0), endpoint_state::healthy);
    fail(1, 1); // its streak is still over the threshold
    EXPECT_EQ(state(1), endpoint_state::ejected);
    EXPECT_EQ(d->enforced_total(outlier_rule::consecutive_5xx), 2u);
    EXPECT_EQ(d->detected_total(outlier_rule::consecutive_5xx), 2u); // counted once per episode
}

TEST_F(detector_fixture, a_success_clears_detected)
{
    make(2);
    fail(0, 3);
    fail(1, 3);
    d->record(*eps[1], endpoint_outcome::success, now);
    EXPECT_EQ(state(1), endpoint_state::healthy);
    EXPECT_EQ(d->unhealthy_count(), 1u);
}

TEST_F(detector_fixture, ejection_time_grows_caps_and_decays_per_healthy_interval)
{
    make(3);
    auto ejected_for = [&] {
        for (const auto& v : d->view(now))
            if (v.address == eps[0]->label)
                return v.ejected_for;
        return nanos{-2};
    };
    const nanos expected[]{seconds(10), seconds(20), seconds(25), seconds(25)};
    for (nanos e : expected) {
        fail(0, 3);
        EXPECT_EQ(ejected_for(), e);
        now += e - 1;
        EXPECT_FALSE(in_rotation(0));
        now += 1;
        EXPECT_TRUE(in_rotation(0)); // due: load balancing may use it before anything records the return
        d->record(*eps[0], endpoint_outcome::success, now);
        EXPECT_EQ(state(0), endpoint_state::healthy);
    }
    EXPECT_EQ(eps[0]->level.load(), 3u); // capped where the time is: ceil(25 s / 10 s)
    d->evaluate(now += seconds(10));     // the first interval's end since it returned: not yet a whole one
    EXPECT_EQ(eps[0]->level.load(), 3u);
    for (int i = 0; i < 2; ++i)
        d->evaluate(now += seconds(10));
    EXPECT_EQ(eps[0]->level.load(), 1u);
    fail(0, 3);
    EXPECT_EQ(ejected_for(), seconds(20)); // level 2 again
}

TEST_F(detector_fixture, the_only_endpoint_is_left_to_the_upstreams_breaker)
{
    make(1);
    EXPECT_FALSE(fail(0, 50).open_upstream);
    EXPECT_EQ(state(0), endpoint_state::healthy);
    EXPECT_GT(d->detected_total(outlier_rule::consecutive_5xx), 0u); // detected, not enforced
    EXPECT_EQ(d->unhealthy_count(), 0u);
}

TEST_F(detector_fixture, endpoints_ejected_together_do_not_return_together)
{
    auto c = policy();
    c.max_ejection_time_jitter = seconds(5);
    c.max_ejection_percent = 100;
    make(4, c);
    for (int i = 0; i < 3; ++i)
        fail(i, 3);
    const auto v = d->view(now);
    EXPECT_FALSE(v[0].ejected_for == v[1].ejected_for && v[1].ejected_for == v[2].ejected_for);
}

TEST_F(detector_fixture, jitter_stays_within_its_bound)
{
    auto c = policy();
    c.max_ejection_time_jitter = seconds(1);
    make(2, c);
    for (int k = 0; k < 20; ++k) {
        fail(0, 3);
        const auto v = d->view(now)[0];
        EXPECT_GE(v.ejected_for, std::min(seconds(10) * static_cast<nanos>(v.level), seconds(25)));
        EXPECT_LE(v.ejected_for, std::min(seconds(10) * static_cast<nanos>(v.level), seconds(25)) + seconds(1));
        now += seconds(30);
        d->expire(now);
    }
}

TEST_F(detector_fixture, too_few_healthy_endpoints_open_the_upstream)
{
    make(3);
    EXPECT_FALSE(fail(0, 3).open_upstream); // 2 of 3 healthy
    const auto v = fail(1, 3);              // detected: 1 of 3 healthy < 50 %
    EXPECT_TRUE(v.open_upstream);
    EXPECT_EQ(v.reason, "outlier detection: 1 of 3 endpoints healthy, below min_healthy_percent 50.0%");

    auto c = policy();
    c.min_healthy_percent = 0; // only when none is healthy
    make(3, c);
    EXPECT_FALSE(fail(0, 3).open_upstream);
    EXPECT_FALSE(fail(1, 3).open_upstream);
    EXPECT_TRUE(fail(2, 3).open_upstream);
}

TEST_F(detector_fixture, addresses_that_remain_keep_their_state_and_those_that_leave_are_not_counted)
{
    make(3);
    fail(1, 3);
    d->set_endpoints({address(1), address(2), address(5)});
    const auto kept = d->find(address(1));
    EXPECT_EQ(kept, eps[1]); // the same record
    EXPECT_EQ(endpoint_word::decode(kept->word.load()).state, endpoint_state::ejected);
    EXPECT_EQ(d->ejected_count(), 1u);
    d->set_endpoints({address(2), address(5)}); // the ejected one leaves
    EXPECT_EQ(d->ejected_count(), 0u);
    EXPECT_EQ(d->unhealthy_count(), 0u);
    // A worker still holding the old record can report on it: nothing is counted any more.
    fail(1, 5);
    d->record(*eps[1], endpoint_outcome::success, now);
    EXPECT_EQ(d->ejected_count(), 0u);
    EXPECT_EQ(d->unhealthy_count(), 0u);
    // An address the detector does not know gets a detached record that is never ejected.
    auto detached = d->find(address(9));
    for (int k = 0; k < 10; ++k)
        d->record(*detached, endpoint_outcome::failure_status, now);
    EXPECT_TRUE(detached->in_load_balancing(now));
}

TEST_F(detector_fixture, only_ejected_addresses_left_open_the_upstream)
{
    make(3);
    fail(0, 3);
    const auto v = d->set_endpoints({address(0)});
    EXPECT_TRUE(v.open_upstream);
}

TEST_F(detector_fixture, failure_percentage_enforces_only_with_enough_endpoints_and_requests)
{
    auto c = policy();
    c.consecutive_5xx = 0;
    c.failure_percentage = {true, 50.0, 3, 10};
    make(3, c);
    auto load = [&](int i, int requests, int failures) {
        for (int k = 0; k < requests; ++k)
            d->record(*eps[i], k < failures ? endpoint_outcome::failure_status : endpoint_outcome::success, now);
    };
    load(0, 20, 15);
    load(1, 20, 0);
    load(2, 9, 0); // below request_volume: 2 judged endpoints < minimum_hosts 3
    d->evaluate(now += seconds(10));
    EXPECT_EQ(state(0), endpoint_state::healthy);
    EXPECT_EQ(d->detected_total(outlier_rule::failure_percentage), 1u); // detected, not enforced
    EXPECT_EQ(d->enforced_total(outlier_rule::failure_percentage), 0u);
    load(0, 20, 15);
    load(1, 20, 0);
    load(2, 10, 0);
    d->evaluate(now += seconds(10));
    EXPECT_EQ(state(0), endpoint_state::ejected);
    EXPECT_EQ(d->enforced_total(outlier_rule::failure_percentage), 1u);
}

// Issue 30 §3: with an interval shorter than the ejection time, an endpoint that failed through every
// interval it was in rotation came back at level 1 each time (its return was taken for a healthy
// interval). One more level per re-ejection, under each rate rule: 2 s, 4 s, 6 s.
void rate_rule_reejections_grow(detector_fixture& f, config::outlier_config c)
{
    c.consecutive_5xx = 0;
    c.consecutive_local_origin_failure = 0;
    c.base_ejection_time = seconds(2);
    c.max_ejection_time = seconds(300);
    f.make(3, c);
    std::vector<nanos> ejected_for;
    for (int second = 0; second < 20; ++second) {
        for (int i = 0; i < 3; ++i) // 10 requests each second to each endpoint in rotation; e0 fails them all
            for (int k = 0; k < 10 && f.in_rotation(i); ++k)
                f.d->record(*f.eps[i], i == 0 ? endpoint_outcome::failure_status : endpoint_outcome::success, f.now);
        const auto before = f.eps[0]->ejections.load();
        f.d->evaluate(f.now += seconds(1));
        if (f.eps[0]->ejections.load() != before)
            for (const auto& v : f.d->view(f.now))
                if (v.address == f.eps[0]->label)
                    ejected_for.push_back(v.ejected_for);
    }
    ASSERT_GE(ejected_for.size(), 3u);
    EXPECT_EQ(ejected_for[0], seconds(2));
    EXPECT_EQ(ejected_for[1], seconds(4));
    EXPECT_EQ(ejected_for[2], seconds(6));
}

TEST_F(detector_fixture, failure_percentage_reejections_get_longer)
{
    auto c = policy();
    c.failure_percentage = {true, 50.0, 2, 5};
    rate_rule_reejections_grow(*this, c);
}

TEST_F(detector_fixture, success_rate_reejections_get_longer)
{
    auto c = policy();
    c.success_rate = {true, 1.0, 2, 5};
    rate_rule_reejections_grow(*this, c);
}

TEST_F(detector_fixture, success_rate_ejects_the_endpoint_far_below_its_peers)
{
    auto c = policy();
    c.consecutive_5xx = 0;
    c.success_rate = {true, 1.0, 5, 10};
    c.max_ejection_percent = 20;
    make(6, c);
    for (int i = 0; i < 6; ++i)
        for (int k = 0; k < 100; ++k)
            d->record(*eps[i], k < (i == 3 ? 40 : 1) ? endpoint_outcome::failure_status : endpoint_outcome::success, now);
    d->evaluate(now += seconds(10));
    for (int i = 0; i < 6; ++i)
        EXPECT_EQ(state(i), i == 3 ? endpoint_state::ejected : endpoint_state::healthy) << i;
    EXPECT_EQ(d->enforced_total(outlier_rule::success_rate), 1u);
}

TEST_F(detector_fixture, manual_ejection_has_no_end_and_never_takes_the_last_one)
{
    make(2);
    outlier_verdict v;
    EXPECT_EQ(d->eject_manually(eps[0]->label, "alice", now, v), "");
    EXPECT_EQ(state(0), endpoint_state::ejected);
    now += seconds(3600) * 24 * 365;
    d->expire(now);
    EXPECT_FALSE(in_rotation(0));
    EXPECT_NE(d->eject_manually(eps[1]->label, "alice", now, v), "");
    EXPECT_NE(d->eject_manually("10.0.0.1:1", "alice", now, v), "");
    EXPECT_EQ(d->return_manually(eps[0]->label, "alice", now), "");
    EXPECT_TRUE(in_rotation(0));
    EXPECT_EQ(d->ejected_count(), 0u);
    EXPECT_EQ(d->enforced_total(outlier_rule::manual), 1u);
}

TEST_F(detector_fixture, a_probe_success_returns_an_ejected_endpoint_early)
{
    make(3);
    fail(0, 3);
    d->probe_succeeded(*eps[0], now + seconds(1));
    EXPECT_EQ(state(0), endpoint_state::healthy);
    EXPECT_EQ(d->ejected_count(), 0u);
}

// Many threads failing one endpoint at once, with room under the cap: it ends ejected, never merely
// detected because one thread held the place while another found the cap full.
TEST(outlier_detector_concurrency, a_failing_endpoint_with_room_under_the_cap_is_ejected)
{
    for (int round = 0; round < 200; ++round) {
        auto c = policy();
        c.consecutive_5xx = 1;
        outlier_detector d("svc", c, 7);
        d.set_endpoints(addresses(3));
        const auto eps = d.endpoints();
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&] { d.record(*eps[0], endpoint_outcome::failure_status, seconds(1)); });
        for (auto& th : threads)
            th.join();
        ASSERT_EQ(endpoint_word::decode(eps[0]->word.load()).state, endpoint_state::ejected) << round;
        ASSERT_EQ(d.ejected_count(), 1u);
        ASSERT_EQ(d.unhealthy_count(), 1u);
    }
}

// An operator ejecting while failures eject automatically: never every endpoint out of load balancing.
TEST(outlier_detector_concurrency, manual_and_automatic_ejections_never_take_the_last_endpoint)
{
    for (int round = 0; round < 200; ++round) {
        auto c = policy();
        c.consecutive_5xx = 1;
        outlier_detector d("svc", c, 7);
        d.set_endpoints(addresses(2));
        const auto eps = d.endpoints();
        std::thread automatic([&] { d.record(*eps[1], endpoint_outcome::failure_status, seconds(1)); });
        std::thread manual([&] {
            outlier_verdict v;
            d.eject_manually(eps[0]->label, "op", seconds(1), v);
        });
        automatic.join();
        manual.join();
        int ejected = 0;
        for (const auto& e : eps)
            ejected += endpoint_word::decode(e->word.load()).state == endpoint_state::ejected;
        ASSERT_EQ(ejected, 1) << round;
        ASSERT_EQ(d.ejected_count(), 1u);
    }
}

// Many threads failing every endpoint at once: the cap holds exactly and the totals match the states.
TEST(outlier_detector_concurrency, the_cap_and_the_totals_hold_under_races)
{
    for (int round = 0; round < 20; ++round) {
        auto c = policy();
        c.consecutive_5xx = 1;
        c.min_healthy_percent = 0;
        outlier_detector d("svc", c, 7);
        d.set_endpoints(addresses(10));
        const auto eps = d.endpoints();
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                for (int k = 0; k < 200; ++k)
                    d.record(*eps[(k + t) % 10], k % 7 == 0 ? endpoint_outcome::success : endpoint_outcome::failure_status,
                             seconds(1));
            });
        for (auto& th : threads)
            th.join();
        std::uint32_t ejected = 0, unhealthy = 0;
        for (const auto& e : eps) {
            const auto s = endpoint_word::decode(e->word.load()).state;
            ejected += s == endpoint_state::ejected;
            unhealthy += s != endpoint_state::healthy;
        }
        EXPECT_EQ(d.ejected_count(), ejected);
        EXPECT_EQ(d.unhealthy_count(), unhealthy);
        EXPECT_LE(ejected, 5u);
    }
}

} // namespace
} // namespace breakerbox::resilience
