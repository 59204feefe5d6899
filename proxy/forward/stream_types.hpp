// What a streamed exchange hands from layer to layer (docs/streaming.md): the client's request body that
// is still on the client's connection (an upload), and the upstream's answer whose body — or, after a
// 101, whose tunnel — is still on the upstream connection. Worker-owned, like the session and the
// connection they refer to.
#pragma once
#include "core/asio.hpp"
#include "core/error.hpp"
#include "http/message.hpp"
#include "resilience/concurrency_limit.hpp"

#include <cstdint>
#include <memory>
#include <string_view>

namespace breakerbox::upstream {
struct upstream_connection;
struct endpoint_slot;
class worker_upstream;
} // namespace breakerbox::upstream

namespace breakerbox::forward {

// The body of a request too long for the replay buffer (limits.request_buffer), read from the client
// piece by piece as the upstream takes it. Implemented by the session, which owns the client's
// connection. `next` yields the next piece (valid until the next call), an empty piece at the end;
// errors: beast::error::timeout (the client sent nothing for streaming.idle_timeout), the read's error,
// or a framing error of a chunked body. The replay prefix (what was read before the upstream was
// chosen) comes first and can be yielded again by `rewind` until a byte beyond it has been read.
class upload_source {
public:
    virtual ~upload_source() = default;
    virtual asio::awaitable<error_code> next(std::string_view& piece) = 0;
    // Starts again from the prefix; false once committed (a byte beyond the prefix was read).
    virtual bool rewind() = 0;
    bool committed() const noexcept { return committed_; }
    // Framing towards the upstream: chunked (the client's was, or its length is unknown) or this
    // Content-Length.
    bool chunked = false;
    std::uint64_t content_length = 0;

protected:
    bool committed_ = false;
};

// The upstream's answer when its body was not read (it streams) or it switched protocols (101): the
// connection, positioned just after the response head (bytes of the body may be in its buffer), and
// where it goes back to when the body ends cleanly. Empty when the answer was buffered.
struct open_body {
    std::unique_ptr<upstream::upstream_connection> conn;
    upstream::worker_upstream* up = nullptr;
    upstream::endpoint_slot* ep = nullptr;
    bool upgraded = false;             // a 101: the connection is a tunnel now
    bool known_length = false;         // Content-Length framing (else chunked or close-delimited)
    std::uint64_t length = 0;          // the Content-Length, when known
    bool keep_alive = false;           // the upstream lets the connection carry another request
    resilience::concurrency_slot slot; // the stream's or tunnel's place (max_streams / max_tunnels)

    open_body() = default;
    open_body(open_body&&) noexcept = default;
    open_body& operator=(open_body&&) noexcept = default;
    ~open_body();
    explicit operator bool() const noexcept { return conn != nullptr; }
    // Drops the answer: the connection closes (its body is not read to keep it).
    void reset() noexcept;
};

// Where an interim (1xx) response goes: RFC 9110 §15.2 — an intermediary MUST forward the 1xx responses
// it did not ask for (never to an HTTP/1.0 client). The downstream session writes them to its client,
// on gateway routes and proxy (absolute-form) requests alike: 103 Early Hints is exactly what a browser
// behind either wants. 100 Continue is breakerbox's own business (it answers the client's Expect
// itself and never forwards Expect), and 101 ends the exchange, so neither comes here.
class interim_sink {
public:
    // `res` is the upstream's interim head as parsed (its hop-by-hop fields still in it). Errors are the
    // sink's to swallow: a client that left is noticed by its watch, and the exchange goes on.
    virtual asio::awaitable<void> forward_interim(const http::response& res) = 0;

protected:
    ~interim_sink() = default;
};

} // namespace breakerbox::forward
