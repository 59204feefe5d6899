#include "config/loader.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <unistd.h>

using namespace breakerbox;
using namespace breakerbox::config;

namespace {

env_lookup no_env()
{
    return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

const char* minimal = R"(
listeners:
  - name: main
    address: 127.0.0.1:8080
upstreams:
  svc:
    endpoints: [127.0.0.1:7001]
    routes:
      path_prefix: /svc
)";

load_result load(const std::string& yaml) { return load_string(yaml, "test.yaml", no_env()); }

// One upstream `svc` whose circuit_breaker is `breaker` (a YAML block or flow map).
load_result load_with_breaker(const std::string& breaker)
{
    return load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  svc:
    endpoints: ["127.0.0.1:1"]
    routes: {hosts: [x]}
    circuit_breaker: )" +
                breaker + "\n");
}

// Finds the error about `path`; fails the test when there is none.
const config_error* error_at(const load_result& r, const std::string& path)
{
    for (const auto& e : r.errors)
        if (e.path == path)
            return &e;
    ADD_FAILURE() << "no error for " << path << "; got " << r.errors.size() << " error(s)"
                  << (r.errors.empty() ? "" : ": " + r.errors.front().text());
    return nullptr;
}

} // namespace

TEST(loader, minimal_config_gets_the_documented_defaults)
{
    auto r = load(minimal);
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    const auto& up = r.cfg->upstreams.at(0);
    EXPECT_EQ(up.name, "svc");
    EXPECT_EQ(up.connect_timeout, seconds(1));
    EXPECT_EQ(up.request_timeout, seconds(15));
    EXPECT_EQ(up.breaker.consecutive_failures, 5u);
    EXPECT_EQ(up.breaker.minimum_calls, 20u);
    EXPECT_EQ(up.breaker.open_duration, seconds(5));
    // default failure statuses: 5xx except 501 and 505
    const auto& fs = up.breaker.classify.failure_statuses;
    EXPECT_NE(std::find(fs.begin(), fs.end(), 500u), fs.end());
    EXPECT_NE(std::find(fs.begin(), fs.end(), 503u), fs.end());
    EXPECT_EQ(std::find(fs.begin(), fs.end(), 501u), fs.end());
    EXPECT_EQ(std::find(fs.begin(), fs.end(), 505u), fs.end());
    EXPECT_EQ(r.cfg->limits.max_header_bytes, 16u * 1024);
    EXPECT_EQ(r.cfg->admin.address.port, 9901);
}

TEST(loader, an_explicit_empty_failure_status_list_means_no_status_is_a_failure)
{
    auto r = load_with_breaker("{classify: {failure_statuses: []}}");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    EXPECT_TRUE(r.cfg->upstreams.at(0).breaker.classify.failure_statuses.empty()); // not the default again
}

TEST(loader, upstreams_inherit_defaults_and_may_override)
{
    auto r = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
defaults:
  connect_timeout: 250ms
  request_timeout: 2s
  pool: {max_idle_per_endpoint: 7}
  circuit_breaker:
    consecutive_failures: 3
    half_open: {max_probes: 2}
upstreams:
  a:
    endpoints: [127.0.0.1:1]
    routes: {hosts: [A.example]}
  b:
    endpoints: [127.0.0.1:2]
    request_timeout: 9s
    circuit_breaker:
      half_open: {successes_to_close: 2}
    routes: {hosts: [b]}
)");
    ASSERT_TRUE(r.cfg) << r.errors.front().text();
    const auto& a = r.cfg->upstreams[0];
    const auto& b = r.cfg->upstreams[1];
    EXPECT_EQ(a.connect_timeout, millis(250));
    EXPECT_EQ(a.request_timeout, seconds(2));
    EXPECT_EQ(a.pool.max_idle_per_endpoint, 7u);
    EXPECT_EQ(a.routes.hosts.at(0), "a.example"); // hosts are case-insensitive
    EXPECT_EQ(b.connect_timeout, millis(250));
    EXPECT_EQ(b.request_timeout, seconds(9));
    EXPECT_EQ(b.breaker.consecutive_failures, 3u);
    EXPECT_EQ(b.breaker.half_open_max_probes, 2u);         // inherited inside a nested block
    EXPECT_EQ(b.breaker.half_open_successes_to_close, 2u); // overridden beside it
}

