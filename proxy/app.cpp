#include "app.hpp"

#include "admin/admin_server.hpp"
#include "core/asio.hpp"
#include "core/log.hpp"
#include "forward/proxy_state.hpp"
#include "server/listener.hpp"
#include "server/worker_pool.hpp"
#include "upstream/resolver.hpp"

#include <boost/asio/post.hpp>
#include <unistd.h>
#include <boost/asio/signal_set.hpp>
#include <build_info.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <thread>

namespace breakerbox {
namespace {

class application {
public:
    explicit application(config::config cfg) : application(worker_count(cfg), std::move(cfg)) {}

    int run()
    {
        state_.instance_id = make_instance_id();
        try {
            resolve_upstreams();
            bind_listeners();
            bind_admin();
        } catch (const std::exception& e) {
            log::error("start-up failed", {{"error", e.what()}});
            return 1;
        }
        pool_.start();
        for (auto& l : listeners_)
            l->start();
        if (admin_)
            admin_->start();
        state_.ready.store(true);
        wait_for_signals();
        log::info("breakerbox ready", {{"version", build::version}, {"workers", pool_.size()}, {"config", state_.cfg.source_file}});
        main_.run();
        pool_.stop();
        log::info("breakerbox stopped", {});
        return 0;
    }

private:
    // An rvalue reference, so that worker_count(cfg) above is evaluated before anything is moved.
    application(std::size_t workers, config::config&& cfg)
        : state_(std::move(cfg), steady_clock_source::instance(), workers), pool_(workers, state_),
          signals_(main_, SIGTERM, SIGINT, SIGHUP)
    {
    }

    static std::size_t worker_count(const config::config& cfg)
    {
        if (cfg.workers > 0)
            return cfg.workers;
        auto n = std::thread::hardware_concurrency();
        return n > 0 ? n : 1;
    }

    void resolve_upstreams()
    {
        for (std::size_t i = 0; i < state_.cfg.upstreams.size(); ++i) {
            const auto& up = state_.cfg.upstreams[i];
            auto resolved = upstream::resolve_now(up);
            for (const auto& e : resolved.errors)
                log::error("endpoint did not resolve; requests get 503 no_endpoint until it does",
                           {{"upstream", up.name}, {"error", e}});
            // Workers are not running yet: setting their state directly is safe.
            for (std::size_t w = 0; w < pool_.size(); ++w)
                pool_.at(w).context.upstreams[i].set_endpoints(resolved.addresses);
            if (upstream::all_literal(up))
                continue;
            auto publish = [this, i](std::vector<tcp::endpoint> addresses) {
                for (std::size_t w = 0; w < pool_.size(); ++w) {
                    auto& wk = pool_.at(w);
                    asio::post(wk.ioc, [&wk, i, addresses] { wk.context.upstreams[i].set_endpoints(addresses); });
                }
            };
            asio::co_spawn(main_, upstream::keep_resolving(up, resolved.addresses, publish), asio::detached);
        }
    }

    void bind_listeners()
    {
        for (std::size_t i = 0; i < state_.cfg.listeners.size(); ++i) {
            auto l = std::make_unique<server::listener>(main_, state_.cfg.listeners[i], i, pool_, state_);
            l->bind();
            auto ep = l->local_endpoint();
            log::info("listening", {{"listener", l->cfg().name},
                                    {"address", ep.address().to_string() + ":" + std::to_string(ep.port())},
                                    {"port", ep.port()},
                                    {"upstream", l->cfg().upstream}});
            listeners_.push_back(std::move(l));
        }
    }

    static std::string make_instance_id()
    {
        unsigned char bytes[8] = {};
        std::ifstream urandom("/dev/urandom", std::ios::binary);
        urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes);
        char hex[17];
        for (int i = 0; i < 8; ++i)
            std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        return std::string(host) + "-" + hex;
    }

    void bind_admin()
    {
        const auto& a = state_.cfg.admin;
        if (!a.enabled)
            return;
        admin::admin_context ctx{state_, {}, steady_clock_source::instance()};
        for (std::size_t w = 0; w < pool_.size(); ++w)
            ctx.workers.push_back(&pool_.at(w).context.stats);
        admin_ = std::make_unique<admin::admin_server>(main_, std::move(ctx), a.token);
        admin_->bind(a.address);
        log::info("admin listening", {{"address", a.address.host + ":" + std::to_string(admin_->port())},
                                      {"port", admin_->port()},
                                      {"mutations", a.token.empty() ? "disabled (no admin.token)" : "enabled with bearer token"}});
    }

    void wait_for_signals()
    {
        signals_.async_wait([this](const error_code& ec, int signo) {
            if (ec)
                return;
            if (signo == SIGHUP) {
                log::warn("SIGHUP received: configuration reload is not supported yet; restart to apply changes", {});
                wait_for_signals();
                return;
            }
            if (state_.draining.load()) {
                log::warn("second signal: exiting immediately", {{"signal", signo}});
                std::_Exit(1);
            }
            start_drain(signo);
            wait_for_signals();
        });
    }

    // Stop accepting, let in-flight requests finish (bounded by drain_timeout), close idle
    // keep-alive connections, then stop.
    void start_drain(int signo)
    {
        log::info("draining", {{"signal", signo}, {"active_connections", state_.active_connections.load()},
                               {"drain_timeout_ms", state_.cfg.limits.drain_timeout / millis(1)}});
        state_.draining.store(true);
        state_.ready.store(false);
        for (auto& l : listeners_)
            l->close();
        pool_.close_idle_connections();
        drain_deadline_ = std::chrono::steady_clock::now() + as_duration(state_.cfg.limits.drain_timeout);
        asio::co_spawn(main_, wait_drained(), asio::detached);
    }

    asio::awaitable<void> wait_drained()
    {
        asio::steady_timer timer(main_);
        while (state_.active_connections.load() > 0 && std::chrono::steady_clock::now() < drain_deadline_) {
            pool_.close_idle_connections(); // connections that finished a request since the last pass
            timer.expires_after(std::chrono::milliseconds(20));
            co_await timer.async_wait(nothrow_awaitable);
        }
        auto left = state_.active_connections.load();
        if (left > 0)
            log::warn("drain timeout: closing remaining connections", {{"active_connections", left}});
        main_.stop();
    }

    asio::io_context main_{1};
    forward::proxy_state state_;
    server::worker_pool pool_;
    std::vector<std::unique_ptr<server::listener>> listeners_;
    std::unique_ptr<admin::admin_server> admin_;
    asio::signal_set signals_;
    std::chrono::steady_clock::time_point drain_deadline_{};
};

} // namespace

int run_proxy(config::config cfg)
{
    log::level lvl = log::level::info;
    log::parse_level(cfg.logging.level, lvl);
    log::set_level(lvl);
    application app(std::move(cfg));
    return app.run();
}

} // namespace breakerbox
