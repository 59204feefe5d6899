// Test support: a clock (core/clock.hpp) whose time moves only when a test says so, so unit tests of
// time-driven logic never sleep.
#pragma once
#include "core/clock.hpp"

#include <atomic>

namespace breakerbox {

// The wall clock starts at `wall_start` (seconds since the epoch) and moves with advance(). Deadlines
// (to_steady) map onto the real steady clock relative to the manual now: a deadline 100 ms after now()
// is 100 ms of real time away, since Asio's timers wait in real time.
class manual_clock final : public clock {
public:
    explicit manual_clock(nanos start = seconds(1000), std::int64_t wall_start = 1'700'000'000)
        : start_(start), wall_start_(wall_start), now_(start)
    {
    }
    nanos now() const noexcept override { return now_.load(std::memory_order_relaxed); }
    std::int64_t unix_seconds() const noexcept override { return wall_start_ + (now() - start_) / seconds(1); }
    std::int64_t unix_millis() const noexcept override { return wall_start_ * 1000 + (now() - start_) / millis(1); }
    std::chrono::steady_clock::time_point to_steady(nanos t) const noexcept override
    {
        return std::chrono::steady_clock::now() + std::chrono::nanoseconds(t - now());
    }
    void advance(nanos d) { now_.fetch_add(d, std::memory_order_relaxed); }
    void set(nanos t) { now_.store(t, std::memory_order_relaxed); }

private:
    const nanos start_;
    const std::int64_t wall_start_;
    std::atomic<nanos> now_;
};

} // namespace breakerbox
