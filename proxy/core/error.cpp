#include "core/error.hpp"

#include <string>

namespace breakerbox {
namespace {

struct reason_info {
    std::string_view token;
    unsigned status;
    std::string_view message;
};

constexpr reason_info info_of(proxy_error e) noexcept
{
    switch (e) {
    case proxy_error::ok: return {"ok", 200, "success"};
    case proxy_error::no_route: return {"no_route", 404, "no configured upstream matches this request"};
    case proxy_error::method_not_allowed: return {"method_not_allowed", 405, "method not supported by the proxy"};
    case proxy_error::bad_request: return {"bad_request", 400, "malformed request"};
    case proxy_error::header_too_large: return {"header_too_large", 431, "request header fields too large"};
    case proxy_error::uri_too_long: return {"uri_too_long", 414, "request target too long"};
    case proxy_error::body_too_large: return {"body_too_large", 413, "request body too large"};
    case proxy_error::request_timeout: return {"request_timeout", 408, "request not received in time"};
    case proxy_error::upstream_connect_failed: return {"upstream_connect_failed", 502, "could not connect to the upstream"};
    case proxy_error::upstream_connect_timeout: return {"upstream_connect_timeout", 504, "connecting to the upstream timed out"};
    case proxy_error::upstream_timeout: return {"upstream_timeout", 504, "the upstream did not answer in time"};
    case proxy_error::upstream_reset: return {"upstream_reset", 502, "the upstream closed the connection before a complete response"};
    case proxy_error::upstream_invalid_response: return {"upstream_invalid_response", 502, "the upstream sent an invalid response"};
    case proxy_error::upstream_response_too_large: return {"upstream_response_too_large", 502, "the upstream response exceeds max_response_body"};
    case proxy_error::upstream_failure_status: return {"upstream_failure_status", 502, "the upstream answered with a failure status"};
    case proxy_error::no_endpoint: return {"no_endpoint", 503, "the upstream has no resolved endpoint"};
    case proxy_error::circuit_open: return {"circuit_open", 503, "the circuit breaker is open"};
    case proxy_error::bulkhead_full: return {"bulkhead_full", 503, "the bulkhead is full"};
    case proxy_error::queue_timeout: return {"queue_timeout", 503, "timed out waiting in the bulkhead queue"};
    case proxy_error::too_many_connections: return {"too_many_connections", 503, "connection limit reached"};
    case proxy_error::not_implemented: return {"not_implemented", 501, "a transfer coding other than chunked is not implemented"};
    case proxy_error::client_closed: return {"client_closed", 499, "the client closed the connection before the answer"};
    }
    return {"unknown", 500, "unknown proxy error"};
}

class proxy_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "breakerbox.proxy"; }
    std::string message(int ev) const override
    {
        return std::string(info_of(static_cast<proxy_error>(ev)).message);
    }
};

} // namespace

const std::error_category& proxy_category() noexcept
{
    static const proxy_category_impl category;
    return category;
}

std::string_view token(proxy_error e) noexcept { return info_of(e).token; }
unsigned http_status(proxy_error e) noexcept { return info_of(e).status; }

} // namespace breakerbox
