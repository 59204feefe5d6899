// The defaults and upstreams blocks: each upstream's name, endpoints, routes and host rewrite, its
// policies on top of the defaults (policies.cpp) and its fallbacks (fallbacks.cpp); then the checks
// across upstreams and listeners (failover targets, reachability, routes claimed twice).
#include "config/sections.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace breakerbox::config {

// Keys an upstream shares with the defaults block (read_policies reads them).
#define BREAKERBOX_POLICY_KEYS                                                                                                \
    "load_balancing", "connect_timeout", "request_timeout", "resolve_interval", "pool", "tls", "circuit_breaker", "bulkhead", \
        "retries", "stale_cache", "outlier_detection", "streaming"

namespace {

bool valid_name(const std::string& name)
{
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
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
    validate_policies(r, node, path, u);
    return u;
}

} // namespace

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

} // namespace breakerbox::config
