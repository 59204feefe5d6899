// The client's request as it is sent upstream and the upstream's response as it is sent to the client:
// the forwarding rules of RFC 9110 §7.6 applied to whole messages. Pure functions; which Host and target
// a request gets is the caller's routing decision, passed in.
#pragma once
#include "config/config.hpp"
#include "http/header_rules.hpp"
#include "http/message.hpp"

#include <string_view>

namespace breakerbox::http {

// Rewrites `req` in place for the upstream: hop-by-hop fields stripped (RFC 9110 §7.6.1), Expect dropped
// (the body is already buffered: no 100-continue upstream), Via and X-Forwarded-* added as `fwd` says
// (`ctx`: the client's address and what it addressed), the target `origin_target` (origin-form, RFC 9112
// §3.2.1), HTTP/1.1, and the body re-framed with Content-Length. Host: `host` as the only Host field
// when not empty; otherwise the client's stays, and when none is left after the stripping (the client
// sent none, or named it in Connection), `host_if_missing` — an HTTP/1.1 request always carries one.
void rewrite_for_upstream(request& req, const config::forwarding_config& fwd, const forward_context& ctx,
                          std::string_view origin_target, std::string_view host, std::string_view host_if_missing);

// Rewrites `res` in place for the client: hop-by-hop fields stripped, the body re-framed (RFC 9110
// exceptions for HEAD, 1xx, 204 and 304: http/framing.hpp), Via appended when `via`.
void rewrite_for_client(response& res, bool head_request, bool via);

} // namespace breakerbox::http
