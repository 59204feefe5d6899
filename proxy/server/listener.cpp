#include "server/listener.hpp"

#include "core/listen_on.hpp"
#include "core/log.hpp"
#include "http/error_response.hpp"
#include "server/downstream_session.hpp"

#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

namespace breakerbox::server {

listener::listener(asio::io_context& accept_context, const config::listener_config& cfg, std::size_t index, worker_pool& pool,
                   runtime::proxy_state& state)
    : acceptor_(accept_context), cfg_(cfg), index_(index), pool_(pool), state_(state)
{
}

void listener::bind() { listen_on(acceptor_, cfg_.address.host, cfg_.address.port, "listener \"" + cfg_.name + "\""); }

tcp::endpoint listener::local_endpoint() const
{
    error_code ec;
    return acceptor_.local_endpoint(ec);
}

void listener::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

void listener::close()
{
    error_code ignored;
    acceptor_.close(ignored);
}

void listener::reject(tcp::socket& socket)
{
    // Best effort and non-blocking: a short 503 so the client knows why, then close.
    static const std::string canned = [] {
        auto res = http::make_error_response(proxy_error::too_many_connections, {}, "connection limit reached");
        res.keep_alive(false);
        std::ostringstream os;
        os << res;
        return os.str();
    }();
    error_code ec;
    socket.non_blocking(true, ec);
    socket.write_some(asio::buffer(canned), ec);
    socket.close(ec);
}

asio::awaitable<void> listener::accept_loop()
{
    asio::steady_timer backoff(acceptor_.get_executor());
    auto last_logged = std::chrono::steady_clock::time_point{};
    for (;;) {
        worker& w = pool_.next();
        auto [ec, socket] = co_await acceptor_.async_accept(w.ioc, nothrow_awaitable);
        if (ec) {
            if (!acceptor_.is_open())
                co_return; // closed for drain
            state_.accept_errors.fetch_add(1, std::memory_order_relaxed);
            auto now = std::chrono::steady_clock::now();
            if (now - last_logged > std::chrono::seconds(1)) {
                last_logged = now;
                log::warn("accept failed, backing off", {{"listener", cfg_.name}, {"error", ec.message()}});
            }
            // Out of descriptors or memory: give in-flight work a moment to release some.
            backoff.expires_after(std::chrono::milliseconds(ec == asio::error::no_descriptors ? 100 : 10));
            co_await backoff.async_wait(nothrow_awaitable);
            continue;
        }
        tcp::socket client(std::move(socket));
        auto active = state_.active_connections.fetch_add(1, std::memory_order_relaxed);
        if (active >= static_cast<std::int64_t>(state_.current()->cfg.limits.max_connections) ||
            (state_.draining.load(std::memory_order_relaxed) && !state_.drain_accepting.load(std::memory_order_relaxed))) {
            state_.active_connections.fetch_sub(1, std::memory_order_relaxed);
            state_.rejected_connections.fetch_add(1, std::memory_order_relaxed);
            reject(client);
            continue;
        }
        asio::co_spawn(w.ioc, run_downstream_session(std::move(client), w, index_), asio::detached);
    }
}

} // namespace breakerbox::server
