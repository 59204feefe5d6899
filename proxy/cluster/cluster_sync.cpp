#include "cluster/cluster_sync.hpp"

#include "cluster/cluster_script.hpp"
#include "core/log.hpp"

#include <boost/asio/post.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace breakerbox::cluster {
namespace {

constexpr nanos min_backoff = millis(100);
constexpr nanos max_backoff = seconds(5);

std::string text_of(const redis_value& v) { return v.type == redis_value::kind::integer ? std::to_string(v.integer) : v.text; }

std::int64_t int_of(const redis_value& v)
{
    if (v.type == redis_value::kind::integer)
        return v.integer;
    try {
        return std::stoll(v.text);
    } catch (...) {
        return 0;
    }
}

std::vector<std::vector<std::string>> script_loads()
{
    return {{"SCRIPT", "LOAD", std::string(cluster_script)}, {"SCRIPT", "LOAD", std::string(operator_script)}};
}

std::string ms_text(nanos d) { return std::to_string(std::max<nanos>(0, d) / 1'000'000); }

} // namespace

std::string cluster_sync::default_replica_id()
{
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    return std::string(host) + "-" + std::to_string(::getpid());
}

cluster_sync::cluster_sync(asio::io_context& main, runtime::proxy_state& state, const config::cluster_config& cfg,
                           const clock& clk)
    : main_(main), state_(state), cfg_(cfg), clk_(clk),
      client_(main.get_executor(), cfg.redis, cfg.password, cfg.connect_timeout, cfg.command_timeout), wake_(main),
      rng_(static_cast<std::uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(clk.unix_millis()))
{
    status_.replica_id = cfg.replica_id.empty() ? default_replica_id() : cfg.replica_id;
    status_.address = cfg.redis;
}

void cluster_sync::start() { asio::co_spawn(main_, run(), asio::detached); }

void cluster_sync::nudge()
{
    asio::post(main_, [this] {
        nudged_ = true; // a sync in flight now is followed by another at once
        wake_.cancel();
    });
}

std::string cluster_sync::key(const std::string& upstream, std::string_view what) const
{
    // One hash tag per upstream: the keys of one script call stay in one slot of a Redis Cluster.
    return "{" + cfg_.key_prefix + ":" + upstream + "}:" + std::string(what);
}

asio::awaitable<void> cluster_sync::run()
{
    owner_.bind_to_this_thread();
    while (!state_.draining.load()) {
        nudged_ = false;
        const bool connected = co_await ensure_connected();
        if (connected)
            co_await sync_once();
        if (std::exchange(nudged_, false) && client_.connected())
            continue; // something happened during that sync: report it now, not an interval later
        wake_.expires_after(as_duration(next_wait()));
        co_await wake_.async_wait(nothrow_awaitable);
    }
}

// Until the next sync, or the next connection attempt (a nudge cuts it short).
nanos cluster_sync::next_wait() const
{
    if (client_.connected())
        return cfg_.sync_interval;
    return std::clamp<nanos>(next_connect_ - clk_.now(), millis(10), cfg_.sync_interval);
}

// Connected with its scripts loaded, or false (and the next attempt scheduled with jittered back-off).
asio::awaitable<bool> cluster_sync::ensure_connected()
{
    if (client_.connected())
        co_return true;
    const nanos now = clk_.now();
    if (now < next_connect_)
        co_return false;
    auto connected = co_await client_.connect();
    if (connected.ok()) {
        // (A named vector, not a braced list: GCC 12 miscompiles initializer lists inside co_await.)
        const std::vector<std::vector<std::string>> load = script_loads();
        auto loaded = co_await client_.pipeline(load);
        status_.commands += 2;
        if (loaded.ok() && !loaded.replies[0].is_error() && !loaded.replies[1].is_error()) {
            sync_sha_ = loaded.replies[0].text;
            operator_sha_ = loaded.replies[1].text;
            if (!status_.redis_up)
                log::info("cluster: connected to Redis", {{"redis", cfg_.redis}, {"replica", status_.replica_id}});
            co_return true;
        }
        connected = loaded.ok() ? redis_result{redis_failure::script,
                                               loaded.replies[0].is_error() ? loaded.replies[0].text : loaded.replies[1].text}
                                : loaded;
        client_.disconnect();
    }
    fail(connected.failure, connected.detail);
    // Jittered exponential back-off: replicas that lost Redis together do not come back together.
    backoff_ = std::clamp<nanos>(backoff_ * 2, min_backoff, max_backoff);
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    next_connect_ = now + backoff_ / 2 + static_cast<nanos>(rng_ % static_cast<std::uint64_t>(backoff_ / 2 + 1));
    co_return false;
}

// Redis is out of reach: every clustered upstream is back to local-only breaking at once.
template <class Change>
void cluster_sync::announcing(resilience::upstream_resilience& shared, nanos now, const std::string& reason, Change&& change)
{
    const auto before = resilience::effective_circuit(shared.breaker, shared.cluster, now);
    change();
    const auto after = resilience::effective_circuit(shared.breaker, shared.cluster, now);
    if (circuit_observer_ && !resilience::same_decision(before, after))
        circuit_observer_({shared.cfg.name, before, after, reason});
}

