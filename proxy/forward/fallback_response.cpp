#include "forward/fallback_response.hpp"

#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;

// Copies the text between placeholders in pieces (this runs for every answer a static fallback gives).
std::string substitute(std::string_view text, const fallback_vars& vars)
{
    std::string out;
    out.reserve(text.size() + 16);
    std::size_t i = 0;
    for (std::size_t open = text.find("{{"); open != std::string_view::npos; open = text.find("{{", i)) {
        const auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos)
            break;
        const std::string_view name = text.substr(open + 2, close - open - 2);
        out.append(text.substr(i, open - i));
        if (name == "upstream")
            out.append(vars.upstream);
        else if (name == "retry_after")
            out.append(std::to_string(vars.retry_after_seconds));
        else if (name == "reason")
            out.append(vars.reason);
        else { // not ours: kept as written, and scanning goes on right after its "{{"
            out.append("{{");
            i = open + 2;
            continue;
        }
        i = close + 2;
    }
    out.append(text.substr(i));
    return out;
}

std::string header_safe(std::string value)
{
    std::erase_if(value, [](char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f; });
    return value;
}

} // namespace

std::string_view trigger_name(config::fallback_trigger t) noexcept
{
    switch (t) {
    case config::fallback_trigger::circuit_open: return "circuit_open";
    case config::fallback_trigger::bulkhead_full: return "bulkhead_full";
    case config::fallback_trigger::upstream_error: return "upstream_error";
    case config::fallback_trigger::timeout: return "timeout";
    }
    return "unknown";
}

http::response render_static_fallback(const config::fallback_config& fb, const fallback_vars& vars)
{
    http::response res{static_cast<bhttp::status>(fb.status), 11};
    res.insert(bhttp::field::server, "breakerbox"); // a fresh message: insert, no lookup first
    for (const auto& [name, value] : fb.headers)
        res.set(name, header_safe(substitute(value, vars)));
    if (vars.retry_after_seconds > 0 && !http::has_field(res, {bhttp::field::retry_after}))
        res.insert(bhttp::field::retry_after, std::to_string(vars.retry_after_seconds));
    res.body() = substitute(fb.body, vars);
    // Framed like an upstream's answer: Content-Length set (not inserted: the configured headers may
    // name it too), and no body at all for 204 and 304, whatever the configuration says.
    http::frame_response(res, false);
    return res;
}

http::response render_stale_fallback(const resilience::cached_response& cached, nanos now)
{
    http::response res = cached.response;
    res.set(bhttp::field::age, std::to_string(std::max<nanos>(0, now - cached.stored_at) / seconds(1)));
    return res;
}

void mark_fallback(http::response& res, std::string_view kind, std::string_view reason)
{
    static const auto fallback_field = http::field_name::of(fallback_header);
    static const auto reason_field = http::field_name::of(fallback_reason_header);
    http::set_field(res, fallback_field, kind);
    http::set_field(res, reason_field, reason);
}

} // namespace breakerbox::forward
