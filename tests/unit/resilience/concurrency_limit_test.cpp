// max_streams / max_tunnels: exactly `max` places, given back by the slot however it ends, and never more
// than `max` taken at once by racing threads.
#include "resilience/concurrency_limit.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace breakerbox::resilience {
namespace {

TEST(concurrency_limit, admits_exactly_max_and_a_slot_gives_its_place_back)
{
    concurrency_limit limit(2);
    auto a = concurrency_slot::try_take(limit);
    auto b = concurrency_slot::try_take(limit);
    auto c = concurrency_slot::try_take(limit);
    EXPECT_TRUE(a);
    EXPECT_TRUE(b);
    EXPECT_FALSE(c);
    EXPECT_EQ(limit.active(), 2u);
    a.reset();
    EXPECT_EQ(limit.active(), 1u);
    {
        auto d = concurrency_slot::try_take(limit);
        EXPECT_TRUE(d);
        auto moved = std::move(d); // a move keeps one place, not two
        EXPECT_EQ(limit.active(), 2u);
    }
    EXPECT_EQ(limit.active(), 1u);
}

TEST(concurrency_limit, zero_admits_nothing)
{
    concurrency_limit limit(0);
    EXPECT_FALSE(concurrency_slot::try_take(limit));
    EXPECT_EQ(limit.active(), 0u);
}

TEST(concurrency_limit, racing_threads_never_hold_more_than_max)
{
    constexpr std::uint32_t max = 3;
    concurrency_limit limit(max);
    std::atomic<std::uint32_t> holding{0}, most{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                auto s = concurrency_slot::try_take(limit);
                if (!s)
                    continue;
                const auto now = holding.fetch_add(1) + 1;
                for (auto seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) { }
                holding.fetch_sub(1);
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_LE(most.load(), max);
    EXPECT_EQ(limit.active(), 0u);
}

} // namespace
} // namespace breakerbox::resilience
