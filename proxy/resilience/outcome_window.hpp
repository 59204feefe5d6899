// Sliding windows of call outcomes, shared by all workers, lock-free.
//
// count_window: the last N calls. A ring of one-byte outcome codes plus running totals packed in one
// 64-bit word (calls | failures | slow, 21 bits each); recording exchanges the slot and adds the
// difference, so it is O(1) to record and to read, and exact whenever no two threads write the same
// slot at the same instant (that needs more than N calls completing at once). A read that catches such
// a transient inconsistency is detected (a field above N) and reported as "no data".
//
// time_window: the last T seconds in B buckets. Each bucket has an epoch (its bucket number) and packed
// counts; recording is one fetch_add, plus one CAS when the bucket rolls over. NOTE: an outcome recorded
// by another thread in the nanoseconds between a rollover's CAS and its reset of the counts is lost;
// that can only under-count one bucket boundary and never blocks. Reading sums the B buckets (B is a
// small configuration constant, 10 by default), and happens only when a failure or slow call is
// recorded, since only those can raise a rate.
#pragma once
#include "core/clock.hpp"

#include <atomic>
#include <cstdint>
#include <memory>

namespace breakerbox::resilience {

struct window_totals {
    std::uint32_t calls = 0;
    std::uint32_t failures = 0;
    std::uint32_t slow = 0;
};

namespace window_detail {
constexpr unsigned field_bits = 21;
constexpr std::uint64_t field_mask = (1ull << field_bits) - 1;
constexpr std::uint64_t pack(bool failure, bool slow)
{
    return 1ull | (std::uint64_t(failure) << field_bits) | (std::uint64_t(slow) << (2 * field_bits));
}
inline window_totals unpack(std::uint64_t w)
{
    return {static_cast<std::uint32_t>(w & field_mask), static_cast<std::uint32_t>((w >> field_bits) & field_mask),
            static_cast<std::uint32_t>((w >> (2 * field_bits)) & field_mask)};
}
} // namespace window_detail

class count_window {
public:
    explicit count_window(std::uint32_t size);
    void record(bool failure, bool slow) noexcept;
    window_totals totals() const noexcept;
    void reset() noexcept;

private:
    std::uint32_t size_;
    std::unique_ptr<std::atomic<std::uint8_t>[]> slots_; // 0 empty, else 1 | failure<<1 | slow<<2
    std::atomic<std::uint64_t> next_{0};
    std::atomic<std::uint64_t> totals_{0};
};

class time_window {
public:
    time_window(nanos duration, std::uint32_t buckets);
    void record(nanos now, bool failure, bool slow) noexcept;
    window_totals totals(nanos now) const noexcept;
    void reset() noexcept;

private:
    struct bucket {
        std::atomic<std::int64_t> epoch{-1};
        std::atomic<std::uint64_t> counts{0};
    };
    nanos width_;
    std::uint32_t count_;
    std::unique_ptr<bucket[]> buckets_;
};

// The window a breaker uses: one of the two, chosen by configuration.
class outcome_window {
public:
    outcome_window(bool time_based, std::uint32_t size, nanos duration, std::uint32_t buckets);
    void record(nanos now, bool failure, bool slow) noexcept
    {
        if (time_)
            time_->record(now, failure, slow);
        else
            count_->record(failure, slow);
    }
    window_totals totals(nanos now) const noexcept { return time_ ? time_->totals(now) : count_->totals(); }
    void reset() noexcept
    {
        if (time_)
            time_->reset();
        else
            count_->reset();
    }

private:
    std::unique_ptr<count_window> count_;
    std::unique_ptr<time_window> time_;
};

} // namespace breakerbox::resilience
