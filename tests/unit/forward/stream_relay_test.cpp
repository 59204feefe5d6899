// A streamed answer from its head to its last byte, over real loopback sockets: the exchange that leaves
// the body on the connection (and the cases it does not), then the relay to a client socket — each way a
// streamed body can end enumerated in one table, with what the client receives, how the relay says it
// ended, and whether the connection went back to the pool (docs/streaming.md).
#include "../socket_pair_fixture.hpp"
#include "../support/scripted_upstream.hpp"
#include "forward/stream_relay.hpp"
#include "forward/upstream_exchange.hpp"
#include "upstream/upstream_connection.hpp"

#include <boost/asio/read.hpp>
#include <gtest/gtest.h>

#include <functional>
#include <ostream>
#include <string>

namespace breakerbox {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
namespace bhttp = boost::beast::http;
using runtime::stream_end;
using testing::upstream_step;

struct relay_fixture : ::testing::Test {
    asio::io_context ioc;
    testing::scripted_upstream upstream{ioc};
    config::upstream_config cfg;
    std::optional<upstream::worker_upstream> up;
    tcp::socket client_peer{ioc};             // the client's end
    std::optional<deadline_stream> to_client; // breakerbox's end towards the client
    forward::open_body body;

    void SetUp() override
    {
        cfg.name = "svc";
        up.emplace(cfg, 0, 1);
        up->set_endpoints({upstream.endpoint()});
        tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        client_peer.connect(acceptor.local_endpoint());
        to_client.emplace(acceptor.accept());
    }

    forward::attempt_spec limits(bool upgrade = false)
    {
        forward::attempt_spec l{.deadline = steady::now() + 2s, .connect_timeout = seconds(1), .max_response_body = 1 << 20};
        l.now = steady::now().time_since_epoch().count();
        l.body = &body;
        l.response_buffer = 1024;
        l.upgrade = upgrade;
        return l;
    }

    void run(std::function<asio::awaitable<void>()> f)
    {
        upstream.start();
        testing::run_bounded(ioc, std::move(f));
    }

    asio::awaitable<forward::exchange_result> exchange(http::response& res, forward::attempt_spec l)
    {
        http::request req{bhttp::verb::get, "/feed", 11};
        req.set(bhttp::field::host, "svc");
        auto* ep = up->pick(0);
        co_return co_await forward::exchange(*up, *ep, req, l, res);
    }

    // Everything the client received, up to the close (or a reset).
    std::string client_received()
    {
        to_client->socket().close();
        std::string out;
        error_code ec;
        asio::read(client_peer, asio::dynamic_buffer(out), ec);
        return out;
    }

