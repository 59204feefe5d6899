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
    std::vector<std::string> errors;   // why it was rejected (file:line:column: key: message)
    std::uint64_t generation;          // the configuration generation now serving
    std::vector<std::string> kept_breakers, fresh_breakers;
};

struct admin_context {
    runtime::proxy_state& state;
    std::vector<const runtime::worker_context*> workers;
    const clock& clk;
    std::function<reload_outcome()> reload; // POST /admin/reload (runs on the main thread, like SIGHUP)

    // Sums one per-upstream counter across workers, by upstream name (a worker may briefly still serve
    // the previous configuration after a reload, with other indexes; the counters are the same objects).
    template <class F>
    std::uint64_t sum_upstream(const std::string& upstream, F&& get) const
    {
        std::uint64_t total = 0;
        for (const auto* w : workers) {
            const auto gen = w->snapshot();
            if (auto i = gen.config->index_of(upstream))
                total += get(gen.stats.upstreams[*i]);
        }
        return total;
    }
    template <class F>
    std::uint64_t sum_worker(F&& get) const
    {
        std::uint64_t total = 0;
        for (const auto* w : workers)
            total += get(*w->snapshot().stats.worker);
        return total;
    }
};

} // namespace breakerbox::admin
