// Retry budget of one upstream (Envoy/Istio/failsafe-go semantics): retries in flight may not exceed
// max(min_concurrent, ratio × active requests), so retries can never multiply the load on a sick
// upstream. Shared, lock-free.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

namespace breakerbox::resilience {

class retry_budget {
public:
    retry_budget(double ratio, std::uint32_t min_concurrent) : ratio_(ratio), min_(min_concurrent) {}

    bool try_acquire(std::uint32_t active_requests) noexcept
    {
        const auto allowed = std::max<std::uint32_t>(min_, static_cast<std::uint32_t>(ratio_ * active_requests));
        std::uint32_t current = active_.load(std::memory_order_relaxed);
        while (current < allowed)
            if (active_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed))
                return true;
        return false;
    }
    void release() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }
    std::uint32_t active() const noexcept { return active_.load(std::memory_order_relaxed); }

private:
    const double ratio_;
    const std::uint32_t min_;
    std::atomic<std::uint32_t> active_{0};
};

// One retry's place in a retry_budget, held while the retry is in flight (RAII, beside breaker_permit):
// given back by release() when the attempt is over, or by the destructor however the request ends
// (client gone, coroutine destroyed). Owned by one request's coroutine frame.
class retry_permit {
public:
    retry_permit() = default;
    retry_permit(const retry_permit&) = delete;
    retry_permit& operator=(const retry_permit&) = delete;
    ~retry_permit() { release(); }

    // Takes a place in `budget` (releasing any place held before). False: the budget is exhausted.
    bool try_acquire(retry_budget& budget, std::uint32_t active_requests) noexcept
    {
        release();
        if (!budget.try_acquire(active_requests))
            return false;
        budget_ = &budget;
        return true;
    }
    void release() noexcept
    {
        if (budget_)
            std::exchange(budget_, nullptr)->release();
    }
    bool held() const noexcept { return budget_ != nullptr; }

private:
    retry_budget* budget_ = nullptr;
};

} // namespace breakerbox::resilience
