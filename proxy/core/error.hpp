// Why the proxy, rather than the upstream, produced a response. One value per documented reason; each
// maps to an HTTP status and a stable token that appears in the JSON body and in the
// `X-Breakerbox-Error` response header, so a client can tell a proxy error from an upstream one.
#pragma once
#include <string_view>
#include <system_error>

namespace breakerbox {

// Every reason, once: its name (also its stable token), the HTTP status the proxy answers with, and the
// message of its error_code. The enum and the lookups are generated from this list, so they cannot
// drift apart. `ok` stays first (value 0); `client_closed` stays last (499 is logged only, never sent).
#define BREAKERBOX_PROXY_ERRORS(X)                                                                                              \
    X(ok, 200, "success")                                                                                                       \
    X(no_route, 404, "no configured upstream matches this request") /* never an open proxy */                                   \
    X(method_not_allowed, 405, "method not supported by the proxy") /* CONNECT */                                               \
    X(bad_request, 400, "malformed request")                        /* malformed or ambiguous framing, Host (RFC 9112 §3.2) */ \
    X(header_too_large, 431, "request header fields too large")                                                                 \
    X(uri_too_long, 414, "request target too long")                                                                             \
    X(body_too_large, 413, "request body too large")                                                                            \
    X(request_timeout, 408, "request not received in time") /* the client was too slow sending its request */                   \
    X(upstream_connect_failed, 502, "could not connect to the upstream")                                                        \
    X(upstream_connect_timeout, 504, "connecting to the upstream timed out")                                                    \
    X(upstream_tls_handshake_failed, 502, "the TLS handshake with the upstream failed")  /* alert, protocol, ALPN */            \
    X(upstream_tls_verify_failed, 502, "the upstream's certificate failed verification") /* chain or name */                    \
    X(upstream_tls_reset, 502, "the upstream closed the connection during the TLS handshake")                                   \
    X(upstream_timeout, 504, "the upstream did not answer in time")                                                             \
    X(upstream_reset, 502, "the upstream closed the connection before a complete response")                                     \
    X(upstream_invalid_response, 502, "the upstream sent an invalid response")                                                  \
    X(upstream_response_too_large, 502, "the upstream response exceeds max_response_body")                                      \
    X(upstream_failure_status, 502, "the upstream answered with a failure status") /* a fallback replaced it */                 \
    X(no_endpoint, 503, "the upstream has no resolved endpoint")                                                                \
    X(no_healthy_endpoint, 503, "every endpoint is ejected by outlier detection")                                               \
    X(circuit_open, 503, "the circuit breaker is open")                                                                         \
    X(bulkhead_full, 503, "the bulkhead is full")                                                                               \
    X(queue_timeout, 503, "timed out waiting in the bulkhead queue")                                                            \
    X(connection_limit, 503, "every endpoint is at its connection limit") /* pool.max_connections_per_endpoint */               \
    X(stream_limit, 503, "the upstream's streaming.max_streams streams are in use")                                             \
    X(tunnel_limit, 503, "the upstream's streaming.max_tunnels tunnels are in use")                                             \
    X(upgrade_refused, 503, "no new upgraded connections while draining")                                                       \
    X(too_many_connections, 503, "connection limit reached")                                                                    \
    X(not_implemented, 501, "a transfer coding other than chunked is not implemented") /* RFC 9112 §6.1 */                     \
    X(client_closed, 499, "the client closed the connection before the answer")

#define BREAKERBOX_PROXY_ERROR_ENUM(name, status, message) name,
enum class proxy_error { BREAKERBOX_PROXY_ERRORS(BREAKERBOX_PROXY_ERROR_ENUM) };
#undef BREAKERBOX_PROXY_ERROR_ENUM

const std::error_category& proxy_category() noexcept;

inline std::error_code make_error_code(proxy_error e) noexcept { return {static_cast<int>(e), proxy_category()}; }

// Stable snake_case token, e.g. "upstream_timeout".
std::string_view token(proxy_error e) noexcept;
// The HTTP status the proxy answers with for this reason.
unsigned http_status(proxy_error e) noexcept;

} // namespace breakerbox

template <>
struct std::is_error_code_enum<breakerbox::proxy_error> : std::true_type {
};
