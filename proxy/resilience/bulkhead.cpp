#include "resilience/bulkhead.hpp"

#include <algorithm>
#include <limits>

namespace breakerbox::resilience {

bulkhead::bulkhead(std::uint32_t max_concurrent, std::uint32_t max_queue)
    : limit_(max_concurrent == 0 ? std::numeric_limits<std::int64_t>::max() : max_concurrent), max_queue_(max_queue)
{
}

bool bulkhead::try_increment() noexcept
{
    std::int64_t current = in_flight_.load(std::memory_order_seq_cst);
    while (current < limit_)
        if (in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_seq_cst))
            return true;
    return false;
}

bool bulkhead::try_acquire() noexcept
{
    // seq_cst on both counters: a releaser that sees no waiter and a waiter that enqueues after
    // seeing no slot cannot both miss each other (see grant_waiters' call in acquire_or_enqueue).
    if (waiting_.load(std::memory_order_seq_cst) != 0)
        return false;
    return try_increment();
}

bulkhead::admit bulkhead::acquire_or_enqueue(const std::shared_ptr<bulkhead_waiter>& w)
{
    std::lock_guard lock(mutex_);
    if (queue_.empty() && try_increment())
        return admit::acquired;
    if (queue_.size() >= max_queue_)
        return admit::full;
    queue_.push_back(w);
    waiting_.fetch_add(1, std::memory_order_seq_cst);
    // A release may have happened between our failed increment and the enqueue while it saw no
    // waiter: hand out whatever is free now, to the oldest waiter first.
    grant_waiters();
    if (w->granted) {
        w->wake = nullptr; // granted on the spot; drop the callback (and what it keeps alive)
        return admit::acquired;
    }
    return admit::queued;
}

bool bulkhead::leave(const std::shared_ptr<bulkhead_waiter>& w)
{
    std::lock_guard lock(mutex_);
    auto it = std::find(queue_.begin(), queue_.end(), w);
    if (it == queue_.end())
        return false; // already granted
    queue_.erase(it);
    waiting_.fetch_sub(1, std::memory_order_seq_cst);
    return true;
}

void bulkhead::release() noexcept
{
    in_flight_.fetch_sub(1, std::memory_order_seq_cst);
    if (waiting_.load(std::memory_order_seq_cst) == 0)
        return;
    std::lock_guard lock(mutex_);
    grant_waiters();
}

void bulkhead::grant_waiters()
{
    while (!queue_.empty() && try_increment()) {
        auto w = std::move(queue_.front());
        queue_.pop_front();
        waiting_.fetch_sub(1, std::memory_order_seq_cst);
        w->granted = true;
        if (w->wake)
            w->wake();
    }
}

bulkhead_snapshot bulkhead::snapshot() const
{
    std::lock_guard lock(mutex_);
    return {static_cast<std::uint32_t>(in_flight_.load()), static_cast<std::uint32_t>(queue_.size()),
            limit_ == std::numeric_limits<std::int64_t>::max() ? 0u : static_cast<std::uint32_t>(limit_), max_queue_};
}

} // namespace breakerbox::resilience
