#include "resilience/fallback_response.hpp"

#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/serialize.hpp"

#include <boost/beast/core/string.hpp>

#include <charconv>

namespace breakerbox::resilience {
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

std::optional<prerendered_answer> prerender_static_fallback(const config::fallback_config& fb, std::string_view upstream,
                                                            config::fallback_trigger trigger)
{
    constexpr std::string_view per_answer = "{{retry_after}}";
    if (fb.body.find(per_answer) != std::string::npos)
        return std::nullopt;
    for (const auto& [name, value] : fb.headers)
        if (value.find(per_answer) != std::string::npos || boost::beast::iequals(name, "connection"))
            return std::nullopt;
    const std::string_view reason = name_of(trigger);
    auto res = render_static_fallback(fb, {upstream, 0, reason});
    mark_fallback(res, name_of(config::fallback_kind::static_response), reason);
    std::string head;
    http::serialize_head(res, head); // version 1.1, ends with the empty line
    const auto line_end = head.find("\r\n") + 2;
    prerendered_answer p;
    p.status = res.result_int();
    p.status_line = head.substr(0, line_end);
    p.fields = head.substr(line_end, head.size() - line_end - 2);
    p.body = std::move(res.body());
    p.add_retry_after = trigger == config::fallback_trigger::circuit_open && !http::has_field(res, {bhttp::field::retry_after});
    return p;
}

void prerendered_answer::write_head(std::string& out, unsigned version, bool keep_alive, long retry_after_seconds) const
{
    out.assign(status_line);
    if (version == 10)
        out[7] = '0'; // "HTTP/1.1" → "HTTP/1.0"
    out.append(fields);
    if (add_retry_after && retry_after_seconds > 0) {
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, retry_after_seconds).ptr;
        out.append("Retry-After: ").append(digits, end).append("\r\n");
    }
    if (const auto token = http::connection_token(version, keep_alive); !token.empty())
        out.append("Connection: ").append(token).append("\r\n");
    out.append("\r\n");
}

} // namespace breakerbox::resilience
