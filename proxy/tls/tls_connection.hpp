// TLS on one upstream connection, over the socket its deadline_stream owns: deadlines and the client
// watch work as for plain HTTP (the timer cancels the socket; the TLS operation on it fails with
// operation_aborted, which deadline_stream::io_error turns into timeout).
// Worker-owned, like the connection.
#pragma once
#include "core/deadline_stream.hpp"
#include "core/error.hpp"
#include "tls/handshake_result.hpp"

#include <boost/asio/ssl/stream.hpp>

#include <chrono>
#include <string>

namespace breakerbox::tls {

class upstream_tls;
class session_cache;
using ssl_stream = asio::ssl::stream<tcp::socket&>;

struct tls_connection {
    tls_connection(tcp::socket& socket, upstream_tls& identity);
    ssl_stream stream;
    upstream_tls* identity; // the context it was made from: pooled and reused only under the same
};

// What read_message and write_rest need of a stream (core/deadline_stream.hpp), with the reads and
// writes going through TLS. Two references, made where needed.
struct tls_io {
    deadline_stream& deadline;
    ssl_stream& ssl;

    ssl_stream& io() noexcept { return ssl; }
    bool timed_out() const noexcept { return deadline.timed_out(); }
    error_code io_error(const error_code& ec) const { return deadline.io_error(ec); }
    void expires_after(std::chrono::steady_clock::duration d) { deadline.expires_after(d); }
    // A TLS read returns one record's plaintext: how much it returned says nothing about the socket's
    // queue, so no drained hint (core/drained_hint.hpp) — the next read tries the socket first.
    void mark_drained() noexcept { }
};

struct handshake_outcome {
    handshake_result result = handshake_result::none;
    proxy_error error = proxy_error::ok; // ok: full or resumed
    std::string detail;
};

// Starts TLS on a connected socket — SNI (for a DNS name only, RFC 6066 §3), a cached session when
// session_reuse, the cache for new ones — and runs the handshake under the stream's current deadline.
// `deadline_is_request`: the request's deadline, not connect_timeout, is the limit (upstream_timeout
// then, as for a TCP connect). A full handshake records the peer (name, protocol, expiry).
// Failures: upstream_tls_verify_failed (chain or name: X509_V_ERR_*), upstream_tls_reset (the peer
// closed during the handshake), upstream_tls_handshake_failed (an alert, a protocol mismatch, a plain
// HTTP endpoint, an ALPN other than http/1.1), upstream_connect_timeout / upstream_timeout.
asio::awaitable<handshake_outcome> client_handshake(tls_connection& conn, deadline_stream& stream, session_cache* cache,
                                                    const std::string& endpoint, bool deadline_is_request);

// Before the connection is closed without a close_notify exchange: tells OpenSSL not to invalidate the
// session it used (OpenSSL marks the session of an SSL freed without a shutdown as not resumable, and
// the session cache holds that very object for TLS 1.2). No I/O. A session whose handshake failed was
// never cached.
void forget_without_invalidating(tls_connection& conn) noexcept;

// Whether TLS holds nothing unread (a record that came with the response, such as a close_notify):
// only then may the connection go back to the pool.
bool nothing_buffered(tls_connection& conn) noexcept;

// A read error on an established connection that is the peer closing it: close_notify (eof) or a close
// without one (stream_truncated).
bool is_tls_close(const error_code& ec) noexcept;

// An alert the server sent: on a connection's first exchange under TLS 1.3 this is the server refusing
// the handshake after it completed on our side (a client certificate it requires, RFC 8446 §4.4.2.4).
bool is_received_alert(const error_code& ec) noexcept;

} // namespace breakerbox::tls
