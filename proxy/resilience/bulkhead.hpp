// The bulkhead of one upstream: a strict limit on concurrent in-flight requests, shared by all workers,
// with a bounded FIFO wait queue (HAProxy's maxqueue + timeout queue). Rejections are local decisions
// and never reach the circuit breaker.
//
// Shared. The hot path is lock-free: with nobody waiting, acquire is one compare-and-swap on the
// in-flight counter and release one fetch_sub. The queue itself (only used when the bulkhead is full)
// is under a mutex: waiting is the slow path by definition, and a mutex makes the FIFO hand-off across
// workers simple to get right. A released slot goes straight to the oldest waiter (it is never
// decremented and re-taken), so a newcomer cannot overtake the queue. The waiter's `wake` runs under
// the lock and must only post work elsewhere.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace breakerbox::resilience {

struct bulkhead_waiter {
    std::function<void()> wake; // called once, under the bulkhead's lock, when the waiter is granted a slot
    bool granted = false;       // guarded by the bulkhead's lock
};

struct bulkhead_snapshot {
    std::uint32_t in_flight;
    std::uint32_t queued;
    std::uint32_t limit; // 0 = unlimited
    std::uint32_t max_queue;
};

class bulkhead {
public:
    enum class admit { acquired, queued, full };

    // max_concurrent 0: unlimited (only counts in-flight requests).
    bulkhead(std::uint32_t max_concurrent, std::uint32_t max_queue);

    // Lock-free fast path: a slot if one is free and nobody is waiting.
    bool try_acquire() noexcept;
    // Slow path: a slot now, a place in the queue (wake is called when granted), or full.
    admit acquire_or_enqueue(const std::shared_ptr<bulkhead_waiter>& w);
    // A waiter gives up (timeout, client gone). Returns false if it had already been granted a slot,
    // which it then owns and must release.
    bool leave(const std::shared_ptr<bulkhead_waiter>& w);
    void release() noexcept;

    std::uint32_t in_flight() const noexcept { return static_cast<std::uint32_t>(in_flight_.load(std::memory_order_relaxed)); }
    bulkhead_snapshot snapshot() const;

private:
    bool try_increment() noexcept;
    void grant_waiters(); // requires mutex_

    const std::int64_t limit_;
    const std::uint32_t max_queue_;
    std::atomic<std::int64_t> in_flight_{0};
    std::atomic<std::int64_t> waiting_{0};
    mutable std::mutex mutex_;
    std::deque<std::shared_ptr<bulkhead_waiter>> queue_;
};

// A slot held: given back when the permit goes (RAII, beside breaker_permit and retry_permit).
class bulkhead_permit {
public:
    bulkhead_permit() = default;
    explicit bulkhead_permit(bulkhead& b) : b_(&b) { }
    bulkhead_permit(bulkhead_permit&& o) noexcept : b_(std::exchange(o.b_, nullptr)) { }
    bulkhead_permit& operator=(bulkhead_permit&& o) noexcept
    {
        reset();
        b_ = std::exchange(o.b_, nullptr);
        return *this;
    }
    ~bulkhead_permit() { reset(); }
    explicit operator bool() const noexcept { return b_ != nullptr; }
    void reset() noexcept
    {
        if (b_)
            b_->release();
        b_ = nullptr;
    }

private:
    bulkhead* b_ = nullptr;
};

// A free slot, without waiting; an empty permit when there is none.
inline bulkhead_permit try_take_slot(bulkhead& b) { return b.try_acquire() ? bulkhead_permit(b) : bulkhead_permit(); }

} // namespace breakerbox::resilience
