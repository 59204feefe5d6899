// Header handling for forwarding, per RFC 9110 §7.6: hop-by-hop fields are removed in both directions,
// forwarding fields are added to requests. Pure functions over Beast field containers.
#pragma once
#include "config/config.hpp"
#include "http/message.hpp"

#include <string_view>

namespace breakerbox::http {

// Removes Connection and every field it names, Keep-Alive, Proxy-Connection, TE, Trailer,
// Transfer-Encoding and Upgrade. (Bodies are re-framed with Content-Length afterwards.)
void strip_hop_by_hop(fields& f);

// Appends this proxy ("1.1 breakerbox") to Via, in either direction.
void append_via(fields& f);

struct forward_context {
    std::string_view client_ip;
    std::string_view original_host; // what the client addressed (Host or absolute-form authority)
};

// Adds Via, X-Forwarded-For (appended to an existing list), X-Forwarded-Proto and X-Forwarded-Host,
// each as configured.
void add_forwarding_fields(fields& f, const config::forwarding_config& cfg, const forward_context& ctx);

} // namespace breakerbox::http
