#include "forward/forwarder.hpp"

#include "forward/bulkhead_wait.hpp"
#include "forward/outlier_monitor.hpp"
#include "forward/retry_policy.hpp"
#include "forward/stream_relay.hpp"
#include "forward/upstream_exchange.hpp"
#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"
#include "http/rewrite.hpp"
#include "http/streaming_rules.hpp"
#include "queue/queue_request.hpp"
#include "queue/queue_store.hpp"
#include "resilience/breaker_permit.hpp"
#include "resilience/circuit_view.hpp"
#include "resilience/fallback_response.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>

namespace breakerbox::forward {
namespace {

using runtime::upstream_handle;
using runtime::upstream_outcome;
using runtime::rejection_reason;
using runtime::retry_result;
using resilience::mark_fallback;
using resilience::render_stale_fallback;
using resilience::render_static_fallback;

namespace bhttp = boost::beast::http;
using config::fallback_trigger;

upstream_outcome outcome_label(proxy_error e, resilience::outcome classified)
{
    switch (e) {
    case proxy_error::ok:
        return classified == resilience::outcome::success   ? upstream_outcome::success
               : classified == resilience::outcome::failure ? upstream_outcome::status_failure
                                                            : upstream_outcome::ignored;
    case proxy_error::upstream_connect_failed: return upstream_outcome::connect_failed;
    case proxy_error::upstream_connect_timeout: return upstream_outcome::connect_timeout;
    case proxy_error::upstream_tls_handshake_failed: return upstream_outcome::tls_handshake_failed;
    case proxy_error::upstream_tls_verify_failed: return upstream_outcome::tls_verify_failed;
    case proxy_error::upstream_tls_reset: return upstream_outcome::tls_reset;
    case proxy_error::upstream_timeout: return upstream_outcome::timeout;
    case proxy_error::upstream_reset: return upstream_outcome::reset;
    default: return upstream_outcome::invalid_response;
    }
}

rejection_reason rejection_label(resilience::admission a)
{
    switch (a) {
    case resilience::admission::rejected_probes: return rejection_reason::half_open_full;
    case resilience::admission::rejected_ramp: return rejection_reason::recovery_ramp;
    default: return rejection_reason::circuit_open;
    }
}

// Counts a request against its endpoint for least-outstanding balancing, even if the coroutine is
// destroyed mid-flight.
struct outstanding_guard {
    explicit outstanding_guard(upstream::endpoint_slot& ep) : ep_(ep) { ++ep_.outstanding; }
    ~outstanding_guard() { --ep_.outstanding; }
    outstanding_guard(const outstanding_guard&) = delete;
    outstanding_guard& operator=(const outstanding_guard&) = delete;

private:
    upstream::endpoint_slot& ep_;
};

// The result of trying one upstream with its bulkhead, breaker and retries. The upstream's answer
// itself is in the caller's message (forward_result::response), never moved from layer to layer.
struct call_result {
    proxy_error error = proxy_error::ok; // ok: the upstream answered
    std::string detail;
    bool failure_status = false;       // the upstream answered, with a status classified as failure
    resilience::admission rejection{}; // when error == circuit_open
    bool by_cluster = false;           // circuit_open by the cluster's verdict (scope: cluster)
};

std::optional<fallback_trigger> trigger_of(const call_result& r)
{
    switch (r.error) {
    case proxy_error::client_closed:   // nobody to answer
    case proxy_error::request_timeout: // the client's upload stalled or was invalid: its own fault (408, 413, 400)
    case proxy_error::body_too_large:
    case proxy_error::bad_request:
    case proxy_error::upgrade_refused: // draining: no new tunnels
        return std::nullopt;
    case proxy_error::ok:
        if (r.failure_status)
            return fallback_trigger::upstream_error;
        return std::nullopt;
    case proxy_error::circuit_open: return fallback_trigger::circuit_open;
    case proxy_error::bulkhead_full:
    case proxy_error::queue_timeout:
    case proxy_error::connection_limit:
    case proxy_error::stream_limit:
    case proxy_error::tunnel_limit: return fallback_trigger::bulkhead_full; // capacity refusals alike
    case proxy_error::upstream_timeout:
    case proxy_error::upstream_connect_timeout: return fallback_trigger::timeout;
    default: return fallback_trigger::upstream_error;
    }
}

class forwarder {
public:
    forwarder(runtime::worker_context& w, runtime::worker_generation& gen, http::request& req, const routing::route_match& route,
              bool head, const client_info& client)
        : worker_(w), clk_(w.clk), gen_(gen), cfg_(gen.config->cfg), req_(req), route_(route), head_(head), client_(client),
          watch_(client.watch), places_(stream_places::for_request(req, cfg_.upstreams[route.upstream].streaming, client.upload))
    {
    }

