// Maps a request to a configured upstream, or to nothing. Three ways in, in this order:
//   1. the listener is dedicated to one upstream (a service just changes its base URL);
//   2. the authority — from an absolute-form target (HTTP_PROXY use) or else the Host header —
//      matches an upstream's routes.hosts;
//   3. the longest routes.path_prefix that matches on a segment boundary (optionally stripped).
// Anything else is no route: breakerbox is never an open proxy.
// Shared, immutable after construction: used by every worker without synchronisation.
#pragma once
#include "config/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace breakerbox::routing {

struct route_match {
    std::size_t upstream = 0;     // index into config.upstreams
    std::string origin_target;    // the target to send upstream, in origin-form ("/path?query")
    std::string authority;        // the host the client addressed ("" when none)
};

class router {
public:
    explicit router(const config::config& cfg);

    // `target` is the request-target as received; `host_header` the Host field ("" if absent).
    std::optional<route_match> match(std::size_t listener_index, std::string_view target,
                                     std::string_view host_header) const;

private:
    struct host_route {
        std::string host;         // lowercase; may carry ":port"
        std::size_t upstream;
    };
    struct prefix_route {
        std::string prefix;
        bool strip;
        std::size_t upstream;
    };

    // `authority` is already lowercase (match() lowercases it once).
    std::optional<std::size_t> match_host(std::string_view authority) const;

    std::vector<std::optional<std::size_t>> dedicated_; // per listener
    std::vector<host_route> hosts_;
    std::vector<prefix_route> prefixes_;                // longest first
};

// Splits an absolute-form target ("http://host:port/path?q") into authority and origin-form.
// Returns false for anything that is not an http:// absolute URI.
bool split_absolute_form(std::string_view target, std::string& authority, std::string& origin);

} // namespace breakerbox::routing
