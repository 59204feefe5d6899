#include "forward/forwarder.hpp"

#include "forward/bulkhead_wait.hpp"
#include "forward/fallback_response.hpp"
#include "forward/retry_policy.hpp"
#include "forward/upstream_exchange.hpp"
#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"
#include "resilience/breaker_permit.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;
using steady = std::chrono::steady_clock;
using config::fallback_trigger;

nanos steady_now() { return steady::now().time_since_epoch().count(); } // steady_clock_source's time base
steady::time_point steady_at(nanos t) { return steady::time_point(std::chrono::nanoseconds(t)); }

// Rewrites the client's request into the one sent upstream (RFC 9110 §7.6).
void prepare_upstream_request(http::request& req, const routing::route_match& route, const config::config& cfg,
                              const config::upstream_config& up, const client_info& client)
{
    http::strip_hop_by_hop(req.base());
    http::erase_all(req, {bhttp::field::expect}); // the body is already buffered: no 100-continue upstream
    http::add_forwarding_fields(req.base(), cfg.forwarding, {client.ip, route.authority});
    if (!up.host_rewrite.empty())
        http::set_field(req, {bhttp::field::host}, up.host_rewrite);
    else if (http::value_of(req, {bhttp::field::host}).empty() || req.target().front() != '/')
        http::set_field(req, {bhttp::field::host}, route.authority.empty() ? up.endpoints.front().text() : route.authority);
    req.target(route.origin_target);
    req.version(11);
    http::frame_request(req);
}

// Turns the upstream's response into the one sent downstream.
void prepare_client_response(http::response& res, bool head_request, const config::config& cfg)
{
    http::strip_hop_by_hop(res.base());
    http::frame_response(res, head_request);
    if (cfg.forwarding.via)
        http::append_via(res.base());
}

