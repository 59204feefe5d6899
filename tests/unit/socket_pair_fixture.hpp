// A connected pair of loopback sockets for tests of stream code: `stream` (a deadline_stream) on one
// end, `peer` (a plain socket the test writes with) on the other, and a bounded run of a coroutine.
#pragma once
#include "core/deadline_stream.hpp"

#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <optional>

namespace breakerbox::testing {

using namespace std::chrono_literals;

// Runs the coroutine `body` on `ioc` to completion; fails the test if it has not finished within 5 s.
template <class Body>
void run_bounded(asio::io_context& ioc, Body body)
{
    bool finished = false;
    asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
        co_await body();
        finished = true;
        ioc.stop();
    }, asio::detached);
    ioc.run_for(5s);
    ASSERT_TRUE(finished) << "the coroutine did not finish: an expiry was lost";
}

struct socket_pair_fixture : ::testing::Test {
    asio::io_context ioc;
    tcp::socket peer{ioc};
    std::optional<deadline_stream> stream;

    void SetUp() override
    {
        tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        tcp::socket client(ioc);
        client.connect(acceptor.local_endpoint());
        peer = acceptor.accept();
        stream.emplace(std::move(client));
    }

    // Runs `body` to completion; fails the test if it has not finished within 5 s.
    template <class Body>
    void run(Body body)
    {
        run_bounded(ioc, std::move(body));
    }

    asio::awaitable<void> sleep(std::chrono::milliseconds d)
    {
        asio::steady_timer t(ioc, d);
        co_await t.async_wait(nothrow_awaitable);
    }

    void peer_writes(std::string_view data)
    {
        asio::write(peer, asio::buffer(data));
    }
};

} // namespace breakerbox::testing
