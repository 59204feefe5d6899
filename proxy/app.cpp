#include "app.hpp"

#include "admin/admin_server.hpp"
#include "background/active_prober.hpp"
#include "background/outlier_monitor.hpp"
#include "background/queue_delivery.hpp"
#include "cluster/cluster_sync.hpp"
#include "config/loader.hpp"
#include "core/asio.hpp"
#include "core/log.hpp"
#include "queue/queue_store.hpp"
#include "runtime/proxy_state.hpp"
#include "server/listener.hpp"
#include "server/worker_pool.hpp"
#include "tls/upstream_tls.hpp"
#include "upstream/resolver.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <build_info.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

namespace breakerbox {
namespace {

// The cluster sync the probe observer nudges (a plain function pointer: no capture). Set once.
cluster::cluster_sync* cluster_sync_for_probes = nullptr;

class application {
public:
    application(config::config cfg) : application(worker_count(cfg), std::move(cfg)) { }

    int run()
    {
        state_.instance_id = make_instance_id();
        try {
            auto rt = state_.current();
            warn_if_unverified(*rt);
            const auto addresses = resolve_all(*rt);
            give_detectors(*rt, addresses);
            // Workers are not running yet: setting their state directly is safe.
            for (std::size_t w = 0; w < pool_.size(); ++w)
                for (std::size_t i = 0; i < addresses.size(); ++i)
                    pool_.at(w).context.current->upstreams[i].set_endpoints(addresses[i]);
            start_upstream_tasks(rt, addresses);
            open_queue(*rt);
            make_cluster(*rt);
            bind_listeners();
            bind_admin();
            observe_transitions();
        } catch (const std::exception& e) {
            log::error("start-up failed", {{"error", e.what()}});
            return 1;
        }
        pool_.start();
        start_queue_deliveries(*state_.current());
        if (cluster_)
            cluster_->start();
        for (auto& l : listeners_)
            l->start();
        if (admin_)
            admin_->start();
        state_.ready.store(true);
        wait_for_signals();
        log_upstreams(*state_.current());
        log::info("breakerbox ready", {{"version", build::version}, {"workers", pool_.size()}, {"config", config_path_}});
        main_.run();
        if (queue_) // its last results go to the workers, still running
            queue_->stop();
        pool_.stop();
        log::info("breakerbox stopped", {});
        return 0;
    }

private:
    // An rvalue reference, so that worker_count(cfg) above is evaluated before anything is moved.
    application(std::size_t workers, config::config&& cfg)
        : config_path_(cfg.source_file), workers_setting_(cfg.workers), listener_cfgs_(cfg.listeners), admin_cfg_(cfg.admin),
          state_(std::make_shared<const runtime::config_generation>(std::move(cfg), steady_clock_source::instance(), nullptr),
                 workers),
          pool_(workers, state_), signals_(main_, SIGTERM, SIGINT, SIGHUP)
    {
    }

    static std::size_t worker_count(const config::config& cfg)
    {
        if (cfg.workers > 0)
            return cfg.workers;
        auto n = std::thread::hardware_concurrency();
        return n > 0 ? n : 1;
    }

    // Turning certificate verification off must be visible: a warning per such upstream, at start and
    // on every reload.
    static void warn_if_unverified(const runtime::config_generation& rt)
    {
        for (const auto& u : rt.cfg.upstreams)
            if (u.tls.enabled && !u.tls.verify)
                log::warn("TLS verification is off: the upstream's certificate and name are not checked",
                          {{"upstream", u.name}, {"generation", rt.generation}});
    }

    // Blocking name resolution of every upstream of `rt` (start-up and reload only).
    static std::vector<std::vector<tcp::endpoint>> resolve_all(const runtime::config_generation& rt)
    {
        std::vector<std::vector<tcp::endpoint>> out;
        for (const auto& up : rt.cfg.upstreams) {
            auto resolved = upstream::resolve_now(up);
            for (const auto& e : resolved.errors)
                log::error("endpoint did not resolve; requests get 503 no_endpoint until it does",
                           {{"upstream", up.name}, {"error", e}});
            out.push_back(std::move(resolved.addresses));
        }
        return out;
    }