TEST(loader, unknown_keys_are_errors_with_line_and_column)
{
    auto r = load(R"(listeners:
  - name: main
    address: 127.0.0.1:8080
upstreams:
  svc:
    endpoints: [127.0.0.1:7001]
    conect_timeout: 1s
    routes: {path_prefix: /}
)");
    ASSERT_FALSE(r.cfg);
    auto* e = error_at(r, "upstreams.svc.conect_timeout");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->file, "test.yaml");
    EXPECT_EQ(e->line, 7);
    EXPECT_EQ(e->column, 5);
    EXPECT_NE(e->message.find("unknown key"), std::string::npos);
    EXPECT_NE(e->text().find("test.yaml:7:5: upstreams.svc.conect_timeout: unknown key"), std::string::npos);
}

TEST(loader, every_error_is_reported_not_just_the_first)
{
    auto r = load(R"(
workers: lots
listeners:
  - address: 127.0.0.1:99999
limits:
  header_timeout: 10
  max_request_body: 1XB
upstreams:
  svc:
    endpoints: [nohostport]
    connect_timeout: fast
    load_balancing: random
    routes: {path_prefix: svc}
)");
    ASSERT_FALSE(r.cfg);
    error_at(r, "workers");
    error_at(r, "listeners[0].address");
    error_at(r, "limits.header_timeout");
    error_at(r, "limits.max_request_body");
    error_at(r, "upstreams.svc.endpoints[0]");
    error_at(r, "upstreams.svc.connect_timeout");
    error_at(r, "upstreams.svc.load_balancing");
    error_at(r, "upstreams.svc.routes.path_prefix");
    EXPECT_GE(r.errors.size(), 8u);
    for (size_t i = 1; i < r.errors.size(); ++i) // sorted by position
        EXPECT_LE(r.errors[i - 1].line, r.errors[i].line);
}

TEST(loader, invalid_yaml_names_the_position)
{
    auto r = load("listeners: [\n  {name: main\n");
    ASSERT_FALSE(r.cfg);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].message.find("invalid YAML"), std::string::npos);
    EXPECT_GT(r.errors[0].line, 0);
}

TEST(loader, missing_file_is_an_error)
{
    auto r = load_file("/nonexistent/breakerbox.yaml", no_env());
    ASSERT_FALSE(r.cfg);
    EXPECT_NE(r.errors.at(0).text().find("cannot read"), std::string::npos);
}

TEST(loader, structural_errors)
{
    EXPECT_TRUE(error_at(load("listeners: []\nupstreams: {}\n"), "listeners"));
    EXPECT_TRUE(error_at(load("listeners: [{address: '127.0.0.1:1'}]\n"), "upstreams"));
    auto unreachable = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  lonely: {endpoints: ["127.0.0.1:1"]}
)");
    EXPECT_TRUE(error_at(unreachable, "upstreams.lonely.routes"));
    auto dedicated_unknown = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080", upstream: nope}]
upstreams:
  svc: {endpoints: ["127.0.0.1:1"], routes: {hosts: [svc]}}
)");
    EXPECT_TRUE(error_at(dedicated_unknown, "listeners[0].upstream"));
    auto duplicate_host = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  a: {endpoints: ["127.0.0.1:1"], routes: {hosts: [same]}}
  b: {endpoints: ["127.0.0.1:2"], routes: {hosts: [same]}}
)");
    EXPECT_TRUE(error_at(duplicate_host, "upstreams.b.routes.hosts"));
    auto bad_name = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  Bad Name: {endpoints: ["127.0.0.1:1"], routes: {hosts: [x]}}
)");
    EXPECT_TRUE(error_at(bad_name, "upstreams.Bad Name"));
    auto same_address = load(R"(
listeners: [{name: a, address: "127.0.0.1:8080"}, {name: b, address: "127.0.0.1:8080"}]
upstreams:
  svc: {endpoints: ["127.0.0.1:1"], routes: {hosts: [x]}}
)");
    EXPECT_TRUE(error_at(same_address, "listeners[1].address"));
}

