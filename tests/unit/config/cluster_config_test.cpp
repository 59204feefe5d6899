// The cluster block and scope: cluster — defaults, the password sources, and every refusal naming its key.
#include "config/loader.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace breakerbox::config {
namespace {

load_result load_cluster(const std::string& cluster, const std::string& scope = "cluster",
                         const std::map<std::string, std::string>& env = {})
{
    return load_string("listeners: [{name: main, address: \"127.0.0.1:8080\"}]\n" + cluster +
                           "upstreams:\n"
                           "  svc:\n"
                           "    endpoints: [\"127.0.0.1:1\"]\n"
                           "    routes: {hosts: [svc]}\n"
                           "    circuit_breaker: {scope: " +
                           scope + "}\n",
                       "/tmp/cluster.yaml", [env](const std::string& name) -> std::optional<std::string> {
                           auto it = env.find(name);
                           return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
                       });
}

bool has_error_at(const load_result& r, const std::string& path)
{
    for (const auto& e : r.errors)
        if (e.path == path)
            return true;
    return false;
}

TEST(cluster_config, defaults_as_documented)
{
    auto r = load_cluster("cluster: {redis: \"unix:/run/redis.sock\"}\n");
    ASSERT_TRUE(r.cfg) << (r.errors.empty() ? "" : r.errors.front().text());
    const auto& c = r.cfg->cluster;
    EXPECT_TRUE(c.enabled);
    EXPECT_EQ(c.sync_interval, millis(500));
    EXPECT_EQ(c.quorum, 2u);
    EXPECT_EQ(c.replica_timeout, 4 * c.sync_interval);
    EXPECT_EQ(c.command_timeout, millis(250));
    EXPECT_EQ(c.key_prefix, "breakerbox");
    EXPECT_TRUE(c.password.empty());
    EXPECT_EQ(r.cfg->upstreams[0].breaker.scope, breaker_scope::cluster);
}

TEST(cluster_config, the_password_comes_from_the_environment_or_a_file)
{
    auto from_env = load_cluster("cluster: {redis: \"redis:6379\", password_env: RP}\n", "cluster", {{"RP", "s3cret"}});
    ASSERT_TRUE(from_env.cfg);
    EXPECT_EQ(from_env.cfg->cluster.password, "s3cret");
    {
        std::ofstream f("/tmp/bbx-cluster-password");
        f << "from-file\n";
    }
    auto from_file = load_cluster("cluster: {redis: \"127.0.0.1:6379\", password_file: /tmp/bbx-cluster-password}\n");
    ASSERT_TRUE(from_file.cfg);
    EXPECT_EQ(from_file.cfg->cluster.password, "from-file"); // the trailing newline dropped
    std::remove("/tmp/bbx-cluster-password");
}

TEST(cluster_config, every_refusal_names_its_key)
{
    struct bad_case {
        std::string cluster;
        std::string path;
    } cases[] = {
        {"cluster: {quorum: 2}\n", "cluster.redis"},
        {"cluster: {redis: \"nowhere\"}\n", "cluster.redis"},
        {"cluster: {redis: \"unix:/s\", quorum: 0}\n", "cluster.quorum"},
        {"cluster: {redis: \"unix:/s\", sync_interval: 1ms}\n", "cluster.sync_interval"},
        {"cluster: {redis: \"unix:/s\", replica_timeout: 500ms}\n", "cluster.replica_timeout"},
        {"cluster: {redis: \"unix:/s\", key_prefix: \"a{b}\"}\n", "cluster.key_prefix"},
        {"cluster: {redis: \"unix:/s\", replica_id: \"a b\"}\n", "cluster.replica_id"},
        {"cluster: {redis: \"unix:/s\", password_env: NOT_SET}\n", "cluster.password_env"},
        {"cluster: {redis: \"unix:/s\", password_file: /nonexistent/pw}\n", "cluster.password_file"},
        {"cluster: {redis: \"unix:/s\", colour: blue}\n", "cluster.colour"},
        {"", "upstreams.svc.circuit_breaker.scope"}, // scope: cluster without a cluster block
    };
    for (const auto& c : cases) {
        auto r = load_cluster(c.cluster);
        EXPECT_FALSE(r.cfg) << c.cluster;
        EXPECT_TRUE(has_error_at(r, c.path)) << c.cluster << " → " << (r.errors.empty() ? "no error" : r.errors.front().text());
    }
    auto bad_scope = load_cluster("cluster: {redis: \"unix:/s\"}\n", "global");
    EXPECT_TRUE(has_error_at(bad_scope, "upstreams.svc.circuit_breaker.scope"));
}

} // namespace
} // namespace breakerbox::config
