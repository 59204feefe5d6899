#include "config/loader.hpp"
#include "config/tls_material.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

namespace breakerbox::config {

std::string config_error::text() const
{
    std::ostringstream os;
    os << file << ':' << line << ':' << column << ": ";
    if (!path.empty())
        os << path << ": ";
    os << message;
    return os.str();
}

namespace {

// Walks the YAML tree, collecting errors. One instance per load.
// Levenshtein distance (insertions, deletions, substitutions), for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The allowed key closest to a misspelt one, when it is close enough to be a typo (at most a third of
// its length, and at least 2, edits away); "" otherwise.
std::string nearest_key(std::string_view key, std::initializer_list<std::string_view> allowed)
{
    std::string best;
    std::size_t best_distance = std::max<std::size_t>(2, key.size() / 3) + 1;
    for (auto k : allowed)
        if (const auto d = edit_distance(key, k); d < best_distance) {
            best_distance = d;
            best = std::string(k);
        }
    return best;
}

// checked_keys(): where the keys the loader accepts are recorded while it runs (null: not recorded).
// One load at a time per thread.
thread_local std::vector<checked_key>* t_checked_keys = nullptr;

// The check's file as checked_keys() names it: its name in proxy/config/, without the folders the
// compiler was given (they differ between checkouts and build directories).
std::string file_name(const char* path)
{
    const std::string_view p(path);
    return std::string(p.substr(p.rfind('/') + 1));
}

class reader {
public:
    reader(std::string file, const env_lookup& env) : file_(std::move(file)), env_(env) { }

    std::vector<config_error> errors;

    void fail(const YAML::Node& at, const std::string& path, const std::string& message)
    {
        config_error e;
        e.file = file_;
        if (at.IsDefined()) {
            auto mark = at.Mark();
            e.line = mark.line >= 0 ? mark.line + 1 : 0;
            e.column = mark.column >= 0 ? mark.column + 1 : 0;
        }
        e.path = path;
        e.message = message;
        for (const auto& seen : errors) // an inherited setting is checked once per upstream: say it once
            if (seen.line == e.line && seen.column == e.column && seen.path == e.path && seen.message == e.message)
                return;
        errors.push_back(std::move(e));
    }

    // A required key that is absent: reported at the mapping that should hold it, by name.
    bool require(const YAML::Node& map, std::string_view key, const std::string& path)
    {
        if (map.IsMap() && map[std::string(key)])
            return true;
        fail(map, join(path, key), "missing required key \"" + std::string(key) + "\"");
        return false;
    }

    // Reports keys of `map` that are not in `allowed`. Returns false if `map` is not a mapping. The
    // defaults are the caller's file and line (gcc and clang; std::source_location is not in clang 14):
    // checked_keys() names each check by both, so that checks in different files never share a name.
    bool check_map(const YAML::Node& map, const std::string& path, std::initializer_list<std::string_view> allowed,
                   int line = __builtin_LINE(), const char* file = __builtin_FILE())
    {
        if (t_checked_keys)
            for (auto k : allowed)
                t_checked_keys->push_back({file_name(file), line, path, std::string(k)});
        if (!map.IsMap()) {
            fail(map, path, "expected a mapping");
            return false;
        }
        for (auto it = map.begin(); it != map.end(); ++it) {
            std::string key = it->first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string known;
                for (auto k : allowed)
                    known += (known.empty() ? "" : ", ") + std::string(k);
                const auto nearest = nearest_key(key, allowed);
                fail(it->first, join(path, key),
                     "unknown key \"" + key + "\"" + (nearest.empty() ? "" : " (did you mean \"" + nearest + "\"?)") +
                         " (known keys: " + known + ")");
            }
        }
        return true;
    }

    static std::string join(const std::string& path, std::string_view key)
    {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    // A scalar with ${VAR} substitution applied; nullopt (and an error) otherwise.
    std::optional<std::string> scalar(const YAML::Node& node, const std::string& path)
    {
        if (!node.IsScalar()) {
            fail(node, path, "expected a scalar value");
            return std::nullopt;
        }
        std::string error;
        auto value = substitute_env(node.Scalar(), env_, error);
        if (!value)
            fail(node, path, error);
        return value;
    }

    // A present scalar field: its node, its dotted path (for errors) and its text. nullopt when the key
    // is absent (the default stays) or is not a scalar (reported). Every read_* starts with it.
    struct scalar_field {
        YAML::Node node;
        std::string path;
        std::string text;
    };
    std::optional<scalar_field> field(const YAML::Node& map, std::string_view key, const std::string& path)
    {
        auto node = map[std::string(key)];
        if (!node)
            return std::nullopt;
        auto p = join(path, key);
        auto s = scalar(node, p);
        if (!s)
            return std::nullopt;
        return scalar_field{node, std::move(p), std::move(*s)};
    }

    void read_bool(const YAML::Node& map, std::string_view key, const std::string& path, bool& out)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        if (s == "true" || s == "yes" || s == "on")
            out = true;
        else if (s == "false" || s == "no" || s == "off")
            out = false;
        else
            fail(node, p, "expected true or false, got \"" + s + "\"");
    }

    template <class Int>
    void read_uint(const YAML::Node& map, std::string_view key, const std::string& path, Int& out, std::uint64_t min,
                   std::uint64_t max)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        std::uint64_t v = 0;
        bool ok =
            !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
        if (ok) {
            try {
                v = std::stoull(s);
            } catch (...) {
                ok = false;
            }
        }
        if (!ok || v < min || v > max) {
            fail(node, p, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got \"" + s + "\"");
            return;
        }
        out = static_cast<Int>(v);
    }

