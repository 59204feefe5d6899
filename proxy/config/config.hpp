// The configuration, parsed once into plain const structs. Defaults live in the member initialisers
// below and nowhere else; the loader (loader.hpp) fills these from YAML and validates everything
// before anything starts. Durations are nanoseconds, sizes bytes.
#pragma once
#include "core/clock.hpp"
#include "core/enum_names.hpp"
#include "core/log.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace breakerbox::config {

struct host_port {
    std::string host;
    std::uint16_t port = 0;
    std::string text() const { return host + ":" + std::to_string(port); }
    bool operator==(const host_port&) const = default;
};

struct listener_config {
    std::string name;
    host_port address;
    std::string upstream; // non-empty: a dedicated listener that forwards everything to this upstream
    bool operator==(const listener_config&) const = default;
};

// A size limit that is not set.
inline constexpr std::uint64_t unlimited_size = ~std::uint64_t{0};

struct limits_config {
    std::uint32_t max_connections = 10000;
    std::uint64_t max_header_bytes = 16 * 1024;
    // Hard limits on a whole body, streamed or not (413 / 502 above; `unlimited` by default).
    std::uint64_t max_request_body = unlimited_size;
    std::uint64_t max_response_body = unlimited_size;
    // The replay buffer (docs/streaming.md): a request body known to fit is read whole before the
    // upstream gets anything, so retries, failover and the queue can send it again; a longer one (or a
    // chunked one that outgrows it) streams, and is committed once a byte beyond it left.
    std::uint64_t request_buffer = 1024 * 1024;
    // A response body of known length up to this is read whole (stale cache, fallbacks on a broken
    // body, one write); anything longer, of unknown length or of a streaming type streams.
    std::uint64_t response_buffer = 1024 * 1024;
    // The relay buffer per direction of a streamed exchange or tunnel: the memory a stream holds,
    // whatever its length (back-pressure: nothing more is read until it is written).
    std::uint64_t stream_buffer = 64 * 1024;
    nanos header_timeout = seconds(10);
    nanos body_timeout = seconds(30);
    nanos idle_timeout = seconds(60);
    nanos write_timeout = seconds(30);
    nanos drain_timeout = seconds(15);
    // After SIGTERM, how long new connections are still accepted — each answer with Connection: close —
    // before the listeners close (Envoy's drain listeners, Istio's terminationDrainDuration): in a pod,
    // the application gets SIGTERM with its sidecar and its own calls during its graceful shutdown must
    // still go out. 0: close at once. drain_timeout counts after it.
    nanos drain_period = 0;
};

struct forwarding_config {
    bool via = true;
    bool x_forwarded_for = true;
    bool x_forwarded_proto = true;
    bool x_forwarded_host = true;
};

struct logging_config {
    log::level level = log::level::info;
    bool access_log = false;
};

struct admin_config {
    host_port address{"127.0.0.1", 9901};
    std::uint32_t max_event_viewers = 16; // GET /events (and /dashboard pages) connected at once
    std::string token;
    bool enabled = true;
    bool operator==(const admin_config&) const = default;
};

enum class lb_policy { round_robin, least_outstanding };
inline constexpr enum_name<lb_policy> lb_policy_names[]{{lb_policy::round_robin, "round_robin"},
                                                        {lb_policy::least_outstanding, "least_outstanding"}};
constexpr std::span<const enum_name<lb_policy>> names_of(lb_policy) noexcept { return lb_policy_names; }

struct pool_config {
    std::uint32_t max_connections_per_endpoint = 0; // 0 = unlimited; shared out evenly among the workers
    std::uint32_t max_idle_per_endpoint = 64;
    nanos idle_timeout = seconds(60);
    std::uint32_t max_requests_per_connection = 10000;
};

enum class window_type { count_based, time_based };
inline constexpr enum_name<window_type> window_type_names[]{{window_type::count_based, "count"},
                                                            {window_type::time_based, "time"}};
constexpr std::span<const enum_name<window_type>> names_of(window_type) noexcept { return window_type_names; }

