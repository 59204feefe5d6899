#include "upstream/upstream_connection.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace breakerbox::upstream {

bool upstream_connection::looks_alive() noexcept
{
    auto& socket = stream.socket();
    if (!socket.is_open() || buffer.size() != 0)
        return false;
    char probe;
    ssize_t n = ::recv(socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

} // namespace breakerbox::upstream
