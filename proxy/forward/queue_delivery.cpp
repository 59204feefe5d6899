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

// The deliveries in flight of one upstream, shared with their coroutines (same executor: no lock).
struct in_flight_set {
    explicit in_flight_set(const asio::any_io_executor& ex) : freed(ex, std::chrono::steady_clock::time_point::max()) { }
    asio::steady_timer freed; // cancelled whenever a delivery ends
    std::size_t count = 0;
    bool retryable_failure = false; // since the loop last looked
    bool refused = false;
    bool delivered = false;
};

// An entry claimed but never sent: back to the queue, its attempt uncounted.
asio::awaitable<void> release_unsent(queue::queue_store& store, queue::entry& e, const config::queue_fallback_config& q)
{
    queue::delivery_outcome o;
    o.result = queue::delivery_result::not_sent;
    o.max_attempts = q.max_attempts;
    o.error = "not sent: the drain stopped at a failure before it";
    co_await store.async_finish(e.id, std::move(o), asio::use_awaitable);
}

// The upstream's queue settings in this worker's current generation (the defaults without one).
const config::queue_fallback_config& current_queue(runtime::worker_context& worker, const std::string& upstream)
{
    const auto* up = worker.current->find(upstream);
    const auto* fb = up ? up->cfg.queue_fallback() : nullptr;
    return fb ? fb->queue : default_queue;
}

} // namespace

nanos delivery_backoff(const config::queue_delivery_config& d, unsigned failures) noexcept
{
    nanos wait = d.backoff_base;
    for (unsigned i = 1; i < failures && wait < d.backoff_max; ++i)
        wait *= 2;
    return std::min(wait, d.backoff_max);
}

// The loop: claim the oldest entries while the circuit lets traffic through, start each at the paced
// time in its own coroutine, keep at most `concurrency` in flight, and stop claiming for the back-off
// after a retryable failure (what was claimed but not started goes back, uncounted). It sleeps only
// when there is nothing it may do.
asio::awaitable<void> run_queue_delivery(runtime::worker_context& worker, queue::queue_store& store, std::string upstream)
{
    worker.owner.assert_owned("run_queue_delivery");
    const auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    auto& counters = store.counters(upstream);
    auto flight = std::make_shared<in_flight_set>(ex);
    unsigned failures = 0;
    nanos resume_at = 0;  // the back-off's end
    nanos next_start = 0; // the pacing: the earliest start of the next delivery
    auto pause = [&](auto d) -> asio::awaitable<void> {
        timer.expires_after(d);
        co_await timer.async_wait(nothrow_awaitable);
    };
    for (;;) {
        if (worker.state.draining.load())
            co_return;
        if (std::exchange(flight->retryable_failure, false)) { // the head stays; the drain pauses
            ++failures;
            resume_at = worker.clk.now() + delivery_backoff(current_queue(worker, upstream).delivery, failures);
            flight->delivered = false;
        } else if (std::exchange(flight->delivered, false)) {
            failures = 0; // the back-off starts again from its base after a success
        }
        auto gen = worker.current; // this worker's generation now: settings follow reloads
        auto* up = gen->find(upstream);
        const nanos now = worker.clk.now();
        if (!up || now < resume_at || std::exchange(flight->refused, false) ||
            counters.depth.load() - counters.in_flight.load() <= 0 ||
            !delivering_state(up->shared.breaker.effective_state(now))) {
            co_await pause(poll_interval);
            continue;
        }
        // What was accepted with a 202 is owed a delivery even if a reload removed the queue fallback:
        // then with the default pacing and limits.
        const auto* fb = up->cfg.queue_fallback();
        const auto& q = fb ? fb->queue : default_queue;
        if (flight->count >= q.delivery.concurrency) { // wait for a free slot
            co_await flight->freed.async_wait(nothrow_awaitable);
            continue;
        }
        auto claimed = co_await store.async_claim(upstream, q.delivery.concurrency - flight->count, asio::use_awaitable);
        if (claimed.empty()) {
            co_await pause(poll_interval);
            continue;
        }
        const nanos spacing = static_cast<nanos>(1e9 / q.delivery.rate);
        for (std::size_t i = 0; i < claimed.size(); ++i) {
            const nanos t = worker.clk.now();
            if (next_start > t) { // pacing: at most `rate` starts per second
                timer.expires_at(worker.clk.to_steady(next_start));
                co_await timer.async_wait(nothrow_awaitable);
            }
            if (flight->retryable_failure || flight->refused || worker.state.draining.load()) {
                // Stop at the first failure: what was claimed but not sent goes back, its attempt uncounted.
                for (std::size_t k = i; k < claimed.size(); ++k)
                    co_await release_unsent(store, claimed[k], q);
                break;
            }
            next_start = std::max(next_start, worker.clk.now()) + spacing;
            ++flight->count;
            asio::co_spawn(ex, deliver_one(worker, store, gen, *up, q, std::move(claimed[i])),
                           [flight](std::exception_ptr, queue::delivery_result r) {
                               flight->retryable_failure = flight->retryable_failure || r == queue::delivery_result::retryable;
                               flight->refused = flight->refused || r == queue::delivery_result::not_sent;
                               flight->delivered = flight->delivered || r == queue::delivery_result::delivered;
                               --flight->count;
                               flight->freed.cancel();
                           });
        }
    }
}

} // namespace breakerbox::forward
