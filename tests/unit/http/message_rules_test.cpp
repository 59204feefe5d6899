#include "http/message_rules.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {

http::fields with_te(std::initializer_list<std::string_view> lines)
{
    http::fields f;
    for (auto v : lines)
        f.insert(bhttp::field::transfer_encoding, v);
    return f;
}

http::request request_with_hosts(std::initializer_list<std::string_view> hosts, std::string_view target = "/x", unsigned version = 11)
{
    http::request req{bhttp::verb::get, target, version};
    for (auto h : hosts)
        req.insert(bhttp::field::host, h);
    return req;
}

// Parses `wire` completely with a fenced parser, as read_message feeds it; returns the message.
template <bool IsRequest>
bhttp::message<IsRequest, bhttp::string_body> parse_fenced(std::string_view wire, bool& had_trailers)
{
    bhttp::parser<IsRequest, bhttp::string_body> parser;
    http::trailer_fence fence{parser};
    parser.eager(true);
    boost::beast::flat_buffer buffer;
    auto room = buffer.prepare(wire.size());
    std::memcpy(room.data(), wire.data(), wire.size());
    buffer.commit(wire.size());
    for (int i = 0; i < 3 && !parser.is_done(); ++i) {
        boost::system::error_code ec;
        buffer.consume(parser.put(buffer.data(), ec));
        if (fence.pending()) {
            EXPECT_TRUE(fence.blank(buffer));
            continue;
        }
        EXPECT_FALSE(ec) << ec.message();
    }
    EXPECT_TRUE(parser.is_done());
    EXPECT_EQ(buffer.size(), 0u);
    fence.finish();
    had_trailers = fence.had_trailers();
    return parser.release();
}

} // namespace

TEST(transfer_coding_of, accepts_only_a_single_chunked)
{
    EXPECT_EQ(http::transfer_coding_of(http::fields{}, 11), http::transfer_coding::none);
    EXPECT_EQ(http::transfer_coding_of(with_te({"chunked"}), 11), http::transfer_coding::chunked);
    EXPECT_EQ(http::transfer_coding_of(with_te({"Chunked"}), 11), http::transfer_coding::chunked);
    EXPECT_EQ(http::transfer_coding_of(with_te({"gzip, chunked"}), 11), http::transfer_coding::unimplemented);
    EXPECT_EQ(http::transfer_coding_of(with_te({"gzip", "chunked"}), 11), http::transfer_coding::unimplemented); // two lines, one list
    EXPECT_EQ(http::transfer_coding_of(with_te({"identity, chunked"}), 11), http::transfer_coding::unimplemented);
    EXPECT_EQ(http::transfer_coding_of(with_te({"gzip"}), 11), http::transfer_coding::faulty); // chunked not final
    EXPECT_EQ(http::transfer_coding_of(with_te({"chunked, gzip"}), 11), http::transfer_coding::faulty);
    EXPECT_EQ(http::transfer_coding_of(with_te({"chunked, chunked"}), 11), http::transfer_coding::faulty);
    EXPECT_EQ(http::transfer_coding_of(with_te({""}), 11), http::transfer_coding::faulty);
    EXPECT_EQ(http::transfer_coding_of(with_te({"chunked"}), 10), http::transfer_coding::faulty); // HTTP/1.0
}

TEST(check_host, enforces_rfc9112_section_3_2)
{
    EXPECT_EQ(http::check_host(request_with_hosts({"public.test"})), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({"public.test:8080"})), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({"[::1]:8080"})), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({"127.0.0.1"})), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({""})), proxy_error::ok); // empty is allowed
    EXPECT_EQ(http::check_host(request_with_hosts({"public.test", "admin.test"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"public.test", "public.test"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({})), proxy_error::bad_request);             // HTTP/1.1 needs one
    EXPECT_EQ(http::check_host(request_with_hosts({}, "/x", 10)), proxy_error::ok);            // HTTP/1.0 may omit it
    EXPECT_EQ(http::check_host(request_with_hosts({"a b"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"a.test/evil"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"user@a.test"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"a.test:80x"})), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"::1"})), proxy_error::bad_request); // unbracketed IPv6
    EXPECT_EQ(http::check_host(request_with_hosts({"[::1"})), proxy_error::bad_request);
    // Absolute-form: the target's authority must be valid too; Host is then replaced by it.
    EXPECT_EQ(http::check_host(request_with_hosts({"other.test"}, "http://public.test/x")), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({}, "http://public.test:81/x", 10)), proxy_error::ok);
    EXPECT_EQ(http::check_host(request_with_hosts({"h"}, "http:///x")), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"h"}, "http://a b/x")), proxy_error::bad_request);
    EXPECT_EQ(http::check_host(request_with_hosts({"h", "h2"}, "http://public.test/x")), proxy_error::bad_request);
}

TEST(trailer_fence, keeps_trailer_fields_out_of_a_response_header)
{
    bool had = false;
    auto res = parse_fenced<false>("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                                   "5\r\nhello\r\n0\r\nSet-Cookie: s=from-trailer\r\nContent-Type: text/html\r\n"
                                   "Content-Length: 99\r\n\r\n",
                                   had);
    EXPECT_TRUE(had);
    EXPECT_EQ(res.body(), "hello");
    EXPECT_EQ(res.count(bhttp::field::content_type), 1u);
    EXPECT_EQ(res[bhttp::field::content_type], "text/plain");
    EXPECT_EQ(res.count(bhttp::field::set_cookie), 0u);
    EXPECT_EQ(res.count(bhttp::field::content_length), 0u);
    EXPECT_EQ(res.count(bhttp::field::transfer_encoding), 1u); // the header's own fields stay
}

TEST(trailer_fence, keeps_trailer_fields_out_of_a_request_header)
{
    bool had = false;
    auto req = parse_fenced<true>("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "3\r\nabc\r\n0\r\nHost: evil.test\r\nAuthorization: Bearer x\r\n\r\n",
                                  had);
    EXPECT_TRUE(had);
    EXPECT_EQ(req.body(), "abc");
    EXPECT_EQ(req.count(bhttp::field::host), 1u);
    EXPECT_EQ(req[bhttp::field::host], "h");
    EXPECT_EQ(req.count(bhttp::field::authorization), 0u);
}

TEST(trailer_fence, leaves_messages_without_trailers_alone)
{
    bool had = true;
    auto chunked = parse_fenced<false>("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nA: 1\r\n\r\n2\r\nhi\r\n0\r\n\r\n", had);
    EXPECT_FALSE(had);
    EXPECT_EQ(chunked["A"], "1");
    auto sized = parse_fenced<false>("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nA: 1\r\n\r\nhi", had);
    EXPECT_FALSE(had);
    EXPECT_EQ(sized["A"], "1");
    EXPECT_EQ(sized.body(), "hi");
}
