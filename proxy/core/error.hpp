// Why the proxy, rather than the upstream, produced a response. One value per documented reason; each
// maps to an HTTP status and a stable token that appears in the JSON body and in the
// `X-Breakerbox-Error` response header, so a client can tell a proxy error from an upstream one.
#pragma once
#include <string_view>
#include <system_error>

namespace breakerbox {

enum class proxy_error {
    ok = 0,
    no_route = 1,                  // 404: no configured upstream matches (never an open proxy)
    method_not_allowed,            // 405: CONNECT and friends are refused
    bad_request,                   // 400: malformed or ambiguous request framing
    header_too_large,              // 431
    uri_too_long,                  // 414
    body_too_large,                // 413
    request_timeout,               // 408: the client was too slow sending its request
    upstream_connect_failed,       // 502
    upstream_connect_timeout,      // 504
    upstream_timeout,              // 504
    upstream_reset,                // 502: the connection broke before a complete response
    upstream_invalid_response,     // 502
    upstream_response_too_large,   // 502: above max_response_body (bodies are buffered)
    upstream_failure_status,       // the upstream answered with a status classified as a failure (a fallback replaced it)
    no_endpoint,                   // 503: the upstream has no resolved endpoint
    circuit_open,                  // 503
    bulkhead_full,                 // 503
    queue_timeout,                 // 503
    too_many_connections,          // 503
    not_implemented,               // 501: a transfer coding other than chunked (RFC 9112 §6.1)
    client_closed,                 // 499 (logged only): the client went away before its answer
};

const std::error_category& proxy_category() noexcept;

inline std::error_code make_error_code(proxy_error e) noexcept
{
    return {static_cast<int>(e), proxy_category()};
}

// Stable snake_case token, e.g. "upstream_timeout".
std::string_view token(proxy_error e) noexcept;
// The HTTP status the proxy answers with for this reason.
unsigned http_status(proxy_error e) noexcept;

} // namespace breakerbox

template <>
struct std::is_error_code_enum<breakerbox::proxy_error> : std::true_type {};