    // One upstream with all its policies, then its fallbacks, into `out`. depth > 0 for a failover
    // target, whose own upstream fallbacks are not followed again (no chains or loops).
    asio::awaitable<void> to_upstream(upstream_handle& up, int depth, forward_result& out)
    {
        out.upstream = up.cfg.name;
        body_out_ = &out.body;
        call_result r;
        const nanos now = clk_.now();                   // one clock reading serves the breaker, the deadline and the pool
        const auto gate = up.shared.cluster.admit(now); // scope: cluster — one load when there is no verdict
        if (gate == resilience::gate_admission::reject) {
            r = cluster_refused(up);
        } else if (auto refused = refused_stream(up)) {
            r = std::move(*refused);
            if (gate == resilience::gate_admission::probe)
                up.shared.cluster.return_token();
        } else if (auto rejected = rejected_outright(up, now)) {
            r = std::move(*rejected);
            if (gate == resilience::gate_admission::probe) // not a probe after all: the next request is
                up.shared.cluster.return_token();
        } else {
            r = co_await call(up, out.response, now);
            if (gate == resilience::gate_admission::probe) // the cluster's probe: its outcome goes with the next sync
                record_cluster_probe(up, r);
        }
        if (r.error == proxy_error::ok && out.body.upgraded && !switched_as_asked(out.response)) {
            out.body.reset(); // a 101 to another protocol than the one asked for and allowed
            r = call_result{proxy_error::upstream_invalid_response,
                            up.cfg.name + " switched to a protocol the request did not ask for"};
        }
        auto trigger = trigger_of(r);
        if (r.error != proxy_error::ok)
            out.body.reset();
        if (!trigger && r.error != proxy_error::ok) { // the client's side: gone, stalled, or no tunnel now
            out.response = http::make_error_response(r.error, up.cfg.name, r.detail);
            out.error = r.error;
        } else if (!trigger && !pass_on(up, out)) {
            co_await fallback(up, stream_limit_refusal(up), fallback_trigger::bulkhead_full, depth, out);
        } else if (trigger) {
            // A streamed failure answer stays open until a fallback replaces it (then its connection
            // closes); without one it is passed on, body and all.
            co_await fallback(up, std::move(r), *trigger, depth, out);
        }
    }

    // A queued request's delivery: the upstream's bulkhead, breaker and retries as for live traffic, never
    // its fallbacks (a delivery is never queued again). The request is already as sent upstream.
    asio::awaitable<delivery_answer> deliver(upstream_handle& up, http::response& response)
    {
        prepared_ = true;
        auto r = co_await call(up, response, clk_.now());
        co_return delivery_answer{r.error, std::move(r.detail), maybe_sent_};
    }

private:
    // The upstream's own answer for the client: a buffered one re-framed whole; a streamed one (or a 101)
    // with its head only, the rest relayed by finish_streamed.
    // False when the answer streams and no max_streams place is free (its connection is closed then).
    bool pass_on(upstream_handle& up, forward_result& out)
    {
        out.error = proxy_error::ok;
        if (!out.body) {
            http::rewrite_for_client(out.response, head_, cfg_.forwarding.via);
            return true;
        }
        if (!take_stream_place(up, out.body)) {
            out.body.reset();
            return false;
        }
        const std::string protocols(http::value_of(out.response, {bhttp::field::upgrade}));
        http::strip_hop_by_hop(out.response.base());
        if (out.body.upgraded)
            http::restore_upgrade(out.response.base(),
                                  protocols.empty() ? std::string_view(places_->upgrade) : std::string_view(protocols));
        else
            http::frame_streamed_response(out.response, out.body.known_length);
        if (cfg_.forwarding.via)
            http::append_via(out.response.base());
        out.streamed_from = &up;
        return true;
    }

    static call_result stream_limit_refusal(const upstream_handle& up)
    {
        return {proxy_error::stream_limit, "the answer streams and " + up.cfg.name + "'s streaming.max_streams are in use"};
    }

    // The 101's protocol is the one the request asked for (RFC 9110 §7.8: the server names the protocol
    // it switched to; only the first one the client offered was forwarded).
    bool switched_as_asked(const http::response& res) const
    {
        if (!places_)
            return false;
        const auto to = http::value_of(res, {bhttp::field::upgrade});
        const auto asked = std::string_view(places_->upgrade);
        return http::same_protocol(to, asked);
    }

    // A streamed answer's place among the upstream's streams (or the tunnel's, taken with the request).
    bool take_stream_place(upstream_handle& up, open_body& body)
    {
        if (body.upgraded && places_)
            body.slot = std::move(places_->tunnel);
        else if (places_ && places_->upload)
            body.slot = std::move(places_->upload);
        else
            body.slot = resilience::concurrency_slot::try_take(up.shared.streams);
        if (!body.slot)
            up.stats.count(rejection_reason::stream_limit);
        return static_cast<bool>(body.slot);
    }

    // What is refused before the call because it would stream: an upgrade while draining or with
    // max_tunnels in use, an upload with max_streams in use. Their places are held for the call.
    std::optional<call_result> refused_stream(upstream_handle& up)
    {
        if (!places_) // the usual request: neither an upgrade nor an upload
            return std::nullopt;
        if (!places_->upgrade.empty() && !places_->tunnel) {
            if (worker_.state.draining.load(std::memory_order_relaxed))
                return call_result{proxy_error::upgrade_refused, "breakerbox is draining: no new upgraded connections"};
            places_->tunnel = resilience::concurrency_slot::try_take(up.shared.tunnels);
            if (!places_->tunnel) {
                up.stats.count(rejection_reason::tunnel_limit);
                return call_result{proxy_error::tunnel_limit, up.cfg.name + "'s streaming.max_tunnels are in use"};
            }
        }
        if (client_.upload && !places_->upload) {
            places_->upload = resilience::concurrency_slot::try_take(up.shared.streams);
            if (!places_->upload) {
                up.stats.count(rejection_reason::stream_limit);
                return call_result{proxy_error::stream_limit, up.cfg.name + "'s streaming.max_streams are in use"};
            }
        }
        return std::nullopt;
    }

    // Whether an upload can be sent again (a retry, a resend, a failover): only while no byte beyond the
    // replay buffer was read from the client. Otherwise the retry is abandoned, and counted.
    bool replayable(const upstream_handle& up, bool count_abandoned = true)
    {
        if (!client_.upload || client_.upload->rewind())
            return true;
        if (count_abandoned)
            up.stats.count(retry_result::abandoned);
        return false;
    }

