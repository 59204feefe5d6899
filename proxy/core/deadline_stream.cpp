#include "core/deadline_stream.hpp"

#include "core/drained_hint.hpp"

namespace breakerbox {

deadline_stream::deadline_stream(tcp::socket socket)
    : socket_(std::move(socket)), timer_(std::make_shared<timer_state>(socket_.get_executor(), &socket_))
{
    error_code ignored;
    socket_.non_blocking(true, ignored); // write_all's first, synchronous attempt must never block
}

deadline_stream::deadline_stream(const asio::any_io_executor& executor)
    : socket_(executor), timer_(std::make_shared<timer_state>(executor, &socket_))
{
}

deadline_stream::~deadline_stream()
{
    timer_->socket = nullptr;
    timer_->timer.cancel();
}

void deadline_stream::expires_at(clock::time_point deadline)
{
    timer_state& s = *timer_;
    s.deadline = deadline;
    s.expired = false;
    // A pending expiry at or before the deadline will re-arm itself for the rest when it fires.
    if (deadline < s.armed_for)
        arm(timer_, deadline);
}

void deadline_stream::arm(const std::shared_ptr<timer_state>& state, clock::time_point when)
{
    state->armed_for = when;
    const unsigned generation = ++state->generation;
    state->timer.expires_at(when); // cancels a wait still pending: it completes as operation_aborted
    state->timer.async_wait([state, generation](const error_code& ec) { on_expiry(state, generation, ec); });
}

void deadline_stream::on_expiry(const std::shared_ptr<timer_state>& state, unsigned generation, const error_code& ec)
{
    if (ec || generation != state->generation || !state->socket)
        return; // superseded by a re-arm, or the stream is gone
    state->armed_for = clock::time_point::max();
    if (state->deadline == clock::time_point::max())
        return;
    if (clock::now() < state->deadline) {
        arm(state, state->deadline); // pushed back meanwhile: wait for the rest
        return;
    }
    state->expired = true;
    abort(*state); // pending operations complete as aborted, reported as timeout
}

void deadline_stream::abort(timer_state& state) noexcept
{
    if (!state.socket)
        return;
    error_code ignored;
    state.socket->cancel(ignored);
    if (state.shut_down_on_abort)
        state.socket->shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<error_code> deadline_stream::connect(const tcp::endpoint& endpoint)
{
    if (timer_->expired)
        co_return beast::error::timeout;
    auto [ec] = co_await socket_.async_connect(endpoint, nothrow_awaitable);
    if (!ec)
        socket_.non_blocking(true, ec); // write_all's first, synchronous attempt must never block
    co_return as_timeout(ec);
}

void deadline_stream::mark_drained() noexcept { breakerbox::mark_drained(socket_); }

asio::awaitable<deadline_stream::io_result> deadline_stream::read_some(asio::mutable_buffer buffer)
{
    if (timer_->expired)
        co_return io_result{beast::error::timeout, 0};
    auto [ec, n] = co_await socket_.async_read_some(buffer, nothrow_awaitable);
    co_return io_result{as_timeout(ec), n};
}

} // namespace breakerbox
