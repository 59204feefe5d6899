// What the admin listener may see: the shared proxy state (config, breakers) and each worker's
// statistics block, read-only. It never reaches into sessions.
#pragma once
#include "forward/proxy_state.hpp"
#include "forward/request_stats.hpp"

#include <vector>

namespace breakerbox::admin {

struct admin_context {
    forward::proxy_state& state;
    std::vector<const forward::worker_stats*> workers;
    const clock& clk;

    // Sums one per-upstream counter across workers.
    template <class F>
    std::uint64_t sum_upstream(std::size_t upstream, F&& get) const
    {
        std::uint64_t total = 0;
        for (const auto* w : workers)
            total += get(w->upstreams[upstream]);
        return total;
    }
    template <class F>
    std::uint64_t sum_worker(F&& get) const
    {
        std::uint64_t total = 0;
        for (const auto* w : workers)
            total += get(*w);
        return total;
    }
};

} // namespace breakerbox::admin
