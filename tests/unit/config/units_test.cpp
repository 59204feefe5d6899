#include "config/units.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
using namespace breakerbox::config;

TEST(parse_duration, accepts_every_unit)
{
    EXPECT_EQ(parse_duration("250ms"), millis(250));
    EXPECT_EQ(parse_duration("5s"), seconds(5));
    EXPECT_EQ(parse_duration("2m"), seconds(120));
    EXPECT_EQ(parse_duration("1h"), seconds(3600));
    EXPECT_EQ(parse_duration("500us"), 500'000);
    EXPECT_EQ(parse_duration("1.5s"), millis(1500));
    EXPECT_EQ(parse_duration("0"), 0);
}

TEST(parse_duration, rejects_missing_or_unknown_units)
{
    for (auto bad : {"5", "", "ms", "5 sec", "-1s", "1.2.3s", "5d", "s5"})
        EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
}

TEST(parse_size, accepts_binary_and_decimal_units)
{
    EXPECT_EQ(parse_size("512"), 512u);
    EXPECT_EQ(parse_size("64KiB"), 65536u);
    EXPECT_EQ(parse_size("1MiB"), 1048576u);
    EXPECT_EQ(parse_size("2GiB"), 2147483648u);
    EXPECT_EQ(parse_size("10KB"), 10000u);
    EXPECT_EQ(parse_size("3B"), 3u);
}

TEST(parse_size, rejects_garbage)
{
    for (auto bad : {"", "KiB", "1XB", "1.5", "-3", "1 0"})
        EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

TEST(parse_host_port, parses_names_ipv4_and_bracketed_ipv6)
{
    auto a = parse_host_port("payments.svc:8080");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "payments.svc");
    EXPECT_EQ(a->port, 8080);
    auto b = parse_host_port("[::1]:9000");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->host, "::1");
    EXPECT_EQ(b->port, 9000);
    for (auto bad : {"nohost", ":80", "host:", "host:99999", "host:8x", "::1:80", "[::1]80"})
        EXPECT_FALSE(parse_host_port(bad).has_value()) << bad;
}

TEST(substitute_env, replaces_set_and_defaulted_variables)
{
    env_lookup env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "PORT")
            return "9000";
        if (name == "EMPTY")
            return "";
        return std::nullopt;
    };
    std::string error;
    EXPECT_EQ(substitute_env("127.0.0.1:${PORT}", env, error), "127.0.0.1:9000");
    EXPECT_EQ(substitute_env("${MISSING:-fallback}", env, error), "fallback");
    EXPECT_EQ(substitute_env("${EMPTY:-used}", env, error), "used");
    EXPECT_EQ(substitute_env("${EMPTY}", env, error), "");
    EXPECT_EQ(substitute_env("cost $${NOT_A_VAR}", env, error), "cost ${NOT_A_VAR}");
}

TEST(substitute_env, reports_unset_and_malformed_variables)
{
    env_lookup env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    std::string error;
    EXPECT_FALSE(substitute_env("${MISSING}", env, error));
    EXPECT_NE(error.find("MISSING"), std::string::npos);
    EXPECT_FALSE(substitute_env("${UNTERMINATED", env, error));
    EXPECT_FALSE(substitute_env("${bad-name}", env, error));
}
