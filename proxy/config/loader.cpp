// The top level: the file and its top-level blocks (listeners, admin, limits, forwarding, logging,
// queue_store), each section handed to its reader (sections.hpp), then the checks across sections.
#include "config/loader.hpp"
#include "config/sections.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>

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

bool is_loopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

void read_limits(reader& r, const YAML::Node& l, limits_config& lim)
{
    if (!r.check_map(l, "limits",
                     {"max_connections", "max_header_bytes", "max_request_body", "max_response_body", "request_buffer",
                      "response_buffer", "stream_buffer", "header_timeout", "body_timeout", "idle_timeout", "write_timeout",
                      "drain_timeout", "drain_period"}))
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
    r.read_duration(l, "drain_period", "limits", lim.drain_period, 0, hour);
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

// queue_store: required once an upstream has a queue fallback; its path is resolved against the
// configuration file's folder.
void read_queue_store(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir)
{
    auto& qs = cfg.queue_store;
    const auto node = root["queue_store"];
    if (node && r.check_map(node, "queue_store", {"path", "synchronous", "status_path", "commit_timeout"})) {
        qs.enabled = true;
        r.read_string(node, "path", "queue_store", qs.path);
        if (qs.path.empty())
            r.fail(node, "queue_store.path", "missing required key \"path\" (the queue's database file)");
        else
            qs.path = config_path(qs.path, config_dir);
        r.read_enum(node, "synchronous", "queue_store", qs.synchronous);
        r.read_string(node, "status_path", "queue_store", qs.status_path);
        r.read_duration(node, "commit_timeout", "queue_store", qs.commit_timeout, millis(10), seconds(60));
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

// The whole file: each section by its reader, then the checks across sections.
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
    {
        const key_recording recording(out);
        load_string(yaml, file_name, [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
    }
    return out;
}

namespace {

// The file's SHA-256 in hex (OpenSSL's EVP digest): which file each replica serves, in /metrics.
std::string sha256_hex(std::string_view text)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr) != 1)
        return {};
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i)
        out.append({hex[digest[i] >> 4], hex[digest[i] & 0xf]});
    return out;
}

} // namespace

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
    const std::string text = ss.str();
    auto result = load_string(text, path, env);
    if (result.cfg)
        result.cfg->source_sha256 = sha256_hex(text);
    return result;
}

} // namespace breakerbox::config
