#include "server/worker_pool.hpp"

#include "core/log.hpp"
#include "core/memory_release.hpp"

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

namespace breakerbox::server {
namespace {

// Every 100 ms on each worker: the client watches (start watching the clients of exchanges that have
// run for 100 ms or more; slow calls in flight; cancel_in_flight). Once a second: close idle pooled
// upstream connections past their idle timeout (and free the buffers of those idle for a second), park
// client connections idle for a second (server/idle_registry.hpp), and after a burst give freed memory
// back (core/memory_release).
asio::awaitable<void> sweep(worker& w)
{
    w.context.owner.assert_owned("the worker's sweep");
    asio::steady_timer timer(w.ioc);
    burst_end burst;
    std::uint64_t parked = 0;
    for (unsigned tick = 1;; ++tick) {
        timer.expires_after(std::chrono::milliseconds(100));
        auto [ec] = co_await timer.async_wait(nothrow_awaitable);
        if (ec)
            co_return;
        const nanos now = w.context.clk.now();
        w.context.watches.sweep(now, millis(100));
        if (tick % 10 == 0) {
            for (auto& up : w.context.current->upstreams)
                up.local.sweep(now);
            // Parked connections free their buffers too: counted as activity, so that the quiet
            // second after parking gives that memory back as well.
            const std::size_t asked = w.idle.park_long_idle();
            w.context.current->stats.worker->connections_parked.add(asked);
            parked += asked;
            if (burst.tick(w.context.current->stats.worker->requests.value() + parked))
                release_free_memory();
        }
    }
}

} // namespace

worker_pool::worker_pool(std::size_t count, runtime::proxy_state& state)
{
    for (std::size_t i = 0; i < count; ++i)
        workers_.push_back(std::make_unique<worker>(state, i));
}

worker_pool::~worker_pool() { stop(); }

void worker_pool::start()
{
    for (auto& w : workers_) {
        guards_.push_back(asio::make_work_guard(w->ioc));
        asio::co_spawn(w->ioc, sweep(*w), asio::detached);
        w->thread = std::thread([&ioc = w->ioc, &owner = w->context.owner] {
            owner.bind_to_this_thread();
            for (;;) {
                try {
                    ioc.run();
                    return;
                } catch (const std::exception& e) {
                    // Nothing on the data path throws by design; if something does, log it and keep serving.
                    log::error("worker caught an exception", {{"what", e.what()}});
                }
            }
        });
    }
}

void worker_pool::close_idle_connections()
{
    for (auto& w : workers_) {
        asio::post(w->ioc, [wp = w.get()] {
            wp->context.owner.assert_owned("closing idle connections");
            wp->idle.close_all();
        });
    }
}

void worker_pool::stop()
{
    guards_.clear();
    for (auto& w : workers_)
        w->ioc.stop();
    for (auto& w : workers_)
        if (w->thread.joinable())
            w->thread.join();
}

worker& worker_pool::next() { return *workers_[next_++ % workers_.size()]; }

} // namespace breakerbox::server
