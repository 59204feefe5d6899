#include "admin/health_report.hpp"

#include "admin/queue_routes.hpp"
#include "admin/upstream_snapshot.hpp"
#include "cluster/cluster_sync.hpp"

#include "tls/upstream_tls.hpp"

#include "core/iso8601.hpp"
#include "resilience/circuit_view.hpp"
#include "resilience/fallback_response.hpp"

#include <build_info.hpp>

#include <ctime>

namespace breakerbox::admin {
namespace {

using resilience::breaker_state;

double ms(nanos n) { return static_cast<double>(n) / 1e6; }

nlohmann::json breaker_json(const config::breaker_config& b)
{
    return {{"enabled", b.enabled},
            {"consecutive_failures", b.consecutive_failures},
            {"failure_rate",
             {{"enabled", b.failure_rate_enabled},
              {"threshold_percent", b.failure_rate_threshold},
              {"window", name_of(b.window)},
              {"window_size", b.window_size},
              {"window_duration_ms", ms(b.window_duration)},
              {"window_buckets", b.window_buckets},
              {"minimum_calls", b.minimum_calls},
              {"minimum_failures", b.minimum_failures}}},
            {"slow_calls",
             {{"enabled", b.slow_call_enabled},
              {"duration_ms", ms(b.slow_call_duration)},
              {"rate_threshold_percent", b.slow_call_rate_threshold},
              {"consecutive", b.slow_call_consecutive},
              {"in_flight", b.slow_call_in_flight}}},
            {"open_duration_ms", ms(b.open_duration)},
            {"open_duration_multiplier", b.open_duration_multiplier},
            {"max_open_duration_ms", ms(b.max_open_duration)},
            {"open_duration_jitter", b.open_duration_jitter},
            {"half_open",
             {{"max_probes", b.half_open_max_probes},
              {"successes_to_close", b.half_open_successes_to_close},
              {"max_wait_ms", ms(b.half_open_max_wait)},
              {"probe", b.probe_path.empty() ? nlohmann::json(nullptr)
                                             : nlohmann::json{{"path", b.probe_path}, {"timeout_ms", ms(b.probe_timeout)}}}}},
            {"recovery_ramp_ms", ms(b.recovery_ramp)},
            {"cancel_in_flight", b.cancel_in_flight}};
}

nlohmann::json retries_json(const config::retry_config& r)
{
    return {{"max_attempts", r.max_attempts},
            {"on_connect_failure", r.on_connect_failure},
            {"on_reset", r.on_reset},
            {"on_timeout", r.on_timeout},
            {"on_statuses", r.on_statuses},
            {"methods", r.methods},
            {"allow_post", r.allow_post},
            {"per_try_timeout_ms", ms(r.per_try_timeout)},
            {"backoff_base_ms", ms(r.backoff_base)},
            {"backoff_max_ms", ms(r.backoff_max)},
            {"retry_after_max_ms", ms(r.retry_after_max)},
            {"budget", {{"ratio", r.budget_ratio}, {"min_concurrent", r.budget_min_concurrent}}}};
}

nlohmann::json fallbacks_json(const std::vector<config::fallback_config>& fallbacks)
{
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : fallbacks) {
        nlohmann::json when = nlohmann::json::array();
        for (const auto& t : config::fallback_trigger_names)
            if (f.triggers & static_cast<std::uint8_t>(t.value))
                when.push_back(t.name);
        nlohmann::json item = {{"kind", name_of(f.kind)}, {"when", when}};
        if (f.kind == config::fallback_kind::upstream)
            item["upstream"] = f.upstream;
        if (f.kind == config::fallback_kind::static_response)
            item["status"] = f.status;
        if (f.kind == config::fallback_kind::queue)
            item["queue"] = {{"methods", f.queue.methods},
                             {"path_prefixes", f.queue.path_prefixes},
                             {"require_prefer_async", f.queue.require_prefer_async},
                             {"store_credentials", f.queue.store_credentials},
                             {"max_entries", f.queue.max_entries},
                             {"max_bytes", f.queue.max_bytes},
                             {"max_body_size", f.queue.max_body_size},
                             {"max_attempts", f.queue.max_attempts},
                             {"max_age_ms", ms(f.queue.max_age)},
                             {"retention_ms", ms(f.queue.retention)},
                             {"delivery",
                              {{"rate", f.queue.delivery.rate},
                               {"concurrency", f.queue.delivery.concurrency},
                               {"backoff_base_ms", ms(f.queue.delivery.backoff_base)},
                               {"backoff_max_ms", ms(f.queue.delivery.backoff_max)}}}};
        list.push_back(item);
    }
    return list;
}

// The upstream's TLS: its settings and what the last full handshake with each endpoint saw; null
// without TLS. `handshakes`: the handshake counts by result.
nlohmann::json tls_json(const resilience::upstream_resilience& r, const nlohmann::json& handshakes)
{
    if (!r.tls)
        return nullptr;
    const auto& t = r.tls->cfg();
    const auto now = std::chrono::system_clock::now();
    const auto now_unix = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    nlohmann::json peers = nlohmann::json::array();
    for (const auto& p : r.tls->peers())
        peers.push_back({{"endpoint", p.endpoint},
                         {"verified_name", p.verified_name.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.verified_name)},
                         {"protocol", p.protocol},
                         {"not_after", iso8601(std::chrono::system_clock::time_point(std::chrono::seconds(p.not_after)))},
                         {"expires_in_seconds", p.not_after - now_unix}});
    return {{"verify", t.verify},
            {"server_name", t.server_name},
            {"min_version", name_of(t.min_version)},
            {"client_certificate", !t.certificate_pem.empty()},
            {"session_reuse", t.session_reuse},
            {"handshakes", handshakes},
            {"peers", peers}};
}