// 5xx minus 501 (Not Implemented: the method, not the server's health) and 505 (HTTP Version Not
// Supported): the default of classify.failure_statuses.
inline std::vector<unsigned> default_failure_statuses()
{
    std::vector<unsigned> statuses;
    for (unsigned s = 500; s <= 599; ++s)
        if (s != 501 && s != 505)
            statuses.push_back(s);
    return statuses;
}

// Which outcomes count as failures for the breaker. Everything not listed as a failure and not
// ignored counts as a success.
struct classification_config {
    std::vector<unsigned> failure_statuses = default_failure_statuses(); // an explicit [] means: no status is a failure
    std::vector<unsigned> ignored_statuses;                              // counted neither way
    bool status_429_is_failure = false;
    bool connect_failure = true;
    bool connect_timeout = true;
    bool request_timeout = true;
    bool connection_reset = true;
    bool invalid_response = true;
    bool operator==(const classification_config&) const = default;
};

// scope: local (each sidecar decides alone, the default) or cluster (docs/cluster.md: the replicas'
// windows are summed in Redis and a quorum opens the circuit for all).
enum class breaker_scope : std::uint8_t { local, cluster };
inline constexpr enum_name<breaker_scope> breaker_scope_names[]{{breaker_scope::local, "local"},
                                                                {breaker_scope::cluster, "cluster"}};
constexpr std::span<const enum_name<breaker_scope>> names_of(breaker_scope) noexcept { return breaker_scope_names; }

struct breaker_config {
    bool enabled = true;
    breaker_scope scope = breaker_scope::local;
    std::uint32_t consecutive_failures = 5; // 0 disables the rule
    bool failure_rate_enabled = true;
    double failure_rate_threshold = 50.0; // percent
    window_type window = window_type::time_based;
    std::uint32_t window_size = 100;     // calls, for count_based
    nanos window_duration = seconds(10); // for time_based
    std::uint32_t window_buckets = 10;   // for time_based
    std::uint32_t minimum_calls = 20;
    std::uint32_t minimum_failures = 0; // > 0: trip also when failures >= this even below minimum_calls
    bool slow_call_enabled = false;
    nanos slow_call_duration = seconds(2);
    double slow_call_rate_threshold = 100.0; // percent
    // slow_calls.consecutive: trip after this many slow calls in a row (no fast call between); 0 = off.
    // Unlike a rate it is not diluted by the fast calls of the last window, so a hang trips it quickly.
    std::uint32_t slow_call_consecutive = 0;
    // slow_calls.in_flight: a call still running at slow_call_duration is recorded as slow right then
    // (by its worker's 100 ms sweep), instead of when it finally ends or times out.
    bool slow_call_in_flight = false;
    nanos open_duration = seconds(5);
    double open_duration_multiplier = 2.0;
    nanos max_open_duration = seconds(300);
    double open_duration_jitter = 0.1;            // +-10 %
    nanos open_backoff_reset_after = seconds(60); // closed this long: the open time goes back to the base
    std::uint32_t half_open_max_probes = 1;
    std::uint32_t half_open_successes_to_close = 1;
    nanos half_open_max_wait = seconds(10);
    // half_open.probe: when set, breakerbox sends its own health request (GET probe_path) as the probes
    // and client requests are never used as probes (they get the open-circuit answer until it closes).
    std::string probe_path;
    nanos probe_timeout = seconds(1);
    nanos recovery_ramp = 0; // 0: no ramp
    // When the circuit opens, requests already with the upstream are answered at once as if they had
    // arrived after it opened (within the worker's 100 ms sweep) instead of waiting out their timeout.
    bool cancel_in_flight = false;
    classification_config classify;
    // A reload keeps a breaker's state and windows only when its policy is unchanged.
    bool operator==(const breaker_config&) const = default;
};

struct bulkhead_config {
    std::uint32_t max_concurrent = 128; // 0 = unlimited
    std::uint32_t max_queue = 128;      // 0 = reject at once when full
    nanos queue_timeout = seconds(1);
};

