// The rest of a streamed answer, after its head went to the client (docs/streaming.md): its body
// relayed, or the tunnel of a 101 run, and what that end means for the upstream — the breaker, the
// stream counters, abandoned retries, the stale cache. Beside the relay (forward/stream_relay), which
// moves the bytes. On the worker's thread.
#pragma once
#include "core/asio.hpp"
#include "forward/forwarder.hpp"

namespace breakerbox::forward {

// After a streamed answer's head went to the client: relays its body, or runs the tunnel of a 101
// (docs/streaming.md). A body that breaks is one more failure for the upstream's breaker (its call was
// recorded when the head arrived) and its retries are counted as abandoned; a complete answer to a GET
// is stored in the stale cache when it fits. `req`: the request as it was sent upstream;
// `client_buffer`: bytes the client sent beyond the request (the tunnel's first ones). Returns whether
// the client's connection may carry another request: false after a tunnel, or when the relay failed —
// then the caller must abort the connection (the client sees the message cut, never silently short).
// `watch`: the client's (nullptr: none), so that a client leaving a quiet stream is noticed at once.
struct streamed_end {
    bool completed = false;
};
asio::awaitable<streamed_end> finish_streamed(runtime::worker_context& worker, const config::limits_config& limits,
                                              const http::request& req, forward_result& out, deadline_stream& client,
                                              beast::flat_buffer& client_buffer, bool chunked_to_client,
                                              resilience::client_watch* watch);

} // namespace breakerbox::forward
