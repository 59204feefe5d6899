// The policy blocks an upstream shares with the defaults block: connection pool, circuit breaker,
// bulkhead, retries, stale cache, outlier detection, streaming (tls: tls_settings.cpp).
#include "config/sections.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace breakerbox::config {

namespace {

// A sub-block of `node`, read by `read` at its own path when present; absent, its defaults stay.
template <class Config>
void read_block(reader& r, const YAML::Node& node, const std::string& path, const char* key,
                void (*read)(reader&, const YAML::Node&, const std::string&, Config&), Config& out)
{
    if (auto block = node[key])
        read(r, block, reader::join(path, key), out);
}

// An active probe's path goes on the request line as it is: origin-form, nothing that would split it.
void check_probe_path(reader& r, const YAML::Node& probe, const std::string& pp, const std::string& probe_path)
{
    if (probe_path.empty() || probe_path.front() != '/' || probe_path.find_first_of(" \r\n") != std::string::npos)
        r.fail(probe["path"] ? probe["path"] : probe, pp + ".path", "must be an origin-form path starting with '/' (no spaces)");
}

void read_pool(reader& r, const YAML::Node& node, const std::string& path, pool_config& pool)
{
    if (!r.check_map(node, path,
                     {"max_connections_per_endpoint", "max_idle_per_endpoint", "idle_timeout", "max_requests_per_connection"}))
        return;
    r.read_uint(node, "max_connections_per_endpoint", path, pool.max_connections_per_endpoint, 0, 1000000);
    r.read_uint(node, "max_idle_per_endpoint", path, pool.max_idle_per_endpoint, 0, 100000);
    r.read_duration(node, "idle_timeout", path, pool.idle_timeout, millis(1), hour);
    r.read_uint(node, "max_requests_per_connection", path, pool.max_requests_per_connection, 1, 100000000);
}

void read_classification(reader& r, const YAML::Node& node, const std::string& path, classification_config& c)
{
    if (!r.check_map(node, path,
                     {"failure_statuses", "ignored_statuses", "status_429_is_failure", "connect_failure", "connect_timeout",
                      "request_timeout", "connection_reset", "invalid_response"}))
        return;
    if (auto v = r.read_status_list(node, "failure_statuses", path))
        c.failure_statuses = *v;
    if (auto v = r.read_status_list(node, "ignored_statuses", path))
        c.ignored_statuses = *v;
    r.read_bool(node, "status_429_is_failure", path, c.status_429_is_failure);
    r.read_bool(node, "connect_failure", path, c.connect_failure);
    r.read_bool(node, "connect_timeout", path, c.connect_timeout);
    r.read_bool(node, "request_timeout", path, c.request_timeout);
    r.read_bool(node, "connection_reset", path, c.connection_reset);
    r.read_bool(node, "invalid_response", path, c.invalid_response);
}

void read_failure_rate(reader& r, const YAML::Node& fr, const std::string& p, breaker_config& b)
{
    if (!r.check_map(fr, p,
                     {"enabled", "threshold", "window", "window_size", "window_duration", "window_buckets", "minimum_calls",
                      "minimum_failures"}))
        return;
    r.read_bool(fr, "enabled", p, b.failure_rate_enabled);
    r.read_percent(fr, "threshold", p, b.failure_rate_threshold);
    r.read_enum(fr, "window", p, b.window);
    r.read_uint(fr, "window_size", p, b.window_size, 1, 100000);
    r.read_duration(fr, "window_duration", p, b.window_duration, millis(100), hour);
    r.read_uint(fr, "window_buckets", p, b.window_buckets, 1, 1000);
    r.read_uint(fr, "minimum_calls", p, b.minimum_calls, 1, 1000000);
    r.read_uint(fr, "minimum_failures", p, b.minimum_failures, 0, 1000000);
}

void read_slow_calls(reader& r, const YAML::Node& sc, const std::string& p, breaker_config& b)
{
    if (!r.check_map(sc, p, {"enabled", "duration", "rate_threshold", "consecutive", "in_flight"}))
        return;
    b.slow_call_enabled = true; // the block's presence turns it on, unless it says enabled: false
    r.read_bool(sc, "enabled", p, b.slow_call_enabled);
    r.read_duration(sc, "duration", p, b.slow_call_duration, millis(1), hour);
    r.read_percent(sc, "rate_threshold", p, b.slow_call_rate_threshold);
    r.read_uint(sc, "consecutive", p, b.slow_call_consecutive, 0, 1000000);
    r.read_bool(sc, "in_flight", p, b.slow_call_in_flight);
}

void read_half_open(reader& r, const YAML::Node& ho, const std::string& p, breaker_config& b)
{
    if (!r.check_map(ho, p, {"max_probes", "successes_to_close", "max_wait", "probe"}))
        return;
    r.read_uint(ho, "max_probes", p, b.half_open_max_probes, 1, 10000);
    r.read_uint(ho, "successes_to_close", p, b.half_open_successes_to_close, 1, 10000);
    r.read_duration(ho, "max_wait", p, b.half_open_max_wait, millis(1), hour);
    auto probe = ho["probe"];
    if (!probe)
        return;
    auto pp = reader::join(p, "probe");
    if (!r.check_map(probe, pp, {"path", "timeout"}))
        return;
    r.read_string(probe, "path", pp, b.probe_path);
    check_probe_path(r, probe, pp, b.probe_path);
    r.read_duration(probe, "timeout", pp, b.probe_timeout, millis(1), seconds(60));
}

void read_breaker(reader& r, const YAML::Node& node, const std::string& path, breaker_config& b)
{
    if (!r.check_map(node, path,
                     {"enabled", "scope", "consecutive_failures", "failure_rate", "slow_calls", "open_duration",
                      "open_duration_multiplier", "max_open_duration", "open_duration_jitter", "open_backoff_reset_after",
                      "half_open", "recovery_ramp", "cancel_in_flight", "classify"}))
        return;
    r.read_bool(node, "enabled", path, b.enabled);
    r.read_enum(node, "scope", path, b.scope);
    r.read_uint(node, "consecutive_failures", path, b.consecutive_failures, 0, 1000000);
    read_block(r, node, path, "failure_rate", read_failure_rate, b);
    read_block(r, node, path, "slow_calls", read_slow_calls, b);
    r.read_duration(node, "open_duration", path, b.open_duration, millis(1), hour);
    r.read_double(node, "open_duration_multiplier", path, b.open_duration_multiplier, 1.0, 100.0, "a number in [1, 100]");
    r.read_duration(node, "max_open_duration", path, b.max_open_duration, millis(1), 24 * hour);
    r.read_double(node, "open_duration_jitter", path, b.open_duration_jitter, 0.0, 1.0, "a fraction in [0, 1]");
    r.read_duration(node, "open_backoff_reset_after", path, b.open_backoff_reset_after, 0, 24 * hour);
    r.read_bool(node, "cancel_in_flight", path, b.cancel_in_flight);
    read_block(r, node, path, "half_open", read_half_open, b);
    r.read_duration(node, "recovery_ramp", path, b.recovery_ramp, 0, hour);
    read_block(r, node, path, "classify", read_classification, b.classify);
}

// failure_percentage / success_rate: the block's presence turns the rule on, unless it says enabled: false.
void read_rate_rule(reader& r, const YAML::Node& node, const std::string& path, const char* threshold_key, double max,
                    const std::string& expected, outlier_rate_rule& rule)
{
    if (!r.check_map(node, path, {"enabled", threshold_key, "minimum_hosts", "request_volume"}))
        return;
    rule.enabled = true;
    r.read_bool(node, "enabled", path, rule.enabled);
    if (std::string_view(threshold_key) == "threshold") // failure_percentage: a percentage
        r.read_percent(node, threshold_key, path, rule.threshold);
    else
        r.read_double(node, threshold_key, path, rule.threshold, 0.0, max, expected, true);
    r.read_uint(node, "minimum_hosts", path, rule.minimum_hosts, 1, 100000);
    r.read_uint(node, "request_volume", path, rule.request_volume, 1, 100000000);
}

void read_outlier_probe(reader& r, const YAML::Node& probe, const std::string& pp, outlier_config& o)
{
    if (!r.check_map(probe, pp, {"path", "interval", "timeout"}))
        return;
    r.read_string(probe, "path", pp, o.probe_path);
    check_probe_path(r, probe, pp, o.probe_path);
    r.read_duration(probe, "interval", pp, o.probe_interval, millis(10), hour);
    r.read_duration(probe, "timeout", pp, o.probe_timeout, millis(1), seconds(60));
}

void read_outlier_detection(reader& r, const YAML::Node& node, const std::string& path, outlier_config& o)
{
    if (!r.check_map(node, path,
                     {"enabled", "consecutive_5xx", "consecutive_local_origin_failure", "interval", "base_ejection_time",
                      "max_ejection_time", "max_ejection_time_jitter", "max_ejection_percent", "min_healthy_percent",
                      "failure_percentage", "success_rate", "probe"}))
        return;
    r.read_bool(node, "enabled", path, o.enabled);
    r.read_uint(node, "consecutive_5xx", path, o.consecutive_5xx, 0, 1000000);
    r.read_uint(node, "consecutive_local_origin_failure", path, o.consecutive_local_origin_failure, 0, 1000000);
    r.read_duration(node, "interval", path, o.interval, millis(100), hour);
    r.read_duration(node, "base_ejection_time", path, o.base_ejection_time, millis(1), 24 * hour);
    r.read_duration(node, "max_ejection_time", path, o.max_ejection_time, millis(1), 24 * hour);
    r.read_duration(node, "max_ejection_time_jitter", path, o.max_ejection_time_jitter, 0, hour);
    r.read_percent(node, "max_ejection_percent", path, o.max_ejection_percent, true);
    r.read_percent(node, "min_healthy_percent", path, o.min_healthy_percent, true);
    if (auto fp = node["failure_percentage"])
        read_rate_rule(r, fp, reader::join(path, "failure_percentage"), "threshold", 100.0, "a percentage in (0, 100]",
                       o.failure_percentage);
    if (auto sr = node["success_rate"])
        read_rate_rule(r, sr, reader::join(path, "success_rate"), "stdev_factor", 100.0, "a number in (0, 100]", o.success_rate);
    read_block(r, node, path, "probe", read_outlier_probe, o);
    if (o.max_ejection_time < o.base_ejection_time)
        r.fail(node["max_ejection_time"] ? node["max_ejection_time"] : node, reader::join(path, "max_ejection_time"),
               "must be at least base_ejection_time");
}

void read_bulkhead(reader& r, const YAML::Node& node, const std::string& path, bulkhead_config& b)
{
    if (!r.check_map(node, path, {"max_concurrent", "max_queue", "queue_timeout"}))
        return;
    r.read_uint(node, "max_concurrent", path, b.max_concurrent, 0, 1000000);
    r.read_uint(node, "max_queue", path, b.max_queue, 0, 1000000);
    r.read_duration(node, "queue_timeout", path, b.queue_timeout, millis(1), hour);
}

// A retry_on list replaces the default conditions as a whole.
void read_retry_on(reader& r, const YAML::Node& on, const std::string& p, retry_config& c)
{
    if (!on.IsSequence()) {
        r.fail(on, p, "expected a list of connect_failure, reset, timeout and status codes");
        return;
    }
    c.on_connect_failure = c.on_reset = c.on_timeout = false;
    c.on_statuses.clear();
    for (std::size_t i = 0; i < on.size(); ++i) {
        auto ip = p + "[" + std::to_string(i) + "]";
        auto s = r.scalar(on[i], ip);
        if (!s)
            continue;
        if (*s == "connect_failure")
            c.on_connect_failure = true;
        else if (*s == "reset")
            c.on_reset = true;
        else if (*s == "timeout")
            c.on_timeout = true;
        else if (s->size() == 3 && std::all_of(s->begin(), s->end(), ::isdigit) && std::stoi(*s) >= 100 && std::stoi(*s) <= 599)
            c.on_statuses.push_back(static_cast<unsigned>(std::stoi(*s)));
        else
            r.fail(on[i], ip, "expected connect_failure, reset, timeout or a status code, got \"" + *s + "\"");
    }
}

void read_retries(reader& r, const YAML::Node& node, const std::string& path, retry_config& c)
{
    if (!r.check_map(node, path,
                     {"max_attempts", "retry_on", "methods", "allow_post", "per_try_timeout", "backoff_base", "backoff_max",
                      "retry_after_max", "budget"}))
        return;
    r.read_uint(node, "max_attempts", path, c.max_attempts, 1, 10);
    read_block(r, node, path, "retry_on", read_retry_on, c);
    if (node["methods"]) {
        c.methods.clear();
        for (auto& m : r.read_string_list(node, "methods", path)) {
            std::string upper = m;
            std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
            c.methods.push_back(upper);
        }
    }
    r.read_bool(node, "allow_post", path, c.allow_post);
    r.read_duration(node, "per_try_timeout", path, c.per_try_timeout, 0, hour);
    r.read_duration(node, "backoff_base", path, c.backoff_base, 0, hour);
    r.read_duration(node, "backoff_max", path, c.backoff_max, 0, hour);
    r.read_duration(node, "retry_after_max", path, c.retry_after_max, 0, hour);
    if (auto b = node["budget"]) {
        auto p = reader::join(path, "budget");
        if (r.check_map(b, p, {"ratio", "min_concurrent"})) {
            r.read_double(b, "ratio", p, c.budget_ratio, 0.0, 10.0, "a ratio in [0, 10]");
            r.read_uint(b, "min_concurrent", p, c.budget_min_concurrent, 0, 100000);
        }
    }
}

void read_stale_cache(reader& r, const YAML::Node& node, const std::string& path, stale_cache_config& c)
{
    if (!r.check_map(node, path, {"max_entries", "max_bytes", "max_age"}))
        return;
    r.read_uint(node, "max_entries", path, c.max_entries, 1, 10000000);
    r.read_size(node, "max_bytes", path, c.max_bytes, 1024, 1ull << 34);
    r.read_duration(node, "max_age", path, c.max_age, seconds(1), 24 * hour * 7);
}

void read_streaming(reader& r, const YAML::Node& node, const std::string& path, streaming_config& c)
{
    if (!r.check_map(node, path,
                     {"idle_timeout", "total_timeout", "max_streams", "max_tunnels", "upgrades", "close_tunnels_on_open"}))
        return;
    r.read_duration(node, "idle_timeout", path, c.idle_timeout, millis(10), 24 * hour);
    r.read_duration(node, "total_timeout", path, c.total_timeout, 0, 24 * hour * 7);
    r.read_uint(node, "max_streams", path, c.max_streams, 0, 1000000);
    r.read_uint(node, "max_tunnels", path, c.max_tunnels, 0, 1000000);
    r.read_bool(node, "close_tunnels_on_open", path, c.close_tunnels_on_open);
    if (auto u = node["upgrades"]) {
        const auto p = reader::join(path, "upgrades");
        if (!u.IsSequence()) {
            r.fail(u, p, "expected a list of protocol names, e.g. [websocket] ([] forwards no upgrade)");
            return;
        }
        c.upgrades.clear();
        for (std::size_t i = 0; i < u.size(); ++i) {
            const auto name = u[i].IsScalar() ? lower(u[i].as<std::string>()) : std::string();
            const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char ch) {
                return std::isalnum(ch) || std::strchr("!#$%&'*+-.^_`|~/", ch);
            });
            if (!token || name.find("h2") == 0)
                r.fail(u[i], p + "[" + std::to_string(i) + "]",
                       "expected an Upgrade protocol token such as websocket (h2c cannot be forwarded)");
            else
                c.upgrades.push_back(name);
        }
    }
}

