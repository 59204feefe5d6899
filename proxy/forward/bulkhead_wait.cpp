#include "forward/bulkhead_wait.hpp"

#include <boost/asio/post.hpp>

namespace breakerbox::forward {
namespace {

struct wait_state {
    explicit wait_state(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::shared_ptr<resilience::bulkhead_waiter> waiter = std::make_shared<resilience::bulkhead_waiter>();
};

// Leaves the queue if the wait did not finish normally (coroutine destroyed while queued).
struct queue_guard {
    resilience::bulkhead& b;
    std::shared_ptr<wait_state> state;
    bool done = false;
    ~queue_guard()
    {
        if (done)
            return;
        if (!b.leave(state->waiter))
            b.release(); // granted just now, but nobody will use it
        state->waiter->wake = nullptr;
    }
};

} // namespace

asio::awaitable<bulkhead_result> acquire_bulkhead(resilience::bulkhead& b, nanos queue_timeout, bulkhead_permit& permit)
{
    if (b.try_acquire()) {
        permit = bulkhead_permit(b);
        co_return bulkhead_result::acquired;
    }
    auto state = std::make_shared<wait_state>(co_await asio::this_coro::executor);
    // Called by whichever thread releases the slot we get, under the bulkhead's lock: hop to our own
    // executor to wake us (timers are not thread-safe).
    state->waiter->wake = [state] { asio::post(state->timer.get_executor(), [state] { state->timer.cancel(); }); };
    const auto admit = b.acquire_or_enqueue(state->waiter);
    if (admit != resilience::bulkhead::admit::queued) {
        state->waiter->wake = nullptr;
        if (admit == resilience::bulkhead::admit::full)
            co_return bulkhead_result::full;
        permit = bulkhead_permit(b);
        co_return bulkhead_result::acquired;
    }
    queue_guard guard{b, state};
    state->timer.expires_after(as_duration(queue_timeout));
    co_await state->timer.async_wait(nothrow_awaitable); // expiry, or cancelled by a grant
    guard.done = true;
    const bool still_queued = b.leave(state->waiter);
    state->waiter->wake = nullptr; // breaks the state ↔ wake reference cycle
    if (still_queued)
        co_return bulkhead_result::queue_timeout;
    permit = bulkhead_permit(b);
    co_return bulkhead_result::acquired;
}

} // namespace breakerbox::forward
