// The /events hub without sockets: frames, the quantiles of a second, the snapshot and resume, and the
// bounds (viewer limit, a viewer that falls behind). Time is the manual clock; nothing sleeps.
#include "admin/event_hub.hpp"

#include "../support/manual_clock.hpp"
#include "config/loader.hpp"
#include "runtime/worker_context.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

namespace breakerbox::admin {
namespace {

TEST(sse_frame, one_data_line_with_newlines_escaped_and_an_optional_id)
{
    EXPECT_EQ(sse_frame(7, "transition", {{"reason", "a\nb"}}), "id: 7\nevent: transition\ndata: {\"reason\":\"a\\nb\"}\n\n");
    EXPECT_EQ(sse_frame(std::nullopt, "sample", {{"t", 1}}), "event: sample\ndata: {\"t\":1}\n\n");
}

TEST(bucket_quantile, interpolates_inside_the_bucket_as_prometheus_does)
{
    const double bounds[]{0.001, 0.01, 0.1};
    const std::uint64_t none[]{0, 0, 0, 0};
    EXPECT_FALSE(bucket_quantile(none, bounds, 0.5));
    const std::uint64_t in_second[]{0, 10, 0, 0}; // all between 1 and 10 ms
    EXPECT_DOUBLE_EQ(*bucket_quantile(in_second, bounds, 0.5), 0.0055);
    EXPECT_DOUBLE_EQ(*bucket_quantile(in_second, bounds, 1.0), 0.01);
    const std::uint64_t tail[]{98, 0, 1, 1}; // the slowest beyond the last bound
    EXPECT_LE(*bucket_quantile(tail, bounds, 0.5), 0.001);
    EXPECT_DOUBLE_EQ(*bucket_quantile(tail, bounds, 0.99), 0.1);
    EXPECT_DOUBLE_EQ(*bucket_quantile(tail, bounds, 1.0), 0.1); // +Inf: the largest finite bound
}

struct hub_fixture : ::testing::Test {
    asio::io_context ioc;
    manual_clock clk;
    std::optional<runtime::proxy_state> state;
    std::optional<runtime::worker_context> worker;
    std::optional<admin_context> ctx;

    void SetUp() override
    {
        auto loaded = config::load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n"
                                          "upstreams:\n  svc:\n    endpoints: [\"127.0.0.1:1\"]\n    routes: {hosts: [svc]}\n",
                                          "hub_test.yaml", [](const std::string&) { return std::optional<std::string>(); });
        ASSERT_TRUE(loaded.cfg);
        state.emplace(std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), clk, nullptr), 1);
        worker.emplace(ioc, *state, 0, clk);
        ctx.emplace(admin_context{*state, {&*worker}, clk, {}});
    }
};

TEST_F(hub_fixture, a_new_viewer_gets_the_snapshot_with_the_kept_events)
{
    event_hub hub(ioc.get_executor(), *ctx);
    const auto first = hub.first_id();
    // The process's start time in ms × 1000, from the injected clock: never repeats across restarts.
    EXPECT_EQ(first, static_cast<std::uint64_t>(clk.unix_millis()) * 1000);
    hub.publish("operator", {{"action", "force-open"}});
    auto v = hub.subscribe(std::nullopt);
    ASSERT_TRUE(v);
    // The snapshot carries the last id, so a client that saw only it resumes from there.
    EXPECT_TRUE(v->pending.starts_with("retry: 2000\n\nid: " + std::to_string(first) + "\nevent: snapshot\ndata: {"));
    EXPECT_NE(v->pending.find("\"health\":{"), std::string::npos);
    EXPECT_NE(v->pending.find("\"events\":[{\"data\":{\"action\":\"force-open\",\"at\":\""), std::string::npos);
    EXPECT_NE(v->pending.find("Z\"},\"event\":\"operator\",\"id\":" + std::to_string(first) + "}]"), std::string::npos);
    EXPECT_TRUE(v->pending.ends_with(",\"samples\":[]}\n\n"));
    hub.publish("reload", {{"applied", true}});
    const auto frame = "id: " + std::to_string(first + 1) + "\nevent: reload\ndata: {\"applied\":true,\"at\":\"";
    EXPECT_NE(v->pending.find(frame), std::string::npos);
}

// Issue 30 §7: every event carries the server's time of it (a page must never stamp it with its own),
// and an event that brings its own time keeps it.
TEST_F(hub_fixture, every_event_carries_its_server_time)
{
    event_hub hub(ioc.get_executor(), *ctx);
    auto v = hub.subscribe(std::nullopt);
    v->pending.clear();
    hub.publish("operator", {{"action", "reset"}, {"who", "ops"}});
    const auto data = nlohmann::json::parse(v->pending.substr(v->pending.find("data: ") + 6));
    ASSERT_TRUE(data.contains("at"));
    const auto at = data["at"].get<std::string>();
    EXPECT_EQ(at.size(), std::string("2026-12-07T19:48:35.000Z").size());
    EXPECT_EQ(at.back(), 'Z');
    v->pending.clear();
    hub.publish("operator", {{"action", "reset"}, {"at", "2020-01-01T00:00:00.000Z"}});
    EXPECT_NE(v->pending.find("\"at\":\"2020-01-01T00:00:00.000Z\""), std::string::npos);
}

