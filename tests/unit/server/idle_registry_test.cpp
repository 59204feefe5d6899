#include "server/idle_registry.hpp"

#include <gtest/gtest.h>

#include <optional>

using namespace breakerbox;
using namespace breakerbox::server;

namespace {
struct idle_registry_test : ::testing::Test {
    asio::io_context ioc;
    idle_registry registry;
    deadline_stream a{ioc.get_executor()};
    deadline_stream b{ioc.get_executor()};
};
} // namespace

TEST_F(idle_registry_test, a_connection_parks_at_the_second_sweep_after_it_became_idle)
{
    std::optional<idle_mark> early(std::in_place, registry, a);
    EXPECT_EQ(registry.park_long_idle(), 0u); // idle for part of one interval at most
    idle_mark late(registry, b);
    EXPECT_FALSE(early->park_requested());
    EXPECT_EQ(registry.park_long_idle(), 1u); // `early` has now been idle for a whole interval
    EXPECT_TRUE(early->park_requested());
    EXPECT_FALSE(late.park_requested());
    EXPECT_EQ(registry.park_long_idle(), 1u); // `late` now; `early` is not asked twice
    EXPECT_TRUE(late.park_requested());
    early.reset(); // a mark that ends leaves the list
    EXPECT_EQ(registry.park_long_idle(), 0u);
}

TEST_F(idle_registry_test, a_new_wait_starts_the_second_again)
{
    registry.park_long_idle();
    std::optional<idle_mark> m(std::in_place, registry, a);
    registry.park_long_idle();
    m.emplace(registry, a); // the connection served a request and is idle again
    EXPECT_EQ(registry.park_long_idle(), 0u);
    EXPECT_EQ(registry.park_long_idle(), 1u);
}

TEST_F(idle_registry_test, close_all_marks_the_registry_closing)
{
    idle_mark m(registry, a);
    registry.close_all();
    EXPECT_TRUE(registry.closing);
    EXPECT_FALSE(m.park_requested()); // a drain is not a park: the session closes
}
