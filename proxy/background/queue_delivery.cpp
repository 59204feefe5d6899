#include "background/queue_delivery.hpp"

#include "core/log.hpp"
#include "forward/forwarder.hpp"
#include "forward/outcome_table.hpp"
#include "queue/queue_request.hpp"

#include <algorithm>

namespace breakerbox::background {
namespace {

constexpr auto poll_interval = std::chrono::milliseconds(200);
const config::queue_fallback_config default_queue{};

// Deliveries run while the circuit lets traffic through: closed, or kept closed (or off) by an operator.
bool delivering_state(resilience::breaker_state s)
{
    using resilience::breaker_state;
    return s == breaker_state::closed || s == breaker_state::forced_closed || s == breaker_state::disabled;
}

// The upstream's queue settings in this worker's current generation: what was accepted with a 202 is
// owed a delivery even if a reload removed the queue fallback — then with the defaults.
const config::queue_fallback_config& queue_settings(const runtime::upstream_handle& up)
{
    const auto* fb = up.cfg.queue_fallback();
    return fb ? fb->queue : default_queue;
}

queue::delivery_outcome outcome_of(const forward::delivery_answer& a, const http::response& res,
                                   const config::queue_fallback_config& q)
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
    // A refusal after an attempt that may have reached the upstream (a retry the circuit turned away)
    // counts as that attempt: its number is never sent twice, and max_attempts still ends a flapping one.
    o.result = not_sent(a.error) && !a.maybe_sent ? queue::delivery_result::not_sent : queue::delivery_result::retryable;
    o.error = std::string(token(a.error)) + (a.detail.empty() ? "" : ": " + a.detail);
    return o;
}

// Records the outcome; a store that cannot record it now (a failed commit) is asked again, once a
// second, until it does or the process drains — the entry must not stay in flight with the loop gone on.
asio::awaitable<void> record_outcome(runtime::worker_context& worker, queue::queue_store& store, const std::string& id,
                                     queue::delivery_outcome outcome)
{
    asio::steady_timer wait(co_await asio::this_coro::executor);
    for (;;) {
        const auto recorded = co_await store.async_finish(id, outcome, asio::use_awaitable);
        if (recorded.ok() || worker.state.draining.load())
            co_return;
        log::error("queue delivery outcome not recorded; trying again", {{"id", id}});
        wait.expires_after(std::chrono::seconds(1));
        co_await wait.async_wait(nothrow_awaitable);
    }
}

// Counts a delivery in flight for the drain (SIGTERM waits for it, bounded by drain_timeout).
struct delivery_count {
    explicit delivery_count(runtime::proxy_state& s) : state(s) { ++state.queue_deliveries; }
    ~delivery_count() { --state.queue_deliveries; }
    delivery_count(const delivery_count&) = delete;
    delivery_count& operator=(const delivery_count&) = delete;
    runtime::proxy_state& state;
};

// One claimed entry: sent, and its outcome recorded (committed) before the result is returned. An
// exception (an allocation failing, say) is a retryable failure, recorded like one.
asio::awaitable<queue::delivery_result> deliver_one(runtime::worker_context& worker, queue::queue_store& store,
                                                    std::shared_ptr<runtime::worker_generation> gen, runtime::upstream_handle& up,
                                                    queue::entry e)
{
    const delivery_count counted(worker.state);
    const auto& q = queue_settings(up);
    queue::delivery_outcome outcome;
    try {
        auto req = queue::to_delivery(e, q.delivery);
        http::response res;
        const auto answer = co_await forward::deliver_queued(worker, *gen, up, req, res);
        outcome = outcome_of(answer, res, q);
    } catch (const std::exception& ex) {
        outcome = {
            queue::delivery_result::retryable, 0, {}, {}, false, std::string("delivery failed: ") + ex.what(), q.max_attempts};
    }
    const auto result = outcome.result;
    if (result != queue::delivery_result::delivered && result != queue::delivery_result::not_sent)
        log::warn("queued request not delivered",
                  {{"upstream", up.cfg.name}, {"id", e.id}, {"attempt", e.attempts}, {"error", outcome.error}});
    co_await record_outcome(worker, store, e.id, std::move(outcome));
    co_return result;
}

// The deliveries in flight of one upstream, shared with their coroutines (same executor: no lock).
struct in_flight_set {
    explicit in_flight_set(const asio::any_io_executor& ex) : freed(ex, std::chrono::steady_clock::time_point::max()) { }
    asio::steady_timer freed; // cancelled whenever a delivery ends
    std::size_t count = 0;
    // Since the loop last looked:
    bool retryable_failure = false;
    bool refused = false;
    bool delivered = false;
};

// One upstream's delivery loop (see run_queue_delivery): the state it keeps between rounds.
class delivery_loop {
public:
    delivery_loop(runtime::worker_context& w, queue::queue_store& s, std::string u, const asio::any_io_executor& ex)
        : worker_(w), store_(s), upstream_(std::move(u)), counters_(s.counters(upstream_)), ex_(ex), timer_(ex),
          flight_(std::make_shared<in_flight_set>(ex))
    {
    }

