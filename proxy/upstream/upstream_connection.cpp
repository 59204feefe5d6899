#include "upstream/upstream_connection.hpp"

#include "core/socket_peek.hpp"

namespace breakerbox::upstream {

bool upstream_connection::looks_alive() noexcept
{
    auto& socket = stream.socket();
    return socket.is_open() && buffer.size() == 0 && peek_receive_queue(socket) == peek_result::empty;
}

} // namespace breakerbox::upstream
