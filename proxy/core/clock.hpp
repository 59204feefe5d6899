// Time, injected. Production code asks a `clock&` for the time; unit tests drive a manual_clock and
// never sleep. Time points are nanoseconds of a monotonic clock, stored as plain integers so that they
// fit in atomics.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

namespace breakerbox {

using nanos = std::int64_t;

constexpr nanos millis(std::int64_t ms) { return ms * 1'000'000; }
constexpr nanos seconds(std::int64_t s) { return s * 1'000'000'000; }

// Shared, thread-safe: now() may be called from any thread.
class clock {
public:
    virtual ~clock() = default;
    virtual nanos now() const noexcept = 0;
};

class steady_clock_source final : public clock {
public:
    nanos now() const noexcept override
    {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    static steady_clock_source& instance()
    {
        static steady_clock_source c;
        return c;
    }
};

// For tests: time moves only when told to.
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
