// What an attempt's end means for its upstream, as plain functions the forwarder's attempt loop calls
// between its waits: the refusals before an attempt (bulkhead, circuit, cluster, endpoints), an attempt
// that ended without an upstream outcome, recording an outcome (breaker, outlier detection, counters),
// and places in the retry budget. Counted by forward/outcome_table.hpp's labels. On the worker's thread.
#pragma once
#include "forward/bulkhead_wait.hpp"
#include "forward/call_result.hpp"
#include "forward/upstream_exchange.hpp"
#include "resilience/breaker_permit.hpp"
#include "runtime/worker_context.hpp"

#include <optional>

namespace breakerbox::forward {

// What one call keeps from attempt to attempt.
struct attempt_state {
    unsigned attempt = 1;
    call_result last; // the last attempt's result (its answer is in the caller's response)
    upstream::endpoint_slot* previous = nullptr;
    resilience::retry_permit retry_slot; // held while the attempt in flight is a retry
    // Whether the request may be sent more than once (RFC 9110 §9.2.2: its method, or POST with an
    // Idempotency-Key or allow_post), and whether it may be sent again after a broken connection
    // (also max_attempts > 1 and retry_on: reset). Known after the request is prepared: a field the
    // client named in Connection (say, Idempotency-Key) is gone then.
    bool repeatable = false;
    bool resendable = false;
    bool stale_resend = false;  // this attempt resends after a stale pooled connection
    bool streamed_head = false; // this attempt's answer streams: only its head is in
};

// A local refusal with its reason and detail, counted under the reason's label.
call_result refused(runtime::upstream_handle& up, proxy_error reason, std::string detail);

// The bulkhead (and its queue) turned the call away, or the client left while queued.
call_result bulkhead_refusal(runtime::upstream_handle& up, bulkhead_result admitted);

// The circuit turned a first attempt away (or, with cancel_in_flight, ended it): the open-circuit
// answer, counted by the kind of refusal.
call_result circuit_refused(runtime::upstream_handle& up, resilience::admission kind, std::string detail = {});

// The cluster's verdict turned the request away (scope: cluster), counted apart from the local breaker's.
call_result cluster_refused(runtime::upstream_handle& up);

// The open-circuit case without a bulkhead slot or an attempt, when the breaker certainly rejects:
// what call() would answer and count, at a fraction of the cost (fast-fail is the point of a breaker).
std::optional<call_result> rejected_outright(runtime::upstream_handle& up, nanos now);

// The breaker turned an attempt away: a first attempt gets the open-circuit answer; a retry never goes
// into an open circuit, and the last real answer stands.
call_result refused_by_breaker(runtime::upstream_handle& up, attempt_state& st, resilience::admission kind,
                               std::string detail = {});

// No endpoint to send to: every one kept out by outlier detection (no_healthy_endpoint), every one at
// its connection limit, or none resolved.
call_result no_endpoint(runtime::upstream_handle& up, nanos now);

// An attempt that ended without an upstream outcome: the client left or its upload failed, the circuit
// opened (cancel_in_flight), or the endpoint's last connection went to another request. nullopt: the
// attempt has an outcome to record.
std::optional<call_result> ended_from_outside(runtime::upstream_handle& up, attempt_state& st, exchange_result& result,
                                              const resilience::breaker_permit& permit);

// Classifies the attempt's outcome and records it: the breaker (through its permit), the endpoint's
// outlier record, the counters, the duration histogram, the slow-call count; a retry in flight is over.
resilience::outcome record_attempt(runtime::upstream_handle& up, upstream::endpoint_slot& ep, const exchange_result& result,
                                   const http::response& response, resilience::breaker_permit& permit, nanos attempt_start,
                                   attempt_state& st, const clock& clk);

// The cluster's probe (scope: cluster) ended: its outcome goes with the next sync, or, when the call
// ended without an upstream outcome, the token goes back for another request to probe.
void record_cluster_probe(runtime::upstream_handle& up, const call_result& r);

// A retry (or resend) takes a place in the retry budget, or is refused (and counted either way).
bool take_retry_slot(runtime::upstream_handle& up, resilience::retry_permit& slot);

// A reused pooled connection broke after the request was written: most likely the peer closed the
// idle connection as we wrote, but the upstream may also have read the request and died, so the
// resend is a retry — only for a request that may be sent twice, counted, within the budget, on a new
// connection, one per attempt. The stale attempt's permit goes unrecorded.
bool resend_after_stale_connection(runtime::upstream_handle& up, attempt_state& st, const exchange_result& result);

} // namespace breakerbox::forward
