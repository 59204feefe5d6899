// Every awaited queue operation under a deadline (queue_store.commit_timeout): the store's answer comes
// after its group commit, and a stalled disk must not stall the request, the status lookup or the admin
// call waiting for it. One result shape for all of them: whether the answer came in time, and the
// operation's own result when it did.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>

namespace breakerbox::queue {

template <class R>
struct queue_reply {
    bool in_time = false; // false: no answer within the deadline (the operation may still run later)
    R value{};            // the operation's result, when in_time
};

// Starts an operation of the store — `start(handler)` calls one of its async_* members with `handler` —
// and waits for its answer at most `timeout`. On the caller's executor; the late answer, if any, is
// dropped.
template <class R, class Start>
asio::awaitable<queue_reply<R>> within(nanos timeout, Start start)
{
    struct pending {
        explicit pending(const asio::any_io_executor& ex) : wake(ex) {}
        asio::steady_timer wake;
        std::optional<R> result;
    };
    auto ex = co_await asio::this_coro::executor;
    auto p = std::make_shared<pending>(ex);
    p->wake.expires_after(as_duration(timeout));
    start(asio::bind_executor(ex, [p](R r) {
        p->result = std::move(r);
        p->wake.cancel();
    }));
    co_await p->wake.async_wait(nothrow_awaitable);
    if (!p->result)
        co_return queue_reply<R>{};
    co_return queue_reply<R>{true, std::move(*p->result)};
}

} // namespace breakerbox::queue
