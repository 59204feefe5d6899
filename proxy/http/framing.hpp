// Message framing after hop-by-hop fields are gone: a buffered message is re-framed with Content-Length
// (never chunked), with the RFC 9110 exceptions for responses. (Streamed messages: http/streaming_rules.)
#pragma once
#include "core/asio.hpp"
#include "http/message.hpp"

#include <array>

#include <string_view>

namespace breakerbox::http {

// Content-Length: `size`, as the only such field (one already right is left alone).
void set_content_length(fields& f, std::size_t size);
// Requests: Content-Length when there is a body or the method expects one; none otherwise.
void frame_request(request& req);
// Responses: no Content-Length for 1xx/204; for HEAD and 304 the upstream's own Content-Length is
// kept (it describes the representation, not this message); otherwise the buffered body's length.
void frame_response(response& res, bool head_request);
// What message::keep_alive(bool) does, without its two lookups when the response has no Connection
// field (the usual case: the upstream's was stripped as hop-by-hop): HTTP/1.1 needs "close" only to
// close, HTTP/1.0 "keep-alive" only to stay open.
void set_keep_alive(response& res, bool keep_alive);
// The Connection value a response without one needs for `keep_alive` in HTTP/`version` (10 or 11):
// "close", "keep-alive", or empty when the version's default already says it.
std::string_view connection_token(unsigned version, bool keep_alive) noexcept;

// One chunk of a chunked body (RFC 9112 §7.1) as three buffers to write at once: the size line (hex,
// CRLF), the data, CRLF. An empty piece is the last chunk without trailers ("0\r\n\r\n"). The
// size line lives in the frame: keep it until the write completed. The one place both streamed
// directions (the relay to the client, an upload to the upstream) frame chunks.
class chunk_frame {
public:
    std::array<asio::const_buffer, 3> frame(std::string_view piece) noexcept;

private:
    char size_line_[20]{};
};

} // namespace breakerbox::http