    asio::awaitable<void> run()
    {
        while (!worker_.state.draining.load()) {
            auto gen = worker_.current; // this worker's generation now: settings follow reloads
            auto* up = gen->find(upstream_);
            const nanos now = worker_.clk.now();
            if (up)
                learn_from_finished(queue_settings(*up).delivery, now);
            if (!up || !may_deliver(*up, now)) {
                co_await sleep_for(poll_interval);
                continue;
            }
            const auto& q = queue_settings(*up);
            if (flight_->count >= q.delivery.concurrency) { // a free slot first
                co_await flight_->freed.async_wait(nothrow_awaitable);
                continue;
            }
            if (next_start_ > now) { // pacing: at most `rate` starts per second
                co_await sleep_until(next_start_);
                continue; // everything is looked at again after a wait
            }
            // No deadline here (unlike the request path's queue waits): a claim given up while it commits
            // would leave its entry in flight with nobody delivering it. Nothing waits on this loop.
            auto claimed = co_await store_.async_claim(upstream_, 1, q.max_attempts, asio::use_awaitable);
            if (!claimed.ok() || claimed.value.empty()) { // nothing queued, or the store failed: look again later
                co_await sleep_for(poll_interval);
                continue;
            }
            next_start_ = std::max(next_start_, worker_.clk.now()) + static_cast<nanos>(1e9 / q.delivery.rate);
            start(gen, *up, std::move(claimed.value.front()));
        }
    }

private:
    // Whether a delivery may start now: something queued and not in flight, no back-off running, the
    // circuit letting traffic through.
    bool may_deliver(const runtime::upstream_handle& up, nanos now) const
    {
        const auto cluster = up.shared.cluster.verdict(now); // scope: cluster — the fleet's verdict too
        return now >= resume_at_ && counters_.depth.load() - counters_.in_flight.load() > 0 &&
               delivering_state(up.shared.breaker.effective_state(now)) &&
               (cluster == resilience::cluster_verdict::closed || cluster == resilience::cluster_verdict::forced_closed);
    }

    // What the deliveries that ended since the last look mean: a retryable failure pauses the drain
    // (the head keeps its place) for a back-off that doubles with each failure in a row; a delivery the
    // circuit or bulkhead turned away pauses it for the same back-off (no claim-and-release churn while
    // the upstream refuses); a success starts the back-off again from its base.
    void learn_from_finished(const config::queue_delivery_config& d, nanos now)
    {
        auto& f = *flight_;
        if (std::exchange(f.retryable_failure, false)) {
            resume_at_ = now + delivery_backoff(d, ++failures_);
            f.delivered = f.refused = false;
        } else if (std::exchange(f.refused, false)) {
            resume_at_ = now + delivery_backoff(d, ++refusals_);
            f.delivered = false;
        } else if (std::exchange(f.delivered, false)) {
            failures_ = refusals_ = 0;
        }
    }

    void start(std::shared_ptr<runtime::worker_generation> gen, runtime::upstream_handle& up, queue::entry e)
    {
        ++flight_->count;
        asio::co_spawn(ex_, deliver_one(worker_, store_, std::move(gen), up, std::move(e)),
                       [flight = flight_](std::exception_ptr failed, queue::delivery_result r) {
                           if (failed) // deliver_one catches its own; anything else is a failure, not a success
                               r = queue::delivery_result::retryable;
                           flight->retryable_failure = flight->retryable_failure || r == queue::delivery_result::retryable;
                           flight->refused = flight->refused || r == queue::delivery_result::not_sent;
                           flight->delivered = flight->delivered || r == queue::delivery_result::delivered;
                           --flight->count;
                           flight->freed.cancel();
                       });
    }

    asio::awaitable<void> sleep_for(std::chrono::milliseconds d)
    {
        timer_.expires_after(d);
        co_await timer_.async_wait(nothrow_awaitable);
    }
    asio::awaitable<void> sleep_until(nanos t)
    {
        timer_.expires_at(worker_.clk.to_steady(t));
        co_await timer_.async_wait(nothrow_awaitable);
    }

    runtime::worker_context& worker_;
    queue::queue_store& store_;
    const std::string upstream_;
    queue::queue_counters& counters_;
    asio::any_io_executor ex_;
    asio::steady_timer timer_;
    std::shared_ptr<in_flight_set> flight_;
    unsigned failures_ = 0, refusals_ = 0; // in a row
    nanos resume_at_ = 0;                  // the back-off's end
    nanos next_start_ = 0;                 // the pacing: the earliest start of the next delivery
};

} // namespace

bool not_sent(proxy_error e) noexcept { return forward::rule_of(e).origin == forward::reason_origin::local; }

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
    delivery_loop loop(worker, store, upstream, ex);
    for (;;) {
        try {
            co_await loop.run(); // returns when the process drains
            co_return;
        } catch (const std::exception& e) { // never silently: the queue would stop being delivered
            log::error("queue delivery loop failed; it starts again in a second", {{"upstream", upstream}, {"error", e.what()}});
        }
        asio::steady_timer pause(ex, std::chrono::seconds(1));
        co_await pause.async_wait(nothrow_awaitable);
    }
}

} // namespace breakerbox::background
