// The fallback chain (docs/architecture.md, step 6): when a call ends with a trigger, the upstream's
// fallbacks are tried in order — static, stale, another upstream (failover), the queue, the explicit
// error — and the first that applies to the trigger and can answer does; one that cannot (no cached
// answer, a failover that failed too, a queue that does not take the request) passes to the next.
// Without one, the default answer: the upstream's own, or the proxy error. Each kind is a handler of
// its own with the failure points its tests enumerate (tests/unit/forward/fallback_chain_test.cpp).
// On the worker's thread.
#pragma once
#include "core/asio.hpp"
#include "forward/call_result.hpp"
#include "forward/forwarder.hpp"
#include "resilience/circuit_view.hpp"

#include <string_view>

namespace breakerbox::forward {

// What the fallbacks need from the call they answer for (the forwarder implements it).
class fallback_call {
public:
    // The client's request as the upstream gets it (prepared on first use: an answer that needs no
    // upstream request never pays for it).
    virtual http::request& prepared_request() = 0;
    // Some attempt's request may have reached an upstream.
    virtual bool maybe_sent() const = 0;
    // Whether the request can be sent again: false for an upload read beyond its replay buffer.
    virtual bool replayable() const = 0;
    virtual bool has_upload() const = 0;
    // The client's request as it is now (prepared or not) and its route (the target as the upstream
    // gets it, the client's Host or the absolute-form target's authority).
    virtual const http::request& request() const = 0;
    virtual const routing::route_match& route() const = 0;
    // The request through another upstream with all its policies but without its own upstream
    // fallbacks (a failover target), into `out`.
    virtual asio::awaitable<void> call_failover(runtime::upstream_handle& target, forward_result& out) = 0;
    // The upstream's own answer passed on (a streamed one takes a max_streams place: false when none is free).
    virtual bool pass_on(runtime::upstream_handle& up, forward_result& out) = 0;

protected:
    ~fallback_call() = default;
};

// What every fallback needs to know about the call it answers for.
struct fallback_cause {
    call_result result; // `out.response` holds the upstream's answer when result.error == ok
    config::fallback_trigger trigger;
    std::string_view reason;          // the trigger's name (X-Breakerbox-Fallback-Reason)
    resilience::circuit_view circuit; // what the next request finds (Retry-After, the 503's state)
    long retry_after;                 // whole seconds until the next probe; 0: none scheduled
};

// The chain for `r` (whose trigger is `trigger`) on `up`, into `out`. depth > 0 for a failover target,
// whose own failover and queue fallbacks are not followed (no chains or loops).
asio::awaitable<void> run_fallbacks(fallback_call& call, runtime::worker_context& worker, runtime::worker_generation& gen,
                                    runtime::upstream_handle& up, call_result r, config::fallback_trigger trigger, int depth,
                                    forward_result& out);

// The handlers, one per kind: true when it answered into `out`.
bool serve_static(const runtime::worker_generation& gen, const runtime::upstream_handle& up, std::size_t f,
                  const fallback_cause& cause, forward_result& out);
bool serve_stale(fallback_call& call, const runtime::upstream_handle& up, const fallback_cause& cause, nanos now,
                 forward_result& out);
asio::awaitable<bool> serve_failover(fallback_call& call, runtime::worker_generation& gen, const runtime::upstream_handle& up,
                                     const config::fallback_config& fb, const fallback_cause& cause, forward_result& out);
asio::awaitable<bool> serve_queue(fallback_call& call, queue::queue_store* store, const config::config& cfg,
                                  const runtime::upstream_handle& up, const config::queue_fallback_config& q,
                                  const fallback_cause& cause, forward_result& out);
bool serve_error(fallback_call& call, runtime::upstream_handle& up, const fallback_cause& cause, forward_result& out);

// Without a fallback: an upstream's failure answer as it is, or the explicit proxy error (the
// open-circuit 503 with Retry-After for circuit_open).
void default_answer(fallback_call& call, runtime::upstream_handle& up, const fallback_cause& cause, forward_result& out);

} // namespace breakerbox::forward
