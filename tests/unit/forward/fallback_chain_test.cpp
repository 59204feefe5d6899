// The fallback chain, handler by handler, against a scripted call (fallback_call): each kind's failure
// points — what makes it pass to the next fallback — enumerated, and the chain's order, trigger filter
// and default answer. The queue's durable store is a real SQLite file in a temporary folder.
#include "../support/manual_clock.hpp"
#include "forward/fallback_chain.hpp"

#include "config/loader.hpp"
#include "queue/queue_store.hpp"
#include "runtime/config_generation.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <thread>

namespace breakerbox {
namespace {

using config::fallback_trigger;
using forward::call_result;
using forward::forward_result;
namespace bhttp = boost::beast::http;

// What the forwarder would tell the fallbacks, scripted.
struct scripted_call final : forward::fallback_call {
    http::request req{bhttp::verb::get, "/item", 11};
    routing::route_match routed{0, "/item", "svc"};
    bool sent = false;
    bool can_replay = true;
    bool upload = false;
    unsigned failover_status = 200; // what the failover target answers (0: it fails with a proxy error)
    int failovers = 0;
    bool streamed_place = true; // pass_on finds a max_streams place

    http::request& prepared_request() override { return req; }
    bool maybe_sent() const override { return sent; }
    bool replayable() const override { return can_replay; }
    bool has_upload() const override { return upload; }
    const http::request& request() const override { return req; }
    const routing::route_match& route() const override { return routed; }
    asio::awaitable<void> call_failover(runtime::upstream_handle& target, forward_result& out) override
    {
        ++failovers;
        out.upstream = target.cfg.name;
        out.error = failover_status ? proxy_error::ok : proxy_error::upstream_connect_failed;
        out.response.result(failover_status ? failover_status : 502);
        co_return;
    }
    bool pass_on(runtime::upstream_handle&, forward_result& out) override
    {
        out.error = proxy_error::ok;
        return streamed_place;
    }
};

struct fallback_chain_fixture : ::testing::Test {
    asio::io_context ioc;
    manual_clock clk;
    std::shared_ptr<const runtime::config_generation> generation;
    std::optional<runtime::proxy_state> state;
    std::optional<runtime::worker_context> worker;
    std::unique_ptr<queue::queue_store> store;
    std::filesystem::path dir;
    scripted_call call;

    ~fallback_chain_fixture() override
    {
        worker.reset();
        state.reset();
        store.reset();
        if (!dir.empty())
            std::filesystem::remove_all(dir);
    }

    // Upstream `svc` with `fallbacks` (YAML lines indented by six spaces) and a failover target `other`.
    void configure(const std::string& fallbacks, bool with_queue = false, const std::string& queue_settings = "")
    {
        std::string yaml = "listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n";
        if (with_queue) {
            dir = std::filesystem::temp_directory_path() / ("bbx-fallback-" + std::to_string(::getpid()) + "-" +
                                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
            std::filesystem::remove_all(dir);
            yaml += "queue_store: {path: \"" + (dir / "q.db").string() + "\"" + queue_settings + "}\n";
        }
        yaml += "upstreams:\n"
                "  svc:\n"
                "    endpoints: [\"127.0.0.1:1\"]\n"
                "    routes: {hosts: [svc]}\n"
                "    stale_cache: {max_entries: 10}\n"
                "    fallbacks:\n" +
                fallbacks +
                "  other:\n"
                "    endpoints: [\"127.0.0.1:2\"]\n"
                "    routes: {hosts: [other]}\n";
        auto loaded = config::load_string(yaml, "fallback_chain_test.yaml",
                                          [](const std::string&) { return std::optional<std::string>(); });
        ASSERT_TRUE(loaded.cfg) << (loaded.errors.empty() ? "" : loaded.errors.front().text());
        if (with_queue) {
            std::string error;
            store = queue::queue_store::open(loaded.cfg->queue_store, error, [] { return std::int64_t{1'000'000}; });
            ASSERT_TRUE(store) << error;
        }
        generation = std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), clk, nullptr);
        state.emplace(generation, 1);
        state->queue = store.get();
        worker.emplace(ioc, *state, 0, clk);
        worker->owner.bind_to_this_thread();
    }

    runtime::upstream_handle& svc() { return worker->current->upstreams[0]; }

    forward_result chain(call_result r, fallback_trigger trigger, int depth = 0)
    {
        forward_result out;
        bool done = false;
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                co_await forward::run_fallbacks(call, *worker, *worker->current, svc(), std::move(r), trigger, depth, out);
                done = true;
            },
            asio::detached);
        // The queue's answer comes from its writer thread after the commit: run until it is posted back.
        for (int i = 0; i < 5000 && !done; ++i) {
            ioc.restart();
            ioc.run_for(std::chrono::milliseconds(1));
        }
        EXPECT_TRUE(done);
        return out;
    }

    std::string fallback_of(const forward_result& out) const
    {
        if (out.prerendered)
            return "static(prerendered)";
        return std::string(out.response["X-Breakerbox-Fallback"]);
    }
};

