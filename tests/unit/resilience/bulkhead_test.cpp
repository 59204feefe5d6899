#include "resilience/bulkhead.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

using namespace breakerbox::resilience;

namespace {
std::shared_ptr<bulkhead_waiter> waiter(std::vector<int>& woken, int id)
{
    auto w = std::make_shared<bulkhead_waiter>();
    w->wake = [&woken, id] { woken.push_back(id); };
    return w;
}
} // namespace

TEST(bulkhead, strict_limit_then_queue_then_full)
{
    bulkhead b(2, 2);
    std::vector<int> woken;
    EXPECT_TRUE(b.try_acquire());
    EXPECT_TRUE(b.try_acquire());
    EXPECT_FALSE(b.try_acquire());
    auto w1 = waiter(woken, 1), w2 = waiter(woken, 2), w3 = waiter(woken, 3);
    EXPECT_EQ(b.acquire_or_enqueue(w1), bulkhead::admit::queued);
    EXPECT_EQ(b.acquire_or_enqueue(w2), bulkhead::admit::queued);
    EXPECT_EQ(b.acquire_or_enqueue(w3), bulkhead::admit::full);
    auto s = b.snapshot();
    EXPECT_EQ(s.in_flight, 2u);
    EXPECT_EQ(s.queued, 2u);
    EXPECT_EQ(s.limit, 2u);
}

TEST(bulkhead, released_slots_go_to_waiters_first_come_first_served)
{
    bulkhead b(1, 10);
    std::vector<int> woken;
    ASSERT_TRUE(b.try_acquire());
    auto w1 = waiter(woken, 1), w2 = waiter(woken, 2);
    b.acquire_or_enqueue(w1);
    b.acquire_or_enqueue(w2);
    b.release();
    EXPECT_EQ(woken, std::vector<int>{1});
    EXPECT_TRUE(w1->granted);
    EXPECT_FALSE(b.try_acquire()); // the slot went to the waiter: no overtaking
    EXPECT_EQ(b.in_flight(), 1u);
    b.release();
    EXPECT_EQ(woken, (std::vector<int>{1, 2}));
    b.release();
    EXPECT_EQ(b.in_flight(), 0u);
    EXPECT_TRUE(b.try_acquire());
}

TEST(bulkhead, a_waiter_that_leaves_is_skipped_and_a_granted_one_cannot_leave)
{
    bulkhead b(1, 10);
    std::vector<int> woken;
    ASSERT_TRUE(b.try_acquire());
    auto w1 = waiter(woken, 1), w2 = waiter(woken, 2);
    b.acquire_or_enqueue(w1);
    b.acquire_or_enqueue(w2);
    EXPECT_TRUE(b.leave(w1)); // client went away
    EXPECT_EQ(b.snapshot().queued, 1u);
    b.release();
    EXPECT_EQ(woken, std::vector<int>{2});
    EXPECT_FALSE(b.leave(w2)); // granted: it owns a slot now and must release it
    b.release();
    EXPECT_EQ(b.in_flight(), 0u);
}

TEST(bulkhead, no_queue_means_immediate_rejection)
{
    bulkhead b(1, 0);
    std::vector<int> woken;
    ASSERT_TRUE(b.try_acquire());
    EXPECT_EQ(b.acquire_or_enqueue(waiter(woken, 1)), bulkhead::admit::full);
}

TEST(bulkhead, unlimited_only_counts)
{
    bulkhead b(0, 0);
    for (int i = 0; i < 1000; ++i)
        EXPECT_TRUE(b.try_acquire());
    EXPECT_EQ(b.snapshot().limit, 0u);
    EXPECT_EQ(b.in_flight(), 1000u);
}

// Many threads take and return slots through both paths (run under ThreadSanitizer too): the limit is
// never exceeded, no waiter is stranded, and everything is returned.
TEST(bulkhead, limit_holds_under_concurrency)
{
    constexpr std::uint32_t limit = 3;
    bulkhead b(limit, 64);
    std::atomic<int> holding{0}, max_holding{0}, served{0};
    auto hold = [&] {
        int now = holding.fetch_add(1) + 1;
        int seen = max_holding.load();
        while (now > seen && !max_holding.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        holding.fetch_sub(1);
        served.fetch_add(1);
        b.release();
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 5000; ++i) {
                if (b.try_acquire()) {
                    hold();
                    continue;
                }
                std::atomic<bool> granted{false};
                auto w = std::make_shared<bulkhead_waiter>();
                w->wake = [&granted] { granted.store(true); };
                auto admit = b.acquire_or_enqueue(w);
                if (admit == bulkhead::admit::full)
                    continue;
                if (admit == bulkhead::admit::queued)
                    while (!granted.load())
                        std::this_thread::yield();
                hold();
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_LE(max_holding.load(), static_cast<int>(limit));
    EXPECT_GT(served.load(), 0);
    EXPECT_EQ(b.in_flight(), 0u);
    EXPECT_EQ(b.snapshot().queued, 0u);
}
