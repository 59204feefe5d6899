// Gives memory freed after a burst back to the operating system.
//
// Allocators keep the pages of freed blocks for reuse, and mimalloc (no background thread) purges them
// only when it is called again: after 1,000 concurrent requests an idle breakerbox still held ~5 MiB it
// no longer used (bench/README.md, memory). So a worker that has served requests and then none for a
// second calls release_free_memory() once, from its own thread (the allocator's per-thread heap).
// main() installs the function of the allocator it was linked with, before the workers start; without
// one, glibc's malloc_trim.
#pragma once
#include <cstdint>
#include <utility>

namespace breakerbox {

using memory_release_fn = void (*)();

// Start-up only, before any worker thread exists.
void install_memory_release(memory_release_fn fn) noexcept;
// Returns freed memory of the calling thread's heap (and the allocator's caches) to the OS.
void release_free_memory() noexcept;

// When a burst is over: the worker calls tick() once a second with its count of requests so far; true
// once, on the first tick without new requests after ticks with some. Worker-owned.
class burst_end {
public:
    bool tick(std::uint64_t served) noexcept
    {
        if (served != last_) {
            last_ = served;
            busy_ = true;
            return false;
        }
        return std::exchange(busy_, false);
    }

private:
    std::uint64_t last_ = 0;
    bool busy_ = false;
};

} // namespace breakerbox
