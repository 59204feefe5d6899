// The Asio/Beast vocabulary used across the I/O code. Included only by files that do I/O.
#pragma once
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace breakerbox {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Completion token for coroutines that look at every error instead of catching exceptions.
inline constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

inline std::chrono::steady_clock::duration as_duration(std::int64_t ns) { return std::chrono::nanoseconds(ns); }
} // namespace breakerbox
