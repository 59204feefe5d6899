#include "resilience/retry_budget.hpp"

#include <gtest/gtest.h>

using namespace breakerbox::resilience;

TEST(retry_budget, minimum_concurrency_then_a_share_of_active_requests)
{
    retry_budget b(0.2, 3);
    EXPECT_TRUE(b.try_acquire(1));
    EXPECT_TRUE(b.try_acquire(1));
    EXPECT_TRUE(b.try_acquire(1));
    EXPECT_FALSE(b.try_acquire(1)); // the minimum of 3 is reached
    EXPECT_TRUE(b.try_acquire(20)); // 20% of 20 active = 4
    EXPECT_FALSE(b.try_acquire(20));
    b.release();
    EXPECT_TRUE(b.try_acquire(20));
    EXPECT_EQ(b.active(), 4u);
}

TEST(retry_permit, gives_its_place_back_however_it_ends)
{
    retry_budget b(0.0, 1);
    {
        retry_permit p;
        EXPECT_FALSE(p.held());
        EXPECT_TRUE(p.try_acquire(b, 10));
        EXPECT_TRUE(p.held());
        EXPECT_EQ(b.active(), 1u);
        retry_permit other;
        EXPECT_FALSE(other.try_acquire(b, 10)); // the budget of one is in use
        EXPECT_TRUE(p.try_acquire(b, 10));      // re-acquiring releases the place held first
        EXPECT_EQ(b.active(), 1u);
        p.release();
        EXPECT_EQ(b.active(), 0u);
        p.release(); // idempotent
        EXPECT_EQ(b.active(), 0u);
        EXPECT_TRUE(p.try_acquire(b, 10));
    } // destroyed while held: a request that ended mid-retry
    EXPECT_EQ(b.active(), 0u);
}
