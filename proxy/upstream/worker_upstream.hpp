// One upstream as seen by one worker: its resolved endpoints, the load-balancing cursor and the idle
// keep-alive connections. Worker-owned: only the owning worker's thread touches it, so nothing here is
// locked. NOTE: the per-endpoint connection limit is divided evenly among workers (rounded up), so no
// state is shared; a worker at its share does not borrow another's. NOTE: least-outstanding counts the requests this worker has
// in flight per endpoint (as Envoy's per-worker load balancers do), not the process-wide figure.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"
#include "tls/session_cache.hpp"
#include "upstream/endpoint_health.hpp"
#include "upstream/upstream_connection.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace breakerbox::tls {
class upstream_tls;
}

namespace breakerbox::upstream {

struct endpoint_slot {
    tcp::endpoint address;
    std::string label; // "127.0.0.1:7001"
    std::uint32_t outstanding = 0;
    std::uint32_t open_connections = 0; // idle + in use, on this worker
    bool retired = false;               // no longer resolved: finishes its in-flight requests, pools nothing
    // With outlier detection: the address's shared record (an ejected endpoint is skipped); else null.
    std::shared_ptr<endpoint_health> health;
    // For an upstream with tls: sessions to resume on new connections. Before `idle`: the pooled
    // connections' SSL objects point at it, so it goes after them.
    tls::session_cache tls_sessions;
    std::vector<std::unique_ptr<upstream_connection>> idle; // most recently used at the back
};

class worker_upstream {
public:
    // `seed` staggers the round-robin start so that workers do not all begin with the same endpoint;
    // `workers` shares pool.max_connections_per_endpoint out among them.
    // `tls`: the upstream's TLS context in this generation (null: plain HTTP).
    worker_upstream(const config::upstream_config& cfg, std::size_t seed, std::size_t workers, tls::upstream_tls* tls = nullptr);

    const config::upstream_config& cfg() const { return *cfg_; }
    tls::upstream_tls* tls() const noexcept { return tls_; }
    bool has_endpoints() const { return !endpoints_.empty(); }

    // Picks an endpoint by the configured policy, avoiding `avoid` when another one exists, and skipping
    // endpoints that outlier detection keeps out at `now` and those at their connection limit that have
    // no idle connection. nullptr: none usable (all_kept_out() says whether ejections are why).
    endpoint_slot* pick(nanos now, const endpoint_slot* avoid = nullptr);
    // Whether every endpoint is ejected at `now` (re-resolution can leave only ejected addresses).
    bool all_kept_out(nanos now) const;
    // Whether a request could get a connection to `ep` now (an idle one, or room for a new one).
    bool has_capacity(const endpoint_slot& ep) const
    {
        return connection_limit_ == 0 || !ep.idle.empty() || ep.open_connections < connection_limit_;
    }

    // Takes an idle connection that still looks usable, or nullptr. Stale ones are closed. A connection
    // used within the last 250 ms is trusted without a liveness check unless `always_check` (for a
    // request that must not be sent twice: a stale connection would cost it its answer).
    std::unique_ptr<upstream_connection> take_idle(endpoint_slot& ep, nanos now, bool always_check = false);
    // Returns a connection after a complete exchange; it is kept only within the pool limits.
    void give_back(endpoint_slot& ep, std::unique_ptr<upstream_connection> conn, nanos now);
    // Closes idle connections older than the pool's idle timeout.
    void sweep(nanos now);

    // Replaces the endpoint list after (re-)resolution, keeping the slots (and their idle
    // connections) of addresses that are still present. `health_of`: each address's outlier record
    // (null function: no outlier detection).
    using health_lookup = std::function<std::shared_ptr<endpoint_health>(const tcp::endpoint&)>;
    void set_endpoints(const std::vector<tcp::endpoint>& addresses, const health_lookup& health_of = {});

private:
    const config::upstream_config* cfg_;
    tls::upstream_tls* tls_;
    std::vector<std::unique_ptr<endpoint_slot>> endpoints_;
    std::vector<std::unique_ptr<endpoint_slot>> retired_; // kept until their in-flight requests finish
    std::size_t cursor_ = 0;
    std::uint32_t connection_limit_ = 0; // this worker's share; 0 = unlimited
};

} // namespace breakerbox::upstream