    std::size_t pooled() { return up->pick(0)->idle.size(); }
};

struct streamed_case {
    const char* name;
    std::string reply; // the upstream's whole answer (head included)
    bool close;        // the upstream closes after it (else keeps the connection, silent)
    stream_end end;
    std::string client_gets; // the relayed body as the client receives it
    bool chunked_to_client;
    bool pooled; // the connection went back to the pool
};

void PrintTo(const streamed_case& c, std::ostream* os) { *os << c.name; }

const std::string cl2000 = "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'a');

const streamed_case streamed_cases[] = {
    {"chunked, trailer dropped",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", false,
     stream_end::completed, "b\r\nhello world\r\n0\r\n\r\n", true, true}, // what one read brought, one chunk
    {"chunked, cut by a close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true,
     stream_end::upstream_failed, "5\r\nhello\r\n", true, false},
    {"chunked, a bad chunk line", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", true,
     stream_end::upstream_failed, "", true, false},
    {"chunked, silent past the idle time", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", false,
     stream_end::idle_timeout, "3\r\nabc\r\n", true, false},
    {"delimited by the close", "HTTP/1.1 200 OK\r\n\r\nabc", true, stream_end::completed, "abc", false, false},
    {"a length above the buffer", cl2000, false, stream_end::completed, std::string(2000, 'a'), false, true},
    {"a length above the buffer, cut", "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + std::string(700, 'a'), true,
     stream_end::upstream_failed, std::string(700, 'a'), false, false},
    {"a short event stream", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: 1\n\n", false,
     stream_end::completed, "data: 1\n\n", false, true},
};

struct every_way_a_streamed_body_ends : relay_fixture, ::testing::WithParamInterface<streamed_case> { };

TEST_P(every_way_a_streamed_body_ends, as_the_client_and_the_pool_see_it)
{
    const auto& c = GetParam();
    upstream.connections = {{upstream_step{c.reply, c.close}}};
    forward::relay_outcome out;
    http::response res;
    run([&]() -> asio::awaitable<void> {
        auto r = co_await exchange(res, limits());
        EXPECT_EQ(r.error, proxy_error::ok) << r.detail;
        if (!body)
            co_return;
        forward::relay_options opt{millis(150), 0, 512, c.chunked_to_client};
        out = co_await forward::relay_response_body(*to_client, body, opt);
    });
    ASSERT_TRUE(res.body().empty()) << "the head only: the body was relayed";
    EXPECT_EQ(out.end, c.end);
    EXPECT_EQ(client_received(), c.client_gets);
    EXPECT_EQ(pooled(), c.pooled ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(stream_relay, every_way_a_streamed_body_ends, ::testing::ValuesIn(streamed_cases));

TEST_F(relay_fixture, a_body_known_to_fit_the_buffer_is_read_whole)
{
    upstream.connections = {{upstream_step{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false}}};
    http::response res;
    run([&]() -> asio::awaitable<void> {
        auto r = co_await exchange(res, limits());
        EXPECT_EQ(r.error, proxy_error::ok);
    });
    EXPECT_FALSE(body);
    EXPECT_EQ(res.body(), "0123456789");
}

TEST_F(relay_fixture, a_length_above_max_response_body_fails_before_anything_streams)
{
    upstream.connections = {{upstream_step{"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\nabc", true}}};
    http::response res;
    run([&]() -> asio::awaitable<void> {
        auto l = limits();
        l.max_response_body = 4096;
        auto r = co_await exchange(res, l);
        EXPECT_EQ(r.error, proxy_error::upstream_response_too_large);
    });
    EXPECT_FALSE(body);
}

TEST_F(relay_fixture, a_101_is_a_tunnel_only_when_the_request_asked_for_it)
{
    const std::string switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly";
    upstream.connections = {{upstream_step{switching, false}}, {upstream_step{switching, false}}};
    http::response res;
    run([&]() -> asio::awaitable<void> {
        auto refused = co_await exchange(res, limits(false));
        EXPECT_EQ(refused.error, proxy_error::upstream_invalid_response);
        EXPECT_FALSE(body);
        auto r = co_await exchange(res, limits(true));
        EXPECT_EQ(r.error, proxy_error::ok);
    });
    ASSERT_TRUE(body);
    EXPECT_TRUE(body.upgraded);
    EXPECT_EQ(res.result_int(), 101u);
    // The bytes that came with the 101 stay on the connection, for the tunnel to pass on first.
    EXPECT_EQ(beast::buffers_to_string(body.conn->buffer.data()), "early");
}

TEST_F(relay_fixture, a_client_that_leaves_ends_the_relay_as_client_closed)
{
    upstream.connections = {
        {upstream_step{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string("3\r\nabc\r\n"), false}}};
    forward::relay_outcome out;
    http::response res;
    client_peer.set_option(asio::socket_base::linger(true, 0));
    client_peer.close(); // a reset: the first write fails
    run([&]() -> asio::awaitable<void> {
        co_await exchange(res, limits());
        if (!body)
            co_return;
        forward::relay_options opt{millis(500), 0, 512, true};
        out = co_await forward::relay_response_body(*to_client, body, opt);
    });
    EXPECT_EQ(out.end, stream_end::client_closed);
}

} // namespace
} // namespace breakerbox
