// Every way a call can end, once: for each proxy_error, where it comes from, what the breaker makes of
// it, whether a retry may follow, which fallback trigger it fires and under which counter label it is
// counted. The forwarder, the retry rules, the breaker's classification, the outlier detector and the
// cluster's probe accounting all read this one table (no switch of their own), and
// docs/architecture.md's "Outcomes and reasons in one table" is its rendering
// (tests/unit/forward/outcome_table_test.cpp compares them).
// The answer's HTTP status and token stay in core/error.hpp's list.
#pragma once
#include "config/config.hpp"
#include "core/error.hpp"
#include "resilience/outcome.hpp"
#include "runtime/request_stats.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace breakerbox::forward {

// Where a reason comes from.
enum class reason_origin : std::uint8_t {
    answer,   // ok: the upstream answered; its status decides the rest
    upstream, // the upstream (or the way to it) failed: an upstream outcome for the breaker and outlier detection
    local,    // refused here before the upstream had the request (capacity, the circuit, draining)
    client,   // the client's side: it left, stalled or sent something invalid — nobody's outcome
    session,  // answered by the session before a forwarder ever runs (routing, parsing, connection limits)
};

// Which `retries.retry_on` entry allows another attempt after this reason (never: none does).
enum class retry_on : std::uint8_t { never, connect_failure, reset, timeout };

// The counter a reason is counted under: an upstream outcome (`requests`, label `outcome`), a local
// rejection (`rejections`, label `reason`), or none. circuit_open is counted by the kind of refusal
// (open, half-open full, ramp, the cluster's) — `by_admission`.
struct counted_as {
    enum class family : std::uint8_t { none, outcome, rejection, by_admission } kind = family::none;
    runtime::upstream_outcome outcome{};
    runtime::rejection_reason rejection{};
};

struct reason_rule {
    proxy_error reason;
    reason_origin origin;
    resilience::failure_class breaker; // none: never an upstream failure
    retry_on retry;
    std::optional<config::fallback_trigger> trigger;
    counted_as counted;
};

namespace outcome_rows {
using config::fallback_trigger;
using resilience::failure_class;
using runtime::rejection_reason;
using runtime::upstream_outcome;
using O = reason_origin;
using F = counted_as::family;
constexpr counted_as none{};
constexpr counted_as as_outcome(upstream_outcome o) { return {F::outcome, o, {}}; }
constexpr counted_as as_rejection(rejection_reason r) { return {F::rejection, {}, r}; }
constexpr counted_as client_gone = as_outcome(upstream_outcome::client_gone);
constexpr std::nullopt_t no_trigger = std::nullopt;

// In proxy_error's order (checked below).
inline constexpr reason_rule table[]{
    {proxy_error::ok, O::answer, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::no_route, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::method_not_allowed, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::bad_request, O::client, failure_class::none, retry_on::never, no_trigger, client_gone},
    {proxy_error::header_too_large, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::uri_too_long, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::body_too_large, O::client, failure_class::none, retry_on::never, no_trigger, client_gone},
    {proxy_error::request_timeout, O::client, failure_class::none, retry_on::never, no_trigger, client_gone},
    {proxy_error::upstream_connect_failed, O::upstream, failure_class::connect_failure, retry_on::connect_failure,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::connect_failed)},
    {proxy_error::upstream_connect_timeout, O::upstream, failure_class::connect_timeout, retry_on::connect_failure,
     fallback_trigger::timeout, as_outcome(upstream_outcome::connect_timeout)},
    // TLS failures are connect-class: no request was sent. A failed verification is deterministic (the
    // same certificate again): never retried.
    {proxy_error::upstream_tls_handshake_failed, O::upstream, failure_class::connect_failure, retry_on::connect_failure,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::tls_handshake_failed)},
    {proxy_error::upstream_tls_verify_failed, O::upstream, failure_class::connect_failure, retry_on::never,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::tls_verify_failed)},
    {proxy_error::upstream_tls_reset, O::upstream, failure_class::connect_failure, retry_on::connect_failure,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::tls_reset)},
    {proxy_error::upstream_timeout, O::upstream, failure_class::request_timeout, retry_on::timeout, fallback_trigger::timeout,
     as_outcome(upstream_outcome::timeout)},
    {proxy_error::upstream_reset, O::upstream, failure_class::connection_reset, retry_on::reset, fallback_trigger::upstream_error,
     as_outcome(upstream_outcome::reset)},
    {proxy_error::upstream_invalid_response, O::upstream, failure_class::invalid_response, retry_on::never,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::invalid_response)},
    {proxy_error::upstream_response_too_large, O::upstream, failure_class::invalid_response, retry_on::never,
     fallback_trigger::upstream_error, as_outcome(upstream_outcome::invalid_response)},
    // Only what a fallback replaced: the failure status itself was classified and counted as an answer.
    {proxy_error::upstream_failure_status, O::answer, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::no_endpoint, O::local, failure_class::none, retry_on::never, fallback_trigger::upstream_error,
     as_rejection(rejection_reason::no_endpoint)},
    // Every endpoint is out of load balancing: the upstream is unavailable as a whole, as when its circuit is open.
    {proxy_error::no_healthy_endpoint, O::local, failure_class::none, retry_on::never, fallback_trigger::circuit_open,
     as_rejection(rejection_reason::no_healthy_endpoint)},
    {proxy_error::circuit_open,
     O::local,
     failure_class::none,
     retry_on::never,
     fallback_trigger::circuit_open,
     {F::by_admission, {}, {}}},
    {proxy_error::bulkhead_full, O::local, failure_class::none, retry_on::never, fallback_trigger::bulkhead_full,
     as_rejection(rejection_reason::bulkhead_full)},
    {proxy_error::queue_timeout, O::local, failure_class::none, retry_on::never, fallback_trigger::bulkhead_full,
     as_rejection(rejection_reason::queue_timeout)},
    {proxy_error::connection_limit, O::local, failure_class::none, retry_on::never, fallback_trigger::limit_reached,
     as_rejection(rejection_reason::connection_limit)},
    {proxy_error::stream_limit, O::local, failure_class::none, retry_on::never, fallback_trigger::limit_reached,
     as_rejection(rejection_reason::stream_limit)},
    {proxy_error::tunnel_limit, O::local, failure_class::none, retry_on::never, fallback_trigger::limit_reached,
     as_rejection(rejection_reason::tunnel_limit)},
    // Draining: no new tunnels. Not a capacity refusal a fallback could stand in for.
    {proxy_error::upgrade_refused, O::local, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::too_many_connections, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::not_implemented, O::session, failure_class::none, retry_on::never, no_trigger, none},
    {proxy_error::client_closed, O::client, failure_class::none, retry_on::never, no_trigger, client_gone},
};
} // namespace outcome_rows