    // The open-circuit case without a bulkhead slot or an attempt: what call() would answer and count
    // when the breaker certainly rejects, at a fraction of the cost (fast-fail is the point of a breaker).
    static std::optional<call_result> rejected_outright(upstream_handle& up, nanos now)
    {
        const auto kind = up.shared.breaker.certain_rejection(now);
        if (!kind)
            return std::nullopt;
        return circuit_refused(up, *kind);
    }

    // The cluster's verdict turned the request away (scope: cluster): the open-circuit answer, counted
    // apart from the local breaker's rejections.
    static call_result cluster_refused(upstream_handle& up)
    {
        up.stats.count(rejection_reason::cluster_open);
        call_result refused{proxy_error::circuit_open, {}};
        refused.rejection = resilience::admission::rejected_open;
        refused.by_cluster = true;
        return refused;
    }

    static void record_cluster_probe(upstream_handle& up, const call_result& r)
    {
        const bool refused_here = r.error == proxy_error::client_closed || r.error == proxy_error::circuit_open ||
                                  r.error == proxy_error::bulkhead_full || r.error == proxy_error::queue_timeout ||
                                  r.error == proxy_error::connection_limit || r.error == proxy_error::no_endpoint ||
                                  r.error == proxy_error::stream_limit || r.error == proxy_error::tunnel_limit ||
                                  r.error == proxy_error::upgrade_refused || r.error == proxy_error::request_timeout ||
                                  r.error == proxy_error::body_too_large || r.error == proxy_error::bad_request;
        if (refused_here) // no upstream outcome: another request probes
            up.shared.cluster.return_token();
        else
            up.shared.cluster.record_probe(r.error == proxy_error::ok && !r.failure_status);
    }

    // The circuit turned a first attempt away (or, with cancel_in_flight, ended it): the open-circuit
    // answer, counted as a rejection. (A retry it turns away keeps the previous answer instead.)
    static call_result circuit_refused(upstream_handle& up, resilience::admission kind, std::string detail = {})
    {
        up.stats.count(rejection_label(kind));
        call_result refused{proxy_error::circuit_open, std::move(detail)};
        refused.rejection = kind;
        return refused;
    }

    // One upstream with its bulkhead, breaker and retries: a bulkhead slot, then attempts — permit,
    // endpoint, exchange, record, decide whether to retry, back off — until one answer stands. The
    // upstream's answer, when there is one, goes to `response`. `started_ns`: the clock when the request
    // reached this upstream. The steps are plain functions: only the waits are coroutine code (GCC keeps
    // every local of a coroutine in its frame, and a frame above about 1 KiB costs an allocation).
    asio::awaitable<call_result> call(upstream_handle& up, http::response& response, nanos started_ns)
    {
        auto& shared = up.shared;
        const auto& ucfg = up.cfg;
        const nanos deadline = started_ns + ucfg.request_timeout;
        nanos unspent_reading = started_ns; // still the current time: nothing has waited since it was read

        // An upload holds a max_streams place instead of a bulkhead slot (docs/streaming.md).
        bulkhead_permit slot =
            client_.upload ? bulkhead_permit() : try_take_slot(shared.bulk); // the usual case, without a coroutine
        if (!slot && !client_.upload) {
            const auto admitted = co_await acquire_bulkhead(shared.bulk, ucfg.bulkhead.queue_timeout, slot, client_.socket);
            if (admitted != bulkhead_result::acquired)
                co_return bulkhead_refusal(up, admitted);
            unspent_reading = 0;
        }

        attempt_state st;
        for (st.attempt = 1;; ++st.attempt) {
            const nanos attempt_start = unspent_reading ? std::exchange(unspent_reading, 0) : clk_.now();
            const std::uint64_t trips_before = shared.breaker.trip_count(); // before the permit: no trip slips between
            resilience::breaker_permit permit(shared.breaker, shared.breaker.try_acquire(attempt_start));
            if (!permit.get().admitted())
                co_return refused_by_breaker(up, st, permit.get().kind);
            upstream::endpoint_slot* ep = up.local.pick(attempt_start, st.previous);
            if (!ep) // local decisions: the permit is released unrecorded
                co_return no_endpoint(up, attempt_start);
            if (st.attempt == 1 && !st.stale_resend)
                prepare_first_attempt(ucfg.retries, st);
            exchange_result result;
            {
                outstanding_guard counted{*ep};
                result = co_await exchange(
                    up.local, *ep, req_, attempt_limits(up, st, attempt_start, deadline, trips_before, permit), response, watch_);
            }
            maybe_sent_ = maybe_sent_ || result.maybe_sent;
            if (result.stale_connection && st.resendable && !st.stale_resend && !replayable(up))
                st.stale_resend = true; // committed: no resend
            if (resend_after_stale_connection(up, st, result)) {
                --st.attempt; // not counted against max_attempts
                continue;
            }
            if (auto ended = ended_from_outside(up, st, result, permit))
                co_return std::move(*ended);
            st.streamed_head = body_out_ && *body_out_;
            const auto classified = record_attempt(up, *ep, result, response, permit, attempt_start, st, clk_);
            // `response` keeps the last answer the upstream gave: an attempt that gets none leaves it.
            st.last = call_result{result.error, std::move(result.detail),
                                  result.error == proxy_error::ok && classified == resilience::outcome::failure};
            const auto delay = next_retry_delay(up, st, result, response, deadline);
            if (!delay)
                co_return std::move(st.last);
            if (body_out_)
                body_out_->reset(); // a streamed answer retried: its connection closes
            if (*delay > 0) {
                asio::steady_timer pause(co_await asio::this_coro::executor, as_duration(*delay));
                co_await pause.async_wait(nothrow_awaitable);
            }
            st.previous = ep; // the retry goes to another endpoint when there is one
        }
    }

