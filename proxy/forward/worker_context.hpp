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
            upstreams.emplace_back(u, index);
    }

    asio::io_context& ioc;
    proxy_state& state;
    const std::size_t index; // this worker's number, 0..workers-1
    std::vector<upstream::worker_upstream> upstreams; // same order as cfg.upstreams
    worker_stats stats;                               // written by this worker only, read by the admin listener
};

} // namespace breakerbox::forward
