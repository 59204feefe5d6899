#include "resilience/client_watch.hpp"

#include "core/socket_peek.hpp"

namespace breakerbox::resilience {

void watch_registry::sweep(nanos now, nanos min_age)
{
    // Slow calls first: when recording them opens a circuit, the second pass ends every exchange of that
    // circuit in this same sweep, not only those after the one that tripped it.
    for (client_watch* w = head_; w; w = w->next_)
        if (w->slow_permit_)
            w->slow_permit_->record_if_slow(now);
    for (client_watch* w = head_; w;) {
        client_watch* next = w->next_; // cancelling unlinks w
        if (w->breaker_ && w->breaker_->trip_count() != w->trips_at_arm_) {
            w->circuit_opened_ = true;
            w->cancel_exchange();
        } else if (!w->waiting_ && now - w->armed_at_ >= min_age) {
            w->start_socket_wait();
        }
        w = next;
    }
}

void client_watch::arm(deadline_stream& upstream, nanos now, const resilience::circuit_breaker* breaker, std::uint64_t trips,
                       resilience::breaker_permit* slow_permit)
{
    upstream_ = &upstream;
    slow_permit_ = slow_permit;
    breaker_ = breaker;
    trips_at_arm_ = trips;
    gone_ = false;
    circuit_opened_ = false;
    armed_at_ = now;
    if (linked_)
        return;
    linked_ = true;
    prev_ = nullptr;
    next_ = registry_.head_;
    if (next_)
        next_->prev_ = this;
    registry_.head_ = this;
}

void client_watch::unlink() noexcept
{
    if (!linked_)
        return;
    if (prev_)
        prev_->next_ = next_;
    else
        registry_.head_ = next_;
    if (next_)
        next_->prev_ = prev_;
    prev_ = next_ = nullptr;
    linked_ = false;
}

void client_watch::start_socket_wait()
{
    waiting_ = true;
    client_.async_wait(tcp::socket::wait_read, [this](const error_code& ec) {
        if (ec == asio::error::operation_aborted)
            return; // disarmed, or the session closed its socket: `this` may be gone, touch nothing
        waiting_ = false;
        unlink(); // fired once: either the client is gone, or it sent more and cannot be watched further
        if (!upstream_)
            return;
        if (ec || peek_receive_queue(client_) == peek_result::closed) {
            gone_ = true;
            upstream_->abort_io(); // the exchange ends with operation_aborted
        }
    });
}

// The exchange ends with operation_aborted and disarms the watch; the sweep is done with it.
void client_watch::cancel_exchange() noexcept
{
    if (upstream_)
        upstream_->abort_io();
    unlink();
}

void client_watch::disarm() noexcept
{
    upstream_ = nullptr;
    slow_permit_ = nullptr;
    unlink();
    if (waiting_) {
        waiting_ = false;
        error_code ignored;
        client_.cancel(ignored);
    }
}

} // namespace breakerbox::resilience