TEST(loader, breaker_settings_are_validated)
{
    auto r = load_with_breaker(R"(
      failure_rate: {threshold: 150, window: sliding}
      open_duration: 10s
      max_open_duration: 1s
      half_open: {max_probes: 0}
      classify: {failure_statuses: [500-599, 42]}
      slow_calls: {duration: forever})");
    ASSERT_FALSE(r.cfg);
    error_at(r, "upstreams.svc.circuit_breaker.failure_rate.threshold");
    error_at(r, "upstreams.svc.circuit_breaker.failure_rate.window");
    error_at(r, "upstreams.svc.circuit_breaker.max_open_duration");
    error_at(r, "upstreams.svc.circuit_breaker.half_open.max_probes");
    error_at(r, "upstreams.svc.circuit_breaker.classify.failure_statuses[1]");
    error_at(r, "upstreams.svc.circuit_breaker.slow_calls.duration");
}

TEST(loader, cancel_in_flight_is_off_by_default_and_must_be_a_boolean)
{
    EXPECT_FALSE(load(minimal).cfg->upstreams[0].breaker.cancel_in_flight);
    auto on = load_with_breaker("{cancel_in_flight: true}");
    ASSERT_TRUE(on.cfg) << on.errors.front().text();
    EXPECT_TRUE(on.cfg->upstreams[0].breaker.cancel_in_flight);
    auto bad = load_with_breaker("{cancel_in_flight: sometimes}");
    ASSERT_FALSE(bad.cfg);
    error_at(bad, "upstreams.svc.circuit_breaker.cancel_in_flight");
}

TEST(loader, slow_call_streak_and_in_flight_recording_are_read_and_validated)
{
    const auto plain = load(minimal);
    ASSERT_TRUE(plain.cfg);
    const auto& defaults = plain.cfg->upstreams[0].breaker;
    EXPECT_EQ(defaults.slow_call_consecutive, 0u);
    EXPECT_FALSE(defaults.slow_call_in_flight);
    auto on = load_with_breaker("{slow_calls: {duration: 250ms, consecutive: 4, in_flight: true}}");
    ASSERT_TRUE(on.cfg) << on.errors.front().text();
    const auto& b = on.cfg->upstreams[0].breaker;
    EXPECT_TRUE(b.slow_call_enabled);
    EXPECT_EQ(b.slow_call_duration, millis(250));
    EXPECT_EQ(b.slow_call_consecutive, 4u);
    EXPECT_TRUE(b.slow_call_in_flight);
    auto bad = load_with_breaker("{slow_calls: {consecutive: -1, in_flight: maybe}}");
    ASSERT_FALSE(bad.cfg);
    error_at(bad, "upstreams.svc.circuit_breaker.slow_calls.consecutive");
    error_at(bad, "upstreams.svc.circuit_breaker.slow_calls.in_flight");
}

TEST(loader, active_probe_is_read_and_its_path_validated)
{
    auto ok = load_with_breaker("{half_open: {probe: {path: /healthz, timeout: 250ms}}}");
    ASSERT_TRUE(ok.cfg) << ok.errors.front().text();
    EXPECT_EQ(ok.cfg->upstreams[0].breaker.probe_path, "/healthz");
    EXPECT_EQ(ok.cfg->upstreams[0].breaker.probe_timeout, millis(250));
    EXPECT_TRUE(load(minimal).cfg->upstreams[0].breaker.probe_path.empty()); // off by default

    auto bad = load_with_breaker(R"({half_open: {probe: {path: "health check", timeout: 2m, method: HEAD}}})");
    ASSERT_FALSE(bad.cfg);
    error_at(bad, "upstreams.svc.circuit_breaker.half_open.probe.path");
    error_at(bad, "upstreams.svc.circuit_breaker.half_open.probe.timeout");
    error_at(bad, "upstreams.svc.circuit_breaker.half_open.probe.method");
}

TEST(loader, admin_on_a_public_address_needs_a_token)
{
    std::string yaml = std::string(minimal) + "admin:\n  address: 0.0.0.0:9901\n";
    EXPECT_TRUE(error_at(load(yaml), "admin.address"));
    auto with_token = load(yaml + "  token: s3cret\n");
    EXPECT_TRUE(with_token.cfg);
}

