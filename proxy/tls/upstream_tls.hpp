// One upstream's TLS client side in one configuration generation: the OpenSSL context built from its
// `tls` block (trust, verification of the chain and the name, SNI, client certificate, minimum version,
// ALPN http/1.1, client session cache), and what full handshakes saw of its peers (for
// /health/circuits and breakerbox_upstream_tls_certificate_expiry_seconds).
// Shared by all workers, immutable after construction except the peer record: connections are created
// from the SSL_CTX on any worker (thread-safe in OpenSSL 3.0); the peer record has a mutex, taken after
// a full handshake and by the admin listener, never per request.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"

#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace breakerbox::tls {

// What the last full handshake with one endpoint saw.
struct peer_status {
    std::string endpoint;       // "127.0.0.1:8443"
    std::string verified_name;  // the name (or IP) the certificate was verified for; "" with verify off
    std::string protocol;       // "TLSv1.3"
    std::int64_t not_after = 0; // the certificate's expiry, seconds since the epoch
};

class upstream_tls {
public:
    // `cfg`: an enabled tls block whose material the loader read and checked. `previous`: this
    // upstream's TLS in the configuration being replaced; with the same settings its peer record carries
    // over (a reload does not blank the expiry metric). Throws boost::system::system_error when OpenSSL
    // refuses the material after all (the reload is then rejected, the old generation keeps serving).
    upstream_tls(const config::tls_config& cfg, const upstream_tls* previous);

    const config::tls_config& cfg() const noexcept { return cfg_; }
    asio::ssl::context& context() noexcept { return context_; }

    void record_peer(peer_status status);
    std::vector<peer_status> peers() const;
    // Forgets the peers that are no longer among the upstream's resolved endpoints (after re-resolution:
    // an address gone must not keep an old certificate's expiry in the metric). Main thread.
    void retain_peers(const std::vector<tcp::endpoint>& endpoints);

private:
    const config::tls_config cfg_;
    asio::ssl::context context_;
    mutable std::mutex mutex_;
    std::vector<peer_status> peers_;
};

// The SSL ex_data slot that points a connection at its endpoint's session_cache (for the new-session
// callback).
int session_cache_index();

} // namespace breakerbox::tls
