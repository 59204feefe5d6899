#include "resilience/stale_cache.hpp"

#include <gtest/gtest.h>

using namespace breakerbox;
using namespace breakerbox::resilience;
namespace bhttp = boost::beast::http;

namespace {
http::request get(std::string target, std::string host = "svc")
{
    http::request r{bhttp::verb::get, target, 11};
    r.set(bhttp::field::host, host);
    return r;
}
http::response ok(std::string body)
{
    http::response r{bhttp::status::ok, 11};
    r.body() = std::move(body);
    r.prepare_payload();
    return r;
}
config::stale_cache_config cfg(std::uint32_t entries = 10, std::uint64_t bytes = 1 << 20, nanos age = seconds(60))
{
    return {entries, bytes, age};
}
} // namespace

TEST(stale_cache, serves_the_last_good_answer_per_url_until_max_age)
{
    stale_cache c(cfg());
    c.store(get("/a"), ok("first"), seconds(100));
    c.store(get("/a"), ok("second"), seconds(101));
    auto hit = c.lookup(get("/a"), seconds(150));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->response.body(), "second");
    EXPECT_FALSE(c.lookup(get("/b"), seconds(150)));
    EXPECT_FALSE(c.lookup(get("/a", "other-host"), seconds(150)));
    EXPECT_FALSE(c.lookup(get("/a"), seconds(162))); // older than max_age
    EXPECT_EQ(c.entries(), 0u);                       // and dropped
}

TEST(stale_cache, never_keeps_what_must_not_be_kept)
{
    stale_cache c(cfg());
    auto no_store = ok("x");
    no_store.set(bhttp::field::cache_control, "max-age=0, no-store");
    c.store(get("/1"), no_store, 0);
    auto priv = ok("x");
    priv.set(bhttp::field::cache_control, "private");
    c.store(get("/2"), priv, 0);
    auto cookie = ok("x");
    cookie.set(bhttp::field::set_cookie, "a=b");
    c.store(get("/3"), cookie, 0);
    http::response error{bhttp::status::internal_server_error, 11};
    c.store(get("/4"), error, 0);
    http::request post{bhttp::verb::post, "/5", 11};
    post.set(bhttp::field::host, "svc");
    c.store(post, ok("x"), 0);
    auto star = ok("x");
    star.set(bhttp::field::vary, "*");
    c.store(get("/6"), star, 0);
    EXPECT_EQ(c.entries(), 0u);
}

TEST(stale_cache, vary_selects_the_variant)
{
    stale_cache c(cfg());
    auto english = get("/page");
    english.set(bhttp::field::accept_language, "en");
    auto french = get("/page");
    french.set(bhttp::field::accept_language, "fr");
    auto en = ok("hello");
    en.set(bhttp::field::vary, "Accept-Language");
    auto fr = ok("bonjour");
    fr.set(bhttp::field::vary, "Accept-Language");
    c.store(english, en, 0);
    c.store(french, fr, 0);
    EXPECT_EQ(c.lookup(english, 1)->response.body(), "hello");
    EXPECT_EQ(c.lookup(french, 1)->response.body(), "bonjour");
    auto german = get("/page");
    german.set(bhttp::field::accept_language, "de");
    EXPECT_FALSE(c.lookup(german, 1));
}

TEST(stale_cache, bounded_by_entries_and_bytes_least_recently_used_first)
{
    stale_cache c(cfg(2));
    c.store(get("/1"), ok("a"), 0);
    c.store(get("/2"), ok("b"), 0);
    c.lookup(get("/1"), 1); // /1 is now the most recent
    c.store(get("/3"), ok("c"), 0);
    EXPECT_TRUE(c.lookup(get("/1"), 1));
    EXPECT_FALSE(c.lookup(get("/2"), 1));
    EXPECT_TRUE(c.lookup(get("/3"), 1));

    stale_cache small(cfg(100, 2048));
    small.store(get("/big1"), ok(std::string(900, 'x')), 0);
    small.store(get("/big2"), ok(std::string(900, 'y')), 0);
    EXPECT_LE(small.bytes(), 2048u);
    EXPECT_EQ(small.entries(), 1u);
    EXPECT_TRUE(small.lookup(get("/big2"), 1));
}