void validate_retries(reader& r, const YAML::Node& at, const std::string& path, const retry_config& c)
{
    if (c.backoff_max < c.backoff_base)
        r.fail(at, path + ".backoff_max", "must be at least backoff_base");
}

void validate_breaker(reader& r, const YAML::Node& at, const std::string& path, breaker_config& b)
{
    if (b.max_open_duration < b.open_duration)
        r.fail(at, path + ".max_open_duration", "must be at least open_duration");
    if (b.half_open_successes_to_close > b.half_open_max_probes * 1000u)
        r.fail(at, path + ".half_open.successes_to_close", "unreasonably large compared with max_probes");
    if (b.window == window_type::time_based && b.window_duration / b.window_buckets < millis(10))
        r.fail(at, path + ".failure_rate.window_buckets", "buckets must be at least 10ms wide");
}

} // namespace

// Read for each upstream on top of the defaults block's values, which were read the same way.
void read_policies(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u)
{
    r.read_enum(node, "load_balancing", path, u.load_balancing);
    r.read_duration(node, "connect_timeout", path, u.connect_timeout, millis(1), hour);
    r.read_duration(node, "request_timeout", path, u.request_timeout, millis(1), hour);
    r.read_duration(node, "resolve_interval", path, u.resolve_interval, seconds(1), 24 * hour);
    read_block(r, node, path, "pool", read_pool, u.pool);
    read_block(r, node, path, "circuit_breaker", read_breaker, u.breaker);
    read_block(r, node, path, "bulkhead", read_bulkhead, u.bulkhead);
    read_block(r, node, path, "retries", read_retries, u.retries);
    read_block(r, node, path, "stale_cache", read_stale_cache, u.stale_cache);
    read_block(r, node, path, "tls", read_tls, u.tls);
    read_block(r, node, path, "outlier_detection", read_outlier_detection, u.outliers);
    read_block(r, node, path, "streaming", read_streaming, u.streaming);
}

// Checked on the upstream's final values, so that a limit from defaults and one from the upstream are
// checked together; reported at the upstream.
void validate_policies(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u)
{
    validate_breaker(r, node, path + ".circuit_breaker", u.breaker);
    validate_retries(r, node, path + ".retries", u.retries);
}

} // namespace breakerbox::config
