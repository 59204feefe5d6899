#include "forward/client_watch.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace breakerbox::forward {

void client_watch::arm(beast::tcp_stream& upstream)
{
    upstream_ = &upstream;
    gone_ = false;
    if (waiting_)
        return; // a wait from an earlier exchange is still registered and will serve this one too
    waiting_ = true;
    client_.async_wait(tcp::socket::wait_read, [this](const error_code& ec) {
        if (ec == asio::error::operation_aborted)
            return; // disarmed, or the session closed its socket: `this` may be gone, touch nothing
        waiting_ = false;
        if (!upstream_)
            return;
        char probe;
        const ssize_t n = ::recv(client_.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (ec || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            gone_ = true;
            upstream_->cancel(); // the exchange ends with operation_aborted
        }
    });
}

void client_watch::disarm() noexcept
{
    upstream_ = nullptr;
    if (waiting_) {
        waiting_ = false;
        error_code ignored;
        client_.cancel(ignored);
    }
}

} // namespace breakerbox::forward
