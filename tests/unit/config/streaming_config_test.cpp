// limits' buffers and the streaming block: defaults as documented, `unlimited`, the defaults block, and
// every refusal naming its key.
#include "config/loader.hpp"

#include <gtest/gtest.h>

namespace breakerbox::config {
namespace {

load_result load_with(const std::string& limits, const std::string& streaming, const std::string& defaults = "")
{
    return load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n" + limits + defaults +
                           "upstreams:\n"
                           "  svc:\n"
                           "    endpoints: [\"127.0.0.1:1\"]\n"
                           "    routes: {hosts: [svc]}\n" +
                           streaming,
                       "/tmp/streaming.yaml");
}

bool has_error_at(const load_result& r, const std::string& path)
{
    for (const auto& e : r.errors)
        if (e.path == path && e.line > 0)
            return true;
    return false;
}

TEST(streaming_config, defaults_as_documented)
{
    auto r = load_with("", "");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    const auto& l = r.cfg->limits;
    EXPECT_EQ(l.request_buffer, 1u << 20);
    EXPECT_EQ(l.response_buffer, 1u << 20);
    EXPECT_EQ(l.stream_buffer, 64u << 10);
    EXPECT_EQ(l.max_request_body, unlimited_size);
    EXPECT_EQ(l.max_response_body, unlimited_size);
    const auto& s = r.cfg->upstreams[0].streaming;
    EXPECT_EQ(s.idle_timeout, seconds(300));
    EXPECT_EQ(s.total_timeout, 0);
    EXPECT_EQ(s.max_streams, 1024u);
    EXPECT_EQ(s.max_tunnels, 1024u);
    EXPECT_EQ(s.upgrades, std::vector<std::string>{"websocket"});
    EXPECT_FALSE(s.close_tunnels_on_open);
}

TEST(streaming_config, every_key_is_read_and_the_defaults_block_applies)
{
    auto r =
        load_with("limits: {request_buffer: 256KiB, response_buffer: 2MiB, stream_buffer: 16KiB, max_request_body: unlimited,"
                  " max_response_body: 1GiB}\n",
                  "    streaming: {max_tunnels: 3, upgrades: [WebSocket, foo/2], close_tunnels_on_open: true}\n",
                  "defaults:\n  streaming: {idle_timeout: 2s, total_timeout: 1h, max_streams: 7}\n");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    const auto& l = r.cfg->limits;
    EXPECT_EQ(l.request_buffer, 256u << 10);
    EXPECT_EQ(l.response_buffer, 2u << 20);
    EXPECT_EQ(l.stream_buffer, 16u << 10);
    EXPECT_EQ(l.max_request_body, unlimited_size);
    EXPECT_EQ(l.max_response_body, 1ull << 30);
    const auto& s = r.cfg->upstreams[0].streaming;
    EXPECT_EQ(s.idle_timeout, seconds(2));
    EXPECT_EQ(s.total_timeout, seconds(3600));
    EXPECT_EQ(s.max_streams, 7u);
    EXPECT_EQ(s.max_tunnels, 3u);
    EXPECT_EQ(s.upgrades, (std::vector<std::string>{"websocket", "foo/2"}));
    EXPECT_TRUE(s.close_tunnels_on_open);
}

TEST(streaming_config, refusals_name_their_key)
{
    struct bad {
        const char* limits;
        const char* streaming;
        const char* path;
    };
    const bad cases[] = {
        {"limits: {stream_buffer: 10}\n", "", "limits.stream_buffer"},
        {"limits: {stream_buffer: 1GiB}\n", "", "limits.stream_buffer"},
        {"limits: {request_buffer: lots}\n", "", "limits.request_buffer"},
        {"limits: {max_response_body: 10}\n", "", "limits.max_response_body"},
        {"", "    streaming: {upgrades: [h2c]}\n", "upstreams.svc.streaming.upgrades[0]"},
        {"", "    streaming: {upgrades: [\"web socket\"]}\n", "upstreams.svc.streaming.upgrades[0]"},
        {"", "    streaming: {upgrades: websocket}\n", "upstreams.svc.streaming.upgrades"},
        {"", "    streaming: {idle_timeout: 1ms}\n", "upstreams.svc.streaming.idle_timeout"},
        {"", "    streaming: {max_streams: -1}\n", "upstreams.svc.streaming.max_streams"},
        {"", "    streaming: {max_stream: 1}\n", "upstreams.svc.streaming.max_stream"},
    };
    for (const auto& c : cases) {
        auto r = load_with(c.limits, c.streaming);
        EXPECT_FALSE(r.cfg) << c.path;
        EXPECT_TRUE(has_error_at(r, c.path)) << c.path << ": " << (r.errors.empty() ? "no error" : r.errors.front().text());
    }
}

} // namespace
} // namespace breakerbox::config