    // What one call keeps from attempt to attempt.
    struct attempt_state {
        unsigned attempt = 1;
        call_result last; // the last attempt's result (its answer is in `response`)
        upstream::endpoint_slot* previous = nullptr;
        resilience::retry_permit retry_slot; // held while the attempt in flight is a retry
        // Whether the request may be sent more than once (RFC 9110 §9.2.2: its method, or POST with an
        // Idempotency-Key or allow_post), and whether it may be sent again after a broken connection
        // (also max_attempts > 1 and retry_on: reset). Known after the first ensure_prepared: a field
        // the client named in Connection (say, Idempotency-Key) is gone then.
        bool repeatable = false;
        bool resendable = false;
        bool stale_resend = false;  // this attempt resends after a stale pooled connection
        bool streamed_head = false; // this attempt's answer streams: only its head is in
    };

    static call_result bulkhead_refusal(upstream_handle& up, bulkhead_result admitted)
    {
        auto& stats = up.stats;
        const auto& name = up.cfg.name;
        switch (admitted) {
        case bulkhead_result::client_gone:
            stats.count(upstream_outcome::client_gone);
            return {proxy_error::client_closed, "the client left while queued"};
        case bulkhead_result::full:
            stats.count(rejection_reason::bulkhead_full);
            return {proxy_error::bulkhead_full, "the bulkhead of " + name + " and its queue are full"};
        case bulkhead_result::queue_timeout:
        default:
            stats.count(rejection_reason::queue_timeout);
            return {proxy_error::queue_timeout, "no bulkhead slot of " + name + " within the queue timeout"};
        }
    }

    // The breaker turned an attempt away: a first attempt gets the open-circuit answer; a retry never
    // goes into an open circuit, and the last real answer stands.
    static call_result refused_by_breaker(upstream_handle& up, attempt_state& st, resilience::admission kind,
                                          std::string detail = {})
    {
        if (st.attempt > 1) {
            up.stats.count(retry_result::stopped_by_breaker);
            return std::move(st.last);
        }
        return circuit_refused(up, kind, std::move(detail));
    }

    static call_result no_endpoint(upstream_handle& up, nanos now)
    {
        auto& stats = up.stats;
        const auto& name = up.cfg.name;
        if (up.local.all_kept_out(now)) { // the upstream is unavailable: answered (and its fallback chosen) as an open circuit
            stats.count(rejection_reason::no_endpoint);
            call_result refused{proxy_error::circuit_open, "every endpoint of " + name + " is ejected by outlier detection"};
            refused.rejection = resilience::admission::rejected_open;
            return refused;
        }
        if (up.local.has_endpoints()) {
            stats.count(rejection_reason::connection_limit);
            return {proxy_error::connection_limit, "every endpoint of " + name + " is at pool.max_connections_per_endpoint"};
        }
        stats.count(rejection_reason::no_endpoint);
        return {proxy_error::no_endpoint, "no resolved endpoint for " + name};
    }

    void prepare_first_attempt(const config::retry_config& rc, attempt_state& st)
    {
        ensure_prepared();
        st.repeatable = method_retryable(req_, rc);
        st.resendable = st.repeatable && rc.max_attempts > 1 && rc.on_reset;
    }

    exchange_limits attempt_limits(upstream_handle& up, const attempt_state& st, nanos attempt_start, nanos deadline,
                                   std::uint64_t trips_before, resilience::breaker_permit& permit) const
    {
        auto& shared = up.shared;
        const auto& ucfg = up.cfg;
        nanos attempt_deadline = deadline;
        if (ucfg.retries.per_try_timeout > 0)
            attempt_deadline = std::min(deadline, attempt_start + ucfg.retries.per_try_timeout);
        // Without a relay (queue deliveries) every body is read whole: up to the larger of the response
        // buffer and 8 MiB (the limit before streaming existed), within max_response_body.
        const auto& lim = cfg_.limits;
        const std::uint64_t max_body =
            body_out_ ? lim.max_response_body
                      : std::min(lim.max_response_body, std::max<std::uint64_t>(lim.response_buffer, 8u << 20));
        return {clk_.to_steady(attempt_deadline),
                ucfg.connect_timeout,
                max_body,
                attempt_start,
                ucfg.breaker.cancel_in_flight ? &shared.breaker : nullptr,
                trips_before,
                ucfg.breaker.slow_call_in_flight ? &permit : nullptr,
                st.resendable,
                st.stale_resend,
                &clk_,
                up.stats.tls_handshakes,
                body_out_,
                lim.response_buffer,
                client_.upload,
                ucfg.streaming.idle_timeout,
                places_ && !places_->upgrade.empty(),
                (ucfg.retries.per_try_timeout > 0 ? std::min(ucfg.retries.per_try_timeout, ucfg.request_timeout)
                                                  : ucfg.request_timeout),
                client_.interim};
    }

    // A reused pooled connection broke after the request was written: most likely the peer closed the
    // idle connection as we wrote, but the upstream may also have read the request and died, so the
    // resend is a retry — only for a request that may be sent twice, counted, within the budget, on a
    // new connection, one per attempt. The stale attempt's permit goes unrecorded (the resend's outcome
    // is the one that counts).
    static bool resend_after_stale_connection(upstream_handle& up, attempt_state& st, const exchange_result& result)
    {
        if (!result.stale_connection || !st.resendable || std::exchange(st.stale_resend, true))
            return false;
        return take_retry_slot(up, st.retry_slot);
    }