void cluster_sync::set_gate(resilience::upstream_resilience& shared, resilience::cluster_verdict verdict, std::int64_t ms_left,
                            nanos now) const
{
    if (verdict == resilience::cluster_verdict::closed) {
        shared.cluster.clear();
        return;
    }
    // The verdict expires by itself a few intervals ahead (stale data never keeps a circuit open). An
    // open verdict is not dropped when its open time ends: until this replica's next sync says who
    // probes, it keeps rejecting (else every replica would let traffic through at that moment). A
    // forced state that ends is dropped at its end; a probe token lasts no longer than the lease.
    const bool forced =
        verdict == resilience::cluster_verdict::forced_open || verdict == resilience::cluster_verdict::forced_closed;
    const nanos left = ms_left * 1'000'000;
    const nanos lasts = forced ? std::min<nanos>(left + millis(1), 3 * cfg_.sync_interval) : 3 * cfg_.sync_interval;
    shared.cluster.set(verdict, now + std::max<nanos>(lasts, millis(1)), now + left);
}

void cluster_sync::fail(redis_failure why, const std::string& detail)
{
    ++status_.failures[static_cast<std::size_t>(why)];
    if (status_.redis_up || status_.last_error != detail)
        log::warn("cluster: Redis unavailable; circuits are decided locally until it is back",
                  {{"redis", cfg_.redis}, {"reason", name_of(why)}, {"error", detail}});
    status_.redis_up = false;
    status_.last_error = detail;
    const auto rt = state_.current();
    const nanos now = clk_.now();
    for (auto& shared : rt->upstreams)
        announcing(*shared, now, "cluster: Redis out of reach, local-only", [&] { shared->cluster.clear(); });
    for (auto& [name, view] : status_.upstreams)
        view = upstream_view{};
}

// One upstream's report and request for the verdict: the sync script's EVALSHA with its keys and
// arguments (cluster_script.hpp).
std::vector<std::string> cluster_sync::sync_command(const resilience::upstream_resilience& shared, nanos now) const
{
    const auto& b = shared.cfg.breaker;
    const auto snap = shared.breaker.snapshot();
    const auto probe = shared.cluster.pending_probe();
    const std::string_view probe_text = probe == resilience::probe_outcome::success   ? "success"
                                        : probe == resilience::probe_outcome::failure ? "failure"
                                        : shared.cluster.probe_in_flight()            ? "pending"
                                                                                      : "none";
    return {"EVALSHA",
            sync_sha_,
            "3",
            key(shared.cfg.name, "reports"),
            key(shared.cfg.name, "verdict"),
            key(shared.cfg.name, "lease"),
            status_.replica_id,
            std::string(resilience::to_string(shared.breaker.effective_state(now))),
            std::to_string(snap.window.calls),
            std::to_string(snap.window.failures),
            std::to_string(snap.window.slow),
            std::string(probe_text),
            ms_text(cfg_.replica_timeout),
            std::to_string(cfg_.quorum),
            std::to_string(b.failure_rate_enabled ? b.failure_rate_threshold : 0.0),
            std::to_string(b.slow_call_enabled ? b.slow_call_rate_threshold : 0.0),
            std::to_string(b.minimum_calls),
            ms_text(b.open_duration),
            ms_text(4 * cfg_.sync_interval)};
}

// The first error reply of a sync, when there is one (then the sync failed as a whole).
bool cluster_sync::failed_reply(const redis_result& result)
{
    for (const auto& reply : result.replies)
        if (reply.is_error()) {
            // NOSCRIPT (Redis restarted, or its script cache flushed): reconnect and load again. Anything
            // else (OOM, READONLY, MISCONF) is Redis's own state: stay connected, try at the next interval.
            if (reply.text.rfind("NOSCRIPT", 0) == 0)
                client_.disconnect();
            fail(redis_failure::reply, reply.text);
            return true;
        }
    return false;
}

// A whole sync worked: the status, the latency and Redis's clock against ours (at the middle of the
// call, sent at `sent_ms` on the wall clock, `took` seconds long).
void cluster_sync::record_success(const redis_result& result, double took, std::int64_t sent_ms)
{
    backoff_ = 0; // the next loss starts the back-off again from its base
    observe_latency(took);
    ++status_.syncs;
    if (!status_.redis_up)
        log::info("cluster: in sync with Redis", {{"redis", cfg_.redis}, {"replica", status_.replica_id}});
    status_.redis_up = true;
    status_.last_error.clear();
    const auto& first = result.replies.front();
    if (first.elements.size() > 6)
        status_.clock_offset_seconds =
            static_cast<double>(int_of(first.elements[6]) - (sent_ms + static_cast<std::int64_t>(took * 500))) / 1000.0;
}