nlohmann::json rate_rule_json(const config::outlier_rate_rule& r, const char* threshold_key)
{
    if (!r.enabled)
        return nullptr;
    return {{threshold_key, r.threshold}, {"minimum_hosts", r.minimum_hosts}, {"request_volume", r.request_volume}};
}

nlohmann::json outlier_policy_json(const config::outlier_config& o)
{
    if (!o.enabled)
        return nullptr;
    return {{"consecutive_5xx", o.consecutive_5xx},
            {"consecutive_local_origin_failure", o.consecutive_local_origin_failure},
            {"interval_ms", ms(o.interval)},
            {"base_ejection_time_ms", ms(o.base_ejection_time)},
            {"max_ejection_time_ms", ms(o.max_ejection_time)},
            {"max_ejection_time_jitter_ms", ms(o.max_ejection_time_jitter)},
            {"max_ejection_percent", o.max_ejection_percent},
            {"min_healthy_percent", o.min_healthy_percent},
            {"failure_percentage", rate_rule_json(o.failure_percentage, "threshold")},
            {"success_rate", rate_rule_json(o.success_rate, "stdev_factor")},
            {"probe", o.probe_path.empty() ? nlohmann::json(nullptr)
                                           : nlohmann::json{{"path", o.probe_path},
                                                            {"interval_ms", ms(o.probe_interval)},
                                                            {"timeout_ms", ms(o.probe_timeout)}}}};
}

// Each endpoint's outlier-detection state, and the upstream's totals; null without detection.
nlohmann::json outliers_json(const resilience::upstream_resilience& r, nanos now)
{
    if (!r.outliers)
        return nullptr;
    const auto& d = *r.outliers;
    nlohmann::json endpoints = nlohmann::json::array();
    for (const auto& ep : d.view(now))
        endpoints.push_back({{"address", ep.address},
                             {"state", name_of(ep.state)},
                             {"manual", ep.manual},
                             {"consecutive_5xx", ep.consecutive_5xx},
                             {"consecutive_local_origin_failure", ep.consecutive_local_origin_failure},
                             {"ejections", ep.ejections},
                             {"ejection_level", ep.level},
                             {"last_rule", ep.last_rule ? nlohmann::json(name_of(*ep.last_rule)) : nlohmann::json(nullptr)},
                             // null when not ejected, and for an operator's ejection (no end: `manual`)
                             {"ejected_for_ms", ep.state != resilience::endpoint_state::ejected || ep.manual
                                                    ? nlohmann::json(nullptr)
                                                    : nlohmann::json(ms(ep.ejected_for))}});
    nlohmann::json enforced = nlohmann::json::object(), detected = nlohmann::json::object();
    for (const auto& [rule, rule_name] : resilience::outlier_rule_names) {
        enforced[std::string(rule_name)] = d.enforced_total(rule);
        detected[std::string(rule_name)] = d.detected_total(rule);
    }
    return {{"ejected", d.ejected_count()},
            {"unhealthy", d.unhealthy_count()},
            {"max_ejected", d.max_ejected(d.endpoint_count())},
            {"circuit_opens", d.upstream_opens()},
            {"ejections_enforced", enforced},
            {"ejections_detected", detected},
            {"endpoints", endpoints}};
}

