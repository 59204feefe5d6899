#include "forward/stream_relay.hpp"

#include "core/write_all.hpp"
#include "http/framing.hpp"
#include "http/message_rules.hpp"
#include "http/parse_step.hpp"
#include "http/read_message.hpp"
#include "resilience/circuit_breaker.hpp"
#include "tls/tls_connection.hpp"
#include "upstream/upstream_connection.hpp"
#include "upstream/worker_upstream.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/error.hpp>

#include <array>
#include <cstdio>
#include <limits>
#include <optional>

namespace breakerbox::forward {
namespace {

namespace bhttp = boost::beast::http;
using steady = std::chrono::steady_clock;
using runtime::stream_end;

// The deadlines of one relay: each wait ends at the idle limit or the total one, whichever is first.
// Read from the injected clock; Asio's timers get its steady time points.
struct relay_clock {
    const clock& clk;
    nanos total_deadline = std::numeric_limits<nanos>::max();
    nanos idle = 0;

    steady::time_point next() const { return clk.to_steady(std::min(clk.now() + idle, total_deadline)); }
    stream_end timeout_kind() const { return clk.now() >= total_deadline ? stream_end::total_timeout : stream_end::idle_timeout; }
};

relay_clock clock_for(const clock& clk, nanos idle, nanos total)
{
    relay_clock c{clk};
    c.idle = idle;
    if (total > 0)
        c.total_deadline = clk.now() + total;
    return c;
}

// One read from the upstream connection into its buffer (through TLS when it has it).
asio::awaitable<error_code> read_upstream(upstream::upstream_connection& conn, std::size_t room, const relay_clock& rc)
{
    conn.stream.expires_at(rc.next());
    if (conn.stream.timed_out())
        co_return beast::error::timeout;
    std::size_t n = 0;
    error_code aec;
    if (conn.tls)
        std::tie(aec, n) = co_await conn.tls->stream.async_read_some(conn.buffer.prepare(room), nothrow_awaitable);
    else
        std::tie(aec, n) = co_await conn.stream.socket().async_read_some(conn.buffer.prepare(room), nothrow_awaitable);
    conn.buffer.commit(n);
    co_return n ? error_code{} : conn.stream.io_error(aec);
}

// Writes `buffers` to the client under the relay's deadline.
template <class Buffers>
asio::awaitable<error_code> write_client(deadline_stream& client, const Buffers& buffers, const relay_clock& rc)
{
    auto p = try_write(client, buffers);
    if (!p.finished) {
        client.expires_at(rc.next());
        p = co_await write_rest(client, buffers, p, 0);
    }
    co_return p.ec;
}

// A piece of the body for the client, chunk-framed when asked.
asio::awaitable<error_code> send_piece(deadline_stream& client, std::string_view piece, const relay_options& opt,
                                       const relay_clock& rc)
{
    if (!opt.chunked_to_client)
        co_return co_await write_client(client, asio::buffer(piece), rc);
    http::chunk_frame chunk;
    const auto framed = chunk.frame(piece); // (named: no temporary across the suspension)
    co_return co_await write_client(client, framed, rc);
}

void capture(const relay_options& opt, std::string_view piece, bool& within)
{
    if (!opt.capture || !within)
        return;
    if (opt.capture->size() + piece.size() > opt.capture_limit) {
        within = false;
        std::string().swap(*opt.capture);
        return;
    }
    opt.capture->append(piece);
}

stream_end read_end(const error_code& ec, const relay_clock& rc)
{
    return ec == beast::error::timeout ? rc.timeout_kind() : stream_end::upstream_failed;
}

// A client that stopped reading for the idle timeout is as good as gone (and not the upstream's fault).
stream_end write_end(const error_code& ec, const relay_clock& rc)
{
    return ec == beast::error::timeout && rc.timeout_kind() == stream_end::total_timeout ? stream_end::total_timeout
                                                                                         : stream_end::client_closed;
}

// A body of known length: bytes as they are, `remaining` of them.
asio::awaitable<relay_outcome> relay_length(deadline_stream& client, upstream::upstream_connection& conn, std::uint64_t remaining,
                                            const relay_options& opt, const relay_clock& rc)
{
    relay_outcome out;
    bool within = true;
    while (remaining > 0) {
        if (conn.buffer.size() == 0) {
            const auto room = static_cast<std::size_t>(std::min<std::uint64_t>(opt.buffer_size, remaining));
            if (auto ec = co_await read_upstream(conn, room, rc)) {
                out.end = read_end(ec, rc);
                co_return out;
            }
        }
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(conn.buffer.size(), remaining));
        const std::string_view piece(static_cast<const char*>(conn.buffer.data().data()), take);
        capture(opt, piece, within);
        if (auto ec = co_await send_piece(client, piece, opt, rc)) {
            out.end = write_end(ec, rc);
            co_return out;
        }
        conn.buffer.consume(take);
        remaining -= take;
        out.bytes += take;
    }
    out.captured = opt.capture && within;
    co_return out;
}

// A chunked or close-delimited body: decoded by the connection's parser (its trailer section dropped
// by the fence), each decoded piece passed on as it comes.
asio::awaitable<relay_outcome> relay_parsed(deadline_stream& client, upstream::upstream_connection& conn,
                                            const relay_options& opt, const relay_clock& rc)
{
    relay_outcome out;
    bool within = true;
    auto& parser = *conn.parser;
    parser.eager(true);
    for (;;) {
        const auto step = http::parse_buffered(parser, *conn.fence, conn.buffer);
        if (step.next == http::parse_next::failed) {
            out.end = stream_end::upstream_failed; // bad chunk or trailer, max_response_body (body_limit), too long unparsed
            co_return out;
        }
        auto& decoded = parser.get().body();
        if (!decoded.empty()) {
            capture(opt, decoded, within);
            if (auto ec = co_await send_piece(client, decoded, opt, rc)) {
                out.end = write_end(ec, rc);
                co_return out;
            }
            out.bytes += decoded.size();
            decoded.clear(); // the body string is the relay's buffer: it never holds more than one read
        }
        if (step.next == http::parse_next::done)
            break;
        if (step.next == http::parse_next::again)
            continue;
        const auto ec = co_await read_upstream(conn, opt.buffer_size, rc);
        if (ec == asio::error::eof || tls::is_tls_close(ec)) {
            error_code eof_ec;
            parser.put_eof(eof_ec); // a close-delimited body is complete now; a chunked one is cut short
            if (eof_ec || !parser.is_done()) {
                out.end = stream_end::upstream_failed;
                co_return out;
            }
            break;
        }
        if (ec) {
            out.end = read_end(ec, rc);
            co_return out;
        }
    }
    conn.fence->finish(); // (after a close-delimited end; once)
    if (opt.chunked_to_client) {
        http::chunk_frame chunk;
        const auto last_chunk = chunk.frame({});
        if (auto ec = co_await write_client(client, last_chunk, rc)) {
            out.end = write_end(ec, rc);
            co_return out;
        }
    }
    out.captured = opt.capture && within;
    co_return out;
}

} // namespace