// What a failed attempt must have been for a retry (RFC 9110 §9.2.2 idempotent methods only, by default).
struct retry_config {
    std::uint32_t max_attempts = 2; // including the first; 1 = no retries
    bool on_connect_failure = true; // refused, connect timeout, no route to host
    bool on_reset = true;           // the connection broke before a complete response
    bool on_timeout = false;        // the attempt's deadline passed (doubling latency is opt-in)
    std::vector<unsigned> on_statuses{502, 503, 504};
    std::vector<std::string> methods{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};
    bool allow_post = false;   // POST is retried only with an Idempotency-Key, unless this is set
    nanos per_try_timeout = 0; // 0 = the request deadline only
    nanos backoff_base = millis(25);
    nanos backoff_max = millis(250);
    nanos retry_after_max = seconds(1); // an upstream Retry-After longer than this ends the retries
    double budget_ratio = 0.2;          // retries in flight <= max(min, ratio * active requests)
    std::uint32_t budget_min_concurrent = 3;
};

// Bit values: a fallback's `when` is a set of them.
// limit_reached: a limit other than the bulkhead turned the request away (pool.max_connections_per_endpoint,
// streaming.max_streams, streaming.max_tunnels).
enum class fallback_trigger : std::uint8_t {
    circuit_open = 1,
    bulkhead_full = 2,
    upstream_error = 4,
    timeout = 8,
    limit_reached = 16
};
constexpr std::uint8_t all_fallback_triggers = 1 | 2 | 4 | 8 | 16;
constexpr unsigned fallback_trigger_count = 5;
inline constexpr enum_name<fallback_trigger> fallback_trigger_names[]{{fallback_trigger::circuit_open, "circuit_open"},
                                                                      {fallback_trigger::bulkhead_full, "bulkhead_full"},
                                                                      {fallback_trigger::upstream_error, "upstream_error"},
                                                                      {fallback_trigger::timeout, "timeout"},
                                                                      {fallback_trigger::limit_reached, "limit_reached"}};
constexpr std::span<const enum_name<fallback_trigger>> names_of(fallback_trigger) noexcept { return fallback_trigger_names; }

// The names are the YAML keys of a fallback entry, the X-Breakerbox-Fallback values and the `kind` label.
enum class fallback_kind : std::uint8_t { static_response, stale, upstream, error, queue };
inline constexpr enum_name<fallback_kind> fallback_kind_names[]{{fallback_kind::static_response, "static"},
                                                                {fallback_kind::stale, "stale"},
                                                                {fallback_kind::upstream, "upstream"},
                                                                {fallback_kind::error, "error"},
                                                                {fallback_kind::queue, "queue"}};
constexpr std::span<const enum_name<fallback_kind>> names_of(fallback_kind) noexcept { return fallback_kind_names; }

// queue: "queue for later" (docs/queue.md). A write the circuit (or bulkhead) turns away is stored
// durably and answered 202 Accepted; it is delivered once the circuit is closed again. Sizes in bytes,
// times in nanoseconds, rate in deliveries started per second.
struct queue_delivery_config {
    double rate = 10.0;
    std::uint32_t concurrency = 1;
    nanos backoff_base = seconds(1); // after a retryable failure: base * 2^(n-1), at most backoff_max
    nanos backoff_max = seconds(30);
    std::vector<std::pair<std::string, std::string>> headers; // added to each delivery, replacing the client's
    bool operator==(const queue_delivery_config&) const = default;
};

struct queue_fallback_config {
    std::vector<std::string> methods{"POST", "PUT", "PATCH", "DELETE"}; // never GET, HEAD, OPTIONS, TRACE, CONNECT
    std::vector<std::string> path_prefixes;                             // empty = every path
    bool require_prefer_async = false;                                  // only with Prefer: respond-async (RFC 7240)
    bool store_credentials = false;                                     // keep Authorization, Cookie, Proxy-Authorization on disk
    std::uint64_t max_entries = 10000;
    std::uint64_t max_bytes = 64ull * 1024 * 1024;
    std::uint64_t max_body_size = 1024 * 1024;
    std::uint32_t max_attempts = 10;
    nanos max_age = seconds(24 * 3600);
    nanos retention = seconds(24 * 3600); // delivered, failed and expired records answer status this long
    std::uint64_t response_body_limit = 4096;
    queue_delivery_config delivery;
    bool operator==(const queue_fallback_config&) const = default;
};