nlohmann::json policy_json(const config::upstream_config& u)
{
    nlohmann::json endpoints = nlohmann::json::array();
    for (const auto& e : u.endpoints)
        endpoints.push_back(e.text());
    return {
        {"endpoints", endpoints},
        {"connect_timeout_ms", ms(u.connect_timeout)},
        {"request_timeout_ms", ms(u.request_timeout)},
        {"load_balancing", name_of(u.load_balancing)},
        {"circuit_breaker", breaker_json(u.breaker)},
        {"bulkhead",
         {{"max_concurrent", u.bulkhead.max_concurrent},
          {"max_queue", u.bulkhead.max_queue},
          {"queue_timeout_ms", ms(u.bulkhead.queue_timeout)}}},
        {"retries", retries_json(u.retries)},
        {"fallbacks", fallbacks_json(u.fallbacks)},
        {"outlier_detection", outlier_policy_json(u.outliers)},
        {"streaming",
         {{"idle_timeout_ms", ms(u.streaming.idle_timeout)},
          {"total_timeout_ms", ms(u.streaming.total_timeout)},
          {"max_streams", u.streaming.max_streams},
          {"max_tunnels", u.streaming.max_tunnels},
          {"upgrades", u.streaming.upgrades},
          {"close_tunnels_on_open", u.streaming.close_tunnels_on_open}}},
    };
}

// scope: cluster — what the last sync learnt (null before the first, or without a cluster block).
nlohmann::json cluster_upstream_json(const admin_context& ctx, const std::string& name)
{
    if (!ctx.cluster)
        return nullptr;
    const auto& status = ctx.cluster->status();
    const auto it = status.upstreams.find(name);
    if (it == status.upstreams.end())
        return {{"scope", "cluster"}, {"verdict", "closed"}, {"synced", false}};
    const auto& v = it->second;
    return {{"scope", "cluster"},
            {"synced", status.redis_up},
            {"verdict", name_of(v.verdict)},
            {"reason", v.reason},
            {"ms_left", v.ms_left},
            {"live_replicas", v.live_replicas},
            {"open_replicas", v.open_replicas},
            {"calls", v.calls},
            {"failures", v.failures},
            {"probing", v.probing}};
}

// The circuit as the next request finds it, and the local breaker's figures behind it.
void add_circuit(nlohmann::json& j, const upstream_snapshot& u)
{
    const auto& b = u.breaker;
    const auto since_wall = std::chrono::system_clock::now() - std::chrono::nanoseconds(u.taken_at - b.since);
    j["state"] = resilience::to_string(u.circuit.state);
    j["decided_by"] = name_of(u.circuit.decided_by);
    j["breaker_state"] = resilience::to_string(b.state);
    j["since"] = iso8601(std::chrono::time_point_cast<std::chrono::system_clock::duration>(since_wall));
    j["seconds_in_state"] = u.seconds_in_state;
    j["reason"] = u.reason;
    j["transitions"] = b.transitions;
    j["trips"] = b.trips;
    j["open_duration_ms"] = ms(b.current_open_duration);
    j["next_probe_in_ms"] = u.next_probe_in ? nlohmann::json(ms(*u.next_probe_in)) : nlohmann::json(nullptr);
    j["consecutive_failures"] = b.consecutive_failures;
    j["consecutive_slow_calls"] = b.consecutive_slow_calls;
    j["window"] = {{"calls", b.window.calls},
                   {"failures", b.window.failures},
                   {"slow", b.window.slow},
                   {"failure_rate", u.failure_rate},
                   {"slow_call_rate", u.slow_call_rate}};
    j["half_open"] = {{"probes_in_flight", b.probes_in_flight}, {"successes", b.probe_successes}};
}

