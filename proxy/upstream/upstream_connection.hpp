// One keep-alive connection to an upstream endpoint. Worker-owned: lives on the io_context of the
// worker that opened it and is only ever touched from that worker's thread.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"
#include "http/message_rules.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace breakerbox::tls {
struct tls_connection;
}

namespace breakerbox::upstream {

struct upstream_connection {
    // `open_count`: the endpoint's count of open connections, kept while this connection exists.
    upstream_connection(const asio::any_io_executor& ex, std::uint32_t& open_count);
    ~upstream_connection();
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    deadline_stream stream;
    beast::flat_buffer buffer;
    std::string head; // the serialised request head, capacity reused across requests
    // The response being read, and the trailer fence on its parser (reset after each exchange). Here,
    // not in the exchange's coroutine frame: the parser alone is half of the ~1 KiB Asio recycles.
    std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>> parser;
    std::optional<http::trailer_fence> fence;
    std::uint32_t requests = 0; // requests sent on this connection so far
    nanos idle_since = 0;
    bool reused = false; // taken from the pool: a close before any response byte may be a stale one
    // The last streamed upload on this connection (docs/streaming.md), here rather than in the exchange's
    // coroutine frame: why it stopped (the client's read error, or the upstream's write error), how long
    // it took, and whether the upstream stopped taking the body (then the connection is never reused).
    error_code upload_error;
    nanos upload_took = 0;
    bool request_incomplete = false;
    // TLS over `stream`'s socket for an upstream with tls (null: plain HTTP). Its context is the
    // endpoint's generation's: the pool never hands it to a request under another name or trust.
    std::unique_ptr<tls::tls_connection> tls;

    // True when the peer has not closed the connection nor sent anything unsolicited: a non-blocking
    // peek that must find nothing to read. Catches the common "upstream closed an idle connection" case
    // before the request is written. A close that crosses the request on the wire is reported by the
    // exchange as stale_connection, and the forwarder resends only a request that may be sent twice.
    bool looks_alive() noexcept;

    // An idle connection in the pool needs no buffers: the pool's sweep frees them once it has been idle
    // a while (a busy connection keeps them, so requests do not allocate them again).
    void free_buffers() noexcept
    {
        fence.reset();
        parser.reset();
        if (buffer.size() == 0)
            buffer.shrink_to_fit();
        std::string().swap(head);
    }

private:
    std::uint32_t* open_count_;
};

} // namespace breakerbox::upstream
