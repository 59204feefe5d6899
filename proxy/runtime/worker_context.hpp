// What one worker needs to forward requests: its io_context, the shared proxy state, and its current
// generation — the configuration generation it serves with, its own view of every upstream of it
// (endpoints, load balancing, connection pools) and its statistics. Worker-owned: only the thread running `ioc`
// touches it, except the admin listener's locked snapshot().
#pragma once
#include "core/asio.hpp"
#include "core/thread_owner.hpp"
#include "resilience/client_watch.hpp"
#include "runtime/config_generation.hpp"
#include "runtime/proxy_state.hpp"
#include "runtime/request_stats.hpp"
#include "upstream/worker_upstream.hpp"

#include <memory>
#include <mutex>
#include <vector>

namespace breakerbox::runtime {

// One upstream as one worker's generation sees it, in one place: its configuration, the state all
// workers share (breaker, bulkhead, retry budget), this worker's endpoints and pools, and this worker's
// counters. `index`: its position in the generation's upstream list (config_generation::upstreams,
// cfg.upstreams), for what is kept per generation by index (the prerendered static answers).
struct upstream_handle {
    upstream_handle(std::size_t i, const config_generation& gen, std::size_t worker_index, std::size_t workers, upstream_stats& s)
        : index(i), cfg(gen.cfg.upstreams[i]), shared(*gen.upstreams[i]), local(cfg, worker_index, workers, shared.tls.get()),
          stats(s)
    {
    }

    // The upstream's addresses now, each with its outlier-detection record when detection is on (the
    // main thread gave the detector the same list first).
    void set_endpoints(const std::vector<tcp::endpoint>& addresses)
    {
        if (auto* detector = shared.outliers.get())
            local.set_endpoints(addresses, [detector](const tcp::endpoint& a) { return detector->find(a); });
        else
            local.set_endpoints(addresses);
    }

    const std::size_t index;
    const config::upstream_config& cfg;
    resilience::upstream_resilience& shared; // all workers'
    upstream::worker_upstream local;         // this worker's
    upstream_stats& stats;                   // this worker's, kept across reloads
};

// A request holds its generation (a worker-local shared_ptr: only its worker counts references to it;
// the admin listener takes a generation_view instead) until it is answered, so a reload never pulls a
// configuration out from under it.
struct worker_generation {
    worker_generation(std::shared_ptr<const config_generation> r, std::size_t worker_index, std::size_t workers,
                      worker_stats_registry& registry)
        : config(std::move(r)), stats(registry.for_upstreams(upstream_names(*config)))
    {
        upstreams.reserve(config->cfg.upstreams.size()); // the handles never move once built
        for (std::size_t i = 0; i < config->cfg.upstreams.size(); ++i)
            upstreams.emplace_back(i, *config, worker_index, workers, stats.upstreams[i]);
    }
    worker_generation(const worker_generation&) = delete;
    worker_generation& operator=(const worker_generation&) = delete;

    // The upstream named `name`; nullptr when this generation has none by that name.
    upstream_handle* find(std::string_view name) noexcept
    {
        const auto i = config->index_of(name);
        return i ? &upstreams[*i] : nullptr;
    }

    const std::shared_ptr<const config_generation> config;
    generation_stats stats;                 // written by this worker only; kept across reloads
    std::vector<upstream_handle> upstreams; // same order as config->cfg.upstreams

private:
    static std::vector<std::string_view> upstream_names(const config_generation& r)
    {
        std::vector<std::string_view> names;
        for (const auto& u : r.cfg.upstreams)
            names.push_back(u.name);
        return names;
    }
};

class worker_context {
public:
    // `clk`: the time the worker's requests are served by (tests pass a manual clock).
    worker_context(asio::io_context& ioc, proxy_state& state, std::size_t index,
                   const clock& clk = steady_clock_source::instance())
        : ioc(ioc), state(state), index(index), clk(clk),
          current(std::make_shared<worker_generation>(state.current(), index, state.worker_count, stats_registry_))
    {
    }

    // On this worker's thread: serve new requests with `rt`; `addresses` are the resolved endpoints
    // per upstream of `rt` (requests in flight keep the generation they started with).
    void install(std::shared_ptr<const config_generation> rt, const std::vector<std::vector<tcp::endpoint>>& addresses)
    {
        owner.assert_owned("worker_context::install");
        auto next = std::make_shared<worker_generation>(std::move(rt), index, state.worker_count, stats_registry_);
        for (std::size_t i = 0; i < next->upstreams.size() && i < addresses.size(); ++i)
            next->upstreams[i].set_endpoints(addresses[i]);
        std::lock_guard lock(admin_mutex_);
        current = std::move(next);
    }

    // For the admin listener (another thread): the configuration generation and the statistics being served now. Not the
    // generation itself: were the admin thread to hold its last reference, the worker's pools (sockets
    // and timers of the worker's io_context) would be destroyed on the admin thread.
    struct generation_view {
        std::shared_ptr<const config_generation> config;
        generation_stats stats;
    };
    generation_view snapshot() const
    {
        std::lock_guard lock(admin_mutex_);
        return {current->config, current->stats};
    }

private:
    worker_stats_registry stats_registry_; // before `current`, which is built from it

public:
    asio::io_context& ioc;
    proxy_state& state;
    const std::size_t index; // this worker's number, 0..workers-1
    const clock& clk;
    thread_owner owner; // the worker's thread, once it runs: asserted at the worker-only entry points
    std::shared_ptr<worker_generation> current;
    resilience::watch_registry watches; // clients of this worker's exchanges in progress

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

} // namespace breakerbox::runtime
