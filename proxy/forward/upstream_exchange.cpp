#include "forward/upstream_exchange.hpp"

#include "core/write_all.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/message_rules.hpp"
#include "http/read_message.hpp"
#include "http/serialize.hpp"
#include "http/streaming_rules.hpp"
#include "tls/tls_connection.hpp"
#include "tls/upstream_tls.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <cstdio>
#include <optional>

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;
using steady = std::chrono::steady_clock;

// Most responses arrive in one read of this size (a pooled connection keeps the buffer).
constexpr std::size_t response_read_size = 8192;

bool is_connection_closed(const error_code& ec)
{
    return ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::error::connection_aborted || tls::is_tls_close(ec);
}

exchange_result failure(proxy_error e, std::string detail)
{
    exchange_result r;
    r.error = e;
    r.detail = std::move(detail);
    return r;
}

// A failure after (some of) the request was written: the upstream may have it.
exchange_result sent_failure(exchange_result r)
{
    r.maybe_sent = true;
    return r;
}

// Helpers that build results outside the coroutine: GCC keeps every local of a coroutine in its frame,
// and a frame above Asio's recycling size (about 1 KiB) costs an allocation per call.
exchange_result write_failure(const error_code& ec, std::size_t written, const std::string& endpoint)
{
    auto failed = ec == beast::error::timeout
                      ? failure(proxy_error::upstream_timeout, "writing the request to " + endpoint + " timed out")
                      : failure(proxy_error::upstream_reset, "writing the request to " + endpoint + " failed: " + ec.message());
    return written ? sent_failure(std::move(failed)) : failed; // nothing written: the request never left
}

exchange_result coding_failure(const http::response& res, const std::string& endpoint)
{
    return sent_failure(failure(proxy_error::upstream_invalid_response,
                                endpoint + " sent a transfer coding other than chunked (RFC 9112 §6.1): " +
                                    std::string(http::value_of(res, {bhttp::field::transfer_encoding}))));
}

// Whether the exchange was cancelled from outside (the client left, or the circuit opened): the answer
// then is not the upstream's.
bool cancelled_from_outside(const client_watch* watch) { return watch && (watch->client_gone() || watch->circuit_opened()); }

exchange_result cancellation(const client_watch& watch, const std::string& endpoint, bool maybe_sent)
{
    auto r = watch.client_gone()
                 ? failure(proxy_error::client_closed, "the client went away; the upstream request was cancelled")
                 : failure(proxy_error::circuit_open, "the circuit of " + endpoint + " opened while the request was in flight");
    r.maybe_sent = maybe_sent;
    return r;
}

exchange_result answered_at(nanos finished)
{
    exchange_result done{proxy_error::ok, {}, finished};
    done.maybe_sent = true;
    return done;
}

exchange_result stale_failure(std::string detail)
{
    auto r = sent_failure(failure(proxy_error::upstream_reset, std::move(detail)));
    r.stale_connection = true;
    return r;
}

// Maps a read error to the documented reason.
exchange_result read_failure(const error_code& ec, const std::string& endpoint)
{
    if (ec == beast::error::timeout)
        return failure(proxy_error::upstream_timeout, "no complete response from " + endpoint + " before the deadline");
    if (ec == bhttp::error::body_limit)
        return failure(proxy_error::upstream_response_too_large, "response body from " + endpoint + " exceeds max_response_body");
    if (is_connection_closed(ec) || ec == bhttp::error::partial_message)
        return failure(proxy_error::upstream_reset, endpoint + " closed the connection: " + ec.message());
    if (ec.category() == make_error_code(bhttp::error::bad_version).category())
        return failure(proxy_error::upstream_invalid_response, "invalid response from " + endpoint + ": " + ec.message());
    return failure(proxy_error::upstream_reset, "reading from " + endpoint + " failed: " + ec.message());
}

// The result of a failed TLS handshake: connect-class, nothing of the request was sent.
exchange_result handshake_failure(tls::handshake_outcome& h) { return failure(h.error, std::move(h.detail)); }

void count_handshake(const attempt_spec& limits, tls::handshake_result r)
{
    if (static_cast<std::size_t>(r) < limits.tls_handshakes.size())
        limits.tls_handshakes[static_cast<std::size_t>(r)].add();
}

