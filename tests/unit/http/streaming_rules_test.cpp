// Which answers stream by their type, which upgrades a request asks for and may have, and the framing of
// streamed messages (docs/streaming.md).
#include "http/field_scan.hpp"
#include "http/header_rules.hpp"
#include "http/streaming_rules.hpp"

#include <gtest/gtest.h>

namespace breakerbox::http {
namespace {

response with_type(std::string_view type)
{
    response r{bhttp::status::ok, 11};
    if (!type.empty())
        r.set(bhttp::field::content_type, type);
    return r;
}

TEST(streaming_rules, streaming_media_types_and_x_accel_buffering)
{
    for (auto t :
         {"text/event-stream", "Text/Event-Stream; charset=utf-8", "application/x-ndjson",
          "multipart/x-mixed-replace; boundary=frame", "application/grpc", "application/grpc+proto", "application/grpc-web"})
        EXPECT_TRUE(streams_response(with_type(t))) << t;
    for (auto t : {"", "application/json", "text/html", "text/event-streamer", "application/grpcx", "text/plain"})
        EXPECT_FALSE(streams_response(with_type(t))) << t;
    auto r = with_type("application/octet-stream");
    r.set("X-Accel-Buffering", "no");
    EXPECT_TRUE(streams_response(r));
    r.set("X-Accel-Buffering", "yes");
    EXPECT_FALSE(streams_response(r));
}

request upgrade_request(std::string_view connection, std::string_view upgrade, unsigned version = 11)
{
    request req{bhttp::verb::get, "/ws", version};
    if (!connection.empty())
        req.set(bhttp::field::connection, connection);
    if (!upgrade.empty())
        req.set(bhttp::field::upgrade, upgrade);
    return req;
}

TEST(streaming_rules, an_upgrade_needs_both_fields_http_1_1_and_an_allowed_first_protocol)
{
    const std::vector<std::string> websocket{"websocket"};
    EXPECT_EQ(requested_upgrade(upgrade_request("Upgrade", "websocket"), websocket), "websocket");
    EXPECT_EQ(requested_upgrade(upgrade_request("keep-alive, upgrade", "WebSocket"), websocket), "WebSocket");
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", "websocket/13, foo"), websocket),
              "websocket/13");                                                                 // only the first goes on
    EXPECT_EQ(requested_upgrade(upgrade_request("", "websocket"), websocket), "");             // no Connection: upgrade
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", ""), websocket), "");               // no Upgrade
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", "h2c"), websocket), "");            // not allowed
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", "foo, websocket"), websocket), ""); // only the first counts
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", "websocket", 10), websocket), "");  // HTTP/1.0
    EXPECT_EQ(requested_upgrade(upgrade_request("upgrade", "websocket"), {}), "");             // upgrades: []
}

TEST(streaming_rules, a_101_must_name_the_protocol_asked_for)
{
    EXPECT_TRUE(same_protocol("websocket", "websocket"));
    EXPECT_TRUE(same_protocol("WebSocket", "websocket"));
    EXPECT_TRUE(same_protocol("websocket/13", "websocket"));
    EXPECT_FALSE(same_protocol("h2c", "websocket"));
    EXPECT_FALSE(same_protocol("websocket/13", "websocket/14"));
    EXPECT_FALSE(same_protocol("", "websocket"));
}

TEST(streaming_rules, restore_upgrade_puts_back_what_hop_by_hop_stripping_removed)
{
    auto req = upgrade_request("Upgrade, X-Secret", "websocket");
    req.set("X-Secret", "1");
    strip_hop_by_hop(req.base());
    EXPECT_FALSE(has_field(req, {bhttp::field::upgrade}));
    restore_upgrade(req.base(), "websocket");
    EXPECT_EQ(value_of(req, {bhttp::field::connection}), "upgrade");
    EXPECT_EQ(value_of(req, {bhttp::field::upgrade}), "websocket");
    EXPECT_FALSE(has_field(req, field_name::of("X-Secret"))); // a field Connection named stays gone
}

TEST(streaming_rules, framing_of_streamed_messages)
{
    response res{bhttp::status::ok, 11};
    res.set(bhttp::field::content_length, "12345");
    frame_streamed_response(res, true);
    EXPECT_EQ(value_of(res, {bhttp::field::content_length}), "12345");
    frame_streamed_response(res, false);
    EXPECT_FALSE(has_field(res, {bhttp::field::content_length}));

    request req{bhttp::verb::put, "/", 11};
    req.set(bhttp::field::content_length, "10"); // the prefix's length, as re-framing left it
    frame_streamed_request(req, false, 5'000'000);
    EXPECT_EQ(value_of(req, {bhttp::field::content_length}), "5000000");
    frame_streamed_request(req, true, 0);
    EXPECT_FALSE(has_field(req, {bhttp::field::content_length}));
    EXPECT_EQ(value_of(req, {bhttp::field::transfer_encoding}), "chunked");
}

} // namespace
} // namespace breakerbox::http
