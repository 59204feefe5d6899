// Writes a whole buffer sequence to a stream: first one non-blocking attempt, which for a response of a
// few KiB usually hands everything to the kernel at once — no asynchronous operation, no timer — and
// only if the socket is full, the rest asynchronously under the stream's deadline (deadline_stream keeps
// its socket in non-blocking mode, so the first attempt never blocks the worker).
//
// The hot paths call the two halves themselves (try_write, then write_rest only when something is
// left): a coroutine layer costs a frame allocation and a resumption per call, and the synchronous
// attempt almost always finishes the job.
#pragma once
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"

#include <boost/beast/core/buffers_suffix.hpp>

#include <array>
#include <string>
#include <string_view>
#include <tuple>

namespace breakerbox {

// How far a write got.
struct write_progress {
    error_code ec;
    std::size_t written = 0;
    bool finished = false; // all written, or failed: nothing left to wait for
};

// One non-blocking attempt.
template <class Buffers>
write_progress try_write(deadline_stream& stream, const Buffers& buffers)
{
    write_progress p;
    p.written = stream.socket().write_some(buffers, p.ec);
    if (p.ec == asio::error::would_block || p.ec == asio::error::try_again)
        p.ec = {};
    p.finished = p.ec || p.written == asio::buffer_size(buffers);
    return p;
}

// The rest of a write that try_write left unfinished (or all of it, from p = {}). `timeout` > 0 sets the
// stream's deadline for it; 0 keeps the one already set. `Stream`: a deadline_stream, or a view with its
// io(), timed_out(), io_error() and expires_after() (tls::tls_io writes through TLS).
template <class Stream, class Buffers>
asio::awaitable<write_progress> write_rest(Stream& stream, const Buffers& buffers, write_progress p, nanos timeout)
{
    const std::size_t total = asio::buffer_size(buffers);
    beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(p.written);
    if (timeout > 0)
        stream.expires_after(as_duration(timeout));
    while (p.written < total) {
        if (stream.timed_out()) {
            p.ec = beast::error::timeout;
            break;
        }
        auto [aec, n] = co_await stream.io().async_write_some(rest, nothrow_awaitable);
        if (aec) {
            p.ec = stream.io_error(aec);
            break;
        }
        rest.consume(n);
        p.written += n;
    }
    p.finished = true;
    co_return p;
}

// Both halves, for the paths where one more frame does not matter.
template <class Buffers>
asio::awaitable<write_progress> write_all(deadline_stream& stream, const Buffers& buffers, nanos timeout = 0)
{
    auto p = try_write(stream, buffers);
    if (!p.finished)
        p = co_await write_rest(stream, buffers, p, timeout);
    co_return p;
}

// A serialised head and its body, to be sent in one system call. A body of up to 2 KiB is appended to
// `head` (whose capacity the caller reuses), so the kernel sees one plain send() instead of a two-part
// sendmsg() — cheaper for the small messages that dominate service-to-service traffic; a bigger body
// goes as the second part of a gather write rather than being copied. `head` and `body` must outlive it.
class head_and_body {
public:
    head_and_body(std::string& head, std::string_view body)
    {
        constexpr std::size_t copied_body_limit = 2048;
        if (body.size() <= copied_body_limit) {
            head.append(body);
            parts_ = {asio::buffer(head), asio::const_buffer{}};
        } else {
            parts_ = {asio::buffer(head), asio::buffer(body)};
        }
    }

    write_progress try_write(deadline_stream& stream) const
    {
        return parts_[1].size() == 0 ? breakerbox::try_write(stream, parts_[0]) : breakerbox::try_write(stream, parts_);
    }

    template <class Stream>
    asio::awaitable<write_progress> write_rest(Stream& stream, write_progress p, nanos timeout = 0) const
    {
        co_return co_await breakerbox::write_rest(stream, parts_, p, timeout);
    }

    asio::awaitable<write_progress> write_all(deadline_stream& stream, nanos timeout = 0) const
    {
        auto p = try_write(stream);
        if (!p.finished)
            p = co_await write_rest(stream, p, timeout);
        co_return p;
    }

private:
    std::array<asio::const_buffer, 2> parts_;
};

} // namespace breakerbox
