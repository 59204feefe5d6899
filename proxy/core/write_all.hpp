// Writes a whole buffer sequence to a stream: first one non-blocking attempt, which for a response of a
// few KiB usually hands everything to the kernel at once — no asynchronous operation, no timer — and
// only if the socket is full, the rest asynchronously under the stream's deadline (deadline_stream keeps
// its socket in non-blocking mode, so the first attempt never blocks the worker).
#pragma once
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"

#include <boost/beast/core/buffers_suffix.hpp>

#include <array>
#include <string>
#include <string_view>
#include <tuple>

namespace breakerbox {

// `timeout` > 0 sets the stream's deadline for the asynchronous remainder; 0 keeps the one already set.
template <class Buffers>
asio::awaitable<deadline_stream::io_result> write_all(deadline_stream& stream, const Buffers& buffers, nanos timeout = 0)
{
    error_code ec;
    const std::size_t total = asio::buffer_size(buffers);
    std::size_t written = stream.socket().write_some(buffers, ec);
    if (!ec && written == total)
        co_return deadline_stream::io_result{ec, written};
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
        co_return deadline_stream::io_result{ec, written};
    beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(written);
    if (timeout > 0)
        stream.expires_after(as_duration(timeout));
    while (written < total) {
        auto [wec, n] = co_await stream.write_some(rest);
        if (wec)
            co_return deadline_stream::io_result{wec, written};
        rest.consume(n);
        written += n;
    }
    co_return deadline_stream::io_result{error_code{}, written};
}

// A serialised head and its body in one system call. A body of up to 2 KiB is appended to `head`
// (whose capacity the caller reuses), so the kernel sees one plain send() instead of a two-part
// sendmsg() — cheaper for the small messages that dominate service-to-service traffic; a bigger body
// goes as the second part of a gather write rather than being copied.
inline asio::awaitable<deadline_stream::io_result> write_head_and_body(deadline_stream& stream, std::string& head,
                                                                       std::string_view body, nanos timeout = 0)
{
    constexpr std::size_t copied_body_limit = 2048;
    if (body.size() <= copied_body_limit) {
        head.append(body);
        co_return co_await write_all(stream, asio::const_buffer(head.data(), head.size()), timeout);
    }
    const std::array<asio::const_buffer, 2> parts{asio::buffer(head), asio::buffer(body)};
    co_return co_await write_all(stream, parts, timeout);
}

} // namespace breakerbox
