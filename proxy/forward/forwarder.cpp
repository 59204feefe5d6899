#include "forward/forwarder.hpp"

#include "forward/attempt_outcome.hpp"
#include "forward/bulkhead_wait.hpp"
#include "forward/fallback_chain.hpp"
#include "forward/outcome_table.hpp"
#include "forward/retry_policy.hpp"
#include "forward/upstream_exchange.hpp"
#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"
#include "http/rewrite.hpp"
#include "http/streaming_rules.hpp"
#include "resilience/breaker_permit.hpp"

namespace breakerbox::forward {
namespace {

using runtime::rejection_reason;
using runtime::retry_result;
using runtime::upstream_handle;
using runtime::upstream_outcome;
namespace bhttp = boost::beast::http;
using config::fallback_trigger;

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

// The places a request that streams holds: only for an upgrade or an upload (null for the usual
// request, so that the coroutine frame holding the forwarder stays within Asio's recycling size).
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

class forwarder final : public fallback_call {
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
        const nanos now = clk_.now();                   // one clock reading serves the breaker, the deadline and the pool
        const auto gate = up.shared.cluster.admit(now); // scope: cluster — one load when there is no verdict
        call_result r;
        if (!refused_locally(up, gate, now, r)) {
            r = co_await call(up, out.response, now);
            if (gate == resilience::gate_admission::probe) // the cluster's probe: its outcome goes with the next sync
                record_cluster_probe(up, r);
        }
        if (r.error == proxy_error::ok && out.body.upgraded && !switched_as_asked(out.response)) {
            out.body.reset(); // a 101 to another protocol than the one asked for and allowed
            r = call_result{proxy_error::upstream_invalid_response,
                            up.cfg.name + " switched to a protocol the request did not ask for"};
        }
        if (r.error == proxy_error::ok && !r.failure_status && pass_on(up, out))
            co_return; // the usual case: the upstream's answer, without another coroutine
        co_await answer_otherwise(up, std::move(r), depth, out);
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
    // fallback_call
    http::request& prepared_request() override
    {
        ensure_prepared();
        return req_;
    }
    bool maybe_sent() const override { return maybe_sent_; }
    bool replayable() const override { return !client_.upload || client_.upload->rewind(); }
    bool has_upload() const override { return client_.upload != nullptr; }
    const http::request& request() const override { return req_; }
    const routing::route_match& route() const override { return route_; }
    asio::awaitable<void> call_failover(upstream_handle& target, forward_result& out) override
    {
        auto* const own = std::exchange(body_out_, &out.body);
        co_await to_upstream(target, 1, out);
        body_out_ = own;
    }

    // The answer when the upstream's own cannot simply pass on: the client's side ended, a trigger for
    // the fallbacks, or a streamed answer without a max_streams place.
    asio::awaitable<void> answer_otherwise(upstream_handle& up, call_result r, int depth, forward_result& out)
    {
        const auto trigger = trigger_of(r.error, r.failure_status);
        if (r.error != proxy_error::ok)
            out.body.reset();
        if (!trigger && r.error != proxy_error::ok) { // the client's side: gone, stalled, or no tunnel now
            out.response = http::make_error_response(r.error, up.cfg.name, r.detail);
            out.error = r.error;
        } else if (!trigger) { // an answer that streams, and no max_streams place (pass_on closed it)
            co_await run_fallbacks(*this, worker_, gen_, up, stream_limit_refusal(up), fallback_trigger::limit_reached, depth,
                                   out);
        } else {
            // A streamed failure answer stays open until a fallback replaces it (then its connection
            // closes); without one it is passed on, body and all.
            co_await run_fallbacks(*this, worker_, gen_, up, std::move(r), *trigger, depth, out);
        }
    }

    // What is refused before the call without the network — the cluster's verdict, a stream that has
    // no place, the circuit — into `r`; false when the call goes ahead. A cluster probe that turns out
    // not to be one gives its token back for the next request.
    bool refused_locally(upstream_handle& up, resilience::gate_admission gate, nanos now, call_result& r)
    {
        if (gate == resilience::gate_admission::reject) {
            r = cluster_refused(up);
            return true;
        }
        auto refused = refused_stream(up);
        if (!refused)
            refused = rejected_outright(up, now);
        if (!refused)
            return false;
        r = std::move(*refused);
        if (gate == resilience::gate_admission::probe)
            up.shared.cluster.return_token();
        return true;
    }

    // The upstream's own answer for the client: a buffered one re-framed whole; a streamed one (or a 101)
    // with its head only, the rest relayed by finish_streamed.
    // False when the answer streams and no max_streams place is free (its connection is closed then).
    bool pass_on(upstream_handle& up, forward_result& out) override
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
        return http::same_protocol(http::value_of(res, {bhttp::field::upgrade}), std::string_view(places_->upgrade));
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
                return refused(up, proxy_error::upgrade_refused, "breakerbox is draining: no new upgraded connections");
            places_->tunnel = resilience::concurrency_slot::try_take(up.shared.tunnels);
            if (!places_->tunnel)
                return refused(up, proxy_error::tunnel_limit, up.cfg.name + "'s streaming.max_tunnels are in use");
        }
        if (client_.upload && !places_->upload) {
            places_->upload = resilience::concurrency_slot::try_take(up.shared.streams);
            if (!places_->upload)
                return refused(up, proxy_error::stream_limit, up.cfg.name + "'s streaming.max_streams are in use");
        }
        return std::nullopt;
    }

