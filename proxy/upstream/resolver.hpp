// Name resolution for upstream endpoints: once, blocking, at start-up; then periodically and
// asynchronously on the main io_context, publishing each new address list to the workers.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"

#include <functional>
#include <string>
#include <vector>

namespace breakerbox::upstream {

struct resolution {
    std::vector<tcp::endpoint> addresses;
    std::vector<std::string> errors; // one per endpoint that did not resolve
};

// Start-up: resolves every configured endpoint (IPv4 first, then IPv6, duplicates removed).
resolution resolve_now(const config::upstream_config& up);

using publish_fn = std::function<void(std::vector<tcp::endpoint>)>;

// Re-resolves every resolve_interval; publishes only when the list changed and is non-empty (a DNS
// failure keeps the last known addresses). Runs until the io_context stops or `active()` turns false
// (the configuration it belongs to was replaced by a reload).
asio::awaitable<void> keep_resolving(const config::upstream_config& up, std::vector<tcp::endpoint> current,
                                     publish_fn publish, std::function<bool()> active);

// True when every endpoint is a literal IP address: nothing to re-resolve.
bool all_literal(const config::upstream_config& up);

} // namespace breakerbox::upstream
