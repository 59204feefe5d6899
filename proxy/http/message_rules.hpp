// The rules every message breakerbox parses must meet before it acts on one, in one place for every
// parser (client requests, upstream responses, admin requests, active probes):
//   - transfer codings (RFC 9112 §6.1): bodies are decoded and re-framed with Content-Length, so only
//     a single final "chunked" can be undone; anything else would be forwarded as if it were identity;
//   - trailer fields (RFC 9110 §6.5.1, RFC 9112 §7.1.2): Beast's parser appends the trailer section's
//     fields to the header section; they are dropped (never merged into the header: a trailer named
//     Content-Type, Set-Cookie or Content-Length would otherwise change the message's meaning);
//   - Host (RFC 9112 §3.2, §3.2.2): exactly one valid Host in HTTP/1.1.
#pragma once
#include "core/error.hpp"
#include "http/message.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace breakerbox::http {

enum class transfer_coding {
    none,          // no Transfer-Encoding: Content-Length or (responses) the connection's end frames the body
    chunked,       // exactly one coding, "chunked": the parser decodes it
    unimplemented, // chunked is final, but other codings (gzip, deflate, compress, unknown) come before it:
                   // a request gets 501 Not Implemented (RFC 9112 §6.1), a response is invalid
    faulty,        // chunked is not the final coding, is applied twice, the value is empty, or the message is
                   // HTTP/1.0 (RFC 9112 §6.1: "MUST treat the message as if the framing is faulty"): 400 and close
};

// What the Transfer-Encoding field lines of a parsed header say (all lines, as one list). `version`:
// 10 or 11.
transfer_coding transfer_coding_of(const fields& f, unsigned version);

// RFC 9112 §3.2 for a request's header: bad_request when it has more than one Host line, none in
// HTTP/1.1, or a value that is not uri-host [":" port]; when the target is in absolute-form with the
// http scheme, its authority must be valid too (§3.2.2: it replaces Host). ok otherwise.
proxy_error check_host(const request& req);

// What a request's header section alone refuses, for every listener: not_implemented (a transfer coding
// other than chunked), bad_request (faulty framing, or check_host); ok otherwise. Either way the
// connection closes after the answer: the framing or the target cannot be trusted.
proxy_error request_head_refusal(const request& req);

// Whether a response's body can be decoded: no transfer coding, or exactly "chunked". Anything else
// is an invalid response (its bytes would otherwise be forwarded as if they were identity).
bool response_coding_supported(const response& res);

// uri-host [ ":" port ] (RFC 3986 §3.2.2, §3.2.3) without userinfo: a reg-name of unreserved,
// pct-encoded and sub-delims characters, an IPv4 address (a reg-name by its characters), or an IP-literal
// in brackets. Empty is valid (RFC 9112 §3.2: a target URI without authority).
bool is_valid_authority(std::string_view authority) noexcept;

// Keeps the trailer section of a chunked message out of its header section, for one Beast parser read
// through http::read_message. Beast parses a trailer section like a header: every field is appended to
// the header, a trailer named Content-Length or Transfer-Encoding is a framing error (a valid answer
// would become a 502), Connection: close changes keep-alive. Beast calls the chunk-header callback for
// the last chunk only once the whole trailer section is buffered and before it parses it: the fence
// stops the parse there (a sentinel error), read_message has it blank the trailer section in the buffer
// (overwritten in place, same length, with one empty placeholder field: Beast remembers offsets into
// the buffered bytes, so they must not move), the parse resumes, and once the message is complete the
// placeholder, the last field, is erased. Trailers are dropped, not forwarded: breakerbox re-frames
// bodies with Content-Length, which has no place for them (RFC 9110 §6.5.1 lets a recipient discard
// them).
// Construct it after the parser and keep both in place while the parser is in use (the parser holds the
// fence by reference, the fence the parser's message). Cost: one call per chunk header, and at every
// chunked message's last chunk one more put() (a few bytes); the blanking only when there are trailers.
class trailer_fence {
public:
    template <bool IsRequest, class Body>
    explicit trailer_fence(bhttp::parser<IsRequest, Body>& parser) : fields_(parser.get())
    {
        parser.on_chunk_header(*this);
    }
    trailer_fence(const trailer_fence&) = delete;
    trailer_fence& operator=(const trailer_fence&) = delete;

    // Beast's chunk-header callback.
    void operator()(std::uint64_t size, std::string_view, boost::system::error_code& ec);
    // The parse stopped at the last chunk: blank() the trailer section, then put the buffer again.
    bool pending() const noexcept { return pending_; }
    // Blanks the trailer section in `buffer`, which must start where the parser stopped (at the last
    // chunk's line, or the CRLF that ends the chunk before it). False when the bytes are not a last
    // chunk with a complete trailer section (Beast checked both before the callback; never trusted).
    bool blank(boost::beast::flat_buffer& buffer) noexcept;
    // Once the message is complete, before it is released: erases the placeholder field (once; later
    // calls do nothing).
    void finish() noexcept;
    // Whether a non-empty trailer section was dropped.
    bool had_trailers() const noexcept { return had_trailers_; }

private:
    fields& fields_;
    bool pending_ = false;
    bool blanked_ = false;
    bool had_trailers_ = false;
    bool finished_ = false;
};

} // namespace breakerbox::http
