// One step of parsing a message from buffered bytes — the step every body reader drives (read_message,
// the session's body prefix and streamed upload, the relay of a chunked answer), so that the framing
// rules live in one place: put what is buffered into the parser, blank a trailer section the
// trailer_fence stopped at (http/message_rules.hpp), finish the fence when the message is complete,
// and bound what may wait unparsed after the header (a chunk line or a trailer section). A plain
// function: the readers' coroutines keep only the waits (GCC keeps a coroutine's locals in its frame).
#pragma once
#include "core/asio.hpp"
#include "http/message_rules.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace breakerbox::http {

// The longest chunk line or trailer section a reader waits for (bytes).
inline constexpr std::size_t max_unparsed_after_header = 64 * 1024;

// What the reader does next.
enum class parse_next : std::uint8_t {
    again, // progress (bytes parsed, or a trailer section blanked): parse what is left before reading
    done,  // the message is complete (its fence finished)
    read,  // the buffer holds nothing the parser can take yet: read more
    failed // `error` says why: Beast's verdict, bad_chunk (a trailer section that is not one), or
           // header_limit (more than max_unparsed_after_header waiting after the header)
};

struct parse_step {
    parse_next next = parse_next::read;
    error_code error;
};

template <bool IsRequest, class Body>
parse_step parse_buffered(boost::beast::http::parser<IsRequest, Body>& parser, trailer_fence& fence,
                          boost::beast::flat_buffer& buffer)
{
    namespace bhttp = boost::beast::http;
    if (parser.is_done()) // (Beast asserts a done parser is never put to: the next message waits in the buffer)
        return {parse_next::done, {}};
    if (buffer.size() != 0) {
        error_code ec;
        const std::size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (fence.pending()) // stopped at the last chunk, its trailer section buffered: blank it, put again
            return fence.blank(buffer) ? parse_step{parse_next::again, {}}
                                       : parse_step{parse_next::failed, bhttp::error::bad_chunk};
        if (parser.is_done()) {
            fence.finish();
            return {parse_next::done, {}};
        }
        if (ec && ec != bhttp::error::need_more)
            return {parse_next::failed, ec};
        if (!ec && used != 0)
            return {parse_next::again, {}};
    }
    // After the header, body bytes are taken out of the buffer as they arrive: what stays is a chunk line
    // or a trailer section, which Beast waits for whole. Bounded, so a peer cannot grow it for as long as
    // a deadline lasts. (Not while the parser stops after the header on purpose — not eager —: the
    // body's bytes wait in the buffer then.)
    if (parser.is_header_done() && parser.eager() && buffer.size() > max_unparsed_after_header)
        return {parse_next::failed, bhttp::error::header_limit};
    return {parse_next::read, {}};
}

} // namespace breakerbox::http
