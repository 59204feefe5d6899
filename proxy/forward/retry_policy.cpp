#include "forward/retry_policy.hpp"

#include "forward/outcome_table.hpp"
#include "http/field_scan.hpp"
#include "http/http_date.hpp"

#include <algorithm>

namespace breakerbox::forward {

namespace bhttp = boost::beast::http;

namespace {
const http::field_name idempotency_key = http::field_name::of("Idempotency-Key");
}

bool method_retryable(const http::request& req, const config::retry_config& rc)
{
    if (req.method() == bhttp::verb::post && (rc.allow_post || http::has_field(req, idempotency_key)))
        return true;
    const auto m = req.method_string();
    return std::any_of(rc.methods.begin(), rc.methods.end(), [&](const std::string& x) { return m == x; });
}

bool outcome_retryable(proxy_error error, const http::response& response, const config::retry_config& rc)
{
    if (error == proxy_error::ok) {
        const unsigned s = response.result_int();
        return std::find(rc.on_statuses.begin(), rc.on_statuses.end(), s) != rc.on_statuses.end();
    }
    switch (rule_of(error).retry) {
    case retry_on::connect_failure: return rc.on_connect_failure;
    case retry_on::reset: return rc.on_reset;
    case retry_on::timeout: return rc.on_timeout;
    case retry_on::never: break;
    }
    return false;
}

std::optional<nanos> retry_delay(proxy_error error, const http::response& response, const config::retry_config& rc,
                                 unsigned attempt, std::uint64_t random, std::int64_t now_unix)
{
    if (error == proxy_error::ok) {
        if (auto ra = http::value_of(response, {bhttp::field::retry_after}); !ra.empty()) {
            if (auto wait = http::retry_after_delay(ra, now_unix)) {
                if (*wait > rc.retry_after_max)
                    return std::nullopt; // the upstream wants a pause we will not hold
                return *wait;
            }
        }
    }
    const nanos ceiling = std::min<nanos>(rc.backoff_max, rc.backoff_base << std::min(attempt - 1, 20u));
    return ceiling > 0 ? static_cast<nanos>(random % static_cast<std::uint64_t>(ceiling + 1)) : 0;
}

} // namespace breakerbox::forward
