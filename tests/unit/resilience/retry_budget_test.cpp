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
