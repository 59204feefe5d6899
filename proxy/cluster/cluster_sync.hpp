// Circuit state shared across replicas through Redis (circuit_breaker.scope: cluster; docs/cluster.md).
//
// A task on the main thread: every sync_interval — and at once after a local transition (nudge) — it
// sends each clustered upstream's report (local state, window counts, the cluster probe's outcome) to
// Redis in one pipelined call, where cluster_script decides atomically, and applies the verdicts to the
// upstreams' cluster gates, which workers read with one atomic load. Nothing on the request path waits
// for Redis.
//
// Redis down, slow, stopped or restarted: the call misses its deadline (command_timeout) or fails, the
// gates are cleared at once (local-only breaking), the client reconnects with jittered back-off and loads
// its scripts again; at most one call is outstanding. A restarted, empty Redis has no verdict: nothing
// old comes back.
//
// Main-thread-owned: the loop, the client and the status the admin listener (also on the main thread)
// reads; nudge() may be called from any thread.
#pragma once
#include "resilience/circuit_view.hpp"

#include "cluster/redis_client.hpp"
#include "config/config.hpp"
#include "core/asio.hpp"
#include "core/thread_owner.hpp"
#include "resilience/cluster_gate.hpp"
#include "runtime/proxy_state.hpp"
#include <functional>

#include <array>
#include <map>
#include <memory>
#include <string>

namespace breakerbox::cluster {

// What the last sync learnt about one upstream.
struct upstream_view {
    resilience::cluster_verdict verdict = resilience::cluster_verdict::closed;
    std::string reason;
    std::int64_t live_replicas = 0, open_replicas = 0, calls = 0, failures = 0;
    std::int64_t ms_left = 0;
    bool probing = false; // this replica holds the probe lease
};

struct sync_status {
    std::string replica_id;
    std::string address;
    bool redis_up = false;
    std::string last_error;
    std::uint64_t syncs = 0;
    std::uint64_t commands = 0;                                           // sent to Redis
    std::array<std::uint64_t, std::size(redis_failure_names)> failures{}; // by redis_failure
    double clock_offset_seconds = 0;                                      // Redis TIME minus this host's clock, at the last sync
    // Sync latency, seconds: cumulative counts for sync_buckets, count and sum.
    static constexpr std::array<double, 9> sync_buckets{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25};
    std::array<std::uint64_t, sync_buckets.size()> latency_cumulative{};
    std::uint64_t latency_count = 0;
    double latency_sum = 0;
    std::map<std::string, upstream_view> upstreams;
};

// An operator's cluster-wide action (admin API): forced_open, forced_closed or reset.
struct operator_action {
    std::string upstream;
    std::string state;
    nanos lasts = 0; // 0: until reset
    std::string who;
};

class cluster_sync {
public:
    // `clk`: the clock the sync reads (its latency, the verdicts' times, the wall clock sent to Redis).
    cluster_sync(asio::io_context& main, runtime::proxy_state& state, const config::cluster_config& cfg,
                 const clock& clk = steady_clock_source::instance());

    void start();
    // Syncs now (a local transition, a reload). Any thread.
    void nudge();

    // Main thread.
    const sync_status& status() const noexcept { return status_; }
    // The action in Redis, then a sync so this replica applies it at once. An error text, or "".
    asio::awaitable<std::string> apply_operator_action(operator_action action);

    // Main thread, before start(): told when a verdict changes what this replica's requests find.
    void set_circuit_observer(std::function<void(const resilience::circuit_change&)> observer)
    {
        circuit_observer_ = std::move(observer);
    }

    // The replica id: the configured one, or host name + "-" + pid.
    static std::string default_replica_id();

private:
    asio::awaitable<void> run();
    asio::awaitable<bool> ensure_connected();
    nanos next_wait() const;
    asio::awaitable<void> sync_once();
    std::vector<std::string> sync_command(const resilience::upstream_resilience& shared, nanos now) const;
    bool failed_reply(const redis_result& result);
    void record_success(const redis_result& result, double took, std::int64_t sent_ms);
    void fail(redis_failure why, const std::string& detail);
    void apply(resilience::upstream_resilience& shared, const redis_value& reply, nanos now);
    void observe_latency(double seconds);
    // Runs `change` on one upstream's gate and tells the observer when what requests find changed.
    void set_gate(resilience::upstream_resilience& shared, resilience::cluster_verdict verdict, std::int64_t ms_left,
                  nanos now) const;
    template <class Change>
    void announcing(resilience::upstream_resilience& shared, nanos now, const std::string& reason, Change&& change);
    std::string key(const std::string& upstream, std::string_view what) const;

    asio::io_context& main_;
    runtime::proxy_state& state_;
    const config::cluster_config cfg_;
    const clock& clk_;
    redis_client client_;
    asio::steady_timer wake_;
    std::string sync_sha_, operator_sha_;
    nanos next_connect_ = 0;
    bool nudged_ = false; // a nudge arrived since the current sync started
    nanos backoff_ = 0;
    std::uint64_t rng_;
    sync_status status_;
    thread_owner owner_;
    std::function<void(const resilience::circuit_change&)> circuit_observer_;
};

} // namespace breakerbox::cluster