    // An attempt that ended without an upstream outcome: the client left, the circuit opened
    // (cancel_in_flight: answered as if it came after the trip), or the endpoint's last connection went
    // to another request (connection_limit). nullopt: the attempt has an outcome to record.
    static std::optional<call_result> ended_from_outside(upstream_handle& up, attempt_state& st, exchange_result& result,
                                                         const resilience::breaker_permit& permit)
    {
        auto& stats = up.stats;
        if ((result.error == proxy_error::client_closed || result.error == proxy_error::circuit_open) && permit.slow_recorded())
            stats.slow.add(); // ended from outside after the sweep had recorded it as slow
        switch (result.error) {
        case proxy_error::client_closed: // not an upstream outcome: the permit is released unrecorded
            stats.count(upstream_outcome::client_gone);
            return call_result{proxy_error::client_closed, std::move(result.detail)};
        case proxy_error::circuit_open:
            return refused_by_breaker(up, st, resilience::admission::rejected_open, std::move(result.detail));
        case proxy_error::connection_limit:
            stats.count(rejection_reason::connection_limit);
            return call_result{proxy_error::connection_limit, std::move(result.detail)};
        case proxy_error::request_timeout: // the client's upload stalled or was invalid: not the upstream's outcome
        case proxy_error::body_too_large:
        case proxy_error::bad_request:
            stats.count(upstream_outcome::client_gone);
            return call_result{result.error, std::move(result.detail)};
        default: return std::nullopt;
        }
    }

