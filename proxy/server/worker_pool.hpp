// N worker threads, each running its own io_context (Asio's server2 model). A connection is handed
// to one worker for its whole life, so session and pool state need no locks.
// Owned by the application's main thread; the workers themselves run on their threads.
#pragma once
#include "core/asio.hpp"
#include "core/deadline_stream.hpp"
#include "runtime/proxy_state.hpp"
#include "runtime/worker_context.hpp"
#include "server/idle_registry.hpp"

#include <memory>
#include <thread>
#include <vector>

namespace breakerbox::server {

struct worker {
    worker(runtime::proxy_state& state, std::size_t index) : ioc(1), context(ioc, state, index) { }
    asio::io_context ioc;
    runtime::worker_context context;
    idle_registry idle;
    std::thread thread;
};

class worker_pool {
public:
    worker_pool(std::size_t count, runtime::proxy_state& state);
    ~worker_pool();

    void start();
    // Asks every worker to close its idle keep-alive connections (drain).
    void close_idle_connections();
    // Stops the io_contexts and joins the threads.
    void stop();

    std::size_t size() const { return workers_.size(); }
    worker& next(); // round robin, called from the accepting thread only
    worker& at(std::size_t i) { return *workers_[i]; }

private:
    std::vector<std::unique_ptr<worker>> workers_;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
    std::size_t next_ = 0;
};

} // namespace breakerbox::server