// cluster: circuit state shared across replicas through Redis (docs/cluster.md). Times in nanoseconds.
struct cluster_config {
    bool enabled = false;   // a cluster block was given
    std::string redis;      // "unix:/path/redis.sock" or "IP:port" (an address: no blocking name lookup)
    std::string password;   // from password_file or password_env, read at load time ("" = no AUTH)
    std::string replica_id; // "" = host name + "-" + pid
    std::string key_prefix = "breakerbox";
    nanos sync_interval = millis(500);
    std::uint32_t quorum = 2;
    nanos replica_timeout = 0; // a replica silent this long drops out; 0 = 4 sync intervals
    nanos connect_timeout = millis(500);
    nanos command_timeout = millis(250);
    bool operator==(const cluster_config&) const = default;
};

enum class queue_sync : std::uint8_t { full, normal };
inline constexpr enum_name<queue_sync> queue_sync_names[]{{queue_sync::full, "full"}, {queue_sync::normal, "normal"}};
constexpr std::span<const enum_name<queue_sync>> names_of(queue_sync) noexcept { return queue_sync_names; }

// queue_store: the one database every queue fallback of the process writes to.
struct queue_store_config {
    bool enabled = false; // a queue_store block was given
    std::string path;     // absolute (the loader resolves it against the configuration file's folder)
    queue_sync synchronous = queue_sync::full;
    std::string status_path = "/_breakerbox/queue/"; // GET <status_path><id> on the data listeners
    // The longest wait for the store's answer (its group commit) on any awaited operation: past it the
    // queue fallback passes to the next one, a status or admin request is answered 503, a delivery
    // tries again later — a stalled disk never stalls a request.
    nanos commit_timeout = seconds(1);
    bool operator==(const queue_store_config&) const = default;
};

struct fallback_config {
    std::uint8_t triggers = all_fallback_triggers; // bit set of fallback_trigger
    fallback_kind kind = fallback_kind::error;
    // static
    unsigned status = 503;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body; // inline, or read from body_file at load time
    // upstream (failover)
    std::string upstream;
    // queue
    queue_fallback_config queue;
};

struct stale_cache_config {
    std::uint32_t max_entries = 1000;
    std::uint64_t max_bytes = 16 * 1024 * 1024;
    nanos max_age = seconds(300);
};

// Streamed exchanges and upgraded connections (docs/streaming.md). Per upstream.
struct streaming_config {
    nanos idle_timeout = seconds(300); // no byte either way for this long ends a stream or tunnel
    nanos total_timeout = 0;           // 0: a streamed answer or tunnel may last as long as it is active
    std::uint32_t max_streams = 1024;  // streamed exchanges at once (they hold no bulkhead slot)
    std::uint32_t max_tunnels = 1024;  // upgraded connections at once (WebSocket, ...)
    // Upgrade protocols (RFC 9110 §7.8) forwarded to this upstream, lower case; others are stripped.
    std::vector<std::string> upgrades{"websocket"};
    bool close_tunnels_on_open = false; // a circuit that opens ends this upstream's tunnels
    bool operator==(const streaming_config&) const = default;
};

struct routes_config {
    std::vector<std::string> hosts; // Host header / absolute-form authority matches (case-insensitive)
    std::string path_prefix;        // "" = no prefix route
    bool strip_prefix = false;
};

// TLS towards the upstream's endpoints (origination; the sidecar's own listeners stay plain HTTP on
// loopback, as Envoy's, Linkerd's and Istio's do). Peers: Envoy UpstreamTlsContext, HAProxy `server ... ssl
// verify required sni`, nginx proxy_ssl_*.
enum class tls_version : std::uint8_t { v1_2, v1_3 };
inline constexpr enum_name<tls_version> tls_version_names[]{{tls_version::v1_2, "1.2"}, {tls_version::v1_3, "1.3"}};
constexpr std::span<const enum_name<tls_version>> names_of(tls_version) noexcept { return tls_version_names; }