// A new connection to `ep`: TCP connect, then for an upstream with tls the handshake, both within
// connect_timeout (and the request's deadline). nullopt: ready for the request.
asio::awaitable<std::optional<exchange_result>> open_connection(upstream::worker_upstream& up,
                                                                upstream::upstream_connection& conn, upstream::endpoint_slot& ep,
                                                                const attempt_spec& limits)
{
    auto connect_deadline = std::min(limits.deadline, limits.clk->to_steady(limits.clk->now() + limits.connect_timeout));
    conn.stream.expires_at(connect_deadline);
    auto ec = co_await conn.stream.connect(ep.address);
    if (ec == beast::error::timeout) {
        if (connect_deadline >= limits.deadline)
            co_return failure(proxy_error::upstream_timeout, "request deadline passed while connecting to " + ep.label);
        co_return failure(proxy_error::upstream_connect_timeout, "connecting to " + ep.label + " timed out");
    }
    if (ec)
        co_return failure(proxy_error::upstream_connect_failed, "connecting to " + ep.label + " failed: " + ec.message());
    conn.stream.socket().set_option(tcp::no_delay(true), ec);
    if (!up.tls())
        co_return std::nullopt;
    conn.tls = std::make_unique<tls::tls_connection>(conn.stream.socket(), *up.tls());
    conn.stream.shut_down_on_abort(); // the TLS engine starts socket operations a cancel cannot reach
    auto handshake =
        co_await tls::client_handshake(*conn.tls, conn.stream, &ep.tls_sessions, ep.label, connect_deadline >= limits.deadline);
    count_handshake(limits, handshake.result);
    if (handshake.error != proxy_error::ok)
        co_return handshake_failure(handshake);
    co_return std::nullopt;
}

using response_parser = bhttp::response_parser<bhttp::string_body>;

// The TLS halves of the exchange's write and read: coroutines of their own, so that the plain path's
// frame does not carry their state.
asio::awaitable<write_progress> write_through_tls(upstream::upstream_connection& conn, const head_and_body& message)
{
    tls::tls_io io{conn.stream, conn.tls->stream};
    co_return co_await message.write_rest(io, write_progress{});
}

// Whether the answer whose head is parsed streams rather than being read whole (docs/streaming.md):
// read_message's header check, with the exchange's limits as its context.
bool leave_body_open(const response_parser& parser, const void* context)
{
    const auto& limits = *static_cast<const attempt_spec*>(context);
    if (!limits.body || parser.get().result_int() / 100 == 1)
        return false;
    const auto length = parser.content_length();
    return !length || *length > limits.response_buffer || http::streams_response(parser.get());
}

asio::awaitable<error_code> read_through_tls(upstream::upstream_connection& conn, response_parser& parser,
                                             http::trailer_fence& fence, const attempt_spec& limits)
{
    tls::tls_io io{conn.stream, conn.tls->stream};
    co_return co_await http::read_message(io, conn.buffer, parser, fence, response_read_size, &leave_body_open, &limits);
}

// Writes `buffers` whole to the upstream, through TLS when the connection has it, under a deadline
// `idle` from now.
template <class Buffers>
asio::awaitable<write_progress> write_to_upstream(upstream::upstream_connection& conn, const Buffers& buffers, nanos idle)
{
    conn.stream.expires_after(as_duration(idle));
    if (conn.tls) {
        tls::tls_io io{conn.stream, conn.tls->stream};
        co_return co_await write_rest(io, buffers, write_progress{}, 0);
    }
    co_return co_await write_rest(conn.stream, buffers, try_write(conn.stream, buffers), 0);
}

// An upload's body after its head: piece by piece from the client, each one written before the next
// is read (back-pressure: a slow upstream slows the client), chunk-framed when the upload is chunked.
// Errors: the client's (client_closed unless it timed out: request_timeout), or the upstream's write.
struct upload_progress {
    write_progress sent;     // towards the upstream
    error_code client_error; // reading from the client
};

asio::awaitable<upload_progress> send_upload(upstream::upstream_connection& conn, upload_source& src, nanos idle)
{
    upload_progress p;
    http::chunk_frame chunk;
    for (;;) {
        std::string_view piece;
        if (auto ec = co_await src.next(piece)) {
            p.client_error = ec;
            co_return p;
        }
        if (piece.empty() && !src.chunked)
            co_return p;
        write_progress w;
        if (src.chunked) {
            const auto framed = chunk.frame(piece);             // the last chunk (size 0) ends it
            w = co_await write_to_upstream(conn, framed, idle); // (named: no temporary across the suspension)
        } else {
            w = co_await write_to_upstream(conn, asio::buffer(piece), idle);
        }
        p.sent.written += w.written;
        if (w.ec) {
            p.sent.ec = w.ec;
            co_return p;
        }
        if (piece.empty())
            co_return p;
    }
}