open_body::~open_body() = default;

void open_body::reset() noexcept
{
    conn.reset();
    slot.reset();
    upgraded = known_length = keep_alive = false;
    length = 0;
}

asio::awaitable<relay_outcome> relay_response_body(deadline_stream& client, open_body& body, const relay_options& opt)
{
    const auto rc = clock_for(*opt.clk, opt.idle_timeout, opt.total_timeout);
    auto& conn = *body.conn;
    relay_outcome out;
    if (opt.watch)
        opt.watch->arm(conn.stream, opt.now);
    if (body.known_length) // (if/else, not a conditional expression: GCC 12 miscompiles co_await inside one)
        out = co_await relay_length(client, conn, body.length, opt, rc);
    else
        out = co_await relay_parsed(client, conn, opt, rc);
    if (opt.watch) {
        if (out.end != stream_end::completed && opt.watch->client_gone())
            out.end = stream_end::client_closed; // the watch aborted the upstream read: the client left
        opt.watch->disarm();
    }
    client.expires_never();
    if (out.end != stream_end::completed) {
        body.conn.reset(); // closed: what is left of the body is not ours to read
        co_return out;
    }
    const bool reusable = body.keep_alive && conn.buffer.size() == 0 && (!conn.tls || tls::nothing_buffered(*conn.tls));
    conn.fence.reset();
    conn.parser.reset();
    if (reusable)
        body.up->give_back(*body.ep, std::move(body.conn), opt.clk->now());
    body.conn.reset();
    co_return out;
}