upstream_outcome outcome_label(proxy_error e, resilience::outcome classified)
{
    switch (e) {
    case proxy_error::ok:
        return classified == resilience::outcome::success   ? upstream_outcome::success
               : classified == resilience::outcome::failure ? upstream_outcome::status_failure
                                                            : upstream_outcome::ignored;
    case proxy_error::upstream_connect_failed: return upstream_outcome::connect_failed;
    case proxy_error::upstream_connect_timeout: return upstream_outcome::connect_timeout;
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
    proxy_error error = proxy_error::ok;   // ok: the upstream answered
    std::string detail;
    bool failure_status = false;           // the upstream answered, with a status classified as failure
    resilience::admission rejection{};     // when error == circuit_open
};

std::optional<fallback_trigger> trigger_of(const call_result& r)
{
    switch (r.error) {
    case proxy_error::client_closed: return std::nullopt; // nobody to answer
    case proxy_error::ok:
        if (r.failure_status)
            return fallback_trigger::upstream_error;
        return std::nullopt;
    case proxy_error::circuit_open: return fallback_trigger::circuit_open;
    case proxy_error::bulkhead_full:
    case proxy_error::queue_timeout: return fallback_trigger::bulkhead_full;
    case proxy_error::upstream_timeout:
    case proxy_error::upstream_connect_timeout: return fallback_trigger::timeout;
    default: return fallback_trigger::upstream_error;
    }
}

class forwarder {
public:
    forwarder(worker_context& w, worker_generation& gen, http::request& req, const routing::route_match& route, bool head,
              const client_info& client)
        : worker_(w), gen_(gen), cfg_(gen.rt->cfg), req_(req), route_(route), head_(head), client_(client), watch_(client.watch)
    {
    }

    // One upstream with all its policies, then its fallbacks, into `out`. depth > 0 for a failover
    // target, whose own upstream fallbacks are not followed again (no chains or loops).
    asio::awaitable<void> to_upstream(std::size_t u, int depth, forward_result& out)
    {
        const auto& ucfg = cfg_.upstreams[u];
        out.upstream = ucfg.name;
        call_result r;
        const nanos now = steady_now(); // one clock reading serves the breaker, the deadline and the pool
        if (auto rejected = rejected_outright(u, now))
            r = std::move(*rejected);
        else
            r = co_await call(u, out.response, now);
        auto trigger = trigger_of(r);
        if (r.error == proxy_error::client_closed) {
            out.response = http::make_error_response(r.error, ucfg.name, r.detail);
            out.error = r.error;
        } else if (!trigger) {
            prepare_client_response(out.response, head_, cfg_);
            out.error = proxy_error::ok;
        } else {
            co_await fallback(u, std::move(r), *trigger, depth, out);
        }
    }

private:
    // The open-circuit case without a bulkhead slot or an attempt: what call() would answer and count
    // when the breaker certainly rejects, at a fraction of the cost (fast-fail is the point of a breaker).
    std::optional<call_result> rejected_outright(std::size_t u, nanos now)
    {
        const auto kind = gen_.rt->resilience[u]->breaker.certain_rejection(now);
        if (!kind)
            return std::nullopt;
        return circuit_refused(u, *kind);
    }

    // The circuit turned a first attempt away (or, with cancel_in_flight, ended it): the open-circuit
    // answer, counted as a rejection. (A retry it turns away keeps the previous answer instead.)
    call_result circuit_refused(std::size_t u, resilience::admission kind, std::string detail = {})
    {
        gen_.stats.upstreams[u].count(rejection_label(kind));
        call_result refused{proxy_error::circuit_open, std::move(detail)};
        refused.rejection = kind;
        return refused;
    }

    // The upstream's answer, when there is one, goes to `response`. `started_ns`: the clock when the
    // request reached this upstream.
    asio::awaitable<call_result> call(std::size_t u, http::response& response, nanos started_ns)
    {
        auto& shared = *gen_.rt->resilience[u];
        auto& stats = gen_.stats.upstreams[u];
        auto& up = gen_.upstreams[u];
        const auto& ucfg = up.cfg();
        const auto& rc = ucfg.retries;
        const auto started = steady_at(started_ns);
        const auto deadline = started + as_duration(ucfg.request_timeout);
        nanos unspent_reading = started_ns; // still the current time: nothing has waited since it was read

        bulkhead_permit slot = try_take_slot(shared.bulk); // the usual case, without a coroutine
        auto admitted = bulkhead_result::acquired;
        if (!slot) {
            admitted = co_await acquire_bulkhead(shared.bulk, ucfg.bulkhead.queue_timeout, slot, client_.socket);
            unspent_reading = 0;
        }
        switch (admitted) {
        case bulkhead_result::acquired: break;
        case bulkhead_result::client_gone:
            stats.count(upstream_outcome::client_gone);
            co_return call_result{proxy_error::client_closed, "the client left while queued"};
        case bulkhead_result::full:
            stats.count(rejection_reason::bulkhead_full);
            co_return call_result{proxy_error::bulkhead_full, "the bulkhead of " + ucfg.name + " and its queue are full"};
        case bulkhead_result::queue_timeout:
            stats.count(rejection_reason::queue_timeout);
            co_return call_result{proxy_error::queue_timeout, "no bulkhead slot of " + ucfg.name + " within the queue timeout"};
        }

        call_result last;
        upstream::endpoint_slot* previous = nullptr;
        resilience::retry_permit retry_slot; // held while the attempt in flight is a retry
        // Whether the request may be sent again once it may have reached the upstream: the retry rules
        // (RFC 9110 §9.2.2 methods, max_attempts, retry_on: reset) allow it. Known after the first
        // ensure_prepared: a field the client named in Connection (say, Idempotency-Key) is gone then.
        bool resendable = false;
        bool stale_resend = false; // the next attempt resends after a stale pooled connection
        for (unsigned attempt = 1;; ++attempt) {
            const nanos attempt_start = unspent_reading ? std::exchange(unspent_reading, 0) : steady_now();
            const std::uint64_t trips_before = shared.breaker.trip_count(); // before the permit: no trip slips between
            resilience::breaker_permit permit(shared.breaker, shared.breaker.try_acquire(attempt_start));
            if (!permit.get().admitted()) {
                if (attempt > 1) {
                    stats.count(retry_result::stopped_by_breaker);
                    co_return last; // never retry into an open circuit: the last real answer stands
                }
                co_return circuit_refused(u, permit.get().kind);
            }
            upstream::endpoint_slot* ep = up.pick(previous);
            if (!ep) { // local decisions: the permit is released unrecorded
                if (up.has_endpoints()) {
                    stats.count(rejection_reason::bulkhead_full);
                    co_return call_result{proxy_error::bulkhead_full, "every endpoint of " + ucfg.name + " is at pool.max_connections_per_endpoint"};
                }
                stats.count(rejection_reason::no_endpoint);
                co_return call_result{proxy_error::no_endpoint, "no resolved endpoint for " + ucfg.name};
            }
            auto attempt_deadline = deadline;
            if (rc.per_try_timeout > 0)
                attempt_deadline = std::min(deadline, steady_at(attempt_start) + as_duration(rc.per_try_timeout));
            if (attempt == 1 && !stale_resend) {
                ensure_prepared();
                resendable = rc.max_attempts > 1 && rc.on_reset && method_retryable(req_, rc);
            }
            exchange_result result;
            {
                outstanding_guard counted{*ep};
                result = co_await exchange(up, *ep, req_,
                                           {attempt_deadline, ucfg.connect_timeout, cfg_.limits.max_response_body, attempt_start,
                                            ucfg.breaker.cancel_in_flight ? &shared.breaker : nullptr, trips_before,
                                            ucfg.breaker.slow_call_in_flight ? &permit : nullptr, resendable, stale_resend},
                                           response, watch_);
            }
            maybe_sent_ = maybe_sent_ || result.maybe_sent;
            if (result.stale_connection && resendable && !std::exchange(stale_resend, true)) {
                // Most likely the peer closed the idle connection as we wrote; the upstream may also
                // have read the request and died, so the resend is a retry: counted, and only within
                // the budget. It goes on a new connection, its stale attempt unrecorded (the resend's
                // outcome is the one that counts); one per attempt, not counted against max_attempts.
                if (take_retry_slot(shared, stats, retry_slot)) {
                    --attempt;
                    continue;
                }
            }
            if ((result.error == proxy_error::client_closed || result.error == proxy_error::circuit_open) && permit.slow_recorded())
                stats.slow.add(); // ended from outside after the sweep had recorded it as slow
            if (result.error == proxy_error::client_closed) { // not an upstream outcome: the permit is released unrecorded
                stats.count(upstream_outcome::client_gone);
                co_return call_result{proxy_error::client_closed, std::move(result.detail)};
            }
            if (result.error == proxy_error::circuit_open) { // cancel_in_flight: answered as if it came after the trip
                if (attempt > 1) {
                    stats.count(retry_result::stopped_by_breaker);
                    co_return last;
                }
                co_return circuit_refused(u, resilience::admission::rejected_open, std::move(result.detail));
            }
            if (result.error == proxy_error::bulkhead_full) { // lost a race for the endpoint's last connection
                stats.count(rejection_reason::bulkhead_full);
                co_return call_result{proxy_error::bulkhead_full, std::move(result.detail)};
            }
            const nanos finished = result.finished ? result.finished : steady_now();
            const auto classified = result.error == proxy_error::ok ? shared.classifier.of_status(response.result_int())
                                                                    : shared.classifier.of_error(result.error);
            permit.complete(classified, finished);
            stats.count(outcome_label(result.error, classified));
            stats.observe_duration(finished - attempt_start);
            if (ucfg.breaker.slow_call_enabled && finished - attempt_start >= ucfg.breaker.slow_call_duration)
                stats.slow.add();
            if (retry_slot.held()) { // this attempt was a retry: it is over
                retry_slot.release();
                if (result.error == proxy_error::ok && classified != resilience::outcome::failure)
                    stats.count(retry_result::succeeded);
            }

            const bool retryable = attempt < rc.max_attempts && !result.stale_connection && resendable &&
                                   outcome_retryable(result.error, response, rc);
            std::optional<nanos> delay;
            if (retryable)
                delay = retry_delay(result.error, response, rc, attempt, worker_.random(), static_cast<std::int64_t>(std::time(nullptr)));
            // `response` keeps the last answer the upstream gave: an attempt that gets none leaves it.
            last = call_result{result.error, std::move(result.detail),
                               result.error == proxy_error::ok && classified == resilience::outcome::failure};
            if (!retryable || !delay || steady::now() + as_duration(*delay) >= deadline)
                co_return last;
            if (!take_retry_slot(shared, stats, retry_slot))
                co_return last;
            stale_resend = false;
            if (*delay > 0) {
                asio::steady_timer pause(co_await asio::this_coro::executor, as_duration(*delay));
                co_await pause.async_wait(nothrow_awaitable);
            }
            previous = ep; // the retry goes to another endpoint when there is one
        }
    }

    // A retry (or resend) takes a place in the retry budget, or is refused (and counted either way).
    static bool take_retry_slot(resilience::upstream_resilience& shared, upstream_stats& stats, resilience::retry_permit& slot)
    {
        if (!slot.try_acquire(shared.budget, shared.bulk.in_flight())) {
            stats.count(retry_result::budget_exhausted);
            return false;
        }
        stats.count(retry_result::attempted);
        return true;
    }

    // `out.response` holds the upstream's answer when r.error == ok (a failure status).
    asio::awaitable<void> fallback(std::size_t u, call_result r, fallback_trigger trigger, int depth, forward_result& out)
    {
        auto& shared = *gen_.rt->resilience[u];
        auto& stats = gen_.stats.upstreams[u];
        const auto& ucfg = shared.cfg;
        const std::string_view reason = trigger_name(trigger);
        const long retry_after = retry_after_seconds(shared.breaker);

        for (std::size_t f = 0; f < ucfg.fallbacks.size(); ++f) {
            const auto& fb = ucfg.fallbacks[f];
            if (!(fb.triggers & static_cast<std::uint8_t>(trigger)))
                continue;
            switch (fb.kind) {
            case config::fallback_kind::static_response: {
                stats.count(fallback_served::static_fallback);
                const long wait = trigger == fallback_trigger::circuit_open ? retry_after : 0;
                if (const auto* ready = gen_.rt->static_answer(u, f, trigger)) {
                    out.error = error_or_status(r);
                    out.upstream = ucfg.name;
                    out.from_fallback = true;
                    out.prerendered = ready;
                    out.retry_after_seconds = wait;
                    co_return;
                }
                auto res = render_static_fallback(fb, {ucfg.name, wait, reason});
                mark_fallback(res, "static", reason);
                out = forward_result{std::move(res), error_or_status(r), ucfg.name, true};
                co_return;
            }
            case config::fallback_kind::stale: {
                if (!shared.cache)
                    continue;
                ensure_prepared(); // the cache keys on the request as sent upstream
                auto hit = shared.cache->lookup(req_, steady_now());
                if (!hit)
                    continue; // nothing (fresh enough) to serve: try the next fallback
                auto res = render_stale_fallback(*hit, steady_now());
                mark_fallback(res, "stale", reason);
                stats.count(fallback_served::stale_fallback);
                out = forward_result{std::move(res), error_or_status(r), ucfg.name, true};
                co_return;
            }
            case config::fallback_kind::upstream: {
                if (depth > 0)
                    continue;
                // A request that must not be sent twice goes elsewhere only if the first upstream
                // certainly did not get it (refused before sending, or the connection never opened).
                if (maybe_sent_ && !method_retryable(req_, ucfg.retries)) // req_ is prepared once maybe_sent_
                    continue;
                const auto* target = cfg_.find_upstream(fb.upstream);
                const std::size_t t = static_cast<std::size_t>(target - cfg_.upstreams.data());
                ensure_prepared();
                // The failover target gets the same target path (it serves the same API: the route's
                // prefix was stripped for it too) but its own Host: its host_rewrite, else the client's.
                http::set_field(req_, {bhttp::field::host}, failover_host(*target));
                forward_result other;
                co_await to_upstream(t, depth + 1, other);
                if (other.error != proxy_error::ok || other.from_fallback || other.response.result_int() >= 500)
                    continue; // the failover did not help either: next fallback
                mark_fallback(other.response, "upstream:" + fb.upstream, reason);
                stats.count(fallback_served::upstream_fallback);
                other.from_fallback = true;
                out = std::move(other);
                co_return;
            }
            case config::fallback_kind::error: {
                default_answer(u, r, retry_after, out);
                mark_fallback(out.response, "error", reason);
                stats.count(fallback_served::error_fallback);
                out.from_fallback = true;
                co_return;
            }
            }
        }
        default_answer(u, r, retry_after, out);
    }

    // Without a fallback: an upstream's failure response as it is, or the explicit proxy error.
    // `out.response` holds the upstream's answer when r.error == ok.
    void default_answer(std::size_t u, const call_result& r, long retry_after, forward_result& out)
    {
        const auto& ucfg = cfg_.upstreams[u];
        out.upstream = ucfg.name;
        out.error = r.error;
        if (r.error == proxy_error::ok) {
            prepare_client_response(out.response, head_, cfg_);
            return;
        }
        if (r.error == proxy_error::circuit_open) {
            std::string_view why = r.rejection == resilience::admission::rejected_probes ? "half-open: the allowed probes are already in flight"
                                   : r.rejection == resilience::admission::rejected_ramp ? "recovering: admitting a growing share of traffic"
                                                                                         : "the circuit is open";
            const auto& cb = gen_.rt->resilience[u]->breaker;
            out.response = http::make_circuit_open_response(ucfg.name, resilience::to_string(cb.state()), retry_after, why);
            return;
        }
        out.response = http::make_error_response(r.error, ucfg.name, r.detail);
    }

    // What a fallback replaced: the proxy error, or the upstream's failure status.
    static proxy_error error_or_status(const call_result& r)
    {
        return r.error == proxy_error::ok ? proxy_error::upstream_failure_status : r.error;
    }

    // Whole seconds until the next probe, rounded up, at least 1. The breaker stores times at
    // millisecond resolution, so up to 1 ms of its rounding is not allowed to add a second.
    static long retry_after_seconds(const resilience::circuit_breaker& cb)
    {
        const nanos wait = cb.time_until_probe();
        return std::max<long>(1, static_cast<long>((wait - millis(1) + seconds(1) - 1) / seconds(1)));
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
        prepare_upstream_request(req_, route_, cfg_, cfg_.upstreams[route_.upstream], client_);
        prepared_ = true;
    }

    worker_context& worker_;
    worker_generation& gen_;
    const config::config& cfg_;
    http::request& req_;
    const routing::route_match& route_;
    const bool head_;
    const client_info client_;
    client_watch* watch_;
    bool prepared_ = false;
    bool maybe_sent_ = false; // some attempt's request may have reached an upstream
};

} // namespace

asio::awaitable<void> forward_request(worker_context& worker, worker_generation& gen, http::request& req,
                                      const routing::route_match& route, const client_info& client, forward_result& out)
{
    const bool head = req.method() == bhttp::verb::head;
    forwarder f(worker, gen, req, route, head, client);
    co_await f.to_upstream(route.upstream, 0, out);
    // Remember good answers for the stale fallback (opt-in per upstream).
    auto& shared = *gen.rt->resilience[route.upstream];
    if (shared.cache && out.error == proxy_error::ok && !out.from_fallback)
        shared.cache->store(req, out.response, steady_now());
}

} // namespace breakerbox::forward