// How long the exchange waits for the answer an upstream may have sent before it stopped taking an
// upload's body (a 413, a 401): it is usually in the socket already.
constexpr auto early_answer_wait = std::chrono::seconds(1);

// Why the client's body stopped, as the client is answered: it stalled (408), outgrew max_request_body
// (413), sent a bad chunk (400), or went away.
proxy_error client_reason(const error_code& ec)
{
    if (ec == beast::error::timeout)
        return proxy_error::request_timeout;
    if (ec == bhttp::error::body_limit)
        return proxy_error::body_too_large;
    if (ec.category() == make_error_code(bhttp::error::bad_chunk).category() && ec != bhttp::error::partial_message)
        return proxy_error::bad_request;
    return proxy_error::client_closed;
}

exchange_result client_stopped(proxy_error reason, const upstream::upstream_connection& conn)
{
    auto r = failure(reason, "the client's request body stopped: " + conn.upload_error.message());
    r.maybe_sent = true;
    return r;
}

// The upstream stopped taking the body and no answer of its own came: the write's failure.
exchange_result upload_write_failed(const upstream::upstream_connection& conn, const std::string& endpoint)
{
    return sent_failure(write_failure(conn.upload_error, 1, endpoint));
}

// Sends an upload's body after its head (send_upload), then arms what the response wait needs: the head
// timeout from now, and the client watch (without the slow-call record: the call's time so far was the
// client's upload). ok, or the client's failure (the reason; the error in conn.upload_error). When the
// upstream stopped taking the body, its answer may already be there: the connection is marked
// request_incomplete and read for a moment (early_answer_wait) before the write's failure stands.
asio::awaitable<proxy_error> upload_body(upstream::upstream_connection& conn, const attempt_spec& limits, client_watch* watch)
{
    const nanos started = limits.clk->now();
    const auto p = co_await send_upload(conn, *limits.upload, limits.stream_idle_timeout);
    conn.upload_took = limits.clk->now() - started;
    if (p.client_error) {
        conn.upload_error = p.client_error;
        co_return client_reason(p.client_error);
    }
    if (p.sent.ec) {
        conn.upload_error = p.sent.ec;
        conn.request_incomplete = true;
        conn.stream.expires_after(early_answer_wait);
        co_return proxy_error::ok;
    }
    conn.stream.expires_after(as_duration(limits.head_timeout));
    if (watch)
        watch->arm(conn.stream, limits.clk->now(), limits.cancel_on_trip, limits.trips_at_admission, nullptr);
    co_return proxy_error::ok;
}

// Disarms the client watch however the exchange ends.
struct watch_guard {
    client_watch* watch;
    ~watch_guard()
    {
        if (watch)
            watch->disarm();
    }
};

// The connection takes the request: its deadline, its count, and the client watch armed on it. The
// caller's clock reading is recent enough, except on the second pass (after a stale pooled connection
// and a connect).
void start_request(upstream::upstream_connection& conn, const attempt_spec& limits, client_watch* watch, bool first_pass)
{
    conn.stream.expires_at(limits.deadline);
    ++conn.requests;
    conn.upload_took = 0;
    if (watch)
        watch->arm(conn.stream, first_pass ? limits.now : limits.clk->now(), limits.cancel_on_trip, limits.trips_at_admission,
                   limits.slow_permit);
}

// Whether a failed write goes again on a fresh connection: a pooled connection closed before a byte of
// the request left (nothing reached the upstream), and nothing cancelled the exchange from outside.
bool rewrite_on_fresh_connection(const upstream::upstream_connection& conn, const write_progress& sent, const client_watch* watch)
{
    return !cancelled_from_outside(watch) && conn.reused && is_connection_closed(sent.ec) && sent.written == 0;
}

// The result of a failed write that is not sent again here.
exchange_result write_failed(const upstream::upstream_connection& conn, const write_progress& sent, const client_watch* watch,
                             const std::string& endpoint)
{
    if (cancelled_from_outside(watch))
        return cancellation(*watch, endpoint, sent.written != 0);
    if (conn.reused && is_connection_closed(sent.ec))
        return stale_failure(endpoint + " closed the pooled connection while the request was written: " + sent.ec.message());
    return write_failure(sent.ec, sent.written, endpoint);
}

// Interim (1xx) responses passed on to the client per exchange; more are read and dropped (an upstream
// that floods 1xx cannot make breakerbox write without bound; the request deadline ends the exchange).
constexpr int max_forwarded_interims = 16;

