// The cluster's verdict on one upstream (circuit_breaker.scope: cluster, docs/cluster.md), as the
// workers see it: one atomic word the main thread's sync task writes after each exchange with Redis, and
// every request of the upstream reads with one load, before its local breaker. Nothing on the request
// path ever waits for Redis.
//
// The verdict expires by itself (`expires_at`, a few sync intervals ahead): when Redis goes away, or the
// sync stops, the upstream is back to local-only breaking without anyone clearing it — stale data never
// keeps a circuit open.
//
// Shared by all workers; lock-free. The probe token: while this replica holds the cluster's probe lease,
// exactly one request passes as the cluster's probe (a compare-and-swap takes the token), and its outcome
// waits here for the next sync.
#pragma once
#include "core/clock.hpp"
#include "core/enum_names.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <span>

namespace breakerbox::resilience {

// closed: no verdict (the local breaker decides); open: the cluster's circuit is open; half_open: its
// open time is over and another replica holds the probe lease (this one keeps rejecting); probing: this
// replica holds the lease (one request passes as the probe); forced_open / forced_closed: an operator's
// cluster-wide action.
enum class cluster_verdict : std::uint8_t { closed, open, half_open, probing, forced_open, forced_closed };
inline constexpr enum_name<cluster_verdict> cluster_verdict_names[]{
    {cluster_verdict::closed, "closed"},           {cluster_verdict::open, "open"},
    {cluster_verdict::half_open, "half_open"},     {cluster_verdict::probing, "probing"},
    {cluster_verdict::forced_open, "forced_open"}, {cluster_verdict::forced_closed, "forced_closed"}};
constexpr std::span<const enum_name<cluster_verdict>> names_of(cluster_verdict) noexcept { return cluster_verdict_names; }

enum class gate_admission : std::uint8_t { pass, reject, probe };

// The verdict in force and how long it has left (ns): for open, the cluster's open time (until it says
// who probes); for half_open, until this replica's verdict expires (the next syncs tell the probe's
// outcome); for forced_open, the operator's time; for probing, the lease. 0 when closed.
struct cluster_reading {
    cluster_verdict verdict = cluster_verdict::closed;
    nanos left = 0;
};
enum class probe_outcome : std::uint8_t { none, success, failure };

class cluster_gate {
public:
    // Main thread: the verdict until `expires_at` (the clock's nanoseconds). Entering `probing` hands
    // out one probe token.
    // `token_until`: while probing, the token is good until then (the lease's end). The token is issued
    // once per lease: not again while the probe it let through is still running (a Redis hiccup or a
    // repeated verdict must not let a second probe go).
    void set(cluster_verdict v, nanos expires_at, nanos token_until = 0) noexcept
    {
        const auto previous = verdict_of(word_.load(std::memory_order_relaxed));
        const auto token = token_.load(std::memory_order_acquire);
        if (v == cluster_verdict::probing && previous != cluster_verdict::probing && token != token_taken) {
            probe_outcome_.store(static_cast<std::uint8_t>(probe_outcome::none), std::memory_order_relaxed);
            token_.store(token_available, std::memory_order_release);
        } else if (v != cluster_verdict::probing && token != token_taken) {
            forget_probe();
        }
        token_until_.store(token_until, std::memory_order_relaxed);
        word_.store(encode(v, expires_at), std::memory_order_release);
    }
    // Redis out of reach: local-only at once. A probe in flight keeps its token (it is not issued again).
    void clear() noexcept
    {
        if (token_.load(std::memory_order_acquire) != token_taken)
            forget_probe();
        word_.store(0, std::memory_order_release);
    }

