// A counter with one writer and any number of readers: the owning worker increments it with a plain
// load+store (no locked instruction, no shared cache line with other workers); the admin thread reads
// it at scrape time. Per-worker blocks of these are summed when /metrics or /health is asked for.
#pragma once
#include <atomic>
#include <cstdint>

namespace breakerbox {

class local_counter {
public:
    void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

} // namespace breakerbox
