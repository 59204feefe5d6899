#include "core/memory_release.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;

TEST(burst_end, fires_once_on_the_first_quiet_tick_after_a_busy_one)
{
    burst_end b;
    EXPECT_FALSE(b.tick(0)); // idle from the start: nothing to give back
    EXPECT_FALSE(b.tick(0));
    EXPECT_FALSE(b.tick(10)); // busy
    EXPECT_FALSE(b.tick(25)); // still busy
    EXPECT_TRUE(b.tick(25));  // a quiet second: the burst is over
    EXPECT_FALSE(b.tick(25)); // and stays over without firing again
    EXPECT_FALSE(b.tick(26));
    EXPECT_TRUE(b.tick(26));
}

TEST(burst_end, a_reload_that_restarts_the_count_is_activity_too)
{
    burst_end b;
    EXPECT_FALSE(b.tick(100));
    EXPECT_TRUE(b.tick(100));
    EXPECT_FALSE(b.tick(3)); // a new configuration generation counts from 0
    EXPECT_TRUE(b.tick(3));
}

namespace {
int releases = 0;
}

TEST(memory_release, calls_the_installed_function_and_falls_back_to_the_default)
{
    install_memory_release([] { ++releases; });
    release_free_memory();
    release_free_memory();
    EXPECT_EQ(releases, 2);
    install_memory_release(nullptr); // back to malloc_trim
    release_free_memory();
    EXPECT_EQ(releases, 2);
}
