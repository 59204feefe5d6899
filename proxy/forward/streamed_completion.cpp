#include "forward/streamed_completion.hpp"

#include "forward/retry_policy.hpp"
#include "forward/stream_relay.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/streaming_rules.hpp"

namespace breakerbox::forward {

using runtime::retry_result;
namespace bhttp = boost::beast::http;

namespace {

// Whether a streamed answer is collected for the stale cache: a good GET answer of the upstream's own
// (not a failover's), not an event stream (a replayed feed would be a lie), that the cache may keep.
bool worth_capturing(const runtime::upstream_handle& up, const http::request& req, const forward_result& out)
{
    const unsigned status = out.response.result_int();
    return up.shared.cache && req.method() == bhttp::verb::get && !out.from_fallback && status >= 200 && status < 300 &&
           status != 206 && !http::streams_response(out.response);
}

// A streamed answer that completed within the stale cache's size: stored as a buffered one would be.
void store_streamed(runtime::upstream_handle& up, const http::request& req, const http::response& head, std::string body,
                    nanos now)
{
    http::response copy = head;
    http::erase_all(copy, {bhttp::field::transfer_encoding});
    copy.body() = std::move(body);
    http::set_content_length(copy, copy.body().size());
    up.shared.cache->store(req, copy, now);
}

// A streamed body that broke after its head was recorded as the call's outcome: one more failure for
// the breaker, and a retry the policy would have made is abandoned (the client has part of the answer).
void record_broken_stream(runtime::upstream_handle& up, const http::request& req, nanos now)
{
    up.shared.breaker.on_failure_after_answer(now);
    const auto& rc = up.cfg.retries;
    if (rc.max_attempts > 1 && rc.on_reset && method_retryable(req, rc))
        up.stats.count(retry_result::abandoned);
}

} // namespace

asio::awaitable<streamed_end> finish_streamed(runtime::worker_context& worker, const config::limits_config& limits,
                                              const http::request& req, forward_result& out, deadline_stream& client,
                                              beast::flat_buffer& client_buffer, bool chunked_to_client,
                                              resilience::client_watch* watch)
{
    worker.owner.assert_owned("finish_streamed");
    auto& up = *out.streamed_from;
    const auto& sc = up.cfg.streaming;
    if (out.body.upgraded) {
        // A tunnel's buffers live as long as it does, idle or not: at most 16 KiB each way (WebSocket
        // messages are small; a thousand idle tunnels hold 32 MiB, not 128).
        const tunnel_options topt{.idle_timeout = sc.idle_timeout,
                                  .total_timeout = sc.total_timeout,
                                  .buffer_size = std::min<std::size_t>(limits.stream_buffer, 16 * 1024),
                                  .breaker = sc.close_tunnels_on_open ? &up.shared.breaker : nullptr,
                                  .trips = up.shared.breaker.trip_count(),
                                  .draining = &worker.state.draining,
                                  .drain_timeout = limits.drain_timeout,
                                  .clk = &worker.clk};
        const auto end = co_await run_tunnel(client, client_buffer, out.body, topt);
        up.stats.count_tunnel(end);
        if (end == runtime::stream_end::upstream_failed)
            up.shared.breaker.on_failure_after_answer(worker.clk.now());
        else
            up.shared.breaker.on_stream_completed(); // the 101 was a success
        out.body.reset();
        co_return streamed_end{false};
    }
    std::string captured;
    relay_options opt{sc.idle_timeout, sc.total_timeout, limits.stream_buffer, chunked_to_client};
    opt.watch = watch;
    opt.now = worker.clk.now();
    opt.clk = &worker.clk;
    if (worth_capturing(up, req, out)) {
        opt.capture = &captured;
        // Within the cache's size, and within the response buffer: a stream's memory stays bounded by
        // what a buffered answer may hold, however many stream at once.
        opt.capture_limit = std::min<std::uint64_t>(up.cfg.stale_cache.max_bytes, limits.response_buffer);
    }
    const auto relayed = co_await relay_response_body(client, out.body, opt);
    out.body.reset();
    up.stats.count_stream(relayed.end);
    const bool completed = relayed.end == runtime::stream_end::completed;
    if (completed && up.shared.classifier.of_status(out.response.result_int()) == resilience::outcome::success)
        up.shared.breaker.on_stream_completed(); // a good head, a whole body: the run of failures ends
    // The upstream broke the body or fell silent: its failure. (A client that left or stopped reading,
    // or the total time, says nothing about the upstream.)
    if (relayed.end == runtime::stream_end::upstream_failed || relayed.end == runtime::stream_end::idle_timeout)
        record_broken_stream(up, req, worker.clk.now());
    if (completed && relayed.captured)
        store_streamed(up, req, out.response, std::move(captured), worker.clk.now());
    co_return streamed_end{completed};
}

} // namespace breakerbox::forward
