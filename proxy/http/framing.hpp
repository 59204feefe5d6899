// Message framing after hop-by-hop fields are gone: bodies are buffered, so every message is
// re-framed with Content-Length (never chunked), with the RFC 9110 exceptions for responses.
#pragma once
#include "http/message.hpp"

namespace breakerbox::http {

// Requests: Content-Length when there is a body or the method expects one; none otherwise.
void frame_request(request& req);
// Responses: no Content-Length for 1xx/204; for HEAD and 304 the upstream's own Content-Length is
// kept (it describes the representation, not this message); otherwise the buffered body's length.
void frame_response(response& res, bool head_request);

} // namespace breakerbox::http
