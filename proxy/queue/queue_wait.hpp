// Every awaited queue operation under a deadline (queue_store.commit_timeout): the store's answer comes
// after its group commit, and a stalled disk must not stall the request, the status lookup or the admin
// call waiting for it. The answer is the store's one result shape, queue_result<T>, with
// queue_error::timeout when it did not come in time.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "queue/queue_store.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>

namespace breakerbox::queue {

// Starts an operation of the store — `start(handler)` calls one of its async_* members with `handler` —
// and waits for its answer at most `timeout`. On the caller's executor; a late answer is dropped (the
// operation may still run: see queue_store.commit_timeout in config/reference.md).
template <class T, class Start>
asio::awaitable<queue_result<T>> within(nanos timeout, Start start)
{
    struct pending {
        explicit pending(const asio::any_io_executor& ex) : wake(ex) { }
        asio::steady_timer wake;
        std::optional<queue_result<T>> result;
    };
    auto ex = co_await asio::this_coro::executor;
    auto p = std::make_shared<pending>(ex);
    p->wake.expires_after(as_duration(timeout));
    start(asio::bind_executor(ex, [p](queue_result<T> r) {
        p->result = std::move(r);
        p->wake.cancel();
    }));
    co_await p->wake.async_wait(nothrow_awaitable);
    if (!p->result)
        co_return queue_result<T>{queue_error::timeout, {}};
    co_return std::move(*p->result);
}

} // namespace breakerbox::queue
