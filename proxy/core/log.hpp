// Structured logging: one JSON object per line on stderr (or a file), with levels.
// Shared, thread-safe: each line is formatted on the caller's thread and emitted with one write(2),
// so lines from different workers never interleave. Not for the hot path except the opt-in access log.
#pragma once
#include "core/enum_names.hpp"

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string_view>

namespace breakerbox::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };
inline constexpr enum_name<level> level_names[]{{level::debug, "debug"},
                                                {level::info, "info"},
                                                {level::warn, "warn"},
                                                {level::error, "error"}};
constexpr std::span<const enum_name<level>> names_of(level) noexcept { return level_names; }

void set_level(level l) noexcept;
level current_level() noexcept;

inline bool enabled(level l) noexcept { return l >= current_level(); }

// `fields` must be a JSON object (or null); "ts", "level" and "msg" are added.
void write(level l, std::string_view msg, const nlohmann::json& fields);

// One log line (with its newline): {"ts": `ts`, "level": …, "msg": `msg`, then `fields` in key order}.
// "ts", "level" and "msg" are the line's own keys, always first and never overwritten: a field of the
// same name is written as "field.<name>" (a severity filter on "level" must see the severity, and a log
// store must see one type per key). Pure, for tests.
std::string format_line(level l, std::string_view ts, std::string_view msg, const nlohmann::json& fields);
void write(level l, std::string_view msg);

inline void debug(std::string_view m, const nlohmann::json& f)
{
    if (enabled(level::debug))
        write(level::debug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f)
{
    if (enabled(level::info))
        write(level::info, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f)
{
    if (enabled(level::warn))
        write(level::warn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f)
{
    if (enabled(level::error))
        write(level::error, m, f);
}

} // namespace breakerbox::log
