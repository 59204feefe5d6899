// The JSON of GET /health/circuits (documented in docs/admin-api.md): per upstream, the breaker's state
// with figures and its effective policy, plus this instance's identity. The HTTP status follows the
// rule "200 unless a circuit is open": open or forced-open → 503; half-open → "degraded" with 200.
#pragma once
#include "admin/admin_context.hpp"
#include "resilience/circuit_view.hpp"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace breakerbox::admin {

struct health_report {
    nlohmann::json body;
    unsigned status; // 200 or 503
};

// All upstreams, or just `upstream` (nullopt when no such upstream).
std::optional<health_report> build_health_report(const admin_context& ctx, std::optional<std::string_view> upstream);

} // namespace breakerbox::admin
