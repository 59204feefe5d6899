// Building the responses that fallbacks serve. Every one carries X-Breakerbox-Fallback (which
// fallback) and X-Breakerbox-Fallback-Reason (why: circuit_open, bulkhead_full, upstream_error,
// timeout), so a client or an operator can always tell a substitute from the real answer.
#pragma once
#include "config/config.hpp"
#include "http/message.hpp"
#include "resilience/stale_cache.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace breakerbox::resilience {

inline constexpr std::string_view fallback_header = "X-Breakerbox-Fallback";
inline constexpr std::string_view fallback_reason_header = "X-Breakerbox-Fallback-Reason";

struct fallback_vars {
    std::string_view upstream;
    long retry_after_seconds; // 0 when not applicable
    std::string_view reason;  // trigger name
};

// {{upstream}}, {{retry_after}} and {{reason}} are replaced in the body and in header values. The
// values come from validated configuration and numbers, and header values are additionally stripped
// of control characters, so a substitution can never start a new header line.
http::response render_static_fallback(const config::fallback_config& fb, const fallback_vars& vars);

// The cached answer with Age set to how long it has been stored. (For a HEAD request the session sends
// it without its body, as every answer to a HEAD.)
http::response render_stale_fallback(const resilience::cached_response& cached, nanos now);

void mark_fallback(http::response& res, std::string_view kind, std::string_view reason);

// A static fallback answer rendered once per configuration and trigger: the head (status line and
// fields, without the Retry-After and Connection fields, which vary per answer) and the body. Serving
// it is a few appends instead of building a message field by field: the open-circuit answer is the
// breaker's fast path. Immutable, shared by all workers.
struct prerendered_answer {
    unsigned status = 0;
    std::string status_line; // "HTTP/1.1 503 Service Unavailable\r\n"
    std::string fields;      // "Server: breakerbox\r\n...X-Breakerbox-Fallback-Reason: circuit_open\r\n"
    std::string body;
    bool add_retry_after = false; // circuit_open, and the configuration names no Retry-After

    // The whole head for this answer into `out` (its capacity reused): the HTTP version of the request,
    // Connection as set_keep_alive would set it, Retry-After when `retry_after_seconds` > 0.
    void write_head(std::string& out, unsigned version, bool keep_alive, long retry_after_seconds) const;
};

// nullopt when the answer cannot be fixed in advance: {{retry_after}} in the body or a header value,
// or a configured Connection field (then render_static_fallback serves it, per answer).
std::optional<prerendered_answer> prerender_static_fallback(const config::fallback_config& fb, std::string_view upstream,
                                                            config::fallback_trigger trigger);

} // namespace breakerbox::resilience