    // Outlier detection keeps its records by address: the detectors learn each upstream's addresses
    // before the workers do (so a worker finds every address's record), on the main thread.
    static void give_detectors(const runtime::config_generation& rt, const std::vector<std::vector<tcp::endpoint>>& addresses)
    {
        for (std::size_t i = 0; i < rt.upstreams.size() && i < addresses.size(); ++i)
            give_detector(*rt.upstreams[i], addresses[i]);
    }
    static void give_detector(resilience::upstream_resilience& shared, const std::vector<tcp::endpoint>& addresses)
    {
        if (shared.outliers)
            resilience::apply_outlier_verdict(shared, shared.outliers->set_endpoints(addresses),
                                              steady_clock_source::instance().now());
    }

    // Periodic re-resolution for the upstreams of `rt` that use names, the active probers of those
    // with circuit_breaker.half_open.probe and the outlier monitors; all stop once `rt` is replaced.
    void start_upstream_tasks(const std::shared_ptr<const runtime::config_generation>& rt,
                              const std::vector<std::vector<tcp::endpoint>>& addresses)
    {
        auto active = [this, rt] { return state_.current() == rt; };
        for (std::size_t i = 0; i < rt->upstreams.size(); ++i) {
            const auto& shared = rt->upstreams[i];
            const auto& up = shared->cfg;
            auto probe_endpoints = std::make_shared<std::vector<tcp::endpoint>>(addresses[i]);
            const std::string probe_host = up.host_rewrite.empty() ? up.endpoints.front().text() : up.host_rewrite;
            if (shared->breaker.probes_actively()) {
                background::probe_target target{shared, probe_endpoints, probe_host};
                asio::co_spawn(main_, background::run_active_prober(std::move(target), active), asio::detached);
            }
            if (shared->outliers)
                asio::co_spawn(main_, background::run_outlier_monitor(shared, probe_host, active), asio::detached);
            if (upstream::all_literal(up))
                continue;
            auto publish = [this, rt, i, probe_endpoints](std::vector<tcp::endpoint> found) {
                if (state_.current() != rt) // replaced while resolving: its detector may serve the next one
                    return;
                *probe_endpoints = found; // on the main thread, like the prober
                if (const auto& tls = rt->upstreams[i]->tls)
                    tls->retain_peers(found);
                give_detector(*rt->upstreams[i], found);
                for (std::size_t w = 0; w < pool_.size(); ++w) {
                    auto& wk = pool_.at(w);
                    asio::post(wk.ioc, [&wk, rt, i, found] {
                        wk.context.owner.assert_owned("endpoint update");
                        if (wk.context.current->config == rt) // a reload may have replaced it meanwhile
                            wk.context.current->upstreams[i].set_endpoints(found);
                    });
                }
            };
            asio::co_spawn(main_, upstream::keep_resolving(up, addresses[i], publish, active), asio::detached);
        }
    }

    // SIGHUP or POST /admin/reload: read the file again and, if it is valid, install it atomically.
    // Requests in flight finish on the configuration they started with; breakers whose policy did not
    // change keep their state and windows. Listeners, the admin listener and the worker count are
    // bound at start-up: changing them needs a restart, and such a file is rejected.
    admin::reload_outcome reload()
    {
        auto old = state_.current();
        admin::reload_outcome out{false, {}, old->generation, {}, {}};
        auto loaded = config::load_file(config_path_);
        for (const auto& e : loaded.errors)
            out.errors.push_back(e.text());
        if (loaded.cfg) {
            const auto& c = *loaded.cfg;
            if (c.listeners != listener_cfgs_)
                out.errors.push_back(config_path_ + ": listeners: changing listeners needs a restart");
            if (!(c.admin == admin_cfg_))
                out.errors.push_back(config_path_ + ": admin: changing the admin listener or its token needs a restart");
            if (c.workers != workers_setting_)
                out.errors.push_back(config_path_ + ": workers: changing the worker count needs a restart");
            if (!(c.queue_store == old->cfg.queue_store))
                out.errors.push_back(config_path_ + ": queue_store: changing the queue's store needs a restart");
            if (!(c.cluster == old->cfg.cluster))
                out.errors.push_back(config_path_ + ": cluster: changing the cluster block needs a restart");
        }
        if (!out.errors.empty())
            return rejected_reload(std::move(out), old->generation);
        std::shared_ptr<const runtime::config_generation> rt;
        try {
            rt = std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), steady_clock_source::instance(),
                                                                    old.get());
        } catch (const std::exception& e) { // OpenSSL refused TLS material the loader accepted
            out.errors.push_back(config_path_ + ": " + e.what());
            return rejected_reload(std::move(out), old->generation);
        }
        warn_if_unverified(*rt);
        const auto addresses = resolve_all(*rt);
        give_detectors(*rt, addresses);
        state_.set_current(rt);
        for (std::size_t w = 0; w < pool_.size(); ++w) {
            auto& wk = pool_.at(w);
            asio::post(wk.ioc, [&wk, rt, addresses] { wk.context.install(rt, addresses); });
        }
        start_upstream_tasks(rt, addresses);
        apply_queue_policies(*rt);
        start_queue_deliveries(*rt);
        if (cluster_)
            cluster_->nudge(); // the new generation's gates get the cluster's verdicts at once
        state_.reloads_applied.fetch_add(1, std::memory_order_relaxed);
        state_.last_reload_successful.store(true, std::memory_order_relaxed);
        state_.last_reload_success_unix.store(steady_clock_source::instance().unix_seconds(), std::memory_order_relaxed);
        publish_reload(true, rt->generation, {});
        log::info("configuration reloaded", {{"config", config_path_},
                                             {"generation", rt->generation},
                                             {"breakers_kept", rt->kept_breakers},
                                             {"breakers_reset", rt->fresh_breakers}});
        return {true, {}, rt->generation, rt->kept_breakers, rt->fresh_breakers};
    }

