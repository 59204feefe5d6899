// What happened to one upstream call, as the breaker sees it, and the configurable rules that decide
// it. Local rejections (bulkhead, retry budget, the breaker itself, client disconnects) never get here:
// they are not upstream outcomes.
#pragma once
#include "config/config.hpp"
#include "core/enum_names.hpp"
#include "core/error.hpp"

#include <array>
#include <cstdint>
#include <span>

namespace breakerbox::resilience {

enum class outcome : std::uint8_t { success, failure, ignored };
inline constexpr enum_name<outcome> outcome_names[]{{outcome::success, "success"},
                                                    {outcome::failure, "failure"},
                                                    {outcome::ignored, "ignored"}};
constexpr std::span<const enum_name<outcome>> names_of(outcome) noexcept { return outcome_names; }

// Which `classify` switch decides whether a failure the proxy saw itself counts for the breaker
// (forward/outcome_table.hpp says which reason is of which class). none: never a failure.
enum class failure_class : std::uint8_t {
    none,
    connect_failure,
    connect_timeout,
    request_timeout,
    connection_reset,
    invalid_response
};

// Shared, immutable after construction: a lookup table per status plus the error classes.
class outcome_classifier {
public:
    explicit outcome_classifier(const config::classification_config& cfg);

    outcome of_status(unsigned status) const noexcept { return status < table_.size() ? table_[status] : outcome::failure; }
    // For failures the proxy saw itself (connect failure, timeout, reset, invalid response): failure
    // when its classify switch is on, else ignored.
    outcome of_failure(failure_class c) const noexcept;

private:
    std::array<outcome, 600> table_{};
    const config::classification_config cfg_;
};

} // namespace breakerbox::resilience
