// Opening a listening socket (core/listen_on.hpp): an address or localhost, port 0, and the errors'
// wording (start-up errors are fatal and must say what could not listen where).
#include "core/listen_on.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace breakerbox {
namespace {

TEST(resolve_listen_address, an_address_or_localhost_and_nothing_else)
{
    EXPECT_EQ(resolve_listen_address("localhost", 9901), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9901));
    EXPECT_EQ(resolve_listen_address("::1", 80).address().to_string(), "::1");
    try {
        resolve_listen_address("example.com", 80);
        FAIL() << "a host name was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "cannot listen on example.com:80: the host must be an IP address or localhost");
    }
}

TEST(listen_on, binds_port_zero_and_names_what_failed)
{
    asio::io_context ioc;
    tcp::acceptor first(ioc);
    listen_on(first, "127.0.0.1", 0, "the admin listener");
    const auto port = first.local_endpoint().port();
    EXPECT_NE(port, 0);
    tcp::acceptor second(ioc);
    try {
        listen_on(second, "127.0.0.1", port, "the admin listener");
        FAIL() << "a port in use was bound twice";
    } catch (const std::runtime_error& e) {
        const std::string expected = "the admin listener cannot listen on 127.0.0.1:" + std::to_string(port) + ": ";
        EXPECT_TRUE(std::string(e.what()).starts_with(expected)) << e.what();
    }
}

} // namespace
} // namespace breakerbox