    // A percentage, 0–100. A bare number strictly between 0 and 1 is refused as ambiguous: it is almost
    // always a ratio written where a percentage is meant (0.5 for 50 %), which would otherwise be taken
    // silently as half a percent. "0.5%" (with the sign) says half a percent on purpose.
    void read_percent(const YAML::Node& map, std::string_view key, const std::string& path, double& out,
                      bool zero_allowed = false)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size() && v > 0.0 && v < 1.0) {
            fail(node, p,
                 "expected a percentage (0-100), got \"" + s + "\", which looks like a ratio: write " + number_text(v * 100) +
                     " for " + number_text(v * 100) + " %, or \"" + s + "%\" if you mean " + s + " %");
            return;
        }
        read_double(map, key, path, out, 0.0, 100.0, zero_allowed ? "a percentage in [0, 100]" : "a percentage in (0, 100]",
                    !zero_allowed);
    }

    static std::string number_text(double v)
    {
        std::ostringstream os;
        os << v;
        return os.str();
    }

    void read_double(const YAML::Node& map, std::string_view key, const std::string& path, double& out, double min, double max,
                     const std::string& expected, bool exclusive_min = false)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        std::string text = s;
        if (!text.empty() && text.back() == '%')
            text.pop_back();
        char* end = nullptr;
        double v = std::strtod(text.c_str(), &end);
        bool ok = !text.empty() && end == text.c_str() + text.size() && v <= max && (exclusive_min ? v > min : v >= min);
        if (!ok) {
            fail(node, p, "expected " + expected + ", got \"" + s + "\"");
            return;
        }
        out = v;
    }

    void read_duration(const YAML::Node& map, std::string_view key, const std::string& path, nanos& out, nanos min, nanos max)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        auto d = parse_duration(s);
        if (!d) {
            fail(node, p, "expected a duration such as 250ms, 5s, 2m or 1h, got \"" + s + "\"");
            return;
        }
        if (*d < min || *d > max) {
            fail(node, p, "duration " + s + " is out of range [" + describe(min) + ", " + describe(max) + "]");
            return;
        }
        out = *d;
    }

    void read_size(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out, std::uint64_t min,
                   std::uint64_t max)
    {
        auto f = field(map, key, path);
        if (!f)
            return;
        const auto& [node, p, s] = *f;
        auto v = parse_size(s);
        if (!v) {
            fail(node, p, "expected a size such as 512, 64KiB or 1MiB, got \"" + s + "\"");
            return;
        }
        if (*v < min || *v > max) {
            fail(node, p, "size " + s + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "] bytes");
            return;
        }
        out = *v;
    }

    // A size, or `unlimited` (config::unlimited_size).
    void read_size_or_unlimited(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out,
                                std::uint64_t min)
    {
        if (auto f = field(map, key, path); f && f->text == "unlimited") {
            out = unlimited_size;
            return;
        }
        read_size(map, key, path, out, min, 1ull << 50);
    }

    // A value named in E's table (core/enum_names.hpp): the one spelling the docs, /health/circuits and
    // /metrics use too.
    template <class E>
    void read_enum(const YAML::Node& map, std::string_view key, const std::string& path, E& out)
    {
        if (auto f = field(map, key, path))
            if (auto v = enum_value<E>(f->node, f->path, f->text))
                out = *v;
    }
    template <class E>
    std::optional<E> enum_value(const YAML::Node& node, const std::string& path, const std::string& text)
    {
        auto v = parse_name<E>(text);
        if (!v)
            fail(node, path, "expected " + names_list<E>() + ", got \"" + text + "\"");
        return v;
    }

    void read_string(const YAML::Node& map, std::string_view key, const std::string& path, std::string& out)
    {
        if (auto f = field(map, key, path))
            out = f->text;
    }

    // Listening addresses may use port 0 (an ephemeral port, reported in the "listening" log line).
    bool read_host_port(const YAML::Node& node, const std::string& path, host_port& out, bool allow_port_zero = false)
    {
        auto s = scalar(node, path);
        if (!s)
            return false;
        auto hp = parse_host_port(*s);
        if (!hp || (hp->port == 0 && !allow_port_zero)) {
            fail(node, path,
                 std::string("expected host:port with a port in [") + (allow_port_zero ? "0" : "1") + ", 65535], got \"" + *s +
                     "\"");
            return false;
        }
        out = *hp;
        return true;
    }

    std::vector<std::string> read_string_list(const YAML::Node& map, std::string_view key, const std::string& path)
    {
        std::vector<std::string> out;
        auto node = map[std::string(key)];
        if (!node)
            return out;
        auto p = join(path, key);
        if (!node.IsSequence()) {
            fail(node, p, "expected a list");
            return out;
        }
        for (std::size_t i = 0; i < node.size(); ++i)
            if (auto s = scalar(node[i], p + "[" + std::to_string(i) + "]"))
                out.push_back(*s);
        return out;
    }

    std::optional<std::vector<unsigned>> read_status_list(const YAML::Node& map, std::string_view key, const std::string& path)
    {
        auto node = map[std::string(key)];
        if (!node)
            return std::nullopt;
        auto p = join(path, key);
        std::vector<unsigned> out;
        if (!node.IsSequence()) {
            fail(node, p, "expected a list of status codes or ranges such as 500-599");
            return out;
        }
        for (std::size_t i = 0; i < node.size(); ++i) {
            auto ip = p + "[" + std::to_string(i) + "]";
            auto s = scalar(node[i], ip);
            if (!s)
                continue;
            unsigned lo = 0, hi = 0;
            char dash = 0;
            std::istringstream is(*s);
            is >> lo;
            if (is >> dash) {
                is >> hi;
            } else {
                hi = lo;
            }
            if (!is.eof() || (dash && dash != '-') || lo < 100 || hi > 599 || lo > hi) {
                fail(node[i], ip, "expected a status code (100-599) or a range such as 500-599, got \"" + *s + "\"");
                continue;
            }
            for (unsigned c = lo; c <= hi; ++c)
                out.push_back(c);
        }
        return out;
    }

    std::optional<std::string> env(const std::string& name) const { return env_(name); }

    static std::string describe(nanos d)
    {
        if (d % seconds(1) == 0)
            return std::to_string(d / seconds(1)) + "s";
        return std::to_string(d / millis(1)) + "ms";
    }

private:
    std::string file_;
    const env_lookup& env_;
};

