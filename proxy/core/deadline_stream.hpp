// A TCP socket with one deadline for whatever operation is pending on it, enforced by a single timer
// that moves only when it has to.
//
// Why not beast::tcp_stream: it arms and cancels a timer around every read and write — a heap insert,
// a heap removal and the dispatch of the cancelled handler — which cost about 4% of the CPU per proxied
// request in the profile. Here setting a deadline is a store. The timer is armed when no expiry is
// pending; when it fires before the deadline (the deadline was pushed back meanwhile, the common case
// on a keep-alive connection) it is re-armed for the remainder; it is re-armed at once only when a
// deadline moves *earlier* than the pending expiry.
//
// On expiry the pending operations are cancelled — not the socket closed — and complete with
// beast::error::timeout, so the owner can still answer (a 408 to a slow client). An operation started
// after the deadline passed fails with timeout at once. Setting a new deadline clears the expiry.
// The socket is kept in non-blocking mode (once open): a synchronous write_some never blocks the worker.
//
// Worker-owned: used only from the thread that runs its executor. The timer's state lives in a small
// shared block so that a timer completion already queued when the stream is destroyed touches nothing.
#pragma once
#include "core/asio.hpp"

#include <boost/beast/core/error.hpp>

#include <chrono>
#include <memory>
#include <tuple>

namespace breakerbox {

class deadline_stream {
public:
    using clock = std::chrono::steady_clock;
    using io_result = std::tuple<error_code, std::size_t>;

    explicit deadline_stream(tcp::socket socket);
    explicit deadline_stream(const asio::any_io_executor& executor);
    ~deadline_stream();
    deadline_stream(const deadline_stream&) = delete;
    deadline_stream& operator=(const deadline_stream&) = delete;

    tcp::socket& socket() noexcept { return socket_; }
    // What reads and writes await (the socket itself; tls::tls_io's is the TLS stream over it).
    tcp::socket& io() noexcept { return socket_; }

    void expires_at(clock::time_point deadline);
    void expires_after(clock::duration timeout) { expires_at(clock::now() + timeout); }
    void expires_never() { expires_at(clock::time_point::max()); }
    // True once the current deadline has passed (until a new one is set).
    bool timed_out() const noexcept { return timer_->expired; }

    // Ends the pending operations from outside (the deadline's expiry does the same): they complete as
    // aborted. With shut_down_on_abort — for a layer that starts socket operations of its own, such as
    // TLS, whose engine may start the next read after the cancel was issued — the socket is also shut
    // down, so that no later operation can wait either. Such a stream is not answered on afterwards.
    void abort_io() noexcept { abort(*timer_); }
    void shut_down_on_abort() noexcept { timer_->shut_down_on_abort = true; }

    // After a read that completed a message with fewer bytes than it asked for: the next read waits for
    // epoll instead of first failing a recv (core/drained_hint.hpp says when this is safe).
    void mark_drained() noexcept;

    asio::awaitable<error_code> connect(const tcp::endpoint& endpoint);
    asio::awaitable<io_result> read_some(asio::mutable_buffer buffer);

    // For the per-request paths, which await the socket directly (a coroutine layer of ours costs a
    // frame allocation and a resumption per call): what read_some does, in the caller —
    //   if (s.timed_out()) → timeout;  auto [ec, n] = co_await s.socket().async_read_some(b, nothrow_awaitable);
    //   ec = s.io_error(ec);
    error_code io_error(const error_code& ec) const { return as_timeout(ec); }

private:
    struct timer_state {
        explicit timer_state(const asio::any_io_executor& ex, tcp::socket* s) : timer(ex), socket(s) { }
        asio::steady_timer timer;
        tcp::socket* socket; // null once the stream is gone
        clock::time_point deadline = clock::time_point::max();
        clock::time_point armed_for = clock::time_point::max(); // the pending expiry; max: none
        unsigned generation = 0;                                // tells a superseded expiry from the current one
        bool expired = false;
        bool shut_down_on_abort = false; // see abort_io()
    };
    static void arm(const std::shared_ptr<timer_state>& state, clock::time_point when);
    static void on_expiry(const std::shared_ptr<timer_state>& state, unsigned generation, const error_code& ec);
    static void abort(timer_state& state) noexcept;

    // Past the deadline every failure is the deadline's (with shut_down_on_abort an operation started
    // after it fails with a shutdown error rather than operation_aborted).
    error_code as_timeout(const error_code& ec) const { return ec && timer_->expired ? error_code(beast::error::timeout) : ec; }

    tcp::socket socket_;
    std::shared_ptr<timer_state> timer_;
};

} // namespace breakerbox