// The labelled counters (requests, rejections, retries, fallbacks, ...): by family, by label value.
nlohmann::json counts_json(const runtime::upstream_totals& totals)
{
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& family : runtime::upstream_families) {
        auto& by_value = counts[std::string(family.json_key)] = nlohmann::json::object();
        const auto values = family.counts(totals);
        for (std::size_t k = 0; k < values.size(); ++k)
            by_value[std::string(family.values[k])] = values[k];
    }
    return counts;
}

// The counters, and what holds capacity now (bulkhead, streams, tunnels, retry budget).
void add_traffic(nlohmann::json& j, const upstream_snapshot& u)
{
    auto counts = counts_json(u.totals);
    counts["retries"]["budget_in_use"] = u.retry_budget_in_use;
    const auto& bulk = u.bulkhead;
    j["requests"] = counts["requests"];
    j["slow_requests"] = u.totals.slow;
    j["rejections"] = counts["rejections"];
    j["bulkhead"] = {
        {"in_flight", bulk.in_flight}, {"queued", bulk.queued}, {"limit", bulk.limit}, {"max_queue", bulk.max_queue}};
    j["streaming"] = {{"streams", {{"active", u.streams.active}, {"limit", u.streams.limit}, {"ended", counts["streams"]}}},
                      {"tunnels", {{"active", u.tunnels.active}, {"limit", u.tunnels.limit}, {"ended", counts["tunnels"]}}}};
    j["retries"] = counts["retries"];
    j["fallbacks"] = counts["fallbacks"];
    j["tls"] = tls_json(u.shared, counts["tls_handshakes"]);
}

nlohmann::json upstream_json(const admin_context& ctx, const upstream_snapshot& u)
{
    const auto& r = u.shared;
    nlohmann::json j = nlohmann::json::object();
    add_circuit(j, u);
    add_traffic(j, u);
    j["outlier_detection"] = outliers_json(r, u.taken_at);
    j["policy"] = policy_json(r.cfg);
    if (r.cfg.breaker.scope == config::breaker_scope::cluster)
        j["cluster"] = cluster_upstream_json(ctx, u.name());
    if (r.cache)
        j["stale_cache"] = {{"entries", r.cache->entries()}, {"bytes", r.cache->bytes()}};
    if (ctx.state.queue && r.cfg.queue_fallback())
        j["queue"] = queue_summary(ctx.state.queue->counters(u.name()));
    return j;
}

} // namespace

std::optional<health_report> build_health_report(const admin_context& ctx, std::optional<std::string_view> only)
{
    const auto rt = ctx.state.current();
    nlohmann::json upstreams = nlohmann::json::object();
    bool any_open = false, any_half_open = false, found = false;
    for (const auto& shared : rt->upstreams) {
        const std::string& name = shared->cfg.name;
        if (only && name != *only)
            continue;
        found = true;
        const auto u = take_upstream_snapshot(ctx, *shared, ctx.clk.now());
        upstreams[name] = upstream_json(ctx, u);
        any_open = any_open || u.circuit.rejects();
        any_half_open = any_half_open || u.circuit.state == breaker_state::half_open;
    }
    if (only && !found)
        return std::nullopt;
    const auto uptime = std::chrono::duration<double>(std::chrono::system_clock::now() - ctx.state.started_at).count();
    nlohmann::json body = {
        {"status", any_open        ? "open"
                   : any_half_open ? "degraded"
                                   : "ok"},
        {"config_generation", rt->generation},
        {"instance",
         {{"id", ctx.state.instance_id},
          {"version", build::version},
          {"started_at", iso8601(ctx.state.started_at)},
          {"uptime_seconds", uptime},
          {"scope",
           "per-instance: every breakerbox sidecar keeps its own circuit state; other replicas may see different states"}}},
        {"upstreams", upstreams},
    };
    if (ctx.cluster) {
        const auto& c = ctx.cluster->status();
        body["instance"]["scope"] = "per-instance, except upstreams with circuit_breaker.scope: cluster, whose verdict "
                                    "the replicas share through Redis (their cluster block)";
        body["cluster"] = {{"replica_id", c.replica_id},
                           {"redis",
                            {{"address", c.address},
                             {"up", c.redis_up},
                             {"last_error", c.last_error},
                             {"clock_offset_ms", c.clock_offset_seconds * 1000.0},
                             {"syncs", c.syncs}}}};
    }
    return health_report{std::move(body), any_open ? 503u : 200u};
}

} // namespace breakerbox::admin
