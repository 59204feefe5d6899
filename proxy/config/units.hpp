// Parsing of the scalar forms the configuration accepts: durations ("250ms", "5s", "2m", "1h"),
// sizes ("512", "64KiB", "1MiB", "10KB"), host:port, and ${VAR} / ${VAR:-default} substitution.
// Pure functions: each returns std::nullopt (or false) with a message instead of throwing.
#pragma once
#include "config/config.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace breakerbox::config {

std::optional<nanos> parse_duration(std::string_view text);
std::optional<std::uint64_t> parse_size(std::string_view text);
std::optional<host_port> parse_host_port(std::string_view text);

// Looks a variable up; returns nullopt when unset. Injected so tests need not touch the environment.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;
env_lookup process_environment();

// Replaces ${VAR} and ${VAR:-default}; "$${" is a literal "${". On an unset variable without a
// default, returns nullopt and names it in `error`.
std::optional<std::string> substitute_env(std::string_view text, const env_lookup& env, std::string& error);

} // namespace breakerbox::config
