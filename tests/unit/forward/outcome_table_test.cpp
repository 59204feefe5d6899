// The outcome table against its users and its documentation: every reason's row drives the trigger,
// the counter label, the breaker's class and the retry rule, and docs/architecture.md shows exactly
// this table (a change to either without the other fails here).
#include "forward/outcome_table.hpp"
#include "forward/retry_policy.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace breakerbox {
namespace {

using forward::rule_of;
using forward::trigger_of;
using config::fallback_trigger;

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The lines between the document's markers.
std::string documented_table(const std::string& doc)
{
    const std::string begin = "<!-- outcome-table: begin (rendered by forward/outcome_table.cpp; checked) -->\n";
    const std::string end = "<!-- outcome-table: end -->";
    const auto b = doc.find(begin);
    const auto e = doc.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b)
        return "(markers not found)";
    return doc.substr(b + begin.size(), e - b - begin.size());
}

TEST(outcome_table, docs_architecture_shows_this_table)
{
    const auto doc = read_file(std::string(BREAKERBOX_SOURCE_DIR) + "/docs/architecture.md");
    ASSERT_FALSE(doc.empty());
    EXPECT_EQ(documented_table(doc), forward::render_outcome_table_markdown())
        << "docs/architecture.md's outcome table differs from forward/outcome_table.hpp; the rendering above is the table";
}

// The disagreements the structure review found, as rows: each refusal has one trigger and one label.
TEST(outcome_table, every_endpoint_ejected_is_its_own_reason_answered_as_the_upstream_unavailable)
{
    const auto& r = rule_of(proxy_error::no_healthy_endpoint);
    EXPECT_EQ(r.trigger, fallback_trigger::circuit_open);
    EXPECT_EQ(r.counted.rejection, runtime::rejection_reason::no_healthy_endpoint);
    EXPECT_EQ(rule_of(proxy_error::no_endpoint).counted.rejection, runtime::rejection_reason::no_endpoint);
    EXPECT_EQ(http_status(proxy_error::no_healthy_endpoint), 503u);
}

TEST(outcome_table, limits_other_than_the_bulkhead_fire_limit_reached)
{
    for (auto e : {proxy_error::connection_limit, proxy_error::stream_limit, proxy_error::tunnel_limit})
        EXPECT_EQ(trigger_of(e, false), fallback_trigger::limit_reached) << token(e);
    for (auto e : {proxy_error::bulkhead_full, proxy_error::queue_timeout})
        EXPECT_EQ(trigger_of(e, false), fallback_trigger::bulkhead_full) << token(e);
}

TEST(outcome_table, an_answer_fires_upstream_error_only_for_a_failure_status)
{
    EXPECT_EQ(trigger_of(proxy_error::ok, true), fallback_trigger::upstream_error);
    EXPECT_EQ(trigger_of(proxy_error::ok, false), std::nullopt);
}

// Only the upstream's own outcomes reach the breaker, outlier detection and the cluster's probe.
TEST(outcome_table, upstream_decided_exactly_for_answers_and_upstream_failures)
{
    for (const auto& r : forward::outcome_table) {
        const bool upstream = r.origin == forward::reason_origin::upstream;
        EXPECT_EQ(forward::upstream_decided(r.reason), upstream || r.origin == forward::reason_origin::answer) << token(r.reason);
        // An upstream failure always has a breaker class, a label and a trigger; nothing else has a class.
        EXPECT_EQ(r.breaker != resilience::failure_class::none, upstream) << token(r.reason);
        if (upstream) {
            EXPECT_EQ(r.counted.kind, forward::counted_as::family::outcome) << token(r.reason);
            EXPECT_TRUE(r.trigger) << token(r.reason);
        }
    }
}

TEST(outcome_table, the_client_side_is_counted_as_client_gone_and_fires_nothing)
{
    for (const auto& r : forward::outcome_table) {
        if (r.origin != forward::reason_origin::client)
            continue;
        EXPECT_EQ(r.counted.outcome, runtime::upstream_outcome::client_gone) << token(r.reason);
        EXPECT_FALSE(r.trigger) << token(r.reason);
    }
}

TEST(outcome_table, retry_rules_follow_the_rows)
{
    config::retry_config rc;
    rc.on_connect_failure = true;
    rc.on_reset = false;
    rc.on_timeout = true;
    const http::response none;
    EXPECT_TRUE(forward::outcome_retryable(proxy_error::upstream_tls_reset, none, rc));
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::upstream_tls_verify_failed, none, rc)); // the same certificate again
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::upstream_reset, none, rc));
    EXPECT_TRUE(forward::outcome_retryable(proxy_error::upstream_timeout, none, rc));
    EXPECT_FALSE(forward::outcome_retryable(proxy_error::no_healthy_endpoint, none, rc));
}

TEST(outcome_table, the_breaker_class_decides_with_the_classify_switches)
{
    config::classification_config cc;
    cc.connection_reset = false;
    const resilience::outcome_classifier classifier(cc);
    const auto of = [&](proxy_error e) { return classifier.of_failure(rule_of(e).breaker); };
    EXPECT_EQ(of(proxy_error::upstream_tls_handshake_failed), resilience::outcome::failure);
    EXPECT_EQ(of(proxy_error::upstream_reset), resilience::outcome::ignored);
    EXPECT_EQ(of(proxy_error::circuit_open), resilience::outcome::ignored);
    EXPECT_EQ(of(proxy_error::upstream_response_too_large), resilience::outcome::failure);
}

} // namespace
} // namespace breakerbox
