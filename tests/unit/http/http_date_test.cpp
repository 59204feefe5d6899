#include "http/http_date.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;

namespace {
constexpr std::int64_t nov_6_1994_084937 = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT
constexpr std::int64_t dec_1_2026 = 1796083200;        // Tue, 01 Dec 2026 00:00:00 GMT
} // namespace

TEST(parse_http_date, reads_the_three_formats_of_rfc9110)
{
    EXPECT_EQ(http::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", dec_1_2026), nov_6_1994_084937);
    EXPECT_EQ(http::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", dec_1_2026), nov_6_1994_084937);
    EXPECT_EQ(http::parse_http_date("Sun Nov  6 08:49:37 1994", dec_1_2026), nov_6_1994_084937);
    EXPECT_EQ(http::parse_http_date("Tue, 01 Dec 2026 00:00:00 GMT", 0), dec_1_2026);
    EXPECT_EQ(http::parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT", 0), 1709208000);
}

TEST(parse_http_date, places_a_two_digit_year_at_most_50_years_ahead)
{
    // From 2026: "76" is 2076 (50 years ahead), "77" is 1977.
    EXPECT_EQ(http::parse_http_date("Wednesday, 01-Jan-76 00:00:00 GMT", dec_1_2026), 3345062400);
    EXPECT_EQ(http::parse_http_date("Saturday, 01-Jan-77 00:00:00 GMT", dec_1_2026), 220924800);
}

TEST(parse_http_date, refuses_what_is_not_one)
{
    for (const char* bad : {"", "-5", "0", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
                            "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 29 Feb 2023 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                            "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT x"})
        EXPECT_FALSE(http::parse_http_date(bad, dec_1_2026)) << bad;
}

TEST(retry_after_delay, seconds_dates_and_invalid_values)
{
    EXPECT_EQ(http::retry_after_delay("0", dec_1_2026), 0);
    EXPECT_EQ(http::retry_after_delay("3", dec_1_2026), seconds(3));
    EXPECT_EQ(http::retry_after_delay("Tue, 01 Dec 2026 00:00:02 GMT", dec_1_2026), seconds(2));
    EXPECT_EQ(http::retry_after_delay("Sun, 06 Nov 1994 08:49:37 GMT", dec_1_2026), 0); // the past means now
    EXPECT_EQ(http::retry_after_delay("Tue, 01 Dec 2026 00:00:00 GMT", dec_1_2026), 0);
    EXPECT_FALSE(http::retry_after_delay("-5", dec_1_2026));
    EXPECT_FALSE(http::retry_after_delay("1.5", dec_1_2026));
    EXPECT_FALSE(http::retry_after_delay("+3", dec_1_2026));
    EXPECT_FALSE(http::retry_after_delay("3 ", dec_1_2026));
    EXPECT_FALSE(http::retry_after_delay("soon", dec_1_2026));
    EXPECT_FALSE(http::retry_after_delay("", dec_1_2026));
    EXPECT_GT(*http::retry_after_delay("99999999999999999999999", dec_1_2026), seconds(3600));
}

TEST(retry_after_delay, a_date_far_in_the_future_does_not_overflow)
{
    const auto wait = http::retry_after_delay("Fri, 31 Dec 9999 23:59:59 GMT", dec_1_2026);
    ASSERT_TRUE(wait);
    EXPECT_GT(*wait, seconds(3600));
}