    // Hot path: what the cluster says about one request now. One load when there is no verdict.
    gate_admission admit(nanos now) noexcept
    {
        const auto w = word_.load(std::memory_order_acquire);
        if (w == 0 || now >= expiry_of(w))
            return gate_admission::pass;
        switch (verdict_of(w)) {
        case cluster_verdict::open:
        case cluster_verdict::half_open:
        case cluster_verdict::forced_open: return gate_admission::reject;
        case cluster_verdict::probing: {
            std::uint8_t available = token_available; // a load first: no CAS traffic once it is gone
            if (token_.load(std::memory_order_relaxed) != token_available || now >= token_until_.load(std::memory_order_relaxed))
                return gate_admission::reject;
            return token_.compare_exchange_strong(available, token_taken, std::memory_order_acq_rel) ? gate_admission::probe
                                                                                                     : gate_admission::reject;
        }
        default: return gate_admission::pass;
        }
    }

    // A request that took the token but was not sent (the local breaker refused it, the client left):
    // the next request probes instead.
    void return_token() noexcept { token_.store(token_available, std::memory_order_release); }

    // The probe's outcome (any worker), for the sync to report at once (the observer nudges it).
    void record_probe(bool success) noexcept
    {
        probe_outcome_.store(static_cast<std::uint8_t>(success ? probe_outcome::success : probe_outcome::failure),
                             std::memory_order_release);
        token_.store(token_none, std::memory_order_release);
        if (auto* observer = probe_observer())
            (*observer)();
    }
    // Set once at start-up, before any worker runs: called on the worker that recorded a probe outcome
    // (it must only hand over: the cluster sync's nudge posts to the main thread).
    static void set_probe_observer(void (*observer)()) noexcept { probe_observer() = observer; }
    // Whether this replica's probe is being sent now (the token taken, no outcome yet): the lease is
    // renewed for it; a holder without traffic lets its lease expire, so another replica can probe.
    bool probe_in_flight() const noexcept { return token_.load(std::memory_order_acquire) == token_taken; }
    // Main thread: the outcome waiting to be reported (it stays until the verdict moves on).
    probe_outcome pending_probe() const noexcept
    {
        return static_cast<probe_outcome>(probe_outcome_.load(std::memory_order_acquire));
    }

    // The verdict in force at `now` (closed when none or expired).
    cluster_verdict verdict(nanos now) const noexcept
    {
        const auto w = word_.load(std::memory_order_acquire);
        return w == 0 || now >= expiry_of(w) ? cluster_verdict::closed : verdict_of(w);
    }

    cluster_reading reading(nanos now) const noexcept
    {
        const auto w = word_.load(std::memory_order_acquire);
        if (w == 0 || now >= expiry_of(w))
            return {};
        const auto v = verdict_of(w);
        // open, forced_open and probing carry their end as token_until; half_open ends with the verdict.
        const nanos until = v == cluster_verdict::half_open ? expiry_of(w) : token_until_.load(std::memory_order_relaxed);
        return {v, std::max<nanos>(0, until - now)};
    }

private:
    static constexpr std::uint8_t token_none = 0, token_available = 1, token_taken = 2;

    void forget_probe() noexcept
    {
        probe_outcome_.store(static_cast<std::uint8_t>(probe_outcome::none), std::memory_order_relaxed);
        token_.store(token_none, std::memory_order_release);
    }

    static void (*&probe_observer() noexcept)()
    {
        static void (*observer)() = nullptr;
        return observer;
    }

    // verdict in the low 3 bits, the expiry in milliseconds above them.
    static std::uint64_t encode(cluster_verdict v, nanos expires_at) noexcept
    {
        const auto ms = static_cast<std::uint64_t>(expires_at / 1'000'000 + 1);
        return (ms << 3) | static_cast<std::uint64_t>(v);
    }
    static cluster_verdict verdict_of(std::uint64_t w) noexcept { return static_cast<cluster_verdict>(w & 7); }
    static nanos expiry_of(std::uint64_t w) noexcept { return static_cast<nanos>(w >> 3) * 1'000'000; }

    std::atomic<std::uint64_t> word_{0};
    std::atomic<std::uint8_t> token_{0}; // token_none, token_available, token_taken
    std::atomic<nanos> token_until_{0};
    std::atomic<std::uint8_t> probe_outcome_{0};
};

} // namespace breakerbox::resilience