constexpr nanos hour = seconds(3600);

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
    if (b.probe_path.empty() || b.probe_path.front() != '/' || b.probe_path.find_first_of(" \r\n") != std::string::npos)
        r.fail(probe["path"] ? probe["path"] : probe, pp + ".path", "must be an origin-form path starting with '/' (no spaces)");
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
    if (auto fr = node["failure_rate"])
        read_failure_rate(r, fr, reader::join(path, "failure_rate"), b);
    if (auto sc = node["slow_calls"])
        read_slow_calls(r, sc, reader::join(path, "slow_calls"), b);
    r.read_duration(node, "open_duration", path, b.open_duration, millis(1), hour);
    r.read_double(node, "open_duration_multiplier", path, b.open_duration_multiplier, 1.0, 100.0, "a number in [1, 100]");
    r.read_duration(node, "max_open_duration", path, b.max_open_duration, millis(1), 24 * hour);
    r.read_double(node, "open_duration_jitter", path, b.open_duration_jitter, 0.0, 1.0, "a fraction in [0, 1]");
    r.read_duration(node, "open_backoff_reset_after", path, b.open_backoff_reset_after, 0, 24 * hour);
    r.read_bool(node, "cancel_in_flight", path, b.cancel_in_flight);
    if (auto ho = node["half_open"])
        read_half_open(r, ho, reader::join(path, "half_open"), b);
    r.read_duration(node, "recovery_ramp", path, b.recovery_ramp, 0, hour);
    if (auto c = node["classify"])
        read_classification(r, c, reader::join(path, "classify"), b.classify);
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
    if (o.probe_path.empty() || o.probe_path.front() != '/' || o.probe_path.find_first_of(" \r\n") != std::string::npos)
        r.fail(probe["path"] ? probe["path"] : probe, pp + ".path", "must be an origin-form path starting with '/' (no spaces)");
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
    if (auto probe = node["probe"])
        read_outlier_probe(r, probe, reader::join(path, "probe"), o);
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

void read_retries(reader& r, const YAML::Node& node, const std::string& path, retry_config& c)
{
    if (!r.check_map(node, path,
                     {"max_attempts", "retry_on", "methods", "allow_post", "per_try_timeout", "backoff_base", "backoff_max",
                      "retry_after_max", "budget"}))
        return;
    r.read_uint(node, "max_attempts", path, c.max_attempts, 1, 10);
    if (auto on = node["retry_on"]) {
        auto p = reader::join(path, "retry_on");
        if (!on.IsSequence()) {
            r.fail(on, p, "expected a list of connect_failure, reset, timeout and status codes");
        } else {
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
                else if (s->size() == 3 && std::all_of(s->begin(), s->end(), ::isdigit) && std::stoi(*s) >= 100 &&
                         std::stoi(*s) <= 599)
                    c.on_statuses.push_back(static_cast<unsigned>(std::stoi(*s)));
                else
                    r.fail(on[i], ip, "expected connect_failure, reset, timeout or a status code, got \"" + *s + "\"");
            }
        }
    }
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

void read_tls(reader& r, const YAML::Node& node, const std::string& path, tls_config& t)
{
    if (!r.check_map(
            node, path,
            {"enabled", "verify", "ca_file", "server_name", "client_certificate", "client_key", "min_version", "session_reuse"}))
        return;
    t.enabled = true; // the block's presence turns it on, unless it says enabled: false
    r.read_bool(node, "enabled", path, t.enabled);
    r.read_bool(node, "verify", path, t.verify);
    r.read_enum(node, "min_version", path, t.min_version);
    r.read_bool(node, "session_reuse", path, t.session_reuse);
    // Names and files: checked (and the files read) by resolve_tls once the endpoints are known.
    using text_field = std::string tls_config::*;
    const std::pair<const char*, text_field> texts[]{{"ca_file", &tls_config::ca_file},
                                                     {"server_name", &tls_config::server_name},
                                                     {"client_certificate", &tls_config::client_certificate},
                                                     {"client_key", &tls_config::client_key}};
    for (const auto& [key, field] : texts)
        r.read_string(node, key, path, t.*field);
}

