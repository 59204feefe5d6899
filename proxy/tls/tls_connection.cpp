#include "tls/tls_connection.hpp"

#include "tls/session_cache.hpp"
#include "tls/upstream_tls.hpp"

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <ctime>

namespace breakerbox::tls {
namespace {

bool is_closed(const error_code& ec)
{
    return ec == asio::ssl::error::stream_truncated || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::error::connection_aborted;
}

std::int64_t not_after_of(X509* cert)
{
    std::tm tm{};
    if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
        return 0;
    return static_cast<std::int64_t>(timegm(&tm));
}

void record_full_handshake(tls_connection& conn, const std::string& endpoint)
{
    SSL* ssl = conn.stream.native_handle();
    const auto& cfg = conn.identity->cfg();
    conn.identity->record_peer({endpoint, cfg.verify ? cfg.server_name : std::string(), SSL_get_version(ssl),
                                not_after_of(SSL_get0_peer_certificate(ssl))});
}

// Whether the server chose a protocol other than the one we offered (RFC 7301 §3.2): none is fine.
bool alpn_acceptable(SSL* ssl)
{
    const unsigned char* chosen = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &chosen, &len);
    return len == 0 || std::string_view(reinterpret_cast<const char*>(chosen), len) == "http/1.1";
}

handshake_outcome failed(handshake_result result, proxy_error error, std::string detail)
{
    return {result, error, std::move(detail)};
}

// In order: the deadline, a certificate verification failure (chain or name), the peer closing, then
// anything else TLS refused.
handshake_outcome classify_failure(const error_code& ec, SSL* ssl, const upstream_tls& identity, const std::string& endpoint,
                                   bool deadline_is_request)
{
    if (ec == beast::error::timeout)
        return deadline_is_request ? failed(handshake_result::timeout, proxy_error::upstream_timeout,
                                            "request deadline passed during the TLS handshake with " + endpoint)
                                   : failed(handshake_result::timeout, proxy_error::upstream_connect_timeout,
                                            "the TLS handshake with " + endpoint + " timed out");
    // (With verify off OpenSSL still records a chain result — "unable to get local issuer" against an
    // empty store — which is no reason for a failure then.)
    if (const long verify = SSL_get_verify_result(ssl); identity.cfg().verify && verify != X509_V_OK)
        return failed(handshake_result::verify_failed, proxy_error::upstream_tls_verify_failed,
                      "the certificate of " + endpoint + " failed verification: " + X509_verify_cert_error_string(verify) +
                          " (expected " + identity.cfg().server_name + ")");
    if (is_closed(ec))
        return failed(handshake_result::reset, proxy_error::upstream_tls_reset,
                      endpoint + " closed the connection during the TLS handshake");
    std::string detail = "the TLS handshake with " + endpoint + " failed: " + ec.message();
    if (ec.category() == asio::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_WRONG_VERSION_NUMBER)
        detail += " (is the endpoint plain HTTP?)";
    return failed(handshake_result::handshake_failed, proxy_error::upstream_tls_handshake_failed, std::move(detail));
}

} // namespace

tls_connection::tls_connection(tcp::socket& socket, upstream_tls& id) : stream(socket, id.context()), identity(&id) { }

asio::awaitable<handshake_outcome> client_handshake(tls_connection& conn, deadline_stream& stream, session_cache* cache,
                                                    const std::string& endpoint, bool deadline_is_request)
{
    SSL* ssl = conn.stream.native_handle();
    const auto& cfg = conn.identity->cfg();
    if (!cfg.server_name_is_ip)
        SSL_set_tlsext_host_name(ssl, cfg.server_name.c_str());
    SSL_set_ex_data(ssl, session_cache_index(), cache);
    if (cache && cfg.session_reuse)
        cache->offer(ssl);
    if (stream.timed_out())
        co_return classify_failure(beast::error::timeout, ssl, *conn.identity, endpoint, deadline_is_request);
    auto [aec] = co_await conn.stream.async_handshake(asio::ssl::stream_base::client, nothrow_awaitable);
    const error_code ec = stream.io_error(aec);
    if (ec)
        co_return classify_failure(ec, ssl, *conn.identity, endpoint, deadline_is_request);
    if (!alpn_acceptable(ssl))
        co_return failed(handshake_result::handshake_failed, proxy_error::upstream_tls_handshake_failed,
                         endpoint + " chose an application protocol other than http/1.1");
    if (SSL_session_reused(ssl))
        co_return handshake_outcome{handshake_result::resumed};
    record_full_handshake(conn, endpoint);
    co_return handshake_outcome{handshake_result::full};
}

void forget_without_invalidating(tls_connection& conn) noexcept
{
    SSL_set_shutdown(conn.stream.native_handle(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

bool nothing_buffered(tls_connection& conn) noexcept
{
    SSL* ssl = conn.stream.native_handle();
    return SSL_pending(ssl) == 0 && BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0;
}

bool is_tls_close(const error_code& ec) noexcept { return ec == asio::ssl::error::stream_truncated; }

bool is_received_alert(const error_code& ec) noexcept
{
    const auto e = static_cast<unsigned long>(ec.value());
    return ec.category() == asio::error::get_ssl_category() && ERR_GET_LIB(e) == ERR_LIB_SSL &&
           ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET;
}

} // namespace breakerbox::tls