const call_result refused_open{proxy_error::circuit_open, {}};
const call_result connect_failed{proxy_error::upstream_connect_failed, "refused"};

TEST_F(fallback_chain_fixture, a_fallback_only_answers_for_its_triggers_and_the_default_answer_stands_otherwise)
{
    configure("      - when: [timeout]\n"
              "        static: {status: 503, body: late}\n");
    const auto out = chain(connect_failed, fallback_trigger::upstream_error);
    EXPECT_FALSE(out.from_fallback);
    EXPECT_EQ(out.status(), 502u);
    EXPECT_EQ(out.error, proxy_error::upstream_connect_failed);
}

TEST_F(fallback_chain_fixture, the_first_that_can_answer_does_each_failure_point_passes_to_the_next)
{
    // stale: nothing cached → failover: the target fails → static answers.
    configure("      - stale: {}\n"
              "      - upstream: other\n"
              "      - static: {status: 503, body: \"last {{reason}}\"}\n");
    call.failover_status = 0;
    const auto out = chain(refused_open, fallback_trigger::circuit_open);
    EXPECT_EQ(call.failovers, 1);
    EXPECT_TRUE(out.from_fallback);
    EXPECT_EQ(out.status(), 503u);
    EXPECT_EQ(fallback_of(out), "static(prerendered)");
}

TEST_F(fallback_chain_fixture, stale_answers_from_the_cache_with_its_age)
{
    configure("      - stale: {}\n");
    http::response good{bhttp::status::ok, 11};
    good.body() = "cached";
    good.prepare_payload();
    svc().shared.cache->store(call.req, good, clk.now());
    clk.advance(seconds(3));
    const auto out = chain(connect_failed, fallback_trigger::upstream_error);
    EXPECT_TRUE(out.from_fallback);
    EXPECT_EQ(out.response.body(), "cached");
    EXPECT_EQ(fallback_of(out), "stale");
    EXPECT_EQ(out.error, proxy_error::upstream_connect_failed);
}

struct failover_point {
    const char* name;
    bool post;
    bool maybe_sent;
    bool replayable;
    unsigned target_status; // 0: the target fails with a proxy error
    bool served;
    int target_calls;
};

TEST_F(fallback_chain_fixture, failover_failure_points)
{
    const failover_point points[] = {
        {"a GET goes elsewhere", false, true, true, 200, true, 1},
        {"a POST the first upstream may have had never goes twice", true, true, true, 200, false, 0},
        {"a POST certainly not sent goes elsewhere", true, false, true, 200, true, 1},
        {"an upload read beyond its replay buffer", false, false, false, 200, false, 0},
        {"the target answers 5xx: next fallback", false, false, true, 503, false, 1},
        {"the target fails too: next fallback", false, false, true, 0, false, 1},
    };
    for (const auto& p : points) {
        SCOPED_TRACE(p.name);
        configure("      - upstream: other\n");
        call = scripted_call{};
        call.req.method(p.post ? bhttp::verb::post : bhttp::verb::get);
        call.sent = p.maybe_sent;
        call.can_replay = p.replayable;
        call.failover_status = p.target_status;
        const auto out = chain(connect_failed, fallback_trigger::upstream_error);
        EXPECT_EQ(out.from_fallback, p.served);
        EXPECT_EQ(call.failovers, p.target_calls);
        if (p.served) {
            EXPECT_EQ(fallback_of(out), "upstream:other");
            EXPECT_EQ(out.upstream, "other");
        }
    }
}

TEST_F(fallback_chain_fixture, a_failover_target_does_not_follow_its_own_failover_or_queue)
{
    configure("      - upstream: other\n"
              "      - static: {status: 503, body: x}\n");
    const auto out = chain(connect_failed, fallback_trigger::upstream_error, 1);
    EXPECT_EQ(call.failovers, 0);
    EXPECT_TRUE(out.from_fallback); // the static one
}

TEST_F(fallback_chain_fixture, the_queue_stores_what_was_certainly_not_sent_and_answers_202)
{
    configure("      - when: [circuit_open]\n"
              "        queue: {}\n"
              "      - static: {status: 503, body: next}\n",
              true);
    call.req.method(bhttp::verb::post);
    call.req.body() = "{}";
    call.req.prepare_payload();
    const auto out = chain(refused_open, fallback_trigger::circuit_open);
    EXPECT_EQ(out.status(), 202u);
    EXPECT_EQ(fallback_of(out), "queue");
    EXPECT_EQ(store->counters("svc").enqueued.load(), 1u);
}

