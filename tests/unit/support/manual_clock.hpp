// Test support: a clock (core/clock.hpp) whose time moves only when a test says so, so unit tests of
// time-driven logic never sleep.
#pragma once
#include "core/clock.hpp"

#include <atomic>

namespace breakerbox {

class manual_clock final : public clock {
public:
    explicit manual_clock(nanos start = seconds(1000)) : now_(start) {}
    nanos now() const noexcept override { return now_.load(std::memory_order_relaxed); }
    void advance(nanos d) { now_.fetch_add(d, std::memory_order_relaxed); }
    void set(nanos t) { now_.store(t, std::memory_order_relaxed); }

private:
    std::atomic<nanos> now_;
};

} // namespace breakerbox
