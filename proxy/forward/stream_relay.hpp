// Relays what streams after the heads (docs/streaming.md): a response body from the upstream
// connection to the client piece by piece, and the two directions of an upgraded connection (a
// tunnel). Memory per exchange is the relay buffer (limits.stream_buffer) whatever the length; nothing
// more is read from one side until the other has taken what was read (back-pressure both ways).
// Worker-owned: runs in the session's coroutine, on its worker.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"
#include "forward/stream_types.hpp"
#include "resilience/client_watch.hpp"
#include "runtime/request_stats.hpp"

#include <atomic>
#include <string>

namespace breakerbox::resilience {
class circuit_breaker;
}

namespace breakerbox::forward {

struct relay_options {
    nanos idle_timeout = 0;         // no byte from the upstream, or no progress writing to the client, this long
    nanos total_timeout = 0;        // the whole relay (0: none)
    std::size_t buffer_size = 0;    // bytes read from the upstream at most at once
    bool chunked_to_client = false; // the client gets the body chunk-framed (HTTP/1.1, length unknown)
    // The stale cache's copy: the body is collected here while it stays within `capture_limit` bytes
    // (nullptr: not collected). Cleared when it outgrows the limit.
    std::string* capture = nullptr;
    std::size_t capture_limit = 0;
    // The client's watch (nullptr: none): armed on the upstream connection while the relay runs, so a
    // client that leaves while the relay waits on a quiet upstream (an SSE feed, a long poll) ends it at
    // once, as client_closed — the upstream connection closed, nothing recorded for the breaker — instead
    // of holding both until the idle timeout and then counting as the upstream's failure.
    resilience::client_watch* watch = nullptr;
    nanos now = 0; // when the relay starts (the watch's age counts from here)
    // The clock the idle and total limits are read from (injected: the worker's).
    const clock* clk = &steady_clock_source::instance();
};

struct relay_outcome {
    runtime::stream_end end = runtime::stream_end::completed;
    std::uint64_t bytes = 0; // body bytes the client was sent
    bool captured = false;   // *capture holds the whole body
};

// Relays `body`'s rest to the client after its head was written. Completed: the body ended as framed
// (the connection went back to the pool when the upstream allows). Otherwise the caller must abort the
// client's connection (the client sees a truncated message, never a short one that looks whole).
asio::awaitable<relay_outcome> relay_response_body(deadline_stream& client, open_body& body, const relay_options& opt);

struct tunnel_options {
    nanos idle_timeout = 0;  // no byte either way this long ends the tunnel
    nanos total_timeout = 0; // 0: none
    std::size_t buffer_size = 0;
    // streaming.close_tunnels_on_open: the tunnel ends when this circuit's trip count moves from `trips`.
    const resilience::circuit_breaker* breaker = nullptr;
    std::uint64_t trips = 0;
    // The process's drain flag: once it is set, the tunnel runs for `drain_timeout` less a margin and is
    // then ended (`drained`), so that it closes before the process stops at the drain timeout.
    const std::atomic<bool>* draining = nullptr;
    nanos drain_timeout = 0;
    const clock* clk = &steady_clock_source::instance(); // the limits' clock (injected: the worker's)
};

// Relays both directions of an upgraded connection until both have ended (each side's end of input is
// passed on as a half-close), one side fails, or a timeout: bytes already read from either side
// (`client_buffer`, the upstream connection's buffer) go first. Both connections are closed after.
asio::awaitable<runtime::stream_end> run_tunnel(deadline_stream& client, beast::flat_buffer& client_buffer, open_body& body,
                                                const tunnel_options& opt);

} // namespace breakerbox::forward
