// Test support: an upstream on 127.0.0.1 that does exactly what a test scripts, byte for byte, per
// accepted connection — read a request head, answer these bytes, close or keep the connection — and
// counts what it saw. Runs as coroutines on the test's io_context.
#pragma once
#include "core/asio.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace breakerbox::testing {

// What the upstream does with one connection, step by step: reads a request head, then this.
struct upstream_step {
    std::string reply;        // bytes written after the request was read
    bool close = true;        // then closes (false: keeps the connection, reads the next request)
    bool read_request = true; // false: does not read (a request the upstream never takes)
};

class scripted_upstream {
public:
    explicit scripted_upstream(asio::io_context& ioc)
        : ioc_(ioc), acceptor_(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0))
    {
    }

    tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    void close() { acceptor_.close(); } // connections are refused from now on

    // The steps of each connection in the order they are accepted; a connection beyond the list is
    // closed at once.
    std::vector<std::vector<upstream_step>> connections;
    int accepted = 0;
    int requests_read = 0;
    std::vector<std::string> heads; // the request heads read, in order

    void start() { asio::co_spawn(ioc_, serve(), asio::detached); }

private:
    asio::awaitable<void> serve()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(nothrow_awaitable);
            if (ec)
                co_return;
            auto steps = accepted < static_cast<int>(connections.size()) ? connections[accepted] : std::vector<upstream_step>{};
            ++accepted;
            asio::co_spawn(ioc_, serve_connection(std::move(socket), std::move(steps)), asio::detached);
        }
    }

    asio::awaitable<void> serve_connection(tcp::socket socket, std::vector<upstream_step> steps)
    {
        std::string buffer;
        for (const auto& step : steps) {
            if (step.read_request) {
                auto [ec, n] =
                    co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n\r\n", nothrow_awaitable);
                if (ec)
                    co_return;
                heads.push_back(buffer.substr(0, n));
                buffer.erase(0, n);
                ++requests_read;
            }
            if (!step.reply.empty())
                co_await asio::async_write(socket, asio::buffer(step.reply), nothrow_awaitable);
            if (step.close) {
                error_code ignored;
                socket.close(ignored);
                co_return;
            }
        }
        asio::steady_timer hold(ioc_, std::chrono::seconds(10)); // steps done without a close: keep it, silent
        co_await hold.async_wait(nothrow_awaitable);
    }

    asio::io_context& ioc_;
    tcp::acceptor acceptor_;
};

} // namespace breakerbox::testing
