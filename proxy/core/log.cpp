#include "core/log.hpp"

#include "core/iso8601.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <unistd.h>

namespace breakerbox::log {
namespace {
std::atomic<int> g_level{static_cast<int>(level::info)};
constexpr int g_fd = 2; // stderr: a container runtime collects it

} // namespace

void set_level(level l) noexcept { g_level.store(static_cast<int>(l)); }
level current_level() noexcept { return static_cast<level>(g_level.load(std::memory_order_relaxed)); }

void write(level l, std::string_view msg, const nlohmann::json& fields)
{
    nlohmann::json line = nlohmann::json::object();
    line["ts"] = iso8601(std::chrono::system_clock::now());
    line["level"] = name_of(l);
    line["msg"] = msg;
    if (fields.is_object())
        for (auto it = fields.begin(); it != fields.end(); ++it)
            line[it.key()] = it.value();
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text.push_back('\n');
    // One write per line: lines from concurrent workers never interleave.
    const char* p = text.data();
    std::size_t left = text.size();
    int fd = g_fd;
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n <= 0)
            return;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

void write(level l, std::string_view msg) { write(l, msg, nlohmann::json::object()); }

} // namespace breakerbox::log
