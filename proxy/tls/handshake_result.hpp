// How a TLS handshake with an upstream ended (label `result` of breakerbox_upstream_tls_handshakes_total):
// full or resumed (RFC 8446 §2.2), or the way it failed. No OpenSSL here: the request path's headers
// include it.
#pragma once
#include <cstdint>

namespace breakerbox::tls {

#define BREAKERBOX_TLS_HANDSHAKE_RESULTS(X) \
    X(full)                                 \
    X(resumed)                              \
    X(verify_failed)                        \
    X(handshake_failed)                     \
    X(reset)                                \
    X(timeout)

#define BREAKERBOX_TLS_RESULT_ENUM(name) name,
enum class handshake_result : std::uint8_t { BREAKERBOX_TLS_HANDSHAKE_RESULTS(BREAKERBOX_TLS_RESULT_ENUM) count, none = count };
#undef BREAKERBOX_TLS_RESULT_ENUM

} // namespace breakerbox::tls