inline constexpr auto& outcome_table = outcome_rows::table;

static_assert(
    [] {
        for (std::size_t i = 0; i < std::size(outcome_table); ++i)
            if (static_cast<std::size_t>(outcome_table[i].reason) != i)
                return false;
        return static_cast<std::size_t>(proxy_error::client_closed) + 1 == std::size(outcome_table);
    }(),
    "outcome_table has one row per proxy_error, in the enum's order");

constexpr const reason_rule& rule_of(proxy_error e) noexcept { return outcome_table[static_cast<std::size_t>(e)]; }

// The fallback trigger of a call that ended with `e`; an answer fires upstream_error when its status
// was classified as a failure.
constexpr std::optional<config::fallback_trigger> trigger_of(proxy_error e, bool failure_status) noexcept
{
    if (e == proxy_error::ok)
        return failure_status ? std::optional(config::fallback_trigger::upstream_error) : std::nullopt;
    return rule_of(e).trigger;
}

// The `requests{outcome}` label of an attempt the upstream (or the way to it) ended.
constexpr runtime::upstream_outcome outcome_label(proxy_error e, resilience::outcome classified) noexcept
{
    if (e == proxy_error::ok)
        return classified == resilience::outcome::success   ? runtime::upstream_outcome::success
               : classified == resilience::outcome::failure ? runtime::upstream_outcome::status_failure
                                                            : runtime::upstream_outcome::ignored;
    const auto& c = rule_of(e).counted;
    return c.kind == counted_as::family::outcome ? c.outcome : runtime::upstream_outcome::invalid_response;
}

// Whether the call ended with an outcome of the upstream's (an answer or an upstream failure), rather
// than a refusal here or the client's doing: only those feed the breaker, outlier detection and the
// cluster's probe.
constexpr bool upstream_decided(proxy_error e) noexcept
{
    const auto o = rule_of(e).origin;
    return o == reason_origin::answer || o == reason_origin::upstream;
}

// Counts a refusal or a client's end under its label (an upstream outcome is counted when recorded).
inline void count_ended(runtime::upstream_stats& stats, proxy_error e) noexcept
{
    const auto& c = rule_of(e).counted;
    if (c.kind == counted_as::family::rejection)
        stats.count(c.rejection);
    else if (c.kind == counted_as::family::outcome)
        stats.count(c.outcome);
}

// docs/architecture.md's outcome table, rendered from this one (markdown rows, one per reason the
// forwarder can end a call with; the test compares the document with it).
std::string render_outcome_table_markdown();

} // namespace breakerbox::forward