    // A rejected reload: logged with its errors and published; the previous configuration keeps serving.
    admin::reload_outcome rejected_reload(admin::reload_outcome out, std::uint64_t generation)
    {
        log::error("configuration reload rejected", {{"config", config_path_},
                                                     {"errors", out.errors},
                                                     {"generation", generation},
                                                     {"detail", "the previous configuration keeps serving"}});
        state_.reloads_rejected.fetch_add(1, std::memory_order_relaxed);
        state_.last_reload_successful.store(false, std::memory_order_relaxed);
        publish_reload(false, generation, out.errors);
        return out;
    }

    // A reload, accepted or not, on the admin listener's event stream.
    void publish_reload(bool applied, std::uint64_t generation, const std::vector<std::string>& errors)
    {
        if (admin_)
            // How many errors, not their text (file paths and values): the stream is readable without the token.
            admin_->events().publish("reload", {{"applied", applied}, {"generation", generation}, {"errors", errors.size()}});
    }

    // The cluster sync (scope: cluster), started once the workers run. A clustered upstream without it is
    // refused by the loader.
    void make_cluster(const runtime::config_generation& rt)
    {
        if (!rt.cfg.cluster.enabled)
            return;
        cluster_ = std::make_unique<cluster::cluster_sync>(main_, state_, rt.cfg.cluster);
        // A cluster probe's outcome goes to Redis at once (set before any worker runs).
        cluster_sync_for_probes = cluster_.get();
        resilience::cluster_gate::set_probe_observer([] { cluster_sync_for_probes->nudge(); });
        log::info("cluster scope", {{"redis", rt.cfg.cluster.redis},
                                    {"replica", cluster_->status().replica_id},
                                    {"quorum", rt.cfg.cluster.quorum},
                                    {"sync_interval_ms", rt.cfg.cluster.sync_interval / millis(1)}});
    }

    // The queue fallback's store, opened (and recovered) before any listener accepts.
    void open_queue(const runtime::config_generation& rt)
    {
        if (!rt.cfg.queue_store.enabled)
            return;
        std::string error;
        queue_ = queue::queue_store::open(rt.cfg.queue_store, error);
        if (!queue_)
            throw std::runtime_error("queue_store: " + error);
        state_.queue = queue_.get();
        apply_queue_policies(rt);
        log::info("queue store open", {{"path", rt.cfg.queue_store.path},
                                       {"synchronous", name_of(rt.cfg.queue_store.synchronous)},
                                       {"status_path", rt.cfg.queue_store.status_path}});
    }

    // Expiry and retention per upstream with a queue; a queue whose circuit learns of recovery only from
    // live traffic is said (its writers all get 202s: an active probe is what closes the circuit).
    void apply_queue_policies(const runtime::config_generation& rt)
    {
        if (!queue_)
            return;
        std::map<std::string, queue::queue_policy> policies;
        const config::queue_fallback_config defaults;
        for (const auto& name : queue_->upstreams()) // entries of a removed queue fallback still expire
            policies[name] = {defaults.max_age, defaults.retention};
        for (const auto& u : rt.cfg.upstreams)
            if (const auto* fb = u.queue_fallback()) {
                policies[u.name] = {fb->queue.max_age, fb->queue.retention};
                if (u.breaker.probe_path.empty())
                    log::warn("queue fallback without circuit_breaker.half_open.probe: the queue is delivered only after "
                              "live traffic has closed the circuit",
                              {{"upstream", u.name}});
            }
        queue_->set_policies(std::move(policies));
    }

