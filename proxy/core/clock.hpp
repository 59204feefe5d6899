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

// Shared, thread-safe: every member may be called from any thread.
class clock {
public:
    virtual ~clock() = default;
    // Monotonic time, in nanoseconds.
    virtual nanos now() const noexcept = 0;
    // Wall-clock time, in whole seconds since the Unix epoch (HTTP-dates: Retry-After, RFC 9110 §10.2.3).
    virtual std::int64_t unix_seconds() const noexcept = 0;
    // Wall-clock time in milliseconds since the Unix epoch (event times, Redis's clock against ours).
    virtual std::int64_t unix_millis() const noexcept { return unix_seconds() * 1000; }
    // The steady_clock time point at which now() reads `t`: what Asio's timers (deadlines) wait for.
    virtual std::chrono::steady_clock::time_point to_steady(nanos t) const noexcept = 0;
};

class steady_clock_source final : public clock {
public:
    nanos now() const noexcept override
    {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    std::int64_t unix_seconds() const noexcept override
    {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    std::int64_t unix_millis() const noexcept override
    {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    // now() is steady_clock's own reading: the same time base, no conversion.
    std::chrono::steady_clock::time_point to_steady(nanos t) const noexcept override
    {
        return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(t));
    }
    static steady_clock_source& instance()
    {
        static steady_clock_source c;
        return c;
    }
};

// The wall clock's reading of `c` as a system_clock time point (for ISO 8601 times in reports).
inline std::chrono::system_clock::time_point wall_time(const clock& c) noexcept
{
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(c.unix_millis()));
}

} // namespace breakerbox
