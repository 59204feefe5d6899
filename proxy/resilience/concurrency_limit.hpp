// A per-upstream count of long-lived things at once — streamed exchanges (streaming.max_streams) and
// upgraded connections (streaming.max_tunnels) — kept apart from the request bulkhead, so that an
// hour-long stream or WebSocket does not hold a slot meant for short calls (Envoy's max_requests
// counting WebSockets is the failure this avoids). Lock-free: one fetch_add per acquisition. Shared by
// all workers; the slot (RAII) is owned by one exchange on its worker.
#pragma once
#include <atomic>
#include <cstdint>
#include <utility>

namespace breakerbox::resilience {

class concurrency_limit {
public:
    explicit concurrency_limit(std::uint32_t max) noexcept : max_(max) { }

    // Takes a place unless `max` are taken (a max of 0 admits nothing).
    bool try_acquire() noexcept
    {
        if (active_.fetch_add(1, std::memory_order_relaxed) < max_)
            return true;
        active_.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    void release() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }
    std::uint32_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
    std::uint32_t limit() const noexcept { return max_; }

private:
    const std::uint32_t max_;
    std::atomic<std::uint32_t> active_{0};
};

// One place in a concurrency_limit, given back when it goes out of scope. Empty when not taken.
class concurrency_slot {
public:
    concurrency_slot() = default;
    static concurrency_slot try_take(concurrency_limit& limit) noexcept
    {
        concurrency_slot s;
        if (limit.try_acquire())
            s.limit_ = &limit;
        return s;
    }
    concurrency_slot(concurrency_slot&& o) noexcept : limit_(std::exchange(o.limit_, nullptr)) { }
    concurrency_slot& operator=(concurrency_slot&& o) noexcept
    {
        if (this != &o) {
            reset();
            limit_ = std::exchange(o.limit_, nullptr);
        }
        return *this;
    }
    ~concurrency_slot() { reset(); }
    explicit operator bool() const noexcept { return limit_ != nullptr; }
    void reset() noexcept
    {
        if (auto* l = std::exchange(limit_, nullptr))
            l->release();
    }

private:
    concurrency_limit* limit_ = nullptr;
};

} // namespace breakerbox::resilience
