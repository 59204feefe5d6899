// What the admin listener may see: the shared proxy state (config, breakers) and each worker's
// statistics block, read-only. It never reaches into sessions.
#pragma once
#include "runtime/proxy_state.hpp"
#include "runtime/request_stats.hpp"
#include "runtime/worker_context.hpp"

#include <functional>
#include <string>
#include <vector>

namespace breakerbox::admin {

struct reload_outcome {
    bool applied;
    std::vector<std::string> errors; // why it was rejected (file:line:column: key: message)
    std::uint64_t generation;        // the configuration generation now serving
    std::vector<std::string> kept_breakers, fresh_breakers;
};

class event_hub;
} // namespace breakerbox::admin

namespace breakerbox::cluster {
class cluster_sync;
}

namespace breakerbox::admin {

struct admin_context {
    runtime::proxy_state& state;
    std::vector<const runtime::worker_context*> workers;
    const clock& clk;
    std::function<reload_outcome()> reload;   // POST /admin/reload (runs on the main thread, like SIGHUP)
    event_hub* events = nullptr;              // /events: operator actions and reloads are published there
    cluster::cluster_sync* cluster = nullptr; // scope: cluster (main thread, like the admin listener)

    // One upstream's counters summed over the workers, by upstream name (a worker may briefly still
    // serve the previous configuration after a reload, with other indexes; the counters are the same
    // objects). An upstream no worker serves sums to zeros.
    runtime::upstream_totals upstream_totals(std::string_view upstream) const
    {
        runtime::upstream_totals total;
        for (const auto* w : workers) {
            const auto gen = w->snapshot();
            if (auto i = gen.config->index_of(upstream))
                runtime::accumulate(total, gen.stats.upstreams[*i]);
        }
        return total;
    }
    runtime::worker_totals worker_totals() const
    {
        runtime::worker_totals total;
        for (const auto* w : workers)
            runtime::accumulate(total, *w->snapshot().stats.worker);
        return total;
    }
};

} // namespace breakerbox::admin
