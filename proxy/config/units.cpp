#include "config/units.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>

namespace breakerbox::config {
namespace {

bool parse_number(std::string_view digits, double& out)
{
    if (digits.empty())
        return false;
    bool dot = false;
    for (char c : digits) {
        if (c == '.') {
            if (dot)
                return false;
            dot = true;
        } else if (!std::isdigit(static_cast<unsigned char>(c))) {
            return false;
        }
    }
    out = std::strtod(std::string(digits).c_str(), nullptr);
    return true;
}

// Splits "250ms" into ("250", "ms").
std::pair<std::string_view, std::string_view> split_unit(std::string_view text)
{
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    std::string_view unit = text.substr(i);
    while (!unit.empty() && unit.front() == ' ')
        unit.remove_prefix(1);
    return {text.substr(0, i), unit};
}

} // namespace

std::optional<nanos> parse_duration(std::string_view text)
{
    if (text == "0")
        return nanos{0};
    auto [number, unit] = split_unit(text);
    double value = 0;
    if (!parse_number(number, value))
        return std::nullopt;
    double scale = 0;
    if (unit == "us")
        scale = 1e3;
    else if (unit == "ms")
        scale = 1e6;
    else if (unit == "s")
        scale = 1e9;
    else if (unit == "m")
        scale = 60e9;
    else if (unit == "h")
        scale = 3600e9;
    else
        return std::nullopt;
    double ns = value * scale;
    if (ns > 9.2e18)
        return std::nullopt;
    return static_cast<nanos>(ns);
}

std::optional<std::uint64_t> parse_size(std::string_view text)
{
    auto [number, unit] = split_unit(text);
    double value = 0;
    if (!parse_number(number, value))
        return std::nullopt;
    double scale = 0;
    if (unit.empty() || unit == "B")
        scale = 1;
    else if (unit == "KiB")
        scale = 1024.0;
    else if (unit == "MiB")
        scale = 1024.0 * 1024;
    else if (unit == "GiB")
        scale = 1024.0 * 1024 * 1024;
    else if (unit == "KB")
        scale = 1e3;
    else if (unit == "MB")
        scale = 1e6;
    else if (unit == "GB")
        scale = 1e9;
    else
        return std::nullopt;
    double bytes = value * scale;
    if (bytes > 1.8e19 || bytes != static_cast<double>(static_cast<std::uint64_t>(bytes)))
        return std::nullopt;
    return static_cast<std::uint64_t>(bytes);
}

std::optional<host_port> parse_host_port(std::string_view text)
{
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') { // [::1]:8080
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return std::nullopt;
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon)
            return std::nullopt;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (host.empty() || port.empty())
        return std::nullopt;
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || ptr != port.data() + port.size() || value > 65535)
        return std::nullopt;
    return host_port{std::string(host), static_cast<std::uint16_t>(value)};
}

env_lookup process_environment()
{
    return [](const std::string& name) -> std::optional<std::string> {
        const char* v = std::getenv(name.c_str());
        if (!v)
            return std::nullopt;
        return std::string(v);
    };
}

std::optional<std::string> substitute_env(std::string_view text, const env_lookup& env, std::string& error)
{
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        if (text.compare(i, 3, "$${") == 0) {
            out += "${";
            i += 3;
            continue;
        }
        if (text.compare(i, 2, "${") != 0) {
            out.push_back(text[i++]);
            continue;
        }
        auto close = text.find('}', i + 2);
        if (close == std::string_view::npos) {
            error = "unterminated ${ in \"" + std::string(text) + "\"";
            return std::nullopt;
        }
        std::string_view inner = text.substr(i + 2, close - i - 2);
        std::string_view name = inner;
        std::optional<std::string_view> fallback;
        if (auto sep = inner.find(":-"); sep != std::string_view::npos) {
            name = inner.substr(0, sep);
            fallback = inner.substr(sep + 2);
        }
        bool valid = !name.empty();
        for (char c : name)
            valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
        if (!valid) {
            error = "invalid variable name in ${" + std::string(inner) + "}";
            return std::nullopt;
        }
        auto value = env(std::string(name));
        if (value && !value->empty())
            out += *value;
        else if (fallback)
            out += *fallback;
        else if (value)
            out += *value;
        else {
            error = "environment variable " + std::string(name) + " is not set (use ${" + std::string(name) +
                    ":-default} for a default)";
            return std::nullopt;
        }
        i = close + 1;
    }
    return out;
}

} // namespace breakerbox::config
