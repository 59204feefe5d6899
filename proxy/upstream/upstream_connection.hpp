// One keep-alive connection to an upstream endpoint. Worker-owned: lives on the io_context of the
// worker that opened it and is only ever touched from that worker's thread.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"

#include <cstdint>
#include <string>

namespace breakerbox::upstream {

struct upstream_connection {
    // `open_count`: the endpoint's count of open connections, kept while this connection exists.
    upstream_connection(const asio::any_io_executor& ex, std::uint32_t& open_count) : stream(ex), open_count_(&open_count)
    {
        ++*open_count_;
    }
    ~upstream_connection() { --*open_count_; }
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    deadline_stream stream;
    beast::flat_buffer buffer;
    std::string head;           // the serialised request head, capacity reused across requests
    std::uint32_t requests = 0; // requests sent on this connection so far
    nanos idle_since = 0;
    bool reused = false;        // taken from the pool: a close before any response byte may be a stale one

    // True when the peer has not closed the connection nor sent anything unsolicited: a non-blocking
    // peek that must find nothing to read. Catches the common "upstream closed an idle connection" case
    // before the request is written. A close that crosses the request on the wire is reported by the
    // exchange as stale_connection, and the forwarder resends only a request that may be sent twice.
    bool looks_alive() noexcept;

    // An idle connection in the pool needs no buffers: the pool's sweep frees them once it has been idle
    // a while (a busy connection keeps them, so requests do not allocate them again).
    void free_buffers() noexcept
    {
        if (buffer.size() == 0)
            buffer.shrink_to_fit();
        std::string().swap(head);
    }

private:
    std::uint32_t* open_count_;
};

} // namespace breakerbox::upstream
