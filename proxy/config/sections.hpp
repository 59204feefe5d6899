// Internal to the loader: the section readers one file of proxy/config/ offers the others, grouped by
// that file. Each reports every problem through the reader rather than stopping at the first; a value
// it refuses leaves its setting as it was (the default, or what the defaults block gave).
#pragma once
#include "config/reader.hpp"

#include <string>
#include <vector>

namespace breakerbox::config {

// policies.cpp: the blocks an upstream shares with the defaults block (timeouts, pool, circuit_breaker,
// bulkhead, retries, stale_cache, tls, outlier_detection, streaming), and the checks across their keys.
void read_policies(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u);
void validate_policies(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u);

// tls_settings.cpp: the tls block as written, then (once the endpoints are known) the files it names.
void read_tls(reader& r, const YAML::Node& node, const std::string& path, tls_config& t);
void resolve_tls(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u, const std::string& config_dir,
                 const YAML::Node& defaults_tls);

// fallbacks.cpp: an upstream's fallbacks list, the queue fallback's settings included.
void read_fallbacks(reader& r, const YAML::Node& node, const std::string& path, std::vector<fallback_config>& out,
                    const std::string& config_dir);

// upstreams.cpp: the defaults and upstreams blocks, and the checks across upstreams once the listeners
// are read too.
void read_upstreams(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir);
void check_failover_targets(reader& r, const YAML::Node& root, const config& cfg);
void check_routes(reader& r, const YAML::Node& root, const config& cfg);

// cluster_settings.cpp: the cluster block, required once a circuit breaker has scope: cluster.
void read_cluster(reader& r, const YAML::Node& root, config& cfg, const std::string& config_dir);

} // namespace breakerbox::config
