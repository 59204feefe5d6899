#include "http/serialize.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

TEST(serialize_head, writes_the_request_line_and_every_field_in_order)
{
    http::request req{bhttp::verb::post, "/a?b=1", 11};
    req.insert(bhttp::field::host, "svc");
    req.insert("X-Empty", "");
    req.insert(bhttp::field::content_length, "5");
    std::string out = "left over from the last message";
    http::serialize_head(req, out);
    EXPECT_EQ(out, "POST /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-Empty: \r\nContent-Length: 5\r\n\r\n");
}

TEST(serialize_head, writes_the_status_line_with_the_standard_reason_when_none_was_given)
{
    http::response res{bhttp::status::service_unavailable, 10};
    res.insert(bhttp::field::retry_after, "3");
    std::string out;
    http::serialize_head(res, out);
    EXPECT_EQ(out, "HTTP/1.0 503 Service Unavailable\r\nRetry-After: 3\r\n\r\n");

    http::response bare{bhttp::status::no_content, 11};
    http::serialize_head(bare, out);
    EXPECT_EQ(out, "HTTP/1.1 204 No Content\r\n\r\n");
}
