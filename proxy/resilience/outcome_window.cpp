#include "resilience/outcome_window.hpp"

namespace breakerbox::resilience {

using namespace window_detail;

count_window::count_window(std::uint32_t size) : size_(size), slots_(new std::atomic<std::uint8_t>[size])
{
    reset();
}

void count_window::record(bool failure, bool slow) noexcept
{
    const std::uint8_t code = static_cast<std::uint8_t>(1 | (failure << 1) | (slow << 2));
    const std::uint64_t index = next_.fetch_add(1, std::memory_order_relaxed) % size_;
    const std::uint8_t old = slots_[index].exchange(code, std::memory_order_relaxed);
    const std::uint64_t old_packed = old ? pack(old & 2, old & 4) : 0;
    // Modular arithmetic: adding (new - old) is exact even if the subtraction borrows transiently.
    totals_.fetch_add(pack(failure, slow) - old_packed, std::memory_order_relaxed);
}

window_totals count_window::totals() const noexcept
{
    auto t = unpack(totals_.load(std::memory_order_relaxed));
    if (t.calls > size_ || t.failures > t.calls || t.slow > t.calls)
        return {}; // caught mid-update by a concurrent same-slot write: report no data rather than nonsense
    return t;
}

void count_window::reset() noexcept
{
    for (std::uint32_t i = 0; i < size_; ++i)
        slots_[i].store(0, std::memory_order_relaxed);
    totals_.store(0, std::memory_order_relaxed);
    next_.store(0, std::memory_order_relaxed);
}

time_window::time_window(nanos duration, std::uint32_t buckets)
    : width_(duration / buckets), count_(buckets), buckets_(new bucket[buckets])
{
}

void time_window::record(nanos now, bool failure, bool slow) noexcept
{
    const std::int64_t k = now / width_;
    bucket& b = buckets_[static_cast<std::size_t>(k % count_)];
    std::int64_t epoch = b.epoch.load(std::memory_order_acquire);
    if (epoch != k) {
        if (epoch > k)
            return; // a stale timestamp from a slow thread: the bucket already moved on
        if (b.epoch.compare_exchange_strong(epoch, k, std::memory_order_acq_rel))
            b.counts.store(0, std::memory_order_release);
    }
    b.counts.fetch_add(pack(failure, slow), std::memory_order_relaxed);
}

window_totals time_window::totals(nanos now) const noexcept
{
    const std::int64_t k = now / width_;
    window_totals sum;
    for (std::uint32_t i = 0; i < count_; ++i) {
        const bucket& b = buckets_[i];
        std::int64_t epoch = b.epoch.load(std::memory_order_acquire);
        if (epoch > k - static_cast<std::int64_t>(count_) && epoch <= k) {
            auto t = unpack(b.counts.load(std::memory_order_relaxed));
            sum.calls += t.calls;
            sum.failures += t.failures;
            sum.slow += t.slow;
        }
    }
    return sum;
}

void time_window::reset() noexcept
{
    for (std::uint32_t i = 0; i < count_; ++i) {
        buckets_[i].epoch.store(-1, std::memory_order_relaxed);
        buckets_[i].counts.store(0, std::memory_order_relaxed);
    }
}

outcome_window::outcome_window(bool time_based, std::uint32_t size, nanos duration, std::uint32_t buckets)
{
    if (time_based)
        time_ = std::make_unique<time_window>(duration, buckets);
    else
        count_ = std::make_unique<count_window>(size);
}

} // namespace breakerbox::resilience