    // Classifies the attempt's outcome and records it: the breaker (through its permit), the counters,
    // the duration histogram, the slow-call count; a retry in flight is over.
    static resilience::outcome record_attempt(upstream_handle& up, upstream::endpoint_slot& ep, const exchange_result& result,
                                              const http::response& response, resilience::breaker_permit& permit,
                                              nanos attempt_start, attempt_state& st, const clock& clk)
    {
        auto& shared = up.shared;
        auto& stats = up.stats;
        const auto& breaker_cfg = up.cfg.breaker;
        const nanos finished = result.finished ? result.finished : clk.now();
        const auto classified = result.error == proxy_error::ok ? shared.classifier.of_status(response.result_int())
                                                                : shared.classifier.of_error(result.error);
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

    // The same outcome for the endpoint that served the attempt (outlier detection). When too few
    // endpoints are left healthy, the upstream's circuit opens, so the fallback answers.
    static void judge_endpoint(upstream_handle& up, upstream::endpoint_health& health, proxy_error error,
                               resilience::outcome classified, nanos now)
    {
        auto& detector = *up.shared.outliers; // a record exists only with a detector
        auto verdict = detector.record(health,
                                       resilience::endpoint_outcome_of(error, classified == resilience::outcome::failure,
                                                                       classified == resilience::outcome::ignored),
                                       now);
        if (verdict.open_upstream) // rare: endpoints just turned unhealthy
            apply_outlier_verdict(up.shared, std::move(verdict), now);
    }

    // The pause before the next attempt, with its place in the retry budget taken; nullopt: this
    // attempt's answer stands (not retryable, no attempts or time left, or no budget).
    std::optional<nanos> next_retry_delay(upstream_handle& up, attempt_state& st, const exchange_result& result,
                                          const http::response& response, nanos deadline)
    {
        const auto& rc = up.cfg.retries;
        if (st.attempt >= rc.max_attempts || result.stale_connection || !st.repeatable ||
            !outcome_retryable(result.error, response, rc))
            return std::nullopt;
        const auto delay = retry_delay(result.error, response, rc, st.attempt, worker_.random(), clk_.unix_seconds());
        if (!delay || clk_.now() + *delay >= deadline)
            return std::nullopt;
        if (!replayable(up) || !take_retry_slot(up, st.retry_slot))
            return std::nullopt;
        st.stale_resend = false;
        return delay;
    }

    // A retry (or resend) takes a place in the retry budget, or is refused (and counted either way).
    static bool take_retry_slot(upstream_handle& up, resilience::retry_permit& slot)
    {
        if (!slot.try_acquire(up.shared.budget, up.shared.bulk.in_flight())) {
            up.stats.count(retry_result::budget_exhausted);
            return false;
        }
        up.stats.count(retry_result::attempted);
        return true;
    }

    // What every fallback needs to know about the call it answers for.
    struct fallback_cause {
        call_result result; // `out.response` holds the upstream's answer when result.error == ok
        fallback_trigger trigger;
        std::string_view reason;          // the trigger's name (X-Breakerbox-Fallback-Reason)
        resilience::circuit_view circuit; // what the next request finds (Retry-After, the 503's state)
        long retry_after;                 // whole seconds until the next probe; 0: none scheduled
    };

    // The upstream's fallbacks in order: the first one that applies to the trigger and can answer does;
    // a fallback that cannot (no cached answer, a failover that failed too) passes to the next. Without
    // one, the default answer.
    asio::awaitable<void> fallback(upstream_handle& up, call_result r, fallback_trigger trigger, int depth, forward_result& out)
    {
        const auto circuit = resilience::effective_circuit(up.shared.breaker, up.shared.cluster, clk_.now());
        const fallback_cause cause{std::move(r), trigger, name_of(trigger), circuit, resilience::retry_after_seconds(circuit)};
        for (std::size_t f = 0; f < up.cfg.fallbacks.size(); ++f) {
            const auto& fb = up.cfg.fallbacks[f];
            if (!(fb.triggers & static_cast<std::uint8_t>(trigger)))
                continue;
            bool served = false;
            switch (fb.kind) {
            case config::fallback_kind::static_response: served = serve_static(up, f, cause, out); break;
            case config::fallback_kind::stale: served = serve_stale(up, cause, out); break;
            case config::fallback_kind::upstream: served = depth == 0 && co_await serve_failover(up, fb, cause, out); break;
            case config::fallback_kind::error: served = serve_error(up, cause, out); break;
            case config::fallback_kind::queue: served = depth == 0 && co_await serve_queue(up, fb.queue, cause, out); break;
            }
            if (served) {
                up.stats.count(fb.kind);
                if (fb.kind != config::fallback_kind::upstream && fb.kind != config::fallback_kind::error) {
                    out.body.reset(); // a streamed answer replaced: its connection closes
                    out.streamed_from = nullptr;
                }
                co_return;
            }
        }
        default_answer(up, cause, out);
    }

    // A static answer: rendered once per generation when it has no per-answer placeholders.
    bool serve_static(const upstream_handle& up, std::size_t f, const fallback_cause& cause, forward_result& out) const
    {
        const auto& fb = up.cfg.fallbacks[f];
        const long wait = cause.trigger == fallback_trigger::circuit_open ? cause.retry_after : 0;
        if (const auto* ready = gen_.config->static_answer(up.index, f, cause.trigger)) {
            out.error = error_or_status(cause.result);
            out.upstream = up.cfg.name;
            out.from_fallback = true;
            out.prerendered = ready;
            out.retry_after_seconds = wait;
            return true;
        }
        auto res = render_static_fallback(fb, {up.cfg.name, wait, cause.reason});
        mark_fallback(res, name_of(fb.kind), cause.reason);
        out = forward_result{std::move(res), error_or_status(cause.result), up.cfg.name, true};
        return true;
    }

    // The last good answer to this request, when the cache has one fresh enough.
    bool serve_stale(const upstream_handle& up, const fallback_cause& cause, forward_result& out)
    {
        if (!up.shared.cache)
            return false;
        ensure_prepared(); // the cache keys on the request as sent upstream
        auto hit = up.shared.cache->lookup(req_, clk_.now());
        if (!hit)
            return false;
        auto res = render_stale_fallback(*hit, clk_.now());
        mark_fallback(res, name_of(config::fallback_kind::stale), cause.reason);
        out = forward_result{std::move(res), error_or_status(cause.result), up.cfg.name, true};
        return true;
    }

    // Another upstream serving the same API, with its own policies but without its own upstream
    // fallbacks (no chains or loops). Only its good answer serves.
    asio::awaitable<bool> serve_failover(const upstream_handle& up, const config::fallback_config& fb,
                                         const fallback_cause& cause, forward_result& out)
    {
        // A request that must not be sent twice goes elsewhere only if the first upstream certainly did
        // not get it (refused before sending, or the connection never opened).
        if (maybe_sent_ && !method_retryable(req_, up.cfg.retries)) // req_ is prepared once maybe_sent_
            co_return false;
        if (!replayable(up, false)) // (a failover is not a retry: not counted as an abandoned one)
            co_return false;
        auto* target = gen_.find(fb.upstream); // the loader checked that it exists
        if (!target)
            co_return false;
        ensure_prepared();
        // The failover target gets the same target path (it serves the same API: the route's prefix was
        // stripped for it too) but its own Host: its host_rewrite, else the client's.
        http::set_field(req_, {bhttp::field::host}, failover_host(target->cfg));
        forward_result other;
        co_await to_upstream(*target, 1, other);
        body_out_ = &out.body; // (to_upstream pointed it at `other`, a local)
        if (other.error != proxy_error::ok || other.from_fallback || other.response.result_int() >= 500)
            co_return false; // the failover did not help either: next fallback
        mark_fallback(other.response, std::string(name_of(fb.kind)) + ":" + fb.upstream, cause.reason);
        other.from_fallback = true;
        out = std::move(other);
        co_return true;
    }

    // Queue for later (docs/queue.md): the request is stored durably and answered 202 once committed; a
    // request the queue does not take (method, path, Prefer, size, full, store error) passes to the next
    // fallback. A failover target (depth > 0) never queues: the first upstream's fallbacks decide.
    asio::awaitable<bool> serve_queue(const upstream_handle& up, const config::queue_fallback_config& q,
                                      const fallback_cause& cause, forward_result& out)
    {
        auto* store = worker_.state.queue;
        // Only what the upstream certainly did not get: an attempt may have reached it before the circuit
        // turned a retry away (or cancel_in_flight ended it), or a failover target may have had it.
        // An upload is not stored: only its replay prefix was ever held.
        if (!store || maybe_sent_ || client_.upload || !queue::queueable(q, req_, route_.origin_target))
            co_return false;
        auto& counters = store->counters(up.cfg.name);
        if (req_.body().size() > q.max_body_size) {
            counters.rejected[static_cast<std::size_t>(queue::rejection::body_too_large)].fetch_add(1);
            co_return false;
        }
        ensure_prepared(); // stored as it will be sent: Host, target and forwarding fields as for a live attempt
        queue::enqueue_request er;
        er.upstream = up.cfg.name;
        er.idempotency_key = std::string(http::value_of(req_, http::field_name::of(queue::idempotency_key_header)));
        er.key_from_client = !er.idempotency_key.empty();
        er.request = queue::to_stored(req_, q.store_credentials);
        er.fingerprint = queue::fingerprint(er.request, http::value_of(req_, {bhttp::field::authorization}));
        er.limits = {q.max_entries, q.max_bytes};
        const auto stored = co_await store->async_enqueue(std::move(er), asio::use_awaitable);
        const unsigned version = req_.version();
        switch (stored.status) {
        case queue::enqueue_status::stored:
        case queue::enqueue_status::duplicate: {
            auto res = queue::accepted_response(stored, up.cfg.name, cfg_.queue_store.status_path, cause.retry_after,
                                                queue::prefers_respond_async(req_), version);
            mark_fallback(res, name_of(config::fallback_kind::queue), cause.reason);
            out = forward_result{std::move(res), error_or_status(cause.result), up.cfg.name, true};
            co_return true;
        }
        case queue::enqueue_status::key_reused: {
            auto res = queue::key_reused_response(up.cfg.name, version);
            mark_fallback(res, name_of(config::fallback_kind::queue), cause.reason);
            out = forward_result{std::move(res), error_or_status(cause.result), up.cfg.name, true};
            co_return true;
        }
        case queue::enqueue_status::full:
            counters.rejected[static_cast<std::size_t>(queue::rejection::full)].fetch_add(1);
            co_return false;
        case queue::enqueue_status::store_error:
        default: counters.rejected[static_cast<std::size_t>(queue::rejection::store_error)].fetch_add(1); co_return false;
        }
    }

    // The default answer, marked as a fallback's.
    bool serve_error(upstream_handle& up, const fallback_cause& cause, forward_result& out)
    {
        default_answer(up, cause, out);
        mark_fallback(out.response, name_of(config::fallback_kind::error), cause.reason);
        out.from_fallback = true;
        return true;
    }

    // Without a fallback: an upstream's failure response as it is, or the explicit proxy error.
    // `out.response` holds the upstream's answer when r.error == ok.
    void default_answer(upstream_handle& up, const fallback_cause& cause, forward_result& out)
    {
        const call_result& r = cause.result;
        const auto& ucfg = up.cfg;
        out.upstream = ucfg.name;
        out.error = r.error;
        if (r.error == proxy_error::ok) {
            if (!pass_on(up, out)) { // a streamed failure answer without a max_streams place
                const auto refusal = stream_limit_refusal(up);
                out.response = http::make_error_response(refusal.error, ucfg.name, refusal.detail);
                out.error = refusal.error;
            }
            return;
        }
        if (r.error == proxy_error::circuit_open) {
            std::string_view why =
                r.by_cluster                                            ? "the cluster's circuit is open (a quorum of replicas)"
                : r.rejection == resilience::admission::rejected_probes ? "half-open: the allowed probes are already in flight"
                : r.rejection == resilience::admission::rejected_ramp   ? "recovering: admitting a growing share of traffic"
                                                                        : "the circuit is open";
            out.response = http::make_circuit_open_response(ucfg.name, resilience::to_string(cause.circuit.state),
                                                            name_of(cause.circuit.decided_by), cause.retry_after, why);
            return;
        }
        out.response = http::make_error_response(r.error, ucfg.name, r.detail);
    }

    // What a fallback replaced: the proxy error, or the upstream's failure status.
    static proxy_error error_or_status(const call_result& r)
    {
        return r.error == proxy_error::ok ? proxy_error::upstream_failure_status : r.error;
    }

    // The Host a failover target gets: its own host_rewrite, else the client's Host (or the absolute-form
    // target's authority), else its first endpoint. Never the first upstream's rewritten one.
    std::string failover_host(const config::upstream_config& target) const
    {
        if (!target.host_rewrite.empty())
            return target.host_rewrite;
        if (!route_.authority.empty())
            return route_.authority;
        return target.endpoints.front().text();
    }

    // The client's request becomes the upstream request only when something needs it that way (an
    // attempt, a stale lookup, a failover): an open circuit answered by a fallback never pays for it.
    void ensure_prepared()
    {
        if (prepared_)
            return;
        const auto& up = cfg_.upstreams[route_.upstream];
        // Host: the upstream's host_rewrite; for the absolute-form, its authority (which replaces Host,
        // RFC 9112 §3.2.2); else the client's own — and when there is none, what the client addressed,
        // or for an HTTP/1.0 request that addressed nothing, the first endpoint.
        std::string_view host = up.host_rewrite;
        if (host.empty() && req_.target().front() != '/')
            host = route_.authority;
        std::string endpoint_host;
        if (route_.authority.empty())
            endpoint_host = up.endpoints.front().text();
        const std::string_view host_if_missing =
            route_.authority.empty() ? std::string_view(endpoint_host) : std::string_view(route_.authority);
        http::rewrite_for_upstream(req_, cfg_.forwarding, {client_.ip, route_.authority}, route_.origin_target, host,
                                   host_if_missing);
        if (places_ && !places_->upgrade.empty()) // forwarded: the upstream may switch protocols (RFC 9110 §7.8)
            http::restore_upgrade(req_.base(), places_->upgrade);
        if (client_.upload)
            http::frame_streamed_request(req_, client_.upload->chunked, client_.upload->content_length);
        prepared_ = true;
    }

    runtime::worker_context& worker_;
    const clock& clk_;
    runtime::worker_generation& gen_;
    const config::config& cfg_;
    http::request& req_;
    const routing::route_match& route_;
    const bool head_;
    const client_info client_;
    client_watch* watch_;
    bool prepared_ = false;
    bool maybe_sent_ = false;       // some attempt's request may have reached an upstream
    open_body* body_out_ = nullptr; // where a streamed answer goes (the current to_upstream's result)
    // Only for an upgrade or an upload (null for the usual request: the coroutine frame holding the
    // forwarder stays within Asio's recycling size).
    struct stream_places {
        std::string upgrade;                 // the Upgrade the request asks for and the upstream allows ("" = none)
        resilience::concurrency_slot tunnel; // an upgrade's place, taken before the call
        resilience::concurrency_slot upload; // an upload's place, taken before the call
        static std::unique_ptr<stream_places> for_request(const http::request& req, const config::streaming_config& sc,
                                                          const upload_source* upload)
        {
            auto upgrade = http::requested_upgrade(req, sc.upgrades);
            if (upgrade.empty() && !upload)
                return nullptr;
            auto p = std::make_unique<stream_places>();
            p->upgrade = std::move(upgrade);
            return p;
        }
    };
    std::unique_ptr<stream_places> places_;
};

} // namespace

asio::awaitable<delivery_answer> deliver_queued(runtime::worker_context& worker, runtime::worker_generation& gen,
                                                runtime::upstream_handle& up, http::request& req, http::response& response)
{
    worker.owner.assert_owned("deliver_queued");
    const routing::route_match route{up.index, std::string(req.target()), {}};
    forwarder f(worker, gen, req, route, false, client_info{});
    co_return co_await f.deliver(up, response);
}

namespace {

// Whether a streamed answer is collected for the stale cache: a good GET answer of the upstream's own
// (not a failover's), not an event stream (a replayed feed would be a lie), that the cache may keep.
bool worth_capturing(const runtime::upstream_handle& up, const http::request& req, const forward_result& out)
{
    const unsigned status = out.response.result_int();
    return up.shared.cache && req.method() == bhttp::verb::get && !out.from_fallback && status >= 200 && status < 300 &&
           status != 206 && !http::streams_response(out.response);
}

// A streamed answer that completed within the stale cache's size: stored as a buffered one would be.
void store_streamed(runtime::upstream_handle& up, const http::request& req, const http::response& head, std::string body,
                    nanos now)
{
    http::response copy = head;
    http::erase_all(copy, {bhttp::field::transfer_encoding});
    copy.body() = std::move(body);
    http::set_content_length(copy, copy.body().size());
    up.shared.cache->store(req, copy, now);
}

// A streamed body that broke after its head was recorded as the call's outcome: one more failure for
// the breaker, and a retry the policy would have made is abandoned (the client has part of the answer).
void record_broken_stream(runtime::upstream_handle& up, const http::request& req, nanos now)
{
    up.shared.breaker.on_failure_after_answer(now);
    const auto& rc = up.cfg.retries;
    if (rc.max_attempts > 1 && rc.on_reset && method_retryable(req, rc))
        up.stats.count(retry_result::abandoned);
}

} // namespace

asio::awaitable<streamed_end> finish_streamed(runtime::worker_context& worker, const config::limits_config& limits,
                                              const http::request& req, forward_result& out, deadline_stream& client,
                                              beast::flat_buffer& client_buffer, bool chunked_to_client,
                                              resilience::client_watch* watch)
{
    worker.owner.assert_owned("finish_streamed");
    auto& up = *out.streamed_from;
    const auto& sc = up.cfg.streaming;
    if (out.body.upgraded) {
        // A tunnel's buffers live as long as it does, idle or not: at most 16 KiB each way (WebSocket
        // messages are small; a thousand idle tunnels hold 32 MiB, not 128).
        const tunnel_options topt{sc.idle_timeout,
                                  sc.total_timeout,
                                  std::min<std::size_t>(limits.stream_buffer, 16 * 1024),
                                  sc.close_tunnels_on_open ? &up.shared.breaker : nullptr,
                                  up.shared.breaker.trip_count(),
                                  &worker.state.draining,
                                  limits.drain_timeout};
        const auto end = co_await run_tunnel(client, client_buffer, out.body, topt);
        up.stats.count_tunnel(end);
        if (end == runtime::stream_end::upstream_failed)
            up.shared.breaker.on_failure_after_answer(worker.clk.now());
        else
            up.shared.breaker.on_stream_completed(); // the 101 was a success
        out.body.reset();
        co_return streamed_end{false};
    }
    std::string captured;
    relay_options opt{sc.idle_timeout, sc.total_timeout, limits.stream_buffer, chunked_to_client};
    opt.watch = watch;
    opt.now = worker.clk.now();
    if (worth_capturing(up, req, out)) {
        opt.capture = &captured;
        // Within the cache's size, and within the response buffer: a stream's memory stays bounded by
        // what a buffered answer may hold, however many stream at once.
        opt.capture_limit = std::min<std::uint64_t>(up.cfg.stale_cache.max_bytes, limits.response_buffer);
    }
    const auto relayed = co_await relay_response_body(client, out.body, opt);
    out.body.reset();
    up.stats.count_stream(relayed.end);
    const bool completed = relayed.end == runtime::stream_end::completed;
    if (completed && up.shared.classifier.of_status(out.response.result_int()) == resilience::outcome::success)
        up.shared.breaker.on_stream_completed(); // a good head, a whole body: the run of failures ends
    // The upstream broke the body or fell silent: its failure. (A client that left or stopped reading,
    // or the total time, says nothing about the upstream.)
    if (relayed.end == runtime::stream_end::upstream_failed || relayed.end == runtime::stream_end::idle_timeout)
        record_broken_stream(up, req, worker.clk.now());
    if (completed && relayed.captured)
        store_streamed(up, req, out.response, std::move(captured), worker.clk.now());
    co_return streamed_end{completed};
}

asio::awaitable<void> forward_request(runtime::worker_context& worker, runtime::worker_generation& gen, http::request& req,
                                      const routing::route_match& route, const client_info& client, forward_result& out)
{
    worker.owner.assert_owned("forward_request");
    const bool head = req.method() == bhttp::verb::head;
    forwarder f(worker, gen, req, route, head, client);
    auto& up = gen.upstreams[route.upstream];
    co_await f.to_upstream(up, 0, out);
    // Remember good answers for the stale fallback (opt-in per upstream).
    auto& shared = up.shared;
    if (shared.cache && out.error == proxy_error::ok && !out.from_fallback && !out.body)
        shared.cache->store(req, out.response, worker.clk.now());
}

} // namespace breakerbox::forward
