// Writes a whole buffer sequence to a stream: first one non-blocking attempt, which for a response of a
// few KiB usually hands everything to the kernel at once — no asynchronous operation, no timer — and
// only if the socket is full, the rest asynchronously under a deadline. The socket must be in
// non-blocking mode (`socket.non_blocking(true)`), or the first attempt could block the worker.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>

#include <tuple>

namespace breakerbox {

// `timeout` > 0 arms the stream's deadline for the asynchronous remainder; 0 keeps the one already set.
template <class Buffers>
asio::awaitable<std::tuple<error_code, std::size_t>> write_all(beast::tcp_stream& stream, const Buffers& buffers, nanos timeout = 0)
{
    error_code ec;
    const std::size_t total = asio::buffer_size(buffers);
    const std::size_t first = stream.socket().write_some(buffers, ec);
    if (!ec && first == total)
        co_return std::tuple<error_code, std::size_t>{ec, first};
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
        co_return std::tuple<error_code, std::size_t>{ec, first};
    beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(first);
    if (timeout > 0)
        stream.expires_after(as_duration(timeout));
    auto [wec, more] = co_await asio::async_write(stream, rest, nothrow_awaitable);
    co_return std::tuple<error_code, std::size_t>{wec, first + more};
}

} // namespace breakerbox