    // Whether an upload can be sent again (a retry, a resend): only while no byte beyond the replay
    // buffer was read from the client. Otherwise the retry is abandoned, and counted.
    bool replayable_for_retry(const upstream_handle& up)
    {
        if (replayable())
            return true;
        up.stats.count(retry_result::abandoned);
        return false;
    }

    // One upstream with its bulkhead, breaker and retries: a bulkhead slot, then attempts — permit,
    // endpoint, exchange, record, decide whether to retry, back off — until one answer stands. The
    // upstream's answer, when there is one, goes to `response`. `started_ns`: the clock when the request
    // reached this upstream. The steps are plain functions: only the waits are coroutine code (GCC keeps
    // every local of a coroutine in its frame, and a frame above about 1 KiB costs an allocation).
    asio::awaitable<call_result> call(upstream_handle& up, http::response& response, nanos started_ns)
    {
        auto& shared = up.shared;
        const nanos deadline = started_ns + up.cfg.request_timeout;
        nanos unspent_reading = started_ns; // still the current time: nothing has waited since it was read
        // An upload holds a max_streams place instead of a bulkhead slot (docs/streaming.md).
        bulkhead_permit slot =
            client_.upload ? bulkhead_permit() : try_take_slot(shared.bulk); // the usual case, without a coroutine
        if (!slot && !client_.upload) {
            const auto admitted = co_await acquire_bulkhead(shared.bulk, up.cfg.bulkhead.queue_timeout, slot, client_.socket);
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
                prepare_first_attempt(up.cfg.retries, st);
            exchange_result result;
            {
                outstanding_guard counted{*ep};
                result =
                    co_await exchange(up.local, *ep, req_,
                                      attempt_spec_for(up, st, attempt_start, deadline, trips_before, permit), response, watch_);
            }
            bool resend = false;
            if (auto done = after_attempt(up, *ep, result, response, permit, attempt_start, st, resend))
                co_return std::move(*done);
            if (resend) {
                --st.attempt; // a resend is not counted against max_attempts
                continue;
            }
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

    // After an attempt's exchange: a resend after a stale connection (`resend` set), an end from outside
    // (its result), or the outcome recorded into st.last (nullopt).
    std::optional<call_result> after_attempt(upstream_handle& up, upstream::endpoint_slot& ep, exchange_result& result,
                                             const http::response& response, resilience::breaker_permit& permit,
                                             nanos attempt_start, attempt_state& st, bool& resend)
    {
        maybe_sent_ = maybe_sent_ || result.maybe_sent;
        if (result.stale_connection && st.resendable && !st.stale_resend && !replayable_for_retry(up))
            st.stale_resend = true; // committed: no resend
        if ((resend = resend_after_stale_connection(up, st, result)))
            return std::nullopt;
        if (auto ended = ended_from_outside(up, st, result, permit))
            return ended;
        st.streamed_head = body_out_ && *body_out_;
        const auto classified = record_attempt(up, ep, result, response, permit, attempt_start, st, clk_);
        // `response` keeps the last answer the upstream gave: an attempt that gets none leaves it.
        st.last = call_result{result.error, std::move(result.detail),
                              result.error == proxy_error::ok && classified == resilience::outcome::failure};
        return std::nullopt;
    }

    void prepare_first_attempt(const config::retry_config& rc, attempt_state& st)
    {
        ensure_prepared();
        st.repeatable = method_retryable(req_, rc);
        st.resendable = st.repeatable && rc.max_attempts > 1 && rc.on_reset;
    }

    attempt_spec attempt_spec_for(upstream_handle& up, const attempt_state& st, nanos attempt_start, nanos deadline,
                                  std::uint64_t trips_before, resilience::breaker_permit& permit) const
    {
        const auto& ucfg = up.cfg;
        const nanos per_try = ucfg.retries.per_try_timeout;
        // Without a relay (queue deliveries) every body is read whole: up to the larger of the response
        // buffer and 8 MiB (the limit before streaming existed), within max_response_body.
        const auto& lim = cfg_.limits;
        return {.deadline = clk_.to_steady(per_try > 0 ? std::min(deadline, attempt_start + per_try) : deadline),
                .connect_timeout = ucfg.connect_timeout,
                .max_response_body =
                    body_out_ ? lim.max_response_body
                              : std::min(lim.max_response_body, std::max<std::uint64_t>(lim.response_buffer, 8u << 20)),
                .now = attempt_start,
                .cancel_on_trip = ucfg.breaker.cancel_in_flight ? &up.shared.breaker : nullptr,
                .trips_at_admission = trips_before,
                .slow_permit = ucfg.breaker.slow_call_in_flight ? &permit : nullptr,
                .resendable = st.resendable,
                .fresh_connection = st.stale_resend,
                .clk = &clk_,
                .tls_handshakes = up.stats.tls_handshakes,
                .body = body_out_,
                .response_buffer = lim.response_buffer,
                .upload = client_.upload,
                .stream_idle_timeout = ucfg.streaming.idle_timeout,
                .upgrade = places_ && !places_->upgrade.empty(),
                .head_timeout = per_try > 0 ? std::min(per_try, ucfg.request_timeout) : ucfg.request_timeout,
                .interim = client_.interim};
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
        if (!replayable_for_retry(up) || !take_retry_slot(up, st.retry_slot))
            return std::nullopt;
        st.stale_resend = false;
        return delay;
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
