// The admin listener (default 127.0.0.1:9901), never on a data-path port: probes, /health/circuits,
// /metrics and token-protected operator control of circuits (the routes: admin_routes.hpp). Runs on the
// main io_context; owned by the main thread, which its entry points assert (owner_). Reads snapshots of
// shared state only.
#pragma once
#include "admin/admin_context.hpp"
#include "admin/admin_routes.hpp"
#include "admin/event_hub.hpp"
#include "config/config.hpp"
#include "core/asio.hpp"
#include "core/deadline_stream.hpp"
#include "core/thread_owner.hpp"
#include "http/message.hpp"

#include <optional>
#include <string>

namespace breakerbox::admin {

class admin_server {
public:
    // `token`: the bearer token mutations require ("" = mutations refused); `events`: the /events bounds.
    admin_server(asio::io_context& ioc, admin_context ctx, std::string token, event_limits events = {});
    // Clears the process-wide transition observer, which points at this server's hub.
    ~admin_server();

    // Start-up only; throws std::runtime_error naming the address.
    void bind(const config::host_port& address);
    void start();
    std::uint16_t port() const;
    // The /events hub (its transitions come from any thread through post_transition).
    event_hub& events() noexcept { return hub_; }

private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(tcp::socket socket);
    // One request's answer, by its route; nullopt when it became the /events stream (the connection is
    // over). `pipelined`: more bytes arrived behind the request.
    asio::awaitable<std::optional<http::response>> answer(deadline_stream& stream, const http::request& req, bool pipelined,
                                                          const admin_request_info& info);
    // GET /events: the stream until the viewer leaves, is dropped or the process stops.
    asio::awaitable<void> stream_events(deadline_stream& stream, const http::request& req);

    tcp::acceptor acceptor_;
    admin_context ctx_;
    std::string token_;
    event_hub hub_;      // after ctx_, which it reads
    thread_owner owner_; // the main thread, once the accept loop runs
};

} // namespace breakerbox::admin