namespace {

// What both directions of a tunnel share: how many times bytes moved (the watchdog turns that into a
// time at its next tick: no clock read per piece — and no virtual call inside the pumps' loops, which
// clang 14 at -O1 miscompiled into a co_return that loops again), and how it ended.
struct tunnel_state {
    void moved() noexcept { ++moves; }
    std::uint64_t moves = 0;
    stream_end end = stream_end::completed;
    bool failed = false;
};

// Ends the tunnel from either direction or the watchdog: both sockets shut down both ways (which also
// ends what the TLS engine may have started, that a cancel would not reach) and their operations
// cancelled. The first reason recorded is the one counted.
void abort_tunnel(deadline_stream& client, upstream::upstream_connection& up, tunnel_state& t, stream_end why)
{
    if (!t.failed) {
        t.failed = true;
        t.end = why;
    }
    error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_both, ignored);
    up.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.socket().cancel(ignored);
    up.stream.socket().cancel(ignored);
}

// The half-close of one side's sending direction, after the other side's input ended.
void shut_send(tcp::socket& s)
{
    error_code ignored;
    s.shutdown(tcp::socket::shutdown_send, ignored);
}

// One read from the upstream side of a tunnel (through TLS when it has it).
asio::awaitable<std::pair<error_code, std::size_t>> read_upstream_some(upstream::upstream_connection& up, asio::mutable_buffer b)
{
    if (up.tls) {
        auto [ec, n] = co_await up.tls->stream.async_read_some(b, nothrow_awaitable);
        co_return std::pair{ec, n};
    }
    auto [ec, n] = co_await up.stream.socket().async_read_some(b, nothrow_awaitable);
    co_return std::pair{ec, n};
}

asio::awaitable<error_code> write_upstream_all(upstream::upstream_connection& up, asio::const_buffer b)
{
    if (up.tls) {
        auto [ec, n] = co_await asio::async_write(up.tls->stream, b, nothrow_awaitable);
        co_return ec;
    }
    auto [ec, n] = co_await asio::async_write(up.stream.socket(), b, nothrow_awaitable);
    co_return ec;
}

// Client → upstream. Bytes the client sent with the upgrade request (`early`) go first.
asio::awaitable<void> pump_to_upstream(deadline_stream& client, upstream::upstream_connection& up, beast::flat_buffer& early,
                                       std::size_t size, tunnel_state& t)
{
    if (early.size() != 0) {
        if (auto ec = co_await write_upstream_all(up, early.data())) {
            abort_tunnel(client, up, t, stream_end::upstream_failed);
            co_return;
        }
        early.consume(early.size());
    }
    std::unique_ptr<char[]> buf(new char[size]);
    while (!t.failed) {
        auto [rec, n] = co_await client.socket().async_read_some(asio::buffer(buf.get(), size), nothrow_awaitable);
        if (n == 0) {
            if (rec == asio::error::eof)
                shut_send(up.stream.socket());
            else
                abort_tunnel(client, up, t, stream_end::client_closed);
            co_return;
        }
        t.moved();
        if (auto wec = co_await write_upstream_all(up, asio::buffer(buf.get(), n))) {
            abort_tunnel(client, up, t, stream_end::upstream_failed);
            co_return;
        }
        t.moved();
    }
}

