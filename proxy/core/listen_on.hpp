// Opening a listening socket: shared by the data-path listeners (server/) and the admin listener
// (admin/), which are siblings, so it lives below both.
#pragma once
#include "core/asio.hpp"

#include <cstdint>
#include <string_view>

namespace breakerbox {

// A configured host (an IP address, or "localhost") and port as a bindable endpoint (start-up only;
// throws std::runtime_error on a host name).
tcp::endpoint resolve_listen_address(std::string_view host, std::uint16_t port);

// Opens, binds and listens (start-up only). Throws std::runtime_error "<what> cannot listen on
// <host>:<port>: <why>".
void listen_on(tcp::acceptor& acceptor, std::string_view host, std::uint16_t port, std::string_view what);

} // namespace breakerbox
