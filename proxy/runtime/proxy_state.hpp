// Process-wide state shared by all workers: the current configuration generation, the readiness and
// drain flags, connection counters, and this instance's identity.
// Shared: the atomics are lock-free; the current runtime is behind a mutex that only the main thread
// (reload, accept loops, admin) takes — workers hold their own copy (worker_context::current).
#pragma once
#include "runtime/config_generation.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace breakerbox::queue {
class queue_store;
}

namespace breakerbox::runtime {

class proxy_state {
public:
    proxy_state(std::shared_ptr<const config_generation> first, std::size_t workers)
        : worker_count(workers), current_(std::move(first))
    {
    }

    std::shared_ptr<const config_generation> current() const
    {
        std::lock_guard lock(mutex_);
        return current_;
    }
    void set_current(std::shared_ptr<const config_generation> next)
    {
        std::lock_guard lock(mutex_);
        current_ = std::move(next);
    }

    const std::size_t worker_count;
    std::atomic<bool> ready{false}; // every listener bound and serving; false again while draining
    std::atomic<bool> draining{false};
    std::atomic<bool> drain_accepting{false}; // draining, within limits.drain_period: new connections still accepted
    std::atomic<std::int64_t> active_connections{0};
    std::atomic<std::uint64_t> accept_errors{0};
    std::atomic<std::uint64_t> rejected_connections{0}; // above limits.max_connections or while draining
    // Reloads (SIGHUP, POST /admin/reload), by result; the Unix time of the last applied one (0: none
    // since start). Written by the main thread, read by /metrics.
    std::atomic<std::uint64_t> reloads_applied{0};
    std::atomic<std::uint64_t> reloads_rejected{0};
    std::atomic<std::int64_t> last_reload_success_unix{0};
    std::atomic<bool> last_reload_successful{true}; // as Prometheus's own: true at start, false after a rejection

    // Identity of this sidecar instance: breaker state is per instance, and /health/circuits says so.
    std::string instance_id;
    std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();

    // The queue fallback's store (queue_store in the configuration), or nullptr. Set before the workers
    // start and kept for the process's life (queue_store is bound at start-up, like the listeners).
    queue::queue_store* queue = nullptr;
    std::atomic<std::int64_t> queue_deliveries{0}; // in flight now: the drain waits for them too

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const config_generation> current_;
};

} // namespace breakerbox::runtime
