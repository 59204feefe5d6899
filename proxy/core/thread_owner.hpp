// Ownership stated and asserted (trantor's EventLoop::assertInLoopThread): an object owned by one
// thread records that thread when the thread starts serving it, and its thread-only entry points
// assert that they run there. Checked in debug and sanitizer builds (BREAKERBOX_DEBUG_CHECKS, set by
// CMakeLists.txt), so the TSan and ASan suites check every ownership comment that carries one; a no-op
// in release builds (no thread-id read on the request path).
#pragma once
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace breakerbox {

class thread_owner {
public:
    // Called on the owning thread before it serves the object. Until then (construction and start-up
    // on the main thread, single-threaded tests) nothing is asserted.
    void bind_to_this_thread() noexcept
    {
#if defined(BREAKERBOX_DEBUG_CHECKS)
        owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
#endif
    }

    // Aborts, naming `what`, when called on another thread than the owner.
    void assert_owned([[maybe_unused]] const char* what) const noexcept
    {
#if defined(BREAKERBOX_DEBUG_CHECKS)
        const auto owner = owner_.load(std::memory_order_relaxed);
        if (owner != std::thread::id{} && owner != std::this_thread::get_id()) {
            std::fprintf(stderr, "ownership violated: %s called off its owning thread\n", what);
            std::abort();
        }
#endif
    }

    // For an object first used on its owning thread (a cache, a client): the first call binds, every
    // later one asserts.
    void claim([[maybe_unused]] const char* what) noexcept
    {
#if defined(BREAKERBOX_DEBUG_CHECKS)
        std::thread::id unbound{};
        if (!owner_.compare_exchange_strong(unbound, std::this_thread::get_id(), std::memory_order_relaxed))
            assert_owned(what);
#endif
    }

private:
#if defined(BREAKERBOX_DEBUG_CHECKS)
    std::atomic<std::thread::id> owner_{};
#endif
};

} // namespace breakerbox
