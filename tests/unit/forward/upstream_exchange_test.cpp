// One exchange with one endpoint over real loopback sockets, against an upstream coroutine that decides
// every byte: each failure point of the exchange enumerated in one table (the way Beast tests its reads),
// with what the forwarder relies on — the reason, whether the request may have reached the upstream,
// and whether the failure was a stale pooled connection.
#include "../socket_pair_fixture.hpp"
#include "../support/scripted_upstream.hpp"
#include "forward/upstream_exchange.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace breakerbox {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
namespace bhttp = boost::beast::http;

using testing::upstream_step;

struct exchange_fixture : ::testing::Test {
    asio::io_context ioc;
    testing::scripted_upstream upstream{ioc};
    config::upstream_config cfg;
    std::optional<upstream::worker_upstream> up;

    void SetUp() override
    {
        cfg.name = "svc";
        up.emplace(cfg, 0, 1);
        up->set_endpoints({upstream.endpoint()});
    }

    forward::attempt_spec limits(std::chrono::milliseconds deadline = 2000ms, bool resendable = true)
    {
        forward::attempt_spec l{
            .deadline = steady::now() + deadline, .connect_timeout = seconds(1), .max_response_body = 1 << 20};
        l.now = steady::now().time_since_epoch().count();
        l.resendable = resendable;
        return l;
    }

    // Runs `body` with the upstream serving; fails the test if it has not finished within 5 s.
    void run(std::function<asio::awaitable<void>()> body)
    {
        upstream.start();
        testing::run_bounded(ioc, std::move(body));
    }

    asio::awaitable<forward::exchange_result> exchange_once(http::response& res, forward::attempt_spec l, std::string body = {})
    {
        http::request req{body.empty() ? bhttp::verb::get : bhttp::verb::post, "/item", 11};
        req.set(bhttp::field::host, "svc");
        if (!body.empty()) {
            req.body() = std::move(body);
            req.prepare_payload();
        }
        auto* ep = up->pick(0);
        co_return co_await forward::exchange(*up, *ep, req, l, res);
    }
};

constexpr std::string_view ok_reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

struct failure_point {
    const char* name;
    upstream_step step;
    proxy_error error;
    bool maybe_sent;
};

TEST_F(exchange_fixture, every_failure_point_on_a_fresh_connection)
{
    const failure_point points[] = {
        {"closed after reading, before any byte", {"", true}, proxy_error::upstream_reset, true},
        {"closed mid-head", {"HTTP/1.1 200 OK\r\nContent-Le", true}, proxy_error::upstream_reset, true},
        {"closed mid-body", {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true}, proxy_error::upstream_reset, true},
        {"garbage", {"NOT HTTP\r\n\r\n", true}, proxy_error::upstream_invalid_response, true},
        {"101 switching protocols",
         {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", true},
         proxy_error::upstream_invalid_response,
         true},
        {"a transfer coding other than chunked",
         {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", true},
         proxy_error::upstream_invalid_response,
         true},
        {"1xx then 200",
         {"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
         proxy_error::ok,
         true},
        {"1xx then close", {"HTTP/1.1 100 Continue\r\n\r\n", true}, proxy_error::upstream_reset, true},
        {"no answer before the deadline", {"", false}, proxy_error::upstream_timeout, true},
        {"chunked with trailers",
         {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nContent-Length: 9\r\n\r\n", false},
         proxy_error::ok,
         true},
    };
    for (const auto& point : points) {
        SCOPED_TRACE(point.name);
        upstream.connections = {{point.step}};
        upstream.accepted = 0;
        up.emplace(cfg, 0, 1);
        up->set_endpoints({upstream.endpoint()});
        ioc.restart();
        run([&]() -> asio::awaitable<void> {
            http::response res;
            auto r = co_await exchange_once(res, limits(300ms));
            EXPECT_EQ(r.error, point.error) << r.detail;
            EXPECT_EQ(r.maybe_sent, point.maybe_sent);
            EXPECT_FALSE(r.stale_connection); // a fresh connection is never stale
            if (r.error == proxy_error::ok) {
                EXPECT_EQ(res.body(), "ok");
                EXPECT_LE(res.count(bhttp::field::content_length), 1u);
                EXPECT_NE(res[bhttp::field::content_length], "9"); // no trailer joined the header
            }
        });
    }
}

TEST_F(exchange_fixture, a_deadline_during_the_write_is_a_timeout_of_a_request_that_may_have_left)
{
    upstream.connections = {{{"", false, false}}}; // accepts, never reads: the socket buffers fill up
    run([&]() -> asio::awaitable<void> {
        http::response res;
        auto r = co_await exchange_once(res, limits(300ms), std::string(32 << 20, 'x'));
        EXPECT_EQ(r.error, proxy_error::upstream_timeout) << r.detail;
        EXPECT_TRUE(r.maybe_sent);
        EXPECT_NE(r.detail.find("writing"), std::string::npos) << r.detail;
    });
}

TEST_F(exchange_fixture, connect_refused_never_sent_anything)
{
    const auto dead = upstream.endpoint();
    upstream.close();
    up->set_endpoints({dead});
    run([&]() -> asio::awaitable<void> {
        http::response res;
        auto r = co_await exchange_once(res, limits());
        EXPECT_EQ(r.error, proxy_error::upstream_connect_failed);
        EXPECT_FALSE(r.maybe_sent); // a request that must not be repeated may still go elsewhere
    });
}

TEST_F(exchange_fixture, a_pooled_connection_closed_after_the_request_was_read_is_stale)
{
    upstream.connections = {{{std::string(ok_reply), false}, {"", true}}, {{std::string(ok_reply), false}}};
    run([&]() -> asio::awaitable<void> {
        http::response res;
        auto first = co_await exchange_once(res, limits());
        EXPECT_EQ(first.error, proxy_error::ok);
        auto second = co_await exchange_once(res, limits());
        EXPECT_EQ(second.error, proxy_error::upstream_reset);
        EXPECT_TRUE(second.stale_connection); // the caller decides whether it may be sent again
        EXPECT_TRUE(second.maybe_sent);
        EXPECT_EQ(upstream.requests_read, 2);
        EXPECT_EQ(upstream.accepted, 1); // the exchange itself did not resend it
    });
}

TEST_F(exchange_fixture, a_pooled_connection_the_upstream_closed_is_not_used_for_a_request_that_must_not_repeat)
{
    upstream.connections = {{{std::string(ok_reply), true}}, {{std::string(ok_reply), false}}};
    run([&]() -> asio::awaitable<void> {
        http::response res;
        auto first = co_await exchange_once(res, limits());
        EXPECT_EQ(first.error, proxy_error::ok);
        asio::steady_timer settle(ioc, 50ms); // the upstream's FIN arrives (ordering, not timing)
        co_await settle.async_wait(nothrow_awaitable);
        auto second = co_await exchange_once(res, limits(2000ms, false));
        EXPECT_EQ(second.error, proxy_error::ok) << second.detail;
        EXPECT_EQ(upstream.accepted, 2); // the liveness check found the close: a new connection, nothing lost
    });
}

} // namespace
} // namespace breakerbox
