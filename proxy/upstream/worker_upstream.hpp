// One upstream as seen by one worker: its resolved endpoints, the load-balancing cursor and the idle
// keep-alive connections. Worker-owned: only the owning worker's thread touches it, so nothing here is
// locked. NOTE: least-outstanding counts the requests this worker has in flight per endpoint (as
// Envoy's per-worker load balancers do), not the process-wide figure.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"
#include "upstream/upstream_connection.hpp"

#include <memory>
#include <string>
#include <vector>

namespace breakerbox::upstream {

struct endpoint_slot {
    tcp::endpoint address;
    std::string label;          // "127.0.0.1:7001"
    std::uint32_t outstanding = 0;
    bool retired = false;       // no longer resolved: finishes its in-flight requests, pools nothing
    std::vector<std::unique_ptr<upstream_connection>> idle; // most recently used at the back
};

class worker_upstream {
public:
    // `seed` staggers the round-robin start so that workers do not all begin with the same endpoint.
    worker_upstream(const config::upstream_config& cfg, std::size_t seed) : cfg_(&cfg), cursor_(seed) {}

    const config::upstream_config& cfg() const { return *cfg_; }
    bool has_endpoints() const { return !endpoints_.empty(); }
    std::size_t endpoint_count() const { return endpoints_.size(); }

    // Picks an endpoint by the configured policy, avoiding `avoid` when another one exists.
    endpoint_slot* pick(const endpoint_slot* avoid = nullptr);

    // Takes an idle connection that still looks usable, or nullptr. Stale ones are closed.
    std::unique_ptr<upstream_connection> take_idle(endpoint_slot& ep, nanos now);
    // Returns a connection after a complete exchange; it is kept only within the pool limits.
    void give_back(endpoint_slot& ep, std::unique_ptr<upstream_connection> conn, nanos now);
    // Closes idle connections older than the pool's idle timeout.
    void sweep(nanos now);

    // Replaces the endpoint list after (re-)resolution, keeping the slots (and their idle
    // connections) of addresses that are still present.
    void set_endpoints(const std::vector<tcp::endpoint>& addresses);

private:
    const config::upstream_config* cfg_;
    std::vector<std::unique_ptr<endpoint_slot>> endpoints_;
    std::vector<std::unique_ptr<endpoint_slot>> retired_; // kept until their in-flight requests finish
    std::size_t cursor_ = 0;
};

} // namespace breakerbox::upstream