    // One delivery task per upstream name with a queue (or with entries in the store: a 202 is owed its
    // delivery even after the queue fallback was removed), for the process's life (it follows reloads);
    // the upstreams are spread over the workers.
    void start_queue_deliveries(const runtime::config_generation& rt)
    {
        if (!queue_)
            return;
        const auto stored = queue_->upstreams(); // with entries left from an earlier configuration too
        for (const auto& u : rt.cfg.upstreams) {
            const bool has_entries = std::find(stored.begin(), stored.end(), u.name) != stored.end();
            if (!(u.queue_fallback() || has_entries) || !delivering_.insert(u.name).second)
                continue;
            auto& wk = pool_.at(delivering_.size() % pool_.size());
            asio::co_spawn(wk.ioc, background::run_queue_delivery(wk.context, *queue_, u.name), asio::detached);
        }
    }

    void bind_listeners()
    {
        for (std::size_t i = 0; i < listener_cfgs_.size(); ++i) {
            auto l = std::make_unique<server::listener>(main_, listener_cfgs_[i], i, pool_, state_);
            l->bind();
            auto ep = l->local_endpoint();
            log::info("listening", {{"listener", l->cfg().name},
                                    {"address", ep.address().to_string() + ":" + std::to_string(ep.port())},
                                    {"port", ep.port()},
                                    {"upstream", l->cfg().upstream}});
            listeners_.push_back(std::move(l));
        }
    }

