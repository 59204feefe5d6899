// The cluster block: the Redis the replicas share circuit state through (docs/cluster.md), its
// password, and the sync's timings.
#include "config/sections.hpp"

namespace breakerbox::config {

namespace {

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

} // namespace

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

} // namespace breakerbox::config
