// One client connection, from accept to close, on one worker. The session owns its stream and read
// buffer (which persists between requests: pipelined bytes wait there), and a fresh parser per
// request. Requests are answered strictly in order, one at a time. Worker-owned.
#pragma once
#include "core/asio.hpp"
#include "server/worker_pool.hpp"

namespace breakerbox::server {

asio::awaitable<void> run_downstream_session(tcp::socket socket, worker& w, std::size_t listener_index);

} // namespace breakerbox::server
