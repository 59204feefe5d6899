#include "forward/bulkhead_wait.hpp"

#include "core/socket_peek.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
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

// Completes with true when the client has closed its connection (EOF or an error), with false when
// cancelled. Pipelined bytes make EOF undetectable without reading them, so then it just waits to be
// cancelled.
asio::awaitable<bool> client_gone(tcp::socket& client)
{
    auto [ec] = co_await client.async_wait(tcp::socket::wait_read, nothrow_awaitable);
    if (ec)
        co_return ec != asio::error::operation_aborted;
    if (peek_receive_queue(client) == peek_result::closed)
        co_return true;
    asio::steady_timer until_cancelled(client.get_executor(), std::chrono::hours(24));
    co_await until_cancelled.async_wait(nothrow_awaitable);
    co_return false;
}

} // namespace

asio::awaitable<bulkhead_result> acquire_bulkhead(resilience::bulkhead& b, nanos queue_timeout, bulkhead_permit& permit,
                                                  tcp::socket* client)
{
    if ((permit = try_take_slot(b)))
        co_return bulkhead_result::acquired;
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
    bool gone = false;
    if (client) {
        using namespace asio::experimental::awaitable_operators;
        auto first = co_await (state->timer.async_wait(nothrow_awaitable) || client_gone(*client));
        gone = first.index() == 1 && std::get<1>(first);
    } else {
        co_await state->timer.async_wait(nothrow_awaitable); // expiry, or cancelled by a grant
    }
    guard.done = true;
    const bool still_queued = b.leave(state->waiter);
    state->waiter->wake = nullptr; // breaks the state ↔ wake reference cycle
    if (!still_queued)
        permit = bulkhead_permit(b); // granted (even if the client just left: the permit gives it back)
    if (gone)
        co_return bulkhead_result::client_gone;
    co_return still_queued ? bulkhead_result::queue_timeout : bulkhead_result::acquired;
}

} // namespace breakerbox::forward
