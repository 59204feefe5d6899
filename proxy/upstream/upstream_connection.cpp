#include "upstream/upstream_connection.hpp"

#include "core/socket_peek.hpp"
#include "tls/tls_connection.hpp"

namespace breakerbox::upstream {

upstream_connection::upstream_connection(const asio::any_io_executor& ex, std::uint32_t& open_count)
    : stream(ex), open_count_(&open_count)
{
    ++*open_count_;
}

upstream_connection::~upstream_connection()
{
    if (tls)
        tls::forget_without_invalidating(*tls);
    tls.reset(); // the TLS stream refers to the socket: gone first
    --*open_count_;
}

bool upstream_connection::looks_alive() noexcept
{
    auto& socket = stream.socket();
    // With TLS a peer's close arrives as a close_notify record: data, so such a connection is dropped too.
    return socket.is_open() && buffer.size() == 0 && peek_receive_queue(socket) == peek_result::empty;
}

} // namespace breakerbox::upstream
