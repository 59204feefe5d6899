// A data-path listening socket. Accepts on the application's main io_context and hands each
// connection to a worker for its whole life. An accept error never stops accepting: it is logged
// (at most once a second), counted, and followed by a short back-off before the next accept.
// Owned by the main thread.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"
#include "server/worker_pool.hpp"

namespace breakerbox::server {

class listener {
public:
    listener(asio::io_context& accept_context, const config::listener_config& cfg, std::size_t index, worker_pool& pool,
             runtime::proxy_state& state);

    // Binds and listens; start-up only. Throws std::runtime_error naming the address on failure.
    void bind();
    void start();
    void close();
    tcp::endpoint local_endpoint() const;
    const config::listener_config& cfg() const { return cfg_; }

private:
    asio::awaitable<void> accept_loop();
    void reject(tcp::socket& socket);

    tcp::acceptor acceptor_;
    const config::listener_config& cfg_;
    std::size_t index_;
    worker_pool& pool_;
    runtime::proxy_state& state_;
};

} // namespace breakerbox::server
