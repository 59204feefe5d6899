// One request's journey through the forwarder — bulkhead, breaker, attempts, retries, fallbacks — over
// real loopback sockets against a scripted upstream, with time injected: the worker, the breaker and the
// retry rules read a manual clock, so Retry-After dates, back-off against the deadline and the open
// circuit's wait are decided without sleeping. Every failure point is enumerated in one table, with what
// the client gets, how often the upstream saw the request and what was counted.
#include "../socket_pair_fixture.hpp"
#include "../support/manual_clock.hpp"
#include "../support/scripted_upstream.hpp"
#include "forward/forwarder.hpp"

#include "config/loader.hpp"
#include "runtime/config_generation.hpp"
#include "upstream/endpoint_health.hpp"

#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <vector>

namespace breakerbox {
namespace {

using namespace std::chrono_literals;
using testing::upstream_step;
namespace bhttp = boost::beast::http;

constexpr std::string_view ok_reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

std::string reply_503(std::string_view retry_after)
{
    return "HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + std::string(retry_after) + "\r\nContent-Length: 0\r\n\r\n";
}

// An IMF-fixdate (RFC 9110 §5.6.7) for `unix_seconds`.
std::string http_date(std::int64_t unix_seconds)
{
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return text;
}

struct forwarder_fixture : ::testing::Test {
    asio::io_context ioc;
    testing::scripted_upstream upstream{ioc};
    manual_clock clk;
    std::shared_ptr<const runtime::config_generation> generation;
    std::optional<runtime::proxy_state> state;
    std::optional<runtime::worker_context> worker;

    // One upstream `svc` on the scripted upstream; `policies`: more of its keys, as YAML lines indented
    // by four spaces.
    void configure(const std::string& policies)
    {
        worker.reset(); // before the state it refers to
        state.reset();
        const auto yaml = "listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n"
                          "upstreams:\n"
                          "  svc:\n"
                          "    endpoints: [\"127.0.0.1:" +
                          std::to_string(upstream.endpoint().port()) +
                          "\"]\n"
                          "    routes: {hosts: [svc]}\n" +
                          policies;
        auto loaded =
            config::load_string(yaml, "forwarder_test.yaml", [](const std::string&) { return std::optional<std::string>(); });
        ASSERT_TRUE(loaded.cfg) << (loaded.errors.empty() ? "" : loaded.errors.front().text());
        generation = std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), clk, nullptr);
        state.emplace(generation, 1);
        worker.emplace(ioc, *state, 0, clk);
        worker->owner.bind_to_this_thread();
        worker->current->upstreams[0].set_endpoints({upstream.endpoint()});
    }

    runtime::upstream_stats& stats() { return worker->current->upstreams[0].stats; }
    const resilience::circuit_breaker& breaker() { return worker->current->upstreams[0].shared.breaker; }

    asio::awaitable<forward::forward_result> send(bhttp::verb method, std::string body = {})
    {
        http::request req{method, "/item", 11};
        req.set(bhttp::field::host, "svc");
        if (!body.empty()) {
            req.body() = std::move(body);
            req.prepare_payload();
        }
        const auto route = generation->router.match(0, "/item", "svc");
        EXPECT_TRUE(route);
        forward::forward_result out;
        co_await forward::forward_request(*worker, *worker->current, req, *route, {"127.0.0.1"}, out);
        co_return out;
    }

    void run(std::function<asio::awaitable<void>()> body)
    {
        upstream.start();
        testing::run_bounded(ioc, std::move(body));
    }
};

std::uint64_t counted(const runtime::upstream_stats& s, runtime::upstream_outcome o)
{
    return s.outcomes[static_cast<std::size_t>(o)].value();
}
std::uint64_t counted(const runtime::upstream_stats& s, runtime::retry_result r)
{
    return s.retries[static_cast<std::size_t>(r)].value();
}

struct failure_point {
    const char* name;
    std::vector<std::vector<upstream_step>> connections; // what the upstream does, per connection
    bool post;                                           // a POST (never sent twice) instead of a GET
    std::string policies;
    unsigned status; // what the client gets
    proxy_error error;
    int requests_read;                      // how often the upstream saw the request
    runtime::upstream_outcome last_outcome; // counted for the last attempt
    std::uint64_t retries;                  // retries attempted
};

const std::string no_retries = "    retries: {max_attempts: 1}\n";
const std::string retries = "    retries: {max_attempts: 2, backoff_base: 1ms, backoff_max: 1ms}\n";