// TLS 1.3 (RFC 8446 §4.4.2): the server judges our certificate (or its absence) after our side has
// finished the handshake, and says no with an alert. A server that closes the socket right after it makes
// our first write fail with a reset before the alert is read. So on a fresh TLS connection whose first
// write failed, what the server sent is read (it is already queued: the socket is closed, so no wait):
// an alert makes the failure the handshake's, never a reset.
bool refused_after_handshake(const upstream::upstream_connection& conn, const error_code& ec, const client_watch* watch)
{
    return conn.tls && !conn.reused && !cancelled_from_outside(watch) && tls::is_received_alert(ec);
}

asio::awaitable<error_code> read_pending_alert(upstream::upstream_connection& conn, const write_progress& sent)
{
    if (!conn.tls || conn.reused || sent.ec == beast::error::timeout || sent.ec == asio::error::operation_aborted)
        co_return sent.ec;
    auto [ec, n] = co_await conn.tls->stream.async_read_some(conn.buffer.prepare(512), nothrow_awaitable);
    co_return n ? sent.ec : conn.stream.io_error(ec);
}

exchange_result tls_refused(const error_code& ec, const std::string& endpoint)
{
    return sent_failure(failure(proxy_error::upstream_tls_handshake_failed,
                                endpoint + " refused the TLS session after the handshake: " + ec.message()));
}

// A fresh parser for the next response on `conn` (after an interim one, the final one).
void start_parser(upstream::upstream_connection& conn, const attempt_spec& limits, bool head)
{
    auto& parser = conn.parser;
    auto& fence = conn.fence;
    fence.reset(); // it refers to the parser: gone first
    parser.emplace();
    fence.emplace(*parser);
    parser->body_limit(limits.max_response_body);
    parser->header_limit(64 * 1024);
    if (head)
        parser->skip(true);
}

// The result of a failed read. `answered`: an interim 1xx came, so the upstream has the request.
exchange_result read_failed(const error_code& ec, const upstream::upstream_connection& conn, const response_parser& parser,
                            bool answered, const client_watch* watch, const std::string& endpoint)
{
    if (cancelled_from_outside(watch))
        return cancellation(*watch, endpoint, true);
    if (conn.reused && !answered && !parser.got_some() && is_connection_closed(ec))
        return stale_failure(endpoint + " closed the pooled connection before responding: " + ec.message());
    if (!parser.got_some() && refused_after_handshake(conn, ec, watch))
        return tls_refused(ec, endpoint);
    return sent_failure(read_failure(ec, endpoint));
}

// Whether a final response can be passed on: not a 101 unless the request asked to switch protocols
// (then only to the protocol it asked for, checked by the caller), nor a transfer coding the body would
// need undone (a bodiless answer's Transfer-Encoding describes nothing sent).
bool usable_response(const http::response& res, bool head, bool upgrade)
{
    const unsigned status = res.result_int();
    if (status == 101)
        return upgrade;
    return head || status == 204 || status == 304 || http::response_coding_supported(res);
}

exchange_result unusable_response(const http::response& res, const std::string& endpoint)
{
    if (res.result_int() == 101)
        return sent_failure(
            failure(proxy_error::upstream_invalid_response, endpoint + " switched protocols, which the request did not ask for"));
    return coding_failure(res, endpoint);
}

// The answer's head goes to the caller's message and its connection, positioned at the body (or, after
// a 101, at the tunnel's first byte), to the caller's open_body.
exchange_result leave_open(upstream::worker_upstream& up, upstream::endpoint_slot& ep,
                           std::unique_ptr<upstream::upstream_connection> conn, http::response& response, open_body& body,
                           const clock& clk)
{
    const auto& res = conn->parser->get();
    response.base() = res.base();
    response.body().clear();
    body.reset();
    body.upgraded = res.result_int() == 101;
    const auto length = conn->parser->content_length();
    body.known_length = !body.upgraded && length.has_value();
    body.length = length.value_or(0);
    body.keep_alive = !body.upgraded && !conn->request_incomplete && conn->parser->keep_alive();
    if (body.upgraded || body.known_length) { // relayed as bytes: the parser's part is over
        conn->fence.reset();
        conn->parser.reset();
    }
    auto done = answered_at(clk.now());
    done.upload_took = conn->upload_took;
    body.conn = std::move(conn);
    body.up = &up;
    body.ep = &ep;
    return done;
}

