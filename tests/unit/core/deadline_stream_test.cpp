// deadline_stream over real loopback sockets. Timers here only let a configured time pass; nothing
// asserts how long anything took. A guard stops the io_context so that a lost expiry fails instead of
// hanging.
#include "../socket_pair_fixture.hpp"
#include "core/deadline_stream.hpp"
#include "core/write_all.hpp"

namespace breakerbox {
namespace {

struct deadline_stream_test : testing::socket_pair_fixture { };
using namespace std::chrono_literals;

TEST_F(deadline_stream_test, read_past_its_deadline_times_out_and_leaves_the_socket_usable)
{
    run([&]() -> asio::awaitable<void> {
        char buf[16];
        stream->expires_after(20ms);
        auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_EQ(ec, beast::error::timeout);
        EXPECT_TRUE(stream->timed_out());
        EXPECT_TRUE(stream->socket().is_open());
        // A new deadline clears the expiry: the socket still works.
        stream->expires_after(10s);
        EXPECT_FALSE(stream->timed_out());
        peer_writes("hi");
        auto [ec2, n2] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_FALSE(ec2);
        EXPECT_EQ(n2, 2u);
    });
}

TEST_F(deadline_stream_test, deadline_pushed_back_after_arming_is_honoured)
{
    run([&]() -> asio::awaitable<void> {
        char buf[16];
        stream->expires_after(20ms); // the timer is armed for 20 ms...
        stream->expires_after(10s);  // ...and must re-arm itself for the rest when it fires
        asio::steady_timer writer(ioc, 80ms);
        writer.async_wait([&](const error_code&) { peer_writes("late"); });
        auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(n, 4u);
    });
}

TEST_F(deadline_stream_test, deadline_moved_earlier_rearms_the_timer)
{
    run([&]() -> asio::awaitable<void> {
        char buf[16];
        stream->expires_after(1h);
        stream->expires_after(20ms);
        auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_EQ(ec, beast::error::timeout);
    });
}

TEST_F(deadline_stream_test, operation_started_after_the_deadline_passed_fails_at_once)
{
    run([&]() -> asio::awaitable<void> {
        char buf[16];
        stream->expires_after(10ms);
        co_await sleep(50ms);
        peer_writes("data that must not be read past the deadline");
        auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_EQ(ec, beast::error::timeout);
        const auto written = co_await write_rest(*stream, asio::buffer(std::string_view("x")), write_progress{}, 0);
        EXPECT_EQ(written.ec, beast::error::timeout);
    });
}

TEST_F(deadline_stream_test, expires_never_disarms_a_pending_deadline)
{
    run([&]() -> asio::awaitable<void> {
        char buf[16];
        stream->expires_after(20ms);
        stream->expires_never();
        asio::steady_timer writer(ioc, 60ms);
        writer.async_wait([&](const error_code&) { peer_writes("ok"); });
        auto [ec, n] = co_await stream->read_some(asio::buffer(buf));
        EXPECT_FALSE(ec) << ec.message();
    });
}

TEST_F(deadline_stream_test, destroying_the_stream_with_an_expiry_pending_is_safe)
{
    stream->expires_after(1ms);
    asio::steady_timer t(ioc, 20ms);
    t.wait(); // the expiry is due; its completion is queued when the io_context runs
    stream.reset();
    ioc.run_for(50ms); // the queued completion must touch nothing (ASan would report it)
    SUCCEED();
}

} // namespace
} // namespace breakerbox
