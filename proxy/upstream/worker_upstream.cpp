#include "upstream/worker_upstream.hpp"

#include <algorithm>

namespace breakerbox::upstream {
namespace {
constexpr nanos recently_used = millis(250);
// A pooled connection idle this long gives its read buffer and request-head string back.
constexpr nanos buffers_kept_while_idle = seconds(1);
} // namespace

worker_upstream::worker_upstream(const config::upstream_config& cfg, std::size_t seed, std::size_t workers,
                                 tls::upstream_tls* tls)
    : cfg_(&cfg), tls_(tls), cursor_(seed)
{
    const auto limit = cfg.pool.max_connections_per_endpoint;
    if (limit > 0)
        connection_limit_ = static_cast<std::uint32_t>((limit + workers - 1) / std::max<std::size_t>(workers, 1));
}

endpoint_slot* worker_upstream::pick(nanos now, const endpoint_slot* avoid)
{
    const std::size_t n = endpoints_.size();
    if (n == 0)
        return nullptr;
    const std::size_t start = cursor_++;
    endpoint_slot* chosen = nullptr;
    endpoint_slot* fallback = nullptr; // `avoid` itself, when it is the only usable one
    // Round robin takes the first usable endpoint from the rotating cursor; least-outstanding scans
    // them all from there, so that ties are spread instead of always hitting the first slot.
    for (std::size_t i = 0; i < n; ++i) {
        endpoint_slot* ep = endpoints_[(start + i) % n].get();
        if (!has_capacity(*ep) || (ep->health && !ep->health->in_load_balancing(now)))
            continue;
        if (ep == avoid) {
            fallback = ep;
            continue;
        }
        if (cfg_->load_balancing == config::lb_policy::round_robin) {
            cursor_ = start + i + 1;
            return ep;
        }
        if (!chosen || ep->outstanding < chosen->outstanding)
            chosen = ep;
    }
    return chosen ? chosen : fallback;
}

bool worker_upstream::all_kept_out(nanos now) const
{
    return !endpoints_.empty() && std::all_of(endpoints_.begin(), endpoints_.end(), [now](const auto& ep) {
        return ep->health && !ep->health->in_load_balancing(now);
    });
}

std::unique_ptr<upstream_connection> worker_upstream::take_idle(endpoint_slot& ep, nanos now, bool always_check)
{
    while (!ep.idle.empty()) {
        auto conn = std::move(ep.idle.back());
        ep.idle.pop_back();
        const nanos idle_for = now - conn->idle_since;
        // Peers close idle keep-alive connections after seconds, not microseconds: a connection used
        // a moment ago is trusted without the liveness syscall (an idempotent request that meets a
        // stale one is sent again, as a retry) unless the request must not be sent twice.
        if (idle_for < cfg_->pool.idle_timeout && ((idle_for < recently_used && !always_check) || conn->looks_alive())) {
            conn->reused = true;
            return conn;
        }
        error_code ignored;
        conn->stream.socket().close(ignored);
    }
    return nullptr;
}

void worker_upstream::give_back(endpoint_slot& ep, std::unique_ptr<upstream_connection> conn, nanos now)
{
    if (ep.retired || ep.idle.size() >= cfg_->pool.max_idle_per_endpoint ||
        conn->requests >= cfg_->pool.max_requests_per_connection) {
        error_code ignored;
        conn->stream.socket().close(ignored);
        return;
    }
    conn->idle_since = now;
    conn->stream.expires_never(); // an idle connection must not be closed by a stale request deadline
    ep.idle.push_back(std::move(conn));
}

void worker_upstream::sweep(nanos now)
{
    for (auto& ep : endpoints_) {
        auto& idle = ep->idle;
        auto stale = std::stable_partition(idle.begin(), idle.end(),
                                           [&](const auto& c) { return now - c->idle_since >= cfg_->pool.idle_timeout; });
        for (auto it = idle.begin(); it != stale; ++it) {
            error_code ignored;
            (*it)->stream.socket().close(ignored);
        }
        idle.erase(idle.begin(), stale);
        for (auto& c : idle)
            if (now - c->idle_since >= buffers_kept_while_idle)
                c->free_buffers();
    }
    // A streamed answer or a tunnel holds its connection (counted in open_connections) long after its
    // exchange: its slot stays until that connection is gone too.
    std::erase_if(retired_, [](const auto& ep) { return ep->outstanding == 0 && ep->open_connections == 0; });
}

void worker_upstream::set_endpoints(const std::vector<tcp::endpoint>& addresses, const health_lookup& health_of)
{
    std::vector<std::unique_ptr<endpoint_slot>> next;
    for (const auto& address : addresses) {
        auto same =
            std::find_if(endpoints_.begin(), endpoints_.end(), [&](const auto& ep) { return ep && ep->address == address; });
        if (same != endpoints_.end()) {
            next.push_back(std::move(*same));
        } else {
            next.push_back(std::make_unique<endpoint_slot>());
            next.back()->address = address;
            next.back()->label = endpoint_health::label_of(address);
        }
        next.back()->health = health_of ? health_of(address) : nullptr; // the detector keeps records by address
    }
    // Slots that disappeared close their idle connections at once; their in-flight requests still
    // point at them, so they are parked in retired_ until sweep() sees them unused.
    for (auto& old : endpoints_) {
        if (!old)
            continue;
        for (auto& conn : old->idle) {
            error_code ignored;
            conn->stream.socket().close(ignored);
        }
        old->idle.clear();
        old->retired = true;
        retired_.push_back(std::move(old));
    }
    endpoints_ = std::move(next);
}

} // namespace breakerbox::upstream
