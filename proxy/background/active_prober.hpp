// Probes an upstream whose circuit is open with a health request of breakerbox's own
// (circuit_breaker.half_open.probe), so that client requests are never the probes.
//
// Why: with Resilience4j's semantics a probe is a real client request, and against an upstream that
// hangs each probe keeps its client waiting for the whole request timeout — once per open period, for as
// long as the outage lasts. With an active probe, every client request gets the open-circuit answer (or
// its fallback) at once while the circuit is open or half-open; the prober waits for the open time,
// sends `GET <path>` on a connection of its own, records the outcome like any call (same
// classification, same successes_to_close), and the circuit closes when the upstream answers well.
//
// One coroutine per upstream with a probe path and per configuration generation, on the main
// io_context; it stops once `active()` turns false (its generation was replaced by a reload: the next
// generation starts its own prober, on the same breaker when the policy was kept).
#pragma once
#include "core/asio.hpp"
#include "resilience/upstream_resilience.hpp"
#include "tls/session_cache.hpp"

#include <functional>
#include <memory>
#include <vector>

namespace breakerbox::background {

struct probe_target {
    std::shared_ptr<resilience::upstream_resilience> shared; // the breaker and the classifier
    // The upstream's current addresses; replaced (on the main thread) when re-resolution finds others.
    std::shared_ptr<std::vector<tcp::endpoint>> endpoints;
    std::string host; // the Host header: host_rewrite, else the first endpoint as configured
};

asio::awaitable<void> run_active_prober(probe_target target, std::function<bool()> active);

struct probe_result {
    proxy_error error = proxy_error::ok; // ok: `status` is the upstream's answer
    unsigned status = 0;
    std::string detail;
};

// One health request (GET `path` with `host`) to one endpoint on a connection of its own, closed
// afterwards, all under `timeout`; with the upstream's TLS (the same context, name and trust as its
// requests) when `tls` is set. Also used by outlier detection's per-endpoint probe.
asio::awaitable<probe_result> probe_once(const tcp::endpoint& endpoint, const std::string& path, const std::string& host,
                                         nanos timeout, tls::upstream_tls* tls, tls::session_cache& sessions);

// A probe's result as the breaker sees it: the status classified, or the failure by its class
// (forward/outcome_table.hpp), as for a client request's attempt.
resilience::outcome classify_probe(const probe_result& r, const resilience::outcome_classifier& classifier);

} // namespace breakerbox::background
