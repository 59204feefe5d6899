#include "core/socket_peek.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace breakerbox {

peek_result peek_receive_queue(tcp::socket& socket) noexcept
{
    char probe;
    const ssize_t n = ::recv(socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return peek_result::data;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return peek_result::empty;
    return peek_result::closed;
}

} // namespace breakerbox
