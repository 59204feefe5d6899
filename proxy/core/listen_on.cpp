#include "core/listen_on.hpp"

#include <boost/asio/ip/address.hpp>

#include <stdexcept>
#include <string>

namespace breakerbox {
namespace {

std::string address_text(std::string_view host, std::uint16_t port) { return std::string(host) + ":" + std::to_string(port); }

} // namespace

tcp::endpoint resolve_listen_address(std::string_view host, std::uint16_t port)
{
    error_code ec;
    auto address = asio::ip::make_address(host == "localhost" ? std::string_view("127.0.0.1") : host, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + address_text(host, port) +
                                 ": the host must be an IP address or localhost");
    return {address, port};
}

void listen_on(tcp::acceptor& acceptor, std::string_view host, std::uint16_t port, std::string_view what)
{
    const auto endpoint = resolve_listen_address(host, port);
    error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec)
        acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(endpoint, ec);
    if (!ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error(std::string(what) + " cannot listen on " + address_text(host, port) + ": " + ec.message());
}

} // namespace breakerbox
