// Retry budget of one upstream (Envoy/Istio/failsafe-go semantics): retries in flight may not exceed
// max(min_concurrent, ratio × active requests), so retries can never multiply the load on a sick
// upstream. Shared, lock-free.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

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

} // namespace breakerbox::resilience
