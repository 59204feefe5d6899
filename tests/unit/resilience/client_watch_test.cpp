#include "resilience/client_watch.hpp"
#include "../support/manual_clock.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

using namespace breakerbox;
using namespace breakerbox::resilience;

namespace {

// Exchanges in flight on one worker, each with its own client socket, upstream stream and permit. The
// sockets are never opened: the sweep under test only records and cancels, and min_age keeps it from
// starting socket waits.
struct client_watch_test : ::testing::Test {
    asio::io_context ioc;
    manual_clock clk;
    watch_registry registry;
    std::unique_ptr<circuit_breaker> breaker;

    struct exchange {
        tcp::socket client;
        deadline_stream upstream;
        breaker_permit permit;
        client_watch watch;
        exchange(asio::io_context& ioc, circuit_breaker& cb, watch_registry& registry)
            : client(ioc), upstream(ioc.get_executor()), permit(cb, cb.try_acquire()), watch(client, registry)
        {
        }
    };
    std::vector<std::unique_ptr<exchange>> exchanges;

    void make_breaker(std::uint32_t slow_streak, bool in_flight)
    {
        config::breaker_config c;
        c.consecutive_failures = 0;
        c.failure_rate_enabled = false;
        c.slow_call_enabled = true;
        c.slow_call_duration = millis(250);
        c.slow_call_consecutive = slow_streak;
        c.slow_call_in_flight = in_flight;
        breaker = std::make_unique<circuit_breaker>("svc", c, clk);
    }
    exchange& start_exchange()
    {
        auto& e = *exchanges.emplace_back(std::make_unique<exchange>(ioc, *breaker, registry));
        e.watch.arm(e.upstream, clk.now(), breaker.get(), breaker->trip_count(), &e.permit);
        return e;
    }
    void sweep() { registry.sweep(clk.now(), hours(1)); }
    static nanos hours(int h) { return seconds(3600) * h; }
};

} // namespace

TEST_F(client_watch_test, exchanges_become_slow_at_the_sweep_after_the_slow_call_duration)
{
    make_breaker(0, true);
    auto& e = start_exchange();
    clk.advance(millis(249));
    sweep();
    EXPECT_FALSE(e.permit.slow_recorded());
    clk.advance(millis(1));
    sweep();
    EXPECT_TRUE(e.permit.slow_recorded());
    EXPECT_EQ(breaker->snapshot().window.slow, 1u);
}

TEST_F(client_watch_test, the_sweep_that_trips_the_circuit_cancels_all_its_exchanges)
{
    make_breaker(2, true);
    auto& first = start_exchange();
    auto& second = start_exchange(); // swept first: its record alone does not trip yet
    clk.advance(millis(300));
    sweep();
    ASSERT_EQ(breaker->state(), breaker_state::open);
    EXPECT_TRUE(first.watch.circuit_opened());
    EXPECT_TRUE(second.watch.circuit_opened());
}

TEST_F(client_watch_test, without_in_flight_recording_the_sweep_records_nothing)
{
    make_breaker(1, false);
    auto& e = start_exchange();
    clk.advance(seconds(10));
    sweep();
    EXPECT_FALSE(e.permit.slow_recorded());
    EXPECT_FALSE(e.watch.circuit_opened());
    EXPECT_EQ(breaker->state(), breaker_state::closed);
}

TEST_F(client_watch_test, a_disarmed_watch_is_not_swept)
{
    make_breaker(1, true);
    auto& e = start_exchange();
    e.watch.disarm();
    clk.advance(seconds(1));
    sweep();
    EXPECT_FALSE(e.permit.slow_recorded());
    EXPECT_EQ(breaker->state(), breaker_state::closed);
}
