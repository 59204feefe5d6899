// What one worker needs to forward requests: its io_context, the shared proxy state, and its current
// generation — the runtime it serves with, its own view of every upstream of that runtime (endpoints,
// load balancing, connection pools) and its statistics. Worker-owned: only the thread running `ioc`
// touches it, except the admin listener's locked snapshot().
#pragma once
#include "core/asio.hpp"
#include "core/thread_owner.hpp"
#include "forward/client_watch.hpp"
#include "forward/proxy_state.hpp"
#include "forward/request_stats.hpp"
#include "upstream/worker_upstream.hpp"

#include <memory>
#include <mutex>
#include <vector>

namespace breakerbox::forward {

// A request holds its generation (a worker-local shared_ptr: only its worker counts references to it;
// the admin listener takes a generation_view instead) until it is answered, so a reload never pulls a
// configuration out from under it.
struct worker_generation {
    worker_generation(std::shared_ptr<const runtime> r, std::size_t worker_index, std::size_t workers, worker_stats_registry& registry)
        : rt(std::move(r)), stats(registry.for_upstreams(upstream_names(*rt)))
    {
        upstreams.reserve(rt->cfg.upstreams.size());
        for (const auto& u : rt->cfg.upstreams)
            upstreams.emplace_back(u, worker_index, workers);
    }

    const std::shared_ptr<const runtime> rt;
    std::vector<upstream::worker_upstream> upstreams; // same order as rt->cfg.upstreams
    generation_stats stats;                           // written by this worker only; kept across reloads

private:
    static std::vector<std::string_view> upstream_names(const runtime& r)
    {
        std::vector<std::string_view> names;
        for (const auto& u : r.cfg.upstreams)
            names.push_back(u.name);
        return names;
    }
};

class worker_context {
public:
    worker_context(asio::io_context& ioc, proxy_state& state, std::size_t index)
        : ioc(ioc), state(state), index(index),
          current(std::make_shared<worker_generation>(state.current(), index, state.worker_count, stats_registry_))
    {
    }

    // On this worker's thread: serve new requests with `rt`; `addresses` are the resolved endpoints
    // per upstream of `rt` (requests in flight keep the generation they started with).
    void install(std::shared_ptr<const runtime> rt, const std::vector<std::vector<tcp::endpoint>>& addresses)
    {
        owner.assert_owned("worker_context::install");
        auto next = std::make_shared<worker_generation>(std::move(rt), index, state.worker_count, stats_registry_);
        for (std::size_t i = 0; i < next->upstreams.size() && i < addresses.size(); ++i)
            next->upstreams[i].set_endpoints(addresses[i]);
        std::lock_guard lock(admin_mutex_);
        current = std::move(next);
    }

    // For the admin listener (another thread): the runtime and the statistics being served now. Not the
    // generation itself: were the admin thread to hold its last reference, the worker's pools (sockets
    // and timers of the worker's io_context) would be destroyed on the admin thread.
    struct generation_view {
        std::shared_ptr<const runtime> rt;
        generation_stats stats;
    };
    generation_view snapshot() const
    {
        std::lock_guard lock(admin_mutex_);
        return {current->rt, current->stats};
    }

private:
    worker_stats_registry stats_registry_; // before `current`, which is built from it

public:
    asio::io_context& ioc;
    proxy_state& state;
    const std::size_t index; // this worker's number, 0..workers-1
    thread_owner owner;      // the worker's thread, once it runs: asserted at the worker-only entry points
    std::shared_ptr<worker_generation> current;
    watch_registry watches; // clients of this worker's exchanges in progress

    // Worker-owned pseudo-random numbers (xorshift64*) for retry jitter: no shared state, no lock.
    std::uint64_t random() noexcept
    {
        rng_ ^= rng_ >> 12;
        rng_ ^= rng_ << 25;
        rng_ ^= rng_ >> 27;
        return rng_ * 0x2545F4914F6CDD1Dull;
    }

private:
    mutable std::mutex admin_mutex_; // install() vs snapshot(); never taken on the request path
    std::uint64_t rng_ = 0x9E3779B97F4A7C15ull ^ (reinterpret_cast<std::uintptr_t>(this) << 1);
};

} // namespace breakerbox::forward
