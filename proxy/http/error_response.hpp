// Responses the proxy generates itself: a small JSON body {"error", "upstream", "detail"} and an
// X-Breakerbox-Error header carrying the reason token, so clients can tell them from upstream answers.
#pragma once
#include "core/error.hpp"
#include "http/message.hpp"

#include <string_view>

namespace breakerbox::http {

inline constexpr std::string_view error_header = "X-Breakerbox-Error";
inline constexpr std::string_view upstream_header = "X-Breakerbox-Upstream";

response make_error_response(proxy_error reason, std::string_view upstream, std::string_view detail, unsigned version = 11);

// 503 for a request the circuit breaker rejected: Retry-After (whole seconds, at least 1) is the time
// until the next request may pass, and the JSON body adds "state", "decided_by" (breaker, operator,
// cluster, cluster_operator: resilience/circuit_view.hpp) and "retry_after_seconds". When nothing is
// scheduled (`retry_after_seconds` 0: an operator holds the circuit open), no Retry-After is sent and
// retry_after_seconds is null.
response make_circuit_open_response(std::string_view upstream, std::string_view state, std::string_view decided_by,
                                    long retry_after_seconds, std::string_view detail);

} // namespace breakerbox::http
