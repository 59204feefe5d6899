#include "http/framing.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

TEST(frame_request, sets_content_length_only_where_a_body_belongs)
{
    http::request get{bhttp::verb::get, "/", 11};
    get.set(bhttp::field::content_length, "10");
    http::frame_request(get);
    EXPECT_EQ(get.count(bhttp::field::content_length), 0u);

    http::request post{bhttp::verb::post, "/", 11};
    http::frame_request(post);
    EXPECT_EQ(post[bhttp::field::content_length], "0");
    post.body() = "hello";
    http::frame_request(post);
    EXPECT_EQ(post[bhttp::field::content_length], "5");
}

TEST(frame_response, follows_the_rfc_exceptions)
{
    http::response no_content{bhttp::status::no_content, 11};
    no_content.set(bhttp::field::content_length, "0");
    http::frame_response(no_content, false);
    EXPECT_EQ(no_content.count(bhttp::field::content_length), 0u);

    http::response head{bhttp::status::ok, 11};
    head.set(bhttp::field::content_length, "1234");
    http::frame_response(head, true);
    EXPECT_EQ(head[bhttp::field::content_length], "1234");

    http::response ok{bhttp::status::ok, 11};
    ok.body() = "abc";
    http::frame_response(ok, false);
    EXPECT_EQ(ok[bhttp::field::content_length], "3");
}

TEST(set_keep_alive, says_only_what_the_version_does_not_imply)
{
    http::response r11{bhttp::status::ok, 11};
    http::set_keep_alive(r11, true);
    EXPECT_EQ(r11.count(bhttp::field::connection), 0u);
    http::set_keep_alive(r11, false);
    EXPECT_EQ(r11[bhttp::field::connection], "close");
    EXPECT_FALSE(r11.keep_alive());

    http::response r10{bhttp::status::ok, 10};
    http::set_keep_alive(r10, false);
    EXPECT_EQ(r10.count(bhttp::field::connection), 0u);
    http::set_keep_alive(r10, true);
    EXPECT_EQ(r10[bhttp::field::connection], "keep-alive");
    EXPECT_TRUE(r10.keep_alive());
}

TEST(set_keep_alive, an_existing_connection_field_is_rewritten_by_beast)
{
    http::response r{bhttp::status::ok, 11};
    r.set(bhttp::field::connection, "close");
    http::set_keep_alive(r, true);
    EXPECT_TRUE(r.keep_alive());
    EXPECT_EQ(r.count(bhttp::field::connection), 0u);
}

TEST(connection_token, names_only_what_the_version_does_not_say_by_default)
{
    EXPECT_EQ(http::connection_token(11, true), "");
    EXPECT_EQ(http::connection_token(11, false), "close");
    EXPECT_EQ(http::connection_token(10, true), "keep-alive");
    EXPECT_EQ(http::connection_token(10, false), "");
}

// RFC 9112 §7.1: size in hex, CRLF, data, CRLF; the empty piece is the last chunk.
TEST(chunk_frame, size_line_data_and_crlf_and_the_last_chunk)
{
    const auto text = [](const std::array<asio::const_buffer, 3>& b) {
        std::string s;
        for (const auto& part : b)
            s.append(static_cast<const char*>(part.data()), part.size());
        return s;
    };
    http::chunk_frame chunk;
    EXPECT_EQ(text(chunk.frame("hello")), "5\r\nhello\r\n");
    EXPECT_EQ(text(chunk.frame(std::string(4096, 'x'))).substr(0, 6), "1000\r\n");
    EXPECT_EQ(text(chunk.frame({})), "0\r\n\r\n");
}
