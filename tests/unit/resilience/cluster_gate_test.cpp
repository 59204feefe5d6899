// The cluster's verdict as workers read it: what each verdict admits, expiry by itself (stale data never
// keeps a circuit open), and the one probe token of the lease holder — taken by exactly one of many
// threads, given back by a request that was not sent.
#include "resilience/cluster_gate.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace breakerbox::resilience {
namespace {

constexpr nanos t0 = seconds(1000);

TEST(cluster_gate, no_verdict_passes)
{
    cluster_gate g;
    EXPECT_EQ(g.admit(t0), gate_admission::pass);
    EXPECT_EQ(g.verdict(t0), cluster_verdict::closed);
}

TEST(cluster_gate, each_verdict_admits_as_documented)
{
    struct row {
        cluster_verdict v;
        gate_admission expected;
    } rows[] = {{cluster_verdict::closed, gate_admission::pass},
                {cluster_verdict::open, gate_admission::reject},
                {cluster_verdict::half_open, gate_admission::reject},
                {cluster_verdict::forced_open, gate_admission::reject},
                {cluster_verdict::forced_closed, gate_admission::pass}};
    for (const auto& r : rows) {
        cluster_gate g;
        g.set(r.v, t0 + seconds(1));
        EXPECT_EQ(g.admit(t0), r.expected) << name_of(r.v);
        EXPECT_EQ(g.verdict(t0), r.v);
    }
}

TEST(cluster_gate, a_verdict_expires_by_itself)
{
    cluster_gate g;
    g.set(cluster_verdict::open, t0 + millis(1500));
    EXPECT_EQ(g.admit(t0 + millis(1400)), gate_admission::reject);
    EXPECT_EQ(g.admit(t0 + millis(1502)), gate_admission::pass); // no sync confirmed it: local-only again
    EXPECT_EQ(g.verdict(t0 + millis(1502)), cluster_verdict::closed);
    g.set(cluster_verdict::open, t0 + seconds(5));
    g.clear();
    EXPECT_EQ(g.admit(t0), gate_admission::pass);
}

TEST(cluster_gate, the_lease_holder_lets_exactly_one_probe_through)
{
    cluster_gate g;
    g.set(cluster_verdict::probing, t0 + seconds(1), t0 + seconds(1));
    std::atomic<int> probes{0}, rejected{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&] {
            for (int k = 0; k < 1000; ++k)
                (g.admit(t0) == gate_admission::probe ? probes : rejected)++;
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(probes.load(), 1);
    EXPECT_EQ(rejected.load(), 7999);
    // Still probing at the next sync: no second token; a request that did not go gives it back.
    g.set(cluster_verdict::probing, t0 + seconds(2), t0 + seconds(2));
    EXPECT_EQ(g.admit(t0), gate_admission::reject);
    g.return_token();
    EXPECT_EQ(g.admit(t0), gate_admission::probe);
}

TEST(cluster_gate, the_probe_outcome_waits_for_the_sync_and_resets_with_a_new_lease)
{
    cluster_gate g;
    g.set(cluster_verdict::probing, t0 + seconds(1), t0 + seconds(1));
    EXPECT_EQ(g.pending_probe(), probe_outcome::none);
    ASSERT_EQ(g.admit(t0), gate_admission::probe);
    g.record_probe(false);
    EXPECT_EQ(g.pending_probe(), probe_outcome::failure);
    g.set(cluster_verdict::open, t0 + seconds(1));                     // the cluster opened again
    g.set(cluster_verdict::probing, t0 + seconds(2), t0 + seconds(2)); // a new lease: a new token, no old outcome
    EXPECT_EQ(g.pending_probe(), probe_outcome::none);
    EXPECT_EQ(g.admit(t0), gate_admission::probe);
}

TEST(cluster_gate, a_probe_in_flight_is_never_given_a_second_token)
{
    cluster_gate g;
    g.set(cluster_verdict::probing, t0 + seconds(1), t0 + seconds(1));
    ASSERT_EQ(g.admit(t0), gate_admission::probe);
    EXPECT_TRUE(g.probe_in_flight());
    g.clear(); // Redis hiccup: local-only for a moment
    EXPECT_EQ(g.admit(t0), gate_admission::pass);
    g.set(cluster_verdict::probing, t0 + seconds(2), t0 + seconds(2)); // back, still the holder
    EXPECT_EQ(g.admit(t0), gate_admission::reject) << "the first probe is still running";
    EXPECT_TRUE(g.probe_in_flight());
    g.record_probe(true);
    EXPECT_FALSE(g.probe_in_flight());
    EXPECT_EQ(g.pending_probe(), probe_outcome::success);
}

TEST(cluster_gate, the_token_lasts_no_longer_than_the_lease)
{
    cluster_gate g;
    g.set(cluster_verdict::probing, t0 + seconds(3), t0 + millis(400));
    EXPECT_EQ(g.admit(t0 + millis(500)), gate_admission::reject); // the lease is over: another replica probes
    EXPECT_EQ(g.admit(t0 + millis(100)), gate_admission::probe);
}

} // namespace
} // namespace breakerbox::resilience
