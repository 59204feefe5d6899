#include "forward/attempt_outcome.hpp"

#include "forward/outcome_table.hpp"

namespace breakerbox::forward {

using runtime::rejection_reason;
using runtime::retry_result;
using runtime::upstream_handle;
using runtime::upstream_outcome;

namespace {

constexpr rejection_reason rejection_label(resilience::admission a) noexcept
{
    switch (a) {
    case resilience::admission::rejected_probes: return rejection_reason::half_open_full;
    case resilience::admission::rejected_ramp: return rejection_reason::recovery_ramp;
    default: return rejection_reason::circuit_open;
    }
}

// The same outcome for the endpoint that served the attempt (outlier detection). When too few
// endpoints are left healthy, the upstream's circuit opens, so the fallback answers.
void judge_endpoint(upstream_handle& up, upstream::endpoint_health& health, proxy_error error, resilience::outcome classified,
                    nanos now)
{
    auto& detector = *up.shared.outliers; // a record exists only with a detector
    auto verdict =
        detector.record(health,
                        resilience::endpoint_outcome_of(error == proxy_error::ok, classified == resilience::outcome::failure,
                                                        classified == resilience::outcome::ignored),
                        now);
    if (verdict.open_upstream) // rare: endpoints just turned unhealthy
        resilience::apply_outlier_verdict(up.shared, std::move(verdict), now);
}

} // namespace

call_result refused(upstream_handle& up, proxy_error reason, std::string detail)
{
    count_ended(up.stats, reason);
    return {reason, std::move(detail)};
}

call_result bulkhead_refusal(upstream_handle& up, bulkhead_result admitted)
{
    const auto& name = up.cfg.name;
    switch (admitted) {
    case bulkhead_result::client_gone: return refused(up, proxy_error::client_closed, "the client left while queued");
    case bulkhead_result::full:
        return refused(up, proxy_error::bulkhead_full, "the bulkhead of " + name + " and its queue are full");
    case bulkhead_result::queue_timeout:
    default: return refused(up, proxy_error::queue_timeout, "no bulkhead slot of " + name + " within the queue timeout");
    }
}

call_result circuit_refused(upstream_handle& up, resilience::admission kind, std::string detail)
{
    up.stats.count(rejection_label(kind));
    call_result r{proxy_error::circuit_open, std::move(detail)};
    r.rejection = kind;
    return r;
}

call_result cluster_refused(upstream_handle& up)
{
    up.stats.count(rejection_reason::cluster_open);
    call_result r{proxy_error::circuit_open, {}};
    r.rejection = resilience::admission::rejected_open;
    r.by_cluster = true;
    return r;
}

std::optional<call_result> rejected_outright(upstream_handle& up, nanos now)
{
    const auto kind = up.shared.breaker.certain_rejection(now);
    if (!kind)
        return std::nullopt;
    return circuit_refused(up, *kind);
}

call_result refused_by_breaker(upstream_handle& up, attempt_state& st, resilience::admission kind, std::string detail)
{
    if (st.attempt > 1) {
        up.stats.count(retry_result::stopped_by_breaker);
        return std::move(st.last);
    }
    return circuit_refused(up, kind, std::move(detail));
}

call_result no_endpoint(upstream_handle& up, nanos now)
{
    const auto& name = up.cfg.name;
    if (up.local.all_kept_out(now))
        return refused(up, proxy_error::no_healthy_endpoint, "every endpoint of " + name + " is ejected by outlier detection");
    if (up.local.has_endpoints())
        return refused(up, proxy_error::connection_limit,
                       "every endpoint of " + name + " is at pool.max_connections_per_endpoint");
    return refused(up, proxy_error::no_endpoint, "no resolved endpoint for " + name);
}

std::optional<call_result> ended_from_outside(upstream_handle& up, attempt_state& st, exchange_result& result,
                                              const resilience::breaker_permit& permit)
{
    if (upstream_decided(result.error))
        return std::nullopt;
    if (permit.slow_recorded() && (result.error == proxy_error::client_closed || result.error == proxy_error::circuit_open))
        up.stats.slow.add(); // ended from outside after the sweep had recorded it as slow
    if (result.error == proxy_error::circuit_open)
        return refused_by_breaker(up, st, resilience::admission::rejected_open, std::move(result.detail));
    // The permit is released unrecorded: the client's doing (gone, a stalled or invalid upload) or a
    // local refusal is nobody's outcome.
    return refused(up, result.error, std::move(result.detail));
}

resilience::outcome record_attempt(upstream_handle& up, upstream::endpoint_slot& ep, const exchange_result& result,
                                   const http::response& response, resilience::breaker_permit& permit, nanos attempt_start,
                                   attempt_state& st, const clock& clk)
{
    auto& shared = up.shared;
    auto& stats = up.stats;
    const auto& breaker_cfg = up.cfg.breaker;
    const nanos finished = result.finished ? result.finished : clk.now();
    const auto classified = result.error == proxy_error::ok ? shared.classifier.of_status(response.result_int())
                                                            : shared.classifier.of_failure(rule_of(result.error).breaker);
    if (result.upload_took) { // the upload's time is not the upstream's: slowness is measured after it
        attempt_start += result.upload_took;
        permit.measure_from(permit.get().started + result.upload_took);
    }
    permit.complete(classified, finished, st.streamed_head); // a streamed head: its body is still to come
    if (ep.health)
        judge_endpoint(up, *ep.health, result.error, classified, finished);
    stats.count(outcome_label(result.error, classified));
    stats.observe_duration(finished - attempt_start);
    if (breaker_cfg.slow_call_enabled && finished - attempt_start >= breaker_cfg.slow_call_duration)
        stats.slow.add();
    if (st.retry_slot.held()) { // this attempt was a retry: it is over
        st.retry_slot.release();
        if (result.error == proxy_error::ok && classified != resilience::outcome::failure)
            stats.count(retry_result::succeeded);
    }
    return classified;
}

void record_cluster_probe(upstream_handle& up, const call_result& r)
{
    if (!upstream_decided(r.error)) // no upstream outcome: another request probes
        up.shared.cluster.return_token();
    else
        up.shared.cluster.record_probe(r.error == proxy_error::ok && !r.failure_status);
}

bool take_retry_slot(upstream_handle& up, resilience::retry_permit& slot)
{
    if (!slot.try_acquire(up.shared.budget, up.shared.bulk.in_flight())) {
        up.stats.count(retry_result::budget_exhausted);
        return false;
    }
    up.stats.count(retry_result::attempted);
    return true;
}

bool resend_after_stale_connection(upstream_handle& up, attempt_state& st, const exchange_result& result)
{
    if (!result.stale_connection || !st.resendable || std::exchange(st.stale_resend, true))
        return false;
    return take_retry_slot(up, st.retry_slot);
}

} // namespace breakerbox::forward
