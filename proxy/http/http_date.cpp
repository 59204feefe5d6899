#include "http/http_date.hpp"

#include <array>
#include <algorithm>
#include <charconv>

namespace breakerbox::http {
namespace {

constexpr std::array<std::string_view, 12> month_names{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> day_names{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_day_names{"Monday", "Tuesday", "Wednesday", "Thursday",
                                                         "Friday", "Saturday", "Sunday"};

// A left-to-right reader over the value; every step fails (returns false) on anything unexpected.
class cursor {
public:
    explicit cursor(std::string_view s) : s_(s) {}
    bool literal(std::string_view text)
    {
        if (s_.substr(0, text.size()) != text)
            return false;
        s_.remove_prefix(text.size());
        return true;
    }
    // Exactly `width` digits (or, with `space_padded`, a space then width-1 digits, as asctime's day).
    bool digits(std::size_t width, int& out, bool space_padded = false)
    {
        if (space_padded && !s_.empty() && s_.front() == ' ') {
            s_.remove_prefix(1);
            --width;
        }
        if (s_.size() < width)
            return false;
        out = 0;
        for (std::size_t i = 0; i < width; ++i) {
            if (s_[i] < '0' || s_[i] > '9')
                return false;
            out = out * 10 + (s_[i] - '0');
        }
        s_.remove_prefix(width);
        return true;
    }
    template <std::size_t N>
    bool one_of(const std::array<std::string_view, N>& names, int* index = nullptr)
    {
        for (std::size_t i = 0; i < N; ++i)
            if (literal(names[i])) {
                if (index)
                    *index = static_cast<int>(i);
                return true;
            }
        return false;
    }
    bool time_of_day(int& h, int& m, int& sec)
    {
        return digits(2, h) && literal(":") && digits(2, m) && literal(":") && digits(2, sec);
    }
    bool at_end() const { return s_.empty(); }

private:
    std::string_view s_;
};

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int month0)
{
    constexpr std::array<int, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month0 == 1 && is_leap(y) ? 29 : days[static_cast<std::size_t>(month0)];
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::optional<std::int64_t> to_unix(int year, int month0, int day, int h, int m, int s)
{
    // Second 60: a leap second, which an HTTP-date may carry (RFC 9110 §5.6.7 allows 00-60).
    if (month0 < 0 || day < 1 || day > days_in_month(year, month0) || h > 23 || m > 59 || s > 60)
        return std::nullopt;
    return days_from_civil(year, static_cast<unsigned>(month0 + 1), static_cast<unsigned>(day)) * 86400 + h * 3600 + m * 60 + s;
}

int year_of(std::int64_t unix_seconds)
{
    // Civil year from days (Hinnant's civil_from_days, year part only).
    const std::int64_t z = unix_seconds / 86400 + 719468 - (unix_seconds % 86400 < 0 ? 1 : 0);
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned month = mp < 10 ? mp + 3 : mp - 9;
    return static_cast<int>(static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0));
}

std::optional<std::int64_t> imf_fixdate(std::string_view text)
{
    cursor c(text);
    int day, month0, year, h, m, s;
    if (c.one_of(day_names) && c.literal(", ") && c.digits(2, day) && c.literal(" ") && c.one_of(month_names, &month0) &&
        c.literal(" ") && c.digits(4, year) && c.literal(" ") && c.time_of_day(h, m, s) && c.literal(" GMT") && c.at_end())
        return to_unix(year, month0, day, h, m, s);
    return std::nullopt;
}

std::optional<std::int64_t> rfc850_date(std::string_view text, std::int64_t now_unix)
{
    cursor c(text);
    int day, month0, yy, h, m, s;
    if (!(c.one_of(long_day_names) && c.literal(", ") && c.digits(2, day) && c.literal("-") && c.one_of(month_names, &month0) &&
          c.literal("-") && c.digits(2, yy) && c.literal(" ") && c.time_of_day(h, m, s) && c.literal(" GMT") && c.at_end()))
        return std::nullopt;
    // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is the most recent past year
    // with those digits.
    const int this_year = year_of(now_unix);
    int year = this_year - this_year % 100 + yy;
    if (year > this_year + 50)
        year -= 100;
    return to_unix(year, month0, day, h, m, s);
}

std::optional<std::int64_t> asctime_date(std::string_view text)
{
    cursor c(text);
    int day, month0, year, h, m, s;
    if (c.one_of(day_names) && c.literal(" ") && c.one_of(month_names, &month0) && c.literal(" ") && c.digits(2, day, true) &&
        c.literal(" ") && c.time_of_day(h, m, s) && c.literal(" ") && c.digits(4, year) && c.at_end())
        return to_unix(year, month0, day, h, m, s);
    return std::nullopt;
}

} // namespace

std::optional<std::int64_t> parse_http_date(std::string_view text, std::int64_t now_unix)
{
    if (auto t = imf_fixdate(text))
        return t;
    if (auto t = rfc850_date(text, now_unix))
        return t;
    return asctime_date(text);
}

std::optional<nanos> retry_after_delay(std::string_view value, std::int64_t now_unix)
{
    if (value.empty())
        return std::nullopt;
    if (value.front() >= '0' && value.front() <= '9') { // delay-seconds = 1*DIGIT
        std::int64_t secs = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), secs);
        if (ptr != value.data() + value.size())
            return std::nullopt;
        if (ec == std::errc::result_out_of_range || secs > std::int64_t{1} << 32)
            return seconds(std::int64_t{1} << 32); // absurdly long: longer than any retry_after_max
        return seconds(secs);
    }
    auto date = parse_http_date(value, now_unix);
    if (!date)
        return std::nullopt;
    if (*date <= now_unix)
        return nanos{0};
    return seconds(std::min<std::int64_t>(*date - now_unix, std::int64_t{1} << 32)); // beyond 136 years: the same
}

} // namespace breakerbox::http