// The response goes to the caller's message; the connection back to the pool when it may carry another.
exchange_result deliver(upstream::worker_upstream& up, upstream::endpoint_slot& ep,
                        std::unique_ptr<upstream::upstream_connection> conn, response_parser& parser, http::response& response,
                        const clock& clk)
{
    const bool reusable = parser.keep_alive() && !conn->request_incomplete && conn->buffer.size() == 0 &&
                          (!conn->tls || tls::nothing_buffered(*conn->tls));
    response = parser.release();
    conn->fence.reset(); // the next exchange starts its own
    conn->parser.reset();
    const nanos finished = clk.now();
    auto done = answered_at(finished);
    done.upload_took = conn->upload_took;
    if (reusable)
        up.give_back(ep, std::move(conn), finished);
    return done;
}

// A response read that failed: a TLS 1.3 refusal that arrived instead of an answer, an upload whose
// write had failed and no early answer came after all (the write's failure stands), or the read's own
// failure.
exchange_result read_error(const error_code& rec, upstream::upstream_connection& conn, bool answered, client_watch* watch,
                           const std::string& label)
{
    if (!conn.parser->got_some() && refused_after_handshake(conn, rec, watch))
        return tls_refused(rec, label);
    if (conn.request_incomplete)
        return upload_write_failed(conn, label);
    return read_failed(rec, conn, *conn.parser, answered, watch, label);
}

} // namespace

asio::awaitable<exchange_result> exchange(upstream::worker_upstream& up, upstream::endpoint_slot& ep, const http::request& req,
                                          const attempt_spec& limits, http::response& response, client_watch* watch)
{
    const bool head = req.method() == bhttp::verb::head;
    watch_guard disarm_at_end{watch};
    for (int pass = 0; pass < 2; ++pass) { // pass 1: the write on a pooled connection failed before a byte left
        auto conn = pass == 0 && !limits.fresh_connection ? up.take_idle(ep, limits.now, !limits.resendable) : nullptr;
        if (!conn) {
            if (!up.has_capacity(ep))
                co_return failure(proxy_error::connection_limit, ep.label + " is at pool.max_connections_per_endpoint");
            conn = std::make_unique<upstream::upstream_connection>(co_await asio::this_coro::executor, ep.open_connections);
            if (auto failed = co_await open_connection(up, *conn, ep, limits))
                co_return std::move(*failed);
        }
        start_request(*conn, limits, limits.upload ? nullptr : watch, pass == 0); // an upload: watched after its body
        http::serialize_head(req, conn->head);
        const head_and_body message(conn->head, limits.upload ? std::string_view{} : std::string_view(req.body()));
        auto sent = conn->tls ? write_progress{} : message.try_write(conn->stream); // (TLS: a blocked write is retried as it was)
        if (conn->tls)
            sent = co_await write_through_tls(*conn, message);
        else if (!sent.finished)
            sent = co_await message.write_rest(conn->stream, sent);
        if (sent.ec) {
            if (rewrite_on_fresh_connection(*conn, sent, watch))
                continue;
            if (const auto alert = co_await read_pending_alert(*conn, sent); refused_after_handshake(*conn, alert, watch))
                co_return tls_refused(alert, ep.label);
            co_return write_failed(*conn, sent, watch, ep.label);
        }
        if (limits.upload) // the body streams from the client now (upload_body), then the response
            if (const auto client_side = co_await upload_body(*conn, limits, watch); client_side != proxy_error::ok)
                co_return client_stopped(client_side, *conn);
        int interims = 0; // forwarded to the client so far: at most max_forwarded_interims (an abuse bound)
        for (bool answered = false;; answered = true) { // interim 1xx responses are skipped (not 101)
            start_parser(*conn, limits, head);
            auto& parser = conn->parser;
            error_code rec;
            if (conn->tls)
                rec = co_await read_through_tls(*conn, *parser, *conn->fence, limits);
            else
                rec = co_await http::read_message(conn->stream, conn->buffer, *parser, *conn->fence, response_read_size,
                                                  &leave_body_open, &limits);
            if (rec)
                co_return read_error(rec, *conn, answered, watch, ep.label);
            const unsigned status = parser->get().result_int();
            if (status >= 100 && status < 200 && status != 101) {
                if (status != 100 && limits.interim && ++interims <= max_forwarded_interims) // RFC 9110 §15.2
                    co_await limits.interim->forward_interim(parser->get());
                continue;
            }
            if (!usable_response(parser->get(), head, limits.upgrade))
                co_return unusable_response(parser->get(), ep.label);
            if (status == 101 || !parser->is_done()) // a tunnel, or a body that streams
                co_return leave_open(up, ep, std::move(conn), response, *limits.body, *limits.clk);
            co_return deliver(up, ep, std::move(conn), *parser, response, *limits.clk);
        }
    }
    co_return failure(proxy_error::upstream_reset, ep.label + " closed the connection before the request was sent");
}

} // namespace breakerbox::forward
