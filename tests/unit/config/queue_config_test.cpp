// The queue fallback's configuration: defaults, every refusal naming its key, and the rules that keep a
// queue honest (triggers, methods, the store it needs).
#include "config/loader.hpp"

#include <gtest/gtest.h>

namespace breakerbox::config {
namespace {

load_result load_queue(const std::string& fallback, const std::string& store = "queue_store: {path: q/queue.db}\n")
{
    return load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n" + store +
                           "upstreams:\n"
                           "  orders:\n"
                           "    endpoints: [\"127.0.0.1:1\"]\n"
                           "    routes: {hosts: [orders]}\n"
                           "    fallbacks:\n" +
                           fallback,
                       "/etc/bb/queue.yaml", [](const std::string&) { return std::optional<std::string>(); });
}

bool has_error_at(const load_result& r, const std::string& path)
{
    for (const auto& e : r.errors)
        if (e.path == path)
            return true;
    return false;
}

TEST(queue_config, defaults_as_documented)
{
    auto r = load_queue("      - queue: {}\n");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    const auto& qs = r.cfg->queue_store;
    EXPECT_TRUE(qs.enabled);
    EXPECT_EQ(qs.path, "/etc/bb/q/queue.db"); // relative to the configuration file's folder
    EXPECT_EQ(qs.synchronous, queue_sync::full);
    EXPECT_EQ(qs.status_path, "/_breakerbox/queue/");
    const auto* fb = r.cfg->upstreams[0].queue_fallback();
    ASSERT_NE(fb, nullptr);
    EXPECT_EQ(fb->triggers, static_cast<std::uint8_t>(fallback_trigger::circuit_open));
    const auto& q = fb->queue;
    EXPECT_EQ(q.methods, (std::vector<std::string>{"POST", "PUT", "PATCH", "DELETE"}));
    EXPECT_FALSE(q.store_credentials);
    EXPECT_FALSE(q.require_prefer_async);
    EXPECT_EQ(q.max_entries, 10000u);
    EXPECT_EQ(q.max_bytes, 64ull << 20);
    EXPECT_EQ(q.max_body_size, 1u << 20);
    EXPECT_EQ(q.max_attempts, 10u);
    EXPECT_EQ(q.max_age, seconds(86400));
    EXPECT_EQ(q.delivery.rate, 10.0);
    EXPECT_EQ(q.delivery.concurrency, 1u);
}

TEST(queue_config, every_setting_is_read)
{
    auto r = load_queue("      - when: [circuit_open, bulkhead_full, limit_reached]\n"
                        "        queue:\n"
                        "          methods: [POST]\n"
                        "          path_prefixes: [/orders]\n"
                        "          require_prefer_async: true\n"
                        "          store_credentials: true\n"
                        "          max_entries: 5\n"
                        "          max_bytes: 2MiB\n"
                        "          max_body_size: 1KiB\n"
                        "          max_attempts: 3\n"
                        "          max_age: 1h\n"
                        "          retention: 2h\n"
                        "          response_body_limit: 100\n"
                        "          delivery: {rate: 2.5, concurrency: 4, backoff_base: 100ms, backoff_max: 2s, "
                        "headers: {Authorization: Bearer x}}\n",
                        "queue_store: {path: /var/lib/bb/q.db, synchronous: normal, status_path: /q/}\n");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    // Every refusal before a byte was sent may be queued: a connection, stream or tunnel limit too.
    EXPECT_EQ(r.cfg->upstreams[0].fallbacks[0].triggers, static_cast<std::uint8_t>(fallback_trigger::circuit_open) |
                                                             static_cast<std::uint8_t>(fallback_trigger::bulkhead_full) |
                                                             static_cast<std::uint8_t>(fallback_trigger::limit_reached));
    EXPECT_EQ(r.cfg->queue_store.synchronous, queue_sync::normal);
    EXPECT_EQ(r.cfg->queue_store.status_path, "/q/");
    const auto& q = r.cfg->upstreams[0].queue_fallback()->queue;
    EXPECT_EQ(q.methods, std::vector<std::string>{"POST"});
    EXPECT_EQ(q.path_prefixes, std::vector<std::string>{"/orders"});
    EXPECT_TRUE(q.require_prefer_async);
    EXPECT_TRUE(q.store_credentials);
    EXPECT_EQ(q.max_entries, 5u);
    EXPECT_EQ(q.max_bytes, 2u << 20);
    EXPECT_EQ(q.max_body_size, 1024u);
    EXPECT_EQ(q.max_attempts, 3u);
    EXPECT_EQ(q.max_age, seconds(3600));
    EXPECT_EQ(q.retention, seconds(7200));
    EXPECT_EQ(q.response_body_limit, 100u);
    EXPECT_EQ(q.delivery.rate, 2.5);
    EXPECT_EQ(q.delivery.concurrency, 4u);
    EXPECT_EQ(q.delivery.backoff_base, millis(100));
    ASSERT_EQ(q.delivery.headers.size(), 1u);
    EXPECT_EQ(q.delivery.headers[0].second, "Bearer x");
}

TEST(queue_config, every_refusal_names_its_key)
{
    struct bad_case {
        std::string fallback;
        std::string path;
    } cases[] = {
        {"      - queue: {methods: [GET]}\n", "upstreams.orders.fallbacks[0].queue.methods[0]"},
        {"      - queue: {methods: [post]}\n", "upstreams.orders.fallbacks[0].queue.methods[0]"},
        {"      - queue: {methods: []}\n", "upstreams.orders.fallbacks[0].queue.methods"},
        {"      - queue: {path_prefixes: [orders]}\n", "upstreams.orders.fallbacks[0].queue.path_prefixes[0]"},
        {"      - queue: {max_attempts: 0}\n", "upstreams.orders.fallbacks[0].queue.max_attempts"},
        {"      - queue: {max_age: soon}\n", "upstreams.orders.fallbacks[0].queue.max_age"},
        {"      - queue: {delivery: {rate: 0}}\n", "upstreams.orders.fallbacks[0].queue.delivery.rate"},
        {"      - queue: {delivery: {backoff_base: 10s, backoff_max: 1s}}\n",
         "upstreams.orders.fallbacks[0].queue.delivery.backoff_max"},
        {"      - queue: {delivery: {headers: {\"bad name\": x}}}\n",
         "upstreams.orders.fallbacks[0].queue.delivery.headers.bad name"},
        {"      - queue: {colour: blue}\n", "upstreams.orders.fallbacks[0].queue.colour"},
        // After upstream_error or timeout the upstream may have acted on the request: never queued.
        {"      - when: [upstream_error]\n        queue: {}\n", "upstreams.orders.fallbacks[0].when"},
        {"      - when: [timeout, circuit_open]\n        queue: {}\n", "upstreams.orders.fallbacks[0].when"},
        {"      - queue: {}\n      - queue: {}\n", "upstreams.orders.fallbacks[1]"},
    };
    for (const auto& c : cases) {
        auto r = load_queue(c.fallback);
        EXPECT_FALSE(r.cfg) << c.fallback;
        EXPECT_TRUE(has_error_at(r, c.path)) << c.fallback << " → " << (r.errors.empty() ? "no error" : r.errors.front().text());
    }
}

TEST(queue_config, a_queue_needs_a_store_and_the_store_a_path)
{
    auto without = load_queue("      - queue: {}\n", "");
    EXPECT_FALSE(without.cfg);
    EXPECT_TRUE(has_error_at(without, "upstreams.orders.fallbacks"));

    auto no_path = load_queue("      - queue: {}\n", "queue_store: {synchronous: full}\n");
    EXPECT_TRUE(has_error_at(no_path, "queue_store.path"));

    auto bad_sync = load_queue("      - queue: {}\n", "queue_store: {path: q.db, synchronous: sometimes}\n");
    EXPECT_TRUE(has_error_at(bad_sync, "queue_store.synchronous"));

    auto bad_status = load_queue("      - queue: {}\n", "queue_store: {path: q.db, status_path: /queue}\n");
    EXPECT_TRUE(has_error_at(bad_status, "queue_store.status_path"));
}

} // namespace
} // namespace breakerbox::config
