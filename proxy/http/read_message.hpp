// Reads one HTTP message from a deadline_stream into a Beast parser: what bhttp::async_read does,
// without its three layers of composed operations, through single-buffer reads (recv, not recvmsg).
// The stream's current deadline bounds the whole message.
#pragma once
#include "core/deadline_stream.hpp"
#include "http/parse_step.hpp"

#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>

namespace breakerbox::http {

// `Stream`: a deadline_stream, or anything with its io(), timed_out(), io_error() and mark_drained()
// (tls::tls_io reads through TLS). Completes when the parser is done; errors are Beast's (need_more never escapes), end_of_stream
// when the peer closed before sending anything, and beast::error::timeout past the deadline. `fence`: the parser's trailer_fence
// (http/message_rules.hpp), so that a chunked message's trailer section is dropped instead of joining the header; every parser on
// a path that reads bodies has one. `min_read`: each read asks for at least this much (Beast's own sizing starts at 512 bytes,
// which took nine recv calls for a 4 KiB response).
namespace detail {
// A complete message: when it ended with the data queued (`drained`), the socket is marked drained — the
// next one is not there yet. Not after an interim 1xx response, after which the final one (or the
// upstream's close, whose FIN may have come with the 1xx's edge) is expected at once
// (core/drained_hint.hpp). A function of its own, not code in the coroutine: GCC keeps every local of
// a coroutine in its frame, and read_message's must stay within Asio's recycling.
template <class Stream, bool IsRequest, class Body>
void finish_message(Stream& stream, boost::beast::http::parser<IsRequest, Body>& parser, bool drained)
{
    if constexpr (!IsRequest)
        drained = drained && parser.get().result_int() / 100 != 1;
    if (drained)
        stream.mark_drained();
}
} // namespace detail

//
// `stop_after_header` (optional, with its `context`): asked once the header is parsed; true stops there,
// leaving the body's bytes in `buffer` (a streamed answer's relay takes them: docs/streaming.md) — the
// call then completes with the header done and the message not. One read loop either way, so that the
// usual whole message costs one coroutine.
template <bool IsRequest, class Body>
using header_check = bool (*)(const boost::beast::http::parser<IsRequest, Body>& parser, const void* context);

template <class Stream, bool IsRequest, class Body>
asio::awaitable<error_code> read_message(Stream& stream, beast::flat_buffer& buffer,
                                         boost::beast::http::parser<IsRequest, Body>& parser, trailer_fence& fence,
                                         std::size_t min_read = 512, header_check<IsRequest, Body> stop_after_header = nullptr,
                                         const void* context = nullptr)
{
    namespace bhttp = boost::beast::http;
    parser.eager(stop_after_header == nullptr); // with a check, the first put() stops after the header
    bool last_read_short = false;
    for (;;) {
        const parse_step step = parse_buffered(parser, fence, buffer);
        if (stop_after_header && parser.is_header_done()) {
            if (step.next == parse_next::failed)
                co_return step.error; // the header's own verdict (e.g. a Content-Length above the body limit)
            if (!parser.is_done() && stop_after_header(parser, context))
                co_return error_code{};
            stop_after_header = nullptr;
            parser.eager(true);
            if (step.next != parse_next::done)
                continue; // the body that came with the header
        }
        if (step.next == parse_next::again)
            continue;
        if (step.next == parse_next::failed)
            co_return step.error;
        if (step.next == parse_next::done) {
            detail::finish_message(stream, parser, last_read_short && buffer.size() == 0);
            co_return error_code{};
        }
        const std::size_t room = std::min(std::max(beast::read_size(buffer, 65536), min_read), buffer.max_size() - buffer.size());
        if (room == 0)
            co_return bhttp::error::buffer_overflow;
        if (stream.timed_out())
            co_return beast::error::timeout;
        auto [aec, n] = co_await stream.io().async_read_some(buffer.prepare(room), nothrow_awaitable);
        const error_code ec = stream.io_error(aec);
        if (ec == asio::error::eof) {
            if (!parser.got_some())
                co_return bhttp::error::end_of_stream;
            error_code eof_ec;
            parser.put_eof(eof_ec); // a message delimited by the close is complete now
            co_return eof_ec;
        }
        if (ec)
            co_return ec;
        buffer.commit(n);
        last_read_short = n < room;
    }
}

} // namespace breakerbox::http
