// read_message over real loopback sockets: messages split across reads, closes mid-message.
#include "http/read_message.hpp"
#include "../socket_pair_fixture.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <thread>

namespace breakerbox {
namespace {

struct read_message_test : testing::socket_pair_fixture {};
using namespace std::chrono_literals;

TEST_F(read_message_test, assembles_a_response_from_several_reads)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\nContent-Le");
        asio::steady_timer writer(ioc, 20ms);
        writer.async_wait([&](const error_code&) { peer_writes("ngth: 5\r\n\r\nhel"); });
        asio::steady_timer writer2(ioc, 40ms);
        writer2.async_wait([&](const error_code&) { peer_writes("lo"); });
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        http::trailer_fence parser_fence{parser};
        auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(parser.get().body(), "hello");
        EXPECT_EQ(buffer.size(), 0u);
    });
}

TEST_F(read_message_test, reports_a_close_mid_message_and_completes_a_close_delimited_body)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\n\r\nuntil the close");
        peer.shutdown(tcp::socket::shutdown_send);
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        http::trailer_fence parser_fence{parser};
        auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(parser.get().body(), "until the close");

        bhttp::response_parser<bhttp::string_body> second;

        http::trailer_fence second_fence{second};
        auto ec2 = co_await http::read_message(*stream, buffer, second, second_fence);
        EXPECT_EQ(ec2, bhttp::error::end_of_stream);
    });
}

TEST_F(read_message_test, on_a_truncated_body_is_a_partial_message)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        peer.shutdown(tcp::socket::shutdown_send);
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        http::trailer_fence parser_fence{parser};
        auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
        EXPECT_EQ(ec, bhttp::error::partial_message);
    });
}

// Trailer sections (issue 15, fault 2): dropped whole, whatever their fields, even when the last chunk
// and its trailers arrive split across reads; the next message on the connection is read intact.
TEST_F(read_message_test, drops_a_trailer_section_split_across_reads_and_keeps_the_next_message)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\nSet-Coo");
        asio::steady_timer writer(ioc, 20ms);
        writer.async_wait([&](const error_code&) {
            peer_writes("kie: s=from-trailer\r\nContent-Type: text/html\r\nContent-Length: 9\r\nTransfer-Encoding: gzip\r\n"
                        "Connection: close\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        });
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        http::trailer_fence parser_fence{parser};
        auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_TRUE(parser_fence.had_trailers());
        EXPECT_EQ(parser.get().body(), "hello");
        EXPECT_EQ(parser.get().count(bhttp::field::content_type), 1u);
        EXPECT_EQ(parser.get()[bhttp::field::content_type], "text/plain");
        EXPECT_EQ(parser.get().count(bhttp::field::set_cookie), 0u);
        EXPECT_EQ(parser.get().count(bhttp::field::content_length), 0u);
        EXPECT_TRUE(parser.keep_alive()); // a trailer "Connection: close" does not count

        bhttp::response_parser<bhttp::string_body> second;
        http::trailer_fence second_fence{second};
        auto ec2 = co_await http::read_message(*stream, buffer, second, second_fence);
        EXPECT_FALSE(ec2) << ec2.message();
        EXPECT_EQ(second.get().result_int(), 204u);
        EXPECT_FALSE(second_fence.had_trailers());
    });
}

TEST_F(read_message_test, a_chunked_message_without_trailers_and_with_only_a_last_chunk)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0;ext=1\r\nX-T: 1\r\n\r\n");
        beast::flat_buffer buffer;
        for (int i = 0; i < 2; ++i) {
            bhttp::response_parser<bhttp::string_body> parser;
            http::trailer_fence fence{parser};
            auto ec = co_await http::read_message(*stream, buffer, parser, fence);
            EXPECT_FALSE(ec) << ec.message();
            EXPECT_EQ(parser.get().body(), "");
            EXPECT_EQ(fence.had_trailers(), i == 1);
            EXPECT_EQ(parser.get().count("X-T"), 0u);
        }
        EXPECT_EQ(buffer.size(), 0u);
    });
}

TEST_F(read_message_test, an_endless_trailer_section_is_refused_instead_of_buffered)
{
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(10s);
        peer_writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n");
        std::thread writer([&] {
            const std::string line = "X-Pad: " + std::string(1000, 'p') + "\r\n";
            error_code ec;
            for (int i = 0; i < 200 && !ec; ++i) // 200 KB of trailer fields that never end
                asio::write(peer, asio::buffer(line), ec);
        });
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        http::trailer_fence parser_fence{parser};
        auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
        EXPECT_EQ(ec, bhttp::error::header_limit);
        EXPECT_LE(buffer.size(), http::max_unparsed_after_header + 65536);
        stream->socket().close();
        writer.join();
    });
}

// A message completed by a short read marks the socket drained (core/drained_hint.hpp): the next
// message must still be read whenever it arrives — here written from another thread, in bursts at
// irregular times, sometimes split, sometimes several at once — and nothing may stall.
TEST_F(read_message_test, messages_arriving_at_any_moment_after_a_drained_mark_are_all_read)
{
    constexpr int count = 3000;
    static constexpr std::string_view message = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    std::thread writer([&] {
        std::string pending;
        for (int i = 0; i < count; ++i) {
            pending += message;
            if (i % 3 == 0)
                continue; // sometimes several messages in one write
            const std::size_t split = i % 5 == 0 ? pending.size() / 2 : pending.size();
            asio::write(peer, asio::buffer(pending.data(), split));
            if (i % 7 == 0)
                std::this_thread::yield();
            asio::write(peer, asio::buffer(pending.data() + split, pending.size() - split));
            pending.clear();
        }
        asio::write(peer, asio::buffer(pending));
    });
    run([&]() -> asio::awaitable<void> {
        namespace bhttp = boost::beast::http;
        stream->expires_after(30s);
        beast::flat_buffer buffer(2 * message.size()); // full reads that end on a message boundary with more queued
        int read = 0;
        for (; read < count; ++read) {
            bhttp::response_parser<bhttp::string_body> parser;
            http::trailer_fence parser_fence{parser};
            auto ec = co_await http::read_message(*stream, buffer, parser, parser_fence);
            if (ec) {
                ADD_FAILURE() << "message " << read << ": " << ec.message();
                break;
            }
            EXPECT_EQ(parser.get().body(), "hello");
        }
        EXPECT_EQ(read, count);
    });
    writer.join();
}

} // namespace
} // namespace breakerbox
