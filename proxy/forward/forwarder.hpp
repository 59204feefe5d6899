// One request's journey to its upstream and back: prepare the upstream request, pick an endpoint,
// take a pooled connection (or open one), write and read under the request deadline, classify what
// happened, and produce exactly one response for the client — the upstream's or an explicit error.
#pragma once
#include "core/asio.hpp"
#include "core/error.hpp"
#include "forward/stream_types.hpp"
#include "http/message.hpp"
#include "resilience/client_watch.hpp"
#include "resilience/fallback_response.hpp"
#include "routing/router.hpp"
#include "runtime/worker_context.hpp"

#include <string_view>

namespace breakerbox::forward {

using resilience::client_watch;
using resilience::prerendered_answer;

struct client_info {
    std::string_view ip;
    tcp::socket* socket = nullptr; // watched while the request waits in a bulkhead queue
    client_watch* watch = nullptr; // watches the client while the upstream has the request
    // The request's body when it streams (longer than limits.request_buffer): the rest is read from the
    // client as the upstream takes it (docs/streaming.md). null: the body is the request's.
    upload_source* upload = nullptr;
    // Where the upstream's interim (1xx) responses go (forward/upstream_exchange.hpp); null: dropped.
    interim_sink* interim = nullptr;
};

struct forward_result {
    http::response response;
    proxy_error error = proxy_error::ok; // ok: the response came from the upstream
    std::string_view upstream;           // the routed upstream's name ("" when none matched)
    bool from_fallback = false;          // a fallback served it (X-Breakerbox-Fallback says which)
    // A static fallback rendered in advance answers instead of `response` (which stays empty); the
    // session writes it with this Retry-After (0: none).
    const prerendered_answer* prerendered = nullptr;
    long retry_after_seconds = 0;
    // The upstream's answer streams (its body is still on the connection) or switched protocols: the
    // session writes `response`'s head, then finish_streamed relays the rest. Empty otherwise.
    open_body body;
    runtime::upstream_handle* streamed_from = nullptr; // the upstream whose answer streams

    unsigned status() const noexcept { return prerendered ? prerendered->status : response.result_int(); }
};

// `req` is consumed (rewritten for the upstream). `gen` is the worker's generation the request was
// routed with (the caller keeps it alive). The answer goes to `out` (a fresh forward_result): the
// upstream's response is parsed into it and never moved on its way to the client. Never throws; every
// failure becomes a response.
asio::awaitable<void> forward_request(runtime::worker_context& worker, runtime::worker_generation& gen, http::request& req,
                                      const routing::route_match& route, const client_info& client, forward_result& out);

// How a queued request's delivery ended (queue/queue_delivery.hpp): ok when the upstream answered (its
// answer is in `response`); otherwise why not — circuit_open, bulkhead_full, queue_timeout,
// connection_limit and no_endpoint mean it was not sent.
struct delivery_answer {
    proxy_error error = proxy_error::ok;
    std::string detail;
    bool maybe_sent = false; // some attempt may have reached the upstream (then it was not "not sent")
};

// Sends `req` (a stored request, already as the upstream gets it) through `up`'s bulkhead, breaker and
// retry policy, as live traffic, without fallbacks. On the worker's thread.
asio::awaitable<delivery_answer> deliver_queued(runtime::worker_context& worker, runtime::worker_generation& gen,
                                                runtime::upstream_handle& up, http::request& req, http::response& response);

} // namespace breakerbox::forward