// A file named in the configuration, relative to the configuration file's folder; nullopt with the
// reason in `error` when it cannot be read.
std::optional<std::string> read_text_file(const std::string& name, const std::string& config_dir, std::string& error)
{
    const std::string full = (!name.empty() && name.front() == '/') ? name : config_dir + "/" + name;
    std::ifstream in(full, std::ios::binary);
    if (!in) {
        error = "cannot read " + full + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The TLS material an upstream with tls.enabled names, read and checked now (at start and at every
// reload: rotation without restart), and the name it verifies. Errors point at the key that named the
// file (in the upstream's tls block, or the upstream when the block came from defaults).
void resolve_tls(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u, const std::string& config_dir,
                 const YAML::Node& defaults_tls)
{
    auto& t = u.tls;
    if (!t.enabled)
        return;
    // The block's own place: the upstream's tls block, else the defaults' one it inherited (reported
    // there, once: the reader drops repeated errors).
    const bool own = static_cast<bool>(node["tls"]);
    const YAML::Node block = own ? node["tls"] : (defaults_tls ? defaults_tls : node);
    const std::string p = own || !defaults_tls ? path + ".tls" : "defaults.tls";
    auto at = [&](const char* key) { return block[key] ? block[key] : block; };
    auto load = [&](const std::string& file, const char* key, std::string& out) {
        std::string error;
        if (auto text = read_text_file(file, config_dir, error))
            out = std::move(*text);
        else
            r.fail(at(key), p + "." + key, error);
        if (error.empty() && out.empty()) // (a rotation caught between truncate and write, say)
            r.fail(at(key), p + "." + key, file + " is empty");
        return !out.empty();
    };
    if (!t.ca_file.empty()) {
        if (load(t.ca_file, "ca_file", t.ca_pem))
            if (auto bad = check_certificates(t.ca_pem); !bad.empty())
                r.fail(at("ca_file"), p + ".ca_file", t.ca_file + ": " + bad);
    } else if (t.verify) {
        std::string error;
        const auto system = system_trust_file();
        auto text = read_text_file(system, "/", error);
        if (!text || !check_certificates(*text).empty())
            r.fail(block, p,
                   "no trust source: tls.ca_file is not set and the system bundle " + system +
                       " has no readable certificate (install ca-certificates, or set tls.ca_file)");
        else
            t.ca_pem = std::move(*text);
    }
    if (t.client_certificate.empty() != t.client_key.empty())
        r.fail(block, p, "mutual TLS needs both client_certificate and client_key");
    else if (!t.client_certificate.empty() && load(t.client_certificate, "client_certificate", t.certificate_pem) &&
             load(t.client_key, "client_key", t.key_pem))
        if (auto bad = check_certificate_and_key(t.certificate_pem, t.key_pem); !bad.empty()) {
            const std::string key = bad.substr(0, bad.find(':')); // client_certificate or client_key
            r.fail(at(key.c_str()), p + "." + key, bad.substr(bad.find(':') + 2));
        }
    if (t.server_name.empty() && !u.endpoints.empty()) {
        t.server_name = u.endpoints.front().host;
        for (const auto& e : u.endpoints)
            if (e.host != t.server_name)
                r.fail(block, p + ".server_name", "the endpoints have different hosts: set the name their certificates carry");
    }
    t.server_name_is_ip = is_ip_literal(t.server_name);
}

void read_stale_cache(reader& r, const YAML::Node& node, const std::string& path, stale_cache_config& c)
{
    if (!r.check_map(node, path, {"max_entries", "max_bytes", "max_age"}))
        return;
    r.read_uint(node, "max_entries", path, c.max_entries, 1, 10000000);
    r.read_size(node, "max_bytes", path, c.max_bytes, 1024, 1ull << 34);
    r.read_duration(node, "max_age", path, c.max_age, seconds(1), 24 * hour * 7);
}

void read_fallback_triggers(reader& r, const YAML::Node& when, const std::string& path, std::uint8_t& triggers)
{
    triggers = 0;
    if (!when.IsSequence()) {
        r.fail(when, path, "expected a list of " + names_list<fallback_trigger>());
        return;
    }
    for (std::size_t k = 0; k < when.size(); ++k) {
        auto p = path + "[" + std::to_string(k) + "]";
        if (auto s = r.scalar(when[k], p))
            if (auto t = r.enum_value<fallback_trigger>(when[k], p, *s))
                triggers |= static_cast<std::uint8_t>(*t);
    }
}

bool is_token(std::string_view name) // RFC 9110 §5.6.2
{
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

void read_header_map(reader& r, const YAML::Node& h, const std::string& path,
                     std::vector<std::pair<std::string, std::string>>& out)
{
    if (!h.IsMap()) {
        r.fail(h, path, "expected a mapping of header name to value");
        return;
    }
    for (auto it = h.begin(); it != h.end(); ++it) {
        std::string name = it->first.Scalar();
        auto value = r.scalar(it->second, path + "." + name);
        if (!is_token(name))
            r.fail(it->first, path + "." + name, "not a valid header name");
        else if (value && value->find_first_of("\r\n") != std::string::npos)
            r.fail(it->second, path + "." + name, "header values cannot contain line breaks");
        else if (value)
            out.emplace_back(name, *value);
    }
}

// body_file: relative to the configuration file's folder; read once, at load (and reload) time.
void read_body_file(reader& r, const YAML::Node& bf, const std::string& path, std::string& body, const std::string& config_dir)
{
    auto file = r.scalar(bf, path);
    if (!file)
        return;
    std::string full = (!file->empty() && file->front() == '/') ? *file : config_dir + "/" + *file;
    std::ifstream in(full, std::ios::binary);
    if (!in) {
        r.fail(bf, path, "cannot read " + full);
        return;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    body = ss.str();
}

void read_static_fallback(reader& r, const YAML::Node& st, const std::string& path, fallback_config& fb,
                          const std::string& config_dir)
{
    if (!r.check_map(st, path, {"status", "headers", "body", "body_file"}))
        return;
    r.read_uint(st, "status", path, fb.status, 200, 599);
    if (auto h = st["headers"])
        read_header_map(r, h, path + ".headers", fb.headers);
    r.read_string(st, "body", path, fb.body);
    if (auto bf = st["body_file"]) {
        read_body_file(r, bf, path + ".body_file", fb.body, config_dir);
        if (st["body"])
            r.fail(bf, path + ".body_file", "give body or body_file, not both");
    }
}

std::string lower(std::string s);

void read_delivery(reader& r, const YAML::Node& d, const std::string& path, queue_delivery_config& c)
{
    if (!r.check_map(d, path, {"rate", "concurrency", "backoff_base", "backoff_max", "headers"}))
        return;
    r.read_double(d, "rate", path, c.rate, 0.001, 100000.0, "deliveries per second in [0.001, 100000]");
    r.read_uint(d, "concurrency", path, c.concurrency, 1, 256);
    r.read_duration(d, "backoff_base", path, c.backoff_base, millis(10), hour);
    r.read_duration(d, "backoff_max", path, c.backoff_max, millis(10), 24 * hour);
    if (c.backoff_max < c.backoff_base)
        r.fail(d, path + ".backoff_max", "must be at least backoff_base");
    if (auto h = d["headers"])
        read_header_map(r, h, path + ".headers", c.headers);
}

// Methods that are never queued: they are safe (RFC 9110 §9.2.1), and a 202 would be a lie about them.
bool never_queued(std::string_view method)
{
    return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" || method == "CONNECT";
}

void read_queue_fallback(reader& r, const YAML::Node& q, const std::string& path, queue_fallback_config& c)
{
    if (q.IsNull())
        return; // queue: {} or queue: with every default
    if (!r.check_map(q, path,
                     {"methods", "path_prefixes", "require_prefer_async", "store_credentials", "max_entries", "max_bytes",
                      "max_body_size", "max_attempts", "max_age", "retention", "response_body_limit", "delivery"}))
        return;
    if (q["methods"]) {
        c.methods = r.read_string_list(q, "methods", path);
        for (std::size_t i = 0; i < c.methods.size(); ++i) {
            const auto& m = c.methods[i];
            const auto mp = path + ".methods[" + std::to_string(i) + "]";
            if (!is_token(m) || lower(m) == m)
                r.fail(q["methods"][i], mp, "expected an upper-case method name such as POST, got \"" + m + "\"");
            else if (never_queued(m))
                r.fail(q["methods"][i], mp,
                       m + " is never queued: answering 202 to a safe method would hide the upstream's answer");
        }
        if (c.methods.empty())
            r.fail(q["methods"], path + ".methods", "expected at least one method");
    }
    c.path_prefixes = r.read_string_list(q, "path_prefixes", path);
    for (std::size_t i = 0; i < c.path_prefixes.size(); ++i)
        if (c.path_prefixes[i].empty() || c.path_prefixes[i].front() != '/')
            r.fail(q["path_prefixes"][i], path + ".path_prefixes[" + std::to_string(i) + "]", "expected a path starting with /");
    r.read_bool(q, "require_prefer_async", path, c.require_prefer_async);
    r.read_bool(q, "store_credentials", path, c.store_credentials);
    r.read_uint(q, "max_entries", path, c.max_entries, 1, 100000000);
    r.read_size(q, "max_bytes", path, c.max_bytes, 1024, 1ull << 40);
    r.read_size(q, "max_body_size", path, c.max_body_size, 0, 512ull << 20); // SQLite's own limit is 1e9 bytes
    r.read_uint(q, "max_attempts", path, c.max_attempts, 1, 1000);
    r.read_duration(q, "max_age", path, c.max_age, seconds(1), 24 * hour * 365);
    r.read_duration(q, "retention", path, c.retention, seconds(1), 24 * hour * 365);
    r.read_size(q, "response_body_limit", path, c.response_body_limit, 0, 1024 * 1024);
    if (auto d = q["delivery"])
        read_delivery(r, d, path + ".delivery", c.delivery);
}

// A queue answers only for requests the upstream certainly did not process: refused by the circuit or
// the bulkhead. After upstream_error or timeout the upstream may have acted on it already.
void check_queue_triggers(reader& r, const YAML::Node& f, const std::string& p, fallback_config& fb)
{
    constexpr auto allowed =
        static_cast<std::uint8_t>(fallback_trigger::circuit_open) | static_cast<std::uint8_t>(fallback_trigger::bulkhead_full);
    if (!f["when"])
        fb.triggers = static_cast<std::uint8_t>(fallback_trigger::circuit_open);
    else if (fb.triggers & ~allowed)
        r.fail(f["when"], p + ".when",
               "a queue fallback takes circuit_open and bulkhead_full only: after upstream_error or timeout the upstream "
               "may already have acted on the request");
}

// One entry of a fallbacks list: `when`, and exactly one kind (its key is the kind's name).
fallback_config read_fallback(reader& r, const YAML::Node& f, const std::string& p, const std::string& config_dir)
{
    fallback_config fb;
    if (auto when = f["when"])
        read_fallback_triggers(r, when, p + ".when", fb.triggers);
    int kinds = 0;
    for (const auto& [kind, key] : fallback_kind_names) {
        const YAML::Node settings = f[std::string(key)];
        if (!settings)
            continue;
        ++kinds;
        fb.kind = kind;
        const auto sp = p + "." + std::string(key);
        switch (kind) {
        case fallback_kind::static_response: read_static_fallback(r, settings, sp, fb, config_dir); break;
        case fallback_kind::stale:
            if (!settings.IsNull() && !(settings.IsMap() && settings.size() == 0))
                r.fail(settings, sp, "takes no settings here (the cache is configured in stale_cache): write stale: {}");
            break;
        case fallback_kind::upstream:
            if (auto s = r.scalar(settings, sp))
                fb.upstream = *s;
            break;
        case fallback_kind::error: break;
        case fallback_kind::queue:
            read_queue_fallback(r, settings, sp, fb.queue);
            check_queue_triggers(r, f, p, fb);
            break;
        }
    }
    if (kinds != 1)
        r.fail(f, p, "each fallback needs exactly one of " + names_list<fallback_kind>());
    return fb;
}

void read_fallbacks(reader& r, const YAML::Node& node, const std::string& path, std::vector<fallback_config>& out,
                    const std::string& config_dir)
{
    out.clear();
    if (!node.IsSequence()) {
        r.fail(node, path, "expected a list of fallbacks, each with one of " + names_list<fallback_kind>());
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        auto p = path + "[" + std::to_string(i) + "]";
        if (r.check_map(node[i], p, {"when", "static", "stale", "upstream", "error", "queue"}))
            out.push_back(read_fallback(r, node[i], p, config_dir));
        if (!out.empty() && out.back().kind == fallback_kind::queue &&
            std::count_if(out.begin(), out.end(), [](const auto& f) { return f.kind == fallback_kind::queue; }) > 1)
            r.fail(node[i], p, "an upstream has at most one queue fallback");
    }
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

// Keys an upstream shares with the defaults block.
#define BREAKERBOX_POLICY_KEYS                                                                                                \
    "load_balancing", "connect_timeout", "request_timeout", "resolve_interval", "pool", "tls", "circuit_breaker", "bulkhead", \
        "retries", "stale_cache", "outlier_detection", "streaming"

void read_policies(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u)
{
    r.read_enum(node, "load_balancing", path, u.load_balancing);
    r.read_duration(node, "connect_timeout", path, u.connect_timeout, millis(1), hour);
    r.read_duration(node, "request_timeout", path, u.request_timeout, millis(1), hour);
    r.read_duration(node, "resolve_interval", path, u.resolve_interval, seconds(1), 24 * hour);
    if (auto p = node["pool"])
        read_pool(r, p, reader::join(path, "pool"), u.pool);
    if (auto b = node["circuit_breaker"])
        read_breaker(r, b, reader::join(path, "circuit_breaker"), u.breaker);
    if (auto b = node["bulkhead"])
        read_bulkhead(r, b, reader::join(path, "bulkhead"), u.bulkhead);
    if (auto b = node["retries"])
        read_retries(r, b, reader::join(path, "retries"), u.retries);
    if (auto b = node["stale_cache"])
        read_stale_cache(r, b, reader::join(path, "stale_cache"), u.stale_cache);
    if (auto t = node["tls"])
        read_tls(r, t, reader::join(path, "tls"), u.tls);
    if (auto o = node["outlier_detection"])
        read_outlier_detection(r, o, reader::join(path, "outlier_detection"), u.outliers);
    if (auto s = node["streaming"])
        read_streaming(r, s, reader::join(path, "streaming"), u.streaming);
}

bool valid_name(const std::string& name)
{
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool is_loopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

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

void read_limits(reader& r, const YAML::Node& l, limits_config& lim)
{
    if (!r.check_map(l, "limits",
                     {"max_connections", "max_header_bytes", "max_request_body", "max_response_body", "request_buffer",
                      "response_buffer", "stream_buffer", "header_timeout", "body_timeout", "idle_timeout", "write_timeout",
                      "drain_timeout"}))
        return;
    r.read_uint(l, "max_connections", "limits", lim.max_connections, 1, 1000000);
    r.read_size(l, "max_header_bytes", "limits", lim.max_header_bytes, 1024, 1024 * 1024);
    r.read_size_or_unlimited(l, "max_request_body", "limits", lim.max_request_body, 0);
    r.read_size_or_unlimited(l, "max_response_body", "limits", lim.max_response_body, 1024);
    r.read_size(l, "request_buffer", "limits", lim.request_buffer, 0, 1ull << 30);
    r.read_size(l, "response_buffer", "limits", lim.response_buffer, 0, 1ull << 30);
    r.read_size(l, "stream_buffer", "limits", lim.stream_buffer, 1024, 16ull << 20);
    r.read_duration(l, "header_timeout", "limits", lim.header_timeout, millis(10), hour);
    r.read_duration(l, "body_timeout", "limits", lim.body_timeout, millis(10), hour);
    r.read_duration(l, "idle_timeout", "limits", lim.idle_timeout, millis(10), 24 * hour);
    r.read_duration(l, "write_timeout", "limits", lim.write_timeout, millis(10), hour);
    r.read_duration(l, "drain_timeout", "limits", lim.drain_timeout, 0, hour);
}

void read_forwarding(reader& r, const YAML::Node& f, forwarding_config& fwd)
{
    if (!r.check_map(f, "forwarding", {"via", "x_forwarded_for", "x_forwarded_proto", "x_forwarded_host"}))
        return;
    r.read_bool(f, "via", "forwarding", fwd.via);
    r.read_bool(f, "x_forwarded_for", "forwarding", fwd.x_forwarded_for);
    r.read_bool(f, "x_forwarded_proto", "forwarding", fwd.x_forwarded_proto);
    r.read_bool(f, "x_forwarded_host", "forwarding", fwd.x_forwarded_host);
}

void read_logging(reader& r, const YAML::Node& lg, logging_config& logging)
{
    if (!r.check_map(lg, "logging", {"level", "access_log"}))
        return;
    r.read_enum(lg, "level", "logging", logging.level);
    r.read_bool(lg, "access_log", "logging", logging.access_log);
}

// The admin block, the token's environment fallback, and the rule that a non-loopback admin listener
// needs a token. `root`: for the error's position when the block is absent.
void read_admin(reader& r, const YAML::Node& root, admin_config& admin)
{
    if (auto a = root["admin"]) {
        if (r.check_map(a, "admin", {"enabled", "address", "token", "max_event_viewers"})) {
            r.read_bool(a, "enabled", "admin", admin.enabled);
            r.read_uint(a, "max_event_viewers", "admin", admin.max_event_viewers, 0, 10000);
            if (auto addr = a["address"])
                r.read_host_port(addr, "admin.address", admin.address, true);
            r.read_string(a, "token", "admin", admin.token);
        }
    }
    if (admin.token.empty()) // the documented fallback, so the secret need not be in the file
        admin.token = r.env("BREAKERBOX_ADMIN_TOKEN").value_or("");
    if (admin.enabled && !is_loopback(admin.address.host) && admin.token.empty())
        r.fail(root["admin"], "admin.address",
               "the admin listener is on a non-loopback address (" + admin.address.host +
                   ") without a token: set admin.token (e.g. ${BREAKERBOX_ADMIN_TOKEN})");
}

void read_endpoints(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u)
{
    if (!r.require(node, "endpoints", path))
        return;
    auto eps = node["endpoints"];
    if (!eps.IsSequence() || eps.size() == 0) {
        r.fail(eps ? eps : node, path + ".endpoints", "expected a non-empty list of host:port");
        return;
    }
    for (std::size_t i = 0; i < eps.size(); ++i) {
        host_port hp;
        if (r.read_host_port(eps[i], path + ".endpoints[" + std::to_string(i) + "]", hp))
            u.endpoints.push_back(hp);
    }
}

void read_routes(reader& r, const YAML::Node& rt, const std::string& rp, routes_config& routes)
{
    if (!r.check_map(rt, rp, {"hosts", "path_prefix", "strip_prefix"}))
        return;
    for (auto& h : r.read_string_list(rt, "hosts", rp))
        routes.hosts.push_back(lower(h));
    r.read_string(rt, "path_prefix", rp, routes.path_prefix);
    r.read_bool(rt, "strip_prefix", rp, routes.strip_prefix);
    if (!routes.path_prefix.empty() && routes.path_prefix.front() != '/')
        r.fail(rt["path_prefix"], rp + ".path_prefix", "must start with '/'");
    if (routes.strip_prefix && routes.path_prefix.empty())
        r.fail(rt["strip_prefix"], rp + ".strip_prefix", "needs a path_prefix");
}

// One upstream, on top of `defaults`. nullopt when its block is not a mapping of known keys.
std::optional<upstream_config> read_upstream(reader& r, const YAML::Node& key, const YAML::Node& node,
                                             const upstream_config& defaults, const std::string& config_dir,
                                             const YAML::Node& defaults_tls)
{
    const std::string name = key.Scalar();
    const std::string path = "upstreams." + name;
    if (!valid_name(name))
        r.fail(key, path, "upstream names use lowercase letters, digits, '-' and '_' (at most 64)");
    upstream_config u = defaults;
    u.name = name;
    if (!r.check_map(node, path, {"endpoints", "routes", "host_rewrite", "fallbacks", BREAKERBOX_POLICY_KEYS}))
        return std::nullopt;
    if (auto fb = node["fallbacks"])
        read_fallbacks(r, fb, path + ".fallbacks", u.fallbacks, config_dir);
    read_endpoints(r, node, path, u);
    if (auto rt = node["routes"])
        read_routes(r, rt, path + ".routes", u.routes);
    r.read_string(node, "host_rewrite", path, u.host_rewrite);
    read_policies(r, node, path, u);
    resolve_tls(r, node, path, u, config_dir, defaults_tls);
    validate_breaker(r, node, path + ".circuit_breaker", u.breaker);
    validate_retries(r, node, path + ".retries", u.retries);
    return u;
}

void read_upstreams(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir)
{
    upstream_config defaults;
    YAML::Node defaults_tls;
    if (auto d = root["defaults"]) {
        if (d.IsMap() && d["tls"])
            defaults_tls = d["tls"];
        if (r.check_map(d, "defaults", {BREAKERBOX_POLICY_KEYS}))
            read_policies(r, d, "defaults", defaults);
    }
    auto ups = root["upstreams"];
    if (!ups) {
        r.fail(root, "upstreams", "at least one upstream is required");
        return;
    }
    if (!ups.IsMap()) {
        r.fail(ups, "upstreams", "expected a mapping of upstream name to its settings");
        return;
    }
    for (auto it = ups.begin(); it != ups.end(); ++it)
        if (auto u = read_upstream(r, it->first, it->second, defaults, config_dir, defaults_tls))
            cfg.upstreams.push_back(std::move(*u));
}

// One listener; `cfg` holds the upstreams and the listeners read so far (for the cross-checks).
void read_listener(reader& r, const YAML::Node& node, std::size_t i, config& cfg)
{
    const std::string path = "listeners[" + std::to_string(i) + "]";
    listener_config l;
    if (!r.check_map(node, path, {"name", "address", "upstream"}))
        return;
    r.read_string(node, "name", path, l.name);
    if (l.name.empty())
        l.name = "listener-" + std::to_string(i);
    if (auto addr = node["address"])
        r.read_host_port(addr, path + ".address", l.address, true);
    else
        r.fail(node, path + ".address", "missing required key \"address\"");
    r.read_string(node, "upstream", path, l.upstream);
    if (!l.upstream.empty() && !cfg.find_upstream(l.upstream))
        r.fail(node["upstream"], path + ".upstream", "no upstream named \"" + l.upstream + "\"");
    for (const auto& other : cfg.listeners) {
        if (other.name == l.name)
            r.fail(node, path + ".name", "duplicate listener name \"" + l.name + "\"");
        if (l.address.port && other.address.text() == l.address.text())
            r.fail(node, path + ".address", "address " + l.address.text() + " is used by listener \"" + other.name + "\"");
    }
    if (l.address.port && cfg.admin.enabled && l.address.text() == cfg.admin.address.text())
        r.fail(node, path + ".address", "address is used by the admin listener");
    cfg.listeners.push_back(std::move(l));
}

void read_listeners(reader& r, const YAML::Node& root, config& cfg)
{
    if (!r.require(root, "listeners", ""))
        return;
    auto ls = root["listeners"];
    if (!ls.IsSequence() || ls.size() == 0) {
        r.fail(ls ? ls : root, "listeners", "expected a non-empty list of listeners");
        return;
    }
    for (std::size_t i = 0; i < ls.size(); ++i)
        read_listener(r, ls[i], i, cfg);
}

// Failover targets must exist and differ from the upstream itself.
void check_failover_targets(reader& r, const YAML::Node& root, const config& cfg)
{
    auto ups = root["upstreams"];
    for (const auto& u : cfg.upstreams)
        for (std::size_t i = 0; i < u.fallbacks.size(); ++i) {
            const auto& fb = u.fallbacks[i];
            if (fb.kind != fallback_kind::upstream)
                continue;
            auto at = ups ? ups[u.name]["fallbacks"][i] : root;
            auto p = "upstreams." + u.name + ".fallbacks[" + std::to_string(i) + "].upstream";
            if (!cfg.find_upstream(fb.upstream))
                r.fail(at, p, "no upstream named \"" + fb.upstream + "\"");
            else if (fb.upstream == u.name)
                r.fail(at, p, "an upstream cannot fail over to itself");
        }
}

// Every upstream must be reachable somehow, and no two may claim the same host or prefix.
void check_routes(reader& r, const YAML::Node& root, const config& cfg)
{
    auto ups = root["upstreams"];
    std::set<std::string> hosts, prefixes;
    for (const auto& u : cfg.upstreams) {
        auto node = ups ? ups[u.name] : root;
        bool dedicated = std::any_of(cfg.listeners.begin(), cfg.listeners.end(),
                                     [&](const listener_config& l) { return l.upstream == u.name; });
        bool failover_target = false;
        for (const auto& other : cfg.upstreams)
            for (const auto& fb : other.fallbacks)
                failover_target = failover_target || (fb.kind == fallback_kind::upstream && fb.upstream == u.name);
        if (!dedicated && !failover_target && u.routes.hosts.empty() && u.routes.path_prefix.empty())
            r.fail(node, "upstreams." + u.name + ".routes",
                   "upstream is unreachable: give it routes (hosts or path_prefix), a dedicated listener, or make it a failover "
                   "target");
        for (const auto& h : u.routes.hosts)
            if (!hosts.insert(h).second)
                r.fail(node, "upstreams." + u.name + ".routes.hosts", "host \"" + h + "\" is routed to another upstream too");
        if (!u.routes.path_prefix.empty() && !prefixes.insert(u.routes.path_prefix).second)
            r.fail(node, "upstreams." + u.name + ".routes.path_prefix",
                   "prefix \"" + u.routes.path_prefix + "\" is routed to another upstream too");
    }
}

// The whole file: each section by its reader, then the checks across sections.
// "unix:/path" or host:port (a name is resolved by the sync, off the request path, at each connection).
bool valid_redis_address(const std::string& a)
{
    if (a.rfind("unix:/", 0) == 0)
        return a.size() > 6;
    auto hp = parse_host_port(a);
    return hp && hp->port != 0 && !hp->host.empty();
}

void read_cluster_password(reader& r, const YAML::Node& node, cluster_config& c, const std::string& config_dir)
{
    if (node["password_file"] && node["password_env"])
        r.fail(node, "cluster.password_file", "give password_file or password_env, not both");
    if (auto f = node["password_file"]) {
        std::string file;
        r.read_string(node, "password_file", "cluster", file);
        std::string error;
        if (auto text = read_text_file(file, config_dir, error)) {
            while (!text->empty() && (text->back() == '\n' || text->back() == '\r'))
                text->pop_back();
            c.password = *text;
        } else {
            r.fail(f, "cluster.password_file", error);
        }
    }
    if (auto e = node["password_env"]) {
        std::string name;
        r.read_string(node, "password_env", "cluster", name);
        if (auto v = r.env(name))
            c.password = *v;
        else
            r.fail(e, "cluster.password_env", "the environment variable " + name + " is not set");
    }
}

// cluster: required once an upstream's circuit_breaker has scope: cluster.
void read_cluster(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir)
{
    auto& c = cfg.cluster;
    const auto node = root["cluster"];
    if (node && r.check_map(node, "cluster",
                            {"redis", "password_file", "password_env", "replica_id", "key_prefix", "sync_interval", "quorum",
                             "replica_timeout", "connect_timeout", "command_timeout"})) {
        c.enabled = true;
        r.read_string(node, "redis", "cluster", c.redis);
        if (!valid_redis_address(c.redis))
            r.fail(node["redis"] ? node["redis"] : node, "cluster.redis",
                   "expected unix:/path/to/redis.sock or host:port such as 127.0.0.1:6379 or redis:6379, got \"" + c.redis +
                       "\"");
        read_cluster_password(r, node, c, config_dir);
        r.read_string(node, "replica_id", "cluster", c.replica_id);
        r.read_string(node, "key_prefix", "cluster", c.key_prefix);
        if (c.key_prefix.empty() || c.key_prefix.find_first_of("{} \t\r\n") != std::string::npos)
            r.fail(node["key_prefix"], "cluster.key_prefix", "expected a non-empty prefix without braces or spaces");
        if (c.replica_id.find_first_of(" \t\r\n") != std::string::npos)
            r.fail(node["replica_id"], "cluster.replica_id", "a replica id has no spaces");
        r.read_duration(node, "sync_interval", "cluster", c.sync_interval, millis(50), seconds(60));
        r.read_uint(node, "quorum", "cluster", c.quorum, 1, 1000);
        r.read_duration(node, "replica_timeout", "cluster", c.replica_timeout, millis(100), hour);
        r.read_duration(node, "connect_timeout", "cluster", c.connect_timeout, millis(10), seconds(60));
        r.read_duration(node, "command_timeout", "cluster", c.command_timeout, millis(10), seconds(60));
        if (c.replica_timeout == 0)
            c.replica_timeout = 4 * c.sync_interval;
        else if (c.replica_timeout < 2 * c.sync_interval)
            r.fail(node["replica_timeout"], "cluster.replica_timeout", "must be at least two sync intervals");
    }
    if (c.enabled)
        return;
    for (const auto& u : cfg.upstreams)
        if (u.breaker.scope == breaker_scope::cluster)
            r.fail(root["upstreams"][u.name], "upstreams." + u.name + ".circuit_breaker.scope",
                   "scope: cluster needs a top-level cluster block (the Redis the replicas share)");
}

// queue_store: required once an upstream has a queue fallback; its path is resolved against the
// configuration file's folder.
void read_queue_store(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir)
{
    auto& qs = cfg.queue_store;
    const auto node = root["queue_store"];
    if (node && r.check_map(node, "queue_store", {"path", "synchronous", "status_path"})) {
        qs.enabled = true;
        r.read_string(node, "path", "queue_store", qs.path);
        if (qs.path.empty())
            r.fail(node, "queue_store.path", "missing required key \"path\" (the queue's database file)");
        else if (qs.path.front() != '/')
            qs.path = config_dir + "/" + qs.path;
        r.read_enum(node, "synchronous", "queue_store", qs.synchronous);
        r.read_string(node, "status_path", "queue_store", qs.status_path);
        if (qs.status_path.size() < 2 || qs.status_path.front() != '/' || qs.status_path.back() != '/')
            r.fail(node["status_path"], "queue_store.status_path",
                   "expected a path that starts and ends with /, such as /_breakerbox/queue/");
    }
    if (qs.enabled)
        return;
    for (const auto& u : cfg.upstreams)
        if (u.queue_fallback()) {
            auto ups = root["upstreams"];
            r.fail(ups[u.name]["fallbacks"], "upstreams." + u.name + ".fallbacks",
                   "a queue fallback needs a top-level queue_store block (where queued requests are kept)");
        }
}

void read_root(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir)
{
    if (!r.check_map(root, "",
                     {"workers", "listeners", "admin", "limits", "forwarding", "logging", "queue_store", "cluster", "defaults",
                      "upstreams"}))
        return;
    r.read_uint(root, "workers", "", cfg.workers, 0, 256);
    if (auto l = root["limits"])
        read_limits(r, l, cfg.limits);
    if (auto f = root["forwarding"])
        read_forwarding(r, f, cfg.forwarding);
    if (auto lg = root["logging"])
        read_logging(r, lg, cfg.logging);
    read_admin(r, root, cfg.admin);
    read_upstreams(r, root, cfg, config_dir);
    read_listeners(r, root, cfg);
    read_queue_store(r, root, cfg, config_dir);
    read_cluster(r, root, cfg, config_dir);
    check_failover_targets(r, root, cfg);
    check_routes(r, root, cfg);
}

} // namespace

load_result load_string(const std::string& yaml, const std::string& file_name, const env_lookup& env)
{
    load_result result;
    reader r(file_name, env);
    YAML::Node root;
    try {
        root = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
        config_error err;
        err.file = file_name;
        err.line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
        err.column = e.mark.column >= 0 ? e.mark.column + 1 : 0;
        err.message = "invalid YAML: " + e.msg;
        result.errors.push_back(err);
        return result;
    }
    config cfg;
    cfg.source_file = file_name;
    std::string config_dir = ".";
    if (auto slash = file_name.rfind('/'); slash != std::string::npos)
        config_dir = file_name.substr(0, slash);
    try {
        read_root(r, root, cfg, config_dir);
    } catch (const YAML::Exception& e) {
        r.fail(root, "", std::string("unexpected YAML structure: ") + e.what());
    }
    result.errors = std::move(r.errors);
    std::stable_sort(result.errors.begin(), result.errors.end(), [](const config_error& a, const config_error& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    if (result.errors.empty())
        result.cfg = std::move(cfg);
    return result;
}

std::vector<checked_key> checked_keys(const std::string& yaml, const std::string& file_name)
{
    std::vector<checked_key> out;
    t_checked_keys = &out;
    load_string(yaml, file_name, [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
    t_checked_keys = nullptr;
    return out;
}

load_result load_file(const std::string& path, const env_lookup& env)
{
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int why = errno;
        load_result result;
        result.errors.push_back(
            {path, 0, 0, "", std::string("cannot read the file: ") + (why ? std::strerror(why) : "unknown reason")});
        return result;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return load_string(ss.str(), path, env);
}

} // namespace breakerbox::config