TEST(loader, environment_variables_are_substituted_with_errors_located)
{
    env_lookup env = [](const std::string& n) -> std::optional<std::string> {
        if (n == "UPSTREAM")
            return "127.0.0.1:7009";
        return std::nullopt;
    };
    auto ok = load_string(R"(
listeners: [{name: main, address: "127.0.0.1:${PORT:-8081}"}]
upstreams:
  svc: {endpoints: ["${UPSTREAM}"], routes: {hosts: [x]}}
)",
                          "env.yaml", env);
    ASSERT_TRUE(ok.cfg);
    EXPECT_EQ(ok.cfg->listeners[0].address.port, 8081);
    EXPECT_EQ(ok.cfg->upstreams[0].endpoints[0].port, 7009);
    auto missing = load_string(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  svc: {endpoints: ["${NOT_SET}"], routes: {hosts: [x]}}
)",
                               "env.yaml", env);
    auto* e = error_at(missing, "upstreams.svc.endpoints[0]");
    ASSERT_TRUE(e);
    EXPECT_NE(e->message.find("NOT_SET"), std::string::npos);
}

namespace breakerbox::config {
namespace {

// One upstream `pay` with the given tls block (a flow map) and endpoints.
load_result load_with_tls(const std::string& tls, const std::string& endpoints = "[\"127.0.0.1:8443\"]")
{
    return load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n"
                       "upstreams:\n"
                       "  pay:\n"
                       "    endpoints: " +
                           endpoints +
                           "\n"
                           "    routes: {hosts: [pay]}\n"
                           "    tls: " +
                           tls + "\n",
                       "tls.yaml", [](const std::string&) { return std::optional<std::string>(); });
}

TEST(loader_tls, every_tls_error_names_its_key)
{
    struct bad_case {
        const char* tls;
        const char* endpoints;
        const char* path;
        const char* says;
    };
    const bad_case cases[] = {
        {"{ca_file: /nonexistent/ca.pem}", "[\"127.0.0.1:8443\"]", "upstreams.pay.tls.ca_file",
         "cannot read /nonexistent/ca.pem"},
        {"{verify: false, client_certificate: /x.pem}", "[\"127.0.0.1:8443\"]", "upstreams.pay.tls",
         "both client_certificate and client_key"},
        {"{verify: false}", "[\"a.example:443\", \"b.example:443\"]", "upstreams.pay.tls.server_name", "different hosts"},
        {"{verify: false, min_version: \"1.1\"}", "[\"127.0.0.1:8443\"]", "upstreams.pay.tls.min_version", "expected 1.2 or 1.3"},
        {"{verify: maybe}", "[\"127.0.0.1:8443\"]", "upstreams.pay.tls.verify", "expected true or false"},
        {"{sni: x}", "[\"127.0.0.1:8443\"]", "upstreams.pay.tls.sni", "unknown key"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.tls);
        auto r = load_with_tls(c.tls, c.endpoints);
        EXPECT_FALSE(r.cfg);
        const auto* e = error_at(r, c.path);
        ASSERT_TRUE(e);
        EXPECT_NE(e->message.find(c.says), std::string::npos) << e->message;
        EXPECT_GT(e->line, 0);
    }
}

TEST(loader_tls, an_empty_file_is_an_error_not_a_silent_absence)
{
    char path[] = "/tmp/breakerbox-empty-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    auto r = load_with_tls(std::string("{ca_file: ") + path + ", server_name: localhost}");
    unlink(path);
    EXPECT_FALSE(r.cfg);
    const auto* e = error_at(r, "upstreams.pay.tls.ca_file");
    ASSERT_TRUE(e);
    EXPECT_NE(e->message.find("is empty"), std::string::npos) << e->message;
}

TEST(loader_tls, an_inherited_block_is_reported_where_it_is_written_and_once)
{
    auto r = load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n"
                         "defaults:\n"
                         "  tls: {ca_file: /nonexistent/ca.pem}\n"
                         "upstreams:\n"
                         "  a: {endpoints: [\"127.0.0.1:1\"], routes: {hosts: [a]}}\n"
                         "  b: {endpoints: [\"127.0.0.1:2\"], routes: {hosts: [b]}}\n",
                         "tls.yaml", [](const std::string&) { return std::optional<std::string>(); });
    EXPECT_FALSE(r.cfg);
    const auto* e = error_at(r, "defaults.tls.ca_file");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->line, 3);
    EXPECT_EQ(
        std::count_if(r.errors.begin(), r.errors.end(), [](const config_error& x) { return x.path == "defaults.tls.ca_file"; }),
        1);
}

