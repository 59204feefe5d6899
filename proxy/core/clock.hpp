// Time, injected. Production code asks a `clock&` for the time; unit tests drive a manual_clock
// (tests/unit/support/manual_clock.hpp) and never sleep. Time points are nanoseconds of a monotonic
// clock, stored as plain integers so that they fit in atomics.
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

} // namespace breakerbox