struct queue_point {
    const char* name;
    bool maybe_sent;
    bool upload;
    bhttp::verb method;
    std::size_t body_size;
    queue::rejection counted; // checked when `count` is set
    bool count;
};

TEST_F(fallback_chain_fixture, queue_failure_points_pass_to_the_next_fallback)
{
    const queue_point points[] = {
        {"an attempt may have reached the upstream", true, false, bhttp::verb::post, 2, {}, false},
        {"an upload (only its replay prefix was held)", false, true, bhttp::verb::post, 2, {}, false},
        {"a method that is never queued", false, false, bhttp::verb::get, 0, {}, false},
        {"a body over max_body_size", false, false, bhttp::verb::post, 2048, queue::rejection::body_too_large, true},
    };
    for (const auto& p : points) {
        SCOPED_TRACE(p.name);
        configure("      - when: [circuit_open]\n"
                  "        queue: {max_body_size: 1KiB}\n"
                  "      - static: {status: 503, body: next}\n",
                  true);
        call = scripted_call{};
        call.req.method(p.method);
        call.sent = p.maybe_sent;
        call.upload = p.upload;
        call.req.body() = std::string(p.body_size, 'x');
        call.req.prepare_payload();
        const auto out = chain(refused_open, fallback_trigger::circuit_open);
        EXPECT_EQ(out.status(), 503u);
        EXPECT_EQ(fallback_of(out), "static(prerendered)");
        EXPECT_EQ(store->counters("svc").enqueued.load(), 0u);
        if (p.count) {
            EXPECT_EQ(store->counters("svc").rejected[static_cast<std::size_t>(p.counted)].load(), 1u);
        }
    }
}

TEST_F(fallback_chain_fixture, the_default_open_circuit_answer_says_who_decided_and_when_to_come_back)
{
    configure("      - when: [timeout]\n"
              "        static: {status: 503, body: x}\n");
    // Opened from outside (as outlier detection does) at a known time: 60 s of open time (the default).
    ASSERT_TRUE(svc().shared.breaker.trip_from_outside("test", clk.now()));
    clk.advance(seconds(20));
    const auto out = chain(refused_open, fallback_trigger::circuit_open);
    EXPECT_FALSE(out.from_fallback);
    EXPECT_EQ(out.status(), 503u);
    EXPECT_EQ(out.error, proxy_error::circuit_open);
    const long retry_after = std::stol(std::string(out.response[bhttp::field::retry_after]));
    EXPECT_GT(retry_after, 0);
    EXPECT_LE(retry_after, svc().cfg.breaker.open_duration / seconds(1));
    EXPECT_NE(out.response.body().find("\"decided_by\":\"breaker\""), std::string::npos) << out.response.body();
}

TEST_F(fallback_chain_fixture, a_streamed_failure_answer_without_a_place_is_the_stream_limit_answer)
{
    configure("      - when: [timeout]\n"
              "        static: {status: 503, body: x}\n");
    call.streamed_place = false;
    call_result failed_status{proxy_error::ok, {}};
    failed_status.failure_status = true;
    const auto out = chain(failed_status, fallback_trigger::upstream_error);
    EXPECT_EQ(out.error, proxy_error::stream_limit);
    EXPECT_EQ(out.status(), 503u);
}

// A stalled disk (another connection holds the database's write lock, so the store's group commit
// waits): past queue_store.commit_timeout the next fallback answers, the wait is counted, and the
// enqueue, dropped before it ran, is never stored — the client's answer stays the truth.
TEST_F(fallback_chain_fixture, a_stalled_store_passes_to_the_next_fallback_and_stores_nothing)
{
    configure("      - when: [circuit_open]\n"
              "        queue: {}\n"
              "      - static: {status: 503, body: next}\n",
              true, ", commit_timeout: 50ms");
    sqlite3* blocker = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "q.db").string().c_str(), &blocker), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    call.req.method(bhttp::verb::post);
    call.req.body() = "{}";
    call.req.prepare_payload();
    const auto out = chain(refused_open, fallback_trigger::circuit_open);
    EXPECT_EQ(out.status(), 503u);
    EXPECT_EQ(fallback_of(out), "static(prerendered)");
    EXPECT_EQ(store->counters("svc").rejected[static_cast<std::size_t>(queue::rejection::timeout)].load(), 1u);
    sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(blocker);
    // The writer is FIFO: once an operation submitted now is answered, the abandoned one has been run.
    std::atomic<bool> after{false};
    store->async_maintain([&](queue::queue_result<std::int64_t>) { after = true; });
    for (int i = 0; i < 10000 && !after; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1)); // waits for the writer thread, not for time
    ASSERT_TRUE(after.load());
    EXPECT_EQ(store->counters("svc").enqueued.load(), 0u);
    EXPECT_EQ(store->counters("svc").depth.load(), 0);
}

} // namespace
} // namespace breakerbox
