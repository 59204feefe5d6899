// UTC timestamps as ISO 8601 with milliseconds ("2026-11-24T10:00:05.123Z"), for logs and the admin API.
#pragma once
#include <chrono>
#include <string>

namespace breakerbox {

std::string iso8601(std::chrono::system_clock::time_point t);

} // namespace breakerbox
