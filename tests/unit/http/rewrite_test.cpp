#include "http/rewrite.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {
config::forwarding_config all_fields()
{
    config::forwarding_config f;
    f.via = f.x_forwarded_for = f.x_forwarded_proto = f.x_forwarded_host = true;
    return f;
}
} // namespace

TEST(rewrite_for_upstream, applies_rfc9110_forwarding_rules)
{
    http::request req{bhttp::verb::post, "http://public.test/pay/charge?x=1", 10};
    req.set(bhttp::field::host, "other.test");
    req.set(bhttp::field::connection, "close, X-Secret");
    req.set("X-Secret", "hop");
    req.set(bhttp::field::te, "trailers");
    req.set(bhttp::field::expect, "100-continue");
    req.set(bhttp::field::transfer_encoding, "chunked");
    req.set("X-Forwarded-For", "10.0.0.1");
    req.body() = "abc";
    http::rewrite_for_upstream(req, all_fields(), {"127.0.0.9", "public.test"}, "/charge?x=1", "public.test", "unused");

    EXPECT_EQ(req.target(), "/charge?x=1");
    EXPECT_EQ(req.version(), 11u);
    EXPECT_EQ(req.count(bhttp::field::host), 1u);
    EXPECT_EQ(req[bhttp::field::host], "public.test");
    for (auto gone : {bhttp::field::connection, bhttp::field::te, bhttp::field::expect, bhttp::field::transfer_encoding})
        EXPECT_EQ(req.count(gone), 0u) << bhttp::to_string(gone);
    EXPECT_EQ(req.count("X-Secret"), 0u); // named in Connection: hop-by-hop too
    EXPECT_EQ(req["X-Forwarded-For"], "10.0.0.1, 127.0.0.9");
    EXPECT_EQ(req["X-Forwarded-Host"], "public.test");
    EXPECT_EQ(req["X-Forwarded-Proto"], "http");
    EXPECT_EQ(req["Via"], "1.1 breakerbox");
    EXPECT_EQ(req[bhttp::field::content_length], "3");
}

TEST(rewrite_for_upstream, keeps_the_clients_host_when_given_none)
{
    http::request req{bhttp::verb::get, "/a", 11};
    req.set(bhttp::field::host, "Client.Test:8080");
    http::rewrite_for_upstream(req, config::forwarding_config{}, {"127.0.0.1", "client.test:8080"}, "/a", {}, "unused");
    EXPECT_EQ(req[bhttp::field::host], "Client.Test:8080");
    EXPECT_EQ(req.count(bhttp::field::content_length), 0u); // a GET without a body gets no framing field
}

TEST(rewrite_for_upstream, an_http11_request_always_leaves_with_a_host)
{
    http::request named{bhttp::verb::get, "/a", 11};
    named.set(bhttp::field::host, "client.test");
    named.set(bhttp::field::connection, "host"); // Host named as hop-by-hop: stripped, then given again
    http::rewrite_for_upstream(named, config::forwarding_config{}, {"127.0.0.1", "client.test"}, "/a", {}, "client.test");
    EXPECT_EQ(named[bhttp::field::host], "client.test");

    http::request none{bhttp::verb::get, "/a", 10}; // HTTP/1.0 without Host
    http::rewrite_for_upstream(none, config::forwarding_config{}, {"127.0.0.1", ""}, "/a", {}, "10.0.0.5:8080");
    EXPECT_EQ(none[bhttp::field::host], "10.0.0.5:8080");
    EXPECT_EQ(none.version(), 11u);
}

TEST(rewrite_for_client, strips_hop_by_hop_and_reframes)
{
    http::response res{bhttp::status::ok, 11};
    res.set(bhttp::field::connection, "keep-alive, X-Hop");
    res.set("X-Hop", "1");
    res.set(bhttp::field::transfer_encoding, "chunked");
    res.set(bhttp::field::upgrade, "h2c");
    res.body() = "hello";
    http::rewrite_for_client(res, false, true);
    EXPECT_EQ(res.count(bhttp::field::connection), 0u);
    EXPECT_EQ(res.count("X-Hop"), 0u);
    EXPECT_EQ(res.count(bhttp::field::transfer_encoding), 0u);
    EXPECT_EQ(res.count(bhttp::field::upgrade), 0u);
    EXPECT_EQ(res[bhttp::field::content_length], "5");
    EXPECT_EQ(res["Via"], "1.1 breakerbox");

    http::response head{bhttp::status::ok, 11};
    head.set(bhttp::field::content_length, "1234");
    http::rewrite_for_client(head, true, false);
    EXPECT_EQ(head[bhttp::field::content_length], "1234"); // HEAD: what a GET would have got
    EXPECT_EQ(head.count("Via"), 0u);
}
