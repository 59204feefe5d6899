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

// Shared, immutable after construction: a lookup table per status plus the error classes.
class outcome_classifier {
public:
    explicit outcome_classifier(const config::classification_config& cfg);

    outcome of_status(unsigned status) const noexcept { return status < table_.size() ? table_[status] : outcome::failure; }
    // For failures the proxy saw itself (connect failure, timeout, reset, invalid response).
    outcome of_error(proxy_error e) const noexcept;

private:
    std::array<outcome, 600> table_{};
    const config::classification_config cfg_;
};

} // namespace breakerbox::resilience
