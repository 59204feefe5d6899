// The message rules of streamed exchanges and upgrades (docs/streaming.md). Pure functions.
#pragma once
#include "http/message.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace breakerbox::http {

// Whether a response streams whatever its length: a streaming media type (text/event-stream,
// application/x-ndjson, multipart/x-mixed-replace, application/grpc and its +suffixes) or
// `X-Accel-Buffering: no` (nginx's field for the same request).
bool streams_response(const fields& res);

// The protocol a request asks to switch to (RFC 9110 §7.8: an `Upgrade` field and the `upgrade` token in
// `Connection`, HTTP/1.1 only) when `allowed` (lower-case protocol names, version suffix ignored) has
// the first one it offers: that protocol, the only one forwarded (so the upstream cannot switch to
// another). Empty otherwise (the request then goes on as a plain one, its Upgrade stripped as
// hop-by-hop).
std::string requested_upgrade(const request& req, const std::vector<std::string>& allowed);

// Whether a 101's `Upgrade` names the protocol that was asked for (`asked`: one protocol, as
// requested_upgrade returns it); names compared case-insensitively, a version only when both give one.
bool same_protocol(std::string_view switched_to, std::string_view asked);

// After the hop-by-hop fields are gone: `Connection: upgrade` and `Upgrade: <protocols>` again, for the
// next hop of an upgrade that is forwarded (the request) or accepted (the 101).
void restore_upgrade(fields& f, std::string_view protocols);

// A streamed response's head for the client after rewrite (hop-by-hop fields gone): Content-Length kept
// when the upstream's body has one; otherwise none (the session frames it: chunked for HTTP/1.1, by
// the close for HTTP/1.0).
void frame_streamed_response(response& res, bool known_length);

// Framing of a request whose body streams: `Content-Length: length`, or `Transfer-Encoding: chunked`.
void frame_streamed_request(request& req, bool chunked, std::uint64_t length);

} // namespace breakerbox::http
