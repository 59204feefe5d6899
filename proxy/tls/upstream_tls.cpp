#include "tls/upstream_tls.hpp"

#include "tls/session_cache.hpp"

#include <boost/asio/ssl/error.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>

namespace breakerbox::tls {
namespace {

// OpenSSL hands a new session (TLS 1.2: at the end of the handshake; TLS 1.3: a NewSessionTicket,
// processed by the first read after it) to this callback; the connection's ex_data names the cache.
// Returning 1 keeps the reference.
int on_new_session(SSL* ssl, SSL_SESSION* session)
{
    auto* cache = static_cast<session_cache*>(SSL_get_ex_data(ssl, session_cache_index()));
    if (!cache || !SSL_SESSION_is_resumable(session))
        return 0;
    cache->put(session);
    return 1;
}

void throw_if(bool failed, const char* what)
{
    if (failed)
        throw boost::system::system_error(error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()), what);
}

void set_trust(asio::ssl::context& ctx, const config::tls_config& cfg)
{
    if (!cfg.verify) {
        ctx.set_verify_mode(asio::ssl::verify_none);
        return;
    }
    // The PEM text the loader read (ca_file, or the system bundle): loaded into the store now, so no
    // certificate file is read during a handshake on a worker thread.
    ctx.add_certificate_authority(asio::buffer(cfg.ca_pem));
    ctx.set_verify_mode(asio::ssl::verify_peer);
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx.native_handle());
    if (cfg.server_name_is_ip) {
        throw_if(X509_VERIFY_PARAM_set1_ip_asc(param, cfg.server_name.c_str()) != 1, "tls.server_name");
    } else {
        // Every connection inherits the name: the chain and the name are both checked (RFC 9110 §4.3.4).
        // subjectAltName only, never the subject's common name (RFC 9525 §6.3; CAs stopped relying on it).
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        throw_if(X509_VERIFY_PARAM_set1_host(param, cfg.server_name.c_str(), cfg.server_name.size()) != 1, "tls.server_name");
    }
}

void set_client_certificate(asio::ssl::context& ctx, const config::tls_config& cfg)
{
    if (cfg.certificate_pem.empty())
        return;
    ctx.use_certificate_chain(asio::buffer(cfg.certificate_pem));
    ctx.use_private_key(asio::buffer(cfg.key_pem), asio::ssl::context::pem);
    throw_if(SSL_CTX_check_private_key(ctx.native_handle()) != 1, "tls.client_key");
}

} // namespace

int session_cache_index()
{
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

upstream_tls::upstream_tls(const config::tls_config& cfg, const upstream_tls* previous)
    : cfg_(cfg), context_(asio::ssl::context::tls_client)
{
    SSL_CTX* h = context_.native_handle();
    // A password callback that never asks: an encrypted key fails instead of prompting on a terminal.
    context_.set_password_callback([](std::size_t, asio::ssl::context::password_purpose) { return std::string(); });
    throw_if(SSL_CTX_set_min_proto_version(h, cfg.min_version == config::tls_version::v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) !=
                 1,
             "tls.min_version");
    set_trust(context_, cfg);
    set_client_certificate(context_, cfg);
    static constexpr unsigned char alpn[] = "\x08http/1.1";                   // length-prefixed protocol names
    throw_if(SSL_CTX_set_alpn_protos(h, alpn, sizeof alpn - 1) != 0, "ALPN"); // 0: success
    SSL_CTX_set_session_cache_mode(h, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(h, on_new_session);
    if (previous && previous->cfg_ == cfg_)
        peers_ = previous->peers();
}

void upstream_tls::record_peer(peer_status status)
{
    std::lock_guard lock(mutex_);
    for (auto& p : peers_)
        if (p.endpoint == status.endpoint) {
            p = std::move(status);
            return;
        }
    peers_.push_back(std::move(status));
}

void upstream_tls::retain_peers(const std::vector<tcp::endpoint>& endpoints)
{
    std::vector<std::string> labels; // as upstream::endpoint_slot::label spells them
    for (const auto& e : endpoints)
        labels.push_back(e.address().to_string() + ":" + std::to_string(e.port()));
    std::lock_guard lock(mutex_);
    std::erase_if(peers_,
                  [&](const peer_status& p) { return std::find(labels.begin(), labels.end(), p.endpoint) == labels.end(); });
}

std::vector<peer_status> upstream_tls::peers() const
{
    std::lock_guard lock(mutex_);
    return peers_;
}

} // namespace breakerbox::tls