asio::awaitable<void> cluster_sync::sync_once()
{
    owner_.assert_owned("cluster_sync::sync_once");
    const auto rt = state_.current(); // kept for the call: its upstreams get the verdicts
    std::vector<resilience::upstream_resilience*> clustered;
    std::vector<std::vector<std::string>> commands;
    const nanos now = clk_.now();
    for (const auto& shared : rt->upstreams)
        if (shared->cfg.breaker.scope == config::breaker_scope::cluster) {
            commands.push_back(sync_command(*shared, now));
            clustered.push_back(shared.get());
        }
    if (commands.empty())
        co_return;
    const auto sent_ms = clk_.unix_millis();
    const nanos started = clk_.now();
    auto result = co_await client_.pipeline(commands);
    const nanos finished = clk_.now();
    status_.commands += commands.size();
    if (!result.ok()) {
        fail(result.failure, result.detail);
        co_return;
    }
    if (failed_reply(result))
        co_return;
    record_success(result, static_cast<double>(finished - started) / 1e9, sent_ms);
    for (std::size_t i = 0; i < clustered.size(); ++i)
        apply(*clustered[i], result.replies[i], finished);
}

void cluster_sync::apply(resilience::upstream_resilience& shared, const redis_value& reply, nanos now)
{
    if (reply.elements.size() < 10)
        return;
    const auto& e = reply.elements;
    auto& view = status_.upstreams[shared.cfg.name];
    const auto before = view.verdict;
    const auto state = text_of(e[0]);
    view.ms_left = int_of(e[1]);
    view.live_replicas = int_of(e[2]);
    view.open_replicas = int_of(e[3]);
    view.calls = int_of(e[4]);
    view.failures = int_of(e[5]);
    view.probing = int_of(e[7]) == 1;
    view.reason = text_of(e[8]);
    auto verdict = parse_name<resilience::cluster_verdict>(state).value_or(resilience::cluster_verdict::closed);
    if (verdict == resilience::cluster_verdict::half_open && view.probing)
        verdict = resilience::cluster_verdict::probing;
    view.verdict = verdict;
    announcing(shared, now, "cluster: " + view.reason, [&] { set_gate(shared, verdict, view.ms_left, now); });
    if (before != verdict)
        log::info("cluster verdict", {{"upstream", shared.cfg.name},
                                      {"from", name_of(before)},
                                      {"to", name_of(verdict)},
                                      {"reason", view.reason},
                                      {"live_replicas", view.live_replicas},
                                      {"open_replicas", view.open_replicas}});
    // The cluster recovered (its probe succeeded, or an operator reset it): this replica's own circuit
    // closes too and its window is forgotten — "its result closes the circuit for all". Only on the
    // script's word: a verdict that merely vanished (evicted, flushed) is not a recovery.
    if (int_of(e[9]) == 1 && before != resilience::cluster_verdict::closed)
        shared.breaker.close_from_outside("cluster: " + view.reason, now);
}

void cluster_sync::observe_latency(double seconds)
{
    for (std::size_t b = 0; b < sync_status::sync_buckets.size(); ++b)
        if (seconds <= sync_status::sync_buckets[b])
            ++status_.latency_cumulative[b];
    ++status_.latency_count;
    status_.latency_sum += seconds;
}

asio::awaitable<std::string> cluster_sync::apply_operator_action(operator_action action)
{
    owner_.assert_owned("cluster_sync::apply_operator_action");
    if (!client_.connected() || operator_sha_.empty())
        co_return "Redis is not reachable: " + (status_.last_error.empty() ? std::string("not connected") : status_.last_error);
    // A deadline in Redis's time: a command that reaches Redis late (it was stopped, say) after we answered
    // 503 must not be applied then — "503: nothing changed". Half the command timeout: a command run in
    // time leaves the other half for its answer, so one run after the deadline is one we gave up on.
    const auto deadline =
        clk_.unix_millis() + static_cast<std::int64_t>(status_.clock_offset_seconds * 1000.0) + cfg_.command_timeout / millis(2);
    const std::vector<std::vector<std::string>> command{
        {"EVALSHA", operator_sha_, "3", key(action.upstream, "verdict"), key(action.upstream, "lease"),
         key(action.upstream, "reports"), action.state, ms_text(action.lasts), "operator " + action.state + " by " + action.who,
         std::to_string(deadline), ms_text(8 * cfg_.sync_interval)}};
    auto result = co_await client_.pipeline(command);
    ++status_.commands;
    if (!result.ok()) {
        fail(result.failure, result.detail);
        co_return "Redis did not answer: " + result.detail;
    }
    if (result.replies[0].is_error())
        co_return "Redis refused the action: " + result.replies[0].text;
    if (result.replies[0].text == "late")
        co_return "the action reached Redis after its deadline and was not applied";
    log::warn(
        "cluster operator action",
        {{"upstream", action.upstream}, {"action", action.state}, {"who", action.who}, {"lasts_ms", action.lasts / 1'000'000}});
    wake_.cancel(); // this replica applies it at once; the others at their next sync
    co_return std::string();
}

} // namespace breakerbox::cluster