TEST_F(hub_fixture, a_transition_from_any_thread_becomes_an_event_on_the_hubs_thread)
{
    event_hub hub(ioc.get_executor(), *ctx);
    auto v = hub.subscribe(std::nullopt);
    v->pending.clear();
    std::thread worker([&] {
        hub.post_transition({"svc", resilience::breaker_state::closed, resilience::breaker_state::open,
                             "3 consecutive failures >= 3", clk.now(), seconds(5)});
    });
    worker.join();
    EXPECT_TRUE(v->pending.empty()); // nothing until the hub's own thread runs it
    ioc.run();
    EXPECT_NE(v->pending.find("event: transition\ndata: {\"at\":\""), std::string::npos);
    EXPECT_NE(v->pending.find("\"from\":\"closed\",\"open_for_ms\":5000.0,\"reason\":\"3 consecutive failures >= "
                              "3\",\"to\":\"open\",\"upstream\":\"svc\""),
              std::string::npos);
}

TEST_F(hub_fixture, last_event_id_replays_what_came_after_and_says_when_some_are_gone)
{
    event_hub hub(ioc.get_executor(), *ctx, event_limits{16, 1 << 20, seconds(15), 3, 10});
    const auto first = hub.first_id();
    for (int i = 1; i <= 5; ++i)
        hub.publish("operator", {{"n", i}});
    auto v = hub.subscribe(first + 2); // kept: +2, +3, +4; seen up to +2
    EXPECT_EQ(v->pending.find("id: " + std::to_string(first + 2) + "\nevent: operator"), std::string::npos);
    EXPECT_NE(v->pending.find("id: " + std::to_string(first + 3) + "\nevent: operator"), std::string::npos);
    EXPECT_NE(v->pending.find("id: " + std::to_string(first + 4) + "\nevent: operator"), std::string::npos);
    EXPECT_NE(v->pending.find("\"events_lost\":false"), std::string::npos);
    auto late = hub.subscribe(first); // +1 is no longer kept
    EXPECT_NE(late->pending.find("\"events_lost\":true"), std::string::npos);
    // An id from a later process (this one restarted under the browser): told, and given everything kept.
    auto other = hub.subscribe(first + 1'000'000);
    EXPECT_NE(other->pending.find("\"events_lost\":true"), std::string::npos);
    EXPECT_NE(other->pending.find("id: " + std::to_string(first + 2) + "\nevent: operator"), std::string::npos);
}

TEST_F(hub_fixture, the_viewer_limit_and_a_viewer_that_falls_behind)
{
    event_hub hub(ioc.get_executor(), *ctx, event_limits{2, 4096, seconds(15), 16, 10});
    auto a = hub.subscribe(std::nullopt);
    auto b = hub.subscribe(std::nullopt);
    EXPECT_FALSE(hub.subscribe(std::nullopt)); // the limit
    EXPECT_EQ(hub.viewers(), 2u);
    b->pending.clear(); // b keeps up, a does not
    for (int i = 0; i < 100 && !a->dropped; ++i) {
        hub.publish("operator", {{"detail", std::string(100, 'x')}});
        b->pending.clear();
    }
    EXPECT_TRUE(a->dropped);
    EXPECT_TRUE(a->pending.empty()); // its memory is given back at once
    EXPECT_FALSE(b->dropped);
    EXPECT_EQ(hub.dropped_total(), 1u);
    hub.unsubscribe(a);
    EXPECT_TRUE(hub.subscribe(std::nullopt)); // its place is free
}

TEST_F(hub_fixture, a_sample_counts_the_second_and_has_every_upstream)
{
    event_hub hub(ioc.get_executor(), *ctx);
    hub.take_sample(); // the baseline
    auto& stats = worker->current->upstreams[0].stats;
    for (int i = 0; i < 4; ++i) {
        stats.count(runtime::upstream_outcome::success);
        stats.observe_duration(millis(2));
    }
    stats.count(runtime::upstream_outcome::timeout);
    const auto s = hub.take_sample();
    ASSERT_EQ(s["upstreams"].size(), 1u);
    const auto& u = s["upstreams"][0];
    EXPECT_EQ(u["upstream"], "svc");
    EXPECT_EQ(u["state"], "closed");
    EXPECT_EQ(u["requests"]["success"], 4);
    EXPECT_EQ(u["requests"]["timeout"], 1);
    EXPECT_FALSE(u["requests"].contains("reset")); // only what changed
    EXPECT_GT(u["latency_ms"]["p50"].get<double>(), 1.0);
    EXPECT_LE(u["latency_ms"]["p99"].get<double>(), 2.5);
    EXPECT_TRUE(hub.take_sample()["upstreams"][0]["latency_ms"].is_null()); // nothing in the next second
}

} // namespace
} // namespace breakerbox::admin