TEST(loader_tls, the_name_defaults_to_the_endpoints_host_and_an_ip_is_verified_as_an_ip)
{
    auto by_ip = load_with_tls("{verify: false}");
    ASSERT_TRUE(by_ip.cfg) << by_ip.errors.front().text();
    const auto& t = by_ip.cfg->upstreams[0].tls;
    EXPECT_TRUE(t.enabled);
    EXPECT_EQ(t.server_name, "127.0.0.1");
    EXPECT_TRUE(t.server_name_is_ip);
    EXPECT_EQ(t.min_version, tls_version::v1_2);
    EXPECT_TRUE(t.session_reuse);

    auto by_name = load_with_tls("{verify: false, server_name: api.example}");
    ASSERT_TRUE(by_name.cfg);
    EXPECT_FALSE(by_name.cfg->upstreams[0].tls.server_name_is_ip);

    auto off = load_with_tls("{enabled: false, ca_file: /nonexistent}");
    ASSERT_TRUE(off.cfg); // a disabled block's files are not read
    EXPECT_FALSE(off.cfg->upstreams[0].tls.enabled);
}

} // namespace
} // namespace breakerbox::config

namespace {

load_result load_with_outliers(const std::string& block)
{
    return load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
defaults:
  outlier_detection: {consecutive_5xx: 7}
upstreams:
  svc:
    endpoints: ["127.0.0.1:1", "127.0.0.1:2"]
    routes: {hosts: [x]}
    outlier_detection: )" +
                block + "\n");
}

} // namespace

TEST(loader_outliers, defaults_are_the_documented_ones)
{
    const auto r = load(minimal);
    ASSERT_TRUE(r.cfg);
    const auto& o = r.cfg->upstreams[0].outliers;
    EXPECT_TRUE(o.enabled);
    EXPECT_EQ(o.consecutive_5xx, 5u);
    EXPECT_EQ(o.consecutive_local_origin_failure, 5u);
    EXPECT_EQ(o.base_ejection_time, seconds(30));
    EXPECT_EQ(o.max_ejection_time, seconds(300));
    EXPECT_EQ(o.max_ejection_percent, 50.0);
    EXPECT_EQ(o.min_healthy_percent, 50.0);
    EXPECT_FALSE(o.failure_percentage.enabled);
    EXPECT_FALSE(o.success_rate.enabled);
    EXPECT_TRUE(o.probe_path.empty());
}

TEST(loader_outliers, blocks_are_read_on_top_of_the_defaults_block)
{
    const auto r = load_with_outliers(R"(
      base_ejection_time: 2s
      failure_percentage: {threshold: 60, minimum_hosts: 2}
      success_rate: {stdev_factor: 1.5}
      probe: {path: /ping, interval: 500ms})");
    ASSERT_TRUE(r.cfg) << r.errors.front().text();
    const auto& o = r.cfg->upstreams[0].outliers;
    EXPECT_EQ(o.consecutive_5xx, 7u); // from defaults
    EXPECT_EQ(o.base_ejection_time, seconds(2));
    EXPECT_TRUE(o.failure_percentage.enabled);
    EXPECT_EQ(o.failure_percentage.threshold, 60.0);
    EXPECT_EQ(o.failure_percentage.minimum_hosts, 2u);
    EXPECT_EQ(o.failure_percentage.request_volume, 50u);
    EXPECT_TRUE(o.success_rate.enabled);
    EXPECT_EQ(o.success_rate.threshold, 1.5);
    EXPECT_EQ(o.success_rate.request_volume, 100u);
    EXPECT_EQ(o.probe_path, "/ping");
    EXPECT_EQ(o.probe_interval, millis(500));
}

TEST(loader_outliers, every_error_names_its_key)
{
    const auto r = load_with_outliers(R"(
      consecutive_5xx: -1
      max_ejection_percent: 150
      min_healthy_percent: lots
      base_ejection_time: 10s
      max_ejection_time: 5s
      failure_percentage: {threshold: 0, minimum_hosts: 0}
      success_rate: {stdev_factor: 2, request_volume: none}
      probe: {path: "no slash", timeout: 2m}
      panic_threshold: 50)");
    ASSERT_FALSE(r.cfg);
    for (const char* key :
         {"consecutive_5xx", "max_ejection_percent", "min_healthy_percent", "max_ejection_time", "failure_percentage.threshold",
          "failure_percentage.minimum_hosts", "success_rate.request_volume", "probe.path", "probe.timeout", "panic_threshold"})
        error_at(r, std::string("upstreams.svc.outlier_detection.") + key);
}

