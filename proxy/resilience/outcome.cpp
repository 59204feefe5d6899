#include "resilience/outcome.hpp"

namespace breakerbox::resilience {

outcome_classifier::outcome_classifier(const config::classification_config& cfg) : cfg_(cfg)
{
    table_.fill(outcome::success);
    for (unsigned s : cfg.failure_statuses)
        if (s < table_.size())
            table_[s] = outcome::failure;
    table_[429] = cfg.status_429_is_failure ? outcome::failure : table_[429];
    for (unsigned s : cfg.ignored_statuses)
        if (s < table_.size())
            table_[s] = outcome::ignored;
}

outcome outcome_classifier::of_error(proxy_error e) const noexcept
{
    auto as = [](bool failure) { return failure ? outcome::failure : outcome::ignored; };
    switch (e) {
    case proxy_error::upstream_connect_failed:
    case proxy_error::upstream_tls_handshake_failed: // TLS failures are connect-class: no request was sent
    case proxy_error::upstream_tls_verify_failed:
    case proxy_error::upstream_tls_reset: return as(cfg_.connect_failure);
    case proxy_error::upstream_connect_timeout: return as(cfg_.connect_timeout);
    case proxy_error::upstream_timeout: return as(cfg_.request_timeout);
    case proxy_error::upstream_reset: return as(cfg_.connection_reset);
    case proxy_error::upstream_invalid_response:
    case proxy_error::upstream_response_too_large: return as(cfg_.invalid_response);
    default: return outcome::ignored; // local decisions are never upstream failures
    }
}

} // namespace breakerbox::resilience