// Upstream → client. Bytes that came with the 101 (in the connection's buffer) go first.
asio::awaitable<void> pump_to_client(deadline_stream& client, upstream::upstream_connection& up, std::size_t size,
                                     tunnel_state& t)
{
    if (up.buffer.size() != 0) {
        auto [ec, n] = co_await asio::async_write(client.socket(), up.buffer.data(), nothrow_awaitable);
        if (ec) {
            abort_tunnel(client, up, t, stream_end::client_closed);
            co_return;
        }
        up.buffer.consume(up.buffer.size());
    }
    std::unique_ptr<char[]> buf(new char[size]);
    while (!t.failed) {
        auto [rec, n] = co_await read_upstream_some(up, asio::buffer(buf.get(), size));
        if (n == 0) {
            if (rec == asio::error::eof || tls::is_tls_close(rec))
                shut_send(client.socket());
            else
                abort_tunnel(client, up, t, stream_end::upstream_failed);
            co_return;
        }
        t.moved();
        auto [wec, written] = co_await asio::async_write(client.socket(), asio::buffer(buf.get(), n), nothrow_awaitable);
        if (wec) {
            abort_tunnel(client, up, t, stream_end::client_closed);
            co_return;
        }
        t.moved();
    }
}

// Ends the tunnel when it has been idle (no byte either way: a blocked write counts as idle too, so
// early bytes a client never reads cannot hold it), has lasted its total time, the process is draining
// past its time, or (close_tunnels_on_open) its circuit has opened. Returns by ending it, or when
// cancelled (both directions ended first).
asio::awaitable<void> tunnel_watchdog(deadline_stream& client, upstream::upstream_connection& up, const tunnel_options& opt,
                                      tunnel_state& t)
{
    const auto& clk = *opt.clk;
    const nanos started = clk.now();
    nanos last_activity = started; // the tick at which bytes were last seen moving
    std::uint64_t moves_seen = t.moves;
    const nanos idle = opt.idle_timeout;
    const nanos period = std::min<nanos>(idle / 4 + millis(1), seconds(1));
    // The drain is noticed up to a period late: the tunnel ends that much (and a margin) before the
    // drain timeout, so that it closes cleanly before the process stops.
    std::optional<nanos> drain_seen;
    const nanos drain_end = std::max<nanos>(0, opt.drain_timeout - period - millis(250));
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(as_duration(period));
        auto [ec] = co_await timer.async_wait(nothrow_awaitable);
        if (ec || t.failed)
            co_return; // cancelled: the directions ended by themselves
        const nanos now = clk.now();
        if (t.moves != moves_seen) {
            moves_seen = t.moves;
            last_activity = now;
        }
        if (!drain_seen && opt.draining && opt.draining->load(std::memory_order_relaxed))
            drain_seen = now;
        stream_end why = stream_end::completed;
        if (now - last_activity >= idle)
            why = stream_end::idle_timeout;
        else if (opt.total_timeout > 0 && now - started >= opt.total_timeout)
            why = stream_end::total_timeout;
        else if (opt.breaker && opt.breaker->trip_count() != opt.trips)
            why = stream_end::circuit_opened;
        else if (drain_seen && now - *drain_seen >= drain_end)
            why = stream_end::drained;
        if (why != stream_end::completed) {
            abort_tunnel(client, up, t, why);
            co_return;
        }
    }
}

} // namespace

asio::awaitable<stream_end> run_tunnel(deadline_stream& client, beast::flat_buffer& client_buffer, open_body& body,
                                       const tunnel_options& opt)
{
    using namespace asio::experimental::awaitable_operators;
    auto& up = *body.conn;
    client.expires_never();
    up.stream.expires_never();
    tunnel_state t;
    co_await (
        (pump_to_upstream(client, up, client_buffer, opt.buffer_size, t) && pump_to_client(client, up, opt.buffer_size, t)) ||
        tunnel_watchdog(client, up, opt, t));
    body.conn.reset(); // the upstream connection closes; the session closes the client's
    co_return t.end;
}

} // namespace breakerbox::forward