    // One line per upstream at start: where it goes, how (TLS, verified or not), and how its circuit is
    // shared — what a newcomer checks first when a request does not go where they meant.
    static void log_upstreams(const runtime::config_generation& rt)
    {
        for (const auto& u : rt.cfg.upstreams) {
            std::vector<std::string> endpoints;
            for (const auto& e : u.endpoints)
                endpoints.push_back(e.text());
            log::info("upstream", {{"upstream", u.name},
                                   {"endpoints", endpoints},
                                   {"tls", !u.tls.enabled ? "off"
                                           : u.tls.verify ? "verified"
                                                          : "unverified"},
                                   {"scope", name_of(u.breaker.scope)},
                                   {"fallbacks", u.fallbacks.size()}});
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
        const auto& a = admin_cfg_;
        if (!a.enabled)
            return;
        admin::admin_context ctx{state_, {}, steady_clock_source::instance(), [this] { return reload(); }};
        ctx.cluster = cluster_.get();
        for (std::size_t w = 0; w < pool_.size(); ++w)
            ctx.workers.push_back(&pool_.at(w).context);
        admin_ = std::make_unique<admin::admin_server>(main_, std::move(ctx), a.token, admin::event_limits{a.max_event_viewers});
        // Breaker transitions reach /events from whichever thread wins them (posted to this thread).
        admin_->bind(a.address);
        log::info("admin listening",
                  {{"address", a.address.host + ":" + std::to_string(admin_->port())},
                   {"port", admin_->port()},
                   {"mutations", a.token.empty() ? "disabled (no admin.token)" : "enabled with bearer token"}});
    }

    // Breaker transitions reach /events (posted from the winning thread) and, for clustered upstreams,
    // Redis at once (a nudge of the sync). Set before any worker runs, with or without an admin listener.
    void observe_transitions()
    {
        event_hub_for_transitions = admin_ ? &admin_->events() : nullptr;
        if (cluster_ && event_hub_for_transitions) // the cluster's verdicts change what requests find too
            cluster_->set_circuit_observer([hub = event_hub_for_transitions](const resilience::circuit_change& c) {
                hub->publish("transition", {{"upstream", c.upstream},
                                            {"from", resilience::to_string(c.from.state)},
                                            {"to", resilience::to_string(c.to.state)},
                                            {"decided_by", name_of(c.to.decided_by)},
                                            {"reason", c.reason}});
            });
        if (!event_hub_for_transitions && !cluster_)
            return;
        resilience::set_transition_observer(
            [hub = event_hub_for_transitions, cluster = cluster_.get()](const resilience::transition_event& e) {
                if (hub)
                    hub->post_transition(e);
                if (cluster)
                    cluster->nudge();
            });
    }

    void wait_for_signals()
    {
        signals_.async_wait([this](const error_code& ec, int signo) {
            if (ec)
                return;
            if (signo == SIGHUP) {
                if (!state_.draining.load())
                    reload();
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
    // With limits.drain_period, new connections are accepted for that long first (every answer with
    // Connection: close), then the listeners close and drain_timeout starts.
    void start_drain(int signo)
    {
        const auto& lim = state_.current()->cfg.limits;
        log::info("draining", {{"signal", signo},
                               {"active_connections", state_.active_connections.load()},
                               {"drain_period_ms", lim.drain_period / millis(1)},
                               {"drain_timeout_ms", lim.drain_timeout / millis(1)}});
        state_.drain_accepting.store(lim.drain_period > 0);
        state_.draining.store(true);
        state_.ready.store(false);
        pool_.close_idle_connections();
        if (lim.drain_period == 0) {
            close_listeners();
            return;
        }
        auto period = std::make_shared<asio::steady_timer>(main_, as_duration(lim.drain_period));
        period->async_wait([this, period](const error_code&) { close_listeners(); });
    }

    // The end of the drain period: no new connections; in-flight work gets drain_timeout.
    void close_listeners()
    {
        state_.drain_accepting.store(false);
        for (auto& l : listeners_)
            l->close();
        pool_.close_idle_connections();
        log::info("listeners closed", {{"active_connections", state_.active_connections.load()}});
        drain_deadline_ = std::chrono::steady_clock::now() + as_duration(state_.current()->cfg.limits.drain_timeout);
        asio::co_spawn(main_, wait_drained(), asio::detached);
    }

    asio::awaitable<void> wait_drained()
    {
        asio::steady_timer timer(main_);
        while ((state_.active_connections.load() > 0 || state_.queue_deliveries.load() > 0) &&
               std::chrono::steady_clock::now() < drain_deadline_) {
            pool_.close_idle_connections(); // connections that finished a request since the last pass
            timer.expires_after(std::chrono::milliseconds(20));
            co_await timer.async_wait(nothrow_awaitable);
        }
        auto left = state_.active_connections.load();
        if (left > 0)
            log::warn("drain timeout: closing remaining connections", {{"active_connections", left}});
        if (const auto deliveries = state_.queue_deliveries.load(); deliveries > 0)
            log::warn("drain timeout: queue deliveries cut off (queued again, their attempt counted, at the next start)",
                      {{"deliveries", deliveries}});
        main_.stop();
    }

    const std::string config_path_;
    const std::uint32_t workers_setting_;
    const std::vector<config::listener_config> listener_cfgs_; // fixed for the process's life
    const config::admin_config admin_cfg_;
    runtime::proxy_state state_;
    // Declared before the pool: destroyed after the workers' io_contexts, which may still hold handlers
    // of its last results (stop() runs before the pool stops).
    std::unique_ptr<queue::queue_store> queue_;
    std::set<std::string> delivering_; // upstreams with a delivery task
    server::worker_pool pool_;
    // Declared after the pool, so destroyed before it: an accept still pending when the drain stops
    // this context holds a socket of a worker's io_context (accepted connections are born on their
    // worker), and destroying that operation after the worker's context would touch its freed socket
    // service (ASan caught it, now and then, on SIGTERM). Its coroutines also refer to the pool.
    asio::io_context main_{1};
    // scope: cluster. Its client and timers belong to main_: declared after it, destroyed before it.
    std::unique_ptr<cluster::cluster_sync> cluster_;
    admin::event_hub* event_hub_for_transitions = nullptr;
    std::vector<std::unique_ptr<server::listener>> listeners_;
    std::unique_ptr<admin::admin_server> admin_;
    asio::signal_set signals_;
    std::chrono::steady_clock::time_point drain_deadline_{};
};

} // namespace

int run_proxy(config::config cfg)
{
    log::set_level(cfg.logging.level);
    std::unique_ptr<application> app;
    try {
        app = std::make_unique<application>(std::move(cfg));
    } catch (const std::exception& e) { // OpenSSL refused TLS material the loader accepted
        log::error("start-up failed", {{"error", e.what()}});
        return 1;
    }
    return app->run();
}

} // namespace breakerbox
