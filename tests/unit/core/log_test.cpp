// The log line's own keys (issue 30 §6): "ts" first, "level" the severity and "msg" the message,
// whatever a call site passes in its fields.
#include "core/log.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace breakerbox::log {
namespace {

TEST(log_line, own_keys_come_first_in_order)
{
    const auto line = format_line(level::warn, "2026-12-07T19:48:35.000Z", "endpoint ejected", {{"a", 1}});
    EXPECT_EQ(line, R"({"ts":"2026-12-07T19:48:35.000Z","level":"warn","msg":"endpoint ejected","a":1})"
                    "\n");
}

TEST(log_line, a_field_named_like_an_own_key_never_replaces_it)
{
    for (const char* key : {"ts", "level", "msg"}) {
        const auto line = format_line(level::warn, "T", "m", {{key, 7}});
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j["ts"], "T") << key;
        EXPECT_EQ(j["level"], "warn") << key;
        EXPECT_EQ(j["msg"], "m") << key;
        EXPECT_EQ(j[std::string("field.") + key], 7) << key;
        EXPECT_EQ(line.find(std::string("\"") + key + "\":7"), std::string::npos) << key;
    }
}

TEST(log_line, no_fields_and_invalid_utf8_still_make_one_json_line)
{
    const auto line = format_line(level::info, "T", "bad \xff byte", nullptr);
    ASSERT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.size(), 3u);
    EXPECT_EQ(j["level"], "info");
}

} // namespace
} // namespace breakerbox::log
