// What one worker needs to forward requests: its io_context, the shared proxy state, and its own view
// of every upstream (endpoints, load balancing, connection pools). Worker-owned: only the thread
// running `ioc` touches it.
#pragma once
#include "core/asio.hpp"
#include "forward/proxy_state.hpp"
#include "forward/request_stats.hpp"
#include "upstream/worker_upstream.hpp"

#include <vector>

namespace breakerbox::forward {

class worker_context {
public:
    worker_context(asio::io_context& ioc, proxy_state& state, std::size_t index)
        : ioc(ioc), state(state), index(index), stats(state.cfg.upstreams.size())
    {
        upstreams.reserve(state.cfg.upstreams.size());
        for (const auto& u : state.cfg.upstreams)
            upstreams.emplace_back(u, index, state.worker_count);
    }

    asio::io_context& ioc;
    proxy_state& state;
    const std::size_t index; // this worker's number, 0..workers-1
    std::vector<upstream::worker_upstream> upstreams; // same order as cfg.upstreams
    worker_stats stats;                               // written by this worker only, read by the admin listener

    // Worker-owned pseudo-random numbers (xorshift64*) for retry jitter: no shared state, no lock.
    std::uint64_t random() noexcept
    {
        rng_ ^= rng_ >> 12;
        rng_ ^= rng_ << 25;
        rng_ ^= rng_ >> 27;
        return rng_ * 0x2545F4914F6CDD1Dull;
    }

private:
    std::uint64_t rng_ = 0x9E3779B97F4A7C15ull ^ (reinterpret_cast<std::uintptr_t>(this) << 1);
};

} // namespace breakerbox::forward
