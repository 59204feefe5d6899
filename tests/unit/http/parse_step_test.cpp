// The one parsing step every body reader drives, tested the way Beast tests its parser: each message
// fed split at every byte boundary (the reader's "read more" at each point), and each failure point in
// turn — a bad chunk, a trailer section (dropped, never joined to the header), the unparsed bound, the
// body limit — so that no reader can differ from another on the framing rules.
#include "http/parse_step.hpp"

#include <gtest/gtest.h>

#include <string>

namespace breakerbox::http {
namespace {

namespace bhttp = boost::beast::http;
using request_parser = bhttp::request_parser<bhttp::string_body>;

struct outcome {
    parse_next last = parse_next::read;
    error_code error;
    std::string body;
    bool trailer_in_header = false;
    int steps = 0;
};

// Feeds `message` in two parts cut at `cut` (the second part arriving when the first asks for more),
// driving parse_buffered as the readers do until done or failed.
outcome drive(const std::string& message, std::size_t cut, std::uint64_t body_limit = 1 << 20)
{
    request_parser parser;
    trailer_fence fence(parser);
    parser.eager(true);
    parser.body_limit(body_limit);
    beast::flat_buffer buffer;
    const std::string parts[2] = {message.substr(0, cut), message.substr(cut)};
    std::size_t next_part = 0;
    outcome o;
    for (; o.steps < 1000; ++o.steps) {
        const auto step = parse_buffered(parser, fence, buffer);
        o.last = step.next;
        if (step.next == parse_next::failed) {
            o.error = step.error;
            break;
        }
        if (step.next == parse_next::done)
            break;
        if (step.next == parse_next::read) {
            if (next_part == 2)
                break; // nothing more to read: the message is cut short
            const auto& p = parts[next_part++];
            if (!p.empty()) { // (an empty part: memcpy may not be given a null buffer)
                auto dst = buffer.prepare(p.size());
                std::memcpy(dst.data(), p.data(), p.size());
                buffer.commit(p.size());
            }
        }
    }
    o.body = parser.get().body();
    o.trailer_in_header = parser.get().find("X-Trailer") != parser.get().end();
    return o;
}

const std::string chunked_head = "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST(parse_step, a_chunked_body_with_trailers_parses_alike_at_every_split_and_drops_the_trailers)
{
    const std::string message = chunked_head + "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: no\r\n\r\n";
    for (std::size_t cut = 0; cut <= message.size(); ++cut) {
        const auto o = drive(message, cut);
        ASSERT_EQ(o.last, parse_next::done) << "cut at " << cut << ": " << o.error.message();
        EXPECT_EQ(o.body, "hello world") << cut;
        EXPECT_FALSE(o.trailer_in_header) << cut;
    }
}

TEST(parse_step, a_length_delimited_body_at_every_split)
{
    const std::string message = "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    for (std::size_t cut = 0; cut <= message.size(); ++cut) {
        const auto o = drive(message, cut);
        ASSERT_EQ(o.last, parse_next::done) << cut;
        EXPECT_EQ(o.body, "hello world") << cut;
    }
}

struct failure_point {
    const char* name;
    std::string message;
    std::uint64_t body_limit;
    error_code expected;
};

TEST(parse_step, every_failure_point_fails_at_every_split)
{
    const failure_point points[] = {
        {"a chunk size that is not hex", chunked_head + "zz\r\nhello\r\n0\r\n\r\n", 1 << 20, bhttp::error::bad_chunk},
        {"chunk data longer than its size", chunked_head + "2\r\nhello\r\n0\r\n\r\n", 1 << 20, bhttp::error::bad_chunk},
        {"a body over the body limit", chunked_head + "5\r\nhello\r\n0\r\n\r\n", 3, bhttp::error::body_limit},
        {"a chunk line longer than the unparsed bound", chunked_head + "5;" + std::string(max_unparsed_after_header + 10, 'x'),
         1 << 20, bhttp::error::header_limit},
    };
    for (const auto& p : points) {
        for (std::size_t cut = 0; cut <= p.message.size(); cut += (p.message.size() > 1000 ? 997 : 1)) {
            const auto o = drive(p.message, cut, p.body_limit);
            ASSERT_EQ(o.last, parse_next::failed) << p.name << " cut at " << cut;
            EXPECT_EQ(o.error, p.expected) << p.name << " cut at " << cut << ": " << o.error.message();
        }
    }
}

TEST(parse_step, a_parser_stopped_after_its_header_on_purpose_leaves_the_body_waiting)
{
    // Not eager: the header alone is parsed, and body bytes beyond the unparsed bound are not a failure.
    const std::string body(max_unparsed_after_header + 100, 'b');
    const std::string message =
        "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    request_parser parser;
    trailer_fence fence(parser);
    parser.eager(false);
    beast::flat_buffer buffer;
    auto dst = buffer.prepare(message.size());
    std::memcpy(dst.data(), message.data(), message.size());
    buffer.commit(message.size());
    auto step = parse_buffered(parser, fence, buffer);
    EXPECT_EQ(step.next, parse_next::again);
    EXPECT_TRUE(parser.is_header_done());
    step = parse_buffered(parser, fence, buffer);
    EXPECT_NE(step.next, parse_next::failed) << step.error.message();
}

TEST(parse_step, a_done_parser_with_the_next_message_buffered_stays_done)
{
    const std::string two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    request_parser parser;
    trailer_fence fence(parser);
    parser.eager(true);
    beast::flat_buffer buffer;
    auto dst = buffer.prepare(two.size());
    std::memcpy(dst.data(), two.data(), two.size());
    buffer.commit(two.size());
    EXPECT_EQ(parse_buffered(parser, fence, buffer).next, parse_next::done);
    const auto left = buffer.size();
    EXPECT_EQ(parse_buffered(parser, fence, buffer).next, parse_next::done);
    EXPECT_EQ(buffer.size(), left); // the next request is not eaten
}

} // namespace
} // namespace breakerbox::http
