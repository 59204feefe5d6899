// An upstream's fallbacks list: each entry's triggers and its one kind (static answer, stale copy,
// failover upstream, error, queue), with the queue fallback's own settings and rules.
#include "config/sections.hpp"

#include <algorithm>
#include <cctype>

namespace breakerbox::config {

namespace {

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
    std::string error; // not shown: this key's message has never given the reason
    if (auto text = read_text_file(*file, config_dir, error))
        body = std::move(*text);
    else
        r.fail(bf, path, "cannot read " + config_path(*file, config_dir));
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

// A queue answers only for requests the upstream certainly did not process: refused by the circuit, the
// bulkhead or another limit before any byte was sent. After upstream_error or timeout the upstream may
// have acted on it already.
void check_queue_triggers(reader& r, const YAML::Node& f, const std::string& p, fallback_config& fb)
{
    constexpr auto allowed = static_cast<std::uint8_t>(fallback_trigger::circuit_open) |
                             static_cast<std::uint8_t>(fallback_trigger::bulkhead_full) |
                             static_cast<std::uint8_t>(fallback_trigger::limit_reached);
    if (!f["when"])
        fb.triggers = static_cast<std::uint8_t>(fallback_trigger::circuit_open);
    else if (fb.triggers & ~allowed)
        r.fail(f["when"], p + ".when",
               "a queue fallback takes circuit_open, bulkhead_full and limit_reached only: after upstream_error or timeout "
               "the upstream may already have acted on the request");
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

} // namespace

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

} // namespace breakerbox::config