TEST_F(forwarder_fixture, every_failure_point_with_what_the_client_gets_and_what_is_counted)
{
    using o = runtime::upstream_outcome;
    const std::string big(32 << 20, 'x');
    const failure_point points[] = {
        {"reset before any byte, GET retried",
         {{{""}}, {{std::string(ok_reply)}}},
         false,
         retries,
         200,
         proxy_error::ok,
         2,
         o::success,
         1},
        {"reset before any byte, POST never sent twice",
         {{{""}}, {{std::string(ok_reply)}}},
         true,
         retries,
         502,
         proxy_error::upstream_reset,
         1,
         o::reset,
         0},
        {"closed mid-head",
         {{{"HTTP/1.1 200 OK\r\nContent-Le"}}},
         false,
         no_retries,
         502,
         proxy_error::upstream_reset,
         1,
         o::reset,
         0},
        {"closed mid-body",
         {{{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"}}},
         false,
         no_retries,
         502,
         proxy_error::upstream_reset,
         1,
         o::reset,
         0},
        {"1xx then 200",
         {{{"HTTP/1.1 100 Continue\r\n\r\n" + std::string(ok_reply)}}},
         false,
         no_retries,
         200,
         proxy_error::ok,
         1,
         o::success,
         0},
        {"101 switching protocols",
         {{{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"}}},
         false,
         no_retries,
         502,
         proxy_error::upstream_invalid_response,
         1,
         o::invalid_response,
         0},
        {"per-try timeout, then an answer",
         {{{"", false}}, {{std::string(ok_reply)}}},
         false,
         "    retries: {max_attempts: 2, per_try_timeout: 100ms, retry_on: [timeout], backoff_base: 1ms, backoff_max: 1ms}\n",
         200,
         proxy_error::ok,
         2,
         o::success,
         1},
        {"deadline during the write",
         {{{"", false, false}}},
         true,
         "    request_timeout: 300ms\n" + no_retries,
         504,
         proxy_error::upstream_timeout,
         0,
         o::timeout,
         0},
        // last: it closes the upstream's listening socket
        {"connect refused", {}, false, no_retries, 502, proxy_error::upstream_connect_failed, 0, o::connect_failed, 0},
    };
    for (const auto& point : points) {
        SCOPED_TRACE(point.name);
        upstream.connections = point.connections;
        upstream.accepted = upstream.requests_read = 0;
        configure(point.policies);
        if (point.connections.empty())
            upstream.close();
        ioc.restart();
        run([&]() -> asio::awaitable<void> {
            std::string body; // (not a conditional expression inside co_await: GCC 12 frees its temporaries twice)
            if (point.post)
                body = point.status == 504 ? big : "{}";
            auto out = co_await send(point.post ? bhttp::verb::post : bhttp::verb::get, std::move(body));
            EXPECT_EQ(out.status(), point.status);
            EXPECT_EQ(out.error, point.error);
            EXPECT_EQ(upstream.requests_read, point.requests_read);
            EXPECT_EQ(counted(stats(), point.last_outcome), 1u);
            EXPECT_EQ(counted(stats(), runtime::retry_result::attempted), point.retries);
        });
    }
}

TEST_F(forwarder_fixture, a_stale_pooled_connection_resends_a_get_but_never_a_post)
{
    for (const bool post : {false, true}) {
        SCOPED_TRACE(post ? "POST" : "GET");
        // First connection: answers one request and keeps the connection; reads the second and closes
        // without a byte (the benign race, or an upstream that died with the request). Then a fresh one.
        upstream.connections = {{{std::string(ok_reply), false}, {""}}, {{std::string(ok_reply)}}};
        upstream.accepted = upstream.requests_read = 0;
        configure("    retries: {max_attempts: 2, allow_post: false, backoff_base: 1ms, backoff_max: 1ms}\n");
        ioc.restart();
        run([&]() -> asio::awaitable<void> {
            const auto method = post ? bhttp::verb::post : bhttp::verb::get;
            const std::string body = post ? "{}" : "";
            auto first = co_await send(method, body);
            EXPECT_EQ(first.status(), 200u);
            auto second = co_await send(method, body);
            EXPECT_EQ(second.status(), post ? 502u : 200u);
            EXPECT_EQ(upstream.requests_read, post ? 2 : 3);
            EXPECT_EQ(counted(stats(), runtime::retry_result::attempted), post ? 0u : 1u); // a resend is a retry
        });
    }
}

TEST_F(forwarder_fixture, retry_after_dates_are_read_against_the_injected_wall_clock)
{
    // A date equal to the manual wall clock means "now": retried at once. A date an hour ahead is beyond
    // retry_after_max: the 503 stands. Neither depends on the machine's date.
    const std::string policies = "    retries: {max_attempts: 2, retry_on: [503], retry_after_max: 1s}\n";
    const std::pair<std::int64_t, int> cases[] = {{0, 2}, {3600, 1}};
    for (const auto& [ahead, expected] : cases) {
        SCOPED_TRACE(ahead);
        const int requests = expected; // a structured binding cannot be captured by clang 14's lambdas
        upstream.connections = {{{reply_503(http_date(clk.unix_seconds() + ahead)), false}, {std::string(ok_reply)}}};
        upstream.accepted = upstream.requests_read = 0;
        configure(policies);
        ioc.restart();
        run([&]() -> asio::awaitable<void> {
            auto out = co_await send(bhttp::verb::get);
            EXPECT_EQ(out.status(), requests == 2 ? 200u : 503u);
            EXPECT_EQ(upstream.requests_read, requests);
        });
    }
}

TEST_F(forwarder_fixture, no_retry_whose_wait_would_end_past_the_request_deadline)
{
    upstream.connections = {{{reply_503("5"), false}, {std::string(ok_reply)}}};
    configure("    request_timeout: 1s\n    retries: {max_attempts: 3, retry_on: [503], retry_after_max: 10s}\n");
    run([&]() -> asio::awaitable<void> {
        auto out = co_await send(bhttp::verb::get);
        EXPECT_EQ(out.status(), 503u); // the upstream's answer stands; nobody waited five seconds for nothing
        EXPECT_EQ(upstream.requests_read, 1);
        EXPECT_EQ(counted(stats(), runtime::retry_result::attempted), 0u);
    });
}

TEST_F(forwarder_fixture, an_open_circuit_answers_without_the_upstream_until_the_injected_clock_says_probe)
{
    upstream.connections = {
        {{"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", false}, {std::string(ok_reply), false}}};
    configure("    circuit_breaker: {consecutive_failures: 1, open_duration: 10s, open_duration_jitter: 0}\n" + no_retries);
    run([&]() -> asio::awaitable<void> {
        auto failed = co_await send(bhttp::verb::get);
        EXPECT_EQ(failed.status(), 500u); // the upstream's own failure answer, passed on
        EXPECT_EQ(breaker().state(), resilience::breaker_state::open);
        auto refused = co_await send(bhttp::verb::get);
        EXPECT_EQ(refused.error, proxy_error::circuit_open);
        EXPECT_EQ(upstream.requests_read, 1); // fast-fail: the upstream never saw it
        clk.advance(seconds(10) + millis(1));
        auto probe = co_await send(bhttp::verb::get);
        EXPECT_EQ(probe.status(), 200u);
        EXPECT_EQ(upstream.requests_read, 2);
        EXPECT_EQ(breaker().state(), resilience::breaker_state::closed);
    });
}

// Every endpoint out of load balancing: the upstream is unavailable as a whole. Its own reason
// (no_healthy_endpoint, counted so), which the fallbacks take as an open circuit — where it used to be
// answered "the circuit is open" while the circuit was closed, and documented as upstream_error.
struct ejected_fixture : forwarder_fixture {
    void configure_all_ejected(const std::string& fallback_when)
    {
        configure("    outlier_detection: {consecutive_5xx: 3}\n"
                  "    fallbacks:\n"
                  "      - when: [" +
                  fallback_when +
                  "]\n"
                  "        static: {status: 503, body: fallback}\n" +
                  no_retries);
        auto& up = worker->current->upstreams[0];
        (void)up.shared.outliers->set_endpoints({upstream.endpoint()});
        up.set_endpoints({upstream.endpoint()});
        up.shared.outliers->find(upstream.endpoint())
            ->word.store(upstream::endpoint_word{upstream::endpoint_state::ejected, true, false, 0}.encode());
    }
};

TEST_F(ejected_fixture, every_endpoint_ejected_is_no_healthy_endpoint_not_an_upstream_error)
{
    configure_all_ejected("upstream_error");
    run([&]() -> asio::awaitable<void> {
        auto r = co_await send(bhttp::verb::get);
        EXPECT_EQ(r.error, proxy_error::no_healthy_endpoint);
        EXPECT_EQ(r.status(), 503u);
        EXPECT_FALSE(r.from_fallback);                                     // an upstream_error fallback is not for this
        EXPECT_EQ(r.response[boost::beast::http::field::retry_after], ""); // no circuit's wait is claimed
        EXPECT_EQ(stats().rejections[static_cast<std::size_t>(runtime::rejection_reason::no_healthy_endpoint)].value(), 1u);
        EXPECT_EQ(stats().rejections[static_cast<std::size_t>(runtime::rejection_reason::no_endpoint)].value(), 0u);
        EXPECT_EQ(breaker().state(), resilience::breaker_state::closed);
        EXPECT_EQ(upstream.requests_read, 0);
    });
}

TEST_F(ejected_fixture, every_endpoint_ejected_fires_the_circuit_open_fallback)
{
    configure_all_ejected("circuit_open");
    run([&]() -> asio::awaitable<void> {
        auto r = co_await send(bhttp::verb::get);
        EXPECT_TRUE(r.from_fallback);
        EXPECT_EQ(r.error, proxy_error::no_healthy_endpoint);
    });
}

} // namespace
} // namespace breakerbox