struct tls_config {
    bool enabled = false;           // true once a tls block is given, unless it says enabled: false
    bool verify = true;             // the chain against the trust source and the name (RFC 9110 §4.3.4)
    std::string ca_file;            // "" = the system bundle
    std::string server_name;        // SNI and the name checked; "" = the endpoints' host
    std::string client_certificate; // mutual TLS: PEM chain, with client_key
    std::string client_key;
    tls_version min_version = tls_version::v1_2;
    bool session_reuse = true; // resume sessions on new connections (per worker and endpoint)
    // Filled by the loader from the files above (read at load and at every reload), already checked:
    std::string ca_pem; // the trusted certificates (ca_file, or the system bundle)
    std::string certificate_pem;
    std::string key_pem;
    bool server_name_is_ip = false; // checked against IP subjectAltNames, and sent as no SNI (RFC 6066 §3)
    bool operator==(const tls_config&) const = default;
};

// outlier_detection: per-endpoint ejection (Envoy's outlier detection, Linkerd's failure accrual),
// working with the upstream's breaker: an ejected endpoint leaves load balancing and retries; when too
// few endpoints are healthy the upstream's breaker opens (instead of Envoy's panic mode, which sends
// traffic to known-bad endpoints). Counts: non-negative integers; times: nanoseconds; shares: percent.
struct outlier_rate_rule {
    bool enabled = false;              // on once its block is given
    double threshold = 85.0;           // failure_percentage: failure share in percent; success_rate: stdev factor
    std::uint32_t minimum_hosts = 5;   // fewer endpoints with enough requests: detected, never enforced
    std::uint32_t request_volume = 50; // an endpoint with fewer requests in the interval is not judged
    bool operator==(const outlier_rate_rule&) const = default;
};

struct outlier_config {
    bool enabled = true;
    std::uint32_t consecutive_5xx = 5;                  // answers classified as failures in a row; 0 = off
    std::uint32_t consecutive_local_origin_failure = 5; // connect, TLS, timeout, reset in a row; 0 = off
    nanos interval = seconds(10);                       // the rate rules' period; ejection levels decay per interval
    nanos base_ejection_time = seconds(30);             // times the endpoint's ejection level
    nanos max_ejection_time = seconds(300);
    nanos max_ejection_time_jitter = seconds(1); // a random 0..jitter added to each ejection
    double max_ejection_percent = 50.0;          // always at least one of >= 2 endpoints, never the last healthy one
    double min_healthy_percent = 50.0;           // below it (or none healthy) the upstream's breaker opens
    outlier_rate_rule failure_percentage{false, 85.0, 5, 50};
    outlier_rate_rule success_rate{false, 1.9, 5, 100};
    // probe: an ejected endpoint is sent GET probe_path every probe_interval; a success returns it early.
    std::string probe_path;
    nanos probe_interval = seconds(1);
    nanos probe_timeout = seconds(1);
    bool operator==(const outlier_config&) const = default;
};

struct upstream_config {
    std::string name;
    std::vector<host_port> endpoints;
    lb_policy load_balancing = lb_policy::round_robin;
    nanos connect_timeout = seconds(1);
    nanos request_timeout = seconds(15);
    nanos resolve_interval = seconds(30);
    pool_config pool;
    routes_config routes;
    std::string host_rewrite; // "" = keep the client's Host
    breaker_config breaker;
    bulkhead_config bulkhead;
    retry_config retries;
    std::vector<fallback_config> fallbacks; // tried in order
    stale_cache_config stale_cache;
    tls_config tls;
    outlier_config outliers;
    streaming_config streaming;
    // The upstream's queue fallback (at most one), or nullptr.
    const fallback_config* queue_fallback() const
    {
        for (const auto& f : fallbacks)
            if (f.kind == fallback_kind::queue)
                return &f;
        return nullptr;
    }
    bool has_stale_fallback() const
    {
        for (const auto& f : fallbacks)
            if (f.kind == fallback_kind::stale)
                return true;
        return false;
    }
};

struct config {
    std::string source_file;
    std::string source_sha256; // of the bytes loaded (load_file; empty for load_string): the reports' config hash
    std::uint32_t workers = 0; // 0 = number of cores
    std::vector<listener_config> listeners;
    admin_config admin;
    limits_config limits;
    forwarding_config forwarding;
    logging_config logging;
    queue_store_config queue_store;
    cluster_config cluster;
    std::vector<upstream_config> upstreams;

    const upstream_config* find_upstream(std::string_view name) const
    {
        for (const auto& u : upstreams)
            if (u.name == name)
                return &u;
        return nullptr;
    }
};

} // namespace breakerbox::config
