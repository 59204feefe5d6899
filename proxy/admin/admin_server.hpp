// The admin listener (default 127.0.0.1:9901), never on a data-path port: probes, /health/circuits,
// /metrics and token-protected operator control of circuits. Runs on the main io_context; owned by the
// main thread. Reads snapshots of shared state only.
#pragma once
#include "admin/admin_context.hpp"
#include "config/config.hpp"
#include "core/asio.hpp"

#include <string>

namespace breakerbox::admin {

class admin_server {
public:
    // `token`: the bearer token mutations require ("" = mutations refused).
    admin_server(asio::io_context& ioc, admin_context ctx, std::string token);

    // Start-up only; throws std::runtime_error naming the address.
    void bind(const config::host_port& address);
    void start();
    std::uint16_t port() const;

private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(tcp::socket socket);

    tcp::acceptor acceptor_;
    admin_context ctx_;
    std::string token_;
};

} // namespace breakerbox::admin
