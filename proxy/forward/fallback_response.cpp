#include "forward/fallback_response.hpp"

#include "http/error_response.hpp"

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;

std::string substitute(std::string_view text, const fallback_vars& vars)
{
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        if (text.compare(i, 2, "{{") == 0) {
            auto close = text.find("}}", i + 2);
            if (close != std::string_view::npos) {
                std::string_view name = text.substr(i + 2, close - i - 2);
                if (name == "upstream") {
                    out.append(vars.upstream);
                    i = close + 2;
                    continue;
                }
                if (name == "retry_after") {
                    out.append(std::to_string(vars.retry_after_seconds));
                    i = close + 2;
                    continue;
                }
                if (name == "reason") {
                    out.append(vars.reason);
                    i = close + 2;
                    continue;
                }
            }
        }
        out.push_back(text[i++]);
    }
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
    if (vars.retry_after_seconds > 0 && !res.count(bhttp::field::retry_after))
        res.insert(bhttp::field::retry_after, std::to_string(vars.retry_after_seconds));
    res.body() = substitute(fb.body, vars);
    res.content_length(res.body().size()); // set, not insert: the configured headers may name it too
    return res;
}

http::response render_stale_fallback(const resilience::cached_response& cached, nanos now, bool head_request)
{
    http::response res = cached.response;
    res.set(bhttp::field::age, std::to_string(std::max<nanos>(0, now - cached.stored_at) / seconds(1)));
    if (head_request)
        res.body().clear(); // Content-Length still describes the GET representation
    return res;
}

void mark_fallback(http::response& res, std::string_view kind, std::string_view reason)
{
    res.set(fallback_header, kind);
    res.set(fallback_reason_header, reason);
}

} // namespace breakerbox::forward
