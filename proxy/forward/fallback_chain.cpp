#include "forward/fallback_chain.hpp"

#include "forward/retry_policy.hpp"
#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "queue/queue_request.hpp"
#include "queue/queue_store.hpp"
#include "queue/queue_wait.hpp"
#include "resilience/fallback_response.hpp"

namespace breakerbox::forward {

using config::fallback_kind;
using config::fallback_trigger;
using resilience::mark_fallback;
using runtime::upstream_handle;
namespace bhttp = boost::beast::http;

namespace {

// What a fallback replaced: the proxy error, or the upstream's failure status.
proxy_error error_or_status(const call_result& r)
{
    return r.error == proxy_error::ok ? proxy_error::upstream_failure_status : r.error;
}

// An answer a fallback made, with its marks (X-Breakerbox-Fallback and its reason).
void answer_with(forward_result& out, http::response res, std::string_view kind, const upstream_handle& up,
                 const fallback_cause& cause)
{
    mark_fallback(res, kind, cause.reason);
    out = forward_result{std::move(res), error_or_status(cause.result), up.cfg.name, true};
}

// The Host a failover target gets: its own host_rewrite, else the client's Host (or the absolute-form
// target's authority), else its first endpoint. Never the first upstream's rewritten one.
std::string failover_host(const config::upstream_config& target, std::string_view authority)
{
    if (!target.host_rewrite.empty())
        return target.host_rewrite;
    if (!authority.empty())
        return std::string(authority);
    return target.endpoints.front().text();
}

// Why a circuit_open answer: the detail of the 503's body.
std::string_view circuit_open_why(const call_result& r)
{
    if (r.by_cluster)
        return "the cluster's circuit is open (a quorum of replicas)";
    switch (r.rejection) {
    case resilience::admission::rejected_probes: return "half-open: the allowed probes are already in flight";
    case resilience::admission::rejected_ramp: return "recovering: admitting a growing share of traffic";
    default: return "the circuit is open";
    }
}

// Whether the queue takes this request at all (counted when its size is the reason it does not).
bool queue_takes(fallback_call& call, queue::queue_store& store, const upstream_handle& up,
                 const config::queue_fallback_config& q)
{
    const auto& req = call.request();
    // Only what the upstream certainly did not get: an attempt may have reached it before the circuit
    // turned a retry away (or cancel_in_flight ended it), or a failover target may have had it.
    // An upload is not stored: only its replay prefix was ever held.
    if (call.maybe_sent() || call.has_upload() || !queue::queueable(q, req, call.route().origin_target))
        return false;
    if (req.body().size() > q.max_body_size) {
        store.counters(up.cfg.name).count(queue::rejection::body_too_large);
        return false;
    }
    return true;
}

queue::enqueue_request stored_form(const upstream_handle& up, const config::queue_fallback_config& q, const http::request& req)
{
    queue::enqueue_request er;
    er.upstream = up.cfg.name;
    er.idempotency_key = std::string(http::value_of(req, http::field_name::of(queue::idempotency_key_header)));
    er.key_from_client = !er.idempotency_key.empty();
    er.request = queue::to_stored(req, q.store_credentials);
    er.fingerprint = queue::fingerprint(er.request, http::value_of(req, {bhttp::field::authorization}));
    er.limits = {q.max_entries, q.max_bytes};
    return er;
}

} // namespace

bool serve_static(const runtime::worker_generation& gen, const upstream_handle& up, std::size_t f, const fallback_cause& cause,
                  forward_result& out)
{
    const auto& fb = up.cfg.fallbacks[f];
    const long wait = cause.trigger == fallback_trigger::circuit_open ? cause.retry_after : 0;
    if (const auto* ready = gen.config->static_answer(up.index, f, cause.trigger)) {
        out.error = error_or_status(cause.result);
        out.upstream = up.cfg.name;
        out.from_fallback = true;
        out.prerendered = ready;
        out.retry_after_seconds = wait;
        return true;
    }
    answer_with(out, resilience::render_static_fallback(fb, {up.cfg.name, wait, cause.reason}), name_of(fb.kind), up, cause);
    return true;
}

bool serve_stale(fallback_call& call, const upstream_handle& up, const fallback_cause& cause, nanos now, forward_result& out)
{
    if (!up.shared.cache)
        return false;
    auto hit = up.shared.cache->lookup(call.prepared_request(), now); // the cache keys on the request as sent upstream
    if (!hit)
        return false;
    answer_with(out, resilience::render_stale_fallback(*hit, now), name_of(fallback_kind::stale), up, cause);
    return true;
}

asio::awaitable<bool> serve_failover(fallback_call& call, runtime::worker_generation& gen, const upstream_handle& up,
                                     const config::fallback_config& fb, const fallback_cause& cause, forward_result& out)
{
    // A request that must not be sent twice goes elsewhere only if the first upstream certainly did not
    // get it (refused before sending, or the connection never opened); an upload only while replayable
    // (a failover is not a retry: not counted as an abandoned one).
    if (call.maybe_sent() && !method_retryable(call.prepared_request(), up.cfg.retries))
        co_return false;
    auto* target = gen.find(fb.upstream); // the loader checked that it exists
    if (!call.replayable() || !target)
        co_return false;
    // The failover target gets the same target path (it serves the same API: the route's prefix was
    // stripped for it too) but its own Host: its host_rewrite, else the client's.
    http::set_field(call.prepared_request(), {bhttp::field::host}, failover_host(target->cfg, call.route().authority));
    forward_result other;
    co_await call.call_failover(*target, other);
    if (other.error != proxy_error::ok || other.from_fallback || other.response.result_int() >= 500)
        co_return false; // the failover did not help either: next fallback
    mark_fallback(other.response, std::string(name_of(fb.kind)) + ":" + fb.upstream, cause.reason);
    other.from_fallback = true;
    out = std::move(other);
    co_return true;
}

// Queue for later (docs/queue.md): the request is stored durably and answered 202 once committed; a
// request the queue does not take (method, path, Prefer, size, full, store error) passes to the next
// fallback.
asio::awaitable<bool> serve_queue(fallback_call& call, queue::queue_store* store, const config::config& cfg,
                                  const upstream_handle& up, const config::queue_fallback_config& q, const fallback_cause& cause,
                                  forward_result& out)
{
    if (!store)
        co_return false;
    if (!queue_takes(call, *store, up, q))
        co_return false;
    // Stored as it will be sent: Host, target and forwarding fields as for a live attempt.
    const http::request& req = call.prepared_request();
    auto er = stored_form(up, q, req);
    auto abandoned = er.abandoned = std::make_shared<std::atomic<bool>>(false);
    const auto reply = co_await queue::within<queue::enqueue_result>(
        cfg.queue_store.commit_timeout, [&](auto handler) { store->async_enqueue(std::move(er), std::move(handler)); });
    if (!reply.ok()) {                                  // the next fallback answers
        if (reply.error == queue::queue_error::timeout) // a stalled disk: an enqueue not yet begun is dropped
            abandoned->store(true, std::memory_order_release);
        store->counters(up.cfg.name)
            .count(reply.error == queue::queue_error::timeout ? queue::rejection::timeout : queue::rejection::store_error);
        co_return false;
    }
    const auto& stored = reply.value;
    const unsigned version = req.version();
    const auto kind = name_of(fallback_kind::queue);
    switch (stored.status) {
    case queue::enqueue_status::stored:
    case queue::enqueue_status::duplicate:
        answer_with(out,
                    queue::accepted_response(stored, up.cfg.name, cfg.queue_store.status_path, cause.retry_after,
                                             queue::prefers_respond_async(req), version),
                    kind, up, cause);
        co_return true;
    case queue::enqueue_status::key_reused:
        answer_with(out, queue::key_reused_response(up.cfg.name, version), kind, up, cause);
        co_return true;
    case queue::enqueue_status::full:
    default: store->counters(up.cfg.name).count(queue::rejection::full); co_return false;
    }
}

bool serve_error(fallback_call& call, upstream_handle& up, const fallback_cause& cause, forward_result& out)
{
    default_answer(call, up, cause, out);
    mark_fallback(out.response, name_of(fallback_kind::error), cause.reason);
    out.from_fallback = true;
    return true;
}

void default_answer(fallback_call& call, upstream_handle& up, const fallback_cause& cause, forward_result& out)
{
    const call_result& r = cause.result;
    const auto& name = up.cfg.name;
    out.upstream = name;
    out.error = r.error;
    if (r.error == proxy_error::ok) {
        if (!call.pass_on(up, out)) { // a streamed failure answer without a max_streams place
            out.response = http::make_error_response(proxy_error::stream_limit, name,
                                                     "the answer streams and " + name + "'s streaming.max_streams are in use");
            out.error = proxy_error::stream_limit;
        }
        return;
    }
    if (r.error == proxy_error::circuit_open) {
        out.response =
            http::make_circuit_open_response(name, resilience::to_string(cause.circuit.state), name_of(cause.circuit.decided_by),
                                             cause.retry_after, circuit_open_why(r));
        return;
    }
    out.response = http::make_error_response(r.error, name, r.detail);
}

asio::awaitable<void> run_fallbacks(fallback_call& call, runtime::worker_context& worker, runtime::worker_generation& gen,
                                    upstream_handle& up, call_result r, fallback_trigger trigger, int depth, forward_result& out)
{
    const nanos now = worker.clk.now();
    const auto circuit = resilience::effective_circuit(up.shared.breaker, up.shared.cluster, now);
    const fallback_cause cause{std::move(r), trigger, name_of(trigger), circuit, resilience::retry_after_seconds(circuit)};
    for (std::size_t f = 0; f < up.cfg.fallbacks.size(); ++f) {
        const auto& fb = up.cfg.fallbacks[f];
        if (!(fb.triggers & static_cast<std::uint8_t>(trigger)))
            continue;
        bool served = false;
        switch (fb.kind) {
        case fallback_kind::static_response: served = serve_static(gen, up, f, cause, out); break;
        case fallback_kind::stale:
            served = serve_stale(call, up, cause, worker.clk.now(), out);
            break; // (after a failover's time)
        case fallback_kind::upstream: served = depth == 0 && co_await serve_failover(call, gen, up, fb, cause, out); break;
        case fallback_kind::error: served = serve_error(call, up, cause, out); break;
        case fallback_kind::queue:
            served = depth == 0 && co_await serve_queue(call, worker.state.queue, gen.config->cfg, up, fb.queue, cause, out);
            break;
        }
        if (!served)
            continue;
        up.stats.count(fb.kind);
        if (fb.kind != fallback_kind::upstream && fb.kind != fallback_kind::error) {
            out.body.reset(); // a streamed answer replaced: its connection closes
            out.streamed_from = nullptr;
        }
        co_return;
    }
    default_answer(call, up, cause, out);
}

} // namespace breakerbox::forward
