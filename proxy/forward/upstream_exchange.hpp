// One request/response exchange with one endpoint, under a deadline: connect (or reuse a pooled
// connection), write, read. Delivers the response or the reason it failed; the connection goes back to
// the pool only after a complete, reusable exchange.
#pragma once
#include "core/asio.hpp"
#include "core/error.hpp"
#include "core/local_counter.hpp"
#include "forward/stream_types.hpp"
#include "http/message.hpp"
#include "resilience/client_watch.hpp"
#include "upstream/worker_upstream.hpp"

#include <chrono>
#include <span>

namespace breakerbox::forward {

using resilience::client_watch;

struct exchange_result {
    proxy_error error = proxy_error::ok; // ok: the response is in the caller's message
    std::string detail;                  // human-readable cause (for the JSON body and logs)
    nanos finished = 0;                  // the clock when the response was complete (0: not read)
    // upstream_reset on a reused pooled connection that broke after the request (or part of it) was
    // written and before any response byte: usually the peer closed the idle connection just as we
    // wrote (the benign race), but the upstream may also have read the request and died. Sending it again
    // is the caller's decision (a resend is a retry: RFC 9110 §9.2.2, the retry rules and the budget).
    bool stale_connection = false;
    // Whether any byte of the request may have reached the upstream (false: refused before sending,
    // connect failures): a request that must not be repeated may still go elsewhere when false.
    bool maybe_sent = false;
    // How long a streamed upload took (0 without one): not the upstream's time to answer, so the
    // caller measures slowness and duration without it.
    nanos upload_took = 0;
};

// What one attempt may do and where it reports: its deadline and limits, the watches that may end it,
// streaming. Built by the forwarder with designated initialisers (every field named), per attempt.
struct attempt_spec {
    std::chrono::steady_clock::time_point deadline;
    nanos connect_timeout;
    std::uint64_t max_response_body;
    nanos now = 0; // the clock as the caller read it just before (clock readings are not free)
    // With a watch: the exchange is cancelled (proxy_error::circuit_open) once this circuit's trip count
    // differs from `trips_at_admission` (read before the call's permit was taken).
    const resilience::circuit_breaker* cancel_on_trip = nullptr;
    std::uint64_t trips_at_admission = 0;
    // With a watch and slow_calls.in_flight: the call's permit, recorded as slow by the worker's sweep
    // once the call has run that long.
    resilience::breaker_permit* slow_permit = nullptr;
    // The request may be sent again if this exchange fails (its method is retryable). When false, a
    // pooled connection is checked for a peer's close before it is used however recently it was used
    // (one MSG_PEEK), to keep the race that would cost such a request its answer rare.
    bool resendable = true;
    // Skip the pool: a resend after a stale pooled connection goes on a new connection.
    bool fresh_connection = false;
    // The clock `now` and `finished` are read from, and deadlines derived from (injected: the worker's).
    const clock* clk = &steady_clock_source::instance();
    // Where the TLS handshakes of new connections are counted, by tls::handshake_result (empty: nowhere).
    std::span<local_counter> tls_handshakes;
    // Streaming (docs/streaming.md). With `body`, an answer whose body is longer than `response_buffer`,
    // of unknown length or of a streaming type (http::streams_response) is left on the connection for
    // the caller to relay — its head is in `response`, its connection in *body; without, every body is
    // read whole, up to max_response_body.
    open_body* body = nullptr;
    std::uint64_t response_buffer = 0;
    // The request's body still on the client's connection (null: the body is req.body()); each of its
    // writes runs under `stream_idle_timeout`.
    upload_source* upload = nullptr;
    nanos stream_idle_timeout = 0;
    // The request asks to switch protocols and may (streaming.upgrades): a 101 is a tunnel, left in
    // *body with upgraded set. Otherwise a 101 is an invalid response.
    bool upgrade = false;
    // After an upload: the time its response head may take (the attempt's deadline counted from the
    // end of the body, not from its start).
    nanos head_timeout = 0;
    // The client's interim responses go here (nullptr: they are dropped — queue deliveries, probes,
    // HTTP/1.0 clients).
    interim_sink* interim = nullptr;
};

// `response` is assigned only on success: it is the caller's, so that the answer is not moved through
// every layer on its way to the client. `watch` (optional): the client's connection is watched
// meanwhile; if the client goes away the exchange is cancelled and ends with proxy_error::client_closed
// (and with limits.cancel_on_trip, if that circuit opens, with proxy_error::circuit_open).
asio::awaitable<exchange_result> exchange(upstream::worker_upstream& up, upstream::endpoint_slot& ep, const http::request& req,
                                          const attempt_spec& limits, http::response& response, client_watch* watch = nullptr);

} // namespace breakerbox::forward
