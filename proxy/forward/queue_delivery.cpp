#include "forward/queue_delivery.hpp"

#include "core/log.hpp"
#include "forward/forwarder.hpp"
#include "queue/queue_request.hpp"

#include <algorithm>

namespace breakerbox::forward {
namespace {

constexpr auto poll_interval = std::chrono::milliseconds(200);
const config::queue_fallback_config default_queue{};

// The request certainly did not reach the upstream: refused before any attempt.
bool not_sent(proxy_error e)
{
    return e == proxy_error::circuit_open || e == proxy_error::bulkhead_full || e == proxy_error::queue_timeout ||
           e == proxy_error::connection_limit || e == proxy_error::no_endpoint;
}

// Deliveries run while the circuit lets traffic through: closed, or kept closed (or off) by an operator.
bool delivering_state(resilience::breaker_state s)
{
    using resilience::breaker_state;
    return s == breaker_state::closed || s == breaker_state::forced_closed || s == breaker_state::disabled;
}

queue::delivery_outcome outcome_of(const delivery_answer& a, const http::response& res, const config::queue_fallback_config& q)
{
    queue::delivery_outcome o;
    o.max_attempts = q.max_attempts;
    if (a.error == proxy_error::ok) {
        queue::keep_response(res, q.response_body_limit, o);
        o.result = queue::classify_delivery_status(res.result_int());
        if (o.result != queue::delivery_result::delivered)
            o.error = "the upstream answered " + std::to_string(res.result_int());
        return o;
    }
    o.result = not_sent(a.error) ? queue::delivery_result::not_sent : queue::delivery_result::retryable;
    o.error = std::string(token(a.error)) + (a.detail.empty() ? "" : ": " + a.detail);
    return o;
}

// One claimed entry: sent, and its outcome recorded (committed) before the result is returned.
asio::awaitable<queue::delivery_result> deliver_one(runtime::worker_context& worker, queue::queue_store& store,
                                                    std::shared_ptr<runtime::worker_generation> gen,
                                                    runtime::upstream_handle& up, const config::queue_fallback_config& q,
                                                    queue::entry e)
{
    auto req = queue::to_delivery(e, q.delivery);
    http::response res;
    const auto answer = co_await deliver_queued(worker, *gen, up, req, res);
    auto outcome = outcome_of(answer, res, q);
    const auto result = outcome.result;
    if (result != queue::delivery_result::delivered && result != queue::delivery_result::not_sent)
        log::warn("queued request not delivered",
                  {{"upstream", up.cfg.name}, {"id", e.id}, {"attempt", e.attempts}, {"error", outcome.error}});
    co_await store.async_finish(e.id, std::move(outcome), asio::use_awaitable);
    co_return result;
}

// Waits until every delivery of a batch has ended (they run concurrently on this executor).
struct batch_join {
    explicit batch_join(const asio::any_io_executor& ex) : done(ex, std::chrono::steady_clock::time_point::max()) { }
    asio::steady_timer done;
    std::size_t left = 0;
    bool retryable = false, refused = false;
};

} // namespace

nanos delivery_backoff(const config::queue_delivery_config& d, unsigned failures) noexcept
{
    nanos wait = d.backoff_base;
    for (unsigned i = 1; i < failures && wait < d.backoff_max; ++i)
        wait *= 2;
    return std::min(wait, d.backoff_max);
}

asio::awaitable<void> run_queue_delivery(runtime::worker_context& worker, queue::queue_store& store, std::string upstream)
{
    worker.owner.assert_owned("run_queue_delivery");
    const auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    auto& counters = store.counters(upstream);
    unsigned failures = 0;
    nanos resume_at = 0;  // the back-off's end
    nanos next_start = 0; // the pacing: the earliest start of the next delivery
    for (;;) {
        timer.expires_after(poll_interval);
        co_await timer.async_wait(nothrow_awaitable);
        if (worker.state.draining.load())
            co_return;
        auto gen = worker.current; // this worker's generation now: settings follow reloads
        auto* up = gen->find(upstream);
        if (!up || counters.depth.load() - counters.in_flight.load() <= 0)
            continue;
        const nanos now = worker.clk.now();
        if (now < resume_at || !delivering_state(up->shared.breaker.effective_state(now)))
            continue;
        // What was accepted with a 202 is owed a delivery even if a reload removed the queue fallback:
        // then with the default pacing and limits.
        const auto* fb = up->cfg.queue_fallback();
        const auto& q = fb ? fb->queue : default_queue;
        auto batch = co_await store.async_claim(upstream, q.delivery.concurrency, asio::use_awaitable);
        if (batch.empty())
            continue;
        auto join = std::make_shared<batch_join>(ex);
        join->left = batch.size();
        const nanos spacing = static_cast<nanos>(1e9 / q.delivery.rate);
        for (auto& e : batch) {
            const nanos t = worker.clk.now();
            if (next_start > t) { // pacing: at most `rate` starts per second
                timer.expires_at(worker.clk.to_steady(next_start));
                co_await timer.async_wait(nothrow_awaitable);
            }
            next_start = std::max(next_start, t) + spacing;
            asio::co_spawn(ex, deliver_one(worker, store, gen, *up, q, std::move(e)),
                           [join](std::exception_ptr, queue::delivery_result r) {
                               join->retryable = join->retryable || r == queue::delivery_result::retryable;
                               join->refused = join->refused || r == queue::delivery_result::not_sent;
                               if (--join->left == 0)
                                   join->done.cancel();
                           });
        }
        if (join->left > 0)
            co_await join->done.async_wait(nothrow_awaitable);
        if (join->retryable) { // the head stays; the drain pauses
            ++failures;
            resume_at = worker.clk.now() + delivery_backoff(q.delivery, failures);
        } else if (!join->refused) {
            failures = 0;
        }
    }
}

} // namespace breakerbox::forward
