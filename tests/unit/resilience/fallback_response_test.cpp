#include "http/framing.hpp"
#include "http/serialize.hpp"
#include "resilience/fallback_response.hpp"

#include <boost/beast/http/parser.hpp>
#include <gtest/gtest.h>

#include <set>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {
config::fallback_config static_fallback(std::string body)
{
    config::fallback_config fb;
    fb.kind = config::fallback_kind::static_response;
    fb.status = 503;
    fb.body = std::move(body);
    return fb;
}
} // namespace

TEST(render_static_fallback, substitutes_every_known_placeholder_and_keeps_the_rest)
{
    const resilience::fallback_vars vars{"orders", 7, "circuit_open"};
    auto res = resilience::render_static_fallback(
        static_fallback("{{upstream}}{{reason}} in {{retry_after}}s {{other}} {{upstream"), vars);
    EXPECT_EQ(res.body(), "orderscircuit_open in 7s {{other}} {{upstream");
    EXPECT_EQ(res[bhttp::field::content_length], std::to_string(res.body().size()));
    EXPECT_EQ(res[bhttp::field::retry_after], "7");
    EXPECT_EQ(res.result_int(), 503u);

    auto plain = resilience::render_static_fallback(static_fallback("no placeholders {{ here"), {"u", 0, "timeout"});
    EXPECT_EQ(plain.body(), "no placeholders {{ here");
    EXPECT_EQ(plain.count(bhttp::field::retry_after), 0u);
}

TEST(render_static_fallback, header_values_cannot_start_a_new_line)
{
    auto fb = static_fallback("x");
    fb.headers.emplace_back("X-Why", "{{reason}}\r\nInjected: yes");
    fb.headers.emplace_back("Content-Length", "999");
    auto res = resilience::render_static_fallback(fb, {"u", 0, "timeout"});
    EXPECT_EQ(res["X-Why"], "timeoutInjected: yes");
    EXPECT_EQ(res.count(bhttp::field::content_length), 1u);
    EXPECT_EQ(res[bhttp::field::content_length], "1");
}

TEST(render_static_fallback, a_status_without_content_gets_no_body)
{
    auto fb = static_fallback("ignored");
    fb.status = 204;
    auto no_content = resilience::render_static_fallback(fb, {"u", 0, "timeout"});
    EXPECT_TRUE(no_content.body().empty());
    EXPECT_EQ(no_content.count(bhttp::field::content_length), 0u);
    fb.status = 304;
    EXPECT_TRUE(resilience::render_static_fallback(fb, {"u", 0, "timeout"}).body().empty());
}

TEST(mark_fallback, leaves_one_kind_and_one_reason)
{
    http::response res{bhttp::status::ok, 11};
    resilience::mark_fallback(res, "stale", "timeout");
    resilience::mark_fallback(res, "error", "circuit_open");
    EXPECT_EQ(res.count(resilience::fallback_header), 1u);
    EXPECT_EQ(res[resilience::fallback_header], "error");
    EXPECT_EQ(res[resilience::fallback_reason_header], "circuit_open");
}

namespace {

// What the client receives, as a field multiset, status and body (field order is not part of HTTP's
// meaning, and the two paths order Retry-After differently).
struct wire_answer {
    unsigned version = 0;
    unsigned status = 0;
    std::multiset<std::pair<std::string, std::string>> fields;
    std::string body;
    bool operator==(const wire_answer&) const = default;
};

wire_answer parse(const std::string& wire)
{
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(wire), ec);
    EXPECT_FALSE(ec) << ec.message() << "\n" << wire;
    EXPECT_TRUE(parser.is_done()) << wire;
    wire_answer a;
    a.version = parser.get().version();
    a.status = parser.get().result_int();
    for (const auto& f : parser.get())
        a.fields.emplace(std::string(f.name_string()), std::string(f.value()));
    a.body = parser.get().body();
    return a;
}

// The answer built field by field per request, as before pre-rendering.
std::string rendered_per_answer(const config::fallback_config& fb, config::fallback_trigger trigger, unsigned version,
                                bool keep_alive, long retry_after)
{
    const auto reason = name_of(trigger);
    auto res = resilience::render_static_fallback(
        fb, {"orders", trigger == config::fallback_trigger::circuit_open ? retry_after : 0, reason});
    resilience::mark_fallback(res, "static", reason);
    res.version(version);
    http::set_keep_alive(res, keep_alive);
    std::string head;
    http::serialize_head(res, head);
    return head + res.body();
}

} // namespace

TEST(prerender_static_fallback, answers_exactly_what_rendering_per_answer_would)
{
    auto fb = static_fallback("{{upstream}} is unavailable ({{reason}})");
    fb.headers.emplace_back("Cache-Control", "no-store");
    fb.headers.emplace_back("X-Upstream", "{{upstream}}");
    auto with_retry_after = fb;
    with_retry_after.headers.emplace_back("Retry-After", "30");
    for (const auto& config : {fb, with_retry_after})
        for (auto trigger : {config::fallback_trigger::circuit_open, config::fallback_trigger::bulkhead_full,
                             config::fallback_trigger::upstream_error, config::fallback_trigger::timeout}) {
            auto ready = resilience::prerender_static_fallback(config, "orders", trigger);
            ASSERT_TRUE(ready);
            for (unsigned version : {10u, 11u})
                for (bool keep_alive : {true, false})
                    for (long retry_after : {0L, 1L, 42L}) {
                        std::string head;
                        ready->write_head(head, version, keep_alive, retry_after);
                        EXPECT_EQ(parse(head + ready->body),
                                  parse(rendered_per_answer(config, trigger, version, keep_alive, retry_after)))
                            << name_of(trigger) << " HTTP/" << version << " keep_alive=" << keep_alive
                            << " retry_after=" << retry_after << "\n"
                            << head;
                    }
        }
}

TEST(prerender_static_fallback, leaves_per_answer_templates_and_connection_fields_to_rendering)
{
    EXPECT_FALSE(resilience::prerender_static_fallback(static_fallback("again in {{retry_after}}s"), "u",
                                                       config::fallback_trigger::circuit_open));
    auto header_template = static_fallback("x");
    header_template.headers.emplace_back("X-Wait", "{{retry_after}}");
    EXPECT_FALSE(resilience::prerender_static_fallback(header_template, "u", config::fallback_trigger::timeout));
    auto connection = static_fallback("x");
    connection.headers.emplace_back("connection", "close");
    EXPECT_FALSE(resilience::prerender_static_fallback(connection, "u", config::fallback_trigger::timeout));
}
