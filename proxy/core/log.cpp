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

bool reserved_key(std::string_view key) noexcept { return key == "ts" || key == "level" || key == "msg"; }

std::string format_line(level l, std::string_view ts, std::string_view msg, const nlohmann::json& fields)
{
    constexpr auto replace = nlohmann::json::error_handler_t::replace;
    std::string text;
    text.reserve(96 + msg.size());
    text.append("{\"ts\":").append(nlohmann::json(ts).dump(-1, ' ', false, replace));
    text.append(",\"level\":\"").append(name_of(l)).append("\"");
    text.append(",\"msg\":").append(nlohmann::json(msg).dump(-1, ' ', false, replace));
    if (fields.is_object()) {
        for (auto it = fields.begin(); it != fields.end(); ++it) {
            // A call site's field never replaces the line's own: it is kept under "field.<key>".
            const std::string key = reserved_key(it.key()) ? "field." + it.key() : it.key();
            if (fields.contains(key) && key != it.key())
                continue; // both "level" and "field.level" given: the explicit one wins
            text.append(",").append(nlohmann::json(key).dump()).append(":").append(it.value().dump(-1, ' ', false, replace));
        }
    }
    text.append("}\n");
    return text;
}

void write(level l, std::string_view msg, const nlohmann::json& fields)
{
    const std::string text = format_line(l, iso8601(std::chrono::system_clock::now()), msg, fields);
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