// Issue 30 §8: configuration errors say what is wrong, where, and what was probably meant.
TEST(loader_errors, a_missing_required_key_is_named_at_its_mapping)
{
    auto r = load(R"(
listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams:
  svc:
    routes: {hosts: [x]}
    connect_timeout: 1s
)");
    ASSERT_FALSE(r.cfg);
    const auto* e = error_at(r, "upstreams.svc.endpoints");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->message, "missing required key \"endpoints\"");
    EXPECT_EQ(e->line, 5); // the upstream's own mapping, not the key after it
    const auto no_listeners = load("upstreams: {svc: {endpoints: [\"127.0.0.1:1\"], routes: {hosts: [x]}}}\n");
    const auto* l = error_at(no_listeners, "listeners");
    ASSERT_TRUE(l);
    EXPECT_EQ(l->message, "missing required key \"listeners\"");
}

TEST(loader_errors, a_ratio_where_a_percentage_is_meant_is_refused_everywhere)
{
    struct row {
        std::string breaker_or_outliers;
        std::string path;
    } rows[] = {
        {"circuit_breaker: {failure_rate: {threshold: 0.5}}", "upstreams.svc.circuit_breaker.failure_rate.threshold"},
        {"circuit_breaker: {slow_calls: {rate_threshold: 0.25}}", "upstreams.svc.circuit_breaker.slow_calls.rate_threshold"},
        {"outlier_detection: {failure_percentage: {threshold: 0.5}}",
         "upstreams.svc.outlier_detection.failure_percentage.threshold"},
        {"outlier_detection: {max_ejection_percent: 0.3}", "upstreams.svc.outlier_detection.max_ejection_percent"},
        {"outlier_detection: {min_healthy_percent: 0.5}", "upstreams.svc.outlier_detection.min_healthy_percent"},
    };
    for (const auto& [block, path] : rows) {
        SCOPED_TRACE(block);
        auto r = load("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\nupstreams:\n  svc:\n"
                      "    endpoints: [\"127.0.0.1:1\"]\n    routes: {hosts: [x]}\n    " +
                      block + "\n");
        ASSERT_FALSE(r.cfg);
        const auto* e = error_at(r, path);
        ASSERT_TRUE(e);
        EXPECT_NE(e->message.find("looks like a ratio"), std::string::npos) << e->message;
    }
    auto explicit_percent = load_with_breaker("{failure_rate: {threshold: \"0.5%\"}}");
    ASSERT_TRUE(explicit_percent.cfg) << explicit_percent.errors.front().text();
    EXPECT_DOUBLE_EQ(explicit_percent.cfg->upstreams[0].breaker.failure_rate_threshold, 0.5);
    auto fifty = load_with_breaker("{failure_rate: {threshold: 50}}");
    ASSERT_TRUE(fifty.cfg);
    EXPECT_DOUBLE_EQ(fifty.cfg->upstreams[0].breaker.failure_rate_threshold, 50.0);
}

TEST(loader_errors, a_file_that_cannot_be_read_says_why)
{
    auto r = load_file("/nonexistent/breakerbox.yaml", no_env());
    ASSERT_FALSE(r.cfg);
    EXPECT_NE(r.errors.at(0).text().find("cannot read the file: No such file or directory"), std::string::npos)
        << r.errors.at(0).text();
}

TEST(loader_errors, an_unknown_key_suggests_the_nearest_known_one)
{
    auto r = load_with_breaker("{consecutive_failure: 3}");
    const auto* e = error_at(r, "upstreams.svc.circuit_breaker.consecutive_failure");
    ASSERT_TRUE(e);
    EXPECT_NE(e->message.find("did you mean \"consecutive_failures\"?"), std::string::npos) << e->message;
    auto far = load_with_breaker("{banana: 3}");
    const auto* f = error_at(far, "upstreams.svc.circuit_breaker.banana");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->message.find("did you mean"), std::string::npos) << f->message;
}
