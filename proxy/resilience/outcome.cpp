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

outcome outcome_classifier::of_failure(failure_class c) const noexcept
{
    auto as = [](bool failure) { return failure ? outcome::failure : outcome::ignored; };
    switch (c) {
    case failure_class::connect_failure: return as(cfg_.connect_failure);
    case failure_class::connect_timeout: return as(cfg_.connect_timeout);
    case failure_class::request_timeout: return as(cfg_.request_timeout);
    case failure_class::connection_reset: return as(cfg_.connection_reset);
    case failure_class::invalid_response: return as(cfg_.invalid_response);
    case failure_class::none: break;
    }
    return outcome::ignored; // local decisions are never upstream failures
}

} // namespace breakerbox::resilience
