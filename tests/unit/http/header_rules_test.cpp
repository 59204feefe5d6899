#include "http/header_rules.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

TEST(strip_hop_by_hop, removes_the_standard_fields_and_those_connection_names)
{
    http::request req{bhttp::verb::get, "/", 11};
    req.set(bhttp::field::connection, "keep-alive, X-Private");
    req.insert(bhttp::field::connection, "Other-Hop");
    req.set("X-Private", "1");
    req.set("Other-Hop", "1");
    req.set(bhttp::field::keep_alive, "timeout=5");
    req.set(bhttp::field::proxy_connection, "keep-alive");
    req.set(bhttp::field::te, "trailers");
    req.set(bhttp::field::trailer, "X-T");
    req.set(bhttp::field::transfer_encoding, "chunked");
    req.set(bhttp::field::upgrade, "h2c");
    req.set("X-End-To-End", "1");
    http::strip_hop_by_hop(req.base());
    EXPECT_EQ(std::distance(req.begin(), req.end()), 1);
    EXPECT_EQ(req["X-End-To-End"], "1");
}

TEST(add_forwarding_fields, appends_to_existing_values)
{
    http::request req{bhttp::verb::get, "/", 11};
    req.set("X-Forwarded-For", "10.1.1.1");
    req.set(bhttp::field::via, "1.0 edge");
    config::forwarding_config cfg;
    http::add_forwarding_fields(req.base(), cfg, {"127.0.0.1", "svc.example"});
    EXPECT_EQ(req["X-Forwarded-For"], "10.1.1.1, 127.0.0.1");
    EXPECT_EQ(req[bhttp::field::via], "1.0 edge, 1.1 breakerbox");
    EXPECT_EQ(req["X-Forwarded-Proto"], "http");
    EXPECT_EQ(req["X-Forwarded-Host"], "svc.example");
}

TEST(add_forwarding_fields, each_field_can_be_turned_off)
{
    http::request req{bhttp::verb::get, "/", 11};
    config::forwarding_config cfg{false, false, false, false};
    http::add_forwarding_fields(req.base(), cfg, {"127.0.0.1", "svc"});
    EXPECT_EQ(req.begin(), req.end());
}

TEST(add_forwarding_fields, several_lines_of_a_list_become_one_in_order)
{
    http::request req{bhttp::verb::get, "/", 11};
    req.insert("X-Forwarded-For", "10.0.0.1");
    req.insert(bhttp::field::host, "h");
    req.insert("x-forwarded-for", "10.0.0.2");
    config::forwarding_config cfg;
    http::add_forwarding_fields(req.base(), cfg, {"127.0.0.1", {}});
    EXPECT_EQ(req.count("X-Forwarded-For"), 1u);
    EXPECT_EQ(req["X-Forwarded-For"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
}

TEST(add_forwarding_fields, replaces_a_client_supplied_proto_and_host)
{
    http::request req{bhttp::verb::get, "/", 11};
    req.insert("X-Forwarded-Proto", "https");
    req.insert("X-Forwarded-Proto", "ftp");
    req.insert("X-Forwarded-Host", "spoofed");
    config::forwarding_config cfg;
    http::add_forwarding_fields(req.base(), cfg, {"127.0.0.1", "svc"});
    EXPECT_EQ(req.count("X-Forwarded-Proto"), 1u);
    EXPECT_EQ(req["X-Forwarded-Proto"], "http");
    EXPECT_EQ(req.count("X-Forwarded-Host"), 1u);
    EXPECT_EQ(req["X-Forwarded-Host"], "svc");
}
