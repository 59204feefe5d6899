#include "core/iso8601.hpp"

#include <cstdio>
#include <ctime>

namespace breakerbox {

std::string iso8601(std::chrono::system_clock::time_point t)
{
    using namespace std::chrono;
    const auto secs = time_point_cast<seconds>(t);
    const auto ms = duration_cast<milliseconds>(t - secs).count();
    const std::time_t tt = system_clock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
    return buf;
}

} // namespace breakerbox
